//! The outbox pump: one worker per link, on every office this host leads. Each sends its link's
//! pending messages in sequence order, in bounded batches, to the target office's leader
//! (following leader hints), then commits the acknowledgement: the decisions are the pure link
//! protocol's ([`super::link`]), this file does the IO. An unreachable office holds up only its
//! own links. A supervisor worker starts a link's worker when the link has messages and none
//! runs; a link worker ends when its office is no longer led here or its link stayed empty for
//! [`LINK_IDLE_EXIT_MS`].
//!
//! Drills' faults apply here, at the sender: a cut office link (both ways or one way) is not
//! pumped at all, and a host link fault (cut, drop, delay) applies to each Deliver call sent to a
//! host of the target office. A dropped call waits out the call's deadline, as a lost packet
//! would; a dropped reply means the receiver committed the batch but the sender does not know, so
//! it sends the batch again and the receiver's watermark makes that a no-op (exactly once).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use federation_proto::v1::federation_client::FederationClient;
use federation_proto::v1::{DeliverReply, DeliverRequest};
use liandong_domain::OfficeCode;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::directory::Directory;
use super::faults::Faults;
use super::link::{
    self, select_batch, Batch, Decision, Delivered, LinkSender, Ready, DELIVER_BATCH_ITEMS_MAX,
    DELIVER_TIMEOUT_MS,
};
use crate::machine::LinkOut;
use crate::raft::network::{through_link_fault, Transport};
use crate::raft::types::{Operation, Refusal};
use crate::replica::{Replica, Replicas};
use crate::worker::{self, Step, Worker, Workers};

/// The supervisor looks for links that need a worker when an office's outbox or Raft changed
/// (it reads an office's links only when its outbox changed or it became the leader, and every
/// [`SUPERVISE_RESCAN_MS`]), at most once per this: an idle host's supervisor sleeps.
pub const SUPERVISE_POLL_MS: u64 = 10;
/// How often the supervisor reads every led office's links whatever changed: a link worker that
/// ended just as a message arrived is replaced within this.
pub const SUPERVISE_RESCAN_MS: u64 = 1_000;
/// How long a link worker waits for new messages on an empty link before it ends.
pub const LINK_IDLE_EXIT_MS: u64 = 30_000;
/// How often a link worker looks at its link when no outbox change woke it.
pub const LINK_POLL_MS: u64 = 100;
/// How often a link worker cut by a drill looks whether the cut has healed (reading the
/// faults in memory only).
pub const LINK_CUT_POLL_MS: u64 = 10;
/// A link that failed this many times in a row (about a minute at the backoff's cap) is
/// reported in the host's log, and again every as many failures.
pub const LINK_FAILURES_WARN_EVERY: u32 = 30;
/// Leader hints followed within one delivery attempt.
pub const HINTS_FOLLOWED_MAX: usize = 3;

/// What every link worker of the host shares.
#[derive(Clone)]
pub struct PumpContext {
    pub directory: Arc<Directory>,
    pub transport: Transport,
    pub faults: Faults,
    /// The zero of the link protocol's clock (milliseconds since).
    pub epoch: Instant,
    /// Failed deliveries per link, for the metrics page.
    pub deliveries: Arc<crate::metrics::Deliveries>,
}

impl PumpContext {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// What the supervisor watches of one office.
struct Seen {
    outbox: watch::Receiver<u64>,
    metrics: watch::Receiver<openraft::RaftMetrics<u64, crate::raft::types::NodeInfo>>,
    leading: bool,
}

/// Starts and watches the link workers.
pub struct Pump {
    pub replicas: Replicas,
    pub context: PumpContext,
    pub workers: Workers,
    pub stop: watch::Receiver<bool>,
    /// Each office's outbox and Raft changes, and whether it was the leader at the last look.
    seen: HashMap<OfficeCode, Seen>,
    links: HashMap<(OfficeCode, OfficeCode), JoinHandle<()>>,
    /// When every led office's links were last read (the protocol clock).
    rescanned_ms: u64,
}

impl Pump {
    pub fn new(
        replicas: Replicas,
        context: PumpContext,
        workers: Workers,
        stop: watch::Receiver<bool>,
    ) -> Pump {
        Pump {
            replicas,
            context,
            workers,
            stop,
            seen: HashMap::new(),
            links: HashMap::new(),
            rescanned_ms: 0,
        }
    }

    /// Starts a worker for each link of `replica` with messages waiting and no worker. A worker
    /// that panicked (in `statuses`) is not restarted: it stays reported failed.
    fn start_links(
        &mut self,
        replica: &Replica,
        statuses: &BTreeMap<String, worker::Status>,
    ) -> Result<(), String> {
        let links = replica
            .state_machine
            .links_out()
            .map_err(|e| e.to_string())?;
        for (to, link) in links {
            let key = (replica.office.clone(), to.clone());
            let running = self.links.get(&key).is_some_and(|task| !task.is_finished());
            let failed = statuses
                .get(&link_name(&replica.office, &to))
                .is_some_and(|status| matches!(status.state, worker::State::Failed(_)));
            if link.pending() == 0 || running || failed {
                continue;
            }
            let worker = LinkWorker::new(replica.clone(), to, self.context.clone());
            let task = self.workers.spawn(worker, self.stop.clone());
            self.links.insert(key, task);
        }
        Ok(())
    }
}

fn link_name(from: &OfficeCode, to: &OfficeCode) -> String {
    format!("pump {from}->{to}")
}

impl Worker for Pump {
    fn name(&self) -> String {
        "pump".into()
    }

    async fn work(&mut self) -> Result<Step, String> {
        self.links.retain(|_, task| !task.is_finished());
        let now_ms = self.context.now_ms();
        let rescan = now_ms.saturating_sub(self.rescanned_ms) >= SUPERVISE_RESCAN_MS;
        if rescan {
            self.rescanned_ms = now_ms;
        }
        let replicas = self.replicas.clone();
        let statuses = self.workers.statuses();
        let mut errors = Vec::new();
        for replica in replicas.iter() {
            let seen = self
                .seen
                .entry(replica.office.clone())
                .or_insert_with(|| Seen {
                    outbox: replica.state_machine.outbox_changes(),
                    metrics: replica.raft.metrics(),
                    leading: false,
                });
            let leading = seen.metrics.borrow_and_update().state.is_leader();
            let changed = seen.outbox.has_changed().unwrap_or(false);
            let became_leader = leading && !seen.leading;
            seen.leading = leading;
            if !leading || !(changed || became_leader || rescan) {
                continue;
            }
            seen.outbox.mark_unchanged();
            if let Err(error) = self.start_links(replica, &statuses) {
                errors.push(format!("{}: {error}", replica.office));
            }
        }
        if errors.is_empty() {
            Ok(Step::Idle)
        } else {
            Err(errors.join("; "))
        }
    }

    /// Until an office's outbox or Raft changes (at most one look per [`SUPERVISE_POLL_MS`]) or
    /// the next rescan is due.
    async fn wait_for_work(&mut self) {
        tokio::time::sleep(Duration::from_millis(SUPERVISE_POLL_MS)).await;
        let rescan_in = SUPERVISE_RESCAN_MS
            .saturating_sub(self.context.now_ms().saturating_sub(self.rescanned_ms));
        let mut changes: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>> =
            Vec::with_capacity(2 * self.seen.len() + 1);
        changes.push(Box::pin(tokio::time::sleep(Duration::from_millis(
            rescan_in,
        ))));
        for seen in self.seen.values_mut() {
            changes.push(Box::pin(async {
                // A closed channel (the office's Raft stopped) must not wake the loop for ever.
                if seen.outbox.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }));
            changes.push(Box::pin(async {
                if seen.metrics.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }));
        }
        futures::future::select_all(changes).await;
    }
}

/// What a link worker waits for.
enum Wait {
    /// A new message on the link (or a short poll).
    Messages,
    /// The end of a backoff.
    Until(u64),
    /// A drill's cut to heal.
    Cut,
}

/// Pumps one link of an office this host leads.
pub struct LinkWorker {
    replica: Replica,
    context: PumpContext,
    sender: LinkSender,
    random: StdRng,
    changes: watch::Receiver<u64>,
    wait: Wait,
    /// Since when the link has been empty (the protocol clock).
    empty_since_ms: Option<u64>,
}

impl LinkWorker {
    pub fn new(replica: Replica, to: OfficeCode, context: PumpContext) -> LinkWorker {
        let changes = replica.state_machine.outbox_changes();
        LinkWorker {
            replica,
            context,
            sender: LinkSender::new(to),
            random: StdRng::from_entropy(),
            changes,
            wait: Wait::Messages,
            empty_since_ms: None,
        }
    }

    /// Sends one batch of a link whose state is `link`, and settles its reply.
    async fn deliver(&mut self, link: &LinkOut, batch: Batch) {
        let from = self.replica.office.clone();
        let to = self.sender.to().clone();
        // The outbox holds this office's sealed bytes; the wire (mutual TLS) carries them open,
        // and the receiver seals them under its own key.
        // A message that does not open (a data key replaced under a running office) fails the
        // attempt like a failed call: the link backs off and retries, and says why.
        let mut envelopes = batch.envelopes.clone();
        let opened = envelopes.iter_mut().try_for_each(|envelope| {
            let seq = envelope.seq;
            self.replica
                .seal
                .open_envelope(envelope)
                .map_err(|error| format!("message {seq}'s personal data does not open: {error}"))
        });
        let attempt = self.sender.sent();
        let reply = match opened {
            Ok(()) => {
                let request = DeliverRequest {
                    from: from.to_string(),
                    to: to.to_string(),
                    envelopes: envelopes.iter().map(Into::into).collect(),
                };
                send(&self.context, &to, request).await
            }
            Err(reason) => {
                tracing::error!(%from, %to, %reason, "a message cannot be sent");
                Err(reason)
            }
        };
        let now_ms = self.context.now_ms();
        match self
            .sender
            .on_reply(attempt, reply, link, now_ms, &mut self.random)
        {
            Decision::Commit(acked) => {
                crate::trace::messages(
                    "delivered",
                    &from,
                    &to,
                    &crate::trace::batch(&batch.envelopes),
                );
                if let Operation::Acked { refused, .. } = acked.as_ref() {
                    warn_unadmitted(&from, &to, &batch, refused);
                }
                let written = self.replica.write(*acked).await;
                let result = written.map(|_| ()).map_err(|e| e.to_string());
                let now_ms = self.context.now_ms();
                if let Decision::Retry { reason, .. } =
                    self.sender.committed(result, now_ms, &mut self.random)
                {
                    tracing::debug!(%from, %to, %reason, "acknowledgement not committed");
                }
            }
            Decision::Retry { reason, .. } => {
                self.context.deliveries.retry(&from, &to);
                let failures = self.sender.failures();
                if failures.is_multiple_of(LINK_FAILURES_WARN_EVERY) {
                    tracing::warn!(%from, %to, %reason, failures, "a link keeps failing; its messages wait in the outbox");
                } else {
                    tracing::debug!(%from, %to, %reason, failures, "delivery failed");
                }
            }
            Decision::Stale => {}
        }
    }
}

impl Worker for LinkWorker {
    fn name(&self) -> String {
        link_name(&self.replica.office, self.sender.to())
    }

    async fn work(&mut self) -> Result<Step, String> {
        if !self.replica.is_leader() {
            return Ok(Step::Done);
        }
        let from = self.replica.office.clone();
        let to = self.sender.to().clone();
        if self.context.faults.cut(from.as_str(), to.as_str()) {
            self.wait = Wait::Cut;
            return Ok(Step::Idle);
        }
        let now_ms = self.context.now_ms();
        self.changes.mark_unchanged();
        let machine = &self.replica.state_machine;
        let (link, waiting) = machine.outbox_head(&to, DELIVER_BATCH_ITEMS_MAX)?;
        if link.pending() == 0 {
            let since = *self.empty_since_ms.get_or_insert(now_ms);
            if now_ms.saturating_sub(since) >= LINK_IDLE_EXIT_MS {
                return Ok(Step::Done);
            }
            self.wait = Wait::Messages;
            return Ok(Step::Idle);
        }
        self.empty_since_ms = None;
        match self.sender.ready(now_ms) {
            Ready::Now => {}
            Ready::At(at_ms) => {
                self.wait = Wait::Until(at_ms);
                return Ok(Step::Idle);
            }
            Ready::InFlight => return Err("a batch is still in flight".into()),
        }
        let Some(batch) = select_batch(&link, waiting)? else {
            self.wait = Wait::Messages;
            return Ok(Step::Idle);
        };
        self.deliver(&link, batch).await;
        Ok(Step::Busy)
    }

    async fn wait_for_work(&mut self) {
        let poll = Duration::from_millis(LINK_POLL_MS);
        match self.wait {
            Wait::Messages => {
                let _ = tokio::time::timeout(poll, self.changes.changed()).await;
            }
            Wait::Until(at_ms) => {
                let at = self.context.epoch + Duration::from_millis(at_ms);
                tokio::time::sleep_until(at).await;
            }
            Wait::Cut => tokio::time::sleep(Duration::from_millis(LINK_CUT_POLL_MS)).await,
        }
    }
}

/// Names in the log each message of `batch` the receiver could not admit (a kind its build does
/// not know, content it refused): it is not retried, so an operator must learn of it here.
fn warn_unadmitted(from: &OfficeCode, to: &OfficeCode, batch: &Batch, refused: &[Refusal]) {
    let unadmitted = refused.iter().filter(|r| link::is_unadmitted(&r.code));
    for refusal in unadmitted {
        let kind = batch
            .envelopes
            .iter()
            .find(|envelope| envelope.seq == refusal.seq)
            .map_or("message", |envelope| envelope.body.kind());
        tracing::warn!(
            %from, %to, seq = refusal.seq, kind, code = %refusal.code, reason = %refusal.reason,
            "the receiver refused a message it could not admit; it is not sent again \
             (an unknown_message_kind: upgrade the receiving office)"
        );
    }
}

/// Sends one batch to the target office's leader: the last known leader first, then the
/// office's other hosts, following leader hints. Each call is bounded by
/// [`DELIVER_TIMEOUT_MS`] and passes through this host's link fault to the called host.
async fn send(
    context: &PumpContext,
    to: &OfficeCode,
    request: DeliverRequest,
) -> Result<Delivered, String> {
    let mut candidates = context.directory.candidates(to.as_str());
    let mut last_error = format!("office {to} has no hosts");
    let mut hints = 0;
    while let Some(addr) = (!candidates.is_empty()).then(|| candidates.remove(0)) {
        let reply = match call(context, &addr, request.clone()).await {
            Ok(reply) => reply,
            Err(error) => {
                last_error = format!("{addr}: {error}");
                continue;
            }
        };
        match reply.leader_hint.clone() {
            Some(hint) if hint != addr && hints < HINTS_FOLLOWED_MAX => {
                hints += 1;
                candidates.retain(|a| *a != hint);
                candidates.insert(0, hint);
            }
            Some(_) => last_error = format!("{addr} is not the leader of {to}"),
            None => {
                context.directory.remember_leader(to.as_str(), &addr);
                return Ok(delivered(reply));
            }
        }
    }
    Err(last_error)
}

/// One Deliver call to the host at `addr`.
async fn call(
    context: &PumpContext,
    addr: &str,
    request: DeliverRequest,
) -> Result<DeliverReply, String> {
    let channel = context.transport.channel(addr).map_err(|e| e.to_string())?;
    let mut client = FederationClient::new(channel)
        .max_decoding_message_size(federation_proto::MESSAGE_BYTES_MAX)
        .max_encoding_message_size(federation_proto::MESSAGE_BYTES_MAX);
    let timeout = Duration::from_millis(DELIVER_TIMEOUT_MS);
    let mut call = tonic::Request::new(request);
    call.set_timeout(timeout);
    let deadline = Instant::now() + timeout;
    let action = context
        .faults
        .link_action(context.directory.host_name(addr));
    match through_link_fault(action, deadline, client.deliver(call)).await {
        Ok(Ok(reply)) => Ok(reply.into_inner()),
        Ok(Err(status)) => Err(status.message().to_string()),
        Err(lost) => Err(lost.describe().to_string()),
    }
}

fn delivered(reply: DeliverReply) -> Delivered {
    Delivered {
        applied_through: reply.applied_through,
        refused: reply
            .refused
            .into_iter()
            .map(|r| Refusal {
                seq: r.seq,
                code: r.code,
                reason: r.reason,
            })
            .collect(),
    }
}
