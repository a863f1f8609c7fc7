//! Every link over TLS (SPEC section 8): the API over HTTPS, the broker over amqps://,
//! PostgreSQL with verify-full, each against the CA scripts/tls.sh made; a CA that
//! did not sign the server is refused with one clear line; health stays on its own
//! plain listener.

use std::process::Command;
use std::time::Duration;

use crate::helpers::*;

fn tls_options(ca: &str) -> Options {
    Options {
        tls: Some(ca.to_string()),
        http: "ops_listen = \"127.0.0.1:0\"\n".into(),
        ..Default::default()
    }
}

/// `rotor run` with this configuration, expected to stop on its own within 60 s.
fn run_expecting_exit(app: &TestApp) -> Output {
    let out = Command::new("timeout")
        .args(["60", ROTOR, "--config", app.config.to_str().unwrap(), "run"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotor_rotates_with_every_link_over_tls() {
    let bed = tls_bed();
    let app = TestApp::spawn_with(tls_options(&bed.ca)).await;
    assert!(app.http.starts_with("https://"), "{}", app.http);
    let account = Account::create("rtittl");
    let resource = format!("tls-{}", app.id);
    let out = app.apply_inventory(&resource, &testbed().host_key_fpr, &[&account]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Over HTTPS, trusting the test CA.
    let rotate = serde_json::json!({"operationType": "ROTATE", "elements": [{"resourceId": resource, "resourceType": "LINUX", "credentials": [{"username": account.username}]}]});
    let (status, task) = app
        .send("PATCH", "/v1/credentials", Some(&app.token), Some(rotate))
        .await;
    assert_eq!(status, 202, "{task}");
    let done = app
        .wait_task(task["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(done["status"], "SUCCESSFUL", "{done:#}");
    let new = app.reveal(&resource, &account.username);
    assert!(ssh_login(&account.username, &new));
    assert!(!ssh_login(&account.username, &account.password));
    // And over AMQP: the intake reads the broker over amqps.
    let reply = app
        .publish_and_reply(
            "credentials.update",
            &rotate_spec(&resource, &[&account.username]),
        )
        .await;
    let done = app
        .wait_task(reply["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(done["status"], "SUCCESSFUL", "{done:#}");
    // rotor's every database session is encrypted.
    let sessions = psql_value(
        "test",
        &format!("SELECT string_agg(s.ssl::text, ',') FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.datname = '{}' AND a.application_name = 'rotor'", app.db_name),
    );
    assert!(
        !sessions.is_empty() && sessions.split(',').all(|s| s == "true"),
        "sessions: {sessions}"
    );
    // Plain HTTP is not served on the API port, and a client trusting another CA is refused.
    let plain = reqwest::Client::new()
        .get(app.http.replace("https://", "http://") + "/v1/credentials")
        .bearer_auth(&app.token)
        .send()
        .await;
    assert!(
        plain.is_err() || plain.unwrap().status() == 400,
        "plain HTTP must not reach the API"
    );
    let other_ca = reqwest::Certificate::from_pem(&std::fs::read(&bed.wrong_ca).unwrap()).unwrap();
    let wrong = reqwest::Client::builder()
        .add_root_certificate(other_ca)
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    let err = wrong
        .get(format!("{}/v1/credentials", app.http))
        .send()
        .await
        .expect_err("the wrong CA must not verify the server");
    assert!(format!("{err:?}").contains("UnknownIssuer"), "{err:?}");
    // Health and metrics are on the ops listener only.
    let ops = app.ops.clone().expect("an ops listener");
    let (status, _) = app.get("/metrics", None).await;
    assert_eq!(status, 404);
    let metrics = reqwest::get(format!("{ops}/metrics")).await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics
        .text()
        .await
        .unwrap()
        .contains("rotor_broker_connected 1"));
    let readyz = reqwest::get(format!("{ops}/readyz")).await.unwrap();
    assert_eq!(readyz.status(), 200);
    let api = reqwest::get(format!("{ops}/v1/credentials")).await.unwrap();
    assert_eq!(api.status(), 404, "the API is not on the ops listener");
    app.assert_logs_free_of(&[&new, &account.password]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_is_refused_with_one_clear_line() {
    let bed = tls_bed();
    let mut app = TestApp::spawn_with(tls_options(&bed.ca)).await;
    app.stop();
    let good = std::fs::read_to_string(&app.config).unwrap();
    let ca_line = format!("ca_file = \"{}\"", bed.ca);
    let wrong_line = format!("ca_file = \"{}\"", bed.wrong_ca);
    let (database, amqp) = good.split_once("[amqp]").unwrap();
    for (link, config, expected) in [
        (
            "database",
            format!("{}[amqp]{amqp}", database.replace(&ca_line, &wrong_line)),
            "cannot connect to the database",
        ),
        (
            "broker",
            format!("{database}[amqp]{}", amqp.replace(&ca_line, &wrong_line)),
            "cannot connect to the broker over TLS",
        ),
    ] {
        std::fs::write(&app.config, config).unwrap();
        let out = run_expecting_exit(&app);
        assert_eq!(out.code, 1, "{link}: {}", out.stderr);
        let line = out
            .stderr
            .lines()
            .filter(|l| l.starts_with("rotor: "))
            .collect::<Vec<_>>();
        assert_eq!(line.len(), 1, "{link}: {}", out.stderr);
        assert!(
            line[0].contains(expected) && line[0].contains("UnknownIssuer"),
            "{link}: {}",
            line[0]
        );
    }
    // A listener off loopback without TLS is refused unless plain HTTP is allowed outright.
    std::fs::write(
        &app.config,
        good.replace("listen = \"127.0.0.1:0\"\n", "listen = \"0.0.0.0:0\"\n")
            .replace("tls_cert_file", "# tls_cert_file")
            .replace("tls_key_file", "# tls_key_file"),
    )
    .unwrap();
    let out = app.cli(&["config", "check"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("http.listen") && out.stderr.contains("not loopback"),
        "{}",
        out.stderr
    );
    let text = std::fs::read_to_string(&app.config)
        .unwrap()
        .replace("[http]\n", "[http]\nallow_plaintext = true\n");
    std::fs::write(&app.config, text).unwrap();
    let out = app.cli(&["config", "check"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}
