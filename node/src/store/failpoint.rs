//! A storage failpoint for drills and tests: a full disk without root and without a real disk.
//!
//! While the marker file `DATA_DIR/disk-full.fault` exists (the host's own data directory, so it
//! concerns exactly one host, as a real disk does), every write of the host's RocksDB — raft log
//! appends, votes, commit marks, state machine batches, snapshots — fails before it reaches
//! RocksDB with the io error "No space left on device (injected)". Reads keep working, as they do
//! on a real full disk. Nothing is half written: the failing write is refused whole, exactly as
//! RocksDB refuses a batch whose WAL append or fsync failed.
//!
//! openraft treats such an error as fatal for the replica that hit it: the replica stops (its
//! state turns `Shutdown` in `liandong status`, `liandong_replica_stopped` turns 1 on the metrics
//! page, the host logs one error line naming the office and the cause) and acknowledges nothing
//! more. Removing the marker clears the fault for new writes; a stopped replica comes back when
//! its host is restarted, recovering from RocksDB and catching up from the office's leader.
//!
//! The host polls for the marker every [`POLL_MS`] into an [`AtomicBool`], so the hot path pays
//! one relaxed atomic load per write, never a file system call.
//!
//! ```text
//! touch federation/data/h5306-2/disk-full.fault   # the host's next writes fail
//! rm federation/data/h5306-2/disk-full.fault      # cleared; restart the host to recover
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The marker's file name, inside the host's data directory.
pub const MARKER_FILE: &str = "disk-full.fault";
/// How often the host looks for the marker.
pub const POLL_MS: u64 = 100;
/// The message of every injected failure (what an operator greps the logs for).
pub const INJECTED_MESSAGE: &str = "No space left on device (injected)";

/// The marker that injects the fault into the host whose data directory is `data_dir`.
pub fn marker(data_dir: &Path) -> PathBuf {
    data_dir.join(MARKER_FILE)
}

/// Whether the host's writes are to fail now. Cloned into every store of the host.
#[derive(Clone, Default, Debug)]
pub struct DiskFault {
    injected: Arc<AtomicBool>,
}

impl DiskFault {
    pub fn is_injected(&self) -> bool {
        // Relaxed is enough: the flag orders nothing else, and a write racing the marker's
        // appearance may go either way, as it would on a disk filling up.
        self.injected.load(Ordering::Relaxed)
    }

    pub fn set(&self, injected: bool) {
        let was = self.injected.swap(injected, Ordering::Relaxed);
        if was != injected {
            if injected {
                tracing::warn!("disk fault injected: every write of this host fails until the marker is removed");
            } else {
                tracing::warn!(
                    "disk fault cleared: stopped replicas come back when the host is restarted"
                );
            }
        }
    }

    /// The error a write gets while the fault is injected.
    pub fn check(&self) -> io::Result<()> {
        if self.is_injected() {
            return Err(io::Error::new(io::ErrorKind::StorageFull, INJECTED_MESSAGE));
        }
        Ok(())
    }

    /// Reads the marker once (at start, so a host restarted with the marker in place fails its
    /// first write rather than racing the first poll).
    pub fn load(&self, data_dir: &Path) {
        self.set(marker(data_dir).exists());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_turns_the_fault_on_and_off() {
        let dir = tempfile::tempdir().unwrap();
        let fault = DiskFault::default();
        fault.load(dir.path());
        assert!(fault.check().is_ok());
        std::fs::write(marker(dir.path()), b"").unwrap();
        fault.load(dir.path());
        let error = fault.check().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::StorageFull);
        assert_eq!(error.to_string(), INJECTED_MESSAGE);
        std::fs::remove_file(marker(dir.path())).unwrap();
        fault.load(dir.path());
        assert!(fault.check().is_ok());
    }
}
