//! The http kind against fixture servers on 127.0.0.1: every failure reason, TLS with a
//! test CA (also expired), secrets from files, legacy names, and that a hanging URL
//! delays neither other URLs nor other checks.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::*;

fn route(req: &SeenRequest) -> Reply {
    let path = req.path.split('?').next().unwrap_or("");
    match path {
        "/ok" => Reply::status(200, "all good"),
        "/503" => Reply::status(503, "unavailable"),
        "/404" => Reply::status(404, "gone"),
        "/redirect" => Reply::status(302, "").with_header("Location", "/ok"),
        "/loop" => Reply::status(302, "").with_header("Location", "/loop"),
        "/big" => Reply::status(200, &"x".repeat(5000)),
        "/maintenance" => Reply::status(200, "down for maintenance"),
        "/hang" => Reply::Hang,
        // "user:s3cret-pw" in base64.
        "/basic" if req.header("authorization") == Some("Basic dXNlcjpzM2NyZXQtcHc=") => {
            Reply::status(200, "hi")
        }
        "/bearer" if req.header("authorization") == Some("Bearer t0ken-value") => {
            Reply::status(200, "hi")
        }
        "/basic" | "/bearer" => Reply::status(401, "who are you"),
        _ => Reply::status(404, "no such fixture"),
    }
}

fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn every_failure_reason_with_native_and_legacy_values() {
    let f = Fixture::start(route);
    let dir = Dir::new();
    dir.write("pw", "s3cret-pw\n");
    dir.write("token", "t0ken-value");
    let refused = format!("http://127.0.0.1:{}/", closed_port());
    let config = format!(
        r#"
checks:
  - name: main
    kind: http
    timeout: 2s
    legacy_metrics: true
    urls: ["{ok}", "{e503}", "{redirect}", "{lp}", "{refused}", "http://nonexistent.invalid/", "{hang}"]
  - name: notfound
    kind: http
    legacy_metrics: true
    valid_status_codes: [404]
    urls: ["{e404}"]
  - name: limits
    kind: http
    legacy_metrics: true
    body_size_limit: 1KiB
    urls: ["{big}"]
  - name: regex
    kind: http
    legacy_metrics: true
    fail_if_body_matches_regexp: ["maint[a-z]+"]
    urls: ["{maint}", "{ok_a}"]
  - name: regex_must
    kind: http
    legacy_metrics: true
    fail_if_body_not_matches_regexp: ["good$"]
    urls: ["{ok_b}", "{maint_b}"]
  - name: basic
    kind: http
    legacy_metrics: true
    basic_auth: {{username: user, password_file: pw}}
    urls: ["{basic}"]
  - name: bearer
    kind: http
    legacy_metrics: true
    bearer_token_file: token
    urls: ["{bearer}"]
  - name: noauth
    kind: http
    urls: ["{basic}"]
"#,
        ok = f.url("/ok"),
        e503 = f.url("/503"),
        redirect = f.url("/redirect"),
        lp = f.url("/loop"),
        hang = f.url("/hang"),
        e404 = f.url("/404"),
        big = f.url("/big"),
        maint = f.url("/maintenance"),
        ok_a = f.url("/ok?a"),
        ok_b = f.url("/ok?b"),
        maint_b = f.url("/maintenance?b"),
        basic = f.url("/basic"),
        bearer = f.url("/bearer"),
    );
    let cfg = dir.write("sonde.yml", config);
    let started = Instant::now();
    let out = run(&["--once", "--config.file", cfg.to_str().unwrap()]);
    let elapsed = started.elapsed();
    assert_eq!(
        out.status.code(),
        Some(1),
        "some probes fail, so --once exits 1"
    );
    let m = Exposition(String::from_utf8(out.stdout).unwrap());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The hanging URL is bounded by the 2 s timeout; the run does not wait longer.
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");

    let up = |check: &str, url: &str| {
        m.value(&format!("sonde_http_up{{check=\"{check}\",url=\"{url}\"}}"))
    };
    let status = |check: &str, url: &str| {
        m.value(&format!(
            "sonde_http_status_code{{check=\"{check}\",url=\"{url}\"}}"
        ))
    };
    let reason = |check: &str, url: &str, reason: &str| {
        m.value(&format!(
            "sonde_http_failures_total{{check=\"{check}\",url=\"{url}\",reason=\"{reason}\"}}"
        ))
    };
    let legacy_up = |url: &str| m.value(&format!("sample_external_url_up{{url=\"{url}\"}}"));
    let legacy_ms =
        |url: &str| m.value(&format!("sample_external_url_response_ms{{url=\"{url}\"}}"));

    // 200
    assert_eq!(up("main", &f.url("/ok")), Some(1.0));
    assert_eq!(status("main", &f.url("/ok")), Some(200.0));
    assert_eq!(legacy_up(&f.url("/ok")), Some(1.0));
    let ms = legacy_ms(&f.url("/ok")).unwrap();
    assert!(ms.is_finite() && ms > 0.0, "{ms}");
    let secs = m
        .value(&format!(
            "sonde_http_duration_seconds{{check=\"main\",url=\"{}\"}}",
            f.url("/ok")
        ))
        .unwrap();
    assert!(
        (ms / 1000.0 - secs).abs() < 1e-6,
        "legacy ms {ms} vs seconds {secs}"
    );
    assert_eq!(
        m.value(&format!(
            "sonde_http_body_size_bytes{{check=\"main\",url=\"{}\"}}",
            f.url("/ok")
        )),
        Some(8.0)
    );
    assert_eq!(
        m.value(&format!(
            "sonde_http_probes_total{{check=\"main\",url=\"{}\",result=\"success\"}}",
            f.url("/ok")
        )),
        Some(1.0)
    );
    assert_eq!(
        m.value(&format!(
            "sonde_http_probe_duration_seconds_count{{check=\"main\",url=\"{}\"}}",
            f.url("/ok")
        )),
        Some(1.0)
    );
    // 503
    assert_eq!(up("main", &f.url("/503")), Some(0.0));
    assert_eq!(status("main", &f.url("/503")), Some(503.0));
    assert_eq!(reason("main", &f.url("/503"), "status_code"), Some(1.0));
    assert_eq!(legacy_up(&f.url("/503")), Some(0.0));
    assert!(legacy_ms(&f.url("/503")).unwrap().is_finite());
    // 404 accepted by valid_status_codes
    assert_eq!(up("notfound", &f.url("/404")), Some(1.0));
    assert_eq!(status("notfound", &f.url("/404")), Some(404.0));
    assert_eq!(legacy_up(&f.url("/404")), Some(1.0));
    // redirect followed
    assert_eq!(up("main", &f.url("/redirect")), Some(1.0));
    assert_eq!(status("main", &f.url("/redirect")), Some(200.0));
    assert_eq!(
        m.value(&format!(
            "sonde_http_redirects{{check=\"main\",url=\"{}\"}}",
            f.url("/redirect")
        )),
        Some(1.0)
    );
    assert_eq!(legacy_up(&f.url("/redirect")), Some(1.0));
    // redirect loop
    assert_eq!(up("main", &f.url("/loop")), Some(0.0));
    assert_eq!(reason("main", &f.url("/loop"), "redirects"), Some(1.0));
    assert_eq!(legacy_up(&f.url("/loop")), Some(0.0));
    // connection refused
    assert_eq!(up("main", &refused), Some(0.0));
    assert_eq!(status("main", &refused), Some(0.0));
    assert_eq!(reason("main", &refused, "connect"), Some(1.0));
    assert_eq!(legacy_up(&refused), Some(0.0));
    assert!(legacy_ms(&refused).unwrap().is_finite());
    // unresolvable host
    assert_eq!(
        reason("main", "http://nonexistent.invalid/", "dns"),
        Some(1.0)
    );
    assert_eq!(legacy_up("http://nonexistent.invalid/"), Some(0.0));
    // accepts and never answers
    assert_eq!(reason("main", &f.url("/hang"), "timeout"), Some(1.0));
    let hang_secs = m
        .value(&format!(
            "sonde_http_duration_seconds{{check=\"main\",url=\"{}\"}}",
            f.url("/hang")
        ))
        .unwrap();
    assert!((1.9..4.0).contains(&hang_secs), "{hang_secs}");
    assert_eq!(legacy_up(&f.url("/hang")), Some(0.0));
    assert_eq!(legacy_ms(&f.url("/hang")), Some(f64::INFINITY));
    // body over body_size_limit
    assert_eq!(up("limits", &f.url("/big")), Some(0.0));
    assert_eq!(
        reason("limits", &f.url("/big"), "body_too_large"),
        Some(1.0)
    );
    assert_eq!(
        m.value(&format!(
            "sonde_http_body_size_bytes{{check=\"limits\",url=\"{}\"}}",
            f.url("/big")
        )),
        Some(1024.0)
    );
    assert_eq!(legacy_up(&f.url("/big")), Some(0.0));
    // body regexes
    assert_eq!(
        reason("regex", &f.url("/maintenance"), "body_regex"),
        Some(1.0)
    );
    assert_eq!(up("regex", &f.url("/ok?a")), Some(1.0));
    assert_eq!(up("regex_must", &f.url("/ok?b")), Some(1.0));
    assert_eq!(
        reason("regex_must", &f.url("/maintenance?b"), "body_regex"),
        Some(1.0)
    );
    assert_eq!(legacy_up(&f.url("/maintenance")), Some(0.0));
    assert_eq!(legacy_up(&f.url("/ok?b")), Some(1.0));
    // credentials from files
    assert_eq!(up("basic", &f.url("/basic")), Some(1.0));
    assert_eq!(up("bearer", &f.url("/bearer")), Some(1.0));
    assert_eq!(up("noauth", &f.url("/basic")), Some(0.0));
    assert_eq!(status("noauth", &f.url("/basic")), Some(401.0));
    assert_eq!(legacy_up(&f.url("/basic")), Some(1.0));
    assert_eq!(legacy_up(&f.url("/bearer")), Some(1.0));
    for secret in ["s3cret-pw", "t0ken-value", "dXNlcjpzM2NyZXQtcHc"] {
        assert!(
            !m.0.contains(secret) && !stderr.contains(secret),
            "{secret} leaked"
        );
    }
    // Self metrics of the run.
    assert_eq!(
        m.value("sonde_check_success{check=\"main\",kind=\"http\"}"),
        Some(0.0)
    );
    assert_eq!(
        m.value("sonde_check_success{check=\"notfound\",kind=\"http\"}"),
        Some(1.0)
    );
    assert_eq!(
        m.value("sonde_check_runs_total{check=\"main\",kind=\"http\"}"),
        Some(1.0)
    );
    // promtool flags the legacy millisecond name and nothing else.
    let findings = promtool_check_metrics(&m.0);
    let lines: Vec<&str> = findings.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines,
        ["sample_external_url_response_ms metric names should not contain abbreviated units"],
        "{findings}"
    );
}

#[test]
fn https_with_a_test_ca_and_an_expired_certificate() {
    let ca = TestCa::new();
    let good = Fixture::start_tls(&ca.leaf((2020, 1, 1), (2040, 6, 15)), route);
    let expired = Fixture::start_tls(&ca.leaf((2020, 1, 1), (2021, 3, 4)), route);
    let dir = Dir::new();
    dir.write("ca.pem", &ca.pem);
    let config = format!(
        r#"
checks:
  - name: tls_ok
    kind: http
    legacy_metrics: true
    tls: {{ca_file: ca.pem}}
    urls: ["{good}", "{expired}"]
  - name: tls_default_roots
    kind: http
    urls: ["{good}"]
  - name: tls_insecure
    kind: http
    tls: {{insecure_skip_verify: true}}
    urls: ["{expired}"]
  - name: tls_sni
    kind: http
    tls: {{ca_file: ca.pem, server_name: localhost}}
    urls: ["https://127.0.0.1:{good_port}/ok"]
"#,
        good = good.https_url("/ok"),
        expired = expired.https_url("/ok"),
        good_port = good.addr.port(),
    );
    let cfg = dir.write("sonde.yml", config);
    let out = run(&["--once", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let m = Exposition(String::from_utf8(out.stdout).unwrap());
    let value = |name: &str, check: &str, url: &str| {
        m.value(&format!("{name}{{check=\"{check}\",url=\"{url}\"}}"))
    };
    let not_after = "sonde_http_tls_cert_not_after_timestamp_seconds";
    let (g, e) = (good.https_url("/ok"), expired.https_url("/ok"));

    assert_eq!(value("sonde_http_up", "tls_ok", &g), Some(1.0));
    assert_eq!(
        value(not_after, "tls_ok", &g),
        Some(unix_day(2040, 6, 15) as f64)
    );
    assert_eq!(
        m.value(&format!("sample_external_url_up{{url=\"{g}\"}}")),
        Some(1.0)
    );
    // Expired: verification fails, the NotAfter is still exported.
    assert_eq!(value("sonde_http_up", "tls_ok", &e), Some(0.0));
    assert_eq!(
        m.value(&format!(
            "sonde_http_failures_total{{check=\"tls_ok\",url=\"{e}\",reason=\"tls\"}}"
        )),
        Some(1.0)
    );
    assert_eq!(
        value(not_after, "tls_ok", &e),
        Some(unix_day(2021, 3, 4) as f64)
    );
    assert_eq!(value("sonde_http_status_code", "tls_ok", &e), Some(0.0));
    assert_eq!(
        m.value(&format!("sample_external_url_up{{url=\"{e}\"}}")),
        Some(0.0)
    );
    // Without the CA the chain is unknown: tls failure, NotAfter still known.
    assert_eq!(value("sonde_http_up", "tls_default_roots", &g), Some(0.0));
    assert_eq!(
        value(not_after, "tls_default_roots", &g),
        Some(unix_day(2040, 6, 15) as f64)
    );
    // insecure_skip_verify accepts the expired certificate.
    assert_eq!(value("sonde_http_up", "tls_insecure", &e), Some(1.0));
    assert_eq!(
        value(not_after, "tls_insecure", &e),
        Some(unix_day(2021, 3, 4) as f64)
    );
    // server_name overrides the name verified (the URL's host is an IP).
    let by_ip = format!("https://127.0.0.1:{}/ok", good.addr.port());
    assert_eq!(value("sonde_http_up", "tls_sni", &by_ip), Some(1.0));
}

#[test]
fn a_hanging_url_delays_neither_other_urls_nor_other_checks() {
    let f = Fixture::start(route);
    let config = format!(
        r#"
checks:
  - name: slow
    kind: http
    interval: 1m
    timeout: 6s
    urls: ["{hang}", "{ok}"]
  - name: fast
    kind: http
    interval: 1m
    urls: ["{ok}"]
"#,
        hang = f.url("/hang"),
        ok = f.url("/ok"),
    );
    let sonde = Sonde::start(&config);
    // The fast check publishes while the slow one is still waiting on its hanging URL.
    let m = sonde.wait_metrics(5, |m| m.has("sonde_check_success{check=\"fast\""));
    assert!(
        !m.has("sonde_check_success{check=\"slow\""),
        "the slow run cannot be over yet"
    );
    assert_eq!(sonde.get("/-/ready").status, 503);
    let q = sonde.get("/queryurl?check=fast").json();
    assert_eq!(q["status"], "ok");
    assert_eq!(q["response"][f.url("/ok")]["up"], 1);
    assert_eq!(q["response"][f.url("/ok")]["status_code"], 200);
    assert!(q["response"][f.url("/ok")]["error"].is_null());
    // When the slow run ends, its fast URL took no longer than it needed.
    let m = sonde.wait_metrics(15, |m| m.has("sonde_check_success{check=\"slow\""));
    let ok_secs = m
        .value(&format!(
            "sonde_http_duration_seconds{{check=\"slow\",url=\"{}\"}}",
            f.url("/ok")
        ))
        .unwrap();
    let hang_secs = m
        .value(&format!(
            "sonde_http_duration_seconds{{check=\"slow\",url=\"{}\"}}",
            f.url("/hang")
        ))
        .unwrap();
    assert!(
        ok_secs < 1.0 && hang_secs > 5.0,
        "ok {ok_secs}s, hang {hang_secs}s"
    );
    assert_eq!(sonde.get("/-/ready").status, 200);
    let q = sonde.get("/queryurl").json();
    assert_eq!(q["response"][f.url("/hang")]["error"], "timeout");
    assert_eq!(q["response"][f.url("/hang")]["up"], 0);
    assert_eq!(sonde.get("/queryurl?check=nope").status, 404);
}

#[test]
fn the_certificate_is_recorded_on_every_run_not_only_the_first() {
    let ca = TestCa::new();
    let site = Fixture::start_tls(&ca.leaf((2020, 1, 1), (2041, 2, 3)), route);
    let dir = Dir::new();
    dir.write("ca.pem", &ca.pem);
    dir.write(
        "sonde.yml",
        format!(
            "checks:\n  - name: tls\n    kind: http\n    interval: 1s\n    tls: {{ca_file: ca.pem}}\n    urls: [\"{}\"]\n",
            site.https_url("/ok")
        ),
    );
    let sonde = Sonde::start_in(dir, &[]);
    let runs = "sonde_check_runs_total{check=\"tls\",kind=\"http\"}";
    let m = sonde.wait_metrics(15, |m| m.value(runs) >= Some(3.0));
    let series = format!(
        "sonde_http_tls_cert_not_after_timestamp_seconds{{check=\"tls\",url=\"{}\"}}",
        site.https_url("/ok")
    );
    assert_eq!(
        m.value(&series),
        Some(unix_day(2041, 2, 3) as f64),
        "{}",
        m.0
    );
}
