//! `/metrics` as an operator graphs it: stage histograms, rotations by outcome and
//! errorCode, intake by kind and outcome, runnable subtasks, scheduler lag; and the
//! Grafana dashboard and alert rules under contrib/ name only metrics a live rotor has.

use std::collections::HashSet;
use std::time::Duration;

use crate::helpers::*;

async fn scrape(app: &TestApp) -> (String, String) {
    let resp = reqwest::get(format!("{}/metrics", app.http)).await.unwrap();
    let kind = resp.headers()["content-type"].to_str().unwrap().to_string();
    (kind, resp.text().await.unwrap())
}

/// The value of the sample whose line starts with `prefix` (name and labels).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .map(|v| v.trim().parse().unwrap())
}

/// Metric names a PromQL or rules file uses, reduced to their families.
fn families_used(text: &str) -> HashSet<String> {
    let mut found = HashSet::new();
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i + 6 <= bytes.len() {
        let at_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == '_');
        if at_word && bytes[i..].starts_with(&['r', 'o', 't', 'o', 'r', '_']) {
            let name: String = bytes[i..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                .collect();
            i += name.len();
            let family = ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name)
                .to_string();
            found.insert(family);
        } else {
            i += 1;
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_stages_rotations_intake_and_lag_and_contrib_names_only_live_ones() {
    let app = TestApp::spawn_with(Options {
        // No tick: the due credential below stays due, so the lag shows.
        scheduler: "enabled = false\nheartbeat_tick = \"\"".into(),
        ..Options::default()
    })
    .await;
    let (a, b) = (Account::create("rtitm"), Account::create("rtitm"));
    let resource = format!("met-{}", app.id);
    let out = app.apply_inventory(&resource, &testbed().host_key_fpr, &[&a, &b]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    let reply = app
        .publish_and_reply(
            "credentials.update",
            &rotate_spec(&resource, &[&a.username]),
        )
        .await;
    let task = app
        .wait_task(reply["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(task["status"], "SUCCESSFUL", "{task:#}");
    let new = app.reveal(&resource, &a.username);
    assert!(
        ssh_login(&a.username, &new),
        "the counted rotation happened on the target"
    );
    assert!(!ssh_login(&a.username, &a.password));
    let refused = app
        .publish_and_reply(
            "credentials.update",
            &rotate_spec(&resource, &["no-such-account"]),
        )
        .await;
    assert_eq!(refused["status"], "FAILED");
    // b was due an hour ago and nothing ticks.
    psql(
        &app.db_name,
        &format!("UPDATE credentials SET auto_rotate_days = 30, next_rotation_at = now() - interval '1 hour' WHERE username = '{}'", b.username),
    );

    let (kind, text) = scrape(&app).await;
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    let apply = sample(
        &text,
        r#"rotor_stage_duration_seconds_count{stage="APPLY",platform="linux-chpasswd"}"#,
    );
    assert_eq!(apply, Some(1.0), "{text}");
    let verify = sample(
        &text,
        r#"rotor_stage_duration_seconds_sum{stage="VERIFY_NEW",platform="linux-chpasswd"}"#,
    );
    // Both checks share VERIFY_NEW's connection, and the refused login waits out PAM's
    // delay: the time that is spent there shows there.
    assert!(verify.is_some_and(|s| s > 0.5), "{text}");
    assert_eq!(
        sample(
            &text,
            r#"rotor_rotations_total{outcome="SUCCESSFUL",error_code=""}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"rotor_intake_messages_total{kind="credentials.update",outcome="accepted"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"rotor_intake_messages_total{kind="credentials.update",outcome="refused"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "rotor_subtasks_runnable"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(sample(&text, "rotor_tasks_unresolved"), Some(0.0), "{text}");
    assert_eq!(
        sample(&text, r#"rotor_tasks{status="SUCCESSFUL"}"#),
        Some(1.0),
        "{text}"
    );
    let lag = sample(&text, "rotor_scheduler_lag_seconds").unwrap();
    assert!((3500.0..4000.0).contains(&lag), "lag {lag}: {text}");

    // What the dashboard and the alert rules use, a live rotor has.
    let live: HashSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect();
    for file in [
        "contrib/prometheus/rotor-alerts.yml",
        "contrib/grafana/rotor-dashboard.json",
    ] {
        let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
        let used = families_used(&std::fs::read_to_string(&path).unwrap());
        assert!(used.len() >= 8, "{file} names {used:?}");
        let missing: Vec<_> = used.difference(&live).collect();
        assert!(
            missing.is_empty(),
            "{file} names metrics rotor does not have: {missing:?}\n{text}"
        );
    }
    if let Ok(dashboard) = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(format!(
            "{}/contrib/grafana/rotor-dashboard.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    ) {
        assert!(dashboard["panels"]
            .as_array()
            .is_some_and(|p| p.len() >= 10));
    } else {
        panic!("the dashboard is not JSON");
    }
}
