//! Who may call: the API's shared state, its bearer tokens and the caller they name.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::access::{Grant, Requester, RequesterKind, Scope};
use crate::config::HttpSettings;
use crate::ingress::guard::{FailedAuth, Verdict};
use crate::ingress::submit::Submitter;
use crate::requests::Origin;

pub struct Token {
    pub name: String,
    digest: [u8; 32],
    pub grant: Grant,
}

/// What the deploy routes need of `[deploy]`, read at start.
pub struct DeployConfig {
    pub admin_username: String,
    pub admin_key_file: Option<std::path::PathBuf>,
    pub api_url: Option<String>,
    pub ca_pem: Option<String>,
    pub token_minutes: u32,
    /// `https` when the API listens with TLS (for a URL made from the request's Host).
    pub scheme: &'static str,
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
    /// Failed authentications per source address.
    pub failed_auth: FailedAuth,
    /// API users who log in for access tokens.
    pub users: super::users::Users,
    /// The engine's settings and vault, for the checks that reach the targets (preflight).
    pub engine: Arc<crate::engine::Engine>,
    /// Host onboarding (`[deploy]`).
    pub deploy: DeployConfig,
}

/// Refuses a source that failed too often lately, before any work (the token routes and
/// host enrollment, which authenticate by their body).
pub fn hear(state: &ApiState, source: &str) -> Result<(), ApiError> {
    match state.failed_auth.verdict(source) {
        Verdict::Refuse(seconds) => Err(too_many(seconds)),
        Verdict::Hear => Ok(()),
    }
}

impl ApiState {
    /// The policy a resource of type `t` gets when it names none.
    pub fn default_policy(&self, t: &str) -> String {
        self.type_policy
            .get(t)
            .cloned()
            .unwrap_or_else(|| crate::policy::preset_for_type(t).to_string())
    }
}

/// Reads the configured tokens (inline or from their files).
pub fn load_tokens(settings: &HttpSettings) -> Result<Vec<Token>, crate::config::Error> {
    settings
        .token
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let key = format!("http.token[{i}].token");
            let secret = crate::config::secret(&key, &t.token, &t.token_file)?;
            crate::config::check_token_strength(&key, secret.expose_secret())?;
            let grant = Grant {
                scopes: t.scopes.clone(),
                resources: t.resources.clone(),
            };
            Ok(Token {
                name: t.name.clone(),
                digest: Sha256::digest(secret.expose_secret().as_bytes()).into(),
                grant,
            })
        })
        .collect()
}

/// The caller, authenticated by its bearer token: a static token, or an access token
/// a logged-in user was given.
pub struct Caller {
    pub name: String,
    pub kind: RequesterKind,
    pub grant: Grant,
}

impl Caller {
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.grant.has(scope) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                format!("this token lacks scope `{}`", scope.as_str()),
            ))
        }
    }

    /// Refuses a resource outside the token's `resources` globs, naming `field`.
    pub fn require_resource(&self, field: &str, id: &str) -> Result<(), ApiError> {
        if self.grant.allows_resource(id) {
            return Ok(());
        }
        let mut e = ApiError::new(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            format!("{field}: resource `{id}` is outside this token's resources"),
        );
        e.body = e.body.argument(field).context("field", field);
        Err(e)
    }

    pub fn requester(&self) -> Requester {
        Requester::new(self.kind, &self.name)
    }

    /// The tasks this caller may see.
    pub fn visibility(&self) -> crate::engine::view::Visibility {
        crate::engine::view::Visibility {
            patterns: self.grant.resource_patterns(),
            requester: self.requester(),
        }
    }

    /// A request this caller makes over HTTP.
    pub fn origin(&self, request_key: Option<String>) -> Origin<'_> {
        Origin {
            channel: "HTTP",
            requester: self.requester(),
            grant: &self.grant,
            request_key,
        }
    }
}

/// Finds the caller's token; `None` when the header is missing or the token unknown.
fn find_token(parts: &Parts, state: &ApiState) -> Option<Caller> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ")?.trim();
    if super::users::is_access_token(token) {
        let user = state.users.verify(token, chrono::Utc::now()).ok()?;
        return Some(Caller {
            name: user.username.clone(),
            kind: RequesterKind::User,
            grant: user.grant.clone(),
        });
    }
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    // Compare against every token in constant time, so timing tells nothing.
    let mut found = None;
    for t in &state.tokens {
        if bool::from(t.digest.ct_eq(&digest)) {
            found = Some(t);
        }
    }
    found.map(|t| Caller {
        name: t.name.clone(),
        kind: RequesterKind::Token,
        grant: t.grant.clone(),
    })
}

/// Why a request has no caller.
pub enum AuthFailure {
    /// Its source failed too often lately (seconds to wait).
    TooMany(u64),
    /// No token, or an unknown one.
    Unknown,
}

/// The caller of a request. A source address that keeps failing is refused unheard
/// for a while; every failure is logged on `rotor::security`.
pub fn authenticate(parts: &Parts, state: &ApiState) -> Result<Caller, AuthFailure> {
    let source = client_source(
        parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0),
    );
    if let Verdict::Refuse(seconds) = state.failed_auth.verdict(&source) {
        return Err(AuthFailure::TooMany(seconds));
    }
    find_token(parts, state).ok_or_else(|| {
        let reason = if parts.headers.contains_key(header::AUTHORIZATION) {
            "unknown bearer token"
        } else {
            "no bearer token"
        };
        state.failed_auth.failed("HTTP", &source, reason);
        AuthFailure::Unknown
    })
}

/// The peer's address, as the listener saw it; an IPv6 peer by its /64, which one
/// client can fill with addresses of its own.
pub fn client_source(peer: Option<SocketAddr>) -> String {
    match peer.map(|p| p.ip().to_canonical()) {
        Some(std::net::IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Some(v4) => v4.to_string(),
        None => "unknown".into(),
    }
}

/// 429 for a source that failed too often lately, with when to try again.
pub fn too_many(seconds: u64) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "TOO_MANY_REQUESTS",
        "too many failed authentications from this address; try later",
    );
    e.retry_after = Some(seconds);
    e
}

/// The peer's address as `client_source` names it (what failed authentications count by).
pub struct Source(pub String);

impl<S: Sync> FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Source(client_source(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        )))
    }
}

impl FromRequestParts<Arc<ApiState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, ApiError> {
        authenticate(parts, state).map_err(|failure| match failure {
            AuthFailure::TooMany(seconds) => too_many(seconds),
            AuthFailure::Unknown => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "missing or invalid bearer token",
            ),
        })
    }
}
