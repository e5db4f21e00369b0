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
