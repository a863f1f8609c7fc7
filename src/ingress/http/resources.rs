//! `/v1/resources`: the inventory of SPEC section 6 as camelCase JSON. It names no
//! files: an admin key or password file is set by the TOML inventory root applies,
//! and kept when the JSON changes the resource. Moving a resource needs `admin`;
//! DELETE retires it, keeping its passwords until `rotor resource purge`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::apidoc::{Guarded, TooLarge};
use super::body::Body;
use super::error::ApiError;
use super::paging::text_param;
use super::resource_body::{AccountBody, AdminBody, ResourceBody};
use super::state::{ApiState, Caller};
use crate::config::Scope;
use crate::inventory::{self, InventoryFile, ResourceSpec};
use crate::vcf_error::VcfError;

pub fn routes() -> OpenApiRouter<Arc<ApiState>> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, replace, remove))
}

const INVALID: &str = "Invalid; `context.field` names the field.";
const DELETED: &str =
    "The resource was deleted; its passwords are kept until `rotor resource purge`.";

fn camel(s: &str) -> String {
    let mut out = String::new();
    let mut up = false;
    for c in s.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The resources `caller` may see (all, or the one `id`), without file paths.
async fn load(
    state: &ApiState,
    caller: &Caller,
    id: Option<&str>,
) -> Result<Vec<ResourceBody>, ApiError> {
    let rows = sqlx::query!(
        "SELECT id, name, type, address, port, host_keys, insecure_accept_any_host_key, platform, policy,
                admin_username, admin_sudo, lockout_threshold, ssh_auth
           FROM resources WHERE ($1::text IS NULL OR id = $1) AND deleted_at IS NULL AND id LIKE ANY($2) ORDER BY id",
        id,
        &caller.grant.resource_patterns()
    )
    .fetch_all(&state.pool)
    .await
    .map_err(ApiError::from)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let accounts = sqlx::query!(
            "SELECT username, account_type, credential_type, auto_rotate_days FROM credentials WHERE resource_id = $1 ORDER BY username",
            r.id
        )
        .fetch_all(&state.pool)
        .await
        .map_err(ApiError::from)?;
        out.push(ResourceBody {
            id: r.id,
            name: r.name,
            kind: r.r#type,
            address: r.address,
            port: u16::try_from(r.port).unwrap_or(22),
            host_keys: r.host_keys,
            insecure_accept_any_host_key: r.insecure_accept_any_host_key,
            platform: r.platform,
            ssh_auth: r.ssh_auth,
            policy: Some(r.policy),
            lockout_threshold: Some(r.lockout_threshold),
            admin: r.admin_username.map(|username| AdminBody {
                username,
                sudo: r.admin_sudo,
            }),
            account: accounts
                .into_iter()
                .map(|a| AccountBody {
                    username: a.username,
                    account_type: a.account_type,
                    credential_type: a.credential_type,
                    auto_rotate_days: a.auto_rotate_days,
                })
                .collect(),
        });
    }
    Ok(out)
}

/// The inventory
///
/// Scope `resources:manage`. The resources the token's `resources` globs cover.
#[utoipa::path(
    get,
    path = "/v1/resources",
    operation_id = "listResources",
    tag = "resources",
    responses(
        (status = 200, description = "Every resource with its accounts.", body = Vec<ResourceBody>),
        Guarded
    )
)]
async fn list(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
) -> Result<Json<Vec<ResourceBody>>, ApiError> {
    caller.require(Scope::ResourcesManage)?;
    Ok(Json(load(&state, &caller, None).await?))
}

/// One resource
///
/// Scope `resources:manage`.
#[utoipa::path(
    get,
    path = "/v1/resources/{id}",
    operation_id = "getResource",
    tag = "resources",
    params(("id" = String, Path, description = "Resource id.")),
    responses(
        (status = 200, description = "The resource.", body = ResourceBody),
        (status = 404, description = "No such resource (`RESOURCE_NOT_FOUND`).", body = VcfError),
        Guarded
    )
)]
async fn get_one(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<ResourceBody>, ApiError> {
    caller.require(Scope::ResourcesManage)?;
    text_param("id", Some(&id))?;
    load(&state, &caller, Some(&id))
        .await?
        .pop()
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "RESOURCE_NOT_FOUND",
                format!("no resource {id}"),
            )
        })
}

/// The first field that names a file (`admin.privateKeyFile`, `account[0].passwordFile`).
fn file_field(v: &Value, at: &str) -> Option<String> {
    let join = |k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}.{k}")
        }
    };
    match v {
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if (k.ends_with("File") || k.ends_with("_file")) && !v.is_null() {
                Some(join(k))
            } else {
                file_field(v, &join(k))
            }
        }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| file_field(v, &format!("{at}[{i}]"))),
        _ => None,
    }
}

/// The admin files the stored resource has, kept when the JSON names the same admin.
async fn keep_admin_files(state: &ApiState, spec: &mut ResourceSpec) -> Result<(), ApiError> {
    let Some(admin) = spec.admin.as_mut() else {
        return Ok(());
    };
    let stored = sqlx::query!("SELECT admin_username, admin_private_key_file, admin_password_file FROM resources WHERE id = $1", spec.id)
        .fetch_optional(&state.pool)
        .await
        .map_err(ApiError::from)?;
    match stored {
        Some(s) if s.admin_username.as_deref() == Some(admin.username.as_str()) => {
            admin.private_key_file = s.admin_private_key_file.map(Into::into);
            admin.password_file = s.admin_password_file.map(Into::into);
            Ok(())
        }
        _ => Err(ApiError::bad_request(
            "admin.username",
            "a new admin account needs its key or password file, which only the TOML inventory names (`rotor resource apply` as root)",
        )),
    }
}

/// Parses, validates and upserts one resource, as `rotor resource apply` would.
async fn upsert(
    state: &ApiState,
    caller: &Caller,
    body: &[u8],
    path_id: Option<&str>,
) -> Result<(StatusCode, Json<ResourceBody>), ApiError> {
    let json: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("body", &format!("is not valid JSON ({e})")))?;
    if !json.is_object() {
        return Err(ApiError::bad_request("body", "must be a JSON object"));
    }
    if let Some(field) = crate::requests::nul_in(&json, String::new()) {
        return Err(ApiError::bad_request(&field, crate::requests::NUL_MESSAGE));
    }
    if let Some(field) = file_field(&json, "") {
        return Err(ApiError::bad_request(&field, "the HTTP inventory names no files; files are set by the TOML inventory (`rotor resource apply` as root)"));
    }
    let body: ResourceBody = serde_path_to_error::deserialize(json).map_err(|e| {
        let field = e.path().to_string();
        ApiError::bad_request(
            if field == "." { "body" } else { &field },
            &e.into_inner().to_string(),
        )
    })?;
    if let Some(id) = path_id {
        if body.id != id {
            return Err(ApiError::bad_request("id", "must match the id in the path"));
        }
    }
    let mut spec = ResourceSpec::from(body);
    caller.require_resource("id", &spec.id)?;
    keep_admin_files(state, &mut spec).await?;
    let inv = InventoryFile {
        resource: vec![spec],
    };
    let default_policy = |t: &str| state.default_policy(t);
    inventory::validate(&inv, &state.submitter.policies, default_policy).map_err(|e| match e {
        inventory::Error::Invalid { field, message } => {
            ApiError::bad_request(&camel(&field.replacen("resource[0].", "", 1)), &message)
        }
        other => ApiError::bad_request("body", &other.to_string()),
    })?;
    let who = caller.requester();
    let applier = inventory::Applier {
        who: &who,
        may_retarget: caller.grant.is_admin(),
    };
    let report = inventory::apply(
        &state.pool,
        Some(&state.submitter.key),
        &inv,
        default_policy,
        &state.submitter.schedule,
        &applier,
    )
    .await
    .map_err(|e| match e {
        inventory::Error::Db(e) => ApiError::from(e),
        inventory::Error::Store(e) => ApiError::from(e),
        inventory::Error::Denied { field, message } => {
            let field = camel(&field);
            let mut e = ApiError::new(
                StatusCode::FORBIDDEN,
                "PERMISSION_DENIED",
                format!("{field}: {message}"),
            );
            e.body = e.body.argument(&field).context("field", &field);
            e
        }
        e @ inventory::Error::Deleted(_) => {
            ApiError::new(StatusCode::CONFLICT, "RESOURCE_DELETED", e.to_string())
        }
        other => ApiError::bad_request("body", &other.to_string()),
    })?;
    let created = report
        .iter()
        .any(|l| l.starts_with("resource ") && l.ends_with("created"));
    let id = &inv.resource[0].id;
    let body = load(state, caller, Some(id))
        .await?
        .pop()
        .ok_or_else(|| ApiError::internal("the resource vanished"))?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(body),
    ))
}

/// Create or update a resource
///
/// Scope `resources:manage`. Idempotent upsert, like `rotor resource apply`. Changing
/// where a resource points (address, port, hostKeys, insecureAcceptAnyHostKey) needs
/// `admin`: without it, 403 PERMISSION_DENIED naming the field.
#[utoipa::path(
    post,
    path = "/v1/resources",
    operation_id = "createResource",
    tag = "resources",
    request_body = ResourceBody,
    responses(
        (status = 201, description = "Created.", body = ResourceBody, links(
            ("GetResource" = (operation_id = "getResource", parameters(("id" = "$response.body#/id")))),
            ("DeleteResource" = (operation_id = "deleteResource", parameters(("id" = "$response.body#/id"))))
        )),
        (status = 200, description = "Updated (or unchanged).", body = ResourceBody, links(
            ("GetResource" = (operation_id = "getResource", parameters(("id" = "$response.body#/id")))),
            ("DeleteResource" = (operation_id = "deleteResource", parameters(("id" = "$response.body#/id"))))
        )),
        (status = 400, description = INVALID, body = VcfError),
        (status = 409, description = DELETED, body = VcfError),
        Guarded,
        TooLarge
    )
)]
async fn create(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    Body(body): Body,
) -> Result<(StatusCode, Json<ResourceBody>), ApiError> {
    caller.require(Scope::ResourcesManage)?;
    upsert(&state, &caller, &body, None).await
}

/// Create or replace a resource
///
/// Scope `resources:manage`. The body's id must be the path's. Changing where a resource
/// points needs `admin`, as with POST.
#[utoipa::path(
    put,
    path = "/v1/resources/{id}",
    operation_id = "putResource",
    tag = "resources",
    params(("id" = String, Path, description = "Resource id.")),
    request_body = ResourceBody,
    responses(
        (status = 201, description = "Created.", body = ResourceBody),
        (status = 200, description = "Updated (or unchanged).", body = ResourceBody),
        (status = 400, description = INVALID, body = VcfError),
        (status = 409, description = DELETED, body = VcfError),
        Guarded,
        TooLarge
    )
)]
async fn replace(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<(StatusCode, Json<ResourceBody>), ApiError> {
    caller.require(Scope::ResourcesManage)?;
    text_param("id", Some(&id))?;
    upsert(&state, &caller, &body, Some(&id)).await
}

/// Delete a resource
///
/// Scope `resources:manage`. Retires the resource: its accounts stop rotating and being
/// checked, their stored passwords stay (readable with `rotor credential reveal`) until
/// root runs `rotor resource purge ID`. 409 while any of its accounts has work in flight.
#[utoipa::path(
    delete,
    path = "/v1/resources/{id}",
    operation_id = "deleteResource",
    tag = "resources",
    params(("id" = String, Path, description = "Resource id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "No such resource.", body = VcfError),
        (status = 409, description = "Work on it has not ended (`RESOURCE_BUSY`).", body = VcfError),
        Guarded
    )
)]
async fn remove(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::ResourcesManage)?;
    text_param("id", Some(&id))?;
    caller.require_resource("id", &id)?;
    match inventory::retire(&state.pool, &id, &caller.requester()).await {
        Ok(accounts) => {
            tracing::warn!(target: "rotor::security", caller = %caller.name, resource_id = %id, accounts, "resource deleted; its passwords are kept until purged");
            Ok(StatusCode::NO_CONTENT)
        }
        Err(e @ inventory::Retired::NotFound(_)) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "RESOURCE_NOT_FOUND",
            e.to_string(),
        )),
        Err(e @ inventory::Retired::Busy { .. }) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "RESOURCE_BUSY",
            e.to_string(),
        )),
        Err(inventory::Retired::Db(e)) => Err(ApiError::from(e)),
        Err(other) => Err(ApiError::internal(other)),
    }
}
