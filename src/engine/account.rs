//! The account a subtask acts on, with its resource (the host and how to reach it),
//! and the seam to the driver: logins run on the blocking pool.

use std::path::PathBuf;

use secrecy::SecretString;
use uuid::Uuid;

use super::context::Engine;
use super::error::StageError;
use super::lockout;
use crate::driver::{self, Admin, Host, Login};
use crate::policy::Policy;
use crate::vault::versions::{self, State};

/// The account and its resource, as the stages need them.
pub(super) struct Account {
    pub(super) credential_id: Uuid,
    pub(super) username: String,
    pub(super) resource_id: String,
    pub(super) platform: String,
    pub(super) policy: String,
    pub(super) host: Host,
}

pub(super) async fn load_account(
    engine: &Engine,
    credential_id: Uuid,
) -> Result<Account, StageError> {
    let r = sqlx::query!(
        "SELECT c.username, r.id AS resource_id, r.address, r.port, r.host_keys, r.insecure_accept_any_host_key,
                r.platform, r.policy, r.admin_username, r.admin_private_key_file, r.admin_password_file, r.admin_sudo, r.ssh_auth, r.http
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
    // Checked again at every use: the file, links resolved now, must still lie under
    // allowed_dir (a row from before the rule, or a link swapped since, is refused).
    for file in admin
        .iter()
        .flat_map(|a| [a.private_key_file.as_ref(), a.password_file.as_ref()])
        .flatten()
    {
        let inside =
            std::fs::canonicalize(file).is_ok_and(|real| real.starts_with(&engine.allowed_dir));
        if !inside {
            return Err(StageError::permanent(
                "ADMIN_FILE_NOT_ALLOWED",
                format!("the admin file of resource {} is missing or not under inventory.allowed_dir; apply the inventory again", r.resource_id),
            ));
        }
        if let Err(e) = crate::config::check_private_file("admin file", file) {
            return Err(StageError::permanent(
                "ADMIN_FILE_NOT_ALLOWED",
                format!("resource {}: {e}", r.resource_id),
            ));
        }
    }
    let http = match r.http {
        Some(json) => Some(std::sync::Arc::new(http_target(
            engine,
            &r.resource_id,
            json,
        )?)),
        None => None,
    };
    Ok(Account {
        credential_id,
        username: r.username,
        platform: r.platform,
        policy: r.policy,
        host: Host {
            resource_id: r.resource_id.clone(),
            address: r.address,
            port: u16::try_from(r.port).unwrap_or(22),
            host_keys: r.host_keys,
            insecure_accept_any_host_key: r.insecure_accept_any_host_key,
            admin,
            ssh_auth: r.ssh_auth.parse().unwrap_or(driver::SshAuth::Auto),
            http,
            connect_timeout: engine.connect_timeout,
            io_timeout: engine.io_timeout,
        },
        resource_id: r.resource_id,
    })
}

/// An http resource's stored recipe, resolved, its CA file checked as the admin files are.
fn http_target(
    engine: &Engine,
    resource_id: &str,
    json: serde_json::Value,
) -> Result<driver::http::HttpTarget, StageError> {
    let bad = |m: String| {
        StageError::permanent(
            "CONFIGURATION_ERROR",
            format!("resource {resource_id}: {m}; apply the inventory again"),
        )
    };
    let spec: driver::http::recipe::HttpSpec =
        serde_json::from_value(json).map_err(|e| bad(format!("http: {e}")))?;
    if let Some(ca) = &spec.ca_file {
        let inside =
            std::fs::canonicalize(ca).is_ok_and(|real| real.starts_with(&engine.allowed_dir));
        if !inside {
            return Err(bad(format!(
                "http.ca_file {} is missing or not under inventory.allowed_dir",
                ca.display()
            )));
        }
    }
    driver::http::HttpTarget::from_spec(&spec).map_err(bad)
}

pub(super) fn policy_of<'a>(
    engine: &'a Engine,
    account: &Account,
) -> Result<&'a Policy, StageError> {
    engine.policies.get(&account.policy).ok_or_else(|| {
        StageError::permanent(
            "POLICY_NOT_FOUND",
            format!(
                "resource {} names unknown policy `{}`",
                account.resource_id, account.policy
            ),
        )
    })
}

/// Whether REMEDIATE without a password (a reset) can run on this account: it needs the
/// admin, and a change the admin makes (one made as the account would need the very
/// password a reset lacks).
pub(super) fn can_reset(account: &Account) -> Result<(), StageError> {
    if account.host.admin.is_none() {
        return Err(StageError::permanent(
            "ADMIN_ACCOUNT_MISSING",
            format!("REMEDIATE without a password needs the admin account of resource {}; supply the password instead", account.resource_id),
        ));
    }
    if driver::reset_driver(&account.platform).is_some_and(|d| d.logs_in_as_account(&account.host))
    {
        return Err(StageError::permanent(
            "RECONCILE_NOT_SUPPORTED",
            format!("resource {} changes a password as the account itself, with its current one: REMEDIATE with the password instead", account.resource_id),
        ));
    }
    Ok(())
}

pub(super) fn driver_of(account: &Account) -> Result<&'static dyn driver::Driver, StageError> {
    driver::driver(&account.platform).ok_or_else(|| {
        StageError::permanent(
            "PLATFORM_NOT_SUPPORTED",
            format!(
                "resource {} uses platform `{}`; supported: {}",
                account.resource_id,
                account.platform,
                driver::PLATFORMS.join(", ")
            ),
        )
    })
}

/// A login as the account, within its lockout budget; the outcome is counted.
pub(super) async fn login(
    engine: &Engine,
    account: &Account,
    password: &SecretString,
) -> Result<Login, StageError> {
    lockout::check(engine, account.credential_id, &account.username, 1).await?;
    let outcome = raw_login(account, password).await;
    let answered: Vec<Login> = outcome.as_ref().ok().copied().into_iter().collect();
    lockout::record(engine, account.credential_id, &answered).await?;
    outcome
}

async fn raw_login(account: &Account, password: &SecretString) -> Result<Login, StageError> {
    let driver = driver_of(account)?;
    let (host, username, password) = (
        account.host.clone(),
        account.username.clone(),
        password.clone(),
    );
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(|| driver.login(&host, &username, &password)))
        .await
        .map_err(|e| StageError::permanent("INTERNAL_ERROR", format!("login task panicked: {e}")))?
        .map_err(StageError::driver)
}

/// VERIFY both ways on one connection where the platform can (old first, then new): the
/// refusal rotor expects is followed at once by an accepted login, which resets the
/// target's failure tally. Both may be refused (a change that did not take), so room for
/// two refusals is required; the outcomes are recorded.
pub(super) async fn verify_both(
    engine: &Engine,
    account: &Account,
    old: &SecretString,
    new: &SecretString,
    ahead: Option<LineAhead>,
) -> Result<(Login, Option<Login>), StageError> {
    lockout::check(engine, account.credential_id, &account.username, 2).await?;
    let line = match ahead {
        Some(ahead) => ahead.opened().await,
        None => None,
    };
    let result = raw_verify_both(account, old, new, line).await;
    let outcomes: Vec<Login> = match &result {
        Ok((old_outcome, new_outcome)) => {
            std::iter::once(*old_outcome).chain(*new_outcome).collect()
        }
        Err(_) => Vec::new(),
    };
    lockout::record(engine, account.credential_id, &outcomes).await?;
    result
}

async fn raw_verify_both(
    account: &Account,
    old: &SecretString,
    new: &SecretString,
    line: Option<driver::LoginLine>,
) -> Result<(Login, Option<Login>), StageError> {
    let driver = driver_of(account)?;
    let (host, username, old, new) = (
        account.host.clone(),
        account.username.clone(),
        old.clone(),
        new.clone(),
    );
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        span.in_scope(|| driver.verify_both(&host, &username, &old, &new, line))
    })
    .await
    .map_err(|e| StageError::permanent("INTERNAL_ERROR", format!("login task panicked: {e}")))?
    .map_err(StageError::driver)
}

/// VERIFY's connection being opened while APPLY runs (driver::Driver::open_login), so
/// that VERIFY starts with its first password instead of a key exchange. Nothing is sent
/// as the account before VERIFY; a line that could not be opened is no error (VERIFY
/// opens its own and reports what it finds). One left unused is closed with `close`
/// before any other login; dropped, it is closed off the runtime's threads.
pub(super) struct LineAhead(Option<tokio::task::JoinHandle<Option<driver::LoginLine>>>);

impl LineAhead {
    async fn opened(mut self) -> Option<driver::LoginLine> {
        self.0.take()?.await.ok().flatten()
    }

    /// Closes the line and returns once it is closed (waiting for it to open first):
    /// before another login of the same rotation starts its own connection.
    pub(super) async fn close(self) {
        if let Some(line) = self.opened().await {
            let _ = tokio::task::spawn_blocking(move || drop(line)).await;
        }
    }
}

impl Drop for LineAhead {
    fn drop(&mut self) {
        let (Some(opening), Ok(runtime)) = (self.0.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        runtime.spawn(LineAhead(Some(opening)).close());
    }
}

/// APPLY's connection opened by `driver` (driver::Driver::prepare_apply) and, once it is
/// authenticated, VERIFY's being opened beside it. An error is APPLY's, from before
/// anything changed.
pub(super) async fn prepare_apply(
    driver: &'static dyn driver::Driver,
    account: &Account,
) -> Result<(driver::Prepared, Option<LineAhead>), StageError> {
    let span = tracing::Span::current();
    let host = account.host.clone();
    let prepared = {
        let span = span.clone();
        tokio::task::spawn_blocking(move || span.in_scope(|| driver.prepare_apply(&host)))
            .await
            .map_err(|e| {
                StageError::permanent("INTERNAL_ERROR", format!("apply task panicked: {e}"))
            })?
            .map_err(StageError::driver)?
    };
    if !prepared.is_ready() {
        return Ok((prepared, None));
    }
    let host = account.host.clone();
    let opening = tokio::task::spawn_blocking(move || {
        span.in_scope(|| match driver.open_login(&host) {
            Ok(line) => line,
            Err(e) => {
                tracing::debug!(error = %e, "VERIFY's connection could not be opened ahead");
                None
            }
        })
    });
    Ok((prepared, Some(LineAhead(Some(opening)))))
}

/// Why the heartbeat could not tell whether a stored password still logs in.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CheckError(String);

impl From<StageError> for CheckError {
    fn from(e: StageError) -> Self {
        CheckError(e.error.message)
    }
}

/// Heartbeat: does the stored current password still log in? (current version, outcome)
pub async fn check_current(
    engine: &Engine,
    credential_id: Uuid,
) -> Result<Option<(i32, Login)>, CheckError> {
    let account = load_account(engine, credential_id).await?;
    let mut conn = engine.pool.acquire().await.map_err(StageError::from)?;
    let Some(current) = versions::get(&mut conn, &engine.key, credential_id, State::Current)
        .await
        .map_err(StageError::from)?
    else {
        return Ok(None);
    };
    drop(conn);
    let outcome = login(engine, &account, &current.password).await?;
    Ok(Some((current.version, outcome)))
}
