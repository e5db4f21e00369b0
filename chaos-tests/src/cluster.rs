//! A federation of real `liandong-node` processes in a temporary folder, driven through the
//! `liandong` command line (run in-process with `--json`, exactly as the binary would): init on
//! free ports, up, status, leaders, drills (kill / pause / resume / restart), and every replica's
//! own copy of a case (the officer API's Show with consistency LOCAL).
//!
//! The hosts are started by `liandong-node` found beside `target/<profile>/liandong`
//! (`cargo build --workspace --bins` first), or named by `LIANDONG_NODE_BIN`.
//!
//! Connections go through `liandong_ops::client::channel`, so they speak whatever the command
//! line speaks (mutual TLS with its certificate). That TLS identity is process-wide: run one
//! federation per test binary (each chaos test is its own file).

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Parser;
use federation_proto::v1::cases_client::CasesClient;
use federation_proto::v1::{Consistency, ShowRequest};
use futures::StreamExt;
use liandong_domain::{CaseId, Date};
use liandong_node::manifest::Manifest;
use liandong_ops::cli::Cli;
use liandong_ops::client::OfficerChannel;
use serde_json::Value;
use tonic::Code;

use crate::history::History;

/// Runs one `liandong` command with `--json`, in-process, on a thread of its own (drills wait for
/// processes synchronously), and returns its JSON document.
pub async fn liandong(dir: &Path, args: &[&str]) -> anyhow::Result<Value> {
    let dir_text = dir
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path"))?
        .to_string();
    let mut argv: Vec<String> = vec!["liandong".into(), "--json".into(), "--dir".into(), dir_text];
    argv.extend(args.iter().map(|a| a.to_string()));
    tokio::task::spawn_blocking(move || liandong_blocking(&argv))
        .await
        .map_err(|e| anyhow!("liandong command thread: {e}"))?
}

fn liandong_blocking(argv: &[String]) -> anyhow::Result<Value> {
    let cli = Cli::try_parse_from(argv).with_context(|| format!("parsing {argv:?}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime
        .block_on(liandong_ops::commands::run(cli))
        .with_context(|| format!("liandong {}", argv[4..].join(" ")))?;
    Ok(report.json)
}

/// Which replica a drill acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Leader,
    Replica(u64),
    /// Every replica of the office (restart and resume only).
    All,
}

/// One replica as `liandong status --json` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub id: u64,
    pub host: String,
    pub alive: bool,
    pub state: Option<String>,
    pub last_applied: Option<u64>,
    pub state_hash: Option<String>,
    pub cases: Option<u64>,
}

/// Every replica's copy of an office's cases, once they caught up.
#[derive(Debug, Clone, Default)]
pub struct FinalState {
    pub office: String,
    /// Per replica id: its status at the end and its copies, case id -> document (None: it has
    /// no such case; Err: it could not answer).
    pub replicas: BTreeMap<u64, ReplicaCopies>,
    /// Status samples taken while waiting for the replicas to catch up: (replica, last_applied,
    /// state_hash) of each live replica.
    pub samples: Vec<Vec<(u64, u64, String)>>,
    /// Whether the replicas reached one applied index and state hash in time.
    pub caught_up: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ReplicaCopies {
    pub status: Option<ReplicaStatus>,
    pub cases: BTreeMap<String, Result<Option<Vec<u8>>, String>>,
}

/// The office's replicas in a `status --json` document, and its leader.
pub fn office_status(
    status: &Value,
    office: &str,
) -> anyhow::Result<(Option<u64>, Vec<ReplicaStatus>)> {
    let entry = status["offices"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|o| o["code"] == office)
        .ok_or_else(|| anyhow!("status shows no office {office}"))?;
    let replicas = entry["replicas"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| ReplicaStatus {
            id: r["id"].as_u64().unwrap_or(0),
            host: r["host"].as_str().unwrap_or_default().to_string(),
            alive: r["alive"] == true,
            state: r["state"].as_str().map(str::to_string),
            last_applied: r["last_applied"].as_u64(),
            state_hash: r["state_hash"].as_str().map(str::to_string),
            cases: r["cases"].as_u64(),
        })
        .collect();
    Ok((entry["leader"].as_u64(), replicas))
}

/// (replica, last_applied, state_hash) of each replica that answered.
fn live_sample(replicas: &[ReplicaStatus]) -> Vec<(u64, u64, String)> {
    replicas
        .iter()
        .filter_map(|r| Some((r.id, r.last_applied?, r.state_hash.clone()?)))
        .collect()
}

/// Status samples taken in the background while faults run: wherever two replicas report the same
/// applied index, their state hashes must be equal (checked by `invariants::integrity`).
pub struct StatusSampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Vec<(u64, u64, String)>>>,
}

impl StatusSampler {
    pub async fn stop(self) -> Vec<Vec<(u64, u64, String)>> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap_or_default()
    }
}

/// The officer the harness acts as at every office.
pub const OFFICER: &str = "chaos";

/// A federation in a temporary folder; `down` on drop (paused hosts are resumed first).
pub struct Cluster {
    pub dir: PathBuf,
    pub manifest: Manifest,
    _temp: tempfile::TempDir,
}

/// Whether every port of the manifest's hosts can be bound now.
fn ports_free(manifest: &Manifest) -> bool {
    let mut listeners = Vec::new();
    for host in &manifest.hosts {
        let public = host.http_addr.iter();
        for addr in [&host.api_addr, &host.raft_addr, &host.metrics_addr]
            .into_iter()
            .chain(public)
        {
            match TcpListener::bind(addr.as_str()) {
                Ok(listener) => listeners.push(listener),
                Err(_) => return false,
            }
        }
    }
    true
}

/// How long one read of a replica's copy waits for an answer.
const SHOW_ATTEMPT: Duration = Duration::from_secs(10);
/// How long reads of one replica's copies are repeated when it asks for that (shared by every
/// read of one pass, so a replica that never catches up costs this once, not once per case).
pub const SHOW_RETRY_FOR: Duration = Duration::from_secs(60);

impl Cluster {
    /// `federation init` (on free ports) and `up`. `flags` go to init, e.g.
    /// `["--region", "5306", "--max-children", "0", "--replicas", "3"]`.
    pub async fn start(flags: &[&str]) -> anyhow::Result<Cluster> {
        let temp = tempfile::Builder::new()
            .prefix("liandong-chaos-")
            .tempdir()?;
        let dir = temp.path().join("federation");
        let mut manifest = None;
        for attempt in 0..50 {
            // Below Linux's ephemeral range (32768-60999 by default): a host restarted by a test
            // gets its port back, never finding it taken by some outgoing connection meanwhile.
            let base: u16 = 20_000 + rand::random::<u16>() % 12_000;
            let port = base.to_string();
            let mut args = vec!["federation", "init", "--base-port", &port];
            if attempt > 0 {
                args.push("--force");
            }
            args.extend_from_slice(flags);
            liandong(&dir, &args).await?;
            let loaded = Manifest::load(&dir.join("manifest.json"))?;
            if ports_free(&loaded) {
                manifest = Some(loaded);
                break;
            }
        }
        let manifest = manifest.ok_or_else(|| anyhow!("no free port range found"))?;
        // The officer clients below connect as the command line does (its certificate, when the
        // federation speaks TLS). That identity is per process: one federation per test binary.
        liandong_ops::client::use_federation_tls(&liandong_ops::layout::Layout::new(&dir))?;
        let cluster = Cluster {
            dir,
            manifest,
            _temp: temp,
        };
        if let Err(error) = cluster.cli(&["up", "--timeout-seconds", "60"]).await {
            bail!("{error:#}{}", cluster.logs_tail(20));
        }
        cluster.sign_in().await?;
        Ok(cluster)
    }

    /// Signs the harness's officer in at every office (made with the office's initial admin
    /// password, every role but admin): this process's calls to an office carry its token, and
    /// [`Cluster::cli_as`] runs the command line with it.
    async fn sign_in(&self) -> anyhow::Result<()> {
        let layout = liandong_ops::layout::Layout::new(&self.dir);
        let federation = liandong_ops::client::Federation::open(layout)?;
        let roles = liandong_ops::session::WORKING_ROLES;
        let tokens = self.dir.join("tokens");
        liandong_ops::session::sign_in_everywhere(&federation, OFFICER, &roles, Some(&tokens)).await
    }

    /// Where the harness's officer of `office` keeps its token.
    pub fn token_file(&self, office: &str) -> PathBuf {
        self.dir.join("tokens").join(format!("{office}.token"))
    }

    pub async fn cli(&self, args: &[&str]) -> anyhow::Result<Value> {
        liandong(&self.dir, args).await
    }

    /// A command run as the harness's officer of `office`.
    pub async fn cli_as(&self, office: &str, args: &[&str]) -> anyhow::Result<Value> {
        let token = self.token_file(office);
        let token = token.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?;
        let mut all = vec!["--token-file", token];
        all.extend_from_slice(args);
        liandong(&self.dir, &all).await
    }

    /// The office's (replica id, API address) pairs.
    pub fn replicas(&self, office: &str) -> Vec<(u64, String)> {
        self.manifest
            .office(office)
            .map(|entry| {
                entry
                    .members
                    .iter()
                    .filter_map(|m| {
                        self.manifest
                            .host(&m.host)
                            .map(|h| (m.id, h.api_addr.clone()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn api_addrs(&self, office: &str) -> Vec<String> {
        self.replicas(office).into_iter().map(|(_, a)| a).collect()
    }

    pub async fn status(&self) -> anyhow::Result<Value> {
        self.cli(&["status"]).await
    }

    /// The office's replicas as `status --json` shows them, and its leader.
    pub async fn office_status(
        &self,
        office: &str,
    ) -> anyhow::Result<(Option<u64>, Vec<ReplicaStatus>)> {
        office_status(&self.status().await?, office)
    }

    /// Samples the office's status every `every` until stopped (see [`StatusSampler`]).
    pub fn sample_status(&self, office: &str, every: Duration) -> StatusSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let dir = self.dir.clone();
        let office = office.to_string();
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut samples = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                if let Ok(status) = liandong(&dir, &["status"]).await {
                    if let Ok((_, replicas)) = office_status(&status, &office) {
                        samples.push(live_sample(&replicas));
                    }
                }
                tokio::time::sleep(every).await;
            }
            samples
        });
        StatusSampler { stop, task }
    }

    pub async fn leader(&self, office: &str) -> anyhow::Result<Option<u64>> {
        Ok(self.office_status(office).await?.0)
    }

    /// Waits for the office to have a leader (other than `not`, if given).
    pub async fn wait_for_leader(
        &self,
        office: &str,
        not: Option<u64>,
        limit: Duration,
    ) -> anyhow::Result<u64> {
        let start = Instant::now();
        loop {
            if let Ok(Some(leader)) = self.leader(office).await {
                if Some(leader) != not {
                    return Ok(leader);
                }
            }
            if start.elapsed() > limit {
                bail!("office {office} has no leader after {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `liandong drill VERB --office OFFICE [--leader | --replica N] --json`.
    pub async fn drill(&self, verb: &str, office: &str, target: Target) -> anyhow::Result<Value> {
        let replica;
        let mut args = vec!["drill", verb, "--office", office];
        match target {
            Target::Leader => args.push("--leader"),
            Target::Replica(n) => {
                replica = n.to_string();
                args.extend(["--replica", &replica]);
            }
            Target::All => {}
        }
        self.cli(&args).await
    }

    /// SIGKILLs the office's leader; returns the killed replica's id.
    pub async fn kill_leader(&self, office: &str) -> anyhow::Result<u64> {
        let done = self.drill("kill", office, Target::Leader).await?;
        done["targets"][0]["replica"]
            .as_u64()
            .ok_or_else(|| anyhow!("drill kill named no replica: {done}"))
    }

    /// Waits until every replica of the office is alive and all report one applied index and one
    /// state hash. Returns the status samples it took (to check agreement at equal indexes).
    pub async fn wait_caught_up(
        &self,
        office: &str,
        limit: Duration,
    ) -> (bool, Vec<Vec<(u64, u64, String)>>) {
        let start = Instant::now();
        let mut samples = Vec::new();
        loop {
            if let Ok((leader, replicas)) = self.office_status(office).await {
                let live = live_sample(&replicas);
                let all_alive = live.len() == replicas.len();
                let same = live
                    .windows(2)
                    .all(|w| w[0].1 == w[1].1 && w[0].2 == w[1].2);
                samples.push(live);
                if leader.is_some() && all_alive && same {
                    return (true, samples);
                }
            }
            if start.elapsed() > limit {
                return (false, samples);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A replica's own copy of a case (consistency LOCAL): Some(document), None if it has none.
    /// A replica that sheds load (its audit log catching up after thousands of reads) asks to be
    /// called again shortly; that is done, as any client would, until `retry_until`. Each
    /// attempt waits at most [`SHOW_ATTEMPT`] for an answer.
    pub async fn show_local(
        channel: OfficerChannel,
        case_id: &str,
        retry_until: Instant,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        let mut client = CasesClient::new(channel);
        let request = ShowRequest {
            case_id: case_id.to_string(),
            consistency: Consistency::Local as i32,
            ..ShowRequest::default()
        };
        loop {
            let answer = tokio::time::timeout(SHOW_ATTEMPT, client.show(request.clone()))
                .await
                .unwrap_or_else(|_| {
                    Err(tonic::Status::deadline_exceeded(format!(
                        "no answer in {} s",
                        SHOW_ATTEMPT.as_secs()
                    )))
                });
            match answer {
                Ok(reply) => return Ok(Some(reply.into_inner().case_document)),
                Err(status) if status.code() == Code::NotFound => return Ok(None),
                Err(status) => match federation_proto::retry_after(&status) {
                    Some(pause) if Instant::now() + pause < retry_until => {
                        tokio::time::sleep(pause).await
                    }
                    _ => return Err(status),
                },
            }
        }
    }

    /// Every replica's own copy of one case: (replica, Some(case) / None if it has none, or why
    /// it could not answer).
    pub async fn copies(
        &self,
        office: &str,
        case_id: &str,
    ) -> Vec<(u64, Result<Option<liandong_domain::Case>, String>)> {
        let mut out = Vec::new();
        for (replica, addr) in self.replicas(office) {
            let copy = match liandong_ops::client::officer_channel(&addr, office).await {
                Err(status) => Err(status.message().to_string()),
                Ok(channel) => {
                    let retry_until = Instant::now() + Duration::from_secs(8);
                    match Cluster::show_local(channel, case_id, retry_until).await {
                        Err(status) => Err(status.message().to_string()),
                        Ok(None) => Ok(None),
                        Ok(Some(document)) => liandong_domain::Case::from_bytes(&document)
                            .map(Some)
                            .map_err(|e| e.to_string()),
                    }
                }
            };
            out.push((replica, copy));
        }
        out
    }

    /// Waits for the replicas to catch up, then reads every replica's copy of every case the
    /// history knows of, and of every case id the office may have issued (sequence numbers up to
    /// the case count a replica reports, in every year seen).
    pub async fn final_state(
        &self,
        office: &str,
        history: &History,
        limit: Duration,
    ) -> anyhow::Result<FinalState> {
        let (caught_up, samples) = self.wait_caught_up(office, limit).await;
        let (_, statuses) = self.office_status(office).await?;
        let known = history.acknowledged_cases();
        let mut years: BTreeSet<u16> = known
            .iter()
            .filter_map(|id| id.parse::<CaseId>().ok().map(|id| id.year))
            .collect();
        let china_now = liandong_node::clock::wall_ms();
        years.insert(Date::from_millis(china_now).year);
        let most = statuses.iter().filter_map(|s| s.cases).max().unwrap_or(0);
        let office_code: liandong_domain::OfficeCode = office
            .parse()
            .map_err(|e| anyhow!("office code {office}: {e}"))?;
        let mut ids: BTreeSet<String> = known.clone();
        for &year in &years {
            for seq in 1..=u32::try_from(most).unwrap_or(u32::MAX).saturating_add(16) {
                ids.insert(
                    CaseId {
                        office: office_code.clone(),
                        year,
                        seq,
                    }
                    .to_string(),
                );
            }
        }
        let ids: Vec<String> = ids.into_iter().collect();
        let mut state = FinalState {
            office: office.to_string(),
            samples,
            caught_up,
            ..FinalState::default()
        };
        for (replica, addr) in self.replicas(office) {
            let status = statuses.iter().find(|s| s.id == replica).cloned();
            let mut copies = ReplicaCopies {
                status,
                cases: BTreeMap::new(),
            };
            let channel = liandong_ops::client::officer_channel(&addr, office).await;
            match channel {
                Err(error) => {
                    for id in &ids {
                        copies
                            .cases
                            .insert(id.clone(), Err(format!("{addr}: {}", error.message())));
                    }
                }
                Ok(channel) => {
                    let retry_until = Instant::now() + SHOW_RETRY_FOR;
                    let reads = futures::stream::iter(ids.iter().cloned())
                        .map(|id| {
                            let channel = channel.clone();
                            async move {
                                let copy = Cluster::show_local(channel, &id, retry_until)
                                    .await
                                    .map_err(|s| format!("{:?}: {}", s.code(), s.message()));
                                (id, copy)
                            }
                        })
                        .buffer_unordered(32)
                        .collect::<Vec<_>>()
                        .await;
                    for (id, copy) in reads {
                        // Only sequence numbers that exist somewhere matter; keep known ids too.
                        if matches!(copy, Ok(None)) && !known.contains(&id) {
                            continue;
                        }
                        copies.cases.insert(id, copy);
                    }
                }
            }
            state.replicas.insert(replica, copies);
        }
        // A case one replica has and another lacks must show as "None" on the other.
        let everywhere: BTreeSet<String> = state
            .replicas
            .values()
            .flat_map(|c| c.cases.keys().cloned())
            .collect();
        for copies in state.replicas.values_mut() {
            for id in &everywhere {
                copies.cases.entry(id.clone()).or_insert(Ok(None));
            }
        }
        Ok(state)
    }

    /// The last `lines` lines of every host's log (for failure messages).
    pub fn logs_tail(&self, lines: usize) -> String {
        let run = self.dir.join("run");
        let mut out = String::new();
        for entry in std::fs::read_dir(&run).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(lines).collect();
                out.push_str(&format!("\n--- {}\n", path.display()));
                for line in tail.into_iter().rev() {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// Lines of the hosts' logs that mention a panic.
    pub fn panics_in_logs(&self) -> Vec<String> {
        let run = self.dir.join("run");
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&run).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                for line in text.lines().filter(|l| l.contains("panicked")) {
                    found.push(format!(
                        "{}: {line}",
                        path.file_name().unwrap_or_default().to_string_lossy()
                    ));
                }
            }
        }
        found
    }

    /// Resumes paused hosts and stops every host.
    pub async fn down(&self) -> anyhow::Result<Value> {
        for office in &self.manifest.offices {
            let _ = self.drill("resume", &office.code, Target::All).await;
        }
        self.cli(&["down"]).await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let dir = self.dir.clone();
        let offices: Vec<String> = self
            .manifest
            .offices
            .iter()
            .map(|o| o.code.clone())
            .collect();
        // Not on the test's runtime: a fresh thread with its own.
        let _ = std::thread::spawn(move || {
            let dir_text = dir.to_string_lossy().to_string();
            let run = |args: &[&str]| {
                let mut argv: Vec<String> = vec![
                    "liandong".into(),
                    "--json".into(),
                    "--dir".into(),
                    dir_text.clone(),
                ];
                argv.extend(args.iter().map(|a| a.to_string()));
                liandong_blocking(&argv)
            };
            for office in &offices {
                let _ = run(&["drill", "resume", "--office", office]);
            }
            let _ = run(&["down"]);
        })
        .join();
    }
}
