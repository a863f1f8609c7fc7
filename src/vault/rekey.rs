//! Moving every stored secret to the keyring's first key, and counting who holds what.
//!
//! `rekey` works in batches, each its own transaction: it takes rows under any other
//! key (`FOR UPDATE SKIP LOCKED`, so it never waits on a running rotation and a second
//! rekey shares the work), opens each with the key that sealed it, seals it again under
//! the first key and writes it back in place. Killed at any moment, a batch either
//! committed whole or left its rows as they were, readable by the old key: run it again
//! to go on. Daemons must hold the new keyring before it runs, or they could not read
//! what it rewrote.

use sqlx::PgPool;

use super::{Error, MasterKey, Sealed};

/// How many rows were moved, and how many are left under other keys (rows a rotation
/// held locked while the last batch ran).
#[derive(Debug, Default)]
pub struct Rekeyed {
    pub versions: u64,
    pub supplied: u64,
}

/// Re-encrypts up to `batch` rows of each kind per transaction until none is left under
/// another key; `progress` is called after each committed batch.
pub async fn rekey(pool: &PgPool, key: &MasterKey, batch: i64, mut progress: impl FnMut(&Rekeyed)) -> Result<Rekeyed, Error> {
    let target = key.key_id().to_string();
    let mut done = Rekeyed::default();
    loop {
        let mut tx = pool.begin().await?;
        let versions = sqlx::query!(
            "SELECT credential_id, version, key_id, nonce, ciphertext FROM credential_versions
              WHERE key_id <> $1 ORDER BY credential_id, version LIMIT $2 FOR UPDATE SKIP LOCKED",
            target,
            batch
        )
        .fetch_all(&mut *tx)
        .await?;
        for r in &versions {
            let sealed = Sealed { key_id: r.key_id.clone(), nonce: r.nonce.clone(), ciphertext: r.ciphertext.clone() };
            let password = key.open(r.credential_id, r.version, &sealed)?;
            let again = key.seal(r.credential_id, r.version, &password);
            sqlx::query!(
                "UPDATE credential_versions SET key_id = $3, nonce = $4, ciphertext = $5 WHERE credential_id = $1 AND version = $2",
                r.credential_id,
                r.version,
                again.key_id,
                again.nonce,
                again.ciphertext
            )
            .execute(&mut *tx)
            .await?;
        }
        let supplied = sqlx::query!(
            "SELECT subtask_id, key_id, nonce, ciphertext FROM subtask_secrets
              WHERE key_id <> $1 ORDER BY subtask_id LIMIT $2 FOR UPDATE SKIP LOCKED",
            target,
            batch
        )
        .fetch_all(&mut *tx)
        .await?;
        for r in &supplied {
            let sealed = Sealed { key_id: r.key_id.clone(), nonce: r.nonce.clone(), ciphertext: r.ciphertext.clone() };
            let password = key.open_for_subtask(r.subtask_id, &sealed)?;
            let again = key.seal_for_subtask(r.subtask_id, &password);
            sqlx::query!(
                "UPDATE subtask_secrets SET key_id = $2, nonce = $3, ciphertext = $4 WHERE subtask_id = $1",
                r.subtask_id,
                again.key_id,
                again.nonce,
                again.ciphertext
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        if versions.is_empty() && supplied.is_empty() {
            // Nothing free to take: done, unless rows are locked by a rotation right now.
            let left = count_elsewhere(pool, &target).await?;
            if left == 0 {
                return Ok(done);
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            continue;
        }
        done.versions += versions.len() as u64;
        done.supplied += supplied.len() as u64;
        progress(&done);
    }
}

async fn count_elsewhere(pool: &PgPool, target: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT (SELECT count(*) FROM credential_versions WHERE key_id <> $1)
                + (SELECT count(*) FROM subtask_secrets WHERE key_id <> $1) AS "n!""#,
        target
    )
    .fetch_one(pool)
    .await
}

/// Stored secrets per key id: (key id, versions, supplied passwords), most first.
pub async fn status(pool: &PgPool) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT key_id AS "key_id!", sum(v) AS "versions!", sum(s) AS "supplied!" FROM (
               SELECT key_id, 1 AS v, 0 AS s FROM credential_versions
               UNION ALL SELECT key_id, 0, 1 FROM subtask_secrets) t
            GROUP BY key_id ORDER BY sum(v) + sum(s) DESC, key_id"#
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.key_id, r.versions, r.supplied)).collect())
}
