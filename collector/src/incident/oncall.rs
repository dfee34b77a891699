//! On-call schedules: who answers at a given instant. A schedule has layers
//! (primary, secondary), each a rotation of members handing over at a local
//! time in a time zone; overrides put someone on a layer for a period (when
//! they overlap, the latest created wins); holiday-duty rosters (重大节日保障)
//! put their own rotations in charge during their dates.
//!
//! Precedence at an instant, per layer: an override, else the holiday roster
//! covering that date (if it has the layer and someone on it), else the
//! regular rotation. Overrides come first because they are the most specific
//! and most recent human decision (someone swapping a shift on a holiday too).
//!
//! Handoffs are wall-clock times: a daily rotation at 09:00 in Europe/Berlin
//! hands over at 09:00 on the day daylight saving starts, so that shift lasts
//! 23 hours. Shifts are stepped in civil time from the start date's handoff.

use std::time::Duration;

use jiff::civil::{Date, DateTime, Time};
use jiff::SignedDuration;
use patrol_shared::config as cfg;
use serde::{Deserialize, Serialize};

use super::calendar::{timestamp, zone};

/// A layer of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Primary,
    Secondary,
}

impl Role {
    /// Its name in config and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Secondary => "secondary",
        }
    }

    /// From its name; None for anything else.
    pub fn parse(word: &str) -> Option<Role> {
        match word {
            "primary" => Some(Role::Primary),
            "secondary" => Some(Role::Secondary),
            _ => None,
        }
    }
}

/// Members taking turns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    pub role: Role,
    pub members: Vec<String>,
    /// "1d", "12h", "7d".
    #[serde(with = "cfg::duration")]
    pub shift: Duration,
    /// Local time of the handoff ("09:00").
    pub handoff: Time,
    /// The first shift starts on this date at `handoff`.
    pub start_date: Date,
}

/// Someone standing in on a layer for a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    pub role: Role,
    pub who: String,
    /// Unix ms, `[starts_at, ends_at)`.
    pub starts_at: i64,
    pub ends_at: i64,
    /// Unix ms; among overlapping overrides the latest created wins.
    pub created_at: i64,
}

/// A dedicated duty roster for holiday dates (inclusive, local).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HolidayRoster {
    pub name: String,
    pub from: Date,
    pub to: Date,
    pub rotations: Vec<Rotation>,
}

/// One on-call schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub name: String,
    /// IANA name; handoffs and roster dates are local to it.
    pub time_zone: String,
    pub rotations: Vec<Rotation>,
    #[serde(default)]
    pub overrides: Vec<Override>,
    #[serde(default)]
    pub holiday_rosters: Vec<HolidayRoster>,
}

/// Who is on a layer, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnCall {
    pub role: Role,
    pub who: String,
    pub source: Source,
}

/// Which part of the schedule put someone on call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Source {
    Override,
    HolidayRoster { name: String },
    Rotation,
}

/// A period in which a layer has nobody.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub role: Role,
    pub from: i64,
    pub to: i64,
}

/// A stretch of a layer with the same person on call (None: nobody).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shift {
    pub on_call: Option<OnCall>,
    pub from: i64,
    pub to: i64,
}

/// The default look-ahead for coverage gaps.
pub const GAP_HORIZON_MS: i64 = 14 * 24 * 3_600_000;

impl Rotation {
    fn validate(&self, at: &str, problems: &mut Vec<String>) {
        if self.members.is_empty() {
            problems.push(format!("{at}: a rotation needs at least one member"));
        }
        if self.shift < Duration::from_secs(60) {
            problems.push(format!(
                "{at}: shift {:?} is shorter than a minute",
                self.shift
            ));
        }
    }

    fn origin(&self) -> DateTime {
        self.start_date.to_datetime(self.handoff)
    }

    fn shift_span(&self) -> SignedDuration {
        SignedDuration::try_from(self.shift).unwrap_or(SignedDuration::MAX)
    }

    /// The shift number covering a local wall-clock time (None before start).
    fn shift_at(&self, local: DateTime) -> Option<i64> {
        let since = local.duration_since(self.origin());
        if since.is_negative() {
            return None;
        }
        let shift = self.shift_span().as_millis().max(1);
        i64::try_from(since.as_millis() / shift).ok()
    }

    fn member(&self, local: DateTime) -> Option<&str> {
        let k = self.shift_at(local)?;
        let n = i64::try_from(self.members.len()).ok().filter(|n| *n > 0)?;
        let i = usize::try_from(k % n).ok()?;
        self.members.get(i).map(String::as_str)
    }

    /// Local start of shift `k`.
    fn boundary(&self, k: i64) -> Option<DateTime> {
        let span = self.shift_span().checked_mul(i32::try_from(k).ok()?)?;
        self.origin().checked_add(span).ok()
    }
}

impl Schedule {
    /// Every problem, each saying where.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let at = format!("schedule {:?}", self.name);
        if let Err(e) = jiff::tz::TimeZone::get(&self.time_zone) {
            problems.push(format!("{at}: time_zone {:?}: {e}", self.time_zone));
        }
        if !self.rotations.iter().any(|r| r.role == Role::Primary) {
            problems.push(format!("{at}: no primary rotation"));
        }
        for (i, r) in self.rotations.iter().enumerate() {
            r.validate(&format!("{at} rotations[{i}]"), &mut problems);
        }
        for (i, o) in self.overrides.iter().enumerate() {
            if o.ends_at <= o.starts_at {
                problems.push(format!(
                    "{at} overrides[{i}] ({}): ends before it starts",
                    o.who
                ));
            }
        }
        for h in &self.holiday_rosters {
            let at = format!("{at} holiday roster {:?}", h.name);
            if h.to < h.from {
                problems.push(format!("{at}: {} is before {}", h.to, h.from));
            }
            for (i, r) in h.rotations.iter().enumerate() {
                r.validate(&format!("{at} rotations[{i}]"), &mut problems);
            }
        }
        problems
    }

    /// Who is on a layer at `t` (Unix ms), or None: a gap.
    pub fn on_call(&self, role: Role, t: i64) -> Option<OnCall> {
        let found = |who: &str, source| OnCall {
            role,
            who: who.to_string(),
            source,
        };
        let winner = self
            .overrides
            .iter()
            .enumerate()
            .filter(|(_, o)| o.role == role && o.starts_at <= t && t < o.ends_at)
            .max_by_key(|(i, o)| (o.created_at, *i));
        if let Some((_, o)) = winner {
            return Some(found(&o.who, Source::Override));
        }
        let local = timestamp(t).to_zoned(zone(&self.time_zone)).datetime();
        for roster in &self.holiday_rosters {
            if roster.from <= local.date() && local.date() <= roster.to {
                let who = roster
                    .rotations
                    .iter()
                    .filter(|r| r.role == role)
                    .find_map(|r| r.member(local));
                if let Some(who) = who {
                    let source = Source::HolidayRoster {
                        name: roster.name.clone(),
                    };
                    return Some(found(who, source));
                }
            }
        }
        self.rotations
            .iter()
            .filter(|r| r.role == role)
            .find_map(|r| r.member(local))
            .map(|who| found(who, Source::Rotation))
    }

    /// The layers this schedule has.
    pub fn roles(&self) -> Vec<Role> {
        let mut roles: Vec<Role> = self.rotations.iter().map(|r| r.role).collect();
        roles.sort();
        roles.dedup();
        roles
    }

    /// Periods in `[from, to)` where a layer of this schedule has nobody.
    pub fn gaps(&self, from: i64, to: i64) -> Vec<Gap> {
        let changes = self.changes(from, to);
        let mut gaps: Vec<Gap> = Vec::new();
        for role in self.roles() {
            for pair in changes.windows(2) {
                let (start, end) = (pair[0], pair[1]);
                if self.on_call(role, start).is_some() {
                    continue;
                }
                match gaps.last_mut() {
                    Some(g) if g.role == role && g.to == start => g.to = end,
                    _ => gaps.push(Gap {
                        role,
                        from: start,
                        to: end,
                    }),
                }
            }
        }
        gaps
    }

    /// Who is on a layer through `[from, to)`: one entry per stretch with
    /// the same person for the same reason (`on_call` None: a gap).
    pub fn shifts(&self, role: Role, from: i64, to: i64) -> Vec<Shift> {
        let mut out: Vec<Shift> = Vec::new();
        for pair in self.changes(from, to).windows(2) {
            let (start, end) = (pair[0], pair[1]);
            let on_call = self.on_call(role, start);
            match out.last_mut() {
                Some(last) if last.on_call == on_call && last.to == start => last.to = end,
                _ => out.push(Shift {
                    on_call,
                    from: start,
                    to: end,
                }),
            }
        }
        out
    }

    /// Every instant in `[from, to]` at which who is on call may change.
    fn changes(&self, from: i64, to: i64) -> Vec<i64> {
        let tz = zone(&self.time_zone);
        let instant = |local: DateTime| {
            local
                .to_zoned(tz.clone())
                .ok()
                .map(|z| z.timestamp().as_millisecond())
        };
        let mut points = vec![from, to];
        for o in &self.overrides {
            points.extend([o.starts_at, o.ends_at]);
        }
        let local_from = timestamp(from).to_zoned(tz.clone()).datetime();
        let local_to = timestamp(to).to_zoned(tz.clone()).datetime();
        let rosters = self.holiday_rosters.iter();
        for h in rosters.clone() {
            let end = h.to.tomorrow().unwrap_or(h.to);
            points.extend(
                [h.from, end]
                    .into_iter()
                    .filter_map(|d| instant(d.to_datetime(Time::midnight()))),
            );
        }
        let all = self
            .rotations
            .iter()
            .chain(rosters.flat_map(|h| h.rotations.iter()));
        for r in all {
            let first = r.shift_at(local_from).unwrap_or(0);
            let last = r.shift_at(local_to).unwrap_or(-1);
            for k in first..=last + 1 {
                points.extend(r.boundary(k).and_then(instant));
            }
        }
        points.retain(|p| (from..=to).contains(p));
        points.sort_unstable();
        points.dedup();
        points
    }
}

/// Unix ms of a local wall-clock time in a zone (test and API helper).
pub fn local_ms(time_zone: &str, local: DateTime) -> Option<i64> {
    local
        .to_zoned(zone(time_zone))
        .ok()
        .map(|z| z.timestamp().as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::{date, time};

    const H: i64 = 3_600_000;

    fn berlin(local: &str) -> i64 {
        let z: jiff::Zoned = format!("{local}[Europe/Berlin]").parse().unwrap();
        z.timestamp().as_millisecond()
    }

    fn daily(role: Role, members: &[&str], start: Date) -> Rotation {
        Rotation {
            role,
            members: members.iter().map(|m| m.to_string()).collect(),
            shift: Duration::from_secs(86_400),
            handoff: time(9, 0, 0, 0),
            start_date: start,
        }
    }

    fn schedule() -> Schedule {
        Schedule {
            name: "ops".into(),
            time_zone: "Europe/Berlin".into(),
            rotations: vec![
                daily(Role::Primary, &["anna", "ben", "chen"], date(2025, 3, 24)),
                daily(Role::Secondary, &["dora", "emil"], date(2025, 3, 24)),
            ],
            overrides: vec![],
            holiday_rosters: vec![],
        }
    }

    fn who(s: &Schedule, role: Role, t: i64) -> Option<String> {
        s.on_call(role, t).map(|o| o.who)
    }

    #[test]
    fn rotation_hands_off_at_local_time_across_dst() {
        let s = schedule();
        assert!(s.validate().is_empty(), "{:?}", s.validate());
        // 2025-03-30: Berlin moves from CET (+1) to CEST (+2) at 02:00.
        let before = berlin("2025-03-30T08:59:59");
        let after = berlin("2025-03-30T09:00:00");
        // Shift 5 (03-29 09:00 → 03-30 09:00) is chen's (5 % 3 = 2); shift 6,
        // anna's, begins at 09:00 local on the day the clocks went forward.
        assert_eq!(who(&s, Role::Primary, before).as_deref(), Some("chen"));
        assert_eq!(who(&s, Role::Primary, after).as_deref(), Some("anna"));
        // The handoff is 07:00 UTC now, not 08:00 UTC as the day before: that
        // shift lasted 23 hours.
        assert_eq!(after - berlin("2025-03-29T09:00:00"), 23 * H);
        assert_eq!(after % (24 * H), 7 * H);
        // Before the start date nobody is on call.
        assert_eq!(who(&s, Role::Primary, berlin("2025-03-24T08:00:00")), None);
    }

    #[test]
    fn overlapping_overrides_latest_created_wins() {
        let mut s = schedule();
        s.overrides = vec![
            Override {
                role: Role::Primary,
                who: "fritz".into(),
                starts_at: berlin("2025-04-01T00:00:00"),
                ends_at: berlin("2025-04-03T00:00:00"),
                created_at: 2,
            },
            Override {
                role: Role::Primary,
                who: "gina".into(),
                starts_at: berlin("2025-04-02T00:00:00"),
                ends_at: berlin("2025-04-04T00:00:00"),
                created_at: 1,
            },
        ];
        assert_eq!(
            who(&s, Role::Primary, berlin("2025-04-01T12:00:00")).as_deref(),
            Some("fritz")
        );
        // Both cover the 2nd; fritz's was created later.
        assert_eq!(
            who(&s, Role::Primary, berlin("2025-04-02T12:00:00")).as_deref(),
            Some("fritz")
        );
        assert_eq!(
            who(&s, Role::Primary, berlin("2025-04-03T12:00:00")).as_deref(),
            Some("gina")
        );
        let after = s
            .on_call(Role::Primary, berlin("2025-04-04T12:00:00"))
            .unwrap();
        assert_eq!(after.source, Source::Rotation);
        // The secondary layer is not touched.
        assert_eq!(
            who(&s, Role::Secondary, berlin("2025-04-02T12:00:00")).as_deref(),
            Some("emil")
        );
    }

    #[test]
    fn holiday_roster_takes_over_during_its_dates() {
        let mut s = schedule();
        s.holiday_rosters.push(HolidayRoster {
            name: "Easter".into(),
            from: date(2025, 4, 18),
            to: date(2025, 4, 21),
            rotations: vec![Rotation {
                handoff: time(0, 0, 0, 0),
                shift: Duration::from_secs(12 * 3600),
                ..daily(Role::Primary, &["holly", "ivan"], date(2025, 4, 18))
            }],
        });
        let at = |local: &str| s.on_call(Role::Primary, berlin(local)).unwrap();
        assert_eq!(at("2025-04-17T23:59:00").source, Source::Rotation);
        let first = at("2025-04-18T00:00:00");
        assert_eq!(
            (first.who.as_str(), first.source),
            (
                "holly",
                Source::HolidayRoster {
                    name: "Easter".into()
                }
            )
        );
        assert_eq!(at("2025-04-18T12:00:00").who, "ivan");
        assert_eq!(at("2025-04-21T23:59:00").who, "ivan");
        assert_eq!(at("2025-04-22T00:00:00").source, Source::Rotation);
        // The roster has no secondary layer: the regular one stays on.
        assert_eq!(
            s.on_call(Role::Secondary, berlin("2025-04-19T10:00:00"))
                .unwrap()
                .source,
            Source::Rotation
        );
    }

    #[test]
    fn coverage_gaps_are_found_ahead() {
        let mut s = schedule();
        // The secondary rotation runs out: it starts only on 2025-04-05.
        s.rotations[1].start_date = date(2025, 4, 5);
        s.overrides.push(Override {
            role: Role::Secondary,
            who: "fritz".into(),
            starts_at: berlin("2025-04-02T09:00:00"),
            ends_at: berlin("2025-04-03T09:00:00"),
            created_at: 1,
        });
        let from = berlin("2025-04-01T00:00:00");
        let gaps = s.gaps(from, from + GAP_HORIZON_MS);
        assert_eq!(
            gaps,
            [
                Gap {
                    role: Role::Secondary,
                    from,
                    to: berlin("2025-04-02T09:00:00")
                },
                Gap {
                    role: Role::Secondary,
                    from: berlin("2025-04-03T09:00:00"),
                    to: berlin("2025-04-05T09:00:00")
                },
            ]
        );
    }

    #[test]
    fn schedule_reads_from_toml_and_reports_problems() {
        let s: Schedule = toml::from_str(
            r#"
name = "ops"
time_zone = "Asia/Shanghai"
[[rotations]]
role = "secondary"
members = []
shift = "1d"
handoff = "09:00"
start_date = "2025-01-01"
"#,
        )
        .unwrap();
        let problems = s.validate();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("no primary rotation"));
    }

    #[test]
    fn local_ms_converts_wall_time() {
        let t = local_ms("Europe/Berlin", date(2025, 3, 30).at(9, 0, 0, 0)).unwrap();
        assert_eq!(t, berlin("2025-03-30T09:00:00"));
    }

    #[test]
    fn shifts_follow_the_rotation_and_an_override() {
        let mut s = Schedule {
            name: "ops".into(),
            time_zone: "Europe/Berlin".into(),
            rotations: vec![daily(Role::Primary, &["anna", "ben"], date(2025, 6, 1))],
            overrides: vec![],
            holiday_rosters: vec![],
        };
        let from = berlin("2025-06-02T09:00:00");
        s.overrides.push(Override {
            role: Role::Primary,
            who: "carl".into(),
            starts_at: from + 2 * H,
            ends_at: from + 4 * H,
            created_at: 0,
        });
        let shifts = s.shifts(Role::Primary, from, from + 48 * H);
        let who: Vec<(&str, i64, i64)> = shifts
            .iter()
            .map(|x| {
                let who = x.on_call.as_ref().map_or("-", |o| o.who.as_str());
                (who, (x.from - from) / H, (x.to - from) / H)
            })
            .collect();
        assert_eq!(
            who,
            [
                ("ben", 0, 2),
                ("carl", 2, 4),
                ("ben", 4, 24),
                ("anna", 24, 48)
            ]
        );
    }
}
