//! Proves: a leader that can receive but not send (its outgoing raft requests to both followers
//! cut, one way, by `liandong drill link --cut`) is replaced: the followers hear no heartbeat,
//! elect a new leader and keep acknowledging writes; after the heal the old leader has caught
//! up, nothing acknowledged is lost, nothing is registered twice and the client history is
//! linearizable.

mod common;
mod fault_helpers;

use std::time::{Duration, Instant};

use common::{heal_and_check, ms_summary, require_history, seed, start_loaded, OFFICE};
use fault_helpers::{applied_link_faults, heal, host_of, hosts, link};
use serde_json::json;

/// How long the cut holds once a new leader serves.
const CUT_HOLD: Duration = Duration::from_secs(6);
const MIN_OPERATIONS: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_send_is_replaced_and_catches_up() {
    let seed = seed();
    let (cluster, running) = start_loaded(seed, 200).await;
    let (workload, recorder) = (&running.workload, running.recorder.clone());
    let progress = workload.progress();

    let old = cluster
        .wait_for_leader(OFFICE, None, Duration::from_secs(15))
        .await
        .expect("a leader");
    let old_host = host_of(&cluster, OFFICE, old);
    let followers: Vec<String> = hosts(&cluster, OFFICE)
        .into_iter()
        .filter(|(id, _)| *id != old)
        .map(|(_, h)| h)
        .collect();
    for follower in &followers {
        link(&cluster, &old_host, follower, &["--cut"]).await;
    }
    let cut_at = Instant::now();
    let writes_at_cut = progress.writes();
    let new = cluster
        .wait_for_leader(OFFICE, Some(old), Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the leader that cannot send kept its office: {e}{}",
                cluster.logs_tail(20)
            )
        });
    let new_leader_after = cut_at.elapsed();
    assert!(
        workload
            .wait_for_more_writes(50, Duration::from_secs(20))
            .await,
        "no write acknowledged with the leader's outgoing links cut{}",
        cluster.logs_tail(20)
    );
    let first_writes_after = cut_at.elapsed();
    // Hold the cut: the old leader must not win again while it cannot send.
    let mut leaders_seen = std::collections::BTreeSet::new();
    let hold = Instant::now();
    while hold.elapsed() < CUT_HOLD {
        if let Ok(Some(leader)) = cluster.leader(OFFICE).await {
            leaders_seen.insert(leader);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let writes_during_cut = progress.writes() - writes_at_cut;
    assert!(
        !leaders_seen.contains(&old),
        "replica {old} led again while it could not send: {leaders_seen:?}"
    );
    heal(&cluster).await;
    let applied_after_heal = applied_link_faults(&cluster);
    assert!(
        applied_after_heal["cut"] > 0,
        "the hosts report no request failed on the cut links: {applied_after_heal:?}"
    );
    workload
        .wait_for_more_ops(300, Duration::from_secs(30))
        .await;
    require_history(&recorder, MIN_OPERATIONS, Duration::from_secs(40)).await;
    let figures = json!({
        "old_leader": old,
        "old_leader_host": old_host,
        "cut_links": followers.iter().map(|f| format!("{old_host} -> {f}")).collect::<Vec<_>>(),
        "new_leader": new,
        "new_leader_ms": ms_summary(&[new_leader_after]),
        "first_writes_after_cut_ms": ms_summary(&[first_writes_after]),
        "writes_acknowledged_during_cut": writes_during_cut,
        "leaders_seen_during_cut": leaders_seen,
        "requests_failed_on_cut_links": applied_after_heal["cut"],
    });
    heal_and_check("one_way_partition", &cluster, running, seed, figures).await;
}
