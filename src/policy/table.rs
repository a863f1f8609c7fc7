//! A policy's counting table, kept only while it is used: built once to judge the policy
//! (which lengths are feasible, its entropy), then dropped, and built again on the first
//! password drawn. An idle rotor holds no table; the figures it reports need none.

use std::sync::OnceLock;

use num_bigint::BigUint;

use super::generate::{log2, Generator, Rules};

#[derive(Debug)]
pub(super) struct Table {
    rules: Rules,
    max_length: usize,
    /// log2 of the compliant passwords of each length 0..=max_length.
    bits: Vec<f64>,
    built: OnceLock<Generator>,
}

impl Table {
    /// Keeps what judging the policy needs from `generator` and drops the rest.
    pub(super) fn judged(generator: Generator, max_length: usize) -> Table {
        let mut t = Table::kept(generator, max_length);
        t.built = OnceLock::new();
        t
    }

    /// The same, keeping `generator` (it is about to be used).
    pub(super) fn kept(generator: Generator, max_length: usize) -> Table {
        let bits = (0..=max_length).map(|l| log2(generator.count(l))).collect();
        let built = OnceLock::new();
        let rules = *generator.rules();
        let _ = built.set(generator);
        Table {
            rules,
            max_length,
            bits,
            built,
        }
    }

    pub(super) fn rules(&self) -> &Rules {
        &self.rules
    }

    pub(super) fn count_bits(&self, length: usize) -> f64 {
        self.bits.get(length).copied().unwrap_or(f64::NEG_INFINITY)
    }

    pub(super) fn count(&self, length: usize) -> BigUint {
        self.generator().count(length).clone()
    }

    /// The table, built on first use; the same rules built it before, within limits.
    pub(super) fn generator(&self) -> &Generator {
        self.built.get_or_init(|| {
            Generator::new(self.rules, self.max_length).expect("these rules were built before")
        })
    }
}
