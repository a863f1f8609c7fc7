//! The scheduler: auto-rotation every `frequencyInDays`, one task per due credential
//! across instances, catch-up spread with the per-host limit, pause and resume, retry
//! with backoff, and the heartbeat. Days pass by starting `rotor run` under libfaketime
//! (the wall clock ahead, the monotonic clock real): rotor judges due-ness by its own
//! process clock.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

/// Ticks every second, no jitter, no heartbeat unless asked. These tests make many
/// auto-rotations fail on unreachable hosts on purpose: the breaker (breaker.rs tests it)
/// stays out of their way.
fn fast(extra: &str) -> Options {
    let heartbeat = if extra.contains("heartbeat_tick") {
        ""
    } else {
        "heartbeat_tick = \"\"\n"
    };
    Options {
        scheduler: format!("tick = \"* * * * * *\"\njitter_minutes = 0\nbreaker_min_failures = 1000000\n{heartbeat}{extra}"),
        ..Options::default()
    }
}

fn auto_tasks(app: &TestApp) -> i64 {
    psql_value(
        &app.db_name,
        "SELECT count(*) FROM tasks WHERE is_auto_rotate",
    )
    .parse()
    .unwrap()
}

/// Waits for the `n`th auto-rotation task (oldest first) and returns its id.
async fn nth_auto_task(app: &TestApp, n: i64) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let id = psql_value(
            &app.db_name,
            &format!(
                "SELECT id FROM tasks WHERE is_auto_rotate ORDER BY created_at OFFSET {} LIMIT 1",
                n - 1
            ),
        );
        if !id.is_empty() {
            return id;
        }
        assert!(
            Instant::now() < deadline,
            "no auto-rotation task #{n}:\n{}",
            app.logs().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn restart_at(app: &mut TestApp, offset: &str) {
    app.stop();
    app.faketime = Some(offset.to_string());
    app.start().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_credential_rotates_once_after_a_day_and_not_again_until_the_next() {
    let mut app = TestApp::spawn_with(fast("")).await;
    let account = Account::create("rtitday");
    let resource = format!("day-{}", app.id);
    let inv = resource_toml(&resource, testbed().port, &testbed().host_key_fpr)
        + &app.accounts_toml(&[&account], "auto_rotate_days = 1\n");
    let out = app.apply_inventory_text(&resource, &inv);
    assert_eq!(out.code, 0, "{}", out.stderr);

    // Today: planned for tomorrow, shown in the API and by `credential due`; nothing fires.
    let planned: chrono::DateTime<chrono::Utc> = credential(&app, &account.username).await
        ["autoRotatePolicy"]["nextSchedule"]
        .as_str()
        .expect("nextSchedule")
        .parse()
        .unwrap();
    let ahead = planned - chrono::Utc::now();
    assert!(
        ahead > chrono::Duration::hours(23) && ahead <= chrono::Duration::hours(24),
        "next rotation in {ahead}"
    );
    let soon = app.cli(&["credential", "due", "--within", "2d"]);
    assert!(soon.stdout.contains(&account.username), "{}", soon.stdout);
    let not_yet = app.cli(&["credential", "due", "--within", "12h"]);
    assert!(
        !not_yet.stdout.contains(&account.username),
        "{}",
        not_yet.stdout
    );
    app.wait_ticks(3).await;
    assert_eq!(auto_tasks(&app), 0, "nothing is due yet");

    // A day and an hour later: rotated once, by a task marked isAutoRotate.
    restart_at(&mut app, "+25h").await;
    let first = nth_auto_task(&app, 1).await;
    let task = app.wait_task(&first, Duration::from_secs(90)).await;
    assert_eq!(task["status"], "SUCCESSFUL", "{task:#}");
    assert_eq!(task["isAutoRotate"], true);
    let second_password = app.reveal(&resource, &account.username);
    assert_ne!(second_password, account.password);
    assert!(
        ssh_login(&account.username, &second_password),
        "the new password logs in"
    );
    assert!(
        !ssh_login(&account.username, &account.password),
        "the old one is refused"
    );
    app.wait_ticks(3).await;
    assert_eq!(auto_tasks(&app), 1, "not again the same day");
    let next: chrono::DateTime<chrono::Utc> = credential(&app, &account.username).await
        ["autoRotatePolicy"]["nextSchedule"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let ahead = next - chrono::Utc::now();
    assert!(
        ahead > chrono::Duration::hours(48) && ahead <= chrono::Duration::hours(49),
        "planned a day after the rotation: {ahead}"
    );

    // The next day: rotated again.
    restart_at(&mut app, "+50h").await;
    let second = nth_auto_task(&app, 2).await;
    let task = app.wait_task(&second, Duration::from_secs(90)).await;
    assert_eq!(task["status"], "SUCCESSFUL", "{task:#}");
    let third_password = app.reveal(&resource, &account.username);
    assert!(ssh_login(&account.username, &third_password));
    assert!(!ssh_login(&account.username, &second_password));
    app.wait_ticks(2).await;
    assert_eq!(auto_tasks(&app), 2);
    app.assert_logs_free_of(&[&account.password, &second_password, &third_password]);
}

/// Accounts that need not exist: their resource's port is closed, so their tasks fail
/// fast (and, as auto-rotation failures, are retried an hour later, not in this test).
fn unreachable_inventory(resource: &str, prefix: &str, n: usize, days: u32) -> String {
    let mut text = resource_toml(resource, 1, &testbed().host_key_fpr);
    for i in 0..n {
        text.push_str(&format!(
            "\n[[resource.account]]\nusername = \"{prefix}{i:04}\"\nauto_rotate_days = {days}\n"
        ));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_create_exactly_one_task_per_due_credential() {
    let mut app = TestApp::spawn_with(fast("batch = 40\nburst = 1000")).await;
    let resource = format!("two-{}", app.id);
    let out = app.apply_inventory_text(
        &resource,
        &unreachable_inventory(&resource, "rtittwo", 200, 1),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    app.stop();
    app.faketime = Some("+25h".into());
    app.start().await;
    app.start_sibling().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while psql_value(&app.db_name, "SELECT count(DISTINCT s.credential_id) FROM subtasks s JOIN tasks t ON t.id = s.task_id WHERE t.is_auto_rotate") != "200" {
        assert!(Instant::now() < deadline, "not every due credential got a task:\n{}", app.logs().join("\n"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Both processes keep ticking; nothing more may appear.
    app.wait_ticks(3).await;
    assert_eq!(
        auto_tasks(&app),
        200,
        "one task per credential, no duplicates"
    );
    let scheduled: u64 = app
        .logs()
        .iter()
        .filter(|l| l.contains("auto-rotations scheduled"))
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["created"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(scheduled, 200, "the two processes together created 200");
    let per_credential = psql_value(
        &app.db_name,
        "SELECT max(n) FROM (SELECT count(*) AS n FROM subtasks s JOIN tasks t ON t.id = s.task_id WHERE t.is_auto_rotate GROUP BY s.credential_id) x",
    );
    assert_eq!(per_credential, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_after_downtime_is_spread_and_the_per_host_limit_holds() {
    // 500 accounts over 5 hosts on the real sshd. They do not exist there, so chpasswd
    // refuses each after a real admin session: short rotations that still hold a lease.
    let mut opts = fast("burst = 20\ncatch_up_seconds = 20");
    opts.per_host = 2;
    opts.concurrency = 8;
    let mut app = TestApp::spawn_with(opts).await;
    let mut inv = String::new();
    for h in 0..5 {
        let resource = format!("cu{h}-{}", app.id);
        inv.push_str(&resource_toml(
            &resource,
            testbed().port,
            &testbed().host_key_fpr,
        ));
        for i in 0..100 {
            inv.push_str(&format!(
                "\n[[resource.account]]\nusername = \"rtitnone{h}{i:03}\"\nauto_rotate_days = 1\n"
            ));
        }
        inv.push('\n');
    }
    let out = app.apply_inventory_text("catchup", &inv);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Three days of downtime.
    restart_at(&mut app, "+3d").await;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let done = psql_value(
            &app.db_name,
            "SELECT count(*) FROM subtasks WHERE status IN ('FAILED', 'SUCCESSFUL')",
        );
        if done == "500" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{done}/500 ended:\n{}",
            app.logs().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Planned evenly over 20 s, and no subtask started before its time.
    let span: f64 = psql_value(
        &app.db_name,
        "SELECT EXTRACT(EPOCH FROM max(not_before) - min(not_before)) FROM subtasks",
    )
    .parse()
    .unwrap();
    assert!(
        (18.0..=21.0).contains(&span),
        "starts planned over {span} s, expected about 20"
    );
    let early = psql_value(
        &app.db_name,
        "SELECT count(*) FROM subtasks s WHERE (SELECT min(started_at) FROM stages st WHERE st.subtask_id = s.id) < s.not_before",
    );
    assert_eq!(early, "0", "a subtask started before its planned time");
    let first_5s = psql_value(
        &app.db_name,
        "WITH st AS (SELECT s.id, min(g.started_at) AS t FROM subtasks s JOIN stages g ON g.subtask_id = s.id GROUP BY s.id)
         SELECT count(*) FROM st WHERE t < (SELECT min(t) FROM st) + interval '5 seconds'",
    );
    assert!(
        first_5s.parse::<i64>().unwrap() <= 150,
        "{first_5s} of 500 started in the first 5 s: not spread"
    );
    // The per-host limit, from the stage timestamps: at no instant more than 2 rotations
    // (first stage start to last stage end) overlap on one host.
    let overlap = psql_value(
        &app.db_name,
        "WITH iv AS (
             SELECT c.resource_id AS host, min(g.started_at) AS a, max(g.completed_at) AS b
               FROM subtasks s JOIN stages g ON g.subtask_id = s.id JOIN credentials c ON c.id = s.credential_id
              WHERE g.started_at IS NOT NULL GROUP BY s.id, c.resource_id)
         SELECT max(n) FROM (SELECT (SELECT count(*) FROM iv j WHERE j.host = i.host AND j.a <= i.a AND j.b > i.a) AS n FROM iv i) x",
    );
    assert!(
        overlap.parse::<i64>().unwrap() <= 2,
        "{overlap} rotations overlapped on one host (limit 2)"
    );
    assert_eq!(
        overlap, "2",
        "the limit was reached, so the check could fail"
    );
    let errors = psql_value(
        &app.db_name,
        "SELECT count(*) FROM subtasks WHERE errors::text LIKE '%PASSWORD_REJECTED_BY_TARGET%'",
    );
    assert_eq!(
        errors, "500",
        "every one reached the host and was refused there"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_credential_is_not_rotated_until_resumed() {
    let mut app = TestApp::spawn_with(fast("")).await;
    let (kept, paused) = (Account::create("rtitpk"), Account::create("rtitpp"));
    let resource = format!("pause-{}", app.id);
    let inv = resource_toml(&resource, testbed().port, &testbed().host_key_fpr)
        + &app.accounts_toml(&[&kept, &paused], "auto_rotate_days = 1\n");
    assert_eq!(app.apply_inventory_text(&resource, &inv).code, 0);
    let out = app.cli(&[
        "credential",
        "pause",
        "--resource",
        &resource,
        "--username",
        &paused.username,
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("paused"), "{}", out.stdout);
    assert!(
        credential(&app, &paused.username).await["autoRotatePolicy"]["nextSchedule"].is_null(),
        "no next schedule while paused"
    );
    let due = app.cli(&["credential", "due", "--within", "2d"]);
    assert!(
        due.stdout.contains(&kept.username) && !due.stdout.contains(&paused.username),
        "{}",
        due.stdout
    );

    restart_at(&mut app, "+25h").await;
    let first = nth_auto_task(&app, 1).await;
    assert_eq!(
        app.wait_task(&first, Duration::from_secs(90)).await["status"],
        "SUCCESSFUL"
    );
    app.wait_ticks(3).await;
    assert_eq!(auto_tasks(&app), 1, "only the running one rotated");
    assert_eq!(app.reveal(&resource, &paused.username), paused.password);
    assert!(
        ssh_login(&paused.username, &paused.password),
        "the paused account was left alone"
    );

    // `credential resume` runs beside the daemon (at the real time: the plan is overdue either way).
    let out = app.cli(&[
        "credential",
        "resume",
        "--resource",
        &resource,
        "--username",
        &paused.username,
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let second = nth_auto_task(&app, 2).await;
    let task = app.wait_task(&second, Duration::from_secs(90)).await;
    assert_eq!(task["status"], "SUCCESSFUL", "{task:#}");
    let new = app.reveal(&resource, &paused.username);
    assert!(ssh_login(&paused.username, &new));
    assert!(!ssh_login(&paused.username, &paused.password));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_auto_rotation_backs_off_then_stops_with_an_event_until_resumed() {
    use futures_util::StreamExt;
    let mut app = TestApp::spawn_with(fast("max_failures = 2\nretry_minutes = 30")).await;
    let resource = format!("fail-{}", app.id);
    assert_eq!(
        app.apply_inventory_text(
            &resource,
            &unreachable_inventory(&resource, "rtitfail", 1, 1)
        )
        .code,
        0
    );
    let (_conn, mut events) = app.events("credential.#").await;

    restart_at(&mut app, "+25h").await;
    let first = nth_auto_task(&app, 1).await;
    let task = app.wait_task(&first, Duration::from_secs(60)).await;
    assert_eq!(task["status"], "FAILED");
    assert_eq!(
        task["subTasks"][0]["errors"][0]["errorCode"], "CONNECTION_FAILED",
        "{task:#}"
    );
    app.wait_ticks(3).await;
    assert_eq!(
        auto_tasks(&app),
        1,
        "retried after a backoff, not on every tick"
    );

    // 30 minutes later (first backoff): the second failure stops auto-rotation.
    restart_at(&mut app, "+1532m").await;
    let second = nth_auto_task(&app, 2).await;
    assert_eq!(
        app.wait_task(&second, Duration::from_secs(60)).await["status"],
        "FAILED"
    );
    let d = tokio::time::timeout(Duration::from_secs(30), events.next())
        .await
        .expect("an event")
        .unwrap()
        .unwrap();
    assert_eq!(d.routing_key.as_str(), "credential.AUTO_ROTATE_STOPPED");
    let body: Value = serde_json::from_slice(&d.data).unwrap();
    assert_eq!(body["username"], "rtitfail0000");

    // Days later: still stopped.
    restart_at(&mut app, "+4d").await;
    app.wait_ticks(3).await;
    assert_eq!(auto_tasks(&app), 2, "stopped until someone acts");
    assert!(credential(&app, "rtitfail0000").await["autoRotatePolicy"]["nextSchedule"].is_null());
    // Someone acts: resume plans it at once.
    let out = app.cli(&[
        "credential",
        "resume",
        "--resource",
        &resource,
        "--username",
        "rtitfail0000",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    nth_auto_task(&app, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_finds_a_password_changed_behind_rotors_back_and_remediate_clears_it() {
    use futures_util::StreamExt;
    let mut app = TestApp::spawn_with(fast(
        "heartbeat_tick = \"*/2 * * * * *\"\nheartbeat_hours = 24",
    ))
    .await;
    let account = Account::create("rtithb");
    let resource = format!("hb-{}", app.id);
    // Every two days; the heartbeat looks once a day.
    let inv = resource_toml(&resource, testbed().port, &testbed().host_key_fpr)
        + &app.accounts_toml(&[&account], "auto_rotate_days = 2\n");
    assert_eq!(app.apply_inventory_text(&resource, &inv).code, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.metric("rotor_heartbeat_checks_total").await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "no heartbeat:\n{}",
            app.logs().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        credential(&app, &account.username).await["status"],
        "ACTIVE"
    );
    assert_eq!(app.metric("rotor_heartbeat_out_of_sync_total").await, 0.0);

    // Someone changes the password by hand.
    let by_hand = format!("Hand-{}-Set9!", unique());
    account.set_password_on_host(&by_hand);
    let (_conn, mut events) = app.events("credential.#").await;

    // A day later the heartbeat looks again and finds it.
    restart_at(&mut app, "+25h").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while credential(&app, &account.username).await["status"] != "OUT_OF_SYNC" {
        assert!(
            Instant::now() < deadline,
            "not marked OUT_OF_SYNC:\n{}",
            app.logs().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let d = tokio::time::timeout(Duration::from_secs(30), events.next())
        .await
        .expect("an event")
        .unwrap()
        .unwrap();
    assert_eq!(d.routing_key.as_str(), "credential.OUT_OF_SYNC");
    let body: Value = serde_json::from_slice(&d.data).unwrap();
    assert_eq!(body["username"], account.username.as_str());
    assert_eq!(body["status"], "OUT_OF_SYNC");

    // Past its due time it is still not rotated: rotor does not know the live password.
    restart_at(&mut app, "+49h").await;
    app.wait_ticks(3).await;
    assert_eq!(
        auto_tasks(&app),
        0,
        "an OUT_OF_SYNC credential is never auto-rotated"
    );
    assert!(ssh_login(&account.username, &by_hand));

    // REMEDIATE with the live password clears it; the overdue auto-rotation follows.
    let spec = json!({"operationType": "REMEDIATE", "elements": [{"resourceId": resource, "resourceType": "LINUX",
        "credentials": [{"username": account.username, "password": by_hand}]}]});
    let reply = app
        .publish_and_reply("credentials.update", &serde_json::to_vec(&spec).unwrap())
        .await;
    let task = app
        .wait_task(reply["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(task["status"], "SUCCESSFUL", "{task:#}");
    assert_eq!(
        credential(&app, &account.username).await["status"],
        "ACTIVE"
    );
    let auto = nth_auto_task(&app, 1).await;
    assert_eq!(
        app.wait_task(&auto, Duration::from_secs(90)).await["status"],
        "SUCCESSFUL"
    );
    let rotated = app.reveal(&resource, &account.username);
    assert!(ssh_login(&account.username, &rotated));
    assert!(!ssh_login(&account.username, &by_hand));
    app.assert_logs_free_of(&[&account.password, &by_hand, &rotated]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_auto_rotation_is_withdrawn_by_pause_disable_and_drift() {
    // Four due at once with burst = 0: their starts are spread 1,000 s apart, so three
    // tasks wait, planned but not started, while the first runs.
    let mut app = TestApp::spawn_with(fast("burst = 0\ncatch_up_seconds = 4000")).await;
    let accounts: Vec<Account> = (0..4).map(|_| Account::create("rtitwd")).collect();
    let resource = format!("wd-{}", app.id);
    let inv = resource_toml(&resource, testbed().port, &testbed().host_key_fpr)
        + &app.accounts_toml(
            &accounts.iter().collect::<Vec<_>>(),
            "auto_rotate_days = 1\n",
        );
    assert_eq!(app.apply_inventory_text(&resource, &inv).code, 0);
    restart_at(&mut app, "+25h").await;
    nth_auto_task(&app, 4).await;
    let waiting = psql_value(
        &app.db_name,
        "SELECT string_agg(t.id || ' ' || c.username, ',' ORDER BY s.not_before) FROM tasks t
           JOIN subtasks s ON s.task_id = t.id JOIN credentials c ON c.id = s.credential_id
          WHERE t.is_auto_rotate AND s.status = 'PENDING' AND s.not_before > now() + interval '10 minutes'",
    );
    let waiting: Vec<(&str, &str)> = waiting
        .split(',')
        .map(|p| p.split_once(' ').unwrap())
        .collect();
    assert_eq!(waiting.len(), 3, "three planned, not started: {waiting:?}");
    let account = |name: &str| accounts.iter().find(|a| a.username == name).unwrap();
    let [(paused_task, paused), (disabled_task, disabled), (drifted_task, drifted)] = waiting[..]
    else {
        unreachable!()
    };

    // Paused: its planned turn is cancelled at once.
    let out = app.cli(&[
        "credential",
        "pause",
        "--resource",
        &resource,
        "--username",
        paused,
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains(&format!("task {paused_task}) was cancelled")),
        "{}",
        out.stdout
    );
    // Disabled by UPDATE_AUTO_ROTATE_POLICY.
    let spec = json!({"operationType": "UPDATE_AUTO_ROTATE_POLICY", "elements": [{"resourceId": resource, "resourceType": "LINUX",
        "credentials": [{"username": disabled}]}], "autoRotatePolicy": {"enableAutoRotatePolicy": false}});
    let reply = app
        .publish_and_reply("credentials.update", &serde_json::to_vec(&spec).unwrap())
        .await;
    assert_eq!(
        app.wait_task(reply["id"].as_str().unwrap(), Duration::from_secs(60))
            .await["status"],
        "SUCCESSFUL"
    );
    // Changed behind rotor's back, found by a heartbeat round.
    let by_hand = format!("Hand-{}-Set9!", unique());
    account(drifted).set_password_on_host(&by_hand);
    let out = app.cli(&["scheduler", "heartbeat"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(credential(&app, drifted).await["status"], "OUT_OF_SYNC");

    for task_id in [paused_task, disabled_task, drifted_task] {
        let task = app.wait_task(task_id, Duration::from_secs(30)).await;
        assert_eq!(task["status"], "CANCELLED", "{task:#}");
        let stages = task["subTasks"][0]["stages"].as_array().unwrap();
        assert!(
            stages.iter().all(|s| s["status"] == "CANCELLED"),
            "no stage ran: {task:#}"
        );
    }
    // Nothing was touched on the targets, and rotor still holds what they hold.
    for name in [paused, disabled] {
        assert_eq!(app.reveal(&resource, name), account(name).password);
        assert!(ssh_login(name, &account(name).password));
    }
    assert!(
        ssh_login(drifted, &by_hand),
        "the drifted account keeps the password set by hand"
    );
    // The first one was already running and rotated; no new turn was planned for the others.
    // (All four were created in one transaction: the first is the one planned to start first.)
    let first = psql_value(
        &app.db_name,
        "SELECT t.id FROM tasks t JOIN subtasks s ON s.task_id = t.id WHERE t.is_auto_rotate ORDER BY s.not_before LIMIT 1",
    );
    assert!(![paused_task, disabled_task, drifted_task].contains(&first.as_str()));
    assert_eq!(
        app.wait_task(&first, Duration::from_secs(90)).await["status"],
        "SUCCESSFUL"
    );
    app.wait_ticks(3).await;
    assert_eq!(auto_tasks(&app), 4, "withdrawn turns are not planned again");
    assert!(credential(&app, disabled).await["autoRotatePolicy"].is_null());

    // Resumed, the paused one rotates at the next tick.
    let out = app.cli(&[
        "credential",
        "resume",
        "--resource",
        &resource,
        "--username",
        paused,
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let fifth = nth_auto_task(&app, 5).await;
    assert_eq!(
        app.wait_task(&fifth, Duration::from_secs(90)).await["status"],
        "SUCCESSFUL"
    );
    let new = app.reveal(&resource, paused);
    assert!(ssh_login(paused, &new));
    assert!(!ssh_login(paused, &account(paused).password));
}
