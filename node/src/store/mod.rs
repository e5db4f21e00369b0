//! RocksDB storage of a host, and nothing above it: one database, every replica's keys under its
//! office's prefix; the raft log store; the write transaction the state machine applies through;
//! the versioned value codec; the disk failpoint. What the state machine keeps, and under which
//! keys, is `machine`'s. Raft log writes are synced (fsync of the WAL) before openraft
//! hears they are durable; state machine writes ride the same WAL and are recovered from it
//! after a crash.

// openraft's trait methods dictate `StorageError` (large) as the error type; our helpers return
// the same type so that `?` needs no conversion.
#![allow(clippy::result_large_err)]

pub mod codec;
pub mod failpoint;
pub mod keys;
mod log;
pub mod txn;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use failpoint::DiskFault;
pub use log::LogStore;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, Options, WriteBatch, WriteOptions, DB,
};
pub use txn::Txn;

use crate::raft::types::StorageError;

/// The RocksDB of one host, shared by all the replicas it carries.
#[derive(Clone)]
pub struct HostDb {
    db: Arc<DB>,
    /// Where snapshot files live: `snapshots/` beside the database folder, one folder per office.
    snapshot_root: PathBuf,
    /// The host's storage failpoint (see [`failpoint`]): one flag for the whole database, as a
    /// full disk is one for every replica on it.
    fault: DiskFault,
    /// The first write of this database that failed, in RocksDB's words. openraft may report a
    /// replica's stop in words of its own ("channel closed" when its state-machine worker died
    /// of the failure first); the operator is told this instead.
    failure: Arc<std::sync::Mutex<Option<String>>>,
}

impl HostDb {
    pub fn open(path: &Path) -> Result<HostDb, rocksdb::Error> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        // Bounded resources per host: many replicas share one memtable budget and one WAL.
        options.set_max_open_files(512);
        options.set_keep_log_file_num(4);
        options.set_max_background_jobs(2);
        let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let families = [keys::CF_LOG, keys::CF_META, keys::CF_SM]
            .into_iter()
            .map(|name| ColumnFamilyDescriptor::new(name, family_options(name, &cache)));
        let db = DB::open_cf_descriptors(&options, path, families)?;
        let snapshot_root = path.parent().unwrap_or(path).join("snapshots");
        Ok(HostDb {
            db: Arc::new(db),
            snapshot_root,
            fault: DiskFault::default(),
            failure: Arc::default(),
        })
    }

    /// True if opening failed because another process (or a previous one, still exiting)
    /// holds the database's lock file.
    pub fn is_lock_held(error: &rocksdb::Error) -> bool {
        // RocksDB names the lock file in both cases ("While lock file: <db>/LOCK: Resource
        // temporarily unavailable", "lock hold by current process ...: <db>/LOCK: ..."); a
        // bare "lock" would also match other errors ("block checksum mismatch").
        error.to_string().contains("LOCK:")
    }

    /// The folder of one office's snapshot files (made by the caller when it writes one).
    pub fn snapshot_dir(&self, office: &str) -> PathBuf {
        self.snapshot_root.join(office)
    }

    /// For reads. Writes go through [`HostDb::write`], which the failpoint guards.
    pub fn raw(&self) -> &DB {
        &self.db
    }

    /// The host's storage failpoint; the host feeds it from the marker file.
    pub fn disk_fault(&self) -> &DiskFault {
        &self.fault
    }

    /// Every write of every replica goes through here, one batch at a time. A batch is one
    /// atomic WAL record: when the write fails (the failpoint, ENOSPC, EIO, a failed fsync)
    /// nothing of it becomes visible, now or after a restart, and the caller hands openraft a
    /// fatal storage error, so the replica stops rather than acknowledging anything more.
    /// `sync` fsyncs the WAL before returning (raft log, vote); without it the batch rides the
    /// WAL and is recovered from the raft log after a crash (state machine, commit mark).
    pub(crate) fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StorageError> {
        let written = self.fault.check().map_err(write_io_err).and_then(|()| {
            let mut options = WriteOptions::default();
            options.set_sync(sync);
            blocking(|| self.db.write_opt(batch, &options)).map_err(write_err)
        });
        if let Err(error) = &written {
            let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
            failure.get_or_insert_with(|| error.to_string());
        }
        written
    }

    /// The first write that failed since the database was opened, if one did.
    pub fn write_failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        // The three families are created at open; a missing one is a programming error.
        self.db
            .cf_handle(name)
            .expect("column family created at open")
    }

    /// Flushes memtables and syncs the WAL: used at graceful shutdown.
    pub fn flush(&self) -> Result<(), rocksdb::Error> {
        self.db.flush_wal(true)?;
        for name in [keys::CF_LOG, keys::CF_META, keys::CF_SM] {
            self.db.flush_cf(self.cf(name))?;
        }
        Ok(())
    }
}

/// The block cache one host's families share (data, index and filter blocks): bounded, whatever
/// the number of replicas and files.
const BLOCK_CACHE_BYTES: usize = 64 << 20;

/// A family's options: table files with a bloom filter per file (a point read of a key that is
/// not there, as a new request id or case id, skips the file without reading its index), index
/// and filter blocks in the shared cache (memory bounded by it, the newest files' pinned), and
/// for the state machine's family a whole-key bloom filter in the memtable too. Options only:
/// the files' format is the one every build reads, and files written without a filter are
/// read as before.
fn family_options(name: &str, cache: &Cache) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_bloom_filter(10.0, false);
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    let mut options = Options::default();
    options.set_block_based_table_factory(&table);
    if name == keys::CF_SM {
        options.set_memtable_whole_key_filtering(true);
        options.set_memtable_prefix_bloom_ratio(0.05);
    }
    options
}

/// Runs blocking storage IO without stalling the async runtime's other tasks.
pub(crate) fn blocking<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

pub(crate) fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageError::from_io_error(
        openraft::ErrorSubject::Store,
        openraft::ErrorVerb::Read,
        std::io::Error::other(e.to_string()),
    )
}

pub(crate) fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    let message = e.to_string();
    // RocksDB reports errno as text; keep the kind an operator (and a test) can match on.
    let kind = if message.contains("No space left on device") {
        std::io::ErrorKind::StorageFull
    } else {
        std::io::ErrorKind::Other
    };
    write_io_err(std::io::Error::new(kind, message))
}

pub(crate) fn write_io_err(e: std::io::Error) -> StorageError {
    StorageError::from_io_error(openraft::ErrorSubject::Store, openraft::ErrorVerb::Write, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// openraft may report a replica's stop in words of its own ("channel closed"); the host
    /// names the storage's: the first failed write is kept, and later writes do not replace it.
    #[test]
    fn the_first_failed_write_is_kept_in_the_storages_words() {
        let dir = tempfile::tempdir().unwrap();
        let db = HostDb::open(&dir.path().join("db")).unwrap();
        let mut batch = WriteBatch::default();
        batch.put_cf(db.cf(keys::CF_META), b"k", b"v");
        db.write(batch, true).unwrap();
        assert_eq!(db.write_failure(), None);

        db.disk_fault().set(true);
        let error = db.write(WriteBatch::default(), true).unwrap_err();
        let failure = db.write_failure().expect("the failed write is kept");
        assert!(failure.contains(failpoint::INJECTED_MESSAGE), "{failure}");
        assert_eq!(failure, error.to_string());

        db.disk_fault().set(false);
        db.write(WriteBatch::default(), true).unwrap();
        assert_eq!(db.write_failure(), Some(failure));
    }
}
