//! Deleting a resource in two steps. `retire` (HTTP DELETE) marks it deleted and
//! retires its accounts: nothing rotates or is checked any more, but every stored
//! password stays readable (`rotor credential reveal`). `purge` (root, on the command
//! line) then removes the resource, its accounts and their versions for good.

use sqlx::PgPool;

use crate::access::Requester;
use crate::audit;
use crate::engine::lifecycle;

/// Why a resource could not be retired or purged.
#[derive(Debug, thiserror::Error)]
pub enum Retired {
    #[error("no resource {0}")]
    NotFound(String),
    #[error("{busy} subtasks or leases on resource {id} have not ended")]
    Busy { id: String, busy: i64 },
    #[error("resource {0} is not deleted; delete it first (DELETE /v1/resources/{0})")]
    NotDeleted(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{0}")]
    Store(#[from] crate::engine::Error),
}

/// Refuses while any account of the resource has a subtask that has not ended, or a
/// lease (a rotation in flight, or one whose outcome is still in doubt).
async fn check_idle(tx: &mut sqlx::PgConnection, id: &str) -> Result<(), Retired> {
    let busy = sqlx::query_scalar!(
        r#"SELECT (SELECT count(*) FROM subtasks s JOIN credentials c ON c.id = s.credential_id
                    WHERE c.resource_id = $1 AND s.status IN ('PENDING', 'IN_PROGRESS'))
                + (SELECT count(*) FROM credentials WHERE resource_id = $1 AND lease_subtask IS NOT NULL) AS "n!""#,
        id
    )
    .fetch_one(&mut *tx)
    .await?;
    if busy > 0 {
        return Err(Retired::Busy {
            id: id.to_string(),
            busy,
        });
    }
    Ok(())
}

/// Marks the resource deleted and retires its accounts, in one audited transaction;
/// refused while any of its accounts has work in flight. Returns the accounts retired.
pub async fn retire(pool: &PgPool, id: &str, who: &Requester) -> Result<u64, Retired> {
    let mut tx = pool.begin().await?;
    let found = sqlx::query_scalar!(
        "SELECT deleted_at IS NOT NULL AS \"deleted!\" FROM resources WHERE id = $1 FOR UPDATE",
        id
    )
    .fetch_optional(&mut *tx)
    .await?;
    if found != Some(false) {
        return Err(Retired::NotFound(id.to_string()));
    }
    check_idle(&mut tx, id).await?;
    sqlx::query!("UPDATE resources SET deleted_at = now(), deleted_by = $2, updated_at = now() WHERE id = $1", id, audit::actor(who))
        .execute(&mut *tx)
        .await?;
    let accounts = lifecycle::retire_resource(&mut tx, id).await?;
    audit::record(
        &mut tx,
        who,
        audit::Action::ResourceDeleted,
        None,
        serde_json::json!({"resourceId": id, "accountsRetired": accounts}),
    )
    .await?;
    tx.commit().await?;
    Ok(accounts)
}

/// Removes a deleted resource with its accounts and every stored version; audited.
/// Returns the versions removed.
pub async fn purge(pool: &PgPool, id: &str, who: &Requester) -> Result<i64, Retired> {
    let mut tx = pool.begin().await?;
    let found = sqlx::query_scalar!(
        "SELECT deleted_at IS NOT NULL AS \"deleted!\" FROM resources WHERE id = $1 FOR UPDATE",
        id
    )
    .fetch_optional(&mut *tx)
    .await?;
    match found {
        None => return Err(Retired::NotFound(id.to_string())),
        Some(false) => return Err(Retired::NotDeleted(id.to_string())),
        Some(true) => {}
    }
    check_idle(&mut tx, id).await?;
    let versions = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM credential_versions v JOIN credentials c ON c.id = v.credential_id WHERE c.resource_id = $1"#,
        id
    )
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query!("DELETE FROM resources WHERE id = $1", id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        who,
        audit::Action::ResourcePurged,
        None,
        serde_json::json!({"resourceId": id, "versionsRemoved": versions}),
    )
    .await?;
    tx.commit().await?;
    Ok(versions)
}
