//! Proves: a membership change that would cost an office its quorum is refused and changes
//! nothing (removing a live follower while another is down; going below two voters), as are
//! unknown replicas, hosts without a slot of the office and a second change while one runs (a
//! learner that cannot catch up is removed again); and the membership survives every host
//! restarting.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use chaos_tests::cluster::{Cluster, Target};
use common::{start, OFFICE};
use serde_json::{json, Value};

/// The office's (leader, voters, learners, membership log index) from its leader's status.
async fn membership(cluster: &Cluster) -> (Option<u64>, BTreeSet<u64>, BTreeSet<u64>, u64) {
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
    let leader = office["leader"].as_u64();
    let index = office["membership_index"].as_u64().unwrap_or(0);
    (leader, ids("voters"), ids("learners"), index)
}

/// Files one case through the command line: the office serves writes.
async fn file_case(cluster: &Cluster, summary: &str) -> anyhow::Result<Value> {
    cluster
        .cli_as(
            OFFICE,
            &[
                "case",
                "file",
                "--office",
                OFFICE,
                "--channel",
                "visit",
                "--petitioner-id",
                "530602198001010012",
                "--name",
                "张三",
                "--category",
                "housing",
                "--summary",
                summary,
            ],
        )
        .await
}

/// Runs a `liandong replica ...` command that must be refused; returns its one-line reason.
async fn refused(cluster: &Cluster, args: &[&str]) -> String {
    match cluster.cli(args).await {
        Ok(reply) => panic!("liandong {args:?} was not refused: {reply}"),
        Err(error) => format!("{error:#}"),
    }
}

fn set(ids: &[u64]) -> BTreeSet<u64> {
    ids.iter().copied().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_that_would_lose_quorum_are_refused_and_change_nothing() {
    let cluster = start().await;
    let all = set(&[1, 2, 3]);
    let mut refusals = 0usize;
    let mut changes = 0usize;
    let (leader, voters, _, index_before) = membership(&cluster).await;
    let leader = leader.expect("a leader");
    assert_eq!(voters, all);
    let followers: Vec<u64> = all.iter().copied().filter(|&id| id != leader).collect();
    let (down, other) = (followers[0], followers[1]);
    let (down_text, other_text) = (down.to_string(), other.to_string());

    // Unknown replica and hosts without a slot of the office.
    let why = refused(
        &cluster,
        &["replica", "remove", "--office", OFFICE, "--replica", "9"],
    )
    .await;
    assert!(why.contains("not a member"), "{why}");
    let why = refused(
        &cluster,
        &["replica", "add", "--office", OFFICE, "--host", "nowhere"],
    )
    .await;
    assert!(why.contains("no host nowhere"), "{why}");
    let why = refused(&cluster, &["replica", "add", "--office", OFFICE]).await;
    assert!(why.contains("a voter already"), "{why}");
    refusals += 3;

    // One follower down: removing the other would leave {leader, down}, one live of two.
    cluster
        .drill("kill", OFFICE, Target::Replica(down))
        .await
        .expect("drill kill");
    let why = refused(
        &cluster,
        &[
            "replica",
            "remove",
            "--office",
            OFFICE,
            "--replica",
            &other_text,
        ],
    )
    .await;
    assert!(
        why.contains("lose quorum") && why.contains(&format!("not answering: {down}")),
        "{why}"
    );
    refusals += 1;
    let (_, voters, learners, index) = membership(&cluster).await;
    assert_eq!(voters, all, "a refused removal changes no voter");
    assert!(learners.is_empty(), "a refused removal leaves no learner");
    assert_eq!(index, index_before, "a refused removal logs no membership");
    file_case(&cluster, "served after a refused removal")
        .await
        .expect("the office still serves with 2 of its 3 voters");

    // Back to three live voters: removing one is fine, removing a second is not (one voter).
    cluster
        .drill("restart", OFFICE, Target::Replica(down))
        .await
        .expect("drill restart");
    let (caught_up, _) = cluster
        .wait_caught_up(OFFICE, Duration::from_secs(30))
        .await;
    assert!(caught_up, "replica {down} did not come back");
    let reply = cluster
        .cli(&[
            "replica",
            "remove",
            "--office",
            OFFICE,
            "--replica",
            &other_text,
        ])
        .await
        .expect("removing a follower with every voter alive");
    changes += 1;
    let two: BTreeSet<u64> = all.iter().copied().filter(|&id| id != other).collect();
    assert_eq!(reply["voters"], json!(two), "{reply}");
    let why = refused(
        &cluster,
        &[
            "replica",
            "remove",
            "--office",
            OFFICE,
            "--replica",
            &down_text,
        ],
    )
    .await;
    assert!(why.contains("at least 2"), "{why}");
    refusals += 1;
    let (_, voters, _, index) = membership(&cluster).await;
    assert_eq!(voters, two);
    let index_two = index;

    // The membership is in the raft log: it survives every host being killed and restarted.
    for id in &all {
        cluster
            .drill("kill", OFFICE, Target::Replica(*id))
            .await
            .expect("drill kill");
    }
    cluster
        .drill("restart", OFFICE, Target::All)
        .await
        .expect("drill restart");
    cluster
        .wait_for_leader(OFFICE, None, Duration::from_secs(30))
        .await
        .expect("a leader after restarting every host");
    let (leader, voters, learners, _) = membership(&cluster).await;
    assert_eq!(voters, two, "voters after a restart of every host");
    assert!(learners.is_empty());
    assert_ne!(leader, Some(other), "the removed replica does not lead");
    file_case(&cluster, "served after restarting every host")
        .await
        .expect("the office serves with its two voters");

    // A second change while one runs is refused: add the removed replica while its host is
    // down (its learner cannot catch up), and meanwhile try to remove a voter.
    cluster
        .drill("kill", OFFICE, Target::Replica(other))
        .await
        .expect("drill kill");
    let other_host = cluster
        .manifest
        .member_host(OFFICE, other)
        .map(|h| h.name.clone())
        .expect("the removed replica's host");
    let dir = cluster.dir.clone();
    let host = other_host.clone();
    let add = tokio::spawn(async move {
        chaos_tests::cluster::liandong(
            &dir,
            &[
                "replica",
                "add",
                "--office",
                OFFICE,
                "--host",
                &host,
                "--timeout-seconds",
                "8",
            ],
        )
        .await
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let why = refused(
        &cluster,
        &[
            "replica",
            "remove",
            "--office",
            OFFICE,
            "--replica",
            &down_text,
        ],
    )
    .await;
    assert!(why.contains("in progress"), "{why}");
    refusals += 1;
    let add = add.await.expect("add task");
    let why = format!(
        "{:#}",
        add.expect_err("a learner on a dead host cannot catch up")
    );
    assert!(
        why.contains("did not catch up") && why.contains("removed again"),
        "{why}"
    );
    refusals += 1;
    let (_, voters, learners, index) = membership(&cluster).await;
    assert!(index > index_two, "the learner was added and removed again");
    assert_eq!(voters, two, "the failed add changed no voter");
    assert!(
        learners.is_empty(),
        "the failed add left no learner: {learners:?}"
    );

    // With its host back, the replica is added: learner, catch-up, voter; every replica agrees.
    cluster
        .drill("restart", OFFICE, Target::Replica(other))
        .await
        .expect("drill restart");
    let reply = cluster
        .cli(&["replica", "add", "--office", OFFICE, "--host", &other_host])
        .await
        .unwrap_or_else(|e| panic!("adding the replica back: {e:#}{}", cluster.logs_tail(15)));
    changes += 1;
    assert_eq!(reply["voters"], json!(all), "{reply}");
    file_case(&cluster, "served by three voters again")
        .await
        .expect("the office serves");
    let (caught_up, _) = cluster
        .wait_caught_up(OFFICE, Duration::from_secs(30))
        .await;
    assert!(
        caught_up,
        "the replicas did not converge{}",
        cluster.logs_tail(20)
    );
    let panics = cluster.panics_in_logs();
    assert!(panics.is_empty(), "{panics:?}");
    chaos_tests::figures!(
        "{}",
        json!({
            "test": "membership_refusals",
            "refusals": refusals,
            "membership_changes": changes,
            "final_voters": all,
        })
    );
}
