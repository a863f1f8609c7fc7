//! The faces requests come in by: AMQP and HTTP.

pub mod amqp;
mod deadletter;
pub mod guard;
pub mod http;
pub mod submit;
