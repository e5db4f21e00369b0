//! The raft log of one replica, with its vote and committed/purged marks.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogReader};
use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch};

use super::keys::{self, CF_LOG, CF_META};
use super::{codec, read_err, HostDb};
use crate::raft::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// Upper bound on entries returned by one log read (bounds memory of a replication batch).
pub const LOG_READ_ENTRIES_MAX: usize = 4096;

#[derive(Clone)]
pub struct LogStore {
    db: HostDb,
    office: String,
    prefix: Vec<u8>,
}

impl LogStore {
    pub fn new(db: HostDb, office: &str) -> LogStore {
        LogStore {
            db,
            office: office.to_string(),
            prefix: keys::office_prefix(office),
        }
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, StorageError> {
        let cf = self.db.cf(CF_META);
        match self
            .db
            .raw()
            .get_cf(cf, keys::meta_key(&self.office, name))
            .map_err(read_err)?
        {
            None => Ok(None),
            Some(bytes) => codec::decode(&bytes).map(Some).map_err(read_err),
        }
    }

    fn put_meta_synced<T: serde::Serialize>(
        &self,
        name: &str,
        value: &T,
    ) -> Result<(), StorageError> {
        let cf = self.db.cf(CF_META);
        let mut batch = WriteBatch::default();
        batch.put_cf(cf, keys::meta_key(&self.office, name), codec::encode(value));
        self.write_synced(batch)
    }

    fn write_synced(&self, batch: WriteBatch) -> Result<(), StorageError> {
        self.db.write(batch, true)
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId>, StorageError> {
        let cf = self.db.cf(CF_LOG);
        let end = keys::prefix_end(&self.prefix);
        let mut iter = self
            .db
            .raw()
            .iterator_cf(cf, IteratorMode::From(&end, Direction::Reverse));
        match iter.next() {
            None => Ok(None),
            Some(item) => {
                let (key, value) = item.map_err(read_err)?;
                if !key.starts_with(&self.prefix) {
                    return Ok(None);
                }
                let entry: Entry = codec::decode(&value).map_err(read_err)?;
                Ok(Some(entry.log_id))
            }
        }
    }
}

fn range_start(range: &impl RangeBounds<u64>) -> u64 {
    match range.start_bound() {
        Bound::Included(&n) => n,
        Bound::Excluded(&n) => n.saturating_add(1),
        Bound::Unbounded => 0,
    }
}

fn range_contains_end(range: &impl RangeBounds<u64>, index: u64) -> bool {
    match range.end_bound() {
        Bound::Included(&n) => index <= n,
        Bound::Excluded(&n) => index < n,
        Bound::Unbounded => true,
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let cf = self.db.cf(CF_LOG);
        let start = keys::log_key(&self.office, range_start(&range));
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(keys::prefix_end(&self.prefix));
        let iter = self.db.raw().iterator_cf_opt(
            cf,
            options,
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut entries = Vec::new();
        for item in iter {
            let (key, value) = item.map_err(read_err)?;
            let Some(index) = keys::log_index_of(&key, self.prefix.len()) else {
                break;
            };
            if !range_contains_end(&range, index) || entries.len() >= LOG_READ_ENTRIES_MAX {
                break;
            }
            entries.push(codec::decode::<Entry>(&value).map_err(read_err)?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.get_meta("purged")?;
        let last_log_id = self.last_entry_log_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.put_meta_synced("vote", vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.get_meta("vote")
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced: losing it only means re-learning the commit index from the leader.
        let cf = self.db.cf(CF_META);
        let mut batch = WriteBatch::default();
        batch.put_cf(
            cf,
            keys::meta_key(&self.office, "committed"),
            codec::encode(&committed),
        );
        self.db.write(batch, false)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.get_meta::<Option<LogId>>("committed")?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let cf = self.db.cf(CF_LOG);
        let mut batch = WriteBatch::default();
        for entry in entries {
            batch.put_cf(
                cf,
                keys::log_key(&self.office, entry.log_id.index),
                codec::encode(&entry),
            );
        }
        // Durable before acknowledged: the WAL is fsynced. Concurrent replicas' appends are
        // group-committed by RocksDB's write thread into one sync. A failed append (full disk,
        // failed fsync) is reported both ways openraft listens: the callback and the returned
        // error, which stops this replica before it could vote or acknowledge on a log it does
        // not have.
        let result = self.write_synced(batch);
        let io_result = result
            .as_ref()
            .map(|_| ())
            .map_err(|e| std::io::Error::other(e.to_string()));
        callback.log_io_completed(io_result);
        result
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let cf = self.db.cf(CF_LOG);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            cf,
            keys::log_key(&self.office, log_id.index),
            keys::prefix_end(&self.prefix),
        );
        self.write_synced(batch)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purge mark first: a crash between the two leaves extra entries, never a gap.
        self.put_meta_synced("purged", &log_id)?;
        let cf = self.db.cf(CF_LOG);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            cf,
            keys::log_key(&self.office, 0),
            keys::log_key(&self.office, log_id.index + 1),
        );
        self.write_synced(batch)
    }
}
