//! Anchors, from the outside: real hosts, real RocksDB, a fast clock. Every office sends its
//! case heads (a Merkle root and the leaves) to its parent; `liandong verify` compares each
//! office's stored histories with what its parent holds. An insider holding the office's own
//! signing key, who rewrites a case's history on all three replicas of the office and re-signs
//! every entry, passes the chain and signature checks — and is caught by the parent's copy:
//! verify fails, names the case and says the anchor at the parent disagrees.

mod common;

use common::{fast_federation, file_case, rewrite_history, wait_until, Fed};
use liandong_node::machine::seal::OfficeSigner;
use liandong_node::manifest::Manifest;
use liandong_node::secrets::Secrets;
use serde_json::Value;

fn invariant(report: &Value, name: &str) -> Value {
    report["invariants"]
        .as_array()
        .and_then(|all| all.iter().find(|i| i["name"] == name))
        .cloned()
        .unwrap_or(Value::Null)
}

/// `verify --json` once every office answers.
fn answered_verify(fed: &Fed) -> (bool, Value) {
    let start = std::time::Instant::now();
    loop {
        let out = fed.run(&["verify", "--json"]);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let answered = report["invariants"]
            .as_array()
            .is_some_and(|all| all.iter().all(|i| i["name"] != "reachability"));
        if answered && !invariant(&report, "anchors").is_null() {
            return (out.status.success(), report);
        }
        assert!(start.elapsed().as_secs() < 90, "never answered: {report}");
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

#[test]
fn a_history_rewritten_and_resigned_on_every_replica_disagrees_with_the_parents_anchor() {
    let fed = fast_federation("5306", "1", "3", 9);
    let manifest_path = fed.dir.join("manifest.json");
    let manifest = Manifest::load(&manifest_path).unwrap();
    let codes: Vec<String> = manifest.offices.iter().map(|o| o.code.clone()).collect();
    let (city, county) = (codes[0].clone(), codes[1].clone());
    fed.ok(&["up"]);

    let target = file_case(&fed, &county, 1, "labour");
    fed.at(&county).ok(&["case", "accept", &target]);
    let other = file_case(&fed, &county, 2, "land");

    // The parent holds an anchor covering both cases, checked on every replica.
    wait_until(&fed, "the county's heads anchored at the city", || {
        let out = fed.run(&["verify", "--json"]);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let anchors = invariant(&report, "anchors");
        out.status.success()
            && anchors["ok"] == true
            && anchors["anchored"]
                .as_array()
                .is_some_and(|offices| offices.iter().any(|o| o == county.as_str()))
            && anchors["heads_checked"].as_u64().unwrap_or(0) >= 6
    });
    let (ok, clean) = answered_verify(&fed);
    assert!(ok, "{clean}");
    let anchors = invariant(&clean, "anchors");
    let detail = anchors["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("unanchored (no parent): {city}")),
        "the root says its heads are unanchored: {detail}"
    );

    fed.ok(&["down"]);
    let signer = OfficeSigner::new(
        county.parse().unwrap(),
        Secrets::for_manifest(&manifest_path)
            .office_key(&county)
            .unwrap(),
    );
    let hosts: Vec<String> = manifest
        .office(&county)
        .unwrap()
        .members
        .iter()
        .map(|member| member.host.clone())
        .collect();
    assert_eq!(hosts.len(), 3);
    for host in &hosts {
        let db = fed.dir.join("data").join(host).join("db");
        rewrite_history(&db, &county, &target, 1, "Nobody At All", Some(&signer));
    }
    fed.ok(&["up"]);

    let (ok, report) = answered_verify(&fed);
    assert!(!ok, "verify must fail: {report}");
    assert_eq!(report["ok"], false, "{report}");
    // The chain verifies (the hashes were recomputed) and every signature is the office's own.
    assert_eq!(invariant(&report, "integrity")["ok"], true, "{report}");
    assert_eq!(
        invariant(&report, "seals")["ok"],
        true,
        "the rewrite is re-signed with the office's key: {report}"
    );
    let anchors = invariant(&report, "anchors");
    assert_eq!(anchors["ok"], false, "{report}");
    let detail = anchors["detail"].as_str().unwrap();
    assert!(detail.contains(&target), "names the case: {detail}");
    assert!(
        detail.contains(&format!("anchor at {city} disagrees")),
        "says where: {detail}"
    );
    assert!(detail.contains(&format!("office {county}")), "{detail}");
    assert!(
        !detail.contains(&other),
        "the other case is intact: {detail}"
    );
    for member in &manifest.office(&county).unwrap().members {
        assert!(
            detail.contains(&format!("replica {}", member.id)),
            "every replica is named: {detail}"
        );
    }
    let text = fed.run(&["verify"]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(!text.status.success());
    assert!(
        stdout.contains("FAIL anchors") && stdout.contains(&target),
        "{stdout}"
    );
}
