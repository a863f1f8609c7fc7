//! Chi-square tail probabilities for the uniformity tests: the regularized upper
//! incomplete gamma function Q(df/2, x/2), by its series below the mean and Lentz's
//! continued fraction above it (double precision, no statistics crate).

/// ln Γ(x) for x > 0: Lanczos approximation (g = 7, nine terms), with the reflection
/// formula for x < 1/2. About 15 significant digits.
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_93,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_13,
        -176.615_029_162_140_59,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_571_6e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = C[0];
    for (i, &c) in C.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// Regularized upper incomplete gamma Q(a, x) = Γ(a, x) / Γ(a).
pub fn gamma_q(a: f64, x: f64) -> f64 {
    assert!(a > 0.0 && x >= 0.0);
    if x == 0.0 {
        return 1.0;
    }
    let prefactor = (a * x.ln() - x - ln_gamma(a)).exp();
    if x < a + 1.0 {
        // P(a, x) = x^a e^-x / Γ(a+1) * Σ x^n / ((a+1)...(a+n))
        let (mut term, mut sum) = (1.0 / a, 1.0 / a);
        for n in 1..100_000 {
            term *= x / (a + n as f64);
            sum += term;
            if term.abs() < sum.abs() * 1e-17 {
                break;
            }
        }
        1.0 - sum * prefactor
    } else {
        // Q(a, x) = x^a e^-x / Γ(a) * 1/(x+1-a- 1(1-a)/(x+3-a- 2(2-a)/(x+5-a- ...)))
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..100_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        prefactor * h
    }
}

/// P(X >= stat) for X chi-square with `df` degrees of freedom.
pub fn chi2_sf(stat: f64, df: usize) -> f64 {
    gamma_q(df as f64 / 2.0, stat / 2.0)
}

/// Pearson's statistic of observed counts against expected counts (same length).
pub fn pearson(observed: &[f64], expected: &[f64]) -> f64 {
    observed
        .iter()
        .zip(expected)
        .map(|(o, e)| (o - e) * (o - e) / e)
        .sum()
}

/// Pools cells until every expected count is at least `min`: the smallest cells go into
/// one "rest" cell, which if still too small is merged with the smallest kept cell.
/// Returns (observed, expected).
pub fn pool(cells: &[(f64, f64)], min: f64) -> (Vec<f64>, Vec<f64>) {
    let mut sorted: Vec<(f64, f64)> = cells.to_vec();
    sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
    let (mut obs, mut exp) = (Vec::new(), Vec::new());
    let (mut rest_o, mut rest_e) = (0.0, 0.0);
    for (o, e) in sorted {
        if e >= min {
            obs.push(o);
            exp.push(e);
        } else {
            rest_o += o;
            rest_e += e;
        }
    }
    if rest_e > 0.0 || rest_o > 0.0 {
        if rest_e >= min || obs.is_empty() {
            obs.push(rest_o);
            exp.push(rest_e);
        } else {
            *obs.last_mut().expect("non-empty") += rest_o;
            *exp.last_mut().expect("non-empty") += rest_e;
        }
    }
    (obs, exp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs()
    }

    #[test]
    fn ln_gamma_matches_factorials() {
        let mut f = 1f64;
        for n in 1..60u32 {
            assert!(
                close(ln_gamma(f64::from(n)), f.ln(), 1e-13) || n <= 2,
                "{n}"
            );
            f *= f64::from(n);
        }
        assert!(close(
            ln_gamma(0.5),
            std::f64::consts::PI.sqrt().ln(),
            1e-13
        ));
    }

    #[test]
    fn chi2_tail_matches_known_values() {
        // Closed forms: df = 2 is exp(-x/2); even df is a Poisson sum.
        for x in [0.5, 3.0, 10.0, 60.0] {
            assert!(close(chi2_sf(x, 2), (-x / 2.0).exp(), 1e-12), "{x}");
        }
        for (df, x) in [
            (20usize, 5.0f64),
            (20, 31.41),
            (20, 80.0),
            (200, 180.0),
            (200, 300.0),
            (1600, 1800.0),
        ] {
            // Q(k, m) = sum_{i<k} e^-m m^i / i!, added in logs (e^-m underflows for large m).
            let (k, m) = (df / 2, x / 2.0);
            let mut log_sum = f64::NEG_INFINITY;
            for i in 0..k {
                let t = -m + i as f64 * m.ln() - ln_gamma(i as f64 + 1.0);
                let (hi, lo) = if t > log_sum {
                    (t, log_sum)
                } else {
                    (log_sum, t)
                };
                log_sum = hi + (lo - hi).exp().ln_1p();
            }
            let sum = log_sum.exp();
            assert!(
                close(chi2_sf(x, df), sum, 1e-9),
                "df {df} x {x}: {} vs {sum}",
                chi2_sf(x, df)
            );
        }
        // Textbook critical values.
        assert!(close(chi2_sf(3.841_458_820_694_124, 1), 0.05, 1e-9));
        assert!(close(chi2_sf(29.588_298_445_074_4, 10), 0.001, 1e-8));
        assert!(close(chi2_sf(124.342_113_404_677, 100), 0.05, 1e-8));
    }

    #[test]
    fn pooling_keeps_totals() {
        let cells = [
            (10.0, 12.0),
            (3.0, 2.0),
            (1.0, 1.5),
            (40.0, 38.0),
            (0.0, 0.5),
        ];
        let (o, e) = pool(&cells, 5.0);
        assert_eq!(o.iter().sum::<f64>(), 54.0);
        assert_eq!(e.iter().sum::<f64>(), 54.0);
        assert!(e.iter().all(|&e| e >= 5.0));
    }
}
