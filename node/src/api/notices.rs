//! The Notices service: an office's escalating notice ages, the notices it received from its
//! subtree (its worklist), and the red cards it earned and received (`machine::notices`). Every
//! call needs an officer's token of the office: setting or clearing the ages is its admin's
//! ([`Action::NoticePolicy`]), reading is any officer's but a registrar's
//! ([`Action::NoticeRead`]). A replica that does not lead answers UNAVAILABLE and the client
//! tries the office's next host.

use std::sync::Arc;

use federation_proto::v1::notices_server::Notices;
use federation_proto::v1::{NoticePolicyRequest, NoticeReadRequest, NoticeReply};
use liandong_domain::notice::NOTICE_LEVELS_MAX;
use liandong_domain::OfficeCode;
use serde_json::{json, Value};
use tonic::{Request, Response, Status};

use super::auth::{Action, Principal, Trust};
use super::rejection;
use crate::machine::notices as stored;
use crate::raft::types::{Operation, Response as Applied};
use crate::replica::{Replica, ReplicaError, Replicas};

/// Notices or red cards one read returns at most.
pub const NOTICES_READ_MAX: usize = 500;
/// Rows a read returns when the caller names no limit.
pub const NOTICES_READ_DEFAULT: usize = 50;

pub struct NoticeService {
    pub replicas: Replicas,
    pub trust: Arc<Trust>,
}

fn parse_office(code: &str) -> Result<OfficeCode, Status> {
    code.parse()
        .map_err(|e| Status::invalid_argument(format!("bad office code: {e}")))
}

fn replica_status(error: ReplicaError) -> Status {
    match error {
        ReplicaError::Storage { reason, .. } => Status::internal(reason),
        other => Status::unavailable(other.to_string()),
    }
}

fn internal(error: impl std::fmt::Display) -> Status {
    Status::internal(error.to_string())
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

impl NoticeService {
    fn replica(&self, office: &OfficeCode) -> Result<&Replica, Status> {
        self.replicas.get(office).ok_or_else(|| {
            Status::not_found(format!("office {office} is not carried by this host"))
        })
    }

    fn read(&self, replica: &Replica, what: &str, limit: usize) -> Result<Value, Status> {
        let store = &replica.state_machine;
        Ok(match what {
            "policy" => json!(stored::policy(store).map_err(internal)?),
            "notices" => {
                let (notices, more) = stored::received(store, limit).map_err(internal)?;
                // Each with where its case stands now: a notice of a matter since answered is
                // resolved.
                let notices = notices
                    .into_iter()
                    .map(|notice| {
                        let now =
                            stored::now_of(store, &notice.notice.case_id).map_err(internal)?;
                        let mut value = json!(notice);
                        value["now"] = json!(now);
                        Ok(value)
                    })
                    .collect::<Result<Vec<Value>, Status>>()?;
                json!({ "notices": notices, "more": more })
            }
            "red-cards" => {
                let (cards, more) = stored::cards(store, limit).map_err(internal)?;
                let (earned, received): (Vec<_>, Vec<_>) =
                    cards.into_iter().partition(|card| card.earned);
                let offices = stored::office_counts(store).map_err(internal)?;
                let departments = stored::department_counts(store).map_err(internal)?;
                json!({
                    "earned": earned,
                    "received": received,
                    "more": more,
                    "counts": offices
                        .into_iter()
                        .map(|(office, count)| json!({ "office": office, "red_cards": count }))
                        .collect::<Vec<_>>(),
                    "departments": departments
                        .into_iter()
                        .map(|(department, count)| {
                            json!({ "department": department, "red_cards": count })
                        })
                        .collect::<Vec<_>>(),
                })
            }
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown read {:?}: policy, notices or red-cards",
                    liandong_domain::echo(other)
                )))
            }
        })
    }
}

#[tonic::async_trait]
impl Notices for NoticeService {
    async fn policy(
        &self,
        request: Request<NoticePolicyRequest>,
    ) -> Result<Response<NoticeReply>, Status> {
        let office = parse_office(&request.get_ref().office)?;
        let body = request.get_ref().clone();
        if body.ages_days.is_empty() && !body.clear {
            let principal = self
                .trust
                .check(&request, Action::NoticeRead, &office, "", "")?;
            let replica = self.replica(&office)?;
            replica.read_barrier().await.map_err(replica_status)?;
            let mut record = Trust::record_of(&principal, Action::NoticeRead, &office, "", "");
            record.detail = "policy".into();
            self.trust.record(&office, record)?;
            let value = self.read(replica, "policy", 1)?;
            return Ok(Response::new(NoticeReply {
                document: serde_json::to_vec(&value).map_err(internal)?,
                now_ms: replica.clock.now(),
            }));
        }
        let principal = self
            .trust
            .check(&request, Action::NoticePolicy, &office, "", "")?;
        let refuse = |status: Status| {
            let mut record = Trust::record_of(&principal, Action::NoticePolicy, &office, "", "");
            record.result = format!("{:?}: {}", status.code(), status.message());
            match self.trust.record(&office, record) {
                Ok(()) => status,
                Err(unavailable) => unavailable,
            }
        };
        if body.clear && !body.ages_days.is_empty() {
            return Err(refuse(Status::invalid_argument(
                "either ages or clear, not both",
            )));
        }
        if body.ages_days.len() > NOTICE_LEVELS_MAX {
            return Err(refuse(Status::invalid_argument(format!(
                "at most {NOTICE_LEVELS_MAX} ages (one per level above the office), not {}",
                body.ages_days.len()
            ))));
        }
        let user = user_of(&principal)?;
        let mut record = Trust::record_of(&principal, Action::NoticePolicy, &office, "", "");
        record.detail = if body.clear {
            "clear".to_string()
        } else {
            format!("ages {:?}", body.ages_days)
        };
        let op = Operation::Audited {
            record,
            op: Box::new(Operation::NoticePolicy {
                ages_days: (!body.clear).then(|| body.ages_days.clone()),
                caller: user,
            }),
        };
        let replica = self.replica(&office)?;
        let written = replica.write(op).await.map_err(replica_status)?;
        crate::trace::written(&replica.office, &written.response, written.log_index);
        match written.response {
            Applied::Notice { document } => Ok(Response::new(NoticeReply {
                document,
                now_ms: replica.clock.now(),
            })),
            Applied::Rejected {
                kind,
                code,
                message,
            } => Err(rejection(kind, &code, &message)),
            other => Err(internal(format!(
                "unexpected state machine reply {other:?}"
            ))),
        }
    }

    async fn read(
        &self,
        request: Request<NoticeReadRequest>,
    ) -> Result<Response<NoticeReply>, Status> {
        let office = parse_office(&request.get_ref().office)?;
        let principal = self
            .trust
            .check(&request, Action::NoticeRead, &office, "", "")?;
        let replica = self.replica(&office)?;
        replica.read_barrier().await.map_err(replica_status)?;
        let what = request.get_ref().what.clone();
        let limit = match request.get_ref().limit as usize {
            0 => NOTICES_READ_DEFAULT,
            n => n.min(NOTICES_READ_MAX),
        };
        let mut record = Trust::record_of(&principal, Action::NoticeRead, &office, "", "");
        record.detail = what.chars().take(32).collect();
        self.trust.record(&office, record)?;
        let value = self.read(replica, &what, limit)?;
        Ok(Response::new(NoticeReply {
            document: serde_json::to_vec(&value).map_err(internal)?,
            now_ms: replica.clock.now(),
        }))
    }
}
