//! The sections of the configuration, with their defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;

use crate::access::Glob;
pub use crate::access::Scope;
use crate::policy::PolicySpec;

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
    pub inventory: InventorySettings,
    /// Password policies by name; they add to or override the built-in presets.
    pub policy: BTreeMap<String, PolicySpec>,
    /// Policy name per resource type, overriding the built-in mapping.
    pub type_policy: BTreeMap<String, String>,
    pub policy_settings: PolicySettings,
    /// Where events are POSTed besides the `rotor.events` exchange.
    pub webhook: Vec<WebhookSettings>,
    /// Host onboarding (`GET /v1/deploy/script`).
    pub deploy: DeploySettings,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeploySettings {
    /// The admin account the deploy script creates on each host.
    pub admin_username: String,
    /// rotor's admin private key (`rotor admin-key generate`), under `inventory.allowed_dir`:
    /// its public half goes into the script, and enrolled resources use it.
    pub admin_key_file: Option<PathBuf>,
    /// The URL hosts reach rotor's API at; default: the scheme and Host of the request
    /// that fetched the script.
    pub api_url: Option<String>,
    /// A CA the script's curl trusts for `api_url` (embedded in the script).
    pub ca_file: Option<PathBuf>,
    /// How long an enrollment token (one per script) stays good.
    pub token_minutes: u32,
}

impl Default for DeploySettings {
    fn default() -> Self {
        Self {
            admin_username: "rotor".into(),
            admin_key_file: None,
            api_url: None,
            ca_file: None,
            token_minutes: 60,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// https:// (plain http only to a loopback address); no credentials in it.
    pub url: String,
    /// The HMAC-SHA256 key each request is signed with (`X-Rotor-Signature`).
    pub secret_file: PathBuf,
    /// Globs on routing keys (`task.*`, `subtask.FAILED`, `credential.*`); default: all.
    #[serde(default = "all_events")]
    pub events: Vec<String>,
    /// The CA the webhook's certificate must chain to, instead of the system's roots.
    pub ca_file: Option<PathBuf>,
}

fn all_events() -> Vec<String> {
    vec!["*".into()]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySettings {
    /// Policies whose min-entropy is below this many bits are logged as warnings.
    pub min_entropy_bits: f64,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            min_entropy_bits: 80.0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    pub url: Option<SecretString>,
    pub url_file: Option<PathBuf>,
    pub max_connections: u32,
    /// CA that signs the server's certificate, for `sslmode=verify-ca`/`verify-full`.
    pub ca_file: Option<PathBuf>,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: Some(SecretString::from(
                "postgres://postgres@127.0.0.1:5432/rotor",
            )),
            url_file: None,
            max_connections: 20,
            ca_file: None,
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
    /// Unacknowledged deliveries the consumer holds at once; intake records them in
    /// batches of half as many, the next batch arriving while one is recorded.
    pub prefetch: u16,
    /// Larger message bodies are dead-lettered unread.
    pub max_message_bytes: usize,
    /// Most elements x credentials one request may name.
    pub max_credentials_per_request: usize,
    /// CA that signs the broker's certificate (`amqps://`); without it the system's roots.
    pub ca_file: Option<PathBuf>,
    /// The producers allowed to send requests, by their broker-validated AMQP `user_id`.
    pub producer: Vec<ProducerSettings>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerSettings {
    pub user: String,
    pub scopes: Vec<Scope>,
    /// Globs on resource ids this producer may name; empty: all.
    #[serde(default)]
    pub resources: Vec<Glob>,
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
            prefetch: 512,
            max_message_bytes: 1024 * 1024,
            max_credentials_per_request: 1000,
            ca_file: None,
            producer: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    pub listen: String,
    /// With `tls_key_file`: the API answers HTTPS only.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// When set, /healthz, /readyz and /metrics are served here (plain HTTP) instead of on `listen`.
    pub ops_listen: Option<String>,
    /// Lets a non-loopback `listen` serve plain HTTP.
    pub allow_plaintext: bool,
    /// Failed logins from one address within a minute before it is refused unheard (429).
    pub failed_login_limit: u32,
    pub token: Vec<TokenSettings>,
    /// API users who log in (`POST /v1/tokens`) for short-lived access tokens.
    pub user: Vec<UserSettings>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            tls_cert_file: None,
            tls_key_file: None,
            ops_listen: None,
            allow_plaintext: false,
            failed_login_limit: 10,
            token: Vec::new(),
            user: Vec::new(),
        }
    }
}

impl HttpSettings {
    pub fn tls(&self) -> Option<(&PathBuf, &PathBuf)> {
        self.tls_cert_file.as_ref().zip(self.tls_key_file.as_ref())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    pub name: String,
    pub token: Option<SecretString>,
    pub token_file: Option<PathBuf>,
    pub scopes: Vec<Scope>,
    /// Globs on resource ids this token may touch; empty: all.
    #[serde(default)]
    pub resources: Vec<Glob>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSettings {
    pub username: String,
    /// A file holding the password's argon2 hash in PHC form (`rotor user hash-password`).
    pub password_hash_file: PathBuf,
    pub scopes: Vec<Scope>,
    /// Globs on resource ids this user may touch; empty: all.
    #[serde(default)]
    pub resources: Vec<Glob>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VaultSettings {
    pub master_key: Option<SecretString>,
    pub master_key_file: Option<PathBuf>,
    /// The keyring, newest first: the first key seals, every key opens. When given, it
    /// replaces `master_key`/`master_key_file`.
    pub master_key_files: Vec<PathBuf>,
    /// Versions kept per credential (PENDING, CURRENT, PREVIOUS and older); at least 3.
    pub max_versions: u32,
}

impl Default for VaultSettings {
    fn default() -> Self {
        Self {
            master_key: None,
            master_key_file: Some(PathBuf::from("/etc/rotor/master.key")),
            master_key_files: Vec::new(),
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
            concurrency: 64,
            lease_seconds: 60,
            max_attempts: 5,
            retry_base_ms: 2_000,
            retry_max_ms: 120_000,
            poll_interval_ms: 2_000,
            per_host: 8,
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
    /// An auto-rotating credential whose OS password expires within this many days is
    /// rotated (at most half its maximum age ahead, for short-lived passwords).
    pub expiry_margin_days: u32,
    /// Cron with seconds for reading the targets' password expiry (`chage -l`) of
    /// auto-rotating credentials; "" turns it off.
    pub expiry_tick: String,
    /// The breaker opens when more than this share of the auto-rotations that ended in
    /// the last `breaker_window_minutes` failed ...
    pub breaker_ratio: f64,
    /// ... and at least this many failed.
    pub breaker_min_failures: u32,
    pub breaker_window_minutes: u32,
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
            expiry_margin_days: 7,
            expiry_tick: "0 20 3 * * *".into(),
            breaker_ratio: 0.5,
            breaker_min_failures: 5,
            breaker_window_minutes: 60,
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
        Self {
            connect_timeout_ms: 10_000,
            io_timeout_ms: 30_000,
        }
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
        Self {
            format: LogFormat::Text,
            filter: "info,sqlx=warn,lapin=warn".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InventorySettings {
    /// Files the TOML inventory names (admin keys, onboarding passwords) must lie under it.
    pub allowed_dir: PathBuf,
}

impl Default for InventorySettings {
    fn default() -> Self {
        Self {
            allowed_dir: PathBuf::from("/etc/rotor"),
        }
    }
}
