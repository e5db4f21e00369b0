//! liandong-node: one host process carrying replicas of one or more offices.
//!
//! Layers, each using only those below it: `raft` (the log's types and the replica transport),
//! `store` (RocksDB: the log store, the write transaction, the value codec), `machine` (applying
//! a log entry: cases and the federation's bookkeeping, every key it writes), `replica` (one
//! office's Raft and its write and read paths), `federation` (the link protocol, the pump, the
//! Deliver service), `api` and `host` on top.
//!
//! `domain` (the pure case engine) lives in its own crate, `liandong-domain`, so that the
//! compiler proves it does no IO.
pub use liandong_domain as domain;

pub mod api;
pub mod clock;
pub mod failover;
pub mod federation;
pub mod health;
pub mod host;
pub mod live_tls;
pub mod machine;
pub mod manifest;
pub mod metrics;
pub mod notify;
pub mod personal;
pub mod public;
pub mod quiesce;
pub mod raft;
pub mod replica;
pub mod secrets;
pub mod store;
pub mod tls;
pub mod trace;
pub mod worker;
