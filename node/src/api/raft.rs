//! The raft transport server: hands each request to the named office's local replica (and tells
//! its quiescence what the peer sent: entries, a new leader, a snapshot or a vote request wake a
//! quiesced replica; an accepted append renews a woken follower's election).

use federation_proto::v1::raft_transport_server::RaftTransport;
use federation_proto::v1::{ProposeReply, ProposeRequest, RaftReply, RaftRequest};
use liandong_domain::OfficeCode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::raft::network::{decode_payload, encode_payload};
use crate::raft::types::Operation;
use openraft::raft::AppendEntriesResponse;

use crate::quiesce::Cause;
use crate::replica::{Replica, Replicas};

pub struct RaftService {
    pub replicas: Replicas,
}

impl RaftService {
    /// The replica addressed, once the peer's certificate shows it carries the same office.
    fn raft_for_peer(&self, request: &Request<RaftRequest>) -> Result<Replica, Status> {
        let peer = crate::tls::peer_offices(request)?;
        let office = &request.get_ref().office;
        if !peer.speaks_for(office) {
            return Err(Status::permission_denied(format!(
                "the peer's certificate does not name office {office}: only its replicas replicate it"
            )));
        }
        self.raft_for(request.get_ref())
    }

    fn raft_for(&self, request: &RaftRequest) -> Result<Replica, Status> {
        let office: OfficeCode = request.office.parse().map_err(|e| {
            Status::invalid_argument(format!("bad office code {:?}: {e}", request.office))
        })?;
        let replica = self.replicas.get(&office).ok_or_else(|| {
            Status::not_found(format!("this host carries no replica of office {office}"))
        })?;
        if replica.id != request.target {
            return Err(Status::not_found(format!(
                "this host carries replica {} of office {office}, not {}",
                replica.id, request.target
            )));
        }
        Ok(replica.clone())
    }
}

fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, Status> {
    decode_payload(payload)
        .map_err(|e| Status::invalid_argument(format!("raft payload does not decode: {e}")))
}

fn reply<T: Serialize, E: Serialize>(result: Result<T, E>) -> Result<Response<RaftReply>, Status> {
    let encoded = match &result {
        Ok(value) => RaftReply {
            payload: encode_payload(value),
            error: Vec::new(),
        },
        Err(error) => RaftReply {
            payload: Vec::new(),
            error: encode_payload(error),
        },
    };
    Ok(Response::new(encoded))
}

#[tonic::async_trait]
impl RaftTransport for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let replica = self.raft_for_peer(&request)?;
        let append: openraft::raft::AppendEntriesRequest<_> =
            decode(&request.into_inner().payload)?;
        replica
            .quiet
            .before_append(&append.vote, append.entries.len());
        let result = replica.raft.append_entries(append).await;
        if matches!(
            result,
            Ok(AppendEntriesResponse::Success
                | AppendEntriesResponse::PartialSuccess(_)
                | AppendEntriesResponse::Conflict)
        ) {
            replica.quiet.heard_from_leader();
        }
        reply(result)
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let replica = self.raft_for_peer(&request)?;
        let request = request.into_inner();
        replica.quiet.wake(Cause::Vote);
        reply(replica.raft.vote(decode(&request.payload)?).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let replica = self.raft_for_peer(&request)?;
        let request = request.into_inner();
        replica.quiet.wake(Cause::Leader);
        reply(
            replica
                .raft
                .install_snapshot(decode(&request.payload)?)
                .await,
        )
    }

    async fn propose(
        &self,
        request: Request<ProposeRequest>,
    ) -> Result<Response<ProposeReply>, Status> {
        let peer = crate::tls::peer_offices(&request)?;
        let office_code = &request.get_ref().office;
        if !peer.speaks_for(office_code) {
            return Err(Status::permission_denied(format!(
                "the peer's certificate does not name office {office_code}: only its replicas \
                 propose through its leader"
            )));
        }
        let office: OfficeCode = office_code
            .parse()
            .map_err(|e| Status::invalid_argument(format!("bad office code: {e}")))?;
        let replica = self.replicas.get(&office).ok_or_else(|| {
            Status::not_found(format!("this host carries no replica of office {office}"))
        })?;
        let op: Operation = decode(&request.get_ref().operation)?;
        if !op.forwardable() {
            return Err(Status::permission_denied(
                "only account changes and audit batches are proposed through another replica",
            ));
        }
        let written = replica
            .write(op)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(ProposeReply {
            response: encode_payload(&written.response),
        }))
    }
}
