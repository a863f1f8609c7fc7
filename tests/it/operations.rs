//! Every operation a producer or operator can ask, end to end, checked on the target.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

async fn setup(prefix: &str) -> (TestApp, Account, String) {
    let app = TestApp::spawn().await;
    let account = Account::create(prefix);
    let resource = format!("ops-{}", app.id);
    let out = app.apply_inventory(&resource, &testbed().host_key_fpr, &[&account]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    (app, account, resource)
}

fn versions(app: &TestApp) -> String {
    psql_value(
        &app.db_name,
        "SELECT string_agg(state || ':' || origin, ',' ORDER BY version) FROM credential_versions",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_checks_the_policy_then_applies_the_supplied_password() {
    let (app, account, resource) = setup("rtitu").await;
    // A weak password: refused with the rule, nothing changes.
    let weak = "short1";
    let reply = app
        .publish_and_reply(
            "credentials.update",
            &spec(
                "UPDATE",
                &resource,
                json!([{"username": account.username, "password": weak}]),
            ),
        )
        .await;
    assert_eq!(reply["status"], "FAILED");
    let dead = app.next_dead_letter().await;
    let err = &dead.error;
    assert_eq!(err["errorCode"], "PASSWORD_POLICY_VIOLATION", "{err:#}");
    assert_eq!(
        err["context"]["field"],
        "elements[0].credentials[0].password"
    );
    assert!(
        err["message"].as_str().unwrap().contains("TOO_SHORT"),
        "{err:#}"
    );
    assert!(!err.to_string().contains(weak));
    assert!(
        !String::from_utf8_lossy(&dead.body).contains(weak),
        "the dead letter holds the password"
    );
    // Whoever re-publishes the dead letter as it is gets a refusal, never the placeholder
    // stored or applied as a password.
    app.publish_and_reply("credentials.update", &dead.body)
        .await;
    let err = app.next_dead_letter().await.error;
    assert_eq!(
        (err["errorCode"].as_str(), err["context"]["field"].as_str()),
        (
            Some("VALUE_INCORRECT_FORMAT"),
            Some("elements[0].credentials[0].password")
        ),
        "{err:#}"
    );
    // UPDATE without a password names the field.
    app.publish_and_reply(
        "credentials.update",
        &spec("UPDATE", &resource, json!([{"username": account.username}])),
    )
    .await;
    let err = app.next_dead_letter().await.error;
    assert_eq!(err["errorCode"], "REQUIRED_VALUE_MISSING");
    assert_eq!(
        err["context"]["field"],
        "elements[0].credentials[0].password"
    );
    assert_eq!(versions(&app), "CURRENT:ONBOARDED");
    // Each refusal is one FAILED task record and nothing else: no subtask, no secret kept.
    assert_eq!(
        psql_value(&app.db_name, "SELECT string_agg(status, ',') FROM tasks"),
        "FAILED,FAILED,FAILED"
    );
    assert_eq!(
        psql_value(&app.db_name, "SELECT count(*) FROM subtasks"),
        "0"
    );
    assert_eq!(
        psql_value(&app.db_name, "SELECT count(*) FROM subtask_secrets"),
        "0"
    );
    assert!(ssh_login(&account.username, &account.password));

    let strong = format!("Up8-{}{}-St!", unique(), unique()); // the linux preset: exactly 24
    let reply = app
        .publish_and_reply(
            "credentials.update",
            &spec(
                "UPDATE",
                &resource,
                json!([{"username": account.username, "password": strong}]),
            ),
        )
        .await;
    let task = app
        .wait_task(reply["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(task["status"], "SUCCESSFUL", "{task:#}");
    let stages: Vec<&str> = task["subTasks"][0]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        [
            "VALIDATE",
            "POLICY_CHECK",
            "STAGE_PENDING",
            "APPLY",
            "VERIFY_NEW",
            "VERIFY_OLD_REJECTED",
            "COMMIT"
        ]
    );
    assert_eq!(app.reveal(&resource, &account.username), strong);
    assert!(ssh_login(&account.username, &strong));
    assert!(!ssh_login(&account.username, &account.password));
    assert_eq!(versions(&app), "PREVIOUS:ONBOARDED,CURRENT:SUPPLIED");
    assert_eq!(
        psql_value(&app.db_name, "SELECT count(*) FROM subtask_secrets"),
        "0",
        "the supplied copy is gone once stored"
    );
    assert!(!task.to_string().contains(&strong));
    app.assert_logs_free_of(&[&strong, weak, &account.password]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remediate_with_a_password_verifies_it_and_stores_it_without_touching_the_target() {
    let (app, account, resource) = setup("rtitr").await;
    let changed = format!("Hand-{}-Set!9", unique());
    account.set_password_on_host(&changed);
    // A wrong password fails at VERIFY_SUPPLIED; nothing changes.
    let reply = app
        .publish_and_reply(
            "credentials.update",
            &spec(
                "REMEDIATE",
                &resource,
                json!([{"username": account.username, "password": "Wrong-Guess-123!"}]),
            ),
        )
        .await;
    let task = app
        .wait_task(reply["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(task["status"], "FAILED");
    assert_eq!(
        task["errors"][0]["errorCode"], "AUTHENTICATION_FAILED",
        "{task:#}"
    );
    assert_eq!(versions(&app), "CURRENT:ONBOARDED");
    // The right one is stored as current; the target keeps it.
    let reply = app
        .publish_and_reply(
            "credentials.update",
            &spec(
                "REMEDIATE",
                &resource,
                json!([{"username": account.username, "password": changed}]),
            ),
        )
        .await;
    let task = app
        .wait_task(reply["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(task["status"], "SUCCESSFUL", "{task:#}");
    let stages: Vec<&str> = task["subTasks"][0]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["VALIDATE", "VERIFY_SUPPLIED", "COMMIT"]);
    assert_eq!(app.reveal(&resource, &account.username), changed);
    assert!(ssh_login(&account.username, &changed));
    assert_eq!(versions(&app), "PREVIOUS:ONBOARDED,CURRENT:SUPPLIED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remediate_without_a_password_reconciles_with_the_admin_account() {
    let (app, account, resource) = setup("rtitc").await;
    let unknown = format!("Lost-{}-Pw!7", unique());
    account.set_password_on_host(&unknown);
    let reply = app
        .publish_and_reply(
            "credentials.update",
            &spec(
                "REMEDIATE",
                &resource,
                json!([{"username": account.username}]),
            ),
        )
        .await;
    let task = app
        .wait_task(reply["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(task["status"], "SUCCESSFUL", "{task:#}");
    let fresh = app.reveal(&resource, &account.username);
    assert!(ssh_login(&account.username, &fresh));
    assert!(!ssh_login(&account.username, &unknown));
    assert_eq!(versions(&app), "PREVIOUS:ONBOARDED,CURRENT:GENERATED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_rotate_policy_is_set_shown_and_bounded() {
    let (app, account, resource) = setup("rtita").await;
    let set = |days: Value, enable: bool| {
        serde_json::to_vec(&json!({"operationType": "UPDATE_AUTO_ROTATE_POLICY",
            "elements": [{"resourceId": resource, "resourceType": "LINUX", "credentials": [{"username": account.username}]}],
            "autoRotatePolicy": {"enableAutoRotatePolicy": enable, "frequencyInDays": days}}))
        .unwrap()
    };
    for bad in [0, 366] {
        app.publish_and_reply("credentials.update", &set(json!(bad), true))
            .await;
        let err = app.next_dead_letter().await.error;
        assert_eq!(err["errorCode"], "VALUE_OUT_OF_BOUNDS");
        assert_eq!(err["context"]["field"], "autoRotatePolicy.frequencyInDays");
    }
    // Refused, nothing recorded beyond the two refusals, no policy set.
    assert_eq!(
        psql_value(&app.db_name, "SELECT count(*) FROM subtasks"),
        "0"
    );
    assert_eq!(
        psql_value(
            &app.db_name,
            "SELECT count(*) FROM credentials WHERE auto_rotate_days IS NOT NULL"
        ),
        "0"
    );
    let reply = app
        .publish_and_reply("credentials.update", &set(json!(30), true))
        .await;
    let task = app
        .wait_task(reply["id"].as_str().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(task["status"], "SUCCESSFUL", "{task:#}");
    let (status, page) = app
        .get(
            &format!("/v1/credentials?resourceName={resource}.test"),
            Some(&app.token),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let cred = &page["elements"][0];
    assert_eq!(cred["username"], account.username.as_str());
    assert_eq!(cred["autoRotatePolicy"]["frequencyInDays"], 30);
    assert!(cred["autoRotatePolicy"]["nextSchedule"].is_string());
    assert!(cred.get("password").is_none());
    let reply = app
        .publish_and_reply("credentials.update", &set(Value::Null, false))
        .await;
    let task = app
        .wait_task(reply["id"].as_str().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(task["status"], "SUCCESSFUL", "{task:#}");
    let (status, one) = app
        .get(
            &format!("/v1/credentials/{}", cred["id"].as_str().unwrap()),
            Some(&app.token),
        )
        .await;
    assert_eq!(status, 200, "{one:#}");
    assert_eq!(one["username"], account.username.as_str());
    assert!(one["autoRotatePolicy"].is_null(), "{one:#}");
    // Nothing touched the target.
    assert!(ssh_login(&account.username, &account.password));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privx_rotate_and_set_password_over_amqp_and_http() {
    let (app, account, resource) = setup("rtitv").await;
    // privx.rotate over AMQP.
    let body = json!({"host_id": resource, "account": account.username}).to_string();
    let reply = app.publish_and_reply("privx.rotate", body.as_bytes()).await;
    let task = app
        .wait_task(reply["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(task["status"], "SUCCESSFUL", "{task:#}");
    let rotated = app.reveal(&resource, &account.username);
    assert!(ssh_login(&account.username, &rotated));

    // privx.password: stored as current, the target untouched.
    let stored = format!("Privx-{}-Set!1", unique());
    let body =
        json!({"host_id": resource, "account": account.username, "password": stored}).to_string();
    let reply = app
        .publish_and_reply("privx.password", body.as_bytes())
        .await;
    let task = app
        .wait_task(reply["id"].as_str().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(task["status"], "SUCCESSFUL", "{task:#}");
    assert_eq!(app.reveal(&resource, &account.username), stored);
    assert!(
        ssh_login(&account.username, &rotated),
        "the target still has the rotated password"
    );

    // The HTTP forms.
    let path = format!(
        "/secrets-manager/api/v1/rotate/{resource}/{}",
        account.username
    );
    let (status, body) = app.send("POST", &path, None, None).await;
    assert_eq!(status, 401);
    assert_eq!(body["error_code"], "PERMISSION_DENIED");
    let (status, body) = app.send("POST", &path, Some(&app.view_token), None).await;
    assert_eq!(status, 403);
    assert_eq!(body["error_code"], "PERMISSION_DENIED");
    let (status, body) = app
        .send(
            "POST",
            &format!("/secrets-manager/api/v1/rotate/nope/{}", account.username),
            Some(&app.token),
            None,
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["property"], "host_id");
    // Setting a password over HTTP answers once it is in the vault.
    let via_http = format!("Http-{}-Set!2", unique());
    let (status, body) = app
        .send(
            "PUT",
            &format!(
                "/secrets-manager/api/v1/password/{resource}/{}",
                account.username
            ),
            Some(&app.token),
            Some(json!({"password": via_http})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.reveal(&resource, &account.username), via_http);
    let (status, body) = app
        .send(
            "PUT",
            &format!(
                "/secrets-manager/api/v1/password/{resource}/{}",
                account.username
            ),
            Some(&app.token),
            Some(json!({"pass": "x"})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error_code"], "BAD_REQUEST", "{body}");
    let (status, body) = app.send("POST", &path, Some(&app.token), None).await;
    assert_eq!(status, 200, "{body}");
    let task = app
        .wait_task(body["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    // The vault's current password was set without the target knowing: the rotation
    // still works, because linux-chpasswd's admin does not need the old password, and
    // VERIFY_OLD_REJECTED confirms the stored one does not log in.
    assert_eq!(task["status"], "SUCCESSFUL", "{task:#}");
    let last = app.reveal(&resource, &account.username);
    assert!(ssh_login(&account.username, &last));
    assert!(!ssh_login(&account.username, &rotated));
    app.assert_logs_free_of(&[&stored, &via_http, &last, &rotated]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_message_id_makes_one_task() {
    let (app, account, resource) = setup("rtitq").await;
    let id = uuid::Uuid::new_v4().to_string();
    let body = rotate_spec(&resource, &[&account.username]);
    let first = app.publish_with_id("credentials.update", &body, &id).await;
    let second = app.publish_with_id("credentials.update", &body, &id).await;
    assert_eq!(first["id"], second["id"]);
    app.wait_task(first["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(psql_value(&app.db_name, "SELECT count(*) FROM tasks"), "1");
    assert_eq!(
        psql_value(
            &app.db_name,
            "SELECT count(*) FROM credential_versions WHERE state = 'PREVIOUS'"
        ),
        "1",
        "rotated once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_task_is_retried_once_the_host_is_back() {
    let app = TestApp::spawn().await;
    let host = ExtraSshd::start();
    let account = Account::create("rtitw");
    let resource = format!("later-{}", app.id);
    assert_eq!(
        app.apply_inventory_at(&resource, host.port, &host.host_key_fpr, &[&account])
            .code,
        0
    );
    host.stop();
    let reply = app
        .publish_and_reply(
            "credentials.update",
            &rotate_spec(&resource, &[&account.username]),
        )
        .await;
    let id = reply["id"].as_str().unwrap().to_string();
    let task = app.wait_task(&id, Duration::from_secs(60)).await;
    assert_eq!(task["status"], "FAILED");
    assert_eq!(task["isRetryable"], true);
    host.restart();
    let (status, body) = app
        .send(
            "PATCH",
            &format!("/v1/credentials/tasks/{id}"),
            Some(&app.token),
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let task = app.wait_task(&id, Duration::from_secs(60)).await;
    assert_eq!(task["status"], "SUCCESSFUL", "{task:#}");
    let new = app.reveal(&resource, &account.username);
    assert!(ssh_login(&account.username, &new));
    assert!(!ssh_login(&account.username, &account.password));
    // A task that did not fail cannot be retried.
    let (status, body) = app
        .send(
            "PATCH",
            &format!("/v1/credentials/tasks/{id}"),
            Some(&app.token),
            None,
        )
        .await;
    assert_eq!(status, 409, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_task_can_be_cancelled() {
    let (app, account, resource) = setup("rtitx").await;
    // A rotation, then an UPDATE of the same credential that waits for the first's lease.
    let supplied = app
        .cli(&["policy", "generate", "linux", "-n", "1"])
        .stdout
        .trim()
        .to_string();
    let update = spec(
        "UPDATE",
        &resource,
        json!([{"username": account.username, "password": supplied}]),
    );
    let first = app
        .publish_and_reply(
            "credentials.update",
            &rotate_spec(&resource, &[&account.username]),
        )
        .await;
    let second = app.publish_and_reply("credentials.update", &update).await;
    let id = second["id"].as_str().unwrap();
    assert_eq!(
        psql_value(&app.db_name, "SELECT count(*) FROM subtask_secrets"),
        "1",
        "the supplied password waits, encrypted"
    );
    let (status, body) = app
        .send(
            "DELETE",
            &format!("/v1/credentials/tasks/{id}"),
            Some(&app.token),
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "CANCELLED", "{body:#}");
    assert_eq!(body["subTasks"][0]["status"], "CANCELLED");
    assert_eq!(
        psql_value(&app.db_name, "SELECT count(*) FROM subtask_secrets"),
        "0",
        "and is not kept once cancelled"
    );
    let done = app
        .wait_task(first["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(done["status"], "SUCCESSFUL");
    let (status, _) = app
        .send(
            "DELETE",
            &format!("/v1/credentials/tasks/{id}"),
            Some(&app.token),
            None,
        )
        .await;
    assert_eq!(status, 409, "an ended task cannot be cancelled");
    // Only the first rotation happened.
    assert_eq!(
        psql_value(&app.db_name, "SELECT count(*) FROM credential_versions"),
        "2"
    );
    let current = app.reveal(&resource, &account.username);
    assert!(ssh_login(&account.username, &current));
    assert!(!ssh_login(&account.username, &supplied));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_patch_credentials_resources_and_ops_routes() {
    let (app, account, resource) = setup("rtith").await;
    // PATCH /v1/credentials runs the same pipeline.
    let body: Value =
        serde_json::from_slice(&rotate_spec(&resource, &[&account.username])).unwrap();
    let (status, task) = app
        .send(
            "PATCH",
            "/v1/credentials",
            Some(&app.view_token),
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, 403, "{task}");
    let (status, task) = app
        .send("PATCH", "/v1/credentials", Some(&app.token), Some(body))
        .await;
    assert_eq!(status, 202, "{task}");
    let id = task["id"].as_str().unwrap().to_string();
    let done = app.wait_task(&id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "SUCCESSFUL");
    let sub = done["subTasks"][0]["id"].as_str().unwrap();
    let (status, one) = app
        .get(
            &format!("/v1/credentials/tasks/{id}/subtasks/{sub}"),
            Some(&app.token),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(one["status"], "SUCCESSFUL");
    assert!(ssh_login(
        &account.username,
        &app.reveal(&resource, &account.username)
    ));
    let (status, err) = app
        .send(
            "PATCH",
            "/v1/credentials",
            Some(&app.token),
            Some(json!({"operationType": "ROTATE"})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(err["context"]["field"], "elements", "{err:#}");

    // Resources.
    let (status, list) = app.get("/v1/resources", Some(&app.token)).await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["hostKeys"][0], testbed().host_key_fpr.as_str());
    assert_eq!(list[0]["account"][0]["accountType"], "SERVICE");
    // A copy without the admin (whose key file only the TOML inventory can name).
    let mut copy = list[0].clone();
    copy["id"] = json!(format!("copy-{}", app.id));
    copy["account"] = json!([]);
    copy["platform"] = json!("linux-passwd");
    copy.as_object_mut().unwrap().remove("admin");
    let (status, created) = app
        .send(
            "POST",
            "/v1/resources",
            Some(&app.token),
            Some(copy.clone()),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    copy["port"] = json!(0);
    let (status, err) = app
        .send(
            "PUT",
            &format!("/v1/resources/copy-{}", app.id),
            Some(&app.token),
            Some(copy),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(err["context"]["field"], "port", "{err:#}");
    let (status, _) = app
        .send(
            "DELETE",
            &format!("/v1/resources/copy-{}", app.id),
            Some(&app.token),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = app
        .get(&format!("/v1/resources/copy-{}", app.id), Some(&app.token))
        .await;
    assert_eq!(status, 404);

    // Operations routes.
    let (status, ready) = app.get("/readyz", None).await;
    assert_eq!(status, 200, "{ready}");
    let (status, metrics) = app.get("/metrics", None).await;
    assert_eq!(status, 200);
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("rotor_tasks{status=\"SUCCESSFUL\"} 1"),
        "{metrics}"
    );
    let (status, api) = app.get("/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(api["openapi"], "3.1.0");
    // Every operation the document describes is served, and answers a request without a
    // token (or with an empty body) with a status the document lists for it.
    let paths = api["paths"].as_object().expect("paths");
    assert!(paths.len() >= 16, "{:?}", paths.keys());
    for (path, operations) in paths {
        let concrete = path
            .replace("{id}", &uuid::Uuid::new_v4().to_string())
            .replace("{subtaskId}", &uuid::Uuid::new_v4().to_string())
            .replace("{host_id}", "no-such-host")
            .replace("{account}", "nobody");
        assert!(!concrete.contains('{'), "unknown parameter in {path}");
        for (method, operation) in operations.as_object().unwrap() {
            let (status, body) = app
                .send(&method.to_uppercase(), &concrete, None, None)
                .await;
            let listed = &operation["responses"][status.to_string()];
            assert!(
                listed.is_object(),
                "{method} {path} answered {status} ({body}), which the document does not list"
            );
            assert_ne!(
                body["message"], "no such route",
                "{method} {path} is not served"
            );
        }
    }
    // A route the document does not describe is not served.
    let (status, body) = app.get("/v1/undescribed", None).await;
    assert_eq!(
        (status, body["errorCode"].as_str()),
        (404, Some("NOT_FOUND"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_changes_are_published_as_events() {
    use futures_util::StreamExt;
    let (app, account, resource) = setup("rtite").await;
    let (_conn, mut events) = app.events("#").await;
    let reply = app
        .publish_and_reply(
            "credentials.update",
            &rotate_spec(&resource, &[&account.username]),
        )
        .await;
    let id = reply["id"].as_str().unwrap().to_string();
    let mut keys = Vec::new();
    while !keys.contains(&"task.SUCCESSFUL".to_string()) {
        let d = tokio::time::timeout(Duration::from_secs(60), events.next())
            .await
            .expect("events within 60 s")
            .unwrap()
            .unwrap();
        let task: Value = serde_json::from_slice(&d.data).unwrap();
        assert_eq!(task["id"], id.as_str());
        keys.push(d.routing_key.to_string());
    }
    for expected in [
        "task.PENDING",
        "task.IN_PROGRESS",
        "subtask.IN_PROGRESS",
        "subtask.SUCCESSFUL",
        "task.SUCCESSFUL",
    ] {
        assert!(
            keys.contains(&expected.to_string()),
            "{expected} in {keys:?}"
        );
    }
}
