//! Operations routes without a token: health, readiness and metrics.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::state::ApiState;

/// Health, readiness and metrics: on the API listener, or on `ops_listen` alone.
pub fn health_routes() -> OpenApiRouter<Arc<ApiState>> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// Liveness
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    security(()),
    responses((status = 200, description = "The process answers.", body = String))
)]
async fn healthz() -> &'static str {
    "ok\n"
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum Reach {
    Up,
    Down,
}

impl From<bool> for Reach {
    fn from(up: bool) -> Self {
        if up {
            Reach::Up
        } else {
            Reach::Down
        }
    }
}

/// Whether rotor reaches its database and its broker.
#[derive(Debug, Serialize, ToSchema)]
struct Readiness {
    database: Reach,
    broker: Reach,
}

/// Readiness
///
/// 200 when the database and the broker are reachable, else 503 naming which is not.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operations",
    security(()),
    responses(
        (status = 200, description = "Database and broker reachable.", body = Readiness),
        (status = 503, description = "One is not; the body says which.", body = Readiness)
    )
)]
async fn readyz(State(state): State<Arc<ApiState>>) -> impl IntoResponse {
    let database = sqlx::query_scalar!("SELECT 1 AS \"one!\"")
        .fetch_one(&state.pool)
        .await
        .is_ok();
    let broker = state.broker_up.load(Ordering::Relaxed);
    let body = Readiness {
        database: database.into(),
        broker: broker.into(),
    };
    (
        if database && broker {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(body),
    )
}

/// Prometheus metrics
///
/// Every metric, in the OpenMetrics text format (`crate::metrics`).
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    security(()),
    responses((status = 200, description = "OpenMetrics 1.0 text.", body = String,
        content_type = "application/openmetrics-text"))
)]
async fn metrics(State(state): State<Arc<ApiState>>) -> impl IntoResponse {
    let snapshot = crate::metrics::Snapshot {
        uptime_seconds: state.started.elapsed().as_secs() as i64,
        broker_connected: state.broker_up.load(Ordering::Relaxed),
        database: database_snapshot(&state.pool).await.ok(),
    };
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::render(&snapshot),
    )
}

/// The gauges that describe the database, read in four queries.
async fn database_snapshot(pool: &sqlx::PgPool) -> Result<crate::metrics::Database, sqlx::Error> {
    let tasks = sqlx::query!(r#"SELECT status, count(*) AS "n!" FROM tasks GROUP BY status"#)
        .fetch_all(pool)
        .await?;
    let subtasks = sqlx::query!(r#"SELECT status, count(*) AS "n!" FROM subtasks GROUP BY status"#)
        .fetch_all(pool)
        .await?;
    let credentials =
        sqlx::query!(r#"SELECT status, count(*) AS "n!" FROM credentials GROUP BY status"#)
            .fetch_all(pool)
            .await?;
    let one = sqlx::query!(
        r#"SELECT
             (SELECT count(*) FROM tasks WHERE resolution_status = 'UNRESOLVED') AS "unresolved!",
             (SELECT count(*) FROM subtasks s JOIN credentials c ON c.id = s.credential_id
               WHERE s.status IN ('PENDING', 'IN_PROGRESS') AND s.not_before <= now()
                 AND CASE WHEN c.lease_subtask IS NULL THEN s.status = 'PENDING'
                          WHEN c.lease_subtask = s.id THEN c.lease_expires_at IS NULL OR c.lease_expires_at < now()
                          ELSE false END) AS "runnable!",
             (SELECT count(*) FROM credentials
               WHERE auto_rotate_days IS NOT NULL AND auto_failures > 0 AND next_rotation_at IS NULL
                 AND auto_task_id IS NULL AND NOT auto_paused AND status = 'ACTIVE') AS "stopped!",
             (SELECT COALESCE(GREATEST(0, EXTRACT(EPOCH FROM now() - min(next_rotation_at))), 0)::int8 FROM credentials
               WHERE next_rotation_at <= now() AND auto_rotate_days IS NOT NULL AND NOT auto_paused AND status = 'ACTIVE') AS "lag!",
             (SELECT open FROM scheduler_breaker) AS "breaker_open!""#
    )
    .fetch_one(pool)
    .await?;
    Ok(crate::metrics::Database {
        tasks: tasks.into_iter().map(|r| (r.status, r.n)).collect(),
        tasks_unresolved: one.unresolved,
        subtasks: subtasks.into_iter().map(|r| (r.status, r.n)).collect(),
        subtasks_runnable: one.runnable,
        credentials: credentials.into_iter().map(|r| (r.status, r.n)).collect(),
        auto_rotate_stopped: one.stopped,
        scheduler_lag_seconds: one.lag,
        breaker_open: one.breaker_open,
    })
}
