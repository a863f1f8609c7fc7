//! The drivers that speak through async clients (sqlx, reqwest) run them from the
//! blocking pool, on the runtime that pool belongs to.

use super::contract::{Error, Host};

/// Runs `work` to its end, or fails with a timeout after `rounds` times the host's
/// connect and I/O timeouts (one per request it makes). `what` names the server.
pub(super) fn block_on<T>(
    host: &Host,
    what: &str,
    rounds: u32,
    work: impl std::future::Future<Output = T>,
) -> Result<T, Error> {
    let address = host.endpoint();
    let handle = tokio::runtime::Handle::try_current().map_err(|_| {
        Error::Config(format!(
            "{address}: the {what} driver runs inside rotor's runtime"
        ))
    })?;
    handle
        .block_on(async {
            tokio::time::timeout((host.connect_timeout + host.io_timeout) * rounds, work).await
        })
        .map_err(|_| Error::Timeout {
            address,
            message: format!("{what} did not answer in time"),
        })
}
