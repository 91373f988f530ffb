//! The http kind against fixture servers on 127.0.0.1: every failure reason, TLS with a
//! test CA (also expired), secrets from files, legacy names, and that a hanging URL
//! delays neither other URLs nor other checks.

mod common;

use std::net::TcpListener;
use std::sync::OnceLock;
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

/// What the shared run of every failure reason left behind.
struct FailureRun {
    code: Option<i32>,
    elapsed: Duration,
    m: Exposition,
    stderr: String,
    /// Where the fixture listened, for its URLs.
    fixture: String,
    refused: String,
}

impl FailureRun {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.fixture)
    }

    fn up(&self, check: &str, url: &str) -> Option<f64> {
        self.m
            .value(&format!("sonde_http_up{{check=\"{check}\",url=\"{url}\"}}"))
    }

    fn status(&self, check: &str, url: &str) -> Option<f64> {
        self.m.value(&format!(
            "sonde_http_status_code{{check=\"{check}\",url=\"{url}\"}}"
        ))
    }

    fn reason(&self, check: &str, url: &str, reason: &str) -> Option<f64> {
        self.m.value(&format!(
            "sonde_http_failures_total{{check=\"{check}\",url=\"{url}\",reason=\"{reason}\"}}"
        ))
    }

    /// `name{check="..",url=".."}` of the fixture's `path`.
    fn of(&self, name: &str, check: &str, path: &str) -> Option<f64> {
        self.m.value(&format!(
            "{name}{{check=\"{check}\",url=\"{}\"}}",
            self.url(path)
        ))
    }

    fn legacy_up(&self, url: &str) -> Option<f64> {
        self.m
            .value(&format!("sample_external_url_up{{url=\"{url}\"}}"))
    }

    fn legacy_ms(&self, url: &str) -> Option<f64> {
        self.m
            .value(&format!("sample_external_url_response_ms{{url=\"{url}\"}}"))
    }
}

static FAILURE_RUN: OnceLock<Result<FailureRun, String>> = OnceLock::new();

/// The one `--once` run that the failure cases below assert on: its hanging URL costs
/// the 2 s timeout, which each case would pay again.
fn failure_run() -> &'static FailureRun {
    shared(&FAILURE_RUN, run_every_failure_reason)
}

fn run_every_failure_reason() -> FailureRun {
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
    FailureRun {
        elapsed: started.elapsed(),
        code: out.status.code(),
        m: Exposition(String::from_utf8(out.stdout).unwrap()),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        fixture: f.addr.to_string(),
        refused,
    }
}

#[test]
fn some_probes_fail_so_once_exits_1() {
    assert_eq!(
        failure_run().code,
        Some(1),
        "some probes fail, so --once exits 1"
    );
}

#[test]
fn a_200_is_up_with_its_duration_size_and_legacy_milliseconds() {
    let r = failure_run();
    let ok = r.url("/ok");
    assert_eq!(r.up("main", &ok), Some(1.0));
    assert_eq!(r.status("main", &ok), Some(200.0));
    assert_eq!(r.legacy_up(&ok), Some(1.0));
    let ms = r.legacy_ms(&ok).unwrap();
    assert!(ms.is_finite() && ms > 0.0, "{ms}");
    let secs = r.of("sonde_http_duration_seconds", "main", "/ok").unwrap();
    assert!(
        (ms / 1000.0 - secs).abs() < 1e-6,
        "legacy ms {ms} vs seconds {secs}"
    );
    assert_eq!(r.of("sonde_http_body_size_bytes", "main", "/ok"), Some(8.0));
    assert_eq!(
        r.m.value(&format!(
            "sonde_http_probes_total{{check=\"main\",url=\"{ok}\",result=\"success\"}}"
        )),
        Some(1.0)
    );
    assert_eq!(
        r.of("sonde_http_probe_duration_seconds_count", "main", "/ok"),
        Some(1.0)
    );
}

#[test]
fn a_503_is_down_with_reason_status_code() {
    let r = failure_run();
    let e503 = r.url("/503");
    assert_eq!(r.up("main", &e503), Some(0.0));
    assert_eq!(r.status("main", &e503), Some(503.0));
    assert_eq!(r.reason("main", &e503, "status_code"), Some(1.0));
    assert_eq!(r.legacy_up(&e503), Some(0.0));
    assert!(r.legacy_ms(&e503).unwrap().is_finite());
}

#[test]
fn a_404_listed_in_valid_status_codes_is_up() {
    let r = failure_run();
    let e404 = r.url("/404");
    assert_eq!(r.up("notfound", &e404), Some(1.0));
    assert_eq!(r.status("notfound", &e404), Some(404.0));
    assert_eq!(r.legacy_up(&e404), Some(1.0));
}

#[test]
fn a_redirect_is_followed_and_counted() {
    let r = failure_run();
    let redirect = r.url("/redirect");
    assert_eq!(r.up("main", &redirect), Some(1.0));
    assert_eq!(r.status("main", &redirect), Some(200.0));
    assert_eq!(r.of("sonde_http_redirects", "main", "/redirect"), Some(1.0));
    assert_eq!(r.legacy_up(&redirect), Some(1.0));
}

#[test]
fn a_redirect_loop_fails_with_reason_redirects() {
    let r = failure_run();
    let lp = r.url("/loop");
    assert_eq!(r.up("main", &lp), Some(0.0));
    assert_eq!(r.reason("main", &lp, "redirects"), Some(1.0));
    assert_eq!(r.legacy_up(&lp), Some(0.0));
}

#[test]
fn a_refused_connection_fails_with_reason_connect() {
    let r = failure_run();
    let refused = &r.refused;
    assert_eq!(r.up("main", refused), Some(0.0));
    assert_eq!(r.status("main", refused), Some(0.0));
    assert_eq!(r.reason("main", refused, "connect"), Some(1.0));
    assert_eq!(r.legacy_up(refused), Some(0.0));
    assert!(r.legacy_ms(refused).unwrap().is_finite());
}

#[test]
fn an_unresolvable_host_fails_with_reason_dns() {
    let r = failure_run();
    assert_eq!(
        r.reason("main", "http://nonexistent.invalid/", "dns"),
        Some(1.0)
    );
    assert_eq!(r.legacy_up("http://nonexistent.invalid/"), Some(0.0));
}

/// A URL that accepts and never answers fails at the 2 s timeout, and the run does not
/// wait longer for it.
#[test]
fn a_hanging_url_fails_with_reason_timeout_after_the_timeout() {
    let r = failure_run();
    assert!(r.elapsed < Duration::from_secs(10), "{:?}", r.elapsed);
    let hang = r.url("/hang");
    assert_eq!(r.reason("main", &hang, "timeout"), Some(1.0));
    let hang_secs = r
        .of("sonde_http_duration_seconds", "main", "/hang")
        .unwrap();
    assert!((1.9..4.0).contains(&hang_secs), "{hang_secs}");
    assert_eq!(r.legacy_up(&hang), Some(0.0));
    assert_eq!(r.legacy_ms(&hang), Some(f64::INFINITY));
}

#[test]
fn a_body_over_body_size_limit_fails_with_reason_body_too_large() {
    let r = failure_run();
    let big = r.url("/big");
    assert_eq!(r.up("limits", &big), Some(0.0));
    assert_eq!(r.reason("limits", &big, "body_too_large"), Some(1.0));
    assert_eq!(
        r.of("sonde_http_body_size_bytes", "limits", "/big"),
        Some(1024.0)
    );
    assert_eq!(r.legacy_up(&big), Some(0.0));
}

#[test]
fn body_regexes_fail_a_body_that_matches_or_does_not_match_them() {
    let r = failure_run();
    assert_eq!(
        r.reason("regex", &r.url("/maintenance"), "body_regex"),
        Some(1.0)
    );
    assert_eq!(r.up("regex", &r.url("/ok?a")), Some(1.0));
    assert_eq!(r.up("regex_must", &r.url("/ok?b")), Some(1.0));
    assert_eq!(
        r.reason("regex_must", &r.url("/maintenance?b"), "body_regex"),
        Some(1.0)
    );
    assert_eq!(r.legacy_up(&r.url("/maintenance")), Some(0.0));
    assert_eq!(r.legacy_up(&r.url("/ok?b")), Some(1.0));
}

/// Basic auth and bearer tokens read from files are sent (without them: 401), and
/// neither they nor their encoding reach the exposition or the log.
#[test]
fn credentials_from_files_are_sent_and_never_shown() {
    let r = failure_run();
    let (basic, bearer) = (r.url("/basic"), r.url("/bearer"));
    assert_eq!(r.up("basic", &basic), Some(1.0));
    assert_eq!(r.up("bearer", &bearer), Some(1.0));
    assert_eq!(r.up("noauth", &basic), Some(0.0));
    assert_eq!(r.status("noauth", &basic), Some(401.0));
    assert_eq!(r.legacy_up(&basic), Some(1.0));
    assert_eq!(r.legacy_up(&bearer), Some(1.0));
    for secret in ["s3cret-pw", "t0ken-value", "dXNlcjpzM2NyZXQtcHc"] {
        assert!(
            !r.m.0.contains(secret) && !r.stderr.contains(secret),
            "{secret} leaked"
        );
    }
}

#[test]
fn a_check_with_a_failing_url_fails_and_each_check_ran_once() {
    let m = &failure_run().m;
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
}

#[test]
fn promtool_flags_the_legacy_millisecond_name_and_nothing_else() {
    let findings = promtool_check_metrics(&failure_run().m.0);
    let lines: Vec<&str> = findings.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines,
        ["sample_external_url_response_ms metric names should not contain abbreviated units"],
        "{findings}"
    );
}

/// Two sites of one test CA: `good` valid until 2040-06-15, `expired` since 2021-03-04.
struct TlsSites {
    good: Fixture,
    expired: Fixture,
    m: Exposition,
}

impl TlsSites {
    /// Runs `--once` over them with the CA, without it, with `insecure_skip_verify` and
    /// with `server_name`; the expired one fails the run.
    fn check() -> TlsSites {
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
        TlsSites {
            good,
            expired,
            m: Exposition(String::from_utf8(out.stdout).unwrap()),
        }
    }

    fn value(&self, name: &str, check: &str, url: &str) -> Option<f64> {
        self.m
            .value(&format!("{name}{{check=\"{check}\",url=\"{url}\"}}"))
    }
}

const NOT_AFTER: &str = "sonde_http_tls_cert_not_after_timestamp_seconds";

#[test]
fn a_certificate_of_the_configured_ca_is_trusted_and_its_expiry_exported() {
    let sites = TlsSites::check();
    let g = sites.good.https_url("/ok");
    assert_eq!(sites.value("sonde_http_up", "tls_ok", &g), Some(1.0));
    assert_eq!(
        sites.value(NOT_AFTER, "tls_ok", &g),
        Some(unix_day(2040, 6, 15) as f64)
    );
    assert_eq!(
        sites
            .m
            .value(&format!("sample_external_url_up{{url=\"{g}\"}}")),
        Some(1.0)
    );
}

#[test]
fn an_expired_certificate_fails_with_reason_tls_and_its_expiry_exported() {
    let sites = TlsSites::check();
    let e = sites.expired.https_url("/ok");
    assert_eq!(sites.value("sonde_http_up", "tls_ok", &e), Some(0.0));
    assert_eq!(
        sites.m.value(&format!(
            "sonde_http_failures_total{{check=\"tls_ok\",url=\"{e}\",reason=\"tls\"}}"
        )),
        Some(1.0)
    );
    assert_eq!(
        sites.value(NOT_AFTER, "tls_ok", &e),
        Some(unix_day(2021, 3, 4) as f64)
    );
    assert_eq!(
        sites.value("sonde_http_status_code", "tls_ok", &e),
        Some(0.0)
    );
    assert_eq!(
        sites
            .m
            .value(&format!("sample_external_url_up{{url=\"{e}\"}}")),
        Some(0.0)
    );
}

/// Without the CA the chain is unknown: a tls failure, the expiry still known.
#[test]
fn an_unknown_ca_fails_with_its_expiry_still_exported() {
    let sites = TlsSites::check();
    let g = sites.good.https_url("/ok");
    assert_eq!(
        sites.value("sonde_http_up", "tls_default_roots", &g),
        Some(0.0)
    );
    assert_eq!(
        sites.value(NOT_AFTER, "tls_default_roots", &g),
        Some(unix_day(2040, 6, 15) as f64)
    );
}

#[test]
fn insecure_skip_verify_accepts_an_expired_certificate() {
    let sites = TlsSites::check();
    let e = sites.expired.https_url("/ok");
    assert_eq!(sites.value("sonde_http_up", "tls_insecure", &e), Some(1.0));
    assert_eq!(
        sites.value(NOT_AFTER, "tls_insecure", &e),
        Some(unix_day(2021, 3, 4) as f64)
    );
}

/// `server_name` overrides the name verified when the URL's host is an IP.
#[test]
fn server_name_is_the_name_verified() {
    let sites = TlsSites::check();
    let by_ip = format!("https://127.0.0.1:{}/ok", sites.good.addr.port());
    assert_eq!(sites.value("sonde_http_up", "tls_sni", &by_ip), Some(1.0));
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
