//! Operations routes without a token: health, readiness, metrics, the OpenAPI document.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use super::state::ApiState;

const OPENAPI: &str = include_str!("openapi.json");

/// Health, readiness and metrics: on the API listener, or on `ops_listen` alone.
pub fn health_routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

pub fn routes() -> Router<Arc<ApiState>> {
    Router::new().route(
        "/openapi.json",
        get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
    )
}

/// 200 when the database and the broker are reachable, else 503 naming which is not.
async fn readyz(State(state): State<Arc<ApiState>>) -> impl IntoResponse {
    let database = sqlx::query_scalar!("SELECT 1 AS \"one!\"")
        .fetch_one(&state.pool)
        .await
        .is_ok();
    let broker = state.broker_up.load(Ordering::Relaxed);
    let body = serde_json::json!({"database": if database { "up" } else { "down" }, "broker": if broker { "up" } else { "down" }});
    (
        if database && broker {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(body),
    )
}

/// Every metric, in the OpenMetrics text format (`crate::metrics`).
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
               WHERE next_rotation_at <= now() AND auto_rotate_days IS NOT NULL AND NOT auto_paused AND status = 'ACTIVE') AS "lag!""#
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
    })
}
