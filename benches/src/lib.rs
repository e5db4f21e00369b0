//! Benchmarks against real liandong processes on loopback. Each prints its figures from an
//! hdrhistogram and can write them as JSON. Speed is measured here, never asserted in tests.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use clap::Parser;
use hdrhistogram::Histogram;
use liandong_ops::cli::Cli;
use serde_json::{json, Value};

/// Runs one `liandong` command in-process, exactly as the command line would.
pub async fn liandong(dir: &Path, args: &[&str]) -> anyhow::Result<Value> {
    let mut argv = vec!["liandong", "--json", "--dir"];
    let dir_text = dir.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?;
    argv.push(dir_text);
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(&argv).with_context(|| format!("parsing {argv:?}"))?;
    Ok(liandong_ops::commands::run(cli).await?.json)
}

/// A fresh federation in a temporary folder, started; stopped again on drop.
pub struct LocalFederation {
    pub dir: PathBuf,
    _temp: tempfile::TempDir,
}

impl LocalFederation {
    pub async fn start(
        region: &str,
        max_children: usize,
        replicas: u8,
        base_port: u16,
    ) -> anyhow::Result<LocalFederation> {
        let temp = tempfile::Builder::new()
            .prefix("liandong-bench-")
            .tempdir()?;
        let dir = temp.path().join("federation");
        let max = max_children.to_string();
        let replicas = replicas.to_string();
        let port = base_port.to_string();
        let init = [
            "federation",
            "init",
            "--region",
            region,
            "--max-children",
            &max,
            "--replicas",
            &replicas,
            "--base-port",
            &port,
        ];
        liandong(&dir, &init).await?;
        liandong(&dir, &["up"]).await?;
        // The benchmark's officer at every office (every role but admin), made with each
        // office's initial admin password: its calls carry that office's token.
        let federation =
            liandong_ops::client::Federation::open(liandong_ops::layout::Layout::new(&dir))?;
        let roles = liandong_ops::session::WORKING_ROLES;
        let tokens = dir.join("tokens");
        liandong_ops::session::sign_in_everywhere(&federation, "bench", &roles, Some(&tokens))
            .await?;
        Ok(LocalFederation { dir, _temp: temp })
    }
}

/// Runs one `liandong` command in-process as the benchmark's officer of `office`.
pub async fn liandong_as(dir: &Path, office: &str, args: &[&str]) -> anyhow::Result<Value> {
    let token = dir.join("tokens").join(format!("{office}.token"));
    let token = token.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?;
    let mut all = vec!["--token-file", token];
    all.extend_from_slice(args);
    liandong(dir, &all).await
}

impl Drop for LocalFederation {
    fn drop(&mut self) {
        let dir = self.dir.clone();
        // `down` is synchronous process work; run it on a fresh runtime-free thread.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(liandong(&dir, &["down"])).ok()
        })
        .join();
    }
}

/// Latency figures of a histogram recorded in microseconds, as milliseconds.
pub fn latency_json(histogram: &Histogram<u64>) -> Value {
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    json!({
        "count": histogram.len(),
        "p50_ms": ms(0.50),
        "p90_ms": ms(0.90),
        "p99_ms": ms(0.99),
        "p999_ms": ms(0.999),
        "max_ms": histogram.max() as f64 / 1000.0,
    })
}

pub fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}
