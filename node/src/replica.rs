//! One replica of one office on this host: its Raft, its state machine, and the write and read
//! paths every API goes through.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use liandong_domain::{Case, CaseId, OfficeCode};
use openraft::error::{ChangeMembershipError, CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::ChangeMembers;

use crate::clock::Clock;
use crate::machine::StateMachineStore;
use crate::quiesce::{Cause, Quiet};
use crate::raft::network::OfficeNetwork;
use crate::raft::types::{NodeId, NodeInfo, Operation, Raft, Response};

pub mod batch;
pub mod read;

#[derive(Clone)]
pub struct Replica {
    pub office: OfficeCode,
    pub id: NodeId,
    pub raft: Raft,
    pub state_machine: StateMachineStore,
    pub clock: Arc<Clock>,
    /// Whether this replica's Raft timers run ([`crate::quiesce`]): a request it cannot serve
    /// itself wakes it.
    pub quiet: Quiet,
    /// The office's data key and petitioner-key secret: this host seals personal data before
    /// proposing it and opens it for allowed readers and the wire ([`crate::personal`]).
    pub seal: Arc<crate::personal::OfficeSeal>,
    /// Gathers this office's officer writes into shared log entries ([`batch`]).
    batcher: batch::Batcher,
    /// The office's Raft network: a read confirms the leadership through it ([`read`]).
    network: OfficeNetwork,
}

/// Why a replica could not serve a request itself.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReplicaError {
    /// Not the leader: the request belongs at `leader` (None while an election runs).
    #[error("not the leader of office {office}")]
    ForwardToLeader {
        office: OfficeCode,
        leader: Option<NodeInfo>,
    },
    #[error("office {office} cannot serve now: {reason}")]
    Unavailable { office: OfficeCode, reason: String },
    #[error("storage of office {office}: {reason}")]
    Storage { office: OfficeCode, reason: String },
}

/// The outcome of a committed write.
#[derive(Debug)]
pub struct Written {
    pub response: Response,
    pub log_index: u64,
}

/// Why a write was not committed, as a replica reports it.
fn write_error(
    office: &OfficeCode,
    error: RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>,
) -> ReplicaError {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
            ReplicaError::ForwardToLeader {
                office: office.clone(),
                leader: forward.leader_node,
            }
        }
        error => ReplicaError::Unavailable {
            office: office.clone(),
            reason: error.to_string(),
        },
    }
}

impl Replica {
    /// One office's replica on this host; starts the task that gathers its writes.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        office: OfficeCode,
        id: NodeId,
        raft: Raft,
        network: OfficeNetwork,
        state_machine: StateMachineStore,
        clock: Arc<Clock>,
        quiet: Quiet,
        seal: Arc<crate::personal::OfficeSeal>,
    ) -> Replica {
        let batcher = batch::Batcher::start(batch::Proposer {
            office: office.clone(),
            raft: raft.clone(),
            clock: clock.clone(),
            state_machine: state_machine.clone(),
        });
        Replica {
            office,
            id,
            raft,
            state_machine,
            clock,
            quiet,
            seal,
            batcher,
            network,
        }
    }

    /// Proposes `op`, stamped with this host's clock (in an entry it may share with other
    /// writes: [`batch`]), and waits until it is committed on a quorum (each replica's log
    /// synced) and applied here.
    pub async fn write(&self, op: Operation) -> Result<Written, ReplicaError> {
        self.refuse_if_stopped()?;
        let written = self.batcher.write(op).await;
        if written.is_err() {
            self.quiet.wake(Cause::Client);
        }
        written
    }

    /// Waits until this replica (the leader) has applied everything committed before the call:
    /// a read after it is linearizable (a read index).
    ///
    /// The leadership is confirmed by [`read::read_index`], which gives the voters
    /// [`read::READ_CONFIRM_MS`] to accept this leader's vote. openraft's own confirmation
    /// (`ensure_linearizable`) gives them one heartbeat interval, 50 ms, which a loaded host
    /// misses although every member is alive: when a supervisor's fresh query had a whole
    /// city's offices confirm at once, one answer in eight came back partial. openraft's path
    /// is kept for a leader that has committed nothing in its own term yet (just elected).
    /// A leader that could not confirm tries again, [`READ_CONFIRM_ATTEMPTS`] times in all,
    /// before it answers "unavailable"; a follower or a deposed leader answers at once (the
    /// client asks the leader).
    pub async fn read_barrier(&self) -> Result<(), ReplicaError> {
        let mut attempt = 1;
        loop {
            self.refuse_if_stopped()?;
            let limit = Duration::from_millis(read::READ_CONFIRM_MS);
            let mut network = self.network.clone();
            let error = match read::read_index(&self.raft, self.id, &mut network, limit).await {
                Ok(_) => return Ok(()),
                Err(read::Refused::NotReady) => return self.read_barrier_of_openraft().await,
                Err(read::Refused::NotLeader { leader }) => {
                    self.quiet.wake(Cause::Client);
                    return Err(ReplicaError::ForwardToLeader {
                        office: self.office.clone(),
                        leader: leader.and_then(|id| self.membership().nodes.get(&id).cloned()),
                    });
                }
                Err(read::Refused::Deposed { higher }) => {
                    self.quiet.wake(Cause::Client);
                    tracing::info!(office = %self.office, %higher, "read: deposed, refused");
                    return Err(ReplicaError::ForwardToLeader {
                        office: self.office.clone(),
                        leader: None,
                    });
                }
                Err(error) => error,
            };
            self.confirm_failed(&mut attempt, error).await?;
        }
    }

    /// After a leadership confirmation that failed: gives up on the last attempt or once this
    /// replica no longer leads ("unavailable": the client turns to another host), else pauses
    /// before the next attempt.
    async fn confirm_failed(
        &self,
        attempt: &mut u32,
        error: impl std::fmt::Display,
    ) -> Result<(), ReplicaError> {
        self.quiet.wake(Cause::Client);
        if *attempt >= READ_CONFIRM_ATTEMPTS || !self.is_leader() {
            return Err(self.unavailable(error));
        }
        tracing::info!(office = %self.office, attempt = *attempt, %error, "read: leadership not confirmed, trying again");
        tokio::time::sleep(Duration::from_millis(
            READ_CONFIRM_PAUSE_MS * u64::from(*attempt),
        ))
        .await;
        *attempt += 1;
        Ok(())
    }

    /// The read barrier through openraft's `ensure_linearizable` (a just elected leader's: its
    /// read index is its first entry, which only openraft knows), tried as often as
    /// [`Replica::read_barrier`].
    async fn read_barrier_of_openraft(&self) -> Result<(), ReplicaError> {
        let mut attempt = 1;
        loop {
            self.refuse_if_stopped()?;
            match self.raft.ensure_linearizable().await {
                Ok(_) => return Ok(()),
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward))) => {
                    self.quiet.wake(Cause::Client);
                    return Err(ReplicaError::ForwardToLeader {
                        office: self.office.clone(),
                        leader: forward.leader_node,
                    });
                }
                Err(error) => self.confirm_failed(&mut attempt, error).await?,
            }
        }
    }

    /// Whether this replica leads its office now.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state.is_leader()
    }

    /// A replica whose Raft stopped (a failed storage write) refuses at once, without asking
    /// its stopped Raft (which logs an error for every request it cannot take): the API answers
    /// "unavailable" and the client turns to another replica.
    fn refuse_if_stopped(&self) -> Result<(), ReplicaError> {
        match &self.raft.metrics().borrow().running_state {
            Ok(()) => Ok(()),
            Err(fatal) => Err(ReplicaError::Unavailable {
                office: self.office.clone(),
                reason: format!("replica {} has stopped: {fatal}", self.id),
            }),
        }
    }

    /// This replica's copy of a case with its whole history, as applied so far.
    pub fn case(&self, case_id: &CaseId) -> Result<Option<Case>, ReplicaError> {
        self.state_machine
            .case(case_id)
            .map_err(|reason| ReplicaError::Storage {
                office: self.office.clone(),
                reason,
            })
    }

    /// [`Replica::case`] as the case engine's document.
    pub fn case_document(&self, case_id: &CaseId) -> Result<Option<Vec<u8>>, ReplicaError> {
        Ok(self.case(case_id)?.map(|case| case.to_bytes()))
    }

    fn unavailable(&self, error: impl std::fmt::Display) -> ReplicaError {
        ReplicaError::Unavailable {
            office: self.office.clone(),
            reason: error.to_string(),
        }
    }
}

/// How many times a leader tries to confirm its leadership for one read ([`Replica::read_barrier`]).
pub const READ_CONFIRM_ATTEMPTS: u32 = 2;
/// The pause before a leader's next try to confirm a read, times the tries so far.
pub const READ_CONFIRM_PAUSE_MS: u64 = 20;

/// An office never runs with fewer voters than this: one voter cannot survive losing its host.
pub const VOTERS_MIN: usize = 2;

/// The smallest number of voters that is a majority of `voters` voters.
pub fn majority(voters: usize) -> usize {
    voters / 2 + 1
}

/// The membership of an office's Raft group as one replica knows it (the leader's is the
/// office's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipView {
    /// Every voter: during a change, the union of the joint configs' voters.
    pub voters: BTreeSet<NodeId>,
    /// The voters of the config the office is heading to (the last of a joint config): the
    /// config an interrupted change is finished towards.
    pub target_voters: BTreeSet<NodeId>,
    /// Members that receive the log but do not vote.
    pub learners: BTreeSet<NodeId>,
    /// Whether a change stopped half-way (joint config: every commit needs both majorities).
    pub joint: bool,
    /// Log index of this membership (0 before the first one).
    pub log_index: u64,
    /// Where each member is reached.
    pub nodes: BTreeMap<NodeId, NodeInfo>,
}

/// Why a membership change was not made. Forwarding is its own variant: it is not a failure.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// Only the leader changes the membership: the request belongs at `leader`.
    #[error("replica is not the leader of office {office}")]
    NotLeader {
        office: OfficeCode,
        leader: Option<NodeInfo>,
    },
    /// Another change of this office has not finished (here, or an uncommitted one in the log).
    #[error("a membership change of office {office} is already in progress: {detail}")]
    InProgress { office: OfficeCode, detail: String },
    /// The replica is not a member (remove) or has no slot in the manifest (add).
    #[error("{0}")]
    UnknownReplica(String),
    /// The change would endanger the office (quorum), or makes no sense (already a voter).
    #[error("{0}")]
    Refused(String),
    /// A step did not finish in time; the message says what state it left.
    #[error("{0}")]
    Timeout(String),
    /// Raft is shutting down or failed; nothing more is known.
    #[error("office {office} cannot change its membership now: {reason}")]
    Unavailable { office: OfficeCode, reason: String },
}

/// Why changing the voters from `before` to `after` must be refused, given which voters answer
/// now (`live`); None when the change is safe. Both configs need a live majority: the joint
/// config a change passes through commits only with a majority of each, and the office must keep
/// serving under the new one. Pure, so the rule is unit-tested apart from Raft.
pub fn quorum_refusal(
    before: &BTreeSet<NodeId>,
    after: &BTreeSet<NodeId>,
    live: &BTreeSet<NodeId>,
) -> Option<String> {
    if after.len() < VOTERS_MIN {
        return Some(format!(
            "it would leave {} voter(s) ({}); an office keeps at least {VOTERS_MIN}",
            after.len(),
            ids(after)
        ));
    }
    for (config, name) in [(after, "new"), (before, "current")] {
        let up = config.intersection(live).count();
        if up < majority(config.len()) {
            let down: BTreeSet<NodeId> = config.difference(live).copied().collect();
            return Some(format!(
                "it would lose quorum: only {up} of the {name} voters ({}) answer, a majority is {} \
                 (not answering: {}); bring them back first",
                ids(config),
                majority(config.len()),
                ids(&down)
            ));
        }
    }
    None
}

/// `1,2,3` (or `none`), for messages.
pub fn ids(set: &BTreeSet<NodeId>) -> String {
    if set.is_empty() {
        return "none".to_string();
    }
    set.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

/// Membership changes on a replica that leads its office. Each waits for its own commit; the
/// caller (the Membership service) orders the steps and checks quorum before each.
impl Replica {
    /// The membership this replica has in effect (possibly not yet committed).
    pub fn membership(&self) -> MembershipView {
        let metrics = self.raft.metrics().borrow().clone();
        let stored = &metrics.membership_config;
        let membership = stored.membership();
        let configs = membership.get_joint_config();
        MembershipView {
            voters: membership.voter_ids().collect(),
            target_voters: configs.last().cloned().unwrap_or_default(),
            learners: membership.learner_ids().collect(),
            joint: configs.len() > 1,
            log_index: stored.log_id().map(|log_id| log_id.index).unwrap_or(0),
            nodes: membership
                .nodes()
                .map(|(id, node)| (*id, node.clone()))
                .collect(),
        }
    }

    /// Ok when this replica leads its office now; else where the leader is.
    pub fn ensure_leader(&self) -> Result<(), MembershipError> {
        let metrics = self.raft.metrics().borrow().clone();
        if metrics.state.is_leader() {
            return Ok(());
        }
        let leader = metrics.current_leader.and_then(|id| {
            metrics
                .membership_config
                .membership()
                .get_node(&id)
                .cloned()
        });
        Err(MembershipError::NotLeader {
            office: self.office.clone(),
            leader,
        })
    }

    /// The last log index this replica has appended (a learner caught up to it is current).
    pub fn last_log_index(&self) -> u64 {
        self.raft.metrics().borrow().last_log_index.unwrap_or(0)
    }

    /// Proposes one membership change and waits (at most `limit`) for it to commit; returns the
    /// log index of the membership now in effect. openraft runs a voter change as a joint config
    /// then a uniform one, and refuses while an earlier change is uncommitted.
    pub async fn change_members(
        &self,
        change: ChangeMembers<NodeId, NodeInfo>,
        retain: bool,
        limit: Duration,
    ) -> Result<u64, MembershipError> {
        let described = format!("{change:?}");
        match tokio::time::timeout(limit, self.raft.change_membership(change, retain)).await {
            Err(_elapsed) => Err(MembershipError::Timeout(format!(
                "office {}: the change {described} was proposed but not committed within {} s; \
                 `liandong status` shows where the membership stands",
                self.office,
                limit.as_secs()
            ))),
            Ok(Ok(reply)) => Ok(reply.log_id.index),
            Ok(Err(error)) => Err(self.membership_error(error)),
        }
    }

    /// Adds `id` as a learner (it receives the log but does not vote) without waiting; returns
    /// the log index of the membership that names it.
    pub async fn add_learner(&self, id: NodeId, node: NodeInfo) -> Result<u64, MembershipError> {
        match self.raft.add_learner(id, node, false).await {
            Ok(reply) => Ok(reply.log_id.index),
            Err(error) => Err(self.membership_error(error)),
        }
    }

    /// Waits until the leader has replicated to `id` everything up to `index`; returns how long
    /// that took. Fails if leadership moves or `limit` passes first.
    pub async fn wait_replicated(
        &self,
        id: NodeId,
        index: u64,
        limit: Duration,
    ) -> Result<Duration, MembershipError> {
        let start = Instant::now();
        let mut metrics = self.raft.metrics();
        loop {
            {
                let now = metrics.borrow_and_update();
                if !now.state.is_leader() {
                    return Err(MembershipError::NotLeader {
                        office: self.office.clone(),
                        leader: None,
                    });
                }
                let matched = now
                    .replication
                    .as_ref()
                    .and_then(|replication| replication.get(&id).copied().flatten());
                if matched.is_some_and(|log_id| log_id.index >= index) {
                    return Ok(start.elapsed());
                }
            }
            let remaining = limit.saturating_sub(start.elapsed());
            match tokio::time::timeout(remaining, metrics.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_closed)) => {
                    return Err(MembershipError::Unavailable {
                        office: self.office.clone(),
                        reason: "raft stopped".to_string(),
                    })
                }
                Err(_elapsed) => {
                    return Err(MembershipError::Timeout(format!(
                        "replica {id} of office {} did not catch up to log index {index} within \
                         {} ms",
                        self.office,
                        limit.as_millis()
                    )))
                }
            }
        }
    }

    fn membership_error(
        &self,
        error: RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>,
    ) -> MembershipError {
        match error {
            RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
                MembershipError::NotLeader {
                    office: self.office.clone(),
                    leader: forward.leader_node,
                }
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::InProgress(in_progress),
            )) => MembershipError::InProgress {
                office: self.office.clone(),
                detail: in_progress.to_string(),
            },
            RaftError::APIError(ClientWriteError::ChangeMembershipError(other)) => {
                MembershipError::Refused(format!("office {}: {other}", self.office))
            }
            RaftError::Fatal(fatal) => MembershipError::Unavailable {
                office: self.office.clone(),
                reason: fatal.to_string(),
            },
        }
    }
}

/// The replicas this host carries, by office.
#[derive(Clone, Default)]
pub struct Replicas {
    by_office: Arc<BTreeMap<OfficeCode, Replica>>,
}

impl Replicas {
    pub fn new(replicas: Vec<Replica>) -> Replicas {
        let by_office = replicas
            .into_iter()
            .map(|replica| (replica.office.clone(), replica))
            .collect();
        Replicas {
            by_office: Arc::new(by_office),
        }
    }

    pub fn get(&self, office: &OfficeCode) -> Option<&Replica> {
        self.by_office.get(office)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Replica> {
        self.by_office.values()
    }

    pub fn offices(&self) -> Vec<String> {
        self.by_office.keys().map(|code| code.to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    #[test]
    fn removing_a_live_follower_of_three_is_allowed() {
        assert_eq!(
            quorum_refusal(&set(&[1, 2, 3]), &set(&[1, 3]), &set(&[1, 2, 3])),
            None
        );
        // A dead voter may be removed while the others answer.
        assert_eq!(
            quorum_refusal(&set(&[1, 2, 3]), &set(&[1, 3]), &set(&[1, 3])),
            None
        );
    }

    #[test]
    fn removal_below_two_voters_is_refused() {
        let why = quorum_refusal(&set(&[1, 2]), &set(&[1]), &set(&[1, 2])).unwrap();
        assert!(why.contains("at least 2"), "{why}");
    }

    #[test]
    fn removal_that_leaves_a_dead_majority_is_refused() {
        // 2 is down: removing 3 leaves {1,2}, of which only 1 answers.
        let why = quorum_refusal(&set(&[1, 2, 3]), &set(&[1, 2]), &set(&[1, 3])).unwrap();
        assert!(
            why.contains("lose quorum") && why.contains("not answering: 2"),
            "{why}"
        );
        // Four voters with two down: the current config has no majority of live voters.
        let why = quorum_refusal(&set(&[1, 2, 3, 4]), &set(&[1, 2, 3]), &set(&[1, 2])).unwrap();
        assert!(why.contains("lose quorum"), "{why}");
    }

    #[test]
    fn adding_a_caught_up_voter_while_one_is_down_is_allowed() {
        assert_eq!(
            quorum_refusal(
                &set(&[1, 3, 4, 5]),
                &set(&[1, 2, 3, 4, 5]),
                &set(&[2, 3, 4, 5])
            ),
            None
        );
    }

    #[test]
    fn majorities() {
        assert_eq!(
            [1, 2, 3, 4, 5].map(majority),
            [1, 2, 2, 3, 3],
            "majority of 1..=5 voters"
        );
        assert_eq!(ids(&set(&[])), "none");
        assert_eq!(ids(&set(&[3, 1])), "1,3");
    }
}
