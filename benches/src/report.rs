//! What one benchmark run found ([`RunReport`], written as JSON by every benchmark), and the
//! comparison of a set of runs: a table with the ratios to the anchors measured in the same
//! set, printed as Markdown and written as one self-contained HTML page with the latency
//! distributions plotted as SVG percentile curves.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::load::{new_histogram, Recorder};
use crate::process::load_average_1m;

/// A latency above this counts as a stall (the speed target is none in a run).
pub const STALL_THRESHOLD_US: u64 = 1_000_000;

/// The system a run measured.
#[derive(
    Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum System {
    Liandong,
    Etcd,
    Postgres,
}

impl System {
    pub fn label(self) -> &'static str {
        match self {
            System::Liandong => "Liandong",
            System::Etcd => "etcd",
            System::Postgres => "PostgreSQL",
        }
    }
}

/// What a run did.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// New records: a case filed, or its document put (etcd) or inserted (PostgreSQL).
    File,
    /// One officer command on fresh cases and on cases with a long history.
    Update,
    /// Cases transferred between two offices.
    Handoff,
    /// Review escalations up the levels, then a partition's drain.
    Escalation,
    /// A supervisor's index queries and `stats` over a province's index.
    Query,
}

/// Latency quantiles in milliseconds.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// One latency distribution of a run, with its counts.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Series {
    pub name: String,
    pub acknowledged: u64,
    pub failed: u64,
    pub seconds: f64,
    pub throughput_per_s: f64,
    /// Acknowledged requests that took longer than [`STALL_THRESHOLD_US`].
    pub over_one_second: u64,
    pub latency: Latency,
    /// The histogram itself: (highest value equivalent to the bucket in µs, count) for every
    /// bucket recorded, so a report can draw or re-read any quantile.
    pub histogram_us: Vec<(u64, u64)>,
}

impl Series {
    pub fn new(name: &str, histogram: &Histogram<u64>, failed: u64, seconds: f64) -> Series {
        let ms = |micros: u64| micros as f64 / 1000.0;
        let histogram_us: Vec<(u64, u64)> = histogram
            .iter_recorded()
            .map(|bucket| (bucket.value_iterated_to(), bucket.count_at_value()))
            .collect();
        let over_one_second = histogram_us
            .iter()
            .filter(|(value, _)| *value > STALL_THRESHOLD_US)
            .map(|(_, count)| count)
            .sum();
        Series {
            name: name.to_string(),
            acknowledged: histogram.len(),
            failed,
            seconds,
            throughput_per_s: if seconds > 0.0 {
                histogram.len() as f64 / seconds
            } else {
                0.0
            },
            over_one_second,
            latency: Latency {
                p50_ms: ms(histogram.value_at_quantile(0.50)),
                p90_ms: ms(histogram.value_at_quantile(0.90)),
                p99_ms: ms(histogram.value_at_quantile(0.99)),
                p999_ms: ms(histogram.value_at_quantile(0.999)),
                max_ms: ms(histogram.max()),
            },
            histogram_us,
        }
    }

    /// The histogram rebuilt from [`Series::histogram_us`].
    pub fn histogram(&self) -> Histogram<u64> {
        let mut histogram = new_histogram();
        for &(value, count) in &self.histogram_us {
            histogram.saturating_record_n(value.max(1), count);
        }
        histogram
    }

    /// A one-line summary for the terminal.
    pub fn line(&self) -> String {
        format!(
            "{}: {} acknowledged in {:.1} s ({:.0}/s), {} failed, {} over 1 s; latency ms p50 {} p90 {} p99 {} p999 {} max {}",
            self.name,
            self.acknowledged,
            self.seconds,
            self.throughput_per_s,
            self.failed,
            self.over_one_second,
            self.latency.p50_ms,
            self.latency.p90_ms,
            self.latency.p99_ms,
            self.latency.p999_ms,
            self.latency.max_ms
        )
    }
}

/// Everything one benchmark run found: what every benchmark writes with `--json-out`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct RunReport {
    pub system: System,
    pub workload: Workload,
    pub clients: usize,
    /// The command line that produced this run.
    pub command: String,
    /// The system's version and set-up, as one line.
    pub setup: String,
    /// Mean size of the record written per request (the case document), when one is written.
    pub payload_bytes: Option<u64>,
    pub series: Vec<Series>,
    /// Figures particular to the workload (failover time, heal time...).
    #[serde(default)]
    pub extra: serde_json::Value,
    /// Why requests failed: distinct messages and how often each came.
    #[serde(default)]
    pub failures: Vec<(String, u64)>,
    /// The machine's 1-minute load average when the run began and when it ended.
    #[serde(default)]
    pub load_average: Option<(f64, f64)>,
}

impl RunReport {
    /// The figure a run with a fault injected (a leader killed) reports: the time to the first
    /// acknowledged write after it, in ms.
    pub const FAILOVER_MS: &'static str = "failover_ms";

    /// Whether a fault was injected in this run (its latencies are not comparable).
    pub fn faulted(&self) -> bool {
        self.extra.get(RunReport::FAILOVER_MS).is_some()
    }

    /// An empty report of a run beginning now.
    pub fn begin(system: System, workload: Workload, clients: usize) -> RunReport {
        RunReport {
            system,
            workload,
            clients,
            command: RunReport::this_command(),
            setup: String::new(),
            payload_bytes: None,
            series: Vec::new(),
            extra: serde_json::Value::Null,
            failures: Vec::new(),
            load_average: load_average_1m().map(|load| (load, load)),
        }
    }

    /// Takes the series and the failures of a finished run of `seconds`.
    pub fn take(&mut self, recorder: &Recorder, seconds: f64) -> anyhow::Result<()> {
        self.series = recorder.series(seconds)?;
        self.failures = recorder.failures();
        if let (Some((before, _)), Some(now)) = (self.load_average, load_average_1m()) {
            self.load_average = Some((before, now));
        }
        Ok(())
    }

    pub fn series(&self, name: &str) -> Option<&Series> {
        self.series.iter().find(|series| series.name == name)
    }

    /// Prints every series and writes the report as JSON to `json_out`, if given.
    pub fn publish(&self, json_out: Option<&Path>) -> anyhow::Result<()> {
        println!(
            "{}, {:?} workload, {} ({}):",
            self.system.label(),
            self.workload,
            clients_text(self.clients),
            self.setup
        );
        for series in &self.series {
            println!("  {}", series.line());
        }
        if !self.extra.is_null() {
            println!("  {}", self.extra);
        }
        for (message, count) in &self.failures {
            println!("  failed {count} times: {message}");
        }
        if let Some(path) = json_out {
            std::fs::write(path, serde_json::to_vec_pretty(self)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }

    /// The set-up, the record size and the workload's own figures, as one line.
    pub fn describe(&self) -> String {
        let mut text = self.setup.clone();
        if let Some(bytes) = self.payload_bytes {
            let _ = write!(text, "; records of {bytes} bytes (case documents)");
        }
        if !self.extra.is_null() {
            let _ = write!(text, "; {}", self.extra);
        }
        if let Some((before, after)) = self.load_average {
            let cores = std::thread::available_parallelism().map_or(0, |cores| cores.get());
            let _ = write!(
                text,
                "; machine load average {before:.1} → {after:.1} on {cores} cores"
            );
        }
        text
    }

    /// The command line of this process, for [`RunReport::command`].
    pub fn this_command() -> String {
        let mut args = std::env::args();
        let program = args
            .next()
            .map(|path| {
                Path::new(&path)
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned())
                    .unwrap_or(path)
            })
            .unwrap_or_default();
        std::iter::once(program)
            .chain(args)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Reads every `*.json` run report in `dir`, sorted by file name.
pub fn read_reports(dir: &Path) -> anyhow::Result<Vec<RunReport>> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path)?;
            serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
        })
        .collect()
}

/// One line of the comparison: a figure for each system, the ratios of Liandong's to the
/// anchors', and the speed target with whether this run meets it.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub what: String,
    pub liandong: Option<f64>,
    pub etcd: Option<f64>,
    pub postgres: Option<f64>,
    pub unit: Unit,
    pub target: Option<Target>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Unit {
    #[default]
    Milliseconds,
    PerSecond,
    Count,
    Ratio,
}

/// A speed target of issue 9, checked against Liandong's figure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// At most this value.
    AtMost(f64),
    /// At least this many times etcd's figure.
    TimesEtcd(f64),
}

impl Row {
    fn ratio(liandong: Option<f64>, anchor: Option<f64>) -> Option<f64> {
        match (liandong, anchor) {
            (Some(ours), Some(theirs)) if theirs > 0.0 => Some(ours / theirs),
            _ => None,
        }
    }

    pub fn versus_etcd(&self) -> Option<f64> {
        Row::ratio(self.liandong, self.etcd)
    }

    pub fn versus_postgres(&self) -> Option<f64> {
        Row::ratio(self.liandong, self.postgres)
    }

    pub fn target_text(&self) -> String {
        match self.target {
            None => String::new(),
            Some(Target::AtMost(limit)) => format!("≤ {}", format_value(limit, self.unit)),
            Some(Target::TimesEtcd(times)) => format!("≥ {times}× etcd"),
        }
    }

    /// Whether Liandong meets the target in this run (None: no target, or no figure).
    pub fn meets_target(&self) -> Option<bool> {
        let ours = self.liandong?;
        match self.target? {
            Target::AtMost(limit) => Some(ours <= limit),
            Target::TimesEtcd(times) => self.versus_etcd().map(|ratio| ratio >= times),
        }
    }

    fn cells(&self) -> [String; 7] {
        let figure = |value: Option<f64>| {
            value
                .map(|value| format_value(value, self.unit))
                .unwrap_or_else(|| "—".to_string())
        };
        let ratio = |value: Option<f64>| {
            value
                .map(|value| format!("{value:.2}×"))
                .unwrap_or_else(|| "—".to_string())
        };
        let verdict = match self.meets_target() {
            Some(true) => format!("{} (met)", self.target_text()),
            Some(false) => format!("{} (missed)", self.target_text()),
            None => self.target_text(),
        };
        [
            self.what.clone(),
            figure(self.liandong),
            figure(self.etcd),
            figure(self.postgres),
            ratio(self.versus_etcd()),
            ratio(self.versus_postgres()),
            verdict,
        ]
    }
}

/// `value` in its unit, with a sensible number of digits.
pub fn format_value(value: f64, unit: Unit) -> String {
    match unit {
        Unit::PerSecond => format!("{}/s", thousands(value.round() as u64)),
        Unit::Count => thousands(value.round() as u64),
        Unit::Ratio => format!("{value:.2}×"),
        Unit::Milliseconds if value >= 100.0 => format!("{} ms", thousands(value.round() as u64)),
        Unit::Milliseconds if value >= 10.0 => format!("{value:.1} ms"),
        Unit::Milliseconds => format!("{value:.2} ms"),
    }
}

fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// The column headings of the comparison table.
pub const COLUMNS: [&str; 7] = [
    "what",
    "Liandong",
    "etcd",
    "PostgreSQL (sync standby)",
    "Liandong ÷ etcd",
    "Liandong ÷ PostgreSQL",
    "target (issue 9)",
];

/// The issue's figure of merit for the one-client run and the many-client run.
const ONE_CLIENT_P50_TARGET_MS: f64 = 1.5;
const LOADED_CLIENTS: usize = 64;
const LOADED_THROUGHPUT_TIMES_ETCD: f64 = 1.5;
const LOADED_P999_TARGET_MS: f64 = 100.0;
const LONG_HISTORY_RATIO_TARGET: f64 = 1.2;
const HANDOFF_P99_TARGET_MS: f64 = 30.0;

/// The comparison rows of a set of runs.
pub fn comparison(reports: &[RunReport]) -> Vec<Row> {
    let mut rows = Vec::new();
    for clients in file_client_counts(reports) {
        file_rows(reports, clients, &mut rows);
    }
    update_rows(reports, &mut rows);
    handoff_rows(reports, &mut rows);
    failover_rows(reports, &mut rows);
    query_rows(reports, &mut rows);
    rows
}

/// The latest run of `workload` on `system` with `clients` clients, a fault injected or not.
fn find(
    reports: &[RunReport],
    system: System,
    workload: Workload,
    clients: usize,
    faulted: bool,
) -> Option<&RunReport> {
    reports.iter().rev().find(|report| {
        report.system == system
            && report.workload == workload
            && report.clients == clients
            && report.faulted() == faulted
    })
}

/// The client counts of the file runs without a fault, in order.
fn file_client_counts(reports: &[RunReport]) -> BTreeSet<usize> {
    reports
        .iter()
        .filter(|report| report.workload == Workload::File && !report.faulted())
        .map(|report| report.clients)
        .collect()
}

fn file_rows(reports: &[RunReport], clients: usize, rows: &mut Vec<Row>) {
    let figure = |system: System, pick: fn(&Series) -> f64| {
        find(reports, system, Workload::File, clients, false)
            .and_then(|report| report.series.first())
            .map(pick)
    };
    let loaded = clients == LOADED_CLIENTS;
    let metrics = [
        Metric {
            what: "writes acknowledged",
            unit: Unit::PerSecond,
            target: loaded.then_some(Target::TimesEtcd(LOADED_THROUGHPUT_TIMES_ETCD)),
            pick: |series| series.throughput_per_s,
        },
        Metric {
            what: "p50",
            unit: Unit::Milliseconds,
            target: (clients == 1).then_some(Target::AtMost(ONE_CLIENT_P50_TARGET_MS)),
            pick: |series| series.latency.p50_ms,
        },
        Metric {
            what: "p99",
            unit: Unit::Milliseconds,
            target: None,
            pick: |series| series.latency.p99_ms,
        },
        Metric {
            what: "p999",
            unit: Unit::Milliseconds,
            target: loaded.then_some(Target::AtMost(LOADED_P999_TARGET_MS)),
            pick: |series| series.latency.p999_ms,
        },
        Metric {
            what: "max",
            unit: Unit::Milliseconds,
            target: None,
            pick: |series| series.latency.max_ms,
        },
        Metric {
            what: "requests over 1 s",
            unit: Unit::Count,
            target: loaded.then_some(Target::AtMost(0.0)),
            pick: |series| series.over_one_second as f64,
        },
    ];
    for metric in metrics {
        rows.push(Row {
            what: format!("{}: {}", clients_text(clients), metric.what),
            liandong: figure(System::Liandong, metric.pick),
            etcd: figure(System::Etcd, metric.pick),
            postgres: figure(System::Postgres, metric.pick),
            unit: metric.unit,
            target: metric.target,
        });
    }
}

/// One figure of a write run, as a row of the table.
struct Metric {
    what: &'static str,
    unit: Unit,
    target: Option<Target>,
    pick: fn(&Series) -> f64,
}

/// The latest Liandong run of `workload`.
fn latest(reports: &[RunReport], workload: Workload) -> Option<&RunReport> {
    reports
        .iter()
        .rev()
        .find(|report| report.system == System::Liandong && report.workload == workload)
}

fn liandong_row(what: &str, value: Option<f64>, unit: Unit, target: Option<Target>) -> Row {
    Row {
        what: what.to_string(),
        liandong: value,
        unit,
        target,
        ..Row::default()
    }
}

fn update_rows(reports: &[RunReport], rows: &mut Vec<Row>) {
    let Some(report) = latest(reports, Workload::Update) else {
        return;
    };
    let p50 = |name: &str| report.series(name).map(|series| series.latency.p50_ms);
    let (fresh, long) = (p50(UPDATE_FRESH), p50(UPDATE_LONG));
    let events = report.extra["history_events"].as_u64().unwrap_or_default();
    rows.push(liandong_row(
        "update, fresh case: p50",
        fresh,
        Unit::Milliseconds,
        None,
    ));
    rows.push(liandong_row(
        &format!("update, case of {} events: p50", thousands(events)),
        long,
        Unit::Milliseconds,
        None,
    ));
    rows.push(liandong_row(
        "update: long history ÷ fresh (p50)",
        Row::ratio(long, fresh),
        Unit::Ratio,
        Some(Target::AtMost(LONG_HISTORY_RATIO_TARGET)),
    ));
}

fn handoff_rows(reports: &[RunReport], rows: &mut Vec<Row>) {
    let Some(report) = latest(reports, Workload::Handoff) else {
        return;
    };
    let quantile = |name: &str, pick: fn(&Latency) -> f64| {
        report.series(name).map(|series| pick(&series.latency))
    };
    rows.push(liandong_row(
        "handoff, transfer → received: p50",
        quantile(HANDOFF_RECEIVED, |latency| latency.p50_ms),
        Unit::Milliseconds,
        None,
    ));
    rows.push(liandong_row(
        "handoff, transfer → received: p99",
        quantile(HANDOFF_RECEIVED, |latency| latency.p99_ms),
        Unit::Milliseconds,
        Some(Target::AtMost(HANDOFF_P99_TARGET_MS)),
    ));
    rows.push(liandong_row(
        "handoff, transfer → ack committed at sender: p99",
        quantile(HANDOFF_COMPLETED, |latency| latency.p99_ms),
        Unit::Milliseconds,
        None,
    ));
}

fn failover_rows(reports: &[RunReport], rows: &mut Vec<Row>) {
    for report in reports.iter().filter(|report| report.faulted()) {
        let failover = report.extra[RunReport::FAILOVER_MS].as_f64();
        rows.push(liandong_row(
            &format!(
                "{}, leader SIGKILLed: next write acknowledged after",
                clients_text(report.clients)
            ),
            failover,
            Unit::Milliseconds,
            None,
        ));
    }
}

/// The latest query run that recorded `series` (the provincial index in process, or fresh
/// queries on a real federation: the query benchmark's two modes).
fn latest_query_with<'a>(reports: &'a [RunReport], series: &str) -> Option<&'a RunReport> {
    reports.iter().rev().find(|report| {
        report.system == System::Liandong
            && report.workload == Workload::Query
            && report.series(series).is_some()
    })
}

fn query_rows(reports: &[RunReport], rows: &mut Vec<Row>) {
    if let Some(report) = latest_query_with(reports, FRESH_QUERY) {
        let offices = report.extra["offices"].as_u64().unwrap_or_default();
        let p99 = |name: &str| report.series(name).map(|series| series.latency.p99_ms);
        rows.push(liandong_row(
            &format!("fresh query, {offices} offices as a real federation: p99"),
            p99(FRESH_QUERY),
            Unit::Milliseconds,
            Some(Target::AtMost(FRESH_P99_TARGET_MS)),
        ));
        rows.push(liandong_row(
            &format!("the same query from the index, {offices} offices: p99"),
            p99(FRESH_INDEX_QUERY),
            Unit::Milliseconds,
            None,
        ));
    }
    let Some(report) = latest_query_with(reports, QUERY_FIRST) else {
        return;
    };
    let cases = report.extra["cases"].as_u64().unwrap_or_default();
    let p99 = |name: &str| report.series(name).map(|series| series.latency.p99_ms);
    rows.push(liandong_row(
        &format!("index query, {} cases: p99", thousands(cases)),
        p99(QUERY_FIRST),
        Unit::Milliseconds,
        Some(Target::AtMost(QUERY_P99_TARGET_MS)),
    ));
    rows.push(liandong_row(
        &format!("stats, {} cases: p99", thousands(cases)),
        p99(STATS),
        Unit::Milliseconds,
        Some(Target::AtMost(STATS_P99_TARGET_MS)),
    ));
}

/// Series names the query workload records.
pub const QUERY_FIRST: &str = "index query, first page";
pub const QUERY_NEXT: &str = "index query, page after the cursor";
pub const STATS: &str = "stats";
const QUERY_P99_TARGET_MS: f64 = 10.0;
const STATS_P99_TARGET_MS: f64 = 50.0;
/// Series names of the query benchmark's fresh mode (`query --fresh-region`).
pub const FRESH_QUERY: &str = "fresh query (scatter-gather down the tree), first page";
pub const FRESH_INDEX_QUERY: &str = "the same query from the index, first page";
const FRESH_P99_TARGET_MS: f64 = 300.0;

/// Series names the update workload records.
pub const UPDATE_FRESH: &str = "fresh case";
pub const UPDATE_LONG: &str = "long history";
/// Series names the handoff workload records.
pub const HANDOFF_RECEIVED: &str = "transfer to received";
pub const HANDOFF_COMPLETED: &str = "transfer to ack committed";

/// How to read the ratio columns.
pub const RATIO_NOTE: &str = "Ratios are Liandong's figure divided by the anchor's, both measured \
in the same set of runs: above 1 is better for writes per second, below 1 is better for latencies.";

/// The comparison as a Markdown table, the note on ratios, then every run's command and set-up.
pub fn markdown(reports: &[RunReport], rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", COLUMNS.join(" | "));
    let _ = writeln!(out, "|{}", " --- |".repeat(COLUMNS.len()));
    for row in rows {
        let _ = writeln!(out, "| {} |", row.cells().join(" | "));
    }
    let _ = writeln!(out, "\n{RATIO_NOTE}\n");
    for report in reports {
        let _ = writeln!(out, "- `{}`: {}", report.command, report.describe());
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A power of ten of milliseconds as an axis label: "0.1 ms", "1 ms", "1,000 ms".
fn decade_label(decade: f64) -> String {
    if decade >= 0.0 {
        format!("{} ms", thousands(10f64.powf(decade).round() as u64))
    } else {
        format!("{:.*} ms", (-decade) as usize, 10f64.powf(decade))
    }
}

/// "1 client", "64 clients".
fn clients_text(clients: usize) -> String {
    format!("{clients} client{}", if clients == 1 { "" } else { "s" })
}

/// One curve of a percentile plot.
pub struct Curve<'a> {
    pub label: String,
    pub histogram: &'a Histogram<u64>,
}

/// Plot geometry, in SVG user units.
const PLOT_WIDTH: f64 = 640.0;
const PLOT_HEIGHT: f64 = 320.0;
const MARGIN_LEFT: f64 = 64.0;
const MARGIN_RIGHT: f64 = 220.0;
const MARGIN_TOP: f64 = 28.0;
const MARGIN_BOTTOM: f64 = 40.0;
/// Points sampled along each curve.
const CURVE_POINTS: usize = 160;
/// The plot's x axis ends at this many nines (99.99 %) at most.
const NINES_MAX: f64 = 4.0;
const NINES_LABELS: [&str; 5] = ["0 %", "90 %", "99 %", "99.9 %", "99.99 %"];
const COLOURS: [&str; 6] = [
    "#c0392b", "#2471a3", "#1e8449", "#7d3c98", "#b9770e", "#566573",
];

/// The latency distributions as percentile curves (x: percentile on a scale of nines, y:
/// latency in ms on a log scale), as one `<svg>` element.
pub fn percentile_svg(title: &str, curves: &[Curve]) -> String {
    let recorded: Vec<&Curve> = curves
        .iter()
        .filter(|curve| !curve.histogram.is_empty())
        .collect();
    // x = log10(1 / (1 - q)): 0 at the median's left end, 1 at 90 %, 2 at 99 %...
    let nines_of = |count: u64| (count.max(2) as f64).log10().min(NINES_MAX);
    let x_max = recorded
        .iter()
        .map(|curve| nines_of(curve.histogram.len()))
        .fold(1.0_f64, f64::max)
        .ceil();
    let (mut low_us, mut high_us) = (u64::MAX, 1u64);
    for curve in &recorded {
        low_us = low_us.min(curve.histogram.min().max(1));
        high_us = high_us.max(curve.histogram.max());
    }
    if low_us > high_us {
        (low_us, high_us) = (1_000, 10_000);
    }
    let y_low = ((low_us as f64 / 1000.0).log10()).floor();
    let y_high = ((high_us as f64 / 1000.0).log10()).ceil().max(y_low + 1.0);
    let x_at = |nines: f64| MARGIN_LEFT + nines / x_max * PLOT_WIDTH;
    let y_at = |ms: f64| {
        let log = ms.max(1e-3).log10().clamp(y_low, y_high);
        MARGIN_TOP + (y_high - log) / (y_high - y_low) * PLOT_HEIGHT
    };
    let width = MARGIN_LEFT + PLOT_WIDTH + MARGIN_RIGHT;
    let height = MARGIN_TOP + PLOT_HEIGHT + MARGIN_BOTTOM;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        svg,
        r#"<text x="{MARGIN_LEFT}" y="18" font-size="14" font-weight="bold">{}</text>"#,
        escape(title)
    );
    // Grid and axes: one line per decade of latency, one per nine of percentile.
    let mut decade = y_low;
    while decade <= y_high {
        let y = y_at(10f64.powf(decade));
        let label = decade_label(decade);
        let _ = write!(
            svg,
            r##"<line x1="{MARGIN_LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"##,
            MARGIN_LEFT + PLOT_WIDTH,
            MARGIN_LEFT - 6.0,
            y + 4.0
        );
        decade += 1.0;
    }
    for nines in 0..=(x_max as u32) {
        let x = x_at(nines as f64);
        let label = NINES_LABELS[nines as usize];
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" y1="{MARGIN_TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            MARGIN_TOP + PLOT_HEIGHT,
            MARGIN_TOP + PLOT_HEIGHT + 16.0
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        MARGIN_LEFT + PLOT_WIDTH / 2.0,
        height - 6.0
    );
    for (index, curve) in recorded.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let nines_end = nines_of(curve.histogram.len());
        let points: Vec<String> = (0..=CURVE_POINTS)
            .map(|step| {
                let nines = nines_end * step as f64 / CURVE_POINTS as f64;
                let quantile = 1.0 - 10f64.powf(-nines);
                let ms = curve.histogram.value_at_quantile(quantile) as f64 / 1000.0;
                format!("{:.1},{:.1}", x_at(nines), y_at(ms))
            })
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        let legend_y = MARGIN_TOP + 14.0 + 18.0 * index as f64;
        let legend_x = MARGIN_LEFT + PLOT_WIDTH + 12.0;
        let _ = write!(
            svg,
            r#"<line x1="{legend_x:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="3"/><text x="{:.1}" y="{legend_y:.1}">{}</text>"#,
            legend_y - 4.0,
            legend_x + 18.0,
            legend_y - 4.0,
            legend_x + 24.0,
            escape(&curve.label)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// One plot of the report: its title and its curves' labels and histograms.
struct Plot {
    title: String,
    curves: Vec<(String, Histogram<u64>)>,
}

/// The plots of a set of runs: the file runs of each client count, the update run and the
/// handoff run.
fn plots(reports: &[RunReport]) -> Vec<Plot> {
    let mut plots = Vec::new();
    for clients in file_client_counts(reports) {
        let curves = [System::Liandong, System::Etcd, System::Postgres]
            .into_iter()
            .filter_map(|system| find(reports, system, Workload::File, clients, false))
            .filter_map(|report| {
                let series = report.series.first()?;
                Some((report.system.label().to_string(), series.histogram()))
            })
            .collect();
        plots.push(Plot {
            title: format!("Write latency, {}", clients_text(clients)),
            curves,
        });
    }
    for (report, title) in [
        (
            latest(reports, Workload::Update),
            "Updating a case: fresh vs long history",
        ),
        (
            latest(reports, Workload::Handoff),
            "Handoff between two offices",
        ),
        (
            latest_query_with(reports, QUERY_FIRST),
            "A supervisor's index: queries and stats",
        ),
        (
            latest_query_with(reports, FRESH_QUERY),
            "Fresh queries on a real federation, beside the index",
        ),
    ] {
        if let Some(report) = report {
            let curves = report
                .series
                .iter()
                .map(|series| (series.name.clone(), series.histogram()))
                .collect();
            plots.push(Plot {
                title: title.to_string(),
                curves,
            });
        }
    }
    plots
}

/// The whole comparison as one self-contained HTML page: the table, every plot inline, and
/// the command and set-up of every run.
pub fn html(reports: &[RunReport], rows: &[Row], heading: &str) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{0}</title><style>\
         body{{font-family:sans-serif;margin:2em;max-width:1100px}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}\
         td:first-child,th:first-child{{text-align:left}}code{{font-size:90%}}</style></head><body><h1>{0}</h1>",
        escape(heading)
    );
    page.push_str("<table><tr>");
    for column in COLUMNS {
        let _ = write!(page, "<th>{}</th>", escape(column));
    }
    page.push_str("</tr>");
    for row in rows {
        page.push_str("<tr>");
        for cell in row.cells() {
            let _ = write!(page, "<td>{}</td>", escape(&cell));
        }
        page.push_str("</tr>");
    }
    let _ = write!(page, "</table><p>{}</p>", escape(RATIO_NOTE));
    for Plot { title, curves } in plots(reports) {
        let curves: Vec<Curve> = curves
            .iter()
            .map(|(label, histogram)| Curve {
                label: label.clone(),
                histogram,
            })
            .collect();
        let _ = write!(page, "<figure>{}</figure>", percentile_svg(&title, &curves));
    }
    page.push_str("<h2>Runs</h2><ul>");
    for report in reports {
        let _ = write!(
            page,
            "<li><code>{}</code>: {}</li>",
            escape(&report.command),
            escape(&report.describe())
        );
    }
    page.push_str("</ul></body></html>\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_histogram(scale_us: u64) -> Histogram<u64> {
        let mut histogram = new_histogram();
        for n in 1..=2_000u64 {
            histogram.record(scale_us * (1 + n % 97) + n).unwrap();
        }
        histogram.record(1_500_000).unwrap();
        histogram
    }

    /// The plot is well-formed SVG with one polyline per recorded histogram, every coordinate
    /// a finite number inside the drawing (fails if the writer emits broken markup, NaN from an
    /// empty or one-value histogram, or points outside the plot).
    #[test]
    fn percentile_svg_is_valid_svg_with_a_curve_per_histogram() {
        let (fast, slow, empty) = (
            sample_histogram(100),
            sample_histogram(5_000),
            new_histogram(),
        );
        let mut single = new_histogram();
        single.record(2_000).unwrap();
        let curves = [
            Curve {
                label: "Liandong <fast> & co".into(),
                histogram: &fast,
            },
            Curve {
                label: "etcd".into(),
                histogram: &slow,
            },
            Curve {
                label: "one value".into(),
                histogram: &single,
            },
            Curve {
                label: "nothing".into(),
                histogram: &empty,
            },
        ];
        let svg = percentile_svg("Write latency, 64 clients", &curves);
        let document = roxmltree::Document::parse(&svg).expect("well-formed XML");
        let root = document.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        assert_eq!(
            root.tag_name().namespace(),
            Some("http://www.w3.org/2000/svg")
        );
        let width: f64 = root.attribute("width").unwrap().parse().unwrap();
        let height: f64 = root.attribute("height").unwrap().parse().unwrap();
        let polylines: Vec<_> = document
            .descendants()
            .filter(|node| node.has_tag_name("polyline"))
            .collect();
        assert_eq!(polylines.len(), 3, "the empty histogram draws no curve");
        for polyline in polylines {
            let points = polyline.attribute("points").unwrap();
            let pairs: Vec<&str> = points.split_whitespace().collect();
            assert_eq!(pairs.len(), CURVE_POINTS + 1);
            for pair in pairs {
                let (x, y) = pair.split_once(',').unwrap();
                let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
                assert!(x.is_finite() && (0.0..=width).contains(&x), "{pair}");
                assert!(y.is_finite() && (0.0..=height).contains(&y), "{pair}");
            }
        }
        let labels: Vec<_> = document
            .descendants()
            .filter(|node| node.has_tag_name("text"))
            .filter_map(|node| node.text())
            .collect();
        assert!(labels.contains(&"Liandong <fast> & co"), "{labels:?}");
    }

    /// A series keeps its histogram: rebuilt from the JSON, it gives the same quantiles and
    /// counts the request over a second as a stall (fails if buckets are lost or shifted).
    #[test]
    fn series_round_trips_its_histogram_through_json() {
        let histogram = sample_histogram(1_000);
        let series = Series::new("write", &histogram, 3, 2.0);
        let json = serde_json::to_string(&series).unwrap();
        let back: Series = serde_json::from_str(&json).unwrap();
        let rebuilt = back.histogram();
        assert_eq!(rebuilt.len(), histogram.len());
        for quantile in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(
                rebuilt.value_at_quantile(quantile),
                histogram.value_at_quantile(quantile)
            );
        }
        assert_eq!(back.over_one_second, 1);
        assert_eq!(back.failed, 3);
        assert_eq!(back.throughput_per_s, histogram.len() as f64 / 2.0);
    }

    fn run(system: System, clients: usize, scale_us: u64) -> RunReport {
        RunReport {
            payload_bytes: Some(1_000),
            series: vec![Series::new("write", &sample_histogram(scale_us), 0, 10.0)],
            ..RunReport::begin(system, Workload::File, clients)
        }
    }

    /// The table puts each system's figure in its column and divides Liandong's by the
    /// anchor's; a missing anchor leaves a dash (fails if columns or ratios are mixed up).
    #[test]
    fn comparison_divides_liandong_by_each_anchor_of_the_same_client_count() {
        let reports = vec![
            run(System::Liandong, 64, 1_000),
            run(System::Etcd, 64, 2_000),
            run(System::Liandong, 1, 1_000),
        ];
        let rows = comparison(&reports);
        let p50 = rows
            .iter()
            .find(|row| row.what == "64 clients: p50")
            .unwrap();
        let (ours, theirs) = (p50.liandong.unwrap(), p50.etcd.unwrap());
        assert!(ours < theirs);
        assert_eq!(p50.versus_etcd(), Some(ours / theirs));
        assert_eq!(p50.postgres, None);
        let throughput = rows
            .iter()
            .find(|row| row.what == "64 clients: writes acknowledged")
            .unwrap();
        assert_eq!(throughput.target, Some(Target::TimesEtcd(1.5)));
        assert_eq!(
            throughput.meets_target(),
            Some(false),
            "same count, same seconds"
        );
        let table = markdown(&reports, &rows);
        assert!(table.contains("| 1 client: p50 | "), "{table}");
        let page = html(&reports, &rows, "Benchmarks");
        assert_eq!(page.matches("<svg").count(), 2, "one plot per client count");
    }
}
