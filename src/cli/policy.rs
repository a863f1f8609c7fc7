//! `rotor policy list|show|generate|check`.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use clap::Subcommand;
use secrecy::{ExposeSecret, SecretString};

use super::output::print_table;
use crate::config::Settings;
use crate::policy::{Policy, CLASSES, USERNAME_TRIES};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every policy (presets and configured) with its lengths and entropy.
    List,
    /// A policy's rules, alphabet sizes and entropy.
    Show { name: String },
    /// Print N passwords of the policy, one a line.
    Generate {
        name: String,
        #[arg(short = 'n', default_value_t = 1)]
        n: usize,
        /// Avoid this username (policies with `no_username`).
        #[arg(long)]
        username: Option<String>,
    },
    /// Read one password from stdin; exit 0 if it complies, else print every broken rule.
    Check {
        name: String,
        /// The account's username, for `no_username`.
        #[arg(long)]
        username: Option<String>,
    },
}

pub fn run(settings: &Settings, command: Command) -> anyhow::Result<ExitCode> {
    let policies = settings.policies()?;
    let get = |name: &str| {
        policies.get(name).ok_or_else(|| {
            anyhow::anyhow!(
                "no policy `{name}`; known: {}",
                policies.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    };
    match command {
        Command::List => {
            let rows: Vec<Vec<String>> = policies
                .iter()
                .map(|(name, p)| {
                    vec![
                        name.clone(),
                        range(p.min_length, p.max_length),
                        range(p.generated_range.0, p.generated_range.1),
                        p.alphabet_size().to_string(),
                        format!("{:.1}", p.min_entropy_bits()),
                    ]
                })
                .collect();
            print_table(
                &[
                    "NAME",
                    "LENGTH",
                    "GENERATED",
                    "ALPHABET",
                    "MIN-ENTROPY BITS",
                ],
                &rows,
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Show { name } => {
            show(get(&name)?, settings.policy_settings.min_entropy_bits);
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate { name, n, username } => {
            let policy = get(&name)?;
            let mut batch = policy.passwords();
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for _ in 0..n {
                let pw = batch.next_for(username.as_deref())?;
                writeln!(out, "{}", pw.expose_secret())?;
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { name, username } => {
            let policy = get(&name)?;
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            let password = SecretString::from(line.trim_end_matches(['\n', '\r']).to_owned());
            let violations = policy.check_for(&password, username.as_deref());
            if violations.is_empty() {
                println!("complies with policy {name}");
                return Ok(ExitCode::SUCCESS);
            }
            for v in violations {
                println!("{}: {}", v.code, v.message);
            }
            Ok(ExitCode::from(1))
        }
    }
}

fn range(lo: usize, hi: usize) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}-{hi}")
    }
}

fn show(p: &Policy, floor: f64) {
    let line = |key: &str, value: String| println!("  {key:<18} {value}");
    println!("policy {}", p.name);
    line(
        "length",
        format!(
            "{} accepted, {} generated (uniform over the feasible lengths)",
            range(p.min_length, p.max_length),
            range(p.generated_range.0, p.generated_range.1)
        ),
    );
    for (k, class) in CLASSES.iter().enumerate() {
        let chars: String = p.alphabet[k].iter().collect();
        let need = match p.minimums[k] {
            0 => "optional".to_string(),
            m => format!("at least {m}"),
        };
        let value = if p.excluded[k] {
            "excluded".to_string()
        } else if k == 3 || chars.len() < [26, 26, 10][k.min(2)] {
            format!("{} characters, {need}: {chars}", chars.len())
        } else {
            format!("{} characters, {need}", chars.len())
        };
        line(class.name(), value);
    }
    line("alphabet", format!("{} characters", p.alphabet_size()));
    if !p.forbidden.is_empty() {
        line("forbidden_chars", p.forbidden.iter().collect());
    }
    if p.exclude_ambiguous {
        line(
            "exclude_ambiguous",
            format!("yes ({})", crate::policy::AMBIGUOUS),
        );
    }
    if p.max_identical_run > 0 {
        line("max_identical_run", p.max_identical_run.to_string());
    }
    if p.min_classes > 0 {
        let how = if p.esxi_class_counting {
            " (ESXi: an uppercase first and a digit last character do not count)"
        } else {
            ""
        };
        line("min_classes", format!("{} of 4{how}", p.min_classes));
    }
    if p.min_distinct > 1 {
        line("min_distinct", p.min_distinct.to_string());
    }
    if p.no_username {
        // The worst length's bound on one draw containing a 2+ character username.
        let q = p
            .lengths
            .iter()
            .map(|&l| p.username_rejection_bound(l))
            .fold(0.0, f64::max);
        let failure = if q >= 1.0 {
            "not bounded (alphabet too small)".to_string()
        } else {
            format!("10^{:.0}", f64::from(USERNAME_TRIES) * q.log10())
        };
        line(
            "no_username",
            format!("yes; 1 character: left out exactly; longer: redrawn up to {USERNAME_TRIES} times, each draw containing it with probability <= {q:.2e}, so failing with probability <= {failure}"),
        );
    }
    let last = *p.lengths.last().expect("non-empty");
    line(
        "compliant",
        format!("2^{:.1} passwords of {last} characters", p.count_bits(last)),
    );
    line(
        "entropy",
        format!(
            "{:.1} bits (min-entropy {:.1} bits; warning floor {floor})",
            p.entropy_bits(),
            p.min_entropy_bits()
        ),
    );
    line(
        "generator",
        format!(
            "exact: {} states x {} lengths",
            p.states(),
            p.generated_range.1 + 1
        ),
    );
}
