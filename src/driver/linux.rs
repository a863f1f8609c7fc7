//! Linux platforms.

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::contract::{settable, validate_username, Error, Host};
use super::platform::{Driver, Prepared};
use super::sessions::AdminSession;
use super::ssh::{exec_with_stdin, redact};

/// `linux-chpasswd`: the admin logs in with its key (or reuses its session to the host)
/// and feeds `user:password` to `chpasswd` on stdin (through `sudo -n` when configured). The password is never on a
/// command line.
pub struct Chpasswd;

impl Driver for Chpasswd {
    fn apply(
        &self,
        host: &Host,
        username: &str,
        old: Option<&SecretString>,
        new: &SecretString,
    ) -> Result<(), Error> {
        self.apply_prepared(host, username, old, new, Prepared::default())
    }

    /// The admin session, kept one or new, with a channel open on it.
    fn prepare_apply(&self, host: &Host) -> Result<Prepared, Error> {
        Ok(Prepared(Some(AdminSession::open(host)?)))
    }

    fn apply_prepared(
        &self,
        host: &Host,
        username: &str,
        _old: Option<&SecretString>,
        new: &SecretString,
        prepared: Prepared,
    ) -> Result<(), Error> {
        validate_username(username).map_err(|m| Error::Config(format!("username {m}")))?;
        settable(new)?;
        let admin = host.admin.as_ref().ok_or(Error::NoAdmin)?;
        // The admin session is kept for the host's next change (driver::sessions).
        let (session, channel) = match prepared.0 {
            Some(opened) => opened,
            None => AdminSession::open(host)?,
        };
        let command = if admin.sudo {
            "sudo -n /usr/sbin/chpasswd"
        } else {
            "/usr/sbin/chpasswd"
        };
        let line = Zeroizing::new(format!("{username}:{}\n", new.expose_secret()));
        // An error here drops the session: it is not known to be in a good state.
        let out = exec_with_stdin(host, channel, command, line.as_bytes())?;
        session.keep();
        if out.status != 0 {
            let stderr = redact(&out.stderr, &[new]);
            // sudo refusing is the admin's configuration, not the password.
            if stderr.contains("sudo")
                && (stderr.contains("password is required") || stderr.contains("not allowed"))
            {
                return Err(Error::AdminAuth {
                    username: admin.username.clone(),
                    message: format!("sudo refused chpasswd: {stderr}"),
                });
            }
            return Err(Error::Rejected {
                message: format!("chpasswd exited with {}: {stderr}", out.status),
            });
        }
        Ok(())
    }
}

/// `linux-passwd`: the account changes its own password. rotor logs in as the account
/// with its current password and answers `passwd`'s prompts in a PTY; no admin account
/// is involved. Both passwords travel only inside the SSH channel, typed at prompts
/// that do not echo.
pub struct Passwd;

impl Driver for Passwd {
    fn apply(
        &self,
        host: &Host,
        username: &str,
        old: Option<&SecretString>,
        new: &SecretString,
    ) -> Result<(), Error> {
        validate_username(username).map_err(|m| Error::Config(format!("username {m}")))?;
        settable(new)?;
        super::dialogue::own_passwd(host, "linux-passwd", username, old, new)
    }

    fn logs_in_as_account(&self, _host: &Host) -> bool {
        true
    }
}
