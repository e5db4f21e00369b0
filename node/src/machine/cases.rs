//! Cases: registering, officers' commands, deadline ticks, and [`commit`], the one way a case
//! change is committed with its events and the messages it sends.

use liandong_domain::{
    self as domain, Case, CaseCommand, CaseId, CaseKind, Context, Date, DomainError, Event, Millis,
    Registration,
};

use super::apply::{refused, ApplyError, Applying, Outcome, Refused};
use super::outbox::{self, Outgoing};
use super::{keys, Read};
use crate::raft::types::{RejectKind, Response};
use crate::store::codec::{decode, encode};
use crate::store::Txn;

/// Cases whose alarms one tick handles at most; the rest wait for the next tick.
pub const TICK_CASES_MAX: usize = 256;

/// A case change about to be committed.
pub(super) struct Change<'a> {
    /// The stored copy before the change; None for a case new to this office.
    pub before: Option<&'a Case>,
    pub after: Case,
    /// What happened between the two (empty for a new or received case).
    pub events: Vec<Event>,
}

impl<'a> Change<'a> {
    /// A case this office did not hold before (registered, received, escalated to it).
    pub fn new_case(case: Case) -> Change<'static> {
        Change {
            before: None,
            after: case,
            events: Vec::new(),
        }
    }

    /// `case` with `events` applied.
    pub fn with_events(case: &'a Case, events: Vec<Event>) -> Change<'a> {
        let mut after = case.clone();
        for event in &events {
            after.apply(event);
        }
        Change {
            before: Some(case),
            after,
            events,
        }
    }

    /// `command` decided by the case engine on `case`: the events it gives, applied.
    pub fn decide(
        case: &'a Case,
        command: &CaseCommand,
        context: &Context<'_>,
    ) -> Result<Change<'a>, DomainError> {
        domain::decide(case, command, context).map(|events| Change::with_events(case, events))
    }
}

/// Commits a case change with everything it causes, in this entry's batch: the case document
/// and its alarm, the office's case count, and the messages it sends (the transactional
/// outbox). The messages are built and checked before anything is written: one too large to
/// deliver refuses the change, which then changes nothing. `alarm_before` is the alarm stored
/// for the case now (None where there is none, or it was just spent).
pub(super) fn commit(
    apply: &mut Applying<'_, '_>,
    change: &Change<'_>,
    alarm_before: Option<Millis>,
) -> Outcome<Response> {
    let messages = outbox::messages_for(apply.context, change);
    let outgoing = Outgoing::prepare(apply, messages)?;
    if let Err(refusal) = outgoing.check() {
        return Ok(Err(refusal));
    }
    if change.before.is_none() {
        apply.state.cases += 1;
    }
    let response = store_case(apply.txn, alarm_before, &change.after);
    outgoing.put(apply);
    Ok(Ok(response))
}

/// Writes the case and moves its alarm; returns the reply carrying the case document.
fn store_case(txn: &mut Txn<'_>, previous_alarm: Option<Millis>, case: &Case) -> Response {
    let id = case.id.to_string();
    let next_alarm = case.next_alarm();
    if previous_alarm != next_alarm {
        if let Some(at) = previous_alarm {
            txn.delete(keys::alarm(at, &id));
        }
        if let Some(at) = next_alarm {
            txn.put(keys::alarm(at, &id), Vec::new());
        }
    }
    let document = case.to_bytes();
    txn.put(keys::case(&id), document.clone());
    Response::Case { document }
}

pub(super) fn load_case(reader: &impl Read, case_id: &CaseId) -> Result<Option<Case>, ApplyError> {
    match reader.get(&keys::case(&case_id.to_string()))? {
        None => Ok(None),
        Some(bytes) => Case::from_bytes(&bytes)
            .map(Some)
            .map_err(|source| ApplyError::Case {
                key: case_id.to_string(),
                source,
            }),
    }
}

/// The next case id of this office: `<office>-<year>-<seq>`, the sequence per year.
pub(super) fn next_case_id(apply: &mut Applying<'_, '_>) -> Result<CaseId, ApplyError> {
    let year = Date::from_millis(apply.now).year;
    let seq_key = keys::seq(year);
    let seq = match apply.txn.get(&seq_key)? {
        Some(bytes) => decode::<u32>(&bytes)?.saturating_add(1),
        None => 1,
    };
    apply.txn.put(seq_key, encode(&seq));
    Ok(CaseId {
        office: apply.context.office.clone(),
        year,
        seq,
    })
}

/// Registers a petition at this office.
pub(super) fn file(
    apply: &mut Applying<'_, '_>,
    registration: &Registration,
) -> Outcome<(Response, CaseId)> {
    if let Err(error) = registration.validate() {
        return Ok(Err(error.into()));
    }
    if let Some(full) = outbox::full(apply.state) {
        return Ok(Err(full));
    }
    let id = next_case_id(apply)?;
    let context = apply.context;
    let key = domain::petitioner_key(&context.secret, &registration.petitioner_id);
    let registered = domain::register(
        id,
        registration.clone(),
        key,
        CaseKind::Original,
        &context.domain(apply.now),
    );
    let case = match registered {
        Ok(case) => case,
        Err(error) => return Ok(Err(error.into())),
    };
    let id = case.id.clone();
    Ok(commit(apply, &Change::new_case(case), None)?.map(|response| (response, id)))
}

/// An officer's command on a case this office holds.
pub(super) fn act(
    apply: &mut Applying<'_, '_>,
    case_id: &CaseId,
    command: &CaseCommand,
) -> Outcome<(Response, CaseId)> {
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
    let Some(case) = load_case(apply.txn, case_id)? else {
        return Ok(Err(refused(
            RejectKind::NotFound,
            "case_not_found",
            format!("case {case_id} is not held by this office"),
        )));
    };
    if let Some(full) = outbox::full(apply.state) {
        return Ok(Err(full));
    }
    if let Some(refusal) = check_route(apply, &case, command) {
        return Ok(Err(refusal));
    }
    Ok(decide_and_commit(apply, &case, command)?.map(|response| (response, case.id.clone())))
}

/// A command of the federation protocol (a supervision order, the end of a handoff) on a case
/// this office holds.
pub(super) fn command(
    apply: &mut Applying<'_, '_>,
    case_id: &CaseId,
    command: &CaseCommand,
) -> Outcome<Response> {
    let Some(case) = load_case(apply.txn, case_id)? else {
        return Ok(Err(refused(
            RejectKind::NotFound,
            "case_not_found",
            format!("{} holds no case {case_id}", apply.context.office),
        )));
    };
    decide_and_commit(apply, &case, command)
}

/// The case engine decides `command` on `case`; the change is committed.
fn decide_and_commit(
    apply: &mut Applying<'_, '_>,
    case: &Case,
    command: &CaseCommand,
) -> Outcome<Response> {
    match Change::decide(case, command, &apply.context.domain(apply.now)) {
        Ok(change) => commit(apply, &change, case.next_alarm()),
        Err(error) => Ok(Err(error.into())),
    }
}

/// Where a command would send the case must exist in this federation: a review goes to this
/// office's parent, which the root office does not have.
fn check_route(apply: &Applying<'_, '_>, case: &Case, command: &CaseCommand) -> Option<Refused> {
    match command {
        CaseCommand::RequestReview if apply.context.parent.is_none() => Some(
            DomainError::NoLevelAbove {
                office: case.office.clone(),
            }
            .into(),
        ),
        _ => None,
    }
}

/// Raises the warnings and overdue marks due at `now`, for at most [`TICK_CASES_MAX`] cases;
/// returns how many events it raised.
pub(super) fn tick(apply: &mut Applying<'_, '_>) -> Result<u32, ApplyError> {
    let due_end = keys::alarm(apply.now.saturating_add(1), "");
    let due = apply.txn.scan(keys::ALARM, &due_end, TICK_CASES_MAX)?;
    let mut raised = 0u32;
    for (alarm_key, _) in due {
        // This alarm is spent; the case's next one (strictly in the future) replaces it.
        apply.txn.delete(alarm_key.clone());
        let Some(case_id) = keys::alarm_case(&alarm_key).and_then(|id| id.parse::<CaseId>().ok())
        else {
            continue;
        };
        let Some(case) = load_case(apply.txn, &case_id)? else {
            continue;
        };
        let events = domain::tick(&case, &apply.context.domain(apply.now));
        raised = raised.saturating_add(u32::try_from(events.len()).unwrap_or(u32::MAX));
        let change = Change::with_events(&case, events);
        if change.events.is_empty() {
            // Nothing changed: the case only gets its alarm back.
            store_case(apply.txn, None, &change.after);
        } else if let Err(refusal) = commit(apply, &change, None)? {
            // A tick sends only summaries, which always fit: a refusal here is a bug.
            tracing::error!(%case_id, code = %refusal.code, "a tick's change was refused");
        }
        if let Some(at) = change.after.next_alarm().filter(|&at| at <= apply.now) {
            tracing::error!(%case_id, at, now = apply.now, "case engine asked for an alarm that is already due; dropped");
            apply.txn.delete(keys::alarm(at, &case_id.to_string()));
        }
    }
    Ok(raised)
}
