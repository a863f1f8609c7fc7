//! The fuzzed intake, in process: 100,000 generated requests (well-formed shapes,
//! mutated) through the real parser, the dead-letter redaction and the field checks.
//! No panic; every refusal names a field and says why without echoing a value; no
//! password survives redaction.

#[path = "../../tests/it/fuzzgen.rs"]
mod fuzzgen;

use secrecy::ExposeSecret;
use serde_json::Value;

use super::{parse_json, parse_spec, redact_secrets, PrivxPassword, PrivxRotate, Rejection};

/// Every string under a key naming a password (any case), long enough to search for,
/// and each in its JSON-escaped form too.
fn passwords(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match v {
                    Value::String(s)
                        if k.to_lowercase().contains("password") && s.chars().count() >= 10 =>
                    {
                        out.push(s.clone());
                        let escaped = Value::from(s.as_str()).to_string();
                        out.push(escaped[1..escaped.len() - 1].to_string());
                    }
                    other => passwords(other, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| passwords(v, out)),
        _ => {}
    }
}

/// The value with every `password` string emptied.
fn without_passwords(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    if k.to_lowercase().contains("password") && v.is_string() {
                        (k, Value::from(""))
                    } else {
                        (k, without_passwords(v))
                    }
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(without_passwords).collect()),
        other => other,
    }
}

fn check_refusal(r: &Rejection, secrets: &[String]) {
    assert!(!r.field.is_empty() && !r.message.is_empty(), "{r:?}");
    for s in secrets {
        assert!(
            !r.message.contains(s.as_str()) && !r.field.contains(s.as_str()),
            "a refusal echoes a password: {r:?}"
        );
    }
}

#[test]
fn a_hundred_thousand_mutated_requests_are_parsed_refused_or_taken_safely() {
    let cases: usize = std::env::var("ROTOR_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let mut generator = fuzzgen::Gen::new(0x5eed, vec!["web-01".into(), "esxi-7".into()], vec![]);
    let (mut taken, mut refused, mut checked) = (0usize, 0usize, 0usize);
    let started = std::time::Instant::now();
    for _ in 0..cases {
        let (kind, body) = generator.next();
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        let mut secrets = Vec::new();
        if let Some(v) = &json {
            passwords(v, &mut secrets);
        }
        // A value that is also somewhere else (a username equal to a password) may be named there.
        let elsewhere = json
            .as_ref()
            .map(|v| without_passwords(v.clone()).to_string())
            .unwrap_or_default();
        secrets.retain(|s| !elsewhere.contains(s.as_str()));
        checked += usize::from(!secrets.is_empty());
        let outcome = match kind {
            "privx.rotate" => parse_json::<PrivxRotate>(&body).map(|r| {
                let _ = crate::driver::validate_username(&r.account);
            }),
            "privx.password" => parse_json::<PrivxPassword>(&body).map(|p| {
                let _ = crate::driver::validate_password_charset(p.password.expose_secret());
            }),
            _ => parse_spec(&body).map(|spec| {
                for c in spec.elements.iter().flat_map(|e| &e.credentials) {
                    let _ = crate::driver::validate_username(&c.username);
                    if let Some(p) = &c.password {
                        let _ = crate::driver::validate_password_charset(p.expose_secret());
                    }
                }
            }),
        };
        match outcome {
            Ok(()) => taken += 1,
            Err(r) => {
                refused += 1;
                check_refusal(&r, &secrets);
            }
        }
        if let Some((redacted, _)) = redact_secrets(&body) {
            let text = String::from_utf8_lossy(&redacted);
            for s in &secrets {
                assert!(
                    !text.contains(s.as_str()),
                    "a password survived redaction: {} -> {text}",
                    String::from_utf8_lossy(&body)
                        .chars()
                        .take(300)
                        .collect::<String>()
                );
            }
        }
    }
    assert!(
        checked > cases / 5,
        "passwords were searched for in {checked} cases"
    );
    assert!(
        taken > cases / 20 && refused > cases / 2,
        "the generator reaches both outcomes: {taken} taken, {refused} refused"
    );
    eprintln!(
        "fuzzed intake: {cases} requests, {taken} parsed, {refused} refused with a field, {checked} carrying passwords searched for, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
