//! Escalating notices (三级抄告) and red cards (红牌) from the outside: the `liandong` command line
//! against four offices (a province, a city, a county, a township) on real host processes
//! (RocksDB, mTLS), their clock running 100,000 times the wall clock so that days pass in
//! seconds. Issue 13, item 4: "an office configures the ages at which an unresolved case is
//! copied to the next level up; the notices travel through the federation and show in the
//! receiving supervisor's worklist; a red-card warning is recorded against an office or
//! department that misses a supervised deadline"; and the bad input, each one clear error that
//! changes nothing.

mod common;

use std::time::{Duration, Instant};

use common::{file_case, Fed};
use serde_json::Value;

/// The federation's offices from the root down one branch: province, city, county, township.
fn four_levels() -> (Fed, [String; 4]) {
    let (fed, codes) = common::fast_chain::<4>("53");
    for (n, len) in [2, 4, 6, 9].into_iter().enumerate() {
        assert_eq!(codes[n].len(), len, "one office per level: {codes:?}");
    }
    (fed, codes)
}

/// `args` as the admin of `office` (signed in by the harness when it made the office's officer).
fn as_admin(fed: &Fed, office: &str, args: &[&str]) -> std::process::Output {
    fed.at(office);
    let token = fed.dir().join(format!("{office}-admin.token"));
    let mut all = vec!["--token-file", token.to_str().unwrap()];
    all.extend_from_slice(args);
    fed.run(&all)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The notices `office` received, as its officer reads them.
fn worklist(fed: &Fed, office: &str) -> Value {
    fed.at(office).json(&["notices", "--office", office])
}

fn notices(list: &Value) -> Vec<Value> {
    list["notices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["notice"].clone())
        .collect()
}

/// Polls until `ready` holds for what `read` answers; that answer.
fn wait_for(what: &str, read: impl Fn() -> Value, ready: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let value = read();
        if ready(&value) {
            return value;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "never saw {what}: {value}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn notices_climb_three_levels_through_a_partition_and_a_missed_order_earns_one_red_card() {
    let (fed, [province, city, county, township]) = four_levels();
    let day_ms = liandong_domain::DAY_MS;

    // The township's admin sets its ages; bad ones are refused and change nothing.
    let set = as_admin(
        &fed,
        &township,
        &["notice", "policy", "--office", &township, "--ages", "1,2,3"],
    );
    assert!(set.status.success(), "{}", stderr(&set));
    for (ages, says) in [
        ("2,1", "older than the one before"),
        ("0", "between 1 and"),
        ("1,2,3,4", "at most 3"),
        ("1,1", "older than the one before"),
    ] {
        let out = as_admin(
            &fed,
            &township,
            &["notice", "policy", "--office", &township, "--ages", ages],
        );
        assert!(!out.status.success(), "{ages} was taken");
        assert!(stderr(&out).contains(says), "{ages}: {}", stderr(&out));
    }
    // Not an admin, or another office's admin: refused.
    let refused = fed
        .at(&township)
        .fails(&["notice", "policy", "--office", &township, "--ages", "5"]);
    assert!(refused.contains("admin"), "{refused}");
    let out = as_admin(
        &fed,
        &county,
        &["notice", "policy", "--office", &township, "--ages", "5"],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("own office"), "{}", stderr(&out));
    // The root has no level above it.
    let out = as_admin(
        &fed,
        &province,
        &["notice", "policy", "--office", &province, "--ages", "5"],
    );
    assert!(stderr(&out).contains("no level above"), "{}", stderr(&out));
    let shown = as_admin(&fed, &township, &["--json", "notice", "policy"]);
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(
        shown["policy"]["policy"]["ages_days"],
        serde_json::json!([1, 2, 3]),
        "{shown}"
    );

    // An officer reads only its own office's worklist.
    let refused = fed.at(&township).fails(&["notices", "--office", &county]);
    assert!(refused.contains("own office"), "{refused}");

    // The county is cut off while the township's case ages past every level: the notices wait
    // in the township's outbox (each climbs through the county).
    fed.ok(&["drill", "partition", "--office", &county]);
    let case = file_case(&fed, &township, 1, "housing");
    let filed_by = worklist(&fed, &township)["as_of"].as_i64().unwrap();
    wait_for(
        "the township's clock five days on",
        || worklist(&fed, &township),
        |list| list["as_of"].as_i64().unwrap() > filed_by + 5 * day_ms,
    );
    assert!(notices(&worklist(&fed, &county)).is_empty());
    assert!(notices(&worklist(&fed, &city)).is_empty());
    assert!(notices(&worklist(&fed, &province)).is_empty());

    // After the heal each level's office has its one notice.
    fed.ok(&["drill", "heal"]);
    for (office, level) in [(&county, 1), (&city, 2), (&province, 3)] {
        let list = wait_for(
            &format!("the notice at {office}"),
            || worklist(&fed, office),
            |list| !notices(list).is_empty(),
        );
        let got = notices(&list);
        assert_eq!(got.len(), 1, "one notice at {office}: {list}");
        assert_eq!(got[0]["case_id"], case.as_str());
        assert_eq!(got[0]["origin"], township.as_str());
        assert_eq!(got[0]["level"], level);
        assert_eq!(got[0]["category"], "housing");
        assert!(got[0]["age_days"].as_u64().unwrap() >= level, "{list}");
        assert_eq!(list["more"], false);
    }
    let text = fed.at(&city).ok(&["notices", "--office", &city]);
    assert!(text.contains(&case) && text.contains(&township), "{text}");

    // Each notice says where its case stands now: open until the township answers it, then
    // resolved at every level (the reply reaches them through the index).
    let now = |office: &str| worklist(&fed, office)["notices"][0]["now"].clone();
    assert_ne!(now(&county)["resolved"], true, "{}", now(&county));
    let officer = fed.at(&township);
    officer.ok(&["case", "accept", &case]);
    officer.ok(&[
        "case",
        "reply",
        &case,
        "--opinion",
        "explain",
        "--text",
        "the policy applies",
    ]);
    for office in [&county, &city, &province] {
        let list = wait_for(
            &format!("the notice resolved at {office}"),
            || worklist(&fed, office),
            |list| list["notices"][0]["now"]["resolved"] == true,
        );
        assert_eq!(list["notices"][0]["now"]["status"], "replied", "{list}");
        assert_eq!(list["notices"][0]["now"]["holder"], township.as_str());
    }
    let text = fed.at(&county).ok(&["notices", "--office", &county]);
    assert!(text.contains("resolved (replied at"), "{text}");

    // A supervision order from the city on a case the county holds, with its lead department,
    // left unanswered past its due date: one red card, at the county and at the city.
    let out = as_admin(
        &fed,
        &county,
        &["department", "add", "--code", "housing", "--name", "住建"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let held = file_case(&fed, &county, 2, "housing");
    fed.at(&county).ok(&[
        "case",
        "route",
        &held,
        "--lead",
        "housing",
        "--due-days",
        "30",
    ]);
    common::verified(&fed);
    fed.at(&city).ok(&[
        "supervise",
        &held,
        "--from",
        &city,
        "--due-days",
        "1",
        "--text",
        "report progress",
    ]);
    let cards = wait_for(
        "the red card at the city",
        || fed.at(&city).json(&["red-cards", "--office", &city]),
        |cards| !cards["received"].as_array().unwrap().is_empty(),
    );
    let received = cards["received"].as_array().unwrap();
    assert_eq!(received.len(), 1, "{cards}");
    assert_eq!(received[0]["card"]["case_id"], held.as_str());
    assert_eq!(received[0]["card"]["office"], county.as_str());
    assert_eq!(received[0]["card"]["department"], "housing");
    assert_eq!(
        cards["counts"],
        serde_json::json!([{"office": county, "red_cards": 1}]),
        "{cards}"
    );
    let own = fed.at(&county).json(&["red-cards", "--office", &county]);
    assert_eq!(own["earned"].as_array().unwrap().len(), 1, "{own}");
    assert_eq!(
        own["departments"],
        serde_json::json!([{"department": "housing", "red_cards": 1}]),
        "{own}"
    );
    let stats = fed.at(&county).json(&["department", "stats"]);
    assert_eq!(stats["departments"][0]["department"], "housing");
    assert_eq!(stats["departments"][0]["red_cards"], 1, "{stats}");
    let text = fed.at(&city).ok(&["red-cards", "--office", &city]);
    assert!(text.contains(&held) && text.contains(&county), "{text}");
}
