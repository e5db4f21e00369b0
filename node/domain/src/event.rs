//! Events (what happened, stamped with time and office) and the hash-chained history they leave.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::calendar::Millis;
use crate::clock::ClockKind;
use crate::error::DomainError;
use crate::ids::{CaseId, OfficeCode};
use crate::model::{
    CaseKind, Channel, DeclineRoute, Grade, HandoffKind, Opinion, ReviewLevel, Satisfaction,
};

/// The stored form's version of an [`Event`] (see [`Event::to_bytes`]).
pub const EVENT_VERSION: u16 = 1;

/// A fact about a case. `decide`, `tick`, `register` and `receive` make them; `Case::apply` folds
/// them. Each carries the stamped instant (`at`) and the office that produced it (`office`), and
/// every computed deadline, so folding needs no calendar and is deterministic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// Registered on a channel; names the first-contact officer. The summary is chained by its
    /// hash and the petitioner only by key: the history carries no personal data.
    Registered {
        at: Millis,
        office: OfficeCode,
        channel: Channel,
        category: String,
        officer: String,
        petitioner_key: String,
        case_kind: CaseKind,
        location: Option<OfficeCode>,
        summary_sha256: String,
        accept_by: Millis,
        /// Review and re-review cases: the decision limit runs from registration.
        reply_by: Option<Millis>,
    },
    Accepted {
        at: Millis,
        office: OfficeCode,
        officer: String,
        reply_by: Millis,
    },
    Declined {
        at: Millis,
        office: OfficeCode,
        route: DeclineRoute,
        officer: String,
    },
    /// Transfer or assignment started: the case is in transit, read-only here.
    HandoffStarted {
        at: Millis,
        office: OfficeCode,
        to: OfficeCode,
        handoff: HandoffKind,
        officer: String,
    },
    /// The receiver returned the case (退回): in transit back to the office it came from.
    Returned {
        at: Millis,
        office: OfficeCode,
        to: OfficeCode,
        reason: String,
        officer: String,
    },
    /// The receiver committed the handoff: this copy becomes a stub.
    HandoffCompleted {
        at: Millis,
        office: OfficeCode,
        to: OfficeCode,
    },
    /// The receiver refused the handoff: this office owns the case again.
    HandoffReverted {
        at: Millis,
        office: OfficeCode,
        to: OfficeCode,
        reason: String,
    },
    /// This office received the case in a handoff; its own clocks start.
    Received {
        at: Millis,
        office: OfficeCode,
        from: OfficeCode,
        handoff: HandoffKind,
        accept_by: Millis,
        return_by: Option<Millis>,
        report_by: Option<Millis>,
    },
    Extended {
        at: Millis,
        office: OfficeCode,
        days: u32,
        reason: String,
        officer: String,
        reply_by: Millis,
    },
    Replied {
        at: Millis,
        office: OfficeCode,
        opinion: Opinion,
        text: String,
        officer: String,
        /// None after a re-review: nothing is left to ask for.
        review_by: Option<Millis>,
        evaluate_by: Millis,
    },
    Evaluated {
        at: Millis,
        office: OfficeCode,
        satisfaction: Satisfaction,
    },
    /// The petitioner asked for review (or re-review), to be decided by `to`.
    ReviewRequested {
        at: Millis,
        office: OfficeCode,
        level: ReviewLevel,
        to: OfficeCode,
    },
    Graded {
        at: Millis,
        office: OfficeCode,
        grade: Grade,
        leader: String,
        department: String,
        plan: String,
        deadline: Millis,
    },
    SupervisionOrdered {
        at: Millis,
        office: OfficeCode,
        from: OfficeCode,
        text: String,
        due_by: Millis,
    },
    SupervisionAnswered {
        at: Millis,
        office: OfficeCode,
        text: String,
        officer: String,
    },
    /// A clock passed 50 % or 75 % of its limit (at `threshold_at`; noticed at `at`).
    Warned {
        at: Millis,
        office: OfficeCode,
        clock: ClockKind,
        percent: u8,
        threshold_at: Millis,
    },
    /// A clock reached its limit.
    Overdue {
        at: Millis,
        office: OfficeCode,
        clock: ClockKind,
        due_at: Millis,
    },
    /// The 5 working days to return passed: the receiver keeps the case.
    ReturnWindowLapsed {
        at: Millis,
        office: OfficeCode,
        due_at: Millis,
    },
    /// The evaluation window closed unevaluated: "not evaluated".
    EvaluationLapsed { at: Millis, office: OfficeCode },
    /// The matter is final.
    Finalised { at: Millis, office: OfficeCode },
    /// The level above registered the review (or re-review) of this case as `review`.
    ReviewOpened {
        at: Millis,
        office: OfficeCode,
        review: CaseId,
        level: ReviewLevel,
    },
    /// The review (or re-review) case `review` decided, at `decided_at`; `is_final`: the
    /// matter is closed with it.
    ReviewDecided {
        at: Millis,
        office: OfficeCode,
        review: CaseId,
        level: ReviewLevel,
        opinion: Opinion,
        text: String,
        decided_at: Millis,
        is_final: bool,
    },
    /// A supervision order followed the case here from the office that handed it on: the
    /// order of `from`, given at `ordered_at`, still due by `due_by`.
    SupervisionFollowed {
        at: Millis,
        office: OfficeCode,
        from: OfficeCode,
        text: String,
        ordered_at: Millis,
        due_by: Millis,
    },
}

impl Event {
    /// The stamped instant.
    pub fn at(&self) -> Millis {
        *self.stamp().0
    }

    /// The office that produced the event.
    pub fn office(&self) -> &OfficeCode {
        self.stamp().1
    }

    fn stamp(&self) -> (&Millis, &OfficeCode) {
        use Event::*;
        match self {
            Registered { at, office, .. }
            | Accepted { at, office, .. }
            | Declined { at, office, .. }
            | HandoffStarted { at, office, .. }
            | Returned { at, office, .. }
            | HandoffCompleted { at, office, .. }
            | HandoffReverted { at, office, .. }
            | Received { at, office, .. }
            | Extended { at, office, .. }
            | Replied { at, office, .. }
            | Evaluated { at, office, .. }
            | ReviewRequested { at, office, .. }
            | Graded { at, office, .. }
            | SupervisionOrdered { at, office, .. }
            | SupervisionAnswered { at, office, .. }
            | Warned { at, office, .. }
            | Overdue { at, office, .. }
            | ReturnWindowLapsed { at, office, .. }
            | EvaluationLapsed { at, office }
            | Finalised { at, office }
            | ReviewOpened { at, office, .. }
            | ReviewDecided { at, office, .. }
            | SupervisionFollowed { at, office, .. } => (at, office),
        }
    }

    /// The snake_case event name (the serde tag and a history entry's `kind`).
    pub fn name(&self) -> &'static str {
        use Event::*;
        match self {
            Registered { .. } => "registered",
            Accepted { .. } => "accepted",
            Declined { .. } => "declined",
            HandoffStarted { .. } => "handoff_started",
            Returned { .. } => "returned",
            HandoffCompleted { .. } => "handoff_completed",
            HandoffReverted { .. } => "handoff_reverted",
            Received { .. } => "received",
            Extended { .. } => "extended",
            Replied { .. } => "replied",
            Evaluated { .. } => "evaluated",
            ReviewRequested { .. } => "review_requested",
            Graded { .. } => "graded",
            SupervisionOrdered { .. } => "supervision_ordered",
            SupervisionAnswered { .. } => "supervision_answered",
            Warned { .. } => "warned",
            Overdue { .. } => "overdue",
            ReturnWindowLapsed { .. } => "return_window_lapsed",
            EvaluationLapsed { .. } => "evaluation_lapsed",
            Finalised { .. } => "finalised",
            ReviewOpened { .. } => "review_opened",
            ReviewDecided { .. } => "review_decided",
            SupervisionFollowed { .. } => "supervision_followed",
        }
    }

    /// The event's own fields (everything but kind, time and office), as a history entry keeps them.
    pub fn detail(&self) -> Value {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut fields)) => {
                for stamp in ["kind", "at", "office"] {
                    fields.remove(stamp);
                }
                Value::Object(fields)
            }
            // Unreachable: every field serialises, and an internally tagged enum is an object.
            _ => Value::Null,
        }
    }

    /// Versioned JSON: `{"v":1,"kind":...,...}`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(fields) = &mut value {
            fields.insert("v".to_string(), Value::from(EVENT_VERSION));
        }
        value.to_string().into_bytes()
    }

    /// Reads [`Event::to_bytes`]' form, refusing any other version.
    pub fn from_bytes(bytes: &[u8]) -> Result<Event, DomainError> {
        let mut value = crate::case::versioned_json(bytes, EVENT_VERSION..=EVENT_VERSION)?;
        if let Value::Object(fields) = &mut value {
            fields.remove("v");
        }
        serde_json::from_value(value).map_err(|error| DomainError::Corrupt {
            reason: error.to_string(),
        })
    }
}

/// The `prev_hash` of the first history entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The end of a hash chain: how many entries it has, and the last one's hash and time. A copy of a
/// case that carries only part of its history names the chain before the first entry it carries
/// ([`crate::Case::history_start`]); the empty chain starts a whole history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// Entries in the chain (the last one's `seq`).
    pub entries: u32,
    /// The last entry's hash ([`GENESIS_HASH`] for the empty chain).
    pub hash: String,
    /// The last entry's time (0 for the empty chain).
    pub at: Millis,
}

impl Default for ChainHead {
    fn default() -> ChainHead {
        ChainHead {
            entries: 0,
            hash: GENESIS_HASH.to_string(),
            at: 0,
        }
    }
}

impl ChainHead {
    /// The chain ending with `entry`.
    pub fn after(entry: &HistoryEntry) -> ChainHead {
        ChainHead {
            entries: entry.seq,
            hash: entry.hash.clone(),
            at: entry.at,
        }
    }
}

/// One applied event in a case's tamper-evident history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// 1 for the first entry, then consecutive.
    pub seq: u32,
    pub at: Millis,
    pub office: OfficeCode,
    /// The event's snake_case name.
    pub kind: String,
    /// In the binary format: the canonical JSON text this hash covers.
    #[serde(with = "crate::codec::json_value")]
    pub detail: Value,
    /// The previous entry's hash ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// hex SHA-256 of `prev_hash` followed by the canonical JSON of `[seq, at, office, kind, detail]`.
    pub hash: String,
}

impl HistoryEntry {
    /// The entry that follows the chain `previous` for `event`.
    pub(crate) fn next(previous: &ChainHead, event: &Event) -> HistoryEntry {
        let mut entry = HistoryEntry {
            seq: previous.entries.saturating_add(1),
            at: event.at(),
            office: event.office().clone(),
            kind: event.name().to_string(),
            detail: event.detail(),
            prev_hash: previous.hash.clone(),
            hash: String::new(),
        };
        entry.hash = entry.compute_hash();
        entry
    }

    /// The hash this entry's content and `prev_hash` call for.
    pub fn compute_hash(&self) -> String {
        let content = Value::Array(vec![
            Value::from(self.seq),
            Value::from(self.at),
            Value::from(self.office.as_str()),
            Value::from(self.kind.as_str()),
            self.detail.clone(),
        ]);
        let mut hasher = Sha256::new();
        hasher.update(self.prev_hash.as_bytes());
        hasher.update(canonical_json(&content).as_bytes());
        hex::encode(hasher.finalize())
    }
}

/// Checks every link of `history`, which follows the chain `start`: consecutive `seq`, each
/// `prev_hash` the previous `hash`, each `hash` recomputed.
pub(crate) fn verify(start: &ChainHead, history: &[HistoryEntry]) -> Result<(), DomainError> {
    let mut prev_hash = start.hash.as_str();
    for (expected_seq, entry) in (start.entries.saturating_add(1)..).zip(history) {
        let broken = |reason| DomainError::ChainBroken {
            seq: entry.seq,
            reason,
        };
        if entry.seq != expected_seq {
            return Err(broken("sequence numbers are not consecutive"));
        }
        if entry.prev_hash != prev_hash {
            return Err(broken("prev_hash is not the previous entry's hash"));
        }
        if entry.hash != entry.compute_hash() {
            return Err(broken("the entry's content does not match its hash"));
        }
        prev_hash = &entry.hash;
    }
    Ok(())
}

/// JSON with object keys sorted and no whitespace, whatever serde_json's map ordering feature is:
/// the same value always hashes the same on every build.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(fields) => {
            let mut keys: Vec<&String> = fields.keys().collect();
            keys.sort();
            out.push('{');
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(key.as_str()).to_string());
                out.push(':');
                if let Some(item) = fields.get(key) {
                    write_canonical(item, out);
                }
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let value: Value = serde_json::from_str(r#"{"b":1,"a":{"z":[{"y":2,"x":"é"}],"c":null}}"#)
            .unwrap_or(Value::Null);
        assert_eq!(
            canonical_json(&value),
            r#"{"a":{"c":null,"z":[{"x":"é","y":2}]},"b":1}"#
        );
    }

    #[test]
    fn event_names_are_the_serde_tags() {
        let office: OfficeCode = "530602".parse().unwrap_or_else(|_| unreachable!());
        let events = [
            Event::EvaluationLapsed {
                at: 1,
                office: office.clone(),
            },
            Event::Warned {
                at: 1,
                office: office.clone(),
                clock: ClockKind::Return,
                percent: 50,
                threshold_at: 0,
            },
            Event::HandoffStarted {
                at: 1,
                office: office.clone(),
                to: office.clone(),
                handoff: HandoffKind::Assign { due_by: 9 },
                officer: "w".into(),
            },
        ];
        for event in events {
            let value = serde_json::to_value(&event).unwrap_or(Value::Null);
            assert_eq!(value["kind"], event.name());
            assert_eq!(Event::from_bytes(&event.to_bytes()), Ok(event.clone()));
        }
        let future = br#"{"v":2,"kind":"finalised","at":1,"office":"530602"}"#;
        assert_eq!(
            Event::from_bytes(future).map_err(|e| e.code()),
            Err("unsupported_version")
        );
    }
}
