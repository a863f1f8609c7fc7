//! The audit log: who revealed a password, paused rotation, moved or retired a
//! resource. The database chains each entry to the one before by hash (migration
//! `trust`); `verify` walks the chain and names the first entry that does not fit.
//! Each entry's hash is also written to rotor's own log, an anchor outside the database.

use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use strum::{Display, IntoStaticStr};
use uuid::Uuid;

use crate::access::Requester;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Display, IntoStaticStr)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    Reveal,
    AutoRotatePause,
    AutoRotateResume,
    /// A resource's address, port, host keys or host-key checking changed.
    ResourceTargetChanged,
    ResourceDeleted,
    ResourcePurged,
    /// The scheduler's breaker was closed: auto-rotation resumes.
    SchedulerResume,
}

/// How an actor is written in the log: `KIND:name`.
pub fn actor(who: &Requester) -> String {
    format!("{}:{}", who.kind, who.name)
}

/// Appends an entry in the caller's transaction; returns its place in the chain.
pub async fn record(
    conn: &mut PgConnection,
    who: &Requester,
    action: Action,
    credential_id: Option<Uuid>,
    detail: serde_json::Value,
) -> Result<i64, sqlx::Error> {
    let action_name: &'static str = action.into();
    let row = sqlx::query!(
        "INSERT INTO audit_log (actor, action, credential_id, detail) VALUES ($1, $2, $3, $4) RETURNING seq, hash",
        actor(who),
        action_name,
        credential_id,
        detail
    )
    .fetch_one(&mut *conn)
    .await?;
    tracing::info!(target: "rotor::audit", seq = row.seq, hash = %hex::encode(&row.hash), actor = %actor(who), action = action_name, "audit entry");
    Ok(row.seq)
}

/// Says so on `rotor::security` when this process's database role could rewrite the
/// audit log (it owns the table or may UPDATE it): the daemon should run as a member of
/// `rotor_runtime`, with `--no-migrate`.
pub async fn warn_if_rewritable(pool: &PgPool) -> Result<(), sqlx::Error> {
    let rewritable = sqlx::query_scalar!(
        r#"SELECT has_table_privilege('audit_log', 'UPDATE')
               OR pg_has_role((SELECT tableowner FROM pg_tables WHERE schemaname = 'public' AND tablename = 'audit_log'), 'MEMBER')
               AS "rewritable!""#
    )
    .fetch_one(pool)
    .await?;
    if rewritable {
        tracing::warn!(
            target: "rotor::security",
            "this database role could rewrite the audit log; run `rotor migrate` as the owner and `rotor run --no-migrate` as a member of rotor_runtime"
        );
    }
    Ok(())
}

/// The first entry that breaks the chain, and how.
#[derive(Debug, thiserror::Error)]
#[error("audit log entry {seq} (id {id}): {reason}")]
pub struct Broken {
    pub seq: i64,
    pub id: i64,
    pub reason: String,
}

/// A whole chain: how many entries, and the last hash (write it down elsewhere: an
/// attacker who rewrites the whole chain from some entry on changes it).
pub struct Verified {
    pub entries: i64,
    pub head: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Broken(#[from] Broken),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// Walks the chain in order: each entry's number follows the last, it names the hash of
/// the one before, and its own hash is that of its fields now. An edited entry fails
/// the last check, a removed one the first two, a reordered one all three.
pub async fn verify(pool: &PgPool) -> Result<Verified, VerifyError> {
    let rows = sqlx::query!(
        r#"SELECT id, seq, prev_hash, hash,
                  audit_log_payload(seq, at, actor, action, credential_id, detail) AS "payload!"
             FROM audit_log ORDER BY seq"#
    )
    .fetch_all(pool)
    .await?;
    let mut last: Option<Vec<u8>> = None;
    for (i, r) in rows.iter().enumerate() {
        let expected_seq = i as i64 + 1;
        let broken = |reason: String| Broken {
            seq: r.seq,
            id: r.id,
            reason,
        };
        if r.seq != expected_seq {
            return Err(broken(format!(
                "expected entry {expected_seq} here: an entry before it is missing"
            ))
            .into());
        }
        if r.prev_hash != last {
            return Err(broken(
                "does not name the hash of the entry before it (removed, inserted or reordered)"
                    .into(),
            )
            .into());
        }
        let mut h = Sha256::new();
        h.update(last.as_deref().unwrap_or_default());
        h.update(&r.payload);
        if h.finalize().as_slice() != r.hash.as_slice() {
            return Err(broken("its fields do not match its hash (edited)".into()).into());
        }
        last = Some(r.hash.clone());
    }
    Ok(Verified {
        entries: rows.len() as i64,
        head: last.map(hex::encode),
    })
}
