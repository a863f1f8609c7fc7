//! The test bed: a real `rotor run` process per test, with its own database, AMQP
//! names, HTTP port and Linux accounts on the local sshd started by scripts/testbed.sh.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::Value;

pub const ROTOR: &str = env!("CARGO_BIN_EXE_rotor");
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const PG: &str = "postgres://postgres@127.0.0.1:5432";
const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The local sshd and its admin account, set up once per test run.
pub struct TestBed {
    pub port: u16,
    pub admin: String,
    pub admin_key: String,
    pub host_key_fpr: String,
}

pub fn testbed() -> &'static TestBed {
    static BED: OnceLock<TestBed> = OnceLock::new();
    BED.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/testbed.sh"))
            .arg("up")
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/testbed.sh");
        assert!(
            out.status.success(),
            "testbed.sh up failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("testbed.sh printed no {k}"))
                .to_string()
        };
        TestBed {
            port: get("ROTOR_TESTBED_PORT").parse().unwrap(),
            admin: get("ROTOR_TESTBED_ADMIN"),
            admin_key: get("ROTOR_TESTBED_ADMIN_KEY"),
            host_key_fpr: get("ROTOR_TESTBED_HOST_KEY_FPR"),
        }
    })
}

/// The TLS material scripts/tls.sh made: a CA, a second unrelated CA, the server
/// certificate and key (for 127.0.0.1), and the broker's TLS port.
pub struct TlsBed {
    pub ca: String,
    pub wrong_ca: String,
    pub cert: String,
    pub key: String,
    pub amqps_port: u16,
    pub producer_user: String,
    pub producer_password: String,
    /// RabbitMQ's management API over HTTPS, and its administrator.
    pub mgmt_port: u16,
    pub mgmt_admin: String,
    pub mgmt_admin_password_file: String,
}

pub fn tls_bed() -> &'static TlsBed {
    static BED: OnceLock<TlsBed> = OnceLock::new();
    BED.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/tls.sh"))
            .arg("up")
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/tls.sh");
        assert!(
            out.status.success(),
            "tls.sh up failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("tls.sh printed no {k}"))
                .to_string()
        };
        let password_file = get("ROTOR_TLS_PRODUCER_PASSWORD_FILE");
        TlsBed {
            ca: get("ROTOR_TLS_CA"),
            wrong_ca: get("ROTOR_TLS_WRONG_CA"),
            cert: get("ROTOR_TLS_CERT"),
            key: get("ROTOR_TLS_KEY"),
            amqps_port: get("ROTOR_TLS_AMQPS_PORT").parse().unwrap(),
            producer_user: get("ROTOR_TLS_PRODUCER_USER"),
            producer_password: std::fs::read_to_string(password_file)
                .unwrap()
                .trim()
                .to_string(),
            mgmt_port: get("ROTOR_TLS_MGMT_PORT").parse().unwrap(),
            mgmt_admin: get("ROTOR_TLS_MGMT_ADMIN"),
            mgmt_admin_password_file: get("ROTOR_TLS_MGMT_ADMIN_PASSWORD_FILE"),
        }
    })
}

/// The cluster-wide role the migrations grant rights to, made once before any test
/// database migrates (parallel migrations would race to create it).
fn runtime_role() {
    static ROLE: OnceLock<()> = OnceLock::new();
    ROLE.get_or_init(|| {
        psql("test", "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rotor_runtime') THEN CREATE ROLE rotor_runtime NOLOGIN; END IF; END $$");
    });
}

/// Where tests keep their files: under the test bed's folder, which the tests'
/// `[inventory] allowed_dir` names (the admin key lives there too).
pub const FILES_DIR: &str = "/var/lib/rotor-testbed";

/// A bearer token with 128 random bits and a readable prefix.
pub fn strong_token(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Writes a file only its owner may read, as rotor demands of token and key files.
pub fn write_private(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// A short random id; keeps names unique across tests and runs.
pub fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

/// A random password that the linux policy accepts.
pub fn initial_password() -> String {
    format!("Init-{}-Pw9!", unique())
}

/// A local Linux account with a password, deleted when dropped.
pub struct Account {
    pub username: String,
    pub password: String,
}

impl Account {
    pub fn create(prefix: &str) -> Account {
        testbed();
        let username = format!("{prefix}{}", &unique()[..6]);
        let account = Account {
            username,
            password: initial_password(),
        };
        account.set_password_on_host(&account.password);
        account
    }
}

impl Account {
    /// One whose `passwd` asks and judges as ESXi's does (pam_passwdqc with ESXi's
    /// settings, for members of the test bed's group rotor-esxi).
    pub fn create_esxi(prefix: &str) -> Account {
        let account = Account::create(prefix);
        let status = Command::new("usermod")
            .args(["-a", "-G", "rotor-esxi", &account.username])
            .status()
            .unwrap();
        assert!(status.success(), "usermod -G rotor-esxi");
        account
    }

    /// Changes the password on the host directly, as an operator outside rotor would.
    pub fn set_password_on_host(&self, password: &str) {
        let mut child = Command::new("bash")
            .arg(repo_root().join("scripts/testbed.sh"))
            .args(["account", &self.username])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "testbed.sh account {}: {}",
            self.username,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        let _ = Command::new("userdel")
            .arg(&self.username)
            .stderr(Stdio::null())
            .status();
    }
}

/// A real login over SSH with a password, by the OpenSSH client (not rotor's code).
pub fn ssh_login(username: &str, password: &str) -> bool {
    ssh_login_at(testbed().port, username, password)
}

/// The same on the sshd at `port`.
pub fn ssh_login_at(port: u16, username: &str, password: &str) -> bool {
    let status = Command::new("sshpass")
        .arg("-e")
        .args(["ssh", "-p", &port.to_string()])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
        ])
        .args([
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
            "-o",
            "PubkeyAuthentication=no",
        ])
        .args(["-o", "NumberOfPasswordPrompts=1", "-o", "ConnectTimeout=10"])
        .arg(format!("{username}@127.0.0.1"))
        .arg("true")
        .env("SSHPASS", password)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run sshpass");
    status.success()
}

/// One `rotor run` process with everything of its own.
pub struct TestApp {
    pub id: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub db_name: String,
    pub http: String,
    pub token: String,
    pub view_token: String,
    pub exchange: String,
    pub dead_queue: String,
    /// The ops listener (`http.ops_listen`), when the daemon has one.
    pub ops: Option<String>,
    /// Trusts the test CA when the API serves HTTPS.
    pub client: reqwest::Client,
    /// Arguments after `rotor run` (e.g. `--no-migrate`).
    pub run_args: Vec<String>,
    child: Option<Child>,
    /// More `rotor run` processes on the same database and broker.
    siblings: Vec<Child>,
    logs: Arc<Mutex<Vec<String>>>,
    /// When set (e.g. "+25h"), the next `start` runs rotor under libfaketime that far
    /// ahead. Only the wall clock moves: the monotonic clock (timers) stays real.
    pub faketime: Option<String>,
}

#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// What a test may change about its daemon.
#[derive(Clone)]
pub struct Options {
    pub concurrency: usize,
    pub max_attempts: u32,
    pub lease_seconds: u32,
    /// Set `worker.instance_id`, so a restart takes its leases back at once.
    pub instance_id: bool,
    /// `worker.per_host`.
    pub per_host: u32,
    /// Lines of the `[scheduler]` section. The default turns the heartbeat off, so it
    /// logs in to no test's accounts behind its back.
    pub scheduler: String,
    /// Every link over TLS: HTTPS, amqps:// and PostgreSQL verify-full, with `ca` as
    /// the CA rotor trusts (the test CA, or another one to see it refused).
    pub tls: Option<String>,
    /// More TOML after the rest (e.g. `[[http.token]]` tables).
    pub extra: String,
    /// The `[[amqp.producer]]` tables; the default lets `guest` (the tests' publisher) in.
    pub producers: String,
    /// Keys of the `[http]` section (e.g. `ops_listen = ...`).
    pub http: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            concurrency: 8,
            max_attempts: 2,
            lease_seconds: 60,
            instance_id: false,
            per_host: 4,
            scheduler: "heartbeat_tick = \"\"".into(),
            tls: None,
            extra: String::new(),
            http: String::new(),
            producers: "[[amqp.producer]]\nuser = \"guest\"\nscopes = [\"credentials:manage\"]\n"
                .into(),
        }
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(opts: Options) -> TestApp {
        testbed();
        let id = unique();
        let dir = PathBuf::from(FILES_DIR)
            .join("it")
            .join(format!("rotor-it-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let db_name = format!("rotor_it_{id}");
        runtime_role();
        psql("test", &format!("CREATE DATABASE {db_name}"));
        let token = strong_token("admin");
        let view_token = strong_token("view");
        write_private(&dir.join("admin.token"), &token);
        write_private(&dir.join("view.token"), &view_token);
        let (exchange, queue, dead_queue) = (
            format!("rotor-{id}"),
            format!("rotor.requests-{id}"),
            format!("rotor.requests.dead-{id}"),
        );
        let config = dir.join("rotor.toml");
        let (pg_url, amqp_url, http_tls, ca_lines) = match &opts.tls {
            Some(ca) => {
                let bed = tls_bed();
                (
                    format!("postgres://postgres@127.0.0.1:5432/{db_name}?sslmode=verify-full"),
                    format!("amqps://guest:guest@127.0.0.1:{}/%2f", bed.amqps_port),
                    format!(
                        "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
                        bed.cert, bed.key
                    ),
                    format!("ca_file = \"{ca}\"\n"),
                )
            }
            None => (
                format!("{PG}/{db_name}"),
                AMQP_URL.to_string(),
                String::new(),
                String::new(),
            ),
        };
        std::fs::write(
            &config,
            format!(
                r#"[database]
url = "{pg_url}"
max_connections = 5
{ca_lines}[amqp]
url = "{amqp_url}"
{ca_lines}exchange = "{exchange}"
queue = "{queue}"
dead_letter_exchange = "rotor.dlx-{id}"
dead_letter_queue = "{dead_queue}"
events_exchange = "rotor.events-{id}"
max_message_bytes = 65536
[http]
listen = "127.0.0.1:0"
{http_tls}{http_extra}
[[http.token]]
name = "test-admin"
token_file = "admin.token"
scopes = ["admin"]
[[http.token]]
name = "test-viewer"
token_file = "view.token"
scopes = ["credentials:view"]
[vault]
master_key_file = "master.key"
[worker]
concurrency = {concurrency}
retry_base_ms = 200
max_attempts = {max_attempts}
lease_seconds = {lease_seconds}
poll_interval_ms = 500
per_host = {per_host}
{instance}
[scheduler]
{scheduler}
[ssh]
io_timeout_ms = 20000
[log]
format = "json"
filter = "debug,sqlx=warn,lapin=warn,hyper=warn,tower=warn,rustls=warn"
[inventory]
allowed_dir = "{FILES_DIR}"
{producers}
{extra}
"#,
                producers = opts.producers,
                http_extra = opts.http,
                extra = opts.extra,
                concurrency = opts.concurrency,
                max_attempts = opts.max_attempts,
                lease_seconds = opts.lease_seconds,
                per_host = opts.per_host,
                scheduler = opts.scheduler,
                instance = if opts.instance_id {
                    format!("instance_id = \"it-{id}\"")
                } else {
                    String::new()
                },
            ),
        )
        .unwrap();
        let mut app = TestApp {
            id,
            dir,
            config,
            db_name,
            http: String::new(),
            token,
            view_token,
            exchange,
            dead_queue,
            ops: None,
            run_args: Vec::new(),
            client: match &opts.tls {
                Some(ca) => {
                    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
                    reqwest::Client::builder()
                        .add_root_certificate(ca)
                        .build()
                        .unwrap()
                }
                None => reqwest::Client::new(),
            },
            child: None,
            siblings: Vec::new(),
            logs: Arc::new(Mutex::new(Vec::new())),
            faketime: None,
        };
        let out = app.cli(&[
            "keygen",
            "--out",
            app.dir.join("master.key").to_str().unwrap(),
        ]);
        assert_eq!(out.code, 0, "keygen: {}", out.stderr);
        app.start().await;
        app
    }

    /// Starts `rotor run` and waits until its HTTP API and AMQP intake are up.
    pub async fn start(&mut self) {
        self.start_with_env(&[]).await
    }

    pub async fn start_with_env(&mut self, env: &[(&str, &str)]) {
        assert!(
            cfg!(feature = "failpoints") || !env.iter().any(|(k, _)| *k == "ROTOR_FAILPOINT"),
            "this test injects crashes: run it with --features failpoints (scripts/test.sh does)"
        );
        // The daemon says where it serves through systemd's notify protocol: READY=1 with
        // STATUS=serving HTTP[S] on ADDR[, ops on ADDR], the addresses it bound.
        let notify_path = self.dir.join(format!("notify-{}.sock", unique()));
        let notify =
            std::os::unix::net::UnixDatagram::bind(&notify_path).expect("bind the notify socket");
        notify.set_nonblocking(true).unwrap();
        let mut command = Command::new(ROTOR);
        if let Some(offset) = &self.faketime {
            assert!(
                std::path::Path::new(LIBFAKETIME).exists(),
                "{LIBFAKETIME} is missing: run scripts/testbed.sh up (it installs faketime)"
            );
            command
                .env("LD_PRELOAD", LIBFAKETIME)
                .env("FAKETIME", offset)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        let mut child = command
            .args(["--config", self.config.to_str().unwrap(), "run"])
            .args(&self.run_args)
            .env("NOTIFY_SOCKET", &notify_path)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rotor run");
        let stderr = child.stderr.take().unwrap();
        let logs = self.logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                logs.lock().unwrap().push(line);
            }
        });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut buf = [0u8; 512];
        let addr = loop {
            if let Ok(n) = notify.recv(&mut buf) {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                let status = message
                    .lines()
                    .find_map(|l| l.strip_prefix("STATUS=serving "))
                    .map(String::from);
                if let (true, Some(status)) = (message.lines().any(|l| l == "READY=1"), status) {
                    break status;
                }
                continue;
            }
            self.check_alive(deadline);
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let _ = std::fs::remove_file(&notify_path);
        // "HTTPS on 127.0.0.1:1234, ops on 127.0.0.1:5678"
        let (main, ops) = match addr.split_once(", ops on ") {
            Some((main, ops)) => (main.to_string(), Some(format!("http://{ops}"))),
            None => (addr, None),
        };
        let (scheme, at) = main
            .split_once(" on ")
            .expect("STATUS names the scheme and address");
        self.http = format!("{}://{at}", scheme.to_lowercase());
        self.ops = ops;
        let health = self.ops.clone().unwrap_or_else(|| self.http.clone());
        // Ready for requests once /readyz says the database and the broker (intake) are up.
        let client = self.client.clone();
        loop {
            if let Ok(r) = client.get(format!("{health}/readyz")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            self.check_alive(deadline);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The running daemon's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Panics with the daemon's log when it exited or `deadline` passed.
    fn check_alive(&mut self, deadline: Instant) {
        if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
            panic!(
                "rotor run exited with {status}:\n{}",
                self.logs().join("\n")
            );
        }
        assert!(
            Instant::now() < deadline,
            "rotor run did not come up:\n{}",
            self.logs().join("\n")
        );
    }

    /// Starts another `rotor run` on the same configuration (database, broker, queue).
    pub async fn start_sibling(&mut self) {
        let main = self.child.take();
        self.start_with_env(&[]).await;
        let sibling = std::mem::replace(&mut self.child, main).expect("started");
        self.siblings.push(sibling);
    }

    /// Waits for the daemon to exit by itself (e.g. killed at a failpoint).
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.as_mut().expect("running").try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "rotor did not exit within {timeout:?}:\n{}",
                self.logs().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILLs the daemon now.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (e.g. "CONT") to the main daemon.
    pub fn signal(&self, signal: &str) {
        unsafe_kill(self.child.as_ref().expect("running").id(), signal);
    }

    /// Waits for a log line containing `text` among the lines after the first `from`.
    pub async fn wait_log(&self, from: usize, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self
            .logs
            .lock()
            .unwrap()
            .iter()
            .skip(from)
            .any(|l| l.contains(text))
        {
            assert!(
                Instant::now() < deadline,
                "no log line with `{text}`:\n{}",
                self.logs().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Runs the rotor CLI against this app's configuration.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_stdin(args, None)
    }

    pub fn cli_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        self.run_cli(args, stdin, &[])
    }

    /// The CLI with extra environment (e.g. `ROTOR_<SECTION>__<KEY>` overrides).
    pub fn cli_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.run_cli(args, None, env)
    }

    fn run_cli(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
        let mut child = Command::new(ROTOR)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .envs(env.iter().copied())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Writes an inventory with one LINUX resource on the test sshd and applies it.
    /// Each account's initial password is onboarded from a file.
    pub fn apply_inventory(
        &self,
        resource_id: &str,
        host_key: &str,
        accounts: &[&Account],
    ) -> Output {
        self.apply_inventory_at(resource_id, testbed().port, host_key, accounts)
    }

    /// The same, for a resource whose sshd listens on `port`.
    pub fn apply_inventory_at(
        &self,
        resource_id: &str,
        port: u16,
        host_key: &str,
        accounts: &[&Account],
    ) -> Output {
        let text = resource_toml(resource_id, port, host_key) + &self.accounts_toml(accounts, "");
        let file = self.dir.join(format!("inventory-{resource_id}.toml"));
        std::fs::write(&file, text).unwrap();
        self.cli(&["resource", "apply", "-f", file.to_str().unwrap()])
    }

    /// `[[resource.account]]` entries, each onboarding its password from a file, with
    /// `extra` lines (e.g. `auto_rotate_days = 1`).
    pub fn accounts_toml(&self, accounts: &[&Account], extra: &str) -> String {
        let mut text = String::new();
        for a in accounts {
            let pw_file = self.dir.join(format!("{}.pw", a.username));
            write_private(&pw_file, &format!("{}\n", a.password));
            text.push_str(&format!(
                "\n[[resource.account]]\nusername = \"{}\"\naccount_type = \"SERVICE\"\npassword_file = \"{}\"\n{extra}",
                a.username,
                pw_file.display()
            ));
        }
        text
    }

    /// A consumer of this daemon's events matching `binding` (e.g. `credential.#`); keep
    /// the connection alive while reading.
    pub async fn events(&self, binding: &str) -> (Connection, lapin::Consumer) {
        use lapin::options::QueueBindOptions;
        let conn = self.amqp().await;
        let ch = conn.create_channel().await.unwrap();
        let q = ch
            .queue_declare(
                "",
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        ch.queue_bind(
            q.name().as_str(),
            &format!("rotor.events-{}", self.id),
            binding,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        let consumer = ch
            .basic_consume(
                q.name().as_str(),
                "",
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        (conn, consumer)
    }

    pub async fn amqp(&self) -> Connection {
        let props = ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio);
        Connection::connect(AMQP_URL, props)
            .await
            .expect("connect to RabbitMQ")
    }

    /// Publishes each (message_id, body) as `credentials.update`, persistent, with
    /// publisher confirms; reconnects and publishes again whatever was not confirmed
    /// (the broker may restart meanwhile). Returns the confirmed message ids.
    pub async fn publish_confirmed(&self, messages: &[(String, Vec<u8>)]) -> Vec<String> {
        self.publish_confirmed_paced(messages, Duration::ZERO)
            .await
            .0
    }

    /// The same, waiting `pace` after each confirm; also returns how many times the
    /// publisher had to connect again.
    pub async fn publish_confirmed_paced(
        &self,
        messages: &[(String, Vec<u8>)],
        pace: Duration,
    ) -> (Vec<String>, usize) {
        let mut confirmed = Vec::new();
        let mut next = 0;
        let mut connects = 0;
        let deadline = Instant::now() + Duration::from_secs(600);
        while next < messages.len() {
            assert!(
                Instant::now() < deadline,
                "could not publish within 10 minutes"
            );
            connects += 1;
            let props = ConnectionProperties::default()
                .with_executor(tokio_executor_trait::Tokio::current())
                .with_reactor(tokio_reactor_trait::Tokio);
            let Ok(conn) = Connection::connect(AMQP_URL, props).await else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let Ok(ch) = conn.create_channel().await else {
                continue;
            };
            if ch
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .is_err()
            {
                continue;
            }
            while next < messages.len() {
                let (id, body) = &messages[next];
                let props = BasicProperties::default()
                    .with_message_id(id.clone().into())
                    .with_user_id("guest".into())
                    .with_delivery_mode(2);
                let sent = ch
                    .basic_publish(
                        &self.exchange,
                        "credentials.update",
                        BasicPublishOptions::default(),
                        body,
                        props,
                    )
                    .await;
                let ok = match sent {
                    Ok(confirm) => matches!(confirm.await, Ok(c) if c.is_ack()),
                    Err(_) => false,
                };
                if !ok {
                    break; // reconnect and publish this one again
                }
                confirmed.push(id.clone());
                next += 1;
                if !pace.is_zero() {
                    tokio::time::sleep(pace).await;
                }
            }
            let _ = conn.close(200, "bye").await;
        }
        (confirmed, connects - 1)
    }

    /// Polls until no task is PENDING or IN_PROGRESS.
    pub async fn wait_all_tasks(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let open = psql_value(
                &self.db_name,
                "SELECT count(*) FROM tasks WHERE status IN ('PENDING', 'IN_PROGRESS')",
            );
            if open == "0" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{open} tasks still open after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Publishes a message (confirmed) with a fresh message_id and reply queue; returns
    /// the daemon's reply (a Task JSON).
    /// A request over AMQP (`credentials.update`) and the task it made, once it ended
    /// (at most 90 s).
    pub async fn request(&self, body: &[u8]) -> Value {
        let reply = self.publish_and_reply("credentials.update", body).await;
        self.wait_task(reply["id"].as_str().unwrap(), Duration::from_secs(90))
            .await
    }

    pub async fn publish_and_reply(&self, routing_key: &str, body: &[u8]) -> Value {
        self.publish_with_id(routing_key, body, &uuid::Uuid::new_v4().to_string())
            .await
    }

    /// The same with a given message_id (the idempotency key).
    pub async fn publish_with_id(&self, routing_key: &str, body: &[u8], msg_id: &str) -> Value {
        let conn = self.amqp().await;
        let ch = conn.create_channel().await.unwrap();
        let reply = ch
            .queue_declare(
                "",
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let mut replies = ch
            .basic_consume(
                reply.name().as_str(),
                "",
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let msg_id = msg_id.to_string();
        let props = BasicProperties::default()
            .with_message_id(msg_id.clone().into())
            .with_user_id("guest".into())
            .with_correlation_id(msg_id.clone().into())
            .with_reply_to(reply.name().clone());
        let confirm = ch
            .basic_publish(
                &self.exchange,
                routing_key,
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(confirm.is_ack());
        let d = tokio::time::timeout(Duration::from_secs(30), replies.next())
            .await
            .expect("a reply within 30 s")
            .unwrap()
            .unwrap();
        assert_eq!(
            d.properties.correlation_id().as_ref().map(|c| c.as_str()),
            Some(msg_id.as_str())
        );
        let _ = conn.close(200, "bye").await;
        serde_json::from_slice(&d.data).unwrap()
    }

    /// Publishes one message on this daemon's exchange as the broker user of `url`, with
    /// the `user_id` and `reply_to` given; Ok when the broker confirmed it, Err with the
    /// broker's reason when it refused it (e.g. a `user_id` not the connection's user).
    pub async fn publish_as(
        &self,
        url: &str,
        routing_key: &str,
        body: &[u8],
        user_id: Option<&str>,
        reply_to: Option<&str>,
    ) -> Result<(), String> {
        let props = ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio);
        let conn = Connection::connect(url, props)
            .await
            .map_err(|e| e.to_string())?;
        let ch = conn.create_channel().await.unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let mut props =
            BasicProperties::default().with_message_id(uuid::Uuid::new_v4().to_string().into());
        if let Some(u) = user_id {
            props = props.with_user_id(u.into());
        }
        if let Some(r) = reply_to {
            props = props.with_reply_to(r.into());
        }
        let result = match ch
            .basic_publish(
                &self.exchange,
                routing_key,
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await
        {
            Ok(confirm) => match confirm.await {
                Ok(c) if c.is_ack() => Ok(()),
                Ok(c) => Err(format!("not confirmed: {c:?}")),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        };
        let _ = conn.close(200, "bye").await;
        result
    }

    /// The next dead-lettered message.
    pub async fn next_dead_letter(&self) -> DeadLetter {
        let conn = self.amqp().await;
        let ch = conn.create_channel().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(m) = ch
                .basic_get(&self.dead_queue, BasicGetOptions { no_ack: true })
                .await
                .unwrap()
            {
                let headers: BTreeMap<String, String> = m
                    .delivery
                    .properties
                    .headers()
                    .clone()
                    .unwrap_or_default()
                    .inner()
                    .iter()
                    .map(|(k, v)| {
                        let text = match v {
                            AMQPValue::LongString(s) => s.to_string(),
                            other => format!("{other:?}"),
                        };
                        (k.to_string(), text)
                    })
                    .collect();
                let error = headers
                    .get("x-rotor-error")
                    .expect("dead letter carries x-rotor-error");
                let error = serde_json::from_str(error).unwrap();
                let _ = conn.close(200, "bye").await;
                return DeadLetter {
                    body: m.delivery.data.clone(),
                    error,
                    headers,
                };
            }
            assert!(
                Instant::now() < deadline,
                "nothing dead-lettered within 20 s; the daemon logged:\n{}",
                self.logs().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.client.get(format!("{}{path}", self.http));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Any HTTP request with a JSON body; returns (status, JSON or text).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(method, format!("{}{path}", self.http));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// A counter or gauge from `/metrics` (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        let at = self.ops.clone().unwrap_or_else(|| self.http.clone());
        let text = self
            .client
            .get(format!("{at}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0.0)
    }

    /// Waits until this process has run `n` more scheduler ticks.
    pub async fn wait_ticks(&self, n: u32) {
        let start = self.metric("rotor_scheduler_ticks_total").await;
        let deadline = Instant::now() + Duration::from_secs(30 + 5 * u64::from(n));
        while self.metric("rotor_scheduler_ticks_total").await < start + f64::from(n) {
            assert!(
                Instant::now() < deadline,
                "the scheduler did not tick {n} times:\n{}",
                self.logs().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Writes `text` as an inventory file and applies it.
    pub fn apply_inventory_text(&self, name: &str, text: &str) -> Output {
        let file = self.dir.join(format!("inventory-{name}.toml"));
        std::fs::write(&file, text).unwrap();
        self.cli(&["resource", "apply", "-f", file.to_str().unwrap()])
    }

    /// Polls the task over HTTP until it ends.
    pub async fn wait_task(&self, id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, task) = self
                .get(&format!("/v1/credentials/tasks/{id}"), Some(&self.token))
                .await;
            assert_eq!(status, 200, "{task}");
            if ["SUCCESSFUL", "FAILED", "CANCELLED"].contains(&task["status"].as_str().unwrap()) {
                return task;
            }
            assert!(
                Instant::now() < deadline,
                "task {id} did not end in {timeout:?}: {task:#}\n{}",
                self.logs().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn reveal(&self, resource: &str, username: &str) -> String {
        let out = self.cli(&[
            "credential",
            "reveal",
            "--resource",
            resource,
            "--username",
            username,
        ]);
        assert_eq!(out.code, 0, "reveal: {}", out.stderr);
        assert_eq!(
            out.stdout.lines().count(),
            1,
            "reveal prints the password alone"
        );
        out.stdout.trim_end_matches('\n').to_string()
    }

    /// Asserts no secret appears in anything this daemon logged.
    pub fn assert_logs_free_of(&self, secrets: &[&str]) {
        let logs = self.logs();
        assert!(!logs.is_empty());
        for s in secrets {
            assert!(
                !logs.iter().any(|l| l.contains(s)),
                "a password appears in the logs"
            );
        }
    }

    pub fn stop(&mut self) {
        for mut sibling in self.siblings.drain(..) {
            let _ = sibling.kill();
            let _ = sibling.wait();
        }
        if let Some(mut child) = self.child.take() {
            unsafe_kill(child.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn unsafe_kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status();
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop();
        // Never panic in drop: a second panic would abort and orphan other tests' daemons.
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc"])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.db_name
            ))
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
        delete_amqp_names(&self.id);
    }
}

fn delete_amqp_names(id: &str) {
    let id = id.to_string();
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let props = ConnectionProperties::default()
                .with_executor(tokio_executor_trait::Tokio::current())
                .with_reactor(tokio_reactor_trait::Tokio);
            let Ok(conn) = Connection::connect(AMQP_URL, props).await else {
                return;
            };
            let Ok(ch) = conn.create_channel().await else {
                return;
            };
            for q in [
                format!("rotor.requests-{id}"),
                format!("rotor.requests.dead-{id}"),
                format!("rotor.requests-{id}.quarantine"),
            ] {
                let _ = ch.queue_delete(&q, Default::default()).await;
            }
            for x in [
                format!("rotor-{id}"),
                format!("rotor.dlx-{id}"),
                format!("rotor.events-{id}"),
            ] {
                let _ = ch.exchange_delete(&x, Default::default()).await;
            }
            let _ = conn.close(200, "bye").await;
        })
    })
    .join();
}

/// An inventory `[[resource]]` of type LINUX on 127.0.0.1:`port` with the test bed's
/// admin (linux-chpasswd under sudo); accounts are appended by the caller.
/// A refused request as rotor dead-lettered it.
pub struct DeadLetter {
    pub body: Vec<u8>,
    /// `x-rotor-error`, a VCF Error.
    pub error: Value,
    /// Every header, as text.
    pub headers: BTreeMap<String, String>,
}

pub fn resource_toml(resource_id: &str, port: u16, host_key: &str) -> String {
    resource_toml_on("linux-chpasswd", resource_id, port, host_key)
}

/// The same resource with another platform (it keeps the admin, which reconcile uses).
pub fn resource_toml_on(platform: &str, resource_id: &str, port: u16, host_key: &str) -> String {
    let bed = testbed();
    format!(
        r#"[[resource]]
id = "{resource_id}"
name = "{resource_id}.test"
type = "LINUX"
address = "127.0.0.1"
port = {port}
host_keys = ["{host_key}"]
platform = "{platform}"

[resource.admin]
username = "{admin}"
private_key_file = "{key}"
sudo = true
"#,
        admin = bed.admin,
        key = bed.admin_key
    )
}

pub fn psql(db: &str, sql: &str) {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            sql,
        ])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs SQL in the app's database and returns the single value printed.
pub fn psql_value(db: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            db,
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A CredentialsUpdateSpec for one LINUX resource: `op` with the given credentials.
pub fn spec(op: &str, resource: &str, creds: Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"operationType": op, "elements": [{"resourceId": resource, "resourceType": "LINUX", "credentials": creds}]})).unwrap()
}

/// The credential `username` as `GET /v1/credentials` lists it.
pub async fn credential(app: &TestApp, username: &str) -> Value {
    let (status, page) = app
        .get("/v1/credentials?pageSize=100", Some(&app.token))
        .await;
    assert_eq!(status, 200, "{page}");
    page["elements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["username"] == username)
        .cloned()
        .expect("credential listed")
}

pub fn rotate_spec(resource: &str, usernames: &[&str]) -> Vec<u8> {
    let creds: Vec<Value> = usernames
        .iter()
        .map(|u| serde_json::json!({"username": u}))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "operationType": "ROTATE",
        "elements": [{"resourceId": resource, "resourceType": "LINUX", "credentials": creds}]
    }))
    .unwrap()
}

/// Another sshd on its own port, state dir and host key: a second "host" (same
/// accounts, as they share this machine). Stopped and removed when dropped.
pub struct ExtraSshd {
    pub port: u16,
    pub host_key_fpr: String,
    dir: PathBuf,
}

impl ExtraSshd {
    pub fn start() -> ExtraSshd {
        Self::start_with(&[])
    }

    /// One whose own PAM service locks an account after `deny` refused logins
    /// (pam_faillock), as a hardened target does.
    pub fn start_faillock(deny: u32) -> ExtraSshd {
        Self::start_with(&[("ROTOR_TESTBED_FAILLOCK_DENY", &deny.to_string())])
    }

    /// What `faillock` holds for `username` on this sshd: one line per counted refusal.
    pub fn faillock(&self, username: &str) -> Vec<String> {
        let out = Command::new("faillock")
            .args([
                "--dir",
                self.dir.join("faillock").to_str().unwrap(),
                "--user",
                username,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "faillock: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .skip(2)
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect()
    }

    /// One that takes passwords only by keyboard-interactive (`PasswordAuthentication
    /// no`), as ESXi and many appliances do.
    pub fn start_keyboard_interactive() -> ExtraSshd {
        Self::start_with(&[("ROTOR_TESTBED_PASSWORD_AUTH", "no")])
    }

    /// One set up as ESXi's sshd is: passwords by keyboard-interactive only, and a PAM
    /// service of its own that locks an account after 5 refused logins.
    pub fn start_esxi() -> ExtraSshd {
        Self::start_with(&[
            ("ROTOR_TESTBED_PASSWORD_AUTH", "no"),
            ("ROTOR_TESTBED_FAILLOCK_DENY", "5"),
        ])
    }

    /// A password login on this sshd by the OpenSSH client.
    pub fn login(&self, username: &str, password: &str) -> bool {
        ssh_login_at(self.port, username, password)
    }

    fn start_with(env: &[(&str, &str)]) -> ExtraSshd {
        testbed();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("rotor-it-sshd-{}", unique()));
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/testbed.sh"))
            .arg("up")
            .env("ROTOR_TESTBED_DIR", &dir)
            .env("ROTOR_TESTBED_PORT", port.to_string())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "second sshd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let fpr = text
            .lines()
            .find_map(|l| l.strip_prefix("ROTOR_TESTBED_HOST_KEY_FPR="))
            .unwrap()
            .to_string();
        ExtraSshd {
            port,
            host_key_fpr: fpr,
            dir,
        }
    }

    /// Starts it again on the same port with the same host key.
    pub fn restart(&self) {
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/testbed.sh"))
            .arg("up")
            .env("ROTOR_TESTBED_DIR", &self.dir)
            .env("ROTOR_TESTBED_PORT", self.port.to_string())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "restart second sshd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn stop(&self) {
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/testbed.sh"))
            .arg("down")
            .env("ROTOR_TESTBED_DIR", &self.dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "stop second sshd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for ExtraSshd {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo_root().join("scripts/testbed.sh"))
            .arg("down")
            .env("ROTOR_TESTBED_DIR", &self.dir)
            .stdin(Stdio::null())
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
