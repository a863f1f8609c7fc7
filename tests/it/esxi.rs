//! The esxi platform against a local sshd set up as ESXi's is: keyboard-interactive only,
//! pam_faillock deny=5, and `passwd` asking through pam_passwdqc with ESXi's settings.
//! The admin's `passwd USER` and the account's own `passwd` both rotate over AMQP, each
//! checked by the OpenSSH client on the target; and the kill-at-every-stage proof runs
//! once for the platform.

use std::sync::OnceLock;

use serde_json::Value;

use crate::helpers::*;
use crate::reliability::{crash_everywhere, Onboarded, Target};

pub(crate) fn sshd() -> &'static ExtraSshd {
    static SSHD: OnceLock<ExtraSshd> = OnceLock::new();
    SSHD.get_or_init(ExtraSshd::start_esxi)
}

/// An esxi resource on `sshd` with the test bed's admin (sudo `passwd USER`), or without one.
pub(crate) fn resource(sshd: &ExtraSshd, id: &str, admin: bool) -> String {
    let text = resource_toml_on("esxi", id, sshd.port, &sshd.host_key_fpr).replace("LINUX", "ESXI");
    if admin {
        text
    } else {
        text[..text.find("[resource.admin]").unwrap()].to_string()
    }
}

/// A request naming `resource` as the ESXI it is.
fn esxi_spec(op: &str, resource: &str, creds: Value) -> Vec<u8> {
    String::from_utf8(spec(op, resource, creds))
        .unwrap()
        .replace("\"LINUX\"", "\"ESXI\"")
        .into_bytes()
}

pub(crate) fn rotate(resource: &str, username: &str) -> Vec<u8> {
    esxi_spec(
        "ROTATE",
        resource,
        serde_json::json!([{ "username": username }]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esxi_accounts_rotate_by_the_admin_and_by_themselves() {
    let app = TestApp::spawn().await;
    let sshd = sshd();
    let by_admin = Account::create_esxi("rtitea");
    let by_self = Account::create_esxi("rtites");
    let ids = [format!("ea-{}", app.id), format!("es-{}", app.id)];
    let text = resource(sshd, &ids[0], true)
        + &app.accounts_toml(&[&by_admin], "")
        + "\n"
        + &resource(sshd, &ids[1], false)
        + &app.accounts_toml(&[&by_self], "");
    let out = app.apply_inventory_text("esxi", &text);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // ESXi's defaults: its policy and its lockout (5 refused logins).
    let (_, listed) = app
        .get(&format!("/v1/resources/{}", ids[1]), Some(&app.token))
        .await;
    assert_eq!(listed["platform"], "esxi", "{listed:#}");
    assert_eq!(listed["lockoutThreshold"], 5, "{listed:#}");
    assert_eq!(listed["policy"], "esxi", "{listed:#}");
    assert_eq!(listed["sshAuth"], "keyboard-interactive", "{listed:#}");

    let mut secrets = Vec::new();
    for (id, account) in [(&ids[0], &by_admin), (&ids[1], &by_self)] {
        let task = app.request(&rotate(id, &account.username)).await;
        assert_eq!(task["status"], "SUCCESSFUL", "{id}: {task:#}");
        let new = app.reveal(id, &account.username);
        assert!(
            sshd.login(&account.username, &new),
            "{id}: the new password logs in"
        );
        assert!(
            !sshd.login(&account.username, &account.password),
            "{id}: the old one is refused"
        );
        secrets.push(new);
    }
    // A second rotation by the account itself starts from the password rotor set.
    let task = app.request(&rotate(&ids[1], &by_self.username)).await;
    assert_eq!(task["status"], "SUCCESSFUL", "{task:#}");
    let newest = app.reveal(&ids[1], &by_self.username);
    assert!(sshd.login(&by_self.username, &newest));
    assert!(!sshd.login(&by_self.username, &secrets[1]));
    secrets.push(newest);

    // A supplied password that rotor's esxi policy admits but ESXi's passwdqc refuses (a
    // common sequence) fails as refused by the target, and the target keeps the current
    // password, which rotor still holds.
    let current = app.reveal(&ids[0], &by_admin.username);
    let update = esxi_spec(
        "UPDATE",
        &ids[0],
        serde_json::json!([{"username": by_admin.username, "password": "Abcdefgh12!"}]),
    );
    let task: Value = app.request(&update).await;
    assert_eq!(task["status"], "FAILED", "{task:#}");
    let said = task["subTasks"][0]["errors"].to_string();
    // (The words "Weak password" themselves can be lost on the way out through sudo's
    // own terminal; passwd's exit status and the missing confirmation prompt tell.)
    assert!(said.contains("PASSWORD_REJECTED_BY_TARGET"), "{said}");
    assert!(!said.contains("Abcdefgh12!"), "{said}");
    assert!(
        sshd.login(&by_admin.username, &current),
        "the current password stands"
    );
    assert!(!sshd.login(&by_admin.username, "Abcdefgh12!"));
    assert_eq!(app.reveal(&ids[0], &by_admin.username), current);

    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    app.assert_logs_free_of(&refs);
}

struct Esxi;

impl Target for Esxi {
    fn onboard(&self, app: &TestApp) -> Onboarded {
        let account = Account::create_esxi("rtitek");
        let resource = format!("crash-{}", app.id);
        let text =
            crate::esxi::resource(sshd(), &resource, true) + &app.accounts_toml(&[&account], "");
        let out = app.apply_inventory_text(&resource, &text);
        assert_eq!(out.code, 0, "{}", out.stderr);
        Onboarded {
            resource,
            username: account.username.clone(),
            initial: account.password.clone(),
            keep: Box::new(account),
        }
    }

    fn logs_in(&self, username: &str, password: &str) -> bool {
        sshd().login(username, password)
    }
}

/// The kill-at-every-stage proof (RELIABILITY.md), once for this platform.
#[test]
fn a_crash_at_any_stage_boundary_loses_no_esxi_password() {
    crash_everywhere(&Esxi);
}
