//! Proves: an office's membership can be changed while its leader is being SIGKILLed under
//! concurrent load (remove a follower, kill the leader, add the removed replica back while the
//! leader is down, restart it; several rounds), the office serving whenever a quorum of its
//! current voters is alive, and in the end every replica agrees, nothing acknowledged is lost and
//! the client history is linearizable. Every other round the killed leader is also removed while
//! it is down and added back after its restart.
//!
//! A five-replica office: with three, removing a follower leaves two voters and killing the
//! leader then leaves no quorum, so nothing could be changed "during" the fault.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chaos_tests::cluster::{Cluster, Target};
use common::{heal_and_check, ms_summary, require_history, seed, start_workload, OFFICE};
use serde_json::{json, Value};

/// Rounds of remove / kill / re-add / restart.
const ROUNDS: usize = 6;
/// Writes that must be acknowledged after each step (the office is serving).
const WRITES_PER_STEP: u64 = 20;
/// How long a step may take to show those writes (an election, a catch-up).
const STEP_LIMIT: Duration = Duration::from_secs(30);
/// Operations the history must hold before healing, or the run proves little.
const MIN_OPERATIONS: usize = 2_000;

/// The office's voters and learners as `liandong status --json` reports them (its leader's view).
async fn membership(cluster: &Cluster) -> (Option<u64>, BTreeSet<u64>, BTreeSet<u64>) {
    let status = cluster.status().await.expect("liandong status");
    let office = status["offices"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|o| o["code"] == OFFICE)
        .cloned()
        .unwrap_or(Value::Null);
    let ids = |key: &str| -> BTreeSet<u64> {
        office[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_u64)
            .collect()
    };
    (office["leader"].as_u64(), ids("voters"), ids("learners"))
}

/// The voters a `replica add|remove --json` answer reports.
fn voters_of(reply: &Value) -> BTreeSet<u64> {
    reply["voters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_while_leaders_are_killed_lose_nothing() {
    let seed = seed();
    let cluster = Cluster::start(&["--region", OFFICE, "--max-children", "0", "--replicas", "5"])
        .await
        .expect("starting a five-replica office");
    let running = start_workload(&cluster, seed);
    assert!(
        running
            .workload
            .wait_for_more_ops(200, Duration::from_secs(30))
            .await,
        "the workload made no progress before any fault{}",
        cluster.logs_tail(20)
    );
    let (workload, recorder) = (&running.workload, running.recorder.clone());
    let all: BTreeSet<u64> = (1..=5).collect();

    let mut changes = 0usize;
    let mut kills = 0usize;
    let mut removed = Vec::new();
    let mut killed = Vec::new();
    let mut change_times = Vec::new();
    let mut catch_up_ms = Vec::new();
    for round in 0..ROUNDS {
        let (leader, voters, _) = membership(&cluster).await;
        let leader = leader.expect("a leader at the start of a round");
        assert_eq!(
            voters, all,
            "round {round} starts with every replica voting"
        );
        let followers: Vec<u64> = voters.iter().copied().filter(|&id| id != leader).collect();
        let follower = followers[round % followers.len()];

        // 1. Remove a follower: four voters, all alive.
        let at = Instant::now();
        let follower_text = follower.to_string();
        let reply = cluster
            .cli(&[
                "replica",
                "remove",
                "--office",
                OFFICE,
                "--replica",
                &follower_text,
            ])
            .await
            .unwrap_or_else(|e| panic!("round {round}: removing replica {follower}: {e:#}"));
        change_times.push(at.elapsed());
        changes += 1;
        removed.push(follower);
        let expected: BTreeSet<u64> = all.iter().copied().filter(|&id| id != follower).collect();
        assert_eq!(voters_of(&reply), expected, "round {round}: {reply}");
        assert!(
            workload
                .wait_for_more_writes(WRITES_PER_STEP, STEP_LIMIT)
                .await,
            "round {round}: no write acknowledged with replica {follower} removed{}",
            cluster.logs_tail(20)
        );

        // 2. Kill the leader: three of four voters alive, a quorum.
        let dead = cluster
            .kill_leader(OFFICE)
            .await
            .expect("drill kill --leader");
        kills += 1;
        killed.push(dead);
        cluster
            .wait_for_leader(OFFICE, Some(dead), STEP_LIMIT)
            .await
            .expect("a new leader after the kill");
        assert!(
            workload
                .wait_for_more_writes(WRITES_PER_STEP, STEP_LIMIT)
                .await,
            "round {round}: no write acknowledged with 3 of 4 voters alive{}",
            cluster.logs_tail(20)
        );

        // 3. Add the removed replica back while the killed leader is still down (4 of 5 alive).
        let host = cluster
            .manifest
            .member_host(OFFICE, follower)
            .map(|h| h.name.clone())
            .expect("the removed replica's host");
        let at = Instant::now();
        let reply = cluster
            .cli(&["replica", "add", "--office", OFFICE, "--host", &host])
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "round {round}: adding replica {follower} back on {host}: {e:#}{}",
                    cluster.logs_tail(20)
                )
            });
        change_times.push(at.elapsed());
        changes += 1;
        catch_up_ms.push(reply["catch_up_ms"].as_u64().unwrap_or(0));
        assert_eq!(voters_of(&reply), all, "round {round}: {reply}");
        assert!(
            workload
                .wait_for_more_writes(WRITES_PER_STEP, STEP_LIMIT)
                .await,
            "round {round}: no write acknowledged after re-adding replica {follower}{}",
            cluster.logs_tail(20)
        );

        // Every other round the killed leader is removed while it is down (a dead voter may
        // go: the other four answer), then restarted and added back. It restarts believing it
        // still votes, so it campaigns until it is added back: the leader that meets its higher
        // term steps down and the add is retried at the next one.
        let remove_dead = round % 2 == 1;
        if remove_dead {
            let dead_text = dead.to_string();
            let reply = cluster
                .cli(&[
                    "replica",
                    "remove",
                    "--office",
                    OFFICE,
                    "--replica",
                    &dead_text,
                ])
                .await
                .unwrap_or_else(|e| panic!("round {round}: removing dead replica {dead}: {e:#}"));
            changes += 1;
            removed.push(dead);
            let expected: BTreeSet<u64> = all.iter().copied().filter(|&id| id != dead).collect();
            assert_eq!(voters_of(&reply), expected, "round {round}: {reply}");
            assert!(
                workload
                    .wait_for_more_writes(WRITES_PER_STEP, STEP_LIMIT)
                    .await,
                "round {round}: no write acknowledged with dead replica {dead} removed{}",
                cluster.logs_tail(20)
            );
        }

        // 4. Restart the killed leader.
        cluster
            .drill("restart", OFFICE, Target::Replica(dead))
            .await
            .expect("drill restart");
        if remove_dead {
            let host = cluster
                .manifest
                .member_host(OFFICE, dead)
                .map(|h| h.name.clone())
                .expect("the dead replica's host");
            let reply = cluster
                .cli(&["replica", "add", "--office", OFFICE, "--host", &host])
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "round {round}: adding replica {dead} back on {host}: {e:#}{}",
                        cluster.logs_tail(20)
                    )
                });
            changes += 1;
            catch_up_ms.push(reply["catch_up_ms"].as_u64().unwrap_or(0));
            assert_eq!(voters_of(&reply), all, "round {round}: {reply}");
        }
        assert!(
            workload
                .wait_for_more_writes(WRITES_PER_STEP, STEP_LIMIT)
                .await,
            "round {round}: no write acknowledged after restarting replica {dead}{}",
            cluster.logs_tail(20)
        );
        workload
            .wait_for_more_ops(300, Duration::from_secs(20))
            .await;
    }

    let (_, voters, learners) = membership(&cluster).await;
    assert_eq!(voters, all, "every replica votes again at the end");
    assert!(learners.is_empty(), "no learner left behind: {learners:?}");
    require_history(&recorder, MIN_OPERATIONS, Duration::from_secs(60)).await;
    let figures = json!({
        "rounds": ROUNDS,
        "membership_changes": changes,
        "kills": kills,
        "removed_replicas": removed,
        "killed_replicas": killed,
        "change_ms": ms_summary(&change_times),
        "catch_up_ms": catch_up_ms,
    });
    let checks = heal_and_check("membership", &cluster, running, seed, figures).await;
    let checked = checks
        .iter()
        .find(|c| c.name == "linearizability")
        .and_then(|c| c.detail.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    chaos_tests::figures!(
        "{}",
        json!({
            "test": "membership",
            "seed": seed,
            "membership_changes": changes,
            "kills": kills,
            "operations_recorded": recorder.len(),
            "operations_checked": checked,
        })
    );
}
