//! Proves: when an office's leader is SIGKILLed, the new leader is elected by the dead-leader
//! detector (`liandong_node::failover`: the crashed host's port refuses connections, one
//! surviving follower campaigns as soon as the other's lease is over), not by openraft's
//! election timer; and the kills lose no acknowledged write and keep the history linearizable.
//! The failover times are printed as figures, never asserted.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chaos_tests::cluster::{Cluster, Target};
use common::{heal_and_check, ms_summary, require_history, seed, start_loaded, OFFICE};
use liandong_node::failover::WON_MESSAGE;
use liandong_ops::view::plain;
use serde_json::json;

/// Leader kills per run.
const KILLS: usize = 5;
/// Operations the history must hold before healing.
const MIN_OPERATIONS: usize = 1_000;

/// The log file of the host carrying replica `id` of the office.
fn log_of(cluster: &Cluster, id: u64) -> PathBuf {
    let host = cluster
        .manifest
        .office(OFFICE)
        .and_then(|office| office.members.iter().find(|m| m.id == id))
        .map(|member| member.host.clone())
        .unwrap_or_default();
    cluster.dir.join("run").join(format!("{host}.log"))
}

/// Lines of that log saying replica `id` of the office won an election the detector started.
fn fast_wins(cluster: &Cluster, id: u64) -> usize {
    let replica = format!("replica={id} ");
    std::fs::read_to_string(log_of(cluster, id))
        .unwrap_or_default()
        .lines()
        .map(plain)
        .filter(|line| {
            line.contains(WON_MESSAGE)
                && line.contains(&format!("office={OFFICE} "))
                && line.contains(&replica)
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_leader_is_replaced_by_the_detector() {
    let seed = seed();
    let (cluster, running) = start_loaded(seed, 200).await;
    let (workload, recorder) = (&running.workload, running.recorder.clone());

    let mut killed_replicas = Vec::new();
    let mut new_leaders = Vec::new();
    let mut elections = Vec::new();
    let mut write_gaps = Vec::new();
    for _ in 0..KILLS {
        let wins_before: Vec<(u64, usize)> = cluster
            .replicas(OFFICE)
            .into_iter()
            .map(|(id, _)| (id, fast_wins(&cluster, id)))
            .collect();
        let killed = cluster
            .kill_leader(OFFICE)
            .await
            .expect("drill kill --leader");
        let at = Instant::now();
        killed_replicas.push(killed);
        assert!(
            workload
                .wait_for_more_writes(1, Duration::from_secs(20))
                .await,
            "no write acknowledged after killing replica {killed}{}",
            cluster.logs_tail(20)
        );
        write_gaps.push(at.elapsed());
        let leader = cluster
            .wait_for_leader(OFFICE, Some(killed), Duration::from_secs(15))
            .await
            .expect("a new leader after the kill");
        elections.push(at.elapsed());
        new_leaders.push(leader);
        let before = wins_before
            .iter()
            .find(|(id, _)| *id == leader)
            .map_or(0, |(_, wins)| *wins);
        assert!(
            fast_wins(&cluster, leader) > before,
            "replica {leader} leads office {OFFICE} after replica {killed} was killed, but its \
             host logged no \"{WON_MESSAGE}\": the election timer, not the detector, elected it{}",
            cluster.logs_tail(30)
        );
        workload
            .wait_for_more_ops(100, Duration::from_secs(30))
            .await;
        cluster
            .drill("restart", OFFICE, Target::Replica(killed))
            .await
            .expect("drill restart");
        workload
            .wait_for_more_ops(200, Duration::from_secs(30))
            .await;
    }
    require_history(&recorder, MIN_OPERATIONS, Duration::from_secs(60)).await;
    let figures = json!({
        "kills": killed_replicas.len(),
        "killed_replicas": killed_replicas,
        "new_leaders": new_leaders,
        "elected_by_detector": new_leaders.len(),
        "first_write_after_kill_ms": ms_summary(&write_gaps),
        "new_leader_seen_ms": ms_summary(&elections),
    });
    chaos_tests::figures!("{figures}");
    heal_and_check("fast_failover", &cluster, running, seed, figures).await;
}
