//! Password policies: the rules, the presets, checking a supplied password, and
//! (in `generate`) drawing a password uniformly from every compliant one.

mod generate;

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

pub use generate::Generator;

/// Character classes, in a fixed order used as an index everywhere.
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

/// Characters easily mistaken for one another when read aloud or off a screen.
const AMBIGUOUS: &str = "l1IO0o|`'\"";
const DEFAULT_SPECIALS: &str = "!@#$%^&*-_=+";

/// A policy as written under `[policy.NAME]` in the configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    pub length: Option<usize>,
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
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
    #[serde(default)]
    pub exclude_ambiguous: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("give `length`, or `min_length` and `max_length`, not both")]
    LengthConflict,
    #[error("length must be between 4 and 256, got {0}")]
    LengthRange(usize),
    #[error("`min_length` {0} is larger than `max_length` {1}")]
    LengthOrder(usize, usize),
    #[error("minimum must be -1 (class excluded) or 0 to 64, got {0}")]
    Minimum(i32),
    #[error("special character {0:?} is not printable ASCII or is a letter/digit")]
    BadSpecial(char),
    #[error("class {0} is required but has no characters left after forbidden_chars/exclude_ambiguous")]
    EmptyClass(&'static str),
    #[error("the class minimums add up to {0}, more than the maximum length {1}")]
    MinimumsExceedLength(usize, usize),
    #[error("no password can satisfy every rule (e.g. max_identical_run with too small an alphabet)")]
    Infeasible,
    #[error("every class is excluded")]
    NoAlphabet,
}

impl SpecError {
    /// The key the error is about, appended to `policy.NAME` in messages.
    pub fn field_suffix(&self) -> &'static str {
        match self {
            SpecError::LengthConflict | SpecError::LengthRange(_) | SpecError::LengthOrder(..) => ".length",
            SpecError::Minimum(_) => "",
            SpecError::BadSpecial(_) => ".special_chars",
            SpecError::EmptyClass(_) => ".forbidden_chars",
            SpecError::MinimumsExceedLength(..) => "",
            SpecError::Infeasible | SpecError::NoAlphabet => "",
        }
    }
}

/// A validated, feasible policy, ready to check and generate.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub min_length: usize,
    pub max_length: usize,
    /// Minimum per class (0 when the class is optional).
    pub minimums: [usize; 4],
    /// The allowed characters per class (empty when excluded).
    pub alphabet: [Vec<char>; 4],
    pub max_identical_run: usize,
    generator: Generator,
}

impl Policy {
    pub fn from_spec(name: &str, spec: &PolicySpec) -> Result<Policy, SpecError> {
        let (min_length, max_length) = match (spec.length, spec.min_length, spec.max_length) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => return Err(SpecError::LengthConflict),
            (Some(l), None, None) => (l, l),
            (None, min, max) => (min.unwrap_or(20), max.unwrap_or(min.unwrap_or(20).max(20))),
        };
        for l in [min_length, max_length] {
            if !(4..=256).contains(&l) {
                return Err(SpecError::LengthRange(l));
            }
        }
        if min_length > max_length {
            return Err(SpecError::LengthOrder(min_length, max_length));
        }
        let specials = spec.special_chars.as_deref().unwrap_or(DEFAULT_SPECIALS);
        if let Some(c) = specials.chars().find(|c| !c.is_ascii_graphic() || c.is_ascii_alphanumeric()) {
            return Err(SpecError::BadSpecial(c));
        }
        let keep = |c: &char| !spec.forbidden_chars.contains(*c) && !(spec.exclude_ambiguous && AMBIGUOUS.contains(*c));
        let raw: [Vec<char>; 4] = [
            ('a'..='z').collect(),
            ('A'..='Z').collect(),
            ('0'..='9').collect(),
            dedup(specials.chars()),
        ];
        let requested = [spec.min_lower, spec.min_upper, spec.min_digit, spec.min_special];
        let mut minimums = [0usize; 4];
        let mut alphabet: [Vec<char>; 4] = Default::default();
        for i in 0..4 {
            let m = requested[i];
            if !(-1..=64).contains(&m) {
                return Err(SpecError::Minimum(m));
            }
            if m >= 0 {
                alphabet[i] = raw[i].iter().copied().filter(keep).collect();
                minimums[i] = m as usize;
                if m > 0 && alphabet[i].is_empty() {
                    return Err(SpecError::EmptyClass(CLASSES[i].name()));
                }
            }
        }
        if alphabet.iter().all(Vec::is_empty) {
            return Err(SpecError::NoAlphabet);
        }
        let sum: usize = minimums.iter().sum();
        if sum > max_length {
            return Err(SpecError::MinimumsExceedLength(sum, max_length));
        }
        let sizes = [alphabet[0].len(), alphabet[1].len(), alphabet[2].len(), alphabet[3].len()];
        let generator = Generator::new(sizes, minimums, spec.max_identical_run, max_length);
        if (min_length..=max_length).all(|l| generator.count(l).bits() == 0) {
            return Err(SpecError::Infeasible);
        }
        Ok(Policy {
            name: name.to_string(),
            min_length,
            max_length,
            minimums,
            alphabet,
            max_identical_run: spec.max_identical_run,
            generator,
        })
    }

    /// A fresh password, uniformly drawn from every compliant password (see `generate`).
    pub fn generate(&self) -> SecretString {
        let chars = self.generator.sample(self.min_length, self.max_length);
        let s: String = chars.into_iter().map(|(class, idx)| self.alphabet[class][idx]).collect();
        SecretString::from(s)
    }

    /// Bits of entropy of a generated password (log2 of the compliant set at the maximum length).
    pub fn entropy_bits(&self) -> f64 {
        let count = self.generator.count(self.max_length);
        let bits = count.bits();
        if bits <= 52 {
            (num_traits::ToPrimitive::to_f64(&count).unwrap_or(1.0)).log2()
        } else {
            let top: num_bigint::BigUint = &count >> (bits - 52);
            num_traits::ToPrimitive::to_f64(&top).unwrap_or(1.0).log2() + (bits - 52) as f64
        }
    }

    fn class_of(&self, c: char) -> Option<usize> {
        (0..4).find(|&i| self.alphabet[i].contains(&c))
    }

    /// Every rule the password breaks; never echoes the password or its characters.
    pub fn check(&self, password: &SecretString) -> Vec<Violation> {
        let pw = password.expose_secret();
        let chars: Vec<char> = pw.chars().collect();
        let mut out = Vec::new();
        if chars.len() < self.min_length {
            out.push(Violation::new("TOO_SHORT", format!("shorter than {} characters", self.min_length)));
        }
        if chars.len() > self.max_length {
            out.push(Violation::new("TOO_LONG", format!("longer than {} characters", self.max_length)));
        }
        let mut counts = [0usize; 4];
        let mut outside = 0usize;
        for &c in &chars {
            match self.class_of(c) {
                Some(i) => counts[i] += 1,
                None => outside += 1,
            }
        }
        if outside > 0 {
            out.push(Violation::new(
                "DISALLOWED_CHARACTER",
                format!("{outside} character(s) outside the allowed set"),
            ));
        }
        for i in 0..4 {
            if counts[i] < self.minimums[i] {
                let code = ["MIN_LOWER", "MIN_UPPER", "MIN_DIGIT", "MIN_SPECIAL"][i];
                out.push(Violation::new(
                    code,
                    format!("needs at least {} {} character(s), has {}", self.minimums[i], CLASSES[i].name(), counts[i]),
                ));
            }
        }
        if self.max_identical_run > 0 {
            let longest = chars
                .chunk_by(|a, b| a == b)
                .map(<[char]>::len)
                .max()
                .unwrap_or(0);
            if longest > self.max_identical_run {
                out.push(Violation::new(
                    "MAX_IDENTICAL_RUN",
                    format!("more than {} identical characters in a row", self.max_identical_run),
                ));
            }
        }
        out
    }
}

fn dedup(chars: impl Iterator<Item = char>) -> Vec<char> {
    let mut v: Vec<char> = Vec::new();
    for c in chars {
        if !v.contains(&c) {
            v.push(c);
        }
    }
    v
}

/// One broken rule: a stable code and a message without the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub code: &'static str,
    pub message: String,
}

impl Violation {
    fn new(code: &'static str, message: String) -> Self {
        Violation { code, message }
    }
}

/// The built-in presets.
pub fn presets() -> BTreeMap<String, Policy> {
    let specs: [(&str, PolicySpec); 4] = [
        // SDDC Manager 4.4+ password rules: 20 characters from upper, lower, digits and
        // `!@#$^*`, at least one of each, no more than 2 identical characters in a row.
        (
            "vcf",
            PolicySpec {
                length: Some(20),
                min_lower: 1,
                min_upper: 1,
                min_digit: 1,
                min_special: 1,
                special_chars: Some("!@#$^*".into()),
                max_identical_run: 2,
                ..Default::default()
            },
        ),
        // ESXi's passwdqc default asks for 3 of 4 classes and 7 to 39 characters; a generated
        // password of 20 with every class meets it whatever the class-counting quirk.
        (
            "esxi",
            PolicySpec {
                length: Some(20),
                min_lower: 1,
                min_upper: 1,
                min_digit: 1,
                min_special: 1,
                special_chars: Some("!@#$%^&*-_=+".into()),
                max_identical_run: 2,
                ..Default::default()
            },
        ),
        // NSX-T Manager: 12 to 128 characters, every class; these characters are refused.
        (
            "nsx",
            PolicySpec {
                length: Some(20),
                min_lower: 1,
                min_upper: 1,
                min_digit: 1,
                min_special: 1,
                special_chars: Some("!@#$%^&-_=+?".into()),
                max_identical_run: 2,
                ..Default::default()
            },
        ),
        // A general Linux account: 24 characters, all four classes, a shell-safe special set.
        (
            "linux",
            PolicySpec {
                length: Some(24),
                min_lower: 1,
                min_upper: 1,
                min_digit: 1,
                min_special: 1,
                special_chars: Some("!@#$%^&*-_=+".into()),
                ..Default::default()
            },
        ),
    ];
    specs
        .into_iter()
        .map(|(name, spec)| (name.to_string(), Policy::from_spec(name, &spec).expect("presets are feasible")))
        .collect()
}

/// The preset a resource type uses by default.
pub fn preset_for_type(resource_type: &str) -> &'static str {
    match resource_type {
        "ESXI" => "esxi",
        "NSXT_MANAGER" | "NSX_MANAGER" | "NSXT_EDGE" | "NSX_EDGE" | "NSX_CONTROLLER" => "nsx",
        "LINUX" => "linux",
        _ => "vcf",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(length: usize, mins: [i32; 4]) -> PolicySpec {
        PolicySpec {
            length: Some(length),
            min_lower: mins[0],
            min_upper: mins[1],
            min_digit: mins[2],
            min_special: mins[3],
            ..Default::default()
        }
    }

    #[test]
    fn presets_generate_compliant_passwords() {
        for (name, policy) in presets() {
            for _ in 0..200 {
                let pw = policy.generate();
                assert_eq!(policy.check(&pw), vec![], "preset {name}");
            }
        }
    }

    #[test]
    fn tight_policy_still_generates() {
        let p = Policy::from_spec("tight", &spec(4, [1, 1, 1, 1])).unwrap();
        for _ in 0..100 {
            assert!(p.check(&p.generate()).is_empty());
        }
    }

    #[test]
    fn infeasible_policies_are_refused_with_a_reason() {
        assert_eq!(
            Policy::from_spec("x", &spec(5, [2, 2, 2, 0])).unwrap_err(),
            SpecError::MinimumsExceedLength(6, 5)
        );
        let mut s = spec(8, [0, 0, 2, -1]);
        s.forbidden_chars = "0123456789".into();
        assert_eq!(Policy::from_spec("x", &s).unwrap_err(), SpecError::EmptyClass("digit"));
        let mut s = spec(8, [-1, -1, 0, -1]);
        s.forbidden_chars = "123456789".into();
        s.max_identical_run = 1;
        assert_eq!(Policy::from_spec("x", &s).unwrap_err(), SpecError::Infeasible);
    }

    #[test]
    fn check_names_every_broken_rule_without_the_password() {
        let p = presets().remove("vcf").unwrap();
        let v = p.check(&SecretString::from("aaab"));
        let codes: Vec<_> = v.iter().map(|v| v.code).collect();
        assert_eq!(codes, ["TOO_SHORT", "MIN_UPPER", "MIN_DIGIT", "MIN_SPECIAL", "MAX_IDENTICAL_RUN"]);
        assert!(v.iter().all(|v| !v.message.contains("aaab")));
    }
}
