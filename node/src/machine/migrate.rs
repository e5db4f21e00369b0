//! Opening a state machine stored by the build before the binary codec (format 1, JSON). Every
//! value of format 1 stays readable where it is (the codec reads both formats); what cannot be
//! read value by value is converted here, once per replica, before its Raft starts:
//!
//! - a case was one JSON document with its whole history: it is split into its header and its
//!   history entries ([`super::cases`]);
//! - a request record named only the case its id produced, with the reply beside it: it becomes
//!   a scoped record ([`super::requests`]) made when the reply's last entry was, so it expires
//!   a retry horizon after the request, as a record of this build would;
//! - the current snapshot was one JSON value in the meta column family: it is dropped (openraft
//!   builds a file snapshot when it needs one).
//!
//! Each step is a function of the stored data alone, so replicas that open at different log
//! indexes reach the same state. A meta mark records that the office's state is in this build's
//! layout; a crash midway leaves it unset, and the steps run again (each skips what is done).

// Errors are openraft's `StorageError` (large), as for every storage step a replica's open runs.
#![allow(clippy::result_large_err)]

use liandong_domain::{Case, CaseId};
use rocksdb::WriteBatch;

use super::requests::{self, RequestRecord};
use super::state_machine::SNAPSHOT_RECORD;
use super::{keys, Read};
use crate::raft::types::StorageError;
use crate::store::codec::{self, decode, FORMAT_BINARY};
use crate::store::keys::{meta_key, CF_META};
use crate::store::{read_err, HostDb, Txn};

/// Meta key of the mark: the value is the format of the office's state layout.
const LAYOUT_MARK: &str = "layout";
/// Cases converted per RocksDB batch (a batch holds their histories).
const CASES_PER_BATCH: usize = 256;

/// Brings the office's state to this build's layout; does nothing when it is already there.
pub(super) fn open(db: &HostDb, office: &str) -> Result<(), StorageError> {
    let mark = meta_key(office, LAYOUT_MARK);
    let meta = db.cf(CF_META);
    if db.raw().get_cf(meta, &mark).map_err(read_err)?.as_deref() == Some(&[FORMAT_BINARY]) {
        return Ok(());
    }
    let split = split_cases(db, office)?;
    let converted = convert_request_records(db, office)?;
    let mut batch = WriteBatch::default();
    let snapshot = meta_key(office, SNAPSHOT_RECORD);
    if let Some(bytes) = db.raw().get_cf(meta, &snapshot).map_err(read_err)? {
        if codec::format_of(&bytes) != Some(FORMAT_BINARY) {
            batch.delete_cf(meta, &snapshot);
        }
    }
    batch.put_cf(meta, &mark, [FORMAT_BINARY]);
    db.write(batch, true)?;
    if split + converted > 0 {
        tracing::info!(
            office,
            cases = split,
            request_records = converted,
            "converted the state stored by the previous build"
        );
    }
    Ok(())
}

/// Splits every case stored as one document with its history; returns how many.
fn split_cases(db: &HostDb, office: &str) -> Result<usize, StorageError> {
    let mut split = 0;
    let mut from = keys::CASE.to_vec();
    let end = crate::store::keys::prefix_end(keys::CASE);
    loop {
        let mut txn = Txn::new(db, office);
        let page = txn.scan(&from, &end, CASES_PER_BATCH).map_err(read_err)?;
        let Some((last, _)) = page.last() else {
            return Ok(split);
        };
        from = [last.as_slice(), b"\0"].concat();
        for (key, value) in page {
            let case = Case::from_bytes(&value).map_err(read_err)?;
            if case.history.is_empty() {
                continue;
            }
            let id = case.id.to_string();
            let (mut header, entries) = case.into_header();
            // Version 1 knew no groups: the split case is a version-2 one.
            header.v = liandong_domain::CASE_VERSION_SINGLE;
            for entry in &entries {
                txn.put(keys::history(&id, entry.seq), codec::encode(entry));
            }
            txn.put(key, codec::encode(&header));
            split += 1;
        }
        db.write(txn.into_batch(), false)?;
    }
}

/// Converts format 1's request records (`request/<id>` naming a case, `reply/<id>` the case
/// document answered) into scoped records of the empty caller; returns how many.
fn convert_request_records(db: &HostDb, office: &str) -> Result<usize, StorageError> {
    let mut txn = Txn::new(db, office);
    let legacy = txn
        .scan(
            keys::LEGACY_REQUEST,
            &crate::store::keys::prefix_end(keys::LEGACY_REQUEST),
            usize::MAX,
        )
        .map_err(read_err)?;
    let mut converted = 0;
    for (key, value) in legacy {
        txn.delete(key.clone());
        let request_id = String::from_utf8_lossy(&key[keys::LEGACY_REQUEST.len()..]).to_string();
        let reply_key = keys::legacy_reply(&request_id);
        let reply = Read::get(&txn, &reply_key).map_err(read_err)?;
        txn.delete(reply_key);
        // A request without its reply dates from before replies were kept: it cannot be
        // answered as the first time, and its retry horizon is long past.
        let Some(reply) = reply else {
            continue;
        };
        let case_id: CaseId = decode::<String>(&value)
            .map_err(read_err)?
            .parse()
            .map_err(read_err)?;
        let replied = Case::from_bytes(&reply).map_err(read_err)?;
        let record = RequestRecord {
            operation: String::new(),
            case_id,
            at: replied.chain_head().at,
            reply,
        };
        requests::put(&mut txn, keys::retry("", &request_id), &record);
        converted += 1;
    }
    for (key, _) in txn
        .scan(
            keys::LEGACY_REPLY,
            &crate::store::keys::prefix_end(keys::LEGACY_REPLY),
            usize::MAX,
        )
        .map_err(read_err)?
    {
        txn.delete(key);
    }
    db.write(txn.into_batch(), false)?;
    Ok(converted)
}
