//! Scheduled supervision reports (日监测、周调度、月通报), pure: which period a report covers, what
//! it holds, made from an office's counters (`stat/` rows, see the node's `machine::stats`), and
//! how it reads as JSON, CSV and a self-contained HTML page with SVG charts.
//!
//! A report covers one whole period in China time that has ended: a day (daily), a week Monday
//! to Sunday (weekly), a calendar month (monthly), named as the trend names its buckets
//! ([`Period::bucket`]). Its name (kind and period) is its identity, so making the report of a
//! period twice — a new leader after a change of leaders — makes the same report.
//!
//! What one holds: the subtree's totals now (cases, open backlog 积案, overdue, warned), the
//! overdue and backlog by holding office (the worst first), the scorecard ranking (考核,
//! [`score`]), and the trend of the period by day (registered, replied, became overdue).
//! Bounded: at most [`REPORT_OFFICES_MAX`] office rows and
//! [`crate::figures::TREND_BUCKETS_MAX`] days.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::figures::{
    day_name, parse_day_figure, score, trend, Bucket, Period, Rates, TREND_MEASURES,
};
use crate::Date;
use crate::Millis;

/// The kinds of scheduled report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ReportKind {
    /// 日监测: the day before.
    Daily,
    /// 周调度: the week before, Monday to Sunday.
    Weekly,
    /// 月通报: the month before.
    Monthly,
}

/// Office rows a report keeps at most (the worst first; a province has 1,607 offices, a report
/// lists where attention goes).
pub const REPORT_OFFICES_MAX: usize = 200;
/// Reports of each kind an office keeps: two months of dailies, half a year of weeklies, two
/// years of monthlies.
pub const REPORTS_KEPT: [(ReportKind, usize); 3] = [
    (ReportKind::Daily, 62),
    (ReportKind::Weekly, 26),
    (ReportKind::Monthly, 24),
];

impl ReportKind {
    pub const ALL: [ReportKind; 3] = [ReportKind::Daily, ReportKind::Weekly, ReportKind::Monthly];

    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Daily => "daily",
            ReportKind::Weekly => "weekly",
            ReportKind::Monthly => "monthly",
        }
    }

    pub fn parse(word: &str) -> Result<ReportKind, String> {
        ReportKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == word)
            .ok_or_else(|| {
                format!(
                    "unknown report kind {:?}: one of daily, weekly, monthly",
                    crate::error::echo(word)
                )
            })
    }

    fn period(self) -> Period {
        match self {
            ReportKind::Daily => Period::Day,
            ReportKind::Weekly => Period::Week,
            ReportKind::Monthly => Period::Month,
        }
    }

    /// How many reports of this kind an office keeps.
    pub fn kept(self) -> usize {
        REPORTS_KEPT
            .iter()
            .find(|(kind, _)| *kind == self)
            .map_or(0, |(_, kept)| *kept)
    }

    /// The last whole period of this kind that has ended by `now` (China time): its name, first
    /// and last day.
    pub fn last_period(self, now: Millis) -> (String, Date, Date) {
        let today = Date::from_millis(now);
        let yesterday = Date::from_days(today.days() - 1);
        let period = self.period();
        // The period `yesterday` falls in has ended unless today is in it too.
        let mut last = yesterday;
        if period.bucket(today) == period.bucket(yesterday) {
            // Go back to the day before the current period began.
            let mut day = today.days();
            while period.bucket(Date::from_days(day)) == period.bucket(today) {
                day -= 1;
            }
            last = Date::from_days(day);
        }
        let name = period.bucket(last);
        let mut first = last.days();
        while period.bucket(Date::from_days(first - 1)) == name {
            first -= 1;
        }
        (name, Date::from_days(first), last)
    }
}

/// The reports due at `now`: per kind, the last whole period ended by `now` when it is newer
/// than the latest report of that kind made (`latest`: kind to period name). An office that has
/// made none (its first start, mid-month or not) makes the last period of each kind only, never
/// the periods before it; a period is never due twice (period names sort as their periods do).
pub fn reports_due(
    now: Millis,
    latest: &BTreeMap<ReportKind, String>,
) -> Vec<(ReportKind, String)> {
    ReportKind::ALL
        .into_iter()
        .filter_map(|kind| {
            let (period, _, _) = kind.last_period(now);
            match latest.get(&kind) {
                Some(made) if *made >= period => None,
                _ => Some((kind, period)),
            }
        })
        .collect()
}

/// When the next report can fall due after `now`: the next midnight in China time (every
/// period, day, week or month, ends at one).
pub fn next_report_at(now: Millis) -> Millis {
    Date::from_days(Date::from_millis(now).days() + 1).start_millis()
}

/// One office's row in a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportOffice {
    pub office: String,
    pub total: u64,
    pub overdue: u64,
    pub backlog: u64,
    /// The scorecard's score (0-100), when the office has any term.
    pub score: Option<f64>,
}

/// A scheduled report (stored format version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub v: u16,
    pub office: String,
    pub kind: ReportKind,
    /// The period's name: `YYYY-MM-DD` (a day, or a week by its Monday) or `YYYY-MM`.
    pub period: String,
    pub from: String,
    pub to: String,
    pub made_at: Millis,
    pub total: u64,
    pub backlog: u64,
    pub overdue: u64,
    pub warned: u64,
    /// Offices by overdue then backlog, the worst first (at most [`REPORT_OFFICES_MAX`]).
    pub overdue_by_office: Vec<ReportOffice>,
    /// Offices by score, the best first; offices without a score last.
    pub ranking: Vec<ReportOffice>,
    /// The period's days: registered, replied and became overdue on each.
    pub trend: Vec<Bucket>,
    /// Office rows left out past [`REPORT_OFFICES_MAX`].
    pub offices_left_out: u64,
}

impl Report {
    /// The report of `kind` for the last period ended by `now`, from the office's counters
    /// (`rows`: office, figure, count — the per-day figures included).
    pub fn of(
        office: &str,
        kind: ReportKind,
        now: Millis,
        rows: &BTreeMap<String, BTreeMap<String, u64>>,
    ) -> Result<Report, String> {
        let (period, from, to) = kind.last_period(now);
        let count =
            |row: &BTreeMap<String, u64>, figure: &str| row.get(figure).copied().unwrap_or(0);
        let mut offices: Vec<ReportOffice> = rows
            .iter()
            .filter(|(_, row)| count(row, "total") > 0)
            .map(|(code, row)| ReportOffice {
                office: code.clone(),
                total: count(row, "total"),
                overdue: count(row, "overdue"),
                backlog: count(row, "backlog"),
                score: score(&Rates::of(row)).score,
            })
            .collect();
        let sum = |figure: &str| rows.values().map(|row| count(row, figure)).sum::<u64>();
        let mut by_day: Vec<(Date, String, u64)> = Vec::new();
        for row in rows.values() {
            for (figure, n) in row {
                if let Some((day, measure)) = parse_day_figure(figure) {
                    if from <= day && day <= to {
                        by_day.push((day, measure.to_string(), *n));
                    }
                }
            }
        }
        let trend = trend(&by_day, Period::Day, from, to)?;
        let left_out = offices.len().saturating_sub(REPORT_OFFICES_MAX) as u64;
        let mut overdue_by_office = offices.clone();
        overdue_by_office.sort_by(|a, b| {
            (b.overdue, b.backlog, &a.office).cmp(&(a.overdue, a.backlog, &b.office))
        });
        overdue_by_office.truncate(REPORT_OFFICES_MAX);
        offices.sort_by(|a, b| {
            let key = |o: &ReportOffice| o.score.map_or(f64::NEG_INFINITY, |s| s);
            key(b)
                .total_cmp(&key(a))
                .then_with(|| a.office.cmp(&b.office))
        });
        offices.truncate(REPORT_OFFICES_MAX);
        Ok(Report {
            v: 1,
            office: office.to_string(),
            kind,
            period,
            from: day_name(from),
            to: day_name(to),
            made_at: now,
            total: sum("total"),
            backlog: sum("backlog"),
            overdue: sum("overdue"),
            warned: sum("warned"),
            overdue_by_office,
            ranking: offices,
            trend,
            offices_left_out: left_out,
        })
    }

    /// The report as CSV: one section per table, each with its header line.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        out.push_str("section,office,total,overdue,backlog,score\n");
        out.push_str(&format!(
            "totals,{},{},{},{},\n",
            self.office, self.total, self.overdue, self.backlog
        ));
        for (section, rows) in [
            ("overdue_by_office", &self.overdue_by_office),
            ("ranking", &self.ranking),
        ] {
            for row in rows {
                out.push_str(&format!(
                    "{section},{},{},{},{},{}\n",
                    row.office,
                    row.total,
                    row.overdue,
                    row.backlog,
                    row.score.map(|s| format!("{s:.1}")).unwrap_or_default()
                ));
            }
        }
        out.push_str("\nday,registered,replied,overdue\n");
        for (day, counts) in &self.trend {
            let n = |m: &str| counts.get(m).copied().unwrap_or(0);
            out.push_str(&format!(
                "{day},{},{},{}\n",
                n("registered"),
                n("replied"),
                n("overdue")
            ));
        }
        out
    }

    /// The report as one self-contained HTML page: its tables and two SVG charts (overdue by
    /// office, the period's trend). Every text from the data is escaped.
    pub fn to_html(&self) -> String {
        let title = format!(
            "{} {} report {} ({} to {})",
            escape(&self.office),
            self.kind.as_str(),
            escape(&self.period),
            escape(&self.from),
            escape(&self.to)
        );
        let mut html = format!(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title}</title>\
             <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
             td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}</style></head><body>\
             <h1>{title}</h1><p>Cases {} · backlog (积案) {} · overdue {} · warned {}</p>",
            self.total, self.backlog, self.overdue, self.warned
        );
        let overdue: Vec<(String, u64)> = self
            .overdue_by_office
            .iter()
            .take(20)
            .map(|o| (o.office.clone(), o.overdue))
            .collect();
        html.push_str("<h2>Overdue by office</h2>");
        html.push_str(&bar_chart(&overdue));
        let registered: Vec<(String, u64)> = self
            .trend
            .iter()
            .map(|(day, counts)| (day.clone(), counts.get("registered").copied().unwrap_or(0)))
            .collect();
        html.push_str("<h2>Registered per day</h2>");
        html.push_str(&bar_chart(&registered));
        html.push_str("<h2>Ranking (考核)</h2><table><tr><th>rank</th><th>office</th><th>score</th><th>cases</th><th>overdue</th><th>backlog</th></tr>");
        for (rank, row) in self.ranking.iter().enumerate() {
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                rank + 1,
                escape(&row.office),
                row.score
                    .map(|s| format!("{s:.1}"))
                    .unwrap_or_else(|| "-".into()),
                row.total,
                row.overdue,
                row.backlog
            ));
        }
        html.push_str("</table><h2>Trend</h2><table><tr><th>day</th>");
        for measure in TREND_MEASURES {
            html.push_str(&format!("<th>{measure}</th>"));
        }
        html.push_str("</tr>");
        for (day, counts) in &self.trend {
            html.push_str(&format!("<tr><td>{}</td>", escape(day)));
            for measure in TREND_MEASURES {
                html.push_str(&format!(
                    "<td>{}</td>",
                    counts.get(measure).copied().unwrap_or(0)
                ));
            }
            html.push_str("</tr>");
        }
        html.push_str("</table></body></html>\n");
        html
    }
}

/// A horizontal bar chart as inline SVG: one bar per (label, value).
fn bar_chart(bars: &[(String, u64)]) -> String {
    const ROW: usize = 18;
    const LABEL: usize = 110;
    const WIDTH: usize = 420;
    let max = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1);
    let height = ROW * bars.len().max(1) + 4;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" role=\"img\">",
        LABEL + WIDTH + 60
    );
    for (i, (label, value)) in bars.iter().enumerate() {
        let y = i * ROW + 2;
        let width = (*value as f64 / max as f64 * WIDTH as f64).round() as usize;
        svg.push_str(&format!(
            "<text x=\"0\" y=\"{}\" font-size=\"12\">{}</text>\
             <rect x=\"{LABEL}\" y=\"{y}\" width=\"{width}\" height=\"{}\" fill=\"#c0392b\"/>\
             <text x=\"{}\" y=\"{}\" font-size=\"12\">{value}</text>",
            y + 12,
            escape(label),
            ROW - 4,
            LABEL + width + 4,
            y + 12
        ));
    }
    svg.push_str("</svg>");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-03-04 (a Wednesday) 10:00 Beijing time.
    const WEDNESDAY: Millis = 1_772_589_600_000;

    /// Without China time a report made just after midnight in Beijing (16:00 UTC the day
    /// before) would cover the wrong day; without whole periods a weekly report made midweek
    /// would cover half a week.
    #[test]
    fn a_report_covers_the_last_whole_period_in_china_time() {
        assert_eq!(day_name(Date::from_millis(WEDNESDAY)), "2026-03-04");
        let (name, from, to) = ReportKind::Daily.last_period(WEDNESDAY);
        assert_eq!(
            (name.as_str(), day_name(from), day_name(to)),
            ("2026-03-03", "2026-03-03".into(), "2026-03-03".into())
        );
        let (name, from, to) = ReportKind::Weekly.last_period(WEDNESDAY);
        assert_eq!(
            (name.as_str(), day_name(from), day_name(to)),
            ("2026-02-23", "2026-02-23".into(), "2026-03-01".into())
        );
        let (name, from, to) = ReportKind::Monthly.last_period(WEDNESDAY);
        assert_eq!(
            (name.as_str(), day_name(from), day_name(to)),
            ("2026-02", "2026-02-01".into(), "2026-02-28".into())
        );
        // 00:30 Beijing on 2026-03-05 is 16:30 UTC on the 4th: the 4th has ended in China.
        let just_after_midnight = WEDNESDAY + 14 * 3_600_000 + 30 * 60_000;
        assert_eq!(
            ReportKind::Daily.last_period(just_after_midnight).0,
            "2026-03-04"
        );
    }

    fn rows() -> BTreeMap<String, BTreeMap<String, u64>> {
        let row = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
            pairs.iter().map(|(f, n)| (f.to_string(), *n)).collect()
        };
        BTreeMap::from([
            (
                "530602".to_string(),
                row(&[
                    ("total", 10),
                    ("overdue", 4),
                    ("backlog", 3),
                    ("accepted:in_time", 5),
                    ("accepted:late", 5),
                    ("day:2026-03-03:registered", 6),
                    ("day:2026-03-02:registered", 9),
                ]),
            ),
            (
                "530621<x>".to_string(),
                row(&[
                    ("total", 5),
                    ("overdue", 0),
                    ("accepted:in_time", 5),
                    ("day:2026-03-03:registered", 2),
                    ("day:2026-03-03:overdue", 1),
                ]),
            ),
        ])
    }

    /// The figures are the counters' sums, the worst office first, the best ranked first, the
    /// trend of the period's days only.
    #[test]
    fn a_daily_report_adds_up_its_counters() {
        let report = Report::of("5306", ReportKind::Daily, WEDNESDAY, &rows()).unwrap();
        assert_eq!((report.total, report.overdue, report.backlog), (15, 4, 3));
        assert_eq!(report.overdue_by_office[0].office, "530602");
        assert_eq!(report.ranking[0].office, "530621<x>");
        assert_eq!(report.trend.len(), 1);
        assert_eq!(report.trend[0].1["registered"], 8);
        assert_eq!(report.trend[0].1["overdue"], 1);
        let weekly = Report::of("5306", ReportKind::Weekly, WEDNESDAY, &rows()).unwrap();
        assert_eq!(weekly.trend.len(), 7);
    }

    /// The page is self-contained with an SVG chart and escapes data; the CSV has one header
    /// and equal columns per section.
    #[test]
    fn html_has_svg_charts_and_csv_parses() {
        let report = Report::of("5306", ReportKind::Weekly, WEDNESDAY, &rows()).unwrap();
        let html = report.to_html();
        assert!(html.contains("<svg"));
        assert!(html.contains("530621&lt;x&gt;") && !html.contains("530621<x>"));
        let csv = report.to_csv();
        let (tables, trend) = csv.split_once("\n\n").unwrap();
        assert!(
            tables.lines().all(|line| line.split(',').count() == 6),
            "{tables}"
        );
        assert!(
            trend.lines().all(|line| line.split(',').count() == 4),
            "{trend}"
        );
        assert_eq!(trend.lines().count(), 1 + 7);
    }

    fn latest(made: &[(ReportKind, String)]) -> BTreeMap<ReportKind, String> {
        made.iter().cloned().collect()
    }

    /// Beijing midnight starting `day` (YYYY-MM-DD), in ms.
    fn midnight(day: &str) -> Millis {
        crate::figures::parse_day(day).unwrap().start_millis()
    }

    /// The first start, mid-month: the last period of each kind, not the months before.
    #[test]
    fn a_first_start_mid_month_makes_one_report_of_each_kind() {
        let due = reports_due(WEDNESDAY, &BTreeMap::new());
        assert_eq!(
            due,
            vec![
                (ReportKind::Daily, "2026-03-03".to_string()),
                (ReportKind::Weekly, "2026-02-23".to_string()),
                (ReportKind::Monthly, "2026-02".to_string()),
            ]
        );
    }

    /// Once made, nothing is due again until the next day ends in China time: not later the same
    /// day, not at 23:59:59.999, and once at midnight.
    #[test]
    fn a_day_boundary_makes_the_daily_report_once() {
        let made = latest(&reports_due(WEDNESDAY, &BTreeMap::new()));
        assert!(reports_due(WEDNESDAY, &made).is_empty());
        let thursday = midnight("2026-03-05");
        assert_eq!(next_report_at(WEDNESDAY), thursday);
        assert!(reports_due(thursday - 1, &made).is_empty());
        let due = reports_due(thursday, &made);
        assert_eq!(due, vec![(ReportKind::Daily, "2026-03-04".to_string())]);
        let made = latest(&[
            due[0].clone(),
            (ReportKind::Weekly, made[&ReportKind::Weekly].clone()),
            (ReportKind::Monthly, made[&ReportKind::Monthly].clone()),
        ]);
        assert!(reports_due(thursday + 3_600_000, &made).is_empty());
        // A clock that steps back (the state machine's never does) makes nothing either.
        assert!(reports_due(WEDNESDAY, &made).is_empty());
    }

    /// Monday 00:00 China time (Sunday 16:00 UTC) ends the week: the daily and the weekly.
    #[test]
    fn a_week_boundary_makes_the_weekly_report() {
        let sunday = midnight("2026-03-08") + 12 * 3_600_000;
        let made = latest(&reports_due(sunday, &BTreeMap::new()));
        assert_eq!(made[&ReportKind::Weekly], "2026-02-23");
        let monday = midnight("2026-03-09");
        assert_eq!(next_report_at(sunday), monday);
        assert_eq!(
            reports_due(monday, &made),
            vec![
                (ReportKind::Daily, "2026-03-08".to_string()),
                (ReportKind::Weekly, "2026-03-02".to_string()),
            ]
        );
    }

    /// The 1st at 00:00 China time ends the month: the daily and the monthly (and the weekly
    /// when the 1st is a Monday, as 2026-06-01 is).
    #[test]
    fn a_month_boundary_makes_the_monthly_report() {
        let last_day = midnight("2026-03-31") + 3_600_000;
        let made = latest(&reports_due(last_day, &BTreeMap::new()));
        let april = midnight("2026-04-01");
        assert_eq!(
            reports_due(april, &made),
            vec![
                (ReportKind::Daily, "2026-03-31".to_string()),
                (ReportKind::Monthly, "2026-03".to_string()),
            ]
        );
        let made = latest(&reports_due(midnight("2026-05-31"), &BTreeMap::new()));
        let kinds: Vec<ReportKind> = reports_due(midnight("2026-06-01"), &made)
            .into_iter()
            .map(|(kind, _)| kind)
            .collect();
        assert_eq!(kinds, ReportKind::ALL.to_vec());
    }

    #[test]
    fn unknown_kinds_are_refused() {
        assert_eq!(ReportKind::parse("weekly"), Ok(ReportKind::Weekly));
        assert!(ReportKind::parse("hourly")
            .unwrap_err()
            .contains("daily, weekly, monthly"));
    }
}
