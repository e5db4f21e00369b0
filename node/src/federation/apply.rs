//! The federation's side of applying a log entry: messages enqueued in the same batch as the
//! case change that caused them (the transactional outbox), messages received (the inbox), and
//! acknowledgements (the sender drops what the receiver committed). Deterministic, like the
//! rest of the state machine.

use liandong_domain::message::{Body, Envelope, Summary};
use liandong_domain::{
    self as domain, Case, CaseCommand, CaseId, CaseKind, Event, HandoffKind, OfficeCode,
    Registration, Status,
};

use super::state::{self, LinkIn, LinkOut, OrderAnswer, OrderRecord, Refusal, OUTBOX_LEN_MAX};
use crate::raft::apply::{load_case, store_case, ApplyContext, ApplyError};
use crate::raft::types::Response;
use crate::store::codec::{decode, encode};
use crate::store::{AppliedState, Txn};

fn get<T: serde::de::DeserializeOwned + Default>(
    txn: &Txn<'_>,
    key: &[u8],
) -> Result<T, ApplyError> {
    match txn.get(key)? {
        Some(bytes) => Ok(decode(&bytes)?),
        None => Ok(T::default()),
    }
}

fn refusal(seq: u64, code: &str, reason: impl Into<String>) -> Refusal {
    Refusal {
        seq,
        code: code.to_string(),
        reason: reason.into(),
    }
}

/// True if one more message would overflow the outbox: the caller refuses the operation.
pub fn outbox_full(state: &AppliedState) -> bool {
    state.outbox_pending >= OUTBOX_LEN_MAX
}

/// Puts a message on the link to `to`, in this very batch.
pub fn enqueue(
    txn: &mut Txn<'_>,
    context: &ApplyContext,
    now: i64,
    state: &mut AppliedState,
    to: &OfficeCode,
    body: Body,
) -> Result<(), ApplyError> {
    let link_key = state::link(to);
    let mut link: LinkOut = get(txn, &link_key)?;
    link.last_seq += 1;
    let envelope = Envelope {
        from: context.office.clone(),
        to: to.clone(),
        seq: link.last_seq,
        sent_at: now,
        body,
    };
    txn.put(state::outbox(to, link.last_seq), encode(&envelope));
    txn.put(link_key, encode(&link));
    state.outbox_pending += 1;
    Ok(())
}

/// The messages a case change sends: the handoff it started, the escalation it asked for, the
/// answer to a supervision order, and its summary for the ancestors' index.
pub fn on_case_change(
    txn: &mut Txn<'_>,
    context: &ApplyContext,
    now: i64,
    state: &mut AppliedState,
    before: Option<&Case>,
    after: &Case,
    events: &[Event],
) -> Result<(), ApplyError> {
    let was_in_transit = before.is_some_and(|case| matches!(case.status, Status::InTransit { .. }));
    if let (Status::InTransit { to, .. }, false) = (&after.status, was_in_transit) {
        enqueue(
            txn,
            context,
            now,
            state,
            to,
            Body::Handoff {
                case: Box::new(after.clone()),
            },
        )?;
    }
    for event in events {
        match event {
            Event::ReviewRequested { level, to, .. } => {
                enqueue(
                    txn,
                    context,
                    now,
                    state,
                    to,
                    Body::Escalation {
                        level: *level,
                        case: Box::new(after.clone()),
                    },
                )?;
            }
            Event::SupervisionAnswered { text, officer, .. } => {
                if let Some(order) = before.and_then(|case| case.supervision.as_ref()) {
                    let body = Body::SupervisionAnswer {
                        case_id: after.id.clone(),
                        order_id: String::new(),
                        text: text.clone(),
                        officer: officer.clone(),
                    };
                    enqueue(txn, context, now, state, &order.from, body)?;
                }
            }
            _ => {}
        }
    }
    if let Some(parent) = &context.parent {
        enqueue(
            txn,
            context,
            now,
            state,
            parent,
            Body::IndexUpdate {
                summary: Summary::of(after),
            },
        )?;
    }
    Ok(())
}

/// Applies a batch delivered on the link from `from`, in sequence order. A message at or below
/// the watermark was applied before (a redelivery): skipped. A gap stops the batch (the sender
/// resends from its outbox). A message a rule forbids is committed as refused: it changes
/// nothing here and the sender learns why.
pub fn receive(
    txn: &mut Txn<'_>,
    context: &ApplyContext,
    now: i64,
    state: &mut AppliedState,
    from: &OfficeCode,
    envelopes: &[Envelope],
) -> Result<Response, ApplyError> {
    let inbox_key = state::inbox(from);
    let mut inbox: LinkIn = get(txn, &inbox_key)?;
    let first_seq = envelopes.first().map(|e| e.seq).unwrap_or(0);
    for envelope in envelopes {
        if envelope.seq <= inbox.applied_through {
            continue;
        }
        if envelope.seq != inbox.applied_through + 1 {
            break;
        }
        let outcome = if envelope.from != *from || envelope.to != context.office {
            Err(refusal(
                envelope.seq,
                "misaddressed",
                "envelope names another link",
            ))
        } else {
            apply_message(txn, context, now, state, envelope)?
        };
        if let Err(refused) = outcome {
            txn.put(state::refused(from, envelope.seq), encode(&refused));
        }
        inbox.applied_through = envelope.seq;
        inbox.applied += 1;
    }
    txn.put(inbox_key, encode(&inbox));
    let mut refused = Vec::new();
    for seq in first_seq.max(1)..=inbox.applied_through {
        if let Some(bytes) = txn.get(&state::refused(from, seq))? {
            refused.push(decode::<Refusal>(&bytes)?);
        }
    }
    Ok(Response::Delivered {
        applied_through: inbox.applied_through,
        refused,
    })
}

type MessageOutcome = Result<Result<(), Refusal>, ApplyError>;

fn apply_message(
    txn: &mut Txn<'_>,
    context: &ApplyContext,
    now: i64,
    state: &mut AppliedState,
    envelope: &Envelope,
) -> MessageOutcome {
    let seq = envelope.seq;
    let from = &envelope.from;
    let here = &context.office;
    match &envelope.body {
        Body::Handoff { case } => receive_handoff(txn, context, now, state, seq, from, case),
        Body::Escalation { level, case } => {
            if !here.is_ancestor_of(from) {
                return Ok(Err(refusal(
                    seq,
                    "escalation_not_upward",
                    format!("{from} may escalate only to its ancestors, not {here}"),
                )));
            }
            receive_escalation(txn, context, now, state, seq, *level, case)
        }
        Body::SupervisionOrder {
            case_id,
            order_id,
            text,
            due_days,
        } => {
            if !from.is_ancestor_of(here) {
                return Ok(Err(refusal(
                    seq,
                    "supervision_not_downward",
                    format!("{from} may supervise only its descendants, not {here}"),
                )));
            }
            let command = CaseCommand::Supervise {
                from: from.clone(),
                due_days: *due_days,
                text: text.clone(),
            };
            let _ = order_id;
            change_case(txn, context, now, state, seq, case_id, &command)
        }
        Body::SupervisionAnswer {
            case_id,
            text,
            officer,
            ..
        } => {
            if !here.is_ancestor_of(from) {
                return Ok(Err(refusal(
                    seq,
                    "answer_not_upward",
                    format!("{from} answers only its ancestors' orders"),
                )));
            }
            record_answer(txn, now, seq, case_id, text, officer)
        }
        Body::IndexUpdate { summary } => {
            if !here.is_ancestor_of(from) {
                return Ok(Err(refusal(
                    seq,
                    "index_not_upward",
                    format!("{from} is not below {here}"),
                )));
            }
            index_summary(txn, context, now, state, from, summary)?;
            Ok(Ok(()))
        }
    }
}

fn receive_handoff(
    txn: &mut Txn<'_>,
    context: &ApplyContext,
    now: i64,
    state: &mut AppliedState,
    seq: u64,
    from: &OfficeCode,
    case: &Case,
) -> MessageOutcome {
    let here = &context.office;
    let Status::InTransit { to, kind } = &case.status else {
        return Ok(Err(refusal(
            seq,
            "not_in_transit",
            format!("case {} is not in transit", case.id),
        )));
    };
    if to != here || case.office != *from {
        return Ok(Err(refusal(
            seq,
            "not_owner",
            format!("{from} does not hold case {} for {here}", case.id),
        )));
    }
    if let HandoffKind::Assign { .. } = kind {
        if !from.is_ancestor_of(here) {
            return Ok(Err(refusal(
                seq,
                "assign_not_downward",
                format!("{from} may assign only to its descendants, not {here}"),
            )));
        }
    }
    let existing = load_case(txn, &case.id)?;
    match (&existing, kind) {
        (Some(copy), HandoffKind::Return)
            if copy.status == (Status::Forwarded { to: from.clone() }) => {}
        (_, HandoffKind::Return) => {
            return Ok(Err(refusal(
                seq,
                "not_returnable",
                format!("case {} was not handed from {here} to {from}", case.id),
            )));
        }
        (Some(copy), _) if !matches!(copy.status, Status::Forwarded { .. }) => {
            return Ok(Err(refusal(
                seq,
                "already_held",
                format!("{here} already holds case {}", case.id),
            )));
        }
        _ => {}
    }
    let ctx = context.domain(now);
    let received = match domain::receive(case, kind.clone(), &ctx) {
        Ok(received) => received,
        Err(error) => return Ok(Err(refusal(seq, error.code(), error.to_string()))),
    };
    let previous_alarm = existing.as_ref().and_then(Case::next_alarm);
    if existing.is_none() {
        state.cases += 1;
    }
    store_case(txn, previous_alarm, &received);
    on_case_change(txn, context, now, state, existing.as_ref(), &received, &[])?;
    Ok(Ok(()))
}

fn receive_escalation(
    txn: &mut Txn<'_>,
    context: &ApplyContext,
    now: i64,
    state: &mut AppliedState,
    seq: u64,
    level: domain::ReviewLevel,
    original: &Case,
) -> MessageOutcome {
    let Some(petitioner) = &original.petitioner else {
        return Ok(Err(refusal(
            seq,
            "no_petitioner",
            "an escalation carries the petitioner",
        )));
    };
    let registration = Registration {
        channel: original.channel,
        petitioner_id: petitioner.id_number.clone(),
        name: petitioner.name.clone(),
        phone: petitioner.phone.clone(),
        category: original.category.clone(),
        summary: original.summary.clone(),
        location: original.location.clone(),
        officer: format!("{} intake", level.as_str()),
    };
    let kind = match level {
        domain::ReviewLevel::Review => CaseKind::Review {
            of: original.id.clone(),
        },
        domain::ReviewLevel::ReReview => CaseKind::ReReview {
            of: original.id.clone(),
        },
    };
    let ctx = context.domain(now);
    let id = crate::raft::apply::next_case_id(txn, context, now)?;
    match domain::register(
        id,
        registration,
        original.petitioner_key.clone(),
        kind,
        &ctx,
    ) {
        Ok(case) => {
            state.cases += 1;
            store_case(txn, None, &case);
            on_case_change(txn, context, now, state, None, &case, &[])?;
            Ok(Ok(()))
        }
        Err(error) => Ok(Err(refusal(seq, error.code(), error.to_string()))),
    }
}

/// An officer-less command on a case this office holds (from another office's message).
fn change_case(
    txn: &mut Txn<'_>,
    context: &ApplyContext,
    now: i64,
    state: &mut AppliedState,
    seq: u64,
    case_id: &CaseId,
    command: &CaseCommand,
) -> MessageOutcome {
    let Some(case) = load_case(txn, case_id)? else {
        return Ok(Err(refusal(
            seq,
            "case_not_found",
            format!("{} holds no case {case_id}", context.office),
        )));
    };
    let ctx = context.domain(now);
    let events = match domain::decide(&case, command, &ctx) {
        Ok(events) => events,
        Err(error) => return Ok(Err(refusal(seq, error.code(), error.to_string()))),
    };
    let mut updated = case.clone();
    for event in &events {
        updated.apply(event);
    }
    store_case(txn, case.next_alarm(), &updated);
    on_case_change(txn, context, now, state, Some(&case), &updated, &events)?;
    Ok(Ok(()))
}

fn record_answer(
    txn: &mut Txn<'_>,
    now: i64,
    seq: u64,
    case_id: &CaseId,
    text: &str,
    officer: &str,
) -> MessageOutcome {
    let Some(order_id) = txn.get(&state::order_by_case(case_id))? else {
        return Ok(Err(refusal(
            seq,
            "no_order",
            format!("no open supervision order on {case_id}"),
        )));
    };
    let order_id: String = decode(&order_id)?;
    let key = state::order(&order_id);
    let Some(bytes) = txn.get(&key)? else {
        return Ok(Err(refusal(
            seq,
            "no_order",
            format!("no supervision order {order_id}"),
        )));
    };
    let mut order: OrderRecord = decode(&bytes)?;
    order.answer = Some(OrderAnswer {
        text: text.to_string(),
        officer: officer.to_string(),
        answered_at: now,
    });
    txn.put(key, encode(&order));
    Ok(Ok(()))
}

/// Keeps the owner's truth for each case of the subtree, and passes the summary on up.
fn index_summary(
    txn: &mut Txn<'_>,
    context: &ApplyContext,
    now: i64,
    state: &mut AppliedState,
    from: &OfficeCode,
    summary: &Summary,
) -> Result<(), ApplyError> {
    let key = state::index(&summary.case_id);
    let keep = match txn.get(&key)? {
        None => true,
        Some(bytes) => {
            let current: Summary = decode(&bytes)?;
            match (current.is_owner_copy(), summary.is_owner_copy()) {
                (true, false) => false,
                (false, true) => true,
                // The version (history length) orders the copies of one case, wherever they
                // were written; `changed_at` comes from different offices' clocks, which may be
                // skewed, so it only breaks ties.
                _ => (summary.version, summary.changed_at) >= (current.version, current.changed_at),
            }
        }
    };
    if keep {
        txn.put(key, encode(summary));
    }
    let mark_key = state::watermark(from);
    let mark: i64 = get(txn, &mark_key)?;
    txn.put(mark_key, encode(&mark.max(summary.changed_at)));
    if let Some(parent) = &context.parent {
        enqueue(
            txn,
            context,
            now,
            state,
            parent,
            Body::IndexUpdate {
                summary: summary.clone(),
            },
        )?;
    }
    Ok(())
}

/// The receiver committed every message on the link to `to` up to `through`: drop them, and
/// finish each handoff among them (acknowledged: a forwarding stub; refused: ours again).
pub fn acked(
    txn: &mut Txn<'_>,
    context: &ApplyContext,
    now: i64,
    state: &mut AppliedState,
    to: &OfficeCode,
    through: u64,
    refused: &[Refusal],
) -> Result<Response, ApplyError> {
    let link_key = state::link(to);
    let sent: LinkOut = get(txn, &link_key)?;
    let through = through.min(sent.last_seq);
    for seq in sent.acked_through + 1..=through {
        let key = state::outbox(to, seq);
        let Some(bytes) = txn.get(&key)? else {
            continue;
        };
        let envelope: Envelope = decode(&bytes)?;
        txn.delete(key);
        state.outbox_pending = state.outbox_pending.saturating_sub(1);
        let refusal = refused.iter().find(|r| r.seq == seq);
        match (&envelope.body, refusal) {
            (Body::Handoff { case }, None) => finish_handoff(
                txn,
                context,
                now,
                state,
                &case.id,
                &CaseCommand::HandoffAcked,
            )?,
            (Body::Handoff { case }, Some(r)) => {
                let command = CaseCommand::HandoffRefused {
                    reason: format!("{}: {}", r.code, r.reason),
                };
                finish_handoff(txn, context, now, state, &case.id, &command)?
            }
            (Body::SupervisionOrder { order_id, .. }, Some(r)) => {
                let key = state::order(order_id);
                if let Some(bytes) = txn.get(&key)? {
                    let mut order: OrderRecord = decode(&bytes)?;
                    order.refused = Some(format!("{}: {}", r.code, r.reason));
                    txn.put(key, encode(&order));
                }
            }
            _ => {}
        }
    }
    // Finishing a handoff may have enqueued on this very link (the index summary to a parent
    // that is also the receiver): re-read the link rather than overwrite its new messages.
    let mut link: LinkOut = get(txn, &link_key)?;
    link.acked_through = link.acked_through.max(through);
    txn.put(link_key, encode(&link));
    Ok(Response::Nothing)
}

fn finish_handoff(
    txn: &mut Txn<'_>,
    context: &ApplyContext,
    now: i64,
    state: &mut AppliedState,
    case_id: &CaseId,
    command: &CaseCommand,
) -> Result<(), ApplyError> {
    let outcome = change_case(txn, context, now, state, 0, case_id, command)?;
    if let Err(refused) = outcome {
        tracing::error!(%case_id, code = %refused.code, reason = %refused.reason, "handoff could not be finished");
    }
    Ok(())
}

/// An ancestor's supervision order: recorded here (the issuing office), sent to the holder.
#[allow(clippy::too_many_arguments)]
pub fn supervise(
    txn: &mut Txn<'_>,
    context: &ApplyContext,
    now: i64,
    state: &mut AppliedState,
    case_id: &CaseId,
    to: &OfficeCode,
    due_days: u32,
    text: &str,
) -> Result<Result<Response, Refusal>, ApplyError> {
    if !context.office.is_ancestor_of(to) {
        return Ok(Err(refusal(
            0,
            "not_supervisor",
            format!(
                "{} may supervise only its descendants, not {to}",
                context.office
            ),
        )));
    }
    let due_range =
        domain::rules::SUPERVISION_DUE_DAYS_MIN..=domain::rules::SUPERVISION_DUE_DAYS_MAX;
    if !due_range.contains(&due_days) {
        return Ok(Err(refusal(
            0,
            "out_of_range",
            format!(
                "due days must be between {} and {}",
                due_range.start(),
                due_range.end()
            ),
        )));
    }
    let chars = text.trim().chars().count();
    if chars == 0 || chars > domain::message::SUPERVISION_TEXT_CHARS_MAX {
        let max = domain::message::SUPERVISION_TEXT_CHARS_MAX;
        return Ok(Err(refusal(
            0,
            "bad_text",
            format!("the order text must have 1 to {max} characters"),
        )));
    }
    let seq: u64 = get::<u64>(txn, state::ORDER_SEQ)? + 1;
    txn.put(state::ORDER_SEQ.to_vec(), encode(&seq));
    let order_id = format!("{}-{seq}", context.office);
    let order = OrderRecord {
        order_id: order_id.clone(),
        case_id: case_id.clone(),
        to: to.clone(),
        text: text.to_string(),
        ordered_at: now,
        due_by: now.saturating_add(i64::from(due_days) * domain::DAY_MS),
        answer: None,
        refused: None,
    };
    txn.put(state::order(&order_id), encode(&order));
    txn.put(state::order_by_case(case_id), encode(&order_id));
    let body = Body::SupervisionOrder {
        case_id: case_id.clone(),
        order_id,
        text: text.to_string(),
        due_days,
    };
    enqueue(txn, context, now, state, to, body)?;
    Ok(Ok(Response::Order {
        document: serde_json::to_vec(&order).unwrap_or_default(),
    }))
}
