//! Intake before execution. While AMQP intake holds a backlog (its last batch was full:
//! more requests are waiting in the broker), workers start no new subtask, for at most
//! `GRACE` per backlog. A burst of requests then becomes tasks at intake's pace, each
//! acknowledged and visible at once, and runs right after; recording a request costs a
//! fraction of what running it does, so the burst's last task ends no later. Subtasks
//! already running are never held, and a stream that never lets up holds workers back
//! for `GRACE` once, not for good.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// The longest a backlog holds new subtasks back.
pub const GRACE: Duration = Duration::from_secs(2);

pub struct Admission {
    /// Since when intake has had a backlog.
    backlog: watch::Sender<Option<Instant>>,
}

impl Default for Admission {
    fn default() -> Self {
        Admission {
            backlog: watch::Sender::new(None),
        }
    }
}

impl Admission {
    /// Intake's word after each batch: `full` when it took as many as it could.
    pub fn batch_taken(&self, full: bool) {
        self.backlog.send_if_modified(|since| match (full, *since) {
            (true, None) => {
                *since = Some(Instant::now());
                true
            }
            (false, Some(_)) => {
                *since = None;
                true
            }
            _ => false,
        });
    }

    /// Returns once new subtasks may start: no backlog, or it has lasted `GRACE`.
    pub async fn wait(&self) {
        let mut rx = self.backlog.subscribe();
        loop {
            let Some(since) = *rx.borrow_and_update() else {
                return;
            };
            let until = since + GRACE;
            if Instant::now() >= until {
                return;
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep_until(until) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_backlog_holds_new_work_until_it_clears_or_for_grace_at_most() {
        let a = Admission::default();
        a.wait().await; // no backlog: at once
        a.batch_taken(true);
        let start = Instant::now();
        a.wait().await;
        assert_eq!(
            start.elapsed(),
            GRACE,
            "held for GRACE while the backlog lasts"
        );
        a.batch_taken(true); // still the same backlog: no new grace
        a.wait().await;
        assert_eq!(start.elapsed(), GRACE);
        a.batch_taken(false);
        a.batch_taken(true); // a new backlog
        let a = std::sync::Arc::new(a);
        let waiter = tokio::spawn({
            let a = a.clone();
            async move { a.wait().await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiter.is_finished(), "held while the new backlog lasts");
        a.batch_taken(false);
        waiter.await.unwrap();
        assert_eq!(
            start.elapsed(),
            GRACE + Duration::from_millis(300),
            "released when it clears"
        );
    }
}
