//! Password policies: the rules (`spec`), the presets, checking a supplied password
//! (`check`), and drawing a password uniformly from every compliant one (`generate`).

mod check;
mod generate;
mod presets;
mod rng;
mod rules;
mod spec;
mod table;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod stats;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod uniformity;

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroize;

pub use generate::TooComplex;
pub use presets::{preset_for_type, presets};
pub use rules::{Class, GenerateError, Policy, Violation, CLASSES, USERNAME_TRIES};
pub use spec::{PolicySpec, SpecError, AMBIGUOUS};

use generate::{Generator, Rules};
use rng::Rng;

/// Character classes, in a fixed order used as an index everywhere.
impl Policy {
    /// A fresh password, uniformly drawn from every compliant password of a uniformly
    /// drawn feasible length.
    pub fn generate(&self) -> SecretString {
        self.passwords().next_password()
    }

    /// The same, also avoiding `username` when the policy says `no_username`.
    pub fn generate_for(&self, username: Option<&str>) -> Result<SecretString, GenerateError> {
        self.passwords().next_for(username)
    }

    /// Many passwords, sharing one random source.
    pub fn passwords(&self) -> Passwords<'_> {
        Passwords {
            policy: self,
            rng: Rng::new(),
            buf: Vec::with_capacity(self.generated_range.1),
            single: None,
        }
    }

    /// Every rule the password breaks; never echoes the password or its characters.
    /// `no_username` is not checked without a username (see `check_for`).
    pub fn check(&self, password: &SecretString) -> Vec<Violation> {
        check::violations(self, password.expose_secret(), None)
    }

    pub fn check_for(&self, password: &SecretString, username: Option<&str>) -> Vec<Violation> {
        check::violations(self, password.expose_secret(), username)
    }

    /// How many compliant passwords of `length` characters exist (username aside).
    pub fn count(&self, length: usize) -> num_bigint::BigUint {
        self.generator.count(length)
    }

    /// log2 of `count(length)`.
    pub fn count_bits(&self, length: usize) -> f64 {
        self.generator.count_bits(length)
    }

    /// Shannon entropy of `generate` in bits: the uniform length, then the uniform
    /// password of that length.
    pub fn entropy_bits(&self) -> f64 {
        let n = self.lengths.len() as f64;
        n.log2()
            + self
                .lengths
                .iter()
                .map(|&l| self.generator.count_bits(l))
                .sum::<f64>()
                / n
    }

    /// Min-entropy in bits: what an attacker guessing the likeliest password first faces
    /// (the shortest lengths, whose passwords are the likeliest).
    pub fn min_entropy_bits(&self) -> f64 {
        let n = self.lengths.len() as f64;
        n.log2()
            + self
                .lengths
                .iter()
                .map(|&l| self.generator.count_bits(l))
                .fold(f64::INFINITY, f64::min)
    }

    /// Size of the generator's state space (per position).
    pub fn states(&self) -> usize {
        self.generator.generator().states()
    }

    pub fn alphabet_size(&self) -> usize {
        self.alphabet.iter().map(Vec::len).sum()
    }

    /// An upper bound on the chance that one draw of `length` characters contains some
    /// username of `m` >= 2 characters: (L-m+1) positions x v^m case variants x A^(L-m)
    /// completions, over the compliant count. `v` is 2 when a letter is allowed in both
    /// cases. The worst `m` is taken; the result is clamped to 1.
    pub fn username_rejection_bound(&self, length: usize) -> f64 {
        let a = self.alphabet_size() as f64;
        let both_cases = self.alphabet[0]
            .iter()
            .any(|c| self.alphabet[1].contains(&c.to_ascii_uppercase()));
        let v = if both_cases { 2f64 } else { 1f64 };
        let total = self.generator.count_bits(length);
        (2..=length)
            .map(|m| {
                ((length - m + 1) as f64).log2()
                    + m as f64 * v.log2()
                    + (length - m) as f64 * a.log2()
                    - total
            })
            .fold(f64::NEG_INFINITY, f64::max)
            .exp2()
            .min(1.0)
    }

    /// The policy without the characters equal to `lowered` ignoring case: how a
    /// one-character username is avoided exactly.
    fn without(&self, lowered: &str) -> Option<Policy> {
        let mut p = self.clone();
        for class in &mut p.alphabet {
            class.retain(|c| c.to_lowercase().to_string() != lowered);
        }
        let sizes = p.alphabet.clone().map(|a| a.len());
        if (0..4).any(|k| p.minimums[k] > 0 && sizes[k] == 0) {
            return None;
        }
        let rules = Rules {
            sizes,
            ..*self.generator.rules()
        };
        let generator = Generator::new(rules, self.generated_range.1).ok()?;
        let (lo, hi) = self.generated_range;
        let lengths: Vec<usize> = (lo..=hi)
            .filter(|&l| !num_traits::Zero::is_zero(generator.count(l)))
            .collect();
        if lengths.is_empty() {
            return None;
        }
        p.generator = Arc::new(table::Table::kept(generator, hi));
        p.lengths = lengths;
        Some(p)
    }
}

/// A batch of passwords from one policy (see `Policy::passwords`).
pub struct Passwords<'a> {
    policy: &'a Policy,
    rng: Rng,
    buf: Vec<(u8, u8)>,
    /// The policy without a one-character username, kept for the next call.
    single: Option<(String, Option<Policy>)>,
}

impl Passwords<'_> {
    pub fn next_password(&mut self) -> SecretString {
        let length = self.policy.lengths[self.rng.below(self.policy.lengths.len() as u64) as usize];
        self.of_length(self.policy, length)
    }

    fn of_length(&mut self, policy: &Policy, length: usize) -> SecretString {
        self.buf.clear();
        policy
            .generator
            .generator()
            .sample(length, &mut self.rng, &mut self.buf);
        let s: String = self
            .buf
            .iter()
            .map(|&(k, i)| policy.alphabet[usize::from(k)][usize::from(i)])
            .collect();
        self.buf.zeroize();
        SecretString::from(s)
    }

    /// The next password, avoiding `username` if the policy says so: exactly for one
    /// character, else by redrawing at the same length (so the length stays uniform).
    pub fn next_for(&mut self, username: Option<&str>) -> Result<SecretString, GenerateError> {
        let policy = self.policy;
        let lowered = match check::lowered_username(username) {
            Some(u) if policy.no_username => u,
            _ => return Ok(self.next_password()),
        };
        // A username with a character the alphabet lacks can never appear.
        let appears = lowered.chars().all(|u| {
            policy
                .alphabet
                .iter()
                .flatten()
                .any(|c| c.to_lowercase().eq(std::iter::once(u)))
        });
        if !appears {
            return Ok(self.next_password());
        }
        if lowered.chars().count() == 1 {
            if self.single.as_ref().is_none_or(|(u, _)| *u != lowered) {
                self.single = Some((lowered.clone(), policy.without(&lowered)));
            }
            let Some((_, Some(reduced))) = self.single.take() else {
                return Err(GenerateError::UsernameUnavoidable {
                    policy: policy.name.clone(),
                });
            };
            let length = reduced.lengths[self.rng.below(reduced.lengths.len() as u64) as usize];
            let pw = self.of_length(&reduced, length);
            self.single = Some((lowered, Some(reduced)));
            return Ok(pw);
        }
        let length = policy.lengths[self.rng.below(policy.lengths.len() as u64) as usize];
        for _ in 0..USERNAME_TRIES {
            let pw = self.of_length(policy, length);
            if !check::contains_username(pw.expose_secret(), &lowered) {
                return Ok(pw);
            }
        }
        Err(GenerateError::UsernameTries {
            policy: policy.name.clone(),
            tries: USERNAME_TRIES,
        })
    }
}

impl Iterator for Passwords<'_> {
    type Item = SecretString;

    fn next(&mut self) -> Option<SecretString> {
        Some(self.next_password())
    }
}
