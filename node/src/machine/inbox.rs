//! Messages received: a Deliver batch applied in sequence order against the link's watermark,
//! and the rules on receipt (assign only down, escalate only up, supervise only down, index
//! summaries and breach records only from below, a handoff only of a case the sender holds). A
//! message a rule forbids is committed as refused: it changes nothing here and the sender
//! learns why.
//!
//! A message for whoever holds a case (a supervision order, a review's link or decision) that
//! arrives where the case was handed on is passed on to the office it went to: the stub (or the
//! copy in transit) knows where, and the message follows the case as the case went.

use liandong_domain::message::{Body, CaseDocument, Envelope, SummaryV2};
use liandong_domain::{
    self as domain, Case, CaseCommand, CaseKind, HandoffKind, OfficeCode, Registration, Status,
};

use super::apply::{refused, ApplyError, Applying, Refused};
use super::cases::{self, commit, load_header, Change};
use super::outbox::Outgoing;
use super::records::LinkIn;
use super::{get_or_default, keys, orders, refusals, stats};
use crate::raft::types::{Received, Refusal, RejectKind, Response};
use crate::store::codec::encode;

fn refusal(seq: u64, code: &str, reason: impl Into<String>) -> Refusal {
    Refusal {
        seq,
        code: code.to_string(),
        reason: reason.into(),
    }
}

impl Refused {
    /// This refusal as the sender of message `seq` learns it.
    fn of_message(self, seq: u64) -> Refusal {
        refusal(seq, &self.code, self.message)
    }
}

/// What applying one message did: nothing but a refusal, or its effect.
type MessageOutcome = Result<Result<(), Refusal>, ApplyError>;

/// Applies a batch delivered on the link from `from`, in sequence order. A message at or below
/// the watermark was applied before (a redelivery): skipped. A gap stops the batch (the sender
/// resends from its outbox). The reply names the watermark and every refusal from the batch's
/// first message on.
pub(super) fn receive(
    apply: &mut Applying<'_, '_>,
    from: &OfficeCode,
    envelopes: &[Envelope],
) -> Result<Response, ApplyError> {
    receive_items(apply, from, envelopes.iter().map(Item::Message))
}

/// [`receive`] of a batch holding messages the receiver could not admit: each marker is
/// committed as refused, without content, and moves the watermark like any other message.
pub(super) fn receive_marked(
    apply: &mut Applying<'_, '_>,
    from: &OfficeCode,
    messages: &[Received],
) -> Result<Response, ApplyError> {
    let items = messages.iter().map(|message| match message {
        Received::Message(envelope) => Item::Message(envelope),
        Received::Unadmitted { seq, code, reason } => Item::Unadmitted(refusal(*seq, code, reason)),
    });
    receive_items(apply, from, items)
}

/// One message of a batch as the state machine takes it.
enum Item<'a> {
    Message(&'a Envelope),
    /// Refused before it reached the log (`Received::Unadmitted`).
    Unadmitted(Refusal),
}

impl Item<'_> {
    fn seq(&self) -> u64 {
        match self {
            Item::Message(envelope) => envelope.seq,
            Item::Unadmitted(refusal) => refusal.seq,
        }
    }
}

fn receive_items<'a>(
    apply: &mut Applying<'_, '_>,
    from: &OfficeCode,
    items: impl Iterator<Item = Item<'a>>,
) -> Result<Response, ApplyError> {
    let inbox_key = keys::inbox(from);
    let mut inbox: LinkIn = get_or_default(apply.txn, &inbox_key)?;
    let mut first_seq = None;
    for item in items {
        let seq = item.seq();
        first_seq.get_or_insert(seq);
        if seq <= inbox.applied_through {
            continue;
        }
        if seq != inbox.applied_through + 1 {
            break;
        }
        let (kind, outcome) = match item {
            Item::Unadmitted(refusal) => ("unadmitted", Err(refusal)),
            Item::Message(envelope)
                if envelope.from != *from || envelope.to != apply.context.office =>
            {
                (
                    envelope.body.kind(),
                    Err(refusal(seq, "misaddressed", "envelope names another link")),
                )
            }
            Item::Message(envelope) => (envelope.body.kind(), apply_message(apply, envelope)?),
        };
        if let Err(refused) = outcome {
            tracing::debug!(
                office = %apply.context.office, %from, seq, kind,
                code = %refused.code, reason = %refused.reason, "message refused"
            );
            apply.txn.put(keys::refused(from, seq), encode(&refused));
        }
        inbox.applied_through = seq;
        inbox.applied += 1;
    }
    let first_seq = first_seq.unwrap_or(0);
    apply.txn.put(inbox_key, encode(&inbox));
    forget_answered_refusals(apply, from, first_seq)?;
    let refused = refusals(apply.txn, from, first_seq.max(1), inbox.applied_through)?;
    Ok(Response::Delivered {
        applied_through: inbox.applied_through,
        refused,
    })
}

/// Refusal records one delivery deletes at most (the rest go with the next).
pub const REFUSALS_FORGOTTEN_MAX: usize = 1_024;

/// Deletes the refusals of messages numbered below `first_seq` on the link from `from`: the
/// sender sends each batch from the head of its outbox, so a batch starting at `first_seq`
/// shows it committed the acknowledgement of everything before, and will never ask again.
fn forget_answered_refusals(
    apply: &mut Applying<'_, '_>,
    from: &OfficeCode,
    first_seq: u64,
) -> Result<(), ApplyError> {
    let start = keys::refused_link(from);
    let end = keys::refused(from, first_seq);
    for (key, _) in apply.txn.scan(&start, &end, REFUSALS_FORGOTTEN_MAX)? {
        apply.txn.delete(key);
    }
    Ok(())
}

/// The direction a message must travel: escalations, answers and summaries come from below,
/// supervision orders from above (a handoff's rules are the handoff's).
fn check_direction(here: &OfficeCode, from: &OfficeCode, body: &Body) -> Result<(), Refused> {
    let from_below = here.is_ancestor_of(from);
    let (allowed, code, message) = match body {
        Body::Handoff { .. } => return Ok(()),
        Body::Escalation { .. } => (
            from_below,
            "escalation_not_upward",
            format!("{from} may escalate only to its ancestors, not {here}"),
        ),
        Body::SupervisionOrder { .. } => (
            from.is_ancestor_of(here),
            "supervision_not_downward",
            format!("{from} may supervise only its descendants, not {here}"),
        ),
        // Checked against the order and the case they name: the holder that answers an order,
        // or decides a review, may sit anywhere the case went.
        Body::SupervisionAnswer { .. }
        | Body::ReviewOpened { .. }
        | Body::ReviewDecision { .. }
        | Body::SupervisionRelay { .. } => return Ok(()),
        Body::Breach { office, .. } => (
            from_below && (office == from || from.is_ancestor_of(office)),
            "breach_not_upward",
            format!("{from} reports only its own subtree's breaches to its ancestors"),
        ),
        Body::IndexUpdate { .. } | Body::IndexUpdateV2 { .. } => (
            from_below,
            "index_not_upward",
            format!("{from} is not below {here}"),
        ),
        Body::SessionRecord { .. } => (
            from.is_ancestor_of(here),
            "session_not_downward",
            format!("{from} may invite only its descendants, not {here}"),
        ),
        Body::SessionReport { .. } => (
            from_below,
            "session_not_upward",
            format!("{from} answers only sessions of its ancestors, not {here}'s"),
        ),
        Body::Notice { .. } => (
            from_below,
            "notice_not_upward",
            format!("{from} sends notices only to its ancestors, not {here}"),
        ),
        Body::RedCard { .. } => (
            from_below,
            "red_card_not_upward",
            format!("{from} reports its red cards only to its ancestors, not {here}"),
        ),
        Body::Anchor { .. } => (
            from_below,
            "anchor_not_upward",
            format!("{from} anchors its case heads only at its parent, not {here}"),
        ),
    };
    if allowed {
        Ok(())
    } else {
        Err(refused(RejectKind::Forbidden, code, message))
    }
}

fn apply_message(apply: &mut Applying<'_, '_>, envelope: &Envelope) -> MessageOutcome {
    let seq = envelope.seq;
    let from = &envelope.from;
    if let Err(refusal) = check_direction(&apply.context.office, from, &envelope.body) {
        return Ok(Err(refusal.of_message(seq)));
    }
    if let Some(passed) = pass_on(apply, envelope)? {
        return Ok(passed.map_err(|refused| refused.of_message(seq)));
    }
    let outcome = match &envelope.body {
        Body::Handoff { case } => return receive_handoff(apply, seq, from, case),
        Body::Escalation { level, case } => return receive_escalation(apply, seq, *level, case),
        Body::SupervisionOrder {
            case_id,
            text,
            due_days,
            ..
        } => {
            let command = CaseCommand::Supervise {
                from: from.clone(),
                due_days: *due_days,
                text: text.clone(),
            };
            cases::command(apply, case_id, &command)?.map(|_| ())
        }
        Body::SupervisionAnswer {
            case_id,
            text,
            officer,
            ..
        } => orders::record_answer(apply, case_id, text, officer)?,
        Body::IndexUpdate { summary } => {
            index_summary(apply, from, &SummaryV2::from_v1(summary.clone()))?
        }
        Body::IndexUpdateV2 { summary } => index_summary(apply, from, summary)?,
        Body::ReviewOpened {
            case_id,
            review_id,
            level,
        } => {
            let command = CaseCommand::ReviewOpened {
                review: review_id.clone(),
                level: *level,
            };
            cases::command(apply, case_id, &command)?.map(|_| ())
        }
        Body::ReviewDecision {
            case_id,
            review_id,
            level,
            opinion,
            text,
            decided_at,
            is_final,
        } => {
            let command = CaseCommand::ReviewDecided {
                review: review_id.clone(),
                level: *level,
                opinion: *opinion,
                text: text.clone(),
                decided_at: *decided_at,
                is_final: *is_final,
            };
            cases::command(apply, case_id, &command)?.map(|_| ())
        }
        Body::SupervisionRelay {
            case_id,
            issuer,
            text,
            ordered_at,
            due_by,
            ..
        } => follow_order(apply, from, case_id, issuer, text, *ordered_at, *due_by)?,
        Body::Breach { office, .. } => record_breach(apply, office, &envelope.body)?,
        Body::SessionRecord { session } => super::sessions::receive_record(apply, from, session)?,
        Body::SessionReport { session_id, part } => {
            super::sessions::receive_report(apply, from, session_id, part)?
        }
        Body::Notice { notice } => super::notices::receive_notice(apply, from, notice)?,
        Body::RedCard { card } => super::notices::receive_card(apply, from, card)?,
        Body::Anchor { part } => super::anchors::receive(apply, from, part)?,
    };
    Ok(outcome.map_err(|refused| refused.of_message(seq)))
}

/// Passes a message for whoever holds its case on to the office the case went to, when this
/// office handed it on (its copy is a stub, or in transit: the message then follows the
/// handoff on the same link). None: the message is for this office.
fn pass_on(
    apply: &mut Applying<'_, '_>,
    envelope: &Envelope,
) -> Result<Option<Result<(), Refused>>, ApplyError> {
    let Some(case_id) = envelope.body.held_case() else {
        return Ok(None);
    };
    let Some(copy) = load_header(apply.txn, case_id)? else {
        return Ok(None);
    };
    let to = match &copy.status {
        Status::Forwarded { to } | Status::InTransit { to, .. } => to.clone(),
        _ => return Ok(None),
    };
    let body = match &envelope.body {
        // An order given here by an ancestor: its issuer and due date go with it.
        Body::SupervisionOrder {
            case_id,
            order_id,
            text,
            due_days,
        } => Body::SupervisionRelay {
            case_id: case_id.clone(),
            order_id: order_id.clone(),
            issuer: envelope.from.clone(),
            text: text.clone(),
            ordered_at: envelope.sent_at,
            due_by: domain::Calendar::add_calendar_days(envelope.sent_at, *due_days),
        },
        other => other.clone(),
    };
    let outgoing = Outgoing::prepare(apply, vec![(to, body)])?;
    if let Err(refusal) = outgoing.check() {
        return Ok(Some(Err(refusal)));
    }
    outgoing.put(apply);
    Ok(Some(Ok(())))
}

/// A supervision order that followed the case here: only from the office this copy came from
/// (the one that passed it on).
fn follow_order(
    apply: &mut Applying<'_, '_>,
    from: &OfficeCode,
    case_id: &domain::CaseId,
    issuer: &OfficeCode,
    text: &str,
    ordered_at: domain::Millis,
    due_by: domain::Millis,
) -> Result<Result<(), Refused>, ApplyError> {
    let came_from = load_header(apply.txn, case_id)?
        .and_then(|case| case.received)
        .map(|receipt| receipt.from);
    if came_from.as_ref() != Some(from) {
        return Ok(Err(refused(
            RejectKind::Forbidden,
            "not_passed_on",
            format!(
                "{from} did not hand case {case_id} to {}",
                apply.context.office
            ),
        )));
    }
    let command = CaseCommand::FollowOrder {
        from: issuer.clone(),
        text: text.to_string(),
        ordered_at,
        due_by,
    };
    Ok(cases::command(apply, case_id, &command)?.map(|_| ()))
}

/// A breach in the subtree: on `office`'s record here, and passed on up.
fn record_breach(
    apply: &mut Applying<'_, '_>,
    office: &OfficeCode,
    body: &Body,
) -> Result<Result<(), Refused>, ApplyError> {
    let up = apply
        .context
        .parent
        .iter()
        .map(|parent| (parent.clone(), body.clone()));
    let outgoing = Outgoing::prepare(apply, up.collect())?;
    if let Err(refusal) = outgoing.check() {
        return Ok(Err(refusal));
    }
    stats::count_breach(apply.txn, office)?;
    outgoing.put(apply);
    Ok(Ok(()))
}

/// A carried case that does not decode refuses its message (the batch check decodes it first,
/// so only a format this build does not read gets here).
fn decoded(seq: u64, document: &CaseDocument) -> Result<Case, Refusal> {
    document
        .case()
        .map_err(|error| refusal(seq, error.code(), error.to_string()))
}

fn receive_handoff(
    apply: &mut Applying<'_, '_>,
    seq: u64,
    from: &OfficeCode,
    document: &CaseDocument,
) -> MessageOutcome {
    let case = match decoded(seq, document) {
        Ok(case) => case,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let case = &case;
    let here = &apply.context.office;
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
    let existing = load_header(apply.txn, &case.id)?;
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
    let received = match domain::receive(case, kind.clone(), &apply.context.domain(apply.now)) {
        Ok(received) => received,
        Err(error) => return Ok(Err(refusal(seq, error.code(), error.to_string()))),
    };
    let alarm_before = existing.as_ref().and_then(Case::next_alarm);
    let mut change = Change {
        before: existing.as_ref(),
        after: received,
        events: Vec::new(),
    };
    Ok(commit(apply, &mut change, alarm_before)?
        .map(|_| ())
        .map_err(|refused| refused.of_message(seq)))
}

fn receive_escalation(
    apply: &mut Applying<'_, '_>,
    seq: u64,
    level: domain::ReviewLevel,
    document: &CaseDocument,
) -> MessageOutcome {
    let original = match decoded(seq, document) {
        Ok(case) => case,
        Err(refusal) => return Ok(Err(refusal)),
    };
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
        address: original.address().cloned(),
    };
    let kind = match level {
        domain::ReviewLevel::Review => CaseKind::Review {
            of: original.id.clone(),
        },
        domain::ReviewLevel::ReReview => CaseKind::ReReview {
            of: original.id.clone(),
        },
    };
    let id = cases::next_case_id(apply)?;
    // A group petition's review is the group's: its members come along.
    let registered = domain::register_with_group(
        id,
        registration,
        original.petitioner_key.clone(),
        kind,
        original.group.clone(),
        &apply.context.domain(apply.now),
    );
    match registered {
        Ok(case) => Ok(commit(apply, &mut Change::new_case(case), None)?
            .map(|_| ())
            .map_err(|refused| refused.of_message(seq))),
        Err(error) => Ok(Err(refusal(seq, error.code(), error.to_string()))),
    }
}

/// Keeps the owner's truth for each case of the subtree, and passes the summary on up.
fn index_summary(
    apply: &mut Applying<'_, '_>,
    from: &OfficeCode,
    summary: &SummaryV2,
) -> Result<Result<(), Refused>, ApplyError> {
    let up = apply.context.parent.iter().map(|parent| {
        let summary = summary.clone();
        (parent.clone(), Body::IndexUpdateV2 { summary })
    });
    let outgoing = Outgoing::prepare(apply, up.collect())?;
    if let Err(refusal) = outgoing.check() {
        return Ok(Err(refusal));
    }
    let key = keys::index(&summary.case_id);
    let current = stats::indexed_summary(apply.txn, &summary.case_id)?;
    let keep = match &current {
        None => true,
        Some(current) => {
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
        let own = stats::own_summary(apply.txn, &summary.case_id)?;
        stats::count_change(
            apply.txn,
            stats::effective(own.clone(), current).as_ref(),
            stats::effective(own, Some(summary.clone())).as_ref(),
        )?;
        apply.txn.put(key, encode(summary));
    }
    let mark_key = keys::watermark(from);
    let mark: i64 = get_or_default(apply.txn, &mark_key)?;
    apply
        .txn
        .put(mark_key, encode(&mark.max(summary.changed_at)));
    apply.txn.put(keys::index_applied(from), encode(&apply.now));
    outgoing.put(apply);
    Ok(Ok(()))
}
