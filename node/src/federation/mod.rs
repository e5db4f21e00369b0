//! The federation between offices, inside a host: the pure link protocol ([`link`]) and what
//! drives it — the outbox pump (one worker per link), the Deliver service (and the subtree
//! query), the directory of where offices answer, and drills' faults. The outbox and the inbox
//! themselves are state machine data ([`crate::machine`]): a case change and the messages it
//! causes commit in one log entry.
//!
//! Delivery: the sender's leader pumps a link's messages in sequence order; the receiver checks
//! the batch, commits it through its own Raft (its inbox watermark makes a redelivery a no-op)
//! and only then acks; the sender commits the ack and drops the messages. Exactly-once effect,
//! FIFO per link.

pub mod directory;
pub mod faults;
pub mod link;
pub mod pump;
pub mod query;
pub mod service;
