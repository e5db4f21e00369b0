//! `liandong verify`: invariants 2, 3, 5 and 7 of docs/design.md, checked on the live
//! federation.
//!
//! Every replica is read in bounded pages, never as one document: first each replica's head (its
//! applied index, state hash and links), then its cases a page at a time, then — for each office
//! with children — the index of its most advanced replica. Each page is checked as it arrives and
//! kept only as what the later checks need (per case: where its copies are, and the owner's
//! status and version), so a province's million cases fit. A replica whose applied index moves
//! while it is read is read again; one that does not answer is retried, then named with the
//! reason.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use federation_proto::v1::admin_client::AdminClient;
use federation_proto::v1::{DumpReply, DumpRequest};
use futures::StreamExt;
use liandong_domain::message::Summary;
use liandong_domain::{Case, CaseId, OfficeCode, SealCount, Status};
use serde_json::{json, Value};

use liandong_node::machine::anchors::{AnchorRecord, AnchoredLeaf};
use liandong_node::manifest::Manifest;

use crate::client::{channel, Federation};
use crate::commands::Report;

/// Problems listed per invariant at most (the count is always exact).
const DETAILS_MAX: usize = 10;
/// Items asked per page by default (the host caps pages in bytes too).
pub const PAGE_ITEMS: u32 = 256;
/// Tries of one page before its replica is named unreachable.
const PAGE_TRIES: u32 = 4;
/// Reads of one replica from its head again when its applied index moved meanwhile.
const READS_MAX: u32 = 3;
/// Replicas read at once (their pages are checked on blocking threads as they arrive).
const READERS: usize = 2;

struct Check {
    name: &'static str,
    /// The first problems, at most [`DETAILS_MAX`].
    problems: Vec<String>,
    failed: usize,
    checked: usize,
}

impl Check {
    fn new(name: &'static str) -> Check {
        Check {
            name,
            problems: Vec::new(),
            failed: 0,
            checked: 0,
        }
    }

    fn problem(&mut self, problem: String) {
        self.failed += 1;
        if self.problems.len() < DETAILS_MAX {
            self.problems.push(problem);
        }
    }

    fn absorb(&mut self, other: Check) {
        self.checked += other.checked;
        self.failed += other.failed;
        for problem in other.problems {
            if self.problems.len() < DETAILS_MAX {
                self.problems.push(problem);
            }
        }
    }

    fn json(&self) -> Value {
        counted_json(self.name, self.checked, self.failed, &self.problems)
    }
}

/// One invariant's result as `verify` reports it: `{name, ok, detail}`, the detail counting what
/// was checked and listing the first problems.
pub fn invariant_json(name: &str, checked: usize, problems: &[String]) -> Value {
    counted_json(name, checked, problems.len(), problems)
}

fn counted_json(name: &str, checked: usize, failed: usize, problems: &[String]) -> Value {
    let detail = if failed == 0 {
        format!("{checked} checked")
    } else {
        let shown: Vec<&str> = problems
            .iter()
            .take(DETAILS_MAX)
            .map(String::as_str)
            .collect();
        format!("{failed} of {checked} failed: {}", shown.join("; "))
    };
    json!({"name": name, "ok": failed == 0, "detail": detail})
}

/// What one replica says of itself: read first, before its pages.
#[derive(Clone)]
struct Head {
    office: String,
    replica: u64,
    last_applied: u64,
    state_hash: String,
    outbox_pending: u64,
    links_out: BTreeMap<String, Value>,
    links_in: BTreeMap<String, Value>,
}

impl Head {
    /// From a head page or a whole dump document.
    fn parse(office: &str, replica: u64, document: &Value) -> Head {
        let map = |name: &str| {
            document[name]
                .as_object()
                .map(|o| o.clone().into_iter().collect())
                .unwrap_or_default()
        };
        Head {
            office: office.to_string(),
            replica,
            last_applied: document["last_applied"].as_u64().unwrap_or(0),
            state_hash: document["state_hash"].as_str().unwrap_or("").to_string(),
            outbox_pending: document["outbox_pending"].as_u64().unwrap_or(0),
            links_out: map("links_out"),
            links_in: map("links_in"),
        }
    }
}

/// A copy of a case at an office: the owner's, or a stub forwarding to another office.
struct Copy {
    office: OfficeCode,
    forwarded_to: Option<OfficeCode>,
}

/// What the owner's copy says, as an ancestor's index must repeat it.
struct Truth {
    owner: OfficeCode,
    status: String,
    version: u32,
}

/// What reading one replica's cases found: merged into the [`Checker`] once the whole replica
/// was read from one state.
struct Tally {
    integrity: Check,
    seals: Check,
    /// Each copy's head against its parent's anchor.
    anchors: Check,
    /// The anchored cases the most advanced replica holds.
    anchored_seen: Vec<CaseId>,
    seal_count: (u64, u64),
    /// Filled for the most advanced replica of its office only.
    copies: Vec<(CaseId, Copy, Option<Truth>)>,
    cases: u64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            integrity: Check::new("integrity"),
            seals: Check::new("seals"),
            anchors: Check::new("anchors"),
            anchored_seen: Vec::new(),
            seal_count: (0, 0),
            copies: Vec::new(),
            cases: 0,
        }
    }

    /// Checks one case copy of `office`'s `replica`: its chain, its seals (when the offices'
    /// keys are given) and, from the most advanced replica, where it is and what its owner says.
    // What it checks against (keys, anchors) is given apart: the simulator's dumps have neither.
    #[allow(clippy::too_many_arguments)]
    fn case(
        &mut self,
        office: &OfficeCode,
        replica: u64,
        case: Case,
        digest: Option<&str>,
        keys: Option<&OfficeKeys>,
        anchors: Option<&Anchors>,
        best: bool,
    ) {
        self.cases += 1;
        if let Some((parent, leaves)) = anchors.and_then(|anchors| anchors.leaves.get(office)) {
            if let Some(leaf) = leaves.get(&case.id) {
                self.anchored(office, replica, &case, parent, leaf);
                if best {
                    self.anchored_seen.push(case.id.clone());
                }
            }
        }
        self.integrity.checked += 1;
        if let Err(error) = case.verify_chain() {
            self.integrity.problem(format!(
                "{} at {office} replica {replica}: {error}",
                case.id
            ));
        }
        if let Some(keys) = keys {
            self.seals.checked += 1;
            match case.check_seals(digest, |office| keys.get(office).cloned()) {
                Ok(SealCount { signed, unsigned }) => {
                    self.seal_count.0 += u64::from(signed);
                    self.seal_count.1 += u64::from(unsigned);
                }
                Err(error) => self.seals.problem(format!(
                    "case {} at office {office} replica {replica}: {error}",
                    case.id
                )),
            }
        }
        if best {
            let forwarded_to = match &case.status {
                Status::Forwarded { to } => Some(to.clone()),
                _ => None,
            };
            let truth = forwarded_to.is_none().then(|| {
                let summary = Summary::of(&case);
                Truth {
                    owner: summary.owner,
                    status: summary.status,
                    version: summary.version,
                }
            });
            let copy = Copy {
                office: office.clone(),
                forwarded_to,
            };
            self.copies.push((case.id, copy, truth));
        }
    }
}

impl Tally {
    /// A copy's history against the head its parent's anchor holds for it: the history only
    /// grows, so the entry the anchor named must still be there with the same hash.
    fn anchored(
        &mut self,
        office: &OfficeCode,
        replica: u64,
        case: &Case,
        parent: &OfficeCode,
        leaf: &AnchoredLeaf,
    ) {
        self.anchors.checked += 1;
        let entries = leaf.leaf.entries;
        let len = case.history_len();
        let hash = if case.history_start.entries == entries {
            Some(&case.history_start.hash)
        } else {
            case.history
                .iter()
                .find(|entry| entry.seq == entries)
                .map(|entry| &entry.hash)
        };
        if len < entries {
            self.anchors.problem(format!(
                "case {} at office {office} replica {replica}: anchor at {parent} disagrees: \
                 its anchor {} covered {entries} history entries, this copy has {len}",
                case.id, leaf.seq
            ));
        } else if hash.is_some_and(|hash| *hash != leaf.leaf.hash) {
            self.anchors.problem(format!(
                "case {} at office {office} replica {replica}: anchor at {parent} disagrees: \
                 history entry {entries} differs from the head its anchor {} holds",
                case.id, leaf.seq
            ));
        }
    }
}

/// What each office's parent holds of its case heads, read before the cases.
#[derive(Default)]
pub struct Anchors {
    /// Per office: its parent, and the head kept there for each case.
    leaves: HashMap<OfficeCode, (OfficeCode, HashMap<CaseId, AnchoredLeaf>)>,
    /// Per office: its parent, and the last whole anchor kept there.
    records: BTreeMap<OfficeCode, (OfficeCode, AnchorRecord)>,
    /// Parents whose anchors could not be read, with the reason.
    unread: Vec<String>,
}

/// Each office's public signing key.
pub type OfficeKeys = BTreeMap<OfficeCode, Vec<u8>>;

/// The invariants, fed a replica at a time.
struct Checker<'m> {
    manifest: &'m Manifest,
    keys: Option<Arc<OfficeKeys>>,
    heads: Vec<Head>,
    /// The most advanced replica of each office speaks for it: its index in `heads`.
    best: BTreeMap<String, usize>,
    integrity: Check,
    seals: Check,
    seal_count: (u64, u64),
    copies: HashMap<CaseId, Vec<Copy>>,
    truth: BTreeMap<CaseId, Truth>,
    convergence: Check,
    /// Read from the parents when `verify` checks anchors (not over simulator dumps).
    anchors: Option<Arc<Anchors>>,
    anchor_check: Check,
    /// Per office, the anchored cases its most advanced replica holds.
    anchored_seen: HashMap<String, HashSet<CaseId>>,
    /// Replicas that could not be read whole, with the reason.
    unread: Vec<String>,
    /// Offices whose most advanced replica could not be read whole: their cases and index are
    /// missing from the checks.
    incomplete: Vec<String>,
}

impl<'m> Checker<'m> {
    fn new(manifest: &'m Manifest, keys: Option<OfficeKeys>) -> Checker<'m> {
        Checker {
            manifest,
            keys: keys.map(Arc::new),
            heads: Vec::new(),
            best: BTreeMap::new(),
            integrity: Check::new("integrity"),
            seals: Check::new("seals"),
            seal_count: (0, 0),
            copies: HashMap::new(),
            truth: BTreeMap::new(),
            convergence: Check::new("convergence"),
            anchors: None,
            anchor_check: Check::new("anchors"),
            anchored_seen: HashMap::new(),
            unread: Vec::new(),
            incomplete: Vec::new(),
        }
    }

    /// Takes every replica's head and chooses each office's most advanced replica.
    fn heads(&mut self, heads: Vec<Head>) {
        self.heads = heads;
        self.best.clear();
        for (n, head) in self.heads.iter().enumerate() {
            let entry = self.best.entry(head.office.clone()).or_insert(n);
            if head.last_applied > self.heads[*entry].last_applied {
                *entry = n;
            }
        }
    }

    fn is_best(&self, n: usize) -> bool {
        self.best.get(&self.heads[n].office) == Some(&n)
    }

    /// A replica read whole from one state (its head as read last).
    fn merge(&mut self, n: usize, head: Head, tally: Tally) {
        self.heads[n] = head;
        self.integrity.absorb(tally.integrity);
        self.seals.absorb(tally.seals);
        self.anchor_check.absorb(tally.anchors);
        if self.is_best(n) {
            self.anchored_seen
                .entry(self.heads[n].office.clone())
                .or_default()
                .extend(tally.anchored_seen);
        }
        self.seal_count.0 += tally.seal_count.0;
        self.seal_count.1 += tally.seal_count.1;
        for (case_id, copy, truth) in tally.copies {
            if let Some(truth) = truth {
                self.truth.insert(case_id.clone(), truth);
            }
            self.copies.entry(case_id).or_default().push(copy);
        }
    }

    /// A replica that could not be read whole.
    fn unreadable(&mut self, n: usize, host: &str, reason: String) {
        let head = &self.heads[n];
        self.unread.push(format!(
            "{} replica {} on {host}: {reason}",
            head.office, head.replica
        ));
        if self.is_best(n) {
            self.incomplete.push(head.office.clone());
        }
    }

    /// Offices with children whose index must repeat their subtree's owners, with the head of
    /// the replica that speaks for each.
    fn indexed_offices(&self) -> Vec<(OfficeCode, usize)> {
        self.manifest
            .offices
            .iter()
            .filter(|office| self.manifest.children(&office.code).next().is_some())
            .filter(|office| !self.incomplete.contains(&office.code))
            .filter_map(|office| Some((office.code.parse().ok()?, *self.best.get(&office.code)?)))
            .collect()
    }

    /// Invariant 5 for one office, a page of its index at a time: each summary against the
    /// owner's truth; `seen` gathers the cases found for [`Checker::index_end`].
    fn index_page(
        &mut self,
        office: &OfficeCode,
        seen: &mut HashSet<CaseId>,
        summaries: impl IntoIterator<Item = Summary>,
    ) {
        for summary in summaries {
            let Some(truth) = self.truth.get(&summary.case_id) else {
                continue;
            };
            if !office.is_ancestor_of(&truth.owner) {
                continue;
            }
            seen.insert(summary.case_id.clone());
            self.convergence.checked += 1;
            if summary.owner != truth.owner
                || summary.status != truth.status
                || summary.version != truth.version
            {
                self.convergence.problem(format!(
                    "{office}'s index has {} as {} at {} (v{}), the owner says {} at {} (v{})",
                    summary.case_id,
                    summary.status,
                    summary.owner,
                    summary.version,
                    truth.status,
                    truth.owner,
                    truth.version
                ));
            }
        }
    }

    /// The cases of `office`'s subtree its index did not hold.
    fn index_end(&mut self, office: &OfficeCode, seen: &HashSet<CaseId>) {
        let lacking: Vec<String> = self
            .truth
            .iter()
            .filter(|(case_id, truth)| {
                office.is_ancestor_of(&truth.owner) && !seen.contains(*case_id)
            })
            .map(|(case_id, _)| format!("{office}'s index lacks {case_id}"))
            .collect();
        for problem in lacking {
            self.convergence.checked += 1;
            self.convergence.problem(problem);
        }
    }

    /// Every office's heads against its parent's anchors: each copy's history (checked as it
    /// was read), the anchored cases an office no longer has, and the parents' own sums.
    fn anchors_json(&self) -> Option<Value> {
        let anchors = self.anchors.as_ref()?;
        let mut check = Check::new("anchors");
        check.absorb(Check {
            name: "anchors",
            problems: self.anchor_check.problems.clone(),
            failed: self.anchor_check.failed,
            checked: self.anchor_check.checked,
        });
        for (office, (parent, leaves)) in &anchors.leaves {
            if self.incomplete.contains(&office.to_string())
                || !self.best.contains_key(office.as_str())
            {
                continue;
            }
            let seen = self.anchored_seen.get(office.as_str());
            let mut lacking: Vec<&CaseId> = leaves
                .keys()
                .filter(|case_id| !seen.is_some_and(|seen| seen.contains(*case_id)))
                .collect();
            lacking.sort();
            let mut disputed: Vec<&AnchoredLeaf> = leaves
                .values()
                .filter(|leaf| leaf.disputed.is_some())
                .collect();
            disputed.sort_by(|a, b| a.leaf.case_id.cmp(&b.leaf.case_id));
            for kept in disputed {
                let sent = kept.disputed.as_ref().map_or(0, |leaf| leaf.entries);
                check.checked += 1;
                check.problem(format!(
                    "case {} at office {office}: anchor at {parent} disagrees: the office sent \
                     a head of {sent} history entries that does not extend the one anchored \
                     ({} entries, anchor {}): the history below was rewritten or lost",
                    kept.leaf.case_id, kept.leaf.entries, kept.seq
                ));
            }
            for case_id in lacking {
                check.checked += 1;
                check.problem(format!(
                    "case {case_id} at office {office}: anchor at {parent} disagrees: \
                     the office holds no copy of it"
                ));
            }
        }
        for (office, (parent, record)) in &anchors.records {
            check.checked += 1;
            if !record.agrees() {
                check.problem(format!(
                    "anchor at {parent} disagrees with itself for office {office}: anchor {} \
                     says {} heads with root {}, {parent} holds {} with root {}",
                    record.seq, record.count, record.root, record.held_count, record.held_root
                ));
            }
        }
        let mut value = check.json();
        value["heads_checked"] = Value::from(self.anchor_check.checked);
        value["anchored"] = Value::from(
            anchors
                .records
                .keys()
                .map(|office| office.to_string())
                .collect::<Vec<_>>(),
        );
        let mut notes = Vec::new();
        let roots: Vec<&str> = self
            .manifest
            .offices
            .iter()
            .filter(|office| office.parent.is_none())
            .map(|office| office.code.as_str())
            .collect();
        if !roots.is_empty() {
            notes.push(format!("unanchored (no parent): {}", roots.join(", ")));
        }
        let waiting: Vec<&str> = self
            .manifest
            .offices
            .iter()
            .filter(|office| office.parent.is_some())
            .filter(|office| {
                office
                    .code
                    .parse::<OfficeCode>()
                    .is_ok_and(|code| !anchors.records.contains_key(&code))
            })
            .map(|office| office.code.as_str())
            .collect();
        if !waiting.is_empty() {
            notes.push(format!("no anchor yet: {}", waiting.join(", ")));
        }
        if !anchors.unread.is_empty() {
            notes.push(format!("not read: {}", anchors.unread.join("; ")));
        }
        if !notes.is_empty() {
            let detail = value["detail"].as_str().unwrap_or("").to_string();
            value["detail"] = Value::from(format!("{detail}; {}", notes.join("; ")));
        }
        Some(value)
    }

    /// The invariants' results.
    fn finish(self) -> Vec<Value> {
        let best: BTreeMap<&str, &Head> = self
            .best
            .iter()
            .map(|(office, n)| (office.as_str(), &self.heads[*n]))
            .collect();
        let anchors = self.anchors_json();
        let mut integrity = self.integrity;
        state_hashes(&self.heads, &mut integrity);
        let mut invariants = vec![
            single_owner(&self.copies).json(),
            exactly_once(&best).json(),
            self.convergence.json(),
            integrity.json(),
        ];
        if self.keys.is_some() {
            let mut value = self.seals.json();
            let (signed, unsigned) = self.seal_count;
            if self.seals.failed == 0 {
                value["detail"] = Value::from(format!(
                    "{} case copies checked: {signed} entries signed, {unsigned} unsigned (written before version {})",
                    self.seals.checked,
                    liandong_domain::SEALED_ENTRY_VERSION
                ));
            }
            value["entries_signed"] = Value::from(signed);
            value["entries_unsigned"] = Value::from(unsigned);
            invariants.push(value);
        }
        if let Some(anchors) = anchors {
            invariants.push(anchors);
        }
        let missing: Vec<&str> = self
            .manifest
            .offices
            .iter()
            .map(|o| o.code.as_str())
            .filter(|code| !best.contains_key(*code))
            .collect();
        if !missing.is_empty() || !self.incomplete.is_empty() {
            let mut detail = Vec::new();
            if !missing.is_empty() {
                detail.push(format!("no replica answered for {}", missing.join(", ")));
            }
            if !self.incomplete.is_empty() {
                detail.push(format!(
                    "not read whole (their cases are not checked): {}",
                    self.incomplete.join(", ")
                ));
            }
            if !self.unread.is_empty() {
                let shown: Vec<&str> = self
                    .unread
                    .iter()
                    .take(DETAILS_MAX)
                    .map(String::as_str)
                    .collect();
                detail.push(shown.join("; "));
            }
            invariants
                .push(json!({"name": "reachability", "ok": false, "detail": detail.join("; ")}));
        } else if !self.unread.is_empty() {
            // Every office was read whole through another replica: say which were not.
            invariants.push(json!({"name": "replicas", "ok": true, "detail": format!(
                "read through other replicas; unread: {}", self.unread.join("; "))}));
        }
        invariants
    }
}

/// Invariant 2: at most one office can mutate a case; every forwarding chain ends at one owner.
fn single_owner(copies: &HashMap<CaseId, Vec<Copy>>) -> Check {
    let mut check = Check::new("single_owner");
    for (case_id, holders) in copies {
        check.checked += 1;
        let owners: Vec<String> = holders
            .iter()
            .filter(|copy| copy.forwarded_to.is_none())
            .map(|copy| copy.office.to_string())
            .collect();
        if owners.len() != 1 {
            check.problem(format!("{case_id} has {} owners {owners:?}", owners.len()));
            continue;
        }
        for copy in holders {
            let mut hops = 0;
            let mut current = copy.forwarded_to.as_ref();
            while let Some(to) = current {
                hops += 1;
                match holders.iter().find(|other| other.office == *to) {
                    Some(next) if hops < 32 => current = next.forwarded_to.as_ref(),
                    _ => {
                        check.problem(format!(
                            "{case_id}: the stub at {} leads to {to}, which has no copy",
                            copy.office
                        ));
                        break;
                    }
                }
            }
        }
    }
    check
}

/// Invariant 3: after quiescence every outbox is empty, and each link's receiver applied
/// exactly the messages its sender sent, once each.
fn exactly_once(best: &BTreeMap<&str, &Head>) -> Check {
    let mut check = Check::new("exactly_once");
    for head in best.values() {
        if head.outbox_pending > 0 {
            check.problem(format!(
                "{} still holds {} unacknowledged messages",
                head.office, head.outbox_pending
            ));
        }
        for (to, link) in &head.links_out {
            check.checked += 1;
            let sent = link["last_seq"].as_u64().unwrap_or(0);
            let Some(receiver) = best.get(to.as_str()) else {
                continue;
            };
            let inbox = receiver.links_in.get(&head.office);
            let through = inbox
                .and_then(|l| l["applied_through"].as_u64())
                .unwrap_or(0);
            let applied = inbox.and_then(|l| l["applied"].as_u64()).unwrap_or(0);
            if through != sent || applied != sent {
                check.problem(format!(
                    "link {}->{to}: sent {sent}, receiver applied through {through} ({applied} applications)",
                    head.office
                ));
            }
        }
    }
    check
}

/// Invariant 7, second half: replicas of an office agree on the state hash at the same applied
/// index (the first half, each history's chain, is checked case by case).
fn state_hashes(heads: &[Head], check: &mut Check) {
    let mut by_index: BTreeMap<(&str, u64), Vec<(&str, u64)>> = BTreeMap::new();
    for head in heads {
        by_index
            .entry((head.office.as_str(), head.last_applied))
            .or_default()
            .push((head.state_hash.as_str(), head.replica));
    }
    for ((office, index), hashes) in by_index {
        check.checked += 1;
        if hashes.iter().any(|(hash, _)| *hash != hashes[0].0) {
            check.problem(format!(
                "{office} replicas disagree on the state hash at index {index}: {hashes:?}"
            ));
        }
    }
}

/// How far a verify is, shown on a terminal only (stderr): one line, rewritten.
struct Progress {
    replicas: u64,
    replicas_read: AtomicU64,
    cases: AtomicU64,
    indexes: AtomicU64,
}

impl Progress {
    fn line(&self, indexes_total: u64) -> String {
        format!(
            "verify: {} of {} replicas read, {} case copies checked, {} of {indexes_total} indexes",
            self.replicas_read.load(Ordering::Relaxed),
            self.replicas,
            self.cases.load(Ordering::Relaxed),
            self.indexes.load(Ordering::Relaxed),
        )
    }
}

/// Shows `progress` every quarter second until dropped.
struct Shown(Option<tokio::task::JoinHandle<()>>);

impl Shown {
    fn start(progress: Arc<Progress>, indexes_total: Arc<AtomicU64>) -> Shown {
        if !std::io::stderr().is_terminal() {
            return Shown(None);
        }
        Shown(Some(tokio::spawn(async move {
            loop {
                let line = progress.line(indexes_total.load(Ordering::Relaxed));
                eprint!("\r{line}");
                let _ = std::io::stderr().flush();
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })))
    }
}

impl Drop for Shown {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
            eprintln!();
        }
    }
}

/// `liandong verify`'s options.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Cases or index entries asked of a replica per page (1 to 1000; a host also ends a page
    /// at 4 MiB). Smaller pages use less memory on both sides; larger ones fewer round trips.
    #[arg(long, default_value_t = PAGE_ITEMS, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub page: u32,
}

impl Default for VerifyArgs {
    fn default() -> VerifyArgs {
        VerifyArgs { page: PAGE_ITEMS }
    }
}

/// One replica's address, for its pages.
#[derive(Clone)]
struct Source {
    office: String,
    replica: u64,
    /// The host carrying the replica, and its address.
    host: String,
    addr: String,
    /// Items asked per page.
    items: u32,
}

/// One page of `section`, retried with a growing pause; the last error when every try failed.
async fn page(source: &Source, section: &str, after: &[u8]) -> Result<DumpReply, String> {
    let mut pause = Duration::from_millis(200);
    let mut last = String::new();
    for attempt in 1..=PAGE_TRIES {
        let asked = async {
            let mut client = AdminClient::new(channel(&source.addr).await?)
                .max_decoding_message_size(federation_proto::MESSAGE_BYTES_MAX);
            client
                .dump(DumpRequest {
                    office: source.office.clone(),
                    section: section.to_string(),
                    after: after.to_vec(),
                    limit: source.items,
                })
                .await
                .map(tonic::Response::into_inner)
        };
        match asked.await {
            Ok(reply) => return Ok(reply),
            // A host that does not know the section runs an older build: no use asking again.
            Err(status) if status.code() == tonic::Code::InvalidArgument => {
                return Err(status.message().to_string())
            }
            Err(status) => last = format!("{:?}: {}", status.code(), status.message()),
        }
        if attempt < PAGE_TRIES {
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }
    Err(format!("{last} (after {PAGE_TRIES} tries)"))
}

async fn head(source: &Source) -> Result<Head, String> {
    let reply = page(source, "head", &[]).await?;
    let document: Value =
        serde_json::from_slice(&reply.document).map_err(|e| format!("an unreadable head: {e}"))?;
    Ok(Head::parse(&source.office, source.replica, &document))
}

/// Why a read of one replica did not end.
enum Unread {
    /// Its applied index moved from the first to the second while it was read.
    Moved(u64, u64),
    Failed(String),
}

/// Reads `source`'s cases a page at a time from the state `head` describes, checking each page
/// on a blocking thread as it arrives.
async fn read_cases(
    source: &Source,
    head: &Head,
    keys: Option<Arc<OfficeKeys>>,
    anchors: Option<Arc<Anchors>>,
    best: bool,
    progress: &Progress,
) -> Result<Tally, Unread> {
    let office: OfficeCode = source
        .office
        .parse()
        .map_err(|e| Unread::Failed(format!("{e}")))?;
    let mut tally = Tally::new();
    let mut after = Vec::new();
    loop {
        let reply = page(source, "cases", &after)
            .await
            .map_err(Unread::Failed)?;
        if reply.last_applied != head.last_applied {
            return Err(Unread::Moved(head.last_applied, reply.last_applied));
        }
        let next = reply.next;
        let keys = keys.clone();
        let anchors = anchors.clone();
        let office = office.clone();
        let replica = source.replica;
        let count = reply.cases.len() as u64;
        tally = tokio::task::spawn_blocking(move || {
            for dumped in reply.cases {
                let digest = (!dumped.petitioner_sha256.is_empty())
                    .then_some(dumped.petitioner_sha256.as_str());
                match Case::from_bytes(&dumped.case) {
                    Ok(case) => tally.case(
                        &office,
                        replica,
                        case,
                        digest,
                        keys.as_deref(),
                        anchors.as_deref(),
                        best,
                    ),
                    Err(error) => {
                        tally.integrity.checked += 1;
                        tally.integrity.problem(format!(
                            "a case at {office} replica {replica} does not decode: {error}"
                        ));
                    }
                }
            }
            tally
        })
        .await
        .map_err(|e| Unread::Failed(e.to_string()))?;
        progress.cases.fetch_add(count, Ordering::Relaxed);
        if next.is_empty() {
            return Ok(tally);
        }
        after = next;
    }
}

/// Reads one replica whole: its head again (unless `head` is still fresh), then its cases; again
/// from its head when its applied index moved meanwhile, at most [`READS_MAX`] times.
async fn read_replica(
    source: Source,
    first: Head,
    keys: Option<Arc<OfficeKeys>>,
    anchors: Option<Arc<Anchors>>,
    best: bool,
    progress: Arc<Progress>,
) -> Result<(Head, Tally), String> {
    let mut head = first;
    for read in 1..=READS_MAX {
        if read > 1 {
            head = self::head(&source).await?;
        }
        match read_cases(
            &source,
            &head,
            keys.clone(),
            anchors.clone(),
            best,
            &progress,
        )
        .await
        {
            Ok(tally) => return Ok((head, tally)),
            Err(Unread::Failed(reason)) => return Err(reason),
            Err(Unread::Moved(from, to)) if read == READS_MAX => {
                return Err(format!(
                    "its state kept changing while it was read (applied index {from} → {to}): \
                     verify a quiet federation"
                ))
            }
            Err(Unread::Moved(..)) => {}
        }
    }
    unreachable!("the last read returns")
}

/// Every page of `section` of `source`, decoded as `T`.
async fn read_section<T: serde::de::DeserializeOwned>(
    source: &Source,
    section: &str,
) -> Result<Vec<T>, String> {
    let mut all = Vec::new();
    let mut after = Vec::new();
    loop {
        let reply = page(source, section, &after).await?;
        for value in &reply.index {
            all.push(
                liandong_node::store::codec::decode::<T>(value)
                    .map_err(|e| format!("a stored {section} value does not decode: {e}"))?,
            );
        }
        if reply.next.is_empty() {
            return Ok(all);
        }
        after = reply.next;
    }
}

/// What every office with children holds of its children's heads, from its most advanced
/// replica (`read[n]` is the source of `checker.heads[n]`).
async fn read_anchors(checker: &Checker<'_>, read: &[Source]) -> Anchors {
    let mut anchors = Anchors::default();
    for office in &checker.manifest.offices {
        if checker.manifest.children(&office.code).next().is_none() {
            continue;
        }
        let (Ok(parent), Some(&n)) = (
            office.code.parse::<OfficeCode>(),
            checker.best.get(&office.code),
        ) else {
            continue;
        };
        let source = &read[n];
        let records = read_section::<AnchorRecord>(source, "anchors").await;
        let leaves = read_section::<AnchoredLeaf>(source, "anchor-leaves").await;
        match (records, leaves) {
            (Ok(records), Ok(leaves)) => {
                for record in records {
                    anchors
                        .records
                        .insert(record.office.clone(), (parent.clone(), record));
                }
                for leaf in leaves {
                    anchors
                        .leaves
                        .entry(leaf.office.clone())
                        .or_insert_with(|| (parent.clone(), HashMap::new()))
                        .1
                        .insert(leaf.leaf.case_id.clone(), leaf);
                }
            }
            (Err(reason), _) | (_, Err(reason)) => anchors
                .unread
                .push(format!("{}'s anchors: {reason}", office.code)),
        }
    }
    anchors
}

/// Checks an office's index against the owners' truth, reading it from `source` in pages.
async fn read_index(
    checker: &mut Checker<'_>,
    office: &OfficeCode,
    source: &Source,
) -> Result<(), String> {
    let mut seen = HashSet::new();
    let mut after = Vec::new();
    loop {
        let reply = page(source, "index", &after).await?;
        let summaries = reply
            .index
            .iter()
            .map(|value| liandong_node::store::codec::decode::<Summary>(value))
            .collect::<Result<Vec<Summary>, _>>()
            .map_err(|e| format!("an index entry does not decode: {e}"))?;
        checker.index_page(office, &mut seen, summaries);
        if reply.next.is_empty() {
            checker.index_end(office, &seen);
            return Ok(());
        }
        after = reply.next;
    }
}

pub async fn verify(federation: &Federation, args: &VerifyArgs) -> anyhow::Result<Report> {
    let manifest = &federation.manifest;
    let mut sources = Vec::new();
    for office in &manifest.offices {
        for member in &office.members {
            if let Some(host) = manifest.host(&member.host) {
                sources.push(Source {
                    office: office.code.clone(),
                    replica: member.id,
                    host: host.name.clone(),
                    addr: host.api_addr.clone(),
                    items: args.page,
                });
            }
        }
    }
    let keys: OfficeKeys = manifest
        .offices
        .iter()
        .filter_map(|office| {
            let key = federation.layout.read_office_public_key(&office.code)?;
            Some((office.code.parse().ok()?, key))
        })
        .collect();
    let mut checker = Checker::new(manifest, Some(keys));
    let progress = Arc::new(Progress {
        replicas: sources.len() as u64,
        replicas_read: AtomicU64::new(0),
        cases: AtomicU64::new(0),
        indexes: AtomicU64::new(0),
    });
    let indexes_total = Arc::new(AtomicU64::new(0));
    let shown = Shown::start(progress.clone(), indexes_total.clone());

    // Heads first: they choose the replica that speaks for each office.
    let answers = futures::stream::iter(
        sources
            .iter()
            .map(|source| async move { (source.clone(), head(source).await) }),
    )
    .buffer_unordered(16)
    .collect::<Vec<_>>()
    .await;
    let mut heads = Vec::new();
    let mut read = Vec::new();
    for (source, answer) in answers {
        match answer {
            Ok(head) => {
                heads.push(head);
                read.push(source);
            }
            Err(reason) => checker.unread.push(format!(
                "{} replica {} on {}: {reason}",
                source.office, source.replica, source.host
            )),
        }
    }
    checker.heads(heads);

    // Then each replica's cases, a few replicas at a time.
    let asks: Vec<(usize, Source, Head, bool)> = read
        .iter()
        .enumerate()
        .map(|(n, source)| {
            (
                n,
                source.clone(),
                checker.heads[n].clone(),
                checker.is_best(n),
            )
        })
        .collect();
    let keys = checker.keys.clone();
    let anchors = Arc::new(read_anchors(&checker, &read).await);
    checker.anchors = Some(anchors.clone());
    let reads = asks.into_iter().map(|(n, source, head, best)| {
        let keys = keys.clone();
        let anchors = Some(anchors.clone());
        let progress = progress.clone();
        async move {
            let result = read_replica(source, head, keys, anchors, best, progress.clone()).await;
            progress.replicas_read.fetch_add(1, Ordering::Relaxed);
            (n, result)
        }
    });
    let mut reads = futures::stream::iter(reads).buffer_unordered(READERS);
    while let Some((n, result)) = reads.next().await {
        match result {
            Ok((head, tally)) => checker.merge(n, head, tally),
            Err(reason) => checker.unreadable(n, &read[n].host, reason),
        }
    }
    drop(reads);

    // Then each index against the owners' truth.
    let indexed = checker.indexed_offices();
    indexes_total.store(indexed.len() as u64, Ordering::Relaxed);
    for (office, n) in indexed {
        let source = read[n].clone();
        if let Err(reason) = read_index(&mut checker, &office, &source).await {
            checker.unreadable(n, &source.host, format!("its index: {reason}"));
        }
        progress.indexes.fetch_add(1, Ordering::Relaxed);
    }
    drop(shown);

    let invariants = checker.finish();
    let ok = invariants.iter().all(|i| i["ok"] == true);
    let text = invariants
        .iter()
        .map(|i| {
            format!(
                "{} {}: {}",
                if i["ok"] == true { "ok  " } else { "FAIL" },
                i["name"].as_str().unwrap_or(""),
                i["detail"].as_str().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    Ok(Report {
        json: json!({"ok": ok, "invariants": invariants}),
        text,
        ok,
    })
}

/// The same invariants over whole replica dumps gathered some other way (the deterministic
/// simulator's replicas): `(office, replica id, dump document)`.
pub fn check_documents(manifest: &Manifest, documents: &[(String, u64, Value)]) -> Vec<Value> {
    let mut checker = Checker::new(manifest, None);
    checker.heads(
        documents
            .iter()
            .map(|(office, replica, document)| Head::parse(office, *replica, document))
            .collect(),
    );
    for (n, (office, replica, document)) in documents.iter().enumerate() {
        let Ok(code) = office.parse::<OfficeCode>() else {
            continue;
        };
        let best = checker.is_best(n);
        let mut tally = Tally::new();
        for value in document["cases"].as_array().into_iter().flatten() {
            let Ok(case) = serde_json::from_value::<Case>(value.clone()) else {
                continue;
            };
            let digest = match value.get("petitioner_sha256") {
                Some(digest) => digest.as_str().map(str::to_string),
                None => case.petitioner_sha256(),
            };
            tally.case(&code, *replica, case, digest.as_deref(), None, None, best);
        }
        let head = checker.heads[n].clone();
        checker.merge(n, head, tally);
    }
    for (office, n) in checker.indexed_offices() {
        let summaries: Vec<Summary> = documents[n].2["index"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|value| serde_json::from_value(value.clone()).ok())
            .collect();
        let mut seen = HashSet::new();
        checker.index_page(&office, &mut seen, summaries);
        checker.index_end(&office, &seen);
    }
    checker.finish()
}
