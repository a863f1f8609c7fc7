//! Running one subtask's stages under the safe rotation protocol (DESIGN.md):
//! save before change, every stage can run again, verify both ways, give up safely.

use std::path::PathBuf;
use std::sync::Arc;

use secrecy::SecretString;
use uuid::Uuid;

use super::model::{Operation, Stage};
use super::repo::{self, Claim};
use super::recovery::{announce, give_up_or_retry};
use super::Engine;
use crate::target::{self, Admin, Login, Target};
use crate::vault::versions::{self, Origin, State};
use crate::vcf_error::VcfError;

/// The account and its resource, as the stages need them.
pub(super) struct Account {
    pub(super) credential_id: Uuid,
    username: String,
    resource_id: String,
    platform: String,
    policy: String,
    target: Target,
}

/// Why a stage stopped.
pub(super) struct StageError {
    pub(super) error: VcfError,
    pub(super) transient: bool,
    /// The target may hold a password rotor cannot name (REMEDIATE repairs it).
    pub(super) unresolved: bool,
}

impl StageError {
    fn permanent(code: &str, message: impl Into<String>) -> Self {
        StageError { error: VcfError::new(code, message), transient: false, unresolved: false }
    }

    fn target(e: target::Error) -> Self {
        StageError {
            transient: e.is_transient(),
            error: VcfError::new(e.code(), e.to_string()).cause(e.code(), e.to_string()),
            unresolved: false,
        }
    }

    pub(super) fn unresolved(mut self) -> Self {
        self.unresolved = true;
        self.error.remediation_message =
            "The target's password may differ from rotor's current version: run REMEDIATE for this credential.".into();
        self
    }
}

impl From<repo::Error> for StageError {
    fn from(e: repo::Error) -> Self {
        StageError { error: VcfError::new("INTERNAL_ERROR", e.to_string()), transient: true, unresolved: false }
    }
}

impl From<sqlx::Error> for StageError {
    fn from(e: sqlx::Error) -> Self {
        repo::Error::Db(e).into()
    }
}

impl From<crate::vault::Error> for StageError {
    fn from(e: crate::vault::Error) -> Self {
        match e {
            crate::vault::Error::Db(e) => e.into(),
            other => StageError::permanent("VAULT_ERROR", other.to_string()).unresolved(),
        }
    }
}

enum Done {
    Successful,
    NotApplicable,
    /// The stage wrote its own completion (and maybe the subtask's) in its transaction.
    Recorded,
}

/// Runs a claimed subtask from its first unfinished stage to an end or a retry.
pub async fn run(engine: &Arc<Engine>, claim: Claim) {
    let renewal = {
        let (engine, claim) = (engine.clone(), claim.clone());
        tokio::spawn(async move {
            let period = std::time::Duration::from_secs_f64(engine.lease_seconds / 3.0);
            loop {
                tokio::time::sleep(period).await;
                match repo::renew_lease(&engine.pool, &claim, engine.lease_seconds).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!("lease taken over; this worker's writes will be refused");
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot renew lease"),
                }
            }
        })
    };
    if let Err(e) = run_stages(engine, &claim).await {
        tracing::error!(error = %e, "subtask stopped on a database error; it will be resumed when its lease expires");
    }
    renewal.abort();
}

async fn run_stages(engine: &Arc<Engine>, claim: &Claim) -> Result<(), repo::Error> {
    let stages = repo::stage_statuses(&engine.pool, claim.subtask_id).await?;
    // An earlier attempt that got as far as APPLY may have changed the target (a retry
    // keeps APPLY's status for exactly this reason).
    let mut touched = stages.iter().any(|(stage, status)| *stage == Stage::Apply && status != "PENDING");
    let account = match load_account(engine, claim.credential_id).await {
        Ok(a) => a,
        // A database error here is retried like any other; giving up must know `touched`.
        Err(e) => return give_up_or_retry(engine, claim, None, Stage::Validate, e, touched).await,
    };
    let mut new_password: Option<SecretString> = None;
    for (stage, status) in stages {
        if status == "SUCCESSFUL" || status == "NOT_APPLICABLE" {
            continue;
        }
        let resumed = status == "IN_PROGRESS";
        repo::stage_started(&engine.pool, claim, stage).await?;
        crate::failpoint::hit(&format!("{stage}:before"));
        tracing::debug!(stage = %stage, resumed, "stage started");
        if stage == Stage::Apply {
            // Touch the target only with a fresh lease: a worker that cannot renew must
            // not start a change another worker may be about to make.
            if !repo::renew_lease(&engine.pool, claim, engine.lease_seconds).await? {
                return Err(repo::Error::LostLease(claim.credential_id));
            }
        }
        let outcome = run_stage(engine, claim, &account, stage, resumed || touched, &mut new_password).await;
        match outcome {
            Ok(Done::Recorded) => {}
            Ok(done) => {
                let status = if matches!(done, Done::NotApplicable) { "NOT_APPLICABLE" } else { "SUCCESSFUL" };
                let mut tx = repo::fenced(&engine.pool, claim).await?;
                repo::stage_finished(&mut tx, claim, stage, status).await?;
                tx.commit().await?;
            }
            Err(e) => {
                touched |= stage > Stage::Apply || (stage == Stage::Apply && e.unresolved);
                return give_up_or_retry(engine, claim, Some(&account), stage, e, touched).await;
            }
        }
        touched |= stage == Stage::Apply;
        crate::failpoint::hit(&format!("{stage}:after"));
        tracing::debug!(stage = %stage, "stage done");
    }
    Ok(())
}

/// `maybe_applied`: an earlier attempt may already have set the pending password.
async fn run_stage(
    engine: &Arc<Engine>,
    claim: &Claim,
    account: &Account,
    stage: Stage,
    maybe_applied: bool,
    new_password: &mut Option<SecretString>,
) -> Result<Done, StageError> {
    match stage {
        Stage::Validate => validate(engine, claim, account).await,
        Stage::Generate => {
            *new_password = Some(generate(engine, account)?);
            Ok(Done::Successful)
        }
        Stage::PolicyCheck => {
            let supplied = supplied_of(engine, claim).await?;
            let broken = policy_of(engine, account)?.check_for(&supplied, Some(&account.username));
            if broken.is_empty() {
                return Ok(Done::Successful);
            }
            let rules: Vec<String> = broken.iter().map(|v| format!("{} ({})", v.code, v.message)).collect();
            Err(StageError::permanent("PASSWORD_POLICY_VIOLATION", format!("the password breaks policy `{}`: {}", account.policy, rules.join("; "))))
        }
        Stage::StagePending => {
            let fresh = match claim.operation {
                Operation::Update => Some(supplied_of(engine, claim).await?),
                _ => new_password.take(),
            };
            stage_pending(engine, claim, account, fresh).await
        }
        Stage::Apply => apply(engine, claim, account, maybe_applied).await,
        Stage::VerifyNew => {
            let pending = pending_of(engine, claim, account).await?;
            match login(account, &pending).await? {
                Login::Accepted => Ok(Done::Successful),
                Login::Refused => Err(StageError::permanent(
                    "VERIFICATION_FAILED",
                    format!("the new password of {} does not log in to {}", account.username, account.resource_id),
                )
                .unresolved()),
            }
        }
        Stage::VerifyOldRejected => {
            let mut conn = engine.pool.acquire().await?;
            let Some(current) = versions::get(&mut conn, &engine.key, account.credential_id, State::Current).await? else {
                return Ok(Done::NotApplicable);
            };
            drop(conn);
            match login(account, &current.password).await? {
                Login::Refused => Ok(Done::Successful),
                Login::Accepted => Err(StageError::permanent(
                    "OLD_PASSWORD_STILL_ACCEPTED",
                    format!("the previous password of {} still logs in to {}", account.username, account.resource_id),
                )
                .unresolved()),
            }
        }
        Stage::VerifySupplied => {
            let supplied = supplied_of(engine, claim).await?;
            match login(account, &supplied).await? {
                Login::Accepted => Ok(Done::Successful),
                Login::Refused => Err(StageError::permanent(
                    "AUTHENTICATION_FAILED",
                    format!("the supplied password of {} does not log in to {}; nothing was changed", account.username, account.resource_id),
                )),
            }
        }
        Stage::Commit => commit(engine, claim, account).await,
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
        .ok_or_else(|| StageError::permanent("SUPPLIED_PASSWORD_MISSING", "the request's password is no longer stored"))
}

async fn load_account(engine: &Engine, credential_id: Uuid) -> Result<Account, StageError> {
    let r = sqlx::query!(
        "SELECT c.username, r.id AS resource_id, r.address, r.port, r.host_keys, r.insecure_accept_any_host_key,
                r.platform, r.policy, r.admin_username, r.admin_private_key_file, r.admin_password_file, r.admin_sudo
           FROM credentials c JOIN resources r ON r.id = c.resource_id WHERE c.id = $1",
        credential_id
    )
    .fetch_optional(&engine.pool)
    .await?
    .ok_or_else(|| StageError::permanent("CREDENTIAL_NOT_FOUND", format!("credential {credential_id} no longer exists")))?;
    let admin = r.admin_username.map(|username| Admin {
        username,
        private_key_file: r.admin_private_key_file.map(PathBuf::from),
        password_file: r.admin_password_file.map(PathBuf::from),
        sudo: r.admin_sudo,
    });
    Ok(Account {
        credential_id,
        username: r.username,
        platform: r.platform,
        policy: r.policy,
        target: Target {
            resource_id: r.resource_id.clone(),
            address: r.address,
            port: u16::try_from(r.port).unwrap_or(22),
            host_keys: r.host_keys,
            insecure_accept_any_host_key: r.insecure_accept_any_host_key,
            admin,
            connect_timeout: engine.connect_timeout,
            io_timeout: engine.io_timeout,
        },
        resource_id: r.resource_id,
    })
}

fn policy_of<'a>(engine: &'a Engine, account: &Account) -> Result<&'a crate::policy::Policy, StageError> {
    engine.policies.get(&account.policy).ok_or_else(|| {
        StageError::permanent("POLICY_NOT_FOUND", format!("resource {} names unknown policy `{}`", account.resource_id, account.policy))
    })
}

fn driver_of(account: &Account) -> Result<&'static dyn target::Driver, StageError> {
    target::driver(&account.platform).ok_or_else(|| {
        StageError::permanent(
            "PLATFORM_NOT_SUPPORTED",
            format!("resource {} uses platform `{}`; supported: {}", account.resource_id, account.platform, target::PLATFORMS.join(", ")),
        )
    })
}

async fn validate(engine: &Engine, claim: &Claim, account: &Account) -> Result<Done, StageError> {
    target::validate_username(&account.username)
        .map_err(|m| StageError::permanent("INVALID_USERNAME", format!("username {m}")))?;
    let changes_target = matches!(claim.operation, Operation::Rotate | Operation::Update) || claim.reconcile();
    if changes_target {
        driver_of(account)?;
        if matches!(claim.operation, Operation::Rotate) || claim.reconcile() {
            policy_of(engine, account)?;
        }
        if claim.reconcile() && account.target.admin.is_none() {
            return Err(StageError::permanent(
                "ADMIN_ACCOUNT_MISSING",
                format!("REMEDIATE without a password needs the admin account of resource {}; supply the password instead", account.resource_id),
            ));
        }
        if account.platform == "linux-passwd" && !claim.reconcile() {
            let known = sqlx::query_scalar!(
                r#"SELECT count(*) AS "n!" FROM credential_versions WHERE credential_id = $1 AND state IN ('CURRENT', 'PENDING')"#,
                account.credential_id
            )
            .fetch_one(&engine.pool)
            .await?;
            if known == 0 {
                return Err(StageError::permanent(
                    "CURRENT_PASSWORD_UNKNOWN",
                    "platform linux-passwd changes a password with the current one, and rotor knows none: REMEDIATE with the live password first",
                ));
            }
        }
        if account.platform == "linux-chpasswd" && account.target.admin.is_none() {
            return Err(StageError::permanent("ADMIN_ACCOUNT_MISSING", format!("resource {} has no admin account", account.resource_id)));
        }
    }
    if claim.operation == Operation::Remediate || claim.operation == Operation::SetPassword {
        // These repair the credential: an unresolved pending password of an earlier
        // rotation stops mattering once the truth is stored or a fresh one is set.
        return Ok(Done::Successful);
    }
    if !changes_target {
        return Ok(Done::Successful);
    }
    // A pending password from another subtask may be live on the target: never stack a second one on it.
    let other = sqlx::query_scalar!(
        "SELECT subtask_id FROM credential_versions WHERE credential_id = $1 AND state = 'PENDING'",
        account.credential_id
    )
    .fetch_optional(&engine.pool)
    .await?
    .flatten();
    if let Some(other) = other.filter(|s| *s != claim.subtask_id) {
        return Err(StageError::permanent(
            "CREDENTIAL_UNRESOLVED",
            format!("credential has an unresolved pending password from subtask {other}"),
        )
        .unresolved());
    }
    Ok(Done::Successful)
}

/// Save before change: the new password is committed, encrypted, before the target is touched.
async fn stage_pending(engine: &Engine, claim: &Claim, account: &Account, fresh: Option<SecretString>) -> Result<Done, StageError> {
    let mut tx = repo::fenced(&engine.pool, claim).await?;
    let mut existing = versions::get(&mut tx, &engine.key, account.credential_id, State::Pending).await?;
    if claim.reconcile() && existing.as_ref().is_some_and(|v| v.subtask_id != Some(claim.subtask_id)) {
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
        let origin = if claim.operation == Operation::Update { Origin::Supplied } else { Origin::Generated };
        let version = versions::insert(&mut tx, &engine.key, account.credential_id, State::Pending, origin, &password, Some(claim.subtask_id)).await?;
        tracing::info!(target: "rotor::security", version, "pending password stored");
    }
    repo::stage_finished(&mut tx, claim, Stage::StagePending, "SUCCESSFUL").await?;
    tx.commit().await.map_err(repo::Error::from)?;
    Ok(Done::Recorded)
}

async fn pending_of(engine: &Engine, claim: &Claim, account: &Account) -> Result<SecretString, StageError> {
    let mut conn = engine.pool.acquire().await?;
    match versions::get(&mut conn, &engine.key, account.credential_id, State::Pending).await? {
        Some(v) if v.subtask_id == Some(claim.subtask_id) => Ok(v.password),
        _ => Err(StageError::permanent("PENDING_VERSION_MISSING", "the pending password of this subtask is gone").unresolved()),
    }
}

async fn apply(engine: &Engine, claim: &Claim, account: &Account, maybe_applied: bool) -> Result<Done, StageError> {
    let pending = pending_of(engine, claim, account).await?;
    // An earlier attempt may have changed the password already: then there is nothing to
    // do (and linux-passwd could not log in with the old one to do it again).
    if maybe_applied || claim.attempts > 1 {
        if let Ok(Login::Accepted) = login(account, &pending).await {
            tracing::info!("pending password already live on the target; not applying again");
            return Ok(Done::Successful);
        }
    }
    let mut conn = engine.pool.acquire().await?;
    let current = versions::get(&mut conn, &engine.key, account.credential_id, State::Current).await?;
    drop(conn);
    // Reconcile is a privileged reset: always the admin's chpasswd, whatever the platform
    // (linux-passwd would need the live password, which is what reconcile lacks).
    let driver: &'static dyn target::Driver = if claim.reconcile() { &target::linux::Chpasswd } else { driver_of(account)? };
    let (target, username) = (account.target.clone(), account.username.clone());
    let span = tracing::Span::current();
    let result = tokio::task::spawn_blocking(move || {
        span.in_scope(|| driver.apply(&target, &username, current.as_ref().map(|v| &v.password), &pending))
    })
    .await
    .map_err(|e| StageError::permanent("INTERNAL_ERROR", format!("apply task panicked: {e}")).unresolved())?;
    match result {
        Ok(()) => {
            crate::failpoint::hit("APPLY:target");
            Ok(Done::Successful)
        }
        // The target said no before changing anything: the current password stands.
        Err(e @ (target::Error::Rejected { .. } | target::Error::AdminAuth { .. } | target::Error::AccountAuth { .. } | target::Error::HostKeyMismatch { .. }
        | target::Error::NoPinnedHostKey | target::Error::NoAdmin | target::Error::Config(_) | target::Error::Connect { .. })) => {
            Err(StageError::target(e))
        }
        // Cut off mid-way: the change may or may not have happened.
        Err(e) => Err(StageError::target(e).unresolved()),
    }
}

pub(super) async fn login(account: &Account, password: &SecretString) -> Result<Login, StageError> {
    let driver = driver_of(account)?;
    let (target, username, password) = (account.target.clone(), account.username.clone(), password.clone());
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(|| driver.login(&target, &username, &password)))
        .await
        .map_err(|e| StageError::permanent("INTERNAL_ERROR", format!("login task panicked: {e}")))?
        .map_err(StageError::target)
}

async fn commit(engine: &Engine, claim: &Claim, account: &Account) -> Result<Done, StageError> {
    let supplied = match claim.operation {
        Operation::Remediate | Operation::SetPassword if !claim.reconcile() => Some(supplied_of(engine, claim).await?),
        _ => None,
    };
    let mut tx = repo::fenced(&engine.pool, claim).await?;
    let mut withdrawn = None;
    match claim.operation {
        Operation::Rotate | Operation::Update | Operation::Remediate if supplied.is_none() => promote(&mut tx, engine, account).await?,
        Operation::Remediate | Operation::SetPassword => {
            let password = supplied.as_ref().expect("supplied above");
            let v = versions::replace_current(&mut tx, &engine.key, account.credential_id, password, claim.subtask_id, engine.max_versions).await?;
            // Someone acted: a drifted credential is back in sync, and auto-rotation that
            // stopped after failures is planned again.
            sqlx::query!(
                "UPDATE credentials SET status = 'ACTIVE', updated_at = now(), heartbeat_at = $2, auto_failures = 0,
                        next_rotation_at = CASE WHEN auto_rotate_days IS NULL OR auto_task_id IS NOT NULL THEN next_rotation_at
                                                ELSE COALESCE(next_rotation_at, $2) END
                  WHERE id = $1",
                account.credential_id,
                chrono::Utc::now()
            )
            .execute(&mut *tx)
            .await?;
            tracing::info!(target: "rotor::security", version = v, operation = %claim.operation, "supplied password stored as current");
        }
        Operation::UpdateAutoRotatePolicy => {
            let enable = claim.params.get("enable").and_then(serde_json::Value::as_bool).unwrap_or(false);
            let days = claim.params.get("frequencyInDays").and_then(serde_json::Value::as_i64).map(|d| d as i32).filter(|_| enable);
            let last = sqlx::query_scalar!("SELECT last_rotated_at FROM credentials WHERE id = $1", account.credential_id)
                .fetch_one(&mut *tx)
                .await?;
            if days.is_none() {
                withdrawn = super::control::withdraw_auto_rotation(&mut tx, account.credential_id).await?;
            }
            let next = days.map(|d| engine.schedule.next(last.unwrap_or_else(chrono::Utc::now), d));
            // While an auto-rotation is in flight its COMMIT plans the next one, with these days.
            sqlx::query!(
                "UPDATE credentials SET auto_rotate_days = $2, auto_failures = 0, updated_at = now(),
                        next_rotation_at = CASE WHEN auto_task_id IS NULL THEN $3 ELSE next_rotation_at END
                  WHERE id = $1",
                account.credential_id,
                days,
                next
            )
            .execute(&mut *tx)
            .await?;
        }
        Operation::Rotate | Operation::Update => unreachable!("matched above"),
    }
    sqlx::query!("DELETE FROM subtask_secrets WHERE subtask_id = $1", claim.subtask_id).execute(&mut *tx).await?;
    repo::stage_finished(&mut tx, claim, Stage::Commit, "SUCCESSFUL").await?;
    let task_status = repo::finish_subtask(&mut tx, claim, "SUCCESSFUL", None, false).await?;
    tx.commit().await.map_err(repo::Error::from)?;
    announce(engine, claim, "SUCCESSFUL", task_status);
    if let Some((task_id, Some(status))) = withdrawn {
        engine.events.task(task_id, &status);
    }
    tracing::info!(target: "rotor::security", username = %account.username, resource_id = %account.resource_id,
        operation = %claim.operation, "password rotation committed");
    Ok(Done::Recorded)
}

/// PENDING becomes CURRENT and the credential records the rotation; its next
/// auto-rotation is planned by this process's clock.
pub(super) async fn promote(conn: &mut sqlx::PgConnection, engine: &Engine, account: &Account) -> Result<(), StageError> {
    versions::promote_pending(conn, account.credential_id, engine.max_versions).await?;
    let now = chrono::Utc::now();
    let days = sqlx::query_scalar!("SELECT auto_rotate_days FROM credentials WHERE id = $1", account.credential_id)
        .fetch_one(&mut *conn)
        .await?;
    sqlx::query!(
        "UPDATE credentials SET last_rotated_at = $2, updated_at = now(), status = 'ACTIVE', heartbeat_at = $2,
                auto_failures = 0, auto_task_id = NULL, next_rotation_at = $3
          WHERE id = $1",
        account.credential_id,
        now,
        days.map(|d| engine.schedule.next(now, d))
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Heartbeat: does the stored current password still log in? (current version, outcome)
pub async fn check_current(engine: &Engine, credential_id: Uuid) -> Result<Option<(i32, Login)>, String> {
    let account = load_account(engine, credential_id).await.map_err(|e| e.error.message)?;
    let mut conn = engine.pool.acquire().await.map_err(|e| e.to_string())?;
    let Some(current) = versions::get(&mut conn, &engine.key, credential_id, State::Current).await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    drop(conn);
    let outcome = login(&account, &current.password).await.map_err(|e| e.error.message)?;
    Ok(Some((current.version, outcome)))
}

