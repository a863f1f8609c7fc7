//! An HTTP target's recipe (`[resource.http]`): the requests that change a password and
//! prove one, where the password goes (only into a JSON body), how rotor authenticates,
//! and how the server's certificate is trusted. Presets fill in whole sections for the
//! APIs rotor knows; a section given in the inventory replaces the preset's.

use std::path::PathBuf;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The inventory's `[resource.http]`, stored as given (presets are resolved at use, so a
/// newer rotor's preset applies without re-applying the inventory).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    /// `rabbitmq`, `nsx-node-user` or `vcenter-appliance-local`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// Trust only this CA (PEM) for the server's certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Or pin the server's certificate: `SHA256:<base64>` of its DER form, as
    /// `rotor host scan https://HOST:PORT` prints it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cert_fingerprints: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<Session>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read: Option<Request>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<Change>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<Verify>,
}

/// Who a request authenticates as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Auth {
    /// HTTP Basic with the admin's username and the password in its `password_file`.
    AdminBasic,
    /// `Authorization: Bearer` with the token in the admin's `password_file`.
    AdminBearer,
    /// A session token the `session` request gave for the admin's Basic credentials.
    AdminSession,
    /// HTTP Basic with the account's own name and current password.
    AccountBasic,
}

/// A request without a password in it: its method and path template (`{username}` only).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub auth: Auth,
}

/// How a session token is had (`POST` with Basic credentials; the body is the token as a
/// JSON string, or `{"value": token}`) and sent (`header`), and ended.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Session {
    pub method: String,
    pub path: String,
    pub header: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_path: Option<String>,
}

/// The change: a request whose JSON body template holds `"{password}"` (and maybe
/// `"{old_password}"`, `"{username}"`, `"{current.FIELD}"` from the `read` answer).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    pub method: String,
    pub path: String,
    pub auth: Auth,
    pub body: serde_json::Value,
    /// The statuses that mean "changed" (default: any 2xx).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ok: Vec<u16>,
}

/// A status, optionally with words its body must contain.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Rule {
    Status(u16),
    With { status: u16, body_contains: String },
}

impl Rule {
    pub fn matches(&self, status: u16, body: &str) -> bool {
        match self {
            Rule::Status(s) => *s == status,
            Rule::With {
                status: s,
                body_contains,
            } => *s == status && body.contains(body_contains.as_str()),
        }
    }
}

/// The proof: a request as the account (Basic, with the password under test). Its answer
/// is matched against `accepted` first, then `refused`; anything else is an error.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    pub method: String,
    pub path: String,
    pub accepted: Vec<Rule>,
    pub refused: Vec<Rule>,
    /// The accepted answer is a session (its token the body): end it with `session`'s end.
    #[serde(default)]
    pub ends_session: bool,
}

/// A recipe with every section it needs, presets applied.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub session: Option<Session>,
    pub read: Option<Request>,
    pub change: Change,
    pub verify: Verify,
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

impl Recipe {
    pub(super) fn check(&self) -> Result<(), (String, String)> {
        let err = |f: &str, m: &str| Err((f.to_string(), m.to_string()));
        let mut methods = vec![
            ("change.method", &self.change.method),
            ("verify.method", &self.verify.method),
        ];
        let mut paths = vec![
            ("change.path", &self.change.path),
            ("verify.path", &self.verify.path),
        ];
        if let Some(r) = &self.read {
            methods.push(("read.method", &r.method));
            paths.push(("read.path", &r.path));
            if r.auth == Auth::AccountBasic {
                return err("read.auth", "the read request runs as the admin");
            }
        }
        if let Some(s) = &self.session {
            methods.push(("session.method", &s.method));
            paths.push(("session.path", &s.path));
            if let Some(m) = &s.end_method {
                methods.push(("session.end_method", m));
            }
            if let Some(p) = &s.end_path {
                paths.push(("session.end_path", p));
            }
            if s.header.is_empty()
                || !s
                    .header
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return err("session.header", "a header name: letters, digits and '-'");
            }
        }
        for (field, m) in methods {
            if !METHODS.contains(&m.as_str()) {
                return Err((field.into(), format!("one of {}", METHODS.join(", "))));
            }
        }
        for (field, p) in paths {
            // The password never goes into a URL: a path knows only {username}.
            if !p.starts_with('/') {
                return err(field, "must start with '/'");
            }
            let rest = p.replace("{username}", "");
            if rest.contains('{') || rest.contains('}') {
                return err(field, "the only placeholder a path takes is {username}");
            }
            if p.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return err(field, "must not contain spaces or control characters");
            }
        }
        if let Err(m) = check_body(&self.change.body, self.read.is_some()) {
            return Err(("change.body".into(), m));
        }
        let read_session = self
            .read
            .as_ref()
            .is_some_and(|r| r.auth == Auth::AdminSession);
        if (self.change.auth == Auth::AdminSession || self.verify.ends_session || read_session)
            && self.session.is_none()
        {
            return err(
                "session",
                "admin-session and ends_session need a session request",
            );
        }
        if self.verify.accepted.is_empty() || self.verify.refused.is_empty() {
            return err("verify", "give the statuses that mean accepted and refused");
        }
        Ok(())
    }

    /// Whether the change runs as the account with its current password.
    pub fn changes_as_account(&self) -> bool {
        self.change.auth == Auth::AccountBasic
    }

    /// Whether any request authenticates as the admin.
    pub fn needs_admin(&self) -> bool {
        !self.changes_as_account()
            || self
                .read
                .as_ref()
                .is_some_and(|r| r.auth != Auth::AccountBasic)
    }
}

/// `text` with `{username}` replaced by the percent-encoded name (one path segment).
pub fn path_for(template: &str, username: &str) -> String {
    let mut encoded = String::new();
    for b in username.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    template.replace("{username}", &encoded)
}

/// What the driver needs of an http resource: its resolved recipe and how to trust it.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    pub recipe: Recipe,
    pub ca_file: Option<PathBuf>,
    pub pins: Vec<[u8; 32]>,
    /// The client `tls::client` built for it, kept for the account's later requests (one
    /// CA read and one connection pool per loaded account, not one per request).
    pub client: std::sync::OnceLock<reqwest::Client>,
}

/// The digest a certificate pin (`SHA256:<base64>`) names, if it is well formed.
pub fn parse_pin(pin: &str) -> Option<[u8; 32]> {
    let b64 = pin.strip_prefix("SHA256:")?;
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(b64.trim_end_matches('='))
        .ok()?;
    bytes.try_into().ok()
}

/// Why a body could not be made.
#[derive(Debug, PartialEq, Eq)]
pub enum RenderError {
    /// The template sends the old password, and none is known.
    NoOldPassword,
    /// `{current.FIELD}` names a field the read answer lacks.
    Missing(String),
}

/// A string value of a body template that rotor fills in.
#[derive(Debug, PartialEq, Eq)]
enum Placeholder<'a> {
    Password,
    OldPassword,
    Username,
    Current(&'a str),
}

/// The placeholder a whole string value is, if it is one; Err for `{...}` rotor does not know.
fn placeholder(text: &str) -> Result<Option<Placeholder<'_>>, ()> {
    let Some(name) = text.strip_prefix('{').and_then(|t| t.strip_suffix('}')) else {
        return Ok(None);
    };
    Ok(Some(match name {
        "password" => Placeholder::Password,
        "old_password" => Placeholder::OldPassword,
        "username" => Placeholder::Username,
        field => match field.strip_prefix("current.") {
            Some(path) if !path.is_empty() => Placeholder::Current(path),
            _ => return Err(()),
        },
    }))
}

/// Every string value of `value`, in order.
fn strings<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match value {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// Checks a body template: `"{password}"` is one of its values, every `{...}` value is a
/// placeholder rotor knows, and `{current.*}` comes with a read request.
pub(super) fn check_body(body: &serde_json::Value, has_read: bool) -> Result<(), String> {
    let mut values = Vec::new();
    strings(body, &mut values);
    let mut has_password = false;
    for v in values {
        match placeholder(v) {
            Err(()) => return Err(format!("unknown placeholder {v:?}: {{password}}, {{old_password}}, {{username}} or {{current.FIELD}}")),
            Ok(Some(Placeholder::Password)) => has_password = true,
            Ok(Some(Placeholder::Current(_))) if !has_read => {
                return Err(format!("{v:?} needs a read request"))
            }
            _ => {}
        }
    }
    if !has_password {
        return Err("must hold \"{password}\" as a value".into());
    }
    Ok(())
}

/// `text` as a JSON string.
fn push_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

struct Fill<'a> {
    username: &'a str,
    new: &'a SecretString,
    old: Option<&'a SecretString>,
    current: Option<&'a serde_json::Value>,
}

fn write(value: &serde_json::Value, fill: &Fill<'_>, out: &mut String) -> Result<(), RenderError> {
    match value {
        serde_json::Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_string(out, k);
                out.push(':');
                write(v, fill, out)?;
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(v, fill, out)?;
            }
            out.push(']');
        }
        serde_json::Value::String(text) => match placeholder(text) {
            Ok(Some(Placeholder::Password)) => push_string(out, fill.new.expose_secret()),
            Ok(Some(Placeholder::OldPassword)) => push_string(
                out,
                fill.old.ok_or(RenderError::NoOldPassword)?.expose_secret(),
            ),
            Ok(Some(Placeholder::Username)) => push_string(out, fill.username),
            Ok(Some(Placeholder::Current(path))) => {
                let found = fill
                    .current
                    .and_then(|c| c.pointer(&format!("/{}", path.replace('.', "/"))))
                    .ok_or_else(|| RenderError::Missing(format!("current.{path}")))?;
                // The server's value, re-serialized: it cannot change the body's shape.
                out.push_str(&found.to_string());
            }
            _ => push_string(out, text),
        },
        other => out.push_str(&other.to_string()),
    }
    Ok(())
}

/// The JSON body: the template with its `"{password}"`, `"{old_password}"`,
/// `"{username}"` and `"{current.FIELD}"` values filled in (whole string values only),
/// built in a buffer that is wiped after.
pub fn render(
    template: &serde_json::Value,
    username: &str,
    new: &SecretString,
    old: Option<&SecretString>,
    current: Option<&serde_json::Value>,
) -> Result<Zeroizing<String>, RenderError> {
    let mut out = Zeroizing::new(String::with_capacity(256));
    let fill = Fill {
        username,
        new,
        old,
        current,
    };
    write(template, &fill, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_gets_the_values_and_nothing_else_moves() {
        let template = serde_json::json!({"password": "{password}", "tags": "{current.tags}", "note": "{other}", "n": 1});
        let current = serde_json::json!({"tags": ["monitoring", "x"]});
        let new = SecretString::from("p\"w\\1".to_string());
        let body = render(&template, "bob", &new, None, Some(&current)).unwrap();
        let back: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(back["password"], "p\"w\\1");
        assert_eq!(back["tags"], serde_json::json!(["monitoring", "x"]));
        assert_eq!(back["note"], "{other}");
        // A value that merely starts with '{' does not hide the placeholder after it.
        let tricky = serde_json::json!({"a": "{x", "password": "{password}"});
        let body = render(&tricky, "bob", &new, None, None).unwrap();
        let tricky_back: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (tricky_back["a"].as_str(), tricky_back["password"].as_str()),
            (Some("{x"), Some("p\"w\\1"))
        );
        assert!(check_body(&serde_json::json!({"p": "{pasword}"}), false).is_err());
        assert!(check_body(
            &serde_json::json!({"p": "{password}", "t": "{current.tags}"}),
            false
        )
        .is_err());
        assert!(check_body(
            &serde_json::json!({"p": "{password}", "t": "{current.tags}"}),
            true
        )
        .is_ok());
        assert_eq!(back["n"], 1);
        let needs_old =
            serde_json::json!({"old_password": "{old_password}", "password": "{password}"});
        assert!(matches!(
            render(&needs_old, "bob", &new, None, None),
            Err(RenderError::NoOldPassword)
        ));
    }
}
