//! Pre-flight (SPEC section 8): for each selected account, the checks of
//! `driver::probe`, changing nothing on the target. Resources are probed in parallel, each
//! with one admin session for all of its accounts.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use serde::Serialize;
use uuid::Uuid;

use super::account::{load_account, Account};
use super::context::Engine;
use super::error::Error;
use super::lifecycle;
use crate::driver::probe::{self, Aging, Check, CheckName, CheckStatus, Subject};
use crate::vault::versions::{self, State};

/// How many resources are probed at once.
const PARALLEL: usize = 16;

/// Which accounts to check.
pub struct Selection<'a> {
    /// Exact resource ids; None: every resource the caller may see.
    pub resource_ids: Option<&'a [String]>,
    /// Exact usernames; None: every account.
    pub usernames: Option<&'a [String]>,
    /// Exact credentials; None: every credential.
    pub credential_ids: Option<&'a [Uuid]>,
    /// Only resources of this type.
    pub resource_type: Option<&'a str>,
    /// Also log in with the stored password (counts toward a lockout when refused).
    pub try_password: bool,
    /// The caller's resource globs, as SQL LIKE patterns.
    pub resource_patterns: Vec<String>,
}

/// One account's checks.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountChecks {
    pub resource_id: String,
    pub username: String,
    pub checks: Vec<Check>,
    /// What `chage -l` said, when the host told it (for the expirations API).
    #[serde(skip)]
    pub aging: Option<Aging>,
    #[serde(skip)]
    pub credential_id: Uuid,
}

impl AccountChecks {
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.status == CheckStatus::Fail)
    }
}

/// The resource ids among `wanted` that do not exist (or lie outside the caller's globs).
pub async fn unknown_resources(
    engine: &Engine,
    wanted: &[String],
    patterns: &[String],
) -> Result<Vec<String>, Error> {
    let found = sqlx::query_scalar!(
        "SELECT id FROM resources WHERE id = ANY($1) AND deleted_at IS NULL AND id LIKE ANY($2)",
        wanted,
        patterns
    )
    .fetch_all(&engine.pool)
    .await?;
    Ok(wanted
        .iter()
        .filter(|w| !found.contains(w))
        .cloned()
        .collect())
}

/// Runs the checks for every selected account; sorted by resource and username.
pub async fn run(engine: &Engine, selection: &Selection<'_>) -> Result<Vec<AccountChecks>, Error> {
    let rows = sqlx::query!(
        r#"SELECT c.id, c.resource_id FROM credentials c JOIN resources r ON r.id = c.resource_id
            WHERE r.deleted_at IS NULL AND r.id LIKE ANY($1)
              AND ($2::text[] IS NULL OR r.id = ANY($2)) AND ($3::text[] IS NULL OR c.username = ANY($3))
              AND ($4::uuid[] IS NULL OR c.id = ANY($4)) AND ($5::text IS NULL OR r.type = $5)
            ORDER BY r.id, c.username"#,
        &selection.resource_patterns,
        selection.resource_ids,
        selection.usernames,
        selection.credential_ids,
        selection.resource_type
    )
    .fetch_all(&engine.pool)
    .await?;
    let mut by_resource: BTreeMap<String, Vec<Uuid>> = BTreeMap::new();
    for r in rows {
        by_resource.entry(r.resource_id).or_default().push(r.id);
    }
    let today = chrono::Utc::now().date_naive();
    let results: Vec<Vec<AccountChecks>> = futures_util::stream::iter(by_resource.into_values())
        .map(|ids| probe_resource(engine, ids, selection.try_password, today))
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let mut all: Vec<AccountChecks> = results.into_iter().flatten().collect();
    all.sort_by(|a, b| (&a.resource_id, &a.username).cmp(&(&b.resource_id, &b.username)));
    // What the hosts said of password aging plans the rotations ahead of the expiry.
    let now = chrono::Utc::now();
    let mut conn = engine.pool.acquire().await?;
    for account in &all {
        if let Some(aging) = account.aging {
            let expires_on = if aging.must_change {
                Some(today)
            } else {
                aging.password_expires
            };
            lifecycle::record_expiry(
                &mut conn,
                &engine.schedule,
                account.credential_id,
                expires_on,
                aging.max_days,
                now,
            )
            .await?;
        }
    }
    Ok(all)
}

/// The checks of one resource's accounts, on one admin session.
async fn probe_resource(
    engine: &Engine,
    ids: Vec<Uuid>,
    try_password: bool,
    today: chrono::NaiveDate,
) -> Vec<AccountChecks> {
    let mut accounts: Vec<Account> = Vec::new();
    let mut refused = Vec::new();
    let mut subjects = Vec::new();
    for id in ids {
        match load_account(engine, id).await {
            Ok(account) => {
                let current = if try_password {
                    current_password(engine, id).await
                } else {
                    None
                };
                // A stored password is tried only within the lockout budget, and not while a
                // rotation holds the credential (its logins count too).
                let hold_password = match try_password && current.is_some() {
                    true if leased(engine, id).await => Some(
                        "a rotation is running on it: its password is not tried now".to_string(),
                    ),
                    true => super::lockout::check(engine, id, &account.username, 1)
                        .await
                        .err()
                        .map(|e| e.error.message),
                    false => None,
                };
                subjects.push(Subject {
                    username: account.username.clone(),
                    current,
                    try_password,
                    hold_password,
                });
                accounts.push(account);
            }
            Err(e) => refused.push((id, e.error.message)),
        }
    }
    let mut out: Vec<AccountChecks> = Vec::new();
    for (id, why) in refused {
        out.push(unprobed(engine, id, why).await);
    }
    let Some(first) = accounts.first() else {
        return out;
    };
    if !crate::driver::is_ssh(&first.platform) {
        let why = format!(
            "platform {}: the pre-flight checks are SSH's",
            first.platform
        );
        for account in accounts {
            out.push(AccountChecks {
                resource_id: account.resource_id,
                username: account.username,
                checks: all_skipped(&why),
                aging: None,
                credential_id: account.credential_id,
            });
        }
        return out;
    }
    let host = first.host.clone();
    let needs_admin = first.platform == "linux-chpasswd";
    let span = tracing::Span::current();
    let reports = tokio::task::spawn_blocking(move || {
        span.in_scope(|| probe::probe(&host, &subjects, needs_admin, today))
    })
    .await
    .unwrap_or_default();
    for (account, report) in accounts.into_iter().zip(reports) {
        // The stored password's outcome, when it was tried, counts toward the budget.
        if let Some(outcome) = report.password_outcome {
            if let Err(e) = super::lockout::record(engine, account.credential_id, &[outcome]).await
            {
                tracing::warn!(error = %e, "could not count a pre-flight login toward the lockout budget");
            }
        }
        tracing::info!(resource_id = %account.resource_id, username = %account.username,
            failed = report.checks.iter().filter(|c| c.status == CheckStatus::Fail).count(),
            tried_password = try_password, "preflight checked an account");
        out.push(AccountChecks {
            resource_id: account.resource_id,
            username: account.username,
            checks: report.checks,
            aging: report.aging,
            credential_id: account.credential_id,
        });
    }
    out
}

/// Whether a worker holds the credential's lease (a rotation is running on it).
async fn leased(engine: &Engine, id: Uuid) -> bool {
    sqlx::query_scalar!(
        r#"SELECT lease_subtask IS NOT NULL AS "leased!" FROM credentials WHERE id = $1"#,
        id
    )
    .fetch_optional(&engine.pool)
    .await
    .ok()
    .flatten()
    .unwrap_or(true)
}

async fn current_password(engine: &Engine, id: Uuid) -> Option<secrecy::SecretString> {
    let mut conn = engine.pool.acquire().await.ok()?;
    versions::get(&mut conn, &engine.key, id, State::Current)
        .await
        .ok()
        .flatten()
        .map(|v| v.password)
}

fn all_skipped(why: &str) -> Vec<Check> {
    CheckName::ALL
        .into_iter()
        .map(|name| Check {
            name,
            status: CheckStatus::Skipped,
            message: why.to_string(),
        })
        .collect()
}

/// An account rotor would not even try (its resource's admin file is refused, ...).
async fn unprobed(engine: &Engine, id: Uuid, why: String) -> AccountChecks {
    let row = sqlx::query!(
        "SELECT username, resource_id FROM credentials WHERE id = $1",
        id
    )
    .fetch_optional(&engine.pool)
    .await
    .ok()
    .flatten();
    let (username, resource_id) = row.map(|r| (r.username, r.resource_id)).unwrap_or_default();
    let checks = CheckName::ALL
        .into_iter()
        .map(|name| Check {
            name,
            status: if name == CheckName::AdminAuth {
                CheckStatus::Fail
            } else {
                CheckStatus::Skipped
            },
            message: if name == CheckName::AdminAuth {
                why.clone()
            } else {
                "rotor cannot use this resource's configuration".to_string()
            },
        })
        .collect();
    AccountChecks {
        resource_id,
        username,
        checks,
        aging: None,
        credential_id: id,
    }
}
