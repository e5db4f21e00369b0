//! What every chaos test does around its faults: a three-replica office on real processes, a
//! recorded concurrent workload, then heal, read everything back, check every invariant, print
//! the figures, and fail with the evidence if anything does not hold.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use chaos_tests::cluster::{Cluster, StatusSampler, Target};
use chaos_tests::history::Recorder;
use chaos_tests::invariants::{self, Invariant};
use chaos_tests::workload::{self, Workload, WorkloadConfig};
use serde_json::{json, Value};

/// The office under test: Zhaotong city, alone (no children), three replicas on three hosts.
pub const OFFICE: &str = "5306";

/// The workload's seed: `LIANDONG_CHAOS_SEED`, else a fresh one (printed, to run it again).
pub fn seed() -> u64 {
    std::env::var("LIANDONG_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::random::<u32>() as u64)
}

pub async fn start() -> Cluster {
    Cluster::start(&["--region", OFFICE, "--max-children", "0", "--replicas", "3"])
        .await
        .expect("starting a three-replica office")
}

/// The workload, and a status sampler running beside it (state hashes compared mid-run).
pub struct Running {
    pub workload: Workload,
    pub recorder: Recorder,
    pub sampler: StatusSampler,
}

pub fn start_workload(cluster: &Cluster, seed: u64) -> Running {
    let config = WorkloadConfig::new(OFFICE, seed);
    let workload = Workload::start(cluster.api_addrs(OFFICE), config);
    let recorder = workload.recorder();
    let sampler = cluster.sample_status(OFFICE, Duration::from_millis(200));
    Running {
        workload,
        recorder,
        sampler,
    }
}

/// A started office with its workload running, once the workload has made `ops` operations
/// before any fault (the run fails with the hosts' logs otherwise).
pub async fn start_loaded(seed: u64, ops: u64) -> (Cluster, Running) {
    let cluster = start().await;
    let running = start_workload(&cluster, seed);
    assert!(
        running
            .workload
            .wait_for_more_ops(ops, Duration::from_secs(30))
            .await,
        "the workload made no progress before any fault{}",
        cluster.logs_tail(20)
    );
    (cluster, running)
}

/// Waits until the history holds at least `n` operations (or `limit` passes).
pub async fn wait_for_history(recorder: &Recorder, n: usize, limit: Duration) -> bool {
    let start = Instant::now();
    while recorder.len() < n {
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// Waits until the history holds at least `n` operations; fails the test if it does not within
/// `limit`.
pub async fn require_history(recorder: &Recorder, n: usize, limit: Duration) {
    assert!(
        wait_for_history(recorder, n, limit).await,
        "only {} operations in the history",
        recorder.len()
    );
}

/// Quantiles of a list of durations, in milliseconds.
pub fn ms_summary(values: &[Duration]) -> Value {
    let mut ms: Vec<f64> = values.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| {
        if ms.is_empty() {
            0.0
        } else {
            ms[((ms.len() - 1) as f64 * q).round() as usize]
        }
    };
    json!({"count": ms.len(), "p50": at(0.5), "max": at(1.0)})
}

/// Acknowledged operations of each kind a run must have, or it proves nothing.
pub const MIN_EACH: usize = 100;

/// Stops the workload, brings every replica back, reads every known case linearizably (those
/// reads join the history), collects every replica's copy, checks every invariant, prints the
/// figures and panics with the evidence if an invariant fails.
pub async fn heal_and_check(
    test: &str,
    cluster: &Cluster,
    running: Running,
    seed: u64,
    figures: Value,
) -> Vec<Invariant> {
    let Running {
        workload,
        recorder,
        sampler,
    } = running;
    let started = Instant::now();
    let during = workload.stop().await;
    let mid_run_samples = sampler.stop().await;
    cluster
        .drill("resume", OFFICE, Target::All)
        .await
        .expect("resume");
    cluster
        .drill("restart", OFFICE, Target::All)
        .await
        .expect("restart");
    cluster
        .wait_for_leader(OFFICE, None, Duration::from_secs(30))
        .await
        .expect("a leader after healing");
    let cases: Vec<String> = during.acknowledged_cases().into_iter().collect();
    let addrs = cluster.api_addrs(OFFICE);
    let final_reads = workload::final_reads(
        &addrs,
        OFFICE,
        &recorder,
        1_000,
        &cases,
        4,
        Duration::from_secs(5),
    )
    .await;
    let unread = final_reads.iter().filter(|o| !o.is_ok()).count();
    let history = recorder.history();
    let mut state = cluster
        .final_state(OFFICE, &history, Duration::from_secs(90))
        .await
        .expect("reading every replica's copies");
    state.samples.extend(mid_run_samples);
    let mut checks = invariants::check_all(&history, &state);
    let panics = cluster.panics_in_logs();
    checks.push(Invariant {
        name: "no panics".to_string(),
        ok: panics.is_empty(),
        detail: if panics.is_empty() {
            "no host logged a panic".to_string()
        } else {
            panics.join("\n")
        },
    });
    if unread > 0 {
        checks.push(Invariant {
            name: "final reads".to_string(),
            ok: false,
            detail: format!(
                "{unread} of {} cases could not be read after healing",
                cases.len()
            ),
        });
    }
    // Not vacuous: the workload really filed, changed and read cases.
    let figures_so_far = history.figures();
    let enough = figures_so_far.files_acknowledged >= MIN_EACH
        && figures_so_far.acts_applied >= MIN_EACH
        && figures_so_far.acts_rejected >= MIN_EACH
        && figures_so_far.reads_ok >= MIN_EACH;
    checks.push(Invariant {
        name: "workload".to_string(),
        ok: enough,
        detail: format!(
            "{} filings, {} applied and {} refused commands, {} reads acknowledged (at least {MIN_EACH} of each wanted)",
            figures_so_far.files_acknowledged,
            figures_so_far.acts_applied,
            figures_so_far.acts_rejected,
            figures_so_far.reads_ok
        ),
    });
    let lin = chaos_tests::linearizability::check(&history);
    let report = json!({
        "test": test,
        "seed": seed,
        "history": history.figures().json(),
        "operations_during_faults": during.len(),
        "operations_checked_for_linearizability": lin.operations,
        "cases_checked": lin.keys,
        "cases_on_each_replica": state
            .replicas
            .iter()
            .map(|(id, c)| (id.to_string(), c.cases.values().filter(|c| matches!(c, Ok(Some(_)))).count()))
            .collect::<std::collections::BTreeMap<_, _>>(),
        "check_seconds": started.elapsed().as_secs_f64(),
        "faults": figures,
        "invariants": checks.iter().map(Invariant::json).collect::<Vec<_>>(),
    });
    chaos_tests::figures!(
        "{test} figures:\n{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    chaos_tests::figures!("{}", invariants::report(&checks));
    assert!(
        invariants::all_ok(&checks),
        "{test} (seed {seed}): invariants broken:\n{}\n{}",
        invariants::report(&checks),
        cluster.logs_tail(30)
    );
    checks
}
