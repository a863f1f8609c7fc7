//! Publishing the outbox (`outbox`): every row goes to the `rotor.events` topic exchange
//! (the Task JSON, or `{credentialId, resourceId, username, status}` for a credential
//! alert; routing key `task.<STATUS>`, `subtask.<STATUS>` or `credential.<ALERT>`;
//! `message_id` the event id) with publisher confirms, and to every matching webhook
//! (`webhooks`). At least once: a row is marked only after the broker confirmed it, in
//! the transaction that holds it, so a crash or a broker outage at any point leaves it
//! to be sent again; consumers tell repeats apart by event id. Several rotor processes
//! share the outbox: one of them publishes at a time (an advisory lock), in order.
//! Bodies are rendered when sent (the task as it is then), once per task per batch.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::BasicProperties;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::outbox::{discard, lock, rows, unlock, Wake};
use super::webhooks::Webhooks;

/// How long publishing goes on at shutdown when there is a backlog; what is left stays in
/// the outbox for the next start.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// Between attempts to reach the broker, and the poll when no notification comes.
const RECONNECT_DELAY: Duration = Duration::from_secs(2);
/// Rows taken at once: their tasks are read in one go.
const BATCH: i64 = 256;
const PUBLISHER_LOCK: i64 = 0x726f_746f_7203; // "rotor" 3
/// Published rows are kept this long, then deleted.
const RETENTION_DAYS: i32 = 7;

/// Starts the publishers (to the broker, and to the webhooks when there are any) on
/// `pool` (a small pool of their own: they never wait for the workers' connections, nor
/// the workers for theirs); they run until `flush` is cancelled, then publish the backlog
/// for up to `FLUSH_TIMEOUT`.
pub fn start(
    pool: PgPool,
    link: crate::broker::Link,
    exchange: String,
    webhooks: Webhooks,
    flush: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let wake = Wake::default();
        let stop_listening = CancellationToken::new();
        let listening = tokio::spawn({
            let (wake, pool, stop) = (wake.clone(), pool.clone(), stop_listening.clone());
            async move { wake.listen(pool, stop).await }
        });
        let hooks_done = webhooks.is_empty();
        let broker = amqp_loop(
            pool.clone(),
            link,
            exchange,
            hooks_done,
            wake.clone(),
            flush.clone(),
        );
        if hooks_done {
            broker.await;
        } else {
            tokio::join!(broker, super::webhooks::run(pool, webhooks, wake, flush));
        }
        stop_listening.cancel();
        let _ = listening.await;
    })
}

enum Retry {
    Database,
    Broker,
}

async fn amqp_loop(
    pool: PgPool,
    link: crate::broker::Link,
    exchange: String,
    hooks_done: bool,
    wake: Wake,
    flush: CancellationToken,
) {
    let mut flushing: Option<tokio::time::Instant> = None;
    'connect: loop {
        if flushing.is_some_and(|until| tokio::time::Instant::now() >= until) {
            break;
        }
        let conn = match link
            .connect_framed("rotor events", Some(crate::broker::SMALL_FRAMES))
            .await
        {
            Ok(c) => c,
            Err(_) => {
                if flushing.is_some()
                    || tokio::select! { _ = tokio::time::sleep(RECONNECT_DELAY) => false, _ = flush.cancelled() => true }
                {
                    break;
                }
                continue;
            }
        };
        let Ok(ch) = conn.create_channel().await else {
            continue;
        };
        if ch
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .is_err()
        {
            continue;
        }
        loop {
            match publish_batch(&pool, &ch, &exchange, hooks_done).await {
                Ok(0) if flushing.is_some() => break 'connect,
                Ok(0) => {
                    if wake.wait(&flush).await {
                        flushing = Some(tokio::time::Instant::now() + FLUSH_TIMEOUT);
                    }
                }
                Ok(_) => {}
                Err(Retry::Database) => tokio::time::sleep(Duration::from_secs(1)).await,
                Err(Retry::Broker) => continue 'connect,
            }
            if flushing.is_none() && flush.is_cancelled() {
                flushing = Some(tokio::time::Instant::now() + FLUSH_TIMEOUT);
            }
            if flushing.is_some_and(|until| tokio::time::Instant::now() >= until) {
                let _ = conn.close(200, "bye").await;
                break 'connect;
            }
        }
    }
    if let Ok(left) =
        sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM outbox WHERE published_at IS NULL"#)
            .fetch_one(&pool)
            .await
    {
        if left > 0 {
            tracing::info!(
                events = left,
                "shutdown: events left in the outbox are published at the next start"
            );
        }
    }
}

/// Publishes up to `BATCH` unpublished rows, oldest first; how many. One publisher at a
/// time over all processes (a session lock), so events go out in order.
async fn publish_batch(
    pool: &PgPool,
    ch: &lapin::Channel,
    exchange: &str,
    hooks_done: bool,
) -> Result<usize, Retry> {
    let Some(mut conn) = lock(pool, PUBLISHER_LOCK)
        .await
        .map_err(|_| Retry::Database)?
    else {
        return Ok(0);
    };
    let outcome = publish_locked(&mut conn, ch, exchange, hooks_done).await;
    match outcome {
        Ok(_) => unlock(conn, PUBLISHER_LOCK).await,
        Err(_) => discard(conn),
    }
    outcome
}

async fn publish_locked(
    conn: &mut sqlx::PgConnection,
    ch: &lapin::Channel,
    exchange: &str,
    hooks_done: bool,
) -> Result<usize, Retry> {
    let db = |_| Retry::Database;
    let ids = sqlx::query_scalar!(
        "SELECT id FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1",
        BATCH
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    if ids.is_empty() {
        return Ok(0);
    }
    let rows = rows(conn, &ids).await.map_err(db)?;
    let mut confirms = Vec::with_capacity(rows.len());
    for row in &rows {
        let Some(body) = &row.body else { continue };
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_message_id(row.event_id.to_string().into())
            .with_type(row.routing_key.clone().into());
        let confirm = ch
            .basic_publish(
                exchange,
                &row.routing_key,
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await
            .map_err(|_| Retry::Broker)?;
        confirms.push(confirm);
    }
    for confirm in confirms {
        match confirm.await {
            Ok(Confirmation::Ack(_)) | Ok(Confirmation::NotRequested) => {}
            _ => return Err(Retry::Broker),
        }
    }
    sqlx::query!(
        "UPDATE outbox SET published_at = now(), hooks_done_at = CASE WHEN $2 THEN COALESCE(hooks_done_at, now()) ELSE hooks_done_at END
          WHERE id = ANY($1)",
        &ids,
        hooks_done
    )
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    sqlx::query!(
        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE published_at IS NOT NULL AND hooks_done_at IS NOT NULL
                                           AND created_at < now() - make_interval(days => $1) LIMIT 1000)",
        RETENTION_DAYS
    )
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(ids.len())
}
