//! Requests as producers send them (VCF `CredentialsUpdateSpec`), parsed and checked
//! against the inventory, becoming a `NewTask`. Every error names the offending field.

use secrecy::SecretString;
use serde::Deserialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::engine::model::Operation;
use crate::engine::repo::NewTask;
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
    let text = std::str::from_utf8(body).map_err(|_| Rejection::new("INVALID_REQUEST", "body", "is not UTF-8"))?;
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if path == "." || path == "?" { "body".to_string() } else { path };
        let message = if inner.is_syntax() || inner.is_eof() {
            format!("is not valid JSON ({inner})")
        } else {
            // serde's message ends with " at line 1 column N"; the path already says where.
            let m = inner.to_string();
            m.rsplit_once(" at line ").map(|(head, _)| head.to_string()).unwrap_or(m)
        };
        Rejection::new("INVALID_REQUEST", field, message)
    })
}

/// Turns a parsed request into a task, checking every element against the inventory.
pub async fn resolve(
    pool: &PgPool,
    spec: &CredentialsUpdateSpec,
    source: &'static str,
    request_key: Option<String>,
    max_credentials: usize,
) -> Result<NewTask, Rejection> {
    let operation = match spec.operation_type {
        OperationType::Rotate => Operation::Rotate,
        other => {
            return Err(Rejection::new(
                "OPERATION_NOT_SUPPORTED",
                "operationType",
                format!("{other:?} is not supported by this version of rotor (supported: ROTATE)").to_uppercase(),
            ))
        }
    };
    if spec.elements.is_empty() {
        return Err(Rejection::new("INVALID_REQUEST", "elements", "must name at least one resource"));
    }
    let total: usize = spec.elements.iter().map(|e| e.credentials.len()).sum();
    if total > max_credentials {
        return Err(Rejection::new(
            "REQUEST_TOO_LARGE",
            "elements",
            format!("names {total} credentials; at most {max_credentials} per request"),
        ));
    }
    let mut credential_ids: Vec<Uuid> = Vec::with_capacity(total);
    let mut labels = Vec::new();
    for (i, element) in spec.elements.iter().enumerate() {
        let at = format!("elements[{i}]");
        let resource = find_resource(pool, element, &at).await?;
        if element.credentials.is_empty() {
            return Err(Rejection::new("INVALID_REQUEST", format!("{at}.credentials"), "must name at least one credential"));
        }
        for (j, cred) in element.credentials.iter().enumerate() {
            let at = format!("{at}.credentials[{j}]");
            crate::target::validate_username(&cred.username)
                .map_err(|m| Rejection::new("INVALID_USERNAME", format!("{at}.username"), m))?;
            if operation == Operation::Rotate && cred.password.is_some() {
                return Err(Rejection::new(
                    "INVALID_REQUEST",
                    format!("{at}.password"),
                    "must not be given for ROTATE (rotor generates the password)",
                ));
            }
            let row = sqlx::query!(
                "SELECT id, account_type, credential_type FROM credentials WHERE resource_id = $1 AND username = $2",
                resource.0,
                cred.username
            )
            .fetch_optional(pool)
            .await
            .map_err(db_rejection)?
            .ok_or_else(|| {
                Rejection::new(
                    "CREDENTIAL_NOT_FOUND",
                    format!("{at}.username"),
                    format!("no account `{}` on resource `{}`", cred.username, resource.0),
                )
            })?;
            if let Some(t) = &cred.account_type {
                if *t != row.account_type {
                    return Err(Rejection::new(
                        "INVALID_REQUEST",
                        format!("{at}.accountType"),
                        format!("is {t}, but the account is {}", row.account_type),
                    ));
                }
            }
            if let Some(t) = &cred.credential_type {
                if *t != row.credential_type {
                    return Err(Rejection::new(
                        "INVALID_REQUEST",
                        format!("{at}.credentialType"),
                        format!("is {t}, but the credential is {}", row.credential_type),
                    ));
                }
            }
            if credential_ids.contains(&row.id) {
                return Err(Rejection::new("INVALID_REQUEST", format!("{at}.username"), "names the same credential twice"));
            }
            credential_ids.push(row.id);
            labels.push(format!("{}@{}", cred.username, resource.0));
        }
    }
    let verb = crate::engine::view::operation_verb(operation.as_str());
    let name = if labels.len() == 1 {
        format!("{verb} password of {}", labels[0])
    } else {
        format!("{verb} passwords of {} credentials", labels.len())
    };
    Ok(NewTask { operation, name, source, request_key, is_auto_rotate: false, credential_ids })
}

fn db_rejection(e: sqlx::Error) -> Rejection {
    Rejection::new("DATABASE_UNAVAILABLE", "body", format!("cannot check the inventory: {e}"))
}

/// (id, type) of the element's resource, by `resourceId`, else by `resourceName`.
async fn find_resource(pool: &PgPool, element: &Element, at: &str) -> Result<(String, String), Rejection> {
    let (field, row) = match (&element.resource_id, &element.resource_name) {
        (Some(id), _) => (
            "resourceId",
            sqlx::query!("SELECT id, type FROM resources WHERE id = $1", id)
                .fetch_optional(pool)
                .await
                .map_err(db_rejection)?
                .map(|r| (r.id, r.r#type)),
        ),
        (None, Some(name)) => (
            "resourceName",
            sqlx::query!("SELECT id, type FROM resources WHERE name = $1 ORDER BY id LIMIT 1", name)
                .fetch_optional(pool)
                .await
                .map_err(db_rejection)?
                .map(|r| (r.id, r.r#type)),
        ),
        (None, None) => {
            return Err(Rejection::new("INVALID_REQUEST", format!("{at}.resourceId"), "give resourceId or resourceName"))
        }
    };
    let (id, kind) = row.ok_or_else(|| Rejection::new("RESOURCE_NOT_FOUND", format!("{at}.{field}"), "no such resource"))?;
    if kind != element.resource_type {
        return Err(Rejection::new(
            "INVALID_REQUEST",
            format!("{at}.resourceType"),
            format!("is {}, but resource `{id}` is {kind}", element.resource_type),
        ));
    }
    Ok((id, kind))
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
    }
}
