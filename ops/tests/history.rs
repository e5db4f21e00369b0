//! A history that cannot be quietly rewritten, from the outside: real hosts, real RocksDB. Every
//! entry an office applies is signed with its key and records the hash of the whole case state;
//! `liandong verify` recomputes chains, state hashes and signatures from every replica's data.
//! Issue 10's rewrite — an officer changed in history entry 2 and every later hash recomputed,
//! on all three replicas of the office, while the federation is down — makes verify fail and
//! name the case, its office and replicas, the entry and the check that failed.

mod common;

use common::{file_case, rewrite_history, verified, Fed};
use liandong_node::manifest::Manifest;
use serde_json::Value;

const COUNTY: &str = "530602";
const TOWNSHIP: &str = "530602001";

fn seven_offices() -> Fed {
    let fed = Fed::init(
        &["--region", "5306", "--max-children", "2", "--replicas", "3"],
        9,
    );
    fed.ok(&["up"]);
    fed
}

fn invariant<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no invariant {name}: {report}"))
}

#[test]
fn a_history_rewritten_on_every_replica_with_recomputed_hashes_fails_verify_naming_the_case() {
    let fed = seven_offices();
    // Cases filed, moved and handled: entries signed by the county and by the township.
    let moved = file_case(&fed, COUNTY, 1, "land");
    fed.at(COUNTY).ok(&[
        "case",
        "assign",
        &moved,
        "--to",
        TOWNSHIP,
        "--due-days",
        "10",
    ]);
    let target = file_case(&fed, COUNTY, 2, "labour");
    fed.at(COUNTY).ok(&["case", "accept", &target]);
    verified(&fed);
    fed.at(TOWNSHIP).ok(&["case", "accept", &moved]);
    let clean = verified(&fed);
    let seals = invariant(&clean, "seals");
    assert_eq!(seals["ok"], true, "{clean}");
    assert!(seals["entries_signed"].as_u64().unwrap() > 0, "{clean}");
    assert_eq!(seals["entries_unsigned"], 0, "{clean}");
    let shown = fed.at(TOWNSHIP).json(&["case", "show", &moved]);
    let signers: Vec<&str> = shown["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["signer"].as_str().unwrap())
        .collect();
    assert!(
        signers.contains(&COUNTY) && signers.contains(&TOWNSHIP),
        "each office signs what it applied: {shown}"
    );

    fed.ok(&["down"]);
    let manifest = Manifest::load(&fed.dir.join("manifest.json")).unwrap();
    let hosts: Vec<String> = manifest
        .office(COUNTY)
        .unwrap()
        .members
        .iter()
        .map(|member| member.host.clone())
        .collect();
    assert_eq!(hosts.len(), 3);
    for host in &hosts {
        let db = fed.dir.join("data").join(host).join("db");
        rewrite_history(&db, COUNTY, &target, 2, "Nobody At All", None);
    }
    fed.ok(&["up"]);

    let start = std::time::Instant::now();
    let report = loop {
        let out = fed.run(&["verify", "--json"]);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        // Wait until every office answers; then the rewrite must show.
        let answered = report["invariants"]
            .as_array()
            .is_some_and(|all| all.iter().all(|i| i["name"] != "reachability"));
        if answered
            && report["invariants"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["name"] == "seals")
        {
            assert!(!out.status.success(), "verify must fail: {report}");
            break report;
        }
        assert!(start.elapsed().as_secs() < 60, "never answered: {report}");
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    assert_eq!(report["ok"], false, "{report}");
    // The chain itself verifies: the hashes were recomputed.
    assert_eq!(invariant(&report, "integrity")["ok"], true, "{report}");
    let seals = invariant(&report, "seals");
    assert_eq!(seals["ok"], false, "{report}");
    let detail = seals["detail"].as_str().unwrap();
    assert!(detail.contains(&target), "names the case: {detail}");
    assert!(detail.contains(&format!("office {COUNTY}")), "{detail}");
    assert!(detail.contains("entry 2"), "names the entry: {detail}");
    assert!(detail.contains("signature"), "names the check: {detail}");
    assert!(
        !detail.contains(&moved),
        "the other case is intact: {detail}"
    );
    for host in &hosts {
        let replica = manifest
            .office(COUNTY)
            .unwrap()
            .members
            .iter()
            .find(|m| &m.host == host)
            .unwrap()
            .id;
        assert!(
            detail.contains(&format!("replica {replica}")),
            "every replica is named: {detail}"
        );
    }
    let text = fed.run(&["verify"]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(!text.status.success());
    assert!(
        stdout.contains("FAIL seals") && stdout.contains(&target),
        "{stdout}"
    );
}
