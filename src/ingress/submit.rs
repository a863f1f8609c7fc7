//! The one way a request becomes a task, for AMQP and HTTP alike: idempotency by
//! request key, parsing, checks against the inventory and policies, the tasks of a
//! batch in one transaction, and their first events.

use std::collections::BTreeMap;
use std::sync::Arc;

use secrecy::SecretString;
use sqlx::PgPool;

use crate::engine::control;
use crate::engine::model::TaskStatus;
use crate::engine::record::{self, Created, NewTask};
use crate::policy::Policy;
use crate::requests::{self, Origin, Refusal};
use crate::schedule::Schedule;
use crate::vault::MasterKey;

pub struct Submitter {
    pub pool: PgPool,
    pub key: Arc<MasterKey>,
    pub policies: Arc<BTreeMap<String, Policy>>,
    pub max_credentials: usize,
    /// Plans next rotations for accounts onboarded through the API.
    pub schedule: Schedule,
}

/// What a request asks, before it is checked.
pub enum Request<'a> {
    CredentialsUpdate(&'a [u8]),
    /// A `CredentialsUpdateSpec` already parsed (AMQP intake parses a batch once).
    Spec(&'a requests::CredentialsUpdateSpec),
    PrivxRotate {
        host_id: &'a str,
        account: &'a str,
    },
    PrivxPassword {
        host_id: &'a str,
        account: &'a str,
        password: SecretString,
    },
}

impl Submitter {
    /// One request, as HTTP sends them: its task, recorded and read back as recorded.
    pub async fn submit(
        &self,
        request: Request<'_>,
        origin: &Origin<'_>,
    ) -> Result<Created, Refusal> {
        if let Some(key) = &origin.request_key {
            if let Some(task_id) = control::task_for_key(&self.pool, key)
                .await
                .map_err(Refusal::Unavailable)?
            {
                return Ok(Created {
                    task_id,
                    is_new: false,
                    recorded: None,
                });
            }
        }
        let new = self.prepare(request, origin, None).await?;
        self.record_many(std::slice::from_ref(&new), &[true])
            .await
            .map_err(Refusal::Unavailable)?
            .remove(0)
    }

    /// Parses a request and checks it against the inventory and the policies: the task
    /// it makes, not yet recorded. `lookup`: the rows a batch of requests names, read
    /// once for all of them.
    pub async fn prepare(
        &self,
        request: Request<'_>,
        origin: &Origin<'_>,
        lookup: Option<&requests::Lookup>,
    ) -> Result<NewTask, Refusal> {
        let ctx = requests::Context {
            pool: &self.pool,
            lookup,
            policies: &self.policies,
            max_credentials: self.max_credentials,
        };
        match request {
            Request::CredentialsUpdate(body) => {
                requests::resolve(&ctx, &requests::parse_spec(body)?, origin).await
            }
            Request::Spec(spec) => requests::resolve(&ctx, spec, origin).await,
            Request::PrivxRotate { host_id, account } => {
                requests::resolve_privx(&ctx, host_id, account, None, origin).await
            }
            Request::PrivxPassword {
                host_id,
                account,
                password,
            } => requests::resolve_privx(&ctx, host_id, account, Some(password), origin).await,
        }
    }

    /// Records prepared tasks in one transaction and announces the new ones. `views[i]`:
    /// read task i back as recorded (for a reply), before any worker can start it. Per
    /// task, what was created or why not (a resource it names was deleted meanwhile);
    /// Err when nothing could be recorded (the database is away).
    pub async fn record_many(
        &self,
        tasks: &[NewTask],
        views: &[bool],
    ) -> Result<Vec<Result<Created, Refusal>>, crate::engine::Error> {
        let mut tx = self.pool.begin().await?;
        let outcomes = record::insert_tasks(&mut tx, &self.key, tasks).await?;
        let mut recorded = Vec::with_capacity(outcomes.len());
        for (outcome, &view) in outcomes.into_iter().zip(views) {
            recorded.push(match outcome {
                Ok(mut created) => {
                    if created.is_new && view {
                        created.recorded =
                            crate::engine::view::load_in(&mut tx, created.task_id).await?;
                    }
                    Ok(created)
                }
                Err(crate::engine::Error::Retired) => {
                    Err(Refusal::Invalid(requests::Rejection::new(
                        requests::RejectCode::ResourceNotFound,
                        "elements",
                        "a resource it names was deleted meanwhile",
                    )))
                }
                Err(e) => return Err(e),
            });
        }
        let new: Vec<uuid::Uuid> = recorded
            .iter()
            .flatten()
            .filter(|c| c.is_new)
            .map(|c| c.task_id)
            .collect();
        crate::engine::outbox::tasks(&mut tx, &new, TaskStatus::Pending).await?;
        tx.commit().await?;
        Ok(recorded)
    }
}
