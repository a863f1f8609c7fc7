//! When a credential rotates next: `frequencyInDays` after its last rotation, plus
//! jitter, moved into the allowed window of the configured time zone. Pure time
//! arithmetic on typed values; the settings that make a `Schedule` live in `config`.

use chrono::{DateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use rand::{Rng, TryRngCore};

/// The daily window rotations may start in, local time; it may wrap midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl std::str::FromStr for Window {
    type Err = String;

    /// "HH:MM-HH:MM".
    fn from_str(w: &str) -> Result<Self, String> {
        let bad = || format!("`{w}`: expected \"HH:MM-HH:MM\"");
        let (a, b) = w.split_once('-').ok_or_else(bad)?;
        let start = NaiveTime::parse_from_str(a.trim(), "%H:%M").map_err(|_| bad())?;
        let end = NaiveTime::parse_from_str(b.trim(), "%H:%M").map_err(|_| bad())?;
        if start == end {
            return Err("start and end are equal".into());
        }
        Ok(Window { start, end })
    }
}

/// When the next rotation of a credential falls: `frequencyInDays` after the last one,
/// plus jitter, moved into the allowed window.
#[derive(Debug, Clone)]
pub struct Schedule {
    jitter_minutes: u32,
    window: Option<(NaiveTime, NaiveTime)>,
    tz: Tz,
    expiry_margin_days: i32,
}

impl Schedule {
    pub fn new(jitter_minutes: u32, window: Option<Window>, tz: Tz) -> Self {
        Schedule {
            jitter_minutes,
            window: window.map(|w| (w.start, w.end)),
            tz,
            expiry_margin_days: 7,
        }
    }

    /// Rotations are planned this many days before a password's OS expiry.
    pub fn with_expiry_margin(mut self, days: u32) -> Self {
        self.expiry_margin_days = i32::try_from(days).unwrap_or(i32::MAX);
        self
    }

    /// How long before a password's OS expiry its rotation is planned: the margin, but at
    /// most half the password's maximum age, so a short-lived password (even one of a
    /// day) is rotated once per half its life, not over and over.
    pub fn expiry_lead(&self, max_days: Option<i32>) -> chrono::Duration {
        let margin = chrono::Duration::days(i64::from(self.expiry_margin_days));
        match max_days {
            Some(max) => margin.min(chrono::Duration::hours(i64::from(max.max(1)) * 12)),
            None => margin,
        }
    }

    pub fn expiry_margin_days(&self) -> i32 {
        self.expiry_margin_days
    }

    pub fn next(&self, last: DateTime<Utc>, days: i32) -> DateTime<Utc> {
        let mut rng = rand::rngs::OsRng.unwrap_err();
        let jitter = if self.jitter_minutes == 0 {
            0
        } else {
            rng.random_range(0..i64::from(self.jitter_minutes) * 60)
        };
        let t = last + chrono::Duration::days(i64::from(days)) + chrono::Duration::seconds(jitter);
        self.into_window(t, &mut rng)
    }

    /// Whether `t` falls in the allowed window (always, without one).
    pub fn inside_window(&self, t: DateTime<Utc>) -> bool {
        let Some((start, end)) = self.window else {
            return true;
        };
        let time = t.with_timezone(&self.tz).time();
        if start < end {
            time >= start && time < end
        } else {
            time >= start || time < end
        }
    }

    /// `t` itself when inside the window, else a uniformly drawn moment of the next window.
    fn into_window(&self, t: DateTime<Utc>, rng: &mut impl Rng) -> DateTime<Utc> {
        let Some((start, end)) = self.window else {
            return t;
        };
        if self.inside_window(t) {
            return t;
        }
        let local = t.with_timezone(&self.tz);
        let mut day = local.date_naive();
        if local.time() >= start {
            day = day.succ_opt().unwrap_or(day);
        }
        // A start that falls in a DST gap (02:30 on the night clocks jump to 03:00) does
        // not exist that day: the window opens at the first local minute that does.
        let opens = (0..=180)
            .find_map(|m| {
                self.tz
                    .from_local_datetime(&(day.and_time(start) + chrono::Duration::minutes(m)))
                    .earliest()
            })
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or(t);
        let length = if start < end {
            end - start
        } else {
            chrono::Duration::days(1) - (start - end)
        };
        opens + chrono::Duration::seconds(rng.random_range(0..length.num_seconds().max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(window: Option<&str>, tz: &str) -> Schedule {
        Schedule::new(0, window.map(|w| w.parse().unwrap()), tz.parse().unwrap())
    }

    #[test]
    fn next_rotation_moves_into_the_window_in_its_time_zone() {
        let s = schedule(Some("01:00-05:00"), "Europe/Helsinki");
        let last = Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap();
        for _ in 0..50 {
            let next = s
                .next(last, 1)
                .with_timezone(&"Europe/Helsinki".parse::<Tz>().unwrap());
            assert!(
                next.time() >= NaiveTime::from_hms_opt(1, 0, 0).unwrap()
                    && next.time() < NaiveTime::from_hms_opt(5, 0, 0).unwrap(),
                "{next}"
            );
            assert_eq!(
                next.date_naive().to_string(),
                "2026-11-25",
                "the window after the due time"
            );
        }
        let inside = Utc.with_ymd_and_hms(2026, 11, 23, 0, 30, 0).unwrap(); // 02:30 in Helsinki
        assert_eq!(s.next(inside, 1), inside + chrono::Duration::days(1));
    }

    #[test]
    fn a_window_may_wrap_midnight_and_bad_ones_are_refused() {
        let s = schedule(Some("22:00-02:00"), "UTC");
        let last = Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap();
        let next = s.next(last, 1);
        assert!(
            next >= Utc.with_ymd_and_hms(2026, 11, 24, 22, 0, 0).unwrap()
                && next < Utc.with_ymd_and_hms(2026, 11, 25, 2, 0, 0).unwrap(),
            "{next}"
        );
        for bad in ["1-5", "01:00", "01:00-01:00"] {
            assert!(bad.parse::<Window>().is_err(), "{bad}");
        }
    }

    #[test]
    fn jitter_stays_within_its_bound() {
        let s = Schedule::new(30, None, Tz::UTC);
        let last = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        for _ in 0..200 {
            let d = s.next(last, 7) - (last + chrono::Duration::days(7));
            assert!(d >= chrono::Duration::zero() && d < chrono::Duration::minutes(30));
        }
    }
}
