//! `rotor scheduler tick|heartbeat`: one round by hand, as the daemon's cron job runs it.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Subcommand;

use crate::config::Settings;
use crate::engine::Engine;
use crate::scheduler::Scheduler;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one scheduler tick now: create the auto-rotation tasks that are due (a running
    /// daemon's workers carry them out). Does nothing while another instance holds the lock.
    Tick {
        #[arg(long)]
        json: bool,
    },
    /// Run one heartbeat round now: check stored current passwords against their targets.
    Heartbeat {
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(settings: &Settings, command: Command) -> anyhow::Result<ExitCode> {
    let pool = crate::db::connect(&settings.database).await?;
    let key = Arc::new(crate::vault::MasterKey::load(&settings.vault)?);
    let engine = Arc::new(Engine::new(pool, key, settings)?);
    let scheduler = Scheduler {
        engine,
        settings: settings.scheduler.clone(),
    };
    match command {
        Command::Tick { json } => {
            let started = Instant::now();
            let tick = scheduler.tick(chrono::Utc::now()).await?;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"leader": tick.leader, "due": tick.due, "created": tick.created, "milliseconds": ms})
                );
            } else if !tick.leader {
                println!("another instance holds the scheduler lock; nothing done");
            } else {
                println!(
                    "{} due, {} auto-rotation tasks created in {ms:.1} ms",
                    tick.due, tick.created
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Heartbeat { json } => {
            let started = Instant::now();
            let (checked, drifted) = scheduler.heartbeat(chrono::Utc::now()).await?;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"checked": checked, "outOfSync": drifted, "milliseconds": ms})
                );
            } else {
                println!("{checked} checked, {drifted} found OUT_OF_SYNC, in {ms:.0} ms");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
