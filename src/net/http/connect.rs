//! The steps of every connection, in the order ureq runs them: the resolver, then the
//! connector chain TCP -> proxy -> TLS -> trace. Each step notes its timestamps and,
//! when it fails, its stage and cause in the thread's [`super::Trace`].

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, TcpConnector,
    Transport, TransportAdapter,
};
use ureq::{Error, Timeout};

use super::proxy::{self, Proxy, Route};
use super::verify::{self, Context};
use super::{Hop, IpPolicy, Stage, budget, fail, io_words, is_timeout, mark, with_trace};

/// Most hops one trace keeps (redirects are capped well below).
const MAX_HOPS: usize = 32;

/// Largest response head a proxy may send to CONNECT.
const MAX_CONNECT_HEAD: usize = 16 << 10;

/// The remaining time of a step, capped so "never" stays a number.
fn remaining(timeout: &NextTimeout) -> Duration {
    (*timeout.after).min(Duration::from_secs(3600))
}

// ---------------------------------------------------------------------------------
// Resolver

/// Resolves the target, or the proxy's name when the target goes through one; starts
/// a new hop of the trace. `localhost` and `*.localhost` are `::1` and `127.0.0.1`
/// without asking anyone (RFC 6761 §6.3, as curl does).
#[derive(Debug)]
pub(super) struct SondeResolver {
    pub route: Arc<Route>,
    pub ip: IpPolicy,
}

impl Resolver for SondeResolver {
    fn resolve(
        &self,
        uri: &Uri,
        _config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, Error> {
        let via = self.route.proxy_for(uri);
        with_trace(|t| {
            if t.hops.len() < MAX_HOPS {
                t.hops.push(Hop {
                    start: Instant::now(),
                    dns_done: None,
                    connect_done: None,
                    tls_start: None,
                    tls_done: None,
                    got_conn: None,
                    first_byte: None,
                });
            }
            t.connected = false;
            t.tls = None;
            t.cert_not_after = None;
            t.ip_protocol = None;
            t.ip_addr = None;
            t.failure = None;
            t.via_proxy = via.is_some();
        });
        let (host, port) = match via {
            Some(p) => (p.host.clone(), p.port),
            None => proxy::host_port(uri)
                .ok_or_else(|| Error::BadUri(format!("{uri}: no host or unknown scheme")))?,
        };
        let stage = if via.is_some() {
            Stage::Proxy
        } else {
            Stage::Dns
        };
        let what = match via {
            Some(p) => format!("the proxy's host {}", p.host),
            None => host.clone(),
        };
        let all = match lookup(&host, port, remaining(&timeout)) {
            Ok(all) => all,
            Err(Lookup::TimedOut) => {
                fail(
                    Stage::Timeout,
                    format!("resolving {what} did not finish within {}", budget()),
                );
                return Err(Error::Timeout(timeout.reason));
            }
            Err(Lookup::Failed(why)) => {
                fail(stage, format!("cannot resolve {what}: {why}"));
                return Err(Error::HostNotFound);
            }
        };
        let chosen = match self.ip.select(&host, all) {
            Ok(chosen) => chosen,
            Err(why) => {
                fail(stage, why);
                return Err(Error::HostNotFound);
            }
        };
        with_trace(|t| t.ip_addr = chosen.first().copied());
        let mut out = self.empty();
        for ip in chosen.into_iter().take(16) {
            out.push(SocketAddr::new(ip, port));
        }
        mark(|h| h.dns_done = Some(Instant::now()));
        Ok(out)
    }
}

enum Lookup {
    TimedOut,
    Failed(String),
}

/// The addresses of `host`, in the system resolver's order, without repeats.
fn lookup(host: &str, port: u16, wait: Duration) -> Result<Vec<IpAddr>, Lookup> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let lower = host.trim_end_matches('.').to_ascii_lowercase();
    if lower == "localhost" || lower.ends_with(".localhost") {
        return Ok(vec![
            IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            IpAddr::from(std::net::Ipv4Addr::LOCALHOST),
        ]);
    }
    // getaddrinfo cannot be interrupted: it runs on a small thread of its own that is
    // abandoned (and ends on its own) when the time is up.
    let (tx, rx) = mpsc::sync_channel(1);
    let name = format!("{host}:{port}");
    std::thread::Builder::new()
        .name("sonde-dns".into())
        .stack_size(64 << 10)
        .spawn(move || {
            let _ = tx.send(name.to_socket_addrs().map(Iterator::collect::<Vec<_>>));
        })
        .map_err(|e| Lookup::Failed(format!("cannot start a resolver thread: {e}")))?;
    match rx.recv_timeout(wait) {
        Ok(Ok(addrs)) => {
            let mut ips: Vec<IpAddr> = Vec::new();
            for a in addrs {
                if !ips.contains(&a.ip()) {
                    ips.push(a.ip());
                }
            }
            if ips.is_empty() {
                Err(Lookup::Failed("no address".into()))
            } else {
                Ok(ips)
            }
        }
        Ok(Err(e)) => Err(Lookup::Failed(e.to_string())),
        Err(_) => Err(Lookup::TimedOut),
    }
}

// ---------------------------------------------------------------------------------
// TCP

/// Connects to the resolved addresses in turn (half the time left for each but the
/// last) with ureq's TCP connector, one address at a time so that the trace knows
/// which family connected and why each address failed.
#[derive(Debug)]
pub(super) struct TcpStep;

impl<In: Transport> Connector<In> for TcpStep {
    type Out = Either<In, Box<dyn Transport>>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, Error> {
        if let Some(transport) = chained {
            return Ok(Some(Either::A(transport)));
        }
        let via_proxy = with_trace(|t| t.via_proxy);
        let deadline = Instant::now() + remaining(&details.timeout);
        let mut failures: Vec<(SocketAddr, Error)> = Vec::new();
        let count = details.addrs.len();
        for (i, addr) in details.addrs.iter().enumerate() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let share = if i + 1 < count { left / 2 } else { left };
            let mut one = details.resolver.empty();
            one.push(*addr);
            let single = ConnectionDetails {
                uri: details.uri,
                addrs: one,
                config: details.config,
                request_level: details.request_level,
                resolver: details.resolver,
                now: details.now,
                timeout: NextTimeout {
                    after: share.max(Duration::from_millis(1)).into(),
                    reason: Timeout::Connect,
                    ..details.timeout
                },
                current_time: details.current_time.clone(),
                run_connector: details.run_connector.clone(),
                register_shutdown: details.register_shutdown.clone(),
            };
            match Connector::<Box<dyn Transport>>::connect(&TcpConnector::default(), &single, None)
            {
                Ok(Some(transport)) => {
                    with_trace(|t| {
                        t.connected = true;
                        t.ip_protocol = Some(if addr.is_ipv4() { 4 } else { 6 });
                        t.ip_addr = Some(addr.ip());
                    });
                    mark(|h| h.connect_done = Some(Instant::now()));
                    let transport = match transport {
                        Either::A(t) => t,
                        Either::B(t) => t.boxed(),
                    };
                    return Ok(Some(Either::B(transport)));
                }
                Ok(None) => {}
                Err(e) => failures.push((*addr, e)),
            }
        }
        Err(connect_failed(failures, via_proxy))
    }
}

/// Notes why no address connected and returns the error to give ureq.
fn connect_failed(failures: Vec<(SocketAddr, Error)>, via_proxy: bool) -> Error {
    let who = if via_proxy { "the proxy at " } else { "" };
    let timed_out = failures.is_empty()
        || failures.iter().all(|(_, e)| match e {
            Error::Timeout(_) => true,
            Error::Io(io) => is_timeout(io),
            _ => false,
        });
    if timed_out {
        let at = failures
            .first()
            .map_or_else(|| "the target".to_string(), |(a, _)| a.to_string());
        fail(
            Stage::Timeout,
            format!("connecting to {who}{at} did not finish within {}", budget()),
        );
        return Error::Timeout(Timeout::Connect);
    }
    let tried: Vec<String> = failures
        .iter()
        .map(|(addr, e)| match e {
            Error::Io(io) => format!("{addr} ({})", io_words(io)),
            Error::Timeout(_) => format!("{addr} (timed out)"),
            other => format!("{addr} ({other})"),
        })
        .collect();
    let stage = if via_proxy {
        Stage::Proxy
    } else {
        Stage::Connect
    };
    fail(
        stage,
        format!("cannot connect to {who}{}", tried.join(" or ")),
    );
    failures
        .into_iter()
        .last()
        .map_or(Error::ConnectionFailed, |(_, e)| e)
}

// ---------------------------------------------------------------------------------
// Proxy

/// Through a proxy, an https target gets a CONNECT tunnel and an http target the
/// absolute form of each request; without one the connection passes unchanged.
#[derive(Debug)]
pub(super) struct ProxyStep {
    pub route: Arc<Route>,
}

impl<In: Transport> Connector<In> for ProxyStep {
    type Out = Either<In, Box<dyn Transport>>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, Error> {
        let Some(transport) = chained else {
            return Ok(None);
        };
        let Some(proxy) = self.route.proxy_for(details.uri) else {
            return Ok(Some(Either::A(transport)));
        };
        let auth = proxy.authorization(self.route.check());
        if details.needs_tls() {
            let transport = tunnel(transport.boxed(), proxy, auth.as_deref(), details)?;
            mark(|h| h.connect_done = Some(Instant::now()));
            return Ok(Some(Either::B(transport)));
        }
        let Some((host, port)) = proxy::host_port(details.uri) else {
            return Err(Error::BadUri(format!("{}: no host", details.uri)));
        };
        Ok(Some(Either::B(Box::new(AbsoluteForm {
            inner: transport.boxed(),
            origin: format!("http://{}", proxy::authority(&host, port)),
            authorization: auth,
            sent: false,
        }))))
    }
}

/// Writes all of `bytes` through a transport's output buffer.
fn transmit(t: &mut dyn Transport, bytes: &[u8], timeout: NextTimeout) -> Result<(), Error> {
    let mut rest = bytes;
    while !rest.is_empty() {
        let out = t.buffers().output();
        let n = out.len().min(rest.len());
        if n == 0 {
            return Err(Error::Io(std::io::Error::other("no output buffer")));
        }
        out[..n].copy_from_slice(&rest[..n]);
        t.transmit_output(n, timeout)?;
        rest = &rest[n..];
    }
    Ok(())
}

/// Asks the proxy for a tunnel to the target with CONNECT and reads its answer.
fn tunnel(
    mut transport: Box<dyn Transport>,
    proxy: &Proxy,
    authorization: Option<&str>,
    details: &ConnectionDetails,
) -> Result<Box<dyn Transport>, Error> {
    let Some((host, port)) = proxy::host_port(details.uri) else {
        return Err(Error::BadUri(format!("{}: no host", details.uri)));
    };
    let target = proxy::authority(&host, port);
    let mut head = format!(
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: sonde/{}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    if let Some(auth) = authorization {
        head.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
    }
    head.push_str("\r\n");
    let (before, after) = (
        format!("the proxy {}", proxy.name()),
        format!("CONNECT {target}"),
    );
    let broke = |e: Error| {
        if matches!(e, Error::Timeout(_)) {
            fail(
                Stage::Timeout,
                format!("{before} did not answer {after} within {}", budget()),
            );
        } else {
            fail(Stage::Proxy, format!("{before} failed during {after}: {e}"));
        }
        e
    };
    transmit(&mut *transport, head.as_bytes(), details.timeout).map_err(broke)?;
    let (status, reason) = match read_answer(&mut *transport, details.timeout) {
        Ok(answer) => answer,
        Err(Answer::Broken(e)) => return Err(broke(e)),
        Err(Answer::Refused(why)) => {
            fail(Stage::Proxy, format!("{before} {why} {after}"));
            return Err(Error::ConnectProxyFailed(why.into()));
        }
    };
    if !(200..300).contains(&status) {
        fail(
            Stage::Proxy,
            format!("{before} answered {status} {reason} to {after}").replace("  to", " to"),
        );
        return Err(Error::ConnectProxyFailed(format!("status {status}")));
    }
    Ok(transport)
}

/// Why no status came back from the proxy.
enum Answer {
    /// The transport failed (a timeout, a reset).
    Broken(Error),
    /// The proxy's answer was unusable; the words fit "the proxy X ... CONNECT t".
    Refused(&'static str),
}

/// Reads the proxy's answer to CONNECT: its status and reason; what follows the head
/// stays in the buffers for the TLS handshake.
fn read_answer(
    transport: &mut dyn Transport,
    timeout: NextTimeout,
) -> Result<(u16, String), Answer> {
    loop {
        let input = transport.buffers().input();
        if let Some(end) = input.windows(4).position(|w| w == b"\r\n\r\n") {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut parsed = httparse::Response::new(&mut headers);
            let Ok(httparse::Status::Complete(_)) = parsed.parse(&input[..end + 4]) else {
                return Err(Answer::Refused("sent no valid answer to"));
            };
            let answer = (
                parsed.code.unwrap_or(0),
                parsed.reason.unwrap_or("").to_string(),
            );
            transport.buffers().input_consume(end + 4);
            return Ok(answer);
        }
        if input.len() > MAX_CONNECT_HEAD {
            return Err(Answer::Refused("sent an answer over 16 KiB to"));
        }
        if !transport.await_input(timeout).map_err(Answer::Broken)? {
            return Err(Answer::Refused("closed the connection during"));
        }
    }
}

/// A plain-HTTP connection to a proxy: the first request line is rewritten to the
/// absolute form (`GET http://host:port/path HTTP/1.1`) with `Proxy-Authorization`
/// after it. The connection is never reused, so no later request needs rewriting.
#[derive(Debug)]
struct AbsoluteForm {
    inner: Box<dyn Transport>,
    /// `http://host:port` of the target.
    origin: String,
    authorization: Option<String>,
    sent: bool,
}

impl Transport for AbsoluteForm {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        if self.sent {
            return self.inner.transmit_output(amount, timeout);
        }
        self.sent = true;
        let head = self.inner.buffers().output()[..amount].to_vec();
        let line_end = head
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| Error::Io(std::io::Error::other("request line too long")))?;
        let line = String::from_utf8_lossy(&head[..line_end]).into_owned();
        let mut parts = line.splitn(3, ' ');
        let (Some(method), Some(target), Some(version)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::Io(std::io::Error::other("malformed request line")));
        };
        let mut out = format!("{method} {}{target} {version}\r\n", self.origin);
        if let Some(auth) = &self.authorization {
            out.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
        }
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&head[line_end + 2..]);
        transmit(&mut *self.inner, &bytes, timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        self.inner.await_input(timeout)
    }

    fn is_open(&mut self) -> bool {
        !self.sent && self.inner.is_open()
    }
}

// ---------------------------------------------------------------------------------
// TLS

/// The TLS handshake with sonde's verifier; notes its time, version, cipher and, when
/// it fails, why.
#[derive(Debug)]
pub(super) struct TlsStep {
    pub config: Arc<ClientConfig>,
    pub server_name: Option<ServerName<'static>>,
    pub versions: (u8, u8),
    pub client_cert: bool,
    pub ca_file: bool,
}

impl TlsStep {
    fn context(&self) -> Context {
        Context {
            versions: self.versions,
            client_cert: self.client_cert,
            ca_file: self.ca_file,
        }
    }
}

impl<In: Transport> Connector<In> for TlsStep {
    type Out = Either<In, TlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, Error> {
        let Some(transport) = chained else {
            return Ok(None);
        };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => {
                let host = details.uri.host().unwrap_or_default();
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                ServerName::try_from(bare.to_string()).map_err(|_| {
                    fail(
                        Stage::Tls,
                        format!("{bare:?} is not a valid TLS server name; set tls.server_name"),
                    );
                    Error::Tls("the host is not a valid TLS server name")
                })?
            }
        };
        let mut conn = ClientConnection::new(Arc::clone(&self.config), name).map_err(|e| {
            fail(Stage::Tls, verify::words(&e, self.context()));
            Error::Rustls(e)
        })?;
        with_trace(|t| {
            t.tls.get_or_insert_with(Default::default);
        });
        mark(|h| h.tls_start = Some(Instant::now()));
        let mut sock = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        sock.set_timeout(details.timeout);
        if let Err(e) = conn.complete_io(&mut sock) {
            self.note(&e, "TLS handshake");
            return Err(Error::from(e));
        }
        mark(|h| h.tls_done = Some(Instant::now()));
        let version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => Some("TLS 1.3"),
            Some(rustls::ProtocolVersion::TLSv1_2) => Some("TLS 1.2"),
            _ => None,
        };
        let cipher = conn.negotiated_cipher_suite().map(|s| iana_name(s.suite()));
        with_trace(|t| {
            let facts = t.tls.get_or_insert_with(Default::default);
            facts.version = version;
            facts.cipher = cipher;
        });
        let buffers = LazyBuffers::new(
            details.config.input_buffer_size(),
            details.config.output_buffer_size(),
        );
        Ok(Some(Either::B(TlsTransport {
            buffers,
            stream: StreamOwned { conn, sock },
            context: self.context(),
        })))
    }
}

impl TlsStep {
    /// Notes why the handshake failed: a timeout, a TLS error in words, or the peer
    /// closing on us.
    fn note(&self, e: &std::io::Error, during: &str) {
        note_tls_error(e, during, self.context());
    }
}

fn note_tls_error(e: &std::io::Error, during: &str, cx: Context) {
    if is_timeout(e) {
        fail(
            Stage::Timeout,
            format!("{during} did not finish within {}", budget()),
        );
    } else if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        fail(Stage::Tls, verify::words(tls, cx));
    } else {
        fail(
            Stage::Tls,
            format!(
                "{during} failed: {}; does the server speak TLS?",
                io_words(e)
            ),
        );
    }
}

/// The IANA name of a cipher suite (`TLS_AES_128_GCM_SHA256`), as Go and
/// blackbox_exporter print it; rustls prefixes TLS 1.3 suites with `TLS13_`.
fn iana_name(suite: rustls::CipherSuite) -> String {
    let debug = format!("{suite:?}");
    match debug.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => debug,
    }
}

/// A TLS session over another transport; errors of the session (a client certificate
/// refused after a TLS 1.3 handshake arrives here) are noted in the trace.
pub(super) struct TlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
    context: Context,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTransport").finish_non_exhaustive()
    }
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        if let Err(e) = self.stream.write_all(output) {
            if e.get_ref().is_some_and(|i| i.is::<rustls::Error>()) {
                note_tls_error(&e, "the TLS session", self.context);
            }
            return Err(Error::from(e));
        }
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        match self.stream.read(input) {
            Ok(amount) => {
                self.buffers.input_appended(amount);
                Ok(amount > 0)
            }
            Err(e) => {
                if e.get_ref().is_some_and(|i| i.is::<rustls::Error>()) {
                    note_tls_error(&e, "the TLS session", self.context);
                }
                Err(Error::from(e))
            }
        }
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

// ---------------------------------------------------------------------------------
// Trace

/// The last step: the connection is ready, and the first byte read on it is the
/// first byte of the response.
#[derive(Debug)]
pub(super) struct TraceStep;

impl<In: Transport> Connector<In> for TraceStep {
    type Out = Timed<In>;

    fn connect(
        &self,
        _details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, Error> {
        let Some(inner) = chained else {
            return Ok(None);
        };
        mark(|h| h.got_conn = Some(Instant::now()));
        Ok(Some(Timed { inner }))
    }
}

/// Notes when the first byte of a response arrives.
#[derive(Debug)]
pub(super) struct Timed<T> {
    inner: T,
}

impl<T: Transport> Transport for Timed<T> {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        self.inner.transmit_output(amount, timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        let progress = self.inner.await_input(timeout)?;
        if progress {
            mark(|h| {
                h.first_byte.get_or_insert_with(Instant::now);
            });
        }
        Ok(progress)
    }

    fn is_open(&mut self) -> bool {
        self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_is_both_loopbacks_without_asking_anyone() {
        let ips = lookup("LocalHost.", 80, Duration::from_secs(1))
            .ok()
            .unwrap();
        assert_eq!(
            ips,
            vec![
                "::1".parse::<IpAddr>().unwrap(),
                "127.0.0.1".parse().unwrap()
            ]
        );
        let ips = lookup("app.localhost", 80, Duration::from_secs(1))
            .ok()
            .unwrap();
        assert_eq!(ips.len(), 2);
        let ips = lookup("192.0.2.1", 80, Duration::from_secs(1))
            .ok()
            .unwrap();
        assert_eq!(ips, vec!["192.0.2.1".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn cipher_suites_have_their_iana_names() {
        assert_eq!(
            iana_name(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256),
            "TLS_AES_128_GCM_SHA256"
        );
        assert_eq!(
            iana_name(rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        );
    }
}
