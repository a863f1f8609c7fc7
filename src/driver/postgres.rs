//! `postgresql`: a database role's password. The admin (a role with CREATEROLE, its
//! password from the admin's `password_file`) runs `ALTER ROLE ... PASSWORD` with a
//! SCRAM-SHA-256 verifier rotor computes itself, so the cleartext never reaches the
//! server, its log or `pg_stat_statements`. Verification connects as the role.
//! TLS is used when the server offers it (sslmode prefer).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::TryRngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection};

use super::blocking::block_on;
use super::contract::{settable, Error, Host, Login};
use super::platform::Driver;
use super::ssh::LoginLine;

/// PostgreSQL's own default iteration count for SCRAM-SHA-256 verifiers.
const ITERATIONS: u32 = 4096;

/// The `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>` verifier of `password`
/// (RFC 5802, RFC 7677), as PostgreSQL stores it.
pub fn scram_verifier(password: &SecretString, salt: &[u8; 16]) -> String {
    let mut salted = zeroize::Zeroizing::new([0u8; 32]);
    pbkdf2::pbkdf2_hmac::<Sha256>(
        password.expose_secret().as_bytes(),
        salt,
        ITERATIONS,
        &mut *salted,
    );
    let hmac = |key: &[u8], text: &[u8]| {
        let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
        m.update(text);
        m.finalize().into_bytes()
    };
    let client_key = hmac(&*salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&*salted, b"Server Key");
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "SCRAM-SHA-256${ITERATIONS}:{}${}:{}",
        b64.encode(salt),
        b64.encode(stored_key),
        b64.encode(server_key)
    )
}

fn options(host: &Host, username: &str, password: &str) -> PgConnectOptions {
    PgConnectOptions::new()
        .host(&host.address)
        .port(host.port)
        .username(username)
        .password(password)
        .database("postgres")
        .ssl_mode(PgSslMode::Prefer)
        // Statements are never logged by rotor: ALTER ROLE carries a verifier.
        .disable_statement_logging()
}

/// What a failed connection says: a refused password (28P01) or something else.
fn refused(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("28P01"))
}

fn connect_error(host: &Host, e: sqlx::Error) -> Error {
    match e {
        sqlx::Error::Io(io) => Error::Connect {
            address: host.endpoint(),
            message: io.to_string(),
        },
        other => Error::Protocol {
            address: host.endpoint(),
            message: other.to_string(),
        },
    }
}

pub struct Postgres;

impl Driver for Postgres {
    fn apply(
        &self,
        host: &Host,
        username: &str,
        _old: Option<&SecretString>,
        new: &SecretString,
    ) -> Result<(), Error> {
        settable(new)?;
        let admin = host.admin.as_ref().ok_or(Error::NoAdmin)?;
        let admin_password = admin.password()?;
        let mut salt = [0u8; 16];
        rand::rngs::OsRng
            .try_fill_bytes(&mut salt)
            .expect("the OS random source works");
        let verifier = scram_verifier(new, &salt);
        // A role name is an identifier: quoted, with its quotes doubled.
        let statement = format!(
            "ALTER ROLE \"{}\" PASSWORD '{verifier}'",
            username.replace('"', "\"\"")
        );
        block_on(host, "PostgreSQL", 1, async {
            let mut conn = options(host, &admin.username, admin_password.expose_secret())
                .connect()
                .await
                .map_err(|e| {
                    if refused(&e) {
                        Error::AdminAuth {
                            username: admin.username.clone(),
                            message: "the admin password is refused".into(),
                        }
                    } else {
                        connect_error(host, e)
                    }
                })?;
            let done = sqlx::raw_sql(&statement).execute(&mut conn).await;
            let _ = conn.close().await;
            done.map(|_| ()).map_err(|e| match e {
                sqlx::Error::Database(d) => Error::Rejected {
                    message: format!("PostgreSQL refused ALTER ROLE: {}", d.message()),
                },
                // Cut off mid-way: the change may or may not have happened.
                other => Error::Protocol {
                    address: host.endpoint(),
                    message: other.to_string(),
                },
            })
        })?
    }

    fn login(&self, host: &Host, username: &str, password: &SecretString) -> Result<Login, Error> {
        block_on(host, "PostgreSQL", 1, async {
            match options(host, username, password.expose_secret())
                .connect()
                .await
            {
                Ok(conn) => {
                    let _ = conn.close().await;
                    Ok(Login::Accepted)
                }
                Err(e) if refused(&e) => Ok(Login::Refused),
                Err(e) => Err(connect_error(host, e)),
            }
        })?
    }

    /// PostgreSQL has no connection to open ahead: each login is its own.
    fn open_login(&self, _host: &Host) -> Result<Option<LoginLine>, Error> {
        Ok(None)
    }

    fn verify_both(
        &self,
        host: &Host,
        username: &str,
        old: &SecretString,
        new: &SecretString,
        _line: Option<LoginLine>,
    ) -> Result<(Login, Option<Login>), Error> {
        // A refused login does not keep a PostgreSQL connection: one each, old first.
        super::platform::verify_in_turn(self, host, username, old, new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verifier_has_postgresqls_shape() {
        // Its value is proven by PostgreSQL itself in tests/it/postgres.rs (a login with
        // the password it was made from).
        let salt: [u8; 16] = *b"rotor-salt-16byt";
        let v = scram_verifier(&SecretString::from("pencil".to_string()), &salt);
        assert!(
            v.starts_with("SCRAM-SHA-256$4096:cm90b3Itc2FsdC0xNmJ5dA==$"),
            "{v}"
        );
        let keys: Vec<&str> = v.rsplit('$').next().unwrap().split(':').collect();
        assert_eq!((keys.len(), keys[0].len(), keys[1].len()), (2, 44, 44));
        assert_ne!(
            v,
            scram_verifier(&SecretString::from("pencil".to_string()), &[0; 16])
        );
    }
}
