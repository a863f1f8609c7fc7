//! rotor: a password rotation worker and scheduler.
//!
//! Requests arrive on AMQP or HTTP and become tasks in PostgreSQL; workers claim their
//! subtasks and rotate passwords on target hosts over SSH under the safe rotation
//! protocol (DESIGN.md); every version is kept encrypted in the vault.

pub mod app;
pub mod cli;
pub mod config;
pub mod db;
pub mod engine;
pub mod events;
pub mod failpoint;
pub mod ingress;
pub mod inventory;
pub mod metrics;
pub mod policy;
pub mod requests;
pub mod scheduler;
pub mod target;
pub mod telemetry;
pub mod vault;
pub mod vcf_error;
