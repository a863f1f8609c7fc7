//! The faces requests come in by: AMQP and HTTP.

pub mod amqp;
mod batch;
mod deadletter;
pub mod guard;
pub mod http;
mod intake;
pub mod submit;
