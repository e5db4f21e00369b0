//! Concurrent officer clients: tokio tasks, each with its own tonic connections straight to the
//! office's hosts (their API ports from the manifest), filing cases, accepting, declining,
//! extending and replying to them, and reading them back; every request with a unique request id
//! and a deadline. Everything they see goes into a [`Recorder`].
//!
//! Clients share a small set of "hot" cases (the most recently filed), so several of them act on
//! the same case at once: that is what makes the linearizability check bite (two concurrent
//! acceptances: exactly one may win). A filing that times out is retried with the same request id
//! until it is answered, which both finds out its case and exercises the office's deduplication;
//! now and then a client files an already answered request again, which must return the same case.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use federation_proto::v1::{
    self, case_command, cases_client::CasesClient, ActRequest, Consistency, FileRequest,
    ShowRequest,
};
use liandong_ops::client::OfficerChannel;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::Code;

use crate::history::{CaseView, Command, History, Observed, Op, Outcome, ProcessId, Recorder};

#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// The office the clients work at.
    pub office: String,
    pub clients: usize,
    /// Seeds every client's choices (client i uses seed + i).
    pub seed: u64,
    /// A request's deadline; past it the outcome is unknown.
    pub request_timeout: Duration,
    /// How long to wait for a TCP connection (no connection: the request certainly failed).
    pub connect_timeout: Duration,
    /// How many recently filed cases the clients act on and read.
    pub hot_cases: usize,
    /// Relative weights of the operations.
    pub file_weight: u32,
    pub refile_weight: u32,
    pub act_weight: u32,
    pub read_weight: u32,
    /// Attempts per filing (same request id) before the client gives up on it.
    pub file_attempts: u32,
}

impl WorkloadConfig {
    pub fn new(office: &str, seed: u64) -> WorkloadConfig {
        WorkloadConfig {
            office: office.to_string(),
            clients: 8,
            seed,
            request_timeout: Duration::from_millis(1_000),
            connect_timeout: Duration::from_millis(500),
            hot_cases: 8,
            file_weight: 20,
            refile_weight: 3,
            act_weight: 42,
            read_weight: 35,
            file_attempts: 20,
        }
    }
}

/// Live counters, readable while the workload runs.
#[derive(Debug, Default)]
pub struct Progress {
    pub invoked: AtomicU64,
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub unknown: AtomicU64,
    /// Acknowledged writes (filings and applied commands).
    pub writes_acknowledged: AtomicU64,
}

impl Progress {
    pub fn completed(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
            + self.failed.load(Ordering::Relaxed)
            + self.unknown.load(Ordering::Relaxed)
    }

    pub fn writes(&self) -> u64 {
        self.writes_acknowledged.load(Ordering::Relaxed)
    }
}

struct Shared {
    config: WorkloadConfig,
    addrs: Vec<String>,
    recorder: Recorder,
    progress: Arc<Progress>,
    stop: AtomicBool,
    hot: Mutex<VecDeque<String>>,
    answered_requests: Mutex<Vec<String>>,
}

/// A running workload. [`Workload::stop`] ends it and hands back the history.
pub struct Workload {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workload {
    /// Starts `config.clients` clients against the hosts at `addrs` (the office's API addresses).
    pub fn start(addrs: Vec<String>, config: WorkloadConfig) -> Workload {
        Workload::start_with(addrs, config, Recorder::new())
    }

    pub fn start_with(addrs: Vec<String>, config: WorkloadConfig, recorder: Recorder) -> Workload {
        let shared = Arc::new(Shared {
            config,
            addrs,
            recorder,
            progress: Arc::new(Progress::default()),
            stop: AtomicBool::new(false),
            hot: Mutex::new(VecDeque::new()),
            answered_requests: Mutex::new(Vec::new()),
        });
        let tasks = (0..shared.config.clients)
            .map(|process| {
                let shared = shared.clone();
                tokio::spawn(async move { client_loop(shared, process).await })
            })
            .collect();
        Workload { shared, tasks }
    }

    pub fn progress(&self) -> Arc<Progress> {
        self.shared.progress.clone()
    }

    pub fn recorder(&self) -> Recorder {
        self.shared.recorder.clone()
    }

    /// Waits until `n` more operations completed than now, or `limit` passed; true if they did.
    pub async fn wait_for_more_ops(&self, n: u64, limit: Duration) -> bool {
        let target = self.shared.progress.completed() + n;
        wait_until(limit, || self.shared.progress.completed() >= target).await
    }

    /// Waits until `n` more writes were acknowledged than now (the office serves again).
    pub async fn wait_for_more_writes(&self, n: u64, limit: Duration) -> bool {
        let target = self.shared.progress.writes() + n;
        wait_until(limit, || self.shared.progress.writes() >= target).await
    }

    /// Stops the clients (each finishes its current request) and returns the history.
    pub async fn stop(self) -> History {
        self.shared.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            if let Err(error) = task.await {
                if error.is_panic() {
                    std::panic::resume_unwind(error.into_panic());
                }
            }
        }
        self.shared.recorder.history()
    }
}

async fn wait_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// One client's connections, one per host, made on first use and dropped after a failure.
pub struct Connections {
    addrs: Vec<String>,
    channels: Vec<Option<OfficerChannel>>,
    /// The office acted for: its officer's token goes with every call.
    office: String,
    /// The host tried first.
    prefer: usize,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl Connections {
    pub fn new(
        addrs: Vec<String>,
        office: &str,
        prefer: usize,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Connections {
        let n = addrs.len().max(1);
        Connections {
            channels: vec![None; addrs.len()],
            addrs,
            office: office.to_string(),
            prefer: prefer % n,
            connect_timeout,
            request_timeout,
        }
    }

    fn rotate(&mut self) {
        self.prefer = (self.prefer + 1) % self.addrs.len().max(1);
    }

    async fn client(&mut self) -> Result<CasesClient<OfficerChannel>, String> {
        let i = self.prefer;
        if self.channels[i].is_none() {
            // The command line's own way to reach a host (whatever transport it speaks).
            let channel = tokio::time::timeout(
                self.connect_timeout,
                liandong_ops::client::officer_channel(&self.addrs[i], &self.office),
            )
            .await
            .map_err(|_| format!("{}: connect timed out", self.addrs[i]))?
            .map_err(|status| format!("{}: {}", self.addrs[i], status.message()))?;
            self.channels[i] = Some(channel);
        }
        Ok(CasesClient::new(
            self.channels[i].clone().expect("set above"),
        ))
    }

    /// Sends one request to the preferred host and classifies what came back.
    pub async fn call<F, Fut>(&mut self, call: F) -> Outcome
    where
        F: FnOnce(CasesClient<OfficerChannel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<v1::CaseReply>, tonic::Status>>,
    {
        let client = match self.client().await {
            Ok(client) => client,
            Err(reason) => {
                // Nothing was sent: the request certainly had no effect.
                self.rotate();
                return Outcome::Fail(reason);
            }
        };
        let addr = self.addrs[self.prefer].clone();
        match tokio::time::timeout(self.request_timeout, call(client)).await {
            Err(_) => {
                // The host may be paused or partitioned: forget the connection, try another.
                self.channels[self.prefer] = None;
                self.rotate();
                Outcome::Unknown(format!(
                    "{addr}: no answer within {:?}",
                    self.request_timeout
                ))
            }
            Ok(Ok(reply)) => match CaseView::from_document(&reply.into_inner().case_document) {
                Ok(view) => Outcome::Ok(Observed::Case(view)),
                Err(reason) => Outcome::Unknown(reason),
            },
            Ok(Err(status)) => match status.code() {
                Code::FailedPrecondition | Code::InvalidArgument => {
                    let code = status
                        .message()
                        .split(':')
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    Outcome::Ok(Observed::Rejected { code })
                }
                Code::NotFound => Outcome::Ok(Observed::NotFound),
                _ => {
                    self.channels[self.prefer] = None;
                    self.rotate();
                    Outcome::Unknown(format!("{addr}: {:?}: {}", status.code(), status.message()))
                }
            },
        }
    }
}

fn act_request(office: &str, case_id: &str, command: Command, request_id: String) -> ActRequest {
    let officer = "handler".to_string();
    let command = match command {
        Command::Accept => case_command::Command::Accept(v1::Accept { officer }),
        Command::Decline => case_command::Command::Decline(v1::Decline {
            route: "litigation".to_string(),
            officer,
        }),
        Command::Extend => case_command::Command::Extend(v1::Extend {
            days: 10,
            reason: "site survey needed".to_string(),
            officer,
        }),
        Command::Reply => case_command::Command::Reply(v1::Reply {
            opinion: "support".to_string(),
            text: "The matter was looked into and settled.".to_string(),
            officer,
        }),
    };
    ActRequest {
        case_id: case_id.to_string(),
        command: Some(v1::CaseCommand {
            command: Some(command),
        }),
        request_id,
        office: office.to_string(),
        ..ActRequest::default()
    }
}

/// A linearizable read of `case_id`, recorded as `process`.
pub async fn read(
    connections: &mut Connections,
    recorder: &Recorder,
    process: ProcessId,
    case_id: &str,
) -> Outcome {
    let index = recorder.invoke(
        process,
        Op::Read {
            case_id: case_id.to_string(),
        },
    );
    let request = ShowRequest {
        case_id: case_id.to_string(),
        consistency: Consistency::Linearizable as i32,
        ..ShowRequest::default()
    };
    let outcome = connections
        .call(|mut client| async move { client.show(request).await })
        .await;
    recorder.complete(index, outcome.clone());
    outcome
}

struct Client {
    shared: Arc<Shared>,
    process: ProcessId,
    rng: StdRng,
    connections: Connections,
    filed: u64,
    acted: u64,
}

impl Client {
    fn record(&self, outcome: &Outcome, write: bool) {
        let progress = &self.shared.progress;
        let counter = match outcome {
            Outcome::Ok(_) => &progress.ok,
            Outcome::Fail(_) => &progress.failed,
            Outcome::Unknown(_) => &progress.unknown,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if write && outcome.case().is_some() {
            progress.writes_acknowledged.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::SeqCst)
    }

    async fn backoff(&mut self, outcome: &Outcome) {
        if !outcome.is_ok() {
            let ms = self.rng.gen_range(20..80);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    /// One filing attempt under `request_id`.
    async fn file_once(&mut self, request_id: &str, n: u64) -> Outcome {
        let recorder = self.shared.recorder.clone();
        let index = recorder.invoke(
            self.process,
            Op::File {
                request_id: request_id.to_string(),
            },
        );
        let request = FileRequest {
            office: self.shared.config.office.clone(),
            registration: Some(liandong_ops::sample::registration(n)),
            request_id: request_id.to_string(),
            ..FileRequest::default()
        };
        let outcome = self
            .connections
            .call(|mut client| async move { client.file(request).await })
            .await;
        recorder.complete(index, outcome.clone());
        self.record(&outcome, true);
        outcome
    }

    /// Files a new case, retrying under the same request id until it is answered.
    async fn file(&mut self) {
        let n = (self.shared.config.seed % 1_000) * 10_000_000
            + self.process as u64 * 100_000
            + self.filed;
        self.filed += 1;
        let request_id = format!(
            "s{}-p{}-f{}",
            self.shared.config.seed, self.process, self.filed
        );
        for _ in 0..self.shared.config.file_attempts {
            let outcome = self.file_once(&request_id, n).await;
            if let Some(view) = outcome.case() {
                let mut hot = self.shared.hot.lock().unwrap_or_else(|p| p.into_inner());
                hot.push_back(view.case_id.clone());
                while hot.len() > self.shared.config.hot_cases {
                    hot.pop_front();
                }
                drop(hot);
                self.shared
                    .answered_requests
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(request_id.clone());
                return;
            }
            if outcome.is_ok() || self.stopping() {
                return;
            }
            self.backoff(&outcome).await;
        }
    }

    /// Files an answered request again: it must come back as the same case.
    async fn refile(&mut self) {
        let request_id = {
            let answered = self
                .shared
                .answered_requests
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if answered.is_empty() {
                return;
            }
            answered[self.rng.gen_range(0..answered.len())].clone()
        };
        // The registration is not looked at for a known request id; send a valid one anyway.
        let outcome = self.file_once(&request_id, 9_999_999).await;
        self.backoff(&outcome).await;
    }

    fn hot_case(&mut self) -> Option<String> {
        let hot = self.shared.hot.lock().unwrap_or_else(|p| p.into_inner());
        if hot.is_empty() {
            return None;
        }
        let i = self.rng.gen_range(0..hot.len());
        hot.get(i).cloned()
    }

    async fn act(&mut self, case_id: &str) {
        let command = match self.rng.gen_range(0..100) {
            0..=39 => Command::Accept,
            40..=44 => Command::Decline,
            45..=69 => Command::Extend,
            _ => Command::Reply,
        };
        self.acted += 1;
        let request_id = format!(
            "s{}-p{}-a{}",
            self.shared.config.seed, self.process, self.acted
        );
        let recorder = self.shared.recorder.clone();
        let index = recorder.invoke(
            self.process,
            Op::Act {
                case_id: case_id.to_string(),
                command,
            },
        );
        let request = act_request(&self.shared.config.office, case_id, command, request_id);
        let outcome = self
            .connections
            .call(|mut client| async move { client.act(request).await })
            .await;
        recorder.complete(index, outcome.clone());
        self.record(&outcome, true);
        self.backoff(&outcome).await;
    }

    async fn read(&mut self, case_id: &str) {
        let recorder = self.shared.recorder.clone();
        let outcome = read(&mut self.connections, &recorder, self.process, case_id).await;
        self.record(&outcome, false);
        self.backoff(&outcome).await;
    }
}

async fn client_loop(shared: Arc<Shared>, process: ProcessId) {
    let config = shared.config.clone();
    let mut client = Client {
        process,
        rng: StdRng::seed_from_u64(config.seed.wrapping_add(process as u64)),
        connections: Connections::new(
            shared.addrs.clone(),
            &config.office,
            process,
            config.connect_timeout,
            config.request_timeout,
        ),
        shared,
        filed: 0,
        acted: 0,
    };
    let total = config.file_weight + config.refile_weight + config.act_weight + config.read_weight;
    while !client.stopping() {
        shared_progress_invoked(&client);
        let roll = client.rng.gen_range(0..total.max(1));
        let hot = client.hot_case();
        match hot {
            None => client.file().await,
            Some(_) if roll < config.file_weight => client.file().await,
            Some(_) if roll < config.file_weight + config.refile_weight => client.refile().await,
            Some(case_id) if roll < total - config.read_weight => client.act(&case_id).await,
            Some(case_id) => client.read(&case_id).await,
        }
    }
}

fn shared_progress_invoked(client: &Client) {
    client
        .shared
        .progress
        .invoked
        .fetch_add(1, Ordering::Relaxed);
}

/// Reads every case in `case_ids` linearizably, concurrently (`parallel` readers), recording each
/// read in `recorder` as processes `first_process..`. Used after healing: the final state of every
/// case joins the linearizability check, so a lost write shows up there too.
pub async fn final_reads(
    addrs: &[String],
    office: &str,
    recorder: &Recorder,
    first_process: ProcessId,
    case_ids: &[String],
    parallel: usize,
    timeout: Duration,
) -> Vec<Outcome> {
    let parallel = parallel.max(1);
    let chunks: Vec<Vec<(usize, String)>> = (0..parallel)
        .map(|k| {
            case_ids
                .iter()
                .enumerate()
                .filter(|(i, _)| i % parallel == k)
                .map(|(i, id)| (i, id.clone()))
                .collect()
        })
        .collect();
    let tasks = chunks.into_iter().enumerate().map(|(k, chunk)| {
        let addrs = addrs.to_vec();
        let recorder = recorder.clone();
        async move {
            let mut connections =
                Connections::new(addrs, office, k, Duration::from_millis(500), timeout);
            let mut out = Vec::new();
            for (i, case_id) in chunk {
                // A read that gets no answer tells nothing: try again (a new operation).
                let mut outcome = Outcome::Unknown("not tried".to_string());
                for _ in 0..10 {
                    outcome = read(&mut connections, &recorder, first_process + k, &case_id).await;
                    if outcome.is_ok() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                out.push((i, outcome));
            }
            out
        }
    });
    let mut all: Vec<(usize, Outcome)> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .flatten()
        .collect();
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, outcome)| outcome).collect()
}
