//! Host administration: what `liandong status` shows, and membership changes
//! (`liandong replica add|remove`). Operators' work: an operator certificate naming the office
//! (or an ancestor); a host certificate sees only the status of the offices it names, and may
//! relay an operator's membership request to the office's leader. Dumps leave personal data out.
//! Backups (`liandong snapshot save`) stream an office's snapshot to an operator.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use federation_proto::v1::admin_client::AdminClient;
use federation_proto::v1::admin_server::Admin;
use federation_proto::v1::backup_server::Backup;
use federation_proto::v1::membership_client::MembershipClient;
use federation_proto::v1::membership_server::Membership;
use federation_proto::v1::{
    AddReplicaRequest, CampaignReply, CampaignRequest, DumpReply, DumpRequest, DumpedCase,
    MembershipReply, PeerLinkState, PeerLinksReply, PeerLinksRequest, RemoveReplicaRequest,
    ReplicaStatus, SavePiece, SaveRequest, StatusReply, StatusRequest,
};
use liandong_domain::message::Summary;
use liandong_domain::OfficeCode;
use openraft::ChangeMembers;
use serde_json::{json, Map, Value};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::health::{self, Health};
use crate::machine::{keys, LinkIn, LinkOut, OrderRecord, StateMachineStore};
use crate::manifest::Manifest;
use crate::raft::network::Transport;
use crate::raft::types::{NodeId, NodeInfo};
use crate::replica::{ids, quorum_refusal, MembershipError, Replica, Replicas};

use super::auth::{authorize, Action, Principal, Trust};
use crate::store::codec::decode;

/// Items of one kind a dump carries at most (bounded reply).
pub const DUMP_ITEMS_MAX: usize = 200_000;

/// The stamped time of the oldest message waiting in any of the office's outboxes.
pub fn outbox_oldest(machine: &StateMachineStore) -> Option<i64> {
    let links = machine.links_out().ok()?;
    links
        .iter()
        .filter(|(_, link)| link.pending() > 0)
        .filter_map(|(to, _)| {
            machine
                .outbox_head(to, 1)
                .ok()?
                .1
                .first()
                .map(|e| e.sent_at)
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

type JsonObject = Map<String, Value>;

/// The office's links, by the other office's code: those it sends on (`last_seq`, …) and
/// those it receives on (`applied_through`, `applied`, …), as JSON.
fn links(machine: &StateMachineStore) -> Result<(JsonObject, JsonObject), Status> {
    let by_office = |prefix: &[u8], as_json: fn(&[u8]) -> Option<Value>| {
        section(machine, prefix, |key, value| {
            Some((String::from_utf8_lossy(key).to_string(), as_json(value)?))
        })
        .map(|links| links.into_iter().collect::<Map<String, Value>>())
    };
    let out = by_office(keys::LINK, |value| {
        serde_json::to_value(decode::<LinkOut>(value).ok()?).ok()
    })?;
    let inbox = by_office(keys::INBOX, |value| {
        serde_json::to_value(decode::<LinkIn>(value).ok()?).ok()
    })?;
    Ok((out, inbox))
}

/// Everything `liandong verify` needs of one replica's state machine, as one JSON document (the
/// Dump RPC's reply; the deterministic simulator reads its replicas through it too).
pub fn dump(machine: &StateMachineStore) -> Result<Value, Status> {
    let applied = machine
        .applied()
        .map_err(|e| Status::internal(e.to_string()))?;
    let cases: Vec<Value> = machine
        .whole_cases(DUMP_ITEMS_MAX)
        .map_err(Status::internal)?
        .iter()
        .filter_map(|case| serde_json::to_value(case).ok())
        .collect();
    let index = section(machine, keys::INDEX, |_, value| {
        decode::<Summary>(value)
            .ok()
            .and_then(|summary| serde_json::to_value(summary).ok())
    })?;
    let (links_out, links_in) = links(machine)?;
    let orders = section(machine, keys::ORDER, |_, value| {
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

/// Items one page of a paged dump carries at most.
pub const DUMP_PAGE_ITEMS_MAX: usize = 1_000;
/// Bytes of cases or summaries one page carries at most (a page holds at least one item, so a
/// case larger than this makes a page of its own).
pub const DUMP_PAGE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The sections a paged dump reads.
pub const DUMP_SECTIONS: [&str; 5] = ["head", "cases", "index", "anchors", "anchor-leaves"];

/// One page of one section of a replica's state (the Dump RPC with a section): `after` is the
/// last key of the previous page (a case id), `limit` items at most (0: the cap). The reply's
/// `last_applied` lets the reader see the state move between its pages.
pub fn dump_page(
    machine: &StateMachineStore,
    section: &str,
    after: &[u8],
    limit: u32,
) -> Result<DumpReply, Status> {
    let internal = |e: &dyn std::fmt::Display| Status::internal(e.to_string());
    let applied = machine.applied().map_err(|e| internal(&e))?;
    let last_applied = applied.last_applied.map(|log_id| log_id.index).unwrap_or(0);
    let limit = match limit as usize {
        0 => DUMP_PAGE_ITEMS_MAX,
        n => n.min(DUMP_PAGE_ITEMS_MAX),
    };
    let mut reply = DumpReply {
        last_applied,
        ..DumpReply::default()
    };
    let prefix = match section {
        "head" => {
            let (links_out, links_in) = links(machine)?;
            let head = json!({
                "office": machine.office().to_string(),
                "last_applied": last_applied,
                "state_hash": applied.state_hash,
                "outbox_pending": applied.outbox_pending,
                "links_out": links_out,
                "links_in": links_in,
            });
            reply.document = serde_json::to_vec(&head).map_err(|e| internal(&e))?;
            return Ok(reply);
        }
        "cases" => keys::CASE,
        "index" => keys::INDEX,
        // The children's anchors kept here, and their leaves (raw stored values, like the index).
        "anchors" => keys::ANCHOR,
        "anchor-leaves" => keys::ANCHOR_LEAF,
        other => {
            return Err(Status::invalid_argument(format!(
                "unknown dump section {other:?} (one of {})",
                DUMP_SECTIONS.join(", ")
            )))
        }
    };
    // The first key after `after`: the key itself with a zero byte appended.
    let start = if after.is_empty() {
        prefix.to_vec()
    } else {
        [prefix, after, &[0]].concat()
    };
    let items = machine
        .scan_range(&start, &crate::store::keys::prefix_end(prefix), limit)
        .map_err(|e| internal(&e))?;
    let scanned = items.len();
    let mut bytes = 0;
    let mut last = Vec::new();
    let mut full = false;
    for (key, value) in items {
        let id = &key[prefix.len()..];
        if section == "cases" {
            let case_id = std::str::from_utf8(id)
                .ok()
                .and_then(|id| id.parse().ok())
                .ok_or_else(|| {
                    Status::internal(format!("a case key that names no case: {key:?}"))
                })?;
            if let Some(mut case) = machine.case(&case_id).map_err(|e| internal(&e))? {
                let petitioner_sha256 = case.petitioner_sha256().unwrap_or_default();
                case.petitioner = None;
                // A group petition's other petitioners stay home too (the digest counts them).
                case.group = None;
                // So does the address (the extension stays: a version-5 case is read with it).
                if let Some(extra) = &mut case.petitioner_extra {
                    extra.address = None;
                }
                let case = case.to_bytes();
                bytes += case.len();
                reply.cases.push(DumpedCase {
                    case,
                    petitioner_sha256,
                });
            }
        } else {
            bytes += value.len();
            reply.index.push(value);
        }
        last = id.to_vec();
        if bytes >= DUMP_PAGE_BYTES_MAX {
            full = true;
            break;
        }
    }
    if full || scanned == limit {
        reply.next = last;
    }
    Ok(reply)
}

pub struct AdminService {
    pub host: String,
    pub replicas: Replicas,
    pub trust: Arc<Trust>,
    /// The leader changes each replica saw (for "flapping").
    pub health: Arc<Health>,
    /// The certificate the host serves now.
    pub tls: Arc<crate::live_tls::LiveTls>,
    /// What this host's SMS sender did.
    pub notify: Arc<crate::notify::NotifyStats>,
    /// Where each office's hosts answer: the manifest generation the host runs with.
    pub directory: Arc<crate::federation::directory::Directory>,
}

/// A dump as an operator gets it: every case's personal data (name, ID number, phone) left out,
/// their digest in its place (`petitioner_sha256`). The history carries none, so `verify` checks
/// the same chains, and the signed state hashes against the digest.
fn without_personal_data(mut document: Value) -> Value {
    if let Some(cases) = document["cases"].as_array_mut() {
        for case in cases {
            if let Some(fields) = case.as_object_mut() {
                // Their digest stays: the state hash each history entry signs covers it.
                // A group petition's other petitioners go too; the digest says there were some
                // (as `Case::petitioner_sha256` does).
                let mut petitioner = fields.get("petitioner").cloned().unwrap_or(Value::Null);
                if let (Some(group), Some(petitioner)) =
                    (fields.remove("group"), petitioner.as_object_mut())
                {
                    petitioner.insert("group".to_string(), Value::from(!group.is_null()));
                }
                let digest = liandong_domain::personal_data_sha256(&petitioner);
                fields.insert("petitioner_sha256".to_string(), Value::from(digest));
                fields.insert("petitioner".to_string(), Value::Null);
            }
        }
    }
    document
}

/// One replica as the Status RPC reports it (without the commit check, which is asked of
/// leaders together).
fn replica_status(
    replica: &Replica,
    health: &Health,
    notify: &crate::notify::NotifyStats,
) -> Result<ReplicaStatus, Status> {
    let metrics = replica.raft.metrics().borrow().clone();
    let applied = replica
        .state_machine
        .applied()
        .map_err(|e| Status::internal(e.to_string()))?;
    let sms = replica
        .state_machine
        .notify_state()
        .map_err(Status::internal)?;
    let sms_oldest_ms = replica
        .state_machine
        .notify_head(1)
        .map_err(Status::internal)?
        .first()
        .map_or(0, |notification| notification.made_at);
    let sender = notify.of(&replica.office);
    let membership = metrics.membership_config.membership();
    Ok(ReplicaStatus {
        office: replica.office.to_string(),
        id: replica.id,
        state: format!("{:?}", metrics.state),
        leader: metrics.current_leader,
        term: metrics.current_term,
        last_applied: applied.last_applied.map(|log_id| log_id.index).unwrap_or(0),
        last_log: metrics.last_log_index.unwrap_or(0),
        outbox_pending: applied.outbox_pending,
        outbox_oldest_ms: outbox_oldest(&replica.state_machine).unwrap_or(0),
        voters: membership.voter_ids().collect(),
        learners: membership.learner_ids().collect(),
        membership_index: metrics
            .membership_config
            .log_id()
            .map(|log_id| log_id.index)
            .unwrap_or(0),
        joint: membership.get_joint_config().len() > 1,
        cases: applied.cases,
        state_hash: applied.state_hash,
        quiesced: replica.quiet.is_quiesced(),
        commit_index: health::commit_index(&metrics).unwrap_or(0),
        replication: health::replication(&metrics),
        // The leader's links are the office's (it pumps them); a follower's copy adds nothing.
        links: if metrics.state.is_leader() {
            health::links(replica)
        } else {
            Vec::new()
        },
        leader_changes_last_minute: health.leader_changes_last_minute(&replica.office),
        commit_check: None,
        quiesce_note: replica.quiet.note(),
        sms_pending: sms.pending,
        sms_sent: sms.sent,
        sms_dropped: sms.dropped,
        sms_oldest_ms,
        sms_oldest_age_ms: if sms_oldest_ms > 0 {
            u64::try_from(replica.clock.now().saturating_sub(sms_oldest_ms)).unwrap_or(0)
        } else {
            0
        },
        sms_failed_attempts: sender.failed_attempts,
        sms_last_error: sender.last_error.unwrap_or_default(),
    })
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusReply>, Status> {
        let principal = self
            .trust
            .principal(&request)
            .map_err(|refusal| refusal.status())?;
        match principal {
            Principal::Anonymous => {
                return Err(Status::unauthenticated(
                    "Admin.Status needs an operator certificate",
                ))
            }
            Principal::Officer(_) => {
                return Err(Status::permission_denied(
                    "Admin.Status is operators' work, not an officer's",
                ))
            }
            Principal::Host { .. } | Principal::Operator { .. } => {}
        }
        let check_commit = request.get_ref().check_commit;
        let mut allowed = Vec::new();
        let mut replicas = Vec::new();
        for replica in self.replicas.iter() {
            if authorize(&principal, Action::Status, &replica.office).is_err() {
                continue;
            }
            if let Principal::Operator { .. } = principal {
                let record = Trust::record_of(&principal, Action::Status, &replica.office, "", "");
                self.trust.record_observation(&replica.office, record)?;
            }
            replicas.push(replica_status(replica, &self.health, &self.notify)?);
            allowed.push(replica);
        }
        if check_commit {
            // Every led office at once: one read index each, bounded in time.
            let checks = allowed
                .into_iter()
                .zip(replicas.iter_mut())
                .filter(|(replica, _)| replica.is_leader())
                .map(|(replica, status)| async move {
                    status.commit_check = Some(health::check_commit(replica).await);
                });
            futures::future::join_all(checks).await;
        }
        Ok(Response::new(StatusReply {
            host: self.host.clone(),
            pid: std::process::id(),
            replicas,
            certificate_serial: self.tls.serial(),
            certificate_not_after_ms: self.tls.not_after_ms(),
            revocation_list_number: self.tls.revocation_list_number(),
            manifest_generation: self.directory.generation(),
        }))
    }

    async fn dump(&self, request: Request<DumpRequest>) -> Result<Response<DumpReply>, Status> {
        let office: OfficeCode = request
            .get_ref()
            .office
            .parse()
            .map_err(|e| Status::invalid_argument(format!("bad office code: {e}")))?;
        let principal = self.trust.check(&request, Action::Dump, &office, "", "")?;
        let replica = self.replicas.get(&office).ok_or_else(|| {
            Status::not_found(format!("office {office} is not carried by this host"))
        })?;
        let record = Trust::record_of(&principal, Action::Dump, &office, "", "");
        let request = request.into_inner();
        if request.section.is_empty() {
            self.trust.record(&office, record)?;
        } else {
            // Pages carry no personal data, and `verify` reads an office's pages from one
            // state: an append of their record now would move it. The pages of one read are
            // one record with a count, appended with the office's next record (as status calls).
            self.trust.record_observation(&office, record)?;
        }
        if !request.section.is_empty() {
            let machine = replica.state_machine.clone();
            let page = tokio::task::spawn_blocking(move || {
                dump_page(&machine, &request.section, &request.after, request.limit)
            })
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
            return Ok(Response::new(page));
        }
        let document = without_personal_data(dump(&replica.state_machine)?);
        let document =
            serde_json::to_vec(&document).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(DumpReply {
            document,
            ..DumpReply::default()
        }))
    }
}

/// The Backup service: an office's state machine at one applied index, streamed as a backup file
/// (`machine::backup`).
pub struct BackupService {
    pub host: String,
    pub replicas: Replicas,
    pub trust: Arc<Trust>,
}

/// How long a campaign waits for its replica to lead.
pub const CAMPAIGN_WAIT_MS: u64 = 3_000;

/// Pieces of a backup queued towards the caller at most (the file is read as they are taken).
const BACKUP_PIECES_QUEUED: usize = 4;

/// Removes a file when dropped (a backup's snapshot file, once sent or abandoned).
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Sends the backup of `file` (header, pieces of the body, digest) into `pieces`; stops when
/// the caller went away.
fn stream_backup(
    header: Vec<u8>,
    file: RemoveOnDrop,
    pieces: tokio::sync::mpsc::Sender<Result<SavePiece, Status>>,
) {
    use federation_proto::v1::save_piece::Piece;
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut hasher = Sha256::new();
    hasher.update(&header);
    let send = |piece: Result<Piece, Status>| {
        pieces
            .blocking_send(piece.map(|piece| SavePiece { piece: Some(piece) }))
            .is_ok()
    };
    if !send(Ok(Piece::Header(header))) {
        return;
    }
    let mut input = match std::fs::File::open(&file.0) {
        Ok(input) => input,
        Err(error) => {
            send(Err(Status::internal(format!(
                "reading the snapshot: {error}"
            ))));
            return;
        }
    };
    let mut buffer = vec![0u8; crate::machine::backup::PIECE_BYTES_MAX];
    loop {
        let read = match input.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) => {
                send(Err(Status::internal(format!(
                    "reading the snapshot: {error}"
                ))));
                return;
            }
        };
        hasher.update(&buffer[..read]);
        if !send(Ok(Piece::Data(buffer[..read].to_vec()))) {
            return;
        }
    }
    send(Ok(Piece::Digest(hasher.finalize().to_vec())));
}

#[tonic::async_trait]
impl Backup for BackupService {
    type SaveStream = tokio_stream::wrappers::ReceiverStream<Result<SavePiece, Status>>;

    async fn save(
        &self,
        request: Request<SaveRequest>,
    ) -> Result<Response<Self::SaveStream>, Status> {
        let office: OfficeCode = request
            .get_ref()
            .office
            .parse()
            .map_err(|e| Status::invalid_argument(format!("bad office code: {e}")))?;
        let principal = self
            .trust
            .check(&request, Action::Backup, &office, "", "")?;
        let replica = self.replicas.get(&office).cloned().ok_or_else(|| {
            Status::not_found(format!("office {office} is not carried by this host"))
        })?;
        self.trust.record(
            &office,
            Trust::record_of(&principal, Action::Backup, &office, "", ""),
        )?;
        let machine = replica.state_machine.clone();
        let (path, applied) = tokio::task::spawn_blocking(move || machine.write_backup_file())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(format!("writing the snapshot: {e}")))?;
        let file = RemoveOnDrop(path);
        let body_bytes = std::fs::metadata(&file.0)
            .map_err(|e| Status::internal(format!("reading the snapshot: {e}")))?
            .len();
        let header = crate::machine::backup::BackupHeader::new(
            &office,
            &self.host,
            replica.id,
            &applied,
            crate::clock::wall_ms(),
            body_bytes,
        );
        tracing::info!(%office, index = header.applied_index, bytes = body_bytes, "backup");
        let (pieces, receiver) = tokio::sync::mpsc::channel(BACKUP_PIECES_QUEUED);
        let header = header.encode();
        tokio::task::spawn_blocking(move || stream_backup(header, file, pieces));
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            receiver,
        )))
    }

    async fn peer_links(
        &self,
        request: Request<PeerLinksRequest>,
    ) -> Result<Response<PeerLinksReply>, Status> {
        let office: OfficeCode = request
            .get_ref()
            .office
            .parse()
            .map_err(|e| Status::invalid_argument(format!("bad office code: {e}")))?;
        let principal = self
            .trust
            .check(&request, Action::PeerLinks, &office, "", "")?;
        let replicas: Vec<Replica> = self
            .replicas
            .iter()
            .filter(|replica| replica.office != office)
            .cloned()
            .collect();
        let wanted = office.clone();
        let mut peers = tokio::task::spawn_blocking(move || {
            let mut peers = Vec::new();
            for replica in replicas {
                let links = replica
                    .state_machine
                    .peer_links(&wanted)
                    .map_err(|e| Status::internal(format!("office {}: {e}", replica.office)))?;
                if let Some(links) = links {
                    peers.push(PeerLinkState {
                        peer: replica.office.to_string(),
                        applied_from: links.applied_from,
                        acked_by: links.acked_by,
                        case_seqs: links
                            .case_seqs
                            .iter()
                            .map(|(year, seq)| (u32::from(*year), *seq))
                            .collect(),
                    });
                }
            }
            Ok::<_, Status>(peers)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        // Each office that told its side is the one whose log records the read.
        for peer in &peers {
            if let Ok(code) = peer.peer.parse::<OfficeCode>() {
                let record = Trust::record_of(&principal, Action::PeerLinks, &code, "", "");
                self.trust.record_observation(&code, record)?;
            }
        }
        peers.sort_by(|a, b| a.peer.cmp(&b.peer));
        Ok(Response::new(PeerLinksReply {
            host: self.host.clone(),
            peers,
        }))
    }
}

/// How long a learner may take to catch up when the request names no limit.
pub const CATCH_UP_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// The most a request may ask for (bounded: a caller cannot hold the office's change slot for
/// ever).
pub const CATCH_UP_TIMEOUT_MS_MAX: u64 = 600_000;
/// How long one membership log entry may take to commit before the change is reported as stuck.
pub const COMMIT_TIMEOUT_MS: u64 = 10_000;
/// How long a removed voter is given to receive the config that makes it a learner before it is
/// dropped: once it knows it no longer votes it stays quiet instead of campaigning.
pub const DEMOTION_NOTICE_MS: u64 = 2_000;
/// How long a voter's host may take to answer the liveness probe.
pub const PROBE_TIMEOUT_MS: u64 = 1_000;
/// A membership request is passed from host to host at most this often (a leader change).
pub const MEMBERSHIP_FORWARD_HOPS_MAX: u32 = 2;
/// A forwarded request may take the catch-up time plus this much (several commits).
pub const FORWARD_MARGIN_MS: u64 = 3 * COMMIT_TIMEOUT_MS;

/// The Membership service: adds and removes replicas of the offices this host leads, forwards
/// other requests to the leader.
pub struct MembershipService {
    trust: Arc<Trust>,
    replicas: Replicas,
    transport: Transport,
    /// Where each replica slot of the manifest lives, by (office, replica id): a replica can be
    /// (re-)added only where the manifest places it, because only that host's certificate names
    /// the office and only that host opens the office's replica at start.
    slots: Arc<BTreeMap<(String, NodeId), NodeInfo>>,
    /// Offices with a change running on this host: a second one is refused, not queued.
    busy: Arc<Mutex<BTreeSet<String>>>,
}

/// Marks an office busy for as long as it lives.
struct BusyGuard {
    busy: Arc<Mutex<BTreeSet<String>>>,
    office: String,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.busy
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&self.office);
    }
}

fn membership_status(error: MembershipError) -> Status {
    let text = error.to_string();
    match error {
        MembershipError::NotLeader { .. } | MembershipError::Unavailable { .. } => {
            Status::unavailable(text)
        }
        MembershipError::InProgress { .. } | MembershipError::Refused(_) => {
            Status::failed_precondition(text)
        }
        MembershipError::UnknownReplica(_) => Status::not_found(text),
        MembershipError::Timeout(_) => Status::deadline_exceeded(text),
    }
}

/// What a change did, collected for the reply.
#[derive(Default)]
struct Steps {
    done: Vec<String>,
    catch_up_ms: u64,
}

impl MembershipService {
    pub fn new(
        manifest: &Manifest,
        replicas: Replicas,
        transport: Transport,
        trust: Arc<Trust>,
    ) -> MembershipService {
        let mut slots = BTreeMap::new();
        for office in &manifest.offices {
            for member in &office.members {
                if let Some(host) = manifest.host(&member.host) {
                    let node = NodeInfo {
                        host: host.name.clone(),
                        raft_addr: host.raft_addr.clone(),
                        api_addr: host.api_addr.clone(),
                    };
                    slots.insert((office.code.clone(), member.id), node);
                }
            }
        }
        MembershipService {
            trust,
            replicas,
            transport,
            slots: Arc::new(slots),
            busy: Arc::default(),
        }
    }

    /// The office's replica here, once the caller may change the office's membership (an
    /// operator of it, or one of its hosts relaying an operator's request); the call is recorded.
    fn authorized<T>(
        &self,
        request: &Request<T>,
        office: &str,
        hops: u32,
        rpc: &str,
    ) -> Result<Replica, Status> {
        let code: OfficeCode = office
            .parse()
            .map_err(|e| Status::invalid_argument(format!("bad office code {office:?}: {e}")))?;
        let action = Action::Membership {
            forwarded: hops > 0,
        };
        let principal = self.trust.check(request, action, &code, "", "")?;
        let replica = self.replica(office)?;
        if hops == 0 {
            let mut record = Trust::record_of(&principal, action, &code, "", "");
            record.rpc = format!("Membership.{rpc}");
            self.trust.record(&code, record)?;
        }
        Ok(replica)
    }

    fn replica(&self, office: &str) -> Result<Replica, Status> {
        let code: OfficeCode = office
            .parse()
            .map_err(|e| Status::invalid_argument(format!("bad office code {office:?}: {e}")))?;
        self.replicas
            .get(&code)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("office {code} is not carried by this host")))
    }

    fn claim(&self, office: &OfficeCode) -> Result<BusyGuard, MembershipError> {
        let mut busy = self
            .busy
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !busy.insert(office.to_string()) {
            return Err(MembershipError::InProgress {
                office: office.clone(),
                detail: "another replica add or remove is running at its leader".to_string(),
            });
        }
        Ok(BusyGuard {
            busy: self.busy.clone(),
            office: office.to_string(),
        })
    }

    /// The voters among `ids` whose host answers now and runs the office's replica (this
    /// replica counts as live). A paused or dead host does not answer within the probe timeout.
    async fn live(&self, replica: &Replica, ids: &BTreeSet<NodeId>) -> BTreeSet<NodeId> {
        let view = replica.membership();
        let probes = ids.iter().map(|&id| {
            let node = view
                .nodes
                .get(&id)
                .or_else(|| self.slots.get(&(replica.office.to_string(), id)))
                .cloned();
            let office = replica.office.to_string();
            async move {
                if id == replica.id {
                    return Some(id);
                }
                let node = node?;
                let channel = self.transport.channel(&node.api_addr).ok()?;
                let mut client = AdminClient::new(channel);
                let ask = client.status(StatusRequest::default());
                let reply = tokio::time::timeout(Duration::from_millis(PROBE_TIMEOUT_MS), ask)
                    .await
                    .ok()?
                    .ok()?
                    .into_inner();
                reply
                    .replicas
                    .iter()
                    .any(|r| r.office == office && r.id == id && r.state != "Shutdown")
                    .then_some(id)
            }
        });
        futures::future::join_all(probes)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Refuses a change of the voters from `before` to `after` that would cost the office its
    /// quorum (see [`quorum_refusal`]).
    async fn check_quorum(
        &self,
        replica: &Replica,
        before: &BTreeSet<NodeId>,
        after: &BTreeSet<NodeId>,
    ) -> Result<(), MembershipError> {
        let both: BTreeSet<NodeId> = before.union(after).copied().collect();
        let live = self.live(replica, &both).await;
        match quorum_refusal(before, after, &live) {
            None => Ok(()),
            Some(why) => Err(MembershipError::Refused(format!(
                "office {}: voters {} -> {} refused: {why}",
                replica.office,
                ids(before),
                ids(after)
            ))),
        }
    }

    /// A change left half-way (its leader died between the joint and the uniform config) is
    /// finished towards its target first: the office would otherwise need two majorities for
    /// every write until someone did.
    async fn finish_interrupted(
        &self,
        replica: &Replica,
        steps: &mut Steps,
    ) -> Result<(), MembershipError> {
        let view = replica.membership();
        if !view.joint {
            return Ok(());
        }
        self.check_quorum(replica, &view.voters, &view.target_voters)
            .await?;
        replica
            .change_members(
                ChangeMembers::ReplaceAllVoters(view.target_voters.clone()),
                true,
                Duration::from_millis(COMMIT_TIMEOUT_MS),
            )
            .await?;
        steps.done.push(format!(
            "finished an interrupted change: voters {}",
            ids(&view.target_voters)
        ));
        Ok(())
    }

    async fn add(
        &self,
        replica: &Replica,
        id: NodeId,
        catch_up: Duration,
        steps: &mut Steps,
    ) -> Result<(), MembershipError> {
        let office = replica.office.to_string();
        let node = self
            .slots
            .get(&(office.clone(), id))
            .cloned()
            .ok_or_else(|| {
                let slots: Vec<String> = self
                    .slots
                    .iter()
                    .filter(|((code, _), _)| *code == office)
                    .map(|((_, slot), node)| format!("{slot}@{}", node.host))
                    .collect();
                MembershipError::UnknownReplica(format!(
                    "office {office} has no replica slot {id} in the manifest (slots: {})",
                    slots.join(", ")
                ))
            })?;
        let before = replica.membership();
        if before.voters.contains(&id) {
            return Err(MembershipError::Refused(format!(
                "replica {id} of office {office} is already a voter (voters {})",
                ids(&before.voters)
            )));
        }
        let was_learner = before.learners.contains(&id);
        let index = replica.add_learner(id, node.clone()).await?;
        steps.done.push(format!(
            "replica {id} on host {} added as a learner (log index {index})",
            node.host
        ));
        let target = replica.last_log_index().max(index);
        let caught_up = match replica.wait_replicated(id, target, catch_up).await {
            Ok(took) => took,
            Err(error) => {
                // Leave the membership as it was: a learner that cannot catch up only costs the
                // leader replication attempts.
                if !was_learner && matches!(error, MembershipError::Timeout(_)) {
                    let _ = replica
                        .change_members(
                            ChangeMembers::RemoveNodes(BTreeSet::from([id])),
                            false,
                            Duration::from_millis(COMMIT_TIMEOUT_MS),
                        )
                        .await;
                    return Err(MembershipError::Timeout(format!(
                        "{error}; is host {} running? It was removed again, the voters are \
                         unchanged ({})",
                        node.host,
                        ids(&before.voters)
                    )));
                }
                return Err(error);
            }
        };
        steps.catch_up_ms = u64::try_from(caught_up.as_millis()).unwrap_or(u64::MAX);
        steps.done.push(format!(
            "replica {id} caught up to log index {target} in {} ms",
            steps.catch_up_ms
        ));
        let voters = replica.membership().voters;
        let mut after = voters.clone();
        after.insert(id);
        self.check_quorum(replica, &voters, &after).await?;
        replica
            .change_members(
                ChangeMembers::AddVoterIds(BTreeSet::from([id])),
                true,
                Duration::from_millis(COMMIT_TIMEOUT_MS),
            )
            .await?;
        steps.done.push(format!("replica {id} promoted to voter"));
        Ok(())
    }

    async fn remove(
        &self,
        replica: &Replica,
        id: NodeId,
        steps: &mut Steps,
    ) -> Result<(), MembershipError> {
        let office = replica.office.clone();
        let view = replica.membership();
        let drop_learner = ChangeMembers::RemoveNodes(BTreeSet::from([id]));
        let commit = Duration::from_millis(COMMIT_TIMEOUT_MS);
        if !view.voters.contains(&id) {
            if !view.learners.contains(&id) {
                return Err(MembershipError::UnknownReplica(format!(
                    "replica {id} is not a member of office {office} (voters {}, learners {})",
                    ids(&view.voters),
                    ids(&view.learners)
                )));
            }
            replica.change_members(drop_learner, false, commit).await?;
            steps.done.push(format!("learner {id} dropped"));
            return Ok(());
        }
        let mut after = view.voters.clone();
        after.remove(&id);
        self.check_quorum(replica, &view.voters, &after).await?;
        if id == replica.id {
            // The leader removes itself in one change: openraft lets a leader that is still a
            // member (even a learner) lead on, and steps it down once a config without it is
            // committed. It appended that config itself, so it knows not to campaign.
            let index = replica
                .change_members(
                    ChangeMembers::RemoveVoters(BTreeSet::from([id])),
                    false,
                    commit,
                )
                .await?;
            steps.done.push(format!(
                "replica {id} (the leader) removed (voters {}, log index {index}); it steps down \
                 and the others elect a leader",
                ids(&after)
            ));
            return Ok(());
        }
        // A follower is demoted first, and dropped only once it has the config that says so: a
        // follower dropped while still a voter in its own eyes would campaign with rising terms
        // and unseat the leader when it is added again.
        let index = replica
            .change_members(
                ChangeMembers::RemoveVoters(BTreeSet::from([id])),
                true,
                commit,
            )
            .await?;
        steps.done.push(format!(
            "replica {id} demoted to learner (voters {}, log index {index})",
            ids(&after)
        ));
        let notice = Duration::from_millis(DEMOTION_NOTICE_MS);
        if replica.wait_replicated(id, index, notice).await.is_ok() {
            steps
                .done
                .push(format!("replica {id} received its demotion"));
        }
        replica.change_members(drop_learner, false, commit).await?;
        steps.done.push(format!("replica {id} dropped"));
        Ok(())
    }

    fn reply(&self, replica: &Replica, steps: Steps) -> MembershipReply {
        let view = replica.membership();
        MembershipReply {
            office: replica.office.to_string(),
            voters: view.voters.into_iter().collect(),
            learners: view.learners.into_iter().collect(),
            leader: replica.id,
            log_index: view.log_index,
            changed: !steps.done.is_empty(),
            catch_up_ms: steps.catch_up_ms,
            steps: steps.done,
        }
    }

    /// The leader of `office`'s membership client, for a request this host cannot serve.
    fn forward_client(
        &self,
        leader: Option<NodeInfo>,
        office: &OfficeCode,
        hops: u32,
    ) -> Result<MembershipClient<Channel>, Status> {
        let Some(leader) = leader else {
            return Err(Status::unavailable(format!(
                "office {office} has no leader now; try again"
            )));
        };
        if hops >= MEMBERSHIP_FORWARD_HOPS_MAX {
            return Err(Status::unavailable(format!(
                "office {office}: leader moved while forwarding (last seen on host {}); try again",
                leader.host
            )));
        }
        let channel = self
            .transport
            .channel(&leader.api_addr)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(MembershipClient::new(channel))
    }
}

fn forward_limit(catch_up: Duration) -> Duration {
    catch_up + Duration::from_millis(FORWARD_MARGIN_MS)
}

fn catch_up_limit(requested_ms: u64) -> Duration {
    let ms = match requested_ms {
        0 => CATCH_UP_TIMEOUT_MS_DEFAULT,
        ms => ms.min(CATCH_UP_TIMEOUT_MS_MAX),
    };
    Duration::from_millis(ms)
}

async fn forwarded<T>(
    limit: Duration,
    call: impl std::future::Future<Output = Result<Response<T>, Status>>,
) -> Result<Response<T>, Status> {
    tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
        Err(Status::deadline_exceeded(
            "the leader did not answer in time; `liandong status` shows the membership",
        ))
    })
}

#[tonic::async_trait]
impl Membership for MembershipService {
    async fn add_replica(
        &self,
        request: Request<AddReplicaRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        let replica = self.authorized(
            &request,
            &request.get_ref().office,
            request.get_ref().hops,
            "AddReplica",
        )?;
        let request = request.into_inner();
        let catch_up = catch_up_limit(request.catch_up_timeout_ms);
        if let Err(MembershipError::NotLeader { leader, .. }) = replica.ensure_leader() {
            let mut client = self.forward_client(leader, &replica.office, request.hops)?;
            let forward = AddReplicaRequest {
                hops: request.hops + 1,
                ..request
            };
            return forwarded(forward_limit(catch_up), client.add_replica(forward)).await;
        }
        let _busy = self.claim(&replica.office).map_err(membership_status)?;
        let mut steps = Steps::default();
        let outcome = async {
            self.finish_interrupted(&replica, &mut steps).await?;
            self.add(&replica, request.replica, catch_up, &mut steps)
                .await
        }
        .await;
        tracing::info!(office = %replica.office, replica = request.replica, steps = ?steps.done, ok = outcome.is_ok(), "replica add");
        outcome.map_err(membership_status)?;
        Ok(Response::new(self.reply(&replica, steps)))
    }

    async fn campaign(
        &self,
        request: Request<CampaignRequest>,
    ) -> Result<Response<CampaignReply>, Status> {
        let replica = self.authorized(&request, &request.get_ref().office, 0, "Campaign")?;
        let leads = |replica: &Replica| {
            let metrics = replica.raft.metrics().borrow().clone();
            (metrics.current_leader == Some(replica.id)).then_some(metrics.current_term)
        };
        if let Some(term) = leads(&replica) {
            return Ok(Response::new(CampaignReply {
                leader: replica.id,
                term,
            }));
        }
        replica.quiet.wake(crate::quiesce::Cause::Client);
        replica
            .raft
            .trigger()
            .elect()
            .await
            .map_err(|e| Status::unavailable(format!("starting an election: {e}")))?;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(CAMPAIGN_WAIT_MS);
        while tokio::time::Instant::now() < deadline {
            if let Some(term) = leads(&replica) {
                tracing::info!(office = %replica.office, replica = replica.id, term, "leadership moved here");
                return Ok(Response::new(CampaignReply {
                    leader: replica.id,
                    term,
                }));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let leader = replica.raft.metrics().borrow().current_leader;
        Err(Status::failed_precondition(format!(
            "replica {} of office {} did not win an election within {CAMPAIGN_WAIT_MS} ms              (leader now: {leader:?}); its log may be behind, or it cannot reach a majority",
            replica.id, replica.office
        )))
    }

    async fn remove_replica(
        &self,
        request: Request<RemoveReplicaRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        let replica = self.authorized(
            &request,
            &request.get_ref().office,
            request.get_ref().hops,
            "RemoveReplica",
        )?;
        let request = request.into_inner();
        if let Err(MembershipError::NotLeader { leader, .. }) = replica.ensure_leader() {
            let mut client = self.forward_client(leader, &replica.office, request.hops)?;
            let forward = RemoveReplicaRequest {
                hops: request.hops + 1,
                ..request
            };
            let limit = Duration::from_millis(FORWARD_MARGIN_MS);
            return forwarded(limit, client.remove_replica(forward)).await;
        }
        let _busy = self.claim(&replica.office).map_err(membership_status)?;
        let mut steps = Steps::default();
        let outcome = async {
            self.finish_interrupted(&replica, &mut steps).await?;
            self.remove(&replica, request.replica, &mut steps).await
        }
        .await;
        tracing::info!(office = %replica.office, replica = request.replica, steps = ?steps.done, ok = outcome.is_ok(), "replica remove");
        outcome.map_err(membership_status)?;
        Ok(Response::new(self.reply(&replica, steps)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::tests::{case_of, code, filing, Office};
    use liandong_domain::{Calendar, Case};

    fn store_of(office: &Office) -> StateMachineStore {
        StateMachineStore::new(
            office.db.clone(),
            code("530602"),
            Some(code("5306")),
            vec![7; 32],
            Arc::new(Calendar::china()),
        )
        .expect("the state machine opens")
    }

    /// Pages of a section, each asked after the last: every case once, in key order, each page
    /// within its limit, personal data left out with its digest beside (fails if a page
    /// repeats or skips the key it starts after, or says it ends too early).
    #[test]
    fn a_paged_dump_gives_every_case_once_without_personal_data() {
        let mut office = Office::new("530602", Some("5306"));
        let mut filed: Vec<String> = (0..7)
            .map(|_| case_of(office.apply(filing())).id.to_string())
            .collect();
        filed.sort();
        let machine = store_of(&office);
        let mut seen = Vec::new();
        let mut after = Vec::new();
        let mut pages = 0;
        loop {
            let page = dump_page(&machine, "cases", &after, 3).expect("a page");
            pages += 1;
            assert!(
                page.cases.len() <= 3,
                "{} cases in a page",
                page.cases.len()
            );
            for dumped in &page.cases {
                let case = Case::from_bytes(&dumped.case).expect("the case decodes");
                assert!(case.petitioner.is_none(), "personal data stays home");
                assert_eq!(dumped.petitioner_sha256.len(), 64);
                case.verify_chain().expect("the whole history came");
                seen.push(case.id.to_string());
            }
            if page.next.is_empty() {
                break;
            }
            after = page.next;
        }
        assert_eq!(seen, filed);
        assert_eq!(pages, 3, "7 cases in pages of 3");

        let whole = dump_page(&machine, "cases", &[], 0).expect("a page");
        assert_eq!(whole.cases.len(), 7);
        assert!(whole.next.is_empty(), "one page held them all");

        let head = dump_page(&machine, "head", &[], 0).expect("the head");
        let document: Value = serde_json::from_slice(&head.document).expect("JSON");
        assert_eq!(document["office"], "530602");
        assert_eq!(document["last_applied"].as_u64(), Some(head.last_applied));

        let unknown = dump_page(&machine, "orders", &[], 0).expect_err("refused");
        assert_eq!(unknown.code(), tonic::Code::InvalidArgument);
    }
}
