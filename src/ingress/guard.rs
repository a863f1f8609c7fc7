//! Failed authentications: each is logged on `rotor::security` with its source, and a
//! source that fails too often in a minute is refused unheard (HTTP 429) and logged once
//! more, not once per attempt, until the minute is over.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures per source within `WINDOW` before the source is refused unheard (the
/// default of `http.failed_login_limit`, and the AMQP refusals' logging limit).
pub const MAX_FAILURES: u32 = 10;
pub const WINDOW: Duration = Duration::from_secs(60);
/// Sources remembered at once; the oldest windows are forgotten first beyond it.
const MAX_SOURCES: usize = 10_000;

pub struct FailedAuth {
    limit: u32,
    sources: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Default for FailedAuth {
    fn default() -> Self {
        FailedAuth::new(MAX_FAILURES)
    }
}

/// What the caller should do with a request from a source.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Hear,
    /// Too many failures: refuse without checking, for this many more seconds.
    Refuse(u64),
}

impl FailedAuth {
    /// A source is refused after `limit` failures in a minute.
    pub fn new(limit: u32) -> Self {
        FailedAuth {
            limit: limit.max(1),
            sources: Mutex::default(),
        }
    }

    /// Whether to check a request from `source` at all.
    pub fn verdict(&self, source: &str) -> Verdict {
        let sources = self.sources.lock().expect("failed-auth map");
        match sources.get(source) {
            Some((start, n)) if *n >= self.limit && start.elapsed() < WINDOW => {
                Verdict::Refuse((WINDOW - start.elapsed()).as_secs().max(1))
            }
            _ => Verdict::Hear,
        }
    }

    /// Records and logs a failed authentication from `source` (`channel`: HTTP or AMQP).
    pub fn failed(&self, channel: &'static str, source: &str, reason: &str) {
        let mut sources = self.sources.lock().expect("failed-auth map");
        if sources.len() >= MAX_SOURCES && !sources.contains_key(source) {
            sources.retain(|_, (start, _)| start.elapsed() < WINDOW);
            // Still full: forget the oldest window, never every lockout at once.
            if sources.len() >= MAX_SOURCES {
                if let Some(oldest) = sources
                    .iter()
                    .min_by_key(|(_, (start, _))| *start)
                    .map(|(k, _)| k.clone())
                {
                    sources.remove(&oldest);
                }
            }
        }
        let entry = sources
            .entry(source.to_string())
            .or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
        match entry.1.cmp(&self.limit) {
            std::cmp::Ordering::Less => {
                tracing::warn!(target: "rotor::security", channel, source, reason, "authentication failed")
            }
            std::cmp::Ordering::Equal => tracing::warn!(
                target: "rotor::security",
                channel,
                source,
                reason,
                failures = entry.1,
                "authentication failed; source refused for the rest of the minute, further failures not logged"
            ),
            std::cmp::Ordering::Greater => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_refused_after_too_many_failures_and_others_are_not() {
        let guard = FailedAuth::default();
        for _ in 0..MAX_FAILURES {
            assert_eq!(guard.verdict("10.0.0.1"), Verdict::Hear);
            guard.failed("HTTP", "10.0.0.1", "unknown token");
        }
        assert!(matches!(guard.verdict("10.0.0.1"), Verdict::Refuse(s) if s >= 1 && s <= 60));
        assert_eq!(guard.verdict("10.0.0.2"), Verdict::Hear);
    }
}
