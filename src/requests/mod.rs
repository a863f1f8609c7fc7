//! Requests as producers send them (VCF `CredentialsUpdateSpec`), parsed and checked
//! against the inventory, becoming a `NewTask`. Every error names the offending field.

#[cfg(test)]
mod fuzz;
mod lookup;
mod parse;
mod redact;
mod rejection;
mod resolve;
#[cfg(test)]
mod tests;

pub use lookup::{Lookup, Names, ResourceRef};
pub use parse::{
    parse_json, parse_spec, AutoRotatePolicy, CredentialSpec, CredentialsUpdateSpec, Element,
    OperationType, PrivxPassword, PrivxRotate,
};
pub use redact::{nul_in, redact_secrets, NUL_MESSAGE, REDACTED};
pub use rejection::{Refusal, RejectCode, Rejection};
pub use resolve::{resolve, resolve_privx, Context, Origin};
