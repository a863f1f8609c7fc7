//! VCF's token routes: `POST /v1/tokens` (log in), `PATCH /v1/tokens/access-token/refresh`
//! (a new access token for a refresh token) and `DELETE /v1/tokens/refresh-token` (log
//! out). No scope is needed to call them; a failed log-in counts against the source
//! address like a bad bearer token, and every log-in is logged on `rotor::security`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::apidoc::TooLarge;
use super::body::Body;
use super::error::ApiError;
use super::state::{hear, ApiState, Source};
use super::users::{self, REFRESH_TTL};
use crate::vcf_error::VcfError;

pub fn routes() -> OpenApiRouter<Arc<ApiState>> {
    OpenApiRouter::new()
        .routes(routes!(log_in))
        .routes(routes!(refresh))
        .routes(routes!(log_out))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TokenCreationSpec {
    username: String,
    #[schema(value_type = String, format = Password, write_only)]
    password: SecretString,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct TokenPair {
    /// A signed access token (JWT, HS256), good for one hour: send it as
    /// `Authorization: Bearer`.
    access_token: String,
    refresh_token: RefreshToken,
}

#[derive(Serialize, ToSchema)]
struct RefreshToken {
    /// Good for 24 hours, for PATCH /v1/tokens/access-token/refresh.
    id: String,
}

const TOO_MANY: &str = "Too many failed authentications from this address lately.";
const UNREACHABLE: &str = "The database is not reachable; try again.";
const NOT_AN_ID: &str = "The body is not a refresh token id.";

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
}

/// Log in
///
/// No scope. An API user (`[[http.user]]`) trades its password for an access token and a
/// refresh token. Failures count against the source address like a bad bearer token.
#[utoipa::path(
    post,
    path = "/v1/tokens",
    operation_id = "createToken",
    tag = "tokens",
    security(()),
    request_body = TokenCreationSpec,
    responses(
        (status = 200, description = "The tokens.", body = TokenPair),
        (status = 400, description = "The body is not `{username, password}`.", body = VcfError),
        (status = 401, description = "Wrong username or password.", body = VcfError),
        (status = 429, description = TOO_MANY, body = VcfError),
        (status = 503, description = UNREACHABLE, body = VcfError),
        TooLarge
    )
)]
async fn log_in(
    State(state): State<Arc<ApiState>>,
    Source(source): Source,
    Body(body): Body,
) -> Result<Json<TokenPair>, ApiError> {
    hear(&state, &source)?;
    // The body holds a password: a parse error names the field, never echoes the value.
    let spec: TokenCreationSpec = serde_json::from_slice(&body).map_err(|e| {
        let field = if e.to_string().contains("password") {
            "password"
        } else {
            "body"
        };
        ApiError::bad_request(
            field,
            "expected {\"username\": string, \"password\": string}",
        )
    })?;
    let checker = state.clone();
    let checked = tokio::task::spawn_blocking(move || {
        checker
            .users
            .check_password(&spec.username, &spec.password)
            .map(|u| u.username.clone())
    })
    .await
    .map_err(ApiError::internal)?;
    let Ok(username) = checked else {
        state
            .failed_auth
            .failed("HTTP", &source, "bad username or password");
        return Err(unauthorized("wrong username or password"));
    };
    let now = Utc::now();
    let refresh = users::new_refresh_token();
    let mut tx = state.pool.begin().await.map_err(ApiError::from)?;
    sqlx::query!("DELETE FROM api_refresh_tokens WHERE expires_at < now()")
        .execute(&mut *tx)
        .await
        .map_err(ApiError::from)?;
    sqlx::query!(
        "INSERT INTO api_refresh_tokens (digest, username, expires_at) VALUES ($1, $2, $3)",
        users::refresh_digest(refresh.expose_secret()),
        username,
        now + REFRESH_TTL
    )
    .execute(&mut *tx)
    .await
    .map_err(ApiError::from)?;
    tx.commit().await.map_err(ApiError::from)?;
    tracing::info!(target: "rotor::security", user = %username, source, "API user logged in");
    Ok(Json(TokenPair {
        access_token: state
            .users
            .access_token(&username, now)
            .expose_secret()
            .to_string(),
        refresh_token: RefreshToken {
            id: refresh.expose_secret().to_string(),
        },
    }))
}

/// The body of the refresh and log-out routes: the refresh token id as a JSON string, as
/// VCF's clients send it.
fn refresh_id(body: &[u8]) -> Result<SecretString, ApiError> {
    let refused =
        || ApiError::bad_request("body", "expected the refresh token id as a JSON string");
    let id: String = serde_json::from_slice(body).map_err(|_| refused())?;
    if id.is_empty() || id.len() > 128 {
        return Err(refused());
    }
    Ok(SecretString::from(id))
}

/// Refresh an access token
///
/// No scope. A new access token for a refresh token that is neither expired nor deleted,
/// while its user is still configured.
#[utoipa::path(
    patch,
    path = "/v1/tokens/access-token/refresh",
    operation_id = "refreshAccessToken",
    tag = "tokens",
    security(()),
    request_body(
        content = String,
        content_type = "application/json",
        description = "The refresh token id, as a JSON string."
    ),
    responses(
        (status = 200, description = "A new access token, as a JSON string.", body = String,
            content_type = "application/json"),
        (status = 400, description = NOT_AN_ID, body = VcfError),
        (status = 401, description = "Unknown or expired refresh token.", body = VcfError),
        (status = 429, description = TOO_MANY, body = VcfError),
        (status = 503, description = UNREACHABLE, body = VcfError),
        TooLarge
    )
)]
async fn refresh(
    State(state): State<Arc<ApiState>>,
    Source(source): Source,
    Body(body): Body,
) -> Result<Json<String>, ApiError> {
    hear(&state, &source)?;
    let id = refresh_id(&body)?;
    let username = sqlx::query_scalar!(
        "SELECT username FROM api_refresh_tokens WHERE digest = $1 AND expires_at > now()",
        users::refresh_digest(id.expose_secret())
    )
    .fetch_optional(&state.pool)
    .await
    .map_err(ApiError::from)?;
    // A user removed from the configuration keeps no way in.
    let Some(user) = username.as_deref().and_then(|u| state.users.find(u)) else {
        state
            .failed_auth
            .failed("HTTP", &source, "unknown or expired refresh token");
        return Err(unauthorized("unknown or expired refresh token"));
    };
    Ok(Json(
        state
            .users
            .access_token(&user.username, Utc::now())
            .expose_secret()
            .to_string(),
    ))
}

/// Log out
///
/// No scope. Deletes a refresh token; access tokens already issued end at their expiry.
#[utoipa::path(
    delete,
    path = "/v1/tokens/refresh-token",
    operation_id = "invalidateRefreshToken",
    tag = "tokens",
    security(()),
    request_body(
        content = String,
        content_type = "application/json",
        description = "The refresh token id, as a JSON string."
    ),
    responses(
        (status = 204, description = "Deleted (or already unknown)."),
        (status = 400, description = NOT_AN_ID, body = VcfError),
        (status = 503, description = UNREACHABLE, body = VcfError),
        TooLarge
    )
)]
async fn log_out(
    State(state): State<Arc<ApiState>>,
    Body(body): Body,
) -> Result<StatusCode, ApiError> {
    let id = refresh_id(&body)?;
    sqlx::query!(
        "DELETE FROM api_refresh_tokens WHERE digest = $1",
        users::refresh_digest(id.expose_secret())
    )
    .execute(&state.pool)
    .await
    .map_err(ApiError::from)?;
    Ok(StatusCode::NO_CONTENT)
}
