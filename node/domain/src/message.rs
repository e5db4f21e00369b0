//! Federation messages: what one office tells another. Pure data; the node's outbox carries them
//! and the receiver's state machine applies them. A message is identified by its link and
//! sequence number, `(from, to, seq)`, and applies at most once (the receiver's inbox watermark).

use serde::{Deserialize, Serialize};

use crate::{Case, CaseId, Millis, OfficeCode, ReviewLevel};

/// Longest text a supervision order or answer carries.
pub const SUPERVISION_TEXT_CHARS_MAX: usize = 2_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub from: OfficeCode,
    pub to: OfficeCode,
    /// Per-link sequence number, from 1, without gaps.
    pub seq: u64,
    pub sent_at: Millis,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    /// A transfer, assignment or return: the sender's copy, in transit to the receiver. Personal
    /// data moves with ownership.
    Handoff { case: Box<Case> },
    /// Review or re-review: the receiver registers a linked case with its own 30-day clock.
    Escalation { level: ReviewLevel, case: Box<Case> },
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
}

impl Body {
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Handoff { .. } => "handoff",
            Body::Escalation { .. } => "escalation",
            Body::SupervisionOrder { .. } => "supervision_order",
            Body::SupervisionAnswer { .. } => "supervision_answer",
            Body::IndexUpdate { .. } => "index_update",
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
            changed_at: case
                .history
                .last()
                .map(|entry| entry.at)
                .unwrap_or(case.registered_at),
            version: u32::try_from(case.history.len()).unwrap_or(u32::MAX),
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

    /// A forwarding stub or a copy in transit is not the owner's truth.
    pub fn is_owner_copy(&self) -> bool {
        self.status != "forwarded"
    }
}
