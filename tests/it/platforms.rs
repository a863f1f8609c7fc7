//! Platforms other than the default linux-chpasswd, on the real sshd.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

/// A resource on the test sshd with platform linux-passwd and no admin account.
fn passwd_inventory(app: &TestApp, resource: &str, accounts: &[&Account]) -> String {
    let bed = testbed();
    let mut text = format!(
        "[[resource]]\nid = \"{resource}\"\nname = \"{resource}.test\"\ntype = \"LINUX\"\naddress = \"127.0.0.1\"\nport = {}\nhost_keys = [\"{}\"]\nplatform = \"linux-passwd\"\n",
        bed.port, bed.host_key_fpr
    );
    text.push_str(&app.accounts_toml(accounts, ""));
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linux_passwd_lets_the_account_change_its_own_password_without_an_admin() {
    let app = TestApp::spawn().await;
    let account = Account::create("rtitpw");
    let resource = format!("pw-{}", app.id);
    let out = app.apply_inventory_text(&resource, &passwd_inventory(&app, &resource, &[&account]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (_, listed) = app
        .get(&format!("/v1/resources/{resource}"), Some(&app.token))
        .await;
    assert_eq!(listed["platform"], "linux-passwd", "{listed:#}");
    assert!(listed["admin"].is_null(), "no admin account: {listed:#}");

    let task = app
        .request(&rotate_spec(&resource, &[&account.username]))
        .await;
    assert_eq!(task["status"], "SUCCESSFUL", "{task:#}");
    let new = app.reveal(&resource, &account.username);
    assert_ne!(new, account.password);
    assert!(
        ssh_login(&account.username, &new),
        "the new password logs in"
    );
    assert!(
        !ssh_login(&account.username, &account.password),
        "the old one is refused"
    );

    // Again, from the password rotor set itself.
    let task = app
        .request(&rotate_spec(&resource, &[&account.username]))
        .await;
    assert_eq!(task["status"], "SUCCESSFUL", "{task:#}");
    let newer = app.reveal(&resource, &account.username);
    assert!(ssh_login(&account.username, &newer));
    assert!(!ssh_login(&account.username, &new));
    app.assert_logs_free_of(&[&account.password, &new, &newer]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linux_passwd_with_a_wrong_stored_password_fails_and_leaves_the_target_alone() {
    let app = TestApp::spawn().await;
    let account = Account::create("rtitpx");
    let resource = format!("px-{}", app.id);
    assert_eq!(
        app.apply_inventory_text(&resource, &passwd_inventory(&app, &resource, &[&account]))
            .code,
        0
    );
    // Changed behind rotor's back: the stored current password no longer logs in.
    let live = format!("Live-{}-Pw7!", unique());
    account.set_password_on_host(&live);

    let task = app
        .request(&rotate_spec(&resource, &[&account.username]))
        .await;
    assert_eq!(task["status"], "FAILED", "{task:#}");
    let error = &task["subTasks"][0]["errors"][0];
    assert_eq!(error["errorCode"], "AUTHENTICATION_FAILED", "{task:#}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains(&account.username),
        "{error:#}"
    );
    assert_eq!(
        task["resolutionStatus"], "RESOLVED",
        "nothing was changed: {task:#}"
    );
    assert!(
        ssh_login(&account.username, &live),
        "the live password still logs in"
    );
    assert_eq!(
        app.reveal(&resource, &account.username),
        account.password,
        "the vault is unchanged"
    );
    assert_eq!(
        psql_value(
            &app.db_name,
            "SELECT count(*) FROM credential_versions WHERE state = 'PENDING'"
        ),
        "0"
    );

    // REMEDIATE with the live password repairs it; then linux-passwd rotates from it.
    let spec = json!({"operationType": "REMEDIATE", "elements": [{"resourceId": resource, "resourceType": "LINUX",
        "credentials": [{"username": account.username, "password": live}]}]});
    let reply = app
        .publish_and_reply("credentials.update", &serde_json::to_vec(&spec).unwrap())
        .await;
    assert_eq!(
        app.wait_task(reply["id"].as_str().unwrap(), Duration::from_secs(60))
            .await["status"],
        "SUCCESSFUL"
    );
    let task = app
        .request(&rotate_spec(&resource, &[&account.username]))
        .await;
    assert_eq!(task["status"], "SUCCESSFUL", "{task:#}");
    let new = app.reveal(&resource, &account.username);
    assert!(ssh_login(&account.username, &new));
    assert!(!ssh_login(&account.username, &live));
    app.assert_logs_free_of(&[&account.password, &live, &new]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linux_passwd_needs_a_known_password_and_reconcile_needs_an_admin() {
    let app = TestApp::spawn().await;
    let account = Account::create("rtitpn");
    let resource = format!("pn-{}", app.id);
    // Onboarded without its password.
    let bed = testbed();
    let inv = format!(
        "[[resource]]\nid = \"{resource}\"\nname = \"n\"\ntype = \"LINUX\"\naddress = \"127.0.0.1\"\nport = {}\nhost_keys = [\"{}\"]\nplatform = \"linux-passwd\"\n\n[[resource.account]]\nusername = \"{}\"\n",
        bed.port, bed.host_key_fpr, account.username
    );
    assert_eq!(app.apply_inventory_text(&resource, &inv).code, 0);
    let reply = app
        .publish_and_reply(
            "credentials.update",
            &rotate_spec(&resource, &[&account.username]),
        )
        .await;
    let task = app
        .wait_task(reply["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(task["status"], "FAILED");
    assert_eq!(
        task["subTasks"][0]["errors"][0]["errorCode"], "CURRENT_PASSWORD_UNKNOWN",
        "{task:#}"
    );
    let spec = json!({"operationType": "REMEDIATE", "elements": [{"resourceId": resource, "resourceType": "LINUX",
        "credentials": [{"username": account.username}]}]});
    let reply = app
        .publish_and_reply("credentials.update", &serde_json::to_vec(&spec).unwrap())
        .await;
    let task = app
        .wait_task(reply["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(task["status"], "FAILED");
    assert_eq!(
        task["subTasks"][0]["errors"][0]["errorCode"], "ADMIN_ACCOUNT_MISSING",
        "{task:#}"
    );
    assert!(
        ssh_login(&account.username, &account.password),
        "nothing touched the target"
    );
}
