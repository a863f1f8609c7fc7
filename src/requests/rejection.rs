//! Why a request is not taken: the request is wrong (a `Rejection` naming the field),
//! or rotor cannot take it now.

use strum::{Display, IntoStaticStr};

use crate::vcf_error::VcfError;

/// What is wrong with a refused request, as VCF's `errorCode` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Display, IntoStaticStr)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum RejectCode {
    InvalidRequest,
    InvalidUsername,
    PolicyNotFound,
    RequiredValueMissing,
    ResourceNotFound,
    ValueDuplicate,
    ValueIncorrectFormat,
    ValueOutOfBounds,
    RequestTooLarge,
    PasswordPolicyViolation,
    CredentialNotFound,
    ValueIncorrectType,
    PermissionDenied,
}

impl RejectCode {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Why a request was refused; nothing was recorded or changed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Rejection {
    pub code: RejectCode,
    /// Path of the offending field, e.g. `elements[0].credentials[1].username`.
    pub field: String,
    pub message: String,
}

impl Rejection {
    pub fn new(code: RejectCode, field: impl Into<String>, message: impl Into<String>) -> Self {
        Rejection {
            code,
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn to_vcf(&self) -> VcfError {
        let mut e = VcfError::new(
            self.code.as_str(),
            format!("{}: {}", self.field, self.message),
        )
        .argument(self.field.clone());
        e.context.insert("field".into(), self.field.clone());
        e
    }
}

/// Why a request did not become a task.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The request is wrong; nothing was recorded or changed.
    #[error("{0}")]
    Invalid(Rejection),
    /// rotor cannot check or record it now (the database is away); the producer should try again.
    #[error("{0}")]
    Unavailable(crate::engine::Error),
}

impl From<Rejection> for Refusal {
    fn from(r: Rejection) -> Self {
        Refusal::Invalid(r)
    }
}

impl From<sqlx::Error> for Refusal {
    fn from(e: sqlx::Error) -> Self {
        Refusal::Unavailable(e.into())
    }
}
