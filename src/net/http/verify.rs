//! Judging and describing certificates: the server verifier, the client certificate
//! that is re-read when its files change, the facts exported about a leaf, and TLS
//! errors in words.
//!
//! The verifier records what the server presented before judging it, so the NotAfter
//! and the leaf's details are known even when verification then fails. A certificate
//! in `tls.ca_file` that is exactly the presented leaf is trusted as is: only its dates
//! and name are checked, which is how curl and Go treat a pinned self-signed
//! certificate (webpki alone refuses one that says CA:TRUE as an end entity). Anything
//! else goes through webpki's path building, whose verified path gives the chain's
//! earliest NotAfter.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{
    AlertDescription, CertificateError, DigitallySignedStruct, OtherError, PeerIncompatible,
};

use super::{Stage, TlsSettings, fail, not_after, rfc3339, with_trace};
use crate::sync::lock;
use crate::tls;

/// Facts about a certificate, as exported by `sonde_http_tls_cert_info`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint_sha256: String,
    /// Subject, RFC 4514 style (last RDN first), as Go and blackbox_exporter print it.
    pub subject: String,
    /// Issuer, in the same form.
    pub issuer: String,
    /// Serial number, lower-case hex without leading zeros.
    pub serial: String,
    /// DNS names, then IP addresses, of the subject alternative names, comma-separated.
    pub san: String,
    /// The DNS names alone, comma-separated (blackbox_exporter's `subjectalternative`).
    pub dns_names: String,
}

impl CertInfo {
    /// Reads the facts of a DER certificate; `None` when it does not parse.
    pub fn of(der: &[u8]) -> Option<CertInfo> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let serial = hex(cert.raw_serial());
        let serial = serial.trim_start_matches('0');
        let mut dns = Vec::new();
        let mut ips = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => dns.push(n.to_string()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from(bytes) {
                            ips.push(ip.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        let dns_names = dns.join(",");
        dns.extend(ips);
        Some(CertInfo {
            fingerprint_sha256: hex(digest.as_ref()),
            subject: name_string(cert.subject()),
            issuer: name_string(cert.issuer()),
            serial: if serial.is_empty() { "0" } else { serial }.to_string(),
            san: dns.join(","),
            dns_names,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn ip_from(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(Into::into),
        16 => <[u8; 16]>::try_from(bytes).ok().map(Into::into),
        _ => None,
    }
}

/// A distinguished name as Go's `pkix.Name.String()` prints it: RDNs last first,
/// short attribute names, RFC 4514 escapes.
fn name_string(name: &x509_parser::x509::X509Name) -> String {
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let oid = atv.attr_type().to_id_string();
                    let key = match oid.as_str() {
                        "2.5.4.6" => "C",
                        "2.5.4.10" => "O",
                        "2.5.4.11" => "OU",
                        "2.5.4.3" => "CN",
                        "2.5.4.5" => "SERIALNUMBER",
                        "2.5.4.7" => "L",
                        "2.5.4.8" => "ST",
                        "2.5.4.9" => "STREET",
                        "2.5.4.17" => "POSTALCODE",
                        other => other,
                    };
                    match atv.as_str() {
                        Ok(text) => format!("{key}={}", escape_rdn(text)),
                        Err(_) => format!("{key}=#{}", hex(atv.as_slice())),
                    }
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// RFC 4514 §2.4 escaping of an attribute value.
fn escape_rdn(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let last = text.chars().count().saturating_sub(1);
    for (i, c) in text.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// What a TLS error means for the person reading it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Context {
    /// The versions offered (12 or 13).
    pub versions: (u8, u8),
    /// Whether a client certificate is configured.
    pub client_cert: bool,
    /// Whether `tls.ca_file` replaces the built-in roots.
    pub ca_file: bool,
}

/// A rustls error in words.
pub(super) fn words(e: &rustls::Error, cx: Context) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => certificate_words(c, cx),
        rustls::Error::AlertReceived(alert) => alert_words(*alert, cx),
        rustls::Error::PeerIncompatible(
            PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig,
        ) => match cx.versions {
            (13, 13) => "peer offers only TLS 1.2 (tls.min_version is TLS13)".into(),
            _ => "peer offers only TLS 1.3 (tls.max_version is TLS12)".into(),
        },
        rustls::Error::PeerIncompatible(PeerIncompatible::ServerDoesNotSupportTls12Or13) => {
            "peer offers only TLS 1.1 or older; sonde speaks TLS 1.2 and 1.3".into()
        }
        rustls::Error::PeerIncompatible(p) => format!("the server's TLS is incompatible: {p:?}"),
        rustls::Error::InvalidMessage(m) => {
            format!("the server sent an invalid TLS message ({m:?}); is it speaking TLS?")
        }
        other => other.to_string(),
    }
}

fn certificate_words(c: &CertificateError, cx: Context) -> String {
    match c {
        CertificateError::ExpiredContext { not_after, .. } => {
            format!("certificate expired at {}", rfc3339(secs(*not_after)))
        }
        CertificateError::Expired => "certificate expired".into(),
        CertificateError::NotValidYetContext { not_before, .. } => {
            format!(
                "certificate not valid before {}",
                rfc3339(secs(*not_before))
            )
        }
        CertificateError::NotValidYet => "certificate not valid yet".into(),
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => format!(
            "certificate not valid for name {} (it is for {})",
            expected.to_str(),
            if presented.is_empty() {
                "no name".to_string()
            } else {
                presented.join(", ")
            }
        ),
        CertificateError::NotValidForName => "certificate not valid for the name".into(),
        CertificateError::UnknownIssuer if cx.ca_file => {
            "unknown issuer: the chain leads to no certificate of tls.ca_file".into()
        }
        CertificateError::UnknownIssuer => {
            "unknown issuer: the chain leads to no built-in root (set tls.ca_file for a private CA)"
                .into()
        }
        CertificateError::BadSignature => "bad certificate signature".into(),
        CertificateError::BadEncoding => "the certificate does not parse".into(),
        CertificateError::Other(other) => other.to_string(),
        other => format!("certificate rejected: {other:?}"),
    }
}

fn secs(t: UnixTime) -> i64 {
    i64::try_from(t.as_secs()).unwrap_or(i64::MAX)
}

fn alert_words(alert: AlertDescription, cx: Context) -> String {
    match alert {
        AlertDescription::ProtocolVersion => match cx.versions {
            (13, 13) => "peer offers only TLS 1.2 or older (tls.min_version is TLS13)".into(),
            (12, 12) => "peer offers only TLS 1.3 (tls.max_version is TLS12)".into(),
            _ => "peer offers no TLS version sonde speaks (TLS 1.2, TLS 1.3)".into(),
        },
        AlertDescription::CertificateRequired if !cx.client_cert => {
            "the server requires a client certificate; set tls.cert_file and tls.key_file".into()
        }
        AlertDescription::NoApplicationProtocol => {
            "the server refuses HTTP/1.1 (TLS alert no_application_protocol); sonde speaks HTTP/1.1 only"
                .into()
        }
        AlertDescription::HandshakeFailure if !cx.client_cert => {
            "the server ended the handshake (TLS alert handshake_failure): no cipher suite in common, or it requires a client certificate"
                .into()
        }
        AlertDescription::CertificateRequired
        | AlertDescription::HandshakeFailure
        | AlertDescription::BadCertificate
        | AlertDescription::UnsupportedCertificate
        | AlertDescription::CertificateRevoked
        | AlertDescription::CertificateExpired
        | AlertDescription::CertificateUnknown
        | AlertDescription::UnknownCA
        | AlertDescription::AccessDenied
            if cx.client_cert =>
        {
            format!(
                "the server rejected the client certificate (TLS alert {})",
                alert_name(alert)
            )
        }
        other => format!("the server sent TLS alert {}", alert_name(other)),
    }
}

/// `CertificateRequired` -> `certificate_required`, the RFC's spelling.
fn alert_name(alert: AlertDescription) -> String {
    let debug = format!("{alert:?}");
    let mut out = String::new();
    for (i, c) in debug.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A cause in our own words, carried through rustls as `CertificateError::Other`.
#[derive(Debug)]
struct Words(String);

impl fmt::Display for Words {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Words {}

fn other(text: impl Into<String>) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Words(
        text.into(),
    )))))
}

/// webpki's verdict as rustls's, with the context rustls keeps (dates, names);
/// `from_file` says whether the roots are `tls.ca_file`'s.
fn pki(e: webpki::Error, from_file: bool) -> rustls::Error {
    use webpki::Error as W;
    let c = match e {
        W::CertExpired { time, not_after } => CertificateError::ExpiredContext { time, not_after },
        W::CertNotValidYet { time, not_before } => {
            CertificateError::NotValidYetContext { time, not_before }
        }
        W::UnknownIssuer => CertificateError::UnknownIssuer,
        W::CertNotValidForName(cx) => CertificateError::NotValidForNameContext {
            expected: cx.expected,
            presented: cx.presented,
        },
        W::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        W::BadDer | W::BadDerTime => CertificateError::BadEncoding,
        // A self-signed certificate made with `openssl req -x509` says CA:TRUE: to
        // webpki it is a CA, not a server; to the person it is an unknown issuer.
        W::CaUsedAsEndEntity if from_file => {
            return other(
                "unknown issuer: the server presents a CA certificate (CA:TRUE) of its own that is not in tls.ca_file",
            );
        }
        W::CaUsedAsEndEntity => {
            return other(
                "unknown issuer: the server presents a CA certificate (CA:TRUE) of its own; put exactly this certificate in tls.ca_file to pin it",
            );
        }
        W::EndEntityUsedAsCa => {
            return other("a certificate of the chain is not a CA but signs another");
        }
        other_error => CertificateError::Other(OtherError(Arc::new(other_error))),
    };
    rustls::Error::InvalidCertificate(c)
}

/// The roots a verifier trusts.
#[derive(Debug)]
struct Roots {
    anchors: Vec<TrustAnchor<'static>>,
    /// `tls.ca_file`'s certificates, compared whole with the presented leaf.
    pins: Vec<CertificateDer<'static>>,
    /// NotAfter of each `tls.ca_file` certificate, by SubjectPublicKeyInfo, so that a
    /// verified chain's anchor has one (the built-in roots carry none).
    anchor_not_after: Vec<(Vec<u8>, i64)>,
    /// Whether the roots come from `tls.ca_file` (for the words of an unknown issuer).
    from_file: bool,
}

/// The server certificate verifier of every agent; see the module documentation.
#[derive(Debug)]
pub(super) struct Verifier {
    /// `None` when verification is disabled.
    roots: Option<Roots>,
    provider: Arc<CryptoProvider>,
}

impl Verifier {
    pub(super) fn new(tls: &TlsSettings, provider: Arc<CryptoProvider>) -> Result<Self, String> {
        if tls.insecure {
            return Ok(Verifier {
                roots: None,
                provider,
            });
        }
        let roots = match &tls.roots {
            None => Roots {
                anchors: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                pins: Vec::new(),
                anchor_not_after: Vec::new(),
                from_file: false,
            },
            Some(certs) => {
                let mut anchors = Vec::new();
                let mut anchor_not_after = Vec::new();
                for cert in certs {
                    let Ok(anchor) = webpki::anchor_from_trusted_cert(cert) else {
                        continue;
                    };
                    if let Some(t) = not_after(cert) {
                        anchor_not_after.push((anchor.subject_public_key_info.to_vec(), t));
                    }
                    anchors.push(anchor.to_owned());
                }
                if anchors.is_empty() {
                    return Err("tls.ca_file holds no usable certificate".into());
                }
                Roots {
                    anchors,
                    pins: certs.clone(),
                    anchor_not_after,
                    from_file: true,
                }
            }
        };
        Ok(Verifier {
            roots: Some(roots),
            provider,
        })
    }

    /// Verifies `end_entity` for `name`; returns the earliest NotAfter of the verified
    /// chain.
    fn judge(
        &self,
        roots: &Roots,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<Option<i64>, rustls::Error> {
        let pki = |e| pki(e, roots.from_file);
        let leaf = webpki::EndEntityCert::try_from(end_entity).map_err(pki)?;
        if roots.pins.iter().any(|p| p.as_ref() == end_entity.as_ref()) {
            let (_, parsed) = x509_parser::parse_x509_certificate(end_entity)
                .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
            let validity = parsed.validity();
            let (from, to) = (
                validity.not_before.timestamp(),
                validity.not_after.timestamp(),
            );
            let at = |t: i64| {
                UnixTime::since_unix_epoch(std::time::Duration::from_secs(t.max(0) as u64))
            };
            let now_secs = secs(now);
            if now_secs < from {
                return Err(CertificateError::NotValidYetContext {
                    time: now,
                    not_before: at(from),
                }
                .into());
            }
            if now_secs > to {
                return Err(CertificateError::ExpiredContext {
                    time: now,
                    not_after: at(to),
                }
                .into());
            }
            leaf.verify_is_valid_for_subject_name(name).map_err(pki)?;
            return Ok(Some(to));
        }
        let path = leaf
            .verify_for_usage(
                self.provider.signature_verification_algorithms.all,
                &roots.anchors,
                intermediates,
                now,
                webpki::KeyUsage::server_auth(),
                None,
                None,
            )
            .map_err(pki)?;
        leaf.verify_is_valid_for_subject_name(name).map_err(pki)?;
        let anchor_spki = path.anchor().subject_public_key_info.as_ref();
        let anchor = roots
            .anchor_not_after
            .iter()
            .find(|(spki, _)| spki.as_slice() == anchor_spki)
            .map(|(_, t)| *t);
        let earliest = std::iter::once(not_after(end_entity))
            .chain(
                path.intermediate_certificates()
                    .map(|c| not_after(&c.der())),
            )
            .chain(std::iter::once(anchor))
            .flatten()
            .min();
        Ok(earliest)
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let earliest = std::iter::once(end_entity)
            .chain(intermediates)
            .filter_map(|c| not_after(c.as_ref()))
            .min();
        let leaf = CertInfo::of(end_entity);
        with_trace(|t| {
            t.cert_not_after = earliest;
            let facts = t.tls.get_or_insert_with(Default::default);
            facts.leaf = leaf;
            facts.verified_not_after = None;
        });
        let Some(roots) = &self.roots else {
            return Ok(ServerCertVerified::assertion());
        };
        match self.judge(roots, end_entity, intermediates, server_name, now) {
            Ok(verified) => {
                with_trace(|t| {
                    if let Some(facts) = t.tls.as_mut() {
                        facts.verified_not_after = verified;
                    }
                });
                Ok(ServerCertVerified::assertion())
            }
            Err(e) => {
                let cx = Context {
                    versions: (12, 13),
                    client_cert: false,
                    ca_file: roots.from_file,
                };
                fail(Stage::Tls, words(&e, cx));
                Err(e)
            }
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

/// What identifies a version of a file on disk: a rotation changes one of these.
type Stamp = Option<(u64, u64, u64, i64, i64, i64, i64)>;

fn stamp(path: &std::path::Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((
        m.dev(),
        m.ino(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    ))
}

/// `tls.cert_file` and `tls.key_file`: loaded at start-up (an error then is a config
/// problem) and loaded again when either file changes on disk. A pair that does not
/// load (a rotation caught half-way: new certificate, old key) leaves the last good
/// pair in use and is tried again at the next handshake.
pub(super) struct ClientCertFiles {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Mutex<(Stamp, Stamp, Arc<CertifiedKey>)>,
}

impl fmt::Debug for ClientCertFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertFiles")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ClientCertFiles {
    /// Loads the pair now; the error names the files, never their content.
    pub(super) fn open(cert: PathBuf, key: PathBuf) -> Result<ClientCertFiles, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let stamps = (stamp(&cert), stamp(&key));
        let pair = load_pair(&cert, &key, &provider)?;
        Ok(ClientCertFiles {
            cert,
            key,
            provider,
            current: Mutex::new((stamps.0, stamps.1, Arc::new(pair))),
        })
    }

    /// The pair to present: reloaded first when a file changed.
    fn pair(&self) -> Arc<CertifiedKey> {
        let mut current = lock(&self.current);
        let stamps = (stamp(&self.cert), stamp(&self.key));
        if stamps != (current.0, current.1) {
            match load_pair(&self.cert, &self.key, &self.provider) {
                Ok(pair) => *current = (stamps.0, stamps.1, Arc::new(pair)),
                Err(e) => log::warn!(
                    "msg=\"cannot reload the TLS client certificate; using the last good pair\" error={e:?}"
                ),
            }
        }
        Arc::clone(&current.2)
    }
}

fn load_pair(
    cert: &std::path::Path,
    key: &std::path::Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
    let chain = tls::read_certificates(cert).map_err(|e| format!("tls.cert_file {e}"))?;
    let secret = tls::read_private_key(key).map_err(|e| format!("tls.key_file {e}"))?;
    CertifiedKey::from_der(chain, secret, provider).map_err(|e| {
        format!(
            "tls.cert_file {} and tls.key_file {} do not make a pair: {e}",
            cert.display(),
            key.display()
        )
    })
}

impl ResolvesClientCert for ClientCertFiles {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.pair())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_facts_are_read_as_go_prints_them() {
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "web, one");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Acme");
        params.serial_number = Some(rcgen::SerialNumber::from(vec![0x00, 0x1f, 0xa0]));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let info = CertInfo::of(cert.der()).unwrap();
        assert_eq!(info.subject, "O=Acme,CN=web\\, one");
        assert_eq!(info.issuer, info.subject);
        assert_eq!(info.serial, "1fa0");
        assert_eq!(info.san, "localhost,127.0.0.1");
        assert_eq!(info.fingerprint_sha256.len(), 64);
        assert_eq!(escape_rdn(" #a "), "\\ #a\\ ");
        assert_eq!(
            alert_name(AlertDescription::CertificateRequired),
            "certificate_required"
        );
    }

    #[test]
    fn verification_errors_read_as_causes() {
        let cx = Context {
            versions: (13, 13),
            client_cert: false,
            ca_file: true,
        };
        let t = |s: u64| UnixTime::since_unix_epoch(std::time::Duration::from_secs(s));
        let expired = rustls::Error::InvalidCertificate(CertificateError::ExpiredContext {
            time: t(1_800_000_000),
            not_after: t(1_795_132_800),
        });
        assert_eq!(
            words(&expired, cx),
            "certificate expired at 2026-11-20T00:00:00Z"
        );
        let name = pki(
            webpki::Error::CertNotValidForName(webpki::InvalidNameContext {
                expected: ServerName::try_from("127.0.0.1").unwrap(),
                presented: vec!["DnsName(\"localhost\")".into()],
            }),
            true,
        );
        assert!(
            words(&name, cx).starts_with("certificate not valid for name 127.0.0.1 (it is for "),
            "{}",
            words(&name, cx)
        );
        let alert = rustls::Error::AlertReceived(AlertDescription::ProtocolVersion);
        assert_eq!(
            words(&alert, cx),
            "peer offers only TLS 1.2 or older (tls.min_version is TLS13)"
        );
        assert!(words(&pki(webpki::Error::UnknownIssuer, true), cx).starts_with("unknown issuer"));
        let ca_leaf = words(&pki(webpki::Error::CaUsedAsEndEntity, false), cx);
        assert!(
            ca_leaf.starts_with("unknown issuer") && ca_leaf.contains("CA:TRUE"),
            "{ca_leaf}"
        );
    }
}
