//! Recording requests as tasks: one or many in one transaction, each table written by
//! one set-based statement, and one wake-up of the workers per subtask it adds. A
//! subtask's stage rows are written when it first runs (lease::claim), not here.

use std::collections::{HashMap, HashSet};

use sqlx::PgConnection;
use uuid::Uuid;

use super::error::Error;
use super::lease::WORK_CHANNEL;
use super::model::Operation;
use crate::vault::MasterKey;

/// A request ready to become a task.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// The task's id, chosen by whoever makes the request.
    pub id: Uuid,
    pub operation: Operation,
    pub name: String,
    pub source: &'static str,
    pub requested_by: crate::access::Requester,
    pub request_key: Option<String>,
    pub is_auto_rotate: bool,
    pub subtasks: Vec<NewSubTask>,
}

/// One credential of a request.
#[derive(Debug, Clone)]
pub struct NewSubTask {
    pub credential_id: Uuid,
    /// The credential's resource (a credential never moves to another).
    pub resource_id: String,
    /// A password the request supplies; stored encrypted, bound to the subtask.
    pub password: Option<secrecy::SecretString>,
    pub params: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct Created {
    pub task_id: Uuid,
    /// False when the request key was seen before: this is the first request's task.
    pub is_new: bool,
    /// A new task as recorded (PENDING), read before any worker could start it: what a
    /// reply or an HTTP 202 shows.
    pub recorded: Option<super::view::Task>,
}

/// Records `tasks` inside the caller's transaction, runnable at once. One outcome per
/// task, in order: `Error::Retired` when a resource it names is deleted (nothing of that
/// task is written), else what was created. A request key seen before (in the table or
/// earlier in `tasks`) gives the first task, `is_new = false`.
pub async fn insert_tasks(
    tx: &mut PgConnection,
    key: &MasterKey,
    tasks: &[NewTask],
) -> Result<Vec<Result<Created, Error>>, Error> {
    // The weakest lock `inventory::retire`'s FOR UPDATE waits for: a resource is deleted
    // either before (and its tasks are refused) or after they exist (and retire waits for
    // them). KEY SHARE, so that workers claiming on the host (NO KEY UPDATE) never hold
    // intake up.
    let mut resources: Vec<String> = tasks
        .iter()
        .flat_map(|t| t.subtasks.iter().map(|s| s.resource_id.clone()))
        .collect();
    resources.sort_unstable();
    resources.dedup();
    let live: HashSet<String> = sqlx::query_scalar!(
        "SELECT id FROM resources WHERE id = ANY($1) AND deleted_at IS NULL FOR KEY SHARE",
        &resources
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let writable: Vec<usize> = (0..tasks.len())
        .filter(|&i| {
            tasks[i]
                .subtasks
                .iter()
                .all(|s| live.contains(&s.resource_id))
        })
        .collect();

    let task_ids: Vec<Uuid> = writable.iter().map(|&i| tasks[i].id).collect();
    let column = |f: &dyn Fn(&NewTask) -> String| -> Vec<String> {
        writable.iter().map(|&i| f(&tasks[i])).collect()
    };
    let inserted: HashSet<Uuid> = sqlx::query_scalar!(
        "INSERT INTO tasks (id, name, type, operation, status, is_auto_rotate, source, request_key, requested_by_kind, requested_by_name)
         SELECT id, name, type, operation, 'PENDING', auto, source, request_key, kind, who
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bool[], $6::text[], $7::text[], $8::text[], $9::text[])
                AS t(id, name, type, operation, auto, source, request_key, kind, who)
         ON CONFLICT (request_key) WHERE request_key IS NOT NULL DO NOTHING
         RETURNING id",
        &task_ids,
        &column(&|t| t.name.clone()),
        &column(&|t| task_type(t.operation)),
        &column(&|t| t.operation.as_str().to_string()),
        &writable.iter().map(|&i| tasks[i].is_auto_rotate).collect::<Vec<_>>(),
        &column(&|t| t.source.to_string()),
        &writable.iter().map(|&i| tasks[i].request_key.clone()).collect::<Vec<_>>() as &[Option<String>],
        &column(&|t| t.requested_by.kind.to_string()),
        &column(&|t| t.requested_by.name.clone()),
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();

    // Keys that were already taken: the task that took them.
    let taken: Vec<String> = writable
        .iter()
        .zip(&task_ids)
        .filter(|(_, id)| !inserted.contains(id))
        .filter_map(|(&i, _)| tasks[i].request_key.clone())
        .collect();
    let existing: HashMap<String, Uuid> = if taken.is_empty() {
        HashMap::new()
    } else {
        sqlx::query!(
            "SELECT request_key AS \"key!\", id FROM tasks WHERE request_key = ANY($1)",
            &taken
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|r| (r.key, r.id))
        .collect()
    };

    let mut subtasks = SubtaskRows::default();
    let mut supplied = Vec::new();
    let mut outcomes: Vec<Result<Created, Error>> =
        (0..tasks.len()).map(|_| Err(Error::Retired)).collect();
    for (&i, &task_id) in writable.iter().zip(&task_ids) {
        if !inserted.contains(&task_id) {
            let first = tasks[i]
                .request_key
                .as_ref()
                .and_then(|k| existing.get(k))
                .copied();
            let first = first.ok_or(Error::Db(sqlx::Error::RowNotFound))?;
            outcomes[i] = Ok(Created {
                task_id: first,
                is_new: false,
                recorded: None,
            });
            continue;
        }
        for (seq, sub) in tasks[i].subtasks.iter().enumerate() {
            let subtask_id = subtasks.push(task_id, seq, sub);
            if let Some(password) = &sub.password {
                supplied.push((subtask_id, password));
            }
        }
        outcomes[i] = Ok(Created {
            task_id,
            is_new: true,
            recorded: None,
        });
    }
    subtasks.insert(tx).await?;
    // After their subtasks: a supplied password is bound to its subtask's row.
    for (subtask_id, password) in supplied {
        crate::vault::versions::put_supplied(&mut *tx, key, subtask_id, password).await?;
    }
    Ok(outcomes)
}

/// A task's `type`: the operation, as VCF names it.
fn task_type(operation: Operation) -> String {
    format!("CREDENTIALS_{}", operation.as_str())
}

/// How the scheduler starts a batch of auto-rotations: the first waits `delay` seconds
/// (from the database's now), each next one `spacing` more (a backlog is spread); by
/// default all start at once.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Spread {
    pub delay: f64,
    pub spacing: f64,
}

/// The scheduler's batch, in one statement: takes up to `limit` credentials due at `now`
/// (oldest plan first, skipping any another transaction holds), gives each a ROTATE
/// task with `isAutoRotate = true` and one subtask started per `spread`, writes each
/// task's `task.PENDING` event, and wakes the publishers and the workers. Returns how
/// many tasks it made.
///
/// A taken credential's `auto_task_id` names its task and its `next_rotation_at` is
/// cleared, so nothing plans it again until that task ends; the caller's transaction
/// makes this once per due credential. Its resources are locked KEY SHARE, as for any
/// request (`insert_tasks`), but skipped when locked otherwise: a credential whose
/// resource is deleted, or being deleted or changed (`inventory` holds it FOR UPDATE,
/// then updates its credentials), is left as it was, still due, for the next tick (or
/// removed with its resource); waiting there could deadlock. The rows are updated where
/// the due scan locked them (by ctid), not looked up again.
pub async fn auto_rotations(
    tx: &mut PgConnection,
    now: chrono::DateTime<chrono::Utc>,
    limit: i64,
    spread: Spread,
) -> Result<usize, Error> {
    let by = crate::access::Requester::scheduler();
    let made = sqlx::query!(
        r#"WITH due AS (
               SELECT c.ctid AS tid, c.resource_id, c.next_rotation_at AS planned FROM credentials c
                WHERE c.next_rotation_at <= $1 AND c.auto_rotate_days IS NOT NULL AND NOT c.auto_paused AND c.status = 'ACTIVE'
                ORDER BY c.next_rotation_at LIMIT $2 FOR NO KEY UPDATE SKIP LOCKED),
           live AS (
               SELECT r.id FROM resources r
                WHERE r.id IN (SELECT resource_id FROM due) AND r.deleted_at IS NULL
                  FOR KEY SHARE SKIP LOCKED),
           taken AS (
               UPDATE credentials c SET next_rotation_at = NULL, auto_task_id = gen_random_uuid()
                 FROM due WHERE c.ctid = due.tid AND due.resource_id IN (SELECT id FROM live)
               RETURNING c.id, c.username, c.resource_id, c.auto_task_id AS task_id, due.planned),
           ordered AS (
               SELECT taken.*, row_number() OVER (ORDER BY planned) - 1 AS n FROM taken),
           made AS (
               INSERT INTO tasks (id, name, type, operation, status, is_auto_rotate, source, requested_by_kind, requested_by_name)
               SELECT task_id, 'Auto-rotate password of ' || username || '@' || resource_id, $5, $6, 'PENDING', true, $7, $8, $9
                 FROM ordered
               RETURNING id),
           started AS (
               INSERT INTO subtasks (id, task_id, seq, credential_id, status, not_before)
               SELECT gen_random_uuid(), task_id, 0, id, 'PENDING', now() + make_interval(secs => $3::float8 + $4::float8 * n)
                 FROM ordered),
           events AS (
               INSERT INTO outbox (routing_key, task_id) SELECT $10, task_id FROM ordered),
           counted AS (SELECT count(*) AS n FROM made)
           SELECT n AS "made!", CASE WHEN n > 0 THEN pg_notify($11, '') END AS "outbox",
                  CASE WHEN n > 0 THEN pg_notify($12, n::text) END AS "work"
             FROM counted"#,
        now,
        limit,
        spread.delay,
        spread.spacing,
        task_type(Operation::Rotate),
        Operation::Rotate.as_str(),
        "SCHEDULER",
        by.kind.to_string(),
        by.name,
        super::outbox::task_key(super::model::TaskStatus::Pending),
        super::outbox::CHANNEL,
        WORK_CHANNEL,
    )
    .fetch_one(&mut *tx)
    .await?
    .made;
    Ok(made as usize)
}

/// The subtasks of a batch, column by column.
#[derive(Default)]
struct SubtaskRows {
    ids: Vec<Uuid>,
    task_ids: Vec<Uuid>,
    seqs: Vec<i32>,
    credentials: Vec<Uuid>,
    params: Vec<serde_json::Value>,
}

impl SubtaskRows {
    fn push(&mut self, task_id: Uuid, seq: usize, sub: &NewSubTask) -> Uuid {
        let id = Uuid::new_v4();
        self.ids.push(id);
        self.task_ids.push(task_id);
        self.seqs.push(seq as i32);
        self.credentials.push(sub.credential_id);
        self.params.push(sub.params.clone());
        id
    }

    async fn insert(self, tx: &mut PgConnection) -> Result<(), Error> {
        if self.ids.is_empty() {
            return Ok(());
        }
        sqlx::query!(
            "INSERT INTO subtasks (id, task_id, seq, credential_id, status, params, not_before)
             SELECT id, task_id, seq, credential_id, 'PENDING', params, now()
               FROM unnest($1::uuid[], $2::uuid[], $3::int4[], $4::uuid[], $5::jsonb[])
                    AS s(id, task_id, seq, credential_id, params)",
            &self.ids,
            &self.task_ids,
            &self.seqs,
            &self.credentials,
            &self.params
        )
        .execute(&mut *tx)
        .await?;
        // One wake-up per subtask: the payload says how many workers there is work for.
        sqlx::query!(
            "SELECT pg_notify($1, $2)",
            WORK_CHANNEL,
            self.ids.len().to_string()
        )
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}
