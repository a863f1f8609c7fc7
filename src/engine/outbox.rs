//! The outbox: every task, subtask and credential event is written here in the same
//! transaction as the change it reports, so no event is lost to a crash, a broker outage
//! or a shutdown. `events` publishes the rows and posts them to webhooks. The one writer
//! of outbox rows (but for the scheduler's one-statement batch, `record::auto_rotations`,
//! which writes `task_key` rows and notifies `CHANNEL`), and what its readers (`events`,
//! `webhooks`) share: the rows with their bodies, and the wake-up.

use std::collections::HashMap;
use std::time::Duration;

use std::sync::Arc;

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool, Postgres};
use strum::{Display, IntoStaticStr};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::model::{SubtaskStatus, TaskStatus};

/// NOTIFY channel that wakes the publishers (one notification per transaction).
pub const CHANNEL: &str = "rotor_outbox";
/// The publishers' poll when no notification comes.
const POLL: Duration = Duration::from_secs(1);

/// A credential's state changed in a way an operator must hear of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Display, IntoStaticStr)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum CredentialAlert {
    /// The heartbeat found the stored password no longer logs in.
    OutOfSync,
    /// Auto-rotation failed `scheduler.max_failures` times in a row and stopped.
    AutoRotateStopped,
}

/// One row per (routing key, task, credential).
async fn insert(
    conn: &mut PgConnection,
    keys: &[String],
    tasks: &[Option<Uuid>],
    credentials: &[Option<Uuid>],
) -> Result<(), sqlx::Error> {
    if keys.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        r#"WITH written AS (
               INSERT INTO outbox (routing_key, task_id, credential_id)
               SELECT * FROM unnest($1::text[], $2::uuid[], $3::uuid[])
               RETURNING 1
           )
           SELECT pg_notify($4, '') AS "notified!" FROM (SELECT count(*) FROM written) w"#,
        keys,
        tasks as &[Option<Uuid>],
        credentials as &[Option<Uuid>],
        CHANNEL
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(())
}

/// `scheduler.<event>` (the breaker opened or closed).
pub async fn scheduler(conn: &mut PgConnection, event: &str) -> Result<(), sqlx::Error> {
    insert(conn, &[format!("scheduler.{event}")], &[None], &[None]).await
}

/// The routing key of a task's event.
pub fn task_key(status: TaskStatus) -> String {
    format!("task.{status}")
}

/// `task.<STATUS>` for each of `tasks`.
pub async fn tasks(
    conn: &mut PgConnection,
    tasks: &[Uuid],
    status: TaskStatus,
) -> Result<(), sqlx::Error> {
    let keys = vec![task_key(status); tasks.len()];
    let ids: Vec<Option<Uuid>> = tasks.iter().copied().map(Some).collect();
    insert(conn, &keys, &ids, &vec![None; tasks.len()]).await
}

pub async fn task(
    conn: &mut PgConnection,
    task_id: Uuid,
    status: TaskStatus,
) -> Result<(), sqlx::Error> {
    tasks(conn, &[task_id], status).await
}

/// `subtask.<STATUS>`, `count` times (one per subtask), carrying the task.
pub async fn subtasks(
    conn: &mut PgConnection,
    task_id: Uuid,
    status: SubtaskStatus,
    count: usize,
) -> Result<(), sqlx::Error> {
    insert(
        conn,
        &vec![format!("subtask.{status}"); count],
        &vec![Some(task_id); count],
        &vec![None; count],
    )
    .await
}

/// A subtask started or ended: its event, and the task's when the task's status changed.
pub async fn subtask(
    conn: &mut PgConnection,
    task_id: Uuid,
    status: SubtaskStatus,
    task_status: Option<TaskStatus>,
) -> Result<(), sqlx::Error> {
    let mut keys = vec![format!("subtask.{status}")];
    keys.extend(task_status.map(task_key));
    insert(
        conn,
        &keys,
        &vec![Some(task_id); keys.len()],
        &vec![None; keys.len()],
    )
    .await
}

/// `credential.<ALERT>`.
pub async fn credential(
    conn: &mut PgConnection,
    credential_id: Uuid,
    alert: CredentialAlert,
) -> Result<(), sqlx::Error> {
    insert(
        conn,
        &[format!("credential.{alert}")],
        &[None],
        &[Some(credential_id)],
    )
    .await
}

/// An outbox row as the sinks see it.
pub(super) struct Row {
    pub id: i64,
    pub event_id: Uuid,
    pub routing_key: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// None when its task or credential is gone: nothing to send.
    pub body: Option<Arc<Vec<u8>>>,
}

/// Wakes the publishers when rows are written (one LISTEN connection for all of them).
#[derive(Clone, Default)]
pub(super) struct Wake(Arc<Notify>);

impl Wake {
    /// Listens on `CHANNEL` until `stop`, reconnecting when the connection drops.
    pub(super) async fn listen(&self, pool: PgPool, stop: CancellationToken) {
        while !stop.is_cancelled() {
            let listener = async {
                let mut l = PgListener::connect_with(&pool).await?;
                l.listen(CHANNEL).await?;
                loop {
                    l.recv().await?;
                    self.0.notify_waiters();
                }
            };
            let result: Result<(), sqlx::Error> =
                tokio::select! { r = listener => r, _ = stop.cancelled() => Ok(()) };
            if result.is_err() {
                tokio::select! { _ = tokio::time::sleep(POLL) => {}, _ = stop.cancelled() => {} }
            }
        }
    }

    /// Waits for new rows, the poll interval, or `flush`; true on flush.
    pub(super) async fn wait(&self, flush: &CancellationToken) -> bool {
        tokio::select! {
            _ = self.0.notified() => false,
            _ = tokio::time::sleep(POLL) => false,
            _ = flush.cancelled() => true,
        }
    }
}

/// One connection of `pool` holding the session advisory lock `key`, or None when
/// another process holds it. Give it back with `unlock`; on an error drop it with
/// `discard`, which closes it (and so releases the lock) rather than pooling it.
pub(super) async fn lock(
    pool: &PgPool,
    key: i64,
) -> Result<Option<PoolConnection<Postgres>>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let held = sqlx::query_scalar!(r#"SELECT pg_try_advisory_lock($1) AS "ok!""#, key)
        .fetch_one(&mut *conn)
        .await?;
    Ok(held.then_some(conn))
}

pub(super) async fn unlock(mut conn: PoolConnection<Postgres>, key: i64) {
    if sqlx::query_scalar!(r#"SELECT pg_advisory_unlock($1) AS "ok!""#, key)
        .fetch_one(&mut *conn)
        .await
        .is_err()
    {
        discard(conn);
    }
}

pub(super) fn discard(conn: PoolConnection<Postgres>) {
    drop(conn.detach());
}

/// The rows `ids`, in order, with their bodies rendered now: a task's JSON once per
/// batch however many of its events the batch holds (a 1,000-credential task is large,
/// and each of its 2,000 subtask events carries it), shared, as bytes.
pub(super) async fn rows(conn: &mut PgConnection, ids: &[i64]) -> Result<Vec<Row>, sqlx::Error> {
    let found = sqlx::query!(
        "SELECT id, event_id, routing_key, task_id, credential_id, created_at FROM outbox WHERE id = ANY($1) ORDER BY id",
        ids
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut tasks: Vec<Uuid> = found.iter().filter_map(|r| r.task_id).collect();
    tasks.sort_unstable();
    tasks.dedup();
    let views: HashMap<Uuid, Arc<Vec<u8>>> = super::view::load_many_in(conn, &tasks)
        .await?
        .into_iter()
        .map(|t| {
            (
                t.id,
                Arc::new(serde_json::to_vec(&t).expect("task serializes")),
            )
        })
        .collect();
    let mut rows = Vec::with_capacity(found.len());
    for r in found {
        let body = match (r.task_id, r.credential_id) {
            (Some(task), _) => views.get(&task).cloned(),
            (None, Some(credential)) => credential_body(conn, credential).await?.map(Arc::new),
            (None, None) if r.routing_key.starts_with("scheduler.") => {
                Some(Arc::new(scheduler_body(conn).await?))
            }
            (None, None) => None,
        };
        rows.push(Row {
            id: r.id,
            event_id: r.event_id,
            routing_key: r.routing_key,
            created_at: r.created_at,
            body,
        });
    }
    Ok(rows)
}

/// The breaker as it stands when the event is sent.
async fn scheduler_body(conn: &mut PgConnection) -> Result<Vec<u8>, sqlx::Error> {
    let r = sqlx::query!("SELECT open, opened_at, closed_at, reason FROM scheduler_breaker")
        .fetch_one(&mut *conn)
        .await?;
    Ok(serde_json::to_vec(&serde_json::json!({
        "breaker": if r.open { "OPEN" } else { "CLOSED" },
        "openedAt": r.opened_at, "closedAt": r.closed_at, "reason": r.reason,
    }))
    .expect("json serializes"))
}

async fn credential_body(
    conn: &mut PgConnection,
    credential_id: Uuid,
) -> Result<Option<Vec<u8>>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT resource_id, username, status FROM credentials WHERE id = $1",
        credential_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| {
        serde_json::to_vec(
            &serde_json::json!({"credentialId": credential_id, "resourceId": r.resource_id,
            "username": r.username, "status": r.status}),
        )
        .expect("json serializes")
    }))
}
