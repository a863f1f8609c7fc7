//! Exactly uniform generation over the compliant passwords, in bounded time.
//!
//! Characters of one class are interchangeable for every rule here, so a prefix is
//! summarised by a small state: the count of each class capped at its minimum, the class
//! of the last character and the length of its run. `table[n][state]` counts the
//! compliant ways to append `n` more characters. Drawing each next character with
//! probability proportional to the completions it leaves makes every compliant
//! password equally likely, with no retry of whole passwords.

use num_bigint::BigUint;
use num_traits::{One, Zero};
use rand::rngs::OsRng;
use rand::{Rng, TryRngCore};

const NO_CLASS: usize = 4;

#[derive(Debug, Clone)]
pub struct Generator {
    sizes: [usize; 4],
    minimums: [usize; 4],
    /// 0: no limit on identical runs.
    max_run: usize,
    /// Radix of each class count in the state index.
    radix: [usize; 4],
    runs: usize,
    /// table[n][state]: completions of n characters from `state`.
    table: Vec<Vec<BigUint>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    counts: [usize; 4],
    last: usize,
    run: usize,
}

/// One way to extend a prefix: `options` characters that all lead to `next`.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Any character of the class.
    Any(usize),
    /// Any character of the class except the previous one (starts a new run).
    Other(usize),
    /// The previous character again.
    Same,
}

impl Generator {
    pub fn new(sizes: [usize; 4], minimums: [usize; 4], max_run: usize, max_length: usize) -> Self {
        let radix = minimums.map(|m| m + 1);
        let runs = max_run.max(1);
        let mut g = Generator { sizes, minimums, max_run, radix, runs, table: Vec::new() };
        let n_states = g.n_states();
        let mut table = Vec::with_capacity(max_length + 1);
        let base: Vec<BigUint> = (0..n_states)
            .map(|i| {
                let s = g.decode(i);
                if (0..4).all(|k| s.counts[k] >= g.minimums[k]) {
                    BigUint::one()
                } else {
                    BigUint::zero()
                }
            })
            .collect();
        table.push(base);
        for n in 1..=max_length {
            let prev = &table[n - 1];
            let row: Vec<BigUint> = (0..n_states)
                .map(|i| {
                    let s = g.decode(i);
                    g.steps(s)
                        .into_iter()
                        .map(|(_, options, next)| &prev[g.encode(next)] * BigUint::from(options))
                        .sum()
                })
                .collect();
            table.push(row);
        }
        g.table = table;
        g
    }

    fn n_states(&self) -> usize {
        self.radix.iter().product::<usize>() * 5 * self.runs
    }

    fn encode(&self, s: State) -> usize {
        let mut i = 0;
        for k in 0..4 {
            i = i * self.radix[k] + s.counts[k];
        }
        (i * 5 + s.last) * self.runs + (s.run - 1)
    }

    fn decode(&self, mut i: usize) -> State {
        let run = i % self.runs + 1;
        i /= self.runs;
        let last = i % 5;
        i /= 5;
        let mut counts = [0; 4];
        for k in (0..4).rev() {
            counts[k] = i % self.radix[k];
            i /= self.radix[k];
        }
        State { counts, last, run }
    }

    fn start(&self) -> State {
        State { counts: [0; 4], last: NO_CLASS, run: 1 }
    }

    /// The ways to append one character, with how many characters each covers.
    fn steps(&self, s: State) -> Vec<(Step, usize, State)> {
        let mut out = Vec::with_capacity(5);
        for k in 0..4 {
            let size = self.sizes[k];
            if size == 0 {
                continue;
            }
            let mut counts = s.counts;
            counts[k] = (counts[k] + 1).min(self.minimums[k]);
            let fresh = State { counts, last: k, run: 1 };
            if self.max_run == 0 || s.last != k {
                out.push((Step::Any(k), size, State { last: if self.max_run == 0 { NO_CLASS } else { k }, ..fresh }));
            } else {
                if size > 1 {
                    out.push((Step::Other(k), size - 1, fresh));
                }
                if s.run < self.max_run {
                    out.push((Step::Same, 1, State { run: s.run + 1, ..fresh }));
                }
            }
        }
        out
    }

    /// How many compliant passwords of exactly `length` characters exist.
    pub fn count(&self, length: usize) -> BigUint {
        self.table.get(length).map(|row| row[self.encode(self.start())].clone()).unwrap_or_default()
    }

    /// Draws a length uniformly among the feasible ones in range, then a password of that
    /// length uniformly among the compliant ones. Returns (class, index in class) pairs.
    pub fn sample(&self, min_length: usize, max_length: usize) -> Vec<(usize, usize)> {
        let mut rng = OsRng.unwrap_err();
        let feasible: Vec<usize> = (min_length..=max_length).filter(|&l| !self.count(l).is_zero()).collect();
        assert!(!feasible.is_empty(), "an accepted policy is feasible");
        let length = feasible[rng.random_range(0..feasible.len())];
        let mut state = self.start();
        let mut last_index = 0usize;
        let mut out = Vec::with_capacity(length);
        for pos in 0..length {
            let rest = &self.table[length - pos - 1];
            let steps = self.steps(state);
            let weights: Vec<BigUint> =
                steps.iter().map(|(_, options, next)| &rest[self.encode(*next)] * BigUint::from(*options)).collect();
            let total: BigUint = weights.iter().sum();
            let mut r = uniform_below(&total);
            let mut chosen = steps.len() - 1;
            for (i, w) in weights.iter().enumerate() {
                if r < *w {
                    chosen = i;
                    break;
                }
                r -= w;
            }
            let (step, _, next) = steps[chosen];
            let (class, index) = match step {
                Step::Any(k) => (k, rng.random_range(0..self.sizes[k])),
                Step::Other(k) => {
                    let i = rng.random_range(0..self.sizes[k] - 1);
                    (k, if i >= last_index { i + 1 } else { i })
                }
                Step::Same => (state.last, last_index),
            };
            out.push((class, index));
            last_index = index;
            state = next;
        }
        out
    }
}

/// A uniform integer in [0, n) from the OS CSPRNG: draw the bit length of n, keep it
/// when below n (each draw succeeds with probability above one half).
fn uniform_below(n: &BigUint) -> BigUint {
    assert!(!n.is_zero());
    let bits = n.bits() as usize;
    let mut bytes = vec![0u8; bits.div_ceil(8)];
    let excess = bytes.len() * 8 - bits;
    loop {
        OsRng.try_fill_bytes(&mut bytes).expect("the OS random source works");
        if let Some(top) = bytes.last_mut() {
            *top &= 0xffu8 >> excess;
        }
        let x = BigUint::from_bytes_le(&bytes);
        if &x < n {
            return x;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force over a tiny alphabet agrees with the table.
    #[test]
    fn counts_match_brute_force() {
        // classes: lower {a,b}, upper {A}, digit {1,2}, no specials; min 1 lower, 1 digit; run <= 2
        let sizes = [2, 1, 2, 0];
        let mins = [1, 0, 1, 0];
        let alphabet = ['a', 'b', 'A', '1', '2'];
        let class = |c: char| match c {
            'a' | 'b' => 0,
            'A' => 1,
            _ => 2,
        };
        let g = Generator::new(sizes, mins, 2, 6);
        for len in 1..=6usize {
            let mut n = 0u64;
            let total = alphabet.len().pow(len as u32);
            for mut code in 0..total {
                let mut pw = Vec::new();
                for _ in 0..len {
                    pw.push(alphabet[code % alphabet.len()]);
                    code /= alphabet.len();
                }
                let mut counts = [0; 4];
                pw.iter().for_each(|&c| counts[class(c)] += 1);
                let run_ok = pw.chunk_by(|a, b| a == b).all(|r| r.len() <= 2);
                if counts[0] >= 1 && counts[2] >= 1 && run_ok {
                    n += 1;
                }
            }
            assert_eq!(g.count(len), BigUint::from(n), "length {len}");
        }
    }

    #[test]
    fn uniform_below_stays_in_range() {
        let n = BigUint::from(1000u32);
        for _ in 0..1000 {
            assert!(uniform_below(&n) < n);
        }
    }
}
