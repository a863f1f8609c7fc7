//! `rotor enqueue rotate|spec`: publish a request with publisher confirms and wait for
//! the daemon's reply, which names the task.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::FieldTable;
use lapin::BasicProperties;

use crate::broker;
use crate::config::Settings;
use crate::engine::model::TaskStatus;
use crate::engine::view::Task;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Publish a ROTATE request for one account; prints the task id.
    Rotate {
        #[arg(long)]
        resource: String,
        #[arg(long)]
        username: String,
        /// Seconds to wait for the daemon's reply.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Publish a CredentialsUpdateSpec JSON file as is; prints the task id.
    Spec {
        file: PathBuf,
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
}

pub async fn run(settings: &Settings, command: Command) -> anyhow::Result<ExitCode> {
    let (body, timeout) = match command {
        Command::Rotate {
            resource,
            username,
            timeout,
        } => {
            let pool = crate::db::connect(&settings.database).await?;
            let kind = sqlx::query_scalar!("SELECT type FROM resources WHERE id = $1", resource)
                .fetch_optional(&pool)
                .await?
                .ok_or_else(|| {
                    anyhow::anyhow!("no resource `{resource}` (see `rotor resource list`)")
                })?;
            let spec = serde_json::json!({
                "operationType": "ROTATE",
                "elements": [{"resourceId": resource, "resourceType": kind, "credentials": [{"username": username}]}]
            });
            (serde_json::to_vec(&spec)?, timeout)
        }
        Command::Spec { file, timeout } => {
            let body = std::fs::read(&file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            (body, timeout)
        }
    };
    let task = publish_and_wait(settings, &body, Duration::from_secs(timeout)).await?;
    if task.status == TaskStatus::Failed {
        for e in &task.errors {
            eprintln!("rotor: request refused: {} ({})", e.message, e.error_code);
        }
        return Ok(ExitCode::from(1));
    }
    println!("{}", task.id);
    Ok(ExitCode::SUCCESS)
}

/// Publishes `body` as `credentials.update` (persistent, mandatory, confirmed) and
/// returns the Task the daemon replies with.
pub async fn publish_and_wait(
    settings: &Settings,
    body: &[u8],
    timeout: Duration,
) -> anyhow::Result<Task> {
    let s = &settings.amqp;
    let link = broker::Link::from_settings(s)?;
    let conn = link
        .connect("rotor enqueue")
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to the broker: {e}"))?;
    let ch = conn.create_channel().await?;
    broker::declare_topology(&ch, s).await?;
    let reply_queue = ch
        .queue_declare(
            "",
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let mut replies = ch
        .basic_consume(
            reply_queue.name().as_str(),
            "",
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let message_id = uuid::Uuid::new_v4().to_string();
    let props = BasicProperties::default()
        .with_message_id(message_id.clone().into())
        .with_user_id(link.user().into())
        .with_correlation_id(message_id.clone().into())
        .with_reply_to(reply_queue.name().clone())
        .with_content_type("application/json".into())
        .with_type(broker::KIND_CREDENTIALS_UPDATE.into())
        .with_delivery_mode(2);
    let confirm = ch
        .basic_publish(
            &s.exchange,
            broker::KIND_CREDENTIALS_UPDATE,
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            body,
            props,
        )
        .await?
        .await?;
    match confirm {
        Confirmation::Ack(None) => {}
        Confirmation::Ack(Some(_)) => anyhow::bail!(
            "the broker could not route the request (is queue `{}` bound?)",
            s.queue
        ),
        _ => anyhow::bail!("the broker refused the request (no publisher confirm)"),
    }
    let reply = tokio::time::timeout(timeout, async {
        while let Some(d) = replies.next().await {
            let d = d?;
            if d.properties.correlation_id().as_ref().map(|c| c.as_str())
                == Some(message_id.as_str())
            {
                return Ok::<_, anyhow::Error>(Some(d.data));
            }
        }
        Ok(None)
    })
    .await;
    let _ = conn.close(200, "done").await;
    match reply {
        Ok(Ok(Some(data))) => Ok(serde_json::from_slice(&data)?),
        Ok(Ok(None)) => anyhow::bail!("the broker closed the reply queue"),
        Ok(Err(e)) => Err(e),
        Err(_) => anyhow::bail!(
            "published (message_id {message_id}) but no reply within {}s: is `rotor run` consuming `{}`?",
            timeout.as_secs(),
            s.queue
        ),
    }
}
