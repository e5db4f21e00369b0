//! The officer API. Any replica takes a request: a write goes to the office's leader (forwarded
//! at most [`MAX_FORWARD_HOPS`] times, with the officer's token, checked again there), a
//! linearizable read waits on the leader's read index.
//!
//! Every call needs an officer's token of the office it acts for, with a role that may do it
//! ([`super::auth::authorize`]). The officer written into the case's history is the token's
//! user, whatever the request says. Every call is in the office's audit log: a write's record
//! commits in the write's own log entry, a read's (personal data) and a refusal's in the next
//! batch.

use std::future::Future;
use std::time::Duration;

use federation_proto::v1::cases_client::CasesClient;
use federation_proto::v1::cases_server::Cases;
use federation_proto::v1::{
    ActRequest, CaseReply, Consistency, FileRequest, OrderReply, OrdersReply, OrdersRequest,
    SessionReply, SessionRequest, SessionsReply, SessionsRequest, ShowRequest, SuperviseRequest,
};
use liandong_domain::{CaseCommand, CaseId, OfficeCode, Registration};
use tokio::time::Instant;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::auth::{Action, Officer, Principal, Trust, AUTHORIZATION};
use super::{case_reply, domain_error};
use crate::raft::network::Transport;
use crate::raft::types::{Operation, Role};
use crate::replica::{Replica, ReplicaError, Replicas};
use std::sync::Arc;

/// A request is passed from replica to replica at most this often (a leader change mid-way).
pub const MAX_FORWARD_HOPS: u32 = 2;
/// How long a write may wait for a leader and a quorum before the officer is told to retry.
pub const WRITE_DEADLINE_MS: u64 = 5_000;
/// How long one forward to the leader may take before the replica looks for a leader again.
pub const FORWARD_TIMEOUT_MS: u64 = 1_500;
/// Pause between attempts while an election runs.
pub const RETRY_PAUSE_MS: u64 = 25;

#[path = "sessions.rs"]
mod sessions;

pub struct CaseService {
    pub replicas: Replicas,
    pub transport: Transport,
    pub trust: Arc<Trust>,
}

/// The officer's token of a request, passed on when the request is forwarded to the leader.
type Bearer = Option<MetadataValue<Ascii>>;

fn bearer_of<T>(request: &Request<T>) -> Bearer {
    request.metadata().get(AUTHORIZATION).cloned()
}

/// `message` as a request carrying `bearer`.
fn with_bearer<T>(message: T, bearer: &Bearer) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(value) = bearer {
        request.metadata_mut().insert(AUTHORIZATION, value.clone());
    }
    request
}

fn officer_of(principal: &Principal) -> Result<&Officer, Status> {
    match principal {
        Principal::Officer(officer) => Ok(officer),
        other => Err(Status::internal(format!(
            "{} authorized as an officer",
            other.who()
        ))),
    }
}

/// `command` with every officer it names replaced by the signed-in officer: the history records
/// who was signed in, whatever the client sent.
fn as_officer(command: CaseCommand, user: &str) -> CaseCommand {
    let user = user.to_string();
    match command {
        CaseCommand::Accept { .. } => CaseCommand::Accept { officer: user },
        CaseCommand::Decline { route, .. } => CaseCommand::Decline {
            route,
            officer: user,
        },
        CaseCommand::Transfer { to, .. } => CaseCommand::Transfer { to, officer: user },
        CaseCommand::Assign { to, due_days, .. } => CaseCommand::Assign {
            to,
            due_days,
            officer: user,
        },
        CaseCommand::Return { reason, .. } => CaseCommand::Return {
            reason,
            officer: user,
        },
        CaseCommand::Extend { days, reason, .. } => CaseCommand::Extend {
            days,
            reason,
            officer: user,
        },
        CaseCommand::Reply { opinion, text, .. } => CaseCommand::Reply {
            opinion,
            text,
            officer: user,
        },
        CaseCommand::AnswerSupervision { text, .. } => CaseCommand::AnswerSupervision {
            text,
            officer: user,
        },
        CaseCommand::FollowUp { note, .. } => CaseCommand::FollowUp {
            note,
            officer: user,
        },
        other => other,
    }
}

// The engine's errors repeat at most `ERROR_ECHO_CHARS_MAX` characters of the input.
fn parse_office(code: &str) -> Result<OfficeCode, Status> {
    code.parse()
        .map_err(|e| Status::invalid_argument(format!("bad office code: {e}")))
}

fn parse_case_id(id: &str) -> Result<CaseId, Status> {
    id.parse()
        .map_err(|e| Status::invalid_argument(format!("bad case id: {e}")))
}

/// The office named as holding a case, or the office in its id.
fn holder(office: &str, case_id: &CaseId) -> Result<OfficeCode, Status> {
    if office.is_empty() {
        Ok(case_id.office.clone())
    } else {
        parse_office(office)
    }
}

/// The group of a filing (None for one petitioner with a resident ID and no nationality: a
/// filing as before), with `registration`'s petitioner made the group's representative. Every
/// petitioner is checked here, before anything is sealed or proposed
/// ([`liandong_domain::group::arrange`]).
fn group_of(
    request: &FileRequest,
    registration: &mut Registration,
) -> Result<Option<liandong_domain::group::Group>, liandong_domain::DomainError> {
    use liandong_domain::group::{self, Group, Party};
    use liandong_domain::IdType;
    let id_type = |word: &str| -> Result<IdType, liandong_domain::DomainError> {
        if word.trim().is_empty() {
            Ok(IdType::Resident)
        } else {
            word.parse()
        }
    };
    let main_type = id_type(&request.id_type)?;
    if request.co_petitioners.is_empty()
        && main_type == IdType::Resident
        && request.nationality.is_none()
        && request.representative <= 1
    {
        return Ok(None);
    }
    if request.co_petitioners.len() >= group::PETITIONERS_MAX {
        return Err(liandong_domain::DomainError::GroupInvalid {
            reason: format!(
                "{} petitioners; a case has at most {}",
                request.co_petitioners.len() + 1,
                group::PETITIONERS_MAX
            ),
        });
    }
    let clear = |value: &liandong_domain::Personal| value.clear().unwrap_or_default().to_string();
    let mut parties = vec![Party {
        id_type: main_type,
        id_number: clear(&registration.petitioner_id),
        name: clear(&registration.name),
        phone: registration.phone.as_ref().map(clear),
        nationality: request.nationality.clone(),
    }];
    for member in &request.co_petitioners {
        parties.push(Party {
            id_type: id_type(&member.id_type)?,
            id_number: member.id_number.clone(),
            name: member.name.clone(),
            phone: member.phone.clone(),
            nationality: member.nationality.clone(),
        });
    }
    let parties = group::arrange(parties, request.representative as usize)?;
    let representative = &parties[0];
    registration.petitioner_id = representative.id_number.as_str().into();
    registration.name = representative.name.as_str().into();
    registration.phone = representative.phone.as_deref().map(Into::into);
    let group = Group::of(&parties);
    if let Some(group) = &group {
        group.validate()?;
        registration.validate_as(representative.id_type)?;
    } else {
        registration.validate()?;
    }
    Ok(group)
}

/// The request id to deduplicate by (None: the client sent none); an id the state machine could
/// not key is refused here, before anything is proposed.
fn request_id(id: String, caller: &str) -> Result<Option<String>, Status> {
    if id.is_empty() {
        return Ok(None);
    }
    match crate::machine::check_request_id(&id, caller) {
        None => Ok(Some(id)),
        Some(reason) => Err(Status::invalid_argument(format!(
            "bad request id: {reason}"
        ))),
    }
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

    /// Records a call refused after its caller was authorized (bad input, no such case) and
    /// returns its status.
    fn refused(
        &self,
        principal: &Principal,
        action: Action<'_>,
        office: &OfficeCode,
        case_id: &str,
        request_id: &str,
        status: Status,
    ) -> Status {
        let mut record = Trust::record_of(principal, action, office, case_id, request_id);
        record.result = format!("{:?}: {}", status.code(), status.message());
        match self.trust.record(office, record) {
            Ok(()) => status,
            Err(unavailable) => unavailable,
        }
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
        bearer: &Bearer,
    ) -> Result<CaseReply, Status> {
        let written = self
            .with_leader(
                office,
                hops,
                |replica| write_traced(replica, op.clone()),
                |client| {
                    let forward = forward.clone();
                    async move {
                        forward.send(client, bearer).await.map(|reply| {
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
        let mut reply = case_reply(written.0, written.1)?;
        // A reply from this host's replica carries the case as stored (sealed); one forwarded
        // from the leader was opened there, and opens as it is.
        reply.case_document = self.opened(office, &reply.case_document)?;
        Ok(reply)
    }

    /// A case document with its personal data opened, for a caller allowed to read it.
    fn opened(&self, office: &OfficeCode, document: &[u8]) -> Result<Vec<u8>, Status> {
        if document.is_empty() {
            return Ok(Vec::new());
        }
        self.replica(office)?
            .seal
            .open_document(document)
            .map_err(|e| Status::internal(format!("case document: {e}")))
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

/// A request that can be re-sent to the leader, one hop further, with the officer's token.
trait ForwardWrite: Clone {
    fn send(
        self,
        client: CasesClient<Channel>,
        bearer: &Bearer,
    ) -> impl Future<Output = Result<Response<CaseReply>, Status>>;
}

impl ForwardWrite for FileRequest {
    async fn send(
        mut self,
        mut client: CasesClient<Channel>,
        bearer: &Bearer,
    ) -> Result<Response<CaseReply>, Status> {
        self.hops += 1;
        client.file(with_bearer(self, bearer)).await
    }
}

impl ForwardWrite for ActRequest {
    async fn send(
        mut self,
        mut client: CasesClient<Channel>,
        bearer: &Bearer,
    ) -> Result<Response<CaseReply>, Status> {
        self.hops += 1;
        client.act(with_bearer(self, bearer)).await
    }
}

#[tonic::async_trait]
impl Cases for CaseService {
    async fn file(&self, request: Request<FileRequest>) -> Result<Response<CaseReply>, Status> {
        let bearer = bearer_of(&request);
        let office = parse_office(&request.get_ref().office)?;
        let rid = request.get_ref().request_id.clone();
        let principal = self
            .trust
            .check(&request, Action::File, &office, "", &rid)?;
        let officer = officer_of(&principal)?;
        let request = request.into_inner();
        let refused = |status| self.refused(&principal, Action::File, &office, "", &rid, status);
        let proto = request
            .registration
            .clone()
            .ok_or_else(|| refused(Status::invalid_argument("registration is missing")))?;
        let mut registration =
            Registration::try_from(proto).map_err(|e| refused(domain_error(e)))?;
        registration.officer = officer.user.clone();
        registration.address = request.address.as_deref().map(Into::into);
        // A group petition, or a petitioner with another document than a resident ID: its
        // petitioners checked and ordered (the representative first), or refused whole.
        let group = group_of(&request, &mut registration).map_err(|e| refused(domain_error(e)))?;
        // Refuse malformed input before it reaches the log: nothing is proposed, nothing changes.
        if group.is_none() {
            registration
                .validate()
                .map_err(|e| refused(domain_error(e)))?;
        }
        // Personal data is sealed here, before the log: the office's replicas store only the
        // sealed bytes (and the petitioner key, computed from the clear ID number).
        let seal = self.replica(&office).map_err(refused)?.seal.clone();
        let session_id = request.session_id.clone();
        let request_id = request_id(rid.clone(), &officer.user).map_err(refused)?;
        let mut op = match group {
            None => Operation::FileSealed {
                petitioner_key: seal
                    .seal_registration(&mut registration)
                    .map_err(|e| refused(Status::invalid_argument(e.to_string())))?,
                registration: Box::new(registration),
                request_id,
                caller: officer.user.clone(),
            },
            Some(mut group) => Operation::FileGroup {
                petitioner_key: seal
                    .seal_group_filing(&mut registration, &mut group)
                    .map_err(|e| refused(Status::invalid_argument(e.to_string())))?,
                registration: Box::new(registration),
                group: Box::new(group),
                request_id,
                caller: officer.user.clone(),
            },
        };
        // Filed in a joint reception session: linked to it, or refused whole.
        if !request.session_id.is_empty() {
            liandong_domain::session::validate_id(&request.session_id)
                .map_err(|e| refused(domain_error(e)))?;
            op = Operation::SessionFile {
                session: request.session_id.clone(),
                op: Box::new(op),
            };
        }
        let op = Operation::Audited {
            record: Trust::record_of(&principal, Action::File, &office, "", &rid),
            op: Box::new(op),
        };
        let hops = request.hops;
        let mut reply = self.write(&office, op, hops, request, &bearer).await?;
        // The petitioner's verification code, which the officer tells the petitioner.
        if let Ok(case) = liandong_domain::Case::from_bytes(&reply.case_document) {
            reply.status_code = seal.status_code(&case.id.to_string());
        }
        reply.session_id = session_id;
        Ok(Response::new(reply))
    }

    async fn act(&self, request: Request<ActRequest>) -> Result<Response<CaseReply>, Status> {
        let bearer = bearer_of(&request);
        let body = request.get_ref();
        let case_id = parse_case_id(&body.case_id)?;
        let holder = holder(&body.office, &case_id)?;
        let rid = body.request_id.clone();
        let proto = body
            .command
            .clone()
            .ok_or_else(|| Status::invalid_argument("command is missing"))?;
        let command = CaseCommand::try_from(proto).map_err(domain_error)?;
        let case = case_id.to_string();
        let action = Action::Act(&command);
        let principal = self.trust.check(&request, action, &holder, &case, &rid)?;
        let officer = officer_of(&principal)?;
        let mut record = Trust::record_of(&principal, action, &holder, &case, &rid);
        record.detail = command.name().to_string();
        let op = Operation::Audited {
            record,
            op: Box::new(Operation::Act {
                case_id: case_id.clone(),
                command: as_officer(command.clone(), &officer.user),
                request_id: request_id(rid.clone(), &officer.user)?,
                caller: officer.user.clone(),
            }),
        };
        let request = request.into_inner();
        let hops = request.hops;
        self.write(&holder, op, hops, request, &bearer)
            .await
            .map(Response::new)
    }

    async fn supervise(
        &self,
        request: Request<SuperviseRequest>,
    ) -> Result<Response<OrderReply>, Status> {
        let bearer = bearer_of(&request);
        let from = parse_office(&request.get_ref().from)?;
        let case = request.get_ref().case_id.clone();
        let principal = self
            .trust
            .check(&request, Action::Supervise, &from, &case, "")?;
        let request = request.into_inner();
        let refused =
            |status| self.refused(&principal, Action::Supervise, &from, &case, "", status);
        let to = parse_office(&request.to).map_err(refused)?;
        let case_id = parse_case_id(&request.case_id).map_err(refused)?;
        let op = Operation::Audited {
            record: Trust::record_of(&principal, Action::Supervise, &from, &case, ""),
            op: Box::new(Operation::Supervise {
                case_id,
                to,
                due_days: request.due_days,
                text: request.text.clone(),
            }),
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
                    let request = with_bearer(request, &bearer);
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
        let principal = self
            .trust
            .check(&request, Action::Orders, &office, "", "")?;
        let replica = self.replica(&office)?;
        self.trust.record(
            &office,
            Trust::record_of(&principal, Action::Orders, &office, "", ""),
        )?;
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

    async fn session(
        &self,
        request: Request<SessionRequest>,
    ) -> Result<Response<SessionReply>, Status> {
        sessions::session(self, request).await
    }

    async fn sessions(
        &self,
        request: Request<SessionsRequest>,
    ) -> Result<Response<SessionsReply>, Status> {
        sessions::sessions(self, request).await
    }

    async fn show(&self, request: Request<ShowRequest>) -> Result<Response<CaseReply>, Status> {
        let bearer = bearer_of(&request);
        let case_id = parse_case_id(&request.get_ref().case_id)?;
        let office = holder(&request.get_ref().office, &case_id)?;
        let case = case_id.to_string();
        let principal = self
            .trust
            .check(&request, Action::Show, &office, &case, "")?;
        let request = request.into_inner();
        let officer = officer_of(&principal)?;
        let reading_roles = [
            Role::Registrar,
            Role::Handler,
            Role::Leader,
            Role::Supervisor,
        ];
        let auditor_only = !reading_roles.iter().any(|r| officer.roles.contains(r));
        if auditor_only && request.reason.trim().is_empty() {
            return Err(self.refused(
                &principal,
                Action::Show,
                &office,
                &case,
                "",
                Status::invalid_argument(
                    "an auditor reads a case's personal data with a reason (`--reason`)",
                ),
            ));
        }
        let mut record = Trust::record_of(&principal, Action::Show, &office, &case, "");
        record.detail = request.reason.chars().take(200).collect();
        let read = |replica: &Replica| -> Result<CaseReply, Status> {
            let mut record = record.clone();
            let outcome = match replica.case_document(&case_id) {
                Ok(Some(document)) => replica
                    .seal
                    .open_document(&document)
                    .map(|document| CaseReply {
                        case_document: document,
                        log_index: 0,
                        status_code: String::new(),
                        session_id: crate::machine::sessions::of_case(
                            &replica.state_machine,
                            &case_id,
                        )
                        .ok()
                        .flatten()
                        .unwrap_or_default(),
                    })
                    .map_err(|e| Status::internal(format!("case {case_id}: {e}"))),
                Ok(None) => Err(Status::not_found(format!(
                    "case {case_id} is not held by office {office}"
                ))),
                Err(error) => Err(Status::internal(error.to_string())),
            };
            if let Err(status) = &outcome {
                record.result = format!("{:?}: {}", status.code(), status.message());
            }
            self.trust.record(&office, record)?;
            outcome
        };
        // The petitioner's verification code, for the officer to tell again.
        let with_code = |mut reply: CaseReply| {
            if let Ok(replica) = self.replica(&office) {
                reply.status_code = replica.seal.status_code(&case);
            }
            reply
        };
        if Consistency::try_from(request.consistency) == Ok(Consistency::Local) {
            return read(self.replica(&office)?).map(|r| Response::new(with_code(r)));
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
                    let request = with_bearer(request, &bearer);
                    async move { client.show(request).await.map(|reply| reply.map(Some)) }
                },
            )
            .await?;
        match forwarded {
            Some(reply) => Ok(Response::new(reply)),
            None => read(self.replica(&office)?).map(|r| Response::new(with_code(r))),
        }
    }
}
