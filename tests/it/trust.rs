//! The trust boundary (SPEC section 8): producers and tokens limited to what they may
//! touch, an HTTP inventory that cannot name files, resources retired rather than
//! erased, an append-only audit log with a hash chain, failed logins rate-limited.
//! Each attack is replayed against the real services and must change nothing.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

fn update_spec(resource: &str, username: &str, password: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"operationType": "UPDATE", "elements": [{"resourceId": resource, "resourceType": "LINUX",
        "credentials": [{"username": username, "password": password}]}]}))
    .unwrap()
}

async fn spawn_with(opts: Options, prefix: &str) -> (TestApp, Account, String) {
    let app = TestApp::spawn_with(opts).await;
    let account = Account::create(prefix);
    let resource = format!("web-{}", app.id);
    let out = app.apply_inventory(&resource, &testbed().host_key_fpr, &[&account]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    (app, account, resource)
}

/// A bearer token and the `[[http.token]]` table that grants it (`scopes`, `resources`
/// as TOML arrays); the token's file is written first, as rotor reads it at start.
fn token_table(name: &str, scopes: &str, resources: &str) -> (String, String) {
    let token = strong_token(name);
    let file = std::path::Path::new(FILES_DIR)
        .join("it")
        .join(format!("{name}-{}.token", unique()));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    write_private(&file, &token);
    let table = format!("[[http.token]]\nname = \"{name}\"\ntoken_file = \"{}\"\nscopes = {scopes}\nresources = {resources}\n", file.display());
    (token, table)
}

/// The refused tasks, newest last: (requestedBy kind, name, errorCode, field).
fn refusals(app: &TestApp) -> Vec<String> {
    psql_value(
        &app.db_name,
        "SELECT string_agg(concat_ws(' ', requested_by_kind, requested_by_name, errors->0->>'errorCode', errors->0->'context'->>'field'), '|' ORDER BY created_at)
           FROM tasks WHERE status = 'FAILED'",
    )
    .split('|')
    .filter(|s| !s.is_empty())
    .map(String::from)
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unnamed_or_unknown_producer_changes_nothing() {
    // Attack: anyone who can publish (guest:guest) UPDATEs an account to a password of
    // their choosing. Here guest is no configured producer.
    let producer = tls_bed();
    let producers = format!("[[amqp.producer]]\nuser = \"{}\"\nscopes = [\"credentials:manage\"]\nresources = [\"web-*\"]\n", producer.producer_user);
    let (app, account, resource) = spawn_with(
        Options {
            producers,
            ..Default::default()
        },
        "rtitpa",
    )
    .await;
    let chosen = format!("Att4ck-{}{}-Pw!", unique(), unique());
    let guest = "amqp://guest:guest@127.0.0.1:5672/%2f";
    app.publish_as(
        guest,
        "credentials.update",
        &update_spec(&resource, &account.username, &chosen),
        Some("guest"),
        None,
    )
    .await
    .unwrap();
    let dead = app.next_dead_letter().await;
    assert_eq!(
        dead.error["errorCode"], "PERMISSION_DENIED",
        "{:#}",
        dead.error
    );
    assert_eq!(dead.error["context"]["field"], "user_id");
    assert!(
        !String::from_utf8_lossy(&dead.body).contains(&chosen),
        "the dead letter keeps no password"
    );
    // No user_id at all.
    app.publish_as(
        guest,
        "privx.password",
        &serde_json::to_vec(
            &json!({"host_id": resource, "account": account.username, "password": chosen}),
        )
        .unwrap(),
        None,
        None,
    )
    .await
    .unwrap();
    let dead = app.next_dead_letter().await;
    assert_eq!(
        (
            dead.error["errorCode"].as_str(),
            dead.error["context"]["field"].as_str()
        ),
        (Some("PERMISSION_DENIED"), Some("user_id"))
    );
    // A user_id that is not the connection's own: the broker itself refuses it.
    let spoofed = app
        .publish_as(
            guest,
            "credentials.update",
            &update_spec(&resource, &account.username, &chosen),
            Some(&producer.producer_user),
            None,
        )
        .await;
    assert!(
        spoofed.is_err(),
        "RabbitMQ must refuse a user_id that is not the publisher's"
    );
    // The configured producer, limited to web-*, may not name another resource.
    let producer_url = format!(
        "amqp://{}:{}@127.0.0.1:5672/%2f",
        producer.producer_user, producer.producer_password
    );
    let other = format!("db-{}", app.id);
    let out = app.apply_inventory(&other, &testbed().host_key_fpr, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let elsewhere = serde_json::to_vec(&json!({"operationType": "ROTATE", "elements": [{"resourceId": other, "resourceType": "LINUX", "credentials": [{"username": account.username}]}]})).unwrap();
    app.publish_as(
        &producer_url,
        "credentials.update",
        &elsewhere,
        Some(&producer.producer_user),
        None,
    )
    .await
    .unwrap();
    let dead = app.next_dead_letter().await;
    assert_eq!(
        (
            dead.error["errorCode"].as_str(),
            dead.error["context"]["field"].as_str()
        ),
        (Some("PERMISSION_DENIED"), Some("elements[0].resourceId")),
        "{:#}",
        dead.error
    );
    assert_eq!(
        dead.headers.get("x-rotor-producer"),
        Some(&producer.producer_user),
        "the copy names its producer"
    );
    // Nor make rotor feed its own intake with a reply.
    let own_queue = format!("rotor.requests-{}", app.id);
    app.publish_as(
        &producer_url,
        "privx.rotate",
        &serde_json::to_vec(&json!({"host_id": resource, "account": account.username})).unwrap(),
        Some(&producer.producer_user),
        Some(&own_queue),
    )
    .await
    .unwrap();
    let dead = app.next_dead_letter().await;
    assert_eq!(
        (
            dead.error["errorCode"].as_str(),
            dead.error["context"]["field"].as_str()
        ),
        (Some("INVALID_REQUEST"), Some("reply_to"))
    );
    // Every refusal is a FAILED task naming who sent it; nothing else was recorded or changed.
    let producer_name = &producer.producer_user;
    assert_eq!(
        refusals(&app),
        vec![
            "PRODUCER guest PERMISSION_DENIED user_id".to_string(),
            "PRODUCER (no user_id) PERMISSION_DENIED user_id".to_string(),
            format!("PRODUCER {producer_name} PERMISSION_DENIED elements[0].resourceId"),
            format!("PRODUCER {producer_name} INVALID_REQUEST reply_to"),
        ]
    );
    assert_eq!(
        psql_value(&app.db_name, "SELECT count(*) FROM subtasks"),
        "0"
    );
    assert_eq!(
        psql_value(&app.db_name, "SELECT count(*) FROM credential_versions"),
        "1"
    );
    assert!(
        ssh_login(&account.username, &account.password),
        "the target keeps its password"
    );
    assert!(app.logs().iter().any(|l| l.contains("rotor::security")
        && l.contains("authentication failed")
        && l.contains("guest")));
    // The named producer within its resources is heard, and the task says who asked.
    let rotate = serde_json::to_vec(&json!({"operationType": "ROTATE", "elements": [{"resourceId": resource, "resourceType": "LINUX", "credentials": [{"username": account.username}]}]})).unwrap();
    app.publish_as(
        &producer_url,
        "credentials.update",
        &rotate,
        Some(&producer.producer_user),
        None,
    )
    .await
    .unwrap();
    let id = loop {
        let id = psql_value(
            &app.db_name,
            "SELECT id FROM tasks WHERE status <> 'FAILED'",
        );
        if !id.is_empty() {
            break id;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let task = app.wait_task(&id, Duration::from_secs(60)).await;
    assert_eq!(task["status"], "SUCCESSFUL", "{task:#}");
    assert_eq!(
        task["requestedBy"],
        json!({"kind": "PRODUCER", "name": producer_name})
    );
    let new = app.reveal(&resource, &account.username);
    assert!(ssh_login(&account.username, &new));
    assert!(!ssh_login(&account.username, &account.password));
    app.assert_logs_free_of(&[&chosen, &new]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_limited_to_its_resources_and_tasks_name_their_caller() {
    let (db_token, extra) = token_table(
        "db-team",
        r#"["credentials:manage", "credentials:view", "tasks:view"]"#,
        r#"["db-*"]"#,
    );
    let (app, account, resource) = spawn_with(
        Options {
            extra,
            ..Default::default()
        },
        "rtittk",
    )
    .await;
    let rotate = json!({"operationType": "ROTATE", "elements": [{"resourceId": resource, "resourceType": "LINUX", "credentials": [{"username": account.username}]}]});
    let (status, err) = app
        .send(
            "PATCH",
            "/v1/credentials",
            Some(&db_token),
            Some(rotate.clone()),
        )
        .await;
    assert_eq!(status, 403, "{err}");
    assert_eq!(
        (err["errorCode"].as_str(), err["context"]["field"].as_str()),
        (Some("PERMISSION_DENIED"), Some("elements[0].resourceId"))
    );
    let (status, err) = app
        .send(
            "POST",
            &format!(
                "/secrets-manager/api/v1/rotate/{resource}/{}",
                account.username
            ),
            Some(&db_token),
            None,
        )
        .await;
    assert_eq!(
        (status, err["error_code"].as_str()),
        (403, Some("PERMISSION_DENIED")),
        "{err}"
    );
    let (status, page) = app.get("/v1/credentials", Some(&db_token)).await;
    assert_eq!(status, 200);
    assert_eq!(
        page["elements"],
        json!([]),
        "it sees no credential outside db-*"
    );
    // The admin token's task names it, and the limited token cannot see it.
    let (status, task) = app
        .send("PATCH", "/v1/credentials", Some(&app.token), Some(rotate))
        .await;
    assert_eq!(status, 202, "{task}");
    assert_eq!(
        task["requestedBy"],
        json!({"kind": "TOKEN", "name": "test-admin"})
    );
    let id = task["id"].as_str().unwrap();
    let (status, _) = app
        .get(&format!("/v1/credentials/tasks/{id}"), Some(&db_token))
        .await;
    assert_eq!(status, 404);
    let (_, page) = app.get("/v1/credentials/tasks", Some(&db_token)).await;
    assert!(
        page["elements"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["id"] != id),
        "{page:#}"
    );
    let done = app.wait_task(id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "SUCCESSFUL");
    assert!(ssh_login(
        &account.username,
        &app.reveal(&resource, &account.username)
    ));
    assert!(!ssh_login(&account.username, &account.password));
    assert_eq!(
        psql_value(
            &app.db_name,
            "SELECT string_agg(requested_by_kind || ':' || requested_by_name, ',') FROM tasks"
        ),
        "TOKEN:test-admin"
    );
    // A name two resources share no longer picks one of them: the request must say which.
    let twin = resource_toml(
        &format!("a-{}", app.id),
        testbed().port,
        &testbed().host_key_fpr,
    )
    .replace(&format!("a-{}.test", app.id), &format!("{resource}.test"));
    let out = app.apply_inventory_text("twin", &twin);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let by_name = json!({"operationType": "ROTATE", "elements": [{"resourceName": format!("{resource}.test"), "resourceType": "LINUX", "credentials": [{"username": account.username}]}]});
    let (status, err) = app
        .send("PATCH", "/v1/credentials", Some(&app.token), Some(by_name))
        .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(
        err["context"]["field"], "elements[0].resourceName",
        "{err:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_inventory_cannot_name_files_or_move_a_resource_without_admin() {
    let (inv_token, extra) = token_table("inventory", r#"["resources:manage"]"#, "[]");
    let (app, account, resource) = spawn_with(
        Options {
            extra,
            ..Default::default()
        },
        "rtitin",
    )
    .await;
    let (status, stored) = app
        .get(&format!("/v1/resources/{resource}"), Some(&inv_token))
        .await;
    assert_eq!(status, 200, "{stored}");
    assert!(
        !stored.to_string().contains("File"),
        "no file path is shown: {stored:#}"
    );
    // Attack: a resource whose password file is /etc/shadow or the master key.
    let master_key = app.dir.join("master.key").display().to_string();
    for (field, body) in [
        (
            "admin.passwordFile",
            json!({"id": "evil", "name": "evil", "type": "LINUX", "address": "127.0.0.1", "insecureAcceptAnyHostKey": true,
                                        "admin": {"username": "root", "passwordFile": "/etc/shadow"}}),
        ),
        (
            "account[0].passwordFile",
            json!({"id": "evil", "name": "evil", "type": "LINUX", "address": "127.0.0.1", "insecureAcceptAnyHostKey": true,
                                        "platform": "linux-passwd", "account": [{"username": "root", "passwordFile": master_key}]}),
        ),
        // The same in the TOML spelling.
        (
            "account[0].password_file",
            json!({"id": "evil", "name": "evil", "type": "LINUX", "address": "127.0.0.1", "insecureAcceptAnyHostKey": true,
                                        "platform": "linux-passwd", "account": [{"username": "root", "password_file": master_key}]}),
        ),
    ] {
        let (status, err) = app
            .send("POST", "/v1/resources", Some(&app.token), Some(body))
            .await;
        assert_eq!(status, 400, "{err}");
        assert_eq!(err["context"]["field"], field, "{err:#}");
    }
    // The TOML inventory may name files only under [inventory] allowed_dir, links resolved.
    let link = app.dir.join("innocent.pw");
    std::os::unix::fs::symlink("/etc/shadow", &link).unwrap();
    for file in ["/etc/shadow", link.to_str().unwrap()] {
        let text = resource_toml("evil", testbed().port, &testbed().host_key_fpr)
            + &format!(
                "\n[[resource.account]]\nusername = \"{}\"\npassword_file = \"{file}\"\n",
                account.username
            );
        let out = app.apply_inventory_text("evil", &text);
        assert_ne!(out.code, 0);
        assert!(
            out.stderr.contains("resource[0].account[0].password_file")
                && out.stderr.contains("allowed_dir"),
            "{}",
            out.stderr
        );
    }
    assert_eq!(
        psql_value(
            &app.db_name,
            "SELECT count(*) FROM resources WHERE id = 'evil'"
        ),
        "0"
    );
    // Attack: a non-admin token points the resource at its own host and host key.
    for (field, value) in [
        ("address", json!("10.66.66.66")),
        ("port", json!(2022)),
        (
            "hostKeys",
            json!(["SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]),
        ),
        ("insecureAcceptAnyHostKey", json!(true)),
    ] {
        let mut moved = stored.clone();
        moved[field] = value;
        let (status, err) = app
            .send(
                "PUT",
                &format!("/v1/resources/{resource}"),
                Some(&inv_token),
                Some(moved),
            )
            .await;
        assert_eq!(status, 403, "{err}");
        assert_eq!(
            (err["errorCode"].as_str(), err["context"]["field"].as_str()),
            (Some("PERMISSION_DENIED"), Some(field)),
            "{err:#}"
        );
    }
    assert_eq!(
        psql_value(
            &app.db_name,
            &format!("SELECT address || ':' || port FROM resources WHERE id = '{resource}'")
        ),
        format!("127.0.0.1:{}", testbed().port)
    );
    // A change that does not move it is fine, and keeps the admin key TOML set.
    let mut renamed = stored.clone();
    renamed["name"] = json!("renamed");
    let (status, body) = app
        .send(
            "PUT",
            &format!("/v1/resources/{resource}"),
            Some(&inv_token),
            Some(renamed),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The admin may move it; the audit log keeps the old and new target.
    let mut moved = stored.clone();
    moved["address"] = json!("localhost");
    let (status, body) = app
        .send(
            "PUT",
            &format!("/v1/resources/{resource}"),
            Some(&app.token),
            Some(moved),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let entry: Value = serde_json::from_str(&psql_value(&app.db_name, "SELECT json_build_object('actor', actor, 'detail', detail) FROM audit_log WHERE action = 'RESOURCE_TARGET_CHANGED'")).unwrap();
    assert_eq!(entry["actor"], "TOKEN:test-admin");
    assert_eq!(
        (
            entry["detail"]["old"]["address"].as_str(),
            entry["detail"]["new"]["address"].as_str()
        ),
        (Some("127.0.0.1"), Some("localhost"))
    );
    // Still rotates, with the admin key the TOML inventory named.
    let rotate = json!({"operationType": "ROTATE", "elements": [{"resourceId": resource, "resourceType": "LINUX", "credentials": [{"username": account.username}]}]});
    let (status, task) = app
        .send("PATCH", "/v1/credentials", Some(&app.token), Some(rotate))
        .await;
    assert_eq!(status, 202, "{task}");
    let done = app
        .wait_task(task["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(done["status"], "SUCCESSFUL", "{done:#}");
    assert!(ssh_login(
        &account.username,
        &app.reveal(&resource, &account.username)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_keeps_the_passwords_until_root_purges_them() {
    let (app, account, resource) = spawn_with(Options::default(), "rtitdl").await;
    let current = app.reveal(&resource, &account.username);
    // Attack: DELETE to erase the only copy of the stored passwords.
    let (status, _) = app
        .send(
            "DELETE",
            &format!("/v1/resources/{resource}"),
            Some(&app.token),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = app
        .get(&format!("/v1/resources/{resource}"), Some(&app.token))
        .await;
    assert_eq!(status, 404, "a deleted resource is gone from the API");
    let (_, page) = app.get("/v1/credentials", Some(&app.token)).await;
    assert_eq!(page["elements"], json!([]));
    // Nothing rotates it any more, but the password is still there to read.
    let reply = app
        .publish_and_reply(
            "credentials.update",
            &rotate_spec(&resource, &[&account.username]),
        )
        .await;
    assert_eq!(reply["status"], "FAILED");
    assert_eq!(
        app.next_dead_letter().await.error["errorCode"],
        "RESOURCE_NOT_FOUND"
    );
    assert_eq!(app.reveal(&resource, &account.username), current);
    assert_eq!(
        psql_value(&app.db_name, "SELECT status FROM credentials"),
        "RETIRED"
    );
    // Applying it again does not quietly bring it back.
    let out = app.apply_inventory(&resource, &testbed().host_key_fpr, &[&account]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("purge"), "{}", out.stderr);
    // Root purges it for good.
    let out = app.cli(&["resource", "purge", &resource]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("1 stored password versions removed"),
        "{}",
        out.stdout
    );
    assert_eq!(
        psql_value(&app.db_name, "SELECT count(*) FROM credential_versions"),
        "0"
    );
    let actions = psql_value(
        &app.db_name,
        "SELECT string_agg(actor || ' ' || action, ',' ORDER BY seq) FROM audit_log",
    );
    assert!(
        actions.contains("TOKEN:test-admin RESOURCE_DELETED")
            && actions.contains("CLI:root RESOURCE_PURGED"),
        "{actions}"
    );
    assert!(
        ssh_login(&account.username, &current),
        "the target was never touched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_is_append_only_for_the_runtime_role_and_verify_finds_an_edit() {
    let (mut app, account, resource) = spawn_with(Options::default(), "rtitad").await;
    app.reveal(&resource, &account.username);
    let out = app.cli(&[
        "credential",
        "pause",
        "--resource",
        &resource,
        "--username",
        &account.username,
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = app.cli(&[
        "credential",
        "resume",
        "--resource",
        &resource,
        "--username",
        &account.username,
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // The CLI's actor is the real uid's user, whatever $USER says.
    let out = app.cli_with_env(
        &[
            "credential",
            "reveal",
            "--resource",
            &resource,
            "--username",
            &account.username,
        ],
        &[("USER", "mallory"), ("SUDO_USER", "mallory")],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        psql_value(&app.db_name, "SELECT string_agg(seq || ' ' || actor || ' ' || action, ',' ORDER BY seq) FROM audit_log"),
        "1 CLI:root REVEAL,2 CLI:root AUTO_ROTATE_PAUSE,3 CLI:root AUTO_ROTATE_RESUME,4 CLI:root REVEAL"
    );
    let out = app.cli(&["audit", "verify"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("4 entries"), "{}", out.stdout);

    // rotor run --no-migrate as a role that is only a member of rotor_runtime.
    let role = format!("rt_{}", app.id);
    psql(
        &app.db_name,
        &format!("CREATE ROLE {role} LOGIN IN ROLE rotor_runtime"),
    );
    let runtime_url = format!("postgres://{role}@127.0.0.1:5432/{}", app.db_name);
    let update = |sql: &str| {
        std::process::Command::new("psql")
            .args([runtime_url.as_str(), "-v", "ON_ERROR_STOP=1", "-qc", sql])
            .output()
            .unwrap()
    };
    for sql in [
        "UPDATE audit_log SET actor = 'CLI:nobody' WHERE seq = 1",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        let out = update(sql);
        assert!(
            !out.status.success()
                && String::from_utf8_lossy(&out.stderr).contains("permission denied"),
            "{sql}: {out:?}"
        );
    }
    assert!(
        update("INSERT INTO audit_log (actor, action) VALUES ('CLI:test', 'REVEAL')")
            .status
            .success()
    );
    app.stop();
    let config = std::fs::read_to_string(&app.config).unwrap();
    std::fs::write(
        &app.config,
        config.replacen(
            &format!("postgres://postgres@127.0.0.1:5432/{}", app.db_name),
            &runtime_url,
            1,
        ),
    )
    .unwrap();
    app.run_args = vec!["--no-migrate".into()];
    app.start().await;
    let reply = app
        .publish_and_reply(
            "credentials.update",
            &rotate_spec(&resource, &[&account.username]),
        )
        .await;
    let done = app
        .wait_task(reply["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(
        done["status"], "SUCCESSFUL",
        "the runtime role does all rotor's work: {done:#}"
    );
    let out = app.cli(&[
        "credential",
        "reveal",
        "--resource",
        &resource,
        "--username",
        &account.username,
    ]);
    assert_eq!(out.code, 0, "reveal as the runtime role: {}", out.stderr);
    assert!(
        ssh_login(&account.username, out.stdout.trim_end()),
        "the target takes what the runtime role stored"
    );
    assert!(!ssh_login(&account.username, &account.password));
    let out = app.cli(&["audit", "verify"]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    // Attack: the database owner edits an entry behind the trigger's back.
    psql(&app.db_name, "ALTER TABLE audit_log DISABLE TRIGGER USER; UPDATE audit_log SET actor = 'CLI:nobody' WHERE seq = 2; ALTER TABLE audit_log ENABLE TRIGGER USER");
    let out = app.cli(&["audit", "verify"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stderr.contains("entry 2") && out.stderr.contains("edited"),
        "{}",
        out.stderr
    );
    // Or swaps two (the edit put back first).
    psql(&app.db_name, "ALTER TABLE audit_log DISABLE TRIGGER USER; UPDATE audit_log SET actor = 'CLI:root' WHERE seq = 2;
                        UPDATE audit_log SET seq = -2 WHERE seq = 2; UPDATE audit_log SET seq = 2 WHERE seq = 3; UPDATE audit_log SET seq = 3 WHERE seq = -2;
                        ALTER TABLE audit_log ENABLE TRIGGER USER");
    let out = app.cli(&["audit", "verify"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("entry 2") && out.stderr.contains("reordered"),
        "{}",
        out.stderr
    );
    // Or removes one (the order put back first).
    psql(&app.db_name, "ALTER TABLE audit_log DISABLE TRIGGER USER;
                        UPDATE audit_log SET seq = -2 WHERE seq = 2; UPDATE audit_log SET seq = 2 WHERE seq = 3; UPDATE audit_log SET seq = 3 WHERE seq = -2;
                        DELETE FROM audit_log WHERE seq = 3; ALTER TABLE audit_log ENABLE TRIGGER USER");
    let out = app.cli(&["audit", "verify"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("entry 4") && out.stderr.contains("missing"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_logged_and_a_failing_source_is_slowed_down() {
    let app = TestApp::spawn().await;
    for i in 0..10 {
        let (status, _) = app
            .get("/v1/credentials", Some(&format!("guess-{i}")))
            .await;
        assert_eq!(status, 401);
    }
    let (status, body) = app.get("/v1/credentials", Some(&app.token)).await;
    assert_eq!(
        status, 429,
        "a source that failed 10 times in a minute is refused unheard: {body}"
    );
    // The daemon's log reaches the test through a reader thread: wait until the ten
    // lines are in (or ten seconds), then count.
    let failed = || -> Vec<String> {
        app.logs()
            .into_iter()
            .filter(|l| l.contains("rotor::security") && l.contains("authentication failed"))
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while failed().len() < 10 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logged = failed();
    assert_eq!(logged.len(), 10, "{logged:#?}");
    assert!(
        logged.iter().all(|l| l.contains("127.0.0.1")),
        "{logged:#?}"
    );
    assert!(
        !logged.iter().any(|l| l.contains("guess-")),
        "the wrong tokens are not logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_broker_dead_letters_is_neither_leaked_nor_lost() {
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
    use lapin::BasicProperties;
    let (mut app, account, resource) = spawn_with(Options::default(), "rtitbq").await;
    // A policy (here, a per-message TTL) makes the broker dead-letter an UPDATE, password
    // and all, before rotor reads it; rotor is down meanwhile.
    app.stop();
    let supplied = app
        .cli(&["policy", "generate", "linux"])
        .stdout
        .trim()
        .to_string();
    let conn = app.amqp().await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let props = BasicProperties::default()
        .with_user_id("guest".into())
        .with_expiration("1".into())
        .with_message_id("expiring".into());
    let confirm = ch
        .basic_publish(
            &app.exchange,
            "credentials.update",
            BasicPublishOptions::default(),
            &update_spec(&resource, &account.username, &supplied),
            props,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack());
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let count = |q: String| {
        let ch = ch.clone();
        async move {
            ch.queue_declare(&q, passive, Default::default())
                .await
                .unwrap()
                .message_count()
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while count(format!("rotor.requests-{}.quarantine", app.id)).await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the broker did not expire the message"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        count(format!("rotor.requests.dead-{}", app.id)).await,
        0,
        "no original reached the dead-letter queue"
    );
    // rotor comes back and takes it from the quarantine like any request: the supplied
    // password is applied, not thrown away.
    app.start().await;
    let id = loop {
        let id = psql_value(
            &app.db_name,
            "SELECT id FROM tasks WHERE request_key = 'amqp:guest:expiring'",
        );
        if !id.is_empty() {
            break id;
        }
        assert!(
            std::time::Instant::now() < deadline + Duration::from_secs(30),
            "the quarantined request was not taken"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let done = app.wait_task(&id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "SUCCESSFUL", "{done:#}");
    assert!(ssh_login(&account.username, &supplied));
    assert!(!ssh_login(&account.username, &account.password));
    assert_eq!(count(format!("rotor.requests.dead-{}", app.id)).await, 0);
    assert!(app
        .logs()
        .iter()
        .any(|l| l.contains("taking it from the quarantine") && l.contains("expired")));
    let _ = conn.close(200, "bye").await;
    app.assert_logs_free_of(&[&supplied]);
}
