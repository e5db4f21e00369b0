//! `liandong drill run` end to end: scripted faults under load on seven offices, and a report
//! that says nothing was lost.

mod common;

use common::Fed;

fn drill(scenario: &str, seconds: &str) -> serde_json::Value {
    let fed = Fed::init(
        &["--region", "5306", "--max-children", "2", "--replicas", "3"],
        9,
    );
    fed.ok(&["up"]);
    let report = fed.json(&[
        "drill",
        "run",
        "--scenario",
        scenario,
        "--seconds",
        seconds,
        "--clients",
        "4",
    ]);
    assert!(
        fed.dir
            .join("run")
            .join(format!("drill-{scenario}.html"))
            .exists(),
        "the HTML report is written"
    );
    report
}

/// Leaders SIGKILLed in a loop under load: failovers measured, no acknowledged case lost.
#[test]
fn kill_leader_loop_loses_nothing() {
    let report = drill("kill-leader-loop", "14");
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["kills"].as_u64().unwrap() >= 2, "{report}");
    assert_eq!(report["lost_acknowledged"], 0);
    assert!(report["operations"]["acknowledged"].as_u64().unwrap() > 0);
    assert!(report["failover_ms"]["p50"].is_u64(), "{report}");
    assert_availability_over_time(&report);
}

/// Every office has a bounded series of fixed buckets in the JSON, and the page plots them.
fn assert_availability_over_time(report: &serde_json::Value) {
    let series = report["availability_over_time"]
        .as_object()
        .unwrap_or_else(|| panic!("no availability_over_time: {report}"));
    assert_eq!(series.len(), 7, "{report}");
    let lengths: Vec<usize> = series
        .values()
        .map(|points| points.as_array().map_or(0, Vec::len))
        .collect();
    assert!(lengths
        .iter()
        .all(|&n| n > 0 && n <= 300 && n == lengths[0]));
    for point in series.values().flat_map(|p| p.as_array().unwrap()) {
        assert!(point["t_ms"].is_u64(), "{point}");
        let share = &point["availability"];
        assert!(share.is_null() || (0.0..=1.0).contains(&share.as_f64().unwrap()));
    }
}

/// A county cut off keeps serving its officers; after the heal every invariant holds.
#[test]
fn partition_county_keeps_the_county_serving() {
    let report = drill("partition-county", "8");
    assert_eq!(report["ok"], true, "{report}");
    assert!(
        report["availability"]["530602"].as_f64().unwrap() > 0.9,
        "{report}"
    );
    let autonomy = report["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "autonomy")
        .unwrap();
    assert_eq!(autonomy["ok"], true);
}

/// Hosts restarted with their clocks an hour fast or slow under load: nothing lost, every
/// invariant holds (stamps never run backwards inside an office's state machine).
#[test]
fn clock_skew_loses_nothing() {
    let report = drill("clock-skew", "12");
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["kills"].as_u64().unwrap() >= 1, "{report}");
    assert_eq!(report["lost_acknowledged"], 0);
}

/// One host's disk fills up (the storage failpoint), the county leader's and then a
/// follower's: each time that replica stops, the county keeps serving, and after the fault is
/// cleared and the host restarted the replica catches up; nothing acknowledged is lost.
#[test]
fn disk_full_stops_the_replica_and_the_county_serves_on() {
    let report = drill("disk-full", "12");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["disk_faults"], 2, "{report}");
    assert_eq!(report["kills"], 2, "{report}");
    assert_eq!(report["lost_acknowledged"], 0);
    let roles: Vec<&str> = report["disk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|fault| {
            assert!(fault["stopped_ms"].is_u64(), "never stopped: {report}");
            assert!(fault["acknowledged_while_stopped"].as_u64().unwrap() > 0);
            assert!(fault["recovery_ms"].is_u64(), "never caught up: {report}");
            fault["role"].as_str().unwrap()
        })
        .collect();
    assert_eq!(roles, ["leader", "follower"]);
    for name in [
        "disk_fault_stops_replica",
        "office_serves_without_it",
        "replica_recovers_after_restart",
        "convergence",
    ] {
        let invariant = report["invariants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .unwrap_or_else(|| panic!("no invariant {name}: {report}"));
        assert_eq!(invariant["ok"], true, "{invariant}");
    }
    assert!(report["failover_ms"]["p50"].is_u64(), "{report}");
    assert_availability_over_time(&report);
}

/// A replica stopped by a full disk while its host keeps running comes back with a plain
/// `drill restart` once the disk has room (its host restarted), and catches up; a restart with
/// nothing stopped or down touches nothing.
#[test]
fn drill_restart_brings_back_a_replica_stopped_by_its_disk() {
    let fed = Fed::init(
        &["--region", "5306", "--max-children", "0", "--replicas", "3"],
        3,
    );
    fed.ok(&["up"]);
    let replica_state = |id: u64| -> (String, u64) {
        let status = fed.json(&["status"]);
        let replica = status["offices"][0]["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .cloned()
            .unwrap();
        (
            replica["state"].as_str().unwrap_or("").to_string(),
            replica["last_applied"].as_u64().unwrap_or(0),
        )
    };
    let status = fed.json(&["status"]);
    let leader = status["offices"][0]["leader"].as_u64().unwrap();
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let host = format!("h5306-{follower}");
    let marker = fed.dir.join("data").join(&host).join("disk-full.fault");
    std::fs::write(&marker, b"").unwrap();
    let mut stopped = false;
    for n in 0..100 {
        let summary = format!("roof {n}");
        fed.at("5306").ok(&[
            "case",
            "file",
            "--office",
            "5306",
            "--channel",
            "visit",
            "--petitioner-id",
            "530602198001010012",
            "--name",
            "Zhang",
            "--category",
            "housing",
            "--summary",
            &summary,
        ]);
        if replica_state(follower).0 == "Shutdown" {
            stopped = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        stopped,
        "the follower never stopped on its full disk\n{}",
        fed.logs_tail()
    );
    std::fs::remove_file(&marker).unwrap();
    let restarted = fed.json(&["drill", "restart", "--office", "5306"]);
    let targets = restarted["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 1, "{restarted}");
    assert_eq!(targets[0]["host"], host.as_str(), "{restarted}");
    let leader_applied = replica_state(leader).1;
    let mut caught_up = false;
    for _ in 0..100 {
        let (state, applied) = replica_state(follower);
        if state != "Shutdown" && applied >= leader_applied {
            caught_up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        caught_up,
        "the restarted replica did not catch up\n{}",
        fed.logs_tail()
    );
    let again = fed.json(&["drill", "restart", "--office", "5306"]);
    assert_eq!(again["targets"].as_array().unwrap().len(), 0, "{again}");
    fed.ok(&["verify"]);
}
