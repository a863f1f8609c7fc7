//! AMQP intake: declares the topology, turns each message into a task in one
//! transaction and only then acks it. Refused messages go to the dead-letter queue
//! with `x-rotor-error`; replies go to `reply_to`. Reconnects when the broker goes away.
//!
//! Every message names its producer by the AMQP `user_id` property, which RabbitMQ
//! checks against the publishing connection's user; `[[amqp.producer]]` maps that user
//! to scopes and resource globs. An unnamed or unknown producer changes nothing.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::deadletter::{log_quarantined, settle_refusal};
use crate::broker::{declare_topology, quarantine_queue, Link, KINDS, KIND_CREDENTIALS_UPDATE, KIND_PRIVX_PASSWORD, KIND_PRIVX_ROTATE};
use crate::config::AmqpSettings;
use crate::engine::{control, repo, view};
use crate::ingress::submit::{Request, Submitter};
use crate::access::{Grant, Requester, RequesterKind, Scope};
use crate::requests::{self, Origin, Refusal, RejectCode, Rejection};

pub struct Intake {
    pub submitter: Arc<Submitter>,
    pub settings: AmqpSettings,
    pub link: Link,
    /// True while consuming (read by /readyz and /metrics).
    pub connected: Arc<std::sync::atomic::AtomicBool>,
    /// Refused producers, logged on `rotor::security` (rate-limited per producer).
    pub refused: crate::ingress::guard::FailedAuth,
}

impl Intake {
    /// The producer a message names, with what it may do; or why it may do nothing.
    fn producer(&self, d: &lapin::message::Delivery) -> Result<(Requester, Grant), Rejection> {
        let denied = |field: &str, message: String| Rejection::new(RejectCode::PermissionDenied, field, message);
        let Some(user) = d.properties.user_id().as_ref().map(|u| u.as_str().to_string()) else {
            return Err(denied("user_id", "the message has no AMQP user_id property; set it to the user the producer connects as".into()));
        };
        let Some(p) = self.settings.producer.iter().find(|p| p.user == user) else {
            return Err(denied("user_id", format!("producer `{user}` is not configured ([[amqp.producer]])")));
        };
        let grant = Grant { scopes: p.scopes.clone(), resources: p.resources.clone() };
        if !grant.has(Scope::CredentialsManage) {
            return Err(denied("user_id", format!("producer `{user}` lacks scope `credentials:manage`")));
        }
        if let Some(reply_to) = d.properties.reply_to() {
            if self.is_own_queue(reply_to.as_str()) {
                return Err(Rejection::new(RejectCode::InvalidRequest, "reply_to", format!("`{reply_to}` is one of rotor's own queues")));
            }
        }
        Ok((Requester::new(RequesterKind::Producer, user), grant))
    }

    /// Whether `queue` is one rotor consumes or keeps (so a reply there would feed rotor).
    fn is_own_queue(&self, queue: &str) -> bool {
        let s = &self.settings;
        queue == s.queue || queue == s.dead_letter_queue || queue == quarantine_queue(s)
    }
}

/// Waits between reconnects: 500 ms doubling to 30 s, from the start again once consuming.
fn reconnect_delays() -> backon::ExponentialBackoff {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(30))
        .without_max_times()
        .build()
}

/// Consumes until `shutdown`, reconnecting with backoff whenever the broker goes away.
pub async fn run(intake: Arc<Intake>, shutdown: CancellationToken) {
    let mut delays = reconnect_delays();
    while !shutdown.is_cancelled() {
        let result = consume(&intake, &shutdown, &mut delays).await;
        intake.connected.store(false, std::sync::atomic::Ordering::Relaxed);
        let delay = delays.next().unwrap_or(Duration::from_secs(30));
        match result {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "AMQP intake lost its connection; reconnecting");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn consume(intake: &Intake, shutdown: &CancellationToken, delays: &mut backon::ExponentialBackoff) -> Result<(), lapin::Error> {
    let s = &intake.settings;
    let conn = intake.link.connect("rotor intake").await?;
    let ch = conn.create_channel().await?;
    declare_topology(&ch, s).await?;
    ch.basic_qos(s.prefetch, BasicQosOptions::default()).await?;
    let publisher = conn.create_channel().await?;
    publisher.confirm_select(ConfirmSelectOptions::default()).await?;
    let mut consumer = ch.basic_consume(&s.queue, "", BasicConsumeOptions::default(), FieldTable::default()).await?;
    let mut quarantined = ch.basic_consume(&quarantine_queue(s), "", BasicConsumeOptions::default(), FieldTable::default()).await?;
    tracing::info!(queue = %s.queue, "AMQP intake consuming");
    *delays = reconnect_delays();
    intake.connected.store(true, std::sync::atomic::Ordering::Relaxed);
    loop {
        let (delivery, from_quarantine) = tokio::select! {
            d = consumer.next() => (d, false),
            d = quarantined.next() => (d, true),
            _ = shutdown.cancelled() => {
                let _ = conn.close(200, "rotor shutting down").await;
                return Ok(());
            }
        };
        let Some(delivery) = delivery else {
            return Err(lapin::Error::InvalidConnectionState(lapin::ConnectionState::Closed));
        };
        let delivery = delivery?;
        if from_quarantine {
            // The broker dead-lettered it (a TTL, a length limit, a delivery limit after
            // rotor requeued it while it could not record it). Only rotor reads the
            // quarantine, so it is taken as any request: a password it carries is never
            // thrown away, and a refusal is dead-lettered redacted as usual.
            log_quarantined(&delivery);
        }
        handle(intake, &publisher, delivery).await?;
    }
}

/// The kind of a message: its routing key, or its `type` property when it was published
/// straight to the queue.
fn kind_of(d: &lapin::message::Delivery) -> String {
    let key = d.routing_key.as_str();
    if KINDS.contains(&key) {
        return key.to_string();
    }
    d.properties.kind().as_ref().map(|k| k.as_str().to_string()).unwrap_or_else(|| key.to_string())
}

async fn handle(intake: &Intake, publisher: &Channel, d: lapin::message::Delivery) -> Result<(), lapin::Error> {
    let kind = kind_of(&d);
    let message_id = d.properties.message_id().as_ref().map(|m| m.as_str().to_string());
    let span = tracing::info_span!("amqp_message", kind = %kind, message_id = message_id.as_deref().unwrap_or(""));
    handle_in_span(intake, publisher, &d, &kind, message_id).instrument(span).await
}

async fn handle_in_span(
    intake: &Intake,
    publisher: &Channel,
    d: &lapin::message::Delivery,
    kind: &str,
    message_id: Option<String>,
) -> Result<(), lapin::Error> {
    let pool = &intake.submitter.pool;
    // A producer's message_id is its own: keys are kept per producer, so one producer
    // can neither read another's task through a reused id nor plant a refusal under it.
    let user = d.properties.user_id().as_ref().map(|u| u.as_str().to_string());
    let message_id = message_id.map(|m| format!("amqp:{}:{m}", user.as_deref().unwrap_or("")));
    // Who sent it; an unnamed producer's refusal names nobody.
    let named = intake.producer(d);
    let requester = match &named {
        Ok((who, _)) => who.clone(),
        Err(_) => Requester::new(RequesterKind::Producer, d.properties.user_id().as_ref().map(|u| u.as_str()).unwrap_or("(no user_id)")),
    };
    let outcome = match named {
        Ok((requester, grant)) => {
            let origin = Origin { channel: "AMQP", requester, grant: &grant, request_key: message_id.clone() };
            accept(intake, kind, d, &origin).await
        }
        Err(rejection) => {
            intake.refused.failed("AMQP", &requester.name, &rejection.message);
            Err(Refusal::Invalid(rejection))
        }
    };
    match outcome {
        Ok(created) => {
            tracing::info!(task_id = %created.task_id, new = created.is_new, "request accepted");
            let task = match created.recorded {
                Some(task) => Some(task),
                None if d.properties.reply_to().is_some() || !created.is_new => view::load(pool, created.task_id).await.ok().flatten(),
                None => None,
            };
            // A redelivered refusal (its dead-letter copy was not confirmed last time).
            let refused = task.as_ref().filter(|t| !created.is_new && t.kind == control::REFUSED_TYPE).and_then(|t| t.errors.first());
            if let Some(error) = refused {
                return settle_refusal(&intake.settings, publisher, d, &requester, error).await;
            }
            if let (Some(reply_to), Some(task)) = (d.properties.reply_to(), task) {
                reply(publisher, reply_to, &d.properties, &serde_json::to_vec(&task).expect("task serializes")).await;
            }
            d.acker.ack(BasicAckOptions::default()).await
        }
        Err(Refusal::Invalid(rejection)) => {
            tracing::warn!(code = %rejection.code, field = %rejection.field, error = %rejection.message, "request refused; dead-lettering");
            let error = rejection.to_vcf();
            // The refusal is recorded as a FAILED task, so the reply names a real task.
            let recorded = match control::record_refused(pool, "AMQP", &requester, message_id, &error).await {
                Ok(created) => created,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot record the refusal now; requeueing");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    return d.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await;
                }
            };
            if let Some(reply_to) = d.properties.reply_to().as_ref().filter(|q| !intake.is_own_queue(q.as_str())) {
                if let Ok(Some(task)) = view::load(pool, recorded.task_id).await {
                    reply(publisher, reply_to, &d.properties, &serde_json::to_vec(&task).expect("task serializes")).await;
                }
            }
            settle_refusal(&intake.settings, publisher, d, &requester, &error).await
        }
        Err(Refusal::Unavailable(e)) => {
            // Our fault, not the message's: keep it for a later attempt.
            tracing::warn!(error = %e, "cannot record request now; requeueing");
            tokio::time::sleep(Duration::from_millis(500)).await;
            d.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await
        }
    }
}

async fn accept(intake: &Intake, kind: &str, d: &lapin::message::Delivery, origin: &Origin<'_>) -> Result<repo::Created, Refusal> {
    if d.data.len() > intake.settings.max_message_bytes {
        return Err(Refusal::Invalid(Rejection::new(
            RejectCode::RequestTooLarge,
            "body",
            format!("is {} bytes; at most {} (amqp.max_message_bytes)", d.data.len(), intake.settings.max_message_bytes),
        )));
    }
    let submitter = &intake.submitter;
    match kind {
        KIND_CREDENTIALS_UPDATE => submitter.submit(Request::CredentialsUpdate(&d.data), origin).await,
        KIND_PRIVX_ROTATE => {
            let body: requests::PrivxRotate = requests::parse_json(&d.data).map_err(Refusal::Invalid)?;
            submitter.submit(Request::PrivxRotate { host_id: &body.host_id, account: &body.account }, origin).await
        }
        KIND_PRIVX_PASSWORD => {
            let body: requests::PrivxPassword = requests::parse_json(&d.data).map_err(Refusal::Invalid)?;
            let request = Request::PrivxPassword { host_id: &body.host_id, account: &body.account, password: body.password.clone() };
            submitter.submit(request, origin).await
        }
        other => Err(Refusal::Invalid(Rejection::new(
            RejectCode::InvalidRequest,
            "type",
            format!("unknown message kind `{other}`; use routing key or type {}", KINDS.join(", ")),
        ))),
    }
}

/// Publishes a reply and waits for the broker's confirm, so that a reply is never lost
/// behind the ack of its request.
async fn reply(publisher: &Channel, reply_to: &ShortString, request: &BasicProperties, body: &[u8]) {
    let mut props = BasicProperties::default().with_content_type("application/json".into());
    if let Some(c) = request.correlation_id() {
        props = props.with_correlation_id(c.clone());
    }
    let sent = match publisher.basic_publish("", reply_to.as_str(), BasicPublishOptions::default(), body, props).await {
        Ok(confirm) => confirm.await.map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot publish reply");
    }
}
