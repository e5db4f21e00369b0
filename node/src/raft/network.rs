//! The raft transport: tonic clients to the other replicas of an office. One host talks to
//! another over one HTTP/2 connection, shared by every office the two carry.
//!
//! Drills' link faults (`DIR/run/faults.json`, [`crate::federation::faults`]) are applied here,
//! by the sender, to each request before it leaves: a cut link fails at once (the peer is
//! unreachable), a delay sleeps first, a dropped request or reply waits out the call's deadline as
//! a lost packet would. Nothing is queued: openraft keeps at most one call in flight per
//! replication stream and times each out, so a faulty link costs one sleeping task per peer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use federation_proto::v1::raft_transport_client::RaftTransportClient;
use federation_proto::v1::{RaftReply, RaftRequest};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use crate::federation::faults::{Faults, LinkAction, LinkOutcome};
use crate::raft::types::{NodeId, NodeInfo, TypeConfig};

/// How long to wait for a TCP connection to another host.
pub const CONNECT_TIMEOUT_MS: u64 = 500;
/// The pause before retrying an unreachable replica (openraft's backoff).
pub const UNREACHABLE_BACKOFF_MS: u64 = 200;

/// Connections of one host to the others, by address, over mutual TLS when `tls` is set.
#[derive(Clone, Default)]
pub struct Transport {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    tls: Option<tonic::transport::ClientTlsConfig>,
    /// This host's drill faults (link faults on its outgoing raft requests); None: no faults.
    faults: Option<Faults>,
}

impl Transport {
    /// A transport whose connections present this host's certificate and trust only the
    /// federation CA.
    pub fn with_tls(tls: tonic::transport::ClientTlsConfig) -> Transport {
        Transport {
            channels: Arc::default(),
            tls: Some(tls),
            faults: None,
        }
    }

    /// The same transport, applying this host's link faults to the raft requests it sends.
    pub fn with_faults(mut self, faults: Faults) -> Transport {
        self.faults = Some(faults);
        self
    }

    /// What to do with one request about to go to host `to_host`.
    pub fn link_action(&self, to_host: &str) -> LinkAction {
        match &self.faults {
            Some(faults) => faults.link_action(to_host),
            None => LinkAction::Send,
        }
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
        let endpoint = match &self.tls {
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

impl ReplicaClient {
    /// Sends one request, through this host's link fault to the target host if a drill set one.
    async fn call<Req, Resp, E>(
        &self,
        rpc: Rpc,
        request: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let started = tokio::time::Instant::now();
        let outcome = match self.transport.link_action(&self.target_host) {
            LinkAction::Send => LinkOutcome::Send,
            LinkAction::Cut => return Err(link_fault_error("link cut by a drill")),
            LinkAction::DropRequest => LinkOutcome::DropRequest,
            LinkAction::DropReply => LinkOutcome::DropReply,
            LinkAction::Delay { ms, then } => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                then
            }
        };
        // A lost request or reply shows as silence until the call's deadline.
        let silence = || async move {
            tokio::time::sleep_until(started + option.hard_ttl()).await;
        };
        match outcome {
            LinkOutcome::Send => self.send(rpc, request, option).await,
            LinkOutcome::DropRequest => {
                silence().await;
                Err(link_fault_error("request dropped by a drill"))
            }
            LinkOutcome::DropReply => {
                let _ = self.send::<Req, Resp, E>(rpc, request, option).await;
                silence().await;
                Err(link_fault_error("reply dropped by a drill"))
            }
        }
    }

    async fn send<Req, Resp, E>(
        &self,
        rpc: Rpc,
        request: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let payload =
            serde_json::to_vec(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
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
        grpc.set_timeout(option.hard_ttl());
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
        if !error.is_empty() {
            let remote: RaftError<NodeId, E> = serde_json::from_slice(&error)
                .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
            return Err(RPCError::RemoteError(openraft::error::RemoteError::new(
                self.target,
                remote,
            )));
        }
        serde_json::from_slice(&payload).map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }
}

impl RaftNetwork<TypeConfig> for ReplicaClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.call(Rpc::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(Rpc::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.call(Rpc::Vote, &rpc, &option).await
    }

    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(
            UNREACHABLE_BACKOFF_MS,
        )))
    }
}
