//! An HTTP target's recipe (`[resource.http]`): the requests that change a password and
//! prove one, where the password goes (only into a JSON body), how rotor authenticates,
//! and how the server's certificate is trusted. Presets fill in whole sections for the
//! APIs rotor knows; a section given in the inventory replaces the preset's.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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

pub const PRESETS: &[&str] = &["rabbitmq", "nsx-node-user", "vcenter-appliance-local"];

fn preset(name: &str) -> Option<HttpSpec> {
    let rule = |status| Rule::Status(status);
    let with = |status, words: &str| Rule::With {
        status,
        body_contains: words.into(),
    };
    let spec = match name {
        // RabbitMQ's management API. PUT replaces the user, tags included: they are read
        // first and sent back. A user without a management tag is told "Not management
        // user" after its password was accepted.
        "rabbitmq" => HttpSpec {
            read: Some(Request {
                method: "GET".into(),
                path: "/api/users/{username}".into(),
                auth: Auth::AdminBasic,
            }),
            change: Some(Change {
                method: "PUT".into(),
                path: "/api/users/{username}".into(),
                auth: Auth::AdminBasic,
                body: serde_json::json!({"password": "{password}", "tags": "{current.tags}"}),
                ok: vec![201, 204],
            }),
            verify: Some(Verify {
                method: "GET".into(),
                path: "/api/whoami".into(),
                accepted: vec![rule(200), with(401, "Not management user")],
                refused: vec![rule(401)],
                ends_session: false,
            }),
            ..Default::default()
        },
        // NSX node users (admin, audit): the account changes its own password with
        // `reset_own_password` (no permission needed, the old password required).
        "nsx-node-user" => HttpSpec {
            change: Some(Change {
                method: "POST".into(),
                path: "/api/v1/node/users?action=reset_own_password".into(),
                auth: Auth::AccountBasic,
                body: serde_json::json!({"old_password": "{old_password}", "password": "{password}"}),
                ok: vec![200],
            }),
            verify: Some(Verify {
                method: "GET".into(),
                path: "/api/v1/node".into(),
                accepted: vec![rule(200)],
                refused: vec![rule(401), with(403, "credentials were incorrect")],
                ends_session: false,
            }),
            ..Default::default()
        },
        // vCenter appliance local accounts: a session for the admin, PATCH of the
        // account's password (no old password for a super admin), and a session as the
        // account to prove one.
        "vcenter-appliance-local" => HttpSpec {
            session: Some(Session {
                method: "POST".into(),
                path: "/api/session".into(),
                header: "vmware-api-session-id".into(),
                end_method: Some("DELETE".into()),
                end_path: Some("/api/session".into()),
            }),
            change: Some(Change {
                method: "PATCH".into(),
                path: "/api/appliance/local-accounts/{username}".into(),
                auth: Auth::AdminSession,
                body: serde_json::json!({"password": "{password}"}),
                ok: vec![],
            }),
            verify: Some(Verify {
                method: "POST".into(),
                path: "/api/session".into(),
                accepted: vec![rule(201), rule(200)],
                refused: vec![rule(401)],
                ends_session: true,
            }),
            ..Default::default()
        },
        _ => return None,
    };
    Some(spec)
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

impl HttpSpec {
    /// The recipe with the preset's sections where the spec gives none; the error names
    /// the field (relative to `[resource.http]`).
    pub fn resolve(&self) -> Result<Recipe, (String, String)> {
        let base = match &self.preset {
            Some(name) => preset(name).ok_or_else(|| {
                (
                    "preset".to_string(),
                    format!("unknown preset `{name}`; one of {}", PRESETS.join(", ")),
                )
            })?,
            None => HttpSpec::default(),
        };
        let recipe = Recipe {
            session: self.session.clone().or(base.session),
            read: self.read.clone().or(base.read),
            change: self.change.clone().or(base.change).ok_or_else(|| {
                (
                    "change".to_string(),
                    "give a preset or a change request".to_string(),
                )
            })?,
            verify: self.verify.clone().or(base.verify).ok_or_else(|| {
                (
                    "verify".to_string(),
                    "give a preset or a verify request".to_string(),
                )
            })?,
        };
        recipe.check()?;
        for (k, pin) in self.cert_fingerprints.iter().enumerate() {
            if super::tls::parse_pin(pin).is_none() {
                return Err((
                    format!("cert_fingerprints[{k}]"),
                    "expected `SHA256:<43 base64 characters>` of the certificate's DER form".into(),
                ));
            }
        }
        Ok(recipe)
    }
}

impl Recipe {
    fn check(&self) -> Result<(), (String, String)> {
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
        if !self.change.body.to_string().contains("\"{password}\"") {
            return err("change.body", "must hold \"{password}\" as a value");
        }
        if self.change.auth == Auth::AdminSession || self.verify.ends_session {
            if self.session.is_none() {
                return err(
                    "session",
                    "admin-session and ends_session need a session request",
                );
            }
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
        self.change.auth != Auth::AccountBasic
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_resolve_and_bad_recipes_name_their_field() {
        for p in PRESETS {
            let spec = HttpSpec {
                preset: Some(p.to_string()),
                ..Default::default()
            };
            spec.resolve().unwrap();
        }
        let mut spec = HttpSpec {
            preset: Some("rabbitmq".into()),
            ..Default::default()
        };
        spec.change = Some(Change {
            method: "PUT".into(),
            path: "/api/users/{password}".into(),
            auth: Auth::AdminBasic,
            body: serde_json::json!({"password": "{password}"}),
            ok: vec![],
        });
        assert_eq!(spec.resolve().unwrap_err().0, "change.path");
        spec.change.as_mut().unwrap().path = "/api/users/{username}".into();
        spec.change.as_mut().unwrap().body = serde_json::json!({"secret": "x"});
        assert_eq!(spec.resolve().unwrap_err().0, "change.body");
        spec.preset = Some("nope".into());
        assert_eq!(spec.resolve().unwrap_err().0, "preset");
        assert_eq!(
            path_for("/api/users/{username}", "a b/c"),
            "/api/users/a%20b%2Fc"
        );
    }
}
