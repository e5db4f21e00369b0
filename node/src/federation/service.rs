//! The federation service: other offices deliver their messages here. A batch is checked
//! (known sender, carried receiver, link not cut by a drill, both ways or just this way,
//! well-formed envelopes, the peer certificate speaks for the sender when TLS is on), committed through the receiver's Raft, and only then
//! acknowledged. Rules that depend on the message (assign only down, escalate only up, ...) are
//! applied in the state machine, deterministically, as refusals.

use std::sync::Arc;

use federation_proto::v1::federation_server::Federation;
use federation_proto::v1::{self, DeliverReply, DeliverRequest, QueryReply, QueryRequest};
use liandong_domain::message::{Envelope, Summary};
use liandong_domain::{CaseId, OfficeCode};
use tonic::{Request, Response, Status};

use super::faults::Faults;
use super::pump::Directory;
use super::state::{self, DELIVER_BATCH_MAX};
use crate::raft::types::{Operation, Response as Applied};
use crate::replica::{ReplicaError, Replicas};
use crate::store::codec::decode;
use crate::store::keys::sm;

/// Summaries one query returns at most.
pub const QUERY_LIMIT_MAX: u32 = 10_000;

pub struct FederationService {
    pub replicas: Replicas,
    pub directory: Arc<Directory>,
    pub faults: Faults,
    /// Check that the peer's certificate names the sending office (mutual TLS on).
    pub check_peer: bool,
}

fn office(code: &str, what: &str) -> Result<OfficeCode, Status> {
    code.parse()
        .map_err(|e| Status::invalid_argument(format!("bad {what} office code {code:?}: {e}")))
}

impl FederationService {
    fn authorize<T>(&self, request: &Request<T>, from: &str) -> Result<(), Status> {
        if !self.check_peer {
            return Ok(());
        }
        let peer = crate::tls::peer_offices(request)?;
        if peer.speaks_for(from) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "the peer's certificate does not name office {from} (it names {})",
                peer.offices.join(", ")
            )))
        }
    }
}

/// Repeat petitions among `summaries`: for every case that repeats an earlier one (same
/// petitioner key, category and location), the primary, which is the earliest registered (ties:
/// the smaller case id). Deterministic, so two offices that registered the same matter on
/// either side of a partition agree on the primary once both summaries arrive.
pub fn repeat_primaries(summaries: &[Summary]) -> std::collections::HashMap<CaseId, CaseId> {
    let mut groups: std::collections::HashMap<_, Vec<&Summary>> = std::collections::HashMap::new();
    for summary in summaries.iter().filter(|s| s.is_owner_copy()) {
        groups
            .entry(summary.repeat_key())
            .or_default()
            .push(summary);
    }
    let mut primaries = std::collections::HashMap::new();
    for group in groups.values().filter(|group| group.len() > 1) {
        let primary = group
            .iter()
            .min_by(|a, b| {
                (a.registered_at, a.case_id.to_string())
                    .cmp(&(b.registered_at, b.case_id.to_string()))
            })
            .map(|s| s.case_id.clone());
        if let Some(primary) = primary {
            for summary in group.iter().filter(|s| s.case_id != primary) {
                primaries.insert(summary.case_id.clone(), primary.clone());
            }
        }
    }
    primaries
}

#[tonic::async_trait]
impl Federation for FederationService {
    async fn deliver(
        &self,
        request: Request<DeliverRequest>,
    ) -> Result<Response<DeliverReply>, Status> {
        let from_code = request.get_ref().from.clone();
        self.authorize(&request, &from_code)?;
        let request = request.into_inner();
        let from = office(&request.from, "sender")?;
        let to = office(&request.to, "receiver")?;
        if !self.directory.knows(from.as_str()) {
            return Err(Status::permission_denied(format!(
                "office {from} is not in this federation"
            )));
        }
        let replica = self.replicas.get(&to).ok_or_else(|| {
            Status::not_found(format!(
                "unknown target office {to}: not carried by this host"
            ))
        })?;
        if self.faults.cut(from.as_str(), to.as_str()) {
            return Err(Status::unavailable(format!(
                "link {from} -> {to} is cut (drill partition)"
            )));
        }
        if request.envelopes.is_empty() || request.envelopes.len() > DELIVER_BATCH_MAX {
            return Err(Status::invalid_argument(format!(
                "a batch holds 1 to {DELIVER_BATCH_MAX} envelopes"
            )));
        }
        let mut envelopes = Vec::with_capacity(request.envelopes.len());
        for proto in request.envelopes {
            let envelope = Envelope::try_from(proto)
                .map_err(|e| Status::invalid_argument(format!("bad envelope: {e}")))?;
            if envelope.from != from || envelope.to != to {
                return Err(Status::invalid_argument(format!(
                    "envelope {}->{} #{} does not belong on link {from}->{to}",
                    envelope.from, envelope.to, envelope.seq
                )));
            }
            envelopes.push(envelope);
        }
        let first_seq = envelopes[0].seq;
        match replica
            .write(Operation::Receive {
                from: from.clone(),
                envelopes,
            })
            .await
        {
            Ok(written) => match written.response {
                Applied::Delivered {
                    applied_through,
                    refused,
                } => {
                    if applied_through + 1 < first_seq {
                        return Err(Status::failed_precondition(format!(
                            "out of order on link {from}->{to}: expected message {} next, got {first_seq}",
                            applied_through + 1
                        )));
                    }
                    let refused = refused
                        .into_iter()
                        .map(|r| v1::Refusal {
                            seq: r.seq,
                            code: r.code,
                            reason: r.reason,
                        })
                        .collect();
                    Ok(Response::new(DeliverReply {
                        applied_through,
                        leader_hint: None,
                        refused,
                    }))
                }
                other => Err(Status::internal(format!(
                    "unexpected state machine reply {other:?}"
                ))),
            },
            Err(ReplicaError::ForwardToLeader {
                leader: Some(leader),
                ..
            }) => Ok(Response::new(DeliverReply {
                applied_through: 0,
                leader_hint: Some(leader.api_addr),
                refused: Vec::new(),
            })),
            Err(error) => Err(Status::unavailable(error.to_string())),
        }
    }

    async fn query(&self, request: Request<QueryRequest>) -> Result<Response<QueryReply>, Status> {
        let request = request.into_inner();
        let as_office = office(&request.as_office, "supervising")?;
        let replica = self.replicas.get(&as_office).ok_or_else(|| {
            Status::not_found(format!("office {as_office} is not carried by this host"))
        })?;
        let narrow = match &request.office {
            Some(code) => {
                let code = office(code, "queried")?;
                if code != as_office && !as_office.is_ancestor_of(&code) {
                    return Err(Status::permission_denied(format!(
                        "office {code} is outside {as_office}'s subtree"
                    )));
                }
                Some(code)
            }
            None => None,
        };
        replica
            .read_barrier()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let limit = if request.limit == 0 {
            QUERY_LIMIT_MAX
        } else {
            request.limit.min(QUERY_LIMIT_MAX)
        } as usize;
        let machine = &replica.state_machine;
        let read = |prefix: &[u8]| {
            machine
                .scan_prefix(prefix, usize::MAX)
                .map_err(|e| Status::internal(e.to_string()))
        };
        // The index first, then this office's own cases: its own copy is the truth when both
        // know a case (one transferred up from below, say).
        let mut by_case: std::collections::BTreeMap<String, Summary> =
            std::collections::BTreeMap::new();
        for (_, value) in read(state::INDEX)? {
            if let Ok(summary) = decode::<Summary>(&value) {
                by_case.insert(summary.case_id.to_string(), summary);
            }
        }
        for (_, value) in read(sm::CASE)? {
            if let Ok(case) = liandong_domain::Case::from_bytes(&value) {
                let summary = Summary::of(&case);
                if summary.is_owner_copy() || !by_case.contains_key(&summary.case_id.to_string()) {
                    by_case.insert(summary.case_id.to_string(), summary);
                }
            }
        }
        let summaries: Vec<Summary> = by_case.into_values().collect();
        let wanted = |s: &Summary| {
            s.is_owner_copy()
                && narrow.as_ref().is_none_or(|code| s.owner == *code)
                && request
                    .status
                    .as_ref()
                    .is_none_or(|status| s.status == *status)
                && request
                    .category
                    .as_ref()
                    .is_none_or(|category| s.category == *category)
                && (!request.overdue_only || s.overdue)
        };
        let primaries = repeat_primaries(&summaries);
        let cases: Vec<v1::IndexUpdate> = summaries
            .iter()
            .filter(|s| wanted(s))
            .take(limit)
            .map(|summary| {
                let mut proto: v1::IndexUpdate = summary.into();
                proto.repeat_of = primaries.get(&summary.case_id).map(ToString::to_string);
                proto
            })
            .collect();
        let as_of_ms = read(state::WATERMARK)?
            .into_iter()
            .filter_map(|(key, value)| {
                let child = String::from_utf8(key[state::WATERMARK.len()..].to_vec()).ok()?;
                Some((child, decode::<i64>(&value).ok()?))
            })
            .collect();
        Ok(Response::new(QueryReply {
            cases,
            unreachable: Vec::new(),
            partial: false,
            as_of_ms,
        }))
    }
}
