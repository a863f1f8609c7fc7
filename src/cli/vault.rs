//! `rotor vault rekey|status`: the keyring's state, and moving every secret to its newest key.

use std::process::ExitCode;

use clap::Subcommand;

use super::output::print_table;
use crate::config::Settings;
use crate::vault::{rekey, MasterKey};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Re-encrypt every stored password under the first of `master_key_files`; resumable, online.
    Rekey {
        /// Rows per transaction.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(i64).range(1..=100_000))]
        batch: i64,
    },
    /// Stored passwords per key id (a key file may go once it holds none).
    Status,
}

pub async fn run(settings: &Settings, command: Command) -> anyhow::Result<ExitCode> {
    let key = MasterKey::load(&settings.vault)?;
    let pool = crate::db::connect(&settings.database).await?;
    match command {
        Command::Rekey { batch } => {
            println!(
                "re-encrypting under key {} (keyring: {})",
                key.key_id(),
                key.key_ids().join(", ")
            );
            let done = rekey::rekey(&pool, &key, batch, |so_far| {
                println!(
                    "  {} versions, {} supplied passwords so far",
                    so_far.versions, so_far.supplied
                );
            })
            .await?;
            if !done.unopenable.is_empty() {
                for line in &done.unopenable {
                    eprintln!("rotor: not re-encrypted: {line}");
                }
                println!(
                    "{} versions and {} supplied passwords re-encrypted; some left (above)",
                    done.versions, done.supplied
                );
                return Ok(ExitCode::from(1));
            }
            println!("done: {} versions and {} supplied passwords re-encrypted; none left under other keys", done.versions, done.supplied);
            Ok(ExitCode::SUCCESS)
        }
        Command::Status => {
            let ids = key.key_ids();
            let sealing = crate::vault::sealing::current(&mut *pool.acquire().await?).await?;
            let rows: Vec<Vec<String>> = rekey::status(&pool)
                .await?
                .into_iter()
                .map(|(id, versions, supplied)| {
                    let role = match (
                        sealing.as_deref() == Some(id.as_str()),
                        ids.contains(&id.as_str()),
                    ) {
                        (true, _) => "seals",
                        (false, true) => "loaded",
                        (false, false) => "NOT LOADED",
                    };
                    vec![
                        id,
                        versions.to_string(),
                        supplied.to_string(),
                        role.to_string(),
                    ]
                })
                .collect();
            print_table(&["KEY ID", "VERSIONS", "SUPPLIED", "KEYRING"], &rows);
            if let Some(s) = &sealing {
                println!("sealing key (for every process): {s}");
            }
            for (i, id) in ids.iter().enumerate() {
                if sealing.as_deref() != Some(*id) && !rows.iter().any(|r| r[0] == *id) {
                    println!("key {id} (master_key_files[{i}]) holds nothing: its file may go");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
