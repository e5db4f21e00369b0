//! Proposing an operation from any replica of an office: written here when this replica leads,
//! else sent to the leader's Propose RPC (replica to replica, host certificates only). Account
//! changes and audit batches go this way ([`Operation::forwardable`]); officers' case work is
//! forwarded as the officer's own call instead, and checked again at the leader.

use std::time::Duration;

use federation_proto::v1::raft_transport_client::RaftTransportClient;
use federation_proto::v1::ProposeRequest;
use liandong_domain::OfficeCode;
use tokio::time::Instant;
use tonic::Status;

use crate::raft::network::Transport;
use crate::raft::types::{Operation, Response};
use crate::replica::{ReplicaError, Replicas};

/// How long a proposal may wait for a leader and a quorum.
pub const PROPOSE_DEADLINE_MS: u64 = 5_000;
/// Pause between attempts while an election runs.
pub const PROPOSE_RETRY_PAUSE_MS: u64 = 25;

/// Proposes operations for the offices this host carries.
#[derive(Clone)]
pub struct Proposer {
    pub replicas: Replicas,
    pub transport: Transport,
}

impl Proposer {
    /// Commits `op` in `office`'s log (through its leader) and returns what applying answered.
    pub async fn propose(&self, office: &OfficeCode, op: Operation) -> Result<Response, Status> {
        debug_assert!(
            op.forwardable(),
            "only forwardable operations are proposed here"
        );
        let replica = self.replicas.get(office).ok_or_else(|| {
            Status::not_found(format!("office {office} is not carried by this host"))
        })?;
        let deadline = Instant::now() + Duration::from_millis(PROPOSE_DEADLINE_MS);
        let mut last;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, replica.write(op.clone())).await {
                Ok(Ok(written)) => return Ok(written.response),
                Ok(Err(ReplicaError::ForwardToLeader {
                    leader: Some(leader),
                    ..
                })) => match tokio::time::timeout(
                    remaining,
                    self.at_leader(office, &leader.raft_addr, &op),
                )
                .await
                {
                    Ok(Ok(response)) => return Ok(response),
                    Ok(Err(status)) if status.code() != tonic::Code::Unavailable => {
                        return Err(status)
                    }
                    Ok(Err(status)) => last = status.message().to_string(),
                    Err(_) => last = format!("leader on {} did not answer", leader.host),
                },
                Ok(Err(error)) => last = error.to_string(),
                Err(_) => last = "no quorum acknowledged in time".to_string(),
            }
            if Instant::now() >= deadline {
                return Err(Status::unavailable(format!(
                    "office {office} cannot commit now: {last}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(PROPOSE_RETRY_PAUSE_MS)).await;
        }
    }

    async fn at_leader(
        &self,
        office: &OfficeCode,
        raft_addr: &str,
        op: &Operation,
    ) -> Result<Response, Status> {
        let channel = self
            .transport
            .channel(raft_addr)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let request = ProposeRequest {
            office: office.to_string(),
            operation: crate::raft::network::encode_payload(op),
        };
        let reply = RaftTransportClient::new(channel)
            .propose(request)
            .await?
            .into_inner();
        crate::raft::network::decode_payload(&reply.response)
            .map_err(|e| Status::internal(format!("the leader's answer does not decode: {e}")))
    }
}
