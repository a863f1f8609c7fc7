//! Resolving a parsed request against the inventory and the policies into a task:
//! every element and credential checked, every supplied password too.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use uuid::Uuid;

use super::lookup::{AccountRow, Lookup, ResourceRef};
use super::parse::{
    AutoRotatePolicy, CredentialSpec, CredentialsUpdateSpec, Element, OperationType,
};
use super::redact::{NUL_MESSAGE, REDACTED};
use super::rejection::{Refusal, RejectCode, Rejection};
use crate::access::{Grant, Requester};
use crate::engine::model::Operation;
use crate::engine::record::{NewSubTask, NewTask};
use crate::policy::Policy;

/// What resolving a request needs besides the request.
pub struct Context<'a> {
    pub pool: &'a PgPool,
    /// The rows a batch's requests name, read once for all of them (None: read each).
    pub lookup: Option<&'a Lookup>,
    pub policies: &'a BTreeMap<String, Policy>,
    pub max_credentials: usize,
}

/// Where a request came from and who sent it: the channel (`AMQP`, `HTTP`), the
/// caller, what the caller may touch, and the producer's idempotency key.
pub struct Origin<'a> {
    pub channel: &'static str,
    pub requester: Requester,
    pub grant: &'a Grant,
    pub request_key: Option<String>,
}

impl Origin<'_> {
    /// Refuses a resource outside the caller's `resources` globs.
    fn check_resource(&self, field: &str, id: &str) -> Result<(), Rejection> {
        if self.grant.allows_resource(id) {
            Ok(())
        } else {
            Err(Rejection::new(
                RejectCode::PermissionDenied,
                field,
                format!(
                    "resource `{id}` is outside what {} `{}` may touch",
                    self.requester.kind, self.requester.name
                ),
            ))
        }
    }
}

/// Turns a parsed request into a task, checking every element against the inventory
/// and every supplied password against its account's policy (UPDATE).
pub async fn resolve(
    ctx: &Context<'_>,
    spec: &CredentialsUpdateSpec,
    origin: &Origin<'_>,
) -> Result<NewTask, Refusal> {
    let operation = match spec.operation_type {
        OperationType::Rotate => Operation::Rotate,
        OperationType::Update => Operation::Update,
        OperationType::Remediate => Operation::Remediate,
        OperationType::UpdateAutoRotatePolicy => Operation::UpdateAutoRotatePolicy,
    };
    let params = match (operation, &spec.auto_rotate_policy) {
        (Operation::UpdateAutoRotatePolicy, None) => {
            return Err(Rejection::new(
                RejectCode::InvalidRequest,
                "autoRotatePolicy",
                "is required for UPDATE_AUTO_ROTATE_POLICY",
            )
            .into())
        }
        (Operation::UpdateAutoRotatePolicy, Some(p)) => auto_rotate_params(p)?,
        (_, Some(_)) => {
            return Err(Rejection::new(
                RejectCode::InvalidRequest,
                "autoRotatePolicy",
                "is only allowed with UPDATE_AUTO_ROTATE_POLICY",
            )
            .into())
        }
        (_, None) => serde_json::json!({}),
    };
    if spec.elements.is_empty() {
        return Err(Rejection::new(
            RejectCode::InvalidRequest,
            "elements",
            "must name at least one resource",
        )
        .into());
    }
    let total: usize = spec.elements.iter().map(|e| e.credentials.len()).sum();
    if total > ctx.max_credentials {
        return Err(Rejection::new(
            RejectCode::RequestTooLarge,
            "elements",
            format!(
                "names {total} credentials; at most {} per request",
                ctx.max_credentials
            ),
        )
        .into());
    }
    let mut subtasks: Vec<NewSubTask> = Vec::with_capacity(total);
    let mut labels = Vec::new();
    for (i, element) in spec.elements.iter().enumerate() {
        let at = format!("elements[{i}]");
        let resource = find_resource(ctx, element, &at).await?;
        let named_by = if element.resource_id.is_some() {
            "resourceId"
        } else {
            "resourceName"
        };
        origin.check_resource(&format!("{at}.{named_by}"), &resource.id)?;
        if element.credentials.is_empty() {
            return Err(Rejection::new(
                RejectCode::InvalidRequest,
                format!("{at}.credentials"),
                "must name at least one credential",
            )
            .into());
        }
        for (j, cred) in element.credentials.iter().enumerate() {
            let at = format!("{at}.credentials[{j}]");
            let credential_id = find_credential(ctx, &resource, cred, &at).await?;
            if subtasks.iter().any(|s| s.credential_id == credential_id) {
                return Err(Rejection::new(
                    RejectCode::ValueDuplicate,
                    format!("{at}.username"),
                    "names the same credential twice",
                )
                .into());
            }
            let password = check_password(ctx, operation, &resource, cred, &at)?;
            let mut params = params.clone();
            if operation == Operation::Remediate && password.is_none() {
                params = serde_json::json!({"reconcile": true});
            }
            subtasks.push(NewSubTask {
                credential_id,
                resource_id: resource.id.clone(),
                password,
                params,
            });
            labels.push(format!("{}@{}", cred.username, resource.id));
        }
    }
    Ok(NewTask {
        id: Uuid::new_v4(),
        operation,
        name: task_name(operation, &labels),
        source: origin.channel,
        requested_by: origin.requester.clone(),
        request_key: origin.request_key.clone(),
        is_auto_rotate: false,
        subtasks,
    })
}

fn task_name(operation: Operation, labels: &[String]) -> String {
    let verb = crate::engine::view::operation_verb(operation);
    match labels {
        [one] => format!("{verb} password of {one}"),
        many => format!("{verb} passwords of {} credentials", many.len()),
    }
}

fn auto_rotate_params(p: &AutoRotatePolicy) -> Result<serde_json::Value, Rejection> {
    if !p.enable_auto_rotate_policy {
        return Ok(serde_json::json!({"enable": false}));
    }
    let days = p.frequency_in_days.ok_or_else(|| {
        Rejection::new(
            RejectCode::RequiredValueMissing,
            "autoRotatePolicy.frequencyInDays",
            "is required when enableAutoRotatePolicy is true",
        )
    })?;
    if !(1..=365).contains(&days) {
        return Err(Rejection::new(
            RejectCode::ValueOutOfBounds,
            "autoRotatePolicy.frequencyInDays",
            format!("must be 1 to 365, got {days}"),
        ));
    }
    Ok(serde_json::json!({"enable": true, "frequencyInDays": days}))
}

/// The password a credential entry supplies, checked for its operation.
fn check_password(
    ctx: &Context<'_>,
    operation: Operation,
    resource: &ResourceRef,
    cred: &CredentialSpec,
    at: &str,
) -> Result<Option<SecretString>, Rejection> {
    let field = format!("{at}.password");
    match (operation, &cred.password) {
        (Operation::Rotate | Operation::UpdateAutoRotatePolicy, Some(_)) => Err(Rejection::new(
            RejectCode::InvalidRequest,
            field,
            format!("must not be given for {operation}"),
        )),
        (Operation::Update, None) => Err(Rejection::new(
            RejectCode::RequiredValueMissing,
            field,
            "is required for UPDATE",
        )),
        (Operation::Update, Some(pw)) => {
            check_charset(pw, &field)?;
            let policy = ctx.policies.get(&resource.policy).ok_or_else(|| {
                Rejection::new(
                    RejectCode::PolicyNotFound,
                    field.clone(),
                    format!(
                        "resource `{}` names unknown policy `{}`",
                        resource.id, resource.policy
                    ),
                )
            })?;
            let broken = policy.check_for(pw, Some(&cred.username));
            if !broken.is_empty() {
                let rules: Vec<String> = broken
                    .iter()
                    .map(|v| format!("{} ({})", v.code, v.message))
                    .collect();
                return Err(Rejection::new(
                    RejectCode::PasswordPolicyViolation,
                    field,
                    format!("breaks policy `{}`: {}", resource.policy, rules.join("; ")),
                ));
            }
            Ok(Some(pw.clone()))
        }
        (_, Some(pw)) => {
            check_charset(pw, &field)?;
            Ok(Some(pw.clone()))
        }
        (_, None) => Ok(None),
    }
}

pub(super) fn check_charset(pw: &SecretString, field: &str) -> Result<(), Rejection> {
    if pw.expose_secret().is_empty() {
        return Err(Rejection::new(
            RejectCode::RequiredValueMissing,
            field,
            "must not be empty",
        ));
    }
    if pw.expose_secret() == REDACTED {
        return Err(Rejection::new(
            RejectCode::ValueIncorrectFormat,
            field,
            "is the placeholder rotor writes into dead-lettered copies; send the real password",
        ));
    }
    crate::driver::validate_password_charset(pw.expose_secret())
        .map_err(|m| Rejection::new(RejectCode::ValueIncorrectFormat, field, m))
}

async fn find_credential(
    ctx: &Context<'_>,
    resource: &ResourceRef,
    cred: &CredentialSpec,
    at: &str,
) -> Result<Uuid, Refusal> {
    crate::driver::validate_username(&cred.username)
        .map_err(|m| Rejection::new(RejectCode::InvalidUsername, format!("{at}.username"), m))?;
    let row = match ctx.lookup.and_then(|l| l.account(&resource.id, &cred.username)) {
        Some(row) => row,
        None => sqlx::query!(
            "SELECT id, account_type, credential_type FROM credentials WHERE resource_id = $1 AND username = $2",
            resource.id,
            cred.username
        )
        .fetch_optional(ctx.pool)
        .await?
        .map(|r| AccountRow { id: r.id, account_type: r.account_type, credential_type: r.credential_type }),
    };
    let row = row.ok_or_else(|| {
        Rejection::new(
            RejectCode::CredentialNotFound,
            format!("{at}.username"),
            format!(
                "no account `{}` on resource `{}`",
                cred.username, resource.id
            ),
        )
    })?;
    for (field, given, actual) in [
        ("accountType", &cred.account_type, &row.account_type),
        (
            "credentialType",
            &cred.credential_type,
            &row.credential_type,
        ),
    ] {
        if let Some(given) = given {
            if given != actual {
                return Err(Rejection::new(
                    RejectCode::InvalidRequest,
                    format!("{at}.{field}"),
                    format!("is {given}, but the account's is {actual}"),
                )
                .into());
            }
        }
    }
    Ok(row.id)
}

/// A PrivX request for one account: rotate it, or store `password` as its current one.
pub async fn resolve_privx(
    ctx: &Context<'_>,
    host_id: &str,
    account: &str,
    password: Option<SecretString>,
    origin: &Origin<'_>,
) -> Result<NewTask, Refusal> {
    for (field, value) in [("host_id", host_id), ("account", account)] {
        if value.contains('\0') {
            return Err(
                Rejection::new(RejectCode::ValueIncorrectFormat, field, NUL_MESSAGE).into(),
            );
        }
    }
    let element = Element {
        resource_id: Some(host_id.to_string()),
        resource_name: None,
        resource_type: String::new(),
        credentials: vec![],
    };
    let resource = find_resource_any_type(ctx, &element, "host_id", "host_id").await?;
    origin.check_resource("host_id", &resource.id)?;
    let cred = CredentialSpec {
        username: account.to_string(),
        password: None,
        account_type: None,
        credential_type: None,
    };
    let credential_id = find_credential(ctx, &resource, &cred, "")
        .await
        .map_err(|r| match r {
            Refusal::Invalid(mut r) => {
                r.field = "account".into();
                Refusal::Invalid(r)
            }
            unavailable => unavailable,
        })?;
    let operation = if password.is_some() {
        Operation::SetPassword
    } else {
        Operation::Rotate
    };
    if let Some(pw) = &password {
        check_charset(pw, "password")?;
    }
    let label = format!("{account}@{}", resource.id);
    Ok(NewTask {
        id: Uuid::new_v4(),
        operation,
        name: task_name(operation, &[label]),
        source: origin.channel,
        requested_by: origin.requester.clone(),
        request_key: origin.request_key.clone(),
        is_auto_rotate: false,
        subtasks: vec![NewSubTask {
            credential_id,
            resource_id: resource.id.clone(),
            password,
            params: serde_json::json!({}),
        }],
    })
}

/// The element's resource, by `resourceId`, else by `resourceName`; its type must match.
async fn find_resource(
    ctx: &Context<'_>,
    element: &Element,
    at: &str,
) -> Result<ResourceRef, Refusal> {
    let found = find_resource_any_type(
        ctx,
        element,
        &format!("{at}.resourceId"),
        &format!("{at}.resourceName"),
    )
    .await?;
    if found.kind != element.resource_type {
        return Err(Rejection::new(
            RejectCode::InvalidRequest,
            format!("{at}.resourceType"),
            format!(
                "is {}, but resource `{}` is {}",
                element.resource_type, found.id, found.kind
            ),
        )
        .into());
    }
    Ok(found)
}

/// `id_field`/`name_field`: how the request names those fields, for errors.
async fn find_resource_any_type(
    ctx: &Context<'_>,
    element: &Element,
    id_field: &str,
    name_field: &str,
) -> Result<ResourceRef, Refusal> {
    let (field, row) = match (&element.resource_id, &element.resource_name) {
        (Some(id), _) => match ctx.lookup.and_then(|l| l.resource_by_id(id)) {
            Some(found) => (id_field, found),
            None => (
                id_field,
                sqlx::query!(
                    "SELECT id, type, policy FROM resources WHERE id = $1 AND deleted_at IS NULL",
                    id
                )
                .fetch_optional(ctx.pool)
                .await?
                .map(|r| ResourceRef {
                    id: r.id,
                    kind: r.r#type,
                    policy: r.policy,
                }),
            ),
        },
        (None, Some(name)) => {
            let mut found = match ctx.lookup.and_then(|l| l.resources_by_name(name)) {
                Some(found) => found,
                None => sqlx::query!("SELECT id, type, policy FROM resources WHERE name = $1 AND deleted_at IS NULL ORDER BY id LIMIT 2", name)
                    .fetch_all(ctx.pool)
                    .await?
                    .into_iter()
                    .map(|r| ResourceRef { id: r.id, kind: r.r#type, policy: r.policy })
                    .collect(),
            };
            if found.len() > 1 {
                return Err(Rejection::new(
                    RejectCode::InvalidRequest,
                    name_field,
                    format!("`{name}` names more than one resource; name it by resourceId"),
                )
                .into());
            }
            (name_field, found.pop())
        }
        (None, None) => {
            return Err(Rejection::new(
                RejectCode::RequiredValueMissing,
                id_field,
                "give resourceId or resourceName",
            )
            .into())
        }
    };
    Ok(row.ok_or_else(|| Rejection::new(RejectCode::ResourceNotFound, field, "no such resource"))?)
}
