//! The inventory rows a batch of requests names, read once for the whole batch: every
//! resource and account its requests name in two queries, instead of two queries per
//! request. A name the batch did not announce is read on its own, so a lookup answers
//! exactly as the database would.

use std::collections::{HashMap, HashSet};

use sqlx::PgPool;
use uuid::Uuid;

use super::parse::CredentialsUpdateSpec;

/// The resource an element names.
#[derive(Clone)]
pub struct ResourceRef {
    pub id: String,
    pub kind: String,
    pub policy: String,
}

/// What the requests of a batch name.
#[derive(Default)]
pub struct Names {
    resource_ids: HashSet<String>,
    resource_names: HashSet<String>,
    usernames: HashSet<String>,
}

impl Names {
    pub fn note_spec(&mut self, spec: &CredentialsUpdateSpec) {
        for element in &spec.elements {
            self.resource_ids
                .extend(element.resource_id.iter().cloned());
            self.resource_names
                .extend(element.resource_name.iter().cloned());
            self.usernames
                .extend(element.credentials.iter().map(|c| c.username.clone()));
        }
    }

    /// A PrivX request: a resource by id and one of its accounts.
    pub fn note_account(&mut self, resource_id: &str, username: &str) {
        self.resource_ids.insert(resource_id.to_string());
        self.usernames.insert(username.to_string());
    }
}

/// An account as a request is checked against it.
#[derive(Clone)]
pub(super) struct AccountRow {
    pub(super) id: Uuid,
    pub(super) account_type: String,
    pub(super) credential_type: String,
}

/// The rows `Names` named, and which names they cover.
#[derive(Default)]
pub struct Lookup {
    names: Names,
    by_id: HashMap<String, ResourceRef>,
    by_name: HashMap<String, Vec<ResourceRef>>,
    accounts: HashMap<(String, String), AccountRow>,
}

impl Lookup {
    /// Reads every live resource named by id or name, and their accounts named by username.
    pub async fn load(pool: &PgPool, names: Names) -> Result<Lookup, sqlx::Error> {
        let ids: Vec<String> = names.resource_ids.iter().cloned().collect();
        let resource_names: Vec<String> = names.resource_names.iter().cloned().collect();
        let rows = sqlx::query!(
            "SELECT id, name, type, policy FROM resources WHERE (id = ANY($1) OR name = ANY($2)) AND deleted_at IS NULL ORDER BY id",
            &ids,
            &resource_names
        )
        .fetch_all(pool)
        .await?;
        let mut lookup = Lookup::default();
        for r in rows {
            let resource = ResourceRef {
                id: r.id.clone(),
                kind: r.r#type,
                policy: r.policy,
            };
            if names.resource_names.contains(&r.name) {
                lookup
                    .by_name
                    .entry(r.name)
                    .or_default()
                    .push(resource.clone());
            }
            lookup.by_id.insert(r.id, resource);
        }
        let found: Vec<String> = lookup.by_id.keys().cloned().collect();
        let usernames: Vec<String> = names.usernames.iter().cloned().collect();
        let accounts = sqlx::query!(
            "SELECT id, resource_id, username, account_type, credential_type FROM credentials
              WHERE resource_id = ANY($1) AND username = ANY($2)",
            &found,
            &usernames
        )
        .fetch_all(pool)
        .await?;
        for a in accounts {
            let row = AccountRow {
                id: a.id,
                account_type: a.account_type,
                credential_type: a.credential_type,
            };
            lookup.accounts.insert((a.resource_id, a.username), row);
        }
        lookup.names = names;
        Ok(lookup)
    }

    /// The live resource with this id, when the batch named it (else None: not covered).
    pub(super) fn resource_by_id(&self, id: &str) -> Option<Option<ResourceRef>> {
        self.names
            .resource_ids
            .contains(id)
            .then(|| self.by_id.get(id).cloned())
    }

    /// The live resources with this name (by id, at most the first two), when covered.
    pub(super) fn resources_by_name(&self, name: &str) -> Option<Vec<ResourceRef>> {
        self.names.resource_names.contains(name).then(|| {
            self.by_name
                .get(name)
                .map(|v| v.iter().take(2).cloned().collect())
                .unwrap_or_default()
        })
    }

    /// The account `username` of a resource this lookup read, when covered.
    pub(super) fn account(&self, resource_id: &str, username: &str) -> Option<Option<AccountRow>> {
        let covered =
            self.by_id.contains_key(resource_id) && self.names.usernames.contains(username);
        covered.then(|| {
            self.accounts
                .get(&(resource_id.to_string(), username.to_string()))
                .cloned()
        })
    }
}
