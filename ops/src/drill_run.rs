//! `liandong drill run`: a scripted drill under load. Clients file cases at every office while
//! faults are injected; then everything is healed and the report says what was attempted,
//! acknowledged and lost, how long failovers and the heal took, each office's availability over
//! time, and every invariant's result (JSON, and an HTML page with SVG plots).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use federation_proto::v1::cases_client::CasesClient;
use federation_proto::v1::FileRequest;
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Value};
use tonic::transport::Channel;

use crate::client::{channel, Federation};
use crate::commands::Report;
use crate::{process, sample, view};

/// The drills this build runs.
pub const SCENARIOS: [&str; 6] = [
    "kill-leader-loop",
    "partition-county",
    "partition-flapping",
    "pause-replica",
    "rolling-restart-under-load",
    "clock-skew",
];
/// How far the clock-skew drill moves a host's clock (either way).
pub const CLOCK_SKEW_MS: i64 = 3_600_000;
/// How long one filing may take before it counts as failed (its outcome unknown).
pub const OPERATION_TIMEOUT_MS: u64 = 6_000;
/// Width of one availability bucket.
pub const BUCKET_MS: u64 = 1_000;
/// How long the heal phase may take to reach a verified federation.
pub const HEAL_DEADLINE_MS: u64 = 120_000;

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
    /// the operation's time limit. The case id if acknowledged.
    async fn file(&self, office: &str, request: FileRequest) -> Option<String> {
        let deadline = Instant::now() + Duration::from_millis(OPERATION_TIMEOUT_MS);
        let mut hosts = self.hosts_of(office);
        hosts.shuffle(&mut rand::thread_rng());
        for addr in hosts.iter().cycle() {
            if Instant::now() >= deadline {
                return None;
            }
            let Some(channel) = self.channel(addr).await else {
                continue;
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            let mut client = CasesClient::new(channel);
            if let Ok(Ok(reply)) =
                tokio::time::timeout(remaining, client.file(request.clone())).await
            {
                let case =
                    liandong_domain::Case::from_bytes(&reply.into_inner().case_document).ok()?;
                return Some(case.id.to_string());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
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
    let drill = Arc::new(Drill {
        federation,
        start: Instant::now(),
        recorder: Arc::default(),
        channels: Arc::default(),
    });
    let until = Instant::now() + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..clients.max(1))
        .map(|id| tokio::spawn(drill.clone().client(id, until)))
        .collect();
    let faults = inject(&drill, scenario, until).await?;
    for worker in workers {
        let _ = worker.await;
    }
    let heal_ms = heal(&drill).await?;
    report(&drill, scenario, seconds, faults, heal_ms).await
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
    if scenario == "partition-county" {
        crate::commands::set_partition(&layout, Some(&county))?;
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
                faults.kills += 1;
            }
            "pause-replica" => {
                let members = process::office_hosts(&manifest, &office)?;
                if let Some((_, host)) = members.choose(&mut rand::thread_rng()) {
                    if let Some(pid) = process::running_pid(&layout, host) {
                        process::signal(pid, libc::SIGSTOP)?;
                        faults.pauses += 1;
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
                }
                process::start_host(&layout, &host, &[])?;
            }
        }
        tokio::time::sleep(period).await;
    }
    Ok(faults)
}

/// Heals every cut, starts every host that is down, and waits until `verify` passes. Returns
/// the milliseconds that took.
async fn heal(drill: &Drill) -> anyhow::Result<u64> {
    let layout = &drill.federation.layout;
    let healed = Instant::now();
    crate::commands::set_partition(layout, None)?;
    for host in &drill.federation.manifest.hosts {
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
    let mut timeline: BTreeMap<String, BTreeMap<u64, (u64, u64)>> = BTreeMap::new();
    for op in &operations {
        let bucket = timeline
            .entry(op.office.clone())
            .or_default()
            .entry(op.started_ms / BUCKET_MS)
            .or_default();
        bucket.0 += 1;
        bucket.1 += u64::from(op.ok);
    }
    for (office, buckets) in &timeline {
        let (all, ok) = buckets
            .values()
            .fold((0, 0), |(a, o), (ba, bo)| (a + ba, o + bo));
        availability.insert(
            office.clone(),
            if all == 0 {
                1.0
            } else {
                ok as f64 / all as f64
            },
        );
    }
    let mut failovers = faults.failover_ms.clone();
    failovers.sort_unstable();
    let verify = crate::verify::verify(&drill.federation).await?;
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
    let ok = invariants.iter().all(|i| i["ok"] == true);
    let json = json!({
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
        "heal_convergence_ms": heal_ms,
        "invariants": invariants,
    });
    let page = drill
        .federation
        .layout
        .run_dir()
        .join(format!("drill-{scenario}.html"));
    std::fs::write(&page, html(&json, &timeline))?;
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

/// The report as a page: the figures, the invariants, and per office an SVG plot of the share
/// of filings acknowledged in each second.
fn html(report: &Value, timeline: &BTreeMap<String, BTreeMap<u64, (u64, u64)>>) -> String {
    let mut plots = String::new();
    let width = 600.0;
    let height = 60.0;
    let last = timeline
        .values()
        .flat_map(|b| b.keys())
        .max()
        .copied()
        .unwrap_or(1)
        .max(1) as f64;
    for (office, buckets) in timeline {
        let points: Vec<String> = buckets
            .iter()
            .map(|(second, (all, ok))| {
                let x = *second as f64 / last * width;
                let y = height - (*ok as f64 / (*all).max(1) as f64) * height;
                format!("{x:.1},{y:.1}")
            })
            .collect();
        plots.push_str(&format!(
            "<h3>{office}: {:.1}%</h3><svg width=\"{width}\" height=\"{height}\" style=\"background:#f4f4f4\"><polyline fill=\"none\" stroke=\"#2a6\" stroke-width=\"2\" points=\"{}\"/></svg>\n",
            report["availability"][office].as_f64().unwrap_or(0.0) * 100.0,
            points.join(" ")
        ));
    }
    let invariants: String = report["invariants"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                i["name"].as_str().unwrap_or(""),
                if i["ok"] == true { "ok" } else { "FAILED" },
                i["detail"].as_str().unwrap_or("").replace('<', "&lt;")
            )
        })
        .collect();
    format!(
        "<!doctype html><meta charset=\"utf-8\"><title>Liandong drill {scenario}</title>\n<h1>Drill {scenario}: {verdict}</h1>\n<pre>{figures}</pre>\n<table border=\"1\" cellpadding=\"4\"><tr><th>invariant</th><th>result</th><th>detail</th></tr>{invariants}</table>\n<h2>Availability per office (share of filings acknowledged, per second)</h2>\n{plots}",
        scenario = report["scenario"].as_str().unwrap_or(""),
        verdict = if report["ok"] == true { "every invariant holds" } else { "FAILED" },
        figures = serde_json::to_string_pretty(&json!({"operations": report["operations"], "lost_acknowledged": report["lost_acknowledged"], "kills": report["kills"], "failover_ms": report["failover_ms"], "heal_convergence_ms": report["heal_convergence_ms"]})).unwrap_or_default(),
    )
}
