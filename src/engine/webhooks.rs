//! Webhooks (`[[webhook]]`): every outbox row whose routing key matches a webhook's
//! `events` globs is POSTed to its `url` through reqwest (rustls), as
//! `{id, type, createdAt, data}` with `X-Rotor-Event-Id` (for idempotency) and
//! `X-Rotor-Signature: sha256=<hex HMAC-SHA256 of the body under the secret>`. No body
//! holds a password: tasks and credential alerts never do. A webhook that fails (no
//! answer, or not 2xx) is tried again with backoff, from its oldest undelivered event, so
//! each one receives events in order; what it already has is not sent again
//! (`outbox_webhook_deliveries`), though a crash between its 2xx and the commit may
//! send one event twice: receivers tell repeats apart by event id.

use std::collections::HashSet;
use std::time::Duration;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::outbox::{discard, lock, rows, unlock, Row, Wake};
use crate::access::Glob;
use crate::config::{Error as ConfigError, WebhookSettings};

const BATCH: i64 = 64;
const DELIVERY_LOCK: i64 = 0x726f_746f_7204; // "rotor" 4
const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

pub struct Webhook {
    url: reqwest::Url,
    secret: SecretString,
    events: Vec<Glob>,
    client: reqwest::Client,
}

/// The configured webhooks, ready to send.
#[derive(Default)]
pub struct Webhooks(Vec<Webhook>);

impl Webhooks {
    /// Reads each secret and CA file; names the key of anything wrong.
    pub fn load(settings: &[WebhookSettings]) -> Result<Self, ConfigError> {
        let mut hooks = Vec::with_capacity(settings.len());
        for (i, w) in settings.iter().enumerate() {
            let key = |k: &str| format!("webhook[{i}].{k}");
            let url = reqwest::Url::parse(&w.url)
                .map_err(|e| ConfigError::invalid(key("url"), format!("{e}")))?;
            let loopback = url.host_str().is_some_and(|h| {
                h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
            });
            if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
                return Err(ConfigError::invalid(
                    key("url"),
                    "must be https:// (plain http only to a loopback address)",
                ));
            }
            if !url.username().is_empty() || url.password().is_some() {
                return Err(ConfigError::invalid(
                    key("url"),
                    "must not hold credentials: the secret_file signs each request",
                ));
            }
            let secret = crate::config::secret_file(&key("secret_file"), &w.secret_file)?;
            let mut client = reqwest::Client::builder()
                .timeout(TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .use_rustls_tls();
            if let Some(ca) = &w.ca_file {
                let pem = std::fs::read(ca).map_err(|e| {
                    ConfigError::invalid(
                        key("ca_file"),
                        format!("cannot read {}: {e}", ca.display()),
                    )
                })?;
                let cert = reqwest::Certificate::from_pem(&pem)
                    .map_err(|e| ConfigError::invalid(key("ca_file"), format!("{e}")))?;
                client = client
                    .tls_built_in_root_certs(false)
                    .add_root_certificate(cert);
            }
            let client = client
                .build()
                .map_err(|e| ConfigError::invalid(key("url"), format!("{e}")))?;
            let events = w
                .events
                .iter()
                .map(|p| Glob::new(p).map_err(|e| ConfigError::invalid(key("events"), e)))
                .collect::<Result<_, _>>()?;
            hooks.push(Webhook {
                url,
                secret,
                events,
                client,
            });
        }
        Ok(Webhooks(hooks))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Webhook {
    fn wants(&self, routing_key: &str) -> bool {
        self.events.iter().any(|g| g.matches(routing_key))
    }

    /// `sha256=<hex>` of `body` under the secret.
    fn signature(&self, body: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.secret.expose_secret().as_bytes())
            .expect("any key length");
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    async fn post(&self, row: &Row, data: &[u8]) -> Result<(), String> {
        // `{id, type, createdAt, data}`, with `data` the rendered bytes as they are.
        let head = serde_json::to_vec(&serde_json::json!({
            "id": row.event_id, "type": row.routing_key, "createdAt": row.created_at,
        }))
        .expect("json serializes");
        let mut body = Vec::with_capacity(head.len() + data.len() + 9);
        body.extend_from_slice(&head[..head.len() - 1]);
        body.extend_from_slice(b",\"data\":");
        body.extend_from_slice(data);
        body.push(b'}');
        let resp = self
            .client
            .post(self.url.clone())
            .header("Content-Type", "application/json")
            .header("X-Rotor-Event-Id", row.event_id.to_string())
            .header("X-Rotor-Signature", self.signature(&body))
            .body(body)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("answered {}", resp.status()))
        }
    }
}

enum Progress {
    Idle,
    Sent,
    Failed,
}

/// Delivers the outbox to the webhooks until `flush` is cancelled.
pub(super) async fn run(pool: PgPool, hooks: Webhooks, wake: Wake, flush: CancellationToken) {
    let mut backoff = Duration::from_secs(1);
    loop {
        match deliver_batch(&pool, &hooks).await {
            Ok(Progress::Sent) => backoff = Duration::from_secs(1),
            Ok(Progress::Idle) => {
                if wake.wait(&flush).await {
                    return;
                }
            }
            Ok(Progress::Failed) => {
                tokio::select! { _ = tokio::time::sleep(backoff) => {}, _ = flush.cancelled() => return }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => {
                tracing::warn!(error = %e, "webhooks: cannot read the outbox; trying again");
                tokio::select! { _ = tokio::time::sleep(Duration::from_secs(1)) => {}, _ = flush.cancelled() => return }
            }
        }
        if flush.is_cancelled() {
            return;
        }
    }
}

/// One batch, by one process at a time (a session lock): each webhook gets its events in
/// order. No transaction is held while posting: each delivery is recorded as it succeeds.
async fn deliver_batch(pool: &PgPool, hooks: &Webhooks) -> Result<Progress, sqlx::Error> {
    let Some(mut conn) = lock(pool, DELIVERY_LOCK).await? else {
        return Ok(Progress::Idle);
    };
    let outcome = deliver_locked(&mut conn, hooks).await;
    match outcome {
        Ok(_) => unlock(conn, DELIVERY_LOCK).await,
        Err(_) => discard(conn),
    }
    outcome
}

async fn deliver_locked(
    conn: &mut sqlx::PgConnection,
    hooks: &Webhooks,
) -> Result<Progress, sqlx::Error> {
    let ids = sqlx::query_scalar!(
        "SELECT id FROM outbox WHERE hooks_done_at IS NULL ORDER BY id LIMIT $1",
        BATCH
    )
    .fetch_all(&mut *conn)
    .await?;
    if ids.is_empty() {
        return Ok(Progress::Idle);
    }
    let rows = rows(conn, &ids).await?;
    let delivered: HashSet<(i64, String)> = sqlx::query!(
        "SELECT outbox_id, url FROM outbox_webhook_deliveries WHERE outbox_id = ANY($1)",
        &ids
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| (r.outbox_id, r.url))
    .collect();
    // A webhook that failed in this batch is not tried again in it: its events stay in order.
    let mut failed: HashSet<usize> = HashSet::new();
    let mut done = Vec::new();
    for row in &rows {
        let mut complete = true;
        if let Some(data) = &row.body {
            for (i, hook) in hooks.0.iter().enumerate() {
                if !hook.wants(&row.routing_key)
                    || delivered.contains(&(row.id, hook.url.to_string()))
                {
                    continue;
                }
                if failed.contains(&i) {
                    complete = false;
                    continue;
                }
                match hook.post(row, data).await {
                    Ok(()) => {
                        sqlx::query!("INSERT INTO outbox_webhook_deliveries (outbox_id, url) VALUES ($1, $2) ON CONFLICT DO NOTHING", row.id, hook.url.as_str())
                            .execute(&mut *conn)
                            .await?;
                    }
                    Err(e) => {
                        tracing::warn!(webhook = %hook.url, event_id = %row.event_id, error = %e, "webhook delivery failed; will try again");
                        failed.insert(i);
                        complete = false;
                    }
                }
            }
        }
        if complete {
            done.push(row.id);
        }
    }
    sqlx::query!(
        "UPDATE outbox SET hooks_done_at = now() WHERE id = ANY($1)",
        &done
    )
    .execute(&mut *conn)
    .await?;
    Ok(if failed.is_empty() {
        Progress::Sent
    } else {
        Progress::Failed
    })
}
