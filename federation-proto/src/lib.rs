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

/// Metadata key on an UNAVAILABLE answer that refused a call only to shed load (the office is
/// healthy, e.g. its audit log is catching up): the call may be repeated after this many
/// milliseconds. A client that sees it retries; one that does not treats the office as down.
pub const RETRY_AFTER_MS_KEY: &str = "liandong-retry-after-ms";

/// An UNAVAILABLE status that asks the caller to repeat the call after `after_ms`.
pub fn retry_later(message: impl Into<String>, after_ms: u64) -> tonic::Status {
    let mut status = tonic::Status::unavailable(message);
    if let Ok(value) = after_ms.to_string().parse() {
        status.metadata_mut().insert(RETRY_AFTER_MS_KEY, value);
    }
    status
}

/// How long `status` asks its caller to wait before repeating the call, if it asks at all.
pub fn retry_after(status: &tonic::Status) -> Option<std::time::Duration> {
    if status.code() != tonic::Code::Unavailable {
        return None;
    }
    let value = status.metadata().get(RETRY_AFTER_MS_KEY)?.to_str().ok()?;
    value.parse().ok().map(std::time::Duration::from_millis)
}
