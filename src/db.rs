//! The PostgreSQL pool and migrations.

use std::str::FromStr;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::PgPool;

use crate::config::DatabaseSettings;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl DatabaseSettings {
    pub fn connect_options(&self) -> anyhow::Result<PgConnectOptions> {
        let url = self.url()?;
        let options = PgConnectOptions::from_str(url.expose_secret())
            .map(|o| o.application_name("rotor"))
            .map_err(|_| {
                anyhow::anyhow!("configuration key `database.url`: not a valid PostgreSQL URL")
            })?;
        Ok(match &self.ca_file {
            Some(ca) => {
                if !ca.is_file() {
                    anyhow::bail!(
                        "configuration key `database.ca_file`: {} is not a readable file",
                        ca.display()
                    );
                }
                // A CA means the server is to be verified: never `prefer` or `require`,
                // which an attacker in the path could strip or impersonate.
                let verified = ["sslmode=verify-ca", "sslmode=verify-full"]
                    .iter()
                    .any(|m| url.expose_secret().contains(m));
                let options = if verified {
                    options
                } else {
                    options.ssl_mode(PgSslMode::VerifyFull)
                };
                options.ssl_root_cert(ca)
            }
            None => options,
        })
    }
}

pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<PgPool> {
    connect_sized(settings, settings.max_connections).await
}

/// Connections of the pool intake records requests with, apart from the workers':
/// a burst of rotations never makes a request wait for a connection.
pub const INTAKE_CONNECTIONS: u32 = 4;

pub async fn connect_sized(
    settings: &DatabaseSettings,
    max_connections: u32,
) -> anyhow::Result<PgPool> {
    let options = settings.connect_options()?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to the database: {e}"))
}

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .map_err(|e| anyhow::anyhow!("migrations failed: {e}"))
}
