//! A linearizability checker: Wing & Gong's search with Lowe's memoization (the algorithm of
//! Jepsen's knossos "wgl" and of porcupine), over histories partitioned by key
//! (P-compositionality, Herlihy & Wing: a history is linearizable iff each object's sub-history
//! is). Every case is an independent object here.
//!
//! The search walks a doubly linked list of call and return entries ordered by time. At a call it
//! tries to linearize that operation now (the model must accept the observed output); at a return
//! whose operation is not yet linearized it backtracks. A set of (linearized operations, model
//! state) pairs already explored cuts repeated work: two paths that linearized the same operations
//! and reached the same state have the same future.
//!
//! An operation with an unknown outcome gets an infinite return time and an unconstrained output:
//! it may take effect at any point after its invocation, or never (linearized last, after every
//! observation).

use std::collections::{BTreeMap, HashSet};
use std::fmt::{self, Debug};
use std::hash::Hash;
use std::time::{Duration, Instant};

use crate::history::{Command, History, Observed, Op, Operation, Outcome};

/// A sequential specification.
pub trait Model {
    type State: Clone + Eq + Hash + Debug;
    type Input: Debug;
    type Output: Debug;
    fn init(&self) -> Self::State;
    /// The state after `input` if the model could have answered `output` (None: unobserved, any
    /// answer goes); None if it could not.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
}

/// One operation of one key's sub-history.
#[derive(Debug, Clone)]
pub struct Entry<I, O> {
    pub invoke: u64,
    /// None: unknown outcome (returns "at infinity").
    pub complete: Option<u64>,
    pub input: I,
    /// None: unknown outcome.
    pub output: Option<O>,
    /// The operation's index in the full history (for reports).
    pub index: usize,
}

/// What the search concluded about one sub-history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No linearization exists. `best` is the longest linearized prefix found (history indexes).
    Violation {
        best: Vec<usize>,
    },
    /// The step budget ran out first.
    Inconclusive {
        steps: u64,
    },
}

/// A fixed-size bit set of linearized operations.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// Wing & Gong with Lowe's cache, on one sub-history. `max_steps` bounds the work.
pub fn check_entries<M: Model>(
    model: &M,
    entries: &[Entry<M::Input, M::Output>],
    max_steps: u64,
) -> Verdict {
    let n = entries.len();
    if n == 0 {
        return Verdict::Linearizable;
    }
    // Events: (time, is_return, op). Calls sort before returns at equal times (overlapping).
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, e) in entries.iter().enumerate() {
        events.push((e.invoke, false, i));
        let ret = e.complete.unwrap_or(u64::MAX).max(e.invoke);
        events.push((ret, true, i));
    }
    events.sort();
    // Nodes: 0 = head sentinel, 1..=2n the events, 2n+1 = tail sentinel.
    let head = 0usize;
    let tail = 2 * n + 1;
    let mut next: Vec<usize> = (1..=tail + 1).collect();
    let mut prev: Vec<usize> = (0..=tail).map(|k| k.saturating_sub(1)).collect();
    next[tail] = tail;
    let mut is_call = vec![false; tail + 1];
    let mut op_of = vec![0usize; tail + 1];
    let mut ret_node = vec![0usize; n];
    for (k, &(_, is_return, op)) in events.iter().enumerate() {
        let node = k + 1;
        is_call[node] = !is_return;
        op_of[node] = op;
        if is_return {
            ret_node[op] = node;
        }
    }
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, k: usize| {
        let (p, q) = (prev[k], next[k]);
        next[p] = q;
        prev[q] = p;
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, k: usize| {
        let (p, q) = (prev[k], next[k]);
        next[p] = k;
        prev[q] = k;
    };

    let mut linearized = Bits::new(n);
    let mut cache: HashSet<(Bits, M::State)> = HashSet::new();
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut best: Vec<usize> = Vec::new();
    let mut state = model.init();
    let mut entry = next[head];
    let mut steps: u64 = 0;
    while next[head] != tail {
        steps += 1;
        if steps > max_steps {
            return Verdict::Inconclusive { steps };
        }
        if is_call[entry] {
            let op = op_of[entry];
            let e = &entries[op];
            if let Some(new_state) = model.step(&state, &e.input, e.output.as_ref()) {
                linearized.set(op);
                if cache.insert((linearized.clone(), new_state.clone())) {
                    let old = std::mem::replace(&mut state, new_state);
                    stack.push((entry, old));
                    // Lift the call and its return out of the list.
                    unlink(&mut next, &mut prev, entry);
                    unlink(&mut next, &mut prev, ret_node[op]);
                    if stack.len() > best.len() {
                        best = stack
                            .iter()
                            .map(|(k, _)| entries[op_of[*k]].index)
                            .collect();
                    }
                    entry = next[head];
                    continue;
                }
                linearized.clear(op);
            }
            entry = next[entry];
        } else {
            // A return whose operation could not be linearized before it: backtrack.
            let Some((call, old)) = stack.pop() else {
                return Verdict::Violation { best };
            };
            let op = op_of[call];
            state = old;
            linearized.clear(op);
            relink(&mut next, &mut prev, ret_node[op]);
            relink(&mut next, &mut prev, call);
            entry = next[call];
        }
    }
    Verdict::Linearizable
}

// ---- The per-case model -------------------------------------------------------------------------

/// A history event kind the model knows. Kinds raised by the deadline clocks (ticks) are not
/// client operations and are left out of observations; any other kind is `Other` and matches
/// nothing the model produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Registered,
    Accepted,
    Declined,
    Extended,
    Replied,
    Other,
}

/// Kinds only the deadline clocks raise (`Tick`), never a client command.
pub const TICK_KINDS: [&str; 5] = [
    "warned",
    "overdue",
    "return_window_lapsed",
    "evaluation_lapsed",
    "finalised",
];

impl Kind {
    pub fn parse(kind: &str) -> Option<Kind> {
        if TICK_KINDS.contains(&kind) {
            return None;
        }
        Some(match kind {
            "registered" => Kind::Registered,
            "accepted" => Kind::Accepted,
            "declined" => Kind::Declined,
            "extended" => Kind::Extended,
            "replied" => Kind::Replied,
            _ => Kind::Other,
        })
    }

    pub fn of_command(command: Command) -> Kind {
        match command {
            Command::Accept => Kind::Accepted,
            Command::Decline => Kind::Declined,
            Command::Extend => Kind::Extended,
            Command::Reply => Kind::Replied,
        }
    }
}

/// The state of one case: None before it is filed, else its history's kinds.
pub type CaseState = Option<Vec<Kind>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseInput {
    File,
    Act(Command),
    Read,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseOutput {
    Case(Vec<Kind>),
    /// A write's reply: the kinds of the entries the write added (the case's earlier history is
    /// not in it).
    Appended(Vec<Kind>),
    Rejected,
    NotFound,
    /// A reply about another case than the key: matches nothing.
    Foreign(String),
}

/// A case under the statute's rules for the commands the workload sends (node/domain engine):
/// accept and decline need a registered (undecided) case; extend needs an accepted case not yet
/// extended; reply needs an accepted case. A refused command changes nothing. Filing an existing
/// case again (same request id) answers the case as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct CaseModel;

fn status(kinds: &[Kind]) -> Kind {
    kinds
        .iter()
        .rev()
        .copied()
        .find(|k| {
            matches!(
                k,
                Kind::Registered | Kind::Accepted | Kind::Declined | Kind::Replied
            )
        })
        .unwrap_or(Kind::Other)
}

pub fn allowed(kinds: &[Kind], command: Command) -> bool {
    let status = status(kinds);
    match command {
        Command::Accept | Command::Decline => status == Kind::Registered,
        Command::Extend => status == Kind::Accepted && !kinds.contains(&Kind::Extended),
        Command::Reply => status == Kind::Accepted,
    }
}

impl Model for CaseModel {
    type State = CaseState;
    type Input = CaseInput;
    type Output = CaseOutput;

    fn init(&self) -> CaseState {
        None
    }

    fn step(
        &self,
        state: &CaseState,
        input: &CaseInput,
        output: Option<&CaseOutput>,
    ) -> Option<CaseState> {
        let (next, answer) = match (state, input) {
            (None, CaseInput::File) => {
                let kinds = vec![Kind::Registered];
                (Some(kinds.clone()), CaseOutput::Case(kinds))
            }
            // A request id already answered is answered again as the first time: the case as
            // its registration left it, whatever came after.
            (Some(_), CaseInput::File) => (state.clone(), CaseOutput::Case(vec![Kind::Registered])),
            (Some(kinds), CaseInput::Read) => (state.clone(), CaseOutput::Case(kinds.clone())),
            (None, CaseInput::Act(_) | CaseInput::Read) => (None, CaseOutput::NotFound),
            (Some(kinds), CaseInput::Act(command)) => {
                if allowed(kinds, *command) {
                    let mut after = kinds.clone();
                    after.push(Kind::of_command(*command));
                    (Some(after.clone()), CaseOutput::Case(after))
                } else {
                    (state.clone(), CaseOutput::Rejected)
                }
            }
        };
        // A write's reply shows only what it added: the command's own entry.
        let appended = match (input, &answer) {
            (CaseInput::Act(command), CaseOutput::Case(_)) => {
                Some(CaseOutput::Appended(vec![Kind::of_command(*command)]))
            }
            _ => None,
        };
        match output {
            None => Some(next),
            Some(seen) if *seen == answer || Some(seen) == appended.as_ref() => Some(next),
            Some(_) => None,
        }
    }
}

// ---- Whole histories ----------------------------------------------------------------------------

/// One key that is not linearizable (or could not be decided).
#[derive(Debug, Clone)]
pub struct KeyFailure {
    pub key: String,
    pub verdict: Verdict,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct Report {
    /// Keys (cases) checked.
    pub keys: usize,
    /// Operations that went into the check.
    pub operations: usize,
    /// Operations left out: failed (no effect), unobserved reads, filings whose case is unknown.
    pub skipped: usize,
    /// Operations whose outcome is unknown but which were checked (may or may not have happened).
    pub unknown: usize,
    pub failures: Vec<KeyFailure>,
    pub elapsed: Duration,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} operations on {} cases checked ({} of unknown outcome, {} left out) in {:.1} ms",
            self.operations,
            self.keys,
            self.unknown,
            self.skipped,
            self.elapsed.as_secs_f64() * 1e3
        )?;
        for failure in self.failures.iter().take(3) {
            write!(f, "\n{}", failure.detail)?;
        }
        if self.failures.len() > 3 {
            write!(f, "\n... and {} more cases", self.failures.len() - 3)?;
        }
        Ok(())
    }
}

/// Steps a key's search may take before it is called inconclusive.
pub const MAX_STEPS_PER_KEY: u64 = 2_000_000;

type CaseEntry = Entry<CaseInput, CaseOutput>;

fn output_of(key: &str, observed: &Observed) -> CaseOutput {
    match observed {
        Observed::Case(view) if view.case_id == key => {
            let kinds = view.kinds.iter().filter_map(|k| Kind::parse(k)).collect();
            if view.start == 0 {
                CaseOutput::Case(kinds)
            } else {
                CaseOutput::Appended(kinds)
            }
        }
        Observed::Case(view) => CaseOutput::Foreign(view.case_id.clone()),
        Observed::Rejected { .. } => CaseOutput::Rejected,
        Observed::NotFound => CaseOutput::NotFound,
    }
}

/// Splits the history by case: each operation's key and model entry, or None if it is left out.
fn partition(history: &History) -> (BTreeMap<String, Vec<CaseEntry>>, usize, usize) {
    let by_request = history.cases_by_request();
    let mut keys: BTreeMap<String, Vec<CaseEntry>> = BTreeMap::new();
    let mut skipped = 0;
    let mut unknown = 0;
    for op in &history.ops {
        let (key, input) = match &op.op {
            Op::File { request_id } => {
                let key = match op.outcome.case() {
                    Some(view) => Some(view.case_id.clone()),
                    // An unacknowledged attempt belongs to the case its request made, if known
                    // (and unambiguous: a request with two cases is a duplicate, reported apart).
                    None => by_request
                        .get(request_id)
                        .filter(|cases| cases.len() == 1)
                        .and_then(|cases| cases.iter().next().cloned()),
                };
                (key, CaseInput::File)
            }
            Op::Act { case_id, command } => (Some(case_id.clone()), CaseInput::Act(*command)),
            Op::Read { case_id } => (Some(case_id.clone()), CaseInput::Read),
        };
        let observed = match &op.outcome {
            Outcome::Ok(observed) => Some(observed),
            Outcome::Fail(_) => None,
            Outcome::Unknown(_) => None,
        };
        let certainly_no_effect = matches!(op.outcome, Outcome::Fail(_))
            || (input == CaseInput::Read && observed.is_none());
        let Some(key) = key.filter(|_| !certainly_no_effect) else {
            skipped += 1;
            continue;
        };
        if observed.is_none() {
            unknown += 1;
        }
        let entry = Entry {
            invoke: op.invoke_ns,
            complete: observed.map(|_| op.complete_ns),
            output: observed.map(|o| output_of(&key, o)),
            input,
            index: op.index,
        };
        keys.entry(key).or_default().push(entry);
    }
    (keys, skipped, unknown)
}

fn describe(key: &str, verdict: &Verdict, ops: &[&Operation]) -> String {
    let mut lines = vec![match verdict {
        Verdict::Violation { best } => format!(
            "case {key}: not linearizable ({} operations; at most {} could be linearized, in this order: {:?})",
            ops.len(),
            best.len(),
            best
        ),
        Verdict::Inconclusive { steps } => {
            format!("case {key}: undecided after {steps} search steps")
        }
        Verdict::Linearizable => format!("case {key}: linearizable"),
    }];
    let mut sorted = ops.to_vec();
    sorted.sort_by_key(|op| (op.invoke_ns, op.index));
    for op in sorted.iter().take(40) {
        lines.push(format!("  {op}"));
    }
    if sorted.len() > 40 {
        lines.push(format!("  ... {} more", sorted.len() - 40));
    }
    lines.join("\n")
}

/// Checks a whole history against [`CaseModel`], case by case.
pub fn check(history: &History) -> Report {
    check_with_budget(history, MAX_STEPS_PER_KEY)
}

pub fn check_with_budget(history: &History, max_steps_per_key: u64) -> Report {
    let start = Instant::now();
    let (keys, skipped, unknown) = partition(history);
    let mut failures = Vec::new();
    let mut operations = 0;
    for (key, entries) in &keys {
        operations += entries.len();
        let verdict = check_entries(&CaseModel, entries, max_steps_per_key);
        if verdict != Verdict::Linearizable {
            let ops: Vec<&Operation> = entries.iter().map(|e| &history.ops[e.index]).collect();
            failures.push(KeyFailure {
                key: key.clone(),
                detail: describe(key, &verdict, &ops),
                verdict,
            });
        }
    }
    Report {
        keys: keys.len(),
        operations,
        skipped,
        unknown,
        failures,
        elapsed: start.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{CaseView, Observed, Op, Outcome};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const C: &str = "5306-2026-000001";

    fn case(kinds: &[&str]) -> Outcome {
        Outcome::Ok(Observed::Case(CaseView::synthetic(C, kinds)))
    }
    fn rejected() -> Outcome {
        Outcome::Ok(Observed::Rejected {
            code: "already_accepted".into(),
        })
    }
    fn unknown() -> Outcome {
        Outcome::Unknown("timeout".into())
    }
    fn file(req: &str) -> Op {
        Op::File {
            request_id: req.into(),
        }
    }
    fn act(command: Command) -> Op {
        Op::Act {
            case_id: C.into(),
            command,
        }
    }
    fn read() -> Op {
        Op::Read { case_id: C.into() }
    }

    /// A filed case: request "r" acknowledged in [0, 10].
    fn filed() -> History {
        let mut h = History::default();
        h.push(0, 0, 10, file("r"), case(&["registered"]));
        h
    }

    fn assert_ok(h: &History) {
        let report = check(h);
        assert!(report.ok(), "expected linearizable:\n{report}");
    }
    fn assert_violation(h: &History) {
        let report = check(h);
        assert!(!report.ok(), "expected a violation: {report}");
        assert!(matches!(
            report.failures[0].verdict,
            Verdict::Violation { .. }
        ));
    }

    #[test]
    fn a_sequential_linearizable_history_passes() {
        let mut h = filed();
        h.push(
            0,
            20,
            30,
            act(Command::Accept),
            case(&["registered", "accepted"]),
        );
        h.push(1, 40, 50, read(), case(&["registered", "accepted"]));
        h.push(1, 60, 70, act(Command::Accept), rejected());
        h.push(
            0,
            80,
            90,
            act(Command::Extend),
            case(&["registered", "accepted", "extended"]),
        );
        h.push(2, 100, 110, act(Command::Extend), rejected());
        h.push(
            2,
            120,
            130,
            act(Command::Reply),
            case(&["registered", "accepted", "extended", "replied"]),
        );
        // The request id answered again, as the first time.
        h.push(0, 140, 150, file("r"), case(&["registered"]));
        let report = check(&h);
        assert!(report.ok(), "{report}");
        assert_eq!((report.keys, report.operations), (1, 8));
    }

    /// A write's reply carries only the entries it added: it is checked against the command's
    /// own entry, while reads still see whole histories (fails if partial replies are read as
    /// whole ones, or accepted whatever they show).
    #[test]
    fn a_write_reply_with_the_added_entries_only_is_checked() {
        let appended = |kinds: &[&str]| {
            let mut view = CaseView::synthetic(C, kinds);
            view.start = 1;
            Outcome::Ok(Observed::Case(view))
        };
        let mut h = filed();
        h.push(0, 20, 30, act(Command::Accept), appended(&["accepted"]));
        h.push(1, 40, 50, read(), case(&["registered", "accepted"]));
        assert_ok(&h);
        let mut h = filed();
        h.push(0, 20, 30, act(Command::Accept), appended(&["replied"]));
        assert_violation(&h);
        let mut h = filed();
        h.push(0, 20, 30, act(Command::Accept), appended(&["accepted"]));
        h.push(1, 40, 50, read(), case(&["registered"]));
        assert_violation(&h);
    }

    #[test]
    fn a_stale_read_after_a_completed_write_fails() {
        let mut h = filed();
        h.push(
            0,
            20,
            30,
            act(Command::Accept),
            case(&["registered", "accepted"]),
        );
        h.push(1, 40, 50, read(), case(&["registered"]));
        assert_violation(&h);
    }

    #[test]
    fn a_lost_acknowledged_write_fails() {
        // The extension was acknowledged, a later read no longer shows it.
        let mut h = filed();
        h.push(
            0,
            20,
            30,
            act(Command::Accept),
            case(&["registered", "accepted"]),
        );
        h.push(
            0,
            40,
            50,
            act(Command::Extend),
            case(&["registered", "accepted", "extended"]),
        );
        h.push(1, 60, 70, read(), case(&["registered", "accepted"]));
        assert_violation(&h);
        // An acknowledged filing whose case is later not found.
        let mut h = filed();
        h.push(1, 20, 30, read(), Outcome::Ok(Observed::NotFound));
        assert_violation(&h);
        // A write acknowledged, then applied a second time (a retry made it happen twice): the
        // second extension would have been refused.
        let mut h = filed();
        h.push(
            0,
            20,
            30,
            act(Command::Accept),
            case(&["registered", "accepted"]),
        );
        h.push(
            1,
            40,
            50,
            read(),
            case(&["registered", "accepted", "accepted"]),
        );
        assert_violation(&h);
    }

    #[test]
    fn a_double_acceptance_fails() {
        // Two concurrent accepts must not both succeed.
        let mut h = filed();
        h.push(
            0,
            20,
            50,
            act(Command::Accept),
            case(&["registered", "accepted"]),
        );
        h.push(
            1,
            25,
            55,
            act(Command::Accept),
            case(&["registered", "accepted"]),
        );
        assert_violation(&h);
    }

    #[test]
    fn concurrent_operations_pass_in_either_order() {
        for first_wins in [true, false] {
            let mut h = filed();
            let (a, b) = if first_wins {
                (case(&["registered", "accepted"]), rejected())
            } else {
                (rejected(), case(&["registered", "accepted"]))
            };
            h.push(0, 20, 50, act(Command::Accept), a);
            h.push(1, 25, 55, act(Command::Accept), b);
            // A read overlapping both may see either state.
            h.push(2, 21, 60, read(), case(&["registered"]));
            h.push(3, 22, 60, read(), case(&["registered", "accepted"]));
            assert_ok(&h);
        }
        // A write and a read overlapping: the read may come before or after.
        for seen in [&["registered"][..], &["registered", "accepted"][..]] {
            let mut h = filed();
            h.push(
                0,
                20,
                50,
                act(Command::Accept),
                case(&["registered", "accepted"]),
            );
            h.push(1, 30, 40, read(), case(seen));
            assert_ok(&h);
        }
    }

    #[test]
    fn an_unknown_operation_may_or_may_not_take_effect() {
        for seen in [&["registered"][..], &["registered", "accepted"][..]] {
            let mut h = filed();
            h.push(0, 20, 30, act(Command::Accept), unknown());
            h.push(1, 40, 50, read(), case(seen));
            h.push(1, 60, 70, read(), case(seen));
            assert_ok(&h);
        }
        // It may take effect late, long after the client gave up...
        let mut h = filed();
        h.push(0, 20, 30, act(Command::Accept), unknown());
        h.push(1, 40, 50, read(), case(&["registered"]));
        h.push(1, 60, 70, read(), case(&["registered", "accepted"]));
        assert_ok(&h);
        // ...but once seen it cannot un-happen.
        let mut h = filed();
        h.push(0, 20, 30, act(Command::Accept), unknown());
        h.push(1, 40, 50, read(), case(&["registered", "accepted"]));
        h.push(1, 60, 70, read(), case(&["registered"]));
        assert_violation(&h);
        // And it cannot take effect before it was invoked.
        let mut h = filed();
        h.push(1, 15, 18, read(), case(&["registered", "accepted"]));
        h.push(0, 20, 30, act(Command::Accept), unknown());
        assert_violation(&h);
        // A failed (never sent) operation has no effect at all.
        let mut h = filed();
        h.push(
            0,
            20,
            30,
            act(Command::Accept),
            Outcome::Fail("refused".into()),
        );
        h.push(1, 40, 50, read(), case(&["registered", "accepted"]));
        assert_violation(&h);
    }

    #[test]
    fn an_unknown_filing_retried_under_its_request_id_is_one_case() {
        let mut h = History::default();
        h.push(0, 0, 10, file("r"), unknown());
        h.push(0, 11, 20, file("r"), case(&["registered"]));
        h.push(
            0,
            30,
            40,
            act(Command::Accept),
            case(&["registered", "accepted"]),
        );
        h.push(1, 50, 60, file("r"), case(&["registered"]));
        assert_ok(&h);
        // A filing under the same request id answered with the case as later writes left it is
        // a violation: the answer would show a state from after the registration it repeats.
        h.push(1, 70, 80, file("r"), case(&["registered", "accepted"]));
        assert_violation(&h);
    }

    #[test]
    fn a_reply_about_another_case_fails() {
        let mut h = filed();
        h.push(
            1,
            20,
            30,
            read(),
            Outcome::Ok(Observed::Case(CaseView::synthetic(
                "5306-2026-000002",
                &["registered"],
            ))),
        );
        assert_violation(&h);
    }

    #[test]
    fn tick_kinds_are_ignored_and_unknown_kinds_are_not() {
        let mut h = filed();
        h.push(1, 20, 30, read(), case(&["registered", "warned"]));
        assert_ok(&h);
        let mut h = filed();
        h.push(1, 20, 30, read(), case(&["registered", "handoff_started"]));
        assert_violation(&h);
    }

    /// A random linearizable history: `clients` processes on `cases` cases; each operation takes
    /// effect at a random instant inside its interval; `unknown_rate` of acts are unobserved.
    pub(crate) fn random_history(
        seed: u64,
        ops: usize,
        cases: usize,
        clients: usize,
        unknown_rate: f64,
    ) -> History {
        let mut rng = StdRng::seed_from_u64(seed);
        let ids: Vec<String> = (1..=cases).map(|i| format!("5306-2026-{i:06}")).collect();
        // Plan: per client, consecutive intervals; a random effect point inside each.
        struct Planned {
            process: usize,
            invoke: u64,
            complete: u64,
            point: u64,
            op: Op,
            unknown: bool,
        }
        let mut planned = Vec::new();
        let per_client = ops / clients;
        let mut filed_by = vec![None::<u64>; cases];
        for (i, slot) in filed_by.iter_mut().enumerate() {
            // Case i is filed by client i % clients in [i*10, i*10+5].
            *slot = Some(i as u64 * 10 + 5);
            planned.push(Planned {
                process: i % clients,
                invoke: i as u64 * 10,
                complete: i as u64 * 10 + 5,
                point: i as u64 * 10 + 2,
                op: Op::File {
                    request_id: format!("r{i}"),
                },
                unknown: false,
            });
        }
        let start = cases as u64 * 10 + 10;
        for process in 0..clients {
            let mut t = start + rng.gen_range(0..50);
            for _ in 0..per_client.saturating_sub(cases / clients) {
                let invoke = t;
                let complete = t + rng.gen_range(1..200);
                let point = rng.gen_range(invoke..=complete);
                let case_id = ids[rng.gen_range(0..cases)].clone();
                let op = match rng.gen_range(0..10) {
                    0..=2 => Op::Read { case_id },
                    3..=5 => Op::Act {
                        case_id,
                        command: Command::Accept,
                    },
                    6 => Op::Act {
                        case_id,
                        command: Command::Decline,
                    },
                    7 => Op::Act {
                        case_id,
                        command: Command::Extend,
                    },
                    _ => Op::Act {
                        case_id,
                        command: Command::Reply,
                    },
                };
                let unknown = matches!(op, Op::Act { .. }) && rng.gen_bool(unknown_rate);
                planned.push(Planned {
                    process,
                    invoke,
                    complete,
                    point,
                    op,
                    unknown,
                });
                t = complete + rng.gen_range(1..20);
            }
        }
        // Apply at the effect points, in order; an unknown op takes effect or not at random.
        let mut order: Vec<usize> = (0..planned.len()).collect();
        order.sort_by_key(|&i| (planned[i].point, i));
        let mut state: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
        let mut outcomes: Vec<Option<Outcome>> = vec![None; planned.len()];
        for i in order {
            let p = &planned[i];
            let name = |kind: Kind| match kind {
                Kind::Registered => "registered",
                Kind::Accepted => "accepted",
                Kind::Declined => "declined",
                Kind::Extended => "extended",
                Kind::Replied => "replied",
                Kind::Other => "other",
            };
            let view = |id: &str, kinds: &[&str]| {
                Outcome::Ok(Observed::Case(CaseView::synthetic(id, kinds)))
            };
            let outcome = match &p.op {
                Op::File { request_id } => {
                    let id = ids[request_id[1..].parse::<usize>().unwrap()].clone();
                    let kinds = state.entry(id.clone()).or_insert(vec!["registered"]);
                    view(&id, kinds)
                }
                Op::Read { case_id } => match state.get(case_id) {
                    Some(kinds) => view(case_id, kinds),
                    None => Outcome::Ok(Observed::NotFound),
                },
                Op::Act { case_id, command } => {
                    if p.unknown && rng.gen_bool(0.5) {
                        Outcome::Unknown("timeout".into())
                    } else {
                        let outcome = match state.get_mut(case_id) {
                            None => Outcome::Ok(Observed::NotFound),
                            Some(kinds) => {
                                let parsed: Vec<Kind> =
                                    kinds.iter().filter_map(|k| Kind::parse(k)).collect();
                                if allowed(&parsed, *command) {
                                    kinds.push(name(Kind::of_command(*command)));
                                    view(case_id, kinds)
                                } else {
                                    rejected()
                                }
                            }
                        };
                        if p.unknown {
                            Outcome::Unknown("timeout".into())
                        } else {
                            outcome
                        }
                    }
                }
            };
            outcomes[i] = Some(outcome);
        }
        let mut all: Vec<usize> = (0..planned.len()).collect();
        all.sort_by_key(|&i| (planned[i].invoke, i));
        let mut h = History::default();
        for i in all {
            let p = &planned[i];
            h.push(
                p.process,
                p.invoke,
                p.complete,
                p.op.clone(),
                outcomes[i].clone().unwrap(),
            );
        }
        h
    }

    #[test]
    fn random_linearizable_histories_pass() {
        for seed in 0..20 {
            let h = random_history(seed, 400, 8, 6, 0.1);
            let report = check(&h);
            assert!(report.ok(), "seed {seed}: {report}");
        }
    }

    #[test]
    fn random_histories_with_one_corrupted_read_fail() {
        let mut caught = 0;
        for seed in 0..20 {
            let mut h = random_history(seed, 400, 8, 6, 0.1);
            // Turn the last read of a case that changed after registration into a fresh
            // registration: it now contradicts what happened before it.
            let last_read = h.ops.iter().rposition(|op| {
                matches!(op.op, Op::Read { .. })
                    && op.outcome.case().is_some_and(|v| v.kinds.len() > 1)
            });
            let Some(i) = last_read else { continue };
            let id = h.ops[i].outcome.case().unwrap().case_id.clone();
            h.ops[i].outcome =
                Outcome::Ok(Observed::Case(CaseView::synthetic(&id, &["registered"])));
            let report = check(&h);
            assert!(!report.ok(), "seed {seed}: corruption of #{i} not caught");
            caught += 1;
        }
        assert!(caught >= 15, "only {caught} corruptions tried");
    }

    /// A read/write register: the classic hard case for the search (every write changes state).
    struct Register;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum RegOp {
        Write(u32),
        Read,
    }

    impl Model for Register {
        type State = u32;
        type Input = RegOp;
        type Output = u32;
        fn init(&self) -> u32 {
            0
        }
        fn step(&self, state: &u32, input: &RegOp, output: Option<&u32>) -> Option<u32> {
            match input {
                RegOp::Write(v) => Some(*v),
                RegOp::Read => match output {
                    Some(seen) if seen != state => None,
                    _ => Some(*state),
                },
            }
        }
    }

    /// `clients` processes, `ops` operations on one register, effect at a random instant of each
    /// interval; `unknown_rate` of the writes are unobserved (and take effect or not).
    fn register_history(
        seed: u64,
        ops: usize,
        clients: usize,
        unknown_rate: f64,
    ) -> Vec<Entry<RegOp, u32>> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut planned = Vec::new();
        for _process in 0..clients {
            let mut t = rng.gen_range(0..50u64);
            for _ in 0..ops / clients {
                let complete = t + rng.gen_range(1..100);
                let point = rng.gen_range(t..=complete);
                let write = rng.gen_bool(0.5);
                let unknown = write && rng.gen_bool(unknown_rate);
                let happens = !unknown || rng.gen_bool(0.5);
                planned.push((t, complete, point, write, unknown, happens));
                t = complete + rng.gen_range(1..20);
            }
        }
        let mut order: Vec<usize> = (0..planned.len()).collect();
        order.sort_by_key(|&i| (planned[i].2, i));
        let mut value = 0u32;
        let mut entries: Vec<Option<Entry<RegOp, u32>>> = vec![None; planned.len()];
        for i in order {
            let (invoke, complete, _, write, unknown, happens) = planned[i];
            let (input, output) = if write {
                let v = i as u32 + 1;
                if happens {
                    value = v;
                }
                (RegOp::Write(v), (!unknown).then_some(v))
            } else {
                (RegOp::Read, Some(value))
            };
            entries[i] = Some(Entry {
                invoke,
                complete: (!unknown).then_some(complete),
                input,
                output,
                index: i,
            });
        }
        entries.into_iter().map(Option::unwrap).collect()
    }

    #[test]
    fn a_busy_register_checks_quickly_and_a_stale_read_in_it_is_found() {
        let start = Instant::now();
        for seed in 0..5 {
            let entries = register_history(seed, 2_000, 8, 0.05);
            let verdict = check_entries(&Register, &entries, 50_000_000);
            assert_eq!(verdict, Verdict::Linearizable, "seed {seed}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{:?}",
            start.elapsed()
        );
        // A read that answers a value overwritten long before it began.
        let mut entries = register_history(3, 2_000, 8, 0.0);
        let reads: Vec<usize> = (0..entries.len())
            .filter(|&i| entries[i].input == RegOp::Read && entries[i].invoke > 2_000)
            .collect();
        let stale = reads[reads.len() / 2];
        let old_write = (0..entries.len())
            .filter(|&i| {
                matches!(entries[i].input, RegOp::Write(_))
                    && entries[i].complete.unwrap() + 500 < entries[stale].invoke
            })
            .min_by_key(|&i| entries[i].invoke)
            .unwrap();
        let RegOp::Write(v) = entries[old_write].input else {
            unreachable!()
        };
        entries[stale].output = Some(v);
        let verdict = check_entries(&Register, &entries, 50_000_000);
        assert!(matches!(verdict, Verdict::Violation { .. }), "{verdict:?}");
    }

    #[test]
    fn ten_thousand_operations_check_in_seconds() {
        let h = random_history(7, 12_000, 600, 16, 0.05);
        assert!(h.len() >= 10_000, "{}", h.len());
        let report = check(&h);
        assert!(report.ok(), "{report}");
        assert!(
            report.elapsed < Duration::from_secs(5),
            "took {:?}",
            report.elapsed
        );
        // One hot key, heavily concurrent: the memoization has to carry this.
        let h = random_history(8, 3_000, 1, 16, 0.02);
        let report = check(&h);
        assert!(report.ok(), "{report}");
        assert!(
            report.elapsed < Duration::from_secs(10),
            "took {:?}",
            report.elapsed
        );
    }
}
