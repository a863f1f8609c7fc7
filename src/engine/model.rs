//! The task model: operations, statuses and stages, stored as text.

use std::fmt;
use std::str::FromStr;

macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!("unknown {} `{other}`", stringify!($name))),
                }
            }
        }
    };
}

text_enum!(
    /// What a request asks for.
    Operation {
        Rotate = "ROTATE",
        Update = "UPDATE",
        Remediate = "REMEDIATE",
        UpdateAutoRotatePolicy = "UPDATE_AUTO_ROTATE_POLICY",
        SetPassword = "SET_PASSWORD",
    }
);

text_enum!(
    TaskStatus {
        Pending = "PENDING",
        InProgress = "IN_PROGRESS",
        Successful = "SUCCESSFUL",
        Failed = "FAILED",
        Cancelled = "CANCELLED",
    }
);

impl TaskStatus {
    pub fn is_final(self) -> bool {
        matches!(self, TaskStatus::Successful | TaskStatus::Failed | TaskStatus::Cancelled)
    }
}

text_enum!(
    /// The steps of a subtask, in the order they run.
    Stage {
        Validate = "VALIDATE",
        Generate = "GENERATE",
        PolicyCheck = "POLICY_CHECK",
        StagePending = "STAGE_PENDING",
        Apply = "APPLY",
        VerifyNew = "VERIFY_NEW",
        VerifyOldRejected = "VERIFY_OLD_REJECTED",
        VerifySupplied = "VERIFY_SUPPLIED",
        Commit = "COMMIT",
    }
);

impl Stage {
    pub fn description(self) -> &'static str {
        match self {
            Stage::Validate => "Check the request, the resource and the account",
            Stage::Generate => "Generate a password that complies with the account's policy",
            Stage::PolicyCheck => "Check the supplied password against the account's policy",
            Stage::StagePending => "Store the new password, encrypted, as a pending version",
            Stage::Apply => "Change the password on the target",
            Stage::VerifyNew => "Log in to the target with the new password",
            Stage::VerifyOldRejected => "Check that the old password no longer logs in",
            Stage::VerifySupplied => "Log in to the target with the supplied password",
            Stage::Commit => "Make the new password current",
        }
    }

    /// VCF's stage `type`: what part of the system does the work.
    pub fn kind(self) -> &'static str {
        match self {
            Stage::Validate | Stage::PolicyCheck => "VALIDATION",
            Stage::Generate => "PASSWORD_GENERATION",
            Stage::StagePending | Stage::Commit => "VAULT",
            Stage::Apply => "TARGET_UPDATE",
            Stage::VerifyNew | Stage::VerifyOldRejected | Stage::VerifySupplied => "TARGET_VERIFICATION",
        }
    }
}

/// The stages a subtask of this operation runs. `reconcile`: REMEDIATE without a
/// password, where the admin sets a fresh password (the old one is unknown).
pub fn stages_for(operation: Operation, reconcile: bool) -> &'static [Stage] {
    use Stage::*;
    match operation {
        Operation::Rotate => &[Validate, Generate, StagePending, Apply, VerifyNew, VerifyOldRejected, Commit],
        Operation::Update => &[Validate, PolicyCheck, StagePending, Apply, VerifyNew, VerifyOldRejected, Commit],
        Operation::Remediate if reconcile => &[Validate, Generate, StagePending, Apply, VerifyNew, VerifyOldRejected, Commit],
        Operation::Remediate => &[Validate, VerifySupplied, Commit],
        Operation::UpdateAutoRotatePolicy => &[Validate, Commit],
        Operation::SetPassword => &[Validate, Commit],
    }
}
