//! Settings: defaults, then the TOML file, then `ROTOR_<SECTION>__<KEY>` environment
//! variables. Secrets may come from a file (`<key>_file`) so systemd's
//! `LoadCredential=` works. Unknown keys are refused with their path.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use croner::parser::{CronParser, Seconds, Year};
use figment::providers::{Env, Format, Toml};
use figment::{Figment, Provider};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::policy::{Policy, PolicySpec};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/rotor/rotor.toml";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read configuration file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

impl Error {
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid { key: key.into(), message: message.into() }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub amqp: AmqpSettings,
    pub http: HttpSettings,
    pub vault: VaultSettings,
    pub worker: WorkerSettings,
    pub scheduler: SchedulerSettings,
    pub ssh: SshSettings,
    pub log: LogSettings,
    /// Password policies by name; they add to or override the built-in presets.
    pub policy: BTreeMap<String, PolicySpec>,
    /// Policy name per resource type, overriding the built-in mapping.
    pub type_policy: BTreeMap<String, String>,
    pub policy_settings: PolicySettings,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySettings {
    /// Policies whose min-entropy is below this many bits are logged as warnings.
    pub min_entropy_bits: f64,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self { min_entropy_bits: 80.0 }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    pub url: Option<SecretString>,
    pub url_file: Option<PathBuf>,
    pub max_connections: u32,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: Some(SecretString::from("postgres://postgres@127.0.0.1:5432/rotor")),
            url_file: None,
            max_connections: 20,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpSettings {
    pub url: Option<SecretString>,
    pub url_file: Option<PathBuf>,
    pub exchange: String,
    pub queue: String,
    pub dead_letter_exchange: String,
    pub dead_letter_queue: String,
    pub events_exchange: String,
    /// Unacknowledged deliveries the consumer holds at once.
    pub prefetch: u16,
    /// Larger message bodies are dead-lettered unread.
    pub max_message_bytes: usize,
    /// Most elements x credentials one request may name.
    pub max_credentials_per_request: usize,
}

impl Default for AmqpSettings {
    fn default() -> Self {
        Self {
            url: Some(SecretString::from("amqp://guest:guest@127.0.0.1:5672/%2f")),
            url_file: None,
            exchange: "rotor".into(),
            queue: "rotor.requests".into(),
            dead_letter_exchange: "rotor.dlx".into(),
            dead_letter_queue: "rotor.requests.dead".into(),
            events_exchange: "rotor.events".into(),
            prefetch: 32,
            max_message_bytes: 1024 * 1024,
            max_credentials_per_request: 1000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    pub listen: String,
    pub token: Vec<TokenSettings>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self { listen: "127.0.0.1:8080".into(), token: Vec::new() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    pub name: String,
    pub token: Option<SecretString>,
    pub token_file: Option<PathBuf>,
    pub scopes: Vec<Scope>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Scope {
    #[serde(rename = "admin")]
    Admin,
    #[serde(rename = "credentials:view")]
    CredentialsView,
    #[serde(rename = "credentials:manage")]
    CredentialsManage,
    #[serde(rename = "tasks:view")]
    TasksView,
    #[serde(rename = "resources:manage")]
    ResourcesManage,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::CredentialsView => "credentials:view",
            Scope::CredentialsManage => "credentials:manage",
            Scope::TasksView => "tasks:view",
            Scope::ResourcesManage => "resources:manage",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VaultSettings {
    pub master_key: Option<SecretString>,
    pub master_key_file: Option<PathBuf>,
    /// Versions kept per credential (PENDING, CURRENT, PREVIOUS and older); at least 3.
    pub max_versions: u32,
}

impl Default for VaultSettings {
    fn default() -> Self {
        Self {
            master_key: None,
            master_key_file: Some(PathBuf::from("/etc/rotor/master.key")),
            max_versions: 10,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    /// A name unique to this process among those sharing the database (e.g. the host
    /// name when one runs per host). When set, a restart takes back at once the leases
    /// its previous run held, instead of waiting for them to expire.
    pub instance_id: Option<String>,
    /// Rotations in flight in this process.
    pub concurrency: usize,
    /// How long a claimed credential stays leased without a renewal.
    pub lease_seconds: u32,
    /// Attempts of a subtask before a transient error fails it.
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt, with jitter.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// Fallback poll when no work notification arrives.
    pub poll_interval_ms: u64,
    /// Rotations running at once against one resource (host), across all processes.
    pub per_host: i64,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            instance_id: None,
            concurrency: 16,
            lease_seconds: 60,
            max_attempts: 5,
            retry_base_ms: 2_000,
            retry_max_ms: 120_000,
            poll_interval_ms: 2_000,
            per_host: 4,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerSettings {
    pub enabled: bool,
    /// Cron with seconds: when the scheduler looks for due credentials.
    pub tick: String,
    /// Most auto-rotation tasks one tick creates.
    pub batch: i64,
    /// Random delay added to each next rotation, so credentials set up together drift apart.
    pub jitter_minutes: u32,
    /// Allowed window for rotations, local time "HH:MM-HH:MM" in `timezone` (may wrap midnight).
    pub window: Option<String>,
    /// IANA time zone of the window, e.g. "Europe/Helsinki".
    pub timezone: String,
    /// Up to this many due at once start right away; a larger backlog (after a downtime)
    /// is spread evenly over `catch_up_seconds`.
    pub burst: i64,
    pub catch_up_seconds: u64,
    /// Consecutive failed auto-rotations after which auto-rotation of that credential stops.
    pub max_failures: i32,
    /// First retry after a failed auto-rotation; doubles with each failure.
    pub retry_minutes: u32,
    /// Cron with seconds for the heartbeat (checks that stored passwords still log in); "" turns it off.
    pub heartbeat_tick: String,
    /// A credential is checked at most once per this many hours.
    pub heartbeat_hours: u32,
    /// Most credentials one heartbeat checks.
    pub heartbeat_batch: i64,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            tick: "0 * * * * *".into(),
            batch: 500,
            jitter_minutes: 60,
            window: None,
            timezone: "UTC".into(),
            burst: 20,
            catch_up_seconds: 3600,
            max_failures: 3,
            retry_minutes: 60,
            heartbeat_tick: "30 */10 * * * *".into(),
            heartbeat_hours: 24,
            heartbeat_batch: 20,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SshSettings {
    pub connect_timeout_ms: u64,
    /// Timeout of each blocking SSH operation (a refused login alone waits ~3 s of PAM delay).
    pub io_timeout_ms: u64,
}

impl Default for SshSettings {
    fn default() -> Self {
        Self { connect_timeout_ms: 10_000, io_timeout_ms: 30_000 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A tracing `EnvFilter` directive; `RUST_LOG` wins when set.
    pub filter: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self { format: LogFormat::Text, filter: "info,sqlx=warn,lapin=warn".into() }
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
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.clone(), source })?;
        let toml = Toml::string(&text);
        toml.data().map_err(|e| Error::Syntax { path: path.clone(), message: e.kind.to_string() })?;
        figment = figment.merge(toml);
    }
    let malformed = |name: &String| name.strip_prefix("ROTOR_").is_some_and(|r| r.contains("__") && r.split("__").any(str::is_empty));
    if let Some(name) = std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()).find(malformed) {
        return Err(Error::invalid(name, "malformed variable name"));
    }
    // ROTOR_CONFIG and friends (no `__`) are not settings
    let env = Env::prefixed("ROTOR_").filter(|k| k.as_str().contains("__")).split("__");
    let mut settings: Settings = figment.merge(env).extract().map_err(from_figment)?;
    let base = file.as_deref().and_then(Path::parent).map(Path::to_path_buf);
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
    let key = path.iter().fold(String::new(), |key, part| match part.parse::<usize>() {
        Ok(i) => format!("{key}[{i}]"),
        Err(_) if key.is_empty() => part.clone(),
        Err(_) => format!("{key}.{part}"),
    });
    let secret = matches!(path.last().map(String::as_str), Some("url" | "token" | "master_key"));
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
    Error::invalid(if key.is_empty() { String::from("(top level)") } else { key }, message)
}

fn resolve(base: Option<&Path>, p: &mut Option<PathBuf>) {
    if let (Some(base), Some(path)) = (base, p.as_mut()) {
        if path.is_relative() {
            *path = base.join(&*path);
        }
    }
}

impl Settings {
    fn resolve_paths(&mut self, base: Option<&Path>) {
        resolve(base, &mut self.database.url_file);
        resolve(base, &mut self.amqp.url_file);
        resolve(base, &mut self.vault.master_key_file);
        for t in &mut self.http.token {
            resolve(base, &mut t.token_file);
        }
    }

    fn validate(&self) -> Result<(), Error> {
        if self.worker.concurrency == 0 || self.worker.concurrency > 1024 {
            return Err(Error::invalid("worker.concurrency", "must be 1 to 1024"));
        }
        if let Some(id) = &self.worker.instance_id {
            if id.is_empty() || id.contains('/') || id.contains('%') || id.contains('_') {
                return Err(Error::invalid("worker.instance_id", "must be non-empty, without '/', '%' or '_'"));
            }
        }
        if self.worker.lease_seconds < 10 {
            return Err(Error::invalid("worker.lease_seconds", "must be at least 10"));
        }
        if self.worker.max_attempts == 0 {
            return Err(Error::invalid("worker.max_attempts", "must be at least 1"));
        }
        if self.vault.max_versions < 3 {
            return Err(Error::invalid("vault.max_versions", "must be at least 3 (pending, current, previous)"));
        }
        self.http
            .listen
            .parse::<SocketAddr>()
            .map_err(|e| Error::invalid("http.listen", format!("{e} (expected IP:PORT)")))?;
        let mut names = std::collections::HashSet::new();
        for (i, t) in self.http.token.iter().enumerate() {
            if !names.insert(t.name.as_str()) {
                return Err(Error::invalid(format!("http.token[{i}].name"), "duplicate token name"));
            }
            if t.token.is_some() == t.token_file.is_some() {
                return Err(Error::invalid(format!("http.token[{i}]"), "give exactly one of `token` and `token_file`"));
            }
        }
        for (section, name) in [("amqp.exchange", &self.amqp.exchange), ("amqp.queue", &self.amqp.queue)] {
            if name.is_empty() {
                return Err(Error::invalid(section, "must not be empty"));
            }
        }
        if !(0.0..=1024.0).contains(&self.policy_settings.min_entropy_bits) {
            return Err(Error::invalid("policy_settings.min_entropy_bits", "must be 0 to 1024"));
        }
        if self.worker.per_host < 1 {
            return Err(Error::invalid("worker.per_host", "must be at least 1"));
        }
        crate::scheduler::Schedule::from_settings(&self.scheduler)?;
        let parser = CronParser::builder().seconds(Seconds::Required).year(Year::Disallowed).build();
        for (key, cron) in [("scheduler.tick", &self.scheduler.tick), ("scheduler.heartbeat_tick", &self.scheduler.heartbeat_tick)] {
            // six fields written out: croner would also take `@hourly`
            if !cron.is_empty() && (cron.split_whitespace().count() != 6 || parser.parse(cron).is_err()) {
                return Err(Error::invalid(key, format!("`{cron}`: expected a cron expression with seconds, \"sec min hour day month weekday\"")));
            }
        }
        self.policies()?;
        Ok(())
    }

    /// Built-in presets overlaid with the configured policies, each checked for feasibility.
    pub fn policies(&self) -> Result<BTreeMap<String, Policy>, Error> {
        let mut all = crate::policy::presets();
        for (name, spec) in &self.policy {
            let policy = Policy::from_spec(name, spec)
                .map_err(|e| Error::invalid(format!("policy.{name}{}", e.field_suffix()), e.to_string()))?;
            all.insert(name.clone(), policy);
        }
        for (ty, name) in &self.type_policy {
            if !all.contains_key(name) {
                return Err(Error::invalid(format!("type_policy.{ty}"), format!("unknown policy `{name}`")));
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
    all.iter().map(|(n, p)| (n.clone(), p.min_entropy_bits())).filter(|(_, bits)| *bits < floor).collect()
}

/// Reads a secret given inline or as a file (trailing newline dropped); the file's bytes
/// are wiped once copied into the secret.
pub fn secret(key: &str, inline: &Option<SecretString>, file: &Option<PathBuf>) -> Result<SecretString, Error> {
    match (inline, file) {
        (_, Some(path)) => {
            let unreadable = |e: &dyn std::fmt::Display| Error::invalid(format!("{key}_file"), format!("cannot read {}: {e}", path.display()));
            let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| unreadable(&e))?);
            let text = std::str::from_utf8(&bytes).map_err(|e| unreadable(&e))?;
            let trimmed = text.trim_end_matches(['\n', '\r']);
            if trimmed.is_empty() {
                return Err(Error::invalid(format!("{key}_file"), format!("{} is empty", path.display())));
            }
            Ok(SecretString::from(trimmed))
        }
        (Some(value), None) if !value.expose_secret().is_empty() => Ok(value.clone()),
        _ => Err(Error::invalid(key, format!("missing: set `{key}` or `{key}_file`"))),
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

#[cfg(test)]
mod tests {
    use super::*;
    use figment::Jail;

    /// Loads `toml` (as `etc/rotor.toml`, when given) with `vars` set, in a jail of its own.
    fn load_with(toml: Option<&str>, vars: &[(&str, &str)]) -> Result<Settings, Error> {
        let mut out = None;
        Jail::expect_with(|jail| {
            vars.iter().for_each(|(k, v)| jail.set_env(k, v));
            let path = jail.create_dir("etc")?.join("rotor.toml");
            if let Some(text) = toml {
                jail.create_file(&path, text)?;
            }
            out = Some(load(toml.map(|_| jail.directory().join(&path)).as_deref()));
            Ok(())
        });
        out.expect("ran")
    }

    #[test]
    fn environment_overrides_the_file() {
        let s = load_with(
            Some("[worker]\nconcurrency = 3\n[amqp]\nqueue = \"a\"\n"),
            &[("ROTOR_WORKER__CONCURRENCY", "7"), ("ROTOR_AMQP__QUEUE", "b.c"), ("ROTOR_CONFIG", "x")],
        )
        .unwrap();
        assert_eq!(s.worker.concurrency, 7);
        assert_eq!(s.amqp.queue, "b.c");
    }

    #[test]
    fn variables_without_a_double_underscore_are_not_settings() {
        let vars = [("ROTOR_CONFIG", "/nowhere.toml"), ("ROTOR_WORKER", "x"), ("ROTOR_SCHEDULER__HEARTBEAT_TICK", "")];
        let s = load_with(None, &vars).unwrap();
        assert_eq!((s.worker.concurrency, s.scheduler.heartbeat_tick.as_str()), (16, ""));
        let err = load_with(None, &[("ROTOR_WORKER____CONCURRENCY", "7")]).unwrap_err().to_string();
        assert!(err.contains("ROTOR_WORKER____CONCURRENCY") && err.contains("malformed"), "{err}");
    }

    #[test]
    fn environment_inside_arrays_and_tables_names_the_key() {
        let toml = "[[http.token]]\nname = \"a\"\ntoken = \"t\"\nscopes = [\"admin\"]\n";
        let err = load_with(Some(toml), &[("ROTOR_HTTP__TOKEN", "[{name = \"a\", token = \"t\", scopes = [\"nope\"]}]")]).unwrap_err();
        assert!(matches!(&err, Error::Invalid { key, .. } if key == "http.token[0].scopes[0]"), "{err}");
        let err = load_with(Some(toml), &[("ROTOR_HTTP__TOKEN__NAME", "b")]).unwrap_err();
        assert!(matches!(&err, Error::Invalid { key, .. } if key == "http.token"), "{err}");
        let err = load_with(None, &[("ROTOR_POLICY__STRICT__LENGTH", "many")]).unwrap_err();
        assert!(matches!(&err, Error::Invalid { key, .. } if key == "policy.strict.length"), "{err}");
    }

    #[test]
    fn secret_values_are_not_repeated_in_errors() {
        for (var, key) in [("ROTOR_DATABASE__URL", "database.url"), ("ROTOR_VAULT__MASTER_KEY", "vault.master_key")] {
            let err = load_with(None, &[(var, "918273645")]).unwrap_err();
            assert!(matches!(&err, Error::Invalid { key: k, .. } if k == key), "{err}");
            assert!(!err.to_string().contains("918273645"), "{err}");
        }
    }

    #[test]
    fn unknown_key_is_named_with_its_path() {
        let err = load_with(Some("[worker]\nconcurency = 3\n"), &[]).unwrap_err().to_string();
        assert!(err.contains("worker.concurency"), "{err}");
        let err = load_with(None, &[("ROTOR_HTTP__LISTN", "x")]).unwrap_err().to_string();
        assert!(err.contains("http.listn"), "{err}");
    }

    #[test]
    fn file_errors_keep_their_kind() {
        assert!(matches!(load_with(Some("[worker\n"), &[]), Err(Error::Syntax { .. })));
        assert!(matches!(load(Some(Path::new("/nonexistent/rotor.toml"))), Err(Error::Read { .. })));
    }

    #[test]
    fn scheduler_settings_are_checked_at_load() {
        for (text, key) in [
            ("[scheduler]\ntick = \"0 * * * *\"\n", "scheduler.tick"),
            ("[scheduler]\ntick = \"0 61 * * * *\"\n", "scheduler.tick"),
            ("[scheduler]\nheartbeat_tick = \"x y z a b c\"\n", "scheduler.heartbeat_tick"),
            ("[scheduler]\nwindow = \"25:00-02:00\"\n", "scheduler.window"),
            ("[scheduler]\ntimezone = \"Europe/Nowhere\"\n", "scheduler.timezone"),
            ("[worker]\nper_host = 0\n", "worker.per_host"),
        ] {
            let err = load_with(Some(text), &[]).unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
        load_with(Some("[scheduler]\ntick = \"*/10 * * * * *\"\nheartbeat_tick = \"\"\nwindow = \"22:00-04:00\"\ntimezone = \"Europe/Helsinki\"\n"), &[]).unwrap();
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = load_with(Some("[worker]\nconcurrency = \"many\"\n"), &[]).unwrap_err().to_string();
        assert!(err.starts_with("configuration key `worker.concurrency`"), "{err}");
    }

    #[test]
    fn secrets_come_from_files_relative_to_the_config() {
        Jail::expect_with(|jail| {
            // the config in a folder of its own: the jail's folder is the working directory
            let dir = jail.create_dir("etc")?;
            jail.create_file(dir.join("db.url"), "postgres://x@y/z\n")?;
            jail.create_file(dir.join("rotor.toml"), "[database]\nurl_file = \"db.url\"\n")?;
            let s = load(Some(&jail.directory().join("etc/rotor.toml"))).unwrap();
            assert_eq!(s.database.url().unwrap().expose_secret(), "postgres://x@y/z");
            jail.create_file(dir.join("empty"), "\n")?;
            let err = secret("amqp.url", &None, &Some(dir.join("empty"))).unwrap_err().to_string();
            assert!(err.contains("amqp.url_file") && err.contains("is empty"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn policies_are_refused_with_their_key_and_weak_ones_listed() {
        let err = load_with(Some("[policy.tiny]\nlength = 6\nmin_lower = 3\nmin_upper = 3\nmin_digit = 1\n"), &[]).unwrap_err().to_string();
        assert!(err.contains("policy.tiny") && err.contains("add up to 7"), "{err}");
        let text = "[policy.pin]\nlength = 8\nmin_lower = -1\nmin_upper = -1\nmin_special = -1\n[policy_settings]\nmin_entropy_bits = 40\n";
        let s = load_with(Some(text), &[]).unwrap();
        let all = s.policies().unwrap();
        assert_eq!(weak_policies(&all, s.policy_settings.min_entropy_bits).iter().map(|w| w.0.as_str()).collect::<Vec<_>>(), ["pin"]);
        assert!(weak_policies(&all, 80.0).iter().all(|(n, _)| n == "pin"));
        let err = load_with(None, &[("ROTOR_POLICY_SETTINGS__MIN_ENTROPY_BITS", "-1")]).unwrap_err().to_string();
        assert!(err.contains("policy_settings.min_entropy_bits"), "{err}");
    }

    #[test]
    fn type_policy_overrides_the_preset_of_a_type() {
        let s = load_with(Some("[policy.strict]\nlength = 32\n[type_policy]\nESXI = \"strict\"\nLINUX = \"vcf\"\n"), &[]).unwrap();
        assert!(s.policies().unwrap().contains_key("strict"));
        assert_eq!(s.default_policy_for_type("ESXI"), "strict");
        assert_eq!(s.default_policy_for_type("LINUX"), "vcf");
        assert_eq!(s.default_policy_for_type("NSXT_MANAGER"), "nsx", "types not named keep their preset");
        let err = load_with(Some("[type_policy]\nESXI = \"nope\"\n"), &[]).unwrap_err().to_string();
        assert!(err.contains("type_policy.ESXI") && err.contains("nope"), "{err}");
    }

    #[test]
    fn bad_listen_address_is_refused() {
        let err = load_with(None, &[("ROTOR_HTTP__LISTEN", "localhost")]).unwrap_err().to_string();
        assert!(err.contains("http.listen"), "{err}");
    }
}
