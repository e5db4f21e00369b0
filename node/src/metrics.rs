//! A host's metrics page, in Prometheus' text exposition format (version 0.0.4), for operators'
//! scrapers: per office its Raft (term, leader, commit and applied index, replication lag per
//! member, quiesced or not, leader changes), its federation links (outbox depth and oldest age,
//! delivery retries), its cases by status and overdue, and the officer and operator APIs'
//! request latencies as histograms. docs/operations.md lists every metric.
//!
//! The page is served on a loopback address only (plain HTTP, like a node exporter behind a
//! local agent): a metrics address in the manifest that is not a loopback address is refused
//! with a line in the log, and the page is served on `127.0.0.1` at the same port instead.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use liandong_domain::{Case, OfficeCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tonic::codegen::http;

use crate::health::{self, Health};
use crate::machine::keys;
use crate::replica::{Replica, Replicas};
use crate::worker::Workers;

/// Largest request head we read before answering (we answer every path alike).
const REQUEST_BYTES_MAX: usize = 4096;
/// Scrapes served at once; another is answered 503 at once.
pub const SCRAPES_AT_ONCE_MAX: usize = 4;
/// How long a scraper may take to send its request.
pub const REQUEST_READ_TIMEOUT_MS: u64 = 2_000;
/// An office's cases are counted again at most this often (and only if it applied something).
pub const CASE_COUNTS_REFRESH_MS: u64 = 30_000;
/// Cases read per page while counting (a page is decoded, counted and dropped).
pub const CASE_SCAN_PAGE_ITEMS: usize = 1_000;
/// Upper bounds (seconds) of the request latency histogram's buckets.
pub const LATENCY_BUCKETS_SECONDS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Distinct methods timed at most; requests to any other path count as `other` (a client
/// cannot grow the page by inventing paths).
pub const METHODS_TIMED_MAX: usize = 64;

/// One latency histogram: a count per bucket (not cumulative; the page cumulates), the sum.
#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS_SECONDS.len()],
    /// Requests slower than the last bucket.
    over: u64,
    sum_ns: u128,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, took: Duration) {
        let seconds = took.as_secs_f64();
        match LATENCY_BUCKETS_SECONDS.iter().position(|le| seconds <= *le) {
            Some(bucket) => self.buckets[bucket] += 1,
            None => self.over += 1,
        }
        self.sum_ns += took.as_nanos();
        self.count += 1;
    }
}

/// Request latencies by gRPC method (`/liandong.v1.Cases/File`).
#[derive(Default)]
pub struct Latencies {
    by_method: Mutex<BTreeMap<String, Histogram>>,
}

impl Latencies {
    pub fn observe(&self, method: &str, took: Duration) {
        let mut by_method = self
            .by_method
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let known = method.starts_with("/liandong.v1.")
            && (by_method.contains_key(method) || by_method.len() < METHODS_TIMED_MAX);
        let key = if known { method } else { "other" };
        by_method.entry(key.to_string()).or_default().observe(took);
    }

    fn snapshot(&self) -> BTreeMap<String, Histogram> {
        self.by_method
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// A tower layer timing every request a tonic server answers (to its response headers, which
/// for these unary RPCs is when the handler finished).
#[derive(Clone)]
pub struct TimedLayer {
    pub latencies: Arc<Latencies>,
}

impl<S> tower_layer::Layer<S> for TimedLayer {
    type Service = Timed<S>;

    fn layer(&self, inner: S) -> Timed<S> {
        Timed {
            inner,
            latencies: self.latencies.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Timed<S> {
    inner: S,
    latencies: Arc<Latencies>,
}

type BoxedResponse<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

impl<S, B> tower_service::Service<http::Request<B>> for Timed<S>
where
    S: tower_service::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxedResponse<S::Response, S::Error>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().to_string();
        let latencies = self.latencies.clone();
        let start = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let outcome = response.await;
            latencies.observe(&method, start.elapsed());
            outcome
        })
    }
}

/// Failed federation deliveries by link (each is retried after a backoff).
#[derive(Default)]
pub struct Deliveries {
    retries: Mutex<BTreeMap<(OfficeCode, OfficeCode), u64>>,
}

impl Deliveries {
    /// One delivery from `from` to `to` failed and will be retried.
    pub fn retry(&self, from: &OfficeCode, to: &OfficeCode) {
        *self
            .retries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry((from.clone(), to.clone()))
            .or_default() += 1;
    }

    fn snapshot(&self) -> BTreeMap<(OfficeCode, OfficeCode), u64> {
        self.retries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// An office's cases by status and how many are overdue, as counted at `applied`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaseCount {
    pub by_status: BTreeMap<&'static str, u64>,
    pub overdue: u64,
}

struct Counted {
    applied: u64,
    at: Instant,
    count: CaseCount,
}

/// Case counts per office, read again only when stale (see [`CASE_COUNTS_REFRESH_MS`]).
#[derive(Default)]
pub struct CaseCounts {
    by_office: Mutex<HashMap<OfficeCode, Counted>>,
}

impl CaseCounts {
    fn get(&self, replica: &Replica) -> Option<CaseCount> {
        let applied = crate::health::applied_index(replica);
        {
            let by_office = self
                .by_office
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(counted) = by_office.get(&replica.office) {
                let fresh = counted.at.elapsed() < Duration::from_millis(CASE_COUNTS_REFRESH_MS);
                if counted.applied == applied || fresh {
                    return Some(counted.count.clone());
                }
            }
        }
        let count = count_cases(replica)?;
        self.by_office
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(
                replica.office.clone(),
                Counted {
                    applied,
                    at: Instant::now(),
                    count: count.clone(),
                },
            );
        Some(count)
    }
}

/// Counts an office's cases page by page (never holding more than a page).
fn count_cases(replica: &Replica) -> Option<CaseCount> {
    let machine = &replica.state_machine;
    let end = crate::store::keys::prefix_end(keys::CASE);
    let mut start = keys::CASE.to_vec();
    let mut count = CaseCount::default();
    loop {
        let page = machine
            .scan_range(&start, &end, CASE_SCAN_PAGE_ITEMS)
            .map_err(|error| tracing::warn!(office = %replica.office, %error, "counting cases"))
            .ok()?;
        for (_, value) in &page {
            // A case this build cannot read is not counted; `verify` reports it.
            if let Ok(case) = Case::from_bytes(value) {
                *count.by_status.entry(case.status.as_str()).or_default() += 1;
                count.overdue += u64::from(case.overdue);
            }
        }
        match page.last() {
            Some((key, _)) if page.len() == CASE_SCAN_PAGE_ITEMS => {
                start = [key.as_slice(), &[0]].concat();
            }
            _ => return Some(count),
        }
    }
}

/// What the page shows beyond the replicas and workers: shared with the servers and the pump.
#[derive(Clone, Default)]
pub struct Registry {
    pub latencies: Arc<Latencies>,
    pub deliveries: Arc<Deliveries>,
    pub health: Arc<Health>,
    case_counts: Arc<CaseCounts>,
}

impl Registry {
    pub fn new(health: Arc<Health>) -> Registry {
        Registry {
            health,
            ..Registry::default()
        }
    }
}

/// A label value with Prometheus' escapes (backslash, double quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The page under construction: each family's HELP and TYPE once, then its samples.
struct Page {
    out: String,
}

impl Page {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(key, value)| format!("{key}=\"{}\"", escape(value)))
            .collect();
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {value}");
        } else {
            let _ = writeln!(self.out, "{name}{{{}}} {value}", labels.join(","));
        }
    }
}

/// One family's samples over every replica: `value` gives a replica's samples (extra labels
/// and the value), none to leave it out.
fn per_replica<V: std::fmt::Display>(
    page: &mut Page,
    replicas: &Replicas,
    (name, kind, help): (&str, &str, &str),
    value: impl Fn(&Replica) -> Vec<(Vec<(&'static str, String)>, V)>,
) {
    page.family(name, kind, help);
    for replica in replicas.iter() {
        let office = replica.office.to_string();
        let id = replica.id.to_string();
        for (extra, sample) in value(replica) {
            let mut labels = vec![("office", office.as_str()), ("replica", id.as_str())];
            labels.extend(extra.iter().map(|(key, value)| (*key, value.as_str())));
            page.sample(name, &labels, sample);
        }
    }
}

fn one<V>(value: V) -> Vec<(Vec<(&'static str, String)>, V)> {
    vec![(Vec::new(), value)]
}

fn render_raft(page: &mut Page, replicas: &Replicas, registry: &Registry) {
    let metrics = |replica: &Replica| replica.raft.metrics().borrow().clone();
    per_replica(
        page,
        replicas,
        (
            "liandong_raft_term",
            "gauge",
            "The Raft term this replica is in.",
        ),
        |r| one(metrics(r).current_term),
    );
    per_replica(
        page,
        replicas,
        (
            "liandong_raft_is_leader",
            "gauge",
            "1 if this replica leads its office.",
        ),
        |r| one(u8::from(metrics(r).state.is_leader())),
    );
    per_replica(
        page,
        replicas,
        (
            "liandong_raft_leader",
            "gauge",
            "The replica id this replica knows as its office's leader (0: none).",
        ),
        |r| one(metrics(r).current_leader.unwrap_or(0)),
    );
    per_replica(
        page,
        replicas,
        (
            "liandong_raft_last_log_index",
            "gauge",
            "The last log index this replica appended.",
        ),
        |r| one(metrics(r).last_log_index.unwrap_or(0)),
    );
    per_replica(
        page,
        replicas,
        (
            "liandong_raft_last_applied_index",
            "gauge",
            "The last log index this replica applied.",
        ),
        |r| one(metrics(r).last_applied.map_or(0, |log_id| log_id.index)),
    );
    per_replica(
        page,
        replicas,
        (
            "liandong_raft_commit_index",
            "gauge",
            "On a leader: the highest log index a majority of voters hold.",
        ),
        |r| {
            health::commit_index(&metrics(r))
                .map(one)
                .unwrap_or_default()
        },
    );
    per_replica(
        page,
        replicas,
        (
            "liandong_raft_replication_lag_entries",
            "gauge",
            "On a leader: how many entries each other member is behind its last log index.",
        ),
        |r| {
            health::replication(&metrics(r))
                .into_iter()
                .map(|progress| (vec![("member", progress.id.to_string())], progress.lag))
                .collect()
        },
    );
    per_replica(
        page,
        replicas,
        (
            "liandong_raft_quiesced",
            "gauge",
            "1 while this replica's Raft timers are stopped (an idle office).",
        ),
        |r| one(u8::from(r.quiet.is_quiesced())),
    );
    per_replica(
        page,
        replicas,
        (
            "liandong_raft_quiesces_total",
            "counter",
            "Times this replica quiesced since its host started.",
        ),
        |r| one(r.quiet.counts().0),
    );
    per_replica(
        page,
        replicas,
        (
            "liandong_raft_wakes_total",
            "counter",
            "Times this replica woke from quiescence since its host started.",
        ),
        |r| one(r.quiet.counts().1),
    );
    per_replica(
        page,
        replicas,
        (
            "liandong_raft_leader_changes_last_minute",
            "gauge",
            "Leader changes this replica saw in the last minute (more than a few: flapping).",
        ),
        |r| one(registry.health.leader_changes_last_minute(&r.office)),
    );
    // 1 once the replica's Raft stopped on its own (a failed storage write): it serves
    // nothing until the host is restarted.
    per_replica(
        page,
        replicas,
        (
            "liandong_replica_stopped",
            "gauge",
            "1 if this replica's Raft stopped on a storage failure (restart its host once fixed).",
        ),
        |r| one(u8::from(metrics(r).running_state.is_err())),
    );
}

fn render_federation(page: &mut Page, replicas: &Replicas, registry: &Registry) {
    // What the leader reports is the office's (its outbox is being pumped); followers hold the
    // same state one commit behind at most, and would only double the series.
    let leading = |replica: &Replica| replica.is_leader();
    let links = |replica: &Replica| {
        if leading(replica) {
            health::links(replica)
        } else {
            Vec::new()
        }
    };
    per_replica(
        page,
        replicas,
        (
            "liandong_outbox_pending_messages",
            "gauge",
            "On a leader: federation messages waiting in the outbox, per receiving office.",
        ),
        |r| {
            links(r)
                .into_iter()
                .map(|link| (vec![("to", link.to)], link.pending))
                .collect()
        },
    );
    per_replica(page, replicas, ("liandong_outbox_oldest_age_seconds", "gauge", "On a leader: age of the oldest waiting message per receiving office (federation clock)."), |r| {
        links(r)
            .into_iter()
            .map(|link| (vec![("to", link.to)], link.oldest_age_ms as f64 / 1e3))
            .collect()
    });
    // SMS to petitioners: the office's notification outbox, on its leader (which sends).
    let sms = |replica: &Replica| {
        if !leading(replica) {
            return None;
        }
        let state = replica.state_machine.notify_state().ok()?;
        let oldest = replica
            .state_machine
            .notify_head(1)
            .ok()?
            .first()
            .map(|n| replica.clock.now().saturating_sub(n.made_at).max(0) as f64 / 1e3);
        Some((state, oldest.unwrap_or(0.0)))
    };
    per_replica(
        page,
        replicas,
        (
            "liandong_sms_pending",
            "gauge",
            "On a leader: SMS notices waiting in the office's notification outbox.",
        ),
        |r| {
            sms(r)
                .map(|(state, _)| one(state.pending))
                .unwrap_or_default()
        },
    );
    per_replica(
        page,
        replicas,
        (
            "liandong_sms_oldest_age_seconds",
            "gauge",
            "On a leader: age of the oldest waiting SMS notice (federation clock; 0: none).",
        ),
        |r| sms(r).map(|(_, age)| one(age)).unwrap_or_default(),
    );
    page.family(
        "liandong_delivery_retries_total",
        "counter",
        "Federation deliveries that failed and were retried, per link, since the host started.",
    );
    for ((from, to), retries) in registry.deliveries.snapshot() {
        page.sample(
            "liandong_delivery_retries_total",
            &[("office", from.as_str()), ("to", to.as_str())],
            retries,
        );
    }
    let counts = |replica: &Replica| {
        if leading(replica) {
            registry.case_counts.get(replica)
        } else {
            None
        }
    };
    per_replica(
        page,
        replicas,
        (
            "liandong_cases",
            "gauge",
            "On a leader: the office's cases by status (counted at most every 30 s).",
        ),
        |r| {
            counts(r)
                .map(|count| {
                    count
                        .by_status
                        .into_iter()
                        .map(|(status, n)| (vec![("status", status.to_string())], n))
                        .collect()
                })
                .unwrap_or_default()
        },
    );
    per_replica(
        page,
        replicas,
        (
            "liandong_cases_overdue",
            "gauge",
            "On a leader: the office's cases marked overdue.",
        ),
        |r| {
            counts(r)
                .map(|count| one(count.overdue))
                .unwrap_or_default()
        },
    );
}

fn render_latencies(page: &mut Page, registry: &Registry) {
    let name = "liandong_request_duration_seconds";
    page.family(
        name,
        "histogram",
        "How long the host took to answer an API request, per gRPC method.",
    );
    for (method, histogram) in registry.latencies.snapshot() {
        let mut cumulative = 0;
        for (le, count) in LATENCY_BUCKETS_SECONDS.iter().zip(histogram.buckets) {
            cumulative += count;
            page.sample(
                &format!("{name}_bucket"),
                &[("method", &method), ("le", &le.to_string())],
                cumulative,
            );
        }
        page.sample(
            &format!("{name}_bucket"),
            &[("method", &method), ("le", "+Inf")],
            histogram.count,
        );
        page.sample(
            &format!("{name}_sum"),
            &[("method", &method)],
            histogram.sum_ns as f64 / 1e9,
        );
        page.sample(
            &format!("{name}_count"),
            &[("method", &method)],
            histogram.count,
        );
    }
}

pub fn render(replicas: &Replicas, workers: &Workers, registry: &Registry) -> String {
    let mut page = Page { out: String::new() };
    // Each background worker (pump links, ticks, fault watches, the dead-leader detector,
    // quiescence): 1 for the state it is in; a failed worker has stopped (its reason is in the
    // host's log).
    let statuses = workers.statuses();
    page.family(
        "liandong_worker",
        "gauge",
        "1 for each background worker, labelled with the state it is in.",
    );
    for (name, status) in &statuses {
        page.sample(
            "liandong_worker",
            &[("worker", name), ("state", status.state.as_str())],
            1,
        );
    }
    page.family(
        "liandong_worker_errors_total",
        "counter",
        "Units of work a worker did that failed (it carried on).",
    );
    for (name, status) in &statuses {
        page.sample(
            "liandong_worker_errors_total",
            &[("worker", name)],
            status.errors,
        );
    }
    page.family(
        "liandong_fast_elections_won_total",
        "counter",
        "Elections the dead-leader detector started and won on this host.",
    );
    page.sample(
        "liandong_fast_elections_won_total",
        &[],
        crate::failover::fast_elections_won(),
    );
    render_raft(&mut page, replicas, registry);
    render_federation(&mut page, replicas, registry);
    render_latencies(&mut page, registry);
    page.out
}

/// The address the page is served on: `addr` if it is a loopback address, else the same port
/// on 127.0.0.1 (the page is never served beyond this machine).
pub fn loopback(addr: &str) -> Result<SocketAddr, String> {
    let parsed: SocketAddr = addr
        .parse()
        .map_err(|e| format!("metrics address {addr:?}: {e}"))?;
    if parsed.ip().is_loopback() {
        return Ok(parsed);
    }
    tracing::warn!(
        %addr,
        "the metrics page is served on loopback only; serving it on 127.0.0.1:{} instead",
        parsed.port()
    );
    Ok(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        parsed.port(),
    ))
}

pub async fn serve(
    addr: String,
    replicas: Replicas,
    workers: Workers,
    registry: Registry,
    shutdown: impl Future<Output = ()>,
) {
    let bound = match loopback(&addr) {
        Ok(bound) => TcpListener::bind(bound).await.map_err(|e| e.to_string()),
        Err(error) => Err(error),
    };
    let listener = match bound {
        Ok(listener) => listener,
        Err(error) => {
            tracing::warn!(%addr, %error, "metrics port not bound; metrics disabled");
            return;
        }
    };
    let scrapes = Arc::new(Semaphore::new(SCRAPES_AT_ONCE_MAX));
    tokio::pin!(shutdown);
    loop {
        let (mut stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted { Ok(pair) => pair, Err(_) => continue },
            _ = &mut shutdown => return,
        };
        let Ok(permit) = scrapes.clone().try_acquire_owned() else {
            let busy = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
            tokio::spawn(async move {
                let _ = stream.write_all(busy.as_bytes()).await;
            });
            continue;
        };
        let (replicas, workers, registry) = (replicas.clone(), workers.clone(), registry.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let mut head = vec![0u8; REQUEST_BYTES_MAX];
            let read = Duration::from_millis(REQUEST_READ_TIMEOUT_MS);
            let _ = tokio::time::timeout(read, stream.read(&mut head)).await;
            // RocksDB reads (links, case counts): off the async threads.
            let rendered =
                tokio::task::spawn_blocking(move || render(&replicas, &workers, &registry)).await;
            let body = rendered.unwrap_or_default();
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_fall_in_their_buckets_and_unknown_paths_are_other() {
        let latencies = Latencies::default();
        latencies.observe("/liandong.v1.Cases/File", Duration::from_millis(3));
        latencies.observe("/liandong.v1.Cases/File", Duration::from_secs(20));
        latencies.observe("/somewhere/else", Duration::from_millis(1));
        let snapshot = latencies.snapshot();
        let file = &snapshot["/liandong.v1.Cases/File"];
        assert_eq!(file.count, 2);
        assert_eq!(file.over, 1);
        // 3 ms falls in the 5 ms bucket (index 2).
        assert_eq!(file.buckets[2], 1);
        assert_eq!(snapshot["other"].count, 1);
    }

    #[test]
    fn methods_timed_are_bounded() {
        let latencies = Latencies::default();
        for n in 0..(METHODS_TIMED_MAX + 10) {
            latencies.observe(&format!("/liandong.v1.X/M{n}"), Duration::from_millis(1));
        }
        let snapshot = latencies.snapshot();
        assert_eq!(
            snapshot.len(),
            METHODS_TIMED_MAX + 1,
            "the rest count as other"
        );
        assert_eq!(snapshot["other"].count, 10);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("a\nb"), "a\\nb");
    }

    #[test]
    fn only_loopback_addresses_are_served() {
        assert_eq!(
            loopback("127.0.0.5:9000").unwrap(),
            "127.0.0.5:9000".parse().unwrap()
        );
        assert_eq!(
            loopback("10.1.2.3:9000").unwrap(),
            "127.0.0.1:9000".parse().unwrap()
        );
        assert!(loopback("not an address").is_err());
    }
}
