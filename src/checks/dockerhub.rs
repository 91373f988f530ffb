//! `kind: dockerhub`: pull statistics of Docker Hub organizations (replaces seed 000).
//!
//! Each run lists every repository of every configured organization with
//! `GET {api_url}/v2/namespaces/{org}/repositories?page_size=100`, following the
//! absolute `next` links (same scheme, host and port as `api_url` only, at most
//! [`MAX_PAGES`] pages). With `updated_within` the listing is ordered by
//! `-last_updated` and paging stops at the first repository older than the window.
//!
//! An organization whose listing fails keeps its last good values; one that succeeds
//! replaces them, so a deleted repository disappears. Optional credentials are traded at
//! `POST {api_url}/v2/auth/token` for a short-lived Bearer token that is renewed before
//! it expires and after a 401. A 429 blocks every request to that `api_url`, from every
//! check of the process, until the time the API gave.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;
use ureq::http::{HeaderMap, Method, Request, Uri};

use super::{BuildContext, Check, RunContext, RunOutput, Spec};
use crate::client::{self, AgentOptions, TlsSpec};
use crate::config::{LoadedCheck, Problem};
use crate::metrics::{FamilySet, MetricType};
use crate::units::{DurationValue, days_from_civil, format_duration};

const PULLS: &str = "sonde_dockerhub_pulls_total";
const PULLS_HELP: &str = "Pulls of the repository (pull_count of the Docker Hub API).";
const STARS: &str = "sonde_dockerhub_stars";
const STARS_HELP: &str = "Stars of the repository (star_count of the Docker Hub API).";
const LAST_UPDATED: &str = "sonde_dockerhub_last_updated_timestamp_seconds";
const LAST_UPDATED_HELP: &str =
    "When the repository was last updated (Unix time); absent when Docker Hub reports none.";
const REPOSITORIES: &str = "sonde_dockerhub_repositories";
const REPOSITORIES_HELP: &str =
    "Repositories of the organization exported from its latest successful listing.";
const RATE_REMAINING: &str = "sonde_dockerhub_rate_limit_remaining";
const RATE_REMAINING_HELP: &str = "Requests left in the Docker Hub API rate-limit window (X-RateLimit-Remaining of the latest response).";
const LEGACY_PULLS: &str = "docker_image_pulls";
const LEGACY_PULLS_HELP: &str = "Number of DockerHub image pulls";

/// The public Docker Hub API.
const DEFAULT_API_URL: &str = "https://hub.docker.com";
/// The largest page the API serves.
const PAGE_SIZE: u32 = 100;
/// Pages read per organization before the listing is declared broken (100 000
/// repositories), so a `next` link that never ends cannot keep a run busy forever.
pub const MAX_PAGES: usize = 1000;
/// Largest response body read; a page of 100 repositories is about 100 KiB.
const BODY_LIMIT: u64 = 8 << 20;
/// Docker Hub documents that access tokens expire after 10 minutes.
const TOKEN_LIFETIME: Duration = Duration::from_secs(600);
/// How long to wait after a 429 that names no time.
const DEFAULT_RETRY_WAIT: Duration = Duration::from_secs(60);
/// Longest wait accepted from a 429, so a garbled header cannot silence sonde for years.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(86_400);
/// Longest piece of an error body quoted in a log line.
const DETAIL_CHARS: usize = 200;

/// The YAML keys of `kind: dockerhub`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerhubSpec {
    organizations: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    api_url: Option<Spanned<String>>,
    #[serde(default)]
    updated_within: Option<Spanned<DurationValue>>,
    #[serde(default)]
    username: Option<Spanned<String>>,
    #[serde(default)]
    token_file: Option<Spanned<String>>,
    #[serde(default)]
    tls: Option<TlsSpec>,
}

/// Where the API lives; `url` has no trailing slash and also keys the 429 block.
#[derive(Debug)]
struct Api {
    url: String,
    scheme: String,
    host: String,
    port: u16,
}

#[derive(Debug)]
struct Credentials {
    username: String,
    token_file: PathBuf,
}

/// One repository as last listed.
#[derive(Clone, Debug, PartialEq)]
struct Repository {
    name: String,
    pulls: Option<f64>,
    stars: Option<f64>,
    last_updated: Option<f64>,
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

/// The token file's content; `Debug` does not show it.
#[derive(Clone, Default)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What outlives a run.
#[derive(Debug, Default)]
struct State {
    /// Last good listing of each organization, in the order of `organizations`.
    listings: Vec<Option<Vec<Repository>>>,
    token: Option<Token>,
    /// Last readable content of the token file, used while the file is unreadable.
    secret: Option<Secret>,
    /// Latest X-RateLimit-Remaining.
    rate_remaining: Option<f64>,
}

/// A configured dockerhub check.
#[derive(Debug)]
pub struct DockerhubCheck {
    check: String,
    api: Api,
    organizations: Vec<String>,
    window: Option<Duration>,
    credentials: Option<Credentials>,
    agent: ureq::Agent,
    timeout: Duration,
    legacy: bool,
    state: Mutex<State>,
}

/// Why an organization could not be listed.
#[derive(Debug)]
enum OrgError {
    /// A 429 still holds; nothing was sent.
    Blocked(String),
    /// Anything else.
    Failed(String),
}

impl OrgError {
    fn message(&self) -> &str {
        match self {
            OrgError::Blocked(m) | OrgError::Failed(m) => m,
        }
    }
}

/// A response: status and (capped) body.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

/// The per-run view of the state.
struct Run<'a> {
    ctx: &'a RunContext<'a>,
    state: &'a mut State,
    /// Requests sent in this run.
    requests: usize,
    /// X-RateLimit-Remaining of this run's latest response that carried it.
    rate_remaining: Option<f64>,
}

impl DockerhubCheck {
    /// Validates the spec and builds the check.
    pub fn build(spec: &DockerhubSpec, ctx: &BuildContext) -> Result<DockerhubCheck, Vec<Problem>> {
        let mut problems = Vec::new();
        if spec.organizations.value.is_empty() {
            problems.push(ctx.problem(
                spec.organizations.referenced,
                "`organizations` is empty; list at least one Docker Hub organization",
            ));
        }
        let mut organizations = Vec::new();
        let mut seen = HashSet::new();
        for org in &spec.organizations.value {
            if !valid_namespace(&org.value) {
                problems.push(ctx.problem(
                    org.referenced,
                    format!(
                        "organization {:?} is not a Docker Hub namespace (letters, digits, '.', '_' and '-')",
                        org.value
                    ),
                ));
            } else if !seen.insert(org.value.to_ascii_lowercase()) {
                problems.push(ctx.problem(
                    org.referenced,
                    format!("organization {:?} is listed twice", org.value),
                ));
            }
            organizations.push(org.value.clone());
        }
        let api = match &spec.api_url {
            None => parse_api_url(DEFAULT_API_URL).ok(),
            Some(u) => match parse_api_url(&u.value) {
                Ok(api) => Some(api),
                Err(e) => {
                    problems.push(ctx.problem(u.referenced, e));
                    None
                }
            },
        };
        let window = match &spec.updated_within {
            Some(w) if w.value.0.is_zero() => {
                problems.push(ctx.problem(
                    w.referenced,
                    "updated_within must be greater than 0; omit it to export every repository",
                ));
                None
            }
            Some(w) => Some(w.value.0),
            None => None,
        };
        let mut secret = None;
        let credentials = match (&spec.username, &spec.token_file) {
            (Some(user), Some(file)) => {
                if user.value.is_empty() {
                    problems.push(ctx.problem(user.referenced, "username is empty"));
                }
                let token_file = ctx.resolve(&file.value);
                // Readable now, so a typo is a config error; re-read at every login so
                // rotation needs no reload.
                match client::read_secret(&token_file) {
                    Ok(s) if s.is_empty() => {
                        problems.push(ctx.problem(
                            file.referenced,
                            format!("the token file {} is empty", token_file.display()),
                        ));
                    }
                    Ok(s) => secret = Some(Secret(s)),
                    Err(e) => problems.push(
                        ctx.problem(file.referenced, format!("cannot read the token file {e}")),
                    ),
                }
                Some(Credentials {
                    username: user.value.clone(),
                    token_file,
                })
            }
            (Some(user), None) => {
                problems.push(ctx.problem(
                    user.referenced,
                    "username needs token_file (a personal or organization access token)",
                ));
                None
            }
            (None, Some(file)) => {
                problems.push(ctx.problem(
                    file.referenced,
                    "token_file needs username (the Docker Hub user or organization it belongs to)",
                ));
                None
            }
            (None, None) => None,
        };
        // No redirects: a redirect could lead the Bearer token to another host, and the
        // listing must stay on api_url anyway.
        let options = AgentOptions {
            max_redirects: 0,
            pool: true,
            ..AgentOptions::default()
        };
        let agent = ctx.agent(
            spec.tls.as_ref(),
            &options,
            spec.organizations.referenced,
            &mut problems,
        );
        let (Some(api), Some(agent), true) = (api, agent, problems.is_empty()) else {
            return Err(problems);
        };
        Ok(DockerhubCheck {
            check: ctx.meta.name.clone(),
            api,
            state: Mutex::new(State {
                listings: vec![None; organizations.len()],
                secret,
                ..State::default()
            }),
            organizations,
            window,
            credentials,
            agent,
            timeout: ctx.meta.timeout,
            legacy: ctx.legacy_metrics,
        })
    }

    /// Lists one organization, page after page.
    fn list(
        &self,
        run: &mut Run,
        org: &str,
        cutoff: Option<f64>,
    ) -> Result<(Vec<Repository>, usize), OrgError> {
        let mut url = format!(
            "{}/v2/namespaces/{org}/repositories?page_size={PAGE_SIZE}",
            self.api.url
        );
        if cutoff.is_some() {
            url.push_str("&ordering=-last_updated");
        }
        let mut repositories = Vec::new();
        let mut names = HashSet::new();
        let mut visited = HashSet::new();
        let mut pages = 0;
        loop {
            if pages == MAX_PAGES {
                return Err(OrgError::Failed(format!(
                    "more than {MAX_PAGES} pages; listing abandoned (a `next` link that never ends?)"
                )));
            }
            if run.ctx.cancel.load(Ordering::Relaxed) {
                return Err(OrgError::Failed("the run was cancelled".into()));
            }
            visited.insert(url.clone());
            pages += 1;
            let answer = self.get(run, &url)?;
            match answer.status {
                200 => {}
                // The listing shrank while it was read: the page after the last is 404.
                404 if pages > 1 => {
                    log::debug!(
                        "check={} organization={org} msg=\"page {pages} is past the end; listing complete\"",
                        self.check
                    );
                    break;
                }
                404 => {
                    return Err(OrgError::Failed(format!(
                        "HTTP 404: no organization {org:?} on {}",
                        self.api.url
                    )));
                }
                401 if self.credentials.is_none() => {
                    return Err(OrgError::Failed(format!(
                        "HTTP 401{}: the organization is private; set username and token_file",
                        detail(&answer.body)
                    )));
                }
                status => {
                    return Err(OrgError::Failed(format!(
                        "HTTP {status}{} for page {pages}",
                        detail(&answer.body)
                    )));
                }
            }
            let page = parse_page(&answer.body)
                .map_err(|e| OrgError::Failed(format!("page {pages}: {e}")))?;
            let mut older_seen = false;
            for repo in page.repositories {
                if let Some(cutoff) = cutoff {
                    match repo.last_updated {
                        // Never updated: excluded, but not a reason to stop, since a
                        // database may sort nulls first in a descending order.
                        None => continue,
                        Some(t) if t < cutoff => {
                            older_seen = true;
                            break;
                        }
                        Some(_) => {}
                    }
                }
                // Offset paging over a list that changes can show a repository twice.
                if names.insert(repo.name.clone()) {
                    repositories.push(repo);
                }
            }
            if page.skipped > 0 {
                log::debug!(
                    "check={} organization={org} msg=\"skipped {} entries without a name on page {pages}\"",
                    self.check,
                    page.skipped
                );
            }
            let Some(next) = page.next.filter(|_| !older_seen) else {
                break;
            };
            url = self.follow(&next).map_err(OrgError::Failed)?;
            if visited.contains(&url) {
                return Err(OrgError::Failed(format!(
                    "page {pages} links back to an earlier page ({})",
                    shorten(&url)
                )));
            }
        }
        Ok((repositories, pages))
    }

    /// The URL a `next` link stands for, if it stays on api_url's scheme, host and port.
    fn follow(&self, next: &str) -> Result<String, String> {
        let absolute = if next.starts_with('/') && !next.starts_with("//") {
            format!(
                "{}://{}:{}{next}",
                self.api.scheme, self.api.host, self.api.port
            )
        } else {
            next.to_string()
        };
        let refused = || {
            format!(
                "the `next` link {} is not on {}; not followed",
                shorten(next),
                self.api.url
            )
        };
        let uri: Uri = absolute.parse().map_err(|_| refused())?;
        let scheme = uri.scheme_str().unwrap_or_default().to_ascii_lowercase();
        let host = uri.host().unwrap_or_default().to_ascii_lowercase();
        let port = uri.port_u16().or(default_port(&scheme));
        if scheme != self.api.scheme
            || host != self.api.host
            || port != Some(self.api.port)
            || uri.authority().is_some_and(|a| a.as_str().contains('@'))
        {
            return Err(refused());
        }
        Ok(absolute)
    }

    /// GET with the Bearer token when credentials are configured; a 401 renews the token
    /// and retries once.
    fn get(&self, run: &mut Run, url: &str) -> Result<Answer, OrgError> {
        let token = self.bearer(run, false)?;
        let answer = self.send(run, Method::GET, url, None, token.as_deref())?;
        if answer.status != 401 || token.is_none() {
            return Ok(answer);
        }
        log::debug!(
            "check={} msg=\"the API refused the access token (HTTP 401); renewing it\"",
            self.check
        );
        let token = self.bearer(run, true)?;
        let answer = self.send(run, Method::GET, url, None, token.as_deref())?;
        if answer.status == 401 {
            return Err(OrgError::Failed(format!(
                "HTTP 401{} even with a new access token; do the credentials grant access?",
                detail(&answer.body)
            )));
        }
        Ok(answer)
    }

    /// The access token to send, logging in when there is none or it is due for renewal.
    fn bearer(&self, run: &mut Run, renew: bool) -> Result<Option<String>, OrgError> {
        let Some(credentials) = &self.credentials else {
            return Ok(None);
        };
        if !renew
            && let Some(token) = &run.state.token
            && Instant::now() < token.renew_at
        {
            return Ok(Some(token.value.clone()));
        }
        run.state.token = None;
        match client::read_secret(&credentials.token_file) {
            Ok(s) if !s.is_empty() => run.state.secret = Some(Secret(s)),
            Ok(_) => log::warn!(
                "check={} msg=\"the token file is empty; using its last value\"",
                self.check
            ),
            Err(e) => log::warn!(
                "check={} msg=\"cannot re-read the token file; using its last value\" error={e:?}",
                self.check
            ),
        }
        let Some(Secret(secret)) = run.state.secret.clone() else {
            return Err(OrgError::Failed("no readable token file".into()));
        };
        let body = serde_json::json!({"identifier": credentials.username, "secret": secret});
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let sent = Instant::now();
        let url = format!("{}/v2/auth/token", self.api.url);
        let answer = self.send(run, Method::POST, &url, Some(body), None)?;
        if answer.status != 200 {
            // The body is not quoted: a login error could echo what was sent.
            return Err(OrgError::Failed(format!(
                "login at {url} failed: HTTP {}",
                answer.status
            )));
        }
        let token = serde_json::from_slice::<Value>(&answer.body)
            .ok()
            .and_then(|v| v.get("access_token")?.as_str().map(str::to_string))
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                OrgError::Failed(format!("login at {url}: the answer has no access_token"))
            })?;
        let lifetime = token_lifetime(&token, unix_now());
        let margin = (lifetime / 4).min(Duration::from_secs(60));
        log::debug!(
            "check={} msg=\"obtained an access token\" renew_in={:?}",
            self.check,
            lifetime - margin
        );
        run.state.token = Some(Token {
            value: token.clone(),
            renew_at: sent + (lifetime - margin),
        });
        Ok(Some(token))
    }

    /// Sends one request unless a 429 still holds for this API; records the rate-limit
    /// headers, turns a 429 into a block, and reads at most [`BODY_LIMIT`] of the body.
    fn send(
        &self,
        run: &mut Run,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        bearer: Option<&str>,
    ) -> Result<Answer, OrgError> {
        if let Some(left) = blocked_for(&self.api.url) {
            return Err(OrgError::Blocked(format!(
                "rate limited by {}: no request for another {}",
                self.api.url,
                format_duration(round_up_to_second(left))
            )));
        }
        let budget = run
            .ctx
            .deadline
            .saturating_duration_since(Instant::now())
            .min(self.timeout);
        if budget.is_zero() {
            return Err(OrgError::Failed("the run's timeout passed".into()));
        }
        let mut builder = Request::builder()
            .method(method)
            .uri(url)
            .header("accept", "application/json");
        if let Some(token) = bearer {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        log::trace!("check={} msg=\"request\" url={url:?}", self.check);
        run.requests += 1;
        let bad_request = |_| OrgError::Failed(format!("invalid request URL {}", shorten(url)));
        let response = match body {
            Some(body) => {
                let request = builder
                    .header("content-type", "application/json")
                    .body(body)
                    .map_err(bad_request)?;
                client::send(&self.agent, request, budget)
            }
            None => client::send(&self.agent, builder.body(()).map_err(bad_request)?, budget),
        };
        let mut response = response.map_err(|e| OrgError::Failed(describe(&e, budget)))?;
        let status = response.status().as_u16();
        let headers = response.headers();
        if let Some(left) = header(headers, "x-ratelimit-remaining").and_then(|v| v.parse().ok()) {
            run.rate_remaining = Some(left);
        }
        if status == 429 {
            let wait = retry_wait(
                header(headers, "retry-after"),
                header(headers, "x-retry-after"),
                header(headers, "x-ratelimit-reset"),
                unix_now(),
            );
            block(&self.api.url, Instant::now() + wait);
            return Err(OrgError::Failed(format!(
                "HTTP 429 Too Many Requests: no request to {} for {}",
                self.api.url,
                format_duration(round_up_to_second(wait))
            )));
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(BODY_LIMIT)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => OrgError::Failed(format!(
                    "HTTP {status}: the response is larger than {} MiB",
                    BODY_LIMIT >> 20
                )),
                other => OrgError::Failed(describe(&other, budget)),
            })?;
        Ok(Answer { status, body })
    }

    /// Removes the access token and the secret from a text bound for a log line.
    fn redact(&self, state: &State, text: &str) -> String {
        let mut text = text.to_string();
        let token = state.token.as_ref().map(|t| t.value.as_str());
        let secret = state.secret.as_ref().map(|s| s.0.as_str());
        for secret in [token, secret].into_iter().flatten() {
            if !secret.is_empty() {
                text = text.replace(secret, "<redacted>");
            }
        }
        text
    }

    fn render(&self, state: &State) -> FamilySet {
        let mut m = FamilySet::new();
        let pulls = m.family(PULLS, PULLS_HELP, MetricType::Counter);
        let stars = m.family(STARS, STARS_HELP, MetricType::Gauge);
        let updated = m.family(LAST_UPDATED, LAST_UPDATED_HELP, MetricType::Gauge);
        let count = m.family(REPOSITORIES, REPOSITORIES_HELP, MetricType::Gauge);
        let remaining = m.family(RATE_REMAINING, RATE_REMAINING_HELP, MetricType::Gauge);
        let legacy = self
            .legacy
            .then(|| m.family(LEGACY_PULLS, LEGACY_PULLS_HELP, MetricType::Gauge));
        for (org, listing) in self.organizations.iter().zip(&state.listings) {
            let Some(repositories) = listing else {
                continue;
            };
            m.sample(
                count,
                &[("check", &self.check), ("organization", org)],
                repositories.len() as f64,
            );
            for repo in repositories {
                let labels = [
                    ("check", self.check.as_str()),
                    ("organization", org.as_str()),
                    ("repository", repo.name.as_str()),
                ];
                if let Some(v) = repo.pulls {
                    m.sample(pulls, &labels, v);
                    if let Some(id) = legacy {
                        m.sample(id, &[("image", &repo.name), ("organization", org)], v);
                    }
                }
                if let Some(v) = repo.stars {
                    m.sample(stars, &labels, v);
                }
                if let Some(v) = repo.last_updated {
                    m.sample(updated, &labels, v);
                }
            }
        }
        if let Some(v) = state.rate_remaining {
            m.sample(remaining, &[("check", &self.check)], v);
        }
        m
    }
}

impl Check for DockerhubCheck {
    fn run(&self, ctx: &RunContext) -> RunOutput {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let cutoff = self.window.map(|w| unix_now() - w.as_secs_f64());
        let mut run = Run {
            ctx,
            state: &mut state,
            requests: 0,
            rate_remaining: None,
        };
        let mut failed: Vec<(&str, String)> = Vec::new();
        for (i, org) in self.organizations.iter().enumerate() {
            let started = Instant::now();
            let before = run.requests;
            match self.list(&mut run, org, cutoff) {
                Ok((repositories, pages)) => {
                    log::debug!(
                        "check={} organization={org} msg=\"listed repositories\" repositories={} pages={pages} requests={} duration={:?}",
                        self.check,
                        repositories.len(),
                        run.requests - before,
                        started.elapsed()
                    );
                    run.state.listings[i] = Some(repositories);
                }
                Err(e) => {
                    let message = self.redact(run.state, e.message());
                    match e {
                        OrgError::Blocked(_) => log::debug!(
                            "check={} organization={org} msg=\"not listed; keeping the last values\" error={message:?}",
                            self.check
                        ),
                        OrgError::Failed(_) => log::warn!(
                            "check={} organization={org} msg=\"cannot list repositories; keeping the last values\" error={message:?}",
                            self.check
                        ),
                    }
                    failed.push((org, message));
                }
            }
        }
        // A run that sent nothing (a 429 still holds) keeps the last known value.
        if run.requests > 0 {
            run.state.rate_remaining = run.rate_remaining;
        }
        let error = match failed.as_slice() {
            [] => None,
            [(org, e)] => Some(format!("organization {org}: {e}")),
            [(org, e), ..] => Some(format!(
                "{} of {} organizations not listed, e.g. {org}: {e}",
                failed.len(),
                self.organizations.len()
            )),
        };
        RunOutput {
            success: failed.is_empty(),
            error,
            families: self.render(&state),
            targets: Vec::new(),
        }
    }
}

/// One page of the listing, leniently read.
#[derive(Debug, PartialEq)]
struct Page {
    repositories: Vec<Repository>,
    /// Entries without a usable `name`.
    skipped: usize,
    next: Option<String>,
}

/// Reads a `list_repositories_response`: `results` must be a list; every other field,
/// and every field of an entry but `name`, may be missing, null or of another type.
fn parse_page(body: &[u8]) -> Result<Page, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the response is not JSON ({e})"))?;
    let Some(results) = value.get("results").and_then(Value::as_array) else {
        return Err("the response has no `results` list".into());
    };
    let next = match value.get("next") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("`next` is neither a URL nor null".into()),
    };
    let mut page = Page {
        repositories: Vec::with_capacity(results.len()),
        skipped: 0,
        next,
    };
    for entry in results {
        let Some(name) = entry
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        else {
            page.skipped += 1;
            continue;
        };
        let count = |key: &str| entry.get(key).and_then(Value::as_f64).filter(|v| *v >= 0.0);
        page.repositories.push(Repository {
            name: name.to_string(),
            pulls: count("pull_count"),
            stars: count("star_count"),
            last_updated: entry
                .get("last_updated")
                .and_then(Value::as_str)
                .and_then(parse_rfc3339),
        });
    }
    Ok(page)
}

/// Parses an RFC 3339 date-time (`2024-05-01T12:00:00.123456Z`, `...+02:00`) into Unix
/// seconds with the fraction.
pub fn parse_rfc3339(text: &str) -> Option<f64> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = b.get(range)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut fraction = 0.0;
    if let Some(after_dot) = rest.strip_prefix('.') {
        let digits = after_dot.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        // Beyond nanoseconds the digits cannot change an f64 of Unix seconds.
        fraction = format!("0.{}", &after_dot[..digits.min(9)]).parse().ok()?;
        rest = &after_dot[digits..];
    }
    let offset = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digit = |c: u8| c.is_ascii_digit().then(|| i64::from(c - b'0'));
            let hours = digit(*h1)? * 10 + digit(*h2)?;
            let minutes = digit(*m1)? * 10 + digit(*m2)?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = hours * 3600 + minutes * 60;
            if *sign == b'-' { -seconds } else { seconds }
        }
        _ => return None,
    };
    let days = days_from_civil(i64::from(year), month, day);
    let seconds =
        days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)
            - offset;
    Some(seconds as f64 + fraction)
}

/// How long to send nothing after a 429: `Retry-After` (seconds) or `X-Retry-After`
/// (Unix time), the later when both are given; else the rate-limit reset time; else a
/// minute. Capped at [`MAX_RETRY_WAIT`].
fn retry_wait(
    retry_after: Option<&str>,
    x_retry_after: Option<&str>,
    reset: Option<&str>,
    now_unix: f64,
) -> Duration {
    let seconds = |v: Option<&str>| {
        v.and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite())
    };
    let relative = seconds(retry_after);
    let absolute = seconds(x_retry_after).map(|t| t - now_unix);
    let wait = match (relative, absolute) {
        (Some(a), Some(b)) => a.max(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => match seconds(reset) {
            Some(t) => t - now_unix,
            None => DEFAULT_RETRY_WAIT.as_secs_f64(),
        },
    };
    Duration::from_secs_f64(wait.clamp(0.0, MAX_RETRY_WAIT.as_secs_f64()))
}

/// How long to use an access token: until the `exp` of its JWT payload when it has one,
/// at most the documented 10 minutes.
fn token_lifetime(token: &str, now_unix: f64) -> Duration {
    let exp = token
        .split('.')
        .nth(1)
        .and_then(base64url_decode)
        .and_then(|payload| serde_json::from_slice::<Value>(&payload).ok())
        .and_then(|claims| claims.get("exp")?.as_f64());
    match exp {
        Some(exp) if exp.is_finite() => {
            Duration::from_secs_f64((exp - now_unix).clamp(0.0, TOKEN_LIFETIME.as_secs_f64()))
        }
        _ => TOKEN_LIFETIME,
    }
}

/// Decodes unpadded (or padded) base64url, as in a JWT.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut buffer = 0u32;
    let mut bits = 0;
    for c in text.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// APIs (by `api_url`) that answered 429, and until when nothing may be sent to them.
/// Process-wide: every check that talks to the same API honours the same wait.
static BLOCKED: Mutex<Vec<(String, Instant)>> = Mutex::new(Vec::new());

fn block(api: &str, until: Instant) {
    let mut blocked = BLOCKED.lock().unwrap_or_else(PoisonError::into_inner);
    let now = Instant::now();
    blocked.retain(|(key, t)| key != api && *t > now);
    if until > now {
        blocked.push((api.to_string(), until));
    }
}

/// How much longer `api` is blocked, if it is.
fn blocked_for(api: &str) -> Option<Duration> {
    let blocked = BLOCKED.lock().unwrap_or_else(PoisonError::into_inner);
    let now = Instant::now();
    blocked
        .iter()
        .find(|(key, until)| key == api && *until > now)
        .map(|(_, until)| *until - now)
}

/// Checks and normalises `api_url`.
fn parse_api_url(text: &str) -> Result<Api, String> {
    let trimmed = text.trim_end_matches('/');
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

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// Docker Hub namespaces are lowercase letters and digits (older ones also `_`, `-`,
/// `.`); anything else would change the request path.
fn valid_namespace(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && name != "."
        && name != ".."
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name)?.to_str().ok()
}

/// `: "message"` from a JSON error body (`message`, `detail` or `error`), shortened.
fn detail(body: &[u8]) -> String {
    let text = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        ["message", "detail", "error"]
            .iter()
            .find_map(|k| v.get(*k)?.as_str().map(str::to_string))
    });
    match text {
        Some(t) if !t.is_empty() => format!(": {:?}", shorten(&t)),
        _ => String::new(),
    }
}

/// At most [`DETAIL_CHARS`] characters of a text from the network.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(DETAIL_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

fn describe(e: &ureq::Error, budget: Duration) -> String {
    match e {
        ureq::Error::Timeout(_) => format!("no answer within {}", format_duration(budget)),
        ureq::Error::HostNotFound => "the API host name does not resolve".into(),
        ureq::Error::ConnectionFailed => "cannot connect to the API".into(),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "the API refused the connection".into()
        }
        other => other.to_string(),
    }
}

fn round_up_to_second(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Two legacy dockerhub checks with an organization in common would both export
/// `docker_image_pulls{image,organization}` for its repositories: duplicate series that
/// Prometheus rejects. Reported as config problems.
pub fn legacy_conflicts(checks: &[LoadedCheck]) -> Vec<Problem> {
    let mut owner: Vec<(String, String)> = Vec::new();
    let mut problems = Vec::new();
    for loaded in checks.iter().filter(|c| c.config.legacy_metrics) {
        let Spec::Dockerhub(spec) = &loaded.config.spec else {
            continue;
        };
        let name = loaded.config.meta.name.as_str();
        for org in &spec.organizations.value {
            let key = org.value.to_ascii_lowercase();
            match owner.iter().find(|(o, _)| *o == key) {
                Some((_, first)) => problems.push(Problem::at(
                    org.referenced,
                    Some(name),
                    format!(
                        "organization {:?} is also in legacy check {first:?}; docker_image_pulls would be exported twice",
                        org.value
                    ),
                )),
                None => owner.push((key, name.to_string())),
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_timestamps_parse_with_fractions_and_offsets() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20Z"), Some(1_700_000_000.0));
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20.5Z"),
            Some(1_700_000_000.5)
        );
        let micro = parse_rfc3339("2023-11-14T22:13:20.123456Z").unwrap();
        assert!((micro - 1_700_000_000.123456).abs() < 1e-6, "{micro}");
        assert_eq!(
            parse_rfc3339("2023-11-15T00:13:20+02:00"),
            Some(1_700_000_000.0)
        );
        assert_eq!(
            parse_rfc3339("2023-11-14T17:43:20.25-04:30"),
            Some(1_700_000_000.25)
        );
        assert_eq!(parse_rfc3339("2024-02-29t00:00:00z"), Some(1_709_164_800.0));
        assert_eq!(
            parse_rfc3339("2023-11-14 22:13:20.000000001Z").map(f64::floor),
            Some(1_700_000_000.0)
        );
    }

    #[test]
    fn malformed_timestamps_are_refused() {
        for bad in [
            "",
            "2023-11-14",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13:20.Z",
            "2023-13-14T22:13:20Z",
            "2023-02-29T22:13:20Z",
            "2023-11-31T22:13:20Z",
            "2023-11-14T24:13:20Z",
            "2023-11-14T22:60:20Z",
            "2023-11-14T22:13:20+2:00",
            "2023-11-14T22:13:20+24:00",
            "2023-11-14T22:13:20Zjunk",
            "２023-11-14T22:13:20Z",
            "2023-11-14T22:13:2xZ",
            "+023-11-14T22:13:20Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn pages_are_read_leniently() {
        let page = parse_page(
            br#"{"count": 3, "next": "https://hub.docker.com/v2/namespaces/x/repositories?page=2",
                "previous": null, "unknown": {"a": 1},
                "results": [
                  {"name": "a", "namespace": "x", "pull_count": 15722123, "star_count": 7,
                   "last_updated": "2023-11-14T22:13:20.5Z", "description": null,
                   "categories": [{"name": "n", "slug": "s"}], "future_field": true},
                  {"name": "b", "pull_count": null, "last_updated": null},
                  {"name": "c", "pull_count": "12", "star_count": -1, "last_updated": "yesterday"},
                  {"namespace": "x", "pull_count": 1},
                  {"name": "", "pull_count": 1}
                ]}"#,
        )
        .unwrap();
        assert_eq!(
            page.next.as_deref(),
            Some("https://hub.docker.com/v2/namespaces/x/repositories?page=2")
        );
        assert_eq!(page.skipped, 2);
        assert_eq!(
            page.repositories,
            vec![
                Repository {
                    name: "a".into(),
                    pulls: Some(15_722_123.0),
                    stars: Some(7.0),
                    last_updated: Some(1_700_000_000.5),
                },
                Repository {
                    name: "b".into(),
                    pulls: None,
                    stars: None,
                    last_updated: None,
                },
                Repository {
                    name: "c".into(),
                    pulls: None,
                    stars: None,
                    last_updated: None,
                },
            ]
        );
        assert_eq!(parse_page(br#"{"results": []}"#).unwrap().next, None);
        assert_eq!(
            parse_page(br#"{"results": [], "next": ""}"#).unwrap().next,
            None
        );
    }

    #[test]
    fn pages_without_results_or_json_are_errors() {
        assert!(parse_page(b"<html>").unwrap_err().contains("not JSON"));
        assert!(parse_page(b"").unwrap_err().contains("not JSON"));
        assert!(
            parse_page(br#"{"count": 0}"#)
                .unwrap_err()
                .contains("no `results`")
        );
        assert!(
            parse_page(br#"{"results": {"a": 1}}"#)
                .unwrap_err()
                .contains("no `results`")
        );
        assert!(
            parse_page(br#"[1, 2]"#)
                .unwrap_err()
                .contains("no `results`")
        );
        assert!(
            parse_page(br#"{"results": [], "next": 2}"#)
                .unwrap_err()
                .contains("`next`")
        );
    }

    #[test]
    fn retry_wait_takes_seconds_or_epoch_and_is_bounded() {
        let now = 1_700_000_000.0;
        let secs = |d: Duration| d.as_secs_f64();
        assert_eq!(secs(retry_wait(Some("60"), None, None, now)), 60.0);
        assert_eq!(secs(retry_wait(Some(" 5 "), None, None, now)), 5.0);
        assert_eq!(secs(retry_wait(None, Some("1700000030"), None, now)), 30.0);
        assert_eq!(
            secs(retry_wait(Some("10"), Some("1700000030"), None, now)),
            30.0
        );
        assert_eq!(
            secs(retry_wait(Some("40"), Some("1700000030"), None, now)),
            40.0
        );
        assert_eq!(secs(retry_wait(None, None, Some("1700000007"), now)), 7.0);
        assert_eq!(secs(retry_wait(None, None, None, now)), 60.0);
        assert_eq!(secs(retry_wait(Some("soon"), None, None, now)), 60.0);
        assert_eq!(secs(retry_wait(None, Some("1600000000"), None, now)), 0.0);
        assert_eq!(secs(retry_wait(Some("-5"), None, None, now)), 0.0);
        assert_eq!(
            secs(retry_wait(Some("99999999999999999999"), None, None, now)),
            86_400.0
        );
        assert_eq!(secs(retry_wait(Some("inf"), None, None, now)), 60.0);
    }

    #[test]
    fn token_lifetime_follows_the_jwt_exp_claim_up_to_ten_minutes() {
        let now = 1_700_000_000.0;
        // {"alg":"none"} . {"exp":1700000120} . sig
        let jwt = "eyJhbGciOiJub25lIn0.eyJleHAiOjE3MDAwMDAxMjB9.c2ln";
        assert_eq!(token_lifetime(jwt, now), Duration::from_secs(120));
        // {"exp":1800000000}: far away, capped at the documented 10 minutes.
        let far = "e30.eyJleHAiOjE4MDAwMDAwMDB9.c2ln";
        assert_eq!(token_lifetime(far, now), TOKEN_LIFETIME);
        // {"exp":1600000000}: already expired, used for this request only.
        let past = "e30.eyJleHAiOjE2MDAwMDAwMDB9.c2ln";
        assert_eq!(token_lifetime(past, now), Duration::ZERO);
        assert_eq!(token_lifetime("opaque-token", now), TOKEN_LIFETIME);
        assert_eq!(token_lifetime("a.!!!.c", now), TOKEN_LIFETIME);
    }

    #[test]
    fn base64url_decodes_with_and_without_padding() {
        assert_eq!(base64url_decode("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(base64url_decode("Zm9vYg").unwrap(), b"foob");
        assert_eq!(base64url_decode("Zm9vYg==").unwrap(), b"foob");
        assert_eq!(base64url_decode("-_8").unwrap(), [0xfb, 0xff]);
        assert!(base64url_decode("a+b").is_none());
    }

    #[test]
    fn api_urls_are_checked_and_normalised() {
        assert!(parse_api_url(DEFAULT_API_URL).is_ok());
        let api = parse_api_url("https://Hub.Docker.com/").unwrap();
        assert_eq!(
            (
                api.url.as_str(),
                api.scheme.as_str(),
                api.host.as_str(),
                api.port
            ),
            ("https://Hub.Docker.com", "https", "hub.docker.com", 443)
        );
        let api = parse_api_url("http://127.0.0.1:8080/proxy/hub").unwrap();
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
            assert!(parse_api_url(bad).is_err(), "{bad:?}");
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
    fn error_details_are_short_and_only_from_json() {
        assert_eq!(
            detail(br#"{"message": "object not found"}"#),
            r#": "object not found""#
        );
        assert_eq!(detail(br#"{"detail": "Incorrect"}"#), r#": "Incorrect""#);
        assert_eq!(detail(b"Too Many Requests (HAP429)."), "");
        let long = format!(r#"{{"message": "{}"}}"#, "x".repeat(1000));
        assert!(detail(long.as_bytes()).chars().count() < DETAIL_CHARS + 10);
    }

    #[test]
    fn debug_output_hides_the_secret_and_the_token() {
        let state = State {
            token: Some(Token {
                value: "tok-123".into(),
                renew_at: Instant::now(),
            }),
            secret: Some(Secret("dckr_pat_xyz".into())),
            ..State::default()
        };
        let text = format!("{state:?}");
        assert!(
            !text.contains("tok-123") && !text.contains("dckr_pat_xyz"),
            "{text}"
        );
        assert!(text.contains("<redacted>"));
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
