//! Applying one log entry: dispatch of every [`Operation`], request deduplication, and the
//! refusals. Every replica runs this with the leader's stamped time and reaches the same state;
//! an operation refused here changes nothing.

use std::sync::Arc;

use liandong_domain::{Calendar, CaseId, Context, DomainError, Millis, OfficeCode};

use super::{audit, cases, inbox, keys, officers, orders, outbox, AppliedState};
use crate::raft::types::{AuditRecord, Operation, RejectKind, Request, Response};
use crate::store::codec::{decode, encode, CodecError};
use crate::store::Txn;

/// Request ids longer than this are not remembered (a client sends a short random id).
pub const REQUEST_ID_BYTES_MAX: usize = 64;

/// What every replica of an office applies with.
pub struct ApplyContext {
    pub office: OfficeCode,
    /// The office above in this federation (None for its root): escalations and index
    /// summaries go there.
    pub parent: Option<OfficeCode>,
    /// The federation secret: the petitioner key is an HMAC under it.
    pub secret: Vec<u8>,
    pub calendar: Arc<Calendar>,
}

impl ApplyContext {
    pub fn domain(&self, now: Millis) -> Context<'_> {
        Context {
            office: &self.office,
            now,
            calendar: &self.calendar,
        }
    }
}

/// A failure of storage itself (not of the operation): it stops the replica.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("storage: {0}")]
    Storage(#[from] rocksdb::Error),
    #[error("stored value: {0}")]
    Codec(#[from] CodecError),
    #[error("stored case {key}: {source}")]
    Case { key: String, source: DomainError },
}

/// A refusal that changes nothing: the response the client (or the sending office) gets.
#[derive(Debug)]
pub(super) struct Refused {
    pub kind: RejectKind,
    pub code: String,
    pub message: String,
}

pub(super) fn refused(kind: RejectKind, code: &str, message: impl Into<String>) -> Refused {
    Refused {
        kind,
        code: code.to_string(),
        message: message.into(),
    }
}

impl From<DomainError> for Refused {
    fn from(error: DomainError) -> Refused {
        let kind = if error.is_invalid_input() {
            RejectKind::Invalid
        } else {
            RejectKind::Forbidden
        };
        refused(kind, error.code(), error.to_string())
    }
}

impl From<Refused> for Response {
    fn from(refused: Refused) -> Response {
        Response::Rejected {
            kind: refused.kind,
            code: refused.code,
            message: refused.message,
        }
    }
}

/// What an operation did, or why it changed nothing; `Err` only for a failure of storage.
pub(super) type Outcome<T> = Result<Result<T, Refused>, ApplyError>;

/// Applies one operation. The state machine's clock never runs backwards, whatever the
/// leaders' clocks did.
pub fn apply_request(
    txn: &mut Txn<'_>,
    context: &ApplyContext,
    state: &mut AppliedState,
    request: &Request,
) -> Result<Response, ApplyError> {
    if let Operation::Audited { record, op } = &request.op {
        return apply_audited(txn, context, state, request.at, record, op);
    }
    let now = request.at.max(state.last_at);
    state.last_at = now;
    let mut apply = Applying {
        txn,
        context,
        now,
        state,
    };
    let request_id = match &request.op {
        Operation::File { request_id, .. } | Operation::Act { request_id, .. } => {
            request_id.as_deref()
        }
        _ => None,
    };
    if let Some(request_id) = request_id {
        if let Some(response) = replay(apply.txn, request_id)? {
            return Ok(response);
        }
    }
    let outcome = match &request.op {
        Operation::File { registration, .. } => {
            cases::file(&mut apply, registration)?.map(|(response, id)| (response, Some(id)))
        }
        Operation::Act {
            case_id, command, ..
        } => cases::act(&mut apply, case_id, command)?.map(|(response, id)| (response, Some(id))),
        Operation::Tick => {
            return cases::tick(&mut apply).map(|events| Response::Ticked { events })
        }
        Operation::Supervise {
            case_id,
            to,
            due_days,
            text,
        } => orders::supervise(&mut apply, case_id, to, *due_days, text)?.map(|r| (r, None)),
        Operation::Receive { from, envelopes } => {
            return inbox::receive(&mut apply, from, envelopes)
        }
        Operation::Acked {
            to,
            through,
            refused,
        } => {
            outbox::acked(&mut apply, to, *through, refused)?;
            return Ok(Response::Nothing);
        }
        Operation::Officers { change } => {
            return Ok(officers::apply(&mut apply, change)?.unwrap_or_else(Response::from))
        }
        Operation::Audit { records } => {
            audit::append(&mut apply, records)?;
            return Ok(Response::Nothing);
        }
        Operation::Audited { .. } => unreachable!("unwrapped above"),
    };
    match outcome {
        Ok((response, case_id)) => {
            if let (Some(request_id), Some(case_id)) = (request_id, case_id) {
                remember(apply.txn, request_id, &case_id, &response);
            }
            Ok(response)
        }
        Err(refused) => Ok(refused.into()),
    }
}

/// `op` applied, then the audit record of the call that asked for it, with what applying
/// answered as its result: both in this entry's batch.
fn apply_audited(
    txn: &mut Txn<'_>,
    context: &ApplyContext,
    state: &mut AppliedState,
    at: Millis,
    record: &AuditRecord,
    op: &Operation,
) -> Result<Response, ApplyError> {
    let inner = Request { at, op: op.clone() };
    let response = apply_request(txn, context, state, &inner)?;
    let mut record = record.clone();
    record.result = match &response {
        Response::Rejected { code, .. } => format!("refused: {code}"),
        _ => "ok".to_string(),
    };
    if let (true, Response::Case { document }) = (record.case_id.is_empty(), &response) {
        // A registration's record names the case it made.
        #[derive(serde::Deserialize)]
        struct Named {
            case_id: String,
        }
        if let Ok(named) = serde_json::from_slice::<Named>(document) {
            record.case_id = named.case_id;
        }
    }
    let now = state.last_at;
    let mut apply = Applying {
        txn,
        context,
        now,
        state,
    };
    audit::append(&mut apply, &[record])?;
    Ok(response)
}

/// One entry being applied: the transaction, who applies it, its stamped time, the applied
/// state it advances.
pub(super) struct Applying<'t, 'db> {
    pub txn: &'t mut Txn<'db>,
    pub context: &'t ApplyContext,
    pub now: Millis,
    pub state: &'t mut AppliedState,
}

/// The answer a request id already got: a retried request is answered again, not applied again.
/// Requests remembered before replies were kept get the case as it is now.
fn replay(txn: &Txn<'_>, request_id: &str) -> Result<Option<Response>, ApplyError> {
    if request_id.len() > REQUEST_ID_BYTES_MAX {
        return Ok(None);
    }
    let Some(bytes) = txn.get(&keys::request(request_id))? else {
        return Ok(None);
    };
    if let Some(document) = txn.get(&keys::reply(request_id))? {
        return Ok(Some(Response::Case { document }));
    }
    let case_id: String = decode(&bytes)?;
    Ok(txn
        .get(&keys::case(&case_id))?
        .map(|document| Response::Case { document }))
}

fn remember(txn: &mut Txn<'_>, request_id: &str, case_id: &CaseId, response: &Response) {
    if request_id.len() <= REQUEST_ID_BYTES_MAX {
        txn.put(keys::request(request_id), encode(&case_id.to_string()));
        if let Response::Case { document } = response {
            // The case engine's document is itself versioned.
            txn.put(keys::reply(request_id), document.clone());
        }
    }
}
