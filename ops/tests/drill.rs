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
