//! The read index of a linearizable read, with a leadership confirmation whose deadline is ours.
//!
//! openraft 0.9's `ensure_linearizable` confirms the leadership with one heartbeat round and
//! gives each heartbeat one heartbeat interval (50 ms) to be answered. When a supervisor's fresh
//! query makes every office of a city confirm at once, the hosts' CPU is saturated and some
//! confirmations miss 50 ms although every member is alive: the read fails, and the answer is
//! partial. [`read_index`] does the same confirmation with a deadline the caller chooses
//! ([`READ_CONFIRM_MS`]).
//!
//! # Why the read is linearizable
//! 1. Before anything is sent, the leader's own state is read in one step of its Raft core: its
//!    role, its vote (term and leader), its commit index and its membership. The read index is
//!    that commit index, and only if the entry at it belongs to the leader's own term: a new
//!    leader's commit index may lag what its predecessors committed until its first entry (the
//!    blank entry it appends on election) commits; until then the read takes openraft's own path
//!    ([`Refused::NotReady`]), which accounts for that. Every write acknowledged before the read
//!    arrived was committed before it, so it lies at or below the read index.
//! 2. The leader then sends every other voter an empty AppendEntries carrying its vote and
//!    nothing else: `{vote, prev_log_id: None, entries: [], leader_commit: None}`. A voter
//!    answers `Success` only if it accepts that vote (it holds no higher one), and `HigherVote`
//!    if it has voted for a later leader. openraft's follower checks the vote first; a
//!    `prev_log_id` of None matches any log (nothing is truncated), an empty batch appends
//!    nothing and does not move what it has accepted, and a `leader_commit` of None commits
//!    nothing: the request changes no log and no commit index, only renews the follower's lease
//!    of this leader, as a heartbeat does.
//! 3. Once a majority of every configuration (with the leader itself) accepted the vote, no
//!    other leader had been elected when those answers were given: an election needs a majority
//!    whose members persist their vote for the higher term before they answer, and every
//!    majority overlaps ours. The answers came after the read arrived, so at some moment after
//!    its arrival this replica still led its office, and no write could have been committed
//!    anywhere but through it. A `HigherVote` refuses the read at once ([`Refused::Deposed`]).
//! 4. The read is served once this replica's state machine has applied the read index.
//!
//! No lease is involved: the confirmation always happens after the read arrived, whatever the
//! clocks do. So a quiesced group ([`crate::quiesce`]) serves reads the same way; a quiesced
//! follower stays quiesced (the request carries its own leader's vote and no entries).

use std::collections::BTreeSet;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use openraft::error::RPCError;
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use openraft::ServerState;
use tokio::time::Instant;

use crate::raft::types::{NodeId, Raft, TypeConfig};

/// How long a leader waits for its voters to confirm its leadership for one read. Long enough
/// for a loaded host (a fresh query on a whole city, every office confirming at once) to answer
/// an empty request; short enough that a leader that cannot reach a majority says so within a
/// fresh query's deadline, and its asker turns to another host.
pub const READ_CONFIRM_MS: u64 = 400;

/// Why a read index was not confirmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// This replica does not lead its office (as far as it knows): the read belongs at `leader`.
    #[error("not the leader")]
    NotLeader { leader: Option<NodeId> },
    /// A voter holds a later leader's vote: this replica was deposed.
    #[error("a voter follows a later leader (vote {higher}): deposed")]
    Deposed { higher: String },
    /// The leader has committed nothing in its own term yet (it was just elected).
    #[error("no entry of the leader's term committed yet")]
    NotReady,
    /// No majority accepted the vote before the deadline.
    #[error("leadership not confirmed within {limit_ms} ms: {detail}")]
    NoQuorum { limit_ms: u64, detail: String },
    /// The state machine did not apply the read index before the deadline, or Raft stopped.
    #[error("{0}")]
    Unavailable(String),
}

/// What the leader's Raft core said of itself, in one step.
struct Leading {
    state: ServerState,
    vote: openraft::Vote<NodeId>,
    committed: Option<openraft::LogId<NodeId>>,
    configs: Vec<BTreeSet<NodeId>>,
    nodes: std::collections::BTreeMap<NodeId, crate::raft::types::NodeInfo>,
}

/// Whether `granted` holds a majority of every configuration in `configs`.
pub fn majority_of_each(configs: &[BTreeSet<NodeId>], granted: &BTreeSet<NodeId>) -> bool {
    configs.iter().all(|config| {
        config.intersection(granted).count() >= crate::replica::majority(config.len())
    })
}

/// Confirms that `raft` (this replica, `me`) leads its office, asking its voters through
/// `network`, within `limit`; then waits until its state machine applied the read index, and
/// returns it. A read of the state machine after it is linearizable (the module's comment says
/// why).
pub async fn read_index<N>(
    raft: &Raft,
    me: NodeId,
    network: &mut N,
    limit: Duration,
) -> Result<u64, Refused>
where
    N: RaftNetworkFactory<TypeConfig>,
{
    let started = Instant::now();
    let leading = raft
        .with_raft_state(|state| Leading {
            state: state.server_state,
            vote: *state.vote_ref(),
            committed: state.committed,
            configs: state
                .membership_state
                .effective()
                .membership()
                .get_joint_config()
                .clone(),
            nodes: state
                .membership_state
                .effective()
                .membership()
                .nodes()
                .map(|(id, node)| (*id, node.clone()))
                .collect(),
        })
        .await
        .map_err(|fatal| Refused::Unavailable(fatal.to_string()))?;
    if leading.state != ServerState::Leader
        || !leading.vote.is_committed()
        || leading.vote.leader_id().node_id != me
    {
        return Err(Refused::NotLeader {
            leader: raft.metrics().borrow().current_leader,
        });
    }
    let read_index = match leading.committed {
        Some(committed) if committed.leader_id == *leading.vote.leader_id() => committed.index,
        _ => return Err(Refused::NotReady),
    };

    let mut granted: BTreeSet<NodeId> = [me].into();
    let voters: BTreeSet<NodeId> = leading.configs.iter().flatten().copied().collect();
    let mut pending = FuturesUnordered::new();
    for target in voters.iter().copied().filter(|id| *id != me) {
        let Some(node) = leading.nodes.get(&target) else {
            continue;
        };
        let mut client = network.new_client(target, node).await;
        let request = AppendEntriesRequest::<TypeConfig> {
            vote: leading.vote,
            prev_log_id: None,
            entries: Vec::new(),
            leader_commit: None,
        };
        pending.push(async move {
            let answer =
                tokio::time::timeout(limit, client.append_entries(request, RPCOption::new(limit)))
                    .await;
            (target, answer)
        });
    }
    let mut failures: Vec<String> = Vec::new();
    while !majority_of_each(&leading.configs, &granted) {
        let Some((target, answer)) = pending.next().await else {
            return Err(Refused::NoQuorum {
                limit_ms: limit.as_millis() as u64,
                detail: format!(
                    "{} of voters {:?} accepted the vote; {}",
                    granted.len(),
                    voters,
                    failures.join("; ")
                ),
            });
        };
        match answer {
            Ok(Ok(AppendEntriesResponse::HigherVote(higher))) => {
                return Err(Refused::Deposed {
                    higher: higher.to_string(),
                })
            }
            // Each of these comes after the follower accepted the vote.
            Ok(Ok(
                AppendEntriesResponse::Success
                | AppendEntriesResponse::PartialSuccess(_)
                | AppendEntriesResponse::Conflict,
            )) => {
                granted.insert(target);
            }
            Ok(Err(error)) => failures.push(format!("replica {target}: {}", describe(&error))),
            Err(_elapsed) => failures.push(format!("replica {target}: no answer")),
        }
    }
    drop(pending);

    let left = limit.saturating_sub(started.elapsed());
    raft.wait(Some(left.max(Duration::from_millis(1))))
        .applied_index_at_least(Some(read_index), "read index")
        .await
        .map_err(|error| {
            Refused::Unavailable(format!("read index {read_index} not applied: {error}"))
        })?;
    Ok(read_index)
}

fn describe<E: std::error::Error>(
    error: &RPCError<NodeId, crate::raft::types::NodeInfo, openraft::error::RaftError<NodeId, E>>,
) -> String {
    error.to_string()
}

/// [`read_index`] against three real replicas in process (openraft, RocksDB log and state
/// machine per replica), joined by a network that hands each request to the target's Raft and
/// can hold back its empty appends (a loaded follower answering late) or lose what is sent to
/// a replica (a partition).
#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use openraft::error::{InstallSnapshotError, RaftError, RemoteError, Unreachable};
    use openraft::raft::{
        InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse,
    };

    use super::*;
    use crate::machine::StateMachineStore;
    use crate::raft::types::NodeInfo;
    use crate::store::{HostDb, LogStore};

    const OFFICE: &str = "530602";

    #[derive(Clone, Default)]
    struct Net {
        rafts: Arc<Mutex<BTreeMap<NodeId, Raft>>>,
        /// How long an empty append waits before its follower takes it.
        slow_ms: Arc<AtomicU64>,
        /// Replicas nothing reaches.
        cut_off: Arc<Mutex<BTreeSet<NodeId>>>,
    }

    struct Client {
        net: Net,
        target: NodeId,
    }

    type Rpc<T, E = openraft::error::Infallible> =
        Result<T, RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>>;

    impl Client {
        /// The target's Raft, or None when nothing reaches it.
        fn raft(&self) -> Option<Raft> {
            if self.net.cut_off.lock().unwrap().contains(&self.target) {
                return None;
            }
            Some(self.net.rafts.lock().unwrap()[&self.target].clone())
        }
    }

    fn cut_off<E: std::error::Error>() -> RPCError<NodeId, NodeInfo, RaftError<NodeId, E>> {
        let error = std::io::Error::other("cut off");
        RPCError::Unreachable(Unreachable::new(&error))
    }

    impl RaftNetworkFactory<TypeConfig> for Net {
        type Network = Client;
        async fn new_client(&mut self, target: NodeId, _: &NodeInfo) -> Client {
            Client {
                net: self.clone(),
                target,
            }
        }
    }

    impl RaftNetwork<TypeConfig> for Client {
        async fn append_entries(
            &mut self,
            rpc: AppendEntriesRequest<TypeConfig>,
            _: RPCOption,
        ) -> Rpc<AppendEntriesResponse<NodeId>> {
            let Some(raft) = self.raft() else {
                return Err(cut_off());
            };
            let slow = self.net.slow_ms.load(Ordering::SeqCst);
            if rpc.entries.is_empty() && slow > 0 {
                tokio::time::sleep(Duration::from_millis(slow)).await;
            }
            raft.append_entries(rpc)
                .await
                .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
        }

        async fn install_snapshot(
            &mut self,
            rpc: InstallSnapshotRequest<TypeConfig>,
            _: RPCOption,
        ) -> Rpc<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
            let Some(raft) = self.raft() else {
                return Err(cut_off());
            };
            raft.install_snapshot(rpc)
                .await
                .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
        }

        async fn vote(
            &mut self,
            rpc: VoteRequest<NodeId>,
            _: RPCOption,
        ) -> Rpc<VoteResponse<NodeId>> {
            let Some(raft) = self.raft() else {
                return Err(cut_off());
            };
            raft.vote(rpc)
                .await
                .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
        }
    }

    /// Three replicas of one office, replica 1 leading with its first entry applied. The
    /// host's heartbeat interval (openraft gives a confirmation that long); no timers: nothing
    /// but the test sends heartbeats or starts elections.
    async fn office(dir: &std::path::Path) -> (Net, BTreeMap<NodeId, Raft>) {
        let config = Arc::new(
            openraft::Config {
                heartbeat_interval: crate::host::HEARTBEAT_INTERVAL_MS,
                election_timeout_min: crate::host::ELECTION_TIMEOUT_MIN_MS,
                election_timeout_max: crate::host::ELECTION_TIMEOUT_MAX_MS,
                enable_heartbeat: false,
                enable_elect: false,
                ..Default::default()
            }
            .validate()
            .unwrap(),
        );
        let net = Net::default();
        let mut rafts = BTreeMap::new();
        for id in 1..=3u64 {
            let db = HostDb::open(&dir.join(format!("db{id}"))).expect("RocksDB opens");
            let machine = StateMachineStore::new(
                db.clone(),
                OFFICE.parse().unwrap(),
                None,
                vec![7; 32],
                Arc::new(liandong_domain::Calendar::china()),
            )
            .expect("the state machine opens");
            let raft = Raft::new(
                id,
                config.clone(),
                net.clone(),
                LogStore::new(db, OFFICE),
                machine,
            )
            .await
            .unwrap();
            rafts.insert(id, raft);
        }
        *net.rafts.lock().unwrap() = rafts.clone();
        let members: BTreeMap<NodeId, NodeInfo> =
            (1..=3).map(|id| (id, NodeInfo::default())).collect();
        rafts[&1].initialize(members).await.unwrap();
        rafts[&1]
            .wait(Some(Duration::from_secs(10)))
            .state(ServerState::Leader, "replica 1 leads")
            .await
            .unwrap();
        rafts[&1]
            .wait(Some(Duration::from_secs(10)))
            .applied_index_at_least(Some(1), "the leader's first entry")
            .await
            .unwrap();
        (net, rafts)
    }

    /// Followers that answer 150 ms late (a loaded host): openraft's confirmation, which gives
    /// them one heartbeat interval, fails; ours, within READ_CONFIRM_MS, confirms and returns
    /// the index the leader applied. Slower than READ_CONFIRM_MS, the read is refused in time.
    #[tokio::test]
    async fn a_read_is_confirmed_when_followers_answer_later_than_a_heartbeat() {
        let dir = tempfile::tempdir().unwrap();
        let (mut net, rafts) = office(dir.path()).await;
        let leader = &rafts[&1];
        let applied = leader.metrics().borrow().last_applied.unwrap().index;

        net.slow_ms.store(150, Ordering::SeqCst);
        let limit = Duration::from_millis(READ_CONFIRM_MS);
        assert_eq!(read_index(leader, 1, &mut net, limit).await, Ok(applied));
        assert!(
            leader.ensure_linearizable().await.is_err(),
            "openraft's confirmation waits 50 ms: it should miss answers 150 ms late"
        );

        net.slow_ms.store(READ_CONFIRM_MS + 300, Ordering::SeqCst);
        let started = Instant::now();
        let refused = read_index(leader, 1, &mut net, limit).await;
        assert!(
            matches!(refused, Err(Refused::NoQuorum { .. })),
            "{refused:?}"
        );
        assert!(started.elapsed() < limit + Duration::from_millis(250));

        // A follower is not asked to confirm anything: it says who leads.
        net.slow_ms.store(0, Ordering::SeqCst);
        assert_eq!(
            read_index(&rafts[&2], 2, &mut net, limit).await,
            Err(Refused::NotLeader { leader: Some(1) })
        );
    }

    /// Replica 2 is elected while nothing reaches replica 1, which still believes it leads: its
    /// read is refused (its voters hold the later vote), not served from its stale state.
    #[tokio::test]
    async fn a_deposed_leaders_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut net, rafts) = office(dir.path()).await;
        net.cut_off.lock().unwrap().insert(1);
        // Replica 3 grants a vote only once its lease of replica 1 ran out.
        tokio::time::sleep(Duration::from_millis(
            crate::host::ELECTION_TIMEOUT_MAX_MS * 3,
        ))
        .await;
        rafts[&2].trigger().elect().await.unwrap();
        rafts[&2]
            .wait(Some(Duration::from_secs(10)))
            .state(ServerState::Leader, "replica 2 leads")
            .await
            .unwrap();
        assert!(
            rafts[&1].metrics().borrow().state.is_leader(),
            "replica 1 heard nothing"
        );

        let limit = Duration::from_millis(READ_CONFIRM_MS);
        let refused = read_index(&rafts[&1], 1, &mut net, limit).await;
        assert!(
            matches!(refused, Err(Refused::Deposed { .. })),
            "{refused:?}"
        );
    }
}
