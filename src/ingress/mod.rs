//! The faces requests come in by: AMQP and HTTP.

pub mod amqp;
pub mod guard;
pub mod http;
pub mod submit;
