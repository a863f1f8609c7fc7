//! The broker link: connecting to RabbitMQ and declaring the topology rotor uses
//! (the intake queue and its exchanges, the dead-letter queue, the events exchange).
//! Intake, the event publisher and the CLI all start here.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use secrecy::{ExposeSecret, SecretString};

use crate::config::AmqpSettings;

pub const KIND_CREDENTIALS_UPDATE: &str = "credentials.update";
pub const KIND_PRIVX_ROTATE: &str = "privx.rotate";
pub const KIND_PRIVX_PASSWORD: &str = "privx.password";
pub const KINDS: [&str; 3] = [KIND_CREDENTIALS_UPDATE, KIND_PRIVX_ROTATE, KIND_PRIVX_PASSWORD];
pub const ERROR_HEADER: &str = "x-rotor-error";

pub async fn connect(url: &SecretString, name: &str) -> Result<Connection, lapin::Error> {
    let props = ConnectionProperties::default()
        .with_connection_name(name.into())
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio);
    Connection::connect(url.expose_secret(), props).await
}

/// Declares everything rotor uses; idempotent.
pub async fn declare_topology(ch: &Channel, s: &AmqpSettings) -> Result<(), lapin::Error> {
    let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
    ch.exchange_declare(&s.exchange, ExchangeKind::Direct, durable, FieldTable::default()).await?;
    ch.exchange_declare(&s.dead_letter_exchange, ExchangeKind::Fanout, durable, FieldTable::default()).await?;
    ch.exchange_declare(&s.events_exchange, ExchangeKind::Topic, durable, FieldTable::default()).await?;
    let qopts = QueueDeclareOptions { durable: true, ..Default::default() };
    ch.queue_declare(&s.dead_letter_queue, qopts, FieldTable::default()).await?;
    ch.queue_bind(&s.dead_letter_queue, &s.dead_letter_exchange, "", QueueBindOptions::default(), FieldTable::default())
        .await?;
    let mut args = FieldTable::default();
    args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(s.dead_letter_exchange.as_str().into()));
    ch.queue_declare(&s.queue, qopts, args).await?;
    for key in KINDS {
        ch.queue_bind(&s.queue, &s.exchange, key, QueueBindOptions::default(), FieldTable::default()).await?;
    }
    Ok(())
}

