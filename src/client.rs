//! Outbound HTTP for every kind: ureq agents with sonde's own TLS connector and resolver.
//!
//! The connector wraps rustls 0.23 with a verifier that first records the earliest
//! NotAfter of the chain the server presented, so the value is known even when
//! verification then fails. The resolver skips DNS for IP literals and reports lookup
//! failures distinctly. Both write into a per-thread [`Trace`]: ureq is blocking, so a
//! request's connection and handshake run on the thread that sent it, and the caller
//! reads the trace right after the call to tell `dns`, `connect` and `tls` apart.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, StreamOwned};
use serde::Deserialize;
use serde_saphyr::Spanned;
use ureq::Error;
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, TcpConnector,
    Transport, TransportAdapter,
};

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
    static TRACE: RefCell<Trace> = RefCell::new(Trace::default());
}

/// Clears this thread's trace before a request.
pub fn begin_trace() {
    TRACE.with(|t| *t.borrow_mut() = Trace::default());
}

/// Takes this thread's trace after a request.
pub fn take_trace() -> Trace {
    TRACE.with(|t| std::mem::take(&mut *t.borrow_mut()))
}

/// Sends `request` with `agent`, the whole exchange bounded by `budget`, after clearing
/// this thread's trace (read it with [`take_trace`]). The body is left to the caller,
/// who must cap what it reads.
pub fn send(
    agent: &ureq::Agent,
    request: ureq::http::Request<impl ureq::AsSendBody>,
    budget: Duration,
) -> Result<ureq::http::Response<ureq::Body>, Error> {
    let request = agent
        .configure_request(request)
        .timeout_global(Some(budget))
        .build();
    begin_trace();
    agent.run(request)
}

fn with_trace(f: impl FnOnce(&mut Trace)) {
    TRACE.with(|t| f(&mut t.borrow_mut()));
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
                let pem = read_capped(&path, 1 << 20).map_err(|e| {
                    (
                        file.referenced,
                        format!("tls.ca_file {}: {e}", path.display()),
                    )
                })?;
                let certs = parse_pem_certificates(&pem);
                if certs.is_empty() {
                    return Err((
                        file.referenced,
                        format!("tls.ca_file {}: no PEM certificate in it", path.display()),
                    ));
                }
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
        })
    }

    /// Built-in WebPKI roots, verification on.
    pub fn webpki() -> TlsSettings {
        TlsSettings {
            roots: None,
            insecure: false,
            server_name: None,
        }
    }
}

/// Builds an agent whose connections go through sonde's connector and resolver.
pub fn agent(tls: &TlsSettings, options: &AgentOptions) -> Result<ureq::Agent, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = RecordingVerifier::new(tls, Arc::clone(&provider))?;
    let mut client_config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
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

/// Reads at most `cap` bytes of a file; larger files are an error.
pub fn read_capped(path: &Path, cap: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(cap + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(std::io::Error::other(format!("larger than {cap} bytes")));
    }
    Ok(bytes)
}

/// Reads a secret file: at most 64 KiB, trailing newline removed. Errors never carry
/// the content.
pub fn read_secret(path: &Path) -> Result<String, String> {
    let bytes = read_capped(path, 64 << 10).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8", path.display()))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

/// Every `CERTIFICATE` block of a PEM text, as DER.
pub fn parse_pem_certificates(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
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

// ---------------------------------------------------------------------------------
// Just enough DER to read a certificate's NotAfter

/// Splits one DER TLV off `input`: (tag, content, rest).
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The NotAfter of an X.509 certificate in DER, as Unix seconds.
pub fn not_after(cert: &[u8]) -> Option<i64> {
    const SEQUENCE: u8 = 0x30;
    let (tag, cert, _) = der_tlv(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = der_tlv(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    // [0] EXPLICIT version, optional.
    if rest.first() == Some(&0xa0) {
        rest = der_tlv(rest)?.2;
    }
    // serialNumber, signature, issuer.
    for _ in 0..3 {
        rest = der_tlv(rest)?.2;
    }
    let (tag, validity, _) = der_tlv(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let (_, _, after_not_before) = der_tlv(validity)?;
    let (tag, time, _) = der_tlv(after_not_before)?;
    parse_asn1_time(tag, time)
}

/// UTCTime (`YYMMDDHHMMSSZ`, tag 0x17) or GeneralizedTime (`YYYYMMDDHHMMSSZ`, 0x18).
fn parse_asn1_time(tag: u8, text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?;
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, rest) = match (tag, digits.len()) {
        (0x17, 12) => {
            let yy: i64 = digits[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        (0x18, 14) => (digits[..4].parse().ok()?, &digits[4..]),
        _ => return None,
    };
    let field = |i: usize| rest[i..i + 2].parse::<u32>().ok();
    let (month, day, hour, minute, second) =
        (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = crate::units::days_from_civil(year, month, day);
    Some(days * 86_400 + i64::from(hour * 3600 + minute * 60 + second))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_after_is_read_from_generated_certificates() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 7, 9);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let expected = crate::units::days_from_civil(2031, 7, 9) * 86_400;
        assert_eq!(not_after(cert.der()), Some(expected));
        // GeneralizedTime is used from 2050 on.
        params.not_after = rcgen::date_time_ymd(2061, 1, 2);
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            not_after(cert.der()),
            Some(crate::units::days_from_civil(2061, 1, 2) * 86_400)
        );
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
        assert_eq!(parse_asn1_time(0x17, b"991231235959Z"), Some(946_684_799));
        assert_eq!(parse_asn1_time(0x17, b"9912312359Z"), None);
        assert_eq!(parse_asn1_time(0x18, b"20001301000000Z"), None);
    }
}
