//! Proves: a one-way cut between two offices (`liandong drill partition --office T --to C
//! --one-way`) stops only the messages from T to C: T's transfers up and index summaries wait in
//! its outbox, while C's assignments down reach T and are applied there during the cut. After
//! the heal every queued message is applied exactly once (each transferred case received once,
//! each assignment received once) and `liandong verify` passes.

mod common;
mod fault_helpers;

use std::time::{Duration, Instant};

use chaos_tests::cluster::Cluster;
use serde_json::{json, Value};

/// A county and one township (three hosts carry both offices' replicas).
const COUNTY: &str = "530602";
const TRANSFERS: usize = 6;
const ASSIGNMENTS: usize = 6;
const TOWNSHIP_FILINGS: usize = 12;

async fn file(cluster: &Cluster, office: &str, n: u64) -> String {
    let id = liandong_ops::sample::id_number(n);
    let summary = format!("petition {n}");
    let case = cluster
        .cli_as(
            office,
            &[
                "case",
                "file",
                "--office",
                office,
                "--channel",
                "online",
                "--petitioner-id",
                &id,
                "--name",
                "陈七",
                "--category",
                "labour",
                "--summary",
                &summary,
            ],
        )
        .await
        .unwrap_or_else(|e| panic!("filing at {office}: {e:#}"));
    case["case_id"].as_str().expect("a case id").to_string()
}

/// The case as `office` (which holds it) shows it to its officer.
async fn show(cluster: &Cluster, office: &str, id: &str) -> Value {
    cluster
        .cli_as(office, &["case", "show", id])
        .await
        .unwrap_or_else(|e| panic!("show {id}: {e:#}"))
}

fn received_count(case: &Value) -> usize {
    case["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == "received")
        .count()
}

fn outbox(status: &Value, office: &str) -> u64 {
    status["offices"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|o| o["code"] == office)
        .and_then(|o| o["outbox_pending"].as_u64())
        .unwrap_or(0)
}

/// Waits until `verify` passes; returns its report and how long it took.
async fn verified(cluster: &Cluster, limit: Duration) -> (Value, Duration) {
    let start = Instant::now();
    loop {
        let report = cluster.cli(&["verify"]).await.unwrap_or(Value::Null);
        if report["ok"] == true {
            return (report, start.elapsed());
        }
        assert!(
            start.elapsed() < limit,
            "never verified: {report}{}",
            cluster.logs_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_way_office_cut_queues_one_way_and_delivers_exactly_once_after_heal() {
    let cluster = Cluster::start(&["--region", COUNTY, "--max-children", "1", "--replicas", "3"])
        .await
        .expect("a county and a township");
    let township = cluster
        .manifest
        .offices
        .iter()
        .find(|o| o.parent.as_deref() == Some(COUNTY))
        .map(|o| o.code.clone())
        .expect("a township under the county");
    verified(&cluster, Duration::from_secs(60)).await;

    let cut = cluster
        .cli(&[
            "drill",
            "partition",
            "--office",
            &township,
            "--to",
            COUNTY,
            "--one-way",
        ])
        .await
        .expect("drill partition --one-way");
    // Township -> county: transfers up and index summaries queue.
    let mut township_cases = Vec::new();
    for n in 0..TOWNSHIP_FILINGS as u64 {
        township_cases.push(file(&cluster, &township, 1_000 + n).await);
    }
    let transfers: Vec<String> = township_cases[..TRANSFERS].to_vec();
    for id in &transfers {
        let moving = cluster
            .cli_as(&township, &["case", "transfer", id, "--to", COUNTY])
            .await
            .expect("transfer");
        assert_eq!(moving["status"], "in_transit", "{moving}");
    }
    // County -> township: assignments flow and are applied during the cut.
    let mut assignments = Vec::new();
    for n in 0..ASSIGNMENTS as u64 {
        let id = file(&cluster, COUNTY, 2_000 + n).await;
        cluster
            .cli_as(
                COUNTY,
                &["case", "assign", &id, "--to", &township, "--due-days", "10"],
            )
            .await
            .expect("assign");
        assignments.push(id);
    }
    let start = Instant::now();
    let mut delivered_during_cut = 0;
    while start.elapsed() < Duration::from_secs(30) {
        delivered_during_cut = 0;
        for id in &assignments {
            // Delivered and acknowledged: the county's copy is a forwarding stub, followed to
            // the township's.
            let followed = cluster.cli_as(COUNTY, &["case", "show", id]).await;
            if followed.is_ok_and(|case| case["office"] == township.as_str()) {
                delivered_during_cut += 1;
            }
        }
        if delivered_during_cut == assignments.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let assigned_flow_ms = start.elapsed().as_millis() as u64;
    assert_eq!(
        delivered_during_cut,
        assignments.len(),
        "assignments county -> township did not arrive during a township -> county cut{}",
        cluster.logs_tail(20)
    );
    let status = cluster.status().await.expect("status");
    let (township_queued, county_queued) = (outbox(&status, &township), outbox(&status, COUNTY));
    assert!(
        township_queued >= (TOWNSHIP_FILINGS + TRANSFERS) as u64,
        "the township's messages to the county wait in its outbox: {township_queued}"
    );
    assert_eq!(
        county_queued, 0,
        "the county's outbox drained during the cut"
    );
    for id in &transfers {
        assert_eq!(
            show(&cluster, &township, id).await["status"],
            "in_transit",
            "{id} still in transit during the cut"
        );
    }
    let blocked = cluster.cli(&["verify"]).await.expect("verify");
    assert_ne!(blocked["ok"], true, "verify sees the queued messages");

    let healed_at = Instant::now();
    fault_helpers::heal(&cluster).await;
    let (report, verify_after) = verified(&cluster, Duration::from_secs(60)).await;
    let heal_ms = healed_at.elapsed().as_millis() as u64;
    for id in &transfers {
        let case = show(&cluster, COUNTY, id).await;
        assert_eq!(case["office"], COUNTY, "{id} owned by the county: {case}");
        assert_eq!(
            received_count(&case),
            1,
            "{id} received exactly once: {case}"
        );
    }
    for id in &assignments {
        let case = show(&cluster, &township, id).await;
        assert_eq!(case["office"], township.as_str(), "{case}");
        assert_eq!(
            received_count(&case),
            1,
            "{id} received exactly once: {case}"
        );
    }
    let index = cluster
        .cli_as(COUNTY, &["query", "--as", COUNTY, "--limit", "1000"])
        .await
        .expect("query");
    let indexed: Vec<&str> = index["cases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["case_id"].as_str())
        .collect();
    let missing: Vec<&String> = township_cases
        .iter()
        .filter(|id| !indexed.contains(&id.as_str()))
        .collect();
    assert!(missing.is_empty(), "the county's index lacks {missing:?}");
    let figures = json!({
        "test": "federation_one_way",
        "cut": cut["cut"],
        "township_filings": TOWNSHIP_FILINGS,
        "transfers_queued": TRANSFERS,
        "assignments_delivered_during_cut": delivered_during_cut,
        "assignments_arrived_within_ms": assigned_flow_ms,
        "outbox_during_cut": {"township": township_queued, "county": county_queued},
        "verify_failed_during_cut": blocked["ok"] != true,
        "heal_to_verified_ms": heal_ms,
        "verify_polling_ms": verify_after.as_millis() as u64,
        "invariants": report["invariants"],
    });
    chaos_tests::figures!(
        "federation_one_way figures:\n{}",
        serde_json::to_string_pretty(&figures).unwrap_or_default()
    );
}
