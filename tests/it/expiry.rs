//! Expiry awareness: VCF's expirations API reads each password's OS expiry with
//! `chage -l` on the real host, and the scheduler rotates a password before it expires
//! even when its frequencyInDays is later.

use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{Days, Utc};
use serde_json::{json, Value};

use crate::helpers::*;

fn host(args: &[&str]) {
    let status = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(status.success(), "{args:?}");
}

fn element<'a>(check: &'a Value, username: &str) -> &'a Value {
    check["elements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["username"] == username)
        .unwrap_or_else(|| panic!("no element for {username}: {check:#}"))
}

fn day(offset: i64) -> String {
    let today = Utc::now().date_naive();
    let d = if offset >= 0 {
        today + Days::new(offset as u64)
    } else {
        today - Days::new((-offset) as u64)
    };
    d.format("%Y-%m-%d").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expirations_are_read_on_the_host_and_a_password_is_rotated_before_it_expires() {
    let app = TestApp::spawn_with(Options {
        scheduler: "tick = \"* * * * * *\"\njitter_minutes = 0\nheartbeat_tick = \"\"\nexpiry_tick = \"\"\n".into(),
        ..Options::default()
    })
    .await;
    let bed = testbed();
    let soon = Account::create("rtitexs");
    let later = Account::create("rtitexl");
    let never = Account::create("rtitexn");
    let resource = format!("ex-{}", app.id);
    let text = resource_toml(&resource, bed.port, &bed.host_key_fpr)
        + &app.accounts_toml(&[&soon, &later, &never], "auto_rotate_days = 90\n");
    let out = app.apply_inventory_text(&resource, &text);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let unreachable = format!("exu-{}", app.id);
    let lost = Account::create("rtitexu");
    let out = app.apply_inventory_at(&unreachable, 1, &bed.host_key_fpr, &[&lost]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // A 30-day maximum age: one password changed 27 days ago (expires in 3 days, inside
    // the 7-day margin), one changed today; the third never expires.
    host(&["chage", "-M", "30", "-d", &day(-27), &soon.username]);
    host(&["chage", "-M", "30", &later.username]);
    let planned = credential(&app, &later.username).await["autoRotatePolicy"]["nextSchedule"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        planned.starts_with(&day(90)),
        "90 days out at first: {planned}"
    );

    let (status, started) = app
        .send(
            "POST",
            "/v1/credentials/expirations",
            Some(&app.token),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 202, "{started:#}");
    assert_eq!(started["status"], "IN_PROGRESS");
    let id = started["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let check = loop {
        let (status, check) = app
            .get(
                &format!("/v1/credentials/expirations/{id}"),
                Some(&app.token),
            )
            .await;
        assert_eq!(status, 200, "{check:#}");
        if check["status"] != "IN_PROGRESS" {
            break check;
        }
        assert!(
            Instant::now() < deadline,
            "the check did not end: {check:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(check["status"], "COMPLETED", "{check:#}");
    let e = element(&check, &soon.username);
    assert_eq!(e["expiry"]["expiryDate"], day(3).as_str(), "{e:#}");
    assert_eq!(e["expiry"]["status"], "EXPIRING");
    assert_eq!(e["expiry"]["connectivityStatus"], "ACTIVE");
    assert_eq!(e["id"], e["credentialId"]);
    assert_eq!(e["resource"]["resourceId"], resource.as_str());
    let e = element(&check, &later.username);
    assert_eq!(
        (
            e["expiry"]["expiryDate"].as_str(),
            e["expiry"]["status"].as_str()
        ),
        (Some(day(30).as_str()), Some("ACTIVE")),
        "{e:#}"
    );
    let e = element(&check, &never.username);
    assert_eq!(
        (
            e["expiry"]["expiryDate"].is_null(),
            e["expiry"]["status"].as_str()
        ),
        (true, Some("ACTIVE")),
        "{e:#}"
    );
    let e = element(&check, &lost.username);
    assert_eq!(e["expiry"]["connectivityStatus"], "ERROR", "{e:#}");
    assert_eq!(e["expiry"]["status"], "UNKNOWN");
    assert!(
        e["expiry"]["connectivityErrorDetails"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("REACHABLE"),
        "{e:#}"
    );

    // The later one's next rotation moved from 90 days out to 7 days before its expiry.
    let moved = credential(&app, &later.username).await["autoRotatePolicy"]["nextSchedule"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        moved.starts_with(&day(23)),
        "7 days before the expiry: {moved}"
    );

    // The expiring one is due now: the scheduler rotates it, and the host shows it.
    let deadline = Instant::now() + Duration::from_secs(90);
    let task = loop {
        let id = psql_value(
            &app.db_name,
            "SELECT id FROM tasks WHERE is_auto_rotate LIMIT 1",
        );
        if !id.is_empty() {
            break app.wait_task(&id, Duration::from_secs(90)).await;
        }
        assert!(
            Instant::now() < deadline,
            "no auto-rotation:\n{}",
            app.logs().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(task["status"], "SUCCESSFUL", "{task:#}");
    assert_eq!(
        task["subTasks"][0]["username"],
        soon.username.as_str(),
        "{task:#}"
    );
    let new = app.reveal(&resource, &soon.username);
    assert!(ssh_login(&soon.username, &new), "the new password logs in");
    assert!(
        !ssh_login(&soon.username, &soon.password),
        "the old one is refused"
    );
    let chage = Command::new("chage")
        .args(["-l", &soon.username])
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    let chage = String::from_utf8_lossy(&chage.stdout).to_string();
    let today = Utc::now().date_naive().format("%b %d, %Y").to_string();
    assert!(
        chage.contains(&format!("Last password change\t\t\t\t\t: {today}")),
        "{chage}"
    );
    // Its next turn comes 7 days before the new password's expiry, not 90 days on.
    let next = credential(&app, &soon.username).await["autoRotatePolicy"]["nextSchedule"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(next.starts_with(&day(23)), "{next}");
    assert_eq!(
        psql_value(
            &app.db_name,
            "SELECT count(*) FROM tasks WHERE is_auto_rotate"
        ),
        "1",
        "only the expiring password rotated"
    );

    // Bad input is named.
    for (body, field) in [
        (json!({"domainName": "mgmt"}), "domainName"),
        (json!({"credentialIds": ["nope"]}), "credentialIds[0]"),
        (json!({"credentialIDs": []}), "credentialIDs"),
    ] {
        let (status, err) = app
            .send(
                "POST",
                "/v1/credentials/expirations",
                Some(&app.token),
                Some(body),
            )
            .await;
        assert_eq!(status, 400, "{err:#}");
        assert!(err["message"].as_str().unwrap().contains(field), "{err:#}");
    }
    let (status, _) = app
        .get(
            &format!("/v1/credentials/expirations/{}", uuid::Uuid::new_v4()),
            Some(&app.token),
        )
        .await;
    assert_eq!(status, 404);
    app.assert_logs_free_of(&[&soon.password, &new]);
}
