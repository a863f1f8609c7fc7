//! One-time enrollment tokens (SPEC section 8): each deploy script carries one. Run on a
//! new host, the script presents it to register that host, once, before it expires. Only
//! a SHA-256 digest of a token is stored.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use rand::TryRngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A new token, good for `minutes`, and when it expires.
pub async fn issue(
    pool: &PgPool,
    created_by: &str,
    minutes: u32,
) -> Result<(SecretString, DateTime<Utc>), sqlx::Error> {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng
        .try_fill_bytes(&mut *bytes)
        .expect("the OS random source works");
    let token =
        SecretString::from(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&*bytes));
    let expires = Utc::now() + chrono::Duration::minutes(i64::from(minutes));
    sqlx::query!("DELETE FROM enrollment_tokens WHERE expires_at < now() - interval '7 days'")
        .execute(pool)
        .await?;
    sqlx::query!(
        "INSERT INTO enrollment_tokens (digest, created_by, expires_at) VALUES ($1, $2, $3)",
        digest(token.expose_secret()),
        created_by,
        expires
    )
    .execute(pool)
    .await?;
    Ok((token, expires))
}

/// Uses `token` for `resource_id`: who issued it, or None when it is unknown, used or
/// expired.
pub async fn consume(
    pool: &PgPool,
    token: &SecretString,
    resource_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "UPDATE enrollment_tokens SET used_at = now(), resource_id = $2
          WHERE digest = $1 AND used_at IS NULL AND expires_at > now() RETURNING created_by",
        digest(token.expose_secret()),
        resource_id
    )
    .fetch_optional(pool)
    .await
}

/// Gives a token back when the registration it was used for failed before anything was
/// written.
pub async fn release(pool: &PgPool, token: &SecretString) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE enrollment_tokens SET used_at = NULL, resource_id = NULL WHERE digest = $1",
        digest(token.expose_secret())
    )
    .execute(pool)
    .await?;
    Ok(())
}
