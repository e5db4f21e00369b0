//! Bad input is refused with a typed error and changes nothing; good input of every form is taken.

mod common;

use common::*;
use liandong_domain::*;

fn registered_with(change: impl FnOnce(&mut Registration)) -> Result<Case, DomainError> {
    let desk = Desk::new(COUNTY);
    let mut registration = registration(Channel::Letter);
    change(&mut registration);
    let id = CaseId {
        office: office(COUNTY),
        year: 2026,
        seq: 1,
    };
    register(
        id,
        registration,
        petitioner_key(SECRET, ID_NUMBER),
        CaseKind::Original,
        &desk.ctx(t(MONDAY)),
    )
}

/// Channels are exactly the five CLI words; anything else is InvalidChannel.
#[test]
fn unknown_channel_word_is_refused() {
    let words: Vec<&str> = Channel::ALL
        .iter()
        .map(|channel| channel.as_str())
        .collect();
    assert_eq!(words, ["visit", "letter", "phone", "online", "video"]);
    for word in words {
        assert_eq!(word.parse::<Channel>().map(Channel::as_str), Ok(word));
    }
    assert_eq!(code("fax".parse::<Channel>()), "invalid_channel");
    assert_eq!(code("".parse::<Channel>()), "invalid_channel");
    assert_eq!(
        code(serde_json::from_str::<Channel>("\"email\"").map_err(|_| {
            DomainError::InvalidChannel {
                input: String::new(),
            }
        })),
        "invalid_channel"
    );
}

/// The other CLI words parse exactly as the contract spells them.
#[test]
fn route_opinion_satisfaction_words() {
    for (word, route) in [
        ("litigation", DeclineRoute::Litigation),
        ("arbitration", DeclineRoute::Arbitration),
        ("admin-review", DeclineRoute::AdminReview),
        ("discipline", DeclineRoute::Discipline),
    ] {
        assert_eq!(word.parse(), Ok(route));
        assert_eq!(
            serde_json::to_string(&route).unwrap_or_default(),
            format!("\"{word}\"")
        );
    }
    assert_eq!("not-support".parse(), Ok(Opinion::NotSupport));
    assert_eq!("basic".parse(), Ok(Satisfaction::Basic));
    assert_eq!(
        code("admin_review".parse::<DeclineRoute>()),
        "invalid_decline_route"
    );
    assert_eq!(code("maybe".parse::<Opinion>()), "invalid_opinion");
}

/// A summary of 4000 characters is taken; 4001 is FieldTooLong.
#[test]
fn summary_longer_than_4000_chars_is_refused() {
    assert!(registered_with(|r| r.summary = "诉".repeat(SUMMARY_CHARS_MAX)).is_ok());
    assert_eq!(
        registered_with(|r| r.summary = "a".repeat(SUMMARY_CHARS_MAX + 1)).err(),
        Some(DomainError::FieldTooLong {
            field: "summary",
            max: 4000
        })
    );
}

/// Every text field of a registration has its limit and may not be blank.
#[test]
fn registration_fields_are_bounded() {
    assert_eq!(
        registered_with(|r| r.name = "n".repeat(65).into()).err(),
        Some(DomainError::FieldTooLong {
            field: "name",
            max: 64
        })
    );
    assert_eq!(
        registered_with(|r| r.category = String::new()).err(),
        Some(DomainError::FieldEmpty { field: "category" })
    );
    assert_eq!(
        registered_with(|r| r.officer = " ".into()).err(),
        Some(DomainError::FieldEmpty { field: "officer" })
    );
    assert_eq!(
        registered_with(|r| r.phone = Some("12ab".into())).err(),
        Some(DomainError::InvalidPhone)
    );
    assert!(registered_with(|r| r.phone = None).is_ok());
    assert_eq!(
        code(registered_with(|r| r.name = "a\u{0}b".into())),
        "field_invalid"
    );
}

/// ID numbers: bad checksum, bad length, bad birth date and stray characters are refused, without echoing the number.
#[test]
fn malformed_id_numbers_are_refused() {
    for (bad, reason) in [
        (
            "530602199003071234",
            "the check digit does not match (GB 11643)",
        ),
        ("53060219900307123", "expected 18 characters"),
        ("5306021990030712355", "expected 18 characters"),
        (
            "530602199002301236",
            "the birth date (digits 7 to 14) is not a real date",
        ),
        (
            "53060219900307123A",
            "the last character must be a digit or X",
        ),
        (
            "5306021990O3071235",
            "the first 17 characters must be digits",
        ),
    ] {
        let error = registered_with(|r| r.petitioner_id = bad.into()).err();
        assert_eq!(
            error,
            Some(DomainError::InvalidIdNumber { reason }),
            "{bad}"
        );
        assert!(!error
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains(bad));
    }
    // A lowercase check 'x' is stored uppercase.
    let case = registered_with(|r| r.petitioner_id = "11010519491231002x".into())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        case.petitioner
            .map(|p| p.id_number)
            .as_ref()
            .and_then(|p| p.clear()),
        Some("11010519491231002X")
    );
}

/// Office codes are exactly 2, 4, 6 or 9 ASCII digits, with levels and parents by truncation.
#[test]
fn malformed_office_codes_are_refused() {
    for bad in [
        "",
        "5",
        "530",
        "53060",
        "5306020",
        "53060200",
        "5306020011",
        "53a602",
        "５３",
        " 5306",
    ] {
        assert_eq!(
            code(bad.parse::<OfficeCode>()),
            "invalid_office_code",
            "{bad:?}"
        );
        assert!(serde_json::from_str::<OfficeCode>(&format!("\"{bad}\"")).is_err());
    }
    let township = office(TOWNSHIP);
    assert_eq!(township.level(), Level::Township);
    let chain: Vec<String> = std::iter::successors(Some(township.clone()), OfficeCode::parent_code)
        .map(|c| c.to_string())
        .collect();
    assert_eq!(chain, ["530602001", "530602", "5306", "53"]);
    assert!(
        office("53").is_ancestor_of(&township)
            && !township.is_ancestor_of(&township)
            && township.covers(&township)
    );
    assert_eq!(
        office(COUNTY).common_ancestor(&office(OTHER_COUNTY)),
        Some(office(CITY))
    );
    assert_eq!(
        serde_json::to_string(&township).unwrap_or_default(),
        "\"530602001\""
    );
}

/// Case ids are <office>-<year>-<seq> with seq zero-padded to 6 digits; anything else is InvalidCaseId.
#[test]
fn malformed_case_ids_are_refused() {
    let id = CaseId {
        office: office(COUNTY),
        year: 2026,
        seq: 123,
    };
    assert_eq!(id.to_string(), "530602-2026-000123");
    assert_eq!("530602-2026-000123".parse(), Ok(id.clone()));
    assert_eq!(
        "530602-2026-1234567".parse::<CaseId>().map(|id| id.seq),
        Ok(1_234_567)
    );
    assert_eq!(
        serde_json::to_string(&id).unwrap_or_default(),
        "\"530602-2026-000123\""
    );
    for bad in [
        "",
        "530602-2026",
        "530602-2026-000123-1",
        "53060-2026-000123",
        "530602-26-000123",
        "530602-2026-123",
        "530602-2026-0001234",
        "530602-2026-00012a",
        "530602-2026-99999999999",
        "530602_2026_000123",
    ] {
        assert_eq!(code(bad.parse::<CaseId>()), "invalid_case_id", "{bad:?}");
    }
}

/// register() refuses an id of another office, a malformed petitioner key, and a case reviewing itself.
#[test]
fn registration_identity_is_checked() {
    let desk = Desk::new(COUNTY);
    let key = petitioner_key(SECRET, ID_NUMBER);
    let foreign = CaseId {
        office: office(OTHER_COUNTY),
        year: 2026,
        seq: 1,
    };
    let own = CaseId {
        office: office(COUNTY),
        year: 2026,
        seq: 1,
    };
    let ctx = desk.ctx(t(MONDAY));
    assert_eq!(
        code(register(
            foreign,
            registration(Channel::Visit),
            key.clone(),
            CaseKind::Original,
            &ctx
        )),
        "case_id_office_mismatch"
    );
    assert_eq!(
        code(register(
            own.clone(),
            registration(Channel::Visit),
            "beef".into(),
            CaseKind::Original,
            &ctx
        )),
        "invalid_petitioner_key"
    );
    let itself = CaseKind::Review { of: own.clone() };
    assert_eq!(
        code(register(
            own,
            registration(Channel::Visit),
            key,
            itself,
            &ctx
        )),
        "field_invalid"
    );
}

/// Every error has a stable code, and malformed input is told apart from forbidden transitions.
#[test]
fn errors_have_codes_and_classes() {
    assert!(DomainError::FieldEmpty { field: "x" }.is_invalid_input());
    assert!(!DomainError::AlreadyAccepted.is_invalid_input());
    assert_eq!(
        DomainError::InTransit { to: office(CITY) }.code(),
        "in_transit"
    );
    assert_eq!(
        DomainError::ReturnWindowClosed.to_string(),
        "the return window (5 working days from receipt) has closed"
    );
}

/// A command that serialises (the node logs them) reads back identically.
#[test]
fn commands_round_trip_through_serde() {
    let commands = [
        accept(),
        CaseCommand::RequestReview,
        CaseCommand::Decline {
            route: DeclineRoute::Discipline,
            officer: "Li".into(),
        },
        assign(TOWNSHIP, 30),
        CaseCommand::Evaluate {
            satisfaction: Satisfaction::Dissatisfied,
        },
    ];
    for command in commands {
        let json = serde_json::to_string(&command).unwrap_or_default();
        assert_eq!(
            serde_json::from_str::<CaseCommand>(&json).ok(),
            Some(command),
            "{json}"
        );
    }
}
