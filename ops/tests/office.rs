//! A replicated office from the outside: the `liandong` command line against three real host
//! processes with RocksDB, a leader SIGKILLed mid-way.

mod common;

use std::time::{Duration, Instant};

use common::{file_case, id_number, Fed};
use serde_json::Value;

fn wait_replicas_caught_up(fed: &Fed, office: &str) {
    let start = Instant::now();
    loop {
        let status = fed.json(&["status"]);
        let office = status["offices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["code"] == office)
            .unwrap()
            .clone();
        let applied: Vec<Value> = office["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["last_applied"].clone())
            .collect();
        let hashes: Vec<Value> = office["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["state_hash"].clone())
            .collect();
        if applied.iter().all(|a| a.is_u64() && *a == applied[0])
            && hashes.iter().all(|h| *h == hashes[0])
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "replicas never caught up: {office}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Issue 2's acceptance: 100 cases, the leader SIGKILLed, 100 more; all 200 with their history on
/// every replica once the killed one is back, and the replicas agree on one state hash.
#[test]
fn no_acknowledged_case_is_lost_when_the_leader_is_killed() {
    let fed = Fed::init(
        &["--region", "5306", "--max-children", "0", "--replicas", "3"],
        3,
    );
    fed.ok(&["up"]);
    let mut ids: Vec<String> = (0..100)
        .map(|n| file_case(&fed, "5306", n, "housing"))
        .collect();

    let killed = fed.json(&["drill", "kill", "--office", "5306", "--leader"]);
    let killed_replica = killed["targets"][0]["replica"].as_u64().unwrap();
    ids.extend((100..200).map(|n| file_case(&fed, "5306", n, "housing")));

    fed.ok(&[
        "drill",
        "restart",
        "--office",
        "5306",
        "--replica",
        &killed_replica.to_string(),
    ]);
    wait_replicas_caught_up(&fed, "5306");

    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 200, "every filing made one distinct case");
    for id in &ids {
        let linearizable = fed.at("5306").json(&["case", "show", id]);
        assert_eq!(linearizable["case_id"], id.as_str());
        assert_eq!(linearizable["history"][0]["kind"], "registered");
        for replica in ["1", "2", "3"] {
            let copy = fed
                .at("5306")
                .json(&["case", "show", id, "--replica", replica]);
            assert_eq!(copy, linearizable, "replica {replica}'s copy of {id}");
        }
    }
}

/// Bad input is refused with one clear line and a non-zero exit, and changes nothing.
#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let fed = Fed::init(
        &["--region", "5306", "--max-children", "0", "--replicas", "3"],
        3,
    );
    fed.ok(&["up"]);
    let id = file_case(&fed, "5306", 7, "housing");
    let before = fed.at("5306").json(&["case", "show", &id]);
    let good_id = id_number(8);
    let long_summary = "长".repeat(4001);

    let mut refusals = Vec::new();
    let file = |channel: &str, petitioner: &str, summary: &str, office: &str| {
        fed.at("5306").fails(&[
            "case",
            "file",
            "--office",
            office,
            "--channel",
            channel,
            "--petitioner-id",
            petitioner,
            "--name",
            "赵六",
            "--category",
            "land",
            "--summary",
            summary,
        ])
    };
    refusals.push((
        "unknown channel",
        file("fax", &good_id, "s", "5306"),
        "channel",
    ));
    refusals.push((
        "over-long summary",
        file("visit", &good_id, &long_summary, "5306"),
        "summary",
    ));
    refusals.push((
        "malformed ID number",
        file("visit", "530602198001010013", "s", "5306"),
        "ID number",
    ));
    refusals.push((
        "malformed division code",
        file("visit", &good_id, "s", "53X6"),
        "office code",
    ));
    refusals.push((
        "reply before accepting",
        fed.at("5306")
            .fails(&["case", "reply", &id, "--opinion", "support", "--text", "t"]),
        "accept",
    ));
    fed.at("5306").ok(&["case", "accept", &id]);
    refusals.push((
        "accept twice",
        fed.at("5306").fails(&["case", "accept", &id]),
        "already accepted",
    ));
    fed.at("5306").ok(&[
        "case",
        "extend",
        &id,
        "--days",
        "10",
        "--reason",
        "site survey",
    ]);
    refusals.push((
        "extend twice",
        fed.at("5306")
            .fails(&["case", "extend", &id, "--days", "5", "--reason", "again"]),
        "extended",
    ));
    for (what, stderr, expected) in &refusals {
        assert!(
            stderr.to_lowercase().contains(&expected.to_lowercase()),
            "{what}: {stderr}"
        );
    }

    // Nothing changed: no new case, and the case carries only what succeeded.
    let after = fed.at("5306").json(&["case", "show", &id]);
    let kinds: Vec<&str> = after["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.len(),
        before["history"].as_array().unwrap().len() + 2,
        "{kinds:?}"
    );
    let status = fed.json(&["status"]);
    for replica in status["offices"][0]["replicas"].as_array().unwrap() {
        if replica["alive"] == true {
            assert_eq!(replica["cases"], 1, "{replica}");
        }
    }
}
