//! Federation messages: what one office tells another. Pure data; the node's outbox carries them
//! and the receiver's state machine applies them. A message is identified by its link and
//! sequence number, `(from, to, seq)`, and applies at most once (the receiver's inbox watermark).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::tagged_enum;
use crate::error::DomainError;
use crate::notice::{Notice, RedCard};
use crate::rules::{SUPERVISION_DUE_DAYS_MAX, SUPERVISION_DUE_DAYS_MIN};
use crate::session::{Part, Session, SessionError};
use crate::validate::{self, CATEGORY_CHARS_MAX, OFFICER_CHARS_MAX, SUMMARY_CHARS_MAX};
use crate::{
    Case, CaseId, ClockKind, Grade, Millis, OfficeCode, Opinion, ReviewLevel, Satisfaction, Status,
};

/// Longest text a supervision order carries (the answer is a reply text: `TEXT_CHARS_MAX`).
pub const SUPERVISION_TEXT_CHARS_MAX: usize = 2_000;
/// Longest order id a supervision message names (`<office>-<seq>`: 30 characters at most).
pub const ORDER_ID_CHARS_MAX: usize = 64;
/// The kinds of case a summary names.
pub const SUMMARY_KINDS: [&str; 3] = ["original", "review", "re_review"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub from: OfficeCode,
    pub to: OfficeCode,
    /// Per-link sequence number, from 1, without gaps.
    pub seq: u64,
    pub sent_at: Millis,
    pub body: Body,
}

/// A case encoded once, where the message carrying it is made (the sender's state machine), then
/// carried as those bytes through the sender's outbox, the wire and the receiver's raft log, and
/// decoded where it is checked and applied. In human-readable formats (format-1 values) it is the
/// case's JSON object, as messages carried it before the binary codec.
#[derive(Clone, PartialEq, Eq)]
pub struct CaseDocument {
    bytes: Vec<u8>,
}

impl CaseDocument {
    pub fn of(case: &Case) -> CaseDocument {
        CaseDocument {
            bytes: case.to_bytes(),
        }
    }

    /// A document as received; [`CaseDocument::case`] checks it.
    pub fn from_bytes(bytes: Vec<u8>) -> CaseDocument {
        CaseDocument { bytes }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The case, decoded.
    pub fn case(&self) -> Result<Case, DomainError> {
        Case::from_bytes(&self.bytes)
    }

    /// The case's id, without decoding the case: in the binary format a case's first fields are
    /// its version and its id (a format-1 document is decoded whole).
    pub fn case_id(&self) -> Result<CaseId, DomainError> {
        match self.bytes.split_first() {
            Some((&crate::codec::FORMAT_BINARY, body)) => {
                let ((_version, id), _rest): ((u16, CaseId), _) =
                    postcard::take_from_bytes(body).map_err(|error| DomainError::Corrupt {
                        reason: error.to_string(),
                    })?;
                Ok(id)
            }
            _ => Ok(self.case()?.id),
        }
    }
}

impl std::fmt::Debug for CaseDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.case() {
            Ok(case) => write!(f, "CaseDocument({}, {} bytes)", case.id, self.bytes.len()),
            Err(_) => write!(f, "CaseDocument(undecodable, {} bytes)", self.bytes.len()),
        }
    }
}

impl Serialize for CaseDocument {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            self.case()
                .map_err(serde::ser::Error::custom)?
                .serialize(serializer)
        } else {
            serializer.serialize_bytes(&self.bytes)
        }
    }
}

impl<'de> Deserialize<'de> for CaseDocument {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<CaseDocument, D::Error> {
        if deserializer.is_human_readable() {
            // Read as `Case::from_bytes` reads a JSON document: with its group.
            let value = serde_json::Value::deserialize(deserializer)?;
            let json = serde_json::to_vec(&value).map_err(serde::de::Error::custom)?;
            let case = Case::from_bytes(&json).map_err(serde::de::Error::custom)?;
            Ok(CaseDocument::of(&case))
        } else {
            let bytes = serde_bytes::ByteBuf::deserialize(deserializer)?;
            Ok(CaseDocument::from_bytes(bytes.into_vec()))
        }
    }
}

tagged_enum! {
    #[derive(Debug, Clone, PartialEq)]
    pub enum Body tagged "type" {
        /// A transfer, assignment or return: the sender's copy with its whole history, in transit
        /// to the receiver. Personal data moves with ownership.
        Handoff { case: CaseDocument },
        /// Review or re-review: the receiver registers a linked case with its own 30-day clock
        /// from the lower office's copy (its header: the receiver needs no history).
        Escalation { level: ReviewLevel, case: CaseDocument },
        /// An ancestor's supervision order (督办) on a case the receiver holds.
        SupervisionOrder {
            case_id: CaseId,
            order_id: String,
            text: String,
            due_days: u32,
        },
        /// The holder's written answer to a supervision order.
        SupervisionAnswer {
            case_id: CaseId,
            order_id: String,
            text: String,
            officer: String,
        },
        /// A case changed somewhere below: its summary for the ancestors' index.
        IndexUpdate { summary: Summary },
        /// To the case a review (re-review) case reviews: the level above registered it as
        /// `review_id`. Sent to the office in `case_id`; a forwarding stub passes it on.
        ReviewOpened {
            case_id: CaseId,
            review_id: CaseId,
            level: ReviewLevel,
        },
        /// To the case a review (re-review) case reviews: its decision. Sent to the office in
        /// `case_id`; a forwarding stub passes it on.
        ReviewDecision {
            case_id: CaseId,
            review_id: CaseId,
            level: ReviewLevel,
            opinion: Opinion,
            text: String,
            decided_at: Millis,
            is_final: bool,
        },
        /// A supervision order passed on by an office that handed the case on (it arrived there
        /// after the case left): `issuer` gave it and gets the answer.
        SupervisionRelay {
            case_id: CaseId,
            order_id: String,
            issuer: OfficeCode,
            text: String,
            ordered_at: Millis,
            due_by: Millis,
        },
        /// `office` let a statutory clock of this case pass its limit while holding it: counted
        /// on `office`'s record at every ancestor, wherever the case goes next.
        Breach {
            case_id: CaseId,
            office: OfficeCode,
            clock: ClockKind,
        },
        /// A joint reception session's record, from its host down to each office it invited:
        /// the invitation, then the record again whenever it changes.
        SessionRecord { session: Session },
        /// An invited office's part of a session's record (its answer, bookings and linked
        /// cases), up to the host.
        SessionReport { session_id: String, part: Part },
        /// An escalating notice (三级抄告): an unresolved case copied up from the office
        /// holding it to the ancestor at the notice's level.
        Notice { notice: Notice },
        /// A red card (红牌) the sender earned by missing a supervision order's due date, to
        /// the order's issuer.
        RedCard { card: RedCard },
        /// A case changed somewhere below: its summary with the facts supervisors' filters and
        /// rates need (summary version 2). `IndexUpdate` stays for messages made before it.
        IndexUpdateV2 { summary: SummaryV2 },
        /// An office's case heads for its parent to keep: part of an anchor (the heads that
        /// changed since the last one, the cases that left), the last part with the root.
        Anchor { part: crate::anchor::AnchorPart },
    }
}

impl Body {
    /// Every field as the engine checks it where the message is made (a registration's limits, a
    /// supervision order's, a reply's, a summary's words, a carried case's hash chain). A
    /// message that fails was not made by a Liandong office, or was changed on the way: a
    /// receiver refuses it before it enters its log.
    pub fn validate(&self) -> Result<(), DomainError> {
        match self {
            Body::Handoff { case } => {
                let case = case.case()?;
                if !case.has_whole_history() {
                    return Err(DomainError::FieldInvalid {
                        field: "case",
                        reason: "a handoff carries the case's whole history",
                    });
                }
                validate_carried(&case)
            }
            Body::Escalation { case, .. } => validate_carried(&case.case()?),
            Body::SupervisionOrder {
                order_id,
                text,
                due_days,
                ..
            } => {
                validate_order_id(order_id)?;
                let chars = text.trim().chars().count();
                if chars == 0 {
                    return Err(DomainError::FieldEmpty { field: "text" });
                }
                if chars > SUPERVISION_TEXT_CHARS_MAX {
                    return Err(DomainError::FieldTooLong {
                        field: "text",
                        max: SUPERVISION_TEXT_CHARS_MAX,
                    });
                }
                if !(SUPERVISION_DUE_DAYS_MIN..=SUPERVISION_DUE_DAYS_MAX).contains(due_days) {
                    return Err(DomainError::OutOfRange {
                        field: "due_days",
                        min: SUPERVISION_DUE_DAYS_MIN,
                        max: SUPERVISION_DUE_DAYS_MAX,
                    });
                }
                Ok(())
            }
            Body::SupervisionAnswer {
                order_id,
                text,
                officer,
                ..
            } => {
                validate_order_id(order_id)?;
                validate::text("text", text, validate::TEXT_CHARS_MAX)?;
                validate::line("officer", officer, OFFICER_CHARS_MAX)
            }
            Body::IndexUpdate { summary } => summary.validate(),
            Body::ReviewOpened {
                case_id, review_id, ..
            } => distinct(case_id, review_id),
            Body::ReviewDecision {
                case_id,
                review_id,
                text,
                ..
            } => {
                distinct(case_id, review_id)?;
                validate::text("text", text, validate::TEXT_CHARS_MAX)
            }
            Body::SupervisionRelay {
                order_id,
                text,
                ordered_at,
                due_by,
                ..
            } => {
                validate_order_id(order_id)?;
                validate::text("text", text, validate::TEXT_CHARS_MAX)?;
                if due_by < ordered_at {
                    return Err(DomainError::FieldInvalid {
                        field: "due_by",
                        reason: "an order is due after it is given",
                    });
                }
                Ok(())
            }
            Body::Breach { .. } => Ok(()),
            Body::SessionRecord { session } => session.validate().map_err(session_invalid),
            Body::SessionReport { session_id, part } => {
                crate::session::validate_id(session_id)?;
                crate::session::validate_part(part).map_err(session_invalid)
            }
            Body::Notice { notice } => notice.validate(),
            Body::RedCard { card } => card.validate(),
            Body::IndexUpdateV2 { summary } => summary.validate(),
            Body::Anchor { part } => part.validate(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Body::Handoff { .. } => "handoff",
            Body::Escalation { .. } => "escalation",
            Body::SupervisionOrder { .. } => "supervision_order",
            Body::SupervisionAnswer { .. } => "supervision_answer",
            Body::IndexUpdate { .. } => "index_update",
            Body::ReviewOpened { .. } => "review_opened",
            Body::ReviewDecision { .. } => "review_decision",
            Body::SupervisionRelay { .. } => "supervision_relay",
            Body::Breach { .. } => "breach",
            Body::SessionRecord { .. } => "session_record",
            Body::SessionReport { .. } => "session_report",
            Body::Notice { .. } => "notice",
            Body::RedCard { .. } => "red_card",
            Body::IndexUpdateV2 { .. } => "index_update",
            Body::Anchor { .. } => "anchor",
        }
    }

    /// The case a message is about, when it is addressed to whoever holds that case (a
    /// forwarding stub passes such a message on to the office it forwarded the case to).
    pub fn held_case(&self) -> Option<&CaseId> {
        match self {
            Body::SupervisionOrder { case_id, .. }
            | Body::ReviewOpened { case_id, .. }
            | Body::ReviewDecision { case_id, .. }
            | Body::SupervisionRelay { case_id, .. } => Some(case_id),
            _ => None,
        }
    }
}

/// A case as the ancestors' index sees it: no personal data, the petitioner key instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub case_id: CaseId,
    /// The office holding this copy when it changed.
    pub owner: OfficeCode,
    pub status: String,
    pub kind: String,
    pub category: String,
    pub petitioner_key: String,
    pub location: Option<OfficeCode>,
    pub overdue: bool,
    pub registered_at: Millis,
    pub changed_at: Millis,
    /// Length of the case's history when it changed: orders summaries of one case.
    pub version: u32,
    /// A, B or C for major cases: a grade-A case reaches every ancestor (上报) with this mark.
    #[serde(default)]
    pub grade: Option<String>,
    /// The petitioner's evaluation, once given: supervisors' satisfaction figures.
    #[serde(default)]
    pub satisfaction: Option<String>,
}

impl Summary {
    pub fn of(case: &Case) -> Summary {
        Summary {
            case_id: case.id.clone(),
            owner: case.office.clone(),
            status: case.status.as_str().to_string(),
            kind: match &case.kind {
                crate::CaseKind::Original => "original".to_string(),
                crate::CaseKind::Review { .. } => "review".to_string(),
                crate::CaseKind::ReReview { .. } => "re_review".to_string(),
            },
            category: case.category.clone(),
            petitioner_key: case.petitioner_key.clone(),
            location: case.location.clone(),
            overdue: case.overdue,
            registered_at: case.registered_at,
            changed_at: match case.chain_head() {
                head if head.entries > 0 => head.at,
                _ => case.registered_at,
            },
            version: case.history_len(),
            grade: case.grade.as_ref().map(|info| format!("{:?}", info.grade)),
            satisfaction: case.satisfaction.map(|s| s.as_str().to_string()),
        }
    }

    /// Repeat petitions are the same petitioner on the same matter: key, category, location.
    pub fn repeat_key(&self) -> (&str, &str, Option<&str>) {
        (
            &self.petitioner_key,
            &self.category,
            self.location.as_ref().map(OfficeCode::as_str),
        )
    }

    /// Every word and field as [`Summary::of`] makes them.
    pub fn validate(&self) -> Result<(), DomainError> {
        if !Status::WORDS.contains(&self.status.as_str()) {
            return Err(DomainError::FieldInvalid {
                field: "status",
                reason: "not a status word",
            });
        }
        if !SUMMARY_KINDS.contains(&self.kind.as_str()) {
            return Err(DomainError::FieldInvalid {
                field: "kind",
                reason: "expected original, review or re_review",
            });
        }
        validate::line("category", &self.category, CATEGORY_CHARS_MAX)?;
        validate::petitioner_key_format(&self.petitioner_key)?;
        if let Some(grade) = &self.grade {
            grade.parse::<Grade>()?;
        }
        let satisfaction_words = Satisfaction::ALL.iter().map(|word| word.as_str());
        if let Some(satisfaction) = &self.satisfaction {
            if !satisfaction_words.clone().any(|word| word == satisfaction) {
                return Err(DomainError::InvalidSatisfaction {
                    input: crate::error::echo(satisfaction),
                });
            }
        }
        Ok(())
    }

    /// A forwarding stub or a copy in transit is not the owner's truth.
    pub fn is_owner_copy(&self) -> bool {
        self.status != "forwarded"
    }
}

impl Summary {
    /// Skip-level (越级): an original petition registered at an office two or more levels above
    /// the office competent for the place it concerns (the office of its `location`), e.g. a
    /// township's matter filed at the city, or a county's at the province. The registering
    /// office is the one in the case id; a case without a location, a location outside the
    /// registering office's subtree, and reviews are never skip-level.
    pub fn is_skip_level(&self) -> bool {
        let Some(location) = &self.location else {
            return false;
        };
        let filed = &self.case_id.office;
        self.kind == "original"
            && filed.is_ancestor_of(location)
            && location.as_str().len() > filed.as_str().len()
            && depth(location) >= depth(filed) + 2
    }
}

/// How far below the province an office sits (province 0, city 1, county 2, township 3).
fn depth(office: &OfficeCode) -> u8 {
    match office.level() {
        crate::Level::Province => 0,
        crate::Level::City => 1,
        crate::Level::County => 2,
        crate::Level::Township => 3,
    }
}

/// What a summary of version 2 knows of a case besides version 1's fields: what supervisors'
/// filters, rates and trend need, and nothing personal. A field is None where the case does not
/// have it yet, and in a summary read from version 1 (made before these facts were kept).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// How the petition came in (visit, letter, phone, online, video).
    #[serde(default)]
    pub channel: Option<String>,
    /// The running limit that matters: the earliest of the decision (accept) and reply limits
    /// still running.
    #[serde(default)]
    pub due_at: Option<Millis>,
    #[serde(default)]
    pub accepted_at: Option<Millis>,
    #[serde(default)]
    pub replied_at: Option<Millis>,
    /// Accepted within the decision limit (15 days from registration or receipt).
    #[serde(default)]
    pub accepted_in_time: Option<bool>,
    /// Replied within the reply limit (see [`crate::figures::reply_limit`]).
    #[serde(default)]
    pub replied_on_time: Option<bool>,
    /// The highest warning a running limit reached: 0, 50, 75 or 100 (100: past it). A case
    /// whose limits stopped (accepted, replied) has none, even when it is still overdue.
    #[serde(default)]
    pub warned: u8,
    /// When the first limit passed, for an overdue case (the day it became overdue).
    #[serde(default)]
    pub overdue_at: Option<Millis>,
    /// The reply's opinion (support, explain, not-support): the resolution.
    #[serde(default)]
    pub opinion: Option<String>,
}

/// The newest summary a case sends up (version 2): version 1's fields, then the [`Facts`].
/// Stored in the index and carried by [`Body::IndexUpdateV2`]; a version-1 value (a stored index
/// entry or a message made by an earlier build) reads with [`SummaryV2::decode_stored`] or
/// [`SummaryV2::from_v1`], its facts unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryV2 {
    pub summary: Summary,
    pub facts: Facts,
}

impl std::ops::Deref for SummaryV2 {
    type Target = Summary;
    fn deref(&self) -> &Summary {
        &self.summary
    }
}

/// Words a summary's channel may be.
fn channel_words() -> impl Iterator<Item = &'static str> {
    crate::Channel::ALL.iter().map(|channel| channel.as_str())
}

impl SummaryV2 {
    pub fn of(case: &Case) -> SummaryV2 {
        SummaryV2 {
            summary: Summary::of(case),
            facts: crate::figures::facts(case),
        }
    }

    /// A version-1 summary: its facts unknown (warned only as far as `overdue` tells of a case
    /// still open).
    pub fn from_v1(summary: Summary) -> SummaryV2 {
        let open = ["registered", "accepted", "in_transit"].contains(&summary.status.as_str());
        let facts = Facts {
            warned: if summary.overdue && open { 100 } else { 0 },
            ..Facts::default()
        };
        SummaryV2 { summary, facts }
    }

    /// A stored summary of either version: version 2, else version 1 (a value whose bytes end
    /// where version 1's fields do cannot be read as version 2).
    pub fn decode_stored(bytes: &[u8]) -> Result<SummaryV2, crate::codec::CodecError> {
        match crate::codec::decode::<SummaryV2>(bytes) {
            Ok(summary) => Ok(summary),
            Err(error) => match crate::codec::decode::<Summary>(bytes) {
                Ok(summary) => Ok(SummaryV2::from_v1(summary)),
                Err(_) => Err(error),
            },
        }
    }

    /// Version 1's checks and the facts' words.
    pub fn validate(&self) -> Result<(), DomainError> {
        self.summary.validate()?;
        if let Some(channel) = &self.facts.channel {
            if !channel_words().any(|word| word == channel) {
                return Err(DomainError::InvalidChannel {
                    input: crate::error::echo(channel),
                });
            }
        }
        if let Some(opinion) = &self.facts.opinion {
            if !Opinion::ALL.iter().any(|word| word.as_str() == opinion) {
                return Err(DomainError::InvalidOpinion {
                    input: crate::error::echo(opinion),
                });
            }
        }
        if self.facts.warned > 100 {
            return Err(DomainError::FieldInvalid {
                field: "warned",
                reason: "a percentage of a limit, at most 100",
            });
        }
        Ok(())
    }

    /// Whether a running limit reached a warning (50 % or more), overdue included.
    pub fn is_warned(&self) -> bool {
        self.facts.warned >= 50
    }
}

/// A session record or part a receiver refuses: outside the bounds its host keeps.
fn session_invalid(_error: SessionError) -> DomainError {
    DomainError::FieldInvalid {
        field: "session",
        reason: "not a session record as an office makes it",
    }
}

/// A review names another case than the one it reviews.
fn distinct(case_id: &CaseId, review_id: &CaseId) -> Result<(), DomainError> {
    if case_id == review_id {
        return Err(DomainError::FieldInvalid {
            field: "review_id",
            reason: "a case cannot review itself",
        });
    }
    Ok(())
}

/// An order id: empty (an answer may not name its order) or one short line.
fn validate_order_id(order_id: &str) -> Result<(), DomainError> {
    if order_id.is_empty() {
        return Ok(());
    }
    validate::line("order_id", order_id, ORDER_ID_CHARS_MAX)
}

/// A case carried by a handoff or an escalation: its hash chain, and the registration's fields
/// it keeps as registration validated them.
fn validate_carried(case: &Case) -> Result<(), DomainError> {
    case.verify_chain()?;
    validate::line("category", &case.category, CATEGORY_CHARS_MAX)?;
    validate::text("summary", &case.summary, SUMMARY_CHARS_MAX)?;
    validate::line("officer", &case.first_officer, OFFICER_CHARS_MAX)?;
    validate::petitioner_key_format(&case.petitioner_key)?;
    case.validate_petitioners()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{register, Calendar, CaseKind, Channel, Context, Registration};

    fn case() -> Case {
        let office: OfficeCode = "530602".parse().unwrap();
        let calendar = Calendar::china();
        let registration = Registration {
            channel: Channel::Visit,
            petitioner_id: "530602198001010012".into(),
            name: "Zhang".into(),
            phone: Some("13800000000".into()),
            category: "housing".into(),
            summary: "The roof leaks.".into(),
            location: None,
            officer: "registrar".into(),
            address: None,
        };
        let id = CaseId {
            office: office.clone(),
            year: 2026,
            seq: 1,
        };
        let key = crate::petitioner_key(b"secret", registration.petitioner_id.clear().unwrap());
        let context = Context::new(&office, 1_767_225_600_000, &calendar);
        register(id, registration, key, CaseKind::Original, &context).unwrap()
    }

    /// A document's case id is read without decoding the case, in both formats.
    #[test]
    fn a_document_names_its_case() {
        let case = case();
        assert_eq!(CaseDocument::of(&case).case_id(), Ok(case.id.clone()));
        let json = serde_json::to_vec(&case).unwrap();
        assert_eq!(CaseDocument::from_bytes(json).case_id(), Ok(case.id));
        assert!(CaseDocument::from_bytes(vec![2, 1]).case_id().is_err());
    }

    /// A handoff carrying only the case's header is refused: ownership moves with the history.
    #[test]
    fn a_handoff_carries_the_whole_history() {
        let (header, _) = case().into_header();
        let handoff = Body::Handoff {
            case: CaseDocument::of(&header),
        };
        assert_eq!(handoff.validate().unwrap_err().code(), "field_invalid");
        let escalation = Body::Escalation {
            level: ReviewLevel::Review,
            case: CaseDocument::of(&header),
        };
        assert_eq!(escalation.validate(), Ok(()));
    }

    /// Messages as offices make them pass; each field a hostile sender could stretch or forge
    /// is refused with the engine's own error.
    #[test]
    fn bodies_are_validated_as_the_engine_makes_them() {
        let case = case();
        let handoff = Body::Handoff {
            case: CaseDocument::of(&case),
        };
        assert_eq!(handoff.validate(), Ok(()));
        let summary = Summary::of(&case);
        assert_eq!(summary.validate(), Ok(()));

        let mut long_category = case.clone();
        long_category.category = "x".repeat(CATEGORY_CHARS_MAX + 1);
        let error = Body::Handoff {
            case: CaseDocument::of(&long_category),
        }
        .validate()
        .unwrap_err();
        assert_eq!(error.code(), "field_too_long");

        let mut forged = case.clone();
        if let Some(entry) = forged.history.first_mut() {
            entry.at += 1;
        }
        let error = Body::Escalation {
            level: ReviewLevel::Review,
            case: CaseDocument::of(&forged),
        }
        .validate()
        .unwrap_err();
        assert_eq!(error.code(), "chain_broken");

        let mut bad = summary.clone();
        bad.category = "c".repeat(5_000);
        assert_eq!(bad.validate().unwrap_err().code(), "field_too_long");
        let mut bad = summary.clone();
        bad.status = "owned".into();
        assert_eq!(bad.validate().unwrap_err().code(), "field_invalid");
        let mut bad = summary.clone();
        bad.petitioner_key = "not a key".into();
        assert_eq!(bad.validate().unwrap_err().code(), "invalid_petitioner_key");
        let mut bad = summary;
        bad.grade = Some("Z".into());
        assert_eq!(bad.validate().unwrap_err().code(), "invalid_grade");

        let order = |text: &str, due_days: u32| Body::SupervisionOrder {
            case_id: case.id.clone(),
            order_id: "5306-1".into(),
            text: text.into(),
            due_days,
        };
        assert_eq!(order("Report progress.", 10).validate(), Ok(()));
        let too_long = "x".repeat(SUPERVISION_TEXT_CHARS_MAX + 1);
        assert_eq!(
            order(&too_long, 10).validate().unwrap_err().code(),
            "field_too_long"
        );
        assert_eq!(order(" ", 10).validate().unwrap_err().code(), "field_empty");
        assert_eq!(
            order("Report.", 0).validate().unwrap_err().code(),
            "out_of_range"
        );

        let answer = |officer: &str| Body::SupervisionAnswer {
            case_id: case.id.clone(),
            order_id: String::new(),
            text: "In hand.".into(),
            officer: officer.into(),
        };
        assert_eq!(answer("li").validate(), Ok(()));
        assert_eq!(
            answer("l\u{7}i").validate().unwrap_err().code(),
            "field_invalid"
        );
    }
}
