//! Where a federation folder keeps its parts.

use std::path::{Path, PathBuf};

use anyhow::Context;
use liandong_node::manifest::Manifest;

/// The federation folder made by `liandong federation init` (`--dir`, default `./federation`).
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
    /// Where the signed-in officer's token is kept (`--token-file`); None: `DIR/session.token`.
    token_file: Option<PathBuf>,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
            token_file: None,
        }
    }

    /// The same folder, with the officer's token kept in `token_file` (None: the default).
    pub fn with_token_file(mut self, token_file: Option<PathBuf>) -> Layout {
        self.token_file = token_file;
        self
    }

    /// The signed-in officer's token: `--token-file`, or `DIR/session.token`.
    pub fn token_file(&self) -> PathBuf {
        self.token_file
            .clone()
            .unwrap_or_else(|| self.root.join("session.token"))
    }

    /// The federation's secrets (0700): the petitioner-key secret, each office's signing key and
    /// its first admin's password.
    pub fn secrets(&self) -> liandong_node::secrets::Secrets {
        liandong_node::secrets::Secrets::for_manifest(&self.manifest())
    }

    /// Where each office's public signing key is published (`DIR/pki/offices/CODE.pub`, hex):
    /// what `verify` checks history entries' signatures with, without any private key.
    pub fn office_public_key(&self, office: &str) -> PathBuf {
        liandong_node::host::pki_dir(&self.manifest())
            .join("offices")
            .join(format!("{office}.pub"))
    }

    /// The public signing key of `office`: its published file, or (a federation made before
    /// keys were published) derived from the office key in the secrets folder.
    pub fn read_office_public_key(&self, office: &str) -> Option<Vec<u8>> {
        if let Ok(text) = std::fs::read_to_string(self.office_public_key(office)) {
            return hex::decode(text.trim()).ok();
        }
        let key = self.secrets().office_key(office).ok()?;
        Some(liandong_node::secrets::public_key(&key))
    }

    /// Publishes every office's public signing key (after the secrets are made).
    pub fn publish_office_keys(&self, offices: &[String]) -> anyhow::Result<()> {
        let secrets = self.secrets();
        for office in offices {
            let key = secrets
                .office_key(office)
                .with_context(|| format!("reading office {office}'s signing key"))?;
            let path = self.office_public_key(office);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let text = format!(
                "{}\n",
                hex::encode(liandong_node::secrets::public_key(&key))
            );
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
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
