//! Who may call: the API's shared state, its bearer tokens and the caller they name.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::config::{HttpSettings, Scope};
use crate::ingress::submit::Submitter;

pub struct Token {
    pub name: String,
    digest: [u8; 32],
    pub scopes: Vec<Scope>,
}

pub struct ApiState {
    pub pool: PgPool,
    pub tokens: Vec<Token>,
    pub submitter: Arc<Submitter>,
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
pub fn authenticate(parts: &Parts, state: &ApiState) -> Option<Caller> {
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

