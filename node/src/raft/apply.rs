//! Applying one log entry: the case engine (pure, deterministic) plus the bookkeeping around it:
//! case ids, the alarm index, request deduplication, the federation's outbox and inbox, the
//! applied state. Every replica runs this with the leader's stamped time and reaches the same
//! state; an operation refused here changes nothing.

use std::sync::Arc;

use liandong_domain::{
    self as domain, Calendar, Case, CaseCommand, CaseId, CaseKind, Context, Date, DomainError,
    Event, Millis, OfficeCode, Registration,
};

use crate::federation::apply as federation;
use crate::raft::types::{Operation, RejectKind, Request, Response};
use crate::store::codec::{decode, encode, CodecError};
use crate::store::keys::sm;
use crate::store::{AppliedState, Txn};

/// Cases whose alarms one tick handles at most; the rest wait for the next tick.
pub const TICK_CASES_MAX: usize = 256;
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

/// A refusal that changes nothing.
struct Refused(Response);

fn refused(kind: RejectKind, code: &str, message: impl Into<String>) -> Refused {
    Refused(Response::Rejected {
        kind,
        code: code.to_string(),
        message: message.into(),
    })
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

/// The reply and the case it concerns, or a refusal.
type Outcome = Result<Result<(Response, CaseId), Refused>, ApplyError>;

pub fn apply_request(
    txn: &mut Txn<'_>,
    context: &ApplyContext,
    state: &mut AppliedState,
    request: &Request,
) -> Result<Response, ApplyError> {
    // The state machine's clock never runs backwards, whatever the leaders' clocks did.
    let now = request.at.max(state.last_at);
    state.last_at = now;
    let request_id = match &request.op {
        Operation::File { request_id, .. } | Operation::Act { request_id, .. } => {
            request_id.as_deref()
        }
        _ => None,
    };
    if let Some(request_id) = request_id {
        if let Some(response) = replay(txn, request_id)? {
            return Ok(response);
        }
    }
    let outcome = match &request.op {
        Operation::File { registration, .. } => file(txn, context, now, state, registration),
        Operation::Act {
            case_id, command, ..
        } => act(txn, context, now, state, case_id, command),
        Operation::Tick => {
            return tick(txn, context, now, state).map(|events| Response::Ticked { events })
        }
        Operation::Supervise {
            case_id,
            to,
            due_days,
            text,
        } => {
            let outcome =
                federation::supervise(txn, context, now, state, case_id, to, *due_days, text)?;
            return Ok(
                outcome.unwrap_or_else(|r| refused(RejectKind::Forbidden, &r.code, r.reason).0)
            );
        }
        Operation::Receive { from, envelopes } => {
            return federation::receive(txn, context, now, state, from, envelopes)
        }
        Operation::Acked {
            to,
            through,
            refused,
        } => return federation::acked(txn, context, now, state, to, *through, refused),
    }?;
    match outcome {
        Ok((response, case_id)) => {
            if let Some(request_id) = request_id {
                remember(txn, request_id, &case_id, &response);
            }
            Ok(response)
        }
        Err(Refused(response)) => Ok(response),
    }
}

/// The answer a request id already got: a retried request is answered again, not applied again.
/// Requests remembered before replies were kept get the case as it is now.
fn replay(txn: &Txn<'_>, request_id: &str) -> Result<Option<Response>, ApplyError> {
    if request_id.len() > REQUEST_ID_BYTES_MAX {
        return Ok(None);
    }
    let Some(bytes) = txn.get(&sm::request(request_id))? else {
        return Ok(None);
    };
    if let Some(document) = txn.get(&sm::reply(request_id))? {
        return Ok(Some(Response::Case { document }));
    }
    let case_id: String = decode(&bytes)?;
    Ok(txn
        .get(&sm::case(&case_id))?
        .map(|document| Response::Case { document }))
}

fn remember(txn: &mut Txn<'_>, request_id: &str, case_id: &CaseId, response: &Response) {
    if request_id.len() <= REQUEST_ID_BYTES_MAX {
        txn.put(sm::request(request_id), encode(&case_id.to_string()));
        if let Response::Case { document } = response {
            // The case engine's document is itself versioned.
            txn.put(sm::reply(request_id), document.clone());
        }
    }
}

/// The next case id of this office: `<office>-<year>-<seq>`, the sequence per year.
pub fn next_case_id(
    txn: &mut Txn<'_>,
    context: &ApplyContext,
    now: Millis,
) -> Result<CaseId, ApplyError> {
    let year = Date::from_millis(now).year;
    let seq_key = sm::seq(year);
    let seq = match txn.get(&seq_key)? {
        Some(bytes) => decode::<u32>(&bytes)?.saturating_add(1),
        None => 1,
    };
    txn.put(seq_key, encode(&seq));
    Ok(CaseId {
        office: context.office.clone(),
        year,
        seq,
    })
}

fn outbox_full(state: &AppliedState) -> Refused {
    refused(
        RejectKind::Forbidden,
        "outbox_full",
        format!(
            "{} messages wait for offices this one cannot reach; new work waits until they drain",
            state.outbox_pending
        ),
    )
}

fn file(
    txn: &mut Txn<'_>,
    context: &ApplyContext,
    now: Millis,
    state: &mut AppliedState,
    registration: &Registration,
) -> Outcome {
    if let Err(error) = registration.validate() {
        return Ok(Err(error.into()));
    }
    if federation::outbox_full(state) {
        return Ok(Err(outbox_full(state)));
    }
    let id = next_case_id(txn, context, now)?;
    let key = domain::petitioner_key(&context.secret, &registration.petitioner_id);
    let case = match domain::register(
        id,
        registration.clone(),
        key,
        CaseKind::Original,
        &context.domain(now),
    ) {
        Ok(case) => case,
        Err(error) => return Ok(Err(error.into())),
    };
    state.cases += 1;
    let response = store_case(txn, None, &case);
    federation::on_case_change(txn, context, now, state, None, &case, &[])?;
    Ok(Ok((response, case.id)))
}

fn act(
    txn: &mut Txn<'_>,
    context: &ApplyContext,
    now: Millis,
    state: &mut AppliedState,
    case_id: &CaseId,
    command: &CaseCommand,
) -> Outcome {
    if matches!(
        command,
        CaseCommand::HandoffAcked
            | CaseCommand::HandoffRefused { .. }
            | CaseCommand::Supervise { .. }
    ) {
        return Ok(Err(refused(
            RejectKind::Forbidden,
            "federation_only",
            "only the federation protocol sends this command",
        )));
    }
    let Some(case) = load_case(txn, case_id)? else {
        return Ok(Err(not_found(case_id)));
    };
    if federation::outbox_full(state) {
        return Ok(Err(outbox_full(state)));
    }
    if let Some(refusal) = check_route(context, &case, command) {
        return Ok(Err(refusal));
    }
    let events = match domain::decide(&case, command, &context.domain(now)) {
        Ok(events) => events,
        Err(error) => return Ok(Err(error.into())),
    };
    let mut updated = case.clone();
    for event in &events {
        updated.apply(event);
    }
    let response = store_case(txn, case.next_alarm(), &updated);
    federation::on_case_change(txn, context, now, state, Some(&case), &updated, &events)?;
    Ok(Ok((response, updated.id)))
}

/// Where a command would send the case must exist in this federation: a review goes to this
/// office's parent, which the root office does not have.
fn check_route(context: &ApplyContext, case: &Case, command: &CaseCommand) -> Option<Refused> {
    match command {
        CaseCommand::RequestReview if context.parent.is_none() => Some(
            DomainError::NoLevelAbove {
                office: case.office.clone(),
            }
            .into(),
        ),
        _ => None,
    }
}

/// Raises the warnings and overdue marks due at `now`, for at most [`TICK_CASES_MAX`] cases.
fn tick(
    txn: &mut Txn<'_>,
    context: &ApplyContext,
    now: Millis,
    state: &mut AppliedState,
) -> Result<u32, ApplyError> {
    let due_end = sm::alarm(now.saturating_add(1), "");
    let due = txn.scan(sm::ALARM, &due_end, TICK_CASES_MAX)?;
    let mut raised = 0u32;
    for (alarm_key, _) in due {
        // This alarm is spent; the case's next one (strictly in the future) replaces it.
        txn.delete(alarm_key.clone());
        let Some(case_id) = sm::alarm_case(&alarm_key).and_then(|id| id.parse::<CaseId>().ok())
        else {
            continue;
        };
        let Some(case) = load_case(txn, &case_id)? else {
            continue;
        };
        let events: Vec<Event> = domain::tick(&case, &context.domain(now));
        let mut updated = case.clone();
        for event in &events {
            updated.apply(event);
        }
        raised = raised.saturating_add(u32::try_from(events.len()).unwrap_or(u32::MAX));
        store_case(txn, None, &updated);
        if let Some(at) = updated.next_alarm().filter(|&at| at <= now) {
            tracing::error!(%case_id, at, now, "case engine asked for an alarm that is already due; dropped");
            txn.delete(sm::alarm(at, &case_id.to_string()));
        }
        if !events.is_empty() {
            federation::on_case_change(txn, context, now, state, Some(&case), &updated, &events)?;
        }
    }
    Ok(raised)
}

fn not_found(case_id: &CaseId) -> Refused {
    refused(
        RejectKind::NotFound,
        "case_not_found",
        format!("case {case_id} is not held by this office"),
    )
}

pub fn load_case(txn: &Txn<'_>, case_id: &CaseId) -> Result<Option<Case>, ApplyError> {
    match txn.get(&sm::case(&case_id.to_string()))? {
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
pub fn store_case(txn: &mut Txn<'_>, previous_alarm: Option<Millis>, case: &Case) -> Response {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::HostDb;
    use liandong_domain::{Channel, Opinion};

    fn request(at: Millis, op: Operation) -> Request {
        Request { at, op }
    }

    fn act(case_id: &CaseId, command: CaseCommand, request_id: &str) -> Operation {
        Operation::Act {
            case_id: case_id.clone(),
            command,
            request_id: Some(request_id.into()),
        }
    }

    /// A retried request gets the answer it first got, not the case as later writes left it: a
    /// client that retries after a lost reply must not see a state from after its write.
    #[test]
    fn a_retried_request_gets_its_first_answer() {
        let dir = tempfile::tempdir().unwrap();
        let db = HostDb::open(dir.path()).unwrap();
        let mut txn = Txn::new(&db, "5306");
        let context = ApplyContext {
            office: "5306".parse().unwrap(),
            parent: None,
            secret: vec![7; 32],
            calendar: Arc::new(Calendar::china()),
        };
        let mut state = AppliedState::default();
        let at = 1_767_225_600_000; // 2026-01-01
        let registration = Registration {
            channel: Channel::Visit,
            petitioner_id: "530602198001010012".into(),
            name: "Zhang".into(),
            phone: None,
            category: "housing".into(),
            summary: "The roof leaks.".into(),
            location: None,
            officer: "registrar".into(),
        };
        let filed = apply_request(
            &mut txn,
            &context,
            &mut state,
            &request(
                at,
                Operation::File {
                    registration,
                    request_id: Some("file-1".into()),
                },
            ),
        )
        .unwrap();
        let Response::Case { document } = filed else {
            panic!("filing answered {filed:?}");
        };
        let case_id = Case::from_bytes(&document).unwrap().id;
        let accept = act(
            &case_id,
            CaseCommand::Accept {
                officer: "li".into(),
            },
            "accept-1",
        );
        let first = apply_request(
            &mut txn,
            &context,
            &mut state,
            &request(at + 1, accept.clone()),
        )
        .unwrap();
        let reply = CaseCommand::Reply {
            opinion: Opinion::Support,
            text: "Repaired.".into(),
            officer: "li".into(),
        };
        let replied = apply_request(
            &mut txn,
            &context,
            &mut state,
            &request(at + 2, act(&case_id, reply, "reply-1")),
        )
        .unwrap();
        let retried =
            apply_request(&mut txn, &context, &mut state, &request(at + 3, accept)).unwrap();
        assert_eq!(
            retried, first,
            "the retry is answered as the first attempt was"
        );
        assert_ne!(
            retried, replied,
            "not with the case as the later reply left it"
        );
    }
}
