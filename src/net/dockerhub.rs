//! The Docker Hub API client: listing the repositories of a namespace, with the login,
//! rate-limit and safety rules that listing needs.
//!
//! A listing is `GET {api_url}/v2/namespaces/{namespace}/repositories?page_size=100`,
//! then the absolute `next` links (same scheme, host and port as `api_url` only, at most
//! [`MAX_PAGES`] pages). Asked for repositories updated since a time, it orders by
//! `-last_updated` and stops paging at the first older repository. A single repository
//! is one `GET {api_url}/v2/namespaces/{namespace}/repositories/{name}`.
//!
//! Optional credentials are traded at `POST {api_url}/v2/auth/token` for a short-lived
//! Bearer token, renewed before it expires and after a 401. A 429 blocks every request
//! to that `api_url`, from every client of the process, until the time the API gave.
//! Neither the token file's content nor the token ever reaches an error text: login
//! errors quote only the status, and [`Client::redact`] cleans what else might.
//!
//! How the API's answers read (pages, timestamps, tokens, rate-limit headers) is in
//! `dockerhub/wire.rs`; this file holds the conversation and the state it needs.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use ureq::http::{HeaderMap, Method, Request, Uri};

use crate::net::http::{self, AgentOptions, Exchange};
use crate::net::secret::{Reread, Secret, read_secret};
use crate::sync::lock;
use crate::units::format_duration;

mod wire;

use wire::{detail, parse_page, parse_repository, retry_wait, shorten, token_lifetime};

/// The public Docker Hub API.
pub const DEFAULT_API_URL: &str = "https://hub.docker.com";
/// The largest page the API serves.
const PAGE_SIZE: u32 = 100;
/// Pages read per namespace before the listing is declared broken (100 000
/// repositories), so a `next` link that never ends cannot keep a run busy forever.
pub const MAX_PAGES: usize = 1000;
/// Repositories listed per namespace before the listing is declared broken: what
/// [`MAX_PAGES`] full pages hold, so an API that ignores `page_size` (200,000 entries
/// in one 8 MiB page) cannot grow a run's memory past it either.
pub const MAX_REPOSITORIES: usize = MAX_PAGES * PAGE_SIZE as usize;
/// Largest response body read; a page of 100 repositories is about 100 KiB.
const BODY_LIMIT: u64 = 8 << 20;
/// Largest token file read, as for every other secret file.
const TOKEN_FILE_LIMIT: u64 = 64 << 10;

/// Where the API lives; `url` has no trailing slash and also keys the 429 block.
#[derive(Debug)]
pub struct Api {
    url: String,
    scheme: String,
    host: String,
    port: u16,
}

impl Api {
    /// Checks and normalises an `api_url`: http(s), a host, no credentials, no query or
    /// fragment; a trailing slash is dropped.
    pub fn parse(text: &str) -> Result<Api, String> {
        let trimmed = text.trim_end_matches('/');
        // Messages name the URL without what looks like credentials.
        let text = &super::http::redact_userinfo(text);
        let uri: Uri = trimmed
            .parse()
            .map_err(|e| format!("api_url {text:?} is not a URL: {e}"))?;
        let scheme = uri.scheme_str().unwrap_or_default().to_ascii_lowercase();
        let Some(port) = default_port(&scheme) else {
            return Err(format!(
                "api_url {text:?} must start with http:// or https://"
            ));
        };
        let Some(authority) = uri.authority() else {
            return Err(format!("api_url {text:?} has no host"));
        };
        if authority.as_str().contains('@') {
            return Err("api_url must not carry credentials; use username and token_file".into());
        }
        if authority.host().is_empty() {
            return Err(format!("api_url {text:?} has no host"));
        }
        if uri.query().is_some() || trimmed.contains('#') {
            return Err(format!(
                "api_url {text:?} must not have a query or fragment"
            ));
        }
        Ok(Api {
            url: trimmed.to_string(),
            host: authority.host().to_ascii_lowercase(),
            port: authority.port_u16().unwrap_or(port),
            scheme,
        })
    }

    /// The URL a `next` link stands for, if it stays on this API's scheme, host and
    /// port (a link elsewhere could carry the Bearer token off).
    fn follow(&self, next: &str) -> Result<String, String> {
        let absolute = if next.starts_with('/') && !next.starts_with("//") {
            format!("{}://{}:{}{next}", self.scheme, self.host, self.port)
        } else {
            next.to_string()
        };
        let refused = || {
            format!(
                "the `next` link {} is not on {}; not followed",
                shorten(next),
                self.url
            )
        };
        let uri: Uri = absolute.parse().map_err(|_| refused())?;
        let scheme = uri.scheme_str().unwrap_or_default().to_ascii_lowercase();
        let host = uri.host().unwrap_or_default().to_ascii_lowercase();
        let port = uri.port_u16().or(default_port(&scheme));
        if scheme != self.scheme
            || host != self.host
            || port != Some(self.port)
            || uri.authority().is_some_and(|a| a.as_str().contains('@'))
        {
            return Err(refused());
        }
        Ok(absolute)
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// Docker Hub namespaces are lowercase letters and digits (older ones also `_`, `-`,
/// `.`); anything else would change the request path.
pub fn valid_namespace(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && name != "."
        && name != ".."
}

/// What an agent talking to Docker Hub must look like: no redirects, since a redirect
/// could lead the Bearer token to another host and the listing must stay on `api_url`.
pub fn agent_options() -> AgentOptions {
    AgentOptions {
        max_redirects: 0,
        pool: true,
        ..AgentOptions::default()
    }
}

/// A user and the file holding its access token, re-read at every login so rotation
/// needs no reload.
#[derive(Debug)]
pub struct Credentials {
    username: String,
    token_file: Reread<Secret>,
}

impl Credentials {
    /// Reads the token file now, so a typo is a config error: an unreadable or empty
    /// file is refused with a message naming it (never quoting it).
    pub fn open(username: String, token_file: PathBuf) -> Result<Credentials, String> {
        // `read_secret` tells an empty file from an unreadable one, which the config
        // error must; `Reread::open` reads it once more to start its history.
        match read_secret(&token_file) {
            Ok(s) if s.expose().is_empty() => {
                return Err(format!("the token file {} is empty", token_file.display()));
            }
            Ok(_) => {}
            Err(e) => return Err(format!("cannot read the token file {e}")),
        }
        let token_file = Reread::open(token_file, "token file", TOKEN_FILE_LIMIT, parse_token)
            .map_err(|e| format!("cannot read the token file {e}"))?;
        Ok(Credentials {
            username,
            token_file,
        })
    }
}

/// The token file's text without trailing newlines; empty is unusable, so the last
/// good token serves instead of an empty one.
fn parse_token(bytes: &[u8]) -> Result<Secret, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let text = text.trim_end_matches(['\n', '\r']);
    if text.is_empty() {
        return Err("the file is empty".into());
    }
    Ok(Secret::new(text))
}

/// One repository as listed.
#[derive(Clone, Debug, PartialEq)]
pub struct Repository {
    /// The repository name, without the namespace.
    pub name: String,
    /// `pull_count`, when a non-negative number.
    pub pulls: Option<f64>,
    /// `star_count`, when a non-negative number.
    pub stars: Option<f64>,
    /// `last_updated` as Unix seconds with the fraction, when a readable RFC 3339 time.
    pub last_updated: Option<f64>,
}

/// A namespace's repositories, each once, and the pages read to get them.
#[derive(Debug, Default)]
pub struct Listing {
    /// In the order the API listed them.
    pub repositories: Vec<Repository>,
    /// Pages requested.
    pub pages: usize,
}

/// Why a namespace could not be listed.
#[derive(Debug)]
pub enum ListError {
    /// A 429 still holds; nothing was sent.
    Blocked(String),
    /// Anything else.
    Failed(String),
}

impl ListError {
    /// What went wrong, in words (may need [`Client::redact`] before it is logged).
    pub fn message(&self) -> &str {
        match self {
            ListError::Blocked(m) | ListError::Failed(m) => m,
        }
    }
}

/// A Bearer token and when to stop using it.
struct Token {
    value: String,
    renew_at: Instant,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// A client of one Docker Hub API; it keeps the access token between runs.
#[derive(Debug)]
pub struct Client {
    /// The check the client works for, named in log lines.
    check: String,
    api: Api,
    agent: ureq::Agent,
    credentials: Option<Credentials>,
    /// Longest a single request may take.
    timeout: Duration,
    token: Mutex<Option<Token>>,
}

/// A response: status and (capped) body.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Client {
    /// A client for `api`; `agent` should be built with [`agent_options`].
    pub fn new(
        check: &str,
        api: Api,
        agent: ureq::Agent,
        credentials: Option<Credentials>,
        timeout: Duration,
    ) -> Client {
        Client {
            check: check.to_string(),
            api,
            agent,
            credentials,
            timeout,
            token: Mutex::new(None),
        }
    }

    /// Starts a run's requests: none sent after `deadline` or once `cancel` is set.
    pub fn session<'a>(&'a self, deadline: Instant, cancel: &'a AtomicBool) -> Session<'a> {
        Session {
            client: self,
            deadline,
            cancel,
            requests: 0,
            rate_remaining: None,
        }
    }

    /// Removes the access token and the token file's content from a text bound for a
    /// log line or an error.
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_string();
        let token = lock(&self.token).as_ref().map(|t| t.value.clone());
        let secret = self.credentials.as_ref().map(|c| c.token_file.last());
        let secret = secret.as_deref().map(Secret::expose);
        for secret in [token.as_deref(), secret].into_iter().flatten() {
            if !secret.is_empty() {
                text = text.replace(secret, "<redacted>");
            }
        }
        text
    }
}

/// One run's requests: what they cost and what the API said about its rate limit.
#[derive(Debug)]
pub struct Session<'a> {
    client: &'a Client,
    deadline: Instant,
    cancel: &'a AtomicBool,
    requests: usize,
    rate_remaining: Option<f64>,
}

impl Session<'_> {
    /// Requests sent so far (0 while a 429 holds).
    pub fn requests(&self) -> usize {
        self.requests
    }

    /// `X-RateLimit-Remaining` of the latest response that carried it.
    pub fn rate_remaining(&self) -> Option<f64> {
        self.rate_remaining
    }

    /// Lists a namespace, page after page; with `since` (Unix seconds) only the
    /// repositories updated since then, newest first, paging stopped at the first older.
    pub fn list(&mut self, namespace: &str, since: Option<f64>) -> Result<Listing, ListError> {
        let mut url = format!(
            "{}/v2/namespaces/{namespace}/repositories?page_size={PAGE_SIZE}",
            self.client.api.url
        );
        if since.is_some() {
            url.push_str("&ordering=-last_updated");
        }
        let mut listing = Listing::default();
        let mut names = HashSet::new();
        let mut visited = HashSet::new();
        loop {
            if listing.pages == MAX_PAGES {
                return Err(ListError::Failed(format!(
                    "more than {MAX_PAGES} pages; listing abandoned (a `next` link that never ends?)"
                )));
            }
            if self.cancel.load(Ordering::Relaxed) {
                return Err(ListError::Failed("the run was cancelled".into()));
            }
            visited.insert(url.clone());
            listing.pages += 1;
            let pages = listing.pages;
            let answer = self.get(&url)?;
            let Some(body) = self.page_body(namespace, pages, answer)? else {
                break;
            };
            let page =
                parse_page(&body).map_err(|e| ListError::Failed(format!("page {pages}: {e}")))?;
            if page.skipped > 0 {
                log::debug!(
                    "check={} organization={namespace} msg=\"skipped {} entries without a name on page {pages}\"",
                    self.client.check,
                    page.skipped
                );
            }
            if listing.repositories.len() + page.repositories.len() > MAX_REPOSITORIES {
                return Err(ListError::Failed(format!(
                    "more than {MAX_REPOSITORIES} repositories by page {pages} ({} on it, {PAGE_SIZE} asked for); listing abandoned",
                    page.repositories.len()
                )));
            }
            let older_seen = keep_new(page.repositories, since, &mut names, &mut listing);
            let Some(next) = page.next.filter(|_| !older_seen) else {
                break;
            };
            url = self.client.api.follow(&next).map_err(ListError::Failed)?;
            if visited.contains(&url) {
                return Err(ListError::Failed(format!(
                    "page {pages} links back to an earlier page ({})",
                    shorten(&url)
                )));
            }
        }
        Ok(listing)
    }

    /// Reads one repository; `Ok(None)` when the API says it does not exist (404).
    pub fn repository(
        &mut self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Repository>, ListError> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(ListError::Failed("the run was cancelled".into()));
        }
        let url = format!(
            "{}/v2/namespaces/{namespace}/repositories/{name}",
            self.client.api.url
        );
        let answer = self.get(&url)?;
        match answer.status {
            200 => parse_repository(&answer.body, name)
                .map(Some)
                .map_err(ListError::Failed),
            404 => Ok(None),
            401 if self.client.credentials.is_none() => Err(ListError::Failed(format!(
                "HTTP 401{}: the repository is private; set username and token_file",
                detail(&answer.body)
            ))),
            status => Err(ListError::Failed(format!(
                "HTTP {status}{}",
                detail(&answer.body)
            ))),
        }
    }

    /// The body of a listing page that answered 200; `None` when the page is past the
    /// end of a listing that shrank while it was read.
    fn page_body(
        &self,
        namespace: &str,
        page: usize,
        answer: Answer,
    ) -> Result<Option<Vec<u8>>, ListError> {
        match answer.status {
            200 => Ok(Some(answer.body)),
            404 if page > 1 => {
                log::debug!(
                    "check={} organization={namespace} msg=\"page {page} is past the end; listing complete\"",
                    self.client.check
                );
                Ok(None)
            }
            404 => Err(ListError::Failed(format!(
                "HTTP 404: no organization {namespace:?} on {}",
                self.client.api.url
            ))),
            401 if self.client.credentials.is_none() => Err(ListError::Failed(format!(
                "HTTP 401{}: the organization is private; set username and token_file",
                detail(&answer.body)
            ))),
            status => Err(ListError::Failed(format!(
                "HTTP {status}{} for page {page}",
                detail(&answer.body)
            ))),
        }
    }

    /// GET with the Bearer token when credentials are configured; a 401 renews the token
    /// and retries once.
    fn get(&mut self, url: &str) -> Result<Answer, ListError> {
        let token = self.bearer(false)?;
        let answer = self.send(Method::GET, url, None, token.as_deref())?;
        if answer.status != 401 || token.is_none() {
            return Ok(answer);
        }
        log::debug!(
            "check={} msg=\"the API refused the access token (HTTP 401); renewing it\"",
            self.client.check
        );
        let token = self.bearer(true)?;
        let answer = self.send(Method::GET, url, None, token.as_deref())?;
        if answer.status == 401 {
            return Err(ListError::Failed(format!(
                "HTTP 401{} even with a new access token; do the credentials grant access?",
                detail(&answer.body)
            )));
        }
        Ok(answer)
    }

    /// The access token to send, logging in when there is none or it is due for renewal.
    fn bearer(&mut self, renew: bool) -> Result<Option<String>, ListError> {
        let client = self.client;
        let Some(credentials) = &client.credentials else {
            return Ok(None);
        };
        {
            let mut token = lock(&client.token);
            if !renew
                && let Some(token) = token.as_ref()
                && Instant::now() < token.renew_at
            {
                return Ok(Some(token.value.clone()));
            }
            *token = None;
        }
        let secret: Arc<Secret> = credentials.token_file.get(&client.check);
        let body = serde_json::json!({
            "identifier": credentials.username,
            "secret": secret.expose(),
        });
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let sent = Instant::now();
        let url = format!("{}/v2/auth/token", client.api.url);
        let answer = self.send(Method::POST, &url, Some(body), None)?;
        if answer.status != 200 {
            // The body is not quoted: a login error could echo what was sent.
            return Err(ListError::Failed(format!(
                "login at {url} failed: HTTP {}",
                answer.status
            )));
        }
        let token = serde_json::from_slice::<Value>(&answer.body)
            .ok()
            .and_then(|v| v.get("access_token")?.as_str().map(str::to_string))
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ListError::Failed(format!("login at {url}: the answer has no access_token"))
            })?;
        let lifetime = token_lifetime(&token, unix_now());
        let margin = (lifetime / 4).min(Duration::from_secs(60));
        log::debug!(
            "check={} msg=\"obtained an access token\" renew_in={:?}",
            client.check,
            lifetime - margin
        );
        *lock(&client.token) = Some(Token {
            value: token.clone(),
            renew_at: sent + (lifetime - margin),
        });
        Ok(Some(token))
    }

    /// Sends one request unless a 429 still holds for this API; records the rate-limit
    /// headers, turns a 429 into a block, and reads at most [`BODY_LIMIT`] of the body.
    fn send(
        &mut self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        bearer: Option<&str>,
    ) -> Result<Answer, ListError> {
        let api = self.client.api.url.as_str();
        if let Some(left) = blocked_for(api) {
            return Err(ListError::Blocked(format!(
                "rate limited by {api}: no request for another {}",
                format_duration(round_up_to_second(left))
            )));
        }
        let budget = self
            .deadline
            .saturating_duration_since(Instant::now())
            .min(self.client.timeout);
        if budget.is_zero() {
            return Err(ListError::Failed("the run's timeout passed".into()));
        }
        log::trace!("check={} msg=\"request\" url={url:?}", self.client.check);
        self.requests += 1;
        let Exchange { response, trace } = self.exchange(method, url, body, bearer, budget)?;
        let mut response =
            response.map_err(|e| ListError::Failed(http::describe(&e, &trace, api)))?;
        let status = response.status().as_u16();
        self.note_rate_limit(status, response.headers())?;
        let body = response
            .body_mut()
            .with_config()
            .limit(BODY_LIMIT)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => ListError::Failed(format!(
                    "HTTP {status}: the response is larger than {} MiB",
                    BODY_LIMIT >> 20
                )),
                other => ListError::Failed(http::describe(&other, &trace, api)),
            })?;
        Ok(Answer { status, body })
    }

    /// Builds the request (a JSON body when there is one) and sends it within `budget`.
    fn exchange(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        bearer: Option<&str>,
        budget: Duration,
    ) -> Result<Exchange, ListError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(url)
            .header("accept", "application/json");
        if let Some(token) = bearer {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let bad_request = |_| ListError::Failed(format!("invalid request URL {}", shorten(url)));
        let agent = &self.client.agent;
        Ok(match body {
            Some(body) => {
                let request = builder
                    .header("content-type", "application/json")
                    .body(body)
                    .map_err(bad_request)?;
                http::send(agent, request, budget)
            }
            None => http::send(agent, builder.body(()).map_err(bad_request)?, budget),
        })
    }

    /// Records `X-RateLimit-Remaining`; a 429 blocks the API for the time it names and
    /// is an error (its body, often plain text, is never read).
    fn note_rate_limit(&mut self, status: u16, headers: &HeaderMap) -> Result<(), ListError> {
        if let Some(left) = header(headers, "x-ratelimit-remaining").and_then(|v| v.parse().ok()) {
            self.rate_remaining = Some(left);
        }
        if status != 429 {
            return Ok(());
        }
        let api = self.client.api.url.as_str();
        let wait = retry_wait(
            header(headers, "retry-after"),
            header(headers, "x-retry-after"),
            header(headers, "x-ratelimit-reset"),
            unix_now(),
        );
        block(api, Instant::now() + wait);
        Err(ListError::Failed(format!(
            "HTTP 429 Too Many Requests: no request to {api} for {}",
            format_duration(round_up_to_second(wait))
        )))
    }
}

/// Adds the repositories of a page that are new to the listing (offset paging over a
/// list that changes can show one twice); with `since`, only those updated since then.
/// Returns whether an older repository was seen, which ends the listing.
fn keep_new(
    page: Vec<Repository>,
    since: Option<f64>,
    names: &mut HashSet<String>,
    listing: &mut Listing,
) -> bool {
    for repo in page {
        if let Some(since) = since {
            match repo.last_updated {
                // Never updated: excluded, but not a reason to stop, since a database
                // may sort nulls first in a descending order.
                None => continue,
                Some(t) if t < since => return true,
                Some(_) => {}
            }
        }
        if names.insert(repo.name.clone()) {
            listing.repositories.push(repo);
        }
    }
    false
}

/// APIs (by `api_url`) that answered 429, and until when nothing may be sent to them.
/// Process-wide: every client that talks to the same API honours the same wait.
static BLOCKED: Mutex<Vec<(String, Instant)>> = Mutex::new(Vec::new());

fn block(api: &str, until: Instant) {
    let mut blocked = lock(&BLOCKED);
    let now = Instant::now();
    blocked.retain(|(key, t)| key != api && *t > now);
    if until > now {
        blocked.push((api.to_string(), until));
    }
}

/// How much longer `api` is blocked, if it is.
fn blocked_for(api: &str) -> Option<Duration> {
    let blocked = lock(&BLOCKED);
    let now = Instant::now();
    blocked
        .iter()
        .find(|(key, until)| key == api && *until > now)
        .map(|(_, until)| *until - now)
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name)?.to_str().ok()
}

fn round_up_to_second(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

/// Unix time now; a clock before 1970 reads as 0 rather than failing the run.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(name: &str, last_updated: Option<f64>) -> Repository {
        Repository {
            name: name.into(),
            pulls: None,
            stars: None,
            last_updated,
        }
    }

    #[test]
    fn a_window_skips_undated_repositories_and_stops_at_the_first_older_one() {
        let mut names = HashSet::new();
        let mut listing = Listing::default();
        let page = vec![
            repo("new", Some(200.0)),
            repo("undated", None),
            repo("new", Some(150.0)),
            repo("edge", Some(100.0)),
            repo("old", Some(99.0)),
            repo("after", Some(300.0)),
        ];
        assert!(keep_new(page, Some(100.0), &mut names, &mut listing));
        let kept: Vec<_> = listing.repositories.iter().map(|r| &r.name).collect();
        assert_eq!(kept, ["new", "edge"]);
        let page = vec![repo("undated", None), repo("edge", None)];
        assert!(!keep_new(page, None, &mut names, &mut listing));
        assert_eq!(listing.repositories.len(), 3);
    }

    #[test]
    fn api_urls_are_checked_and_normalised() {
        assert!(Api::parse(DEFAULT_API_URL).is_ok());
        let api = Api::parse("https://Hub.Docker.com/").unwrap();
        assert_eq!(
            (
                api.url.as_str(),
                api.scheme.as_str(),
                api.host.as_str(),
                api.port
            ),
            ("https://Hub.Docker.com", "https", "hub.docker.com", 443)
        );
        let api = Api::parse("http://127.0.0.1:8080/proxy/hub").unwrap();
        assert_eq!(
            (api.url.as_str(), api.port),
            ("http://127.0.0.1:8080/proxy/hub", 8080)
        );
        for bad in [
            "hub.docker.com",
            "ftp://hub.docker.com",
            "https://",
            "https://u:p@hub.docker.com",
            "https://hub.docker.com/?x=1",
            "https://hub.docker.com/#x",
            "",
        ] {
            assert!(Api::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn next_links_stay_on_the_api() {
        let api = Api::parse("https://hub.docker.com").unwrap();
        assert_eq!(
            api.follow("/v2/x?page=2").unwrap(),
            "https://hub.docker.com:443/v2/x?page=2"
        );
        assert!(api.follow("https://HUB.docker.com:443/v2/x").is_ok());
        for off in [
            "http://hub.docker.com/v2/x",
            "https://evil.example/v2/x",
            "https://hub.docker.com:8443/v2/x",
            "https://u@hub.docker.com/v2/x",
            "//evil.example/v2/x",
        ] {
            assert!(
                api.follow(off).unwrap_err().contains("not followed"),
                "{off}"
            );
        }
    }

    #[test]
    fn namespaces_that_would_change_the_path_are_refused() {
        for good in ["amazon", "library", "bitnami", "my_org", "a-b", "x.y"] {
            assert!(valid_namespace(good), "{good:?}");
        }
        for bad in ["", "a/b", "..", ".", "a?b", "a b", "ü", "a%2f"] {
            assert!(!valid_namespace(bad), "{bad:?}");
        }
    }

    #[test]
    fn token_files_must_be_readable_and_not_empty_and_keep_their_last_good_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "\n").unwrap();
        let e = Credentials::open("me".into(), path.clone()).unwrap_err();
        assert_eq!(e, format!("the token file {} is empty", path.display()));
        let e = Credentials::open("me".into(), dir.path().join("missing")).unwrap_err();
        assert!(e.starts_with("cannot read the token file "), "{e}");
        assert!(e.contains("missing"), "{e}");

        std::fs::write(&path, "dckr_pat_1\n").unwrap();
        let credentials = Credentials::open("me".into(), path.clone()).unwrap();
        std::fs::write(&path, "\r\n").unwrap();
        assert_eq!(credentials.token_file.get("c").expose(), "dckr_pat_1");
        std::fs::write(&path, "dckr_pat_2").unwrap();
        assert_eq!(credentials.token_file.get("c").expose(), "dckr_pat_2");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(credentials.token_file.get("c").expose(), "dckr_pat_2");
    }

    fn client_with_secret(secret: &str) -> (tempfile::TempDir, Client) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, secret).unwrap();
        let credentials = Credentials::open("me".into(), path).unwrap();
        let agent = http::agent(&http::TlsSettings::webpki(), &agent_options()).unwrap();
        let api = Api::parse(DEFAULT_API_URL).unwrap();
        let client = Client::new("c", api, agent, Some(credentials), Duration::from_secs(1));
        *lock(&client.token) = Some(Token {
            value: "tok-123".into(),
            renew_at: Instant::now(),
        });
        (dir, client)
    }

    #[test]
    fn debug_output_hides_the_secret_and_the_token() {
        let (_dir, client) = client_with_secret("dckr_pat_xyz");
        let text = format!("{client:?}");
        assert!(
            !text.contains("tok-123") && !text.contains("dckr_pat_xyz"),
            "{text}"
        );
        assert!(text.contains("<redacted>"));
    }

    #[test]
    fn redaction_removes_the_token_and_the_secret() {
        let (_dir, client) = client_with_secret("dckr_pat_xyz\n");
        assert_eq!(
            client.redact("sent dckr_pat_xyz, got tok-123 back"),
            "sent <redacted>, got <redacted> back"
        );
    }

    #[test]
    fn a_429_blocks_only_its_own_api_until_the_time_given() {
        let a = "http://blocked-test-a.invalid";
        let b = "http://blocked-test-b.invalid";
        block(a, Instant::now() + Duration::from_secs(30));
        let left = blocked_for(a).unwrap();
        assert!(left > Duration::from_secs(29) && left <= Duration::from_secs(30));
        assert_eq!(blocked_for(b), None);
        block(a, Instant::now());
        assert_eq!(blocked_for(a), None);
    }
}
