//! Linux platforms.

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::ssh::{admin_session, exec_with_stdin, redact};
use super::{Driver, Error, Target};

/// `linux-chpasswd`: the admin logs in with its key and feeds `user:password` to
/// `chpasswd` on stdin (through `sudo -n` when configured). The password is never on a
/// command line.
pub struct Chpasswd;

impl Driver for Chpasswd {
    fn apply(&self, target: &Target, username: &str, _old: Option<&SecretString>, new: &SecretString) -> Result<(), Error> {
        super::validate_username(username).map_err(|m| Error::Config(format!("username {m}")))?;
        super::validate_password_charset(new.expose_secret()).map_err(|m| Error::Rejected { message: format!("password {m}") })?;
        let (session, admin) = admin_session(target)?;
        let command = if admin.sudo { "sudo -n /usr/sbin/chpasswd" } else { "/usr/sbin/chpasswd" };
        let line = Zeroizing::new(format!("{username}:{}\n", new.expose_secret()));
        let out = exec_with_stdin(target, &session, command, line.as_bytes())?;
        let _ = session.disconnect(None, "rotor: done", None);
        if out.status != 0 {
            let stderr = redact(&out.stderr, &[new]);
            // sudo refusing is the admin's configuration, not the password.
            if stderr.contains("sudo") && (stderr.contains("password is required") || stderr.contains("not allowed")) {
                return Err(Error::AdminAuth {
                    username: admin.username.clone(),
                    message: format!("sudo refused chpasswd: {stderr}"),
                });
            }
            return Err(Error::Rejected { message: format!("chpasswd exited with {}: {stderr}", out.status) });
        }
        Ok(())
    }
}
