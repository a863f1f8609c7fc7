//! The command line as SPEC section 2 gives it: exit codes, one-line errors naming the
//! key, the inventory round trip, a spec file enqueued and followed to its end, policy
//! checks that list every broken rule; and `rotor run` under systemd's notify protocol.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

/// An expected error: exit 1, one line on stderr naming `needle`, no Rust internals.
fn assert_one_line_error(out: &Output, needle: &str) {
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stderr.trim_end().lines().count(),
        1,
        "one line: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains(needle),
        "names `{needle}`: {}",
        out.stderr
    );
    for internal in ["panicked", "backtrace", "Error {", "Some("] {
        assert!(
            !out.stderr.contains(internal),
            "no Debug dump: {}",
            out.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_answers_as_the_spec_says() {
    let app = TestApp::spawn().await;

    // Configuration: fine as it is; an unknown key (here from the environment) is named
    // with its path; a wrong value too; a misspelt command is a usage error (exit 2).
    let ok = app.cli(&["config", "check"]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(ok.stdout.contains("core dumps: off"), "{}", ok.stdout);
    // The daemon too: no core file can be written of it.
    let pid = app.pid().expect("the daemon runs");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>();
    assert_eq!(&core[4..6], &["0", "0"], "{limits}");
    // Files others may read or write, and weak tokens, are refused with the file named.
    let token = app.dir.join("admin.token");
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    assert_one_line_error(&app.cli(&["config", "check"]), "anyone may read it");
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o660)).unwrap();
    assert_one_line_error(
        &app.cli(&["config", "check"]),
        "group or others may write it",
    );
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let weak = app.dir.join("weak.token");
    write_private(&weak, "letmein-letmein");
    assert_one_line_error(
        &app.cli_with_env(
            &["config", "check"],
            &[(
                "ROTOR_HTTP__TOKEN",
                &format!(
                    "[{{name = \"w\", token_file = \"{}\", scopes = []}}]",
                    weak.display()
                ),
            )],
        ),
        "too weak",
    );
    assert_one_line_error(
        &app.cli_with_env(&["config", "check"], &[("ROTOR_WORKER__CONCURENCY", "3")]),
        "worker.concurency",
    );
    assert_one_line_error(
        &app.cli_with_env(&["config", "check"], &[("ROTOR_WORKER__PER_HOST", "0")]),
        "worker.per_host",
    );
    let usage = app.cli(&["task", "shwo"]);
    assert_eq!(usage.code, 2, "{usage:?}");

    // The inventory: applied, listed, applied again without a change.
    let account = Account::create("rtitcli");
    let resource = format!("cli-{}", app.id);
    let first = app.apply_inventory(&resource, &testbed().host_key_fpr, &[&account]);
    assert_eq!(first.code, 0, "{first:?}");
    assert!(
        first
            .stdout
            .contains(&format!("resource {resource}: created")),
        "{}",
        first.stdout
    );
    let again = app.apply_inventory(&resource, &testbed().host_key_fpr, &[&account]);
    assert_eq!(
        (again.code, again.stdout.trim()),
        (0, "no changes"),
        "{again:?}"
    );
    let listed = app.cli(&["resource", "list", "--json"]);
    let listed: Value =
        serde_json::from_str(&listed.stdout).unwrap_or_else(|e| panic!("{e}: {listed:?}"));
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == resource.as_str()),
        "{listed:#}"
    );
    let creds = app.cli(&["credential", "list", "--resource", &resource, "--json"]);
    assert_eq!(creds.code, 0, "{creds:?}");
    assert!(
        creds.stdout.contains(&account.username) && !creds.stdout.contains(&account.password),
        "{}",
        creds.stdout
    );
    assert_one_line_error(
        &app.cli(&[
            "credential",
            "reveal",
            "--resource",
            &resource,
            "--username",
            "nobody",
        ]),
        "nobody",
    );

    // A CredentialsUpdateSpec file, published as it is; its id followed to the end.
    let spec = app.dir.join("rotate.json");
    std::fs::write(&spec, rotate_spec(&resource, &[&account.username])).unwrap();
    let enqueued = app.cli(&["enqueue", "spec", spec.to_str().unwrap()]);
    assert_eq!(enqueued.code, 0, "{enqueued:?}");
    let id = enqueued.stdout.trim().to_string();
    assert!(
        uuid::Uuid::parse_str(&id).is_ok(),
        "only the task id on stdout: {}",
        enqueued.stdout
    );
    let watched = app.cli(&["task", "watch", &id]);
    assert_eq!(watched.code, 0, "{watched:?}");
    let shown = app.cli(&["task", "show", &id]);
    let task: Value =
        serde_json::from_str(&shown.stdout).unwrap_or_else(|e| panic!("{e}: {shown:?}"));
    assert_eq!(task["status"], "SUCCESSFUL", "{task:#}");
    let table = app.cli(&["task", "list"]);
    assert!(table.stdout.contains(&id), "{}", table.stdout);
    let new = app.reveal(&resource, &account.username);
    assert!(
        ssh_login(&account.username, &new),
        "the new password logs in"
    );
    assert!(
        !ssh_login(&account.username, &account.password),
        "the old one is refused"
    );
    // A refused spec: exit 1, the error code named, nothing rotated.
    std::fs::write(&spec, rotate_spec(&resource, &["ghost"])).unwrap();
    let refused = app.cli(&["enqueue", "spec", spec.to_str().unwrap()]);
    assert_one_line_error(&refused, "CREDENTIAL_NOT_FOUND");
    assert_eq!(app.reveal(&resource, &account.username), new);

    // Policies: a generated password complies; a weak one is refused with every broken
    // rule, and the password itself is never echoed.
    let generated = app.cli(&["policy", "generate", "linux", "-n", "1"]);
    assert_eq!(generated.code, 0, "{generated:?}");
    let good = app.cli_with_stdin(&["policy", "check", "linux"], Some(&generated.stdout));
    assert_eq!(good.code, 0, "{good:?}");
    let weak = "aaaa";
    let bad = app.cli_with_stdin(&["policy", "check", "linux"], Some(&format!("{weak}\n")));
    assert_eq!(bad.code, 1, "{bad:?}");
    let report = format!("{}{}", bad.stdout, bad.stderr);
    for rule in ["TOO_SHORT", "MIN_UPPER", "MIN_DIGIT", "MIN_SPECIAL"] {
        assert!(report.contains(rule), "{rule} in {report}");
    }
    assert!(!report.contains(weak), "{report}");
}

/// Under systemd (`Type=notify`, `WatchdogSec=`): READY once it serves, watchdog pings
/// at half the interval, STOPPING on SIGTERM. The test plays systemd: it owns the notify
/// socket and starts rotor with WATCHDOG_PID set to rotor's own pid (`exec` keeps it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotor_run_tells_systemd_it_is_ready_alive_and_stopping() {
    let mut app = TestApp::spawn().await;
    app.stop();
    let path = app.dir.join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let next = || {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a notification within 30 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    struct Daemon(std::process::Child);
    impl Drop for Daemon {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut daemon = Daemon(
        Command::new("sh")
            .args([
                "-c",
                "WATCHDOG_PID=$$ exec \"$0\" --config \"$1\" run",
                ROTOR,
                app.config.to_str().unwrap(),
            ])
            .env("NOTIFY_SOCKET", &path)
            .env("WATCHDOG_USEC", "1000000")
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(next().contains("READY=1"));
    // Two pings within a watchdog interval and a half: it pings every half interval.
    let started = std::time::Instant::now();
    assert!(next().contains("WATCHDOG=1"));
    assert!(next().contains("WATCHDOG=1"));
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.0.id().to_string()])
        .status();
    let mut seen = Vec::new();
    while !seen.iter().any(|m: &String| m.contains("STOPPING=1")) {
        seen.push(next());
    }
    let status = daemon.0.wait().unwrap();
    assert!(status.success(), "a clean exit after SIGTERM: {status}");
}
