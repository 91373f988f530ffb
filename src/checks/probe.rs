//! One HTTP probe of one URL: the request an http check sends and the conditions its
//! answer must meet, with the reason (a short label value) and the cause (words a
//! person can act on) when it does not.
//!
//! [`ProbeSpec`] is every key of an http check but its URLs: its own keys and the
//! connection keys every kind that speaks HTTP shares ([`ConnectionKeys`]), so the
//! same keys describe how each URL of a check is probed and, later, a probe module run
//! on demand. A [`Prober`] is those keys validated once (regexes compiled, files
//! opened, the agent built); [`Prober::prepare`] re-reads the files a run needs, and
//! [`Prober::probe`] runs one probe within a deadline and never returns without a
//! result.
//!
//! The body is read as it came over the wire and gzip is decoded here rather than in
//! ureq, so that a probe knows both sizes: bytes on the wire and bytes decoded (what
//! `body_size_limit` and the body regexes apply to).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regex::bytes::Regex;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, de};
use serde_saphyr::Location;
use ureq::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};

use super::BuildContext;
use crate::net::http::{self as client, AgentOptions, ConnectionKeys, Phases, Stage, TlsFacts};
use crate::net::secret::{self, Reread, Secret};
use crate::problem::{Problem, Spanned};
use crate::units::SizeValue;

/// Default cap on the (decoded) body read.
const DEFAULT_BODY_LIMIT: u64 = 10 << 20;

/// Largest `body_file`, and largest header value file.
const BODY_FILE_LIMIT: u64 = 10 << 20;
const HEADER_FILE_LIMIT: u64 = 64 << 10;

/// Redirects followed with `follow_redirects: true`.
const MAX_REDIRECTS: u32 = 10;

/// The HTTP versions `valid_http_versions` may name (sonde itself speaks HTTP/1.x, so
/// `HTTP/2.0` is accepted for configs written for blackbox_exporter but never seen).
const HTTP_VERSIONS: [&str; 3] = ["HTTP/1.0", "HTTP/1.1", "HTTP/2.0"];

/// The keys of an http check that say how to probe a URL (all but `urls`): its own and
/// the shared connection keys.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeSpec {
    own: ProbeKeys,
    connection: ConnectionKeys,
}

impl<'de> Deserialize<'de> for ProbeSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ProbeSpec, D::Error> {
        let mut connection = ConnectionKeys::default();
        let own =
            crate::keys::split_listed(deserializer, &mut connection, &[&ConnectionKeys::NAMES])?;
        Ok(ProbeSpec { own, connection })
    }
}

/// The keys only probes have.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeKeys {
    #[serde(default)]
    method: Option<Spanned<String>>,
    #[serde(default)]
    headers: Option<Spanned<BTreeMap<String, HeaderValueSpec>>>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_file: Option<Spanned<String>>,
    #[serde(default)]
    valid_status_codes: Option<Spanned<Vec<u16>>>,
    #[serde(default)]
    valid_http_versions: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default = "yes")]
    follow_redirects: bool,
    #[serde(default)]
    fail_if_ssl: bool,
    #[serde(default)]
    fail_if_not_ssl: bool,
    #[serde(default)]
    fail_if_body_matches_regexp: Vec<Spanned<String>>,
    #[serde(default)]
    fail_if_body_not_matches_regexp: Vec<Spanned<String>>,
    #[serde(default)]
    fail_if_header_matches: Vec<Spanned<HeaderMatchSpec>>,
    #[serde(default)]
    fail_if_header_not_matches: Vec<Spanned<HeaderMatchSpec>>,
    #[serde(default)]
    body_size_limit: Option<SizeValue>,
    #[serde(default)]
    basic_auth: Option<Spanned<BasicAuthSpec>>,
    #[serde(default)]
    bearer_token_file: Option<Spanned<String>>,
}

fn yes() -> bool {
    true
}

/// A value of `headers:`: inline text, or `{file: PATH}` re-read every run.
#[derive(Clone, Debug, PartialEq)]
enum HeaderValueSpec {
    Inline(String),
    File(Spanned<String>),
}

impl<'de> Deserialize<'de> for HeaderValueSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HeaderValueSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a header value, or {file: PATH}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HeaderValueSpec, E> {
                Ok(HeaderValueSpec::Inline(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HeaderValueSpec, E> {
                Ok(HeaderValueSpec::Inline(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HeaderValueSpec, E> {
                Ok(HeaderValueSpec::Inline(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<HeaderValueSpec, E> {
                Ok(HeaderValueSpec::Inline(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HeaderValueSpec, A::Error> {
                let mut file = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "file" => file = Some(map.next_value::<Spanned<String>>()?),
                        other => return Err(de::Error::unknown_field(other, &["file"])),
                    }
                }
                file.map(HeaderValueSpec::File)
                    .ok_or_else(|| de::Error::missing_field("file"))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// One entry of `fail_if_header_matches` / `fail_if_header_not_matches`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderMatchSpec {
    header: String,
    regexp: String,
    #[serde(default)]
    allow_missing: bool,
}

/// `basic_auth:` of an http check.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthSpec {
    username: String,
    #[serde(default)]
    password_file: Option<Spanned<String>>,
}

/// Declares the reasons once: variant, label value, what it means.
macro_rules! reasons {
    ($($variant:ident: $label:literal, $doc:literal;)*) => {
        /// Why a probe failed; the value of the `reason` label.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Reason {
            $(#[doc = $doc] $variant,)*
        }

        impl Reason {
            /// Every reason, in the order counters are kept and exported.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $label,)*
                }
            }
        }
    };
}

reasons! {
    Dns: "dns", "The name did not resolve, or has no address of the family asked for.";
    Connect: "connect", "No TCP connection.";
    Timeout: "timeout", "The timeout passed before the probe finished.";
    Tls: "tls", "The TLS handshake, certificate verification or TLS session failed.";
    Proxy: "proxy", "The proxy could not be reached or refused the tunnel.";
    StatusCode: "status_code", "The final status is not a valid one.";
    HttpVersion: "http_version", "The response's HTTP version is not in `valid_http_versions`.";
    HeaderRegex: "header_regex", "A header regular expression condition failed.";
    BodyRegex: "body_regex", "A body regular expression condition failed.";
    BodyTooLarge: "body_too_large", "The body is larger than `body_size_limit`.";
    Ssl: "ssl", "The final response came over TLS and `fail_if_ssl` is set.";
    NotSsl: "not_ssl", "The final response came over plain HTTP and `fail_if_not_ssl` is set.";
    Redirects: "redirects", "Too many redirects, or a redirect that could not be followed.";
    Io: "io", "Any other transfer error.";
}

impl Reason {
    /// Position in [`Reason::ALL`].
    pub fn index(self) -> usize {
        Reason::ALL
            .iter()
            .position(|r| *r == self)
            .unwrap_or(Reason::ALL.len() - 1)
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

/// A header value read from a file: a secret, so `Debug` does not show it.
struct FileHeader(HeaderValue);

impl fmt::Debug for FileHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileHeader(<redacted>)")
    }
}

fn parse_header_file(bytes: &[u8]) -> Result<FileHeader, String> {
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b'\n' | b'\r'))
        .map_or(0, |i| i + 1);
    let mut value = HeaderValue::from_bytes(&bytes[..end])
        .map_err(|_| "not a valid HTTP header value (control characters?)".to_string())?;
    value.set_sensitive(true);
    Ok(FileHeader(value))
}

fn parse_body_file(bytes: &[u8]) -> Result<Vec<u8>, String> {
    Ok(bytes.to_vec())
}

/// The request body: none, `body`, or `body_file` re-read every run.
#[derive(Debug)]
enum BodySource {
    None,
    Inline(Arc<Vec<u8>>),
    File(Reread<Vec<u8>>),
}

/// A header sent with every request.
#[derive(Debug)]
enum HeaderSource {
    Inline(HeaderValue),
    File(Reread<FileHeader>),
}

/// One header condition, validated.
#[derive(Debug)]
struct HeaderMatch {
    name: HeaderName,
    regexp: Regex,
    allow_missing: bool,
}

/// What one run sends: files re-read once for all of its probes.
#[derive(Debug, Default)]
pub struct Prepared {
    authorization: Option<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<Arc<Vec<u8>>>,
}

thread_local! {
    /// Where a probe thread reads bodies: allocated (and zeroed) once per thread, not
    /// once per probe, since probe threads live as long as their check.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 16 << 10]);
}

/// The outcome of one probe.
#[derive(Debug, Clone)]
pub struct ProbeResult {
    /// Why the probe failed; `None` when it met every condition.
    pub failure: Option<Reason>,
    /// The failure in words ("certificate expired at ...").
    pub cause: Option<String>,
    /// How long it took (until it failed).
    pub duration: Duration,
    /// Final status; 0 without a response.
    pub status: u16,
    /// Redirects followed.
    pub redirects: usize,
    /// Body bytes read, decoded.
    pub body_size: u64,
    /// Body bytes read as they came over the wire (compressed, without chunk framing).
    pub wire_size: u64,
    /// Earliest NotAfter (Unix seconds) of the chain the server presented.
    pub cert_not_after: Option<i64>,
    /// Time per phase, summed over redirects.
    pub phases: Phases,
    /// TLS facts of the final hop, when it spoke TLS.
    pub tls: Option<TlsFacts>,
    /// IP version (4 or 6) of the final connection.
    pub ip_protocol: Option<u8>,
    /// The address of the final connection (or the first one it was to try).
    pub ip_addr: Option<IpAddr>,
    /// Whether the final response came over TLS.
    pub over_tls: bool,
    /// `Content-Length` of the final response, when it had one.
    pub content_length: Option<u64>,
    /// HTTP version of the final response (`1.1`).
    pub http_version: Option<&'static str>,
    /// `Last-Modified` of the final response, as Unix seconds.
    pub last_modified: Option<i64>,
    /// The final response is a redirect that was not followed (`follow_redirects:
    /// false`, or one past the last redirect followed).
    pub unfollowed_redirect: bool,
}

impl ProbeResult {
    /// A probe that never started because the run ran out of time or was cancelled.
    pub fn not_run() -> ProbeResult {
        ProbeResult {
            failure: Some(Reason::Timeout),
            cause: Some("the run's time was up before this URL was probed".into()),
            duration: Duration::ZERO,
            status: 0,
            redirects: 0,
            body_size: 0,
            wire_size: 0,
            cert_not_after: None,
            phases: Phases::default(),
            tls: None,
            ip_protocol: None,
            ip_addr: None,
            over_tls: false,
            content_length: None,
            http_version: None,
            last_modified: None,
            unfollowed_redirect: false,
        }
    }

    fn fail(&mut self, reason: Reason, cause: String) {
        self.failure = Some(reason);
        self.cause = Some(cause);
    }
}

/// The keys of a [`ProbeSpec`], validated: ready to probe any number of URLs.
#[derive(Debug)]
pub struct Prober {
    check: String,
    method: Method,
    headers: Vec<(HeaderName, HeaderSource)>,
    asks_encoding: bool,
    body: BodySource,
    valid_status_codes: Option<Vec<u16>>,
    valid_http_versions: Option<Vec<String>>,
    fail_if_ssl: bool,
    fail_if_not_ssl: bool,
    follow_redirects: bool,
    must_not_match: Vec<(String, Regex)>,
    must_match: Vec<(String, Regex)>,
    header_must_not_match: Vec<HeaderMatch>,
    header_must_match: Vec<HeaderMatch>,
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
        let own = &spec.own;
        let method = method(own, ctx, problems);
        let headers = headers(own, ctx, problems);
        let asks_encoding = headers
            .iter()
            .any(|(n, _)| n == ureq::http::header::ACCEPT_ENCODING);
        let body = body(own, ctx, problems);
        check_status_codes(own, ctx, problems);
        let valid_http_versions = http_versions(own, ctx, problems);
        let must_not_match = compile(&own.fail_if_body_matches_regexp, ctx, problems);
        let must_match = compile(&own.fail_if_body_not_matches_regexp, ctx, problems);
        let header_must_not_match = header_matches(&own.fail_if_header_matches, ctx, problems);
        let header_must_match = header_matches(&own.fail_if_header_not_matches, ctx, problems);
        let auth = auth(own, ctx, problems);
        let options = AgentOptions {
            max_redirects: if own.follow_redirects {
                MAX_REDIRECTS
            } else {
                0
            },
            pool: false,
            keep_last_redirect: true,
            ..AgentOptions::default()
        };
        let agent = ctx.agent(&spec.connection, &options, fallback, problems)?;
        Some(Prober {
            check: ctx.meta.name.clone(),
            method,
            headers,
            asks_encoding,
            body,
            valid_status_codes: own.valid_status_codes.as_ref().map(|c| c.value.clone()),
            valid_http_versions,
            fail_if_ssl: own.fail_if_ssl,
            fail_if_not_ssl: own.fail_if_not_ssl,
            follow_redirects: own.follow_redirects,
            must_not_match,
            must_match,
            header_must_not_match,
            header_must_match,
            body_limit: own.body_size_limit.map_or(DEFAULT_BODY_LIMIT, |s| s.0),
            auth,
            agent,
            timeout: ctx.meta.timeout,
        })
    }

    /// What this run sends: the `Authorization` header and the header and body files,
    /// re-read now (a file that cannot be read keeps its last good content).
    pub fn prepare(&self) -> Prepared {
        let authorization = match &self.auth {
            Auth::None => None,
            Auth::Basic { username, password } => {
                let password = password.as_ref().map(|p| p.get(&self.check));
                let password = password.as_ref().map_or("", |p| p.expose());
                Some(client::basic_auth(username, password))
            }
            Auth::Bearer(token) => Some(format!("Bearer {}", token.get(&self.check).expose())),
        };
        let headers = self
            .headers
            .iter()
            .map(|(name, source)| {
                let value = match source {
                    HeaderSource::Inline(v) => v.clone(),
                    HeaderSource::File(file) => file.get(&self.check).0.clone(),
                };
                (name.clone(), value)
            })
            .collect();
        let body = match &self.body {
            BodySource::None => None,
            BodySource::Inline(b) => Some(Arc::clone(b)),
            BodySource::File(file) => Some(Arc::new(file.get(&self.check).to_vec())),
        };
        Prepared {
            authorization,
            headers,
            body,
        }
    }

    /// Probes `target` once, within the check's timeout and `deadline`.
    pub fn probe(&self, target: &Target, deadline: Instant, prepared: &Prepared) -> ProbeResult {
        let start = Instant::now();
        let budget = deadline.saturating_duration_since(start).min(self.timeout);
        if budget.is_zero() {
            return ProbeResult::not_run();
        }
        let mut result = ProbeResult {
            failure: None,
            cause: None,
            ..ProbeResult::not_run()
        };
        let (outcome, trace, end) = self.exchange(target, budget, prepared, &mut result);
        result.duration = start.elapsed();
        result.cert_not_after = trace.cert_not_after;
        result.phases = trace.phases(end);
        result.ip_protocol = trace.ip_protocol;
        result.ip_addr = trace.ip_addr;
        if result.tls.is_none() && result.status == 0 {
            result.tls = trace.tls.clone();
        }
        if let Err(e) = outcome {
            result.fail(classify(&e, &trace), client::cause(&e, &trace));
        }
        result
    }

    /// Sends the request, reads the body and judges the answer, filling `result`;
    /// transport errors are returned with the trace and when the body ended.
    fn exchange(
        &self,
        target: &Target,
        budget: Duration,
        prepared: &Prepared,
        result: &mut ProbeResult,
    ) -> (Result<(), ureq::Error>, client::Trace, Option<Instant>) {
        let request = match self.request(target, prepared) {
            Ok(r) => r,
            Err(e) => return (Err(e), client::Trace::default(), None),
        };
        let sent = match &prepared.body {
            Some(body) => request
                .body(body.as_slice())
                .map(|r| client::send(&self.agent, r, budget)),
            None => request
                .body(())
                .map(|r| client::send(&self.agent, r, budget)),
        };
        let exchange = match sent {
            Ok(exchange) => exchange,
            Err(e) => return (Err(e.into()), client::Trace::default(), None),
        };
        let mut trace = exchange.trace;
        let mut response = match exchange.response {
            Ok(r) => r,
            Err(e) => return (Err(e), trace, None),
        };
        result.status = response.status().as_u16();
        result.redirects = ureq::ResponseExt::get_redirect_history(&response)
            .map_or(0, |h| h.len().saturating_sub(1));
        let over_tls = ureq::ResponseExt::get_uri(&response).scheme_str() == Some("https");
        result.tls = if over_tls { trace.tls.clone() } else { None };
        note_head(&response, over_tls, result);
        let read = self.read_body(&mut response, result);
        let end = Instant::now();
        if let Some(late) = client::late_failure() {
            trace.failure.get_or_insert(late);
        }
        let kept = match read {
            Ok(Some(kept)) => kept,
            Ok(None) => return (Ok(()), trace, Some(end)),
            Err(e) => return (Err(e), trace, Some(end)),
        };
        if let Some((reason, cause)) = self.judge(&response, &kept, over_tls) {
            result.fail(reason, cause);
        }
        (Ok(()), trace, Some(end))
    }

    /// The request head for `target`; the body is added by the caller.
    fn request(
        &self,
        target: &Target,
        prepared: &Prepared,
    ) -> Result<ureq::http::request::Builder, ureq::Error> {
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(target.uri.clone());
        for (name, value) in &prepared.headers {
            builder = builder.header(name, value);
        }
        if !self.asks_encoding {
            builder = builder.header(ureq::http::header::ACCEPT_ENCODING, "gzip");
        }
        // Every probe measures a new connection, so say so: the server closes it (its
        // side keeps the TIME_WAIT, not sonde's ephemeral ports), and the client skips
        // checking whether the connection could be reused.
        if !prepared
            .headers
            .iter()
            .any(|(name, _)| name == ureq::http::header::CONNECTION)
        {
            builder = builder.header(ureq::http::header::CONNECTION, "close");
        }
        if let Some(auth) = prepared
            .authorization
            .as_deref()
            .or(target.userinfo_auth.as_deref())
        {
            let mut value = HeaderValue::try_from(auth)
                .map_err(|_| ureq::Error::BadUri("credentials are not a valid header".into()))?;
            value.set_sensitive(true);
            builder = builder.header(ureq::http::header::AUTHORIZATION, value);
        }
        Ok(builder)
    }

    /// Reads the body up to `body_size_limit` (decoded), decoding gzip and counting
    /// the bytes on the wire; keeps it only when a regex needs it. `None` when the
    /// body was too large (the failure is set on `result`).
    fn read_body(
        &self,
        response: &mut ureq::http::Response<ureq::Body>,
        result: &mut ProbeResult,
    ) -> Result<Option<Vec<u8>>, ureq::Error> {
        let gzip = response
            .headers()
            .get(ureq::http::header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "gzip" | "x-gzip"));
        let wants_body = !(self.must_match.is_empty() && self.must_not_match.is_empty());
        let mut wire = Counting {
            inner: response.body_mut().with_config().limit(u64::MAX).reader(),
            count: 0,
        };
        // An empty body (HEAD, 204, 304) says gzip too at times, and is no gzip stream.
        let first = SCRATCH.with_borrow_mut(|scratch| {
            let n = wire.read(scratch)?;
            Ok::<_, std::io::Error>(scratch[..n].to_vec())
        });
        let first = first.map_err(client::error_from_io)?;
        if first.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let raw = std::io::Cursor::new(first).chain(&mut wire);
        let mut decoded: Box<dyn Read + '_> = if gzip {
            Box::new(flate2::read::MultiGzDecoder::new(raw))
        } else {
            Box::new(raw)
        };
        let mut kept = Vec::new();
        let outcome = SCRATCH.with_borrow_mut(|chunk| {
            loop {
                let n = match decoded.read(chunk) {
                    Ok(n) => n,
                    Err(e) => break Err(e),
                };
                if n == 0 {
                    break Ok(Some(std::mem::take(&mut kept)));
                }
                result.body_size += n as u64;
                if result.body_size > self.body_limit {
                    result.body_size = self.body_limit;
                    result.fail(
                        Reason::BodyTooLarge,
                        format!(
                            "the body is larger than body_size_limit ({} bytes)",
                            self.body_limit
                        ),
                    );
                    break Ok(None);
                }
                if wants_body {
                    kept.extend_from_slice(&chunk[..n]);
                }
            }
        });
        drop(decoded);
        result.wire_size = wire.count;
        outcome.map_err(|e| {
            if gzip && !e.get_ref().is_some_and(|i| i.is::<ureq::Error>()) {
                ureq::Error::Io(std::io::Error::other(format!(
                    "the gzip body does not decode: {e}"
                )))
            } else {
                client::error_from_io(e)
            }
        })
    }

    /// The conditions of a complete answer, in blackbox_exporter's order: status,
    /// headers, body, HTTP version, TLS. The first that fails, with its cause. A
    /// redirect still unfollowed while redirects are followed is a loop (or a chain
    /// longer than [`MAX_REDIRECTS`]) and fails before anything else.
    fn judge(
        &self,
        response: &ureq::http::Response<ureq::Body>,
        body: &[u8],
        over_tls: bool,
    ) -> Option<(Reason, String)> {
        if self.follow_redirects && is_followable_redirect(response) {
            return Some((
                Reason::Redirects,
                format!("too many redirects (more than {MAX_REDIRECTS})"),
            ));
        }
        let status = response.status().as_u16();
        match &self.valid_status_codes {
            Some(codes) if !codes.contains(&status) => {
                return Some((
                    Reason::StatusCode,
                    format!("status {status} is not in valid_status_codes {codes:?}"),
                ));
            }
            None if !(200..300).contains(&status) => {
                return Some((Reason::StatusCode, format!("status {status} is not 2xx")));
            }
            _ => {}
        }
        if let Some(cause) = header_failure(
            response.headers(),
            &self.header_must_not_match,
            &self.header_must_match,
        ) {
            return Some((Reason::HeaderRegex, cause));
        }
        if let Some((text, _)) = self.must_not_match.iter().find(|(_, re)| re.is_match(body)) {
            return Some((Reason::BodyRegex, format!("the body matches {text:?}")));
        }
        if let Some((text, _)) = self.must_match.iter().find(|(_, re)| !re.is_match(body)) {
            return Some((
                Reason::BodyRegex,
                format!("the body does not match {text:?}"),
            ));
        }
        if let Some(valid) = &self.valid_http_versions {
            let version = match response.version() {
                Version::HTTP_10 => "HTTP/1.0",
                Version::HTTP_11 => "HTTP/1.1",
                Version::HTTP_2 => "HTTP/2.0",
                _ => "HTTP/0.9",
            };
            if !valid.iter().any(|v| v == version) {
                return Some((
                    Reason::HttpVersion,
                    format!("the response is {version}, not one of valid_http_versions {valid:?}"),
                ));
            }
        }
        if self.fail_if_ssl && over_tls {
            return Some((
                Reason::Ssl,
                "the final response came over TLS (fail_if_ssl)".into(),
            ));
        }
        if self.fail_if_not_ssl && !over_tls {
            return Some((
                Reason::NotSsl,
                "the final response came over plain HTTP (fail_if_not_ssl)".into(),
            ));
        }
        None
    }
}

/// Notes what the final response's head says, for blackbox_exporter's series.
fn note_head(
    response: &ureq::http::Response<ureq::Body>,
    over_tls: bool,
    result: &mut ProbeResult,
) {
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    result.over_tls = over_tls;
    result.content_length = header(ureq::http::header::CONTENT_LENGTH).and_then(|v| v.parse().ok());
    result.last_modified =
        header(ureq::http::header::LAST_MODIFIED).and_then(client::parse_http_date);
    result.http_version = Some(match response.version() {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2.0",
        Version::HTTP_3 => "3.0",
        _ => "1.1",
    });
    result.unfollowed_redirect = is_followable_redirect(response);
}

/// A redirect a browser (and Go's client) would follow: 301, 302, 303, 307 or 308 with
/// a `Location`.
fn is_followable_redirect(response: &ureq::http::Response<ureq::Body>) -> bool {
    matches!(response.status().as_u16(), 301 | 302 | 303 | 307 | 308)
        && response
            .headers()
            .contains_key(ureq::http::header::LOCATION)
}

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// The first failed header condition, blackbox_exporter's way: a missing header fails
/// unless `allow_missing`; `fail_if_header_matches` fails when any value matches,
/// `fail_if_header_not_matches` when none does. Values are never quoted (they may be
/// cookies); the regexp is.
fn header_failure(
    headers: &HeaderMap,
    must_not: &[HeaderMatch],
    must: &[HeaderMatch],
) -> Option<String> {
    let checks = must_not
        .iter()
        .map(|m| (m, false))
        .chain(must.iter().map(|m| (m, true)));
    for (m, wanted) in checks {
        let values: Vec<&[u8]> = headers
            .get_all(&m.name)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        if values.is_empty() {
            if m.allow_missing {
                continue;
            }
            return Some(format!("header {} is missing", m.name));
        }
        let any = values.iter().any(|v| m.regexp.is_match(v));
        if any != wanted {
            return Some(if wanted {
                format!(
                    "no value of header {} matches {:?}",
                    m.name,
                    m.regexp.as_str()
                )
            } else {
                format!("header {} matches {:?}", m.name, m.regexp.as_str())
            });
        }
    }
    None
}

/// `method`, GET by default.
fn method(spec: &ProbeKeys, ctx: &BuildContext, problems: &mut Vec<Problem>) -> Method {
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

/// `headers`, each a valid HTTP header name and value; values from files are read now
/// (an unreadable file is a problem) and again every run.
fn headers(
    spec: &ProbeKeys,
    ctx: &BuildContext,
    problems: &mut Vec<Problem>,
) -> Vec<(HeaderName, HeaderSource)> {
    let mut headers = Vec::new();
    let Some(h) = &spec.headers else {
        return headers;
    };
    for (name, value) in &h.value {
        let Ok(header) = HeaderName::try_from(name.as_str()) else {
            problems.push(ctx.problem(
                h.referenced,
                format!("header {name:?} is not a valid HTTP header name"),
            ));
            continue;
        };
        match value {
            HeaderValueSpec::Inline(text) => match HeaderValue::try_from(text.as_str()) {
                Ok(v) => headers.push((header, HeaderSource::Inline(v))),
                Err(_) => problems.push(ctx.problem(
                    h.referenced,
                    format!("header {name:?} has a value that is not a valid HTTP header value"),
                )),
            },
            HeaderValueSpec::File(file) => match Reread::open(
                ctx.resolve(&file.value),
                "header value file",
                HEADER_FILE_LIMIT,
                parse_header_file,
            ) {
                Ok(reread) => headers.push((header, HeaderSource::File(reread))),
                Err(e) => problems.push(ctx.problem(
                    file.referenced,
                    format!("header {name:?}: cannot read the file {e}"),
                )),
            },
        }
    }
    headers
}

/// `body` or `body_file` (read now, and again every run).
fn body(spec: &ProbeKeys, ctx: &BuildContext, problems: &mut Vec<Problem>) -> BodySource {
    match (&spec.body, &spec.body_file) {
        (None, None) => BodySource::None,
        (Some(b), None) => BodySource::Inline(Arc::new(b.clone().into_bytes())),
        (Some(_), Some(file)) => {
            problems.push(ctx.problem(file.referenced, "body and body_file cannot both be set"));
            BodySource::None
        }
        (None, Some(file)) => match Reread::open(
            ctx.resolve(&file.value),
            "body file",
            BODY_FILE_LIMIT,
            parse_body_file,
        ) {
            Ok(reread) => BodySource::File(reread),
            Err(e) => {
                problems
                    .push(ctx.problem(file.referenced, format!("cannot read the body file {e}")));
                BodySource::None
            }
        },
    }
}

/// `valid_status_codes`: not empty, each an HTTP status.
fn check_status_codes(spec: &ProbeKeys, ctx: &BuildContext, problems: &mut Vec<Problem>) {
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

/// `valid_http_versions`: not empty, each one of [`HTTP_VERSIONS`].
fn http_versions(
    spec: &ProbeKeys,
    ctx: &BuildContext,
    problems: &mut Vec<Problem>,
) -> Option<Vec<String>> {
    let list = spec.valid_http_versions.as_ref()?;
    if list.value.is_empty() {
        problems.push(ctx.problem(
            list.referenced,
            "valid_http_versions is empty; omit it to accept any version",
        ));
    }
    for v in &list.value {
        if !HTTP_VERSIONS.contains(&v.value.as_str()) {
            problems.push(ctx.problem(
                v.referenced,
                format!(
                    "valid_http_versions: {:?} is not one of {}",
                    v.value,
                    HTTP_VERSIONS.join(", ")
                ),
            ));
        }
    }
    Some(list.value.iter().map(|v| v.value.clone()).collect())
}

/// Compiles a regular expression; a bad one is a problem at its line.
fn regex(
    text: &str,
    at: Location,
    ctx: &BuildContext,
    problems: &mut Vec<Problem>,
) -> Option<Regex> {
    match Regex::new(text) {
        Ok(re) => Some(re),
        Err(e) => {
            // The regex crate's message spans lines; its last line says what is wrong.
            let message = e.to_string();
            let why = message.lines().last().unwrap_or_default().trim();
            problems.push(ctx.problem(at, format!("invalid regular expression {text:?}: {why}")));
            None
        }
    }
}

/// Compiles a list of body regexes.
fn compile(
    list: &[Spanned<String>],
    ctx: &BuildContext,
    problems: &mut Vec<Problem>,
) -> Vec<(String, Regex)> {
    list.iter()
        .filter_map(|r| {
            Some((
                r.value.clone(),
                regex(&r.value, r.referenced, ctx, problems)?,
            ))
        })
        .collect()
}

/// Validates a list of header conditions.
fn header_matches(
    list: &[Spanned<HeaderMatchSpec>],
    ctx: &BuildContext,
    problems: &mut Vec<Problem>,
) -> Vec<HeaderMatch> {
    list.iter()
        .filter_map(|m| {
            let name = HeaderName::try_from(m.value.header.as_str())
                .map_err(|_| {
                    problems.push(ctx.problem(
                        m.referenced,
                        format!("{:?} is not a valid HTTP header name", m.value.header),
                    ))
                })
                .ok();
            let regexp = regex(&m.value.regexp, m.referenced, ctx, problems);
            Some(HeaderMatch {
                name: name?,
                regexp: regexp?,
                allow_missing: m.value.allow_missing,
            })
        })
        .collect()
}

/// `basic_auth` or `bearer_token_file`; the secret files must be readable now.
fn auth(spec: &ProbeKeys, ctx: &BuildContext, problems: &mut Vec<Problem>) -> Auth {
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

/// Maps a transport error to a failure reason: the stage the connection steps noted
/// first, then what ureq says.
fn classify(e: &ureq::Error, trace: &client::Trace) -> Reason {
    if let Some(f) = &trace.failure {
        return match f.stage {
            Stage::Dns => Reason::Dns,
            Stage::Connect => Reason::Connect,
            Stage::Proxy => Reason::Proxy,
            Stage::Tls => Reason::Tls,
            Stage::Timeout => Reason::Timeout,
        };
    }
    match e {
        ureq::Error::Timeout(_) => Reason::Timeout,
        ureq::Error::Io(io) if client::is_timeout(io) => Reason::Timeout,
        ureq::Error::HostNotFound => Reason::Dns,
        ureq::Error::TooManyRedirects | ureq::Error::RedirectFailed => Reason::Redirects,
        ureq::Error::BodyExceedsLimit(_) => Reason::BodyTooLarge,
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => Reason::Tls,
        ureq::Error::ConnectProxyFailed(_) => Reason::Proxy,
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
        assert_eq!(Reason::ALL.len(), 14);
    }

    #[test]
    fn header_conditions_follow_blackbox() {
        let m = |name: &str, re: &str, allow_missing| HeaderMatch {
            name: HeaderName::try_from(name).unwrap(),
            regexp: Regex::new(re).unwrap(),
            allow_missing,
        };
        let mut headers = HeaderMap::new();
        headers.append("x-cache", HeaderValue::from_static("MISS"));
        headers.append("x-cache", HeaderValue::from_static("HIT"));
        assert_eq!(
            header_failure(&headers, &[m("x-cache", "^HIT$", false)], &[]).as_deref(),
            Some("header x-cache matches \"^HIT$\"")
        );
        assert_eq!(
            header_failure(&headers, &[], &[m("x-cache", "^HIT$", false)]),
            None
        );
        assert_eq!(
            header_failure(&headers, &[], &[m("x-cache", "^PASS$", false)]).as_deref(),
            Some("no value of header x-cache matches \"^PASS$\"")
        );
        assert_eq!(
            header_failure(&headers, &[m("x-other", ".", false)], &[]).as_deref(),
            Some("header x-other is missing")
        );
        assert_eq!(
            header_failure(&headers, &[], &[m("x-other", ".", true)]),
            None
        );
    }

    #[test]
    fn header_files_hide_their_value_and_drop_trailing_newlines() {
        let v = parse_header_file(b"s3cret-key\r\n").unwrap();
        assert_eq!(v.0.as_bytes(), b"s3cret-key");
        assert!(v.0.is_sensitive());
        assert!(!format!("{v:?}").contains("s3cret"));
        let e = parse_header_file(b"s3cret\nkey").unwrap_err();
        assert_eq!(e, "not a valid HTTP header value (control characters?)");
    }
}
