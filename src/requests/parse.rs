//! The request bodies as they arrive (VCF `CredentialsUpdateSpec`, PrivX messages),
//! parsed so that a wrong field is named by its path and no value is echoed.

use secrecy::SecretString;
use serde::Deserialize;

use super::redact::{nul_in, NUL_MESSAGE};
use super::rejection::{RejectCode, Rejection};

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationType {
    Update,
    Rotate,
    Remediate,
    UpdateAutoRotatePolicy,
}

/// The VCF request, as on AMQP `credentials.update`. Checked in full before anything is
/// recorded; a refusal names the field by path.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialsUpdateSpec {
    pub operation_type: OperationType,
    pub elements: Vec<Element>,
    pub auto_rotate_policy: Option<AutoRotatePolicy>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Element {
    pub resource_id: Option<String>,
    pub resource_name: Option<String>,
    pub resource_type: String,
    pub credentials: Vec<CredentialSpec>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialSpec {
    pub username: String,
    /// UPDATE: the password to set. REMEDIATE: the password the target has now. Refused
    /// with ROTATE and UPDATE_AUTO_ROTATE_POLICY.
    #[schema(value_type = Option<String>, format = Password, write_only)]
    pub password: Option<SecretString>,
    pub account_type: Option<String>,
    pub credential_type: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoRotatePolicy {
    pub enable_auto_rotate_policy: bool,
    #[schema(minimum = 1, maximum = 365)]
    pub frequency_in_days: Option<i32>,
}

/// Parses a JSON body, naming the path of the first wrong field.
pub fn parse_spec(body: &[u8]) -> Result<CredentialsUpdateSpec, Rejection> {
    parse_json(body)
}

fn json_rejection(e: serde_path_to_error::Error<serde_json::Error>) -> Rejection {
    let path = e.path().to_string();
    let inner = e.into_inner();
    let field = match path.as_str() {
        "." | "?" | "" => "body".to_string(),
        // An empty key in a nested object.
        p if p.ends_with('.') => format!("{p}\"\""),
        _ => path,
    };
    // A key of 70,000 characters must not make a refusal of that size.
    let field = if field.chars().count() > 200 {
        field.chars().take(200).collect::<String>() + "..."
    } else {
        field
    };
    if inner.is_syntax() || inner.is_eof() {
        return Rejection::new(
            RejectCode::InvalidRequest,
            field,
            format!("is not valid JSON ({inner})"),
        );
    }
    // serde's message ends with " at line 1 column N"; the path already says where.
    let m = inner.to_string();
    let m = m
        .rsplit_once(" at line ")
        .map(|(head, _)| head.to_string())
        .unwrap_or(m);
    if let Some(name) = m
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
    {
        // Name the missing field itself, not the object it is missing from.
        let field = if field == "body" {
            name.to_string()
        } else {
            format!("{field}.{name}")
        };
        return Rejection::new(RejectCode::RequiredValueMissing, field, "is required");
    }
    let code = if m.starts_with("invalid type") {
        RejectCode::ValueIncorrectType
    } else {
        RejectCode::InvalidRequest
    };
    let m = without_value(&m);
    let m = if m.chars().count() > 300 {
        m.chars().take(300).collect::<String>() + "..."
    } else {
        m
    };
    Rejection::new(code, field, m)
}

/// serde names the offending value (`invalid type: integer `12345678`, expected a
/// string`); that value may be a password sent with the wrong type, and the message goes
/// into Task errors, logs and `x-rotor-error`. Keep its kind, drop the value itself.
fn without_value(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        if let Some((_, expected)) = rest.split_once("`, ") {
            return format!("unknown variant, {expected}");
        }
    }
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
    let text = std::str::from_utf8(body)
        .map_err(|_| Rejection::new(RejectCode::InvalidRequest, "body", "is not UTF-8"))?;
    // A NUL can only arrive escaped; no name, id or password may hold one (PostgreSQL
    // text cannot, and a target would cut the line there).
    if text.contains("\\u0000") {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
            if let Some(field) = nul_in(&value, String::new()) {
                return Err(Rejection::new(
                    RejectCode::ValueIncorrectFormat,
                    field,
                    NUL_MESSAGE,
                ));
            }
        }
    }
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(json_rejection)
}
