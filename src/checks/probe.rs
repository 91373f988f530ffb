//! One HTTP probe of one URL: the request an http check sends and the conditions its
//! answer must meet, with the reason when it does not.
//!
//! [`ProbeSpec`] is every key of an http check but its URLs, so the same keys describe
//! how each URL of a check is probed and, later, a probe module run on demand. A
//! [`Prober`] is those keys validated once (regexes compiled, secret files opened, the
//! agent built); [`Prober::probe`] runs one probe within a deadline and never returns
//! without a result.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, Instant};

use regex::bytes::Regex;
use serde::Deserialize;
use serde_saphyr::Location;

use crate::problem::Spanned;
use ureq::http::{HeaderName, HeaderValue, Method, Request, Uri};

use super::BuildContext;
use crate::net::http::{self as client, AgentOptions, TlsSpec};
use crate::net::secret::{self, Reread, Secret};
use crate::problem::Problem;
use crate::units::SizeValue;

/// Default cap on the body read.
const DEFAULT_BODY_LIMIT: u64 = 10 << 20;

/// Redirects followed with `follow_redirects: true`.
const MAX_REDIRECTS: u32 = 10;

/// The keys of an http check that say how to probe a URL (all but `urls`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSpec {
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
    /// Every reason, in the order counters are kept and exported.
    pub const ALL: [Reason; 9] = [
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

    /// Position in [`Reason::ALL`].
    pub fn index(self) -> usize {
        Reason::ALL.iter().position(|r| *r == self).unwrap_or(8)
    }
}

/// A URL to probe.
#[derive(Debug)]
pub struct Target {
    /// What is requested (credentials from the userinfo removed).
    uri: Uri,
    /// The URL as labelled: without credentials.
    pub label: String,
    /// `Authorization` from the URL's userinfo, when basic_auth is not configured.
    userinfo_auth: Option<String>,
}

impl Target {
    /// Parses a URL; credentials in the userinfo move to a Basic `Authorization` header.
    pub fn parse(text: &str) -> Result<Target, String> {
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
        let Some((userinfo, host_port)) = authority.as_str().rsplit_once('@') else {
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
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        Ok(Target {
            label: clean,
            uri,
            userinfo_auth: Some(client::basic_auth(&decode(user), &decode(password))),
        })
    }
}

/// How requests authenticate; secret files are re-read every run, so rotation works.
#[derive(Debug)]
enum Auth {
    None,
    Basic {
        username: String,
        password: Option<Reread<Secret>>,
    },
    Bearer(Reread<Secret>),
}

/// The outcome of one probe.
#[derive(Debug, Clone)]
pub struct ProbeResult {
    /// Why the probe failed; `None` when it met every condition.
    pub failure: Option<Reason>,
    /// How long it took (until it failed).
    pub duration: Duration,
    /// Final status; 0 without a response.
    pub status: u16,
    /// Redirects followed.
    pub redirects: usize,
    /// Body bytes read.
    pub body_size: u64,
    /// Earliest NotAfter (Unix seconds) of the chain the server presented.
    pub cert_not_after: Option<i64>,
}

impl ProbeResult {
    /// A probe that never started because the run ran out of time or was cancelled.
    pub fn not_run() -> ProbeResult {
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

/// The keys of a [`ProbeSpec`], validated: ready to probe any number of URLs.
#[derive(Debug)]
pub struct Prober {
    check: String,
    method: Method,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<Vec<u8>>,
    valid_status_codes: Option<Vec<u16>>,
    must_not_match: Vec<Regex>,
    must_match: Vec<Regex>,
    body_limit: u64,
    auth: Auth,
    agent: ureq::Agent,
    timeout: Duration,
}

impl Prober {
    /// Validates the keys; problems go to `problems` with their location (`fallback`
    /// when a problem has no key of its own, e.g. the TLS setup).
    pub fn build(
        spec: &ProbeSpec,
        ctx: &BuildContext,
        fallback: Location,
        problems: &mut Vec<Problem>,
    ) -> Option<Prober> {
        let method = method(spec, ctx, problems);
        let headers = headers(spec, ctx, problems);
        check_status_codes(spec, ctx, problems);
        let must_not_match = compile(&spec.fail_if_body_matches_regexp, ctx, problems);
        let must_match = compile(&spec.fail_if_body_not_matches_regexp, ctx, problems);
        let auth = auth(spec, ctx, problems);
        let options = AgentOptions {
            max_redirects: if spec.follow_redirects {
                MAX_REDIRECTS
            } else {
                0
            },
            pool: false,
            ..AgentOptions::default()
        };
        let agent = ctx.agent(spec.tls.as_ref(), &options, fallback, problems)?;
        Some(Prober {
            check: ctx.meta.name.clone(),
            method,
            headers,
            body: spec.body.as_ref().map(|b| b.clone().into_bytes()),
            valid_status_codes: spec.valid_status_codes.as_ref().map(|c| c.value.clone()),
            must_not_match,
            must_match,
            body_limit: spec.body_size_limit.map_or(DEFAULT_BODY_LIMIT, |s| s.0),
            auth,
            agent,
            timeout: ctx.meta.timeout,
        })
    }

    /// The `Authorization` header for this run, re-reading the secret file.
    pub fn authorization(&self) -> Option<String> {
        match &self.auth {
            Auth::None => None,
            Auth::Basic { username, password } => {
                let password = password.as_ref().map(|p| p.get(&self.check));
                let password = password.as_ref().map_or("", |p| p.expose());
                Some(client::basic_auth(username, password))
            }
            Auth::Bearer(token) => Some(format!("Bearer {}", token.get(&self.check).expose())),
        }
    }

    /// Probes `target` once, within the check's timeout and `deadline`.
    pub fn probe(
        &self,
        target: &Target,
        deadline: Instant,
        authorization: Option<&str>,
    ) -> ProbeResult {
        let start = Instant::now();
        let budget = deadline.saturating_duration_since(start).min(self.timeout);
        let mut result = ProbeResult {
            duration: Duration::ZERO,
            ..ProbeResult::not_run()
        };
        if budget.is_zero() {
            return result;
        }
        result.failure = None;
        let mut trace = client::Trace::default();
        let outcome = self.send(target, budget, authorization, &mut result, &mut trace);
        result.cert_not_after = trace.cert_not_after;
        result.duration = start.elapsed();
        if let Err(e) = outcome {
            result.failure = Some(classify(&e, &trace));
        }
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
        trace: &mut client::Trace,
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
        let exchange = match &self.body {
            Some(body) => client::send(&self.agent, builder.body(body.as_slice())?, budget),
            None => client::send(&self.agent, builder.body(())?, budget),
        };
        *trace = exchange.trace;
        let mut response = exchange.response?;
        result.status = response.status().as_u16();
        result.redirects = ureq::ResponseExt::get_redirect_history(&response)
            .map_or(0, |h| h.len().saturating_sub(1));
        let Some(kept) = self.read_body(&mut response, result)? else {
            return Ok(());
        };
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

    /// Reads the body up to `body_size_limit`, keeping it only when a regex needs it;
    /// `None` when the body was too large (the failure is set on `result`).
    fn read_body(
        &self,
        response: &mut ureq::http::Response<ureq::Body>,
        result: &mut ProbeResult,
    ) -> Result<Option<Vec<u8>>, ureq::Error> {
        let wants_body = !(self.must_match.is_empty() && self.must_not_match.is_empty());
        let mut kept = Vec::new();
        let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
        let mut chunk = [0u8; 16 << 10];
        loop {
            let n = reader.read(&mut chunk).map_err(client::error_from_io)?;
            if n == 0 {
                return Ok(Some(kept));
            }
            result.body_size += n as u64;
            if result.body_size > self.body_limit {
                result.body_size = self.body_limit;
                result.failure = Some(Reason::BodyTooLarge);
                return Ok(None);
            }
            if wants_body {
                kept.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

/// `method`, GET by default.
fn method(spec: &ProbeSpec, ctx: &BuildContext, problems: &mut Vec<Problem>) -> Method {
    let Some(m) = &spec.method else {
        return Method::GET;
    };
    match m.value.to_ascii_uppercase().as_str() {
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
    }
}

/// `headers`, each a valid HTTP header name and value.
fn headers(
    spec: &ProbeSpec,
    ctx: &BuildContext,
    problems: &mut Vec<Problem>,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = Vec::new();
    let Some(h) = &spec.headers else {
        return headers;
    };
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
    headers
}

/// `valid_status_codes`: not empty, each an HTTP status.
fn check_status_codes(spec: &ProbeSpec, ctx: &BuildContext, problems: &mut Vec<Problem>) {
    let Some(codes) = &spec.valid_status_codes else {
        return;
    };
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

/// Compiles a list of body regexes; a bad one is a problem at its line.
fn compile(
    list: &[Spanned<String>],
    ctx: &BuildContext,
    problems: &mut Vec<Problem>,
) -> Vec<Regex> {
    list.iter()
        .filter_map(|r| match Regex::new(&r.value) {
            Ok(re) => Some(re),
            Err(e) => {
                // The regex crate's message spans lines; its last line says what is wrong.
                let text = e.to_string();
                let why = text.lines().last().unwrap_or_default().trim();
                problems.push(ctx.problem(
                    r.referenced,
                    format!("invalid regular expression {:?}: {why}", r.value),
                ));
                None
            }
        })
        .collect()
}

/// `basic_auth` or `bearer_token_file`; the secret files must be readable now.
fn auth(spec: &ProbeSpec, ctx: &BuildContext, problems: &mut Vec<Problem>) -> Auth {
    let mut open = |file: &Spanned<String>, what: &'static str| match secret::secret_file(
        ctx.resolve(&file.value),
        what,
    ) {
        Ok(s) => Some(s),
        Err(e) => {
            problems.push(ctx.problem(file.referenced, format!("cannot read the secret file {e}")));
            None
        }
    };
    match (&spec.basic_auth, &spec.bearer_token_file) {
        (Some(_), Some(t)) => {
            problems.push(ctx.problem(
                t.referenced,
                "basic_auth and bearer_token_file cannot both be set",
            ));
            Auth::None
        }
        (Some(b), None) => Auth::Basic {
            username: b.value.username.clone(),
            password: b
                .value
                .password_file
                .as_ref()
                .and_then(|p| open(p, "basic_auth password file")),
        },
        (None, Some(t)) => open(t, "bearer token file").map_or(Auth::None, Auth::Bearer),
        (None, None) => Auth::None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_stripped_from_labels_and_becomes_basic_auth() {
        let t = Target::parse("https://alice:s%3Acret@example.com:8443/health?x=1").unwrap();
        assert_eq!(t.label, "https://example.com:8443/health?x=1");
        assert_eq!(
            t.userinfo_auth.as_deref(),
            Some(client::basic_auth("alice", "s:cret").as_str())
        );
        let t = Target::parse("http://example.com").unwrap();
        assert_eq!(t.label, "http://example.com");
        assert!(t.userinfo_auth.is_none());
        for bad in ["ftp://x/", "example.com", "http://", "http:// x/", ""] {
            assert!(Target::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reasons_have_stable_positions() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        assert_eq!(Reason::BodyTooLarge.as_str(), "body_too_large");
    }
}
