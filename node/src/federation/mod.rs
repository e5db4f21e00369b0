//! The federation protocol inside a host: the transactional outbox and the inbox (applied in
//! the state machine with the case change that caused them), the pump that delivers outboxes to
//! other offices' leaders, the Deliver service, and link faults for drills.
//!
//! Delivery: the sender's leader pumps a link's messages in sequence order; the receiver commits
//! them through its own Raft (its inbox watermark makes a redelivery a no-op) and only then acks;
//! the sender commits the ack and drops the messages. Exactly-once effect, FIFO per link.

pub mod apply;
pub mod faults;
pub mod pump;
pub mod service;
pub mod state;
