//! Statistical proof of uniformity: 100,000 passwords each of `vcf` and `linux`.
//!
//! Each test is a chi-square test at ALPHA = 1e-7. A run makes 20 of them (per policy:
//! homogeneity across positions, 4 within-class, 4 class-count marginals, 1 joint class
//! count), so a correct generator fails a run with probability at most about 2.1e-6
//! (Bonferroni; see `homogeneity` for the extra 0.5e-7 each of those two may cost). The expected class counts are computed here by counting patterns of
//! blocks, independently of the generator's table; `required_first_then_shuffle_is_caught`
//! shows the same tests reject a plausible but biased generator.

use std::collections::HashMap;

use num_bigint::BigUint;
use secrecy::ExposeSecret;

use super::generate::log2;
use super::rng::Rng;
use super::stats::{chi2_sf, pearson, pool};
use super::{presets, Policy, CLASSES};

const N: usize = 100_000;
const ALPHA: f64 = 1e-7;
/// Smallest expected count of a cell before pooling, for the chi-square approximation.
const MIN_EXPECTED: f64 = 10.0;

struct Sample {
    /// per_position[pos][class][index]
    per_position: Vec<[Vec<u64>; 4]>,
    /// How many passwords have each class-count vector.
    class_counts: HashMap<[usize; 4], u64>,
}

fn collect(policy: &Policy, passwords: impl Iterator<Item = String>) -> Sample {
    let length = policy.max_length;
    let mut lookup = HashMap::new();
    for (k, chars) in policy.alphabet.iter().enumerate() {
        for (i, &c) in chars.iter().enumerate() {
            lookup.insert(c, (k, i));
        }
    }
    let empty: [Vec<u64>; 4] = policy.alphabet.clone().map(|a| vec![0; a.len()]);
    let mut per_position = vec![empty; length];
    let mut class_counts = HashMap::new();
    for pw in passwords {
        let mut v = [0usize; 4];
        for (pos, c) in pw.chars().enumerate() {
            let (k, i) = lookup[&c];
            per_position[pos][k][i] += 1;
            v[k] += 1;
        }
        *class_counts.entry(v).or_insert(0) += 1;
    }
    Sample {
        per_position,
        class_counts,
    }
}

fn generated(policy: &Policy) -> Sample {
    let mut batch = policy.passwords();
    collect(
        policy,
        (0..N).map(|_| batch.next_password().expose_secret().to_string()),
    )
}

/// One test's outcome: what, the statistic, its degrees of freedom and the p-value.
struct Outcome {
    what: String,
    p: f64,
}

fn fit(what: String, observed: &[f64], expected: &[f64], df: usize) -> Outcome {
    let stat = pearson(observed, expected);
    let p = chi2_sf(stat, df);
    eprintln!("{what}: chi2 = {stat:.1}, df = {df}, p = {p:.3e}");
    Outcome { what, p }
}

fn assert_all_pass(outcomes: &[Outcome]) {
    for o in outcomes {
        assert!(o.p >= ALPHA, "{}: p = {:.3e} < {ALPHA:e}", o.what, o.p);
    }
}

/// The homogeneity test's null holds exactly: for linux the compliant set is closed under
/// permuting positions; for vcf the run rule is not, yet exact counting gives every position
/// the same class law (and within a class, symmetry makes characters equally likely).
#[test]
fn every_position_has_the_same_exact_class_law() {
    for name in ["vcf", "linux"] {
        let p = presets().remove(name).unwrap();
        let counts = super::generate::position_class_counts(p.generator.generator(), p.max_length);
        let total = p.count(p.max_length);
        for (pos, c) in counts.iter().enumerate() {
            assert_eq!(c, &counts[0], "{name}: position {pos}");
            assert_eq!(c.iter().sum::<BigUint>(), total);
        }
    }
}

/// Every position has the same character distribution: L x A contingency table. Positions
/// of one password are not independent: the class minimums correlate them negatively,
/// which inflates the statistic by at most 0.3% (vcf's specials: rho/sigma^2 = 2.9e-3
/// from the exact class-count law), so this test's false-alarm rate is at most about
/// 1.5e-7 instead of 1e-7.
fn homogeneity(name: &str, s: &Sample) -> Outcome {
    let rows: Vec<Vec<f64>> = s
        .per_position
        .iter()
        .map(|p| p.iter().flatten().map(|&c| c as f64).collect())
        .collect();
    let cols = rows[0].len();
    let total: f64 = rows.iter().flatten().sum();
    let col_sums: Vec<f64> = (0..cols).map(|j| rows.iter().map(|r| r[j]).sum()).collect();
    let (mut obs, mut exp) = (Vec::new(), Vec::new());
    for r in &rows {
        let row_sum: f64 = r.iter().sum();
        for j in 0..cols {
            obs.push(r[j]);
            exp.push(row_sum * col_sums[j] / total);
        }
    }
    fit(
        format!("{name}: homogeneity across positions"),
        &obs,
        &exp,
        (rows.len() - 1) * (cols - 1),
    )
}

/// Within each class every character is equally likely (all positions pooled).
fn within_classes(name: &str, s: &Sample) -> Vec<Outcome> {
    let mut out = Vec::new();
    for (k, class) in CLASSES.iter().enumerate() {
        let size = s.per_position[0][k].len();
        if size < 2 {
            continue;
        }
        let obs: Vec<f64> = (0..size)
            .map(|i| s.per_position.iter().map(|p| p[k][i] as f64).sum())
            .collect();
        let mean = obs.iter().sum::<f64>() / size as f64;
        out.push(fit(
            format!("{name}: {} characters equally likely", class.name()),
            &obs,
            &vec![mean; size],
            size - 1,
        ));
    }
    out
}

/// Exact weight of each class-count vector among the compliant passwords, by blocks:
/// a password is a sequence of maximal same-class blocks, adjacent blocks of different
/// classes; a block of `l` characters of a class of `s` characters admits F_s(l)
/// fillings with no run over the limit, and blocks fill independently.
fn exact_class_counts(policy: &Policy) -> HashMap<[usize; 4], BigUint> {
    let length = policy.max_length;
    let limit = if policy.max_identical_run == 0 {
        length
    } else {
        policy.max_identical_run
    };
    let fillings: Vec<Vec<BigUint>> = policy
        .alphabet
        .iter()
        .map(|a| {
            let s = a.len() as u64;
            // f[l]: strings of l characters over s symbols with no run longer than `limit`,
            // by the length j of the last run.
            let mut f = vec![BigUint::from(0u32); length + 1];
            for l in 1..=length {
                f[l] = (1..=limit.min(l))
                    .map(|j| {
                        if j == l {
                            BigUint::from(s)
                        } else {
                            &f[l - j] * (s.saturating_sub(1))
                        }
                    })
                    .sum();
            }
            f
        })
        .collect();
    let mut memo: HashMap<([usize; 4], usize), BigUint> = HashMap::new();
    fn blocks(
        rest: [usize; 4],
        last: usize,
        f: &[Vec<BigUint>],
        memo: &mut HashMap<([usize; 4], usize), BigUint>,
    ) -> BigUint {
        if rest == [0; 4] {
            return BigUint::from(1u32);
        }
        if let Some(v) = memo.get(&(rest, last)) {
            return v.clone();
        }
        let mut total = BigUint::from(0u32);
        for k in (0..4).filter(|&k| k != last) {
            for l in 1..=rest[k] {
                let mut r = rest;
                r[k] -= l;
                total += &f[k][l] * blocks(r, k, f, memo);
            }
        }
        memo.insert((rest, last), total.clone());
        total
    }
    let mut out = HashMap::new();
    for a in 0..=length {
        for b in 0..=length - a {
            for c in 0..=length - a - b {
                let v = [a, b, c, length - a - b - c];
                if (0..4).all(|k| {
                    v[k] >= policy.minimums[k] && (v[k] == 0 || !policy.alphabet[k].is_empty())
                }) {
                    out.insert(v, blocks(v, 4, &fillings, &mut memo));
                }
            }
        }
    }
    out
}

/// The class-count vector per password, jointly and per class, against the exact law.
fn class_counts(name: &str, policy: &Policy, s: &Sample) -> Vec<Outcome> {
    let exact = exact_class_counts(policy);
    let total: BigUint = exact.values().sum();
    assert_eq!(
        total,
        policy.count(policy.max_length),
        "{name}: block counting agrees with the generator's table"
    );
    let log_total = log2(&total);
    let prob = |w: &BigUint| {
        if w.bits() == 0 {
            0.0
        } else {
            (log2(w) - log_total).exp2()
        }
    };
    let n = N as f64;
    let cells: Vec<(f64, f64)> = exact
        .iter()
        .map(|(v, w)| (*s.class_counts.get(v).unwrap_or(&0) as f64, n * prob(w)))
        .collect();
    let unexpected: u64 = s
        .class_counts
        .iter()
        .filter(|(v, _)| !exact.contains_key(*v))
        .map(|(_, c)| c)
        .sum();
    assert_eq!(
        unexpected, 0,
        "{name}: class-count vectors outside the compliant set"
    );
    let (obs, exp) = pool(&cells, MIN_EXPECTED);
    let mut out = vec![fit(
        format!("{name}: joint class counts ({} cells)", obs.len()),
        &obs,
        &exp,
        obs.len() - 1,
    )];
    for (k, class) in CLASSES.iter().enumerate() {
        let mut marginal = vec![(0.0, 0.0); policy.max_length + 1];
        for (v, w) in &exact {
            marginal[v[k]].0 += *s.class_counts.get(v).unwrap_or(&0) as f64;
            marginal[v[k]].1 += n * prob(w);
        }
        let (obs, exp) = pool(&marginal, MIN_EXPECTED);
        out.push(fit(
            format!("{name}: {} characters per password", class.name()),
            &obs,
            &exp,
            obs.len() - 1,
        ));
    }
    out
}

fn uniform(name: &str) {
    let policy = presets().remove(name).unwrap();
    assert_eq!(policy.lengths, vec![policy.max_length], "fixed length");
    let s = generated(&policy);
    let mut outcomes = vec![homogeneity(name, &s)];
    outcomes.extend(within_classes(name, &s));
    outcomes.extend(class_counts(name, &policy, &s));
    assert_eq!(
        outcomes.len(),
        10,
        "the false-alarm budget counts 10 tests per policy"
    );
    assert_all_pass(&outcomes);
}

#[test]
fn vcf_is_uniform() {
    uniform("vcf");
}

#[test]
fn linux_is_uniform() {
    uniform("linux");
}

/// The usual shortcut, one character of each class then the rest from the whole alphabet,
/// shuffled, over-represents small classes: the class-count test must see it.
#[test]
fn required_first_then_shuffle_is_caught() {
    let policy = presets().remove("vcf").unwrap();
    let all: Vec<char> = policy.alphabet.iter().flatten().copied().collect();
    let mut rng = Rng::new();
    let pick = |from: &[char], rng: &mut Rng| from[rng.below(from.len() as u64) as usize];
    let biased = (0..N / 10).map(|_| {
        let mut pw: Vec<char> = policy.alphabet.iter().map(|a| pick(a, &mut rng)).collect();
        while pw.len() < policy.max_length {
            pw.push(pick(&all, &mut rng));
        }
        for i in (1..pw.len()).rev() {
            pw.swap(i, rng.below(i as u64 + 1) as usize);
        }
        pw.into_iter().collect::<String>()
    });
    let s = collect(&policy, biased.collect::<Vec<_>>().into_iter());
    let worst = class_counts("biased", &policy, &s)
        .into_iter()
        .map(|o| o.p)
        .fold(1.0, f64::min);
    assert!(
        worst < ALPHA,
        "a 10,000-password sample of the biased generator passes (p = {worst:e})"
    );
}
