//! The stages of a subtask (model::Stage), one function each. A stage either ends
//! (`Done`) or stops with a `StageError`; the stage loop (rotation) records it.

use std::sync::Arc;

use secrecy::SecretString;

use super::account::{driver_of, login, policy_of, prepare_apply, verify_both, Account, LineAhead};
use super::context::Engine;
use super::error::{Error, StageError};
use super::lease::{fenced, Claim};
use super::lifecycle;
use super::model::{Operation, Stage, StageStatus, SubtaskStatus};
use super::outbox;
use super::repo;
use super::validate::validate;
use crate::driver::{self, Login};
use crate::vault::versions::{self, Origin, State};

/// What one run of a subtask's stages carries from stage to stage.
#[derive(Default)]
pub(super) struct Attempt {
    /// GENERATE's password, until STAGE_PENDING stores it.
    pub(super) new_password: Option<SecretString>,
    /// VERIFY_OLD_REJECTED is still to run, so VERIFY_NEW checks the old password too,
    /// first and on the same connection.
    pub(super) old_check_due: bool,
    /// What VERIFY_NEW found for the old password, for VERIFY_OLD_REJECTED.
    pub(super) old_checked: Option<Login>,
    /// VERIFY_NEW's connection, opened while APPLY runs.
    pub(super) line: Option<LineAhead>,
}

pub(super) enum Done {
    Successful,
    NotApplicable,
    /// The stage wrote its own completion (and maybe the subtask's) in its transaction.
    Recorded,
}

/// `maybe_applied`: an earlier attempt may already have set the pending password.
pub(super) async fn run_stage(
    engine: &Arc<Engine>,
    claim: &Claim,
    account: &Account,
    stage: Stage,
    maybe_applied: bool,
    attempt: &mut Attempt,
) -> Result<Done, StageError> {
    match stage {
        Stage::Validate => validate(engine, claim, account)
            .await
            .map(|()| Done::Successful),
        Stage::Generate => {
            attempt.new_password = Some(generate(engine, account)?);
            Ok(Done::Successful)
        }
        Stage::PolicyCheck => {
            let supplied = supplied_of(engine, claim).await?;
            let broken = policy_of(engine, account)?.check_for(&supplied, Some(&account.username));
            if broken.is_empty() {
                return Ok(Done::Successful);
            }
            let rules: Vec<String> = broken
                .iter()
                .map(|v| format!("{} ({})", v.code, v.message))
                .collect();
            Err(StageError::permanent(
                "PASSWORD_POLICY_VIOLATION",
                format!(
                    "the password breaks policy `{}`: {}",
                    account.policy,
                    rules.join("; ")
                ),
            ))
        }
        Stage::StagePending => {
            let fresh = match claim.operation {
                Operation::Update => Some(supplied_of(engine, claim).await?),
                _ => attempt.new_password.take(),
            };
            stage_pending(engine, claim, account, fresh).await
        }
        Stage::Apply => {
            // VERIFY's connection is opened beside the change, but not on a retry (whose
            // first step may be a login of its own to the host).
            let line = (attempt.old_check_due && !maybe_applied && claim.attempts <= 1)
                .then_some(&mut attempt.line);
            apply(engine, claim, account, maybe_applied, line).await
        }
        Stage::VerifyNew => verify_new(engine, claim, account, attempt).await,
        Stage::VerifyOldRejected => {
            let Some(current) = current_of(engine, account).await? else {
                return Ok(Done::NotApplicable);
            };
            let outcome = match attempt.old_checked.take() {
                Some(outcome) => outcome,
                None => login(engine, account, &current.password).await?,
            };
            match outcome {
                Login::Refused => Ok(Done::Successful),
                Login::Accepted => Err(StageError::permanent(
                    "OLD_PASSWORD_STILL_ACCEPTED",
                    format!(
                        "the previous password of {} still logs in to {}",
                        account.username, account.resource_id
                    ),
                )
                .unresolved()),
            }
        }
        Stage::VerifySupplied => {
            let supplied = supplied_of(engine, claim).await?;
            match login(engine, account, &supplied).await? {
                Login::Accepted => Ok(Done::Successful),
                Login::Refused => Err(StageError::permanent(
                    "AUTHENTICATION_FAILED",
                    format!(
                        "the supplied password of {} does not log in to {}; nothing was changed",
                        account.username, account.resource_id
                    ),
                )),
            }
        }
        Stage::Commit => commit(engine, claim, account).await,
    }
}

/// The new password logs in. When VERIFY_OLD_REJECTED is still to run, the old one is
/// tried first on the same connection (a refused attempt leaves it open), and its
/// outcome kept for that stage: one key exchange for both checks.
async fn verify_new(
    engine: &Engine,
    claim: &Claim,
    account: &Account,
    attempt: &mut Attempt,
) -> Result<Done, StageError> {
    // The connection opened during APPLY serves both checks; any other way it is closed
    // first, so that the rotation holds one unauthenticated connection at a time.
    let mut line = attempt.line.take();
    let pending = pending_of(engine, claim, account).await?;
    let current = if attempt.old_check_due {
        current_of(engine, account).await?
    } else {
        None
    };
    let new = match current {
        Some(current) => {
            // Both could be refused (a change that did not take). Without room for two
            // refusals (one was spent lately, e.g. checking whether a resumed APPLY had
            // happened), the new password goes first alone: its acceptance clears the count.
            if super::lockout::check(engine, account.credential_id, &account.username, 2)
                .await
                .is_err()
            {
                if let Some(line) = line.take() {
                    line.close().await;
                }
                if login(engine, account, &pending).await? == Login::Refused {
                    return Err(StageError::permanent(
                        "VERIFICATION_FAILED",
                        format!(
                            "the new password of {} does not log in to {}",
                            account.username, account.resource_id
                        ),
                    )
                    .unresolved());
                }
            }
            let (old, new) =
                verify_both(engine, account, &current.password, &pending, line).await?;
            attempt.old_checked = Some(old);
            match new {
                Some(new) => new,
                // The old password logged in (which ends that connection's attempts), or
                // the target closed the connection after refusing it.
                None => login(engine, account, &pending).await?,
            }
        }
        None => {
            if let Some(line) = line {
                line.close().await;
            }
            login(engine, account, &pending).await?
        }
    };
    match new {
        Login::Accepted => Ok(Done::Successful),
        Login::Refused => Err(StageError::permanent(
            "VERIFICATION_FAILED",
            format!(
                "the new password of {} does not log in to {}",
                account.username, account.resource_id
            ),
        )
        .unresolved()),
    }
}

fn generate(engine: &Engine, account: &Account) -> Result<SecretString, StageError> {
    policy_of(engine, account)?
        .generate_for(Some(&account.username))
        .map_err(|e| StageError::permanent("PASSWORD_GENERATION_FAILED", e.to_string()))
}

/// The password the request supplied for this subtask.
async fn supplied_of(engine: &Engine, claim: &Claim) -> Result<SecretString, StageError> {
    let mut conn = engine.pool.acquire().await?;
    versions::get_supplied(&mut conn, &engine.key, claim.subtask_id)
        .await?
        .ok_or_else(|| {
            StageError::permanent(
                "SUPPLIED_PASSWORD_MISSING",
                "the request's password is no longer stored",
            )
        })
}

/// Save before change: the new password is committed, encrypted, before the target is touched.
async fn stage_pending(
    engine: &Engine,
    claim: &Claim,
    account: &Account,
    fresh: Option<SecretString>,
) -> Result<Done, StageError> {
    let mut tx = fenced(&engine.pool, claim).await?;
    let mut existing =
        versions::get(&mut tx, &engine.key, account.credential_id, State::Pending).await?;
    if claim.reconcile()
        && existing
            .as_ref()
            .is_some_and(|v| v.subtask_id != Some(claim.subtask_id))
    {
        // Reconcile replaces whatever an earlier failed rotation left pending; if it then
        // changes nothing on the target, that version is put back (recovery::fail).
        sqlx::query!(
            "UPDATE credential_versions SET state = 'ABANDONED', state_changed_at = now(), set_aside_by = $2
              WHERE credential_id = $1 AND state = 'PENDING'",
            account.credential_id,
            claim.subtask_id
        )
        .execute(&mut *tx)
        .await?;
        existing = None;
    }
    if existing.is_none() {
        // GENERATE ran in an earlier attempt whose password was never stored: nothing of it
        // reached the target, so a fresh one is as good.
        let password = match fresh {
            Some(p) => p,
            None => generate(engine, account)?,
        };
        let origin = if claim.operation == Operation::Update {
            Origin::Supplied
        } else {
            Origin::Generated
        };
        let version = versions::insert(
            &mut tx,
            &engine.key,
            account.credential_id,
            State::Pending,
            origin,
            &password,
            Some(claim.subtask_id),
        )
        .await?;
        tracing::info!(target: "rotor::security", version, "pending password stored");
    }
    repo::stage_finished(&mut tx, claim, Stage::StagePending, StageStatus::Successful).await?;
    tx.commit().await.map_err(Error::from)?;
    Ok(Done::Recorded)
}

/// The account's current version, as the vault has it.
async fn current_of(
    engine: &Engine,
    account: &Account,
) -> Result<Option<versions::Version>, StageError> {
    let mut conn = engine.pool.acquire().await?;
    Ok(versions::get(
        &mut conn,
        &engine.key,
        account.credential_id,
        State::Current,
    )
    .await?)
}

async fn pending_of(
    engine: &Engine,
    claim: &Claim,
    account: &Account,
) -> Result<SecretString, StageError> {
    let mut conn = engine.pool.acquire().await?;
    match versions::get(
        &mut conn,
        &engine.key,
        account.credential_id,
        State::Pending,
    )
    .await?
    {
        Some(v) if v.subtask_id == Some(claim.subtask_id) => Ok(v.password),
        _ => Err(StageError::permanent(
            "PENDING_VERSION_MISSING",
            "the pending password of this subtask is gone",
        )
        .unresolved()),
    }
}

async fn apply(
    engine: &Engine,
    claim: &Claim,
    account: &Account,
    maybe_applied: bool,
    line: Option<&mut Option<LineAhead>>,
) -> Result<Done, StageError> {
    let pending = pending_of(engine, claim, account).await?;
    // An earlier attempt may have changed the password already: then there is nothing to
    // do (and linux-passwd could not log in with the old one to do it again).
    if maybe_applied || claim.attempts > 1 {
        if let Ok(Login::Accepted) = login(engine, account, &pending).await {
            tracing::info!("pending password already live on the target; not applying again");
            return Ok(Done::Successful);
        }
    }
    let current = current_of(engine, account).await?;
    // Reconcile is a privileged reset: the admin's change, whatever the platform
    // (linux-passwd would need the live password, which is what reconcile lacks).
    let driver: &'static dyn driver::Driver = if claim.reconcile() {
        driver::reset_driver(&account.platform).map_or_else(|| driver_of(account), Ok)?
    } else {
        driver_of(account)?
    };
    // A driver that logs in as the account with its current password: a login like any other.
    let logs_in = !claim.reconcile() && driver.logs_in_as_account(&account.host);
    if logs_in {
        super::lockout::check(engine, account.credential_id, &account.username, 1).await?;
    }
    let prepared = match line {
        Some(line) => {
            let (prepared, ahead) = prepare_apply(driver, account).await?;
            *line = ahead;
            prepared
        }
        None => driver::Prepared::default(),
    };
    let (host, username) = (account.host.clone(), account.username.clone());
    let span = tracing::Span::current();
    let result = tokio::task::spawn_blocking(move || {
        span.in_scope(|| {
            driver.apply_prepared(
                &host,
                &username,
                current.as_ref().map(|v| &v.password),
                &pending,
                prepared,
            )
        })
    })
    .await
    .map_err(|e| {
        StageError::permanent("INTERNAL_ERROR", format!("apply task panicked: {e}")).unresolved()
    })?;
    if logs_in {
        let outcome = match &result {
            Ok(()) => Some(Login::Accepted),
            Err(driver::Error::AccountAuth { .. }) => Some(Login::Refused),
            Err(_) => None,
        };
        super::lockout::record(engine, account.credential_id, outcome.as_slice()).await?;
    }
    match result {
        Ok(()) => {
            crate::failpoint::hit("APPLY:target");
            Ok(Done::Successful)
        }
        // The driver tells whether the target may have changed before it failed.
        Err(e) => Err(StageError::driver_change(e)),
    }
}

async fn commit(engine: &Engine, claim: &Claim, account: &Account) -> Result<Done, StageError> {
    let supplied = match claim.operation {
        Operation::Remediate | Operation::SetPassword if !claim.reconcile() => {
            Some(supplied_of(engine, claim).await?)
        }
        _ => None,
    };
    let mut tx = fenced(&engine.pool, claim).await?;
    match claim.operation {
        Operation::Rotate | Operation::Update | Operation::Remediate if supplied.is_none() => {
            lifecycle::record_rotation(
                &mut tx,
                &engine.schedule,
                account.credential_id,
                engine.max_versions,
            )
            .await?
        }
        Operation::Remediate | Operation::SetPassword => {
            let password = supplied.as_ref().expect("supplied above");
            let v = versions::replace_current(
                &mut tx,
                &engine.key,
                account.credential_id,
                password,
                claim.subtask_id,
                engine.max_versions,
            )
            .await?;
            // Someone acted: a drifted credential is back in sync.
            lifecycle::record_supplied(&mut tx, account.credential_id).await?;
            tracing::info!(target: "rotor::security", version = v, operation = %claim.operation, "supplied password stored as current");
        }
        Operation::UpdateAutoRotatePolicy => {
            let enable = claim
                .params
                .get("enable")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false);
            let days = claim
                .params
                .get("frequencyInDays")
                .and_then(serde_json::Value::as_i64)
                .map(|d| d as i32)
                .filter(|_| enable);
            // While an auto-rotation is in flight its COMMIT plans the next one, with these
            // days; one withdrawn says so in its own events (lifecycle).
            lifecycle::set_frequency(&mut tx, &engine.schedule, account.credential_id, days)
                .await?;
        }
        Operation::Rotate | Operation::Update => unreachable!("matched above"),
    }
    sqlx::query!(
        "DELETE FROM subtask_secrets WHERE subtask_id = $1",
        claim.subtask_id
    )
    .execute(&mut *tx)
    .await?;
    repo::stage_finished(&mut tx, claim, Stage::Commit, StageStatus::Successful).await?;
    let task_status =
        repo::finish_subtask(&mut tx, claim, SubtaskStatus::Successful, None, false).await?;
    outbox::subtask(
        &mut tx,
        claim.task_id,
        SubtaskStatus::Successful,
        task_status,
    )
    .await?;
    tx.commit().await.map_err(Error::from)?;
    crate::metrics::rotation("SUCCESSFUL", "");
    if claim.operation == Operation::UpdateAutoRotatePolicy {
        tracing::info!(username = %account.username, resource_id = %account.resource_id, "auto-rotate policy committed");
    } else {
        tracing::info!(target: "rotor::security", username = %account.username, resource_id = %account.resource_id,
            operation = %claim.operation, "password rotation committed");
    }
    Ok(Done::Recorded)
}
