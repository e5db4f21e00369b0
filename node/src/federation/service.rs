//! The federation service: other offices deliver their messages here. Before anything is
//! proposed, the peer certificate must speak for the sender, the receiver must be carried here
//! and led by this replica (else the sender gets a leader hint), the link must not be cut by a
//! drill, and the batch must pass the link protocol's check ([`link::check_batch`]: known
//! sender, this link, sequence continuity against the inbox watermark, budgets). A replay is
//! answered from the watermark and a gap refused, both without touching the log; the rest is
//! committed through the receiver's Raft and only then acknowledged. A message this office
//! cannot admit (a kind its build does not know, a body that does not decode, a field the case
//! engine refuses) does not refuse the batch: it is committed as refused without its content
//! ([`link::proposal`]), and the messages behind it go through. Rules that depend on the message
//! (assign only down, escalate only up, ...) are applied in the state machine, deterministically,
//! as refusals. Personal data arrives clear
//! (a carried case's petitioner arriving sealed is refused) and is sealed under the receiving
//! office's data key just before the batch is proposed ([`crate::personal`]).

use std::sync::Arc;

use federation_proto::v1::federation_server::Federation;
use federation_proto::v1::{
    self, DeliverReply, DeliverRequest, QueryReply, QueryRequest, StatsReply, StatsRequest,
};
use liandong_domain::message::{Envelope, Summary, SummaryV2};
use liandong_domain::reports::ReportKind;
use liandong_domain::{CaseId, OfficeCode};
use prost::Message;
use tonic::{Request, Response, Status};

use super::directory::Directory;
use super::faults::Faults;
use super::link::{self, Arrived, Inbound, NotReceived, Receiving, Refuse};
pub use super::query::QUERY_LIMIT_MAX;
use super::query::{self, Asker};
use crate::machine::LinkIn;
use crate::raft::types::{Operation, Received, Refusal, Response as Applied};
use crate::replica::{MembershipError, Replica, ReplicaError, Replicas};

pub struct FederationService {
    pub replicas: Replicas,
    pub directory: Arc<Directory>,
    pub faults: Faults,
    /// Check that the peer's certificate names the sending office (mutual TLS on).
    pub check_peer: bool,
    /// Who may query: a supervisor's token (`api::auth`); None only where nothing checks callers
    /// (the simulation's in-process offices).
    pub trust: Option<Arc<crate::api::auth::Trust>>,
    /// How fresh queries ask child offices; None: this service answers only from its index.
    pub asker: Option<Asker>,
}

/// An office as the link protocol's receiver sees it: its leader replica here.
struct Leader<'a>(&'a Replica);

impl Receiving for Leader<'_> {
    type Failure = ReplicaError;

    fn link_in(&self, from: &OfficeCode) -> Result<LinkIn, String> {
        self.0.state_machine.link_in(from)
    }

    fn refusals(
        &self,
        from: &OfficeCode,
        seqs: std::ops::RangeInclusive<u64>,
    ) -> Result<Vec<Refusal>, String> {
        self.0.state_machine.refusals(from, seqs)
    }

    async fn catch_up(&mut self) -> Result<(), ReplicaError> {
        self.0.read_barrier().await
    }

    async fn propose(&mut self, operation: Operation) -> Result<Applied, ReplicaError> {
        // The batch was checked clear; what reaches the log is sealed under this office's key.
        let seal = |envelope: &mut Envelope| {
            self.0
                .seal
                .seal_envelope(envelope)
                .map_err(|error| ReplicaError::Unavailable {
                    office: self.0.office.clone(),
                    reason: error.to_string(),
                })
        };
        let operation = match operation {
            Operation::Receive {
                from,
                mut envelopes,
            } => {
                for envelope in &mut envelopes {
                    seal(envelope)?;
                }
                Operation::Receive { from, envelopes }
            }
            Operation::ReceiveMarked { from, mut messages } => {
                for message in &mut messages {
                    if let Received::Message(envelope) = message {
                        seal(envelope)?;
                    }
                }
                Operation::ReceiveMarked { from, messages }
            }
            other => other,
        };
        self.0
            .write(operation)
            .await
            .map(|written| written.response)
    }
}

/// A batch the link protocol refused: nothing was proposed.
fn refused(refuse: Refuse) -> Status {
    let message = refuse.to_string();
    match refuse {
        Refuse::UnknownSender { .. } => Status::permission_denied(message),
        Refuse::Gap { .. } => Status::failed_precondition(message),
        Refuse::Items { .. }
        | Refuse::Bytes { .. }
        | Refuse::WrongLink { .. }
        | Refuse::NotConsecutive { .. } => Status::invalid_argument(message),
    }
}

/// One envelope of a Deliver request as it arrived. Its link and number must decode (else the
/// request is refused whole: the envelope names no link); its body need not: a kind this build
/// does not know (a newer office's: protobuf leaves an unknown `oneof` case empty), a body that
/// does not decode, or personal data that arrived sealed is carried as [`Arrived::Unreadable`],
/// to be committed as refused without its content.
fn arrived(proto: v1::Envelope) -> Result<Arrived, Status> {
    let header = |what: &str, code: &str| {
        office(code, what).map_err(|status| {
            Status::invalid_argument(format!("envelope #{}: {}", proto.seq, status.message()))
        })
    };
    let (from, to, seq) = (
        header("sender", &proto.from)?,
        header("receiver", &proto.to)?,
        proto.seq,
    );
    let unreadable = |code: &'static str, reason: String| Arrived::Unreadable {
        from: from.clone(),
        to: to.clone(),
        seq,
        code,
        reason,
    };
    if proto.body.is_none() {
        return Ok(unreadable(
            link::UNKNOWN_MESSAGE_KIND,
            "a message of a kind this office's build does not know (upgrade it)".to_string(),
        ));
    }
    let envelope = match Envelope::try_from(proto) {
        Ok(envelope) => envelope,
        Err(error) => {
            return Ok(unreadable(
                link::INVALID_MESSAGE,
                format!("the message does not decode: {}: {error}", error.code()),
            ))
        }
    };
    Ok(match crate::personal::check_arrived_clear(&envelope) {
        Ok(()) => Arrived::Envelope(envelope),
        Err(error) => unreadable(link::INVALID_MESSAGE, error.to_string()),
    })
}

/// The reply of a replica that does not lead its office: where the leader is, if known.
fn leader_hint(error: MembershipError) -> Result<Response<DeliverReply>, Status> {
    match error {
        MembershipError::NotLeader {
            leader: Some(leader),
            ..
        } => Ok(Response::new(DeliverReply {
            applied_through: 0,
            leader_hint: Some(leader.api_addr),
            refused: Vec::new(),
        })),
        other => Err(Status::unavailable(other.to_string())),
    }
}

fn office(code: &str, what: &str) -> Result<OfficeCode, Status> {
    code.parse()
        .map_err(|e| Status::invalid_argument(format!("bad {what} office code {code:?}: {e}")))
}

impl FederationService {
    /// Who may query `as_office`: its own supervisors (an officer's token), or, for a fresh
    /// query passed down the tree, a host whose certificate names one of its ancestors. A
    /// sibling's host or officer is refused.
    fn authorize_query<T>(
        &self,
        request: &Request<T>,
        as_office: &OfficeCode,
        fresh: bool,
    ) -> Result<(), Status> {
        use crate::api::auth::{Action, Principal, Trust};
        let Some(trust) = &self.trust else {
            return Ok(());
        };
        let ancestor_host = fresh
            && matches!(
                trust.principal(request),
                Ok(Principal::Host { offices, .. }) if offices.iter().any(|code| {
                    code.parse::<OfficeCode>().is_ok_and(|code| code.is_ancestor_of(as_office))
                })
            );
        let principal = match trust.principal(request) {
            Ok(principal) if ancestor_host => principal,
            _ => trust.check(request, Action::Query, as_office, "", "")?,
        };
        let record = Trust::record_of(&principal, Action::Query, as_office, "", "");
        if ancestor_host {
            // One hop of an ancestor's fresh query: it reads index summaries (no personal data),
            // and the supervisor who asked is recorded where they signed in. Recorded like a
            // status call, with this office's next append: a city's fresh query must not make
            // each of its offices append (and wake) for its own audit log.
            trust.record_observation(as_office, record)
        } else {
            trust.record(as_office, record)
        }
    }

    /// The children a fresh query of `as_office` asks: all of them, or only the one whose
    /// subtree holds the office the query is narrowed to.
    fn children_asked(
        &self,
        as_office: &OfficeCode,
        narrow: Option<&OfficeCode>,
    ) -> Vec<OfficeCode> {
        let Some(asker) = &self.asker else {
            return Vec::new();
        };
        asker
            .directory
            .children(as_office)
            .into_iter()
            .filter(|child| narrow.is_none_or(|code| child.covers(code)))
            .collect()
    }

    async fn ask_child(
        &self,
        as_office: &OfficeCode,
        child: &OfficeCode,
        request: QueryRequest,
        deadline: tokio::time::Instant,
    ) -> Result<QueryReply, String> {
        match &self.asker {
            _ if request.deadline_ms == 0 => Err("no time left within the deadline".to_string()),
            Some(asker) => asker.ask(as_office, child, request, deadline).await,
            None => Err("this host asks no other office".to_string()),
        }
    }

    async fn ask_child_stats(
        &self,
        as_office: &OfficeCode,
        child: &OfficeCode,
        request: StatsRequest,
        deadline: tokio::time::Instant,
    ) -> Result<StatsReply, String> {
        match &self.asker {
            _ if request.deadline_ms == 0 => Err("no time left within the deadline".to_string()),
            Some(asker) => asker.ask_stats(as_office, child, request, deadline).await,
            None => Err("this host asks no other office".to_string()),
        }
    }

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
/// either side of a partition agree on the primary once both summaries arrive. Only original
/// petitions repeat: a review or re-review case carries its original's petitioner, category
/// and location because it reviews that very case, not because the matter was petitioned again.
pub fn repeat_primaries(summaries: &[Summary]) -> std::collections::HashMap<CaseId, CaseId> {
    let mut groups: std::collections::HashMap<_, Vec<&Summary>> = std::collections::HashMap::new();
    let originals = summaries
        .iter()
        .filter(|s| s.is_owner_copy() && s.kind == "original");
    for summary in originals {
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
        // Only the leader reads its inbox and proposes: a follower points the sender on.
        if let Err(error) = replica.ensure_leader() {
            return leader_hint(error);
        }
        // The budgets first, before a single envelope is decoded.
        let bytes = request.envelopes.iter().map(Message::encoded_len).sum();
        link::check_size(request.envelopes.len(), bytes).map_err(refused)?;
        let mut envelopes = Vec::with_capacity(request.envelopes.len());
        let mut traced = Vec::with_capacity(request.envelopes.len());
        for proto in request.envelopes {
            let arrived = arrived(proto)?;
            match &arrived {
                Arrived::Envelope(envelope) => {
                    traced.extend(crate::trace::batch(std::slice::from_ref(envelope)))
                }
                Arrived::Unreadable {
                    seq, code, reason, ..
                } => tracing::warn!(
                    %from, %to, seq, code, reason = %liandong_domain::echo(reason),
                    "a message not admitted: it is committed as refused"
                ),
            }
            envelopes.push(arrived);
        }
        let (traced_from, traced_to) = (from.clone(), to.clone());
        let batch = Inbound {
            from,
            to,
            envelopes,
            bytes,
        };
        let sender_known = self.directory.knows(batch.from.as_str());
        let delivered = match link::receive(&mut Leader(replica), batch, sender_known).await {
            Ok(delivered) => delivered,
            Err(NotReceived::Refused(refuse)) => return Err(refused(refuse)),
            Err(NotReceived::Office(ReplicaError::ForwardToLeader { leader, office })) => {
                return leader_hint(MembershipError::NotLeader { office, leader })
            }
            Err(NotReceived::Office(error)) => return Err(Status::unavailable(error.to_string())),
            Err(NotReceived::Broken(error)) => return Err(Status::internal(error)),
        };
        // The messages this call applied (a redelivery's earlier ones were applied before).
        let applied: Vec<_> = traced
            .into_iter()
            .filter(|(_, _, seq)| *seq <= delivered.applied_through)
            .collect();
        crate::trace::messages("applied", &traced_from, &traced_to, &applied);
        Ok(Response::new(DeliverReply {
            applied_through: delivered.applied_through,
            leader_hint: None,
            refused: delivered
                .refused
                .into_iter()
                .map(|r| v1::Refusal {
                    seq: r.seq,
                    code: r.code,
                    reason: r.reason,
                })
                .collect(),
        }))
    }

    async fn query(&self, request: Request<QueryRequest>) -> Result<Response<QueryReply>, Status> {
        let as_office = office(&request.get_ref().as_office, "supervising")?;
        let fresh = request.get_ref().fresh;
        self.authorize_query(&request, &as_office, fresh)?;
        let request = request.into_inner();
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
        let limit = match request.limit {
            0 => QUERY_LIMIT_MAX,
            limit if limit > QUERY_LIMIT_MAX => {
                return Err(Status::invalid_argument(format!(
                    "limit {limit} is over the maximum {QUERY_LIMIT_MAX}: page with the cursor"
                )))
            }
            limit => limit,
        } as usize;
        let sort = query::Sort::parse(request.sort.as_deref()).map_err(Status::invalid_argument)?;
        let cursor = match &request.cursor {
            Some(cursor) => Some(
                sort.parse_cursor(cursor)
                    .map_err(Status::invalid_argument)?,
            ),
            None => None,
        };
        let filter =
            query::Filter::of(&request, narrow.clone()).map_err(Status::invalid_argument)?;
        // Checked before anything is asked of the children.
        let deadline_ms = if request.fresh {
            query::fresh_deadline_ms(request.deadline_ms).map_err(Status::invalid_argument)?
        } else {
            0
        };
        let started = tokio::time::Instant::now();
        replica
            .read_barrier()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let machine = &replica.state_machine;
        let as_of_ms = query::as_of_ms(machine).map_err(Status::internal)?;
        let cursor = cursor.as_ref();
        let mut reply = QueryReply {
            as_of_ms,
            ..QueryReply::default()
        };
        if !request.fresh {
            // The index answer reads a page of the secondary keys, not the whole index.
            let (page, repeats) = query::index_page(machine, &filter, cursor, limit, sort)
                .map_err(Status::internal)?;
            reply.next_cursor = page.next_cursor;
            reply.cases = page
                .cases
                .into_iter()
                .map(|mut case| {
                    case.repeat_of = repeats.get(&case.case_id).cloned();
                    case
                })
                .collect();
            return Ok(Response::new(reply));
        }
        let summaries = query::local_summaries(machine).map_err(Status::internal)?;
        let primaries = repeat_primaries(
            &summaries
                .values()
                .map(|s| s.summary.clone())
                .collect::<Vec<_>>(),
        );
        let wanted: Vec<&SummaryV2> = summaries.values().filter(|s| filter.wants(s)).collect();
        let merged = if request.fresh {
            let deadline = started + std::time::Duration::from_millis(u64::from(deadline_ms));
            let children = self.children_asked(&as_office, narrow.as_ref());
            let answers = futures::future::join_all(children.iter().map(|child| {
                // 0 would mean the default: a child given no time is not asked.
                let left_ms = deadline_ms.saturating_sub(
                    u32::try_from(started.elapsed().as_millis())
                        .unwrap_or(u32::MAX)
                        .saturating_add(query::QUERY_FRESH_HOP_MARGIN_MS),
                );
                let asked = QueryRequest {
                    as_office: child.to_string(),
                    deadline_ms: left_ms,
                    ..request.clone()
                };
                self.ask_child(&as_office, child, asked, deadline)
            }))
            .await;
            let in_child = |s: &&SummaryV2| children.iter().any(|child| child.covers(&s.owner));
            let own = wanted.iter().copied().filter(|s| !in_child(s));
            let mut parts = vec![query::page(own, cursor, limit, false, sort)];
            for (child, answer) in children.iter().zip(answers) {
                match answer {
                    Ok(answer) => {
                        reply.unreachable.extend(answer.unreachable);
                        reply
                            .answered_ms
                            .insert(child.to_string(), crate::clock::wall_ms());
                        parts.push(query::Part {
                            cases: answer.cases,
                            next_cursor: answer.next_cursor,
                        });
                    }
                    Err(error) => {
                        tracing::info!(%as_office, %child, %error, "fresh query: served from the index");
                        reply.unreachable.push(child.to_string());
                        let held = wanted.iter().copied().filter(|s| child.covers(&s.owner));
                        parts.push(query::page(held, cursor, limit, true, sort));
                    }
                }
            }
            query::merge(parts, limit, sort)
        } else {
            query::page(wanted.into_iter(), cursor, limit, false, sort)
        };
        reply.partial = !reply.unreachable.is_empty();
        reply.next_cursor = merged.next_cursor;
        reply.cases = merged
            .cases
            .into_iter()
            .map(|mut case| {
                case.repeat_of = case
                    .case_id
                    .parse::<CaseId>()
                    .ok()
                    .and_then(|id| primaries.get(&id).map(ToString::to_string));
                case
            })
            .collect();
        Ok(Response::new(reply))
    }

    async fn stats(&self, request: Request<StatsRequest>) -> Result<Response<StatsReply>, Status> {
        let as_office = office(&request.get_ref().as_office, "supervising")?;
        let fresh = request.get_ref().fresh;
        self.authorize_query(&request, &as_office, fresh)?;
        let request = request.into_inner();
        let days = crate::machine::stats::trend_days(&request).map_err(Status::invalid_argument)?;
        // Checked before anything is asked of the children.
        let deadline_ms = if fresh {
            query::fresh_deadline_ms(request.deadline_ms).map_err(Status::invalid_argument)?
        } else {
            0
        };
        let started = tokio::time::Instant::now();
        let replica = self.replicas.get(&as_office).ok_or_else(|| {
            Status::not_found(format!("office {as_office} is not carried by this host"))
        })?;
        replica
            .read_barrier()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let machine = &replica.state_machine;
        // Without a trend the per-day counters are skipped, not read.
        let rows = match days {
            Some((from, to)) => crate::machine::stats::office_rows_with_days(
                machine,
                &liandong_domain::figures::day_name(from),
                &liandong_domain::figures::day_name(to),
            ),
            None => crate::machine::stats::office_rows_without_days(machine),
        }
        .map_err(|e| Status::internal(e.to_string()))?;
        // The per-day counters only when the trend is asked, and only of its days.
        let wanted =
            |figure: &str| match (&days, liandong_domain::figures::parse_day_figure(figure)) {
                (_, None) => !crate::machine::stats::is_day_figure(figure),
                (Some((from, to)), Some((day, _))) => *from <= day && day <= *to,
                (None, Some(_)) => false,
            };
        let mut offices: Vec<v1::OfficeFigures> = rows
            .into_iter()
            .map(|(office, counts)| v1::OfficeFigures {
                office,
                counts: counts
                    .into_iter()
                    .filter(|(figure, _)| wanted(figure))
                    .collect(),
            })
            .collect();
        let mut reply = StatsReply {
            as_of_ms: query::as_of_ms(machine).map_err(Status::internal)?,
            ..StatsReply::default()
        };
        if fresh {
            // Each child's rows from its own fresh answer; the index's rows for a child that
            // does not answer in time, which is named.
            let deadline = started + std::time::Duration::from_millis(u64::from(deadline_ms));
            let children = self.children_asked(&as_office, None);
            let answers = futures::future::join_all(children.iter().map(|child| {
                let left_ms = deadline_ms.saturating_sub(
                    u32::try_from(started.elapsed().as_millis())
                        .unwrap_or(u32::MAX)
                        .saturating_add(query::QUERY_FRESH_HOP_MARGIN_MS),
                );
                let asked = StatsRequest {
                    as_office: child.to_string(),
                    deadline_ms: left_ms,
                    ..request.clone()
                };
                self.ask_child_stats(&as_office, child, asked, deadline)
            }))
            .await;
            let covered = |row: &v1::OfficeFigures, child: &OfficeCode| {
                row.office
                    .parse::<OfficeCode>()
                    .is_ok_and(|code| child.covers(&code))
            };
            for (child, answer) in children.iter().zip(answers) {
                match answer {
                    Ok(answer) => {
                        offices.retain(|row| !covered(row, child));
                        offices.extend(answer.offices);
                        reply.unreachable.extend(answer.unreachable);
                        reply
                            .answered_ms
                            .insert(child.to_string(), crate::clock::wall_ms());
                    }
                    Err(error) => {
                        tracing::info!(%as_office, %child, %error, "fresh stats: served from the index");
                        reply.unreachable.push(child.to_string());
                    }
                }
            }
            offices.sort_by(|a, b| a.office.cmp(&b.office));
            reply.partial = !reply.unreachable.is_empty();
        }
        reply.offices = offices;
        Ok(Response::new(reply))
    }

    async fn reports(
        &self,
        request: Request<v1::ReportsRequest>,
    ) -> Result<Response<v1::ReportsReply>, Status> {
        let office = office(&request.get_ref().office, "reporting")?;
        let kinds = match request.get_ref().kind.as_str() {
            "" => ReportKind::ALL.to_vec(),
            word => vec![ReportKind::parse(word).map_err(Status::invalid_argument)?],
        };
        self.authorize_reports(&request, &office)?;
        let replica = self.reports_replica(&office).await?;
        let machine = &replica.state_machine;
        let internal = |e: crate::machine::ApplyError| Status::internal(e.to_string());
        let mut reply = v1::ReportsReply::default();
        for kind in kinds {
            let periods = crate::machine::reports::periods(machine, kind).map_err(internal)?;
            for period in periods.iter().rev() {
                if let Some(report) =
                    crate::machine::reports::get(machine, kind, period).map_err(internal)?
                {
                    reply.reports.push(report_entry(&report));
                }
            }
        }
        Ok(Response::new(reply))
    }

    async fn report(
        &self,
        request: Request<v1::ReportRequest>,
    ) -> Result<Response<v1::ReportReply>, Status> {
        let office = office(&request.get_ref().office, "reporting")?;
        let kind = ReportKind::parse(&request.get_ref().kind).map_err(Status::invalid_argument)?;
        let format = match request.get_ref().format.as_str() {
            "" | "json" => "json",
            "csv" => "csv",
            "html" => "html",
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown report format {:?}: one of json, csv, html",
                    liandong_domain::echo(other)
                )))
            }
        };
        let period = request.get_ref().period.clone();
        if period.len() > REPORT_PERIOD_BYTES_MAX {
            return Err(Status::invalid_argument(
                "a report period is YYYY-MM-DD or YYYY-MM",
            ));
        }
        self.authorize_reports(&request, &office)?;
        let replica = self.reports_replica(&office).await?;
        let machine = &replica.state_machine;
        let internal = |e: crate::machine::ApplyError| Status::internal(e.to_string());
        let period = if period.is_empty() {
            crate::machine::reports::periods(machine, kind)
                .map_err(internal)?
                .pop()
                .ok_or_else(|| {
                    Status::not_found(format!(
                        "office {office} has made no {} report yet",
                        kind.as_str()
                    ))
                })?
        } else {
            period
        };
        let report = crate::machine::reports::get(machine, kind, &period)
            .map_err(internal)?
            .ok_or_else(|| {
                Status::not_found(format!(
                    "office {office} keeps no {} report of period {:?} (`liandong report list` \
                     shows those it keeps)",
                    kind.as_str(),
                    liandong_domain::echo(&period)
                ))
            })?;
        let body = match format {
            "csv" => report.to_csv(),
            "html" => report.to_html(),
            _ => serde_json::to_string(&report).map_err(|e| Status::internal(e.to_string()))?,
        };
        Ok(Response::new(v1::ReportReply {
            report: Some(report_entry(&report)),
            format: format.to_string(),
            body,
        }))
    }
}

/// The longest period name a report request may carry (`YYYY-MM-DD` is 10 bytes).
const REPORT_PERIOD_BYTES_MAX: usize = 16;

fn report_entry(report: &liandong_domain::reports::Report) -> v1::ReportEntry {
    v1::ReportEntry {
        kind: report.kind.as_str().to_string(),
        period: report.period.clone(),
        from_day: report.from.clone(),
        to_day: report.to.clone(),
        made_ms: report.made_at,
        total: report.total,
        backlog: report.backlog,
        overdue: report.overdue,
        warned: report.warned,
    }
}

impl FederationService {
    /// Who may read an office's reports: its own supervisors, leaders and auditors (an
    /// officer's token of that office), as for Query; the read is recorded in its audit log.
    fn authorize_reports<T>(
        &self,
        request: &Request<T>,
        office: &OfficeCode,
    ) -> Result<(), Status> {
        use crate::api::auth::{Action, Trust};
        let Some(trust) = &self.trust else {
            return Ok(());
        };
        let principal = trust.check(request, Action::Reports, office, "", "")?;
        trust.record(
            office,
            Trust::record_of(&principal, Action::Reports, office, "", ""),
        )
    }

    /// The office's replica on this host, caught up with its leader.
    async fn reports_replica(&self, office: &OfficeCode) -> Result<&Replica, Status> {
        let replica = self.replicas.get(office).ok_or_else(|| {
            Status::not_found(format!("office {office} is not carried by this host"))
        })?;
        replica
            .read_barrier()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(replica)
    }
}
