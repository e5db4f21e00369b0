//! Cases: registering, officers' commands, deadline ticks, and [`commit`], the one way a case
//! change is committed with its events and the messages it sends.
//!
//! A case is stored as its header (`case/<id>`: the case without its history entries, whose
//! `history_start` is the head of the whole chain) and its history entries (`history/<id>/<seq>`,
//! one key each). The engine decides from the header, and the entries it adds follow the
//! header's chain head: applying a command reads and writes the header and appends the new
//! entries, so updating a case with 1,000 events costs what updating a fresh one does. Only what
//! needs the whole history reads it: a handoff (ownership moves with the record) and reads of a
//! whole case.

use liandong_domain::message::SummaryV2;
use liandong_domain::{
    self as domain, Case, CaseCommand, CaseId, CaseKind, Context, Date, DomainError, Event,
    HistoryEntry, Millis, Registration, Status,
};

use super::apply::{refused, ApplyError, Applying, Outcome, Refused};
use super::outbox::{self, Outgoing};
use super::{keys, Read};
use crate::raft::types::RejectKind;
use crate::store::codec::{decode, encode};
use crate::store::Txn;

/// Cases whose alarms one tick handles at most; the rest wait for the next tick.
pub const TICK_CASES_MAX: usize = 256;

/// A case change about to be committed.
pub(super) struct Change<'a> {
    /// The stored header before the change; None for a case new to this office.
    pub before: Option<&'a Case>,
    /// The case after it: the header followed by the entries the change added, or (a case new
    /// here, or received whole) the case with its whole history.
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

    /// The stored header `case` with `events` applied.
    pub fn with_events(case: &'a Case, events: Vec<Event>) -> Change<'a> {
        debug_assert!(
            case.history.is_empty(),
            "changes start from a stored header"
        );
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

/// Commits a case change with everything it causes, in this entry's batch: the case's header,
/// the history entries it adds, its alarm, the office's case count, the messages it sends (the
/// transactional outbox) and the SMS notices it makes (the notification outbox). The messages
/// are built and checked before anything is written: one too large to deliver refuses the
/// change, which then changes nothing. `alarm_before` is the alarm stored for the case now
/// (None where there is none, or it was just spent).
pub(super) fn commit(
    apply: &mut Applying<'_, '_>,
    change: &mut Change<'_>,
    alarm_before: Option<Millis>,
) -> Outcome<()> {
    // The entries this office added are signed before anything (a message, the reply) sees them.
    if let Some(signer) = &apply.context.signer {
        change.after.sign_new_entries(signer.as_ref());
    }
    let mut messages = outbox::messages_for(apply, change)?;
    // A supervision order missed here: a red card, to the order's issuer.
    let card = super::notices::missed_order(apply, change)?;
    if let Some(card) = &card {
        let body = domain::message::Body::RedCard { card: card.clone() };
        messages.push((card.issuer.clone(), body));
    }
    let outgoing = Outgoing::prepare(apply, messages)?;
    if let Err(refusal) = outgoing.check() {
        return Ok(Err(refusal));
    }
    if change.before.is_none() {
        apply.state.cases += 1;
    }
    let indexed = super::stats::indexed_summary(apply.txn, &change.after.id)?;
    super::stats::count_change(
        apply.txn,
        super::stats::effective(change.before.map(SummaryV2::of), indexed.clone()).as_ref(),
        super::stats::effective(Some(SummaryV2::of(&change.after)), indexed).as_ref(),
    )?;
    if outbox::breach(change).is_some() {
        super::stats::count_breach(apply.txn, &apply.context.office)?;
    }
    store_case(apply.txn, alarm_before, change);
    outgoing.put(apply);
    // The case leaves this office: its department tasks here are closed with it.
    if let Status::InTransit { to, kind } = &change.after.status {
        let held_before = change.before.is_some_and(|before| {
            !matches!(
                before.status,
                Status::InTransit { .. } | Status::Forwarded { .. }
            )
        });
        if held_before {
            super::departments::hand_on(apply, &change.after.id, to, kind.as_str())?;
        }
    }
    if let Some(card) = &card {
        super::notices::record_earned(apply, card)?;
    }
    super::notices::touched(apply, change)?;
    super::notify::made(apply, change)?;
    Ok(Ok(()))
}

/// Writes the case's header and the entries it adds, and moves its alarm.
fn store_case(txn: &mut Txn<'_>, alarm_before: Option<Millis>, change: &mut Change<'_>) {
    let case = &change.after;
    let id = case.id.to_string();
    move_alarm(txn, &id, alarm_before, case.next_alarm());
    for entry in &case.history {
        txn.put(keys::history(&id, entry.seq), encode(entry));
    }
    // A case received whole over a copy held before (a stub, returned to this office) has the
    // received history: entries of the old copy past its end go.
    let stored_len = change.before.map(Case::history_len).unwrap_or(0);
    if case.has_whole_history() {
        for seq in case.history_len().saturating_add(1)..=stored_len {
            txn.delete(keys::history(&id, seq));
        }
    }
    txn.put(keys::case(&id), header_bytes(&mut change.after));
}

/// The stored bytes of `case`'s header: the case without its entries, its `history_start` the
/// chain's head ([`Case::into_header`]), encoded in place instead of from a copy of the case.
fn header_bytes(case: &mut Case) -> Vec<u8> {
    let head = case.chain_head();
    let start = std::mem::replace(&mut case.history_start, head);
    let entries = std::mem::take(&mut case.history);
    let bytes = encode(&*case);
    case.history = entries;
    case.history_start = start;
    bytes
}

fn move_alarm(txn: &mut Txn<'_>, id: &str, before: Option<Millis>, after: Option<Millis>) {
    if before == after {
        return;
    }
    if let Some(at) = before {
        txn.delete(keys::alarm(at, id));
    }
    if let Some(at) = after {
        txn.put(keys::alarm(at, id), Vec::new());
    }
}

/// The stored header of a case (no history entries).
pub(super) fn load_header(
    reader: &impl Read,
    case_id: &CaseId,
) -> Result<Option<Case>, ApplyError> {
    let key = keys::case(&case_id.to_string());
    let Some(bytes) = reader.get(&key)? else {
        return Ok(None);
    };
    let header = Case::from_bytes(&bytes).map_err(|source| corrupt(case_id, source))?;
    if !header.history.is_empty() {
        // A format-1 case (one document with its history) is split when its replica opens.
        let reason = "a stored case carries history entries: it was never split".to_string();
        return Err(corrupt(case_id, DomainError::Corrupt { reason }));
    }
    Ok(Some(header))
}

/// A case with its whole history, as this office holds it.
pub(super) fn load_whole(reader: &impl Read, case_id: &CaseId) -> Result<Option<Case>, ApplyError> {
    let Some(header) = load_header(reader, case_id)? else {
        return Ok(None);
    };
    let entries = load_entries(reader, case_id)?;
    header
        .with_whole_history(entries)
        .map(Some)
        .map_err(|source| corrupt(case_id, source))
}

/// Every stored history entry of a case, in chain order.
fn load_entries(reader: &impl Read, case_id: &CaseId) -> Result<Vec<HistoryEntry>, ApplyError> {
    let prefix = keys::history_of(&case_id.to_string());
    let end = crate::store::keys::prefix_end(&prefix);
    reader
        .scan(&prefix, &end, usize::MAX)?
        .iter()
        .map(|(_, value)| Ok(decode(value)?))
        .collect()
}

/// `after` with the whole history: the entries stored for it and those it added.
pub(super) fn whole(reader: &impl Read, after: &Case) -> Result<Case, ApplyError> {
    if after.has_whole_history() {
        return Ok(after.clone());
    }
    let mut entries = load_entries(reader, &after.id)?;
    entries.truncate(after.history_start.entries as usize);
    let (header, added) = after.clone().into_header();
    entries.extend(added);
    header
        .with_whole_history(entries)
        .map_err(|source| corrupt(&after.id, source))
}

fn corrupt(case_id: &CaseId, source: DomainError) -> ApplyError {
    ApplyError::Case {
        key: case_id.to_string(),
        source,
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

/// Registers a petition at this office; the reply's case document (the case, its one entry) and
/// the new case's id. `petitioner_key`: the key the proposing host computed before it sealed the
/// personal fields (`Operation::FileSealed`); None for a clear registration (`Operation::File`,
/// logged by older builds), whose key is computed here from the clear ID number.
pub(super) fn file(
    apply: &mut Applying<'_, '_>,
    registration: &Registration,
    petitioner_key: Option<&String>,
) -> Outcome<(Vec<u8>, CaseId)> {
    file_with(apply, registration, petitioner_key, None)
}

/// A group petition's filing ([`crate::raft::types::Operation::FileGroup`]): as [`file`], the
/// case taking `group` (sealed by the proposing host, like the registration).
pub(super) fn file_group(
    apply: &mut Applying<'_, '_>,
    registration: &Registration,
    petitioner_key: &String,
    group: &domain::group::Group,
) -> Outcome<(Vec<u8>, CaseId)> {
    let checked = group.validate().and_then(|()| {
        let id_type = group.representative_id_type()?;
        registration.validate_as(id_type.unwrap_or(domain::IdType::Resident))
    });
    if let Err(error) = checked {
        return Ok(Err(error.into()));
    }
    file_with(apply, registration, Some(petitioner_key), Some(group))
}

fn file_with(
    apply: &mut Applying<'_, '_>,
    registration: &Registration,
    petitioner_key: Option<&String>,
    group: Option<&domain::group::Group>,
) -> Outcome<(Vec<u8>, CaseId)> {
    if group.is_none() {
        if let Err(error) = registration.validate() {
            return Ok(Err(error.into()));
        }
    }
    let key = match (petitioner_key, registration.petitioner_id.clear()) {
        (Some(key), _) => key.clone(),
        (None, Some(id_number)) => domain::petitioner_key(&apply.context.secret, id_number),
        (None, None) => {
            return Ok(Err(refused(
                RejectKind::Invalid,
                "no_petitioner_key",
                "a sealed registration carries its petitioner key",
            )))
        }
    };
    if let Some(full) = outbox::full(apply.state) {
        return Ok(Err(full));
    }
    let id = next_case_id(apply)?;
    let context = apply.context;
    let registered = domain::register_with_group(
        id,
        registration.clone(),
        key,
        CaseKind::Original,
        group.cloned(),
        &context.domain(apply.now),
    );
    let case = match registered {
        Ok(case) => case,
        Err(error) => return Ok(Err(error.into())),
    };
    let mut change = Change::new_case(case);
    Ok(commit(apply, &mut change, None)?
        .map(|()| (change.after.to_bytes(), change.after.id.clone())))
}

/// An officer's command on a case this office holds; the reply's case document (the header
/// and the entries the command added) and the case's id.
pub(super) fn act(
    apply: &mut Applying<'_, '_>,
    case_id: &CaseId,
    command: &CaseCommand,
) -> Outcome<(Vec<u8>, CaseId)> {
    if command.is_federation_only() {
        return Ok(Err(refused(
            RejectKind::Forbidden,
            "federation_only",
            "only the federation protocol sends this command",
        )));
    }
    let Some(case) = load_header(apply.txn, case_id)? else {
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
    Ok(decide_and_commit(apply, &case, command)?.map(|after| (after.to_bytes(), after.id.clone())))
}

/// A command of the federation protocol (a supervision order, the end of a handoff) on a case
/// this office holds.
pub(super) fn command(
    apply: &mut Applying<'_, '_>,
    case_id: &CaseId,
    command: &CaseCommand,
) -> Outcome<()> {
    let Some(case) = load_header(apply.txn, case_id)? else {
        return Ok(Err(refused(
            RejectKind::NotFound,
            "case_not_found",
            format!("{} holds no case {case_id}", apply.context.office),
        )));
    };
    Ok(decide_and_commit(apply, &case, command)?.map(|_| ()))
}

/// The case engine decides `command` on `case`; the change is committed. Returns the case
/// after it: the header and the entries the command added.
fn decide_and_commit(
    apply: &mut Applying<'_, '_>,
    case: &Case,
    command: &CaseCommand,
) -> Outcome<Case> {
    let mut change = match Change::decide(case, command, &apply.context.domain(apply.now)) {
        Ok(change) => change,
        Err(error) => return Ok(Err(error.into())),
    };
    Ok(commit(apply, &mut change, case.next_alarm())?.map(|()| change.after))
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
        let Some(case) = load_header(apply.txn, &case_id)? else {
            continue;
        };
        let events = domain::tick(&case, &apply.context.domain(apply.now));
        raised = raised.saturating_add(u32::try_from(events.len()).unwrap_or(u32::MAX));
        let mut change = Change::with_events(&case, events);
        let id = case_id.to_string();
        if change.events.is_empty() {
            // Nothing changed: the case only gets its alarm back.
            move_alarm(apply.txn, &id, None, change.after.next_alarm());
        } else if let Err(refusal) = commit(apply, &mut change, None)? {
            // A tick sends only summaries, which always fit: a refusal here is a bug.
            tracing::error!(%case_id, code = %refusal.code, "a tick's change was refused");
        }
        if let Some(at) = change.after.next_alarm().filter(|&at| at <= apply.now) {
            tracing::error!(%case_id, at, now = apply.now, "case engine asked for an alarm that is already due; dropped");
            apply.txn.delete(keys::alarm(at, &id));
        }
    }
    Ok(raised)
}
