//! Exactly uniform generation over the compliant passwords, in bounded time.
//!
//! Characters of one class are interchangeable for every rule, so a prefix is summarised
//! by a small state: the count of each class capped at its minimum; the classes already
//! counted toward `min_classes` (ESXi does not count an uppercase letter in first
//! position nor a digit in last position, so the state remembers "first position" and the
//! table knows when one character is left); while fewer than `min_distinct` different
//! characters are used, how many of each class; and the class of the last character with
//! its run length. `table[n][state]` counts the compliant ways to append `n` more
//! characters. A password is the `r`-th compliant one for a uniform `r`, decoded one
//! position at a time, so every compliant password is equally likely and nothing is
//! retried but the unbiased draw of `r` itself.

use std::collections::HashMap;

use num_bigint::BigUint;
use num_traits::Zero;

use super::rng::Rng;

/// "No class": before the first character, or when no run limit needs it remembered.
const NONE: u8 = 4;
/// A rule that is met for good: nothing more to remember about it.
const SAT: u8 = 0x80;
const UPPER: usize = 1;
const DIGIT: usize = 2;
const START: usize = 0;

/// States reachable from the start; only `min_distinct` can make many.
const MAX_STATES: usize = 60_000;
/// Table cells (states x lengths) kept. A cell is a BigUint: 24 bytes plus its digits,
/// and a count over 256 characters of a 94-character alphabet needs 27 64-bit digits, so
/// the bound is about 240 MB in the worst case; real tables are far smaller (a count at
/// length n has n/256 of those digits, and only `min_distinct` makes many states).
const MAX_CELLS: usize = 1_000_000;

/// The rules that shape the table. Sizes are the class alphabets (0: class unavailable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    pub sizes: [usize; 4],
    pub minimums: [usize; 4],
    /// 0: no limit on identical runs.
    pub max_run: usize,
    /// 0: no rule.
    pub min_classes: usize,
    pub esxi: bool,
    /// 0 or 1: no rule.
    pub min_distinct: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct State {
    counts: [u8; 4],
    /// Bit per class counted toward `min_classes`, or SAT.
    classes: u8,
    /// Different characters used per class while below `min_distinct`, or all SAT.
    distinct: [u8; 4],
    last: u8,
    run: u8,
    start: bool,
}

/// Which characters of the class a step covers; the sampler turns an index among them
/// into a character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    Any,
    AnyButLast,
    Same,
    /// A character of the class not used yet.
    New,
    /// One already used.
    Used,
    /// One already used, other than the previous character.
    UsedButLast,
}

#[derive(Debug, Clone, Copy)]
struct Step {
    class: u8,
    pick: Pick,
    options: u32,
    next: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the rules need {states} states over {lengths} lengths (at most {MAX_CELLS} cells)")]
pub struct TooComplex {
    pub states: usize,
    pub lengths: usize,
}

#[derive(Debug)]
pub struct Generator {
    rules: Rules,
    /// steps[state][v]: the ways out of `state`; v = 1 when one character is left.
    steps: Vec<[Vec<Step>; 2]>,
    /// table[n][state]: completions of `n` characters from `state`.
    table: Vec<Vec<BigUint>>,
}

struct Builder {
    rules: Rules,
    index: HashMap<State, u32>,
    states: Vec<State>,
}

impl Builder {
    fn intern(&mut self, s: State) -> u32 {
        if let Some(&i) = self.index.get(&s) {
            return i;
        }
        let i = self.states.len() as u32;
        self.states.push(s);
        self.index.insert(s, i);
        i
    }

    fn accepts(&self, s: &State) -> bool {
        (0..4).all(|k| usize::from(s.counts[k]) >= self.rules.minimums[k])
            && s.classes == SAT
            && s.distinct == [SAT; 4]
    }

    fn expand(&mut self, s: State, last_position: bool) -> Vec<Step> {
        let r = self.rules;
        let run_tracked = r.max_run > 0;
        let mut out = Vec::with_capacity(8);
        for k in 0..4 {
            let size = r.sizes[k];
            if size == 0 {
                continue;
            }
            let counted = !(r.esxi && ((s.start && k == UPPER) || (last_position && k == DIGIT)));
            let mut base = s;
            base.start = false;
            base.counts[k] = (usize::from(s.counts[k]) + 1).min(r.minimums[k]) as u8;
            if s.classes != SAT && counted {
                let mask = s.classes | (1 << k);
                base.classes = if mask.count_ones() as usize >= r.min_classes {
                    SAT
                } else {
                    mask
                };
            }
            let fresh = State {
                last: if run_tracked { k as u8 } else { NONE },
                run: u8::from(run_tracked),
                ..base
            };
            let same = State {
                last: k as u8,
                run: s.run + 1,
                ..base
            };
            let follows = run_tracked && usize::from(s.last) == k;
            let mut push = |b: &mut Builder, pick, options: usize, next: State| {
                if options > 0 {
                    out.push(Step {
                        class: k as u8,
                        pick,
                        options: options as u32,
                        next: b.intern(next),
                    });
                }
            };
            if s.distinct == [SAT; 4] {
                if follows {
                    push(self, Pick::AnyButLast, size - 1, fresh);
                    if usize::from(s.run) < r.max_run {
                        push(self, Pick::Same, 1, same);
                    }
                } else {
                    push(self, Pick::Any, size, fresh);
                }
            } else {
                let used = usize::from(s.distinct[k]);
                let mut more = s.distinct;
                more[k] += 1;
                if more.iter().map(|&d| usize::from(d)).sum::<usize>() >= r.min_distinct {
                    more = [SAT; 4];
                }
                push(
                    self,
                    Pick::New,
                    size - used,
                    State {
                        distinct: more,
                        ..fresh
                    },
                );
                if follows {
                    push(self, Pick::UsedButLast, used.saturating_sub(1), fresh);
                    if usize::from(s.run) < r.max_run {
                        push(self, Pick::Same, 1, same);
                    }
                } else {
                    push(self, Pick::Used, used, fresh);
                }
            }
        }
        out
    }
}

impl Generator {
    /// Builds the table for passwords up to `max_length` characters. A run limit at or
    /// above `max_length` cannot bind and is dropped by the caller.
    pub fn new(rules: Rules, max_length: usize) -> Result<Generator, TooComplex> {
        let start = State {
            counts: [0; 4],
            classes: if rules.min_classes == 0 { SAT } else { 0 },
            distinct: if rules.min_distinct <= 1 {
                [SAT; 4]
            } else {
                [0; 4]
            },
            last: NONE,
            run: 0,
            start: true,
        };
        let mut b = Builder {
            rules,
            index: HashMap::new(),
            states: Vec::new(),
        };
        b.intern(start);
        let mut steps = Vec::new();
        let too_complex = |states: usize| TooComplex {
            states,
            lengths: max_length + 1,
        };
        while steps.len() < b.states.len() {
            let s = b.states[steps.len()];
            let normal = b.expand(s, false);
            // Only ESXi counting makes the last position differ.
            let last = if rules.esxi && rules.min_classes > 0 {
                b.expand(s, true)
            } else {
                normal.clone()
            };
            steps.push([normal, last]);
            if b.states.len() > MAX_STATES {
                return Err(too_complex(b.states.len()));
            }
        }
        let n_states = b.states.len();
        if n_states * (max_length + 1) > MAX_CELLS {
            return Err(too_complex(n_states));
        }
        let mut table: Vec<Vec<BigUint>> = Vec::with_capacity(max_length + 1);
        table.push(
            b.states
                .iter()
                .map(|s| BigUint::from(u8::from(b.accepts(s))))
                .collect(),
        );
        for n in 1..=max_length {
            let prev = &table[n - 1];
            let v = usize::from(n == 1);
            let row = steps
                .iter()
                .map(|st| {
                    let mut sum = BigUint::zero();
                    for step in &st[v] {
                        let t = &prev[step.next as usize];
                        if !t.is_zero() {
                            sum += t * step.options;
                        }
                    }
                    sum
                })
                .collect();
            table.push(row);
        }
        Ok(Generator {
            rules,
            steps,
            table,
        })
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    pub fn states(&self) -> usize {
        self.steps.len()
    }

    /// How many compliant passwords of exactly `length` characters exist.
    pub fn count(&self, length: usize) -> &BigUint {
        static ZERO: BigUint = BigUint::ZERO;
        self.table
            .get(length)
            .map(|row| &row[START])
            .unwrap_or(&ZERO)
    }

    /// A uniformly drawn compliant password of `length` characters, as (class, index in
    /// class) pairs appended to `out`. The length must be feasible.
    pub fn sample(&self, length: usize, rng: &mut Rng, out: &mut Vec<(u8, u8)>) {
        let total = self.count(length);
        assert!(!total.is_zero(), "length {length} is feasible");
        let mut r = rng.below_big(total);
        let mut state = START;
        // Characters used so far, one bit per index in each class.
        let mut used = [0u128; 4];
        let mut last_index = 0u8;
        for pos in 0..length {
            let left = length - pos;
            let rest = &self.table[left - 1];
            let steps = &self.steps[state][usize::from(left == 1)];
            let mut chosen = None;
            for step in steps {
                let t = &rest[step.next as usize];
                if t.is_zero() {
                    continue;
                }
                let w = t * step.options;
                if r < w {
                    let q = &r / t;
                    r -= &q * t;
                    let q = u32::try_from(&q).expect("index below the step's options");
                    chosen = Some((step, q));
                    break;
                }
                r -= w;
            }
            let (step, q) = chosen.expect("the rank is below the count, so a step takes it");
            let k = usize::from(step.class);
            let index = match step.pick {
                Pick::Any => q,
                Pick::AnyButLast => q + u32::from(q >= u32::from(last_index)),
                Pick::Same => u32::from(last_index),
                Pick::New => nth_bit(!used[k], q),
                Pick::Used => nth_bit(used[k], q),
                Pick::UsedButLast => nth_bit(used[k] & !(1u128 << last_index), q),
            } as u8;
            used[k] |= 1u128 << index;
            last_index = index;
            out.push((step.class, index));
            state = step.next as usize;
        }
    }
}

/// For each position, how many compliant passwords of `length` have a character of each
/// class there: forward counts of prefixes times the table's counts of suffixes.
#[cfg(test)]
pub(super) fn position_class_counts(g: &Generator, length: usize) -> Vec<[BigUint; 4]> {
    let mut forward: HashMap<usize, BigUint> = HashMap::from([(START, BigUint::from(1u32))]);
    let mut out = Vec::with_capacity(length);
    for pos in 0..length {
        let left = length - pos;
        let rest = &g.table[left - 1];
        let mut by_class: [BigUint; 4] = Default::default();
        let mut next: HashMap<usize, BigUint> = HashMap::new();
        for (&s, f) in &forward {
            for step in &g.steps[s][usize::from(left == 1)] {
                let w = f * step.options;
                by_class[usize::from(step.class)] += &w * &rest[step.next as usize];
                *next.entry(step.next as usize).or_default() += w;
            }
        }
        forward = next;
        out.push(by_class);
    }
    out
}

/// Position of the `n`-th (from 0) set bit.
fn nth_bit(mut bits: u128, n: u32) -> u32 {
    for _ in 0..n {
        bits &= bits - 1;
    }
    bits.trailing_zeros()
}

/// log2 of a big count, to a few ulps.
pub fn log2(n: &BigUint) -> f64 {
    let bits = n.bits();
    if bits == 0 {
        return f64::NEG_INFINITY;
    }
    let shift = bits.saturating_sub(60);
    let top: u64 = u64::try_from(n >> shift).expect("at most 60 bits");
    (top as f64).log2() + shift as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(sizes: [usize; 4], minimums: [usize; 4], max_run: usize) -> Rules {
        Rules {
            sizes,
            minimums,
            max_run,
            min_classes: 0,
            esxi: false,
            min_distinct: 0,
        }
    }

    /// Brute force over a tiny alphabet agrees with the table, and the rank decoding
    /// covers every compliant password.
    #[test]
    fn counts_match_brute_force() {
        // lower {a,b}, upper {A}, digit {1,2}; min 1 lower, 1 digit; run <= 2
        let alphabet = [(0u8, 'a'), (0, 'b'), (1, 'A'), (2, '1'), (2, '2')];
        let g = Generator::new(rules([2, 1, 2, 0], [1, 0, 1, 0], 2), 6).unwrap();
        for len in 1..=6usize {
            let mut n = 0u64;
            let total = alphabet.len().pow(len as u32);
            for mut code in 0..total {
                let mut pw = Vec::new();
                for _ in 0..len {
                    pw.push(alphabet[code % alphabet.len()]);
                    code /= alphabet.len();
                }
                let has = |k: u8| pw.iter().any(|&(c, _)| c == k);
                let run_ok = pw.chunk_by(|a, b| a == b).all(|r| r.len() <= 2);
                if has(0) && has(2) && run_ok {
                    n += 1;
                }
            }
            assert_eq!(*g.count(len), BigUint::from(n), "length {len}");
        }
    }

    #[test]
    fn small_set_is_sampled_completely() {
        // digits {0,1,2}, 4 characters, at least 3 different, no two identical in a row:
        // every one of the compliant passwords shows up.
        let r = Rules {
            sizes: [0, 0, 3, 0],
            minimums: [0; 4],
            max_run: 1,
            min_classes: 0,
            esxi: false,
            min_distinct: 3,
        };
        let g = Generator::new(r, 4).unwrap();
        // 3*2*2*2 = 24 without repeats in a row, minus the 6 using two digits only.
        assert_eq!(*g.count(4), BigUint::from(18u32));
        let mut rng = Rng::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            let mut out = Vec::new();
            g.sample(4, &mut rng, &mut out);
            assert!(out.windows(2).all(|w| w[0] != w[1]));
            let distinct: std::collections::HashSet<_> = out.iter().collect();
            assert_eq!(distinct.len(), 3);
            seen.insert(out);
        }
        assert_eq!(seen.len(), 18);
    }

    #[test]
    fn log2_is_close() {
        assert_eq!(log2(&BigUint::from(1024u32)), 10.0);
        let big = BigUint::from(3u32).pow(300);
        assert!((log2(&big) - 300.0 * 3f64.log2()).abs() < 1e-9);
    }
}
