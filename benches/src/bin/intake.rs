//! intake: N concurrent clients writing for a set time, each with one request in flight, to
//! Liandong (cases filed at one 3-replica office), etcd (the same case documents put) or
//! PostgreSQL (the same documents inserted); prints throughput and latency (hdrhistogram).
//!
//!     intake --system liandong --clients 64 --seconds 20 --documents-out docs.json
//!     intake --system etcd --clients 64 --seconds 20 --documents docs.json
//!     intake --system postgres --clients 64 --seconds 20 --documents docs.json
//!     intake --workload update --clients 1 --seconds 20
//!
//! With `--kill-leader-at S`, Liandong's leader is SIGKILLed S seconds in and the time to the
//! next acknowledged write is reported.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::Parser;
use liandong_benches::documents::{DocumentSample, Documents};
use liandong_benches::etcd::{EtcdCluster, EtcdSession};
use liandong_benches::liandong::{
    grow_case, liandong, FileSession, LocalFederation, OfficeClient, UpdateSession, UPDATE_SERIES,
};
use liandong_benches::load::{drive, Recorder, Session};
use liandong_benches::postgres::{PostgresPair, PostgresSession};
use liandong_benches::process::until_interrupted;
use liandong_benches::report::{RunReport, System, Workload};
use serde_json::json;

#[derive(Parser, Debug)]
struct Args {
    /// The system written to.
    #[arg(long, value_enum, default_value = "liandong")]
    system: System,
    /// `file`: new records; `update` (Liandong): one command on fresh cases and on cases with
    /// a long history, interleaved.
    #[arg(long, value_enum, default_value = "file")]
    workload: Workload,
    /// Concurrent clients, each with one request in flight.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// How long to write.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Replicas of Liandong's office.
    #[arg(long, default_value_t = 3)]
    replicas: u8,
    /// Liandong: SIGKILL the office's leader this many seconds into the run, and measure
    /// failover.
    #[arg(long)]
    kill_leader_at: Option<u64>,
    /// First port of the temporary servers (default: 27100 Liandong, 27300 etcd, 27400
    /// PostgreSQL).
    #[arg(long)]
    base_port: Option<u16>,
    /// Liandong: spread the clients over all replicas (followers forward to the leader)
    /// instead of sending every request to the leader's host.
    #[arg(long)]
    spread: bool,
    /// Liandong: save a sample of the case documents it returned, for the anchors.
    #[arg(long)]
    documents_out: Option<PathBuf>,
    /// etcd and PostgreSQL: the case documents to write (saved by `--documents-out`).
    #[arg(long)]
    documents: Option<PathBuf>,
    /// Update: history entries of the long cases before the run.
    #[arg(long, default_value_t = 1_000)]
    history_events: usize,
    /// Update: how many long-history cases the updates rotate over.
    #[arg(long, default_value_t = 8)]
    long_cases: usize,
    /// Also write the figures, histograms included, as JSON to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

impl Args {
    fn duration(&self) -> Duration {
        Duration::from_secs(self.seconds)
    }

    fn base_port(&self) -> u16 {
        self.base_port.unwrap_or(match self.system {
            System::Liandong => 27_100,
            System::Etcd => 27_300,
            System::Postgres => 27_400,
        })
    }

    fn documents(&self) -> anyhow::Result<Arc<Documents>> {
        let path = self.documents.as_ref().ok_or_else(|| {
            anyhow!("--documents FILE is needed: the case documents a Liandong run saved with --documents-out")
        })?;
        Ok(Arc::new(Documents::load(path)?))
    }

    fn report(&self, setup: String, payload_bytes: Option<u64>) -> RunReport {
        RunReport {
            setup,
            payload_bytes,
            ..RunReport::begin(self.system, self.workload, self.clients)
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.clients == 0 {
        return Err(anyhow!("--clients must be at least 1"));
    }
    let report = until_interrupted(run(&args)).await?;
    report.publish(args.json_out.as_deref())
}

async fn run(args: &Args) -> anyhow::Result<RunReport> {
    match (args.system, args.workload) {
        (System::Liandong, Workload::File) => liandong_file(args).await,
        (System::Liandong, Workload::Update) => liandong_update(args).await,
        (System::Etcd, Workload::File) => etcd_file(args).await,
        (System::Postgres, Workload::File) => postgres_file(args).await,
        (system, workload) => Err(anyhow!(
            "intake runs {workload:?} on Liandong only, not on {system:?} (the handoff and escalation workloads are the federation benchmark's)"
        )),
    }
}

/// Runs the sessions for the set time into a recorder of `series`, into `report`.
async fn measure<S: Session>(
    sessions: Vec<S>,
    series: &[&str],
    args: &Args,
    mut report: RunReport,
) -> anyhow::Result<RunReport> {
    let recorder = Recorder::new(series);
    let seconds = drive(sessions, args.duration(), &recorder).await?;
    report.take(&recorder, seconds)?;
    Ok(report)
}

/// A one-office federation (the region's root office alone) and that office's code.
async fn one_office(args: &Args) -> anyhow::Result<(LocalFederation, String)> {
    let federation = LocalFederation::start("5306", 0, args.replicas, args.base_port()).await?;
    let status = liandong(&federation.dir, &["status"]).await?;
    let code = status["offices"][0]["code"]
        .as_str()
        .ok_or_else(|| anyhow!("no office in {status}"))?
        .to_string();
    Ok((federation, code))
}

async fn liandong_file(args: &Args) -> anyhow::Result<RunReport> {
    let (federation, code) = one_office(args).await?;
    let channels = federation.office_channels(&code).await?;
    let documents = Arc::new(DocumentSample::default());
    let sessions = (0..args.clients)
        .map(|client| FileSession {
            office: OfficeClient::new(
                &code,
                channels.clone(),
                if args.spread { client } else { 0 },
            ),
            documents: documents.clone(),
        })
        .collect();
    let offices = format!(
        "one office, requests to {}",
        if args.spread {
            "all replicas"
        } else {
            "the leader"
        }
    );
    let mut report = args.report(federation.setup(args.replicas, &offices), None);
    let recorder = Recorder::new(&["file"]);
    // The kill runs in this task beside the clients (the command line's future is not Send).
    let kill = async {
        if let Some(at) = args.kill_leader_at {
            tokio::time::sleep(Duration::from_secs(at)).await;
            recorder.mark_fault();
            let kill = ["drill", "kill", "--office", &code, "--leader"];
            liandong(&federation.dir, &kill).await?;
        }
        anyhow::Ok(())
    };
    let (seconds, killed) = tokio::join!(drive(sessions, args.duration(), &recorder), kill);
    killed.context("killing the leader")?;
    let seconds = seconds?;
    report.payload_bytes = documents.mean_bytes();
    report.take(&recorder, seconds)?;
    if args.kill_leader_at.is_some() {
        let failover_ms = recorder
            .recovery()
            .map(|after| after.as_secs_f64() * 1000.0);
        report.extra = json!({ (RunReport::FAILOVER_MS): failover_ms });
    }
    if let Some(path) = &args.documents_out {
        documents.save(path)?;
    }
    Ok(report)
}

async fn liandong_update(args: &Args) -> anyhow::Result<RunReport> {
    if args.long_cases == 0 || args.history_events == 0 {
        return Err(anyhow!(
            "--long-cases and --history-events must be at least 1"
        ));
    }
    let (federation, code) = one_office(args).await?;
    let channels = federation.office_channels(&code).await?;
    let office = OfficeClient::new(&code, channels, 0);
    // The long cases grow concurrently, one task each.
    let growing: Vec<_> = (0..args.long_cases)
        .map(|index| {
            let (mut office, events) = (office.clone(), args.history_events);
            tokio::spawn(
                async move { grow_case(&mut office, (1 << 40) | index as u64, events).await },
            )
        })
        .collect();
    let mut long_cases = Vec::new();
    for task in growing {
        long_cases.push(task.await??);
    }
    println!(
        "{} cases grown to {} history events; updating",
        long_cases.len(),
        args.history_events
    );
    let sessions = (0..args.clients)
        .map(|_| UpdateSession {
            office: office.clone(),
            long_cases: long_cases.clone(),
        })
        .collect();
    let setup = federation.setup(args.replicas, "one office, requests to the leader");
    let mut report = measure(sessions, &UPDATE_SERIES, args, args.report(setup, None)).await?;
    let updates = report
        .series
        .first()
        .map(|series| series.acknowledged)
        .unwrap_or(0);
    report.extra = json!({
        "history_events": args.history_events,
        "long_cases": args.long_cases,
        "history_events_at_end_max": args.history_events as u64 + updates.div_ceil(args.long_cases as u64),
    });
    Ok(report)
}

async fn etcd_file(args: &Args) -> anyhow::Result<RunReport> {
    let documents = args.documents()?;
    let cluster = EtcdCluster::start(args.base_port()).await?;
    let leader = cluster.leader_url()?;
    let sessions = EtcdSession::connect(&leader, args.clients, &documents).await?;
    let report = args.report(cluster.setup(&leader), Some(documents.mean_bytes()));
    measure(sessions, &["put"], args, report).await
}

async fn postgres_file(args: &Args) -> anyhow::Result<RunReport> {
    let documents = args.documents()?;
    let pair = PostgresPair::start(args.base_port()).await?;
    let mut sessions = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        sessions.push(PostgresSession::connect(&pair, &documents).await?);
    }
    let report = args.report(pair.setup(), Some(documents.mean_bytes()));
    measure(sessions, &["insert"], args, report).await
}
