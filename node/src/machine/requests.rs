//! Request records: what a client request did, so that a retry is answered as the first time
//! rather than applied again, kept for the clients' retry horizon and then pruned by the tick in
//! bounded steps.
//!
//! A request id belongs to its caller: the record sits under (caller, request id) and names the
//! operation and the case the id was used for. The same id for another operation or another case
//! is refused (`ALREADY_EXISTS`), never answered with someone else's case. The reply is kept
//! compactly: the document the first answer carried (the case's header and the history entries
//! the request added), not a copy of the case with its history.
//!
//! A request that names no case is kept the same way under its family's own key
//! ([`NamedRequestRecord`]): a session command (`Cases.Session`, `session-retry/`) with the
//! session it named or made, a desk change without a case (`Desks.Change`: a department, intake
//! point or proxy added, a department disabled, a meeting about no case; `desk-retry/`) with the
//! department, point, proxy or meeting it named or made; and the record the first answer carried.
//! A caller's request id serves one request of one kind: an id used for a case is refused for a
//! session command or a desk change, and every other way round.

use liandong_domain::{echo, CaseId, Millis, HOUR_MS};
use serde::{Deserialize, Serialize};

use super::apply::{refused, ApplyError, Refused};
use super::{keys, Read};
use crate::raft::types::{RejectKind, Response};
use crate::store::codec::{decode, encode};
use crate::store::Txn;

/// The longest request id: a client sends a short random id. A longer one is refused, not
/// silently left undeduplicated.
pub const REQUEST_ID_BYTES_MAX: usize = 64;
/// The longest caller name a request record keys.
pub const CALLER_BYTES_MAX: usize = 256;
/// How long a client may retry a request and get the first answer, in stamped time: its record
/// expires then (a client that retries later risks a second effect, as with any horizon).
pub const RETRY_HORIZON_MS: Millis = 24 * HOUR_MS;
/// Expired records one tick deletes at most; the rest wait for the next tick. Above any
/// sustained request rate an office can take per tick interval, so pruning keeps up.
pub const PRUNE_RECORDS_MAX: usize = 4_096;

/// What one request did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// `file` or the command's name; empty in a record converted from format 1, which did not
    /// keep it (any operation on its case is then a retry).
    pub operation: String,
    /// The case the request registered or acted on.
    pub case_id: CaseId,
    /// When it was applied (stamped time); the record expires [`RETRY_HORIZON_MS`] later.
    pub at: Millis,
    /// The case document the first answer carried.
    #[serde(with = "serde_bytes")]
    pub reply: Vec<u8>,
}

/// The version of [`NamedRequestRecord`] this build writes.
pub const NAMED_REQUEST_VERSION: u16 = 1;

/// What one request that names no case did (`session-retry/<caller>\0<request id>` for a
/// session command, `desk-retry/<caller>\0<request id>` for a desk change). Its first version
/// kept session commands only, with the same fields in the same order (the target was called
/// `session`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedRequestRecord {
    /// [`NAMED_REQUEST_VERSION`].
    pub v: u16,
    /// The command's name (`schedule`, `answer`, `book`, `recording`; `add_department`,
    /// `hold_meeting`, ...).
    pub operation: String,
    /// What the request named, or made: a session; a department, intake point, proxy agent or
    /// meeting.
    #[serde(alias = "session")]
    pub target: String,
    /// When it was applied (stamped time); the record expires [`RETRY_HORIZON_MS`] later.
    pub at: Millis,
    /// The record the first answer carried (the session's; the desk's document).
    #[serde(with = "serde_bytes")]
    pub reply: Vec<u8>,
}

/// The kinds of request that name no case, each with its own records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    /// `Cases.Session`.
    Session,
    /// `Desks.Change` of a change about no case.
    Desk,
}

impl Family {
    const ALL: [Family; 2] = [Family::Session, Family::Desk];

    fn key(self, caller: &str, request_id: &str) -> Vec<u8> {
        match self {
            Family::Session => keys::session_retry(caller, request_id),
            Family::Desk => keys::desk_retry(caller, request_id),
        }
    }

    fn word(self) -> &'static str {
        match self {
            Family::Session => "session",
            Family::Desk => "desk",
        }
    }

    fn response(self, document: Vec<u8>) -> Response {
        match self {
            Family::Session => Response::Session { document },
            Family::Desk => Response::Desk { document },
        }
    }
}

/// A request that names no case as deduplication sees it.
pub(super) struct NamedScope<'a> {
    pub family: Family,
    pub caller: &'a str,
    pub request_id: &'a str,
    /// The command's name.
    pub operation: &'static str,
    /// What the command names (None for one that makes it: a session scheduled, a department
    /// added, ...: then the operation alone must match).
    pub target: Option<&'a str>,
}

fn reused(request_id: &str, used_for: &str, on: &str) -> Refused {
    refused(
        RejectKind::AlreadyExists,
        "request_id_reused",
        format!(
            "request id {:?} was used for {used_for} on {on}: a new request needs a new id",
            echo(request_id)
        ),
    )
}

/// The answer a request that names no case already got, or the refusal of an id used for
/// something else (another command or target, a case, the other family); None for a request
/// not seen within the retry horizon.
pub(super) fn replay_named(
    reader: &impl Read,
    scope: &NamedScope<'_>,
) -> Result<Option<Result<Response, Refused>>, ApplyError> {
    if let Some(reason) = check_request_id(scope.request_id, scope.caller) {
        return Ok(Some(Err(refused(
            RejectKind::Invalid,
            "bad_request_id",
            reason,
        ))));
    }
    if let Some(bytes) = reader.get(&keys::retry(scope.caller, scope.request_id))? {
        let record: RequestRecord = decode(&bytes)?;
        let used_for = match record.operation.as_str() {
            "" => "another request",
            operation => operation,
        };
        let on = format!("case {}", record.case_id);
        return Ok(Some(Err(reused(scope.request_id, used_for, &on))));
    }
    for family in Family::ALL {
        let Some(bytes) = reader.get(&family.key(scope.caller, scope.request_id))? else {
            continue;
        };
        let record: NamedRequestRecord = decode(&bytes)?;
        let same = family == scope.family
            && record.operation == scope.operation
            && scope.target.is_none_or(|target| target == record.target);
        if !same {
            let used_for = format!("{} {}", family.word(), record.operation);
            let on = format!("{} {}", family.word(), record.target);
            return Ok(Some(Err(reused(scope.request_id, &used_for, &on))));
        }
        return Ok(Some(Ok(family.response(record.reply))));
    }
    Ok(None)
}

/// Keeps what a request that names no case did, and when its record expires.
pub(super) fn remember_named(
    txn: &mut Txn<'_>,
    scope: &NamedScope<'_>,
    target: &str,
    at: Millis,
    reply: &[u8],
) {
    let record = NamedRequestRecord {
        v: NAMED_REQUEST_VERSION,
        operation: scope.operation.to_string(),
        target: target.to_string(),
        at,
        reply: reply.to_vec(),
    };
    let key = scope.family.key(scope.caller, scope.request_id);
    txn.put(keys::expiry(record.at, &key), Vec::new());
    txn.put(key, encode(&record));
}

/// A request as deduplication sees it.
pub(super) struct Scope<'a> {
    pub caller: &'a str,
    pub request_id: &'a str,
    /// `file` or the command's name.
    pub operation: &'static str,
    /// The case an `Act` names (None for a filing, whose case is made by it).
    pub case_id: Option<&'a CaseId>,
}

/// Why a request id or caller cannot key a record; None when it can.
pub fn check_request_id(request_id: &str, caller: &str) -> Option<String> {
    if request_id.is_empty() {
        return Some("the request id is empty".to_string());
    }
    if request_id.len() > REQUEST_ID_BYTES_MAX {
        return Some(format!(
            "the request id has {} bytes; at most {REQUEST_ID_BYTES_MAX}",
            request_id.len()
        ));
    }
    if caller.len() > CALLER_BYTES_MAX {
        return Some(format!("the caller has more than {CALLER_BYTES_MAX} bytes"));
    }
    if request_id
        .chars()
        .chain(caller.chars())
        .any(char::is_control)
    {
        return Some("the request id and the caller may hold no control characters".to_string());
    }
    None
}

impl Scope<'_> {
    fn key(&self) -> Vec<u8> {
        keys::retry(self.caller, self.request_id)
    }

    /// Whether `record` was made by this same request.
    fn matches(&self, record: &RequestRecord) -> bool {
        let operation = record.operation.is_empty() || record.operation == self.operation;
        let case = self
            .case_id
            .is_none_or(|case_id| *case_id == record.case_id);
        operation && case
    }
}

/// The answer a request already got, or the refusal of an id used for something else; None
/// for a request not seen within the retry horizon.
pub(super) fn replay(
    reader: &impl Read,
    scope: &Scope<'_>,
) -> Result<Option<Result<Response, Refused>>, ApplyError> {
    if let Some(reason) = check_request_id(scope.request_id, scope.caller) {
        return Ok(Some(Err(refused(
            RejectKind::Invalid,
            "bad_request_id",
            reason,
        ))));
    }
    let Some(bytes) = reader.get(&scope.key())? else {
        // An id a session command or a desk change used is not this request's either.
        for family in Family::ALL {
            if let Some(bytes) = reader.get(&family.key(scope.caller, scope.request_id))? {
                let record: NamedRequestRecord = decode(&bytes)?;
                let used_for = format!("{} {}", family.word(), record.operation);
                let on = format!("{} {}", family.word(), record.target);
                return Ok(Some(Err(reused(scope.request_id, &used_for, &on))));
            }
        }
        return Ok(None);
    };
    let record: RequestRecord = decode(&bytes)?;
    if !scope.matches(&record) {
        let used_for = match record.operation.as_str() {
            "" => "another request",
            operation => operation,
        };
        let on = format!("case {}", record.case_id);
        return Ok(Some(Err(reused(scope.request_id, used_for, &on))));
    }
    Ok(Some(Ok(Response::Case {
        document: record.reply,
    })))
}

/// Keeps what the request did, and when its record expires.
pub(super) fn remember(
    txn: &mut Txn<'_>,
    scope: &Scope<'_>,
    case_id: &CaseId,
    at: Millis,
    reply: &[u8],
) {
    let record = RequestRecord {
        operation: scope.operation.to_string(),
        case_id: case_id.clone(),
        at,
        reply: reply.to_vec(),
    };
    put(txn, scope.key(), &record);
}

/// Writes a record and its expiry index entry.
pub(super) fn put(txn: &mut Txn<'_>, key: Vec<u8>, record: &RequestRecord) {
    txn.put(keys::expiry(record.at, &key), Vec::new());
    txn.put(key, encode(record));
}

/// Deletes at most [`PRUNE_RECORDS_MAX`] records whose retry horizon has passed at `now`, oldest
/// first; returns how many.
pub(super) fn prune(txn: &mut Txn<'_>, now: Millis) -> Result<usize, ApplyError> {
    let end = keys::expiry(expired_before(now), b"");
    let expired = txn.scan(keys::EXPIRY, &end, PRUNE_RECORDS_MAX)?;
    for (index_key, _) in &expired {
        if let Some(record_key) = keys::expiry_target(index_key) {
            txn.delete(record_key.to_vec());
        }
        txn.delete(index_key.clone());
    }
    Ok(expired.len())
}

/// Records made before this instant have expired at `now`.
fn expired_before(now: Millis) -> Millis {
    now.saturating_sub(RETRY_HORIZON_MS).saturating_add(1)
}

/// When the first record expires (the tick then has pruning to do), if there is any.
pub(super) fn first_expiry(reader: &impl Read) -> Result<Option<Millis>, rocksdb::Error> {
    let end = keys::expiry(Millis::MAX, b"");
    let first = reader.scan(keys::EXPIRY, &end, 1)?;
    Ok(first
        .first()
        .and_then(|(key, _)| keys::expiry_time(key))
        .map(|at| at.saturating_add(RETRY_HORIZON_MS)))
}
