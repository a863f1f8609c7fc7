//! Keeping a refused body without its secrets, and finding values no store can hold.

/// What stands in for a password in the dead-lettered copy of a refused request.
/// A request supplying it as a password is refused, so re-publishing a dead letter can
/// never store or apply it.
pub const REDACTED: &str = "<redacted by rotor>";

/// A refused request's body made safe to keep (in `rotor.requests.dead`): the JSON with
/// the value of every key that names a password replaced by [`REDACTED`], and the paths
/// replaced. `None` when the body is not JSON: no one can tell where a secret stands in
/// it, so it must not be kept.
pub fn redact_secrets(body: &[u8]) -> Option<(Vec<u8>, Vec<String>)> {
    fn walk(value: &mut serde_json::Value, at: &str, found: &mut Vec<String>) {
        match value {
            serde_json::Value::Array(items) => {
                for (i, v) in items.iter_mut().enumerate() {
                    walk(v, &format!("{at}[{i}]"), found);
                }
            }
            serde_json::Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    if k.to_ascii_lowercase().contains("password") && !v.is_null() {
                        *v = serde_json::Value::String(REDACTED.into());
                        found.push(key_path(at, k));
                    } else {
                        walk(v, &key_path(at, k), found);
                    }
                }
            }
            _ => {}
        }
    }
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let mut found = Vec::new();
    walk(&mut value, "", &mut found);
    Some((
        serde_json::to_vec(&value).expect("a parsed value serializes"),
        found,
    ))
}

/// The path of key `key` inside the value at path `at` (`""` is the body itself).
fn key_path(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_string()
    } else {
        format!("{at}.{key}")
    }
}

pub const NUL_MESSAGE: &str = "must not contain a NUL character (\\u0000)";

/// The path (`elements[0].resourceId`) of the first key or string holding a NUL.
pub fn nul_in(value: &serde_json::Value, at: String) -> Option<String> {
    let named = |at: &str| {
        if at.is_empty() {
            "body".to_string()
        } else {
            at.to_string()
        }
    };
    match value {
        serde_json::Value::String(s) if s.contains('\0') => Some(named(&at)),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_in(v, format!("{at}[{i}]"))),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            let path = key_path(&at, k);
            if k.contains('\0') {
                Some(named(&at))
            } else {
                nul_in(v, path)
            }
        }),
        _ => None,
    }
}
