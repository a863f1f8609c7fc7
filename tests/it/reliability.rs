//! No password lost: crashes at every stage boundary, dead hosts, and (with
//! `--ignored`, from scripts/reliability.sh) the long proofs of RELIABILITY.md.

use std::time::Duration;

use crate::helpers::*;

/// Every place a crash can strike a rotation: each stage boundary, and the moment the
/// target has changed but rotor has not yet recorded it.
const POINTS: [&str; 15] = [
    "VALIDATE:before",
    "VALIDATE:after",
    "GENERATE:before",
    "GENERATE:after",
    "STAGE_PENDING:before",
    "STAGE_PENDING:after",
    "APPLY:before",
    "APPLY:target",
    "APPLY:after",
    "VERIFY_NEW:before",
    "VERIFY_NEW:after",
    "VERIFY_OLD_REJECTED:before",
    "VERIFY_OLD_REJECTED:after",
    "COMMIT:before",
    "COMMIT:after",
];

fn trials() -> usize {
    std::env::var("ROTOR_RELIABILITY_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// The vault's current password logs in and its previous one is refused; nothing is
/// left pending. Returns a description of what is wrong, if anything.
pub fn check_account(app: &TestApp, resource: &str, account: &Account) -> Result<(), String> {
    check_credential(app, resource, &account.username, &ssh_login)
}

/// The same for any kind of target: `logs_in` asks the target itself.
pub fn check_credential(
    app: &TestApp,
    resource: &str,
    username: &str,
    logs_in: &dyn Fn(&str, &str) -> bool,
) -> Result<(), String> {
    let current = app.reveal(resource, username);
    if !logs_in(username, &current) {
        return Err(format!(
            "{}: the vault's current password does not log in (LOST)",
            username
        ));
    }
    let previous = psql_value(
        &app.db_name,
        &format!(
            "SELECT v.version FROM credential_versions v JOIN credentials c ON c.id = v.credential_id
              WHERE c.username = '{}' AND v.state = 'PREVIOUS'",
            username
        ),
    );
    if !previous.is_empty() {
        let out = app.cli(&[
            "credential",
            "reveal",
            "--resource",
            resource,
            "--username",
            &username,
            "--version",
            &previous,
        ]);
        if logs_in(username, out.stdout.trim_end_matches('\n')) {
            return Err(format!("{}: the previous password still logs in", username));
        }
    }
    let pending = psql_value(
        &app.db_name,
        &format!(
            "SELECT count(*) FROM credential_versions v JOIN credentials c ON c.id = v.credential_id
              WHERE c.username = '{}' AND v.state = 'PENDING'",
            username
        ),
    );
    if pending != "0" {
        return Err(format!("{}: a pending version is left", username));
    }
    Ok(())
}

/// A credential a crash trial rotates, on some kind of target.
pub struct Onboarded {
    pub resource: String,
    pub username: String,
    pub initial: String,
    /// Whatever must live as long as the trial (a Linux account, database roles).
    pub keep: Box<dyn std::any::Any>,
}

/// A kind of target the crash trials run against.
pub trait Target: Sync {
    /// Creates an account on the target with a known password and onboards it.
    fn onboard(&self, app: &TestApp) -> Onboarded;
    /// Whether the target itself takes `password` for `username`.
    fn logs_in(&self, username: &str, password: &str) -> bool;
}

/// A Linux account on the test sshd (linux-chpasswd).
struct Ssh;

impl Target for Ssh {
    fn onboard(&self, app: &TestApp) -> Onboarded {
        let account = Account::create("rtitk");
        let resource = format!("crash-{}", app.id);
        let out = app.apply_inventory(&resource, &testbed().host_key_fpr, &[&account]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        Onboarded {
            resource,
            username: account.username.clone(),
            initial: account.password.clone(),
            keep: Box::new(account),
        }
    }

    fn logs_in(&self, username: &str, password: &str) -> bool {
        ssh_login(username, password)
    }
}

/// One trial: rotor is SIGKILLed at `point`, restarted, and must finish the rotation
/// with the vault agreeing with the target.
async fn crash_at(point: &str, target: &dyn Target) -> Result<(), String> {
    let mut app = TestApp::spawn_with(Options {
        instance_id: true,
        lease_seconds: 10,
        ..Default::default()
    })
    .await;
    let onboarded = target.onboard(&app);
    let (resource, username) = (onboarded.resource.clone(), onboarded.username.clone());
    // Restart with the failpoint armed: only this run of the daemon dies at it.
    app.stop();
    app.start_with_env(&[("ROTOR_FAILPOINT", point)]).await;
    // The producer waits for its reply while rotor dies and comes back: a request whose
    // ack was lost is redelivered, and the reply names the one task it made.
    let enqueue = {
        let (config, resource, username) = (app.config.clone(), resource.clone(), username.clone());
        std::thread::spawn(move || {
            std::process::Command::new(ROTOR)
                .arg("--config")
                .arg(config)
                .args([
                    "enqueue",
                    "rotate",
                    "--resource",
                    &resource,
                    "--username",
                    &username,
                    "--timeout",
                    "60",
                ])
                .output()
                .unwrap()
        })
    };
    let status = app.wait_exit(Duration::from_secs(60)).await;
    use std::os::unix::process::ExitStatusExt;
    if status.signal() != Some(9) {
        return Err(format!(
            "{point}: rotor was not killed at the failpoint ({status})"
        ));
    }
    app.start().await;
    let out = enqueue.join().unwrap();
    if !out.status.success() {
        return Err(format!(
            "{point}: enqueue failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let task_id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if psql_value(&app.db_name, "SELECT count(*) FROM tasks") != "1" {
        return Err(format!("{point}: the request made more than one task"));
    }
    let task = app.wait_task(&task_id, Duration::from_secs(90)).await;
    if task["status"] != "SUCCESSFUL" {
        return Err(format!(
            "{point}: task ended {} {}",
            task["status"], task["errors"]
        ));
    }
    check_credential(&app, &resource, &username, &|u, p| target.logs_in(u, p))
        .map_err(|e| format!("{point}: {e}"))?;
    if target.logs_in(&username, &onboarded.initial) {
        return Err(format!("{point}: the initial password still logs in"));
    }
    Ok(())
}

#[test]
fn a_crash_at_any_stage_boundary_loses_no_password() {
    crash_everywhere(&Ssh);
}

/// At most this many crash-trial daemons at once in the whole test binary: the proofs for
/// each platform run side by side, and each daemon holds PostgreSQL connections (past
/// `max_connections`, every test would fail to connect).
const TRIAL_SLOTS: usize = 5;

struct TrialSlot;

static SLOTS: (std::sync::Mutex<usize>, std::sync::Condvar) =
    (std::sync::Mutex::new(0), std::sync::Condvar::new());

impl TrialSlot {
    fn take() -> TrialSlot {
        let (taken, freed) = &SLOTS;
        let mut n = taken.lock().unwrap_or_else(|p| p.into_inner());
        while *n >= TRIAL_SLOTS {
            n = freed.wait(n).unwrap_or_else(|p| p.into_inner());
        }
        *n += 1;
        TrialSlot
    }
}

impl Drop for TrialSlot {
    fn drop(&mut self) {
        let (taken, freed) = &SLOTS;
        *taken.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        freed.notify_one();
    }
}

/// Every crash point, `trials()` times each, against `target`.
pub fn crash_everywhere(target: &dyn Target) {
    let trials = trials();
    // A few daemons at a time (`TRIAL_SLOTS` across the binary): each holds database
    // connections and the machine has 2 cores.
    let mut failures: Vec<String> = Vec::new();
    for chunk in POINTS.chunks(5) {
        failures.extend(std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|point| {
                    s.spawn(move || {
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .unwrap();
                        (0..trials)
                            .filter_map(|_| {
                                let _slot = TrialSlot::take();
                                rt.block_on(crash_at(point, target)).err()
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("trial thread"))
                .collect::<Vec<_>>()
        }));
    }
    eprintln!(
        "crash points: {} x {trials} trials, {} failed",
        POINTS.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_host_fails_cleanly_and_other_hosts_still_rotate() {
    let app = TestApp::spawn_with(Options {
        max_attempts: 3,
        ..Default::default()
    })
    .await;
    let dead = ExtraSshd::start();
    let (on_dead, on_live, on_live2) = (
        Account::create("rtitx"),
        Account::create("rtitx"),
        Account::create("rtitx"),
    );
    let (dead_id, live_id) = (format!("dead-{}", app.id), format!("live-{}", app.id));
    assert_eq!(
        app.apply_inventory_at(&dead_id, dead.port, &dead.host_key_fpr, &[&on_dead])
            .code,
        0
    );
    assert_eq!(
        app.apply_inventory(&live_id, &testbed().host_key_fpr, &[&on_live, &on_live2])
            .code,
        0
    );
    dead.stop();

    // One element per host; the live host's names two credentials: three subtasks.
    let spec = serde_json::json!({"operationType": "ROTATE", "elements": [
        {"resourceId": dead_id, "resourceType": "LINUX", "credentials": [{"username": on_dead.username}]},
        {"resourceId": live_id, "resourceType": "LINUX", "credentials": [{"username": on_live.username}, {"username": on_live2.username}]}]});
    let task = app.request(spec.to_string().as_bytes()).await;
    assert_eq!(task["status"], "FAILED", "{task:#}");
    assert_eq!(
        task["resolutionStatus"], "RESOLVED",
        "nothing reached the dead host: {task:#}"
    );
    let subs = task["subTasks"].as_array().unwrap();
    assert_eq!(subs[0]["status"], "FAILED");
    assert_eq!(
        subs[0]["errors"][0]["errorCode"], "CONNECTION_FAILED",
        "{task:#}"
    );
    assert_eq!(subs.len(), 3, "{task:#}");
    assert_eq!(
        (subs[1]["status"].as_str(), subs[2]["status"].as_str()),
        (Some("SUCCESSFUL"), Some("SUCCESSFUL")),
        "the live host is unaffected"
    );
    assert_eq!(task["errors"].as_array().unwrap().len(), 1, "{task:#}");
    assert_eq!(
        task["errors"][0]["context"]["subtaskId"], subs[0]["id"],
        "the task's error names the failed subtask"
    );
    // It was retried before giving up.
    assert_eq!(
        psql_value(&app.db_name, "SELECT max(attempts) FROM subtasks"),
        "3"
    );
    // The dead host's account keeps the password rotor has as current.
    assert_eq!(app.reveal(&dead_id, &on_dead.username), on_dead.password);
    assert!(ssh_login(&on_dead.username, &on_dead.password));
    for account in [&on_live, &on_live2] {
        check_account(&app, &live_id, account).unwrap();
        assert!(!ssh_login(&account.username, &account.password));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_truth_cannot_be_told_the_task_is_unresolved_and_the_password_kept() {
    unresolved_then_retried("linux-chpasswd").await;
}

/// linux-passwd changes a password by logging in with the current one, so a retry that
/// forgot the pending password may be live would be refused and lose it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresolved_linux_passwd_rotation_retried_keeps_the_live_password() {
    unresolved_then_retried("linux-passwd").await;
}

async fn unresolved_then_retried(platform: &str) {
    // Rotor dies right after the target changed; when it comes back the host is gone.
    let mut app = TestApp::spawn_with(Options {
        instance_id: true,
        lease_seconds: 10,
        max_attempts: 2,
        ..Default::default()
    })
    .await;
    let host = ExtraSshd::start();
    let account = Account::create("rtitu");
    let resource = format!("flaky-{}", app.id);
    let inventory = resource_toml_on(platform, &resource, host.port, &host.host_key_fpr)
        + &app.accounts_toml(&[&account], "");
    assert_eq!(app.apply_inventory_text(&resource, &inventory).code, 0);
    app.stop();
    app.start_with_env(&[("ROTOR_FAILPOINT", "APPLY:target")])
        .await;
    let reply = app
        .publish_and_reply(
            "credentials.update",
            &rotate_spec(&resource, &[&account.username]),
        )
        .await;
    let task_id = reply["id"].as_str().unwrap().to_string();
    app.wait_exit(Duration::from_secs(60)).await;
    host.stop();
    app.start().await;
    let task = app.wait_task(&task_id, Duration::from_secs(90)).await;
    assert_eq!(task["status"], "FAILED", "{task:#}");
    assert_eq!(task["resolutionStatus"], "UNRESOLVED", "{task:#}");
    let error = &task["errors"][0];
    assert!(
        error["remediationMessage"]
            .as_str()
            .unwrap()
            .contains("REMEDIATE"),
        "{error:#}"
    );
    // The password the target really has is still in the vault, as the pending version.
    assert_eq!(
        psql_value(
            &app.db_name,
            "SELECT string_agg(state, ',' ORDER BY version) FROM credential_versions"
        ),
        "CURRENT,PENDING"
    );
    let pending = app.cli(&[
        "credential",
        "reveal",
        "--resource",
        &resource,
        "--username",
        &account.username,
        "--version",
        "2",
    ]);
    assert_eq!(pending.code, 0);
    let pending = pending.stdout.trim_end().to_string();
    assert!(
        ssh_login(&account.username, &pending),
        "the pending version is what the target holds"
    );
    assert!(!ssh_login(&account.username, &account.password));
    // A later rotation of the same credential refuses to stack a second pending password on it.
    host.restart();
    let reply = app
        .publish_and_reply(
            "credentials.update",
            &rotate_spec(&resource, &[&account.username]),
        )
        .await;
    let again = app
        .wait_task(reply["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(
        again["errors"][0]["errorCode"], "CREDENTIAL_UNRESOLVED",
        "{again:#}"
    );
    assert!(ssh_login(&account.username, &pending));

    // A reconcile whose admin cannot log in sets that pending password aside, changes
    // nothing, and must put it back: the credential stays unresolved, the password kept.
    let wrong_key = app.dir.join("wrong_admin_key");
    let keygen = std::process::Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            wrong_key.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(keygen.success());
    let broken = inventory.replace(&testbed().admin_key, wrong_key.to_str().unwrap());
    assert_eq!(app.apply_inventory_text(&resource, &broken).code, 0);
    let reconcile = serde_json::json!({"operationType": "REMEDIATE", "elements": [{"resourceId": resource, "resourceType": "LINUX",
        "credentials": [{"username": account.username}]}]});
    let reply = app
        .publish_and_reply("credentials.update", reconcile.to_string().as_bytes())
        .await;
    let failed = app
        .wait_task(reply["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(
        failed["subTasks"][0]["errors"][0]["errorCode"], "AUTHENTICATION_FAILED",
        "{failed:#}"
    );
    assert_eq!(failed["resolutionStatus"], "UNRESOLVED", "{failed:#}");
    assert_eq!(
        psql_value(
            &app.db_name,
            "SELECT string_agg(state, ',' ORDER BY version) FROM credential_versions"
        ),
        "CURRENT,PENDING,ABANDONED"
    );
    assert!(ssh_login(&account.username, &pending));
    assert_eq!(app.apply_inventory_text(&resource, &inventory).code, 0);

    // The host is back: the operator retries the first task. It finds its pending password
    // live, finishes the rotation with it, and the vault agrees with the target again.
    let (status, body) = app
        .send(
            "PATCH",
            &format!("/v1/credentials/tasks/{task_id}"),
            Some(&app.token),
            None,
        )
        .await;
    assert_eq!(status, 202, "{body:#}");
    let task = app.wait_task(&task_id, Duration::from_secs(90)).await;
    assert_eq!(
        (task["status"].as_str(), task["resolutionStatus"].as_str()),
        (Some("SUCCESSFUL"), Some("RESOLVED")),
        "{task:#}"
    );
    assert_eq!(app.reveal(&resource, &account.username), pending);
    assert!(ssh_login(&account.username, &pending));
    assert!(!ssh_login(&account.username, &account.password));
    app.assert_logs_free_of(&[&account.password, &pending]);
}

/// A worker frozen while it holds a lease (a paused VM, a stalled host) loses the
/// credential to another process once the lease expires, and when it wakes it must not
/// touch the target: by then rotor has moved on to a newer password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_worker_loses_its_lease_to_another_process_and_never_touches_the_target_again() {
    // No instance_id: only the lease's expiry lets another process take the work.
    let mut app = TestApp::spawn_with(Options {
        lease_seconds: 10,
        ..Default::default()
    })
    .await;
    let account = Account::create("rtitfz");
    let resource = format!("frozen-{}", app.id);
    assert_eq!(
        app.apply_inventory(&resource, &testbed().host_key_fpr, &[&account])
            .code,
        0
    );
    app.stop();
    app.start_with_env(&[("ROTOR_FAILPOINT", "APPLY:before:stop")])
        .await;
    let reply = app
        .publish_and_reply(
            "credentials.update",
            &rotate_spec(&resource, &[&account.username]),
        )
        .await;
    let first = reply["id"].as_str().unwrap().to_string();
    app.wait_log(0, "failpoint reached: SIGSTOP", Duration::from_secs(30))
        .await;

    // A second process takes the subtask over once the frozen one's lease has expired.
    app.start_sibling().await; // app.http is now the sibling's: the frozen one answers nothing
    let task = app.wait_task(&first, Duration::from_secs(60)).await;
    assert_eq!(task["status"], "SUCCESSFUL", "{task:#}");
    assert_eq!(
        psql_value(
            &app.db_name,
            &format!("SELECT attempts FROM subtasks WHERE task_id = '{first}'")
        ),
        "2",
        "claimed by the frozen process, then taken over"
    );
    let taken_over = app.reveal(&resource, &account.username);
    // And rotates the account again, while the first process is still frozen.
    let (status, body) = app
        .send(
            "PATCH",
            "/v1/credentials",
            Some(&app.token),
            Some(serde_json::from_slice(&rotate_spec(&resource, &[&account.username])).unwrap()),
        )
        .await;
    assert_eq!(status, 202, "{body:#}");
    let second = app
        .wait_task(body["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(second["status"], "SUCCESSFUL", "{second:#}");
    let latest = app.reveal(&resource, &account.username);
    assert_ne!(latest, taken_over);

    // The frozen process wakes where it stopped, about to APPLY its (now stale) pending
    // password: its lease is gone, so it must stop without touching the target.
    let from = app.logs().len();
    app.signal("CONT");
    app.wait_log(from, "was taken over", Duration::from_secs(30))
        .await;
    assert!(
        ssh_login(&account.username, &latest),
        "the target holds rotor's current password"
    );
    assert!(!ssh_login(&account.username, &taken_over));
    assert!(!ssh_login(&account.username, &account.password));
    assert_eq!(
        psql_value(
            &app.db_name,
            "SELECT count(*) FROM credential_versions WHERE state = 'PENDING'"
        ),
        "0"
    );
    app.assert_logs_free_of(&[&account.password, &taken_over, &latest]);
}

/// Truth-finding that finds the target holding the PREVIOUS version makes it current
/// again, so that the vault agrees with the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_target_holds_the_previous_password_it_is_made_current_again() {
    let mut app = TestApp::spawn_with(Options {
        instance_id: true,
        ..Default::default()
    })
    .await;
    let account = Account::create("rtitpv");
    let resource = format!("prev-{}", app.id);
    // Finding the previous password here costs three refused logins (the pending one
    // twice, the stored current one) before the accepted one: the test sshd locks
    // nothing, so the resource says so (a deny=3 target would stop at two: lockout.rs).
    let inventory = resource_toml_on(
        "linux-passwd",
        &resource,
        testbed().port,
        &testbed().host_key_fpr,
    )
    .replace(
        "[resource.admin]",
        "lockout_threshold = 10\n\n[resource.admin]",
    ) + &app.accounts_toml(&[&account], "");
    assert_eq!(app.apply_inventory_text(&resource, &inventory).code, 0);
    // PrivX's "set latest password" stores a password the target does not have: the
    // target's real one is now rotor's PREVIOUS version.
    let stored = format!("Not-Live-{}-7a!", unique());
    let path = format!(
        "/secrets-manager/api/v1/password/{resource}/{}",
        account.username
    );
    let (status, body) = app
        .send(
            "PUT",
            &path,
            Some(&app.token),
            Some(serde_json::json!({"password": stored})),
        )
        .await;
    assert_eq!(status, 200, "{body:#}");
    // A rotation is cut off as APPLY starts and resumed: linux-passwd cannot log in with
    // the stored current password, and the attempt may have changed the target, so rotor
    // finds out which password the target holds.
    app.stop();
    app.start_with_env(&[("ROTOR_FAILPOINT", "APPLY:before")])
        .await;
    let reply = app
        .publish_and_reply(
            "credentials.update",
            &rotate_spec(&resource, &[&account.username]),
        )
        .await;
    app.wait_exit(Duration::from_secs(60)).await;
    app.start().await;
    let task = app
        .wait_task(reply["id"].as_str().unwrap(), Duration::from_secs(90))
        .await;
    assert_eq!(
        (task["status"].as_str(), task["resolutionStatus"].as_str()),
        (Some("FAILED"), Some("RESOLVED")),
        "{task:#}"
    );
    let error = &task["subTasks"][0]["errors"][0];
    assert!(
        error["remediationMessage"]
            .as_str()
            .unwrap()
            .contains("previous password"),
        "{error:#}"
    );
    assert_eq!(
        app.reveal(&resource, &account.username),
        account.password,
        "the live password is current again"
    );
    assert!(ssh_login(&account.username, &account.password));
    assert_eq!(
        psql_value(
            &app.db_name,
            "SELECT string_agg(state, ',' ORDER BY version) FROM credential_versions"
        ),
        "CURRENT,PREVIOUS,ABANDONED"
    );
    app.assert_logs_free_of(&[&account.password, &stored]);
}
