//! Group petitions (集体访) and petitioners without a PRC resident ID, from the outside: a
//! township registers a group whose representative holds a passport, the case moves to the
//! county, and only the office holding it shows every member; bad groups are refused whole,
//! filing nothing.

mod common;

use common::{id_number, small_federation, verified, As};
use serde_json::Value;

const REPRESENTATIVE: &str = "John Smith";
const PASSPORT: &str = "E12345678";
const MEMBER_PASSPORT: &str = "P98765432";
const MEMBER_NAME: &str = "Maria Rossi";

/// How many cases `office` holds as their owner (a refused filing adds none).
fn owned(officer: &As<'_>, office: &str) -> usize {
    let found = officer.json(&["query", "--as", office, "--office", office]);
    found["cases"].as_array().map(Vec::len).unwrap_or(0)
}

fn file_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "case",
        "file",
        "--office",
        "530602001",
        "--channel",
        "visit",
        "--category",
        "land",
        "--summary",
        "the fields flood since the new road",
    ];
    args.extend_from_slice(extra);
    args
}

fn names(case: &Value) -> Vec<String> {
    case["co_petitioners"]
        .as_array()
        .map(|members| {
            members
                .iter()
                .map(|m| m["name"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_group_petition_moves_with_its_members_and_bad_groups_file_nothing() {
    let fed = small_federation();
    let township = fed.at("530602001");
    let resident = id_number(515_151);
    let dir = tempfile::tempdir().unwrap();
    let members_file = dir.path().join("members.txt");
    std::fs::write(
        &members_file,
        format!("# one per line\n{resident}:张三:13800000000\n\ntaiwan:12345678:林美玲\n"),
    )
    .unwrap();
    let at_file = format!("@{}", members_file.display());
    let member = format!("passport:{MEMBER_PASSPORT}:{MEMBER_NAME}:+390612345678:ITA");

    // Bad input: each refused in one line, nothing filed.
    let before = owned(&township, "530602001");
    let bad: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "--id-type",
                "passport",
                "--petitioner-id",
                "E1",
                "--name",
                "A",
            ],
            "passport",
        ),
        (
            vec![
                "--id-type",
                "visa",
                "--petitioner-id",
                PASSPORT,
                "--name",
                "A",
            ],
            "document type",
        ),
        (
            vec![
                "--petitioner-id",
                &resident,
                "--name",
                "A",
                "--co-petitioner",
                "hk-macao:X1:B",
            ],
            "petitioner 2",
        ),
        (
            vec![
                "--id-type",
                "passport",
                "--petitioner-id",
                PASSPORT,
                "--name",
                "A",
                "--co-petitioner",
                "passport:e12345678:B",
            ],
            "same document",
        ),
        (
            vec![
                "--petitioner-id",
                &resident,
                "--name",
                "A",
                "--co-petitioner",
                &member,
                "--representative",
                "3",
            ],
            "representative 3",
        ),
        (
            vec![
                "--petitioner-id",
                &resident,
                "--name",
                "A",
                "--co-petitioner",
                "not a member",
            ],
            "co-petitioner 1",
        ),
    ];
    for (extra, says) in &bad {
        let error = township.fails(&file_args(extra));
        assert!(error.contains(says), "{extra:?}: {error}");
        assert!(!error.contains("E12345678"), "no number echoed: {error}");
    }
    // Too many: 200 co-petitioners make 201 petitioners.
    let crowd = dir.path().join("crowd.txt");
    let lines: Vec<String> = (0..200).map(|n| format!("passport:P{n:08}:N{n}")).collect();
    std::fs::write(&crowd, lines.join("\n")).unwrap();
    let crowd = format!("@{}", crowd.display());
    let error = township.fails(&file_args(&[
        "--petitioner-id",
        &resident,
        "--name",
        "A",
        "--co-petitioner",
        &crowd,
    ]));
    assert!(error.contains("at most 200"), "{error}");
    assert_eq!(owned(&township, "530602001"), before, "nothing was filed");

    // A group of four represented by a passport holder.
    let filed = township.json(&file_args(&[
        "--id-type",
        "passport",
        "--petitioner-id",
        PASSPORT,
        "--nationality",
        "GBR",
        "--name",
        REPRESENTATIVE,
        "--phone",
        "+447946000001",
        "--co-petitioner",
        &at_file,
        "--co-petitioner",
        &member,
    ]));
    let case_id = filed["case_id"].as_str().unwrap().to_string();
    assert_eq!(filed["petitioners"], 4, "{filed}");
    assert_eq!(filed["petitioner"]["name"], REPRESENTATIVE);
    assert_eq!(filed["petitioner"]["id_type"], "passport");
    assert_eq!(filed["petitioner"]["nationality"], "GBR");
    assert_eq!(names(&filed), ["张三", "林美玲", MEMBER_NAME]);
    assert_eq!(owned(&township, "530602001"), before + 1);

    // The representative's key finds it (a passport's key is its own).
    let key = filed["petitioner_key"].as_str().unwrap().to_string();
    let found = township.json(&["query", "--as", "530602001", "--petitioner-key", &key]);
    assert_eq!(found["cases"].as_array().map(Vec::len), Some(1), "{found}");

    // Ownership moves to the county: the members go with it.
    township.ok(&["case", "transfer", &case_id, "--to", "530602"]);
    verified(&fed);
    let county = fed.at("530602");
    county.ok(&["case", "accept", &case_id]);
    let shown = county.json(&["case", "show", &case_id]);
    assert_eq!(shown["office"], "530602");
    assert_eq!(shown["status"], "accepted");
    assert_eq!(shown["petitioners"], 4, "{shown}");
    assert_eq!(shown["petitioner"]["id_number"], PASSPORT);
    assert_eq!(names(&shown), ["张三", "林美玲", MEMBER_NAME]);
    let members = shown["co_petitioners"].as_array().unwrap();
    assert_eq!(members[0]["id_type"], "resident");
    assert_eq!(members[0]["id_number"], resident.as_str());
    assert_eq!(members[1]["id_type"], "taiwan");
    assert_eq!(members[2]["id_number"], MEMBER_PASSPORT);
    assert_eq!(members[2]["phone"], "+390612345678");
    assert_eq!(members[2]["nationality"], "ITA");
    let text = county.ok(&["case", "show", &case_id]);
    assert!(text.contains("group petition of 4 petitioners"), "{text}");
    assert!(text.contains(MEMBER_NAME), "{text}");
    for replica in ["1", "2", "3"] {
        let local = county.json(&["case", "show", &case_id, "--replica", replica]);
        assert_eq!(
            names(&local),
            ["张三", "林美玲", MEMBER_NAME],
            "replica {replica}"
        );
    }

    // The township keeps a stub: no petitioner, no members.
    let stub = township.json(&["case", "show", &case_id, "--replica", "1"]);
    assert_eq!(stub["status"], "forwarded", "{stub}");
    assert_eq!(stub["petitioner"], Value::Null);
    assert_eq!(names(&stub), Vec::<String>::new());
    verified(&fed);
}
