//! Moving every stored secret to the keyring's first key, and counting who holds what.
//!
//! `rekey` works in batches, each its own transaction: it takes rows under any other
//! key (`FOR UPDATE SKIP LOCKED`, so it never waits on a running rotation and a second
//! rekey shares the work), opens each with the key that sealed it, seals it again under
//! the first key and writes it back in place. Killed at any moment, a batch either
//! committed whole or left its rows as they were, readable by the old key: run it again
//! to go on. First it makes its first key the one every process seals with
//! (`sealing::set`): a daemon that does not hold that key then refuses to seal (a
//! transient error: its rotation waits) until it is restarted with the new keyring,
//! so no row is written under a key about to go.

use sqlx::PgPool;

use super::{Error, MasterKey, Sealed};

/// How many rows were moved, and what could not be: rows under a key this ring does
/// not hold, or that would not open (each named, for the operator).
#[derive(Debug, Default)]
pub struct Rekeyed {
    pub versions: u64,
    pub supplied: u64,
    pub unopenable: Vec<String>,
}

/// Re-encrypts up to `batch` rows of each kind per transaction until none is left under
/// another key; `progress` is called after each committed batch.
pub async fn rekey(
    pool: &PgPool,
    key: &MasterKey,
    batch: i64,
    mut progress: impl FnMut(&Rekeyed),
) -> Result<Rekeyed, Error> {
    let target = key.key_id().to_string();
    // From now on every process seals under the new key (or refuses to seal at all).
    super::sealing::set(&mut *pool.acquire().await?, key).await?;
    let others: Vec<String> = key
        .key_ids()
        .into_iter()
        .skip(1)
        .map(String::from)
        .collect();
    let mut done = Rekeyed::default();
    let mut skipped: Vec<(uuid::Uuid, i32)> = Vec::new();
    let mut waited = false;
    loop {
        let mut tx = pool.begin().await?;
        let versions = sqlx::query!(
            "SELECT credential_id, version, key_id, nonce, ciphertext FROM credential_versions
              WHERE key_id = ANY($1) AND NOT (credential_id, version) = ANY(SELECT * FROM unnest($3::uuid[], $4::int[]))
              ORDER BY credential_id, version LIMIT $2 FOR UPDATE SKIP LOCKED",
            &others,
            batch,
            &skipped.iter().map(|s| s.0).collect::<Vec<_>>(),
            &skipped.iter().map(|s| s.1).collect::<Vec<_>>()
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut moved = 0;
        for r in &versions {
            let sealed = Sealed {
                key_id: r.key_id.clone(),
                nonce: r.nonce.clone(),
                ciphertext: r.ciphertext.clone(),
            };
            let Ok(password) = key.open(r.credential_id, r.version, &sealed) else {
                skipped.push((r.credential_id, r.version));
                done.unopenable.push(format!(
                    "credential {} version {} (key {}) does not open",
                    r.credential_id, r.version, r.key_id
                ));
                continue;
            };
            moved += 1;
            let again = key.seal_with(&target, r.credential_id, r.version, &password)?;
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
              WHERE key_id = ANY($1) ORDER BY subtask_id LIMIT $2 FOR UPDATE SKIP LOCKED",
            &others,
            batch
        )
        .fetch_all(&mut *tx)
        .await?;
        for r in &supplied {
            let sealed = Sealed {
                key_id: r.key_id.clone(),
                nonce: r.nonce.clone(),
                ciphertext: r.ciphertext.clone(),
            };
            let password = key.open_for_subtask(r.subtask_id, &sealed)?;
            let again = key.seal_for_subtask_with(&target, r.subtask_id, &password)?;
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
        if moved == 0 && supplied.is_empty() {
            // Nothing free to take: done, unless rows are locked by a rotation right now.
            let left = count_elsewhere(pool, &others).await? - skipped.len() as i64;
            if left <= 0 {
                let foreign = sqlx::query_scalar!(
                    r#"SELECT (SELECT count(*) FROM credential_versions WHERE NOT key_id = ANY($1))
                            + (SELECT count(*) FROM subtask_secrets WHERE NOT key_id = ANY($1)) AS "n!""#,
                    &key.key_ids().into_iter().map(String::from).collect::<Vec<_>>()
                )
                .fetch_one(pool)
                .await?;
                if foreign > 0 {
                    done.unopenable.push(format!("{foreign} secrets are under keys this ring does not hold (see `rotor vault status`)"));
                }
                return Ok(done);
            }
            if !waited {
                tracing::warn!(
                    rows = left,
                    "waiting for rotations that hold rows to finish"
                );
                waited = true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            continue;
        }
        done.versions += moved as u64;
        done.supplied += supplied.len() as u64;
        progress(&done);
    }
}

/// Rows still under the ring's older keys.
async fn count_elsewhere(pool: &PgPool, others: &[String]) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT (SELECT count(*) FROM credential_versions WHERE key_id = ANY($1))
                + (SELECT count(*) FROM subtask_secrets WHERE key_id = ANY($1)) AS "n!""#,
        others
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
    Ok(rows
        .into_iter()
        .map(|r| (r.key_id, r.versions, r.supplied))
        .collect())
}
