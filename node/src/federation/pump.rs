//! The outbox pump: on every office this host leads, sends each link's pending messages, in
//! sequence order and in bounded batches, to the target office's leader (following leader
//! hints), then commits the acknowledgement. A link that fails backs off exponentially, capped,
//! with jitter; messages wait in the outbox meanwhile, never dropped.
//!
//! Drills' faults apply here, at the sender: a cut office link (both ways or one way) is not
//! pumped at all, and a host link fault (cut, drop, delay) applies to each Deliver call sent to a
//! host of the target office. A dropped call waits out the call's deadline, as a lost packet
//! would; a dropped reply means the receiver committed the batch but the sender does not know, so
//! it sends the batch again and the receiver's watermark makes that a no-op (exactly once).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use federation_proto::v1::federation_client::FederationClient;
use federation_proto::v1::{DeliverReply, DeliverRequest};
use liandong_domain::message::Envelope;
use liandong_domain::OfficeCode;
use rand::Rng;
use tokio::sync::watch;
use tokio::time::Instant;

use super::faults::{Faults, LinkAction, LinkOutcome};
use super::state::{self, LinkOut, Refusal, DELIVER_BATCH_MAX};
use crate::manifest::Manifest;
use crate::raft::network::Transport;
use crate::raft::types::Operation;
use crate::replica::{Replica, Replicas};
use crate::store::codec::decode;

/// First pause after a failed delivery on a link.
pub const BACKOFF_BASE_MS: u64 = 50;
/// Longest pause between attempts on a link that keeps failing.
pub const BACKOFF_CAP_MS: u64 = 2_000;
/// How long one Deliver call may take.
pub const DELIVER_TIMEOUT_MS: u64 = 3_000;
/// How often an idle pump looks for new messages.
pub const IDLE_POLL_MS: u64 = 10;
/// Links one host pumps at once.
pub const LINKS_IN_FLIGHT_MAX: usize = 32;
/// Leader hints followed within one delivery attempt.
pub const HINTS_FOLLOWED_MAX: usize = 3;

/// Where each office's hosts answer, and which of them led last time.
pub struct Directory {
    hosts: HashMap<String, Vec<String>>,
    /// The host name behind each API address (link faults are named by host).
    host_names: HashMap<String, String>,
    leaders: Mutex<HashMap<String, String>>,
}

impl Directory {
    pub fn new(manifest: &Manifest) -> Directory {
        let hosts = manifest
            .offices
            .iter()
            .map(|office| {
                let addrs = office
                    .members
                    .iter()
                    .filter_map(|member| {
                        manifest
                            .host(&member.host)
                            .map(|host| host.api_addr.clone())
                    })
                    .collect();
                (office.code.clone(), addrs)
            })
            .collect();
        let host_names = manifest
            .hosts
            .iter()
            .map(|host| (host.api_addr.clone(), host.name.clone()))
            .collect();
        Directory {
            hosts,
            host_names,
            leaders: Mutex::new(HashMap::new()),
        }
    }

    /// The name of the host answering at `addr` (a leader hint may name an address the
    /// manifest does not know: no host link fault applies to it).
    fn host_name(&self, addr: &str) -> &str {
        self.host_names.get(addr).map(String::as_str).unwrap_or("")
    }

    pub fn knows(&self, office: &str) -> bool {
        self.hosts.contains_key(office)
    }

    /// The office's hosts, the last known leader first.
    fn candidates(&self, office: &str) -> Vec<String> {
        let mut addrs = self.hosts.get(office).cloned().unwrap_or_default();
        let leaders = self.leaders.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(leader) = leaders.get(office) {
            addrs.retain(|addr| addr != leader);
            addrs.insert(0, leader.clone());
        }
        addrs
    }

    fn remember_leader(&self, office: &str, addr: &str) {
        let mut leaders = self.leaders.lock().unwrap_or_else(|p| p.into_inner());
        leaders.insert(office.to_string(), addr.to_string());
    }
}

#[derive(Default)]
struct Backoff {
    failures: u32,
    next_try: Option<Instant>,
}

impl Backoff {
    fn ready(&self, now: Instant) -> bool {
        self.next_try.is_none_or(|at| now >= at)
    }

    fn failed(&mut self) {
        self.failures = self.failures.saturating_add(1);
        let exponent = self.failures.min(16);
        let pause = BACKOFF_BASE_MS
            .saturating_mul(1 << exponent)
            .min(BACKOFF_CAP_MS);
        let jitter = rand::thread_rng().gen_range(0..=pause / 2);
        self.next_try = Some(Instant::now() + Duration::from_millis(pause / 2 + jitter));
    }

    fn succeeded(&mut self) {
        *self = Backoff::default();
    }
}

pub struct Pump {
    pub replicas: Replicas,
    pub directory: Arc<Directory>,
    pub transport: Transport,
    pub faults: Faults,
}

struct Work {
    replica: Replica,
    to: OfficeCode,
    link: LinkOut,
}

impl Pump {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut backoffs: HashMap<(OfficeCode, OfficeCode), Backoff> = HashMap::new();
        loop {
            let now = Instant::now();
            let work: Vec<Work> = self
                .pending_links()
                .into_iter()
                .filter(|w| {
                    backoffs
                        .get(&(w.replica.office.clone(), w.to.clone()))
                        .is_none_or(|b| b.ready(now))
                })
                .filter(|w| !self.faults.cut(w.replica.office.as_str(), w.to.as_str()))
                .take(LINKS_IN_FLIGHT_MAX)
                .collect();
            if work.is_empty() {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(IDLE_POLL_MS)) => continue,
                    _ = stop.wait_for(|stopped| *stopped) => return,
                }
            }
            let results = futures::future::join_all(work.iter().map(|w| self.pump_link(w))).await;
            for (work, result) in work.iter().zip(results) {
                let backoff = backoffs
                    .entry((work.replica.office.clone(), work.to.clone()))
                    .or_default();
                match result {
                    Ok(()) => backoff.succeeded(),
                    Err(reason) => {
                        tracing::debug!(from = %work.replica.office, to = %work.to, %reason, "delivery failed");
                        backoff.failed();
                    }
                }
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    /// Links with unacknowledged messages, on offices this host leads.
    fn pending_links(&self) -> Vec<Work> {
        let mut work = Vec::new();
        for replica in self.replicas.iter() {
            if !replica.raft.metrics().borrow().state.is_leader() {
                continue;
            }
            let Ok(links) = replica.state_machine.scan_prefix(state::LINK, 100_000) else {
                continue;
            };
            for (key, value) in links {
                let Ok(link) = decode::<LinkOut>(&value) else {
                    continue;
                };
                let Some(to) = std::str::from_utf8(&key[state::LINK.len()..])
                    .ok()
                    .and_then(|c| c.parse().ok())
                else {
                    continue;
                };
                if link.pending() > 0 {
                    work.push(Work {
                        replica: replica.clone(),
                        to,
                        link,
                    });
                }
            }
        }
        work
    }

    async fn pump_link(&self, work: &Work) -> Result<(), String> {
        let batch = work
            .replica
            .state_machine
            .scan_prefix(&state::outbox_link(&work.to), DELIVER_BATCH_MAX)
            .map_err(|e| e.to_string())?;
        let envelopes: Vec<Envelope> = batch
            .iter()
            .filter_map(|(_, value)| decode::<Envelope>(value).ok())
            .collect();
        let Some(first) = envelopes.first() else {
            return Ok(());
        };
        debug_assert!(
            first.seq > work.link.acked_through,
            "acknowledged messages are dropped"
        );
        let request = DeliverRequest {
            from: work.replica.office.to_string(),
            to: work.to.to_string(),
            envelopes: envelopes.iter().map(Into::into).collect(),
        };
        let reply = self.deliver(&work.to, request).await?;
        if reply.applied_through <= work.link.acked_through {
            return Err(format!(
                "receiver applied through {} only",
                reply.applied_through
            ));
        }
        let refused = reply
            .refused
            .into_iter()
            .map(|r| Refusal {
                seq: r.seq,
                code: r.code,
                reason: r.reason,
            })
            .collect();
        let ack = Operation::Acked {
            to: work.to.clone(),
            through: reply.applied_through,
            refused,
        };
        work.replica
            .write(ack)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Sends one batch to the target office's leader: the last known leader first, then the
    /// office's other hosts, following leader hints.
    async fn deliver(
        &self,
        to: &OfficeCode,
        request: DeliverRequest,
    ) -> Result<DeliverReply, String> {
        let mut candidates = self.directory.candidates(to.as_str());
        let mut last_error = format!("office {to} has no hosts");
        let mut hints = 0;
        while let Some(addr) = (!candidates.is_empty()).then(|| candidates.remove(0)) {
            let channel = self.transport.channel(&addr).map_err(|e| e.to_string())?;
            let mut client = FederationClient::new(channel)
                .max_decoding_message_size(federation_proto::MESSAGE_BYTES_MAX)
                .max_encoding_message_size(federation_proto::MESSAGE_BYTES_MAX);
            let mut call = tonic::Request::new(request.clone());
            call.set_timeout(Duration::from_millis(DELIVER_TIMEOUT_MS));
            let started = Instant::now();
            let outcome = match self.faults.link_action(self.directory.host_name(&addr)) {
                LinkAction::Send => LinkOutcome::Send,
                LinkAction::Cut => {
                    last_error = format!("{addr}: link cut by a drill");
                    continue;
                }
                LinkAction::DropRequest => LinkOutcome::DropRequest,
                LinkAction::DropReply => LinkOutcome::DropReply,
                LinkAction::Delay { ms, then } => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    then
                }
            };
            let deadline = started + Duration::from_millis(DELIVER_TIMEOUT_MS);
            let result = match outcome {
                LinkOutcome::Send => client.deliver(call).await,
                LinkOutcome::DropRequest => {
                    tokio::time::sleep_until(deadline).await;
                    Err(tonic::Status::deadline_exceeded(
                        "request dropped by a drill",
                    ))
                }
                LinkOutcome::DropReply => {
                    let _ = client.deliver(call).await;
                    tokio::time::sleep_until(deadline).await;
                    Err(tonic::Status::deadline_exceeded("reply dropped by a drill"))
                }
            };
            match result {
                Ok(reply) => {
                    let reply = reply.into_inner();
                    match reply.leader_hint.clone() {
                        Some(hint) if hint != addr && hints < HINTS_FOLLOWED_MAX => {
                            hints += 1;
                            candidates.retain(|a| *a != hint);
                            candidates.insert(0, hint);
                        }
                        Some(_) => last_error = format!("{addr} is not the leader of {to}"),
                        None => {
                            self.directory.remember_leader(to.as_str(), &addr);
                            return Ok(reply);
                        }
                    }
                }
                Err(status) => last_error = format!("{addr}: {}", status.message()),
            }
        }
        Err(last_error)
    }
}
