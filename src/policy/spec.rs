//! `[policy.NAME]` as written in the configuration, and turning it into a `Policy`:
//! every rule validated, and a policy no password can meet refused with the reason.

use std::sync::Arc;

use serde::Deserialize;

use super::generate::{Generator, Rules, TooComplex};
use super::rules::{Policy, CLASSES};

/// Characters easily mistaken for one another when read aloud or off a screen.
pub const AMBIGUOUS: &str = "l1IO0o|`'\"";
pub const DEFAULT_SPECIALS: &str = "!@#$%^&*-_=+";
const DEFAULT_LENGTH: usize = 20;
const LENGTHS: std::ops::RangeInclusive<usize> = 4..=256;

/// A policy as written under `[policy.NAME]` in the configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    pub length: Option<usize>,
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
    /// The length `generate` uses, when it should not draw one between the bounds.
    pub generated_length: Option<usize>,
    /// Minimum per class; -1 excludes the class altogether.
    #[serde(default)]
    pub min_lower: i32,
    #[serde(default)]
    pub min_upper: i32,
    #[serde(default)]
    pub min_digit: i32,
    #[serde(default)]
    pub min_special: i32,
    pub special_chars: Option<String>,
    #[serde(default)]
    pub forbidden_chars: String,
    /// No more than this many identical characters in a row (0: no limit).
    #[serde(default)]
    pub max_identical_run: usize,
    /// At least this many different characters (0: no rule).
    #[serde(default)]
    pub min_distinct: usize,
    #[serde(default)]
    pub exclude_ambiguous: bool,
    /// The password must not contain the account's username, ignoring case.
    #[serde(default)]
    pub no_username: bool,
    /// At least this many of the four classes (0: no rule).
    #[serde(default)]
    pub min_classes: usize,
    /// passwdqc's counting: an uppercase first character and a digit last character do
    /// not count toward `min_classes`.
    #[serde(default)]
    pub esxi_class_counting: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("give `length`, or `min_length` and `max_length`, not both")]
    LengthConflict,
    #[error("length must be between 4 and 256, got {0}")]
    LengthRange(usize),
    #[error("`min_length` {0} is larger than `max_length` {1}")]
    LengthOrder(usize, usize),
    #[error("`generated_length` {0} is outside the allowed lengths {1} to {2}")]
    GeneratedLengthRange(usize, usize, usize),
    #[error("minimum must be -1 (class excluded) or 0 to 64, got {0}")]
    Minimum(i32),
    #[error("`min_classes` must be 0 to 4, got {0}")]
    MinClassesRange(usize),
    #[error("`esxi_class_counting` only changes `min_classes`, which is not set")]
    EsxiWithoutMinClasses,
    #[error("special character {0:?} is not printable ASCII or is a letter/digit")]
    BadSpecial(char),
    #[error(
        "class {0} is required but has no characters left after forbidden_chars/exclude_ambiguous"
    )]
    EmptyClass(&'static str),
    #[error("every class is excluded or emptied by forbidden_chars/exclude_ambiguous")]
    NoAlphabet,
    #[error("the class minimums add up to {0}, more than the maximum length {1}")]
    MinimumsExceedLength(usize, usize),
    #[error("`min_classes` is {0} but only {1} class(es) have characters")]
    ClassesUnavailable(usize, usize),
    #[error("`min_classes` {0} with the class minimums needs at least {1} characters, more than the maximum length {2}")]
    ClassesExceedLength(usize, usize, usize),
    #[error("`min_distinct` {0} is larger than the alphabet ({1} characters)")]
    DistinctExceedsAlphabet(usize, usize),
    #[error("`min_distinct` {0} is larger than the maximum length {1}")]
    DistinctExceedsLength(usize, usize),
    #[error("the alphabet is too small for `max_identical_run` {0}: no password of the allowed lengths has every class minimum without longer runs")]
    RunTooTight(usize),
    #[error("with ESXi class counting (a leading uppercase letter and a trailing digit do not count), `min_classes` {0} cannot be met at the allowed lengths")]
    EsxiCounting(usize),
    #[error(
        "`min_distinct` {0} cannot be met together with the other rules at the allowed lengths"
    )]
    DistinctUnreachable(usize),
    #[error("no password of the generated length {0} meets every rule (other allowed lengths do)")]
    GeneratedLengthInfeasible(usize),
    #[error("no password can satisfy every rule together")]
    Infeasible,
    #[error(
        "the policy is too complex to generate exactly: {0}; lower `min_distinct` or the length"
    )]
    TooComplex(TooComplex),
}

impl SpecError {
    /// The key the error is about, appended to `policy.NAME` in messages.
    pub fn field_suffix(&self) -> &'static str {
        use SpecError::*;
        match self {
            LengthConflict | LengthRange(_) | LengthOrder(..) => ".length",
            GeneratedLengthRange(..) | GeneratedLengthInfeasible(_) => ".generated_length",
            MinClassesRange(_)
            | ClassesUnavailable(..)
            | ClassesExceedLength(..)
            | EsxiCounting(_) => ".min_classes",
            EsxiWithoutMinClasses => ".esxi_class_counting",
            BadSpecial(_) => ".special_chars",
            EmptyClass(_) => ".forbidden_chars",
            DistinctExceedsAlphabet(..) | DistinctExceedsLength(..) | DistinctUnreachable(_) => {
                ".min_distinct"
            }
            RunTooTight(_) => ".max_identical_run",
            Minimum(_) | NoAlphabet | MinimumsExceedLength(..) | Infeasible | TooComplex(_) => "",
        }
    }
}

impl Policy {
    pub fn from_spec(name: &str, spec: &PolicySpec) -> Result<Policy, SpecError> {
        let (min_length, max_length) = match (spec.length, spec.min_length, spec.max_length) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => return Err(SpecError::LengthConflict),
            (Some(l), None, None) => (l, l),
            (None, min, max) => {
                let min = min.unwrap_or(DEFAULT_LENGTH);
                (min, max.unwrap_or(min.max(DEFAULT_LENGTH)))
            }
        };
        for l in [min_length, max_length] {
            if !LENGTHS.contains(&l) {
                return Err(SpecError::LengthRange(l));
            }
        }
        if min_length > max_length {
            return Err(SpecError::LengthOrder(min_length, max_length));
        }
        let (gen_min, gen_max) = match spec.generated_length {
            Some(l) if !(min_length..=max_length).contains(&l) => {
                return Err(SpecError::GeneratedLengthRange(l, min_length, max_length))
            }
            Some(l) => (l, l),
            None => (min_length, max_length),
        };
        if spec.min_classes > 4 {
            return Err(SpecError::MinClassesRange(spec.min_classes));
        }
        if spec.esxi_class_counting && spec.min_classes == 0 {
            return Err(SpecError::EsxiWithoutMinClasses);
        }
        let specials = spec.special_chars.as_deref().unwrap_or(DEFAULT_SPECIALS);
        if let Some(c) = specials
            .chars()
            .find(|c| !c.is_ascii_graphic() || c.is_ascii_alphanumeric())
        {
            return Err(SpecError::BadSpecial(c));
        }
        let forbidden = dedup(spec.forbidden_chars.chars());
        let keep = |c: &char| {
            !forbidden.contains(c) && !(spec.exclude_ambiguous && AMBIGUOUS.contains(*c))
        };
        let raw: [Vec<char>; 4] = [
            ('a'..='z').collect(),
            ('A'..='Z').collect(),
            ('0'..='9').collect(),
            dedup(specials.chars()),
        ];
        let requested = [
            spec.min_lower,
            spec.min_upper,
            spec.min_digit,
            spec.min_special,
        ];
        let mut minimums = [0usize; 4];
        let mut excluded = [false; 4];
        let mut alphabet: [Vec<char>; 4] = Default::default();
        for i in 0..4 {
            let m = requested[i];
            if !(-1..=64).contains(&m) {
                return Err(SpecError::Minimum(m));
            }
            excluded[i] = m < 0;
            if m >= 0 {
                alphabet[i] = raw[i].iter().copied().filter(keep).collect();
                minimums[i] = m as usize;
                if m > 0 && alphabet[i].is_empty() {
                    return Err(SpecError::EmptyClass(CLASSES[i].name()));
                }
            }
        }
        let sizes = alphabet.clone().map(|a| a.len());
        let size: usize = sizes.iter().sum();
        if size == 0 {
            return Err(SpecError::NoAlphabet);
        }
        let sum: usize = minimums.iter().sum();
        if sum > max_length {
            return Err(SpecError::MinimumsExceedLength(sum, max_length));
        }
        let available = sizes.iter().filter(|&&s| s > 0).count();
        if spec.min_classes > available {
            return Err(SpecError::ClassesUnavailable(spec.min_classes, available));
        }
        // Classes that min_classes needs beyond those with a minimum take a character each.
        let with_minimum = minimums.iter().filter(|&&m| m > 0).count();
        let needed = sum + spec.min_classes.saturating_sub(with_minimum);
        if needed > max_length {
            return Err(SpecError::ClassesExceedLength(
                spec.min_classes,
                needed,
                max_length,
            ));
        }
        if spec.min_distinct > size {
            return Err(SpecError::DistinctExceedsAlphabet(spec.min_distinct, size));
        }
        if spec.min_distinct > max_length {
            return Err(SpecError::DistinctExceedsLength(
                spec.min_distinct,
                max_length,
            ));
        }
        if needed.max(spec.min_distinct) > gen_max {
            return Err(SpecError::GeneratedLengthInfeasible(gen_min));
        }
        let rules = Rules {
            sizes,
            minimums,
            // A limit no password of these lengths can reach is no rule for the table.
            max_run: if spec.max_identical_run >= gen_max {
                0
            } else {
                spec.max_identical_run
            },
            min_classes: spec.min_classes,
            esxi: spec.esxi_class_counting,
            min_distinct: spec.min_distinct,
        };
        let generator = Generator::new(rules, gen_max).map_err(SpecError::TooComplex)?;
        let lengths: Vec<usize> = (gen_min..=gen_max)
            .filter(|&l| !num_traits::Zero::is_zero(generator.count(l)))
            .collect();
        if lengths.is_empty() {
            return Err(diagnose(
                rules,
                spec,
                (gen_min, gen_max),
                (min_length, max_length),
            ));
        }
        Ok(Policy {
            name: name.to_string(),
            min_length,
            max_length,
            generated_range: (gen_min, gen_max),
            lengths,
            minimums,
            excluded,
            alphabet,
            forbidden,
            exclude_ambiguous: spec.exclude_ambiguous,
            max_identical_run: spec.max_identical_run,
            min_classes: spec.min_classes,
            esxi_class_counting: spec.esxi_class_counting,
            min_distinct: spec.min_distinct,
            no_username: spec.no_username,
            generator: Arc::new(super::table::Table::judged(generator, gen_max)),
        })
    }
}

/// Names the rule that makes a policy impossible: the first one whose removal leaves
/// passwords (only run when the policy is already refused).
fn diagnose(
    rules: Rules,
    spec: &PolicySpec,
    generated: (usize, usize),
    allowed: (usize, usize),
) -> SpecError {
    let feasible = |r: Rules, (lo, hi): (usize, usize)| {
        let r = Rules {
            max_run: if r.max_run >= hi { 0 } else { r.max_run },
            ..r
        };
        Generator::new(r, hi)
            .is_ok_and(|g| (lo..=hi).any(|l| !num_traits::Zero::is_zero(g.count(l))))
    };
    if generated != allowed
        && feasible(
            Rules {
                max_run: spec.max_identical_run,
                ..rules
            },
            allowed,
        )
    {
        return SpecError::GeneratedLengthInfeasible(generated.0);
    }
    if rules.max_run > 0
        && feasible(
            Rules {
                max_run: 0,
                ..rules
            },
            generated,
        )
    {
        return SpecError::RunTooTight(rules.max_run);
    }
    if rules.esxi
        && feasible(
            Rules {
                esxi: false,
                ..rules
            },
            generated,
        )
    {
        return SpecError::EsxiCounting(rules.min_classes);
    }
    if rules.min_distinct > 1
        && feasible(
            Rules {
                min_distinct: 0,
                ..rules
            },
            generated,
        )
    {
        return SpecError::DistinctUnreachable(rules.min_distinct);
    }
    SpecError::Infeasible
}

pub(super) fn dedup(chars: impl Iterator<Item = char>) -> Vec<char> {
    let mut v: Vec<char> = Vec::new();
    for c in chars {
        if !v.contains(&c) {
            v.push(c);
        }
    }
    v
}
