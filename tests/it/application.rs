//! The daemon as a library: `Application::build` binds and tells its port, and
//! `run_until_stopped` shuts down in phases, so a rotation running when the stop comes
//! reaches its end on the target and the events it raised are still published.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rotor::app::Application;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_running_at_stop_finishes_and_its_events_are_published() {
    let mut app = TestApp::spawn().await;
    let account = Account::create("rtitp");
    let resource = format!("web-{}", app.id);
    let out = app.apply_inventory(&resource, &testbed().host_key_fpr, &[&account]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // From here the daemon runs in this test's process, on the same configuration.
    app.stop();
    let settings = rotor::config::load(Some(&app.config)).expect("the test's configuration loads");
    let application = Application::build(settings, false).await.expect("build");
    let addr = application.http_addr();
    assert!(
        addr.ip().is_loopback() && addr.port() != 0,
        "build bound a real port: {addr}"
    );
    app.http = format!("http://{addr}");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(application.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.get("/readyz", None).await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the application did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_events_conn, mut events) = app.events("task.#").await;

    let reply = app
        .publish_and_reply(
            "credentials.update",
            &rotate_spec(&resource, &[&account.username]),
        )
        .await;
    let id = reply["id"].as_str().unwrap().to_string();
    // Stop while the rotation is between changing the target and committing: VERIFY_NEW
    // tries the old password first (on the connection it then logs in with the new
    // one), and that refused login waits out PAM's delay.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, task) = app
            .get(&format!("/v1/credentials/tasks/{id}"), Some(&app.token))
            .await;
        let stages = task["subTasks"][0]["stages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let running = stages
            .iter()
            .any(|s| s["name"] == "VERIFY_NEW" && s["status"] == "IN_PROGRESS");
        if running {
            break;
        }
        assert_ne!(
            task["status"], "SUCCESSFUL",
            "the rotation ended before the stop could be sent: {task:#}"
        );
        assert!(
            Instant::now() < deadline,
            "the rotation never reached VERIFY_NEW: {task:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(90), running)
        .await
        .expect("run_until_stopped returns after the drain")
        .expect("no panic")
        .expect("a clean stop");

    // The drain let the rotation finish: committed, and true on the target.
    assert_eq!(
        psql_value(
            &app.db_name,
            &format!("SELECT status FROM tasks WHERE id = '{id}'")
        ),
        "SUCCESSFUL"
    );
    let new_password = app.reveal(&resource, &account.username);
    assert!(
        ssh_login(&account.username, &new_password),
        "the new password logs in"
    );
    assert!(
        !ssh_login(&account.username, &account.password),
        "the old password is refused"
    );
    // The events of what finished during the drain were published before the publisher stopped.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let delivery = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            events.next(),
        )
        .await
        .expect("task.SUCCESSFUL was published during the drain")
        .expect("the event stream is open")
        .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&delivery.data).unwrap();
        if delivery.routing_key.as_str() == "task.SUCCESSFUL" && body["id"] == id.as_str() {
            break;
        }
    }
}
