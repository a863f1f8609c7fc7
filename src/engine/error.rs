//! The engine's errors, as types that carry what callers decide on: a store error
//! (the database is away, the lease was taken over, the vault refused), and why a
//! stage stopped (transient or not, and whether the target may hold a password rotor
//! cannot name).

use uuid::Uuid;

use crate::driver;
use crate::vcf_error::VcfError;

/// Reading or writing the task store, the leases and the vault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("the lease on credential {0} was taken over; this worker may no longer write")]
    LostLease(Uuid),
    /// The vault could not seal or open a password (a key problem, not the database's).
    #[error("vault: {0}")]
    Vault(crate::vault::Error),
    /// A resource the task names was deleted before the task could be recorded.
    #[error("a resource this task names was deleted")]
    Retired,
}

impl From<crate::vault::Error> for Error {
    fn from(e: crate::vault::Error) -> Self {
        match e {
            crate::vault::Error::Db(e) => Error::Db(e),
            other => Error::Vault(other),
        }
    }
}

impl Error {
    /// Trying again later can help: the database or the lease, not a key problem.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Db(_)
                | Error::LostLease(_)
                | Error::Vault(crate::vault::Error::SealingKeyNotLoaded(_))
        )
    }
}

/// Why a stage stopped.
pub struct StageError {
    pub error: VcfError,
    pub transient: bool,
    /// The target may hold a password rotor cannot name (REMEDIATE repairs it).
    pub unresolved: bool,
}

impl StageError {
    pub fn permanent(code: &str, message: impl Into<String>) -> Self {
        StageError {
            error: VcfError::new(code, message),
            transient: false,
            unresolved: false,
        }
    }

    /// A driver's error; `unresolved` when it says the target may have changed.
    pub fn driver(e: driver::Error) -> Self {
        StageError {
            transient: e.is_transient(),
            unresolved: false,
            error: VcfError::new(e.code(), e.to_string()).cause(e.code(), e.to_string()),
        }
    }

    /// A driver's error while changing the password: cut off mid-way, the change may or
    /// may not have happened.
    pub fn driver_change(e: driver::Error) -> Self {
        let may_have_changed = e.may_have_changed();
        let error = StageError::driver(e);
        if may_have_changed {
            error.unresolved()
        } else {
            error
        }
    }

    pub fn unresolved(mut self) -> Self {
        self.unresolved = true;
        self.error.remediation_message =
            "The target's password may differ from rotor's current version: run REMEDIATE for this credential.".into();
        self
    }
}

impl From<Error> for StageError {
    fn from(e: Error) -> Self {
        match e {
            // Nothing was written: the rotation waits for a restart with the new keyring.
            Error::Vault(e @ crate::vault::Error::SealingKeyNotLoaded(_)) => StageError {
                error: VcfError::new("VAULT_KEY_NOT_LOADED", e.to_string()),
                transient: true,
                unresolved: false,
            },
            Error::Vault(e) => StageError::permanent("VAULT_ERROR", e.to_string()).unresolved(),
            other => StageError {
                error: VcfError::new("INTERNAL_ERROR", other.to_string()),
                transient: true,
                unresolved: false,
            },
        }
    }
}

impl From<sqlx::Error> for StageError {
    fn from(e: sqlx::Error) -> Self {
        Error::Db(e).into()
    }
}

impl From<crate::vault::Error> for StageError {
    fn from(e: crate::vault::Error) -> Self {
        Error::from(e).into()
    }
}
