//! Quiescence: an idle office's Raft group stops its timers, so a host carrying a hundred idle
//! township replicas costs next to nothing (TiKV's hibernate regions, CockroachDB's quiescence).
//!
//! # What it does
//! A leader whose office has been idle for [`QUIESCE_IDLE_MS`] — nothing appended, everything
//! applied, every member's log matching its own, the membership settled, no federation message
//! waiting in its outbox — asks the host of each follower to quiesce that follower, with its vote
//! (term, leader) and its last log id. A follower quiesces only if it is exactly there: same
//! committed vote, same last log id, everything applied. Once every follower said yes, the leader
//! quiesces too. Quiescing is openraft's `runtime_config().tick(false)`: no heartbeats, no
//! election timer. The calls are batched per host pair (one `Quiesce` call carries every office
//! two hosts share), on the raft port's connection, through the drills' link faults.
//!
//! A member whose host refuses connections (the dead-leader detector's liveness channel,
//! [`crate::failover::Liveness`]) is left out; when that host accepts connections again, the
//! leaders that left it out wake, so it is caught up.
//!
//! What wakes a replica ([`Cause`]):
//! - a write or read it cannot serve itself (a follower asked by a client);
//! - a peer's message: entries or a new leader's first append, a snapshot, a vote request, a
//!   `Wake` call;
//! - its own Raft changing: a quiesced leader that appends (a write, a deadline tick, an
//!   acknowledgement) wakes as it replicates — openraft replicates new entries at once, without a
//!   tick — and its followers wake on receiving them;
//! - the host of its leader refusing connections (the detector), or a host start.
//!
//! A woken leader ticks again (heartbeats within one tick). A woken follower ticks again with its
//! election off: its leader lease ran out long ago, so with the election on it would campaign at
//! its first tick and unseat a live leader. It asks its leader to wake (a `Wake` call) and turns
//! its election on at the first append from its leader (which renews the lease) or after
//! [`WAKE_GRACE_MS`], whichever is first: a live leader is heard well within the grace, a dead or
//! cut-off one is replaced by the election timer right after it.
//!
//! # Why a quiesced group never has two leaders accepting writes
//! Quiescence changes only *when* elections start, never how they are decided: terms, votes and
//! the log's up-to-date check are openraft's, and a write is acknowledged only once a majority of
//! voters appended it in the leader's term (each voter's vote and log are synced to disk first).
//! Say a quiesced leader L leads term T and a woken follower F wins term T+1 without L seeing it
//! (L is quiesced, cut off or paused). F's majority has persisted a vote for T+1, and every voter
//! refuses an append from term T once it has. L may still append a write at term T, but no
//! majority of T can form any more (it would need a voter of F's majority), so L never commits or
//! acknowledges it; the write fails on its deadline or is overwritten by F's log, and its client
//! sees an error, never a success. Reads are the same: a linearizable read is a read index
//! ([`crate::replica::read`]), which confirms the leadership with a majority after the read
//! arrived (each voter accepts the leader's vote or answers with a higher one); no read is served
//! on a time lease, so a quiesced or deposed leader cannot serve a stale one.
//! Liveness, not safety, is what the grace protects: a follower woken while its leader lives does
//! not campaign before the leader's append renews its lease (no needless leader change), and a
//! restarted host does the same at start.
//!
//! The other direction — a follower left quiesced while its office needs an election — is
//! covered by the wake causes: a dead leader host (the detector wakes every survivor and one
//! campaigns at once), a cut-off or paused leader (the first client request at a follower wakes
//! it, and it campaigns after the grace), a stopped replica (clients turn to another replica,
//! which wakes). A leader that quiesced while a follower acknowledged and the follower later
//! missed an entry is impossible: the leader wakes on its own append, and appends the entry to
//! every follower, which wakes on receiving it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use federation_proto::v1::quiescence_client::QuiescenceClient;
use federation_proto::v1::{QuiesceOffice, QuiesceRequest, WakeOffice, WakeRequest};
use liandong_domain::OfficeCode;
use openraft::{CommittedLeaderId, LogId, RaftMetrics, Vote};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::failover::Liveness;
use crate::raft::network::{through_link_fault, Transport};
use crate::raft::types::{NodeId, NodeInfo, Raft};
use crate::replica::{Replica, Replicas};
use crate::worker::{Step, Worker};

/// How long a leader's office must have stood still (nothing appended, everyone caught up)
/// before it quiesces. Long enough that an office in use keeps its timers between requests.
pub const QUIESCE_IDLE_MS: u64 = 2_000;
/// How often an awake leader that could not quiesce is looked at again.
pub const CHECK_INTERVAL_MS: u64 = 250;
/// How long a woken follower keeps its election off unless its leader is heard first: more than
/// a wake call, a tick (75 ms) and an append, so a live leader renews the lease in time.
pub const WAKE_GRACE_MS: u64 = 250;
/// The same for a replica whose host just started: every replica of the host wakes its leader at
/// once, and a host carrying a hundred replicas needs longer than one wake-up to be heard by all
/// of them; a replica whose leader is gone too campaigns after it.
pub const START_GRACE_MS: u64 = 1_000;
/// The same when the detector found the leader's host dead: long enough for the one survivor
/// the detector chose to win first (the lease, 150 ms, and a vote round), so the election timers
/// only back it up.
pub const LEADER_LOST_GRACE_MS: u64 = 500;
/// How long one `Quiesce` or `Wake` call may take.
pub const CALL_TIMEOUT_MS: u64 = 500;
/// Offices one call names at most (a host pair shares at most its hosts' offices; a bigger
/// batch is split).
pub const OFFICES_PER_CALL_MAX: usize = 1_024;
/// Calls in flight from one host at most; more waits for the next round.
pub const CALLS_IN_FLIGHT_MAX: usize = 64;
/// Environment switch: `off` runs a host whose offices never quiesce (every group keeps its
/// heartbeats and election timers), to compare idle costs or rule quiescence out.
pub const SWITCH_ENV: &str = "LIANDONG_QUIESCE";

/// Whether this process quiesces idle groups ([`SWITCH_ENV`]).
pub fn enabled() -> bool {
    std::env::var(SWITCH_ENV).map_or(true, |value| value != "off")
}

/// Why a replica wakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A client request this replica could not serve itself (it does not lead).
    Client,
    /// A peer asked for its vote.
    Vote,
    /// Its leader sent entries or a snapshot, or a new leader spoke.
    Leader,
    /// A peer host asked it to wake (a follower of the office it leads, or a returned host).
    Peer,
    /// Its host started.
    Start,
    /// The detector found its leader's host dead.
    LeaderLost,
    /// Its own Raft moved: it appended, changed term, role or membership.
    Changed,
}

impl Cause {
    /// How long a follower woken for this cause waits for its leader before its election timer
    /// runs.
    fn grace(self) -> Duration {
        match self {
            Cause::LeaderLost => Duration::from_millis(LEADER_LOST_GRACE_MS),
            Cause::Start => Duration::from_millis(START_GRACE_MS),
            _ => Duration::from_millis(WAKE_GRACE_MS),
        }
    }

    /// Whether a follower woken for this cause asks its leader to wake: not when the leader just
    /// spoke or its host is dead.
    fn wakes_leader(self) -> bool {
        matches!(
            self,
            Cause::Client | Cause::Vote | Cause::Peer | Cause::Start | Cause::Changed
        )
    }
}

/// Where an office's log stands, as a leader tells its followers when it quiesces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The leader's committed vote (its term and id).
    pub vote: Vote<NodeId>,
    /// Its last log id: every entry up to it is committed and applied.
    pub last_log: LogId<NodeId>,
}

impl Position {
    pub fn to_proto(&self, office: &OfficeCode, replica: NodeId) -> QuiesceOffice {
        QuiesceOffice {
            office: office.to_string(),
            replica,
            term: self.vote.leader_id().term,
            leader: self.vote.leader_id().node_id,
            log_term: self.last_log.leader_id.term,
            log_node: self.last_log.leader_id.node_id,
            log_index: self.last_log.index,
        }
    }

    pub fn from_proto(item: &QuiesceOffice) -> Position {
        Position {
            vote: Vote::new_committed(item.term, item.leader),
            last_log: LogId::new(
                CommittedLeaderId::new(item.log_term, item.log_node),
                item.log_index,
            ),
        }
    }
}

/// The figures of one replica's Raft that quiescence decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub id: NodeId,
    /// Its Raft runs (a replica whose storage failed has stopped).
    pub running: bool,
    pub leading: bool,
    pub vote: Vote<NodeId>,
    pub last_log_index: Option<u64>,
    pub last_applied: Option<LogId<NodeId>>,
    /// A membership change is half-way (joint config).
    pub joint: bool,
    pub voters: BTreeSet<NodeId>,
    /// Every member (voters and learners) and where it is.
    pub members: BTreeMap<NodeId, NodeInfo>,
    /// On a leader: each other member's matched log index (None: nothing known yet).
    pub matched: BTreeMap<NodeId, Option<u64>>,
}

impl View {
    pub fn of(metrics: &RaftMetrics<NodeId, NodeInfo>) -> View {
        let membership = metrics.membership_config.membership();
        View {
            id: metrics.id,
            running: metrics.running_state.is_ok(),
            leading: metrics.state.is_leader(),
            vote: metrics.vote,
            last_log_index: metrics.last_log_index,
            last_applied: metrics.last_applied,
            joint: membership.get_joint_config().len() > 1,
            voters: membership.voter_ids().collect(),
            members: membership
                .nodes()
                .map(|(id, node)| (*id, node.clone()))
                .collect(),
            matched: metrics
                .replication
                .as_ref()
                .map(|replication| {
                    replication
                        .iter()
                        .map(|(id, log_id)| (*id, log_id.map(|log_id| log_id.index)))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// Why a leader cannot quiesce now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotIdle {
    NotLeader,
    Stopped,
    /// A membership change is half-way, or this replica is not a voter.
    MembershipChanging,
    /// Something appended is not applied yet (or nothing was ever applied).
    Unapplied,
    /// A live member's log does not match the leader's yet.
    Behind(NodeId),
}

/// What a leader asks to quiesce its office: the position, the members to ask, and the hosts
/// of members left out because their hosts are dead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub position: Position,
    pub targets: Vec<(NodeId, NodeInfo)>,
    pub excluded_hosts: Vec<String>,
}

/// Whether a leader may quiesce its office, and whom to ask. `dead` says whether a host refuses
/// connections (its members are left out: they cannot be caught up now, and are woken for when
/// they return).
pub fn quiesce_plan(view: &View, dead: impl Fn(&str) -> bool) -> Result<Plan, NotIdle> {
    if !view.running {
        return Err(NotIdle::Stopped);
    }
    if !view.leading || !view.vote.is_committed() || view.vote.leader_id().node_id != view.id {
        return Err(NotIdle::NotLeader);
    }
    if view.joint || !view.voters.contains(&view.id) {
        return Err(NotIdle::MembershipChanging);
    }
    let last_log = match view.last_applied {
        Some(applied) if Some(applied.index) == view.last_log_index => applied,
        _ => return Err(NotIdle::Unapplied),
    };
    let mut targets = Vec::new();
    let mut excluded_hosts = Vec::new();
    for (id, node) in &view.members {
        if *id == view.id {
            continue;
        }
        let matched = view.matched.get(id).copied().flatten();
        if matched == Some(last_log.index) {
            targets.push((*id, node.clone()));
        } else if dead(&node.host) {
            excluded_hosts.push(node.host.clone());
        } else {
            return Err(NotIdle::Behind(*id));
        }
    }
    Ok(Plan {
        position: Position {
            vote: view.vote,
            last_log,
        },
        targets,
        excluded_hosts,
    })
}

/// Whether a follower is exactly where its leader says the office is: it follows that leader
/// in that term, holds the same last log id and has applied it.
pub fn follower_may_quiesce(view: &View, position: &Position) -> bool {
    view.running
        && !view.leading
        && position.vote.is_committed()
        && view.vote == position.vote
        && view.last_log_index == Some(position.last_log.index)
        && view.last_applied == Some(position.last_log)
}

/// What a quiesced replica's Raft looked like when it quiesced: any change wakes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub leading: bool,
    pub term: u64,
    pub last_log_index: u64,
    pub membership_index: u64,
    pub running: bool,
}

impl Mark {
    pub fn of(metrics: &RaftMetrics<NodeId, NodeInfo>) -> Mark {
        Mark {
            leading: metrics.state.is_leader(),
            term: metrics.current_term,
            last_log_index: metrics.last_log_index.unwrap_or(0),
            membership_index: metrics
                .membership_config
                .log_id()
                .map(|log_id| log_id.index)
                .unwrap_or(0),
            running: metrics.running_state.is_ok(),
        }
    }
}

#[derive(Debug)]
struct Quiesced {
    mark: Mark,
    /// Hosts of members left out (dead when the leader quiesced): their return wakes it.
    excluded_hosts: Vec<String>,
}

#[derive(Debug, Default)]
struct State {
    /// Some while quiesced.
    quiesced: Option<Quiesced>,
    /// Moves on every wake: a leader's quiesce decided before a wake is void.
    generation: u64,
    /// A woken follower's election turns on then at the latest.
    elect_at: Option<Instant>,
    /// A woken follower's leader is to be asked to wake (by the controller's next round).
    wake_leader: bool,
    quiesces: u64,
    wakes: u64,
    /// Why this replica last did not quiesce when asked to (or, on a leader, why its office
    /// did not): for `liandong status`.
    note: String,
    /// Whether it led at the last look: a replica that becomes the leader is shown to the
    /// controller (which then times its idleness).
    leading: bool,
}

struct Shared {
    raft: Raft,
    enabled: bool,
    /// The host's controller: told when a replica woke (it has calls to make and deadlines to
    /// keep).
    controller: Arc<Notify>,
    state: Mutex<State>,
}

/// One replica's quiescence: whether its Raft's timers run, and the wake-ups. Cheap to clone.
#[derive(Clone)]
pub struct Quiet {
    shared: Arc<Shared>,
}

impl Quiet {
    /// The quiescence of a replica whose Raft just started: awake, its election off until its
    /// leader is heard or the grace passed (a restarted follower must not unseat a live leader of
    /// a quiesced office: the other followers' leases ran out long ago).
    pub fn start(raft: Raft, controller: Arc<Notify>, enabled: bool) -> Quiet {
        let quiet = Quiet {
            shared: Arc::new(Shared {
                raft,
                enabled,
                controller,
                state: Mutex::default(),
            }),
        };
        quiet.wake(Cause::Start);
        quiet
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn is_quiesced(&self) -> bool {
        self.lock().quiesced.is_some()
    }

    /// How often this replica quiesced and woke since its host started.
    pub fn counts(&self) -> (u64, u64) {
        let state = self.lock();
        (state.quiesces, state.wakes)
    }

    fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Why this replica (or its office, on a leader) last did not quiesce; empty once it did.
    pub fn note(&self) -> String {
        self.lock().note.clone()
    }

    fn set_note(&self, note: String) {
        self.lock().note = note;
    }

    /// Starts this replica's timers again if they were stopped; returns whether it was
    /// quiesced. Any wake (quiesced or not) voids a leader's quiesce decided before it.
    pub fn wake(&self, cause: Cause) -> bool {
        if !self.shared.enabled {
            return false;
        }
        let leading = self.shared.raft.metrics().borrow().state.is_leader();
        let mut state = self.lock();
        state.generation += 1;
        let was_quiesced = state.quiesced.take().is_some();
        if !was_quiesced && cause != Cause::Start {
            return false;
        }
        if was_quiesced {
            state.wakes += 1;
        }
        let runtime = self.shared.raft.runtime_config();
        runtime.tick(true);
        if leading {
            runtime.elect(true);
            state.elect_at = None;
            state.wake_leader = false;
        } else {
            runtime.elect(false);
            state.elect_at = Some(Instant::now() + cause.grace());
            state.wake_leader = cause.wakes_leader();
        }
        drop(state);
        if was_quiesced {
            tracing::debug!(
                replica = self.shared.raft.metrics().borrow().id,
                ?cause,
                "woke"
            );
        }
        self.shared.controller.notify_one();
        was_quiesced
    }

    /// Called after this replica accepted an append from its leader (its lease is renewed): a
    /// woken follower's election may run again.
    pub fn heard_from_leader(&self) {
        let mut state = self.lock();
        if state.quiesced.is_none() && state.elect_at.take().is_some() {
            self.shared.raft.runtime_config().elect(true);
        }
    }

    /// Called before an append from a peer is handed to Raft: entries, or a vote other than the
    /// one this replica holds (a new leader), wake it; a heartbeat of its own leader does not
    /// (a leader that reads through a quiesced office confirms its leadership with heartbeats).
    pub fn before_append(&self, vote: &Vote<NodeId>, entries: usize) {
        if !self.is_quiesced() {
            return;
        }
        let current = self.shared.raft.metrics().borrow().vote;
        if entries > 0 || *vote != current {
            self.wake(Cause::Leader);
        }
    }

    /// A follower asked by its leader to quiesce: quiesces if it is exactly at `position`.
    pub fn follower_quiesce(&self, position: &Position) -> bool {
        if !self.shared.enabled {
            return false;
        }
        let mut state = self.lock();
        let metrics = self.shared.raft.metrics().borrow().clone();
        if !follower_may_quiesce(&View::of(&metrics), position) {
            state.note = format!(
                "asked to quiesce at vote {} log {}, but holds vote {} log {:?} applied {:?}",
                position.vote,
                position.last_log,
                metrics.vote,
                metrics.last_log_index,
                metrics.last_applied.map(|log_id| log_id.to_string())
            );
            return false;
        }
        if state.quiesced.is_none() {
            let runtime = self.shared.raft.runtime_config();
            runtime.tick(false);
            runtime.elect(false);
            state.quiesced = Some(Quiesced {
                mark: Mark::of(&metrics),
                excluded_hosts: Vec::new(),
            });
            state.elect_at = None;
            state.wake_leader = false;
            state.quiesces += 1;
            state.note.clear();
        }
        true
    }

    /// The leader quiesces once its followers did, unless anything moved since it decided
    /// (`generation`: a wake; `mark`: its Raft).
    fn leader_quiesce(&self, generation: u64, mark: Mark, excluded_hosts: Vec<String>) -> bool {
        let mut state = self.lock();
        if state.quiesced.is_some() {
            return false;
        }
        if state.generation != generation {
            state.note = "woken while its followers quiesced".to_string();
            return false;
        }
        let now = Mark::of(&self.shared.raft.metrics().borrow());
        if now != mark || !now.leading || !now.running {
            state.note = "its log moved while its followers quiesced".to_string();
            return false;
        }
        state.note.clear();
        self.shared.raft.runtime_config().tick(false);
        state.quiesced = Some(Quiesced {
            mark,
            excluded_hosts,
        });
        state.quiesces += 1;
        true
    }

    /// Called when this replica's Raft metrics changed: a quiesced replica whose Raft moved
    /// (it appended, changed term, role or membership, or stopped) wakes; a replica that became
    /// the leader is shown to the controller.
    pub fn on_raft_change(&self) {
        let mark = Mark::of(&self.shared.raft.metrics().borrow());
        let (moved, became_leader) = {
            let mut state = self.lock();
            let moved = matches!(&state.quiesced, Some(quiesced) if quiesced.mark != mark);
            let became_leader = mark.leading && !state.leading;
            state.leading = mark.leading;
            (moved, became_leader)
        };
        if moved {
            self.wake(Cause::Changed);
        } else if became_leader {
            self.shared.controller.notify_one();
        }
    }

    /// Turns a woken follower's election on if its grace is over; returns when it will be
    /// otherwise.
    fn elect_due(&self, now: Instant) -> Option<Instant> {
        let mut state = self.lock();
        match state.elect_at {
            Some(at) if at <= now && state.quiesced.is_none() => {
                state.elect_at = None;
                self.shared.raft.runtime_config().elect(true);
                None
            }
            other => other,
        }
    }

    fn take_wake_leader(&self) -> bool {
        std::mem::take(&mut self.lock().wake_leader)
    }

    fn excluded_any(&self, hosts: &HashSet<String>) -> bool {
        matches!(&self.lock().quiesced, Some(quiesced) if quiesced.excluded_hosts.iter().any(|host| hosts.contains(host)))
    }
}

/// One office a leader asks to quiesce in a round.
struct Candidate {
    replica: Replica,
    generation: u64,
    mark: Mark,
    plan: Plan,
}

/// The host's quiescence controller (a worker): quiesces idle offices it leads, asks the leaders
/// of woken followers to wake, turns woken followers' elections on when their grace is over,
/// and wakes leaders whose left-out members' hosts returned. With every office quiesced it waits
/// for a wake and does nothing else.
pub struct Quiescence {
    replicas: Replicas,
    transport: Transport,
    liveness: Liveness,
    notify: Arc<Notify>,
    /// Each awake leader's mark, and since when it has stood still.
    still_since: HashMap<OfficeCode, (Mark, Instant)>,
    /// Offices with a quiesce round in flight.
    in_round: Arc<Mutex<HashSet<OfficeCode>>>,
    calls: JoinSet<()>,
    next_look: Option<Instant>,
}

impl Quiescence {
    pub fn new(
        replicas: Replicas,
        transport: Transport,
        liveness: Liveness,
        notify: Arc<Notify>,
    ) -> Quiescence {
        Quiescence {
            replicas,
            transport,
            liveness,
            notify,
            still_since: HashMap::new(),
            in_round: Arc::default(),
            calls: JoinSet::new(),
            next_look: None,
        }
    }

    /// An awake leader: a candidate to quiesce if it has stood still long enough and its plan
    /// holds; else when to look again.
    fn leader_look(&mut self, replica: &Replica, now: Instant) -> (Option<Candidate>, Instant) {
        let metrics = replica.raft.metrics().borrow().clone();
        let mark = Mark::of(&metrics);
        let since = self
            .still_since
            .entry(replica.office.clone())
            .or_insert((mark, now));
        if since.0 != mark {
            *since = (mark, now);
        }
        let ready_at = since.1 + Duration::from_millis(QUIESCE_IDLE_MS);
        if now < ready_at {
            return (None, ready_at);
        }
        let again = now + Duration::from_millis(CHECK_INTERVAL_MS);
        let busy = self
            .in_round
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(&replica.office);
        if busy {
            return (None, again);
        }
        let liveness = &self.liveness;
        let plan = match quiesce_plan(&View::of(&metrics), |host| liveness.is_dead(host)) {
            Ok(plan) => plan,
            Err(why) => {
                replica.quiet.set_note(format!("not idle: {why:?}"));
                return (None, again);
            }
        };
        // No federation work pending: an outbox with messages keeps its pump (and its office's
        // timers) going until the receivers acknowledged them.
        let outbox_empty = replica
            .state_machine
            .applied()
            .is_ok_and(|applied| applied.outbox_pending == 0);
        if !outbox_empty {
            replica
                .quiet
                .set_note("federation messages wait in its outbox".to_string());
            return (None, again);
        }
        let candidate = Candidate {
            replica: replica.clone(),
            generation: replica.quiet.generation(),
            mark,
            plan,
        };
        (Some(candidate), again)
    }

    /// The raft address of the leader `replica` follows, if known.
    fn leader_of(replica: &Replica) -> Option<(NodeId, NodeInfo)> {
        let metrics = replica.raft.metrics().borrow().clone();
        let leader = metrics.current_leader.filter(|id| *id != replica.id)?;
        let node = metrics
            .membership_config
            .membership()
            .get_node(&leader)?
            .clone();
        Some((leader, node))
    }
}

impl Worker for Quiescence {
    fn name(&self) -> String {
        "quiescence".into()
    }

    async fn work(&mut self) -> Result<Step, String> {
        if !enabled() {
            tracing::info!("quiescence off ({SWITCH_ENV}=off): every office keeps its timers");
            return Ok(Step::Done);
        }
        while self.calls.try_join_next().is_some() {}
        let now = Instant::now();
        let revived = self.liveness.take_revived();
        let mut next: Option<Instant> = None;
        let mut wakes: BTreeMap<(String, String), Vec<WakeOffice>> = BTreeMap::new();
        let mut candidates = Vec::new();
        let replicas = self.replicas.clone();
        for replica in replicas.iter() {
            let quiet = &replica.quiet;
            if quiet.is_quiesced() {
                self.still_since.remove(&replica.office);
                if !revived.is_empty() && quiet.excluded_any(&revived) {
                    quiet.wake(Cause::Peer);
                }
                continue;
            }
            if let Some(at) = quiet.elect_due(now) {
                next = Some(next.map_or(at, |next| next.min(at)));
            }
            if quiet.take_wake_leader() {
                if let Some((leader, node)) = Self::leader_of(replica) {
                    wakes
                        .entry((node.host.clone(), node.raft_addr.clone()))
                        .or_default()
                        .push(WakeOffice {
                            office: replica.office.to_string(),
                            replica: leader,
                        });
                }
            }
            if !replica.is_leader() {
                self.still_since.remove(&replica.office);
                continue;
            }
            let (candidate, look_at) = self.leader_look(replica, now);
            next = Some(next.map_or(look_at, |next| next.min(look_at)));
            candidates.extend(candidate);
        }
        self.next_look = next;
        for ((host, addr), offices) in wakes {
            if self.calls.len() >= CALLS_IN_FLIGHT_MAX {
                break;
            }
            let transport = self.transport.clone();
            self.calls
                .spawn(async move { send_wakes(&transport, &host, &addr, offices).await });
        }
        if !candidates.is_empty() && self.calls.len() < CALLS_IN_FLIGHT_MAX {
            {
                let mut in_round = self
                    .in_round
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                in_round.extend(candidates.iter().map(|c| c.replica.office.clone()));
            }
            let (transport, in_round) = (self.transport.clone(), self.in_round.clone());
            self.calls
                .spawn(async move { quiesce_round(&transport, candidates, &in_round).await });
        }
        Ok(Step::Idle)
    }

    async fn wait_for_work(&mut self) {
        match self.next_look {
            Some(at) => {
                tokio::select! {
                    _ = self.notify.notified() => {}
                    _ = tokio::time::sleep_until(at) => {}
                }
            }
            None => self.notify.notified().await,
        }
    }
}

fn client(
    transport: &Transport,
    addr: &str,
) -> Result<QuiescenceClient<tonic::transport::Channel>, String> {
    transport
        .channel(addr)
        .map(QuiescenceClient::new)
        .map_err(|e| e.to_string())
}

/// Asks the host at `addr` to wake the leaders named, in batches of
/// [`OFFICES_PER_CALL_MAX`]. A lost call is not retried: the followers' election timers run after
/// the grace anyway.
async fn send_wakes(transport: &Transport, host: &str, addr: &str, offices: Vec<WakeOffice>) {
    let Ok(mut client) = client(transport, addr) else {
        return;
    };
    for chunk in offices.chunks(OFFICES_PER_CALL_MAX) {
        let timeout = Duration::from_millis(CALL_TIMEOUT_MS);
        let mut call = tonic::Request::new(WakeRequest {
            offices: chunk.to_vec(),
        });
        call.set_timeout(timeout);
        let deadline = Instant::now() + timeout;
        let sent = through_link_fault(transport.link_action(host), deadline, client.wake(call));
        match tokio::time::timeout(timeout, sent).await {
            Ok(Ok(Ok(_))) => {}
            other => {
                tracing::debug!(%host, outcome = ?other.map(|r| r.map(|r| r.map(|_| ()))), "wake call failed")
            }
        }
    }
}

/// Asks one host to quiesce the followers named; the answers in order, or None if the call
/// failed.
async fn send_quiesce(
    transport: &Transport,
    host: &str,
    addr: &str,
    offices: Vec<QuiesceOffice>,
) -> Option<Vec<bool>> {
    let mut client = client(transport, addr).ok()?;
    let mut answers = Vec::with_capacity(offices.len());
    for chunk in offices.chunks(OFFICES_PER_CALL_MAX) {
        let timeout = Duration::from_millis(CALL_TIMEOUT_MS);
        let mut call = tonic::Request::new(QuiesceRequest {
            offices: chunk.to_vec(),
        });
        call.set_timeout(timeout);
        let deadline = Instant::now() + timeout;
        let sent = through_link_fault(transport.link_action(host), deadline, client.quiesce(call));
        let reply = tokio::time::timeout(timeout, sent).await.ok()?.ok()?.ok()?;
        let quiesced = reply.into_inner().quiesced;
        if quiesced.len() != chunk.len() {
            return None;
        }
        answers.extend(quiesced);
    }
    Some(answers)
}

/// One round: asks every follower of every candidate (one call per follower host), then
/// quiesces each candidate whose followers all did.
async fn quiesce_round(
    transport: &Transport,
    candidates: Vec<Candidate>,
    in_round: &Mutex<HashSet<OfficeCode>>,
) {
    let mut by_host: BTreeMap<(String, String), Vec<(usize, QuiesceOffice)>> = BTreeMap::new();
    for (index, candidate) in candidates.iter().enumerate() {
        for (id, node) in &candidate.plan.targets {
            by_host
                .entry((node.host.clone(), node.raft_addr.clone()))
                .or_default()
                .push((
                    index,
                    candidate
                        .plan
                        .position
                        .to_proto(&candidate.replica.office, *id),
                ));
        }
    }
    let calls = by_host.into_iter().map(|((host, addr), items)| async move {
        let (indexes, offices): (Vec<usize>, Vec<QuiesceOffice>) = items.into_iter().unzip();
        let answers = send_quiesce(transport, &host, &addr, offices).await;
        (host, indexes, answers)
    });
    let mut refused: Vec<Option<String>> = vec![None; candidates.len()];
    for (host, indexes, answers) in futures::future::join_all(calls).await {
        match answers {
            Some(answers) => {
                for (index, yes) in indexes.into_iter().zip(answers) {
                    if !yes {
                        refused[index] =
                            Some(format!("its follower on host {host} did not quiesce"));
                    }
                }
            }
            None => indexes.into_iter().for_each(|index| {
                refused[index] = Some(format!("host {host} did not answer the quiesce call"))
            }),
        }
    }
    let mut in_round = in_round
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for (candidate, refused) in candidates.into_iter().zip(refused) {
        in_round.remove(&candidate.replica.office);
        if let Some(why) = refused {
            candidate.replica.quiet.set_note(why);
            continue;
        }
        let quiet = &candidate.replica.quiet;
        if quiet.leader_quiesce(
            candidate.generation,
            candidate.mark,
            candidate.plan.excluded_hosts,
        ) {
            tracing::debug!(office = %candidate.replica.office, "quiesced");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str) -> NodeInfo {
        NodeInfo {
            host: host.to_string(),
            raft_addr: format!("{host}:1"),
            api_addr: format!("{host}:2"),
        }
    }

    fn log_id(term: u64, node: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, node), index)
    }

    /// A leader (replica 1 on host a) of a settled 3-voter office, everyone at index 10.
    fn leader() -> View {
        View {
            id: 1,
            running: true,
            leading: true,
            vote: Vote::new_committed(4, 1),
            last_log_index: Some(10),
            last_applied: Some(log_id(4, 1, 10)),
            joint: false,
            voters: [1, 2, 3].into(),
            members: [(1, node("a")), (2, node("b")), (3, node("c"))].into(),
            matched: [(2, Some(10)), (3, Some(10))].into(),
        }
    }

    fn follower(id: NodeId) -> View {
        View {
            id,
            leading: false,
            matched: BTreeMap::new(),
            ..leader()
        }
    }

    #[test]
    fn a_settled_leader_asks_every_follower() {
        let plan = quiesce_plan(&leader(), |_| false).unwrap();
        let asked: Vec<NodeId> = plan.targets.iter().map(|(id, _)| *id).collect();
        assert_eq!(asked, [2, 3]);
        assert_eq!(plan.position.last_log, log_id(4, 1, 10));
        assert_eq!(plan.position.vote, Vote::new_committed(4, 1));
        assert!(plan.excluded_hosts.is_empty());
    }

    #[test]
    fn a_lagging_live_follower_or_unapplied_entry_keeps_the_leader_awake() {
        let mut lagging = leader();
        lagging.matched.insert(3, Some(9));
        assert_eq!(quiesce_plan(&lagging, |_| false), Err(NotIdle::Behind(3)));
        let mut unknown = leader();
        unknown.matched.insert(2, None);
        assert_eq!(quiesce_plan(&unknown, |_| false), Err(NotIdle::Behind(2)));
        let mut unapplied = leader();
        unapplied.last_log_index = Some(11);
        assert_eq!(quiesce_plan(&unapplied, |_| false), Err(NotIdle::Unapplied));
        let mut joint = leader();
        joint.joint = true;
        assert_eq!(
            quiesce_plan(&joint, |_| false),
            Err(NotIdle::MembershipChanging)
        );
        let mut stopped = leader();
        stopped.running = false;
        assert_eq!(quiesce_plan(&stopped, |_| false), Err(NotIdle::Stopped));
        assert_eq!(
            quiesce_plan(&follower(2), |_| false),
            Err(NotIdle::NotLeader)
        );
    }

    #[test]
    fn a_lagging_member_on_a_dead_host_is_left_out_and_remembered() {
        let mut view = leader();
        view.matched.insert(3, Some(7));
        let plan = quiesce_plan(&view, |host| host == "c").unwrap();
        let asked: Vec<NodeId> = plan.targets.iter().map(|(id, _)| *id).collect();
        assert_eq!(asked, [2]);
        assert_eq!(plan.excluded_hosts, ["c"]);
    }

    #[test]
    fn a_follower_quiesces_only_exactly_where_its_leader_is() {
        let position = quiesce_plan(&leader(), |_| false).unwrap().position;
        assert!(follower_may_quiesce(&follower(2), &position));
        let mut behind = follower(2);
        behind.last_log_index = Some(9);
        behind.last_applied = Some(log_id(4, 1, 9));
        assert!(!follower_may_quiesce(&behind, &position));
        let mut unapplied = follower(2);
        unapplied.last_applied = Some(log_id(4, 1, 9));
        assert!(!follower_may_quiesce(&unapplied, &position));
        let mut newer_term = follower(2);
        newer_term.vote = Vote::new_committed(5, 3);
        assert!(!follower_may_quiesce(&newer_term, &position));
        let mut uncommitted = follower(2);
        uncommitted.vote = Vote::new(4, 1);
        assert!(!follower_may_quiesce(&uncommitted, &position));
        let mut other_branch = follower(2);
        other_branch.last_applied = Some(log_id(3, 2, 10));
        assert!(!follower_may_quiesce(&other_branch, &position));
        assert!(!follower_may_quiesce(&leader(), &position));
    }

    #[test]
    fn a_position_survives_the_wire() {
        let position = quiesce_plan(&leader(), |_| false).unwrap().position;
        let office: OfficeCode = "530602".parse().unwrap();
        let item = position.to_proto(&office, 2);
        assert_eq!((item.office.as_str(), item.replica), ("530602", 2));
        assert_eq!(Position::from_proto(&item), position);
    }
}
