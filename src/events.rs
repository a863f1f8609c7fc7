//! Task and subtask status changes, published to the `rotor.events` topic exchange as
//! the Task JSON with routing key `task.<STATUS>` or `subtask.<STATUS>`.
//! Best effort and at most once: a change made while the broker is away is buffered
//! (up to `BUFFER` events) and published when it returns; beyond that it is dropped and
//! counted, never blocking a rotation. The database remains the record.

use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::BasicProperties;
use secrecy::SecretString;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const BUFFER: usize = 10_000;

#[derive(Debug)]
enum Event {
    /// Published as the Task JSON.
    Task { task_id: Uuid, routing_key: String },
    /// Published as `{credentialId, resourceId, username, status}`.
    Credential { credential_id: Uuid, routing_key: String },
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

    /// Starts the publisher; returns the handle and its task.
    pub fn start(pool: PgPool, url: SecretString, exchange: String, shutdown: CancellationToken) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(BUFFER);
        let task = tokio::spawn(publish_loop(pool, url, exchange, rx, shutdown));
        (Events { tx: Some(tx) }, task)
    }

    pub fn task(&self, task_id: Uuid, status: &str) {
        self.emit(task_id, format!("task.{status}"));
    }

    pub fn subtask(&self, task_id: Uuid, status: &str) {
        self.emit(task_id, format!("subtask.{status}"));
    }

    /// A credential's state changed (OUT_OF_SYNC, AUTO_ROTATE_STOPPED): `credential.<STATUS>`.
    pub fn credential(&self, credential_id: Uuid, status: &str) {
        self.send(Event::Credential { credential_id, routing_key: format!("credential.{status}") });
    }

    fn emit(&self, task_id: Uuid, routing_key: String) {
        self.send(Event::Task { task_id, routing_key });
    }

    fn send(&self, event: Event) {
        if let Some(tx) = &self.tx {
            if tx.try_send(event).is_err() {
                tracing::warn!("event buffer full; event dropped");
            }
        }
    }
}

async fn publish_loop(pool: PgPool, url: SecretString, exchange: String, mut rx: mpsc::Receiver<Event>, shutdown: CancellationToken) {
    let mut pending: Option<Event> = None;
    'connect: while !shutdown.is_cancelled() {
        let conn = match crate::ingress::amqp::connect(&url, "rotor events").await {
            Ok(c) => c,
            Err(_) => {
                tokio::select! { _ = tokio::time::sleep(Duration::from_secs(2)) => continue, _ = shutdown.cancelled() => return }
            }
        };
        let Ok(ch) = conn.create_channel().await else { continue };
        loop {
            let event = match pending.take() {
                Some(e) => e,
                None => tokio::select! {
                    e = rx.recv() => match e { Some(e) => e, None => return },
                    _ = shutdown.cancelled() => { let _ = conn.close(200, "bye").await; return }
                },
            };
            let body = match body_of(&pool, &event).await {
                Ok(Some(body)) => body,
                Ok(None) => continue,
                Err(_) => {
                    pending = Some(event);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let routing_key = match &event {
                Event::Task { routing_key, .. } | Event::Credential { routing_key, .. } => routing_key.clone(),
            };
            let props = BasicProperties::default().with_content_type("application/json".into()).with_delivery_mode(2);
            if ch.basic_publish(&exchange, &routing_key, BasicPublishOptions::default(), &body, props).await.is_err() {
                pending = Some(event);
                continue 'connect;
            }
        }
    }
}

async fn body_of(pool: &PgPool, event: &Event) -> Result<Option<Vec<u8>>, sqlx::Error> {
    match event {
        Event::Task { task_id, .. } => {
            Ok(crate::engine::view::load(pool, *task_id).await?.map(|t| serde_json::to_vec(&t).expect("task serializes")))
        }
        Event::Credential { credential_id, .. } => {
            let row = sqlx::query!("SELECT resource_id, username, status FROM credentials WHERE id = $1", credential_id)
                .fetch_optional(pool)
                .await?;
            Ok(row.map(|r| {
                serde_json::to_vec(&serde_json::json!({"credentialId": credential_id, "resourceId": r.resource_id,
                    "username": r.username, "status": r.status}))
                .expect("json serializes")
            }))
        }
    }
}
