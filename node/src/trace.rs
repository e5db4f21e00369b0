//! Following a case across offices in the hosts' logs.
//!
//! The trace id is derived from the case id, not carried in the envelope: it *is* the case id
//! (`trace_id=530602001-2026-000001`), which every message about a case already names and which
//! a transfer or an assignment keeps as the case moves between offices. A review or re-review
//! is a new case at the level above with its own id: its lines carry `review_of=` the case it
//! reviews, and the escalation message that created it is traced under the reviewed case's id.
//!
//! Every step is logged under the target `liandong_node::trace`: a write committed at an office
//! (`case written`), each message as its sender's leader delivers it (`message delivered`), and
//! as the receiver commits it (`message applied`). Hand-offs, escalations and supervision orders
//! are logged at `info`; the rest (every write, index updates) at `debug`, so
//! `RUST_LOG=info,liandong_node::trace=debug` shows a case's whole path;
//! `grep trace_id=530602001-2026-000001 DIR/run/*.log` then lists it across every host.

use liandong_domain::message::{Body, Envelope};
use liandong_domain::{CaseId, CaseKind, OfficeCode};
use serde::Deserialize;

use crate::raft::types::Response;

/// The log target of every trace line.
pub const TARGET: &str = "liandong_node::trace";

/// The case a message is about (as text: a carried case whose id cannot be read is named so),
/// and what kind of message it is.
pub fn of_envelope(envelope: &Envelope) -> (String, &'static str) {
    let carried = |case: &liandong_domain::message::CaseDocument| {
        case.case_id()
            .map(|id| id.to_string())
            .unwrap_or_else(|_| "undecodable".to_string())
    };
    match &envelope.body {
        Body::Handoff { case } => (carried(case), "handoff"),
        Body::Escalation { case, .. } => (carried(case), "escalation"),
        Body::SupervisionOrder { case_id, .. } => (case_id.to_string(), "supervision_order"),
        Body::SupervisionAnswer { case_id, .. } => (case_id.to_string(), "supervision_answer"),
        Body::IndexUpdate { summary } => (summary.case_id.to_string(), "index_update"),
        Body::IndexUpdateV2 { summary } => (summary.case_id.to_string(), "index_update"),
        Body::ReviewOpened { case_id, .. }
        | Body::ReviewDecision { case_id, .. }
        | Body::SupervisionRelay { case_id, .. }
        | Body::Breach { case_id, .. } => (case_id.to_string(), envelope.body.kind()),
        Body::SessionRecord { session } => (session.id.clone(), envelope.body.kind()),
        Body::SessionReport { session_id, .. } => (session_id.clone(), envelope.body.kind()),
        Body::Notice { notice } => (notice.case_id.to_string(), envelope.body.kind()),
        Body::RedCard { card } => (card.case_id.to_string(), envelope.body.kind()),
        Body::Anchor { part } => (format!("anchor {}", part.seq), envelope.body.kind()),
    }
}

/// Whether a message of this kind moves a case or an order between offices (logged at info).
fn notable(kind: &str) -> bool {
    kind != "index_update"
}

/// What a batch's trace lines need, kept before the batch is handed on.
pub fn batch(envelopes: &[Envelope]) -> Vec<(String, &'static str, u64)> {
    envelopes
        .iter()
        .map(|envelope| {
            let (case_id, kind) = of_envelope(envelope);
            (case_id, kind, envelope.seq)
        })
        .collect()
}

/// One line per message of a batch on the link `from` -> `to`: `what` happened to it.
pub fn messages(what: &str, from: &OfficeCode, to: &OfficeCode, batch: &[(String, &str, u64)]) {
    for (trace_id, kind, seq) in batch {
        if notable(kind) {
            tracing::info!(target: TARGET, %trace_id, %from, %to, seq, kind, "message {what}");
        } else {
            tracing::debug!(target: TARGET, %trace_id, %from, %to, seq, kind, "message {what}");
        }
    }
}

/// The few fields of a case document a trace line names.
#[derive(Deserialize)]
struct Head {
    case_id: CaseId,
    kind: CaseKind,
}

/// The id of the case in a stored case document, and the case it reviews if it is a review.
/// Reads the binary codec's documents (and version 1's JSON, written by earlier builds).
fn head(document: &[u8]) -> Option<(CaseId, Option<CaseId>)> {
    let (case_id, kind) = match liandong_domain::Case::from_bytes(document) {
        Ok(case) => (case.id, case.kind),
        Err(_) => {
            let head: Head = serde_json::from_slice(document).ok()?;
            (head.case_id, head.kind)
        }
    };
    let review_of = match kind {
        CaseKind::Original => None,
        CaseKind::Review { of } | CaseKind::ReReview { of } => Some(of),
    };
    Some((case_id, review_of))
}

/// A write committed at `office`, answered with `response` at `log_index` (read only when the
/// line would be shown).
pub fn written(office: &OfficeCode, response: &Response, log_index: u64) {
    if !tracing::enabled!(target: TARGET, tracing::Level::DEBUG) {
        return;
    }
    let Response::Case { document } = response else {
        return;
    };
    let Some((trace_id, review_of)) = head(document) else {
        return;
    };
    let review_of = review_of.map(|of| of.to_string());
    tracing::debug!(target: TARGET, %trace_id, %office, log_index, review_of, "case written");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The trace id is read from the stored case document's `case_id`, and a review names the
    /// case it reviews.
    #[test]
    fn a_case_document_gives_its_trace_id() {
        let original = br#"{"v":1,"case_id":"530602001-2026-000007","kind":{"type":"original"},"status":"registered"}"#;
        let (id, of) = head(original).unwrap();
        assert_eq!(
            (id.to_string(), of),
            ("530602001-2026-000007".to_string(), None)
        );
        let review = br#"{"v":1,"case_id":"530602-2026-000001","kind":{"type":"review","of":"530602001-2026-000007"}}"#;
        let (id, of) = head(review).unwrap();
        assert_eq!(id.to_string(), "530602-2026-000001");
        assert_eq!(
            of.map(|of| of.to_string()).as_deref(),
            Some("530602001-2026-000007")
        );
        assert!(head(b"not json").is_none());
    }

    /// A write's reply in the binary codec (what this build answers) gives its trace id too.
    #[test]
    fn a_binary_case_document_gives_its_trace_id() {
        let calendar = liandong_domain::Calendar::china();
        let office: OfficeCode = "530602001".parse().unwrap();
        let context = liandong_domain::Context {
            office: &office,
            now: 1_780_000_000_000,
            calendar: &calendar,
        };
        let id: CaseId = "530602001-2026-000007".parse().unwrap();
        let case = liandong_domain::register(
            id.clone(),
            crate::machine::tests::registration(),
            liandong_domain::petitioner_key(b"secret", "530602198001010012"),
            CaseKind::Original,
            &context,
        )
        .unwrap();
        assert_eq!(head(&case.to_bytes()), Some((id, None)));
    }
}
