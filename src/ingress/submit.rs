//! The one way a request becomes a task, for AMQP and HTTP alike: idempotency by
//! request key, parsing, checks against the inventory and policies, the task in one
//! transaction, and its first event.

use std::collections::BTreeMap;
use std::sync::Arc;

use secrecy::SecretString;
use sqlx::PgPool;

use crate::engine::control;
use crate::engine::repo::{self, Created, NewTask};
use crate::events::Events;
use crate::policy::Policy;
use crate::requests::{self, Rejection};
use crate::vault::MasterKey;

pub struct Submitter {
    pub pool: PgPool,
    pub key: Arc<MasterKey>,
    pub policies: Arc<BTreeMap<String, Policy>>,
    pub max_credentials: usize,
    pub events: Events,
    /// Plans next rotations for accounts onboarded through the API.
    pub schedule: crate::scheduler::Schedule,
}

/// Why a request did not become a task.
#[derive(Debug)]
pub enum Refusal {
    /// The request is wrong; nothing was recorded or changed.
    Invalid(Rejection),
    /// rotor cannot record it now (database away); the producer should try again.
    Unavailable(String),
}

/// What a request asks, before it is checked.
pub enum Request<'a> {
    CredentialsUpdate(&'a [u8]),
    PrivxRotate { host_id: &'a str, account: &'a str },
    PrivxPassword { host_id: &'a str, account: &'a str, password: SecretString },
}

impl Submitter {
    pub async fn submit(&self, request: Request<'_>, source: &'static str, request_key: Option<String>) -> Result<Created, Refusal> {
        if let Some(key) = &request_key {
            if let Some(task_id) = control::task_for_key(&self.pool, key).await.map_err(|e| Refusal::Unavailable(e.to_string()))? {
                return Ok(Created { task_id, is_new: false, recorded: None });
            }
        }
        let new = self.resolve(request, source, request_key).await.map_err(|r| {
            if r.code == "DATABASE_UNAVAILABLE" {
                Refusal::Unavailable(r.message)
            } else {
                Refusal::Invalid(r)
            }
        })?;
        let created = repo::create_task(&self.pool, &self.key, &new).await.map_err(|e| Refusal::Unavailable(e.to_string()))?;
        if created.is_new {
            self.events.task(created.task_id, "PENDING");
        }
        Ok(created)
    }

    async fn resolve(&self, request: Request<'_>, source: &'static str, request_key: Option<String>) -> Result<NewTask, Rejection> {
        match request {
            Request::CredentialsUpdate(body) => {
                let spec = requests::parse_spec(body)?;
                let ctx = requests::Context { pool: &self.pool, policies: &self.policies, max_credentials: self.max_credentials };
                requests::resolve(&ctx, &spec, source, request_key).await
            }
            Request::PrivxRotate { host_id, account } => {
                requests::resolve_privx(&self.pool, host_id, account, None, source, request_key).await
            }
            Request::PrivxPassword { host_id, account, password } => {
                requests::resolve_privx(&self.pool, host_id, account, Some(password), source, request_key).await
            }
        }
    }
}
