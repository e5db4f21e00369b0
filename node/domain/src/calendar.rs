//! Time as data: civil dates in China time (fixed UTC+8, no daylight saving), the official holiday
//! calendar with its make-up working days, and RFC 3339 printing. Nothing here reads a clock.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::error::{echo, DomainError};

/// Unix time in milliseconds, UTC. Every instant in the engine is one of these, stamped by the
/// caller: the engine never reads a clock.
pub type Millis = i64;

pub const SECOND_MS: Millis = 1_000;
pub const MINUTE_MS: Millis = 60 * SECOND_MS;
pub const HOUR_MS: Millis = 60 * MINUTE_MS;
pub const DAY_MS: Millis = 24 * HOUR_MS;
/// China Standard Time is UTC+8 all year: statutory days are counted in it.
pub const CHINA_OFFSET_MS: Millis = 8 * HOUR_MS;

/// Day number (days since 1970-01-01) of 0000-01-01 and 9999-12-31: the range a [`Date`] spans.
const DAYS_MIN: i64 = -719_528;
const DAYS_MAX: i64 = 2_932_896;

/// The China-time day number (days since 1970-01-01) that contains the instant `ms`.
pub fn china_day(ms: Millis) -> i64 {
    let local = i128::from(ms) + i128::from(CHINA_OFFSET_MS);
    // |ms| < 2^63, so the quotient fits in i64 with room to spare.
    i64::try_from(local.div_euclid(i128::from(DAY_MS))).unwrap_or(0)
}

/// A civil date in China time. Years 0000..=9999 (the range RFC 3339 can print); conversions from
/// instants outside it saturate at the ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl Date {
    /// A validated date (a real day of the Gregorian calendar).
    pub fn new(year: u16, month: u8, day: u8) -> Result<Date, DomainError> {
        if year <= 9999
            && (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month)
        {
            Ok(Date { year, month, day })
        } else {
            Err(DomainError::InvalidDate {
                input: format!("{year:04}-{month:02}-{day:02}"),
            })
        }
    }

    /// The China-time date of an instant (saturating outside years 0000..=9999).
    pub fn from_millis(ms: Millis) -> Date {
        Date::from_days(china_day(ms))
    }

    /// The date of a day number (days since 1970-01-01), saturating outside years 0000..=9999.
    /// Howard Hinnant's `civil_from_days`.
    pub fn from_days(days: i64) -> Date {
        let z = days.clamp(DAYS_MIN, DAYS_MAX) + 719_468;
        let era = z.div_euclid(146_097);
        let day_of_era = z.rem_euclid(146_097);
        let year_of_era =
            (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_index = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * month_index + 2) / 5 + 1;
        let month = if month_index < 10 {
            month_index + 3
        } else {
            month_index - 9
        };
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        // The clamp keeps every component in range.
        Date {
            year: u16::try_from(year).unwrap_or(0),
            month: u8::try_from(month).unwrap_or(1),
            day: u8::try_from(day).unwrap_or(1),
        }
    }

    /// Days since 1970-01-01. Howard Hinnant's `days_from_civil`; total for any field values.
    pub fn days(self) -> i64 {
        let month = i64::from(self.month);
        let year = i64::from(self.year) - i64::from(month <= 2);
        let era = year.div_euclid(400);
        let year_of_era = year.rem_euclid(400);
        let month_index = if month > 2 { month - 3 } else { month + 9 };
        let day_of_year = (153 * month_index + 2) / 5 + i64::from(self.day) - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        era * 146_097 + day_of_era - 719_468
    }

    /// 00:00 China time on this date.
    pub fn start_millis(self) -> Millis {
        self.days() * DAY_MS - CHINA_OFFSET_MS
    }

    /// Saturday or Sunday: the ordinary rest days.
    pub fn is_weekend(self) -> bool {
        is_weekend_day(self.days())
    }
}

fn is_weekend_day(days: i64) -> bool {
    // 1970-01-01 was a Thursday: (days + 4) mod 7 is 0 on Sundays and 6 on Saturdays.
    matches!((days + 4).rem_euclid(7), 0 | 6)
}

fn is_leap_year(year: u16) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl FromStr for Date {
    type Err = DomainError;

    /// Exactly `YYYY-MM-DD`.
    fn from_str(input: &str) -> Result<Date, DomainError> {
        let fail = || DomainError::InvalidDate { input: echo(input) };
        let bytes = input.as_bytes();
        if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return Err(fail());
        }
        let year = digits(&bytes[0..4]).ok_or_else(fail)?;
        let month = digits(&bytes[5..7]).ok_or_else(fail)?;
        let day = digits(&bytes[8..10]).ok_or_else(fail)?;
        let (Ok(year), Ok(month), Ok(day)) =
            (u16::try_from(year), u8::try_from(month), u8::try_from(day))
        else {
            return Err(fail());
        };
        Date::new(year, month, day).map_err(|_| fail())
    }
}

/// The value of a run of ASCII digits (at most 9, so it cannot overflow).
fn digits(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || bytes.len() > 9 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        bytes
            .iter()
            .fold(0, |value, byte| value * 10 + u32::from(byte - b'0')),
    )
}

/// What an entry of the holiday table says about a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DayKind {
    /// A weekday off (法定节假日).
    Holiday,
    /// A weekend day worked to make up for a holiday (调休).
    Workday,
}

/// Most rows a calendar file may have (the official table has 771 for 23 years).
pub const CALENDAR_ROWS_MAX: usize = 20_000;
/// Longest holiday name kept.
pub const CALENDAR_NAME_CHARS_MAX: usize = 64;
/// The header line a calendar file starts with.
pub const CALENDAR_HEADER: &str = "date,kind,name";

const CHINA_CSV: &str = include_str!("../data/china-holidays.csv");

/// Holidays and make-up working days as data (a new year's notice is a new file, never code).
/// Saturdays and Sundays rest unless listed as `workday`; other days work unless listed `holiday`.
/// Days outside the table follow the weekend rule alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calendar {
    /// Day number (days since 1970-01-01) -> what the table says, with the holiday's name.
    days: BTreeMap<i64, (DayKind, String)>,
}

impl Calendar {
    /// A calendar with no holidays: only weekends rest.
    pub fn weekends_only() -> Calendar {
        Calendar::default()
    }

    /// Parses `date,kind,name` rows (header first; `kind` is `holiday` or `workday`; blank lines
    /// ignored; a date may appear once).
    pub fn from_csv(text: &str) -> Result<Calendar, DomainError> {
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(index, line)| (index + 1, line.trim_end_matches('\r')));
        match lines.next() {
            Some((_, header))
                if header.trim_start_matches('\u{feff}').trim() == CALENDAR_HEADER => {}
            _ => {
                return Err(DomainError::InvalidCalendar {
                    line: 1,
                    reason: "expected the header date,kind,name",
                })
            }
        }
        let mut days = BTreeMap::new();
        for (line, row) in lines {
            if row.trim().is_empty() {
                continue;
            }
            let fail = |reason| DomainError::InvalidCalendar { line, reason };
            if days.len() >= CALENDAR_ROWS_MAX {
                return Err(fail("too many rows"));
            }
            let mut fields = row.splitn(3, ',');
            let (Some(date), Some(kind), Some(name)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(fail("expected three fields: date,kind,name"));
            };
            let date: Date = date
                .trim()
                .parse()
                .map_err(|_| fail("the date is not YYYY-MM-DD"))?;
            let kind = match kind.trim() {
                "holiday" => DayKind::Holiday,
                "workday" => DayKind::Workday,
                _ => return Err(fail("the kind is neither holiday nor workday")),
            };
            let name: String = name.trim().chars().take(CALENDAR_NAME_CHARS_MAX).collect();
            if days.insert(date.days(), (kind, name)).is_some() {
                return Err(fail("the date is listed twice"));
            }
        }
        Ok(Calendar { days })
    }

    /// China's official table (State Council notices, 2004–2026), built in. Later years need a new
    /// file loaded with [`Calendar::from_csv`].
    pub fn china() -> Calendar {
        // The built-in file is checked by a unit test; should it ever fail, weekends still count.
        Calendar::from_csv(CHINA_CSV).unwrap_or_default()
    }

    /// Rows in the table.
    pub fn len(&self) -> usize {
        self.days.len()
    }

    pub fn is_empty(&self) -> bool {
        self.days.is_empty()
    }

    /// The first and last date the table lists.
    pub fn span(&self) -> Option<(Date, Date)> {
        let first = self.days.keys().next()?;
        let last = self.days.keys().next_back()?;
        Some((Date::from_days(*first), Date::from_days(*last)))
    }

    /// What the table lists for a day, with the holiday's name.
    pub fn entry(&self, day: Date) -> Option<(DayKind, &str)> {
        self.days
            .get(&day.days())
            .map(|(kind, name)| (*kind, name.as_str()))
    }

    /// Weekends are rest days unless listed as workday; weekdays work unless listed holiday.
    pub fn is_working_day(&self, day: Date) -> bool {
        self.is_working_day_number(day.days())
    }

    fn is_working_day_number(&self, days: i64) -> bool {
        match self.days.get(&days) {
            Some((DayKind::Holiday, _)) => false,
            Some((DayKind::Workday, _)) => true,
            None => !is_weekend_day(days),
        }
    }

    /// The same China wall-clock time on the `n`-th working day after the day of `from` (the day
    /// of `from` itself never counts, working or not). `n = 0` gives `from`.
    pub fn add_working_days(&self, from: Millis, n: u32) -> Millis {
        let start = china_day(from);
        let mut day = start;
        let mut left = i64::from(n);
        while left > 0 {
            // Where the table lists nothing, any 7 consecutive days hold exactly 5 working days:
            // jump whole weeks and walk only the last few days (and the table's own years).
            if left > 5 {
                let weeks = (left - 1) / 5;
                let clear_weeks = match self.days.range(day + 1..).next() {
                    Some((&listed, _)) => (listed - 1 - day) / 7,
                    None => weeks,
                };
                let jump = weeks.min(clear_weeks);
                if jump > 0 {
                    day += 7 * jump;
                    left -= 5 * jump;
                    continue;
                }
            }
            day += 1;
            if self.is_working_day_number(day) {
                left -= 1;
            }
        }
        from.saturating_add((day - start).saturating_mul(DAY_MS))
    }

    /// `n` whole days later (China has no daylight saving, so a day is always 24 h).
    pub fn add_calendar_days(from: Millis, n: u32) -> Millis {
        from.saturating_add(i64::from(n) * DAY_MS)
    }
}

/// Earliest and latest instants [`format_rfc3339`] prints exactly (years 0000..=9999, China time).
const PRINTABLE_MS_MIN: Millis = DAYS_MIN * DAY_MS - CHINA_OFFSET_MS;
const PRINTABLE_MS_MAX: Millis = (DAYS_MAX + 1) * DAY_MS - CHINA_OFFSET_MS - 1;

/// An instant in China time, e.g. `2026-03-02T09:00:00+08:00` (milliseconds appear only when not
/// zero). Instants outside years 0000..=9999 print as the nearest end of that range.
pub fn format_rfc3339(ms: Millis) -> String {
    let ms = ms.clamp(PRINTABLE_MS_MIN, PRINTABLE_MS_MAX);
    let date = Date::from_millis(ms);
    let of_day = (ms + CHINA_OFFSET_MS).rem_euclid(DAY_MS);
    let (hour, minute, second, milli) = (
        of_day / HOUR_MS,
        of_day % HOUR_MS / MINUTE_MS,
        of_day % MINUTE_MS / SECOND_MS,
        of_day % SECOND_MS,
    );
    if milli == 0 {
        format!("{date}T{hour:02}:{minute:02}:{second:02}+08:00")
    } else {
        format!("{date}T{hour:02}:{minute:02}:{second:02}.{milli:03}+08:00")
    }
}

/// Parses an RFC 3339 instant with any offset (`Z` or `±HH:MM`), e.g. a grade deadline typed at the
/// CLI. Fractions finer than a millisecond are truncated.
pub fn parse_rfc3339(input: &str) -> Result<Millis, DomainError> {
    parse_rfc3339_parts(input.as_bytes())
        .ok_or_else(|| DomainError::InvalidTime { input: echo(input) })
}

fn parse_rfc3339_parts(bytes: &[u8]) -> Option<Millis> {
    if bytes.len() < 20
        || !matches!(bytes[10], b'T' | b't' | b' ')
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let date: Date = std::str::from_utf8(&bytes[0..10]).ok()?.parse().ok()?;
    let hour = digits(&bytes[11..13])?;
    let minute = digits(&bytes[14..16])?;
    let second = digits(&bytes[17..19])?;
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &bytes[19..];
    let mut milli = 0;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let len = fraction
            .iter()
            .take_while(|byte| byte.is_ascii_digit())
            .count();
        if len == 0 {
            return None;
        }
        let kept = &fraction[..len.min(3)];
        milli = digits(kept)? * 10u32.pow(3 - u32::try_from(kept.len()).ok()?);
        rest = &fraction[len..];
    }
    let offset_ms = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = digits(&[*h1, *h2])?;
            let minutes = digits(&[*m1, *m2])?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = i64::from(hours) * HOUR_MS + i64::from(minutes) * MINUTE_MS;
            if *sign == b'-' {
                -offset
            } else {
                offset
            }
        }
        _ => return None,
    };
    let local = date.days() * DAY_MS
        + i64::from(hour) * HOUR_MS
        + i64::from(minute) * MINUTE_MS
        + i64::from(second) * SECOND_MS
        + i64::from(milli);
    Some(local - offset_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Millis {
        parse_rfc3339(text).unwrap_or(Millis::MIN)
    }

    #[test]
    fn the_built_in_china_table_parses_whole() {
        let calendar = Calendar::from_csv(CHINA_CSV).expect("built-in calendar parses");
        assert_eq!(calendar.len(), 771);
        assert_eq!(Calendar::china(), calendar);
        let (first, last) = calendar.span().expect("not empty");
        assert_eq!(
            (first.to_string(), last.to_string()),
            ("2004-01-01".to_string(), "2026-10-10".to_string())
        );
    }

    #[test]
    fn dates_round_trip_through_day_numbers() {
        assert_eq!(Date::from_days(0).to_string(), "1970-01-01");
        assert_eq!("2000-02-29".parse::<Date>().map(Date::days), Ok(11_016));
        for days in (DAYS_MIN..=DAYS_MAX).step_by(997) {
            assert_eq!(Date::from_days(days).days(), days);
        }
        assert_eq!(Date::from_days(DAYS_MAX).to_string(), "9999-12-31");
        assert_eq!(Date::from_days(DAYS_MIN).to_string(), "0000-01-01");
        assert_eq!(Date::from_days(i64::MAX).to_string(), "9999-12-31");
    }

    #[test]
    fn china_dates_start_at_utc_plus_8_midnight() {
        // 2026-03-01T16:00:00Z is 2026-03-02 00:00 in China.
        let midnight = at("2026-03-01T16:00:00Z");
        assert_eq!(Date::from_millis(midnight).to_string(), "2026-03-02");
        assert_eq!(Date::from_millis(midnight - 1).to_string(), "2026-03-01");
        assert_eq!(Date::new(2026, 3, 2).map(Date::start_millis), Ok(midnight));
    }

    #[test]
    fn bad_dates_are_refused() {
        for bad in [
            "2026-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-1-01",
            "20260101",
            "2026-01-32",
            "２０２６-01-01",
        ] {
            assert!(bad.parse::<Date>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc3339_prints_china_time_and_parses_back() {
        let ms = at("2026-03-02T01:00:00Z");
        assert_eq!(format_rfc3339(ms), "2026-03-02T09:00:00+08:00");
        assert_eq!(format_rfc3339(ms + 5), "2026-03-02T09:00:00.005+08:00");
        assert_eq!(at("2026-03-02T09:00:00.005+08:00"), ms + 5);
        assert_eq!(at("2026-03-01T20:00:00-05:00"), ms);
        assert_eq!(format_rfc3339(i64::MAX), "9999-12-31T23:59:59.999+08:00");
        assert_eq!(format_rfc3339(i64::MIN), "0000-01-01T00:00:00+08:00");
        for bad in [
            "2026-03-02",
            "2026-03-02T25:00:00Z",
            "2026-03-02T09:00:00",
            "2026-03-02T09:00:00+8:00",
            "x",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn weekends_rest_unless_made_up() {
        let calendar = Calendar::china();
        let day = |text: &str| {
            text.parse::<Date>().unwrap_or(Date {
                year: 0,
                month: 1,
                day: 1,
            })
        };
        assert!(!calendar.is_working_day(day("2026-10-01"))); // National Day, a Thursday
        assert!(calendar.is_working_day(day("2026-10-10"))); // make-up Saturday
        assert!(!calendar.is_working_day(day("2026-10-11"))); // ordinary Sunday
        assert!(calendar.is_working_day(day("2026-10-12"))); // ordinary Monday
        assert!(!Calendar::weekends_only().is_working_day(day("2030-01-05"))); // a Saturday
    }

    #[test]
    fn working_days_past_the_table_jump_whole_weeks() {
        let calendar = Calendar::china();
        let monday = at("2030-01-07T10:00:00+08:00");
        assert_eq!(
            format_rfc3339(calendar.add_working_days(monday, 5)),
            "2030-01-14T10:00:00+08:00"
        );
        assert_eq!(
            format_rfc3339(calendar.add_working_days(monday, 6)),
            "2030-01-15T10:00:00+08:00"
        );
        assert_eq!(calendar.add_working_days(monday, 0), monday);
        // A Saturday start: Monday is the first working day.
        let saturday = at("2030-01-05T10:00:00+08:00");
        assert_eq!(
            format_rfc3339(calendar.add_working_days(saturday, 1)),
            "2030-01-07T10:00:00+08:00"
        );
        // A huge count, or a start long before the table, neither hangs nor overflows.
        let far = calendar.add_working_days(monday, u32::MAX);
        assert!(far > monday);
        assert!(calendar.add_working_days(i64::MIN, 5) > i64::MIN);
        assert_eq!(calendar.add_working_days(i64::MAX, u32::MAX), i64::MAX);
        let ancient = at("1900-01-01T10:00:00+08:00"); // a Monday
        assert_eq!(
            format_rfc3339(calendar.add_working_days(ancient, 5)),
            "1900-01-08T10:00:00+08:00"
        );
        // Across the whole table: the same as walking day by day.
        let start = at("2003-12-29T10:00:00+08:00");
        let walk = |n: u32| {
            let (mut day, mut left) = (china_day(start), n);
            while left > 0 {
                day += 1;
                if calendar.is_working_day(Date::from_days(day)) {
                    left -= 1;
                }
            }
            start + (day - china_day(start)) * DAY_MS
        };
        for n in [1, 6, 250, 5_800, 5_900] {
            assert_eq!(calendar.add_working_days(start, n), walk(n), "{n}");
        }
        let walked = (1..=500u32).map(|n| Calendar::weekends_only().add_working_days(monday, n));
        assert!(walked.clone().zip(walked.skip(1)).all(|(a, b)| b > a));
    }

    #[test]
    fn calendar_csv_errors_name_the_line() {
        let bad = [
            ("day,kind\n", 1),
            (
                "date,kind,name\n2026-01-01,holiday,A\n2026-01-01,holiday,B\n",
                3,
            ),
            ("date,kind,name\n2026-01-01,rest,A\n", 2),
            ("date,kind,name\n\n2026-02-30,holiday,A\n", 3),
            ("date,kind,name\n2026-01-01\n", 2),
        ];
        for (text, line) in bad {
            match Calendar::from_csv(text) {
                Err(DomainError::InvalidCalendar { line: got, .. }) => {
                    assert_eq!(got, line, "{text}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        let crlf = Calendar::from_csv("date,kind,name\r\n2026-01-01,holiday,New Year, again\r\n");
        assert_eq!(crlf.map(|c| c.len()), Ok(1));
    }
}
