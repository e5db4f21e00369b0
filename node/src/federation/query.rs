//! Federation.Query: what a supervisor sees of its office's subtree, in two honest read paths.
//!
//! - **From the index** (the default): the office's own cases and the summaries its children
//!   sent up, with `as_of` per child (when this office last applied that child's summaries).
//! - **Fresh** (`fresh`): the office asks each child office the same question, fresh, with what
//!   is left of the deadline (less [`QUERY_FRESH_HOP_MARGIN_MS`] per level), and each child asks
//!   its own children in turn. A child that does not answer in time (partitioned, down, too
//!   slow) is served from this office's index: its cases are marked `stale`, it is listed in
//!   `unreachable` and the answer is `partial`. No subtree is ever left out silently.
//!
//! Both paths page in the order of the request's [`Sort`] (case id by default; registered, due or
//! changed time, then case id): an answer that stops at `limit` (or whose subtree's page stopped)
//! carries `next_cursor`, naming the sort and the last case it holds; the next page starts after
//! it. The paging and merging rules are pure ([`page`], [`merge`]); the IO is [`Asker`].
//!
//! The index answer reads a page of secondary keys ([`index_page`], over
//! [`crate::machine::query_keys`]): the narrowest scope the filter names, in the sort's order,
//! from the cursor, until the page is full; filters without keys of their own are checked on each
//! case read. The fresh answer reads the office's summaries whole ([`local_summaries`]). The
//! figures `stats` shows are counters, not scans.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use federation_proto::v1::federation_client::FederationClient;
use federation_proto::v1::{self, QueryReply, QueryRequest, StatsReply, StatsRequest};
use liandong_domain::message::SummaryV2;
use liandong_domain::OfficeCode;
use tokio::time::Instant;

use super::directory::Directory;
use super::faults::Faults;
use crate::machine::{keys, StateMachineStore};
use crate::raft::network::{through_link_fault, Transport};
use crate::store::codec::decode;

/// Summaries one query returns at most (one page).
pub const QUERY_LIMIT_MAX: u32 = 10_000;
/// A fresh query's deadline when the request names none.
pub const QUERY_FRESH_DEADLINE_MS: u32 = 1_000;
/// The longest deadline a fresh query may ask for: within the slice of time the `liandong` CLI
/// gives one host's answer (`HOST_ATTEMPT_MS`, 2.5 s), so a slow subtree never makes the CLI
/// give up on the whole answer.
pub const QUERY_FRESH_DEADLINE_MS_MAX: u32 = 2_000;
/// What each level of a fresh query keeps of its deadline for itself when it asks its children:
/// the time to merge their answers and reply before its own asker gives up on it.
pub const QUERY_FRESH_HOP_MARGIN_MS: u32 = 100;

/// Statuses of cases still waiting for a decision or a reply (`--status open`).
pub use crate::machine::stats::OPEN_STATUSES;
/// Statuses of cases whose office has answered (`--status closed`).
pub const CLOSED_STATUSES: [&str; 6] = [
    "declined",
    "replied",
    "evaluated",
    "review_requested",
    "reviewed",
    "final",
];
/// The status groups a query accepts besides the status words (`warned`: a running limit reached
/// a warning, 50 % or more, overdue included).
pub const STATUS_GROUPS: [&str; 4] = ["open", "closed", "overdue", "warned"];
/// The orders a query answers in (besides the default, case id).
pub const SORTS: [&str; 3] = ["registered", "due", "changed"];
/// The grades of major cases.
pub const GRADES: [&str; 3] = ["A", "B", "C"];

/// Which cases a query wants (every filter must hold).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub case_id: Option<String>,
    /// Only cases held by this office (within the asking office's subtree).
    pub office: Option<OfficeCode>,
    /// A status word or group ([`STATUS_GROUPS`]).
    pub status: Option<String>,
    pub category: Option<String>,
    pub overdue_only: bool,
    pub grade: Option<String>,
    pub level: Option<liandong_domain::Level>,
    pub registered_from_ms: Option<i64>,
    pub registered_to_ms: Option<i64>,
    pub petitioner_key: Option<String>,
    pub channel: Option<String>,
    pub due_from_ms: Option<i64>,
    pub due_to_ms: Option<i64>,
    pub replied_from_ms: Option<i64>,
    pub replied_to_ms: Option<i64>,
    pub warned_only: bool,
    pub skip_level_only: bool,
}

/// A time range `[from, to)` of a filter: at least one end, and not empty.
fn check_range(name: &str, from: Option<i64>, to: Option<i64>) -> Result<(), String> {
    if let (Some(from), Some(to)) = (from, to) {
        if from >= to {
            return Err(format!(
                "the {name} date range is empty (from is not before to)"
            ));
        }
    }
    Ok(())
}

fn in_range(at: Option<i64>, from: Option<i64>, to: Option<i64>) -> bool {
    if from.is_none() && to.is_none() {
        return true;
    }
    at.is_some_and(|at| from.is_none_or(|from| at >= from) && to.is_none_or(|to| at < to))
}

/// The channels a query names: how petitions come in.
pub fn channel_words() -> Vec<&'static str> {
    liandong_domain::Channel::ALL
        .iter()
        .map(|channel| channel.as_str())
        .collect()
}

/// A channel word, or why it is not one.
pub fn check_channel(channel: &str) -> Result<(), String> {
    if channel_words().contains(&channel) {
        Ok(())
    } else {
        Err(format!(
            "unknown channel {:?}: one of {}",
            liandong_domain::echo(channel),
            channel_words().join(", ")
        ))
    }
}

/// The order of a query's answer, and of its cursors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    #[default]
    CaseId,
    Registered,
    /// By the running limit (cases without one last).
    Due,
    Changed,
}

/// Where a case stands in a sort: the time sorted on (0 for case id order), then its case id.
pub type SortKey = (i64, String);

impl Sort {
    /// The sort a request names (none: case id), or why it is not one.
    pub fn parse(word: Option<&str>) -> Result<Sort, String> {
        match word {
            None | Some("") | Some("case_id") | Some("id") => Ok(Sort::CaseId),
            Some("registered") => Ok(Sort::Registered),
            Some("due") => Ok(Sort::Due),
            Some("changed") => Ok(Sort::Changed),
            Some(other) => Err(format!(
                "unknown sort {:?}: one of {}",
                liandong_domain::echo(other),
                SORTS.join(", ")
            )),
        }
    }

    fn word(self) -> &'static str {
        match self {
            Sort::CaseId => "case_id",
            Sort::Registered => "registered",
            Sort::Due => "due",
            Sort::Changed => "changed",
        }
    }

    pub fn key(self, case: &v1::IndexUpdate) -> SortKey {
        let at = match self {
            Sort::CaseId => 0,
            Sort::Registered => case.registered_ms,
            Sort::Due => case.due_ms.unwrap_or(i64::MAX),
            Sort::Changed => case.changed_ms,
        };
        (at, case.case_id.clone())
    }

    /// The cursor after `key`: the case id alone in case id order, else `<sort>:<ms>:<case id>`.
    pub fn cursor(self, key: &SortKey) -> String {
        match self {
            Sort::CaseId => key.1.clone(),
            sort => format!("{}:{}:{}", sort.word(), key.0, key.1),
        }
    }

    /// The key a cursor names, or why it is not a cursor of this sort.
    pub fn parse_cursor(self, cursor: &str) -> Result<SortKey, String> {
        let bad = |why: &str| format!("bad cursor {:?}: {why}", liandong_domain::echo(cursor));
        let case_id = |text: &str| {
            text.parse::<liandong_domain::CaseId>()
                .map(|_| text.to_string())
                .map_err(|e| bad(&format!("not a case id ({e})")))
        };
        match (self, cursor.split_once(':')) {
            (Sort::CaseId, None) => Ok((0, case_id(cursor)?)),
            (Sort::CaseId, Some((word, _))) => Err(bad(&format!(
                "a cursor of the {word} sort: ask with that --sort"
            ))),
            (sort, Some((word, rest))) if word == sort.word() => {
                let (ms, id) = rest
                    .split_once(':')
                    .ok_or_else(|| bad("expected <sort>:<ms>:<case id>"))?;
                let ms = ms.parse::<i64>().map_err(|_| bad("not a time"))?;
                Ok((ms, case_id(id)?))
            }
            (sort, Some((word, _))) => Err(bad(&format!(
                "a cursor of the {word} sort, not of {}",
                sort.word()
            ))),
            (sort, None) => Err(bad(&format!(
                "a case id cursor, not one of the {} sort",
                sort.word()
            ))),
        }
    }
}

/// The longest petitioner key a query takes (a key is 64 hex digits).
pub const PETITIONER_KEY_CHARS_MAX: usize = 128;

impl Filter {
    /// The filter `request` asks for, or why it is not one (an unknown status, grade or level,
    /// an empty date range).
    pub fn of(request: &QueryRequest, office: Option<OfficeCode>) -> Result<Filter, String> {
        if let Some(status) = &request.status {
            let known = liandong_domain::Status::WORDS.contains(&status.as_str())
                || STATUS_GROUPS.contains(&status.as_str());
            if !known {
                return Err(format!(
                    "unknown status {status:?}: one of {}, or a group: {}",
                    liandong_domain::Status::WORDS.join(", "),
                    STATUS_GROUPS.join(", ")
                ));
            }
        }
        if let Some(grade) = &request.grade {
            if !GRADES.contains(&grade.as_str()) {
                return Err(format!(
                    "unknown grade {grade:?}: one of {}",
                    GRADES.join(", ")
                ));
            }
        }
        let level = match &request.level {
            Some(word) => Some(parse_level(word)?),
            None => None,
        };
        if let Some(key) = &request.petitioner_key {
            if key.is_empty()
                || key.len() > PETITIONER_KEY_CHARS_MAX
                || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            {
                return Err(format!(
                    "bad petitioner key {:?}: the key a case shows (letters and digits)",
                    liandong_domain::echo(key)
                ));
            }
        }
        check_range(
            "registered",
            request.registered_from_ms,
            request.registered_to_ms,
        )?;
        check_range("due", request.due_from_ms, request.due_to_ms)?;
        check_range("replied", request.replied_from_ms, request.replied_to_ms)?;
        if let Some(channel) = &request.channel {
            check_channel(channel)?;
        }
        Ok(Filter {
            case_id: request.case_id.clone(),
            office,
            status: request.status.clone(),
            category: request.category.clone(),
            overdue_only: request.overdue_only,
            grade: request.grade.clone(),
            level,
            registered_from_ms: request.registered_from_ms,
            registered_to_ms: request.registered_to_ms,
            petitioner_key: request.petitioner_key.clone(),
            channel: request.channel.clone(),
            due_from_ms: request.due_from_ms,
            due_to_ms: request.due_to_ms,
            replied_from_ms: request.replied_from_ms,
            replied_to_ms: request.replied_to_ms,
            warned_only: request.warned_only,
            skip_level_only: request.skip_level_only,
        })
    }

    fn wants_status(&self, summary: &SummaryV2) -> bool {
        match self.status.as_deref() {
            None => true,
            Some("open") => OPEN_STATUSES.contains(&summary.status.as_str()),
            Some("closed") => CLOSED_STATUSES.contains(&summary.status.as_str()),
            Some("overdue") => summary.overdue,
            Some("warned") => summary.is_warned(),
            Some(word) => summary.status == word,
        }
    }

    /// The filters of summary version 2's facts.
    fn wants_facts(&self, summary: &SummaryV2) -> bool {
        let facts = &summary.facts;
        self.channel
            .as_ref()
            .is_none_or(|channel| facts.channel.as_ref() == Some(channel))
            && in_range(facts.due_at, self.due_from_ms, self.due_to_ms)
            && in_range(facts.replied_at, self.replied_from_ms, self.replied_to_ms)
            && (!self.warned_only || summary.is_warned())
            && (!self.skip_level_only || summary.is_skip_level())
    }

    pub fn wants(&self, summary: &SummaryV2) -> bool {
        self.wants_facts(summary)
            && summary.is_owner_copy()
            && self
                .case_id
                .as_ref()
                .is_none_or(|id| summary.case_id.to_string() == *id)
            && self
                .office
                .as_ref()
                .is_none_or(|code| summary.owner == *code)
            && self.wants_status(summary)
            && self
                .category
                .as_ref()
                .is_none_or(|category| summary.category == *category)
            && (!self.overdue_only || summary.overdue)
            && self
                .grade
                .as_ref()
                .is_none_or(|grade| summary.grade.as_ref() == Some(grade))
            && self
                .level
                .is_none_or(|level| summary.owner.level() == level)
            && self
                .registered_from_ms
                .is_none_or(|from| summary.registered_at >= from)
            && self
                .registered_to_ms
                .is_none_or(|to| summary.registered_at < to)
            && self
                .petitioner_key
                .as_ref()
                .is_none_or(|key| summary.petitioner_key == *key)
    }
}

/// An office level by its word (province, city, county, township).
pub fn parse_level(word: &str) -> Result<liandong_domain::Level, String> {
    use liandong_domain::Level;
    [Level::Province, Level::City, Level::County, Level::Township]
        .into_iter()
        .find(|level| level.as_str() == word)
        .ok_or_else(|| format!("unknown level {word:?}: one of province, city, county, township"))
}

/// One source's page: its cases in case id order, and where it stopped if it did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Part {
    pub cases: Vec<v1::IndexUpdate>,
    /// The last case id of `cases` when the source holds more after it.
    pub next_cursor: Option<String>,
}

/// The page of `summaries` in `sort`'s order after `cursor`: at most `limit`, marked `stale`
/// when they come from an index standing in for a subtree that did not answer.
pub fn page<'a>(
    summaries: impl Iterator<Item = &'a SummaryV2>,
    cursor: Option<&SortKey>,
    limit: usize,
    stale: bool,
    sort: Sort,
) -> Part {
    let mut keyed: Vec<(SortKey, v1::IndexUpdate)> = summaries
        .map(|summary| {
            let mut proto: v1::IndexUpdate = summary.into();
            proto.stale = stale;
            (sort.key(&proto), proto)
        })
        .filter(|(key, _)| cursor.is_none_or(|cursor| key > cursor))
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let more = keyed.len() > limit;
    keyed.truncate(limit);
    let next_cursor = more
        .then(|| keyed.last().map(|(key, _)| sort.cursor(key)))
        .flatten();
    Part {
        cases: keyed.into_iter().map(|(_, case)| case).collect(),
        next_cursor,
    }
}

/// The parts merged into one page in `sort`'s order, at most `limit`. A case two parts hold
/// (it moved between subtrees) is taken fresh before stale, then the newer version. A part
/// that stopped early stops the merged page at its cursor too (cases after it may be missing
/// from it), so that the next page, asked with the merged cursor, misses nothing.
pub fn merge(parts: Vec<Part>, limit: usize, sort: Sort) -> Part {
    let cut = parts
        .iter()
        .filter_map(|part| part.next_cursor.as_deref())
        .map(|cursor| match sort {
            Sort::CaseId => (0, cursor.to_string()),
            // A part's cursor is this build's own; one that does not parse cuts everything.
            sort => sort
                .parse_cursor(cursor)
                .unwrap_or((i64::MIN, String::new())),
        })
        .min();
    let mut by_case: BTreeMap<String, v1::IndexUpdate> = BTreeMap::new();
    for case in parts.into_iter().flat_map(|part| part.cases) {
        if cut.as_ref().is_some_and(|cut| sort.key(&case) > *cut) {
            continue;
        }
        let better = by_case
            .get(&case.case_id)
            .is_none_or(|held| (!case.stale, case.version) > (!held.stale, held.version));
        if better {
            by_case.insert(case.case_id.clone(), case);
        }
    }
    let more_than_limit = by_case.len() > limit;
    let mut keyed: Vec<(SortKey, v1::IndexUpdate)> = by_case
        .into_values()
        .map(|case| (sort.key(&case), case))
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    keyed.truncate(limit);
    let next_cursor = (more_than_limit || cut.is_some())
        .then(|| keyed.last().map(|(key, _)| sort.cursor(key)))
        .flatten();
    Part {
        cases: keyed.into_iter().map(|(_, case)| case).collect(),
        next_cursor,
    }
}

/// How many secondary keys one read of [`index_page`] takes at a time, at most.
const SCAN_CHUNK_MAX: usize = 512;

impl Filter {
    /// The scope of secondary keys ([`crate::machine::query_keys`]) whose cases include every
    /// case this filter wants, the narrowest of those the filter names.
    fn scope(&self) -> String {
        if let Some(office) = &self.office {
            return format!("o:{office}");
        }
        match self.status.as_deref() {
            Some(group @ ("open" | "closed" | "overdue" | "warned")) => format!("g:{group}"),
            Some(word) => format!("s:{word}"),
            None if self.overdue_only => "g:overdue".to_string(),
            None if self.warned_only => "g:warned".to_string(),
            None => "all".to_string(),
        }
    }

    /// The range `[from, to)` of times in `sort`'s order that can hold a wanted case.
    fn time_range(&self, sort: Sort) -> (Option<i64>, Option<i64>) {
        match sort {
            Sort::Registered => (self.registered_from_ms, self.registered_to_ms),
            Sort::Due => (self.due_from_ms, self.due_to_ms),
            Sort::CaseId | Sort::Changed => (None, None),
        }
    }
}

impl Sort {
    /// The order's byte in the secondary keys.
    fn key_byte(self) -> u8 {
        match self {
            Sort::CaseId => b'i',
            Sort::Registered => b'r',
            Sort::Due => b'd',
            Sort::Changed => b'c',
        }
    }
}

/// One page of the office's index answer: the cases `filter` wants in `sort`'s order after
/// `cursor`, at most `limit` (with the cursor when there are more), each with the case it
/// repeats, if any. Read through the secondary keys of the filter's narrowest scope (office,
/// status or group, overdue, warned; else every case), from the cursor or the start of the
/// filter's registered or due range in those orders, until the page is full: about a page of
/// keys when the scope's cases are the filter's. Filters without a scope of their own
/// (category, channel, grade, level, petitioner key, skip-level, replied days, and the
/// registered or due days in another order) are checked on each case read.
pub fn index_page(
    machine: &StateMachineStore,
    filter: &Filter,
    cursor: Option<&SortKey>,
    limit: usize,
    sort: Sort,
) -> Result<(Part, BTreeMap<String, String>), String> {
    index_page_in(machine, filter, cursor, limit, sort)
}

/// [`index_page`] over any reader of the office's state (a test counts what it reads).
pub(crate) fn index_page_in(
    machine: &impl crate::machine::Read,
    filter: &Filter,
    cursor: Option<&SortKey>,
    limit: usize,
    sort: Sort,
) -> Result<(Part, BTreeMap<String, String>), String> {
    use crate::machine::query_keys;
    let err = |e: crate::machine::ApplyError| e.to_string();
    let mut wanted: Vec<SummaryV2> = Vec::new();
    if let Some(id) = &filter.case_id {
        // One case asked by id: read it alone.
        if let Ok(case_id) = id.parse::<liandong_domain::CaseId>() {
            if let Some(summary) = query_keys::effective_summary(machine, &case_id).map_err(err)? {
                if filter.wants(&summary) {
                    wanted.push(summary);
                }
            }
        }
    } else {
        let prefix = query_keys::scope_prefix(&filter.scope(), sort.key_byte());
        let (from, to) = filter.time_range(sort);
        let mut start = match from {
            Some(from) => [prefix.as_slice(), &query_keys::time_bytes(from)].concat(),
            None => prefix.clone(),
        };
        if let Some((at, id)) = cursor {
            // Strictly after the cursor's case.
            let after = [
                prefix.as_slice(),
                &query_keys::time_bytes(*at),
                id.as_bytes(),
                b"\0",
            ]
            .concat();
            start = start.max(after);
        }
        let end = match to {
            Some(to) => [prefix.as_slice(), &query_keys::time_bytes(to)].concat(),
            None => crate::store::keys::prefix_end(&prefix),
        };
        // About a page at a time: a filter checked on each case may need more.
        let chunk = (limit + 1).clamp(16, SCAN_CHUNK_MAX);
        'scan: while start < end {
            let keys = crate::machine::Read::scan(machine, &start, &end, chunk)
                .map_err(|e| e.to_string())?;
            for (key, _) in &keys {
                let Some(case_id) = query_keys::key_case(prefix.len(), key)
                    .and_then(|id| id.parse::<liandong_domain::CaseId>().ok())
                else {
                    continue;
                };
                if let Some(summary) =
                    query_keys::effective_summary(machine, &case_id).map_err(err)?
                {
                    if filter.wants(&summary) {
                        wanted.push(summary);
                        if wanted.len() > limit {
                            break 'scan;
                        }
                    }
                }
            }
            match keys.last() {
                Some((last, _)) if keys.len() == chunk => {
                    start = [last.as_slice(), b"\0"].concat();
                }
                _ => break,
            }
        }
    }
    let part = page(wanted.iter(), cursor, limit, false, sort);
    let mut repeats = BTreeMap::new();
    for summary in wanted.iter().take(limit) {
        if let Some(primary) = query_keys::repeat_of(machine, summary).map_err(err)? {
            repeats.insert(summary.case_id.to_string(), primary);
        }
    }
    Ok((part, repeats))
}

/// Every case summary `machine`'s office knows, by case id: the index, then this office's own
/// cases (its own copy is the truth when both know a case, one transferred up from below, say).
pub fn local_summaries(machine: &StateMachineStore) -> Result<BTreeMap<String, SummaryV2>, String> {
    let read = |prefix: &[u8]| {
        machine
            .scan_prefix(prefix, usize::MAX)
            .map_err(|e| e.to_string())
    };
    let mut by_case = BTreeMap::new();
    for (_, value) in read(keys::INDEX)? {
        if let Ok(summary) = SummaryV2::decode_stored(&value) {
            by_case.insert(summary.case_id.to_string(), summary);
        }
    }
    for (_, value) in read(keys::CASE)? {
        if let Ok(case) = liandong_domain::Case::from_bytes(&value) {
            let summary = SummaryV2::of(&case);
            if summary.is_owner_copy() || !by_case.contains_key(&summary.case_id.to_string()) {
                by_case.insert(summary.case_id.to_string(), summary);
            }
        }
    }
    Ok(by_case)
}

/// Per child office, how current the index is for its subtree: when this office last applied
/// the child's summaries (or, in state written before that was recorded, the newest change
/// time those summaries carried).
pub fn as_of_ms(
    machine: &StateMachineStore,
) -> Result<std::collections::HashMap<String, i64>, String> {
    let mut as_of = std::collections::HashMap::new();
    for (prefix, recorded) in [(keys::WATERMARK, false), (keys::INDEX_APPLIED, true)] {
        let entries = machine
            .scan_prefix(prefix, usize::MAX)
            .map_err(|e| e.to_string())?;
        for (key, value) in entries {
            let child = String::from_utf8(key[prefix.len()..].to_vec());
            if let (Ok(child), Ok(ms)) = (child, decode::<i64>(&value)) {
                if recorded || !as_of.contains_key(&child) {
                    as_of.insert(child, ms);
                }
            }
        }
    }
    Ok(as_of)
}

/// A fresh query's deadline: the request's (0: the default), or an error past the maximum.
pub fn fresh_deadline_ms(requested: u32) -> Result<u32, String> {
    match requested {
        0 => Ok(QUERY_FRESH_DEADLINE_MS),
        ms if ms > QUERY_FRESH_DEADLINE_MS_MAX => Err(format!(
            "deadline {ms} ms is over the maximum {QUERY_FRESH_DEADLINE_MS_MAX} ms"
        )),
        ms => Ok(ms),
    }
}

/// How many rounds over a child's hosts a fresh read makes at most (within its deadline).
pub const ASK_ROUNDS_MAX: u32 = 4;
/// The pause after a round in which no host of the child answered, times the rounds so far.
pub const ASK_ROUND_PAUSE_MS: u64 = 40;

/// How the federation service asks child offices for their fresh answers.
#[derive(Clone)]
pub struct Asker {
    pub directory: Arc<Directory>,
    pub transport: Transport,
    pub faults: Faults,
}

impl Asker {
    /// `request` (already addressed to `child`) asked of `child`'s leader before `deadline`:
    /// the last known leader first, then its other hosts. A link cut by a drill is not asked.
    pub async fn ask(
        &self,
        from: &OfficeCode,
        child: &OfficeCode,
        request: QueryRequest,
        deadline: Instant,
    ) -> Result<QueryReply, String> {
        self.ask_with(
            from,
            child,
            request,
            deadline,
            |mut client, call| async move { client.query(call).await },
        )
        .await
    }

    /// `request` (already addressed to `child`) asked of `child`'s leader before `deadline`, as
    /// [`Asker::ask`] does for a query: the fresh figures of `stats --fresh`.
    pub async fn ask_stats(
        &self,
        from: &OfficeCode,
        child: &OfficeCode,
        request: StatsRequest,
        deadline: Instant,
    ) -> Result<StatsReply, String> {
        self.ask_with(
            from,
            child,
            request,
            deadline,
            |mut client, call| async move { client.stats(call).await },
        )
        .await
    }

    /// [`Asker::ask`] for any of the federation service's reads: `rpc` makes the call.
    async fn ask_with<Req, Rep, F, Fut>(
        &self,
        from: &OfficeCode,
        child: &OfficeCode,
        request: Req,
        deadline: Instant,
        rpc: F,
    ) -> Result<Rep, String>
    where
        Req: Clone,
        F: Fn(FederationClient<tonic::transport::Channel>, tonic::Request<Req>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<Rep>, tonic::Status>>,
    {
        if self.faults.cut(from.as_str(), child.as_str())
            || self.faults.cut(child.as_str(), from.as_str())
        {
            return Err(format!("link {from} - {child} is cut (drill partition)"));
        }
        // Rounds over the child's hosts, the last known leader first, until one answers or the
        // deadline comes: a leader that could not confirm its leadership in time, or an
        // election under way, is over within a round or two, and a supervisor is better served
        // by the answer than by "partial". The error kept is the most telling one: a follower's
        // "not the leader" says less than the leader's own reason.
        let mut telling: Option<String> = None;
        let mut last_error = format!("office {child} has no hosts");
        for round in 1..=ASK_ROUNDS_MAX {
            let candidates = self.directory.candidates(child.as_str());
            if candidates.is_empty() {
                break;
            }
            for addr in candidates {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    let error = telling.unwrap_or(last_error);
                    return Err(format!(
                        "no answer from {child} within the deadline ({error})"
                    ));
                }
                match self
                    .call(&addr, request.clone(), left, deadline, &rpc)
                    .await
                {
                    Ok(reply) => {
                        self.directory.remember_leader(child.as_str(), &addr);
                        return Ok(reply);
                    }
                    Err(error) => {
                        let error = format!("{addr}: {error}");
                        if !error.contains("not the leader") {
                            telling = Some(error.clone());
                        }
                        last_error = error;
                    }
                }
            }
            let pause = Duration::from_millis(ASK_ROUND_PAUSE_MS * round as u64);
            if Instant::now() + pause >= deadline {
                break;
            }
            tokio::time::sleep(pause).await;
        }
        Err(telling.unwrap_or(last_error))
    }

    async fn call<Req, Rep, F, Fut>(
        &self,
        addr: &str,
        request: Req,
        timeout: Duration,
        deadline: Instant,
        rpc: &F,
    ) -> Result<Rep, String>
    where
        F: Fn(FederationClient<tonic::transport::Channel>, tonic::Request<Req>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<Rep>, tonic::Status>>,
    {
        let channel = self.transport.channel(addr).map_err(|e| e.to_string())?;
        let client = FederationClient::new(channel)
            .max_decoding_message_size(federation_proto::MESSAGE_BYTES_MAX)
            .max_encoding_message_size(federation_proto::MESSAGE_BYTES_MAX);
        let mut call = tonic::Request::new(request);
        call.set_timeout(timeout);
        let action = self.faults.link_action(self.directory.host_name(addr));
        match through_link_fault(action, deadline, rpc(client, call)).await {
            Ok(Ok(reply)) => Ok(reply.into_inner()),
            Ok(Err(status)) => Err(status.message().to_string()),
            Err(lost) => Err(lost.describe().to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every status an owner's copy can have falls in exactly one of `open` and `closed` (a
    /// status missing from both would vanish from both lists); stubs in neither.
    #[test]
    fn every_status_is_open_or_closed() {
        use liandong_domain::{DeclineRoute, HandoffKind, Status};
        let office: OfficeCode = "530602".parse().unwrap();
        let owned = |status: &Status| match status {
            Status::Forwarded { .. } => false,
            Status::Registered
            | Status::Accepted
            | Status::InTransit { .. }
            | Status::Declined { .. }
            | Status::Replied
            | Status::Evaluated
            | Status::ReviewRequested
            | Status::Final
            | Status::Reviewed => true,
        };
        let all = [
            Status::Registered,
            Status::Accepted,
            Status::InTransit {
                to: office.clone(),
                kind: HandoffKind::Transfer,
            },
            Status::Forwarded { to: office.clone() },
            Status::Declined {
                route: DeclineRoute::Litigation,
            },
            Status::Replied,
            Status::Evaluated,
            Status::ReviewRequested,
            Status::Final,
            Status::Reviewed,
        ];
        for status in &all {
            let word = status.as_str();
            let groups = [
                OPEN_STATUSES.contains(&word),
                CLOSED_STATUSES.contains(&word),
            ];
            let expected = usize::from(owned(status));
            assert_eq!(
                groups.iter().filter(|&&g| g).count(),
                expected,
                "{word} is in {groups:?} of (open, closed)"
            );
        }
    }

    use super::*;

    fn case(id: &str, version: u32, stale: bool) -> v1::IndexUpdate {
        v1::IndexUpdate {
            case_id: id.to_string(),
            version,
            stale,
            ..v1::IndexUpdate::default()
        }
    }

    fn ids(part: &Part) -> Vec<&str> {
        part.cases.iter().map(|c| c.case_id.as_str()).collect()
    }

    /// Without the limit the merged page would hold every case of its parts.
    #[test]
    fn a_merged_page_stops_at_the_limit_with_a_cursor() {
        let parts = vec![
            Part {
                cases: vec![case("a", 1, false), case("c", 1, false)],
                next_cursor: None,
            },
            Part {
                cases: vec![case("b", 1, false), case("d", 1, false)],
                next_cursor: None,
            },
        ];
        let merged = merge(parts, 3, Sort::CaseId);
        assert_eq!(ids(&merged), ["a", "b", "c"]);
        assert_eq!(merged.next_cursor.as_deref(), Some("c"));
    }

    /// Without the cut a part's unseen cases (after its cursor) would be skipped by the next
    /// page: the merged page must stop where the shortest part stopped.
    #[test]
    fn a_part_that_stopped_early_stops_the_merged_page() {
        let parts = vec![
            Part {
                cases: vec![case("a", 1, false), case("b", 1, false)],
                next_cursor: Some("b".into()),
            },
            Part {
                cases: vec![case("c", 1, false)],
                next_cursor: None,
            },
        ];
        let merged = merge(parts, 10, Sort::CaseId);
        assert_eq!(ids(&merged), ["a", "b"]);
        assert_eq!(merged.next_cursor.as_deref(), Some("b"));
    }

    /// A complete answer carries no cursor, so a client does not ask for an empty next page.
    #[test]
    fn a_complete_page_has_no_cursor() {
        let merged = merge(
            vec![Part {
                cases: vec![case("a", 1, false)],
                next_cursor: None,
            }],
            1,
            Sort::CaseId,
        );
        assert_eq!(merged.next_cursor, None);
    }

    /// A case held by a stale index and by a subtree's fresh answer is shown once, fresh.
    #[test]
    fn fresh_copies_win_over_stale_ones() {
        let parts = vec![
            Part {
                cases: vec![case("a", 9, true)],
                next_cursor: None,
            },
            Part {
                cases: vec![case("a", 3, false)],
                next_cursor: None,
            },
        ];
        let merged = merge(parts, 10, Sort::CaseId);
        assert_eq!(merged.cases.len(), 1);
        assert!(!merged.cases[0].stale);
    }

    /// The deadline is bounded: a caller cannot hold a fresh query open for long.
    #[test]
    fn a_deadline_over_the_maximum_is_refused() {
        assert_eq!(fresh_deadline_ms(0), Ok(QUERY_FRESH_DEADLINE_MS));
        assert_eq!(fresh_deadline_ms(500), Ok(500));
        assert!(fresh_deadline_ms(QUERY_FRESH_DEADLINE_MS_MAX + 1).is_err());
    }
}

/// [`Asker`] against real tonic servers standing in for a child office's three hosts (plain
/// HTTP/2 on loopback: the asker's rounds are under test, not TLS or the office behind them).
#[cfg(test)]
mod asking {
    use super::*;
    use crate::manifest::{HostEntry, Manifest, Member, OfficeEntry, MANIFEST_VERSION};
    use federation_proto::v1::federation_server::{Federation, FederationServer};
    use federation_proto::v1::{
        DeliverReply, DeliverRequest, ReportReply, ReportRequest, ReportsReply, ReportsRequest,
    };
    use std::sync::atomic::{AtomicU32, Ordering};
    use tonic::{Request, Response, Status};

    const CHILD: &str = "530602001";

    /// One host of the child: a follower always says "not the leader"; the leader fails to
    /// confirm its leadership `unconfirmed` times, then answers.
    struct Host {
        leader: bool,
        unconfirmed: u32,
        calls: Arc<AtomicU32>,
    }

    #[tonic::async_trait]
    impl Federation for Host {
        async fn deliver(
            &self,
            _: Request<DeliverRequest>,
        ) -> Result<Response<DeliverReply>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
        async fn query(&self, _: Request<QueryRequest>) -> Result<Response<QueryReply>, Status> {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            if !self.leader {
                return Err(Status::unavailable(format!(
                    "not the leader of office {CHILD}"
                )));
            }
            if call < self.unconfirmed {
                return Err(Status::unavailable(format!(
                    "office {CHILD} cannot serve now: leadership not confirmed (heartbeat timed out)"
                )));
            }
            Ok(Response::new(QueryReply {
                as_of_ms: [(CHILD.to_string(), 42)].into(),
                ..QueryReply::default()
            }))
        }
        async fn stats(&self, _: Request<StatsRequest>) -> Result<Response<StatsReply>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
        async fn reports(
            &self,
            _: Request<ReportsRequest>,
        ) -> Result<Response<ReportsReply>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
        async fn report(&self, _: Request<ReportRequest>) -> Result<Response<ReportReply>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
    }

    /// Serves three hosts of CHILD, the leader `leader_at`th (1-3) in the directory's order
    /// (no leader is remembered yet, as after a restart); returns the asker and the leader's
    /// call count.
    async fn child_office(unconfirmed: u32, leader_at: u32) -> (Asker, Arc<AtomicU32>) {
        let mut hosts = Vec::new();
        let leader_calls = Arc::new(AtomicU32::new(0));
        for n in 1..=3 {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            let leader = n == leader_at;
            let host = Host {
                leader,
                unconfirmed,
                calls: if leader {
                    leader_calls.clone()
                } else {
                    Arc::default()
                },
            };
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(FederationServer::new(host))
                    .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
            );
            hosts.push(HostEntry {
                name: format!("h{CHILD}-{n}"),
                raft_addr: "127.0.0.1:1".to_string(),
                api_addr: addr,
                metrics_addr: "127.0.0.1:1".to_string(),
                http_addr: None,
                offices: vec![CHILD.to_string()],
                site: None,
            });
        }
        let manifest = Manifest {
            version: MANIFEST_VERSION,
            region: "530602".to_string(),
            replicas: 3,
            time_scale: 1.0,
            clock_origin_ms: 0,
            secret_hex: String::new(),
            offices: vec![OfficeEntry {
                code: CHILD.to_string(),
                name: "a township".to_string(),
                level: "Township".to_string(),
                parent: Some("530602".to_string()),
                members: hosts
                    .iter()
                    .zip(1..)
                    .map(|(host, id)| Member {
                        id,
                        host: host.name.clone(),
                    })
                    .collect(),
            }],
            hosts,
            sms_gateway: None,
            hotline_callback: None,
            generation: 0,
        };
        let asker = Asker {
            directory: Arc::new(Directory::new(&manifest)),
            transport: Transport::default(),
            faults: Faults::default(),
        };
        (asker, leader_calls)
    }

    async fn ask(asker: &Asker, deadline_ms: u64) -> Result<QueryReply, String> {
        let deadline = Instant::now() + Duration::from_millis(deadline_ms);
        asker
            .ask(
                &"530602".parse().unwrap(),
                &CHILD.parse().unwrap(),
                QueryRequest::default(),
                deadline,
            )
            .await
    }

    /// A leader that misses confirming its leadership once or twice (a loaded host) still
    /// answers within the deadline: the asker goes round the hosts again. With one pass over
    /// the hosts (the old asker) this answer was "not the leader", and the supervisor's answer
    /// partial, on a federation where every office was up.
    #[tokio::test]
    async fn a_leader_that_could_not_confirm_at_first_is_asked_again_within_the_deadline() {
        let (asker, leader_calls) = child_office(2, 3).await;
        let reply = ask(&asker, 2_000).await.expect("answered");
        assert_eq!(reply.as_of_ms[CHILD], 42);
        assert_eq!(leader_calls.load(Ordering::SeqCst), 3);
        // The leader is remembered: the next question goes to it first, and only to it.
        let reply = ask(&asker, 2_000).await.expect("answered");
        assert_eq!(reply.as_of_ms[CHILD], 42);
        assert_eq!(leader_calls.load(Ordering::SeqCst), 4);
    }

    /// A leader that never confirms: the asker gives up by the deadline, and says why in the
    /// leader's words, not the last follower's "not the leader" (all the old asker said).
    #[tokio::test]
    async fn a_child_that_never_answers_is_given_up_by_the_deadline_with_the_leaders_reason() {
        let (asker, leader_calls) = child_office(u32::MAX, 1).await;
        let started = Instant::now();
        let error = ask(&asker, 300).await.expect_err("never answers");
        assert!(error.contains("leadership not confirmed"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(3), "{error}");
        assert!(leader_calls.load(Ordering::SeqCst) >= 2, "{error}");
    }
}
