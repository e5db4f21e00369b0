//! The dead-leader detector: a fast election when the host of an office's leader has crashed.
//!
//! Why: openraft 0.9 fixes a follower's leader lease at `election_timeout_max`, and a follower
//! whose vote is committed starts an election only `lease + rand[min, max)` after it last heard
//! from the leader (checked on a tick every 1.5 heartbeats): twice the lease or nearly, although
//! a SIGKILLed host's ports refuse connections at once. The lease itself must be respected: a
//! voter refuses every vote request until its own lease has run out (`now > last heard + lease`),
//! and a refused election costs a whole election timeout.
//!
//! How: each host holds one plain TCP connection to the raft port of every other host it shares
//! an office with, sends nothing on it, and waits for it to close: a crashed process's sockets
//! close at once. It then reconnects: a refusal marks the host dead (a process that closed the
//! connection but still runs accepts the new one), and a dead host is tried again every
//! [`PROBE_INTERVAL_MS`] until it accepts. Nothing is polled while every host runs, and the server
//! sees one idle connection per watcher (its TLS accept logs the close at debug level only). Only
//! `ConnectionRefused` counts as dead: a paused or partitioned host keeps the connection open or
//! times out, and is left to the normal election timer (pausing is not crashing; its lease may
//! still be valid).
//!
//! When the host of a follower's current leader refuses, one surviving voter of the office
//! starts an election with `raft.trigger().elect()` as soon as every other voter's lease has
//! expired: their last heartbeat came before the crash, and the crash came before the refused
//! connection attempt started (`t0`), so at `t0 + election_timeout_max` every lease is over.
//! Which voter: the one the others would vote for, the longest log (`last_log` from each peer's
//! status, asked just before), ties to the lowest replica id; every survivor computes the same
//! answer from the same figures, so exactly one of them campaigns, and split votes do not happen.
//! Each (office, term) is acted on at most once; if anything is off (a new leader meanwhile, the
//! old host back) nothing is done, and the normal timers remain the fallback.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use federation_proto::v1::admin_client::AdminClient;
use federation_proto::v1::StatusRequest;
use liandong_domain::OfficeCode;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::quiesce::Cause;
use crate::raft::network::Transport;
use crate::raft::types::{NodeId, NodeInfo};
use crate::replica::{Replica, Replicas};
use crate::worker::{Step, Worker};

/// How often a host that refuses connections is tried again (and how often the detector looks
/// at its offices).
pub const PROBE_INTERVAL_MS: u64 = 25;
/// A probe that neither connects nor is refused within this long says nothing (a paused host,
/// a full accept queue, a loaded machine): only a refusal counts.
pub const PROBE_TIMEOUT_MS: u64 = 100;
/// Added to the other voters' lease before campaigning: covers scheduling between processes
/// (all on one monotonic clock when on one machine; a LAN adds its one-way delay on top).
pub const LEASE_MARGIN_MS: u64 = 5;
/// The peers' log positions are asked this long before the election: enough for one status call,
/// and late enough that appends in flight at the crash have landed.
pub const STATUS_LEAD_MS: u64 = 40;
/// How long one peer's status may take before it counts as not answering.
pub const STATUS_TIMEOUT_MS: u64 = 150;
/// How often the detector looks at its offices when every peer host runs and no membership
/// changed (a membership change is looked at as it happens).
pub const PEERS_REFRESH_MS: u64 = 1_000;
/// How long a campaign may take to win before the detector stops watching it.
pub const CAMPAIGN_WATCH_MS: u64 = 1_000;
/// Environment switch: `off` runs a host without the detector (only openraft's timers elect), to
/// compare failover times or to rule the detector out when investigating.
pub const SWITCH_ENV: &str = "LIANDONG_FAST_ELECTION";
/// The line a host logs when a replica won the election the detector started (tests look for it).
pub const WON_MESSAGE: &str = "fast election won";

/// Elections this process's detector started and won (the replica led the office at the very
/// term it campaigned for).
static FAST_ELECTIONS_WON: AtomicU64 = AtomicU64::new(0);

/// Elections this process's detector started and won, for the metrics page.
pub fn fast_elections_won() -> u64 {
    FAST_ELECTIONS_WON.load(Ordering::Relaxed)
}

/// What one connection attempt says about a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Alive,
    /// The port refuses: no process listens there (crashed or stopped).
    Refused,
    /// A timeout or another error: nothing is concluded.
    Unknown,
}

/// Opens and closes one TCP connection to `addr`.
pub async fn probe(addr: &str) -> Probe {
    match tokio::time::timeout(
        Duration::from_millis(PROBE_TIMEOUT_MS),
        TcpStream::connect(addr),
    )
    .await
    {
        Ok(Ok(_stream)) => Probe::Alive,
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => Probe::Refused,
        _ => Probe::Unknown,
    }
}

/// The host-level liveness channel: since when each peer host has refused connections (the start
/// of the first refused attempt of the current streak); absent while it accepts them or nothing
/// is known. Shared by the detector (which keeps it up to date) and quiescence (which leaves dead
/// hosts' members out, and wakes the offices that did when the host returns).
#[derive(Clone, Default)]
pub struct Liveness {
    dead_since: Arc<Mutex<HashMap<String, Instant>>>,
    /// Hosts that accepted a connection again after refusing, not yet taken by quiescence.
    revived: Arc<Mutex<HashSet<String>>>,
    /// Told when a host revives.
    revived_notify: Option<Arc<tokio::sync::Notify>>,
    /// Told when a host starts refusing (the detector waits on it while every host runs).
    died: Arc<tokio::sync::Notify>,
}

impl Liveness {
    /// A liveness table that tells `notify` whenever a dead host accepts connections again.
    pub fn notifying(notify: Arc<tokio::sync::Notify>) -> Liveness {
        Liveness {
            revived_notify: Some(notify),
            ..Liveness::default()
        }
    }

    fn record(&self, host: &str, started: Instant, probe: Probe) {
        let mut dead = self
            .dead_since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match probe {
            Probe::Refused => {
                if !dead.contains_key(host) {
                    dead.insert(host.to_string(), started);
                    self.died.notify_one();
                }
            }
            Probe::Alive => {
                if dead.remove(host).is_some() {
                    self.revived
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .insert(host.to_string());
                    if let Some(notify) = &self.revived_notify {
                        notify.notify_one();
                    }
                }
            }
            Probe::Unknown => {}
        }
    }

    /// Forgets every host not in `watched`: what is known of them may be stale by the time
    /// they are watched again.
    fn keep_only(&self, watched: &BTreeMap<String, String>) {
        self.dead_since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|host, _| watched.contains_key(host));
    }

    fn dead_since(&self, host: &str) -> Option<Instant> {
        self.dead_since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(host)
            .copied()
    }

    /// Whether `host` refuses connections now.
    pub fn is_dead(&self, host: &str) -> bool {
        self.dead_since(host).is_some()
    }

    fn any_dead(&self) -> bool {
        !self
            .dead_since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_empty()
    }

    /// Resolves when a host starts refusing connections (or one did since the last call).
    async fn a_host_died(&self) {
        self.died.notified().await
    }

    /// The hosts that came back since the last call.
    pub fn take_revived(&self) -> HashSet<String> {
        std::mem::take(
            &mut *self
                .revived
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }
}

/// A follower whose leader's host refuses connections: the facts one campaign decision needs.
#[derive(Debug, Clone)]
struct Suspect {
    office: OfficeCode,
    /// The term the dead leader led (the follower's current vote's term).
    term: u64,
    leader: NodeId,
    leader_node: NodeInfo,
    /// The other voters (neither this replica nor the dead leader) and where they are.
    others: BTreeMap<NodeId, NodeInfo>,
    dead_since: Instant,
}

/// The other hosts this host shares an office with, by name, with their raft addresses.
fn peer_hosts(replicas: &Replicas, this_host: &str) -> BTreeMap<String, String> {
    let mut peers = BTreeMap::new();
    for replica in replicas.iter() {
        let metrics = replica.raft.metrics();
        let metrics = metrics.borrow();
        for (_, node) in metrics.membership_config.membership().nodes() {
            if node.host != this_host {
                peers.insert(node.host.clone(), node.raft_addr.clone());
            }
        }
    }
    peers
}

/// Watches one peer host for as long as it runs: holds a connection to its raft port (the TLS
/// handshake never starts, so the server only keeps one idle accept task for it) and waits for
/// it to close, which a crash does at once; then reconnects, and a refusal marks the host dead.
/// While the host refuses, it is tried again every [`PROBE_INTERVAL_MS`].
async fn watch_host(host: String, addr: String, liveness: Liveness) {
    loop {
        let started = Instant::now();
        let connected = tokio::time::timeout(
            Duration::from_millis(PROBE_TIMEOUT_MS),
            TcpStream::connect(&addr),
        )
        .await;
        match connected {
            Ok(Ok(mut stream)) => {
                liveness.record(&host, started, Probe::Alive);
                let mut buf = [0u8; 256];
                while let Ok(read) = stream.read(&mut buf).await {
                    if read == 0 {
                        break;
                    }
                }
            }
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                liveness.record(&host, started, Probe::Refused);
                tokio::time::sleep(Duration::from_millis(PROBE_INTERVAL_MS)).await;
            }
            _ => tokio::time::sleep(Duration::from_millis(PROBE_INTERVAL_MS)).await,
        }
    }
}

/// The suspicion about `replica`'s office now: Some when it is a voting follower (or candidate)
/// whose current leader's host refuses connections.
fn suspect(replica: &Replica, liveness: &Liveness) -> Option<Suspect> {
    let metrics = replica.raft.metrics().borrow().clone();
    if metrics.running_state.is_err() || metrics.state.is_leader() {
        return None;
    }
    let membership = metrics.membership_config.membership();
    if !membership.voter_ids().any(|id| id == replica.id) {
        return None;
    }
    let leader = metrics
        .current_leader
        .filter(|leader| *leader != replica.id)?;
    let leader_node = membership.get_node(&leader)?.clone();
    let dead_since = liveness.dead_since(&leader_node.host)?;
    let others = membership
        .voter_ids()
        .filter(|id| *id != replica.id && *id != leader)
        .filter_map(|id| membership.get_node(&id).map(|node| (id, node.clone())))
        .collect();
    Some(Suspect {
        office: replica.office.clone(),
        term: metrics.current_term,
        leader,
        leader_node,
        others,
        dead_since,
    })
}

/// Whether `replica` still follows `suspect`'s leader in `suspect`'s term (no one else has
/// campaigned or won meanwhile).
fn unchanged(replica: &Replica, suspect: &Suspect) -> bool {
    let metrics = replica.raft.metrics().borrow().clone();
    metrics.running_state.is_ok()
        && !metrics.state.is_leader()
        && metrics.current_term == suspect.term
        && metrics.current_leader == Some(suspect.leader)
}

/// The voter that should campaign: the longest log, then the lowest id. `logs` holds every
/// surviving voter, this one included.
fn chosen(logs: &BTreeMap<NodeId, u64>) -> Option<NodeId> {
    logs.iter()
        .max_by(|(a_id, a_log), (b_id, b_log)| a_log.cmp(b_log).then(b_id.cmp(a_id)))
        .map(|(id, _)| *id)
}

/// The last log index `host` reports for replica `id` of `office`; None if it does not answer.
async fn peer_last_log(
    transport: &Transport,
    node: &NodeInfo,
    office: &OfficeCode,
    id: NodeId,
) -> Option<u64> {
    let channel = transport.channel(&node.api_addr).ok()?;
    let mut client = AdminClient::new(channel);
    let ask = client.status(StatusRequest::default());
    let reply = tokio::time::timeout(Duration::from_millis(STATUS_TIMEOUT_MS), ask)
        .await
        .ok()?
        .ok()?
        .into_inner();
    reply
        .replicas
        .iter()
        .find(|replica| replica.office == office.as_str() && replica.id == id)
        .map(|replica| replica.last_log)
}

/// One decision: wait out the other voters' leases, check nothing changed, campaign if this
/// replica is the chosen one, and log whether the campaign won.
async fn campaign(
    replica: Replica,
    suspect: Suspect,
    liveness: Liveness,
    transport: Transport,
    lease: Duration,
) {
    let fire_at = suspect.dead_since + lease + Duration::from_millis(LEASE_MARGIN_MS);
    let ask_at = fire_at
        .checked_sub(Duration::from_millis(STATUS_LEAD_MS))
        .unwrap_or(fire_at);
    tokio::time::sleep_until(ask_at).await;
    if !unchanged(&replica, &suspect) {
        return;
    }
    let mine = replica.last_log_index();
    let mut logs = BTreeMap::from([(replica.id, mine)]);
    for (id, node) in &suspect.others {
        if liveness.dead_since(&node.host).is_some() {
            continue;
        }
        // A live peer that does not say counts as level with this replica: the lowest id then
        // decides, so two replicas that cannot ask each other do not both campaign.
        let last_log = peer_last_log(&transport, node, &suspect.office, *id).await;
        logs.insert(*id, last_log.unwrap_or(mine));
    }
    if chosen(&logs) != Some(replica.id) {
        tracing::debug!(office = %suspect.office, replica = replica.id, ?logs, "leader's host is down; another replica campaigns");
        return;
    }
    tokio::time::sleep_until(fire_at).await;
    // The old host may be back (a quick restart): then its replica may lead again or its lease
    // be renewed, and the normal timers decide.
    if !unchanged(&replica, &suspect)
        || probe(&suspect.leader_node.raft_addr).await != Probe::Refused
    {
        return;
    }
    let since = suspect.dead_since.elapsed().as_millis() as u64;
    if let Err(error) = replica.raft.trigger().elect().await {
        tracing::warn!(office = %suspect.office, replica = replica.id, %error, "fast election not started");
        return;
    }
    let term = suspect.term + 1;
    tracing::info!(
        office = %suspect.office,
        replica = replica.id,
        term,
        dead_leader = suspect.leader,
        dead_host = %suspect.leader_node.host,
        refused_for_ms = since,
        "fast election: the leader's host refuses connections; campaigning"
    );
    let mut metrics = replica.raft.metrics();
    let watch = async {
        loop {
            {
                let now = metrics.borrow_and_update();
                if now.current_term > term {
                    return false;
                }
                if now.current_term == term && now.state.is_leader() {
                    return true;
                }
            }
            if metrics.changed().await.is_err() {
                return false;
            }
        }
    };
    let won = tokio::time::timeout(Duration::from_millis(CAMPAIGN_WATCH_MS), watch)
        .await
        .unwrap_or(false);
    if won {
        FAST_ELECTIONS_WON.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            office = %suspect.office,
            replica = replica.id,
            term,
            after_ms = suspect.dead_since.elapsed().as_millis() as u64,
            "{WON_MESSAGE}"
        );
    } else {
        tracing::info!(office = %suspect.office, replica = replica.id, term, "fast election did not win; the election timers decide");
    }
}

/// The detector as a worker: every [`PROBE_INTERVAL_MS`], keeps one watcher per peer host and
/// starts a campaign for each office whose leader's host is found dead. Its watchers and
/// campaigns end with it (their sets abort them when dropped).
pub struct Detector {
    replicas: Replicas,
    this_host: String,
    transport: Transport,
    /// The other voters' leader lease: openraft's `election_timeout_max`.
    lease: Duration,
    liveness: Liveness,
    handled: HashSet<(OfficeCode, u64)>,
    /// Told when a replica's membership changed (its peer hosts may have).
    peers_changed: Arc<tokio::sync::Notify>,
    campaigns: JoinSet<()>,
    watchers: HashMap<String, (String, tokio::task::AbortHandle)>,
    watcher_tasks: JoinSet<()>,
    interval: tokio::time::Interval,
}

impl Detector {
    pub fn new(
        replicas: Replicas,
        this_host: String,
        transport: Transport,
        lease: Duration,
        liveness: Liveness,
        peers_changed: Arc<tokio::sync::Notify>,
    ) -> Detector {
        let mut interval = tokio::time::interval(Duration::from_millis(PROBE_INTERVAL_MS));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Detector {
            replicas,
            this_host,
            transport,
            lease,
            liveness,
            handled: HashSet::new(),
            peers_changed,
            campaigns: JoinSet::new(),
            watchers: HashMap::new(),
            watcher_tasks: JoinSet::new(),
            interval,
        }
    }

    /// One watcher per peer host (a membership change may add or drop one, or move it).
    fn watch_peers(&mut self) {
        let peers = peer_hosts(&self.replicas, &self.this_host);
        self.watchers.retain(|host, (addr, task)| {
            let keep = peers.get(host) == Some(addr);
            if !keep {
                task.abort();
            }
            keep
        });
        self.liveness.keep_only(&peers);
        for (host, addr) in &peers {
            if !self.watchers.contains_key(host) {
                let watcher = watch_host(host.clone(), addr.clone(), self.liveness.clone());
                let task = self.watcher_tasks.spawn(watcher);
                self.watchers.insert(host.clone(), (addr.clone(), task));
            }
        }
        while self.watcher_tasks.try_join_next().is_some() {}
    }
}

impl Worker for Detector {
    fn name(&self) -> String {
        "dead-leader detector".into()
    }

    async fn work(&mut self) -> Result<Step, String> {
        if std::env::var(SWITCH_ENV).is_ok_and(|value| value == "off") {
            tracing::info!(
                "dead-leader detector off ({SWITCH_ENV}=off): only the election timers elect"
            );
            return Ok(Step::Done);
        }
        while self.campaigns.try_join_next().is_some() {}
        self.watch_peers();
        // Nothing to suspect while every peer host accepts connections: the common case costs
        // one lock per look.
        if !self.liveness.any_dead() {
            return Ok(Step::Idle);
        }
        // Forget decisions about terms every replica here has left behind.
        let replicas = &self.replicas;
        self.handled.retain(|(office, term)| {
            replicas
                .get(office)
                .is_some_and(|replica| replica.raft.metrics().borrow().current_term <= *term)
        });
        for replica in self.replicas.iter() {
            let Some(suspect) = suspect(replica, &self.liveness) else {
                continue;
            };
            if self.handled.insert((suspect.office.clone(), suspect.term)) {
                // A quiesced survivor starts its timers (its election after a grace long enough
                // for the one campaign below to win first).
                replica.quiet.wake(Cause::LeaderLost);
                self.campaigns.spawn(campaign(
                    replica.clone(),
                    suspect,
                    self.liveness.clone(),
                    self.transport.clone(),
                    self.lease,
                ));
            }
        }
        Ok(Step::Idle)
    }

    /// Every [`PROBE_INTERVAL_MS`] while a peer host refuses connections; otherwise only when
    /// one starts refusing, a membership changed, or [`PEERS_REFRESH_MS`] passed.
    async fn wait_for_work(&mut self) {
        if self.liveness.any_dead() {
            self.interval.tick().await;
            return;
        }
        let refresh = Duration::from_millis(PEERS_REFRESH_MS);
        tokio::select! {
            _ = self.liveness.a_host_died() => {}
            _ = self.peers_changed.notified() => {}
            _ = tokio::time::sleep(refresh) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_log_campaigns_and_ties_go_to_the_lowest_id() {
        let logs = |pairs: &[(u64, u64)]| pairs.iter().copied().collect::<BTreeMap<_, _>>();
        assert_eq!(chosen(&logs(&[(1, 10), (2, 10)])), Some(1));
        assert_eq!(chosen(&logs(&[(1, 9), (3, 10)])), Some(3));
        assert_eq!(chosen(&logs(&[(2, 11), (3, 10)])), Some(2));
        assert_eq!(chosen(&logs(&[(3, 0)])), Some(3));
        assert_eq!(chosen(&logs(&[])), None);
    }

    #[tokio::test]
    async fn a_closed_port_is_refused_and_an_open_one_alive() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().to_string();
        assert_eq!(probe(&open).await, Probe::Alive);
        drop(listener);
        assert_eq!(probe(&open).await, Probe::Refused);
        assert_eq!(probe("not an address").await, Probe::Unknown);
    }

    #[test]
    fn liveness_remembers_the_start_of_a_refusal_streak() {
        let liveness = Liveness::default();
        let t0 = Instant::now();
        liveness.record("a", t0, Probe::Refused);
        liveness.record("a", t0 + Duration::from_millis(25), Probe::Refused);
        liveness.record("a", t0 + Duration::from_millis(50), Probe::Unknown);
        assert_eq!(liveness.dead_since("a"), Some(t0));
        liveness.record("a", t0 + Duration::from_millis(75), Probe::Alive);
        assert_eq!(liveness.dead_since("a"), None);
    }
}
