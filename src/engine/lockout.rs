//! The lockout budget (SPEC section 8). A target locks an account after its resource's
//! `lockout_threshold` refused logins (pam_faillock `deny`, ESXi's 5); rotor never risks
//! reaching it. It counts, per credential, the refused logins it spent since the last one
//! the target accepted (an accepted login resets pam_faillock's tally), forgetting them
//! after `WINDOW`, and tries a password that may be refused only while fewer than
//! `threshold - 1` are counted. That covers VERIFY_OLD_REJECTED, VERIFY_SUPPLIED, the
//! heartbeat, retries, truth-finding and pre-flight alike: they all log in through here.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::context::Engine;
use super::error::{Error, StageError};
use crate::driver::Login;

/// How long a refused login counts: pam_faillock's default `fail_interval` (900 s).
pub const WINDOW_MINUTES: i64 = 15;

/// Refused logins counted now, and the threshold.
async fn state(engine: &Engine, credential_id: Uuid) -> Result<(i32, i32), Error> {
    let r = sqlx::query!(
        "SELECT c.login_failures, c.login_failure_at, r.lockout_threshold
           FROM credentials c JOIN resources r ON r.id = c.resource_id WHERE c.id = $1",
        credential_id
    )
    .fetch_optional(&engine.pool)
    .await?;
    Ok(match r {
        Some(r) => (
            counted(r.login_failures, r.login_failure_at, Utc::now()),
            r.lockout_threshold,
        ),
        None => (0, 3),
    })
}

fn counted(failures: i32, last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> i32 {
    match last {
        Some(at) if now - at < chrono::Duration::minutes(WINDOW_MINUTES) => failures,
        _ => 0,
    }
}

/// Refuses, before any attempt, a login that could be the one too many.
pub async fn reserve(
    engine: &Engine,
    credential_id: Uuid,
    username: &str,
) -> Result<(), StageError> {
    let (failures, threshold) = state(engine, credential_id).await?;
    if threshold - 1 - failures >= 1 {
        return Ok(());
    }
    Err(StageError::permanent(
        "LOCKOUT_BUDGET_SPENT",
        format!(
            "not trying a password for {username}: {failures} refused login(s) in the last {WINDOW_MINUTES} minutes, \
             and the target locks the account at {threshold} (lockout_threshold); try again after that window"
        ),
    ))
}

/// Records what the target answered, in order: a refusal counts, an acceptance resets.
pub async fn record(engine: &Engine, credential_id: Uuid, outcomes: &[Login]) -> Result<(), Error> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let now = Utc::now();
    let r = sqlx::query!(
        "SELECT login_failures, login_failure_at FROM credentials WHERE id = $1",
        credential_id
    )
    .fetch_optional(&engine.pool)
    .await?;
    let Some(r) = r else { return Ok(()) };
    let (mut failures, mut at) = (
        counted(r.login_failures, r.login_failure_at, now),
        r.login_failure_at,
    );
    for outcome in outcomes {
        match outcome {
            Login::Refused => {
                failures += 1;
                at = Some(now);
            }
            Login::Accepted => {
                failures = 0;
                at = None;
            }
        }
    }
    sqlx::query!(
        "UPDATE credentials SET login_failures = $2, login_failure_at = $3 WHERE id = $1",
        credential_id,
        failures,
        at
    )
    .execute(&engine.pool)
    .await?;
    if failures > 0 {
        tracing::info!(credential_id = %credential_id, refused = failures, "refused login counted toward the lockout budget");
    }
    Ok(())
}
