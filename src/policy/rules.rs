//! What a policy is: the character classes and the validated rules (`Policy`), and
//! what checking and generating answer (`Violation`, `GenerateError`).

use std::sync::Arc;

use serde::Serialize;

use super::table::Table;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Class {
    Lower,
    Upper,
    Digit,
    Special,
}

pub const CLASSES: [Class; 4] = [Class::Lower, Class::Upper, Class::Digit, Class::Special];

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::Lower => "lower",
            Class::Upper => "upper",
            Class::Digit => "digit",
            Class::Special => "special",
        }
    }
}

/// Tries per length when a username must be avoided (usernames of two characters or more;
/// a one-character username is avoided exactly by leaving that letter out).
pub const USERNAME_TRIES: u32 = 1000;

/// A validated, feasible policy, ready to check and generate.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    /// Lengths `check` accepts.
    pub min_length: usize,
    pub max_length: usize,
    /// Lengths `generate` draws from (uniformly among the feasible ones).
    pub generated_range: (usize, usize),
    /// The feasible lengths of `generated_range`; never empty.
    pub lengths: Vec<usize>,
    /// Minimum per class (0 when the class is optional or excluded).
    pub minimums: [usize; 4],
    pub excluded: [bool; 4],
    /// The allowed characters per class (empty when excluded).
    pub alphabet: [Vec<char>; 4],
    pub forbidden: Vec<char>,
    pub exclude_ambiguous: bool,
    /// 0: no limit.
    pub max_identical_run: usize,
    pub min_classes: usize,
    pub esxi_class_counting: bool,
    pub min_distinct: usize,
    pub no_username: bool,
    /// The counting table, built while in use.
    pub(super) generator: Arc<Table>,
}

/// One broken rule: a stable code and a message without the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub code: &'static str,
    pub message: String,
}

impl Violation {
    pub(super) fn new(code: &'static str, message: String) -> Self {
        Violation { code, message }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GenerateError {
    #[error("policy {policy}: no password of the allowed lengths avoids the username")]
    UsernameUnavoidable { policy: String },
    #[error("policy {policy}: {tries} passwords in a row contained the username; the alphabet is too small to avoid it reliably")]
    UsernameTries { policy: String, tries: u32 },
}
