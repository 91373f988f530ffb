//! Outbound HTTP for every kind: ureq agents whose connections go through sonde's own
//! resolver and connector chain, so every kind that speaks HTTP (http, dockerhub,
//! registry, kubernetes_images) accepts the same connection keys and gives the same
//! account of what happened.
//!
//! The connection keys ([`ConnectionKeys`]) are declared once here and taken out of a
//! kind's mapping with [`crate::keys::split`]: `tls:` (roots, pinned certificates, a
//! client certificate re-read when its files change, TLS versions, SNI), an http://
//! proxy (explicit or from `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`) and the IP family.
//!
//! Every connection goes resolver -> TCP -> proxy (CONNECT for https targets, the
//! absolute form for http ones) -> TLS -> trace. Each step notes what it did in a
//! [`Trace`] that [`send`] returns with the response: per-hop timestamps for the
//! resolve/connect/tls/processing/transfer phases, the TLS version, cipher and
//! certificates, the IP family, and, when it failed, the stage and the cause in words a
//! person can act on ("certificate expired at 2026-11-20T00:00:00Z"). ureq is blocking:
//! the connection and handshake run on the thread that sends, which is how the steps
//! reach the trace (a thread-local that only [`send`] resets and takes).
//!
//! ureq's own proxy support is not used: it tunnels every target through CONNECT, and
//! many proxies refuse CONNECT to port 80, where the absolute form is what they expect.

mod connect;
mod proxy;
mod verify;

use std::cell::RefCell;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::Deserialize;
use serde::de::MapAccess;
use serde_saphyr::Location;
use ureq::Error;
use ureq::unversioned::transport::Connector;

use crate::keys::SharedKeys;
use crate::problem::Spanned;
use crate::tls;
use crate::units::format_duration;

pub use verify::CertInfo;

/// The `tls:` keys shared by kinds that speak HTTPS.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// PEM file of CA certificates that replace the built-in roots; a certificate in it
    /// that is exactly the server's is trusted as is (pinned).
    #[serde(default)]
    pub ca_file: Option<Spanned<String>>,
    /// PEM client certificate (chain), sent when the server asks for one.
    #[serde(default)]
    pub cert_file: Option<Spanned<String>>,
    /// PEM private key of `cert_file` (PKCS#8, RSA or EC).
    #[serde(default)]
    pub key_file: Option<Spanned<String>>,
    /// Lowest TLS version offered: `TLS12` (default) or `TLS13`.
    #[serde(default)]
    pub min_version: Option<Spanned<String>>,
    /// Highest TLS version offered: `TLS12` or `TLS13` (default).
    #[serde(default)]
    pub max_version: Option<Spanned<String>>,
    /// Accept any certificate (the chain is still recorded).
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Name used for SNI and verification instead of the URL's host.
    #[serde(default)]
    pub server_name: Option<Spanned<String>>,
}

/// A URL as written in the config whose `Debug` hides a password in its userinfo.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct UrlText(pub String);

impl fmt::Debug for UrlText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_userinfo(&self.0))
    }
}

/// The connection keys of every kind that speaks HTTP, taken out of the kind's mapping
/// by [`crate::keys::split`] (see [`SharedKeys`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConnectionKeys {
    /// `tls`
    pub tls: Option<TlsSpec>,
    /// `proxy_url`: an http:// proxy, optionally with `user:password@`.
    pub proxy_url: Option<Spanned<UrlText>>,
    /// `proxy_password_file`: the proxy password, re-read for every connection.
    pub proxy_password_file: Option<Spanned<String>>,
    /// `proxy_from_environment`: use `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY`.
    pub proxy_from_environment: Option<Spanned<bool>>,
    /// `no_proxy`: hosts `proxy_url` is not used for (the `NO_PROXY` syntax).
    pub no_proxy: Option<Spanned<String>>,
    /// `ip_protocol`: `auto` (default), `ip4` or `ip6`.
    pub ip_protocol: Option<Spanned<String>>,
    /// `ip_protocol_fallback`: use the other family when the name has no address of
    /// the chosen one (default true).
    pub ip_protocol_fallback: Option<Spanned<bool>>,
}

impl SharedKeys for ConnectionKeys {
    fn take<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        match key {
            "tls" => self.tls = map.next_value()?,
            "proxy_url" => self.proxy_url = map.next_value()?,
            "proxy_password_file" => self.proxy_password_file = map.next_value()?,
            "proxy_from_environment" => self.proxy_from_environment = map.next_value()?,
            "no_proxy" => self.no_proxy = map.next_value()?,
            "ip_protocol" => self.ip_protocol = map.next_value()?,
            "ip_protocol_fallback" => self.ip_protocol_fallback = map.next_value()?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

impl ConnectionKeys {
    /// The key names [`SharedKeys::take`] takes, for unknown-key messages.
    pub const NAMES: [&'static str; 7] = [
        "tls",
        "proxy_url",
        "proxy_password_file",
        "proxy_from_environment",
        "no_proxy",
        "ip_protocol",
        "ip_protocol_fallback",
    ];

    /// Validates the keys (files relative to `base`) of check `check`; every problem
    /// comes with the location of its key.
    pub fn load(&self, base: &Path, check: &str) -> Result<Connection, Vec<(Location, String)>> {
        let mut problems = Vec::new();
        let tls = match &self.tls {
            None => Some(TlsSettings::webpki()),
            Some(spec) => TlsSettings::load_into(spec, base, &mut problems),
        };
        let route = proxy::Route::load(self, base, check, &mut problems);
        let ip = IpPolicy::load(self, &mut problems);
        match (tls, route) {
            (Some(tls), Some(route)) if problems.is_empty() => Ok(Connection {
                tls,
                route: Arc::new(route),
                ip,
            }),
            _ => Err(problems),
        }
    }
}

/// Which addresses of a name are tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpProtocol {
    /// Every address, in the order the system resolver gives them.
    Auto,
    /// IPv4 addresses only.
    Ip4,
    /// IPv6 addresses only.
    Ip6,
}

/// `ip_protocol` and `ip_protocol_fallback`, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpPolicy {
    /// The family wanted.
    pub protocol: IpProtocol,
    /// Whether a name without an address of that family may use the other one.
    pub fallback: bool,
}

impl IpPolicy {
    fn load(keys: &ConnectionKeys, problems: &mut Vec<(Location, String)>) -> IpPolicy {
        let protocol = match &keys.ip_protocol {
            None => IpProtocol::Auto,
            Some(p) => match p.value.as_str() {
                "auto" => IpProtocol::Auto,
                "ip4" => IpProtocol::Ip4,
                "ip6" => IpProtocol::Ip6,
                other => {
                    problems.push((
                        p.referenced,
                        format!("ip_protocol {other:?}: use auto, ip4 or ip6"),
                    ));
                    IpProtocol::Auto
                }
            },
        };
        IpPolicy {
            protocol,
            fallback: keys.ip_protocol_fallback.as_ref().is_none_or(|f| f.value),
        }
    }

    /// The addresses to try, in order; `Err` says why there is none of the family.
    fn select(self, host: &str, all: Vec<IpAddr>) -> Result<Vec<IpAddr>, String> {
        let (wanted, name) = match self.protocol {
            IpProtocol::Auto => return Ok(all),
            IpProtocol::Ip4 => (true, "IPv4"),
            IpProtocol::Ip6 => (false, "IPv6"),
        };
        let (mine, other): (Vec<IpAddr>, Vec<IpAddr>) =
            all.into_iter().partition(|a| a.is_ipv4() == wanted);
        if !mine.is_empty() {
            Ok(mine)
        } else if self.fallback && !other.is_empty() {
            Ok(other)
        } else {
            Err(format!(
                "{host} has no {name} address (ip_protocol {}, ip_protocol_fallback {})",
                if wanted { "ip4" } else { "ip6" },
                self.fallback
            ))
        }
    }
}

/// The connection keys, validated: what every connection of an agent does.
#[derive(Clone, Debug)]
pub struct Connection {
    tls: TlsSettings,
    route: Arc<proxy::Route>,
    ip: IpPolicy,
}

impl Connection {
    /// Straight to the target with these TLS settings, any IP family.
    pub fn direct(tls: TlsSettings) -> Connection {
        Connection {
            tls,
            route: Arc::new(proxy::Route::default()),
            ip: IpPolicy {
                protocol: IpProtocol::Auto,
                fallback: true,
            },
        }
    }
}

/// What happened while one request connected; see the module documentation.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    /// Name resolution failed.
    pub dns_failed: bool,
    /// The TCP connection of the latest hop was established.
    pub connected: bool,
    /// The TLS handshake of the latest hop (or the TLS session after it) failed.
    pub tls_failed: bool,
    /// Earliest NotAfter (Unix seconds) of the chain the latest TLS hop presented.
    pub cert_not_after: Option<i64>,
    /// Why the latest hop failed, when a connection step knows.
    pub failure: Option<Failure>,
    /// TLS facts of the latest hop, when it spoke TLS.
    pub tls: Option<TlsFacts>,
    /// IP version (4 or 6) of the address the latest hop connected to.
    pub ip_protocol: Option<u8>,
    /// The address the latest hop connected to; before it connected, the first address
    /// it was going to try (blackbox_exporter's `probe_ip_addr_hash` is of this one).
    pub ip_addr: Option<IpAddr>,
    /// Whether the latest hop went through a proxy.
    pub via_proxy: bool,
    /// One entry per connection made (a redirect adds one).
    hops: Vec<Hop>,
    /// The time the exchange was given, for messages.
    budget: Duration,
}

/// Where a connection failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Name resolution.
    Dns,
    /// The TCP connection to the target.
    Connect,
    /// The proxy: unreachable, or it refused the tunnel.
    Proxy,
    /// The TLS handshake, certificate verification or the TLS session.
    Tls,
    /// The time ran out.
    Timeout,
}

/// A failure a connection step saw, with its cause in words (never a secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Where it failed.
    pub stage: Stage,
    /// Why, e.g. "certificate expired at 2026-11-20T00:00:00Z".
    pub cause: String,
}

/// What a TLS hop negotiated and was shown.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TlsFacts {
    /// `TLS 1.2` or `TLS 1.3`, once the handshake completed.
    pub version: Option<&'static str>,
    /// IANA name of the cipher suite, once the handshake completed.
    pub cipher: Option<String>,
    /// The certificate the server presented, also when verification failed.
    pub leaf: Option<CertInfo>,
    /// Earliest NotAfter of the chain that verification built (leaf to trust anchor);
    /// `None` when nothing was verified.
    pub verified_not_after: Option<i64>,
}

/// When each step of one connection happened.
#[derive(Clone, Copy, Debug)]
struct Hop {
    start: Instant,
    dns_done: Option<Instant>,
    connect_done: Option<Instant>,
    tls_start: Option<Instant>,
    tls_done: Option<Instant>,
    got_conn: Option<Instant>,
    first_byte: Option<Instant>,
}

/// Time spent per phase, summed over the hops of a request (blackbox_exporter's
/// `probe_http_duration_seconds{phase}`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Phases {
    /// Name resolution (of the proxy's name when a proxy is used).
    pub resolve: Duration,
    /// TCP connection, and the CONNECT exchange through a proxy.
    pub connect: Duration,
    /// TLS handshake.
    pub tls: Duration,
    /// From the connection being ready to the first byte of the response.
    pub processing: Duration,
    /// From the first byte of the final response to the end of its body.
    pub transfer: Duration,
}

impl Phases {
    /// The phases with their label values, in blackbox_exporter's order.
    pub fn labelled(&self) -> [(&'static str, Duration); 5] {
        [
            ("resolve", self.resolve),
            ("connect", self.connect),
            ("tls", self.tls),
            ("processing", self.processing),
            ("transfer", self.transfer),
        ]
    }
}

impl Trace {
    /// The phases of every hop; `end` (when the final body was read) adds the
    /// transfer of the final hop.
    pub fn phases(&self, end: Option<Instant>) -> Phases {
        let span = |from: Option<Instant>, to: Option<Instant>| match (from, to) {
            (Some(a), Some(b)) => b.saturating_duration_since(a),
            _ => Duration::ZERO,
        };
        let mut p = Phases::default();
        for (i, hop) in self.hops.iter().enumerate() {
            p.resolve += span(Some(hop.start), hop.dns_done);
            p.connect += span(hop.dns_done, hop.connect_done);
            p.tls += span(hop.tls_start, hop.tls_done);
            p.processing += span(hop.got_conn, hop.first_byte);
            if i + 1 == self.hops.len() {
                p.transfer += span(hop.first_byte, end);
            }
        }
        p
    }
}

thread_local! {
    /// The trace of the request this thread is sending; only [`send`] resets and takes it.
    static TRACE: RefCell<Trace> = RefCell::new(Trace::default());
}

fn with_trace<R>(f: impl FnOnce(&mut Trace) -> R) -> R {
    TRACE.with(|t| f(&mut t.borrow_mut()))
}

/// Notes a failure of the latest hop (the first cause noted wins: it is the closest to
/// what went wrong).
fn fail(stage: Stage, cause: String) {
    with_trace(|t| {
        match stage {
            Stage::Dns => t.dns_failed = true,
            Stage::Tls => t.tls_failed = true,
            _ => {}
        }
        if t.failure.is_none() {
            t.failure = Some(Failure { stage, cause });
        }
    });
}

/// Sets a timestamp of the latest hop.
fn mark(f: impl FnOnce(&mut Hop)) {
    with_trace(|t| {
        if let Some(hop) = t.hops.last_mut() {
            f(hop);
        }
    });
}

/// How long the exchange was given, for "did not finish within 3s": rounded up to a
/// tenth of a second, since the run's own bookkeeping takes a little of the timeout.
fn budget() -> String {
    with_trace(|t| format_duration(round_up(t.budget)))
}

fn round_up(d: Duration) -> Duration {
    if d < Duration::from_secs(1) {
        return d;
    }
    let tenths = d.as_millis().div_ceil(100);
    Duration::from_millis(u64::try_from(tenths * 100).unwrap_or(u64::MAX))
}

/// One request's outcome, with what happened while it connected.
#[derive(Debug)]
pub struct Exchange {
    /// The response head (the body is left to the caller, who must cap what it reads),
    /// or why there is none.
    pub response: Result<ureq::http::Response<ureq::Body>, Error>,
    /// DNS, connect and TLS facts of the latest hop, and every hop's timestamps.
    pub trace: Trace,
}

/// Sends `request` with `agent`, the whole exchange bounded by `budget`.
pub fn send(
    agent: &ureq::Agent,
    request: ureq::http::Request<impl ureq::AsSendBody>,
    budget: Duration,
) -> Exchange {
    let request = agent
        .configure_request(request)
        .timeout_global(Some(budget))
        .build();
    TRACE.with(|t| {
        *t.borrow_mut() = Trace {
            budget,
            ..Trace::default()
        }
    });
    let response = agent.run(request);
    let trace = TRACE.with(|t| std::mem::take(&mut *t.borrow_mut()));
    Exchange { response, trace }
}

/// A failure noted after [`send`] returned, while the caller read the body (a TLS
/// session error, say); taken once.
pub fn late_failure() -> Option<Failure> {
    with_trace(|t| t.failure.take())
}

/// Recovers a ureq error from the `io::Error` a body reader returns.
pub fn error_from_io(e: std::io::Error) -> Error {
    if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        match e.into_inner().map(|inner| inner.downcast::<Error>()) {
            Some(Ok(inner)) => *inner,
            _ => Error::Io(std::io::Error::other("body read failed")),
        }
    } else {
        Error::Io(e)
    }
}

/// Why a request got no response, in words a person can act on (never a credential:
/// ureq's errors carry no header values, and proxy URLs are named without userinfo).
pub fn describe(e: &Error, trace: &Trace, target: &str) -> String {
    format!("{target}: {}", cause(e, trace))
}

/// [`describe`] without the target.
pub fn cause(e: &Error, trace: &Trace) -> String {
    if let Some(f) = &trace.failure {
        return f.cause.clone();
    }
    match e {
        Error::Timeout(_) => format!(
            "no complete answer within {}",
            format_duration(round_up(trace.budget))
        ),
        Error::Io(io) if is_timeout(io) => format!(
            "no complete answer within {}",
            format_duration(round_up(trace.budget))
        ),
        Error::HostNotFound => "the host name does not resolve".into(),
        Error::TooManyRedirects => "too many redirects".into(),
        Error::RedirectFailed => "a redirect could not be followed".into(),
        Error::Io(io) => io_words(io),
        other => other.to_string(),
    }
}

/// Whether an I/O error is a timeout (ureq's own, or the socket's).
pub fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    ) || e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Error>())
        .is_some_and(|inner| matches!(inner, Error::Timeout(_)))
}

/// An I/O error in a few words ("connection refused", not "Connection refused (os
/// error 111)").
fn io_words(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset by the peer".into(),
        ConnectionAborted => "connection aborted".into(),
        UnexpectedEof => "the peer closed the connection".into(),
        HostUnreachable => "host unreachable".into(),
        NetworkUnreachable => "network unreachable".into(),
        AddrNotAvailable => "address not available".into(),
        BrokenPipe => "the peer closed the connection (broken pipe)".into(),
        _ => match e.get_ref().and_then(|i| i.downcast_ref::<Error>()) {
            Some(inner) => inner.to_string(),
            None => e.to_string(),
        },
    }
}

/// Everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`).
const NOT_UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a path segment or query value: every byte but the unreserved ones.
pub fn percent_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, NOT_UNRESERVED).to_string()
}

/// A URL as it may appear in a message: whatever comes before the last `@` ahead of
/// the query is taken for userinfo and shown as `***`. Meant for URLs that may not
/// parse, whose password may hold a raw `/`, so it hides too much rather than too
/// little (`http://h/@scope/pkg` reads `http://***@scope/pkg`).
pub fn redact_userinfo(text: &str) -> String {
    let (scheme, rest) = text.split_once("://").unwrap_or(("", text));
    let before_query = rest.find(['?', '#']).unwrap_or(rest.len());
    match rest[..before_query].rfind('@') {
        Some(at) if scheme.is_empty() => format!("***{}", &rest[at..]),
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => text.to_string(),
    }
}

/// Whether the port an authority names, if any, is a port: the `http` crate reads
/// `host:99999` as a host without a port, which would mean port 80 or 443.
pub fn port_in_range(authority: &str) -> bool {
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let after_ipv6 = host_port
        .rsplit_once(']')
        .map_or(host_port, |(_, rest)| rest);
    match after_ipv6.rsplit_once(':') {
        Some((_, port)) => port.is_empty() || port.parse::<u16>().is_ok(),
        None => true,
    }
}

/// The `Authorization` value of HTTP Basic authentication.
pub fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())
    )
}

/// How an agent should behave.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// Redirects to follow; 0 returns the 3xx response itself.
    pub max_redirects: u32,
    /// Keep connections for reuse (off for probes: each probe measures a fresh one).
    pub pool: bool,
    /// Largest response head accepted (32 KiB by default); a larger one fails the
    /// request.
    pub max_header_size: usize,
    /// When `max_redirects` runs out, return the last 3xx response instead of an error
    /// (probes report its status and judge the loop themselves).
    pub keep_last_redirect: bool,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            max_redirects: 10,
            pool: true,
            max_header_size: 32 << 10,
            keep_last_redirect: false,
        }
    }
}

/// TLS settings resolved from a [`TlsSpec`]: certificates loaded, names parsed.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    roots: Option<Vec<CertificateDer<'static>>>,
    insecure: bool,
    server_name: Option<ServerName<'static>>,
    /// Files re-read as they change (`tls.cert_file`), or a pair read once (a
    /// kubeconfig's `client-certificate-data`).
    client_cert: Option<Arc<dyn ResolvesClientCert>>,
    /// Lowest and highest version offered (12 or 13).
    versions: (u8, u8),
}

impl TlsSettings {
    /// Loads the files (relative to `base`) and validates the names and versions; the
    /// first problem with its location.
    pub fn load(
        spec: &TlsSpec,
        base: &Path,
    ) -> Result<TlsSettings, (serde_saphyr::Location, String)> {
        let mut problems = Vec::new();
        match Self::load_into(spec, base, &mut problems) {
            Some(settings) if problems.is_empty() => Ok(settings),
            _ => Err(problems
                .into_iter()
                .next()
                .unwrap_or((Location::UNKNOWN, "invalid tls settings".into()))),
        }
    }

    fn load_into(
        spec: &TlsSpec,
        base: &Path,
        problems: &mut Vec<(Location, String)>,
    ) -> Option<TlsSettings> {
        let roots = spec.ca_file.as_ref().and_then(|file| {
            tls::read_certificates(&base.join(&file.value))
                .map_err(|e| problems.push((file.referenced, format!("tls.ca_file {e}"))))
                .ok()
        });
        let client_cert = match (&spec.cert_file, &spec.key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                verify::ClientCertFiles::open(base.join(&cert.value), base.join(&key.value))
                    .map_err(|e| problems.push((cert.referenced, e)))
                    .ok()
                    .map(|files| Arc::new(files) as Arc<dyn ResolvesClientCert>)
            }
            (Some(cert), None) => {
                problems.push((cert.referenced, "tls.cert_file needs tls.key_file".into()));
                None
            }
            (None, Some(key)) => {
                problems.push((key.referenced, "tls.key_file needs tls.cert_file".into()));
                None
            }
        };
        let mut version = |v: &Option<Spanned<String>>, key: &str, default: u8| match v {
            None => Some(default),
            Some(v) => tls::parse_version(&v.value)
                .map_err(|e| problems.push((v.referenced, format!("tls.{key}: {e}"))))
                .ok(),
        };
        let min = version(&spec.min_version, "min_version", 12);
        let max = version(&spec.max_version, "max_version", 13);
        if let (Some(lo), Some(hi)) = (min, max)
            && lo > hi
            && let Some(at) = spec.min_version.as_ref()
        {
            problems.push((
                at.referenced,
                "tls.min_version is above tls.max_version".into(),
            ));
        }
        let server_name = spec.server_name.as_ref().and_then(|name| {
            ServerName::try_from(name.value.clone())
                .map_err(|_| {
                    problems.push((
                        name.referenced,
                        format!(
                            "tls.server_name {:?} is not a valid DNS name or IP",
                            name.value
                        ),
                    ))
                })
                .ok()
        });
        Some(TlsSettings {
            roots,
            insecure: spec.insecure_skip_verify,
            server_name,
            client_cert,
            versions: (min?, max?),
        })
    }

    /// Built-in WebPKI roots, verification on.
    pub fn webpki() -> TlsSettings {
        TlsSettings {
            roots: None,
            insecure: false,
            server_name: None,
            client_cert: None,
            versions: (12, 13),
        }
    }

    /// Settings from material already read (a kubeconfig's CA data, say): `roots`
    /// replace the built-in ones when given.
    pub fn from_parts(
        roots: Option<Vec<CertificateDer<'static>>>,
        insecure: bool,
        server_name: Option<ServerName<'static>>,
    ) -> TlsSettings {
        TlsSettings {
            roots,
            insecure,
            server_name,
            ..TlsSettings::webpki()
        }
    }

    /// These settings, presenting a client certificate chain and key already read to
    /// servers that ask for one; an error when the key does not fit the certificate.
    pub fn with_client_cert(
        self,
        chain: Vec<CertificateDer<'static>>,
        key: rustls::pki_types::PrivateKeyDer<'static>,
    ) -> Result<TlsSettings, String> {
        let provider = rustls::crypto::ring::default_provider();
        let pair = rustls::sign::CertifiedKey::from_der(chain, key, &provider)
            .map_err(|e| format!("the client certificate and key do not make a pair: {e}"))?;
        Ok(TlsSettings {
            client_cert: Some(Arc::new(FixedClientCert(Arc::new(pair)))),
            ..self
        })
    }
}

/// A client certificate read once, presented to every server that asks.
struct FixedClientCert(Arc<rustls::sign::CertifiedKey>);

impl fmt::Debug for FixedClientCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FixedClientCert(<key redacted>)")
    }
}

impl ResolvesClientCert for FixedClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Builds an agent with these TLS settings that connects straight to its targets.
pub fn agent(tls: &TlsSettings, options: &AgentOptions) -> Result<ureq::Agent, String> {
    agent_for(&Connection::direct(tls.clone()), options)
}

/// Builds an agent whose connections go through sonde's resolver and connector chain
/// with the check's connection keys.
pub fn agent_for(conn: &Connection, options: &AgentOptions) -> Result<ureq::Agent, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = verify::Verifier::new(&conn.tls, Arc::clone(&provider))?;
    let versions = tls::versions(conn.tls.versions.0, conn.tls.versions.1)?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut client_config = match &conn.tls.client_cert {
        Some(resolver) => builder.with_client_cert_resolver(Arc::clone(resolver)),
        None => builder.with_no_client_auth(),
    };
    // A resumed session skips certificate verification, so the chain (and its NotAfter)
    // would be missing from every probe after the first: always do a full handshake.
    client_config.resumption = rustls::client::Resumption::disabled();
    // Said out loud so that a server that speaks only HTTP/2 fails the handshake with
    // a clear alert instead of answering a request sonde cannot read.
    client_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = ()
        .chain(connect::TcpStep)
        .chain(connect::ProxyStep {
            route: Arc::clone(&conn.route),
        })
        .chain(connect::TlsStep {
            config: Arc::new(client_config),
            server_name: conn.tls.server_name.clone(),
            versions: conn.tls.versions,
            client_cert: conn.tls.client_cert.is_some(),
            ca_file: conn.tls.roots.is_some(),
        })
        .chain(connect::TraceStep);
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        // Proxies are the connector chain's business (see the module documentation).
        .proxy(None)
        .max_redirects(options.max_redirects)
        .max_redirects_will_error(options.max_redirects > 0 && !options.keep_last_redirect)
        .save_redirect_history(true)
        .max_idle_connections(if options.pool { 10 } else { 0 })
        .max_idle_connections_per_host(if options.pool { 3 } else { 0 })
        .max_response_header_size(options.max_header_size)
        // ureq zeroes both buffers of every new connection (128 KiB each by default):
        // for a probe of a local target that was the largest single cost (a sixth of
        // the CPU in a profile of 200 probes a second). The input buffer must hold a
        // whole response head; requests are small and bodies are sent in pieces.
        .input_buffer_size(options.max_header_size + (4 << 10))
        .output_buffer_size(16 << 10)
        .user_agent(concat!("sonde/", env!("CARGO_PKG_VERSION")))
        .build();
    let resolver = connect::SondeResolver {
        route: Arc::clone(&conn.route),
        ip: conn.ip,
    };
    Ok(ureq::Agent::with_parts(config, connector, resolver))
}

/// The NotAfter of an X.509 certificate in DER, as Unix seconds.
pub fn not_after(cert: &[u8]) -> Option<i64> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    Some(parsed.validity().not_after.timestamp())
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`: `Retry-After`, `Last-Modified`) as
/// Unix seconds.
pub fn parse_http_date(value: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc2822;
    let at = time::OffsetDateTime::parse(value, &Rfc2822).ok()?;
    value.ends_with(" GMT").then(|| at.unix_timestamp())
}

/// Unix seconds as RFC 3339 UTC without fractions (`2026-11-20T00:00:00Z`).
pub fn rfc3339(unix: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("@{unix}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix_day(y: i32, m: u8, d: u8) -> i64 {
        let month = time::Month::try_from(m).unwrap();
        time::Date::from_calendar_date(y, month, d)
            .unwrap()
            .midnight()
            .assume_utc()
            .unix_timestamp()
    }

    #[test]
    fn ports_past_65535_are_not_ports() {
        for ok in [
            "h",
            "h:1",
            "h:65535",
            "u:p@h:443",
            "[::1]:9090",
            "[::1]",
            "h:",
        ] {
            assert!(port_in_range(ok), "{ok}");
        }
        for bad in ["h:65536", "h:99999", "u:p@h:99999", "[::1]:70000", "h:8x"] {
            assert!(!port_in_range(bad), "{bad}");
        }
    }

    #[test]
    fn userinfo_is_hidden_in_urls_named_by_messages() {
        for (text, shown) in [
            ("http://u:p@h:1/x", "http://***@h:1/x"),
            ("https://h/health?next=a@b", "https://h/health?next=a@b"),
            ("http://u:p/q@h/", "http://***@h/"),
            ("u:p@h", "***@h"),
            ("http://h:9091", "http://h:9091"),
        ] {
            assert_eq!(redact_userinfo(text), shown, "{text}");
        }
    }

    #[test]
    fn not_after_is_read_from_generated_certificates() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 7, 9);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(not_after(cert.der()), Some(unix_day(2031, 7, 9)));
        // GeneralizedTime is used from 2050 on.
        params.not_after = rcgen::date_time_ymd(2061, 1, 2);
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(not_after(cert.der()), Some(unix_day(2061, 1, 2)));
        assert_eq!(rfc3339(unix_day(2026, 11, 20)), "2026-11-20T00:00:00Z");
    }

    #[test]
    fn garbage_never_panics() {
        assert_eq!(not_after(&[]), None);
        assert_eq!(not_after(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(not_after(&[0x30, 0x03, 0x30, 0x01, 0x00]), None);
        let mut seed = 0x1234_5678u32;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                })
                .collect();
            let _ = not_after(&bytes);
            let _ = verify::CertInfo::of(&bytes);
        }
    }

    #[test]
    fn ip_policies_choose_a_family_and_fall_back_only_when_allowed() {
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        let v6: IpAddr = "::1".parse().unwrap();
        let policy = |protocol, fallback| IpPolicy { protocol, fallback };
        let both = vec![v6, v4];
        assert_eq!(
            policy(IpProtocol::Auto, true).select("h", both.clone()),
            Ok(both.clone())
        );
        assert_eq!(
            policy(IpProtocol::Ip4, false).select("h", both.clone()),
            Ok(vec![v4])
        );
        assert_eq!(
            policy(IpProtocol::Ip6, false).select("h", both),
            Ok(vec![v6])
        );
        assert_eq!(
            policy(IpProtocol::Ip6, true).select("h", vec![v4]),
            Ok(vec![v4])
        );
        let e = policy(IpProtocol::Ip6, false)
            .select("h", vec![v4])
            .unwrap_err();
        assert_eq!(
            e,
            "h has no IPv6 address (ip_protocol ip6, ip_protocol_fallback false)"
        );
    }

    #[test]
    fn phases_sum_over_hops_and_transfer_is_the_final_hops() {
        let t0 = Instant::now();
        let at = |ms: u64| Some(t0 + Duration::from_millis(ms));
        let hop = |base: u64, tls: bool| Hop {
            start: t0 + Duration::from_millis(base),
            dns_done: at(base + 1),
            connect_done: at(base + 3),
            tls_start: if tls { at(base + 3) } else { None },
            tls_done: if tls { at(base + 7) } else { None },
            got_conn: at(base + 7),
            first_byte: at(base + 17),
        };
        let trace = Trace {
            hops: vec![hop(0, true), hop(100, false)],
            ..Trace::default()
        };
        let p = trace.phases(at(150));
        assert_eq!(p.resolve, Duration::from_millis(2));
        assert_eq!(p.connect, Duration::from_millis(4));
        assert_eq!(p.tls, Duration::from_millis(4));
        assert_eq!(p.processing, Duration::from_millis(20));
        assert_eq!(p.transfer, Duration::from_millis(33));
        assert_eq!(Trace::default().phases(at(5)), Phases::default());
    }
}
