//! The federation link protocol, pure: no IO, no tokio, no wall clock, no global random source.
//! Time (milliseconds on the caller's monotonic clock) and randomness are arguments. The
//! production pump ([`super::pump`]), the Deliver handler ([`super::service`]) and the
//! deterministic simulation (`chaos-tests/src/sim`) all call these functions, so the simulation
//! tests the protocol that ships.
//!
//! **Sender.** One [`LinkSender`] per link (volatile: a new leader starts afresh). At most one
//! batch is in flight; [`select_batch`] takes the oldest unacknowledged messages, in sequence
//! order, within [`DELIVER_BATCH_ITEMS_MAX`] and [`DELIVER_BATCH_BYTES_MAX`]. A single message
//! larger than the byte budget never exists: the state machine refuses, when it is made, a
//! change whose message would exceed [`ENVELOPE_BYTES_MAX`] (no larger than the budget), so the
//! first message always fits and every link makes progress. A reply that moves the receiver's
//! watermark past our acknowledgement commits `Acked` through it; anything else (an error, a
//! timeout, a watermark that did not move, an ack that did not commit) retries after a capped
//! exponential backoff with jitter ([`backoff_ms`]).
//!
//! **Receiver.** [`check_batch`] runs before anything is proposed to Raft (the handler has found
//! the receiving office by the batch's address): the sender is known, every envelope is on this
//! link, its sequence numbers are consecutive and continue the inbox watermark, and it fits the
//! item and byte budgets. These are the link's faults: a batch that has one is refused whole and
//! nothing is proposed. A batch wholly at or below the watermark is a replay, answered from the
//! watermark without touching the log; a batch that starts past the watermark leaves a gap and is
//! refused, also without touching the log; otherwise the batch is proposed whole: the state
//! machine skips the messages it applied before, and learns from the batch's first message where
//! the sender's outbox begins (it forgets the refusals before it, never one the sender may still
//! ask about). What is wrong with one message and not with the link — a kind this build does not
//! know, a body that does not decode, a field the case engine refuses — is that message's fault
//! alone: [`proposal`] puts a marker in its place ([`Received::Unadmitted`]), committed as
//! refused without its content, so the sender learns it with the ack and every message behind it
//! still goes through (refusing the whole batch wedged the link: the sender retried it forever). [`answer_replay`] and [`answer_applied`] turn
//! the outcome into the reply; [`receive`] runs the whole of it over an office given as the
//! [`Receiving`] trait (its reads and its log), so the handler and the simulation share even the
//! order of the steps.

use std::future::Future;
use std::ops::RangeInclusive;

use liandong_domain::message::Envelope;
use liandong_domain::OfficeCode;
use rand::Rng;

use crate::machine::{wire_bytes, LinkIn, LinkOut, ENVELOPE_BYTES_MAX};
use crate::raft::types::{Operation, Received, Refusal, Response};

/// Envelopes in one Deliver batch at most.
pub const DELIVER_BATCH_ITEMS_MAX: usize = 256;
/// Bytes of envelopes (protobuf form) in one Deliver batch at most: well under the transport's
/// limit (`federation_proto::MESSAGE_BYTES_MAX`, 16 MiB), and small enough that the log entry
/// the receiver commits stays a modest share of one AppendEntries.
pub const DELIVER_BATCH_BYTES_MAX: usize = 1024 * 1024;
/// How long one Deliver call may take before the sender counts it failed.
pub const DELIVER_TIMEOUT_MS: u64 = 3_000;
/// The pause after the first failure on a link; it doubles with each failure after it...
pub const BACKOFF_BASE_MS: u64 = 50;
/// ...up to this. Each pause is shortened by a random part of up to half (jitter), so links
/// that failed together do not retry together.
pub const BACKOFF_CAP_MS: u64 = 2_000;

const _: () = assert!(ENVELOPE_BYTES_MAX <= DELIVER_BATCH_BYTES_MAX);
const _: () = assert!(DELIVER_BATCH_BYTES_MAX * 4 <= federation_proto::MESSAGE_BYTES_MAX);

/// The pause before the next attempt after `failures` failures in a row (at least 1): from
/// [`BACKOFF_BASE_MS`], doubling, capped at [`BACKOFF_CAP_MS`], minus a random part of up to
/// half of it.
pub fn backoff_ms(failures: u32, random: &mut impl Rng) -> u64 {
    let exponent = failures.saturating_sub(1).min(16);
    let pause = BACKOFF_BASE_MS
        .saturating_mul(1u64 << exponent)
        .min(BACKOFF_CAP_MS);
    pause - random.gen_range(0..=pause / 2)
}

// ---- the sender --------------------------------------------------------------------------------

/// Messages chosen for one Deliver call.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub envelopes: Vec<Envelope>,
    /// Their size on the wire: what the receiver measures against [`DELIVER_BATCH_BYTES_MAX`].
    pub bytes: usize,
}

impl Batch {
    pub fn first_seq(&self) -> u64 {
        self.envelopes.first().map_or(0, |envelope| envelope.seq)
    }

    pub fn last_seq(&self) -> u64 {
        self.envelopes.last().map_or(0, |envelope| envelope.seq)
    }
}

/// The next batch of a link whose state is `link`, from `waiting` (the head of its outbox, in
/// sequence order, at most [`DELIVER_BATCH_ITEMS_MAX`] read): None when nothing waits. An
/// outbox that does not continue the acknowledged sequence is a broken state machine: `Err`.
pub fn select_batch(link: &LinkOut, waiting: Vec<Envelope>) -> Result<Option<Batch>, String> {
    let mut envelopes = Vec::new();
    let mut bytes = 0usize;
    let head = waiting.into_iter().take(DELIVER_BATCH_ITEMS_MAX);
    for (expected, envelope) in (link.acked_through + 1..).zip(head) {
        if envelope.seq != expected {
            return Err(format!(
                "the outbox to {} holds message {} where {expected} was expected",
                envelope.to, envelope.seq
            ));
        }
        let size = wire_bytes(&envelope);
        if !envelopes.is_empty() && bytes + size > DELIVER_BATCH_BYTES_MAX {
            break;
        }
        bytes += size;
        envelopes.push(envelope);
    }
    if envelopes.is_empty() && link.pending() > 0 {
        return Err(format!(
            "{} messages pending but the outbox is empty",
            link.pending()
        ));
    }
    Ok((!envelopes.is_empty()).then_some(Batch { envelopes, bytes }))
}

/// One Deliver call of a link, to match its reply.
pub type Attempt = u64;

/// What a Deliver call came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Every message up to this one is committed at the receiver.
    pub applied_through: u64,
    /// The refused messages among those (they changed nothing there).
    pub refused: Vec<Refusal>,
}

/// When a link may send next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// Now.
    Now,
    /// A batch is in flight: wait for its reply (or its timeout).
    InFlight,
    /// Backing off until this time.
    At(u64),
}

/// What to do with a reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Commit this acknowledgement (`Operation::Acked`), then report it with
    /// [`LinkSender::committed`].
    Commit(Box<Operation>),
    /// The delivery failed: try again at this time.
    Retry { at_ms: u64, reason: String },
    /// The reply of an attempt that is no longer in flight (timed out, or a duplicate): ignore.
    Stale,
}

/// The sending side of one link, as its pump (or the simulation) keeps it.
#[derive(Debug, Clone)]
pub struct LinkSender {
    to: OfficeCode,
    /// The attempt in flight: its number (until its reply, or until its ack commits).
    in_flight: Option<Attempt>,
    attempts: Attempt,
    /// Deliveries failed in a row.
    failures: u32,
    /// No attempt before this time.
    next_try_ms: u64,
}

impl LinkSender {
    pub fn new(to: OfficeCode) -> LinkSender {
        LinkSender {
            to,
            in_flight: None,
            attempts: 0,
            failures: 0,
            next_try_ms: 0,
        }
    }

    pub fn to(&self) -> &OfficeCode {
        &self.to
    }

    /// Whether a batch is in flight (sent, its reply or its ack not settled).
    pub fn is_in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    pub fn ready(&self, now_ms: u64) -> Ready {
        if self.in_flight.is_some() {
            Ready::InFlight
        } else if now_ms < self.next_try_ms {
            Ready::At(self.next_try_ms)
        } else {
            Ready::Now
        }
    }

    /// A batch goes out now: its attempt number.
    pub fn sent(&mut self) -> Attempt {
        debug_assert!(self.in_flight.is_none(), "one batch in flight per link");
        self.attempts += 1;
        self.in_flight = Some(self.attempts);
        self.attempts
    }

    /// Interprets the reply to `attempt` (`Err`: the call failed or timed out) on a link whose
    /// state is now `link`.
    pub fn on_reply(
        &mut self,
        attempt: Attempt,
        reply: Result<Delivered, String>,
        link: &LinkOut,
        now_ms: u64,
        random: &mut impl Rng,
    ) -> Decision {
        if self.in_flight != Some(attempt) {
            return Decision::Stale;
        }
        match reply {
            Ok(delivered) if delivered.applied_through > link.acked_through => {
                Decision::Commit(Box::new(Operation::Acked {
                    to: self.to.clone(),
                    through: delivered.applied_through,
                    refused: delivered.refused,
                }))
            }
            Ok(delivered) => self.failed(
                format!(
                    "the receiver applied through {} only",
                    delivered.applied_through
                ),
                now_ms,
                random,
            ),
            Err(reason) => self.failed(reason, now_ms, random),
        }
    }

    /// The acknowledgement of [`Decision::Commit`] committed (`Ok`) or did not.
    pub fn committed(
        &mut self,
        result: Result<(), String>,
        now_ms: u64,
        random: &mut impl Rng,
    ) -> Decision {
        match result {
            Ok(()) => {
                self.in_flight = None;
                self.failures = 0;
                self.next_try_ms = now_ms;
                Decision::Stale
            }
            Err(reason) => self.failed(reason, now_ms, random),
        }
    }

    fn failed(&mut self, reason: String, now_ms: u64, random: &mut impl Rng) -> Decision {
        self.in_flight = None;
        self.failures = self.failures.saturating_add(1);
        self.next_try_ms = now_ms.saturating_add(backoff_ms(self.failures, random));
        Decision::Retry {
            at_ms: self.next_try_ms,
            reason,
        }
    }
}

// ---- the receiver ------------------------------------------------------------------------------

/// The refusal code of a message whose kind the receiving build does not know (a newer office
/// sent it): it is committed as refused, not retried; upgrading the receiver lets the next one
/// through.
pub const UNKNOWN_MESSAGE_KIND: &str = "unknown_message_kind";
/// The refusal code of a message whose body does not decode, or whose fields the case engine
/// refuses.
pub const INVALID_MESSAGE: &str = "invalid_message";
/// Whether a refusal is one of a message the receiver could not admit ([`UNKNOWN_MESSAGE_KIND`],
/// [`INVALID_MESSAGE`]) rather than one its rules made about what the message asked.
pub fn is_unadmitted(code: &str) -> bool {
    code == UNKNOWN_MESSAGE_KIND || code == INVALID_MESSAGE
}

/// The longest reason kept with a message refused on admission (characters): the reason may
/// quote what arrived, and what arrived is bounded only by the batch's budget.
pub const UNADMITTED_REASON_CHARS_MAX: usize = 200;

/// A Deliver batch as it arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    pub from: OfficeCode,
    pub to: OfficeCode,
    pub envelopes: Vec<Arrived>,
    /// The envelopes' size on the wire, as received.
    pub bytes: usize,
}

impl Inbound {
    /// A batch of decoded envelopes (what a sender of this build makes).
    pub fn of(from: OfficeCode, to: OfficeCode, envelopes: Vec<Envelope>, bytes: usize) -> Inbound {
        Inbound {
            from,
            to,
            envelopes: envelopes.into_iter().map(Arrived::Envelope).collect(),
            bytes,
        }
    }
}

/// One envelope of a Deliver batch as it arrived.
// Nearly every element of a batch is the large variant: boxing it would cost an allocation
// per message to save room only in the rare marker.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Arrived {
    /// Decoded (its fields are validated by [`proposal`]).
    Envelope(Envelope),
    /// Its link and number decoded, its body did not: a kind this build does not know
    /// ([`UNKNOWN_MESSAGE_KIND`]) or content it cannot read ([`INVALID_MESSAGE`]).
    Unreadable {
        from: OfficeCode,
        to: OfficeCode,
        seq: u64,
        code: &'static str,
        reason: String,
    },
}

impl Arrived {
    fn link(&self) -> (&OfficeCode, &OfficeCode, u64) {
        match self {
            Arrived::Envelope(envelope) => (&envelope.from, &envelope.to, envelope.seq),
            Arrived::Unreadable { from, to, seq, .. } => (from, to, *seq),
        }
    }

    pub fn seq(&self) -> u64 {
        self.link().2
    }
}

/// Why a batch is refused before anything is proposed: it changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refuse {
    #[error("office {from} is not in this federation")]
    UnknownSender { from: OfficeCode },
    #[error("a batch holds 1 to {DELIVER_BATCH_ITEMS_MAX} envelopes, not {items}")]
    Items { items: usize },
    #[error("a batch holds at most {DELIVER_BATCH_BYTES_MAX} bytes of envelopes, not {bytes}")]
    Bytes { bytes: usize },
    #[error("envelope {from}->{to} #{seq} does not belong on link {link}")]
    WrongLink {
        from: OfficeCode,
        to: OfficeCode,
        seq: u64,
        link: String,
    },
    #[error("envelope #{seq} follows #{previous}: a batch is consecutive")]
    NotConsecutive { previous: u64, seq: u64 },
    #[error("out of order on link {link}: expected message {expected} next, got {first}")]
    Gap {
        link: String,
        expected: u64,
        first: u64,
    },
}

/// What to do with a batch that passed [`check_batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Every message was applied before: answer from the watermark with the refusals among
    /// `refusals_of` (from the batch's first message to the watermark), proposing nothing.
    Replay {
        applied_through: u64,
        refusals_of: RangeInclusive<u64>,
    },
    /// Propose the batch ([`proposal`]): its messages from `first_new` on are new, those before
    /// it were applied before (the state machine skips them and answers their refusals).
    Propose { first_new: u64 },
}

/// The budgets alone, which a handler checks before it decodes a single envelope.
pub fn check_size(items: usize, bytes: usize) -> Result<(), Refuse> {
    if items == 0 || items > DELIVER_BATCH_ITEMS_MAX {
        return Err(Refuse::Items { items });
    }
    if bytes > DELIVER_BATCH_BYTES_MAX {
        return Err(Refuse::Bytes { bytes });
    }
    Ok(())
}

/// The check a Deliver handler runs before proposing anything (see the module's doc): the
/// link's faults only; a message's own fault is [`proposal`]'s to mark.
/// `sender_known`: the directory names the sender; `inbox`: this office's side of the link.
pub fn check_batch(batch: &Inbound, sender_known: bool, inbox: &LinkIn) -> Result<Admit, Refuse> {
    let Inbound {
        from,
        to,
        envelopes,
        bytes,
    } = batch;
    if !sender_known {
        return Err(Refuse::UnknownSender { from: from.clone() });
    }
    check_size(envelopes.len(), *bytes)?;
    let link = format!("{from}->{to}");
    let mut previous: Option<u64> = None;
    for arrived in envelopes {
        let (sender, receiver, seq) = arrived.link();
        if sender != from || receiver != to {
            return Err(Refuse::WrongLink {
                from: sender.clone(),
                to: receiver.clone(),
                seq,
                link,
            });
        }
        if let Some(previous) = previous.filter(|&p| seq != p.saturating_add(1)) {
            return Err(Refuse::NotConsecutive { previous, seq });
        }
        previous = Some(seq);
    }
    let first = envelopes[0].seq();
    let last = previous.unwrap_or(first);
    let watermark = inbox.applied_through;
    if first > watermark.saturating_add(1) {
        return Err(Refuse::Gap {
            link,
            expected: watermark.saturating_add(1),
            first,
        });
    }
    if last <= watermark {
        // The sender acknowledges through the watermark, which may lie past this batch (an
        // earlier, longer batch was applied): it learns every refusal up to it.
        return Ok(Admit::Replay {
            applied_through: watermark,
            refusals_of: first..=watermark,
        });
    }
    Ok(Admit::Propose {
        first_new: watermark + 1,
    })
}

/// The operation that commits an admitted batch: the whole batch, also the messages it applied
/// before. The state machine skips those, but the batch's first message tells it where the
/// sender's outbox begins: the sender committed the acknowledgement of every message before it,
/// so their refusals can go, and only theirs. (Trimming the batch to its new messages made the
/// receiver forget the refusals of the overlap while the sender still waited for them: a lost
/// reply, a retry, and a refused handoff read as accepted, its case held by no office.)
///
/// Each message is admitted here ([`admit`]); one that is not becomes a marker of its number,
/// committed as refused, and the batch is then an [`Operation::ReceiveMarked`]. A batch of
/// admitted messages only is an [`Operation::Receive`], as builds before markers propose it.
pub fn proposal(batch: Inbound) -> Operation {
    let messages: Vec<Received> = batch.envelopes.into_iter().map(admit).collect();
    if messages.iter().all(|m| matches!(m, Received::Message(_))) {
        let envelopes = messages
            .into_iter()
            .filter_map(|message| match message {
                Received::Message(envelope) => Some(envelope),
                Received::Unadmitted { .. } => None,
            })
            .collect();
        return Operation::Receive {
            from: batch.from,
            envelopes,
        };
    }
    Operation::ReceiveMarked {
        from: batch.from,
        messages,
    }
}

/// One message as the receiver takes it into its log: a decoded envelope whose every field
/// passes the case engine's validation, or a marker of its number with why it was not admitted
/// (the reason bounded by [`UNADMITTED_REASON_CHARS_MAX`]).
pub fn admit(arrived: Arrived) -> Received {
    let bounded = |reason: String| reason.chars().take(UNADMITTED_REASON_CHARS_MAX).collect();
    match arrived {
        Arrived::Envelope(envelope) => match envelope.body.validate() {
            Ok(()) => Received::Message(envelope),
            Err(error) => Received::Unadmitted {
                seq: envelope.seq,
                code: INVALID_MESSAGE.to_string(),
                reason: bounded(format!(
                    "the {} is invalid: {}: {error}",
                    envelope.body.kind(),
                    error.code()
                )),
            },
        },
        Arrived::Unreadable {
            seq, code, reason, ..
        } => Received::Unadmitted {
            seq,
            code: code.to_string(),
            reason: bounded(reason),
        },
    }
}

/// What the receiver's side of Deliver needs of its office: reads of its applied state, and
/// its log. The Deliver handler implements it over the office's leader replica, the simulation
/// over a simulated office.
pub trait Receiving {
    /// Why the office could not take the batch now (not the leader, no quorum, ...).
    type Failure;
    /// This office's side of the link from `from`, as applied.
    fn link_in(&self, from: &OfficeCode) -> Result<LinkIn, String>;
    /// The refused messages from `from` numbered in `seqs`, as applied.
    fn refusals(
        &self,
        from: &OfficeCode,
        seqs: RangeInclusive<u64>,
    ) -> Result<Vec<Refusal>, String>;
    /// Waits until everything the office committed is applied (a new leader may lag).
    fn catch_up(&mut self) -> impl Future<Output = Result<(), Self::Failure>> + Send;
    /// Commits `operation` through the office's log; what applying it answered.
    fn propose(
        &mut self,
        operation: Operation,
    ) -> impl Future<Output = Result<Response, Self::Failure>> + Send;
}

/// Why [`receive`] gave no reply.
#[derive(Debug)]
pub enum NotReceived<F> {
    /// The link protocol refused the batch: nothing was proposed.
    Refused(Refuse),
    /// The office could not take it now.
    Office(F),
    /// The office's state is unreadable or answered out of protocol.
    Broken(String),
}

/// The receiver's side of Deliver, from the check to the reply: [`check_batch`] (once more
/// after catching up, should the batch seem to leave a gap), then a replay answered from the
/// watermark, or the new messages proposed and the reply made of what applying them answered.
pub async fn receive<O: Receiving + Send>(
    office: &mut O,
    batch: Inbound,
    sender_known: bool,
) -> Result<Delivered, NotReceived<O::Failure>> {
    let inbox = office.link_in(&batch.from).map_err(NotReceived::Broken)?;
    let admitted = match check_batch(&batch, sender_known, &inbox) {
        Err(Refuse::Gap { .. }) => {
            office.catch_up().await.map_err(NotReceived::Office)?;
            let inbox = office.link_in(&batch.from).map_err(NotReceived::Broken)?;
            check_batch(&batch, sender_known, &inbox)
        }
        checked => checked,
    };
    let first_new = match admitted.map_err(NotReceived::Refused)? {
        Admit::Replay {
            applied_through,
            refusals_of,
        } => {
            let earlier = office
                .refusals(&batch.from, refusals_of)
                .map_err(NotReceived::Broken)?;
            return Ok(answer_replay(applied_through, earlier));
        }
        Admit::Propose { first_new } => first_new,
    };
    let response = office
        .propose(proposal(batch))
        .await
        .map_err(NotReceived::Office)?;
    answer_applied(first_new, response).map_err(NotReceived::Broken)
}

/// The reply to a replayed batch: the watermark, and the refusals read from the state machine.
pub fn answer_replay(applied_through: u64, refused: Vec<Refusal>) -> Delivered {
    Delivered {
        applied_through,
        refused,
    }
}

/// The reply to a proposed batch, from what applying it answered (`response`: the watermark,
/// and the refusals of the whole batch, also of its messages applied before).
pub fn answer_applied(first_new: u64, response: Response) -> Result<Delivered, String> {
    match response {
        Response::Delivered {
            applied_through,
            refused,
        } => {
            if applied_through.saturating_add(1) < first_new {
                return Err(format!(
                    "the receiver's watermark {applied_through} fell behind message {first_new}"
                ));
            }
            Ok(Delivered {
                applied_through,
                refused,
            })
        }
        other => Err(format!("unexpected state machine reply {other:?}")),
    }
}

#[cfg(test)]
mod tests;
