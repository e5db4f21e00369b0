//! Proves: an authenticated peer (a host certificate naming the sending office) that sends four
//! 15 MB deliveries, out-of-order and misaddressed ones to an office's leader under load cannot
//! wedge it: each is refused before anything reaches the Raft log, the office restarted elects a
//! leader within 5 s, and no acknowledged write is lost.

mod common;

use std::time::{Duration, Instant};

use chaos_tests::cluster::{Cluster, Target};
use common::{heal_and_check, require_history, seed, start_workload, OFFICE};
use federation_proto::v1::federation_client::FederationClient;
use federation_proto::v1::{envelope, DeliverRequest, Envelope, IndexUpdate};
use liandong_node::tls::{self, Pki, TlsFiles};
use serde_json::json;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

/// The sender the peer's certificate names: the city's county.
const SENDER: &str = "530602";
/// Size of each oversized delivery, as in the issue's probe.
const OVERSIZED_BYTES: usize = 15 * 1024 * 1024;
/// How fast the office must have a leader again after the restart.
const ELECTION_BOUND: Duration = Duration::from_secs(5);

fn summary(seq: u64, category: String) -> Envelope {
    Envelope {
        from: SENDER.into(),
        to: OFFICE.into(),
        seq,
        sent_ms: 0,
        body: Some(envelope::Body::IndexUpdate(IndexUpdate {
            case_id: format!("{SENDER}-2026-{seq:06}"),
            owner: SENDER.into(),
            status: "registered".into(),
            category,
            petitioner_key: "ab".repeat(32),
            kind: "original".into(),
            version: 1,
            ..IndexUpdate::default()
        })),
    }
}

/// A channel to `addr` presenting a certificate of the federation's CA naming `SENDER`.
async fn peer(cluster: &Cluster, addr: &str) -> Channel {
    let pki = Pki::load(&cluster.dir.join("pki")).expect("the federation's CA");
    let identity = pki
        .issue_host("rogue", &[SENDER.to_string()], 1)
        .expect("a host certificate");
    let files = TlsFiles {
        ca_pem: pki.ca_cert_pem.clone(),
        identity,
    };
    Endpoint::from_shared(tls::https_uri(addr))
        .expect("an address")
        .tls_config(tls::client_config(&files))
        .expect("TLS")
        .connect()
        .await
        .expect("connected")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_peer_cannot_wedge_an_office() {
    let seed = seed();
    let cluster = Cluster::start(&["--region", OFFICE, "--max-children", "1", "--replicas", "3"])
        .await
        .expect("a city with one county and one township");
    let running = start_workload(&cluster, seed);
    assert!(
        running
            .workload
            .wait_for_more_ops(300, Duration::from_secs(30))
            .await,
        "no progress before the attack{}",
        cluster.logs_tail(20)
    );
    let leader = cluster.leader(OFFICE).await.unwrap().expect("a leader");
    let addr = cluster
        .replicas(OFFICE)
        .into_iter()
        .find(|(id, _)| *id == leader)
        .map(|(_, addr)| addr)
        .expect("the leader's address");
    let mut client = FederationClient::new(peer(&cluster, &addr).await)
        .max_encoding_message_size(federation_proto::MESSAGE_BYTES_MAX)
        .max_decoding_message_size(federation_proto::MESSAGE_BYTES_MAX);
    let deliver = |envelopes: Vec<Envelope>| DeliverRequest {
        from: SENDER.into(),
        to: OFFICE.into(),
        envelopes,
    };
    let mut refusals = Vec::new();
    // Four 15 MB deliveries: one envelope of 15 MB, then batches of many smaller ones.
    let oversized = [
        vec![summary(1, "x".repeat(OVERSIZED_BYTES))],
        (1..=15)
            .map(|seq| summary(seq, "y".repeat(1024 * 1024 - 200)))
            .collect(),
        vec![summary(1, "z".repeat(OVERSIZED_BYTES))],
        (1..=60)
            .map(|seq| summary(seq, "w".repeat(256 * 1024 - 200)))
            .collect(),
    ];
    for batch in oversized {
        let refused = client.deliver(deliver(batch)).await.expect_err("refused");
        refusals.push(("15 MB", refused.code()));
        assert!(
            matches!(
                refused.code(),
                Code::InvalidArgument | Code::ResourceExhausted
            ),
            "an oversized delivery: {refused:?}"
        );
    }
    // Out of order (a gap far ahead of the inbox) and misaddressed.
    let gap = client
        .deliver(deliver(vec![summary(1_000_000, "land".into())]))
        .await
        .expect_err("a gap is refused");
    assert_eq!(gap.code(), Code::FailedPrecondition, "{gap:?}");
    refusals.push(("gap", gap.code()));
    let reversed = client
        .deliver(deliver(vec![
            summary(1_000_002, "land".into()),
            summary(1_000_001, "land".into()),
        ]))
        .await
        .expect_err("a batch out of order is refused");
    refusals.push(("reversed", reversed.code()));
    let mut stranger = summary(1, "land".into());
    stranger.from = "530621".into();
    let misaddressed = client
        .deliver(deliver(vec![stranger]))
        .await
        .expect_err("an envelope from another sender is refused");
    refusals.push(("misaddressed", misaddressed.code()));

    // The office still serves, then is restarted whole.
    assert!(
        running
            .workload
            .wait_for_more_writes(50, Duration::from_secs(30))
            .await,
        "the office stopped serving after the attack{}",
        cluster.logs_tail(20)
    );
    let kills = futures::future::join_all(
        (1..=3).map(|r| cluster.drill("kill", OFFICE, Target::Replica(r))),
    )
    .await;
    for kill in kills {
        kill.expect("drill kill");
    }
    let restarted = Instant::now();
    cluster
        .drill("restart", OFFICE, Target::All)
        .await
        .expect("drill restart");
    cluster
        .wait_for_leader(OFFICE, None, ELECTION_BOUND)
        .await
        .unwrap_or_else(|e| panic!("{e}{}", cluster.logs_tail(30)));
    let elected_ms = restarted.elapsed().as_millis() as u64;
    assert!(
        running
            .workload
            .wait_for_more_writes(50, Duration::from_secs(30))
            .await,
        "no write acknowledged after the restart{}",
        cluster.logs_tail(20)
    );
    require_history(&running.recorder, 1_000, Duration::from_secs(60)).await;
    let figures = json!({
        "refusals": refusals.iter().map(|(what, code)| format!("{what}: {code:?}")).collect::<Vec<_>>(),
        "restart_to_leader_ms": elected_ms,
    });
    heal_and_check("hostile_peer", &cluster, running, seed, figures).await;
}
