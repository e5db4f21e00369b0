//! `liandong snapshot save|restore` on real hosts: a city office (its own three hosts, its parent
//! the province) saved while it runs, its data destroyed, restored into a fresh replica set and
//! started again; and every bad input refused with one line, nothing changed.

mod common;

use std::path::{Path, PathBuf};

use common::{file_case, verified, Fed};
use liandong_node::manifest::Manifest;
use serde_json::Value;

/// The restored office and its parent. The city has hosts of its own (a county's hosts also
/// carry its townships), so destroying its data folders destroys nothing else.
const OFFICE: &str = "5301";
const PARENT: &str = "53";

fn province() -> Fed {
    let fed = Fed::init(
        &["--region", "53", "--max-children", "1", "--replicas", "3"],
        9,
    );
    fed.ok(&["up"]);
    fed
}

/// The data folders of the office's hosts.
fn data_folders(fed: &Fed, office: &str) -> Vec<PathBuf> {
    let manifest = Manifest::load(&fed.dir.join("manifest.json")).unwrap();
    manifest
        .office(office)
        .unwrap()
        .members
        .iter()
        .map(|member| fed.dir.join("data").join(&member.host))
        .collect()
}

fn destroy(folders: &[PathBuf]) {
    for folder in folders {
        std::fs::remove_dir_all(folder).unwrap();
    }
}

/// The parent's index entry of `case_id`, if it has one.
fn parent_index(fed: &Fed, case_id: &str) -> Option<Value> {
    let index = fed
        .at(PARENT)
        .json(&["query", "--as", PARENT, "--office", OFFICE]);
    index["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|case| case["case_id"] == case_id)
        .cloned()
}

fn save(fed: &Fed, office: &str, file: &Path) -> Value {
    fed.json(&[
        "snapshot",
        "save",
        "--office",
        office,
        "--out",
        file.to_str().unwrap(),
    ])
}

#[test]
fn a_destroyed_office_comes_back_from_its_backup_and_its_links_stay_exactly_once() {
    let fed = province();
    let before: Vec<String> = (1..=3)
        .map(|n| file_case(&fed, OFFICE, n, "housing"))
        .collect();
    verified(&fed);

    let backup = fed.dir.join("city.backup");
    let saved = save(&fed, OFFICE, &backup);
    assert_eq!(saved["office"], OFFICE, "{saved}");
    assert_eq!(saved["cases"], 3, "{saved}");
    assert!(saved["applied_index"].as_u64().unwrap() > 0, "{saved}");
    assert!(!fed.dir.join("city.backup.partial").exists());

    // After the backup: two more cases (their summaries go up to the parent), and an order
    // from the parent down on one of them.
    let after: Vec<String> = (4..=5)
        .map(|n| file_case(&fed, OFFICE, n, "land"))
        .collect();
    verified(&fed);
    fed.at(PARENT).ok(&[
        "supervise",
        &after[0],
        "--due-days",
        "5",
        "--text",
        "report by Friday",
    ]);
    verified(&fed);
    assert!(parent_index(&fed, &after[1]).is_some());

    fed.ok(&["down"]);
    destroy(&data_folders(&fed, OFFICE));
    let restored = fed.json(&[
        "snapshot",
        "restore",
        "--office",
        OFFICE,
        "--from",
        backup.to_str().unwrap(),
    ]);
    assert_eq!(
        restored["replicas"].as_array().unwrap().len(),
        3,
        "{restored}"
    );
    let link = restored["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|link| link["peer"] == PARENT)
        .cloned()
        .unwrap_or_else(|| panic!("no repair of the link with {PARENT}: {restored}"));
    // The two summaries up (and the order's effect on the case) were sent after the backup;
    // the order down arrived after it.
    assert!(
        link["sent_after_backup"]["last"].as_u64().unwrap() >= 2,
        "{restored}"
    );
    assert!(link["received_after_backup"].is_object(), "{restored}");
    let numbers = &restored["case_numbers_given_after_backup"][0];
    assert_eq!(
        (numbers["first"].as_u64(), numbers["last"].as_u64()),
        (Some(4), Some(5)),
        "{restored}"
    );

    fed.ok(&["up"]);
    let report = verified(&fed);
    assert_eq!(report["ok"], true);
    for id in &before {
        let case = fed.at(OFFICE).json(&["case", "show", id]);
        assert_eq!(case["case_id"], *id);
        assert_eq!(case["category"], "housing", "{case}");
    }
    // What the office did after the backup is not in it.
    let lost = fed.at(OFFICE).run(&["case", "show", &after[0]]);
    assert!(!lost.status.success());

    // The restored office's next message to its parent is applied there, not taken for one it
    // sent before (a summary of a case with a new number).
    let new = file_case(&fed, OFFICE, 6, "water");
    assert!(
        !after.contains(&new) && !before.contains(&new),
        "{new} was given twice"
    );
    verified(&fed);
    let summary = parent_index(&fed, &new).unwrap_or_else(|| panic!("{PARENT} never got {new}"));
    assert_eq!(summary["category"], "water", "{summary}");
    // And the parent's messages down flow again: an order on a case saved in the backup.
    fed.at(PARENT).ok(&[
        "supervise",
        &before[0],
        "--due-days",
        "5",
        "--text",
        "again",
    ]);
    verified(&fed);
    let case = fed.at(OFFICE).json(&["case", "show", &before[0]]);
    let ordered = case["history"]
        .as_array()
        .unwrap()
        .iter()
        .any(|entry| entry["kind"] == "supervision_ordered");
    assert!(ordered, "the order never arrived: {case}");
}

#[test]
fn a_bad_backup_or_a_live_office_is_refused_and_nothing_changes() {
    let fed = province();
    let case = file_case(&fed, OFFICE, 1, "housing");
    verified(&fed);
    let good = fed.dir.join("city.backup");
    save(&fed, OFFICE, &good);
    let county = fed.dir.join("county.backup");
    save(&fed, "530102", &county);
    let from = |file: &Path| {
        vec![
            "snapshot".to_string(),
            "restore".to_string(),
            "--office".to_string(),
            OFFICE.to_string(),
            "--from".to_string(),
            file.to_str().unwrap().to_string(),
        ]
    };
    let restore_fails = |file: &Path| {
        let args = from(file);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fed.fails(&args)
    };

    // Saving over a file is refused; an office not in the federation too.
    assert!(fed
        .fails(&[
            "snapshot",
            "save",
            "--office",
            OFFICE,
            "--out",
            good.to_str().unwrap()
        ])
        .contains("exists"));
    let running = restore_fails(&good);
    assert!(running.contains("running"), "{running}");

    fed.ok(&["down"]);
    let holding = restore_fails(&good);
    assert!(holding.contains("still holds office 5301"), "{holding}");

    let folders = data_folders(&fed, OFFICE);
    destroy(&folders);
    let bytes = std::fs::read(&good).unwrap();
    let bad = fed.dir.join("bad.backup");
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let truncated = restore_fails(&bad);
    assert!(truncated.contains("truncated"), "{truncated}");

    let mut flipped = bytes.clone();
    let middle = flipped.len() * 2 / 3;
    flipped[middle] ^= 0x40;
    std::fs::write(&bad, &flipped).unwrap();
    let corrupted = restore_fails(&bad);
    assert!(corrupted.contains("corrupted"), "{corrupted}");

    let mut newer = bytes.clone();
    newer[16..20].copy_from_slice(&9u32.to_be_bytes());
    std::fs::write(&bad, &newer).unwrap();
    let version = restore_fails(&bad);
    assert!(version.contains("format version 9"), "{version}");

    std::fs::write(&bad, b"hello").unwrap();
    let garbage = restore_fails(&bad);
    assert!(garbage.contains("not a Liandong backup"), "{garbage}");

    let foreign = restore_fails(&county);
    assert!(
        foreign.contains("backup of office 530102, not 5301"),
        "{foreign}"
    );

    // None of them wrote anything: the office's hosts have no data yet.
    for folder in &folders {
        assert!(
            !folder.join("db").exists(),
            "{} was written",
            folder.display()
        );
    }
    let args = from(&good);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fed.ok(&args);
    fed.ok(&["up"]);
    verified(&fed);
    let shown = fed.at(OFFICE).json(&["case", "show", &case]);
    assert_eq!(shown["case_id"], case);
}
