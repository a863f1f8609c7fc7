//! The HTTP API (SPEC section 4): bearer tokens with scopes, VCF-shaped answers.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::config::{HttpSettings, Scope};
use crate::engine::view;
use crate::vcf_error::VcfError;

pub struct Token {
    pub name: String,
    digest: [u8; 32],
    pub scopes: Vec<Scope>,
}

pub struct ApiState {
    pub pool: PgPool,
    pub tokens: Vec<Token>,
}

/// Reads the configured tokens (inline or from their files).
pub fn load_tokens(settings: &HttpSettings) -> Result<Vec<Token>, crate::config::Error> {
    settings
        .token
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let secret = crate::config::secret(&format!("http.token[{i}].token"), &t.token, &t.token_file)?;
            Ok(Token { name: t.name.clone(), digest: Sha256::digest(secret.expose_secret().as_bytes()).into(), scopes: t.scopes.clone() })
        })
        .collect()
}

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/v1/credentials/tasks", get(list_tasks))
        .route("/v1/credentials/tasks/{id}", get(get_task))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route") })
        .with_state(state)
}

/// An error answered as a VCF Error body.
pub struct ApiError {
    status: StatusCode,
    body: VcfError,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError { status, body: VcfError::new(code, message) }
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        let err = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE", "the database is not reachable; try again");
        tracing::error!(error = %e, reference = %err.body.reference_token, "HTTP request failed");
        err
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// The caller, authenticated by its bearer token.
pub struct Caller {
    pub name: String,
    scopes: Vec<Scope>,
}

impl Caller {
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", format!("this token lacks scope `{}`", scope.as_str())))
        }
    }
}

impl FromRequestParts<Arc<ApiState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Self, ApiError> {
        let unauthorized = || ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "missing or invalid bearer token");
        let value = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).ok_or_else(unauthorized)?;
        let token = value.strip_prefix("Bearer ").ok_or_else(unauthorized)?.trim();
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Compare against every token in constant time, so timing tells nothing.
        let mut found = None;
        for t in &state.tokens {
            if bool::from(t.digest.ct_eq(&digest)) {
                found = Some(t);
            }
        }
        let t = found.ok_or_else(unauthorized)?;
        Ok(Caller { name: t.name.clone(), scopes: t.scopes.clone() })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageQuery {
    status: Option<String>,
    page_number: Option<i64>,
    page_size: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PageMetadata {
    page_number: i64,
    page_size: i64,
    total_elements: i64,
    total_pages: i64,
}

#[derive(Debug, Serialize)]
pub struct PageOf<T> {
    elements: Vec<T>,
    #[serde(rename = "pageMetadata")]
    page_metadata: PageMetadata,
}

fn page_params(q: &PageQuery) -> Result<(i64, i64), ApiError> {
    let number = q.page_number.unwrap_or(1);
    let size = q.page_size.unwrap_or(20);
    if number < 1 {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "pageNumber: must be 1 or more"));
    }
    if !(1..=100).contains(&size) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "pageSize: must be 1 to 100"));
    }
    Ok((number, size))
}

async fn list_tasks(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<PageOf<view::Task>>, ApiError> {
    caller.require(Scope::TasksView)?;
    let Query(q) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", e.body_text()))?;
    let (number, size) = page_params(&q)?;
    if let Some(s) = &q.status {
        s.parse::<crate::engine::model::TaskStatus>()
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", format!("status: unknown status `{s}`")))?;
    }
    let page = view::page(&state.pool, q.status.as_deref(), number, size).await.map_err(ApiError::internal)?;
    Ok(Json(PageOf {
        elements: page.tasks,
        page_metadata: PageMetadata {
            page_number: number,
            page_size: size,
            total_elements: page.total,
            total_pages: (page.total + size - 1) / size,
        },
    }))
}

async fn get_task(caller: Caller, State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Result<Json<view::Task>, ApiError> {
    caller.require(Scope::TasksView)?;
    let id: Uuid = id
        .parse()
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "id: not a task id (UUID)"))?;
    let task = view::load(&state.pool, id).await.map_err(ApiError::internal)?;
    task.map(Json).ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "TASK_NOT_FOUND", format!("no task {id}")))
}
