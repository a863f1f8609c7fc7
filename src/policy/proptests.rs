//! Property tests. On small random policies every string over a pool of characters is
//! checked: `check` and the feasibility verdict agree, and the generator's count at each
//! length is exactly the number of strings `check` accepts. On larger random policies
//! every generated password passes `check`.

use num_bigint::BigUint;
use proptest::prelude::*;
use proptest::test_runner::Config;
use secrecy::{ExposeSecret, SecretString};

use super::*;

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Characters a small policy may keep per class; `l`, `O`, `0`, `|` are ambiguous.
const POOLS: [&str; 4] = ["alb", "AOB", "501", "!|-"];

#[derive(Debug, Clone)]
struct Small {
    spec: PolicySpec,
    /// Every character a tested string may use: the kept ones, including those the
    /// policy then refuses (excluded class, ambiguous).
    pool: Vec<char>,
}

fn small() -> impl Strategy<Value = Small> {
    // Mostly one or two characters kept; sometimes none, to exercise emptied classes.
    let class = (
        prop::sample::select(vec![-1, 0, 0, 1, 1, 2]),
        prop_oneof![9 => 1usize..=2, 1 => Just(0usize)],
    );
    (
        (4usize..=5, 0usize..=1, any::<bool>()),
        [class.clone(), class.clone(), class.clone(), class],
        (
            0usize..=3,
            0usize..=4,
            any::<bool>(),
            0usize..=5,
            prop::bool::weighted(0.3),
        ),
    )
        .prop_filter("brute force stays small", |(_, classes, _)| {
            classes.iter().map(|c| c.1).sum::<usize>() <= 6
        })
        .prop_map(
            |((min, extra, fixed), classes, (run, min_classes, esxi, distinct, ambiguous))| {
                let raw = [
                    ('a'..='z').collect::<String>(),
                    ('A'..='Z').collect(),
                    ('0'..='9').collect(),
                ];
                let mut forbidden = String::new();
                let mut pool = Vec::new();
                for k in 0..3 {
                    let keep: Vec<char> = POOLS[k].chars().take(classes[k].1).collect();
                    forbidden.extend(raw[k].chars().filter(|c| !keep.contains(c)));
                    pool.extend(keep);
                }
                let specials: String = POOLS[3].chars().take(classes[3].1.max(1)).collect();
                if classes[3].1 == 0 {
                    forbidden.push_str(&specials);
                } else {
                    pool.extend(specials.chars());
                }
                let mins = classes.map(|c| c.0);
                let spec = PolicySpec {
                    length: fixed.then_some(min),
                    min_length: (!fixed).then_some(min),
                    max_length: (!fixed).then_some(min + extra),
                    min_lower: mins[0],
                    min_upper: mins[1],
                    min_digit: mins[2],
                    min_special: mins[3],
                    special_chars: Some(specials),
                    forbidden_chars: forbidden,
                    max_identical_run: run,
                    min_distinct: distinct,
                    exclude_ambiguous: ambiguous,
                    min_classes,
                    esxi_class_counting: esxi && min_classes > 0,
                    ..Default::default()
                };
                Small { spec, pool }
            },
        )
}

/// How many strings of `length` over `pool` pass `check_for`.
fn brute(p: &Policy, pool: &[char], length: usize, username: Option<&str>) -> u64 {
    let mut n = 0;
    let total = pool.len().pow(length as u32);
    let mut s = String::with_capacity(length);
    for mut code in 0..total {
        s.clear();
        for _ in 0..length {
            s.push(pool[code % pool.len()]);
            code /= pool.len();
        }
        if p.check_for(&SecretString::from(s.clone()), username)
            .is_empty()
        {
            n += 1;
        }
    }
    n
}

/// The policy as it would be if every rule were dropped except lengths and alphabet:
/// the brute force needs it to run `check` on refused specs too.
fn lenient(spec: &PolicySpec) -> Policy {
    let loose = PolicySpec {
        min_lower: spec.min_lower.min(0),
        min_upper: spec.min_upper.min(0),
        min_digit: spec.min_digit.min(0),
        min_special: spec.min_special.min(0),
        max_identical_run: 0,
        min_distinct: 0,
        min_classes: 0,
        esxi_class_counting: false,
        ..spec.clone()
    };
    let mut p = Policy::from_spec("lenient", &loose).expect("lengths and alphabet alone are fine");
    p.minimums = [
        spec.min_lower,
        spec.min_upper,
        spec.min_digit,
        spec.min_special,
    ]
    .map(|m| m.max(0) as usize);
    p.max_identical_run = spec.max_identical_run;
    p.min_distinct = spec.min_distinct;
    p.min_classes = spec.min_classes;
    p.esxi_class_counting = spec.esxi_class_counting;
    p
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn check_agrees_with_feasibility_and_counts(s in small()) {
        let (lo, hi) = match s.spec.length { Some(l) => (l, l), None => (s.spec.min_length.unwrap(), s.spec.max_length.unwrap()) };
        match Policy::from_spec("small", &s.spec) {
            Ok(p) => {
                let mut feasible = false;
                for l in lo..=hi {
                    let n = brute(&p, &s.pool, l, None);
                    prop_assert_eq!(p.count(l), BigUint::from(n), "length {}", l);
                    feasible |= n > 0;
                }
                prop_assert!(feasible);
                for pw in p.passwords().take(20) {
                    prop_assert!(p.check(&pw).is_empty());
                }
            }
            Err(SpecError::TooComplex(_)) => prop_assert!(false, "small policies are never too complex"),
            Err(SpecError::NoAlphabet | SpecError::EmptyClass(_)) => {}
            Err(e) => {
                let p = lenient(&s.spec);
                for l in lo..=hi {
                    prop_assert_eq!(brute(&p, &s.pool, l, None), 0, "refused ({}) but a password of {} passes", e, l);
                }
            }
        }
    }

    #[test]
    fn usernames_are_avoided_exactly_or_reported(s in small(), name in prop::collection::vec(0usize..6, 1..=2)) {
        let spec = PolicySpec { no_username: true, ..s.spec.clone() };
        let Ok(p) = Policy::from_spec("small", &spec) else { return Ok(()) };
        let username: String = name.iter().map(|&i| s.pool.get(i).copied().unwrap_or('q')).collect();
        let allowed: Vec<(usize, u64, u64)> =
            p.lengths.iter().map(|&l| (l, brute(&p, &s.pool, l, None), brute(&p, &s.pool, l, Some(&username)))).collect();
        if username.chars().count() == 1 {
            match p.without(&username.to_lowercase()) {
                Some(reduced) => for &(l, _, n) in &allowed {
                    prop_assert_eq!(reduced.count(l), BigUint::from(n), "one-character username, length {}", l);
                },
                None => prop_assert!(allowed.iter().all(|a| a.2 == 0)),
            }
        }
        for _ in 0..10 {
            match p.generate_for(Some(&username)) {
                Ok(pw) => prop_assert!(p.check_for(&pw, Some(&username)).is_empty()),
                Err(GenerateError::UsernameUnavoidable { .. }) => prop_assert!(allowed.iter().all(|a| a.2 == 0)),
                // 1000 redraws all fail only where under 5% of the passwords avoid the name.
                Err(GenerateError::UsernameTries { .. }) => {
                    prop_assert!(allowed.iter().any(|&(_, all, ok)| ok * 20 < all));
                }
            }
        }
    }
}

fn large() -> impl Strategy<Value = (PolicySpec, String)> {
    (
        (
            4usize..=40,
            0usize..=24,
            any::<bool>(),
            prop::option::of(0usize..=40),
        ),
        [-1i32..=3, -1i32..=3, -1i32..=3, -1i32..=3],
        (
            prop::sample::subsequence("!@#$%^&*-_=+?~|".chars().collect::<Vec<_>>(), 1..=15),
            prop::collection::vec(33u8..127, 0..20),
        ),
        (
            0usize..=3,
            0usize..=4,
            any::<bool>(),
            prop_oneof![3 => Just(0usize), 2 => 2usize..=8],
            any::<bool>(),
            any::<bool>(),
        ),
        "[a-zA-Z0-9]{0,4}",
    )
        .prop_map(
            |(
                (min, extra, fixed, generated),
                mins,
                (specials, forbidden),
                (run, classes, esxi, distinct, amb, user),
                username,
            )| {
                let spec = PolicySpec {
                    length: fixed.then_some(min),
                    min_length: (!fixed).then_some(min),
                    max_length: (!fixed).then_some(min + extra),
                    generated_length: generated
                        .filter(|g| !fixed && (min..=min + extra).contains(g)),
                    min_lower: mins[0],
                    min_upper: mins[1],
                    min_digit: mins[2],
                    min_special: mins[3],
                    special_chars: Some(specials.into_iter().collect()),
                    forbidden_chars: forbidden.into_iter().map(char::from).collect(),
                    max_identical_run: run,
                    min_distinct: distinct,
                    exclude_ambiguous: amb,
                    no_username: user,
                    min_classes: classes,
                    esxi_class_counting: esxi && classes > 0,
                    ..Default::default()
                };
                (spec, username)
            },
        )
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn generated_passwords_pass_check((spec, username) in large()) {
        let Ok(p) = Policy::from_spec("large", &spec) else { return Ok(()) };
        for pw in p.passwords().take(10) {
            prop_assert!(p.check(&pw).is_empty(), "{:?}", p.check(&pw));
            prop_assert!(p.lengths.contains(&pw.expose_secret().chars().count()));
        }
        if let Ok(pw) = p.generate_for(Some(&username)) {
            prop_assert!(p.check_for(&pw, Some(&username)).is_empty());
        }
    }
}
