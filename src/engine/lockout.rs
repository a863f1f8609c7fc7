//! The lockout budget (SPEC section 8). A target locks an account after its resource's
//! `lockout_threshold` refused logins (pam_faillock `deny`, ESXi's 5); rotor never risks
//! reaching it. It counts, per credential, the refused logins it spent since the last one
//! the target accepted (an accepted login resets pam_faillock's tally), forgetting them
//! after `WINDOW_MINUTES`. Before attempts that may be refused it checks they fit; after
//! them it records what the target answered. Nothing is held across an attempt, so a
//! process killed mid-login leaves no count behind that would block its own recovery.
//! Every login goes through here: VERIFY both ways, VERIFY_SUPPLIED, the heartbeat,
//! retries, truth-finding, linux-passwd's own login and pre-flight. A rotation's logins
//! never overlap another's: it holds the credential's lease, and the heartbeat and
//! pre-flight skip leased credentials (a pre-flight racing a heartbeat on one account
//! could still spend one refusal more than counted).

use uuid::Uuid;

use super::context::Engine;
use super::error::{Error, StageError};
use crate::driver::Login;

/// How long a refused login counts: pam_faillock's default `fail_interval` (900 s).
pub const WINDOW_MINUTES: i32 = 15;

fn spent(username: &str, failures: i32, threshold: i32, wanted: i32) -> StageError {
    StageError::permanent(
        "LOCKOUT_BUDGET_SPENT",
        format!(
            "not trying a password for {username}: {failures} refused login(s) in the last {WINDOW_MINUTES} minutes, \
             {wanted} more could be refused, and the target locks the account at {threshold} (lockout_threshold); \
             try again after that window"
        ),
    )
}

/// Refused logins counted now, and the threshold.
async fn state(engine: &Engine, credential_id: Uuid) -> Result<(i32, i32), Error> {
    let r = sqlx::query!(
        r#"SELECT CASE WHEN c.login_failure_at IS NULL OR c.login_failure_at < now() - make_interval(mins => $2)
                       THEN 0 ELSE c.login_failures END AS "failures!", r.lockout_threshold
             FROM credentials c JOIN resources r ON r.id = c.resource_id WHERE c.id = $1"#,
        credential_id,
        WINDOW_MINUTES
    )
    .fetch_optional(&engine.pool)
    .await?;
    Ok(r.map_or((0, 3), |r| (r.failures, r.lockout_threshold)))
}

/// Whether `n` more refusals fit now, reserving nothing (a rotation's start).
pub async fn check(
    engine: &Engine,
    credential_id: Uuid,
    username: &str,
    n: i32,
) -> Result<(), StageError> {
    let (failures, threshold) = state(engine, credential_id).await?;
    if failures + n < threshold {
        Ok(())
    } else {
        Err(spent(username, failures, threshold, n))
    }
}

/// Records what the target answered, in order: after an acceptance only the refusals
/// that followed it count; without one, each refusal adds to the count.
pub async fn record(engine: &Engine, credential_id: Uuid, outcomes: &[Login]) -> Result<(), Error> {
    let refused = |o: &[Login]| o.iter().filter(|l| **l == Login::Refused).count() as i32;
    match outcomes.iter().rposition(|l| *l == Login::Accepted) {
        Some(last) => {
            let after = refused(&outcomes[last + 1..]);
            sqlx::query!(
                "UPDATE credentials SET login_failures = $2,
                        login_failure_at = CASE WHEN $2 > 0 THEN now() END WHERE id = $1",
                credential_id,
                after
            )
            .execute(&engine.pool)
            .await?;
        }
        None if refused(outcomes) > 0 => {
            sqlx::query!(
                r#"UPDATE credentials
                      SET login_failures = (CASE WHEN login_failure_at IS NULL OR login_failure_at < now() - make_interval(mins => $3)
                                                 THEN 0 ELSE login_failures END) + $2,
                          login_failure_at = now()
                    WHERE id = $1"#,
                credential_id,
                refused(outcomes),
                WINDOW_MINUTES
            )
            .execute(&engine.pool)
            .await?;
            tracing::info!(credential_id = %credential_id, refused = refused(outcomes),
                "refused login counted toward the lockout budget");
        }
        None => {}
    }
    Ok(())
}
