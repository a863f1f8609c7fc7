//! Checking a supplied password against a policy: every broken rule, each with a stable
//! code, and messages that carry counts, never the password or any of its characters.
//!
//! The rules are the same ones the generator counts, position for position (ESXi's
//! class counting included); the property tests hold the two to the same set.

use zeroize::Zeroizing;

use super::rules::{Policy, Violation, CLASSES};
use super::spec::AMBIGUOUS;

const MIN_CODES: [&str; 4] = ["MIN_LOWER", "MIN_UPPER", "MIN_DIGIT", "MIN_SPECIAL"];

/// The class a character would belong to: letters and digits by ASCII range, anything
/// else is "special" (as passwdqc's "other").
pub(super) fn raw_class(c: char) -> usize {
    match c {
        'a'..='z' => 0,
        'A'..='Z' => 1,
        '0'..='9' => 2,
        _ => 3,
    }
}

/// The username as compared: lowercased, or None when there is nothing to compare.
pub(super) fn lowered_username(username: Option<&str>) -> Option<String> {
    username.filter(|u| !u.is_empty()).map(str::to_lowercase)
}

pub(super) fn contains_username(password: &str, lowered: &str) -> bool {
    Zeroizing::new(password.to_lowercase()).contains(lowered)
}

pub(super) fn violations(
    policy: &Policy,
    password: &str,
    username: Option<&str>,
) -> Vec<Violation> {
    let chars = Zeroizing::new(password.chars().collect::<Vec<char>>());
    let mut out = Vec::new();
    let len = chars.len();
    if len < policy.min_length {
        out.push(Violation::new(
            "TOO_SHORT",
            format!("{len} characters, fewer than {}", policy.min_length),
        ));
    }
    if len > policy.max_length {
        out.push(Violation::new(
            "TOO_LONG",
            format!("{len} characters, more than {}", policy.max_length),
        ));
    }

    let (mut forbidden, mut ambiguous, mut disallowed) = (0usize, 0usize, 0usize);
    let mut excluded = [0usize; 4];
    let mut counts = [0usize; 4];
    for &c in chars.iter() {
        let k = raw_class(c);
        counts[k] += 1;
        if policy.alphabet[k].contains(&c) {
            continue;
        }
        if policy.forbidden.contains(&c) {
            forbidden += 1;
        } else if policy.exclude_ambiguous && AMBIGUOUS.contains(c) {
            ambiguous += 1;
        } else if policy.excluded[k] {
            excluded[k] += 1;
        } else {
            disallowed += 1;
        }
    }
    if forbidden > 0 {
        out.push(Violation::new(
            "FORBIDDEN_CHARACTER",
            format!("{forbidden} character(s) from the forbidden set"),
        ));
    }
    if ambiguous > 0 {
        out.push(Violation::new(
            "AMBIGUOUS_CHARACTER",
            format!("{ambiguous} ambiguous character(s) ({AMBIGUOUS}), which this policy excludes"),
        ));
    }
    for k in 0..4 {
        if excluded[k] > 0 {
            let class = CLASSES[k].name();
            out.push(Violation::new(
                "EXCLUDED_CLASS",
                format!(
                    "{} {class} character(s); this policy excludes {class} characters",
                    excluded[k]
                ),
            ));
        }
    }
    if disallowed > 0 {
        out.push(Violation::new(
            "DISALLOWED_CHARACTER",
            format!(
                "{disallowed} character(s) outside the allowed set (see `rotor policy show {}`)",
                policy.name
            ),
        ));
    }

    for k in 0..4 {
        if counts[k] < policy.minimums[k] {
            out.push(Violation::new(
                MIN_CODES[k],
                format!(
                    "needs at least {} {} character(s), has {}",
                    policy.minimums[k],
                    CLASSES[k].name(),
                    counts[k]
                ),
            ));
        }
    }

    if policy.min_classes > 0 {
        let mut present = [false; 4];
        for (i, &c) in chars.iter().enumerate() {
            let k = raw_class(c);
            let quirk =
                policy.esxi_class_counting && ((i == 0 && k == 1) || (i + 1 == len && k == 2));
            present[k] |= !quirk;
        }
        let n = present.iter().filter(|&&p| p).count();
        if n < policy.min_classes {
            let how = if policy.esxi_class_counting {
                " (an uppercase first character and a digit last character do not count)"
            } else {
                ""
            };
            out.push(Violation::new(
                "MIN_CLASSES",
                format!(
                    "uses {n} of the 4 character classes, needs {}{how}",
                    policy.min_classes
                ),
            ));
        }
    }

    if policy.max_identical_run > 0 {
        let longest = chars
            .chunk_by(|a, b| a == b)
            .map(<[char]>::len)
            .max()
            .unwrap_or(0);
        if longest > policy.max_identical_run {
            out.push(Violation::new(
                "MAX_IDENTICAL_RUN",
                format!(
                    "{longest} identical characters in a row, at most {} allowed",
                    policy.max_identical_run
                ),
            ));
        }
    }

    if policy.min_distinct > 1 {
        let mut seen = Zeroizing::new(chars.to_vec());
        seen.sort_unstable();
        seen.dedup();
        if seen.len() < policy.min_distinct {
            out.push(Violation::new(
                "MIN_DISTINCT",
                format!(
                    "{} different characters, needs at least {}",
                    seen.len(),
                    policy.min_distinct
                ),
            ));
        }
    }

    if policy.no_username {
        if let Some(u) = lowered_username(username) {
            if contains_username(password, &u) {
                out.push(Violation::new(
                    "CONTAINS_USERNAME",
                    "contains the username (ignoring case)".to_string(),
                ));
            }
        }
    }
    out
}
