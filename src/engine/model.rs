//! The task model: operations, statuses and stages, stored as text (the names below,
//! as the schema's CHECK constraints list them).

use serde::{Deserialize, Serialize};
use strum::{Display, EnumString, IntoStaticStr};

/// A value read from a column whose CHECK constraint admits only these names, as its
/// type; anything else means the schema and the code disagree.
pub fn stored<T: std::str::FromStr>(text: &str) -> T {
    text.parse()
        .unwrap_or_else(|_| panic!("`{text}` is not a stored {}", std::any::type_name::<T>()))
}

/// What a request asks for.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Display,
    EnumString,
    IntoStaticStr,
    Serialize,
    Deserialize,
)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Operation {
    Rotate,
    Update,
    Remediate,
    UpdateAutoRotatePolicy,
    SetPassword,
}

impl Operation {
    /// The operations that never connect to the target (only rotor's records change):
    /// `worker.per_host` does not count or hold them.
    pub const OFF_TARGET: [Operation; 1] = [Operation::UpdateAutoRotatePolicy];

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn touches_target(self) -> bool {
        !Self::OFF_TARGET.contains(&self)
    }
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Display,
    EnumString,
    IntoStaticStr,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    Pending,
    InProgress,
    Successful,
    Failed,
    Cancelled,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A subtask's status: one credential of a task.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Display,
    EnumString,
    IntoStaticStr,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SubtaskStatus {
    Pending,
    InProgress,
    Successful,
    Failed,
    Cancelled,
    NotApplicable,
}

impl SubtaskStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Display,
    EnumString,
    IntoStaticStr,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StageStatus {
    Pending,
    InProgress,
    Successful,
    Failed,
    Cancelled,
    NotApplicable,
}

impl StageStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Whether rotor can tell what the targets of a task hold (UNRESOLVED: run REMEDIATE).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Display,
    EnumString,
    IntoStaticStr,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Resolution {
    Resolved,
    Unresolved,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A credential's state: ACTIVE, OUT_OF_SYNC when the heartbeat found its stored
/// password no longer logs in (REMEDIATE repairs it), RETIRED when its resource was
/// deleted (its versions kept until `rotor resource purge`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Display,
    EnumString,
    IntoStaticStr,
    Serialize,
    Deserialize,
)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CredentialStatus {
    Active,
    OutOfSync,
    Retired,
}

impl CredentialStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl StageStatus {
    /// The stage has run to its end and is skipped on a resume.
    pub fn is_done(self) -> bool {
        matches!(self, StageStatus::Successful | StageStatus::NotApplicable)
    }
}

impl TaskStatus {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskStatus::Successful | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }
}

/// The steps of a subtask, in the order they run.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Display,
    EnumString,
    IntoStaticStr,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[schema(as = StageName)]
pub enum Stage {
    Validate,
    Generate,
    PolicyCheck,
    StagePending,
    Apply,
    VerifyNew,
    VerifyOldRejected,
    VerifySupplied,
    Commit,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

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
            Stage::VerifyNew | Stage::VerifyOldRejected | Stage::VerifySupplied => {
                "TARGET_VERIFICATION"
            }
        }
    }
}

/// The stages a subtask of this operation runs. `reconcile`: REMEDIATE without a
/// password, where the admin sets a fresh password (the old one is unknown).
pub fn stages_of(operation: Operation, params: &serde_json::Value) -> &'static [Stage] {
    stages_for(operation, is_reconcile(params))
}

/// REMEDIATE without a password (the admin sets a fresh one), as a subtask's params say.
pub fn is_reconcile(params: &serde_json::Value) -> bool {
    params
        .get("reconcile")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false)
}

fn stages_for(operation: Operation, reconcile: bool) -> &'static [Stage] {
    use Stage::*;
    match operation {
        Operation::Rotate => &[
            Validate,
            Generate,
            StagePending,
            Apply,
            VerifyNew,
            VerifyOldRejected,
            Commit,
        ],
        Operation::Update => &[
            Validate,
            PolicyCheck,
            StagePending,
            Apply,
            VerifyNew,
            VerifyOldRejected,
            Commit,
        ],
        Operation::Remediate if reconcile => &[
            Validate,
            Generate,
            StagePending,
            Apply,
            VerifyNew,
            VerifyOldRejected,
            Commit,
        ],
        Operation::Remediate => &[Validate, VerifySupplied, Commit],
        Operation::UpdateAutoRotatePolicy => &[Validate, Commit],
        Operation::SetPassword => &[Validate, Commit],
    }
}
