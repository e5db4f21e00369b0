//! intake: N concurrent officers filing cases against one 3-replica office for a set time.
//! Prints throughput and latency p50/p90/p99/p999 (hdrhistogram); optionally SIGKILLs the leader
//! mid-run and reports how long until the next write was acknowledged.
//!
//!     cargo run -p liandong-benches --bin intake -- --clients 64 --seconds 20

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use clap::Parser;
use federation_proto::v1::cases_client::CasesClient;
use federation_proto::v1::FileRequest;
use liandong_benches::{latency_json, liandong, new_histogram, LocalFederation};
use liandong_ops::client::OfficerChannel;
use liandong_ops::sample;
use serde_json::json;

#[derive(Parser, Debug)]
struct Args {
    /// Concurrent clients, each with one request in flight.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// How long to file cases.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Replicas of the office.
    #[arg(long, default_value_t = 3)]
    replicas: u8,
    /// SIGKILL the office's leader this many seconds into the run, and measure failover.
    #[arg(long)]
    kill_leader_at: Option<u64>,
    /// First port of the temporary federation.
    #[arg(long, default_value_t = 27_100)]
    base_port: u16,
    /// Send every request to the leader's host (default) or spread them over all replicas
    /// (followers forward to the leader).
    #[arg(long)]
    spread: bool,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

struct Shared {
    histogram: Mutex<hdrhistogram::Histogram<u64>>,
    acknowledged: AtomicU64,
    failed: AtomicU64,
    /// Microseconds from the start of the run to the leader's kill (0: not yet).
    killed_at_us: AtomicU64,
    /// Microseconds from the kill to the first acknowledgement of a request sent after it.
    failover_us: AtomicU64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let federation = LocalFederation::start("5306", 0, args.replicas, args.base_port).await?;
    let status = liandong(&federation.dir, &["status"]).await?;
    let office = &status["offices"][0];
    let code = office["code"]
        .as_str()
        .ok_or_else(|| anyhow!("no office"))?
        .to_string();
    let leader = office["leader"]
        .as_u64()
        .ok_or_else(|| anyhow!("no leader"))?;
    let manifest = liandong_node::manifest::Manifest::load(&federation.dir.join("manifest.json"))?;
    let mut addrs: Vec<String> = manifest
        .hosts
        .iter()
        .map(|host| host.api_addr.clone())
        .collect();
    if !args.spread {
        let leader_host = manifest.member_host(&code, leader).context("leader host")?;
        addrs.retain(|addr| *addr == leader_host.api_addr);
        addrs.extend(
            manifest
                .hosts
                .iter()
                .map(|h| h.api_addr.clone())
                .filter(|a| *a != leader_host.api_addr),
        );
    }
    let mut channels = Vec::new();
    for addr in &addrs {
        channels.push(
            liandong_ops::client::officer_channel(addr, &code)
                .await
                .map_err(|s| anyhow!("{addr}: {s}"))?,
        );
    }

    let shared = Arc::new(Shared {
        histogram: Mutex::new(new_histogram()),
        acknowledged: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        killed_at_us: AtomicU64::new(0),
        failover_us: AtomicU64::new(0),
    });
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for client in 0..args.clients {
        let channels = channels.clone();
        let shared = shared.clone();
        let code = code.clone();
        let spread = args.spread;
        tasks.push(tokio::spawn(async move {
            file_loop(client, channels, spread, &code, shared, start, deadline).await;
        }));
    }
    if let Some(at) = args.kill_leader_at {
        tokio::time::sleep(Duration::from_secs(at)).await;
        shared
            .killed_at_us
            .store(start.elapsed().as_micros() as u64, Ordering::SeqCst);
        liandong(
            &federation.dir,
            &["drill", "kill", "--office", &code, "--leader"],
        )
        .await?;
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let histogram = shared
        .histogram
        .lock()
        .map_err(|_| anyhow!("poisoned"))?
        .clone();
    let acknowledged = shared.acknowledged.load(Ordering::SeqCst);
    let failover_us = shared.failover_us.load(Ordering::SeqCst);
    let report = json!({
        "benchmark": "intake",
        "office": code,
        "replicas": args.replicas,
        "clients": args.clients,
        "seconds": elapsed,
        "target": if args.spread { "all replicas" } else { "leader" },
        "acknowledged": acknowledged,
        "failed": shared.failed.load(Ordering::SeqCst),
        "throughput_per_s": acknowledged as f64 / elapsed,
        "latency": latency_json(&histogram),
        "failover_ms": args.kill_leader_at.map(|_| failover_us as f64 / 1000.0),
    });
    println!(
        "intake: {} clients, {:.1} s: {} cases acknowledged ({:.0}/s), {} failed; latency ms p50 {} p90 {} p99 {} p999 {}{}",
        args.clients,
        elapsed,
        acknowledged,
        acknowledged as f64 / elapsed,
        report["failed"],
        report["latency"]["p50_ms"],
        report["latency"]["p90_ms"],
        report["latency"]["p99_ms"],
        report["latency"]["p999_ms"],
        match report["failover_ms"].as_f64() {
            Some(ms) => format!("; failover {ms:.0} ms"),
            None => String::new(),
        }
    );
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    drop(federation);
    Ok(())
}

async fn file_loop(
    client: usize,
    channels: Vec<OfficerChannel>,
    spread: bool,
    office: &str,
    shared: Arc<Shared>,
    start: Instant,
    deadline: Instant,
) {
    let mut n = (client as u64) << 32;
    let mut target = if spread { client % channels.len() } else { 0 };
    while Instant::now() < deadline {
        n += 1;
        let request = FileRequest {
            office: office.to_string(),
            registration: Some(sample::registration(n)),
            hops: 0,
            request_id: format!("bench-{n:x}"),
        };
        let sent_us = start.elapsed().as_micros() as u64;
        let began = Instant::now();
        let mut cases = CasesClient::new(channels[target].clone());
        let outcome = tokio::time::timeout(Duration::from_secs(10), cases.file(request)).await;
        match outcome {
            Ok(Ok(_)) => {
                let micros = began.elapsed().as_micros() as u64;
                if let Ok(mut histogram) = shared.histogram.lock() {
                    let _ = histogram.record(micros.max(1));
                }
                shared.acknowledged.fetch_add(1, Ordering::Relaxed);
                let killed = shared.killed_at_us.load(Ordering::SeqCst);
                if killed > 0 && sent_us >= killed {
                    let since_kill = start.elapsed().as_micros() as u64 - killed;
                    let _ = shared.failover_us.compare_exchange(
                        0,
                        since_kill,
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    );
                }
            }
            _ => {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                // The host may be gone: try the next replica (it forwards to the new leader).
                target = (target + 1) % channels.len();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}
