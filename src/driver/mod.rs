//! Drivers: how rotor logs in to a host and changes a password there, one per platform.
//! Everything here is blocking (ssh2); the engine runs it on the blocking pool.

mod aging;
mod blocking;
mod check;
mod contract;
mod dialogue;
pub mod esxi;
pub mod http;
pub mod linux;
mod platform;
pub mod postgres;
pub mod probe;
pub mod sessions;
pub mod ssh;

pub use contract::{
    validate_password_charset, validate_username, Admin, Error, Host, Login, SshAuth, SSH_AUTHS,
};
pub use platform::{Driver, Prepared};
pub use ssh::LoginLine;

/// The driver for a platform name, or None if rotor does not know it.
pub fn driver(platform: &str) -> Option<&'static dyn Driver> {
    match platform {
        "linux-chpasswd" => Some(&linux::Chpasswd),
        "linux-passwd" => Some(&linux::Passwd),
        "esxi" => Some(&esxi::Esxi),
        "http" => Some(&http::Http),
        "postgresql" => Some(&postgres::Postgres),
        _ => None,
    }
}

/// The driver a privileged reset (REMEDIATE without a password) goes through: the
/// admin's change, which needs no current password.
pub fn reset_driver(platform: &str) -> Option<&'static dyn Driver> {
    match platform {
        "linux-chpasswd" | "linux-passwd" => Some(&linux::Chpasswd),
        other => driver(other),
    }
}

pub const PLATFORMS: &[&str] = &[
    "linux-chpasswd",
    "linux-passwd",
    "esxi",
    "http",
    "postgresql",
];

/// Platforms reached over SSH (host keys pinned, pre-flight's checks apply).
pub fn is_ssh(platform: &str) -> bool {
    !matches!(platform, "postgresql" | "http")
}
