//! The inventory (SPEC section 6): resources (target hosts) and their accounts.
//! `apply` upserts a file's content idempotently and reports what changed; `retire`
//! deletes a resource (keeping its passwords) and `purge` removes it for good.

mod apply;
pub mod enroll;
mod retire;
mod spec;

pub use apply::{apply, Applier};
pub use retire::{purge, retire, Retired};
pub use spec::{
    check_files, default_account_type, default_credential_type, default_platform, default_port,
    default_ssh_auth, read, validate, AccountSpec, AdminSpec, Error, InventoryFile, ResourceSpec,
    RESOURCE_TYPES,
};
