//! A recorded client history: every operation a client invoked, when it was invoked and when its
//! answer came (monotonic nanoseconds since the recorder's origin), by which client ("process"),
//! and what came back. The checkers read nothing else.
//!
//! Outcomes follow Jepsen's convention:
//! - `Ok`: the office answered; the operation took effect (or, for a refusal, looked and changed
//!   nothing) at one instant between invocation and completion.
//! - `Fail`: the request never reached an office (no connection): it certainly had no effect.
//! - `Unknown`: timed out, connection lost, "unavailable": it may or may not have happened, at any
//!   instant after its invocation.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use liandong_domain::Case;
use serde_json::{json, Value};

/// A client's number. Operations of one process are sequential.
pub type ProcessId = usize;

/// The officer commands the workload sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Command {
    Accept,
    Decline,
    Extend,
    Reply,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Accept => "accept",
            Command::Decline => "decline",
            Command::Extend => "extend",
            Command::Reply => "reply",
        }
    }
}

/// What a client asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Register a case; a retry carries the same request id and must not make a second case.
    File { request_id: String },
    /// An officer command on a case.
    Act { case_id: String, command: Command },
    /// A linearizable read of a case.
    Read { case_id: String },
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::File { .. } => "file",
            Op::Act { .. } => "act",
            Op::Read { .. } => "read",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::File { request_id } => write!(f, "file(req {request_id})"),
            Op::Act { case_id, command } => write!(f, "{}({case_id})", command.as_str()),
            Op::Read { case_id } => write!(f, "read({case_id})"),
        }
    }
}

/// A case as one reply carried it: enough to check the models and durability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseView {
    pub case_id: String,
    /// History entries before those the reply carried: 0 for a whole history (a read, a
    /// filing), the case's length before the write for a write's reply (which carries the
    /// entries the write added).
    pub start: u32,
    pub status: String,
    /// The history's event kinds, in order.
    pub kinds: Vec<String>,
    /// The history's entry hashes, in order (the hash chain).
    pub hashes: Vec<String>,
}

impl CaseView {
    pub fn from_case(case: &Case) -> CaseView {
        CaseView {
            case_id: case.id.to_string(),
            start: case.history_start.entries,
            status: case.status.as_str().to_string(),
            kinds: case.history.iter().map(|e| e.kind.clone()).collect(),
            hashes: case.history.iter().map(|e| e.hash.clone()).collect(),
        }
    }

    pub fn from_document(document: &[u8]) -> Result<CaseView, String> {
        Case::from_bytes(document)
            .map(|case| CaseView::from_case(&case))
            .map_err(|e| format!("bad case document: {e}"))
    }

    /// A view with these kinds and made-up hashes (for tests of the checkers).
    pub fn synthetic(case_id: &str, kinds: &[&str]) -> CaseView {
        CaseView {
            case_id: case_id.to_string(),
            start: 0,
            status: String::new(),
            kinds: kinds.iter().map(|k| k.to_string()).collect(),
            hashes: (0..kinds.len())
                .map(|i| format!("{case_id}#{}", kinds[..=i].join(",")))
                .collect(),
        }
    }
}

/// What a completed operation observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// The case as the reply carried it (after the write, or as read).
    Case(CaseView),
    /// The office refused the command by the statute's rules: nothing changed.
    Rejected { code: String },
    /// The office holds no such case.
    NotFound,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok(Observed),
    /// Certainly had no effect (the request never left the client).
    Fail(String),
    /// May or may not have had an effect.
    Unknown(String),
}

impl Outcome {
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok(_))
    }

    pub fn case(&self) -> Option<&CaseView> {
        match self {
            Outcome::Ok(Observed::Case(view)) => Some(view),
            _ => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok(Observed::Case(view)) => {
                write!(f, "ok {} [{}]", view.case_id, view.kinds.join(","))
            }
            Outcome::Ok(Observed::Rejected { code }) => write!(f, "rejected {code}"),
            Outcome::Ok(Observed::NotFound) => write!(f, "not found"),
            Outcome::Fail(why) => write!(f, "fail ({why})"),
            Outcome::Unknown(why) => write!(f, "unknown ({why})"),
        }
    }
}

/// One operation of the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// Position in the history (invocation order).
    pub index: usize,
    pub process: ProcessId,
    pub invoke_ns: u64,
    /// When the client got its answer or gave up.
    pub complete_ns: u64,
    pub op: Op,
    pub outcome: Outcome,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{} p{} [{:.3}ms..{:.3}ms] {} -> {}",
            self.index,
            self.process,
            self.invoke_ns as f64 / 1e6,
            self.complete_ns as f64 / 1e6,
            self.op,
            self.outcome
        )
    }
}

/// A whole recorded history.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub ops: Vec<Operation>,
}

/// Counts for the test's printout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    pub operations: usize,
    pub ok: usize,
    pub failed: usize,
    pub unknown: usize,
    pub files_acknowledged: usize,
    pub acts_applied: usize,
    pub acts_rejected: usize,
    pub reads_ok: usize,
    pub request_ids: usize,
    pub request_ids_unresolved: usize,
    pub processes: usize,
}

impl Figures {
    pub fn json(&self) -> Value {
        json!({
            "operations": self.operations,
            "ok": self.ok,
            "failed": self.failed,
            "unknown": self.unknown,
            "files_acknowledged": self.files_acknowledged,
            "acts_applied": self.acts_applied,
            "acts_rejected": self.acts_rejected,
            "reads_ok": self.reads_ok,
            "request_ids": self.request_ids,
            "request_ids_unresolved": self.request_ids_unresolved,
            "processes": self.processes,
        })
    }
}

impl History {
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Appends a finished operation (tests build histories by hand with this).
    pub fn push(
        &mut self,
        process: ProcessId,
        invoke_ns: u64,
        complete_ns: u64,
        op: Op,
        outcome: Outcome,
    ) -> usize {
        let index = self.ops.len();
        self.ops.push(Operation {
            index,
            process,
            invoke_ns,
            complete_ns,
            op,
            outcome,
        });
        index
    }

    /// For every request id: the case ids its acknowledged attempts returned (more than one is a
    /// duplicate registration).
    pub fn cases_by_request(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for op in &self.ops {
            if let Op::File { request_id } = &op.op {
                let entry = map.entry(request_id.clone()).or_default();
                if let Some(view) = op.outcome.case() {
                    entry.insert(view.case_id.clone());
                }
            }
        }
        map
    }

    /// Request ids no attempt of which was acknowledged, but some attempt may have reached the
    /// office (so each may have registered one case nobody was told about).
    pub fn unresolved_requests(&self) -> BTreeSet<String> {
        let mut maybe = BTreeSet::new();
        let mut resolved = BTreeSet::new();
        for op in &self.ops {
            if let Op::File { request_id } = &op.op {
                match &op.outcome {
                    Outcome::Ok(_) => {
                        resolved.insert(request_id.clone());
                    }
                    Outcome::Unknown(_) => {
                        maybe.insert(request_id.clone());
                    }
                    Outcome::Fail(_) => {}
                }
            }
        }
        maybe.difference(&resolved).cloned().collect()
    }

    /// Every case id some acknowledged operation returned.
    pub fn acknowledged_cases(&self) -> BTreeSet<String> {
        self.ops
            .iter()
            .filter_map(|op| match (&op.op, op.outcome.case()) {
                (Op::File { .. }, Some(view)) => Some(view.case_id.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn figures(&self) -> Figures {
        let mut figures = Figures {
            operations: self.ops.len(),
            ..Figures::default()
        };
        let mut processes = BTreeSet::new();
        for op in &self.ops {
            processes.insert(op.process);
            match &op.outcome {
                Outcome::Ok(observed) => {
                    figures.ok += 1;
                    match (&op.op, observed) {
                        (Op::File { .. }, Observed::Case(_)) => figures.files_acknowledged += 1,
                        (Op::Act { .. }, Observed::Case(_)) => figures.acts_applied += 1,
                        (Op::Act { .. }, _) => figures.acts_rejected += 1,
                        (Op::Read { .. }, _) => figures.reads_ok += 1,
                        _ => {}
                    }
                }
                Outcome::Fail(_) => figures.failed += 1,
                Outcome::Unknown(_) => figures.unknown += 1,
            }
        }
        figures.request_ids = self.cases_by_request().len();
        figures.request_ids_unresolved = self.unresolved_requests().len();
        figures.processes = processes.len();
        figures
    }
}

/// Records a history from many concurrent clients. Cheap to clone (shared).
#[derive(Clone)]
pub struct Recorder {
    origin: Instant,
    ops: Arc<Mutex<Vec<Operation>>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            origin: Instant::now(),
            ops: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Operation>> {
        // A panicking client cannot leave the vector half-written: every change is one push/set.
        self.ops
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Nanoseconds since this recorder was made (monotonic).
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Records an invocation (call it just before sending); returns its index for `complete`.
    pub fn invoke(&self, process: ProcessId, op: Op) -> usize {
        let mut ops = self.lock();
        let index = ops.len();
        let now = self.now_ns();
        ops.push(Operation {
            index,
            process,
            invoke_ns: now,
            complete_ns: now,
            op,
            outcome: Outcome::Unknown("pending".to_string()),
        });
        index
    }

    /// Records the answer (call it as soon as it arrived).
    pub fn complete(&self, index: usize, outcome: Outcome) {
        let now = self.now_ns();
        let mut ops = self.lock();
        if let Some(op) = ops.get_mut(index) {
            op.complete_ns = now;
            op.outcome = outcome;
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The history so far (an operation still pending counts as unknown).
    pub fn history(&self) -> History {
        History {
            ops: self.lock().clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(id: &str) -> Op {
        Op::File {
            request_id: id.to_string(),
        }
    }

    #[test]
    fn requests_map_to_their_cases_and_unresolved_ones_are_found() {
        let mut h = History::default();
        let case = |id: &str| Outcome::Ok(Observed::Case(CaseView::synthetic(id, &["registered"])));
        h.push(0, 0, 5, file("a"), Outcome::Unknown("timeout".into()));
        h.push(0, 6, 9, file("a"), case("c1"));
        h.push(1, 0, 5, file("b"), Outcome::Unknown("timeout".into()));
        h.push(2, 0, 5, file("c"), Outcome::Fail("refused".into()));
        let map = h.cases_by_request();
        assert_eq!(map["a"], BTreeSet::from(["c1".to_string()]));
        assert!(map["b"].is_empty());
        assert_eq!(h.unresolved_requests(), BTreeSet::from(["b".to_string()]));
        assert_eq!(h.acknowledged_cases(), BTreeSet::from(["c1".to_string()]));
        let figures = h.figures();
        assert_eq!((figures.ok, figures.unknown, figures.failed), (1, 2, 1));
        assert_eq!(figures.request_ids, 3);
    }

    #[test]
    fn the_recorder_keeps_invocation_order_and_times() {
        let recorder = Recorder::new();
        let a = recorder.invoke(0, file("a"));
        let b = recorder.invoke(1, file("b"));
        recorder.complete(b, Outcome::Fail("x".into()));
        let h = recorder.history();
        assert_eq!(h.ops[a].outcome, Outcome::Unknown("pending".into()));
        assert!(h.ops[b].complete_ns >= h.ops[b].invoke_ns);
        assert!(h.ops[b].invoke_ns >= h.ops[a].invoke_ns);
    }
}
