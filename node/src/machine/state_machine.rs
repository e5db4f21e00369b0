//! The state machine of one replica as openraft sees it ([`RaftStateMachine`]), persisted in
//! RocksDB under its office's prefix: the entries of each `apply` call applied through one
//! transaction and written in one batch, snapshots as files ([`super::snapshot`]), and the reads
//! the rest of the host makes of the applied state.

// openraft's trait methods dictate `StorageError` (large) as the error type; our helpers return
// the same type so that `?` needs no conversion.
#![allow(clippy::result_large_err)]

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use liandong_domain::codec::FORMAT_BINARY;
use liandong_domain::message::Envelope;
use liandong_domain::{Calendar, Case, CaseId, Millis, OfficeCode};
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder};
use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::apply::{apply_request, ApplyContext};
use super::records::{LinkIn, LinkOut};
use super::{cases, get_or_default, keys, migrate, requests, snapshot};
use crate::raft::types::{
    Entry, LogId, Refusal, Response, Snapshot, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig,
};
use crate::store::keys::{meta_key, office_prefix, prefix_end, KeyValues, CF_META, CF_SM};
use crate::store::{codec, read_err, write_err, write_io_err, HostDb, Txn};

/// What a replica has applied: stored with the state it describes, in the same batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppliedState {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    /// The greatest stamped time applied: the state machine's clock never runs backwards.
    pub last_at: Millis,
    /// Hash chain over every change applied, one link per log entry.
    pub state_hash: String,
    pub cases: u64,
    /// Federation messages committed but not yet acknowledged by their receivers.
    #[serde(default)]
    pub outbox_pending: u64,
    /// The codec format of the values `state_hash` has folded since it last started. Values of
    /// format 1 hash differently from the same change in format 2, so replicas that applied the
    /// same entries with different builds disagree: the first tick applied by this build
    /// restarts the chain, the same on every replica ([`StateMachineStore::tick_due`]).
    /// Absent (0) in format-1 states.
    #[serde(default)]
    pub hash_format: u8,
}

impl Default for AppliedState {
    fn default() -> AppliedState {
        AppliedState {
            last_applied: None,
            membership: StoredMembership::default(),
            last_at: 0,
            state_hash: String::new(),
            cases: 0,
            outbox_pending: 0,
            hash_format: FORMAT_BINARY,
        }
    }
}

/// The record of the current snapshot (or of the one being installed): its meta and its file,
/// in the office's snapshot folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SnapshotRecord {
    pub meta: SnapshotMeta,
    pub file: String,
}

/// Meta key of the current snapshot's record.
pub(super) const SNAPSHOT_RECORD: &str = "snapshot";
/// Meta key of a snapshot install that has begun and not ended: run again at open.
pub(super) const SNAPSHOT_INSTALLING: &str = "snapshot-installing";

#[derive(Clone)]
pub struct StateMachineStore {
    db: HostDb,
    office: OfficeCode,
    context: Arc<ApplyContext>,
    prefix: Vec<u8>,
    /// This office's snapshot files.
    snapshots: PathBuf,
    /// The file openraft is writing a received snapshot into, until it is installed.
    incoming: Arc<Mutex<Option<PathBuf>>>,
    /// The applied state's clock, cached: every write's stamp must follow it, and reading it
    /// from RocksDB on every write costs a get and a decode.
    last_at: Arc<AtomicI64>,
    /// Counts the `apply` calls that put messages on a link or acknowledged some: the pump's
    /// link tasks wait on it instead of polling the outbox.
    outbox_changes: Arc<watch::Sender<u64>>,
}

impl StateMachineStore {
    /// Opens an office's state machine: finishes what an earlier run left half done (a snapshot
    /// install) and converts what an earlier build stored ([`migrate`]) before anything reads it.
    pub fn new(
        db: HostDb,
        office: OfficeCode,
        parent: Option<OfficeCode>,
        secret: Vec<u8>,
        calendar: Arc<Calendar>,
    ) -> Result<StateMachineStore, StorageError> {
        let prefix = office_prefix(office.as_str());
        let snapshots = db.snapshot_dir(office.as_str());
        std::fs::create_dir_all(&snapshots).map_err(write_io_err)?;
        let context = Arc::new(ApplyContext {
            office: office.clone(),
            parent,
            secret,
            calendar,
            signer: None,
        });
        let store = StateMachineStore {
            db,
            office,
            context,
            prefix,
            snapshots,
            incoming: Arc::default(),
            last_at: Arc::new(AtomicI64::new(0)),
            outbox_changes: Arc::new(watch::Sender::new(0)),
        };
        store.finish_interrupted_install()?;
        migrate::open(&store.db, store.office.as_str())?;
        super::stats::rebuild_if_missing(&store.db, store.office.as_str())?;
        store.remove_stray_files(true);
        store
            .last_at
            .store(store.applied()?.last_at, Ordering::SeqCst);
        Ok(store)
    }

    /// Signs every history entry this office applies with `signer` (the office's key). Call it
    /// before the replica's Raft starts applying.
    pub fn signing_with(mut self, signer: super::seal::OfficeSigner) -> StateMachineStore {
        let context = &self.context;
        self.context = Arc::new(ApplyContext {
            office: context.office.clone(),
            parent: context.parent.clone(),
            secret: context.secret.clone(),
            calendar: context.calendar.clone(),
            signer: Some(Arc::new(signer)),
        });
        self
    }

    /// The host's database (tests reach under the state machine through it).
    #[cfg(test)]
    pub(crate) fn db(&self) -> &HostDb {
        &self.db
    }

    /// The greatest stamped time applied so far.
    pub fn last_at(&self) -> Millis {
        self.last_at.load(Ordering::SeqCst)
    }

    /// The first failed write of the host's database, in the storage's own words.
    pub fn storage_failure(&self) -> Option<String> {
        self.db.write_failure()
    }

    pub fn office(&self) -> &OfficeCode {
        &self.office
    }

    pub fn applied(&self) -> Result<AppliedState, StorageError> {
        let key = [self.prefix.as_slice(), keys::APPLIED].concat();
        match self
            .db
            .raw()
            .get_cf(self.db.cf(CF_SM), key)
            .map_err(read_err)?
        {
            None => Ok(AppliedState::default()),
            Some(bytes) => codec::decode(&bytes).map_err(read_err),
        }
    }

    /// Reads one stored value of this office's state machine (a case header, a counter).
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, rocksdb::Error> {
        self.db
            .raw()
            .get_cf(self.db.cf(CF_SM), [self.prefix.as_slice(), key].concat())
    }

    /// Values under a relative prefix, in key order, at most `limit`.
    pub fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Result<KeyValues, rocksdb::Error> {
        self.scan_range(prefix, &prefix_end(prefix), limit)
    }

    /// Values from relative key `start` (inclusive) to `end` (exclusive), at most `limit`.
    pub fn scan_range(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<KeyValues, rocksdb::Error> {
        let from = [self.prefix.as_slice(), start].concat();
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound([self.prefix.as_slice(), end].concat());
        let iter = self.db.raw().iterator_cf_opt(
            self.db.cf(CF_SM),
            options,
            IteratorMode::From(&from, Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter.take(limit) {
            let (key, value) = item?;
            out.push((key[self.prefix.len()..].to_vec(), value.to_vec()));
        }
        Ok(out)
    }

    /// A case with its whole history, as this office holds it (a stub, for a case forwarded on).
    pub fn case(&self, case_id: &CaseId) -> Result<Option<Case>, String> {
        cases::load_whole(self, case_id).map_err(|e| e.to_string())
    }

    /// The cases this office holds, with their whole histories, in id order, at most `limit`.
    pub fn whole_cases(&self, limit: usize) -> Result<Vec<Case>, String> {
        let headers = self
            .scan_prefix(keys::CASE, limit)
            .map_err(|e| e.to_string())?;
        let mut cases = Vec::with_capacity(headers.len());
        for (key, _) in headers {
            let id = std::str::from_utf8(&key[keys::CASE.len()..])
                .ok()
                .and_then(|id| id.parse::<CaseId>().ok())
                .ok_or_else(|| format!("a case key that names no case: {key:?}"))?;
            cases.extend(self.case(&id)?);
        }
        Ok(cases)
    }

    /// When a deadline tick next has work: a case's alarm is due, a request record expires, or
    /// (at once) the state hash still folds an earlier build's format. None: nothing is pending.
    /// Changes only when the office applies something.
    pub fn next_tick_at(&self) -> Result<Option<Millis>, String> {
        if self.applied().map_err(|e| e.to_string())?.hash_format < FORMAT_BINARY {
            return Ok(Some(Millis::MIN));
        }
        let alarm = self
            .scan_prefix(keys::ALARM, 1)
            .map_err(|e| e.to_string())?
            .first()
            .and_then(|(key, _)| keys::alarm_time(key));
        let expiry = requests::first_expiry(self).map_err(|e| e.to_string())?;
        let task = super::departments::next_task_due(self).map_err(|e| e.to_string())?;
        let notices = super::notices::next_at(self).map_err(|e| e.to_string())?;
        let report = super::reports::next_at(self).map_err(|e| e.to_string())?;
        let anchors = super::anchors::next_at(self, self.context.parent.as_ref())
            .map_err(|e| e.to_string())?;
        Ok(alarm
            .into_iter()
            .chain(expiry)
            .chain(task)
            .chain(notices)
            .chain(Some(report))
            .chain(anchors)
            .min())
    }

    /// Whether a deadline tick has work at `now` ([`Self::next_tick_at`]).
    pub fn tick_due(&self, now: Millis) -> Result<bool, String> {
        Ok(self.next_tick_at()?.is_some_and(|at| at <= now))
    }

    /// Every link this office sends on, with its state.
    pub fn links_out(&self) -> Result<Vec<(OfficeCode, LinkOut)>, rocksdb::Error> {
        let mut links = Vec::new();
        for (key, value) in self.scan_prefix(keys::LINK, usize::MAX)? {
            // A record this build cannot read is not a link it can pump; `verify` reports it.
            let (Some(to), Ok(link)) = (keys::link_office(&key), codec::decode(&value)) else {
                continue;
            };
            links.push((to, link));
        }
        Ok(links)
    }

    /// This office's side of its links with `office`, as applied here (what a restore of
    /// `office` needs from it); None before this replica applied anything.
    pub fn peer_links(
        &self,
        office: &OfficeCode,
    ) -> Result<Option<super::backup::PeerLinks>, String> {
        super::backup::peer_links_in(self.db.raw(), self.db.cf(CF_SM), &self.office, office)
            .map_err(|e| e.to_string())
    }

    /// The sending side of the link to `to`.
    pub fn link_out(&self, to: &OfficeCode) -> Result<LinkOut, String> {
        get_or_default(self, &keys::link(to)).map_err(|e| e.to_string())
    }

    /// The receiving side of the link from `from`.
    pub fn link_in(&self, from: &OfficeCode) -> Result<LinkIn, String> {
        get_or_default(self, &keys::inbox(from)).map_err(|e| e.to_string())
    }

    /// The sending side of the link to `to` and the first `limit` messages waiting on it, in
    /// sequence order, read from one consistent view (an ack applied meanwhile moves both).
    pub fn outbox_head(
        &self,
        to: &OfficeCode,
        limit: usize,
    ) -> Result<(LinkOut, Vec<Envelope>), String> {
        let db = self.db.raw();
        let cf = self.db.cf(CF_SM);
        let view = db.snapshot();
        let absolute = |key: &[u8]| [self.prefix.as_slice(), key].concat();
        let link = match view
            .get_cf(cf, absolute(&keys::link(to)))
            .map_err(|e| e.to_string())?
        {
            Some(bytes) => codec::decode(&bytes).map_err(|e| e.to_string())?,
            None => LinkOut::default(),
        };
        let start = absolute(&keys::outbox_link(to));
        let mut options = ReadOptions::default();
        options.set_snapshot(&view);
        options.set_iterate_upper_bound(prefix_end(&start));
        let iter = db.iterator_cf_opt(cf, options, IteratorMode::From(&start, Direction::Forward));
        let mut waiting = Vec::new();
        for item in iter.take(limit) {
            let (_, value) = item.map_err(|e| e.to_string())?;
            waiting.push(codec::decode(&value).map_err(|e| e.to_string())?);
        }
        Ok((link, waiting))
    }

    /// The messages from `from` with sequence numbers in `seqs` that this office committed as
    /// refused.
    pub fn refusals(
        &self,
        from: &OfficeCode,
        seqs: RangeInclusive<u64>,
    ) -> Result<Vec<Refusal>, String> {
        super::refusals(self, from, *seqs.start(), *seqs.end()).map_err(|e| e.to_string())
    }

    /// Writes a snapshot file of the applied state, as of one consistent view, to a new file in
    /// this office's snapshot folder for a backup (`liandong snapshot save`); the caller
    /// removes it once sent (one left behind by a crash goes at the next open).
    pub fn write_backup_file(&self) -> Result<(PathBuf, AppliedState), String> {
        let path = self.snapshots.join(self.new_file("backup", 0));
        match snapshot::write(&self.db, &self.prefix, &path) {
            Ok(applied) => Ok((path, applied)),
            Err(error) => {
                let _ = std::fs::remove_file(&path);
                Err(error.to_string())
            }
        }
    }

    /// The notification outbox's counters.
    pub fn notify_state(&self) -> Result<super::notify::NotifyState, String> {
        super::notify::state(self).map_err(|e| e.to_string())
    }

    /// The first `limit` SMS notices waiting, oldest first.
    pub fn notify_head(&self, limit: usize) -> Result<Vec<super::notify::Notification>, String> {
        super::notify::head(self, limit).map_err(|e| e.to_string())
    }

    /// The first `limit` notices waiting whose stage `wanted` takes (among the first
    /// [`super::notify::HEAD_SCAN_MAX`]).
    pub fn notify_head_of(
        &self,
        limit: usize,
        wanted: &dyn Fn(liandong_domain::notify::Stage) -> bool,
    ) -> Result<Vec<super::notify::Notification>, String> {
        super::notify::head_of(self, limit, super::notify::HEAD_SCAN_MAX, wanted)
            .map_err(|e| e.to_string())
    }

    /// Changes whenever an `apply` call enqueued or acknowledged messages.
    pub fn outbox_changes(&self) -> watch::Receiver<u64> {
        self.outbox_changes.subscribe()
    }

    fn meta(&self, name: &str) -> Vec<u8> {
        meta_key(self.office.as_str(), name)
    }

    /// A snapshot record under meta key `name`; None when absent, or written in format 1 (a
    /// snapshot of the earlier build, dropped: openraft builds a new one when it needs it).
    fn snapshot_record(&self, name: &str) -> Result<Option<SnapshotRecord>, StorageError> {
        let bytes = self
            .db
            .raw()
            .get_cf(self.db.cf(CF_META), self.meta(name))
            .map_err(read_err)?;
        match bytes {
            Some(bytes) if codec::format_of(&bytes) == Some(FORMAT_BINARY) => {
                codec::decode(&bytes).map(Some).map_err(read_err)
            }
            _ => Ok(None),
        }
    }

    fn snapshot_path(&self, record: &SnapshotRecord) -> PathBuf {
        self.snapshots.join(&record.file)
    }

    /// A new file name in the snapshot folder.
    fn new_file(&self, kind: &str, index: u64) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or(0);
        format!("{kind}-{index:020}-{nanos}.snap")
    }

    /// Builds a snapshot file of the applied state, as of one consistent view, and makes it
    /// the current snapshot.
    fn build(&self) -> Result<Snapshot, StorageError> {
        let building = self.snapshots.join(self.new_file("building", 0));
        let applied = snapshot::write(&self.db, &self.prefix, &building).map_err(write_err)?;
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.membership,
            snapshot_id: match applied.last_applied {
                Some(log_id) => format!(
                    "{}-{}-{}",
                    log_id.leader_id.term,
                    log_id.index,
                    applied.state_hash.get(..12).unwrap_or("")
                ),
                None => "empty".to_string(),
            },
        };
        let index = meta.last_log_id.map(|log_id| log_id.index).unwrap_or(0);
        let record = SnapshotRecord {
            meta: meta.clone(),
            file: self.new_file("snapshot", index),
        };
        rename_synced(&building, &self.snapshot_path(&record))?;
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.db.cf(CF_META),
            self.meta(SNAPSHOT_RECORD),
            codec::encode(&record),
        );
        self.db.write(batch, false)?;
        self.remove_stray_files(false);
        self.open_snapshot(record)
    }

    fn open_snapshot(&self, record: SnapshotRecord) -> Result<Snapshot, StorageError> {
        let file = std::fs::File::open(self.snapshot_path(&record)).map_err(read_io_err)?;
        Ok(Snapshot {
            meta: record.meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        })
    }

    /// Installs the snapshot file named by `record`: checked whole first (a corrupt one changes
    /// nothing), marked as installing, streamed into RocksDB, then made current.
    fn install_file(&self, record: &SnapshotRecord) -> Result<(), StorageError> {
        let path = self.snapshot_path(record);
        snapshot::check(&path).map_err(read_err)?;
        let meta = self.db.cf(CF_META);
        let encoded = codec::encode(record);
        let mut marker = WriteBatch::default();
        marker.put_cf(meta, self.meta(SNAPSHOT_INSTALLING), &encoded);
        self.db.write(marker, true)?;
        let mut last = WriteBatch::default();
        last.put_cf(meta, self.meta(SNAPSHOT_RECORD), &encoded);
        last.delete_cf(meta, self.meta(SNAPSHOT_INSTALLING));
        snapshot::install(&self.db, &self.prefix, &path, last).map_err(write_err)?;
        // A snapshot of a build before the counters: count them here.
        super::stats::rebuild_if_missing(&self.db, self.office.as_str())?;
        self.remove_stray_files(false);
        let applied = self.applied()?;
        self.last_at.fetch_max(applied.last_at, Ordering::SeqCst);
        self.outbox_changes.send_modify(|changes| *changes += 1);
        Ok(())
    }

    /// Makes the snapshot openraft received (`file`) the file `record` names, synced: the file
    /// openraft was given to write into is renamed; any other is copied.
    fn keep_received(
        &self,
        mut file: std::fs::File,
        incoming: Option<PathBuf>,
        record: &SnapshotRecord,
    ) -> Result<(), StorageError> {
        let target = self.snapshot_path(record);
        match incoming {
            Some(incoming) if same_file(&file, &incoming) => {
                file.sync_all().map_err(write_io_err)?;
                drop(file);
                rename_synced(&incoming, &target)
            }
            abandoned => {
                use std::io::Seek;
                file.seek(std::io::SeekFrom::Start(0))
                    .map_err(read_io_err)?;
                let mut copy = std::fs::File::create(&target).map_err(write_io_err)?;
                std::io::copy(&mut file, &mut copy).map_err(write_io_err)?;
                copy.sync_all().map_err(write_io_err)?;
                if let Some(abandoned) = abandoned {
                    let _ = std::fs::remove_file(abandoned);
                }
                Ok(())
            }
        }
    }

    /// An install a crash interrupted left a partial state: install its file again.
    fn finish_interrupted_install(&self) -> Result<(), StorageError> {
        if let Some(record) = self.snapshot_record(SNAPSHOT_INSTALLING)? {
            tracing::warn!(office = %self.office, file = %record.file, "finishing an interrupted snapshot install");
            self.install_file(&record)?;
        }
        Ok(())
    }

    /// Deletes the snapshot files other than the current snapshot's. At open, when nothing is
    /// being built or received, every other file goes; later only superseded snapshots (one
    /// still being sent stays readable to its reader until closed).
    fn remove_stray_files(&self, at_open: bool) {
        let current = self.snapshot_record(SNAPSHOT_RECORD).ok().flatten();
        let Ok(entries) = std::fs::read_dir(&self.snapshots) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let is_current = current
                .as_ref()
                .is_some_and(|record| path == self.snapshot_path(record));
            let superseded = entry.file_name().to_string_lossy().starts_with("snapshot-");
            if !is_current && (at_open || superseded) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

fn read_io_err(error: std::io::Error) -> StorageError {
    read_err(error)
}

/// Renames `from` to `to` and syncs their folder, so the new name survives a crash.
fn rename_synced(from: &Path, to: &Path) -> Result<(), StorageError> {
    std::fs::rename(from, to).map_err(write_io_err)?;
    if let Some(folder) = to.parent() {
        std::fs::File::open(folder)
            .and_then(|folder| folder.sync_all())
            .map_err(write_io_err)?;
    }
    Ok(())
}

/// Whether `file` is the file at `path`.
fn same_file(file: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => (open.dev(), open.ino()) == (named.dev(), named.ino()),
        _ => false,
    }
}

/// Runs blocking storage work (a snapshot's file and RocksDB IO) on tokio's blocking pool, off
/// the runtime's workers; in place where there is no runtime (the deterministic simulation).
async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => runtime
            .spawn_blocking(work)
            .await
            .map_err(|e| write_io_err(std::io::Error::other(e.to_string())))?,
        Err(_) => work(),
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let store = self.clone();
        off_runtime(move || store.build()).await
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let applied = self.applied()?;
        Ok((applied.last_applied, applied.membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut state = self.applied()?;
        let mut txn = Txn::new(&self.db, self.office.as_str());
        let mut responses = Vec::new();
        for entry in entries {
            let response = match &entry.payload {
                EntryPayload::Blank => Response::Nothing,
                EntryPayload::Normal(request) => {
                    apply_request(&mut txn, &self.context, &mut state, request)
                        .map_err(write_err)?
                }
                EntryPayload::Membership(membership) => {
                    state.membership =
                        StoredMembership::new(Some(entry.log_id), membership.clone());
                    Response::Nothing
                }
            };
            state.last_applied = Some(entry.log_id);
            state.state_hash = txn.chain_hash(&state.state_hash, entry.log_id.index);
            responses.push(response);
        }
        txn.put(keys::APPLIED.to_vec(), codec::encode(&state));
        let outbox_changed = txn.wrote_under(keys::OUTBOX);
        let batch = txn.into_batch();
        // The raft log is already synced; the state machine rides the same WAL unsynced. All
        // the entries of this call are one batch: a failed write leaves the applied state where
        // it was, and the entries are applied again from the log after the restart.
        self.db.write(batch, false)?;
        self.last_at.fetch_max(state.last_at, Ordering::SeqCst);
        if outbox_changed {
            self.outbox_changes.send_modify(|changes| *changes += 1);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let path = self.snapshots.join(self.new_file("incoming", 0));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(write_io_err)?;
        let replaced = self
            .incoming
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .replace(path);
        if let Some(abandoned) = replaced {
            let _ = std::fs::remove_file(abandoned);
        }
        Ok(Box::new(tokio::fs::File::from_std(file)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let file = match snapshot.try_into_std() {
            Ok(file) => file,
            // A write of openraft's still in flight: wait for it.
            Err(file) => file.into_std().await,
        };
        let incoming = self
            .incoming
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let index = meta.last_log_id.map(|log_id| log_id.index).unwrap_or(0);
        let record = SnapshotRecord {
            meta: meta.clone(),
            file: self.new_file("snapshot", index),
        };
        let store = self.clone();
        off_runtime(move || {
            store.keep_received(file, incoming, &record)?;
            store.install_file(&record)
        })
        .await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        match self.snapshot_record(SNAPSHOT_RECORD)? {
            Some(record) => self.open_snapshot(record).map(Some),
            None => Ok(None),
        }
    }
}
