//! One replica of one office on this host: its Raft, its state machine, and the write and read
//! paths every API goes through.

use std::collections::BTreeMap;
use std::sync::Arc;

use liandong_domain::{Case, CaseId, OfficeCode};
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};

use crate::clock::Clock;
use crate::raft::types::{NodeId, NodeInfo, Operation, Raft, Request, Response};
use crate::store::keys::sm;
use crate::store::StateMachineStore;

#[derive(Clone)]
pub struct Replica {
    pub office: OfficeCode,
    pub id: NodeId,
    pub raft: Raft,
    pub state_machine: StateMachineStore,
    pub clock: Arc<Clock>,
}

/// Why a replica could not serve a request itself.
#[derive(Debug, thiserror::Error)]
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
pub struct Written {
    pub response: Response,
    pub log_index: u64,
}

impl Replica {
    /// Proposes `op`, stamped with this host's clock, and waits until it is committed on a
    /// quorum (each replica's log synced) and applied here.
    pub async fn write(&self, op: Operation) -> Result<Written, ReplicaError> {
        self.refuse_if_stopped()?;
        let floor = self.state_machine.last_at();
        let request = Request {
            at: self.clock.stamp(floor),
            op,
        };
        match self.raft.client_write(request).await {
            Ok(reply) => Ok(Written {
                response: reply.data,
                log_index: reply.log_id.index,
            }),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Err(ReplicaError::ForwardToLeader {
                    office: self.office.clone(),
                    leader: forward.leader_node,
                })
            }
            Err(error) => Err(self.unavailable(error)),
        }
    }

    /// Waits until this replica (the leader) has applied everything committed before the call:
    /// a read after it is linearizable (openraft's read index).
    pub async fn read_barrier(&self) -> Result<(), ReplicaError> {
        self.refuse_if_stopped()?;
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward))) => {
                Err(ReplicaError::ForwardToLeader {
                    office: self.office.clone(),
                    leader: forward.leader_node,
                })
            }
            Err(error) => Err(self.unavailable(error)),
        }
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

    /// This replica's copy of a case, as applied so far.
    pub fn case_document(&self, case_id: &CaseId) -> Result<Option<Vec<u8>>, ReplicaError> {
        self.state_machine
            .get(&sm::case(&case_id.to_string()))
            .map_err(|e| ReplicaError::Storage {
                office: self.office.clone(),
                reason: e.to_string(),
            })
    }

    pub fn case(&self, case_id: &CaseId) -> Result<Option<Case>, ReplicaError> {
        match self.case_document(case_id)? {
            None => Ok(None),
            Some(bytes) => Case::from_bytes(&bytes)
                .map(Some)
                .map_err(|e| ReplicaError::Storage {
                    office: self.office.clone(),
                    reason: e.to_string(),
                }),
        }
    }

    fn unavailable(&self, error: impl std::fmt::Display) -> ReplicaError {
        ReplicaError::Unavailable {
            office: self.office.clone(),
            reason: error.to_string(),
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
