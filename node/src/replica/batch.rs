//! Group commit at the proposer: officers' writes to one office are gathered into one log entry,
//! so that many writes share one append, one fsync on each replica and one replication round.
//!
//! openraft 0.9's leader appends each `client_write` as an entry of its own and waits for that
//! append's fsync before it takes the next message, so without this every officer's write costs
//! the leader one synced WAL write, one after the other. Here one task per replica takes what is
//! waiting: the first write goes at once (a lone writer waits for nothing), and while
//! [`BATCHES_IN_FLIGHT_MAX`] entries are on their way through Raft the writes that arrive
//! meanwhile wait and then go together, up to [`BATCH_OPERATIONS_MAX`] operations and
//! [`BATCH_BYTES_MAX`] bytes. Such an entry is `Operation::Batch`, applied in order (each
//! operation deduplicated and audited as if alone); each writer gets its own operation's
//! response, a refusal included.
//!
//! Only officers' case work ([`Operation::gathers`]) is gathered; the federation's bookkeeping
//! (deliveries, acknowledgements, ticks, accounts, audit batches) goes alone, as before. Waiting
//! writes are bounded in items ([`WAITING_MAX`]) and in bytes ([`WAITING_BYTES_MAX`]): a writer
//! beyond either waits to be accepted (back-pressure), and its API deadline still holds.

use std::sync::Arc;

use liandong_domain::OfficeCode;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use super::{write_error, ReplicaError, Written};
use crate::clock::Clock;
use crate::machine::StateMachineStore;
use crate::raft::types::{Operation, Raft, Request, Response};
use crate::store::codec::encoded_len;

/// Operations one entry gathers at most.
pub const BATCH_OPERATIONS_MAX: usize = 256;
/// Bytes of operations (encoded) one entry gathers at most; an operation above it goes alone.
/// An entry stays well within the AppendEntries budget.
pub const BATCH_BYTES_MAX: usize = 1024 * 1024;
const _: () = assert!(BATCH_BYTES_MAX * 4 <= crate::raft::network::APPEND_ENTRIES_BYTES_MAX);
/// Entries one office has on their way through Raft at once from this path; while they are,
/// new writes gather for the next. Measured (64 clients, dev profile, 2026-12-07): 1, 2 and 4
/// give about the same throughput; 16 gives half, its entries being smaller and each entry
/// costing every replica an append, a sync and a replication round of its own.
pub const BATCHES_IN_FLIGHT_MAX: usize = 4;
/// Writes that may wait for an entry, per office; more wait to be accepted.
pub const WAITING_MAX: usize = 4_096;
/// Bytes of operations (encoded) waiting for an entry or in one on its way, per office; more
/// wait to be accepted. An operation larger than this counts as this much.
pub const WAITING_BYTES_MAX: usize = 64 * 1024 * 1024;

/// One write waiting for its entry, holding its share of [`WAITING_BYTES_MAX`] until answered.
struct Waiting {
    op: Operation,
    bytes: usize,
    reply: oneshot::Sender<Result<Written, ReplicaError>>,
    bytes_held: OwnedSemaphorePermit,
}

/// The way into one office's log; cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    office: OfficeCode,
    waiting: mpsc::Sender<Waiting>,
    waiting_bytes: Arc<Semaphore>,
}

/// What proposing an entry needs: the office's Raft, the host's clock and the applied state's
/// clock (an entry's stamp never runs behind it).
pub struct Proposer {
    pub office: OfficeCode,
    pub raft: Raft,
    pub clock: Arc<Clock>,
    pub state_machine: StateMachineStore,
}

impl Batcher {
    /// Starts the office's batching task (it ends when the last `Batcher` is dropped).
    pub fn start(proposer: Proposer) -> Batcher {
        let (waiting, receiver) = mpsc::channel(WAITING_MAX);
        let office = proposer.office.clone();
        tokio::spawn(gather(receiver, Arc::new(proposer)));
        Batcher {
            office,
            waiting,
            waiting_bytes: Arc::new(Semaphore::new(WAITING_BYTES_MAX)),
        }
    }

    /// Proposes `op` in the next entry and waits until it is committed and applied.
    pub async fn write(&self, op: Operation) -> Result<Written, ReplicaError> {
        let stopped = || ReplicaError::Unavailable {
            office: self.office.clone(),
            reason: "the office's proposer has stopped".to_string(),
        };
        let bytes = encoded_len(&op);
        let share = bytes.clamp(1, WAITING_BYTES_MAX) as u32;
        let bytes_held = self
            .waiting_bytes
            .clone()
            .acquire_many_owned(share)
            .await
            .map_err(|_| stopped())?;
        let (reply, answer) = oneshot::channel();
        let waiting = Waiting {
            op,
            bytes,
            reply,
            bytes_held,
        };
        self.waiting.send(waiting).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Takes the writes for the next entry: `first`, then whatever waits now and fits within the
/// entry's limits; a write that cannot join is held for the entry after. A write whose writer
/// has given up (its API deadline passed) is dropped, not proposed: nobody waits for it, and its
/// writer was told it may not have happened.
fn take_batch(
    first: Waiting,
    receiver: &mut mpsc::Receiver<Waiting>,
    held: &mut Option<Waiting>,
) -> Vec<Waiting> {
    let mut bytes = first.bytes;
    let gathering = first.op.gathers() && first.bytes < BATCH_BYTES_MAX;
    let mut batch = vec![first];
    while gathering && batch.len() < BATCH_OPERATIONS_MAX {
        let Ok(next) = receiver.try_recv() else {
            break;
        };
        if next.reply.is_closed() {
            continue;
        }
        if !next.op.gathers() || bytes + next.bytes > BATCH_BYTES_MAX {
            *held = Some(next);
            break;
        }
        bytes += next.bytes;
        batch.push(next);
    }
    batch
}

async fn gather(mut receiver: mpsc::Receiver<Waiting>, proposer: Arc<Proposer>) {
    let in_flight = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT_MAX));
    let mut held: Option<Waiting> = None;
    loop {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let first = match held.take() {
            Some(waiting) => waiting,
            None => match receiver.recv().await {
                Some(waiting) => waiting,
                None => return,
            },
        };
        if first.reply.is_closed() {
            continue;
        }
        let batch = take_batch(first, &mut receiver, &mut held);
        tokio::spawn(propose(proposer.clone(), batch, permit));
    }
}

/// The entry's operation for `batch`: a lone write as itself (the entry it always had), several
/// as one `Operation::Batch`.
fn entry_operation(mut operations: Vec<Operation>) -> Operation {
    if operations.len() == 1 {
        operations.remove(0)
    } else {
        Operation::Batch { operations }
    }
}

/// Each writer's answer from what the entry answered: a batch's response is one per operation,
/// in order; any other response answers the lone writer.
fn answers(writers: usize, response: Response, log_index: u64) -> Result<Vec<Written>, String> {
    let responses = match response {
        Response::Batch { responses } if writers > 1 => responses,
        response if writers == 1 => vec![response],
        other => return Err(format!("a batch of {writers} answered {other:?}")),
    };
    if responses.len() != writers {
        return Err(format!(
            "a batch of {writers} answered {} responses",
            responses.len()
        ));
    }
    Ok(responses
        .into_iter()
        .map(|response| Written {
            response,
            log_index,
        })
        .collect())
}

/// Proposes one entry for `batch` and answers each writer.
async fn propose(proposer: Arc<Proposer>, batch: Vec<Waiting>, _in_flight: OwnedSemaphorePermit) {
    let (operations, replies): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .map(|waiting| (waiting.op, (waiting.reply, waiting.bytes_held)))
        .unzip();
    let writers = operations.len();
    let floor = proposer.state_machine.last_at();
    let request = Request {
        at: proposer.clock.stamp(floor),
        op: entry_operation(operations),
    };
    let written = match proposer.raft.client_write(request).await {
        Ok(reply) => answers(writers, reply.data, reply.log_id.index).map_err(|reason| {
            ReplicaError::Storage {
                office: proposer.office.clone(),
                reason,
            }
        }),
        Err(error) => Err(write_error(&proposer.office, error)),
    };
    match written {
        Ok(answers) => {
            for ((reply, _), answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(Ok(answer));
            }
        }
        Err(error) => {
            for (reply, _) in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::tests::{audited, filing};

    /// Writes waiting in a queue, their writers still waiting for the answers.
    struct Queue {
        sender: mpsc::Sender<Waiting>,
        receiver: mpsc::Receiver<Waiting>,
        answers: Vec<oneshot::Receiver<Result<Written, ReplicaError>>>,
    }

    impl Queue {
        fn new() -> Queue {
            let (sender, receiver) = mpsc::channel(WAITING_MAX);
            Queue {
                sender,
                receiver,
                answers: Vec::new(),
            }
        }

        fn push(&mut self, op: Operation) {
            let waiting = self.waiting(op);
            self.sender.try_send(waiting).unwrap();
        }

        fn waiting(&mut self, op: Operation) -> Waiting {
            let (reply, answer) = oneshot::channel();
            self.answers.push(answer);
            let bytes = encoded_len(&op);
            let bytes_held = Arc::new(Semaphore::new(WAITING_BYTES_MAX))
                .try_acquire_many_owned(1)
                .unwrap();
            Waiting {
                op,
                bytes,
                reply,
                bytes_held,
            }
        }

        fn take(&mut self, held: &mut Option<Waiting>) -> Vec<Waiting> {
            let first = self.receiver.try_recv().unwrap();
            take_batch(first, &mut self.receiver, held)
        }
    }

    fn filing_of(summary_bytes: usize) -> Operation {
        let mut op = filing();
        if let Operation::File { registration, .. } = &mut op {
            registration.summary = "x".repeat(summary_bytes);
        }
        op
    }

    /// Writes waiting together go in one entry, up to the item limit; the federation's
    /// bookkeeping never joins one and is held for the next, and an audited filing gathers
    /// (fails if batches grow without bound or mix in what must go alone).
    #[test]
    fn waiting_writes_gather_within_their_item_limit() {
        let mut queue = Queue::new();
        for _ in 0..BATCH_OPERATIONS_MAX + 3 {
            queue.push(filing());
        }
        let mut held = None;
        assert_eq!(queue.take(&mut held).len(), BATCH_OPERATIONS_MAX);
        queue.push(audited(filing(), ""));
        queue.push(Operation::Tick);
        queue.push(filing());
        let batch = queue.take(&mut held);
        assert_eq!(
            batch.len(),
            4,
            "the rest and the audited filing, up to the tick"
        );
        let tick = held.take().expect("the tick is held for the next entry");
        assert!(matches!(tick.op, Operation::Tick));
        let alone = take_batch(tick, &mut queue.receiver, &mut held);
        assert_eq!(alone.len(), 1, "a tick goes alone");
        assert!(held.is_none(), "the filing after it waits in the queue");
    }

    /// Bytes bound an entry as well as items: an operation that would carry it over the budget
    /// waits for the next, and one over the budget on its own goes alone (fails if a batch
    /// could exceed the AppendEntries budget).
    #[test]
    fn a_batch_stays_within_its_bytes() {
        let mut queue = Queue::new();
        for _ in 0..4 {
            queue.push(filing_of(BATCH_BYTES_MAX / 3));
        }
        let mut held = None;
        let batch = queue.take(&mut held);
        assert_eq!(batch.len(), 2);
        assert!(batch.iter().map(|w| w.bytes).sum::<usize>() <= BATCH_BYTES_MAX);
        assert!(held.take().is_some());
        queue.receiver.try_recv().unwrap();
        queue.push(filing());
        let huge = queue.waiting(filing_of(BATCH_BYTES_MAX));
        assert_eq!(take_batch(huge, &mut queue.receiver, &mut held).len(), 1);
    }

    /// A write whose writer has given up is not proposed (fails if a timed-out write could be
    /// committed later, when nobody waits for it).
    #[test]
    fn a_write_nobody_waits_for_is_dropped() {
        let mut queue = Queue::new();
        for _ in 0..3 {
            queue.push(filing());
        }
        drop(queue.answers.remove(1));
        let mut held = None;
        assert_eq!(queue.take(&mut held).len(), 2);
    }

    /// A lone write is proposed as itself and a batch's responses go one to each writer, in
    /// order; an answer that does not match the writers is an error, never a wrong answer
    /// (fails if a writer could receive another's response).
    #[test]
    fn each_writer_gets_its_own_response() {
        assert!(matches!(
            entry_operation(vec![Operation::Tick]),
            Operation::Tick
        ));
        let Operation::Batch { operations } = entry_operation(vec![filing(), Operation::Tick])
        else {
            panic!("two operations make a batch");
        };
        assert_eq!(operations.len(), 2);
        let document = |n: u8| Response::Case { document: vec![n] };
        let batch = Response::Batch {
            responses: vec![document(1), Response::Nothing, document(3)],
        };
        let written = answers(3, batch.clone(), 9).unwrap();
        let responses: Vec<_> = written.iter().map(|w| w.response.clone()).collect();
        assert_eq!(responses, vec![document(1), Response::Nothing, document(3)]);
        assert!(written.iter().all(|w| w.log_index == 9));
        assert_eq!(answers(1, document(7), 4).unwrap()[0].response, document(7));
        assert!(answers(2, batch, 9).is_err(), "three responses for two");
        assert!(answers(2, document(1), 9).is_err(), "one response for two");
    }

    /// A writer beyond the bytes bound waits until earlier writes are answered (fails if the
    /// waiting bytes are unbounded).
    #[tokio::test]
    async fn waiting_bytes_are_bounded() {
        let bytes = Arc::new(Semaphore::new(WAITING_BYTES_MAX));
        let held = bytes
            .clone()
            .try_acquire_many_owned(WAITING_BYTES_MAX as u32)
            .unwrap();
        let (sender, mut receiver) = mpsc::channel(WAITING_MAX);
        let batcher = Batcher {
            office: crate::machine::tests::code("5306"),
            waiting: sender,
            waiting_bytes: bytes,
        };
        let writer = tokio::spawn(async move { batcher.write(filing()).await });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(
            receiver.try_recv().is_err(),
            "held back while the bytes are taken"
        );
        drop(held);
        let accepted = receiver.recv().await.expect("accepted once bytes are free");
        let _ = accepted.reply.send(Ok(Written {
            response: Response::Nothing,
            log_index: 2,
        }));
        assert_eq!(writer.await.unwrap().unwrap().log_index, 2);
    }
}
