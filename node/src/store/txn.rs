//! A write transaction over one office's state machine keys: reads see the transaction's own
//! writes (several log entries apply in one RocksDB batch), and every change feeds the state
//! hash, so replicas that applied the same entries agree on the same hash.
//!
//! A value that many changes move (an office's statistics row, moved by every case change) is
//! kept decoded ([`Txn::change_kept`]): decoded once per transaction instead of once per change,
//! and put once, when the transaction becomes its batch. Each change still hashes the value's
//! bytes as a put of them would, so the state hash is what putting it at every change gives.

use std::any::Any;
use std::collections::BTreeMap;

use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch};
use sha2::{Digest, Sha256};

use super::keys::{self, CF_SM};
use super::HostDb;

pub struct Txn<'a> {
    db: &'a HostDb,
    prefix: Vec<u8>,
    /// Pending writes by relative key: `Some(value)` put, `None` delete.
    overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Values kept decoded by relative key ([`Txn::change_kept`]); newer than the overlay's.
    kept: BTreeMap<Vec<u8>, KeptValue>,
    hasher: Sha256,
}

/// A stored value a transaction keeps decoded while changes move it ([`Txn::change_kept`]).
pub trait Kept: Any + Send {
    /// Appends its stored bytes to `out`; false when its key is to be deleted instead (nothing
    /// worth storing, as an empty row).
    fn encode_into(&self, out: &mut Vec<u8>) -> bool;
}

struct KeptValue {
    value: Box<dyn Kept>,
    /// Its bytes as last changed (None: deleted); what the overlay holds when not `changed`.
    bytes: Option<Vec<u8>>,
    /// Changed since it was read: its bytes are not in the overlay yet.
    changed: bool,
}

impl<'a> Txn<'a> {
    pub fn new(db: &'a HostDb, office: &str) -> Txn<'a> {
        Txn {
            db,
            prefix: keys::office_prefix(office),
            overlay: BTreeMap::new(),
            kept: BTreeMap::new(),
            hasher: Sha256::new(),
        }
    }

    fn absolute(&self, key: &[u8]) -> Vec<u8> {
        [self.prefix.as_slice(), key].concat()
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, rocksdb::Error> {
        if let Some(kept) = self.kept.get(key).filter(|kept| kept.changed) {
            return Ok(kept.bytes.clone());
        }
        if let Some(pending) = self.overlay.get(key) {
            return Ok(pending.clone());
        }
        self.db.raw().get_cf(self.db.cf(CF_SM), self.absolute(key))
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        hash_put(&mut self.hasher, &key, &value);
        self.kept.remove(&key);
        self.overlay.insert(key, Some(value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        hash_delete(&mut self.hasher, &key);
        self.kept.remove(&key);
        self.overlay.insert(key, None);
    }

    /// Changes the value under `key` kept decoded in this transaction: `load` decodes it from
    /// its stored bytes (None: absent) the first time, `change` moves it, and the change is
    /// hashed as putting (or deleting) its new bytes would be. Reads see it at once; it is
    /// written once, with the batch ([`Txn::into_batch`]). A plain put or delete of the key
    /// replaces it.
    pub fn change_kept<T: Kept, E: From<rocksdb::Error>>(
        &mut self,
        key: &[u8],
        load: impl FnOnce(Option<&[u8]>) -> Result<T, E>,
        change: impl FnOnce(&mut T),
    ) -> Result<(), E> {
        let is_kept = self
            .kept
            .get(key)
            .is_some_and(|kept| (kept.value.as_ref() as &dyn Any).is::<T>());
        if !is_kept {
            // A value kept as another type (one key, one type: not expected) is written first.
            if let Some(other) = self.kept.remove(key) {
                if other.changed {
                    self.overlay.insert(key.to_vec(), other.bytes);
                }
            }
            let bytes = self.get(key)?;
            let value = load(bytes.as_deref())?;
            self.kept.insert(
                key.to_vec(),
                KeptValue {
                    value: Box::new(value),
                    bytes,
                    changed: false,
                },
            );
        }
        let Txn { kept, hasher, .. } = self;
        let Some(kept) = kept.get_mut(key) else {
            return Ok(());
        };
        if let Some(value) = (kept.value.as_mut() as &mut dyn Any).downcast_mut::<T>() {
            change(value);
        }
        let mut bytes = kept.bytes.take().unwrap_or_default();
        bytes.clear();
        let stored = kept.value.encode_into(&mut bytes);
        kept.bytes = stored.then_some(bytes);
        kept.changed = true;
        match &kept.bytes {
            Some(bytes) => hash_put(hasher, key, bytes),
            None => hash_delete(hasher, key),
        }
        Ok(())
    }

    /// Keys under relative `start_prefix` (inclusive) up to relative `end` (exclusive), at most
    /// `limit`, merged with this transaction's own writes.
    pub fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<keys::KeyValues, rocksdb::Error> {
        let mut found: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(self.absolute(end));
        let from = self.absolute(start);
        let iter = self.db.raw().iterator_cf_opt(
            self.db.cf(CF_SM),
            options,
            IteratorMode::From(&from, Direction::Forward),
        );
        // Read enough to survive the overlay's deletions.
        let read_max = limit
            .saturating_add(self.overlay.len())
            .saturating_add(self.kept.len());
        for item in iter.take(read_max) {
            let (key, value) = item?;
            found.insert(key[self.prefix.len()..].to_vec(), value.to_vec());
        }
        for (key, pending) in self.overlay.range(start.to_vec()..end.to_vec()) {
            match pending {
                Some(value) => found.insert(key.clone(), value.clone()),
                None => found.remove(key),
            };
        }
        for (key, kept) in self.kept.range(start.to_vec()..end.to_vec()) {
            match (&kept.bytes, kept.changed) {
                (_, false) => continue,
                (Some(value), true) => found.insert(key.clone(), value.clone()),
                (None, true) => found.remove(key),
            };
        }
        Ok(found.into_iter().take(limit).collect())
    }

    /// Whether this transaction put or deleted any key under the relative `prefix`.
    pub fn wrote_under(&self, prefix: &[u8]) -> bool {
        let changed_kept = self
            .kept
            .range(prefix.to_vec()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .any(|(_, kept)| kept.changed);
        changed_kept
            || self
                .overlay
                .range(prefix.to_vec()..)
                .next()
                .is_some_and(|(key, _)| key.starts_with(prefix))
    }

    /// Folds the changes made since the last call into the running state hash. Called once per
    /// log entry, so the hash at an index does not depend on how entries were batched.
    pub fn chain_hash(&mut self, previous: &str, index: u64) -> String {
        let mut hasher = std::mem::take(&mut self.hasher);
        hasher.update(index.to_be_bytes());
        hasher.update(previous.as_bytes());
        hex::encode(hasher.finalize())
    }

    pub fn into_batch(mut self) -> WriteBatch {
        for (key, kept) in std::mem::take(&mut self.kept) {
            if kept.changed {
                self.overlay.insert(key, kept.bytes);
            }
        }
        let cf = self.db.cf(CF_SM);
        let mut batch = WriteBatch::default();
        for (key, pending) in self.overlay {
            let absolute = [self.prefix.as_slice(), &key].concat();
            match pending {
                Some(value) => batch.put_cf(cf, absolute, value),
                None => batch.delete_cf(cf, absolute),
            }
        }
        batch
    }
}

/// A put as the state hash sees it: its key and value, each with its length.
fn hash_put(hasher: &mut Sha256, key: &[u8], value: &[u8]) {
    hasher.update(b"P");
    hash_bytes(hasher, key);
    hash_bytes(hasher, value);
}

/// A delete as the state hash sees it: its key, with its length.
fn hash_delete(hasher: &mut Sha256, key: &[u8]) {
    hasher.update(b"D");
    hash_bytes(hasher, key);
}

fn hash_bytes(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_be_bytes());
    hasher.update(bytes);
}
