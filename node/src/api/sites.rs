//! The Sites service: a running host takes a new directory of offices (the manifest) from
//! `liandong federation add-office`, without a restart.
//!
//! Only an operator certificate covering the region's root office may send one (the command
//! line's, in the CA holder's folder); the mTLS handshake already refused any certificate not of
//! this federation's CA. The manifest must be a successor of the one the host runs with
//! ([`Manifest::check_successor`]: same region, greater generation, only additions); it is
//! written atomically where the host's config names its manifest, so a restart reads it too,
//! then the directory follows it. The same manifest again is answered as no change, so a re-run
//! of `add-office` is harmless.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use federation_proto::v1::sites_server::Sites;
use federation_proto::v1::{ApplyManifestReply, ApplyManifestRequest};
use liandong_domain::OfficeCode;
use tonic::{Request, Response, Status};

use super::auth::{Action, Trust};
use crate::federation::directory::Directory;
use crate::manifest::{Manifest, MANIFEST_VERSION};

/// The most bytes of manifest JSON taken (a province's manifest is a few MiB).
pub const MANIFEST_BYTES_MAX: usize = 16 * 1024 * 1024;

pub struct SitesService {
    pub host: String,
    /// Where the host's config names its manifest: a new one is written there.
    pub path: PathBuf,
    /// The manifest the host runs with.
    pub current: Arc<Mutex<Manifest>>,
    pub directory: Arc<Directory>,
    pub trust: Arc<Trust>,
}

impl SitesService {
    /// Reads a manifest sent as JSON: bounded, of this build's version, valid.
    fn parse(bytes: &[u8]) -> Result<Manifest, Status> {
        if bytes.len() > MANIFEST_BYTES_MAX {
            return Err(Status::invalid_argument(format!(
                "the manifest is {} bytes; at most {MANIFEST_BYTES_MAX}",
                bytes.len()
            )));
        }
        let manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| Status::invalid_argument(format!("not a manifest: {e}")))?;
        if manifest.version != MANIFEST_VERSION {
            return Err(Status::invalid_argument(format!(
                "manifest version {} (this host reads version {MANIFEST_VERSION})",
                manifest.version
            )));
        }
        Ok(manifest)
    }
}

#[tonic::async_trait]
impl Sites for SitesService {
    async fn apply_manifest(
        &self,
        request: Request<ApplyManifestRequest>,
    ) -> Result<Response<ApplyManifestReply>, Status> {
        let region = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .region
            .clone();
        let root: OfficeCode = region
            .parse()
            .map_err(|e| Status::internal(format!("the region {region}: {e}")))?;
        let principal = self.trust.check(&request, Action::Sites, &root, "", "")?;
        let next = Self::parse(&request.get_ref().manifest)?;
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if next == *current {
            return Ok(Response::new(ApplyManifestReply {
                host: self.host.clone(),
                generation: current.generation,
                changed: false,
            }));
        }
        current
            .check_successor(&next)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        next.save(&self.path)
            .map_err(|e| Status::internal(format!("writing {}: {e}", self.path.display())))?;
        self.directory.update(&next);
        tracing::info!(
            host = %self.host,
            generation = next.generation,
            offices = next.offices.len(),
            hosts = next.hosts.len(),
            by = %principal.who(),
            "took a new manifest"
        );
        *current = next;
        if self.trust.replicas().get(&root).is_some() {
            let record = Trust::record_of(&principal, Action::Sites, &root, "", "");
            let _ = self.trust.record(&root, record);
        }
        Ok(Response::new(ApplyManifestReply {
            host: self.host.clone(),
            generation: current.generation,
            changed: true,
        }))
    }
}
