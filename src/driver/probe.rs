//! Pre-flight checks on a Linux host: everything a rotation will need, tried without
//! changing anything there. The admin only reads (`sudo -n -l`, `getent`, `passwd -S`,
//! `chage -l`); the account's stored password is tried only when asked for, since a
//! refusal counts toward the account's lockout.

use chrono::NaiveDate;
use secrecy::SecretString;
use ssh2::Session;

use super::aging::{account_status, password_expiry};
pub use super::aging::{parse_chage, Aging};
use super::check::last_line;
pub use super::check::{Check, CheckName, CheckStatus};
use super::contract::{Error, Host, Login};
use super::ssh;

/// An account to check, with what rotor knows of it.
pub struct Subject {
    pub username: String,
    /// The stored current password, when rotor holds one.
    pub current: Option<SecretString>,
    /// Whether to try `current` (a refusal counts toward the lockout).
    pub try_password: bool,
    /// Why it must not be tried after all (the account's lockout budget is spent).
    pub hold_password: Option<String>,
}

/// The checks of one account, and its aging when the host told it.
pub struct Report {
    pub checks: Vec<Check>,
    pub aging: Option<Aging>,
    /// What the target answered to the stored password, when it was tried.
    pub password_outcome: Option<Login>,
}

/// `'text'` for a POSIX shell, whatever the text holds.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Runs a fixed read-only command on `session`: (exit status, output).
fn run(host: &Host, session: &Session, command: &str) -> Result<(i32, String), Error> {
    let channel = session
        .channel_session()
        .map_err(|e| ssh::protocol(host, e))?;
    let out = ssh::exec_with_stdin(host, channel, command, b"")?;
    Ok((out.status, out.stderr))
}

/// Runs every check for `subjects` on `host`, one admin session for all of them.
/// `needs_admin`: the platform changes passwords through the admin (chpasswd).
pub fn probe(
    host: &Host,
    subjects: &[Subject],
    needs_admin: bool,
    today: NaiveDate,
) -> Vec<Report> {
    use CheckName::*;
    use CheckStatus::*;
    let mut common = Vec::new();
    let skip_rest = |common: &[Check], why: &str| -> Vec<Report> {
        subjects
            .iter()
            .map(|_| {
                let mut checks = common.to_vec();
                for name in CheckName::ALL {
                    if !checks.iter().any(|c| c.name == name) {
                        checks.push(Check::new(name, Skipped, why));
                    }
                }
                Report {
                    checks,
                    aging: None,
                    password_outcome: None,
                }
            })
            .collect()
    };
    // REACHABLE and HOST_KEY come from the first connection: the admin's, or a bare one.
    let opened = match &host.admin {
        Some(_) => ssh::admin_session(host).map(|(s, _)| Some(s)),
        None => ssh::connect(host).map(|s| {
            let _ = s.disconnect(None, "rotor: preflight", None);
            None
        }),
    };
    let admin_session = match opened {
        Ok(session) => {
            common.push(Check::new(
                Reachable,
                Pass,
                format!("{}:{} answers SSH", host.address, host.port),
            ));
            common.push(host_key_pass(host, session.as_ref()));
            session
        }
        Err(e @ (Error::Connect { .. } | Error::Timeout { .. } | Error::Protocol { .. })) => {
            common.push(Check::new(
                Reachable,
                Fail,
                format!("{e}; check the address, the port and the firewall"),
            ));
            return skip_rest(&common, "the host is not reachable");
        }
        Err(e @ (Error::HostKeyMismatch { .. } | Error::NoPinnedHostKey)) => {
            common.push(Check::new(
                Reachable,
                Pass,
                format!("{}:{} answers SSH", host.address, host.port),
            ));
            common.push(Check::new(
                HostKey,
                Fail,
                format!("{e}; pin the right key (`rotor host scan`) after checking it out of band"),
            ));
            return skip_rest(
                &common,
                "rotor does not authenticate to a host whose key is not pinned",
            );
        }
        Err(e) => {
            common.push(Check::new(
                Reachable,
                Pass,
                format!("{}:{} answers SSH", host.address, host.port),
            ));
            common.push(Check::new(HostKey, Pass, "the host key is pinned"));
            common.push(Check::new(
                AdminAuth,
                Fail,
                format!(
                    "{e}; install rotor's public key for the admin (`rotor admin-key generate`)"
                ),
            ));
            return skip_rest(&common, "the admin could not log in");
        }
    };
    let Some(session) = admin_session else {
        let (status, why) = if needs_admin {
            (
                Fail,
                "the resource has no admin account, and its platform changes passwords through one",
            )
        } else {
            (Skipped, "the resource has no admin account (its platform changes a password as the account itself)")
        };
        common.push(Check::new(AdminAuth, status, why));
        return subjects
            .iter()
            .map(|s| without_admin(host, &common, s, today))
            .collect();
    };
    let admin = host.admin.as_ref().expect("an admin session has an admin");
    common.push(Check::new(
        AdminAuth,
        Pass,
        format!("{} logs in", admin.username),
    ));
    common.push(sudo_check(host, &session, admin));
    let reports = subjects
        .iter()
        .map(|s| with_admin(host, &session, admin.sudo, &common, s, today))
        .collect();
    let _ = session.disconnect(None, "rotor: preflight done", None);
    reports
}

fn host_key_pass(host: &Host, session: Option<&Session>) -> Check {
    let found = session.and_then(ssh::fingerprint);
    let message = match (host.insecure_accept_any_host_key, found) {
        (true, Some(f)) => {
            format!("any host key is accepted (insecure_accept_any_host_key); the host showed {f}")
        }
        (true, None) => "any host key is accepted (insecure_accept_any_host_key)".to_string(),
        (false, Some(f)) => format!("{f} is pinned"),
        (false, None) => "the host key is pinned".to_string(),
    };
    Check::new(CheckName::HostKey, CheckStatus::Pass, message)
}

fn sudo_check(host: &Host, session: &Session, admin: &super::contract::Admin) -> Check {
    use CheckStatus::*;
    let name = CheckName::SudoChpasswd;
    if !admin.sudo {
        return match run(host, session, "id -u") {
            Ok((0, out)) if out.trim() == "0" => Check::new(name, Pass, "the admin is root; no sudo needed"),
            Ok(_) => Check::new(name, Fail, format!("{} is not root and the resource has sudo = false: set sudo = true and allow it `/usr/sbin/chpasswd` with NOPASSWD", admin.username)),
            Err(e) => Check::new(name, Fail, e.to_string()),
        };
    }
    match run(host, session, "sudo -n -l /usr/sbin/chpasswd") {
        Ok((0, _)) => Check::new(name, Pass, "sudo -n allows /usr/sbin/chpasswd"),
        Ok((_, out)) => Check::new(name, Fail, format!(
            "sudo -n -l /usr/sbin/chpasswd refused ({}): add `{} ALL=(root) NOPASSWD: /usr/sbin/chpasswd` to sudoers",
            last_line(&out), admin.username
        )),
        Err(e) => Check::new(name, Fail, e.to_string()),
    }
}

const REFUSED: &str =
    "the stored password is refused: REMEDIATE the account with the password it has";

/// What the target answered to the stored password, read back from its check.
fn outcome_of(check: &Check) -> Option<Login> {
    match check.status {
        CheckStatus::Pass => Some(Login::Accepted),
        CheckStatus::Fail if check.message == REFUSED => Some(Login::Refused),
        _ => None,
    }
}

/// Tries the stored password, when asked to and rotor has one.
fn password_check(host: &Host, subject: &Subject) -> (Check, bool) {
    use CheckStatus::*;
    let name = CheckName::CurrentPassword;
    if !subject.try_password {
        return (
            Check::new(
                name,
                Skipped,
                "not asked for (a refused attempt counts toward the account's lockout)",
            ),
            false,
        );
    }
    if let Some(why) = &subject.hold_password {
        return (Check::new(name, Skipped, why.clone()), false);
    }
    let Some(current) = subject.current.as_ref() else {
        return (
            Check::new(name, Skipped, "rotor holds no password for this account"),
            false,
        );
    };
    match ssh::password_login(host, &subject.username, current) {
        Ok(Login::Accepted) => (Check::new(name, Pass, "the stored password logs in"), true),
        Ok(Login::Refused) => (Check::new(name, Fail, REFUSED), false),
        Err(e) => (Check::new(name, Fail, e.to_string()), false),
    }
}

fn with_admin(
    host: &Host,
    session: &Session,
    sudo: bool,
    common: &[Check],
    subject: &Subject,
    today: NaiveDate,
) -> Report {
    use CheckName::*;
    use CheckStatus::*;
    let mut checks = common.to_vec();
    let user = quote(&subject.username);
    let exists = match run(host, session, &format!("getent passwd {user}")) {
        Ok((0, _)) => Check::new(AccountExists, Pass, format!("{} exists", subject.username)),
        Ok((2, _)) => Check::new(
            AccountExists,
            Fail,
            format!(
                "there is no account {} on the host: create it, or remove it from the inventory",
                subject.username
            ),
        ),
        Ok((status, out)) => Check::new(
            AccountExists,
            Fail,
            format!("getent exited with {status}: {}", last_line(&out)),
        ),
        Err(e) => Check::new(AccountExists, Fail, e.to_string()),
    };
    let exists_ok = exists.status == Pass;
    checks.push(exists);
    if !exists_ok {
        for name in [CurrentPassword, AccountStatus, PasswordExpiry] {
            checks.push(Check::new(name, Skipped, "the account does not exist"));
        }
        return Report {
            checks,
            aging: None,
            password_outcome: None,
        };
    }
    let (password, logged_in) = password_check(host, subject);
    let outcome = outcome_of(&password);
    checks.push(password);
    let sudo = if sudo { "sudo -n " } else { "" };
    let status = run(
        host,
        session,
        &format!("LC_ALL=C {sudo}/usr/bin/passwd -S {user}"),
    );
    let chage = run(
        host,
        session,
        &format!("LC_ALL=C {sudo}/usr/bin/chage -l {user}"),
    );
    let aging = match &chage {
        Ok((0, out)) => parse_chage(out),
        _ => None,
    };
    checks.push(account_status(status, aging, logged_in, today));
    let (expiry, aging) = match (aging, chage) {
        (Some(aging), _) => (password_expiry(aging, today), Some(aging)),
        (None, _) if logged_in => own_aging(host, subject, today),
        (None, Ok((_, out))) => (Check::new(PasswordExpiry, Skipped, format!(
            "chage -l refused ({}): allow the admin `/usr/bin/chage ^-l [a-z_][a-z0-9_.-]*$` in sudoers", last_line(&out))), None),
        (None, Err(e)) => (Check::new(PasswordExpiry, Skipped, e.to_string()), None),
    };
    checks.push(expiry);
    Report {
        checks,
        aging,
        password_outcome: outcome,
    }
}

/// Without an admin, what the account itself can show: its password and its own `chage -l`.
fn without_admin(host: &Host, common: &[Check], subject: &Subject, today: NaiveDate) -> Report {
    use CheckName::*;
    use CheckStatus::*;
    let mut checks = common.to_vec();
    checks.push(Check::new(SudoChpasswd, Skipped, "no admin account"));
    let (password, logged_in) = password_check(host, subject);
    let outcome = outcome_of(&password);
    if logged_in {
        checks.push(Check::new(AccountExists, Pass, "its password logs in"));
        checks.push(password);
        checks.push(Check::new(
            AccountStatus,
            Pass,
            "not locked: its password logs in",
        ));
        let (expiry, aging) = own_aging(host, subject, today);
        checks.push(expiry);
        return Report {
            checks,
            aging,
            password_outcome: outcome,
        };
    }
    checks.push(Check::new(
        AccountExists,
        Skipped,
        "no admin to look it up, and its password did not log in",
    ));
    checks.push(password);
    checks.push(Check::new(AccountStatus, Skipped, "no admin to ask"));
    checks.push(Check::new(PasswordExpiry, Skipped, "no admin to ask"));
    Report {
        checks,
        aging: None,
        password_outcome: outcome,
    }
}

/// `chage -l` run as the account itself (allowed for one's own account).
fn own_aging(host: &Host, subject: &Subject, today: NaiveDate) -> (Check, Option<Aging>) {
    let name = CheckName::PasswordExpiry;
    let Some(current) = subject.current.as_ref() else {
        return (
            Check::new(name, CheckStatus::Skipped, "no password to log in with"),
            None,
        );
    };
    let read = ssh::password_session(host, &subject.username, current).and_then(|session| {
        let out = run(
            host,
            &session,
            &format!("LC_ALL=C /usr/bin/chage -l {}", quote(&subject.username)),
        );
        let _ = session.disconnect(None, "rotor: preflight done", None);
        out
    });
    match read {
        Ok((0, out)) => match parse_chage(&out) {
            Some(aging) => (password_expiry(aging, today), Some(aging)),
            None => (
                Check::new(
                    name,
                    CheckStatus::Skipped,
                    "chage -l printed what rotor does not read",
                ),
                None,
            ),
        },
        Ok((_, out)) => (
            Check::new(
                name,
                CheckStatus::Skipped,
                format!("chage -l failed: {}", last_line(&out)),
            ),
            None,
        ),
        Err(e) => (Check::new(name, CheckStatus::Skipped, e.to_string()), None),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoting_keeps_a_name_one_word() {
        assert_eq!(super::quote("a'b;c"), r"'a'\''b;c'");
    }
}
