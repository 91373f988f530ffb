//! `kind: http`: URL uptime probes (replaces seeds 002 and 003).
//!
//! Each URL is probed independently on a bounded set of worker threads; the check's
//! timeout bounds every probe, body included, and the whole run. A probe reports *why*
//! it failed (the `reason` label), the earliest NotAfter of the presented certificate
//! chain even when verification failed, and feeds per-URL counters and a histogram
//! that live as long as the check.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use regex::bytes::Regex;
use serde::Deserialize;
use serde_saphyr::Spanned;
use ureq::http::{HeaderName, HeaderValue, Method, Request, Uri};

use super::{BuildContext, Check, RunContext, RunOutput, Spec};
use crate::client::{self, AgentOptions, TlsSpec};
use crate::config::{LoadedCheck, Problem};
use crate::metrics::{FamilySet, Histogram, MetricType};
use crate::results::TargetReport;
use crate::units::SizeValue;

const UP: &str = "sonde_http_up";
const UP_HELP: &str = "1 if the last probe of the URL met every condition, else 0.";
const DURATION: &str = "sonde_http_duration_seconds";
const DURATION_HELP: &str = "Duration of the last probe in seconds (elapsed time when it failed).";
const STATUS: &str = "sonde_http_status_code";
const STATUS_HELP: &str = "Final HTTP status code of the last probe; 0 when there was no response.";
const REDIRECTS: &str = "sonde_http_redirects";
const REDIRECTS_HELP: &str = "Redirects followed by the last probe.";
const BODY_SIZE: &str = "sonde_http_body_size_bytes";
const BODY_SIZE_HELP: &str = "Bytes of response body read by the last probe.";
const CERT_NOT_AFTER: &str = "sonde_http_tls_cert_not_after_timestamp_seconds";
const CERT_NOT_AFTER_HELP: &str = "Earliest NotAfter (Unix time) of the certificate chain the server presented, also when verification failed.";
const PROBES: &str = "sonde_http_probes_total";
const PROBES_HELP: &str = "Probes of the URL by result (success or failure).";
const FAILURES: &str = "sonde_http_failures_total";
const FAILURES_HELP: &str = "Failed probes of the URL by reason.";
const PROBE_DURATION: &str = "sonde_http_probe_duration_seconds";
const PROBE_DURATION_HELP: &str = "Duration of every probe of the URL in seconds.";
const LEGACY_UP: &str = "sample_external_url_up";
const LEGACY_UP_HELP: &str = "URL Up";
const LEGACY_MS: &str = "sample_external_url_response_ms";
const LEGACY_MS_HELP: &str = "Response Time";

/// Upper bounds of the probe duration histogram, in seconds.
static BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Default number of URLs probed at once by one check.
const DEFAULT_CONCURRENCY: usize = 32;
/// Default cap on the body read.
const DEFAULT_BODY_LIMIT: u64 = 10 << 20;

/// The YAML keys of `kind: http`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    urls: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    method: Option<Spanned<String>>,
    #[serde(default)]
    headers: Option<Spanned<BTreeMap<String, String>>>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    valid_status_codes: Option<Spanned<Vec<u16>>>,
    #[serde(default = "yes")]
    follow_redirects: bool,
    #[serde(default)]
    fail_if_body_matches_regexp: Vec<Spanned<String>>,
    #[serde(default)]
    fail_if_body_not_matches_regexp: Vec<Spanned<String>>,
    #[serde(default)]
    body_size_limit: Option<SizeValue>,
    #[serde(default)]
    basic_auth: Option<Spanned<BasicAuthSpec>>,
    #[serde(default)]
    bearer_token_file: Option<Spanned<String>>,
    #[serde(default)]
    tls: Option<TlsSpec>,
    #[serde(default)]
    concurrency: Option<Spanned<usize>>,
}

fn yes() -> bool {
    true
}

/// `basic_auth:` of an http check.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthSpec {
    username: String,
    #[serde(default)]
    password_file: Option<Spanned<String>>,
}

/// Why a probe failed; the value of the `reason` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The name did not resolve.
    Dns,
    /// No TCP connection.
    Connect,
    /// The timeout passed before the probe finished.
    Timeout,
    /// The TLS handshake or certificate verification failed.
    Tls,
    /// The final status is not a valid one.
    StatusCode,
    /// A body regular expression condition failed.
    BodyRegex,
    /// The body is larger than `body_size_limit`.
    BodyTooLarge,
    /// Too many redirects, or a redirect that could not be followed.
    Redirects,
    /// Any other transfer error.
    Io,
}

impl Reason {
    const ALL: [Reason; 9] = [
        Reason::Dns,
        Reason::Connect,
        Reason::Timeout,
        Reason::Tls,
        Reason::StatusCode,
        Reason::BodyRegex,
        Reason::BodyTooLarge,
        Reason::Redirects,
        Reason::Io,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Dns => "dns",
            Reason::Connect => "connect",
            Reason::Timeout => "timeout",
            Reason::Tls => "tls",
            Reason::StatusCode => "status_code",
            Reason::BodyRegex => "body_regex",
            Reason::BodyTooLarge => "body_too_large",
            Reason::Redirects => "redirects",
            Reason::Io => "io",
        }
    }
}

/// One URL of the check.
#[derive(Debug)]
struct Target {
    /// What is requested (credentials from the userinfo removed).
    uri: Uri,
    /// Value of the `url` label.
    label: String,
    /// `Authorization` from the URL's userinfo, when basic_auth is not configured.
    userinfo_auth: Option<String>,
}

#[derive(Debug)]
enum Auth {
    None,
    Basic {
        username: String,
        password_file: Option<PathBuf>,
    },
    Bearer {
        token_file: PathBuf,
    },
}

/// Counters of one URL that live as long as the check.
#[derive(Debug)]
struct UrlStats {
    successes: u64,
    failures: [u64; 9],
    durations: Histogram,
}

/// The outcome of one probe.
#[derive(Debug, Clone)]
struct ProbeResult {
    failure: Option<Reason>,
    duration: Duration,
    status: u16,
    redirects: usize,
    body_size: u64,
    cert_not_after: Option<i64>,
}

/// A configured http check.
#[derive(Debug)]
pub struct HttpCheck {
    check: String,
    targets: Vec<Target>,
    method: Method,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<Vec<u8>>,
    valid_status_codes: Option<Vec<u16>>,
    must_not_match: Vec<Regex>,
    must_match: Vec<Regex>,
    body_limit: u64,
    auth: Auth,
    /// Last readable value of the secret file, used while the file is unreadable.
    last_secret: Mutex<Option<String>>,
    agent: ureq::Agent,
    timeout: Duration,
    concurrency: usize,
    legacy: bool,
    stats: Mutex<Vec<UrlStats>>,
}

impl HttpCheck {
    /// Validates the spec and builds the check.
    pub fn build(spec: &HttpSpec, ctx: &BuildContext) -> Result<HttpCheck, Vec<Problem>> {
        let mut problems = Vec::new();
        if spec.urls.value.is_empty() {
            problems.push(ctx.problem(
                spec.urls.referenced,
                "`urls` is empty; list at least one URL",
            ));
        }
        let mut targets = Vec::new();
        let mut seen = HashMap::new();
        for url in &spec.urls.value {
            match parse_target(&url.value) {
                Ok(t) => {
                    if seen.insert(t.label.clone(), ()).is_some() {
                        problems.push(
                            ctx.problem(
                                url.referenced,
                                format!("URL {:?} is listed twice", t.label),
                            ),
                        );
                    }
                    targets.push(t);
                }
                Err(e) => problems.push(ctx.problem(url.referenced, e)),
            }
        }
        let method = match &spec.method {
            None => Method::GET,
            Some(m) => match m.value.to_ascii_uppercase().as_str() {
                "GET" => Method::GET,
                "HEAD" => Method::HEAD,
                "POST" => Method::POST,
                "PUT" => Method::PUT,
                "PATCH" => Method::PATCH,
                "DELETE" => Method::DELETE,
                "OPTIONS" => Method::OPTIONS,
                _ => {
                    problems.push(ctx.problem(
                        m.referenced,
                        format!(
                            "method {:?}: use GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS",
                            m.value
                        ),
                    ));
                    Method::GET
                }
            },
        };
        let mut headers = Vec::new();
        if let Some(h) = &spec.headers {
            for (name, value) in &h.value {
                match (
                    HeaderName::try_from(name.as_str()),
                    HeaderValue::try_from(value.as_str()),
                ) {
                    (Ok(n), Ok(v)) => headers.push((n, v)),
                    _ => problems.push(ctx.problem(
                        h.referenced,
                        format!("header {name:?} is not a valid HTTP header"),
                    )),
                }
            }
        }
        if let Some(codes) = &spec.valid_status_codes {
            if let Some(bad) = codes.value.iter().find(|c| !(100..=599).contains(*c)) {
                problems.push(ctx.problem(
                    codes.referenced,
                    format!("valid_status_codes: {bad} is not an HTTP status"),
                ));
            }
            if codes.value.is_empty() {
                problems.push(ctx.problem(
                    codes.referenced,
                    "valid_status_codes is empty; omit it to accept any 2xx",
                ));
            }
        }
        let mut compile = |list: &[Spanned<String>]| -> Vec<Regex> {
            list.iter()
                .filter_map(|r| match Regex::new(&r.value) {
                    Ok(re) => Some(re),
                    Err(e) => {
                        let first = e
                            .to_string()
                            .lines()
                            .last()
                            .unwrap_or_default()
                            .trim()
                            .to_string();
                        problems.push(ctx.problem(
                            r.referenced,
                            format!("invalid regular expression {:?}: {first}", r.value),
                        ));
                        None
                    }
                })
                .collect()
        };
        let must_not_match = compile(&spec.fail_if_body_matches_regexp);
        let must_match = compile(&spec.fail_if_body_not_matches_regexp);
        let auth = match (&spec.basic_auth, &spec.bearer_token_file) {
            (Some(b), Some(t)) => {
                problems.push(ctx.problem(
                    t.referenced,
                    "basic_auth and bearer_token_file cannot both be set",
                ));
                let _ = b;
                Auth::None
            }
            (Some(b), None) => Auth::Basic {
                username: b.value.username.clone(),
                password_file: b
                    .value
                    .password_file
                    .as_ref()
                    .map(|p| ctx.resolve(&p.value)),
            },
            (None, Some(t)) => Auth::Bearer {
                token_file: ctx.resolve(&t.value),
            },
            (None, None) => Auth::None,
        };
        // Secrets must be readable now; later runs re-read them so rotation works.
        let secret_at = spec
            .basic_auth
            .as_ref()
            .and_then(|b| b.value.password_file.as_ref().map(|p| p.referenced))
            .or(spec.bearer_token_file.as_ref().map(|t| t.referenced));
        let last_secret = match (auth_secret_path(&auth), secret_at) {
            (Some(path), Some(at)) => match client::read_secret(path) {
                Ok(s) => Some(s),
                Err(e) => {
                    problems.push(ctx.problem(at, format!("cannot read the secret file {e}")));
                    None
                }
            },
            _ => None,
        };
        let concurrency = match &spec.concurrency {
            None => DEFAULT_CONCURRENCY,
            Some(c) if (1..=1024).contains(&c.value) => c.value,
            Some(c) => {
                problems.push(ctx.problem(c.referenced, "concurrency must be between 1 and 1024"));
                1
            }
        };
        let agent_options = AgentOptions {
            max_redirects: if spec.follow_redirects { 10 } else { 0 },
            pool: false,
            ..AgentOptions::default()
        };
        let agent = ctx.agent(
            spec.tls.as_ref(),
            &agent_options,
            spec.urls.referenced,
            &mut problems,
        );
        let Some(agent) = agent.filter(|_| problems.is_empty()) else {
            return Err(problems);
        };
        let stats = targets
            .iter()
            .map(|_| UrlStats {
                successes: 0,
                failures: [0; 9],
                durations: Histogram::new(&BUCKETS),
            })
            .collect();
        Ok(HttpCheck {
            check: ctx.meta.name.clone(),
            targets,
            method,
            headers,
            body: spec.body.as_ref().map(|b| b.clone().into_bytes()),
            valid_status_codes: spec.valid_status_codes.as_ref().map(|c| c.value.clone()),
            must_not_match,
            must_match,
            body_limit: spec.body_size_limit.map_or(DEFAULT_BODY_LIMIT, |s| s.0),
            auth,
            last_secret: Mutex::new(last_secret),
            agent,
            timeout: ctx.meta.timeout,
            concurrency,
            legacy: ctx.legacy_metrics,
            stats: Mutex::new(stats),
        })
    }

    /// The `Authorization` header for this run, re-reading the secret file.
    fn authorization(&self) -> Option<String> {
        let path = auth_secret_path(&self.auth)?;
        let mut last = self
            .last_secret
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match client::read_secret(path) {
            Ok(secret) => *last = Some(secret),
            Err(e) => log::warn!(
                "check={} msg=\"cannot re-read the secret file; using its last value\" error=\"{e}\"",
                self.check
            ),
        }
        let secret = last.clone()?;
        match &self.auth {
            Auth::Basic { username, .. } => Some(basic_auth(username, &secret)),
            Auth::Bearer { .. } => Some(format!("Bearer {secret}")),
            Auth::None => None,
        }
    }

    fn probe(
        &self,
        target: &Target,
        deadline: Instant,
        authorization: Option<&str>,
    ) -> ProbeResult {
        let start = Instant::now();
        let budget = deadline.saturating_duration_since(start).min(self.timeout);
        let mut result = ProbeResult {
            failure: None,
            duration: Duration::ZERO,
            status: 0,
            redirects: 0,
            body_size: 0,
            cert_not_after: None,
        };
        if budget.is_zero() {
            result.failure = Some(Reason::Timeout);
            return result;
        }
        let outcome = self.send(target, budget, authorization, &mut result);
        let trace = client::take_trace();
        result.cert_not_after = trace.cert_not_after;
        result.duration = start.elapsed();
        result.failure = match outcome {
            Err(e) => Some(classify(&e, &trace)),
            Ok(()) => result.failure,
        };
        result
    }

    /// Sends the request and reads the body, filling `result`; transport errors are
    /// returned, condition failures are set on `result.failure`.
    fn send(
        &self,
        target: &Target,
        budget: Duration,
        authorization: Option<&str>,
        result: &mut ProbeResult,
    ) -> Result<(), ureq::Error> {
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(target.uri.clone());
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        if let Some(auth) = authorization.or(target.userinfo_auth.as_deref()) {
            builder = builder.header("authorization", auth);
        }
        let response = match &self.body {
            Some(body) => client::send(&self.agent, builder.body(body.as_slice())?, budget),
            None => client::send(&self.agent, builder.body(())?, budget),
        };
        let mut response = response?;
        result.status = response.status().as_u16();
        result.redirects = ureq::ResponseExt::get_redirect_history(&response)
            .map_or(0, |h| h.len().saturating_sub(1));
        let wants_body = !(self.must_match.is_empty() && self.must_not_match.is_empty());
        let mut kept = Vec::new();
        let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
        let mut chunk = [0u8; 16 << 10];
        loop {
            let n = reader.read(&mut chunk).map_err(ureq_error_from_io)?;
            if n == 0 {
                break;
            }
            result.body_size += n as u64;
            if result.body_size > self.body_limit {
                result.body_size = self.body_limit;
                result.failure = Some(Reason::BodyTooLarge);
                return Ok(());
            }
            if wants_body {
                kept.extend_from_slice(&chunk[..n]);
            }
        }
        let status_ok = match &self.valid_status_codes {
            Some(codes) => codes.contains(&result.status),
            None => (200..300).contains(&result.status),
        };
        if !status_ok {
            result.failure = Some(Reason::StatusCode);
        } else if self.must_not_match.iter().any(|re| re.is_match(&kept))
            || self.must_match.iter().any(|re| !re.is_match(&kept))
        {
            result.failure = Some(Reason::BodyRegex);
        }
        Ok(())
    }

    fn render(&self, results: &[ProbeResult]) -> RunOutput {
        let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        let mut m = FamilySet::new();
        let up = m.family(UP, UP_HELP, MetricType::Gauge);
        let duration = m.family(DURATION, DURATION_HELP, MetricType::Gauge);
        let status = m.family(STATUS, STATUS_HELP, MetricType::Gauge);
        let redirects = m.family(REDIRECTS, REDIRECTS_HELP, MetricType::Gauge);
        let body = m.family(BODY_SIZE, BODY_SIZE_HELP, MetricType::Gauge);
        let cert = m.family(CERT_NOT_AFTER, CERT_NOT_AFTER_HELP, MetricType::Gauge);
        let probes = m.family(PROBES, PROBES_HELP, MetricType::Counter);
        let failures = m.family(FAILURES, FAILURES_HELP, MetricType::Counter);
        let histogram = m.family(PROBE_DURATION, PROBE_DURATION_HELP, MetricType::Histogram);
        let (legacy_up, legacy_ms) = if self.legacy {
            (
                Some(m.family(LEGACY_UP, LEGACY_UP_HELP, MetricType::Gauge)),
                Some(m.family(LEGACY_MS, LEGACY_MS_HELP, MetricType::Gauge)),
            )
        } else {
            (None, None)
        };
        let mut targets = Vec::with_capacity(results.len());
        let mut down = Vec::new();
        for ((target, r), s) in self.targets.iter().zip(results).zip(stats.iter_mut()) {
            let secs = r.duration.as_secs_f64();
            match r.failure {
                None => s.successes += 1,
                Some(reason) => {
                    s.failures[Reason::ALL.iter().position(|x| *x == reason).unwrap_or(8)] += 1;
                    down.push((target.label.as_str(), reason));
                }
            }
            s.durations.observe(secs);
            let labels = [
                ("check", self.check.as_str()),
                ("url", target.label.as_str()),
            ];
            let is_up = if r.failure.is_none() { 1.0 } else { 0.0 };
            m.sample(up, &labels, is_up);
            m.sample(duration, &labels, secs);
            m.sample(status, &labels, f64::from(r.status));
            m.sample(redirects, &labels, r.redirects as f64);
            m.sample(body, &labels, r.body_size as f64);
            if let Some(t) = r.cert_not_after {
                m.sample(cert, &labels, t as f64);
            }
            let total_failures: u64 = s.failures.iter().sum();
            m.sample(
                probes,
                &[labels[0], labels[1], ("result", "success")],
                s.successes as f64,
            );
            m.sample(
                probes,
                &[labels[0], labels[1], ("result", "failure")],
                total_failures as f64,
            );
            for (reason, count) in Reason::ALL.iter().zip(s.failures) {
                if count > 0 {
                    m.sample(
                        failures,
                        &[labels[0], labels[1], ("reason", reason.as_str())],
                        count as f64,
                    );
                }
            }
            m.histogram(histogram, &labels, &s.durations);
            if let (Some(lu), Some(lm)) = (legacy_up, legacy_ms) {
                let url_only = [("url", target.label.as_str())];
                m.sample(lu, &url_only, is_up);
                let ms = if r.failure == Some(Reason::Timeout) {
                    f64::INFINITY
                } else {
                    secs * 1000.0
                };
                m.sample(lm, &url_only, ms);
            }
            targets.push(TargetReport {
                target: target.label.clone(),
                up: r.failure.is_none(),
                status_code: r.status,
                duration_ms: secs * 1000.0,
                error: r.failure.map(Reason::as_str),
            });
        }
        let error = match down.as_slice() {
            [] => None,
            [(url, reason)] => Some(format!("{url}: {}", reason.as_str())),
            [(url, reason), ..] => Some(format!(
                "{} of {} URLs down, e.g. {url}: {}",
                down.len(),
                self.targets.len(),
                reason.as_str()
            )),
        };
        RunOutput {
            success: down.is_empty(),
            error,
            families: m,
            targets,
        }
    }
}

impl Check for HttpCheck {
    fn run(&self, ctx: &RunContext) -> RunOutput {
        let authorization = self.authorization();
        let slots: Vec<Mutex<Option<ProbeResult>>> =
            self.targets.iter().map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let work = || {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(target) = self.targets.get(i) else {
                    break;
                };
                let result = if ctx.cancel.load(Ordering::Relaxed) {
                    ProbeResult::not_run()
                } else {
                    self.probe(target, ctx.deadline, authorization.as_deref())
                };
                *slots[i].lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
            }
        };
        let workers = self.concurrency.min(self.targets.len()).max(1);
        std::thread::scope(|scope| {
            let mut spawned = 0;
            for _ in 1..workers {
                let ok = std::thread::Builder::new()
                    .name("sonde-probe".into())
                    .stack_size(512 << 10)
                    .spawn_scoped(scope, work)
                    .is_ok();
                if !ok {
                    break;
                }
                spawned += 1;
            }
            log::trace!(
                "check={} probing {} URLs on {} threads",
                self.check,
                self.targets.len(),
                spawned + 1
            );
            // The calling thread works too, so a run makes progress even when no thread
            // can be spawned.
            work();
        });
        let results: Vec<ProbeResult> = slots
            .into_iter()
            .map(|s| {
                s.into_inner()
                    .unwrap_or_else(PoisonError::into_inner)
                    .unwrap_or_else(ProbeResult::not_run)
            })
            .collect();
        self.render(&results)
    }
}

impl ProbeResult {
    /// A probe that never started because the run ran out of time or was cancelled.
    fn not_run() -> ProbeResult {
        ProbeResult {
            failure: Some(Reason::Timeout),
            duration: Duration::ZERO,
            status: 0,
            redirects: 0,
            body_size: 0,
            cert_not_after: None,
        }
    }
}

fn auth_secret_path(auth: &Auth) -> Option<&PathBuf> {
    match auth {
        Auth::Basic { password_file, .. } => password_file.as_ref(),
        Auth::Bearer { token_file } => Some(token_file),
        Auth::None => None,
    }
}

/// Parses a URL of the config; credentials in the userinfo move to a header.
fn parse_target(text: &str) -> Result<Target, String> {
    let uri: Uri = text
        .parse()
        .map_err(|e| format!("invalid URL {text:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("URL {text:?} must start with http:// or https://")),
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("URL {text:?} has no host"))?;
    if authority.host().is_empty() {
        return Err(format!("URL {text:?} has no host"));
    }
    let (userinfo, host_port) = match authority.as_str().rsplit_once('@') {
        Some((u, h)) => (Some(u.to_string()), h.to_string()),
        None => (None, authority.as_str().to_string()),
    };
    let Some(userinfo) = userinfo else {
        return Ok(Target {
            label: text.to_string(),
            uri,
            userinfo_auth: None,
        });
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let scheme = uri.scheme_str().unwrap_or("http");
    let clean = format!("{scheme}://{host_port}{path}");
    let uri: Uri = clean
        .parse()
        .map_err(|e| format!("invalid URL {text:?}: {e}"))?;
    let (user, password) = userinfo.split_once(':').unwrap_or((&userinfo, ""));
    Ok(Target {
        label: clean,
        uri,
        userinfo_auth: Some(basic_auth(&percent_decode(user), &percent_decode(password))),
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `Basic base64(user:password)`.
fn basic_auth(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

/// Standard base64 with padding.
pub fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Recovers a ureq error from the io::Error a body reader returns.
fn ureq_error_from_io(e: std::io::Error) -> ureq::Error {
    if e.get_ref().is_some_and(|inner| inner.is::<ureq::Error>()) {
        match e.into_inner().map(|inner| inner.downcast::<ureq::Error>()) {
            Some(Ok(inner)) => *inner,
            _ => ureq::Error::Io(std::io::Error::other("body read failed")),
        }
    } else {
        ureq::Error::Io(e)
    }
}

/// Maps a transport error to a failure reason, using the connection trace.
fn classify(e: &ureq::Error, trace: &client::Trace) -> Reason {
    use std::io::ErrorKind;
    match e {
        ureq::Error::Timeout(_) => Reason::Timeout,
        ureq::Error::Io(io) if matches!(io.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
            Reason::Timeout
        }
        ureq::Error::HostNotFound => Reason::Dns,
        _ if trace.dns_failed => Reason::Dns,
        ureq::Error::TooManyRedirects | ureq::Error::RedirectFailed => Reason::Redirects,
        ureq::Error::BodyExceedsLimit(_) => Reason::BodyTooLarge,
        _ if trace.tls_failed => Reason::Tls,
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => Reason::Tls,
        ureq::Error::Io(_) | ureq::Error::ConnectionFailed if !trace.connected => Reason::Connect,
        _ => Reason::Io,
    }
}

/// Two legacy http checks would both export `sample_external_url_*{url="…"}` for a URL
/// they share: duplicate series that Prometheus rejects. Reported as config problems.
pub fn legacy_conflicts(checks: &[LoadedCheck]) -> Vec<Problem> {
    let mut owner: HashMap<String, &str> = HashMap::new();
    let mut problems = Vec::new();
    for loaded in checks.iter().filter(|c| c.config.legacy_metrics) {
        let Spec::Http(spec) = &loaded.config.spec else {
            continue;
        };
        for url in &spec.urls.value {
            let Ok(target) = parse_target(&url.value) else {
                continue;
            };
            let name = loaded.config.meta.name.as_str();
            if let Some(first) = owner.insert(target.label.clone(), name) {
                problems.push(Problem::at(
                    url.referenced,
                    Some(name),
                    format!(
                        "URL {:?} is also in legacy check {first:?}; sample_external_url_* would be exported twice",
                        target.label
                    ),
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }

    #[test]
    fn userinfo_is_stripped_from_labels_and_becomes_basic_auth() {
        let t = parse_target("https://alice:s%3Acret@example.com:8443/health?x=1").unwrap();
        assert_eq!(t.label, "https://example.com:8443/health?x=1");
        assert_eq!(
            t.userinfo_auth.as_deref(),
            Some(basic_auth("alice", "s:cret").as_str())
        );
        let t = parse_target("http://example.com").unwrap();
        assert_eq!(t.label, "http://example.com");
        assert!(t.userinfo_auth.is_none());
        for bad in ["ftp://x/", "example.com", "http://", "http:// x/", ""] {
            assert!(parse_target(bad).is_err(), "{bad:?}");
        }
    }
}
