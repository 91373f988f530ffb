//! Outbound HTTP for every kind: ureq agents with sonde's own TLS connector and resolver.
//!
//! The connector wraps rustls 0.23 with a verifier that first records the earliest
//! NotAfter of the chain the server presented, so the value is known even when
//! verification then fails. The resolver skips DNS for IP literals and reports lookup
//! failures distinctly. Both note what happened in a [`Trace`] that [`send`] returns
//! with the response, so a caller can tell `dns`, `connect` and `tls` apart. (ureq is
//! blocking: the connection and handshake run on the thread that sends, which is how
//! the connector reaches the trace; no caller sees that.)

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use crate::problem::Spanned;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, StreamOwned};
use serde::Deserialize;
use ureq::Error;
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, TcpConnector,
    Transport, TransportAdapter,
};

use crate::tls;

/// The `tls:` keys shared by kinds that speak HTTPS.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// PEM file of CA certificates that replace the built-in roots.
    #[serde(default)]
    pub ca_file: Option<Spanned<String>>,
    /// Accept any certificate (the chain is still recorded).
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Name used for SNI and verification instead of the URL's host.
    #[serde(default)]
    pub server_name: Option<Spanned<String>>,
}

/// What happened while one request connected; see the module documentation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trace {
    /// Name resolution failed.
    pub dns_failed: bool,
    /// The TCP connection of the latest hop was established.
    pub connected: bool,
    /// The TLS handshake of the latest hop failed.
    pub tls_failed: bool,
    /// Earliest NotAfter (Unix seconds) of the chain the latest TLS hop presented.
    pub cert_not_after: Option<i64>,
}

thread_local! {
    /// The trace of the request this thread is sending; only [`send`] resets and takes it.
    static TRACE: RefCell<Trace> = RefCell::new(Trace::default());
}

/// One request's outcome, with what happened while it connected.
#[derive(Debug)]
pub struct Exchange {
    /// The response head (the body is left to the caller, who must cap what it reads),
    /// or why there is none.
    pub response: Result<ureq::http::Response<ureq::Body>, Error>,
    /// DNS, connect and TLS facts of the latest hop.
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
    TRACE.with(|t| *t.borrow_mut() = Trace::default());
    let response = agent.run(request);
    let trace = TRACE.with(|t| std::mem::take(&mut *t.borrow_mut()));
    Exchange { response, trace }
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
/// ureq's errors carry no header values).
pub fn describe(e: &Error, trace: &Trace, target: &str) -> String {
    if trace.dns_failed || matches!(e, Error::HostNotFound) {
        format!("{target}: the host name does not resolve")
    } else if trace.tls_failed {
        format!("{target}: TLS handshake or certificate verification failed ({e})")
    } else if matches!(e, Error::Timeout(_)) {
        format!("{target}: no answer within the time left ({e})")
    } else if !trace.connected {
        format!("{target}: cannot connect: {e}")
    } else {
        format!("{target}: {e}")
    }
}

fn with_trace(f: impl FnOnce(&mut Trace)) {
    TRACE.with(|t| f(&mut t.borrow_mut()));
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
    /// Largest response head accepted.
    pub max_header_size: usize,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            max_redirects: 10,
            pool: true,
            max_header_size: 64 << 10,
        }
    }
}

/// TLS settings resolved from a [`TlsSpec`]: certificates loaded, names parsed.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    roots: Option<Vec<CertificateDer<'static>>>,
    insecure: bool,
    server_name: Option<ServerName<'static>>,
    client_cert: Option<ClientCert>,
}

/// A client certificate chain and its key, shown to servers that ask for one. `Debug`
/// never shows the key.
#[derive(Clone)]
struct ClientCert(
    Arc<(
        Vec<CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    )>,
);

impl std::fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientCert(<key redacted>)")
    }
}

impl TlsSettings {
    /// Loads the CA file (relative to `base`) and validates the server name.
    pub fn load(
        spec: &TlsSpec,
        base: &Path,
    ) -> Result<TlsSettings, (serde_saphyr::Location, String)> {
        let roots = match &spec.ca_file {
            None => None,
            Some(file) => {
                let path = base.join(&file.value);
                let certs = tls::read_certificates(&path)
                    .map_err(|e| (file.referenced, format!("tls.ca_file {e}")))?;
                Some(certs)
            }
        };
        let server_name = match &spec.server_name {
            None => None,
            Some(name) => Some(ServerName::try_from(name.value.clone()).map_err(|_| {
                (
                    name.referenced,
                    format!(
                        "tls.server_name {:?} is not a valid DNS name or IP",
                        name.value
                    ),
                )
            })?),
        };
        Ok(TlsSettings {
            roots,
            insecure: spec.insecure_skip_verify,
            server_name,
            client_cert: None,
        })
    }

    /// Built-in WebPKI roots, verification on.
    pub fn webpki() -> TlsSettings {
        TlsSettings {
            roots: None,
            insecure: false,
            server_name: None,
            client_cert: None,
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
            client_cert: None,
        }
    }

    /// These settings, presenting a client certificate to servers that ask for one.
    pub fn with_client_cert(
        self,
        chain: Vec<CertificateDer<'static>>,
        key: rustls::pki_types::PrivateKeyDer<'static>,
    ) -> TlsSettings {
        TlsSettings {
            client_cert: Some(ClientCert(Arc::new((chain, key)))),
            ..self
        }
    }
}

/// Builds an agent whose connections go through sonde's connector and resolver.
pub fn agent(tls: &TlsSettings, options: &AgentOptions) -> Result<ureq::Agent, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = RecordingVerifier::new(tls, Arc::clone(&provider))?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut client_config = match &tls.client_cert {
        None => builder.with_no_client_auth(),
        Some(ClientCert(pair)) => builder
            .with_client_auth_cert(pair.0.clone(), pair.1.clone_key())
            .map_err(|e| format!("the client certificate and key do not go together: {e}"))?,
    };
    // A resumed session skips certificate verification, so the chain (and its NotAfter)
    // would be missing from every probe after the first: always do a full handshake.
    client_config.resumption = rustls::client::Resumption::disabled();
    let connector = ().chain(TcpConnector::default()).chain(TlsConnector {
        config: Arc::new(client_config),
        server_name: tls.server_name.clone(),
    });
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(options.max_redirects)
        .max_redirects_will_error(options.max_redirects > 0)
        .save_redirect_history(true)
        .max_idle_connections(if options.pool { 10 } else { 0 })
        .max_idle_connections_per_host(if options.pool { 3 } else { 0 })
        .max_response_header_size(options.max_header_size)
        .user_agent(concat!("sonde/", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(ureq::Agent::with_parts(config, connector, SondeResolver))
}

// ---------------------------------------------------------------------------------
// Resolver

#[derive(Debug)]
struct SondeResolver;

impl Resolver for SondeResolver {
    fn resolve(
        &self,
        uri: &Uri,
        _config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, Error> {
        with_trace(|t| t.connected = false);
        let host = uri
            .host()
            .ok_or_else(|| Error::BadUri(format!("{uri}: no host")))?;
        let port = uri
            .port_u16()
            .or_else(|| match uri.scheme_str() {
                Some("https") => Some(443),
                Some("http") => Some(80),
                _ => None,
            })
            .ok_or_else(|| Error::BadUri(format!("{uri}: unknown scheme")))?;
        let mut out = self.empty();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            out.push(SocketAddr::new(ip, port));
            return Ok(out);
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let name = format!("{bare}:{port}");
        let spawned = std::thread::Builder::new()
            .name("sonde-dns".into())
            .stack_size(64 << 10)
            .spawn(move || {
                let _ = tx.send(name.to_socket_addrs().map(Iterator::collect::<Vec<_>>));
            });
        if let Err(e) = spawned {
            return Err(Error::Io(e));
        }
        let wait = (*timeout.after).min(Duration::from_secs(3600));
        match rx.recv_timeout(wait) {
            Ok(Ok(addrs)) if !addrs.is_empty() => {
                for addr in addrs.into_iter().take(16) {
                    out.push(addr);
                }
                Ok(out)
            }
            Ok(_) => {
                with_trace(|t| t.dns_failed = true);
                Err(Error::HostNotFound)
            }
            Err(_) => Err(Error::Timeout(timeout.reason)),
        }
    }
}

// ---------------------------------------------------------------------------------
// TLS connector

#[derive(Debug)]
struct TlsConnector {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl<In: Transport> Connector<In> for TlsConnector {
    type Out = Either<In, TlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, Error> {
        let Some(transport) = chained else {
            return Ok(None);
        };
        with_trace(|t| {
            t.connected = true;
            t.cert_not_after = None;
        });
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => {
                let host = details.uri.host().unwrap_or_default();
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                ServerName::try_from(bare.to_string()).map_err(|_| {
                    with_trace(|t| t.tls_failed = true);
                    Error::Tls("the host is not a valid TLS server name")
                })?
            }
        };
        let mut conn = ClientConnection::new(Arc::clone(&self.config), name).map_err(|e| {
            with_trace(|t| t.tls_failed = true);
            Error::Rustls(e)
        })?;
        let mut sock = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        sock.set_timeout(details.timeout);
        if let Err(e) = conn.complete_io(&mut sock) {
            let timed_out = matches!(
                e.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) || e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<Error>())
                .is_some_and(|inner| matches!(inner, Error::Timeout(_)));
            if !timed_out {
                with_trace(|t| t.tls_failed = true);
            }
            return Err(Error::Io(e));
        }
        let buffers = LazyBuffers::new(
            details.config.input_buffer_size(),
            details.config.output_buffer_size(),
        );
        Ok(Some(Either::B(TlsTransport {
            buffers,
            stream: StreamOwned { conn, sock },
        })))
    }
}

struct TlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
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
        self.stream.write_all(output)?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = self.stream.read(input)?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

// ---------------------------------------------------------------------------------
// Verifier that records the presented chain before judging it

#[derive(Debug)]
struct RecordingVerifier {
    /// `None` when verification is disabled.
    inner: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl RecordingVerifier {
    fn new(tls: &TlsSettings, provider: Arc<CryptoProvider>) -> Result<Self, String> {
        if tls.insecure {
            return Ok(RecordingVerifier {
                inner: None,
                provider,
            });
        }
        let mut store = RootCertStore::empty();
        match &tls.roots {
            Some(certs) => {
                let (added, _ignored) = store.add_parsable_certificates(certs.iter().cloned());
                if added == 0 {
                    return Err("tls.ca_file holds no usable CA certificate".into());
                }
            }
            None => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(store), Arc::clone(&provider))
                .build()
                .map_err(|e| format!("TLS verifier: {e}"))?;
        Ok(RecordingVerifier {
            inner: Some(inner),
            provider,
        })
    }
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let earliest = std::iter::once(end_entity)
            .chain(intermediates)
            .filter_map(|c| not_after(c.as_ref()))
            .min();
        with_trace(|t| t.cert_not_after = earliest);
        match &self.inner {
            Some(inner) => {
                inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The NotAfter of an X.509 certificate in DER, as Unix seconds.
pub fn not_after(cert: &[u8]) -> Option<i64> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    Some(parsed.validity().not_after.timestamp())
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
        }
    }
}
