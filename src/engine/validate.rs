//! VALIDATE, the first stage: everything a request needs is known and allowed before
//! anything is stored or changed (a driver, a policy, room in the lockout budget, no
//! other subtask's pending password on the credential).

use super::account::{can_reset, driver_of, policy_of, Account};
use super::context::Engine;
use super::error::StageError;
use super::lease::Claim;
use super::lockout;
use super::model::Operation;
use crate::driver;

pub(super) async fn validate(
    engine: &Engine,
    claim: &Claim,
    account: &Account,
) -> Result<(), StageError> {
    driver::validate_username(&account.username)
        .map_err(|m| StageError::permanent("INVALID_USERNAME", format!("username {m}")))?;
    let changes_target =
        matches!(claim.operation, Operation::Rotate | Operation::Update) || claim.reconcile();
    if changes_target {
        driver_of(account)?;
        // The rotation will try the old password and then the new one (VERIFY both ways):
        // it starts only while the account's lockout budget allows both to be refused,
        // before anything changes.
        lockout::check(engine, account.credential_id, &account.username, 2).await?;
        if matches!(claim.operation, Operation::Rotate) || claim.reconcile() {
            policy_of(engine, account)?;
        }
        if claim.reconcile() {
            can_reset(account)?;
        }
        if !claim.reconcile() && driver_of(account)?.logs_in_as_account(&account.host) {
            let known = sqlx::query_scalar!(
                r#"SELECT count(*) AS "n!" FROM credential_versions WHERE credential_id = $1 AND state IN ('CURRENT', 'PENDING')"#,
                account.credential_id
            )
            .fetch_one(&engine.pool)
            .await?;
            if known == 0 {
                return Err(StageError::permanent(
                    "CURRENT_PASSWORD_UNKNOWN",
                    format!("platform {} changes a password as the account, with its current one, and rotor knows none: REMEDIATE with the live password first", account.platform),
                ));
            }
        }
        if account.platform == "linux-chpasswd" && account.host.admin.is_none() {
            return Err(StageError::permanent(
                "ADMIN_ACCOUNT_MISSING",
                format!("resource {} has no admin account", account.resource_id),
            ));
        }
    }
    if claim.operation == Operation::Remediate || claim.operation == Operation::SetPassword {
        // These repair the credential: an unresolved pending password of an earlier
        // rotation stops mattering once the truth is stored or a fresh one is set.
        return Ok(());
    }
    if !changes_target {
        return Ok(());
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
    Ok(())
}
