//! Supervisors' figures, pure: the facts a case's summary carries ([`facts`]), the rates read from
//! an office's counters ([`Rates`]), the scorecard (考核, [`score`]) and the trend's buckets
//! ([`trend`]). The node keeps the counters; this module only says what they mean.

use std::collections::BTreeMap;

use crate::calendar::{Calendar, Date, Millis};
use crate::clock::ClockKind;
use crate::message::Facts;
use crate::model::{Case, CaseKind};
use crate::rules::{ACCEPT_DAYS, EXTENSION_DAYS_MAX, REPLY_DAYS, REVIEW_DECISION_DAYS};

/// Buckets one trend answer holds at most.
pub const TREND_BUCKETS_MAX: usize = 400;

/// The facts of a case a version-2 summary carries.
pub fn facts(case: &Case) -> Facts {
    let accept_limit = accept_limit(case);
    let accepted_in_time = case.accepted_at.map(|at| at <= accept_limit);
    let replied_on_time = match (case.replied_at, reply_limit(case)) {
        (Some(at), Some(limit)) => Some(at <= limit),
        _ => None,
    };
    let running = |kind: ClockKind| {
        case.clock_run(kind)
            .and_then(|run| case.clock_due(kind).map(|due| (run, due)))
    };
    let mut warned = 0u8;
    let mut overdue_at: Option<Millis> = None;
    for kind in ClockKind::ALL {
        if !kind.is_breach_at_limit() {
            continue;
        }
        if let Some((run, due)) = running(kind) {
            warned = warned.max(run.reached_percent.min(100));
            if run.reached_percent >= 100 {
                overdue_at = Some(overdue_at.map_or(due, |at| at.min(due)));
            }
        }
    }
    if case.overdue {
        if accepted_in_time == Some(false) {
            overdue_at = Some(overdue_at.map_or(accept_limit, |at| at.min(accept_limit)));
        }
    } else {
        overdue_at = None;
    }
    let due_at = [case.deadlines.accept_by, case.deadlines.reply_by]
        .into_iter()
        .flatten()
        .min();
    Facts {
        channel: Some(case.channel.as_str().to_string()),
        due_at,
        accepted_at: case.accepted_at,
        replied_at: case.replied_at,
        accepted_in_time,
        replied_on_time,
        warned,
        overdue_at,
        opinion: case.opinion.map(|opinion| opinion.as_str().to_string()),
    }
}

/// The decision (accept) limit of this office's copy: 15 days from its registration, or from its
/// receipt when it came in a handoff.
pub fn accept_limit(case: &Case) -> Millis {
    let start = case
        .received
        .as_ref()
        .map_or(case.registered_at, |receipt| receipt.at);
    Calendar::add_calendar_days(start, ACCEPT_DAYS)
}

/// The reply limit a reply is measured against: a review (re-review) is decided within 30 days of
/// its registration; an original within 60 days of its acceptance, plus the longest extension
/// (30 days) when the limit was extended (the stored case keeps that it was extended, not by how
/// much). None for an original never accepted.
pub fn reply_limit(case: &Case) -> Option<Millis> {
    match case.kind {
        CaseKind::Review { .. } | CaseKind::ReReview { .. } => Some(Calendar::add_calendar_days(
            case.registered_at,
            REVIEW_DECISION_DAYS,
        )),
        CaseKind::Original => case.accepted_at.map(|at| {
            let days = REPLY_DAYS + if case.extended { EXTENSION_DAYS_MAX } else { 0 };
            Calendar::add_calendar_days(at, days)
        }),
    }
}

/// A share: `part` of `whole`; no value when `whole` is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rate {
    pub part: u64,
    pub whole: u64,
}

impl Rate {
    pub fn value(self) -> Option<f64> {
        // Counts far below 2^52: exact as f64.
        (self.whole > 0).then(|| self.part as f64 / self.whole as f64)
    }
}

/// The rates of one row of counters (an office's, or the sum of a subtree's). Each says its
/// formula in the figures' names (see docs/supervision.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rates {
    /// accepted:in_time / (accepted:in_time + accepted:late)
    pub acceptance_in_time: Rate,
    /// replied:on_time / (replied:on_time + replied:late)
    pub reply_on_time: Rate,
    /// skip_level / kind:original
    pub skip_level: Rate,
    /// kind:review / answered:original — review cases per original answered.
    pub review: Rate,
    /// kind:re_review / answered:review — re-review cases per review decided.
    pub re_review: Rate,
    /// (satisfaction:satisfied + satisfaction:basic) / (the same + satisfaction:dissatisfied)
    pub satisfaction: Rate,
    /// overdue / total
    pub overdue: Rate,
}

impl Rates {
    pub fn of(counts: &BTreeMap<String, u64>) -> Rates {
        let count = |figure: &str| counts.get(figure).copied().unwrap_or(0);
        let rate = |part: u64, whole: u64| Rate { part, whole };
        let accepted = count("accepted:in_time");
        let replied = count("replied:on_time");
        let pleased = count("satisfaction:satisfied") + count("satisfaction:basic");
        Rates {
            acceptance_in_time: rate(accepted, accepted + count("accepted:late")),
            reply_on_time: rate(replied, replied + count("replied:late")),
            skip_level: rate(count("skip_level"), count("kind:original")),
            review: rate(count("kind:review"), count("answered:original")),
            re_review: rate(count("kind:re_review"), count("answered:review")),
            satisfaction: rate(pleased, pleased + count("satisfaction:dissatisfied")),
            overdue: rate(count("overdue"), count("total")),
        }
    }
}

/// The scorecard's terms: name, weight, and the rate it scores (1 is best).
pub const SCORE_WEIGHTS: [(&str, f64); 5] = [
    ("acceptance_in_time", 0.25),
    ("reply_on_time", 0.25),
    ("satisfaction", 0.20),
    ("not_overdue", 0.20),
    ("not_skip_level", 0.10),
];

/// The scorecard formula, as the CLI prints it.
pub const SCORE_FORMULA: &str = "score = 100 × (0.25 × acceptance_in_time + 0.25 × reply_on_time \
     + 0.20 × satisfaction + 0.20 × (1 − overdue rate) + 0.10 × (1 − skip_level rate)); a term \
     with no cases is left out and the other weights scaled up to sum to 1";

/// One office's score: each term's value (None: no cases), and the score (None: no term had
/// cases).
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub terms: Vec<(&'static str, f64, Option<f64>)>,
    pub score: Option<f64>,
}

/// The scorecard formula ([`SCORE_FORMULA`]) applied to `rates`.
pub fn score(rates: &Rates) -> Score {
    let values = [
        rates.acceptance_in_time.value(),
        rates.reply_on_time.value(),
        rates.satisfaction.value(),
        rates.overdue.value().map(|rate| 1.0 - rate),
        rates.skip_level.value().map(|rate| 1.0 - rate),
    ];
    let terms: Vec<(&'static str, f64, Option<f64>)> = SCORE_WEIGHTS
        .iter()
        .zip(values)
        .map(|(&(name, weight), value)| (name, weight, value))
        .collect();
    let weight: f64 = terms.iter().filter(|t| t.2.is_some()).map(|t| t.1).sum();
    let sum: f64 = terms.iter().filter_map(|t| t.2.map(|v| v * t.1)).sum();
    let score = (weight > 0.0).then(|| 100.0 * sum / weight);
    Score { terms, score }
}

/// The trend's bucket width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    /// Monday to Sunday, named by its Monday.
    Week,
    /// Named `YYYY-MM`.
    Month,
}

impl Period {
    pub fn parse(word: &str) -> Result<Period, String> {
        match word {
            "day" => Ok(Period::Day),
            "week" => Ok(Period::Week),
            "month" => Ok(Period::Month),
            other => Err(format!(
                "unknown trend period {:?}: one of day, week, month",
                crate::error::echo(other)
            )),
        }
    }

    /// The bucket `date` falls in, by name.
    pub fn bucket(self, date: Date) -> String {
        match self {
            Period::Day => day_name(date),
            Period::Week => {
                // 1970-01-01 was a Thursday: Monday is 3 days before it.
                let monday = date.days() - (date.days() + 3).rem_euclid(7);
                day_name(Date::from_days(monday))
            }
            Period::Month => format!("{:04}-{:02}", date.year, date.month),
        }
    }
}

/// `YYYY-MM-DD`.
pub fn day_name(date: Date) -> String {
    format!("{:04}-{:02}-{:02}", date.year, date.month, date.day)
}

/// A day typed as `YYYY-MM-DD`.
pub fn parse_day(text: &str) -> Result<Date, String> {
    let bad = || {
        format!(
            "bad day {:?}: expected YYYY-MM-DD",
            crate::error::echo(text)
        )
    };
    let parts: Vec<&str> = text.split('-').collect();
    if parts.len() != 3 || parts[0].len() != 4 || parts[1].len() != 2 || parts[2].len() != 2 {
        return Err(bad());
    }
    let number = |part: &str| part.parse::<u16>().map_err(|_| bad());
    let (year, month, day) = (number(parts[0])?, number(parts[1])?, number(parts[2])?);
    Date::new(
        year,
        u8::try_from(month).map_err(|_| bad())?,
        u8::try_from(day).map_err(|_| bad())?,
    )
    .map_err(|_| bad())
}

/// The measures a trend counts per day.
pub const TREND_MEASURES: [&str; 3] = ["registered", "replied", "overdue"];

/// The counter of cases `measure`d on `date` (see [`TREND_MEASURES`]).
pub fn day_figure(date: Date, measure: &str) -> String {
    format!("day:{}:{measure}", day_name(date))
}

/// A trend counter's day and measure.
pub fn parse_day_figure(figure: &str) -> Option<(Date, &str)> {
    let rest = figure.strip_prefix("day:")?;
    let (day, measure) = rest.split_once(':')?;
    Some((parse_day(day).ok()?, measure))
}

/// One bucket of a trend: its name and per measure the count.
pub type Bucket = (String, BTreeMap<String, u64>);

/// Per-day counts (`by_day`: day, measure, count) summed into buckets of `period` from `from` to
/// `to` (both days included): every bucket of the span, empty ones too, in order; at most
/// [`TREND_BUCKETS_MAX`], else an error naming the span.
pub fn trend(
    by_day: &[(Date, String, u64)],
    period: Period,
    from: Date,
    to: Date,
) -> Result<Vec<Bucket>, String> {
    if from > to {
        return Err(format!(
            "the trend's span is empty: {} is after {}",
            day_name(from),
            day_name(to)
        ));
    }
    let mut names: Vec<String> = Vec::new();
    for day in from.days()..=to.days() {
        let name = period.bucket(Date::from_days(day));
        if names.last() != Some(&name) {
            if names.len() == TREND_BUCKETS_MAX {
                return Err(format!(
                    "the trend from {} to {} has more than {TREND_BUCKETS_MAX} buckets: narrow \
                     it with --from and --to, or use a longer period",
                    day_name(from),
                    day_name(to)
                ));
            }
            names.push(name);
        }
    }
    let mut buckets: BTreeMap<String, BTreeMap<String, u64>> = names
        .iter()
        .map(|name| {
            let zero = TREND_MEASURES.iter().map(|m| (m.to_string(), 0)).collect();
            (name.clone(), zero)
        })
        .collect();
    for (date, measure, count) in by_day {
        if *date < from || *date > to {
            continue;
        }
        if let Some(bucket) = buckets.get_mut(&period.bucket(*date)) {
            *bucket.entry(measure.clone()).or_default() += count;
        }
    }
    Ok(names
        .into_iter()
        .map(|name| {
            let counts = buckets.remove(&name).unwrap_or_default();
            (name, counts)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::DAY_MS;
    use crate::message::{Summary, SummaryV2};
    use crate::{register, CaseId, Channel, Context, OfficeCode, Registration};

    fn case(office: &str, location: Option<&str>, at: Millis) -> Case {
        let office: OfficeCode = office.parse().unwrap();
        let registration = Registration {
            channel: Channel::Letter,
            petitioner_id: "530602198001010012".into(),
            name: "Zhang".into(),
            phone: None,
            category: "housing".into(),
            summary: "The roof leaks.".into(),
            location: location.map(|code| code.parse().unwrap()),
            officer: "registrar".into(),
            address: None,
        };
        let id = CaseId::new(office.clone(), 2026, 1);
        let key = crate::petitioner_key(b"secret", registration.petitioner_id.clear().unwrap());
        let calendar = Calendar::china();
        let context = Context::new(&office, at, &calendar);
        register(id, registration, key, CaseKind::Original, &context).unwrap()
    }

    const T0: Millis = 1_767_225_600_000;

    /// Accepted on the 16th day: late; replied within 60 days of acceptance: on time.
    #[test]
    fn acceptance_and_reply_are_measured_against_their_limits() {
        let mut case = case("530602", None, T0);
        let facts = facts(&case);
        assert_eq!(facts.channel.as_deref(), Some("letter"));
        assert_eq!(facts.accepted_in_time, None);
        assert_eq!(facts.due_at, Some(T0 + 15 * DAY_MS));
        case.accepted_at = Some(T0 + 15 * DAY_MS);
        assert_eq!(super::facts(&case).accepted_in_time, Some(true));
        case.accepted_at = Some(T0 + 15 * DAY_MS + 1);
        assert_eq!(super::facts(&case).accepted_in_time, Some(false));
        case.replied_at = Some(T0 + 75 * DAY_MS + 1);
        assert_eq!(super::facts(&case).replied_on_time, Some(true));
        case.replied_at = Some(T0 + 75 * DAY_MS + 2);
        assert_eq!(super::facts(&case).replied_on_time, Some(false));
        case.extended = true;
        assert_eq!(super::facts(&case).replied_on_time, Some(true));
    }

    /// The highest warning of a running clock; an overdue case is at 100 with its day.
    #[test]
    fn warnings_and_the_overdue_day_come_from_the_clocks() {
        let mut case = case("530602", None, T0);
        assert_eq!(facts(&case).warned, 0);
        case.mark_reached(ClockKind::Accept, 75);
        assert_eq!(facts(&case).warned, 75);
        assert_eq!(facts(&case).overdue_at, None);
        case.mark_reached(ClockKind::Accept, 100);
        case.overdue = true;
        let overdue = facts(&case);
        assert_eq!(overdue.warned, 100);
        assert_eq!(overdue.overdue_at, Some(T0 + 15 * DAY_MS));
        // Accepted late: the accept clock stops, the case stays overdue since its limit.
        case.stop_clock(ClockKind::Accept);
        case.accepted_at = Some(T0 + 16 * DAY_MS);
        let accepted = facts(&case);
        assert_eq!(accepted.warned, 0);
        assert_eq!(accepted.overdue_at, Some(T0 + 15 * DAY_MS));
    }

    /// Two or more levels between the registering office and the place: skip-level.
    #[test]
    fn skip_level_is_two_levels_or_more_above_the_place() {
        let skip = |office: &str, location: Option<&str>| {
            Summary::of(&case(office, location, T0)).is_skip_level()
        };
        assert!(skip("5306", Some("530602001")));
        assert!(skip("53", Some("530602")));
        assert!(
            !skip("5306", Some("530602")),
            "one level up is not skip-level"
        );
        assert!(!skip("530602", Some("530602001")));
        assert!(!skip("530602", Some("530602")));
        assert!(!skip("5306", Some("530703001")), "outside the subtree");
        assert!(!skip("5306", None));
    }

    /// A version-1 summary's bytes read as version 2 with unknown facts; version 2 round-trips.
    #[test]
    fn a_version_1_summary_reads_as_version_2() {
        let case = case("530602", Some("530602001"), T0);
        let v1 = Summary::of(&case);
        for bytes in [crate::codec::encode(&v1), {
            let mut json = vec![crate::codec::FORMAT_JSON];
            json.extend(serde_json::to_vec(&v1).unwrap());
            json
        }] {
            let read = SummaryV2::decode_stored(&bytes).unwrap();
            assert_eq!(read.summary, v1);
            assert_eq!(read.facts, Facts::default());
        }
        let v2 = SummaryV2::of(&case);
        assert_eq!(
            SummaryV2::decode_stored(&crate::codec::encode(&v2)).unwrap(),
            v2
        );
        assert_eq!(v2.validate(), Ok(()));
        let mut bad = v2.clone();
        bad.facts.channel = Some("pigeon".into());
        assert_eq!(bad.validate().unwrap_err().code(), "invalid_channel");
        let mut bad = v2;
        bad.facts.opinion = Some("maybe".into());
        assert_eq!(bad.validate().unwrap_err().code(), "invalid_opinion");
    }

    fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(f, c)| (f.to_string(), *c)).collect()
    }

    /// Each rate is its documented quotient; an empty whole has no value.
    #[test]
    fn rates_are_their_quotients() {
        let rates = Rates::of(&counts(&[
            ("total", 10),
            ("overdue", 2),
            ("kind:original", 8),
            ("kind:review", 2),
            ("answered:original", 4),
            ("accepted:in_time", 3),
            ("accepted:late", 1),
            ("replied:on_time", 1),
            ("replied:late", 3),
            ("skip_level", 2),
            ("satisfaction:satisfied", 1),
            ("satisfaction:basic", 1),
            ("satisfaction:dissatisfied", 2),
        ]));
        assert_eq!(rates.acceptance_in_time.value(), Some(0.75));
        assert_eq!(rates.reply_on_time.value(), Some(0.25));
        assert_eq!(rates.skip_level.value(), Some(0.25));
        assert_eq!(rates.review.value(), Some(0.5));
        assert_eq!(rates.re_review.value(), None);
        assert_eq!(rates.satisfaction.value(), Some(0.5));
        assert_eq!(rates.overdue.value(), Some(0.2));
    }

    /// The weighted sum of the terms, weights rescaled over the terms that have cases.
    #[test]
    fn the_score_is_the_weighted_formula() {
        let rates = Rates::of(&counts(&[
            ("total", 10),
            ("overdue", 2),
            ("kind:original", 10),
            ("accepted:in_time", 3),
            ("accepted:late", 1),
            ("replied:on_time", 1),
            ("replied:late", 3),
            ("skip_level", 5),
        ]));
        let score = score(&rates);
        // satisfaction has no cases: 0.25 × 0.75 + 0.25 × 0.25 + 0.2 × 0.8 + 0.1 × 0.5 over 0.8.
        let expected = 100.0 * (0.25 * 0.75 + 0.25 * 0.25 + 0.2 * 0.8 + 0.1 * 0.5) / 0.8;
        assert!((score.score.unwrap() - expected).abs() < 1e-9);
        assert_eq!(score.terms[2], ("satisfaction", 0.2, None));
        assert_eq!(super::score(&Rates::default()).score, None);
    }

    /// Weeks start on Monday, months on the 1st, days in China time; empty buckets are listed.
    #[test]
    fn trend_buckets_by_china_day_week_and_month() {
        let day = |text: &str| parse_day(text).unwrap();
        // 23:30 on 2026-01-04 UTC is 07:30 on 2026-01-05 in China.
        let late = Date::from_millis(day("2026-01-04").start_millis() + 31 * 3_600_000 + 1_800_000);
        assert_eq!(day_name(late), "2026-01-05");
        let by_day = vec![
            (day("2026-01-04"), "registered".to_string(), 2),
            (day("2026-01-05"), "registered".to_string(), 3),
            (day("2026-01-11"), "replied".to_string(), 1),
            (day("2026-02-01"), "overdue".to_string(), 4),
        ];
        let days = trend(&by_day, Period::Day, day("2026-01-04"), day("2026-01-06")).unwrap();
        assert_eq!(days.len(), 3);
        assert_eq!(days[0].1["registered"], 2);
        assert_eq!(days[2].1["registered"], 0);
        let weeks = trend(&by_day, Period::Week, day("2026-01-01"), day("2026-01-31")).unwrap();
        let names: Vec<&str> = weeks.iter().map(|b| b.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "2025-12-29",
                "2026-01-05",
                "2026-01-12",
                "2026-01-19",
                "2026-01-26"
            ]
        );
        assert_eq!(weeks[0].1["registered"], 2);
        assert_eq!(weeks[1].1["registered"], 3);
        assert_eq!(weeks[1].1["replied"], 1);
        let months = trend(&by_day, Period::Month, day("2026-01-01"), day("2026-02-28")).unwrap();
        assert_eq!(months[0].0, "2026-01");
        assert_eq!(months[0].1["registered"], 5);
        assert_eq!(months[1].1["overdue"], 4);
        assert!(trend(&by_day, Period::Day, day("2026-01-01"), day("2027-03-01")).is_err());
        assert!(trend(&by_day, Period::Day, day("2026-01-02"), day("2026-01-01")).is_err());
        assert!(parse_day("2026-1-5").is_err());
        assert!(parse_day("2026-02-30").is_err());
        assert!(Period::parse("year").is_err());
        assert_eq!(
            parse_day_figure("day:2026-01-05:replied"),
            Some((day("2026-01-05"), "replied"))
        );
    }
}
