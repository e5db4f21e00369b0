//! idle: what a federation costs while nothing happens, and how fast a host carrying many
//! replicas starts.
//!
//! Builds the region's federation (`federation init`), optionally packs every office onto
//! `--packed-hosts` hosts (each then carries a replica of every office: a county server holding
//! a whole city's townships), starts it, waits until every office's leader commits, lets it
//! settle, then measures every host's CPU time and resident memory over `--seconds` from /proc.
//! Then SIGKILLs one host and starts it again, and reports how long it took to start its
//! replicas, to serve, and until every office was healthy again.
//!
//!     cargo run -p liandong-benches --bin idle -- --region 5306 --seconds 60
//!     cargo run -p liandong-benches --bin idle -- --region 5306 --packed-hosts 3
//!
//! `LIANDONG_QUIESCE=off` in the environment measures the same federation without quiescence.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Parser;
use liandong_benches::liandong::liandong;
use liandong_node::manifest::{Manifest, Member};
use serde_json::{json, Value};

#[derive(Parser, Debug)]
struct Args {
    /// The region to build (`federation init --region`).
    #[arg(long, default_value = "5306")]
    region: String,
    /// Keep the first N children of every office (`federation init --max-children`).
    #[arg(long)]
    max_children: Option<usize>,
    /// Put every office's replicas on this many hosts (3 for three replicas) instead of
    /// `federation init`'s placement; 0 keeps it.
    #[arg(long, default_value_t = 0)]
    packed_hosts: usize,
    /// How long the federation settles (and its offices quiesce) before measuring.
    #[arg(long, default_value_t = 20)]
    settle_seconds: u64,
    /// How long the idle cost is measured.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// The federation's first port: below Linux's ephemeral range (32768-60999 by default),
    /// where other processes' outgoing connections could hold a host's port.
    #[arg(long, default_value_t = 14_000)]
    base_port: u16,
    #[arg(long)]
    json_out: Option<PathBuf>,
}

/// Every office on the first `hosts` hosts of the manifest, replica i on host i; the other
/// hosts dropped. Each host's certificate is issued again for the offices it now carries.
fn pack(dir: &Path, hosts: usize) -> anyhow::Result<()> {
    let path = dir.join("manifest.json");
    let mut manifest = Manifest::load(&path)?;
    if hosts != usize::from(manifest.replicas) {
        bail!(
            "--packed-hosts must equal the replicas per office ({})",
            manifest.replicas
        );
    }
    manifest.hosts.truncate(hosts);
    let codes: Vec<String> = manifest.offices.iter().map(|o| o.code.clone()).collect();
    for host in &mut manifest.hosts {
        host.offices = codes.clone();
    }
    let names: Vec<String> = manifest.hosts.iter().map(|h| h.name.clone()).collect();
    for office in &mut manifest.offices {
        office.members = names
            .iter()
            .enumerate()
            .map(|(i, host)| Member {
                id: i as u64 + 1,
                host: host.clone(),
            })
            .collect();
    }
    manifest.validate()?;
    manifest.save(&path)?;
    let pki_dir = liandong_node::host::pki_dir(&path);
    let pki = liandong_node::tls::Pki::load(&pki_dir)?;
    for host in &manifest.hosts {
        pki.issue_host(
            &host.name,
            &host.offices,
            liandong_ops::client::CERT_VALIDITY_DAYS,
        )?
        .write(&pki_dir, &host.name)?;
    }
    Ok(())
}

/// (pid, host name) of every running host.
fn hosts(dir: &Path) -> anyhow::Result<Vec<(i32, String)>> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir(dir.join("run"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "pid") {
            let pid: i32 = std::fs::read_to_string(&path)?.trim().parse()?;
            let name = path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            if Path::new(&format!("/proc/{pid}")).exists() {
                pids.push((pid, name));
            }
        }
    }
    Ok(pids)
}

/// A process's CPU time so far (user and system), in clock ticks.
fn cpu_ticks(pid: i32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .ok_or_else(|| anyhow!("bad stat"))?
        .1
        .split_whitespace()
        .collect();
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

fn rss_kib(pid: i32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow!("no VmRSS"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

/// Every host's share of one core and resident memory over `seconds`.
async fn idle_cost(dir: &Path, seconds: u64) -> anyhow::Result<Value> {
    let pids = hosts(dir)?;
    let ticks_per_second = 100.0; // Linux's USER_HZ.
    let before: Vec<u64> = pids
        .iter()
        .map(|(pid, _)| cpu_ticks(*pid))
        .collect::<Result<_, _>>()?;
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let after: Vec<u64> = pids
        .iter()
        .map(|(pid, _)| cpu_ticks(*pid))
        .collect::<Result<_, _>>()?;
    let mut per_host = Vec::new();
    let (mut total_ticks, mut total_rss) = (0, 0);
    for (((pid, name), before), after) in pids.iter().zip(before).zip(after) {
        let rss = rss_kib(*pid)?;
        total_ticks += after - before;
        total_rss += rss;
        per_host.push(json!({
            "host": name,
            "cpu_percent_of_one_core": (after - before) as f64 / ticks_per_second / seconds as f64 * 100.0,
            "rss_mib": rss as f64 / 1024.0,
        }));
    }
    Ok(json!({
        "hosts": pids.len(),
        "seconds": seconds,
        "cpu_percent_of_one_core": total_ticks as f64 / ticks_per_second / seconds as f64 * 100.0,
        "rss_mib": total_rss as f64 / 1024.0,
        "per_host": per_host,
    }))
}

/// Waits until `status` says every office's leader commits; returns how long it took.
async fn healthy(dir: &Path, limit: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let status = liandong(dir, &["status"]).await?;
        if status["verdict"]["ok"] == true {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            bail!("not healthy after {limit:?}: {}", status["verdict"]["text"]);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `took_ms` of the last "replicas started" line in `host`'s log.
fn replicas_started_ms(dir: &Path, host: &str) -> Option<u64> {
    let log = std::fs::read_to_string(dir.join("run").join(format!("{host}.log"))).ok()?;
    let line = log.lines().rev().find(|l| l.contains("replicas started"))?;
    let line = liandong_ops::view::plain(line);
    let took = line.split("took_ms=").nth(1)?;
    took.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// SIGKILLs the first host and starts it again: how long until it serves, and until every
/// office is healthy.
async fn restart(dir: &Path) -> anyhow::Result<Value> {
    let manifest = Manifest::load(&dir.join("manifest.json"))?;
    let host = manifest.hosts.first().ok_or_else(|| anyhow!("no host"))?;
    let office = host
        .offices
        .first()
        .ok_or_else(|| anyhow!("no office"))?
        .clone();
    let replica = manifest
        .office(&office)
        .and_then(|o| o.members.iter().find(|m| m.host == host.name))
        .map(|m| m.id.to_string())
        .ok_or_else(|| anyhow!("no replica"))?;
    liandong(
        dir,
        &["drill", "kill", "--office", &office, "--replica", &replica],
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let start = Instant::now();
    liandong(
        dir,
        &[
            "drill",
            "restart",
            "--office",
            &office,
            "--replica",
            &replica,
        ],
    )
    .await?;
    let serving = loop {
        if tokio::net::TcpStream::connect(&host.api_addr).await.is_ok() {
            break start.elapsed();
        }
        if start.elapsed() > Duration::from_secs(120) {
            bail!("host {} did not serve within 120 s", host.name);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let healthy_after = healthy(dir, Duration::from_secs(120)).await? + serving;
    Ok(json!({
        "host": host.name,
        "replicas": host.offices.len(),
        "replicas_started_ms": replicas_started_ms(dir, &host.name),
        "serving_ms": serving.as_millis() as u64,
        "every_office_healthy_ms": healthy_after.as_millis() as u64,
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let temp = tempfile::Builder::new()
        .prefix("liandong-idle-")
        .tempdir()?;
    let dir = temp.path().join("federation");
    let port = args.base_port.to_string();
    let mut init = vec![
        "federation",
        "init",
        "--region",
        &args.region,
        "--base-port",
        &port,
    ];
    let max = args.max_children.map(|n| n.to_string());
    if let Some(max) = &max {
        init.extend(["--max-children", max]);
    }
    liandong(&dir, &init).await?;
    if args.packed_hosts > 0 {
        pack(&dir, args.packed_hosts).context("packing the offices")?;
    }
    let manifest = Manifest::load(&dir.join("manifest.json"))?;
    let started = Instant::now();
    let outcome = async {
        liandong(&dir, &["up", "--timeout-seconds", "300"]).await?;
        let up = started.elapsed();
        tokio::time::sleep(Duration::from_secs(args.settle_seconds)).await;
        let status = liandong(&dir, &["status"]).await?;
        let cost = idle_cost(&dir, args.seconds).await?;
        let restarted = restart(&dir).await?;
        anyhow::Ok(json!({
            "region": args.region,
            "offices": manifest.offices.len(),
            "hosts": manifest.hosts.len(),
            "replicas_per_host_max": manifest.hosts.iter().map(|h| h.offices.len()).max(),
            "quiesce": liandong_node::quiesce::enabled(),
            "up_until_healthy_ms": up.as_millis() as u64,
            "verdict_before_measuring": status["verdict"]["text"],
            "idle": cost,
            "restart": restarted,
        }))
    }
    .await;
    let _ = liandong(&dir, &["down"]).await;
    let report = outcome?;
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    if let Some(path) = args.json_out {
        std::fs::write(path, text)?;
    }
    Ok(())
}
