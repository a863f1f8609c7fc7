//! Task and subtask status changes, published to the `rotor.events` topic exchange as
//! the Task JSON with routing key `task.<STATUS>` or `subtask.<STATUS>`; credential
//! alerts as `credential.<ALERT>`.
//! Best effort and at most once: a change made while the broker is away is buffered
//! (up to `BUFFER` events) and published when it returns; beyond that it is dropped and
//! counted, never blocking a rotation. The database remains the record.
//! On shutdown the publisher is stopped last of the engine's parts (`flush`): what the
//! draining workers reported is published before it closes.

use std::collections::HashMap;
use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::BasicProperties;
use sqlx::PgPool;
use strum::{Display, IntoStaticStr};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::model::{SubtaskStatus, TaskStatus};

const BUFFER: usize = 10_000;
/// How long the flush on shutdown may take when the broker is slow or away.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// A credential's state changed in a way an operator must hear of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Display, IntoStaticStr)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum CredentialAlert {
    /// The heartbeat found the stored password no longer logs in.
    OutOfSync,
    /// Auto-rotation failed `scheduler.max_failures` times in a row and stopped.
    AutoRotateStopped,
}

#[derive(Debug)]
enum Event {
    /// Published as the Task JSON.
    Task { task_id: Uuid, routing_key: String },
    /// Published as `{credentialId, resourceId, username, status}`.
    Credential {
        credential_id: Uuid,
        routing_key: String,
    },
}

impl Event {
    fn routing_key(&self) -> &str {
        match self {
            Event::Task { routing_key, .. } | Event::Credential { routing_key, .. } => routing_key,
        }
    }
}

/// The sending side, cheap to clone; `Events::disabled()` sends nowhere (CLI, tests).
#[derive(Clone)]
pub struct Events {
    tx: Option<mpsc::Sender<Event>>,
}

impl Events {
    pub fn disabled() -> Self {
        Events { tx: None }
    }

    /// Starts the publisher; it runs until `flush` is cancelled, then publishes what is
    /// buffered (for up to `FLUSH_TIMEOUT`) and closes its connection.
    pub fn start(
        pool: PgPool,
        link: crate::broker::Link,
        exchange: String,
        flush: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(BUFFER);
        let task = tokio::spawn(publish_loop(pool, link, exchange, rx, flush));
        (Events { tx: Some(tx) }, task)
    }

    pub fn task(&self, task_id: Uuid, status: TaskStatus) {
        self.send(Event::Task {
            task_id,
            routing_key: format!("task.{status}"),
        });
    }

    pub fn subtask(&self, task_id: Uuid, status: SubtaskStatus) {
        self.send(Event::Task {
            task_id,
            routing_key: format!("subtask.{status}"),
        });
    }

    /// A subtask ended: its event, and the task's when the task's status changed.
    pub fn subtask_ended(
        &self,
        task_id: Uuid,
        status: SubtaskStatus,
        task_status: Option<TaskStatus>,
    ) {
        self.subtask(task_id, status);
        if let Some(status) = task_status {
            self.task(task_id, status);
        }
    }

    pub fn credential(&self, credential_id: Uuid, alert: CredentialAlert) {
        self.send(Event::Credential {
            credential_id,
            routing_key: format!("credential.{alert}"),
        });
    }

    fn send(&self, event: Event) {
        if let Some(tx) = &self.tx {
            if tx.try_send(event).is_err() {
                tracing::warn!("event buffer full; event dropped");
            }
        }
    }
}

/// Between attempts to reach the broker.
const RECONNECT_DELAY: Duration = Duration::from_secs(2);
/// Events taken from the buffer at once: their tasks are read in one go.
const BATCH: usize = 256;

async fn publish_loop(
    pool: PgPool,
    link: crate::broker::Link,
    exchange: String,
    mut rx: mpsc::Receiver<Event>,
    flush: CancellationToken,
) {
    // Taken from the buffer and not yet published, oldest first.
    let mut pending: Vec<Event> = Vec::new();
    'connect: while !flush.is_cancelled() {
        let conn = match link
            .connect_framed("rotor events", Some(crate::broker::SMALL_FRAMES))
            .await
        {
            Ok(c) => c,
            Err(_) => {
                tokio::select! { _ = tokio::time::sleep(RECONNECT_DELAY) => continue, _ = flush.cancelled() => break }
            }
        };
        let Ok(ch) = conn.create_channel().await else {
            continue;
        };
        loop {
            if pending.is_empty() {
                tokio::select! {
                    n = rx.recv_many(&mut pending, BATCH) => if n == 0 { return },
                    _ = flush.cancelled() => {
                        let left = drain(&pool, &ch, &exchange, &mut rx).await;
                        if left > 0 {
                            tracing::warn!(events = left, "shutdown: events not published within the flush timeout");
                        }
                        let _ = conn.close(200, "bye").await;
                        return;
                    }
                }
            }
            match publish(&pool, &ch, &exchange, &mut pending).await {
                Ok(()) => {}
                Err(Retry::Database) => tokio::time::sleep(Duration::from_secs(1)).await,
                Err(Retry::Broker) => continue 'connect,
            }
        }
    }
    let left = rx.len() + pending.len();
    if left > 0 {
        tracing::warn!(
            events = left,
            "shutdown: the broker is away; buffered events were not published"
        );
    }
}

/// Publishes everything buffered, within `FLUSH_TIMEOUT`; returns how many are left.
async fn drain(
    pool: &PgPool,
    ch: &lapin::Channel,
    exchange: &str,
    rx: &mut mpsc::Receiver<Event>,
) -> usize {
    rx.close();
    let mut pending = Vec::new();
    let work = async {
        while rx.recv_many(&mut pending, BATCH).await > 0 {
            if publish(pool, ch, exchange, &mut pending).await.is_err() {
                return rx.len() + pending.len();
            }
        }
        0
    };
    tokio::time::timeout(FLUSH_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| rx.len())
}

enum Retry {
    Database,
    Broker,
}

/// Publishes `events` in order, removing each one published; their tasks are read once
/// each, as they are now.
async fn publish(
    pool: &PgPool,
    ch: &lapin::Channel,
    exchange: &str,
    events: &mut Vec<Event>,
) -> Result<(), Retry> {
    let mut ids: Vec<Uuid> = events
        .iter()
        .filter_map(|e| {
            if let Event::Task { task_id, .. } = e {
                Some(*task_id)
            } else {
                None
            }
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let tasks: HashMap<Uuid, Vec<u8>> = super::view::load_many(pool, &ids)
        .await
        .map_err(|_| Retry::Database)?
        .into_iter()
        .map(|t| (t.id, serde_json::to_vec(&t).expect("task serializes")))
        .collect();
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2);
    let mut sent = 0;
    let mut outcome = Ok(());
    for event in events.iter() {
        let body = match event {
            Event::Task { task_id, .. } => tasks.get(task_id).cloned(),
            Event::Credential { credential_id, .. } => {
                match credential_body(pool, *credential_id).await {
                    Ok(body) => body,
                    Err(_) => {
                        outcome = Err(Retry::Database);
                        break;
                    }
                }
            }
        };
        if let Some(body) = body {
            if ch
                .basic_publish(
                    exchange,
                    event.routing_key(),
                    BasicPublishOptions::default(),
                    &body,
                    props.clone(),
                )
                .await
                .is_err()
            {
                outcome = Err(Retry::Broker);
                break;
            }
        }
        sent += 1;
    }
    events.drain(..sent);
    outcome
}

async fn credential_body(
    pool: &PgPool,
    credential_id: Uuid,
) -> Result<Option<Vec<u8>>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT resource_id, username, status FROM credentials WHERE id = $1",
        credential_id
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| {
        serde_json::to_vec(
            &serde_json::json!({"credentialId": credential_id, "resourceId": r.resource_id,
            "username": r.username, "status": r.status}),
        )
        .expect("json serializes")
    }))
}
