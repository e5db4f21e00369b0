//! federation: how fast the protocol carries escalations between levels, and how fast a healed
//! partition drains.
//!
//! 1. Review latency: a township case replied and escalated; the time from the township's
//!    `review_requested` commit to the county's commit of the linked review case (both stamped by
//!    the hosts' clocks, on one machine), then the county's re-review escalation to the city.
//! 2. Heal: a township partitioned while N cases are filed there (N index messages queue on its
//!    link, N more follow to the city); after `drill heal`, the time until `liandong verify`
//!    passes (outboxes empty, indexes converged).
//!
//!     cargo run -p liandong-benches --bin federation -- --reviews 100 --queued 10000

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use clap::Parser;
use federation_proto::v1::cases_client::CasesClient;
use federation_proto::v1::FileRequest;
use liandong_benches::{latency_json, liandong, liandong_as, new_histogram, LocalFederation};
use liandong_domain::parse_rfc3339;
use liandong_ops::sample;
use serde_json::{json, Value};

#[derive(Parser, Debug)]
struct Args {
    /// Review escalations measured (each also escalated once more, to the city).
    #[arg(long, default_value_t = 100)]
    reviews: u64,
    /// Messages queued behind the partition.
    #[arg(long, default_value_t = 10_000)]
    queued: u64,
    /// Concurrent clients filing the queued cases.
    #[arg(long, default_value_t = 32)]
    clients: u64,
    #[arg(long, default_value_t = 28_100)]
    base_port: u16,
    #[arg(long)]
    json_out: Option<PathBuf>,
}

fn stamp(case: &Value, kind: &str) -> anyhow::Result<i64> {
    let entry = case["history"]
        .as_array()
        .and_then(|h| h.iter().rev().find(|e| e["kind"] == kind))
        .ok_or_else(|| anyhow!("no {kind} event in {}", case["case_id"]))?;
    parse_rfc3339(entry["at"].as_str().unwrap_or("")).map_err(|e| anyhow!("{e}"))
}

/// The review case at `office` linked to `original`, once it exists.
async fn linked(dir: &std::path::Path, office: &str, original: &str) -> anyhow::Result<Value> {
    let start = Instant::now();
    loop {
        let found = liandong_as(
            dir,
            office,
            &[
                "query", "--as", office, "--office", office, "--limit", "10000",
            ],
        )
        .await?;
        for summary in found["cases"].as_array().into_iter().flatten() {
            if summary["kind"] == "original" {
                continue;
            }
            let id = summary["case_id"].as_str().unwrap_or("");
            let case = liandong_as(dir, office, &["case", "show", id]).await?;
            if case["kind"]["of"] == original {
                return Ok(case);
            }
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err(anyhow!("no case linked to {original} at {office}"));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn handle(dir: &std::path::Path, office: &str, id: &str) -> anyhow::Result<()> {
    liandong_as(dir, office, &["case", "accept", id]).await?;
    liandong_as(
        dir,
        office,
        &[
            "case",
            "reply",
            id,
            "--opinion",
            "explain",
            "--text",
            "decided",
        ],
    )
    .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let federation = LocalFederation::start("5306", 1, 3, args.base_port).await?;
    let dir = federation.dir.clone();
    let (township, county) = ("530602001", "530602");

    let mut to_county = new_histogram();
    let mut to_city = new_histogram();
    for n in 0..args.reviews {
        let registration = sample::registration(n);
        let pid = registration.petitioner_id.clone();
        let filed = liandong_as(
            &dir,
            township,
            &[
                "case",
                "file",
                "--office",
                township,
                "--channel",
                "visit",
                "--petitioner-id",
                &pid,
                "--name",
                "bench",
                "--category",
                "land",
                "--summary",
                "review bench",
            ],
        )
        .await?;
        let id = filed["case_id"].as_str().context("case id")?.to_string();
        handle(&dir, township, &id).await?;
        let requested = liandong_as(&dir, township, &["case", "request-review", &id]).await?;
        let review = linked(&dir, county, &id).await?;
        let micros =
            (stamp(&review, "registered")? - stamp(&requested, "review_requested")?).max(0) * 1000;
        to_county.record(micros.max(1) as u64)?;
        let review_id = review["case_id"].as_str().context("review id")?.to_string();
        handle(&dir, county, &review_id).await?;
        let escalated = liandong_as(&dir, county, &["case", "request-review", &review_id]).await?;
        let re_review = linked(&dir, "5306", &review_id).await?;
        let micros = (stamp(&re_review, "registered")? - stamp(&escalated, "review_requested")?)
            .max(0)
            * 1000;
        to_city.record(micros.max(1) as u64)?;
    }
    println!("review township -> county: {}", latency_json(&to_county));
    println!("re-review county -> city:  {}", latency_json(&to_city));

    // Heal: queue messages behind a partition, then time the drain.
    liandong(&dir, &["drill", "partition", "--office", township]).await?;
    let manifest = liandong_node::manifest::Manifest::load(&dir.join("manifest.json"))?;
    let addrs: Vec<String> = manifest
        .offices
        .iter()
        .find(|o| o.code == township)
        .context("township")?
        .members
        .iter()
        .filter_map(|m| manifest.host(&m.host).map(|h| h.api_addr.clone()))
        .collect();
    let per_client = args.queued.div_ceil(args.clients);
    let mut tasks = Vec::new();
    for client in 0..args.clients {
        let addrs = addrs.clone();
        tasks.push(tokio::spawn(async move {
            let mut target = 0usize;
            let mut filed = 0;
            while filed < per_client {
                let n = 1_000_000 + client * per_client + filed;
                let addr = &addrs[target % addrs.len()];
                let Ok(channel) = liandong_ops::client::officer_channel(addr, township).await
                else {
                    target += 1;
                    continue;
                };
                let mut cases = CasesClient::new(channel);
                let request = FileRequest {
                    office: township.into(),
                    registration: Some(sample::registration(n)),
                    hops: 0,
                    request_id: format!("heal-{n}"),
                };
                match cases.file(request).await {
                    Ok(_) => filed += 1,
                    Err(_) => target += 1,
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let status = liandong(&dir, &["status"]).await?;
    let queued = status["offices"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|o| o["code"] == township)
        .map(|o| o["outbox_pending"].clone())
        .unwrap_or(Value::Null);
    let healed = Instant::now();
    liandong(&dir, &["drill", "heal"]).await?;
    // Drained: every office answers and every outbox is empty (cheap to poll).
    loop {
        let status = liandong(&dir, &["status"]).await?;
        let offices = status["offices"].as_array().cloned().unwrap_or_default();
        if offices
            .iter()
            .all(|o| o["leader"].is_u64() && o["outbox_pending"] == 0)
        {
            break;
        }
        if healed.elapsed() > Duration::from_secs(300) {
            return Err(anyhow!("outboxes not empty after 300 s: {status}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained_ms = healed.elapsed().as_millis();
    // Converged: verify's invariants, indexes included, all hold.
    loop {
        let report = liandong(&dir, &["verify"]).await?;
        if report["ok"] == true {
            break;
        }
        if healed.elapsed() > Duration::from_secs(300) {
            return Err(anyhow!("not converged after 300 s: {report}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let heal_ms = healed.elapsed().as_millis();
    println!("heal: {queued} messages queued at {township}; outboxes empty {drained_ms} ms after the heal; verify passed at {heal_ms} ms");
    let report = json!({
        "benchmark": "federation",
        "review_to_county": latency_json(&to_county),
        "re_review_to_city": latency_json(&to_city),
        "queued_messages": queued,
        "heal_drained_ms": drained_ms,
        "heal_convergence_ms": heal_ms,
    });
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    drop(federation);
    Ok(())
}
