//! Settings: defaults, then the TOML file, then `ROTOR_<SECTION>__<KEY>` environment
//! variables. Secrets may come from a file (`<key>_file`) so systemd's
//! `LoadCredential=` works. Unknown keys are refused with their path.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::policy::{Policy, PolicySpec};
use crate::schedule::{Schedule, Window};

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

/// Loads the settings: the file (if any), the environment on top, then validation.
/// `explicit` is `--config`/`ROTOR_CONFIG`; without it `/etc/rotor/rotor.toml` is read when present.
pub fn load(explicit: Option<&Path>) -> Result<Settings, Error> {
    let vars: Vec<(String, String)> = std::env::vars().collect();
    load_from(explicit, &vars)
}

pub fn load_from(explicit: Option<&Path>, env: &[(String, String)]) -> Result<Settings, Error> {
    let file = match explicit {
        Some(p) => Some(p.to_path_buf()),
        None if Path::new(DEFAULT_CONFIG_PATH).exists() => Some(PathBuf::from(DEFAULT_CONFIG_PATH)),
        None => None,
    };
    let mut table = match &file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|source| Error::Read { path: path.clone(), source })?;
            text.parse::<toml::Table>()
                .map_err(|e| Error::Syntax { path: path.clone(), message: e.to_string() })?
        }
        None => toml::Table::new(),
    };
    overlay_env(&mut table, env)?;
    let mut settings: Settings = serde_path_to_error::deserialize(toml::Value::Table(table))
        .map_err(|e| {
            let key = e.path().to_string();
            Error::invalid(if key == "." { String::from("(top level)") } else { key }, e.into_inner().message().to_string())
        })?;
    let base = file.as_deref().and_then(Path::parent).map(Path::to_path_buf);
    settings.resolve_paths(base.as_deref());
    settings.validate()?;
    Ok(settings)
}

/// `ROTOR_WORKER__CONCURRENCY=4` sets `worker.concurrency`. A value that parses as a TOML
/// value (number, boolean, array, inline table) is taken as that, anything else as a string.
fn overlay_env(table: &mut toml::Table, env: &[(String, String)]) -> Result<(), Error> {
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("ROTOR_") else { continue };
        if !rest.contains("__") {
            continue; // ROTOR_CONFIG and friends are not settings
        }
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if path.iter().any(String::is_empty) {
            return Err(Error::invalid(name.clone(), "malformed variable name"));
        }
        let value = format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        let (last, parents) = path.split_last().expect("non-empty");
        let mut node = &mut *table;
        for key in parents {
            let entry = node.entry(key.clone()).or_insert_with(|| toml::Value::Table(Default::default()));
            node = entry
                .as_table_mut()
                .ok_or_else(|| Error::invalid(path.join("."), format!("{name} names a key inside a non-table")))?;
        }
        node.insert(last.clone(), value);
    }
    Ok(())
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
        self.scheduler.schedule()?;
        for (key, cron) in [("scheduler.tick", &self.scheduler.tick), ("scheduler.heartbeat_tick", &self.scheduler.heartbeat_tick)] {
            let parses = || tokio_cron_scheduler::Job::new_async(cron.as_str(), |_, _| Box::pin(async {})).is_ok();
            if !cron.is_empty() && (cron.split_whitespace().count() != 6 || !parses()) {
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

/// Reads a secret given inline or as a file (trailing newline dropped).
pub fn secret(key: &str, inline: &Option<SecretString>, file: &Option<PathBuf>) -> Result<SecretString, Error> {
    match (inline, file) {
        (_, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::invalid(format!("{key}_file"), format!("cannot read {}: {e}", path.display())))?;
            let trimmed = text.trim_end_matches(['\n', '\r']);
            if trimmed.is_empty() {
                return Err(Error::invalid(format!("{key}_file"), format!("{} is empty", path.display())));
            }
            Ok(SecretString::from(trimmed.to_owned()))
        }
        (Some(value), None) if !value.expose_secret().is_empty() => Ok(value.clone()),
        _ => Err(Error::invalid(key, format!("missing: set `{key}` or `{key}_file`"))),
    }
}

impl SchedulerSettings {
    /// The typed schedule these settings describe, or the key that is wrong.
    pub fn schedule(&self) -> Result<Schedule, Error> {
        let tz: chrono_tz::Tz =
            self.timezone.parse().map_err(|_| Error::invalid("scheduler.timezone", format!("unknown time zone `{}`", self.timezone)))?;
        let window = self.window.as_deref().map(str::parse::<Window>).transpose().map_err(|m| Error::invalid("scheduler.window", m))?;
        Ok(Schedule::new(self.jitter_minutes, window, tz))
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

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn write(text: &str) -> tempfile_path::TempPath {
        tempfile_path::TempPath::with(text)
    }

    mod tempfile_path {
        pub struct TempPath(pub std::path::PathBuf);
        impl TempPath {
            pub fn with(text: &str) -> Self {
                let p = std::env::temp_dir().join(format!("rotor-config-{}.toml", uuid::Uuid::new_v4()));
                std::fs::write(&p, text).unwrap();
                TempPath(p)
            }
        }
        impl Drop for TempPath {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn environment_overrides_the_file() {
        let f = write("[worker]\nconcurrency = 3\n[amqp]\nqueue = \"a\"\n");
        let s = load_from(
            Some(&f.0),
            &env(&[("ROTOR_WORKER__CONCURRENCY", "7"), ("ROTOR_AMQP__QUEUE", "b.c"), ("ROTOR_CONFIG", "x")]),
        )
        .unwrap();
        assert_eq!(s.worker.concurrency, 7);
        assert_eq!(s.amqp.queue, "b.c");
    }

    #[test]
    fn unknown_key_is_named_with_its_path() {
        let f = write("[worker]\nconcurency = 3\n");
        let err = load_from(Some(&f.0), &[]).unwrap_err().to_string();
        assert!(err.contains("worker.concurency"), "{err}");
        let err = load_from(None, &env(&[("ROTOR_HTTP__LISTN", "x")])).unwrap_err().to_string();
        assert!(err.contains("http.listn"), "{err}");
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
            let f = write(text);
            let err = load_from(Some(&f.0), &[]).unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
        let f = write("[scheduler]\ntick = \"*/10 * * * * *\"\nheartbeat_tick = \"\"\nwindow = \"22:00-04:00\"\ntimezone = \"Europe/Helsinki\"\n");
        load_from(Some(&f.0), &[]).unwrap();
    }

    #[test]
    fn wrong_type_names_the_key() {
        let f = write("[worker]\nconcurrency = \"many\"\n");
        let err = load_from(Some(&f.0), &[]).unwrap_err().to_string();
        assert!(err.starts_with("configuration key `worker.concurrency`"), "{err}");
    }

    #[test]
    fn secrets_come_from_files_relative_to_the_config() {
        let dir = std::env::temp_dir().join(format!("rotor-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("db.url"), "postgres://x@y/z\n").unwrap();
        std::fs::write(dir.join("rotor.toml"), "[database]\nurl_file = \"db.url\"\n").unwrap();
        let s = load_from(Some(&dir.join("rotor.toml")), &[]).unwrap();
        assert_eq!(s.database.url().unwrap().expose_secret(), "postgres://x@y/z");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn policies_are_refused_with_their_key_and_weak_ones_listed() {
        let f = write("[policy.tiny]\nlength = 6\nmin_lower = 3\nmin_upper = 3\nmin_digit = 1\n");
        let err = load_from(Some(&f.0), &[]).unwrap_err().to_string();
        assert!(err.contains("policy.tiny") && err.contains("add up to 7"), "{err}");
        let f = write("[policy.pin]\nlength = 8\nmin_lower = -1\nmin_upper = -1\nmin_special = -1\n[policy_settings]\nmin_entropy_bits = 40\n");
        let s = load_from(Some(&f.0), &[]).unwrap();
        let all = s.policies().unwrap();
        assert_eq!(weak_policies(&all, s.policy_settings.min_entropy_bits).iter().map(|w| w.0.as_str()).collect::<Vec<_>>(), ["pin"]);
        assert!(weak_policies(&all, 80.0).iter().all(|(n, _)| n == "pin"));
        let err = load_from(None, &env(&[("ROTOR_POLICY_SETTINGS__MIN_ENTROPY_BITS", "-1")])).unwrap_err().to_string();
        assert!(err.contains("policy_settings.min_entropy_bits"), "{err}");
    }

    #[test]
    fn type_policy_overrides_the_preset_of_a_type() {
        let f = write("[policy.strict]\nlength = 32\n[type_policy]\nESXI = \"strict\"\nLINUX = \"vcf\"\n");
        let s = load_from(Some(&f.0), &[]).unwrap();
        assert!(s.policies().unwrap().contains_key("strict"));
        assert_eq!(s.default_policy_for_type("ESXI"), "strict");
        assert_eq!(s.default_policy_for_type("LINUX"), "vcf");
        assert_eq!(s.default_policy_for_type("NSXT_MANAGER"), "nsx", "types not named keep their preset");
        let f = write("[type_policy]\nESXI = \"nope\"\n");
        let err = load_from(Some(&f.0), &[]).unwrap_err().to_string();
        assert!(err.contains("type_policy.ESXI") && err.contains("nope"), "{err}");
    }

    #[test]
    fn bad_listen_address_is_refused() {
        let err = load_from(None, &env(&[("ROTOR_HTTP__LISTEN", "localhost")])).unwrap_err().to_string();
        assert!(err.contains("http.listen"), "{err}");
    }
}
