//! AMQP intake: declares the topology, takes what the broker has sent in batches
//! (batch.rs records each batch in one transaction and only then acks it). Refused messages go to the dead-letter queue
//! with `x-rotor-error`; replies go to `reply_to`. Reconnects when the broker goes away.
//!
//! Every message names its producer by the AMQP `user_id` property, which RabbitMQ
//! checks against the publishing connection's user; `[[amqp.producer]]` maps that user
//! to scopes and resource globs. An unnamed or unknown producer changes nothing.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use lapin::options::{BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;

use super::batch;
use super::deadletter::log_quarantined;
pub use super::intake::Intake;
use crate::broker::{declare_topology, quarantine_queue};

/// How long a batch waits for more deliveries after its first: a few milliseconds of
/// latency for a request, against a transaction per request when many arrive at once.
const BATCH_WINDOW: Duration = Duration::from_millis(20);

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
        intake
            .connected
            .store(false, std::sync::atomic::Ordering::Relaxed);
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

async fn consume(
    intake: &Intake,
    shutdown: &CancellationToken,
    delays: &mut backon::ExponentialBackoff,
) -> Result<(), lapin::Error> {
    let s = &intake.settings;
    let conn = intake.link.connect("rotor intake").await?;
    let ch = conn.create_channel().await?;
    declare_topology(&ch, s).await?;
    ch.basic_qos(s.prefetch, BasicQosOptions::default()).await?;
    // The quarantine on a channel of its own: a batch's multiple-ack on the intake
    // channel then covers only intake deliveries.
    let qch = conn.create_channel().await?;
    qch.basic_qos(s.prefetch, BasicQosOptions::default())
        .await?;
    let publisher = conn.create_channel().await?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut consumer = ch
        .basic_consume(
            &s.queue,
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut quarantined = qch
        .basic_consume(
            &quarantine_queue(s),
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(queue = %s.queue, "AMQP intake consuming");
    *delays = reconnect_delays();
    intake
        .connected
        .store(true, std::sync::atomic::Ordering::Relaxed);
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
            return Err(lapin::Error::InvalidConnectionState(
                lapin::ConnectionState::Closed,
            ));
        };
        let delivery = delivery?;
        if from_quarantine {
            // The broker dead-lettered it (a TTL, a length limit, a delivery limit after
            // rotor requeued it while it could not record it). Only rotor reads the
            // quarantine, so it is taken as any request: a password it carries is never
            // thrown away, and a refusal is dead-lettered redacted as usual.
            log_quarantined(&delivery);
            batch::handle(intake, &publisher, vec![delivery]).await?;
            continue;
        }
        // What else arrives within BATCH_WINDOW goes into the same batch (up to half the
        // prefetch, so that the broker sends the next batch while this one is recorded):
        // one transaction and one ack for all of it, and requests sent together are
        // started together (breadth-first, lease::claim).
        let mut deliveries = vec![delivery];
        let mut broken = None;
        let window = tokio::time::Instant::now() + BATCH_WINDOW;
        let batch_max = usize::from(s.prefetch / 2).max(1);
        while deliveries.len() < batch_max {
            let next = match consumer.next().now_or_never() {
                Some(next) => next,
                None => match tokio::time::timeout_at(window, consumer.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
            };
            match next {
                Some(Ok(d)) => deliveries.push(d),
                Some(Err(e)) => {
                    broken = Some(e);
                    break;
                }
                None => break,
            }
        }
        // A full batch: more are waiting, and new subtasks wait for them (admission).
        intake.admission.batch_taken(deliveries.len() >= batch_max);
        batch::handle(intake, &publisher, deliveries).await?;
        if let Some(e) = broken {
            return Err(e);
        }
    }
}
