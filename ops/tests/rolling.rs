//! `liandong rolling-restart` on real hosts: every host restarted one at a time under a
//! concurrent writer, with no failed write and nothing lost; refused, before touching anything,
//! while a host is down.

mod common;

use std::sync::Arc;

use common::{verified, Writer};

const TOWNSHIP: &str = "530602001";
const COUNTY: &str = "530602";

#[test]
fn every_host_restarts_one_at_a_time_under_a_writer_without_a_failed_write() {
    let fed = Arc::new(common::small_federation());
    let before = common::host_pids(&fed);
    let writer = Writer::start(fed.clone(), TOWNSHIP, COUNTY);
    writer.wait_writes(3);

    let report = fed.json(&["rolling-restart"]);
    let restarted = report["restarted"].as_array().unwrap();
    assert_eq!(restarted.len(), before.len(), "{report}");
    // Leaders were moved off the hosts before they stopped (each office has one leader, so at
    // least one per office over the whole run).
    let moved: usize = restarted
        .iter()
        .map(|r| r["leaders_moved"].as_array().unwrap().len())
        .sum();
    assert!(moved >= 3, "{report}");

    writer.wait_writes(4);
    let (tried, failed) = writer.stop();
    assert!(
        failed.is_empty(),
        "{} of {tried} writes failed: {failed:?}{}",
        failed.len(),
        fed.logs_tail()
    );
    // Every host runs a new process now.
    let after = common::host_pids(&fed);
    for ((name, old), (_, new)) in before.iter().zip(&after) {
        assert_ne!(old, new, "host {name} was not restarted");
    }
    verified(&fed);
}

#[test]
fn a_rolling_restart_is_refused_while_a_host_is_down_and_restarts_nothing() {
    let fed = common::small_federation();
    let manifest = liandong_node::manifest::Manifest::load(&fed.dir.join("manifest.json")).unwrap();
    let victim = manifest
        .office(COUNTY)
        .unwrap()
        .members
        .iter()
        .find(|m| m.id == 3)
        .unwrap()
        .host
        .clone();
    fed.ok(&["drill", "kill", "--office", COUNTY, "--replica", "3"]);
    let before = common::host_pids(&fed);

    let err = fed.fails(&["rolling-restart"]);
    assert!(
        err.contains("not answering") && err.contains(&victim),
        "{err}"
    );
    assert_eq!(
        common::host_pids(&fed),
        before,
        "a refused rolling restart restarted something"
    );

    let err = fed.fails(&["rolling-restart", "--office", "999999"]);
    assert!(err.contains("no office"), "{err}");
}
