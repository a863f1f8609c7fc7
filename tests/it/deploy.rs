//! Host onboarding end to end: rotor's admin key, the deploy script run as root on the
//! local sshd's host for a fresh admin account, the host registered with its own key
//! pinned, and a rotation over AMQP on it. Running the script again changes nothing, and
//! its used token is refused.

use std::process::{Command, Stdio};

use crate::helpers::*;

struct Cleanup {
    admin: String,
    files: Vec<std::path::PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("userdel")
            .args(["-r", &self.admin])
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_file(format!("/etc/sudoers.d/rotor-{}", self.admin));
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

fn run_script(script: &std::path::Path, resource: &str, account: &str) -> std::process::Output {
    let bed = testbed();
    Command::new("sh")
        .arg(script)
        .env("ROTOR_RESOURCE_ID", resource)
        .env("ROTOR_ADDRESS", "127.0.0.1")
        .env("ROTOR_SSH_PORT", bed.port.to_string())
        .env(
            "ROTOR_HOST_KEY_FILE",
            format!("{FILES_DIR}/ssh_host_ed25519_key.pub"),
        )
        .env("ROTOR_ACCOUNTS", account)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_script_onboards_a_host_once_and_a_rotation_succeeds_on_it() {
    let tag = &unique()[..6];
    let admin = format!("rtitdp{tag}");
    let key = std::path::PathBuf::from(format!("{FILES_DIR}/deploy-key-{tag}"));
    let script_file = std::path::PathBuf::from(format!("{FILES_DIR}/deploy-{tag}.sh"));
    let _cleanup = Cleanup {
        admin: admin.clone(),
        files: vec![key.clone(), key.with_extension("pub"), script_file.clone()],
    };
    let app = TestApp::spawn_with(Options {
        extra: format!(
            "[deploy]\nadmin_username = \"{admin}\"\nadmin_key_file = \"{}\"\n",
            key.display()
        ),
        ..Options::default()
    })
    .await;
    // rotor's admin key pair.
    let out = app.cli(&["admin-key", "generate", "--out", key.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let public = out.stdout.trim().to_string();
    assert!(public.starts_with("ssh-ed25519 "), "{public}");
    let again = app.cli(&["admin-key", "generate", "--out", key.to_str().unwrap()]);
    assert_ne!(again.code, 0, "an existing key is never overwritten");

    let (status, script) = app
        .send("GET", "/v1/deploy/script", Some(&app.token), None)
        .await;
    assert_eq!(status, 200, "{script}");
    let script = script.as_str().unwrap().to_string();
    assert!(script.starts_with("#!/bin/sh"));
    assert!(
        script.contains(&public),
        "the script carries rotor's public key"
    );
    std::fs::write(&script_file, &script).unwrap();

    let account = Account::create("rtitdq");
    let resource = format!("dep-{}", app.id);
    let out = run_script(&script_file, &resource, &account.username);
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{said}");
    assert!(said.contains(&format!("registered {resource}")), "{said}");

    // The host as rotor now knows it: its own key pinned, rotor's admin with sudo.
    let (status, registered) = app
        .get(&format!("/v1/resources/{resource}"), Some(&app.token))
        .await;
    assert_eq!(status, 200, "{registered:#}");
    assert_eq!(
        registered["hostKeys"],
        serde_json::json!([testbed().host_key_fpr])
    );
    assert_eq!(registered["admin"]["username"], admin.as_str());
    assert_eq!(registered["admin"]["sudo"], true);
    assert_eq!(
        registered["account"][0]["username"],
        account.username.as_str()
    );
    let home = format!("/home/{admin}");
    let keys = std::fs::read_to_string(format!("{home}/.ssh/authorized_keys")).unwrap();
    assert_eq!(keys, format!("restrict {public}\n"));

    // A rotation over AMQP on the new host, checked on the host itself.
    let task = app
        .request(&rotate_spec(&resource, &[&account.username]))
        .await;
    assert_eq!(task["status"], "SUCCESSFUL", "{task:#}");
    let new = app.reveal(&resource, &account.username);
    assert!(
        ssh_login(&account.username, &new),
        "the new password logs in"
    );
    assert!(
        !ssh_login(&account.username, &account.password),
        "the old one is refused"
    );

    // Again: nothing on the host changes, and the used token is refused.
    let sudoers = format!("/etc/sudoers.d/rotor-{admin}");
    let before = (std::fs::read(&sudoers).unwrap(), keys.clone());
    let out = run_script(&script_file, &resource, &account.username);
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("401") && said.contains("used"), "{said}");
    assert!(
        said.contains(&format!("ok: account {admin} exists")),
        "{said}"
    );
    let after = (
        std::fs::read(&sudoers).unwrap(),
        std::fs::read_to_string(format!("{home}/.ssh/authorized_keys")).unwrap(),
    );
    assert_eq!(before, after, "a second run changes nothing on the host");
    let (_, unchanged) = app
        .get(&format!("/v1/resources/{resource}"), Some(&app.token))
        .await;
    assert_eq!(unchanged, registered);

    // A fresh token cannot take over an existing resource.
    let (_, fresh) = app
        .send("GET", "/v1/deploy/script", Some(&app.token), None)
        .await;
    std::fs::write(&script_file, fresh.as_str().unwrap()).unwrap();
    let out = run_script(&script_file, &resource, &account.username);
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success() && said.contains("RESOURCE_EXISTS"),
        "{said}"
    );

    // A caller without hosts:provision gets no script.
    let (status, _) = app
        .send("GET", "/v1/deploy/script", Some(&app.view_token), None)
        .await;
    assert_eq!(status, 403);

    // `rotor host scan` shows the key to pin.
    let out = app.cli(&["host", "scan", &format!("127.0.0.1:{}", testbed().port)]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), testbed().host_key_fpr);
    let token_at = script.find("ENROLL_TOKEN='").unwrap() + "ENROLL_TOKEN='".len();
    let token = &script[token_at..token_at + 43];
    assert!(
        !app.logs().join("\n").contains(token),
        "the token is in no log"
    );
}
