//! The http platform against the local RabbitMQ's management API over HTTPS: the
//! `rabbitmq` preset rotates a user over AMQP (its tags kept), trusting the server by a CA
//! file or by a pinned certificate; a wrong pin stops before anything is sent. Each
//! outcome is checked on RabbitMQ itself; and the kill-at-every-stage proof runs once
//! for the platform.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::helpers::*;
use crate::reliability::{crash_everywhere, Onboarded, Target};

/// curl against the management API with `user:password` given on stdin (never on a
/// command line); returns (status, body).
fn mgmt(
    method: &str,
    path: &str,
    user: &str,
    password: &str,
    body: Option<&Value>,
) -> (u16, String) {
    let bed = tls_bed();
    let mut config = format!(
        "user = \"{user}:{password}\"\nrequest = \"{method}\"\nurl = \"https://127.0.0.1:{}{path}\"\ncacert = \"{}\"\nsilent\nwrite-out = \"\\n%{{http_code}}\"\n",
        bed.mgmt_port, bed.ca
    );
    if let Some(b) = body {
        config.push_str(&format!(
            "header = \"content-type: application/json\"\ndata = \"{}\"\n",
            b.to_string().replace('\\', "\\\\").replace('"', "\\\"")
        ));
    }
    let mut child = Command::new("curl")
        .args(["-K", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(config.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn admin_password() -> String {
    std::fs::read_to_string(&tls_bed().mgmt_admin_password_file)
        .unwrap()
        .trim()
        .to_string()
}

fn as_admin(method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    mgmt(method, path, &tls_bed().mgmt_admin, &admin_password(), body)
}

/// Whether RabbitMQ takes `password` for `user` (its whoami).
fn mq_login(user: &str, password: &str) -> bool {
    let (status, body) = mgmt("GET", "/api/whoami", user, password, None);
    status == 200 || body.contains("Not management user")
}

/// A RabbitMQ user with a password and tags, deleted when dropped.
pub(crate) struct MqUser {
    pub(crate) name: String,
    pub(crate) password: String,
}

impl MqUser {
    pub(crate) fn create(prefix: &str, tags: &str) -> MqUser {
        let user = MqUser {
            name: format!("{prefix}{}", &unique()[..6]),
            password: initial_password(),
        };
        let (status, body) = as_admin(
            "PUT",
            &format!("/api/users/{}", user.name),
            Some(&serde_json::json!({"password": user.password, "tags": tags})),
        );
        assert!(
            status == 201 || status == 204,
            "create {}: {status} {body}",
            user.name
        );
        assert!(mq_login(&user.name, &user.password));
        user
    }

    fn tags(&self) -> Value {
        let (status, body) = as_admin("GET", &format!("/api/users/{}", self.name), None);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["tags"].clone()
    }
}

impl Drop for MqUser {
    fn drop(&mut self) {
        let _ = as_admin("DELETE", &format!("/api/users/{}", self.name), None);
    }
}

/// `SHA256:<base64>` of the test server certificate's DER form.
fn server_cert_pin() -> String {
    let pem = std::fs::read_to_string(&tls_bed().cert).unwrap();
    let b64: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(der))
    )
}

/// An http resource on the local RabbitMQ with the rabbitmq preset; `trust` is the
/// `ca_file = ...` or `cert_fingerprints = [...]` line.
pub(crate) fn resource(id: &str, trust: &str, user: &MqUser, app: &TestApp) -> String {
    let bed = tls_bed();
    let pw_file = app.dir.join(format!("{}.pw", user.name));
    write_private(&pw_file, &format!("{}\n", user.password));
    format!(
        r#"[[resource]]
id = "{id}"
name = "RabbitMQ {id}"
type = "RABBITMQ"
address = "127.0.0.1"
port = {port}
platform = "http"

[resource.http]
preset = "rabbitmq"
{trust}

[resource.admin]
username = "{admin}"
password_file = "{admin_pw}"

[[resource.account]]
username = "{user}"
credential_type = "API"
password_file = "{pw_file}"
"#,
        port = bed.mgmt_port,
        admin = bed.mgmt_admin,
        admin_pw = bed.mgmt_admin_password_file,
        user = user.name,
        pw_file = pw_file.display()
    )
}

pub(crate) fn rotate(resource: &str, username: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "operationType": "ROTATE",
        "elements": [{"resourceId": resource, "resourceType": "RABBITMQ", "credentials": [{"username": username}]}]
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_users_rotate_through_the_management_api() {
    let app = TestApp::spawn().await;
    let by_ca = MqUser::create("rtithc", "monitoring");
    let by_pin = MqUser::create("rtithp", "");
    let wrong = MqUser::create("rtithw", "management");
    let ids = [
        format!("mqca-{}", app.id),
        format!("mqpin-{}", app.id),
        format!("mqbad-{}", app.id),
    ];
    let bad_pin = format!("SHA256:{}", "A".repeat(43));
    // The pin as an operator gets it: `rotor host scan https://...`, which must agree
    // with the certificate file.
    let scan = app.cli(&[
        "host",
        "scan",
        &format!("https://127.0.0.1:{}", tls_bed().mgmt_port),
    ]);
    assert_eq!(scan.code, 0, "{}", scan.stderr);
    assert_eq!(scan.stdout.trim(), server_cert_pin());
    let text = [
        resource(
            &ids[0],
            &format!("ca_file = \"{}\"", tls_bed().ca),
            &by_ca,
            &app,
        ),
        resource(
            &ids[1],
            &format!("cert_fingerprints = [\"{}\"]", scan.stdout.trim()),
            &by_pin,
            &app,
        ),
        resource(
            &ids[2],
            &format!("cert_fingerprints = [\"{bad_pin}\"]"),
            &wrong,
            &app,
        ),
    ]
    .join("\n");
    let out = app.apply_inventory_text("http", &text);
    assert_eq!(out.code, 0, "{}", out.stderr);

    let mut secrets = Vec::new();
    for (id, user) in [(&ids[0], &by_ca), (&ids[1], &by_pin)] {
        let tags_before = user.tags();
        let task = app.request(&rotate(id, &user.name)).await;
        assert_eq!(task["status"], "SUCCESSFUL", "{id}: {task:#}");
        let new = app.reveal(id, &user.name);
        assert!(mq_login(&user.name, &new), "{id}: the new password logs in");
        assert!(
            !mq_login(&user.name, &user.password),
            "{id}: the old one is refused"
        );
        assert_eq!(user.tags(), tags_before, "{id}: the user keeps its tags");
        secrets.push(new);
    }

    // A certificate that is not the pinned one: nothing is sent, the error says why,
    // and the user keeps its password.
    let task = app.request(&rotate(&ids[2], &wrong.name)).await;
    assert_eq!(task["status"], "FAILED", "{task:#}");
    let said = task["subTasks"][0]["errors"].to_string();
    assert!(said.contains("not pinned"), "{said}");
    assert!(mq_login(&wrong.name, &wrong.password));
    assert_eq!(app.reveal(&ids[2], &wrong.name), wrong.password);

    // A recipe that would put the password into a URL is refused, naming the field.
    let leaky = resource(&format!("mqleak-{}", app.id), "", &by_ca, &app).replace(
        "preset = \"rabbitmq\"",
        "preset = \"rabbitmq\"\n\n[resource.http.change]\nmethod = \"PUT\"\npath = \"/api/users/{username}?p={password}\"\nauth = \"admin-basic\"\nbody = { password = \"{password}\" }",
    );
    let out = app.apply_inventory_text("leaky", &leaky);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("http.change.path"), "{}", out.stderr);

    // An address that would move a URL's host elsewhere is refused, naming the field.
    let moved = resource(&format!("mqat-{}", app.id), "", &by_ca, &app).replace(
        "address = \"127.0.0.1\"",
        "address = \"127.0.0.1@evil.example\"",
    );
    let out = app.apply_inventory_text("moved", &moved);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains(".address"), "{}", out.stderr);

    // A reset (REMEDIATE without a password) through a recipe that changes as the
    // account would need the password it lacks: refused before the target is contacted.
    let nsx_id = format!("nsx-{}", app.id);
    let nsx = resource(&nsx_id, "", &by_ca, &app)
        .replace("preset = \"rabbitmq\"", "preset = \"nsx-node-user\"")
        .replace("type = \"RABBITMQ\"", "type = \"NSXT_MANAGER\"");
    let out = app.apply_inventory_text("nsx", &nsx);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let remediate = serde_json::to_vec(&serde_json::json!({
        "operationType": "REMEDIATE",
        "elements": [{"resourceId": nsx_id, "resourceType": "NSXT_MANAGER", "credentials": [{"username": by_ca.name}]}]
    }))
    .unwrap();
    let reply = app
        .publish_and_reply("credentials.update", &remediate)
        .await;
    let task = app
        .wait_task(reply["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(task["status"], "FAILED", "{task:#}");
    assert!(
        task["subTasks"][0]["errors"]
            .to_string()
            .contains("RECONCILE_NOT_SUPPORTED"),
        "{task:#}"
    );

    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    app.assert_logs_free_of(&refs);
}

struct RabbitMq;

impl Target for RabbitMq {
    fn onboard(&self, app: &TestApp) -> Onboarded {
        let user = MqUser::create("rtithk", "monitoring");
        let id = format!("crash-{}", app.id);
        let text = resource(&id, &format!("ca_file = \"{}\"", tls_bed().ca), &user, app);
        let out = app.apply_inventory_text(&id, &text);
        assert_eq!(out.code, 0, "{}", out.stderr);
        Onboarded {
            resource: id,
            username: user.name.clone(),
            initial: user.password.clone(),
            keep: Box::new(user),
        }
    }

    fn logs_in(&self, username: &str, password: &str) -> bool {
        mq_login(username, password)
    }
}

/// The kill-at-every-stage proof (RELIABILITY.md), once for this platform.
#[test]
fn a_crash_at_any_stage_boundary_loses_no_http_target_password() {
    crash_everywhere(&RabbitMq);
}
