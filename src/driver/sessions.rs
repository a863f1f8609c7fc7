//! Admin sessions kept open between changes on one host: accounts of a host that rotate
//! one after another share one key exchange and one authentication instead of paying
//! for one each. A kept session is used by one change at a time; one idle for `IDLE`
//! is closed, and one that broke meanwhile is dropped and replaced.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use ssh2::{Channel, Session};

use super::contract::{Error, Host};
use super::ssh;

/// How long an unused admin session stays open.
const IDLE: Duration = Duration::from_secs(20);
/// Most idle sessions kept per host (the engine runs at most `worker.per_host` at once).
const MAX_PER_HOST: usize = 16;

/// Everything that decided how a session was opened: a resource whose address, pinned
/// keys or admin changed gets a new one.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    resource_id: String,
    address: String,
    port: u16,
    host_keys: Vec<String>,
    insecure_accept_any_host_key: bool,
    admin: Option<(String, Option<PathBuf>, Option<PathBuf>)>,
}

impl Key {
    fn of(host: &Host) -> Key {
        Key {
            resource_id: host.resource_id.clone(),
            address: host.address.clone(),
            port: host.port,
            host_keys: host.host_keys.clone(),
            insecure_accept_any_host_key: host.insecure_accept_any_host_key,
            admin: host.admin.as_ref().map(|a| {
                (
                    a.username.clone(),
                    a.private_key_file.clone(),
                    a.password_file.clone(),
                )
            }),
        }
    }
}

type Idle = HashMap<Key, Vec<(Session, Instant)>>;

fn idle() -> &'static Mutex<Idle> {
    static IDLE_SESSIONS: OnceLock<Mutex<Idle>> = OnceLock::new();
    IDLE_SESSIONS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// An authenticated admin session in use; `keep` puts it back for the next change.
pub struct AdminSession {
    session: Session,
    key: Key,
}

impl AdminSession {
    /// A session to `host` as its admin with a channel open on it: a kept one if one is
    /// idle and still answers, else a new one (connect, host key check, authentication).
    pub fn open(host: &Host) -> Result<(AdminSession, Channel), Error> {
        let key = Key::of(host);
        while let Some(session) = take_idle(&key) {
            // Opening a channel is the first thing sent: a session the host closed fails
            // here, before any command could have run.
            match session.channel_session() {
                Ok(channel) => {
                    tracing::debug!(resource_id = %host.resource_id, "admin session reused");
                    return Ok((AdminSession { session, key }, channel));
                }
                Err(_) => {
                    tracing::debug!(resource_id = %host.resource_id, "a kept admin session was closed by the host; opening another")
                }
            }
        }
        let (session, _) = ssh::admin_session(host)?;
        let channel = session
            .channel_session()
            .map_err(|e| ssh::protocol(host, e))?;
        Ok((AdminSession { session, key }, channel))
    }

    /// Keeps the session for the next change on the same host.
    pub fn keep(self) {
        let mut idle = idle().lock().unwrap_or_else(|p| p.into_inner());
        let kept = idle.entry(self.key).or_default();
        if kept.len() < MAX_PER_HOST {
            kept.push((self.session, Instant::now()));
        }
    }
}

fn take_idle(key: &Key) -> Option<Session> {
    let mut stale = Vec::new();
    let found = {
        let mut idle = idle().lock().unwrap_or_else(|p| p.into_inner());
        let kept = idle.get_mut(key)?;
        let mut found = None;
        while let Some((session, since)) = kept.pop() {
            if since.elapsed() < IDLE {
                found = Some(session);
                break;
            }
            stale.push(session);
        }
        found
    };
    // Outside the lock: a goodbye to a host that stopped answering waits its timeout.
    stale.into_iter().for_each(close);
    found
}

/// Closes the sessions idle for longer than `IDLE` (the workers call it when idle).
pub fn close_idle() {
    let mut stale = Vec::new();
    {
        let mut idle = idle().lock().unwrap_or_else(|p| p.into_inner());
        for kept in idle.values_mut() {
            let (old, fresh): (Vec<_>, Vec<_>) = kept
                .drain(..)
                .partition(|(_, since)| since.elapsed() >= IDLE);
            *kept = fresh;
            stale.extend(old.into_iter().map(|(s, _)| s));
        }
        idle.retain(|_, kept| !kept.is_empty());
    }
    // Outside the lock: a goodbye to a host that stopped answering waits its timeout.
    stale.into_iter().for_each(close);
}

fn close(session: Session) {
    let _ = session.disconnect(None, "rotor: idle", None);
}
