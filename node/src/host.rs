//! A host process: opens its RocksDB, starts one Raft per office it carries, serves the raft
//! transport, the officer API and the admin API, proposes deadline ticks, and shuts down cleanly.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use federation_proto::v1::admin_server::AdminServer;
use federation_proto::v1::backup_server::BackupServer;
use federation_proto::v1::cases_server::CasesServer;
use federation_proto::v1::federation_server::FederationServer;
use federation_proto::v1::membership_server::MembershipServer;
use federation_proto::v1::quiescence_server::QuiescenceServer;
use federation_proto::v1::raft_transport_server::RaftTransportServer;
use federation_proto::MESSAGE_BYTES_MAX;
use liandong_domain::{Calendar, OfficeCode};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use crate::api::admin::{AdminService, BackupService, MembershipService};
use crate::api::audit_log::AuditFlusher;
use crate::api::auth::Trust;
use crate::api::cases::CaseService;
use crate::api::officers::{AuditService, OfficerService};
use crate::api::propose::Proposer;
use crate::api::quiesce::QuiescenceService;
use crate::api::raft::RaftService;
use crate::clock::Clock;
use crate::failover::{Detector, Liveness};
use crate::federation::directory::Directory;
use crate::federation::faults::{FaultSpec, Faults, FAULTS_POLL_MS};
use crate::federation::pump::{Pump, PumpContext};
use crate::federation::service::FederationService;
use crate::health::Health;
use crate::live_tls::{self, LiveTls};
use crate::machine::StateMachineStore;
use crate::manifest::{HostConfig, HostEntry, Manifest};
use crate::metrics;
use crate::quiesce::{self, Quiescence, Quiet};
use crate::raft::network::{OfficeNetwork, Transport};
use crate::raft::types::{NodeInfo, Operation, Raft};
use crate::replica::{Replica, Replicas};
use crate::store::{failpoint, HostDb, LogStore};
use crate::tls::TlsFiles;
use crate::worker::{Every, Step, Worker, Workers};
use federation_proto::v1::audit_server::AuditServer;
use federation_proto::v1::officers_server::OfficersServer;

/// Raft timing, sized for loopback and LAN links. openraft 0.9 times out every AppendEntries
/// call after one heartbeat interval, so the interval must cover a follower's synced append under
/// load (at 30 ms calls failed ten times as often as at 50 ms). It makes `election_timeout_max`
/// each follower's leader lease: no vote is granted until that long after the leader was last
/// heard from, which bounds how fast the dead-leader detector ([`crate::failover`]) replaces a
/// crashed leader (lease, one vote round, one commit). The timer alone elects after `lease +
/// rand[min, max)` of silence, checked every 1.5 heartbeats: 270-375 ms, over 5 heartbeats, so a
/// loaded host's late heartbeat does not depose its leader; the narrow range is enough jitter
/// because the followers' ticks run at unrelated phases.
pub const HEARTBEAT_INTERVAL_MS: u64 = 50;
pub const ELECTION_TIMEOUT_MIN_MS: u64 = 120;
pub const ELECTION_TIMEOUT_MAX_MS: u64 = 150;
/// A snapshot is cut after this many entries, and the log before it purged.
pub const SNAPSHOT_LOGS_SINCE_LAST: u64 = 20_000;
/// How often a leader checks whether any case's deadline clock is due.
pub const TICK_INTERVAL_MS: u64 = 1_000;
/// How long a graceful shutdown waits for the background workers to end.
pub const WORKERS_STOP_MS: u64 = 5_000;
/// Environment knob for drills: shifts this host's clock by this many milliseconds.
pub const CLOCK_SKEW_ENV: &str = "LIANDONG_CLOCK_SKEW_MS";

pub fn raft_config() -> anyhow::Result<Arc<openraft::Config>> {
    let config = openraft::Config {
        cluster_name: "liandong".to_string(),
        heartbeat_interval: HEARTBEAT_INTERVAL_MS,
        election_timeout_min: ELECTION_TIMEOUT_MIN_MS,
        election_timeout_max: ELECTION_TIMEOUT_MAX_MS,
        max_payload_entries: 1_000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(SNAPSHOT_LOGS_SINCE_LAST),
        max_in_snapshot_log_to_keep: 1_000,
        ..Default::default()
    };
    Ok(Arc::new(config.validate()?))
}

fn node_info(manifest: &Manifest, host_name: &str) -> anyhow::Result<NodeInfo> {
    let host = manifest
        .host(host_name)
        .ok_or_else(|| anyhow!("manifest names no host {host_name}"))?;
    Ok(NodeInfo {
        host: host.name.clone(),
        raft_addr: host.raft_addr.clone(),
        api_addr: host.api_addr.clone(),
    })
}

/// Logs to stderr (a host's log file under `DIR/run/`); `RUST_LOG` overrides the level.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    // Colour only on a terminal: a host's stderr is usually its log file.
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Resolves on SIGTERM or Ctrl-C: the signal for a graceful shutdown.
pub async fn terminated() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Where a federation keeps its CA and host certificates: `pki/` beside the manifest.
pub fn pki_dir(manifest: &Path) -> std::path::PathBuf {
    manifest.parent().unwrap_or(Path::new(".")).join("pki")
}

/// Runs the host named in `config_path` until `shutdown` resolves.
pub async fn run(config_path: &Path, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    // Every file the host makes (RocksDB's included) is its own: 0600 files, 0700 folders.
    // SAFETY: umask only sets the process's file mode mask; it cannot fail.
    unsafe { libc::umask(0o077) };
    // Relative paths are the config's folder's: a host's bundle is copied to its machine whole.
    let config =
        HostConfig::load(config_path)?.resolved(config_path.parent().unwrap_or(Path::new(".")));
    let manifest = Manifest::load(&config.manifest)?;
    manifest.validate()?;
    let secrets = crate::secrets::Secrets::for_manifest(&config.manifest);
    let host = manifest
        .host(&config.host)
        .ok_or_else(|| anyhow!("manifest names no host {}", config.host))?
        .clone();
    // The certificate first: a bundle with a missing or foreign key stops the host before it
    // makes or opens anything.
    let pki_dir = pki_dir(&config.manifest);
    let tls = TlsFiles::load(&pki_dir, &host.name).with_context(|| {
        format!(
            "loading host {}'s certificate from {}",
            host.name,
            pki_dir.display()
        )
    })?;
    crate::secrets::private_dir(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let db = open_db_waiting_for_lock(&config.data_dir.join("db"))
        .await
        .context("opening RocksDB")?;
    // The storage failpoint (store::failpoint): read once now, so a host restarted with the
    // marker in place fails its first write, then polled while the host runs.
    let disk_fault = db.disk_fault().clone();
    disk_fault.load(&config.data_dir);
    let skew_ms = std::env::var(CLOCK_SKEW_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let clock = Arc::new(Clock::new(
        manifest.clock_origin_ms,
        manifest.time_scale,
        skew_ms,
    ));
    // Drill faults (DIR/run/faults.json): read now, polled while the host runs. The raft
    // transport applies this host's link faults; the clock takes its runtime skew.
    let faults = Faults::for_host(&host.name, clock.clone());
    faults.set(FaultSpec::load(&config.log_dir));
    let transport =
        Transport::with_tls(crate::tls::client_config(&tls)).with_faults(faults.clone());
    // The certificate this host serves and presents, reloaded while it runs (`cert rotate`),
    // and the revocations it honours (`cert revoke`).
    let live_tls = LiveTls::start(&pki_dir, &host.name, &tls)
        .with_context(|| format!("loading the revocation list in {}", pki_dir.display()))?;
    let server_tls = live_tls.server_config()?;
    // Quiescence's controller is told of every wake, and of every peer host that returns.
    let quiesce_notify = Arc::new(Notify::new());
    let liveness = Liveness::notifying(quiesce_notify.clone());
    let started = std::time::Instant::now();
    let replicas = Replicas::new(
        start_replicas(
            &manifest,
            &host,
            &db,
            &clock,
            &transport,
            &secrets,
            &quiesce_notify,
        )
        .await?,
    );
    tracing::info!(host = %host.name, replicas = replicas.iter().count(), took_ms = started.elapsed().as_millis() as u64, "replicas started");
    let trust = Arc::new(Trust::load(replicas.clone(), secrets)?);
    let proposer = Proposer {
        replicas: replicas.clone(),
        transport: transport.clone(),
    };
    let health = Arc::new(Health::new(replicas.iter().map(|r| r.office.clone())));
    // The detector is told when a replica's membership changes (its peer hosts may have).
    let memberships_changed = Arc::new(Notify::new());

    let (stop_tx, stop_rx) = watch::channel(false);
    let raft_listener = TcpListener::bind(&host.raft_addr)
        .await
        .with_context(|| format!("binding {}", host.raft_addr))?;
    let api_listener = TcpListener::bind(&host.api_addr)
        .await
        .with_context(|| format!("binding {}", host.api_addr))?;
    let registry = metrics::Registry::new(health.clone());
    let timed = metrics::TimedLayer {
        latencies: registry.latencies.clone(),
    };
    let raft_server = tonic::transport::Server::builder()
        .layer(timed.clone())
        .add_service(
            RaftTransportServer::new(RaftService {
                replicas: replicas.clone(),
            })
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX),
        )
        .add_service(QuiescenceServer::new(QuiescenceService {
            replicas: replicas.clone(),
        }))
        .serve_with_incoming_shutdown(
            live_tls::incoming(raft_listener, server_tls.clone()),
            stopped(stop_rx.clone()),
        );
    let directory = Arc::new(Directory::new(&manifest));
    let sites = crate::api::sites::SitesService {
        host: host.name.clone(),
        path: config.manifest.clone(),
        current: Arc::new(std::sync::Mutex::new(manifest.clone())),
        directory: directory.clone(),
        trust: trust.clone(),
    };
    // What this host's SMS sender did (failed attempts), for the Status RPC.
    let notify_stats = Arc::new(crate::notify::NotifyStats::default());
    let api_server = tonic::transport::Server::builder()
        .layer(timed)
        .add_service(CasesServer::new(CaseService {
            replicas: replicas.clone(),
            transport: transport.clone(),
            trust: trust.clone(),
        }))
        .add_service(federation_proto::v1::desks_server::DesksServer::new(
            crate::api::departments::DeskService {
                replicas: replicas.clone(),
                trust: trust.clone(),
            },
        ))
        .add_service(federation_proto::v1::notices_server::NoticesServer::new(
            crate::api::notices::NoticeService {
                replicas: replicas.clone(),
                trust: trust.clone(),
            },
        ))
        .add_service(OfficersServer::new(OfficerService {
            trust: trust.clone(),
            proposer: proposer.clone(),
        }))
        .add_service(AuditServer::new(AuditService {
            trust: trust.clone(),
        }))
        .add_service(AdminServer::new(AdminService {
            host: host.name.clone(),
            replicas: replicas.clone(),
            trust: trust.clone(),
            health: health.clone(),
            tls: live_tls.clone(),
            notify: notify_stats.clone(),
            directory: directory.clone(),
        }))
        .add_service(BackupServer::new(BackupService {
            host: host.name.clone(),
            replicas: replicas.clone(),
            trust: trust.clone(),
        }))
        .add_service(MembershipServer::new(MembershipService::new(
            &manifest,
            replicas.clone(),
            transport.clone(),
            trust.clone(),
        )))
        .add_service(
            federation_proto::v1::sites_server::SitesServer::new(sites)
                .max_decoding_message_size(MESSAGE_BYTES_MAX),
        )
        .add_service(
            FederationServer::new(FederationService {
                replicas: replicas.clone(),
                directory: directory.clone(),
                faults: faults.clone(),
                check_peer: true,
                trust: Some(trust.clone()),
                asker: Some(crate::federation::query::Asker {
                    directory: directory.clone(),
                    transport: transport.clone(),
                    faults: faults.clone(),
                }),
            })
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX),
        )
        .serve_with_incoming_shutdown(
            live_tls::incoming(api_listener, server_tls),
            stopped(stop_rx.clone()),
        );
    // The public surface (Open311, the petitioner's status page), where the manifest gives
    // this host an address for it.
    let public_task = match &host.http_addr {
        Some(http_addr) => {
            let listener = TcpListener::bind(http_addr)
                .await
                .with_context(|| format!("binding {http_addr}"))?;
            let public = crate::public::Public::new(
                &manifest,
                &host.name,
                replicas.clone(),
                proposer.clone(),
                directory.clone(),
            );
            Some(tokio::spawn(crate::public::serve(
                listener,
                crate::public::tls_config(&live_tls)?,
                Arc::new(public),
                stop_rx.clone(),
            )))
        }
        None => None,
    };
    let raft_task = tokio::spawn(raft_server);
    let api_task = tokio::spawn(api_server);
    let workers = Workers::default();
    let metrics_task = tokio::spawn(metrics::serve(
        host.metrics_addr.clone(),
        replicas.clone(),
        workers.clone(),
        registry.clone(),
        stopped(stop_rx.clone()),
    ));

    bootstrap(&manifest, &replicas).await?;
    let stop = || stop_rx.clone();
    workers.spawn(Ticker::new(replicas.clone()), stop());
    workers.spawn(AuditFlusher::new(trust.clone(), proposer), stop());
    let refresh_faults = {
        let (faults, run_dir) = (faults.clone(), config.log_dir.clone());
        move || faults.refresh(&run_dir)
    };
    workers.spawn(
        Every::new("fault file", FAULTS_POLL_MS, refresh_faults),
        stop(),
    );
    let load_disk_fault = {
        let data_dir = config.data_dir.clone();
        move || disk_fault.load(&data_dir)
    };
    let disk_poll = Every::new("disk failpoint", failpoint::POLL_MS, load_disk_fault);
    workers.spawn(disk_poll, stop());
    let reload_certificate = {
        let (live_tls, transport) = (live_tls.clone(), transport.clone());
        move || live_tls.reload(&transport)
    };
    workers.spawn(
        Every::new("certificate", live_tls::RELOAD_POLL_MS, reload_certificate),
        stop(),
    );
    // The dead-leader detector: a fast election when the host of an office's leader crashed.
    let lease = Duration::from_millis(ELECTION_TIMEOUT_MAX_MS);
    let detector = Detector::new(
        replicas.clone(),
        host.name.clone(),
        transport.clone(),
        lease,
        liveness.clone(),
        memberships_changed.clone(),
    );
    workers.spawn(detector, stop());
    let quiescence = Quiescence::new(
        replicas.clone(),
        transport.clone(),
        liveness,
        quiesce_notify,
    );
    workers.spawn(quiescence, stop());
    let pump_context = PumpContext {
        directory,
        transport: transport.clone(),
        faults,
        epoch: tokio::time::Instant::now(),
        deliveries: registry.deliveries.clone(),
    };
    let pump = Pump::new(replicas.clone(), pump_context, workers.clone(), stop());
    workers.spawn(pump, stop());
    // The sender of SMS and hotline callbacks, when the federation has a gateway for either (the
    // manifest was validated).
    let sms = manifest.sms_gateway_spec().ok().flatten();
    let callback = manifest.hotline_callback_spec().ok().flatten();
    if sms.is_some() || callback.is_some() {
        let sender = crate::notify::Notifier::new(
            replicas.clone(),
            crate::notify::Gateways {
                sms: sms.map(|spec| spec.open()),
                callback: callback.map(|spec| spec.open()),
            },
            notify_stats,
            config.log_dir.clone(),
            host.http_addr.as_deref().map(crate::public::url_of),
        );
        workers.spawn(sender, stop());
    }
    for replica in replicas.iter() {
        let watch = ReplicaWatch::new(
            replica.clone(),
            health.clone(),
            memberships_changed.clone(),
            stop(),
        );
        workers.spawn(watch, stop());
    }
    tracing::info!(host = %host.name, offices = ?replicas.offices(), raft = %host.raft_addr, api = %host.api_addr, site = host.site.as_deref().unwrap_or("-"), manifest_generation = manifest.generation, "host serving");

    shutdown.await;
    tracing::info!(host = %host.name, "shutting down");
    let _ = stop_tx.send(true);
    for task in [raft_task, api_task] {
        if let Ok(Err(error)) = task.await {
            tracing::warn!(%error, "server stopped with an error");
        }
    }
    let _ = metrics_task.await;
    if let Some(task) = public_task {
        let _ = task.await;
    }
    // Every worker (the pump's link workers too) ends at the stop signal, within a call's
    // deadline at most.
    workers
        .stopped(Duration::from_millis(WORKERS_STOP_MS))
        .await;
    for replica in replicas.iter() {
        if let Err(error) = replica.raft.shutdown().await {
            tracing::warn!(office = %replica.office, %error, "raft shutdown");
        }
    }
    db.flush().context("flushing RocksDB")?;
    tracing::info!(host = %host.name, "stopped");
    Ok(())
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

async fn start_replicas(
    manifest: &Manifest,
    host: &HostEntry,
    db: &HostDb,
    clock: &Arc<Clock>,
    transport: &Transport,
    secrets: &crate::secrets::Secrets,
    quiesce_notify: &Arc<Notify>,
) -> anyhow::Result<Vec<Replica>> {
    let petitioner_secret = secrets
        .petitioner_secret(&manifest.secret_hex)
        .context("reading the petitioner-key secret")?;
    let secret = petitioner_secret.as_slice();
    let calendar = Arc::new(Calendar::china());
    let config = raft_config()?;
    let quiesce = quiesce::enabled();
    let mut replicas = Vec::new();
    for code in &host.offices {
        let office_entry = manifest
            .office(code)
            .ok_or_else(|| anyhow!("host {} carries unknown office {code}", host.name))?;
        let member = office_entry
            .members
            .iter()
            .find(|member| member.host == host.name)
            .ok_or_else(|| anyhow!("office {code} has no member on host {}", host.name))?;
        let office: OfficeCode = code
            .parse()
            .map_err(|e| anyhow!("office code {code}: {e}"))?;
        let parent = match &office_entry.parent {
            Some(parent) => Some(
                parent
                    .parse()
                    .map_err(|e| anyhow!("parent code {parent}: {e}"))?,
            ),
            None => None,
        };
        let log_store = LogStore::new(db.clone(), code);
        let state_machine = StateMachineStore::new(
            db.clone(),
            office.clone(),
            parent,
            secret.to_vec(),
            calendar.clone(),
        )
        .map_err(|e| anyhow!("opening office {code}'s state: {e}"))?
        .signing_with(crate::machine::seal::OfficeSigner::new(
            office.clone(),
            secrets
                .office_key(code)
                .with_context(|| format!("reading office {code}'s signing key"))?,
        ));
        let data_key = secrets
            .data_key(code)
            .with_context(|| format!("office {code}'s data key"))?;
        let seal = crate::personal::OfficeSeal::new(office.clone(), &data_key, secret.to_vec());
        // Before Raft starts, so that nothing applies meanwhile.
        crate::machine::reseal::run(db, code, &seal)
            .map_err(|e| anyhow!("sealing office {code}'s personal data stored in clear: {e}"))?;
        let network = OfficeNetwork {
            office: code.clone(),
            transport: transport.clone(),
        };
        let raft = Raft::new(
            member.id,
            config.clone(),
            network.clone(),
            log_store,
            state_machine.clone(),
        )
        .await
        .with_context(|| format!("starting raft of office {code}"))?;
        let quiet = Quiet::start(raft.clone(), quiesce_notify.clone(), quiesce);
        replicas.push(Replica::new(
            office,
            member.id,
            raft,
            network,
            state_machine,
            clock.clone(),
            quiet,
            Arc::new(seal),
        ));
    }
    Ok(replicas)
}

/// Replica 1 of each office forms the group on its very first start.
async fn bootstrap(manifest: &Manifest, replicas: &Replicas) -> anyhow::Result<()> {
    for replica in replicas.iter().filter(|replica| replica.id == 1) {
        if replica.raft.is_initialized().await? {
            continue;
        }
        let office = manifest
            .office(replica.office.as_str())
            .ok_or_else(|| anyhow!("unknown office"))?;
        let mut members = BTreeMap::new();
        for member in &office.members {
            members.insert(member.id, node_info(manifest, &member.host)?);
        }
        if let Err(error) = replica.raft.initialize(members).await {
            tracing::warn!(office = %replica.office, %error, "initialize");
        }
    }
    Ok(())
}

/// Leaders propose a tick when it has work (`StateMachineStore::next_tick_at`: a case's alarm,
/// an expired request record); applying it raises warnings and overdue marks with the tick's
/// stamped time on every replica. The next tick's time is known in advance: it is read again
/// only when the office applied something since, so an idle office costs a comparison per look
/// and its group stays quiesced until the time comes.
struct Ticker {
    replicas: Replicas,
    interval: tokio::time::Interval,
    /// When each office's next tick has work (None: nothing pending), and the applied index it
    /// was read at.
    next_tick: BTreeMap<OfficeCode, (u64, Option<liandong_domain::Millis>)>,
}

impl Ticker {
    fn new(replicas: Replicas) -> Ticker {
        let mut interval = tokio::time::interval(Duration::from_millis(TICK_INTERVAL_MS));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ticker {
            replicas,
            interval,
            next_tick: BTreeMap::new(),
        }
    }

    /// Whether `replica`'s next tick is due, reading it again only if the office applied
    /// something since it was last read.
    fn tick_due(&mut self, replica: &Replica) -> bool {
        let applied = crate::health::applied_index(replica);
        let cached = self
            .next_tick
            .get(&replica.office)
            .filter(|(read_at, _)| *read_at == applied);
        let first = match cached {
            Some((_, first)) => *first,
            None => match replica.state_machine.next_tick_at() {
                Ok(first) => {
                    self.next_tick
                        .insert(replica.office.clone(), (applied, first));
                    first
                }
                Err(error) => {
                    tracing::warn!(office = %replica.office, %error, "reading when the next tick is due");
                    None
                }
            },
        };
        first.is_some_and(|at| at <= replica.clock.now())
    }
}

impl Worker for Ticker {
    fn name(&self) -> String {
        "deadline ticks".into()
    }

    async fn work(&mut self) -> Result<Step, String> {
        let replicas = self.replicas.clone();
        for replica in replicas.iter() {
            if !replica.is_leader() || !self.tick_due(replica) {
                continue;
            }
            if let Err(error) = replica.write(Operation::Tick).await {
                tracing::debug!(office = %replica.office, %error, "tick not committed");
            }
        }
        Ok(Step::Idle)
    }

    async fn wait_for_work(&mut self) {
        self.interval.tick().await;
    }
}

/// Watches one replica's Raft: every change is shown to its quiescence (a quiesced replica whose
/// Raft moved wakes) and its leader-change history (for "flapping"). When the Raft stops on its
/// own it says so in one error line naming the office, the replica and the cause: openraft stops
/// a replica whose storage write failed (a full disk, EIO, a failed fsync) and logs that in its
/// own words, naming neither the office nor what to do; the operator needs both. A stop because
/// the host shuts down is not reported.
struct ReplicaWatch {
    replica: Replica,
    health: Arc<Health>,
    metrics: watch::Receiver<openraft::RaftMetrics<u64, NodeInfo>>,
    /// The membership (its log index) at the last look; told to the detector when it changes.
    membership_index: Option<u64>,
    memberships_changed: Arc<Notify>,
    stop: watch::Receiver<bool>,
}

impl ReplicaWatch {
    fn new(
        replica: Replica,
        health: Arc<Health>,
        memberships_changed: Arc<Notify>,
        stop: watch::Receiver<bool>,
    ) -> ReplicaWatch {
        let metrics = replica.raft.metrics();
        ReplicaWatch {
            replica,
            health,
            metrics,
            membership_index: None,
            memberships_changed,
            stop,
        }
    }
}

impl Worker for ReplicaWatch {
    fn name(&self) -> String {
        format!("replica watch {}", self.replica.office)
    }

    async fn work(&mut self) -> Result<Step, String> {
        let (fatal, membership_index) = {
            let metrics = self.metrics.borrow_and_update();
            self.health.observe(&self.replica.office, &metrics);
            let membership_index = metrics.membership_config.log_id().map(|id| id.index);
            (metrics.running_state.clone().err(), membership_index)
        };
        if self.membership_index != membership_index {
            self.membership_index = membership_index;
            self.memberships_changed.notify_one();
        }
        self.replica.quiet.on_raft_change();
        let Some(fatal) = fatal else {
            return Ok(Step::Idle);
        };
        if !matches!(fatal, openraft::error::Fatal::Stopped) && !*self.stop.borrow() {
            // The storage's own words when a write failed: openraft's can be a consequence
            // ("channel closed") rather than the cause.
            let cause = self
                .replica
                .state_machine
                .storage_failure()
                .unwrap_or_else(|| fatal.to_string());
            tracing::error!(
                office = %self.replica.office,
                replica = self.replica.id,
                cause = %cause,
                raft = %fatal,
                "replica stopped: its storage failed; it acknowledges nothing until its host is restarted with the fault cleared"
            );
        }
        Ok(Step::Done)
    }

    async fn wait_for_work(&mut self) {
        if self.metrics.changed().await.is_err() {
            // Raft is gone: nothing will change again.
            std::future::pending::<()>().await;
        }
    }
}

/// How long a starting host waits for RocksDB's lock held by a previous process of itself.
const DB_LOCK_WAIT: Duration = Duration::from_secs(10);

/// Opens the host's RocksDB, waiting up to [`DB_LOCK_WAIT`] while its lock file is still held.
/// A host restarted at once after a crash (by systemd, or a drill) can find its previous
/// process's threads still exiting, holding the lock for a moment; anything else fails at once.
async fn open_db_waiting_for_lock(path: &Path) -> Result<HostDb, rocksdb::Error> {
    let start = std::time::Instant::now();
    loop {
        match HostDb::open(path) {
            Err(error) if HostDb::is_lock_held(&error) && start.elapsed() < DB_LOCK_WAIT => {
                tracing::warn!(%error, "RocksDB's lock is still held; waiting for the previous process to end");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host started while its previous process still holds RocksDB's lock waits for the
    /// lock instead of failing; once the holder lets go, it opens.
    #[tokio::test]
    async fn a_starting_host_waits_for_the_lock_of_its_previous_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let holder = HostDb::open(&path).expect("RocksDB opens");
        let error = HostDb::open(&path).err().expect("a second open is refused");
        assert!(HostDb::is_lock_held(&error), "{error}");
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(600)).await;
            drop(holder);
        });
        let opened = open_db_waiting_for_lock(&path).await;
        assert!(opened.is_ok(), "{:?}", opened.err());
        release.await.unwrap();
    }
}
