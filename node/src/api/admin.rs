//! Host administration: what `liandong status` shows.

use federation_proto::v1::admin_server::Admin;
use federation_proto::v1::{ReplicaStatus, StatusReply, StatusRequest};
use tonic::{Request, Response, Status};

use crate::replica::Replicas;

pub struct AdminService {
    pub host: String,
    pub replicas: Replicas,
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusReply>, Status> {
        let mut replicas = Vec::new();
        for replica in self.replicas.iter() {
            let metrics = replica.raft.metrics().borrow().clone();
            let applied = replica
                .state_machine
                .applied()
                .map_err(|e| Status::internal(e.to_string()))?;
            replicas.push(ReplicaStatus {
                office: replica.office.to_string(),
                id: replica.id,
                state: format!("{:?}", metrics.state),
                leader: metrics.current_leader,
                term: metrics.current_term,
                last_applied: applied.last_applied.map(|log_id| log_id.index).unwrap_or(0),
                last_log: metrics.last_log_index.unwrap_or(0),
                outbox_pending: 0,
                voters: metrics.membership_config.membership().voter_ids().collect(),
                cases: applied.cases,
                state_hash: applied.state_hash,
            });
        }
        Ok(Response::new(StatusReply {
            host: self.host.clone(),
            pid: std::process::id(),
            replicas,
        }))
    }
}
