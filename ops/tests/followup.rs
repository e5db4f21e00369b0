//! The clocks that close loops at one office, from the outside (one county, three real hosts, its
//! clock 100,000 times the wall clock): a grade's deadline warns at 50, 75 and 100 % without
//! making the case overdue, and a dissatisfied evaluation opens a follow-up (回访) that an officer
//! records with `case follow-up`.

mod common;

use std::time::{Duration, Instant};

use common::{file_case, Fed};
use serde_json::Value;

const OFFICE: &str = "530602";

fn county() -> Fed {
    let fed = common::fast_federation(OFFICE, "0", "3", 3);
    fed.ok(&["up"]);
    fed
}

/// The grade warnings in a case's history, as percents.
fn grade_warnings(shown: &Value) -> Vec<u64> {
    shown["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["kind"] == "warned" && entry["detail"]["clock"] == "grade")
        .filter_map(|entry| entry["detail"]["percent"].as_u64())
        .collect()
}

#[test]
fn a_grade_deadline_warns_at_50_75_and_100_percent_and_is_no_breach() {
    let fed = county();
    let officer = fed.at(OFFICE);
    let case = file_case(&fed, OFFICE, 3, "land");
    officer.ok(&["case", "accept", &case]);
    let shown = officer.json(&["case", "show", &case]);
    let registered =
        liandong_domain::parse_rfc3339(shown["registered_at"].as_str().unwrap()).expect("a time");
    // Ten days on the office's clock: about nine seconds here.
    let deadline = liandong_domain::format_rfc3339(registered + 10 * liandong_domain::DAY_MS);
    officer.ok(&[
        "case",
        "grade",
        &case,
        "--grade",
        "B",
        "--leader",
        "Deputy head Chen",
        "--department",
        "Land bureau",
        "--plan",
        "Settle the boundary",
        "--deadline",
        &deadline,
    ]);
    let start = Instant::now();
    let shown = loop {
        let shown = officer.json(&["case", "show", &case]);
        if grade_warnings(&shown).contains(&100) {
            break shown;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the grade deadline never warned at 100 %: {shown}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(grade_warnings(&shown), [50, 75, 100], "each once, in order");
    assert_eq!(shown["overdue"], false, "a plan's date is no breach");
    assert!(
        shown["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["clock"] == "grade" && w["percent"] == 100),
        "{shown}"
    );
    let text = officer.ok(&["case", "show", &case]);
    assert!(text.contains("100 % of its time used"), "{text}");
}

#[test]
fn a_dissatisfied_evaluation_opens_a_follow_up_the_office_records() {
    let fed = county();
    let officer = fed.at(OFFICE);
    let reply = |case: &str| {
        officer.ok(&["case", "accept", case]);
        officer.ok(&[
            "case",
            "reply",
            case,
            "--opinion",
            "not-support",
            "--text",
            "The claim is outside the policy",
        ]);
    };
    let unhappy = file_case(&fed, OFFICE, 4, "housing");
    reply(&unhappy);
    officer.ok(&[
        "case",
        "evaluate",
        &unhappy,
        "--satisfaction",
        "dissatisfied",
    ]);
    let shown = officer.json(&["case", "show", &unhappy]);
    assert!(
        shown["deadlines"]["follow_up_by"].is_string(),
        "a follow-up is due: {shown}"
    );
    assert!(shown["follow_up"].is_null());
    let text = officer.ok(&["case", "show", &unhappy]);
    assert!(text.contains("follow-up (回访)"), "{text}");

    officer.ok(&[
        "case",
        "follow-up",
        &unhappy,
        "--note",
        "Visited the family; a second inspection is booked",
    ]);
    let shown = officer.json(&["case", "show", &unhappy]);
    assert_eq!(
        shown["follow_up"]["note"],
        "Visited the family; a second inspection is booked"
    );
    assert_eq!(
        shown["follow_up"]["officer"], "officer",
        "the signed-in officer"
    );
    assert!(shown["deadlines"]["follow_up_by"].is_null());
    let history_len = shown["history"].as_array().unwrap().len();

    // Nothing open to record: a clear refusal, nothing changed.
    let again = officer.fails(&["case", "follow-up", &unhappy, "--note", "again"]);
    assert!(again.contains("no open follow-up"), "{again}");
    let content = officer.json(&["case", "show", &unhappy]);
    assert_eq!(content["history"].as_array().unwrap().len(), history_len);

    let content_case = file_case(&fed, OFFICE, 5, "housing");
    reply(&content_case);
    officer.ok(&[
        "case",
        "evaluate",
        &content_case,
        "--satisfaction",
        "satisfied",
    ]);
    let none = officer.fails(&["case", "follow-up", &content_case, "--note", "x"]);
    assert!(none.contains("no open follow-up"), "{none}");
    let empty = officer.fails(&["case", "follow-up", &unhappy, "--note", " "]);
    assert!(!empty.is_empty());
}
