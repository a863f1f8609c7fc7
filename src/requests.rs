//! Requests as producers send them (VCF `CredentialsUpdateSpec`), parsed and checked
//! against the inventory, becoming a `NewTask`. Every error names the offending field.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::engine::model::Operation;
use crate::engine::repo::{NewSubTask, NewTask};
use crate::policy::Policy;
use crate::vcf_error::VcfError;

/// Why a request was refused; nothing was recorded or changed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Rejection {
    pub code: &'static str,
    /// Path of the offending field, e.g. `elements[0].credentials[1].username`.
    pub field: String,
    pub message: String,
}

impl Rejection {
    pub fn new(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Rejection { code, field: field.into(), message: message.into() }
    }

    pub fn to_vcf(&self) -> VcfError {
        let mut e = VcfError::new(self.code, format!("{}: {}", self.field, self.message)).argument(self.field.clone());
        e.context.insert("field".into(), self.field.clone());
        e
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationType {
    Update,
    Rotate,
    Remediate,
    UpdateAutoRotatePolicy,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialsUpdateSpec {
    pub operation_type: OperationType,
    pub elements: Vec<Element>,
    pub auto_rotate_policy: Option<AutoRotatePolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Element {
    pub resource_id: Option<String>,
    pub resource_name: Option<String>,
    pub resource_type: String,
    pub credentials: Vec<CredentialSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialSpec {
    pub username: String,
    pub password: Option<SecretString>,
    pub account_type: Option<String>,
    pub credential_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoRotatePolicy {
    pub enable_auto_rotate_policy: bool,
    pub frequency_in_days: Option<i32>,
}

/// Parses a JSON body, naming the path of the first wrong field.
pub fn parse_spec(body: &[u8]) -> Result<CredentialsUpdateSpec, Rejection> {
    parse_json(body)
}

fn json_rejection(e: serde_path_to_error::Error<serde_json::Error>) -> Rejection {
    let path = e.path().to_string();
    let inner = e.into_inner();
    let field = if path == "." || path == "?" { "body".to_string() } else { path };
    if inner.is_syntax() || inner.is_eof() {
        return Rejection::new("INVALID_REQUEST", field, format!("is not valid JSON ({inner})"));
    }
    // serde's message ends with " at line 1 column N"; the path already says where.
    let m = inner.to_string();
    let m = m.rsplit_once(" at line ").map(|(head, _)| head.to_string()).unwrap_or(m);
    if let Some(name) = m.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
        // Name the missing field itself, not the object it is missing from.
        let field = if field == "body" { name.to_string() } else { format!("{field}.{name}") };
        return Rejection::new("REQUIRED_VALUE_MISSING", field, "is required");
    }
    let code = if m.starts_with("invalid type") {
        "VALUE_INCORRECT_TYPE"
    } else {
        "INVALID_REQUEST"
    };
    Rejection::new(code, field, without_value(&m))
}

/// serde names the offending value (`invalid type: integer `12345678`, expected a
/// string`); that value may be a password sent with the wrong type, and the message goes
/// into Task errors, logs and `x-rotor-error`. Keep its kind, drop the value itself.
fn without_value(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some((unexpected, expected)) = rest.rsplit_once(", expected ") {
                let kind = match unexpected.split([' ', '`', '"']).next().unwrap_or("") {
                    "floating" => "floating point",
                    "unit" => "unit value",
                    k => k,
                };
                return format!("{prefix}{kind}, expected {expected}");
            }
        }
    }
    message.to_string()
}

/// What stands in for a password in the dead-lettered copy of a refused request.
/// A request supplying it as a password is refused, so re-publishing a dead letter can
/// never store or apply it.
pub const REDACTED: &str = "<redacted by rotor>";

/// A refused request's body made safe to keep (in `rotor.requests.dead`): the JSON with
/// the value of every key that names a password replaced by [`REDACTED`], and the paths
/// replaced. `None` when the body is not JSON: no one can tell where a secret stands in
/// it, so it must not be kept.
pub fn redact_secrets(body: &[u8]) -> Option<(Vec<u8>, Vec<String>)> {
    fn walk(value: &mut serde_json::Value, at: &str, found: &mut Vec<String>) {
        match value {
            serde_json::Value::Array(items) => {
                for (i, v) in items.iter_mut().enumerate() {
                    walk(v, &format!("{at}[{i}]"), found);
                }
            }
            serde_json::Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    if k.to_ascii_lowercase().contains("password") && !v.is_null() {
                        *v = serde_json::Value::String(REDACTED.into());
                        found.push(key_path(at, k));
                    } else {
                        walk(v, &key_path(at, k), found);
                    }
                }
            }
            _ => {}
        }
    }
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let mut found = Vec::new();
    walk(&mut value, "", &mut found);
    Some((serde_json::to_vec(&value).expect("a parsed value serializes"), found))
}

/// The path of key `key` inside the value at path `at` (`""` is the body itself).
fn key_path(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_string()
    } else {
        format!("{at}.{key}")
    }
}

pub const NUL_MESSAGE: &str = "must not contain a NUL character (\\u0000)";

/// The path (`elements[0].resourceId`) of the first key or string holding a NUL.
pub fn nul_in(value: &serde_json::Value, at: String) -> Option<String> {
    let named = |at: &str| if at.is_empty() { "body".to_string() } else { at.to_string() };
    match value {
        serde_json::Value::String(s) if s.contains('\0') => Some(named(&at)),
        serde_json::Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| nul_in(v, format!("{at}[{i}]"))),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            let path = key_path(&at, k);
            if k.contains('\0') {
                Some(named(&at))
            } else {
                nul_in(v, path)
            }
        }),
        _ => None,
    }
}

/// What resolving a request needs besides the request.
pub struct Context<'a> {
    pub pool: &'a PgPool,
    pub policies: &'a BTreeMap<String, Policy>,
    pub max_credentials: usize,
}

/// Turns a parsed request into a task, checking every element against the inventory
/// and every supplied password against its account's policy (UPDATE).
pub async fn resolve(
    ctx: &Context<'_>,
    spec: &CredentialsUpdateSpec,
    source: &'static str,
    request_key: Option<String>,
) -> Result<NewTask, Rejection> {
    let operation = match spec.operation_type {
        OperationType::Rotate => Operation::Rotate,
        OperationType::Update => Operation::Update,
        OperationType::Remediate => Operation::Remediate,
        OperationType::UpdateAutoRotatePolicy => Operation::UpdateAutoRotatePolicy,
    };
    let params = match (operation, &spec.auto_rotate_policy) {
        (Operation::UpdateAutoRotatePolicy, None) => {
            return Err(Rejection::new("INVALID_REQUEST", "autoRotatePolicy", "is required for UPDATE_AUTO_ROTATE_POLICY"))
        }
        (Operation::UpdateAutoRotatePolicy, Some(p)) => auto_rotate_params(p)?,
        (_, Some(_)) => {
            return Err(Rejection::new("INVALID_REQUEST", "autoRotatePolicy", "is only allowed with UPDATE_AUTO_ROTATE_POLICY"))
        }
        (_, None) => serde_json::json!({}),
    };
    if spec.elements.is_empty() {
        return Err(Rejection::new("INVALID_REQUEST", "elements", "must name at least one resource"));
    }
    let total: usize = spec.elements.iter().map(|e| e.credentials.len()).sum();
    if total > ctx.max_credentials {
        return Err(Rejection::new(
            "REQUEST_TOO_LARGE",
            "elements",
            format!("names {total} credentials; at most {} per request", ctx.max_credentials),
        ));
    }
    let mut subtasks: Vec<NewSubTask> = Vec::with_capacity(total);
    let mut labels = Vec::new();
    for (i, element) in spec.elements.iter().enumerate() {
        let at = format!("elements[{i}]");
        let resource = find_resource(ctx.pool, element, &at).await?;
        if element.credentials.is_empty() {
            return Err(Rejection::new("INVALID_REQUEST", format!("{at}.credentials"), "must name at least one credential"));
        }
        for (j, cred) in element.credentials.iter().enumerate() {
            let at = format!("{at}.credentials[{j}]");
            let credential_id = find_credential(ctx.pool, &resource, cred, &at).await?;
            if subtasks.iter().any(|s| s.credential_id == credential_id) {
                return Err(Rejection::new("VALUE_DUPLICATE", format!("{at}.username"), "names the same credential twice"));
            }
            let password = check_password(ctx, operation, &resource, cred, &at)?;
            let mut params = params.clone();
            if operation == Operation::Remediate && password.is_none() {
                params = serde_json::json!({"reconcile": true});
            }
            subtasks.push(NewSubTask { credential_id, password, params });
            labels.push(format!("{}@{}", cred.username, resource.id));
        }
    }
    Ok(NewTask { operation, name: task_name(operation, &labels), source, request_key, is_auto_rotate: false, subtasks })
}

fn task_name(operation: Operation, labels: &[String]) -> String {
    let verb = crate::engine::view::operation_verb(operation.as_str());
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
        Rejection::new("REQUIRED_VALUE_MISSING", "autoRotatePolicy.frequencyInDays", "is required when enableAutoRotatePolicy is true")
    })?;
    if !(1..=365).contains(&days) {
        return Err(Rejection::new("VALUE_OUT_OF_BOUNDS", "autoRotatePolicy.frequencyInDays", format!("must be 1 to 365, got {days}")));
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
        (Operation::Rotate | Operation::UpdateAutoRotatePolicy, Some(_)) => {
            Err(Rejection::new("INVALID_REQUEST", field, format!("must not be given for {operation}")))
        }
        (Operation::Update, None) => Err(Rejection::new("REQUIRED_VALUE_MISSING", field, "is required for UPDATE")),
        (Operation::Update, Some(pw)) => {
            check_charset(pw, &field)?;
            let policy = ctx.policies.get(&resource.policy).ok_or_else(|| {
                Rejection::new("POLICY_NOT_FOUND", field.clone(), format!("resource `{}` names unknown policy `{}`", resource.id, resource.policy))
            })?;
            let broken = policy.check_for(pw, Some(&cred.username));
            if !broken.is_empty() {
                let rules: Vec<String> = broken.iter().map(|v| format!("{} ({})", v.code, v.message)).collect();
                return Err(Rejection::new(
                    "PASSWORD_POLICY_VIOLATION",
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

fn check_charset(pw: &SecretString, field: &str) -> Result<(), Rejection> {
    if pw.expose_secret().is_empty() {
        return Err(Rejection::new("REQUIRED_VALUE_MISSING", field, "must not be empty"));
    }
    if pw.expose_secret() == REDACTED {
        return Err(Rejection::new(
            "VALUE_INCORRECT_FORMAT",
            field,
            "is the placeholder rotor writes into dead-lettered copies; send the real password",
        ));
    }
    crate::target::validate_password_charset(pw.expose_secret()).map_err(|m| Rejection::new("VALUE_INCORRECT_FORMAT", field, m))
}

async fn find_credential(pool: &PgPool, resource: &ResourceRef, cred: &CredentialSpec, at: &str) -> Result<Uuid, Rejection> {
    crate::target::validate_username(&cred.username).map_err(|m| Rejection::new("INVALID_USERNAME", format!("{at}.username"), m))?;
    let row = sqlx::query!(
        "SELECT id, account_type, credential_type FROM credentials WHERE resource_id = $1 AND username = $2",
        resource.id,
        cred.username
    )
    .fetch_optional(pool)
    .await
    .map_err(db_rejection)?
    .ok_or_else(|| {
        Rejection::new(
            "CREDENTIAL_NOT_FOUND",
            format!("{at}.username"),
            format!("no account `{}` on resource `{}`", cred.username, resource.id),
        )
    })?;
    for (field, given, actual) in [("accountType", &cred.account_type, &row.account_type), ("credentialType", &cred.credential_type, &row.credential_type)] {
        if let Some(given) = given {
            if given != actual {
                return Err(Rejection::new("INVALID_REQUEST", format!("{at}.{field}"), format!("is {given}, but the account's is {actual}")));
            }
        }
    }
    Ok(row.id)
}

/// PrivX "initiate rotation": `{"host_id", "account"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivxRotate {
    pub host_id: String,
    pub account: String,
}

/// PrivX "set latest password, no policy checking done".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivxPassword {
    pub host_id: String,
    pub account: String,
    pub password: SecretString,
}

pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Rejection> {
    let text = std::str::from_utf8(body).map_err(|_| Rejection::new("INVALID_REQUEST", "body", "is not UTF-8"))?;
    // A NUL can only arrive escaped; no name, id or password may hold one (PostgreSQL
    // text cannot, and a target would cut the line there).
    if text.contains("\\u0000") {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
            if let Some(field) = nul_in(&value, String::new()) {
                return Err(Rejection::new("VALUE_INCORRECT_FORMAT", field, NUL_MESSAGE));
            }
        }
    }
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(json_rejection)
}

/// A PrivX request for one account: rotate it, or store `password` as its current one.
pub async fn resolve_privx(
    pool: &PgPool,
    host_id: &str,
    account: &str,
    password: Option<SecretString>,
    source: &'static str,
    request_key: Option<String>,
) -> Result<NewTask, Rejection> {
    for (field, value) in [("host_id", host_id), ("account", account)] {
        if value.contains('\0') {
            return Err(Rejection::new("VALUE_INCORRECT_FORMAT", field, NUL_MESSAGE));
        }
    }
    let element = Element {
        resource_id: Some(host_id.to_string()),
        resource_name: None,
        resource_type: String::new(),
        credentials: vec![],
    };
    let resource = find_resource_any_type(pool, &element, "host_id", "host_id").await?;
    let cred = CredentialSpec { username: account.to_string(), password: None, account_type: None, credential_type: None };
    let credential_id = find_credential(pool, &resource, &cred, "").await.map_err(|mut r| {
        r.field = "account".into();
        r
    })?;
    let operation = if password.is_some() { Operation::SetPassword } else { Operation::Rotate };
    if let Some(pw) = &password {
        check_charset(pw, "password")?;
    }
    let label = format!("{account}@{}", resource.id);
    Ok(NewTask {
        operation,
        name: task_name(operation, &[label]),
        source,
        request_key,
        is_auto_rotate: false,
        subtasks: vec![NewSubTask { credential_id, password, params: serde_json::json!({}) }],
    })
}

fn db_rejection(e: sqlx::Error) -> Rejection {
    Rejection::new("DATABASE_UNAVAILABLE", "body", format!("cannot check the inventory: {e}"))
}

/// The resource an element names.
pub struct ResourceRef {
    pub id: String,
    pub kind: String,
    pub policy: String,
}

/// The element's resource, by `resourceId`, else by `resourceName`; its type must match.
async fn find_resource(pool: &PgPool, element: &Element, at: &str) -> Result<ResourceRef, Rejection> {
    let found = find_resource_any_type(pool, element, &format!("{at}.resourceId"), &format!("{at}.resourceName")).await?;
    if found.kind != element.resource_type {
        return Err(Rejection::new(
            "INVALID_REQUEST",
            format!("{at}.resourceType"),
            format!("is {}, but resource `{}` is {}", element.resource_type, found.id, found.kind),
        ));
    }
    Ok(found)
}

/// `id_field`/`name_field`: how the request names those fields, for errors.
async fn find_resource_any_type(pool: &PgPool, element: &Element, id_field: &str, name_field: &str) -> Result<ResourceRef, Rejection> {
    let (field, row) = match (&element.resource_id, &element.resource_name) {
        (Some(id), _) => (
            id_field,
            sqlx::query!("SELECT id, type, policy FROM resources WHERE id = $1", id)
                .fetch_optional(pool)
                .await
                .map_err(db_rejection)?
                .map(|r| ResourceRef { id: r.id, kind: r.r#type, policy: r.policy }),
        ),
        (None, Some(name)) => (
            name_field,
            sqlx::query!("SELECT id, type, policy FROM resources WHERE name = $1 ORDER BY id LIMIT 1", name)
                .fetch_optional(pool)
                .await
                .map_err(db_rejection)?
                .map(|r| ResourceRef { id: r.id, kind: r.r#type, policy: r.policy }),
        ),
        (None, None) => {
            return Err(Rejection::new("REQUIRED_VALUE_MISSING", id_field, "give resourceId or resourceName"))
        }
    };
    row.ok_or_else(|| Rejection::new("RESOURCE_NOT_FOUND", field, "no such resource"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_field_is_named_by_path() {
        let r = parse_spec(br#"{"operationType":"ROTATE","elements":[{"resourceType":"LINUX","credentials":[{"username":5}]}]}"#)
            .unwrap_err();
        assert_eq!(r.field, "elements[0].credentials[0].username");
        let r = parse_spec(br#"{"operationType":"SPIN","elements":[]}"#).unwrap_err();
        assert_eq!(r.field, "operationType");
        assert!(r.message.contains("ROTATE"), "{}", r.message);
        let r = parse_spec(b"not json").unwrap_err();
        assert_eq!(r.field, "body");
        let r = parse_spec(b"\xff\xfe").unwrap_err();
        assert_eq!(r.message, "is not UTF-8");
    }

    #[test]
    fn password_is_never_in_a_rejection() {
        let r = parse_spec(br#"{"operationType":"ROTATE","elements":[{"resourceType":"LINUX","credentials":[{"username":"a","password":"Sup3r-Secret!","extra":1}]}]}"#)
            .unwrap_err();
        assert!(!r.to_string().contains("Sup3r"), "{r}");
        // A password sent with the wrong type is not echoed by serde's message either.
        for body in [
            &br#"{"operationType":"UPDATE","elements":[{"resourceType":"LINUX","credentials":[{"username":"a","password":987654321}]}]}"#[..],
            br#"{"operationType":"UPDATE","elements":[{"resourceType":"LINUX","credentials":[{"username":"a","password":98765.4321}]}]}"#,
            br#"{"operationType":"UPDATE","elements":[{"resourceType":"LINUX","credentials":[{"username":"a","password":true}]}]}"#,
            br#"{"operationType":"ROTATE","elements":[{"resourceType":"LINUX","credentials":[{"username":"Sup3r-Secret!, expected x"}]}],"autoRotatePolicy":"Sup3r"}"#,
        ] {
            let r = parse_spec(body).unwrap_err();
            assert_eq!(r.code, "VALUE_INCORRECT_TYPE", "{r}");
            for leak in ["987654321", "98765.4321", "true", "Sup3r"] {
                assert!(!r.to_string().contains(leak), "{r}");
            }
        }
        let r: Rejection = parse_json::<PrivxPassword>(br#"{"host_id":"h","account":"a","password":123456789}"#).unwrap_err();
        assert_eq!((r.field.as_str(), r.message.as_str()), ("password", "invalid type: integer, expected a string"));
    }

    #[test]
    fn dead_letter_copies_hold_no_password() {
        let body = br#"{"operationType":"UPDATE","elements":[{"resourceId":"h","resourceType":"LINUX","credentials":[{"username":"a","password":"S3cret-One!"},{"username":"b","Password":["S3cret-Two!"]},{"username":"c","password":null}]}]}"#;
        let (kept, paths) = redact_secrets(body).unwrap();
        let kept = String::from_utf8(kept).unwrap();
        assert!(!kept.contains("S3cret"), "{kept}");
        assert_eq!(paths, ["elements[0].credentials[0].password", "elements[0].credentials[1].Password"]);
        // Everything else is kept as it was, so the copy still shows what was wrong.
        let value: serde_json::Value = serde_json::from_str(&kept).unwrap();
        assert_eq!(value["elements"][0]["credentials"][1]["username"], "b");
        assert_eq!(value["elements"][0]["credentials"][0]["password"], REDACTED);
        let (_, paths) = redact_secrets(br#"{"host_id":"h","account":"a","password":"x"}"#).unwrap();
        assert_eq!(paths, ["password"]);
        // Not JSON: nothing can be kept.
        assert!(redact_secrets(br#"{"password":"S3cret-One!""#).is_none());
        assert!(redact_secrets(b"\xff").is_none());
        // The placeholder itself is refused as a password.
        let pw = SecretString::from(REDACTED.to_string());
        assert_eq!(check_charset(&pw, "password").unwrap_err().code, "VALUE_INCORRECT_FORMAT");
    }
}
