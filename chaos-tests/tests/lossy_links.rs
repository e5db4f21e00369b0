//! Proves: with every raft link between the office's three hosts delaying each request and
//! losing a quarter of them (requests or replies), and then with hosts cut off and let back again
//! and again (flapping), under concurrent load, nothing acknowledged is lost, nothing is
//! registered twice, the replicas converge and the client history is linearizable. The hosts'
//! own counts of the requests their link faults delayed, dropped and failed show the faults
//! really reached the traffic.
//!
//! Why a 20 ms delay and not more: openraft 0.9 times each append-entries call out after one
//! heartbeat interval (50 ms here, `host::HEARTBEAT_INTERVAL_MS`), so a link whose one-way delay
//! approaches 50 ms stalls replication outright (every append times out before it is sent). The
//! office is sized for loopback and LAN links; a WAN deployment needs a longer heartbeat.

mod common;
mod fault_helpers;

use std::time::{Duration, Instant};

use common::{heal_and_check, require_history, seed, start_loaded, OFFICE};
use fault_helpers::{applied_link_faults, heal, hosts, link};
use rand::{Rng, SeedableRng};
use serde_json::json;

const DELAY_MS: &str = "20";
const DROP: &str = "0.25";
/// Operations the workload makes on the lossy links (or as many as it makes in the time).
const LOSSY_OPERATIONS: u64 = 1_500;
const LOSSY_LIMIT: Duration = Duration::from_secs(30);
const FLAPS: usize = 6;
const FLAP_HOLD: Duration = Duration::from_millis(1_500);
const MIN_OPERATIONS: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_and_flapping_links_lose_nothing() {
    let seed = seed();
    let (cluster, running) = start_loaded(seed, 200).await;
    let (workload, recorder) = (&running.workload, running.recorder.clone());
    let progress = workload.progress();
    let names: Vec<String> = hosts(&cluster, OFFICE)
        .into_iter()
        .map(|(_, h)| h)
        .collect();

    // Phase 1: every directed link delays and drops.
    for from in &names {
        for to in names.iter().filter(|to| *to != from) {
            link(
                &cluster,
                from,
                to,
                &["--delay-ms", DELAY_MS, "--drop", DROP],
            )
            .await;
        }
    }
    let lossy_at = Instant::now();
    let (writes_before, ops_before) = (progress.writes(), progress.completed());
    workload
        .wait_for_more_ops(LOSSY_OPERATIONS, LOSSY_LIMIT)
        .await;
    let lossy_writes = progress.writes() - writes_before;
    let lossy_ops = progress.completed() - ops_before;
    let lossy_seconds = lossy_at.elapsed().as_secs_f64();
    assert!(
        lossy_writes > 0,
        "no write acknowledged on lossy links{}",
        cluster.logs_tail(20)
    );
    heal(&cluster).await;
    let after_lossy = applied_link_faults(&cluster);
    assert!(
        after_lossy["delayed"] > 0
            && after_lossy["dropped_requests"] > 0
            && after_lossy["dropped_replies"] > 0,
        "the hosts report no delayed or dropped request: {after_lossy:?}"
    );

    // Phase 2: flapping, one host at a time cut off both ways, then let back.
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut flapped = Vec::new();
    let mut writes_per_flap = Vec::new();
    for _ in 0..FLAPS {
        let cut = names[rng.gen_range(0..names.len())].clone();
        let before = progress.writes();
        for other in names.iter().filter(|o| **o != cut) {
            link(&cluster, &cut, other, &["--cut"]).await;
            link(&cluster, other, &cut, &["--cut"]).await;
        }
        tokio::time::sleep(FLAP_HOLD).await;
        heal(&cluster).await;
        tokio::time::sleep(FLAP_HOLD).await;
        writes_per_flap.push(progress.writes() - before);
        flapped.push(cut);
    }
    let applied = applied_link_faults(&cluster);
    assert!(
        applied["cut"] > 0,
        "the hosts report no request failed on a cut link: {applied:?}"
    );
    assert!(
        workload
            .wait_for_more_writes(50, Duration::from_secs(20))
            .await,
        "no writes after the flapping{}",
        cluster.logs_tail(20)
    );
    require_history(&recorder, MIN_OPERATIONS, Duration::from_secs(40)).await;
    let figures = json!({
        "lossy": {
            "delay_ms": DELAY_MS, "drop": DROP, "links": names.len() * (names.len() - 1),
            "seconds": lossy_seconds,
            "operations": lossy_ops,
            "writes_acknowledged": lossy_writes,
            "applied_by_hosts": after_lossy,
        },
        "flapping": {
            "flaps": FLAPS,
            "hold_ms": FLAP_HOLD.as_millis() as u64,
            "hosts_cut_off": flapped,
            "writes_acknowledged_per_flap": writes_per_flap,
        },
        "applied_by_hosts_in_all": applied,
    });
    heal_and_check("lossy_links", &cluster, running, seed, figures).await;
}
