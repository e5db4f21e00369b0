//! liandong-node: one host process carrying replicas of one or more offices.
//!
//! `domain` (the pure case engine) lives in its own crate, `liandong-domain`, so that the
//! compiler proves it does no IO.
pub use liandong_domain as domain;

pub mod api;
pub mod clock;
pub mod failover;
pub mod federation;
pub mod host;
pub mod manifest;
pub mod metrics;
pub mod raft;
pub mod replica;
pub mod store;
pub mod tls;
