//! `--web.config.file`: HTTPS with a test CA (PKCS#8, RSA and EC keys), basic auth with
//! bcrypt hashes, a certificate replaced on disk while running, plain HTTP on the TLS port
//! and bad web configs.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const CONFIG: &str = "checks:\n  - name: self\n    kind: http\n    interval: 1m\n    urls: [\"http://127.0.0.1:9/\"]\nmodules:\n  http_2xx: {timeout: 2s}\n";

/// One HTTPS request trusting only `ca_pem`; Err carries the TLS or I/O failure.
fn https(
    addr: SocketAddr,
    ca_pem: &str,
    path: &str,
    auth: Option<(&str, &str)>,
) -> Result<HttpResponse, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let sock = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some((u, p)) = auth {
        let token = base64(format!("{u}:{p}").as_bytes());
        head.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    head.push_str("\r\n");
    tls.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        // Some peers close without close_notify after Connection: close.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    Ok(parse_response(&raw))
}

fn start_with_web_config(dir: Dir, web: &str) -> Sonde {
    dir.write("sonde.yml", CONFIG);
    let web_path = dir.write("web.yml", web);
    Sonde::start_in(dir, &["--web.config.file", web_path.to_str().unwrap()])
}

/// sonde serving HTTPS (certificate of `ca`) with basic auth for prometheus/s3cret and a
/// configured response header.
struct Guarded {
    sonde: Sonde,
    ca: TestCa,
    /// The bcrypt hash of the web config.
    hash: String,
}

impl Guarded {
    fn start() -> Guarded {
        let ca = TestCa::new();
        let leaf = ca.leaf((2020, 1, 1), (2045, 1, 1));
        let dir = Dir::new();
        dir.write("tls.crt", &leaf.cert_pem);
        dir.write("tls.key", &leaf.key_pem);
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let web = format!(
            "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\nbasic_auth_users:\n  prometheus: \"{hash}\"\nhttp_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"
        );
        let sonde = start_with_web_config(dir, &web);
        Guarded { sonde, ca, hash }
    }

    fn get(&self, path: &str, auth: Option<(&str, &str)>) -> Result<HttpResponse, String> {
        https(self.sonde.addr, &self.ca.pem, path, auth)
    }

    /// Neither the password nor its hash is in the log after what the test did.
    fn assert_no_secret_logged(&self) {
        let log = self.sonde.log().join("\n");
        assert!(
            !log.contains("s3cret") && !log.contains(&self.hash),
            "{log}"
        );
    }
}

#[test]
fn https_with_the_right_password_serves_metrics_and_the_configured_headers() {
    let guarded = Guarded::start();
    let ok = guarded
        .get("/metrics", Some(("prometheus", "s3cret")))
        .unwrap();
    assert_eq!(ok.status, 200);
    assert!(ok.text().contains("sonde_build_info"));
    assert_eq!(ok.header("x-content-type-options"), Some("nosniff"));
    guarded.assert_no_secret_logged();
}

#[test]
fn every_endpoint_refuses_no_a_wrong_or_an_unknown_user_s_credentials() {
    let guarded = Guarded::start();
    for path in [
        "/metrics",
        "/",
        "/-/healthy",
        "/-/ready",
        "/healthcheck",
        "/queryurl",
        "/api/v1/checks",
        "/probe?target=http%3A%2F%2F127.0.0.1%3A9%2F&module=http_2xx",
        "/nope",
    ] {
        let r = guarded.get(path, None).unwrap();
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"sonde\""));
    }
    // Verified once, before the failures below.
    let ok = guarded.get("/-/healthy", Some(("prometheus", "s3cret")));
    assert_eq!(ok.unwrap().status, 200);
    // Wrong passwords and unknown users: 401 for the first five failures of this
    // address; after that the address is slowed down: 429 with Retry-After, held back a
    // second, and a bcrypt verification (401) only once its back-off has passed.
    let mut statuses = Vec::new();
    for path in ["/metrics", "/", "/-/healthy", "/api/v1/checks"] {
        for auth in [("prometheus", "wrong"), ("nobody", "s3cret")] {
            let r = guarded.get(path, Some(auth)).unwrap();
            if r.status == 429 {
                assert!(r.header("retry-after").is_some(), "{path}");
            }
            statuses.push(r.status);
        }
    }
    assert_eq!(statuses[..5], [401; 5], "{statuses:?}");
    assert!(
        statuses[5..].iter().all(|s| *s == 401 || *s == 429)
            && statuses[5..].iter().filter(|s| **s == 429).count() >= 2,
        "{statuses:?}"
    );
    // Credentials verified before still pass at once from the slowed-down address.
    let r = guarded
        .get("/-/healthy", Some(("prometheus", "s3cret")))
        .unwrap();
    assert_eq!(r.status, 200);
    guarded.assert_no_secret_logged();
}

/// `/probe` is served like every endpoint: over TLS, with the password, with the
/// configured headers, also when its answer is written by the thread that probed.
#[test]
fn probe_answers_over_https_with_the_password_and_the_configured_headers() {
    let guarded = Guarded::start();
    let path = "/probe?target=http%3A%2F%2F127.0.0.1%3A9%2F&module=http_2xx";
    let ok = guarded.get(path, Some(("prometheus", "s3cret"))).unwrap();
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert!(ok.text().contains("\nprobe_success 0\n"), "{}", ok.text());
    assert!(
        ok.text()
            .contains("probe_failure_reason{reason=\"connect\"} 1\n")
    );
    assert_eq!(ok.header("x-content-type-options"), Some("nosniff"));
    guarded.assert_no_secret_logged();
}

/// A verification is cached, but only for the password that passed it.
#[test]
fn a_cached_verification_still_rejects_a_different_password() {
    let guarded = Guarded::start();
    let healthy = |password| {
        guarded
            .get("/-/healthy", Some(("prometheus", password)))
            .unwrap()
            .status
    };
    assert_eq!(healthy("s3cret"), 200);
    assert_eq!(healthy("s3cre"), 401);
    guarded.assert_no_secret_logged();
}

#[test]
fn plain_http_on_the_tls_port_gets_a_plain_400() {
    let guarded = Guarded::start();
    let raw = raw_exchange(
        guarded.sonde.addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.0 400 Bad Request"), "{text}");
    assert!(text.contains("HTTP request to an HTTPS server"));
}

#[test]
fn a_client_that_does_not_trust_the_ca_fails_and_the_server_carries_on() {
    let guarded = Guarded::start();
    let other = TestCa::new();
    assert!(https(guarded.sonde.addr, &other.pem, "/-/healthy", None).is_err());
    assert_eq!(
        guarded
            .get("/-/healthy", Some(("prometheus", "s3cret")))
            .unwrap()
            .status,
        200
    );
    guarded.assert_no_secret_logged();
}

#[test]
fn an_expired_certificate_replaced_on_disk_is_picked_up() {
    let ca = TestCa::new();
    let expired = ca.leaf((2020, 1, 1), (2021, 1, 1));
    let dir = Dir::new();
    let crt = dir.write("tls.crt", &expired.cert_pem);
    let key = dir.write("tls.key", &expired.key_pem);
    let sonde = start_with_web_config(
        dir,
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n",
    );
    let err = https(sonde.addr, &ca.pem, "/-/healthy", None).unwrap_err();
    assert!(err.to_lowercase().contains("expired"), "{err}");
    let fresh = ca.leaf((2020, 1, 1), (2045, 1, 1));
    std::fs::write(&key, &fresh.key_pem).unwrap();
    std::fs::write(&crt, &fresh.cert_pem).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match https(sonde.addr, &ca.pem, "/-/healthy", None) {
            Ok(r) if r.status == 200 => break,
            other => assert!(
                Instant::now() < deadline,
                "new certificate not served: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        sonde
            .log()
            .iter()
            .any(|l| l.contains("web config reloaded"))
    );
}

/// Makes a key with `openssl <genkey>` (PEM with `label`) and a self-signed certificate
/// for it, and asserts that sonde serves HTTPS with them.
fn serves_https_with_an_openssl_key(kind: &str, genkey: &[&str], label: &str) {
    let dir = Dir::new();
    openssl(dir.path(), genkey);
    let key = std::fs::read_to_string(dir.path().join("tls.key")).unwrap();
    assert!(key.contains(label), "{kind}: {key}");
    #[rustfmt::skip]
    openssl(dir.path(), &[
        "req", "-x509", "-new", "-key", "tls.key", "-out", "tls.crt", "-days", "30",
        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
        "-addext", "basicConstraints=critical,CA:FALSE",
    ]);
    let cert = std::fs::read_to_string(dir.path().join("tls.crt")).unwrap();
    let sonde = start_with_web_config(
        dir,
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  min_version: TLS12\n",
    );
    let r = https(sonde.addr, &cert, "/-/healthy", None);
    // A self-signed leaf is its own trust anchor here.
    assert_eq!(
        r.map(|r| r.status).map_err(|e| format!("{kind}: {e}")),
        Ok(200)
    );
}

#[test]
fn an_rsa_pkcs1_key_from_openssl_serves_https() {
    serves_https_with_an_openssl_key(
        "rsa",
        &["genrsa", "-traditional", "-out", "tls.key", "2048"],
        "BEGIN RSA PRIVATE KEY",
    );
}

#[test]
fn an_ec_sec1_key_from_openssl_serves_https() {
    serves_https_with_an_openssl_key(
        "ec",
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "tls.key",
        ],
        "BEGIN EC PRIVATE KEY",
    );
}

#[test]
fn bad_web_configs_exit_2_naming_the_file_and_problem() {
    let dir = Dir::new();
    dir.write("sonde.yml", CONFIG);
    let ca = TestCa::new();
    let leaf = ca.leaf((2020, 1, 1), (2045, 1, 1));
    dir.write("tls.crt", &leaf.cert_pem);
    dir.write("tls.key", &leaf.key_pem);
    dir.write(
        "other.key",
        TestCa::new().leaf((2020, 1, 1), (2045, 1, 1)).key_pem,
    );
    let cases = [
        (
            "tls_server_config:\n  cert_file: tls.crt\n",
            "missing field `key_file`",
        ),
        (
            "tls_server_config:\n  cert_file: nope.crt\n  key_file: tls.key\n",
            "cert_file",
        ),
        (
            "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.crt\n",
            "no PKCS#8, RSA or EC private key",
        ),
        (
            "tls_server_config:\n  cert_file: tls.crt\n  key_file: other.key\n",
            "do not work together",
        ),
        (
            "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  min_version: TLS10\n",
            "TLS10",
        ),
        (
            "basic_auth_users:\n  prometheus: plaintext\n",
            "not a bcrypt hash",
        ),
        (
            "basic_auth_user:\n  prometheus: x\n",
            "unknown field `basic_auth_user`",
        ),
        ("tls_server_config: [\n", ""),
    ];
    for (web, expected) in cases {
        let path = dir.write("web.yml", web);
        let out = run(&[
            "-c",
            dir.path().join("sonde.yml").to_str().unwrap(),
            "--web.config.file",
            path.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{web}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("sonde:")).collect();
        assert_eq!(lines.len(), 1, "{web}: {stderr}");
        assert!(
            lines[0].starts_with(&format!("sonde: {}:", path.display())),
            "{web}: {stderr}"
        );
        assert!(lines[0].contains(expected), "{web}: {stderr}");
    }
}
