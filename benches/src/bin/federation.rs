//! federation: how fast the protocol carries cases between offices.
//!
//! `--workload handoff`: N clients each file a case at a township and transfer it to its
//! county, for a set time; from the offices' own history stamps, the time from the transfer to
//! the county's `received` commit, and to the township's commit of the county's
//! acknowledgement (`handoff_completed`).
//!
//! `--workload escalation` (default):
//! 1. Review latency: a township case replied and escalated; the time from the township's
//!    `review_requested` commit to the county's commit of the linked review case (both stamped by
//!    the hosts' clocks, on one machine), then the county's re-review escalation to the city.
//! 2. Heal: a township partitioned while N cases are filed there (N index messages queue on its
//!    link, N more follow to the city); after `drill heal`, the time until `liandong verify`
//!    passes (outboxes empty, indexes converged).
//!
//! ```text
//! federation --workload handoff --clients 4 --seconds 20
//! federation --reviews 100 --queued 10000
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use clap::Parser;
use liandong_benches::liandong::{
    event_stamp, liandong, liandong_as, office_status, HandoffSession, LocalFederation,
    OfficeClient, HANDOFF_SERIES,
};
use liandong_benches::load::{drive, new_histogram, Recorder, FAILURE_PAUSE_MS};
use liandong_benches::process::until_interrupted;
use liandong_benches::report::{RunReport, Series, System, Workload};
use liandong_ops::sample;
use serde_json::{json, Value};

const TOWNSHIP: &str = "530602001";
const COUNTY: &str = "530602";
const CITY: &str = "5306";

#[derive(Parser, Debug)]
struct Args {
    /// `handoff` or `escalation`.
    #[arg(long, value_enum, default_value = "escalation")]
    workload: Workload,
    /// Escalation: review escalations measured (each also escalated once more, to the city).
    #[arg(long, default_value_t = 100)]
    reviews: u64,
    /// Escalation: messages queued behind the partition.
    #[arg(long, default_value_t = 10_000)]
    queued: u64,
    /// Concurrent clients: filing the queued cases (escalation), or handing off (handoff).
    #[arg(long, default_value_t = 32)]
    clients: u64,
    /// Handoff: how long to hand cases off.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    #[arg(long, default_value_t = 28_100)]
    base_port: u16,
    /// Also write the figures, histograms included, as JSON to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.clients == 0 {
        return Err(anyhow!("--clients must be at least 1"));
    }
    let report = until_interrupted(async {
        // A city, its first county and that county's first township, 3 replicas each.
        let federation = LocalFederation::start(CITY, 1, 3, args.base_port).await?;
        let mut report = RunReport {
            setup: federation.setup(3, "a city, a county and a township"),
            ..RunReport::begin(System::Liandong, args.workload, args.clients as usize)
        };
        match args.workload {
            Workload::Handoff => handoff(&federation, &args, &mut report).await?,
            Workload::Escalation => escalation(&federation, &args, &mut report).await?,
            other => {
                return Err(anyhow!(
                    "the federation benchmark has no {other:?} workload"
                ))
            }
        }
        Ok(report)
    })
    .await?;
    report.publish(args.json_out.as_deref())
}

async fn handoff(
    federation: &LocalFederation,
    args: &Args,
    report: &mut RunReport,
) -> anyhow::Result<()> {
    let township = federation.office_channels(TOWNSHIP).await?;
    let county = federation.office_channels(COUNTY).await?;
    let sessions = (0..args.clients)
        .map(|_| HandoffSession {
            from: OfficeClient::new(TOWNSHIP, township.clone(), 0),
            to: OfficeClient::new(COUNTY, county.clone(), 0),
        })
        .collect();
    let recorder = Recorder::new(&HANDOFF_SERIES);
    let seconds = drive(sessions, Duration::from_secs(args.seconds), &recorder).await?;
    report.take(&recorder, seconds)?;
    report.extra = json!({ "from": TOWNSHIP, "to": COUNTY });
    Ok(())
}

fn stamp(case: &Value, kind: &str) -> anyhow::Result<i64> {
    event_stamp(case, kind).ok_or_else(|| anyhow!("no {kind} event in {}", case["case_id"]))
}

/// The review case at `office` linked to `original`, once it exists.
async fn linked(dir: &Path, office: &str, original: &str) -> anyhow::Result<Value> {
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

async fn handle(dir: &Path, office: &str, id: &str) -> anyhow::Result<()> {
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

/// How long the queued cases may take to file, and the partition to drain and converge.
const ESCALATION_PHASE_TIMEOUT_MS: u64 = 300_000;

async fn escalation(
    federation: &LocalFederation,
    args: &Args,
    report: &mut RunReport,
) -> anyhow::Result<()> {
    let dir = federation.dir.as_path();
    let started = Instant::now();
    let mut to_county = new_histogram();
    let mut to_city = new_histogram();
    for n in 0..args.reviews {
        let registration = sample::registration(n);
        let pid = registration.petitioner_id.clone();
        let filed = liandong_as(
            dir,
            TOWNSHIP,
            &[
                "case",
                "file",
                "--office",
                TOWNSHIP,
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
        handle(dir, TOWNSHIP, &id).await?;
        let requested = liandong_as(dir, TOWNSHIP, &["case", "request-review", &id]).await?;
        let review = linked(dir, COUNTY, &id).await?;
        let micros =
            (stamp(&review, "registered")? - stamp(&requested, "review_requested")?).max(0) * 1000;
        to_county.record(micros.max(1) as u64)?;
        let review_id = review["case_id"].as_str().context("review id")?.to_string();
        handle(dir, COUNTY, &review_id).await?;
        let escalated = liandong_as(dir, COUNTY, &["case", "request-review", &review_id]).await?;
        let re_review = linked(dir, CITY, &review_id).await?;
        let micros = (stamp(&re_review, "registered")? - stamp(&escalated, "review_requested")?)
            .max(0)
            * 1000;
        to_city.record(micros.max(1) as u64)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    report.series = vec![
        Series::new("review township to county", &to_county, 0, seconds),
        Series::new("re-review county to city", &to_city, 0, seconds),
    ];
    let heal = heal(federation, args).await?;
    report.extra = heal;
    Ok(())
}

/// Queues messages behind a partition of the township, heals it and times the drain.
async fn heal(federation: &LocalFederation, args: &Args) -> anyhow::Result<Value> {
    let dir = federation.dir.as_path();
    let phase_timeout = Duration::from_millis(ESCALATION_PHASE_TIMEOUT_MS);
    liandong(dir, &["drill", "partition", "--office", TOWNSHIP]).await?;
    let channels = federation.office_channels(TOWNSHIP).await?;
    let per_client = args.queued.div_ceil(args.clients);
    let mut tasks = Vec::new();
    for client in 0..args.clients {
        let mut office = OfficeClient::new(TOWNSHIP, channels.clone(), client as usize);
        tasks.push(tokio::spawn(async move {
            let deadline = Instant::now() + phase_timeout;
            for filed in 0..per_client {
                let n = 1_000_000 + client * per_client + filed;
                // Filing needs only the township's own Raft group, which the partition keeps
                // whole: retry (on the next host) until it takes.
                while let Err(error) = office.file(n).await {
                    if Instant::now() > deadline {
                        return Err(error.context("filing the queued cases"));
                    }
                    tokio::time::sleep(Duration::from_millis(FAILURE_PAUSE_MS)).await;
                }
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let status = liandong(dir, &["status"]).await?;
    let queued = office_status(&status, TOWNSHIP)
        .map(|entry| entry["outbox_pending"].clone())
        .unwrap_or(Value::Null);
    let healed = Instant::now();
    liandong(dir, &["drill", "heal"]).await?;
    // Drained: every office answers and every outbox is empty (cheap to poll).
    loop {
        let status = liandong(dir, &["status"]).await?;
        let offices = status["offices"].as_array().cloned().unwrap_or_default();
        if offices
            .iter()
            .all(|o| o["leader"].is_u64() && o["outbox_pending"] == 0)
        {
            break;
        }
        if healed.elapsed() > phase_timeout {
            return Err(anyhow!(
                "outboxes not empty after {phase_timeout:?}: {status}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained_ms = healed.elapsed().as_millis();
    // Converged: verify's invariants, indexes included, all hold.
    loop {
        let report = liandong(dir, &["verify"]).await?;
        if report["ok"] == true {
            break;
        }
        if healed.elapsed() > phase_timeout {
            return Err(anyhow!("not converged after {phase_timeout:?}: {report}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(json!({
        "queued_messages": queued,
        "heal_drained_ms": drained_ms,
        "heal_convergence_ms": healed.elapsed().as_millis(),
    }))
}
