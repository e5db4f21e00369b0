//! Liandong's wire protocol: the officer API, the raft transport between replicas, host
//! administration and the federation protocol between offices, generated with tonic from the
//! `.proto` files under `proto/`, plus conversions to the case engine's types.

/// Generated messages and services of package `liandong.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("liandong.v1");
}

pub mod convert;
pub mod envelope;

/// The largest gRPC message any Liandong endpoint sends or accepts (a raft batch, a snapshot
/// chunk, a federation batch): bounded so one peer cannot exhaust another's memory.
pub const MESSAGE_BYTES_MAX: usize = 16 * 1024 * 1024;
