//! Requests rotor must refuse: dead-lettered with an exact error, nothing recorded.

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unknown_requests_are_dead_lettered_with_their_error() {
    let app = TestApp::spawn().await;
    let account = Account::create("rtitd");
    let resource = format!("app-{}", app.id);
    let out = app.apply_inventory(&resource, &testbed().host_key_fpr, &[&account]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    // Not JSON.
    let reply = app
        .publish_and_reply("credentials.update", b"{not json")
        .await;
    assert_eq!(reply["status"], "FAILED");
    assert_eq!(
        reply["isRetryable"], false,
        "a refused request has nothing to run again"
    );
    let dead = app.next_dead_letter().await;
    let err = &dead.error;
    assert_eq!(err["errorCode"], "INVALID_REQUEST");
    assert_eq!(err["context"]["field"], "body");
    // A body that is not JSON may hold a secret no one can find: it is withheld, and
    // only its size and digest identify it.
    assert!(dead.body.is_empty());
    assert_eq!(
        dead.headers["x-rotor-body-withheld"],
        "not JSON, so it may hold a secret rotor cannot find"
    );
    let digest = <sha2::Sha256 as sha2::Digest>::digest(b"{not json");
    assert_eq!(dead.headers["x-rotor-body-sha256"], hex::encode(digest));
    assert_eq!(dead.headers["x-rotor-body-bytes"], "LongLongInt(9)");

    // A wrong type deep inside, with a password in the message that must not leak.
    let secret = "Leak-Me-Not-42!";
    let bad = format!(
        r#"{{"operationType":"ROTATE","elements":[{{"resourceId":"{resource}","resourceType":"LINUX","credentials":[{{"username":7,"password":"{secret}"}}]}}]}}"#
    );
    app.publish_and_reply("credentials.update", bad.as_bytes())
        .await;
    let dead = app.next_dead_letter().await;
    let err = &dead.error;
    assert_eq!(
        err["context"]["field"], "elements[0].credentials[0].username",
        "{err:#}"
    );
    assert!(!err.to_string().contains(secret));
    // The dead-lettered copy keeps the request's shape, with the password replaced.
    let kept: serde_json::Value = serde_json::from_slice(&dead.body).unwrap();
    assert_eq!(kept["elements"][0]["credentials"][0]["username"], 7);
    assert_eq!(
        kept["elements"][0]["credentials"][0]["password"],
        rotor::requests::REDACTED
    );
    assert_eq!(
        dead.headers["x-rotor-redacted"],
        "elements[0].credentials[0].password"
    );

    // A PrivX password for a host rotor does not know; the same for a password of the
    // wrong type, which serde's message would otherwise echo.
    for body in [
        format!(
            r#"{{"host_id":"no-such-host","account":"{}","password":"{secret}"}}"#,
            account.username
        ),
        format!(
            r#"{{"host_id":"{resource}","account":"{}","password":4242424242}}"#,
            account.username
        ),
    ] {
        app.publish_and_reply("privx.password", body.as_bytes())
            .await;
        let dead = app.next_dead_letter().await;
        let field = if body.contains("no-such-host") {
            "host_id"
        } else {
            "password"
        };
        assert_eq!(dead.error["context"]["field"], field, "{:#}", dead.error);
        let text = format!("{} {}", String::from_utf8_lossy(&dead.body), dead.error);
        assert!(
            !text.contains(secret) && !text.contains("4242424242"),
            "{text}"
        );
        assert_eq!(dead.headers["x-rotor-redacted"], "password");
    }

    // Not UTF-8; an unknown or missing operationType; more credentials than one request
    // may name (amqp.max_credentials_per_request, 1000).
    let usernames: Vec<String> = (0..1001).map(|i| format!("u{i}")).collect();
    let too_many = rotate_spec(
        &resource,
        &usernames.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    for (body, code, field) in [
        (b"\xff\xfe{}".to_vec(), "INVALID_REQUEST", "body"),
        (
            br#"{"operationType":"SPIN","elements":[]}"#.to_vec(),
            "INVALID_REQUEST",
            "operationType",
        ),
        (
            br#"{"elements":[]}"#.to_vec(),
            "REQUIRED_VALUE_MISSING",
            "operationType",
        ),
        (too_many, "REQUEST_TOO_LARGE", "elements"),
    ] {
        app.publish_and_reply("credentials.update", &body).await;
        let err = app.next_dead_letter().await.error;
        assert_eq!(err["errorCode"], code, "{err:#}");
        assert_eq!(err["context"]["field"], field);
    }

    // Unknown resource, unknown account, usernames that could inject.
    for (spec, code, field) in [
        (
            rotate_spec("no-such-host", &["x"]),
            "RESOURCE_NOT_FOUND",
            "elements[0].resourceId",
        ),
        (
            rotate_spec(&resource, &["ghost"]),
            "CREDENTIAL_NOT_FOUND",
            "elements[0].credentials[0].username",
        ),
        (
            rotate_spec(&resource, &["root:x"]),
            "INVALID_USERNAME",
            "elements[0].credentials[0].username",
        ),
        (
            rotate_spec(&resource, &["a\nb"]),
            "INVALID_USERNAME",
            "elements[0].credentials[0].username",
        ),
        (
            rotate_spec(&resource, &["a b"]),
            "INVALID_USERNAME",
            "elements[0].credentials[0].username",
        ),
        (
            rotate_spec(&resource, &["-rf"]),
            "INVALID_USERNAME",
            "elements[0].credentials[0].username",
        ),
        // PostgreSQL text cannot hold a NUL: refused by name, not retried as a database outage.
        (
            rotate_spec("bad\u{0}host", &["x"]),
            "VALUE_INCORRECT_FORMAT",
            "elements[0].resourceId",
        ),
    ] {
        let reply = app.publish_and_reply("credentials.update", &spec).await;
        assert_eq!(reply["status"], "FAILED");
        assert_eq!(reply["errors"][0]["errorCode"], code, "{reply:#}");
        let err = app.next_dead_letter().await.error;
        assert_eq!(err["errorCode"], code);
        assert_eq!(err["context"]["field"], field);
    }

    // Too large.
    let big = vec![b' '; 70_000];
    app.publish_and_reply("credentials.update", &big).await;
    let dead = app.next_dead_letter().await;
    assert_eq!(dead.error["errorCode"], "REQUEST_TOO_LARGE");
    assert!(dead.body.is_empty());
    assert_eq!(dead.headers["x-rotor-body-withheld"], "over the size limit");

    // Too large over HTTP: the same error, in each route family's shape.
    let padding = json_padding(70_000);
    let (status, err) = app
        .send(
            "PATCH",
            "/v1/credentials",
            Some(&app.token),
            Some(padding.clone()),
        )
        .await;
    assert_eq!(
        (
            status,
            err["errorCode"].as_str(),
            err["context"]["field"].as_str()
        ),
        (413, Some("REQUEST_TOO_LARGE"), Some("body")),
        "{err:#}"
    );
    let path = format!(
        "/secrets-manager/api/v1/password/{resource}/{}",
        account.username
    );
    let (status, err) = app
        .send("PUT", &path, Some(&app.token), Some(padding))
        .await;
    assert_eq!(
        (status, err["error_code"].as_str(), err["property"].as_str()),
        (413, Some("VALUE_OUT_OF_BOUNDS"), Some("body")),
        "{err:#}"
    );

    // The same over HTTP, in a query parameter and a path.
    let (status, err) = app
        .get("/v1/credentials?resourceName=a%00b", Some(&app.token))
        .await;
    assert_eq!(
        (status, err["context"]["field"].as_str()),
        (400, Some("resourceName")),
        "{err:#}"
    );
    let (status, err) = app
        .send(
            "POST",
            &format!("/secrets-manager/api/v1/rotate/{resource}/a%00b"),
            Some(&app.token),
            None,
        )
        .await;
    assert_eq!(
        (status, err["property"].as_str()),
        (400, Some("account")),
        "{err:#}"
    );

    // Each refusal is recorded as a FAILED task without subtasks; nothing else changed.
    assert_eq!(
        psql_value(
            &app.db_name,
            "SELECT count(*) FROM tasks WHERE status = 'FAILED'"
        ),
        "16"
    );
    assert_eq!(
        psql_value(
            &app.db_name,
            "SELECT count(*) FROM tasks WHERE status <> 'FAILED'"
        ),
        "0"
    );
    assert_eq!(
        psql_value(&app.db_name, "SELECT count(*) FROM subtasks"),
        "0"
    );
    assert_eq!(
        psql_value(&app.db_name, "SELECT count(*) FROM credential_versions"),
        "1"
    );
    assert!(ssh_login(&account.username, &account.password));
    app.assert_logs_free_of(&[secret, "4242424242", &account.password]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_needs_a_token_with_the_right_scope() {
    let app = TestApp::spawn().await;
    let (status, _) = app.get("/healthz", None).await;
    assert_eq!(status, 200);
    let (status, body) = app.get("/v1/credentials/tasks", None).await;
    assert_eq!(status, 401);
    assert_eq!(body["errorCode"], "UNAUTHORIZED");
    let (status, _) = app.get("/v1/credentials/tasks", Some("wrong-token")).await;
    assert_eq!(status, 401);
    let (status, body) = app
        .get("/v1/credentials/tasks", Some(&app.view_token))
        .await;
    assert_eq!(status, 403, "credentials:view does not grant tasks:view");
    assert_eq!(body["errorCode"], "FORBIDDEN");
    let (status, body) = app
        .get("/v1/credentials/tasks?pageSize=5", Some(&app.token))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["pageMetadata"]["pageSize"], 5);
    assert_eq!(body["pageMetadata"]["totalElements"], 0);
    let (status, body) = app
        .get("/v1/credentials/tasks/not-a-uuid", Some(&app.token))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["errorCode"], "INVALID_REQUEST");
    let (status, _) = app
        .get(
            &format!("/v1/credentials/tasks/{}", uuid::Uuid::new_v4()),
            Some(&app.token),
        )
        .await;
    assert_eq!(status, 404);
}

/// A JSON body of about `bytes` bytes.
fn json_padding(bytes: usize) -> serde_json::Value {
    serde_json::json!({ "padding": "x".repeat(bytes) })
}
