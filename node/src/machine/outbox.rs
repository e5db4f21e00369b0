//! The transactional outbox: the messages a case change sends commit in the same batch as the
//! change; the receiver's acknowledgement drops them and finishes the handoffs among them.

use std::collections::BTreeMap;

use liandong_domain::message::{Body, CaseDocument, Envelope, SummaryV2};
use liandong_domain::{Case, CaseCommand, CaseKind, Event, OfficeCode, ReviewLevel, Status};
use prost::Message as _;

use super::apply::{refused, ApplyError, Applying, Refused};
use super::cases::{self, Change};
use super::records::{LinkOut, OrderRecord};
use super::{get_or_default, keys, unadmitted, AppliedState};
use crate::raft::types::{Refusal, RejectKind};
use crate::store::codec::{decode, encode};

/// Messages an office may hold unsent before it refuses new work that would add more
/// (back-pressure, never a drop).
pub const OUTBOX_LEN_MAX: u64 = 500_000;

/// The largest federation message, in bytes of its protobuf form: a case change whose message
/// (a handoff or an escalation carrying a case with a very long history) would be larger is
/// refused when it is made, so every message that enters an outbox fits in one Deliver batch
/// and can always be delivered.
pub const ENVELOPE_BYTES_MAX: usize = 1024 * 1024;

/// The size of `envelope` on the wire (its protobuf form): what the byte budgets count.
pub fn wire_bytes(envelope: &Envelope) -> usize {
    federation_proto::v1::Envelope::from(envelope).encoded_len()
}

/// The refusal of new work while the outbox is full; None while it has room.
pub(super) fn full(state: &AppliedState) -> Option<Refused> {
    (state.outbox_pending >= OUTBOX_LEN_MAX).then(|| {
        refused(
            RejectKind::Forbidden,
            "outbox_full",
            format!(
                "{} messages wait for offices this one cannot reach; new work waits until they drain",
                state.outbox_pending
            ),
        )
    })
}

/// The messages a case change sends: the handoff it started (the case with its whole history:
/// ownership moves with the record), the escalation it asked for (the case's header), the
/// answer to a supervision order, and its summary for the ancestors' index.
pub(super) fn messages_for(
    apply: &Applying<'_, '_>,
    change: &Change<'_>,
) -> Result<Vec<(OfficeCode, Body)>, ApplyError> {
    let mut messages = Vec::new();
    let after = &change.after;
    let was_in_transit = change
        .before
        .is_some_and(|case| matches!(case.status, Status::InTransit { .. }));
    if let (Status::InTransit { to, .. }, false) = (&after.status, was_in_transit) {
        let case = CaseDocument::of(&cases::whole(apply.txn, after)?);
        messages.push((to.clone(), Body::Handoff { case }));
    }
    for event in &change.events {
        match event {
            Event::ReviewRequested { level, to, .. } => {
                let case = CaseDocument::of(&after.clone().into_header().0);
                let level = *level;
                messages.push((to.clone(), Body::Escalation { level, case }));
            }
            Event::Replied {
                at, opinion, text, ..
            } => {
                if let Some((of, level)) = reviews(after) {
                    let body = Body::ReviewDecision {
                        case_id: of.clone(),
                        review_id: after.id.clone(),
                        level,
                        opinion: *opinion,
                        text: text.clone(),
                        decided_at: *at,
                        // 复核 is final.
                        is_final: level == ReviewLevel::ReReview,
                    };
                    messages.push((of.office.clone(), body));
                }
            }
            Event::Finalised { .. } => {
                // A review whose re-review window lapsed: the matter is final at the original too.
                if let (CaseKind::Review { of }, Some(opinion), Some(text), Some(replied_at)) = (
                    &after.kind,
                    after.opinion,
                    &after.reply_text,
                    after.replied_at,
                ) {
                    let body = Body::ReviewDecision {
                        case_id: of.clone(),
                        review_id: after.id.clone(),
                        level: ReviewLevel::Review,
                        opinion,
                        text: text.clone(),
                        decided_at: replied_at,
                        is_final: true,
                    };
                    messages.push((of.office.clone(), body));
                }
            }
            Event::ReviewDecided {
                review,
                level: ReviewLevel::ReReview,
                opinion,
                text,
                decided_at,
                ..
            } => {
                // The re-review of this review case decided: the original learns it too.
                if let CaseKind::Review { of } = &after.kind {
                    let body = Body::ReviewDecision {
                        case_id: of.clone(),
                        review_id: review.clone(),
                        level: ReviewLevel::ReReview,
                        opinion: *opinion,
                        text: text.clone(),
                        decided_at: *decided_at,
                        is_final: true,
                    };
                    messages.push((of.office.clone(), body));
                }
            }
            Event::SupervisionAnswered { text, officer, .. } => {
                if let Some(order) = change.before.and_then(|case| case.supervision.as_ref()) {
                    let body = Body::SupervisionAnswer {
                        case_id: after.id.clone(),
                        order_id: String::new(),
                        text: text.clone(),
                        officer: officer.clone(),
                    };
                    messages.push((order.from.clone(), body));
                }
            }
            _ => {}
        }
    }
    // A review (re-review) case just registered here: the case it reviews learns its id.
    let registered_here = change.before.is_none() && after.received.is_none();
    if let (true, Some((of, level))) = (registered_here, reviews(after)) {
        let body = Body::ReviewOpened {
            case_id: of.clone(),
            review_id: after.id.clone(),
            level,
        };
        messages.push((of.office.clone(), body));
    }
    if let Some(parent) = &apply.context.parent {
        let summary = SummaryV2::of(after);
        messages.push((parent.clone(), Body::IndexUpdateV2 { summary }));
        if let Some(clock) = breach(change) {
            let body = Body::Breach {
                case_id: after.id.clone(),
                office: apply.context.office.clone(),
                clock,
            };
            messages.push((parent.clone(), body));
        }
    }
    Ok(messages)
}

/// The case a review (re-review) case reviews, and at which level.
fn reviews(case: &Case) -> Option<(&liandong_domain::CaseId, ReviewLevel)> {
    match &case.kind {
        CaseKind::Original => None,
        CaseKind::Review { of } => Some((of, ReviewLevel::Review)),
        CaseKind::ReReview { of } => Some((of, ReviewLevel::ReReview)),
    }
}

/// The clock whose limit this change found passed, when it is the first this office let pass
/// since it received the case (a case is counted once per office that held it overdue).
pub(super) fn breach(change: &Change<'_>) -> Option<liandong_domain::ClockKind> {
    if change.before.is_some_and(|case| case.overdue) {
        return None;
    }
    change.events.iter().find_map(|event| match event {
        Event::Overdue { clock, .. } => Some(*clock),
        _ => None,
    })
}

/// Messages about to be put on their links, their sequence numbers given, not yet written.
pub(super) struct Outgoing {
    /// Each message with the state of its link once it is enqueued.
    envelopes: Vec<(Envelope, LinkOut)>,
}

impl Outgoing {
    /// Numbers `messages` on their links, in order.
    pub fn prepare(
        apply: &Applying<'_, '_>,
        messages: Vec<(OfficeCode, Body)>,
    ) -> Result<Outgoing, ApplyError> {
        let mut links: BTreeMap<OfficeCode, LinkOut> = BTreeMap::new();
        let mut envelopes = Vec::with_capacity(messages.len());
        for (to, body) in messages {
            let link = match links.get_mut(&to) {
                Some(link) => link,
                None => {
                    let stored = get_or_default(apply.txn, &keys::link(&to))?;
                    links.entry(to.clone()).or_insert(stored)
                }
            };
            link.last_seq += 1;
            let envelope = Envelope {
                from: apply.context.office.clone(),
                to,
                seq: link.last_seq,
                sent_at: apply.now,
                body,
            };
            envelopes.push((envelope, link.clone()));
        }
        Ok(Outgoing { envelopes })
    }

    /// Refuses what could never be delivered: a message over [`ENVELOPE_BYTES_MAX`].
    pub fn check(&self) -> Result<(), Refused> {
        for (envelope, _) in &self.envelopes {
            let bytes = wire_bytes(envelope);
            if bytes > ENVELOPE_BYTES_MAX {
                return Err(refused(
                    RejectKind::Forbidden,
                    "message_too_large",
                    format!(
                        "the {} to {} would take {bytes} bytes; a federation message carries at most {ENVELOPE_BYTES_MAX}",
                        envelope.body.kind(),
                        envelope.to
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Writes the messages and their links into this entry's batch.
    pub fn put(self, apply: &mut Applying<'_, '_>) {
        for (envelope, link) in self.envelopes {
            apply
                .txn
                .put(keys::outbox(&envelope.to, envelope.seq), encode(&envelope));
            apply.txn.put(keys::link(&envelope.to), encode(&link));
            apply.state.outbox_pending += 1;
        }
    }
}

/// The receiver committed every message on the link to `to` up to `through`: drop them, and
/// finish each handoff among them (acknowledged: a forwarding stub; refused: ours again).
pub(super) fn acked(
    apply: &mut Applying<'_, '_>,
    to: &OfficeCode,
    through: u64,
    refused: &[Refusal],
) -> Result<(), ApplyError> {
    let link_key = keys::link(to);
    let sent: LinkOut = get_or_default(apply.txn, &link_key)?;
    let through = through.min(sent.last_seq);
    for seq in sent.acked_through + 1..=through {
        let key = keys::outbox(to, seq);
        let Some(bytes) = apply.txn.get(&key)? else {
            continue;
        };
        let envelope: Envelope = decode(&bytes)?;
        apply.txn.delete(key);
        apply.state.outbox_pending = apply.state.outbox_pending.saturating_sub(1);
        let refusal = refused.iter().find(|r| r.seq == seq);
        if let Some(r) = refusal.filter(|r| crate::federation::link::is_unadmitted(&r.code)) {
            unadmitted::record(apply, to, seq, envelope.body.kind(), &r.code)?;
        }
        match (&envelope.body, refusal) {
            (Body::Handoff { case }, None) => {
                finish_handoff(apply, case, &CaseCommand::HandoffAcked)?
            }
            (Body::Handoff { case }, Some(r)) => {
                let command = CaseCommand::HandoffRefused {
                    reason: format!("{}: {}", r.code, r.reason),
                };
                finish_handoff(apply, case, &command)?
            }
            (
                Body::SupervisionRelay {
                    case_id,
                    issuer,
                    text,
                    ordered_at,
                    due_by,
                    ..
                },
                Some(r),
            ) => {
                // The office the order was passed on to did not take it (it refused the case
                // too, say): the order stays with the case, if the case is back here.
                let command = CaseCommand::FollowOrder {
                    from: issuer.clone(),
                    text: text.clone(),
                    ordered_at: *ordered_at,
                    due_by: *due_by,
                };
                if let Err(refused) = cases::command(apply, case_id, &command)? {
                    tracing::info!(%case_id, code = %r.code, kept = %refused.code, "a passed-on supervision order was refused");
                }
            }
            (Body::SupervisionOrder { order_id, .. }, Some(r)) => {
                let key = keys::order(order_id);
                if let Some(bytes) = apply.txn.get(&key)? {
                    let mut order: OrderRecord = decode(&bytes)?;
                    order.refused = Some(format!("{}: {}", r.code, r.reason));
                    apply.txn.put(key, encode(&order));
                }
            }
            _ => {}
        }
    }
    // Finishing a handoff may have enqueued on this very link (the index summary to a parent
    // that is also the receiver): re-read the link rather than overwrite its new messages.
    let mut link: LinkOut = get_or_default(apply.txn, &link_key)?;
    link.acked_through = link.acked_through.max(through);
    apply.txn.put(link_key, encode(&link));
    Ok(())
}

fn finish_handoff(
    apply: &mut Applying<'_, '_>,
    case: &CaseDocument,
    command: &CaseCommand,
) -> Result<(), ApplyError> {
    // This office encoded the document itself: one that does not decode is corrupt storage.
    let case_id = case.case_id().map_err(|source| ApplyError::Case {
        key: "a handoff in the outbox".to_string(),
        source,
    })?;
    let case_id = &case_id;
    tracing::debug!(office = %apply.context.office, %case_id, command = command.name(), "handoff finished");
    if let Err(refused) = cases::command(apply, case_id, command)? {
        tracing::error!(%case_id, code = %refused.code, reason = %refused.message, "handoff could not be finished");
    }
    Ok(())
}
