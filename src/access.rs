//! Who may do what: scopes, resource globs and the caller a task names.
//! HTTP tokens, API users and AMQP producers each carry a `Grant`; every request they
//! make is checked against it, and the task records its `Requester`.

use serde::{Deserialize, Serialize};
use strum::{Display, EnumString, IntoStaticStr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Scope {
    #[serde(rename = "admin")]
    Admin,
    #[serde(rename = "credentials:view")]
    CredentialsView,
    #[serde(rename = "credentials:manage")]
    CredentialsManage,
    #[serde(rename = "tasks:view")]
    TasksView,
    #[serde(rename = "resources:manage")]
    ResourcesManage,
    #[serde(rename = "hosts:provision")]
    HostsProvision,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::CredentialsView => "credentials:view",
            Scope::CredentialsManage => "credentials:manage",
            Scope::TasksView => "tasks:view",
            Scope::ResourcesManage => "resources:manage",
            Scope::HostsProvision => "hosts:provision",
        }
    }
}

/// A glob on resource ids: `*` matches any run of characters, `?` one character;
/// everything else stands for itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    pub fn new(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("a resource glob must not be empty".into());
        }
        if pattern.chars().any(|c| c.is_control()) {
            return Err("a resource glob must not hold control characters".into());
        }
        Ok(Glob(pattern.to_string()))
    }

    pub fn matches(&self, text: &str) -> bool {
        let p: Vec<char> = self.0.chars().collect();
        let t: Vec<char> = text.chars().collect();
        // Greedy match with one backtrack point: the last `*` seen.
        let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
        while j < t.len() {
            if i < p.len() && (p[i] == '?' || p[i] == t[j]) {
                i += 1;
                j += 1;
            } else if i < p.len() && p[i] == '*' {
                star = Some(i);
                mark = j;
                i += 1;
            } else if let Some(s) = star {
                i = s + 1;
                mark += 1;
                j = mark;
            } else {
                return false;
            }
        }
        p[i..].iter().all(|&c| c == '*')
    }

    /// The same pattern for SQL `LIKE ... ESCAPE '\'`.
    pub fn to_like(&self) -> String {
        let mut out = String::with_capacity(self.0.len());
        for c in self.0.chars() {
            match c {
                '*' => out.push('%'),
                '?' => out.push('_'),
                '%' | '_' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                c => out.push(c),
            }
        }
        out
    }
}

impl<'de> Deserialize<'de> for Glob {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Glob::new(&s).map_err(serde::de::Error::custom)
    }
}

/// What a caller may do: its scopes, and the resources it may touch (none listed: all).
#[derive(Debug, Clone, Default)]
pub struct Grant {
    pub scopes: Vec<Scope>,
    pub resources: Vec<Glob>,
}

impl Grant {
    /// Everything: the scheduler and root's command line.
    pub fn all() -> Self {
        Grant {
            scopes: vec![Scope::Admin],
            resources: Vec::new(),
        }
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope)
    }

    pub fn is_admin(&self) -> bool {
        self.scopes.contains(&Scope::Admin)
    }

    pub fn allows_resource(&self, id: &str) -> bool {
        self.resources.is_empty() || self.resources.iter().any(|g| g.matches(id))
    }

    /// `LIKE` patterns for SQL filters: `['%']` when every resource is allowed.
    pub fn resource_patterns(&self) -> Vec<String> {
        if self.resources.is_empty() {
            vec!["%".into()]
        } else {
            self.resources.iter().map(Glob::to_like).collect()
        }
    }
}

/// The kind of caller that asked for a task (`requestedBy.kind`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Display,
    EnumString,
    IntoStaticStr,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RequesterKind {
    Token,
    User,
    Producer,
    Scheduler,
    Cli,
}

/// Who asked for the task (rotor extension). Absent on tasks recorded before rotor kept it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Requester {
    pub kind: RequesterKind,
    pub name: String,
}

impl Requester {
    pub fn new(kind: RequesterKind, name: impl Into<String>) -> Self {
        Requester {
            kind,
            name: name.into(),
        }
    }

    pub fn scheduler() -> Self {
        Requester::new(RequesterKind::Scheduler, "scheduler")
    }

    /// The OS user running this process, by its real uid (not `$USER`, which anyone sets).
    pub fn os_user() -> Self {
        Requester::new(RequesterKind::Cli, os_user_name())
    }
}

/// The name of the process's real uid from the password database, or `uid:N`.
pub fn os_user_name() -> String {
    // SAFETY: getuid cannot fail; getpwuid_r writes only into the buffers given.
    let uid = unsafe { libc::getuid() };
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc == 0 && !result.is_null() {
        // SAFETY: on success pw_name points at a NUL-terminated string inside `buf`.
        let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
        if let Ok(name) = name.to_str() {
            return name.to_string();
        }
    }
    format!("uid:{uid}")
}

/// Whether this process runs as root (real uid 0).
pub fn is_root() -> bool {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_shells_do() {
        let g = |p: &str| Glob::new(p).unwrap();
        assert!(g("web-*").matches("web-1"));
        assert!(g("web-*").matches("web-"));
        assert!(!g("web-*").matches("db-1"));
        assert!(g("*-prod").matches("a-b-prod"));
        assert!(g("h?st").matches("host"));
        assert!(!g("h?st").matches("hst"));
        assert!(g("*").matches(""));
        assert!(g("a*b*c").matches("aXbYc"));
        assert!(!g("a*b*c").matches("aXbY"));
        assert!(g("exact").matches("exact"));
        assert!(!g("exact").matches("exact2"));
    }

    #[test]
    fn like_escapes_sql_wildcards() {
        assert_eq!(Glob::new("web_1%*?").unwrap().to_like(), "web\\_1\\%%_");
        assert_eq!(Grant::default().resource_patterns(), vec!["%".to_string()]);
    }

    #[test]
    fn grant_limits_resources_and_scopes() {
        let grant = Grant {
            scopes: vec![Scope::CredentialsView],
            resources: vec![Glob::new("esxi-*").unwrap()],
        };
        assert!(grant.allows_resource("esxi-01"));
        assert!(!grant.allows_resource("web-01"));
        assert!(grant.has(Scope::CredentialsView));
        assert!(!grant.has(Scope::CredentialsManage));
        assert!(Grant::all().has(Scope::CredentialsManage));
    }
}
