//! The link protocol's decisions, each alone: batch selection, the receiver's check (gap,
//! replay, oversize, wrong link), the marking of messages it cannot admit (invalid fields, an
//! unknown kind), backoff growth, cap and jitter, and how a reply is interpreted.

use liandong_domain::message::{Body, Envelope, Summary};
use liandong_domain::{Calendar, CaseId, CaseKind, Context};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;
use crate::machine::tests::{code, registration};

/// A valid summary of case `seq` of township 530602001.
fn summary(seq: u32) -> Summary {
    let office = code("530602001");
    let calendar = Calendar::china();
    let registration = registration();
    let id = CaseId {
        office: office.clone(),
        year: 2026,
        seq,
    };
    let key =
        liandong_domain::petitioner_key(b"secret", registration.petitioner_id.clear().unwrap());
    let context = Context::new(&office, 1_767_574_800_000, &calendar);
    let case = liandong_domain::register(id, registration, key, CaseKind::Original, &context)
        .expect("a valid registration");
    Summary::of(&case)
}

fn envelope(seq: u64) -> Envelope {
    Envelope {
        from: code("530602001"),
        to: code("530602"),
        seq,
        sent_at: 1_767_574_800_000,
        body: Body::IndexUpdate {
            summary: summary(u32::try_from(seq).unwrap_or(1)),
        },
    }
}

fn envelopes(seqs: std::ops::RangeInclusive<u64>) -> Vec<Envelope> {
    seqs.map(envelope).collect()
}

fn inbound(envelopes: Vec<Envelope>) -> Inbound {
    let bytes = envelopes.iter().map(wire_bytes).sum();
    Inbound::of(code("530602001"), code("530602"), envelopes, bytes)
}

/// Message `seq` of the link as a newer build sends a kind this one does not know: only its
/// link and number decoded.
fn unknown_kind(seq: u64) -> Arrived {
    Arrived::Unreadable {
        from: code("530602001"),
        to: code("530602"),
        seq,
        code: UNKNOWN_MESSAGE_KIND,
        reason: "a kind this build does not know".into(),
    }
}

/// Message `seq` with a category the case engine refuses (too long).
fn stretched(seq: u64) -> Envelope {
    let mut envelope = envelope(seq);
    if let Body::IndexUpdate { summary } = &mut envelope.body {
        summary.category = "c".repeat(5_000);
    }
    envelope
}

fn watermark(applied_through: u64) -> LinkIn {
    LinkIn {
        applied_through,
        applied: applied_through,
    }
}

fn link(last_seq: u64, acked_through: u64) -> LinkOut {
    LinkOut {
        last_seq,
        acked_through,
    }
}

/// A batch takes the oldest messages in order, at most the item budget (fails if the budget
/// is not applied or the order not checked).
#[test]
fn a_batch_takes_the_oldest_messages_within_the_item_budget() {
    let waiting = envelopes(11..=400);
    let batch = select_batch(&link(400, 10), waiting).unwrap().unwrap();
    assert_eq!(batch.envelopes.len(), DELIVER_BATCH_ITEMS_MAX);
    assert_eq!((batch.first_seq(), batch.last_seq()), (11, 266));
    assert_eq!(
        batch.bytes,
        batch.envelopes.iter().map(wire_bytes).sum::<usize>()
    );
    assert_eq!(select_batch(&link(10, 10), Vec::new()), Ok(None));
    let skipped = select_batch(&link(400, 10), envelopes(12..=20));
    assert!(skipped.unwrap_err().contains("12 where 11"));
    let lost = select_batch(&link(20, 10), Vec::new());
    assert!(lost.unwrap_err().contains("10 messages pending"));
}

/// The byte budget cuts a batch, but its first message always goes, even one larger than the
/// rest of the budget (fails if a large message could stall its link).
#[test]
fn the_byte_budget_cuts_a_batch_but_the_first_message_always_goes() {
    let mut big = envelope(1);
    let overhead = wire_bytes(&big);
    if let Body::IndexUpdate { summary } = &mut big.body {
        // Not a valid summary: only its size matters to the sender. It leaves less room than
        // the smallest message needs.
        summary.category = "x".repeat(DELIVER_BATCH_BYTES_MAX - overhead - 20);
    }
    let big_bytes = wire_bytes(&big);
    assert!(big_bytes <= ENVELOPE_BYTES_MAX);
    let mut waiting = vec![big];
    waiting.extend(envelopes(2..=5));
    let batch = select_batch(&link(5, 0), waiting).unwrap().unwrap();
    assert_eq!(
        batch.envelopes.len(),
        1,
        "the next message would exceed the budget"
    );
    assert_eq!(batch.bytes, big_bytes);
    let small = select_batch(&link(5, 1), envelopes(2..=5))
        .unwrap()
        .unwrap();
    assert_eq!(small.envelopes.len(), 4);
    assert!(small.bytes <= DELIVER_BATCH_BYTES_MAX);
}

/// The receiver's check, row by row: what passes is proposed from the watermark on, a replay is
/// answered without the log, and every fault of the link is refused before anything is proposed
/// (also in a batch whose messages include ones that are not admitted: the link's fault wins).
#[test]
fn the_receiver_checks_a_batch_before_proposing_anything() {
    let here = watermark(10);
    // Fresh: everything is proposed.
    assert_eq!(
        check_batch(&inbound(envelopes(11..=20)), true, &here),
        Ok(Admit::Propose { first_new: 11 })
    );
    // Overlapping the watermark: proposed whole, the new messages from the watermark on.
    assert_eq!(
        check_batch(&inbound(envelopes(8..=20)), true, &here),
        Ok(Admit::Propose { first_new: 11 })
    );
    // A replay: answered from the watermark (which may lie past the batch).
    assert_eq!(
        check_batch(&inbound(envelopes(3..=7)), true, &here),
        Ok(Admit::Replay {
            applied_through: 10,
            refusals_of: 3..=10
        })
    );
    let refused = |batch: Inbound, known: bool| check_batch(&batch, known, &here).unwrap_err();
    assert!(matches!(
        refused(inbound(envelopes(12..=20)), true),
        Refuse::Gap {
            expected: 11,
            first: 12,
            ..
        }
    ));
    assert!(matches!(
        refused(inbound(envelopes(11..=20)), false),
        Refuse::UnknownSender { .. }
    ));
    assert!(matches!(
        refused(inbound(Vec::new()), true),
        Refuse::Items { items: 0 }
    ));
    assert!(matches!(
        refused(inbound(envelopes(11..=300)), true),
        Refuse::Items { items: 290 }
    ));
    let mut oversize = inbound(envelopes(11..=12));
    oversize.bytes = DELIVER_BATCH_BYTES_MAX + 1;
    assert!(matches!(refused(oversize, true), Refuse::Bytes { .. }));
    let mut elsewhere = envelopes(11..=12);
    elsewhere[1].to = code("5306");
    assert!(matches!(
        refused(inbound(elsewhere), true),
        Refuse::WrongLink { seq: 12, .. }
    ));
    let mut skipping = envelopes(11..=13);
    skipping.remove(1);
    assert!(matches!(
        refused(inbound(skipping), true),
        Refuse::NotConsecutive {
            previous: 11,
            seq: 13
        }
    ));
    // A message's own fault does not refuse the batch: it is admitted (and marked later).
    let with_bad = |seqs: std::ops::RangeInclusive<u64>, bad: u64| {
        let mut batch = inbound(envelopes(seqs));
        let at = batch.envelopes.iter().position(|a| a.seq() == bad).unwrap();
        batch.envelopes[at] = unknown_kind(bad);
        batch
    };
    assert_eq!(
        check_batch(&with_bad(11..=13, 12), true, &here),
        Ok(Admit::Propose { first_new: 11 })
    );
    let mut stretched = inbound(envelopes(11..=12));
    stretched.envelopes[1] = Arrived::Envelope(self::stretched(12));
    assert_eq!(
        check_batch(&stretched, true, &here),
        Ok(Admit::Propose { first_new: 11 })
    );
    // ...but a fault of the link still refuses the whole batch, an unreadable message or not.
    let mut gap = with_bad(12..=14, 13);
    assert!(matches!(
        refused(gap.clone(), true),
        Refuse::Gap { first: 12, .. }
    ));
    if let Arrived::Unreadable { to, .. } = &mut gap.envelopes[1] {
        *to = code("5306");
    }
    gap.envelopes.remove(0);
    assert!(matches!(
        refused(gap, true),
        Refuse::WrongLink { seq: 13, .. }
    ));
    let mut reversed = with_bad(11..=12, 11);
    reversed.envelopes.reverse();
    assert!(matches!(
        refused(reversed, true),
        Refuse::NotConsecutive {
            previous: 12,
            seq: 11
        }
    ));
    assert!(matches!(
        refused(with_bad(11..=12, 12), false),
        Refuse::UnknownSender { .. }
    ));
    let mut oversize = with_bad(11..=12, 12);
    oversize.bytes = DELIVER_BATCH_BYTES_MAX + 1;
    assert!(matches!(refused(oversize, true), Refuse::Bytes { .. }));
}

/// What the receiver could not admit becomes a marker of its number, committed as refused
/// without its content, and the rest of the batch is proposed as it came, row by row (fails if
/// one bad message refuses its batch, which wedged the link: the sender retried it forever).
#[test]
fn a_message_that_is_not_admitted_is_marked_and_the_rest_proposed() {
    let mut long_reason = unknown_kind(12);
    if let Arrived::Unreadable { reason, .. } = &mut long_reason {
        *reason = "r".repeat(10_000);
    }
    // (the batch 11..=13 with message 12 replaced, the marker's code and reason's start)
    let rows: [(Arrived, &str, &str); 3] = [
        (
            Arrived::Envelope(stretched(12)),
            INVALID_MESSAGE,
            "the index_update is invalid: field_too_long",
        ),
        (unknown_kind(12), UNKNOWN_MESSAGE_KIND, "a kind this build"),
        (long_reason, UNKNOWN_MESSAGE_KIND, "rrr"),
    ];
    for (bad, expected, reason_start) in rows {
        let mut batch = inbound(envelopes(11..=13));
        batch.envelopes[1] = bad;
        let Operation::ReceiveMarked { from, messages } = proposal(batch) else {
            panic!("a marked batch for {expected}");
        };
        assert_eq!(from, code("530602001"));
        let seqs: Vec<u64> = messages.iter().map(Received::seq).collect();
        assert_eq!(
            seqs,
            vec![11, 12, 13],
            "{expected}: the whole batch, in order"
        );
        assert_eq!(messages[0], Received::Message(envelope(11)));
        assert_eq!(messages[2], Received::Message(envelope(13)));
        let Received::Unadmitted {
            seq,
            code: marked,
            reason,
        } = &messages[1]
        else {
            panic!("message 12 is a marker: {:?}", messages[1]);
        };
        assert_eq!((*seq, marked.as_str()), (12, expected));
        assert!(reason.starts_with(reason_start), "{expected}: {reason}");
        assert!(reason.chars().count() <= UNADMITTED_REASON_CHARS_MAX);
    }
    // Every message admitted: the operation builds before markers propose, and apply.
    assert!(matches!(
        proposal(inbound(envelopes(11..=13))),
        Operation::Receive { .. }
    ));
    // A batch of nothing but a marker is still a batch: the link moves past it.
    let lone = Inbound {
        envelopes: vec![unknown_kind(11)],
        ..inbound(Vec::new())
    };
    let Operation::ReceiveMarked { messages, .. } = proposal(lone) else {
        panic!("a marked batch");
    };
    assert_eq!(messages.len(), 1);
}

/// What is proposed is the whole batch, on the batch's link: its first message tells the state
/// machine where the sender's outbox begins (fails if the batch is trimmed to its new messages,
/// which made the receiver forget refusals the sender still waited for).
#[test]
fn the_proposal_carries_the_whole_batch() {
    let Operation::Receive { from, envelopes } = proposal(inbound(envelopes(8..=20))) else {
        panic!("a Receive");
    };
    assert_eq!(from, code("530602001"));
    assert_eq!(envelopes.first().map(|e| e.seq), Some(8));
    assert_eq!(envelopes.len(), 13);
}

/// Backoff doubles from the base to the cap, each pause shortened by at most half (fails if it
/// grows unbounded, never grows, or its jitter leaves the bounds).
#[test]
fn backoff_doubles_to_its_cap_with_bounded_jitter() {
    let mut random = StdRng::seed_from_u64(9);
    let expected_pause = |failures: u32| match failures {
        1 => 50,
        2 => 100,
        3 => 200,
        4 => 400,
        5 => 800,
        6 => 1_600,
        _ => BACKOFF_CAP_MS,
    };
    for failures in [1, 2, 3, 4, 5, 6, 7, 20, u32::MAX] {
        let pause = expected_pause(failures);
        let samples: Vec<u64> = (0..2_000)
            .map(|_| backoff_ms(failures, &mut random))
            .collect();
        let (low, high) = (
            *samples.iter().min().unwrap(),
            *samples.iter().max().unwrap(),
        );
        assert!(
            low >= pause / 2 && high <= pause,
            "{failures}: {low}..{high}"
        );
        assert!(
            low < pause / 2 + pause / 10 && high > pause - pause / 10,
            "{failures}: the jitter spreads ({low}..{high})"
        );
    }
}

/// A reply that moves the watermark commits the ack; anything else backs off; a late reply of
/// an attempt no longer in flight is ignored; a committed ack clears the failures.
#[test]
fn replies_are_interpreted_into_acks_or_backoff() {
    let mut random = StdRng::seed_from_u64(1);
    let mut sender = LinkSender::new(code("5306"));
    let link = link(20, 10);
    assert_eq!(sender.ready(0), Ready::Now);
    let first = sender.sent();
    assert_eq!(sender.ready(0), Ready::InFlight);
    let refusal = Refusal {
        seq: 12,
        code: "already_held".into(),
        reason: "held".into(),
    };
    let moved = Delivered {
        applied_through: 15,
        refused: vec![refusal.clone()],
    };
    assert_eq!(
        sender.on_reply(first, Ok(moved.clone()), &link, 0, &mut random),
        Decision::Commit(Box::new(Operation::Acked {
            to: code("5306"),
            through: 15,
            refused: vec![refusal],
        }))
    );
    assert_eq!(
        sender.committed(Ok(()), 5, &mut random),
        Decision::Stale,
        "nothing more to decide"
    );
    assert_eq!(sender.ready(5), Ready::Now);

    // The watermark did not move past our acknowledgement: a failure.
    let second = sender.sent();
    let still = Delivered {
        applied_through: 10,
        refused: Vec::new(),
    };
    let Decision::Retry { at_ms, .. } = sender.on_reply(second, Ok(still), &link, 100, &mut random)
    else {
        panic!("a retry");
    };
    assert!((125..=150).contains(&at_ms), "{at_ms}");
    assert_eq!(sender.failures(), 1);
    assert_eq!(sender.ready(100), Ready::At(at_ms));
    assert_eq!(
        sender.on_reply(second, Ok(moved.clone()), &link, 200, &mut random),
        Decision::Stale,
        "the reply of an attempt already settled"
    );

    // An error, then an ack that does not commit: failures keep counting.
    let third = sender.sent();
    let decision = sender.on_reply(third, Err("timed out".into()), &link, 1_000, &mut random);
    assert!(matches!(decision, Decision::Retry { .. }));
    let fourth = sender.sent();
    let commit = sender.on_reply(fourth, Ok(moved), &link, 2_000, &mut random);
    assert!(matches!(commit, Decision::Commit(_)));
    let lost = sender.committed(Err("no quorum".into()), 2_000, &mut random);
    assert!(matches!(lost, Decision::Retry { .. }));
    assert_eq!(sender.failures(), 3);
    assert!(!sender.is_in_flight());
}

/// The receiver's reply is what the state machine answered (the refusals of the whole batch);
/// anything but a delivery, or a watermark behind the batch's new messages, is an error.
#[test]
fn the_reply_is_the_applied_answer() {
    let refusal = |seq: u64| Refusal {
        seq,
        code: "no_order".into(),
        reason: "none".into(),
    };
    let applied = Response::Delivered {
        applied_through: 20,
        refused: vec![refusal(9), refusal(15)],
    };
    let delivered = answer_applied(11, applied).unwrap();
    assert_eq!(delivered.applied_through, 20);
    assert_eq!(delivered.refused, vec![refusal(9), refusal(15)]);
    assert!(answer_applied(11, Response::Nothing).is_err());
    let behind = Response::Delivered {
        applied_through: 5,
        refused: Vec::new(),
    };
    assert!(answer_applied(11, behind).is_err());
    assert_eq!(
        answer_replay(10, vec![refusal(9)]),
        Delivered {
            applied_through: 10,
            refused: vec![refusal(9)]
        }
    );
}

/// An office for [`receive`]: a watermark (another one once caught up), stored refusals, and a
/// log that records what is proposed and answers as the state machine would.
struct Office {
    inbox: LinkIn,
    caught_up: Option<LinkIn>,
    refused: Vec<Refusal>,
    proposed: Vec<Operation>,
}

impl Receiving for Office {
    type Failure = String;

    fn link_in(&self, _from: &OfficeCode) -> Result<LinkIn, String> {
        Ok(self.inbox.clone())
    }

    fn refusals(
        &self,
        _from: &OfficeCode,
        seqs: RangeInclusive<u64>,
    ) -> Result<Vec<Refusal>, String> {
        let found = self.refused.iter().filter(|r| seqs.contains(&r.seq));
        Ok(found.cloned().collect())
    }

    async fn catch_up(&mut self) -> Result<(), String> {
        if let Some(inbox) = self.caught_up.take() {
            self.inbox = inbox;
        }
        Ok(())
    }

    async fn propose(&mut self, operation: Operation) -> Result<Response, String> {
        let Operation::Receive { envelopes, .. } = &operation else {
            return Err("not a delivery".into());
        };
        // As the state machine answers: the watermark, and the refusals of the whole batch.
        let first = envelopes.first().map_or(0, |e| e.seq);
        let applied_through = envelopes.last().map_or(0, |e| e.seq);
        let refused = self.refusals(&code("530602001"), first..=applied_through)?;
        self.proposed.push(operation);
        Ok(Response::Delivered {
            applied_through,
            refused,
        })
    }
}

fn office(applied_through: u64) -> Office {
    Office {
        inbox: watermark(applied_through),
        caught_up: None,
        refused: vec![Refusal {
            seq: 9,
            code: "no_order".into(),
            reason: "none".into(),
        }],
        proposed: Vec::new(),
    }
}

/// The receiver's flow: a replay proposes nothing and is answered from the watermark with its
/// refusals; an overlap is proposed whole (the state machine skips what it applied and tells
/// the overlap's refusals); a gap seen by a lagging leader is checked again after catching up; a
/// real gap proposes nothing (fails if any step touches the log where it must not).
#[test]
fn receive_proposes_a_batch_whole_and_a_replay_not_at_all() {
    let run = |office: &mut Office, seqs| {
        futures::executor::block_on(receive(office, inbound(envelopes(seqs)), true))
    };
    let mut replayed = office(10);
    let answer = run(&mut replayed, 3..=7).unwrap();
    assert_eq!(answer.applied_through, 10);
    assert_eq!(
        answer.refused.len(),
        1,
        "the refusal of message 9 is told again"
    );
    assert!(replayed.proposed.is_empty());

    let mut overlapping = office(10);
    let answer = run(&mut overlapping, 8..=20).unwrap();
    assert_eq!((answer.applied_through, answer.refused.len()), (20, 1));
    let [Operation::Receive { envelopes, .. }] = overlapping.proposed.as_slice() else {
        panic!("one proposal");
    };
    assert_eq!(envelopes.first().map(|e| e.seq), Some(8));

    let mut lagging = office(5);
    lagging.caught_up = Some(watermark(10));
    assert_eq!(run(&mut lagging, 11..=12).unwrap().applied_through, 12);

    let mut behind = office(5);
    let refused = run(&mut behind, 11..=12).unwrap_err();
    assert!(matches!(refused, NotReceived::Refused(Refuse::Gap { .. })));
    assert!(behind.proposed.is_empty());
}
