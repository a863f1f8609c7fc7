//! A pre-flight check's name, outcome and one-line reason.

use serde::Serialize;

/// The checks, in the order they run (SPEC section 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::Display, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum CheckName {
    Reachable,
    HostKey,
    AdminAuth,
    SudoChpasswd,
    AccountExists,
    CurrentPassword,
    AccountStatus,
    PasswordExpiry,
}

impl CheckName {
    /// Every check, in the order they run.
    pub const ALL: [CheckName; 8] = [
        CheckName::Reachable,
        CheckName::HostKey,
        CheckName::AdminAuth,
        CheckName::SudoChpasswd,
        CheckName::AccountExists,
        CheckName::CurrentPassword,
        CheckName::AccountStatus,
        CheckName::PasswordExpiry,
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::Display, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum CheckStatus {
    Pass,
    Fail,
    Skipped,
}

/// One check's outcome with a one-line reason; a FAIL says what to fix.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Check {
    pub name: CheckName,
    pub status: CheckStatus,
    pub message: String,
}

impl Check {
    pub(super) fn new(name: CheckName, status: CheckStatus, message: impl Into<String>) -> Check {
        Check {
            name,
            status,
            message: message.into(),
        }
    }
}

/// The last non-blank line of a command's output (the error, after any login noise such
/// as a missing home directory), for a one-line reason.
pub(super) fn last_line(text: &str) -> &str {
    text.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}
