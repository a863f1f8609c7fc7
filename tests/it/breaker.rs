//! The scheduler's breaker: auto-rotations failing past the ratio pause auto-rotation
//! everywhere and raise `scheduler.BREAKER_OPEN`, until `rotor scheduler resume`.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;

use crate::helpers::*;

fn auto_tasks(app: &TestApp, status: &str) -> i64 {
    psql_value(
        &app.db_name,
        &format!("SELECT count(*) FROM tasks WHERE is_auto_rotate AND status = '{status}'"),
    )
    .parse()
    .unwrap()
}

async fn until(what: &str, app: &TestApp, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}:\n{}",
            app.logs().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_auto_rotations_open_the_breaker_until_an_operator_resumes() {
    let app = TestApp::spawn_with(Options {
        scheduler: "tick = \"* * * * * *\"\njitter_minutes = 0\nheartbeat_tick = \"\"\nexpiry_tick = \"\"\nbreaker_min_failures = 3\nbreaker_ratio = 0.5\n".into(),
        ..Options::default()
    })
    .await;
    let bed = testbed();
    let broken: Vec<Account> = (0..3).map(|_| Account::create("rtitbr")).collect();
    let healthy = Account::create("rtitbh");
    let bad = format!("brk-{}", app.id);
    let good = format!("brg-{}", app.id);
    let fake_key = format!("SHA256:{}", "C".repeat(43));
    let text = resource_toml(&bad, bed.port, &fake_key)
        + &app.accounts_toml(&broken.iter().collect::<Vec<_>>(), "auto_rotate_days = 1\n")
        + "\n"
        + &resource_toml(&good, bed.port, &bed.host_key_fpr)
        + &app.accounts_toml(&[&healthy], "auto_rotate_days = 1\n");
    let out = app.apply_inventory_text("breaker", &text);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (_conn, mut events) = app.events("scheduler.#").await;

    // The broken host's three accounts come due and fail (its key is not the pinned one).
    psql(
        &app.db_name,
        &format!("UPDATE credentials SET next_rotation_at = now() WHERE resource_id = '{bad}'"),
    );
    until("three failed auto-rotations", &app, || {
        auto_tasks(&app, "FAILED") == 3
    })
    .await;
    let d = tokio::time::timeout(Duration::from_secs(60), events.next())
        .await
        .expect("scheduler.BREAKER_OPEN within 60 s")
        .unwrap()
        .unwrap();
    assert_eq!(d.routing_key.as_str(), "scheduler.BREAKER_OPEN");
    let body: Value = serde_json::from_slice(&d.data).unwrap();
    assert_eq!(body["breaker"], "OPEN", "{body}");
    assert!(
        body["reason"].as_str().unwrap().contains("3 of the 3"),
        "{body}"
    );
    let out = app.cli(&["scheduler", "status", "--json"]);
    let status: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(status["open"], true, "{status}");

    // While it is open, a healthy credential that comes due is not rotated.
    psql(
        &app.db_name,
        &format!("UPDATE credentials SET next_rotation_at = now() WHERE resource_id = '{good}'"),
    );
    app.wait_ticks(3).await;
    assert_eq!(
        psql_value(
            &app.db_name,
            "SELECT count(*) FROM tasks WHERE is_auto_rotate"
        ),
        "3",
        "no auto-rotation starts while the breaker is open"
    );
    assert!(ssh_login(&healthy.username, &healthy.password));

    // An operator resumes (audited): the healthy credential rotates at the next tick.
    let out = app.cli(&["scheduler", "resume"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("breaker closed"), "{}", out.stdout);
    until("the healthy auto-rotation", &app, || {
        auto_tasks(&app, "SUCCESSFUL") == 1
    })
    .await;
    let new = app.reveal(&good, &healthy.username);
    assert!(
        ssh_login(&healthy.username, &new),
        "the new password logs in"
    );
    assert!(
        !ssh_login(&healthy.username, &healthy.password),
        "the old one is refused"
    );
    let d = tokio::time::timeout(Duration::from_secs(30), events.next())
        .await
        .expect("scheduler.BREAKER_CLOSED")
        .unwrap()
        .unwrap();
    assert_eq!(d.routing_key.as_str(), "scheduler.BREAKER_CLOSED");
    assert_eq!(
        psql_value(
            &app.db_name,
            "SELECT count(*) FROM audit_log WHERE action = 'SCHEDULER_RESUME'"
        ),
        "1"
    );
    let out = app.cli(&["scheduler", "status", "--json"]);
    let status: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(status["open"], false, "{status}");
}
