//! The state machine of one replica as openraft sees it ([`RaftStateMachine`]), persisted in
//! RocksDB under its office's prefix: the entries of each `apply` call applied through one
//! transaction and written in one batch, snapshots, and the reads the rest of the host makes of
//! the applied state.

// openraft's trait methods dictate `StorageError` (large) as the error type; our helpers return
// the same type so that `?` needs no conversion.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::ops::RangeInclusive;
use std::sync::Arc;

use liandong_domain::message::Envelope;
use liandong_domain::{Calendar, Millis, OfficeCode};
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder};
use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::apply::{apply_request, ApplyContext};
use super::records::{LinkIn, LinkOut};
use super::{get_or_default, keys};
use crate::raft::types::{
    Entry, LogId, Refusal, Response, Snapshot, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig,
};
use crate::store::keys::{office_prefix, prefix_end, KeyValues, CF_META, CF_SM};
use crate::store::{blocking, codec, read_err, write_err, HostDb, Txn};

/// What a replica has applied: stored with the state it describes, in the same batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
}

/// A snapshot's body: every state machine key of the office, relative to its prefix.
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

#[derive(Clone)]
pub struct StateMachineStore {
    db: HostDb,
    office: OfficeCode,
    context: Arc<ApplyContext>,
    prefix: Vec<u8>,
    /// The applied state's clock, cached: every write's stamp must follow it, and reading it
    /// from RocksDB on every write costs a get and a decode.
    last_at: Arc<std::sync::atomic::AtomicI64>,
    /// Counts the `apply` calls that put messages on a link or acknowledged some: the pump's
    /// link tasks wait on it instead of polling the outbox.
    outbox_changes: Arc<watch::Sender<u64>>,
}

impl StateMachineStore {
    pub fn new(
        db: HostDb,
        office: OfficeCode,
        parent: Option<OfficeCode>,
        secret: Vec<u8>,
        calendar: Arc<Calendar>,
    ) -> StateMachineStore {
        let prefix = office_prefix(office.as_str());
        let context = Arc::new(ApplyContext {
            office: office.clone(),
            parent,
            secret,
            calendar,
        });
        let store = StateMachineStore {
            db,
            office,
            context,
            prefix,
            last_at: Arc::new(std::sync::atomic::AtomicI64::new(0)),
            outbox_changes: Arc::new(watch::Sender::new(0)),
        };
        if let Ok(applied) = store.applied() {
            store
                .last_at
                .store(applied.last_at, std::sync::atomic::Ordering::SeqCst);
        }
        store
    }

    /// The greatest stamped time applied so far.
    pub fn last_at(&self) -> Millis {
        self.last_at.load(std::sync::atomic::Ordering::SeqCst)
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

    /// Reads one stored value of this office's state machine (a case document, a counter).
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

    /// Changes whenever an `apply` call enqueued or acknowledged messages.
    pub fn outbox_changes(&self) -> watch::Receiver<u64> {
        self.outbox_changes.subscribe()
    }

    fn snapshot_key(&self) -> Vec<u8> {
        crate::store::keys::meta_key(self.office.as_str(), "snapshot")
    }

    fn build(&self) -> Result<Snapshot, StorageError> {
        let db = self.db.raw();
        let view = db.snapshot();
        let mut options = ReadOptions::default();
        options.set_snapshot(&view);
        options.set_iterate_upper_bound(prefix_end(&self.prefix));
        let mut pairs = Vec::new();
        let iter = db.iterator_cf_opt(
            self.db.cf(CF_SM),
            options,
            IteratorMode::From(&self.prefix, Direction::Forward),
        );
        let mut applied = AppliedState::default();
        for item in iter {
            let (key, value) = item.map_err(read_err)?;
            let relative = key[self.prefix.len()..].to_vec();
            if relative == keys::APPLIED {
                applied = codec::decode(&value).map_err(read_err)?;
            }
            pairs.push((relative, value.to_vec()));
        }
        let data = codec::encode(&SnapshotBody { pairs });
        let snapshot_id = match applied.last_applied {
            Some(log_id) => format!(
                "{}-{}-{}",
                log_id.leader_id.term,
                log_id.index,
                applied.state_hash.get(..12).unwrap_or("")
            ),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.membership,
            snapshot_id,
        };
        self.save_snapshot(&meta, &data)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }

    fn save_snapshot(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        self.put_snapshot(&mut batch, meta, data);
        self.db.write(batch, false)
    }

    /// Adds the snapshot record to `batch`.
    fn put_snapshot(&self, batch: &mut WriteBatch, meta: &SnapshotMeta, data: &[u8]) {
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.to_vec(),
        };
        batch.put_cf(
            self.db.cf(CF_META),
            self.snapshot_key(),
            codec::encode(&stored),
        );
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        blocking(|| self.build())
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
        self.last_at
            .fetch_max(state.last_at, std::sync::atomic::Ordering::SeqCst);
        if outbox_changed {
            self.outbox_changes.send_modify(|changes| *changes += 1);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let body: SnapshotBody = codec::decode(&data).map_err(read_err)?;
        let cf = self.db.cf(CF_SM);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            cf,
            self.prefix.as_slice(),
            prefix_end(&self.prefix).as_slice(),
        );
        for (key, value) in &body.pairs {
            batch.put_cf(cf, [self.prefix.as_slice(), key].concat(), value);
        }
        // The state and the snapshot record describing it in one batch: a write failing half
        // way can leave neither a replaced state without its snapshot nor the reverse.
        self.put_snapshot(&mut batch, meta, &data);
        self.db.write(batch, false)?;
        let applied = self.applied()?;
        self.last_at
            .fetch_max(applied.last_at, std::sync::atomic::Ordering::SeqCst);
        self.outbox_changes.send_modify(|changes| *changes += 1);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let cf = self.db.cf(CF_META);
        let Some(bytes) = self
            .db
            .raw()
            .get_cf(cf, self.snapshot_key())
            .map_err(read_err)?
        else {
            return Ok(None);
        };
        let stored: StoredSnapshot = codec::decode(&bytes).map_err(read_err)?;
        Ok(Some(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}
