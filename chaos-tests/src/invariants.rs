//! The invariants of docs/design.md that one office's chaos test can check, over the recorded
//! history and every replica's final copy of every case. Each returns `{name, ok, detail}`.
//!
//! - durability (1): everything a client was told (every acknowledged filing and command, every
//!   state a read observed) is on every replica: the case exists and its hash-chained history
//!   starts with the history the client saw.
//! - no duplicates: a request id made at most one case, a case came from one request id, and
//!   every case a replica holds is one a client was told about or one of the filings whose
//!   outcome is unknown (no more of those than such filings).
//! - integrity (7): every copy's hash chain verifies; the replicas hold identical copies; they
//!   agree on the state hash at the same applied index, and caught up to one index.
//! - linearizability (6): [`crate::linearizability`] over the history.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use liandong_domain::Case;
use serde_json::{json, Value};

use crate::cluster::FinalState;
use crate::history::History;
use crate::linearizability;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invariant {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

impl Invariant {
    fn new(name: &str, problems: Vec<String>, summary: String) -> Invariant {
        let ok = problems.is_empty();
        let detail = if ok {
            summary
        } else {
            let mut lines = vec![format!("{} problem(s); {summary}", problems.len())];
            lines.extend(problems.iter().take(10).cloned());
            if problems.len() > 10 {
                lines.push(format!("... and {} more", problems.len() - 10));
            }
            lines.join("\n")
        };
        Invariant {
            name: name.to_string(),
            ok,
            detail,
        }
    }

    pub fn json(&self) -> Value {
        json!({"name": self.name, "ok": self.ok, "detail": self.detail})
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.ok { "ok  " } else { "FAIL" };
        write!(f, "[{mark}] {}: {}", self.name, self.detail)
    }
}

/// Case id -> replica -> that copy's history hashes (None: no such case; Err: no answer).
type Chains<'a> = BTreeMap<&'a str, BTreeMap<u64, Result<Option<Vec<String>>, String>>>;

/// Durability: every state a client saw survives on every replica.
pub fn durability(history: &History, state: &FinalState) -> Invariant {
    let mut problems = Vec::new();
    let mut checked = 0usize;
    let mut files = 0usize;
    let mut writes = 0usize;
    // Parse every copy once: case id -> replica -> hashes.
    let mut hashes: Chains<'_> = BTreeMap::new();
    for (replica, copies) in &state.replicas {
        for (id, copy) in &copies.cases {
            let parsed = match copy {
                Ok(Some(document)) => Case::from_bytes(document)
                    .map(|case| Some(case.history.iter().map(|e| e.hash.clone()).collect()))
                    .map_err(|e| format!("unreadable: {e}")),
                Ok(None) => Ok(None),
                Err(e) => Err(e.clone()),
            };
            hashes.entry(id).or_default().insert(*replica, parsed);
        }
    }
    for op in &history.ops {
        let Some(view) = op.outcome.case() else {
            continue;
        };
        checked += 1;
        match op.op {
            crate::history::Op::File { .. } => files += 1,
            crate::history::Op::Act { .. } => writes += 1,
            crate::history::Op::Read { .. } => {}
        }
        for replica in state.replicas.keys() {
            let copy = hashes
                .get(view.case_id.as_str())
                .and_then(|r| r.get(replica));
            match copy {
                None | Some(Ok(None)) => problems.push(format!(
                    "replica {replica} has no case {} that {op} saw",
                    view.case_id
                )),
                Some(Err(e)) => problems.push(format!(
                    "replica {replica} could not show {}: {e}",
                    view.case_id
                )),
                Some(Ok(Some(chain))) => {
                    // A write's reply carries the entries it added, after `start` others.
                    let from = (view.start as usize).min(chain.len());
                    if view.start as usize > chain.len() || !chain[from..].starts_with(&view.hashes)
                    {
                        problems.push(format!(
                            "replica {replica}'s {} lost history {op} saw: {} entries there, {} seen (first differing at {})",
                            view.case_id,
                            chain.len(),
                            view.hashes.len(),
                            chain[from..]
                                .iter()
                                .zip(&view.hashes)
                                .position(|(a, b)| a != b)
                                .map(|at| at + from)
                                .unwrap_or(chain.len().min(from + view.hashes.len()))
                        ));
                    }
                }
            }
        }
    }
    if state.replicas.is_empty() {
        problems.push("no replica was read".to_string());
    }
    Invariant::new(
        "durability",
        problems,
        format!(
            "{checked} acknowledged answers ({files} filings, {writes} applied commands, the rest reads) found on all {} replicas",
            state.replicas.len()
        ),
    )
}

/// No duplicates: request ids and cases one to one; every case accounted for.
pub fn no_duplicates(history: &History, state: &FinalState) -> Invariant {
    let mut problems = Vec::new();
    let by_request = history.cases_by_request();
    let mut requests_of_case: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (request, cases) in &by_request {
        if cases.len() > 1 {
            problems.push(format!(
                "request {request} registered {} cases: {cases:?}",
                cases.len()
            ));
        }
        for case in cases {
            requests_of_case.entry(case).or_default().insert(request);
        }
    }
    for (case, requests) in &requests_of_case {
        if requests.len() > 1 {
            problems.push(format!(
                "case {case} was answered to different requests {requests:?}"
            ));
        }
    }
    let acknowledged = history.acknowledged_cases();
    let unresolved = history.unresolved_requests().len();
    let mut most_unexplained = 0;
    for (replica, copies) in &state.replicas {
        let present: BTreeSet<&String> = copies
            .cases
            .iter()
            .filter(|(_, copy)| matches!(copy, Ok(Some(_))))
            .map(|(id, _)| id)
            .collect();
        let unexplained: Vec<&&String> = present
            .iter()
            .filter(|id| !acknowledged.contains(id.as_str()))
            .collect();
        most_unexplained = most_unexplained.max(unexplained.len());
        if unexplained.len() > unresolved {
            problems.push(format!(
                "replica {replica} holds {} cases no client was told about, but only {unresolved} filings have an unknown outcome: {:?}",
                unexplained.len(),
                unexplained.iter().take(5).collect::<Vec<_>>()
            ));
        }
        if let Some(reported) = copies.status.as_ref().and_then(|s| s.cases) {
            if reported != present.len() as u64 {
                problems.push(format!(
                    "replica {replica} reports {reported} cases but {} were found",
                    present.len()
                ));
            }
        }
    }
    Invariant::new(
        "no duplicates",
        problems,
        format!(
            "{} request ids made {} distinct cases; {most_unexplained} further case(s) from the {unresolved} filings of unknown outcome",
            by_request.len(),
            requests_of_case.len()
        ),
    )
}

/// Integrity: hash chains verify, copies agree, state hashes agree at equal applied indexes.
pub fn integrity(state: &FinalState) -> Invariant {
    let mut problems = Vec::new();
    let mut copies_checked = 0usize;
    let mut cases: BTreeMap<&str, Vec<(u64, Case)>> = BTreeMap::new();
    for (replica, copies) in &state.replicas {
        for (id, copy) in &copies.cases {
            let Ok(Some(document)) = copy else { continue };
            copies_checked += 1;
            match Case::from_bytes(document) {
                Err(e) => problems.push(format!("replica {replica}'s {id} is unreadable: {e}")),
                Ok(case) => {
                    if case.id.to_string() != *id {
                        problems.push(format!(
                            "replica {replica} answered case {} when asked for {id}",
                            case.id
                        ));
                    }
                    if let Err(e) = case.verify_chain() {
                        problems.push(format!("replica {replica}'s {id}: hash chain broken: {e}"));
                    }
                    cases.entry(id).or_default().push((*replica, case));
                }
            }
        }
    }
    for (id, copies) in &cases {
        if copies.len() != state.replicas.len() {
            let holders: Vec<u64> = copies.iter().map(|(r, _)| *r).collect();
            problems.push(format!("case {id} is held only by replicas {holders:?}"));
        }
        for pair in copies.windows(2) {
            if pair[0].1 != pair[1].1 {
                problems.push(format!(
                    "replicas {} and {} hold different copies of {id}",
                    pair[0].0, pair[1].0
                ));
            }
        }
    }
    // State hashes: equal applied index, equal hash, in every sample.
    let mut disagreements = BTreeSet::new();
    let mut compared = 0usize;
    for sample in &state.samples {
        for a in sample {
            for b in sample {
                if a.0 < b.0 && a.1 == b.1 {
                    compared += 1;
                }
                if a.0 < b.0 && a.1 == b.1 && a.2 != b.2 {
                    disagreements.insert(format!(
                        "replicas {} and {} at applied index {} have state hashes {} and {}",
                        a.0, b.0, a.1, a.2, b.2
                    ));
                }
            }
        }
    }
    problems.extend(disagreements);
    let finals: Vec<(u64, Option<u64>, Option<String>)> = state
        .replicas
        .iter()
        .map(|(id, c)| {
            let status = c.status.as_ref();
            (
                *id,
                status.and_then(|s| s.last_applied),
                status.and_then(|s| s.state_hash.clone()),
            )
        })
        .collect();
    if !state.caught_up {
        problems.push(format!(
            "the replicas never reached one applied index and state hash: {finals:?}"
        ));
    }
    let indexes: BTreeSet<Option<u64>> = finals.iter().map(|f| f.1).collect();
    Invariant::new(
        "integrity",
        problems,
        format!(
            "{copies_checked} copies of {} cases verified; state hashes compared {compared} times at equal applied indexes in {} status samples; replicas at applied index {:?}",
            cases.len(),
            state.samples.len(),
            indexes
        ),
    )
}

/// Linearizability of the client history, case by case.
pub fn linearizability(history: &History) -> Invariant {
    let report = linearizability::check(history);
    let problems: Vec<String> = report.failures.iter().map(|f| f.detail.clone()).collect();
    let summary = format!(
        "{} operations on {} cases checked ({} of unknown outcome, {} left out) in {:.1} ms",
        report.operations,
        report.keys,
        report.unknown,
        report.skipped,
        report.elapsed.as_secs_f64() * 1e3
    );
    Invariant::new("linearizability", problems, summary)
}

/// Every invariant above.
pub fn check_all(history: &History, state: &FinalState) -> Vec<Invariant> {
    vec![
        durability(history, state),
        no_duplicates(history, state),
        integrity(state),
        linearizability(history),
    ]
}

/// A one-line-per-invariant report.
pub fn report(invariants: &[Invariant]) -> String {
    invariants
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn all_ok(invariants: &[Invariant]) -> bool {
    invariants.iter().all(|i| i.ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{ReplicaCopies, ReplicaStatus};
    use crate::history::{CaseView, Command, Observed, Op, Outcome};
    use liandong_domain::{
        decide, petitioner_key, register, Calendar, CaseCommand, CaseId, CaseKind, Channel,
        Context, OfficeCode, Registration,
    };

    const NOW: i64 = 1_790_000_000_000;

    fn office() -> OfficeCode {
        "5306".parse().unwrap()
    }

    fn new_case(seq: u32) -> Case {
        let calendar = Calendar::china();
        let office = office();
        let ctx = Context {
            office: &office,
            now: NOW,
            calendar: &calendar,
        };
        let registration = Registration {
            channel: Channel::Visit,
            petitioner_id: liandong_ops::sample::id_number(u64::from(seq)).into(),
            name: "张三".into(),
            phone: None,
            category: "land".to_string(),
            summary: "s".to_string(),
            location: None,
            officer: "registrar".to_string(),
            address: None,
        };
        let id = CaseId {
            office: office.clone(),
            year: 2026,
            seq,
        };
        let key = petitioner_key(b"secret", registration.petitioner_id.clear().unwrap());
        register(id, registration, key, CaseKind::Original, &ctx).unwrap()
    }

    fn accepted(case: &Case) -> Case {
        let calendar = Calendar::china();
        let office = office();
        let ctx = Context {
            office: &office,
            now: NOW + 1_000,
            calendar: &calendar,
        };
        let mut case = case.clone();
        let command = CaseCommand::Accept {
            officer: "handler".to_string(),
        };
        for event in decide(&case, &command, &ctx).unwrap() {
            case.apply(&event);
        }
        case
    }

    fn ok(case: &Case) -> Outcome {
        Outcome::Ok(Observed::Case(CaseView::from_case(case)))
    }

    fn status(id: u64, cases: u64) -> ReplicaStatus {
        ReplicaStatus {
            id,
            host: format!("h{id}"),
            alive: true,
            state: None,
            last_applied: Some(10),
            state_hash: Some("abc".into()),
            cases: Some(cases),
        }
    }

    /// Three replicas holding exactly `cases`.
    fn state_with(cases: &[&Case]) -> FinalState {
        let mut state = FinalState {
            office: "5306".into(),
            caught_up: true,
            ..FinalState::default()
        };
        for replica in 1..=3 {
            let copies = ReplicaCopies {
                status: Some(status(replica, cases.len() as u64)),
                cases: cases
                    .iter()
                    .map(|c| (c.id.to_string(), Ok(Some(c.to_bytes()))))
                    .collect(),
            };
            state.replicas.insert(replica, copies);
        }
        state.samples = vec![(1..=3).map(|r| (r, 10, "abc".to_string())).collect()];
        state
    }

    /// Case 1 filed and accepted, case 2 filed; every answer acknowledged.
    fn good() -> (History, Case, Case, Case) {
        let one = new_case(1);
        let one_accepted = accepted(&one);
        let two = new_case(2);
        let mut h = History::default();
        h.push(
            0,
            0,
            10,
            Op::File {
                request_id: "a".into(),
            },
            ok(&one),
        );
        h.push(
            1,
            5,
            15,
            Op::File {
                request_id: "b".into(),
            },
            ok(&two),
        );
        h.push(
            0,
            20,
            30,
            Op::Act {
                case_id: one.id.to_string(),
                command: Command::Accept,
            },
            ok(&one_accepted),
        );
        h.push(
            1,
            40,
            50,
            Op::Read {
                case_id: one.id.to_string(),
            },
            ok(&one_accepted),
        );
        (h, one, one_accepted, two)
    }

    #[test]
    fn a_sound_run_passes_every_invariant() {
        let (h, _, one_accepted, two) = good();
        let state = state_with(&[&one_accepted, &two]);
        let all = check_all(&h, &state);
        assert!(all_ok(&all), "{}", report(&all));
    }

    #[test]
    fn durability_fails_when_an_acknowledged_case_is_missing_on_a_replica() {
        let (h, _, one_accepted, two) = good();
        let mut state = state_with(&[&one_accepted, &two]);
        state
            .replicas
            .get_mut(&2)
            .unwrap()
            .cases
            .insert(two.id.to_string(), Ok(None));
        let inv = durability(&h, &state);
        assert!(!inv.ok, "{inv}");
        assert!(inv.detail.contains("replica 2 has no case"), "{inv}");
    }

    #[test]
    fn durability_fails_when_an_acknowledged_command_is_lost() {
        // Every replica holds case 1 as it was before the acknowledged acceptance.
        let (h, one, _, two) = good();
        let state = state_with(&[&one, &two]);
        let inv = durability(&h, &state);
        assert!(!inv.ok, "{inv}");
        assert!(inv.detail.contains("lost history"), "{inv}");
    }

    #[test]
    fn durability_fails_when_a_replica_cannot_answer() {
        let (h, _, one_accepted, two) = good();
        let mut state = state_with(&[&one_accepted, &two]);
        state
            .replicas
            .get_mut(&3)
            .unwrap()
            .cases
            .insert(two.id.to_string(), Err("Unavailable".into()));
        assert!(!durability(&h, &state).ok);
    }

    #[test]
    fn no_duplicates_fails_on_a_second_case_for_one_request() {
        let (mut h, _, one_accepted, two) = good();
        let three = new_case(3);
        h.push(
            2,
            60,
            70,
            Op::File {
                request_id: "a".into(),
            },
            ok(&three),
        );
        let state = state_with(&[&one_accepted, &two, &three]);
        let inv = no_duplicates(&h, &state);
        assert!(!inv.ok, "{inv}");
        assert!(inv.detail.contains("request a registered 2 cases"), "{inv}");
    }

    #[test]
    fn no_duplicates_fails_on_an_unexplained_case() {
        let (h, _, one_accepted, two) = good();
        let three = new_case(3);
        let state = state_with(&[&one_accepted, &two, &three]);
        let inv = no_duplicates(&h, &state);
        assert!(!inv.ok, "{inv}");
        // ...but a filing of unknown outcome may explain it.
        let mut h = h;
        h.push(
            3,
            80,
            90,
            Op::File {
                request_id: "c".into(),
            },
            Outcome::Unknown("timeout".into()),
        );
        let inv = no_duplicates(&h, &state);
        assert!(inv.ok, "{inv}");
    }

    #[test]
    fn no_duplicates_fails_when_the_case_count_is_off() {
        let (h, _, one_accepted, two) = good();
        let mut state = state_with(&[&one_accepted, &two]);
        state.replicas.get_mut(&1).unwrap().status = Some(status(1, 3));
        assert!(!no_duplicates(&h, &state).ok);
    }

    #[test]
    fn integrity_fails_on_a_tampered_history() {
        let (_, _, one_accepted, two) = good();
        let mut tampered = one_accepted.clone();
        tampered.history[1].kind = "declined".to_string();
        let mut state = state_with(&[&one_accepted, &two]);
        state
            .replicas
            .get_mut(&2)
            .unwrap()
            .cases
            .insert(tampered.id.to_string(), Ok(Some(tampered.to_bytes())));
        let inv = integrity(&state);
        assert!(!inv.ok, "{inv}");
        assert!(inv.detail.contains("hash chain broken"), "{inv}");
        assert!(inv.detail.contains("different copies"), "{inv}");
    }

    #[test]
    fn integrity_fails_when_state_hashes_differ_at_one_index() {
        let (_, _, one_accepted, two) = good();
        let mut state = state_with(&[&one_accepted, &two]);
        state.samples.push(vec![
            (1, 7, "x".into()),
            (2, 7, "y".into()),
            (3, 6, "z".into()),
        ]);
        let inv = integrity(&state);
        assert!(!inv.ok, "{inv}");
        assert!(inv.detail.contains("applied index 7"), "{inv}");
        let mut state = state_with(&[&one_accepted, &two]);
        state.caught_up = false;
        assert!(!integrity(&state).ok);
    }

    #[test]
    fn linearizability_invariant_fails_on_a_stale_read() {
        let (mut h, one, _, _) = good();
        h.push(
            2,
            60,
            70,
            Op::Read {
                case_id: one.id.to_string(),
            },
            ok(&one),
        );
        let inv = linearizability(&h);
        assert!(!inv.ok, "{inv}");
        assert!(inv.detail.contains("not linearizable"), "{inv}");
    }
}
