//! TLS of the http kind against servers written here on 127.0.0.1: pinned self-signed
//! certificates (made with `openssl req -x509`, as users make them), a wrong pin,
//! expired and wrong-name certificates, client certificates (PKCS#8, RSA and EC keys;
//! replaced on disk while sonde runs), TLS versions, a handshake that never finishes,
//! a server that refuses HTTP/1.1, and what is exported about the chain. Every failure
//! is checked for its reason and its words in the log, `/api/v1/checks` and `/queryurl`.

mod common;
mod outbound;

use std::io::Read;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::*;
use outbound::*;

fn route(req: &SeenRequest) -> Reply {
    match req.path.as_str() {
        "/ok" => Reply::status(200, "all good"),
        _ => Reply::status(404, "no such fixture"),
    }
}

/// A self-signed certificate without CA:TRUE (rcgen's default), valid as given.
fn plain_self_signed(names: &[&str], not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> Leaf {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "plain self-signed");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Leaf {
        chain: vec![cert.der().clone()],
        key: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// A TLS server speaking only `versions`, announcing `alpn`.
fn tls_server(
    leaf: &Leaf,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Fixture {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(leaf.chain.clone(), leaf.key.clone_key())
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Fixture::start_with(Some(Arc::new(config)), route)
}

/// What one running sonde showed about every site of [`pins`].
struct PinRun {
    metrics: Exposition,
    checks: serde_json::Value,
    queryurl: serde_json::Value,
    page: String,
    log: Vec<String>,
    urls: std::collections::HashMap<&'static str, String>,
    leaf_not_after: i64,
}

impl PinRun {
    fn url(&self, check: &str) -> &str {
        &self.urls[check]
    }

    fn value(&self, name: &str, check: &str) -> Option<f64> {
        self.metrics.value(&format!(
            "{name}{{check=\"{check}\",url=\"{}\"}}",
            self.url(check)
        ))
    }

    fn reason(&self, check: &str, reason: &str) -> Option<f64> {
        self.metrics.value(&format!(
            "sonde_http_failures_total{{check=\"{check}\",url=\"{}\",reason=\"{reason}\"}}",
            self.url(check)
        ))
    }

    /// The check's error in `/api/v1/checks`.
    fn api_error(&self, check: &str) -> String {
        self.checks["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == check)
            .map(|c| c["error"].as_str().unwrap_or("").to_string())
            .unwrap()
    }

    /// Asserts that `words` is the cause everywhere a person looks.
    fn assert_cause(&self, check: &str, reason: &str, words: &str) {
        let url = self.url(check);
        assert_eq!(self.value("sonde_http_up", check), Some(0.0), "{check}");
        assert_eq!(
            self.reason(check, reason),
            Some(1.0),
            "{check}: {}",
            self.metrics.0
        );
        let cause = self.queryurl["response"][url]["cause"]
            .as_str()
            .unwrap_or_default();
        assert!(cause.contains(words), "{check}: /queryurl cause {cause:?}");
        assert_eq!(self.queryurl["response"][url]["error"], reason);
        let api = self.api_error(check);
        assert!(
            api.contains(words) && api.contains(url),
            "{check}: /api/v1/checks error {api:?}"
        );
        assert!(
            self.page.contains(words),
            "{check}: the page does not say {words:?}"
        );
        let logged = self
            .log
            .iter()
            .any(|l| l.contains("probe failed") && l.contains(url) && l.contains(words));
        assert!(
            logged,
            "{check}: no log line with {words:?}: {:#?}",
            self.log
        );
    }
}

static PINS: OnceLock<Result<PinRun, String>> = OnceLock::new();

fn pins() -> &'static PinRun {
    shared(&PINS, run_pins)
}

/// A certificate made by `openssl req -x509`, checked to say CA:TRUE (else the pin
/// test would prove nothing).
fn openssl_ca_true(dir: &Dir) -> Leaf {
    let ca_true = openssl_self_signed(dir.path(), "ca-true");
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in", "ca-true.pem"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("CA:TRUE"),
        "openssl req -x509 should write CA:TRUE; the pin test would prove nothing"
    );
    ca_true
}

/// Serves every certificate case and runs one sonde over all of them.
fn run_pins() -> PinRun {
    let dir = Dir::new();
    let ca_true = openssl_ca_true(&dir);
    let non_ca = plain_self_signed(&["localhost", "127.0.0.1"], (2020, 1, 1), (2044, 4, 4));
    let expired_pin = plain_self_signed(&["localhost", "127.0.0.1"], (2020, 1, 1), (2021, 3, 4));
    let ca = TestCa::new();
    let expired = ca.leaf((2020, 1, 1), (2021, 3, 4));
    let localhost_only = ca.leaf_for(&["localhost"], (2020, 1, 1), (2040, 6, 15));
    dir.write("ca-true-pin.pem", &ca_true.cert_pem);
    dir.write("non-ca-pin.pem", &non_ca.cert_pem);
    dir.write("expired-pin.pem", &expired_pin.cert_pem);
    dir.write("ca.pem", &ca.pem);
    let v12_13: &[&'static rustls::SupportedProtocolVersion] =
        &[&rustls::version::TLS13, &rustls::version::TLS12];
    // (check, certificate served, pin, host of the URL, more tls keys)
    let cases = [
        (
            "pinned_ca_true",
            &ca_true,
            "ca-true-pin.pem",
            "localhost",
            "",
        ),
        ("pinned_non_ca", &non_ca, "non-ca-pin.pem", "localhost", ""),
        ("wrong_pin", &ca_true, "non-ca-pin.pem", "localhost", ""),
        (
            "expired_pin",
            &expired_pin,
            "expired-pin.pem",
            "localhost",
            "",
        ),
        ("expired", &expired, "ca.pem", "localhost", ""),
        ("wrong_name", &localhost_only, "ca.pem", "127.0.0.1", ""),
        (
            "pinned_wrong_name",
            &non_ca,
            "non-ca-pin.pem",
            "localhost",
            ", server_name: other.test",
        ),
    ];
    let servers = cases.map(|(name, cert, pin, host, more)| {
        (name, tls_server(cert, v12_13, &[]), pin, host, more)
    });
    let mut config = String::from("checks:\n");
    let mut urls = std::collections::HashMap::new();
    for (name, server, pin, host, more) in &servers {
        let url = format!("https://{host}:{}/ok", server.addr.port());
        config.push_str(&format!(
            "  - name: {name}\n    kind: http\n    interval: 1m\n    tls: {{ca_file: {pin}{more}}}\n    urls: [\"{url}\"]\n"
        ));
        urls.insert(*name, url);
    }
    dir.write("sonde.yml", config);
    let sonde = Sonde::start_in(dir, &[]);
    sonde.wait_ready();
    let leaf_not_after = {
        let der = &ca_true.chain[0];
        let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
        cert.validity().not_after.timestamp()
    };
    let run = PinRun {
        metrics: sonde.metrics(),
        checks: sonde.get("/api/v1/checks").json(),
        queryurl: sonde.get("/queryurl").json(),
        page: sonde.get("/").text(),
        log: sonde.log(),
        urls,
        leaf_not_after,
    };
    drop(servers);
    run
}

const CHAIN: &str = "sonde_http_tls_chain_not_after_timestamp_seconds";
const LEAF: &str = "sonde_http_tls_cert_not_after_timestamp_seconds";

/// The first bullet: `openssl req -x509` (CA:TRUE) pinned with `tls.ca_file`
/// is trusted, as curl and blackbox_exporter trust it.
#[test]
fn a_pinned_self_signed_ca_true_certificate_verifies() {
    let r = pins();
    assert_eq!(
        r.value("sonde_http_up", "pinned_ca_true"),
        Some(1.0),
        "{}",
        r.metrics.0
    );
    assert_eq!(
        r.value(CHAIN, "pinned_ca_true"),
        Some(r.leaf_not_after as f64)
    );
    assert!(r.metrics.has(&format!(
        "sonde_http_tls_cert_info{{check=\"pinned_ca_true\",url=\"{}\",fingerprint_sha256=\"",
        r.url("pinned_ca_true")
    )));
    assert!(
        r.metrics
            .0
            .contains("subject=\"CN=localhost\",issuer=\"CN=localhost\"")
    );
}

#[test]
fn a_pinned_self_signed_certificate_without_ca_true_verifies() {
    let r = pins();
    assert_eq!(r.value("sonde_http_up", "pinned_non_ca"), Some(1.0));
    assert_eq!(
        r.value(CHAIN, "pinned_non_ca"),
        Some(unix_day(2044, 4, 4) as f64)
    );
}

/// A pin of another certificate: unknown issuer; what was presented is still exported,
/// what was verified is not.
#[test]
fn a_wrong_pin_fails_with_unknown_issuer() {
    let r = pins();
    r.assert_cause("wrong_pin", "tls", "unknown issuer");
    assert_eq!(r.value(LEAF, "wrong_pin"), Some(r.leaf_not_after as f64));
    assert_eq!(r.value(CHAIN, "wrong_pin"), None);
    assert!(r.metrics.has(&format!(
        "sonde_http_tls_cert_info{{check=\"wrong_pin\",url=\"{}\"",
        r.url("wrong_pin")
    )));
}

#[test]
fn an_expired_pinned_certificate_says_when_it_expired() {
    pins().assert_cause(
        "expired_pin",
        "tls",
        "certificate expired at 2021-03-04T00:00:00Z",
    );
}

#[test]
fn an_expired_certificate_of_a_ca_says_when_it_expired() {
    let r = pins();
    r.assert_cause(
        "expired",
        "tls",
        "certificate expired at 2021-03-04T00:00:00Z",
    );
    assert_eq!(r.value(LEAF, "expired"), Some(unix_day(2021, 3, 4) as f64));
}

#[test]
fn a_certificate_for_another_name_says_which_name() {
    let r = pins();
    r.assert_cause(
        "wrong_name",
        "tls",
        "certificate not valid for name 127.0.0.1",
    );
    r.assert_cause(
        "pinned_wrong_name",
        "tls",
        "certificate not valid for name other.test",
    );
}

// ---------------------------------------------------------------------------------
// Client certificates

/// A server that demands a client certificate: none is a cause in words; a PKCS#8, an
/// RSA and an EC key each get in.
#[test]
fn mutual_tls_with_each_key_form_and_without_a_certificate() {
    let pki = ClientPki::new();
    for (name, form) in [("p8", "pkcs8"), ("rsa", "rsa"), ("ec", "ec")] {
        pki.client(name, form, "ca");
    }
    let ca = TestCa::new();
    let server = pki.server(&ca.leaf((2020, 1, 1), (2040, 1, 1)), route);
    let url = server.https_url("/ok");
    let dir = Dir::new();
    dir.write("server-ca.pem", &ca.pem);
    let p = pki.path().display();
    let mut config = format!(
        "checks:\n  - name: none\n    kind: http\n    tls: {{ca_file: server-ca.pem}}\n    urls: [\"{url}\"]\n"
    );
    for name in ["p8", "rsa", "ec"] {
        config.push_str(&format!(
            "  - name: {name}\n    kind: http\n    tls: {{ca_file: server-ca.pem, cert_file: {p}/{name}.pem, key_file: {p}/{name}.key}}\n    urls: [\"{url}\"]\n"
        ));
    }
    let cfg = dir.write("sonde.yml", config);
    let out = run(&["--once", "-c", cfg.to_str().unwrap()]);
    let m = Exposition(String::from_utf8(out.stdout).unwrap());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for name in ["p8", "rsa", "ec"] {
        assert_eq!(
            m.value(&format!("sonde_http_up{{check=\"{name}\",url=\"{url}\"}}")),
            Some(1.0),
            "{name}: {stderr}"
        );
    }
    assert_eq!(
        m.value(&format!(
            "sonde_http_failures_total{{check=\"none\",url=\"{url}\",reason=\"tls\"}}"
        )),
        Some(1.0),
        "{}",
        m.0
    );
    assert!(
        stderr.contains(
            "the server requires a client certificate; set tls.cert_file and tls.key_file"
        ),
        "{stderr}"
    );
}

/// The key and certificate are replaced on disk while sonde runs: the next run uses
/// the new pair, without a reload. A pair caught half-way (new certificate, old key)
/// leaves the last good pair in use.
#[test]
fn a_client_certificate_replaced_on_disk_is_used_by_the_next_run() {
    let pki = ClientPki::new();
    pki.client("good", "ec", "ca");
    pki.client("rogue", "pkcs8", "rogue-ca");
    pki.client("other", "rsa", "ca");
    let ca = TestCa::new();
    let server = pki.server(&ca.leaf((2020, 1, 1), (2040, 1, 1)), route);
    let url = server.https_url("/ok");
    let dir = Dir::new();
    dir.write("server-ca.pem", &ca.pem);
    dir.write("client.pem", read(pki.path(), "rogue.pem"));
    dir.write("client.key", read(pki.path(), "rogue.key"));
    dir.write(
        "sonde.yml",
        format!(
            "checks:\n  - name: mtls\n    kind: http\n    interval: 1s\n    tls: {{ca_file: server-ca.pem, cert_file: client.pem, key_file: client.key}}\n    urls: [\"{url}\"]\n"
        ),
    );
    let sonde = Sonde::start_in(dir, &[]);
    let up = format!("sonde_http_up{{check=\"mtls\",url=\"{url}\"}}");
    sonde.wait_metrics(15, |m| m.value(&up) == Some(0.0));
    let refused = sonde.log().iter().any(|l| {
        l.contains("probe failed") && l.contains("the server rejected the client certificate")
    });
    assert!(refused, "{:#?}", sonde.log());
    // The key first, then the certificate: between the two writes the pair does not
    // match and must not be used.
    let path = sonde.dir.path().to_path_buf();
    std::fs::write(path.join("client.key"), read(pki.path(), "good.key")).unwrap();
    std::fs::write(path.join("client.pem"), read(pki.path(), "good.pem")).unwrap();
    sonde.wait_metrics(15, |m| m.value(&up) == Some(1.0));
    // Half a rotation: a certificate whose key is not on disk.
    std::fs::write(path.join("client.pem"), read(pki.path(), "other.pem")).unwrap();
    let runs = "sonde_check_runs_total{check=\"mtls\",kind=\"http\"}";
    let before = sonde.metrics().value(runs).unwrap();
    let m = sonde.wait_metrics(15, |m| m.value(runs) >= Some(before + 2.0));
    assert_eq!(m.value(&up), Some(1.0), "the last good pair serves");
    assert!(
        sonde
            .log()
            .iter()
            .any(|l| l.contains("cannot reload the TLS client certificate")),
        "{:#?}",
        sonde.log()
    );
    for l in sonde.log() {
        assert!(!l.contains("PRIVATE KEY"), "{l}");
    }
}

// ---------------------------------------------------------------------------------
// Versions, info, handshakes

struct VersionRun {
    m: Exposition,
    stderr: String,
    v12: String,
    v13: String,
}

static VERSIONS: OnceLock<Result<VersionRun, String>> = OnceLock::new();

fn versions() -> &'static VersionRun {
    shared(&VERSIONS, || {
        let ca = TestCa::new();
        let leaf = ca.leaf((2020, 1, 1), (2042, 2, 2));
        let only12 = tls_server(&leaf, &[&rustls::version::TLS12], &[]);
        let only13 = tls_server(&leaf, &[&rustls::version::TLS13], &[]);
        let dir = Dir::new();
        dir.write("ca.pem", &ca.pem);
        let (v12, v13) = (only12.https_url("/ok"), only13.https_url("/ok"));
        let cfg = dir.write(
            "sonde.yml",
            format!(
                "checks:
  - name: min13
    kind: http
    tls: {{ca_file: ca.pem, min_version: TLS13}}
    urls: [\"{v12}\"]
  - name: max12
    kind: http
    tls: {{ca_file: ca.pem, max_version: TLS12}}
    urls: [\"{v13}\", \"{v12}\"]
  - name: any
    kind: http
    tls: {{ca_file: ca.pem}}
    urls: [\"{v13}\", \"{v12}\"]
"
            ),
        );
        let out = run(&["--once", "-c", cfg.to_str().unwrap()]);
        VersionRun {
            m: Exposition(String::from_utf8(out.stdout).unwrap()),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            v12,
            v13,
        }
    })
}

#[test]
fn min_version_tls13_against_a_tls12_server_fails_with_the_cause() {
    let r = versions();
    let reason = format!(
        "sonde_http_failures_total{{check=\"min13\",url=\"{}\",reason=\"tls\"}}",
        r.v12
    );
    assert_eq!(r.m.value(&reason), Some(1.0), "{}", r.m.0);
    assert!(
        r.stderr.contains("peer offers only TLS 1.2"),
        "{}",
        r.stderr
    );
    let reason = format!(
        "sonde_http_failures_total{{check=\"max12\",url=\"{}\",reason=\"tls\"}}",
        r.v13
    );
    assert_eq!(r.m.value(&reason), Some(1.0), "{}", r.m.0);
    assert!(
        r.stderr.contains("peer offers only TLS 1.3"),
        "{}",
        r.stderr
    );
}

#[test]
fn the_negotiated_version_and_cipher_are_exported() {
    let r = versions();
    for (url, version) in [(&r.v13, "TLS 1.3"), (&r.v12, "TLS 1.2")] {
        assert_eq!(
            r.m.value(&format!(
                "sonde_http_tls_version_info{{check=\"any\",url=\"{url}\",version=\"{version}\"}}"
            )),
            Some(1.0),
            "{}",
            r.m.0
        );
    }
    // rcgen's keys are ECDSA P-256; both suites are IANA names.
    assert!(r.m.has(&format!(
        "sonde_http_tls_cipher_info{{check=\"any\",url=\"{}\",cipher=\"TLS_AES_",
        r.v13
    )));
    assert!(r.m.has(&format!(
        "sonde_http_tls_cipher_info{{check=\"any\",url=\"{}\",cipher=\"TLS_ECDHE_ECDSA_WITH_",
        r.v12
    )));
    assert_eq!(
        r.m.value(&format!(
            "sonde_http_tls_chain_not_after_timestamp_seconds{{check=\"any\",url=\"{}\"}}",
            r.v12
        )),
        Some(unix_day(2042, 2, 2) as f64)
    );
    assert_eq!(
        r.m.value(&format!(
            "sonde_http_up{{check=\"max12\",url=\"{}\"}}",
            r.v12
        )),
        Some(1.0)
    );
}

/// The chain's NotAfter is the earliest of leaf, intermediate and the root in
/// `tls.ca_file`: here the intermediate expires first.
#[test]
fn the_verified_chain_not_after_is_its_earliest() {
    let mut root_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    root_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    root_params.not_after = rcgen::date_time_ymd(2050, 1, 1);
    root_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "root");
    let root_key = rcgen::KeyPair::generate().unwrap();
    let root = root_params.self_signed(&root_key).unwrap();
    let mut mid_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    mid_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    mid_params.not_after = rcgen::date_time_ymd(2039, 9, 9);
    mid_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "intermediate");
    let mid_key = rcgen::KeyPair::generate().unwrap();
    let mid = mid_params
        .signed_by(
            &mid_key,
            &rcgen::Issuer::from_params(&root_params, &root_key),
        )
        .unwrap();
    let mut leaf_params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf_params.not_after = rcgen::date_time_ymd(2045, 5, 5);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = leaf_params
        .signed_by(
            &leaf_key,
            &rcgen::Issuer::from_params(&mid_params, &mid_key),
        )
        .unwrap();
    let served = Leaf {
        chain: vec![leaf.der().clone(), mid.der().clone()],
        key: rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        cert_pem: leaf.pem(),
        key_pem: leaf_key.serialize_pem(),
    };
    let server = Fixture::start_tls(&served, route);
    let dir = Dir::new();
    dir.write("root.pem", root.pem());
    let url = server.https_url("/ok");
    let cfg = dir.write(
        "sonde.yml",
        format!("checks:\n  - name: chain\n    kind: http\n    tls: {{ca_file: root.pem}}\n    urls: [\"{url}\"]\n"),
    );
    let out = run(&["--once", "-c", cfg.to_str().unwrap()]);
    let m = Exposition(String::from_utf8(out.stdout).unwrap());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        m.value(&format!(
            "sonde_http_tls_chain_not_after_timestamp_seconds{{check=\"chain\",url=\"{url}\"}}"
        )),
        Some(unix_day(2039, 9, 9) as f64)
    );
    assert!(
        m.0.contains("subject=\"CN=rcgen self signed cert\",issuer=\"CN=intermediate\""),
        "{}",
        m.0
    );
}

/// Issue 12's last bullet and issue 17's item 9: a server that accepts the connection
/// and never answers the ClientHello is a `timeout`, not `io`, and says so.
#[test]
fn a_tls_handshake_that_never_finishes_is_a_timeout() {
    let silent = RawServer::start(|mut stream| {
        let mut sink = [0u8; 1024];
        while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
    });
    let url = format!("https://127.0.0.1:{}/", silent.addr.port());
    let dir = Dir::new();
    let cfg = dir.write(
        "sonde.yml",
        format!(
            "checks:\n  - name: silent\n    kind: http\n    timeout: 2s\n    urls: [\"{url}\"]\n"
        ),
    );
    let started = std::time::Instant::now();
    let out = run(&["--once", "-c", cfg.to_str().unwrap()]);
    assert!(started.elapsed() < Duration::from_secs(10));
    let m = Exposition(String::from_utf8(out.stdout).unwrap());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        m.value(&format!(
            "sonde_http_failures_total{{check=\"silent\",url=\"{url}\",reason=\"timeout\"}}"
        )),
        Some(1.0),
        "{}",
        m.0
    );
    assert!(
        stderr.contains("TLS handshake did not finish within 2s"),
        "{stderr}"
    );
}

/// HTTP/2 is outside sonde (ureq speaks HTTP/1.1): a server that accepts only h2 ends
/// the handshake, and the cause says why.
#[test]
fn a_server_that_refuses_http_1_1_is_a_tls_failure_that_says_so() {
    let ca = TestCa::new();
    let h2_only = tls_server(
        &ca.leaf((2020, 1, 1), (2040, 1, 1)),
        &[&rustls::version::TLS13],
        &[b"h2"],
    );
    let url = h2_only.https_url("/ok");
    let dir = Dir::new();
    dir.write("ca.pem", &ca.pem);
    let cfg = dir.write(
        "sonde.yml",
        format!("checks:\n  - name: h2\n    kind: http\n    tls: {{ca_file: ca.pem}}\n    urls: [\"{url}\"]\n"),
    );
    let out = run(&["--once", "-c", cfg.to_str().unwrap()]);
    let m = Exposition(String::from_utf8(out.stdout).unwrap());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        m.value(&format!(
            "sonde_http_failures_total{{check=\"h2\",url=\"{url}\",reason=\"tls\"}}"
        )),
        Some(1.0)
    );
    assert!(stderr.contains("the server refuses HTTP/1.1"), "{stderr}");
}
