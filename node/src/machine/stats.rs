//! A supervisor's figures kept as aggregates: per holding office, one counter per figure
//! (`stat/<office>/<figure>`), moved in the same transaction as the case or index entry whose
//! change moves it. `stats` then reads a few counters per office instead of listing cases, and
//! is exact at any volume: every total is the sum of its offices' rows by construction.
//!
//! What is counted is exactly what `query` lists: per case id, this office's own copy when it
//! holds the case, else the summary its children sent up, and nothing for a copy that was
//! forwarded on ([`effective`]).
//!
//! Figures: `total`, `status:<word>`, `category:<name>`, `kind:<kind>`, `grade:<A|B|C>`,
//! `satisfaction:<word>`, `overdue`, `backlog` (overdue and still open); from format 2 (summary
//! version 2's facts) also `level:<level>`, `channel:<word>`, `warned`, `accepted:<in_time|late>`,
//! `replied:<on_time|late>`, `answered:<kind>`, `skip_level`, `resolution:<opinion>`, and the
//! trend's per-day counters `day:<YYYY-MM-DD>:<registered|replied|overdue>` (China time; see
//! [`liandong_domain::figures`] for what each means and the rates made of them). The counters are state
//! machine data (the snapshot carries them); a state written before they existed is counted
//! once when the replica opens or installs a snapshot without them ([`rebuild_if_missing`]).
//!
//! One figure is a record rather than a count of what is held now: `breached`, the cases an
//! office let pass a statutory limit while it held them (once per case and stay). `overdue`
//! follows the case to its next holder, which starts clean; `breached` stays with the office
//! that held the case when the limit passed. The holding office counts it when the limit
//! passes, and every ancestor when the office's `breach` message reaches it (exactly once, by
//! the federation's inbox). It cannot be recounted from the cases, so a rebuild keeps it.

use std::collections::BTreeMap;

use liandong_domain::figures::day_figure;
use liandong_domain::message::SummaryV2;
use liandong_domain::{Case, Date, OfficeCode};

use super::{keys, ApplyError, Read};
use crate::raft::types::StorageError;
use crate::store::codec::{decode, encode};
use crate::store::keys::prefix_end;
use crate::store::{read_err, HostDb, Txn};

/// The counters' format, stored under [`keys::STATS_FORMAT`] once they are complete.
///
/// Format 2 added the figures of summary version 2 (level, channel, warned, the in-time and
/// on-time counts, skip-level, resolution, the per-day trend): a state of format 1 is counted
/// again once.
pub const STATS_FORMAT: u8 = 2;
/// The figure of breaches on an office's record (see the module documentation).
pub const BREACHED: &str = "breached";

/// Statuses of cases still waiting for a decision or a reply: overdue ones are the backlog.
pub const OPEN_STATUSES: [&str; 3] = ["registered", "accepted", "in_transit"];

/// What this office counts for one case: its own copy if it holds the case, else the summary
/// from below; nothing for a copy forwarded on.
pub fn effective(own: Option<SummaryV2>, indexed: Option<SummaryV2>) -> Option<SummaryV2> {
    match own {
        Some(own) if own.is_owner_copy() => Some(own),
        _ => indexed.filter(|summary| summary.is_owner_copy()),
    }
}

/// The figures one case adds to its holder's row.
pub fn figures(summary: &SummaryV2) -> Vec<String> {
    let mut figures = vec![
        "total".to_string(),
        format!("status:{}", summary.status),
        format!("category:{}", summary.category),
        format!("kind:{}", summary.kind),
    ];
    if let Some(grade) = &summary.grade {
        figures.push(format!("grade:{grade}"));
    }
    if let Some(satisfaction) = &summary.satisfaction {
        figures.push(format!("satisfaction:{satisfaction}"));
    }
    if summary.overdue {
        figures.push("overdue".to_string());
        if OPEN_STATUSES.contains(&summary.status.as_str()) {
            figures.push("backlog".to_string());
        }
    }
    let facts = &summary.facts;
    figures.push(format!("level:{}", summary.owner.level().as_str()));
    if let Some(channel) = &facts.channel {
        figures.push(format!("channel:{channel}"));
    }
    if summary.is_warned() {
        figures.push("warned".to_string());
    }
    match facts.accepted_in_time {
        Some(true) => figures.push("accepted:in_time".to_string()),
        Some(false) => figures.push("accepted:late".to_string()),
        None => {}
    }
    match facts.replied_on_time {
        Some(true) => figures.push("replied:on_time".to_string()),
        Some(false) => figures.push("replied:late".to_string()),
        None => {}
    }
    if facts.replied_at.is_some() {
        figures.push(format!("answered:{}", summary.kind));
    }
    if summary.is_skip_level() {
        figures.push("skip_level".to_string());
    }
    if let Some(opinion) = &facts.opinion {
        figures.push(format!("resolution:{opinion}"));
    }
    let day = |ms| Date::from_millis(ms);
    figures.push(day_figure(day(summary.registered_at), "registered"));
    if let Some(at) = facts.replied_at {
        figures.push(day_figure(day(at), "replied"));
    }
    if let Some(at) = facts.overdue_at {
        figures.push(day_figure(day(at), "overdue"));
    }
    figures
}

/// Whether a figure is a trend's per-day counter (left out of `stats` unless the trend is asked).
pub fn is_day_figure(figure: &str) -> bool {
    figure.starts_with("day:")
}

/// The longest span of days one trend request reads (400 months).
pub const TREND_DAYS_MAX: i64 = 12_400;

/// The days a stats request asks the per-day counters of (None: no trend), or why not.
pub fn trend_days(
    request: &federation_proto::v1::StatsRequest,
) -> Result<Option<(Date, Date)>, String> {
    use liandong_domain::figures::parse_day;
    if !request.trend {
        return Ok(None);
    }
    let (Some(from), Some(to)) = (&request.from_day, &request.to_day) else {
        return Err("a trend names its first and last day (from_day, to_day)".into());
    };
    let (from, to) = (parse_day(from)?, parse_day(to)?);
    if from > to {
        return Err("the trend's span is empty: from_day is after to_day".into());
    }
    if to.days() - from.days() >= TREND_DAYS_MAX {
        return Err(format!(
            "the trend spans more than {TREND_DAYS_MAX} days: narrow it"
        ));
    }
    Ok(Some((from, to)))
}

fn add(txn: &mut Txn<'_>, office: &OfficeCode, figure: &str, by: i64) -> Result<(), ApplyError> {
    let key = keys::stat(office, figure);
    let count: u64 = match txn.get(&key)? {
        Some(bytes) => decode(&bytes)?,
        None => 0,
    };
    let count = count.saturating_add_signed(by);
    if count == 0 {
        txn.delete(key);
    } else {
        txn.put(key, encode(&count));
    }
    Ok(())
}

/// One more case on `office`'s record of breaches.
pub(crate) fn count_breach(txn: &mut Txn<'_>, office: &OfficeCode) -> Result<(), ApplyError> {
    add(txn, office, BREACHED, 1)
}

/// Moves the counters from what this office counted for a case (`before`) to what it counts now.
pub(crate) fn count_change(
    txn: &mut Txn<'_>,
    before: Option<&SummaryV2>,
    after: Option<&SummaryV2>,
) -> Result<(), ApplyError> {
    // The query's secondary keys move with the same summaries (their own diff: a change
    // of time alone moves keys but no counter).
    super::query_keys::change(txn, before, after);
    let row = |summary: Option<&SummaryV2>| summary.map(|s| (s.owner.clone(), figures(s)));
    let (before, after) = (row(before), row(after));
    if before == after {
        return Ok(());
    }
    if let Some((office, figures)) = &before {
        for figure in figures {
            add(txn, office, figure, -1)?;
        }
    }
    if let Some((office, figures)) = &after {
        for figure in figures {
            add(txn, office, figure, 1)?;
        }
    }
    Ok(())
}

/// The summary of the case's own copy here, if this office keeps one.
pub(crate) fn own_summary(
    reader: &impl Read,
    case_id: &liandong_domain::CaseId,
) -> Result<Option<SummaryV2>, ApplyError> {
    Ok(super::cases::load_header(reader, case_id)?.map(|case| SummaryV2::of(&case)))
}

/// The summary this office's index holds for the case, if any.
pub(crate) fn indexed_summary(
    reader: &impl Read,
    case_id: &liandong_domain::CaseId,
) -> Result<Option<SummaryV2>, ApplyError> {
    match reader.get(&keys::index(case_id))? {
        Some(bytes) => Ok(Some(SummaryV2::decode_stored(&bytes)?)),
        None => Ok(None),
    }
}

/// Every office's row: figure to count, by office code.
pub(crate) fn rows(
    reader: &impl Read,
) -> Result<BTreeMap<String, BTreeMap<String, u64>>, ApplyError> {
    let mut rows: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let end = prefix_end(keys::STAT);
    for (key, value) in reader.scan(keys::STAT, &end, usize::MAX)? {
        let rest = String::from_utf8_lossy(&key[keys::STAT.len()..]).to_string();
        if let Some((office, figure)) = rest.split_once('/') {
            let count: u64 = decode(&value)?;
            rows.entry(office.to_string())
                .or_default()
                .insert(figure.to_string(), count);
        }
    }
    Ok(rows)
}

/// Every office's row as the Stats RPC reads it, for readers outside the state machine.
pub fn office_rows(
    machine: &super::StateMachineStore,
) -> Result<BTreeMap<String, BTreeMap<String, u64>>, ApplyError> {
    rows(machine)
}

/// Every office's row without the trend's per-day counters, which it skips rather than reads:
/// an office's day counters (three per day it saw cases) outnumber its other figures by far.
pub fn office_rows_without_days(
    reader: &super::StateMachineStore,
) -> Result<BTreeMap<String, BTreeMap<String, u64>>, ApplyError> {
    rows_without_days(reader)
}

pub(crate) fn rows_without_days(
    reader: &impl Read,
) -> Result<BTreeMap<String, BTreeMap<String, u64>>, ApplyError> {
    let mut rows: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let end = prefix_end(keys::STAT);
    let mut start = keys::STAT.to_vec();
    while let Some((key, _)) = reader.scan(&start, &end, 1)?.into_iter().next() {
        let rest = &key[keys::STAT.len()..];
        let Some(slash) = rest.iter().position(|b| *b == b'/') else {
            start = [key.as_slice(), b"\0"].concat();
            continue;
        };
        let office_prefix = [keys::STAT, &rest[..=slash]].concat();
        let office = String::from_utf8_lossy(&rest[..slash]).to_string();
        // The office's figures before `day:` and after it (`day;` sorts just past every day).
        let days = [office_prefix.as_slice(), b"day:"].concat();
        let after_days = [office_prefix.as_slice(), b"day;"].concat();
        let office_end = prefix_end(&office_prefix);
        for (from, to) in [(&office_prefix, &days), (&after_days, &office_end)] {
            for (key, value) in reader.scan(from, to, usize::MAX)? {
                let figure = String::from_utf8_lossy(&key[office_prefix.len()..]).to_string();
                rows.entry(office.clone())
                    .or_default()
                    .insert(figure, decode(&value)?);
            }
        }
        start = office_end;
    }
    Ok(rows)
}

/// Counts every case of the office's state once, when its counters are missing (a state written
/// before they existed, or a snapshot from such a build), and writes the query's secondary keys
/// ([`super::query_keys`]) when they are missing. A function of the stored state alone, so every
/// replica counts the same. Whether anything was written.
// openraft's `StorageError` (large) is what a replica's open returns.
#[allow(clippy::result_large_err)]
pub fn rebuild_if_missing(db: &HostDb, office: &str) -> Result<bool, StorageError> {
    let mut txn = Txn::new(db, office);
    let counted =
        txn.get(keys::STATS_FORMAT).map_err(read_err)?.as_deref() == Some(&[STATS_FORMAT][..]);
    let keyed = txn
        .get(keys::QUERY_KEYS_FORMAT)
        .map_err(read_err)?
        .as_deref()
        == Some(&[super::query_keys::QUERY_KEYS_FORMAT][..]);
    if counted && keyed {
        return Ok(false);
    }
    let summaries = effective_all(&txn).map_err(read_err)?;
    if !counted {
        count_all(&mut txn, &summaries).map_err(read_err)?;
        txn.put(keys::STATS_FORMAT.to_vec(), vec![STATS_FORMAT]);
    }
    super::query_keys::rebuild_if_missing(&mut txn, &summaries).map_err(read_err)?;
    db.write(txn.into_batch(), true)?;
    Ok(true)
}

/// What this office counts, per case of its stored cases and index entries ([`effective`]).
fn effective_all(txn: &Txn<'_>) -> Result<Vec<SummaryV2>, ApplyError> {
    let all = |txn: &Txn<'_>, prefix: &[u8]| txn.scan(prefix, &prefix_end(prefix), usize::MAX);
    let mut by_case: BTreeMap<String, (Option<SummaryV2>, Option<SummaryV2>)> = BTreeMap::new();
    for (_, value) in all(txn, keys::INDEX)? {
        let summary = SummaryV2::decode_stored(&value)?;
        let case_id = summary.case_id.to_string();
        by_case.entry(case_id).or_default().1 = Some(summary);
    }
    for (key, value) in all(txn, keys::CASE)? {
        let case = Case::from_bytes(&value).map_err(|source| ApplyError::Case {
            key: String::from_utf8_lossy(&key).to_string(),
            source,
        })?;
        by_case.entry(case.id.to_string()).or_default().0 = Some(SummaryV2::of(&case));
    }
    Ok(by_case
        .into_values()
        .filter_map(|(own, indexed)| effective(own, indexed))
        .collect())
}

/// Replaces every counter with a count of the effective summaries.
fn count_all(txn: &mut Txn<'_>, summaries: &[SummaryV2]) -> Result<(), ApplyError> {
    for (key, _) in txn.scan(keys::STAT, &prefix_end(keys::STAT), usize::MAX)? {
        // A record of breaches is not a count of cases held: it cannot be recounted, and stays.
        if !key.ends_with(format!("/{BREACHED}").as_bytes()) {
            txn.delete(key);
        }
    }
    let mut counts: BTreeMap<(OfficeCode, String), u64> = BTreeMap::new();
    for summary in summaries {
        for figure in figures(summary) {
            *counts.entry((summary.owner.clone(), figure)).or_default() += 1;
        }
    }
    for ((office, figure), count) in counts {
        txn.put(keys::stat(&office, &figure), encode(&count));
    }
    Ok(())
}
