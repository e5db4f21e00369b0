//! Folding events into a case, its alarms, its chain and its stored form.

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::calendar::Millis;
use crate::clock::{self, ClockKind};
use crate::codec;
use crate::error::DomainError;
use crate::event::{self, ChainHead, EntrySigner, Event, HistoryEntry, SealError};
use crate::group::Group;
use crate::ids::OfficeCode;
use crate::model::{
    Case, CaseExtra, FollowUpRecord, GradeInfo, HandoffKind, PetitionerExtra, Receipt,
    Satisfaction, Status, Supervision, CASE_VERSION, CASE_VERSION_ADDRESS, CASE_VERSION_EXTRA,
    CASE_VERSION_GROUP, CASE_VERSION_MIN,
};

/// The case's fields its state hash leaves out: the stored form's version, the history, and the
/// group and the petitioner's extension (personal data: their digest is in the petitioner's).
const STATE_LEFT_OUT: [&str; 5] = ["v", "history", "history_start", "group", "petitioner_extra"];

/// What [`Case::check_seals`] saw: entries signed, and entries written before
/// [`crate::event::SEALED_ENTRY_VERSION`] (unsigned).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SealCount {
    pub signed: u32,
    pub unsigned: u32,
}

impl Case {
    /// Folds one event: status, deadlines, clocks and flags, then a hash-chained history entry.
    /// Deterministic and total: it trusts the event (the engine made it) and never fails.
    pub fn apply(&mut self, event: &Event) {
        self.fold_only(event);
        let entry = HistoryEntry::next(&self.chain_head(), event, Some(self.state_sha256()));
        self.history.push(entry);
    }

    /// hex SHA-256 of the whole case state, history aside: the canonical JSON of the case
    /// without its version, history entries and chain start, its personal data replaced by
    /// the digest of which fields it has ([`personal_data_sha256`]), so that the state can be checked by someone
    /// shown the digest instead of the data (an operator's dump). A sealed history entry records
    /// it as it was after the entry's event.
    pub fn state_sha256(&self) -> String {
        let digest = self.petitioner_sha256();
        self.state_sha256_with(digest.as_deref())
    }

    /// The digest of this copy's personal data (None on a stub, which holds none).
    ///
    /// [`personal_data_sha256`] of the petitioner with the group standing by its number and the
    /// address by its presence (a case without them keeps the digest it had before groups and
    /// addresses). Every personal field serialises to a string, so the digest depends only on
    /// which fields are there: their shape is written straight as the canonical JSON
    /// [`personal_data_sha256`] would hash, without building it as a JSON value.
    pub fn petitioner_sha256(&self) -> Option<String> {
        let petitioner = self.petitioner.as_ref()?;
        // The canonical JSON's keys in their sorted order: address, group, id_number, name,
        // phone; each present field as "present", an absent phone as null.
        let mut shape = String::with_capacity(96);
        shape.push('{');
        if self.address().is_some() {
            shape.push_str(r#""address":"present","#);
        }
        if self.group.is_some() {
            shape.push_str(r#""group":"present","#);
        }
        shape.push_str(r#""id_number":"present","name":"present","phone":"#);
        shape.push_str(if petitioner.phone.is_some() {
            r#""present"}"#
        } else {
            "null}"
        });
        Some(hex::encode(Sha256::digest(shape.as_bytes())))
    }

    /// [`Case::state_sha256`] with `petitioner_sha256` standing for the personal data: the
    /// canonical JSON written straight from the case ([`crate::canonical`]), the fields left out
    /// never serialised.
    fn state_sha256_with(&self, petitioner_sha256: Option<&str>) -> String {
        let mut petitioner = Vec::with_capacity(70);
        match petitioner_sha256 {
            Some(digest) => event::write_json(digest, &mut petitioner),
            None => petitioner.extend_from_slice(b"null"),
        }
        let top = crate::canonical::TopFields {
            skip: &STATE_LEFT_OUT,
            replace: ("petitioner", &petitioner),
        };
        let mut out = Vec::with_capacity(1_024);
        match crate::canonical::write_struct(self, &top, &mut out) {
            Ok(()) => hex::encode(Sha256::digest(&out)),
            // Never expected (a case is a struct of strings, numbers and options): the same
            // bytes the long way.
            Err(_) => self.state_sha256_through_value(petitioner_sha256),
        }
    }

    /// [`Case::state_sha256_with`] through a `serde_json::Value`, as builds before the direct
    /// writer computed it.
    fn state_sha256_through_value(&self, petitioner_sha256: Option<&str>) -> String {
        let mut case = self.clone();
        case.history.clear();
        case.history_start = ChainHead::default();
        let mut value = serde_json::to_value(&case).unwrap_or(Value::Null);
        if let Value::Object(fields) = &mut value {
            // The group and the petitioner's extension are personal data: their digest is in
            // the petitioner's.
            for field in STATE_LEFT_OUT {
                fields.remove(field);
            }
            fields.insert(
                "petitioner".to_string(),
                petitioner_sha256.map(Value::from).unwrap_or(Value::Null),
            );
        }
        hex::encode(Sha256::digest(event::canonical_json(&value).as_bytes()))
    }

    /// Signs every entry this copy carries that the signer's office applied (its event's office)
    /// and that has a state hash but no signature yet: the entries that office just added. An
    /// entry another office left unsigned is never signed here.
    pub fn sign_new_entries(&mut self, signer: &dyn EntrySigner) {
        for entry in &mut self.history {
            if entry.state_sha256.is_some()
                && entry.signature.is_none()
                && entry.office == *signer.office()
            {
                entry.sign(signer);
            }
        }
    }

    /// Checks the seals of this copy (the chain itself is [`Case::verify_chain`]'s): every
    /// signed entry's signature against its signer's public key (`public_key`), the last state
    /// hash against this copy's own state, and, on a copy carrying its whole history, every
    /// state hash against the case re-folded from the events. `petitioner_sha256` stands for
    /// the personal data ([`Case::petitioner_sha256`] of the copy that held them; a dump without
    /// them carries the digest). Returns how many entries were signed and how many were written
    /// before [`crate::event::SEALED_ENTRY_VERSION`] (unsigned).
    pub fn check_seals(
        &self,
        petitioner_sha256: Option<&str>,
        public_key: impl Fn(&OfficeCode) -> Option<Vec<u8>>,
    ) -> Result<SealCount, SealError> {
        let mut count = SealCount::default();
        for entry in &self.history {
            if entry.is_sealed() {
                let key = entry.signer.as_ref().and_then(&public_key);
                entry.check_signature(key.as_deref())?;
                count.signed += 1;
            } else {
                count.unsigned += 1;
            }
        }
        let Some(last) = self.history.last().filter(|entry| entry.is_sealed()) else {
            return Ok(count);
        };
        if Some(self.state_sha256_with(petitioner_sha256)) != last.state_sha256 {
            return Err(SealError::StateMismatch {
                seq: last.seq,
                reason: "the stored case differs from the state its last entry signed".into(),
            });
        }
        if self.has_whole_history() {
            self.refold(petitioner_sha256)?;
        }
        Ok(count)
    }

    /// Re-folds the events of the whole history from the registration and compares the state
    /// after each sealed entry with the state hash it records. A forwarding stub no longer
    /// holds the personal data its earlier states had: its states are compared from the
    /// handoff it completed on.
    fn refold(&self, petitioner_sha256: Option<&str>) -> Result<(), SealError> {
        let Some(first) = self.history.first() else {
            return Ok(());
        };
        let compare_from = if matches!(self.status, Status::Forwarded { .. }) {
            self.history
                .iter()
                .rev()
                .find(|entry| entry.kind == "handoff_completed")
                .map(|entry| entry.seq)
                .unwrap_or(0)
        } else {
            0
        };
        let mut case = self.seed(first.at);
        for entry in &self.history {
            let event = entry.event()?;
            case.fold_only(&event);
            let Some(recorded) = &entry.state_sha256 else {
                continue;
            };
            if entry.seq < compare_from {
                continue;
            }
            // A stub holds no personal data from its handoff on.
            let digest = match case.status {
                Status::Forwarded { .. } => None,
                _ => petitioner_sha256,
            };
            if case.state_sha256_with(digest) != *recorded {
                return Err(SealError::StateMismatch {
                    seq: entry.seq,
                    reason: "re-folding the events gives another state".into(),
                });
            }
        }
        Ok(())
    }

    /// The case as `register` made it, before its first event: what does not come from events
    /// (registration data, personal data) taken from this copy.
    fn seed(&self, registered_at: Millis) -> Case {
        Case {
            v: self.v,
            id: self.id.clone(),
            kind: self.kind.clone(),
            office: self.id.office.clone(),
            status: Status::Registered,
            status_since: registered_at,
            channel: self.channel,
            category: self.category.clone(),
            summary: self.summary.clone(),
            location: self.location.clone(),
            petitioner: self.petitioner.clone(),
            petitioner_key: self.petitioner_key.clone(),
            registered_at,
            first_officer: self.first_officer.clone(),
            handler: None,
            accepted_at: None,
            received: None,
            grade: None,
            opinion: None,
            reply_text: None,
            replied_at: None,
            satisfaction: None,
            supervision: None,
            deadlines: Default::default(),
            clocks: Default::default(),
            extended: false,
            overdue: false,
            history_start: Default::default(),
            history: Vec::new(),
            // A case of version 5 has its extension from its registration on.
            extra: (self.v >= CASE_VERSION_ADDRESS).then(CaseExtra::default),
            petitioner_extra: self.petitioner_extra.clone(),
            group: self.group.clone(),
        }
    }

    /// What [`Case::apply`] does to the state, without the history entry.
    fn fold_only(&mut self, event: &Event) {
        let status_before = self.status.clone();
        self.fold(event);
        if self.status != status_before {
            self.status_since = event.at();
        }
    }

    fn fold(&mut self, event: &Event) {
        match event {
            Event::Registered {
                at,
                accept_by,
                reply_by,
                ..
            } => {
                self.status = Status::Registered;
                self.registered_at = *at;
                self.start_clock(ClockKind::Accept, *at, *accept_by);
                if let Some(reply_by) = reply_by {
                    self.start_clock(ClockKind::Reply, *at, *reply_by);
                }
            }
            Event::Accepted {
                at,
                officer,
                reply_by,
                ..
            } => {
                self.status = Status::Accepted;
                self.handler = Some(officer.clone());
                self.accepted_at = Some(*at);
                self.stop_clock(ClockKind::Accept);
                self.stop_clock(ClockKind::Return);
                if self.clocks.reply.is_some() {
                    self.move_clock(ClockKind::Reply, *reply_by);
                } else {
                    self.start_clock(ClockKind::Reply, *at, *reply_by);
                }
            }
            Event::Declined { route, .. } => {
                self.status = Status::Declined { route: *route };
                for clock in [
                    ClockKind::Accept,
                    ClockKind::Reply,
                    ClockKind::Return,
                    ClockKind::Report,
                    ClockKind::Grade,
                ] {
                    self.stop_clock(clock);
                }
            }
            Event::HandoffStarted { to, handoff, .. } => {
                self.status = Status::InTransit {
                    to: to.clone(),
                    kind: handoff.clone(),
                };
            }
            Event::Returned { to, .. } => {
                self.status = Status::InTransit {
                    to: to.clone(),
                    kind: HandoffKind::Return,
                };
            }
            Event::HandoffCompleted { to, .. } => {
                // A stub: it points at the owner and keeps no personal data and no clocks.
                self.status = Status::Forwarded { to: to.clone() };
                self.office = to.clone();
                self.petitioner = None;
                self.group = None;
                if let Some(extra) = &mut self.petitioner_extra {
                    extra.address = None;
                }
                self.supervision = None;
                self.deadlines = Default::default();
                self.clocks = Default::default();
                self.stop_clock(ClockKind::Grade);
                self.stop_clock(ClockKind::FollowUp);
            }
            Event::HandoffReverted { .. } => {
                // Handoffs start only from Registered; the clocks were frozen, not stopped.
                self.status = Status::Registered;
            }
            Event::Received {
                at,
                office,
                from,
                handoff,
                accept_by,
                return_by,
                report_by,
            } => {
                self.office = office.clone();
                self.status = Status::Registered;
                self.received = Some(Receipt {
                    from: from.clone(),
                    handoff: handoff.clone(),
                    at: *at,
                });
                // The breaches on record were the sender's (its record keeps them); this office
                // starts clean. An open supervision order follows the case: this office answers
                // it now, by the order's own due date (its clock runs on).
                self.overdue = false;
                for clock in [ClockKind::Return, ClockKind::Report] {
                    self.stop_clock(clock);
                }
                self.start_clock(ClockKind::Accept, *at, *accept_by);
                if let Some(return_by) = return_by {
                    self.start_clock(ClockKind::Return, *at, *return_by);
                }
                if let Some(report_by) = report_by {
                    self.start_clock(ClockKind::Report, *at, *report_by);
                }
            }
            Event::Extended { reply_by, .. } => {
                self.extended = true;
                self.move_clock(ClockKind::Reply, *reply_by);
            }
            Event::Replied {
                at,
                opinion,
                text,
                review_by,
                evaluate_by,
                ..
            } => {
                self.status = Status::Replied;
                self.opinion = Some(*opinion);
                self.reply_text = Some(text.clone());
                self.replied_at = Some(*at);
                self.stop_clock(ClockKind::Reply);
                self.stop_clock(ClockKind::Report);
                // The graded matter is answered: its deadline no longer runs.
                self.stop_clock(ClockKind::Grade);
                self.deadlines.review_by = *review_by;
                self.deadlines.evaluate_by = Some(*evaluate_by);
            }
            Event::Evaluated { satisfaction, .. } => {
                self.satisfaction = Some(*satisfaction);
                self.deadlines.evaluate_by = None;
                if self.status == Status::Replied {
                    self.status = Status::Evaluated;
                }
            }
            Event::ReviewRequested { .. } => {
                self.status = Status::ReviewRequested;
                self.deadlines.review_by = None;
            }
            Event::Graded {
                grade,
                leader,
                department,
                plan,
                deadline,
                ..
            } => {
                self.grade = Some(GradeInfo {
                    grade: *grade,
                    leader: leader.clone(),
                    department: department.clone(),
                    plan: plan.clone(),
                    deadline: *deadline,
                });
                // A new grade (or a re-grade) of a matter being handled warns again against its
                // own deadline; a replied matter's has nothing left to warn of.
                if matches!(self.status, Status::Registered | Status::Accepted) {
                    self.start_clock(ClockKind::Grade, event.at(), *deadline);
                }
            }
            Event::SupervisionOrdered {
                at,
                from,
                text,
                due_by,
                ..
            } => {
                self.supervision = Some(Supervision {
                    from: from.clone(),
                    text: text.clone(),
                    ordered_at: *at,
                    due_by: *due_by,
                });
                self.start_clock(ClockKind::Supervision, *at, *due_by);
            }
            Event::SupervisionAnswered { .. } => {
                self.supervision = None;
                self.stop_clock(ClockKind::Supervision);
            }
            Event::Warned { clock, percent, .. } => self.mark_reached(*clock, *percent),
            Event::Overdue { clock, .. } => {
                self.mark_reached(*clock, 100);
                self.overdue = true;
            }
            Event::ReturnWindowLapsed { .. } => self.stop_clock(ClockKind::Return),
            Event::EvaluationLapsed { .. } => {
                self.satisfaction = Some(Satisfaction::NotEvaluated);
                self.deadlines.evaluate_by = None;
            }
            Event::Finalised { .. } => {
                self.status = Status::Final;
                self.deadlines.review_by = None;
                self.deadlines.evaluate_by = None;
            }
            // The link is the history entry itself: nothing else changes.
            Event::ReviewOpened { .. } => {}
            Event::ReviewDecided { is_final, .. } => {
                if *is_final {
                    self.status = Status::Final;
                    self.deadlines.review_by = None;
                    self.deadlines.evaluate_by = None;
                } else {
                    self.status = Status::Reviewed;
                }
            }
            Event::SupervisionFollowed {
                from,
                text,
                ordered_at,
                due_by,
                ..
            } => {
                self.supervision = Some(Supervision {
                    from: from.clone(),
                    text: text.clone(),
                    ordered_at: *ordered_at,
                    due_by: *due_by,
                });
                self.start_clock(ClockKind::Supervision, *ordered_at, *due_by);
            }
            Event::FollowUpOpened { at, due_by, .. } => {
                self.start_clock(ClockKind::FollowUp, *at, *due_by);
            }
            Event::FollowedUp {
                at, officer, note, ..
            } => {
                self.stop_clock(ClockKind::FollowUp);
                self.extra_mut().followed_up = Some(FollowUpRecord {
                    at: *at,
                    officer: officer.clone(),
                    note: note.clone(),
                });
            }
        }
    }

    /// The earliest instant at which `tick` would produce an event (it may already have passed if
    /// a tick is late); None when nothing is pending. The node keys its alarm index with it.
    pub fn next_alarm(&self) -> Option<Millis> {
        clock::alarms(self).first().map(|alarm| alarm.at)
    }

    /// Checks the hash chain of the history this copy carries: a modified, removed or reordered
    /// entry is found.
    pub fn verify_chain(&self) -> Result<(), DomainError> {
        event::verify(&self.history_start, &self.history)
    }

    /// The chain after this copy's last entry: what the next entry follows.
    pub fn chain_head(&self) -> ChainHead {
        match self.history.last() {
            Some(entry) => ChainHead::after(entry),
            None => self.history_start.clone(),
        }
    }

    /// Entries in the case's whole history, carried here or not.
    pub fn history_len(&self) -> u32 {
        self.history
            .last()
            .map(|entry| entry.seq)
            .unwrap_or(self.history_start.entries)
    }

    /// Whether this copy carries its whole history.
    pub fn has_whole_history(&self) -> bool {
        self.history_start.entries == 0
    }

    /// Splits this copy into its header (no entries; its `history_start` is the whole chain) and
    /// the entries it carried: what is stored for a case, apart.
    pub fn into_header(mut self) -> (Case, Vec<HistoryEntry>) {
        self.history_start = self.chain_head();
        let entries = std::mem::take(&mut self.history);
        (self, entries)
    }

    /// A header with its whole history (`entries` from the first on): refused when they do not
    /// end where the header's chain does.
    pub fn with_whole_history(mut self, entries: Vec<HistoryEntry>) -> Result<Case, DomainError> {
        debug_assert!(self.history.is_empty(), "a header carries no entries");
        let head = entries.last().map(ChainHead::after).unwrap_or_default();
        if head != self.history_start {
            return Err(DomainError::Corrupt {
                reason: format!(
                    "case {}: {} history entries stored, the header names {}",
                    self.id,
                    entries.len(),
                    self.history_start.entries
                ),
            });
        }
        self.history_start = ChainHead::default();
        self.history = entries;
        Ok(self)
    }

    /// The versioned binary document: format byte, then the case (see [`crate::codec`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Reads [`Case::to_bytes`]' form, and version 1's JSON document (`{"v":1,...}`, written by
    /// builds before the binary codec); refuses other versions and malformed fields.
    pub fn from_bytes(bytes: &[u8]) -> Result<Case, DomainError> {
        if bytes.first() == Some(&b'{') {
            let value = versioned_json(bytes, CASE_VERSION_MIN..=CASE_VERSION)?;
            let group = match value.get("group") {
                Some(group) if !group.is_null() => {
                    Some(serde_json::from_value(group.clone()).map_err(corrupt)?)
                }
                _ => None,
            };
            let extra = match value.get("extra") {
                Some(extra) if !extra.is_null() => {
                    Some(serde_json::from_value(extra.clone()).map_err(corrupt)?)
                }
                _ => None,
            };
            let petitioner_extra = match value.get("petitioner_extra") {
                Some(extra) if !extra.is_null() => {
                    Some(serde_json::from_value(extra.clone()).map_err(corrupt)?)
                }
                _ => None,
            };
            let mut case: Case = serde_json::from_value(value).map_err(corrupt)?;
            case.group = group;
            case.extra = extra;
            case.petitioner_extra = petitioner_extra;
            return Ok(case);
        }
        let (mut case, rest) = match bytes.split_first() {
            // Version 3's group follows the version-2 layout (see `Case::group`).
            Some((&codec::FORMAT_BINARY, body)) => {
                postcard::take_from_bytes::<Case>(body).map_err(corrupt)?
            }
            _ => {
                return codec::decode(bytes).map_err(|error| match error {
                    codec::CodecError::UnknownFormat(found) => DomainError::UnsupportedVersion {
                        found: u64::from(found),
                        supported: CASE_VERSION,
                    },
                    other => corrupt(other),
                })
            }
        };
        // Version 4's extension follows the history (always there at version 4), then the
        // group as at version 3.
        let rest = if case.v >= CASE_VERSION_EXTRA {
            let (extra, rest) =
                postcard::take_from_bytes::<Option<CaseExtra>>(rest).map_err(corrupt)?;
            if extra.is_none() {
                return Err(DomainError::Corrupt {
                    reason: format!("case {}: version {} without its extension", case.id, case.v),
                });
            }
            case.extra = extra;
            rest
        } else {
            rest
        };
        // Version 5's petitioner extension follows (always there at version 5).
        let rest = if case.v >= CASE_VERSION_ADDRESS {
            let (extra, rest) =
                postcard::take_from_bytes::<Option<PetitionerExtra>>(rest).map_err(corrupt)?;
            if extra.is_none() {
                return Err(DomainError::Corrupt {
                    reason: format!(
                        "case {}: version 5 without its petitioner extension",
                        case.id
                    ),
                });
            }
            case.petitioner_extra = extra;
            rest
        } else {
            rest
        };
        if case.v >= CASE_VERSION_GROUP && !rest.is_empty() {
            case.group = postcard::from_bytes::<Option<Group>>(rest).map_err(corrupt)?;
        }
        Ok(case)
    }

    /// Whether `office` may change this copy: it owns it, and the case is neither in transit nor a
    /// forwarding stub.
    pub fn is_mutable_by(&self, office: &OfficeCode) -> bool {
        self.office == *office
            && !matches!(
                self.status,
                Status::InTransit { .. } | Status::Forwarded { .. }
            )
    }
}

/// The digest of a case's personal data as it serialises to JSON (`Case::petitioner`): hex
/// SHA-256 of the canonical JSON of which fields it has (each present field stands as
/// `"present"`); None for none (null).
///
/// The values themselves stay out of the signed state: each office seals them under its own
/// data key with a fresh nonce, so the same name reads as different bytes at the office that
/// filed a case and at the one it moved to, and a value filed in clear by an older build is
/// sealed when its case moves. Sealed values are authenticated by their cipher instead (a
/// changed byte does not open), bound to their office, petitioner key and field; the
/// petitioner key, which is in the signed state, ties them to the petitioner.
pub fn personal_data_sha256(petitioner: &Value) -> Option<String> {
    if petitioner.is_null() {
        return None;
    }
    let shape = match petitioner {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, value)| {
                    let present = if value.is_null() {
                        Value::Null
                    } else {
                        Value::from("present")
                    };
                    (name.clone(), present)
                })
                .collect(),
        ),
        _ => Value::from("present"),
    };
    Some(hex::encode(Sha256::digest(
        event::canonical_json(&shape).as_bytes(),
    )))
}

fn corrupt(error: impl std::fmt::Display) -> DomainError {
    DomainError::Corrupt {
        reason: error.to_string(),
    }
}

/// Parses a JSON document and checks its `v` before anything else is read.
pub(crate) fn versioned_json(
    bytes: &[u8],
    versions: std::ops::RangeInclusive<u16>,
) -> Result<Value, DomainError> {
    let value: Value = serde_json::from_slice(bytes).map_err(corrupt)?;
    match value.get("v").map(Value::as_u64) {
        Some(Some(found))
            if (u64::from(*versions.start())..=u64::from(*versions.end())).contains(&found) =>
        {
            Ok(value)
        }
        Some(Some(found)) => Err(DomainError::UnsupportedVersion {
            found,
            supported: *versions.end(),
        }),
        _ => Err(DomainError::Corrupt {
            reason: "no version field \"v\"".to_string(),
        }),
    }
}

/// Serde guard on `Case::v`: a plain deserialise refuses other versions too.
pub(crate) fn deserialize_case_version<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<u16, D::Error> {
    let version = u16::deserialize(deserializer)?;
    if (CASE_VERSION_MIN..=CASE_VERSION).contains(&version) {
        Ok(version)
    } else {
        Err(serde::de::Error::custom(DomainError::UnsupportedVersion {
            found: u64::from(version),
            supported: CASE_VERSION,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::{Calendar, DAY_MS};
    use crate::command::CaseCommand;
    use crate::engine::{decide, register, tick, Context};
    use crate::group::Member;
    use crate::ids::CaseId;
    use crate::model::{CaseKind, Channel, Grade, Opinion, Registration};
    use crate::personal::{Personal, Sealed, SEALED_MARK};

    /// The digests as builds before this one computed them, through JSON values: the reference
    /// the faster ones must match byte for byte (stored entries carry their hashes).
    mod reference {
        use super::*;

        pub fn petitioner_sha256(case: &Case) -> Option<String> {
            let mut value = serde_json::to_value(&case.petitioner).unwrap_or(Value::Null);
            if let (Some(group), Value::Object(fields)) = (&case.group, &mut value) {
                fields.insert("group".into(), Value::from(group.petitioners()));
            }
            if let (Some(_), Value::Object(fields)) = (case.address(), &mut value) {
                fields.insert("address".into(), Value::from("present"));
            }
            personal_data_sha256(&value)
        }

        /// The state hash through a JSON value: the path builds before the direct writer took,
        /// kept in [`Case::state_sha256_through_value`].
        pub fn state_sha256_with(case: &Case, petitioner_sha256: Option<&str>) -> String {
            case.state_sha256_through_value(petitioner_sha256)
        }
    }

    const T0: Millis = 1_767_225_600_000;

    fn office(code: &str) -> OfficeCode {
        code.parse().unwrap_or_else(|_| unreachable!())
    }

    fn registered() -> Case {
        let office = office("530602");
        let registration = Registration {
            channel: Channel::Visit,
            petitioner_id: "530602198001010012".into(),
            name: "张三".into(),
            phone: Some("13800000000".into()),
            category: "housing".into(),
            summary: "The roof \"leaks\"\n\u{2028}.".into(),
            location: Some(self::office("530602001")),
            officer: "registrar".into(),
            address: None,
        };
        let id = CaseId::new(office.clone(), 2026, 7);
        let key = crate::petitioner_key(b"secret", "530602198001010012");
        let calendar = Calendar::china();
        let context = Context::new(&office, T0, &calendar);
        register(id, registration, key, CaseKind::Original, &context)
            .unwrap_or_else(|_| unreachable!())
    }

    /// The states a case passes through on its way (each command applied where allowed), with
    /// the optional fields the engine leaves alone filled in by hand.
    fn lifecycle() -> Vec<Case> {
        let office = office("530602");
        let calendar = Calendar::china();
        let mut case = registered();
        let mut states = vec![case.clone()];
        let officer = || "Officer Wang".to_string();
        let commands = [
            CaseCommand::Supervise {
                from: self::office("5306"),
                due_days: 10,
                text: "Report by Friday.".into(),
            },
            CaseCommand::Accept { officer: officer() },
            CaseCommand::SetGrade {
                grade: Grade::A,
                leader: "Leader Zhou".into(),
                department: "Housing bureau".into(),
                plan: "Inspect and repair.".into(),
                deadline: T0 + 40 * DAY_MS,
            },
            CaseCommand::Extend {
                days: 10,
                reason: "Survey needed.".into(),
                officer: officer(),
            },
            CaseCommand::Reply {
                opinion: Opinion::Support,
                text: "The roof will be repaired.".into(),
                officer: officer(),
            },
            CaseCommand::Evaluate {
                satisfaction: Satisfaction::Dissatisfied,
            },
            CaseCommand::FollowUp {
                note: "Still unhappy.".into(),
                officer: officer(),
            },
            CaseCommand::RequestReview,
        ];
        let mut now = T0;
        for command in commands {
            now += DAY_MS;
            let context = Context::new(&office, now, &calendar);
            if let Ok(events) = decide(&case, &command, &context) {
                for event in &events {
                    case.apply(event);
                }
                states.push(case.clone());
            }
        }
        // Ticks far ahead: warnings, overdue flags, lapses.
        for days in [50, 90, 400] {
            let context = Context::new(&office, T0 + days * DAY_MS, &calendar);
            for event in tick(&case, &context) {
                case.apply(&event);
            }
            states.push(case.clone());
        }
        // A copy in transit, and the stub it leaves (no personal data).
        let mut moving = registered();
        let context = Context::new(&office, T0 + DAY_MS, &calendar);
        let transfer = CaseCommand::Transfer {
            to: self::office("530621"),
            officer: officer(),
        };
        if let Ok(events) = decide(&moving, &transfer, &context) {
            for event in &events {
                moving.apply(event);
            }
        }
        states.push(moving.clone());
        if let Ok(events) = decide(&moving, &CaseCommand::HandoffAcked, &context) {
            for event in &events {
                moving.apply(event);
            }
        }
        moving.petitioner = None;
        moving.group = None;
        moving.petitioner_extra = None;
        states.push(moving);
        states
    }

    fn sealed(byte: u8) -> Personal {
        Personal::Sealed(
            Sealed::from_bytes(vec![SEALED_MARK, byte, 0xff, 0x00])
                .unwrap_or_else(|_| unreachable!()),
        )
    }

    /// Every shape of personal data on `case`: phone or not, address or not, group (of one or
    /// of several) or not, clear or sealed, and none at all.
    fn shapes(case: &Case) -> Vec<Case> {
        let mut out = Vec::new();
        for mask in 0..64u32 {
            let mut shaped = case.clone();
            let bit = |n: u32| mask & (1 << n) != 0;
            let seal = bit(4);
            let personal = |text: &str, byte: u8| {
                if seal {
                    sealed(byte)
                } else {
                    Personal::from(text)
                }
            };
            if let Some(petitioner) = shaped.petitioner.as_mut() {
                petitioner.name = personal("李四", 1);
                petitioner.id_number = personal("53060219800101001X", 2);
                petitioner.phone = bit(0).then(|| personal("13900000000", 3));
            }
            if bit(1) {
                shaped.petitioner_extra = Some(PetitionerExtra {
                    address: Some(personal("昭阳区 1 号", 4)),
                });
            } else if bit(5) {
                // An extension without an address.
                shaped.petitioner_extra = Some(PetitionerExtra { address: None });
            }
            if bit(2) || bit(3) {
                let members = if bit(3) {
                    vec![Member {
                        id_type: personal("resident", 5),
                        id_number: personal("530602199003071235", 6),
                        name: personal("王五", 7),
                        phone: None,
                        nationality: None,
                    }]
                } else {
                    Vec::new()
                };
                shaped.group = Some(Group {
                    id_type: personal("passport", 8),
                    nationality: Some(personal("FRA", 9)),
                    members,
                });
            }
            out.push(shaped.clone());
            shaped.petitioner = None;
            out.push(shaped);
        }
        out
    }

    /// The petitioner digest and the whole state hash give exactly the hex the JSON-valued
    /// reference gives, for every state of a case's life and every shape of its personal data.
    #[test]
    fn digests_match_the_json_reference_for_every_shape() {
        let mut compared = 0;
        let mut digests = std::collections::BTreeSet::new();
        for state in lifecycle() {
            for case in shapes(&state) {
                let digest = case.petitioner_sha256();
                assert_eq!(digest, reference::petitioner_sha256(&case), "{case:?}");
                digests.insert(digest.clone());
                for stands_for in [digest.as_deref(), None, Some("ab")] {
                    assert_eq!(
                        case.state_sha256_with(stands_for),
                        reference::state_sha256_with(&case, stands_for),
                        "{case:?}"
                    );
                }
                let history = case.history.clone();
                assert_eq!(
                    case.state_sha256(),
                    reference::state_sha256_with(&case, digest.as_deref())
                );
                assert_eq!(case.history, history);
                compared += 1;
            }
        }
        // Every shape was met: none, and 2 (phone) × 2 (address) × 2 (group) of them.
        assert_eq!(digests.len(), 9);
        assert!(compared > 1_000, "{compared}");
    }
}
