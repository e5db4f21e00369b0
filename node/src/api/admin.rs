//! Host administration: what `liandong status` shows.

use federation_proto::v1::admin_server::Admin;
use federation_proto::v1::{DumpReply, DumpRequest, ReplicaStatus, StatusReply, StatusRequest};
use liandong_domain::message::{Envelope, Summary};
use liandong_domain::{Case, OfficeCode};
use serde_json::{json, Map, Value};
use tonic::{Request, Response, Status};

use crate::federation::state::{self, LinkIn, LinkOut, OrderRecord};
use crate::replica::Replicas;
use crate::store::codec::decode;
use crate::store::keys::sm;
use crate::store::StateMachineStore;

/// Items of one kind a dump carries at most (bounded reply).
pub const DUMP_ITEMS_MAX: usize = 200_000;

/// The stamped time of the oldest message waiting in any of the office's outboxes.
pub fn outbox_oldest(machine: &StateMachineStore) -> Option<i64> {
    let links = machine.scan_prefix(state::LINK, DUMP_ITEMS_MAX).ok()?;
    links
        .iter()
        .filter_map(|(key, value)| {
            let link: LinkOut = decode(value).ok()?;
            if link.pending() == 0 {
                return None;
            }
            let to: OfficeCode = std::str::from_utf8(&key[state::LINK.len()..])
                .ok()?
                .parse()
                .ok()?;
            let first = machine
                .get(&state::outbox(&to, link.acked_through + 1))
                .ok()??;
            decode::<Envelope>(&first)
                .ok()
                .map(|envelope| envelope.sent_at)
        })
        .min()
}

fn section<T>(
    machine: &StateMachineStore,
    prefix: &[u8],
    read: impl Fn(&[u8], &[u8]) -> Option<T>,
) -> Result<Vec<T>, Status> {
    let items = machine
        .scan_prefix(prefix, DUMP_ITEMS_MAX)
        .map_err(|e| Status::internal(e.to_string()))?;
    Ok(items
        .iter()
        .filter_map(|(key, value)| read(&key[prefix.len()..], value))
        .collect())
}

/// Everything `liandong verify` needs of one replica's state machine, as one JSON document (the
/// Dump RPC's reply; the deterministic simulator reads its replicas through it too).
pub fn dump(machine: &StateMachineStore) -> Result<Value, Status> {
    let applied = machine
        .applied()
        .map_err(|e| Status::internal(e.to_string()))?;
    let cases = section(machine, sm::CASE, |_, value| {
        Case::from_bytes(value)
            .ok()
            .and_then(|case| serde_json::to_value(case).ok())
    })?;
    let index = section(machine, state::INDEX, |_, value| {
        decode::<Summary>(value)
            .ok()
            .and_then(|summary| serde_json::to_value(summary).ok())
    })?;
    let links = |prefix: &[u8],
                 as_json: fn(&[u8]) -> Option<Value>|
     -> Result<Map<String, Value>, Status> {
        Ok(section(machine, prefix, |key, value| {
            Some((String::from_utf8_lossy(key).to_string(), as_json(value)?))
        })?
        .into_iter()
        .collect())
    };
    let links_out = links(state::LINK, |value| {
        serde_json::to_value(decode::<LinkOut>(value).ok()?).ok()
    })?;
    let links_in = links(state::INBOX, |value| {
        serde_json::to_value(decode::<LinkIn>(value).ok()?).ok()
    })?;
    let orders = section(machine, state::ORDER, |_, value| {
        serde_json::to_value(decode::<OrderRecord>(value).ok()?).ok()
    })?;
    Ok(json!({
        "office": machine.office().to_string(),
        "last_applied": applied.last_applied.map(|log_id| log_id.index).unwrap_or(0),
        "state_hash": applied.state_hash,
        "outbox_pending": applied.outbox_pending,
        "cases": cases,
        "index": index,
        "links_out": links_out,
        "links_in": links_in,
        "orders": orders,
    }))
}

pub struct AdminService {
    pub host: String,
    pub replicas: Replicas,
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusReply>, Status> {
        let mut replicas = Vec::new();
        for replica in self.replicas.iter() {
            let metrics = replica.raft.metrics().borrow().clone();
            let applied = replica
                .state_machine
                .applied()
                .map_err(|e| Status::internal(e.to_string()))?;
            replicas.push(ReplicaStatus {
                office: replica.office.to_string(),
                id: replica.id,
                state: format!("{:?}", metrics.state),
                leader: metrics.current_leader,
                term: metrics.current_term,
                last_applied: applied.last_applied.map(|log_id| log_id.index).unwrap_or(0),
                last_log: metrics.last_log_index.unwrap_or(0),
                outbox_pending: applied.outbox_pending,
                outbox_oldest_ms: outbox_oldest(&replica.state_machine).unwrap_or(0),
                voters: metrics.membership_config.membership().voter_ids().collect(),
                cases: applied.cases,
                state_hash: applied.state_hash,
            });
        }
        Ok(Response::new(StatusReply {
            host: self.host.clone(),
            pid: std::process::id(),
            replicas,
        }))
    }

    async fn dump(&self, request: Request<DumpRequest>) -> Result<Response<DumpReply>, Status> {
        let office: OfficeCode = request
            .get_ref()
            .office
            .parse()
            .map_err(|e| Status::invalid_argument(format!("bad office code: {e}")))?;
        let replica = self.replicas.get(&office).ok_or_else(|| {
            Status::not_found(format!("office {office} is not carried by this host"))
        })?;
        let document = serde_json::to_vec(&dump(&replica.state_machine)?)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(DumpReply { document }))
    }
}
