//! Which key seals new secrets, agreed through the database by every process that
//! shares it (table `vault_sealing_key`). Without it, a process still sealing with an
//! old key after a rekey would write rows under a key the operator was just told may go.

use sqlx::PgConnection;

use super::{Error, MasterKey};

/// The sealing key's id, read under a share lock that `set` waits for, so no row is
/// sealed under an old key once a rekey has begun. Set to this ring's first key when
/// nothing is recorded yet. Refuses when this process does not hold the key.
pub async fn key_id(conn: &mut PgConnection, key: &MasterKey) -> Result<String, Error> {
    let mut found = sqlx::query_scalar!("SELECT key_id FROM vault_sealing_key FOR SHARE")
        .fetch_optional(&mut *conn)
        .await?;
    if found.is_none() {
        sqlx::query!(
            "INSERT INTO vault_sealing_key (key_id) VALUES ($1) ON CONFLICT (one) DO NOTHING",
            key.key_id()
        )
        .execute(&mut *conn)
        .await?;
        found = sqlx::query_scalar!("SELECT key_id FROM vault_sealing_key FOR SHARE")
            .fetch_optional(&mut *conn)
            .await?;
    }
    let id = found.unwrap_or_else(|| key.key_id().to_string());
    if key.holds(&id) {
        Ok(id)
    } else {
        Err(Error::SealingKeyNotLoaded(id))
    }
}

/// Makes the ring's first key the sealing key (waits for every seal in flight).
pub async fn set(conn: &mut PgConnection, key: &MasterKey) -> Result<(), Error> {
    sqlx::query!(
        "INSERT INTO vault_sealing_key (key_id) VALUES ($1) ON CONFLICT (one) DO UPDATE SET key_id = EXCLUDED.key_id, set_at = now()",
        key.key_id()
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The recorded sealing key, if any.
pub async fn current(conn: &mut PgConnection) -> Result<Option<String>, Error> {
    Ok(sqlx::query_scalar!("SELECT key_id FROM vault_sealing_key")
        .fetch_optional(&mut *conn)
        .await?)
}
