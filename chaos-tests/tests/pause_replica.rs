//! Proves: a leader frozen with SIGSTOP for ~2 s loses its leadership (the other two elect a new leader at a higher term and keep serving), and after SIGCONT the stale leader rejoins without breaking durability, uniqueness, integrity or linearizability.

mod common;

use std::time::{Duration, Instant};

use chaos_tests::cluster::Target;
use common::{
    heal_and_check, ms_summary, require_history, seed, start_loaded, wait_for_history, OFFICE,
};
use serde_json::json;

const PAUSES: usize = 4;
const PAUSE: Duration = Duration::from_secs(2);
/// Operations the history should hold before healing, if the time budget allows (final reads
/// come on top)...
const TARGET_OPERATIONS: usize = 6_000;
/// ...and must hold in any case.
const MIN_OPERATIONS: usize = 2_000;

async fn term(cluster: &chaos_tests::cluster::Cluster) -> u64 {
    let status = cluster.status().await.expect("status");
    status["offices"][0]["term"].as_u64().expect("a term")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_is_replaced_and_rejoins() {
    let seed = seed();
    let (cluster, running) = start_loaded(seed, 200).await;
    let (workload, recorder) = (&running.workload, running.recorder.clone());
    let progress = workload.progress();

    let mut paused_replicas = Vec::new();
    let mut first_write_after_pause = Vec::new();
    let mut writes_while_paused = Vec::new();
    let mut terms = Vec::new();
    for _ in 0..PAUSES {
        let term_before = term(&cluster).await;
        let paused = cluster
            .drill("pause", OFFICE, Target::Leader)
            .await
            .expect("drill pause --leader");
        let replica = paused["targets"][0]["replica"]
            .as_u64()
            .expect("the paused replica");
        let at = Instant::now();
        paused_replicas.push(replica);
        // While it is frozen: do the two others elect a leader and serve?
        let before = progress.writes();
        let mut first = None;
        while at.elapsed() < PAUSE {
            if first.is_none() && progress.writes() > before {
                first = Some(at.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        writes_while_paused.push(progress.writes() - before);
        first_write_after_pause.extend(first);
        cluster
            .drill("resume", OFFICE, Target::Replica(replica))
            .await
            .expect("drill resume");
        // It lost its leadership: another replica leads, at a higher term.
        let leader = cluster
            .wait_for_leader(OFFICE, Some(replica), Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("replica {replica} kept its leadership: {e}"));
        let term_after = term(&cluster).await;
        terms.push((term_before, term_after));
        assert_ne!(leader, replica);
        assert!(
            term_after > term_before,
            "term {term_before} -> {term_after}"
        );
        assert!(
            workload
                .wait_for_more_writes(50, Duration::from_secs(20))
                .await,
            "no writes after resuming replica {replica}{}",
            cluster.logs_tail(20)
        );
        workload
            .wait_for_more_ops(300, Duration::from_secs(30))
            .await;
    }
    wait_for_history(&recorder, TARGET_OPERATIONS, Duration::from_secs(40)).await;
    require_history(&recorder, MIN_OPERATIONS, Duration::from_secs(60)).await;
    assert!(
        writes_while_paused.iter().any(|&w| w > 0),
        "no write was acknowledged while a leader was frozen: {writes_while_paused:?}"
    );
    let figures = json!({
        "pauses": paused_replicas.len(),
        "pause_ms": PAUSE.as_millis() as u64,
        "paused_replicas": paused_replicas,
        "terms_before_after": terms,
        "first_write_after_pause_ms": ms_summary(&first_write_after_pause),
        "writes_acknowledged_while_paused": writes_while_paused,
    });
    heal_and_check("pause_replica", &cluster, running, seed, figures).await;
}
