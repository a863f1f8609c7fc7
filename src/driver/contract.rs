//! What a driver is given (the host and its admin) and what it answers (a login's
//! outcome, an error that says whether the target may have changed).

use std::path::PathBuf;
use std::time::Duration;

/// How an account proves its password over SSH.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::Display, strum::EnumString, strum::IntoStaticStr,
)]
#[strum(serialize_all = "kebab-case")]
pub enum SshAuth {
    /// SSH "password" authentication.
    Password,
    /// SSH "keyboard-interactive": the password answers the server's password prompt
    /// (ESXi, appliances with `PasswordAuthentication no`).
    KeyboardInteractive,
    /// "password" when the server offers it, else "keyboard-interactive".
    Auto,
}

pub const SSH_AUTHS: &[&str] = &["password", "keyboard-interactive", "auto"];

/// Where a resource is and how to trust and reach it.
#[derive(Debug, Clone)]
pub struct Host {
    pub resource_id: String,
    pub address: String,
    pub port: u16,
    /// Pinned host key fingerprints, `SHA256:<base64>` as `ssh-keygen -l` prints them.
    pub host_keys: Vec<String>,
    pub insecure_accept_any_host_key: bool,
    pub admin: Option<Admin>,
    /// How accounts log in with their passwords (the admin uses its key or password file).
    pub ssh_auth: SshAuth,
    /// The recipe of an `http` resource.
    pub http: Option<std::sync::Arc<super::http::recipe::HttpTarget>>,
    pub connect_timeout: Duration,
    pub io_timeout: Duration,
}

impl Host {
    /// `address:port` for messages and URLs (`[address]:port` for an IPv6 address).
    pub fn endpoint(&self) -> String {
        if self.address.contains(':') {
            format!("[{}]:{}", self.address, self.port)
        } else {
            format!("{}:{}", self.address, self.port)
        }
    }
}

/// The privileged account used to change other accounts' passwords.
#[derive(Debug, Clone)]
pub struct Admin {
    pub username: String,
    pub private_key_file: Option<PathBuf>,
    pub password_file: Option<PathBuf>,
    pub sudo: bool,
}

impl Admin {
    /// The secret in the admin's `password_file` (its last line break dropped), read into
    /// a buffer that is wiped after.
    pub fn password(&self) -> Result<secrecy::SecretString, Error> {
        let file = self.password_file.as_ref().ok_or_else(|| {
            Error::Config(format!(
                "the admin account {} has no password_file",
                self.username
            ))
        })?;
        let bytes = zeroize::Zeroizing::new(std::fs::read(file).map_err(|e| {
            Error::Config(format!(
                "cannot read admin password file {}: {e}",
                file.display()
            ))
        })?);
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            Error::Config(format!(
                "admin password file {} is not UTF-8",
                file.display()
            ))
        })?;
        Ok(secrecy::SecretString::from(
            text.trim_end_matches(['\n', '\r']).to_owned(),
        ))
    }
}

/// What a login attempt showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    Accepted,
    Refused,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to {address}: {message}")]
    Connect { address: String, message: String },
    #[error("timed out talking to {address}: {message}")]
    Timeout { address: String, message: String },
    #[error("host key of {address} is {found}, which is not pinned for this resource")]
    HostKeyMismatch { address: String, found: String },
    #[error("resource pins no host key; add host_keys (or insecure_accept_any_host_key = true)")]
    NoPinnedHostKey,
    #[error("the admin account {username} could not authenticate: {message}")]
    AdminAuth { username: String, message: String },
    #[error("the account {username} could not log in with its current password: {message}")]
    AccountAuth { username: String, message: String },
    #[error("resource has no admin account for this platform")]
    NoAdmin,
    #[error("the target refused the new password: {message}")]
    Rejected { message: String },
    #[error("SSH protocol error with {address}: {message}")]
    Protocol { address: String, message: String },
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// Whether trying again later can help (the network, the host coming back).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. } | Error::Timeout { .. } | Error::Protocol { .. }
        )
    }

    /// Whether a failed change may still have reached the target: the dialogue was cut
    /// off mid-way. Every other error is raised before the target changed anything.
    pub fn may_have_changed(&self) -> bool {
        matches!(self, Error::Timeout { .. } | Error::Protocol { .. })
    }

    /// The stable VCF `errorCode`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Connect { .. } => "CONNECTION_FAILED",
            Error::Timeout { .. } => "TIMEOUT",
            Error::HostKeyMismatch { .. } => "HOST_KEY_MISMATCH",
            Error::NoPinnedHostKey => "HOST_KEY_NOT_PINNED",
            Error::AdminAuth { .. } | Error::AccountAuth { .. } => "AUTHENTICATION_FAILED",
            Error::NoAdmin => "ADMIN_ACCOUNT_MISSING",
            Error::Rejected { .. } => "PASSWORD_REJECTED_BY_TARGET",
            Error::Protocol { .. } => "SSH_ERROR",
            Error::Config(_) => "CONFIGURATION_ERROR",
        }
    }
}

/// Usernames go into `chpasswd` input and SSH logins: refuse anything that could be
/// read as a separator, an option or a second line.
pub fn validate_username(username: &str) -> Result<(), &'static str> {
    if username.is_empty() {
        return Err("must not be empty");
    }
    if username.len() > 64 {
        return Err("must be at most 64 bytes");
    }
    if username.starts_with('-') {
        return Err("must not start with '-'");
    }
    if username.contains(':') {
        return Err("must not contain ':'");
    }
    if username.chars().any(char::is_whitespace) {
        return Err("must not contain whitespace");
    }
    if username.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    // Format characters (U+200B zero width space, U+202E right-to-left override, U+2066
    // isolates, U+FEFF ...) and line or paragraph separators print nothing or reorder
    // what follows: one name could pose as another in logs and Task JSON.
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    let invisible = |c: char| {
        matches!(c.general_category(), GeneralCategory::Format | GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator)
            // Default-ignorable or blank-looking letters and marks: the combining grapheme
            // joiner, variation selectors, Hangul fillers, the braille blank.
            || matches!(c, '\u{034f}' | '\u{115f}' | '\u{1160}' | '\u{17b4}' | '\u{17b5}' | '\u{180b}'..='\u{180f}' | '\u{2800}' | '\u{3164}'
                | '\u{fe00}'..='\u{fe0f}' | '\u{ffa0}' | '\u{e0100}'..='\u{e01ef}')
    };
    if username.chars().any(invisible) {
        return Err("must not contain Unicode format, bidi or separator characters");
    }
    Ok(())
}

/// A new password a driver is to set: one it can set at all (else the target's refusal,
/// before anything was sent).
pub fn settable(new: &secrecy::SecretString) -> Result<(), Error> {
    use secrecy::ExposeSecret;
    validate_password_charset(new.expose_secret()).map_err(|m| Error::Rejected {
        message: format!("password {m}"),
    })
}

/// A password must fit on one `chpasswd` line and in a PTY prompt.
pub fn validate_password_charset(password: &str) -> Result<(), &'static str> {
    if password.chars().any(char::is_control) {
        return Err("must not contain control characters (newline, tab, ...)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_that_could_inject_are_refused() {
        for bad in [
            "",
            "-rf",
            "a:b",
            "a b",
            "a\nb",
            "a\tb",
            "x\u{7f}",
            "ad\u{200b}min",
            "root\u{202e}nimda",
            "\u{feff}svc",
            "a\u{2066}b",
            "a\u{2028}b",
            "a\u{00ad}b",
            "a\u{034f}b",
            "a\u{fe0f}",
            "\u{3164}",
        ] {
            assert!(validate_username(bad).is_err(), "{bad:?}");
        }
        for good in [
            "app",
            "svc_01",
            "web-user",
            "a.b",
            "jürgen",
            "administrator@vsphere.local",
        ] {
            assert!(validate_username(good).is_ok(), "{good:?}");
        }
    }
}
