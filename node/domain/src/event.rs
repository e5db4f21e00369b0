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
    /// A dissatisfied evaluation opened a follow-up (回访), due by `due_by`.
    FollowUpOpened {
        at: Millis,
        office: OfficeCode,
        due_by: Millis,
    },
    /// The office followed up with the petitioner: who did, what was found.
    FollowedUp {
        at: Millis,
        office: OfficeCode,
        officer: String,
        note: String,
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
            | SupervisionFollowed { at, office, .. }
            | FollowUpOpened { at, office, .. }
            | FollowedUp { at, office, .. } => (at, office),
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
            FollowUpOpened { .. } => "follow_up_opened",
            FollowedUp { .. } => "followed_up",
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

/// The version of history entries that carry a seal: the hash of the whole case state after the
/// event (covered by the entry's hash) and the applying office's Ed25519 signature over the
/// entry's hash. Entries written before it carry neither ("unsigned, before version 2").
pub const SEALED_ENTRY_VERSION: u32 = 2;

/// One applied event in a case's tamper-evident history.
///
/// Stored forms: in JSON, the seal's fields are absent on an entry written before
/// [`SEALED_ENTRY_VERSION`]. In the binary format an unsealed entry keeps the layout of the
/// builds before it (so they still read it); a sealed one starts with a `seq` of 0, which no
/// entry has (sequence numbers start at 1), followed by its fields and the seal's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// 1 for the first entry, then consecutive.
    pub seq: u32,
    pub at: Millis,
    pub office: OfficeCode,
    /// The event's snake_case name.
    pub kind: String,
    /// In the binary format: the canonical JSON text this hash covers.
    pub detail: Value,
    /// The previous entry's hash ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// hex SHA-256 of `prev_hash` followed by the canonical JSON of `[seq, at, office, kind,
    /// detail]`, with `state_sha256` appended to that array on a sealed entry.
    pub hash: String,
    /// hex SHA-256 of the whole case state after the event ([`crate::Case::state_sha256`]);
    /// None on entries written before [`SEALED_ENTRY_VERSION`].
    pub state_sha256: Option<String>,
    /// The office whose replicas applied the event and signed the entry.
    pub signer: Option<OfficeCode>,
    /// hex Ed25519 signature of `signer`'s key over the bytes of `hash` (its hex text).
    pub signature: Option<String>,
}

/// An entry's JSON form (and format 1's).
#[derive(Serialize, Deserialize)]
struct EntryJson {
    seq: u32,
    at: Millis,
    office: OfficeCode,
    kind: String,
    detail: Value,
    prev_hash: String,
    hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signer: Option<OfficeCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
}

/// The binary form's leading `seq` of a sealed entry.
const SEALED_MARK: u32 = 0;
/// Fields of an unsealed entry in the binary form.
const UNSEALED_FIELDS: usize = 7;
/// Fields of a sealed entry in the binary form (the mark included).
const SEALED_FIELDS: usize = 11;

impl Serialize for HistoryEntry {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        if serializer.is_human_readable() {
            return EntryJson {
                seq: self.seq,
                at: self.at,
                office: self.office.clone(),
                kind: self.kind.clone(),
                detail: self.detail.clone(),
                prev_hash: self.prev_hash.clone(),
                hash: self.hash.clone(),
                state_sha256: self.state_sha256.clone(),
                signer: self.signer.clone(),
                signature: self.signature.clone(),
            }
            .serialize(serializer);
        }
        let detail = canonical_json(&self.detail);
        let sealed = self.is_sealed();
        let mut out = serializer.serialize_tuple(if sealed {
            SEALED_FIELDS
        } else {
            UNSEALED_FIELDS
        })?;
        if sealed {
            out.serialize_element(&SEALED_MARK)?;
        }
        out.serialize_element(&self.seq)?;
        out.serialize_element(&self.at)?;
        out.serialize_element(&self.office)?;
        out.serialize_element(&self.kind)?;
        out.serialize_element(&detail)?;
        out.serialize_element(&self.prev_hash)?;
        out.serialize_element(&self.hash)?;
        if sealed {
            out.serialize_element(&self.state_sha256)?;
            out.serialize_element(&self.signer)?;
            out.serialize_element(&self.signature)?;
        }
        out.end()
    }
}

impl<'de> Deserialize<'de> for HistoryEntry {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let json = EntryJson::deserialize(deserializer)?;
            return Ok(HistoryEntry {
                seq: json.seq,
                at: json.at,
                office: json.office,
                kind: json.kind,
                detail: json.detail,
                prev_hash: json.prev_hash,
                hash: json.hash,
                state_sha256: json.state_sha256,
                signer: json.signer,
                signature: json.signature,
            });
        }
        deserializer.deserialize_tuple(SEALED_FIELDS, BinaryEntry)
    }
}

struct BinaryEntry;

impl<'de> serde::de::Visitor<'de> for BinaryEntry {
    type Value = HistoryEntry;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a history entry")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<HistoryEntry, A::Error> {
        fn next<'de, T: Deserialize<'de>, A: serde::de::SeqAccess<'de>>(
            seq: &mut A,
            index: usize,
        ) -> Result<T, A::Error> {
            seq.next_element()?
                .ok_or_else(|| serde::de::Error::invalid_length(index, &"a history entry"))
        }
        let first: u32 = next(&mut seq, 0)?;
        let sealed = first == SEALED_MARK;
        // A sealed entry's fields follow its mark: their indexes are one further on.
        let shift = usize::from(sealed);
        let seq_number = if sealed { next(&mut seq, 1)? } else { first };
        let at = next(&mut seq, 1 + shift)?;
        let office = next(&mut seq, 2 + shift)?;
        let kind = next(&mut seq, 3 + shift)?;
        let detail_text: String = next(&mut seq, 4 + shift)?;
        let prev_hash = next(&mut seq, 5 + shift)?;
        let hash = next(&mut seq, 6 + shift)?;
        let detail = serde_json::from_str(&detail_text).map_err(serde::de::Error::custom)?;
        let mut entry = HistoryEntry {
            seq: seq_number,
            at,
            office,
            kind,
            detail,
            prev_hash,
            hash,
            state_sha256: None,
            signer: None,
            signature: None,
        };
        if sealed {
            entry.state_sha256 = next(&mut seq, 8)?;
            entry.signer = next(&mut seq, 9)?;
            entry.signature = next(&mut seq, 10)?;
        }
        Ok(entry)
    }
}

/// Signs entries' hashes as one office: the node's office key (the engine never holds a key).
pub trait EntrySigner {
    /// The office whose key this is.
    fn office(&self) -> &OfficeCode;
    /// The Ed25519 signature of `message`.
    fn sign(&self, message: &[u8]) -> Vec<u8>;
}

/// Why an entry's seal does not verify (see [`HistoryEntry::check_seal`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("entry {seq} carries a state hash but no signature")]
    Unsigned { seq: u32 },
    #[error("entry {seq} is unsigned (written before version {SEALED_ENTRY_VERSION}) but follows a signed entry")]
    UnsignedAfterSigned { seq: u32 },
    #[error("entry {seq} names signer {signer}, whose public key is not known")]
    UnknownSigner { seq: u32, signer: String },
    #[error("entry {seq}: the signature of {signer} does not verify over the entry's hash")]
    BadSignature { seq: u32, signer: String },
    #[error("entry {seq}: the state hash does not match the case state re-folded from the events ({reason})")]
    StateMismatch { seq: u32, reason: String },
    #[error("entry {seq}: its event does not decode ({reason})")]
    EventUnreadable { seq: u32, reason: String },
}

impl HistoryEntry {
    /// The entry that follows the chain `previous` for `event`, sealed with `state_sha256` (the
    /// case state after the event) but not yet signed.
    pub(crate) fn next(
        previous: &ChainHead,
        event: &Event,
        state_sha256: Option<String>,
    ) -> HistoryEntry {
        let mut entry = HistoryEntry {
            seq: previous.entries.saturating_add(1),
            at: event.at(),
            office: event.office().clone(),
            kind: event.name().to_string(),
            detail: event.detail(),
            prev_hash: previous.hash.clone(),
            hash: String::new(),
            state_sha256,
            signer: None,
            signature: None,
        };
        entry.hash = entry.compute_hash();
        entry
    }

    /// Whether the entry carries a state hash (written from [`SEALED_ENTRY_VERSION`] on).
    pub fn is_sealed(&self) -> bool {
        self.state_sha256.is_some() || self.signer.is_some() || self.signature.is_some()
    }

    /// The hash this entry's content and `prev_hash` call for.
    pub fn compute_hash(&self) -> String {
        let mut content = vec![
            Value::from(self.seq),
            Value::from(self.at),
            Value::from(self.office.as_str()),
            Value::from(self.kind.as_str()),
            self.detail.clone(),
        ];
        if let Some(state) = &self.state_sha256 {
            content.push(Value::from(state.as_str()));
        }
        let mut hasher = Sha256::new();
        hasher.update(self.prev_hash.as_bytes());
        hasher.update(canonical_json(&Value::Array(content)).as_bytes());
        hex::encode(hasher.finalize())
    }

    /// Signs the entry as `signer` (its hash must be final).
    pub fn sign(&mut self, signer: &dyn EntrySigner) {
        self.signer = Some(signer.office().clone());
        self.signature = Some(hex::encode(signer.sign(self.hash.as_bytes())));
    }

    /// The event this entry records, rebuilt from its kind, time, office and detail.
    pub fn event(&self) -> Result<Event, SealError> {
        let unreadable = |reason: String| SealError::EventUnreadable {
            seq: self.seq,
            reason,
        };
        let Value::Object(mut fields) = self.detail.clone() else {
            return Err(unreadable("the detail is not an object".to_string()));
        };
        fields.insert("kind".to_string(), Value::from(self.kind.as_str()));
        fields.insert("at".to_string(), Value::from(self.at));
        fields.insert("office".to_string(), Value::from(self.office.as_str()));
        serde_json::from_value(Value::Object(fields)).map_err(|e| unreadable(e.to_string()))
    }

    /// Checks the signature of a sealed entry with `public_key`, the Ed25519 public key of the
    /// office it names as signer (None: not known). An unsealed entry passes (it is counted as
    /// written before [`SEALED_ENTRY_VERSION`] by its caller).
    pub fn check_signature(&self, public_key: Option<&[u8]>) -> Result<(), SealError> {
        if !self.is_sealed() {
            return Ok(());
        }
        let (Some(signer), Some(signature), Some(_)) =
            (&self.signer, &self.signature, &self.state_sha256)
        else {
            return Err(SealError::Unsigned { seq: self.seq });
        };
        let Some(public_key) = public_key else {
            return Err(SealError::UnknownSigner {
                seq: self.seq,
                signer: signer.to_string(),
            });
        };
        let bad = || SealError::BadSignature {
            seq: self.seq,
            signer: signer.to_string(),
        };
        let signature = hex::decode(signature).map_err(|_| bad())?;
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key)
            .verify(self.hash.as_bytes(), &signature)
            .map_err(|_| bad())
    }
}

/// Checks every link of `history`, which follows the chain `start`: consecutive `seq`, each
/// `prev_hash` the previous `hash`, each `hash` recomputed, and no entry of an older build (no
/// state hash) after one of this build.
pub(crate) fn verify(start: &ChainHead, history: &[HistoryEntry]) -> Result<(), DomainError> {
    let mut prev_hash = start.hash.as_str();
    let mut sealed_seen = false;
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
        if sealed_seen && !entry.is_sealed() {
            return Err(broken("an entry without a state hash follows one with"));
        }
        sealed_seen |= entry.is_sealed();
        prev_hash = &entry.hash;
    }
    Ok(())
}

/// JSON with object keys sorted and no whitespace, whatever serde_json's map ordering feature is:
/// the same value always hashes the same on every build.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::with_capacity(1_024);
    write_canonical(value, &mut out);
    // Only JSON text (UTF-8 by construction) was written.
    String::from_utf8(out).unwrap_or_default()
}

/// Writes `value` into `out` with no allocation of its own: keys and scalars are written by
/// serde_json's compact writer, exactly as `Value`'s `Display` writes them.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::Object(fields) => {
            let mut keys: Vec<&String> = fields.keys().collect();
            keys.sort_unstable();
            out.push(b'{');
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_json(key.as_str(), out);
                out.push(b':');
                if let Some(item) = fields.get(key) {
                    write_canonical(item, out);
                }
            }
            out.push(b'}');
        }
        scalar => write_json(scalar, out),
    }
}

/// serde_json's compact form of `value` (a string or a scalar), appended to `out`.
pub(crate) fn write_json<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Writing a string or a scalar into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
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
