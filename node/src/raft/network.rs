//! The raft transport: tonic clients to the other replicas of an office. One host talks to
//! another over one HTTP/2 connection, shared by every office the two carry.
//!
//! Drills' link faults (`DIR/run/faults.json`, decided by `federation::faults` behind the
//! [`LinkFaults`] trait) are applied here, by the sender, to each request before it leaves
//! ([`through_link_fault`], which the federation's deliveries use too): a cut link fails at once
//! (the peer is unreachable), a delay sleeps first, a dropped request or reply waits out the
//! call's deadline as a lost packet would. Nothing is queued: openraft keeps at most one call in
//! flight per replication stream and times each out, so a faulty link costs one sleeping task per
//! peer.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use federation_proto::v1::raft_transport_client::RaftTransportClient;
use federation_proto::v1::{RaftReply, RaftRequest};
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use crate::raft::types::{NodeId, NodeInfo, TypeConfig};
use crate::store::codec;

/// How long to wait for a TCP connection to another host.
pub const CONNECT_TIMEOUT_MS: u64 = 500;
/// The largest AppendEntries payload a replica sends: well under the transport's message limit.
/// A batch over it is refused before it is sent (openraft's `PayloadTooLarge` with an entries
/// hint), so openraft sends fewer entries; a single entry over it goes alone (an entry is
/// bounded by the federation's batch budget, far below the transport limit).
pub const APPEND_ENTRIES_BYTES_MAX: usize = 4 * 1024 * 1024;
const _: () = assert!(APPEND_ENTRIES_BYTES_MAX * 4 <= federation_proto::MESSAGE_BYTES_MAX);
/// The pause before retrying an unreachable replica (openraft's backoff).
pub const UNREACHABLE_BACKOFF_MS: u64 = 200;

/// What a host does to one request it is about to send over a faulty link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkAction {
    /// Send it now.
    Send,
    /// Fail it at once: the link is cut.
    Cut,
    /// Wait, then go on with `then` (never `Delay` again).
    Delay { ms: u64, then: LinkOutcome },
    /// Lose it before the receiver sees it.
    DropRequest,
    /// Send it, then lose the reply.
    DropReply,
}

/// What happens after a delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkOutcome {
    Send,
    DropRequest,
    DropReply,
}

/// Decides what happens to each request this host sends to another host (drills' link faults;
/// the federation's fault file implements it).
pub trait LinkFaults: Send + Sync {
    fn link_action(&self, to_host: &str) -> LinkAction;
}

/// How a drill's link fault lost a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// The link is cut: failed at once.
    Cut,
    /// Lost before the receiver saw it: silence until the deadline.
    Request,
    /// The receiver handled it, the reply was lost: silence until the deadline.
    Reply,
}

impl Lost {
    pub fn describe(self) -> &'static str {
        match self {
            Lost::Cut => "link cut by a drill",
            Lost::Request => "request dropped by a drill",
            Lost::Reply => "reply dropped by a drill",
        }
    }
}

/// Makes the call `send` through the link fault `action`, as a faulty network would: a delay
/// first, a cut at once, a lost request or reply as silence until `deadline`.
pub async fn through_link_fault<T>(
    action: LinkAction,
    deadline: tokio::time::Instant,
    send: impl Future<Output = T>,
) -> Result<T, Lost> {
    let outcome = match action {
        LinkAction::Send => LinkOutcome::Send,
        LinkAction::Cut => return Err(Lost::Cut),
        LinkAction::DropRequest => LinkOutcome::DropRequest,
        LinkAction::DropReply => LinkOutcome::DropReply,
        LinkAction::Delay { ms, then } => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            then
        }
    };
    match outcome {
        LinkOutcome::Send => Ok(send.await),
        LinkOutcome::DropRequest => {
            tokio::time::sleep_until(deadline).await;
            Err(Lost::Request)
        }
        LinkOutcome::DropReply => {
            let _ = send.await;
            tokio::time::sleep_until(deadline).await;
            Err(Lost::Reply)
        }
    }
}

/// Connections of one host to the others, by address, over mutual TLS when `tls` is set.
#[derive(Clone, Default)]
pub struct Transport {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    /// Shared by every clone: a reloaded certificate reaches them all.
    tls: Arc<Mutex<Option<tonic::transport::ClientTlsConfig>>>,
    /// This host's drill faults (link faults on its outgoing raft requests); None: no faults.
    faults: Option<Arc<dyn LinkFaults>>,
}

impl Transport {
    /// A transport whose connections present this host's certificate and trust only the
    /// federation CA.
    pub fn with_tls(tls: tonic::transport::ClientTlsConfig) -> Transport {
        Transport {
            channels: Arc::default(),
            tls: Arc::new(Mutex::new(Some(tls))),
            faults: None,
        }
    }

    /// Presents a new certificate from now on: every connection is dialled again with `tls`
    /// (calls under way on the old connections finish on them).
    pub fn reload_tls(&self, tls: tonic::transport::ClientTlsConfig) {
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *self
            .tls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(tls);
        channels.clear();
    }

    /// The same transport, applying this host's link faults to the raft requests it sends.
    pub fn with_faults(mut self, faults: impl LinkFaults + 'static) -> Transport {
        self.faults = Some(Arc::new(faults));
        self
    }

    /// What to do with one request about to go to host `to_host`.
    pub fn link_action(&self, to_host: &str) -> LinkAction {
        match &self.faults {
            Some(faults) => faults.link_action(to_host),
            None => LinkAction::Send,
        }
    }

    /// Drops the channel to `addr`: the next caller dials a fresh connection.
    pub fn forget(&self, addr: &str) {
        self.channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(addr);
    }

    /// A lazily connecting channel to `addr`; the same one for every caller.
    pub fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let tls = self
            .tls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let endpoint = match &tls {
            Some(tls) => {
                Endpoint::from_shared(crate::tls::https_uri(addr))?.tls_config(tls.clone())?
            }
            None => Endpoint::from_shared(format!("http://{addr}"))?,
        };
        let channel = endpoint
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .connect_lazy();
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }
}

/// The network factory of one office's Raft.
#[derive(Clone)]
pub struct OfficeNetwork {
    pub office: String,
    pub transport: Transport,
}

impl RaftNetworkFactory<TypeConfig> for OfficeNetwork {
    type Network = ReplicaClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> ReplicaClient {
        ReplicaClient {
            office: self.office.clone(),
            target,
            target_host: node.host.clone(),
            addr: node.raft_addr.clone(),
            transport: self.transport.clone(),
        }
    }
}

pub struct ReplicaClient {
    office: String,
    target: NodeId,
    /// The host carrying the target replica (link faults are named by host).
    target_host: String,
    addr: String,
    transport: Transport,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Rpc {
    Append,
    Vote,
    Snapshot,
}

/// The error of a request a drill's link fault lost: the caller sees what a lost packet shows,
/// a peer that did not answer.
fn link_fault_error<E: std::error::Error>(
    what: &str,
) -> RPCError<NodeId, NodeInfo, RaftError<NodeId, E>> {
    let error = std::io::Error::new(std::io::ErrorKind::TimedOut, what.to_string());
    RPCError::Unreachable(Unreachable::new(&error))
}

/// Encodes a raft payload (a request, a response, an error) in the versioned codec.
pub fn encode_payload<T: Serialize>(value: &T) -> Vec<u8> {
    codec::encode(value)
}

/// Decodes a raft payload: the versioned codec, or the bare JSON builds before it sent.
pub fn decode_payload<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    if bytes.first() == Some(&b'{') {
        return serde_json::from_slice(bytes).map_err(|e| e.to_string());
    }
    codec::decode(bytes).map_err(|e| e.to_string())
}

/// How many of `entries` entries fit the AppendEntries budget, judging by `payload_bytes` for
/// all of them (at least one); None when all fit.
pub fn entries_fitting(entries: usize, payload_bytes: usize) -> Option<u64> {
    if payload_bytes <= APPEND_ENTRIES_BYTES_MAX || entries <= 1 {
        return None;
    }
    let fitting = entries.saturating_mul(APPEND_ENTRIES_BYTES_MAX) / payload_bytes;
    Some(fitting.clamp(1, entries - 1) as u64)
}

impl ReplicaClient {
    /// Sends one request, through this host's link fault to the target host if a drill set one.
    async fn call<Resp, E>(
        &self,
        rpc: Rpc,
        payload: Vec<u8>,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let deadline = tokio::time::Instant::now() + option.hard_ttl();
        let action = self.transport.link_action(&self.target_host);
        let send = async {
            if rpc != Rpc::Vote {
                return self.send(rpc, payload, option.hard_ttl()).await;
            }
            // A vote goes once more on a fresh connection when its connection failed: the
            // peer's host restarted since this one last spoke to it, and the first request on
            // the old connection meets a broken pipe or a reset. openraft sends each vote of an
            // election once, so without this the election waits for the next timeout (the fast
            // election of `failover` would lose to it). A vote is safe to repeat: the voter
            // grants the same candidate the same term again.
            let first = self.send(rpc, payload.clone(), option.hard_ttl()).await;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match first {
                Err(RPCError::Unreachable(_) | RPCError::Network(_)) if !left.is_zero() => {
                    tracing::debug!(office = %self.office, target = self.target, addr = %self.addr, "vote failed on its connection; sending it once more on a fresh one");
                    self.transport.forget(&self.addr);
                    self.send(rpc, payload, left).await
                }
                other => other,
            }
        };
        match through_link_fault(action, deadline, send).await {
            Ok(result) => result,
            Err(lost) => Err(link_fault_error(lost.describe())),
        }
    }

    async fn send<Resp, E>(
        &self,
        rpc: Rpc,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> RpcResult<Resp, E>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let channel = self
            .transport
            .channel(&self.addr)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let mut client = RaftTransportClient::new(channel)
            .max_decoding_message_size(federation_proto::MESSAGE_BYTES_MAX)
            .max_encoding_message_size(federation_proto::MESSAGE_BYTES_MAX);
        let mut grpc = tonic::Request::new(RaftRequest {
            office: self.office.clone(),
            target: self.target,
            payload,
        });
        grpc.set_timeout(timeout);
        let reply = match rpc {
            Rpc::Append => client.append_entries(grpc).await,
            Rpc::Vote => client.vote(grpc).await,
            Rpc::Snapshot => client.install_snapshot(grpc).await,
        };
        let RaftReply { payload, error } = match reply {
            Ok(reply) => reply.into_inner(),
            Err(status) if status.code() == tonic::Code::Unavailable => {
                return Err(RPCError::Unreachable(Unreachable::new(&status)))
            }
            Err(status) => return Err(RPCError::Network(NetworkError::new(&status))),
        };
        let undecodable =
            |e: String| RPCError::Network(NetworkError::new(&std::io::Error::other(e)));
        if !error.is_empty() {
            let remote: RaftError<NodeId, E> = decode_payload(&error).map_err(undecodable)?;
            return Err(RPCError::RemoteError(openraft::error::RemoteError::new(
                self.target,
                remote,
            )));
        }
        decode_payload(&payload).map_err(undecodable)
    }
}

impl RaftNetwork<TypeConfig> for ReplicaClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        let payload = encode_payload(&rpc);
        if let Some(fitting) = entries_fitting(rpc.entries.len(), payload.len()) {
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(fitting),
            ));
        }
        self.call(Rpc::Append, payload, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        // openraft cuts the snapshot into chunks of `snapshot_max_chunk_size`
        // (`machine::snapshot::SNAPSHOT_CHUNK_BYTES_MAX`).
        self.call(Rpc::Snapshot, encode_payload(&rpc), &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.call(Rpc::Vote, encode_payload(&rpc), &option).await
    }

    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(
            UNREACHABLE_BACKOFF_MS,
        )))
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload, LogId, Vote};

    use super::*;
    use crate::raft::types::{Entry, Operation, Request};

    use std::sync::atomic::{AtomicBool, Ordering};

    use federation_proto::v1::raft_transport_server::{RaftTransport, RaftTransportServer};
    use federation_proto::v1::{ProposeReply, ProposeRequest};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tonic::{Response, Status};

    /// A replica that grants every vote and counts them.
    #[derive(Default)]
    struct Voter {
        votes: Arc<std::sync::atomic::AtomicUsize>,
    }

    #[tonic::async_trait]
    impl RaftTransport for Voter {
        async fn append_entries(
            &self,
            _: tonic::Request<RaftRequest>,
        ) -> Result<Response<RaftReply>, Status> {
            Err(Status::unimplemented("votes only"))
        }

        async fn vote(
            &self,
            request: tonic::Request<RaftRequest>,
        ) -> Result<Response<RaftReply>, Status> {
            let asked: VoteRequest<NodeId> =
                decode_payload(&request.into_inner().payload).map_err(Status::invalid_argument)?;
            self.votes.fetch_add(1, Ordering::SeqCst);
            let granted = VoteResponse {
                vote: asked.vote,
                vote_granted: true,
                last_log_id: None,
            };
            Ok(Response::new(RaftReply {
                payload: encode_payload(&granted),
                error: Vec::new(),
            }))
        }

        async fn install_snapshot(
            &self,
            _: tonic::Request<RaftRequest>,
        ) -> Result<Response<RaftReply>, Status> {
            Err(Status::unimplemented("votes only"))
        }

        async fn propose(
            &self,
            _: tonic::Request<ProposeRequest>,
        ) -> Result<Response<ProposeReply>, Status> {
            Err(Status::unimplemented("votes only"))
        }
    }

    /// A TCP proxy whose connections open before [`Severing::sever`] close at the next bytes
    /// the client sends: what a client meets on its old connection to a host that
    /// was killed and started again.
    #[derive(Default, Clone)]
    struct Severing {
        doomed: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
    }

    impl Severing {
        async fn start(self, upstream: std::net::SocketAddr) -> std::net::SocketAddr {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let doomed = Arc::new(AtomicBool::new(false));
                    self.doomed.lock().unwrap().push(doomed.clone());
                    tokio::spawn(relay(client, upstream, doomed));
                }
            });
            addr
        }

        fn sever(&self) {
            for doomed in self.doomed.lock().unwrap().iter() {
                doomed.store(true, Ordering::SeqCst);
            }
        }
    }

    async fn relay(client: TcpStream, upstream: std::net::SocketAddr, doomed: Arc<AtomicBool>) {
        let Ok(server) = TcpStream::connect(upstream).await else {
            return;
        };
        let (mut from_client, mut to_client) = client.into_split();
        let (mut from_server, mut to_server) = server.into_split();
        let back = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
        });
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from_client.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if doomed.load(Ordering::SeqCst) {
                // Both directions closed, the request unanswered.
                back.abort();
                return;
            }
            if to_server.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    }

    /// A vote whose connection died since the last request (the voter's host restarted) goes
    /// once more on a fresh connection and is granted (fails if the transport gives up after
    /// the broken connection: the candidate would wait for its next election timeout).
    #[tokio::test]
    async fn a_vote_on_a_dead_connection_goes_again_on_a_fresh_one() {
        let voter = Voter::default();
        let votes = voter.votes.clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(RaftTransportServer::new(voter))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let proxy = Severing::default();
        let addr = proxy.clone().start(upstream).await;
        let mut client = ReplicaClient {
            office: "510104".into(),
            target: 2,
            target_host: "host-2".into(),
            addr: addr.to_string(),
            transport: Transport::default(),
        };
        let ask = |term| VoteRequest {
            vote: Vote::new(term, 1),
            last_log_id: None,
        };
        let option = RPCOption::new(Duration::from_secs(5));
        let first = client.vote(ask(1), option.clone()).await.unwrap();
        assert!(first.vote_granted);
        proxy.sever();
        let second = client.vote(ask(2), option).await;
        assert!(
            matches!(&second, Ok(reply) if reply.vote_granted && reply.vote == Vote::new(2, 1)),
            "{second:?}"
        );
        assert_eq!(votes.load(Ordering::SeqCst), 2);
    }

    /// A batch over the AppendEntries budget is cut to what fits, never below one entry; one
    /// entry alone always goes (fails if an oversized batch would be sent whole).
    #[test]
    fn an_append_over_its_budget_asks_for_fewer_entries() {
        assert_eq!(entries_fitting(100, APPEND_ENTRIES_BYTES_MAX), None);
        assert_eq!(entries_fitting(100, APPEND_ENTRIES_BYTES_MAX * 4), Some(25));
        assert_eq!(entries_fitting(2, APPEND_ENTRIES_BYTES_MAX * 100), Some(1));
        assert_eq!(entries_fitting(1, APPEND_ENTRIES_BYTES_MAX * 100), None);
        assert_eq!(entries_fitting(0, 0), None);
    }

    /// Raft payloads travel in the binary codec, and the bare JSON of earlier builds still
    /// decodes (fails if the transport drops back to JSON or refuses the older form).
    #[test]
    fn raft_payloads_are_binary_and_read_the_json_before_them() {
        let entries: Vec<Entry> = (1..=3)
            .map(|index| Entry {
                log_id: LogId::new(CommittedLeaderId::new(2, 1), index),
                payload: EntryPayload::Normal(Request {
                    at: 7,
                    op: Operation::Tick,
                }),
            })
            .collect();
        let request = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(2, 1),
            prev_log_id: None,
            entries,
            leader_commit: None,
        };
        let binary = encode_payload(&request);
        assert_eq!(binary[0], codec::FORMAT_BINARY);
        let json = serde_json::to_vec(&request).unwrap();
        assert!(
            binary.len() < json.len() / 2,
            "{} vs {}",
            binary.len(),
            json.len()
        );
        for bytes in [binary, json] {
            let back: AppendEntriesRequest<TypeConfig> = decode_payload(&bytes).unwrap();
            assert_eq!(back.entries, request.entries);
            assert_eq!(back.vote, request.vote);
        }
        assert!(decode_payload::<Vote<NodeId>>(&[9, 1, 2]).is_err());
    }
}
