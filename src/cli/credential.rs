//! `rotor credential list|reveal|pause|resume|due`.

use std::process::ExitCode;

use clap::Subcommand;
use secrecy::ExposeSecret;

use super::output::{print_table, time_or_dash};
use crate::access::Requester;
use crate::audit;
use crate::config::Settings;
use crate::engine::lifecycle;
use crate::engine::model::CredentialStatus;
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
    /// Keep a credential out of auto-rotation until `resume` (its policy stays).
    Pause {
        #[arg(long)]
        resource: String,
        #[arg(long)]
        username: String,
    },
    /// Put a credential back into auto-rotation; an overdue one rotates at the next tick.
    /// Also restarts auto-rotation that stopped after scheduler.max_failures failures.
    Resume {
        #[arg(long)]
        resource: String,
        #[arg(long)]
        username: String,
    },
    /// Credentials whose auto-rotation falls within a period from now (overdue included).
    Due {
        /// How far ahead: a number with s, m, h, d or w, e.g. 7d.
        #[arg(long, default_value = "7d", value_parser = parse_period)]
        within: chrono::Duration,
        #[arg(long)]
        json: bool,
    },
}

/// "90s", "15m", "12h", "7d", "2w".
pub fn parse_period(text: &str) -> Result<chrono::Duration, String> {
    let bad = || format!("`{text}`: expected a number with s, m, h, d or w, e.g. 7d");
    let unit = text.chars().last().ok_or_else(bad)?;
    let n: i64 = text[..text.len() - unit.len_utf8()]
        .parse()
        .map_err(|_| bad())?;
    if !(0..=3650 * 86_400).contains(&n) {
        return Err(bad());
    }
    Ok(match unit {
        's' => chrono::Duration::seconds(n),
        'm' => chrono::Duration::minutes(n),
        'h' => chrono::Duration::hours(n),
        'd' => chrono::Duration::days(n),
        'w' => chrono::Duration::weeks(n),
        _ => return Err(bad()),
    })
}

async fn credential_id(
    pool: &sqlx::PgPool,
    resource: &str,
    username: &str,
) -> anyhow::Result<uuid::Uuid> {
    sqlx::query_scalar!(
        "SELECT id FROM credentials WHERE resource_id = $1 AND username = $2",
        resource,
        username
    )
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| {
        anyhow::anyhow!(
            "no account `{username}` on resource `{resource}` (see `rotor credential list`)"
        )
    })
}

pub async fn run(settings: &Settings, command: Command) -> anyhow::Result<ExitCode> {
    let pool = crate::db::connect(&settings.database).await?;
    match command {
        Command::List { resource, json } => {
            let rows = sqlx::query!(
                r#"SELECT c.id, c.resource_id, c.username, c.account_type, c.credential_type, c.status,
                          c.auto_rotate_days, c.next_rotation_at, c.last_rotated_at, c.auto_paused,
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
                            "currentVersion": r.current_version, "autoRotateDays": r.auto_rotate_days, "autoRotatePaused": r.auto_paused,
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
                            r.current_version
                                .map(|v| v.to_string())
                                .unwrap_or_else(|| "-".into()),
                            time_or_dash(r.last_rotated_at),
                            match (r.auto_rotate_days, r.auto_paused) {
                                (Some(d), false) => format!("{d}d"),
                                (Some(d), true) => format!("{d}d paused"),
                                (None, _) => "-".into(),
                            },
                            time_or_dash(r.next_rotation_at),
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "RESOURCE",
                        "USERNAME",
                        "TYPE",
                        "STATUS",
                        "VERSION",
                        "LAST ROTATED",
                        "AUTO",
                        "NEXT ROTATION",
                    ],
                    &table,
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Reveal {
            resource,
            username,
            version,
        } => {
            let key = crate::vault::MasterKey::load(&settings.vault)?;
            let id = credential_id(&pool, &resource, &username).await?;
            let mut conn = pool.acquire().await?;
            let found = match version {
                Some(n) => versions::get_number(&mut conn, &key, id, n).await?,
                None => versions::get(&mut conn, &key, id, State::Current).await?,
            };
            let Some(v) = found else {
                anyhow::bail!(
                    "{username}@{resource} has no {}",
                    version
                        .map(|n| format!("version {n}"))
                        .unwrap_or_else(|| "current password".into())
                );
            };
            let who = Requester::os_user();
            audit::record(
                &mut conn,
                &who,
                audit::Action::Reveal,
                Some(id),
                serde_json::json!({"version": v.version, "via": "cli"}),
            )
            .await?;
            tracing::info!(target: "rotor::security", actor = %audit::actor(&who), credential_id = %id, version = v.version, "password revealed");
            println!("{}", v.password.expose_secret());
            Ok(ExitCode::SUCCESS)
        }
        Command::Pause { resource, username } => {
            let id = credential_id(&pool, &resource, &username).await?;
            let mut tx = pool.begin().await?;
            let (days, withdrawn) = lifecycle::pause(&mut tx, id).await?;
            audit::record(
                &mut tx,
                &Requester::os_user(),
                audit::Action::AutoRotatePause,
                Some(id),
                serde_json::json!({}),
            )
            .await?;
            tx.commit().await?;
            tracing::info!(target: "rotor::security", credential_id = %id, "auto-rotation paused");
            if let Some(task_id) = withdrawn {
                println!("{username}@{resource}: its planned auto-rotation (task {task_id}) was cancelled before it started");
            }
            match days {
                Some(d) => println!("{username}@{resource}: auto-rotation (every {d} days) paused; `rotor credential resume` restarts it"),
                None => println!("{username}@{resource}: paused (it has no auto-rotation policy yet; one set later stays paused)"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Resume { resource, username } => {
            let id = credential_id(&pool, &resource, &username).await?;
            let now = chrono::Utc::now();
            let mut tx = pool.begin().await?;
            let row = lifecycle::resume(&mut tx, id, now).await?;
            audit::record(
                &mut tx,
                &Requester::os_user(),
                audit::Action::AutoRotateResume,
                Some(id),
                serde_json::json!({}),
            )
            .await?;
            tx.commit().await?;
            tracing::info!(target: "rotor::security", credential_id = %id, "auto-rotation resumed");
            match (row.days, row.next) {
                (None, _) => println!("{username}@{resource}: resumed (it has no auto-rotation policy)"),
                (Some(d), Some(at)) => println!("{username}@{resource}: auto-rotation every {d} days resumed; next {}", time_or_dash(Some(at))),
                (Some(d), None) => println!("{username}@{resource}: auto-rotation every {d} days resumed; a rotation is in flight"),
            }
            if row.status != CredentialStatus::Active.as_str() {
                println!(
                    "note: its status is {}; the scheduler skips it until REMEDIATE repairs it",
                    row.status
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Due { within, json } => {
            let until = chrono::Utc::now() + within;
            let rows = sqlx::query!(
                r#"SELECT c.id, c.resource_id, c.username, c.auto_rotate_days AS "days!", c.next_rotation_at AS "next!", c.status
                     FROM credentials c
                    WHERE c.next_rotation_at <= $1 AND c.auto_rotate_days IS NOT NULL AND NOT c.auto_paused
                    ORDER BY c.next_rotation_at, c.resource_id, c.username"#,
                until
            )
            .fetch_all(&pool)
            .await?;
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|r| serde_json::json!({"id": r.id, "resourceId": r.resource_id, "username": r.username,
                        "frequencyInDays": r.days, "nextSchedule": r.next, "status": r.status}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let now = chrono::Utc::now();
                let table: Vec<Vec<String>> = rows
                    .into_iter()
                    .map(|r| {
                        let note = if r.status != CredentialStatus::Active.as_str() {
                            format!("skipped: {}", r.status)
                        } else if r.next <= now {
                            "overdue".into()
                        } else {
                            String::new()
                        };
                        vec![
                            r.resource_id,
                            r.username,
                            format!("{}d", r.days),
                            time_or_dash(Some(r.next)),
                            note,
                        ]
                    })
                    .collect();
                print_table(
                    &["RESOURCE", "USERNAME", "EVERY", "NEXT ROTATION", ""],
                    &table,
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn periods_parse_with_their_unit() {
        assert_eq!(
            super::parse_period("7d").unwrap(),
            chrono::Duration::days(7)
        );
        assert_eq!(
            super::parse_period("36h").unwrap(),
            chrono::Duration::hours(36)
        );
        assert_eq!(
            super::parse_period("2w").unwrap(),
            chrono::Duration::weeks(2)
        );
        for bad in ["", "7", "d", "7x", "-1d", "1.5d"] {
            assert!(super::parse_period(bad).is_err(), "{bad}");
        }
    }
}
