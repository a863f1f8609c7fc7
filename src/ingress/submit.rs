//! The one way a request becomes a task, for AMQP and HTTP alike: idempotency by
//! request key, parsing, checks against the inventory and policies, the task in one
//! transaction, and its first event.

use std::collections::BTreeMap;
use std::sync::Arc;

use secrecy::SecretString;
use sqlx::PgPool;

use crate::engine::control;
use crate::engine::model::TaskStatus;
use crate::engine::repo::{self, Created, NewTask};
use crate::engine::Events;
use crate::policy::Policy;
use crate::requests::{self, Origin, Refusal};
use crate::schedule::Schedule;
use crate::vault::MasterKey;

pub struct Submitter {
    pub pool: PgPool,
    pub key: Arc<MasterKey>,
    pub policies: Arc<BTreeMap<String, Policy>>,
    pub max_credentials: usize,
    pub events: Events,
    /// Plans next rotations for accounts onboarded through the API.
    pub schedule: Schedule,
}

/// What a request asks, before it is checked.
pub enum Request<'a> {
    CredentialsUpdate(&'a [u8]),
    PrivxRotate { host_id: &'a str, account: &'a str },
    PrivxPassword { host_id: &'a str, account: &'a str, password: SecretString },
}

impl Submitter {
    pub async fn submit(&self, request: Request<'_>, origin: &Origin<'_>) -> Result<Created, Refusal> {
        if let Some(key) = &origin.request_key {
            if let Some(task_id) = control::task_for_key(&self.pool, key).await.map_err(Refusal::Unavailable)? {
                return Ok(Created { task_id, is_new: false, recorded: None });
            }
        }
        let new = self.resolve(request, origin).await?;
        let created = repo::create_task(&self.pool, &self.key, &new).await.map_err(|e| match e {
            crate::engine::Error::Retired => {
                Refusal::Invalid(requests::Rejection::new(requests::RejectCode::ResourceNotFound, "elements", "a resource it names was deleted meanwhile"))
            }
            e => Refusal::Unavailable(e),
        })?;
        if created.is_new {
            self.events.task(created.task_id, TaskStatus::Pending);
        }
        Ok(created)
    }

    async fn resolve(&self, request: Request<'_>, origin: &Origin<'_>) -> Result<NewTask, Refusal> {
        match request {
            Request::CredentialsUpdate(body) => {
                let spec = requests::parse_spec(body)?;
                let ctx = requests::Context { pool: &self.pool, policies: &self.policies, max_credentials: self.max_credentials };
                requests::resolve(&ctx, &spec, origin).await
            }
            Request::PrivxRotate { host_id, account } => {
                requests::resolve_privx(&self.pool, host_id, account, None, origin).await
            }
            Request::PrivxPassword { host_id, account, password } => {
                requests::resolve_privx(&self.pool, host_id, account, Some(password), origin).await
            }
        }
    }
}
