//! `http`: a password changed and proven through a target's HTTP API (reqwest over
//! rustls), as its recipe says (`recipe.rs`). The password goes only into the change
//! request's JSON body and the verification's Basic credentials, never into a URL, a
//! log or an error: bodies quoted in errors are redacted.

mod presets;
pub mod recipe;
pub mod tls;

use reqwest::{Method, RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};

use super::blocking::block_on;
use super::contract::{settable, Admin, Error, Host, Login};
use super::platform::Driver;
use super::ssh::LoginLine;
pub use recipe::HttpTarget;
use recipe::{render, Auth, Recipe, RenderError, Session};

/// Longest piece of an answer quoted in an error.
const QUOTE: usize = 300;

pub struct Http;

fn target(host: &Host) -> Result<&HttpTarget, Error> {
    host.http
        .as_deref()
        .ok_or_else(|| Error::Config("the resource has no [resource.http] recipe".into()))
}

fn url(host: &Host, path: &str, username: &str) -> String {
    format!(
        "https://{}{}",
        host.endpoint(),
        recipe::path_for(path, username)
    )
}

fn method(m: &str) -> Method {
    Method::from_bytes(m.as_bytes()).unwrap_or(Method::GET)
}

/// The error's whole chain in one line (reqwest's own message leaves out the cause, e.g.
/// a certificate that is not pinned).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// A request that got no answer: not sent (nothing changed), or cut off (it may have).
fn send_error(host: &Host, e: reqwest::Error) -> Error {
    if e.is_timeout() {
        Error::Timeout {
            address: host.endpoint(),
            message: chain(&e),
        }
    } else if e.is_connect() {
        Error::Connect {
            address: host.endpoint(),
            message: chain(&e),
        }
    } else {
        Error::Protocol {
            address: host.endpoint(),
            message: chain(&e),
        }
    }
}

/// The answer's status and body (at most 64 KiB of it).
async fn answer(host: &Host, response: reqwest::Response) -> Result<(StatusCode, String), Error> {
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| send_error(host, e))?;
    let cut = &bytes[..bytes.len().min(64 * 1024)];
    Ok((status, String::from_utf8_lossy(cut).into_owned()))
}

/// `text` shortened for an error, with every secret taken out, as it is and as JSON
/// escapes it (a server may echo a body back).
fn quote(text: &str, secrets: &[&SecretString]) -> String {
    let escaped: Vec<SecretString> = secrets
        .iter()
        .map(|s| {
            let json = zeroize::Zeroizing::new(
                serde_json::to_string(s.expose_secret()).unwrap_or_default(),
            );
            SecretString::from(json.trim_matches('"').to_string())
        })
        .collect();
    let all: Vec<&SecretString> = secrets.iter().copied().chain(escaped.iter()).collect();
    super::ssh::redact(text, &all).chars().take(QUOTE).collect()
}

/// An error from before the change request was sent: nothing can have changed, whatever
/// the transport said.
fn before_change(host: &Host, e: Error) -> Error {
    if e.may_have_changed() {
        Error::Connect {
            address: host.endpoint(),
            message: format!("before the change was sent: {e}"),
        }
    } else {
        e
    }
}

/// What a request's refusal means: a credential rotor used, the target saying no (the
/// old password stands), or a server error after which the change is not known.
#[allow(clippy::too_many_arguments)]
fn refusal(
    host: &Host,
    auth: Auth,
    path: &str,
    status: StatusCode,
    body: &str,
    secrets: &[&SecretString],
    username: &str,
    account_refused: bool,
) -> Error {
    let said = format!("{path} answered {status}: {}", quote(body, secrets));
    match (status, auth) {
        (s, Auth::AccountBasic) if account_refused || s == StatusCode::UNAUTHORIZED => {
            Error::AccountAuth {
                username: username.to_string(),
                message: said,
            }
        }
        (StatusCode::UNAUTHORIZED, _) => Error::AdminAuth {
            username: host
                .admin
                .as_ref()
                .map(|a| a.username.clone())
                .unwrap_or_default(),
            message: said,
        },
        (s, _) if s.is_client_error() => Error::Rejected { message: said },
        _ => Error::Protocol {
            address: host.endpoint(),
            message: said,
        },
    }
}

/// Who rotor is on one request.
struct Credentials<'a> {
    admin: Option<(&'a Admin, SecretString)>,
    session: Option<(String, String)>,
    account: (&'a str, Option<&'a SecretString>),
}

impl Credentials<'_> {
    fn apply(&self, request: RequestBuilder, auth: Auth) -> Result<RequestBuilder, Error> {
        let admin = || self.admin.as_ref().ok_or(Error::NoAdmin);
        Ok(match auth {
            Auth::AdminBasic => {
                let (a, pw) = admin()?;
                request.basic_auth(&a.username, Some(pw.expose_secret()))
            }
            Auth::AdminBearer => request.bearer_auth(admin()?.1.expose_secret()),
            Auth::AdminSession => {
                let (header, token) = self
                    .session
                    .as_ref()
                    .ok_or_else(|| Error::Config("the recipe's session was not opened".into()))?;
                request.header(header.as_str(), token.as_str())
            }
            Auth::AccountBasic => {
                let (user, pw) = self.account;
                let pw = pw.ok_or_else(|| {
                    Error::Config("this recipe changes a password as the account, with its current one, and rotor knows none: REMEDIATE with the live password first".into())
                })?;
                request.basic_auth(user, Some(pw.expose_secret()))
            }
        })
    }
}

/// A session token from a session answer: a JSON string, or `{"value": token}`.
fn token_of(body: &str) -> Option<String> {
    match serde_json::from_str::<serde_json::Value>(body).ok()? {
        serde_json::Value::String(t) => Some(t),
        serde_json::Value::Object(o) => o.get("value")?.as_str().map(str::to_string),
        _ => None,
    }
}

async fn open_session(
    host: &Host,
    client: &reqwest::Client,
    session: &Session,
    user: &str,
    password: &SecretString,
) -> Result<Option<String>, Error> {
    let response = client
        .request(method(&session.method), url(host, &session.path, user))
        .basic_auth(user, Some(password.expose_secret()))
        .send()
        .await
        .map_err(|e| send_error(host, e))?;
    let (status, body) = answer(host, response).await?;
    if status == StatusCode::UNAUTHORIZED {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(Error::Protocol {
            address: host.endpoint(),
            message: format!(
                "{} {} answered {status}: {}",
                session.method,
                session.path,
                quote(&body, &[password])
            ),
        });
    }
    token_of(&body).map(Some).ok_or_else(|| Error::Protocol {
        address: host.endpoint(),
        message: format!("{} answered no session token", session.path),
    })
}

async fn end_session(host: &Host, client: &reqwest::Client, session: &Session, token: &str) {
    if let (Some(m), Some(p)) = (&session.end_method, &session.end_path) {
        let _ = client
            .request(method(m), url(host, p, ""))
            .header(session.header.as_str(), token)
            .send()
            .await;
    }
}

impl Http {
    async fn change(
        &self,
        host: &Host,
        target: &HttpTarget,
        username: &str,
        old: Option<&SecretString>,
        new: &SecretString,
    ) -> Result<(), Error> {
        let recipe = &target.recipe;
        let client = tls::client(host, target)?;
        let admin = match &host.admin {
            Some(a) if recipe.needs_admin() => Some((a, a.password()?)),
            _ => None,
        };
        let mut creds = Credentials {
            admin,
            session: None,
            account: (username, old),
        };
        let read_auth = recipe.read.as_ref().map(|r| r.auth);
        if recipe.change.auth == Auth::AdminSession || read_auth == Some(Auth::AdminSession) {
            let session = recipe.session.as_ref().ok_or(Error::NoAdmin)?;
            let (a, pw) = creds.admin.as_ref().ok_or(Error::NoAdmin)?;
            let token = open_session(host, &client, session, &a.username, pw)
                .await
                .map_err(|e| before_change(host, e))?
                .ok_or_else(|| Error::AdminAuth {
                    username: a.username.clone(),
                    message: "the admin's session was refused".into(),
                })?;
            creds.session = Some((session.header.clone(), token));
        }
        // Every secret this change holds is taken out of anything quoted from an answer.
        let secrets: Vec<&SecretString> = [Some(new), old, creds.admin.as_ref().map(|(_, pw)| pw)]
            .into_iter()
            .flatten()
            .collect();
        let done = self
            .send_change(host, &client, recipe, &creds, username, old, new, &secrets)
            .await;
        if let (Some(session), Some((_, token))) = (&recipe.session, &creds.session) {
            end_session(host, &client, session, token).await;
        }
        done
    }

    #[allow(clippy::too_many_arguments)]
    async fn send_change(
        &self,
        host: &Host,
        client: &reqwest::Client,
        recipe: &Recipe,
        creds: &Credentials<'_>,
        username: &str,
        old: Option<&SecretString>,
        new: &SecretString,
        secrets: &[&SecretString],
    ) -> Result<(), Error> {
        let current = match &recipe.read {
            Some(read) => {
                let request = client.request(method(&read.method), url(host, &read.path, username));
                let response = creds
                    .apply(request, read.auth)?
                    .send()
                    .await
                    .map_err(|e| before_change(host, send_error(host, e)))?;
                let (status, body) = answer(host, response)
                    .await
                    .map_err(|e| before_change(host, e))?;
                if !status.is_success() {
                    let refusal = refusal(
                        host, read.auth, &read.path, status, &body, secrets, username, false,
                    );
                    return Err(before_change(host, refusal));
                }
                Some(serde_json::from_str(&body).map_err(|_| Error::Connect {
                    address: host.endpoint(),
                    message: format!(
                        "before the change was sent: {} answered something other than JSON",
                        read.path
                    ),
                })?)
            }
            None => None,
        };
        let change = &recipe.change;
        let body =
            render(&change.body, username, new, old, current.as_ref()).map_err(|e| match e {
                RenderError::NoOldPassword => Error::Config(
                    "the recipe sends the old password, and rotor knows none: REMEDIATE with the live password first".into(),
                ),
                RenderError::Missing(field) => Error::Config(format!(
                    "the recipe's {field} is not in the read answer (nothing was changed)"
                )),
            })?;
        let request = client
            .request(method(&change.method), url(host, &change.path, username))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.as_bytes().to_vec());
        let response = creds
            .apply(request, change.auth)?
            .send()
            .await
            .map_err(|e| send_error(host, e))?;
        let (status, text) = answer(host, response).await?;
        let ok = if change.ok.is_empty() {
            status.is_success()
        } else {
            change.ok.contains(&status.as_u16())
        };
        if ok {
            return Ok(());
        }
        // The account's own credentials refused as the verify recipe knows a refusal
        // (NSX: 403 "credentials were incorrect"): its current password is wrong.
        let account_refused = change.auth == Auth::AccountBasic
            && recipe
                .verify
                .refused
                .iter()
                .any(|r| r.matches(status.as_u16(), &text));
        Err(refusal(
            host,
            change.auth,
            &change.path,
            status,
            &text,
            secrets,
            username,
            account_refused,
        ))
    }

    async fn try_password(
        &self,
        host: &Host,
        target: &HttpTarget,
        username: &str,
        password: &SecretString,
    ) -> Result<Login, Error> {
        let verify = &target.recipe.verify;
        let client = tls::client(host, target)?;
        let response = client
            .request(method(&verify.method), url(host, &verify.path, username))
            .basic_auth(username, Some(password.expose_secret()))
            .send()
            .await
            .map_err(|e| send_error(host, e))?;
        let (status, body) = answer(host, response).await?;
        let code = status.as_u16();
        if verify.accepted.iter().any(|r| r.matches(code, &body)) {
            if verify.ends_session {
                if let (Some(session), Some(token)) = (&target.recipe.session, token_of(&body)) {
                    end_session(host, &client, session, &token).await;
                }
            }
            return Ok(Login::Accepted);
        }
        if verify.refused.iter().any(|r| r.matches(code, &body)) {
            return Ok(Login::Refused);
        }
        Err(Error::Protocol {
            address: host.endpoint(),
            message: format!(
                "{} answered {status}, which the recipe names neither accepted nor refused: {}",
                verify.path,
                quote(&body, &[password])
            ),
        })
    }
}

impl Driver for Http {
    fn apply(
        &self,
        host: &Host,
        username: &str,
        old: Option<&SecretString>,
        new: &SecretString,
    ) -> Result<(), Error> {
        settable(new)?;
        let target = target(host)?;
        block_on(
            host,
            "HTTP API",
            4,
            self.change(host, target, username, old, new),
        )?
    }

    fn login(&self, host: &Host, username: &str, password: &SecretString) -> Result<Login, Error> {
        let target = target(host)?;
        block_on(
            host,
            "HTTP API",
            2,
            self.try_password(host, target, username, password),
        )?
    }

    /// An HTTP API has no connection to open ahead: each login is its own.
    fn open_login(&self, _host: &Host) -> Result<Option<LoginLine>, Error> {
        Ok(None)
    }

    fn verify_both(
        &self,
        host: &Host,
        username: &str,
        old: &SecretString,
        new: &SecretString,
        _line: Option<LoginLine>,
    ) -> Result<(Login, Option<Login>), Error> {
        super::platform::verify_in_turn(self, host, username, old, new)
    }

    fn logs_in_as_account(&self, host: &Host) -> bool {
        host.http
            .as_deref()
            .is_some_and(|t| t.recipe.changes_as_account())
    }
}

#[cfg(test)]
mod tests {
    use super::token_of;

    #[test]
    fn session_tokens_are_read_from_either_shape() {
        assert_eq!(token_of("\"abc\"").as_deref(), Some("abc"));
        assert_eq!(token_of("{\"value\": \"abc\"}").as_deref(), Some("abc"));
        assert_eq!(token_of("{}"), None);
    }
}
