//! Anchors, from the outside: real hosts, real RocksDB, a fast clock. Every office sends its
//! case heads (a Merkle root and the leaves) to its parent; `liandong verify` compares each
//! office's stored histories with what its parent holds. An insider holding the office's own
//! signing key, who rewrites a case's history on all three replicas of the office and re-signs
//! every entry, passes the chain and signature checks — and is caught by the parent's copy:
//! verify fails, names the case and says the anchor at the parent disagrees.

mod common;

use std::path::Path;

use common::{fast_federation, file_case, wait_until, Fed};
use liandong_domain::codec::{decode, encode};
use liandong_domain::{Case, ChainHead, HistoryEntry};
use liandong_node::machine::keys;
use liandong_node::machine::seal::OfficeSigner;
use liandong_node::manifest::Manifest;
use liandong_node::secrets::Secrets;
use liandong_node::store::keys::{office_prefix, CF_SM};
use liandong_node::store::HostDb;
use serde_json::Value;

fn invariant(report: &Value, name: &str) -> Value {
    report["invariants"]
        .as_array()
        .and_then(|all| all.iter().find(|i| i["name"] == name))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Rewrites the officer of history entry `seq` of `case_id` at `office` in the host database
/// `db`, recomputes every later hash and the header's chain head, and signs every entry the
/// office applied again with the office's own key (`signer`): the chain and the signatures
/// verify.
fn rewrite_and_resign(
    db: &Path,
    office: &str,
    case_id: &str,
    seq: u32,
    officer: &str,
    signer: &OfficeSigner,
) {
    let db = HostDb::open(db).unwrap();
    let raw = db.raw();
    let cf = raw.cf_handle(CF_SM).unwrap();
    let key = |relative: Vec<u8>| [office_prefix(office), relative].concat();
    let header_key = key(keys::case(case_id));
    let mut header = Case::from_bytes(&raw.get_cf(cf, &header_key).unwrap().unwrap()).unwrap();
    let len = header.history_start.entries;
    let mut entries: Vec<HistoryEntry> = (1..=len)
        .map(|n| {
            decode(
                &raw.get_cf(cf, key(keys::history(case_id, n)))
                    .unwrap()
                    .unwrap(),
            )
            .unwrap()
        })
        .collect();
    let index = (seq - 1) as usize;
    assert!(
        entries[index].detail.get("officer").is_some(),
        "{:?}",
        entries[index]
    );
    entries[index].detail["officer"] = officer.into();
    for i in index..entries.len() {
        if i > 0 {
            entries[i].prev_hash = entries[i - 1].hash.clone();
        }
        entries[i].hash = entries[i].compute_hash();
        if entries[i].signature.is_some() {
            entries[i].sign(signer);
        }
    }
    for entry in &entries {
        raw.put_cf(cf, key(keys::history(case_id, entry.seq)), encode(entry))
            .unwrap();
    }
    header.history_start = ChainHead::after(entries.last().unwrap());
    raw.put_cf(cf, &header_key, encode(&header)).unwrap();
    raw.flush_cf(cf).unwrap();
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
        rewrite_and_resign(&db, &county, &target, 1, "Nobody At All", &signer);
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
