//! Proves: an idle office quiesces (every replica stops its Raft timers) and stays safe and
//! available while quiesced — after its leader's host is SIGKILLed, a write through another
//! replica is acknowledged (the time is printed, never asserted), and with its quiesced leader
//! cut off from both followers the followers elect a new leader and serve; nothing acknowledged
//! is lost and the whole history stays linearizable. Without quiescence the office would never
//! report quiesced; without a client request waking a quiesced follower, no leader would be
//! elected while the quiesced leader is cut off (the followers' election timers stay stopped).

mod common;

use std::time::{Duration, Instant};

use chaos_tests::cluster::Cluster;
use chaos_tests::history::Recorder;
use chaos_tests::workload::{Workload, WorkloadConfig};
use common::{heal_and_check, ms_summary, seed, Running, OFFICE};
use serde_json::{json, Value};

/// Operations before the office is left idle, per phase.
const OPERATIONS_PER_PHASE: u64 = 200;
/// How long an idle office may take to quiesce (it waits about 2 s of idleness).
const QUIESCE_LIMIT: Duration = Duration::from_secs(30);

/// The office's entry in `status --json`.
async fn office(cluster: &Cluster) -> Value {
    let status = cluster.status().await.expect("status");
    status["offices"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|o| o["code"] == OFFICE)
        .cloned()
        .expect("the office in status")
}

/// Waits until every replica of the office reports itself quiesced; fails the test otherwise.
async fn wait_quiesced(cluster: &Cluster) -> Value {
    let start = Instant::now();
    loop {
        let office = office(cluster).await;
        let replicas = office["replicas"].as_array().cloned().unwrap_or_default();
        if !replicas.is_empty() && replicas.iter().all(|r| r["quiesced"] == true) {
            return office;
        }
        assert!(
            start.elapsed() < QUIESCE_LIMIT,
            "the idle office did not quiesce within {QUIESCE_LIMIT:?}: {office}{}",
            cluster.logs_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs a workload against `addrs` until it made `operations`, then stops it.
async fn load(cluster: &Cluster, addrs: Vec<String>, seed: u64, recorder: &Recorder) {
    let workload = Workload::start_with(addrs, WorkloadConfig::new(OFFICE, seed), recorder.clone());
    assert!(
        workload
            .wait_for_more_ops(OPERATIONS_PER_PHASE, Duration::from_secs(60))
            .await,
        "the workload made no progress{}",
        cluster.logs_tail(20)
    );
    workload.stop().await;
}

/// The host carrying replica `id` of the office.
fn host_of(cluster: &Cluster, id: u64) -> String {
    cluster
        .manifest
        .office(OFFICE)
        .and_then(|office| office.members.iter().find(|m| m.id == id))
        .map(|member| member.host.clone())
        .expect("a member with that id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiesced_office_fails_over_and_stays_linearizable() {
    let seed = seed();
    let cluster = common::start().await;
    let recorder = Recorder::new();

    // Phase 1: some load, then idle until every replica quiesced.
    load(&cluster, cluster.api_addrs(OFFICE), seed, &recorder).await;
    let before_kill = wait_quiesced(&cluster).await;

    // Phase 2: SIGKILL the quiesced leader's host; write through the other replicas only.
    let killed = cluster
        .kill_leader(OFFICE)
        .await
        .expect("drill kill --leader");
    let killed_at = Instant::now();
    let survivors: Vec<String> = cluster
        .replicas(OFFICE)
        .into_iter()
        .filter(|(id, _)| *id != killed)
        .map(|(_, addr)| addr)
        .collect();
    let workload = Workload::start_with(
        survivors,
        WorkloadConfig::new(OFFICE, seed + 1),
        recorder.clone(),
    );
    assert!(
        workload
            .wait_for_more_writes(1, Duration::from_secs(20))
            .await,
        "no write acknowledged after the quiesced leader's host (replica {killed}) was killed{}",
        cluster.logs_tail(30)
    );
    let first_write_after_kill = killed_at.elapsed();
    workload
        .wait_for_more_ops(OPERATIONS_PER_PHASE, Duration::from_secs(60))
        .await;
    workload.stop().await;
    cluster
        .drill(
            "restart",
            OFFICE,
            chaos_tests::cluster::Target::Replica(killed),
        )
        .await
        .expect("drill restart");
    let before_cut = wait_quiesced(&cluster).await;

    // Phase 3: cut the quiesced leader off both followers (both ways) while clients write
    // through every replica: the followers must elect a new leader; the old one, quiesced and
    // cut off, must never acknowledge a write the new one does not have.
    let old_leader = before_cut["leader"]
        .as_u64()
        .expect("a leader before the cut");
    let old_term = before_cut["term"].as_u64().unwrap_or(0);
    let leader_host = host_of(&cluster, old_leader);
    let followers: Vec<String> = cluster
        .replicas(OFFICE)
        .into_iter()
        .filter(|(id, _)| *id != old_leader)
        .map(|(id, _)| host_of(&cluster, id))
        .collect();
    for follower in &followers {
        for (from, to) in [(&leader_host, follower), (follower, &leader_host)] {
            cluster
                .cli(&[
                    "drill",
                    "link",
                    "--from-host",
                    from,
                    "--to-host",
                    to,
                    "--cut",
                ])
                .await
                .expect("drill link --cut");
        }
    }
    let cut_at = Instant::now();
    let workload = Workload::start_with(
        cluster.api_addrs(OFFICE),
        WorkloadConfig::new(OFFICE, seed + 2),
        recorder.clone(),
    );
    let new_leader = cluster
        .wait_for_leader(OFFICE, Some(old_leader), Duration::from_secs(20))
        .await
        .expect("the followers elect a leader while the quiesced one is cut off");
    let new_leader_after_cut = cut_at.elapsed();
    assert!(
        workload
            .wait_for_more_writes(50, Duration::from_secs(60))
            .await,
        "no writes acknowledged after the quiesced leader was cut off{}",
        cluster.logs_tail(30)
    );
    workload
        .wait_for_more_ops(OPERATIONS_PER_PHASE, Duration::from_secs(60))
        .await;
    cluster.cli(&["drill", "heal"]).await.expect("drill heal");
    let after_heal = office(&cluster).await;
    assert!(
        after_heal["term"].as_u64().unwrap_or(0) > old_term,
        "a new term after the cut: {after_heal}"
    );

    let figures = json!({
        "quiesced_before_kill": before_kill["quiesced"],
        "killed_replica": killed,
        "first_write_after_kill_ms": ms_summary(&[first_write_after_kill]),
        "quiesced_before_cut": before_cut["quiesced"],
        "cut_leader": old_leader,
        "new_leader": new_leader,
        "new_leader_seen_after_cut_ms": ms_summary(&[new_leader_after_cut]),
    });
    chaos_tests::figures!("{figures}");
    let sampler = cluster.sample_status(OFFICE, Duration::from_millis(200));
    let running = Running {
        workload,
        recorder,
        sampler,
    };
    heal_and_check("quiescence", &cluster, running, seed, figures).await;
}
