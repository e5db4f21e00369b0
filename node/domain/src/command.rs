//! Commands on an existing case: what officers ask for, and the federation bookkeeping the node
//! applies when another office acknowledges, refuses or orders.

use crate::calendar::Millis;
use crate::codec::tagged_enum;
use crate::ids::{CaseId, OfficeCode};
use crate::model::{DeclineRoute, Grade, Opinion, ReviewLevel, Satisfaction};

tagged_enum! {
    /// One request to change a case. `decide` turns it into events or a typed refusal.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum CaseCommand tagged "command" {
        /// 受理: the reply clock (60 days) starts.
        Accept { officer: String },
        /// 不予受理, pointing the petitioner to a statutory route.
        Decline {
            route: DeclineRoute,
            officer: String,
        },
        /// 转送: start a handoff to the competent office (the case becomes in transit, read-only).
        Transfer { to: OfficeCode, officer: String },
        /// 交办: hand down to a descendant with a report-back limit of `due_days` (1..=90) days.
        Assign {
            to: OfficeCode,
            due_days: u32,
            officer: String,
        },
        /// 退回: the receiver hands it back within 5 working days of receipt.
        Return { reason: String, officer: String },
        /// Extend the reply limit once, by 1..=30 days, with a reason told to the petitioner.
        Extend {
            days: u32,
            reason: String,
            officer: String,
        },
        Reply {
            opinion: Opinion,
            text: String,
            officer: String,
        },
        /// The petitioner's evaluation of the reply.
        Evaluate { satisfaction: Satisfaction },
        /// 复查 of an original case's reply, or 复核 of a review case's; refused after re-review.
        RequestReview,
        /// Grade a major case with the four fixed points (四定), all required.
        SetGrade {
            grade: Grade,
            leader: String,
            department: String,
            plan: String,
            deadline: Millis,
        },
        /// The receiver committed the handoff: the sender's copy becomes a forwarding stub.
        HandoffAcked,
        /// The receiver refused the handoff: the sender owns the case again.
        HandoffRefused { reason: String },
        /// 督办: an ancestor's order, answered within `due_days` (1..=90) days. A new order replaces an
        /// open one.
        Supervise {
            from: OfficeCode,
            due_days: u32,
            text: String,
        },
        /// The written answer to the open supervision order.
        AnswerSupervision { text: String, officer: String },
        /// The level above registered the review (or re-review) this case asked for, as `review`:
        /// the link from this case to the one that reviews it.
        ReviewOpened { review: CaseId, level: ReviewLevel },
        /// The review (or re-review) case `review` decided: its opinion and text come back to the
        /// case it reviews. `is_final`: nothing can be asked after it (a re-review's decision, or
        /// a review whose re-review window lapsed).
        ReviewDecided {
            review: CaseId,
            level: ReviewLevel,
            opinion: Opinion,
            text: String,
            decided_at: Millis,
            is_final: bool,
        },
        /// A supervision order that followed the case here from the office that handed it on:
        /// `from` issued it at `ordered_at`, due by `due_by` (its clock is not restarted).
        FollowOrder {
            from: OfficeCode,
            text: String,
            ordered_at: Millis,
            due_by: Millis,
        },
        /// 回访: the office followed up with a dissatisfied petitioner; what was found.
        FollowUp { note: String, officer: String },
    }
}

impl CaseCommand {
    /// The snake_case command name (the serde tag).
    pub fn name(&self) -> &'static str {
        match self {
            CaseCommand::Accept { .. } => "accept",
            CaseCommand::Decline { .. } => "decline",
            CaseCommand::Transfer { .. } => "transfer",
            CaseCommand::Assign { .. } => "assign",
            CaseCommand::Return { .. } => "return",
            CaseCommand::Extend { .. } => "extend",
            CaseCommand::Reply { .. } => "reply",
            CaseCommand::Evaluate { .. } => "evaluate",
            CaseCommand::RequestReview => "request_review",
            CaseCommand::SetGrade { .. } => "set_grade",
            CaseCommand::HandoffAcked => "handoff_acked",
            CaseCommand::HandoffRefused { .. } => "handoff_refused",
            CaseCommand::Supervise { .. } => "supervise",
            CaseCommand::AnswerSupervision { .. } => "answer_supervision",
            CaseCommand::ReviewOpened { .. } => "review_opened",
            CaseCommand::ReviewDecided { .. } => "review_decided",
            CaseCommand::FollowOrder { .. } => "follow_order",
            CaseCommand::FollowUp { .. } => "follow_up",
        }
    }

    /// Commands only the federation protocol sends (never an officer).
    pub fn is_federation_only(&self) -> bool {
        matches!(
            self,
            CaseCommand::HandoffAcked
                | CaseCommand::HandoffRefused { .. }
                | CaseCommand::Supervise { .. }
                | CaseCommand::ReviewOpened { .. }
                | CaseCommand::ReviewDecided { .. }
                | CaseCommand::FollowOrder { .. }
        )
    }

    /// Bookkeeping that finishes a handoff: the only commands a case in transit takes.
    pub fn is_handoff_outcome(&self) -> bool {
        matches!(
            self,
            CaseCommand::HandoffAcked | CaseCommand::HandoffRefused { .. }
        )
    }
}
