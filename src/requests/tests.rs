//! Unit tests of parsing, refusals and redaction.

use secrecy::SecretString;

use super::resolve::check_charset;
use super::*;

#[test]
fn wrong_field_is_named_by_path() {
    let r = parse_spec(br#"{"operationType":"ROTATE","elements":[{"resourceType":"LINUX","credentials":[{"username":5}]}]}"#)
        .unwrap_err();
    assert_eq!(r.field, "elements[0].credentials[0].username");
    let r = parse_spec(br#"{"operationType":"SPIN","elements":[]}"#).unwrap_err();
    assert_eq!(r.field, "operationType");
    assert!(r.message.contains("ROTATE"), "{}", r.message);
    let r = parse_spec(b"not json").unwrap_err();
    assert_eq!(r.field, "body");
    let r = parse_spec(b"\xff\xfe").unwrap_err();
    assert_eq!(r.message, "is not UTF-8");
}

#[test]
fn password_is_never_in_a_rejection() {
    let r = parse_spec(br#"{"operationType":"ROTATE","elements":[{"resourceType":"LINUX","credentials":[{"username":"a","password":"Sup3r-Secret!","extra":1}]}]}"#)
        .unwrap_err();
    assert!(!r.to_string().contains("Sup3r"), "{r}");
    // A password sent with the wrong type is not echoed by serde's message either.
    for body in [
        &br#"{"operationType":"UPDATE","elements":[{"resourceType":"LINUX","credentials":[{"username":"a","password":987654321}]}]}"#[..],
        br#"{"operationType":"UPDATE","elements":[{"resourceType":"LINUX","credentials":[{"username":"a","password":98765.4321}]}]}"#,
        br#"{"operationType":"UPDATE","elements":[{"resourceType":"LINUX","credentials":[{"username":"a","password":true}]}]}"#,
        br#"{"operationType":"ROTATE","elements":[{"resourceType":"LINUX","credentials":[{"username":"Sup3r-Secret!, expected x"}]}],"autoRotatePolicy":"Sup3r"}"#,
    ] {
        let r = parse_spec(body).unwrap_err();
        assert_eq!(r.code, RejectCode::ValueIncorrectType, "{r}");
        for leak in ["987654321", "98765.4321", "true", "Sup3r"] {
            assert!(!r.to_string().contains(leak), "{r}");
        }
    }
    let r: Rejection =
        parse_json::<PrivxPassword>(br#"{"host_id":"h","account":"a","password":123456789}"#)
            .unwrap_err();
    assert_eq!(
        (r.field.as_str(), r.message.as_str()),
        ("password", "invalid type: integer, expected a string")
    );
}

#[test]
fn dead_letter_copies_hold_no_password() {
    let body = br#"{"operationType":"UPDATE","elements":[{"resourceId":"h","resourceType":"LINUX","credentials":[{"username":"a","password":"S3cret-One!"},{"username":"b","Password":["S3cret-Two!"]},{"username":"c","password":null}]}]}"#;
    let (kept, paths) = redact_secrets(body).unwrap();
    let kept = String::from_utf8(kept).unwrap();
    assert!(!kept.contains("S3cret"), "{kept}");
    assert_eq!(
        paths,
        [
            "elements[0].credentials[0].password",
            "elements[0].credentials[1].Password"
        ]
    );
    // Everything else is kept as it was, so the copy still shows what was wrong.
    let value: serde_json::Value = serde_json::from_str(&kept).unwrap();
    assert_eq!(value["elements"][0]["credentials"][1]["username"], "b");
    assert_eq!(value["elements"][0]["credentials"][0]["password"], REDACTED);
    let (_, paths) = redact_secrets(br#"{"host_id":"h","account":"a","password":"x"}"#).unwrap();
    assert_eq!(paths, ["password"]);
    // Not JSON: nothing can be kept.
    assert!(redact_secrets(br#"{"password":"S3cret-One!""#).is_none());
    assert!(redact_secrets(b"\xff").is_none());
    // The placeholder itself is refused as a password.
    let pw = SecretString::from(REDACTED.to_string());
    assert_eq!(
        check_charset(&pw, "password").unwrap_err().code,
        RejectCode::ValueIncorrectFormat
    );
}
