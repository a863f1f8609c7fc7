//! The recipes rotor knows by name: whole sections for APIs whose password change and
//! proof are published (RabbitMQ's management API, NSX node users, vCenter appliance
//! local accounts). Only `rabbitmq` is tested against the real server (the local
//! RabbitMQ); the other two are written from the vendors' API references.

use super::recipe::{
    parse_pin, Auth, Change, HttpSpec, HttpTarget, Recipe, Request, Rule, Session, Verify,
};

pub const PRESETS: &[&str] = &["rabbitmq", "nsx-node-user", "vcenter-appliance-local"];

pub fn preset(name: &str) -> Option<HttpSpec> {
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
        if self.ca_file.is_some() && !self.cert_fingerprints.is_empty() {
            return Err((
                "cert_fingerprints".into(),
                "give ca_file or cert_fingerprints, not both".into(),
            ));
        }
        for (k, pin) in self.cert_fingerprints.iter().enumerate() {
            if parse_pin(pin).is_none() {
                return Err((
                    format!("cert_fingerprints[{k}]"),
                    "expected `SHA256:<43 base64 characters>` of the certificate's DER form".into(),
                ));
            }
        }
        Ok(recipe)
    }
}

impl HttpTarget {
    /// From the stored `[resource.http]`; the message names the field.
    pub fn from_spec(spec: &HttpSpec) -> Result<HttpTarget, String> {
        let recipe = spec.resolve().map_err(|(f, m)| format!("http.{f}: {m}"))?;
        Ok(HttpTarget {
            recipe,
            ca_file: spec.ca_file.clone(),
            pins: spec
                .cert_fingerprints
                .iter()
                .filter_map(|p| parse_pin(p))
                .collect(),
            client: std::sync::OnceLock::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::http::recipe::path_for;

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
