//! Records the state machine keeps beside the cases: the two sides of each federation link, and
//! the supervision orders an office issued. Stored as versioned JSON ([`crate::store::codec`]).

use liandong_domain::{CaseId, Millis, OfficeCode};
use serde::{Deserialize, Serialize};

/// The sending side of one link.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkOut {
    /// The last sequence number given to a message on this link.
    pub last_seq: u64,
    /// Every message with a sequence number up to this one is acknowledged (and dropped).
    pub acked_through: u64,
}

impl LinkOut {
    pub fn pending(&self) -> u64 {
        self.last_seq.saturating_sub(self.acked_through)
    }
}

/// The receiving side of one link.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkIn {
    /// Every message up to this sequence number was applied (or refused) exactly once.
    pub applied_through: u64,
    /// How many messages this link delivered in all (exactly-once accounting for `verify`).
    pub applied: u64,
}

/// A supervision order as the issuing office keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub order_id: String,
    pub case_id: CaseId,
    /// The office holding the case when the order was issued.
    pub to: OfficeCode,
    pub text: String,
    pub ordered_at: Millis,
    pub due_by: Millis,
    pub answer: Option<OrderAnswer>,
    /// Set when the receiver refused the order (for example: it no longer holds the case).
    pub refused: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderAnswer {
    pub text: String,
    pub officer: String,
    pub answered_at: Millis,
}

impl OrderRecord {
    /// Overdue at `now`: unanswered past its due date (flagged at the issuing office).
    pub fn overdue_at(&self, now: Millis) -> bool {
        self.answer.is_none() && self.refused.is_none() && now > self.due_by
    }
}
