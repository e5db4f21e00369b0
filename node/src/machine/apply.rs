//! Applying one log entry: dispatch of every [`Operation`], request deduplication, and the
//! refusals. Every replica runs this with the leader's stamped time and reaches the same state;
//! an operation refused here changes nothing.

use std::sync::Arc;

use liandong_domain::codec::FORMAT_BINARY;
use liandong_domain::{Calendar, Context, DomainError, Millis, OfficeCode};

use super::{
    audit, cases, departments, inbox, notices, notify, officers, orders, outbox, reports, requests,
    sessions, AppliedState,
};
use crate::raft::types::{AuditRecord, Operation, RejectKind, Request, Response};
use crate::store::codec::CodecError;
use crate::store::Txn;

/// What every replica of an office applies with.
pub struct ApplyContext {
    pub office: OfficeCode,
    /// The office above in this federation (None for its root): escalations and index
    /// summaries go there.
    pub parent: Option<OfficeCode>,
    /// The federation secret: the petitioner key is an HMAC under it.
    pub secret: Vec<u8>,
    pub calendar: Arc<Calendar>,
    /// The office's key: every history entry this office applies is signed with it (None only
    /// where no key is at hand: the simulator and storage tests).
    pub signer: Option<Arc<super::seal::OfficeSigner>>,
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
    apply_operation(txn, context, state, request.at, &request.op)
}

/// Applies `op` stamped `at`: an entry's operation, an audited operation, or one of a batch's.
pub(super) fn apply_operation(
    txn: &mut Txn<'_>,
    context: &ApplyContext,
    state: &mut AppliedState,
    at: Millis,
    op: &Operation,
) -> Result<Response, ApplyError> {
    apply_naming(txn, context, state, at, op, &mut None)
}

/// [`apply_operation`], which also names in `made` the case a registration or command of
/// `op` itself made or changed (not one of a nested operation's, nor a replayed answer's): its
/// audit record then names the case without decoding the case document again.
fn apply_naming(
    txn: &mut Txn<'_>,
    context: &ApplyContext,
    state: &mut AppliedState,
    at: Millis,
    op: &Operation,
    made: &mut Option<liandong_domain::CaseId>,
) -> Result<Response, ApplyError> {
    match op {
        Operation::Audited { record, op } => {
            return apply_audited(txn, context, state, at, record, op)
        }
        Operation::Batch { operations } => return apply_batch(txn, context, state, at, operations),
        Operation::SessionFile { session, op } => {
            return sessions::file_in_session(txn, context, state, at, session, op)
        }
        _ => {}
    }
    let now = at.max(state.last_at);
    state.last_at = now;
    let mut apply = Applying {
        txn,
        context,
        now,
        state,
    };
    let scope = scope_of(op);
    if let Some(scope) = &scope {
        match requests::replay(apply.txn, scope)? {
            Some(Ok(response)) => return Ok(response),
            Some(Err(refusal)) => return Ok(refusal.into()),
            None => {}
        }
    }
    let outcome = match op {
        Operation::File { registration, .. } => cases::file(&mut apply, registration, None)?,
        Operation::FileSealed {
            registration,
            petitioner_key,
            ..
        } => cases::file(&mut apply, registration, Some(petitioner_key))?,
        Operation::FileGroup {
            registration,
            group,
            petitioner_key,
            ..
        } => cases::file_group(&mut apply, registration, petitioner_key, group)?,
        Operation::Act {
            case_id, command, ..
        } => match departments::check_act(apply.txn, case_id, command)? {
            Some(refusal) => Err(refusal),
            None => cases::act(&mut apply, case_id, command)?,
        },
        Operation::Tick => return tick(&mut apply),
        Operation::Supervise {
            case_id,
            to,
            due_days,
            text,
        } => {
            return Ok(orders::supervise(&mut apply, case_id, to, *due_days, text)?
                .unwrap_or_else(Response::from))
        }
        Operation::Receive { from, envelopes } => {
            return inbox::receive(&mut apply, from, envelopes)
        }
        Operation::ReceiveMarked { from, messages } => {
            return inbox::receive_marked(&mut apply, from, messages)
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
        Operation::NotificationSent { id } => {
            notify::sent(&mut apply, id)?;
            return Ok(Response::Nothing);
        }
        Operation::Desk {
            change,
            request_id: Some(request_id),
            caller,
        } if scope.is_none() => {
            // A change about no case (a department, intake point or proxy added, a department
            // disabled): deduplicated by its own record, so a retried `department add` answers
            // as the first time instead of "exists".
            let named = requests::NamedScope {
                family: requests::Family::Desk,
                caller,
                request_id,
                operation: change.name(),
                target: change.target(),
            };
            return once_named(&mut apply, &named, |apply| {
                let response = departments::apply_change(apply, change, None)?;
                let target = change.target().unwrap_or_default().to_string();
                Ok((response, target))
            });
        }
        Operation::Desk { change, .. } => {
            return departments::apply_change(&mut apply, change, scope.as_ref())
        }
        Operation::Session { command, caller } => {
            return Ok(sessions::apply(&mut apply, command, caller)?.unwrap_or_else(Response::from))
        }
        Operation::SessionOnce {
            command,
            request_id,
            caller,
        } => {
            let scope = requests::NamedScope {
                family: requests::Family::Session,
                caller,
                request_id,
                operation: command.name(),
                target: command.session(),
            };
            return once_named(&mut apply, &scope, |apply| {
                let response =
                    sessions::apply(apply, command, caller)?.unwrap_or_else(Response::from);
                let session = match &response {
                    Response::Session { document } => sessions::id_of(document),
                    _ => None,
                };
                Ok((response, session.unwrap_or_default()))
            });
        }
        Operation::NoticePolicy { ages_days, caller } => {
            return Ok(
                notices::set_policy(&mut apply, ages_days, caller)?.unwrap_or_else(Response::from)
            )
        }
        Operation::Audited { .. } | Operation::Batch { .. } | Operation::SessionFile { .. } => {
            unreachable!("dispatched above")
        }
    };
    match outcome {
        Ok((document, case_id)) => {
            if let Some(scope) = &scope {
                requests::remember(apply.txn, scope, &case_id, apply.now, &document);
            }
            *made = Some(case_id.clone());
            // Filed while a joint reception session runs here: linked to it.
            if matches!(
                op,
                Operation::File { .. } | Operation::FileSealed { .. } | Operation::FileGroup { .. }
            ) {
                drop(sessions::link_running(&mut apply, &case_id)?);
            }
            Ok(Response::Case { document })
        }
        Err(refused) => Ok(refused.into()),
    }
}

/// A batch's operations, applied in order with the entry's stamp as entries of their own would
/// be, one response each. An operation that may not share an entry ([`Operation::gathers`]: a
/// nested batch, federation bookkeeping) is refused and changes nothing; the others still apply.
fn apply_batch(
    txn: &mut Txn<'_>,
    context: &ApplyContext,
    state: &mut AppliedState,
    at: Millis,
    operations: &[Operation],
) -> Result<Response, ApplyError> {
    let mut responses = Vec::with_capacity(operations.len());
    for op in operations {
        let response = if op.gathers() {
            apply_operation(txn, context, state, at, op)?
        } else {
            refused(
                RejectKind::Invalid,
                "not_batchable",
                "only officers' case work shares a log entry",
            )
            .into()
        };
        responses.push(response);
    }
    Ok(Response::Batch { responses })
}

/// A deadline tick: the alarms due, the scheduled reports due, then the request records past the
/// retry horizon. The first
/// tick after an upgrade from format 1 also restarts the state hash chain, at the same entry on
/// every replica ([`AppliedState::hash_format`]).
fn tick(apply: &mut Applying<'_, '_>) -> Result<Response, ApplyError> {
    if apply.state.hash_format < FORMAT_BINARY {
        apply.state.state_hash.clear();
        apply.state.hash_format = FORMAT_BINARY;
    }
    let events = cases::tick(apply)?;
    departments::tick(apply)?;
    let notices = notices::tick(apply)?;
    reports::tick(apply)?;
    super::anchors::tick(apply)?;
    requests::prune(apply.txn, apply.now)?;
    Ok(Response::Ticked {
        events: events.saturating_add(notices),
    })
}

/// A request that names no case, applied once by `run` (which answers with what it named or
/// made): a retry within the horizon is answered from its record instead, an id used for
/// anything else refused. Only an applied request is kept (a refusal changed nothing, and
/// its retry is judged afresh).
fn once_named(
    apply: &mut Applying<'_, '_>,
    scope: &requests::NamedScope<'_>,
    run: impl FnOnce(&mut Applying<'_, '_>) -> Result<(Response, String), ApplyError>,
) -> Result<Response, ApplyError> {
    if let Some(answered) = requests::replay_named(apply.txn, scope)? {
        return Ok(answered.unwrap_or_else(Response::from));
    }
    let (response, target) = run(apply)?;
    if let Response::Session { document } | Response::Desk { document } = &response {
        requests::remember_named(apply.txn, scope, &target, apply.now, document);
    }
    Ok(response)
}

/// The request an officer's operation deduplicates by, if it carries an id.
fn scope_of(op: &Operation) -> Option<requests::Scope<'_>> {
    match op {
        Operation::File {
            request_id: Some(request_id),
            caller,
            ..
        }
        | Operation::FileSealed {
            request_id: Some(request_id),
            caller,
            ..
        }
        | Operation::FileGroup {
            request_id: Some(request_id),
            caller,
            ..
        } => Some(requests::Scope {
            caller,
            request_id,
            operation: "file",
            case_id: None,
        }),
        Operation::Act {
            request_id: Some(request_id),
            caller,
            case_id,
            command,
        } => Some(requests::Scope {
            caller,
            request_id,
            operation: command.name(),
            case_id: Some(case_id),
        }),
        Operation::Desk {
            request_id: Some(request_id),
            caller,
            change,
        } if change.case_id().is_some()
            || matches!(
                change,
                liandong_domain::department::DeskChange::ProxyFile { .. }
            ) =>
        {
            Some(requests::Scope {
                caller,
                request_id,
                operation: change.name(),
                case_id: change.case_id(),
            })
        }
        _ => None,
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
    let mut made = None;
    let response = apply_naming(txn, context, state, at, op, &mut made)?;
    let mut record = record.clone();
    record.result = match &response {
        Response::Rejected { code, .. } => format!("refused: {code}"),
        _ => "ok".to_string(),
    };
    if let (true, Response::Case { document }) = (record.case_id.is_empty(), &response) {
        // A registration's record names the case it made: as applying named it, else (a
        // replayed answer, a nested operation's) from the case document.
        match made {
            Some(case_id) => record.case_id = case_id.to_string(),
            None => {
                if let Ok(case) = liandong_domain::Case::from_bytes(document) {
                    record.case_id = case.id.to_string();
                }
            }
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
