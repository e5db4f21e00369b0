//! Supervisors' figures from the outside (issue 11, items 2 and 3): the `liandong` command line
//! against a city, its county and its township on real host processes (RocksDB, mTLS), their
//! clock running 100,000 times the wall clock so that a 15-day limit passes in seconds. Four
//! cases through four channels: one accepted late, two replied at once, one filed at the city
//! for a township's matter (skip-level, 越级), one left to run past its limit. Each new filter
//! returns exactly its cases, `stats` adds up and matches `query`, the scorecard and the trend
//! give the expected numbers, and bad input is refused with one clear line, changing nothing.
//!
//! Every assertion is made once the cases are settled (the open one past its limit, the others
//! with no running limit), so what they read no longer changes as time runs.

mod common;

use std::collections::BTreeMap;

use common::{id_number, wait_until, Fed};
use serde_json::Value;

/// The city, its county and its township, one replica each, the clock 100,000 times the wall's.
fn three_levels() -> (Fed, [String; 3]) {
    common::fast_chain("5306")
}

/// Files petition `n` at `office` by `channel` (about `location`, if given); its case id.
fn file(fed: &Fed, office: &str, n: u64, channel: &str, location: Option<&str>) -> String {
    let id = id_number(n);
    let summary = format!("petition {n}");
    let mut args = vec![
        "case",
        "file",
        "--office",
        office,
        "--channel",
        channel,
        "--petitioner-id",
        &id,
        "--name",
        "陈七",
        "--category",
        "housing",
        "--summary",
        &summary,
    ];
    if let Some(location) = location {
        args.extend(["--location", location]);
    }
    let case = fed.at(office).json(&args);
    case["case_id"].as_str().unwrap().to_string()
}

fn accept(fed: &Fed, office: &str, case_id: &str) {
    fed.at(office).ok(&["case", "accept", case_id]);
}

fn reply(fed: &Fed, office: &str, case_id: &str, opinion: &str) {
    fed.at(office).ok(&[
        "case",
        "reply",
        case_id,
        "--opinion",
        opinion,
        "--text",
        "answered",
    ]);
}

/// The city's query with `flags`: the cases it lists, by id.
fn query(fed: &Fed, city: &str, flags: &[&str]) -> Vec<Value> {
    let mut args = vec!["query", "--as", city];
    args.extend_from_slice(flags);
    let answer = fed.at(city).json(&args);
    answer["cases"].as_array().unwrap().clone()
}

fn ids(cases: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = cases
        .iter()
        .map(|c| c["case_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<&String>) -> Vec<String> {
    ids.sort();
    ids.into_iter().cloned().collect()
}

/// The China-time day (`YYYY-MM-DD`) of an RFC 3339 time the CLI printed.
fn day(rfc3339: &Value) -> String {
    rfc3339.as_str().unwrap()[..10].to_string()
}

#[test]
fn filters_stats_scorecard_and_trend_tell_the_same_story() {
    let (fed, [city, county, township]) = three_levels();

    // Late: filed at the township by visit, accepted only after its 15 days have passed.
    let late = file(&fed, &township, 1, "visit", None);
    // Prompt: by letter at the township, accepted and replied at once.
    let prompt = file(&fed, &township, 2, "letter", None);
    accept(&fed, &township, &prompt);
    reply(&fed, &township, &prompt, "support");
    // Skip-level: a township's matter filed at the city by phone, accepted and replied at once.
    let skip = file(&fed, &city, 3, "phone", Some(&township));
    accept(&fed, &city, &skip);
    reply(&fed, &city, &skip, "not-support");
    // Waiting: online at the county, never accepted: it warns, then passes its limit.
    let waiting = file(&fed, &county, 4, "online", None);

    wait_until(&fed, "the two undecided cases pass their limit", || {
        ids(&query(&fed, &city, &["--overdue"])) == sorted(vec![&late, &waiting])
    });
    accept(&fed, &township, &late);
    reply(&fed, &township, &late, "explain");
    wait_until(&fed, "the city's index holds every change", || {
        let all = query(&fed, &city, &[]);
        all.len() == 4
            && all.iter().all(|c| c["summary_version"] == 2)
            && all.iter().filter(|c| c["status"] == "replied").count() == 3
    });

    // The summaries' facts.
    let all = query(&fed, &city, &[]);
    let by_id: BTreeMap<String, Value> = all
        .iter()
        .map(|c| (c["case_id"].as_str().unwrap().to_string(), c.clone()))
        .collect();
    assert_eq!(by_id[&late]["accepted_in_time"], false, "{all:?}");
    assert_eq!(by_id[&prompt]["accepted_in_time"], true);
    assert_eq!(by_id[&skip]["accepted_in_time"], true);
    assert_eq!(by_id[&waiting]["accepted_in_time"], Value::Null);
    for id in [&late, &prompt, &skip] {
        assert_eq!(by_id[id]["replied_on_time"], true, "{id}");
    }
    assert_eq!(by_id[&skip]["skip_level"], true);
    assert_eq!(by_id[&late]["opinion"], "explain");
    assert_eq!(by_id[&waiting]["warned"], 100);
    assert!(by_id[&waiting]["due_at"].is_string());

    // Each filter returns exactly its cases.
    for (channel, case) in [
        ("visit", &late),
        ("letter", &prompt),
        ("phone", &skip),
        ("online", &waiting),
    ] {
        assert_eq!(
            ids(&query(&fed, &city, &["--channel", channel])),
            vec![case.clone()],
            "{channel}"
        );
    }
    assert_eq!(
        ids(&query(&fed, &city, &["--skip-level"])),
        vec![skip.clone()]
    );
    assert_eq!(
        ids(&query(&fed, &city, &["--warned"])),
        vec![waiting.clone()]
    );
    assert_eq!(
        ids(&query(&fed, &city, &["--status", "warned"])),
        vec![waiting.clone()]
    );
    let due_day = day(&by_id[&waiting]["due_at"]);
    assert_eq!(
        ids(&query(
            &fed,
            &city,
            &["--due-from", &due_day, "--due-to", &due_day]
        )),
        vec![waiting.clone()]
    );
    assert!(
        query(&fed, &city, &["--due-within", "30"]).is_empty(),
        "the one running limit has passed: none falls in the next 30 days"
    );
    let late_replied = day(&by_id[&late]["replied_at"]);
    assert_eq!(
        ids(&query(
            &fed,
            &city,
            &[
                "--replied-from",
                &late_replied,
                "--replied-to",
                &late_replied
            ]
        )),
        vec![late.clone()]
    );
    let early_replied = day(&by_id[&prompt]["replied_at"]).max(day(&by_id[&skip]["replied_at"]));
    assert!(early_replied < late_replied);
    assert_eq!(
        ids(&query(&fed, &city, &["--replied-to", &early_replied])),
        sorted(vec![&prompt, &skip])
    );

    // Sorted by registration, two a page: the cursor carries the sort and the next page follows.
    let first = fed.at(&city).json(&[
        "query",
        "--as",
        &city,
        "--sort",
        "registered",
        "--limit",
        "2",
    ]);
    let order: Vec<&str> = first["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["case_id"].as_str().unwrap())
        .collect();
    assert_eq!(order, [late.as_str(), prompt.as_str()], "{first}");
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    assert!(cursor.starts_with("registered:"), "{cursor}");
    let second = query(
        &fed,
        &city,
        &["--sort", "registered", "--limit", "2", "--cursor", &cursor],
    );
    let order: Vec<&str> = second
        .iter()
        .map(|c| c["case_id"].as_str().unwrap())
        .collect();
    assert_eq!(order, [skip.as_str(), waiting.as_str()]);
    let by_due = query(&fed, &city, &["--sort", "due"]);
    assert_eq!(
        by_due[0]["case_id"],
        waiting.as_str(),
        "the one running limit first"
    );

    // The figures: totals are the sums of the offices' rows and match what query lists.
    let stats = fed.at(&city).json(&["stats", "--as", &city]);
    assert_eq!(stats["total"], 4, "{stats}");
    let rows = stats["offices"].as_array().unwrap();
    let sum = |figure: &str| -> u64 { rows.iter().map(|r| r[figure].as_u64().unwrap()).sum() };
    for figure in ["total", "overdue", "warned", "skip_level", "backlog"] {
        assert_eq!(
            stats[figure].as_u64().unwrap(),
            sum(figure),
            "{figure}: {stats}"
        );
    }
    for row in rows {
        let code = row["code"].as_str().unwrap();
        assert_eq!(
            row["total"].as_u64().unwrap() as usize,
            query(&fed, &city, &["--office", code]).len(),
            "{code}"
        );
    }
    for channel in ["visit", "letter", "phone", "online"] {
        assert_eq!(stats["by_channel"][channel], 1, "{channel}: {stats}");
    }
    assert_eq!(stats["warned"], 1);
    assert_eq!(stats["skip_level"], 1);
    assert_eq!(stats["by_level"]["township"], 2);
    assert_eq!(stats["by_level"]["county"], 1);
    assert_eq!(stats["by_level"]["city"], 1);
    assert_eq!(stats["resolution"]["explain"], 1);
    assert_eq!(stats["resolution"]["support"], 1);
    assert_eq!(stats["resolution"]["not-support"], 1);
    let rates = &stats["rates"];
    assert_eq!(rates["acceptance_in_time"]["part"], 2, "{rates}");
    assert_eq!(rates["acceptance_in_time"]["whole"], 3);
    assert_eq!(rates["reply_on_time"]["part"], 3);
    assert_eq!(rates["reply_on_time"]["whole"], 3);
    assert_eq!(rates["skip_level"]["part"], 1);
    assert_eq!(rates["skip_level"]["whole"], 4);
    assert_eq!(rates["review"]["whole"], 3, "originals answered");

    // The scorecard: the city (all in time, but its one case skip-level), the township (one
    // accepted late and overdue), the county (its one case overdue).
    let card = fed.at(&city).json(&["stats", "--as", &city, "--scorecard"]);
    assert!(card["formula"].as_str().unwrap().contains("0.25"), "{card}");
    let ranked: Vec<(&str, f64)> = card["offices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["office"].as_str().unwrap(), o["score"].as_f64().unwrap()))
        .collect();
    let expected = [
        (city.as_str(), 100.0 * (0.25 + 0.25 + 0.20) / 0.8),
        (
            township.as_str(),
            100.0 * (0.25 * 0.5 + 0.25 + 0.20 * 0.5 + 0.10) / 0.8,
        ),
        (county.as_str(), 100.0 * 0.10 / 0.3),
    ];
    assert_eq!(ranked.len(), 3, "{card}");
    for ((office, score), (want_office, want)) in ranked.iter().zip(expected) {
        assert_eq!(*office, want_office, "{card}");
        assert!((score - want).abs() < 1e-6, "{office}: {score} vs {want}");
    }

    // The trend by day: each case on the day it was registered, replied, became overdue.
    let first_day = all.iter().map(|c| day(&c["registered_at"])).min().unwrap();
    let trend = fed.at(&city).json(&[
        "stats",
        "--as",
        &city,
        "--trend",
        "day",
        "--from",
        &first_day,
        "--to",
        &late_replied,
    ]);
    let buckets = trend["buckets"].as_array().unwrap();
    let mut expected: BTreeMap<(String, &str), u64> = BTreeMap::new();
    for case in &all {
        *expected
            .entry((day(&case["registered_at"]), "registered"))
            .or_default() += 1;
        if case["replied_at"].is_string() {
            *expected
                .entry((day(&case["replied_at"]), "replied"))
                .or_default() += 1;
        }
        if case["overdue_at"].is_string() {
            *expected
                .entry((day(&case["overdue_at"]), "overdue"))
                .or_default() += 1;
        }
    }
    let mut seen: BTreeMap<(String, &str), u64> = BTreeMap::new();
    for bucket in buckets {
        for measure in ["registered", "replied", "overdue"] {
            let count = bucket[measure].as_u64().unwrap();
            if count > 0 {
                seen.insert(
                    (bucket["bucket"].as_str().unwrap().to_string(), measure),
                    count,
                );
            }
        }
    }
    assert_eq!(seen, expected, "{trend}");
    let total = |trend: &Value, measure: &str| -> u64 {
        trend["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b[measure].as_u64().unwrap())
            .sum()
    };
    assert_eq!(total(&trend, "registered"), 4);
    assert_eq!(total(&trend, "replied"), 3);
    assert_eq!(total(&trend, "overdue"), 2);
    let weeks = fed.at(&city).json(&[
        "stats",
        "--as",
        &city,
        "--trend",
        "week",
        "--from",
        &first_day,
        "--to",
        &late_replied,
    ]);
    for measure in ["registered", "replied", "overdue"] {
        assert_eq!(total(&weeks, measure), total(&trend, measure), "{measure}");
    }

    // Bad input: one clear line each, and the figures unchanged.
    let city_officer = fed.at(&city);
    for (args, says) in [
        (
            vec!["query", "--as", &city, "--channel", "pigeon"],
            "unknown channel",
        ),
        (
            vec!["query", "--as", &city, "--due-from", "2026-13-01"],
            "--due-from",
        ),
        (
            vec!["query", "--as", &city, "--sort", "size"],
            "unknown sort",
        ),
        (
            vec!["query", "--as", &city, "--sort", "due", "--cursor", &cursor],
            "registered sort",
        ),
        (
            vec![
                "query",
                "--as",
                &city,
                "--sort",
                "registered",
                "--cursor",
                &late,
            ],
            "case id cursor",
        ),
        (
            vec!["stats", "--as", &city, "--trend", "year"],
            "unknown trend period",
        ),
        (
            vec![
                "stats",
                "--as",
                &city,
                "--trend",
                "day",
                "--from",
                "2026-01-02",
                "--to",
                "2026-01-01",
            ],
            "empty",
        ),
        (
            vec![
                "stats",
                "--as",
                &city,
                "--trend",
                "day",
                "--from",
                "2020-01-01",
                "--to",
                "2026-01-01",
            ],
            "more than 400",
        ),
    ] {
        let error = city_officer.fails(&args);
        assert!(error.contains(says), "{args:?}: {error}");
        assert_eq!(error.trim().lines().count(), 1, "{args:?}: {error}");
    }
    let again = fed.at(&city).json(&["stats", "--as", &city]);
    assert_eq!(again["total"], stats["total"]);
    assert_eq!(again["rates"], stats["rates"]);
}
