//! The HTTP API (SPEC section 4): bearer tokens with scopes; VCF-shaped answers on
//! VCF and rotor routes, PrivX-shaped ones on PrivX routes. One file per family.

mod ops;
mod privx;
mod resources;
mod vcf;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use secrecy::ExposeSecret;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::config::{HttpSettings, Scope};
use crate::vcf_error::VcfError;

pub struct Token {
    pub name: String,
    digest: [u8; 32],
    pub scopes: Vec<Scope>,
}

pub struct ApiState {
    pub pool: PgPool,
    pub tokens: Vec<Token>,
    pub submitter: Arc<crate::ingress::submit::Submitter>,
    pub started: std::time::Instant,
    /// Whether the AMQP intake is connected (for /readyz).
    pub broker_up: Arc<std::sync::atomic::AtomicBool>,
    pub max_body_bytes: usize,
    /// Policy per resource type, overriding the presets' mapping.
    pub type_policy: std::collections::BTreeMap<String, String>,
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
    let limit = axum::extract::DefaultBodyLimit::max(state.max_body_bytes);
    Router::new()
        .merge(ops::routes())
        .merge(vcf::routes())
        .merge(privx::routes())
        .merge(resources::routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route") })
        .layer(limit)
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

    pub fn bad_request(field: &str, message: &str) -> Self {
        let mut e = ApiError::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", format!("{field}: {message}"));
        e.body = e.body.argument(field).context("field", field);
        e
    }

    /// A refused request: 400 with the error naming the field, or 503 when rotor
    /// cannot record it now.
    pub fn refusal(r: crate::ingress::submit::Refusal) -> Self {
        match r {
            crate::ingress::submit::Refusal::Invalid(rej) => ApiError { status: StatusCode::BAD_REQUEST, body: rej.to_vcf() },
            crate::ingress::submit::Refusal::Unavailable(e) => Self::internal(e),
        }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
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

/// A request body within `max_body_bytes`. A larger one is refused with a VCF Error
/// naming the limit (413 REQUEST_TOO_LARGE), not axum's plain-text answer.
pub struct Body(pub Bytes);

impl FromRequest<Arc<ApiState>> for Body {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &Arc<ApiState>) -> Result<Self, ApiError> {
        Bytes::from_request(req, state).await.map(Body).map_err(|e| {
            let mut err = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                let message = format!("body: is larger than {} bytes (amqp.max_message_bytes)", state.max_body_bytes);
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "REQUEST_TOO_LARGE", message)
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", format!("body: {}", e.body_text()))
            };
            err.body = err.body.argument("body").context("field", "body");
            err
        })
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

/// Finds the caller's token; `None` when the header is missing or the token unknown.
pub(super) fn authenticate(parts: &Parts, state: &ApiState) -> Option<Caller> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ")?.trim();
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    // Compare against every token in constant time, so timing tells nothing.
    let mut found = None;
    for t in &state.tokens {
        if bool::from(t.digest.ct_eq(&digest)) {
            found = Some(t);
        }
    }
    found.map(|t| Caller { name: t.name.clone(), scopes: t.scopes.clone() })
}

impl FromRequestParts<Arc<ApiState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Self, ApiError> {
        authenticate(parts, state).ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "missing or invalid bearer token"))
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PageMetadata {
    page_number: i64,
    page_size: i64,
    total_elements: i64,
    total_pages: i64,
}

/// The VCF page shape: `{elements, pageMetadata}`.
#[derive(Debug, Serialize)]
pub struct PageOf<T> {
    elements: Vec<T>,
    #[serde(rename = "pageMetadata")]
    page_metadata: PageMetadata,
}

impl<T> PageOf<T> {
    pub fn new(elements: Vec<T>, (number, size): (i64, i64), total: i64) -> Self {
        PageOf {
            elements,
            page_metadata: PageMetadata { page_number: number, page_size: size, total_elements: total, total_pages: (total + size - 1) / size },
        }
    }
}

/// Highest page number asked for; keeps the offset arithmetic far from overflow.
pub const MAX_PAGE_NUMBER: i64 = 1_000_000;

/// (pageNumber, pageSize): 1-based, 20 by default, at most 100.
pub fn page_params(number: Option<i64>, size: Option<i64>) -> Result<(i64, i64), ApiError> {
    let number = number.unwrap_or(1);
    let size = size.unwrap_or(20);
    if !(1..=MAX_PAGE_NUMBER).contains(&number) {
        return Err(ApiError::bad_request("pageNumber", "must be 1 to 1000000"));
    }
    if !(1..=100).contains(&size) {
        return Err(ApiError::bad_request("pageSize", "must be 1 to 100"));
    }
    Ok((number, size))
}

/// Refuses a query or path value PostgreSQL could not store (a NUL), naming it.
pub fn text_param(name: &str, value: Option<&str>) -> Result<(), ApiError> {
    if value.is_some_and(|v| v.contains('\0')) {
        return Err(ApiError::bad_request(name, crate::requests::NUL_MESSAGE));
    }
    Ok(())
}

/// Parses a path id as a UUID, naming the parameter when it is not one.
pub fn uuid_param(name: &str, value: &str) -> Result<Uuid, ApiError> {
    value.parse().map_err(|_| ApiError::bad_request(name, "is not a UUID"))
}
