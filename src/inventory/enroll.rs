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

/// A new token, good for `minutes`, and when it expires. The host may register only a
/// resource id within the issuer's `patterns` (SQL LIKE, from its resource globs).
pub async fn issue(
    pool: &PgPool,
    created_by: &str,
    patterns: &[String],
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
        "INSERT INTO enrollment_tokens (digest, created_by, resource_patterns, expires_at) VALUES ($1, $2, $3, $4)",
        digest(token.expose_secret()),
        created_by,
        patterns,
        expires
    )
    .execute(pool)
    .await?;
    Ok((token, expires))
}

/// What a token allows.
pub enum Consumed {
    /// Used now, for this resource id; who issued it.
    Used { issuer: String },
    /// Unknown, used or expired.
    Refused,
    /// Good, but the resource id lies outside its issuer's globs (left unused).
    OutsideGrant,
}

/// Uses `token` for `resource_id`, if it is good and the id lies within its issuer's
/// resource globs.
pub async fn consume(
    pool: &PgPool,
    token: &SecretString,
    resource_id: &str,
) -> Result<Consumed, sqlx::Error> {
    let used = sqlx::query_scalar!(
        "UPDATE enrollment_tokens SET used_at = now(), resource_id = $2
          WHERE digest = $1 AND used_at IS NULL AND expires_at > now() AND $2 LIKE ANY(resource_patterns)
          RETURNING created_by",
        digest(token.expose_secret()),
        resource_id
    )
    .fetch_optional(pool)
    .await?;
    if let Some(issuer) = used {
        return Ok(Consumed::Used { issuer });
    }
    let good = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM enrollment_tokens WHERE digest = $1 AND used_at IS NULL AND expires_at > now()"#,
        digest(token.expose_secret())
    )
    .fetch_one(pool)
    .await?;
    Ok(if good > 0 {
        Consumed::OutsideGrant
    } else {
        Consumed::Refused
    })
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
