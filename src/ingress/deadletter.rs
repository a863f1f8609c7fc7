//! Dead letters. Every copy on the dead-letter queue is rotor's own: the refused
//! request with its passwords removed and `x-rotor-error` saying why, and none of the
//! producer's headers (one could hold a secret). The broker never puts an original there:
//! the intake queue's own dead-letter exchange (which a policy cannot override) leads
//! to a quarantine queue that only rotor reads, as a second intake.

use std::time::Duration;

use lapin::options::{BasicAckOptions, BasicNackOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use sha2::{Digest, Sha256};

use crate::access::Requester;
use crate::broker::ERROR_HEADER;
use crate::config::AmqpSettings;
use crate::requests;
use crate::vcf_error::VcfError;

/// Puts a copy of a refused message on the dead-letter exchange, then acks it; when the
/// broker does not confirm the copy, requeues it instead (a nack without requeue would
/// dead-letter the original body, password and all), and reconnects if the publishing
/// channel is gone.
pub async fn settle_refusal(
    settings: &AmqpSettings,
    publisher: &Channel,
    d: &lapin::message::Delivery,
    requester: &Requester,
    error: &VcfError,
) -> Result<(), lapin::Error> {
    let error_json = bounded_error(error);
    let mut headers = FieldTable::default();
    headers.insert(
        ERROR_HEADER.into(),
        AMQPValue::LongString(error_json.into()),
    );
    headers.insert(
        "x-rotor-producer".into(),
        AMQPValue::LongString(requester.name.as_str().into()),
    );
    let body = dead_letter_body(&d.data, settings.max_message_bytes, &mut headers);
    // Mandatory: if the dead-letter queue is gone, the broker returns the copy instead
    // of dropping it, and the request is kept (requeued) rather than acked.
    let published = publisher
        .basic_publish(
            "",
            &settings.dead_letter_queue,
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            &body,
            copy_properties(&d.properties, headers),
        )
        .await;
    let confirmed = match published {
        Ok(confirm) => matches!(
            confirm.await,
            Ok(lapin::publisher_confirm::Confirmation::Ack(None))
        ),
        Err(_) => false,
    };
    if confirmed {
        return d.acker.ack(BasicAckOptions::default()).await;
    }
    tracing::warn!("cannot dead-letter the refused request now; requeueing");
    tokio::time::sleep(Duration::from_millis(500)).await;
    d.acker
        .nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await?;
    if publisher.status().connected() {
        Ok(())
    } else {
        Err(lapin::Error::InvalidChannelState(
            publisher.status().state(),
        ))
    }
}

/// The properties of a dead-letter copy: the original's, without its `user_id` (rotor
/// publishes the copy as itself; the broker refuses another user's id), with `headers`.
fn copy_properties(p: &BasicProperties, headers: FieldTable) -> BasicProperties {
    let mut copy = BasicProperties::default().with_headers(headers);
    if let Some(v) = p.content_type() {
        copy = copy.with_content_type(v.clone());
    }
    if let Some(v) = p.content_encoding() {
        copy = copy.with_content_encoding(v.clone());
    }
    if let Some(v) = p.delivery_mode() {
        copy = copy.with_delivery_mode(*v);
    }
    if let Some(v) = p.correlation_id() {
        copy = copy.with_correlation_id(v.clone());
    }
    if let Some(v) = p.message_id() {
        copy = copy.with_message_id(v.clone());
    }
    if let Some(v) = p.timestamp() {
        copy = copy.with_timestamp(*v);
    }
    if let Some(v) = p.kind() {
        copy = copy.with_type(v.clone());
    }
    if let Some(v) = p.app_id() {
        copy = copy.with_app_id(v.clone());
    }
    copy
}

/// The body of a refused request's dead-lettered copy, which must hold no password:
/// JSON with every password replaced (`x-rotor-redacted` lists where), or, for a body
/// that is not JSON or is over the size limit and so cannot be searched, nothing at all
/// (`x-rotor-body-withheld` says why; its size and SHA-256 identify it).
fn dead_letter_body(body: &[u8], max_bytes: usize, headers: &mut FieldTable) -> Vec<u8> {
    let kept = if body.len() > max_bytes {
        None
    } else {
        requests::redact_secrets(body)
    };
    match kept {
        Some((redacted, paths)) => {
            if !paths.is_empty() {
                headers.insert(
                    "x-rotor-redacted".into(),
                    AMQPValue::LongString(bounded_list(&paths).into()),
                );
            }
            redacted
        }
        None => {
            let why = if body.len() > max_bytes {
                "over the size limit"
            } else {
                "not JSON, so it may hold a secret rotor cannot find"
            };
            headers.insert(
                "x-rotor-body-withheld".into(),
                AMQPValue::LongString(why.into()),
            );
            headers.insert(
                "x-rotor-body-bytes".into(),
                AMQPValue::LongLongInt(body.len() as i64),
            );
            let digest = hex::encode(Sha256::digest(body));
            headers.insert(
                "x-rotor-body-sha256".into(),
                AMQPValue::LongString(digest.into()),
            );
            Vec::new()
        }
    }
}

/// Most bytes a header of a dead-letter copy may hold. The copy's headers travel in one
/// AMQP frame (128 KiB by default): a refused request whose paths or error did not fit
/// could never be dead-lettered, only requeued, again and again.
const MAX_HEADER_BYTES: usize = 8 * 1024;

/// `paths` joined with commas, cut to `MAX_HEADER_BYTES` with how many were left out.
fn bounded_list(paths: &[String]) -> String {
    let mut out = String::new();
    for (i, p) in paths.iter().enumerate() {
        if out.len() + p.len() + 1 > MAX_HEADER_BYTES - 32 {
            out.push_str(&format!(",... ({} more)", paths.len() - i));
            return out;
        }
        if i > 0 {
            out.push(',');
        }
        out.push_str(p);
    }
    out
}

/// The error as JSON within `MAX_HEADER_BYTES`: past it, its code and the start of its
/// message only (the task keeps the whole error).
fn bounded_error(error: &VcfError) -> String {
    let json = serde_json::to_string(error).expect("error serializes");
    if json.len() <= MAX_HEADER_BYTES {
        return json;
    }
    let mut message: String = error.message.chars().take(1000).collect();
    message.push_str("... (cut; the task holds the whole error)");
    let short = VcfError::new(&error.error_code, message);
    serde_json::to_string(&short).expect("error serializes")
}

/// Says why the broker dead-lettered a request that rotor now takes from the quarantine.
pub fn log_quarantined(d: &lapin::message::Delivery) {
    let reason = death_reason(d.properties.headers().as_ref()).unwrap_or_else(|| "unknown".into());
    tracing::warn!(reason = %reason, "the broker dead-lettered a request before rotor took it; taking it from the quarantine");
}

/// `reason` of the newest `x-death` entry (expired, maxlen, delivery_limit, rejected),
/// at most 40 characters (a producer could forge the header).
fn death_reason(headers: Option<&FieldTable>) -> Option<String> {
    let AMQPValue::FieldArray(deaths) = headers?.inner().get("x-death")? else {
        return None;
    };
    let AMQPValue::FieldTable(first) = deaths.as_slice().first()? else {
        return None;
    };
    let reason = match first.inner().get("reason")? {
        AMQPValue::LongString(s) => s.to_string(),
        AMQPValue::ShortString(s) => s.to_string(),
        _ => return None,
    };
    Some(
        reason
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(40)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_copy_keeps_its_headers_within_one_frame() {
        // 30,000 passwords: their paths alone would be over a megabyte.
        let creds: Vec<String> = (0..30_000)
            .map(|i| format!(r#"{{"username":"u{i}","password":"secret-{i}"}}"#))
            .collect();
        let body = format!(
            r#"{{"operationType":"UPDATE","elements":[{{"resourceId":"r","credentials":[{}]}}]}}"#,
            creds.join(",")
        );
        let mut headers = FieldTable::default();
        let copy = dead_letter_body(body.as_bytes(), 4 << 20, &mut headers);
        assert!(!String::from_utf8_lossy(&copy).contains("secret-"));
        let Some(AMQPValue::LongString(paths)) = headers.inner().get("x-rotor-redacted") else {
            panic!("no x-rotor-redacted")
        };
        let paths = paths.to_string();
        assert!(paths.len() <= MAX_HEADER_BYTES, "{}", paths.len());
        assert!(
            paths.ends_with("more)") && paths.starts_with("elements[0].credentials[0].password"),
            "{}",
            &paths[paths.len() - 40..]
        );

        let long = VcfError::new("INVALID_REQUEST", "x".repeat(100_000));
        let json = bounded_error(&long);
        assert!(json.len() <= MAX_HEADER_BYTES);
        assert_eq!(
            serde_json::from_str::<VcfError>(&json).unwrap().error_code,
            "INVALID_REQUEST"
        );
    }
}
