//! Broadcom's own VCF Python bindings (vmware-sddc-manager) drive rotor unchanged: log in
//! with `POST /v1/tokens`, refresh, list with VCF paging from 0, rotate, poll, read an
//! error, log out. The rotation is then checked on the target itself.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

/// `rotor user hash-password` with the password on stdin.
fn hash_password(password: &str) -> String {
    let mut child = Command::new(ROTOR)
        .args(["--config", "/dev/null", "user", "hash-password"])
        .env_remove("ROTOR_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hash = String::from_utf8(out.stdout).unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains(password));
    hash
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_vcf_client_logs_in_rotates_polls_and_reads_errors() {
    let python = std::env::var("ROTOR_VCF_PYTHON")
        .expect("ROTOR_VCF_PYTHON: run the suite with scripts/test.sh (scripts/vcf-client.sh installs the bindings)");
    let password = format!("vcf-{}", strong_token("pw"));
    let hash_file =
        std::path::PathBuf::from(FILES_DIR).join(format!("vcf-admin-{}.argon2", unique()));
    write_private(&hash_file, &hash_password(&password));
    let app = TestApp::spawn_with(Options {
        extra: format!(
            "[[http.user]]\nusername = \"vcf-admin\"\npassword_hash_file = \"{}\"\nscopes = [\"admin\"]\n",
            hash_file.display()
        ),
        ..Options::default()
    })
    .await;
    let account = Account::create("rtitv");
    let resource = format!("vcf-{}", app.id);
    let out = app.apply_inventory(&resource, &testbed().host_key_fpr, &[&account]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    let out = tokio::task::spawn_blocking({
        let (url, resource, username, password) = (
            app.http.clone(),
            resource.clone(),
            account.username.clone(),
            password.clone(),
        );
        move || {
            Command::new(python)
                .arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/clients/vcf_client.py"
                ))
                .env("ROTOR_URL", url)
                .env("ROTOR_USER", "vcf-admin")
                .env("ROTOR_PASSWORD", password)
                .env("RESOURCE_NAME", format!("{resource}.test"))
                .env("RESOURCE_TYPE", "LINUX")
                .env("ACCOUNT", username)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "vcf_client.py failed:\n{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        app.logs().join("\n")
    );
    println!("the official client's session:\n{stdout}");
    let steps: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let step = |name: &str| {
        steps
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("no step {name}: {stdout}"))
            .clone()
    };

    let login = step("login");
    assert_eq!(
        (
            login["access_token"].as_bool(),
            login["refresh_token"].as_bool()
        ),
        (Some(true), Some(true)),
        "{login}"
    );
    assert_eq!(step("refresh")["access_token"], true);
    let list = step("list");
    assert_eq!(list["page_number"], 0, "{list}");
    assert_eq!(
        list["usernames"],
        serde_json::json!([account.username]),
        "{list}"
    );
    assert_eq!(
        list["resource_names"],
        serde_json::json!([format!("{resource}.test")])
    );

    let by_ip = step("list_by_ip");
    assert_eq!(
        (by_ip["total"].as_i64(), by_ip["resource_ip"].as_str()),
        (Some(1), Some("127.0.0.1")),
        "{by_ip}"
    );
    assert!(
        by_ip["created"].is_string() && by_ip["modified"].is_string(),
        "{by_ip}"
    );
    // VCF's expirations API, through the bindings' own models.
    let exp = step("expirations");
    assert_eq!(
        (
            exp["started"].as_str(),
            exp["status"].as_str(),
            exp["same_id"].as_bool()
        ),
        (Some("IN_PROGRESS"), Some("COMPLETED"), Some(true)),
        "{exp}"
    );
    assert_eq!(exp["username"], account.username.as_str(), "{exp}");
    assert_eq!(
        (exp["connectivity"].as_str(), exp["expiry_status"].as_str()),
        (Some("ACTIVE"), Some("ACTIVE")),
        "the test account's password never expires: {exp}"
    );
    assert!(
        exp["expiry_date"].is_null() && exp["last_checked"].is_string(),
        "{exp}"
    );
    let domain = step("domain");
    assert_eq!(
        (domain["raised"].as_bool(), domain["status"].as_i64()),
        (Some(true), Some(400)),
        "{domain}"
    );
    assert!(
        domain["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("domainName:"),
        "{domain}"
    );
    let tasks = step("tasks");
    assert_eq!(
        (tasks["count"].as_i64(), tasks["page_size"].as_i64()),
        (Some(1), Some(1)),
        "{tasks}"
    );
    assert_eq!(
        tasks["first"],
        step("rotate")["id"],
        "the newest task first"
    );

    let poll = step("poll");
    assert_eq!(
        poll["status"],
        "SUCCESSFUL",
        "{poll}\n{}",
        app.logs().join("\n")
    );
    let sub = &poll["subtask"];
    assert_eq!(sub["username"], account.username.as_str(), "{poll}");
    assert_eq!(sub["resourceName"], format!("{resource}.test"));
    assert_eq!(sub["credentialType"], "SSH");
    assert_eq!(sub["entityType"], "LINUX");
    assert_eq!(sub["status"], "SUCCESSFUL");
    assert!(
        sub["creationTimestamp"].is_string() && sub["completionTimestamp"].is_string(),
        "{poll}"
    );

    let error = step("error");
    assert_eq!(error["raised"], true, "{error}");
    assert_eq!(error["status"], 400, "{error}");
    assert!(
        error["error_code"].as_str().is_some_and(|c| !c.is_empty()),
        "{error}"
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("username"),
        "{error}"
    );
    assert_eq!(step("wrong_password")["error_code"], "UNAUTHORIZED");
    let after = step("after_logout");
    assert_eq!(
        (after["refused"].as_bool(), after["error_code"].as_str()),
        (Some(true), Some("UNAUTHORIZED")),
        "{after}"
    );

    // The task names the user who asked; the target has the new password, not the old.
    let task_id = step("rotate")["id"].as_str().unwrap().to_string();
    let task = app.wait_task(&task_id, Duration::from_secs(5)).await;
    assert_eq!(
        task["requestedBy"],
        serde_json::json!({"kind": "USER", "name": "vcf-admin"}),
        "{task:#}"
    );
    let new = app.reveal(&resource, &account.username);
    assert!(
        ssh_login(&account.username, &new),
        "the new password logs in"
    );
    assert!(
        !ssh_login(&account.username, &account.password),
        "the old password is refused"
    );
    app.assert_logs_free_of(&[&password, &new]);
    let _ = std::fs::remove_file(&hash_file);
}
