//! Departments, joint meetings and proxies from the outside: the `liandong` command line against
//! one office of three real host processes (RocksDB, mTLS), signed in as its admin and officer.
//! Issue 13's lines: "a case with a lead and a cooperating department is replied only after the
//! lead answers; a joint meeting's decision becomes a task with a clock" and "a proxy at a
//! community point files a case with consent; the street station sees it"; and the bad input,
//! each one clear error that changes nothing.

mod common;

use common::{file_case, id_number, Fed};
use serde_json::Value;

const OFFICE: &str = "5306";

/// The office's admin (signed in by the harness when it made the officer).
fn admin(fed: &Fed) -> Vec<String> {
    fed.at(OFFICE);
    let token = fed.dir().join(format!("{OFFICE}-admin.token"));
    vec!["--token-file".into(), token.to_str().unwrap().to_string()]
}

fn as_admin<'a>(admin: &'a [String], args: &[&'a str]) -> Vec<&'a str> {
    let mut all: Vec<&str> = admin.iter().map(String::as_str).collect();
    all.extend_from_slice(args);
    all
}

/// What a refusal must not change: the case as shown (status, history, tasks) and the count of
/// cases the office holds.
fn footprint(fed: &Fed, case_id: &str) -> (Value, usize, Value, u64) {
    let case = fed.at(OFFICE).json(&["case", "show", case_id]);
    let status = fed.json(&["status"]);
    let cases = status["offices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["code"] == OFFICE)
        .and_then(|o| o["replicas"][0]["cases"].as_u64())
        .unwrap();
    (
        case["status"].clone(),
        case["history"].as_array().unwrap().len(),
        case["tasks"].clone(),
        cases,
    )
}

fn task<'a>(case: &'a Value, department: &str) -> &'a Value {
    case["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["department"] == department)
        .unwrap_or_else(|| panic!("no task of {department}: {case}"))
}

#[test]
fn a_lead_department_answers_before_the_reply_and_a_proxy_filing_is_seen_up_its_chain() {
    let fed = Fed::init(
        &["--region", OFFICE, "--max-children", "0", "--replicas", "3"],
        3,
    );
    fed.ok(&["up"]);
    let officer = fed.at(OFFICE);
    let admin = admin(&fed);

    // Departments are the admin's: an officer without the role is refused.
    for (code, name) in [
        ("housing", "住建"),
        ("land", "自然资源"),
        ("labour", "人社"),
    ] {
        fed.ok(&as_admin(
            &admin,
            &["department", "add", "--code", code, "--name", name],
        ));
    }
    let refused = officer.fails(&["department", "add", "--code", "police", "--name", "公安"]);
    assert!(refused.contains("admin"), "{refused}");
    let refused = fed.fails(&as_admin(
        &admin,
        &["department", "add", "--code", "Bad Code", "--name", "x"],
    ));
    assert!(refused.contains("bad department code"), "{refused}");
    let list = officer.json(&["department", "list"]);
    assert_eq!(list["departments"].as_array().unwrap().len(), 3, "{list}");

    // A case with a lead and a cooperating department.
    let case = file_case(&fed, OFFICE, 1, "housing");
    officer.ok(&["case", "accept", &case]);
    let routed = officer.json(&[
        "case",
        "route",
        &case,
        "--lead",
        "housing",
        "--cooperate",
        "land",
        "--due-days",
        "10",
        "--text",
        "roof repairs promised in May",
    ]);
    assert_eq!(routed["tasks"].as_array().unwrap().len(), 2, "{routed}");

    // Bad input: an unknown department, changing nothing.
    let before = footprint(&fed, &case);
    let refused = officer.fails(&[
        "case",
        "route",
        &case,
        "--cooperate",
        "police",
        "--due-days",
        "5",
    ]);
    assert!(refused.contains("unknown_department"), "{refused}");
    assert_eq!(footprint(&fed, &case), before);

    // The reply waits for the lead: refused before it answers, also after the cooperating
    // department answered; the refusal changes nothing.
    let refused = officer.fails(&[
        "case",
        "reply",
        &case,
        "--opinion",
        "support",
        "--text",
        "done",
    ]);
    assert!(refused.contains("lead_not_answered"), "{refused}");
    assert_eq!(footprint(&fed, &case), before);
    officer.ok(&[
        "case",
        "task-answer",
        &case,
        "--department",
        "land",
        "--text",
        "the plot boundary is confirmed",
    ]);
    let refused = officer.fails(&[
        "case",
        "reply",
        &case,
        "--opinion",
        "support",
        "--text",
        "done",
    ]);
    assert!(refused.contains("lead_not_answered"), "{refused}");
    officer.ok(&[
        "case",
        "task-answer",
        &case,
        "--department",
        "housing",
        "--text",
        "repairs scheduled for 12 December",
    ]);
    let replied = officer.json(&[
        "case",
        "reply",
        &case,
        "--opinion",
        "support",
        "--text",
        "done",
    ]);
    assert_eq!(replied["status"], "replied", "{replied}");
    let shown = officer.json(&["case", "show", &case]);
    assert_eq!(task(&shown, "housing")["role"], "lead");
    assert_eq!(
        task(&shown, "housing")["answer"]["text"],
        "repairs scheduled for 12 December"
    );
    assert_eq!(task(&shown, "land")["role"], "cooperate");
    let text = officer.ok(&["case", "show", &case]);
    assert!(text.contains("task housing (lead)"), "{text}");

    // A joint meeting: its decision becomes a task with a clock on the case it decides.
    let second = file_case(&fed, OFFICE, 2, "land");
    let meeting = officer.json(&[
        "meeting",
        "hold",
        "--cases",
        &format!("{case},{second}"),
        "--attendees",
        "housing,land,labour",
        "--minutes",
        "联席会议纪要: the plot dispute needs a survey",
        "--decision",
        &format!("{second}=land:15:survey the plot and report"),
    ]);
    let meeting_id = meeting["id"].as_str().unwrap().to_string();
    let shown = officer.json(&["case", "show", &second]);
    let decided = task(&shown, "land");
    assert_eq!(decided["role"], "meeting", "{shown}");
    assert_eq!(decided["meeting"], meeting_id.as_str());
    let clock = decided["due_by"].as_i64().unwrap() - decided["assigned_at"].as_i64().unwrap();
    assert!(
        clock >= 15 * 86_400_000,
        "15 working days are at least 15 days: {decided}"
    );
    let shown_meeting = officer.json(&["meeting", "show", &meeting_id]);
    assert_eq!(shown_meeting["attendees"].as_array().unwrap().len(), 3);

    // Bad input: a meeting with a case this office does not hold records nothing.
    let before = footprint(&fed, &second);
    let refused = officer.fails(&[
        "meeting",
        "hold",
        "--cases",
        &format!("{second},{OFFICE}-2026-999999"),
        "--attendees",
        "land",
        "--minutes",
        "m",
        "--decision",
        &format!("{second}=land:5:again"),
    ]);
    assert!(refused.contains("case_not_found"), "{refused}");
    assert_eq!(footprint(&fed, &second), before);
    let meetings = officer.json(&["meeting", "list"]);
    assert_eq!(meetings["meetings"].as_array().unwrap().len(), 1);

    // Per-department figures.
    let stats = officer.json(&["department", "stats"]);
    let row = |code: &str| {
        stats["departments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["department"] == code)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        (
            row("housing")["answered"].as_u64(),
            row("housing")["open"].as_u64()
        ),
        (Some(1), Some(0))
    );
    assert_eq!(
        (
            row("land")["answered"].as_u64(),
            row("land")["open"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(row("labour")["open"].as_u64(), Some(0));

    // Proxies: the district centre, a street station, a community point, an agent there.
    for args in [
        ["gongshu", "拱墅区信访代办中心", "centre", ""],
        ["mishixiang", "米市巷街道代办站", "street", "gongshu"],
        ["daguan", "大关社区代办点", "community", "mishixiang"],
    ] {
        let mut command = vec![
            "intake-point",
            "add",
            "--code",
            args[0],
            "--name",
            args[1],
            "--kind",
            args[2],
        ];
        if !args[3].is_empty() {
            command.extend(["--parent", args[3]]);
        }
        fed.ok(&as_admin(&admin, &command));
    }
    let refused = fed.fails(&as_admin(
        &admin,
        &[
            "intake-point",
            "add",
            "--code",
            "x",
            "--name",
            "x",
            "--kind",
            "community",
        ],
    ));
    assert!(refused.contains("street station"), "{refused}");
    fed.ok(&as_admin(
        &admin,
        &[
            "proxy",
            "add",
            "--code",
            "wang",
            "--name",
            "王代办",
            "--point",
            "daguan",
        ],
    ));
    let petitioner = id_number(3);
    let proxy_file = |consent: Option<&str>| {
        let mut args = vec![
            "case",
            "file",
            "--office",
            OFFICE,
            "--channel",
            "visit",
            "--petitioner-id",
            &petitioner,
            "--name",
            "李四",
            "--category",
            "labour",
            "--summary",
            "wages unpaid since August",
            "--proxy",
            "wang",
        ];
        if let Some(consent) = consent {
            args.extend(["--consent", consent]);
        }
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };
    // Bad input: no consent, or an empty one: refused, nothing filed.
    let before = footprint(&fed, &case);
    for consent in [None, Some("  ")] {
        let args = proxy_file(consent);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let refused = officer.fails(&args);
        assert!(refused.contains("consent"), "{refused}");
    }
    assert_eq!(footprint(&fed, &case), before, "no case was filed");
    let station = officer.json(&["intake-point", "cases", "mishixiang"]);
    assert_eq!(station["cases"].as_array().unwrap().len(), 0);

    let args = proxy_file(Some("signed consent form 2026-12-06, kept at Daguan point"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let filed = officer.json(&args);
    let proxied = filed["case_id"].as_str().unwrap().to_string();
    assert_eq!(filed["proxy"]["agent"], "wang", "{filed}");
    assert_eq!(
        filed["proxy"]["chain"],
        serde_json::json!(["daguan", "mishixiang", "gongshu"])
    );
    // The street station sees it, and its progress.
    officer.ok(&["case", "accept", &proxied]);
    let station = officer.json(&["intake-point", "cases", "mishixiang"]);
    let rows = station["cases"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{station}");
    assert_eq!(rows[0]["case_id"], proxied.as_str());
    assert_eq!(rows[0]["status"], "accepted");
    assert_eq!(rows[0]["point"], "daguan");
    let queried = officer.json(&["query", "--as", OFFICE, "--intake-point", "mishixiang"]);
    assert_eq!(queried["cases"], station["cases"]);
    let text = officer.ok(&["intake-point", "cases", "mishixiang"]);
    assert!(
        text.contains(&proxied) && text.contains("accepted"),
        "{text}"
    );
    let centre = officer.json(&["intake-point", "cases", "gongshu"]);
    assert_eq!(centre["cases"].as_array().unwrap().len(), 1);
    let agent = officer.json(&["proxy", "cases", "wang"]);
    assert_eq!(agent["cases"][0]["case_id"], proxied.as_str());
    let shown = officer.ok(&["case", "show", &proxied]);
    assert!(shown.contains("filed by proxy wang at daguan"), "{shown}");
}

/// A task's clock runs in working days on the office's clock (here 100,000 times the wall
/// clock): once it has run out unanswered, `case show` marks the task overdue and the
/// department's figures count it.
#[test]
fn a_task_past_its_clock_shows_overdue_and_counts_for_its_department() {
    let fed = common::fast_federation(OFFICE, "0", "3", 3);
    fed.ok(&["up"]);
    let officer = fed.at(OFFICE);
    let admin = admin(&fed);
    fed.ok(&as_admin(
        &admin,
        &["department", "add", "--code", "housing", "--name", "住建"],
    ));
    let case = file_case(&fed, OFFICE, 7, "housing");
    let routed = officer.json(&[
        "case",
        "route",
        &case,
        "--lead",
        "housing",
        "--due-days",
        "1",
    ]);
    assert_eq!(routed["tasks"][0]["overdue"], false, "{routed}");
    let start = std::time::Instant::now();
    loop {
        let shown = officer.json(&["case", "show", &case]);
        if task(&shown, "housing")["overdue"] == true {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "the task never became overdue: {shown}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let text = officer.ok(&["case", "show", &case]);
    assert!(text.contains("OVERDUE"), "{text}");
    let stats = officer.json(&["department", "stats"]);
    let housing = &stats["departments"][0];
    assert_eq!(housing["department"], "housing");
    assert_eq!(
        (housing["open"].as_u64(), housing["overdue"].as_u64()),
        (Some(1), Some(1)),
        "{stats}"
    );
}
