//! Pre-flight checks (`POST /v1/preflight`, `rotor preflight`) on the real sshd: each
//! condition broken on the host itself, each named, and nothing on the target changed.

use std::process::Command;

use serde_json::{json, Value};

use crate::helpers::*;

/// The account's line in /etc/shadow, to show a check changed nothing.
fn shadow(username: &str) -> String {
    let out = Command::new("getent")
        .args(["shadow", username])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

fn host(args: &[&str]) {
    let status = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(status.success(), "{args:?}");
}

/// The status and message of check `name` for `username` on `resource`.
fn check<'a>(results: &'a Value, resource: &str, username: &str, name: &str) -> (&'a str, &'a str) {
    let account = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resourceId"] == resource && r["username"] == username)
        .unwrap_or_else(|| panic!("no result for {resource}/{username}: {results:#}"));
    let c = account["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} for {username}: {account:#}"));
    (
        c["status"].as_str().unwrap(),
        c["message"].as_str().unwrap(),
    )
}

/// A resource on the test sshd whose admin section is `admin` (TOML lines).
fn resource_with(
    app: &TestApp,
    id: &str,
    port: u16,
    host_key: &str,
    admin: &str,
    accounts: &[&Account],
) -> String {
    format!(
        "[[resource]]\nid = \"{id}\"\nname = \"{id}.test\"\ntype = \"LINUX\"\naddress = \"127.0.0.1\"\nport = {port}\nhost_keys = [\"{host_key}\"]\n{admin}\n{}",
        app.accounts_toml(accounts, "")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_names_each_broken_condition_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let bed = testbed();
    let healthy = Account::create("rtitpfa");
    let locked = Account::create("rtitpfl");
    let expired = Account::create("rtitpfe");
    let aging = Account::create("rtitpfm");
    let forced = Account::create("rtitpfc");
    let gone = Account::create("rtitpfg");
    let drifted = Account::create("rtitpfd");
    let good = format!("pf-{}", app.id);
    let out = app.apply_inventory(
        &good,
        &bed.host_key_fpr,
        &[
            &healthy, &locked, &expired, &aging, &forced, &gone, &drifted,
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Break each condition on the host, as an operator outside rotor would.
    host(&["usermod", "-L", &locked.username]);
    host(&["chage", "-E", "0", &expired.username]);
    host(&["chage", "-M", "30", &aging.username]);
    host(&["chage", "-d", "0", &forced.username]);
    host(&["userdel", &gone.username]);
    drifted.set_password_on_host(&initial_password());

    // Three broken resources: a closed port, a wrong pinned key, an admin key the host
    // does not know, and an admin without sudo rights (the healthy account itself).
    let dir = std::path::Path::new(FILES_DIR);
    let stranger_key = dir.join(format!("stranger-{}", app.id));
    let _ = std::fs::remove_file(&stranger_key);
    host(&[
        "ssh-keygen",
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-f",
        stranger_key.to_str().unwrap(),
    ]);
    let admin_pw = dir.join(format!("admin-pw-{}", app.id));
    write_private(&admin_pw, &format!("{}\n", healthy.password));
    let admin = format!(
        "[resource.admin]\nusername = \"{}\"\nprivate_key_file = \"{}\"\nsudo = true\n",
        bed.admin, bed.admin_key
    );
    let closed = format!("pfc-{}", app.id);
    let wrong_key = format!("pfk-{}", app.id);
    let stranger = format!("pfs-{}", app.id);
    let no_sudo = format!("pfn-{}", app.id);
    let fake_key = format!("SHA256:{}", "A".repeat(43));
    let text = [
        resource_with(&app, &closed, 1, &bed.host_key_fpr, &admin, &[&healthy]),
        resource_with(&app, &wrong_key, bed.port, &fake_key, &admin, &[&healthy]),
        resource_with(
            &app,
            &stranger,
            bed.port,
            &bed.host_key_fpr,
            &format!(
                "[resource.admin]\nusername = \"{}\"\nprivate_key_file = \"{}\"\nsudo = true\n",
                bed.admin,
                stranger_key.display()
            ),
            &[&healthy],
        ),
        resource_with(
            &app,
            &no_sudo,
            bed.port,
            &bed.host_key_fpr,
            &format!(
                "[resource.admin]\nusername = \"{}\"\npassword_file = \"{}\"\nsudo = true\n",
                healthy.username,
                admin_pw.display()
            ),
            &[&healthy],
        ),
    ]
    .join("\n");
    let out = app.apply_inventory_text(&closed, &text);
    assert_eq!(out.code, 0, "{}", out.stderr);

    let everyone = [&healthy, &locked, &expired, &aging, &forced, &drifted];
    let before: Vec<String> = everyone.iter().map(|a| shadow(&a.username)).collect();

    let (status, results) = app
        .send("POST", "/v1/preflight", Some(&app.token), Some(json!({})))
        .await;
    assert_eq!(status, 200, "{results:#}");
    // The healthy account passes everything but the optional password check.
    for name in [
        "REACHABLE",
        "HOST_KEY",
        "ADMIN_AUTH",
        "SUDO_CHPASSWD",
        "ACCOUNT_EXISTS",
        "ACCOUNT_STATUS",
        "PASSWORD_EXPIRY",
    ] {
        assert_eq!(
            check(&results, &good, &healthy.username, name).0,
            "PASS",
            "{name}: {results:#}"
        );
    }
    assert_eq!(
        check(&results, &good, &healthy.username, "CURRENT_PASSWORD").0,
        "SKIPPED"
    );
    assert!(check(&results, &good, &healthy.username, "PASSWORD_EXPIRY")
        .1
        .contains("never"));
    // Each broken condition is named with what to do.
    let (s, m) = check(&results, &good, &locked.username, "ACCOUNT_STATUS");
    assert_eq!((s, m.contains("locked")), ("FAIL", true), "{m}");
    let (s, m) = check(&results, &good, &expired.username, "ACCOUNT_STATUS");
    assert_eq!((s, m.contains("expired")), ("FAIL", true), "{m}");
    let (s, m) = check(&results, &good, &aging.username, "PASSWORD_EXPIRY");
    assert_eq!((s, m.contains("in 30 days")), ("PASS", true), "{m}");
    let (s, m) = check(&results, &good, &forced.username, "PASSWORD_EXPIRY");
    assert_eq!((s, m.contains("must be changed")), ("FAIL", true), "{m}");
    let (s, m) = check(&results, &good, &gone.username, "ACCOUNT_EXISTS");
    assert_eq!((s, m.contains("no account")), ("FAIL", true), "{m}");
    assert_eq!(
        check(&results, &good, &gone.username, "ACCOUNT_STATUS").0,
        "SKIPPED"
    );
    let (s, m) = check(&results, &closed, &healthy.username, "REACHABLE");
    assert_eq!(s, "FAIL", "{m}");
    assert_eq!(
        check(&results, &closed, &healthy.username, "ADMIN_AUTH").0,
        "SKIPPED"
    );
    let (s, m) = check(&results, &wrong_key, &healthy.username, "HOST_KEY");
    assert_eq!(
        (s, m.contains(&bed.host_key_fpr)),
        ("FAIL", true),
        "names the key it found: {m}"
    );
    assert_eq!(
        check(&results, &wrong_key, &healthy.username, "ADMIN_AUTH").0,
        "SKIPPED",
        "no login to an unpinned host"
    );
    assert_eq!(
        check(&results, &stranger, &healthy.username, "ADMIN_AUTH").0,
        "FAIL"
    );
    let (s, m) = check(&results, &no_sudo, &healthy.username, "SUDO_CHPASSWD");
    assert_eq!(
        (s, m.contains("NOPASSWD: /usr/sbin/chpasswd")),
        ("FAIL", true),
        "{m}"
    );

    // The stored password, only when asked: the drifted account's is refused.
    let (status, asked) = app
        .send("POST", "/v1/preflight", Some(&app.token), Some(json!({
            "resourceIds": [good], "usernames": [healthy.username, drifted.username], "checkPassword": true
        })))
        .await;
    assert_eq!(status, 200, "{asked:#}");
    assert_eq!(asked["results"].as_array().unwrap().len(), 2, "{asked:#}");
    assert_eq!(
        check(&asked, &good, &healthy.username, "CURRENT_PASSWORD").0,
        "PASS"
    );
    let (s, m) = check(&asked, &good, &drifted.username, "CURRENT_PASSWORD");
    assert_eq!((s, m.contains("REMEDIATE")), ("FAIL", true), "{m}");

    // Bad input is named; an unknown resource is 404 naming it.
    let (status, err) = app
        .send(
            "POST",
            "/v1/preflight",
            Some(&app.token),
            Some(json!({"resourceIds": [good, "no-such"]})),
        )
        .await;
    assert_eq!(
        (status, err["context"]["field"].as_str()),
        (404, Some("resourceIds[1]")),
        "{err:#}"
    );
    let (status, err) = app
        .send(
            "POST",
            "/v1/preflight",
            Some(&app.token),
            Some(json!({"checkPasswords": true})),
        )
        .await;
    assert_eq!(status, 400, "{err:#}");

    // The CLI: the same checks; exit 1 when any FAILs, 0 when all pass.
    let out = app.cli(&["preflight", "--resource", &good, "--json"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let cli: Value = serde_json::from_str(&out.stdout).unwrap();
    let (s, m) = check(&cli, &good, &locked.username, "ACCOUNT_STATUS");
    assert_eq!(s, "FAIL", "{m}");
    let out = app.cli(&[
        "preflight",
        "--resource",
        &good,
        "--username",
        &healthy.username,
        "--check-password",
    ]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("PASS     CURRENT_PASSWORD"),
        "{}",
        out.stdout
    );

    // Nothing on the targets changed.
    let after: Vec<String> = everyone.iter().map(|a| shadow(&a.username)).collect();
    assert_eq!(before, after, "the shadow entries are byte-identical");
    assert!(
        ssh_login(&healthy.username, &healthy.password),
        "the healthy account still logs in"
    );
    app.assert_logs_free_of(&[&healthy.password, &drifted.password]);
    let _ = std::fs::remove_file(&stranger_key);
    let _ = std::fs::remove_file(stranger_key.with_extension("pub"));
    let _ = std::fs::remove_file(&admin_pw);
}
