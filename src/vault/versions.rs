//! The versions of a credential's password: PENDING -> CURRENT -> PREVIOUS -> RETIRED.

use secrecy::SecretString;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Error, MasterKey, Sealed};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Pending,
    Current,
    Previous,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "PENDING",
            State::Current => "CURRENT",
            State::Previous => "PREVIOUS",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Origin {
    Generated,
    Supplied,
    Onboarded,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Origin::Generated => "GENERATED",
            Origin::Supplied => "SUPPLIED",
            Origin::Onboarded => "ONBOARDED",
        }
    }
}

/// A decrypted version.
pub struct Version {
    pub version: i32,
    pub subtask_id: Option<Uuid>,
    pub password: SecretString,
}

/// Stores a new version in `state`; returns its number. The partial unique indexes keep
/// one PENDING and one CURRENT per credential.
pub async fn insert(
    conn: &mut PgConnection,
    key: &MasterKey,
    credential_id: Uuid,
    state: State,
    origin: Origin,
    password: &SecretString,
    subtask_id: Option<Uuid>,
) -> Result<i32, Error> {
    let version: i32 = sqlx::query_scalar!(
        r#"SELECT COALESCE(MAX(version), 0) + 1 AS "v!" FROM credential_versions WHERE credential_id = $1"#,
        credential_id
    )
    .fetch_one(&mut *conn)
    .await?;
    let sealing = super::sealing::key_id(conn, key).await?;
    let sealed = key.seal_with(&sealing, credential_id, version, password)?;
    sqlx::query!(
        "INSERT INTO credential_versions (credential_id, version, state, origin, key_id, nonce, ciphertext, subtask_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        credential_id,
        version,
        state.as_str(),
        origin.as_str(),
        sealed.key_id,
        sealed.nonce,
        sealed.ciphertext,
        subtask_id
    )
    .execute(&mut *conn)
    .await?;
    Ok(version)
}

/// The version in `state`, decrypted.
pub async fn get(
    conn: &mut PgConnection,
    key: &MasterKey,
    credential_id: Uuid,
    state: State,
) -> Result<Option<Version>, Error> {
    fetch(conn, key, credential_id, Some(state.as_str()), None).await
}

/// A version by number, whatever its state.
pub async fn get_number(
    conn: &mut PgConnection,
    key: &MasterKey,
    credential_id: Uuid,
    version: i32,
) -> Result<Option<Version>, Error> {
    fetch(conn, key, credential_id, None, Some(version)).await
}

async fn fetch(
    conn: &mut PgConnection,
    key: &MasterKey,
    credential_id: Uuid,
    state: Option<&str>,
    version: Option<i32>,
) -> Result<Option<Version>, Error> {
    let row = sqlx::query!(
        "SELECT version, key_id, nonce, ciphertext, subtask_id FROM credential_versions
         WHERE credential_id = $1 AND ($2::text IS NULL OR state = $2) AND ($3::int IS NULL OR version = $3)",
        credential_id,
        state,
        version
    )
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| {
        let sealed = Sealed {
            key_id: r.key_id,
            nonce: r.nonce,
            ciphertext: r.ciphertext,
        };
        Ok(Version {
            version: r.version,
            subtask_id: r.subtask_id,
            password: key.open(credential_id, r.version, &sealed)?,
        })
    })
    .transpose()
}

/// PENDING becomes CURRENT, CURRENT becomes PREVIOUS, PREVIOUS is retired, and only the
/// newest `keep` versions survive. Run inside the committing transaction.
pub async fn promote_pending(
    conn: &mut PgConnection,
    credential_id: Uuid,
    keep: i64,
) -> Result<(), Error> {
    let pending = sqlx::query_scalar!(
        "SELECT version FROM credential_versions WHERE credential_id = $1 AND state = 'PENDING'",
        credential_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    if pending.is_none() {
        return Err(Error::NoPending);
    }
    // One state at a time, oldest first: the partial unique indexes are checked per row.
    for (from, to) in [
        ("PREVIOUS", "RETIRED"),
        ("CURRENT", "PREVIOUS"),
        ("PENDING", "CURRENT"),
    ] {
        sqlx::query!(
            "UPDATE credential_versions SET state = $3, state_changed_at = now()
              WHERE credential_id = $1 AND state = $2",
            credential_id,
            from,
            to
        )
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query!(
        "DELETE FROM credential_versions
          WHERE credential_id = $1 AND state IN ('RETIRED', 'ABANDONED')
            AND version NOT IN (SELECT version FROM credential_versions WHERE credential_id = $1
                                ORDER BY version DESC LIMIT $2)",
        credential_id,
        keep
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The target was found to hold the PREVIOUS version: it becomes CURRENT again and the
/// current one becomes PREVIOUS, so the vault agrees with the target.
pub async fn restore_previous(
    conn: &mut PgConnection,
    credential_id: Uuid,
) -> Result<(), sqlx::Error> {
    // One state at a time: the partial unique indexes are checked per row.
    let current = sqlx::query_scalar!(
        "UPDATE credential_versions SET state = 'RETIRED', state_changed_at = now()
          WHERE credential_id = $1 AND state = 'CURRENT' RETURNING version",
        credential_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    sqlx::query!(
        "UPDATE credential_versions SET state = 'CURRENT', state_changed_at = now() WHERE credential_id = $1 AND state = 'PREVIOUS'",
        credential_id
    )
    .execute(&mut *conn)
    .await?;
    if let Some(version) = current {
        sqlx::query!(
            "UPDATE credential_versions SET state = 'PREVIOUS', state_changed_at = now() WHERE credential_id = $1 AND version = $2",
            credential_id,
            version
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Stores a password supplied in a request, encrypted and bound to its subtask.
pub async fn put_supplied(
    conn: &mut PgConnection,
    key: &MasterKey,
    subtask_id: Uuid,
    password: &SecretString,
) -> Result<(), Error> {
    let sealing = super::sealing::key_id(conn, key).await?;
    let sealed = key.seal_for_subtask_with(&sealing, subtask_id, password)?;
    sqlx::query!(
        "INSERT INTO subtask_secrets (subtask_id, key_id, nonce, ciphertext) VALUES ($1, $2, $3, $4)",
        subtask_id,
        sealed.key_id,
        sealed.nonce,
        sealed.ciphertext
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The password supplied for a subtask, if any.
pub async fn get_supplied(
    conn: &mut PgConnection,
    key: &MasterKey,
    subtask_id: Uuid,
) -> Result<Option<SecretString>, Error> {
    let row = sqlx::query!(
        "SELECT key_id, nonce, ciphertext FROM subtask_secrets WHERE subtask_id = $1",
        subtask_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| {
        key.open_for_subtask(
            subtask_id,
            &Sealed {
                key_id: r.key_id,
                nonce: r.nonce,
                ciphertext: r.ciphertext,
            },
        )
    })
    .transpose()
}

/// Stores `password` as the credential's CURRENT version without touching the target
/// (REMEDIATE with a password, PrivX set-password); the old current becomes PREVIOUS.
pub async fn replace_current(
    conn: &mut PgConnection,
    key: &MasterKey,
    credential_id: Uuid,
    password: &SecretString,
    subtask_id: Uuid,
    keep: i64,
) -> Result<i32, Error> {
    sqlx::query!(
        "UPDATE credential_versions SET state = 'ABANDONED', state_changed_at = now()
          WHERE credential_id = $1 AND state = 'PENDING'",
        credential_id
    )
    .execute(&mut *conn)
    .await?;
    let version = insert(
        conn,
        key,
        credential_id,
        State::Pending,
        Origin::Supplied,
        password,
        Some(subtask_id),
    )
    .await?;
    promote_pending(conn, credential_id, keep).await?;
    Ok(version)
}
