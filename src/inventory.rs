//! The inventory (SPEC section 6): resources (target hosts) and their accounts.
//! `apply` upserts a file's content idempotently and reports what changed.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::engine::lifecycle;
use crate::policy::Policy;
use crate::vault::versions::{self, Origin, State};
use crate::vault::MasterKey;

pub const RESOURCE_TYPES: &[&str] = &[
    "LINUX", "ESXI", "VCENTER", "PSC", "NSX_MANAGER", "NSX_CONTROLLER", "NSX_EDGE", "NSXT_MANAGER", "NSXT_EDGE", "VRLI",
    "VROPS", "VRA", "WSA", "VRSLCM", "VXRAIL_MANAGER", "BACKUP",
];

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
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Invalid { field: field.into(), message: message.into() }
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
    pub policy: Option<String>,
    pub admin: Option<AdminSpec>,
    #[serde(default)]
    pub account: Vec<AccountSpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSpec {
    pub username: String,
    pub private_key_file: Option<PathBuf>,
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
    pub password_file: Option<PathBuf>,
    pub auto_rotate_days: Option<i32>,
}

fn default_port() -> u16 {
    22
}
fn default_platform() -> String {
    "linux-chpasswd".into()
}
fn default_account_type() -> String {
    "USER".into()
}
fn default_credential_type() -> String {
    "SSH".into()
}

/// Reads an inventory file; relative paths in it are taken from the file's folder.
pub fn read(path: &Path) -> Result<InventoryFile, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Read(path.to_path_buf(), e))?;
    let de = toml::Deserializer::new(&text);
    let mut inv: InventoryFile = serde_path_to_error::deserialize(de).map_err(|e| {
        let p = e.path().to_string();
        Error::Syntax(format!("{}: {p}: {}", path.display(), e.into_inner().message()))
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
    }
    Ok(inv)
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
        if r.id.is_empty() || !r.id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
            return Err(invalid(format!("{at}.id"), "must be non-empty letters, digits, '.', '_' or '-'"));
        }
        if !ids.insert(&r.id) {
            return Err(invalid(format!("{at}.id"), format!("duplicate resource id `{}`", r.id)));
        }
        if !RESOURCE_TYPES.contains(&r.kind.as_str()) {
            return Err(invalid(format!("{at}.type"), format!("unknown type `{}`; one of {}", r.kind, RESOURCE_TYPES.join(", "))));
        }
        if r.address.is_empty() {
            return Err(invalid(format!("{at}.address"), "must not be empty"));
        }
        let files = [r.admin.as_ref().and_then(|a| a.private_key_file.as_ref()), r.admin.as_ref().and_then(|a| a.password_file.as_ref())];
        let texts = [("name", Some(r.name.as_str())), ("address", Some(r.address.as_str())), ("policy", r.policy.as_deref())]
            .into_iter()
            .chain([("admin.private_key_file", files[0]), ("admin.password_file", files[1])].map(|(k, f)| (k, f.and_then(|p| p.to_str()))));
        for (key, text) in texts {
            if text.is_some_and(|t| t.contains('\0')) {
                return Err(invalid(format!("{at}.{key}"), crate::requests::NUL_MESSAGE));
            }
        }
        if r.port == 0 {
            return Err(invalid(format!("{at}.port"), "must be 1 to 65535"));
        }
        for (k, key) in r.host_keys.iter().enumerate() {
            let ok = key.strip_prefix("SHA256:").is_some_and(|b| b.len() == 43 && b.chars().all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/'));
            if !ok {
                return Err(invalid(format!("{at}.host_keys[{k}]"), "expected `SHA256:<43 base64 characters>` as `ssh-keygen -l -E sha256` prints"));
            }
        }
        if r.host_keys.is_empty() && !r.insecure_accept_any_host_key {
            return Err(invalid(format!("{at}.host_keys"), "pin at least one host key (or set insecure_accept_any_host_key = true)"));
        }
        if crate::driver::driver(&r.platform).is_none() {
            return Err(invalid(format!("{at}.platform"), format!("unknown platform `{}`; one of {}", r.platform, crate::driver::PLATFORMS.join(", "))));
        }
        let policy = r.policy.clone().unwrap_or_else(|| default_policy(&r.kind));
        if !policies.contains_key(&policy) {
            return Err(invalid(format!("{at}.policy"), format!("unknown policy `{policy}`")));
        }
        match &r.admin {
            Some(a) => {
                crate::driver::validate_username(&a.username).map_err(|m| invalid(format!("{at}.admin.username"), m))?;
                if a.private_key_file.is_some() == a.password_file.is_some() {
                    return Err(invalid(format!("{at}.admin"), "give exactly one of private_key_file and password_file"));
                }
            }
            None if r.platform == "linux-chpasswd" => {
                return Err(invalid(format!("{at}.admin"), "platform linux-chpasswd needs an admin account"));
            }
            None => {}
        }
        let mut names = HashSet::new();
        for (j, a) in r.account.iter().enumerate() {
            let at = format!("{at}.account[{j}]");
            crate::driver::validate_username(&a.username).map_err(|m| invalid(format!("{at}.username"), m))?;
            if !names.insert(&a.username) {
                return Err(invalid(format!("{at}.username"), format!("duplicate account `{}`", a.username)));
            }
            if !["USER", "SYSTEM", "SERVICE"].contains(&a.account_type.as_str()) {
                return Err(invalid(format!("{at}.account_type"), "one of USER, SYSTEM, SERVICE"));
            }
            if !["SSO", "SSH", "API", "FTP", "AUDIT"].contains(&a.credential_type.as_str()) {
                return Err(invalid(format!("{at}.credential_type"), "one of SSO, SSH, API, FTP, AUDIT"));
            }
            if let Some(d) = a.auto_rotate_days {
                if !(1..=365).contains(&d) {
                    return Err(invalid(format!("{at}.auto_rotate_days"), "must be 1 to 365"));
                }
            }
        }
    }
    Ok(())
}

/// Upserts the inventory in one transaction. Returns one line per change.
/// A `password_file` onboards the account's password only when rotor knows none yet:
/// re-applying an old file never overwrites a rotated password.
pub async fn apply(
    pool: &PgPool,
    key: Option<&MasterKey>,
    inv: &InventoryFile,
    default_policy: impl Fn(&str) -> String,
    schedule: &crate::schedule::Schedule,
) -> Result<Vec<String>, Error> {
    // Next rotations are planned by this process's clock, like the scheduler judges them.
    let now = chrono::Utc::now();
    let mut tx = pool.begin().await?;
    let mut report = Vec::new();
    for r in &inv.resource {
        let policy = r.policy.clone().unwrap_or_else(|| default_policy(&r.kind));
        let admin = r.admin.as_ref();
        let path = |p: Option<&PathBuf>| p.map(|p| p.display().to_string());
        let row = sqlx::query!(
            r#"INSERT INTO resources (id, name, type, address, port, host_keys, insecure_accept_any_host_key, platform, policy,
                                     admin_username, admin_private_key_file, admin_password_file, admin_sudo)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
               ON CONFLICT (id) DO UPDATE SET
                   name = EXCLUDED.name, type = EXCLUDED.type, address = EXCLUDED.address, port = EXCLUDED.port,
                   host_keys = EXCLUDED.host_keys, insecure_accept_any_host_key = EXCLUDED.insecure_accept_any_host_key,
                   platform = EXCLUDED.platform, policy = EXCLUDED.policy, admin_username = EXCLUDED.admin_username,
                   admin_private_key_file = EXCLUDED.admin_private_key_file,
                   admin_password_file = EXCLUDED.admin_password_file, admin_sudo = EXCLUDED.admin_sudo, updated_at = now()
               WHERE (resources.name, resources.type, resources.address, resources.port, resources.host_keys,
                      resources.insecure_accept_any_host_key, resources.platform, resources.policy, resources.admin_username,
                      resources.admin_private_key_file, resources.admin_password_file, resources.admin_sudo)
                     IS DISTINCT FROM
                     (EXCLUDED.name, EXCLUDED.type, EXCLUDED.address, EXCLUDED.port, EXCLUDED.host_keys,
                      EXCLUDED.insecure_accept_any_host_key, EXCLUDED.platform, EXCLUDED.policy, EXCLUDED.admin_username,
                      EXCLUDED.admin_private_key_file, EXCLUDED.admin_password_file, EXCLUDED.admin_sudo)
               RETURNING (xmax = 0) AS "inserted!""#,
            r.id,
            r.name,
            r.kind,
            r.address,
            i32::from(r.port),
            &r.host_keys,
            r.insecure_accept_any_host_key,
            r.platform,
            policy,
            admin.map(|a| a.username.clone()),
            path(admin.and_then(|a| a.private_key_file.as_ref())),
            path(admin.and_then(|a| a.password_file.as_ref())),
            admin.is_some_and(|a| a.sudo)
        )
        .fetch_optional(&mut *tx)
        .await?;
        match row {
            Some(r2) if r2.inserted => report.push(format!("resource {}: created", r.id)),
            Some(_) => report.push(format!("resource {}: updated", r.id)),
            None => {}
        }
        for a in &r.account {
            let who = format!("account {}@{}", a.username, r.id);
            let before = sqlx::query!(
                "SELECT auto_rotate_days, last_rotated_at, auto_task_id FROM credentials WHERE resource_id = $1 AND username = $2",
                r.id,
                a.username
            )
            .fetch_optional(&mut *tx)
            .await?;
            let row = sqlx::query!(
                r#"INSERT INTO credentials (id, resource_id, username, account_type, credential_type, auto_rotate_days)
                   VALUES ($1, $2, $3, $4, $5, $6)
                   ON CONFLICT (resource_id, username) DO UPDATE SET
                       account_type = EXCLUDED.account_type, credential_type = EXCLUDED.credential_type,
                       auto_rotate_days = EXCLUDED.auto_rotate_days,
                       updated_at = now()
                   WHERE (credentials.account_type, credentials.credential_type, credentials.auto_rotate_days)
                         IS DISTINCT FROM (EXCLUDED.account_type, EXCLUDED.credential_type, EXCLUDED.auto_rotate_days)
                   RETURNING (xmax = 0) AS "inserted!""#,
                Uuid::new_v4(),
                r.id,
                a.username,
                a.account_type,
                a.credential_type,
                a.auto_rotate_days
            )
            .fetch_optional(&mut *tx)
            .await?;
            match row {
                Some(r2) if r2.inserted => report.push(format!("{who}: created")),
                Some(_) => report.push(format!("{who}: updated")),
                None => {}
            }
            // A new or changed frequency plans the next rotation from the last one (or now);
            // an auto-rotation already in flight plans its own successor when it commits.
            let old_days = before.as_ref().and_then(|b| b.auto_rotate_days);
            let in_flight = before.as_ref().is_some_and(|b| b.auto_task_id.is_some());
            let id = sqlx::query_scalar!("SELECT id FROM credentials WHERE resource_id = $1 AND username = $2", r.id, a.username)
                .fetch_one(&mut *tx)
                .await?;
            if (before.is_none() || old_days != a.auto_rotate_days) && !in_flight {
                let last = before.as_ref().and_then(|b| b.last_rotated_at).unwrap_or(now);
                lifecycle::plan_next(&mut tx, schedule, id, a.auto_rotate_days, last).await?;
            }
            if let Some(file) = &a.password_file {
                let known = sqlx::query_scalar!(
                    r#"SELECT count(*) AS "n!" FROM credential_versions WHERE credential_id = $1 AND state IN ('CURRENT', 'PENDING')"#,
                    id
                )
                .fetch_one(&mut *tx)
                .await?;
                if known == 0 {
                    let key = key.ok_or_else(|| invalid("vault.master_key_file", "needed to onboard passwords"))?;
                    let text = std::fs::read_to_string(file).map_err(|e| Error::Read(file.clone(), e))?;
                    let password = SecretString::from(text.trim_end_matches(['\n', '\r']).to_owned());
                    if password.expose_secret().is_empty() {
                        return Err(invalid(format!("{who}.password_file"), format!("{} is empty", file.display())));
                    }
                    crate::driver::validate_password_charset(password.expose_secret())
                        .map_err(|m| invalid(format!("{who}.password_file"), format!("password {m}")))?;
                    let v = versions::insert(&mut tx, key, id, State::Current, Origin::Onboarded, &password, None).await?;
                    report.push(format!("{who}: password onboarded (version {v})"));
                }
            }
        }
    }
    tx.commit().await?;
    Ok(report)
}
