//! Proves: a running leader's clock jumped an hour forward (`liandong drill skew`) stamps the
//! operations it proposes an hour ahead, and jumped an hour back (two hours down at once) stamps
//! nothing earlier than what the office already applied: in every replica's copy of every case
//! the history's stamps never decrease, and case numbers (issued in log order) carry registration
//! stamps that never decrease. Under concurrent load throughout; nothing acknowledged is lost and
//! the client history is linearizable.

mod common;
mod fault_helpers;

use std::time::Duration;

use common::{heal_and_check, require_history, seed, start_loaded, OFFICE};
use fault_helpers::{all_copies, heal, host_of, stamps_monotonic};
use serde_json::json;

const HOUR_MS: i64 = 3_600_000;
const MIN_OPERATIONS: usize = 2_000;

async fn skew(cluster: &chaos_tests::cluster::Cluster, host: &str, ms: i64) {
    let ms = ms.to_string();
    cluster
        .cli(&["drill", "skew", "--host", host, "--ms", &ms])
        .await
        .unwrap_or_else(|e| panic!("drill skew {host} {ms}: {e:#}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_clock_jumping_forward_and_back_never_runs_the_office_clock_back() {
    let seed = seed();
    let (cluster, running) = start_loaded(seed, 200).await;
    let (workload, recorder) = (&running.workload, running.recorder.clone());

    let leader = cluster
        .wait_for_leader(OFFICE, None, Duration::from_secs(15))
        .await
        .expect("a leader");
    let host = host_of(&cluster, OFFICE, leader);
    let forward_at = liandong_node::clock::wall_ms();
    skew(&cluster, &host, HOUR_MS).await;
    assert!(
        workload
            .wait_for_more_writes(300, Duration::from_secs(30))
            .await,
        "no writes with the leader's clock an hour ahead{}",
        cluster.logs_tail(20)
    );
    let leader_after_forward = cluster.leader(OFFICE).await.ok().flatten();
    let back_at = liandong_node::clock::wall_ms();
    skew(&cluster, &host, -HOUR_MS).await;
    assert!(
        workload
            .wait_for_more_writes(300, Duration::from_secs(30))
            .await,
        "no writes after the leader's clock jumped back{}",
        cluster.logs_tail(20)
    );
    let leader_after_back = cluster.leader(OFFICE).await.ok().flatten();
    heal(&cluster).await;
    workload
        .wait_for_more_ops(300, Duration::from_secs(30))
        .await;
    require_history(&recorder, MIN_OPERATIONS, Duration::from_secs(40)).await;
    let figures = json!({
        "leader": leader,
        "leader_host": host,
        "leader_after_forward_jump": leader_after_forward,
        "leader_after_back_jump": leader_after_back,
        "jumps_ms": [HOUR_MS, -2 * HOUR_MS, HOUR_MS],
    });
    heal_and_check("clock_jump", &cluster, running, seed, figures).await;

    // The stamps, on every replica's copy of every case the clients were told of.
    let cases: Vec<String> = recorder
        .history()
        .acknowledged_cases()
        .into_iter()
        .collect();
    let copies = all_copies(&cluster, OFFICE, &cases).await;
    let (mut stamps, violations) = stamps_monotonic(&copies);
    let stamps_of = |from: i64, to: i64| {
        copies
            .iter()
            .flat_map(|(_, case)| case.history.iter())
            .filter(|entry| entry.at >= from && entry.at < to)
            .count()
    };
    // Stamped an hour ahead (give or take 10 minutes): the forward jump reached the stamps.
    let ahead = stamps_of(forward_at + 50 * 60_000, back_at + 70 * 60_000);
    let latest = copies
        .iter()
        .flat_map(|(_, case)| case.history.iter().map(|e| e.at))
        .max()
        .unwrap_or(0);
    stamps["stamps_an_hour_ahead"] = json!(ahead);
    stamps["latest_stamp_ahead_of_wall_ms"] = json!(latest - liandong_node::clock::wall_ms());
    chaos_tests::figures!(
        "clock_jump stamps: {}",
        serde_json::to_string(&stamps).unwrap_or_default()
    );
    assert!(
        violations.is_empty(),
        "the office's clock ran backwards:\n{}",
        violations.join("\n")
    );
    assert!(
        ahead > 0,
        "no operation was stamped an hour ahead: the leader's clock never jumped"
    );
}
