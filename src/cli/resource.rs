//! `rotor resource apply|list|purge`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::output::print_table;
use crate::access::Requester;
use crate::config::Settings;
use crate::inventory;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upsert resources and accounts from an inventory file (idempotent).
    Apply {
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
    },
    /// List resources (deleted ones marked).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a deleted resource, its accounts and every stored password version for good (root only).
    Purge {
        #[arg(value_name = "ID")]
        id: String,
    },
}

pub async fn run(settings: &Settings, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Apply { file } => {
            let mut inv = inventory::read(&file)?;
            let policies = settings.policies()?;
            inventory::validate(&inv, &policies, |t| settings.default_policy_for_type(t))?;
            inventory::check_files(&mut inv, &settings.inventory.allowed_dir)?;
            let needs_key = inv
                .resource
                .iter()
                .any(|r| r.account.iter().any(|a| a.password_file.is_some()));
            let key = if needs_key {
                Some(crate::vault::MasterKey::load(&settings.vault)?)
            } else {
                None
            };
            let pool = crate::db::connect(&settings.database).await?;
            let schedule = settings.scheduler.schedule()?;
            let who = Requester::os_user();
            let applier = inventory::Applier {
                who: &who,
                may_retarget: true,
            };
            let report = inventory::apply(
                &pool,
                key.as_ref(),
                &inv,
                |t| settings.default_policy_for_type(t),
                &schedule,
                &applier,
            )
            .await?;
            if report.is_empty() {
                println!("no changes");
            }
            for line in report {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::List { json } => {
            let pool = crate::db::connect(&settings.database).await?;
            let rows = sqlx::query!(
                r#"SELECT r.id, r.name, r.type, r.address, r.port, r.platform, r.policy, r.deleted_at,
                          (SELECT count(*) FROM credentials c WHERE c.resource_id = r.id) AS "accounts!"
                     FROM resources r ORDER BY r.id"#
            )
            .fetch_all(&pool)
            .await?;
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|r| {
                        serde_json::json!({"id": r.id, "name": r.name, "type": r.r#type, "address": r.address, "port": r.port,
                                           "platform": r.platform, "policy": r.policy, "accounts": r.accounts,
                                           "deleted": r.deleted_at})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let table: Vec<Vec<String>> = rows
                    .into_iter()
                    .map(|r| {
                        let deleted = r
                            .deleted_at
                            .map(|d| d.format("%Y-%m-%d").to_string())
                            .unwrap_or_else(|| "-".into());
                        vec![
                            r.id,
                            r.r#type,
                            format!("{}:{}", r.address, r.port),
                            r.platform,
                            r.policy,
                            r.accounts.to_string(),
                            deleted,
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "ID", "TYPE", "ADDRESS", "PLATFORM", "POLICY", "ACCOUNTS", "DELETED",
                    ],
                    &table,
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Purge { id } => {
            if !crate::access::is_root() {
                anyhow::bail!("purge removes stored passwords for good and runs as root only");
            }
            let pool = crate::db::connect(&settings.database).await?;
            let versions = inventory::purge(&pool, &id, &Requester::os_user()).await?;
            println!("resource {id} purged: {versions} stored password versions removed");
            Ok(ExitCode::SUCCESS)
        }
    }
}
