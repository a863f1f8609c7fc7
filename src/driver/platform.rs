//! One way of changing passwords on a kind of target (DESIGN.md, platforms).

use secrecy::SecretString;

use super::contract::{Error, Host, Login};
use super::sessions::AdminSession;
use super::ssh::{self, LoginLine};

/// What `Driver::prepare_apply` opened for the change: an authenticated session with a
/// channel open on it, or nothing (`apply` opens what it needs itself).
#[derive(Default)]
pub struct Prepared(pub(super) Option<(AdminSession, ssh2::Channel)>);

impl Prepared {
    /// Whether the change's own connection is open and authenticated.
    pub fn is_ready(&self) -> bool {
        self.0.is_some()
    }
}

pub trait Driver: Send + Sync {
    /// Sets `new` as `username`'s password. `old` is its current one, when rotor knows it.
    fn apply(
        &self,
        host: &Host,
        username: &str,
        old: Option<&SecretString>,
        new: &SecretString,
    ) -> Result<(), Error>;

    /// A fresh login as `username` with `password` (SSH password authentication unless
    /// the platform knows better).
    fn login(&self, host: &Host, username: &str, password: &SecretString) -> Result<Login, Error> {
        ssh::password_login(host, username, password)
    }

    /// Opens what `apply` will change the password through, ahead of it, for
    /// `apply_prepared`: a platform that changes it through an authenticated session
    /// returns that session, and only then is VERIFY's connection opened beside the
    /// change (`open_login`). So one rotation never holds two unauthenticated connections
    /// to a host at once (a stock sshd drops those past `MaxStartups 10`).
    fn prepare_apply(&self, _host: &Host) -> Result<Prepared, Error> {
        Ok(Prepared::default())
    }

    /// `apply` through what `prepare_apply` opened.
    fn apply_prepared(
        &self,
        host: &Host,
        username: &str,
        old: Option<&SecretString>,
        new: &SecretString,
        _prepared: Prepared,
    ) -> Result<(), Error> {
        self.apply(host, username, old, new)
    }

    /// The connection `verify_both` will use, opened ahead (while `apply` runs):
    /// connected and the host key checked, nothing sent as the account (the account is
    /// looked up by the target at VERIFY, after the change). None where the platform has
    /// no such thing. It goes with the SSH defaults of `login` and `verify_both`: a
    /// driver that overrides those overrides this.
    fn open_login(&self, host: &Host) -> Result<Option<LoginLine>, Error> {
        ssh::open_line(host).map(Some)
    }

    /// VERIFY both ways in one go: `old` tried first (a refused attempt leaves the
    /// connection open), then `new`, on `line` if one was opened ahead. Returns (old,
    /// new); new is None when old was accepted, which ends the attempts, or when the
    /// target closed the connection after the refusal (the caller checks new on its own
    /// then).
    fn verify_both(
        &self,
        host: &Host,
        username: &str,
        old: &SecretString,
        new: &SecretString,
        line: Option<LoginLine>,
    ) -> Result<(Login, Option<Login>), Error> {
        let outcomes = ssh::password_attempts(host, username, &[old, new], line)?;
        Ok((outcomes[0], outcomes.get(1).copied()))
    }

    /// Whether `apply` logs in as the account with its current password (which a
    /// refusal counts against the lockout budget, and which rotor must know).
    fn logs_in_as_account(&self, _host: &Host) -> bool {
        false
    }
}

/// VERIFY both ways for a target where a refused login ends the connection (a database,
/// an HTTP API): `old` first, then `new` unless `old` was accepted.
pub(super) fn verify_in_turn(
    driver: &dyn Driver,
    host: &Host,
    username: &str,
    old: &SecretString,
    new: &SecretString,
) -> Result<(Login, Option<Login>), Error> {
    let old_outcome = driver.login(host, username, old)?;
    if old_outcome == Login::Accepted {
        return Ok((old_outcome, None));
    }
    Ok((old_outcome, Some(driver.login(host, username, new)?)))
}
