//! Sealed history entries: each entry records the hash of the whole case state after its event
//! and the applying office's Ed25519 signature over its hash. A rewrite with recomputed hashes
//! keeps the chain intact but not the signatures; a change outside the chain (a phone number
//! removed, a handler) no longer matches the state the last entry signed; re-folding the events gives the
//! states the entries recorded.

mod common;

use std::collections::BTreeMap;

use common::*;
use liandong_domain::codec::{decode, encode};
use liandong_domain::*;

/// Public keys by office.
struct Keys(BTreeMap<OfficeCode, Vec<u8>>);

impl Keys {
    fn of(keys: &[&Key]) -> Keys {
        Keys(
            keys.iter()
                .map(|k| (k.office.clone(), k.public()))
                .collect(),
        )
    }
    fn lookup(&self) -> impl Fn(&OfficeCode) -> Option<Vec<u8>> + '_ {
        |office| self.0.get(office).cloned()
    }
}

/// Checks `case`'s seals as the office holding it would (with its personal data).
fn check(case: &Case, keys: &Keys) -> Result<SealCount, SealError> {
    case.check_seals(case.petitioner_sha256().as_deref(), keys.lookup())
}

/// A case registered and accepted at the county, transferred to its township, which accepts
/// it and replies: entries signed by the office that applied each.
fn moved_case() -> (Case, Key, Key) {
    let county = Desk::new(COUNTY);
    let township = Desk::new(TOWNSHIP);
    let county_key = Key::new(COUNTY);
    let township_key = Key::new(TOWNSHIP);
    let mut case = county.register(t(MONDAY));
    case.sign_new_entries(&county_key);
    county.ok(
        &mut case,
        t("2026-03-02T10:00:00+08:00"),
        transfer(TOWNSHIP),
    );
    case.sign_new_entries(&county_key);
    let mut received = township.receive(&case, t("2026-03-02T11:00:00+08:00"));
    received.sign_new_entries(&township_key);
    township.ok(&mut received, t("2026-03-03T10:00:00+08:00"), accept());
    township.ok(
        &mut received,
        t("2026-03-20T10:00:00+08:00"),
        reply(Opinion::Explain),
    );
    received.sign_new_entries(&township_key);
    (received, county_key, township_key)
}

#[test]
fn signed_entries_of_a_moved_case_verify_against_each_signers_key() {
    let (case, county_key, township_key) = moved_case();
    assert!(case.history.iter().all(|entry| entry.signature.is_some()));
    assert_eq!(
        case.history
            .iter()
            .map(|entry| entry.signer.clone().unwrap().to_string())
            .collect::<Vec<_>>(),
        [COUNTY, COUNTY, TOWNSHIP, TOWNSHIP, TOWNSHIP]
    );
    assert_eq!(case.verify_chain(), Ok(()));
    let keys = Keys::of(&[&county_key, &township_key]);
    assert_eq!(
        check(&case, &keys),
        Ok(SealCount {
            signed: 5,
            unsigned: 0
        })
    );
    // The township's key does not stand for the county.
    let wrong = Keys(BTreeMap::from([
        (office(COUNTY), township_key.public()),
        (office(TOWNSHIP), township_key.public()),
    ]));
    assert!(matches!(
        check(&case, &wrong),
        Err(SealError::BadSignature { seq: 1, .. })
    ));
    let unknown = Keys::of(&[&township_key]);
    assert!(matches!(
        check(&case, &unknown),
        Err(SealError::UnknownSigner { seq: 1, .. })
    ));
}

#[test]
fn changing_the_event_the_state_hash_or_the_signature_fails() {
    let (case, county_key, township_key) = moved_case();
    let keys = Keys::of(&[&county_key, &township_key]);

    let mut event = case.clone();
    event.history[3].detail["officer"] = "Someone Else".into();
    assert_eq!(code(event.verify_chain()), "chain_broken");

    // The event changed and the entry's hash recomputed: the signature is over the old hash.
    event.history[3].hash = event.history[3].compute_hash();
    assert!(matches!(
        check(&event, &keys),
        Err(SealError::BadSignature { seq: 4, .. })
    ));

    let mut state = case.clone();
    state.history[2].state_sha256 = Some("00".repeat(32));
    assert_eq!(code(state.verify_chain()), "chain_broken");
    state.history[2].hash = state.history[2].compute_hash();
    assert!(matches!(
        check(&state, &keys),
        Err(SealError::BadSignature { seq: 3, .. })
    ));

    // Even signed with the right key, a state hash that re-folding the events does not give.
    let mut refold = case.clone();
    refold.history[2].state_sha256 = Some("11".repeat(32));
    refold.history[2].hash = refold.history[2].compute_hash();
    refold.history[2].sign(&township_key);
    for index in 3..refold.history.len() {
        refold.history[index].prev_hash = refold.history[index - 1].hash.clone();
        refold.history[index].hash = refold.history[index].compute_hash();
        refold.history[index].sign(&township_key);
    }
    assert_eq!(refold.verify_chain(), Ok(()));
    assert!(matches!(
        check(&refold, &keys),
        Err(SealError::StateMismatch { seq: 3, .. })
    ));

    let mut signature = case.clone();
    let mut bytes = hex::decode(signature.history[4].signature.clone().unwrap()).unwrap();
    bytes[0] ^= 1;
    signature.history[4].signature = Some(hex::encode(bytes));
    assert_eq!(
        signature.verify_chain(),
        Ok(()),
        "the signature is outside the chain"
    );
    assert!(matches!(
        check(&signature, &keys),
        Err(SealError::BadSignature { seq: 5, .. })
    ));

    let mut stripped = case.clone();
    stripped.history[4].signature = None;
    assert_eq!(check(&stripped, &keys), Err(SealError::Unsigned { seq: 5 }));
}

/// The attack of issue 10: an officer rewritten in entry 2 and every later hash recomputed. The
/// chain verifies; the signatures do not.
#[test]
fn a_history_with_recomputed_hashes_but_old_signatures_fails() {
    let (case, county_key, township_key) = moved_case();
    let keys = Keys::of(&[&county_key, &township_key]);
    let mut rewritten = case.clone();
    rewritten.history[1].detail["officer"] = "Nobody".into();
    for index in 1..rewritten.history.len() {
        if index > 1 {
            rewritten.history[index].prev_hash = rewritten.history[index - 1].hash.clone();
        }
        rewritten.history[index].hash = rewritten.history[index].compute_hash();
    }
    assert_eq!(rewritten.verify_chain(), Ok(()));
    assert!(matches!(
        check(&rewritten, &keys),
        Err(SealError::BadSignature { seq: 2, .. })
    ));

    // Re-signed with another office's key under the county's name: refused too.
    let mut resigned = rewritten.clone();
    resigned.history[1].sign(&township_key);
    resigned.history[1].signer = Some(office(COUNTY));
    assert!(matches!(
        check(&resigned, &keys),
        Err(SealError::BadSignature { seq: 2, .. })
    ));
}

#[test]
fn a_change_outside_the_chain_no_longer_matches_the_signed_state() {
    let (case, county_key, township_key) = moved_case();
    let keys = Keys::of(&[&county_key, &township_key]);
    let mut phone = case.clone();
    // The values are sealed per office and authenticated by their cipher; the signed state
    // says which fields a case has: a phone removed (or added) on disk shows.
    phone.petitioner.as_mut().unwrap().phone = None;
    assert_eq!(phone.verify_chain(), Ok(()));
    assert!(matches!(
        check(&phone, &keys),
        Err(SealError::StateMismatch { seq: 5, .. })
    ));
    let mut handler = case.clone();
    handler.handler = Some("Somebody".into());
    assert!(matches!(
        check(&handler, &keys),
        Err(SealError::StateMismatch { seq: 5, .. })
    ));
}

/// An operator's dump leaves the personal data out and carries their digest: the seals check
/// the same, and a phone number removed on disk shows in the digest.
#[test]
fn a_copy_without_personal_data_checks_against_their_digest() {
    let (case, county_key, township_key) = moved_case();
    let keys = Keys::of(&[&county_key, &township_key]);
    let digest = case.petitioner_sha256();
    let mut dumped = case.clone();
    dumped.petitioner = None;
    assert_eq!(
        dumped.check_seals(digest.as_deref(), keys.lookup()),
        Ok(SealCount {
            signed: 5,
            unsigned: 0
        })
    );
    let mut phone = case.clone();
    // The values are sealed per office and authenticated by their cipher; the signed state
    // says which fields a case has: a phone removed (or added) on disk shows.
    phone.petitioner.as_mut().unwrap().phone = None;
    assert!(matches!(
        dumped.check_seals(phone.petitioner_sha256().as_deref(), keys.lookup()),
        Err(SealError::StateMismatch { seq: 5, .. })
    ));
    assert!(dumped.check_seals(None, keys.lookup()).is_err());
}

/// The county's stub of a transferred case holds no personal data: its seals check from the
/// handoff it completed on, and its signatures all along.
#[test]
fn a_forwarding_stub_checks_too() {
    let county = Desk::new(COUNTY);
    let key = Key::new(COUNTY);
    let keys = Keys::of(&[&key]);
    let mut case = county.register(t(MONDAY));
    county.ok(
        &mut case,
        t("2026-03-02T10:00:00+08:00"),
        transfer(TOWNSHIP),
    );
    let township = Desk::new(TOWNSHIP);
    let _ = township.receive(&case, t("2026-03-02T11:00:00+08:00"));
    county.ok(
        &mut case,
        t("2026-03-02T11:00:00+08:00"),
        CaseCommand::HandoffAcked,
    );
    case.sign_new_entries(&key);
    assert!(
        matches!(case.status, Status::Forwarded { .. }),
        "{:?}",
        case.status
    );
    assert_eq!(case.petitioner, None);
    assert_eq!(check(&case, &keys).map(|count| count.signed), Ok(3));
    let mut tampered = case.clone();
    tampered.category = "other".into();
    assert!(check(&tampered, &keys).is_err());
}

#[test]
fn re_folding_the_events_gives_the_recorded_state_hashes() {
    let (case, ..) = moved_case();
    let mut refolded: Option<Case> = None;
    for entry in &case.history {
        let event = entry.event().unwrap();
        match &mut refolded {
            None => {
                // The registration's own data is not in events: start from the registered case.
                let county = Desk::new(COUNTY);
                let fresh = county.register(t(MONDAY));
                assert_eq!(fresh.history[0].state_sha256, entry.state_sha256);
                refolded = Some(fresh);
            }
            Some(refolded) => {
                refolded.apply(&event);
                assert_eq!(
                    refolded.history.last().unwrap().state_sha256,
                    entry.state_sha256,
                    "entry {}",
                    entry.seq
                );
            }
        }
    }
    let last = case.clone();
    assert_eq!(
        Some(last.state_sha256()),
        case.history.last().unwrap().state_sha256
    );
}

/// Entries written before sealing (no state hash, no signature) stay valid and are counted; an
/// unsealed entry cannot follow a sealed one.
#[test]
fn unsigned_entries_of_older_builds_are_counted_not_refused() {
    let (case, county_key, township_key) = moved_case();
    let keys = Keys::of(&[&county_key, &township_key]);
    let mut old = case.clone();
    // The first two entries as an older build wrote them.
    for index in 0..2 {
        if index > 0 {
            old.history[index].prev_hash = old.history[index - 1].hash.clone();
        }
        let entry = &mut old.history[index];
        entry.state_sha256 = None;
        entry.signer = None;
        entry.signature = None;
        entry.hash = entry.compute_hash();
    }
    // The third entry follows the rewritten chain: re-link and re-sign it as the township.
    old.history[2].prev_hash = old.history[1].hash.clone();
    old.history[2].hash = old.history[2].compute_hash();
    old.history[2].sign(&township_key);
    for index in 3..old.history.len() {
        old.history[index].prev_hash = old.history[index - 1].hash.clone();
        old.history[index].hash = old.history[index].compute_hash();
        old.history[index].sign(&township_key);
    }
    assert_eq!(old.verify_chain(), Ok(()));
    assert_eq!(
        check(&old, &keys),
        Ok(SealCount {
            signed: 3,
            unsigned: 2
        })
    );
    let mut mixed = old.clone();
    mixed.history[3].state_sha256 = None;
    mixed.history[3].signer = None;
    mixed.history[3].signature = None;
    mixed.history[3].hash = mixed.history[3].compute_hash();
    mixed.history[4].prev_hash = mixed.history[3].hash.clone();
    mixed.history[4].hash = mixed.history[4].compute_hash();
    assert_eq!(code(mixed.verify_chain()), "chain_broken");
}

/// The binary form: a sealed entry round-trips; an unsealed one keeps the layout of the builds
/// before sealing, so entries and cases they stored still decode.
#[test]
fn entries_round_trip_and_older_builds_binary_entries_still_decode() {
    let (case, ..) = moved_case();
    for entry in &case.history {
        assert_eq!(decode::<HistoryEntry>(&encode(entry)).unwrap(), *entry);
        let json = serde_json::to_value(entry).unwrap();
        assert!(json.get("signature").is_some());
        assert_eq!(
            serde_json::from_value::<HistoryEntry>(json).unwrap(),
            *entry
        );
    }
    assert_eq!(Case::from_bytes(&case.to_bytes()).unwrap(), case);

    // The layout of the builds before sealing: seven fields, the detail as canonical JSON text.
    let entry = &case.history[0];
    let old_layout = (
        entry.seq,
        entry.at,
        entry.office.clone(),
        entry.kind.clone(),
        canonical_json(&entry.detail),
        entry.prev_hash.clone(),
        entry.hash.clone(),
    );
    let decoded: HistoryEntry = decode(&encode(&old_layout)).unwrap();
    assert_eq!(decoded.seq, entry.seq);
    assert_eq!(decoded.detail, entry.detail);
    assert_eq!(decoded.state_sha256, None);
    // Two old-layout entries in a row (as in a case of that build) decode one after the other.
    let pair: Vec<HistoryEntry> = decode(&encode(&vec![old_layout.clone(), old_layout])).unwrap();
    assert_eq!(pair.len(), 2);
    assert!(!pair[1].is_sealed());
    // An unsealed entry is written in that layout.
    assert_eq!(
        encode(&pair[0]),
        encode(&(
            entry.seq,
            entry.at,
            entry.office.clone(),
            entry.kind.clone(),
            canonical_json(&entry.detail),
            entry.prev_hash.clone(),
            entry.hash.clone(),
        ))
    );
    let old_json = serde_json::to_value(&pair[0]).unwrap();
    assert!(old_json.get("signature").is_none());
}

/// The version-4 extension (a follow-up opened and recorded) is part of the signed state, and
/// re-folding the events gives it back.
#[test]
fn a_follow_up_is_in_the_signed_state_and_refolds() {
    let (mut case, county_key, township_key) = moved_case();
    let township = Desk::new(TOWNSHIP);
    township.ok(
        &mut case,
        t("2026-03-21T10:00:00+08:00"),
        evaluate(Satisfaction::Dissatisfied),
    );
    township.ok(
        &mut case,
        t("2026-03-23T10:00:00+08:00"),
        CaseCommand::FollowUp {
            note: "Visited; a second inspection is booked".into(),
            officer: "Officer Zhao".into(),
        },
    );
    case.sign_new_entries(&township_key);
    assert_eq!(case.v, CASE_VERSION_EXTRA);
    let keys = Keys::of(&[&county_key, &township_key]);
    assert_eq!(check(&case, &keys).map(|count| count.signed), Ok(8));

    // The record changed outside the chain no longer matches the state the last entry signed.
    let mut changed = case.clone();
    if let Some(record) = changed
        .extra
        .as_mut()
        .and_then(|extra| extra.followed_up.as_mut())
    {
        record.note = "Nothing found".into();
    }
    assert!(matches!(
        check(&changed, &keys),
        Err(SealError::StateMismatch { .. })
    ));
}
