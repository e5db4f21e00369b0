//! One simulated office: three replicas, each the node's real [`StateMachineStore`] over a real
//! RocksDB, fed from one committed log.
//!
//! Raft itself is abstracted: an office accepts a proposal when it has a leader and a quorum of
//! its replicas is up, and a committed entry is never lost (openraft's own tests and the
//! real-process chaos tests cover the protocol; here the subject is the state machine and the
//! federation above it). What is kept real is everything a replica can get wrong: the leader
//! applies at once and stamps time with its own (skewable) clock, followers apply late and in
//! batches of random size, a replica that crashed restarts from what it persisted, and one that
//! lags far behind is brought back by installing the leader's snapshot.

use liandong_domain::{Millis, OfficeCode};
use liandong_node::machine::StateMachineStore;
use liandong_node::raft::types::{Entry, Request, Response, StorageError};
use openraft::storage::RaftStateMachine;
use openraft::{
    CommittedLeaderId, EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftSnapshotBuilder,
};
use rand::rngs::StdRng;
use rand::Rng;

/// Replicas per office.
pub const REPLICAS: usize = 3;
/// Entries one follower catch-up step applies at most (random below it).
const APPLY_BATCH_MAX: usize = 8;

pub struct Replica {
    pub machine: StateMachineStore,
    /// The last log index applied (and persisted with the state it describes).
    pub applied: u64,
    pub up: bool,
}

/// Why an office could not take a proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    NoLeader,
    NoQuorum,
}

pub struct Office {
    pub code: OfficeCode,
    pub replicas: Vec<Replica>,
    /// Committed entries with the term that proposed them; index `i` (from 1) is `log[i - 1]`.
    pub log: Vec<(u64, Request)>,
    pub term: u64,
    pub leader: Option<usize>,
    /// Added to the leader's clock when it stamps an entry (a skewed host clock).
    pub skew_ms: Millis,
    /// Incremented at every leadership change: a pump of an older epoch is gone.
    pub epoch: u64,
    pub election_pending: bool,
}

/// A storage failure is a bug in the simulation's subject: it stops the run with its text.
pub type Fatal = String;

impl Office {
    pub fn new(code: OfficeCode, machines: Vec<StateMachineStore>) -> Office {
        Office {
            code,
            replicas: machines
                .into_iter()
                .map(|machine| Replica {
                    machine,
                    applied: 0,
                    up: true,
                })
                .collect(),
            log: Vec::new(),
            term: 1,
            leader: Some(0),
            skew_ms: 0,
            epoch: 1,
            election_pending: false,
        }
    }

    pub fn up_count(&self) -> usize {
        self.replicas.iter().filter(|r| r.up).count()
    }

    pub fn has_quorum(&self) -> bool {
        self.up_count() * 2 > self.replicas.len()
    }

    /// The leader's state machine, if the office can serve.
    pub fn leader_machine(&self) -> Option<&StateMachineStore> {
        let leader = self.leader?;
        (self.has_quorum() && self.replicas[leader].up).then(|| &self.replicas[leader].machine)
    }

    /// Proposes one operation stamped with the leader's clock (`now` is the federation's time
    /// on this office's leader, skew included). On success it is committed and applied on the
    /// leader; followers apply it later.
    pub fn propose(
        &mut self,
        now: Millis,
        op: liandong_node::raft::types::Operation,
    ) -> Result<Result<Response, Unavailable>, Fatal> {
        let Some(leader) = self.leader else {
            return Ok(Err(Unavailable::NoLeader));
        };
        if !self.has_quorum() || !self.replicas[leader].up {
            return Ok(Err(Unavailable::NoQuorum));
        }
        // As `Clock::stamp`: after what the state machine applied.
        let floor = self.replicas[leader].machine.last_at();
        let at = now
            .saturating_add(self.skew_ms)
            .max(floor.saturating_add(1));
        self.log.push((self.term, Request { at, op }));
        let index = self.log.len() as u64;
        let responses = self.apply_through(leader, index, usize::MAX)?;
        responses
            .into_iter()
            .last()
            .map(Ok)
            .ok_or_else(|| format!("{}: applying entry {index} gave no response", self.code))
    }

    fn entry(&self, index: u64) -> Entry {
        let (term, request) = self.log[(index - 1) as usize].clone();
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(request),
        }
    }

    /// Applies committed entries on replica `r` up to `through`, in batches of at most `batch`.
    fn apply_through(
        &mut self,
        r: usize,
        through: u64,
        batch: usize,
    ) -> Result<Vec<Response>, Fatal> {
        let mut responses = Vec::new();
        while self.replicas[r].applied < through {
            let from = self.replicas[r].applied + 1;
            let to = through.min(from.saturating_add(batch as u64 - 1));
            let entries: Vec<Entry> = (from..=to).map(|i| self.entry(i)).collect();
            let mut machine = self.replicas[r].machine.clone();
            let applied = futures::executor::block_on(machine.apply(entries))
                .map_err(|e| format!("{} replica {r}: apply {from}..={to}: {e}", self.code))?;
            responses.extend(applied);
            self.replicas[r].applied = to;
        }
        Ok(responses)
    }

    /// Followers that are up apply part of what they lag, in random batch sizes: the state
    /// hash must not depend on how entries were batched.
    pub fn catch_up_followers(&mut self, rng: &mut StdRng, all: bool) -> Result<(), Fatal> {
        let committed = self.log.len() as u64;
        for r in 0..self.replicas.len() {
            if !self.replicas[r].up || self.replicas[r].applied >= committed {
                continue;
            }
            let target = if all {
                committed
            } else {
                rng.gen_range(self.replicas[r].applied + 1..=committed)
            };
            let batch = rng.gen_range(1..=APPLY_BATCH_MAX);
            self.apply_through(r, target, batch)?;
        }
        Ok(())
    }

    pub fn crash(&mut self, r: usize) {
        self.replicas[r].up = false;
        if self.leader == Some(r) {
            self.leader = None;
            self.epoch += 1;
        }
    }

    /// A restarted replica resumes from what it persisted. If it lags by more than
    /// `snapshot_after` entries and a leader serves, it installs the leader's snapshot instead
    /// of replaying, as openraft does for a follower behind the purged log.
    pub fn restart(&mut self, r: usize, snapshot_after: u64) -> Result<bool, Fatal> {
        let persisted = self.replicas[r]
            .machine
            .applied()
            .map_err(|e| format!("{} replica {r}: {e}", self.code))?;
        let index = persisted.last_applied.map(|id| id.index).unwrap_or(0);
        if index != self.replicas[r].applied {
            return Err(format!(
                "{} replica {r}: restarted at applied index {index}, it had applied {}",
                self.code, self.replicas[r].applied
            ));
        }
        self.replicas[r].up = true;
        let lag = (self.log.len() as u64).saturating_sub(index);
        let Some(leader) = self.leader.filter(|&l| l != r && self.replicas[l].up) else {
            return Ok(false);
        };
        if lag <= snapshot_after {
            return Ok(false);
        }
        let mut source = self.replicas[leader].machine.clone();
        let snapshot = futures::executor::block_on(async {
            let mut builder = source.get_snapshot_builder().await;
            builder.build_snapshot().await
        })
        .map_err(|e| format!("{} replica {leader}: build snapshot: {e}", self.code))?;
        let through = snapshot.meta.last_log_id.map(|id| id.index).unwrap_or(0);
        // As openraft does: the file is copied into one the receiver opened, then installed.
        let mut target = self.replicas[r].machine.clone();
        futures::executor::block_on(async {
            let received = target.begin_receiving_snapshot().await?;
            let copied = std_file(snapshot.snapshot).and_then(|mut source| {
                let mut into = std_file(received)?;
                std::io::copy(&mut source, &mut into)?;
                Ok(into)
            });
            let received = copied.map_err(|e| {
                StorageError::from_io_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e)
            })?;
            let received = Box::new(tokio::fs::File::from_std(received));
            target.install_snapshot(&snapshot.meta, received).await
        })
        .map_err(|e| format!("{} replica {r}: install snapshot: {e}", self.code))?;
        self.replicas[r].applied = through;
        Ok(true)
    }

    /// Elects an up replica (any: the committed log is whole) if a quorum is up; the new leader
    /// applies everything committed before it serves.
    pub fn elect(&mut self, rng: &mut StdRng) -> Result<bool, Fatal> {
        self.election_pending = false;
        if self.leader.is_some() || !self.has_quorum() {
            return Ok(self.leader.is_some());
        }
        let up: Vec<usize> = (0..self.replicas.len())
            .filter(|&r| self.replicas[r].up)
            .collect();
        let leader = up[rng.gen_range(0..up.len())];
        self.term += 1;
        self.epoch += 1;
        self.leader = Some(leader);
        let committed = self.log.len() as u64;
        self.apply_through(leader, committed, usize::MAX)?;
        Ok(true)
    }
}

/// The file behind a snapshot's handle (no operation is in flight on it: nothing here awaits).
#[allow(clippy::boxed_local)] // openraft hands snapshots over boxed
fn std_file(file: Box<tokio::fs::File>) -> std::io::Result<std::fs::File> {
    (*file)
        .try_into_std()
        .map_err(|_| std::io::Error::other("an operation is in flight on the snapshot file"))
}
