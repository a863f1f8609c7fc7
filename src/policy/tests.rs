//! Unit tests of the rules, presets, refusals and checks (property tests in
//! `proptests`, statistics in `uniformity`).

use secrecy::{ExposeSecret, SecretString};

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

fn codes(p: &Policy, pw: &str) -> Vec<&'static str> {
    p.check(&SecretString::from(pw.to_string()))
        .iter()
        .map(|v| v.code)
        .collect()
}

fn all_pass(p: &Policy, n: usize) {
    for pw in p.passwords().take(n) {
        assert_eq!(p.check(&pw), vec![], "policy {}", p.name);
    }
}

#[test]
fn presets_generate_compliant_passwords() {
    for (name, policy) in presets() {
        for pw in policy.passwords().take(300) {
            assert_eq!(policy.check(&pw), vec![], "preset {name}");
            let len = pw.expose_secret().chars().count();
            assert!(policy.lengths.contains(&len));
        }
    }
}

#[test]
fn presets_follow_their_sources() {
    let p = presets();
    let vcf = &p["vcf"];
    assert_eq!(
        (vcf.min_length, vcf.max_length, vcf.max_identical_run),
        (20, 20, 2)
    );
    assert_eq!(vcf.alphabet[3], "!@#$^*".chars().collect::<Vec<_>>());
    let esxi = &p["esxi"];
    assert_eq!(
        (esxi.min_length, esxi.max_length, esxi.lengths.clone()),
        (7, 39, vec![20])
    );
    assert!(esxi.esxi_class_counting && esxi.min_classes == 3);
    let nsx = &p["nsx"];
    assert_eq!(
        (nsx.min_length, nsx.max_length, nsx.min_distinct),
        (12, 127, 5)
    );
    assert_eq!(nsx.lengths, (12..=127).collect::<Vec<_>>());
    for c in "*{}[]()/\\'\"`~,;:.<>".chars() {
        assert!(!nsx.alphabet[3].contains(&c), "{c}");
    }
    assert_eq!(nsx.alphabet[3].iter().collect::<String>(), "!#$%&+-=?@^_|");
    let linux = &p["linux"];
    assert_eq!((linux.min_length, linux.minimums), (24, [1, 1, 1, 1]));
    assert_eq!(preset_for_type("ESXI"), "esxi");
    assert_eq!(preset_for_type("NSXT_MANAGER"), "nsx");
    assert_eq!(preset_for_type("VCENTER"), "vcf");
    assert_eq!(preset_for_type("LINUX"), "linux");
    for (name, policy) in &p {
        assert!(
            policy.min_entropy_bits() > 80.0,
            "{name}: {}",
            policy.min_entropy_bits()
        );
    }
}

#[test]
fn tight_policies_always_succeed() {
    // Length equal to the sum of the minimums.
    let p = Policy::from_spec("sum", &spec(8, [2, 2, 2, 2])).unwrap();
    all_pass(&p, 500);
    let p = Policy::from_spec("sum4", &spec(4, [1, 1, 1, 1])).unwrap();
    all_pass(&p, 500);
    // No two identical characters in a row over a 4-character alphabet.
    let mut s = spec(16, [-1, -1, 0, -1]);
    s.forbidden_chars = "456789".into();
    s.max_identical_run = 1;
    let p = Policy::from_spec("run1", &s).unwrap();
    assert_eq!(p.alphabet_size(), 4);
    assert_eq!(p.count(16), num_bigint::BigUint::from(4u64 * 3u64.pow(15)));
    all_pass(&p, 500);
    // ... and every one of the four characters used, from 4 characters.
    s.length = Some(4);
    s.min_distinct = 4;
    let p = Policy::from_spec("run1d", &s).unwrap();
    assert_eq!(p.count(4), num_bigint::BigUint::from(24u32));
    all_pass(&p, 500);
    // ESXi counting at the shortest length, all four classes needed: the uppercase letter
    // cannot lead and the digit cannot close.
    let e = PolicySpec {
        length: Some(7),
        min_classes: 4,
        esxi_class_counting: true,
        ..Default::default()
    };
    let p = Policy::from_spec("esxi7", &e).unwrap();
    for pw in p.passwords().take(2000) {
        let pw = pw.expose_secret().to_string();
        assert!(
            !pw.starts_with(|c: char| c.is_ascii_uppercase())
                || pw[1..].contains(|c: char| c.is_ascii_uppercase())
        );
        assert!(p.check(&SecretString::from(pw)).is_empty());
    }
    let short = Policy::from_spec(
        "esxi-short",
        &PolicySpec {
            generated_length: Some(7),
            ..esxi_spec()
        },
    )
    .unwrap();
    all_pass(&short, 2000);
}

fn esxi_spec() -> PolicySpec {
    PolicySpec {
        min_length: Some(7),
        max_length: Some(39),
        min_classes: 3,
        esxi_class_counting: true,
        ..Default::default()
    }
}

#[test]
fn esxi_counting_ignores_leading_upper_and_trailing_digit() {
    let p = Policy::from_spec("e", &esxi_spec()).unwrap();
    assert_eq!(codes(&p, "Abcdef1"), ["MIN_CLASSES"]);
    assert_eq!(codes(&p, "aBcdef1"), ["MIN_CLASSES"]);
    assert_eq!(codes(&p, "Abcdef!1"), ["MIN_CLASSES"]);
    assert!(codes(&p, "aBcdef1!").is_empty());
    assert!(codes(&p, "Abcde1f!").is_empty());
    assert_eq!(codes(&p, "abcdef"), ["TOO_SHORT", "MIN_CLASSES"]);
}

#[test]
fn infeasible_policies_are_refused_with_a_reason() {
    let refused = |s: &PolicySpec| Policy::from_spec("x", s).unwrap_err();
    assert_eq!(
        refused(&spec(5, [2, 2, 2, 0])),
        SpecError::MinimumsExceedLength(6, 5)
    );
    let mut s = spec(8, [0, 0, 2, -1]);
    s.forbidden_chars = "0123456789".into();
    assert_eq!(refused(&s), SpecError::EmptyClass("digit"));
    let mut s = spec(8, [-1, -1, 0, -1]);
    s.forbidden_chars = "123456789".into();
    s.max_identical_run = 1;
    assert_eq!(refused(&s), SpecError::RunTooTight(1));
    let mut s = spec(8, [0, 0, 0, -1]);
    s.min_distinct = 70;
    assert_eq!(refused(&s), SpecError::DistinctExceedsAlphabet(70, 62));
    s.min_distinct = 9;
    assert_eq!(refused(&s), SpecError::DistinctExceedsLength(9, 8));
    // Six of the eight must be the one allowed digit, so at most three different ones.
    let mut s = spec(8, [0, -1, 6, -1]);
    s.forbidden_chars = "123456789".into();
    s.min_distinct = 4;
    assert_eq!(refused(&s), SpecError::DistinctUnreachable(4));
    let mut s = spec(8, [0, 0, -1, -1]);
    s.min_classes = 3;
    assert_eq!(refused(&s), SpecError::ClassesUnavailable(3, 2));
    let g = PolicySpec {
        min_length: Some(8),
        max_length: Some(12),
        generated_length: Some(13),
        ..Default::default()
    };
    assert_eq!(refused(&g), SpecError::GeneratedLengthRange(13, 8, 12));
    let g = PolicySpec {
        length: None,
        min_length: Some(8),
        max_length: Some(12),
        generated_length: Some(8),
        ..spec(0, [3, 3, 3, 0])
    };
    assert_eq!(refused(&g), SpecError::GeneratedLengthInfeasible(8));
    assert_eq!(
        refused(&PolicySpec {
            esxi_class_counting: true,
            ..spec(8, [0; 4])
        }),
        SpecError::EsxiWithoutMinClasses
    );
    assert_eq!(refused(&spec(8, [-1, -1, -1, -1])), SpecError::NoAlphabet);
}

#[test]
fn check_names_every_broken_rule_without_the_password() {
    let p = presets().remove("vcf").unwrap();
    let v = p.check(&SecretString::from("zzzq"));
    let c: Vec<_> = v.iter().map(|v| v.code).collect();
    assert_eq!(
        c,
        [
            "TOO_SHORT",
            "MIN_UPPER",
            "MIN_DIGIT",
            "MIN_SPECIAL",
            "MAX_IDENTICAL_RUN"
        ]
    );
    assert!(v.iter().all(|v| !v.message.contains(['z', 'q'])), "{v:?}");
    let nsx = presets().remove("nsx").unwrap();
    assert_eq!(codes(&nsx, "Aa1!aaaaaaaa"), ["MIN_DISTINCT"]);
    assert_eq!(
        codes(&nsx, "Aa1!bcdefgh(é"),
        ["FORBIDDEN_CHARACTER", "DISALLOWED_CHARACTER"]
    );
    let mut s = spec(12, [1, 1, 1, -1]);
    s.exclude_ambiguous = true;
    let p = Policy::from_spec("amb", &s).unwrap();
    assert_eq!(
        codes(&p, "Aa2bcdefghl!"),
        ["AMBIGUOUS_CHARACTER", "EXCLUDED_CLASS"]
    );
}

#[test]
fn username_is_refused_and_avoided() {
    let linux = presets().remove("linux").unwrap();
    let pw = SecretString::from("xxROOTxx1!Aaaaaaaaaaaaaa");
    assert_eq!(linux.check(&pw), vec![]);
    let v = linux.check_for(&pw, Some("root"));
    assert_eq!(
        v.iter().map(|v| v.code).collect::<Vec<_>>(),
        ["CONTAINS_USERNAME"]
    );
    assert!(!v[0].message.contains("root"));
    assert!(linux.check_for(&pw, Some("")).is_empty());
    // A one-letter username leaves that letter out in both cases, exactly.
    let mut batch = linux.passwords();
    for _ in 0..300 {
        let pw = batch.next_for(Some("a")).unwrap();
        assert!(!pw.expose_secret().contains(['a', 'A']));
        assert!(linux.check_for(&pw, Some("a")).is_empty());
        let pw = batch.next_for(Some("ab")).unwrap();
        assert!(linux.check_for(&pw, Some("ab")).is_empty());
    }
    // Over {a, b} without repeats, "ab" cannot be avoided at length 4: an error, no hang.
    let mut s = spec(4, [0, -1, -1, -1]);
    s.forbidden_chars = ('c'..='z').collect();
    s.max_identical_run = 1;
    s.no_username = true;
    let p = Policy::from_spec("ab", &s).unwrap();
    assert!(matches!(
        p.generate_for(Some("AB")),
        Err(GenerateError::UsernameTries { .. })
    ));
    assert!(matches!(
        p.generate_for(Some("a")),
        Err(GenerateError::UsernameUnavoidable { .. })
    ));
    assert!(p.generate_for(Some("zz")).is_ok());
    assert!(p.generate_for(None).is_ok());
}

#[test]
fn entropy_is_reported() {
    let p = presets();
    // 68^20 less the passwords missing a class or with a triple: about 121.4 bits.
    let vcf = p["vcf"].entropy_bits();
    assert!((121.0..121.8).contains(&vcf), "{vcf}");
    assert_eq!(p["vcf"].entropy_bits(), p["vcf"].min_entropy_bits());
    let nsx = &p["nsx"];
    assert!(nsx.entropy_bits() > nsx.min_entropy_bits() + 100.0);
    let bound = p["linux"].username_rejection_bound(24);
    assert!(bound > 0.0 && bound < 0.05, "{bound}");
}
