//! A ROTATE request travels the whole way and the target itself shows the result.

use std::time::{Duration, Instant};

use crate::helpers::*;

const STAGES: [&str; 7] = [
    "VALIDATE",
    "GENERATE",
    "STAGE_PENDING",
    "APPLY",
    "VERIFY_NEW",
    "VERIFY_OLD_REJECTED",
    "COMMIT",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_over_amqp_changes_the_password_on_the_target() {
    let app = TestApp::spawn().await;
    let account = Account::create("rtita");
    let resource = format!("web-{}", app.id);
    let bed = testbed();
    let out = app.apply_inventory(&resource, &bed.host_key_fpr, &[&account]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("password onboarded (version 1)"),
        "{}",
        out.stdout
    );
    assert!(
        ssh_login(&account.username, &account.password),
        "the initial password logs in before rotation"
    );

    let started = Instant::now();
    let reply = app
        .publish_and_reply(
            "credentials.update",
            &rotate_spec(&resource, &[&account.username]),
        )
        .await;
    assert_eq!(reply["status"], "PENDING", "{reply:#}");
    let id = reply["id"].as_str().unwrap().to_string();
    let task = app.wait_task(&id, Duration::from_secs(60)).await;
    eprintln!("publish -> SUCCESSFUL: {:?}", started.elapsed());

    assert_eq!(task["status"], "SUCCESSFUL", "{task:#}");
    assert_eq!(task["resolutionStatus"], "RESOLVED");
    assert_eq!(task["isAutoRotate"], false);
    assert!(task["completionTimestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(task["resources"][0]["resourceId"], resource.as_str());
    let sub = &task["subTasks"][0];
    assert_eq!(sub["status"], "SUCCESSFUL");
    let names: Vec<&str> = sub["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, STAGES);
    for stage in sub["stages"].as_array().unwrap() {
        assert_eq!(stage["status"], "SUCCESSFUL", "{stage:#}");
        assert!(stage["creationTimestamp"].is_string() && stage["completionTimestamp"].is_string());
    }

    // The target itself: the new password logs in, the old one is refused.
    let new_password = app.reveal(&resource, &account.username);
    assert_ne!(new_password, account.password);
    assert!(
        ssh_login(&account.username, &new_password),
        "the new password logs in"
    );
    assert!(
        !ssh_login(&account.username, &account.password),
        "the old password is refused"
    );
    let check = app.cli_with_stdin(
        &["policy", "check", "linux"],
        Some(&format!("{new_password}\n")),
    );
    assert_eq!(
        check.code, 0,
        "generated password complies with the linux policy: {}",
        check.stdout
    );

    // The vault keeps the old one as PREVIOUS, encrypted; nothing leaks anywhere.
    let prev = app.cli(&[
        "credential",
        "reveal",
        "--resource",
        &resource,
        "--username",
        &account.username,
        "--version",
        "1",
    ]);
    assert_eq!(prev.stdout.trim_end(), account.password);
    let states = psql_value(
        &app.db_name,
        "SELECT string_agg(state, ',' ORDER BY version) FROM credential_versions",
    );
    assert_eq!(states, "PREVIOUS,CURRENT");
    let raw = psql_value(
        &app.db_name,
        "SELECT string_agg(encode(ciphertext, 'escape'), '') FROM credential_versions",
    );
    assert!(
        !raw.contains(&new_password) && !raw.contains(&account.password),
        "passwords are encrypted at rest"
    );
    let task_text = task.to_string();
    assert!(!task_text.contains(&new_password) && !task_text.contains(&account.password));
    app.assert_logs_free_of(&[&new_password, &account.password]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_enqueue_and_watch_follow_a_rotation_to_its_end() {
    let app = TestApp::spawn().await;
    let a = Account::create("rtitb");
    let b = Account::create("rtitb");
    let resource = format!("db-{}", app.id);
    let out = app.apply_inventory(&resource, &testbed().host_key_fpr, &[&a, &b]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    let out = app.cli(&[
        "enqueue",
        "rotate",
        "--resource",
        &resource,
        "--username",
        &a.username,
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = out.stdout.trim().to_string();
    assert_eq!(id.len(), 36, "prints the task id alone: {}", out.stdout);
    let watch = app.cli(&["task", "watch", &id, "--interval-ms", "100"]);
    assert_eq!(
        watch.code, 0,
        "watch exits 0 on SUCCESSFUL: {}{}",
        watch.stdout, watch.stderr
    );
    for stage in STAGES {
        assert!(
            watch.stdout.contains(stage),
            "watch shows {stage}: {}",
            watch.stdout
        );
    }
    assert!(watch.stdout.contains("SUCCESSFUL"));

    let new_a = app.reveal(&resource, &a.username);
    assert!(ssh_login(&a.username, &new_a));
    assert!(!ssh_login(&a.username, &a.password));
    // The other account on the same host was not touched.
    assert!(ssh_login(&b.username, &b.password));
    assert_eq!(app.reveal(&resource, &b.username), b.password);

    let list = app.cli(&["credential", "list", "--resource", &resource]);
    assert!(
        list.stdout.contains(&a.username) && !list.stdout.contains(&new_a),
        "{}",
        list.stdout
    );
    app.assert_logs_free_of(&[&new_a, &a.password, &b.password]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_key_mismatch_fails_before_any_credential_is_sent() {
    let app = TestApp::spawn().await;
    let account = Account::create("rtitc");
    let resource = format!("evil-{}", app.id);
    // A well-formed fingerprint that is not the test sshd's.
    let wrong = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let out = app.apply_inventory(&resource, wrong, &[&account]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let reply = app
        .publish_and_reply(
            "credentials.update",
            &rotate_spec(&resource, &[&account.username]),
        )
        .await;
    let task = app
        .wait_task(reply["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(task["status"], "FAILED", "{task:#}");
    assert_eq!(
        task["resolutionStatus"], "RESOLVED",
        "nothing reached the target"
    );
    assert_eq!(
        task["errors"][0]["errorCode"], "HOST_KEY_MISMATCH",
        "{task:#}"
    );
    let apply = task["subTasks"][0]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "APPLY")
        .unwrap()
        .clone();
    assert_eq!(apply["status"], "FAILED");
    // The account and the vault still agree on the old password.
    assert!(ssh_login(&account.username, &account.password));
    assert_eq!(app.reveal(&resource, &account.username), account.password);
    let states = psql_value(
        &app.db_name,
        "SELECT string_agg(state, ',' ORDER BY version) FROM credential_versions",
    );
    assert_eq!(states, "CURRENT,ABANDONED");
}

/// The ports of the test sshd's connections on which `username` tried a password, each
/// with what was tried there in order ("Failed", "Accepted").
fn password_attempts_by_connection(
    username: &str,
) -> std::collections::BTreeMap<String, Vec<String>> {
    let log =
        std::fs::read_to_string(format!("{FILES_DIR}/sshd.log")).expect("the test sshd's log");
    let mut by_port: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for line in log.lines() {
        for outcome in ["Failed", "Accepted"] {
            let prefix = format!("{outcome} password for {username} from 127.0.0.1 port ");
            if let Some(rest) = line.split(&prefix).nth(1) {
                let port = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                by_port.entry(port).or_default().push(outcome.to_string());
            }
        }
    }
    by_port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_verifications_share_one_connection_and_a_hosts_changes_share_its_admin_session() {
    let app = TestApp::spawn().await;
    let (a, b) = (Account::create("rtitv"), Account::create("rtitv"));
    let resource = format!("reuse-{}", app.id);
    let out = app.apply_inventory(&resource, &testbed().host_key_fpr, &[&a, &b]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    // One after the other, so the second change finds the first one's admin session idle.
    for account in [&a, &b] {
        let reply = app
            .publish_and_reply(
                "credentials.update",
                &rotate_spec(&resource, &[&account.username]),
            )
            .await;
        let task = app
            .wait_task(reply["id"].as_str().unwrap(), Duration::from_secs(60))
            .await;
        assert_eq!(task["status"], "SUCCESSFUL", "{task:#}");
    }
    assert!(
        app.logs()
            .iter()
            .any(|l| l.contains("admin session reused") && l.contains(&resource)),
        "the second change on the host did not reuse the admin session:\n{}",
        app.logs().join("\n")
    );
    for account in [&a, &b] {
        // rotor's whole verification was one connection: the old password refused, then
        // the new one accepted on it (sshd logs both with the connection's port).
        let attempts = password_attempts_by_connection(&account.username);
        let verifications: Vec<_> = attempts.values().filter(|v| v.len() > 1).collect();
        assert_eq!(
            verifications,
            [&vec!["Failed".to_string(), "Accepted".to_string()]],
            "{attempts:?}"
        );
        assert_eq!(
            attempts.len(),
            1,
            "no other password login was made: {attempts:?}"
        );
        // And on the target itself.
        let new_password = app.reveal(&resource, &account.username);
        assert!(
            ssh_login(&account.username, &new_password),
            "the new password logs in"
        );
        assert!(
            !ssh_login(&account.username, &account.password),
            "the old password is refused"
        );
    }
}
