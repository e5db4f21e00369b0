//! The Desks service: departments, their tasks on cases, joint meetings, intake points and proxy
//! agents of an office (`machine::departments`). Every call needs an officer's token of the
//! office with a role that may do it ([`super::auth::Action::Desk`]); writes are audited in
//! their own log entry. A replica that does not lead answers UNAVAILABLE and the client tries
//! the office's next host (as for `Cases.Orders`); a retried write with a request id is applied
//! once.

use std::sync::Arc;

use federation_proto::v1::desks_server::Desks;
use federation_proto::v1::{
    CaseReply, DeskChangeRequest, DeskReadRequest, DeskReply, ProxyFileRequest,
};
use liandong_domain::department::{self, DeskChange};
use liandong_domain::{CaseId, OfficeCode, Registration};
use serde_json::{json, Value};
use tonic::{Request, Response, Status};

use super::auth::{Action, Principal, Trust};
use super::{domain_error, rejection};
use crate::machine::departments as desk;
use crate::raft::types::{Operation, Response as Applied};
use crate::replica::{Replica, ReplicaError, Replicas};

/// The largest change a client may send (a meeting with its minutes is the largest).
pub const CHANGE_BYTES_MAX: usize = 64 * 1024;

pub struct DeskService {
    pub replicas: Replicas,
    pub trust: Arc<Trust>,
}

fn parse_office(code: &str) -> Result<OfficeCode, Status> {
    code.parse()
        .map_err(|e| Status::invalid_argument(format!("bad office code: {e}")))
}

fn user_of(principal: &Principal) -> Result<String, Status> {
    match principal {
        Principal::Officer(officer) => Ok(officer.user.clone()),
        other => Err(Status::internal(format!(
            "{} authorized as an officer",
            other.who()
        ))),
    }
}

fn replica_status(error: ReplicaError) -> Status {
    match error {
        ReplicaError::Storage { reason, .. } => Status::internal(reason),
        // Not the leader, or no quorum now: the client tries the office's next host.
        other => Status::unavailable(other.to_string()),
    }
}

fn internal(error: impl std::fmt::Display) -> Status {
    Status::internal(error.to_string())
}

/// `change` with every officer it names replaced by the signed-in officer.
fn as_officer(change: DeskChange, user: &str) -> DeskChange {
    let officer = user.to_string();
    match change {
        DeskChange::Route {
            case_id, routing, ..
        } => DeskChange::Route {
            case_id,
            routing,
            officer,
        },
        DeskChange::AnswerTask {
            case_id,
            department,
            text,
            ..
        } => DeskChange::AnswerTask {
            case_id,
            department,
            text,
            officer,
        },
        DeskChange::HoldMeeting { request, .. } => DeskChange::HoldMeeting { request, officer },
        other => other,
    }
}

/// The request id a client sent (None when empty); an over-long one, or one with control
/// characters, is refused. Session writes take theirs the same way.
pub(crate) fn request_id(id: &str, caller: &str) -> Result<Option<String>, Status> {
    if id.is_empty() {
        return Ok(None);
    }
    match crate::machine::check_request_id(id, caller) {
        None => Ok(Some(id.to_string())),
        Some(reason) => Err(Status::invalid_argument(format!(
            "bad request id: {reason}"
        ))),
    }
}

/// A task as shown: its stored fields, with `overdue` as of `now`.
fn task_view(task: &department::Task, now: i64) -> Value {
    let mut value = serde_json::to_value(task).unwrap_or(Value::Null);
    value["overdue"] = Value::Bool(task.is_overdue(now));
    value
}

fn tasks_view(tasks: Option<&department::CaseTasks>, now: i64) -> Value {
    Value::Array(
        tasks
            .iter()
            .flat_map(|t| t.tasks.iter())
            .map(|task| task_view(task, now))
            .collect(),
    )
}

impl DeskService {
    fn replica(&self, office: &OfficeCode) -> Result<&Replica, Status> {
        self.replicas.get(office).ok_or_else(|| {
            Status::not_found(format!("office {office} is not carried by this host"))
        })
    }

    async fn write(&self, office: &OfficeCode, op: Operation) -> Result<Applied, Status> {
        let replica = self.replica(office)?;
        let written = replica.write(op).await.map_err(replica_status)?;
        crate::trace::written(&replica.office, &written.response, written.log_index);
        match written.response {
            Applied::Rejected {
                kind,
                code,
                message,
            } => Err(rejection(kind, &code, &message)),
            other => Ok(other),
        }
    }

    /// What `what` reads at `replica` (the leader, after a read barrier).
    fn read(&self, replica: &Replica, what: &str, key: &str) -> Result<Value, Status> {
        let store = &replica.state_machine;
        let now = replica.clock.now();
        Ok(match what {
            "departments" => json!(desk::departments(store).map_err(internal)?),
            "case" => {
                let case_id: CaseId = key
                    .parse()
                    .map_err(|e| Status::invalid_argument(format!("bad case id: {e}")))?;
                let tasks = desk::tasks(store, &case_id).map_err(internal)?;
                let filing = desk::filing(store, &case_id).map_err(internal)?;
                // The tasks closed when the case was handed on: their clocks stopped.
                let closed = desk::closed(store, &case_id).map_err(internal)?;
                let closings = closed
                    .iter()
                    .flat_map(|c| c.closings.iter())
                    .map(|closing| {
                        let mut value = json!(closing);
                        value["tasks"] = Value::Array(
                            closing
                                .tasks
                                .iter()
                                .map(|task| {
                                    let mut task_value = task_view(task, now);
                                    task_value["overdue"] = Value::Bool(task.overdue);
                                    task_value
                                })
                                .collect(),
                        );
                        value
                    })
                    .collect::<Vec<_>>();
                json!({
                    "case_id": case_id.to_string(),
                    "tasks": tasks_view(tasks.as_ref(), now),
                    "closed": closings,
                    "proxy": filing,
                })
            }
            "meetings" => json!(desk::meetings(store).map_err(internal)?),
            "meeting" => match desk::meeting(store, key).map_err(internal)? {
                Some(meeting) => json!(meeting),
                None => {
                    return Err(Status::not_found(format!(
                        "no meeting {:?} at this office",
                        liandong_domain::echo(key)
                    )))
                }
            },
            "stats" => {
                let departments = desk::departments(store).map_err(internal)?;
                let all = desk::all_tasks(store).map_err(internal)?;
                let closed = desk::all_closed(store).map_err(internal)?;
                let cards: std::collections::BTreeMap<String, u64> =
                    crate::machine::notices::department_counts(store)
                        .map_err(internal)?
                        .into_iter()
                        .collect();
                // With each department's red cards (missed supervision orders as the lead).
                let mut figures = department::figures(&departments, &all, now);
                department::count_closed(&mut figures, &closed);
                let figures = figures
                    .into_iter()
                    .map(|figures| {
                        let mut value = json!(figures);
                        value["red_cards"] = json!(cards.get(&figures.department).unwrap_or(&0));
                        value
                    })
                    .collect::<Vec<_>>();
                json!(figures)
            }
            "points" => json!(desk::points(store).map_err(internal)?),
            "proxies" => json!(desk::agents(store).map_err(internal)?),
            "point-cases" | "proxy-cases" => {
                let ids = if what == "point-cases" {
                    if desk::point(store, key).map_err(internal)?.is_none() {
                        return Err(Status::not_found(format!(
                            "no intake point {:?} at this office",
                            liandong_domain::echo(key)
                        )));
                    }
                    desk::cases_at_point(store, key).map_err(internal)?
                } else {
                    desk::cases_of_agent(store, key).map_err(internal)?
                };
                let mut rows = Vec::with_capacity(ids.len());
                for id in ids {
                    let Some(case) = replica.case(&id).map_err(replica_status)? else {
                        continue;
                    };
                    let filing = desk::filing(store, &id).map_err(internal)?;
                    let tasks = desk::tasks(store, &id).map_err(internal)?;
                    rows.push(json!({
                        "case_id": id.to_string(),
                        "status": case.status.as_str(),
                        "owner": case.office.to_string(),
                        "category": case.category,
                        "registered_at": case.registered_at,
                        "replied_at": case.replied_at,
                        "overdue": case.overdue,
                        "agent": filing.as_ref().map(|f| f.agent.clone()),
                        "point": filing.as_ref().map(|f| f.point.clone()),
                        "tasks": tasks_view(tasks.as_ref(), now),
                    }));
                }
                Value::Array(rows)
            }
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown read {:?}: departments, case, meetings, meeting, stats, points, \
                     proxies, point-cases or proxy-cases",
                    liandong_domain::echo(other)
                )))
            }
        })
    }
}

#[tonic::async_trait]
impl Desks for DeskService {
    async fn change(
        &self,
        request: Request<DeskChangeRequest>,
    ) -> Result<Response<DeskReply>, Status> {
        let office = parse_office(&request.get_ref().office)?;
        let rid = request.get_ref().request_id.clone();
        let bytes = &request.get_ref().change;
        let parsed: Result<DeskChange, String> = if bytes.len() > CHANGE_BYTES_MAX {
            Err(format!(
                "the change has {} bytes; at most {CHANGE_BYTES_MAX}",
                bytes.len()
            ))
        } else {
            serde_json::from_slice(bytes).map_err(|e| format!("the change does not read: {e}"))
        };
        let change = match parsed {
            Ok(DeskChange::ProxyFile { .. }) => Err("a proxy files through Desks.ProxyFile".into()),
            other => other,
        };
        let change = match change {
            Ok(change) => change,
            Err(reason) => {
                // Only a signed-in officer of the office learns why its input was refused.
                self.trust
                    .check(&request, Action::DeskRead, &office, "", &rid)?;
                return Err(Status::invalid_argument(reason));
            }
        };
        let case = change.case_id().map(|c| c.to_string()).unwrap_or_default();
        let principal = self
            .trust
            .check(&request, Action::Desk(&change), &office, &case, &rid)?;
        let user = user_of(&principal)?;
        let change = as_officer(change, &user);
        let mut record = Trust::record_of(&principal, Action::Desk(&change), &office, &case, &rid);
        record.detail = change.name().to_string();
        let op = Operation::Audited {
            record,
            op: Box::new(Operation::Desk {
                change,
                request_id: request_id(&rid, &user)?,
                caller: user,
            }),
        };
        let now_ms = self.replica(&office)?.clock.now();
        match self.write(&office, op).await? {
            Applied::Desk { document } | Applied::Case { document } => {
                Ok(Response::new(DeskReply { document, now_ms }))
            }
            other => Err(internal(format!(
                "unexpected state machine reply {other:?}"
            ))),
        }
    }

    async fn proxy_file(
        &self,
        request: Request<ProxyFileRequest>,
    ) -> Result<Response<CaseReply>, Status> {
        let body = request.get_ref();
        let file = body
            .file
            .clone()
            .ok_or_else(|| Status::invalid_argument("the filing is missing"))?;
        let office = parse_office(&file.office)?;
        let rid = file.request_id.clone();
        let principal = self
            .trust
            .check(&request, Action::ProxyFile, &office, "", &rid)?;
        if !file.session_id.is_empty() {
            return Err(Status::invalid_argument(
                "a proxy filing names no session (a case filed at a participating office while a session runs is linked to it)",
            ));
        }
        if !file.co_petitioners.is_empty() || !file.id_type.is_empty() || file.nationality.is_some()
        {
            return Err(Status::invalid_argument(
                "a proxy files for one petitioner with a resident ID (a group petition or another document is registered at the office)",
            ));
        }
        let user = user_of(&principal)?;
        let proto = file
            .registration
            .clone()
            .ok_or_else(|| Status::invalid_argument("registration is missing"))?;
        let mut registration = Registration::try_from(proto).map_err(domain_error)?;
        registration.officer = user.clone();
        registration.address = file.address.as_deref().map(Into::into);
        registration.validate().map_err(domain_error)?;
        let seal = self.replica(&office)?.seal.clone();
        let petitioner_key = seal
            .seal_registration(&mut registration)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let mut record = Trust::record_of(&principal, Action::ProxyFile, &office, "", &rid);
        record.detail = format!("proxy {}", liandong_domain::echo(&body.agent));
        let op = Operation::Audited {
            record,
            op: Box::new(Operation::Desk {
                change: DeskChange::ProxyFile {
                    registration: Box::new(registration),
                    petitioner_key,
                    agent: body.agent.clone(),
                    consent: body.consent.clone(),
                },
                request_id: request_id(&rid, &user)?,
                caller: user,
            }),
        };
        let document = match self.write(&office, op).await? {
            Applied::Case { document } => document,
            other => {
                return Err(internal(format!(
                    "unexpected state machine reply {other:?}"
                )))
            }
        };
        let document = seal
            .open_document(&document)
            .map_err(|e| internal(format!("case document: {e}")))?;
        let status_code = liandong_domain::Case::from_bytes(&document)
            .map(|case| seal.status_code(&case.id.to_string()))
            .unwrap_or_default();
        Ok(Response::new(CaseReply {
            case_document: document,
            log_index: 0,
            status_code,
            session_id: String::new(),
        }))
    }

    async fn read(&self, request: Request<DeskReadRequest>) -> Result<Response<DeskReply>, Status> {
        let office = parse_office(&request.get_ref().office)?;
        let key = request.get_ref().key.clone();
        let principal = self
            .trust
            .check(&request, Action::DeskRead, &office, "", "")?;
        let replica = self.replica(&office)?;
        // Only the replica that answers (the leader) records the read.
        replica.read_barrier().await.map_err(replica_status)?;
        let mut record = Trust::record_of(&principal, Action::DeskRead, &office, "", "");
        record.detail = request.get_ref().what.chars().take(32).collect();
        self.trust.record(&office, record)?;
        let value = self.read(replica, &request.get_ref().what, &key)?;
        Ok(Response::new(DeskReply {
            document: serde_json::to_vec(&value).map_err(internal)?,
            now_ms: replica.clock.now(),
        }))
    }
}
