//! Operations routes without a token: health, readiness, metrics, the OpenAPI document.

use std::fmt::Write;
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

/// Prometheus text format.
async fn metrics(State(state): State<Arc<ApiState>>) -> impl IntoResponse {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP rotor_up 1 while the process runs.\n# TYPE rotor_up gauge\nrotor_up 1"
    );
    let _ = writeln!(
        out,
        "# HELP rotor_uptime_seconds Seconds since start.\n# TYPE rotor_uptime_seconds gauge"
    );
    let _ = writeln!(
        out,
        "rotor_uptime_seconds {}",
        state.started.elapsed().as_secs()
    );
    let _ = writeln!(out, "# HELP rotor_broker_connected 1 while the AMQP intake is connected.\n# TYPE rotor_broker_connected gauge");
    let _ = writeln!(
        out,
        "rotor_broker_connected {}",
        u8::from(state.broker_up.load(Ordering::Relaxed))
    );
    if let Ok(rows) = sqlx::query!(r#"SELECT status, count(*) AS "n!" FROM tasks GROUP BY status"#)
        .fetch_all(&state.pool)
        .await
    {
        let _ = writeln!(
            out,
            "# HELP rotor_tasks Tasks by status.\n# TYPE rotor_tasks gauge"
        );
        for r in rows {
            let _ = writeln!(out, "rotor_tasks{{status=\"{}\"}} {}", r.status, r.n);
        }
    }
    if let Ok(rows) =
        sqlx::query!(r#"SELECT status, count(*) AS "n!" FROM subtasks GROUP BY status"#)
            .fetch_all(&state.pool)
            .await
    {
        let _ = writeln!(
            out,
            "# HELP rotor_subtasks Subtasks by status.\n# TYPE rotor_subtasks gauge"
        );
        for r in rows {
            let _ = writeln!(out, "rotor_subtasks{{status=\"{}\"}} {}", r.status, r.n);
        }
    }
    if let Ok(rows) =
        sqlx::query!(r#"SELECT status, count(*) AS "n!" FROM credentials GROUP BY status"#)
            .fetch_all(&state.pool)
            .await
    {
        let _ = writeln!(
            out,
            "# HELP rotor_credentials Credentials by status.\n# TYPE rotor_credentials gauge"
        );
        for r in rows {
            let _ = writeln!(out, "rotor_credentials{{status=\"{}\"}} {}", r.status, r.n);
        }
    }
    let (ticks, led) = crate::metrics::scheduler_ticks();
    let _ = writeln!(out, "# HELP rotor_scheduler_ticks_total Scheduler ticks run by this process.\n# TYPE rotor_scheduler_ticks_total counter");
    let _ = writeln!(out, "rotor_scheduler_ticks_total {ticks}");
    let _ = writeln!(out, "# HELP rotor_scheduler_leader_ticks_total Ticks in which this process held the scheduler lock.\n# TYPE rotor_scheduler_leader_ticks_total counter");
    let _ = writeln!(out, "rotor_scheduler_leader_ticks_total {led}");
    let (beats, drifted) = crate::metrics::heartbeats();
    let _ = writeln!(out, "# HELP rotor_heartbeat_checks_total Stored passwords checked by the heartbeat in this process.\n# TYPE rotor_heartbeat_checks_total counter");
    let _ = writeln!(out, "rotor_heartbeat_checks_total {beats}");
    let _ = writeln!(out, "# HELP rotor_heartbeat_out_of_sync_total Credentials this process found changed behind rotor's back.\n# TYPE rotor_heartbeat_out_of_sync_total counter");
    let _ = writeln!(out, "rotor_heartbeat_out_of_sync_total {drifted}");
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
