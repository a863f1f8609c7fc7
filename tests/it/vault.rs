//! The keyring (SPEC section 8): a new master key seals, the old one still opens, and
//! `rotor vault rekey` moves every stored password to the new key while rotations run,
//! surviving a SIGKILL at any batch; afterwards the old key file can go.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::*;

fn set_keyring(app: &TestApp, files: &[&str]) {
    let text = std::fs::read_to_string(&app.config).unwrap();
    let start = text.find("master_key").expect("a [vault] key line");
    let end = start + text[start..].find('\n').unwrap();
    let list = files
        .iter()
        .map(|f| format!("\"{f}\""))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        &app.config,
        format!(
            "{}master_key_files = [{list}]{}",
            &text[..start],
            &text[end..]
        ),
    )
    .unwrap();
}

fn status(app: &TestApp) -> String {
    let out = app.cli(&["vault", "status"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekey_under_load_survives_a_kill_and_the_old_key_can_go() {
    let mut app = TestApp::spawn().await;
    let accounts: Vec<Account> = (0..6).map(|_| Account::create("rtitrk")).collect();
    let refs: Vec<&Account> = accounts.iter().collect();
    let resource = format!("rk-{}", app.id);
    let out = app.apply_inventory(&resource, &testbed().host_key_fpr, &refs);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let names: Vec<&str> = accounts.iter().map(|a| a.username.as_str()).collect();
    let first = app
        .publish_and_reply("credentials.update", &rotate_spec(&resource, &names))
        .await;
    let done = app
        .wait_task(first["id"].as_str().unwrap(), Duration::from_secs(120))
        .await;
    assert_eq!(done["status"], "SUCCESSFUL", "{done:#}");
    let old_id = app
        .cli(&["vault", "status"])
        .stdout
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();

    // A new key first in the ring; the daemon restarts with both.
    let out = app.cli(&[
        "keygen",
        "--out",
        app.dir.join("master-2.key").to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    set_keyring(&app, &["master-2.key", "master.key"]);
    app.stop();
    app.start().await;
    // Rotations running while the rekey runs, and a rekey killed after its first batch.
    let second = app
        .publish_and_reply("credentials.update", &rotate_spec(&resource, &names))
        .await;
    let mut rekey = Command::new(ROTOR)
        .args([
            "--config",
            app.config.to_str().unwrap(),
            "vault",
            "rekey",
            "--batch",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(rekey.stdout.take().unwrap()).lines();
    let progress = loop {
        let line = lines.next().expect("rekey prints progress").unwrap();
        if line.contains("so far") {
            break line;
        }
    };
    rekey.kill().unwrap();
    rekey.wait().unwrap();
    assert!(progress.contains("1 versions"), "{progress}");
    assert!(
        status(&app).contains(&old_id),
        "the kill left rows under the old key, readable"
    );
    // Run again to the end while the rotations go on.
    let out = app.cli(&["vault", "rekey"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("none left under other keys"),
        "{}",
        out.stdout
    );
    let done = app
        .wait_task(second["id"].as_str().unwrap(), Duration::from_secs(120))
        .await;
    assert_eq!(done["status"], "SUCCESSFUL", "{done:#}");
    let out = app.cli(&["vault", "rekey"]);
    assert_eq!(out.code, 0, "a rekey with nothing to do: {}", out.stderr);
    let now = status(&app);
    assert!(
        now.contains("holds nothing: its file may go")
            && !now.lines().skip(1).any(|l| l.starts_with(&old_id)),
        "{now}"
    );
    assert_eq!(
        psql_value(
            &app.db_name,
            "SELECT count(DISTINCT key_id) FROM credential_versions"
        ),
        "1"
    );

    // A daemon still holding only the old key seals nothing now: its rotation fails
    // transiently, before anything is written, and the target keeps its password.
    let before = psql_value(&app.db_name, "SELECT count(*) FROM credential_versions");
    set_keyring(&app, &["master.key"]);
    app.stop();
    app.start().await;
    let stale = app
        .publish_and_reply(
            "credentials.update",
            &rotate_spec(&resource, &[&accounts[0].username]),
        )
        .await;
    let failed = app
        .wait_task(stale["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(failed["status"], "FAILED", "{failed:#}");
    assert_eq!(
        failed["subTasks"][0]["errors"][0]["errorCode"], "VAULT_KEY_NOT_LOADED",
        "{failed:#}"
    );
    assert_eq!(failed["resolutionStatus"], "RESOLVED");
    assert_eq!(
        psql_value(&app.db_name, "SELECT count(*) FROM credential_versions"),
        before,
        "nothing sealed under the old key"
    );

    // The old key file goes; every password, old versions too, still opens and logs in.
    set_keyring(&app, &["master-2.key"]);
    std::fs::remove_file(app.dir.join("master.key")).unwrap();
    app.stop();
    app.start().await;
    for a in &accounts {
        // (the stale daemon's failed rotation left the target alone: the current one logs in)
        let current = app.reveal(&resource, &a.username);
        assert!(
            ssh_login(&a.username, &current),
            "{} logs in with what the vault holds",
            a.username
        );
        let out = app.cli(&[
            "credential",
            "reveal",
            "--resource",
            &resource,
            "--username",
            &a.username,
            "--version",
            "1",
        ]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(
            out.stdout.trim_end(),
            a.password,
            "the onboarded version, re-encrypted, is the original"
        );
    }
    let third = app
        .publish_and_reply("credentials.update", &rotate_spec(&resource, &names))
        .await;
    let done = app
        .wait_task(third["id"].as_str().unwrap(), Duration::from_secs(120))
        .await;
    assert_eq!(done["status"], "SUCCESSFUL", "{done:#}");
}
