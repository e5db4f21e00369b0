//! Secondary keys of the supervisor's index, so that a page of `query` reads about a page of
//! keys instead of the whole index.
//!
//! What a query lists is, per case id, the office's *effective* summary ([`stats::effective`]):
//! its own copy when it holds the case, else the summary its children sent up (owner copies
//! only). Each effective summary has, besides its `index/` or `case/` entry, empty-valued keys
//!
//! - `query-key/s/<scope>\0<sort><time, 8 bytes><case id>`: one per scope the case is in —
//!   `all`, `o:<holding office>`, `s:<status word>`, `g:open` or `g:closed`, `g:overdue`,
//!   `g:warned` — and per order it can be read in — `i` (case id; time 0), `r` (registered),
//!   `d` (running limit; none sorts last), `c` (changed). The time is an `i64` made sortable
//!   as bytes (sign bit flipped, big-endian), so keys sort as the query's `(time, case id)`.
//! - `query-key/r/<repeat key><registered><case id>` for an original: the first key of a repeat
//!   key's group is the primary case that the others are repeats of.
//!
//! The keys move in the same transaction as the counters of [`stats::count_change`] (which
//! calls [`change`]), from the same before and after summaries. A state without them (written
//! before they existed, or a snapshot of such a build) gets them once when its replica opens
//! ([`rebuild_if_missing`], called with the counters' own rebuild), marked by
//! [`keys::QUERY_KEYS_FORMAT`].

use std::collections::BTreeSet;

use liandong_domain::message::SummaryV2;
use liandong_domain::CaseId;

use super::{keys, stats, ApplyError, Read};
use crate::store::keys::prefix_end;
use crate::store::Txn;

/// The format of the `query-key/` keys, stored under [`keys::QUERY_KEYS_FORMAT`] once complete.
pub const QUERY_KEYS_FORMAT: u8 = 1;

/// The orders a scope's keys are kept in: case id, registered, due, changed.
pub const SORTS: [u8; 4] = [b'i', b'r', b'd', b'c'];

/// An `i64` as 8 bytes that sort as the numbers do.
pub fn time_bytes(at: i64) -> [u8; 8] {
    ((at as u64) ^ (1 << 63)).to_be_bytes()
}

/// The time a sort reads off a summary (0 for case id order; no running limit sorts last).
pub fn sort_time(sort: u8, summary: &SummaryV2) -> i64 {
    match sort {
        b'r' => summary.registered_at,
        b'd' => summary.facts.due_at.unwrap_or(i64::MAX),
        b'c' => summary.changed_at,
        _ => 0,
    }
}

/// The scopes a summary is listed in.
pub fn scopes(summary: &SummaryV2) -> Vec<String> {
    let mut scopes = vec![
        "all".to_string(),
        format!("o:{}", summary.owner),
        format!("s:{}", summary.status),
    ];
    if stats::OPEN_STATUSES.contains(&summary.status.as_str()) {
        scopes.push("g:open".to_string());
    } else if crate::federation::query::CLOSED_STATUSES.contains(&summary.status.as_str()) {
        scopes.push("g:closed".to_string());
    }
    if summary.overdue {
        scopes.push("g:overdue".to_string());
    }
    if summary.is_warned() {
        scopes.push("g:warned".to_string());
    }
    scopes
}

/// The prefix of a scope's keys in one order.
pub fn scope_prefix(scope: &str, sort: u8) -> Vec<u8> {
    [keys::QUERY_KEY_SCOPE, scope.as_bytes(), b"\0", &[sort]].concat()
}

/// The key of `case_id` at `at` in a scope and order.
pub fn scope_key(scope: &str, sort: u8, at: i64, case_id: &str) -> Vec<u8> {
    [
        keys::QUERY_KEY_SCOPE,
        scope.as_bytes(),
        b"\0",
        &[sort],
        &time_bytes(at),
        case_id.as_bytes(),
    ]
    .concat()
}

/// The case id a scope key of `prefix` names.
pub fn key_case(prefix_len: usize, key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key.get(prefix_len + 8..)?).ok()
}

/// The prefix of one repeat key's group: each part with its length, so no part can run into
/// the next.
pub fn repeat_prefix(summary: &SummaryV2) -> Vec<u8> {
    let (petitioner, category, location) = summary.repeat_key();
    let mut prefix = keys::QUERY_KEY_REPEAT.to_vec();
    for part in [petitioner, category, location.unwrap_or("")] {
        prefix.extend_from_slice(&(part.len() as u32).to_be_bytes());
        prefix.extend_from_slice(part.as_bytes());
    }
    prefix.push(u8::from(location.is_some()));
    prefix
}

/// Every key an effective summary has.
pub fn keys_of(summary: &SummaryV2) -> BTreeSet<Vec<u8>> {
    sorted_keys(summary).into_iter().collect()
}

/// [`keys_of`] as a sorted list without repeats.
fn sorted_keys(summary: &SummaryV2) -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    if !summary.is_owner_copy() {
        return all;
    }
    let id = summary.case_id.to_string();
    for scope in scopes(summary) {
        for sort in SORTS {
            all.push(scope_key(&scope, sort, sort_time(sort, summary), &id));
        }
    }
    if summary.kind == "original" {
        all.push(
            [
                repeat_prefix(summary).as_slice(),
                &time_bytes(summary.registered_at),
                id.as_bytes(),
            ]
            .concat(),
        );
    }
    all.sort_unstable();
    all.dedup();
    all
}

/// Moves a case's keys from its effective summary `before` to `after` (only those that differ):
/// the keys gone are deleted, then the new ones put, each in key order.
pub(crate) fn change(txn: &mut Txn<'_>, before: Option<&SummaryV2>, after: Option<&SummaryV2>) {
    let before = before.map(sorted_keys).unwrap_or_default();
    let after = after.map(sorted_keys).unwrap_or_default();
    let mut new_keys = Vec::new();
    super::sorted_diff(before, after, |diff| match diff {
        super::Diff::Gone(gone) => txn.delete(gone),
        super::Diff::New(new) => new_keys.push(new),
    });
    for new in new_keys {
        txn.put(new, Vec::new());
    }
}

/// The effective summary of `case_id` (see the module documentation), read now.
pub(crate) fn effective_summary(
    reader: &impl Read,
    case_id: &CaseId,
) -> Result<Option<SummaryV2>, ApplyError> {
    Ok(stats::effective(
        stats::own_summary(reader, case_id)?,
        stats::indexed_summary(reader, case_id)?,
    ))
}

/// The case that `summary` (an original) repeats: the earliest original of its repeat key's
/// group (by registered time, then case id), unless that is the case itself.
pub(crate) fn repeat_of(
    reader: &impl Read,
    summary: &SummaryV2,
) -> Result<Option<String>, ApplyError> {
    if summary.kind != "original" || !summary.is_owner_copy() {
        return Ok(None);
    }
    let prefix = repeat_prefix(summary);
    let first = reader.scan(&prefix, &prefix_end(&prefix), 1)?;
    let primary = first
        .first()
        .and_then(|(key, _)| std::str::from_utf8(key.get(prefix.len() + 8..)?).ok())
        .map(str::to_string);
    Ok(primary.filter(|primary| *primary != summary.case_id.to_string()))
}

/// Writes every case's keys once, when they are missing (see the module documentation): a
/// function of the stored state alone, so every replica writes the same. Whether it did.
pub(crate) fn rebuild_if_missing(
    txn: &mut Txn<'_>,
    summaries: &[SummaryV2],
) -> Result<bool, ApplyError> {
    if txn.get(keys::QUERY_KEYS_FORMAT)?.as_deref() == Some(&[QUERY_KEYS_FORMAT][..]) {
        return Ok(false);
    }
    for (key, _) in txn.scan(keys::QUERY_KEY, &prefix_end(keys::QUERY_KEY), usize::MAX)? {
        txn.delete(key);
    }
    for summary in summaries {
        for key in keys_of(summary) {
            txn.put(key, Vec::new());
        }
    }
    txn.put(keys::QUERY_KEYS_FORMAT.to_vec(), vec![QUERY_KEYS_FORMAT]);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without the sign flip a negative time would sort after every positive one.
    #[test]
    fn times_sort_as_bytes() {
        let times = [i64::MIN, -5, 0, 1, 1_700_000_000_000, i64::MAX];
        for pair in times.windows(2) {
            assert!(time_bytes(pair[0]) < time_bytes(pair[1]), "{pair:?}");
        }
    }

    /// The layout is stored format: a change here needs a new [`QUERY_KEYS_FORMAT`].
    #[test]
    fn scope_keys_keep_their_layout() {
        assert_eq!(
            scope_key("g:open", b'r', 0, "5306-2026-000001"),
            [
                b"query-key/s/g:open\0r".as_slice(),
                &[0x80, 0, 0, 0, 0, 0, 0, 0],
                b"5306-2026-000001"
            ]
            .concat()
        );
    }
}
