//! `rotor preflight`: the pre-flight checks of SPEC section 8, changing nothing on the
//! targets. Exit status 1 when any check FAILs.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use crate::config::Settings;

use crate::engine::preflight::{self, Selection};
use crate::engine::Engine;

#[derive(Debug, Args)]
pub struct Command {
    /// Only this resource (repeatable).
    #[arg(long = "resource", value_name = "ID")]
    resources: Vec<String>,
    /// Only accounts with this username (repeatable).
    #[arg(long = "username", value_name = "U")]
    usernames: Vec<String>,
    /// Also log in with the stored password. A refusal counts toward the account's lockout.
    #[arg(long)]
    check_password: bool,
    /// Print `{"results": [...]}` as the HTTP API does.
    #[arg(long)]
    json: bool,
}

pub async fn run(settings: &Settings, command: Command) -> anyhow::Result<ExitCode> {
    let pool = crate::db::connect(&settings.database).await?;
    let key = Arc::new(crate::vault::MasterKey::load(&settings.vault)?);
    let engine = Engine::new(pool, key, settings)?;
    let all = vec!["%".to_string()];
    if !command.resources.is_empty() {
        let unknown = preflight::unknown_resources(&engine, &command.resources, &all).await?;
        if !unknown.is_empty() {
            anyhow::bail!("--resource: no resource {}", unknown.join(", "));
        }
    }
    let selection = Selection {
        resource_ids: (!command.resources.is_empty()).then_some(command.resources.as_slice()),
        usernames: (!command.usernames.is_empty()).then_some(command.usernames.as_slice()),
        credential_ids: None,
        resource_type: None,
        try_password: command.check_password,
        resource_patterns: all,
    };
    let results = preflight::run(&engine, &selection).await?;
    if command.json {
        println!("{}", serde_json::json!({ "results": results }));
    } else if results.is_empty() {
        println!("no account matches");
    } else {
        for account in &results {
            println!("{} / {}", account.resource_id, account.username);
            for check in &account.checks {
                println!(
                    "  {:<8} {:<17} {}",
                    check.status.to_string(),
                    check.name.to_string(),
                    check.message
                );
            }
        }
    }
    let failed = results.iter().filter(|r| r.failed()).count();
    if !command.json {
        eprintln!("{} account(s) checked, {failed} with a FAIL", results.len());
    }
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
