//! RocksDB storage of a host, and nothing above it: one database, every replica's keys under its
//! office's prefix; the raft log store; the write transaction the state machine applies through;
//! the versioned value codec; the disk failpoint. What the state machine keeps, and under which
//! keys, is `machine`'s. Raft log writes are synced (fsync of the WAL) before openraft
//! hears they are durable: an append is written at once (readable) and made durable by the
//! host's flusher, one WAL sync for every append pending on the host, whatever its office;
//! state machine writes ride the same WAL and are recovered from it after a crash.

// openraft's trait methods dictate `StorageError` (large) as the error type; our helpers return
// the same type so that `?` needs no conversion.
#![allow(clippy::result_large_err)]

pub mod codec;
pub mod failpoint;
pub mod keys;
mod log;
pub mod txn;

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use failpoint::DiskFault;
pub use log::LogStore;
use rocksdb::{ColumnFamilyDescriptor, Options, WriteBatch, WriteOptions, DB};
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
    failure: Arc<Mutex<Option<String>>>,
    /// Makes the host's unsynced raft-log appends durable ([`HostDb::write_then_sync`]).
    flusher: Arc<Flusher>,
}

/// Appends one flusher round makes durable at most; more wait for the next round.
pub const FLUSH_ROUND_MAX: usize = 1_024;
/// Appends waiting for the flusher, per host; an append beyond it waits for room.
pub const FLUSH_WAITING_MAX: usize = 4_096;

/// What to do once an append is durable, or is known never to be acknowledged.
pub(crate) type Synced = Box<dyn FnOnce(Result<(), StorageError>) + Send>;

/// One thread per host database that makes raft-log appends durable: it takes every append
/// waiting, syncs the WAL once (which makes every earlier write of the database durable, the
/// WAL being one sequential file), and then answers them, in the order they were written. Its
/// sync goes through the failpoint and records a failure as [`HostDb::write`] does: an append
/// whose sync failed is answered with the error, never as durable.
struct Flusher {
    waiting: Option<SyncSender<Synced>>,
    thread: Option<JoinHandle<()>>,
    /// Tests hold it to keep the flusher between rounds.
    #[cfg(test)]
    gate: Arc<Mutex<()>>,
    /// WAL syncs the flusher made.
    #[cfg(test)]
    syncs: Arc<std::sync::atomic::AtomicU64>,
}

impl Drop for Flusher {
    /// Lets the thread answer what waits and end, so that the database is closed when the last
    /// handle of it is dropped (a reopen finds it unlocked).
    fn drop(&mut self) {
        self.waiting.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The flusher's part of the database.
struct Syncer {
    db: Arc<DB>,
    fault: DiskFault,
    failure: Arc<Mutex<Option<String>>>,
}

impl Syncer {
    fn sync(&self) -> Result<(), StorageError> {
        let synced = self
            .fault
            .check()
            .map_err(write_io_err)
            .and_then(|()| self.db.flush_wal(true).map_err(write_err));
        record_failure(&self.failure, &synced);
        synced
    }

    fn run(
        self,
        waiting: Receiver<Synced>,
        #[cfg(test)] (gate, syncs): (Arc<Mutex<()>>, Arc<std::sync::atomic::AtomicU64>),
    ) {
        while let Ok(first) = waiting.recv() {
            #[cfg(test)]
            let _gate = gate.lock().unwrap_or_else(|e| e.into_inner());
            let mut round = vec![first];
            while round.len() < FLUSH_ROUND_MAX {
                match waiting.try_recv() {
                    Ok(next) => round.push(next),
                    Err(_) => break,
                }
            }
            let synced = self.sync();
            #[cfg(test)]
            syncs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            for done in round {
                done(synced.clone());
            }
        }
    }
}

fn record_failure(failure: &Mutex<Option<String>>, result: &Result<(), StorageError>) {
    if let Err(error) = result {
        let mut failure = failure.lock().unwrap_or_else(|e| e.into_inner());
        failure.get_or_insert_with(|| error.to_string());
    }
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
        let families = [keys::CF_LOG, keys::CF_META, keys::CF_SM]
            .into_iter()
            .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        let db = DB::open_cf_descriptors(&options, path, families)?;
        let snapshot_root = path.parent().unwrap_or(path).join("snapshots");
        let db = Arc::new(db);
        let fault = DiskFault::default();
        let failure: Arc<Mutex<Option<String>>> = Arc::default();
        let syncer = Syncer {
            db: db.clone(),
            fault: fault.clone(),
            failure: failure.clone(),
        };
        let (waiting, queue) = std::sync::mpsc::sync_channel(FLUSH_WAITING_MAX);
        #[cfg(test)]
        let (gate, syncs) = (Arc::new(Mutex::new(())), Arc::default());
        #[cfg(test)]
        let thread_gate = (gate.clone(), Arc::clone(&syncs));
        let thread = std::thread::Builder::new()
            .name("wal-flusher".to_string())
            .spawn(move || {
                syncer.run(
                    queue,
                    #[cfg(test)]
                    thread_gate,
                )
            })
            // Only at a host's start (or a test's), when the machine cannot start a thread.
            .expect("starting the WAL flusher thread");
        Ok(HostDb {
            db,
            snapshot_root,
            fault,
            failure,
            flusher: Arc::new(Flusher {
                waiting: Some(waiting),
                thread: Some(thread),
                #[cfg(test)]
                gate,
                #[cfg(test)]
                syncs,
            }),
        })
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
    /// `sync` fsyncs the WAL before returning (vote, truncation, purge); without it the batch
    /// rides the WAL and is recovered from the raft log after a crash (state machine, commit
    /// mark). Log appends are made durable by the flusher instead ([`HostDb::write_then_sync`]).
    pub(crate) fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StorageError> {
        let written = self.fault.check().map_err(write_io_err).and_then(|()| {
            let mut options = WriteOptions::default();
            options.set_sync(sync);
            blocking(|| self.db.write_opt(batch, &options)).map_err(write_err)
        });
        record_failure(&self.failure, &written);
        written
    }

    /// Writes `batch` at once, unsynced (readable when this returns), and calls `synced` once
    /// the WAL holding it is synced, from the host's flusher thread: every append waiting then
    /// shares that one sync, whichever replica of the host wrote it. A failed write returns the
    /// error and calls `synced` with it; a failed sync calls `synced` with the error (recorded as
    /// [`HostDb::write_failure`]), so the entries are never acknowledged. When
    /// [`FLUSH_WAITING_MAX`] appends already wait, this one waits for room.
    pub(crate) fn write_then_sync(
        &self,
        batch: WriteBatch,
        synced: Synced,
    ) -> Result<(), StorageError> {
        if let Err(error) = self.write(batch, false) {
            synced(Err(error.clone()));
            return Err(error);
        }
        let waiting = self
            .flusher
            .waiting
            .as_ref()
            .expect("the flusher's queue lives as long as the database");
        let waited = match waiting.try_send(synced) {
            Ok(()) => Ok(()),
            // Back-pressure, in order: the append waits for room behind those before it.
            Err(TrySendError::Full(synced)) => blocking(|| waiting.send(synced)).map_err(|e| e.0),
            Err(TrySendError::Disconnected(synced)) => Err(synced),
        };
        if let Err(synced) = waited {
            // Only after the flusher thread died (a panic): nothing can make the write durable.
            let error = write_io_err(std::io::Error::other("the WAL flusher has stopped"));
            record_failure(&self.failure, &Err(error.clone()));
            synced(Err(error.clone()));
            return Err(error);
        }
        Ok(())
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

    fn answered() -> (Synced, std::sync::mpsc::Receiver<Result<(), StorageError>>) {
        let (sender, receiver) = std::sync::mpsc::channel();
        let synced: Synced = Box::new(move |result| sender.send(result).unwrap());
        (synced, receiver)
    }

    fn put(db: &HostDb, key: &[u8]) -> WriteBatch {
        let mut batch = WriteBatch::default();
        batch.put_cf(db.cf(keys::CF_LOG), key, b"entry");
        batch
    }

    /// An append is readable at once and acknowledged only by the flusher's sync of the WAL:
    /// while the flusher has not synced, nothing is acknowledged; when its sync fails (the
    /// failpoint) every append waiting is answered with the error, never as durable, and the
    /// failure is kept in the storage's words.
    #[test]
    fn an_append_is_acknowledged_only_by_a_sync_that_succeeded() {
        let dir = tempfile::tempdir().unwrap();
        let db = HostDb::open(&dir.path().join("db")).unwrap();
        let gate = db.flusher.gate.clone();

        let held = gate.lock().unwrap();
        let (first, first_answer) = answered();
        let (second, second_answer) = answered();
        db.write_then_sync(put(&db, b"office-a/1"), first).unwrap();
        db.write_then_sync(put(&db, b"office-b/1"), second).unwrap();
        let log = db.cf(keys::CF_LOG);
        assert!(db.raw().get_cf(log, b"office-a/1").unwrap().is_some());
        assert!(db.raw().get_cf(log, b"office-b/1").unwrap().is_some());
        let waiting = std::time::Duration::from_millis(50);
        assert!(
            first_answer.recv_timeout(waiting).is_err(),
            "acknowledged before the sync"
        );

        db.disk_fault().set(true);
        drop(held);
        for answer in [first_answer, second_answer] {
            let error = answer.recv().unwrap().unwrap_err();
            assert!(
                error.to_string().contains(failpoint::INJECTED_MESSAGE),
                "{error}"
            );
        }
        let failure = db.write_failure().expect("the failed sync is kept");
        assert!(failure.contains(failpoint::INJECTED_MESSAGE), "{failure}");

        db.disk_fault().set(false);
        let (third, third_answer) = answered();
        db.write_then_sync(put(&db, b"office-a/2"), third).unwrap();
        third_answer.recv().unwrap().unwrap();
    }

    /// Appends of several offices waiting together are made durable by one sync and answered
    /// in the order they were written.
    #[test]
    fn appends_waiting_together_share_one_sync_and_are_answered_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = HostDb::open(&dir.path().join("db")).unwrap();
        let (order, answers) = std::sync::mpsc::channel();
        let syncs = || db.flusher.syncs.load(std::sync::atomic::Ordering::Relaxed);
        let before = syncs();
        let held = db.flusher.gate.lock().unwrap();
        for n in 0..10u8 {
            let order = order.clone();
            let synced: Synced = Box::new(move |result| order.send((n, result)).unwrap());
            db.write_then_sync(put(&db, &[b'k', n]), synced).unwrap();
        }
        drop(held);
        let answered: Vec<u8> = (0..10)
            .map(|_| {
                let (n, result) = answers.recv().unwrap();
                result.unwrap();
                n
            })
            .collect();
        assert_eq!(answered, (0..10).collect::<Vec<_>>());
        assert_eq!(syncs() - before, 1, "one sync for the ten appends");
    }

    /// Dropping the last handle of the database ends the flusher and closes the database: it
    /// opens again at once.
    #[test]
    fn the_database_reopens_once_its_last_handle_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let db = HostDb::open(&path).unwrap();
        let (synced, answer) = answered();
        db.write_then_sync(put(&db, b"k"), synced).unwrap();
        drop(db);
        answer.recv().unwrap().unwrap();
        let db = HostDb::open(&path).unwrap();
        assert!(db
            .raw()
            .get_cf(db.cf(keys::CF_LOG), b"k")
            .unwrap()
            .is_some());
    }
}
