//! A supervisor's figures kept as aggregates: per holding office, one packed row of counts
//! (`stat-row/1/<office>`, [`StatRow`]) and the trend's per-day counters
//! (`stat/<office>/day:…`), moved in the same transaction as the case or index entry whose
//! change moves them. `stats` then reads one value per office instead of listing cases (a
//! province's 1,607 offices in one scan), and is exact at any volume: every total is the sum of
//! its offices' rows by construction. The per-day counters are read only by a trend, and only
//! for its days.
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

use serde::{Deserialize, Serialize};

use liandong_domain::figures::day_figure;
use liandong_domain::message::SummaryV2;
use liandong_domain::{Case, Date, OfficeCode};

use super::{keys, ApplyError, Read};
use crate::raft::types::StorageError;
use crate::store::codec::{decode, encode, encode_into};
use crate::store::keys::prefix_end;
use crate::store::txn::Kept;
use crate::store::{read_err, HostDb, Txn};

/// The counters' format, stored under [`keys::STATS_FORMAT`] once they are complete.
///
/// Format 2 added the figures of summary version 2 (level, channel, warned, the in-time and
/// on-time counts, skip-level, resolution, the per-day trend): a state of format 1 is counted
/// again once. Format 3 packs an office's figures other than the trend's into one value
/// ([`StatRow`]) instead of one counter each: a state of format 2 is packed as it is (see
/// [`rebuild_if_missing`]).
pub const STATS_FORMAT: u8 = 3;
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

/// One office's figures other than the trend's, packed in one value under
/// [`keys::stat_row`] (`stat-row/1/<office>`: version 1 of the layout is in the key, a later
/// layout takes `stat-row/2/`): figure to count, no zero counts. `stats` reads one of these per
/// office instead of one key per figure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatRow {
    pub counts: BTreeMap<String, u64>,
}

impl StatRow {
    /// Moves one figure by `by` (never below zero); a count of zero is dropped.
    fn add(&mut self, figure: &str, by: i64) {
        let count = self.counts.get(figure).copied().unwrap_or(0);
        let count = count.saturating_add_signed(by);
        if count == 0 {
            self.counts.remove(figure);
        } else {
            self.counts.insert(figure.to_string(), count);
        }
    }
}

/// The office's packed row (empty when it has none).
fn load_row(reader: &impl Read, office: &str) -> Result<StatRow, ApplyError> {
    decode_row(reader.get(&keys::stat_row(office))?.as_deref())
}

/// A packed row from its stored bytes (None: the office has none, an empty row).
fn decode_row(bytes: Option<&[u8]>) -> Result<StatRow, ApplyError> {
    match bytes {
        Some(bytes) => Ok(decode(bytes)?),
        None => Ok(StatRow::default()),
    }
}

fn store_row(txn: &mut Txn<'_>, office: &str, row: &StatRow) {
    let key = keys::stat_row(office);
    if row.counts.is_empty() {
        txn.delete(key);
    } else {
        txn.put(key, encode(row));
    }
}

/// An office's row is kept decoded in the transaction while its changes move it
/// ([`Txn::change_kept`]): stored as [`store_row`] stores it, an empty row deleted.
impl Kept for StatRow {
    fn encode_into(&self, out: &mut Vec<u8>) -> bool {
        if self.counts.is_empty() {
            return false;
        }
        encode_into(self, out);
        true
    }
}

/// Moves `office`'s packed row by `change`: decoded once per transaction, hashed as storing it
/// after each change would be, written once with the batch.
fn change_row(
    txn: &mut Txn<'_>,
    office: &str,
    change: impl FnOnce(&mut StatRow),
) -> Result<(), ApplyError> {
    txn.change_kept(&keys::stat_row(office), decode_row, change)
}

/// Moves one per-day trend counter (`stat/<office>/day:…`) by `by`.
fn add_day(txn: &mut Txn<'_>, office: &str, figure: &str, by: i64) -> Result<(), ApplyError> {
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

/// Moves figures by their net change, per office: each trend counter that moved, then the
/// office's packed row once ([`change_row`]).
fn move_figures(
    txn: &mut Txn<'_>,
    changes: BTreeMap<&OfficeCode, BTreeMap<&str, i64>>,
) -> Result<(), ApplyError> {
    for (office, figures) in changes {
        let mut row_moves: Vec<(&str, i64)> = Vec::new();
        for (figure, by) in figures {
            if by == 0 {
                continue;
            }
            if is_day_figure(figure) {
                add_day(txn, office.as_str(), figure, by)?;
                continue;
            }
            row_moves.push((figure, by));
        }
        if !row_moves.is_empty() {
            change_row(txn, office.as_str(), |row| {
                for (figure, by) in row_moves {
                    row.add(figure, by);
                }
            })?;
        }
    }
    Ok(())
}

/// One more case on `office`'s record of breaches.
pub(crate) fn count_breach(txn: &mut Txn<'_>, office: &OfficeCode) -> Result<(), ApplyError> {
    change_row(txn, office.as_str(), |row| row.add(BREACHED, 1))
}

/// Moves the counters from what this office counted for a case (`before`) to what it counts now.
pub(crate) fn count_change(
    txn: &mut Txn<'_>,
    before: Option<&SummaryV2>,
    after: Option<&SummaryV2>,
) -> Result<(), ApplyError> {
    // The query's secondary keys move with the same summaries (their own diff: a change
    // of time alone moves keys but no counter).
    if before == after {
        return Ok(());
    }
    super::query_keys::change(txn, before, after);
    let (before, after) = (sorted_figures(before), sorted_figures(after));
    let mut changes: BTreeMap<&OfficeCode, BTreeMap<&str, i64>> = BTreeMap::new();
    match (&before, &after) {
        // One office before and after: only the figures that differ move (a figure is named
        // once per summary), as the net of taking the one and adding the other would.
        (Some((office, gone)), Some((same, new))) if office == same => {
            let moved = changes.entry(office).or_default();
            super::sorted_diff(gone, new, |diff| match diff {
                super::Diff::Gone(figure) => *moved.entry(figure.as_str()).or_default() -= 1,
                super::Diff::New(figure) => *moved.entry(figure.as_str()).or_default() += 1,
            });
        }
        _ => {
            for (side, by) in [(&before, -1), (&after, 1)] {
                if let Some((office, figures)) = side {
                    let moved = changes.entry(*office).or_default();
                    for figure in figures {
                        *moved.entry(figure.as_str()).or_default() += by;
                    }
                }
            }
        }
    }
    move_figures(txn, changes)
}

/// The office a summary counts for, and its figures in order.
fn sorted_figures(summary: Option<&SummaryV2>) -> Option<(&OfficeCode, Vec<String>)> {
    summary.map(|summary| {
        let mut figures = figures(summary);
        figures.sort_unstable();
        (&summary.owner, figures)
    })
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

/// Every office's row with every per-day counter: figure to count, by office code.
pub(crate) fn rows(reader: &impl Read) -> Result<Rows, ApplyError> {
    let mut rows = rows_without_days(reader)?;
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

/// Figure to count, by office code.
pub type Rows = BTreeMap<String, BTreeMap<String, u64>>;

/// Every office's row as the Stats RPC reads it, for readers outside the state machine.
pub fn office_rows(machine: &super::StateMachineStore) -> Result<Rows, ApplyError> {
    rows(machine)
}

/// Every office's row without the trend's per-day counters: one packed value per office, read
/// in one scan (the day counters, three per day an office saw cases, are not touched).
pub fn office_rows_without_days(reader: &super::StateMachineStore) -> Result<Rows, ApplyError> {
    rows_without_days(reader)
}

/// Every office's row and its per-day counters of the days `from..=to` (`YYYY-MM-DD`) only.
pub fn office_rows_with_days(
    reader: &super::StateMachineStore,
    from: &str,
    to: &str,
) -> Result<Rows, ApplyError> {
    rows_with_days(reader, from, to)
}

pub(crate) fn rows_without_days(reader: &impl Read) -> Result<Rows, ApplyError> {
    let end = prefix_end(keys::STAT_ROW);
    let mut rows = Rows::new();
    for (key, value) in reader.scan(keys::STAT_ROW, &end, usize::MAX)? {
        let office = String::from_utf8_lossy(&key[keys::STAT_ROW.len()..]).into_owned();
        let row: StatRow = decode(&value)?;
        rows.insert(office, row.counts);
    }
    Ok(rows)
}

/// The rows, and each office's per-day counters of `from..=to` (`YYYY-MM-DD`): one range per
/// office with a row (an office counts days only for cases in its row).
pub(crate) fn rows_with_days(reader: &impl Read, from: &str, to: &str) -> Result<Rows, ApplyError> {
    let mut rows = rows_without_days(reader)?;
    for (office, row) in rows.iter_mut() {
        let office_prefix = [keys::STAT, office.as_bytes(), b"/"].concat();
        let start = [office_prefix.as_slice(), b"day:", from.as_bytes()].concat();
        // `;` sorts just after `:`: every measure of the last day.
        let end = [office_prefix.as_slice(), b"day:", to.as_bytes(), b";"].concat();
        for (key, value) in reader.scan(&start, &end, usize::MAX)? {
            let figure = String::from_utf8_lossy(&key[office_prefix.len()..]).into_owned();
            row.insert(figure, decode(&value)?);
        }
    }
    Ok(rows)
}

/// Brings the office's counters to [`STATS_FORMAT`] when the replica opens or installs a
/// snapshot, and writes the query's secondary keys ([`super::query_keys`]) when they are
/// missing. Format 2's per-figure counters (`stat/<office>/<figure>`) are packed into one row
/// per office as they are; a state without counters or of format 1 (an earlier build's, or a
/// snapshot from one) is counted from its cases, keeping the record of breaches, which cannot be
/// recounted. A function of the stored state alone, so every replica writes the same. Whether
/// anything was written.
// openraft's `StorageError` (large) is what a replica's open returns.
#[allow(clippy::result_large_err)]
pub fn rebuild_if_missing(db: &HostDb, office: &str) -> Result<bool, StorageError> {
    let mut txn = Txn::new(db, office);
    let format = txn
        .get(keys::STATS_FORMAT)
        .map_err(read_err)?
        .and_then(|bytes| bytes.first().copied());
    let keyed = txn
        .get(keys::QUERY_KEYS_FORMAT)
        .map_err(read_err)?
        .as_deref()
        == Some(&[super::query_keys::QUERY_KEYS_FORMAT][..]);
    let packable = format == Some(2);
    if format == Some(STATS_FORMAT) && keyed {
        return Ok(false);
    }
    // The cases are read only when something must be counted or keyed from them.
    let summaries = if keyed && (packable || format == Some(STATS_FORMAT)) {
        Vec::new()
    } else {
        effective_all(&txn).map_err(read_err)?
    };
    if format != Some(STATS_FORMAT) {
        if packable {
            pack_format_2(&mut txn).map_err(read_err)?;
        } else {
            count_all(&mut txn, &summaries).map_err(read_err)?;
        }
        txn.put(keys::STATS_FORMAT.to_vec(), vec![STATS_FORMAT]);
    }
    if !keyed {
        super::query_keys::rebuild_if_missing(&mut txn, &summaries).map_err(read_err)?;
    }
    db.write(txn.into_batch(), true)?;
    Ok(true)
}

/// Format 2 to 3: every figure but the trend's moves from its own counter
/// (`stat/<office>/<figure>`) into its office's packed row, `breached` with the rest; the
/// per-day counters stay where they are.
fn pack_format_2(txn: &mut Txn<'_>) -> Result<(), ApplyError> {
    let mut rows: BTreeMap<String, StatRow> = BTreeMap::new();
    for (key, value) in txn.scan(keys::STAT, &prefix_end(keys::STAT), usize::MAX)? {
        let rest = String::from_utf8_lossy(&key[keys::STAT.len()..]).into_owned();
        let Some((office, figure)) = rest.split_once('/') else {
            continue;
        };
        if is_day_figure(figure) {
            continue;
        }
        let count: u64 = decode(&value)?;
        let row = match rows.entry(office.to_string()) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => {
                entry.insert(load_row(txn, office)?)
            }
        };
        row.add(figure, i64::try_from(count).unwrap_or(i64::MAX));
        txn.delete(key);
    }
    for (office, row) in &rows {
        store_row(txn, office, row);
    }
    Ok(())
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

/// Replaces every counter with a count of the effective summaries; the record of breaches (a
/// format-2 counter or a packed row's) is kept.
fn count_all(txn: &mut Txn<'_>, summaries: &[SummaryV2]) -> Result<(), ApplyError> {
    let mut rows: BTreeMap<String, StatRow> = BTreeMap::new();
    let breached = format!("/{BREACHED}");
    for (key, value) in txn.scan(keys::STAT, &prefix_end(keys::STAT), usize::MAX)? {
        // A record of breaches is not a count of cases held: it cannot be recounted, and stays.
        if let Some(office) = key
            .strip_suffix(breached.as_bytes())
            .and_then(|rest| rest.strip_prefix(keys::STAT))
        {
            let office = String::from_utf8_lossy(office).into_owned();
            let count: u64 = decode(&value)?;
            rows.entry(office)
                .or_default()
                .add(BREACHED, i64::try_from(count).unwrap_or(i64::MAX));
        }
        txn.delete(key);
    }
    let end = prefix_end(keys::STAT_ROW);
    for (key, value) in txn.scan(keys::STAT_ROW, &end, usize::MAX)? {
        let office = String::from_utf8_lossy(&key[keys::STAT_ROW.len()..]).into_owned();
        let row: StatRow = decode(&value)?;
        if let Some(count) = row.counts.get(BREACHED) {
            rows.entry(office)
                .or_default()
                .add(BREACHED, i64::try_from(*count).unwrap_or(i64::MAX));
        }
        txn.delete(key);
    }
    let mut days: BTreeMap<(String, String), u64> = BTreeMap::new();
    for summary in summaries {
        let office = summary.owner.as_str();
        for figure in figures(summary) {
            if is_day_figure(&figure) {
                *days.entry((office.to_string(), figure)).or_default() += 1;
            } else {
                rows.entry(office.to_string()).or_default().add(&figure, 1);
            }
        }
    }
    for (office, row) in &rows {
        store_row(txn, office, row);
    }
    for ((office, figure), count) in days {
        txn.put(keys::stat(&office, &figure), encode(&count));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::keys::KeyValues;

    /// A transaction's view of every statistics row and the hash of what it changed.
    fn seen(txn: &Txn<'_>) -> (KeyValues, Option<Vec<u8>>) {
        let rows = txn
            .scan(keys::STAT_ROW, &prefix_end(keys::STAT_ROW), usize::MAX)
            .expect("RocksDB reads");
        let row = txn.get(&keys::stat_row("530602")).expect("RocksDB reads");
        (rows, row)
    }

    /// A row moved many times in one transaction, several log entries of it, reads at every
    /// step and hashes at every entry exactly as decoding it, moving it and storing it at each
    /// change did (the state hash replicas compare), and the batch writes the same values.
    #[test]
    fn a_kept_row_reads_and_hashes_as_a_row_stored_at_each_change() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let db = HostDb::open(&dir.path().join("db")).expect("RocksDB opens");
        // A row already stored, which the first change reads.
        let mut first = Txn::new(&db, "5306");
        let mut row = StatRow::default();
        row.add("total", 3);
        store_row(&mut first, "530602", &row);
        db.write(first.into_batch(), true).expect("written");

        let mut stored = Txn::new(&db, "5306");
        let mut kept = Txn::new(&db, "5306");
        let (mut hash_stored, mut hash_kept) = (String::new(), String::new());
        // Moves that grow, shrink, empty (a delete) and refill the rows of two offices.
        let moves: [(&str, &str, i64); 9] = [
            ("530602", "total", 1),
            ("530602", "status:registered", 1),
            ("530621", "total", 1),
            ("530602", "total", -4),
            ("530621", "total", -1),
            ("530602", "status:registered", -1),
            ("530621", BREACHED, 1),
            ("530602", "total", 2),
            ("530602", "kind:original", 1),
        ];
        for (index, (office, figure, by)) in moves.into_iter().enumerate() {
            let mut row = load_row(&stored, office).expect("decodes");
            row.add(figure, by);
            store_row(&mut stored, office, &row);
            change_row(&mut kept, office, |row| row.add(figure, by)).expect("decodes");
            assert_eq!(seen(&kept), seen(&stored), "after move {index}");
            if index % 3 == 2 {
                let at = index as u64;
                hash_stored = stored.chain_hash(&hash_stored, at);
                hash_kept = kept.chain_hash(&hash_kept, at);
                assert_eq!(hash_kept, hash_stored, "at entry {at}");
            }
        }
        assert!(kept.wrote_under(keys::STAT_ROW));
        assert_eq!(kept.into_batch().data(), stored.into_batch().data());
    }
}
