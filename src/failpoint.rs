//! Crash injection for the reliability proofs: `ROTOR_FAILPOINT=<STAGE>:<when>` makes
//! the process SIGKILL itself at that point, once per start. `<when>` is `before` (the
//! stage is recorded IN_PROGRESS, nothing else done), `after` (the stage's work is
//! done and committed) or, for APPLY, `target` (the target's password has changed but
//! rotor has not recorded it). With a third part, `:stop`, the process freezes itself
//! with SIGSTOP instead, leases and all, as a paused VM or a stalled host would, and
//! carries on where it was once sent SIGCONT. Unset, it costs one environment lookup
//! per stage.
//!
//! Only builds with the `failpoints` feature (the tests': `scripts/test.sh`) have them;
//! in any other build `hit` is empty and the variable is never read.

#[cfg(feature = "failpoints")]
use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(feature = "failpoints")]
use std::sync::OnceLock;

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_point: &str) {}

#[cfg(feature = "failpoints")]
fn configured() -> Option<&'static str> {
    static POINT: OnceLock<Option<String>> = OnceLock::new();
    POINT
        .get_or_init(|| {
            std::env::var("ROTOR_FAILPOINT")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .as_deref()
}

/// Kills the process with SIGKILL if `point` (e.g. "APPLY:target") is the configured one;
/// freezes it once with SIGSTOP if the configured one is `point:stop`.
#[cfg(feature = "failpoints")]
pub fn hit(point: &str) {
    static STOPPED: AtomicBool = AtomicBool::new(false);
    let Some(configured) = configured() else {
        return;
    };
    if configured.strip_suffix(":stop") == Some(point) && !STOPPED.swap(true, Ordering::SeqCst) {
        tracing::warn!(failpoint = point, "failpoint reached: SIGSTOP");
        let _ = std::process::Command::new("kill")
            .args(["-STOP", &std::process::id().to_string()])
            .status();
        return;
    }
    if configured == point {
        tracing::warn!(failpoint = point, "failpoint reached: SIGKILL");
        let _ = std::process::Command::new("kill")
            .args(["-9", &std::process::id().to_string()])
            .status();
        // `kill` delivers the signal before it returns; never continue past a failpoint.
        std::process::abort();
    }
}
