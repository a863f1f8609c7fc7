//! What intake does with the deliveries it holds: each message is checked on its own
//! (its producer, then its body against the inventory, the checks of a batch running
//! side by side), the accepted ones are recorded in one transaction, and after the
//! commit one multiple-ack settles them all. A refusal is recorded, answered and
//! dead-lettered on its own; a message rotor cannot record now is requeued. Nothing is
//! acked before it is recorded.

use futures_util::future::join_all;
use lapin::message::Delivery;
use lapin::options::BasicPublishOptions;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel};
use tracing::Instrument;

use super::deadletter::settle_refusal;
use super::intake::Intake;
use super::submit::Request;
use crate::access::{Grant, Requester, RequesterKind};
use crate::broker::{KINDS, KIND_CREDENTIALS_UPDATE, KIND_PRIVX_PASSWORD, KIND_PRIVX_ROTATE};
use crate::engine::record::{Created, NewTask};
use crate::engine::{control, view};
use crate::requests::{self, Origin, Refusal, RejectCode, Rejection};

/// One delivery on its way through a batch.
struct Item {
    d: Delivery,
    kind: String,
    /// The producer's idempotency key, kept per producer: one producer can neither read
    /// another's task through a reused id nor plant a refusal under it.
    key: Option<String>,
    /// Who sent it; an unnamed producer's refusal names nobody.
    requester: Requester,
    span: tracing::Span,
    state: State,
}

enum State {
    /// A known producer, allowed this much; the body is not read yet.
    Named(Grant),
    /// Its body parsed, once; not checked against the inventory yet.
    Parsed(Grant, Body),
    /// Checked; to be recorded.
    Ready(Box<NewTask>),
    Recorded(Created),
    Refused(Rejection),
    /// rotor cannot check or record it now (the database is away): requeued.
    Unavailable(String),
}

/// A request's body, parsed once for the batch's lookup and its checks.
enum Body {
    Spec(requests::CredentialsUpdateSpec),
    Rotate(requests::PrivxRotate),
    Password(requests::PrivxPassword),
}

/// Handles `deliveries`, received in this order on one channel that has no other
/// unsettled delivery.
pub async fn handle(
    intake: &Intake,
    publisher: &Channel,
    deliveries: Vec<Delivery>,
) -> Result<(), lapin::Error> {
    let mut items: Vec<Item> = deliveries.into_iter().map(|d| named(intake, d)).collect();
    find_known(intake, &mut items).await;
    for item in items.iter_mut() {
        if let State::Named(grant) = &item.state {
            item.state = match parse(intake, &item.d, &item.kind) {
                Ok(body) => State::Parsed(grant.clone(), body),
                Err(rejection) => State::Refused(rejection),
            };
        }
    }
    let lookup = look_up(intake, &mut items).await.unwrap_or_default();
    let lookup = &lookup;
    let checked = join_all(items.iter().map(|item| async move {
        match &item.state {
            State::Parsed(grant, body) => Some(
                prepare(intake, item, grant, body, lookup)
                    .instrument(item.span.clone())
                    .await,
            ),
            _ => None,
        }
    }))
    .await;
    for (item, outcome) in items.iter_mut().zip(checked) {
        match outcome {
            Some(Ok(task)) => item.state = State::Ready(Box::new(task)),
            Some(Err(Refusal::Invalid(r))) => item.state = State::Refused(r),
            Some(Err(Refusal::Unavailable(e))) => item.state = State::Unavailable(e.to_string()),
            None => {}
        }
    }
    record(intake, &mut items).await;
    settle(intake, publisher, items).await
}

/// The message's kind and producer: who it is and what it may do, or why it may do nothing.
fn named(intake: &Intake, d: Delivery) -> Item {
    let kind = kind_of(&d);
    let message_id = d
        .properties
        .message_id()
        .as_ref()
        .map(|m| m.as_str().to_string());
    let span = tracing::info_span!("amqp_message", kind = %kind, message_id = message_id.as_deref().unwrap_or(""));
    let user = d
        .properties
        .user_id()
        .as_ref()
        .map(|u| u.as_str().to_string());
    let key = message_id.map(|m| format!("amqp:{}:{m}", user.as_deref().unwrap_or("")));
    let (requester, state) = match intake.producer(&d) {
        Ok((who, grant)) => (who, State::Named(grant)),
        Err(rejection) => {
            let who = Requester::new(
                RequesterKind::Producer,
                user.as_deref().unwrap_or("(no user_id)"),
            );
            span.in_scope(|| intake.refused.failed("AMQP", &who.name, &rejection.message));
            (who, State::Refused(rejection))
        }
    };
    Item {
        d,
        kind,
        key,
        requester,
        span,
        state,
    }
}

/// The kind of a message: its routing key, or its `type` property when it was published
/// straight to the queue.
fn kind_of(d: &Delivery) -> String {
    let key = d.routing_key.as_str();
    if KINDS.contains(&key) {
        return key.to_string();
    }
    d.properties
        .kind()
        .as_ref()
        .map(|k| k.as_str().to_string())
        .unwrap_or_else(|| key.to_string())
}

/// Requests whose key made a task before get that task, unchecked, as they did then.
async fn find_known(intake: &Intake, items: &mut [Item]) {
    let keys: Vec<String> = items
        .iter()
        .filter(|i| matches!(i.state, State::Named(_)))
        .filter_map(|i| i.key.clone())
        .collect();
    if keys.is_empty() {
        return;
    }
    match control::tasks_for_keys(&intake.submitter.pool, &keys).await {
        Ok(known) => {
            for item in items
                .iter_mut()
                .filter(|i| matches!(i.state, State::Named(_)))
            {
                if let Some(&task_id) = item.key.as_ref().and_then(|k| known.get(k)) {
                    item.state = State::Recorded(Created {
                        task_id,
                        is_new: false,
                        recorded: None,
                    });
                }
            }
        }
        Err(e) => {
            for item in items
                .iter_mut()
                .filter(|i| matches!(i.state, State::Named(_)))
            {
                item.state = State::Unavailable(e.to_string());
            }
        }
    }
}

/// Reads, in one go, the inventory rows the batch's requests name. None when the
/// database is away: then nothing of the batch can be checked, and it is requeued.
async fn look_up(intake: &Intake, items: &mut [Item]) -> Option<requests::Lookup> {
    let mut names = requests::Names::default();
    for item in items.iter() {
        match &item.state {
            State::Parsed(_, Body::Spec(spec)) => names.note_spec(spec),
            State::Parsed(_, Body::Rotate(b)) => names.note_account(&b.host_id, &b.account),
            State::Parsed(_, Body::Password(b)) => names.note_account(&b.host_id, &b.account),
            _ => {}
        }
    }
    match requests::Lookup::load(&intake.submitter.pool, names).await {
        Ok(lookup) => Some(lookup),
        Err(e) => {
            for item in items
                .iter_mut()
                .filter(|i| matches!(i.state, State::Parsed(..)))
            {
                item.state = State::Unavailable(e.to_string());
            }
            None
        }
    }
}

/// The body, parsed by the message's kind; a body over `amqp.max_message_bytes` is not read.
fn parse(intake: &Intake, d: &Delivery, kind: &str) -> Result<Body, Rejection> {
    let max = intake.settings.max_message_bytes;
    if d.data.len() > max {
        return Err(Rejection::new(
            RejectCode::RequestTooLarge,
            "body",
            format!(
                "is {} bytes; at most {max} (amqp.max_message_bytes)",
                d.data.len()
            ),
        ));
    }
    match kind {
        KIND_CREDENTIALS_UPDATE => requests::parse_spec(&d.data).map(Body::Spec),
        KIND_PRIVX_ROTATE => requests::parse_json(&d.data).map(Body::Rotate),
        KIND_PRIVX_PASSWORD => requests::parse_json(&d.data).map(Body::Password),
        other => Err(Rejection::new(
            RejectCode::InvalidRequest,
            "type",
            format!(
                "unknown message kind `{other}`; use routing key or type {}",
                KINDS.join(", ")
            ),
        )),
    }
}

async fn prepare(
    intake: &Intake,
    item: &Item,
    grant: &Grant,
    body: &Body,
    lookup: &requests::Lookup,
) -> Result<NewTask, Refusal> {
    let origin = Origin {
        channel: "AMQP",
        requester: item.requester.clone(),
        grant,
        request_key: item.key.clone(),
    };
    let request = match body {
        Body::Spec(spec) => Request::Spec(spec),
        Body::Rotate(b) => Request::PrivxRotate {
            host_id: &b.host_id,
            account: &b.account,
        },
        Body::Password(b) => Request::PrivxPassword {
            host_id: &b.host_id,
            account: &b.account,
            password: b.password.clone(),
        },
    };
    intake
        .submitter
        .prepare(request, &origin, Some(lookup))
        .await
}

/// Records every checked request of the batch in one transaction.
async fn record(intake: &Intake, items: &mut [Item]) {
    let ready: Vec<usize> = (0..items.len())
        .filter(|&i| matches!(items[i].state, State::Ready(_)))
        .collect();
    if ready.is_empty() {
        return;
    }
    let mut tasks = Vec::with_capacity(ready.len());
    for &i in &ready {
        if let State::Ready(task) =
            std::mem::replace(&mut items[i].state, State::Unavailable(String::new()))
        {
            tasks.push(*task);
        }
    }
    // A reply shows the task as recorded, read before any worker could start it.
    let views: Vec<bool> = ready
        .iter()
        .map(|&i| items[i].d.properties.reply_to().is_some())
        .collect();
    match intake.submitter.record_many(&tasks, &views).await {
        Ok(outcomes) => {
            for (&i, outcome) in ready.iter().zip(outcomes) {
                items[i].state = match outcome {
                    Ok(created) => State::Recorded(created),
                    Err(Refusal::Invalid(r)) => State::Refused(r),
                    Err(Refusal::Unavailable(e)) => State::Unavailable(e.to_string()),
                };
            }
        }
        Err(e) => {
            for &i in &ready {
                items[i].state = State::Unavailable(e.to_string());
            }
        }
    }
}

/// Replies, dead-letters, requeues, then acks every recorded message at once.
async fn settle(
    intake: &Intake,
    publisher: &Channel,
    items: Vec<Item>,
) -> Result<(), lapin::Error> {
    if items
        .iter()
        .any(|i| matches!(i.state, State::Unavailable(_)))
    {
        // Our fault, not the messages': they come back after a pause, not at once.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let mut last_recorded: Option<&Delivery> = None;
    for item in &items {
        let kind = kind_of(&item.d);
        let outcome = match &item.state {
            State::Recorded(created) if created.is_new => "accepted",
            State::Recorded(_) => "duplicate",
            State::Refused(_) => "refused",
            _ => "requeued",
        };
        crate::metrics::intake(
            if KINDS.contains(&kind.as_str()) {
                &kind
            } else {
                "unknown"
            },
            outcome,
        );
        let acked = async {
            match &item.state {
                State::Recorded(created) => recorded(intake, publisher, item, created).await,
                State::Refused(rejection) => refused(intake, publisher, item, rejection)
                    .await
                    .map(|()| false),
                State::Unavailable(e) => {
                    tracing::warn!(error = %e, "cannot record request now; requeueing");
                    item.d
                        .acker
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..Default::default()
                        })
                        .await
                        .map(|()| false)
                }
                State::Named(_) | State::Parsed(..) | State::Ready(_) => {
                    unreachable!("every message of a batch is recorded, refused or unavailable")
                }
            }
        }
        .instrument(item.span.clone())
        .await?;
        if acked {
            last_recorded = Some(&item.d);
        }
    }
    // Every delivery before this one on the channel is in this batch, and settled above
    // unless it was recorded: one ack with `multiple` acks the recorded ones.
    match last_recorded {
        Some(d) => d.acker.ack(BasicAckOptions { multiple: true }).await,
        None => Ok(()),
    }
}

/// A recorded request: its reply. True when it is to be acked with the batch.
async fn recorded(
    intake: &Intake,
    publisher: &Channel,
    item: &Item,
    created: &Created,
) -> Result<bool, lapin::Error> {
    tracing::info!(task_id = %created.task_id, new = created.is_new, "request accepted");
    let d = &item.d;
    let pool = &intake.submitter.pool;
    let task = match &created.recorded {
        Some(task) => Some(task.clone()),
        None if d.properties.reply_to().is_some() || !created.is_new => {
            view::load(pool, created.task_id).await.ok().flatten()
        }
        None => None,
    };
    // A redelivered refusal (its dead-letter copy was not confirmed last time).
    let refusal = task
        .as_ref()
        .filter(|t| !created.is_new && t.kind == control::REFUSED_TYPE)
        .and_then(|t| t.errors.first());
    if let Some(error) = refusal {
        settle_refusal(&intake.settings, publisher, d, &item.requester, error).await?;
        return Ok(false);
    }
    if let (Some(reply_to), Some(task)) = (d.properties.reply_to(), task) {
        reply(
            publisher,
            reply_to,
            &d.properties,
            &serde_json::to_vec(&task).expect("task serializes"),
        )
        .await;
    }
    Ok(true)
}

/// A refused request: recorded as a FAILED task (so the reply names a real task),
/// answered, and dead-lettered redacted; requeued if it cannot be recorded now.
async fn refused(
    intake: &Intake,
    publisher: &Channel,
    item: &Item,
    rejection: &Rejection,
) -> Result<(), lapin::Error> {
    tracing::warn!(code = %rejection.code, field = %rejection.field, error = %rejection.message, "request refused; dead-lettering");
    let d = &item.d;
    let pool = &intake.submitter.pool;
    let error = rejection.to_vcf();
    let recorded = match control::record_refused(
        pool,
        "AMQP",
        &item.requester,
        item.key.clone(),
        &error,
    )
    .await
    {
        Ok(created) => created,
        Err(e) => {
            tracing::warn!(error = %e, "cannot record the refusal now; requeueing");
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            return d
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await;
        }
    };
    if let Some(reply_to) = d
        .properties
        .reply_to()
        .as_ref()
        .filter(|q| !intake.is_own_queue(q.as_str()))
    {
        if let Ok(Some(task)) = view::load(pool, recorded.task_id).await {
            reply(
                publisher,
                reply_to,
                &d.properties,
                &serde_json::to_vec(&task).expect("task serializes"),
            )
            .await;
        }
    }
    settle_refusal(&intake.settings, publisher, d, &item.requester, &error).await
}

/// Publishes a reply and waits for the broker's confirm, so that a reply is never lost
/// behind the ack of its request.
async fn reply(
    publisher: &Channel,
    reply_to: &ShortString,
    request: &BasicProperties,
    body: &[u8],
) {
    let mut props = BasicProperties::default().with_content_type("application/json".into());
    if let Some(c) = request.correlation_id() {
        props = props.with_correlation_id(c.clone());
    }
    let sent = match publisher
        .basic_publish(
            "",
            reply_to.as_str(),
            BasicPublishOptions::default(),
            body,
            props,
        )
        .await
    {
        Ok(confirm) => confirm.await.map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot publish reply");
    }
}
