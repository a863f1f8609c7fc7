//! `esxi`: ESXi's `passwd`, answered in a PTY over keyboard-interactive SSH (ESXi takes
//! passwords only that way). With an admin (root on ESXi; a sudo admin elsewhere) the
//! admin runs `passwd USER` and answers the new-password prompts; without one, the
//! account logs in with its current password and runs `passwd` itself. The prompts are
//! pam_passwdqc's ("Enter new password:", "Re-type new password:"), as ESXi prints them.

use secrecy::SecretString;

use super::contract::{settable, validate_username, Error, Host};
use super::platform::Driver;
use super::ssh;

pub struct Esxi;

/// An account name that is safe on a shell command line: `[A-Za-z0-9_][A-Za-z0-9_.-]*`.
fn esxi_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl Driver for Esxi {
    fn apply(
        &self,
        host: &Host,
        username: &str,
        old: Option<&SecretString>,
        new: &SecretString,
    ) -> Result<(), Error> {
        validate_username(username).map_err(|m| Error::Config(format!("username {m}")))?;
        // The name goes into a shell command line (`passwd NAME`): ESXi's own account
        // names only, and quoted as well.
        if !esxi_name(username) {
            return Err(Error::Config(format!(
                "username {username:?}: an esxi account name is letters, digits, '_', '.' and '-', not starting with '-' or '.'"
            )));
        }
        settable(new)?;
        let Some(admin) = &host.admin else {
            return super::dialogue::own_passwd(host, "esxi", username, old, new);
        };
        let (session, _) = ssh::admin_session(host)?;
        // The name is checked above (no quote, no shell character) and quoted.
        let command = if admin.sudo {
            format!("LC_ALL=C LANGUAGE=C sudo -n passwd '{username}'")
        } else {
            format!("LC_ALL=C LANGUAGE=C passwd '{username}'")
        };
        super::dialogue::passwd(host, session, &command, username, None, new)
    }

    fn logs_in_as_account(&self, host: &Host) -> bool {
        host.admin.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::esxi_name;

    #[test]
    fn only_plain_names_reach_the_command_line() {
        for good in ["root", "svc_01", "a.b-c", "_x", "Admin1"] {
            assert!(esxi_name(good), "{good}");
        }
        for bad in [
            "", "a;reboot", "$(id)", "a`id`", "-rf", ".x", "a'b", "a b", "a|b", "jürgen",
        ] {
            assert!(!esxi_name(bad), "{bad}");
        }
    }
}
