//! What the `[scheduler]` settings mean as a typed `Schedule`, with their checks.

use super::sections::SchedulerSettings;
use super::Error;
use crate::schedule::{Schedule, Window};

impl SchedulerSettings {
    /// The typed schedule these settings describe, or the key that is wrong.
    pub fn schedule(&self) -> Result<Schedule, Error> {
        let tz: chrono_tz::Tz = self.timezone.parse().map_err(|_| {
            Error::invalid(
                "scheduler.timezone",
                format!("unknown time zone `{}`", self.timezone),
            )
        })?;
        let window = self
            .window
            .as_deref()
            .map(str::parse::<Window>)
            .transpose()
            .map_err(|m| Error::invalid("scheduler.window", m))?;
        let ratio_ok = self.breaker_ratio > 0.0 && self.breaker_ratio <= 1.0;
        for (ok, key, message) in [
            (
                ratio_ok,
                "breaker_ratio",
                "must be more than 0 and at most 1",
            ),
            (
                self.breaker_min_failures > 0,
                "breaker_min_failures",
                "must be at least 1",
            ),
            (
                self.breaker_window_minutes > 0,
                "breaker_window_minutes",
                "must be at least 1",
            ),
            (
                (1..=365).contains(&self.expiry_margin_days),
                "expiry_margin_days",
                "must be 1 to 365",
            ),
        ] {
            if !ok {
                return Err(Error::invalid(&format!("scheduler.{key}"), message));
            }
        }
        Ok(Schedule::new(self.jitter_minutes, window, tz)
            .with_expiry_margin(self.expiry_margin_days))
    }
}
