//! How the API answers a failure: a VCF Error body with the right status.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::requests::{Refusal, RejectCode};
use crate::vcf_error::VcfError;

/// An error answered as a VCF Error body.
pub struct ApiError {
    pub(super) status: StatusCode,
    pub(super) body: VcfError,
    /// Seconds for a `Retry-After` header.
    pub(super) retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: VcfError::new(code, message),
            retry_after: None,
        }
    }

    pub fn bad_request(field: &str, message: &str) -> Self {
        let mut e = ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            format!("{field}: {message}"),
        );
        e.body = e.body.argument(field).context("field", field);
        e
    }

    /// A refused request: 400 with the error naming the field, 503 when rotor cannot
    /// record it now, 500 when something else failed.
    pub fn refusal(r: Refusal) -> Self {
        match r {
            Refusal::Invalid(rej) => {
                let status = if rej.code == RejectCode::PermissionDenied {
                    StatusCode::FORBIDDEN
                } else {
                    StatusCode::BAD_REQUEST
                };
                ApiError {
                    status,
                    body: rej.to_vcf(),
                    retry_after: None,
                }
            }
            Refusal::Unavailable(e) => e.into(),
        }
    }

    /// The database is away: the caller should try again.
    pub fn unavailable(e: impl std::fmt::Display) -> Self {
        let err = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "the database is not reachable; try again",
        );
        tracing::error!(error = %e, reference = %err.body.reference_token, "HTTP request failed: database unavailable");
        err
    }

    /// Anything else that failed inside rotor; the log has the detail under the reference.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        let err = ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "rotor could not complete the request; its log has the detail",
        );
        tracing::error!(error = %e, reference = %err.body.reference_token, "HTTP request failed");
        err
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::unavailable(e)
    }
}

impl From<crate::engine::Error> for ApiError {
    fn from(e: crate::engine::Error) -> Self {
        if e.is_transient() {
            ApiError::unavailable(e)
        } else {
            ApiError::internal(e)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        if let Some(seconds) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        r
    }
}
