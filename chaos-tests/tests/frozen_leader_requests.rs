//! With the leader frozen by SIGSTOP and a new leader elected, a write sent to a follower and a `liandong case file` are still acknowledged (within the write deadlines, not after a frozen connection gives up).
//!
//! Run with `cargo test -p chaos-tests --test frozen_leader_requests -- --nocapture`.

mod common;

use std::time::{Duration, Instant};

use chaos_tests::cluster::Target;
use common::{start, OFFICE};
use federation_proto::v1::{cases_client::CasesClient, FileRequest};

/// The server's own bound on a write (node/src/api/cases.rs `WRITE_DEADLINE_MS`), with slack.
const SERVER_WRITE_BOUND: Duration = Duration::from_secs(7);
/// The command line's bound on an office call (ops/src/client.rs `OFFICE_CALL_DEADLINE_MS`),
/// with slack.
const CLI_BOUND: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_answered_while_the_leader_is_frozen() {
    let cluster = start().await;
    let leader = cluster.leader(OFFICE).await.unwrap().expect("a leader");
    let (follower, follower_addr) = cluster
        .replicas(OFFICE)
        .into_iter()
        .find(|(id, _)| *id != leader)
        .unwrap();
    let channel = liandong_ops::client::officer_channel(&follower_addr, OFFICE)
        .await
        .unwrap();
    let mut client = CasesClient::new(channel);
    let request = |id: &str, n: u64| FileRequest {
        office: OFFICE.to_string(),
        registration: Some(liandong_ops::sample::registration(n)),
        request_id: id.to_string(),
        ..FileRequest::default()
    };
    client.file(request("warm-up", 1)).await.expect("a write");

    cluster
        .drill("pause", OFFICE, Target::Replica(leader))
        .await
        .unwrap();
    let mut problems = Vec::new();

    // 1. Straight to a follower: it forwards to the leader it knows, which is frozen.
    let at = Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(30),
        client.file(request("to-follower", 2)),
    )
    .await;
    let took = at.elapsed();
    chaos_tests::figures!(
        "file sent to follower {follower} with leader {leader} frozen: {:?} after {took:?}",
        answer
            .as_ref()
            .map(|r| r.as_ref().map(|_| "ok").map_err(|s| s.to_string()))
    );
    if !matches!(answer, Ok(Ok(_))) || took > SERVER_WRITE_BOUND {
        problems.push(format!(
            "a write sent to follower {follower} took {took:?} ({answer:?}); a new leader was elected within about a second"
        ));
    }

    // 2. The command line, which tries the office's hosts in manifest order.
    let new_leader = cluster
        .wait_for_leader(OFFICE, Some(leader), Duration::from_secs(10))
        .await
        .expect("a new leader");
    let id = liandong_ops::sample::id_number(3);
    let at = Instant::now();
    let filed = tokio::time::timeout(
        CLI_BOUND,
        cluster.cli_as(
            OFFICE,
            &[
                "case",
                "file",
                "--office",
                OFFICE,
                "--channel",
                "visit",
                "--petitioner-id",
                &id,
                "--name",
                "王五",
                "--category",
                "land",
                "--summary",
                "filed while the old leader is frozen",
            ],
        ),
    )
    .await;
    let took = at.elapsed();
    chaos_tests::figures!(
        "`liandong case file` with leader {leader} frozen and {new_leader} leading: {} after {took:?}",
        match &filed {
            Ok(Ok(_)) => "ok".to_string(),
            Ok(Err(e)) => format!("error {e:#}"),
            Err(_) => "no answer".to_string(),
        }
    );
    if !matches!(filed, Ok(Ok(_))) {
        problems.push(format!(
            "`liandong case file` got no answer in {took:?} while replica {new_leader} led"
        ));
    }
    cluster.drill("resume", OFFICE, Target::All).await.unwrap();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
