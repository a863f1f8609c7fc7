//! Giving up safely (DESIGN.md rule 6): retry what a retry can help, and when a
//! subtask fails after the target may have changed, log in to find what the target
//! really holds and make the vault agree, or mark the task UNRESOLVED.

use super::account::{login, Account};
use super::context::Engine;
use super::error::{Error, StageError};
use super::lease::{fenced, Claim};
use super::lifecycle;
use super::model::{Stage, SubtaskStatus};
use super::outbox;
use super::outbox::CredentialAlert;
use super::repo;
use crate::driver::Login;
use crate::vault::versions::{self, State};

pub(super) async fn give_up_or_retry(
    engine: &Engine,
    claim: &Claim,
    account: Option<&Account>,
    stage: Stage,
    e: StageError,
    touched: bool,
) -> Result<(), Error> {
    if e.transient && claim.attempts < engine.max_attempts {
        let delay = engine.backoff_ms(claim.attempts);
        tracing::warn!(stage = %stage, code = %e.error.error_code, error = %e.error.message, delay_ms = delay,
            "transient failure; will retry");
        let mut tx = fenced(&engine.pool, claim).await?;
        repo::retry_later(&mut tx, claim, stage, &e.error, delay, !touched).await?;
        tx.commit().await?;
        crate::metrics::rotation("RETRY", &e.error.error_code);
        return Ok(());
    }
    fail(engine, claim, account, stage, e, touched).await
}

/// What the target really holds, by logging in.
enum Truth {
    Pending,
    Current,
    /// The version before current: it is made current again.
    Previous,
    Unknown(String),
}

async fn find_truth(engine: &Engine, claim: &Claim, account: &Account) -> Truth {
    let candidates = async {
        let mut conn = engine.pool.acquire().await?;
        let pending = versions::get(
            &mut conn,
            &engine.key,
            account.credential_id,
            State::Pending,
        )
        .await?;
        let current = versions::get(
            &mut conn,
            &engine.key,
            account.credential_id,
            State::Current,
        )
        .await?;
        let previous = versions::get(
            &mut conn,
            &engine.key,
            account.credential_id,
            State::Previous,
        )
        .await?;
        Ok::<_, crate::vault::Error>((
            pending.filter(|v| v.subtask_id == Some(claim.subtask_id)),
            current,
            previous,
        ))
    };
    let (pending, current, previous) = match candidates.await {
        Ok(c) => c,
        Err(e) => return Truth::Unknown(format!("cannot read the vault: {e}")),
    };
    for (version, truth) in [
        (pending, Truth::Pending),
        (current, Truth::Current),
        (previous, Truth::Previous),
    ] {
        let Some(v) = version else { continue };
        match login(engine, account, &v.password).await {
            Ok(Login::Accepted) => return truth,
            Ok(Login::Refused) => {}
            Err(e) => return Truth::Unknown(e.error.message),
        }
    }
    Truth::Unknown("none of the pending, current and previous passwords logs in".into())
}

/// Ends the subtask FAILED, leaving the vault agreeing with the target whenever rotor
/// can tell what the target holds (`touched`: an attempt may have changed it).
pub(super) async fn fail(
    engine: &Engine,
    claim: &Claim,
    account: Option<&Account>,
    stage: Stage,
    mut e: StageError,
    touched: bool,
) -> Result<(), Error> {
    let truth = match (account, touched) {
        (Some(account), true) => Some(find_truth(engine, claim, account).await),
        (None, true) => Some(Truth::Unknown(
            "the account could not be loaded to log in".into(),
        )),
        (_, false) => None,
    };
    let mut promote_pending = false;
    let mut previous_is_live = false;
    match &truth {
        Some(Truth::Pending) => {
            promote_pending = true;
            e.unresolved = false;
            e.error.remediation_message =
                "The new password is live on the target and was made current.".into();
        }
        Some(Truth::Current) => e.unresolved = false,
        Some(Truth::Previous) => {
            previous_is_live = true;
            e.unresolved = false;
            e.error.remediation_message =
                "The target holds the previous password; it was made current again.".into();
        }
        Some(Truth::Unknown(why)) => {
            e = e.unresolved();
            e.error = e.error.clone().cause("TRUTH_UNKNOWN", why.clone());
        }
        None => {}
    }
    let mut tx = fenced(&engine.pool, claim).await?;
    if promote_pending {
        if let Some(account) = account {
            if let Err(err) = lifecycle::record_rotation(
                &mut tx,
                &engine.schedule,
                account.credential_id,
                engine.max_versions,
            )
            .await
            {
                tracing::error!(error = %err, "cannot make the live pending password current");
            }
        }
    } else if !e.unresolved {
        // The target holds a version rotor knows, not this subtask's pending one.
        sqlx::query!(
            "UPDATE credential_versions SET state = 'ABANDONED', state_changed_at = now()
              WHERE credential_id = $1 AND state = 'PENDING' AND subtask_id = $2",
            claim.credential_id,
            claim.subtask_id
        )
        .execute(&mut *tx)
        .await?;
        if previous_is_live {
            versions::restore_previous(&mut tx, claim.credential_id).await?;
        }
        if truth.is_none() {
            // Nothing reached the target: a reconcile that set an earlier rotation's
            // unresolved pending password aside leaves the credential as it found it.
            let restored = sqlx::query!(
                "UPDATE credential_versions SET state = 'PENDING', state_changed_at = now(), set_aside_by = NULL
                  WHERE credential_id = $1 AND state = 'ABANDONED' AND set_aside_by = $2",
                claim.credential_id,
                claim.subtask_id
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if restored > 0 {
                e = e.unresolved();
            }
        }
    }
    tracing::error!(stage = %stage, code = %e.error.error_code, error = %e.error.message, unresolved = e.unresolved,
        "subtask failed");
    crate::metrics::rotation("FAILED", &e.error.error_code);
    let error = e
        .error
        .context("stage", stage.as_str())
        .context("subtaskId", claim.subtask_id.to_string());
    let task_status = repo::finish_subtask(
        &mut tx,
        claim,
        SubtaskStatus::Failed,
        Some((stage, &error)),
        e.unresolved,
    )
    .await?;
    let stopped = if claim.is_auto {
        lifecycle::auto_rotation_failed(
            &mut tx,
            &engine.scheduler,
            claim.credential_id,
            chrono::Utc::now(),
        )
        .await?
    } else {
        false
    };
    outbox::subtask(&mut tx, claim.task_id, SubtaskStatus::Failed, task_status).await?;
    if stopped {
        outbox::credential(
            &mut tx,
            claim.credential_id,
            CredentialAlert::AutoRotateStopped,
        )
        .await?;
    }
    tx.commit().await?;
    if stopped {
        tracing::error!(target: "rotor::security", credential_id = %claim.credential_id,
            "auto-rotation failed scheduler.max_failures times in a row; stopped until someone acts (rotor credential resume)");
    }
    Ok(())
}
