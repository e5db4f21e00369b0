//! The state machine's refusals, one table row each: what an office is asked, and the code it
//! answers with. Every refused operation or message changes nothing but the record of its
//! refusal (a refused message still moves the inbox watermark: it was delivered, once).

use std::sync::Arc;

use liandong_domain::message::{Body, Envelope, Summary};
use liandong_domain::{
    Calendar, Case, CaseCommand, CaseId, Channel, HandoffKind, Millis, OfficeCode, Opinion,
    Registration, ReviewLevel, Status,
};

use super::*;
use crate::raft::types::{Operation, Request, Response};
use crate::store::HostDb;

/// 2026-01-05 (a Monday), 09:00 Beijing time.
const START_MS: Millis = 1_767_574_800_000;

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
    }
}

/// One office's state machine over a real RocksDB, applying operations one log entry each.
pub(crate) struct Office {
    _dir: tempfile::TempDir,
    pub(crate) db: HostDb,
    pub(crate) context: ApplyContext,
    state: AppliedState,
    at: Millis,
}

impl Office {
    pub(crate) fn new(office: &str, parent: Option<&str>) -> Office {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let db = HostDb::open(dir.path()).expect("RocksDB opens");
        Office {
            _dir: dir,
            db,
            context: ApplyContext {
                office: code(office),
                parent: parent.map(code),
                secret: vec![7; 32],
                calendar: Arc::new(Calendar::china()),
            },
            state: AppliedState::default(),
            at: START_MS,
        }
    }

    pub(crate) fn apply(&mut self, op: Operation) -> Response {
        self.at += 60_000;
        let mut txn = Txn::new(&self.db, self.context.office.as_str());
        let request = Request { at: self.at, op };
        let response = apply_request(&mut txn, &self.context, &mut self.state, &request)
            .expect("storage works");
        self.db
            .write(txn.into_batch(), false)
            .expect("the batch is written");
        response
    }

    fn file(&mut self) -> Case {
        let op = Operation::File {
            registration: registration(),
            request_id: None,
        };
        case_of(self.apply(op))
    }

    fn act(&mut self, case_id: &CaseId, command: CaseCommand) -> Response {
        self.apply(Operation::Act {
            case_id: case_id.clone(),
            command,
            request_id: None,
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

    fn case(&self, case_id: &CaseId) -> Option<Case> {
        cases::load_case(&self.reader(), case_id).unwrap()
    }

    /// Everything but the inbox and refusal records, to see that a refusal changed nothing.
    fn footprint(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let all = self.reader().scan(b"", b"\xff", usize::MAX).unwrap();
        all.into_iter()
            .filter(|(key, _)| !key.starts_with(keys::INBOX) && !key.starts_with(keys::REFUSED))
            .collect()
    }
}

fn case_of(response: Response) -> Case {
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
    let mut sent = case_of(sibling.act(&case.id, command));
    sent.status = Status::InTransit {
        to: code("530602"),
        kind,
    };
    sent
}

fn handoff(case: Case) -> Body {
    Body::Handoff {
        case: Box::new(case),
    }
}

/// Each rule on receipt refuses its message with its code, changing nothing at the receiver
/// but the record of the refusal (fails if a rule is dropped or its code renamed).
#[test]
fn every_rule_on_receipt_refuses_with_its_code() {
    type Row = (&'static str, &'static str, fn(&mut Office) -> Body);
    let rows: [Row; 12] = [
        ("escalation_not_upward", "5306", |county| Body::Escalation {
            level: ReviewLevel::Review,
            case: Box::new(county.file()),
        }),
        ("supervision_not_downward", "530621", |county| {
            Body::SupervisionOrder {
                case_id: county.file().id,
                order_id: "530621-1".into(),
                text: "Report.".into(),
                due_days: 5,
            }
        }),
        ("answer_not_upward", "5306", |county| {
            Body::SupervisionAnswer {
                case_id: county.file().id,
                order_id: String::new(),
                text: "Done.".into(),
                officer: "li".into(),
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
                case: Box::new(case),
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
        }),
        ("case_not_found", |_| Operation::Act {
            case_id: "530602-2026-000099".parse().unwrap(),
            command: CaseCommand::Accept {
                officer: "li".into(),
            },
            request_id: None,
        }),
        ("outbox_full", |county| {
            county.state.outbox_pending = OUTBOX_LEN_MAX;
            Operation::File {
                registration: registration(),
                request_id: None,
            }
        }),
        ("message_too_large", |county| {
            // A case whose history no message could carry (here: a summary stretched past
            // every limit behind the engine's back), transferred.
            let mut case = county.file();
            case.summary = "x".repeat(ENVELOPE_BYTES_MAX);
            let mut txn = county.reader();
            txn.put(keys::case(&case.id.to_string()), case.to_bytes());
            county.db.write(txn.into_batch(), false).unwrap();
            Operation::Act {
                case_id: case.id,
                command: CaseCommand::Transfer {
                    to: code("530621"),
                    officer: "li".into(),
                },
                request_id: None,
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
        matches!(handoff.body, Body::Handoff { ref case } if matches!(case.status, Status::InTransit { .. }))
    );
}
