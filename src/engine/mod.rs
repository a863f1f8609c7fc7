//! The engine: workers claim subtasks from PostgreSQL and run their stages under the
//! safe rotation protocol (DESIGN.md). Inside, the flow reads top to bottom:
//! workers → rotation (the stage loop) → stages → account (the driver seam), with
//! recovery for giving up safely; lease, repo and lifecycle own the rows they write;
//! view reads the Task JSON; events publishes status changes; admission lets intake's
//! backlog go first.

mod account;
pub mod admission;
mod context;
pub mod control;
mod error;
pub mod events;
pub mod expiry;
pub mod lease;
pub mod lifecycle;
mod lockout;
pub mod model;
pub mod outbox;
pub mod preflight;
pub mod record;
mod recovery;
pub mod repo;
mod rotation;
mod stages;
mod validate;
pub mod view;
pub mod webhooks;
mod workers;

pub use account::{check_current, CheckError};
pub use context::Engine;
pub use error::Error;
pub use workers::run_workers;
