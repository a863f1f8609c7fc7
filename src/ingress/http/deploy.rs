//! Host onboarding: `GET /v1/deploy/script` answers a POSIX shell script made for this
//! installation, with a one-time enrollment token; run as root on a new host, it sets the
//! host up for rotor and calls `POST /v1/deploy/enroll`, which registers it once.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::apidoc::{Guarded, TooLarge};
use super::body::Body;
use super::error::ApiError;
use super::state::{hear, ApiState, Caller, Source};
use crate::access::{Requester, RequesterKind};
use crate::config::Scope;
use crate::inventory::{self, enroll, AccountSpec, AdminSpec, InventoryFile, ResourceSpec};
use crate::vcf_error::VcfError;

const TEMPLATE: &str = include_str!("deploy.sh");

pub fn routes() -> OpenApiRouter<Arc<ApiState>> {
    OpenApiRouter::new()
        .routes(routes!(script))
        .routes(routes!(enroll_host))
}

fn not_configured(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "DEPLOY_NOT_CONFIGURED",
        what.to_string(),
    )
}

/// The deploy script
///
/// Scope `hosts:provision`. A POSIX shell script for this installation, with a fresh
/// one-time enrollment token (good for `[deploy] token_minutes`). Run as root on a new
/// host, it creates the admin account, installs rotor's key with `restrict`, adds a sudo
/// rule for chpasswd checked with visudo, reads the host's key fingerprint and registers
/// the host. Running it again changes nothing; the token works once.
#[utoipa::path(
    get,
    path = "/v1/deploy/script",
    operation_id = "getDeployScript",
    tag = "resources",
    responses(
        (status = 200, description = "The script.", body = String, content_type = "text/x-shellscript"),
        (status = 409, description = "`[deploy] admin_key_file` is not set or not readable (`DEPLOY_NOT_CONFIGURED`).", body = VcfError),
        Guarded
    )
)]
async fn script(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Scope::HostsProvision)?;
    let deploy = &state.deploy;
    let key_file = deploy.admin_key_file.as_ref().ok_or_else(|| {
        not_configured("set [deploy] admin_key_file (rotor admin-key generate --out FILE)")
    })?;
    let public = ssh_key::PrivateKey::read_openssh_file(key_file)
        .ok()
        .and_then(|k| k.public_key().to_openssh().ok())
        .ok_or_else(|| {
            not_configured("[deploy] admin_key_file is not a readable OpenSSH private key")
        })?;
    let api = match &deploy.api_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| {
                    h.chars()
                        .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
                })
                .ok_or_else(|| not_configured("no usable Host header: set [deploy] api_url"))?;
            format!("{}://{host}", deploy.scheme)
        }
    };
    let (token, expires) = enroll::issue(
        &state.pool,
        &caller.requester().name,
        &caller.grant.resource_patterns(),
        deploy.token_minutes,
    )
    .await
    .map_err(ApiError::from)?;
    // Every value is plain text without quotes or backslashes, so single quotes hold it.
    let text = TEMPLATE
        .replace("@API@", &api.replace('\'', ""))
        .replace("@TOKEN@", token.expose_secret())
        .replace("@ADMIN@", &deploy.admin_username)
        .replace("@PUBKEY@", &public.replace('\'', ""))
        .replace(
            "@CA@",
            &deploy.ca_pem.clone().unwrap_or_default().replace('\'', ""),
        )
        .replace("@EXPIRES@", &expires.to_rfc3339());
    tracing::info!(target: "rotor::security", caller = %caller.name, expires = %expires, "deploy script issued with a one-time enrollment token");
    Ok((
        [
            (header::CONTENT_TYPE, "text/x-shellscript"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"rotor-deploy.sh\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    ))
}

/// What the deploy script sends.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Enrollment {
    /// The script's one-time token.
    #[schema(value_type = String, format = Password, write_only)]
    token: SecretString,
    resource_id: String,
    name: String,
    address: String,
    port: u16,
    host_keys: Vec<String>,
    #[serde(default)]
    accounts: Vec<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Enrolled {
    resource_id: String,
}

/// Register a host (the deploy script)
///
/// No bearer token: the body's one-time enrollment token is the authority. It creates a
/// new LINUX resource (never changes an existing one) whose admin is `[deploy]
/// admin_username` with rotor's admin key and sudo, pinning the host key the host read
/// from itself. A refused token counts against the source address like a bad login.
#[utoipa::path(
    post,
    path = "/v1/deploy/enroll",
    operation_id = "enrollHost",
    tag = "resources",
    security(()),
    request_body = Enrollment,
    responses(
        (status = 201, description = "Registered.", body = Enrolled),
        (status = 400, description = "A bad field, named in `context.field`.", body = VcfError),
        (status = 401, description = "Unknown, used or expired token.", body = VcfError),
        (status = 403, description = "`resourceId` lies outside the resource globs of the token that fetched the script.", body = VcfError),
        (status = 409, description = "The resource exists already, or deploy is not configured.", body = VcfError),
        (status = 429, description = "Too many failed authentications from this address lately.", body = VcfError),
        (status = 503, description = "The database is not reachable; try again.", body = VcfError),
        TooLarge
    )
)]
async fn enroll_host(
    State(state): State<Arc<ApiState>>,
    Source(source): Source,
    body: Body,
) -> Result<(StatusCode, Json<Enrolled>), ApiError> {
    hear(&state, &source)?;
    let e: Enrollment = body.object(None)?;
    let key_file = state
        .deploy
        .admin_key_file
        .clone()
        .ok_or_else(|| not_configured("deploy is not configured ([deploy] admin_key_file)"))?;
    let issuer = match enroll::consume(&state.pool, &e.token, &e.resource_id)
        .await
        .map_err(ApiError::from)?
    {
        enroll::Consumed::Used { issuer } => issuer,
        enroll::Consumed::Refused => {
            state
                .failed_auth
                .failed("HTTP", &source, "unknown, used or expired enrollment token");
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "unknown, used or expired enrollment token",
            ));
        }
        enroll::Consumed::OutsideGrant => {
            let mut err = ApiError::new(
                StatusCode::FORBIDDEN,
                "PERMISSION_DENIED",
                "resourceId: outside the resources of the token that fetched this script",
            );
            err.body = err
                .body
                .argument("resourceId")
                .context("field", "resourceId");
            return Err(err);
        }
    };
    let token = e.token.clone();
    let registered = register(&state, e, key_file, &issuer).await;
    if registered.is_err() {
        // Nothing was written: the token may be used again.
        let _ = enroll::release(&state.pool, &token).await;
    }
    registered
}

async fn register(
    state: &ApiState,
    e: Enrollment,
    key_file: PathBuf,
    issuer: &str,
) -> Result<(StatusCode, Json<Enrolled>), ApiError> {
    let exists = sqlx::query_scalar!(
        "SELECT count(*) AS \"n!\" FROM resources WHERE id = $1",
        e.resource_id
    )
    .fetch_one(&state.pool)
    .await
    .map_err(ApiError::from)?;
    if exists > 0 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "RESOURCE_EXISTS",
            format!(
                "resource {} exists already; an enrollment never changes one",
                e.resource_id
            ),
        ));
    }
    // rotor's admin key opens every enrolled host: a token must not point it at a host
    // another resource already manages.
    let taken = sqlx::query_scalar!(
        "SELECT id FROM resources WHERE address = $1 AND port = $2 AND deleted_at IS NULL LIMIT 1",
        e.address,
        i32::from(e.port)
    )
    .fetch_optional(&state.pool)
    .await
    .map_err(ApiError::from)?;
    if let Some(other) = taken {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "RESOURCE_EXISTS",
            format!(
                "{}:{} is resource {other} already; an enrollment never takes over a host",
                e.address, e.port
            ),
        ));
    }
    let spec = ResourceSpec {
        id: e.resource_id.clone(),
        name: e.name,
        kind: "LINUX".into(),
        address: e.address,
        port: e.port,
        host_keys: e.host_keys,
        insecure_accept_any_host_key: false,
        platform: inventory::default_platform(),
        ssh_auth: None,
        policy: None,
        lockout_threshold: None,
        http: None,
        admin: Some(AdminSpec {
            username: state.deploy.admin_username.clone(),
            private_key_file: Some(key_file),
            password_file: None,
            sudo: true,
        }),
        account: e
            .accounts
            .into_iter()
            .map(|username| AccountSpec {
                username,
                account_type: inventory::default_account_type(),
                credential_type: inventory::default_credential_type(),
                password_file: None,
                auto_rotate_days: None,
            })
            .collect(),
    };
    let mut inv = InventoryFile {
        resource: vec![spec],
    };
    inventory::check_files(&mut inv, &state.engine.allowed_dir).map_err(|_| {
        not_configured("[deploy] admin_key_file must lie under inventory.allowed_dir")
    })?;
    let default_policy = |t: &str| state.default_policy(t);
    inventory::validate(&inv, &state.submitter.policies, default_policy).map_err(
        |err| match err {
            inventory::Error::Invalid { field, message } => {
                let field = field
                    .replacen("resource[0].", "", 1)
                    .replace("host_keys", "hostKeys")
                    .replace("account[", "accounts[");
                ApiError::bad_request(&field, &message)
            }
            other => ApiError::bad_request("body", &other.to_string()),
        },
    )?;
    let who = Requester::new(RequesterKind::Token, format!("enrollment:{issuer}"));
    let applier = inventory::Applier {
        who: &who,
        may_retarget: false,
    };
    inventory::apply(
        &state.pool,
        Some(&state.submitter.key),
        &inv,
        default_policy,
        &state.submitter.schedule,
        &applier,
    )
    .await
    .map_err(|err| match err {
        inventory::Error::Db(e) => ApiError::from(e),
        other => ApiError::bad_request("body", &other.to_string()),
    })?;
    tracing::warn!(target: "rotor::security", resource_id = %inv.resource[0].id, issuer, host_keys = ?inv.resource[0].host_keys,
        "host enrolled with a one-time token; its host key is pinned as it reported it");
    Ok((
        StatusCode::CREATED,
        Json(Enrolled {
            resource_id: inv.resource[0].id.clone(),
        }),
    ))
}
