//! Supervision orders (督办): issued here on a descendant's case, recorded at the issuing office,
//! sent to the holder; the holder's answer recorded when it arrives.

use liandong_domain::message::{Body, SUPERVISION_TEXT_CHARS_MAX};
use liandong_domain::{self as domain, CaseId, OfficeCode};

use super::apply::{refused, Applying, Outcome, Refused};
use super::outbox::Outgoing;
use super::records::{OrderAnswer, OrderRecord};
use super::{get_or_default, keys};
use crate::raft::types::{RejectKind, Response};
use crate::store::codec::{decode, encode};

fn forbidden(code: &str, message: String) -> Refused {
    refused(RejectKind::Forbidden, code, message)
}

/// An ancestor's supervision order: recorded here (the issuing office), sent to the holder.
pub(super) fn supervise(
    apply: &mut Applying<'_, '_>,
    case_id: &CaseId,
    to: &OfficeCode,
    due_days: u32,
    text: &str,
) -> Outcome<Response> {
    let office = &apply.context.office;
    if !office.is_ancestor_of(to) {
        return Ok(Err(forbidden(
            "not_supervisor",
            format!("{office} may supervise only its descendants, not {to}"),
        )));
    }
    let due_range =
        domain::rules::SUPERVISION_DUE_DAYS_MIN..=domain::rules::SUPERVISION_DUE_DAYS_MAX;
    if !due_range.contains(&due_days) {
        return Ok(Err(forbidden(
            "out_of_range",
            format!(
                "due days must be between {} and {}",
                due_range.start(),
                due_range.end()
            ),
        )));
    }
    let chars = text.trim().chars().count();
    if chars == 0 || chars > SUPERVISION_TEXT_CHARS_MAX {
        return Ok(Err(forbidden(
            "bad_text",
            format!("the order text must have 1 to {SUPERVISION_TEXT_CHARS_MAX} characters"),
        )));
    }
    let seq: u64 = get_or_default::<u64>(apply.txn, keys::ORDER_SEQ)? + 1;
    let order_id = format!("{office}-{seq}");
    let now = apply.now;
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
    let body = Body::SupervisionOrder {
        case_id: case_id.clone(),
        order_id: order_id.clone(),
        text: text.to_string(),
        due_days,
    };
    let outgoing = Outgoing::prepare(apply, vec![(to.clone(), body)])?;
    if let Err(refusal) = outgoing.check() {
        return Ok(Err(refusal));
    }
    apply.txn.put(keys::ORDER_SEQ.to_vec(), encode(&seq));
    apply.txn.put(keys::order(&order_id), encode(&order));
    apply
        .txn
        .put(keys::order_by_case(case_id), encode(&order_id));
    outgoing.put(apply);
    Ok(Ok(Response::Order {
        document: serde_json::to_vec(&order).unwrap_or_default(),
    }))
}

/// The holder's answer to the open order on `case_id`.
pub(super) fn record_answer(
    apply: &mut Applying<'_, '_>,
    case_id: &CaseId,
    text: &str,
    officer: &str,
) -> Outcome<()> {
    let Some(order_id) = apply.txn.get(&keys::order_by_case(case_id))? else {
        return Ok(Err(forbidden(
            "no_order",
            format!("no open supervision order on {case_id}"),
        )));
    };
    let order_id: String = decode(&order_id)?;
    let key = keys::order(&order_id);
    let Some(bytes) = apply.txn.get(&key)? else {
        return Ok(Err(forbidden(
            "no_order",
            format!("no supervision order {order_id}"),
        )));
    };
    let mut order: OrderRecord = decode(&bytes)?;
    order.answer = Some(OrderAnswer {
        text: text.to_string(),
        officer: officer.to_string(),
        answered_at: apply.now,
    });
    apply.txn.put(key, encode(&order));
    Ok(Ok(()))
}
