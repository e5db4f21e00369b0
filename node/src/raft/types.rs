//! openraft's type configuration for an office's Raft group, and what goes through its log: the
//! operations a replica proposes and the responses applying them gives (applied by
//! `machine`). Plain data, the vocabulary every layer above shares.

use std::fmt;

use liandong_domain::message::Envelope;
use liandong_domain::{CaseCommand, CaseId, Millis, OfficeCode, Registration};

use serde::{Deserialize, Serialize};

pub use super::people::{AuditRecord, OfficerChange, OfficerRecord, Role};

/// Where a replica can be reached: its host's raft port (replication) and api port (forwarding).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub host: String,
    pub raft_addr: String,
    pub api_addr: String,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.host, self.raft_addr)
    }
}

/// The caller of the public surface's writes (an Open311 filing, a petitioner's evaluation):
/// no officer, so no officer's name can be it (officer names hold no colon).
pub const PUBLIC_CALLER: &str = "public:";

/// One log entry's payload: an operation stamped with the leader's clock. Every replica applies it
/// with that stamped time, so applying is deterministic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The leader's hybrid logical clock when it proposed this entry (Unix ms, scaled by the
    /// federation's time scale).
    pub at: Millis,
    pub op: Operation,
}

/// What goes through an office's log. New variants go at the end: the binary codec names a
/// variant by its position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Operation {
    /// Register a petition at this office.
    File {
        registration: Registration,
        request_id: Option<String>,
        /// Who asks (the signed-in officer; empty before sign-in exists): request ids are
        /// scoped by caller. Absent from format-1 entries.
        #[serde(default)]
        caller: String,
    },
    /// An officer's command on a case this office holds.
    Act {
        case_id: CaseId,
        command: CaseCommand,
        request_id: Option<String>,
        #[serde(default)]
        caller: String,
    },
    /// Advance the deadline clocks of every case whose alarm is due at `at`.
    Tick,
    /// Issue a supervision order (督办) from this office on a case held by `to`.
    Supervise {
        case_id: CaseId,
        to: OfficeCode,
        due_days: u32,
        text: String,
    },
    /// Messages delivered on the link from `from`, in sequence order.
    Receive {
        from: OfficeCode,
        envelopes: Vec<Envelope>,
    },
    /// The office `to` committed every message on our link up to `through`.
    Acked {
        to: OfficeCode,
        through: u64,
        refused: Vec<Refusal>,
    },
    /// A change to the office's officer accounts (`machine::officers`).
    Officers { change: OfficerChange },
    /// Audit records of calls that wrote nothing (reads, refusals, logins), appended in a batch.
    Audit { records: Vec<AuditRecord> },
    /// `op` with the audit record of the call that asked for it: the write and its record
    /// commit in one entry (the record's result is what applying `op` answered).
    Audited {
        record: AuditRecord,
        op: Box<Operation>,
    },
    /// Officers' case work gathered into one log entry (one append and one fsync on each
    /// replica for all of it: `replica::batch`), applied in order with the entry's stamp, one
    /// response each ([`Response::Batch`]). Only what [`Operation::gathers`] may be in one.
    Batch { operations: Vec<Operation> },
    /// Register a petition whose personal fields the proposing host sealed under the office's
    /// data key (`crate::personal`), with the petitioner key it computed from the clear ID
    /// number: what this build proposes for a filing ([`Operation::File`], clear, is what older
    /// builds logged; it still applies).
    FileSealed {
        registration: Box<Registration>,
        petitioner_key: String,
        request_id: Option<String>,
        caller: String,
    },
    /// The office's leader handed the SMS notice `id` to the gateway: it leaves the notification
    /// outbox (`machine::notify`). Proposed only by the office's own hosts (no RPC takes it).
    NotificationSent { id: String },
    /// Department, joint meeting, intake point and proxy work of the office
    /// (`machine::departments`): an officer's request, checked and audited like case work.
    Desk {
        change: liandong_domain::department::DeskChange,
        request_id: Option<String>,
        caller: String,
    },
    /// An officer's command on a joint reception session at this office
    /// (`machine::sessions`).
    Session {
        command: liandong_domain::session::SessionCommand,
        caller: String,
    },
    /// A filing (`op`: [`Operation::File`] or [`Operation::FileSealed`]) made in session
    /// `session`: refused, changing nothing, when the session cannot take it; linked to it when
    /// filed.
    SessionFile { session: String, op: Box<Operation> },
    /// Set (`Some`) or clear (`None`) the office's escalating notice ages, in days
    /// (`machine::notices`): its admin's call.
    NoticePolicy {
        ages_days: Option<Vec<u32>>,
        caller: String,
    },
    /// Register a group petition, or a petition by someone identified by another document than
    /// a resident ID ([`liandong_domain::group`]): [`Operation::FileSealed`] with the group, its
    /// personal fields sealed by the proposing host like the registration's, and the petitioner
    /// key of the representative's document.
    FileGroup {
        registration: Box<Registration>,
        group: Box<liandong_domain::group::Group>,
        petitioner_key: String,
        request_id: Option<String>,
        caller: String,
    },
    /// [`Operation::Session`] with the client's request id: applied once; a retry within the
    /// retry horizon is answered with the first answer (`machine::requests`).
    SessionOnce {
        command: liandong_domain::session::SessionCommand,
        request_id: String,
        caller: String,
    },
    /// A delivered batch holding messages the receiver could not admit
    /// ([`crate::federation::link::proposal`]): [`Operation::Receive`] where each such message is
    /// a [`Received::Unadmitted`] marker, committed as refused without its content, so the link
    /// moves on past it. A batch whose every message was admitted is still proposed as
    /// [`Operation::Receive`], which builds before this one apply too.
    ReceiveMarked {
        from: OfficeCode,
        messages: Vec<Received>,
    },
}

/// One message of a delivered batch, as the receiver admitted it ([`Operation::ReceiveMarked`]).
/// New variants go at the end.
// Nearly every element of a batch is the large variant: boxing it would cost an allocation
// per message to save room only in the rare marker.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Received {
    /// Admitted: applied by the rules on receipt (which may still refuse it).
    Message(Envelope),
    /// On its link, in sequence and within the budgets, but not admissible: a message kind this
    /// build does not know, a body that does not decode, or a field the case engine refuses.
    /// Only its number, why (`code`: `unknown_message_kind` or `invalid_message`) and a bounded
    /// reason are kept; it is committed as refused.
    Unadmitted {
        seq: u64,
        code: String,
        reason: String,
    },
}

impl Received {
    /// The message's number on its link.
    pub fn seq(&self) -> u64 {
        match self {
            Received::Message(envelope) => envelope.seq,
            Received::Unadmitted { seq, .. } => *seq,
        }
    }
}

impl Operation {
    /// Whether this operation may share a log entry with others ([`Operation::Batch`]): an
    /// officer's case work, audited or not. Everything else (federation bookkeeping, ticks,
    /// accounts, audit batches, a batch) goes in an entry of its own.
    pub fn gathers(&self) -> bool {
        match self {
            Operation::File { .. } | Operation::FileSealed { .. } | Operation::Act { .. } => true,
            Operation::Audited { op, .. } => {
                matches!(
                    **op,
                    Operation::File { .. } | Operation::FileSealed { .. } | Operation::Act { .. }
                )
            }
            _ => false,
        }
    }

    /// Operations another replica of the office may propose through this one (the Propose
    /// RPC, host certificates only): account changes and audit batches. Officers' case work is
    /// forwarded as the officer's own call, with its token, and checked again at the leader.
    pub fn forwardable(&self) -> bool {
        match self {
            Operation::Officers { .. } | Operation::Audit { .. } => true,
            // The public surface's own writes (`crate::public`): a filing and a petitioner's
            // evaluation, with no officer behind them, proposed by a host of the office.
            Operation::FileSealed { caller, .. } => caller == PUBLIC_CALLER,
            Operation::Act {
                command: CaseCommand::Evaluate { .. },
                caller,
                ..
            } => caller == PUBLIC_CALLER,
            Operation::Audited { op, .. } => matches!(**op, Operation::Officers { .. }),
            _ => false,
        }
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.op {
            Operation::File { .. } | Operation::FileSealed { .. } => {
                write!(f, "file@{}", self.at)
            }
            Operation::FileGroup { group, .. } => {
                write!(f, "file-group({})@{}", group.petitioners(), self.at)
            }
            Operation::Act { case_id, .. } => write!(f, "act({case_id})@{}", self.at),
            Operation::Tick => write!(f, "tick@{}", self.at),
            Operation::Supervise { case_id, .. } => write!(f, "supervise({case_id})@{}", self.at),
            Operation::Receive { from, envelopes } => {
                write!(f, "receive({from}, {})@{}", envelopes.len(), self.at)
            }
            Operation::ReceiveMarked { from, messages } => {
                write!(f, "receive({from}, {}, marked)@{}", messages.len(), self.at)
            }
            Operation::Acked { to, through, .. } => write!(f, "acked({to}, {through})@{}", self.at),
            Operation::Officers { change } => {
                write!(
                    f,
                    "officers({}, {})@{}",
                    change.name(),
                    change.user(),
                    self.at
                )
            }
            Operation::Audit { records } => write!(f, "audit({})@{}", records.len(), self.at),
            Operation::NotificationSent { .. } => write!(f, "notification-sent@{}", self.at),
            Operation::Desk { change, .. } => write!(f, "desk({})@{}", change.name(), self.at),
            Operation::Session { command, .. } | Operation::SessionOnce { command, .. } => {
                write!(f, "session-{}@{}", command.name(), self.at)
            }
            Operation::SessionFile { session, .. } => {
                write!(f, "file-in-session({session})@{}", self.at)
            }
            Operation::NoticePolicy { .. } => write!(f, "notice-policy@{}", self.at),
            Operation::Audited { op, .. } => {
                let inner = Request {
                    at: self.at,
                    op: (**op).clone(),
                };
                write!(f, "audited {inner}")
            }
            Operation::Batch { operations } => {
                write!(f, "batch({})@{}", operations.len(), self.at)
            }
        }
    }
}

/// A federation message the receiver refused: it changed nothing there, and the sender learns
/// why (a refused handoff gives the case back to the sender).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub seq: u64,
    pub code: String,
    pub reason: String,
}

/// Why the state machine refused an operation. Deterministic: every replica refuses alike, and a
/// refused operation changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectKind {
    /// The input is malformed (bad code, field too long, ...).
    Invalid,
    /// The statute forbids this transition in the case's current state.
    Forbidden,
    /// No such case at this office.
    NotFound,
    /// The request id was used before for another operation or another case.
    AlreadyExists,
}

/// What applying one entry produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// The case after the operation, as the case engine's versioned document.
    Case {
        document: Vec<u8>,
    },
    Rejected {
        kind: RejectKind,
        code: String,
        message: String,
    },
    Ticked {
        events: u32,
    },
    /// What a Deliver batch did at the receiver.
    Delivered {
        applied_through: u64,
        refused: Vec<Refusal>,
    },
    /// A supervision order as the issuing office recorded it (JSON).
    Order {
        document: Vec<u8>,
    },
    /// An officer account after a change (the record, password hash included: it stays in the
    /// node, the APIs answer with [`OfficerRecord::public_view`]).
    Officer {
        record: Box<OfficerRecord>,
    },
    /// Membership and blank entries.
    Nothing,
    /// A batch's responses, one per operation, in order.
    Batch {
        responses: Vec<Response>,
    },
    /// A department, task, meeting, intake point or proxy record after a change (JSON).
    Desk {
        document: Vec<u8>,
    },
    /// A joint reception session's record as this office holds it (JSON).
    Session {
        document: Vec<u8>,
    },
    /// An office's notice policy after a change (JSON; `null` when cleared).
    Notice {
        document: Vec<u8>,
    },
}

openraft::declare_raft_types!(
    /// The Raft types of one office's group.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        // A file in the office's snapshot folder (`machine::snapshot`): never held in memory.
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, NodeInfo>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, NodeInfo>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type Vote = openraft::Vote<NodeId>;
