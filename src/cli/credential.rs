//! `rotor credential list|reveal`.

use std::process::ExitCode;

use clap::Subcommand;
use secrecy::ExposeSecret;

use crate::config::Settings;
use crate::vault::versions::{self, State};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List credentials (never their passwords).
    List {
        #[arg(long)]
        resource: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Print a password on stdout alone (audit-logged).
    Reveal {
        #[arg(long)]
        resource: String,
        #[arg(long)]
        username: String,
        /// A version number instead of the current password.
        #[arg(long)]
        version: Option<i32>,
    },
}

pub async fn run(settings: &Settings, command: Command) -> anyhow::Result<ExitCode> {
    let pool = crate::db::connect(&settings.database).await?;
    match command {
        Command::List { resource, json } => {
            let rows = sqlx::query!(
                r#"SELECT c.id, c.resource_id, c.username, c.account_type, c.credential_type, c.status,
                          c.auto_rotate_days, c.next_rotation_at, c.last_rotated_at,
                          (SELECT version FROM credential_versions v WHERE v.credential_id = c.id AND v.state = 'CURRENT') AS current_version
                     FROM credentials c WHERE ($1::text IS NULL OR c.resource_id = $1)
                    ORDER BY c.resource_id, c.username"#,
                resource
            )
            .fetch_all(&pool)
            .await?;
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|r| {
                        serde_json::json!({"id": r.id, "resourceId": r.resource_id, "username": r.username,
                            "accountType": r.account_type, "credentialType": r.credential_type, "status": r.status,
                            "currentVersion": r.current_version, "autoRotateDays": r.auto_rotate_days,
                            "nextRotation": r.next_rotation_at, "lastRotated": r.last_rotated_at})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let table: Vec<Vec<String>> = rows
                    .into_iter()
                    .map(|r| {
                        vec![
                            r.resource_id,
                            r.username,
                            r.account_type,
                            r.status,
                            r.current_version.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
                            super::time_or_dash(r.last_rotated_at),
                            super::time_or_dash(r.next_rotation_at),
                        ]
                    })
                    .collect();
                super::print_table(&["RESOURCE", "USERNAME", "TYPE", "STATUS", "VERSION", "LAST ROTATED", "NEXT ROTATION"], &table);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Reveal { resource, username, version } => {
            let key = crate::vault::MasterKey::load(&settings.vault)?;
            let id = sqlx::query_scalar!("SELECT id FROM credentials WHERE resource_id = $1 AND username = $2", resource, username)
                .fetch_optional(&pool)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no account `{username}` on resource `{resource}` (see `rotor credential list`)"))?;
            let mut conn = pool.acquire().await?;
            let found = match version {
                Some(n) => versions::get_number(&mut conn, &key, id, n).await?,
                None => versions::get(&mut conn, &key, id, State::Current).await?,
            };
            let Some(v) = found else {
                anyhow::bail!(
                    "{username}@{resource} has no {}",
                    version.map(|n| format!("version {n}")).unwrap_or_else(|| "current password".into())
                );
            };
            let actor = std::env::var("SUDO_USER").or_else(|_| std::env::var("USER")).unwrap_or_else(|_| "unknown".into());
            sqlx::query!(
                "INSERT INTO audit_log (actor, action, credential_id, detail) VALUES ($1, 'REVEAL', $2, $3)",
                format!("cli:{actor}"),
                id,
                serde_json::json!({"version": v.version, "via": "cli"})
            )
            .execute(&mut *conn)
            .await?;
            tracing::info!(target: "rotor::security", actor = %actor, credential_id = %id, version = v.version, "password revealed");
            println!("{}", v.password.expose_secret());
            Ok(ExitCode::SUCCESS)
        }
    }
}
