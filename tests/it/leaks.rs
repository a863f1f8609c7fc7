//! The leak suite (SPEC section 8): one run with trace logging through every path a
//! password takes (rotations on linux-chpasswd, linux-passwd, esxi and http, UPDATE, REMEDIATE, `privx.password`, a
//! refused UPDATE, a rotation the target fails, a rekey), then every password generated,
//! supplied or onboarded is searched for in the daemon's logs, a `pg_dump` of its
//! database, the command lines and environments of every process (sampled during the
//! run), and the events, replies and dead letters. None may be found.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::BasicGetOptions;
use serde_json::{json, Value};

use crate::helpers::*;

/// Distinct texts of /proc/*/cmdline and /proc/*/environ, sampled until `stop`.
fn sample_processes(
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<BTreeSet<String>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if let Ok(dir) = std::fs::read_dir("/proc") {
                for entry in dir.flatten() {
                    for file in ["cmdline", "environ"] {
                        if let Ok(bytes) = std::fs::read(entry.path().join(file)) {
                            let text = String::from_utf8_lossy(&bytes).replace('\0', " ");
                            if !text.is_empty() {
                                seen.lock().unwrap().insert(text);
                            }
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_is_found_in_logs_dumps_processes_or_messages() {
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_processes(stop.clone(), seen.clone());

    let mut app = TestApp::spawn().await;
    app.stop();
    // The marker proves the sampler read the daemon's own environment.
    let marker = format!("ROTOR_LEAK_MARKER={}", uuid::Uuid::new_v4().simple());
    let (marker_key, marker_value) = marker.split_once('=').unwrap();
    app.start_with_env(&[("RUST_LOG", "trace"), (marker_key, marker_value)])
        .await;
    let (_events_conn, mut events) = app.events("#").await;
    let mut replies: Vec<Value> = Vec::new();
    let mut supplied: Vec<String> = Vec::new();

    // linux-chpasswd: a, b, c, and one account the host does not have (its rotation fails).
    let (a, b, c) = (
        Account::create("rtitlka"),
        Account::create("rtitlkb"),
        Account::create("rtitlkc"),
    );
    let chp = format!("lk-{}", app.id);
    let ghost = format!("rtitlkg{}", unique());
    let mut inv = resource_toml(&chp, testbed().port, &testbed().host_key_fpr)
        + &app.accounts_toml(&[&a, &b, &c], "");
    inv.push_str(&format!("\n[[resource.account]]\nusername = \"{ghost}\"\n"));
    assert_eq!(app.apply_inventory_text("lk", &inv).code, 0);
    // linux-passwd: d changes its own password.
    let d = Account::create("rtitlkd");
    let pwd = format!("lkp-{}", app.id);
    let inv = resource_toml_on(
        "linux-passwd",
        &pwd,
        testbed().port,
        &testbed().host_key_fpr,
    ) + &app.accounts_toml(&[&d], "");
    assert_eq!(app.apply_inventory_text("lkp", &inv).code, 0);
    // esxi (the admin's `passwd USER` in a PTY) and http (RabbitMQ's management API).
    let e = Account::create_esxi("rtitlke");
    let esx = format!("lke-{}", app.id);
    let inv =
        crate::esxi::resource(crate::esxi::sshd(), &esx, true) + &app.accounts_toml(&[&e], "");
    assert_eq!(app.apply_inventory_text("lke", &inv).code, 0);
    let mq = crate::http_targets::MqUser::create("rtitlkh", "monitoring");
    let mqr = format!("lkh-{}", app.id);
    let inv =
        crate::http_targets::resource(&mqr, &format!("ca_file = \"{}\"", tls_bed().ca), &mq, &app);
    assert_eq!(app.apply_inventory_text("lkh", &inv).code, 0);

    // Rotations on both platforms, and one the target fails.
    replies.push(
        app.publish_and_reply(
            "credentials.update",
            &rotate_spec(&chp, &[&a.username, &ghost]),
        )
        .await,
    );
    replies.push(
        app.publish_and_reply("credentials.update", &rotate_spec(&pwd, &[&d.username]))
            .await,
    );
    // UPDATE with a supplied password.
    let p_update = format!("Up8-{}{}-St!", unique(), unique());
    supplied.push(p_update.clone());
    replies.push(
        app.publish_and_reply(
            "credentials.update",
            &spec(
                "UPDATE",
                &chp,
                json!([{"username": b.username, "password": p_update}]),
            ),
        )
        .await,
    );
    // REMEDIATE with the password someone set behind rotor's back.
    let p_remediate = format!("Rem-{}{}-Pw9", unique(), unique());
    supplied.push(p_remediate.clone());
    c.set_password_on_host(&p_remediate);
    replies.push(
        app.publish_and_reply(
            "credentials.update",
            &spec(
                "REMEDIATE",
                &chp,
                json!([{"username": c.username, "password": p_remediate}]),
            ),
        )
        .await,
    );
    // privx.password: stored as current, target untouched.
    let p_privx = format!("Pvx-{}{}-Pw7", unique(), unique());
    supplied.push(p_privx.clone());
    replies.push(
        app.publish_and_reply(
            "privx.password",
            &serde_json::to_vec(
                &json!({"host_id": pwd, "account": d.username, "password": p_privx}),
            )
            .unwrap(),
        )
        .await,
    );
    // A refused UPDATE (too weak) and one naming an account rotor does not know.
    let p_weak = format!("w{}", unique());
    let p_unknown = format!("Unk-{}{}-Pw5", unique(), unique());
    supplied.extend([p_weak.clone(), p_unknown.clone()]);
    replies.push(
        app.publish_and_reply(
            "credentials.update",
            &spec(
                "UPDATE",
                &chp,
                json!([{"username": a.username, "password": p_weak}]),
            ),
        )
        .await,
    );
    replies.push(
        app.publish_and_reply(
            "credentials.update",
            &spec(
                "UPDATE",
                &chp,
                json!([{"username": "nobody-here", "password": p_unknown}]),
            ),
        )
        .await,
    );
    replies.push(
        app.publish_and_reply(
            "credentials.update",
            &crate::esxi::rotate(&esx, &e.username),
        )
        .await,
    );
    replies.push(
        app.publish_and_reply(
            "credentials.update",
            &crate::http_targets::rotate(&mqr, &mq.name),
        )
        .await,
    );
    let mut ended = Vec::new();
    for r in &replies {
        let task = if r["status"] == "FAILED" {
            r.clone()
        } else {
            app.wait_task(r["id"].as_str().unwrap(), Duration::from_secs(120))
                .await
        };
        ended.push(task["status"].as_str().unwrap().to_string());
    }
    // Every path ran: the ghost's rotation failed on the target, its sibling's succeeded.
    assert_eq!(
        ended,
        [
            "FAILED",
            "SUCCESSFUL",
            "SUCCESSFUL",
            "SUCCESSFUL",
            "SUCCESSFUL",
            "FAILED",
            "FAILED",
            "SUCCESSFUL",
            "SUCCESSFUL"
        ]
    );
    assert_eq!(psql_value(&app.db_name, &format!("SELECT count(*) FROM credential_versions v JOIN credentials c ON c.id = v.credential_id WHERE c.username = '{}'", a.username)), "2");
    // A rekey under a new key.
    let out = app.cli(&[
        "keygen",
        "--out",
        app.dir.join("master-2.key").to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let config = std::fs::read_to_string(&app.config).unwrap().replace(
        "master_key_file = \"master.key\"",
        "master_key_files = [\"master-2.key\", \"master.key\"]",
    );
    std::fs::write(&app.config, config).unwrap();
    app.stop();
    app.start_with_env(&[("RUST_LOG", "trace"), (marker_key, marker_value)])
        .await;
    let rekey = app.cli(&["vault", "rekey"]);
    assert_eq!(rekey.code, 0, "{}", rekey.stderr);
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();

    // Every password the vault holds, every version (what rotor generated, onboarded or was given).
    let mut passwords: BTreeSet<String> = supplied.into_iter().collect();
    passwords.extend([&a, &b, &c, &d, &e].iter().map(|x| x.password.clone()));
    passwords.insert(mq.password.clone());
    let rows = psql_value(&app.db_name, "SELECT string_agg(c.resource_id || ' ' || c.username || ' ' || v.version, ',') FROM credential_versions v JOIN credentials c ON c.id = v.credential_id");
    for row in rows.split(',') {
        let [resource, username, version] = row.split(' ').collect::<Vec<_>>()[..] else {
            panic!("{row}")
        };
        let out = app.cli(&[
            "credential",
            "reveal",
            "--resource",
            resource,
            "--username",
            username,
            "--version",
            version,
        ]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        passwords.insert(out.stdout.trim_end_matches('\n').to_string());
    }
    assert!(
        passwords.len() >= 16,
        "the run made and took passwords: {}",
        passwords.len()
    );

    // Where they must not be.
    let mut haystacks: Vec<(String, String)> =
        vec![("the daemon's log".into(), app.logs().join("\n"))];
    let dump = std::process::Command::new("pg_dump")
        .args(["-h", "127.0.0.1", "-U", "postgres", &app.db_name])
        .output()
        .unwrap();
    assert!(dump.status.success());
    haystacks.push((
        "pg_dump".into(),
        String::from_utf8_lossy(&dump.stdout).into_owned(),
    ));
    haystacks.push((
        "/proc/*/cmdline and environ".into(),
        seen.lock()
            .unwrap()
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
    ));
    haystacks.push(("replies".into(), serde_json::to_string(&replies).unwrap()));
    haystacks.push((
        "the rekey's output".into(),
        format!("{}{}", rekey.stdout, rekey.stderr),
    ));
    let mut published = Vec::new();
    while let Ok(Some(Ok(d))) =
        tokio::time::timeout(Duration::from_millis(500), events.next()).await
    {
        published.push(String::from_utf8_lossy(&d.data).into_owned());
    }
    assert!(
        published.len() > 10,
        "events were published: {}",
        published.len()
    );
    haystacks.push(("events".into(), published.join("\n")));
    let conn = app.amqp().await;
    let ch = conn.create_channel().await.unwrap();
    let mut letters = Vec::new();
    while let Some(m) = ch
        .basic_get(
            &format!("rotor.requests.dead-{}", app.id),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
    {
        letters.push(format!(
            "{:?} {}",
            m.delivery.properties.headers(),
            String::from_utf8_lossy(&m.delivery.data)
        ));
    }
    assert_eq!(
        letters.len(),
        2,
        "the two refused requests were dead-lettered"
    );
    haystacks.push(("dead letters".into(), letters.join("\n")));
    assert!(
        haystacks[2].1.contains("rotor.toml run"),
        "the sampler saw the daemon's command line"
    );
    assert!(
        haystacks[2].1.contains(&marker),
        "the sampler read the daemon's environment"
    );
    assert!(
        haystacks[1].1.contains("COPY public.credential_versions"),
        "the dump holds the vault's table"
    );
    let trace_lines = app
        .logs()
        .iter()
        .filter(|l| l.contains("\"level\":\"TRACE\""))
        .count();
    assert!(
        trace_lines > 100,
        "the daemon logged at trace level: {trace_lines} lines"
    );
    let mut found = Vec::new();
    for p in &passwords {
        for (place, text) in &haystacks {
            if text.contains(p.as_str()) {
                found.push(format!("a password ({} chars) in {place}", p.len()));
            }
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}
