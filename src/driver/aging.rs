//! What the OS says of an account's password and account expiry (`chage -l`,
//! `passwd -S`), and the pre-flight checks read from it.

use chrono::NaiveDate;

use super::check::{last_line, Check, CheckName, CheckStatus};
use super::contract::Error;

/// What the OS says of an account's password and account expiry (`chage -l`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Aging {
    /// None: the password never expires.
    pub password_expires: Option<NaiveDate>,
    /// The password must be changed at the next login (`chage -d 0`).
    pub must_change: bool,
    /// None: the account never expires.
    pub account_expires: Option<NaiveDate>,
    /// The password's maximum age in days; None when it has none (99999 or -1).
    pub max_days: Option<i32>,
}

/// Parses `LC_ALL=C chage -l` output.
pub fn parse_chage(text: &str) -> Option<Aging> {
    let mut aging = Aging::default();
    let mut seen = 0;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        let date = || NaiveDate::parse_from_str(value, "%b %d, %Y").ok();
        match key {
            "Password expires" => {
                seen += 1;
                aging.must_change = value == "password must be changed";
                aging.password_expires = match value {
                    "never" | "password must be changed" => None,
                    _ => Some(date()?),
                };
            }
            "Account expires" => {
                seen += 1;
                aging.account_expires = if value == "never" {
                    None
                } else {
                    Some(date()?)
                };
            }
            "Maximum number of days between password change" => {
                aging.max_days = value.parse::<i32>().ok().filter(|d| (1..99999).contains(d));
            }
            "Last password change" if value == "password must be changed" => {
                aging.must_change = true;
            }
            _ => {}
        }
    }
    (seen == 2).then_some(aging)
}

pub(super) fn account_status(
    status: Result<(i32, String), Error>,
    aging: Option<Aging>,
    logged_in: bool,
    today: NaiveDate,
) -> Check {
    use CheckStatus::*;
    let name = CheckName::AccountStatus;
    if let Some(day) = aging
        .and_then(|a| a.account_expires)
        .filter(|d| *d <= today)
    {
        return Check::new(
            name,
            Fail,
            format!("the account expired on {day}: extend it (`chage -E`)"),
        );
    }
    match status {
        Ok((0, out)) => match out.split_whitespace().nth(1) {
            Some("P") => Check::new(name, Pass, "usable: has a password, not locked"),
            Some("L") => Check::new(name, Fail, "locked (passwd -S shows L): unlock it (`usermod -U`) before rotating"),
            Some("NP") => Check::new(name, Fail, "has no password (passwd -S shows NP)"),
            _ => Check::new(name, Skipped, format!("passwd -S printed what rotor does not read: {}", last_line(&out))),
        },
        _ if logged_in => Check::new(name, Pass, "not locked: its password logs in"),
        Ok((_, out)) => Check::new(name, Skipped, format!(
            "passwd -S refused ({}): allow the admin `/usr/bin/passwd ^-S [a-z_][a-z0-9_.-]*$` in sudoers", last_line(&out))),
        Err(e) => Check::new(name, Skipped, e.to_string()),
    }
}

pub(super) fn password_expiry(aging: Aging, today: NaiveDate) -> Check {
    use CheckStatus::*;
    let name = CheckName::PasswordExpiry;
    if aging.must_change {
        return Check::new(
            name,
            Fail,
            "the password must be changed at the next login: rotate it",
        );
    }
    match aging.password_expires {
        None => Check::new(name, Pass, "the password never expires"),
        Some(day) if day <= today => Check::new(
            name,
            Fail,
            format!("the password expired on {day}: rotate it"),
        ),
        Some(day) => Check::new(
            name,
            Pass,
            format!(
                "the password expires on {day}, in {} days",
                (day - today).num_days()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chage_output_is_read() {
        let text = "Last password change\t\t\t\t\t: Nov 28, 2026\nPassword expires\t\t\t\t\t: Dec 28, 2026\nPassword inactive\t\t\t\t\t: never\nAccount expires\t\t\t\t\t\t: never\n";
        let aging = parse_chage(text).unwrap();
        assert_eq!(
            aging.password_expires,
            NaiveDate::from_ymd_opt(2026, 12, 28)
        );
        assert_eq!(aging.account_expires, None);
        assert!(!aging.must_change);
        assert_eq!(aging.max_days, None);
        let aged = "Password expires\t: Dec 28, 2026\nAccount expires\t: never\nMaximum number of days between password change\t\t: 30\n";
        assert_eq!(parse_chage(aged).unwrap().max_days, Some(30));
        let forced = "Last password change\t: password must be changed\nPassword expires\t: password must be changed\nAccount expires\t: Jan 01, 1970\n";
        let aging = parse_chage(forced).unwrap();
        assert!(aging.must_change);
        assert_eq!(aging.account_expires, NaiveDate::from_ymd_opt(1970, 1, 1));
        assert!(parse_chage("nonsense").is_none());
    }
}
