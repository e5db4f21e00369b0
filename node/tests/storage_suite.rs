//! openraft's storage conformance suite against our RocksDB log store and state machine.

use std::sync::Arc;

use liandong_node::domain::Calendar;
use liandong_node::machine::StateMachineStore;
use liandong_node::raft::types::{StorageError, TypeConfig};
use liandong_node::store::{HostDb, LogStore};
use openraft::testing::{StoreBuilder, Suite};

struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for RocksBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| {
            StorageError::from_io_error(
                openraft::ErrorSubject::Store,
                openraft::ErrorVerb::Write,
                e,
            )
        })?;
        let db = HostDb::open(&dir.path().join("db")).expect("open RocksDB");
        let log = LogStore::new(db.clone(), "5306");
        let state_machine = StateMachineStore::new(
            db,
            "5306".parse().unwrap(),
            None,
            vec![7; 32],
            Arc::new(Calendar::china()),
        )?;
        Ok((dir, log, state_machine))
    }
}

/// Our RocksDB store passes every test of openraft's conformance suite.
#[test]
fn rocksdb_store_passes_openrafts_storage_suite() {
    Suite::test_all(RocksBuilder).unwrap();
}
