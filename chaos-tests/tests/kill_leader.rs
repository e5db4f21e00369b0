//! Proves: SIGKILLing an office's leader again and again under concurrent load (restarting it each time) loses no acknowledged write, registers no case twice, and keeps the client history linearizable.

mod common;

use std::time::{Duration, Instant};

use chaos_tests::cluster::Target;
use common::{
    heal_and_check, ms_summary, require_history, seed, start_loaded, wait_for_history, OFFICE,
};
use serde_json::json;

/// Leader kills per run.
const KILLS: usize = 8;
/// Operations the history should hold before healing, if the time budget allows (final reads
/// come on top)...
const TARGET_OPERATIONS: usize = 10_000;
/// ...and must hold in any case.
const MIN_OPERATIONS: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_repeatedly_loses_nothing() {
    let seed = seed();
    let (cluster, running) = start_loaded(seed, 200).await;
    let (workload, recorder) = (&running.workload, running.recorder.clone());

    let mut killed_replicas = Vec::new();
    let mut elections = Vec::new();
    let mut write_gaps = Vec::new();
    for _ in 0..KILLS {
        let killed = cluster
            .kill_leader(OFFICE)
            .await
            .expect("drill kill --leader");
        let at = Instant::now();
        killed_replicas.push(killed);
        let leader = cluster
            .wait_for_leader(OFFICE, Some(killed), Duration::from_secs(15))
            .await
            .expect("a new leader after the kill");
        elections.push(at.elapsed());
        assert_ne!(leader, killed);
        // The office serves again with two replicas of three.
        assert!(
            workload
                .wait_for_more_writes(20, Duration::from_secs(20))
                .await,
            "no write acknowledged after killing replica {killed}{}",
            cluster.logs_tail(20)
        );
        write_gaps.push(at.elapsed());
        workload
            .wait_for_more_ops(150, Duration::from_secs(30))
            .await;
        cluster
            .drill("restart", OFFICE, Target::Replica(killed))
            .await
            .expect("drill restart");
        workload
            .wait_for_more_ops(250, Duration::from_secs(30))
            .await;
    }
    wait_for_history(&recorder, TARGET_OPERATIONS, Duration::from_secs(40)).await;
    require_history(&recorder, MIN_OPERATIONS, Duration::from_secs(60)).await;
    let figures = json!({
        "kills": killed_replicas.len(),
        "killed_replicas": killed_replicas,
        "new_leader_ms": ms_summary(&elections),
        "first_writes_after_kill_ms": ms_summary(&write_gaps),
    });
    heal_and_check("kill_leader", &cluster, running, seed, figures).await;
}
