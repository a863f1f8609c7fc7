//! Durable events: every status change is written to the outbox with the change, then
//! published to `rotor.events` and POSTed, signed, to a webhook (a real HTTP receiver
//! here). A rotor SIGKILLed while the broker's exchange is gone and the webhook failing
//! loses none of them: after a restart both receive every event, each once by event id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::ExchangeKind;
use serde_json::Value;
use sha2::Sha256;

use crate::helpers::*;

#[derive(Clone, Default)]
struct Receiver {
    secret: String,
    failing: Arc<AtomicBool>,
    /// event id -> (times received, type, body)
    seen: Arc<Mutex<HashMap<String, (usize, String, Value)>>>,
    bad_signatures: Arc<Mutex<usize>>,
}

async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if r.failing.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(r.secret.as_bytes()).unwrap();
    mac.update(&body);
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    if headers
        .get("x-rotor-signature")
        .and_then(|v| v.to_str().ok())
        != Some(want.as_str())
    {
        *r.bad_signatures.lock().unwrap() += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let envelope: Value = serde_json::from_slice(&body).unwrap();
    let id = headers["x-rotor-event-id"].to_str().unwrap().to_string();
    assert_eq!(
        envelope["id"],
        id.as_str(),
        "the header names the body's event"
    );
    let mut seen = r.seen.lock().unwrap();
    let entry = seen.entry(id).or_insert((
        0,
        envelope["type"].as_str().unwrap().to_string(),
        envelope["data"].clone(),
    ));
    entry.0 += 1;
    StatusCode::OK
}

/// The outbox's event ids, as rotor recorded them.
fn outbox_ids(app: &TestApp) -> Vec<String> {
    psql_value(
        &app.db_name,
        "SELECT coalesce(string_agg(event_id::text, ',' ORDER BY id), '') FROM outbox",
    )
    .split(',')
    .filter(|s| !s.is_empty())
    .map(String::from)
    .collect()
}

async fn wait_until(what: &str, app: &TestApp, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} within 90 s\n{}",
            app.logs().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_the_broker_and_the_webhook_once_across_a_kill_and_an_outage() {
    let receiver = Receiver {
        secret: strong_token("hook"),
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let secret_file = std::path::PathBuf::from(FILES_DIR).join(format!("hook-{}.secret", unique()));
    write_private(&secret_file, &format!("{}\n", receiver.secret));
    let mut app = TestApp::spawn_with(Options {
        per_host: 1,
        extra: format!(
            "[[webhook]]\nurl = \"http://{addr}/hook\"\nsecret_file = \"{}\"\nevents = [\"task.*\", \"subtask.*\", \"credential.*\"]\n",
            secret_file.display()
        ),
        ..Options::default()
    })
    .await;
    let (a, b, c) = (
        Account::create("rtitw"),
        Account::create("rtitw"),
        Account::create("rtitw"),
    );
    let resource = format!("hook-{}", app.id);
    let out = app.apply_inventory(&resource, &testbed().host_key_fpr, &[&a, &b, &c]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    // A queue of the test's own on the events exchange, counting message ids.
    let exchange = format!("rotor.events-{}", app.id);
    let queue = format!("rotor-it-events-{}", app.id);
    let conn = app.amqp().await;
    let ch = conn.create_channel().await.unwrap();
    let bind = |ch: lapin::Channel, exchange: String, queue: String| async move {
        ch.queue_declare(
            &queue,
            QueueDeclareOptions {
                durable: false,
                auto_delete: false,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.queue_bind(
            &queue,
            &exchange,
            "#",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    };
    bind(ch.clone(), exchange.clone(), queue.clone()).await;
    let published: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let mut consumer = ch
        .basic_consume(
            &queue,
            "",
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let counting = published.clone();
    tokio::spawn(async move {
        while let Some(Ok(d)) = consumer.next().await {
            let id = d
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default();
            *counting.lock().unwrap().entry(id).or_default() += 1;
        }
    });

    // 1. Everything flows: a rotation of a, and b's, asked for right after it, cancelled
    //    while it waits for the host (one rotation at a time there; a's takes seconds).
    let first = app
        .publish_and_reply(
            "credentials.update",
            &rotate_spec(&resource, &[&a.username]),
        )
        .await;
    let reply = app
        .publish_and_reply(
            "credentials.update",
            &rotate_spec(&resource, &[&b.username]),
        )
        .await;
    let id = reply["id"].as_str().unwrap().to_string();
    let (status, body) = app
        .send(
            "DELETE",
            &format!("/v1/credentials/tasks/{id}"),
            Some(&app.token),
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}\n{}", app.logs().join("\n"));
    let task = app.wait_task(&id, Duration::from_secs(60)).await;
    assert_eq!(task["status"], "CANCELLED", "{task:#}");
    let task = app
        .wait_task(first["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(task["status"], "SUCCESSFUL", "{task:#}");
    wait_until(
        "every event at the webhook and on the exchange",
        &app,
        || {
            let ids = outbox_ids(&app);
            let (seen, published) = (receiver.seen.lock().unwrap(), published.lock().unwrap());
            !ids.is_empty()
                && ids
                    .iter()
                    .all(|i| seen.contains_key(i) && published.contains_key(i))
        },
    )
    .await;
    let types: Vec<String> = receiver
        .seen
        .lock()
        .unwrap()
        .values()
        .map(|(_, t, _)| t.clone())
        .collect();
    for t in [
        "task.PENDING",
        "task.IN_PROGRESS",
        "subtask.IN_PROGRESS",
        "subtask.SUCCESSFUL",
        "subtask.CANCELLED",
    ] {
        assert!(types.iter().any(|x| x == t), "{t} in {types:?}");
    }

    // 2. The webhook fails and the exchange is gone; c rotates; rotor is SIGKILLed.
    receiver.failing.store(true, Ordering::SeqCst);
    ch.exchange_delete(&exchange, ExchangeDeleteOptions::default())
        .await
        .unwrap();
    let reply = app
        .publish_and_reply(
            "credentials.update",
            &rotate_spec(&resource, &[&c.username]),
        )
        .await;
    let second = reply["id"].as_str().unwrap().to_string();
    let task = app.wait_task(&second, Duration::from_secs(60)).await;
    assert_eq!(task["status"], "SUCCESSFUL", "{task:#}");
    // The rotation itself went through on the target while no event could leave.
    let new = app.reveal(&resource, &c.username);
    assert!(ssh_login(&c.username, &new), "c's new password logs in");
    assert!(
        !ssh_login(&c.username, &c.password),
        "c's old password is refused"
    );
    let unsent = psql_value(
        &app.db_name,
        "SELECT count(*) FROM outbox WHERE published_at IS NULL OR hooks_done_at IS NULL",
    );
    assert_ne!(
        unsent, "0",
        "events wait in the outbox while both sinks are away"
    );
    app.kill9();

    // 3. Both come back; so does rotor. Nothing is missing, nothing came twice.
    receiver.failing.store(false, Ordering::SeqCst);
    ch.exchange_declare(
        &exchange,
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    bind(ch.clone(), exchange.clone(), queue.clone()).await;
    app.start().await;
    wait_until(
        "the backlog at the webhook and on the exchange after the restart",
        &app,
        || {
            let ids = outbox_ids(&app);
            let (seen, published) = (receiver.seen.lock().unwrap(), published.lock().unwrap());
            ids.iter()
                .all(|i| seen.contains_key(i) && published.contains_key(i))
        },
    )
    .await;
    let seen = receiver.seen.lock().unwrap().clone();
    assert_eq!(*receiver.bad_signatures.lock().unwrap(), 0);
    let twice: Vec<_> = seen.iter().filter(|(_, (n, _, _))| *n != 1).collect();
    assert!(
        twice.is_empty(),
        "events received more than once: {twice:?}"
    );
    let repeated: Vec<_> = published
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, n)| **n != 1)
        .map(|(k, n)| (k.clone(), *n))
        .collect();
    assert!(
        repeated.is_empty(),
        "published more than once: {repeated:?}"
    );
    let second_done = seen
        .values()
        .any(|(_, t, data)| t == "task.SUCCESSFUL" && data["id"] == second.as_str());
    assert!(
        second_done,
        "the task that ended while both sinks were away was reported"
    );
    // No password in any event.
    let all = serde_json::to_string(&seen.values().map(|(_, _, d)| d.clone()).collect::<Vec<_>>())
        .unwrap();
    for account in [&a, &b, &c] {
        assert!(!all.contains(&account.password));
        assert!(!all.contains(&app.reveal(&resource, &account.username)));
    }
    let _ = std::fs::remove_file(&secret_file);
}
