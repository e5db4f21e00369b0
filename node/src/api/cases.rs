//! The officer API. Any replica takes a request: a write goes to the office's leader (forwarded
//! at most [`MAX_FORWARD_HOPS`] times), a linearizable read waits on the leader's read index.

use std::future::Future;
use std::time::Duration;

use federation_proto::v1::cases_client::CasesClient;
use federation_proto::v1::cases_server::Cases;
use federation_proto::v1::{
    ActRequest, CaseReply, Consistency, FileRequest, OrderReply, OrdersReply, OrdersRequest,
    ShowRequest, SuperviseRequest,
};
use liandong_domain::{CaseCommand, CaseId, OfficeCode, Registration};
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::{case_reply, domain_error};
use crate::raft::network::Transport;
use crate::raft::types::Operation;
use crate::replica::{Replica, ReplicaError, Replicas};

/// A request is passed from replica to replica at most this often (a leader change mid-way).
pub const MAX_FORWARD_HOPS: u32 = 2;
/// How long a write may wait for a leader and a quorum before the officer is told to retry.
pub const WRITE_DEADLINE_MS: u64 = 5_000;
/// How long one forward to the leader may take before the replica looks for a leader again.
pub const FORWARD_TIMEOUT_MS: u64 = 1_500;
/// Pause between attempts while an election runs.
pub const RETRY_PAUSE_MS: u64 = 25;

pub struct CaseService {
    pub replicas: Replicas,
    pub transport: Transport,
}

fn parse_office(code: &str) -> Result<OfficeCode, Status> {
    code.parse()
        .map_err(|e| Status::invalid_argument(format!("bad office code {code:?}: {e}")))
}

fn parse_case_id(id: &str) -> Result<CaseId, Status> {
    id.parse()
        .map_err(|e| Status::invalid_argument(format!("bad case id {id:?}: {e}")))
}

/// The office named as holding a case, or the office in its id.
fn holder(office: &str, case_id: &CaseId) -> Result<OfficeCode, Status> {
    if office.is_empty() {
        Ok(case_id.office.clone())
    } else {
        parse_office(office)
    }
}

fn request_id(id: String) -> Option<String> {
    (!id.is_empty()).then_some(id)
}

/// Statuses after which another attempt may succeed (no leader, leader moved, link down).
fn retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Aborted
    )
}

impl CaseService {
    fn replica(&self, office: &OfficeCode) -> Result<&Replica, Status> {
        self.replicas.get(office).ok_or_else(|| {
            Status::not_found(format!(
                "office {office} is not carried by this host (it carries {})",
                self.replicas.offices().join(", ")
            ))
        })
    }

    fn client(&self, api_addr: &str) -> Result<CasesClient<Channel>, Status> {
        let channel = self
            .transport
            .channel(api_addr)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(CasesClient::new(channel))
    }

    /// Runs `attempt` here, or `forward` at the leader, until one answers or the deadline passes.
    async fn with_leader<T, A, AF, F, FF>(
        &self,
        office: &OfficeCode,
        hops: u32,
        attempt: A,
        forward: F,
    ) -> Result<T, Status>
    where
        A: Fn(Replica) -> AF,
        AF: Future<Output = Result<T, ReplicaError>>,
        F: Fn(CasesClient<Channel>) -> FF,
        FF: Future<Output = Result<Response<T>, Status>>,
    {
        let replica = self.replica(office)?.clone();
        let deadline = Instant::now() + Duration::from_millis(WRITE_DEADLINE_MS);
        let mut last_reason;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, attempt(replica.clone())).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(ReplicaError::ForwardToLeader {
                    leader: Some(leader),
                    ..
                })) if hops < MAX_FORWARD_HOPS => {
                    // A frozen or cut-off leader must not hold the request past its deadline:
                    // each forward gets a slice of it, and the next attempt finds the new leader.
                    let slice = Instant::now() + Duration::from_millis(FORWARD_TIMEOUT_MS);
                    let limit = slice
                        .min(deadline)
                        .saturating_duration_since(Instant::now());
                    match tokio::time::timeout(limit, forward(self.client(&leader.api_addr)?)).await
                    {
                        Ok(Ok(reply)) => return Ok(reply.into_inner()),
                        Ok(Err(status)) if retryable(&status) => {
                            last_reason = status.message().to_string()
                        }
                        Ok(Err(status)) => return Err(status),
                        Err(_elapsed) => {
                            last_reason = format!("leader {} did not answer in time", leader.host)
                        }
                    }
                }
                Ok(Err(ReplicaError::Storage { reason, .. })) => {
                    return Err(Status::internal(reason))
                }
                // This replica stopped (a failed storage write) and stays stopped until its host
                // restarts: waiting cannot help, another replica must answer.
                Ok(Err(error)) if replica.raft.metrics().borrow().running_state.is_err() => {
                    return Err(Status::unavailable(error.to_string()))
                }
                Ok(Err(error)) => last_reason = error.to_string(),
                Err(_elapsed) => last_reason = "no quorum acknowledged in time".to_string(),
            }
            if Instant::now() >= deadline {
                return Err(Status::unavailable(format!(
                    "office {office} cannot serve now: {last_reason}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS)).await;
        }
    }

    async fn write(
        &self,
        office: &OfficeCode,
        op: Operation,
        hops: u32,
        forward: impl ForwardWrite,
    ) -> Result<CaseReply, Status> {
        let written = self
            .with_leader(
                office,
                hops,
                |replica| write_traced(replica, op.clone()),
                |client| {
                    let forward = forward.clone();
                    async move {
                        forward.send(client).await.map(|reply| {
                            reply.map(|r| {
                                (
                                    crate::raft::types::Response::Case {
                                        document: r.case_document,
                                    },
                                    r.log_index,
                                )
                            })
                        })
                    }
                },
            )
            .await?;
        case_reply(written.0, written.1)
    }
}

/// Writes `op` at `replica` (the leader) and traces the committed write
/// ([`crate::trace::written`]).
async fn write_traced(
    replica: Replica,
    op: Operation,
) -> Result<(crate::raft::types::Response, u64), ReplicaError> {
    let written = replica.write(op).await?;
    crate::trace::written(&replica.office, &written.response, written.log_index);
    Ok((written.response, written.log_index))
}

/// A request that can be re-sent to the leader, one hop further.
trait ForwardWrite: Clone {
    fn send(
        self,
        client: CasesClient<Channel>,
    ) -> impl Future<Output = Result<Response<CaseReply>, Status>>;
}

impl ForwardWrite for FileRequest {
    async fn send(
        mut self,
        mut client: CasesClient<Channel>,
    ) -> Result<Response<CaseReply>, Status> {
        self.hops += 1;
        client.file(self).await
    }
}

impl ForwardWrite for ActRequest {
    async fn send(
        mut self,
        mut client: CasesClient<Channel>,
    ) -> Result<Response<CaseReply>, Status> {
        self.hops += 1;
        client.act(self).await
    }
}

#[tonic::async_trait]
impl Cases for CaseService {
    async fn file(&self, request: Request<FileRequest>) -> Result<Response<CaseReply>, Status> {
        let request = request.into_inner();
        let office = parse_office(&request.office)?;
        let proto = request
            .registration
            .clone()
            .ok_or_else(|| Status::invalid_argument("registration is missing"))?;
        let registration = Registration::try_from(proto).map_err(domain_error)?;
        // Refuse malformed input before it reaches the log: nothing is proposed, nothing changes.
        registration.validate().map_err(domain_error)?;
        let op = Operation::File {
            registration,
            request_id: request_id(request.request_id.clone()),
        };
        let hops = request.hops;
        self.write(&office, op, hops, request)
            .await
            .map(Response::new)
    }

    async fn act(&self, request: Request<ActRequest>) -> Result<Response<CaseReply>, Status> {
        let request = request.into_inner();
        let case_id = parse_case_id(&request.case_id)?;
        let holder = holder(&request.office, &case_id)?;
        let proto = request
            .command
            .clone()
            .ok_or_else(|| Status::invalid_argument("command is missing"))?;
        let command = CaseCommand::try_from(proto).map_err(domain_error)?;
        let op = Operation::Act {
            case_id: case_id.clone(),
            command,
            request_id: request_id(request.request_id.clone()),
        };
        let hops = request.hops;
        self.write(&holder, op, hops, request)
            .await
            .map(Response::new)
    }

    async fn supervise(
        &self,
        request: Request<SuperviseRequest>,
    ) -> Result<Response<OrderReply>, Status> {
        let request = request.into_inner();
        let from = parse_office(&request.from)?;
        let to = parse_office(&request.to)?;
        let case_id = parse_case_id(&request.case_id)?;
        let op = Operation::Supervise {
            case_id,
            to,
            due_days: request.due_days,
            text: request.text.clone(),
        };
        let hops = request.hops;
        let (response, _) = self
            .with_leader(
                &from,
                hops,
                |replica| write_traced(replica, op.clone()),
                |mut client| {
                    let mut request = request.clone();
                    request.hops += 1;
                    async move {
                        let reply = client.supervise(request).await?;
                        let document = reply.into_inner().order_document;
                        Ok(Response::new((
                            crate::raft::types::Response::Order { document },
                            0,
                        )))
                    }
                },
            )
            .await?;
        match response {
            crate::raft::types::Response::Order { document } => Ok(Response::new(OrderReply {
                order_document: document,
            })),
            other => case_reply(other, 0).map(|_| Response::new(OrderReply::default())),
        }
    }

    async fn orders(
        &self,
        request: Request<OrdersRequest>,
    ) -> Result<Response<OrdersReply>, Status> {
        let office = parse_office(&request.get_ref().office)?;
        let replica = self.replica(&office)?;
        replica
            .read_barrier()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let orders = replica
            .state_machine
            .scan_prefix(
                crate::machine::keys::ORDER,
                crate::machine::OUTBOX_LEN_MAX as usize,
            )
            .map_err(|e| Status::internal(e.to_string()))?;
        let order_documents = orders
            .into_iter()
            .filter_map(|(_, value)| {
                let order: crate::machine::OrderRecord =
                    crate::store::codec::decode(&value).ok()?;
                serde_json::to_vec(&order).ok()
            })
            .collect();
        Ok(Response::new(OrdersReply {
            order_documents,
            now_ms: replica.clock.now(),
        }))
    }

    async fn show(&self, request: Request<ShowRequest>) -> Result<Response<CaseReply>, Status> {
        let request = request.into_inner();
        let case_id = parse_case_id(&request.case_id)?;
        let office = holder(&request.office, &case_id)?;
        let read = |replica: &Replica| -> Result<CaseReply, Status> {
            match replica.case_document(&case_id) {
                Ok(Some(document)) => Ok(CaseReply {
                    case_document: document,
                    log_index: 0,
                }),
                Ok(None) => Err(Status::not_found(format!(
                    "case {case_id} is not held by office {office}"
                ))),
                Err(error) => Err(Status::internal(error.to_string())),
            }
        };
        if Consistency::try_from(request.consistency) == Ok(Consistency::Local) {
            return read(self.replica(&office)?).map(Response::new);
        }
        let hops = request.hops;
        let forwarded = self
            .with_leader(
                &office,
                hops,
                |replica| async move { replica.read_barrier().await.map(|()| None) },
                |mut client| {
                    let mut request = request.clone();
                    request.hops += 1;
                    async move { client.show(request).await.map(|reply| reply.map(Some)) }
                },
            )
            .await?;
        match forwarded {
            Some(reply) => Ok(Response::new(reply)),
            None => read(self.replica(&office)?).map(Response::new),
        }
    }
}
