//! The faces requests come in by: AMQP and HTTP.

pub mod amqp;
mod batch;
mod deadletter;
pub mod guard;
mod intake;
pub mod http;
pub mod submit;
