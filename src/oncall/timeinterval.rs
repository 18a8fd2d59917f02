//! Alertmanager's `time_intervals`: the same YAML syntax and the same checks as its
//! `timeinterval` package, and `contains(at)`. An interval matches when every field it gives
//! matches; a named entry matches when any of its intervals does.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer};

/// A top-level `time_intervals` entry: a name and the intervals it stands for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedTimeInterval {
    pub name: String,
    #[serde(default)]
    pub time_intervals: Vec<TimeInterval>,
}

impl NamedTimeInterval {
    /// True when any of its intervals contains `at`.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.time_intervals.iter().any(|i| i.contains(at))
    }
}

/// One interval; a field left out places no condition. A field given as an empty list
/// matches nothing, as in Alertmanager.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeInterval {
    pub times: Option<Vec<TimeRange>>,
    pub weekdays: Option<Vec<WeekdayRange>>,
    pub days_of_month: Option<Vec<DayOfMonthRange>>,
    pub months: Option<Vec<MonthRange>>,
    pub years: Option<Vec<YearRange>>,
    /// The zone the other fields are read in; UTC when absent.
    #[serde(default, deserialize_with = "location")]
    pub location: Option<Tz>,
}

/// Minutes of the day, `start` included, `end` excluded (`24:00` is 1440).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawTimeRange")]
pub struct TimeRange {
    pub start: u32,
    pub end: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeRange {
    #[serde(default)]
    start_time: String,
    #[serde(default)]
    end_time: String,
}

impl TryFrom<RawTimeRange> for TimeRange {
    type Error = String;
    fn try_from(raw: RawTimeRange) -> Result<Self, String> {
        if raw.start_time.is_empty() || raw.end_time.is_empty() {
            return Err("both start_time and end_time must be given".into());
        }
        let start = minutes(&raw.start_time)?;
        let end = minutes(&raw.end_time)?;
        if start >= end {
            return Err(format!(
                "start_time {} must be before end_time {}",
                raw.start_time, raw.end_time
            ));
        }
        Ok(TimeRange { start, end })
    }
}

/// `HH:MM` (00:00 to 23:59, or 24:00) as minutes of the day.
fn minutes(s: &str) -> Result<u32, String> {
    let bad = || format!("{s:?} is not a time of day (HH:MM, 00:00 to 24:00)");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit())) {
        return Err(bad());
    }
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    match (h, m) {
        (24, 0) => Ok(1440),
        (0..=23, 0..=59) => Ok(h * 60 + m),
        _ => Err(bad()),
    }
}

/// A YAML scalar written as a number or a string (`1`, `'1:5'`, `monday`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Int(i64),
    Str(String),
}

impl Scalar {
    fn text(self) -> String {
        match self {
            Scalar::Int(n) => n.to_string(),
            Scalar::Str(s) => s.to_lowercase(),
        }
    }
}

/// `a` or `a:b`, each side read by `member`.
fn range(text: &str, member: impl Fn(&str) -> Result<i64, String>) -> Result<(i64, i64), String> {
    match text.split_once(':') {
        Some((a, b)) => {
            if b.contains(':') {
                return Err(format!("{text:?} is not a range (a or a:b)"));
            }
            Ok((member(a)?, member(b)?))
        }
        None => {
            let v = member(text)?;
            Ok((v, v))
        }
    }
}

fn number(s: &str) -> Result<i64, String> {
    s.parse().map_err(|_| format!("{s:?} is not a number"))
}

const WEEKDAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// Days of the week, inclusive, 0 = Sunday.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Scalar")]
pub struct WeekdayRange {
    pub begin: u32,
    pub end: u32,
}

impl TryFrom<Scalar> for WeekdayRange {
    type Error = String;
    fn try_from(s: Scalar) -> Result<Self, String> {
        let text = s.text();
        let (begin, end) = range(&text, |d| {
            WEEKDAYS
                .iter()
                .position(|w| *w == d)
                .map(|i| i as i64)
                .ok_or_else(|| format!("{d:?} is not a day of the week"))
        })?;
        if begin > end {
            return Err(format!(
                "{text:?}: the first day must not come after the last (weeks run sunday to saturday)"
            ));
        }
        Ok(WeekdayRange {
            begin: begin as u32,
            end: end as u32,
        })
    }
}

/// Days of the month, inclusive; negative counts from the end (-1 is the last day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Scalar")]
pub struct DayOfMonthRange {
    pub begin: i32,
    pub end: i32,
}

impl TryFrom<Scalar> for DayOfMonthRange {
    type Error = String;
    fn try_from(s: Scalar) -> Result<Self, String> {
        let text = s.text();
        let (begin, end) = range(&text, number)?;
        for d in [begin, end] {
            if d == 0 || !(-31..=31).contains(&d) {
                return Err(format!(
                    "{d} is not a day of the month (1 to 31, or -1 to -31 from the end)"
                ));
            }
        }
        if begin < 0 && end > 0 {
            return Err(format!(
                "{text:?}: the last day must be negative when the first is"
            ));
        }
        // Negative days are placed in the shortest month (28 days): a range that is empty
        // there is empty in some month and a mistake.
        let place = |d: i64| if d < 0 { 28 + d } else { d };
        if place(begin) > place(end) {
            return Err(format!("{text:?}: day {end} is always before day {begin}"));
        }
        Ok(DayOfMonthRange {
            begin: begin as i32,
            end: end as i32,
        })
    }
}

/// Months, inclusive, 1 = January; by name or number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Scalar")]
pub struct MonthRange {
    pub begin: u32,
    pub end: u32,
}

impl TryFrom<Scalar> for MonthRange {
    type Error = String;
    fn try_from(s: Scalar) -> Result<Self, String> {
        let text = s.text();
        let (begin, end) = range(&text, |m| {
            let n = match MONTHS.iter().position(|x| *x == m) {
                Some(i) => i as i64 + 1,
                None => m.parse().map_err(|_| format!("{m:?} is not a month"))?,
            };
            if (1..=12).contains(&n) {
                Ok(n)
            } else {
                Err(format!("{m:?} is not a month (1 to 12)"))
            }
        })?;
        if begin > end {
            return Err(format!(
                "{text:?}: month {} is before month {}",
                MONTHS[end as usize - 1],
                MONTHS[begin as usize - 1]
            ));
        }
        Ok(MonthRange {
            begin: begin as u32,
            end: end as u32,
        })
    }
}

/// Years, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Scalar")]
pub struct YearRange {
    pub begin: i32,
    pub end: i32,
}

impl TryFrom<Scalar> for YearRange {
    type Error = String;
    fn try_from(s: Scalar) -> Result<Self, String> {
        let text = s.text();
        let (begin, end) = range(&text, number)?;
        if begin > end {
            return Err(format!("{text:?}: year {end} is before year {begin}"));
        }
        let year = |y: i64| i32::try_from(y).map_err(|_| format!("{y} is not a year"));
        Ok(YearRange {
            begin: year(begin)?,
            end: year(end)?,
        })
    }
}

/// An IANA zone name (`Asia/Shanghai`, `UTC`).
pub fn location<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Tz>, D::Error> {
    let name = String::deserialize(d)?;
    name.parse::<Tz>().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "unknown time zone {name:?} (an IANA name such as Asia/Shanghai)"
        ))
    })
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)
    };
    match (next, NaiveDate::from_ymd_opt(year, month, 1)) {
        (Some(n), Some(f)) => (n - f).num_days() as u32,
        _ => 31,
    }
}

impl TimeInterval {
    /// True when every field given matches `at`, read in `location`.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        let local = self
            .location
            .unwrap_or(Tz::UTC)
            .from_utc_datetime(&at.naive_utc());
        let minute = local.hour() * 60 + local.minute();
        if let Some(times) = &self.times
            && !times.iter().any(|t| t.start <= minute && minute < t.end)
        {
            return false;
        }
        if let Some(days) = &self.days_of_month {
            let len = days_in_month(local.year(), local.month()) as i32;
            let day = local.day() as i32;
            let any = days.iter().any(|r| {
                let place = |d: i32| if d < 0 { len + d + 1 } else { d };
                let (begin, end) = (place(r.begin), place(r.end));
                // A range starting after this month's end (31 in April) matches none of it;
                // one ending after it stops at the month's end.
                begin <= len && begin.max(1) <= day && day <= end.min(len)
            });
            if !any {
                return false;
            }
        }
        if let Some(months) = &self.months
            && !months
                .iter()
                .any(|r| r.begin <= local.month() && local.month() <= r.end)
        {
            return false;
        }
        if let Some(weekdays) = &self.weekdays {
            let wd = local.weekday().num_days_from_sunday();
            if !weekdays.iter().any(|r| r.begin <= wd && wd <= r.end) {
                return false;
            }
        }
        if let Some(years) = &self.years
            && !years
                .iter()
                .any(|r| r.begin <= local.year() && local.year() <= r.end)
        {
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(yaml: &str) -> TimeInterval {
        match yaml_serde::from_str(yaml) {
            Ok(t) => t,
            Err(e) => panic!("{yaml}: {e}"),
        }
    }

    fn error(yaml: &str) -> String {
        match yaml_serde::from_str::<TimeInterval>(yaml) {
            Ok(t) => panic!("{yaml}: accepted as {t:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        match DateTime::parse_from_rfc3339(s) {
            Ok(t) => t.with_timezone(&Utc),
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn parses_every_field_as_alertmanager_writes_it() {
        let t = interval(
            "times: [{start_time: '09:00', end_time: '17:30'}, {start_time: '23:00', end_time: '24:00'}]\n\
             weekdays: ['monday:friday', saturday]\n\
             days_of_month: [1, '7:9', '-3:-1', '1:-1']\n\
             months: ['january:march', 12, 'JUNE']\n\
             years: ['2020:2022', 2030]\n\
             location: Asia/Shanghai\n",
        );
        assert_eq!(
            t.times.unwrap(),
            [
                TimeRange {
                    start: 540,
                    end: 1050
                },
                TimeRange {
                    start: 1380,
                    end: 1440
                }
            ]
        );
        assert_eq!(
            t.weekdays.unwrap(),
            [
                WeekdayRange { begin: 1, end: 5 },
                WeekdayRange { begin: 6, end: 6 }
            ]
        );
        assert_eq!(
            t.days_of_month.unwrap(),
            [
                DayOfMonthRange { begin: 1, end: 1 },
                DayOfMonthRange { begin: 7, end: 9 },
                DayOfMonthRange { begin: -3, end: -1 },
                DayOfMonthRange { begin: 1, end: -1 }
            ]
        );
        assert_eq!(
            t.months.unwrap(),
            [
                MonthRange { begin: 1, end: 3 },
                MonthRange { begin: 12, end: 12 },
                MonthRange { begin: 6, end: 6 }
            ]
        );
        assert_eq!(
            t.years.unwrap(),
            [
                YearRange {
                    begin: 2020,
                    end: 2022
                },
                YearRange {
                    begin: 2030,
                    end: 2030
                }
            ]
        );
        assert_eq!(t.location, Some(chrono_tz::Asia::Shanghai));
    }

    #[test]
    fn refuses_what_alertmanager_refuses() {
        for (yaml, want) in [
            (
                "times: [{start_time: '01:00', end_time: '01:00'}]",
                "start_time 01:00 must be before end_time 01:00",
            ),
            (
                "times: [{start_time: '05:00', end_time: '01:00'}]",
                "start_time 05:00 must be before end_time 01:00",
            ),
            (
                "times: [{start_time: '00:00', end_time: '24:01'}]",
                "\"24:01\" is not a time of day (HH:MM, 00:00 to 24:00)",
            ),
            (
                "times: [{start_time: '25:00', end_time: '26:00'}]",
                "\"25:00\" is not a time of day (HH:MM, 00:00 to 24:00)",
            ),
            (
                "times: [{start_time: '9:00', end_time: '10:00'}]",
                "\"9:00\" is not a time of day (HH:MM, 00:00 to 24:00)",
            ),
            (
                "times: [{start_time: '00:60', end_time: '10:00'}]",
                "\"00:60\" is not a time of day (HH:MM, 00:00 to 24:00)",
            ),
            (
                "times: [{start_time: '00:00'}]",
                "both start_time and end_time must be given",
            ),
            (
                "weekdays: ['friday:monday']",
                "\"friday:monday\": the first day must not come after the last (weeks run sunday to saturday)",
            ),
            ("weekdays: [funday]", "\"funday\" is not a day of the week"),
            (
                "weekdays: ['monday:tuesday:friday']",
                "\"monday:tuesday:friday\" is not a range (a or a:b)",
            ),
            (
                "days_of_month: [0]",
                "0 is not a day of the month (1 to 31, or -1 to -31 from the end)",
            ),
            (
                "days_of_month: ['1:32']",
                "32 is not a day of the month (1 to 31, or -1 to -31 from the end)",
            ),
            (
                "days_of_month: ['-32:-1']",
                "-32 is not a day of the month (1 to 31, or -1 to -31 from the end)",
            ),
            (
                "days_of_month: ['-1:5']",
                "\"-1:5\": the last day must be negative when the first is",
            ),
            (
                "days_of_month: ['10:5']",
                "\"10:5\": day 5 is always before day 10",
            ),
            (
                "days_of_month: ['28:-3']",
                "\"28:-3\": day -3 is always before day 28",
            ),
            (
                "months: ['december:january']",
                "\"december:january\": month january is before month december",
            ),
            ("months: [13]", "\"13\" is not a month (1 to 12)"),
            ("months: [jan]", "\"jan\" is not a month"),
            (
                "years: ['2022:2020']",
                "\"2022:2020\": year 2020 is before year 2022",
            ),
            (
                "location: Mars/Olympus",
                "unknown time zone \"Mars/Olympus\" (an IANA name such as Asia/Shanghai)",
            ),
            ("hours: [1]", "unknown field `hours`"),
        ] {
            let e = error(yaml);
            assert!(e.contains(want), "{yaml}: {e}");
        }
    }

    #[test]
    fn every_given_field_must_match() {
        let t = interval(
            "times: [{start_time: '09:00', end_time: '17:00'}]\nweekdays: ['monday:friday']\n",
        );
        // 2026-12-07 is a Monday.
        assert!(t.contains(utc("2026-12-07T09:00:00Z")));
        assert!(t.contains(utc("2026-12-07T16:59:59Z")));
        assert!(!t.contains(utc("2026-12-07T17:00:00Z")), "end is excluded");
        assert!(!t.contains(utc("2026-12-07T08:59:59Z")));
        assert!(!t.contains(utc("2026-12-06T10:00:00Z")), "a Sunday");
        assert!(
            interval("{}").contains(utc("2026-12-06T10:00:00Z")),
            "no field: always"
        );
        assert!(
            !interval("weekdays: []").contains(utc("2026-12-06T10:00:00Z")),
            "an empty list: never"
        );
    }

    #[test]
    fn twenty_four_hundred_closes_the_day() {
        let t = interval("times: [{start_time: '23:00', end_time: '24:00'}]");
        assert!(t.contains(utc("2026-12-07T23:59:59Z")));
        assert!(t.contains(utc("2026-12-07T23:00:00Z")));
        assert!(!t.contains(utc("2026-12-08T00:00:00Z")));
        assert!(!t.contains(utc("2026-12-07T22:59:59Z")));
    }

    #[test]
    fn negative_days_count_from_the_months_end() {
        let last_three = interval("days_of_month: ['-3:-1']");
        assert!(
            last_three.contains(utc("2026-02-26T12:00:00Z")),
            "Feb 2026 has 28 days"
        );
        assert!(!last_three.contains(utc("2026-02-25T12:00:00Z")));
        assert!(
            last_three.contains(utc("2024-02-27T12:00:00Z")),
            "a leap February"
        );
        assert!(!last_three.contains(utc("2024-02-26T12:00:00Z")));
        assert!(last_three.contains(utc("2026-01-29T00:00:00Z")));
        assert!(!last_three.contains(utc("2026-01-28T23:59:59Z")));
        let whole = interval("days_of_month: ['1:-1']");
        assert!(whole.contains(utc("2026-04-30T00:00:00Z")));
        assert!(whole.contains(utc("2026-04-01T00:00:00Z")));
        // Past the month's end: 31 does not exist in April, 30:31 stops at the 30th.
        assert!(!interval("days_of_month: [31]").contains(utc("2026-04-30T12:00:00Z")));
        assert!(interval("days_of_month: ['30:31']").contains(utc("2026-04-30T12:00:00Z")));
        assert!(!interval("days_of_month: ['30:31']").contains(utc("2026-05-01T12:00:00Z")));
        // -31 in a 28-day month reaches before its start: the whole month.
        assert!(interval("days_of_month: ['-31:-28']").contains(utc("2026-02-01T12:00:00Z")));
    }

    #[test]
    fn months_and_years_are_inclusive_ranges() {
        let q1 = interval("months: ['january:march']\nyears: ['2026:2027']");
        assert!(q1.contains(utc("2026-01-01T00:00:00Z")));
        assert!(q1.contains(utc("2027-03-31T23:59:59Z")));
        assert!(!q1.contains(utc("2027-04-01T00:00:00Z")));
        assert!(!q1.contains(utc("2028-02-01T00:00:00Z")));
        assert!(!q1.contains(utc("2025-12-31T23:59:59Z")));
        assert!(interval("months: [11]").contains(utc("2026-11-15T00:00:00Z")));
    }

    #[test]
    fn fields_are_read_in_the_location() {
        // 2026-12-07T16:30Z is Tuesday 00:30 in Shanghai, still Monday in UTC.
        let night = interval(
            "times: [{start_time: '00:00', end_time: '08:00'}]\nweekdays: [tuesday]\nlocation: Asia/Shanghai",
        );
        assert!(night.contains(utc("2026-12-07T16:30:00Z")));
        assert!(
            !night.contains(utc("2026-12-07T15:59:59Z")),
            "Monday 23:59 in Shanghai"
        );
        let utc_night =
            interval("times: [{start_time: '00:00', end_time: '08:00'}]\nweekdays: [tuesday]");
        assert!(!utc_night.contains(utc("2026-12-07T16:30:00Z")));
        // Across a month's end: the last day in New York while already the 1st in UTC.
        let last = interval("days_of_month: [-1]\nlocation: America/New_York");
        assert!(last.contains(utc("2026-12-01T02:00:00Z")));
        assert!(!interval("days_of_month: [-1]").contains(utc("2026-12-01T02:00:00Z")));
    }

    /// The scenarios of Alertmanager's own package tests, as (interval, inside, outside).
    #[test]
    fn alertmanagers_scenarios() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            (
                "times: [{start_time: '09:00', end_time: '17:00'}]\nweekdays: ['monday:friday']",
                &[
                    "2020-05-04T15:04:00Z",
                    "2020-05-05T10:04:00Z",
                    "2020-06-09T09:04:00Z",
                ],
                &[
                    "2020-05-03T15:04:00Z",
                    "2020-05-04T08:59:00Z",
                    "2020-05-05T05:00:00Z",
                ],
            ),
            (
                // Easter 2020.
                "days_of_month: ['4:6']\nmonths: [april]\nyears: [2020]",
                &[
                    "2020-04-04T15:04:00Z",
                    "2020-04-05T00:00:00Z",
                    "2020-04-06T23:05:00Z",
                ],
                &[
                    "2018-05-03T15:04:00Z",
                    "2020-04-03T23:59:00Z",
                    "2020-06-04T23:59:00Z",
                    "2019-04-06T23:59:00Z",
                    "2020-04-07T00:00:00Z",
                ],
            ),
            (
                "days_of_month: ['-3:-1']",
                &[
                    "2020-01-31T15:04:00Z",
                    "2020-01-29T15:04:00Z",
                    "2020-06-30T00:00:00Z",
                    "2020-02-29T23:05:00Z",
                ],
                &[
                    "2020-01-27T15:04:00Z",
                    "2020-03-01T00:00:00Z",
                    "2020-04-03T23:59:00Z",
                ],
            ),
            (
                // Out-of-range days are clamped to the month (Alertmanager's case is -31:31,
                // which only a hand-built interval can hold: its parser refuses it).
                "months: [6]\ndays_of_month: ['-31:-1']",
                &["2020-06-30T00:00:00Z", "2020-06-01T00:00:00Z"],
                &["2020-05-31T00:00:00Z", "2020-07-01T00:00:00Z"],
            ),
            (
                "times: [{start_time: '09:00', end_time: '17:00'}]\nweekdays: ['monday:friday']\nlocation: Australia/Sydney",
                &["2021-04-06T13:00:00+10:00"],
                &["2021-04-06T13:00:00Z"],
            ),
            (
                // Sydney in daylight saving time (UTC+11).
                "times: [{start_time: '09:00', end_time: '17:00'}]\nweekdays: ['monday:friday']\nmonths: [11]\nlocation: Australia/Sydney",
                &["2021-11-01T09:00:00+11:00", "2021-10-31T22:00:00Z"],
                &["2021-10-31T21:00:00Z"],
            ),
            (
                // The last week of the first quarter, Saturdays aside, in business hours.
                "weekdays: ['monday:friday', sunday]\nmonths: ['january:march']\ndays_of_month: ['-7:-1']\nyears: ['2020:2025', '2030:2035']\ntimes: [{start_time: '09:00', end_time: '17:00'}]",
                &[
                    "2021-01-27T09:00:00Z",
                    "2021-01-28T16:59:00Z",
                    "2025-03-31T13:00:00Z",
                    "2035-01-31T13:00:00Z",
                ],
                &[
                    "2021-01-30T13:00:00Z",
                    "2021-04-01T13:00:00Z",
                    "2026-01-30T13:00:00Z",
                    "2035-01-31T17:01:00Z",
                ],
            ),
            (
                "weekdays: ['monday:wednesday', saturday, sunday]\ntimes: [{start_time: '13:00', end_time: '15:00'}]\ndays_of_month: ['1', '10', '20:-1']\nyears: ['2020:2023']\nmonths: ['january:march']",
                &["2021-01-10T13:00:00Z", "2021-01-30T14:24:00Z"],
                &[
                    "2021-01-09T13:00:00Z",
                    "2021-01-20T12:59:00Z",
                    "2021-02-02T13:00:00Z",
                ],
            ),
            (
                // A range starting after the month's end is not clamped into it.
                "days_of_month: ['30:31']\nyears: ['2020:2023']\nmonths: [february]",
                &[],
                &["2021-02-28T13:00:00Z"],
            ),
        ];
        for (yaml, inside, outside) in cases {
            let t = interval(yaml);
            for at in *inside {
                assert!(t.contains(utc(at)), "{yaml}\nshould contain {at}");
            }
            for at in *outside {
                assert!(!t.contains(utc(at)), "{yaml}\nshould not contain {at}");
            }
        }
        for (yaml, want) in [
            ("weekdays: ['1:3']", "\"1\" is not a day of the week"),
            ("weekdays: ['-2:-1']", "\"-2\" is not a day of the week"),
            (
                "times: [{start_time: '01:99', end_time: '23:59'}]",
                "\"01:99\" is not a time of day",
            ),
            (
                "times: [{start_time: '24:00', end_time: '17:41'}]",
                "start_time 24:00 must be before end_time 17:41",
            ),
            (
                "days_of_month: ['-50:-20']",
                "-50 is not a day of the month",
            ),
            (
                "days_of_month: ['10:-25']",
                "\"10:-25\": day -25 is always before day 10",
            ),
            ("months: ['martius:june']", "\"martius\" is not a month"),
        ] {
            let e = error(yaml);
            assert!(e.contains(want), "{yaml}: {e}");
        }
        assert_eq!(
            interval("months: ['January:december']").months,
            Some(vec![MonthRange { begin: 1, end: 12 }])
        );
    }

    #[test]
    fn a_named_entry_matches_when_any_interval_does() {
        let named: NamedTimeInterval = match yaml_serde::from_str(
            "name: night\ntime_intervals:\n  - times: [{start_time: '23:00', end_time: '24:00'}]\n  - times: [{start_time: '00:00', end_time: '08:00'}]\n",
        ) {
            Ok(n) => n,
            Err(e) => panic!("{e}"),
        };
        assert!(named.contains(utc("2026-12-07T23:30:00Z")));
        assert!(named.contains(utc("2026-12-07T07:59:00Z")));
        assert!(!named.contains(utc("2026-12-07T12:00:00Z")));
    }
}
