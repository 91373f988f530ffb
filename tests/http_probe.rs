//! The http kind's request and conditions beyond status and body, against servers
//! written here on 127.0.0.1 and ::1: IP family choice and fallback, header regexes,
//! header values and bodies from files, HTTP versions, fail_if_ssl/fail_if_not_ssl,
//! gzip (bytes on the wire beside bytes decoded), phase timings that add up to the
//! total, and `--config.check` naming file:line:col for every new key.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;

/// Reads one request head and answers 200 "ok" (HTTP/1.1, or HTTP/1.0 when asked).
fn answer(mut stream: TcpStream, status_line: &str) {
    if read_request(&mut stream).is_none() {
        return;
    }
    let _ = write!(
        stream,
        "{status_line}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    );
}

fn once(config: &str) -> (Exposition, String, Option<i32>) {
    let dir = Dir::new();
    let cfg = dir.write("sonde.yml", config);
    let out = run(&["--once", "-c", cfg.to_str().unwrap()]);
    (
        Exposition(String::from_utf8(out.stdout).unwrap()),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

fn series(name: &str, check: &str, url: &str) -> String {
    format!("{name}{{check=\"{check}\",url=\"{url}\"}}")
}

fn reason(check: &str, url: &str, reason: &str) -> String {
    format!("sonde_http_failures_total{{check=\"{check}\",url=\"{url}\",reason=\"{reason}\"}}")
}

// ---------------------------------------------------------------------------------
// IP family

struct FamilyRun {
    m: Exposition,
    stderr: String,
    /// `http://localhost:P/` served on 127.0.0.1 only, and on ::1 only.
    v4_only: String,
    v6_only: String,
    v4_literal: String,
    v6_literal: String,
}

static FAMILY: OnceLock<Result<FamilyRun, String>> = OnceLock::new();

/// `localhost` is ::1 and 127.0.0.1 to sonde whatever /etc/hosts says (RFC 6761); one
/// server listens on 127.0.0.1 only, another on ::1 only.
fn family() -> &'static FamilyRun {
    shared(&FAMILY, || {
        let v4 = RawServer::start(|s| answer(s, "HTTP/1.1 200 OK"));
        let v6 = RawServer::start_on("[::1]:0", |s| answer(s, "HTTP/1.1 200 OK"));
        let v4_only = format!("http://localhost:{}/", v4.addr.port());
        let v6_only = format!("http://localhost:{}/", v6.addr.port());
        let v4_literal = format!("http://127.0.0.1:{}/", v4.addr.port());
        let v6_literal = format!("http://[::1]:{}/", v6.addr.port());
        let (m, stderr, _) = once(&format!(
            "checks:
  - {{name: auto, kind: http, urls: [\"{v4_only}\", \"{v6_only}\"]}}
  - {{name: ip4, kind: http, ip_protocol: ip4, urls: [\"{v4_only}\", \"{v6_only}\"]}}
  - {{name: ip6, kind: http, ip_protocol: ip6, urls: [\"{v4_only}\", \"{v6_only}\"]}}
  - {{name: ip6_fallback, kind: http, ip_protocol: ip6, urls: [\"{v4_literal}\"]}}
  - {{name: ip6_strict, kind: http, ip_protocol: ip6, ip_protocol_fallback: false, urls: [\"{v4_literal}\"]}}
  - {{name: ip4_fallback, kind: http, ip_protocol: ip4, ip_protocol_fallback: true, urls: [\"{v6_literal}\"]}}
"
        ));
        FamilyRun {
            m,
            stderr,
            v4_only,
            v6_only,
            v4_literal,
            v6_literal,
        }
    })
}

#[test]
fn ip4_uses_only_ipv4_addresses() {
    let r = family();
    assert_eq!(
        r.m.value(&series("sonde_http_up", "ip4", &r.v4_only)),
        Some(1.0),
        "{}",
        r.m.0
    );
    assert_eq!(
        r.m.value(&series("sonde_http_ip_protocol", "ip4", &r.v4_only)),
        Some(4.0)
    );
    // The name has an IPv4 address, so there is no fallback to ::1.
    assert_eq!(r.m.value(&reason("ip4", &r.v6_only, "connect")), Some(1.0));
    assert!(
        r.stderr.contains(&format!(
            "cannot connect to 127.0.0.1:{} (connection refused)",
            r.v6_only.rsplit(':').next().unwrap().trim_end_matches('/')
        )),
        "{}",
        r.stderr
    );
}

#[test]
fn ip6_uses_only_ipv6_addresses() {
    let r = family();
    assert_eq!(
        r.m.value(&series("sonde_http_up", "ip6", &r.v6_only)),
        Some(1.0),
        "{}",
        r.m.0
    );
    assert_eq!(
        r.m.value(&series("sonde_http_ip_protocol", "ip6", &r.v6_only)),
        Some(6.0)
    );
    assert_eq!(r.m.value(&reason("ip6", &r.v4_only, "connect")), Some(1.0));
}

#[test]
fn auto_tries_every_address_and_reports_the_family_that_answered() {
    let r = family();
    for (url, family) in [(&r.v4_only, 4.0), (&r.v6_only, 6.0)] {
        assert_eq!(
            r.m.value(&series("sonde_http_up", "auto", url)),
            Some(1.0),
            "{}",
            r.m.0
        );
        assert_eq!(
            r.m.value(&series("sonde_http_ip_protocol", "auto", url)),
            Some(family)
        );
    }
}

/// blackbox_exporter's fallback: only when the name has no address of the family asked
/// for; without it that is a `dns` failure that says so.
#[test]
fn the_other_family_serves_only_with_fallback() {
    let r = family();
    assert_eq!(
        r.m.value(&series("sonde_http_up", "ip6_fallback", &r.v4_literal)),
        Some(1.0)
    );
    assert_eq!(
        r.m.value(&series(
            "sonde_http_ip_protocol",
            "ip6_fallback",
            &r.v4_literal
        )),
        Some(4.0)
    );
    assert_eq!(
        r.m.value(&series("sonde_http_up", "ip4_fallback", &r.v6_literal)),
        Some(1.0)
    );
    assert_eq!(
        r.m.value(&reason("ip6_strict", &r.v4_literal, "dns")),
        Some(1.0)
    );
    assert!(
        r.stderr.contains(
            "127.0.0.1 has no IPv6 address (ip_protocol ip6, ip_protocol_fallback false)"
        ),
        "{}",
        r.stderr
    );
}

// ---------------------------------------------------------------------------------
// Conditions

fn route(req: &SeenRequest) -> Reply {
    match req.path.as_str() {
        "/cached" => Reply::status(200, "ok").with_header("X-Cache", "HIT"),
        "/missed" => Reply::status(200, "ok").with_header("X-Cache", "MISS"),
        "/plain" => Reply::status(200, "ok"),
        "/echo" => Reply::status(200, &String::from_utf8_lossy(&req.body)),
        "/gzip" => Reply::Http {
            status: 200,
            headers: vec![
                ("Content-Type".into(), "text/plain".into()),
                ("Content-Encoding".into(), "gzip".into()),
            ],
            body: gzip(&"status: healthy\n".repeat(200)),
        },
        _ => Reply::status(404, "no such fixture"),
    }
}

fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn header_regexes_fail_a_probe_with_reason_header_regex() {
    let f = Fixture::start(route);
    let (cached, missed, plain) = (f.url("/cached"), f.url("/missed"), f.url("/plain"));
    let (m, stderr, code) = once(&format!(
        "checks:
  - name: no_miss
    kind: http
    fail_if_header_matches: [{{header: X-Cache, regexp: MISS}}]
    urls: [\"{cached}\", \"{missed}\", \"{plain}\"]
  - name: no_miss_allowed
    kind: http
    fail_if_header_matches: [{{header: x-cache, regexp: MISS, allow_missing: true}}]
    urls: [\"{plain}\"]
  - name: must_hit
    kind: http
    fail_if_header_not_matches: [{{header: X-Cache, regexp: '^HIT$'}}]
    urls: [\"{cached}\", \"{missed}\"]
"
    ));
    assert_eq!(code, Some(1));
    assert_eq!(
        m.value(&series("sonde_http_up", "no_miss", &cached)),
        Some(1.0),
        "{}",
        m.0
    );
    assert_eq!(
        m.value(&reason("no_miss", &missed, "header_regex")),
        Some(1.0)
    );
    assert_eq!(
        m.value(&reason("no_miss", &plain, "header_regex")),
        Some(1.0)
    );
    assert_eq!(
        m.value(&series("sonde_http_up", "no_miss_allowed", &plain)),
        Some(1.0)
    );
    assert_eq!(
        m.value(&series("sonde_http_up", "must_hit", &cached)),
        Some(1.0)
    );
    assert_eq!(
        m.value(&reason("must_hit", &missed, "header_regex")),
        Some(1.0)
    );
    for words in [
        "header x-cache matches \\\"MISS\\\"",
        "header x-cache is missing",
        "no value of header x-cache matches \\\"^HIT$\\\"",
    ] {
        assert!(stderr.contains(words), "{words}: {stderr}");
    }
}

/// A header value and the body read from files (the value is a secret: it goes to
/// the server and nowhere else).
#[test]
fn header_values_and_bodies_come_from_files() {
    let f = Fixture::start(route);
    let dir = Dir::new();
    dir.write("api-key", "k3y-from-file\n");
    dir.write("payload.json", "{\"ping\": true}");
    let echo = f.url("/echo");
    let cfg = dir.write(
        "sonde.yml",
        format!(
            "checks:
  - name: post
    kind: http
    method: POST
    headers: {{X-Api-Key: {{file: api-key}}, Content-Type: application/json}}
    body_file: payload.json
    fail_if_body_not_matches_regexp: ['\"ping\": true']
    urls: [\"{echo}\"]
"
        ),
    );
    let out = run(&["--once", "-c", cfg.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let seen = f.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].header("x-api-key"), Some("k3y-from-file"));
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    assert_eq!(seen[0].body, b"{\"ping\": true}");
    assert!(!stdout.contains("k3y") && !stderr.contains("k3y"));
}

#[test]
fn valid_http_versions_checks_the_response_version() {
    let old = RawServer::start(|s| answer(s, "HTTP/1.0 200 OK"));
    let url = format!("http://127.0.0.1:{}/", old.addr.port());
    let (m, stderr, _) = once(&format!(
        "checks:
  - {{name: v11, kind: http, valid_http_versions: [HTTP/1.1], urls: [\"{url}\"]}}
  - {{name: v10, kind: http, valid_http_versions: [HTTP/1.0, HTTP/1.1], urls: [\"{url}\"]}}
"
    ));
    assert_eq!(
        m.value(&reason("v11", &url, "http_version")),
        Some(1.0),
        "{}",
        m.0
    );
    assert_eq!(m.value(&series("sonde_http_up", "v10", &url)), Some(1.0));
    assert!(
        stderr.contains("the response is HTTP/1.0, not one of valid_http_versions"),
        "{stderr}"
    );
}

/// The final hop decides: a redirect from http to https satisfies fail_if_not_ssl.
#[test]
fn fail_if_ssl_and_fail_if_not_ssl_judge_the_final_hop() {
    let ca = TestCa::new();
    let secure = Fixture::start_tls(&ca.leaf((2020, 1, 1), (2040, 1, 1)), route);
    let target = secure.https_url("/plain");
    let to_tls = target.clone();
    let plain = Fixture::start(move |req| match req.path.as_str() {
        "/up" => Reply::status(301, "").with_header("Location", &to_tls),
        _ => Reply::status(200, "ok"),
    });
    let dir = Dir::new();
    dir.write("ca.pem", &ca.pem);
    let (http, upgrade) = (plain.url("/plain"), plain.url("/up"));
    let cfg = dir.write(
        "sonde.yml",
        format!(
            "checks:
  - {{name: no_tls, kind: http, fail_if_ssl: true, tls: {{ca_file: ca.pem}}, urls: [\"{target}\", \"{http}\"]}}
  - {{name: tls_only, kind: http, fail_if_not_ssl: true, tls: {{ca_file: ca.pem}}, urls: [\"{http}\", \"{upgrade}\"]}}
"
        ),
    );
    let out = run(&["--once", "-c", cfg.to_str().unwrap()]);
    let m = Exposition(String::from_utf8(out.stdout).unwrap());
    assert_eq!(
        m.value(&reason("no_tls", &target, "ssl")),
        Some(1.0),
        "{}",
        m.0
    );
    assert_eq!(
        m.value(&series("sonde_http_up", "no_tls", &http)),
        Some(1.0)
    );
    assert_eq!(m.value(&reason("tls_only", &http, "not_ssl")), Some(1.0));
    assert_eq!(
        m.value(&series("sonde_http_up", "tls_only", &upgrade)),
        Some(1.0)
    );
    assert_eq!(
        m.value(&series("sonde_http_redirects", "tls_only", &upgrade)),
        Some(1.0)
    );
    assert_eq!(
        m.value(&format!(
            "sonde_http_tls_version_info{{check=\"tls_only\",url=\"{upgrade}\",version=\"TLS 1.3\"}}"
        )),
        Some(1.0)
    );
}

/// gzip is asked for and decoded: the wire size is the compressed body, the body size
/// and the regexes are the decoded one.
#[test]
fn a_gzip_body_has_its_wire_size_beside_its_decoded_size() {
    let f = Fixture::start(route);
    let url = f.url("/gzip");
    let (m, stderr, code) = once(&format!(
        "checks:\n  - {{name: gz, kind: http, fail_if_body_not_matches_regexp: ['status: healthy'], urls: [\"{url}\"]}}\n  - {{name: head, kind: http, method: HEAD, urls: [\"{url}\"]}}\n"
    ));
    assert_eq!(code, Some(0), "{stderr}");
    let wire = gzip(&"status: healthy\n".repeat(200)).len() as f64;
    assert_eq!(
        m.value(&series("sonde_http_content_length_bytes", "gz", &url)),
        Some(wire)
    );
    assert_eq!(
        m.value(&series("sonde_http_body_size_bytes", "gz", &url)),
        Some(3200.0)
    );
    assert!(wire < 200.0, "{wire}");
    assert_eq!(f.seen()[0].header("accept-encoding"), Some("gzip"));
    // A HEAD answer says gzip and has no body: nothing to decode.
    assert_eq!(m.value(&series("sonde_http_up", "head", &url)), Some(1.0));
    assert_eq!(
        m.value(&series("sonde_http_content_length_bytes", "head", &url)),
        Some(0.0)
    );
}

// ---------------------------------------------------------------------------------
// Phases

/// A server that thinks 300 ms before its head, then sends half the body, waits 200
/// ms and sends the rest.
fn slow_server() -> RawServer {
    RawServer::start(|mut stream: TcpStream| {
        if read_request(&mut stream).is_none() {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhello");
        let _ = stream.flush();
        std::thread::sleep(Duration::from_millis(200));
        let _ = stream.write_all(b"world");
        let mut rest = [0u8; 64];
        let _ = stream.read(&mut rest);
    })
}

#[test]
fn phases_add_up_to_about_the_total() {
    let slow = slow_server();
    let url = format!("http://127.0.0.1:{}/", slow.addr.port());
    let to_slow = url.clone();
    let hop = Fixture::start(move |_| Reply::status(302, "").with_header("Location", &to_slow));
    let redirect = hop.url("/");
    let (m, stderr, code) = once(&format!(
        "checks:\n  - {{name: slow, kind: http, timeout: 5s, urls: [\"{url}\", \"{redirect}\"]}}\n"
    ));
    assert_eq!(code, Some(0), "{stderr}");
    for target in [&url, &redirect] {
        let phase = |p: &str| {
            m.value(&format!(
                "sonde_http_phase_duration_seconds{{check=\"slow\",url=\"{target}\",phase=\"{p}\"}}"
            ))
            .unwrap_or_else(|| panic!("phase {p} of {target}: {}", m.0))
        };
        let total = m
            .value(&series("sonde_http_duration_seconds", "slow", target))
            .unwrap();
        let sum: f64 = ["resolve", "connect", "tls", "processing", "transfer"]
            .iter()
            .map(|p| phase(p))
            .sum();
        assert!(
            phase("processing") >= 0.29,
            "processing {}",
            phase("processing")
        );
        assert!(
            (0.19..0.6).contains(&phase("transfer")),
            "transfer {}",
            phase("transfer")
        );
        assert_eq!(phase("tls"), 0.0);
        // What no phase covers is sending the request and following the redirect.
        assert!(
            sum <= total && total - sum < 0.05 + total * 0.1,
            "sum {sum} of total {total}"
        );
    }
}

// ---------------------------------------------------------------------------------
// --config.check

#[test]
fn every_new_key_is_checked_with_its_location() {
    let dir = Dir::new();
    let path = dir.write(
        "sonde.yml",
        "checks:
  - name: bad
    kind: http
    urls: [http://127.0.0.1/]
    proxy_url: socks5://proxy:1080
    ip_protocol: ip5
    body: x
    body_file: payload
    valid_http_versions: [HTTP/3]
    fail_if_header_matches: [{header: X-A, regexp: '(' }]
    headers: {X-Key: {file: /nonexistent/key}}
    tls: {min_version: TLS11, cert_file: c.pem}
  - name: proxies
    kind: http
    urls: [http://127.0.0.1/]
    proxy_password_file: pw
    no_proxy: example.com
    tls: {min_version: TLS13, max_version: TLS12}
  - name: both
    kind: registry
    images: [nginx]
    proxy_url: http://proxy:3128
    proxy_from_environment: true
  - name: hub
    kind: dockerhub
    organizations: [acme]
    ip_protocol: v6
  - name: cluster
    kind: kubernetes_images
    api_server: https://127.0.0.1:6443
    proxy_url: ftp://proxy
",
    );
    let out = run(&["--config.check", "-c", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let p = path.display();
    for expected in [
        format!(
            "{p}:5:16: check \"bad\": proxy_url \"socks5://proxy:1080\": only http:// proxies are supported"
        ),
        format!("{p}:6:18: check \"bad\": ip_protocol \"ip5\": use auto, ip4 or ip6"),
        format!("{p}:8:16: check \"bad\": body and body_file cannot both be set"),
        format!("{p}:9:27: check \"bad\": valid_http_versions: \"HTTP/3\" is not one of"),
        format!("{p}:10:30: check \"bad\": invalid regular expression \"(\""),
        format!(
            "{p}:11:29: check \"bad\": header \"X-Key\": cannot read the file /nonexistent/key"
        ),
        format!(
            "{p}:12:24: check \"bad\": tls.min_version: TLS version \"TLS11\" is not supported"
        ),
        format!("{p}:12:42: check \"bad\": tls.cert_file needs tls.key_file"),
        format!("{p}:16:26: check \"proxies\": proxy_password_file needs proxy_url"),
        format!("{p}:17:15: check \"proxies\": no_proxy needs proxy_url"),
        format!("{p}:18:24: check \"proxies\": tls.min_version is above tls.max_version"),
        format!(
            "{p}:23:29: check \"both\": proxy_from_environment and proxy_url cannot both be set"
        ),
        format!("{p}:27:18: check \"hub\": ip_protocol \"v6\": use auto, ip4 or ip6"),
        format!("{p}:31:16: check \"cluster\": proxy_url \"ftp://proxy\": only http:// proxies"),
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&format!("sonde: {expected}"))),
            "missing {expected:?} in\n{stderr}"
        );
    }
    assert!(!stderr.contains("panicked"));
}

/// Every config the README shows for the http kind, and the dockerhub and registry
/// examples that show the connection keys, pass `--config.check` as a user would run
/// it, with the files they name in place of /etc/sonde.
#[test]
fn the_readme_configs_of_the_http_speaking_kinds_check_out() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut blocks = readme_blocks(&readme, "## kind: http — URL uptime");
    assert!(blocks.len() >= 3, "{blocks:?}");
    for heading in [
        "## kind: dockerhub",
        "## kind: registry and kind: kubernetes_images",
    ] {
        blocks.push(readme_blocks(&readme, heading).remove(0));
    }
    let dir = Dir::new();
    let ca = TestCa::new();
    let client = ca.leaf((2020, 1, 1), (2040, 1, 1));
    for (name, content) in [
        ("ca.pem", ca.pem.as_str()),
        ("registry-ca.pem", ca.pem.as_str()),
        ("k8s-ca.pem", ca.pem.as_str()),
        ("client.pem", client.cert_pem.as_str()),
        ("client.key", client.key_pem.as_str()),
        ("api-key", "key"),
        ("request.json", "{}"),
        ("pw", "pw"),
        ("token", "token"),
        ("proxy-pw", "pw"),
        ("hub-token", "dckr_pat_x"),
        ("k8s-token", "token"),
        ("docker-config.json", "{\"auths\": {}}"),
    ] {
        dir.write(name, content);
    }
    let files = format!("{}/", dir.path().display());
    for block in blocks {
        let text = block.replace("/etc/sonde/", &files);
        let config = if text.starts_with("checks:") {
            text
        } else {
            format!("checks:\n{text}\n")
        };
        let path = dir.write("sonde.yml", &config);
        let out = run(&["--config.check", "-c", path.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{config}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
