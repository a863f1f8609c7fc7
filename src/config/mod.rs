//! Settings: defaults, then the TOML file, then `ROTOR_<SECTION>__<KEY>` environment
//! variables. Secrets may come from a file (`<key>_file`) so systemd's
//! `LoadCredential=` works. Unknown keys are refused with their path.

mod schedule_settings;
mod sections;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use croner::parser::{CronParser, Seconds, Year};
use figment::providers::{Env, Format, Toml};
use figment::{Figment, Provider};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::policy::Policy;

pub use sections::*;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/rotor/rotor.toml";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

impl Error {
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Where the configuration came from, for relative paths and messages.
#[derive(Debug, Clone)]
pub struct Source {
    pub file: Option<PathBuf>,
}

/// Loads the settings: defaults, the file (if any), the environment on top, then validation.
/// `explicit` is `--config`/`ROTOR_CONFIG`; without it `/etc/rotor/rotor.toml` is read when present.
/// `ROTOR_WORKER__CONCURRENCY=4` sets `worker.concurrency`; its value is read as figment reads
/// one (number, boolean, array, inline table), anything else as a string.
pub fn load(explicit: Option<&Path>) -> Result<Settings, Error> {
    let file = match explicit {
        Some(p) => Some(p.to_path_buf()),
        None if Path::new(DEFAULT_CONFIG_PATH).exists() => Some(PathBuf::from(DEFAULT_CONFIG_PATH)),
        None => None,
    };
    let mut figment = Figment::new();
    if let Some(path) = &file {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        let toml = Toml::string(&text);
        toml.data().map_err(|e| Error::Syntax {
            path: path.clone(),
            message: e.kind.to_string(),
        })?;
        figment = figment.merge(toml);
    }
    let malformed = |name: &String| {
        name.strip_prefix("ROTOR_")
            .is_some_and(|r| r.contains("__") && r.split("__").any(str::is_empty))
    };
    if let Some(name) = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .find(malformed)
    {
        return Err(Error::invalid(name, "malformed variable name"));
    }
    // ROTOR_CONFIG and friends (no `__`) are not settings
    let env = Env::prefixed("ROTOR_")
        .filter(|k| k.as_str().contains("__"))
        .split("__");
    let mut settings: Settings = figment.merge(env).extract().map_err(from_figment)?;
    let base = file
        .as_deref()
        .and_then(Path::parent)
        .map(Path::to_path_buf);
    settings.resolve_paths(base.as_deref());
    settings.validate()?;
    Ok(settings)
}

/// A figment error as `Invalid`, named by its key (`http.token[0].scopes`); the value of a
/// secret key is not repeated.
fn from_figment(e: figment::Error) -> Error {
    use figment::error::{Actual, Kind};
    let profile = e.profile.as_ref().map(|p| p.as_str().as_str());
    let path = match e.path.split_first() {
        Some((first, rest)) if !rest.is_empty() && Some(first.as_str()) == profile => rest,
        _ => &e.path[..],
    };
    let key = path
        .iter()
        .fold(String::new(), |key, part| match part.parse::<usize>() {
            Ok(i) => format!("{key}[{i}]"),
            Err(_) if key.is_empty() => part.clone(),
            Err(_) => format!("{key}.{part}"),
        });
    let secret = matches!(
        path.last().map(String::as_str),
        Some("url" | "token" | "master_key")
    );
    let message = match &e.kind {
        Kind::InvalidType(found, expected) | Kind::InvalidValue(found, expected) if secret => {
            let found = match found {
                Actual::Str(_) | Actual::Char(_) | Actual::Bytes(_) => "a string".into(),
                Actual::Unsigned(_) | Actual::Signed(_) | Actual::Float(_) => "a number".into(),
                Actual::Bool(_) | Actual::Other(_) => "a value".into(),
                other => other.to_string(),
            };
            format!("invalid value: found {found} (not shown), expected {expected}")
        }
        kind => kind.to_string(),
    };
    Error::invalid(
        if key.is_empty() {
            String::from("(top level)")
        } else {
            key
        },
        message,
    )
}

fn resolve(base: Option<&Path>, p: &mut Option<PathBuf>) {
    if let Some(path) = p.as_mut() {
        resolve_path(base, path);
    }
}

/// A relative `path` taken from the configuration file's folder `base`.
fn resolve_path(base: Option<&Path>, path: &mut PathBuf) {
    if let (Some(base), true) = (base, path.is_relative()) {
        *path = base.join(&*path);
    }
}

impl Settings {
    fn resolve_paths(&mut self, base: Option<&Path>) {
        resolve(base, &mut self.database.url_file);
        resolve(base, &mut self.amqp.url_file);
        resolve(base, &mut self.vault.master_key_file);
        for f in &mut self.vault.master_key_files {
            resolve_path(base, f);
        }
        resolve(base, &mut self.database.ca_file);
        resolve(base, &mut self.amqp.ca_file);
        resolve(base, &mut self.http.tls_cert_file);
        resolve(base, &mut self.http.tls_key_file);
        for t in &mut self.http.token {
            resolve(base, &mut t.token_file);
        }
        for w in &mut self.webhook {
            resolve_path(base, &mut w.secret_file);
            resolve(base, &mut w.ca_file);
        }
        for u in &mut self.http.user {
            resolve_path(base, &mut u.password_hash_file);
        }
        resolve(base, &mut self.deploy.admin_key_file);
        resolve(base, &mut self.deploy.ca_file);
    }

    fn validate(&self) -> Result<(), Error> {
        // The deploy script holds the name in shell quotes and creates it with useradd.
        let name = &self.deploy.admin_username;
        let first_ok = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_');
        let rest_ok = name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c));
        if !first_ok || !rest_ok || name.len() > 32 {
            return Err(Error::invalid(
                "deploy.admin_username",
                "a lowercase letter or '_', then a-z 0-9 _ -, at most 32",
            ));
        }
        if !(1..=10_080).contains(&self.deploy.token_minutes) {
            return Err(Error::invalid(
                "deploy.token_minutes",
                "must be 1 to 10080 (a week)",
            ));
        }
        if self.worker.concurrency == 0 || self.worker.concurrency > 1024 {
            return Err(Error::invalid("worker.concurrency", "must be 1 to 1024"));
        }
        if let Some(id) = &self.worker.instance_id {
            if id.is_empty() || id.contains('/') || id.contains('%') || id.contains('_') {
                return Err(Error::invalid(
                    "worker.instance_id",
                    "must be non-empty, without '/', '%' or '_'",
                ));
            }
        }
        if self.worker.lease_seconds < 10 {
            return Err(Error::invalid(
                "worker.lease_seconds",
                "must be at least 10",
            ));
        }
        if self.worker.max_attempts == 0 {
            return Err(Error::invalid("worker.max_attempts", "must be at least 1"));
        }
        if self.vault.max_versions < 3 {
            return Err(Error::invalid(
                "vault.max_versions",
                "must be at least 3 (pending, current, previous)",
            ));
        }
        self.validate_http()?;
        let mut users = std::collections::HashSet::new();
        for (i, p) in self.amqp.producer.iter().enumerate() {
            if p.user.is_empty() || !users.insert(p.user.as_str()) {
                return Err(Error::invalid(
                    format!("amqp.producer[{i}].user"),
                    "must be non-empty and name each producer once",
                ));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, t) in self.http.token.iter().enumerate() {
            if !names.insert(t.name.as_str()) {
                return Err(Error::invalid(
                    format!("http.token[{i}].name"),
                    "duplicate token name",
                ));
            }
            if t.token.is_some() == t.token_file.is_some() {
                return Err(Error::invalid(
                    format!("http.token[{i}]"),
                    "give exactly one of `token` and `token_file`",
                ));
            }
        }
        for (section, name) in [
            ("amqp.exchange", &self.amqp.exchange),
            ("amqp.queue", &self.amqp.queue),
        ] {
            if name.is_empty() {
                return Err(Error::invalid(section, "must not be empty"));
            }
        }
        if !(0.0..=1024.0).contains(&self.policy_settings.min_entropy_bits) {
            return Err(Error::invalid(
                "policy_settings.min_entropy_bits",
                "must be 0 to 1024",
            ));
        }
        if self.worker.per_host < 1 {
            return Err(Error::invalid("worker.per_host", "must be at least 1"));
        }
        self.scheduler.schedule()?;
        let parser = CronParser::builder()
            .seconds(Seconds::Required)
            .year(Year::Disallowed)
            .build();
        for (key, cron) in [
            ("scheduler.tick", &self.scheduler.tick),
            ("scheduler.heartbeat_tick", &self.scheduler.heartbeat_tick),
            ("scheduler.expiry_tick", &self.scheduler.expiry_tick),
        ] {
            // six fields written out: croner would also take `@hourly`
            if !cron.is_empty()
                && (cron.split_whitespace().count() != 6 || parser.parse(cron).is_err())
            {
                return Err(Error::invalid(key, format!("`{cron}`: expected a cron expression with seconds, \"sec min hour day month weekday\"")));
            }
        }
        self.policies()?;
        Ok(())
    }

    /// The listeners: addresses that parse, TLS given whole, no plain HTTP off loopback
    /// unless `allow_plaintext`.
    fn validate_http(&self) -> Result<(), Error> {
        let http = &self.http;
        let listen = http
            .listen
            .parse::<SocketAddr>()
            .map_err(|e| Error::invalid("http.listen", format!("{e} (expected IP:PORT)")))?;
        if let Some(ops) = &http.ops_listen {
            ops.parse::<SocketAddr>().map_err(|e| {
                Error::invalid("http.ops_listen", format!("{e} (expected IP:PORT)"))
            })?;
        }
        if http.failed_login_limit == 0 {
            return Err(Error::invalid(
                "http.failed_login_limit",
                "must be at least 1",
            ));
        }
        if http.tls_cert_file.is_some() != http.tls_key_file.is_some() {
            return Err(Error::invalid(
                "http.tls_cert_file",
                "give both tls_cert_file and tls_key_file, or neither",
            ));
        }
        if http.tls().is_none() && !listen.ip().is_loopback() && !http.allow_plaintext {
            return Err(Error::invalid(
                "http.listen",
                format!("{listen} is not loopback and no TLS is configured: set tls_cert_file and tls_key_file (or allow_plaintext = true)"),
            ));
        }
        // Each user named once, and not as a token is (the audit log tells callers apart
        // by name alone).
        let mut names: HashSet<&str> = http.token.iter().map(|t| t.name.as_str()).collect();
        for (i, u) in http.user.iter().enumerate() {
            let key = format!("http.user[{i}].username");
            if u.username.is_empty()
                || u.username.len() > 128
                || u.username.chars().any(char::is_control)
            {
                return Err(Error::invalid(key, "must be 1 to 128 printable characters"));
            }
            if !names.insert(u.username.as_str()) {
                return Err(Error::invalid(
                    key,
                    "names a user or token already configured",
                ));
            }
        }
        Ok(())
    }

    /// Built-in presets overlaid with the configured policies, each checked for feasibility.
    pub fn policies(&self) -> Result<BTreeMap<String, Policy>, Error> {
        let mut all = crate::policy::presets();
        for (name, spec) in &self.policy {
            let policy = Policy::from_spec(name, spec).map_err(|e| {
                Error::invalid(format!("policy.{name}{}", e.field_suffix()), e.to_string())
            })?;
            all.insert(name.clone(), policy);
        }
        for (ty, name) in &self.type_policy {
            if !all.contains_key(name) {
                return Err(Error::invalid(
                    format!("type_policy.{ty}"),
                    format!("unknown policy `{name}`"),
                ));
            }
        }
        let floor = self.policy_settings.min_entropy_bits;
        for (name, bits) in weak_policies(&all, floor) {
            tracing::warn!(policy = %name, bits = format!("{bits:.1}"), floor, "password policy below the entropy floor (policy_settings.min_entropy_bits)");
        }
        Ok(all)
    }

    /// The policy a resource of this type uses when its inventory entry names none.
    pub fn default_policy_for_type(&self, resource_type: &str) -> String {
        self.type_policy
            .get(resource_type)
            .cloned()
            .unwrap_or_else(|| crate::policy::preset_for_type(resource_type).to_string())
    }
}

/// Policies whose min-entropy (the shortest generated length decides) is below `floor`.
pub fn weak_policies(all: &BTreeMap<String, Policy>, floor: f64) -> Vec<(String, f64)> {
    all.iter()
        .map(|(n, p)| (n.clone(), p.min_entropy_bits()))
        .filter(|(_, bits)| *bits < floor)
        .collect()
}

/// Reads a secret given inline or as a file (trailing newline dropped); the file's bytes
/// are wiped once copied into the secret.
/// A secret read from `path` (named `key` in errors): the file's mode checked, its bytes
/// in a zeroized buffer, one trailing newline dropped, never empty.
pub fn secret_file(key: &str, path: &Path) -> Result<SecretString, Error> {
    check_private_file(key, path)?;
    let unreadable = |e: &dyn std::fmt::Display| {
        Error::invalid(key, format!("cannot read {}: {e}", path.display()))
    };
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| unreadable(&e))?);
    let text = std::str::from_utf8(&bytes).map_err(|e| unreadable(&e))?;
    let trimmed = text.trim_end_matches(['\n', '\r']);
    if trimmed.is_empty() {
        return Err(Error::invalid(key, format!("{} is empty", path.display())));
    }
    Ok(SecretString::from(trimmed))
}

/// Refuses a file others could change or read: group- or world-writable, or readable by
/// anyone but its owner and group (rotor's group, under systemd). Names the file and mode.
pub fn check_private_file(key: &str, path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| Error::invalid(key, format!("cannot read {}: {e}", path.display())))?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o022 != 0 {
        return Err(Error::invalid(
            key,
            format!(
                "{} has mode {mode:04o}: group or others may write it (chmod 0600 or 0640)",
                path.display()
            ),
        ));
    }
    if mode & 0o004 != 0 {
        return Err(Error::invalid(
            key,
            format!(
                "{} has mode {mode:04o}: anyone may read it (chmod 0600 or 0640)",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Refuses a bearer token with less than 128 bits of entropy, judged by its length over
/// the alphabet it is drawn from (hex: 4 bits a character, anything else 6 at most).
pub fn check_token_strength(key: &str, token: &str) -> Result<(), Error> {
    // Bits a character from the classes the token uses: hex 4, lower case alone 4.7,
    // letters and digits 5.95, with symbols about 6.5.
    let has = |f: fn(&char) -> bool| token.chars().any(|c| f(&c));
    let alphabet: f64 = if token.chars().all(|c| c.is_ascii_hexdigit()) {
        16.0
    } else {
        [
            (has(char::is_ascii_lowercase), 26.0),
            (has(char::is_ascii_uppercase), 26.0),
            (has(char::is_ascii_digit), 10.0),
            (has(|c| !c.is_ascii_alphanumeric()), 32.0),
        ]
        .iter()
        .filter(|(present, _)| *present)
        .map(|(_, n)| n)
        .sum()
    };
    let bits = token.chars().count() as f64 * alphabet.log2();
    let distinct = token
        .chars()
        .collect::<std::collections::HashSet<_>>()
        .len();
    if bits < 128.0 || distinct < 8 {
        return Err(Error::invalid(key, "the token is too weak: use at least 128 random bits (32 hex or 22 base64 characters), e.g. `head -c 32 /dev/urandom | base64`"));
    }
    Ok(())
}

pub fn secret(
    key: &str,
    inline: &Option<SecretString>,
    file: &Option<PathBuf>,
) -> Result<SecretString, Error> {
    match (inline, file) {
        (_, Some(path)) => secret_file(&format!("{key}_file"), path),
        (Some(value), None) if !value.expose_secret().is_empty() => Ok(value.clone()),
        _ => Err(Error::invalid(
            key,
            format!("missing: set `{key}` or `{key}_file`"),
        )),
    }
}

impl DatabaseSettings {
    pub fn url(&self) -> Result<SecretString, Error> {
        secret("database.url", &self.url, &self.url_file)
    }
}

impl AmqpSettings {
    pub fn url(&self) -> Result<SecretString, Error> {
        secret("amqp.url", &self.url, &self.url_file)
    }
}
