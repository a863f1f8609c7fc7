//! The postgresql platform on the local PostgreSQL: a role's password rotates by `ALTER
//! ROLE ... PASSWORD` with a SCRAM verifier rotor computes, verified by logging in as the
//! role; the server's log (log_statement = all) never shows a password.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::*;
use crate::reliability::{crash_everywhere, Onboarded, Target};

/// Whether `role` logs in to the local PostgreSQL with `password` (psql, not rotor).
fn pg_login(role: &str, password: &str) -> bool {
    Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            role,
            "-d",
            "postgres",
            "-XAtqc",
            "SELECT 1",
        ])
        .env("PGPASSWORD", password)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

fn server_log() -> String {
    let dir = std::fs::read_dir("/var/log/postgresql").expect("PostgreSQL's log folder");
    let file = dir
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-main.log"))
        .expect("a postgresql-*-main.log");
    String::from_utf8_lossy(&std::fs::read(file).unwrap()).into_owned()
}

/// Roles (and their password files) dropped at the end.
struct Roles(Vec<String>, Vec<String>);

/// A role and its admin on the local PostgreSQL, onboarded as a `postgresql` resource.
fn onboard_role(app: &TestApp) -> Onboarded {
    let tag = &unique()[..6];
    let admin = format!("rtitpga{tag}");
    let role = format!("rtitpgr{tag}");
    let admin_file = format!("{FILES_DIR}/pg-admin-{tag}");
    let role_file = format!("{FILES_DIR}/pg-role-{tag}");
    let roles = Roles(
        vec![role.clone(), admin.clone()],
        vec![admin_file.clone(), role_file.clone()],
    );
    let (admin_pw, role_pw) = (initial_password(), initial_password());
    psql(
        "postgres",
        &format!(
            "CREATE ROLE {admin} LOGIN CREATEROLE PASSWORD '{admin_pw}' IN ROLE rotor_scram_login"
        ),
    );
    psql(
        "postgres",
        &format!("CREATE ROLE {role} LOGIN PASSWORD '{role_pw}' IN ROLE rotor_scram_login"),
    );
    // Every statement of rotor's admin sessions goes to the server's log.
    psql(
        "postgres",
        &format!("ALTER ROLE {admin} SET log_statement = 'all'"),
    );
    write_private(std::path::Path::new(&admin_file), &format!("{admin_pw}\n"));
    write_private(std::path::Path::new(&role_file), &format!("{role_pw}\n"));
    let resource = format!("pg-{}", app.id);
    let text = format!(
        "[[resource]]\nid = \"{resource}\"\nname = \"db.test\"\ntype = \"POSTGRESQL\"\naddress = \"127.0.0.1\"\nport = 5432\nplatform = \"postgresql\"\n\n[resource.admin]\nusername = \"{admin}\"\npassword_file = \"{admin_file}\"\n\n[[resource.account]]\nusername = \"{role}\"\npassword_file = \"{role_file}\"\n"
    );
    let out = app.apply_inventory_text(&resource, &text);
    assert_eq!(out.code, 0, "{}", out.stderr);
    Onboarded {
        resource,
        username: role,
        initial: role_pw,
        keep: Box::new(roles),
    }
}

struct Postgres;

impl Target for Postgres {
    fn onboard(&self, app: &TestApp) -> Onboarded {
        onboard_role(app)
    }

    fn logs_in(&self, username: &str, password: &str) -> bool {
        pg_login(username, password)
    }
}

/// The kill-at-every-stage proof (RELIABILITY.md), once for this platform.
#[test]
fn a_crash_at_any_stage_boundary_loses_no_postgresql_password() {
    crash_everywhere(&Postgres);
}

impl Drop for Roles {
    fn drop(&mut self) {
        for r in &self.0 {
            let _ = Command::new("psql")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-XAtqc",
                ])
                .arg(format!("DROP ROLE IF EXISTS {r}"))
                .stderr(Stdio::null())
                .status();
        }
        for f in &self.1 {
            let _ = std::fs::remove_file(f);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_role_rotates_by_scram_verifier_and_no_password_reaches_the_server() {
    let app = TestApp::spawn().await;
    let onboarded = onboard_role(&app);
    let (resource, role) = (onboarded.resource.clone(), onboarded.username.clone());
    assert!(
        pg_login(&role, &onboarded.initial) && !pg_login(&role, "not-the-password"),
        "the test bed checks passwords"
    );
    let spec = serde_json::to_vec(&serde_json::json!({"operationType": "ROTATE", "elements": [
        {"resourceId": resource, "resourceType": "POSTGRESQL", "credentials": [{"username": role}]}]}))
    .unwrap();
    for round in 0..2 {
        let old = app.reveal(&resource, &role);
        let reply = app.publish_and_reply("credentials.update", &spec).await;
        let task = app
            .wait_task(reply["id"].as_str().unwrap(), Duration::from_secs(60))
            .await;
        assert_eq!(task["status"], "SUCCESSFUL", "round {round}: {task:#}");
        let new = app.reveal(&resource, &role);
        assert_ne!(new, old);
        assert!(pg_login(&role, &new), "the new password logs in");
        assert!(!pg_login(&role, &old), "the old one is refused");
        // The server keeps a SCRAM verifier, and its log has the statement but no password.
        let stored = psql_value(
            "postgres",
            &format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'"),
        );
        assert!(stored.starts_with("SCRAM-SHA-256$4096:"), "{stored}");
        let log = server_log();
        assert!(
            log.contains(&format!(
                "ALTER ROLE \"{role}\" PASSWORD 'SCRAM-SHA-256$4096:"
            )),
            "the statement is logged"
        );
        for secret in [&new, &old] {
            assert!(
                !log.contains(secret.as_str()),
                "a password is in PostgreSQL's log"
            );
        }
        app.assert_logs_free_of(&[&new, &old]);
    }
}
