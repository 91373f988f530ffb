//! TLS material both sides of sonde read: PEM certificate and key files, and protocol
//! versions as written in configs (`TLS12`, `TLS13`, the exporter-toolkit and
//! blackbox_exporter spelling). The server (`web/`) and the outbound agents (`net/`)
//! share these so a file or version is accepted or refused the same way everywhere.

use std::path::Path;

use rustls::SupportedProtocolVersion;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::files::read_capped;

/// Largest PEM file read.
const PEM_LIMIT: u64 = 1 << 20;

/// Every `CERTIFICATE` block of a PEM text, as DER.
pub fn parse_certificates(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

/// The certificates of a PEM file; an error when it holds none.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_capped(path, PEM_LIMIT).map_err(|e| format!("{}: {e}", path.display()))?;
    let certs = parse_certificates(&pem);
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// The private key of a PEM file: PKCS#8, RSA (PKCS#1) or EC (SEC1).
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read_capped(path, PEM_LIMIT).map_err(|e| format!("{}: {e}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|_| format!("{}: no PKCS#8, RSA or EC private key in it", path.display()))
}

/// One end of a version range as written: `TLS12` or `TLS13`.
pub fn parse_version(text: &str) -> Result<u8, String> {
    match text {
        "TLS12" => Ok(12),
        "TLS13" => Ok(13),
        other => Err(format!(
            "TLS version {other:?} is not supported; use TLS12 or TLS13"
        )),
    }
}

/// The protocol versions from `min` to `max` (each 12 or 13), newest first.
pub fn versions(min: u8, max: u8) -> Result<&'static [&'static SupportedProtocolVersion], String> {
    static ONLY_12: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
    static ONLY_13: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    static BOTH: [&SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];
    match (min, max) {
        (12, 12) => Ok(&ONLY_12),
        (13, 13) => Ok(&ONLY_13),
        (12, 13) => Ok(&BOTH),
        _ => Err("min_version is above max_version".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_and_ordered() {
        assert_eq!(parse_version("TLS12"), Ok(12));
        assert!(parse_version("TLS11").unwrap_err().contains("TLS11"));
        assert_eq!(versions(12, 13).unwrap().len(), 2);
        assert_eq!(versions(13, 13).unwrap().len(), 1);
        assert!(versions(13, 12).is_err());
    }

    #[test]
    fn pem_files_without_what_they_should_hold_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pem");
        std::fs::write(&path, "not pem").unwrap();
        assert!(
            read_certificates(&path)
                .unwrap_err()
                .ends_with("no PEM certificate in it")
        );
        assert!(read_private_key(&path).unwrap_err().contains("no PKCS#8"));
        assert!(read_certificates(&dir.path().join("missing")).is_err());
    }
}
