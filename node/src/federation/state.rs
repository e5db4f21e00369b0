//! What the federation keeps in an office's state machine, and under which keys (relative to
//! the office prefix, beside the cases).

use liandong_domain::message::Envelope;
use liandong_domain::{CaseId, Millis, OfficeCode};
use serde::{Deserialize, Serialize};

/// Messages an office may hold unsent before it refuses new work that would add more
/// (back-pressure, never a drop).
pub const OUTBOX_LEN_MAX: u64 = 500_000;
/// Envelopes in one Deliver batch.
pub const DELIVER_BATCH_MAX: usize = 256;

pub const OUTBOX: &[u8] = b"outbox/";
pub const LINK: &[u8] = b"link/";
pub const INBOX: &[u8] = b"inbox/";
pub const REFUSED: &[u8] = b"refused/";
pub const INDEX: &[u8] = b"index/";
pub const WATERMARK: &[u8] = b"watermark/";
pub const ORDER: &[u8] = b"order/";
pub const ORDER_BY_CASE: &[u8] = b"order-case/";
pub const ORDER_SEQ: &[u8] = b"order-seq";

fn join(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// `outbox/<to>/<seq>`: sorted by link, then sequence.
pub fn outbox(to: &OfficeCode, seq: u64) -> Vec<u8> {
    join(&[OUTBOX, to.as_str().as_bytes(), b"/", &seq.to_be_bytes()])
}

pub fn outbox_link(to: &OfficeCode) -> Vec<u8> {
    join(&[OUTBOX, to.as_str().as_bytes(), b"/"])
}

pub fn link(to: &OfficeCode) -> Vec<u8> {
    join(&[LINK, to.as_str().as_bytes()])
}

pub fn inbox(from: &OfficeCode) -> Vec<u8> {
    join(&[INBOX, from.as_str().as_bytes()])
}

pub fn refused(from: &OfficeCode, seq: u64) -> Vec<u8> {
    join(&[REFUSED, from.as_str().as_bytes(), b"/", &seq.to_be_bytes()])
}

pub fn index(case_id: &CaseId) -> Vec<u8> {
    join(&[INDEX, case_id.to_string().as_bytes()])
}

pub fn watermark(child: &OfficeCode) -> Vec<u8> {
    join(&[WATERMARK, child.as_str().as_bytes()])
}

pub fn order(order_id: &str) -> Vec<u8> {
    join(&[ORDER, order_id.as_bytes()])
}

pub fn order_by_case(case_id: &CaseId) -> Vec<u8> {
    join(&[ORDER_BY_CASE, case_id.to_string().as_bytes()])
}

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

/// A message the receiver refused: it changed nothing there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub seq: u64,
    pub code: String,
    pub reason: String,
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

/// A stored outbox entry.
pub type OutboxEntry = Envelope;
