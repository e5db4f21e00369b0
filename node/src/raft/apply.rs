//! Applying one log entry: the case engine (pure, deterministic) plus the bookkeeping around it:
//! case ids, the alarm index, the applied state. Every replica runs this with the leader's
//! stamped time and reaches the same state.

use std::sync::Arc;

use liandong_domain::{
    self as domain, Calendar, Case, CaseCommand, CaseId, CaseKind, Context, Date, DomainError,
    Millis, OfficeCode, Registration,
};

use crate::raft::types::{Operation, RejectKind, Request, Response};
use crate::store::codec::CodecError;
use crate::store::keys::sm;
use crate::store::{AppliedState, Txn};

/// Cases whose alarms one tick handles at most; the rest wait for the next tick.
pub const TICK_CASES_MAX: usize = 256;

/// What every replica of an office applies with.
pub struct ApplyContext {
    pub office: OfficeCode,
    /// The federation secret: the petitioner key is an HMAC under it.
    pub secret: Vec<u8>,
    pub calendar: Arc<Calendar>,
}

/// A failure of storage itself (not of the operation): it stops the replica.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("storage: {0}")]
    Storage(#[from] rocksdb::Error),
    #[error("stored case: {0}")]
    Codec(#[from] CodecError),
    #[error("stored case {key}: {source}")]
    Case { key: String, source: DomainError },
}

/// A refusal that changes nothing.
struct Refusal(Response);

impl From<DomainError> for Refusal {
    fn from(error: DomainError) -> Refusal {
        let kind = if error.is_invalid_input() {
            RejectKind::Invalid
        } else {
            RejectKind::Forbidden
        };
        Refusal(Response::Rejected {
            kind,
            code: error.code().to_string(),
            message: error.to_string(),
        })
    }
}

pub fn apply_request(
    txn: &mut Txn<'_>,
    context: &ApplyContext,
    state: &mut AppliedState,
    request: &Request,
) -> Result<Response, ApplyError> {
    // The state machine's clock never runs backwards, whatever the leaders' clocks did.
    let now = request.at.max(state.last_at);
    state.last_at = now;
    let ctx = Context {
        office: &context.office,
        now,
        calendar: &context.calendar,
    };
    let request_id = match &request.op {
        Operation::File { request_id, .. } | Operation::Act { request_id, .. } => {
            request_id.as_deref()
        }
        Operation::Tick => None,
    };
    if let Some(request_id) = request_id {
        if let Some(response) = replay(txn, request_id)? {
            return Ok(response);
        }
    }
    let outcome = match &request.op {
        Operation::File { registration, .. } => file(txn, context, state, &ctx, registration),
        Operation::Act {
            case_id, command, ..
        } => act(txn, &ctx, case_id, command),
        Operation::Tick => return tick(txn, &ctx).map(|events| Response::Ticked { events }),
    }?;
    match outcome {
        Ok((response, case_id)) => {
            if let Some(request_id) = request_id {
                remember(txn, request_id, &case_id);
            }
            Ok(response)
        }
        Err(Refusal(response)) => Ok(response),
    }
}

/// Request ids longer than this are not remembered (a client sends a short random id).
pub const REQUEST_ID_BYTES_MAX: usize = 64;

/// The case a request id already produced: a retried request is answered, not applied again.
fn replay(txn: &Txn<'_>, request_id: &str) -> Result<Option<Response>, ApplyError> {
    if request_id.len() > REQUEST_ID_BYTES_MAX {
        return Ok(None);
    }
    let Some(bytes) = txn.get(&sm::request(request_id))? else {
        return Ok(None);
    };
    let case_id: String = crate::store::codec::decode(&bytes)?;
    match txn.get(&sm::case(&case_id))? {
        Some(document) => Ok(Some(Response::Case { document })),
        None => Ok(None),
    }
}

fn remember(txn: &mut Txn<'_>, request_id: &str, case_id: &CaseId) {
    if request_id.len() <= REQUEST_ID_BYTES_MAX {
        txn.put(
            sm::request(request_id),
            crate::store::codec::encode(&case_id.to_string()),
        );
    }
}

/// The reply and the case it concerns, or a refusal.
type Outcome = Result<Result<(Response, CaseId), Refusal>, ApplyError>;

fn file(
    txn: &mut Txn<'_>,
    context: &ApplyContext,
    state: &mut AppliedState,
    ctx: &Context<'_>,
    registration: &Registration,
) -> Outcome {
    if let Err(error) = registration.validate() {
        return Ok(Err(error.into()));
    }
    let year = Date::from_millis(ctx.now).year;
    let seq_key = sm::seq(year);
    let seq = match txn.get(&seq_key)? {
        Some(bytes) => crate::store::codec::decode::<u32>(&bytes)?.saturating_add(1),
        None => 1,
    };
    let id = CaseId {
        office: context.office.clone(),
        year,
        seq,
    };
    let key = domain::petitioner_key(&context.secret, &registration.petitioner_id);
    let case = match domain::register(id, registration.clone(), key, CaseKind::Original, ctx) {
        Ok(case) => case,
        Err(error) => return Ok(Err(error.into())),
    };
    txn.put(seq_key, crate::store::codec::encode(&seq));
    state.cases += 1;
    Ok(Ok((store_case(txn, None, &case), case.id.clone())))
}

fn act(txn: &mut Txn<'_>, ctx: &Context<'_>, case_id: &CaseId, command: &CaseCommand) -> Outcome {
    let Some(case) = load_case(txn, case_id)? else {
        return Ok(Err(not_found(case_id)));
    };
    let events = match domain::decide(&case, command, ctx) {
        Ok(events) => events,
        Err(error) => return Ok(Err(error.into())),
    };
    let previous_alarm = case.next_alarm();
    let mut updated = case;
    for event in &events {
        updated.apply(event);
    }
    Ok(Ok((
        store_case(txn, previous_alarm, &updated),
        updated.id.clone(),
    )))
}

/// Raises the warnings and overdue marks due at `ctx.now`, for at most [`TICK_CASES_MAX`] cases.
fn tick(txn: &mut Txn<'_>, ctx: &Context<'_>) -> Result<u32, ApplyError> {
    let due_end = sm::alarm(ctx.now.saturating_add(1), "");
    let due = txn.scan(sm::ALARM, &due_end, TICK_CASES_MAX)?;
    let mut raised = 0u32;
    for (alarm_key, _) in due {
        let Some(case_id) = sm::alarm_case(&alarm_key).and_then(|id| id.parse::<CaseId>().ok())
        else {
            txn.delete(alarm_key);
            continue;
        };
        let Some(case) = load_case(txn, &case_id)? else {
            txn.delete(alarm_key);
            continue;
        };
        let events = domain::tick(&case, ctx);
        let mut updated = case;
        for event in &events {
            updated.apply(event);
        }
        raised = raised.saturating_add(u32::try_from(events.len()).unwrap_or(u32::MAX));
        // This alarm is spent; the case's next one (strictly in the future) replaces it.
        txn.delete(alarm_key);
        store_case(txn, None, &updated);
        if let Some(at) = updated.next_alarm().filter(|&at| at <= ctx.now) {
            tracing::error!(%case_id, at, now = ctx.now, "case engine asked for an alarm that is already due; dropped");
            txn.delete(sm::alarm(at, &case_id.to_string()));
        }
    }
    Ok(raised)
}

fn not_found(case_id: &CaseId) -> Refusal {
    Refusal(Response::Rejected {
        kind: RejectKind::NotFound,
        code: "case_not_found".to_string(),
        message: format!("case {case_id} is not held by this office"),
    })
}

pub fn load_case(txn: &Txn<'_>, case_id: &CaseId) -> Result<Option<Case>, ApplyError> {
    let key = sm::case(&case_id.to_string());
    match txn.get(&key)? {
        None => Ok(None),
        Some(bytes) => Case::from_bytes(&bytes)
            .map(Some)
            .map_err(|source| ApplyError::Case {
                key: case_id.to_string(),
                source,
            }),
    }
}

/// Writes the case and moves its alarm; returns the reply carrying the case document.
fn store_case(txn: &mut Txn<'_>, previous_alarm: Option<Millis>, case: &Case) -> Response {
    let id = case.id.to_string();
    let next_alarm = case.next_alarm();
    if previous_alarm != next_alarm {
        if let Some(at) = previous_alarm {
            txn.delete(sm::alarm(at, &id));
        }
        if let Some(at) = next_alarm {
            txn.put(sm::alarm(at, &id), Vec::new());
        }
    }
    let document = case.to_bytes();
    txn.put(sm::case(&id), document.clone());
    Response::Case { document }
}
