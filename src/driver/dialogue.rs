//! A `passwd` dialogue in a PTY: rotor answers the prompts it recognises (the current
//! password, the new one twice) and reads the verdict. linux-passwd runs it as the
//! account; esxi as the account or as the admin (`passwd USER`, no current password).

use std::io::{Read, Write};

use secrecy::{ExposeSecret, SecretString};
use ssh2::Session;
use zeroize::Zeroizing;

use super::contract::{Error, Host};

/// Longest `passwd` dialogue kept for classifying its outcome.
const TRANSCRIPT_LIMIT: usize = 8 * 1024;
/// Text kept since the last answer: a prompt is its tail, so older output can go.
const PROMPT_WINDOW: usize = 512;
/// The whole dialogue (a few prompts and a verdict) gets this many I/O timeouts, so a
/// target that keeps printing without ever prompting cannot hold a worker forever.
const DIALOGUE_TIMEOUTS: u32 = 4;

/// What a piece of `passwd`'s output asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prompt {
    Current,
    New,
    None,
}

/// Classifies the text `passwd` printed since rotor last answered: a prompt ends with
/// ':' (and maybe a space). Debian/PAM wording, e.g. "Current password: ",
/// "(current) UNIX password: ", "New password: ", "Retype new password: ",
/// "Re-enter new password: "; a bare "Password: " (some PAM stacks) asks for the current one.
pub(crate) fn prompt_in(text: &str) -> Prompt {
    let t = text.trim_end().to_ascii_lowercase();
    if !t.ends_with(':') {
        return Prompt::None;
    }
    let last = t.lines().last().unwrap_or("");
    if !last.contains("password") {
        return Prompt::None;
    }
    if last.contains("current") || last.contains("old password") || last.trim() == "password:" {
        Prompt::Current
    } else if last.contains("new")
        || last.contains("retype")
        || last.contains("re-enter")
        || last.contains("again")
    {
        Prompt::New
    } else {
        Prompt::None
    }
}

/// Runs `command` (fixed text, a `passwd`) in a PTY on `session` and answers its prompts:
/// `current` to the current-password prompt (None: none is expected, as for root's
/// `passwd USER`), `new` to the new-password prompt and its confirmation. Ok only when
/// passwd said the password changed.
pub(super) fn passwd(
    host: &Host,
    session: Session,
    command: &str,
    username: &str,
    current: Option<&SecretString>,
    new: &SecretString,
) -> Result<(), Error> {
    let address = host.endpoint();
    let io = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::TimedOut {
            Error::Timeout {
                address: address.clone(),
                message: format!("waiting for passwd: {e}"),
            }
        } else {
            Error::Protocol {
                address: address.clone(),
                message: e.to_string(),
            }
        }
    };
    let ssh = |e: ssh2::Error| Error::Protocol {
        address: address.clone(),
        message: e.message().to_string(),
    };
    let mut channel = session.channel_session().map_err(ssh)?;
    // A terminal, so passwd reads the passwords from it (with echo off) as it would from a person.
    channel
        .request_pty("dumb", None, Some((200, 24, 0, 0)))
        .map_err(ssh)?;
    channel.exec(command).map_err(ssh)?;

    let mut transcript = String::new(); // everything passwd printed (never a password: no echo)
    let mut since_answer = String::new();
    let (mut gave_current, mut gave_new) = (false, 0);
    // Whether rotor stopped at a prompt it would not answer (asked again: a refusal).
    let mut broke_off = false;
    let mut buf = [0u8; 1024];
    let deadline = std::time::Instant::now() + host.io_timeout * DIALOGUE_TIMEOUTS;
    loop {
        if std::time::Instant::now() > deadline {
            let _ = session.disconnect(None, "rotor: passwd took too long", None);
            return Err(Error::Timeout {
                address: address.clone(),
                message: format!(
                    "passwd gave no verdict within {:?}",
                    host.io_timeout * DIALOGUE_TIMEOUTS
                ),
            });
        }
        let n = channel.read(&mut buf).map_err(io)?;
        if n == 0 {
            break; // passwd exited
        }
        let text = String::from_utf8_lossy(&buf[..n]);
        since_answer.push_str(&text);
        if since_answer.len() > 2 * PROMPT_WINDOW {
            since_answer = tail(&since_answer, PROMPT_WINDOW).to_string();
        }
        if transcript.len() < TRANSCRIPT_LIMIT {
            transcript.push_str(&text);
        }
        let answer = match (prompt_in(&since_answer), current) {
            (Prompt::Current, Some(current)) if !gave_current => {
                gave_current = true;
                current
            }
            (Prompt::New, _) if gave_new < 2 => {
                gave_new += 1;
                new
            }
            // Asked again (the password was refused, or the current one was wrong), or
            // asked for a current password rotor was not to give: stop here.
            (Prompt::Current | Prompt::New, _) => {
                broke_off = true;
                break;
            }
            (Prompt::None, _) => continue,
        };
        let line = Zeroizing::new(format!("{}\n", answer.expose_secret()));
        channel.write_all(line.as_bytes()).map_err(io)?;
        channel.flush().map_err(io)?;
        since_answer.clear();
    }
    let _ = channel.send_eof();
    let _ = channel.close();
    let _ = channel.wait_close();
    // libssh2 reports 0 when no exit status came: a signal, or no status, is no verdict.
    let status = channel.exit_status().unwrap_or(-1);
    let signal = channel.exit_signal().ok().and_then(|s| s.exit_signal);
    let clean = |text: &str| {
        let mut said = text.replace(['\r', '\n'], " ");
        for secret in current.into_iter().chain([new]) {
            if !secret.expose_secret().is_empty() {
                said = said.replace(secret.expose_secret(), "[REDACTED]");
            }
        }
        said.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let ending = Ending {
        broke_off,
        status,
        signal,
        gave_current,
        gave_new,
    };
    let _ = session.disconnect(None, "rotor: done", None);
    // Judged on what passwd said after rotor's last answer (its preamble, ESXi's
    // passwdqc's with a suggested passphrase, is no verdict); quoted by the end of all.
    verdict(
        address,
        username,
        &ending,
        &clean(&since_answer),
        &clean(&transcript),
    )
}

/// The account changes its own password: rotor logs in as it with its current one and
/// runs `passwd` (linux-passwd, and esxi without an admin).
pub(super) fn own_passwd(
    host: &Host,
    platform: &str,
    username: &str,
    old: Option<&SecretString>,
    new: &SecretString,
) -> Result<(), Error> {
    let old = old.ok_or_else(|| {
        Error::Config(format!("platform {platform} changes a password as the account, with its current one, and rotor knows none: REMEDIATE with the live password first"))
    })?;
    let session = super::ssh::password_session(host, username, old).map_err(|e| match e {
        Error::AccountAuth { username, .. } => Error::AccountAuth {
            username,
            message: "the stored current password does not log in".into(),
        },
        other => other,
    })?;
    // Fixed text: the C locale makes the prompts and messages English whatever the host's.
    passwd(
        host,
        session,
        "LC_ALL=C LANGUAGE=C passwd",
        username,
        Some(old),
        new,
    )
}

/// How a dialogue ended.
struct Ending {
    broke_off: bool,
    status: i32,
    signal: Option<String>,
    gave_current: bool,
    gave_new: u32,
}

/// What passwd's ending and last words mean: changed, refused (the old password stands),
/// or unknown (both entries typed, no verdict: the engine finds out by logging in).
fn verdict(
    address: String,
    username: &str,
    end: &Ending,
    after: &str,
    all: &str,
) -> Result<(), Error> {
    let lower = after.to_ascii_lowercase();
    let said = tail(all, 300);
    let status = end.status;
    let current_refused = end.gave_current
        && end.gave_new == 0
        && (end.broke_off
            || lower.contains("authentication token manipulation")
            || lower.contains("authentication failure"));
    if current_refused {
        // The current password was refused by passwd itself (the login accepted it: a PAM difference).
        return Err(Error::AccountAuth {
            username: username.to_string(),
            message: format!("passwd refused the current password: {said}"),
        });
    }
    let refused = [
        "bad password",
        "unchanged",
        "do not match",
        "don't match",
        "exhausted",
        "manipulation",
        "failure",
        "weak",
        "too ",
        "must ",
    ]
    .iter()
    .any(|m| lower.contains(m));
    // Asked again and broken off (passwd dies with the channel, setting nothing), told
    // no, or never given the new password twice: the old one stands.
    if end.broke_off || refused || end.gave_new < 2 {
        return Err(Error::Rejected {
            message: format!("passwd did not change the password (exit {status}): {said}"),
        });
    }
    if status == 0 && end.signal.is_none() {
        return Ok(());
    }
    Err(Error::Protocol {
        address,
        message: format!(
            "passwd ended without a verdict (exit {status}{}): {said}",
            end.signal
                .as_deref()
                .map(|s| format!(", signal {s}"))
                .unwrap_or_default()
        ),
    })
}

/// The last `max` bytes of `text` or a little less, cut at a character boundary.
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::{prompt_in, tail, Prompt};

    #[test]
    fn passwd_prompts_are_told_apart() {
        assert_eq!(
            prompt_in("Changing password for app.\r\nCurrent password: "),
            Prompt::Current
        );
        assert_eq!(prompt_in("(current) UNIX password:"), Prompt::Current);
        assert_eq!(prompt_in("\r\nNew password: "), Prompt::New);
        assert_eq!(prompt_in("Retype new password: "), Prompt::New);
        assert_eq!(prompt_in("Re-enter new password:"), Prompt::New);
        assert_eq!(prompt_in("Changing password for app."), Prompt::None);
        assert_eq!(
            prompt_in("BAD PASSWORD: The password is shorter than 8 characters\r\n"),
            Prompt::None
        );
        assert_eq!(
            prompt_in("passwd: password updated successfully\r\n"),
            Prompt::None
        );
        assert_eq!(prompt_in("Password: "), Prompt::Current);
        assert_eq!(prompt_in("Old Password:"), Prompt::Current);
        assert_eq!(prompt_in("Last login: today\r\nnote:"), Prompt::None);
        // ESXi's (pam_passwdqc's) prompts, and its preamble's suggestion, which is not one.
        assert_eq!(prompt_in("\r\nEnter new password: "), Prompt::New);
        assert_eq!(prompt_in("Re-type new password: "), Prompt::New);
        assert_eq!(
            prompt_in("you can pick this as\r\nyour password: \"Whale2liable*Soda\".\r\n"),
            Prompt::None
        );
        assert_eq!(
            prompt_in("you can pick this as\r\nyour password:"),
            Prompt::None
        );
        // Half a prompt waits for the rest.
        assert_eq!(prompt_in("New pass"), Prompt::None);
    }

    #[test]
    fn the_prompt_window_keeps_the_tail_on_a_char_boundary() {
        let noise = "é".repeat(600) + "New password: ";
        let kept = tail(&noise, 512);
        assert!(kept.len() <= 512 && kept.ends_with("New password: "));
        assert_eq!(prompt_in(kept), Prompt::New);
        assert_eq!(tail("short", 512), "short");
    }

    #[test]
    fn the_verdict_reads_only_what_came_after_the_last_answer() {
        let end = |broke_off, status, gave_new| super::Ending {
            broke_off,
            status,
            signal: None,
            gave_current: false,
            gave_new,
        };
        let ok = super::verdict(
            "h".into(),
            "u",
            &end(false, 0, 2),
            "passwd: password updated successfully",
            "",
        );
        assert!(ok.is_ok());
        // A preamble word ("weak" in passwdqc's suggestion) does not count; the end does.
        let ok = super::verdict(
            "h".into(),
            "u",
            &end(false, 0, 2),
            "passwd: password updated successfully",
            "pick weak words",
        );
        assert!(ok.is_ok());
        // Asked a third time and broken off: refused, whatever the status said.
        let r = super::verdict("h".into(), "u", &end(true, 0, 2), "Enter new password:", "");
        assert!(matches!(r, Err(super::Error::Rejected { .. })), "{r:?}");
        let r = super::verdict(
            "h".into(),
            "u",
            &end(false, 10, 1),
            "Weak password: based on a sequence",
            "",
        );
        assert!(matches!(r, Err(super::Error::Rejected { .. })), "{r:?}");
        // Both typed, then a signal: not known.
        let mut killed = end(false, 0, 2);
        killed.signal = Some("HUP".into());
        let r = super::verdict("h".into(), "u", &killed, "", "");
        assert!(matches!(r, Err(super::Error::Protocol { .. })), "{r:?}");
    }
}
