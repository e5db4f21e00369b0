//! Group petitions and non-resident petitioners in the case engine: registration, the stored
//! form (case version 3, and older versions read with one resident-ID petitioner), handoff.

mod common;

use common::*;
use liandong_domain::group::{arrange, Group, Party};
use liandong_domain::*;

fn party(id_type: IdType, number: &str, name: &str, phone: Option<&str>) -> Party {
    Party {
        id_type,
        id_number: number.into(),
        name: name.into(),
        phone: phone.map(str::to_string),
        nationality: None,
    }
}

/// A case registered by a passport holder representing two co-petitioners.
fn group_case(desk: &Desk, now: Millis) -> Case {
    let mut foreign = party(
        IdType::Passport,
        "E12345678",
        "John Smith",
        Some("+4479460000"),
    );
    foreign.nationality = Some("GBR".into());
    let parties = arrange(
        vec![
            party(IdType::Resident, ID_NUMBER, "张三", Some("13800000000")),
            foreign,
            party(IdType::HkMacao, "H12345678", "陈大文", None),
        ],
        2,
    )
    .expect("a good group");
    let representative = &parties[0];
    let mut registration = registration(Channel::Visit);
    registration.petitioner_id = representative.id_number.as_str().into();
    registration.name = representative.name.as_str().into();
    registration.phone = representative.phone.as_deref().map(Personal::from);
    let key = document_key(SECRET, representative.id_type, &representative.id_number);
    register_with_group(
        CaseId {
            office: desk.office.clone(),
            year: 2026,
            seq: 7,
        },
        registration,
        key,
        CaseKind::Original,
        Group::of(&parties),
        &desk.ctx(now),
    )
    .expect("registered")
}

#[test]
fn a_group_case_is_registered_with_its_representative_first() {
    let desk = Desk::new(COUNTY);
    let case = group_case(&desk, t(MONDAY));
    assert_eq!(case.v, CASE_VERSION_GROUP);
    let petitioner = case.petitioner.as_ref().unwrap();
    assert_eq!(petitioner.name, "John Smith");
    assert_eq!(petitioner.id_number, "E12345678");
    let group = case.group.as_ref().unwrap();
    assert_eq!(group.id_type, "passport");
    assert_eq!(group.petitioners(), 3);
    assert_eq!(group.members[0].name, "张三");
    assert_eq!(group.members[1].id_type, "hk-macao");
    assert_eq!(
        case.petitioner_key,
        document_key(SECRET, IdType::Passport, "E12345678")
    );
    assert_ne!(
        case.petitioner_key,
        petitioner_key(SECRET, "E12345678"),
        "a passport's key is not a resident ID's"
    );
    // A single resident-ID petitioner: a case as before, at version 2.
    let plain = desk.register(t(MONDAY));
    assert_eq!(plain.v, CASE_VERSION_SINGLE);
    assert_eq!(plain.group, None);
}

#[test]
fn a_passport_number_is_refused_as_a_resident_id_and_a_bad_group_files_nothing() {
    let desk = Desk::new(COUNTY);
    let id = CaseId {
        office: office(COUNTY),
        year: 2026,
        seq: 8,
    };
    let mut registration = registration(Channel::Visit);
    registration.petitioner_id = "E12345678".into();
    let key = document_key(SECRET, IdType::Passport, "E12345678");
    let refused = register(
        id.clone(),
        registration.clone(),
        key.clone(),
        CaseKind::Original,
        &desk.ctx(t(MONDAY)),
    );
    assert_eq!(code(refused), "invalid_id_number");
    let mut group = Group::of(&[party(IdType::Passport, "E12345678", "J", None)]).unwrap();
    group
        .members
        .push(group::Member::of(&party(IdType::Taiwan, "1234", "K", None)));
    let refused = register_with_group(
        id,
        registration,
        key,
        CaseKind::Original,
        Some(group),
        &desk.ctx(t(MONDAY)),
    );
    assert_eq!(code(refused), "group_invalid");
}

/// Version 3 round-trips with its group in both formats; a version-2 case (the stored form
/// before groups) and a version-1 document read with no group: one resident-ID petitioner.
#[test]
fn the_group_is_stored_at_version_3_and_older_cases_read_without_one() {
    let desk = Desk::new(COUNTY);
    let mut case = group_case(&desk, t(MONDAY));
    desk.ok(&mut case, t(MONDAY) + days(1), accept());
    let bytes = case.to_bytes();
    assert_eq!(Case::from_bytes(&bytes), Ok(case.clone()));
    let json = serde_json::to_vec(&case).unwrap();
    assert_eq!(Case::from_bytes(&json), Ok(case.clone()));
    // Its header too (what a replica stores).
    let (header, _) = case.clone().into_header();
    assert_eq!(
        Case::from_bytes(&header.to_bytes()).unwrap().group,
        case.group
    );

    let plain = desk.register(t(MONDAY));
    let plain_bytes = plain.to_bytes();
    // A case without a group encodes exactly as version 2 did: no byte after its history.
    let mut without = plain.clone();
    without.group = None;
    assert_eq!(plain_bytes, without.to_bytes());
    let read = Case::from_bytes(&plain_bytes).unwrap();
    assert_eq!(read.v, 2);
    assert_eq!(read.group, None);
    assert_eq!(read.petitioner.unwrap().id_number, ID_NUMBER);
    // Version 1's JSON document.
    let mut value = serde_json::to_value(&plain).unwrap();
    value["v"] = 1.into();
    let read = Case::from_bytes(&serde_json::to_vec(&value).unwrap()).unwrap();
    assert_eq!((read.v, read.group), (1, None));
    // A truncated group is corrupt, not silently dropped.
    assert_eq!(code(Case::from_bytes(&bytes[..bytes.len() - 3])), "corrupt");
}

#[test]
fn the_group_moves_with_ownership_and_the_stub_keeps_none() {
    let (county, township) = (Desk::new(COUNTY), Desk::new(TOWNSHIP));
    let mut case = group_case(&county, t(MONDAY));
    let digest = case.petitioner_sha256();
    let mut without = case.clone();
    without.group = None;
    assert_ne!(
        digest,
        without.petitioner_sha256(),
        "the digest knows the group"
    );
    county.ok(&mut case, t(MONDAY) + days(1), assign(TOWNSHIP, 30));
    let received = township.receive(&case, t(MONDAY) + days(2));
    assert_eq!(received.group, case.group);
    let last = received.history.last().unwrap().state_sha256.clone();
    assert_eq!(last, Some(received.clone().state_sha256()));
    county.ok(&mut case, t(MONDAY) + days(2), CaseCommand::HandoffAcked);
    assert!(matches!(case.status, Status::Forwarded { .. }));
    assert_eq!((case.petitioner.clone(), case.group.clone()), (None, None));
    assert_eq!(case.verify_chain(), Ok(()));
}
