//! The Officers service (sign-in and accounts) and the Audit service (the audit log, for
//! auditors). Passwords are hashed and checked here, off the async threads; the state machine
//! only keeps what was decided.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use federation_proto::v1::audit_server::Audit;
use federation_proto::v1::officers_server::Officers;
use federation_proto::v1::{
    AddOfficerRequest, AuditReadReply, AuditReadRequest, ListOfficersReply, ListOfficersRequest,
    LoginReply, LoginRequest, OfficerReply, ResetPasswordRequest, SetEnabledRequest,
};
use liandong_domain::OfficeCode;
use tonic::{Request, Response, Status};

use super::auth::{Action, Principal, Trust};
use super::propose::Proposer;
use super::rejection;
use crate::clock::wall_ms;
use crate::machine::{audit, officers};
use crate::raft::types::{
    AuditRecord, OfficerChange, OfficerRecord, Operation, Response as Applied, Role,
};
use crate::replica::Replica;
use crate::secrets::{self, ADMIN_USER};

/// Audit entries one read returns at most (the newest that match).
pub const AUDIT_READ_LIMIT_MAX: u32 = 10_000;
/// Password hashes computed or checked at once on a host: each takes 19 MiB and tens of
/// milliseconds of one core, so a flood of sign-ins cannot exhaust a host's memory.
pub const PASSWORD_CHECKS_MAX: usize = 4;
/// How long a sign-in waits for its turn before it is refused as too many at once.
pub const PASSWORD_CHECK_WAIT_MS: u64 = 2_000;

/// Runs `work` (argon2) off the async threads, at most [`PASSWORD_CHECKS_MAX`] at once.
async fn password_work<R: Send + 'static>(
    work: impl FnOnce() -> R + Send + 'static,
) -> Result<R, Status> {
    static TURNS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(PASSWORD_CHECKS_MAX);
    let wait = std::time::Duration::from_millis(PASSWORD_CHECK_WAIT_MS);
    let _turn = tokio::time::timeout(wait, TURNS.acquire())
        .await
        .map_err(|_| Status::unavailable("too many sign-ins at once: try again shortly"))?
        .map_err(|e| Status::internal(e.to_string()))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Status::internal(e.to_string()))
}

pub struct OfficerService {
    pub trust: Arc<Trust>,
    pub proposer: Proposer,
}

fn office(code: &str) -> Result<OfficeCode, Status> {
    code.parse().map_err(|e| {
        Status::invalid_argument(format!(
            "bad office code {:?}: {e}",
            code.chars().take(16).collect::<String>()
        ))
    })
}

fn user(name: &str) -> Result<(), Status> {
    officers::check_user(name).map_err(Status::invalid_argument)
}

fn replica<'a>(trust: &'a Trust, office: &OfficeCode) -> Result<&'a Replica, Status> {
    trust
        .replicas()
        .get(office)
        .ok_or_else(|| Status::not_found(format!("office {office} is not carried by this host")))
}

fn roles(words: &[String]) -> Result<BTreeSet<Role>, Status> {
    let roles = words
        .iter()
        .map(|word| word.parse::<Role>().map_err(Status::invalid_argument))
        .collect::<Result<BTreeSet<Role>, Status>>()?;
    if roles.is_empty() {
        return Err(Status::invalid_argument(
            "an officer needs at least one role",
        ));
    }
    Ok(roles)
}

/// The argon2id hash of a new password, off the async threads.
async fn new_hash(password: String) -> Result<String, Status> {
    secrets::check_new_password(&password).map_err(|e| Status::invalid_argument(e.to_string()))?;
    password_work(move || secrets::hash_password(&password))
        .await?
        .map_err(|e| Status::internal(e.to_string()))
}

/// A hash no password matches, checked for unknown users so that a wrong user name takes as
/// long as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| secrets::hash_password(&secrets::generate_password()).unwrap_or_default())
}

fn account(response: Applied) -> Result<OfficerRecord, Status> {
    match response {
        Applied::Officer { record } => Ok(*record),
        Applied::Rejected {
            kind,
            code,
            message,
        } => Err(rejection(kind, &code, &message)),
        other => Err(Status::internal(format!("unexpected answer {other:?}"))),
    }
}

fn officer_reply(record: &OfficerRecord) -> Response<OfficerReply> {
    Response::new(OfficerReply {
        officer: serde_json::to_vec(&record.public_view()).unwrap_or_default(),
    })
}

impl OfficerService {
    /// The account as this replica applied it; the office's first admin is created from init's
    /// hash on its first login.
    async fn account(
        &self,
        replica: &Replica,
        user: &str,
    ) -> Result<Option<OfficerRecord>, Status> {
        let stored = officers::load(&replica.state_machine, user)
            .map_err(|e| Status::internal(e.to_string()))?;
        if stored.is_some() || user != ADMIN_USER {
            return Ok(stored);
        }
        let Some(password_hash) = self.trust.secrets.admin_hash(replica.office.as_str()) else {
            return Ok(None);
        };
        let change = OfficerChange::Bootstrap {
            user: user.to_string(),
            password_hash,
            at_ms: wall_ms(),
        };
        let applied = self
            .proposer
            .propose(&replica.office, Operation::Officers { change })
            .await?;
        account(applied).map(Some)
    }

    async fn login_checked(
        &self,
        office: &OfficeCode,
        request: &LoginRequest,
    ) -> Result<LoginReply, (Status, String)> {
        let refused = |status: Status| (status.clone(), format!("refused: {}", status.message()));
        let replica = replica(&self.trust, office).map_err(refused)?;
        // The account as of now, not as this replica last heard: a password an admin just set
        // (committed at the leader) must sign in at once. A follower is refused as unavailable
        // and the caller turns to the next host, as for every other read.
        replica
            .read_barrier()
            .await
            .map_err(|e| refused(Status::unavailable(e.to_string())))?;
        let stored = self
            .account(replica, &request.user)
            .await
            .map_err(refused)?;
        let now = wall_ms();
        let wrong = || {
            refused(Status::unauthenticated(format!(
                "wrong user or password for office {office}"
            )))
        };
        if let Some(record) = &stored {
            if record.locked_until_ms > now {
                let minutes = (record.locked_until_ms - now + 59_999) / 60_000;
                return Err(refused(Status::unauthenticated(format!(
                    "officer {} is locked after {} failed logins: try again in {minutes} \
                     minutes, or ask an admin to reset the password",
                    record.user,
                    officers::LOGIN_FAILURES_MAX
                ))));
            }
        }
        let hash = stored
            .as_ref()
            .map(|r| r.password_hash.clone())
            .unwrap_or_else(|| decoy_hash().to_string());
        let password = request.password.clone();
        let matches = password_work(move || secrets::verify_password(&password, &hash))
            .await
            .map_err(refused)?;
        let Some(record) = stored else {
            return Err(wrong());
        };
        if !matches {
            let change = OfficerChange::LoginFailed {
                user: record.user.clone(),
                at_ms: now,
            };
            let _ = self
                .proposer
                .propose(office, Operation::Officers { change })
                .await;
            return Err(wrong());
        }
        if !record.enabled {
            return Err(refused(Status::unauthenticated(format!(
                "officer {} is disabled",
                record.user
            ))));
        }
        if record.failed_logins > 0 {
            let change = OfficerChange::LoginSucceeded {
                user: record.user.clone(),
                at_ms: now,
            };
            self.proposer
                .propose(office, Operation::Officers { change })
                .await
                .map_err(refused)?;
        }
        let (token, claims) = self
            .trust
            .issue(office, &record.user, &record.roles)
            .map_err(refused)?;
        Ok(LoginReply {
            token,
            roles: claims.roles.iter().map(|r| r.to_string()).collect(),
            expires_ms: claims.expires_ms,
        })
    }

    /// The admin calling, or the refusal (before any password is hashed).
    fn admin<T>(&self, request: &Request<T>, office: &OfficeCode) -> Result<Principal, Status> {
        self.trust
            .check(request, Action::ManageOfficers, office, "", "")
    }

    /// An admin's change to an account, committed with its audit record.
    async fn commit(
        &self,
        principal: &Principal,
        office: &OfficeCode,
        target: &str,
        change: OfficerChange,
    ) -> Result<Response<OfficerReply>, Status> {
        let mut record = Trust::record_of(principal, Action::ManageOfficers, office, "", "");
        record.rpc = format!("Officers.{}", change.name());
        record.detail = format!("officer {target}");
        let op = Operation::Audited {
            record,
            op: Box::new(Operation::Officers { change }),
        };
        let applied = self.proposer.propose(office, op).await?;
        account(applied).map(|record| officer_reply(&record))
    }
}

#[tonic::async_trait]
impl Officers for OfficerService {
    async fn login(&self, request: Request<LoginRequest>) -> Result<Response<LoginReply>, Status> {
        let request = request.into_inner();
        let office = office(&request.office)?;
        user(&request.user)?;
        if request.password.len() > secrets::PASSWORD_BYTES_MAX {
            return Err(Status::invalid_argument(format!(
                "a password has at most {} bytes",
                secrets::PASSWORD_BYTES_MAX
            )));
        }
        let outcome = self.login_checked(&office, &request).await;
        if self.trust.replicas().get(&office).is_some() {
            let mut record = AuditRecord {
                at_ms: wall_ms(),
                user: request.user.clone(),
                office: office.to_string(),
                rpc: "Officers.Login".into(),
                case_id: String::new(),
                request_id: String::new(),
                result: "ok".into(),
                detail: String::new(),
                count: 1,
            };
            match &outcome {
                Ok(_) => self.trust.record(&office, record)?,
                // A failed sign-in comes from someone not signed in: recorded, or only counted
                // when the log is crowded, never refused for the log's sake.
                Err((_, result)) => {
                    record.result = result.clone();
                    self.trust.audit.record_refusal(&office, record, true);
                }
            }
        }
        outcome.map(Response::new).map_err(|(status, _)| status)
    }

    async fn add(
        &self,
        request: Request<AddOfficerRequest>,
    ) -> Result<Response<OfficerReply>, Status> {
        let body = request.get_ref();
        let office = office(&body.office)?;
        user(&body.user)?;
        let roles = roles(&body.roles)?;
        let principal = self.admin(&request, &office)?;
        let password_hash = new_hash(body.password.clone()).await?;
        let change = OfficerChange::Add {
            user: body.user.clone(),
            roles,
            password_hash,
            at_ms: wall_ms(),
        };
        self.commit(&principal, &office, &body.user, change).await
    }

    async fn set_enabled(
        &self,
        request: Request<SetEnabledRequest>,
    ) -> Result<Response<OfficerReply>, Status> {
        let body = request.get_ref();
        let office = office(&body.office)?;
        user(&body.user)?;
        let principal = self.admin(&request, &office)?;
        let change = OfficerChange::SetEnabled {
            user: body.user.clone(),
            enabled: body.enabled,
            at_ms: wall_ms(),
        };
        self.commit(&principal, &office, &body.user, change).await
    }

    async fn reset_password(
        &self,
        request: Request<ResetPasswordRequest>,
    ) -> Result<Response<OfficerReply>, Status> {
        let body = request.get_ref();
        let office = office(&body.office)?;
        user(&body.user)?;
        let principal = self.admin(&request, &office)?;
        let password_hash = new_hash(body.password.clone()).await?;
        let change = OfficerChange::SetPassword {
            user: body.user.clone(),
            password_hash,
            at_ms: wall_ms(),
        };
        self.commit(&principal, &office, &body.user, change).await
    }

    async fn list(
        &self,
        request: Request<ListOfficersRequest>,
    ) -> Result<Response<ListOfficersReply>, Status> {
        let office = office(&request.get_ref().office)?;
        let principal = self.admin(&request, &office)?;
        let replica = replica(&self.trust, &office)?;
        let all =
            officers::all(&replica.state_machine).map_err(|e| Status::internal(e.to_string()))?;
        let record = Trust::record_of(&principal, Action::ManageOfficers, &office, "", "");
        self.trust.record(
            &office,
            AuditRecord {
                rpc: "Officers.List".into(),
                ..record
            },
        )?;
        Ok(Response::new(ListOfficersReply {
            officers: all
                .iter()
                .map(|o| serde_json::to_vec(&o.public_view()).unwrap_or_default())
                .collect(),
        }))
    }
}

/// The Audit service.
pub struct AuditService {
    pub trust: Arc<Trust>,
}

#[tonic::async_trait]
impl Audit for AuditService {
    async fn read(
        &self,
        request: Request<AuditReadRequest>,
    ) -> Result<Response<AuditReadReply>, Status> {
        let office = office(&request.get_ref().office)?;
        let principal = self
            .trust
            .check(&request, Action::ReadAudit, &office, "", "")?;
        let query = request.into_inner();
        let replica = replica(&self.trust, &office)?;
        replica
            .read_barrier()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let machine = &replica.state_machine;
        let internal = |e: crate::machine::ApplyError| Status::internal(e.to_string());
        let head = audit::head(machine).map_err(internal)?;
        let chain = audit::verify(machine).map_err(internal)?;
        let all = audit::entries(
            machine,
            head.pruned_through + 1,
            audit::AUDIT_ENTRIES_MAX as usize,
        )
        .map_err(internal)?;
        let limit = match query.limit {
            0 => AUDIT_READ_LIMIT_MAX,
            n => n.min(AUDIT_READ_LIMIT_MAX),
        } as usize;
        let matching: Vec<&audit::AuditEntry> = all
            .iter()
            .filter(|e| e.record.at_ms >= query.since_ms)
            .filter(|e| {
                query
                    .case_id
                    .as_ref()
                    .is_none_or(|c| e.record.case_id == *c)
            })
            .filter(|e| query.user.as_ref().is_none_or(|u| e.record.user == *u))
            .collect();
        let skip = matching.len().saturating_sub(limit);
        let entries = matching[skip..]
            .iter()
            .map(|e| serde_json::to_vec(e).unwrap_or_default())
            .collect();
        let mut record = Trust::record_of(&principal, Action::ReadAudit, &office, "", "");
        record.detail = query
            .case_id
            .as_ref()
            .map(|c| format!("case {c}"))
            .unwrap_or_default();
        self.trust.record(&office, record)?;
        let (chain_ok, chain_detail) = match chain {
            Ok(checked) => (true, format!("{checked} entries verify")),
            Err(why) => (false, why),
        };
        Ok(Response::new(AuditReadReply {
            entries,
            chain_ok,
            chain_detail,
            pruned_through: head.pruned_through,
            last_seq: head.last_seq,
        }))
    }
}
