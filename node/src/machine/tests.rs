//! The state machine's refusals, one table row each: what an office is asked, and the code it
//! answers with. Every refused operation or message changes nothing but the record of its
//! refusal (a refused message still moves the inbox watermark: it was delivered, once).

use std::sync::Arc;

use liandong_domain::message::{Body, CaseDocument, Envelope, Summary, SummaryV2};
use liandong_domain::{
    Calendar, Case, CaseCommand, CaseId, Channel, HandoffKind, Millis, OfficeCode, Opinion,
    Registration, ReviewLevel, Status,
};

use super::*;
use crate::raft::types::{Operation, RejectKind, Request, Response};
use crate::store::codec::encode;
use crate::store::HostDb;

/// 2026-01-05 (a Monday), 09:00 Beijing time.
pub(crate) const START_MS: Millis = 1_767_574_800_000;

pub(crate) fn code(code: &str) -> OfficeCode {
    code.parse().expect("a division code")
}

/// A petition as an officer registers it (valid).
pub(crate) fn registration() -> Registration {
    Registration {
        channel: Channel::Visit,
        petitioner_id: "530602198001010012".into(),
        name: "Zhang".into(),
        phone: None,
        category: "housing".into(),
        summary: "The roof leaks.".into(),
        location: None,
        officer: "registrar".into(),
        address: None,
    }
}

/// One office's state machine over a real RocksDB, applying operations one log entry each.
pub(crate) struct Office {
    _dir: tempfile::TempDir,
    pub(crate) db: HostDb,
    pub(crate) context: ApplyContext,
    state: AppliedState,
    at: Millis,
    /// Bytes of the last operation's RocksDB batch: what applying it wrote.
    written_bytes: usize,
}

impl Office {
    pub(crate) fn new(office: &str, parent: Option<&str>) -> Office {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let db = HostDb::open(&dir.path().join("db")).expect("RocksDB opens");
        Office {
            _dir: dir,
            db,
            context: ApplyContext {
                office: code(office),
                parent: parent.map(code),
                secret: vec![7; 32],
                calendar: Arc::new(Calendar::china()),
                signer: Some(Arc::new(test_signer(office))),
            },
            state: AppliedState::default(),
            at: START_MS,
            written_bytes: 0,
        }
    }

    pub(crate) fn apply(&mut self, op: Operation) -> Response {
        self.at += 60_000;
        let mut txn = Txn::new(&self.db, self.context.office.as_str());
        let request = Request { at: self.at, op };
        let response = apply_request(&mut txn, &self.context, &mut self.state, &request)
            .expect("storage works");
        let batch = txn.into_batch();
        self.written_bytes = batch.size_in_bytes();
        self.db.write(batch, false).expect("the batch is written");
        response
    }

    /// A case with its whole history, as stored (it must exist).
    pub(crate) fn case_whole(&self, case_id: &CaseId) -> Case {
        self.case(case_id).expect("the case is stored")
    }

    /// The next operation is stamped just after `at` (for clocks that run out).
    pub(crate) fn advance_to(&mut self, at: Millis) {
        self.at = self.at.max(at);
    }

    /// The applied state so far.
    pub(crate) fn state_clone(&self) -> AppliedState {
        self.state.clone()
    }

    fn file(&mut self) -> Case {
        let op = Operation::File {
            registration: registration(),
            request_id: None,
            caller: String::new(),
        };
        case_of(self.apply(op))
    }

    fn act(&mut self, case_id: &CaseId, command: CaseCommand) -> Response {
        self.apply(Operation::Act {
            case_id: case_id.clone(),
            command,
            request_id: None,
            caller: String::new(),
        })
    }

    /// Delivers `body` as the next message on the link from `from`; the refusal, if any.
    fn deliver(&mut self, from: &str, body: Body) -> Option<Refusal> {
        let from = code(from);
        let inbox: LinkIn = get_or_default(&self.reader(), &keys::inbox(&from)).unwrap();
        let envelope = Envelope {
            from: from.clone(),
            to: self.context.office.clone(),
            seq: inbox.applied_through + 1,
            sent_at: self.at,
            body,
        };
        self.receive(&from, envelope)
    }

    fn receive(&mut self, from: &OfficeCode, envelope: Envelope) -> Option<Refusal> {
        let seq = envelope.seq;
        let response = self.apply(Operation::Receive {
            from: from.clone(),
            envelopes: vec![envelope],
        });
        let Response::Delivered {
            applied_through,
            mut refused,
        } = response
        else {
            panic!("Receive answered {response:?}");
        };
        assert_eq!(applied_through, seq, "the message was delivered, once");
        refused.pop()
    }

    fn reader(&self) -> Txn<'_> {
        Txn::new(&self.db, self.context.office.as_str())
    }

    /// A case with its whole history, as stored.
    fn case(&self, case_id: &CaseId) -> Option<Case> {
        cases::load_whole(&self.reader(), case_id).unwrap()
    }

    /// Everything but the inbox and refusal records, to see that a refusal changed nothing.
    fn footprint(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let all = self.reader().scan(b"", b"\xff", usize::MAX).unwrap();
        all.into_iter()
            .filter(|(key, _)| !key.starts_with(keys::INBOX) && !key.starts_with(keys::REFUSED))
            .collect()
    }
}

pub(crate) fn case_of(response: Response) -> Case {
    match response {
        Response::Case { document } => Case::from_bytes(&document).expect("a case document"),
        other => panic!("expected a case, got {other:?}"),
    }
}

fn code_of(response: &Response) -> &str {
    match response {
        Response::Rejected { code, .. } => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A case of county 530621, handed to county 530602 as `kind`, as it travels.
fn in_transit(kind: HandoffKind) -> Case {
    let mut sibling = Office::new("530621", Some("5306"));
    let case = sibling.file();
    let command = CaseCommand::Transfer {
        to: code("530602"),
        officer: "li".into(),
    };
    sibling.act(&case.id, command);
    let mut sent = sibling.case(&case.id).expect("the sender's copy");
    sent.status = Status::InTransit {
        to: code("530602"),
        kind,
    };
    sent
}

fn handoff(case: Case) -> Body {
    Body::Handoff {
        case: CaseDocument::of(&case),
    }
}

/// Each rule on receipt refuses its message with its code, changing nothing at the receiver
/// but the record of the refusal (fails if a rule is dropped or its code renamed).
#[test]
fn every_rule_on_receipt_refuses_with_its_code() {
    type Row = (&'static str, &'static str, fn(&mut Office) -> Body);
    let rows: [Row; 14] = [
        ("escalation_not_upward", "5306", |county| Body::Escalation {
            level: ReviewLevel::Review,
            case: CaseDocument::of(&county.file()),
        }),
        ("supervision_not_downward", "530621", |county| {
            Body::SupervisionOrder {
                case_id: county.file().id,
                order_id: "530621-1".into(),
                text: "Report.".into(),
                due_days: 5,
            }
        }),
        ("breach_not_upward", "530602001", |county| Body::Breach {
            case_id: county.file().id,
            office: code("530602002"),
            clock: liandong_domain::ClockKind::Accept,
        }),
        ("not_passed_on", "530621", |county| Body::SupervisionRelay {
            case_id: county.file().id,
            order_id: "5306-1".into(),
            issuer: code("5306"),
            text: "Report.".into(),
            ordered_at: START_MS,
            due_by: START_MS + liandong_domain::DAY_MS,
        }),
        ("invalid_transition", "5306", |county| {
            Body::ReviewDecision {
                case_id: county.file().id,
                review_id: "5306-2026-000001".parse().unwrap(),
                level: ReviewLevel::Review,
                opinion: Opinion::Support,
                text: "Upheld.".into(),
                decided_at: START_MS,
                is_final: false,
            }
        }),
        ("index_not_upward", "5306", |county| Body::IndexUpdate {
            summary: Summary::of(&county.file()),
        }),
        ("not_in_transit", "530621", |_| {
            let mut case = in_transit(HandoffKind::Transfer);
            case.status = Status::Registered;
            handoff(case)
        }),
        ("not_owner", "530621", |_| {
            let mut case = in_transit(HandoffKind::Transfer);
            case.office = code("5306");
            handoff(case)
        }),
        ("assign_not_downward", "530621", |_| {
            handoff(in_transit(HandoffKind::Assign { due_by: START_MS }))
        }),
        ("not_returnable", "530621", |_| {
            handoff(in_transit(HandoffKind::Return))
        }),
        ("already_held", "530621", |county| {
            let mut case = in_transit(HandoffKind::Transfer);
            case.id = county.file().id;
            handoff(case)
        }),
        ("no_petitioner", "530602001", |county| {
            let mut case = county.file();
            case.petitioner = None;
            Body::Escalation {
                level: ReviewLevel::Review,
                case: CaseDocument::of(&case),
            }
        }),
        ("case_not_found", "5306", |_| Body::SupervisionOrder {
            case_id: "530602-2026-000099".parse().unwrap(),
            order_id: "5306-1".into(),
            text: "Report.".into(),
            due_days: 5,
        }),
        ("no_order", "530602001", |county| Body::SupervisionAnswer {
            case_id: county.file().id,
            order_id: String::new(),
            text: "Done.".into(),
            officer: "li".into(),
        }),
    ];
    for (expected, from, body) in rows {
        let mut county = Office::new("530602", Some("5306"));
        let body = body(&mut county);
        let before = county.footprint();
        let cases = county.state.cases;
        let pending = county.state.outbox_pending;
        let refusal = county.deliver(from, body);
        let refusal = refusal.unwrap_or_else(|| panic!("{expected}: the message was applied"));
        assert_eq!(refusal.code, expected, "{}", refusal.reason);
        assert_eq!(
            county.footprint(),
            before,
            "{expected}: the refusal changed nothing"
        );
        assert_eq!(county.state.cases, cases, "{expected}");
        assert_eq!(county.state.outbox_pending, pending, "{expected}");
    }
}

/// An envelope that names another link is refused (the Deliver check refuses it earlier; the
/// state machine does not trust that it did).
#[test]
fn a_misaddressed_envelope_is_refused() {
    let mut county = Office::new("530602", Some("5306"));
    let envelope = Envelope {
        from: code("530621"),
        to: code("530602"),
        seq: 1,
        sent_at: START_MS,
        body: Body::IndexUpdate {
            summary: Summary::of(&county.file()),
        },
    };
    let before = county.footprint();
    let refusal = county.receive(&code("530602001"), envelope).unwrap();
    assert_eq!(refusal.code, "misaddressed");
    assert_eq!(county.footprint(), before);
}

/// Each refusal of an officer's or a supervisor's operation answers with its code and changes
/// nothing (fails if a check is dropped, moved after a write, or its code renamed).
#[test]
fn every_refused_operation_answers_with_its_code_and_changes_nothing() {
    type Row = (&'static str, fn(&mut Office) -> Operation);
    fn supervise(to: &str, due_days: u32, text: &str) -> Operation {
        Operation::Supervise {
            case_id: "530602001-2026-000001".parse().unwrap(),
            to: code(to),
            due_days,
            text: text.into(),
        }
    }
    let rows: [Row; 7] = [
        ("not_supervisor", |_| {
            supervise("5306", 5, "Report progress.")
        }),
        ("out_of_range", |_| {
            supervise("530602001", 0, "Report progress.")
        }),
        ("bad_text", |_| supervise("530602001", 5, "   ")),
        ("federation_only", |county| Operation::Act {
            case_id: county.file().id,
            command: CaseCommand::HandoffAcked,
            request_id: None,
            caller: String::new(),
        }),
        ("case_not_found", |_| Operation::Act {
            case_id: "530602-2026-000099".parse().unwrap(),
            command: CaseCommand::Accept {
                officer: "li".into(),
            },
            request_id: None,
            caller: String::new(),
        }),
        ("outbox_full", |county| {
            county.state.outbox_pending = OUTBOX_LEN_MAX;
            Operation::File {
                registration: registration(),
                request_id: None,
                caller: String::new(),
            }
        }),
        ("message_too_large", |county| {
            // A case whose history no message could carry (here: a summary stretched past
            // every limit behind the engine's back), transferred.
            let (mut case, _) = county.file().into_header();
            case.summary = "x".repeat(ENVELOPE_BYTES_MAX);
            let mut txn = county.reader();
            txn.put(keys::case(&case.id.to_string()), encode(&case));
            county.db.write(txn.into_batch(), false).unwrap();
            Operation::Act {
                case_id: case.id,
                command: CaseCommand::Transfer {
                    to: code("530621"),
                    officer: "li".into(),
                },
                request_id: None,
                caller: String::new(),
            }
        }),
    ];
    for (expected, op) in rows {
        let mut county = Office::new("530602", Some("5306"));
        let op = op(&mut county);
        let before = county.footprint();
        let (cases, pending) = (county.state.cases, county.state.outbox_pending);
        let response = county.apply(op);
        assert_eq!(code_of(&response), expected, "{response:?}");
        assert_eq!(county.footprint(), before, "{expected}: nothing changed");
        assert_eq!(county.state.cases, cases, "{expected}");
        assert_eq!(county.state.outbox_pending, pending, "{expected}");
    }
}

/// A refused handoff gives the case back to the sender; an acknowledged one leaves a stub
/// (fails if `acked` stops finishing handoffs, or drops the messages without them).
#[test]
fn an_ack_finishes_each_handoff_by_its_refusal() {
    for refused in [false, true] {
        let mut county = Office::new("530602", Some("5306"));
        let case = county.file();
        let command = CaseCommand::Transfer {
            to: code("530621"),
            officer: "li".into(),
        };
        county.act(&case.id, command);
        let link: LinkOut = get_or_default(&county.reader(), &keys::link(&code("530621"))).unwrap();
        assert_eq!(link.pending(), 1, "the handoff waits in the outbox");
        let refusals = refused
            .then(|| Refusal {
                seq: link.last_seq,
                code: "already_held".into(),
                reason: "held".into(),
            })
            .into_iter()
            .collect();
        county.apply(Operation::Acked {
            to: code("530621"),
            through: link.last_seq,
            refused: refusals,
        });
        let after = county.case(&case.id).unwrap();
        let expected = if refused {
            Status::Registered
        } else {
            Status::Forwarded { to: code("530621") }
        };
        assert_eq!(after.status, expected, "refused: {refused}");
        let link: LinkOut = get_or_default(&county.reader(), &keys::link(&code("530621"))).unwrap();
        assert_eq!(link.pending(), 0, "acknowledged messages are dropped");
    }
}

/// A retried request gets the answer it first got, not the case as later writes left it: a
/// client that retries after a lost reply must not see a state from after its write.
#[test]
fn a_retried_request_gets_its_first_answer() {
    let mut office = Office::new("5306", None);
    let case = office.file();
    let act = |command, request_id: &str| Operation::Act {
        case_id: case.id.clone(),
        command,
        request_id: Some(request_id.into()),
        caller: String::new(),
    };
    let accept = act(
        CaseCommand::Accept {
            officer: "li".into(),
        },
        "accept-1",
    );
    let first = office.apply(accept.clone());
    let reply = CaseCommand::Reply {
        opinion: Opinion::Support,
        text: "Repaired.".into(),
        officer: "li".into(),
    };
    let replied = office.apply(act(reply, "reply-1"));
    let retried = office.apply(accept);
    assert_eq!(
        retried, first,
        "the retry is answered as the first attempt was"
    );
    assert_ne!(
        retried, replied,
        "not with the case as the later reply left it"
    );
}

/// The one commit function sends what a change causes: a transfer's handoff to the receiver
/// and its summary to the parent, in one batch with the case (fails if a message is lost).
#[test]
fn a_case_change_commits_with_its_messages() {
    let mut county = Office::new("530602", Some("5306"));
    let case = county.file();
    let parent: LinkOut = get_or_default(&county.reader(), &keys::link(&code("5306"))).unwrap();
    assert_eq!(parent.last_seq, 1, "filing sends the summary up");
    county.act(
        &case.id,
        CaseCommand::Transfer {
            to: code("530621"),
            officer: "li".into(),
        },
    );
    let sibling: LinkOut = get_or_default(&county.reader(), &keys::link(&code("530621"))).unwrap();
    let parent: LinkOut = get_or_default(&county.reader(), &keys::link(&code("5306"))).unwrap();
    assert_eq!((sibling.last_seq, parent.last_seq), (1, 2));
    assert_eq!(county.state.outbox_pending, 3);
    let handoff: Envelope = crate::store::codec::decode(
        &county
            .reader()
            .get(&keys::outbox(&code("530621"), 1))
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert!(
        matches!(handoff.body, Body::Handoff { ref case } if matches!(case.case().unwrap().status, Status::InTransit { .. }))
    );
}

fn with_id(op: Operation, id: &str, who: &str) -> Operation {
    match op {
        Operation::File { registration, .. } => Operation::File {
            registration,
            request_id: Some(id.into()),
            caller: who.into(),
        },
        Operation::Act {
            case_id, command, ..
        } => Operation::Act {
            case_id,
            command,
            request_id: Some(id.into()),
            caller: who.into(),
        },
        other => other,
    }
}

fn accept(case_id: &CaseId) -> Operation {
    Operation::Act {
        case_id: case_id.clone(),
        command: CaseCommand::Accept {
            officer: "li".into(),
        },
        request_id: None,
        caller: String::new(),
    }
}

pub(crate) fn filing() -> Operation {
    Operation::File {
        registration: registration(),
        request_id: None,
        caller: String::new(),
    }
}

/// A request id is scoped by (caller, operation, case): reused for another case or another
/// operation it is refused with `ALREADY_EXISTS` and changes nothing, never answered with the
/// other case's document; another caller's same id is another request (fails if ids are global
/// or the scope is not checked).
#[test]
fn a_request_id_reused_for_another_case_or_operation_is_refused() {
    let mut office = Office::new("5306", None);
    let (a, b) = (office.file(), office.file());
    let first = office.apply(with_id(accept(&a.id), "r1", "li"));
    assert!(matches!(first, Response::Case { .. }));
    let reuses = [
        ("another case", with_id(accept(&b.id), "r1", "li")),
        ("another operation", {
            let reply = CaseCommand::Reply {
                opinion: Opinion::Support,
                text: "Repaired.".into(),
                officer: "li".into(),
            };
            with_id(
                Operation::Act {
                    case_id: a.id.clone(),
                    command: reply,
                    request_id: None,
                    caller: String::new(),
                },
                "r1",
                "li",
            )
        }),
        ("a filing", with_id(filing(), "r1", "li")),
    ];
    for (what, op) in reuses {
        let before = office.footprint();
        let response = office.apply(op);
        let Response::Rejected { kind, code, .. } = &response else {
            panic!("{what}: {response:?}");
        };
        assert_eq!(
            (kind, code.as_str()),
            (&RejectKind::AlreadyExists, "request_id_reused"),
            "{what}"
        );
        assert_eq!(office.footprint(), before, "{what}: nothing changed");
    }
    let other_caller = office.apply(with_id(accept(&b.id), "r1", "wang"));
    assert_eq!(
        case_of(other_caller).status,
        Status::Accepted,
        "another caller's r1 is its own request"
    );
}

/// A request id longer than 64 bytes, or holding control characters, is refused as invalid and
/// changes nothing: it is never silently left undeduplicated (fails if the check is dropped).
#[test]
fn a_request_id_that_cannot_be_kept_is_refused() {
    let mut office = Office::new("5306", None);
    for id in ["x".repeat(REQUEST_ID_BYTES_MAX + 1), "a\u{0}b".to_string()] {
        let before = office.footprint();
        let response = office.apply(with_id(filing(), &id, ""));
        assert_eq!(code_of(&response), "bad_request_id");
        assert_eq!(office.footprint(), before);
        assert_eq!(office.state.cases, 0);
    }
    let longest = "y".repeat(REQUEST_ID_BYTES_MAX);
    let first = office.apply(with_id(filing(), &longest, ""));
    assert_eq!(office.apply(with_id(filing(), &longest, "")), first);
    assert_eq!(office.state.cases, 1, "the longest id still deduplicates");
}

/// Request records expire after the retry horizon: a tick deletes them, at most
/// `PRUNE_RECORDS_MAX` per tick, oldest first, with their expiry entries (fails if records are
/// kept for ever or pruning is unbounded).
#[test]
fn request_records_expire_after_the_retry_horizon_in_bounded_steps() {
    let mut office = Office::new("5306", None);
    let case = office.file();
    let mut txn = office.reader();
    for n in 0..PRUNE_RECORDS_MAX + 5 {
        let record = RequestRecord {
            operation: "accept".into(),
            case_id: case.id.clone(),
            at: START_MS + n as Millis,
            reply: vec![1, 2, 3],
        };
        requests::put(&mut txn, keys::retry("li", &format!("r{n}")), &record);
    }
    office.db.write(txn.into_batch(), false).unwrap();
    let count = |office: &Office, prefix: &[u8]| {
        office
            .reader()
            .scan(prefix, &crate::store::keys::prefix_end(prefix), usize::MAX)
            .unwrap()
            .len()
    };
    assert_eq!(count(&office, keys::RETRY), PRUNE_RECORDS_MAX + 5);
    office.at = START_MS + RETRY_HORIZON_MS - 120_000;
    office.apply(Operation::Tick);
    assert_eq!(
        count(&office, keys::RETRY),
        PRUNE_RECORDS_MAX + 5,
        "not yet"
    );
    office.at = START_MS + RETRY_HORIZON_MS + 1_000_000;
    office.apply(Operation::Tick);
    assert_eq!(
        count(&office, keys::RETRY),
        5,
        "one tick prunes at most PRUNE_RECORDS_MAX"
    );
    office.apply(Operation::Tick);
    assert_eq!(count(&office, keys::RETRY), 0);
    assert_eq!(
        count(&office, keys::EXPIRY),
        0,
        "the expiry entries go with them"
    );
}

/// A filing remembered past the horizon is forgotten: its id then files anew, as a client
/// retrying after the horizon is warned it would (fails if expiry deletes the wrong key).
#[test]
fn an_expired_request_is_a_new_request() {
    let mut office = Office::new("5306", None);
    let first = case_of(office.apply(with_id(filing(), "r1", "")));
    assert_eq!(
        case_of(office.apply(with_id(filing(), "r1", ""))).id,
        first.id
    );
    office.at += RETRY_HORIZON_MS;
    office.apply(Operation::Tick);
    let again = case_of(office.apply(with_id(filing(), "r1", "")));
    assert_ne!(again.id, first.id);
}

/// Builds a case with at least `entries` history entries the way the state machine stores one
/// (header plus entries), by folding supervision events; returns its id and length.
fn case_with_history(office: &mut Office, entries: u32) -> (CaseId, u32) {
    let case = office.file();
    let mut whole = office.case(&case.id).unwrap();
    let mut at = office.at;
    while whole.history_len() < entries {
        at += 1_000;
        let event = liandong_domain::Event::SupervisionOrdered {
            at,
            office: code("5306"),
            from: code("53"),
            text: "Report.".into(),
            due_by: at + 86_400_000,
        };
        whole.apply(&event);
        whole.apply(&liandong_domain::Event::SupervisionAnswered {
            at,
            office: code("5306"),
            text: "Done.".into(),
            officer: "li".into(),
        });
    }
    let (header, history) = whole.into_header();
    let id = header.id.to_string();
    let mut txn = office.reader();
    for entry in &history {
        txn.put(keys::history(&id, entry.seq), encode(entry));
    }
    txn.put(keys::case(&id), encode(&header));
    office.db.write(txn.into_batch(), false).unwrap();
    office.at = at;
    (header.id.clone(), header.history_len())
}

/// Updating a case with 1,000 history entries writes what updating a fresh one does (its
/// header and the new entry, never the history), and its reply carries the header and the
/// entry the write added (fails if a write rewrites or re-reads the whole history).
#[test]
fn a_write_on_a_long_history_costs_what_one_on_a_fresh_case_does() {
    let mut office = Office::new("5306", None);
    let fresh = office.file();
    office.apply(accept(&fresh.id));
    let fresh_bytes = office.written_bytes;
    let (long, entries) = case_with_history(&mut office, 1_000);
    let reply = case_of(office.apply(accept(&long)));
    let long_bytes = office.written_bytes;
    assert!(entries >= 1_000);
    assert!(
        long_bytes <= fresh_bytes + 64,
        "a case of 1,000 entries wrote {long_bytes} bytes, a fresh one {fresh_bytes}"
    );
    assert_eq!(
        reply.history_start.entries, entries,
        "the chain before the write"
    );
    assert_eq!(reply.history.len(), 1, "only the entry the write added");
    assert_eq!(reply.history[0].kind, "accepted");
    assert_eq!(reply.verify_chain(), Ok(()));
    let whole = office.case(&long).unwrap();
    assert_eq!(whole.history_len(), entries + 1);
    assert_eq!(whole.verify_chain(), Ok(()));
    assert_eq!(whole.history[entries as usize], reply.history[0]);
}

/// A handoff carries the whole history even though the write that starts it reads only the
/// header (fails if the handoff carries the header alone).
#[test]
fn a_handoff_carries_the_case_with_its_whole_history() {
    let mut county = Office::new("530602", Some("5306"));
    let case = county.file();
    county.act(
        &case.id,
        CaseCommand::Accept {
            officer: "li".into(),
        },
    );
    let mut sibling_case = in_transit(HandoffKind::Transfer);
    sibling_case.id = case.id.clone();
    let transfer = CaseCommand::Transfer {
        to: code("530621"),
        officer: "li".into(),
    };
    let fresh = county.file();
    county.act(&fresh.id, transfer);
    let (_, waiting) = {
        let link: LinkOut = get_or_default(&county.reader(), &keys::link(&code("530621"))).unwrap();
        (
            link,
            county
                .reader()
                .get(&keys::outbox(&code("530621"), 1))
                .unwrap()
                .unwrap(),
        )
    };
    let envelope: Envelope = crate::store::codec::decode(&waiting).unwrap();
    let Body::Handoff { case: document } = envelope.body else {
        panic!("not a handoff: {envelope:?}");
    };
    let carried = document.case().unwrap();
    assert!(carried.has_whole_history());
    assert_eq!(carried.history_len(), 2, "registered and handoff_started");
    assert_eq!(carried.verify_chain(), Ok(()));
}

/// The refusal of a message is kept until the sender's deliveries move past it, then deleted:
/// a batch starting after it shows the sender committed its acknowledgement (fails if refusal
/// records are kept for ever, or deleted while the sender may still ask).
#[test]
fn a_refusal_is_forgotten_once_the_sender_moves_past_it() {
    let mut county = Office::new("530602", Some("5306"));
    let refusal = county.deliver(
        "5306",
        Body::SupervisionOrder {
            case_id: "530602-2026-000099".parse().unwrap(),
            order_id: "5306-1".into(),
            text: "Report.".into(),
            due_days: 5,
        },
    );
    assert!(refusal.is_some());
    let kept = |county: &Office| {
        county
            .reader()
            .scan(
                keys::REFUSED,
                &crate::store::keys::prefix_end(keys::REFUSED),
                usize::MAX,
            )
            .unwrap()
            .len()
    };
    assert_eq!(kept(&county), 1, "kept while the sender may ask again");
    let summary = Summary::of(&county.file());
    assert!(county
        .deliver(
            "530602001",
            Body::IndexUpdate {
                summary: summary.clone()
            }
        )
        .is_none());
    assert_eq!(
        kept(&county),
        1,
        "another link's delivery does not touch it"
    );
    county.deliver(
        "5306",
        Body::SupervisionOrder {
            case_id: "530602-2026-000099".parse().unwrap(),
            order_id: "5306-2".into(),
            text: "Report.".into(),
            due_days: 5,
        },
    );
    assert_eq!(
        kept(&county),
        1,
        "the new refusal replaces the answered one"
    );
    let remaining = county
        .reader()
        .scan(
            keys::REFUSED,
            &crate::store::keys::prefix_end(keys::REFUSED),
            usize::MAX,
        )
        .unwrap();
    assert_eq!(remaining[0].0, keys::refused(&code("5306"), 2));
}

/// A sender that lost the reply to a refused message sends it again with newer ones behind it:
/// the receiver proposes that batch whole, and answers the refusal again when the same batch
/// comes a third time (fails if the overlap is trimmed before proposing: the receiver then forgot
/// the refusal while the sender still waited for it, and a refused handoff read as accepted left
/// its case held by no office).
#[test]
fn a_refusal_outlives_a_retried_batch_that_overlaps_the_watermark() {
    use crate::federation::link::{check_batch, proposal, Admit, Inbound};
    let mut county = Office::new("530602", Some("5306"));
    let at = county.at;
    let order = |seq: u64| Envelope {
        from: code("5306"),
        to: code("530602"),
        seq,
        sent_at: at,
        body: Body::SupervisionOrder {
            case_id: "530602-2026-000099".parse().unwrap(),
            order_id: format!("5306-{seq}"),
            text: "Report.".into(),
            due_days: 5,
        },
    };
    let batch = |seqs: std::ops::RangeInclusive<u64>| {
        let envelopes: Vec<Envelope> = seqs.map(order).collect();
        let bytes = envelopes.iter().map(wire_bytes).sum();
        Inbound::of(code("5306"), code("530602"), envelopes, bytes)
    };
    let link_in = |county: &Office| -> LinkIn {
        get_or_default(&county.reader(), &keys::inbox(&code("5306"))).unwrap()
    };
    // Message 1 is refused; its reply is lost.
    assert!(county.receive(&code("5306"), order(1)).is_some());
    // The sender sends 1 again, with 2 behind it; the reply is lost again.
    let admitted = check_batch(&batch(1..=2), true, &link_in(&county)).unwrap();
    assert_eq!(admitted, Admit::Propose { first_new: 2 });
    let Response::Delivered { refused, .. } = county.apply(proposal(batch(1..=2))) else {
        panic!("a delivery");
    };
    let seqs: Vec<u64> = refused.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        vec![1, 2],
        "the reply names the overlap's refusal too"
    );
    // The same batch a third time: a replay, answered from the refusals kept.
    let Admit::Replay { refusals_of, .. } =
        check_batch(&batch(1..=2), true, &link_in(&county)).unwrap()
    else {
        panic!("a replay");
    };
    let kept = refusals(
        &county.reader(),
        &code("5306"),
        *refusals_of.start(),
        *refusals_of.end(),
    )
    .unwrap();
    let seqs: Vec<u64> = kept.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        vec![1, 2],
        "message 1's refusal is still there to answer"
    );
}

/// A message the receiver could not admit is committed as a marker: refused without its
/// content, the watermark past it, the handoff behind it taken; the sender learns the refusal
/// with its ack and, the refused message being a handoff, holds that case again (fails if a bad
/// message refuses its batch, which wedged the link, or if the marker changes anything but the
/// inbox and the refusals).
#[test]
fn a_message_not_admitted_is_refused_and_the_link_moves_on() {
    use crate::federation::link::{check_batch, proposal, Admit, Arrived, Inbound};
    use crate::raft::types::Received;
    let mut county = Office::new("530602", Some("5306"));
    let mut sibling = Office::new("530621", Some("5306"));
    let (spoiled, taken) = (county.file(), county.file());
    for case in [&spoiled, &taken] {
        let transfer = CaseCommand::Transfer {
            to: code("530621"),
            officer: "li".into(),
        };
        county.act(&case.id, transfer);
    }
    let outbox = |seq: u64| -> Envelope {
        let bytes = county.reader().get(&keys::outbox(&code("530621"), seq));
        crate::store::codec::decode(&bytes.unwrap().expect("in the outbox")).unwrap()
    };
    // Message 1 arrives damaged (its case does not decode), then message 2 and 3 as sent, 3
    // being of a kind the receiver's build does not know.
    let mut damaged = outbox(1);
    damaged.body = Body::Handoff {
        case: CaseDocument::from_bytes(b"not a case".to_vec()),
    };
    let newer = Arrived::Unreadable {
        from: code("530602"),
        to: code("530621"),
        seq: 3,
        code: crate::federation::link::UNKNOWN_MESSAGE_KIND,
        reason: "a kind this build does not know".into(),
    };
    let envelopes = vec![damaged.clone(), outbox(2)];
    let bytes = envelopes.iter().map(wire_bytes).sum();
    let mut batch = Inbound::of(code("530602"), code("530621"), envelopes, bytes);
    batch.envelopes.push(newer);
    let inbox: LinkIn = get_or_default(&sibling.reader(), &keys::inbox(&code("530602"))).unwrap();
    assert_eq!(
        check_batch(&batch, true, &inbox),
        Ok(Admit::Propose { first_new: 1 })
    );
    let operation = proposal(batch);
    let Operation::ReceiveMarked { messages, .. } = &operation else {
        panic!("a marked batch: {operation:?}");
    };
    assert!(matches!(messages[0], Received::Unadmitted { seq: 1, .. }));
    assert!(matches!(messages[1], Received::Message(_)));
    let cases_before = sibling.state.cases;
    let Response::Delivered {
        applied_through,
        refused,
    } = sibling.apply(operation.clone())
    else {
        panic!("a delivery");
    };
    assert_eq!(applied_through, 3, "the watermark moved past every message");
    let codes: Vec<(u64, &str)> = refused.iter().map(|r| (r.seq, r.code.as_str())).collect();
    assert_eq!(
        codes,
        vec![(1, "invalid_message"), (3, "unknown_message_kind")]
    );
    assert!(
        sibling.case(&spoiled.id).is_none(),
        "the damaged handoff changed nothing"
    );
    assert!(
        sibling.case(&taken.id).is_some(),
        "the handoff behind it was taken"
    );
    assert_eq!(sibling.state.cases, cases_before + 1);
    // Committed: a redelivery of the same batch is a replay, answered with the same refusals.
    let inbox: LinkIn = get_or_default(&sibling.reader(), &keys::inbox(&code("530602"))).unwrap();
    assert_eq!((inbox.applied_through, inbox.applied), (3, 3));
    let kept = refusals(&sibling.reader(), &code("530602"), 1, 3).unwrap();
    assert_eq!(kept, refused);
    let footprint = sibling.footprint();
    let Response::Delivered { refused: again, .. } = sibling.apply(operation) else {
        panic!("a delivery");
    };
    assert_eq!(again, refused);
    assert_eq!(sibling.footprint(), footprint, "applied once");

    // The sender: the refused handoff is its case again, the other one went.
    county.apply(Operation::Acked {
        to: code("530621"),
        through: 2,
        refused: refused.into_iter().filter(|r| r.seq <= 2).collect(),
    });
    assert_eq!(county.case(&spoiled.id).unwrap().status, Status::Registered);
    assert_eq!(
        county.case(&taken.id).unwrap().status,
        Status::Forwarded { to: code("530621") }
    );
    // The link keeps the message the receiver could not admit, for `status` to show.
    let unadmitted: crate::machine::unadmitted::Unadmitted = get_or_default(
        &county.reader(),
        &crate::machine::unadmitted::key(&code("530621")),
    )
    .unwrap();
    assert_eq!(
        (
            unadmitted.count,
            unadmitted.last_seq,
            unadmitted.last_kind.as_str(),
            unadmitted.last_code.as_str()
        ),
        (1, 1, "handoff", "invalid_message")
    );
}

// ---- stored formats, migration and snapshots ------------------------------------------------

use crate::raft::people::{OfficerChange, OfficerRecord, Role};
use crate::raft::types::{Entry, LogId, SnapshotMeta, StoredMembership, Vote};
use crate::store::codec::{decode, FORMAT_BINARY, FORMAT_JSON};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, RaftSnapshotBuilder};

/// A value as the build before the binary codec stored it: format byte 1, then JSON.
fn format_1<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = vec![FORMAT_JSON];
    bytes.extend(serde_json::to_vec(value).unwrap());
    bytes
}

/// An anchor part naming `case`'s head.
fn sample_anchor_part(case: &Case) -> liandong_domain::anchor::AnchorPart {
    let head = case.chain_head();
    liandong_domain::anchor::AnchorPart {
        office: code("530602"),
        seq: 4,
        at: START_MS,
        leaves: vec![liandong_domain::anchor::Leaf {
            case_id: case.id.clone(),
            entries: head.entries,
            hash: head.hash.clone(),
        }],
        priors: vec![liandong_domain::anchor::Leaf {
            case_id: case.id.clone(),
            entries: 1,
            hash: head.hash,
        }],
        removed: vec!["5306-2026-000009".parse().unwrap()],
        end: Some(liandong_domain::anchor::AnchorEnd {
            root: liandong_domain::anchor::EMPTY_ROOT.into(),
            count: 1,
        }),
    }
}

/// Encodes `value` in both formats and decodes each back.
fn round_trips<T>(what: &str, value: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    assert_eq!(
        &decode::<T>(&encode(value)).unwrap(),
        value,
        "{what}: binary"
    );
    assert_eq!(
        &decode::<T>(&format_1(value)).unwrap(),
        value,
        "{what}: format 1"
    );
}

/// A phone number no other value in these tests spells.
const PHONE: &str = "+8613987650123";

fn test_seal(office: &str) -> crate::personal::OfficeSeal {
    crate::personal::OfficeSeal::new(code(office), &[9; 32], vec![7; 32])
}

/// The sample registration, changed by `edit`, sealed by `seal` as a host seals a filing before
/// proposing it: the filing (officer "li") and the petitioner key it carries.
fn sealed_filing(
    seal: &crate::personal::OfficeSeal,
    request_id: &str,
    edit: impl FnOnce(&mut Registration),
) -> (Operation, String) {
    let mut registration = registration();
    edit(&mut registration);
    let key = seal.seal_registration(&mut registration).unwrap();
    let op = Operation::FileSealed {
        registration: Box::new(registration),
        petitioner_key: key.clone(),
        request_id: Some(request_id.into()),
        caller: "li".into(),
    };
    (op, key)
}

fn liandong_node_personal_has_sealed(case: &Case) -> bool {
    crate::personal::has_sealed(case)
}

/// Every value an office stored, read raw from its RocksDB.
fn stored_values(office: &Office) -> Vec<u8> {
    let mut all = Vec::new();
    for (key, value) in office.reader().scan(b"", b"\xff", usize::MAX).unwrap() {
        all.extend_from_slice(&key);
        all.extend_from_slice(&value);
    }
    all
}

fn spells(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// A sealed filing and a handoff sealed on receipt leave no phone or ID number in the state
/// machine's keys (cases, history, outbox, request records); a clear filing logged by an older
/// build still applies, with the petitioner key computed from its ID number as before.
#[test]
fn sealed_personal_data_is_stored_sealed_and_clear_filings_still_apply() {
    let mut township = Office::new("530602001", Some("530602"));
    let seal = test_seal("530602001");
    let (filing, key) = sealed_filing(&seal, "r1", |r| r.phone = Some(PHONE.into()));
    let case = case_of(township.apply(filing));
    assert_eq!(case.petitioner_key, key);
    township.act(
        &case.id,
        CaseCommand::Transfer {
            to: code("530602"),
            officer: "li".into(),
        },
    );
    let stored = stored_values(&township);
    assert!(!spells(&stored, PHONE.trim_start_matches('+')));
    assert!(!spells(&stored, "530602198001010012"));
    // The outbox holds the handoff sealed; the pump opens it for the wire, and the county seals
    // it under its own key before proposing; applied, it stays sealed.
    let (county, county_seal) = handed_to_county(&township, &seal);
    let mut held = county.case(&case.id).unwrap();
    assert!(crate::personal::has_sealed(&held));
    assert!(!spells(
        &stored_values(&county),
        PHONE.trim_start_matches('+')
    ));
    county_seal.open_case(&mut held).unwrap();
    assert_eq!(held.petitioner.unwrap().phone, Some(PHONE.into()));

    // A clear filing (an older build's log entry) applies as before.
    let clear = case_of(township.apply(Operation::File {
        registration: registration(),
        request_id: None,
        caller: String::new(),
    }));
    assert_eq!(
        clear.petitioner_key,
        liandong_domain::petitioner_key(&[7; 32], "530602198001010012")
    );
    assert_eq!(clear.petitioner.unwrap().name, "Zhang");
    assert_eq!(
        key, clear.petitioner_key,
        "the same petitioner, the same key"
    );
    // A sealed registration without its key is refused, changing nothing.
    let mut keyless = registration();
    seal.seal_registration(&mut keyless).unwrap();
    let refused = township.apply(Operation::File {
        registration: keyless,
        request_id: None,
        caller: String::new(),
    });
    assert_eq!(code_of(&refused), "no_petitioner_key");
}

fn log_id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(3, 1), index)
}

/// Every type the state machine and the log store keep round-trips in the binary format, and
/// reads from format 1 (fails when a serde attribute does not survive a non-self-describing
/// format: an internally tagged enum, a self-describing value, an `Option` read as its inside).
/// A session hosted by the city, inviting a county (`liandong_domain::session`).
fn sample_session() -> liandong_domain::session::Session {
    let input = liandong_domain::session::Schedule {
        starts_at: START_MS,
        ends_at: START_MS + 3_600_000,
        invite: vec![code("530602")],
        leader: "王市长".into(),
        slots: 3,
    };
    liandong_domain::session::schedule("5306-S1".into(), &code("5306"), input, "li", START_MS)
        .unwrap()
}

#[test]
fn every_stored_type_round_trips_in_both_formats() {
    let mut county = Office::new("530602", Some("5306"));
    let case = county.file();
    county.act(
        &case.id,
        CaseCommand::Transfer {
            to: code("530621"),
            officer: "li".into(),
        },
    );
    let whole = county.case(&case.id).unwrap();
    let (header, entries) = whole.clone().into_header();
    round_trips("a whole case", &whole);
    round_trips("a case header", &header);
    round_trips(
        "a link's messages refused on admission",
        &crate::machine::unadmitted::Unadmitted {
            count: 2,
            last_seq: 812,
            last_kind: "anchor".into(),
            last_code: "unknown_message_kind".into(),
            last_at: START_MS,
        },
    );
    round_trips("a history entry", &entries[1]);
    assert!(
        entries.iter().all(|entry| entry.signature.is_some()),
        "the entries an office applies are signed: {entries:?}"
    );
    let mut unsealed = entries[1].clone();
    unsealed.state_sha256 = None;
    unsealed.signer = None;
    unsealed.signature = None;
    round_trips("a history entry of a build before sealing", &unsealed);
    // Personal data sealed by the office (field encryption): a sealed filing, the case it
    // makes, and that case carried by a handoff.
    let seal = test_seal("530602");
    let (file_sealed, _) = sealed_filing(&seal, "r3", |r| r.phone = Some(PHONE.into()));
    let sealed_case = case_of(county.apply(file_sealed.clone()));
    assert!(liandong_node_personal_has_sealed(&sealed_case));
    round_trips("a case with sealed personal data", &sealed_case);
    round_trips(
        "a sealed case's header",
        &sealed_case.clone().into_header().0,
    );
    let bodies = [
        Body::Handoff {
            case: CaseDocument::of(&sealed_case),
        },
        Body::Handoff {
            case: CaseDocument::of(&whole),
        },
        Body::Escalation {
            level: ReviewLevel::ReReview,
            case: CaseDocument::of(&header),
        },
        Body::SupervisionOrder {
            case_id: case.id.clone(),
            order_id: "5306-1".into(),
            text: "t".into(),
            due_days: 3,
        },
        Body::SupervisionAnswer {
            case_id: case.id.clone(),
            order_id: String::new(),
            text: "t".into(),
            officer: "o".into(),
        },
        Body::IndexUpdate {
            summary: Summary::of(&whole),
        },
        Body::ReviewOpened {
            case_id: case.id.clone(),
            review_id: "5306-2026-000001".parse().unwrap(),
            level: ReviewLevel::Review,
        },
        Body::ReviewDecision {
            case_id: case.id.clone(),
            review_id: "5306-2026-000001".parse().unwrap(),
            level: ReviewLevel::ReReview,
            opinion: Opinion::Explain,
            text: "t".into(),
            decided_at: START_MS,
            is_final: true,
        },
        Body::SupervisionRelay {
            case_id: case.id.clone(),
            order_id: "5306-1".into(),
            issuer: code("5306"),
            text: "t".into(),
            ordered_at: START_MS,
            due_by: START_MS + 1,
        },
        Body::Breach {
            case_id: case.id.clone(),
            office: code("530602"),
            clock: liandong_domain::ClockKind::Supervision,
        },
        Body::SessionRecord {
            session: sample_session(),
        },
        Body::SessionReport {
            session_id: "5306-S1".into(),
            part: sample_session().parts[1].clone(),
        },
        Body::Notice {
            notice: crate::machine::notices::tests::sample_notice(&case.id),
        },
        Body::RedCard {
            card: crate::machine::notices::tests::sample_card(&case.id),
        },
        Body::IndexUpdateV2 {
            summary: SummaryV2::of(&whole),
        },
        Body::Anchor {
            part: sample_anchor_part(&whole),
        },
    ];
    // Anchors: the sender's walk and heads sent, the parent's leaves and anchor kept.
    let part = sample_anchor_part(&whole);
    round_trips(
        "an anchor walk",
        &crate::machine::anchors::AnchorScan {
            v: 1,
            cursor: Some(b"case/5306-2026-000001".to_vec()),
            in_pass: true,
            seq: 3,
            sent_in_pass: true,
            finished_at: START_MS,
            seen_link: 7,
        },
    );
    round_trips(
        "an anchored leaf",
        &crate::machine::anchors::AnchoredLeaf {
            v: 1,
            office: code("530602"),
            seq: 4,
            leaf: part.leaves[0].clone(),
            disputed: Some(part.priors[0].clone()),
        },
    );
    round_trips(
        "an anchor kept",
        &crate::machine::anchors::AnchorRecord {
            v: 1,
            office: code("530602"),
            seq: 4,
            root: liandong_domain::anchor::EMPTY_ROOT.into(),
            count: 1,
            at: START_MS,
            applied_at: START_MS + 1,
            held_root: liandong_domain::anchor::EMPTY_ROOT.into(),
            held_count: 1,
        },
    );
    // An index entry of summary version 2 (the index's values), and one of version 1 read back.
    round_trips("an index summary (version 2)", &SummaryV2::of(&whole));
    assert_eq!(
        SummaryV2::decode_stored(&encode(&Summary::of(&whole))).unwrap(),
        SummaryV2::from_v1(Summary::of(&whole))
    );
    // A scheduled report (`machine::reports`), made by the tick from the county's counters.
    county.apply(Operation::Tick);
    let report = crate::machine::reports::get(
        &county.reader(),
        liandong_domain::reports::ReportKind::Daily,
        &liandong_domain::reports::ReportKind::Daily
            .last_period(county.at)
            .0,
    )
    .unwrap()
    .expect("the tick made the daily report");
    assert!(report.total > 0 && !report.ranking.is_empty(), "{report:?}");
    round_trips("a scheduled report", &report);
    // An office's figures packed in one value (`machine::stats`), as the county's cases left it.
    let stored_row = county.reader().get(&keys::stat_row("530602")).unwrap();
    let stat_row: stats::StatRow = decode(&stored_row.expect("the county's packed row")).unwrap();
    assert!(stat_row.counts["total"] > 0, "{stat_row:?}");
    round_trips("an office's packed figures", &stat_row);
    // A joint reception session's record, and a booking with its personal fields sealed.
    round_trips("a session", &sample_session());
    let mut booked = registration();
    let booking_key = seal.seal_registration(&mut booked).unwrap();
    round_trips(
        "a session booking",
        &crate::machine::sessions::Booking {
            session: "5306-S1".into(),
            number: 1,
            petitioner_key: booking_key.clone(),
            petitioner_id: booked.petitioner_id.clone(),
            name: booked.name.clone(),
            booked_at: START_MS,
            officer: "li".into(),
        },
    );
    let envelopes: Vec<Envelope> = bodies
        .into_iter()
        .enumerate()
        .map(|(n, body)| Envelope {
            from: code("530602"),
            to: code("5306"),
            seq: n as u64 + 1,
            sent_at: START_MS,
            body,
        })
        .collect();
    for envelope in &envelopes {
        round_trips(envelope.body.kind(), envelope);
    }
    let commands = [
        CaseCommand::Accept {
            officer: "li".into(),
        },
        CaseCommand::Assign {
            to: code("530602001"),
            due_days: 9,
            officer: "li".into(),
        },
        CaseCommand::RequestReview,
        CaseCommand::HandoffAcked,
        CaseCommand::HandoffRefused { reason: "r".into() },
        CaseCommand::ReviewOpened {
            review: "5306-2026-000001".parse().unwrap(),
            level: ReviewLevel::Review,
        },
        CaseCommand::ReviewDecided {
            review: "5306-2026-000001".parse().unwrap(),
            level: ReviewLevel::Review,
            opinion: Opinion::NotSupport,
            text: "t".into(),
            decided_at: START_MS,
            is_final: false,
        },
        CaseCommand::FollowOrder {
            from: code("5306"),
            text: "t".into(),
            ordered_at: START_MS,
            due_by: START_MS + 1,
        },
    ];
    // A group petition: its group (sealed), the operation filing it, the version-3 case it
    // makes (read with its group by `Case::from_bytes`, which every reader of a case uses; a
    // plain deserialise of a case leaves the group out, see `Case::group`).
    let (file_group, group) = group_filing(&seal);
    round_trips("a sealed group", &group);
    let group_case = case_of(county.apply(file_group.clone()));
    assert!(group_case.group.is_some());
    // A case and its header, each read whole by `Case::from_bytes` from either format.
    let case_round_trips = |what: &str, case: &Case| {
        for (part, value) in [
            ("", case.clone()),
            ("'s header", case.clone().into_header().0),
        ] {
            assert_eq!(
                Case::from_bytes(&encode(&value)).unwrap(),
                value,
                "{what}{part}: binary"
            );
            assert_eq!(
                Case::from_bytes(&serde_json::to_vec(&value).unwrap()).unwrap(),
                value,
                "{what}{part}: JSON"
            );
        }
    };
    case_round_trips("a group case", &group_case);
    round_trips(
        "a handoff of a group case",
        &Body::Handoff {
            case: CaseDocument::of(&group_case),
        },
    );
    // A filing with the petitioner's address (a registration of version 2, sealed), and the
    // version-5 case it makes, read whole by `Case::from_bytes` as the group case is.
    let (file_addressed, _) = sealed_filing(&seal, "r4", |r| r.address = Some(ADDRESS.into()));
    let address_case = case_of(county.apply(file_addressed.clone()));
    assert_eq!(address_case.v, liandong_domain::CASE_VERSION_ADDRESS);
    assert!(address_case.address().is_some_and(|a| a.is_sealed()));
    case_round_trips("a case with an address", &address_case);
    round_trips(
        "a handoff of a case with an address",
        &Body::Handoff {
            case: CaseDocument::of(&address_case),
        },
    );
    let mut operations = vec![
        Operation::File {
            registration: registration(),
            request_id: Some("r1".into()),
            caller: "li".into(),
        },
        file_sealed,
        file_group,
        file_addressed,
        Operation::Tick,
        Operation::Supervise {
            case_id: case.id.clone(),
            to: code("530602001"),
            due_days: 4,
            text: "t".into(),
        },
        Operation::Receive {
            from: code("530602001"),
            envelopes: envelopes.clone(),
        },
        Operation::Acked {
            to: code("5306"),
            through: 4,
            refused: vec![Refusal {
                seq: 2,
                code: "c".into(),
                reason: "r".into(),
            }],
        },
        Operation::ReceiveMarked {
            from: code("530602001"),
            messages: vec![
                crate::raft::types::Received::Message(envelopes[0].clone()),
                crate::raft::types::Received::Unadmitted {
                    seq: 2,
                    code: "unknown_message_kind".into(),
                    reason: "r".into(),
                },
            ],
        },
    ];
    let audit_record = crate::raft::types::AuditRecord {
        at_ms: START_MS,
        user: "li".into(),
        office: "530602".into(),
        rpc: "Cases.File".into(),
        case_id: String::new(),
        request_id: "r1".into(),
        result: "ok".into(),
        detail: "reason".into(),
        count: 2,
    };
    let roles: std::collections::BTreeSet<_> = [Role::Registrar, Role::Admin].into();
    let changes = [
        OfficerChange::Add {
            user: "li".into(),
            roles: roles.clone(),
            password_hash: "$argon2id$x".into(),
            at_ms: START_MS,
        },
        OfficerChange::Bootstrap {
            user: "admin".into(),
            password_hash: "$argon2id$y".into(),
            at_ms: START_MS,
        },
        OfficerChange::SetPassword {
            user: "li".into(),
            password_hash: "$argon2id$z".into(),
            at_ms: START_MS,
        },
        OfficerChange::SetEnabled {
            user: "li".into(),
            enabled: false,
            at_ms: START_MS,
        },
        OfficerChange::LoginFailed {
            user: "li".into(),
            at_ms: START_MS,
        },
        OfficerChange::LoginSucceeded {
            user: "li".into(),
            at_ms: START_MS,
        },
    ];
    operations.extend(
        changes
            .into_iter()
            .map(|change| Operation::Officers { change }),
    );
    operations.push(Operation::Audit {
        records: vec![audit_record.clone()],
    });
    let session_commands = [
        liandong_domain::session::SessionCommand::Schedule(liandong_domain::session::Schedule {
            starts_at: START_MS,
            ends_at: START_MS + 1,
            invite: vec![code("530602001")],
            leader: "l".into(),
            slots: 2,
        }),
        liandong_domain::session::SessionCommand::Answer {
            session: "5306-S1".into(),
            accept: false,
            leader: "l".into(),
        },
        liandong_domain::session::SessionCommand::Book {
            session: "5306-S1".into(),
            petitioner_key: booking_key,
            petitioner_id: booked.petitioner_id,
            name: booked.name,
        },
        liandong_domain::session::SessionCommand::Recording {
            session: "5306-S1".into(),
            reference: "media/a.mp4".into(),
            sha256: "ab".repeat(32),
            bytes: 9,
        },
    ];
    operations.extend(
        session_commands
            .iter()
            .cloned()
            .map(|command| Operation::Session {
                command,
                caller: "li".into(),
            }),
    );
    operations.extend(
        session_commands
            .into_iter()
            .map(|command| Operation::SessionOnce {
                command,
                request_id: "s1".into(),
                caller: "li".into(),
            }),
    );
    operations.push(Operation::SessionFile {
        session: "5306-S1".into(),
        op: Box::new(Operation::File {
            registration: registration(),
            request_id: Some("r4".into()),
            caller: "li".into(),
        }),
    });
    // Escalating notices and red cards (machine::notices).
    operations.push(Operation::NoticePolicy {
        ages_days: Some(vec![30, 60, 90]),
        caller: "li".into(),
    });
    operations.push(Operation::NoticePolicy {
        ages_days: None,
        caller: "li".into(),
    });
    {
        use crate::machine::notices::{self, tests::sample_card, tests::sample_notice};
        let policy = liandong_domain::notice::StoredPolicy {
            v: 1,
            policy: liandong_domain::notice::NoticePolicy::new(vec![1, 2, 3]).unwrap(),
            set_by: "admin".into(),
            set_at: START_MS,
        };
        round_trips("a notice policy", &policy);
        round_trips(
            "the notice walk",
            &notices::NoticeScan {
                v: 1,
                cursor: Some(keys::case(&case.id.to_string())),
                pass_started: START_MS,
                pass_min: Some(START_MS + 1),
                next_at: None,
                poke: Some(START_MS + 2),
            },
        );
        round_trips(
            "a kept list's bounds",
            &notices::LogBounds { first: 2, next: 9 },
        );
        round_trips(
            "a received notice",
            &notices::ReceivedNotice {
                v: 1,
                notice: sample_notice(&case.id),
                received_at: START_MS,
            },
        );
        round_trips(
            "a logged red card",
            &notices::LoggedCard {
                v: 1,
                card: sample_card(&case.id),
                earned: true,
                logged_at: START_MS,
            },
        );
        round_trips("a notice counter", &3u8);
    }
    operations.push(Operation::Audited {
        record: audit_record.clone(),
        op: Box::new(Operation::File {
            registration: registration(),
            request_id: Some("r2".into()),
            caller: "li".into(),
        }),
    });
    round_trips(
        "an officer account",
        &OfficerRecord {
            user: "li".into(),
            roles,
            password_hash: "$argon2id$x".into(),
            enabled: true,
            failed_logins: 1,
            locked_until_ms: 0,
            tokens_valid_from_ms: START_MS,
            created_ms: START_MS,
            changed_ms: START_MS,
        },
    );
    round_trips(
        "an audit entry",
        &crate::machine::audit::AuditEntry {
            seq: 1,
            prev_hash: "00".into(),
            hash: "ab".into(),
            record: audit_record,
        },
    );
    operations.extend(commands.into_iter().map(|command| Operation::Act {
        case_id: case.id.clone(),
        command,
        request_id: None,
        caller: String::new(),
    }));
    // Departments, their tasks, joint meetings, intake points, proxies (machine::departments).
    let desk = crate::machine::departments::tests::sample();
    round_trips("a department", &desk.department);
    round_trips("a case's department tasks", &desk.tasks);
    round_trips(
        "a case's tasks closed when it was handed on",
        &liandong_domain::department::close_handed_on(
            None,
            &desk.tasks,
            &code("530621"),
            "transfer",
            START_MS,
        ),
    );
    round_trips("a joint meeting", &desk.meeting);
    round_trips("an intake point", &desk.point);
    round_trips("a proxy agent", &desk.agent);
    round_trips("a proxy filing", &desk.filing);
    operations.extend(desk.operations);
    // The notification outbox: a notice (phone sealed, each cause), its counters, its sending.
    let sealed_phone = sealed_case
        .petitioner
        .as_ref()
        .and_then(|petitioner| petitioner.phone.clone())
        .expect("the sealed case has a phone");
    let causes = [
        liandong_domain::notify::Cause::Registered {
            accept_by: Some(START_MS),
        },
        liandong_domain::notify::Cause::Accepted { reply_by: START_MS },
        liandong_domain::notify::Cause::Extended {
            reason: "r".into(),
            reply_by: START_MS,
        },
        liandong_domain::notify::Cause::Handed {
            from: code("5306"),
            handoff: "assign".into(),
        },
        liandong_domain::notify::Cause::Declined {
            route: liandong_domain::DeclineRoute::AdminReview,
        },
        liandong_domain::notify::Cause::Replied {
            opinion: Opinion::Support,
            evaluate_by: START_MS,
        },
    ];
    for (cause, stage) in causes
        .into_iter()
        .zip([0, 1, 2, 2, 3, 3].map(|n| liandong_domain::notify::Stage::ALL[n]))
    {
        round_trips(
            "a notification",
            &crate::machine::notify::Notification {
                v: crate::machine::notify::NOTIFICATION_VERSION,
                id: format!("530602/{}/{stage}/0", sealed_case.id),
                case_id: sealed_case.id.clone(),
                stage,
                seq: 3,
                cause,
                petitioner_key: sealed_case.petitioner_key.clone(),
                phone: sealed_phone.clone(),
                made_at: START_MS,
            },
        );
    }
    round_trips(
        "the notification counters",
        &crate::machine::notify::NotifyState {
            last: 4,
            pending: 2,
            pending_bytes: 600,
            sent: 2,
            dropped: 1,
        },
    );
    operations.push(Operation::NotificationSent {
        id: "530602/530602-2026-000001/result/0".into(),
    });
    for (n, op) in operations.into_iter().enumerate() {
        let entry = Entry {
            log_id: log_id(n as u64 + 1),
            payload: EntryPayload::Normal(Request { at: START_MS, op }),
        };
        round_trips("a log entry", &entry);
    }
    let membership = StoredMembership::new(
        Some(log_id(1)),
        openraft::Membership::new(vec![[1u64, 2, 3].into()], None),
    );
    round_trips(
        "a membership entry",
        &Entry {
            log_id: log_id(1),
            payload: EntryPayload::Membership(membership.membership().clone()),
        },
    );
    round_trips("a vote", &Vote::new(7, 2));
    round_trips("a log id", &log_id(9));
    round_trips("a committed mark", &Some(log_id(9)));
    round_trips(
        "the applied state",
        &AppliedState {
            last_applied: Some(log_id(4)),
            membership: membership.clone(),
            last_at: START_MS,
            state_hash: "ab".into(),
            cases: 3,
            outbox_pending: 2,
            hash_format: 2,
        },
    );
    round_trips(
        "a link out",
        &LinkOut {
            last_seq: 9,
            acked_through: 4,
        },
    );
    round_trips(
        "a link in",
        &LinkIn {
            applied_through: 9,
            applied: 9,
        },
    );
    round_trips(
        "an order",
        &OrderRecord {
            order_id: "5306-1".into(),
            case_id: case.id.clone(),
            to: code("530602"),
            text: "t".into(),
            ordered_at: 1,
            due_by: 2,
            answer: Some(OrderAnswer {
                text: "a".into(),
                officer: "o".into(),
                answered_at: 3,
            }),
            refused: None,
        },
    );
    round_trips(
        "a refusal",
        &Refusal {
            seq: 1,
            code: "c".into(),
            reason: "r".into(),
        },
    );
    round_trips(
        "a request record",
        &RequestRecord {
            operation: "accept".into(),
            case_id: case.id.clone(),
            at: START_MS,
            reply: whole.to_bytes(),
        },
    );
    round_trips(
        "a session request record",
        &crate::machine::requests::NamedRequestRecord {
            v: crate::machine::requests::NAMED_REQUEST_VERSION,
            operation: "book".into(),
            target: "5306-S1".into(),
            at: START_MS,
            reply: b"{}".to_vec(),
        },
    );
    round_trips(
        "a snapshot record",
        &state_machine::SnapshotRecord {
            meta: SnapshotMeta {
                last_log_id: Some(log_id(4)),
                last_membership: membership,
                snapshot_id: "3-4-ab".into(),
            },
            file: "snapshot-1.snap".into(),
        }
        .meta,
    );
    round_trips("a counter", &7u32);
    round_trips("a watermark", &START_MS);
    round_trips("an order id", &"5306-1".to_string());
}

/// A store of one office over its own RocksDB, as a host opens it.
fn open_store(dir: &std::path::Path, office: &str) -> StateMachineStore {
    let db = HostDb::open(&dir.join("db")).expect("RocksDB opens");
    StateMachineStore::new(
        db,
        code(office),
        None,
        vec![7; 32],
        Arc::new(Calendar::china()),
    )
    .expect("the state machine opens")
}

fn entry(index: u64, op: Operation) -> Entry {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(Request {
            at: START_MS + index as Millis * 60_000,
            op,
        }),
    }
}

/// Every state machine key of a store's office, with its value.
fn state_of(store: &StateMachineStore) -> Vec<(Vec<u8>, Vec<u8>)> {
    store.scan_prefix(b"", usize::MAX).unwrap()
}

/// A state as the build before the binary codec left it opens on this build: the case (one
/// JSON document) is split into header and entries, the request record becomes a scoped one
/// answering as before, the old snapshot record is dropped, and the first tick restarts the
/// state hash (fails if any of these format-1 forms is left unread).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_1_state_opens_converted() {
    let dir = tempfile::tempdir().unwrap();
    let mut office = Office::new("5306", None);
    let case = office.file();
    office.act(
        &case.id,
        CaseCommand::Accept {
            officer: "li".into(),
        },
    );
    let whole = office.case(&case.id).unwrap();
    let mut document = serde_json::to_value(&whole).unwrap();
    document["v"] = 1.into();
    document.as_object_mut().unwrap().remove("history_start");
    let id = case.id.to_string();
    {
        let db = HostDb::open(&dir.path().join("db")).unwrap();
        let mut txn = Txn::new(&db, "5306");
        txn.put(keys::case(&id), serde_json::to_vec(&document).unwrap());
        txn.put(keys::legacy_request("old-1"), format_1(&id));
        txn.put(
            keys::legacy_reply("old-1"),
            serde_json::to_vec(&document).unwrap(),
        );
        let mut applied = serde_json::to_value(AppliedState {
            last_at: START_MS,
            cases: 1,
            ..AppliedState::default()
        })
        .unwrap();
        applied.as_object_mut().unwrap().remove("hash_format");
        txn.put(keys::APPLIED.to_vec(), format_1(&applied));
        let mut batch = txn.into_batch();
        let old_snapshot = serde_json::json!({"meta": {"last_log_id": null, "last_membership": StoredMembership::default(), "snapshot_id": "x"}, "data": [1, 2]});
        batch.put_cf(
            db.cf(crate::store::keys::CF_META),
            crate::store::keys::meta_key("5306", "snapshot"),
            format_1(&old_snapshot),
        );
        db.write(batch, true).unwrap();
    }
    let mut store = open_store(dir.path(), "5306");
    assert_eq!(
        store.case(&case.id).unwrap().unwrap(),
        whole,
        "the case reads whole"
    );
    let header = Case::from_bytes(&store.get(&keys::case(&id)).unwrap().unwrap()).unwrap();
    assert!(
        header.history.is_empty() && header.history_len() == 2,
        "stored as a header"
    );
    assert!(store.get(&keys::legacy_request("old-1")).unwrap().is_none());
    assert!(store.get(&keys::legacy_reply("old-1")).unwrap().is_none());
    assert!(
        store.get_current_snapshot().await.unwrap().is_none(),
        "the old snapshot is dropped"
    );
    assert_eq!(store.applied().unwrap().hash_format, 0);
    assert!(
        store.tick_due(START_MS).unwrap(),
        "a tick must restart the hash"
    );
    let retried = Operation::Act {
        case_id: case.id.clone(),
        command: CaseCommand::Accept {
            officer: "li".into(),
        },
        request_id: Some("old-1".into()),
        caller: String::new(),
    };
    let answers = store
        .apply([entry(5, retried), entry(6, Operation::Tick)])
        .await
        .unwrap();
    let Response::Case { document: answered } = &answers[0] else {
        panic!("{answers:?}")
    };
    let mut answered = Case::from_bytes(answered).unwrap();
    assert_eq!(answered.v, 1, "the old build's own reply document");
    answered.v = whole.v;
    assert_eq!(
        answered, whole,
        "the old request is answered as the first time"
    );
    assert_eq!(store.applied().unwrap().hash_format, FORMAT_BINARY);
    // Reopening finds nothing left to convert.
    drop(store);
    let again = open_store(dir.path(), "5306");
    assert_eq!(again.case(&case.id).unwrap().unwrap(), whole);
}

async fn snapshot_of(store: &StateMachineStore) -> crate::raft::types::Snapshot {
    store
        .clone()
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap()
}

/// A snapshot is built by streaming a consistent view to a file and installs on another replica
/// to the same state; a corrupt file is refused and changes nothing (fails if a snapshot loses
/// a key, or a damaged one is installed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_file_installs_elsewhere_and_a_corrupt_one_changes_nothing() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = open_store(a_dir.path(), "5306");
    let mut b = open_store(b_dir.path(), "5306");
    let filing = |n: u64| {
        entry(
            n,
            Operation::File {
                registration: registration(),
                request_id: Some(format!("r{n}")),
                caller: String::new(),
            },
        )
    };
    a.apply((1..=40).map(filing)).await.unwrap();
    b.apply([filing(1)]).await.unwrap();
    let snapshot = snapshot_of(&a).await;
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(40)));
    let b_before = state_of(&b);

    // Damaged on the way: one byte flipped.
    let mut bytes = Vec::new();
    let mut file = snapshot.snapshot.try_into_std().unwrap();
    std::io::Read::read_to_end(&mut file, &mut bytes).unwrap();
    let mut damaged = bytes.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x55;
    let mut received = b
        .begin_receiving_snapshot()
        .await
        .unwrap()
        .try_into_std()
        .unwrap();
    std::io::Write::write_all(&mut received, &damaged).unwrap();
    let refused = b
        .install_snapshot(
            &snapshot.meta,
            Box::new(tokio::fs::File::from_std(received)),
        )
        .await;
    assert!(refused.is_err(), "a corrupt snapshot is refused");
    assert_eq!(state_of(&b), b_before, "and changes nothing");

    let mut received = b
        .begin_receiving_snapshot()
        .await
        .unwrap()
        .try_into_std()
        .unwrap();
    std::io::Write::write_all(&mut received, &bytes).unwrap();
    b.install_snapshot(
        &snapshot.meta,
        Box::new(tokio::fs::File::from_std(received)),
    )
    .await
    .unwrap();
    assert_eq!(
        state_of(&b),
        state_of(&a),
        "the installed state is the snapshot's"
    );
    assert_eq!(
        b.get_current_snapshot().await.unwrap().unwrap().meta,
        snapshot.meta
    );
    assert_eq!(b.applied().unwrap().cases, 40);
}

/// An install a crash interrupted (marked, state half replaced) is finished when the replica
/// opens again (fails if a replica could start on a half-installed state).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_install_is_finished_at_open() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = open_store(a_dir.path(), "5306");
    let filing = |n: u64| {
        entry(
            n,
            Operation::File {
                registration: registration(),
                request_id: None,
                caller: String::new(),
            },
        )
    };
    a.apply((1..=5).map(filing)).await.unwrap();
    let snapshot = snapshot_of(&a).await;
    let expected = state_of(&a);
    {
        let b = open_store(b_dir.path(), "5306");
        let record = state_machine::SnapshotRecord {
            meta: snapshot.meta.clone(),
            file: "snapshot-interrupted.snap".into(),
        };
        let mut source = snapshot.snapshot.try_into_std().unwrap();
        let target = b_dir
            .path()
            .join("snapshots")
            .join("5306")
            .join(&record.file);
        std::io::copy(&mut source, &mut std::fs::File::create(&target).unwrap()).unwrap();
        // The crash: the install is marked and the state half replaced.
        let db = b.db();
        let mut txn = Txn::new(db, "5306");
        txn.put(b"case/half".to_vec(), vec![1]);
        let mut batch = txn.into_batch();
        batch.put_cf(
            db.cf(crate::store::keys::CF_META),
            crate::store::keys::meta_key("5306", state_machine::SNAPSHOT_INSTALLING),
            encode(&record),
        );
        db.write(batch, true).unwrap();
    }
    let b = open_store(b_dir.path(), "5306");
    assert_eq!(state_of(&b), expected);
}

/// The county's counters after its township's summaries: office -> figure -> count.
fn stat_rows(
    office: &Office,
) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>> {
    stats::rows(&office.reader()).unwrap()
}

/// Without counters moved on every index change the figures would have to list the cases (and
/// stopped at a page of 10,000 before): here more than 10,000 summaries arrive, some change
/// twice, and every total equals the sum of its parts and a fresh count of the stored state.
#[test]
fn statistics_are_counters_exact_past_ten_thousand_cases() {
    const CASES: u32 = 10_050;
    let mut township = Office::new("530602001", Some("530602"));
    let base = Summary::of(&township.file());
    let mut county = Office::new("530602", None);
    let summary_of = |seq: u32| {
        let mut summary = base.clone();
        summary.case_id = CaseId::new(code("530602001"), 2026, seq);
        summary.category = if seq.is_multiple_of(3) {
            "land"
        } else {
            "labour"
        }
        .into();
        summary
    };
    for seq in 1..=CASES {
        let summary = summary_of(seq);
        assert!(county
            .deliver("530602001", Body::IndexUpdate { summary })
            .is_none());
    }
    // The first hundred are accepted and then found overdue (a newer version each time).
    for seq in 1..=100 {
        let mut summary = summary_of(seq);
        summary.status = "accepted".into();
        summary.version = base.version + 1;
        county.deliver(
            "530602001",
            Body::IndexUpdate {
                summary: summary.clone(),
            },
        );
        summary.overdue = true;
        summary.version = base.version + 2;
        county.deliver("530602001", Body::IndexUpdate { summary });
    }
    // An older copy arriving late changes nothing.
    let late = summary_of(1);
    county.deliver("530602001", Body::IndexUpdate { summary: late });
    county.file();

    let rows = stat_rows(&county);
    let township_row = &rows["530602001"];
    assert_eq!(township_row["total"], u64::from(CASES));
    assert_eq!(township_row["status:accepted"], 100);
    assert_eq!(township_row["status:registered"], u64::from(CASES) - 100);
    assert_eq!(township_row["overdue"], 100);
    assert_eq!(township_row["backlog"], 100);
    assert_eq!(
        township_row["category:land"] + township_row["category:labour"],
        township_row["total"]
    );
    assert_eq!(
        rows["530602"]["total"], 1,
        "the county's own case, counted once"
    );
    let statuses: u64 = township_row
        .iter()
        .filter(|(figure, _)| figure.starts_with("status:"))
        .map(|(_, count)| count)
        .sum();
    assert_eq!(statuses, township_row["total"]);

    // Counted afresh from the stored cases and index, the figures are the same.
    let mut txn = county.reader();
    txn.delete(keys::STATS_FORMAT.to_vec());
    county.db.write(txn.into_batch(), true).unwrap();
    assert!(stats::rebuild_if_missing(&county.db, "530602").unwrap());
    assert_eq!(stat_rows(&county), rows);
    assert!(!stats::rebuild_if_missing(&county.db, "530602").unwrap());
}

/// A case the county holds itself and also knows from below (it was transferred up) is counted
/// once, as the county's; without `effective` it would count under both offices.
#[test]
fn a_case_known_from_below_and_held_here_is_counted_once() {
    let mut county = Office::new("530602", None);
    let case = county.file();
    let mut from_below = Summary::of(&case);
    from_below.owner = code("530602001");
    from_below.status = "forwarded".into();
    county.deliver(
        "530602001",
        Body::IndexUpdate {
            summary: from_below,
        },
    );
    let rows = stat_rows(&county);
    assert_eq!(rows["530602"]["total"], 1);
    assert!(!rows.contains_key("530602001"), "{rows:?}");
}

/// An audit record for `op` as the Cases API wraps it.
pub(crate) fn audited(op: Operation, request_id: &str) -> Operation {
    Operation::Audited {
        record: crate::raft::types::AuditRecord {
            at_ms: START_MS,
            user: "li".into(),
            office: "5306".into(),
            rpc: "Cases.Write".into(),
            case_id: String::new(),
            request_id: request_id.into(),
            result: String::new(),
            detail: String::new(),
            count: 1,
        },
        op: Box::new(op),
    }
}

/// A batch entry applies its operations in order, one response each, exactly as separate
/// entries would: a retry within the same batch is answered from the first, a refusal touches
/// only its own operation, each audited operation leaves its own audit record, and what may not
/// share an entry (a nested batch, a tick) is refused and changes nothing (fails if a batch's
/// operations interfere, share a response, or lose their records).
#[test]
fn a_batch_applies_its_operations_as_separate_entries_would() {
    let operations = |existing: &CaseId| {
        vec![
            audited(with_id(filing(), "b1", "li"), "b1"),
            audited(with_id(filing(), "b1", "li"), "b1"),
            audited(accept(existing), ""),
            audited(accept(existing), ""),
            Operation::Batch {
                operations: vec![filing()],
            },
            Operation::Tick,
            filing(),
        ]
    };
    let mut batched = Office::new("5306", None);
    let existing = batched.file();
    let Response::Batch { responses } = batched.apply(Operation::Batch {
        operations: operations(&existing.id),
    }) else {
        panic!("a batch answers with a batch");
    };
    assert_eq!(responses.len(), 7);
    assert_eq!(responses[0], responses[1], "the retry in the same entry");
    assert_eq!(case_of(responses[2].clone()).status, Status::Accepted);
    assert_eq!(code_of(&responses[3]), "already_accepted");
    assert_eq!(code_of(&responses[4]), "not_batchable");
    assert_eq!(code_of(&responses[5]), "not_batchable");
    assert_eq!(case_of(responses[6].clone()).status, Status::Registered);
    assert_eq!(batched.state.cases, 3, "two new cases");

    let mut separate = Office::new("5306", None);
    let existing = separate.file();
    let stamp = separate.at + 60_000; // the batch's operations share its stamp
    let one_by_one: Vec<Response> = operations(&existing.id)
        .into_iter()
        .filter(Operation::gathers)
        .map(|op| {
            separate.at = stamp - 60_000;
            separate.apply(op)
        })
        .collect();
    let gathered: Vec<Response> = responses
        .into_iter()
        .filter(|response| !matches!(response, Response::Rejected { code, .. } if code == "not_batchable"))
        .collect();
    assert_eq!(gathered, one_by_one, "the same answers as separate entries");
    let records = |office: &Office| {
        let txn = Txn::new(&office.db, office.context.office.as_str());
        audit::entries(&txn, 1, 100)
            .unwrap()
            .into_iter()
            .map(|entry| {
                (
                    entry.record.request_id,
                    entry.record.result,
                    entry.record.case_id,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        records(&batched).len(),
        4,
        "one record per audited operation"
    );
    assert_eq!(records(&batched), records(&separate));
}

/// An audited registration's record names the case it made, as applying named it; its retry,
/// answered from the request's record, names the same case, and a refused one names none
/// (fails if a record loses the case a registration made, or names another).
#[test]
fn an_audited_registration_names_the_case_it_made() {
    let mut office = Office::new("5306", None);
    let first = case_of(office.apply(audited(with_id(filing(), "r1", "li"), "r1")));
    let retried = case_of(office.apply(audited(with_id(filing(), "r1", "li"), "r1")));
    assert_eq!(first.id, retried.id, "the retry answered from the record");
    let second = case_of(office.apply(audited(filing(), "")));
    assert_ne!(first.id, second.id);
    let mut refused = filing();
    if let Operation::File { registration, .. } = &mut refused {
        registration.summary = "a bell \u{7}".to_string();
    }
    let refusal = office.apply(audited(refused, ""));
    assert!(matches!(refusal, Response::Rejected { .. }), "{refusal:?}");
    let txn = Txn::new(&office.db, office.context.office.as_str());
    let named: Vec<(String, String)> = audit::entries(&txn, 1, 100)
        .unwrap()
        .into_iter()
        .map(|entry| (entry.record.case_id, entry.record.result))
        .collect();
    assert_eq!(named.len(), 4, "{named:?}");
    assert_eq!(named[0].0, first.id.to_string());
    assert_eq!(named[1].0, first.id.to_string());
    assert_eq!(named[2].0, second.id.to_string());
    assert_eq!(named[3].0, "", "a refusal made no case");
    assert!(named[3].1.starts_with("refused"), "{named:?}");
}

/// A case the county let pass its acceptance limit stays on the county's record of breaches
/// after it is transferred away; the breach goes up to the city, which counts it for the county
/// and passes it on; the receiver starts clean.
#[test]
fn a_breach_stays_on_the_record_of_the_office_that_held_the_case() {
    let mut county = Office::new("530602", Some("5306"));
    let case = county.file();
    county.at += 16 * liandong_domain::DAY_MS;
    county.apply(Operation::Tick);
    let overdue = county.case(&case.id).unwrap();
    assert!(overdue.overdue, "the 15-day limit passed at the county");
    let row = |office: &Office, code: &str, figure: &str| {
        stats::rows(&office.reader())
            .unwrap()
            .get(code)
            .and_then(|row| row.get(figure).copied())
    };
    assert_eq!(row(&county, "530602", stats::BREACHED), Some(1));
    assert_eq!(row(&county, "530602", "overdue"), Some(1));
    // Once per case and office: a second limit passing (the tick again) adds nothing.
    county.at += 30 * liandong_domain::DAY_MS;
    county.apply(Operation::Tick);
    assert_eq!(row(&county, "530602", stats::BREACHED), Some(1));

    // The breach went up with the summaries.
    let link: LinkOut = get_or_default(&county.reader(), &keys::link(&code("5306"))).unwrap();
    let sent: Vec<Envelope> = (1..=link.last_seq)
        .filter_map(|seq| {
            county
                .reader()
                .get(&keys::outbox(&code("5306"), seq))
                .unwrap()
        })
        .map(|bytes| crate::store::codec::decode(&bytes).unwrap())
        .collect();
    let breaches: Vec<&Body> = sent
        .iter()
        .map(|envelope| &envelope.body)
        .filter(|body| matches!(body, Body::Breach { .. }))
        .collect();
    assert_eq!(breaches.len(), 1, "{sent:?}");

    county.act(
        &case.id,
        CaseCommand::Transfer {
            to: code("530621"),
            officer: "li".into(),
        },
    );
    county.apply(Operation::Acked {
        to: code("530621"),
        through: 1,
        refused: Vec::new(),
    });
    let stub = county.case(&case.id).unwrap();
    assert!(
        matches!(stub.status, Status::Forwarded { .. }),
        "{:?}",
        stub.status
    );
    assert_eq!(
        row(&county, "530602", "overdue"),
        None,
        "the case left the county"
    );
    assert_eq!(
        row(&county, "530602", stats::BREACHED),
        Some(1),
        "the breach stays on the county's record"
    );
    // A recount of the stored cases cannot find it again: it keeps it.
    let mut txn = county.reader();
    txn.delete(keys::STATS_FORMAT.to_vec());
    county.db.write(txn.into_batch(), true).unwrap();
    assert!(stats::rebuild_if_missing(&county.db, "530602").unwrap());
    assert_eq!(row(&county, "530602", stats::BREACHED), Some(1));

    let mut city = Office::new("5306", None);
    assert_eq!(city.deliver("530602", breaches[0].clone()), None);
    assert_eq!(row(&city, "530602", stats::BREACHED), Some(1));
    let pending = city.state.outbox_pending;
    assert_eq!(pending, 0, "the root passes nothing on");
    // A county passes its township's breach on to the city.
    let mut parent = Office::new("530602", Some("5306"));
    let township_breach = Body::Breach {
        case_id: case.id.clone(),
        office: code("530602001"),
        clock: liandong_domain::ClockKind::Reply,
    };
    assert_eq!(parent.deliver("530602001", township_breach), None);
    assert_eq!(row(&parent, "530602001", stats::BREACHED), Some(1));
    assert_eq!(parent.state.outbox_pending, 1);
}

/// A supervision order that reaches an office after the case left is passed on to the office
/// it went to, with its issuer and due date; the receiver takes it only from that office.
#[test]
fn an_order_for_a_case_handed_on_is_passed_on() {
    let mut county = Office::new("530602", Some("5306"));
    let case = county.file();
    county.act(
        &case.id,
        CaseCommand::Transfer {
            to: code("530621"),
            officer: "li".into(),
        },
    );
    let order = Body::SupervisionOrder {
        case_id: case.id.clone(),
        order_id: "5306-1".into(),
        text: "Report.".into(),
        due_days: 5,
    };
    assert_eq!(
        county.deliver("5306", order),
        None,
        "passed on, not refused"
    );
    let link: LinkOut = get_or_default(&county.reader(), &keys::link(&code("530621"))).unwrap();
    assert_eq!(link.last_seq, 2, "the handoff, then the order behind it");
    let relayed: Envelope = crate::store::codec::decode(
        &county
            .reader()
            .get(&keys::outbox(&code("530621"), 2))
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let Body::SupervisionRelay {
        issuer,
        ordered_at,
        due_by,
        ..
    } = &relayed.body
    else {
        panic!("{relayed:?}");
    };
    assert_eq!(issuer, &code("5306"));
    assert!(due_by > ordered_at);

    let handoff: Envelope = crate::store::codec::decode(
        &county
            .reader()
            .get(&keys::outbox(&code("530621"), 1))
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let mut receiver = Office::new("530621", Some("5306"));
    assert_eq!(receiver.receive(&code("530602"), handoff), None);
    assert_eq!(receiver.receive(&code("530602"), relayed), None);
    let held = receiver.case(&case.id).unwrap();
    assert_eq!(held.supervision.map(|order| order.from), Some(code("5306")));
}

/// The signing key of `office` in these tests: one per office, the same in every test office
/// (two test offices of one code apply alike).
pub(crate) fn test_signer(office: &str) -> crate::machine::seal::OfficeSigner {
    use sha2::Digest;
    let seed = sha2::Sha256::digest(office.as_bytes());
    let key = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).expect("a key");
    crate::machine::seal::OfficeSigner::new(code(office), key)
}

/// A co-petitioner's name and passport number, and the representative's, that no other value in
/// these tests spells.
const MEMBER_NAME: &str = "Zorblat Quux";
const MEMBER_PASSPORT: &str = "E98765432";
const MEMBER_PHONE: &str = "+4479460123";
const REPRESENTATIVE_PASSPORT: &str = "K24681357";

/// A group filing sealed by `seal`'s office: a passport holder representing a resident and a
/// second passport holder; the operation and its sealed group.
fn group_filing(seal: &crate::personal::OfficeSeal) -> (Operation, liandong_domain::group::Group) {
    use liandong_domain::group::{arrange, Group, Party};
    use liandong_domain::IdType;
    let parties = arrange(
        vec![
            Party {
                id_type: IdType::Passport,
                id_number: REPRESENTATIVE_PASSPORT.into(),
                name: "Ann Smith".into(),
                phone: Some(PHONE.into()),
                nationality: Some("GBR".into()),
            },
            Party {
                id_type: IdType::Resident,
                id_number: "530602198001010012".into(),
                name: "Zhang".into(),
                phone: None,
                nationality: None,
            },
            Party {
                id_type: IdType::Passport,
                id_number: MEMBER_PASSPORT.into(),
                name: MEMBER_NAME.into(),
                phone: Some(MEMBER_PHONE.into()),
                nationality: Some("USA".into()),
            },
        ],
        0,
    )
    .unwrap();
    let mut registration = registration();
    registration.petitioner_id = REPRESENTATIVE_PASSPORT.into();
    registration.name = "Ann Smith".into();
    registration.phone = Some(PHONE.into());
    let mut group = Group::of(&parties).unwrap();
    let petitioner_key = seal
        .seal_group_filing(&mut registration, &mut group)
        .unwrap();
    let op = Operation::FileGroup {
        registration: Box::new(registration),
        group: Box::new(group.clone()),
        petitioner_key,
        request_id: Some("g1".into()),
        caller: "li".into(),
    };
    (op, group)
}

/// A group petition's members are sealed in the log entry and in every stored value, at the
/// office that filed it and at the one it moved to; the new owner opens them, the old one keeps
/// a stub without them.
/// The handoff waiting in township 530602001's outbox (sealed under `seal`), as it goes on the
/// wire (opened, checked as every receiver checks it) and arrives at county 530602, sealed under
/// the county's key: the county's office, with the case applied, and its seal.
fn handed_to_county(
    township: &Office,
    seal: &crate::personal::OfficeSeal,
) -> (Office, crate::personal::OfficeSeal) {
    let link = keys::outbox_link(&code("530602"));
    let mut wire: Envelope = township
        .reader()
        .scan(&link, &crate::store::keys::prefix_end(&link), usize::MAX)
        .unwrap()
        .iter()
        .map(|(_, value)| decode::<Envelope>(value).unwrap())
        .find(|envelope| matches!(envelope.body, Body::Handoff { .. }))
        .expect("the handoff waits in the outbox");
    seal.open_envelope(&mut wire).unwrap();
    crate::personal::check_arrived_clear(&wire).unwrap();
    wire.body.validate().unwrap();
    let mut county = Office::new("530602", Some("5306"));
    let county_seal = test_seal("530602");
    county_seal.seal_envelope(&mut wire).unwrap();
    assert_eq!(county.deliver("530602001", wire.body.clone()), None);
    (county, county_seal)
}

#[test]
fn a_group_is_sealed_in_the_log_and_at_rest_and_moves_with_the_case() {
    let mut township = Office::new("530602001", Some("530602"));
    let seal = test_seal("530602001");
    let (op, _) = group_filing(&seal);
    let logged = encode(&Request {
        at: START_MS,
        op: op.clone(),
    });
    for clear in [
        MEMBER_NAME,
        MEMBER_PASSPORT,
        REPRESENTATIVE_PASSPORT,
        "4479460123",
        "passport",
        "GBR",
    ] {
        assert!(!spells(&logged, clear), "the log entry spells {clear}");
    }
    let case = case_of(township.apply(op));
    assert_eq!(case.v, liandong_domain::CASE_VERSION_GROUP);
    assert_eq!(
        case.petitioner_key,
        liandong_domain::document_key(
            &[7; 32],
            liandong_domain::IdType::Passport,
            REPRESENTATIVE_PASSPORT
        )
    );
    township.act(
        &case.id,
        CaseCommand::Transfer {
            to: code("530602"),
            officer: "li".into(),
        },
    );
    let stored = stored_values(&township);
    for clear in [MEMBER_NAME, MEMBER_PASSPORT, "4479460123"] {
        assert!(!spells(&stored, clear), "the township stores {clear}");
    }
    let (county, county_seal) = handed_to_county(&township, &seal);
    let stored = stored_values(&county);
    for clear in [MEMBER_NAME, MEMBER_PASSPORT, "4479460123"] {
        assert!(!spells(&stored, clear), "the county stores {clear}");
    }
    let mut held = county.case(&case.id).unwrap();
    county_seal.open_case(&mut held).unwrap();
    let group = held.group.expect("the group moved with the case");
    assert_eq!(group.id_type, "passport");
    assert_eq!(group.members.len(), 2);
    assert_eq!(group.members[1].name, MEMBER_NAME);
    assert_eq!(group.members[1].id_number, MEMBER_PASSPORT);
    assert_eq!(group.members[1].phone, Some(MEMBER_PHONE.into()));
    // The county's seal is its own: the township's key does not open it.
    let mut sealed_at_county = county.case(&case.id).unwrap();
    assert!(seal.open_case(&mut sealed_at_county).is_err());
}

/// An address no other value in these tests spells.
const ADDRESS: &str = "昭通市昭阳区海楼路 88 号";

/// A petitioner's address is sealed in the filing's log entry and in every stored value, at the
/// office that filed it and at the one it moved to; `case show` (the opened document) gives it
/// to the office's officers, and the new owner opens it under its own key (the old one's stub
/// keeps none: the domain's `address` tests).
#[test]
fn an_address_is_sealed_in_the_log_and_at_rest_and_moves_with_the_case() {
    let mut township = Office::new("530602001", Some("530602"));
    let seal = test_seal("530602001");
    let (op, _) = sealed_filing(&seal, "r-address", |r| r.address = Some(ADDRESS.into()));
    let Operation::FileSealed { registration, .. } = &op else {
        unreachable!("sealed_filing makes a FileSealed")
    };
    assert!(registration.address.as_ref().unwrap().is_sealed());
    let logged = encode(&Request {
        at: START_MS,
        op: op.clone(),
    });
    assert!(
        !spells(&logged, "海楼路"),
        "the log entry spells the address"
    );
    let case = case_of(township.apply(op));
    assert_eq!(case.v, liandong_domain::CASE_VERSION_ADDRESS);
    assert!(case.address().unwrap().is_sealed());
    // `case show`: the stored document, opened for an officer of the office.
    let stored = township.case(&case.id).unwrap();
    let shown = Case::from_bytes(&seal.open_document(&stored.to_bytes()).unwrap()).unwrap();
    assert_eq!(shown.address(), Some(&ADDRESS.into()));
    township.act(
        &case.id,
        CaseCommand::Transfer {
            to: code("530602"),
            officer: "li".into(),
        },
    );
    assert!(!spells(&stored_values(&township), "海楼路"));
    let (county, county_seal) = handed_to_county(&township, &seal);
    assert!(!spells(&stored_values(&county), "海楼路"));
    let mut held = county.case(&case.id).unwrap();
    assert!(held.address().unwrap().is_sealed());
    // The township's key does not open the county's seal; the county's does.
    assert!(seal.open_case(&mut held.clone()).is_err());
    county_seal.open_case(&mut held).unwrap();
    assert_eq!(held.address(), Some(&ADDRESS.into()));
}

/// A dissatisfied evaluation opens a follow-up (回访) whose clock is stored with the case (case
/// version 4), ticks like a statutory one (a missed follow-up is a breach on the office's record)
/// and stops when the follow-up is recorded; a grade's deadline warns without a breach.
#[test]
fn a_follow_up_and_a_grade_clock_are_stored_ticked_and_recorded() {
    use liandong_domain::{ClockKind, Opinion, Satisfaction, CASE_VERSION_EXTRA};
    let mut county = Office::new("530602", Some("5306"));
    let graded = county.file();
    county.act(
        &graded.id,
        CaseCommand::Accept {
            officer: "li".into(),
        },
    );
    let deadline = county.at + 4 * liandong_domain::DAY_MS;
    county.act(
        &graded.id,
        CaseCommand::SetGrade {
            grade: liandong_domain::Grade::B,
            leader: "Chen".into(),
            department: "Land".into(),
            plan: "Pay".into(),
            deadline,
        },
    );
    let stored = county.case(&graded.id).unwrap();
    assert_eq!(stored.v, CASE_VERSION_EXTRA);
    assert_eq!(stored.clock_due(ClockKind::Grade), Some(deadline));

    let case = county.file();
    for command in [
        CaseCommand::Accept {
            officer: "li".into(),
        },
        CaseCommand::Reply {
            opinion: Opinion::NotSupport,
            text: "no".into(),
            officer: "li".into(),
        },
        CaseCommand::Evaluate {
            satisfaction: Satisfaction::Dissatisfied,
        },
    ] {
        county.act(&case.id, command);
    }
    let stored = county.case(&case.id).unwrap();
    let due = stored
        .clock_due(ClockKind::FollowUp)
        .expect("a follow-up is due, read back from RocksDB");
    assert_eq!(stored.v, CASE_VERSION_EXTRA);

    county.advance_to(due.max(deadline) + liandong_domain::DAY_MS);
    county.apply(Operation::Tick);
    let graded = county.case(&graded.id).unwrap();
    assert_eq!(
        graded
            .clock_run(ClockKind::Grade)
            .map(|run| run.reached_percent),
        Some(100)
    );
    assert!(!graded.overdue, "a grade's deadline is no breach");
    let missed = county.case(&case.id).unwrap();
    assert!(missed.overdue, "the follow-up was not made in time");
    let row = stats::rows(&county.reader()).unwrap();
    assert_eq!(
        row.get("530602")
            .and_then(|row| row.get(stats::BREACHED).copied()),
        Some(1),
        "one breach: the missed follow-up"
    );

    county.act(
        &case.id,
        CaseCommand::FollowUp {
            note: "Reached by phone".into(),
            officer: "zhao".into(),
        },
    );
    let done = county.case(&case.id).unwrap();
    assert_eq!(done.clock_run(ClockKind::FollowUp), None);
    let record = done.extra.and_then(|extra| extra.followed_up).unwrap();
    assert_eq!(
        (record.officer.as_str(), record.note.as_str()),
        ("zhao", "Reached by phone")
    );
}

/// Summary version 2's figures move with the case in the same transaction: acceptance in time
/// and late, an on-time reply with its resolution, the channel, the level and the trend's days;
/// each dimension sums to the total, and a recount of the stored state gives the same rows
/// (fails without the counters moved on each change, or with a figure counted twice).
#[test]
fn version_2_figures_move_with_the_case_and_add_up() {
    use liandong_domain::figures::{day_figure, Rates};
    use liandong_domain::Date;
    let mut county = Office::new("530602", Some("5306"));
    let prompt = county.file();
    let slow = county.file();
    let accept = || CaseCommand::Accept {
        officer: "li".into(),
    };
    county.act(&prompt.id, accept());
    let rows = stat_rows(&county);
    assert_eq!(rows["530602"]["accepted:in_time"], 1);
    assert!(!rows["530602"].contains_key("accepted:late"));
    county.advance_to(START_MS + 16 * liandong_domain::DAY_MS);
    county.act(&slow.id, accept());
    county.act(
        &prompt.id,
        CaseCommand::Reply {
            opinion: Opinion::Explain,
            text: "Explained.".into(),
            officer: "li".into(),
        },
    );
    let rows = stat_rows(&county);
    let row = &rows["530602"];
    assert_eq!(row["total"], 2);
    assert_eq!(row["accepted:in_time"], 1);
    assert_eq!(row["accepted:late"], 1);
    assert_eq!(row["replied:on_time"], 1);
    assert_eq!(row["answered:original"], 1);
    assert_eq!(row["resolution:explain"], 1);
    assert_eq!(row["channel:visit"], 2);
    assert_eq!(row["level:county"], 2);
    let day = Date::from_millis(START_MS);
    assert_eq!(row[&day_figure(day, "registered")], 2);
    let replied_day = Date::from_millis(START_MS + 16 * liandong_domain::DAY_MS);
    assert_eq!(row[&day_figure(replied_day, "replied")], 1);
    for dimension in ["level:", "channel:", "status:", "kind:"] {
        let sum: u64 = row
            .iter()
            .filter(|(figure, _)| figure.starts_with(dimension))
            .map(|(_, count)| count)
            .sum();
        assert_eq!(sum, row["total"], "{dimension}");
    }
    let rates = Rates::of(row);
    assert_eq!(rates.acceptance_in_time.value(), Some(0.5));
    assert_eq!(rates.reply_on_time.value(), Some(1.0));

    let mut txn = county.reader();
    txn.delete(keys::STATS_FORMAT.to_vec());
    county.db.write(txn.into_batch(), true).unwrap();
    assert!(stats::rebuild_if_missing(&county.db, "530602").unwrap());
    assert_eq!(stat_rows(&county), rows);
}

/// A reader of an office's state that counts the keys it reads (scanned or got).
struct Counting<'a> {
    inner: Txn<'a>,
    read: std::cell::Cell<usize>,
}

impl Read for Counting<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, rocksdb::Error> {
        self.read.set(self.read.get() + 1);
        self.inner.get(key)
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<crate::store::keys::KeyValues, rocksdb::Error> {
        let found = self.inner.scan(start, end, limit)?;
        self.read.set(self.read.get() + found.len());
        Ok(found)
    }
}

/// Without the secondary keys a page of the index answer would read the whole index (3,000
/// summaries here) for every filter; with keys out of step with the summaries (a change that
/// left its old keys, a rebuild that missed some) its pages would differ from a full scan's.
/// Every page of every filter and order, followed by its cursor to the end, equals the full
/// scan's page (cases, cursor, repeats), and a first page reads a few hundred keys.
#[test]
fn a_query_page_reads_about_a_page_and_answers_as_a_full_scan_does() {
    use crate::federation::query::{self, Filter, Sort};
    const CASES: u32 = 3_000;
    let mut township = Office::new("530602001", Some("530602"));
    let base = SummaryV2::of(&township.file());
    let mut county = Office::new("530602", None);
    let statuses = ["registered", "accepted", "replied", "final"];
    let summary_of = |seq: u32, version: u32| {
        let mut s = base.clone();
        s.summary.case_id = CaseId::new(code("530602001"), 2026, seq);
        s.summary.status = statuses[seq as usize % 4].into();
        s.summary.overdue = seq.is_multiple_of(7);
        s.summary.registered_at = START_MS - i64::from(seq % 97) * 3_600_000;
        s.summary.changed_at = START_MS + i64::from(seq % 13) * 1_000;
        s.summary.version = version;
        // Every third petitioner petitions again: repeat groups.
        s.summary.petitioner_key = format!("{:064x}", seq / 3);
        s.facts.due_at =
            (!seq.is_multiple_of(3)).then_some(START_MS + i64::from(seq % 89) * 86_400_000);
        s
    };
    for seq in 1..=CASES {
        let summary = summary_of(seq, base.version);
        assert!(county
            .deliver("530602001", Body::IndexUpdateV2 { summary })
            .is_none());
    }
    // Changes: their old keys must go.
    for seq in (1..=CASES).step_by(50) {
        let mut summary = summary_of(seq, base.version + 1);
        summary.summary.status = "evaluated".into();
        summary.summary.overdue = true;
        summary.summary.changed_at += 86_400_000;
        summary.facts.due_at = None;
        assert!(county
            .deliver("530602001", Body::IndexUpdateV2 { summary })
            .is_none());
    }
    let township_code = code("530602001");
    let filters: Vec<(Filter, Sort)> = vec![
        (Filter::default(), Sort::CaseId),
        (
            Filter {
                status: Some("open".into()),
                ..Filter::default()
            },
            Sort::Registered,
        ),
        (
            Filter {
                overdue_only: true,
                ..Filter::default()
            },
            Sort::Due,
        ),
        (
            Filter {
                status: Some("evaluated".into()),
                ..Filter::default()
            },
            Sort::Changed,
        ),
        (
            Filter {
                office: Some(township_code.clone()),
                status: Some("closed".into()),
                ..Filter::default()
            },
            Sort::CaseId,
        ),
        (
            Filter {
                registered_from_ms: Some(START_MS - 40 * 3_600_000),
                registered_to_ms: Some(START_MS - 20 * 3_600_000),
                ..Filter::default()
            },
            Sort::Registered,
        ),
        (
            Filter {
                due_from_ms: Some(START_MS + 10 * 86_400_000),
                due_to_ms: Some(START_MS + 30 * 86_400_000),
                ..Filter::default()
            },
            Sort::Due,
        ),
        (
            Filter {
                category: Some(base.category.clone()),
                warned_only: false,
                ..Filter::default()
            },
            Sort::Changed,
        ),
    ];
    let check_all = |county: &Office| {
        let all: Vec<SummaryV2> = county
            .reader()
            .scan(
                keys::INDEX,
                &crate::store::keys::prefix_end(keys::INDEX),
                usize::MAX,
            )
            .unwrap()
            .into_iter()
            .map(|(_, value)| SummaryV2::decode_stored(&value).unwrap())
            .collect();
        let primaries = crate::federation::service::repeat_primaries(
            &all.iter().map(|s| s.summary.clone()).collect::<Vec<_>>(),
        );
        for (filter, sort) in &filters {
            let wanted: Vec<&SummaryV2> = all.iter().filter(|s| filter.wants(s)).collect();
            assert!(!wanted.is_empty(), "{filter:?}");
            let mut cursor = None;
            let mut pages = 0;
            loop {
                let expected =
                    query::page(wanted.iter().copied(), cursor.as_ref(), 50, false, *sort);
                let reader = Counting {
                    inner: county.reader(),
                    read: std::cell::Cell::new(0),
                };
                let (got, repeats) =
                    query::index_page_in(&reader, filter, cursor.as_ref(), 50, *sort).unwrap();
                assert_eq!(got, expected, "{filter:?} {sort:?} page {pages}");
                for case in &got.cases {
                    let id: CaseId = case.case_id.parse().unwrap();
                    assert_eq!(
                        repeats.get(&case.case_id),
                        primaries.get(&id).map(ToString::to_string).as_ref(),
                        "{}",
                        case.case_id
                    );
                }
                if pages == 0 && filter.category.is_none() {
                    assert!(
                        reader.read.get() < 600,
                        "{filter:?} {sort:?}: a page read {} keys",
                        reader.read.get()
                    );
                }
                pages += 1;
                match &got.next_cursor {
                    Some(next) => cursor = Some(sort.parse_cursor(next).unwrap()),
                    None => break,
                }
            }
            assert_eq!(pages, wanted.len().div_ceil(50).max(1), "{filter:?}");
        }
    };
    check_all(&county);

    // A state without the keys (an earlier build's) gets them when it opens, the same.
    let mut txn = county.reader();
    let end = crate::store::keys::prefix_end(keys::QUERY_KEY);
    for (key, _) in txn.scan(keys::QUERY_KEY, &end, usize::MAX).unwrap() {
        txn.delete(key);
    }
    txn.delete(keys::QUERY_KEYS_FORMAT.to_vec());
    county.db.write(txn.into_batch(), true).unwrap();
    assert!(stats::rebuild_if_missing(&county.db, "530602").unwrap());
    check_all(&county);
    assert!(!stats::rebuild_if_missing(&county.db, "530602").unwrap());
}

/// Without skipping the per-day counters `stats` would read three keys per office and day; with
/// a skip that missed a figure its rows would differ from the full read's.
#[test]
fn rows_without_days_are_the_rows_less_the_day_counters() {
    let mut township = Office::new("530602001", Some("530602"));
    let base = SummaryV2::of(&township.file());
    let mut county = Office::new("530602", None);
    for seq in 1..=200u32 {
        let mut summary = base.clone();
        summary.summary.case_id = CaseId::new(code("530602001"), 2026, seq);
        summary.summary.registered_at = START_MS - i64::from(seq) * 86_400_000;
        summary.summary.overdue = seq.is_multiple_of(4);
        assert!(county
            .deliver("530602001", Body::IndexUpdateV2 { summary })
            .is_none());
    }
    county.file();
    let mut full = stats::rows(&county.reader()).unwrap();
    let days: usize = full
        .values()
        .map(|row| row.keys().filter(|f| stats::is_day_figure(f)).count())
        .sum();
    assert!(days >= 200, "{days} day counters");
    for row in full.values_mut() {
        row.retain(|figure, _| !stats::is_day_figure(figure));
    }
    assert_eq!(stats::rows_without_days(&county.reader()).unwrap(), full);
}

/// The county's figures after three townships' summaries (with trend days, overdue ones) and a
/// breach on its own record: rows of every kind a state holds.
fn county_with_figures() -> Office {
    let mut county = Office::new("530602", Some("5306"));
    for township in ["530602001", "530602002", "530602003"] {
        let mut below = Office::new(township, Some("530602"));
        let base = SummaryV2::of(&below.file());
        for seq in 1..=40u32 {
            let mut summary = base.clone();
            summary.summary.case_id = CaseId::new(code(township), 2026, seq);
            summary.summary.registered_at = START_MS - i64::from(seq) * 86_400_000;
            summary.summary.overdue = seq.is_multiple_of(4);
            summary.facts.overdue_at = summary
                .summary
                .overdue
                .then_some(summary.summary.registered_at + 15 * 86_400_000);
            assert!(county
                .deliver(township, Body::IndexUpdateV2 { summary })
                .is_none());
        }
    }
    let case = county.file();
    county.act(
        &case.id,
        CaseCommand::Accept {
            officer: "li".into(),
        },
    );
    // The county lets a case pass its acceptance limit: a breach on its record.
    county.file();
    county.at += 16 * liandong_domain::DAY_MS;
    county.apply(Operation::Tick);
    county
}

/// Without the packed rows `stats` would read one key per office and figure (dozens per office:
/// 112 ms at p99 over a province's 1,607 offices); with them it reads one value per office, and
/// the rows are the same as the full read's less the trend's days.
#[test]
fn stats_read_one_value_per_office() {
    let county = county_with_figures();
    let reader = Counting {
        inner: county.reader(),
        read: std::cell::Cell::new(0),
    };
    let rows = stats::rows_without_days(&reader).unwrap();
    assert_eq!(rows.len(), 4, "three townships and the county: {rows:?}");
    assert!(
        rows.values().all(|row| row.len() >= 5),
        "each row holds many figures: {rows:?}"
    );
    assert_eq!(reader.read.get(), rows.len(), "one value read per office");
    assert_eq!(rows["530602"][stats::BREACHED], 1);
}

/// A state whose counters are format 2's, one key per figure (`stat/<office>/<figure>` holding
/// a count, `stats-format` 2), made from a real county's state exactly as that build wrote it:
/// the replica's open packs them into one row per office, keeps the record of breaches and the
/// trend's per-day counters, and the counters then move with the cases as a recount agrees
/// (fails without the migration: the packed rows would be missing and `stats` empty).
#[test]
fn a_state_of_stats_format_2_is_packed_when_it_opens() {
    let mut county = county_with_figures();
    let rows = stat_rows(&county);
    assert_eq!(rows["530602"][stats::BREACHED], 1);
    let days: usize = rows
        .values()
        .map(|row| row.keys().filter(|f| stats::is_day_figure(f)).count())
        .sum();
    assert!(days > 40, "{days} day counters");

    // Format 2: every figure its own counter, no packed rows.
    let mut txn = county.reader();
    let end = crate::store::keys::prefix_end(keys::STAT_ROW);
    for (key, _) in txn.scan(keys::STAT_ROW, &end, usize::MAX).unwrap() {
        txn.delete(key);
    }
    for (office, row) in &rows {
        for (figure, count) in row {
            txn.put(keys::stat(office, figure), encode(count));
        }
    }
    txn.put(keys::STATS_FORMAT.to_vec(), vec![2]);
    county.db.write(txn.into_batch(), true).unwrap();
    assert!(
        stats::rows_without_days(&county.reader())
            .unwrap()
            .is_empty(),
        "format 2 has no packed rows"
    );

    assert!(stats::rebuild_if_missing(&county.db, "530602").unwrap());
    assert_eq!(
        stat_rows(&county),
        rows,
        "the same figures, breaches included"
    );
    assert_eq!(
        county.reader().get(keys::STATS_FORMAT).unwrap(),
        Some(vec![stats::STATS_FORMAT])
    );
    let end = crate::store::keys::prefix_end(keys::STAT);
    let counters = county.reader().scan(keys::STAT, &end, usize::MAX).unwrap();
    assert_eq!(
        counters.len(),
        days,
        "only the per-day counters stay one key each"
    );
    assert!(!stats::rebuild_if_missing(&county.db, "530602").unwrap());

    // The packed counters move with the next changes as a recount of the cases agrees.
    let case = county.file();
    county.act(
        &case.id,
        CaseCommand::Accept {
            officer: "li".into(),
        },
    );
    let moved = stat_rows(&county);
    assert_eq!(moved["530602"]["total"], rows["530602"]["total"] + 1);
    let mut txn = county.reader();
    txn.delete(keys::STATS_FORMAT.to_vec());
    county.db.write(txn.into_batch(), true).unwrap();
    assert!(stats::rebuild_if_missing(&county.db, "530602").unwrap());
    assert_eq!(stat_rows(&county), moved);
}
