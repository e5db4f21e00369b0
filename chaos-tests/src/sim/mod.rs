//! Deterministic simulation of offices and the federation protocol.
//!
//! One seed drives everything: the officers' workload, the network (latency, loss,
//! duplication, reordering), the faults (replica and host crashes, leader loss, quorum loss,
//! two-way and one-way partitions, clock skew, snapshot installs) and the order in which
//! replicas apply. There is no thread, no socket and no wall clock: a single loop pops events
//! from a queue ordered by (simulated time, sequence number), so a seed replays exactly
//! (`cargo run -p chaos-tests --bin simulate -- --seed N`).
//!
//! What runs is the node's own code: every replica is a real [`StateMachineStore`] over a real
//! RocksDB (one per simulated host, as in production), applying `Request`s through the node's
//! state machine (`machine`: the case engine and the federation's outbox / inbox / ack logic).
//! The federation link protocol is the node's too: the simulation drives each link with
//! `federation::link` — the sender's [`LinkSender`] (batch selection, reply interpretation,
//! backoff), the receiver's [`check_batch`] and its answers — exactly as the production pump and
//! Deliver handler call them, with simulated time and the seed's random source. The simulator
//! plays only what lies between: Raft's commit (see [`office`]) and the network (latency, loss,
//! duplication, reordering, partitions).
//!
//! A run has a chaos phase (workload and faults), then a healing phase (every fault removed,
//! every replica up, no new work) that must reach quiescence: every outbox drained. Then every
//! replica catches up and the invariants are checked: `liandong verify`'s four (single owner,
//! exactly once, index convergence, integrity, over every replica's dump, the same code as on
//! a live federation) plus durability of acknowledged writes, no duplicate registration,
//! quiescence and replica agreement.

mod office;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

use liandong_domain::{
    Calendar, Case, CaseCommand, CaseId, DeclineRoute, Grade, Millis, OfficeCode, Opinion,
    Registration, Satisfaction, Status,
};
use liandong_node::api::admin::dump;
use liandong_node::federation::link::{
    self, select_batch, Batch, Decision, Delivered, Inbound, LinkSender, NotReceived, Ready,
    DELIVER_BATCH_ITEMS_MAX, DELIVER_TIMEOUT_MS,
};
use liandong_node::machine::{keys, LinkIn, LinkOut, StateMachineStore};
use liandong_node::manifest::Manifest;
use liandong_node::raft::types::{Operation, Received, Response};
use liandong_node::store::HostDb;
use liandong_ops::topology::{build_manifest, InitOptions, Topology};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use office::{Fatal, Office, Unavailable, REPLICAS};

/// Federation milliseconds per simulated millisecond: a minute of simulation is five days of
/// statutory clocks, so warnings and overdue marks fire.
const TIME_SCALE: Millis = 7_200;
/// How often leaders look for due alarms (simulated ms).
const TICK_EVERY_MS: u64 = 1_000;
/// A client tries an operation this many times (same request id) before giving up.
const CLIENT_ATTEMPTS: u32 = 3;
/// A restarted replica further behind than this installs the leader's snapshot.
const SNAPSHOT_AFTER: u64 = 12;
/// The healing phase must reach quiescence within this (simulated ms).
const HEAL_LIMIT_MS: u64 = 600_000;
/// Cases the workload remembers (bounded; older ones are forgotten, not checked less).
const BELIEFS_MAX: usize = 4_096;

/// What one run simulates.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    /// Root division of the simulated federation (`5306` Zhaotong, `53` Yunnan).
    pub region: String,
    /// Keep the first N children of every office (`None`: the whole region).
    pub max_children: Option<usize>,
    /// Officer operations in the chaos phase.
    pub operations: u64,
    /// Length of the chaos phase in simulated seconds.
    pub chaos_seconds: u64,
    /// Inject faults (off: a calm run).
    pub faults: bool,
}

impl SimConfig {
    /// The small federation hundreds of seeds run on: Zhaotong cut to two children per office
    /// (a city, two counties, four townships).
    pub fn small(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            region: "5306".into(),
            max_children: Some(2),
            operations: 300,
            chaos_seconds: 40,
            faults: true,
        }
    }

    /// The whole of a region (`5306`: 162 offices; `53`: 1,607).
    pub fn large(seed: u64, region: &str, operations: u64) -> SimConfig {
        SimConfig {
            seed,
            region: region.into(),
            max_children: None,
            operations,
            chaos_seconds: 60,
            faults: true,
        }
    }

    /// The one command that replays this run.
    pub fn replay_command(&self) -> String {
        let mut command = format!(
            "cargo run -p chaos-tests --bin simulate -- --seed {} --region {} --operations {} --chaos-seconds {}",
            self.seed, self.region, self.operations, self.chaos_seconds
        );
        if let Some(n) = self.max_children {
            command.push_str(&format!(" --max-children {n}"));
        }
        if !self.faults {
            command.push_str(" --no-faults");
        }
        command
    }
}

/// What a run did and found.
#[derive(Debug, Clone)]
pub struct SimReport {
    pub ok: bool,
    /// SHA-256 over every replica's applied index and state hash: equal for equal seeds.
    pub fingerprint: String,
    pub json: Value,
}

/// Counters a report prints.
#[derive(Debug, Default, Clone, serde::Serialize)]
struct Counters {
    events: u64,
    ops_attempted: u64,
    ops_acknowledged: u64,
    ops_refused: u64,
    ops_failed: u64,
    ambiguous_replies: u64,
    entries_committed: u64,
    messages_sent: u64,
    messages_dropped: u64,
    messages_duplicated: u64,
    batches_delivered: u64,
    /// Batches wholly applied before (a lost reply, a duplicate): answered from the watermark.
    batches_replayed: u64,
    acks_committed: u64,
    replica_crashes: u64,
    leader_crashes: u64,
    host_crashes: u64,
    quorum_losses: u64,
    partitions: u64,
    one_way_cuts: u64,
    clock_skews: u64,
    snapshots_installed: u64,
    elections: u64,
    ticks: u64,
}

#[derive(Debug, Clone)]
enum Event {
    Client(u64),
    TickAll,
    Pump(usize),
    /// A Deliver batch reaches the receiver.
    Arrive {
        call: Call,
        batch: Batch,
    },
    /// Its answer reaches the sender.
    Reply {
        call: Call,
        result: Result<Delivered, String>,
    },
    /// The call's deadline: unless its answer came, it failed.
    Timeout(Call),
    CatchUp(usize),
    Elect(usize),
    Restart(usize, usize),
    HostRestart(usize),
    Fault,
    Unpartition(usize),
    UncutOneWay(usize, usize),
    Unskew(usize),
    EndChaos,
    Quiet,
}

/// One Deliver call: on the link `from` -> `to`, by the sender's leader of `epoch`, the sender's
/// `attempt` on that link.
#[derive(Debug, Clone, Copy)]
struct Call {
    from: usize,
    to: usize,
    epoch: u64,
    attempt: u64,
}

/// An officer operation and what became of it.
#[derive(Debug, Clone)]
struct ClientOp {
    office: usize,
    op: Operation,
    attempts: u32,
}

/// What the workload believes about a case.
#[derive(Debug, Clone)]
struct Belief {
    holder: usize,
    status: Status,
}

struct Sim {
    config: SimConfig,
    rng: StdRng,
    manifest: Manifest,
    offices: Vec<Office>,
    index_of: BTreeMap<String, usize>,
    parent: Vec<Option<usize>>,
    children: Vec<Vec<usize>>,
    now: u64,
    origin: Millis,
    seq: u64,
    queue: BTreeMap<(u64, u64), Event>,
    /// Each link's sender, as the production pump keeps it: volatile, lost with the leader.
    pumps: BTreeMap<(usize, usize), LinkSender>,
    pump_at: Vec<Option<u64>>,
    catch_up_at: Vec<Option<u64>>,
    ops: BTreeMap<u64, ClientOp>,
    beliefs: BTreeMap<CaseId, Belief>,
    /// Every registration applied, by request id: the cases its attempts' replies named (one,
    /// however often it was retried, when deduplication works).
    filed: BTreeMap<String, BTreeSet<CaseId>>,
    /// Acknowledged registrations: request id -> case id.
    acked_files: BTreeMap<String, CaseId>,
    /// Acknowledged commands: (case, office) -> history length the reply showed.
    acked_versions: BTreeMap<(CaseId, usize), usize>,
    partitioned: BTreeSet<usize>,
    one_way: BTreeSet<(usize, usize)>,
    hosts_down: BTreeSet<usize>,
    drop_p: f64,
    dup_p: f64,
    lost_reply_p: f64,
    delay_max_ms: u64,
    /// The network's settings in the chaos phase, for the report.
    network: Value,
    chaos: bool,
    quiet_at: Option<u64>,
    counters: Counters,
    _dir: tempfile::TempDir,
}

fn topology() -> &'static Topology {
    static TOPOLOGY: OnceLock<Topology> = OnceLock::new();
    TOPOLOGY.get_or_init(Topology::load)
}

fn calendar() -> Arc<Calendar> {
    static CALENDAR: OnceLock<Arc<Calendar>> = OnceLock::new();
    CALENDAR.get_or_init(|| Arc::new(Calendar::china())).clone()
}

/// Runs one seed to the end and checks it. `Err` only for a simulation that could not start.
pub fn run(config: &SimConfig) -> anyhow::Result<SimReport> {
    let mut sim = Sim::new(config.clone())?;
    let outcome = sim.run();
    Ok(sim.report(outcome))
}

impl Sim {
    fn new(config: SimConfig) -> anyhow::Result<Sim> {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let options = InitOptions {
            region: config.region.clone(),
            max_children: config.max_children,
            replicas: REPLICAS as u8,
            time_scale: TIME_SCALE as f64,
            base_port: 20_000,
            secret_hex: "5a".repeat(32),
        };
        let manifest = build_manifest(topology(), &options)?;
        let secret = hex::decode(&manifest.secret_hex)?;
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            tempfile::Builder::new()
                .prefix("liandong-sim-")
                .tempdir_in("/dev/shm")?
        } else {
            tempfile::tempdir()?
        };
        let hosts: Vec<HostDb> = (0..REPLICAS)
            .map(|r| HostDb::open(&base.path().join(format!("host-{r}"))))
            .collect::<Result<_, _>>()?;
        let index_of: BTreeMap<String, usize> = manifest
            .offices
            .iter()
            .enumerate()
            .map(|(i, o)| (o.code.clone(), i))
            .collect();
        let mut offices = Vec::new();
        let mut parent = Vec::new();
        let mut children = vec![Vec::new(); manifest.offices.len()];
        for (i, entry) in manifest.offices.iter().enumerate() {
            let code: OfficeCode = entry.code.parse()?;
            let parent_code: Option<OfficeCode> =
                entry.parent.as_deref().map(str::parse).transpose()?;
            let machines = hosts
                .iter()
                .map(|db| {
                    StateMachineStore::new(
                        db.clone(),
                        code.clone(),
                        parent_code.clone(),
                        secret.clone(),
                        calendar(),
                    )
                    .map_err(|e| anyhow::anyhow!("office {code}: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            offices.push(Office::new(code, machines));
            let p = entry.parent.as_ref().and_then(|p| index_of.get(p).copied());
            if let Some(p) = p {
                children[p].push(i);
            }
            parent.push(p);
        }
        // 2024-01-02 plus up to ~600 days, 08:00 Beijing time.
        let origin = 1_704_153_600_000 + rng.gen_range(0..600i64) * 86_400_000;
        let n = offices.len();
        let (drop_p, dup_p, lost_reply_p, delay_max_ms) = if config.faults {
            (
                rng.gen_range(0.0..0.2),
                rng.gen_range(0.0..0.1),
                rng.gen_range(0.0..0.08),
                *[20u64, 80, 400].get(rng.gen_range(0..3)).unwrap_or(&20),
            )
        } else {
            (0.0, 0.0, 0.0, 20)
        };
        let mut sim = Sim {
            config,
            rng,
            manifest,
            offices,
            index_of,
            parent,
            children,
            now: 0,
            origin,
            seq: 0,
            queue: BTreeMap::new(),
            pumps: BTreeMap::new(),
            pump_at: vec![None; n],
            catch_up_at: vec![None; n],
            ops: BTreeMap::new(),
            beliefs: BTreeMap::new(),
            filed: BTreeMap::new(),
            acked_files: BTreeMap::new(),
            acked_versions: BTreeMap::new(),
            partitioned: BTreeSet::new(),
            one_way: BTreeSet::new(),
            hosts_down: BTreeSet::new(),
            drop_p,
            dup_p,
            lost_reply_p,
            delay_max_ms,
            network: json!({"drop": drop_p, "duplicate": dup_p, "lost_reply": lost_reply_p, "delay_max_ms": delay_max_ms}),
            chaos: true,
            quiet_at: None,
            counters: Counters::default(),
            _dir: base,
        };
        sim.schedule_workload();
        sim.at(TICK_EVERY_MS, Event::TickAll);
        if sim.config.faults {
            let first = sim.rng.gen_range(200..2_000);
            sim.at(first, Event::Fault);
        }
        sim.at(sim.config.chaos_seconds * 1_000, Event::EndChaos);
        Ok(sim)
    }

    fn at(&mut self, delay: u64, event: Event) {
        self.seq += 1;
        self.queue.insert((self.now + delay, self.seq), event);
    }

    /// Federation time at the office (its leader's clock skew is added when stamping).
    fn fed_now(&self) -> Millis {
        self.origin.saturating_add(
            i64::try_from(self.now)
                .unwrap_or(i64::MAX)
                .saturating_mul(TIME_SCALE),
        )
    }

    fn delay(&mut self) -> u64 {
        self.rng.gen_range(1..=self.delay_max_ms)
    }

    fn schedule_workload(&mut self) {
        let span = self.config.chaos_seconds * 1_000;
        let count = self.config.operations;
        let mut times: Vec<u64> = (0..count).map(|_| self.rng.gen_range(0..span)).collect();
        times.sort_unstable();
        for (n, t) in times.into_iter().enumerate() {
            self.seq += 1;
            self.queue.insert((t, self.seq), Event::Client(n as u64));
        }
    }

    fn run(&mut self) -> Result<(), Fatal> {
        while let Some(((time, _), event)) = self.queue.pop_first() {
            self.now = time;
            self.counters.events += 1;
            if let Event::Quiet = event {
                return Ok(());
            }
            self.handle(event)?;
        }
        Err("the event queue ran dry before quiescence".into())
    }

    fn handle(&mut self, event: Event) -> Result<(), Fatal> {
        match event {
            Event::Client(n) => self.client(n),
            Event::TickAll => self.tick_all(),
            Event::Pump(office) => self.pump(office),
            Event::Arrive { call, batch } => self.arrive(call, batch),
            Event::Reply { call, result } => self.reply(call, result),
            Event::Timeout(call) => {
                let timed_out = Err(format!("no answer within {DELIVER_TIMEOUT_MS} ms"));
                self.reply(call, timed_out)
            }
            Event::CatchUp(office) => {
                self.catch_up_at[office] = None;
                let all = !self.chaos;
                self.offices[office].catch_up_followers(&mut self.rng, all)
            }
            Event::Elect(office) => {
                if self.offices[office].elect(&mut self.rng)? {
                    self.counters.elections += 1;
                    self.pumps.retain(|&(from, _), _| from != office);
                    self.schedule_pump(office, 1);
                } else {
                    self.schedule_election(office);
                }
                Ok(())
            }
            Event::Restart(office, r) => self.restart(office, r),
            Event::HostRestart(host) => {
                self.hosts_down.remove(&host);
                for office in 0..self.offices.len() {
                    self.restart(office, host)?;
                }
                Ok(())
            }
            Event::Fault => {
                if self.chaos {
                    self.fault()?;
                    let next = self.rng.gen_range(300..3_000);
                    self.at(next, Event::Fault);
                }
                Ok(())
            }
            Event::Unpartition(office) => {
                self.partitioned.remove(&office);
                Ok(())
            }
            Event::UncutOneWay(a, b) => {
                self.one_way.remove(&(a, b));
                Ok(())
            }
            Event::Unskew(office) => {
                self.offices[office].skew_ms = 0;
                Ok(())
            }
            Event::EndChaos => self.heal(),
            Event::Quiet => Ok(()),
        }
    }

    // ---- the workload ------------------------------------------------------------------

    fn client(&mut self, n: u64) -> Result<(), Fatal> {
        if !self.ops.contains_key(&n) {
            if !self.chaos {
                return Ok(());
            }
            let Some(op) = self.next_op(n) else {
                return Ok(());
            };
            self.ops.insert(n, op);
        }
        let Some(mut op) = self.ops.get(&n).cloned() else {
            return Ok(());
        };
        op.attempts += 1;
        self.counters.ops_attempted += u64::from(op.attempts == 1);
        let now = self.fed_now();
        let result = self.offices[op.office].propose(now, op.op.clone())?;
        self.ops.insert(n, op.clone());
        match result {
            Ok(response) => {
                self.counters.entries_committed += 1;
                self.after_commit(op.office);
                self.record_filing(&op.op, &response);
                // The leader may crash between commit and reply: the client must retry with
                // the same request id and must not get a second case.
                if self.rng.gen_bool(self.lost_reply_p) && op.attempts < CLIENT_ATTEMPTS {
                    self.counters.ambiguous_replies += 1;
                    let retry = self.rng.gen_range(50..1_000);
                    self.at(retry, Event::Client(n));
                    return Ok(());
                }
                self.ops.remove(&n);
                self.observe(&op, &response);
            }
            Err(_) if op.attempts < CLIENT_ATTEMPTS => {
                let retry = self.rng.gen_range(100..1_500);
                self.at(retry, Event::Client(n));
            }
            Err(_) => {
                self.ops.remove(&n);
                self.counters.ops_failed += 1;
            }
        }
        Ok(())
    }

    /// Which case an applied registration's reply named, whether or not the client sees it.
    fn record_filing(&mut self, op: &Operation, response: &Response) {
        if let (
            Operation::File {
                request_id: Some(request_id),
                ..
            },
            Response::Case { document },
        ) = (op, response)
        {
            if let Ok(case) = Case::from_bytes(document) {
                self.filed
                    .entry(request_id.clone())
                    .or_default()
                    .insert(case.id);
            }
        }
    }

    fn observe(&mut self, op: &ClientOp, response: &Response) {
        match response {
            Response::Case { document } => {
                self.counters.ops_acknowledged += 1;
                let Ok(case) = Case::from_bytes(document) else {
                    return;
                };
                if let Operation::File {
                    request_id: Some(request_id),
                    ..
                } = &op.op
                {
                    self.acked_files.insert(request_id.clone(), case.id.clone());
                }
                let key = (case.id.clone(), op.office);
                let seen = self.acked_versions.entry(key).or_insert(0);
                *seen = (*seen).max(case.history_len() as usize);
                self.believe(&case);
            }
            Response::Order { .. } => self.counters.ops_acknowledged += 1,
            Response::Rejected { .. } => self.counters.ops_refused += 1,
            _ => {}
        }
    }

    fn believe(&mut self, case: &Case) {
        let holder = match &case.status {
            Status::Forwarded { to } | Status::InTransit { to, .. } => {
                self.index_of.get(to.as_str()).copied()
            }
            _ => self.index_of.get(case.office.as_str()).copied(),
        };
        let Some(holder) = holder else {
            return;
        };
        if self.beliefs.len() >= BELIEFS_MAX && !self.beliefs.contains_key(&case.id) {
            return;
        }
        self.beliefs.insert(
            case.id.clone(),
            Belief {
                holder,
                status: case.status.clone(),
            },
        );
    }

    /// Learns the cases an office holds that the workload never saw (review cases, received
    /// handoffs): what an officer finds in the office's list.
    fn discover(&mut self, office: usize) {
        let Some(machine) = self.offices[office].leader_machine() else {
            return;
        };
        let Ok(cases) = machine.scan_prefix(keys::CASE, 64) else {
            return;
        };
        let found: Vec<Case> = cases
            .iter()
            .filter_map(|(_, value)| Case::from_bytes(value).ok())
            .collect();
        for case in found {
            self.believe(&case);
        }
    }

    fn next_op(&mut self, n: u64) -> Option<ClientOp> {
        let roll = self.rng.gen_range(0..100);
        if roll < 30 || self.beliefs.is_empty() {
            let office = self.rng.gen_range(0..self.offices.len());
            // A small pool of petitioners: the same person petitions several offices.
            let pool = (self.config.operations / 4).max(4);
            let person = self.rng.gen_range(0..pool);
            let request_id = format!("sim-{}-{n}", self.config.seed);
            let registration = Registration::try_from(liandong_ops::sample::registration(person))
                .unwrap_or_else(|_| unreachable_registration());
            return Some(ClientOp {
                office,
                op: Operation::File {
                    registration,
                    request_id: Some(request_id),
                    caller: String::new(),
                },
                attempts: 0,
            });
        }
        if roll < 36 {
            let office = self.rng.gen_range(0..self.offices.len());
            self.discover(office);
            return None;
        }
        let pick = self.rng.gen_range(0..self.beliefs.len());
        let (case_id, belief) = self
            .beliefs
            .iter()
            .nth(pick)
            .map(|(id, b)| (id.clone(), b.clone()))?;
        if roll < 44 {
            // 督办 from an ancestor of the holder.
            let mut ancestors = Vec::new();
            let mut at = self.parent[belief.holder];
            while let Some(a) = at {
                ancestors.push(a);
                at = self.parent[a];
            }
            if ancestors.is_empty() {
                return None;
            }
            let from = ancestors[self.rng.gen_range(0..ancestors.len())];
            return Some(ClientOp {
                office: from,
                op: Operation::Supervise {
                    case_id,
                    to: self.offices[belief.holder].code.clone(),
                    due_days: self.rng.gen_range(1..=10),
                    text: "Report progress.".into(),
                },
                attempts: 0,
            });
        }
        let command = self.command_for(&belief)?;
        Some(ClientOp {
            office: belief.holder,
            op: Operation::Act {
                case_id,
                command,
                request_id: Some(format!("sim-{}-{n}", self.config.seed)),
                caller: String::new(),
            },
            attempts: 0,
        })
    }

    /// A command an officer would plausibly give a case in this status (some are refused by
    /// the statute anyway, which is part of the test).
    fn command_for(&mut self, belief: &Belief) -> Option<CaseCommand> {
        let officer = || "officer-sim".to_string();
        let roll = self.rng.gen_range(0..100);
        let other = self.rng.gen_range(0..self.offices.len());
        let child = {
            let kids = &self.children[belief.holder];
            (!kids.is_empty()).then(|| kids[self.rng.gen_range(0..kids.len())])
        };
        let code = |i: usize| self.offices[i].code.clone();
        Some(match &belief.status {
            Status::Registered => match roll {
                0..=39 => CaseCommand::Accept { officer: officer() },
                40..=54 => CaseCommand::Transfer {
                    to: code(other),
                    officer: officer(),
                },
                55..=69 => CaseCommand::Assign {
                    to: code(child.unwrap_or(other)),
                    due_days: self.rng.gen_range(1..=30),
                    officer: officer(),
                },
                70..=79 => CaseCommand::Return {
                    reason: "Not ours.".into(),
                    officer: officer(),
                },
                80..=84 => CaseCommand::Decline {
                    route: DeclineRoute::Litigation,
                    officer: officer(),
                },
                _ => CaseCommand::SetGrade {
                    grade: Grade::A,
                    leader: "County head".into(),
                    department: "Land office".into(),
                    plan: "Visit and settle.".into(),
                    deadline: self.fed_now() + 20 * 86_400_000,
                },
            },
            Status::Accepted => match roll {
                0..=49 => CaseCommand::Reply {
                    opinion: Opinion::Support,
                    text: "Settled as asked.".into(),
                    officer: officer(),
                },
                50..=59 => CaseCommand::Extend {
                    days: self.rng.gen_range(1..=30),
                    reason: "Field survey.".into(),
                    officer: officer(),
                },
                60..=69 => CaseCommand::Transfer {
                    to: code(other),
                    officer: officer(),
                },
                70..=79 => CaseCommand::Assign {
                    to: code(child.unwrap_or(other)),
                    due_days: self.rng.gen_range(1..=30),
                    officer: officer(),
                },
                _ => CaseCommand::AnswerSupervision {
                    text: "In hand.".into(),
                    officer: officer(),
                },
            },
            Status::Replied => match roll {
                0..=49 => CaseCommand::Evaluate {
                    satisfaction: Satisfaction::Dissatisfied,
                },
                _ => CaseCommand::RequestReview,
            },
            Status::Evaluated => CaseCommand::RequestReview,
            _ => return None,
        })
    }

    // ---- Raft-level bookkeeping ----------------------------------------------------------

    fn after_commit(&mut self, office: usize) {
        self.schedule_pump(office, 1);
        if self.catch_up_at[office].is_none() {
            let delay = self.rng.gen_range(1..200);
            self.catch_up_at[office] = Some(self.now + delay);
            self.at(delay, Event::CatchUp(office));
        }
    }

    fn schedule_election(&mut self, office: usize) {
        if self.offices[office].election_pending {
            return;
        }
        self.offices[office].election_pending = true;
        let delay = self.rng.gen_range(150..600);
        self.at(delay, Event::Elect(office));
    }

    fn restart(&mut self, office: usize, r: usize) -> Result<(), Fatal> {
        if self.offices[office].replicas[r].up || (self.hosts_down.contains(&r) && self.chaos) {
            return Ok(());
        }
        if self.offices[office].restart(r, SNAPSHOT_AFTER)? {
            self.counters.snapshots_installed += 1;
        }
        if self.offices[office].leader.is_none() {
            self.schedule_election(office);
        }
        self.after_commit(office);
        Ok(())
    }

    fn tick_all(&mut self) -> Result<(), Fatal> {
        let now = self.fed_now();
        for office in 0..self.offices.len() {
            let due = self.offices[office]
                .leader_machine()
                .is_some_and(|machine| {
                    machine
                        .tick_due(now + self.offices[office].skew_ms)
                        .unwrap_or(false)
                });
            if due {
                if let Ok(Response::Ticked { .. }) =
                    self.offices[office].propose(now, Operation::Tick)?
                {
                    self.counters.ticks += 1;
                    self.counters.entries_committed += 1;
                    self.after_commit(office);
                }
            }
        }
        if self.chaos {
            self.at(TICK_EVERY_MS, Event::TickAll);
        }
        Ok(())
    }

    // ---- the federation: pump and Deliver -------------------------------------------------

    fn schedule_pump(&mut self, office: usize, delay: u64) {
        let when = self.now + delay;
        if self.pump_at[office].is_some_and(|at| at <= when && at >= self.now) {
            return;
        }
        self.pump_at[office] = Some(when);
        self.at(delay, Event::Pump(office));
    }

    fn cut(&self, from: usize, to: usize) -> bool {
        self.partitioned.contains(&from)
            || self.partitioned.contains(&to)
            || self.one_way.contains(&(from, to))
    }

    /// The link senders of an office's leader: every link with unacknowledged messages that is
    /// ready sends its next batch (one in flight per link, as each production link worker).
    fn pump(&mut self, office: usize) -> Result<(), Fatal> {
        if self.pump_at[office] == Some(self.now) {
            self.pump_at[office] = None;
        }
        let Some(machine) = self.offices[office].leader_machine().cloned() else {
            return Ok(());
        };
        let epoch = self.offices[office].epoch;
        let mut wake: Option<u64> = None;
        for (to_code, link) in machine.links_out().map_err(|e| e.to_string())? {
            if link.pending() == 0 {
                continue;
            }
            let Some(to) = self.index_of.get(to_code.as_str()).copied() else {
                return Err(format!(
                    "{}: link to an unknown office {to_code}",
                    self.offices[office].code
                ));
            };
            let sender = self
                .pumps
                .entry((office, to))
                .or_insert_with(|| LinkSender::new(to_code.clone()));
            match sender.ready(self.now) {
                Ready::Now => {}
                Ready::InFlight => continue,
                Ready::At(at) => {
                    wake = Some(wake.map_or(at, |w| w.min(at)));
                    continue;
                }
            }
            let (link, waiting) = machine.outbox_head(&to_code, DELIVER_BATCH_ITEMS_MAX)?;
            let batch = select_batch(&link, waiting)
                .map_err(|e| format!("{}: {e}", self.offices[office].code))?
                .ok_or_else(|| {
                    format!(
                        "{} -> {to_code}: nothing to send",
                        self.offices[office].code
                    )
                })?;
            let call = Call {
                from: office,
                to,
                epoch,
                attempt: sender.sent(),
            };
            self.send(call, batch);
        }
        if let Some(at) = wake {
            self.schedule_pump(office, at - self.now);
        }
        Ok(())
    }

    /// The network carries a batch: its timeout is set; it may be lost, duplicated, delayed.
    fn send(&mut self, call: Call, batch: Batch) {
        let items = batch.envelopes.len() as u64;
        self.counters.messages_sent += items;
        self.at(DELIVER_TIMEOUT_MS, Event::Timeout(call));
        if self.cut(call.from, call.to) || self.rng.gen_bool(self.drop_p) {
            self.counters.messages_dropped += items;
            return;
        }
        let copies = if self.rng.gen_bool(self.dup_p) { 2 } else { 1 };
        self.counters.messages_duplicated += (copies - 1) * items;
        for _ in 0..copies {
            let delay = self.delay();
            let batch = batch.clone();
            self.at(delay, Event::Arrive { call, batch });
        }
    }

    /// A batch reaches the receiver, which answers (unless the way back is cut or lossy).
    fn arrive(&mut self, call: Call, batch: Batch) -> Result<(), Fatal> {
        let Call { from, to, .. } = call;
        let result = if self.cut(from, to) {
            Err(format!(
                "link {} -> {} is cut",
                self.offices[from].code, self.offices[to].code
            ))
        } else {
            self.deliver(from, to, batch)?
        };
        if self.cut(to, from) || self.rng.gen_bool(self.drop_p) {
            return Ok(());
        }
        let delay = self.delay();
        self.at(delay, Event::Reply { call, result });
        Ok(())
    }

    /// The receiver's side of Deliver: the link protocol's own [`link::receive`], as the
    /// Deliver handler runs it, over the simulated office. The protocol never refuses a batch its
    /// own sender made: a refusal here fails the run.
    fn deliver(
        &mut self,
        from: usize,
        to: usize,
        batch: Batch,
    ) -> Result<Result<Delivered, String>, Fatal> {
        let to_code = self.offices[to].code.clone();
        let Some(machine) = self.offices[to].leader_machine().cloned() else {
            return Ok(Err(format!("{to_code} is unavailable")));
        };
        let inbound = Inbound::of(
            self.offices[from].code.clone(),
            to_code.clone(),
            batch.envelopes,
            batch.bytes,
        );
        let sender_known = self.index_of.contains_key(inbound.from.as_str());
        let mut office = Receiver {
            sim: self,
            office: to,
            machine,
            proposed: false,
        };
        let received = at_once(link::receive(&mut office, inbound, sender_known))?;
        if !office.proposed {
            self.counters.batches_replayed += 1;
        }
        match received {
            Ok(delivered) => Ok(Ok(delivered)),
            Err(NotReceived::Office(Ok(unavailable))) => {
                Ok(Err(format!("{to_code}: {unavailable:?}")))
            }
            Err(NotReceived::Office(Err(fatal))) => Err(fatal),
            Err(NotReceived::Refused(refuse)) => Err(format!(
                "{to_code} refused a batch of its own federation: {refuse}"
            )),
            Err(NotReceived::Broken(error)) => Err(format!("{to_code}: {error}")),
        }
    }

    /// The sender's side of a reply (or of a timeout): the link protocol decides; an ack is
    /// committed through the sender's log.
    fn reply(&mut self, call: Call, result: Result<Delivered, String>) -> Result<(), Fatal> {
        let Call {
            from,
            to,
            epoch,
            attempt,
        } = call;
        if self.offices[from].epoch != epoch {
            return Ok(());
        }
        let Some(mut sender) = self.pumps.remove(&(from, to)) else {
            return Ok(());
        };
        let outcome = self.answered(from, &mut sender, attempt, result);
        self.pumps.insert((from, to), sender);
        let decision = outcome?;
        if let Decision::Retry { at_ms, .. } = decision {
            self.schedule_pump(from, at_ms.saturating_sub(self.now));
        }
        Ok(())
    }

    fn answered(
        &mut self,
        from: usize,
        sender: &mut LinkSender,
        attempt: u64,
        result: Result<Delivered, String>,
    ) -> Result<Decision, Fatal> {
        let now = self.now;
        let link: LinkOut = match self.offices[from].leader_machine() {
            Some(machine) => machine.link_out(sender.to())?,
            None => Default::default(),
        };
        let acked = match sender.on_reply(attempt, result, &link, now, &mut self.rng) {
            Decision::Commit(acked) => *acked,
            other => return Ok(other),
        };
        let fed_now = self.fed_now();
        let committed = match self.offices[from].propose(fed_now, acked)? {
            Ok(_) => {
                self.counters.entries_committed += 1;
                self.counters.acks_committed += 1;
                self.after_commit(from);
                Ok(())
            }
            Err(unavailable) => Err(format!("the ack was not committed: {unavailable:?}")),
        };
        Ok(sender.committed(committed, now, &mut self.rng))
    }

    // ---- faults ----------------------------------------------------------------------------

    fn fault(&mut self) -> Result<(), Fatal> {
        let n = self.offices.len();
        let office = self.rng.gen_range(0..n);
        match self.rng.gen_range(0..100) {
            // The leader's replica crashes.
            0..=24 => {
                if let Some(leader) = self.offices[office].leader {
                    self.crash(office, leader);
                    self.counters.leader_crashes += 1;
                }
            }
            // A follower crashes.
            25..=39 => {
                let r = self.rng.gen_range(0..REPLICAS);
                if self.offices[office].leader != Some(r) {
                    self.crash(office, r);
                }
            }
            // A whole host (one replica of every office) goes down.
            40..=49 => {
                let host = self.rng.gen_range(0..REPLICAS);
                if self.hosts_down.insert(host) {
                    self.counters.host_crashes += 1;
                    for o in 0..n {
                        self.crash(o, host);
                    }
                    let back = self.rng.gen_range(500..5_000);
                    self.at(back, Event::HostRestart(host));
                }
            }
            // Two replicas down: the office loses its quorum for a while.
            50..=54 => {
                self.counters.quorum_losses += 1;
                let spare = self.rng.gen_range(0..REPLICAS);
                for r in (0..REPLICAS).filter(|&r| r != spare) {
                    self.crash(office, r);
                }
            }
            // Two-way partition of one office from every other.
            55..=69 => {
                if self.partitioned.insert(office) {
                    self.counters.partitions += 1;
                    let heal = self.rng.gen_range(500..8_000);
                    self.at(heal, Event::Unpartition(office));
                }
            }
            // One-way cut between an office and a relative.
            70..=84 => {
                let other = if self.rng.gen_bool(0.5) {
                    self.parent[office]
                } else {
                    let kids = &self.children[office];
                    (!kids.is_empty()).then(|| kids[self.rng.gen_range(0..kids.len())])
                };
                if let Some(other) = other {
                    if self.one_way.insert((office, other)) {
                        self.counters.one_way_cuts += 1;
                        let heal = self.rng.gen_range(500..8_000);
                        self.at(heal, Event::UncutOneWay(office, other));
                    }
                }
            }
            // The leader's clock jumps up to two hours either way.
            _ => {
                self.counters.clock_skews += 1;
                self.offices[office].skew_ms = self.rng.gen_range(-7_200_000..7_200_000);
                let back = self.rng.gen_range(1_000..10_000);
                self.at(back, Event::Unskew(office));
            }
        }
        Ok(())
    }

    fn crash(&mut self, office: usize, r: usize) {
        if !self.offices[office].replicas[r].up {
            return;
        }
        self.counters.replica_crashes += 1;
        self.offices[office].crash(r);
        if self.offices[office].leader.is_none() {
            self.pumps.retain(|&(from, _), _| from != office);
            self.schedule_election(office);
        }
        if !self.hosts_down.contains(&r) {
            let back = self.rng.gen_range(200..4_000);
            self.at(back, Event::Restart(office, r));
        }
    }

    /// Ends the chaos phase: every fault removed, every replica restarted, no new work.
    fn heal(&mut self) -> Result<(), Fatal> {
        self.chaos = false;
        self.partitioned.clear();
        self.one_way.clear();
        self.drop_p = 0.0;
        self.dup_p = 0.0;
        self.hosts_down.clear();
        for office in 0..self.offices.len() {
            self.offices[office].skew_ms = 0;
            for r in 0..REPLICAS {
                if !self.offices[office].replicas[r].up {
                    self.restart(office, r)?;
                }
            }
            if self.offices[office].leader.is_none() {
                self.schedule_election(office);
            }
            self.schedule_pump(office, 1);
        }
        self.quiet_at = Some(self.now);
        self.at(100, Event::Quiet);
        Ok(())
    }

    fn pending_summary(&self) -> String {
        let mut pending = Vec::new();
        for office in &self.offices {
            if let Some(machine) = office.leader_machine() {
                if let Ok(applied) = machine.applied() {
                    if applied.outbox_pending > 0 {
                        pending.push(format!("{}: {}", office.code, applied.outbox_pending));
                    }
                }
            } else {
                pending.push(format!("{}: no leader", office.code));
            }
        }
        pending.join(", ")
    }

    /// Quiescence: every office led, every outbox drained, nothing in flight.
    fn quiescent(&self) -> bool {
        self.pumps.values().all(|sender| !sender.is_in_flight())
            && self.offices.iter().all(|office| {
                office
                    .leader_machine()
                    .and_then(|m| m.applied().ok())
                    .is_some_and(|a| a.outbox_pending == 0)
            })
    }

    // ---- the report ------------------------------------------------------------------------

    fn report(&mut self, outcome: Result<(), Fatal>) -> SimReport {
        let mut invariants: Vec<Value> = Vec::new();
        let mut fatal = outcome.err();
        if fatal.is_none() {
            // Run the healing phase's queue until quiescent (Quiet events re-check).
            fatal = self.settle().err();
        }
        if let Some(error) = &fatal {
            invariants.push(json!({"name": "simulation", "ok": false, "detail": error}));
        }
        let mut documents = Vec::new();
        let mut hasher = Sha256::new();
        for office in &self.offices {
            for (r, replica) in office.replicas.iter().enumerate() {
                match dump(&replica.machine) {
                    Ok(document) => {
                        hasher.update(office.code.as_str().as_bytes());
                        hasher.update(document["last_applied"].to_string().as_bytes());
                        hasher.update(document["state_hash"].to_string().as_bytes());
                        documents.push((office.code.to_string(), r as u64 + 1, document));
                    }
                    Err(status) => invariants.push(json!({"name": "dump", "ok": false, "detail": format!("{} replica {r}: {}", office.code, status.message())})),
                }
            }
        }
        invariants.extend(liandong_ops::verify::check_documents(
            &self.manifest,
            &documents,
        ));
        invariants.push(self.caught_up(&documents));
        invariants.push(self.durability(&documents));
        invariants.push(self.no_duplicates());
        let ok = invariants.iter().all(|i| i["ok"] == true);
        let fingerprint = hex::encode(hasher.finalize());
        let json = json!({
            "seed": self.config.seed,
            "region": self.config.region,
            "offices": self.offices.len(),
            "ok": ok,
            "simulated_ms": self.now,
            "heal_ms": self.quiet_at.map(|at| self.now.saturating_sub(at)),
            "network": self.network,
            "cases": self.case_figures(&documents),
            "counters": self.counters,
            "fingerprint": fingerprint,
            "invariants": invariants,
            "replay": self.config.replay_command(),
        });
        SimReport {
            ok,
            fingerprint,
            json,
        }
    }

    /// After the chaos phase: run events until every office is quiescent, then let every
    /// replica apply everything.
    fn settle(&mut self) -> Result<(), Fatal> {
        let limit = self.now + HEAL_LIMIT_MS;
        loop {
            if self.quiescent() {
                break;
            }
            let Some(((time, _), event)) = self.queue.pop_first() else {
                return Err(format!(
                    "the queue ran dry before quiescence: {}",
                    self.pending_summary()
                ));
            };
            if time > limit {
                return Err(format!(
                    "no quiescence {} s after healing: {}",
                    HEAL_LIMIT_MS / 1_000,
                    self.pending_summary()
                ));
            }
            self.now = time;
            self.counters.events += 1;
            self.handle(event)?;
        }
        for office in &mut self.offices {
            office.catch_up_followers(&mut self.rng, true)?;
        }
        Ok(())
    }

    /// What the run left behind, by kind and status (the workload's reach).
    fn case_figures(&self, documents: &[(String, u64, Value)]) -> Value {
        let mut figures: BTreeMap<String, u64> = BTreeMap::new();
        for (_, replica, document) in documents {
            if *replica != 1 {
                continue;
            }
            for case in document["cases"].as_array().into_iter().flatten() {
                let status = case["status"]["state"].as_str().unwrap_or("unknown");
                *figures.entry(format!("status_{status}")).or_default() += 1;
                let kind = case["kind"]["type"].as_str().unwrap_or("unknown");
                *figures.entry(format!("kind_{kind}")).or_default() += 1;
                if !case["supervision"].is_null() {
                    *figures.entry("supervised".into()).or_default() += 1;
                }
            }
        }
        json!(figures)
    }

    fn caught_up(&self, documents: &[(String, u64, Value)]) -> Value {
        let mut problems = Vec::new();
        for office in &self.offices {
            let committed = office.log.len() as u64;
            for (code, replica, document) in
                documents.iter().filter(|d| d.0 == office.code.as_str())
            {
                let applied = document["last_applied"].as_u64().unwrap_or(0);
                if applied != committed {
                    problems.push(format!(
                        "{code} replica {replica} applied {applied} of {committed}"
                    ));
                }
            }
        }
        check("replicas_caught_up", documents.len(), problems)
    }

    /// Every acknowledged registration exists at its office; every acknowledged command's
    /// effect is still in the office's copy (its history at least as long as the reply's).
    fn durability(&self, documents: &[(String, u64, Value)]) -> Value {
        let mut held: BTreeMap<(String, String), usize> = BTreeMap::new();
        for (code, replica, document) in documents {
            if *replica != 1 {
                continue;
            }
            for case in document["cases"].as_array().into_iter().flatten() {
                let id = case["case_id"].as_str().unwrap_or("").to_string();
                let len = case["history"].as_array().map_or(0, Vec::len);
                held.insert((code.clone(), id), len);
            }
        }
        let mut problems = Vec::new();
        for (request, case_id) in &self.acked_files {
            if !held.contains_key(&(case_id.office.to_string(), case_id.to_string())) {
                problems.push(format!(
                    "{case_id} (request {request}) was acknowledged and is gone"
                ));
            }
        }
        for ((case_id, office), len) in &self.acked_versions {
            let code = self.offices[*office].code.to_string();
            match held.get(&(code.clone(), case_id.to_string())) {
                Some(now) if now >= len => {}
                Some(now) => problems.push(format!(
                    "{case_id} at {code}: history of {now} after an acknowledged reply showed {len}"
                )),
                None => problems.push(format!("{case_id} vanished from {code}")),
            }
        }
        check(
            "durability",
            self.acked_files.len() + self.acked_versions.len(),
            problems,
        )
    }

    /// Every original case was registered by exactly one request, and every request registered
    /// at most one case: a retried or duplicated registration never made a second case (its
    /// reply would name another case than the first attempt's), and no case appeared that no
    /// registration's reply named.
    fn no_duplicates(&self) -> Value {
        let mut problems = Vec::new();
        for (request_id, cases) in self.filed.iter().filter(|(_, cases)| cases.len() > 1) {
            problems.push(format!("request {request_id} registered {cases:?}"));
        }
        let named: BTreeSet<String> = self
            .filed
            .values()
            .flatten()
            .map(ToString::to_string)
            .collect();
        let mut checked = 0;
        for office in &self.offices {
            let machine = &office.replicas[0].machine;
            let originals: BTreeSet<String> = machine
                .scan_prefix(keys::CASE, usize::MAX)
                .unwrap_or_default()
                .iter()
                .filter_map(|(_, value)| Case::from_bytes(value).ok())
                .filter(|case| case.id.office == office.code)
                .filter(|case| matches!(case.kind, liandong_domain::CaseKind::Original))
                .map(|case| case.id.to_string())
                .collect();
            checked += originals.len();
            let unnamed: Vec<&String> = originals.difference(&named).take(3).collect();
            if !unnamed.is_empty() {
                problems.push(format!(
                    "{}: {} original cases registered; no registration's reply named {unnamed:?}",
                    office.code,
                    originals.len(),
                ));
            }
        }
        check("no_duplicates", checked, problems)
    }
}

/// Runs a future that never waits (a simulated office answers at once) to its end, on this
/// thread, without an executor: the office's replicas run their own `block_on` inside.
fn at_once<F: std::future::Future>(future: F) -> Result<F::Output, Fatal> {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(output) => Ok(output),
        std::task::Poll::Pending => Err("a simulated office waited for something".into()),
    }
}

/// A simulated office as the link protocol's receiver: its leader's state machine, and its
/// log (a proposal commits at once when the office has a quorum).
struct Receiver<'a> {
    sim: &'a mut Sim,
    office: usize,
    machine: StateMachineStore,
    /// Whether the batch was proposed (else it was answered from the watermark).
    proposed: bool,
}

impl link::Receiving for Receiver<'_> {
    /// The office could not take it (`Ok`), or the simulation's subject broke (`Err`).
    type Failure = Result<Unavailable, Fatal>;

    fn link_in(&self, from: &OfficeCode) -> Result<LinkIn, String> {
        self.machine.link_in(from)
    }

    fn refusals(
        &self,
        from: &OfficeCode,
        seqs: std::ops::RangeInclusive<u64>,
    ) -> Result<Vec<liandong_node::raft::types::Refusal>, String> {
        self.machine.refusals(from, seqs)
    }

    /// A simulated leader applies everything it commits at once: nothing to wait for.
    async fn catch_up(&mut self) -> Result<(), Self::Failure> {
        Ok(())
    }

    async fn propose(&mut self, operation: Operation) -> Result<Response, Self::Failure> {
        // Every message the simulated offices send is one the receiver admits: a marker of one
        // it could not ([`link::proposal`]) is a bug in the sender, not a refusal to count.
        if let Operation::ReceiveMarked { from, messages } = &operation {
            let unadmitted: Vec<String> = messages
                .iter()
                .filter_map(|message| match message {
                    Received::Message(_) => None,
                    Received::Unadmitted { seq, code, reason } => {
                        Some(format!("#{seq} {code}: {reason}"))
                    }
                })
                .collect();
            return Err(Err(format!(
                "{} could not admit messages from {from} of its own federation: {}",
                self.sim.offices[self.office].code,
                unadmitted.join("; ")
            )));
        }
        self.proposed = true;
        let now = self.sim.fed_now();
        let response = self.sim.offices[self.office]
            .propose(now, operation)
            .map_err(Err)?
            .map_err(Ok)?;
        self.sim.counters.entries_committed += 1;
        self.sim.counters.batches_delivered += 1;
        self.sim.after_commit(self.office);
        Ok(response)
    }
}

fn check(name: &str, checked: usize, problems: Vec<String>) -> Value {
    liandong_ops::verify::invariant_json(name, checked, &problems)
}

/// `sample::registration` always passes the engine's validation (a unit test in ops says so);
/// should it ever not, the run registers this one instead of panicking.
fn unreachable_registration() -> Registration {
    Registration {
        channel: liandong_domain::Channel::Visit,
        petitioner_id: liandong_ops::sample::id_number(1).into(),
        name: "Petitioner".into(),
        phone: None,
        category: "land".into(),
        summary: "A petition.".into(),
        location: None,
        officer: "registrar".into(),
        address: None,
    }
}
