//! `/v1/resources`: the inventory of SPEC section 6 as camelCase JSON.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value};

use super::body::Body;
use super::error::ApiError;
use super::paging::text_param;
use super::state::{ApiState, Caller};
use crate::config::Scope;
use crate::inventory::{self, InventoryFile, ResourceSpec};

pub fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1/resources", get(list).post(create))
        .route("/v1/resources/{id}", get(get_one).put(replace).delete(remove))
}

/// Renames every object key with `f`, recursively.
fn rename_keys(v: Value, f: &dyn Fn(&str) -> String) -> Value {
    match v {
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (f(&k), rename_keys(v, f))).collect::<Map<_, _>>()),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| rename_keys(v, f)).collect()),
        other => other,
    }
}

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

fn snake(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

async fn load(state: &ApiState, id: Option<&str>) -> Result<Vec<Value>, ApiError> {
    let rows = sqlx::query!(
        "SELECT id, name, type, address, port, host_keys, insecure_accept_any_host_key, platform, policy,
                admin_username, admin_private_key_file, admin_password_file, admin_sudo
           FROM resources WHERE ($1::text IS NULL OR id = $1) ORDER BY id",
        id
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
        let spec = ResourceSpec {
            id: r.id,
            name: r.name,
            kind: r.r#type,
            address: r.address,
            port: u16::try_from(r.port).unwrap_or(22),
            host_keys: r.host_keys,
            insecure_accept_any_host_key: r.insecure_accept_any_host_key,
            platform: r.platform,
            policy: Some(r.policy),
            admin: r.admin_username.map(|username| inventory::AdminSpec {
                username,
                private_key_file: r.admin_private_key_file.map(Into::into),
                password_file: r.admin_password_file.map(Into::into),
                sudo: r.admin_sudo,
            }),
            account: accounts
                .into_iter()
                .map(|a| inventory::AccountSpec {
                    username: a.username,
                    account_type: a.account_type,
                    credential_type: a.credential_type,
                    password_file: None,
                    auto_rotate_days: a.auto_rotate_days,
                })
                .collect(),
        };
        out.push(rename_keys(serde_json::to_value(spec).expect("resource serializes"), &camel));
    }
    Ok(out)
}

async fn list(caller: Caller, State(state): State<Arc<ApiState>>) -> Result<Json<Vec<Value>>, ApiError> {
    caller.require(Scope::ResourcesManage)?;
    Ok(Json(load(&state, None).await?))
}

async fn get_one(caller: Caller, State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::ResourcesManage)?;
    text_param("id", Some(&id))?;
    load(&state, Some(&id))
        .await?
        .pop()
        .map(Json)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND", format!("no resource {id}")))
}

/// Parses, validates and upserts one resource, as `rotor resource apply` would.
async fn upsert(state: &ApiState, body: &[u8], path_id: Option<&str>) -> Result<(StatusCode, Json<Value>), ApiError> {
    let json: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad_request("body", &format!("is not valid JSON ({e})")))?;
    if let Some(field) = crate::requests::nul_in(&json, String::new()) {
        return Err(ApiError::bad_request(&field, crate::requests::NUL_MESSAGE));
    }
    let spec: ResourceSpec = serde_path_to_error::deserialize(rename_keys(json, &snake)).map_err(|e| {
        let field = camel(&e.path().to_string());
        ApiError::bad_request(if field == "." { "body" } else { &field }, &e.into_inner().to_string())
    })?;
    if let Some(id) = path_id {
        if spec.id != id {
            return Err(ApiError::bad_request("id", "must match the id in the path"));
        }
    }
    let inv = InventoryFile { resource: vec![spec] };
    let default_policy = |t: &str| state.type_policy.get(t).cloned().unwrap_or_else(|| crate::policy::preset_for_type(t).to_string());
    inventory::validate(&inv, &state.submitter.policies, default_policy).map_err(|e| match e {
        inventory::Error::Invalid { field, message } => ApiError::bad_request(&camel(&field.replacen("resource[0].", "", 1)), &message),
        other => ApiError::bad_request("body", &other.to_string()),
    })?;
    let report = inventory::apply(&state.pool, Some(&state.submitter.key), &inv, default_policy, &state.submitter.schedule).await.map_err(|e| match e {
        inventory::Error::Db(e) => ApiError::from(e),
        inventory::Error::Store(e) => ApiError::from(e),
        other => ApiError::bad_request("body", &other.to_string()),
    })?;
    let created = report.iter().any(|l| l.starts_with("resource ") && l.ends_with("created"));
    let id = &inv.resource[0].id;
    let body = load(state, Some(id)).await?.pop().unwrap_or(Value::Null);
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(body)))
}

async fn create(caller: Caller, State(state): State<Arc<ApiState>>, Body(body): Body) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Scope::ResourcesManage)?;
    upsert(&state, &body, None).await
}

async fn replace(caller: Caller, State(state): State<Arc<ApiState>>, Path(id): Path<String>, Body(body): Body) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Scope::ResourcesManage)?;
    text_param("id", Some(&id))?;
    upsert(&state, &body, Some(&id)).await
}

/// Deletes a resource with its accounts and their stored passwords; refused while any
/// of its accounts has work in flight.
async fn remove(caller: Caller, State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    caller.require(Scope::ResourcesManage)?;
    text_param("id", Some(&id))?;
    let busy = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM subtasks s JOIN credentials c ON c.id = s.credential_id
            WHERE c.resource_id = $1 AND s.status IN ('PENDING', 'IN_PROGRESS')"#,
        id
    )
    .fetch_one(&state.pool)
    .await
    .map_err(ApiError::from)?;
    if busy > 0 {
        return Err(ApiError::new(StatusCode::CONFLICT, "RESOURCE_BUSY", format!("{busy} subtasks on resource {id} have not ended")));
    }
    let n = sqlx::query!("DELETE FROM resources WHERE id = $1", id).execute(&state.pool).await.map_err(ApiError::from)?.rows_affected();
    if n == 0 {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND", format!("no resource {id}")));
    }
    tracing::warn!(target: "rotor::security", caller = %caller.name, resource_id = %id, "resource deleted with its accounts and stored passwords");
    Ok(StatusCode::NO_CONTENT)
}
