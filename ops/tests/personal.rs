//! Personal data at rest, from the outside: a petitioner's phone, ID number, name and address, filed at a
//! township, transferred to its county and escalated to the city, are shown to the officers who
//! hold the case and found nowhere on disk: not in any host's RocksDB (WAL, SST files, the Raft
//! log, snapshots, outboxes), not in any log or file under the federation folder.

mod common;

use std::path::{Path, PathBuf};

use common::{id_number, verified, Fed};

/// Digits no other value in a federation spells.
const PHONE: &str = "+8613987650123";
const NAME: &str = "欧阳明月";
const ADDRESS: &str = "昭通市昭阳区望海路 17 号 2 栋";

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            files_under(&path, out);
        } else if kind.is_file() {
            out.push(path);
        }
    }
}

fn holds(bytes: &[u8], needle: &str) -> bool {
    bytes
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// The phone, the ID number and the address an officer filed are shown to the offices that hold
/// the case (and to no query of the index), and `grep -a` finds none of them anywhere under the
/// federation folder once its hosts stopped.
#[test]
fn personal_data_is_shown_to_officers_and_found_nowhere_on_disk() {
    let fed = Fed::init(
        &["--region", "5306", "--max-children", "2", "--replicas", "3"],
        9,
    );
    fed.ok(&["up"]);
    let id = id_number(424_242);
    let township = fed.at("530602001");
    let filed = township.json(&[
        "case",
        "file",
        "--office",
        "530602001",
        "--channel",
        "visit",
        "--petitioner-id",
        &id,
        "--name",
        NAME,
        "--phone",
        PHONE,
        "--address",
        ADDRESS,
        "--category",
        "housing",
        "--summary",
        "the roof leaks",
    ]);
    // The filing's own reply shows what was typed (sealed at rest, opened for the officer).
    assert_eq!(filed["petitioner"]["phone"], PHONE, "{filed}");
    assert_eq!(filed["petitioner"]["address"], ADDRESS, "{filed}");
    let case_id = filed["case_id"].as_str().unwrap().to_string();

    // Ownership moves: the county receives the petitioner with the case.
    township.ok(&["case", "transfer", &case_id, "--to", "530602"]);
    verified(&fed);
    let county = fed.at("530602");
    let shown = county.json(&["case", "show", &case_id]);
    assert_eq!(shown["office"], "530602");
    assert_eq!(shown["petitioner"]["phone"], PHONE, "{shown}");
    assert_eq!(shown["petitioner"]["id_number"], id.as_str());
    assert_eq!(shown["petitioner"]["name"], NAME);
    assert_eq!(shown["petitioner"]["address"], ADDRESS, "{shown}");
    // Every replica of the county opens it (each reads the office's data key).
    for replica in ["1", "2", "3"] {
        let local = county.json(&["case", "show", &case_id, "--replica", replica]);
        assert_eq!(local["petitioner"]["phone"], PHONE, "replica {replica}");
        assert_eq!(local["petitioner"]["address"], ADDRESS, "replica {replica}");
    }

    // An escalation carries the petitioner on up: the city's review case has it too.
    county.ok(&["case", "accept", &case_id]);
    county.ok(&[
        "case",
        "reply",
        &case_id,
        "--opinion",
        "explain",
        "--text",
        "repairs are due",
    ]);
    let requested = county.json(&["case", "request-review", &case_id]);
    assert_eq!(requested["status"], "review_requested");
    verified(&fed);
    let city = fed.at("5306");
    let reviews = city.json(&["query", "--as", "5306", "--office", "5306"]);
    let review_id = reviews["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|case| case["kind"] == "review")
        .and_then(|case| case["case_id"].as_str())
        .unwrap_or_else(|| panic!("no review case at the city: {reviews}"))
        .to_string();
    let review = city.json(&["case", "show", &review_id]);
    assert_eq!(review["petitioner"]["phone"], PHONE, "{review}");
    assert_eq!(review["petitioner"]["id_number"], id.as_str());
    assert_eq!(review["petitioner"]["address"], ADDRESS, "{review}");
    // The index a supervisor queries holds none of it.
    assert!(!reviews.to_string().contains(ADDRESS), "{reviews}");

    // Stopped, every host flushed its RocksDB; nothing on disk spells the personal data.
    fed.ok(&["down"]);
    let mut files = Vec::new();
    files_under(fed.dir(), &mut files);
    let data_files = files
        .iter()
        .filter(|path| path.components().any(|c| c.as_os_str() == "data"))
        .count();
    assert!(data_files > 9, "every host's RocksDB is there: {files:?}");
    let mut found = Vec::new();
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        for (what, needle) in [
            ("phone", PHONE.trim_start_matches('+')),
            ("ID number", id.as_str()),
            ("name", NAME),
            ("address", ADDRESS),
        ] {
            if holds(&bytes, needle) {
                found.push(format!("{what} in {}", path.display()));
            }
        }
    }
    assert!(found.is_empty(), "personal data on disk: {found:#?}");
}
