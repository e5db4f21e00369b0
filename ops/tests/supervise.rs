//! A supervisor's read paths from the outside, on seven offices (city 5306, counties 530602 and
//! 530621, four townships) on nine real host processes: the index answer with its `as_of`, the
//! fresh answer during a partition (partial, the county unreachable, its cases stale) and after
//! the heal (the same cases as the index), filters, paging with cursors, and bad input.

mod common;

use common::Fed;
use serde_json::Value;
use std::collections::BTreeMap;

fn seven_offices() -> Fed {
    let fed = Fed::init(
        &["--region", "5306", "--max-children", "2", "--replicas", "3"],
        9,
    );
    fed.ok(&["up"]);
    fed
}

fn file(fed: &Fed, office: &str, n: u64, category: &str) -> String {
    common::file_case(fed, office, n, category)
}

fn verified(fed: &Fed) {
    common::verified(fed);
}

/// Each case of an answer by id: its office, status and whether it is stale.
fn by_id(answer: &Value) -> BTreeMap<String, (String, String, bool)> {
    answer["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["case_id"].as_str().unwrap().to_string(),
                (
                    c["office"].as_str().unwrap().to_string(),
                    c["status"].as_str().unwrap().to_string(),
                    c["stale"] == true,
                ),
            )
        })
        .collect()
}

/// Without the fresh path the city would answer from its index with `partial: false` while the
/// county's new cases are missing from it; without the index fallback the county's older cases
/// would vanish from the fresh answer. After the heal both paths agree case for case.
#[test]
fn a_fresh_query_names_the_partitioned_county_and_agrees_with_the_index_after_heal() {
    let fed = seven_offices();
    let township_case = file(&fed, "530602001", 1, "labour");
    let county_case = file(&fed, "530602", 2, "labour");
    let sibling_case = file(&fed, "530621", 3, "land");
    let city_case = file(&fed, "5306", 4, "land");
    verified(&fed);
    let city = fed.at("5306");
    let before = city.json(&["query", "--as", "5306"]);
    assert_eq!(before["partial"], false);
    let as_of_before = before["as_of"]["530602"].as_str().unwrap().to_string();

    fed.ok(&["drill", "partition", "--office", "530602"]);
    let hidden = file(&fed, "530602", 5, "labour");
    let fresh = city.json(&["query", "--as", "5306", "--fresh"]);
    assert_eq!(fresh["partial"], true, "{fresh}");
    assert_eq!(
        fresh["unreachable"],
        serde_json::json!(["530602"]),
        "{fresh}"
    );
    let cases = by_id(&fresh);
    for id in [&township_case, &county_case] {
        assert!(
            cases[id].2,
            "{id} is served from the index, marked stale: {fresh}"
        );
    }
    for id in [&sibling_case, &city_case] {
        assert!(!cases[id].2, "{id} answered fresh: {fresh}");
    }
    assert!(
        !cases.contains_key(&hidden),
        "the county's newest case cannot be seen across the cut: {fresh}"
    );
    assert!(fresh["answered"]["530621"].is_string(), "{fresh}");
    assert!(fresh["answered"]["530602"].is_null(), "{fresh}");
    let index = city.json(&["query", "--as", "5306"]);
    assert_eq!(
        index["as_of"]["530602"].as_str().unwrap(),
        as_of_before,
        "the index holds the county as of before the cut: {index}"
    );
    // The figures too: the county's rows are counted from the index, and the answer says so.
    let stats = city.json(&["stats", "--as", "5306", "--fresh"]);
    assert_eq!(
        (&stats["fresh"], &stats["partial"]),
        (&serde_json::json!(true), &serde_json::json!(true)),
        "{stats}"
    );
    assert_eq!(
        stats["unreachable"],
        serde_json::json!(["530602"]),
        "{stats}"
    );
    assert!(stats["answered"]["530621"].is_string(), "{stats}");
    let cut_total = stats["total"].as_u64().unwrap();
    assert_eq!(
        cut_total,
        city.json(&["stats", "--as", "5306"])["total"]
            .as_u64()
            .unwrap(),
        "the county's newest case is in neither answer"
    );
    let text = city.ok(&["stats", "--as", "5306", "--fresh"]);
    assert!(
        text.contains("PARTIAL: counted from the index for 530602"),
        "{text}"
    );

    fed.ok(&["drill", "heal"]);
    verified(&fed);
    let fresh = city.json(&["query", "--as", "5306", "--fresh"]);
    let index = city.json(&["query", "--as", "5306"]);
    assert_eq!(fresh["partial"], false, "{fresh}");
    assert_eq!(by_id(&fresh), by_id(&index), "fresh {fresh}\nindex {index}");
    assert!(by_id(&index).contains_key(&hidden));
    let stats = city.json(&["stats", "--as", "5306", "--fresh"]);
    let index_stats = city.json(&["stats", "--as", "5306"]);
    assert_eq!(stats["partial"], false, "{stats}");
    assert_eq!(stats["unreachable"], serde_json::json!([]), "{stats}");
    assert_eq!(stats["total"].as_u64().unwrap(), cut_total + 1, "{stats}");
    assert_eq!(
        stats["offices"], index_stats["offices"],
        "fresh and index figures agree office by office after the heal"
    );
    assert!(
        index["as_of"]["530602"].as_str().unwrap() > as_of_before.as_str(),
        "{index}"
    );
}

/// Filters narrow the answer as named; pages of two, followed by their cursors, hold every case
/// exactly once; bad input is one clear line; a county cannot ask about its sibling.
#[test]
fn filters_pages_and_bad_input() {
    let fed = seven_offices();
    let mut filed = Vec::new();
    for n in 0..3 {
        filed.push(file(&fed, "530602001", 10 + n, "labour"));
        filed.push(file(&fed, "530621", 20 + n, "land"));
    }
    let township = fed.at("530602001");
    township.ok(&["case", "accept", &filed[0]]);
    township.ok(&["case", "decline", &filed[2], "--route", "litigation"]);
    verified(&fed);
    let city = fed.at("5306");

    let all = city.json(&["query", "--as", "5306"]);
    assert_eq!(by_id(&all).len(), 6, "{all}");
    assert!(all["next_cursor"].is_null());
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut args = vec!["query", "--as", "5306", "--limit", "2"];
        if let Some(cursor) = &cursor {
            args.extend(["--cursor", cursor.as_str()]);
        }
        let page = city.json(&args);
        assert!(page["cases"].as_array().unwrap().len() <= 2);
        paged.extend(by_id(&page).into_keys());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(paged, by_id(&all).into_keys().collect::<Vec<_>>());

    let count = |args: &[&str]| {
        let mut all = vec!["query", "--as", "5306"];
        all.extend_from_slice(args);
        by_id(&city.json(&all)).len()
    };
    assert_eq!(count(&["--status", "open"]), 5);
    assert_eq!(count(&["--status", "closed"]), 1);
    assert_eq!(count(&["--status", "accepted"]), 1);
    assert_eq!(count(&["--level", "township"]), 3);
    assert_eq!(count(&["--level", "county"]), 3);
    assert_eq!(count(&["--office", "530621"]), 3);
    assert_eq!(count(&["--category", "land"]), 3);
    assert_eq!(count(&["--grade", "A"]), 0);
    assert_eq!(count(&["--registered-from", "2000-01-01"]), 6);
    assert_eq!(count(&["--registered-to", "2000-01-01"]), 0);
    assert_eq!(count(&["--fresh", "--status", "open"]), 5);

    for (args, says) in [
        (vec!["--status", "pending"], "unknown status"),
        (vec!["--level", "village"], "unknown level"),
        (vec!["--grade", "D"], "unknown grade"),
        (vec!["--cursor", "not-a-case"], "bad --cursor"),
        (vec!["--limit", "10001"], "over the maximum"),
        (
            vec!["--registered-from", "2026-13-01"],
            "bad --registered-from",
        ),
        (
            vec!["--fresh", "--deadline-ms", "999999"],
            "over the maximum",
        ),
    ] {
        let mut all = vec!["query", "--as", "5306"];
        all.extend_from_slice(&args);
        let refusal = city.fails(&all);
        assert!(refusal.contains(says), "{args:?}: {refusal}");
        assert_eq!(refusal.trim().lines().count(), 1, "{args:?}: {refusal}");
    }
    let county = fed.at("530602");
    let sibling = county.fails(&["query", "--as", "530602", "--office", "530621"]);
    assert!(sibling.contains("outside 530602's subtree"), "{sibling}");
    let sibling = county.fails(&["query", "--as", "530621", "--fresh"]);
    assert!(
        sibling.contains("acts only for its own office"),
        "{sibling}"
    );

    let stats = city.json(&["stats", "--as", "5306"]);
    let rows: u64 = stats["offices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["total"].as_u64().unwrap())
        .sum();
    assert_eq!(stats["total"], 6);
    assert_eq!(rows, 6, "{stats}");
    for row in stats["offices"].as_array().unwrap() {
        let code = row["code"].as_str().unwrap();
        assert_eq!(
            row["total"].as_u64().unwrap(),
            count(&["--office", code]) as u64,
            "{code}'s row counts what a query of that office lists: {stats}"
        );
    }
    let statuses: u64 = stats["by_status"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(statuses, 6, "{stats}");
    assert_eq!(stats["by_status"]["accepted"], 1, "{stats}");
    assert_eq!(stats["by_status"]["declined"], 1, "{stats}");

    // The township's first petitioner petitions again at the other county: the city finds both
    // cases by the petitioner key, and no one else's.
    let again = file(&fed, "530621", 10, "labour");
    verified(&fed);
    let key = township.json(&["case", "show", &filed[0]])["petitioner_key"]
        .as_str()
        .unwrap()
        .to_string();
    let same = city.json(&["query", "--as", "5306", "--petitioner-key", &key]);
    let ids: Vec<String> = by_id(&same).into_keys().collect();
    let mut expected = vec![filed[0].clone(), again];
    expected.sort();
    assert_eq!(ids, expected, "{same}");
    let refusal = city.fails(&["query", "--as", "5306", "--petitioner-key", "a b"]);
    assert!(refusal.contains("bad petitioner key"), "{refusal}");
}

/// A fresh query's hop at a child office reads index summaries only, like a status call: the
/// child records it with its next append instead of appending (and waking) for it. Without that,
/// the county would append the hop's record within a second of the query.
#[test]
fn a_fresh_querys_hop_is_recorded_at_the_child_with_its_next_append() {
    let fed = seven_offices();
    let county = fed.at("530621");
    let city = fed.at("5306");
    // At start each office makes its last whole period's reports: let that append come first.
    common::wait_until(&fed, "the county's start-up reports", || {
        county.json(&["report", "list", "--office", "530621"])["reports"]
            .as_array()
            .is_some_and(|reports| !reports.is_empty())
    });
    let hops = |audit: &Value| {
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["rpc"] == "Federation.Query"
                    && e["user"].as_str().is_some_and(|u| u.starts_with("host:"))
            })
            .count()
    };
    // The logins' and the report list's own records are appended by now.
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    let before = hops(&county.json(&["audit"]));
    // And that read's own record, so the hop cannot ride with it.
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    let fresh = city.json(&["query", "--as", "5306", "--fresh"]);
    assert_eq!(fresh["partial"], false, "{fresh}");
    assert!(fresh["answered"]["530621"].is_string(), "{fresh}");
    // Past two audit flushes: a record that waited for nothing would be appended by now.
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    assert_eq!(
        hops(&county.json(&["audit"])),
        before,
        "the hop was appended on its own"
    );
    // The audit read just now is the county's next append: the hop rides with it.
    common::wait_until(
        &fed,
        "the hop recorded with the county's next append",
        || hops(&county.json(&["audit"])) > before,
    );
}
