//! VCF's credential expirations (SPEC section 8). A check reads each selected
//! credential's password aging on its target through the pre-flight checks (read-only:
//! `chage -l`, `passwd -S`), which also plan rotations ahead of the expiry, and keeps
//! what it found for `GET /v1/credentials/expirations/{id}`.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::context::Engine;
use super::error::Error;
use super::lifecycle;
use super::preflight::{self, AccountChecks, Selection};
use crate::access::Requester;
use crate::driver::probe::{CheckName, CheckStatus};

/// A check not finished by then (its process died) reads as FAILED.
const DEADLINE_MINUTES: i64 = 30;

/// Which credentials a check covers.
pub struct Scope {
    pub credential_ids: Option<Vec<Uuid>>,
    pub resource_type: Option<String>,
    /// The caller's resource globs, as SQL LIKE patterns.
    pub resource_patterns: Vec<String>,
}

/// VCF's `CredentialsExpiration`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Expirations {
    pub id: Uuid,
    /// IN_PROGRESS, COMPLETED or FAILED.
    pub status: String,
    pub creation_timestamp: DateTime<Utc>,
    pub completion_timestamp: Option<DateTime<Utc>>,
    pub elements: Vec<ExpirationCheck>,
}

/// VCF's `CredentialExpirationCheck`: `id` is the credential's (also as `credentialId`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExpirationCheck {
    pub id: Uuid,
    pub credential_id: Uuid,
    pub username: String,
    pub resource: ExpirationResource,
    pub expiry: Expiry,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExpirationResource {
    pub resource_id: String,
    pub resource_name: String,
    pub resource_ip: String,
    pub resource_type: String,
}

/// VCF's `ExpirationDetails`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Expiry {
    /// When the password expires; null when it never does or is not known.
    pub expiry_date: Option<NaiveDate>,
    pub last_checked_date: DateTime<Utc>,
    /// ACTIVE (read), ERROR (the host or the admin failed), UNKNOWN (reached, not read).
    pub connectivity_status: String,
    /// ACTIVE, EXPIRING (within `scheduler.expiry_margin_days`), EXPIRED or UNKNOWN.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connectivity_error_details: Option<ConnectivityError>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectivityError {
    pub error_code: String,
    pub error_message: String,
}

/// Records a new check and runs it in the background; returns it as it starts.
pub async fn start(
    engine: Arc<Engine>,
    scope: Scope,
    who: &Requester,
) -> Result<Expirations, Error> {
    let id = Uuid::new_v4();
    let now = Utc::now();
    sqlx::query!(
        "INSERT INTO expiration_checks (id, status, requested_by, created_at, deadline) VALUES ($1, 'IN_PROGRESS', $2, $3, $4)",
        id,
        serde_json::to_value(who).unwrap_or_default(),
        now,
        now + chrono::Duration::minutes(DEADLINE_MINUTES)
    )
    .execute(&engine.pool)
    .await?;
    tokio::spawn(async move {
        if let Err(e) = run(&engine, id, &scope).await {
            tracing::warn!(check_id = %id, error = %e, "expiration check failed");
            let _ = sqlx::query!(
                "UPDATE expiration_checks SET status = 'FAILED', completed_at = now() WHERE id = $1",
                id
            )
            .execute(&engine.pool)
            .await;
        }
    });
    Ok(Expirations {
        id,
        status: "IN_PROGRESS".into(),
        creation_timestamp: now,
        completion_timestamp: None,
        elements: Vec::new(),
    })
}

/// Reads the aging of every credential in `scope` (plans rotations before expiries on
/// the way) and keeps the results under check `id`.
async fn run(engine: &Engine, id: Uuid, scope: &Scope) -> Result<(), Error> {
    let selection = Selection {
        resource_ids: None,
        usernames: None,
        credential_ids: scope.credential_ids.as_deref(),
        resource_type: scope.resource_type.as_deref(),
        try_password: false,
        resource_patterns: scope.resource_patterns.clone(),
    };
    let found = preflight::run(engine, &selection).await?;
    let today = Utc::now().date_naive();
    let margin = engine.schedule.expiry_margin_days();
    let mut tx = engine.pool.begin().await?;
    for account in &found {
        let (connectivity, status, expiry_date, error) = classify(account, today, margin);
        sqlx::query!(
            "INSERT INTO expiration_results (check_id, credential_id, connectivity, status, expiry_date, checked_at, error)
             VALUES ($1, $2, $3, $4, $5, now(), $6)",
            id,
            account.credential_id,
            connectivity,
            status,
            expiry_date,
            error
        )
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query!(
        "UPDATE expiration_checks SET status = 'COMPLETED', completed_at = now() WHERE id = $1",
        id
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(check_id = %id, credentials = found.len(), "expiration check done");
    Ok(())
}

/// (connectivityStatus, status, expiryDate, error) of one account's checks.
fn classify(
    account: &AccountChecks,
    today: NaiveDate,
    margin: i32,
) -> (
    &'static str,
    &'static str,
    Option<NaiveDate>,
    Option<String>,
) {
    let failed = account.checks.iter().find(|c| {
        c.status == CheckStatus::Fail
            && matches!(
                c.name,
                CheckName::Reachable
                    | CheckName::HostKey
                    | CheckName::AdminAuth
                    | CheckName::AccountExists
            )
    });
    if let Some(c) = failed {
        return (
            "ERROR",
            "UNKNOWN",
            None,
            Some(format!("{}: {}", c.name, c.message)),
        );
    }
    let Some(aging) = account.aging else {
        let why = account
            .checks
            .iter()
            .find(|c| c.name == CheckName::PasswordExpiry)
            .map(|c| c.message.clone());
        return ("UNKNOWN", "UNKNOWN", None, why);
    };
    if aging.must_change {
        return ("ACTIVE", "EXPIRED", Some(today), None);
    }
    let status = match aging.password_expires {
        Some(day) if day <= today => "EXPIRED",
        Some(day) if (day - today).num_days() <= i64::from(margin) => "EXPIRING",
        _ => "ACTIVE",
    };
    ("ACTIVE", status, aging.password_expires, None)
}

/// A check with its results, those on resources `patterns` covers; None if unknown.
pub async fn load(
    engine: &Engine,
    id: Uuid,
    patterns: &[String],
) -> Result<Option<Expirations>, Error> {
    let Some(check) = sqlx::query!(
        "UPDATE expiration_checks SET status = CASE WHEN status = 'IN_PROGRESS' AND deadline < now() THEN 'FAILED' ELSE status END
          WHERE id = $1 RETURNING status, created_at, completed_at",
        id
    )
    .fetch_optional(&engine.pool)
    .await?
    else {
        return Ok(None);
    };
    let rows = sqlx::query!(
        "SELECT x.credential_id, x.connectivity, x.status, x.expiry_date, x.checked_at, x.error,
                c.username, r.id AS resource_id, r.name AS resource_name, r.address, r.type AS resource_type
           FROM expiration_results x JOIN credentials c ON c.id = x.credential_id JOIN resources r ON r.id = c.resource_id
          WHERE x.check_id = $1 AND r.id LIKE ANY($2) AND r.deleted_at IS NULL ORDER BY r.id, c.username",
        id,
        patterns
    )
    .fetch_all(&engine.pool)
    .await?;
    let elements = rows
        .into_iter()
        .map(|r| ExpirationCheck {
            id: r.credential_id,
            credential_id: r.credential_id,
            username: r.username,
            resource: ExpirationResource {
                resource_id: r.resource_id,
                resource_name: r.resource_name,
                resource_ip: r.address,
                resource_type: r.resource_type,
            },
            expiry: Expiry {
                expiry_date: r.expiry_date,
                last_checked_date: r.checked_at,
                connectivity_error_details: (r.connectivity == "ERROR").then(|| {
                    ConnectivityError {
                        error_code: "CONNECTIVITY_ERROR".into(),
                        error_message: r.error.clone().unwrap_or_default(),
                    }
                }),
                connectivity_status: r.connectivity,
                status: r.status,
            },
        })
        .collect();
    Ok(Some(Expirations {
        id,
        status: check.status,
        creation_timestamp: check.created_at,
        completion_timestamp: check.completed_at,
        elements,
    }))
}

/// The scheduler's round: reads the aging of auto-rotating credentials not read for a
/// day, at most `batch` of them. Returns how many were read.
pub async fn refresh_due(engine: &Engine, batch: i64) -> Result<usize, Error> {
    let ids = sqlx::query_scalar!(
        "SELECT c.id FROM credentials c JOIN resources r ON r.id = c.resource_id
          WHERE c.auto_rotate_days IS NOT NULL AND NOT c.auto_paused AND c.status = 'ACTIVE' AND r.deleted_at IS NULL
            AND (c.expiry_checked_at IS NULL OR c.expiry_checked_at < now() - interval '20 hours')
          ORDER BY c.expiry_checked_at NULLS FIRST LIMIT $1",
        batch
    )
    .fetch_all(&engine.pool)
    .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    let selection = Selection {
        resource_ids: None,
        usernames: None,
        credential_ids: Some(&ids),
        resource_type: None,
        try_password: false,
        resource_patterns: vec!["%".into()],
    };
    let read = preflight::run(engine, &selection).await?.len();
    // Those whose aging could not be read wait for the next round too, not the next minute.
    lifecycle::expiry_attempted(&mut *engine.pool.acquire().await?, &ids, Utc::now()).await?;
    Ok(read)
}
