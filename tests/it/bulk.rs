//! Bulk rotation in waves: 40 accounts on 4 hosts. With one host broken the canary
//! fails and the rest never start; with all healthy everything rotates.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

async fn wait_bulk(app: &TestApp, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let (status, bulk) = app
            .get(&format!("/v1/rotations/{id}"), Some(&app.token))
            .await;
        assert_eq!(status, 200, "{bulk:#}");
        if bulk["status"] != "RUNNING" {
            return bulk;
        }
        assert!(Instant::now() < deadline, "the bulk did not end: {bulk:#}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_on_a_broken_host_stops_the_bulk_and_a_healthy_one_rotates_everything() {
    let app = TestApp::spawn().await;
    let bed = testbed();
    let accounts: Vec<Account> = (0..40).map(|_| Account::create("rtitbk")).collect();
    let hosts: Vec<String> = (0..4).map(|h| format!("bk{h}-{}", app.id)).collect();
    let fake_key = format!("SHA256:{}", "B".repeat(43));
    let inventory = |broken: bool| -> String {
        hosts
            .iter()
            .enumerate()
            .map(|(h, id)| {
                let key = if broken && h == 2 {
                    &fake_key
                } else {
                    &bed.host_key_fpr
                };
                let mine: Vec<&Account> = accounts[h * 10..h * 10 + 10].iter().collect();
                resource_toml(id, bed.port, key) + &app.accounts_toml(&mine, "")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let out = app.apply_inventory_text("bulk", &inventory(true));
    assert_eq!(out.code, 0, "{}", out.stderr);

    // One host (the third) pins a key its sshd does not have: its canary fails.
    let glob = format!("bk*-{}", app.id);
    let (status, started) = app
        .send(
            "POST",
            "/v1/rotations",
            Some(&app.token),
            Some(json!({"resources": [glob], "canary": 4, "maxFailures": 0})),
        )
        .await;
    assert_eq!(status, 202, "{started:#}");
    assert_eq!(started["total"], 40);
    let sizes: Vec<i64> = started["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["size"].as_i64().unwrap())
        .collect();
    assert_eq!(sizes, [4, 8, 16, 12], "a canary, then waves twice as large");
    let bulk = wait_bulk(&app, started["id"].as_str().unwrap()).await;
    assert_eq!(bulk["status"], "STOPPED", "{bulk:#}");
    // The failure stopped it: the canary's subtasks that had not started were cancelled,
    // those already under way finished.
    assert_eq!(bulk["failed"], 1, "{bulk:#}");
    assert_eq!(
        bulk["succeeded"].as_i64().unwrap() + bulk["cancelled"].as_i64().unwrap(),
        3,
        "{bulk:#}"
    );
    assert_eq!(bulk["pending"], 36, "{bulk:#}");
    assert!(bulk["waves"][0]["taskId"].is_string());
    for w in &bulk["waves"].as_array().unwrap()[1..] {
        assert_eq!(w["status"], "NOT_STARTED", "{bulk:#}");
    }
    let canary = app
        .wait_task(
            bulk["waves"][0]["taskId"].as_str().unwrap(),
            Duration::from_secs(10),
        )
        .await;
    let mut rotated = Vec::new();
    for s in canary["subTasks"].as_array().unwrap() {
        let a = accounts
            .iter()
            .find(|a| a.username == s["username"])
            .unwrap();
        let resource = s["resources"][0]["resourceId"]
            .as_str()
            .unwrap()
            .to_string();
        rotated.push((a.username.clone(), resource));
    }
    let canary_hosts: std::collections::BTreeSet<&str> =
        rotated.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(
        canary_hosts.len(),
        4,
        "the canary spreads over the hosts: {rotated:?}"
    );
    // The target itself: the canary's healthy accounts have new passwords, and the rest
    // never started (their first password still logs in).
    for (username, resource) in &rotated {
        let a = accounts.iter().find(|a| &a.username == username).unwrap();
        let status = canary["subTasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["username"] == username.as_str())
            .unwrap()["status"]
            .clone();
        if resource == &hosts[2] || status == "CANCELLED" {
            assert!(
                ssh_login(username, &a.password),
                "{username} ({status}) is untouched"
            );
        } else {
            assert_eq!(status, "SUCCESSFUL");
            let new = app.reveal(resource, username);
            assert!(ssh_login(username, &new), "{username} rotated");
            assert!(
                !ssh_login(username, &a.password),
                "{username}'s old password is refused"
            );
        }
    }
    for a in accounts
        .iter()
        .filter(|a| !rotated.iter().any(|(u, _)| u == &a.username))
    {
        assert!(
            ssh_login(&a.username, &a.password),
            "{} never started",
            a.username
        );
    }

    // Fixed, the same bulk through the CLI: everything rotates.
    let out = app.apply_inventory_text("bulk", &inventory(false));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = app.cli(&[
        "rotate",
        "--resource",
        &glob,
        "--canary",
        "4",
        "--watch",
        "--json",
    ]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let bulk: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(bulk["status"], "SUCCESSFUL", "{bulk:#}");
    assert_eq!(bulk["succeeded"], 40, "{bulk:#}");
    for (i, a) in accounts.iter().enumerate() {
        let new = app.reveal(&hosts[i / 10], &a.username);
        assert!(ssh_login(&a.username, &new), "{} rotated", a.username);
        if i % 10 == 0 {
            assert!(
                !ssh_login(&a.username, &a.password),
                "{}'s first password is refused",
                a.username
            );
        }
    }

    // Bad input is named.
    for (body, field) in [
        (json!({"resources": []}), "resources"),
        (json!({"resources": [glob], "canary": 0}), "canary"),
        (json!({"resources": ["nothing-*"]}), "resources"),
        (
            json!({"resources": [glob], "maxFailureRatio": 2}),
            "maxFailureRatio",
        ),
        (
            json!({"resources": [glob], "accountType": "ROBOT"}),
            "accountType",
        ),
    ] {
        let (status, err) = app
            .send("POST", "/v1/rotations", Some(&app.token), Some(body))
            .await;
        assert_eq!(
            (status, err["context"]["field"].as_str()),
            (400, Some(field)),
            "{err:#}"
        );
    }
    let (status, _) = app
        .get(
            &format!("/v1/rotations/{}", uuid::Uuid::new_v4()),
            Some(&app.token),
        )
        .await;
    assert_eq!(status, 404);
}
