//! Drivers: how rotor logs in to a host and changes a password there, one per platform.
//! Everything here is blocking (ssh2); the engine runs it on the blocking pool.

mod aging;
mod check;
mod contract;
pub mod linux;
mod platform;
pub mod postgres;
pub mod probe;
pub mod sessions;
pub mod ssh;

pub use contract::{
    validate_password_charset, validate_username, Admin, Error, Host, Login, SshAuth, SSH_AUTHS,
};
pub use platform::Driver;

/// The driver for a platform name, or None if rotor does not know it.
pub fn driver(platform: &str) -> Option<&'static dyn Driver> {
    match platform {
        "linux-chpasswd" => Some(&linux::Chpasswd),
        "linux-passwd" => Some(&linux::Passwd),
        "postgresql" => Some(&postgres::Postgres),
        _ => None,
    }
}

pub const PLATFORMS: &[&str] = &["linux-chpasswd", "linux-passwd", "postgresql"];

/// Platforms reached over SSH (host keys pinned, pre-flight's checks apply).
pub fn is_ssh(platform: &str) -> bool {
    platform != "postgresql"
}
