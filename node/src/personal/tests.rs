use liandong_domain::{
    register, Calendar, CaseId, CaseKind, Channel, Context, Personal, Registration,
};

use super::*;

const PHONE: &str = "13912345678";
const ID_NUMBER: &str = "530602198001010012";

fn office(code: &str) -> OfficeCode {
    code.parse().unwrap()
}

fn seal_for(code: &str, key: u8) -> OfficeSeal {
    OfficeSeal::new(office(code), &[key; DATA_KEY_BYTES], b"secret".to_vec())
}

fn registration() -> Registration {
    Registration {
        channel: Channel::Visit,
        petitioner_id: ID_NUMBER.into(),
        name: "张三".into(),
        phone: Some(PHONE.into()),
        category: "housing".into(),
        summary: "The roof leaks.".into(),
        location: None,
        officer: "li".into(),
        address: None,
    }
}

/// A case filed at 530602001 as the API files it: sealed before the engine sees it.
fn sealed_case(seal: &OfficeSeal) -> Case {
    let mut registration = registration();
    let key = seal.seal_registration(&mut registration).unwrap();
    let calendar = Calendar::china();
    let id = CaseId {
        office: seal.office().clone(),
        year: 2026,
        seq: 1,
    };
    let context = Context::new(seal.office(), 1_767_225_600_000, &calendar);
    register(id, registration, key, CaseKind::Original, &context).unwrap()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// A value sealed for a field of a petitioner at an office opens there, and nowhere else.
#[test]
fn a_sealed_value_opens_only_where_it_was_sealed() {
    let seal = seal_for("530602001", 7);
    let sealed = seal.seal("key-a", Field::Phone, PHONE);
    assert_eq!(seal.open("key-a", Field::Phone, &sealed).unwrap(), PHONE);
    assert!(!contains(sealed.bytes(), PHONE));
    // A fresh nonce each time: the same value seals to different bytes.
    assert_ne!(seal.seal("key-a", Field::Phone, PHONE), sealed);

    // Another office with the very same key bytes: the associated data differs.
    let elsewhere = seal_for("530602002", 7);
    assert!(matches!(
        elsewhere.open("key-a", Field::Phone, &sealed),
        Err(SealError::Open { .. })
    ));
    // Another petitioner's case, another field.
    assert!(matches!(
        seal.open("key-b", Field::Phone, &sealed),
        Err(SealError::Open { .. })
    ));
    assert!(matches!(
        seal.open("key-a", Field::Name, &sealed),
        Err(SealError::Open { .. })
    ));
    // Another key: named by its id, refused before trying.
    let rotated = seal_for("530602001", 8);
    assert!(matches!(
        rotated.open("key-a", Field::Phone, &sealed),
        Err(SealError::UnknownKey { .. })
    ));
}

/// Changing any byte of a sealed value past its mark is noticed.
#[test]
fn a_tampered_value_does_not_open() {
    let seal = seal_for("530602001", 7);
    let sealed = seal.seal("key-a", Field::IdNumber, ID_NUMBER);
    for at in 1..sealed.bytes().len() {
        let mut bytes = sealed.bytes().to_vec();
        bytes[at] ^= 0x01;
        let tampered = Sealed::from_bytes(bytes).unwrap();
        assert!(
            seal.open("key-a", Field::IdNumber, &tampered).is_err(),
            "byte {at} changed and the value still opened"
        );
    }
    let short = Sealed::from_bytes(sealed.bytes()[..HEADER_BYTES].to_vec()).unwrap();
    assert!(seal.open("key-a", Field::IdNumber, &short).is_err());
}

/// A case filed through the seal holds no personal data in clear in any stored form, and opens
/// back to what was typed (the ID number normalised).
#[test]
fn a_stored_case_holds_no_phone_or_id_number() {
    let seal = seal_for("530602001", 7);
    let case = sealed_case(&seal);
    let (header, _) = case.clone().into_header();
    for bytes in [
        case.to_bytes(),
        crate::store::codec::encode(&header),
        serde_json::to_vec(&case).unwrap(),
    ] {
        assert!(!contains(&bytes, PHONE));
        assert!(!contains(&bytes, ID_NUMBER));
        assert!(!contains(&bytes, "张三"));
    }
    // The petitioner key is the one computed from the clear ID number.
    assert_eq!(
        case.petitioner_key,
        liandong_domain::petitioner_key(b"secret", ID_NUMBER)
    );
    let mut opened = case.clone();
    seal.open_case(&mut opened).unwrap();
    let petitioner = opened.petitioner.clone().unwrap();
    assert_eq!(petitioner.phone, Some(Personal::from(PHONE)));
    assert_eq!(petitioner.id_number, ID_NUMBER);
    assert_eq!(petitioner.name, "张三");
    // The document a reader gets is the opened case.
    let document = seal.open_document(&case.to_bytes()).unwrap();
    assert_eq!(Case::from_bytes(&document).unwrap(), opened);
    // Another office cannot open it.
    let mut stolen = case.clone();
    assert!(seal_for("530602002", 7).open_case(&mut stolen).is_err());
}

/// A handoff goes on the wire opened, and the receiver seals it under its own key; a value
/// that arrives sealed is refused.
#[test]
fn a_handoff_is_opened_to_send_and_sealed_on_receipt() {
    let sender = seal_for("530602001", 7);
    let receiver = seal_for("530602", 9);
    let case = sealed_case(&sender);
    let stored = Envelope {
        from: office("530602001"),
        to: office("530602"),
        seq: 1,
        sent_at: 0,
        body: Body::Handoff {
            case: CaseDocument::of(&case),
        },
    };
    assert_eq!(
        check_arrived_clear(&stored),
        Err(SealError::ArrivedSealed {
            field: "petitioner"
        })
    );
    let mut wire = stored.clone();
    sender.open_envelope(&mut wire).unwrap();
    check_arrived_clear(&wire).unwrap();
    wire.body.validate().unwrap();
    let mut received = wire.clone();
    receiver.seal_envelope(&mut received).unwrap();
    let Body::Handoff { case: document } = &received.body else {
        unreachable!()
    };
    assert!(!contains(document.bytes(), PHONE));
    let mut opened = document.case().unwrap();
    receiver.open_case(&mut opened).unwrap();
    assert_eq!(
        opened.petitioner.unwrap().phone,
        Some(Personal::from(PHONE))
    );
    // The sender's seal does not open at the receiver.
    let mut sent_sealed = stored.clone();
    assert!(receiver.open_envelope(&mut sent_sealed).is_err());
}

/// The address is a field of its own: sealed at filing (bound to its field: it does not open as
/// another), sealed where it lies when a case holds it clear (the same bytes on every replica),
/// and opened for a reader.
#[test]
fn an_address_is_sealed_as_its_own_field_filed_or_resealed() {
    const ADDRESS: &str = "昭通市昭阳区海楼路 88 号";
    let seal = seal_for("530602001", 7);
    let mut filed = registration();
    filed.address = Some(ADDRESS.into());
    let key = seal.seal_registration(&mut filed).unwrap();
    let Some(Personal::Sealed(sealed)) = &filed.address else {
        panic!("the address is sealed: {filed:?}")
    };
    assert!(!contains(sealed.bytes(), ADDRESS));
    assert_eq!(seal.open(&key, Field::Address, sealed).unwrap(), ADDRESS);
    assert!(seal.open(&key, Field::Name, sealed).is_err());

    // A case holding its address in clear (every field clear, as before sealing).
    let mut clear = registration();
    clear.address = Some(ADDRESS.into());
    let calendar = Calendar::china();
    let office = office("530602001");
    let context = Context::new(&office, 1_767_225_600_000, &calendar);
    let id: CaseId = "530602001-2026-000002".parse().unwrap();
    let key = liandong_domain::petitioner_key(b"secret", ID_NUMBER);
    let case = register(id, clear, key, CaseKind::Original, &context).unwrap();
    assert!(crate::machine::reseal::has_clear(&case));
    let (mut one, mut two) = (case.clone(), case.clone());
    assert_eq!(seal.reseal_case(&mut one), (4, Vec::new()));
    seal.reseal_case(&mut two);
    assert_eq!(one.to_bytes(), two.to_bytes());
    assert!(!contains(&one.to_bytes(), ADDRESS));
    assert!(!crate::machine::reseal::has_clear(&one));
    assert!(has_sealed(&one));
    seal.open_case(&mut one).unwrap();
    assert_eq!(one, case);
}
