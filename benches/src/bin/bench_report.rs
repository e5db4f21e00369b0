//! bench-report: compares the runs of one benchmark set (the JSON files the benchmarks wrote
//! with `--json-out` into one folder): prints the table, Liandong beside etcd and PostgreSQL
//! with the ratios and the speed targets, and writes it with the latency plots as one HTML page.
//!
//!     bench-report --results target/bench/20261120-1510 [--html report.html]

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Parser;
use liandong_benches::report::{comparison, html, markdown, read_reports};

#[derive(Parser, Debug)]
struct Args {
    /// The folder of run reports.
    #[arg(long)]
    results: PathBuf,
    /// Where to write the HTML page (default: RESULTS/report.html).
    #[arg(long)]
    html: Option<PathBuf>,
    /// The page's heading.
    #[arg(long, default_value = "Liandong beside etcd and PostgreSQL")]
    heading: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let reports = read_reports(&args.results)?;
    if reports.is_empty() {
        return Err(anyhow!(
            "no run reports (*.json) in {}",
            args.results.display()
        ));
    }
    let rows = comparison(&reports);
    print!("{}", markdown(&reports, &rows));
    let path = args
        .html
        .unwrap_or_else(|| args.results.join("report.html"));
    std::fs::write(&path, html(&reports, &rows, &args.heading))?;
    println!("\nHTML report: {}", path.display());
    Ok(())
}
