//! The federation from the outside: seven offices (city, two counties, four townships) on nine
//! real host processes; assignment, escalation, supervision, a partition and its heal.

mod common;

use common::{id_number, verified, Fed};
use serde_json::Value;

fn seven_offices() -> Fed {
    let fed = Fed::init(
        &["--region", "5306", "--max-children", "2", "--replicas", "3"],
        9,
    );
    fed.ok(&["up"]);
    fed
}

fn file(fed: &Fed, office: &str, n: u64) -> String {
    common::file_case(fed, office, n, "labour")
}

/// The case as `office` (which holds it) shows it to its officer.
fn show(fed: &Fed, office: &str, case_id: &str) -> Value {
    fed.at(office).json(&["case", "show", case_id])
}

fn history_kinds(case: &Value) -> Vec<String> {
    case["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

/// A township case replied and escalated for review becomes a linked review case at its county.
#[test]
fn a_review_request_reaches_the_county_as_a_linked_case() {
    let fed = seven_offices();
    let id = file(&fed, "530602001", 1);
    let township = fed.at("530602001");
    township.ok(&["case", "accept", &id]);
    township.ok(&[
        "case",
        "reply",
        &id,
        "--opinion",
        "explain",
        "--text",
        "the policy applies",
    ]);
    let requested = township.json(&["case", "request-review", &id]);
    assert_eq!(requested["status"], "review_requested");
    verified(&fed);
    let at_county = fed
        .at("530602")
        .json(&["query", "--as", "530602", "--office", "530602"]);
    let reviews: Vec<&Value> = at_county["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "review")
        .collect();
    assert_eq!(reviews.len(), 1, "{at_county}");
    let review = show(&fed, "530602", reviews[0]["case_id"].as_str().unwrap());
    assert_eq!(review["office"], "530602");
    assert_eq!(
        review["kind"]["of"],
        id.as_str(),
        "linked to the original: {review}"
    );
    assert_eq!(review["petitioner_key"], requested["petitioner_key"]);
    assert!(
        review["deadlines"]["reply_by"].is_string(),
        "a 30-day decision clock runs: {review}"
    );
}

/// A case the city assigns to a county and the county returns is the city's again; the county
/// keeps a forwarding stub.
#[test]
fn an_assignment_returned_by_the_county_comes_back_to_the_city() {
    let fed = seven_offices();
    let id = file(&fed, "5306", 2);
    fed.at("5306")
        .ok(&["case", "assign", &id, "--to", "530621", "--due-days", "10"]);
    verified(&fed);
    assert_eq!(show(&fed, "530621", &id)["office"], "530621");
    fed.at("530621").ok(&[
        "case",
        "return",
        &id,
        "--reason",
        "the matter belongs to the city's housing bureau",
    ]);
    verified(&fed);
    let back = show(&fed, "5306", &id);
    assert_eq!(back["office"], "5306");
    assert_eq!(back["status"], "registered", "{back}");
    let kinds = history_kinds(&back);
    assert!(kinds.contains(&"returned".to_string()), "{kinds:?}");
    // The city's own replica holds the owner's copy again, and the city can act on it.
    let local = fed
        .at("5306")
        .json(&["case", "show", &id, "--replica", "1"]);
    assert_eq!(local["office"], "5306");
    fed.at("5306").ok(&["case", "accept", &id]);
}

/// The city supervises a case a township transferred to its county; the holder answers; the
/// answer is visible at the city.
#[test]
fn a_supervision_order_from_the_city_is_answered_and_visible_there() {
    let fed = seven_offices();
    let id = file(&fed, "530602001", 3);
    fed.at("530602001")
        .ok(&["case", "transfer", &id, "--to", "530602"]);
    verified(&fed);
    let city = fed.at("5306");
    let order = city.json(&[
        "supervise",
        &id,
        "--from",
        "5306",
        "--due-days",
        "5",
        "--text",
        "report progress by Friday",
    ]);
    assert_eq!(order["to"], "530602");
    verified(&fed);
    assert_eq!(show(&fed, "530602", &id)["supervision"]["from"], "5306");
    fed.at("530602").ok(&[
        "case",
        "answer-supervision",
        &id,
        "--text",
        "visited the site; repairs ordered",
    ]);
    verified(&fed);
    let orders = city.json(&["orders", "--office", "5306"]);
    let answer = &orders["orders"][0]["answer"];
    assert_eq!(
        answer["text"], "visited the site; repairs ordered",
        "{orders}"
    );
    assert_eq!(orders["orders"][0]["overdue"], false);
    // Two levels down: the city on a case its township still holds.
    let at_township = file(&fed, "530602002", 4);
    verified(&fed);
    city.json(&[
        "supervise",
        &at_township,
        "--from",
        "5306",
        "--due-days",
        "3",
        "--text",
        "why the delay?",
    ]);
    verified(&fed);
    fed.at("530602002").ok(&[
        "case",
        "answer-supervision",
        &at_township,
        "--text",
        "petitioner unreachable; visiting tomorrow",
    ]);
    verified(&fed);
    let orders = city.json(&["orders", "--office", "5306"]);
    let answered = orders["orders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["case_id"] == at_township.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        answered["answer"]["text"], "petitioner unreachable; visiting tomorrow",
        "{orders}"
    );
    // Supervising from outside the case's subtree is refused and changes nothing: a sibling
    // county does not even find the case in its index.
    let refused = fed.at("530621").fails(&[
        "supervise",
        &id,
        "--from",
        "530621",
        "--due-days",
        "5",
        "--text",
        "x",
    ]);
    assert!(
        refused.contains("not in office 530621's index"),
        "{refused}"
    );
}

/// Issue 3's partition drill: a township cut off keeps registering and transferring; after the
/// heal every message is applied exactly once and the city's index holds every new case.
#[test]
fn a_partitioned_township_keeps_serving_and_converges_after_heal() {
    let fed = seven_offices();
    verified(&fed);
    fed.ok(&["drill", "partition", "--office", "530602001"]);
    let mut township: Vec<String> = (100..150).map(|n| file(&fed, "530602001", n)).collect();
    let transfers: Vec<String> = (150..160).map(|n| file(&fed, "530602001", n)).collect();
    for id in &transfers {
        let moving = fed
            .at("530602001")
            .json(&["case", "transfer", id, "--to", "530602"]);
        assert_eq!(
            moving["status"], "in_transit",
            "acknowledged locally, queued across the cut"
        );
    }
    township.extend(transfers.iter().cloned());
    let county: Vec<String> = (160..180).map(|n| file(&fed, "530602", n)).collect();
    let status = fed.json(&["status"]);
    let cut = status["offices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["code"] == "530602001")
        .unwrap()
        .clone();
    assert!(
        cut["outbox_pending"].as_u64().unwrap() >= 70,
        "messages wait in the outbox: {cut}"
    );
    let blocked = fed.run(&["verify", "--json"]);
    assert!(
        !blocked.status.success(),
        "verify must see the queued messages while cut"
    );

    fed.ok(&["drill", "heal"]);
    let report = verified(&fed);
    assert!(report["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["ok"] == true));
    for id in &transfers {
        let case = show(&fed, "530602", id);
        assert_eq!(case["office"], "530602", "{id} owned by the county");
        let received = history_kinds(&case)
            .iter()
            .filter(|k| *k == "received")
            .count();
        assert_eq!(received, 1, "{id} applied exactly once: {case}");
    }
    let index = fed
        .at("5306")
        .json(&["query", "--as", "5306", "--limit", "1000"]);
    let ids: Vec<&str> = index["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["case_id"].as_str().unwrap())
        .collect();
    for id in township.iter().chain(county.iter()) {
        assert!(ids.contains(&id.as_str()), "the city's index lacks {id}");
    }
    assert_eq!(township.len() + county.len(), 80);
}

fn file_matter(
    fed: &Fed,
    office: &str,
    petitioner: &str,
    category: &str,
    location: &str,
) -> String {
    let case = fed.at(office).json(&[
        "case",
        "file",
        "--office",
        office,
        "--channel",
        "visit",
        "--petitioner-id",
        petitioner,
        "--name",
        "吴九",
        "--category",
        category,
        "--summary",
        "the same matter",
        "--location",
        location,
    ]);
    case["case_id"].as_str().unwrap().to_string()
}

/// A petitioner registered at a cut-off township and, meanwhile, as a walk-in at its county: after
/// the heal the city sees one matter, the earlier case primary, the later linked to it.
#[test]
fn repeat_petitions_on_both_sides_of_a_partition_are_linked_after_heal() {
    let fed = seven_offices();
    let petitioner = id_number(77);
    fed.ok(&["drill", "partition", "--office", "530602001"]);
    let first = file_matter(&fed, "530602001", &petitioner, "housing", "530602001");
    let second = file_matter(&fed, "530602", &petitioner, "housing", "530602001");
    let unrelated = file_matter(&fed, "530602", &petitioner, "labour", "530602001");
    fed.ok(&["drill", "heal"]);
    verified(&fed);
    for office in ["5306", "530602"] {
        let view = fed.at(office).json(&["query", "--as", office]);
        let cases = view["cases"].as_array().unwrap();
        let find = |id: &str| {
            cases
                .iter()
                .find(|c| c["case_id"] == id)
                .unwrap_or_else(|| panic!("{id} missing at {office}: {view}"))
                .clone()
        };
        assert_eq!(
            find(&first)["repeat_of"],
            Value::Null,
            "the earlier case is primary"
        );
        assert_eq!(
            find(&second)["repeat_of"],
            first.as_str(),
            "linked to the primary at {office}"
        );
        assert_eq!(
            find(&unrelated)["repeat_of"],
            Value::Null,
            "another matter is not a repeat"
        );
    }
}

/// A supervisor's figures count its whole subtree by status, level and category, with the
/// petitioner's satisfaction once given.
#[test]
fn stats_count_the_subtree() {
    let fed = seven_offices();
    let evaluated = file(&fed, "530602001", 31);
    let township = fed.at("530602001");
    township.ok(&["case", "accept", &evaluated]);
    township.ok(&[
        "case",
        "reply",
        &evaluated,
        "--opinion",
        "support",
        "--text",
        "done",
    ]);
    township.ok(&[
        "case",
        "evaluate",
        &evaluated,
        "--satisfaction",
        "satisfied",
    ]);
    file(&fed, "530602", 32);
    file(&fed, "530621", 33);
    verified(&fed);
    let county = fed.at("530602").json(&["stats", "--as", "530602"]);
    assert_eq!(
        county["total"], 2,
        "the county sees itself and its townships, not its sibling: {county}"
    );
    assert_eq!(county["by_level"]["township"], 1);
    assert_eq!(county["by_status"]["evaluated"], 1);
    assert_eq!(county["satisfaction"]["satisfied"], 1);
    let city = fed.at("5306").json(&["stats", "--as", "5306"]);
    assert_eq!(city["total"], 3, "{city}");
    assert_eq!(city["by_category"]["labour"], 3);
    assert_eq!(city["offices"].as_array().unwrap().len(), 3);
}

/// `verify` reads each replica in pages: with pages of 2 it checks exactly what it checks with
/// its default pages — every case copy on every replica, every index entry of every ancestor —
/// and a host that does not answer is named while the offices it carries are read through their
/// other replicas (fails if a page skips or repeats items, or if one silent host fails the
/// check or goes unnamed).
#[test]
fn verify_reads_every_replica_in_pages_and_names_a_host_that_does_not_answer() {
    let fed = common::small_federation();
    for n in 0..5 {
        file(&fed, "530602001", 300 + n);
    }
    for n in 0..4 {
        file(&fed, "530602", 310 + n);
    }
    let whole = verified(&fed);
    let paged = fed.json(&["verify", "--page", "2"]);
    assert_eq!(paged["ok"], true, "{paged}");
    let detail = |report: &Value, name: &str| -> String {
        report["invariants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {report}"))["detail"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // The township's 5 cases in the county's and the city's index, the county's 4 in the city's.
    assert_eq!(detail(&paged, "convergence"), "14 checked", "{paged}");
    assert_eq!(detail(&whole, "convergence"), "14 checked", "{whole}");
    // 9 cases, 3 replicas each.
    assert!(
        detail(&paged, "seals").starts_with("27 case copies checked"),
        "{paged}"
    );
    assert_eq!(detail(&paged, "seals"), detail(&whole, "seals"));
    assert_eq!(detail(&paged, "single_owner"), "9 checked");

    let (host, pid) = common::host_pids(&fed).into_iter().next().unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let report = fed.json(&["verify", "--page", "2"]);
    assert_eq!(report["ok"], true, "the other replicas speak: {report}");
    let unread = detail(&report, "replicas");
    assert!(unread.contains(&format!("on {host}")), "{unread}");
    assert_eq!(detail(&report, "convergence"), "14 checked", "{report}");
    let bad = fed.run(&["verify", "--page", "0"]);
    assert!(!bad.status.success());
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(
        said.contains("--page") && said.contains("1..=1000"),
        "{said}"
    );
}
