//! Helpers of the link-fault chaos tests (one-way partitions, lossy links, clock jumps, the
//! federation's one-way cuts, kernel partitions): host names of replicas, `liandong drill link`,
//! the hosts' own count of the faults they applied, and a check of the stamped times of every
//! replica's copy of every case.
#![allow(dead_code)]

use std::collections::BTreeMap;

use chaos_tests::cluster::Cluster;
use futures::StreamExt;
use serde_json::{json, Value};

/// The host carrying replica `replica` of `office`.
pub fn host_of(cluster: &Cluster, office: &str, replica: u64) -> String {
    cluster
        .manifest
        .member_host(office, replica)
        .map(|h| h.name.clone())
        .unwrap_or_else(|| panic!("office {office} has no replica {replica}"))
}

/// The office's (replica, host name) pairs.
pub fn hosts(cluster: &Cluster, office: &str) -> Vec<(u64, String)> {
    cluster
        .manifest
        .office(office)
        .map(|o| o.members.iter().map(|m| (m.id, m.host.clone())).collect())
        .unwrap_or_default()
}

/// `liandong drill link --from-host FROM --to-host TO FLAGS...`.
pub async fn link(cluster: &Cluster, from: &str, to: &str, flags: &[&str]) -> Value {
    let mut args = vec!["drill", "link", "--from-host", from, "--to-host", to];
    args.extend_from_slice(flags);
    cluster
        .cli(&args)
        .await
        .unwrap_or_else(|e| panic!("drill link {from} -> {to} {flags:?}: {e:#}"))
}

/// `liandong drill heal`.
pub async fn heal(cluster: &Cluster) -> Value {
    cluster.cli(&["drill", "heal"]).await.expect("drill heal")
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// What the hosts' link faults did, summed over every host's log ("link faults applied" lines,
/// logged by each host whenever the faults change): cut, delayed, dropped requests and replies.
pub fn applied_link_faults(cluster: &Cluster) -> BTreeMap<String, u64> {
    let mut sums: BTreeMap<String, u64> = ["cut", "delayed", "dropped_requests", "dropped_replies"]
        .iter()
        .map(|k| (k.to_string(), 0))
        .collect();
    let run = cluster.dir.join("run");
    for entry in std::fs::read_dir(&run).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "log") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for line in text.lines().filter(|l| l.contains("link faults applied")) {
            for token in strip_ansi(line).split_whitespace() {
                if let Some((key, value)) = token.split_once('=') {
                    if let (Some(sum), Ok(n)) = (sums.get_mut(key), value.parse::<u64>()) {
                        *sum += n;
                    }
                }
            }
        }
    }
    sums
}

/// Every replica's own copy of every case in `case_ids`, decoded (cases a replica lacks or
/// cannot read are skipped: the durability invariant judges those).
pub async fn all_copies(
    cluster: &Cluster,
    office: &str,
    case_ids: &[String],
) -> Vec<(u64, liandong_domain::Case)> {
    let mut out = Vec::new();
    for (replica, addr) in cluster.replicas(office) {
        let Ok(channel) = liandong_ops::client::officer_channel(&addr, office).await else {
            continue;
        };
        let retry_until = std::time::Instant::now() + chaos_tests::cluster::SHOW_RETRY_FOR;
        let copies: Vec<_> = futures::stream::iter(case_ids.iter().cloned())
            .map(|id| {
                let channel = channel.clone();
                async move { Cluster::show_local(channel, &id, retry_until).await }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        for copy in copies {
            if let Ok(Some(document)) = copy {
                if let Ok(case) = liandong_domain::Case::from_bytes(&document) {
                    out.push((replica, case));
                }
            }
        }
    }
    out
}

/// The state machine's clock never runs backwards: within each copy of a case its history's
/// stamps never decrease, and on each replica case numbers (issued in log order) carry
/// registration stamps that never decrease. Returns the figures and the violations found.
pub fn stamps_monotonic(copies: &[(u64, liandong_domain::Case)]) -> (Value, Vec<String>) {
    let mut violations = Vec::new();
    let mut by_replica: BTreeMap<u64, Vec<(u32, i64, String)>> = BTreeMap::new();
    let mut entries = 0usize;
    for (replica, case) in copies {
        entries += case.history.len();
        for pair in case.history.windows(2) {
            if pair[1].at < pair[0].at {
                violations.push(format!(
                    "replica {replica}, case {}: entry {} at {} after entry {} at {}",
                    case.id, pair[1].seq, pair[1].at, pair[0].seq, pair[0].at
                ));
            }
        }
        by_replica.entry(*replica).or_default().push((
            case.id.seq,
            case.registered_at,
            case.id.to_string(),
        ));
    }
    for (replica, cases) in by_replica.iter_mut() {
        cases.sort();
        for pair in cases.windows(2) {
            if pair[1].1 < pair[0].1 {
                violations.push(format!(
                    "replica {replica}: case {} registered at {} before case {} at {}",
                    pair[1].2, pair[1].1, pair[0].2, pair[0].1
                ));
            }
        }
    }
    let figures = json!({
        "copies_checked": copies.len(),
        "history_entries_checked": entries,
        "violations": violations.len(),
    });
    (figures, violations)
}
