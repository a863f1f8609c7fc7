//! Who may send requests over AMQP: every message names its producer by the AMQP
//! `user_id` property, which RabbitMQ checks against the publishing connection's user;
//! `[[amqp.producer]]` maps that user to scopes and resource globs.

use std::sync::Arc;

use crate::access::{Grant, Requester, RequesterKind, Scope};
use crate::broker::{quarantine_queue, Link};
use crate::config::AmqpSettings;
use crate::ingress::submit::Submitter;
use crate::requests::{RejectCode, Rejection};

pub struct Intake {
    pub submitter: Arc<Submitter>,
    pub settings: AmqpSettings,
    pub link: Link,
    /// True while consuming (read by /readyz and /metrics).
    pub connected: Arc<std::sync::atomic::AtomicBool>,
    /// Refused producers, logged on `rotor::security` (rate-limited per producer).
    pub refused: crate::ingress::guard::FailedAuth,
    /// Told after each batch whether more requests are waiting (engine::admission).
    pub admission: Arc<crate::engine::admission::Admission>,
}

impl Intake {
    /// The producer a message names, with what it may do; or why it may do nothing.
    pub(super) fn producer(
        &self,
        d: &lapin::message::Delivery,
    ) -> Result<(Requester, Grant), Rejection> {
        let denied = |field: &str, message: String| {
            Rejection::new(RejectCode::PermissionDenied, field, message)
        };
        let Some(user) = d
            .properties
            .user_id()
            .as_ref()
            .map(|u| u.as_str().to_string())
        else {
            return Err(denied("user_id", "the message has no AMQP user_id property; set it to the user the producer connects as".into()));
        };
        let Some(p) = self.settings.producer.iter().find(|p| p.user == user) else {
            return Err(denied(
                "user_id",
                format!("producer `{user}` is not configured ([[amqp.producer]])"),
            ));
        };
        let grant = Grant {
            scopes: p.scopes.clone(),
            resources: p.resources.clone(),
        };
        if !grant.has(Scope::CredentialsManage) {
            return Err(denied(
                "user_id",
                format!("producer `{user}` lacks scope `credentials:manage`"),
            ));
        }
        if let Some(reply_to) = d.properties.reply_to() {
            if self.is_own_queue(reply_to.as_str()) {
                return Err(Rejection::new(
                    RejectCode::InvalidRequest,
                    "reply_to",
                    format!("`{reply_to}` is one of rotor's own queues"),
                ));
            }
        }
        Ok((Requester::new(RequesterKind::Producer, user), grant))
    }

    /// Whether `queue` is one rotor consumes or keeps (so a reply there would feed rotor).
    pub(super) fn is_own_queue(&self, queue: &str) -> bool {
        let s = &self.settings;
        queue == s.queue || queue == s.dead_letter_queue || queue == quarantine_queue(s)
    }
}
