//! `Cases.Session` and `Cases.Sessions`: joint video reception sessions at the caller's office
//! (`crate::machine::sessions`). A write goes to the office's leader like any case write; a
//! booking's personal fields are sealed here, before the log, as a filing's are.

use federation_proto::v1::session_request::Command as Proto;
use federation_proto::v1::{SessionReply, SessionRequest, SessionsReply, SessionsRequest};
use liandong_domain::session::{Schedule, SessionCommand};
use liandong_domain::{Channel, OfficeCode, Registration};
use tonic::{Request, Response, Status};

use super::{bearer_of, officer_of, parse_office, with_bearer, write_traced, CaseService};
use crate::api::auth::{Action, Trust};
use crate::api::case_reply;
use crate::machine::sessions::{self as stored, SESSION};
use crate::raft::types::{Operation, Response as Applied};

/// Sessions one `Sessions` call returns at most.
pub const SESSIONS_READ_MAX: usize = 200;

/// The command a request asks for, its personal fields still clear.
fn command_of(request: &SessionRequest) -> Result<SessionCommand, Status> {
    let session = request.session_id.clone();
    let needs_session = || {
        if session.trim().is_empty() {
            Err(Status::invalid_argument(
                "which session: session_id is empty",
            ))
        } else {
            Ok(session.clone())
        }
    };
    match request.command.clone() {
        None => Err(Status::invalid_argument("command is missing")),
        Some(Proto::Schedule(schedule)) => {
            let invite = schedule
                .invite
                .iter()
                .map(|code| code.parse::<OfficeCode>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            Ok(SessionCommand::Schedule(Schedule {
                starts_at: schedule.starts_ms,
                ends_at: schedule.ends_ms,
                invite,
                leader: schedule.leader,
                slots: schedule.slots,
            }))
        }
        Some(Proto::Answer(answer)) => Ok(SessionCommand::Answer {
            session: needs_session()?,
            accept: answer.accept,
            leader: answer.leader,
        }),
        Some(Proto::Book(book)) => Ok(SessionCommand::Book {
            session: needs_session()?,
            petitioner_key: String::new(),
            petitioner_id: book.petitioner_id.into(),
            name: book.name.into(),
        }),
        Some(Proto::Recording(recording)) => Ok(SessionCommand::Recording {
            session: needs_session()?,
            reference: recording.reference,
            sha256: recording.sha256,
            bytes: recording.bytes,
        }),
    }
}

/// A booking's personal fields checked and sealed under the office's data key, with the
/// petitioner key, as a filing's.
fn sealed(
    service: &CaseService,
    office: &OfficeCode,
    command: SessionCommand,
    officer: &str,
) -> Result<SessionCommand, Status> {
    let SessionCommand::Book {
        session,
        petitioner_id,
        name,
        ..
    } = command
    else {
        return Ok(command);
    };
    let mut registration = Registration {
        channel: Channel::Video,
        petitioner_id,
        name,
        phone: None,
        category: "session".into(),
        summary: "booking".into(),
        location: None,
        officer: officer.to_string(),
        address: None,
    };
    registration
        .validate()
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    let seal = service.replica(office)?.seal.clone();
    let petitioner_key = seal
        .seal_registration(&mut registration)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    Ok(SessionCommand::Book {
        session,
        petitioner_key,
        petitioner_id: registration.petitioner_id,
        name: registration.name,
    })
}

pub(super) async fn session(
    service: &CaseService,
    request: Request<SessionRequest>,
) -> Result<Response<SessionReply>, Status> {
    let bearer = bearer_of(&request);
    let office = parse_office(&request.get_ref().office)?;
    let command = command_of(request.get_ref())?;
    let id = request.get_ref().session_id.clone();
    let rid = request.get_ref().request_id.clone();
    let action = Action::Session(&command);
    let principal = service.trust.check(&request, action, &office, "", &rid)?;
    let officer = officer_of(&principal)?.user.clone();
    let mut record = Trust::record_of(&principal, action, &office, "", &rid);
    record.detail = format!("session {} {}", command.name(), id)
        .chars()
        .take(200)
        .collect();
    let refused = |status| service.refused(&principal, action, &office, "", &rid, status);
    let command = sealed(service, &office, command.clone(), &officer).map_err(refused)?;
    let op = match crate::api::departments::request_id(&rid, &officer).map_err(refused)? {
        Some(request_id) => Operation::SessionOnce {
            command,
            request_id,
            caller: officer,
        },
        None => Operation::Session {
            command,
            caller: officer,
        },
    };
    let op = Operation::Audited {
        record,
        op: Box::new(op),
    };
    let request = request.into_inner();
    let hops = request.hops;
    let (response, _) = service
        .with_leader(
            &office,
            hops,
            |replica| write_traced(replica, op.clone()),
            |mut client| {
                let mut request = request.clone();
                request.hops += 1;
                let request = with_bearer(request, &bearer);
                async move {
                    let reply = client.session(request).await?;
                    let document = reply.into_inner().session_document;
                    Ok(Response::new((Applied::Session { document }, 0)))
                }
            },
        )
        .await?;
    match response {
        Applied::Session { document } => Ok(Response::new(SessionReply {
            session_document: document,
        })),
        other => case_reply(other, 0).map(|_| Response::new(SessionReply::default())),
    }
}

pub(super) async fn sessions(
    service: &CaseService,
    request: Request<SessionsRequest>,
) -> Result<Response<SessionsReply>, Status> {
    let office = parse_office(&request.get_ref().office)?;
    let principal = service
        .trust
        .check(&request, Action::Sessions, &office, "", "")?;
    let replica = service.replica(&office)?;
    let request = request.into_inner();
    let mut record = Trust::record_of(&principal, Action::Sessions, &office, "", "");
    record.detail = request.session_id.chars().take(200).collect();
    service.trust.record(&office, record)?;
    replica
        .read_barrier()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let internal = |e: crate::machine::ApplyError| Status::internal(e.to_string());
    let mut sessions = Vec::new();
    if request.session_id.is_empty() {
        let limit = match request.limit as usize {
            0 => SESSIONS_READ_MAX,
            n => n.min(SESSIONS_READ_MAX),
        };
        let all = replica
            .state_machine
            .scan_prefix(SESSION, stored::SESSIONS_MAX)
            .map_err(|e| Status::internal(e.to_string()))?;
        for (_, value) in all {
            let session: liandong_domain::session::Session =
                crate::store::codec::decode(&value).map_err(|e| Status::internal(e.to_string()))?;
            sessions.push(session);
        }
        sessions.sort_by_key(|s| std::cmp::Reverse((s.starts_at, s.scheduled_at)));
        sessions.truncate(limit);
    } else {
        match stored::load(&replica.state_machine, &request.session_id).map_err(internal)? {
            Some(session) => sessions.push(session),
            None => {
                return Err(Status::not_found(format!(
                    "office {office} has no session {} (not hosted here, nor invited)",
                    liandong_domain::echo(&request.session_id)
                )))
            }
        }
    }
    let session_documents = sessions
        .iter()
        .filter_map(|session| serde_json::to_vec(session).ok())
        .collect();
    Ok(Response::new(SessionsReply {
        session_documents,
        now_ms: replica.clock.now(),
    }))
}
