//! Applying an inventory: one transaction that upserts resources and accounts, plans
//! their rotations, onboards passwords from files, and audits a resource that moved.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use uuid::Uuid;

use super::spec::{invalid, Error, InventoryFile, ResourceSpec};
use crate::access::Requester;
use crate::audit;
use crate::engine::lifecycle;
use crate::vault::versions::{self, Origin, State};
use crate::vault::MasterKey;

/// Who applies an inventory, and whether they may move a resource (its address, port,
/// host keys or host-key checking): that needs `admin`, and is audited either way.
pub struct Applier<'a> {
    pub who: &'a Requester,
    pub may_retarget: bool,
}

/// Upserts the inventory in one transaction. Returns one line per change.
/// A `password_file` onboards the account's password only when rotor knows none yet:
/// re-applying an old file never overwrites a rotated password.
pub async fn apply(
    pool: &PgPool,
    key: Option<&MasterKey>,
    inv: &InventoryFile,
    default_policy: impl Fn(&str) -> String,
    schedule: &crate::schedule::Schedule,
    applier: &Applier<'_>,
) -> Result<Vec<String>, Error> {
    // Next rotations are planned by this process's clock, like the scheduler judges them.
    let now = chrono::Utc::now();
    let mut tx = pool.begin().await?;
    let mut report = Vec::new();
    for r in &inv.resource {
        let policy = r.policy_name(&default_policy);
        let admin = r.admin.as_ref();
        let path = |p: Option<&PathBuf>| p.map(|p| p.display().to_string());
        let moved = check_target(&mut tx, r, applier).await?;
        let row = sqlx::query!(
            r#"INSERT INTO resources (id, name, type, address, port, host_keys, insecure_accept_any_host_key, platform, policy,
                                     admin_username, admin_private_key_file, admin_password_file, admin_sudo, lockout_threshold, ssh_auth, http)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
               ON CONFLICT (id) DO UPDATE SET
                   name = EXCLUDED.name, type = EXCLUDED.type, address = EXCLUDED.address, port = EXCLUDED.port,
                   host_keys = EXCLUDED.host_keys, insecure_accept_any_host_key = EXCLUDED.insecure_accept_any_host_key,
                   platform = EXCLUDED.platform, policy = EXCLUDED.policy, admin_username = EXCLUDED.admin_username,
                   admin_private_key_file = EXCLUDED.admin_private_key_file,
                   admin_password_file = EXCLUDED.admin_password_file, admin_sudo = EXCLUDED.admin_sudo,
                   lockout_threshold = EXCLUDED.lockout_threshold, ssh_auth = EXCLUDED.ssh_auth, http = EXCLUDED.http, updated_at = now()
               WHERE (resources.name, resources.type, resources.address, resources.port, resources.host_keys,
                      resources.insecure_accept_any_host_key, resources.platform, resources.policy, resources.admin_username,
                      resources.admin_private_key_file, resources.admin_password_file, resources.admin_sudo,
                      resources.lockout_threshold, resources.ssh_auth, resources.http)
                     IS DISTINCT FROM
                     (EXCLUDED.name, EXCLUDED.type, EXCLUDED.address, EXCLUDED.port, EXCLUDED.host_keys,
                      EXCLUDED.insecure_accept_any_host_key, EXCLUDED.platform, EXCLUDED.policy, EXCLUDED.admin_username,
                      EXCLUDED.admin_private_key_file, EXCLUDED.admin_password_file, EXCLUDED.admin_sudo,
                      EXCLUDED.lockout_threshold, EXCLUDED.ssh_auth, EXCLUDED.http)
               RETURNING (xmax = 0) AS "inserted!""#,
            r.id,
            r.name,
            r.kind,
            r.address,
            i32::from(r.port),
            &r.host_keys,
            r.insecure_accept_any_host_key,
            r.platform,
            policy,
            admin.map(|a| a.username.clone()),
            path(admin.and_then(|a| a.private_key_file.as_ref())),
            path(admin.and_then(|a| a.password_file.as_ref())),
            admin.is_some_and(|a| a.sudo),
            r.lockout_threshold(),
            r.ssh_auth(),
            r.http.as_ref().map(|h| serde_json::to_value(h).expect("a recipe is JSON"))
        )
        .fetch_optional(&mut *tx)
        .await?;
        match row {
            Some(r2) if r2.inserted => report.push(format!("resource {}: created", r.id)),
            Some(_) => report.push(format!("resource {}: updated", r.id)),
            None => {}
        }
        if let Some(old) = moved {
            let new = target_of(r);
            let detail = serde_json::json!({"resourceId": r.id, "old": old, "new": new});
            audit::record(
                &mut tx,
                applier.who,
                audit::Action::ResourceTargetChanged,
                None,
                detail,
            )
            .await?;
            report.push(format!("resource {}: target changed (audited)", r.id));
        }
        for a in &r.account {
            let who = format!("account {}@{}", a.username, r.id);
            let before = sqlx::query!(
                "SELECT auto_rotate_days, last_rotated_at, auto_task_id FROM credentials WHERE resource_id = $1 AND username = $2",
                r.id,
                a.username
            )
            .fetch_optional(&mut *tx)
            .await?;
            let row = sqlx::query!(
                r#"INSERT INTO credentials (id, resource_id, username, account_type, credential_type, auto_rotate_days)
                   VALUES ($1, $2, $3, $4, $5, $6)
                   ON CONFLICT (resource_id, username) DO UPDATE SET
                       account_type = EXCLUDED.account_type, credential_type = EXCLUDED.credential_type,
                       auto_rotate_days = EXCLUDED.auto_rotate_days,
                       updated_at = now()
                   WHERE (credentials.account_type, credentials.credential_type, credentials.auto_rotate_days)
                         IS DISTINCT FROM (EXCLUDED.account_type, EXCLUDED.credential_type, EXCLUDED.auto_rotate_days)
                   RETURNING (xmax = 0) AS "inserted!""#,
                Uuid::new_v4(),
                r.id,
                a.username,
                a.account_type,
                a.credential_type,
                a.auto_rotate_days
            )
            .fetch_optional(&mut *tx)
            .await?;
            match row {
                Some(r2) if r2.inserted => report.push(format!("{who}: created")),
                Some(_) => report.push(format!("{who}: updated")),
                None => {}
            }
            // A new or changed frequency plans the next rotation from the last one (or now);
            // an auto-rotation already in flight plans its own successor when it commits.
            let old_days = before.as_ref().and_then(|b| b.auto_rotate_days);
            let in_flight = before.as_ref().is_some_and(|b| b.auto_task_id.is_some());
            let id = sqlx::query_scalar!(
                "SELECT id FROM credentials WHERE resource_id = $1 AND username = $2",
                r.id,
                a.username
            )
            .fetch_one(&mut *tx)
            .await?;
            if (before.is_none() || old_days != a.auto_rotate_days) && !in_flight {
                let last = before
                    .as_ref()
                    .and_then(|b| b.last_rotated_at)
                    .unwrap_or(now);
                lifecycle::plan_next(&mut tx, schedule, id, a.auto_rotate_days, last).await?;
            }
            if let Some(file) = &a.password_file {
                let known = sqlx::query_scalar!(
                    r#"SELECT count(*) AS "n!" FROM credential_versions WHERE credential_id = $1 AND state IN ('CURRENT', 'PENDING')"#,
                    id
                )
                .fetch_one(&mut *tx)
                .await?;
                if known == 0 {
                    let key = key.ok_or_else(|| {
                        invalid("vault.master_key_file", "needed to onboard passwords")
                    })?;
                    let bytes = zeroize::Zeroizing::new(
                        std::fs::read(file).map_err(|e| Error::Read(file.clone(), e))?,
                    );
                    let text = std::str::from_utf8(&bytes).map_err(|_| {
                        invalid(
                            format!("{who}.password_file"),
                            format!("{} is not UTF-8", file.display()),
                        )
                    })?;
                    let password =
                        SecretString::from(text.trim_end_matches(['\n', '\r']).to_owned());
                    if password.expose_secret().is_empty() {
                        return Err(invalid(
                            format!("{who}.password_file"),
                            format!("{} is empty", file.display()),
                        ));
                    }
                    crate::driver::validate_password_charset(password.expose_secret()).map_err(
                        |m| invalid(format!("{who}.password_file"), format!("password {m}")),
                    )?;
                    let v = versions::insert(
                        &mut tx,
                        key,
                        id,
                        State::Current,
                        Origin::Onboarded,
                        &password,
                        None,
                    )
                    .await?;
                    report.push(format!("{who}: password onboarded (version {v})"));
                }
            }
        }
    }
    tx.commit().await?;
    Ok(report)
}

/// Where a resource points: what only `admin` may change.
fn target_of(r: &ResourceSpec) -> serde_json::Value {
    serde_json::json!({"address": r.address, "port": r.port, "hostKeys": r.host_keys, "insecureAcceptAnyHostKey": r.insecure_accept_any_host_key})
}

/// For an existing resource whose target the spec changes: its old target, after
/// checking the applier may change it. Refuses a deleted resource.
async fn check_target(
    tx: &mut sqlx::PgConnection,
    r: &ResourceSpec,
    applier: &Applier<'_>,
) -> Result<Option<serde_json::Value>, Error> {
    let Some(old) = sqlx::query!(
        "SELECT address, port, host_keys, insecure_accept_any_host_key, deleted_at FROM resources WHERE id = $1 FOR UPDATE",
        r.id
    )
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(None);
    };
    if old.deleted_at.is_some() {
        return Err(Error::Deleted(r.id.clone()));
    }
    let changed = [
        ("address", old.address != r.address),
        ("port", old.port != i32::from(r.port)),
        ("host_keys", old.host_keys != r.host_keys),
        (
            "insecure_accept_any_host_key",
            old.insecure_accept_any_host_key != r.insecure_accept_any_host_key,
        ),
    ];
    let Some((field, _)) = changed.iter().find(|(_, c)| *c) else {
        return Ok(None);
    };
    if !applier.may_retarget {
        return Err(Error::Denied {
            field: field.to_string(),
            message: "changing where a resource points needs the `admin` scope".into(),
        });
    }
    Ok(Some(
        serde_json::json!({"address": old.address, "port": old.port, "hostKeys": old.host_keys,
                               "insecureAcceptAnyHostKey": old.insecure_accept_any_host_key}),
    ))
}
