//! Schedules: a rotation of people handing over every `Nh`, `Nd` or `Nw` from a first handoff,
//! and the overrides laid over it; who is on call at an instant, until when, and who is next.

use chrono::{DateTime, Duration, FixedOffset, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

pub use crate::store::oncall::Override;

/// A `schedules` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub name: String,
    /// The zone `d` and `w` rotations count wall-clock days in.
    #[serde(deserialize_with = "zone")]
    pub time_zone: Tz,
    pub rotation: Rotation,
}

fn zone<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Tz, D::Error> {
    match super::timeinterval::location(d)? {
        Some(tz) => Ok(tz),
        None => Err(serde::de::Error::custom("a time zone is required")),
    }
}

/// Who takes turns, how often, from when.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    pub every: Every,
    /// The first shift starts here (RFC 3339).
    pub handoff: DateTime<FixedOffset>,
    pub people: Vec<String>,
}

/// A shift's length: absolute hours, or wall-clock days or weeks in the schedule's zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Every {
    Hours(u32),
    Days(u32),
}

/// Longest shift accepted: ten years keeps every instant the rotation computes in range.
pub const MAX_SHIFT_DAYS: u32 = 3660;

impl TryFrom<String> for Every {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let bad =
            || format!("{s:?} is not a shift length: a whole number then h, d or w (8h, 1d, 1w)");
        let unit = s.chars().last().ok_or_else(bad)?;
        let n: u32 = s[..s.len() - unit.len_utf8()].parse().map_err(|_| bad())?;
        if n == 0 {
            return Err(format!("{s:?}: a shift must be longer than zero"));
        }
        let every = match unit {
            'h' => Every::Hours(n),
            'd' => Every::Days(n),
            'w' => n.checked_mul(7).map(Every::Days).ok_or_else(bad)?,
            _ => return Err(bad()),
        };
        let days = match every {
            Every::Hours(h) => h.div_ceil(24),
            Every::Days(d) => d,
        };
        if days > MAX_SHIFT_DAYS {
            return Err(format!("{s:?}: a shift may last at most {MAX_SHIFT_DAYS}d"));
        }
        Ok(every)
    }
}

/// Who is on call at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnCall {
    /// Nobody before the first handoff (unless an override covers it).
    pub person: Option<String>,
    /// When that changes; `None` when it never does.
    pub until: Option<DateTime<Utc>>,
    /// Who is on call from `until`.
    pub next: Option<String>,
}

/// The local wall-clock time in `tz` as an instant: the earlier of a repeated hour, and the
/// first instant after a skipped one (a handoff at 02:30 on a spring-forward night is at 03:00).
fn instant(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
        LocalResult::None => {
            let mut probe = local;
            for _ in 0..(24 * 4) {
                probe += Duration::minutes(15);
                if let LocalResult::Single(t) | LocalResult::Ambiguous(t, _) =
                    tz.from_local_datetime(&probe)
                {
                    // Back to the exact minute the gap ends at.
                    let t = t.with_timezone(&Utc);
                    let mut earliest = t;
                    for m in 1..=15 {
                        let c = t - Duration::minutes(m);
                        if c.with_timezone(&tz).naive_local() >= local {
                            earliest = c;
                        }
                    }
                    return earliest;
                }
            }
            Utc.from_utc_datetime(&local)
        }
    }
}

impl Schedule {
    /// When shift `k` (0 = the first handoff) starts.
    pub fn shift_start(&self, k: i64) -> DateTime<Utc> {
        let handoff = self.rotation.handoff.with_timezone(&Utc);
        match self.rotation.every {
            Every::Hours(h) => handoff
                .checked_add_signed(Duration::hours(h as i64 * k))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            Every::Days(d) => {
                let local = handoff.with_timezone(&self.time_zone).naive_local();
                match local.checked_add_signed(Duration::days(d as i64 * k)) {
                    Some(local) => instant(self.time_zone, local),
                    None => DateTime::<Utc>::MAX_UTC,
                }
            }
        }
    }

    /// The shift running at `at` (`None` before the first handoff): its number.
    pub fn shift_at(&self, at: DateTime<Utc>) -> Option<i64> {
        let handoff = self.rotation.handoff.with_timezone(&Utc);
        if at < handoff {
            return None;
        }
        let hours = match self.rotation.every {
            Every::Hours(h) => h as i64,
            Every::Days(d) => d as i64 * 24,
        };
        // A first guess by absolute time, corrected by the wall-clock starts (DST moves them
        // by an hour or so, never by a shift).
        let mut k = (at - handoff).num_seconds() / (hours * 3600);
        while k > 0 && self.shift_start(k) > at {
            k -= 1;
        }
        while self.shift_start(k + 1) <= at {
            k += 1;
        }
        Some(k)
    }

    /// The rotation's person at `at`, without overrides.
    pub fn rotation_at(&self, at: DateTime<Utc>) -> Option<&str> {
        let people = &self.rotation.people;
        if people.is_empty() {
            return None;
        }
        let k = self.shift_at(at)?;
        Some(people[(k as usize) % people.len()].as_str())
    }

    /// Who is on call at `at`, with the overrides of this schedule applied.
    pub fn who(&self, overrides: &[Override], at: DateTime<Utc>) -> Option<String> {
        let base = self.rotation_at(at);
        overrides
            .iter()
            .filter(|o| o.schedule == self.name && o.start <= at && at < o.end)
            .filter(|o| match &o.replaces {
                None => true,
                Some(r) => Some(r.as_str()) == base,
            })
            .max_by_key(|o| o.id)
            .map(|o| o.person.clone())
            .or_else(|| base.map(str::to_string))
    }

    /// Who is on call at `at`, until when, and who follows.
    pub fn on_call(&self, overrides: &[Override], at: DateTime<Utc>) -> OnCall {
        let person = self.who(overrides, at);
        // The answer can only change at a handoff or at an override's start or end.
        let mut changes: Vec<DateTime<Utc>> = overrides
            .iter()
            .filter(|o| o.schedule == self.name)
            .flat_map(|o| [o.start, o.end])
            .filter(|t| *t > at)
            .collect();
        let first = match self.shift_at(at) {
            Some(k) => k + 1,
            None => 0,
        };
        // One round of the rotation shows every person; past the last override nothing else
        // can happen, so a round after it is enough too.
        let rounds = self.rotation.people.len().max(1) as i64;
        let last_override = changes.iter().max().copied();
        let mut k = first;
        loop {
            let t = self.shift_start(k);
            changes.push(t);
            k += 1;
            if k - first > rounds && last_override.is_none_or(|l| t > l) {
                break;
            }
        }
        changes.sort();
        changes.dedup();
        for t in changes {
            let then = self.who(overrides, t);
            if then != person {
                return OnCall {
                    person,
                    until: Some(t),
                    next: then,
                };
            }
        }
        OnCall {
            person,
            until: None,
            next: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        match DateTime::parse_from_rfc3339(s) {
            Ok(t) => t.with_timezone(&Utc),
            Err(e) => panic!("{s}: {e}"),
        }
    }

    fn schedule(zone: &str, every: &str, handoff: &str, people: &[&str]) -> Schedule {
        let yaml = format!(
            "name: s\ntime_zone: {zone}\nrotation: {{every: {every}, handoff: '{handoff}', people: [{}]}}\n",
            people.join(", ")
        );
        match yaml_serde::from_str(&yaml) {
            Ok(s) => s,
            Err(e) => panic!("{yaml}: {e}"),
        }
    }

    fn cover(id: i64, person: &str, replaces: Option<&str>, start: &str, end: &str) -> Override {
        Override {
            id,
            schedule: "s".into(),
            person: person.into(),
            replaces: replaces.map(str::to_string),
            start: utc(start),
            end: utc(end),
        }
    }

    #[test]
    fn shift_lengths_are_whole_hours_days_or_weeks() {
        assert_eq!(Every::try_from("8h".to_string()), Ok(Every::Hours(8)));
        assert_eq!(Every::try_from("1d".to_string()), Ok(Every::Days(1)));
        assert_eq!(Every::try_from("2w".to_string()), Ok(Every::Days(14)));
        for bad in ["", "d", "1m", "1.5d", "-1d", "1 d"] {
            assert_eq!(
                Every::try_from(bad.to_string()),
                Err(format!(
                    "{bad:?} is not a shift length: a whole number then h, d or w (8h, 1d, 1w)"
                ))
            );
        }
        assert_eq!(
            Every::try_from("4000000000d".to_string()),
            Err("\"4000000000d\": a shift may last at most 3660d".into())
        );
        assert_eq!(
            Every::try_from("87840h".to_string()),
            Ok(Every::Hours(87840))
        );
        assert_eq!(
            Every::try_from("0w".to_string()),
            Err("\"0w\": a shift must be longer than zero".into())
        );
    }

    #[test]
    fn weekly_rotation_hands_over_at_the_handoff_time() {
        let s = schedule(
            "Asia/Shanghai",
            "1w",
            "2026-01-05T10:00:00+08:00",
            &["zhangsan", "lisi", "wangwu"],
        );
        assert_eq!(
            s.rotation_at(utc("2026-01-05T09:59:59+08:00")),
            None,
            "before the first handoff"
        );
        assert_eq!(
            s.rotation_at(utc("2026-01-05T10:00:00+08:00")),
            Some("zhangsan")
        );
        assert_eq!(
            s.rotation_at(utc("2026-01-12T09:59:59+08:00")),
            Some("zhangsan")
        );
        assert_eq!(
            s.rotation_at(utc("2026-01-12T10:00:00+08:00")),
            Some("lisi")
        );
        assert_eq!(
            s.rotation_at(utc("2026-01-19T10:00:00+08:00")),
            Some("wangwu")
        );
        assert_eq!(
            s.rotation_at(utc("2026-01-26T10:00:00+08:00")),
            Some("zhangsan")
        );
        assert_eq!(
            s.on_call(&[], utc("2026-01-13T00:00:00Z")),
            OnCall {
                person: Some("lisi".into()),
                until: Some(utc("2026-01-19T10:00:00+08:00")),
                next: Some("wangwu".into()),
            }
        );
        assert_eq!(
            s.on_call(&[], utc("2026-01-01T00:00:00Z")),
            OnCall {
                person: None,
                until: Some(utc("2026-01-05T10:00:00+08:00")),
                next: Some("zhangsan".into()),
            }
        );
    }

    #[test]
    fn days_count_wall_clock_days_across_dst_and_hours_count_absolute_hours() {
        // New York moves to EDT on 2026-03-08 at 02:00.
        let daily = schedule(
            "America/New_York",
            "1d",
            "2026-03-07T09:00:00-05:00",
            &["a", "b"],
        );
        assert_eq!(daily.shift_start(1), utc("2026-03-08T09:00:00-04:00"));
        assert_eq!(
            daily.rotation_at(utc("2026-03-08T13:30:00Z")),
            Some("b"),
            "09:30 EDT"
        );
        assert_eq!(
            daily.rotation_at(utc("2026-03-08T12:59:59Z")),
            Some("a"),
            "08:59 EDT"
        );
        // Back to EST on 2026-11-01: 09:00 is then 14:00Z.
        let weekly = schedule(
            "America/New_York",
            "1w",
            "2026-10-26T09:00:00-04:00",
            &["a", "b"],
        );
        assert_eq!(weekly.shift_start(1), utc("2026-11-02T09:00:00-05:00"));
        assert_eq!(weekly.rotation_at(utc("2026-11-02T13:30:00Z")), Some("a"));
        assert_eq!(weekly.rotation_at(utc("2026-11-02T14:00:00Z")), Some("b"));
        let hourly = schedule(
            "America/New_York",
            "12h",
            "2026-03-07T21:00:00-05:00",
            &["a", "b"],
        );
        assert_eq!(
            hourly.shift_start(1),
            utc("2026-03-08T14:00:00Z"),
            "10:00 EDT, not 09:00"
        );
        assert_eq!(hourly.rotation_at(utc("2026-03-08T13:59:59Z")), Some("a"));
        assert_eq!(hourly.rotation_at(utc("2026-03-08T14:00:00Z")), Some("b"));
    }

    #[test]
    fn a_handoff_in_a_skipped_hour_moves_to_the_hours_end() {
        let s = schedule(
            "America/New_York",
            "1d",
            "2026-03-07T02:30:00-05:00",
            &["a", "b"],
        );
        assert_eq!(s.shift_start(1), utc("2026-03-08T03:00:00-04:00"));
        assert_eq!(s.shift_start(2), utc("2026-03-09T02:30:00-04:00"));
        assert_eq!(s.rotation_at(utc("2026-03-08T06:59:59Z")), Some("a"));
        assert_eq!(s.rotation_at(utc("2026-03-08T07:00:00Z")), Some("b"));
    }

    #[test]
    fn overrides_cover_whoever_or_the_person_they_replace_and_the_latest_wins() {
        let s = schedule("UTC", "1d", "2026-01-01T00:00:00Z", &["a", "b"]);
        // a: Jan 1, b: Jan 2, a: Jan 3 ...
        let any = cover(1, "c", None, "2026-01-01T12:00:00Z", "2026-01-02T12:00:00Z");
        assert_eq!(
            s.who(std::slice::from_ref(&any), utc("2026-01-01T12:00:00Z"))
                .as_deref(),
            Some("c")
        );
        assert_eq!(
            s.who(std::slice::from_ref(&any), utc("2026-01-02T06:00:00Z"))
                .as_deref(),
            Some("c")
        );
        assert_eq!(
            s.who(std::slice::from_ref(&any), utc("2026-01-02T12:00:00Z"))
                .as_deref(),
            Some("b"),
            "end excluded"
        );
        let only_b = cover(
            2,
            "d",
            Some("b"),
            "2026-01-01T00:00:00Z",
            "2026-01-03T00:00:00Z",
        );
        assert_eq!(
            s.who(std::slice::from_ref(&only_b), utc("2026-01-01T06:00:00Z"))
                .as_deref(),
            Some("a")
        );
        assert_eq!(
            s.who(std::slice::from_ref(&only_b), utc("2026-01-02T06:00:00Z"))
                .as_deref(),
            Some("d")
        );
        let both = [any.clone(), only_b.clone()];
        assert_eq!(
            s.who(&both, utc("2026-01-02T06:00:00Z")).as_deref(),
            Some("d"),
            "the later one"
        );
        assert_eq!(
            s.who(&both, utc("2026-01-01T13:00:00Z")).as_deref(),
            Some("c")
        );
        let mut other = cover(3, "e", None, "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z");
        other.schedule = "other".into();
        assert_eq!(
            s.who(&[other], utc("2026-01-01T06:00:00Z")).as_deref(),
            Some("a")
        );
        // Before the first handoff an override without replaces still puts someone on call.
        let early = cover(4, "c", None, "2025-12-31T00:00:00Z", "2026-01-01T06:00:00Z");
        assert_eq!(
            s.on_call(std::slice::from_ref(&early), utc("2025-12-31T12:00:00Z")),
            OnCall {
                person: Some("c".into()),
                until: Some(utc("2026-01-01T06:00:00Z")),
                next: Some("a".into()),
            },
            "the handoff at 00:00 changes nobody: c covers whoever is on call"
        );
        assert_eq!(
            s.on_call(&[early], utc("2026-01-01T03:00:00Z")),
            OnCall {
                person: Some("c".into()),
                until: Some(utc("2026-01-01T06:00:00Z")),
                next: Some("a".into()),
            }
        );
    }

    #[test]
    fn until_skips_changes_that_change_nobody() {
        let s = schedule("UTC", "1d", "2026-01-01T00:00:00Z", &["a", "b"]);
        // b covers a on Jan 1, then is on call on Jan 2 anyway: b until Jan 3.
        let o = cover(
            1,
            "b",
            Some("a"),
            "2026-01-01T00:00:00Z",
            "2026-01-02T00:00:00Z",
        );
        assert_eq!(
            s.on_call(&[o], utc("2026-01-01T08:00:00Z")),
            OnCall {
                person: Some("b".into()),
                until: Some(utc("2026-01-03T00:00:00Z")),
                next: Some("a".into()),
            }
        );
        let alone = schedule("UTC", "1w", "2026-01-01T00:00:00Z", &["a"]);
        assert_eq!(
            alone.on_call(&[], utc("2026-03-01T00:00:00Z")),
            OnCall {
                person: Some("a".into()),
                until: None,
                next: None,
            }
        );
        let far = cover(1, "z", None, "2027-01-01T00:00:00Z", "2027-01-02T00:00:00Z");
        assert_eq!(
            alone.on_call(&[far], utc("2026-03-01T00:00:00Z")).until,
            Some(utc("2027-01-01T00:00:00Z")),
            "an override far ahead is still found"
        );
    }
}
