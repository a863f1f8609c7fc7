//! `rotor resource apply|list`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::output::print_table;
use crate::config::Settings;
use crate::inventory;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upsert resources and accounts from an inventory file (idempotent).
    Apply {
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
    },
    /// List resources.
    List {
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(settings: &Settings, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Apply { file } => {
            let inv = inventory::read(&file)?;
            let policies = settings.policies()?;
            inventory::validate(&inv, &policies, |t| settings.default_policy_for_type(t))?;
            let needs_key = inv.resource.iter().any(|r| r.account.iter().any(|a| a.password_file.is_some()));
            let key = if needs_key { Some(crate::vault::MasterKey::load(&settings.vault)?) } else { None };
            let pool = crate::db::connect(&settings.database).await?;
            let schedule = settings.scheduler.schedule()?;
            let report = inventory::apply(&pool, key.as_ref(), &inv, |t| settings.default_policy_for_type(t), &schedule).await?;
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
                r#"SELECT r.id, r.name, r.type, r.address, r.port, r.platform, r.policy,
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
                                           "platform": r.platform, "policy": r.policy, "accounts": r.accounts})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let table: Vec<Vec<String>> = rows
                    .into_iter()
                    .map(|r| {
                        vec![r.id, r.r#type, format!("{}:{}", r.address, r.port), r.platform, r.policy, r.accounts.to_string()]
                    })
                    .collect();
                print_table(&["ID", "TYPE", "ADDRESS", "PLATFORM", "POLICY", "ACCOUNTS"], &table);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
