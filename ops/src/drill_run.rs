//! `liandong drill run`: a scripted drill under load. Clients file cases at every office while
//! faults are injected; then everything is healed and the report says what was attempted,
//! acknowledged and lost, how long failovers and the heal took, each office's availability over
//! time, and every invariant's result (JSON, and an HTML page with SVG plots).
//!
//! `disk-full` fills the disk of one host of the target office (the first county: its hosts
//! also carry its townships) with the storage failpoint (`liandong_node::store::failpoint`, a
//! marker file in the host's data directory; no root needed): first the office leader's host,
//! then a follower's. Each time the replica must stop (status `Shutdown`) while the office keeps
//! serving on the other two; then the fault is cleared, the host restarted, and the replica must
//! catch up. The report adds each fault's timings and the recovery times.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use federation_proto::v1::cases_client::CasesClient;
use federation_proto::v1::FileRequest;
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Value};
use tonic::transport::Channel;

use federation_proto::v1::StatusReply;
use liandong_node::manifest::HostEntry;
use liandong_node::store::failpoint;

use crate::client::{channel, Federation};
use crate::commands::Report;
use crate::{process, sample, view};

/// The drills this build runs.
pub const SCENARIOS: [&str; 7] = [
    "kill-leader-loop",
    "partition-county",
    "partition-flapping",
    "pause-replica",
    "rolling-restart-under-load",
    "clock-skew",
    "disk-full",
];
/// How far the clock-skew drill moves a host's clock (either way).
pub const CLOCK_SKEW_MS: i64 = 3_600_000;
/// How long one filing may take before it counts as failed (its outcome unknown).
pub const OPERATION_TIMEOUT_MS: u64 = 6_000;
/// Width of one availability bucket.
pub const BUCKET_MS: u64 = 1_000;
/// How long the heal phase may take to reach a verified federation.
pub const HEAL_DEADLINE_MS: u64 = 120_000;
/// At most this many points per office in `availability_over_time`: a long drill gets wider
/// buckets (whole multiples of [`BUCKET_MS`]), so the report stays small.
pub const AVAILABILITY_POINTS_MAX: u64 = 300;
/// At most this many fault events in the report (the first ones); the rest are only counted.
pub const FAULT_EVENTS_MAX: usize = 200;
/// How long a disk-full drill waits for the faulted replica to stop, and after its host's
/// restart for it to catch up.
pub const DISK_FAULT_OBSERVE_MS: u64 = 30_000;
/// How often the disk-full drill polls `status` while it waits.
pub const STATUS_POLL_MS: u64 = 100;

#[derive(Clone)]
struct Operation {
    office: String,
    started_ms: u64,
    completed_ms: u64,
    ok: bool,
    case_id: Option<String>,
}

#[derive(Default)]
struct Recorder {
    operations: Vec<Operation>,
}

struct Drill {
    federation: Federation,
    start: Instant,
    recorder: Arc<Mutex<Recorder>>,
    channels: Arc<Mutex<BTreeMap<String, Channel>>>,
    /// Where the drill is, for the progress line: [`PHASE_LOAD`], [`PHASE_HEAL`] or
    /// [`PHASE_CHECK`].
    phase: AtomicU8,
    /// Acknowledged cases looked up at their holder so far (the durability check).
    located: AtomicU64,
}

const PHASE_LOAD: u8 = 0;
const PHASE_HEAL: u8 = 1;
const PHASE_CHECK: u8 = 2;
/// `verify` runs and shows its own progress line.
const PHASE_VERIFY: u8 = 3;

/// One line on stderr, rewritten twice a second while the drill runs, when stderr is a
/// terminal: the phase, the time, filings acknowledged and failed, the durability check's count.
fn show_progress(drill: Arc<Drill>, scenario: String, seconds: u64) -> Option<ShownProgress> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let task = tokio::spawn(async move {
        loop {
            let (ok, failed, total) = match drill.recorder.lock() {
                Ok(recorder) => {
                    let ok = recorder.operations.iter().filter(|op| op.ok).count();
                    (
                        ok,
                        recorder.operations.len() - ok,
                        recorder.operations.len(),
                    )
                }
                Err(_) => (0, 0, 0),
            };
            let elapsed = drill.start.elapsed().as_secs();
            let phase = drill.phase.load(Ordering::Relaxed);
            if phase == PHASE_VERIFY {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            let line = match phase {
                PHASE_LOAD => format!(
                    "{scenario}: {}/{seconds} s, {ok} filings acknowledged, {failed} failed",
                    elapsed.min(seconds)
                ),
                PHASE_HEAL => {
                    format!("{scenario}: healing ({elapsed} s), {ok} acknowledged, {failed} failed")
                }
                _ => format!(
                    "{scenario}: checking: {} of {total} filings' cases looked up, then verify",
                    drill.located.load(Ordering::Relaxed)
                ),
            };
            eprint!("\r\x1b[2K{line}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    Some(ShownProgress(task))
}

/// The progress line's task: stopped, and the line ended, when dropped.
struct ShownProgress(tokio::task::JoinHandle<()>);

impl Drop for ShownProgress {
    fn drop(&mut self) {
        self.0.abort();
        eprintln!();
    }
}

impl Drill {
    fn elapsed_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn hosts_of(&self, office: &str) -> Vec<String> {
        let manifest = &self.federation.manifest;
        manifest
            .office(office)
            .map(|o| {
                o.members
                    .iter()
                    .filter_map(|m| manifest.host(&m.host).map(|h| h.api_addr.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn channel(&self, addr: &str) -> Option<Channel> {
        if let Some(channel) = self.channels.lock().ok()?.get(addr) {
            return Some(channel.clone());
        }
        let channel = channel(addr).await.ok()?;
        self.channels
            .lock()
            .ok()?
            .insert(addr.to_string(), channel.clone());
        Some(channel)
    }

    /// One client: files cases at random offices until `until`.
    async fn client(self: Arc<Self>, id: u64, until: Instant) {
        let offices: Vec<String> = self
            .federation
            .manifest
            .offices
            .iter()
            .map(|o| o.code.clone())
            .collect();
        let mut n = 0u64;
        while Instant::now() < until {
            n += 1;
            let office = offices
                .choose(&mut rand::thread_rng())
                .cloned()
                .unwrap_or_default();
            let started_ms = self.elapsed_ms();
            let request = FileRequest {
                office: office.clone(),
                registration: Some(sample::registration(id * 1_000_000 + n)),
                hops: 0,
                request_id: format!(
                    "drill-{:x}-{id}-{n}",
                    self.start.elapsed().as_nanos() as u64 ^ rand::random::<u64>()
                ),
                session_id: String::new(),
                ..FileRequest::default()
            };
            let case_id = self.file(&office, request).await;
            let completed_ms = self.elapsed_ms();
            let operation = Operation {
                office,
                started_ms,
                completed_ms,
                ok: case_id.is_some(),
                case_id,
            };
            if let Ok(mut recorder) = self.recorder.lock() {
                recorder.operations.push(operation);
            }
        }
    }

    /// Files at any of the office's hosts (they forward to the leader), retrying others within
    /// the operation's time limit. The case id if acknowledged. A host that fails (a crashed
    /// one refuses at once) is followed by the next one without a pause: the pause comes only
    /// after a whole round of hosts failed, so a dead leader's host does not delay the filing.
    async fn file(&self, office: &str, request: FileRequest) -> Option<String> {
        let deadline = Instant::now() + Duration::from_millis(OPERATION_TIMEOUT_MS);
        let mut hosts = self.hosts_of(office);
        hosts.shuffle(&mut rand::thread_rng());
        let round = hosts.len().max(1);
        for (tried, addr) in hosts.iter().cycle().enumerate() {
            if Instant::now() >= deadline {
                return None;
            }
            if let Some(channel) = self.channel(addr).await {
                let remaining = deadline.saturating_duration_since(Instant::now());
                let mut client = CasesClient::new(crate::client::for_office(channel, office));
                if let Ok(Ok(reply)) =
                    tokio::time::timeout(remaining, client.file(request.clone())).await
                {
                    let case = liandong_domain::Case::from_bytes(&reply.into_inner().case_document)
                        .ok()?;
                    return Some(case.id.to_string());
                }
            }
            if (tried + 1) % round == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        None
    }

    /// Filings at `office` sent at or after `from_ms` and acknowledged by `to_ms`.
    fn acknowledged_between(&self, office: &str, from_ms: u64, to_ms: u64) -> u64 {
        let Ok(recorder) = self.recorder.lock() else {
            return 0;
        };
        recorder
            .operations
            .iter()
            .filter(|op| {
                op.office == office && op.ok && op.started_ms >= from_ms && op.completed_ms <= to_ms
            })
            .count() as u64
    }

    /// Milliseconds from `at_ms` to the acknowledgement of the first filing at `office` that
    /// was sent after it.
    fn recovery_ms(&self, office: &str, at_ms: u64) -> Option<u64> {
        let recorder = self.recorder.lock().ok()?;
        recorder
            .operations
            .iter()
            .filter(|op| op.office == office && op.ok && op.started_ms >= at_ms)
            .map(|op| op.completed_ms)
            .min()
            .map(|completed| completed - at_ms)
    }
}

/// The officer a drill acts as at every office (filing, then reading back what it filed).
pub const DRILL_OFFICER: &str = "drill";

/// Signs the drill's officer in at every office: made (or given a new random password) with
/// the office's initial admin password from `DIR/secrets/<office>/admin.password`.
async fn sign_in_everywhere(federation: &Federation) -> anyhow::Result<()> {
    let roles = [
        liandong_node::raft::types::Role::Registrar,
        liandong_node::raft::types::Role::Handler,
    ];
    crate::session::sign_in_everywhere(federation, DRILL_OFFICER, &roles, None)
        .await
        .map_err(|e| anyhow!("the drill {e:#}"))
}

fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(rank).copied()
}

pub async fn run(
    federation: Federation,
    scenario: &str,
    seconds: u64,
    clients: u64,
) -> anyhow::Result<Report> {
    if !SCENARIOS.contains(&scenario) {
        bail!(
            "unknown scenario {scenario:?}: this build runs {}",
            SCENARIOS.join(", ")
        );
    }
    if seconds == 0 {
        bail!("--seconds must be at least 1");
    }
    let missing = crate::commands::wait_for_leaders(&federation, Duration::from_secs(30)).await;
    if !missing.is_empty() {
        bail!(
            "offices without a leader before the drill: {} (is the federation up?)",
            missing.join(", ")
        );
    }
    sign_in_everywhere(&federation).await?;
    let drill = Arc::new(Drill {
        federation,
        start: Instant::now(),
        recorder: Arc::default(),
        channels: Arc::default(),
        phase: AtomicU8::new(PHASE_LOAD),
        located: AtomicU64::new(0),
    });
    let shown = show_progress(drill.clone(), scenario.to_string(), seconds);
    let until = Instant::now() + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..clients.max(1))
        .map(|id| tokio::spawn(drill.clone().client(id, until)))
        .collect();
    let faults = inject(&drill, scenario, until).await?;
    for worker in workers {
        let _ = worker.await;
    }
    drill.phase.store(PHASE_HEAL, Ordering::Relaxed);
    let heal_ms = heal(&drill).await?;
    drill.phase.store(PHASE_CHECK, Ordering::Relaxed);
    let report = report(&drill, scenario, seconds, faults, heal_ms).await;
    drop(shown);
    report
}

/// What the fault phase did.
#[derive(Default)]
struct Faults {
    kills: u64,
    failover_ms: Vec<u64>,
    partitions: u64,
    pauses: u64,
    /// The office cut off, for partition drills.
    cut: Option<String>,
    /// The disk faults injected, for the disk-full drill.
    disk: Vec<DiskFault>,
    /// What was done when (ms since the drill's start), marked on the HTML plots.
    events: Vec<(u64, String)>,
}

/// One injected disk fault and what followed, in ms since the drill's start.
#[derive(Clone, Debug, serde::Serialize)]
struct DiskFault {
    office: String,
    replica: u64,
    host: String,
    /// "leader" or "follower": the replica's role when its disk filled.
    role: &'static str,
    injected_ms: u64,
    /// When `status` first showed the replica stopped (`Shutdown`); None if it never did.
    stopped_ms: Option<u64>,
    /// Filings at the office acknowledged while the replica was stopped (started after the stop
    /// was seen, completed before the fault was cleared).
    acknowledged_while_stopped: u64,
    cleared_ms: u64,
    /// How long the host's restart took (graceful stop and start).
    restarted_ms: u64,
    /// From the restart until the replica was back and had applied everything the office's
    /// leader had applied when the restart began; None if it did not in time.
    recovery_ms: Option<u64>,
}

async fn inject(drill: &Arc<Drill>, scenario: &str, until: Instant) -> anyhow::Result<Faults> {
    let layout = drill.federation.layout.clone();
    let manifest = drill.federation.manifest.clone();
    let mut faults = Faults::default();
    let county = manifest
        .offices
        .iter()
        .find(|o| o.level == "County")
        .or_else(|| manifest.offices.first())
        .map(|o| o.code.clone())
        .ok_or_else(|| anyhow!("an empty federation"))?;
    let period = Duration::from_millis(match scenario {
        "kill-leader-loop" => 3_000,
        "partition-flapping" => 2_000,
        "pause-replica" | "rolling-restart-under-load" | "clock-skew" => 5_000,
        _ => 0,
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    if scenario == "disk-full" {
        disk_full(drill, &county, until, &mut faults).await?;
        return Ok(faults);
    }
    if scenario == "partition-county" {
        crate::commands::set_partition(&layout, Some(&county))?;
        faults
            .events
            .push((drill.elapsed_ms(), format!("{county} cut off")));
        faults.partitions = 1;
        faults.cut = Some(county);
        tokio::time::sleep(until.saturating_duration_since(Instant::now())).await;
        return Ok(faults);
    }
    let mut restart_cursor = 0usize;
    while Instant::now() + period < until {
        let offices: Vec<String> = manifest.offices.iter().map(|o| o.code.clone()).collect();
        let office = offices
            .choose(&mut rand::thread_rng())
            .cloned()
            .unwrap_or_default();
        match scenario {
            "kill-leader-loop" => {
                let statuses = drill.federation.statuses().await;
                if let Some(leader) = view::office_leader(&statuses, &office) {
                    let host = manifest
                        .office(&office)
                        .and_then(|o| o.members.iter().find(|m| m.id == leader))
                        .map(|m| m.host.clone());
                    if let Some(host) = host {
                        let at = drill.elapsed_ms();
                        if process::kill_host(&layout, &host)?.is_some() {
                            faults.kills += 1;
                            faults.events.push((
                                at,
                                format!("SIGKILL host {host} (leader {leader} of {office})"),
                            ));
                            tokio::time::sleep(Duration::from_millis(1_500)).await;
                            if let Some(ms) = drill.recovery_ms(&office, at) {
                                faults.failover_ms.push(ms);
                            }
                            process::start_host(&layout, &host, &[])?;
                        }
                    }
                }
            }
            "partition-flapping" => {
                let flapping = if faults.partitions.is_multiple_of(2) {
                    Some(county.as_str())
                } else {
                    None
                };
                crate::commands::set_partition(&layout, flapping)?;
                faults.events.push((
                    drill.elapsed_ms(),
                    match flapping {
                        Some(cut) => format!("{cut} cut off"),
                        None => "healed".to_string(),
                    },
                ));
                faults.partitions += 1;
                faults.cut = Some(county.clone());
            }
            "clock-skew" => {
                // Restart one host with its clock an hour fast or slow: stamps stay monotonic
                // per office (the state machine's clock never runs backwards) and nothing is lost.
                let host = manifest.hosts[restart_cursor % manifest.hosts.len()]
                    .name
                    .clone();
                restart_cursor += 1;
                let skew = if restart_cursor.is_multiple_of(2) {
                    CLOCK_SKEW_MS
                } else {
                    -CLOCK_SKEW_MS
                };
                process::kill_host(&layout, &host)?;
                let env = [(
                    liandong_node::host::CLOCK_SKEW_ENV.to_string(),
                    skew.to_string(),
                )];
                process::start_host(&layout, &host, &env)?;
                faults.events.push((
                    drill.elapsed_ms(),
                    format!("host {host} restarted, clock {skew:+} ms"),
                ));
                faults.kills += 1;
            }
            "pause-replica" => {
                let members = process::office_hosts(&manifest, &office)?;
                if let Some((_, host)) = members.choose(&mut rand::thread_rng()) {
                    if let Some(pid) = process::running_pid(&layout, host) {
                        process::signal(pid, libc::SIGSTOP)?;
                        faults.pauses += 1;
                        faults
                            .events
                            .push((drill.elapsed_ms(), format!("SIGSTOP host {host}")));
                        tokio::time::sleep(Duration::from_millis(
                            rand::thread_rng().gen_range(1_000..2_500),
                        ))
                        .await;
                        process::signal(pid, libc::SIGCONT)?;
                    }
                }
            }
            _ => {
                // rolling-restart-under-load: stop hosts one at a time, gracefully, and start them again.
                let host = manifest.hosts[restart_cursor % manifest.hosts.len()]
                    .name
                    .clone();
                restart_cursor += 1;
                if process::stop_host(&layout, &host)?.is_some() {
                    faults.kills += 1;
                    faults
                        .events
                        .push((drill.elapsed_ms(), format!("host {host} restarted")));
                }
                process::start_host(&layout, &host, &[])?;
            }
        }
        tokio::time::sleep(period).await;
    }
    Ok(faults)
}

/// (state, last_applied) of one replica as its host reports it; None while the host is down.
fn replica_state(
    statuses: &[(HostEntry, Option<StatusReply>)],
    office: &str,
    replica: u64,
) -> Option<(String, u64)> {
    statuses
        .iter()
        .filter_map(|(_, reply)| reply.as_ref())
        .flat_map(|reply| reply.replicas.iter())
        .find(|r| r.office == office && r.id == replica)
        .map(|r| (r.state.clone(), r.last_applied))
}

/// The disk-full drill on `office`: the leader's host first, then a follower's, each in its
/// own half of the time left.
async fn disk_full(
    drill: &Arc<Drill>,
    office: &str,
    until: Instant,
    faults: &mut Faults,
) -> anyhow::Result<()> {
    let mut faulted_hosts = Vec::new();
    for role in ["leader", "follower"] {
        let left = until.saturating_duration_since(Instant::now());
        let slot = if role == "leader" { left / 2 } else { left };
        // Half the slot with the disk full, the rest to restart and catch up under load.
        let hold = (slot / 2).max(Duration::from_millis(2_000));
        let fault = one_disk_fault(drill, office, role, &faulted_hosts, hold, faults).await?;
        faulted_hosts.push(fault.host.clone());
        faults.disk.push(fault);
        let rest = slot.saturating_sub(hold);
        let slot_end = Instant::now() + rest.saturating_sub(Duration::from_millis(500));
        tokio::time::sleep(slot_end.saturating_duration_since(Instant::now())).await;
    }
    faults.kills = faults.disk.len() as u64;
    Ok(())
}

/// Fills the disk of the host of `office`'s leader (or of a follower) for `hold`, clears it,
/// restarts the host and waits for the replica to catch up. A leader's stop is a failover: the
/// time from the stop (as `status` first shows it) to the first filing acknowledged at the
/// office among those sent after it goes to the failover figures.
async fn one_disk_fault(
    drill: &Arc<Drill>,
    office: &str,
    role: &'static str,
    faulted_hosts: &[String],
    hold: Duration,
    faults: &mut Faults,
) -> anyhow::Result<DiskFault> {
    let layout = drill.federation.layout.clone();
    let members = process::office_hosts(&drill.federation.manifest, office)?;
    let statuses = drill.federation.statuses().await;
    let leader = view::office_leader(&statuses, office)
        .ok_or_else(|| anyhow!("office {office} has no leader for the disk-full drill"))?;
    // A follower on a host not faulted before, if there is one: more hosts see a full disk.
    let mut candidates: Vec<&(u64, String)> = members
        .iter()
        .filter(|(id, _)| (*id == leader) == (role == "leader"))
        .collect();
    candidates.sort_by_key(|(_, host)| faulted_hosts.contains(host));
    let (replica, host) = candidates
        .first()
        .map(|pair| (*pair).clone())
        .ok_or_else(|| anyhow!("office {office} has no {role} to fill the disk of"))?;
    let marker = failpoint::marker(&layout.data_dir(&host));
    let injected_ms = drill.elapsed_ms();
    std::fs::write(
        &marker,
        format!("drill disk-full: office {office} {role}\n"),
    )?;
    faults.events.push((
        injected_ms,
        format!("disk full: host {host} ({role} {replica} of {office})"),
    ));
    let held_until = Instant::now() + hold;
    // The replica stops at its next write (the host polls the marker every 100 ms).
    let mut stopped_ms = None;
    let observe_until = Instant::now() + Duration::from_millis(DISK_FAULT_OBSERVE_MS);
    while Instant::now() < observe_until {
        let statuses = drill.federation.statuses().await;
        if replica_state(&statuses, office, replica).is_some_and(|(state, _)| state == "Shutdown") {
            stopped_ms = Some(drill.elapsed_ms());
            break;
        }
        tokio::time::sleep(Duration::from_millis(STATUS_POLL_MS)).await;
    }
    if let Some(at) = stopped_ms {
        faults
            .events
            .push((at, format!("replica {replica} of {office} stopped")));
    }
    tokio::time::sleep(held_until.saturating_duration_since(Instant::now())).await;
    let cleared_ms = drill.elapsed_ms();
    let acknowledged_while_stopped = stopped_ms.map_or(0, |from| {
        drill.acknowledged_between(office, from, cleared_ms)
    });
    if role == "leader" {
        if let Some(ms) = stopped_ms.and_then(|at| drill.recovery_ms(office, at)) {
            faults.failover_ms.push(ms);
        }
    }
    std::fs::remove_file(&marker)?;
    // What the replica must reach to count as caught up: the office's applied index now.
    let statuses = drill.federation.statuses().await;
    let target = view::office_leader(&statuses, office)
        .and_then(|leader| replica_state(&statuses, office, leader))
        .map_or(0, |(_, applied)| applied);
    let restart_at = Instant::now();
    faults.events.push((
        drill.elapsed_ms(),
        format!("cleared; host {host} restarted"),
    ));
    process::stop_host(&layout, &host)?;
    process::start_host(&layout, &host, &[])?;
    let restarted_ms = restart_at.elapsed().as_millis() as u64;
    let mut recovery_ms = None;
    while restart_at.elapsed() < Duration::from_millis(DISK_FAULT_OBSERVE_MS) {
        let statuses = drill.federation.statuses().await;
        if let Some((state, applied)) = replica_state(&statuses, office, replica) {
            if state != "Shutdown" && applied >= target {
                recovery_ms = Some(restart_at.elapsed().as_millis() as u64);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(STATUS_POLL_MS)).await;
    }
    Ok(DiskFault {
        office: office.to_string(),
        replica,
        host,
        role,
        injected_ms,
        stopped_ms,
        acknowledged_while_stopped,
        cleared_ms,
        restarted_ms,
        recovery_ms,
    })
}

/// Heals every cut, starts every host that is down, and waits until `verify` passes. Returns
/// the milliseconds that took.
async fn heal(drill: &Drill) -> anyhow::Result<u64> {
    let layout = &drill.federation.layout;
    let healed = Instant::now();
    crate::commands::set_partition(layout, None)?;
    for host in &drill.federation.manifest.hosts {
        // A disk fault left behind (a drill interrupted half way): clear it and restart the
        // host, whose faulted replicas stay stopped until then.
        let marker = failpoint::marker(&layout.data_dir(&host.name));
        if marker.exists() {
            std::fs::remove_file(&marker)?;
            process::stop_host(layout, &host.name)?;
        }
        if let Some(pid) = process::running_pid(layout, &host.name) {
            let _ = process::signal(pid, libc::SIGCONT);
        }
        process::start_host(layout, &host.name, &[])?;
    }
    // Converged when every office answers and every outbox is empty (cheap to poll); `verify`
    // then checks every invariant once, in the report.
    loop {
        let statuses = drill.federation.statuses().await;
        let status = view::status_json(&drill.federation, &statuses);
        let offices = status["offices"].as_array().cloned().unwrap_or_default();
        let drained = offices
            .iter()
            .all(|o| o["leader"].is_u64() && o["outbox_pending"] == 0);
        if drained || healed.elapsed() > Duration::from_millis(HEAL_DEADLINE_MS) {
            return Ok(healed.elapsed().as_millis() as u64);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn report(
    drill: &Drill,
    scenario: &str,
    seconds: u64,
    faults: Faults,
    heal_ms: u64,
) -> anyhow::Result<Report> {
    let operations = drill
        .recorder
        .lock()
        .map_err(|_| anyhow!("recorder poisoned"))?
        .operations
        .clone();
    let acknowledged: Vec<&Operation> = operations.iter().filter(|op| op.ok).collect();
    // Durability: every acknowledged case is found at its holder after the heal.
    let mut lost = Vec::new();
    for op in &acknowledged {
        let id = op.case_id.as_deref().unwrap_or("");
        if crate::commands::locate(&drill.federation, id)
            .await
            .is_err()
        {
            lost.push(id.to_string());
        }
        drill.located.fetch_add(1, Ordering::Relaxed);
    }
    let mut ids: Vec<&str> = acknowledged
        .iter()
        .filter_map(|op| op.case_id.as_deref())
        .collect();
    ids.sort_unstable();
    let before = ids.len();
    ids.dedup();
    let duplicates = before - ids.len();

    let mut availability = BTreeMap::new();
    let mut totals: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for op in &operations {
        let total = totals.entry(op.office.clone()).or_default();
        total.0 += 1;
        total.1 += u64::from(op.ok);
    }
    for (office, (all, ok)) in &totals {
        availability.insert(
            office.clone(),
            if *all == 0 {
                1.0
            } else {
                *ok as f64 / *all as f64
            },
        );
    }
    let mut failovers = faults.failover_ms.clone();
    failovers.sort_unstable();
    drill.phase.store(PHASE_VERIFY, Ordering::Relaxed);
    let verify = crate::verify::verify(&drill.federation, &Default::default()).await?;
    let mut invariants: Vec<Value> = verify.json["invariants"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    invariants.push(json!({"name": "durability", "ok": lost.is_empty(), "detail": if lost.is_empty() { format!("{} acknowledged cases all found", acknowledged.len()) } else { format!("{} lost: {}", lost.len(), lost.iter().take(10).cloned().collect::<Vec<_>>().join(", ")) }}));
    invariants.push(json!({"name": "no_duplicates", "ok": duplicates == 0, "detail": format!("{duplicates} case ids acknowledged twice")}));
    if let Some(cut) = &faults.cut {
        let served = availability.get(cut).copied().unwrap_or(0.0);
        invariants.push(json!({"name": "autonomy", "ok": served > 0.9, "detail": format!("{cut} served {:.1}% of its filings while cut off", served * 100.0)}));
    }
    if !faults.disk.is_empty() {
        invariants.extend(disk_invariants(&faults.disk));
    }
    let ok = invariants.iter().all(|i| i["ok"] == true);
    let end_ms = operations
        .iter()
        .map(|op| op.started_ms + 1)
        .max()
        .unwrap_or(0)
        .max(seconds.saturating_mul(1_000));
    let over_time = availability_over_time(&operations, end_ms);
    let mut json = json!({
        "scenario": scenario,
        "seconds": seconds,
        "ok": ok,
        "operations": {"attempted": operations.len(), "acknowledged": acknowledged.len(), "failed": operations.len() - acknowledged.len()},
        "lost_acknowledged": lost.len(),
        "kills": faults.kills,
        "partitions": faults.partitions,
        "pauses": faults.pauses,
        "failover_ms": {"p50": percentile(&failovers, 0.5), "p99": percentile(&failovers, 0.99), "samples": failovers},
        "availability": availability,
        "availability_over_time": over_time,
        "heal_convergence_ms": heal_ms,
        "invariants": invariants,
        "fault_events": faults.events.iter().take(FAULT_EVENTS_MAX).map(|(t_ms, what)| json!({"t_ms": t_ms, "what": what})).collect::<Vec<_>>(),
        "fault_events_left_out": faults.events.len().saturating_sub(FAULT_EVENTS_MAX),
    });
    if !faults.disk.is_empty() {
        let mut recoveries: Vec<u64> = faults.disk.iter().filter_map(|f| f.recovery_ms).collect();
        recoveries.sort_unstable();
        json["disk_faults"] = json!(faults.disk.len());
        json["disk"] = json!(faults.disk);
        json["recovery_ms"] = json!({"p50": percentile(&recoveries, 0.5), "p99": percentile(&recoveries, 0.99), "samples": recoveries});
    }
    let page = drill
        .federation
        .layout
        .run_dir()
        .join(format!("drill-{scenario}.html"));
    std::fs::write(&page, html(&json))?;
    let text = format!(
        "{scenario}: {} ok; {} operations, {} acknowledged, {} lost; kills {}, failover p50 {} ms p99 {} ms; heal {heal_ms} ms\nreport: {}",
        if ok { "all invariants" } else { "NOT" },
        operations.len(),
        acknowledged.len(),
        lost.len(),
        faults.kills,
        json["failover_ms"]["p50"].as_u64().map_or("-".to_string(), |v| v.to_string()),
        json["failover_ms"]["p99"].as_u64().map_or("-".to_string(), |v| v.to_string()),
        page.display()
    );
    Ok(Report { json, text, ok })
}

/// The width of one availability bucket for a drill `end_ms` long: [`BUCKET_MS`], or a whole
/// multiple of it that keeps the series within [`AVAILABILITY_POINTS_MAX`] points.
fn bucket_ms(end_ms: u64) -> u64 {
    let buckets = end_ms.div_ceil(BUCKET_MS).max(1);
    BUCKET_MS * buckets.div_ceil(AVAILABILITY_POINTS_MAX).max(1)
}

/// Per office, the share of filings acknowledged among those sent in each fixed bucket, from the
/// drill's start to `end_ms` (after every filing's start): `{"t_ms": bucket start, "attempted":
/// n, "availability": 0..1}`, availability null where the office was sent nothing in that
/// bucket. Every office has the same buckets, at most [`AVAILABILITY_POINTS_MAX`].
fn availability_over_time(operations: &[Operation], end_ms: u64) -> Value {
    let width = bucket_ms(end_ms);
    let buckets = end_ms.div_ceil(width).max(1) as usize;
    let mut counts: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new();
    for op in operations {
        let series = counts
            .entry(op.office.as_str())
            .or_insert_with(|| vec![(0, 0); buckets]);
        if let Some(bucket) = series.get_mut((op.started_ms / width) as usize) {
            bucket.0 += 1;
            bucket.1 += u64::from(op.ok);
        }
    }
    let series: serde_json::Map<String, Value> = counts
        .into_iter()
        .map(|(office, buckets)| {
            let points: Vec<Value> = buckets
                .iter()
                .enumerate()
                .map(|(i, (all, ok))| {
                    json!({
                        "t_ms": i as u64 * width,
                        "attempted": all,
                        "availability": (*all > 0).then(|| *ok as f64 / *all as f64),
                    })
                })
                .collect();
            (office.to_string(), Value::Array(points))
        })
        .collect();
    Value::Object(series)
}

/// Escapes text for an HTML page.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One office's availability series as an SVG plot: time on x (seconds), share acknowledged on
/// y (0 to 100 %), a gap where the office was sent nothing, and the drill's fault events as
/// dashed red lines.
fn availability_svg(points: &[Value], end_ms: f64, events: &[(f64, String)]) -> String {
    let (width, height, left, bottom) = (640.0, 90.0, 34.0, 16.0);
    let plot_w = width - left - 6.0;
    let plot_h = height - bottom - 6.0;
    let x = |t_ms: f64| left + t_ms / end_ms.max(1.0) * plot_w;
    let y = |share: f64| 6.0 + (1.0 - share) * plot_h;
    let mut path = String::new();
    let mut pen_down = false;
    for point in points {
        match (point["t_ms"].as_f64(), point["availability"].as_f64()) {
            (Some(t), Some(share)) => {
                path.push_str(&format!(
                    "{}{:.1},{:.1} ",
                    if pen_down { "L" } else { "M" },
                    x(t),
                    y(share)
                ));
                pen_down = true;
            }
            _ => pen_down = false,
        }
    }
    let mut svg = format!(
        "<svg width=\"{width}\" height=\"{height}\" style=\"background:#f8f8f8\" font-size=\"10\" font-family=\"sans-serif\">"
    );
    for share in [0.0, 0.5, 1.0] {
        svg.push_str(&format!(
            "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"2\" y=\"{:.1}\">{:.0}%</text>",
            left + plot_w,
            y(share) + 3.0,
            share * 100.0,
            y = y(share)
        ));
    }
    let seconds = (end_ms / 1_000.0).ceil().max(1.0);
    let step = (seconds / 10.0).ceil().max(1.0);
    let mut second = 0.0;
    while second <= seconds {
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{second:.0}s</text>",
            x(second * 1_000.0),
            height - 3.0
        ));
        second += step;
    }
    for (t_ms, what) in events {
        svg.push_str(&format!(
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"6\" y2=\"{:.1}\" stroke=\"#c33\" stroke-dasharray=\"3,2\"><title>{}</title></line>",
            6.0 + plot_h,
            escape(what),
            x = x(*t_ms)
        ));
    }
    svg.push_str(&format!(
        "<path fill=\"none\" stroke=\"#2a6\" stroke-width=\"2\" d=\"{}\"/></svg>",
        path.trim_end()
    ));
    svg
}

/// The report as a page: the figures, the invariants, and per office an SVG plot of its
/// `availability_over_time` (the same series as the JSON), with the fault events marked.
fn html(report: &Value) -> String {
    let empty = serde_json::Map::new();
    let series = report["availability_over_time"]
        .as_object()
        .unwrap_or(&empty);
    let end_ms = series
        .values()
        .filter_map(|points| points.as_array()?.last()?["t_ms"].as_f64())
        .fold(0.0, f64::max)
        + series
            .values()
            .filter_map(|points| {
                let points = points.as_array()?;
                Some(points.get(1)?["t_ms"].as_f64()? - points.first()?["t_ms"].as_f64()?)
            })
            .fold(0.0, f64::max);
    let events: Vec<(f64, String)> = report["fault_events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e["t_ms"].as_f64()?, e["what"].as_str()?.to_string())))
        .collect();
    let mut plots = String::new();
    for (office, points) in series {
        let points = points.as_array().map(Vec::as_slice).unwrap_or(&[]);
        plots.push_str(&format!(
            "<h3>{}: {:.1}%</h3>{}\n",
            escape(office),
            report["availability"][office].as_f64().unwrap_or(0.0) * 100.0,
            availability_svg(points, end_ms, &events)
        ));
    }
    let event_list: String = events
        .iter()
        .map(|(t_ms, what)| format!("<li>{:.1} s: {}</li>", t_ms / 1_000.0, escape(what)))
        .collect();
    let invariants: String = report["invariants"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(i["name"].as_str().unwrap_or("")),
                if i["ok"] == true { "ok" } else { "FAILED" },
                escape(i["detail"].as_str().unwrap_or(""))
            )
        })
        .collect();
    let mut figures = json!({"operations": report["operations"], "lost_acknowledged": report["lost_acknowledged"], "kills": report["kills"], "failover_ms": report["failover_ms"], "heal_convergence_ms": report["heal_convergence_ms"]});
    for extra in ["disk_faults", "recovery_ms", "disk"] {
        if !report[extra].is_null() {
            figures[extra] = report[extra].clone();
        }
    }
    format!(
        "<!doctype html><meta charset=\"utf-8\"><title>Liandong drill {scenario}</title>\n<h1>Drill {scenario}: {verdict}</h1>\n<pre>{figures}</pre>\n<table border=\"1\" cellpadding=\"4\"><tr><th>invariant</th><th>result</th><th>detail</th></tr>{invariants}</table>\n<h2>Faults</h2><ul>{event_list}</ul>\n<h2>Availability per office over time (share of filings acknowledged, by when they were sent; dashed: faults)</h2>\n{plots}",
        scenario = escape(report["scenario"].as_str().unwrap_or("")),
        verdict = if report["ok"] == true { "every invariant holds" } else { "FAILED" },
        figures = escape(&serde_json::to_string_pretty(&figures).unwrap_or_default()),
    )
}

/// The disk-full drill's own invariants: each faulted replica stopped, the office served while
/// it was stopped, and the replica caught up after its host's restart.
fn disk_invariants(disk: &[DiskFault]) -> Vec<Value> {
    let describe = |f: &DiskFault| format!("{} replica {} ({})", f.office, f.replica, f.role);
    let never_stopped: Vec<String> = disk
        .iter()
        .filter(|f| f.stopped_ms.is_none())
        .map(describe)
        .collect();
    let unserved: Vec<String> = disk
        .iter()
        .filter(|f| f.stopped_ms.is_some() && f.acknowledged_while_stopped == 0)
        .map(describe)
        .collect();
    let unrecovered: Vec<String> = disk
        .iter()
        .filter(|f| f.recovery_ms.is_none())
        .map(describe)
        .collect();
    let verdict = |name: &str, failed: &[String], ok_detail: String| json!({"name": name, "ok": failed.is_empty(), "detail": if failed.is_empty() { ok_detail } else { failed.join("; ") }});
    vec![
        verdict(
            "disk_fault_stops_replica",
            &never_stopped,
            format!("{} faulted replicas stopped", disk.len()),
        ),
        verdict(
            "office_serves_without_it",
            &unserved,
            format!(
                "filings acknowledged while the replica was stopped: {:?}",
                disk.iter()
                    .map(|f| f.acknowledged_while_stopped)
                    .collect::<Vec<_>>()
            ),
        ),
        verdict(
            "replica_recovers_after_restart",
            &unrecovered,
            format!(
                "caught up {:?} ms after the restart",
                disk.iter()
                    .filter_map(|f| f.recovery_ms)
                    .collect::<Vec<_>>()
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(office: &str, started_ms: u64, ok: bool) -> Operation {
        Operation {
            office: office.to_string(),
            started_ms,
            completed_ms: started_ms + 5,
            ok,
            case_id: None,
        }
    }

    #[test]
    fn buckets_widen_to_keep_the_series_bounded() {
        assert_eq!(bucket_ms(14_000), BUCKET_MS);
        assert_eq!(bucket_ms(300_000), BUCKET_MS);
        assert_eq!(bucket_ms(300_001), 2 * BUCKET_MS);
        let hour: u64 = 3_600_000;
        assert!(hour.div_ceil(bucket_ms(hour)) <= AVAILABILITY_POINTS_MAX);
    }

    #[test]
    fn availability_over_time_has_every_bucket_for_every_office() {
        let operations = [
            op("5306", 10, true),
            op("5306", 20, false),
            op("5306", 2_500, true),
            op("530602", 2_999, true),
        ];
        let series = availability_over_time(&operations, 3_000);
        let city = series["5306"].as_array().unwrap();
        let county = series["530602"].as_array().unwrap();
        assert_eq!(city.len(), 3);
        assert_eq!(county.len(), 3);
        assert_eq!(city[0]["availability"], 0.5);
        assert_eq!(city[0]["attempted"], 2);
        assert!(city[1]["availability"].is_null(), "nothing sent: no figure");
        assert_eq!(city[2]["t_ms"], 2_000);
        assert_eq!(county[2]["availability"], 1.0);
    }

    #[test]
    fn the_page_plots_the_series_and_survives_an_empty_report() {
        let operations = [op("5306", 10, true), op("5306", 1_500, false)];
        let report = json!({
            "scenario": "disk-full",
            "ok": true,
            "availability": {"5306": 0.5},
            "availability_over_time": availability_over_time(&operations, 2_000),
            "fault_events": [{"t_ms": 1_000, "what": "disk full <h1>"}],
            "invariants": [],
        });
        let page = html(&report);
        assert!(page.contains("<svg") && page.contains("<path"), "{page}");
        assert!(page.contains("disk full &lt;h1&gt;"));
        assert!(html(&json!({})).contains("<h1>"));
    }
}
