//! Talking to a running federation: host status, and calls to an office through whichever of
//! its hosts answers (every replica forwards writes to its leader).

use std::future::Future;
use std::time::Duration;

use std::collections::BTreeMap;
use std::sync::RwLock;

use anyhow::anyhow;
use federation_proto::v1::admin_client::AdminClient;
use federation_proto::v1::cases_client::CasesClient;
use federation_proto::v1::{StatusReply, StatusRequest};
use liandong_node::api::auth::{read_claims, Claims, AUTHORIZATION};
use liandong_node::manifest::{HostEntry, Manifest};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::layout::Layout;

/// How long one attempt may wait for a TCP connection.
pub const CONNECT_TIMEOUT_MS: u64 = 1_000;
/// How long a status request may take before the host counts as not answering.
pub const STATUS_TIMEOUT_MS: u64 = 2_000;
/// How long one host may take to answer one call before the next host is tried (a write waits
/// up to 5 s for a quorum at the node).
pub const HOST_ATTEMPT_MS: u64 = 2_500;
/// How long an office call keeps retrying hosts (covers an election after a leader's crash).
pub const OFFICE_CALL_DEADLINE_MS: u64 = 15_000;

pub struct Federation {
    pub layout: Layout,
    pub manifest: Manifest,
    /// The signed-in officer (`liandong login`), if any.
    pub session: Option<Session>,
}

/// The name of the command line's own certificate: an operator certificate for the federation's
/// root office (it operates every office, and speaks for none).
pub const CLI_IDENTITY: &str = "liandong";

/// An officer signed in: the token the office gave, and what it says (read, not verified: the
/// office verifies it on every call).
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub claims: Claims,
}

impl Session {
    pub fn from_token(token: &str) -> anyhow::Result<Session> {
        let token = token.trim().to_string();
        let claims = read_claims(&token).map_err(|e| anyhow!("the session token: {e}"))?;
        Ok(Session { token, claims })
    }

    /// The session kept in `path` (`liandong login` writes it), if there is one.
    pub fn load(path: &std::path::Path) -> anyhow::Result<Option<Session>> {
        match liandong_node::secrets::read_private(path) {
            Ok(bytes) => Session::from_token(&String::from_utf8_lossy(&bytes)).map(Some),
            Err(liandong_node::secrets::SecretsError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(None)
            }
            Err(error) => Err(anyhow!("{error}")),
        }
    }

    pub fn save(&self, path: &std::path::Path) -> anyhow::Result<()> {
        liandong_node::secrets::write_private(path, self.token.as_bytes())
            .map_err(|e| anyhow!("{e}"))
    }
}

/// Officers' tokens known to this process, by office: calls to an office carry its token.
/// `liandong` knows the one of its session; test harnesses and drills sign in at many offices.
static TOKENS: RwLock<BTreeMap<String, String>> = RwLock::new(BTreeMap::new());

/// Calls to `office` carry `token` from now on.
pub fn remember_token(office: &str, token: &str) {
    TOKENS
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(office.to_string(), token.to_string());
}

fn token_of(office: &str) -> Option<String> {
    TOKENS
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(office)
        .cloned()
}

/// Adds an officer's token to every call (nothing when there is none).
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    pub fn new(token: Option<&str>) -> Bearer {
        Bearer(token.and_then(|t| MetadataValue::try_from(format!("Bearer {t}")).ok()))
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert(AUTHORIZATION, value.clone());
        }
        Ok(request)
    }
}

/// A channel whose calls carry an officer's token.
pub type OfficerChannel = InterceptedService<Channel, Bearer>;

/// `channel` carrying the token this process knows for `office` (see [`remember_token`]).
pub fn for_office(channel: Channel, office: &str) -> OfficerChannel {
    InterceptedService::new(channel, Bearer::new(token_of(office).as_deref()))
}

/// A connection to `addr` whose calls carry `office`'s token.
pub async fn officer_channel(addr: &str, office: &str) -> Result<OfficerChannel, Status> {
    Ok(for_office(channel(addr).await?, office))
}
/// Certificates issued at `federation init` are valid this long.
pub const CERT_VALIDITY_DAYS: u32 = 825;

/// The command line's TLS identity, loaded once per process by [`Federation::open`].
static TLS: std::sync::OnceLock<tonic::transport::ClientTlsConfig> = std::sync::OnceLock::new();

/// Loads the command line's certificate from a federation's `pki/` folder for every channel.
pub fn use_federation_tls(layout: &Layout) -> anyhow::Result<()> {
    if TLS.get().is_some() {
        return Ok(());
    }
    let dir = liandong_node::host::pki_dir(&layout.manifest());
    let files = liandong_node::tls::TlsFiles::load(&dir, CLI_IDENTITY).map_err(|e| {
        anyhow::anyhow!(
            "loading the command line's certificate from {}: {e}",
            dir.display()
        )
    })?;
    let _ = TLS.set(liandong_node::tls::client_config(&files));
    Ok(())
}

pub async fn channel(addr: &str) -> Result<Channel, Status> {
    let endpoint = match TLS.get() {
        Some(tls) => Endpoint::from_shared(liandong_node::tls::https_uri(addr))
            .and_then(|endpoint| endpoint.tls_config(tls.clone()))
            .map_err(|e| Status::invalid_argument(e.to_string()))?,
        None => Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Status::invalid_argument(e.to_string()))?,
    };
    endpoint
        .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| Status::unavailable(format!("{addr}: {e}")))
}

/// Errors after which another host, or a later attempt, may succeed.
pub fn retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::Unknown
    )
}

impl Federation {
    pub fn open(layout: Layout) -> anyhow::Result<Federation> {
        let manifest = layout.load_manifest()?;
        use_federation_tls(&layout)?;
        let session = Session::load(&layout.token_file())?;
        if let Some(session) = &session {
            remember_token(&session.claims.office, &session.token);
        }
        Ok(Federation {
            layout,
            manifest,
            session,
        })
    }

    /// The signed-in officer, or why a command acting as one cannot run.
    pub fn officer(&self) -> anyhow::Result<&Session> {
        self.session.as_ref().ok_or_else(|| {
            anyhow!(
                "not signed in: `liandong login --office CODE --user USER` first (or \
                 --token-file FILE)"
            )
        })
    }

    pub async fn host_status(&self, host: &HostEntry) -> Option<StatusReply> {
        self.host_status_asking(host, StatusRequest::default())
            .await
    }

    /// A host's status; with `check_commit`, each office it leads is also asked to commit (a
    /// read index through its leader).
    async fn host_status_asking(
        &self,
        host: &HostEntry,
        request: StatusRequest,
    ) -> Option<StatusReply> {
        let attempt = async {
            let mut client = AdminClient::new(channel(&host.api_addr).await.ok()?);
            client
                .status(request)
                .await
                .ok()
                .map(|reply| reply.into_inner())
        };
        tokio::time::timeout(Duration::from_millis(STATUS_TIMEOUT_MS), attempt)
            .await
            .ok()
            .flatten()
    }

    /// Every host's status, asked concurrently.
    pub async fn statuses(&self) -> Vec<(HostEntry, Option<StatusReply>)> {
        self.statuses_asking(false).await
    }

    /// Every host's status, each led office also checked to commit (for `status` and `up`).
    pub async fn statuses_checked(&self) -> Vec<(HostEntry, Option<StatusReply>)> {
        self.statuses_asking(true).await
    }

    async fn statuses_asking(&self, check_commit: bool) -> Vec<(HostEntry, Option<StatusReply>)> {
        let asks = self.manifest.hosts.iter().map(|host| async move {
            let request = StatusRequest { check_commit };
            (host.clone(), self.host_status_asking(host, request).await)
        });
        futures::future::join_all(asks).await
    }

    /// Calls `call` on the officer API of `office`'s hosts in turn until one answers with
    /// something other than "unavailable", or the deadline passes.
    pub async fn office_call<T, F, Fut>(&self, office: &str, call: F) -> Result<T, Status>
    where
        F: Fn(CasesClient<OfficerChannel>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.office_channel_call(office, |channel| call(CasesClient::new(channel)))
            .await
    }

    /// Like [`Federation::office_call`], for any service on the office's hosts; every call
    /// carries the office's token when this process has one.
    pub async fn office_channel_call<T, F, Fut>(&self, office: &str, call: F) -> Result<T, Status>
    where
        F: Fn(OfficerChannel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let bearer = Bearer::new(token_of(office).as_deref());
        self.office_call_as(office, bearer, call).await
    }

    /// Like [`Federation::office_channel_call`], carrying `bearer`'s token.
    pub async fn office_call_as<T, F, Fut>(
        &self,
        office: &str,
        bearer: Bearer,
        call: F,
    ) -> Result<T, Status>
    where
        F: Fn(OfficerChannel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        if let Err(error) = office.parse::<liandong_domain::OfficeCode>() {
            return Err(Status::invalid_argument(error.to_string()));
        }
        let entry = self
            .manifest
            .office(office)
            .ok_or_else(|| Status::not_found(format!("no office {office} in this federation")))?;
        let addrs: Vec<String> = entry
            .members
            .iter()
            .filter_map(|member| {
                self.manifest
                    .host(&member.host)
                    .map(|host| host.api_addr.clone())
            })
            .collect();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(OFFICE_CALL_DEADLINE_MS);
        let mut last = Status::unavailable(format!("office {office} has no hosts"));
        loop {
            for addr in &addrs {
                let attempt = async {
                    match channel(addr).await {
                        Ok(channel) => call(InterceptedService::new(channel, bearer.clone())).await,
                        Err(status) => Err(status),
                    }
                };
                // A frozen host accepts connections and then says nothing: give each host a
                // bounded slice of the deadline and move on.
                let outcome = tokio::time::timeout(Duration::from_millis(HOST_ATTEMPT_MS), attempt)
                    .await
                    .unwrap_or_else(|_| {
                        Err(Status::deadline_exceeded(format!("{addr} did not answer")))
                    });
                match outcome {
                    Ok(value) => return Ok(value),
                    Err(status) if retryable(&status) => last = status,
                    Err(status) => return Err(status),
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(last);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub fn status_error(status: &Status) -> anyhow::Error {
    anyhow!("{}", status.message())
}
