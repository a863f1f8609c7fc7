//! The HTTP API (SPEC section 4): bearer tokens with scopes; VCF-shaped answers on
//! VCF and rotor routes, PrivX-shaped ones on PrivX routes. One file per family;
//! state (tokens, caller), error and paging are what the families share.

mod body;
mod error;
mod login;
mod ops;
mod paging;
mod privx;
mod resources;
mod routes;
mod serve;
mod state;
mod users;
mod vcf;

pub use error::ApiError;
pub use routes::{ops_router, router};
pub use serve::Listeners;
pub use state::{load_tokens, ApiState, Token};
pub use users::{hash_password, Users};
