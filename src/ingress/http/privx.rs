//! The PrivX-compatible routes, answering errors in PrivX's shape:
//! `{error_code, error_message, property, details[]}`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::apidoc::PrivxGuarded;
use super::body::Body;
use super::error::ApiError;
use super::state::{authenticate, ApiState, AuthFailure, Caller};
use crate::config::Scope;
use crate::engine::model::TaskStatus;
use crate::ingress::submit::Request;
use crate::requests::{self, Refusal, RejectCode, Rejection};

pub fn routes() -> OpenApiRouter<Arc<ApiState>> {
    OpenApiRouter::new()
        .routes(routes!(rotate))
        .routes(routes!(set_password))
}

/// PrivX's error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct PrivxError {
    #[schema(example = "REQUIRED_VALUE_MISSING")]
    error_code: &'static str,
    error_message: String,
    /// The offending field, or empty.
    property: String,
    details: Vec<serde_json::Value>,
    #[serde(skip)]
    status: StatusCode,
}

impl PrivxError {
    fn new(
        status: StatusCode,
        code: &'static str,
        property: &str,
        message: impl Into<String>,
    ) -> Self {
        PrivxError {
            error_code: code,
            error_message: message.into(),
            property: property.to_string(),
            details: vec![],
            status,
        }
    }

    fn from_rejection(r: &Rejection) -> Self {
        use RejectCode::*;
        // PrivX's own vocabulary for each of rotor's refusals.
        let (status, code) = match r.code {
            RequiredValueMissing => (StatusCode::BAD_REQUEST, "REQUIRED_VALUE_MISSING"),
            ValueOutOfBounds | RequestTooLarge => (StatusCode::BAD_REQUEST, "VALUE_OUT_OF_BOUNDS"),
            ValueIncorrectType => (StatusCode::BAD_REQUEST, "VALUE_INCORRECT_TYPE"),
            ValueIncorrectFormat | InvalidUsername => {
                (StatusCode::BAD_REQUEST, "VALUE_INCORRECT_FORMAT")
            }
            ValueDuplicate => (StatusCode::BAD_REQUEST, "VALUE_DUPLICATE"),
            ResourceNotFound | CredentialNotFound => {
                (StatusCode::NOT_FOUND, "INVALID_REQUEST_DATA")
            }
            InvalidRequest => (StatusCode::BAD_REQUEST, "BAD_REQUEST"),
            PolicyNotFound | PasswordPolicyViolation => {
                (StatusCode::BAD_REQUEST, "INVALID_REQUEST_DATA")
            }
            PermissionDenied => (StatusCode::FORBIDDEN, "PERMISSION_DENIED"),
        };
        PrivxError::new(
            status,
            code,
            &r.field,
            format!("{}: {}", r.field, r.message),
        )
    }

    fn refusal(r: Refusal) -> Self {
        match r {
            Refusal::Invalid(r) => Self::from_rejection(&r),
            Refusal::Unavailable(e) => {
                tracing::error!(error = %e, "PrivX request failed");
                PrivxError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "DATABASE_ERROR",
                    "",
                    "the database is not reachable; try again",
                )
            }
        }
    }
}

impl IntoResponse for PrivxError {
    fn into_response(self) -> Response {
        (self.status, Json(self)).into_response()
    }
}

/// The caller, with PrivX-shaped refusals.
pub struct PrivxCaller(Caller);

impl FromRequestParts<Arc<ApiState>> for PrivxCaller {
    type Rejection = PrivxError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, PrivxError> {
        let caller = authenticate(parts, state).map_err(|failure| match failure {
            AuthFailure::TooMany(_) => PrivxError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TOO_MANY_REQUESTS",
                "Authorization",
                "too many failed authentications from this address; try later",
            ),
            AuthFailure::Unknown => PrivxError::new(
                StatusCode::UNAUTHORIZED,
                "PERMISSION_DENIED",
                "Authorization",
                "missing or invalid bearer token",
            ),
        })?;
        if caller.require(Scope::CredentialsManage).is_err() {
            return Err(PrivxError::new(
                StatusCode::FORBIDDEN,
                "PERMISSION_DENIED",
                "",
                "this token lacks scope `credentials:manage`",
            ));
        }
        Ok(PrivxCaller(caller))
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PrivxId)]
struct Id {
    id: uuid::Uuid,
}

/// The body of "set latest password".
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Password {
    #[schema(value_type = String, format = Password, write_only)]
    password: secrecy::SecretString,
}

/// PrivX: initiate rotation
///
/// Scope `credentials:manage`. The request joins the rotation queue. Errors in the PrivX
/// shape.
#[utoipa::path(
    post,
    path = "/secrets-manager/api/v1/rotate/{host_id}/{account}",
    operation_id = "privxRotate",
    tag = "privx",
    params(
        ("host_id" = String, Path, description = "The resource id (PrivX host id)."),
        ("account" = String, Path, description = "The account's username.")
    ),
    responses(
        (status = 200, description = "Queued; the task id.", body = Id, links(
            ("GetTask" = (operation_id = "getTask", parameters(("id" = "$response.body#/id")))),
            ("RetryTask" = (operation_id = "retryTask", parameters(("id" = "$response.body#/id")))),
            ("CancelTask" = (operation_id = "cancelTask", parameters(("id" = "$response.body#/id"))))
        )),
        (status = 400, description = "A bad value, `property` names it.", body = PrivxError),
        (status = 404, description = "Unknown host or account (`INVALID_REQUEST_DATA`, \
            property names which).", body = PrivxError),
        PrivxGuarded
    )
)]
async fn rotate(
    PrivxCaller(caller): PrivxCaller,
    State(state): State<Arc<ApiState>>,
    Path((host_id, account)): Path<(String, String)>,
) -> Result<Json<Id>, PrivxError> {
    let created = state
        .submitter
        .submit(
            Request::PrivxRotate {
                host_id: &host_id,
                account: &account,
            },
            &caller.origin(None),
        )
        .await
        .map_err(PrivxError::refusal)?;
    tracing::info!(caller = %caller.name, task_id = %created.task_id, "PrivX rotation queued");
    Ok(Json(Id {
        id: created.task_id,
    }))
}

/// PrivX: set the latest password
///
/// Scope `credentials:manage`. Stored as the current password without a policy check and
/// without touching the target; answers once the vault holds it.
#[utoipa::path(
    put,
    path = "/secrets-manager/api/v1/password/{host_id}/{account}",
    operation_id = "privxSetPassword",
    tag = "privx",
    params(
        ("host_id" = String, Path, description = "The resource id (PrivX host id)."),
        ("account" = String, Path, description = "The account's username.")
    ),
    request_body = inline(Password),
    responses(
        (status = 200, description = "Stored; the task id.", body = Id),
        (status = 400, description = "A bad value, `property` names it.", body = PrivxError),
        (status = 404, description = "Unknown host or account (`INVALID_REQUEST_DATA`, \
            property names which).", body = PrivxError),
        (status = 413, description = "The body is larger than `amqp.max_message_bytes`: \
            `error_code` VALUE_OUT_OF_BOUNDS, `property` body.", body = PrivxError),
        PrivxGuarded
    )
)]
async fn set_password(
    PrivxCaller(caller): PrivxCaller,
    State(state): State<Arc<ApiState>>,
    Path((host_id, account)): Path<(String, String)>,
    body: Result<Body, ApiError>,
) -> Result<Json<Id>, PrivxError> {
    let Body(body) = body.map_err(|e| {
        let code = if e.status == StatusCode::PAYLOAD_TOO_LARGE {
            "VALUE_OUT_OF_BOUNDS"
        } else {
            "BAD_REQUEST"
        };
        PrivxError::new(e.status, code, "body", e.body.message)
    })?;
    let body: Password = requests::parse_json(&body).map_err(|r| PrivxError::from_rejection(&r))?;
    let request = Request::PrivxPassword {
        host_id: &host_id,
        account: &account,
        password: body.password,
    };
    let created = state
        .submitter
        .submit(request, &caller.origin(None))
        .await
        .map_err(PrivxError::refusal)?;
    tracing::info!(caller = %caller.name, task_id = %created.task_id, "PrivX set-password accepted");
    // The store runs as a two-stage task (VALIDATE, COMMIT) on a worker: wait for it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let task = crate::engine::view::load(&state.pool, created.task_id)
            .await
            .ok()
            .flatten();
        match task.as_ref().map(|t| t.status) {
            Some(TaskStatus::Successful) => {
                return Ok(Json(Id {
                    id: created.task_id,
                }))
            }
            Some(TaskStatus::Failed | TaskStatus::Cancelled) => {
                let message = task
                    .and_then(|t| t.errors.first().map(|e| e.message.clone()))
                    .unwrap_or_default();
                return Err(PrivxError::new(
                    StatusCode::BAD_REQUEST,
                    "INVALID_REQUEST_DATA",
                    "",
                    message,
                ));
            }
            _ if tokio::time::Instant::now() > deadline => {
                return Err(PrivxError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "MAX_LOAD",
                    "",
                    format!(
                        "queued as task {} but not stored within 30 s",
                        created.task_id
                    ),
                ));
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
