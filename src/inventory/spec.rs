//! The inventory's shape (SPEC section 6) and its checks: reading a TOML file, every
//! field validated, every file it names kept under `[inventory] allowed_dir`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::policy::Policy;

pub use crate::vocab::RESOURCE_TYPES;
use crate::vocab::{ACCOUNT_TYPES, CREDENTIAL_TYPES};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}")]
    Syntax(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("vault: {0}")]
    Vault(#[from] crate::vault::Error),
    #[error("{0}")]
    Store(#[from] crate::engine::Error),
    /// The caller may not make this change (e.g. a resource's address without `admin`).
    #[error("{field}: {message}")]
    Denied { field: String, message: String },
    /// The resource was deleted; its versions wait for `rotor resource purge`.
    #[error(
        "resource {0} was deleted; its stored passwords are kept until `rotor resource purge {0}`"
    )]
    Deleted(String),
}

pub(super) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryFile {
    #[serde(default)]
    pub resource: Vec<ResourceSpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub address: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default)]
    pub host_keys: Vec<String>,
    #[serde(default)]
    pub insecure_accept_any_host_key: bool,
    #[serde(default = "default_platform")]
    pub platform: String,
    /// How accounts prove their passwords over SSH: password, keyboard-interactive, auto.
    /// Unset: keyboard-interactive on esxi (ESXi takes nothing else), auto elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_auth: Option<String>,
    pub policy: Option<String>,
    /// Refused logins that lock an account on the target (pam_faillock `deny`, ESXi's
    /// 5): rotor risks fewer than this many.
    /// Unset: 5 on esxi (ESXi's own default), 3 elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lockout_threshold: Option<i32>,
    pub admin: Option<AdminSpec>,
    /// The recipe of an `http` resource.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<crate::driver::http::recipe::HttpSpec>,
    #[serde(default)]
    pub account: Vec<AccountSpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSpec {
    pub username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub sudo: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSpec {
    pub username: String,
    #[serde(default = "default_account_type")]
    pub account_type: String,
    #[serde(default = "default_credential_type")]
    pub credential_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    pub auto_rotate_days: Option<i32>,
}

impl ResourceSpec {
    /// How accounts prove their passwords over SSH here.
    pub fn ssh_auth(&self) -> &str {
        match &self.ssh_auth {
            Some(a) => a,
            None if self.platform == "esxi" => "keyboard-interactive",
            None => "auto",
        }
    }

    /// The refused logins that lock an account here.
    pub fn lockout_threshold(&self) -> i32 {
        self.lockout_threshold
            .unwrap_or(if self.platform == "esxi" { 5 } else { 3 })
    }

    /// The policy it names, or its type's (`default` applies `[type_policy]`); an esxi
    /// resource of another type gets the esxi preset.
    pub fn policy_name(&self, default: impl Fn(&str) -> String) -> String {
        match &self.policy {
            Some(p) => p.clone(),
            None if self.platform == "esxi" && self.kind != "ESXI" => "esxi".into(),
            None => default(&self.kind),
        }
    }
}

pub fn default_port() -> u16 {
    22
}
pub fn default_platform() -> String {
    "linux-chpasswd".into()
}
pub fn default_ssh_auth() -> String {
    "auto".into()
}
pub fn default_account_type() -> String {
    "USER".into()
}
pub fn default_credential_type() -> String {
    "SSH".into()
}

/// Reads an inventory file; relative paths in it are taken from the file's folder.
pub fn read(path: &Path) -> Result<InventoryFile, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Read(path.to_path_buf(), e))?;
    let de = toml::Deserializer::new(&text);
    let mut inv: InventoryFile = serde_path_to_error::deserialize(de).map_err(|e| {
        let p = e.path().to_string();
        Error::Syntax(format!(
            "{}: {p}: {}",
            path.display(),
            e.into_inner().message()
        ))
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let base = std::fs::canonicalize(&base).unwrap_or(base);
    let abs = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    for r in &mut inv.resource {
        if let Some(a) = &mut r.admin {
            a.private_key_file.as_mut().map(abs);
            a.password_file.as_mut().map(abs);
        }
        for acc in &mut r.account {
            acc.password_file.as_mut().map(abs);
        }
        if let Some(h) = &mut r.http {
            h.ca_file.as_mut().map(abs);
        }
    }
    Ok(inv)
}

/// Every file the inventory names must lie under `allowed_dir` once links and `..` are
/// resolved, so an inventory cannot make rotor send, say, `/etc/shadow` as a password.
/// The paths are replaced by their resolved form, which is what gets stored.
pub fn check_files(inv: &mut InventoryFile, allowed_dir: &Path) -> Result<(), Error> {
    let allowed = std::fs::canonicalize(allowed_dir).map_err(|e| {
        invalid(
            "inventory.allowed_dir",
            format!("{}: {e}", allowed_dir.display()),
        )
    })?;
    let check = |field: String, file: &mut PathBuf| -> Result<(), Error> {
        let real = std::fs::canonicalize(&*file)
            .map_err(|e| invalid(&field, format!("{}: {e}", file.display())))?;
        if !real.starts_with(&allowed) {
            return Err(invalid(
                field,
                format!(
                    "{} is not under {} (inventory.allowed_dir)",
                    file.display(),
                    allowed.display()
                ),
            ));
        }
        crate::config::check_private_file(&field, &real).map_err(|e| match e {
            crate::config::Error::Invalid { key, message } => invalid(key, message),
            other => invalid(&field, other.to_string()),
        })?;
        *file = real;
        Ok(())
    };
    for (i, r) in inv.resource.iter_mut().enumerate() {
        if let Some(a) = r.admin.as_mut() {
            if let Some(f) = a.private_key_file.as_mut() {
                check(format!("resource[{i}].admin.private_key_file"), f)?;
            }
            if let Some(f) = a.password_file.as_mut() {
                check(format!("resource[{i}].admin.password_file"), f)?;
            }
        }
        for (j, acc) in r.account.iter_mut().enumerate() {
            if let Some(f) = acc.password_file.as_mut() {
                check(format!("resource[{i}].account[{j}].password_file"), f)?;
            }
        }
        // A CA is public, but who may swap it may read the passwords: it too stays under
        // allowed_dir.
        if let Some(f) = r.http.as_mut().and_then(|h| h.ca_file.as_mut()) {
            let field = format!("resource[{i}].http.ca_file");
            let real = std::fs::canonicalize(&*f)
                .map_err(|e| invalid(&field, format!("{}: {e}", f.display())))?;
            if !real.starts_with(&allowed) {
                return Err(invalid(
                    field,
                    format!(
                        "{} is not under {} (inventory.allowed_dir)",
                        f.display(),
                        allowed.display()
                    ),
                ));
            }
            *f = real;
        }
    }
    Ok(())
}

/// Checks every field; `policies` and `default_policy` resolve the policy name.
pub fn validate(
    inv: &InventoryFile,
    policies: &BTreeMap<String, Policy>,
    default_policy: impl Fn(&str) -> String,
) -> Result<(), Error> {
    let mut ids = HashSet::new();
    for (i, r) in inv.resource.iter().enumerate() {
        let at = format!("resource[{i}]");
        if r.id.is_empty()
            || !r
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(invalid(
                format!("{at}.id"),
                "must be non-empty letters, digits, '.', '_' or '-'",
            ));
        }
        if !ids.insert(&r.id) {
            return Err(invalid(
                format!("{at}.id"),
                format!("duplicate resource id `{}`", r.id),
            ));
        }
        if !RESOURCE_TYPES.contains(&r.kind.as_str()) {
            return Err(invalid(
                format!("{at}.type"),
                format!(
                    "unknown type `{}`; one of {}",
                    r.kind,
                    RESOURCE_TYPES.join(", ")
                ),
            ));
        }
        if r.address.is_empty() {
            return Err(invalid(format!("{at}.address"), "must not be empty"));
        }
        let files = [
            r.admin.as_ref().and_then(|a| a.private_key_file.as_ref()),
            r.admin.as_ref().and_then(|a| a.password_file.as_ref()),
        ];
        let texts = [
            ("name", Some(r.name.as_str())),
            ("address", Some(r.address.as_str())),
            ("policy", r.policy.as_deref()),
        ]
        .into_iter()
        .chain(
            [
                ("admin.private_key_file", files[0]),
                ("admin.password_file", files[1]),
            ]
            .map(|(k, f)| (k, f.and_then(|p| p.to_str()))),
        );
        for (key, text) in texts {
            if text.is_some_and(|t| t.contains('\0')) {
                return Err(invalid(format!("{at}.{key}"), crate::requests::NUL_MESSAGE));
            }
        }
        if !crate::driver::SSH_AUTHS.contains(&r.ssh_auth()) {
            return Err(invalid(
                format!("{at}.ssh_auth"),
                format!("one of {}", crate::driver::SSH_AUTHS.join(", ")),
            ));
        }
        if !(2..=100).contains(&r.lockout_threshold()) {
            return Err(invalid(
                format!("{at}.lockout_threshold"),
                "must be 2 to 100 (at 1 no password could ever be tried)",
            ));
        }
        if r.port == 0 {
            return Err(invalid(format!("{at}.port"), "must be 1 to 65535"));
        }
        for (k, key) in r.host_keys.iter().enumerate() {
            let ok = key.strip_prefix("SHA256:").is_some_and(|b| {
                b.len() == 43
                    && b.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
            });
            if !ok {
                return Err(invalid(
                    format!("{at}.host_keys[{k}]"),
                    "expected `SHA256:<43 base64 characters>` as `ssh-keygen -l -E sha256` prints",
                ));
            }
        }
        if r.host_keys.is_empty()
            && !r.insecure_accept_any_host_key
            && crate::driver::is_ssh(&r.platform)
        {
            return Err(invalid(
                format!("{at}.host_keys"),
                "pin at least one host key (or set insecure_accept_any_host_key = true)",
            ));
        }
        if crate::driver::driver(&r.platform).is_none() {
            return Err(invalid(
                format!("{at}.platform"),
                format!(
                    "unknown platform `{}`; one of {}",
                    r.platform,
                    crate::driver::PLATFORMS.join(", ")
                ),
            ));
        }
        match (&r.http, r.platform == "http") {
            (None, true) => {
                return Err(invalid(
                    format!("{at}.http"),
                    "platform http needs a [resource.http] recipe (a preset, or change and verify requests)",
                ))
            }
            (Some(_), false) => {
                return Err(invalid(format!("{at}.http"), "only platform http takes a recipe"))
            }
            (Some(spec), true) => {
                // The address becomes a URL's host: a name or an IP address, nothing that
                // could move the host part (`@`, `/`, `#`, `?`, ...).
                let plain = r.address.parse::<std::net::IpAddr>().is_ok()
                    || (!r.address.is_empty()
                        && r.address
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'));
                if !plain {
                    return Err(invalid(
                        format!("{at}.address"),
                        "an http resource's address is a host name or an IP address",
                    ));
                }
                let recipe = spec
                    .resolve()
                    .map_err(|(f, m)| invalid(format!("{at}.http.{f}"), m))?;
                if recipe.needs_admin()
                    && r.admin.as_ref().is_none_or(|a| a.password_file.is_none())
                {
                    return Err(invalid(
                        format!("{at}.admin.password_file"),
                        "this recipe authenticates as the admin: give the admin a password_file (its password, or its bearer token)",
                    ));
                }
            }
            (None, false) => {}
        }
        let policy = r.policy_name(&default_policy);
        if !policies.contains_key(&policy) {
            return Err(invalid(
                format!("{at}.policy"),
                format!("unknown policy `{policy}`"),
            ));
        }
        match &r.admin {
            Some(a) => {
                crate::driver::validate_username(&a.username)
                    .map_err(|m| invalid(format!("{at}.admin.username"), m))?;
                if a.private_key_file.is_some() == a.password_file.is_some() {
                    return Err(invalid(
                        format!("{at}.admin"),
                        "give exactly one of private_key_file and password_file",
                    ));
                }
                if r.platform == "postgresql" && a.password_file.is_none() {
                    return Err(invalid(
                        format!("{at}.admin.password_file"),
                        "the postgresql platform's admin (a role with CREATEROLE) logs in with a password_file",
                    ));
                }
            }
            None if r.platform == "linux-chpasswd" || r.platform == "postgresql" => {
                return Err(invalid(
                    format!("{at}.admin"),
                    format!("platform {} needs an admin account", r.platform),
                ));
            }
            None => {}
        }
        let mut names = HashSet::new();
        for (j, a) in r.account.iter().enumerate() {
            let at = format!("{at}.account[{j}]");
            crate::driver::validate_username(&a.username)
                .map_err(|m| invalid(format!("{at}.username"), m))?;
            if !names.insert(&a.username) {
                return Err(invalid(
                    format!("{at}.username"),
                    format!("duplicate account `{}`", a.username),
                ));
            }
            if !ACCOUNT_TYPES.contains(&a.account_type.as_str()) {
                return Err(invalid(
                    format!("{at}.account_type"),
                    format!("one of {}", ACCOUNT_TYPES.join(", ")),
                ));
            }
            if !CREDENTIAL_TYPES.contains(&a.credential_type.as_str()) {
                return Err(invalid(
                    format!("{at}.credential_type"),
                    format!("one of {}", CREDENTIAL_TYPES.join(", ")),
                ));
            }
            if let Some(d) = a.auto_rotate_days {
                if !(1..=365).contains(&d) {
                    return Err(invalid(
                        format!("{at}.auto_rotate_days"),
                        "must be 1 to 365",
                    ));
                }
            }
        }
    }
    Ok(())
}
