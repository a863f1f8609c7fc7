//! Bulk rotation in waves (SPEC section 8): credentials chosen by resource globs, type
//! and account type rotate as a canary, then waves twice as large as the one before,
//! one host after another within each wave. The failures are counted as subtasks end:
//! past `maxFailures` (or `maxFailureRatio` of those done), the running wave is cancelled
//! (what has not started becomes CANCELLED), no later wave starts, and the bulk is
//! STOPPED. The plan and its progress are rows; one runner at a time (`runner`) moves
//! every RUNNING bulk on, so a restart resumes where it stood.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::access::{Glob, Requester};
use crate::engine::Error;

/// What to rotate, and how carefully.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BulkSpec {
    /// Globs on resource ids (`web-*`); at least one.
    pub resources: Vec<String>,
    /// Only resources of this type.
    pub resource_type: Option<String>,
    /// Only accounts of this type (USER, SYSTEM, SERVICE).
    pub account_type: Option<String>,
    /// How many credentials the first wave (the canary) rotates; default 1.
    #[serde(default = "one")]
    #[schema(minimum = 1, maximum = 1000, default = 1)]
    pub canary: i32,
    /// Failed rotations tolerated; one more stops the bulk. Default 0.
    #[serde(default)]
    #[schema(minimum = 0, default = 0)]
    pub max_failures: i32,
    /// Also stop when more than this share of the rotations done failed (0 to 1).
    #[schema(minimum = 0, maximum = 1)]
    pub max_failure_ratio: Option<f64>,
}

fn one() -> i32 {
    1
}

/// Why a bulk cannot start.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error(transparent)]
    Store(#[from] Error),
}

fn invalid(field: &str, message: impl Into<String>) -> Refused {
    Refused::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// A bulk as `GET /v1/rotations/{id}` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Bulk {
    pub id: Uuid,
    /// RUNNING, SUCCESSFUL (all rotated), FAILED (all tried, some failed within the
    /// budget) or STOPPED (the budget was passed; the rest never started).
    pub status: String,
    pub message: String,
    pub total: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
    /// Not started yet (in a later wave, or waiting in the running one).
    pub pending: i64,
    pub waves: Vec<Wave>,
    pub spec: BulkSpec,
    pub creation_timestamp: DateTime<Utc>,
    pub completion_timestamp: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Wave {
    pub number: i32,
    pub size: i32,
    /// The wave's task, once it has started.
    pub task_id: Option<Uuid>,
    /// The task's status; NOT_STARTED before it exists, SKIPPED when nothing was left
    /// to rotate in it.
    pub status: String,
}

/// Checks `spec`, picks and orders the credentials, and records the bulk (RUNNING).
pub async fn create(
    pool: &PgPool,
    spec: BulkSpec,
    who: &Requester,
    caller_patterns: &[String],
) -> Result<Bulk, Refused> {
    if spec.resources.is_empty() {
        return Err(invalid("resources", "name at least one resource glob"));
    }
    let mut globs = Vec::new();
    for (i, g) in spec.resources.iter().enumerate() {
        globs.push(
            Glob::new(g)
                .map_err(|m| invalid(&format!("resources[{i}]"), m))?
                .to_like(),
        );
    }
    if !(1..=1000).contains(&spec.canary) {
        return Err(invalid("canary", "must be 1 to 1000"));
    }
    if spec.max_failures < 0 {
        return Err(invalid("maxFailures", "must be 0 or more"));
    }
    if spec
        .max_failure_ratio
        .is_some_and(|r| !(r > 0.0 && r <= 1.0))
    {
        return Err(invalid(
            "maxFailureRatio",
            "must be more than 0 and at most 1",
        ));
    }
    if let Some(t) = &spec.account_type {
        if !crate::vocab::ACCOUNT_TYPES.contains(&t.as_str()) {
            return Err(invalid(
                "accountType",
                format!("one of {}", crate::vocab::ACCOUNT_TYPES.join(", ")),
            ));
        }
    }
    // One account of each host, then the second of each, ...: a wave spreads over hosts.
    let ids = sqlx::query_scalar!(
        r#"SELECT id AS "id!" FROM (
             SELECT c.id, c.resource_id, row_number() OVER (PARTITION BY c.resource_id ORDER BY c.username) AS n
               FROM credentials c JOIN resources r ON r.id = c.resource_id
              WHERE r.deleted_at IS NULL AND r.id LIKE ANY($1) AND r.id LIKE ANY($2)
                AND ($3::text IS NULL OR r.type = $3) AND ($4::text IS NULL OR c.account_type = $4)
                AND c.status = 'ACTIVE') picked
           ORDER BY n, resource_id"#,
        &globs,
        caller_patterns,
        spec.resource_type,
        spec.account_type
    )
    .fetch_all(pool)
    .await
    .map_err(Error::from)?;
    if ids.is_empty() {
        return Err(invalid("resources", "no ACTIVE credential matches"));
    }
    let id = Uuid::new_v4();
    let mut tx = pool.begin().await.map_err(Error::from)?;
    sqlx::query!(
        "INSERT INTO bulk_rotations (id, status, spec, requested_by_kind, requested_by_name, credential_ids, max_failures, max_failure_ratio)
         VALUES ($1, 'RUNNING', $2, $3, $4, $5, $6, $7)",
        id,
        serde_json::to_value(&spec).expect("a spec serializes"),
        who.kind.to_string(),
        who.name,
        &ids,
        spec.max_failures,
        spec.max_failure_ratio
    )
    .execute(&mut *tx)
    .await
    .map_err(Error::from)?;
    let (mut first, mut size, mut number) = (0usize, spec.canary as usize, 1);
    while first < ids.len() {
        let n = size.min(ids.len() - first);
        sqlx::query!(
            "INSERT INTO bulk_waves (bulk_id, number, first, size) VALUES ($1, $2, $3, $4)",
            id,
            number,
            first as i32,
            n as i32
        )
        .execute(&mut *tx)
        .await
        .map_err(Error::from)?;
        first += n;
        size *= 2;
        number += 1;
    }
    tx.commit().await.map_err(Error::from)?;
    tracing::info!(bulk_id = %id, credentials = ids.len(), canary = spec.canary, "bulk rotation planned");
    Ok(load(pool, id).await?.expect("just recorded"))
}

/// Whether `who` started bulk `id`.
pub async fn started_by(pool: &PgPool, id: Uuid, who: &Requester) -> Result<bool, Error> {
    Ok(sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM bulk_rotations WHERE id = $1 AND requested_by_kind = $2 AND requested_by_name = $3"#,
        id,
        who.kind.to_string(),
        who.name
    )
    .fetch_one(pool)
    .await?
        > 0)
}

/// The bulk with its waves and counts; None if unknown.
pub async fn load(pool: &PgPool, id: Uuid) -> Result<Option<Bulk>, Error> {
    let Some(b) = sqlx::query!(
        "SELECT status, spec, message, cardinality(credential_ids) AS \"total!\", created_at, completed_at
           FROM bulk_rotations WHERE id = $1",
        id
    )
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    let waves = sqlx::query!(
        "SELECT w.number, w.size, w.task_id, w.skipped, t.status AS \"status?\"
           FROM bulk_waves w LEFT JOIN tasks t ON t.id = w.task_id WHERE w.bulk_id = $1 ORDER BY w.number",
        id
    )
    .fetch_all(pool)
    .await?;
    let counts = counts(pool, id).await?;
    let started: i64 = waves
        .iter()
        .filter(|w| w.task_id.is_some() || w.skipped)
        .map(|w| i64::from(w.size))
        .sum();
    Ok(Some(Bulk {
        id,
        status: b.status,
        message: b.message,
        total: b.total.into(),
        succeeded: counts.succeeded,
        failed: counts.failed,
        cancelled: counts.cancelled,
        pending: i64::from(b.total) - started + counts.waiting,
        waves: waves
            .into_iter()
            .map(|w| Wave {
                number: w.number,
                size: w.size,
                task_id: w.task_id,
                status: w
                    .status
                    .unwrap_or_else(|| if w.skipped { "SKIPPED" } else { "NOT_STARTED" }.into()),
            })
            .collect(),
        spec: serde_json::from_value(b.spec)
            .map_err(|e| Error::Db(sqlx::Error::Decode(Box::new(e))))?,
        creation_timestamp: b.created_at,
        completion_timestamp: b.completed_at,
    }))
}

#[derive(Default)]
pub(super) struct Counts {
    pub(super) succeeded: i64,
    pub(super) failed: i64,
    pub(super) cancelled: i64,
    /// Subtasks of started waves that have not ended.
    pub(super) waiting: i64,
}

pub(super) async fn counts(pool: &PgPool, id: Uuid) -> Result<Counts, Error> {
    let rows = sqlx::query!(
        r#"SELECT s.status, count(*) AS "n!" FROM bulk_waves w JOIN subtasks s ON s.task_id = w.task_id
            WHERE w.bulk_id = $1 GROUP BY s.status"#,
        id
    )
    .fetch_all(pool)
    .await?;
    let mut c = Counts::default();
    for r in rows {
        match r.status.as_str() {
            "SUCCESSFUL" => c.succeeded += r.n,
            "FAILED" => c.failed += r.n,
            "CANCELLED" => c.cancelled += r.n,
            _ => c.waiting += r.n,
        }
    }
    Ok(c)
}

pub mod runner;
