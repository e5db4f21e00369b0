//! The petitioner's address: checked like the other personal fields, stored at case version 5
//! (a trailing extension; a case without one is written and digested as before), carried with
//! the case where ownership moves, withheld from a stub, and in the signed state by its
//! presence only.

mod common;

use common::*;
use liandong_domain::codec::{decode, encode};
use liandong_domain::group::{arrange, Group, Party};
use liandong_domain::*;

const ADDRESS: &str = "云南省昭通市昭阳区凤凰街道海楼路 88 号 3 单元 501 室";

fn with_address(address: &str) -> Registration {
    let mut registration = registration(Channel::Visit);
    registration.address = Some(address.into());
    registration
}

fn register_at(desk: &Desk, registration: Registration) -> Result<Case, DomainError> {
    register(
        CaseId {
            office: desk.office.clone(),
            year: 2026,
            seq: 9,
        },
        registration,
        petitioner_key(SECRET, ID_NUMBER),
        CaseKind::Original,
        &desk.ctx(t(MONDAY)),
    )
}

/// An address is one line of at most 256 bytes: longer, blank, with a control or a
/// display-spoofing character, it is refused with a clear error that does not repeat it, and
/// no case is made.
#[test]
fn an_address_is_one_bounded_line_and_a_bad_one_files_nothing() {
    let desk = Desk::new(COUNTY);
    let case = register_at(&desk, with_address(ADDRESS)).unwrap();
    assert_eq!(case.address(), Some(&Personal::from(ADDRESS)));
    // 85 three-byte characters and one byte: exactly the bound.
    let most = format!("{}1", "路".repeat(85));
    assert_eq!(most.len(), ADDRESS_BYTES_MAX);
    assert!(register_at(&desk, with_address(&most)).is_ok());
    let over = format!("{}12", "路".repeat(85));
    let error = register_at(&desk, with_address(&over)).unwrap_err();
    assert_eq!(error.code(), "field_invalid");
    assert!(error.to_string().starts_with("address"), "{error}");
    assert!(error.to_string().contains("256 bytes"), "{error}");
    assert!(!error.to_string().contains("路路"), "never echoed: {error}");
    for bad in [
        "昭阳区\n海楼路 88 号",
        "昭阳区\u{7}88 号",
        "昭阳区\u{202E}88 号",
        "海楼路\u{200B}88 号",
        "   ",
    ] {
        let error = register_at(&desk, with_address(bad)).unwrap_err();
        assert!(error.is_invalid_input(), "{bad:?}: {error}");
        assert!(error.to_string().starts_with("address"), "{bad:?}: {error}");
    }
    // A sealed address was checked before it was sealed: the engine keeps its bytes.
    let mut sealed = registration(Channel::Visit);
    sealed.address = Some(Personal::Sealed(
        Sealed::from_bytes(vec![SEALED_MARK, 1, 2, 3]).unwrap(),
    ));
    assert!(register_at(&desk, sealed)
        .unwrap()
        .address()
        .unwrap()
        .is_sealed());
}

/// The version-1 layout of a registration, as builds before addresses wrote it.
#[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
struct RegistrationV1 {
    channel: Channel,
    petitioner_id: Personal,
    name: Personal,
    phone: Option<Personal>,
    category: String,
    summary: String,
    location: Option<OfficeCode>,
    officer: String,
}

fn v1_of(registration: &Registration) -> RegistrationV1 {
    RegistrationV1 {
        channel: registration.channel,
        petitioner_id: registration.petitioner_id.clone(),
        name: registration.name.clone(),
        phone: registration.phone.clone(),
        category: registration.category.clone(),
        summary: registration.summary.clone(),
        location: registration.location.clone(),
        officer: registration.officer.clone(),
    }
}

/// A registration (in every filing's log entry) without an address keeps its earlier bytes,
/// and earlier bytes read as one without; one with an address round-trips in both formats,
/// and a build that knows no address refuses it instead of misreading it.
#[test]
fn a_registration_without_an_address_keeps_its_bytes_and_one_with_reads_back() {
    let plain = registration(Channel::Letter);
    assert_eq!(encode(&plain), encode(&v1_of(&plain)));
    assert_eq!(
        decode::<Registration>(&encode(&v1_of(&plain))).unwrap(),
        plain
    );
    assert_eq!(
        serde_json::to_value(&plain).unwrap(),
        serde_json::to_value(v1_of(&plain)).unwrap()
    );
    let addressed = with_address(ADDRESS);
    let bytes = encode(&addressed);
    assert_eq!(decode::<Registration>(&bytes).unwrap(), addressed);
    let json = serde_json::to_string(&addressed).unwrap();
    assert!(json.contains("\"address\""), "{json}");
    assert_eq!(
        serde_json::from_str::<Registration>(&json).unwrap(),
        addressed
    );
    assert!(
        decode::<RegistrationV1>(&bytes).is_err(),
        "the previous build refuses a registration with an address"
    );
    // Followed by other fields (as in a log entry), each form reads exactly its own bytes.
    for registration in [&plain, &addressed] {
        let pair = encode(&(registration, "next"));
        assert_eq!(
            decode::<(Registration, String)>(&pair).unwrap(),
            (registration.clone(), "next".to_string())
        );
    }
}

/// A case without an address is written as before (version 2, or 3 with a group, or 4 with
/// its extension), with the personal-data digest it had; one with an address is written at
/// version 5 and reads back whole in both formats, with or without a group; version 4 reads
/// as it was; a version-5 case without its petitioner extension is refused.
#[test]
fn a_case_with_an_address_is_version_5_and_one_without_is_unchanged() {
    let desk = Desk::new(COUNTY);
    let plain = desk.register(t(MONDAY));
    assert_eq!(plain.v, CASE_VERSION_SINGLE);
    assert_eq!(plain.address(), None);
    assert_eq!(plain.petitioner_extra, None);
    // The digest of a case without an address is the digest of its petitioner's fields, as
    // builds before addresses computed it.
    let before = personal_data_sha256(&serde_json::to_value(&plain.petitioner).unwrap());
    assert_eq!(plain.petitioner_sha256(), before);
    let bytes = plain.to_bytes();
    assert_eq!(Case::from_bytes(&bytes).unwrap().to_bytes(), bytes);

    let case = register_at(&desk, with_address(ADDRESS)).unwrap();
    assert_eq!(case.v, CASE_VERSION_ADDRESS);
    assert_ne!(
        case.petitioner_sha256(),
        before,
        "the digest says there is an address"
    );
    // The signed state holds the address's presence, never the address.
    let state = serde_json::to_string(&case.history[0]).unwrap();
    assert!(!state.contains("海楼路"), "{state}");
    for (what, value) in [
        ("a case", case.clone()),
        ("its header", case.clone().into_header().0),
    ] {
        assert_eq!(
            Case::from_bytes(&value.to_bytes()).unwrap(),
            value,
            "{what}: binary"
        );
        assert_eq!(
            Case::from_bytes(&serde_json::to_vec(&value).unwrap()).unwrap(),
            value,
            "{what}: JSON"
        );
    }
    // With a group too: the petitioner's extension comes before the group.
    let parties = arrange(
        vec![
            Party {
                id_type: IdType::Passport,
                id_number: "E12345678".into(),
                name: "John Smith".into(),
                phone: None,
                nationality: Some("GBR".into()),
            },
            Party {
                id_type: IdType::Resident,
                id_number: ID_NUMBER.into(),
                name: "张三".into(),
                phone: None,
                nationality: None,
            },
        ],
        0,
    )
    .unwrap();
    let mut grouped = with_address(ADDRESS);
    grouped.petitioner_id = "E12345678".into();
    grouped.name = "John Smith".into();
    let group_case = register_with_group(
        CaseId {
            office: desk.office.clone(),
            year: 2026,
            seq: 10,
        },
        grouped,
        document_key(SECRET, IdType::Passport, "E12345678"),
        CaseKind::Original,
        Group::of(&parties),
        &desk.ctx(t(MONDAY)),
    )
    .unwrap();
    assert_eq!(group_case.v, CASE_VERSION_ADDRESS);
    let read = Case::from_bytes(&group_case.to_bytes()).unwrap();
    assert_eq!(read, group_case);
    assert_eq!(read.group.as_ref().unwrap().petitioners(), 2);
    assert_eq!(read.address(), Some(&Personal::from(ADDRESS)));

    // Version 4 (a graded case: the extension, no address) reads as it was written.
    let mut graded = desk.register(t(MONDAY));
    desk.ok(&mut graded, t(MONDAY), accept());
    desk.ok(
        &mut graded,
        t(MONDAY),
        CaseCommand::SetGrade {
            grade: Grade::B,
            leader: "王".into(),
            department: "国土".into(),
            plan: "p".into(),
            deadline: t("2026-04-30T00:00:00+08:00"),
        },
    );
    assert_eq!(graded.v, CASE_VERSION_EXTRA);
    let v4 = graded.to_bytes();
    let read = Case::from_bytes(&v4).unwrap();
    assert_eq!(read, graded);
    assert_eq!(read.to_bytes(), v4);

    // A version-5 case whose extension is cut off is refused, not read without its address.
    let mut header = case.clone().into_header().0;
    header.petitioner_extra = None;
    assert!(matches!(
        Case::from_bytes(&header.to_bytes()),
        Err(DomainError::Corrupt { .. })
    ));
}

/// The address moves with the case to the receiver; the sender's stub keeps none. Both
/// copies' seals check (re-folding the whole history), a dump without personal data checks
/// against the digest, and an address removed on disk shows.
#[test]
fn the_address_moves_with_the_case_and_its_presence_is_signed() {
    let county = Desk::new(COUNTY);
    let township = Desk::new(TOWNSHIP);
    let county_key = Key::new(COUNTY);
    let township_key = Key::new(TOWNSHIP);
    let public = |office: &OfficeCode| {
        [&county_key, &township_key]
            .into_iter()
            .find(|key| key.office == *office)
            .map(|key| key.public())
    };
    let mut case = register_at(&county, with_address(ADDRESS)).unwrap();
    case.sign_new_entries(&county_key);
    county.ok(&mut case, t(MONDAY), transfer(TOWNSHIP));
    case.sign_new_entries(&county_key);
    let sent = Case::from_bytes(&case.to_bytes()).unwrap();
    let mut received = township.receive(&sent, t("2026-03-02T11:00:00+08:00"));
    received.sign_new_entries(&township_key);
    township.ok(&mut received, t("2026-03-03T10:00:00+08:00"), accept());
    received.sign_new_entries(&township_key);
    assert_eq!(received.address(), Some(&Personal::from(ADDRESS)));
    let digest = received.petitioner_sha256();
    assert!(received
        .check_seals(digest.as_deref(), public)
        .is_ok_and(|count| count.signed == 4));

    county.ok(
        &mut case,
        t("2026-03-02T11:00:00+08:00"),
        CaseCommand::HandoffAcked,
    );
    case.sign_new_entries(&county_key);
    assert_eq!(case.address(), None, "a stub keeps no address");
    let stub = Case::from_bytes(&case.to_bytes()).unwrap();
    assert_eq!(stub, case);
    assert!(stub
        .check_seals(stub.petitioner_sha256().as_deref(), public)
        .is_ok());

    // An operator's dump: the personal data left home, their digest carried.
    let mut dumped = received.clone();
    dumped.petitioner = None;
    dumped.petitioner_extra.as_mut().unwrap().address = None;
    let dumped = Case::from_bytes(&dumped.to_bytes()).unwrap();
    assert!(dumped.check_seals(digest.as_deref(), public).is_ok());
    let mut removed = received.clone();
    removed.petitioner_extra.as_mut().unwrap().address = None;
    assert!(matches!(
        dumped.check_seals(removed.petitioner_sha256().as_deref(), public),
        Err(SealError::StateMismatch { .. })
    ));
}
