//! The lockout budget against an sshd whose own PAM service has pam_faillock deny=3:
//! rotations and heartbeats never lock the account, and after a drift the refused checks
//! stop before the third refusal would.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faillock_target_is_never_locked_by_rotations_heartbeats_or_wrong_passwords() {
    let app = TestApp::spawn_with(Options {
        scheduler: "heartbeat_tick = \"\"\nheartbeat_hours = 0\n".into(),
        ..Options::default()
    })
    .await;
    let sshd = ExtraSshd::start_faillock(3);
    let account = Account::create("rtitlk");
    let resource = format!("lk-{}", app.id);
    let out = app.apply_inventory_at(&resource, sshd.port, &sshd.host_key_fpr, &[&account]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    // 20 rotations: each VERIFY tries the old password (refused) and then, on the same
    // connection, the new one (accepted), which clears the target's tally.
    let mut ids = Vec::new();
    for _ in 0..20 {
        let reply = app
            .publish_and_reply(
                "credentials.update",
                &rotate_spec(&resource, &[&account.username]),
            )
            .await;
        ids.push(reply["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        let task = app.wait_task(id, Duration::from_secs(180)).await;
        assert_eq!(task["status"], "SUCCESSFUL", "{task:#}");
    }
    // 5 heartbeat rounds, each logging in with the stored password.
    for _ in 0..5 {
        let out = app.cli(&["scheduler", "heartbeat", "--json"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let round: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(
            (round["checked"].as_i64(), round["outOfSync"].as_i64()),
            (Some(1), Some(0)),
            "{round}"
        );
    }
    let live = app.reveal(&resource, &account.username);
    assert!(
        sshd.login(&account.username, &live),
        "never locked: the live password logs in"
    );
    assert!(
        !sshd.login(&account.username, &account.password),
        "the first password is long gone"
    );
    assert!(
        sshd.login(&account.username, &live),
        "one refusal then an acceptance clears the tally"
    );
    assert!(
        sshd.faillock(&account.username).is_empty(),
        "faillock shows a clean tally"
    );

    // Drift: the password is changed behind rotor's back. The heartbeat's login is
    // refused (1), a REMEDIATE with a wrong password is refused (2), and the truth-finding
    // after it would try the stored password: a third refusal, which locks the account at
    // deny=3. rotor stops there instead.
    let drifted = initial_password();
    account.set_password_on_host(&drifted);
    let out = app.cli(&["scheduler", "heartbeat", "--json"]);
    let round: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(round["outOfSync"], 1, "{round}");
    let task = app
        .request(&spec(
            "REMEDIATE",
            &resource,
            json!([{"username": account.username, "password": "Wrong-Supplied-Pw9!"}]),
        ))
        .await;
    assert_eq!(task["status"], "FAILED", "{task:#}");
    assert_eq!(
        task["subTasks"][0]["errors"][0]["errorCode"], "AUTHENTICATION_FAILED",
        "{task:#}"
    );
    let tally = sshd.faillock(&account.username);
    assert_eq!(
        tally.len(),
        2,
        "two refusals counted on the target, not three: {tally:?}"
    );
    // Any further attempt in the window is refused by rotor itself, the right password
    // included: it cannot know which one is right before trying.
    let task = app
        .request(&spec(
            "REMEDIATE",
            &resource,
            json!([{"username": account.username, "password": drifted}]),
        ))
        .await;
    assert_eq!(task["status"], "FAILED", "{task:#}");
    assert_eq!(
        task["subTasks"][0]["errors"][0]["errorCode"], "LOCKOUT_BUDGET_SPENT",
        "{task:#}"
    );
    assert_eq!(
        sshd.faillock(&account.username).len(),
        2,
        "no refusal was spent"
    );
    assert!(
        sshd.login(&account.username, &drifted),
        "the account is not locked"
    );
    app.assert_logs_free_of(&[&account.password, &live, &drifted]);
}
