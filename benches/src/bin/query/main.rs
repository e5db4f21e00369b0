//! query: how fast a supervisor's index answers with a province in it.
//!
//! Mode (printed with the figures): **one replica's RocksDB, in process**. A provincial office
//! (Yunnan, `53`) opens its state machine over a real RocksDB in a temporary folder, exactly as
//! a host opens it, and is loaded through the state machine's apply path with `--cases`
//! summaries (1,000,000 by default) arriving from its 16 cities in batches of log entries, as
//! its children's index feeds would deliver them: each moves the counters and the query's
//! secondary keys in the same write. The holders are Yunnan's 1,607 real offices (the embedded
//! topology). Then it measures, with hdrhistogram:
//!
//! - `index query`: one page (`--limit`, 50 by default) of the index answer, through the same
//!   read the Query RPC makes ([`query::index_page`]), cycling through the filters supervisors
//!   use (none, open, overdue, one office, a status, due within a month sorted by due, a
//!   registered range sorted by registered) and following each answer's cursor for a second
//!   page;
//! - `stats`: every office's counters, as the Stats RPC reads them without a trend (the
//!   per-day counters skipped).
//!
//! Not measured in this mode: the network and TLS hop of the RPC. Fresh (scatter-gather)
//! queries are the other mode, `--fresh-region 5306`: Zhaotong's 162 offices as a real
//! federation, timed beside the same query from the index ([`fresh`]); one 2-core machine does
//! not hold both at once.
//!
//!     cargo run -p liandong-benches --bin query -- --cases 1000000 --json-out q.json
//!     cargo run -p liandong-benches --bin query -- --fresh-region 5306 --json-out fresh.json

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context};
use clap::Parser;
use hdrhistogram::Histogram;
use liandong_benches::report::{RunReport, Series, System, Workload};
use liandong_domain::message::{Body, Envelope, Facts, Summary, SummaryV2};
use liandong_domain::{CaseId, OfficeCode};
use liandong_node::federation::query::{self, Filter, Sort};
use liandong_node::machine::StateMachineStore;
use liandong_node::raft::types::{Operation, Request, Response};
use liandong_node::store::HostDb;
use openraft::storage::RaftStateMachine;
use serde_json::json;

#[derive(Parser, Debug)]
struct Args {
    /// Summaries loaded into the provincial index.
    #[arg(long, default_value_t = 1_000_000)]
    cases: u64,
    /// Summaries per log entry while loading.
    #[arg(long, default_value_t = 2_000)]
    batch: usize,
    /// Index queries timed (each reads two pages).
    #[arg(long, default_value_t = 2_000)]
    queries: u64,
    /// `stats` reads timed.
    #[arg(long, default_value_t = 200)]
    stats: u64,
    /// Cases per page.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// Another mode: fresh and index queries on this region (5306: Zhaotong) brought up whole
    /// as a real federation on this machine, instead of the provincial index in process.
    #[arg(long, value_name = "REGION")]
    fresh_region: Option<String>,
    /// Fresh mode: each query timed this many times (fresh and from the index).
    #[arg(long, default_value_t = 300)]
    fresh_queries: u64,
    /// Fresh mode: cases filed at every township chosen.
    #[arg(long, default_value_t = 2)]
    fresh_cases_per_office: u64,
    /// Fresh mode: cases are filed at every Nth township.
    #[arg(long, default_value_t = 5)]
    fresh_townships_every: usize,
    /// Fresh mode: seconds the federation settles (its offices quiesce) before timing.
    #[arg(long, default_value_t = 30)]
    fresh_settle_seconds: u64,
    /// Fresh mode: the federation's first port. Below Linux's ephemeral range (32768-60999 by
    /// default): in it, a host started after the others' outgoing connections took its port
    /// from them cannot listen, and its offices never elect a leader.
    #[arg(long, default_value_t = 11_000)]
    base_port: u16,
    /// Fresh mode: how long `up` may wait for leaders, and the index for the cases filed.
    #[arg(long, default_value_t = 600)]
    up_timeout_seconds: u64,
}

mod fresh;

/// 2026-01-05 09:00 Beijing time.
const START_MS: i64 = 1_767_574_800_000;
const DAY_MS: i64 = 86_400_000;
use liandong_ops::sample::{CATEGORIES, CHANNELS};

/// mimalloc: the state machine's apply path, here in process as in a host, allocates small values at a high rate (keys, encoded values,
/// summaries); glibc's malloc spent about a tenth of the CPU on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
const STATUSES: [&str; 6] = [
    "registered",
    "accepted",
    "replied",
    "evaluated",
    "final",
    "declined",
];

/// Every office of `root`'s subtree, root first.
fn subtree(topology: &liandong_ops::topology::Topology, root: &str) -> Vec<String> {
    let mut all = vec![root.to_string()];
    let mut next = 0;
    while next < all.len() {
        let children: Vec<String> = topology
            .children(&all[next])
            .map(|d| d.code.clone())
            .collect();
        all.extend(children);
        next += 1;
    }
    all
}

/// Sample summary `n`, held by `owner` (its `seq`-th case).
fn summary(n: u64, owner: &OfficeCode, seq: u32) -> SummaryV2 {
    let registered_at = START_MS - (n as i64 % 365) * DAY_MS - (n as i64 % 86_400) * 1_000;
    let status = STATUSES[(n % STATUSES.len() as u64) as usize];
    let open = matches!(status, "registered" | "accepted");
    let overdue = n.is_multiple_of(10);
    let mixed = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (n >> 3);
    SummaryV2 {
        summary: Summary {
            case_id: CaseId::new(owner.clone(), 2026, seq),
            owner: owner.clone(),
            status: status.to_string(),
            kind: "original".to_string(),
            category: CATEGORIES[n as usize % CATEGORIES.len()].to_string(),
            // One petitioner in three petitions twice: repeat groups.
            petitioner_key: format!("{:016x}", mixed / 2).repeat(4),
            location: None,
            overdue,
            registered_at,
            changed_at: registered_at + DAY_MS,
            version: 2,
            grade: None,
            satisfaction: None,
        },
        facts: Facts {
            channel: Some(CHANNELS[n as usize % CHANNELS.len()].to_string()),
            due_at: open.then_some(registered_at + 15 * DAY_MS),
            accepted_at: (status != "registered").then_some(registered_at + DAY_MS),
            replied_at: None,
            accepted_in_time: (status != "registered").then_some(!overdue),
            replied_on_time: None,
            warned: if open && overdue { 100 } else { 0 },
            overdue_at: overdue.then_some(registered_at + 15 * DAY_MS),
            opinion: None,
        },
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// The filters timed, in turn.
fn filters(offices: &[OfficeCode], n: usize) -> (String, Filter, Sort) {
    let now = START_MS;
    match n % 7 {
        0 => ("none".into(), Filter::default(), Sort::CaseId),
        1 => (
            "open".into(),
            Filter {
                status: Some("open".into()),
                ..Filter::default()
            },
            Sort::CaseId,
        ),
        2 => (
            "overdue".into(),
            Filter {
                overdue_only: true,
                ..Filter::default()
            },
            Sort::CaseId,
        ),
        3 => (
            "office".into(),
            Filter {
                office: Some(offices[n % offices.len()].clone()),
                ..Filter::default()
            },
            Sort::Registered,
        ),
        4 => (
            "status accepted".into(),
            Filter {
                status: Some("accepted".into()),
                ..Filter::default()
            },
            Sort::Changed,
        ),
        5 => (
            "due within 30 days, by due".into(),
            Filter {
                due_from_ms: Some(now - 300 * DAY_MS),
                due_to_ms: Some(now + 30 * DAY_MS),
                ..Filter::default()
            },
            Sort::Due,
        ),
        _ => (
            "registered in a month, by registered".into(),
            Filter {
                registered_from_ms: Some(now - 60 * DAY_MS),
                registered_to_ms: Some(now - 30 * DAY_MS),
                ..Filter::default()
            },
            Sort::Registered,
        ),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(region) = &args.fresh_region {
        return fresh::run(&args, region).await;
    }
    let topology = liandong_ops::topology::load();
    let province = "53";
    let all = subtree(&topology, province);
    let cities: Vec<String> = topology
        .children(province)
        .map(|d| d.code.clone())
        .collect();
    // The offices below each city (the city included): the holders of its summaries.
    let mut below: Vec<(OfficeCode, Vec<OfficeCode>)> = Vec::new();
    for city in &cities {
        let codes = subtree(&topology, city)
            .into_iter()
            .map(|code| code.parse::<OfficeCode>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow!("{e}"))?;
        below.push((city.parse().map_err(|e| anyhow!("{e}"))?, codes));
    }
    let temp = tempfile::Builder::new()
        .prefix("liandong-query-bench-")
        .tempdir()?;
    let db = HostDb::open(&temp.path().join("db")).context("RocksDB opens")?;
    let mut store = StateMachineStore::new(
        db,
        province.parse().map_err(|e| anyhow!("{e}"))?,
        None,
        vec![7; 32],
        Arc::new(liandong_domain::Calendar::china()),
    )
    .map_err(|e| anyhow!("{e}"))?;

    // Loading: batches of summaries, one log entry per city and batch.
    let began = Instant::now();
    let mut seqs: std::collections::HashMap<OfficeCode, u32> = Default::default();
    let mut link_seq: Vec<u64> = vec![0; below.len()];
    let mut index = 0u64;
    let mut loaded = 0u64;
    let mut refused = 0u64;
    let mut n = 0u64;
    while loaded < args.cases {
        let mut entries = Vec::new();
        for (city_index, (city, holders)) in below.iter().enumerate() {
            let mut envelopes = Vec::new();
            for _ in 0..args.batch / below.len() + 1 {
                if loaded >= args.cases {
                    break;
                }
                let owner = &holders[(n as usize / below.len()) % holders.len()];
                let seq = seqs.entry(owner.clone()).or_default();
                *seq += 1;
                link_seq[city_index] += 1;
                envelopes.push(Envelope {
                    from: city.clone(),
                    to: province.parse().map_err(|e| anyhow!("{e}"))?,
                    seq: link_seq[city_index],
                    sent_at: START_MS,
                    body: Body::IndexUpdateV2 {
                        summary: summary(n, owner, *seq),
                    },
                });
                n += 1;
                loaded += 1;
            }
            if envelopes.is_empty() {
                continue;
            }
            index += 1;
            entries.push(openraft::Entry {
                log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
                payload: openraft::EntryPayload::Normal(Request {
                    at: START_MS + index as i64,
                    op: Operation::Receive {
                        from: city.clone(),
                        envelopes,
                    },
                }),
            });
        }
        for response in store.apply(entries).await.map_err(|e| anyhow!("{e}"))? {
            if let Response::Delivered { refused: r, .. } = response {
                refused += r.len() as u64;
                if let Some(first) = r.first() {
                    return Err(anyhow!("a summary was refused: {first:?}"));
                }
            }
        }
        if loaded % 100_000 < (args.batch as u64 + below.len() as u64) {
            println!(
                "loaded {loaded} summaries ({:.0} s)",
                began.elapsed().as_secs_f64()
            );
        }
    }
    let load_seconds = began.elapsed().as_secs_f64();
    println!("loaded {loaded} summaries in {load_seconds:.1} s, {refused} refused");

    let offices: Vec<OfficeCode> = all.iter().filter_map(|code| code.parse().ok()).collect();
    // Index queries: a first page and the page after its cursor.
    let mut first_pages = histogram();
    let mut next_pages = histogram();
    let mut by_filter: std::collections::BTreeMap<String, Histogram<u64>> = Default::default();
    let mut read_cases = 0u64;
    for q in 0..args.queries as usize {
        let (name, filter, sort) = filters(&offices, q);
        let began = Instant::now();
        let (page, _) = query::index_page(&store, &filter, None, args.limit, sort)
            .map_err(|e| anyhow!("{e}"))?;
        let took = began.elapsed().as_micros() as u64;
        first_pages.saturating_record(took.max(1));
        by_filter
            .entry(name)
            .or_insert_with(histogram)
            .saturating_record(took.max(1));
        read_cases += page.cases.len() as u64;
        if let Some(cursor) = &page.next_cursor {
            let cursor = sort.parse_cursor(cursor).map_err(|e| anyhow!("{e}"))?;
            let began = Instant::now();
            let (next, _) = query::index_page(&store, &filter, Some(&cursor), args.limit, sort)
                .map_err(|e| anyhow!("{e}"))?;
            next_pages.saturating_record((began.elapsed().as_micros() as u64).max(1));
            read_cases += next.cases.len() as u64;
        }
    }
    let mut stats = histogram();
    let mut total = 0;
    for _ in 0..args.stats {
        let began = Instant::now();
        let rows = liandong_node::machine::stats::office_rows_without_days(&store)
            .map_err(|e| anyhow!("{e}"))?;
        stats.saturating_record((began.elapsed().as_micros() as u64).max(1));
        total = rows
            .values()
            .map(|row| row.get("total").copied().unwrap_or(0))
            .sum::<u64>();
    }
    if total != loaded {
        return Err(anyhow!("stats counts {total} cases, {loaded} were loaded"));
    }
    let build = if cfg!(debug_assertions) {
        "dev profile (optimised)"
    } else {
        "release build"
    };
    let mut report = RunReport::begin(System::Liandong, Workload::Query, 1);
    report.setup = format!(
        "liandong {} ({build}); mode: one replica's RocksDB in process, the provincial index \
         of Yunnan (53, {} offices) loaded through the state machine's apply path with {loaded} \
         summaries; pages of {}",
        env!("CARGO_PKG_VERSION"),
        all.len(),
        args.limit
    );
    let seconds = 0.0;
    report.series = vec![
        Series::new(QUERY_FIRST, &first_pages, 0, seconds),
        Series::new(QUERY_NEXT, &next_pages, 0, seconds),
        Series::new(STATS, &stats, 0, seconds),
    ];
    for (name, histogram) in &by_filter {
        report.series.push(Series::new(
            &format!("index query, {name}"),
            histogram,
            0,
            seconds,
        ));
    }
    report.extra = json!({
        "cases": loaded,
        "offices": all.len(),
        "load_seconds": load_seconds,
        "cases_read": read_cases,
        "fresh": "measured by the other mode: query --fresh-region 5306",
    });
    report.publish(args.json_out.as_deref())?;
    for series in &report.series {
        let l = &series.latency;
        println!(
            "{}: p50 {:.3} ms, p99 {:.3} ms, p999 {:.3} ms, max {:.3} ms",
            series.name, l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
        );
    }
    drop(store);
    Ok(())
}

use liandong_benches::report::{QUERY_FIRST, QUERY_NEXT, STATS};
