//! tonic services of a host: cases (officers), officers and audit (sign-in, accounts, the audit
//! log), raft (replicas), admin (operators); `auth` decides who may call what, `audit_log`
//! batches the audit records of calls that write nothing, `propose` commits from any replica;
//! quiesce lets hosts put idle offices to sleep and wake them; departments serves an office's
//! departments, meetings, intake points and proxies.
pub mod admin;
pub mod audit_log;
pub mod auth;
pub mod cases;
pub mod departments;
pub mod notices;
pub mod officers;
pub mod propose;
pub mod quiesce;
pub mod raft;
pub mod sites;

use crate::raft::types::{RejectKind, Response};
use federation_proto::v1::CaseReply;
use tonic::Status;

/// Maps what the state machine answered to the officer API's reply or status.
pub fn case_reply(response: Response, log_index: u64) -> Result<CaseReply, Status> {
    match response {
        Response::Case { document } => Ok(CaseReply {
            case_document: document,
            log_index,
            status_code: String::new(),
            session_id: String::new(),
        }),
        Response::Rejected {
            kind,
            code,
            message,
        } => Err(rejection(kind, &code, &message)),
        other => Err(Status::internal(format!(
            "unexpected state machine reply {other:?}"
        ))),
    }
}

pub fn rejection(kind: RejectKind, code: &str, message: &str) -> Status {
    let text = format!("{code}: {message}");
    match kind {
        RejectKind::Invalid => Status::invalid_argument(text),
        RejectKind::Forbidden => Status::failed_precondition(text),
        RejectKind::NotFound => Status::not_found(text),
        RejectKind::AlreadyExists => Status::already_exists(text),
    }
}

pub fn domain_error(error: liandong_domain::DomainError) -> Status {
    let kind = if error.is_invalid_input() {
        RejectKind::Invalid
    } else {
        RejectKind::Forbidden
    };
    rejection(kind, error.code(), &error.to_string())
}
