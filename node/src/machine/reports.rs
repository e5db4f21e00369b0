//! Scheduled supervision reports (日监测、周调度、月通报) kept by the office: made by the deadline
//! tick ([`tick`]) from the office's `stat/` counters when a day, week or month has ended in
//! China time, so every replica makes the same report from the same state at the same stamped
//! time. A report's name (kind and period) is its key: a new leader's tick after a change of
//! leaders finds it made and makes nothing. What a report holds, and its JSON, CSV and HTML, are
//! [`liandong_domain::reports`]'s.
//!
//! Keys (relative to the office's prefix):
//! - `report/1/<kind>/<period>`: a report ([`Report`], format version 1 in the prefix; a later
//!   format takes `report/2/`);
//! - `report-next`: when the next report can fall due (the next China midnight after the tick
//!   that last looked; absent: due now).
//!
//! Bounded: at most [`ReportKind::kept`] reports of each kind (the oldest go first), each at most
//! [`liandong_domain::reports::REPORT_OFFICES_MAX`] office rows and one period's days.

use std::collections::BTreeMap;

use liandong_domain::figures::day_name;
use liandong_domain::reports::{next_report_at, reports_due, Report, ReportKind};
use liandong_domain::Millis;

use super::apply::Applying;
use super::{ApplyError, Read};
use crate::store::codec::{decode, encode};
use crate::store::keys::prefix_end;

/// `report/1/<kind>/<period>`: the reports of format version 1.
pub const REPORT: &[u8] = b"report/1/";
/// When the next report can fall due (ms).
pub const REPORT_NEXT: &[u8] = b"report-next";

/// The prefix of one kind's reports.
pub fn kind_prefix(kind: ReportKind) -> Vec<u8> {
    [REPORT, kind.as_str().as_bytes(), b"/"].concat()
}

/// The key of one report.
pub fn report_key(kind: ReportKind, period: &str) -> Vec<u8> {
    [kind_prefix(kind).as_slice(), period.as_bytes()].concat()
}

/// When the tick has reports to make: absent, at once (a state made before reports existed, or a
/// new office).
pub(crate) fn next_at(reader: &impl Read) -> Result<Millis, ApplyError> {
    Ok(match reader.get(REPORT_NEXT)? {
        Some(bytes) => decode(&bytes)?,
        None => Millis::MIN,
    })
}

/// The latest report's period of each kind made.
fn latest(reader: &impl Read) -> Result<BTreeMap<ReportKind, String>, ApplyError> {
    let mut latest = BTreeMap::new();
    for kind in ReportKind::ALL {
        if let Some(period) = periods(reader, kind)?.pop() {
            latest.insert(kind, period);
        }
    }
    Ok(latest)
}

/// The periods of one kind's reports kept, the oldest first (at most the kind's count, plus the
/// one just made before the oldest goes).
pub(crate) fn periods(reader: &impl Read, kind: ReportKind) -> Result<Vec<String>, ApplyError> {
    let prefix = kind_prefix(kind);
    Ok(reader
        .scan(&prefix, &prefix_end(&prefix), usize::MAX)?
        .into_iter()
        .map(|(key, _)| String::from_utf8_lossy(&key[prefix.len()..]).into_owned())
        .collect())
}

/// One report, if kept.
pub(crate) fn get(
    reader: &impl Read,
    kind: ReportKind,
    period: &str,
) -> Result<Option<Report>, ApplyError> {
    match reader.get(&report_key(kind, period))? {
        Some(bytes) => Ok(Some(decode(&bytes)?)),
        None => Ok(None),
    }
}

/// The rows a report is made of: every office's figures, and the per-day counters of
/// `from..=to` only (an office's day counters of all time are read by no tick).
fn rows(
    reader: &impl Read,
    from: &str,
    to: &str,
) -> Result<BTreeMap<String, BTreeMap<String, u64>>, ApplyError> {
    super::stats::rows_with_days(reader, from, to)
}

/// The reports due at the tick's time, made and kept; the oldest past each kind's count
/// dropped. How many were made.
pub(super) fn tick(apply: &mut Applying<'_, '_>) -> Result<u32, ApplyError> {
    let now = apply.now;
    if next_at(apply.txn)? > now {
        return Ok(0);
    }
    let mut made = 0u32;
    for (kind, period) in reports_due(now, &latest(apply.txn)?) {
        let (_, from, to) = kind.last_period(now);
        let rows = rows(apply.txn, &day_name(from), &day_name(to))?;
        let office = apply.context.office.to_string();
        let report = match Report::of(&office, kind, now, &rows) {
            Ok(report) => report,
            Err(error) => {
                // Not reachable with the periods a kind has (a month is within the trend's
                // bounds); a report that cannot be made is skipped, not retried every tick.
                tracing::warn!(%office, kind = kind.as_str(), %period, %error, "report not made");
                continue;
            }
        };
        apply
            .txn
            .put(report_key(kind, &report.period), encode(&report));
        made += 1;
        let kept = periods(apply.txn, kind)?;
        for old in kept.iter().take(kept.len().saturating_sub(kind.kept())) {
            apply.txn.delete(report_key(kind, old));
        }
    }
    apply
        .txn
        .put(REPORT_NEXT.to_vec(), encode(&next_report_at(now)));
    Ok(made)
}

#[cfg(test)]
mod tests {
    use liandong_domain::DAY_MS;

    use super::*;
    use crate::machine::tests::{case_of, registration, Office, START_MS};
    use crate::raft::types::Operation;
    use crate::store::Txn;

    fn reader(office: &Office) -> Txn<'_> {
        Txn::new(&office.db, office.context.office.as_str())
    }

    fn file(office: &mut Office) {
        case_of(office.apply(Operation::File {
            registration: registration(),
            request_id: None,
            caller: String::new(),
        }));
    }

    /// The tick makes each report once, from the counters (the day's registrations in its
    /// trend), keeps at most the kind's count, and a second tick the same day (a new leader's)
    /// changes nothing.
    #[test]
    fn the_tick_makes_each_report_once_and_keeps_the_latest() {
        let mut county = Office::new("530602", Some("5306"));
        file(&mut county);
        file(&mut county);
        let filed_day = day_name(liandong_domain::Date::from_millis(START_MS));
        county.advance_to(next_report_at(START_MS));
        county.apply(Operation::Tick);
        let daily = periods(&reader(&county), ReportKind::Daily).unwrap();
        assert_eq!(daily, vec![filed_day.clone()]);
        let report = get(&reader(&county), ReportKind::Daily, &filed_day)
            .unwrap()
            .unwrap();
        assert_eq!((report.office.as_str(), report.total), ("530602", 2));
        assert_eq!(report.trend[0].1["registered"], 2);
        for kind in ReportKind::ALL {
            assert_eq!(
                periods(&reader(&county), kind).unwrap().len(),
                1,
                "{kind:?}"
            );
        }
        let next = next_at(&reader(&county)).unwrap();
        let before: Vec<_> = reader(&county)
            .scan(REPORT, &prefix_end(REPORT), usize::MAX)
            .unwrap();
        county.apply(Operation::Tick);
        let after: Vec<_> = reader(&county)
            .scan(REPORT, &prefix_end(REPORT), usize::MAX)
            .unwrap();
        assert_eq!(before, after, "a second tick the same day made nothing");
        assert!(next > START_MS);
        // 70 days on, one tick a day: the dailies kept are the last 62.
        for day in 1..=70 {
            county.advance_to(next + day * DAY_MS);
            county.apply(Operation::Tick);
        }
        let daily = periods(&reader(&county), ReportKind::Daily).unwrap();
        assert_eq!(daily.len(), ReportKind::Daily.kept());
        let last = liandong_domain::Date::from_millis(next + 70 * DAY_MS).days() - 1;
        assert_eq!(
            daily.last().unwrap(),
            &day_name(liandong_domain::Date::from_days(last))
        );
        assert!(periods(&reader(&county), ReportKind::Weekly).unwrap().len() >= 10);
    }
}
