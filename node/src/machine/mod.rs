//! The state machine of an office: the one place that applies a log entry, and the one owner of
//! every key it writes. The case engine (`liandong_domain`) decides; this module keeps what was
//! decided, with the federation's bookkeeping, in one RocksDB batch per `apply` call, the same
//! on every replica.
//!
//! - `state_machine`: [`StateMachineStore`], openraft's state machine over RocksDB: applying,
//!   snapshots, and the reads the APIs, the pump and the Deliver handler make.
//! - `snapshot`: snapshots as files, streamed from a consistent view and into RocksDB.
//! - `backup`: an office's snapshot as a backup file, and its restore into a fresh replica set.
//! - `migrate`: opening a state stored by the build before the binary codec.
//! - `apply`: dispatch of every operation, refusals.
//! - `requests`: request deduplication, scoped by caller, and its records' expiry.
//! - `cases`: registering, officers' commands, deadline ticks, and `commit`, the one way a case
//!   change is committed with its events and the messages it sends; a case stored as a header
//!   and its history entries.
//! - `outbox`: what a case change sends (the transactional outbox), acknowledgements.
//! - `notify`: the SMS notices a case change makes (the notification outbox), and their sending.
//! - `inbox`: a Deliver batch applied, and the rules on receipt.
//! - `orders`: supervision orders issued and answered.
//! - `departments`: departments, their tasks on cases, joint meetings, intake points, proxies.
//! - `sessions`: joint video reception sessions, their bookings and linked cases.
//! - `notices`: escalating notices (三级抄告) and red cards (红牌).
//! - `reports`: scheduled supervision reports (日监测、周调度、月通报), made by the tick.
//! - `officers`: officer accounts; `audit`: the hash-chained audit log.
//! - `records`: the link and order records; [`keys`]: every key.
//! - `anchors`: the office's case heads anchored at its parent (a Merkle root), and its
//!   children's anchors kept.
//! - `reseal`: personal data an earlier build stored in clear, sealed where it lies at open.

pub mod anchors;
mod apply;
pub mod audit;
pub mod backup;
mod cases;
pub mod departments;
mod inbox;
pub mod keys;
mod migrate;
pub mod notices;
pub mod notify;
pub mod officers;
mod orders;
mod outbox;
pub mod query_keys;
mod records;
pub mod reports;
mod requests;
pub mod reseal;
pub mod seal;
pub mod sessions;
pub mod snapshot;
mod state_machine;
pub mod stats;
#[cfg(test)]
pub(crate) mod tests;
pub mod unadmitted;

use liandong_domain::OfficeCode;
use serde::de::DeserializeOwned;

pub use apply::{apply_request, ApplyContext, ApplyError};
pub use cases::TICK_CASES_MAX;
pub use outbox::{wire_bytes, ENVELOPE_BYTES_MAX, OUTBOX_LEN_MAX};
pub use records::{LinkIn, LinkOut, OrderAnswer, OrderRecord};
pub use requests::{
    check_request_id, NamedRequestRecord, RequestRecord, CALLER_BYTES_MAX, PRUNE_RECORDS_MAX,
    REQUEST_ID_BYTES_MAX, RETRY_HORIZON_MS,
};
pub use state_machine::{AppliedState, StateMachineStore};

use crate::raft::types::Refusal;
use crate::store::codec::decode;
use crate::store::keys::{prefix_end, KeyValues};
use crate::store::Txn;

/// Reads one office's state machine keys: from the transaction being applied (its own writes
/// included), or from what is applied.
pub(crate) trait Read {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, rocksdb::Error>;
    /// Keys from `start` (inclusive) to `end` (exclusive), at most `limit`.
    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<KeyValues, rocksdb::Error>;
}

impl Read for Txn<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, rocksdb::Error> {
        Txn::get(self, key)
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<KeyValues, rocksdb::Error> {
        Txn::scan(self, start, end, limit)
    }
}

impl Read for StateMachineStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, rocksdb::Error> {
        StateMachineStore::get(self, key)
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<KeyValues, rocksdb::Error> {
        StateMachineStore::scan_range(self, start, end, limit)
    }
}

/// The stored record under `key`, or its default when there is none.
fn get_or_default<T: DeserializeOwned + Default>(
    reader: &impl Read,
    key: &[u8],
) -> Result<T, ApplyError> {
    match reader.get(key)? {
        Some(bytes) => Ok(decode(&bytes)?),
        None => Ok(T::default()),
    }
}

/// The messages from `from` numbered `first..=last` that this office committed as refused
/// (a scan: refusals are rare, the range may be long).
fn refusals(
    reader: &impl Read,
    from: &OfficeCode,
    first: u64,
    last: u64,
) -> Result<Vec<Refusal>, ApplyError> {
    if first > last {
        return Ok(Vec::new());
    }
    let start = keys::refused(from, first);
    let end = match last.checked_add(1) {
        Some(next) => keys::refused(from, next),
        None => prefix_end(&keys::refused_link(from)),
    };
    reader
        .scan(&start, &end, usize::MAX)?
        .iter()
        .map(|(_, value)| Ok(decode::<Refusal>(value)?))
        .collect()
}

/// One side of a difference between two sorted lists ([`sorted_diff`]).
pub(crate) enum Diff<T> {
    /// In the list before, not after.
    Gone(T),
    /// In the list after, not before.
    New(T),
}

/// Walks two ascending lists together and hands `each` what only one of them holds, in key
/// order; what both hold is passed over.
pub(crate) fn sorted_diff<T: Ord>(
    before: impl IntoIterator<Item = T>,
    after: impl IntoIterator<Item = T>,
    mut each: impl FnMut(Diff<T>),
) {
    let (mut before, mut after) = (before.into_iter().peekable(), after.into_iter().peekable());
    loop {
        match (before.peek(), after.peek()) {
            (Some(gone), Some(new)) if gone == new => {
                before.next();
                after.next();
            }
            (Some(gone), Some(new)) if gone < new => {
                each(Diff::Gone(before.next().expect("peeked")))
            }
            (Some(_), None) => each(Diff::Gone(before.next().expect("peeked"))),
            (_, Some(_)) => each(Diff::New(after.next().expect("peeked"))),
            (None, None) => break,
        }
    }
}
