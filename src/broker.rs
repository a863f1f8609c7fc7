//! The broker link: connecting to RabbitMQ and declaring the topology rotor uses
//! (the intake queue and its exchanges, the dead-letter queue, the events exchange).
//! Intake, the event publisher and the CLI all start here.

use std::str::FromStr;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::tcp::OwnedTLSConfig;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use secrecy::{ExposeSecret, SecretString};

use crate::config::{self, AmqpSettings};

pub const KIND_CREDENTIALS_UPDATE: &str = "credentials.update";
pub const KIND_PRIVX_ROTATE: &str = "privx.rotate";
pub const KIND_PRIVX_PASSWORD: &str = "privx.password";
pub const KINDS: [&str; 3] = [
    KIND_CREDENTIALS_UPDATE,
    KIND_PRIVX_ROTATE,
    KIND_PRIVX_PASSWORD,
];
pub const ERROR_HEADER: &str = "x-rotor-error";

/// The largest AMQP frame rotor asks for on the connections that only carry its own
/// small-headed messages (events, the start-up probe), unless the URL says
/// `?frame_max=`. lapin keeps 32 frames of buffer each way per connection: at the
/// broker's 128 KiB that is 8 MiB a connection, resident once used. Intake keeps the
/// broker's size: a content header cannot be split, and a producer's (or a dead-letter
/// copy's) header may be as large as the broker allows.
pub const SMALL_FRAMES: u32 = 16 * 1024;

/// How to reach the broker: its URL (`amqps://` for TLS) and the CA that signs its
/// certificate, read once from the settings.
#[derive(Clone)]
pub struct Link {
    url: SecretString,
    ca_pem: Option<String>,
}

impl Link {
    pub fn from_settings(s: &AmqpSettings) -> Result<Self, config::Error> {
        let url = s.url()?;
        let ca_pem = match &s.ca_file {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                config::Error::invalid(
                    "amqp.ca_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?),
            None => None,
        };
        if ca_pem.is_some() && !url.expose_secret().starts_with("amqps://") {
            return Err(config::Error::invalid(
                "amqp.ca_file",
                "is only used with an amqps:// URL",
            ));
        }
        Ok(Link { url, ca_pem })
    }

    /// Connects; with `amqps://` the broker's certificate is verified against `ca_file`
    /// (or the system's roots) and its name against the URL's host.
    pub async fn connect(&self, name: &str) -> Result<Connection, lapin::Error> {
        self.connect_framed(name, None).await
    }

    /// The same, asking for frames of at most `frame_max` bytes (see `SMALL_FRAMES`).
    pub async fn connect_framed(
        &self,
        name: &str,
        frame_max: Option<u32>,
    ) -> Result<Connection, lapin::Error> {
        let props = ConnectionProperties::default()
            .with_connection_name(name.into())
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio);
        let tls = OwnedTLSConfig {
            identity: None,
            cert_chain: self.ca_pem.clone(),
        };
        let mut uri = lapin::uri::AMQPUri::from_str(self.url.expose_secret())
            .map_err(|e| lapin::Error::from(std::io::Error::other(e)))?;
        if let Some(max) = frame_max {
            uri.query.frame_max.get_or_insert(max);
        }
        Connection::connect_uri_with_config(uri, props, tls).await
    }

    /// Connects once at start: a certificate the CA does not vouch for is a setting to
    /// fix, so it stops rotor with the reason; a broker that is merely away is retried
    /// by the intake.
    pub async fn probe(&self) -> anyhow::Result<()> {
        match self.connect_framed("rotor probe", Some(SMALL_FRAMES)).await {
            Ok(conn) => {
                let _ = conn.close(200, "probe").await;
                Ok(())
            }
            Err(e) if e.to_string().contains("certificate") => {
                anyhow::bail!("cannot connect to the broker over TLS (amqp.url, amqp.ca_file): {e}")
            }
            Err(e) => {
                tracing::warn!(error = %e, "the broker is not reachable yet; the intake keeps trying");
                Ok(())
            }
        }
    }

    /// The user the URL logs in as: the `user_id` the broker accepts on what rotor publishes.
    pub fn user(&self) -> String {
        lapin::uri::AMQPUri::from_str(self.url.expose_secret())
            .map(|u| u.authority.userinfo.username)
            .unwrap_or_else(|_| "guest".into())
    }
}

/// Where the broker's own dead letters from the intake queue go: only rotor reads it.
pub fn quarantine_queue(s: &AmqpSettings) -> String {
    format!("{}.quarantine", s.queue)
}

/// Declares everything rotor uses; idempotent. The intake queue dead-letters (by its own
/// argument, which no policy overrides) to `dead_letter_exchange`, bound to the
/// quarantine queue only, which rotor consumes as a second intake; rotor writes the
/// dead-letter queue itself, redacted. An older topology's binding of the dead-letter
/// queue to that exchange is removed.
pub async fn declare_topology(ch: &Channel, s: &AmqpSettings) -> Result<(), lapin::Error> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        &s.exchange,
        ExchangeKind::Direct,
        durable,
        FieldTable::default(),
    )
    .await?;
    ch.exchange_declare(
        &s.dead_letter_exchange,
        ExchangeKind::Fanout,
        durable,
        FieldTable::default(),
    )
    .await?;
    ch.exchange_declare(
        &s.events_exchange,
        ExchangeKind::Topic,
        durable,
        FieldTable::default(),
    )
    .await?;
    let qopts = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(&s.dead_letter_queue, qopts, FieldTable::default())
        .await?;
    ch.queue_unbind(
        &s.dead_letter_queue,
        &s.dead_letter_exchange,
        "",
        FieldTable::default(),
    )
    .await?;
    // The quarantine dead-letters back to its own exchange: a cycle the broker breaks by
    // dropping the message, so even a policy on it never moves an original elsewhere.
    let quarantine = quarantine_queue(s);
    let mut back = FieldTable::default();
    back.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(s.dead_letter_exchange.as_str().into()),
    );
    ch.queue_declare(&quarantine, qopts, back).await?;
    ch.queue_bind(
        &quarantine,
        &s.dead_letter_exchange,
        "",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(s.dead_letter_exchange.as_str().into()),
    );
    ch.queue_declare(&s.queue, qopts, args).await?;
    for key in KINDS {
        ch.queue_bind(
            &s.queue,
            &s.exchange,
            key,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    }
    Ok(())
}
