//! The HTTP API (SPEC section 4): bearer tokens with scopes; VCF-shaped answers on
//! VCF and rotor routes, PrivX-shaped ones on PrivX routes. One file per family;
//! state (tokens, caller), error and paging are what the families share.

mod apidoc;
mod body;
mod credentials;
mod deploy;
mod error;
mod expirations;
mod login;
mod ops;
mod paging;
mod preflight;
mod privx;
mod resource_body;
mod resources;
mod rotations;
mod routes;
mod serve;
mod state;
mod tasks;
mod users;

pub use error::ApiError;
pub use routes::{document, ops_router, router};
pub use serve::Listeners;
pub use state::{load_tokens, ApiState, DeployConfig, Token};
pub use users::{hash_password, Users};
