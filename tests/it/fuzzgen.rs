//! Generated requests for the fuzzed intake: well-formed `CredentialsUpdateSpec` and
//! PrivX bodies, then mutated (fields dropped, added, retyped; huge, deep and
//! Unicode-laden values; broken JSON; raw bytes). Deterministic for a seed. Shared by
//! the in-process fuzz (src/requests/fuzz.rs) and the one over the broker.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

pub struct Gen {
    rng: StdRng,
    /// Resource ids the requests may name (plus random ones).
    pub resources: Vec<String>,
    /// Never generate these usernames (accounts that must not change).
    pub avoid: Vec<String>,
}

const NASTY: &[&str] = &[
    "",
    " ",
    "\u{202e}gnp.exe",
    "a\u{200b}b",
    "\u{feff}",
    "🦀🔑",
    "\\",
    "\"",
    "'; DROP TABLE tasks; --",
    "%s%n",
    "../../etc/shadow",
    "-rf",
    "a:b",
    "x\ny",
    "\t",
    "\u{0000}",
    "ROTATE",
    "null",
    "Ünïcødé",
    "\u{10ffff}",
    "[REDACTED]",
    "${jndi:ldap://x}",
];

impl Gen {
    pub fn new(seed: u64, resources: Vec<String>, avoid: Vec<String>) -> Self {
        Gen {
            rng: StdRng::seed_from_u64(seed),
            resources,
            avoid,
        }
    }

    fn text(&mut self) -> String {
        match self.rng.random_range(0..6) {
            0 => NASTY[self.rng.random_range(0..NASTY.len())].to_string(),
            1 => char::from(self.rng.random_range(b'a'..=b'z'))
                .to_string()
                .repeat(self.rng.random_range(1000..70_000)),
            2 => (0..self.rng.random_range(1..40))
                .map(|_| char::from_u32(self.rng.random_range(0x20..0x3000)).unwrap_or('?'))
                .collect(),
            _ => format!("fz{}", self.rng.random_range(0..100_000)),
        }
    }

    /// A password: half of them long and unmistakable, so a leak of one is found.
    fn password(&mut self) -> String {
        if self.rng.random_bool(0.5) {
            format!(
                "Pw{:016x}Mk{:016x}",
                self.rng.random::<u64>(),
                self.rng.random::<u64>()
            )
        } else {
            self.text()
        }
    }

    fn username(&mut self) -> String {
        loop {
            let u = self.text();
            if !self.avoid.contains(&u) {
                return u;
            }
        }
    }

    fn any_value(&mut self, depth: u32) -> Value {
        match self.rng.random_range(0..if depth > 3 { 5 } else { 8 }) {
            0 => Value::Null,
            1 => json!(self.rng.random::<bool>()),
            2 => json!(self.rng.random::<i64>()),
            3 => json!(self.rng.random::<f64>() * 1e300),
            4 => json!(self.text()),
            5 => Value::Array(
                (0..self.rng.random_range(0..4))
                    .map(|_| self.any_value(depth + 1))
                    .collect(),
            ),
            _ => {
                let mut m = Map::new();
                for _ in 0..self.rng.random_range(0..4) {
                    let k = self.text();
                    m.insert(k, self.any_value(depth + 1));
                }
                Value::Object(m)
            }
        }
    }

    /// A request that is well formed before mutation.
    fn well_formed(&mut self) -> (&'static str, Value) {
        let ops = ["ROTATE", "UPDATE", "REMEDIATE", "UPDATE_AUTO_ROTATE_POLICY"];
        match self.rng.random_range(0..10) {
            0 => (
                "privx.rotate",
                json!({"host_id": self.resource(), "account": self.username()}),
            ),
            1 => (
                "privx.password",
                json!({"host_id": self.resource(), "account": self.username(), "password": self.password()}),
            ),
            _ => {
                let op = ops[self.rng.random_range(0..ops.len())];
                let elements: Vec<Value> = (0..self.rng.random_range(1..4))
                    .map(|_| {
                        let creds: Vec<Value> = (0..self.rng.random_range(1..4))
                            .map(|_| {
                                let mut c = json!({"username": self.username()});
                                if op == "UPDATE" || op == "REMEDIATE" {
                                    c["password"] = json!(self.password());
                                }
                                c
                            })
                            .collect();
                        json!({"resourceId": self.resource(), "resourceType": "LINUX", "credentials": creds})
                    })
                    .collect();
                let mut spec = json!({"operationType": op, "elements": elements});
                if op == "UPDATE_AUTO_ROTATE_POLICY" {
                    spec["autoRotatePolicy"] = json!({"enableAutoRotatePolicy": true, "frequencyInDays": self.rng.random_range(-5..400)});
                }
                ("credentials.update", spec)
            }
        }
    }

    fn resource(&mut self) -> String {
        if self.rng.random_bool(0.7) && !self.resources.is_empty() {
            self.resources[self.rng.random_range(0..self.resources.len())].clone()
        } else {
            self.text()
        }
    }

    /// Applies one random mutation somewhere in `v`.
    fn mutate(&mut self, v: &mut Value, depth: u32) {
        let here = depth > 4 || self.rng.random_bool(0.4);
        match v {
            Value::Object(m) if !m.is_empty() && !here => {
                let keys: Vec<String> = m.keys().cloned().collect();
                let k = &keys[self.rng.random_range(0..keys.len())];
                self.mutate(m.get_mut(k).unwrap(), depth + 1);
            }
            Value::Array(a) if !a.is_empty() && !here => {
                let i = self.rng.random_range(0..a.len());
                self.mutate(&mut a[i], depth + 1);
            }
            Value::Object(m) => match self.rng.random_range(0..3) {
                0 if !m.is_empty() => {
                    let k = m
                        .keys()
                        .nth(self.rng.random_range(0..m.len()))
                        .cloned()
                        .unwrap();
                    m.remove(&k);
                }
                1 => {
                    let k = [
                        "password",
                        "username",
                        "extra",
                        "resourceName",
                        "elements",
                        "operationType",
                    ][self.rng.random_range(0..6)]
                    .to_string();
                    let val = self.any_value(depth);
                    m.insert(k, val);
                }
                _ => *v = self.any_value(depth),
            },
            _ => *v = self.any_value(depth),
        }
    }

    /// One message: its kind (routing key) and body.
    pub fn next(&mut self) -> (&'static str, Vec<u8>) {
        let (kind, mut v) = self.well_formed();
        match self.rng.random_range(0..20) {
            0 => {
                return (
                    kind,
                    (0..self.rng.random_range(0..300))
                        .map(|_| self.rng.random::<u8>())
                        .collect(),
                )
            }
            1 => {
                let text = v.to_string();
                let cut = self.rng.random_range(0..text.len().max(1));
                return (kind, text.as_bytes()[..cut].to_vec());
            }
            2 => {
                // Deep nesting.
                let depth = self.rng.random_range(50..300);
                let body = "[".repeat(depth) + &"]".repeat(depth);
                return (kind, body.into_bytes());
            }
            _ => {}
        }
        for _ in 0..self.rng.random_range(0..4) {
            self.mutate(&mut v, 0);
        }
        (kind, serde_json::to_vec(&v).unwrap())
    }
}
