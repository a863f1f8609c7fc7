//! `rotor rotate`: a bulk rotation in waves (canary first), as `POST /v1/rotations`; with
//! `--watch`, a progress line until it ends. Exit 0 when every credential rotated.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::access::Requester;
use crate::bulk::{self, BulkSpec, Refused};
use crate::config::Settings;

#[derive(Debug, Args)]
pub struct Command {
    /// A glob on resource ids (repeatable), e.g. `web-*`.
    #[arg(long = "resource", value_name = "GLOB", required = true)]
    resources: Vec<String>,
    /// Only resources of this type (e.g. LINUX).
    #[arg(long = "type", value_name = "T")]
    resource_type: Option<String>,
    /// Only accounts of this type (USER, SYSTEM, SERVICE).
    #[arg(long, value_name = "A")]
    account_type: Option<String>,
    /// Credentials in the first wave.
    #[arg(long, default_value_t = 1)]
    canary: i32,
    /// Failed rotations tolerated; one more stops the bulk.
    #[arg(long, default_value_t = 0)]
    max_failures: i32,
    /// Also stop when more than this share of those done failed (0 to 1).
    #[arg(long)]
    max_failure_ratio: Option<f64>,
    /// Follow it to its end with a progress line (the daemon carries the waves out).
    #[arg(long)]
    watch: bool,
    /// Print the bulk as JSON (at its end with --watch).
    #[arg(long)]
    json: bool,
}

pub async fn run(settings: &Settings, command: Command) -> anyhow::Result<ExitCode> {
    let pool = crate::db::connect(&settings.database).await?;
    let spec = BulkSpec {
        resources: command.resources,
        resource_type: command.resource_type,
        account_type: command.account_type,
        canary: command.canary,
        max_failures: command.max_failures,
        max_failure_ratio: command.max_failure_ratio,
    };
    let created = match bulk::create(&pool, spec, &Requester::os_user(), &["%".to_string()]).await {
        Ok(b) => b,
        Err(Refused::Invalid { field, message }) => anyhow::bail!("{field}: {message}"),
        Err(Refused::Store(e)) => return Err(e.into()),
    };
    let mut current = created;
    if !command.json {
        println!(
            "bulk rotation {}: {} credentials in {} waves (canary {})",
            current.id,
            current.total,
            current.waves.len(),
            current.spec.canary
        );
    }
    if command.watch {
        let mut last = String::new();
        while current.status == "RUNNING" {
            tokio::time::sleep(Duration::from_secs(1)).await;
            current = bulk::load(&pool, current.id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("the bulk rotation vanished"))?;
            let wave = current.waves.iter().filter(|w| w.task_id.is_some()).count();
            let line = format!(
                "{} wave {wave}/{}: {} rotated, {} failed, {} cancelled, {} pending",
                current.status,
                current.waves.len(),
                current.succeeded,
                current.failed,
                current.cancelled,
                current.pending
            );
            if line != last && !command.json {
                eprintln!("{line}");
                last = line;
            }
        }
        if !command.json {
            println!("{}: {}", current.status, current.message);
        }
    }
    if command.json {
        println!("{}", serde_json::to_string(&current)?);
    }
    Ok(match current.status.as_str() {
        "SUCCESSFUL" | "RUNNING" => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}
