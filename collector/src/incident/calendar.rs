//! Working-time calendars for SLA clocks: 24×7, or business hours in a time
//! zone with a holiday list (and make-up working days, as China's 调休 moves
//! weekends around public holidays). A clock asks two things of a calendar:
//! how much working time lies between two instants, and at which instant a
//! given amount of working time has passed.
//!
//! Time zones come from `jiff` (not `time`, which has no tz database): the
//! system's zoneinfo when it has one, else the copy of the IANA database
//! bundled into the binary, so a minimal container still knows Asia/Shanghai.

use std::collections::BTreeSet;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// How far ahead a calendar looks for working time before it gives up: a
/// calendar with no working day in ten years never lets a clock run out.
const HORIZON_DAYS: i64 = 3660;

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    #[serde(alias = "mon")]
    Monday,
    #[serde(alias = "tue")]
    Tuesday,
    #[serde(alias = "wed")]
    Wednesday,
    #[serde(alias = "thu")]
    Thursday,
    #[serde(alias = "fri")]
    Friday,
    #[serde(alias = "sat")]
    Saturday,
    #[serde(alias = "sun")]
    Sunday,
}

impl Weekday {
    fn of(date: Date) -> Weekday {
        match date.weekday() {
            jiff::civil::Weekday::Monday => Weekday::Monday,
            jiff::civil::Weekday::Tuesday => Weekday::Tuesday,
            jiff::civil::Weekday::Wednesday => Weekday::Wednesday,
            jiff::civil::Weekday::Thursday => Weekday::Thursday,
            jiff::civil::Weekday::Friday => Weekday::Friday,
            jiff::civil::Weekday::Saturday => Weekday::Saturday,
            jiff::civil::Weekday::Sunday => Weekday::Sunday,
        }
    }
}

/// When SLA time counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Calendar {
    /// Every instant counts.
    #[default]
    #[serde(rename = "24x7")]
    AlwaysOn,
    BusinessHours(BusinessHours),
}

/// Working hours on working days, in a time zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusinessHours {
    /// IANA name, e.g. "Asia/Shanghai".
    pub time_zone: String,
    #[serde(default = "monday_to_friday")]
    pub days: Vec<Weekday>,
    /// Local time the working day starts ("09:00").
    pub start: Time,
    /// Local time it ends ("18:00"); after `start`.
    pub end: Time,
    /// Dates that are not worked although their weekday is.
    #[serde(default)]
    pub holidays: Vec<Date>,
    /// Dates that are worked although their weekday is not.
    #[serde(default)]
    pub working_days: Vec<Date>,
}

fn monday_to_friday() -> Vec<Weekday> {
    use Weekday::*;
    vec![Monday, Tuesday, Wednesday, Thursday, Friday]
}

/// Looks a zone up; names are checked by `validate` at load, so UTC is only a
/// last resort that keeps a clock running rather than stopping it.
pub(crate) fn zone(name: &str) -> TimeZone {
    TimeZone::get(name).unwrap_or(TimeZone::UTC)
}

/// Unix ms to a timestamp, clamped into jiff's range.
pub(crate) fn timestamp(ms: i64) -> Timestamp {
    let ms = ms.clamp(
        Timestamp::MIN.as_millisecond(),
        Timestamp::MAX.as_millisecond(),
    );
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

impl Calendar {
    /// Every problem with this calendar, each naming what is wrong.
    pub fn validate(&self) -> Vec<String> {
        let Calendar::BusinessHours(hours) = self else {
            return Vec::new();
        };
        let mut problems = Vec::new();
        if let Err(e) = TimeZone::get(&hours.time_zone) {
            problems.push(format!(
                "calendar time_zone {:?}: {e} (expected an IANA name such as \"Asia/Shanghai\")",
                hours.time_zone
            ));
        }
        if hours.start >= hours.end {
            problems.push(format!(
                "calendar hours {}–{}: start must be before end (overnight hours are not supported)",
                hours.start, hours.end
            ));
        }
        if hours.days.is_empty() && hours.working_days.is_empty() {
            problems.push("calendar has no working days".to_string());
        }
        problems
    }

    /// Working time in `[from, to)`, in ms (0 when `to <= from`).
    pub fn working_ms(&self, from: i64, to: i64) -> i64 {
        if to <= from {
            return 0;
        }
        match self {
            Calendar::AlwaysOn => to - from,
            Calendar::BusinessHours(hours) => Windows::new(hours, from)
                .take_while(|(start, _)| *start < to)
                .map(|(start, end)| end.min(to) - start.max(from))
                .filter(|ms| *ms > 0)
                .sum(),
        }
    }

    /// The instant at which `amount` ms of working time have passed since
    /// `from`; `i64::MAX` when the calendar has none within its horizon.
    pub fn add_working(&self, from: i64, amount: i64) -> i64 {
        if amount <= 0 {
            return from;
        }
        match self {
            Calendar::AlwaysOn => from.saturating_add(amount),
            Calendar::BusinessHours(hours) => {
                let mut left = amount;
                for (start, end) in Windows::new(hours, from) {
                    let start = start.max(from);
                    if end <= start {
                        continue;
                    }
                    if end - start >= left {
                        return start + left;
                    }
                    left -= end - start;
                }
                i64::MAX
            }
        }
    }
}

/// The working windows `[start, end)` (Unix ms) of a business-hours calendar,
/// in order, from the day of `from` on (the first may end before `from`).
struct Windows<'a> {
    hours: &'a BusinessHours,
    tz: TimeZone,
    holidays: BTreeSet<Date>,
    extra: BTreeSet<Date>,
    day: Option<Date>,
    left: i64,
}

impl<'a> Windows<'a> {
    fn new(hours: &'a BusinessHours, from: i64) -> Self {
        let tz = zone(&hours.time_zone);
        let day = timestamp(from).to_zoned(tz.clone()).date();
        Windows {
            hours,
            tz,
            holidays: hours.holidays.iter().copied().collect(),
            extra: hours.working_days.iter().copied().collect(),
            day: Some(day),
            left: HORIZON_DAYS,
        }
    }

    fn is_working(&self, day: Date) -> bool {
        self.extra.contains(&day)
            || (self.hours.days.contains(&Weekday::of(day)) && !self.holidays.contains(&day))
    }

    fn instant(&self, day: Date, at: Time) -> Option<i64> {
        // A start inside a daylight-saving gap moves to the first instant
        // after it (jiff's "compatible" choice), as people would expect.
        let zoned = day.to_datetime(at).to_zoned(self.tz.clone()).ok()?;
        Some(zoned.timestamp().as_millisecond())
    }
}

impl Iterator for Windows<'_> {
    type Item = (i64, i64);

    fn next(&mut self) -> Option<(i64, i64)> {
        while self.left > 0 {
            self.left -= 1;
            let day = self.day?;
            self.day = day.tomorrow().ok();
            if !self.is_working(day) {
                continue;
            }
            let start = self.instant(day, self.hours.start)?;
            let end = self.instant(day, self.hours.end)?;
            return Some((start, end));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    const H: i64 = 3_600_000;

    fn at(text: &str) -> i64 {
        let zoned: jiff::Zoned = text.parse().unwrap();
        zoned.timestamp().as_millisecond()
    }

    fn shanghai_office() -> Calendar {
        Calendar::BusinessHours(BusinessHours {
            time_zone: "Asia/Shanghai".into(),
            days: monday_to_friday(),
            start: Time::constant(9, 0, 0, 0),
            end: Time::constant(18, 0, 0, 0),
            // Monday 2025-06-02 is the Dragon Boat Festival holiday.
            holidays: vec![date(2025, 6, 2)],
            working_days: vec![],
        })
    }

    #[test]
    fn always_on_counts_every_millisecond() {
        let cal = Calendar::AlwaysOn;
        assert_eq!(cal.working_ms(1000, 5000), 4000);
        assert_eq!(cal.add_working(1000, 2 * H), 1000 + 2 * H);
        assert!(cal.validate().is_empty());
    }

    #[test]
    fn business_hours_skip_weekend_and_holiday() {
        let cal = shanghai_office();
        assert!(cal.validate().is_empty());
        // Friday 17:00: one working hour left that day; Sat, Sun off, Mon a
        // holiday; the remaining 3 h of a 4 h clock fall on Tuesday morning.
        let friday = at("2025-05-30T17:00:00[Asia/Shanghai]");
        let due = cal.add_working(friday, 4 * H);
        assert_eq!(due, at("2025-06-03T12:00:00[Asia/Shanghai]"));
        assert_eq!(cal.working_ms(friday, due), 4 * H);
        // The whole weekend and holiday count for nothing.
        let saturday = at("2025-05-31T10:00:00[Asia/Shanghai]");
        let monday_night = at("2025-06-02T23:00:00[Asia/Shanghai]");
        assert_eq!(cal.working_ms(saturday, monday_night), 0);
        // A clock started on Sunday begins counting on Tuesday at 09:00.
        assert_eq!(
            cal.add_working(saturday, 1),
            at("2025-06-03T09:00:00[Asia/Shanghai]") + 1
        );
    }

    #[test]
    fn make_up_working_day_counts() {
        let mut cal = shanghai_office();
        if let Calendar::BusinessHours(h) = &mut cal {
            h.working_days.push(date(2025, 5, 31));
        }
        let friday = at("2025-05-30T17:00:00[Asia/Shanghai]");
        assert_eq!(
            cal.add_working(friday, 2 * H),
            at("2025-05-31T10:00:00[Asia/Shanghai]")
        );
    }

    #[test]
    fn bad_calendar_names_each_problem() {
        let cal = Calendar::BusinessHours(BusinessHours {
            time_zone: "Mars/Olympus".into(),
            days: vec![],
            start: Time::constant(18, 0, 0, 0),
            end: Time::constant(9, 0, 0, 0),
            holidays: vec![],
            working_days: vec![],
        });
        let problems = cal.validate();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("Mars/Olympus"));
    }

    #[test]
    fn calendar_reads_from_toml() {
        let cal: Calendar = toml::from_str(
            "type = \"business_hours\"\ntime_zone = \"Asia/Shanghai\"\nstart = \"09:00\"\nend = \"18:00\"\nholidays = [\"2025-06-02\"]\n",
        )
        .unwrap();
        assert_eq!(cal, shanghai_office());
        let always: Calendar = toml::from_str("type = \"24x7\"").unwrap();
        assert_eq!(always, Calendar::AlwaysOn);
    }
}
