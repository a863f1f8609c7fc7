//! The long proofs of RELIABILITY.md. Ignored by default: `scripts/reliability.sh`
//! runs them one at a time (two of them restart RabbitMQ or PostgreSQL, which would
//! disturb any other test running beside them).

use std::process::Command;
use std::time::{Duration, Instant};

use rand::{Rng, TryRngCore};

use crate::helpers::*;
use crate::reliability::check_account;

/// Several "hosts" (sshd instances with their own host keys and ports), each with
/// its own accounts, in the app's inventory.
struct Fleet {
    _hosts: Vec<ExtraSshd>,
    accounts: Vec<(String, Account)>,
}

fn fleet(app: &TestApp, hosts: usize, per_host: usize) -> Fleet {
    let mut all_hosts = Vec::new();
    let mut accounts = Vec::new();
    for h in 0..hosts {
        let sshd = ExtraSshd::start();
        let resource = format!("host{h}-{}", app.id);
        let mine: Vec<Account> = (0..per_host).map(|_| Account::create("rtitp")).collect();
        let refs: Vec<&Account> = mine.iter().collect();
        let out = app.apply_inventory_at(&resource, sshd.port, &sshd.host_key_fpr, &refs);
        assert_eq!(out.code, 0, "{}", out.stderr);
        accounts.extend(mine.into_iter().map(|a| (resource.clone(), a)));
        all_hosts.push(sshd);
    }
    Fleet {
        _hosts: all_hosts,
        accounts,
    }
}

/// Checks every account on the target (16 at a time: a refused login waits ~3 s).
/// Returns the problems found; an empty list means no password was lost.
fn check_all(app: &TestApp, fleet: &Fleet) -> Vec<String> {
    let mut problems = Vec::new();
    for chunk in fleet.accounts.chunks(16) {
        problems.extend(std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|(r, a)| s.spawn(move || check_account(app, r, a).err()))
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        }));
    }
    problems
}

fn rotations(fleet: &Fleet, n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let (resource, account) = &fleet.accounts[i % fleet.accounts.len()];
            (
                uuid::Uuid::new_v4().to_string(),
                rotate_spec(resource, &[&account.username]),
            )
        })
        .collect()
}

fn task_counts(app: &TestApp) -> String {
    psql_value(&app.db_name, "SELECT string_agg(status || '=' || n, ' ') FROM (SELECT status, count(*) n FROM tasks GROUP BY 1 ORDER BY 1) t")
}

fn overlapping_applies(app: &TestApp) -> String {
    psql_value(
        &app.db_name,
        "SELECT count(*) FROM stages a JOIN subtasks sa ON sa.id = a.subtask_id
           JOIN subtasks sb ON sb.credential_id = sa.credential_id AND sb.id > sa.id
           JOIN stages b ON b.subtask_id = sb.id AND b.name = 'APPLY'
          WHERE a.name = 'APPLY' AND a.started_at IS NOT NULL AND b.started_at IS NOT NULL
            AND tstzrange(a.started_at, COALESCE(a.completed_at, 'infinity')) && tstzrange(b.started_at, COALESCE(b.completed_at, 'infinity'))",
    )
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: scripts/reliability.sh"]
async fn random_kills_during_a_batch_lose_no_password() {
    let n = env_usize("ROTOR_PROOF_ROTATIONS", 200);
    let mut app = TestApp::spawn_with(Options {
        instance_id: true,
        lease_seconds: 10,
        concurrency: 16,
        max_attempts: 5,
        ..Default::default()
    })
    .await;
    let fleet = fleet(&app, 4, 10);
    let started = Instant::now();
    let confirmed = app.publish_confirmed(&rotations(&fleet, n)).await;
    assert_eq!(confirmed.len(), n);
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let open = psql_value(
            &app.db_name,
            "SELECT count(*) FROM tasks WHERE status IN ('PENDING', 'IN_PROGRESS')",
        );
        let made = psql_value(&app.db_name, "SELECT count(*) FROM tasks");
        if open == "0" && made == n.to_string() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tasks still open: {}",
            task_counts(&app)
        );
        let wait = rand::rngs::OsRng.unwrap_err().random_range(1_000..6_000);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        app.kill9();
        kills += 1;
        app.start().await;
    }
    let problems = check_all(&app, &fleet);
    eprintln!(
        "PROOF random-kills: rotations={n} accounts={} hosts=4 kills={kills} tasks: {} lost={} problems={problems:?} elapsed={:?}",
        fleet.accounts.len(),
        task_counts(&app),
        problems.iter().filter(|p| p.contains("LOST")).count(),
        started.elapsed()
    );
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(
        psql_value(
            &app.db_name,
            "SELECT count(*) FROM tasks WHERE status <> 'SUCCESSFUL'"
        ),
        "0",
        "{}",
        task_counts(&app)
    );
    assert_eq!(overlapping_applies(&app), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: scripts/reliability.sh"]
async fn two_processes_share_the_work_without_overlapping() {
    let n = env_usize("ROTOR_PROOF_REQUESTS", 500);
    let mut app = TestApp::spawn_with(Options {
        concurrency: 16,
        max_attempts: 5,
        ..Default::default()
    })
    .await;
    app.start_sibling().await;
    let fleet = fleet(&app, 2, 10);
    let mut messages = rotations(&fleet, n - n / 10);
    // Duplicates: one request in ten is published again with the same message_id.
    let dups: Vec<_> = messages.iter().step_by(9).take(n / 10).cloned().collect();
    messages.extend(dups);
    let started = Instant::now();
    let confirmed = app.publish_confirmed(&messages).await;
    assert_eq!(confirmed.len(), n);
    let unique = n - n / 10;
    app.wait_all_tasks(Duration::from_secs(1800)).await;
    let tasks = psql_value(&app.db_name, "SELECT count(*) FROM tasks");
    let overlaps = overlapping_applies(&app);
    let problems = check_all(&app, &fleet);
    eprintln!(
        "PROOF two-processes: published={n} unique={unique} tasks={tasks} overlapping_applies={overlaps} tasks: {} lost={} problems={problems:?} elapsed={:?}",
        task_counts(&app),
        problems.iter().filter(|p| p.contains("LOST")).count(),
        started.elapsed()
    );
    assert_eq!(tasks, unique.to_string(), "one task per message_id");
    assert_eq!(overlaps, "0");
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(
        psql_value(
            &app.db_name,
            "SELECT count(*) FROM tasks WHERE status <> 'SUCCESSFUL'"
        ),
        "0",
        "{}",
        task_counts(&app)
    );
    // Both processes did part of the work, and every rotation was committed exactly once.
    let commits: Vec<String> = app
        .logs()
        .iter()
        .filter(|l| l.contains("password rotation committed"))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["span"]["worker_id"].as_str().map(String::from))
        .collect();
    let processes: std::collections::HashSet<&String> = commits.iter().collect();
    eprintln!(
        "PROOF two-processes: commits={} by {} processes",
        commits.len(),
        processes.len()
    );
    assert_eq!(commits.len(), unique, "every rotation committed once");
    assert_eq!(processes.len(), 2, "both processes rotated");
}

fn rabbitmq_restart() {
    for args in [["stop_app"], ["start_app"]] {
        let out = Command::new("rabbitmqctl")
            .args(args)
            .output()
            .expect("rabbitmqctl");
        assert!(
            out.status.success(),
            "rabbitmqctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long, restarts RabbitMQ: scripts/reliability.sh"]
async fn broker_restarts_lose_no_confirmed_request() {
    let n = env_usize("ROTOR_PROOF_REQUESTS", 1000);
    let app = TestApp::spawn_with(Options {
        concurrency: 16,
        max_attempts: 5,
        ..Default::default()
    })
    .await;
    let fleet = fleet(&app, 2, 25);
    let messages = rotations(&fleet, n);
    let started = Instant::now();
    // Publishing is paced over about 20 s so that both restarts fall inside it.
    let restarts = std::thread::spawn(|| {
        for _ in 0..2 {
            std::thread::sleep(Duration::from_secs(5));
            rabbitmq_restart();
        }
    });
    let pace = Duration::from_millis(20_000 / n.max(1) as u64);
    let (confirmed, reconnects) = app.publish_confirmed_paced(&messages, pace).await;
    restarts.join().unwrap();
    let published = started.elapsed();
    // Every confirmed message becomes exactly one task (unconfirmed ones were published again).
    let deadline = Instant::now() + Duration::from_secs(300);
    while psql_value(&app.db_name, "SELECT count(*) FROM tasks") != confirmed.len().to_string() {
        assert!(
            Instant::now() < deadline,
            "only {} tasks for {} confirmed messages",
            psql_value(&app.db_name, "SELECT count(*) FROM tasks"),
            confirmed.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let keys = psql_value(
        &app.db_name,
        "SELECT count(DISTINCT request_key) FROM tasks",
    );
    app.wait_all_tasks(Duration::from_secs(1800)).await;
    let problems = check_all(&app, &fleet);
    eprintln!(
        "PROOF broker-restarts: messages={n} confirmed={} tasks={keys} restarts=2 publisher_reconnects={reconnects} publish_time={published:?} tasks: {} lost={} elapsed={:?}",
        confirmed.len(),
        task_counts(&app),
        problems.iter().filter(|p| p.contains("LOST")).count(),
        started.elapsed()
    );
    assert_eq!(confirmed.len(), n);
    assert_eq!(keys, n.to_string());
    assert!(
        reconnects >= 2,
        "the restarts missed the publishing ({reconnects} reconnects)"
    );
    assert_eq!(
        psql_value(
            &app.db_name,
            "SELECT count(*) FROM tasks WHERE status = 'SUCCESSFUL'"
        ),
        n.to_string()
    );
    assert!(problems.is_empty(), "{problems:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long, restarts PostgreSQL: scripts/reliability.sh"]
async fn a_database_restart_mid_batch_loses_nothing() {
    let n = env_usize("ROTOR_PROOF_ROTATIONS", 100);
    let app = TestApp::spawn_with(Options {
        concurrency: 16,
        max_attempts: 5,
        lease_seconds: 10,
        ..Default::default()
    })
    .await;
    let fleet = fleet(&app, 2, 10);
    let started = Instant::now();
    let confirmed = app.publish_confirmed(&rotations(&fleet, n)).await;
    assert_eq!(confirmed.len(), n);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let version = std::fs::read_dir("/etc/postgresql")
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let out = Command::new("pg_ctlcluster")
        .args([
            "--skip-systemctl-redirect",
            version.to_str().unwrap(),
            "main",
            "restart",
        ])
        .output()
        .expect("pg_ctlcluster");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    app.wait_all_tasks(Duration::from_secs(1800)).await;
    let problems = check_all(&app, &fleet);
    eprintln!(
        "PROOF database-restart: rotations={n} tasks: {} lost={} problems={problems:?} elapsed={:?}",
        task_counts(&app),
        problems.iter().filter(|p| p.contains("LOST")).count(),
        started.elapsed()
    );
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(
        psql_value(
            &app.db_name,
            "SELECT count(*) FROM tasks WHERE status <> 'SUCCESSFUL'"
        ),
        "0",
        "{}",
        task_counts(&app)
    );
    assert!(app.logs().iter().any(|l| l.contains("rotation committed")));
}
