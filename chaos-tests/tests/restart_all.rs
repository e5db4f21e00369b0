//! Proves: SIGKILLing all three hosts of an office at once and starting them again loses no acknowledged write: every case and command a client was told about is back on every replica.

mod common;

use std::time::{Duration, Instant};

use chaos_tests::cluster::Target;
use common::{
    heal_and_check, ms_summary, require_history, seed, start_loaded, wait_for_history, OFFICE,
};
use serde_json::json;

const CRASHES: usize = 3;
/// Operations the history should hold before healing, if the time budget allows (final reads
/// come on top)...
const TARGET_OPERATIONS: usize = 6_000;
/// ...and must hold in any case.
const MIN_OPERATIONS: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_a_whole_office_crash() {
    let seed = seed();
    let (cluster, running) = start_loaded(seed, 300).await;
    let (workload, recorder) = (&running.workload, running.recorder.clone());

    let mut acknowledged_before_crash = Vec::new();
    let mut recoveries = Vec::new();
    for _ in 0..CRASHES {
        // All three at once: no replica can save anything for the others.
        let kills = futures::future::join_all(
            (1..=3).map(|replica| cluster.drill("kill", OFFICE, Target::Replica(replica))),
        )
        .await;
        for kill in kills {
            kill.expect("drill kill --replica");
        }
        acknowledged_before_crash.push(workload.progress().writes());
        tokio::time::sleep(Duration::from_millis(500)).await;
        let at = Instant::now();
        cluster
            .drill("restart", OFFICE, Target::All)
            .await
            .expect("drill restart");
        cluster
            .wait_for_leader(OFFICE, None, Duration::from_secs(30))
            .await
            .expect("a leader after the restart");
        assert!(
            workload
                .wait_for_more_writes(20, Duration::from_secs(30))
                .await,
            "no write acknowledged after restarting the office{}",
            cluster.logs_tail(20)
        );
        recoveries.push(at.elapsed());
        workload
            .wait_for_more_ops(400, Duration::from_secs(30))
            .await;
    }
    wait_for_history(&recorder, TARGET_OPERATIONS, Duration::from_secs(40)).await;
    require_history(&recorder, MIN_OPERATIONS, Duration::from_secs(60)).await;
    let figures = json!({
        "crashes": CRASHES,
        "hosts_killed_per_crash": 3,
        "writes_acknowledged_before_each_crash": acknowledged_before_crash,
        "restart_to_first_writes_ms": ms_summary(&recoveries),
    });
    heal_and_check("restart_all", &cluster, running, seed, figures).await;
}
