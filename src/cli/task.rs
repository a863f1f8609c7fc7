//! `rotor task show|list|watch`.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use uuid::Uuid;

use super::output::{print_table, time_or_dash};
use crate::config::Settings;
use crate::engine::model::{StageStatus, TaskStatus};
use crate::engine::view;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a task as JSON.
    Show { id: Uuid },
    /// List tasks, newest first.
    List {
        #[arg(long)]
        status: Option<TaskStatus>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Follow a task's stages until it ends; exit 0 on SUCCESSFUL, 1 otherwise.
    Watch {
        id: Uuid,
        /// Poll interval in milliseconds.
        #[arg(long, default_value_t = 500)]
        interval_ms: u64,
    },
}

pub async fn run(settings: &Settings, command: Command) -> anyhow::Result<ExitCode> {
    let pool = crate::db::connect(&settings.database).await?;
    match command {
        Command::Show { id } => {
            let task = view::load(&pool, id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no task {id}"))?;
            println!("{}", serde_json::to_string_pretty(&task)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::List {
            status,
            limit,
            json,
        } => {
            let all = view::Visibility {
                patterns: vec!["%".into()],
                requester: crate::access::Requester::os_user(),
            };
            let page = view::page(&pool, status, 0, limit.clamp(1, 1000), &all).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&page.tasks)?);
            } else {
                let rows: Vec<Vec<String>> = page
                    .tasks
                    .into_iter()
                    .map(|t| {
                        vec![
                            t.id.to_string(),
                            t.status.to_string(),
                            time_or_dash(Some(t.creation_timestamp)),
                            t.name,
                        ]
                    })
                    .collect();
                print_table(&["ID", "STATUS", "CREATED", "NAME"], &rows);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Watch { id, interval_ms } => {
            let mut seen: HashMap<(Uuid, String), StageStatus> = HashMap::new();
            loop {
                let task = view::load(&pool, id)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("no task {id}"))?;
                for sub in &task.sub_tasks {
                    for stage in &sub.stages {
                        let key = (sub.id, stage.name.clone());
                        if seen.get(&key) != Some(&stage.status)
                            && stage.status != StageStatus::Pending
                        {
                            let err = stage
                                .errors
                                .first()
                                .map(|e| format!("  {}: {}", e.error_code, e.message))
                                .unwrap_or_default();
                            println!("{:<28} {:<20} {}{err}", sub.name, stage.name, stage.status);
                            seen.insert(key, stage.status);
                        }
                    }
                }
                if task.status.is_final() {
                    println!(
                        "task {} {} ({})",
                        task.id, task.status, task.resolution_status
                    );
                    return Ok(if task.status == TaskStatus::Successful {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    });
                }
                tokio::time::sleep(Duration::from_millis(interval_ms)).await;
            }
        }
    }
}
