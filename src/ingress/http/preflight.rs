//! `POST /v1/preflight`: the pre-flight checks of SPEC section 8, changing nothing on the
//! targets.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::apidoc::{Guarded, TooLarge};
use super::body::Body;
use super::error::ApiError;
use super::state::{ApiState, Caller};
use crate::config::Scope;
use crate::engine::preflight::{self, AccountChecks, Selection};
use crate::vcf_error::VcfError;

pub fn routes() -> OpenApiRouter<Arc<ApiState>> {
    OpenApiRouter::new().routes(routes!(preflight))
}

/// Which accounts to check; everything the token may see when empty.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PreflightSpec {
    /// Only these resources.
    resource_ids: Option<Vec<String>>,
    /// Only accounts with these usernames.
    usernames: Option<Vec<String>>,
    /// Also log in with the stored password (CURRENT_PASSWORD; needs
    /// `credentials:manage`). A refusal counts toward the account's lockout, so it is off
    /// unless asked for.
    #[serde(default)]
    check_password: bool,
}

#[derive(Debug, Serialize, ToSchema)]
struct PreflightResults {
    results: Vec<AccountChecks>,
}

/// Pre-flight checks
///
/// Scope `credentials:view`. Per account: REACHABLE, HOST_KEY, ADMIN_AUTH, SUDO_CHPASSWD,
/// ACCOUNT_EXISTS, CURRENT_PASSWORD (only with `checkPassword`), ACCOUNT_STATUS and
/// PASSWORD_EXPIRY, each PASS, FAIL or SKIPPED with a one-line reason. Nothing on the
/// target changes.
#[utoipa::path(
    post,
    path = "/v1/preflight",
    operation_id = "preflight",
    tag = "credentials",
    request_body = Option<PreflightSpec>,
    responses(
        (status = 200, description = "The checks, by resource and username.", body = PreflightResults),
        (status = 400, description = "A bad field, named in `context.field`.", body = VcfError),
        (status = 404, description = "A resource id that does not exist (`RESOURCE_NOT_FOUND`).", body = VcfError),
        Guarded,
        TooLarge
    )
)]
async fn preflight(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    body: Body,
) -> Result<(StatusCode, Json<PreflightResults>), ApiError> {
    caller.require(Scope::CredentialsView)?;
    let spec: PreflightSpec = body.object(Some(PreflightSpec::default()))?;
    for (name, list) in [
        ("resourceIds", &spec.resource_ids),
        ("usernames", &spec.usernames),
    ] {
        for (i, v) in list.iter().flatten().enumerate() {
            if v.is_empty() || v.contains('\0') || v.len() > 255 {
                return Err(ApiError::bad_request(
                    &format!("{name}[{i}]"),
                    "must be 1 to 255 characters, without NUL",
                ));
            }
        }
    }
    // Trying stored passwords spends the accounts' lockout budget: it takes more than
    // reading.
    if spec.check_password {
        caller.require(Scope::CredentialsManage)?;
    }
    let patterns = caller.grant.resource_patterns();
    if let Some(ids) = &spec.resource_ids {
        let unknown = preflight::unknown_resources(&state.engine, ids, &patterns)
            .await
            .map_err(ApiError::from)?;
        if let Some(id) = unknown.first() {
            let i = ids.iter().position(|x| x == id).unwrap_or(0);
            let field = format!("resourceIds[{i}]");
            let mut e = ApiError::new(
                StatusCode::NOT_FOUND,
                "RESOURCE_NOT_FOUND",
                format!("{field}: no resource {id}"),
            );
            e.body = e.body.argument(&field).context("field", &field);
            return Err(e);
        }
    }
    let selection = Selection {
        resource_ids: spec.resource_ids.as_deref(),
        usernames: spec.usernames.as_deref(),
        credential_ids: None,
        resource_type: None,
        try_password: spec.check_password,
        resource_patterns: patterns,
    };
    let results = preflight::run(&state.engine, &selection)
        .await
        .map_err(ApiError::from)?;
    tracing::info!(caller = %caller.name, accounts = results.len(),
        failed = results.iter().filter(|r| r.failed()).count(), "preflight ran");
    Ok((StatusCode::OK, Json(PreflightResults { results })))
}
