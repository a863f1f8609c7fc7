//! The VCF Error body (SPEC section 7), used in Task errors, HTTP answers and `x-rotor-error`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The VCF Error body. `context.field` names the offending field by path.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VcfError {
    #[schema(example = "PASSWORD_POLICY_VIOLATION")]
    pub error_code: String,
    #[schema(example = "ERROR")]
    pub error_type: String,
    pub message: String,
    pub remediation_message: String,
    pub arguments: Vec<String>,
    pub context: BTreeMap<String, String>,
    pub causes: Vec<Cause>,
    #[schema(no_recursion)]
    pub nested_errors: Vec<VcfError>,
    /// Also in the daemon's log line for this error.
    pub reference_token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Cause {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
}

impl VcfError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        VcfError {
            error_code: code.to_string(),
            error_type: "ERROR".into(),
            message: message.into(),
            remediation_message: String::new(),
            arguments: Vec::new(),
            context: BTreeMap::new(),
            causes: Vec::new(),
            nested_errors: Vec::new(),
            reference_token: reference_token(),
        }
    }

    pub fn remediation(mut self, text: impl Into<String>) -> Self {
        self.remediation_message = text.into();
        self
    }

    pub fn context(mut self, key: &str, value: impl Into<String>) -> Self {
        self.context.insert(key.to_string(), value.into());
        self
    }

    pub fn argument(mut self, value: impl Into<String>) -> Self {
        self.arguments.push(value.into());
        self
    }

    pub fn cause(mut self, kind: &str, message: impl Into<String>) -> Self {
        self.causes.push(Cause {
            kind: kind.to_string(),
            message: message.into(),
        });
        self
    }
}

/// A short random token an operator can grep the logs for.
fn reference_token() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    id[..6].to_ascii_uppercase()
}
