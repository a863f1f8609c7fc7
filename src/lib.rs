//! rotor: a password rotation worker and scheduler.
//!
//! Requests arrive on AMQP or HTTP and become tasks in PostgreSQL; workers claim their
//! subtasks and rotate passwords on target hosts over SSH under the safe rotation
//! protocol (DESIGN.md); every version is kept encrypted in the vault.
//!
//! The flow reads top to bottom, and no module imports one above it:
//! `app`/`cli` → `ingress` → `requests`/`inventory` → `scheduler` → `engine` → `driver` →
//! `vault`, with `broker`, `schedule`, `policy`, `config` and the small helpers at the
//! bottom. `scripts/check-imports.py` keeps it so.

pub mod access;
pub mod app;
pub mod audit;
pub mod breaker;
pub mod broker;
pub mod bulk;
pub mod cli;
pub mod config;
pub mod db;
pub mod driver;
pub mod engine;
pub mod failpoint;
pub mod hygiene;
pub mod ingress;
pub mod inventory;
pub mod metrics;
pub mod policy;
pub mod requests;
pub mod schedule;
pub mod scheduler;
pub mod telemetry;
pub mod vault;
pub mod vcf_error;
pub mod vocab;
