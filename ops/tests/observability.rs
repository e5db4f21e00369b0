//! What an operator watches, from the outside: `status` (the verdict line, the office tree, the
//! health of each office and its JSON), each host's metrics page read by a Prometheus parser,
//! and a case followed across offices by its trace id in the hosts' logs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{id_number, liandong_bin, Fed};
use liandong_node::manifest::Manifest;
use liandong_ops::view::plain;
use prometheus_parse::{Sample, Scrape, Value as Metric};
use serde_json::Value;

fn manifest(fed: &Fed) -> Manifest {
    Manifest::load(&fed.dir.join("manifest.json")).expect("the manifest")
}

/// `up`, with the trace lines of the hosts' logs on.
fn up_tracing(fed: &Fed) {
    let out = Command::new(liandong_bin())
        .arg("--dir")
        .arg(&fed.dir)
        .arg("up")
        .env("RUST_LOG", "info,openraft=warn,liandong_node::trace=debug")
        .output()
        .expect("liandong up");
    assert!(
        out.status.success(),
        "up failed: {}{}",
        String::from_utf8_lossy(&out.stderr),
        fed.logs_tail()
    );
}

/// The body of `GET /metrics` at `addr`.
fn scrape(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connecting to the metrics page");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body.to_string()
}

/// Every host's page, parsed as Prometheus parses it; also checks what the parser lets pass:
/// each family's TYPE is given once, before its samples, and every sample belongs to a family.
fn scrape_all(fed: &Fed) -> Vec<Sample> {
    let mut samples = Vec::new();
    for host in &manifest(fed).hosts {
        let body = scrape(&host.metrics_addr);
        let mut typed: BTreeMap<String, String> = BTreeMap::new();
        for line in body.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert!(
                    typed.insert(name.to_string(), kind.to_string()).is_none(),
                    "{name} typed twice on {}",
                    host.name
                );
            } else if !line.starts_with('#') && !line.is_empty() {
                let name = line.split(['{', ' ']).next().unwrap_or_default();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| {
                        name.strip_suffix(suffix)
                            .filter(|base| typed.get(*base).is_some_and(|k| k == "histogram"))
                    })
                    .unwrap_or(name);
                assert!(
                    typed.contains_key(family),
                    "sample {line:?} on {} has no TYPE before it",
                    host.name
                );
            }
        }
        let lines = body.lines().map(|line| Ok(line.to_string()));
        let parsed = Scrape::parse(lines).expect("valid Prometheus text");
        samples.extend(parsed.samples);
    }
    samples
}

fn label<'a>(sample: &'a Sample, name: &str) -> &'a str {
    sample.labels.get(name).unwrap_or_default()
}

fn value(sample: &Sample) -> f64 {
    match &sample.value {
        Metric::Counter(v) | Metric::Gauge(v) | Metric::Untyped(v) => *v,
        Metric::Histogram(_) | Metric::Summary(_) => f64::NAN,
    }
}

fn office<'a>(status: &'a Value, code: &str) -> &'a Value {
    status["offices"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|o| o["code"] == code)
        .unwrap_or_else(|| panic!("no office {code} in {status}"))
}

/// Every host's log lines naming `trace_id`.
fn traced(fed: &Fed, trace_id: &str) -> Vec<String> {
    let needle = format!("trace_id={trace_id}");
    std::fs::read_dir(fed.dir.join("run"))
        .unwrap()
        .flatten()
        .filter(|entry| entry.path().extension().is_some_and(|e| e == "log"))
        .flat_map(|entry| {
            plain(&std::fs::read_to_string(entry.path()).unwrap_or_default())
                .lines()
                .filter(|line| line.contains(&needle))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The status JSON keeps every field of the command-line contract and adds each office's health
/// (a leader that commits), commit and applied index, replication lag, outbox per link and
/// quiescence; the text opens with a one-line verdict over the office tree; every host's
/// metrics page parses as Prometheus text and carries the office, link, case and latency
/// figures; a case's trace id shows its write and its index message across two offices' logs.
/// Fails without the health fields, the metrics families or the trace lines.
#[test]
fn status_metrics_and_traces_describe_a_running_federation() {
    let fed = Fed::init(&["--region", "5306", "--max-children", "1"], 6);
    up_tracing(&fed);
    let filed = fed.at("530602001").json(&[
        "case",
        "file",
        "--office",
        "530602001",
        "--channel",
        "visit",
        "--petitioner-id",
        &id_number(1),
        "--name",
        "张三",
        "--category",
        "housing",
        "--summary",
        "roof leaks",
    ]);
    let case_id = filed["case_id"].as_str().unwrap().to_string();

    // The county's messages to the city fail: every county host's link to every city host cut.
    let manifest = manifest(&fed);
    let hosts_of = |code: &str| -> Vec<String> {
        let entry = manifest.office(code).unwrap();
        entry.members.iter().map(|m| m.host.clone()).collect()
    };
    for from in hosts_of("530602") {
        for to in hosts_of("5306") {
            fed.ok(&[
                "drill",
                "link",
                "--from-host",
                &from,
                "--to-host",
                &to,
                "--cut",
            ]);
        }
    }
    fed.at("530602").ok(&[
        "case",
        "file",
        "--office",
        "530602",
        "--channel",
        "letter",
        "--petitioner-id",
        &id_number(2),
        "--name",
        "李四",
        "--category",
        "land",
        "--summary",
        "a boundary",
    ]);
    wait_for(
        "a failed delivery from the county to the city",
        Duration::from_secs(20),
        || {
            scrape_all(&fed).iter().any(|s| {
                s.metric == "liandong_delivery_retries_total"
                    && label(s, "office") == "530602"
                    && label(s, "to") == "5306"
                    && value(s) >= 1.0
            })
        },
    );

    let status = fed.json(&["status"]);
    for office_json in status["offices"].as_array().unwrap() {
        for field in [
            "code",
            "name",
            "level",
            "parent",
            "leader",
            "term",
            "replicas",
            "outbox_pending",
            "health",
            "commits",
            "commit_index",
            "applied_index",
            "replication",
            "links",
            "quiesced",
            "leader_changes_last_minute",
        ] {
            assert!(
                office_json.get(field).is_some(),
                "office without {field}: {office_json}"
            );
        }
        assert_eq!(office_json["health"], "ok", "{office_json}");
        assert_eq!(office_json["commits"], true, "{office_json}");
        let leader = office_json["leader"].as_u64().unwrap();
        assert!(office_json["commit_index"].as_u64().unwrap() >= 1);
        let members: BTreeSet<u64> = office_json["replication"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_u64().unwrap())
            .collect();
        assert_eq!(
            members.len(),
            2,
            "the leader reports both followers: {office_json}"
        );
        assert!(!members.contains(&leader));
        for replica in office_json["replicas"].as_array().unwrap() {
            for field in ["id", "host", "alive", "last_applied", "quiesced"] {
                assert!(
                    replica.get(field).is_some(),
                    "replica without {field}: {replica}"
                );
            }
        }
    }
    for host in status["hosts"].as_array().unwrap() {
        for field in ["name", "pid", "alive", "metrics_url"] {
            assert!(host.get(field).is_some(), "host without {field}: {host}");
        }
    }
    assert_eq!(status["verdict"]["ok"], true, "{}", status["verdict"]);
    let county = office(&status, "530602");
    let to_city = county["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["to"] == "5306")
        .unwrap_or_else(|| panic!("the county's link to the city waits: {county}"));
    assert!(to_city["pending"].as_u64().unwrap() >= 1, "{to_city}");
    assert!(to_city["oldest"].is_string(), "{to_city}");

    let text = fed.ok(&["status"]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("ok: all 3 offices have a leader that commits"),
        "{text}"
    );
    assert!(lines[1].starts_with("OFFICE"), "{text}");
    let township = lines.iter().find(|l| l.contains("530602001")).unwrap();
    assert!(
        township.starts_with("    530602001"),
        "townships sit under their county: {text}"
    );
    let county_line = lines
        .iter()
        .find(|l| l.trim_start().starts_with("530602 "))
        .unwrap();
    assert!(
        county_line.contains("to 5306 (oldest"),
        "the county's waiting link: {text}"
    );

    let samples = scrape_all(&fed);
    let families: BTreeSet<&str> = samples.iter().map(|s| s.metric.as_str()).collect();
    for family in [
        "liandong_raft_term",
        "liandong_raft_leader",
        "liandong_raft_is_leader",
        "liandong_raft_commit_index",
        "liandong_raft_last_applied_index",
        "liandong_raft_replication_lag_entries",
        "liandong_raft_quiesced",
        "liandong_outbox_pending_messages",
        "liandong_outbox_oldest_age_seconds",
        "liandong_delivery_retries_total",
        "liandong_cases",
        "liandong_cases_overdue",
        "liandong_request_duration_seconds",
    ] {
        assert!(
            families.contains(family),
            "no {family} on any page: {families:?}"
        );
    }
    let registered = samples.iter().any(|s| {
        s.metric == "liandong_cases"
            && label(s, "office") == "530602001"
            && label(s, "status") == "registered"
            && value(s) == 1.0
    });
    assert!(
        registered,
        "the township's leader counts its registered case"
    );
    let waiting = samples.iter().any(|s| {
        s.metric == "liandong_outbox_pending_messages"
            && label(s, "office") == "530602"
            && label(s, "to") == "5306"
            && value(s) >= 1.0
    });
    assert!(waiting, "the county's leader shows its waiting link");
    let filings_timed = samples.iter().any(|s| {
        s.metric == "liandong_request_duration_seconds"
            && label(s, "method") == "/liandong.v1.Cases/File"
            && matches!(&s.value, Metric::Histogram(buckets) if !buckets.is_empty())
    });
    assert!(filings_timed, "filings are timed as a histogram");

    // The township's case, followed by its trace id: written at the township, its index update
    // delivered by the township and applied by the county.
    wait_for(
        "the township's index update traced",
        Duration::from_secs(10),
        || {
            traced(&fed, &case_id)
                .iter()
                .any(|line| line.contains("message applied") && line.contains("to=530602 "))
        },
    );
    let lines = traced(&fed, &case_id);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("case written") && l.contains("office=530602001")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("message delivered") && l.contains("from=530602001")),
        "{lines:#?}"
    );
    fed.ok(&["drill", "heal"]);
}

/// `up` claims health only when every office's leader commits: with both followers of the only
/// office stopped (their ports taken, so `up` cannot start them again), the leader still says
/// it leads, but `up` fails naming the office, and `status` says NOT OK. The old check (a
/// leader exists) would have passed.
#[test]
fn up_claims_health_only_when_every_leader_commits() {
    let fed = Fed::init(&["--region", "5306", "--max-children", "0"], 3);
    fed.ok(&["up"]);
    let status = fed.json(&["status"]);
    let leader = office(&status, "5306")["leader"].as_u64().unwrap();
    let manifest = manifest(&fed);
    let mut held = Vec::new();
    for member in &manifest.office("5306").unwrap().members {
        if member.id == leader {
            continue;
        }
        fed.ok(&[
            "drill",
            "kill",
            "--office",
            "5306",
            "--replica",
            &member.id.to_string(),
        ]);
        let host = manifest.host(&member.host).unwrap();
        let mut bound = None;
        wait_for(
            "the killed host's port to be free",
            Duration::from_secs(10),
            || {
                bound = TcpListener::bind(host.raft_addr.as_str()).ok();
                bound.is_some()
            },
        );
        held.extend(bound);
    }
    let still_claims = fed.json(&["status"]);
    let office_json = office(&still_claims, "5306");
    assert_eq!(
        office_json["leader"].as_u64(),
        Some(leader),
        "{office_json}"
    );
    assert_eq!(office_json["health"], "not_committing", "{office_json}");
    assert_eq!(still_claims["verdict"]["ok"], false);
    let text = fed.ok(&["status"]);
    assert!(
        text.starts_with("NOT OK: 1 of 1 offices unhealthy (5306 not committing)"),
        "{text}"
    );

    let refused = fed.fails(&["up", "--timeout-seconds", "3"]);
    assert!(
        refused.contains("5306") && refused.contains("no leader that commits"),
        "{refused}"
    );
    drop(held);
}

/// `logs --office` shows the logs of the hosts carrying the office, merged, each line led by its
/// host, colour codes gone; `--grep` keeps the matching lines; `--follow` prints what a host
/// writes afterwards (a host restarted); an unknown office is one clear error.
#[test]
fn logs_show_an_offices_hosts_and_follow_what_they_write() {
    let fed = Fed::init(&["--region", "5306", "--max-children", "0"], 3);
    fed.ok(&["up"]);
    let manifest = manifest(&fed);
    let hosts: BTreeSet<String> = manifest
        .office("5306")
        .unwrap()
        .members
        .iter()
        .map(|member| member.host.clone())
        .collect();
    let all = fed.json(&["logs", "--office", "5306", "--lines", "1000"]);
    let lines = all["lines"].as_array().unwrap();
    assert!(!lines.is_empty(), "{all}");
    let seen: BTreeSet<String> = lines
        .iter()
        .map(|line| line["host"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, hosts, "every host of the office, no other");
    assert!(lines
        .iter()
        .all(|line| !line["line"].as_str().unwrap().contains('\u{1b}')));
    let serving = fed.ok(&["logs", "--office", "5306", "--grep", "host serving"]);
    assert_eq!(serving.lines().count(), hosts.len(), "{serving}");
    for host in &hosts {
        assert!(serving.contains(&format!("{host} | ")), "{serving}");
    }

    let mut follow = Command::new(liandong_bin())
        .arg("--dir")
        .arg(&fed.dir)
        .args(["logs", "--office", "5306", "--follow", "--lines", "0"])
        .args(["--grep", "host serving"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = follow.stdout.take().unwrap();
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(read) = stdout.read(&mut buffer) {
            if read == 0 || send.send(buffer[..read].to_vec()).is_err() {
                break;
            }
        }
    });
    // Following has started when the tail (none asked) is behind it: give it a poll.
    std::thread::sleep(Duration::from_millis(500));
    let restarted = manifest.office("5306").unwrap().members[0].host.clone();
    fed.ok(&["drill", "kill", "--office", "5306", "--replica", "1"]);
    fed.ok(&["up"]);
    let mut printed = String::new();
    let start = Instant::now();
    while !printed.contains(&format!("{restarted} | ")) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "--follow never printed the restart: {printed:?}"
        );
        if let Ok(bytes) = receive.recv_timeout(Duration::from_millis(200)) {
            printed.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(printed.contains("host serving"), "{printed}");

    let unknown = fed.fails(&["logs", "--office", "9999"]);
    assert!(unknown.contains("no office \"9999\""), "{unknown}");
}
