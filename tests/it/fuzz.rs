//! The fuzzed intake over the real broker: 10,000 generated requests (fuzzgen.rs) to a
//! running daemon. Expected: no panic, every request recorded, every refusal naming
//! its field and dead-lettered, nothing changed on the target, the daemon still serving.

use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::BasicProperties;

#[path = "fuzzgen.rs"]
mod fuzzgen;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_mutated_requests_over_the_broker_change_nothing() {
    let count: usize = std::env::var("ROTOR_FUZZ_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let app = TestApp::spawn().await;
    let account = Account::create("rtitfz");
    let resource = format!("fz-{}", app.id);
    let out = app.apply_inventory(&resource, &testbed().host_key_fpr, &[&account]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut generator = fuzzgen::Gen::new(
        0xf022,
        vec![resource.clone()],
        vec![account.username.clone()],
    );

    let started = Instant::now();
    let conn = app.amqp().await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut confirms = Vec::with_capacity(count);
    for i in 0..count {
        let (kind, body) = generator.next();
        let props = BasicProperties::default()
            .with_message_id(format!("fz-{i}").into())
            .with_user_id("guest".into());
        confirms.push(
            ch.basic_publish(
                &app.exchange,
                kind,
                BasicPublishOptions::default(),
                &body,
                props,
            )
            .await
            .unwrap(),
        );
    }
    for c in confirms {
        assert!(
            c.await.unwrap().is_ack(),
            "the broker confirms every request"
        );
    }
    let published = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let recorded: usize = psql_value(&app.db_name, "SELECT count(*) FROM tasks")
            .parse()
            .unwrap();
        if recorded == count {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{recorded} of {count} recorded after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let handled = started.elapsed();
    // Every one refused, with its field; each dead-lettered.
    assert_eq!(
        psql_value(
            &app.db_name,
            "SELECT string_agg(DISTINCT status, ',') FROM tasks"
        ),
        "FAILED"
    );
    assert_eq!(
        psql_value(
            &app.db_name,
            "SELECT count(*) FROM tasks WHERE coalesce(errors->0->'context'->>'field', '') = ''"
        ),
        "0"
    );
    let dead = ch
        .queue_declare(
            &format!("rotor.requests.dead-{}", app.id),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap()
        .message_count() as usize;
    assert_eq!(dead, count, "every refusal dead-lettered");
    // Nothing changed on the target or in the vault; the daemon still serves.
    assert_eq!(
        psql_value(&app.db_name, "SELECT count(*) FROM subtasks"),
        "0"
    );
    assert_eq!(
        psql_value(&app.db_name, "SELECT count(*) FROM credential_versions"),
        "1"
    );
    assert!(ssh_login(&account.username, &account.password));
    assert!(
        !app.logs().iter().any(|l| l.contains("panicked")),
        "a panic in the daemon"
    );
    let (status, _) = app.get("/readyz", None).await;
    assert_eq!(status, 200);
    let reply = app
        .publish_and_reply(
            "credentials.update",
            &rotate_spec(&resource, &[&account.username]),
        )
        .await;
    let done = app
        .wait_task(reply["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(done["status"], "SUCCESSFUL", "and still rotates: {done:#}");
    let codes = psql_value(&app.db_name, "SELECT string_agg(code || ' ' || n, ', ') FROM (SELECT errors->0->>'errorCode' AS code, count(*) AS n FROM tasks WHERE status = 'FAILED' GROUP BY 1 ORDER BY 2 DESC) t");
    eprintln!("fuzzed over the broker: {count} requests published in {:.1} s, all recorded and dead-lettered in {:.1} s; refusals: {codes}", published.as_secs_f64(), handled.as_secs_f64());
    let _ = conn.close(200, "bye").await;
}
