//! Link faults for drills: `DIR/run/faults.json` names partitioned offices; every host polls it.
//! A partitioned office keeps its own Raft group whole (replication is not touched) but sends
//! and accepts no federation message, as if its links to every other office were cut. Hosts
//! carry several offices (a county and its townships), so links are cut per office here, in the
//! protocol layer, rather than per host in the kernel.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How often a host re-reads the fault file.
pub const FAULTS_POLL_MS: u64 = 100;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultSpec {
    /// Offices cut off every other office.
    #[serde(default)]
    pub partitioned: BTreeSet<String>,
}

impl FaultSpec {
    pub fn path(run_dir: &Path) -> PathBuf {
        run_dir.join("faults.json")
    }

    pub fn load(run_dir: &Path) -> FaultSpec {
        std::fs::read(FaultSpec::path(run_dir))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, run_dir: &Path) -> std::io::Result<()> {
        let path = FaultSpec::path(run_dir);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(tmp, path)
    }
}

/// The faults in force on this host, refreshed from the fault file.
#[derive(Clone, Default)]
pub struct Faults {
    spec: Arc<RwLock<FaultSpec>>,
}

impl Faults {
    /// True if the link between these two offices is cut.
    pub fn cut(&self, a: &str, b: &str) -> bool {
        let spec = self
            .spec
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        spec.partitioned.contains(a) || spec.partitioned.contains(b)
    }

    pub fn set(&self, spec: FaultSpec) {
        *self
            .spec
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = spec;
    }

    /// Polls the fault file until `stop` resolves.
    pub async fn watch(self, run_dir: PathBuf, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            self.set(FaultSpec::load(&run_dir));
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(FAULTS_POLL_MS)) => {}
                _ = &mut stop => return,
            }
        }
    }
}
