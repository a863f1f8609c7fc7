//! Integration tests: real PostgreSQL, RabbitMQ, a `rotor run` process and an OpenSSH
//! sshd on loopback with real Linux accounts. Every test checks the target itself.

mod application;
mod breaker;
mod bulk;
mod cli;
mod deploy;
mod esxi;
mod expiry;
mod fuzz;
mod helpers;
mod http_targets;
mod intake;
mod kbdint;
mod leaks;
mod lockout;
mod metrics;
mod operations;
mod package;
mod platforms;
mod postgres;
mod preflight;
mod proofs;
pub mod reliability;
mod rotate;
mod scheduler;
mod tls;
mod trust;
mod vault;
mod vcf_client;
mod webhooks;
