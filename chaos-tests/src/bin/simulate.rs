//! Runs the deterministic simulation: one seed (a replay), a range of seeds (a soak), or a
//! large region. Prints one JSON report per seed with `--json`, else one line per seed; exits
//! 1 if any seed broke an invariant, naming the command that replays it.
//!
//! ```text
//! cargo run -p chaos-tests --bin simulate -- --seed 42
//! cargo run -p chaos-tests --bin simulate -- --seeds 1000 --first-seed 5000
//! cargo run --release -p chaos-tests --bin simulate -- --seed 1 --region 53 --operations 20000
//! ```

use std::process::ExitCode;
use std::time::Instant;

use chaos_tests::sim::{run, SimConfig};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Deterministic simulation of Liandong offices and the federation protocol")]
struct Args {
    /// The seed to run (the first of `--seeds`).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many consecutive seeds to run from `--seed`.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// Root division: `5306` (Zhaotong, 162 offices), `53` (Yunnan, 1,607 offices), ...
    #[arg(long, default_value = "5306")]
    region: String,
    /// Keep the first N children of every office; omit for the whole region.
    #[arg(long)]
    max_children: Option<usize>,
    /// Officer operations in the chaos phase.
    #[arg(long, default_value_t = 300)]
    operations: u64,
    /// Simulated seconds of the chaos phase.
    #[arg(long, default_value_t = 40)]
    chaos_seconds: u64,
    /// No faults: a calm run.
    #[arg(long)]
    no_faults: bool,
    /// Print each seed's full JSON report.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    // `RUST_LOG=liandong_node=debug` shows the node's own logs (refused messages, finished
    // handoffs) on stderr; a replay then tells what happened to a case.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .without_time()
            .init();
    }
    let args = Args::parse();
    let mut failed = Vec::new();
    for seed in args.seed..args.seed.saturating_add(args.seeds) {
        let config = SimConfig {
            seed,
            region: args.region.clone(),
            max_children: args.max_children,
            operations: args.operations,
            chaos_seconds: args.chaos_seconds,
            faults: !args.no_faults,
        };
        let started = Instant::now();
        let report = match run(&config) {
            Ok(report) => report,
            Err(error) => {
                eprintln!("simulate: seed {seed}: could not start: {error:#}");
                return ExitCode::from(2);
            }
        };
        if args.json {
            println!("{}", report.json);
        } else {
            let counters = &report.json["counters"];
            println!(
                "seed {seed}: {} offices, {} events, {} ops acknowledged, {} messages, {} crashes, {} partitions, fingerprint {} — {} in {:.1} s",
                report.json["offices"],
                counters["events"],
                counters["ops_acknowledged"],
                counters["messages_sent"],
                counters["replica_crashes"],
                counters["partitions"],
                &report.fingerprint[..16],
                if report.ok { "ok" } else { "FAILED" },
                started.elapsed().as_secs_f64()
            );
        }
        if !report.ok {
            for invariant in report.json["invariants"].as_array().into_iter().flatten() {
                if invariant["ok"] != true {
                    eprintln!("  {}: {}", invariant["name"], invariant["detail"]);
                }
            }
            eprintln!("  replay: {}", config.replay_command());
            failed.push(seed);
        }
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("simulate: {} seed(s) failed: {failed:?}", failed.len());
        ExitCode::FAILURE
    }
}
