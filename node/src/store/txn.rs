//! A write transaction over one office's state machine keys: reads see the transaction's own
//! writes (several log entries apply in one RocksDB batch), and every change feeds the state
//! hash, so replicas that applied the same entries agree on the same hash.

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
    hasher: Sha256,
}

impl<'a> Txn<'a> {
    pub fn new(db: &'a HostDb, office: &str) -> Txn<'a> {
        Txn {
            db,
            prefix: keys::office_prefix(office),
            overlay: BTreeMap::new(),
            hasher: Sha256::new(),
        }
    }

    fn absolute(&self, key: &[u8]) -> Vec<u8> {
        [self.prefix.as_slice(), key].concat()
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, rocksdb::Error> {
        if let Some(pending) = self.overlay.get(key) {
            return Ok(pending.clone());
        }
        self.db.raw().get_cf(self.db.cf(CF_SM), self.absolute(key))
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.hasher.update(b"P");
        self.hash_bytes(&key);
        self.hash_bytes(&value);
        self.overlay.insert(key, Some(value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.hasher.update(b"D");
        self.hash_bytes(&key);
        self.overlay.insert(key, None);
    }

    fn hash_bytes(&mut self, bytes: &[u8]) {
        self.hasher.update((bytes.len() as u64).to_be_bytes());
        self.hasher.update(bytes);
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
        let read_max = limit.saturating_add(self.overlay.len());
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
        Ok(found.into_iter().take(limit).collect())
    }

    /// Whether this transaction put or deleted any key under the relative `prefix`.
    pub fn wrote_under(&self, prefix: &[u8]) -> bool {
        self.overlay
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

    pub fn into_batch(self) -> WriteBatch {
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
