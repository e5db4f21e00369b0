//! Proves, by deterministic simulation (`chaos_tests::sim`): under hundreds of seeded schedules
//! of crashes, leader and quorum loss, host loss, two-way and one-way partitions, lossy,
//! duplicating and reordering links, lost replies and clock skew, every invariant holds after
//! healing (single owner, exactly once, index convergence, integrity, durability, no duplicate,
//! quiescence, replicas caught up); a seed replays to the same bytes; the whole of Zhaotong
//! (162 offices) and of Yunnan (1,607 offices) simulate too.
//!
//! `LIANDONG_SIM_SEEDS` (default 200) and `LIANDONG_SIM_FIRST_SEED` (default 1) pick the seeds;
//! a failure names the command that replays it.

use std::sync::Mutex;
use std::time::Instant;

use chaos_tests::sim::{run, SimConfig, SimReport};
use serde_json::{json, Map, Value};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn failures(report: &SimReport) -> String {
    report.json["invariants"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["ok"] != true)
        .map(|i| format!("{}: {}", i["name"], i["detail"]))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Sums every counter of the reports.
fn totals(reports: &[Value]) -> Value {
    let mut sums: Map<String, Value> = Map::new();
    for report in reports {
        for (name, value) in report["counters"].as_object().into_iter().flatten() {
            let sum =
                sums.get(name).and_then(Value::as_u64).unwrap_or(0) + value.as_u64().unwrap_or(0);
            sums.insert(name.clone(), json!(sum));
        }
    }
    Value::Object(sums)
}

#[test]
fn hundreds_of_seeds_hold_every_invariant() {
    let count = env_u64("LIANDONG_SIM_SEEDS", 200);
    let first = env_u64("LIANDONG_SIM_FIRST_SEED", 1);
    let started = Instant::now();
    let next = Mutex::new(first);
    let end = first.saturating_add(count);
    let results: Mutex<Vec<(u64, SimReport)>> = Mutex::new(Vec::new());
    // Two workers: seeds are independent, each deterministic on its own.
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| loop {
                let seed = {
                    let mut next = next.lock().unwrap_or_else(|p| p.into_inner());
                    if *next >= end {
                        return;
                    }
                    *next += 1;
                    *next - 1
                };
                let report = run(&SimConfig::small(seed)).expect("simulation starts");
                results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((seed, report));
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by_key(|(seed, _)| *seed);
    let failed: Vec<String> = results
        .iter()
        .filter(|(_, report)| !report.ok)
        .map(|(seed, report)| {
            format!(
                "seed {seed}: {} — replay: {}",
                failures(report),
                SimConfig::small(*seed).replay_command()
            )
        })
        .collect();
    let reports: Vec<Value> = results.iter().map(|(_, r)| r.json.clone()).collect();
    chaos_tests::figures!(
        "{}",
        json!({
            "test": "simulation",
            "seeds_run": results.len(),
            "first_seed": first,
            "seconds": started.elapsed().as_secs_f64(),
            "totals": totals(&reports),
            "failed": failed.len(),
        })
    );
    assert_eq!(results.len() as u64, count, "every seed ran");
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn a_seed_replays_exactly() {
    let config = SimConfig::small(env_u64("LIANDONG_SIM_FIRST_SEED", 1) + 7);
    let first = run(&config).expect("simulation starts");
    let second = run(&config).expect("simulation starts");
    assert!(first.ok, "{}", failures(&first));
    assert_eq!(
        first.fingerprint, second.fingerprint,
        "same seed, same replicas"
    );
    assert_eq!(first.json, second.json, "same seed, same report");
    let other = run(&SimConfig::small(config.seed + 1)).expect("simulation starts");
    assert_ne!(
        first.fingerprint, other.fingerprint,
        "another seed drives another run"
    );
    chaos_tests::figures!(
        "{}",
        json!({"test": "replay", "seed": config.seed, "fingerprint": first.fingerprint, "events": first.json["counters"]["events"]})
    );
}

fn large(region: &str, operations: u64) {
    let config = SimConfig::large(env_u64("LIANDONG_SIM_FIRST_SEED", 1), region, operations);
    let started = Instant::now();
    let report = run(&config).expect("simulation starts");
    chaos_tests::figures!(
        "{}",
        json!({
            "test": format!("simulation_{region}"),
            "seconds": started.elapsed().as_secs_f64(),
            "offices": report.json["offices"],
            "counters": report.json["counters"],
            "cases": report.json["cases"],
            "heal_ms": report.json["heal_ms"],
        })
    );
    assert!(
        report.ok,
        "{} — replay: {}",
        failures(&report),
        config.replay_command()
    );
}

#[test]
fn the_whole_of_zhaotong_simulates() {
    large("5306", 3_000);
}

#[test]
fn the_whole_of_yunnan_simulates() {
    large("53", 6_000);
}
