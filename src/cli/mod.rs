//! The command line (SPEC section 2). Each command group has its own file.

mod credential;
mod enqueue;
mod hosts;
mod output;
mod policy;
mod preflight;
mod resource;
mod rotate;
mod scheduler;
mod task;
mod vault;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "rotor",
    version,
    about = "Password rotation worker and scheduler"
)]
pub struct Cli {
    /// Configuration file (default: /etc/rotor/rotor.toml when present).
    #[arg(long, global = true, env = "ROTOR_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: AMQP intake, HTTP API, workers, scheduler.
    Run {
        /// Do not apply pending database migrations at start.
        #[arg(long)]
        no_migrate: bool,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Write a new random master key (mode 0600).
    Keygen {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Resources (target hosts) in the inventory.
    #[command(subcommand)]
    Resource(resource::Command),
    /// Credentials (accounts on resources).
    #[command(subcommand)]
    Credential(credential::Command),
    /// Publish requests on AMQP (a producer helper).
    #[command(subcommand)]
    Enqueue(enqueue::Command),
    /// Tasks: show, list, watch.
    #[command(subcommand)]
    Task(task::Command),
    /// Password policies: generate, check.
    #[command(subcommand)]
    Policy(policy::Command),
    /// The scheduler: one tick or heartbeat round by hand.
    #[command(subcommand)]
    Scheduler(scheduler::Command),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The vault's keyring: status, rekey.
    #[command(subcommand)]
    Vault(vault::Command),
    /// API users who log in with a password (`[[http.user]]`).
    #[command(subcommand)]
    User(UserCommand),
    /// Check, changing nothing, that every selected account can be rotated: the host
    /// answers, its key is pinned, the admin logs in and may run chpasswd, the account
    /// exists, is not locked, and when its password expires. Exit 1 on any FAIL.
    Preflight(preflight::Command),
    /// Rotate many credentials in waves: a canary, then waves twice as large, stopped
    /// when failures pass --max-failures (what has not started is cancelled).
    Rotate(rotate::Command),
    /// rotor's admin SSH key pair.
    #[command(subcommand, name = "admin-key")]
    AdminKey(hosts::AdminKey),
    /// Hosts: scan the keys one offers.
    #[command(subcommand)]
    Host(hosts::Host),
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Read a password from stdin and print its argon2id hash, for a `password_hash_file`.
    HashPassword,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the audit log's hash chain; exit 1 naming the first bad entry.
    Verify,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Load and validate the configuration, its secrets files and policies.
    Check,
}

/// Parses the command line, runs the command, maps errors to one line and an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rotor: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn load_settings(cli_config: &Option<PathBuf>) -> anyhow::Result<Settings> {
    Ok(config::load(cli_config.as_deref())?)
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = load_settings(&cli.config)?;
    if matches!(cli.command, Command::Run { .. }) {
        crate::telemetry::init(&settings.log);
    } else {
        crate::telemetry::init(&config::LogSettings {
            filter: "warn,sqlx=error,lapin=off".into(),
            ..Default::default()
        });
    }
    match cli.command {
        Command::Run { no_migrate } => {
            crate::app::run(settings, !no_migrate).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let pool = crate::db::connect(&settings.database).await?;
            crate::db::migrate(&pool).await?;
            println!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Check) => config_check(&settings, cli.config.as_deref()),
        Command::Keygen { out } => {
            let id = crate::vault::MasterKey::generate_file(&out)?;
            println!("wrote master key {} (key id {id})", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Resource(c) => resource::run(&settings, c).await,
        Command::Credential(c) => credential::run(&settings, c).await,
        Command::Enqueue(c) => enqueue::run(&settings, c).await,
        Command::Task(c) => task::run(&settings, c).await,
        Command::Policy(c) => policy::run(&settings, c),
        Command::Scheduler(c) => scheduler::run(&settings, c).await,
        Command::Vault(c) => vault::run(&settings, c).await,
        Command::User(UserCommand::HashPassword) => hash_password(),
        Command::Preflight(c) => preflight::run(&settings, c).await,
        Command::Rotate(c) => rotate::run(&settings, c).await,
        Command::AdminKey(c) => hosts::admin_key(c),
        Command::Host(c) => hosts::host(c),
        Command::Audit(AuditCommand::Verify) => {
            let pool = crate::db::connect(&settings.database).await?;
            match crate::audit::verify(&pool).await {
                Ok(v) => {
                    println!(
                        "audit log OK: {} entries; last hash {}",
                        v.entries,
                        v.head.as_deref().unwrap_or("-")
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(crate::audit::VerifyError::Broken(b)) => {
                    eprintln!("rotor: {b}");
                    Ok(ExitCode::from(1))
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// One line of stdin (the password, never an argument) to its PHC hash on stdout.
fn hash_password() -> anyhow::Result<ExitCode> {
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.chars().count() < 12 {
        eprintln!("rotor: the password must be at least 12 characters (read from stdin, one line)");
        return Ok(ExitCode::from(2));
    }
    println!(
        "{}",
        crate::ingress::http::hash_password(&secrecy::SecretString::from(password))
    );
    Ok(ExitCode::SUCCESS)
}

/// Settings already parsed and validated; now every secret must be readable too.
fn config_check(settings: &Settings, file: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    settings.database.connect_options()?;
    crate::broker::Link::from_settings(&settings.amqp)?;
    crate::ingress::http::load_tokens(&settings.http)?;
    let keyring = std::sync::Arc::new(crate::vault::MasterKey::load(&settings.vault)?);
    crate::ingress::http::Users::load(&settings.http, keyring.clone())?;
    println!(
        "master keys: {} (the first seals)",
        keyring.key_ids().join(", ")
    );
    let policies = settings.policies()?;
    let where_ = file
        .map(|f| f.display().to_string())
        .unwrap_or_else(|| "defaults and environment".into());
    println!(
        "configuration OK ({where_}): {} policies, {} HTTP tokens, {} API users",
        policies.len(),
        settings.http.token.len(),
        settings.http.user.len()
    );
    let dumps = if crate::hygiene::can_dump_core() {
        "ON: this process could be dumped"
    } else {
        "off (not dumpable, core limit 0)"
    };
    println!("core dumps: {dumps}");
    Ok(ExitCode::SUCCESS)
}
