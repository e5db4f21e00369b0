//! Where a federation folder keeps its parts.

use std::path::{Path, PathBuf};

use anyhow::Context;
use liandong_node::manifest::Manifest;

/// The federation folder made by `liandong federation init` (`--dir`, default `./federation`).
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn manifest(&self) -> PathBuf {
        self.root.join("manifest.json")
    }

    pub fn host_config(&self, host: &str) -> PathBuf {
        self.root.join("hosts").join(format!("{host}.toml"))
    }

    pub fn data_dir(&self, host: &str) -> PathBuf {
        self.root.join("data").join(host)
    }

    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    pub fn pid_file(&self, host: &str) -> PathBuf {
        self.run_dir().join(format!("{host}.pid"))
    }

    pub fn log_file(&self, host: &str) -> PathBuf {
        self.run_dir().join(format!("{host}.log"))
    }

    pub fn load_manifest(&self) -> anyhow::Result<Manifest> {
        Manifest::load(&self.manifest()).with_context(|| {
            format!(
                "no federation at {} (run `liandong federation init` first)",
                self.root.display()
            )
        })
    }
}
