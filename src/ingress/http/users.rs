//! API users who log in, as VCF clients do: a password (checked against its argon2 hash)
//! buys a short-lived access token and a refresh token. Access tokens are HS256 JWTs
//! signed with a key derived from the master key, so every instance holding the keyring
//! accepts them; what a user may do is read from the configuration at each request, so
//! removing a user or a scope takes effect at once. Refresh tokens are random, kept only
//! as their SHA-256 digest, and end after `REFRESH_TTL` or when deleted.

use std::sync::{Arc, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use rand::TryRngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::access::Grant;
use crate::config::{Error as ConfigError, HttpSettings};
use crate::vault::MasterKey;

/// How long an access token is good for (VCF's is an hour too).
pub const ACCESS_TTL: Duration = Duration::hours(1);
/// How long a refresh token is good for (VCF: 24 hours).
pub const REFRESH_TTL: Duration = Duration::hours(24);

/// The only JWT header rotor writes or accepts (no algorithm is taken from a token).
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;
const ISSUER: &str = "rotor";

pub struct User {
    pub username: String,
    hash: SecretString,
    pub grant: Grant,
}

/// The configured users and the key their access tokens are signed with.
pub struct Users {
    users: Vec<User>,
    key: Arc<MasterKey>,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    iat: i64,
    exp: i64,
    jti: String,
}

/// Why a log-in or a token was refused (never which of username and password was wrong).
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    BadLogin,
    BadToken,
}

impl Users {
    /// Reads each `[[http.user]]`'s hash file; names the key of a file that is missing,
    /// too open, or not an argon2 hash in PHC form.
    pub fn load(settings: &HttpSettings, key: Arc<MasterKey>) -> Result<Self, ConfigError> {
        let users = settings
            .user
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let field = format!("http.user[{i}].password_hash_file");
                let hash = crate::config::secret_file(&field, &u.password_hash_file)?;
                let parsed = PasswordHash::new(hash.expose_secret().trim()).map_err(|e| {
                    ConfigError::invalid(&field, format!("not a PHC password hash: {e}"))
                })?;
                if !parsed.algorithm.as_str().starts_with("argon2") {
                    return Err(ConfigError::invalid(
                        &field,
                        "must be an argon2 hash (`rotor user hash-password`)",
                    ));
                }
                Ok(User {
                    username: u.username.clone(),
                    hash: SecretString::from(hash.expose_secret().trim()),
                    grant: Grant {
                        scopes: u.scopes.clone(),
                        resources: u.resources.clone(),
                    },
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Users { users, key })
    }

    pub fn find(&self, username: &str) -> Option<&User> {
        self.users.iter().find(|u| u.username == username)
    }

    /// Checks a password (slow by design: run it off the async threads). An unknown user
    /// costs the same as a wrong password.
    pub fn check_password(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<&User, Refused> {
        let user = self.find(username);
        let hash = user
            .map(|u| u.hash.expose_secret())
            .unwrap_or_else(|| decoy_hash());
        let ok = PasswordHash::new(hash).ok().is_some_and(|h| {
            Argon2::default()
                .verify_password(password.expose_secret().as_bytes(), &h)
                .is_ok()
        });
        match user {
            Some(u) if ok => Ok(u),
            _ => Err(Refused::BadLogin),
        }
    }

    /// A signed access token for `username`, good for `ACCESS_TTL` from `now`.
    pub fn access_token(&self, username: &str, now: DateTime<Utc>) -> SecretString {
        let claims = Claims {
            iss: ISSUER.into(),
            sub: username.into(),
            iat: now.timestamp(),
            exp: (now + ACCESS_TTL).timestamp(),
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let payload = serde_json::to_vec(&claims).expect("claims serialize");
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(HEADER),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let tag = self.key.sign_token(signed.as_bytes());
        SecretString::from(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag)))
    }

    /// The user an access token names, if it is rotor's, unexpired, and the user is
    /// still configured.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<&User, Refused> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Refused::BadToken);
        };
        if URL_SAFE_NO_PAD.decode(header).ok().as_deref() != Some(HEADER.as_bytes()) {
            return Err(Refused::BadToken);
        }
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| Refused::BadToken)?;
        let signed = &token[..header.len() + 1 + payload.len()];
        if !self.key.verify_token(signed.as_bytes(), &tag) {
            return Err(Refused::BadToken);
        }
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|p| serde_json::from_slice(&p).ok())
            .ok_or(Refused::BadToken)?;
        if claims.iss != ISSUER || claims.exp <= now.timestamp() {
            return Err(Refused::BadToken);
        }
        self.find(&claims.sub).ok_or(Refused::BadToken)
    }
}

/// Whether a bearer token looks like one of ours (a JWT) rather than a static token.
pub fn is_access_token(token: &str) -> bool {
    token.starts_with("eyJ") && token.matches('.').count() == 2
}

/// A new refresh token: 256 random bits, URL-safe base64.
pub fn new_refresh_token() -> SecretString {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes[..])
        .expect("the OS random source");
    SecretString::from(URL_SAFE_NO_PAD.encode(&bytes[..]))
}

/// What the database keeps of a refresh token.
pub fn refresh_digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// An argon2id hash (PHC form, default parameters) of `password`.
pub fn hash_password(password: &SecretString) -> String {
    let mut salt = [0u8; 16];
    rand::rngs::OsRng
        .try_fill_bytes(&mut salt)
        .expect("the OS random source");
    let salt = SaltString::encode_b64(&salt).expect("16 bytes encode");
    Argon2::default()
        .hash_password(password.expose_secret().as_bytes(), &salt)
        .expect("argon2 with default parameters")
        .to_string()
}

/// A hash no password matches in practice, checked for unknown users.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_password(&new_refresh_token()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Scope;

    fn users() -> Users {
        let key = Arc::new(
            MasterKey::from_base64("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=")
                .expect("32 bytes"),
        );
        let password = SecretString::from("correct horse battery staple");
        Users {
            users: vec![User {
                username: "vcf-admin".into(),
                hash: SecretString::from(hash_password(&password)),
                grant: Grant {
                    scopes: vec![Scope::Admin],
                    resources: vec![],
                },
            }],
            key,
        }
    }

    #[test]
    fn a_password_buys_a_token_that_verifies_until_it_expires() {
        let u = users();
        assert!(u
            .check_password(
                "vcf-admin",
                &SecretString::from("correct horse battery staple")
            )
            .is_ok());
        assert_eq!(
            u.check_password("vcf-admin", &SecretString::from("wrong"))
                .err(),
            Some(Refused::BadLogin)
        );
        assert_eq!(
            u.check_password(
                "nobody",
                &SecretString::from("correct horse battery staple")
            )
            .err(),
            Some(Refused::BadLogin)
        );
        let now = Utc::now();
        let token = u.access_token("vcf-admin", now);
        assert!(is_access_token(token.expose_secret()));
        assert_eq!(
            u.verify(token.expose_secret(), now)
                .map(|u| u.username.as_str()),
            Ok("vcf-admin")
        );
        assert_eq!(
            u.verify(token.expose_secret(), now + ACCESS_TTL).err(),
            Some(Refused::BadToken)
        );
    }

    #[test]
    fn a_changed_or_foreign_token_is_refused() {
        let u = users();
        let now = Utc::now();
        let token = u.access_token("vcf-admin", now);
        let t = token.expose_secret();
        // Another subject in the payload, the signature kept.
        let parts: Vec<&str> = t.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(
            String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap())
                .unwrap()
                .replace("vcf-admin", "vcf-admix"),
        );
        assert_eq!(
            u.verify(&format!("{}.{forged}.{}", parts[0], parts[2]), now)
                .err(),
            Some(Refused::BadToken)
        );
        // "alg": "none" and no signature.
        let none = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        assert_eq!(
            u.verify(&format!("{none}.{}.", parts[1]), now).err(),
            Some(Refused::BadToken)
        );
        // Signed under another master key.
        let other = Users {
            users: vec![],
            key: Arc::new(
                MasterKey::from_base64("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=").unwrap(),
            ),
        };
        let foreign = other.access_token("vcf-admin", now);
        assert_eq!(
            u.verify(foreign.expose_secret(), now).err(),
            Some(Refused::BadToken)
        );
    }
}
