//! SSH sessions over ssh2: connect, check the pinned host key before any
//! authentication, log in, run a command with a secret on stdin.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use ssh2::{ErrorCode, HashType, Session};

use super::contract::{Admin, Error, Host, Login, SshAuth};

const AUTH_FAILED: i32 = -18; // LIBSSH2_ERROR_AUTHENTICATION_FAILED
const PASSWORD_EXPIRED: i32 = -15; // LIBSSH2_ERROR_PASSWORD_EXPIRED
const TIMEOUT: i32 = -9; // LIBSSH2_ERROR_TIMEOUT

pub(super) fn protocol(host: &Host, e: ssh2::Error) -> Error {
    match e.code() {
        ErrorCode::Session(TIMEOUT) => Error::Timeout {
            address: host.endpoint(),
            message: e.message().to_string(),
        },
        _ => Error::Protocol {
            address: host.endpoint(),
            message: e.message().to_string(),
        },
    }
}

/// The host key's fingerprint as `ssh-keygen -l -E sha256` prints it.
pub fn fingerprint(session: &Session) -> Option<String> {
    session.host_key_hash(HashType::Sha256).map(|h| {
        format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(h)
        )
    })
}

/// TCP connect, SSH handshake and host key check. No credential has been sent yet
/// when this returns.
pub fn connect(host: &Host) -> Result<Session, Error> {
    let address = host.endpoint();
    let addr = resolve(host)?;
    let tcp =
        TcpStream::connect_timeout(&addr, host.connect_timeout).map_err(|e| match e.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => Error::Timeout {
                address: address.clone(),
                message: e.to_string(),
            },
            _ => Error::Connect {
                address: address.clone(),
                message: e.to_string(),
            },
        })?;
    let _ = tcp.set_nodelay(true);
    let mut session = Session::new().map_err(|e| protocol(host, e))?;
    session.set_timeout(u32::try_from(host.io_timeout.as_millis()).unwrap_or(u32::MAX));
    session.set_tcp_stream(tcp);
    session.handshake().map_err(|e| protocol(host, e))?;
    let found = fingerprint(&session).ok_or_else(|| Error::Protocol {
        address: address.clone(),
        message: "no host key".into(),
    })?;
    if host.insecure_accept_any_host_key {
        tracing::warn!(target: "rotor::security", resource_id = %host.resource_id, host_key = %found,
            "accepting any host key (insecure_accept_any_host_key = true)");
    } else if host.host_keys.is_empty() {
        return Err(Error::NoPinnedHostKey);
    } else if !host.host_keys.iter().any(|k| k == &found) {
        tracing::error!(target: "rotor::security", resource_id = %host.resource_id, host_key = %found,
            "host key mismatch: refusing to authenticate");
        return Err(Error::HostKeyMismatch { address, found });
    }
    Ok(session)
}

/// The host keys `host` offers, one handshake per key type (ed25519, ECDSA, RSA), as
/// (type, `SHA256:...`) pairs. No credential is sent; nothing is trusted here: the caller
/// shows them for an operator to check and pin.
pub fn scan_host_keys(host: &Host) -> Result<Vec<(&'static str, String)>, Error> {
    let mut found: Vec<(&'static str, String)> = Vec::new();
    let mut last_error = None;
    for (kind, prefs) in [
        ("ssh-ed25519", "ssh-ed25519"),
        (
            "ecdsa",
            "ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521",
        ),
        ("ssh-rsa", "rsa-sha2-512,rsa-sha2-256,ssh-rsa"),
    ] {
        let addr = resolve(host)?;
        let tcp = TcpStream::connect_timeout(&addr, host.connect_timeout).map_err(|e| {
            Error::Connect {
                address: host.endpoint(),
                message: e.to_string(),
            }
        })?;
        let mut session = Session::new().map_err(|e| protocol(host, e))?;
        session.set_timeout(u32::try_from(host.io_timeout.as_millis()).unwrap_or(u32::MAX));
        session
            .method_pref(ssh2::MethodType::HostKey, prefs)
            .map_err(|e| protocol(host, e))?;
        session.set_tcp_stream(tcp);
        // A host without a key of this type fails the key exchange: try the next type.
        match session.handshake() {
            Ok(()) => {
                if let Some(f) = fingerprint(&session) {
                    if !found.iter().any(|(_, g)| g == &f) {
                        found.push((kind, f));
                    }
                }
                let _ = session.disconnect(None, "rotor: host key scan", None);
            }
            Err(e) => last_error = Some(protocol(host, e)),
        }
    }
    match (found.is_empty(), last_error) {
        (true, Some(e)) => Err(e),
        _ => Ok(found),
    }
}

/// The host's first address. A name is looked up on a thread of its own, given at most
/// the connect timeout: a resolver that hangs must not hold a rotation (or a blocking
/// thread of rotor's) for good.
fn resolve(host: &Host) -> Result<std::net::SocketAddr, Error> {
    let address = host.endpoint();
    if let Ok(ip) = host.address.parse::<std::net::IpAddr>() {
        return Ok(std::net::SocketAddr::new(ip, host.port));
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let (name, port) = (host.address.clone(), host.port);
    std::thread::Builder::new()
        .name("rotor-resolve".into())
        .spawn(move || {
            let _ = tx.send(
                (name.as_str(), port)
                    .to_socket_addrs()
                    .map(|mut a| a.next()),
            );
        })
        .map_err(|e| Error::Connect {
            address: address.clone(),
            message: format!("cannot resolve: {e}"),
        })?;
    match rx.recv_timeout(host.connect_timeout) {
        Ok(Ok(Some(addr))) => Ok(addr),
        Ok(Ok(None)) => Err(Error::Connect {
            address,
            message: "the name has no address".into(),
        }),
        Ok(Err(e)) => Err(Error::Connect {
            address,
            message: format!("cannot resolve: {e}"),
        }),
        Err(_) => Err(Error::Timeout {
            address,
            message: format!("name resolution took over {:?}", host.connect_timeout),
        }),
    }
}

/// Most bytes of a command's stdout and stderr rotor reads; a target that prints more is
/// cut off with an error, not buffered.
const MAX_OUTPUT: usize = 64 * 1024;

/// Reads `reader` to its end, at most `MAX_OUTPUT` bytes and until `deadline`.
fn read_bounded(
    host: &Host,
    reader: &mut impl Read,
    deadline: std::time::Instant,
    what: &str,
) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if std::time::Instant::now() > deadline {
            return Err(Error::Timeout {
                address: host.endpoint(),
                message: format!("the command's {what} did not end in time"),
            });
        }
        let n = reader.read(&mut buf).map_err(|io| Error::Protocol {
            address: host.endpoint(),
            message: io.to_string(),
        })?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > MAX_OUTPUT {
            return Err(Error::Protocol {
                address: host.endpoint(),
                message: format!("the command printed over {MAX_OUTPUT} bytes on {what}"),
            });
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// A fresh login with a password: Accepted, Refused, or an error saying why neither could be told.
pub fn password_login(
    host: &Host,
    username: &str,
    password: &SecretString,
) -> Result<Login, Error> {
    Ok(password_attempts(host, username, &[password], None)?[0])
}

/// A connection made ready for password logins: connected and its host key checked.
/// Nothing has been sent on it as any account (the target looks the account up at the
/// first login request), so it can be opened before a change and used after it.
pub struct LoginLine {
    session: Session,
    opened: std::time::Instant,
}

impl Drop for LoginLine {
    /// A goodbye, so that the target logs a closed connection, not a dropped one.
    fn drop(&mut self) {
        let _ = self
            .session
            .disconnect(None, "rotor: login check done", None);
    }
}

/// A line older than this is not used: the server may have given up on it (OpenSSH's
/// `LoginGraceTime` is 120 s by default, an appliance's may be far shorter).
const LINE_FRESH: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens a connection for password logins (see `LoginLine`).
pub fn open_line(host: &Host) -> Result<LoginLine, Error> {
    Ok(LoginLine {
        session: connect(host)?,
        opened: std::time::Instant::now(),
    })
}

/// Password logins tried one after another on one connection until one is accepted: a
/// refused attempt leaves the connection open for the next, so a refused and an
/// accepted check cost one key exchange. `line` is a connection opened ahead for them,
/// used if still fresh. One outcome per attempt made.
pub fn password_attempts(
    host: &Host,
    username: &str,
    passwords: &[&SecretString],
    line: Option<LoginLine>,
) -> Result<Vec<Login>, Error> {
    let line = match line {
        Some(line) if line.opened.elapsed() < LINE_FRESH => line,
        stale => {
            drop(stale);
            open_line(host)?
        }
    };
    let method = method_for(host, &line.session, username)?;
    let mut outcomes = Vec::with_capacity(passwords.len());
    for password in passwords {
        let outcome = match attempt(host, &line.session, method, username, password) {
            Ok(outcome) => outcome,
            // A target that drops the connection after a refused attempt (MaxAuthTries
            // 1, some appliances): what was learned stands, the caller checks the rest
            // on a connection of its own.
            Err(_) if !outcomes.is_empty() => break,
            Err(e) => return Err(e),
        };
        outcomes.push(outcome);
        if outcome == Login::Accepted {
            break;
        }
    }
    Ok(outcomes)
}

/// A session authenticated as `username` with its password, to run a read-only command
/// as the account itself.
pub fn password_session(
    host: &Host,
    username: &str,
    password: &SecretString,
) -> Result<Session, Error> {
    let session = connect(host)?;
    let method = method_for(host, &session, username)?;
    match attempt(host, &session, method, username, password)? {
        Login::Accepted => Ok(session),
        Login::Refused => Err(Error::AccountAuth {
            username: username.to_string(),
            message: "the password does not log in".into(),
        }),
    }
}

/// The method an account's password goes by on this connection: the resource's choice,
/// or with `auto` what the server offers ("password" first). Asking sends the SSH "none"
/// method, which no server counts as a failed login.
fn method_for(host: &Host, session: &Session, username: &str) -> Result<SshAuth, Error> {
    match host.ssh_auth {
        SshAuth::Auto => {
            let offered = session
                .auth_methods(username)
                .map_err(|e| protocol(host, e))?
                .to_string();
            let has = |m: &str| offered.split(',').any(|o| o == m);
            if has("password") {
                Ok(SshAuth::Password)
            } else if has("keyboard-interactive") {
                Ok(SshAuth::KeyboardInteractive)
            } else {
                Err(Error::Config(format!(
                    "{} offers neither password nor keyboard-interactive authentication (it offers {offered})",
                    host.endpoint()
                )))
            }
        }
        chosen => Ok(chosen),
    }
}

/// Answers a keyboard-interactive exchange: the password to a password prompt (one that
/// does not echo and says "password"), nothing to anything else, which is noted.
struct Answer<'a> {
    password: &'a SecretString,
    unexpected: Option<String>,
    /// The password is given once per attempt: a second password prompt in the same
    /// exchange (an expired password's "new password") is not ours to answer.
    answered: bool,
}

impl ssh2::KeyboardInteractivePrompt for Answer<'_> {
    fn prompt(
        &mut self,
        _username: &str,
        _instructions: &str,
        prompts: &[ssh2::Prompt],
    ) -> Vec<String> {
        prompts
            .iter()
            .map(|p| {
                if !p.echo && !self.answered && p.text.to_lowercase().contains("password") {
                    self.answered = true;
                    self.password.expose_secret().to_string()
                } else {
                    self.unexpected = Some(p.text.chars().take(80).collect());
                    String::new()
                }
            })
            .collect()
    }
}

/// One login attempt by `method`: Accepted, Refused, or an error saying why neither can
/// be told (a prompt other than the password's is an error, not a refusal).
fn attempt(
    host: &Host,
    session: &Session,
    method: SshAuth,
    username: &str,
    password: &SecretString,
) -> Result<Login, Error> {
    let mut answer = Answer {
        password,
        unexpected: None,
        answered: false,
    };
    let result = match method {
        SshAuth::KeyboardInteractive => {
            session.userauth_keyboard_interactive(username, &mut answer)
        }
        _ => session.userauth_password(username, password.expose_secret()),
    };
    if let Some(prompt) = answer.unexpected {
        return Err(Error::Protocol {
            address: host.endpoint(),
            message: format!("the server asked something other than the password: {prompt:?}"),
        });
    }
    let refused = match result {
        Ok(()) if session.authenticated() => return Ok(Login::Accepted),
        Ok(()) => true,
        Err(e) => match e.code() {
            ErrorCode::Session(AUTH_FAILED) | ErrorCode::Session(PASSWORD_EXPIRED) => true,
            _ => return Err(protocol(host, e)),
        },
    };
    // A server that does not take this method at all answers like a refusal: with the
    // method named by the resource (not chosen from the server's offer), make sure.
    let name: &'static str = method.into();
    if refused && host.ssh_auth != SshAuth::Auto {
        let offered = session
            .auth_methods(username)
            .map_err(|e| protocol(host, e))?
            .to_string();
        if !offered.split(',').any(|m| m == name) {
            return Err(Error::Config(format!(
                "{} does not accept {name} authentication (it offers {offered}); set the resource's ssh_auth",
                host.endpoint()
            )));
        }
    }
    Ok(Login::Refused)
}

/// A session authenticated as the resource's admin account.
pub fn admin_session(host: &Host) -> Result<(Session, &Admin), Error> {
    let admin = host.admin.as_ref().ok_or(Error::NoAdmin)?;
    let session = connect(host)?;
    let auth_err = |message: String| Error::AdminAuth {
        username: admin.username.clone(),
        message,
    };
    if let Some(key) = &admin.private_key_file {
        if !key.exists() {
            return Err(Error::Config(format!(
                "admin private key {} does not exist",
                key.display()
            )));
        }
        session
            .userauth_pubkey_file(&admin.username, None, key, None)
            .map_err(|e| match e.code() {
                ErrorCode::Session(AUTH_FAILED) | ErrorCode::Session(-19) => {
                    auth_err(e.message().to_string())
                }
                ErrorCode::Session(-16) => Error::Config(format!(
                    "cannot use admin private key {}: {}",
                    key.display(),
                    e.message()
                )),
                _ => protocol(host, e),
            })?;
    } else if admin.password_file.is_some() {
        let pw = admin.password()?;
        // By the resource's method: ESXi's root takes its password by keyboard-interactive.
        let method = method_for(host, &session, &admin.username)?;
        if attempt(host, &session, method, &admin.username, &pw)? == Login::Refused {
            return Err(auth_err("the admin password is refused".into()));
        }
    } else {
        return Err(Error::Config(
            "admin account needs private_key_file or password_file".into(),
        ));
    }
    if !session.authenticated() {
        return Err(auth_err("not authenticated".into()));
    }
    Ok((session, admin))
}

pub struct Output {
    pub status: i32,
    pub stderr: String,
}

/// Runs `command` (fixed text, never containing a secret) on an open `channel`, with
/// `stdin` as its input.
pub fn exec_with_stdin(
    host: &Host,
    mut channel: ssh2::Channel,
    command: &str,
    stdin: &[u8],
) -> Result<Output, Error> {
    let e = |e: ssh2::Error| protocol(host, e);
    // stderr into the one stream rotor reads, so libssh2 never queues one stream
    // (unbounded) while rotor waits on the other.
    channel
        .handle_extended_data(ssh2::ExtendedData::Merge)
        .map_err(e)?;
    channel.exec(command).map_err(e)?;
    channel.write_all(stdin).map_err(|io| Error::Protocol {
        address: host.endpoint(),
        message: io.to_string(),
    })?;
    channel.send_eof().map_err(e)?;
    // Each read waits at most io_timeout (the session's); the whole output, twice that.
    let deadline = std::time::Instant::now() + host.io_timeout * 2;
    let said = read_bounded(host, &mut channel, deadline, "output")?;
    let stderr = String::from_utf8_lossy(&said).into_owned();
    channel.wait_close().map_err(e)?;
    let status = channel.exit_status().map_err(e)?;
    Ok(Output { status, stderr })
}

/// Removes every occurrence of each secret from text bound for an error or a log.
pub fn redact(text: &str, secrets: &[&SecretString]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        let s = s.expose_secret();
        if !s.is_empty() {
            out = out.replace(s, "[REDACTED]");
        }
    }
    out.trim().chars().take(500).collect()
}
