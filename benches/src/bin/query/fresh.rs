//! `query --fresh-region <REGION>`: fresh (scatter-gather) queries beside index queries on a
//! region as a real federation.
//!
//! Mode (printed with the figures): **the region's whole tree as real processes on this
//! machine** (`federation init --region <REGION>` with every child, `up`: real `liandong-node`
//! hosts, three replicas per office, mTLS, RocksDB fsync), the federation benchmarks' own
//! bring-up ([`LocalFederation`]). Cases are filed at a spread of townships through the officer
//! gRPC API; once the region office's index counts them all, the same query (`query --as
//! <REGION>`, a page of `--limit`) is timed with hdrhistogram through the officer gRPC client
//! over one connection, as the CLI asks it: `--fresh` (asked down the tree within its
//! deadline) and from the index, in turn, side by side in one run.
//!
//!     cargo run -p liandong-benches --bin query -- --fresh-region 5306 --json-out /tmp/fresh.json

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use federation_proto::v1::federation_client::FederationClient;
use federation_proto::v1::{QueryRequest, StatsRequest};
use hdrhistogram::Histogram;
use liandong_benches::liandong::{LocalFederation, OfficeClient};
use liandong_benches::report::{
    RunReport, Series, System, Workload, FRESH_INDEX_QUERY, FRESH_QUERY,
};
use liandong_domain::{Level, OfficeCode};
use liandong_ops::client::OfficerChannel;
use serde_json::json;

use crate::{histogram, Args};

/// How many cases the region office's index counts (its `stats` totals).
async fn counted(channel: &OfficerChannel, region: &str) -> anyhow::Result<u64> {
    let reply = FederationClient::new(channel.clone())
        .stats(StatsRequest {
            as_office: region.to_string(),
            ..StatsRequest::default()
        })
        .await
        .map_err(|status| anyhow!("stats: {status}"))?
        .into_inner();
    Ok(reply
        .offices
        .iter()
        .map(|row| row.counts.get("total").copied().unwrap_or(0))
        .sum())
}

pub async fn run(args: &Args, region: &str) -> anyhow::Result<()> {
    // The offices come from the region's topology, before anything starts.
    let topology = liandong_ops::topology::load();
    let townships: Vec<String> = crate::subtree(&topology, region)
        .into_iter()
        .filter_map(|code| code.parse::<OfficeCode>().ok())
        .filter(|code| code.level() == Level::Township)
        .map(|code| code.to_string())
        .collect();
    let chosen: Vec<&String> = townships
        .iter()
        .step_by(args.fresh_townships_every.max(1))
        .collect();
    let mut signed: Vec<String> = vec![region.to_string()];
    signed.extend(chosen.iter().map(|code| code.to_string()));
    let began = Instant::now();
    let federation = LocalFederation::start_with(
        region,
        None,
        3,
        args.base_port,
        args.up_timeout_seconds,
        Some(&signed),
    )
    .await?;
    let manifest = federation.manifest()?;
    let up_seconds = began.elapsed().as_secs_f64();
    println!(
        "{} offices up on {} hosts in {up_seconds:.0} s",
        manifest.offices.len(),
        manifest.hosts.len()
    );
    let mut filed = 0u64;
    for (n, township) in chosen.iter().enumerate() {
        let mut client =
            OfficeClient::new(township, federation.office_channels(township).await?, 0);
        for k in 0..args.fresh_cases_per_office {
            client.file(((n as u64) << 16) | k).await?;
            filed += 1;
        }
    }
    println!(
        "{filed} cases filed at {} of {} townships",
        chosen.len(),
        townships.len()
    );

    let channel = federation
        .office_channels(region)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no host carries {region}"))?;
    // The index feeds settle: the region office counts every case filed.
    let settling = Instant::now();
    loop {
        let seen = counted(&channel, region).await?;
        if seen >= filed {
            break;
        }
        if settling.elapsed() > Duration::from_secs(args.up_timeout_seconds) {
            bail!("the index of {region} counts {seen} of {filed} cases");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let settle_seconds = settling.elapsed().as_secs_f64();
    println!("the index counts every case after {settle_seconds:.1} s");
    // The hosts started moments ago: let elections, feeds and quiescence settle first.
    tokio::time::sleep(Duration::from_secs(args.fresh_settle_seconds)).await;

    let request = |fresh: bool| QueryRequest {
        as_office: region.to_string(),
        limit: args.limit as u32,
        fresh,
        ..QueryRequest::default()
    };
    let mut client = FederationClient::new(channel);
    let (mut fresh, mut index): (Histogram<u64>, Histogram<u64>) = (histogram(), histogram());
    let (mut partial, mut failed) = (0u64, 0u64);
    let (mut fresh_cases, mut index_cases) = (0usize, 0usize);
    // Which offices the partial answers listed, and how often: the evidence of what failed.
    let mut unreachable: std::collections::BTreeMap<String, u64> = Default::default();
    for _ in 0..args.fresh_queries {
        for (is_fresh, timed) in [(true, &mut fresh), (false, &mut index)] {
            let began = Instant::now();
            match client.query(request(is_fresh)).await {
                Ok(reply) => {
                    timed.saturating_record((began.elapsed().as_micros() as u64).max(1));
                    let reply = reply.into_inner();
                    if is_fresh {
                        partial += u64::from(reply.partial);
                        for office in &reply.unreachable {
                            *unreachable.entry(office.clone()).or_default() += 1;
                        }
                        fresh_cases = reply.cases.len();
                    } else {
                        index_cases = reply.cases.len();
                    }
                }
                Err(status) => {
                    failed += 1;
                    println!("query (fresh: {is_fresh}) failed: {status}");
                }
            }
        }
    }
    let build = if cfg!(debug_assertions) {
        "dev profile (optimised)"
    } else {
        "release build"
    };
    let mut report = RunReport::begin(System::Liandong, Workload::Query, 1);
    report.setup = format!(
        "liandong {} ({build}); mode: {region}'s whole tree as a real federation on this \
         machine: {} offices on {} host processes, 3 replicas each, mTLS, RocksDB fsync; \
         `query --as {region}` (pages of {}) through the officer gRPC client over one \
         connection, fresh and from the index in turn; {filed} cases filed at {} townships",
        env!("CARGO_PKG_VERSION"),
        manifest.offices.len(),
        manifest.hosts.len(),
        args.limit,
        chosen.len()
    );
    report.series = vec![
        Series::new(FRESH_QUERY, &fresh, 0, 0.0),
        Series::new(FRESH_INDEX_QUERY, &index, 0, 0.0),
    ];
    report.extra = json!({
        "mode": "fresh-region",
        "region": region,
        "offices": manifest.offices.len(),
        "hosts": manifest.hosts.len(),
        "cases": filed,
        "townships_with_cases": chosen.len(),
        "queries_each": args.fresh_queries,
        "fresh_partial_answers": partial,
        "failed_calls": failed,
        "unreachable_offices": unreachable,
        "cases_on_last_page": {"fresh": fresh_cases, "index": index_cases},
        "up_seconds": up_seconds,
        "index_settled_seconds": settle_seconds,
        "settled_seconds_before_timing": args.fresh_settle_seconds,
    });
    println!("mode: {}", report.setup);
    report.publish(args.json_out.as_deref())?;
    for series in &report.series {
        let l = &series.latency;
        println!(
            "{}: p50 {:.3} ms, p99 {:.3} ms, p999 {:.3} ms, max {:.3} ms",
            series.name, l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
        );
    }
    println!(
        "fresh answers partial: {partial} of {}; failed calls: {failed}",
        args.fresh_queries
    );
    if !unreachable.is_empty() {
        println!("offices listed unreachable (times): {unreachable:?}");
    }
    // The hosts' logs, to read why an office did not answer (`LIANDONG_BENCH_LOGS=<dir>`).
    if let Some(logs) = std::env::var_os("LIANDONG_BENCH_LOGS") {
        let logs = std::path::PathBuf::from(logs);
        std::fs::create_dir_all(&logs)?;
        for entry in std::fs::read_dir(federation.dir.join("run"))? {
            let path = entry?.path();
            if path.extension().is_some_and(|ext| ext == "log") {
                if let Some(name) = path.file_name() {
                    std::fs::copy(&path, logs.join(name))?;
                }
            }
        }
        println!("host logs copied to {}", logs.display());
    }
    drop(federation);
    Ok(())
}
