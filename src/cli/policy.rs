//! `rotor policy generate|check`.

use std::io::BufRead;
use std::process::ExitCode;

use clap::Subcommand;
use secrecy::{ExposeSecret, SecretString};

use crate::config::Settings;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print N passwords of the policy, one a line.
    Generate {
        name: String,
        #[arg(short = 'n', default_value_t = 1)]
        n: usize,
    },
    /// Read one password from stdin; exit 0 if it complies, else print every broken rule.
    Check { name: String },
}

pub fn run(settings: &Settings, command: Command) -> anyhow::Result<ExitCode> {
    let policies = settings.policies()?;
    let get = |name: &str| {
        policies.get(name).ok_or_else(|| {
            anyhow::anyhow!("no policy `{name}`; known: {}", policies.keys().cloned().collect::<Vec<_>>().join(", "))
        })
    };
    match command {
        Command::Generate { name, n } => {
            let policy = get(&name)?;
            for _ in 0..n {
                println!("{}", policy.generate().expose_secret());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { name } => {
            let policy = get(&name)?;
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            let password = SecretString::from(line.trim_end_matches(['\n', '\r']).to_owned());
            let violations = policy.check(&password);
            if violations.is_empty() {
                println!("complies with policy {name}");
                return Ok(ExitCode::SUCCESS);
            }
            for v in violations {
                println!("{}: {}", v.code, v.message);
            }
            Ok(ExitCode::from(1))
        }
    }
}
