//! `/probe` as blackbox_exporter's users call it: Debian's `prometheus-blackbox-exporter`
//! (0.23) and sonde read the same blackbox.yml and probe the same targets served here on
//! 127.0.0.1, each pair through `/probe?target=..&module=..` with the same scrape-timeout
//! header. For every pair the metric names, `probe_success`, the status code, the
//! redirects, `probe_http_ssl`, `probe_failed_due_to_regex` and (where blackbox exports
//! it) `probe_ssl_earliest_cert_expiry` must agree; the table printed (`--nocapture`)
//! shows every row. Beside it: the timeout rule, `debug=true`, bad requests, refused
//! modules, `--config.check`, reload, auth, and `modules:` of sonde's own config.

mod common;
mod outbound;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use common::*;
use outbound::*;

/// The timeout of every module of the side-by-side config.
const MODULE_TIMEOUT_SECS: u64 = 2;

fn route(req: &SeenRequest) -> Reply {
    match req.path.as_str() {
        "/ok" => Reply::status(200, "all good"),
        "/ready" => Reply::status(200, "status: ready"),
        "/missing" => Reply::status(404, "no such page"),
        "/503" => Reply::status(503, "unavailable"),
        "/redirect" => Reply::status(302, "").with_header("Location", "/ok"),
        "/loop" => Reply::status(302, "").with_header("Location", "/loop"),
        "/hang" => Reply::Hang,
        "/post" => {
            let right = req.method == "POST"
                && req.header("content-type") == Some("application/json")
                && req.header("x-api-key") == Some("k-123")
                && req.body == br#"{"query":"health"}"#;
            if right {
                Reply::status(200, "{\"ok\":true}")
            } else {
                Reply::status(400, "wrong request")
            }
        }
        _ => Reply::status(404, "no such fixture"),
    }
}

/// The samples of one answer of `/probe`, by series (name and labels as written).
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The metric names of an answer.
fn names(s: &BTreeMap<String, f64>) -> BTreeSet<String> {
    s.keys()
        .map(|k| k.split('{').next().unwrap_or(k).to_string())
        .collect()
}

fn show(v: Option<&f64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The blackbox.yml both exporters read, as a user writes it.
fn blackbox_yml(dir: &Dir) -> String {
    let d = dir.path().display();
    format!(
        "modules:
  http_2xx:
    prober: http
    timeout: {MODULE_TIMEOUT_SECS}s
  http_post_json:
    prober: http
    timeout: {MODULE_TIMEOUT_SECS}s
    http:
      method: POST
      headers:
        Content-Type: application/json
        X-Api-Key: k-123
      body: '{{\"query\":\"health\"}}'
  https_pinned:
    prober: http
    timeout: {MODULE_TIMEOUT_SECS}s
    http:
      fail_if_not_ssl: true
      tls_config:
        ca_file: {d}/trust.pem
  http_ready:
    prober: http
    timeout: {MODULE_TIMEOUT_SECS}s
    http:
      fail_if_body_not_matches_regexp: ['status: ready']
  http_404:
    prober: http
    timeout: {MODULE_TIMEOUT_SECS}s
    http:
      valid_status_codes: [404]
  tcp_connect:
    prober: tcp
    timeout: 5s
"
    )
}

/// One pair: a module and a target, with what it must come to.
struct Pair {
    name: &'static str,
    module: &'static str,
    target: String,
    success: f64,
}

/// Asks one exporter's `/probe`.
fn probe(addr: SocketAddr, module: &str, target: &str) -> (BTreeMap<String, f64>, Duration) {
    let started = Instant::now();
    let path = format!("/probe?module={module}&target={}", percent(target));
    let answer = request(
        addr,
        "GET",
        &path,
        &[("X-Prometheus-Scrape-Timeout-Seconds", "10")],
        b"",
    );
    assert_eq!(answer.status, 200, "{addr} {path}: {}", answer.text());
    (samples(&answer.text()), started.elapsed())
}

/// The series both exporters must agree on, wherever either exports them.
const COMPARED: [&str; 10] = [
    "probe_success",
    "probe_http_status_code",
    "probe_http_redirects",
    "probe_http_ssl",
    "probe_failed_due_to_regex",
    "probe_http_content_length",
    "probe_http_uncompressed_body_length",
    "probe_http_version",
    "probe_ip_protocol",
    "probe_ip_addr_hash",
];

const EXPIRY: &str = "probe_ssl_earliest_cert_expiry";

/// The pairs of the matrix: every fixture's route under the modules of [`blackbox_yml`].
fn pairs(web: &Fixture, pinned: &Fixture, expired: &Fixture) -> Vec<Pair> {
    let https = |f: &Fixture, path: &str| format!("https://127.0.0.1:{}{path}", f.addr.port());
    [
        ("ok_200", "http_2xx", web.url("/ok"), 1.0),
        ("status_404_wanted", "http_404", web.url("/missing"), 1.0),
        ("status_404", "http_2xx", web.url("/missing"), 0.0),
        ("status_503", "http_2xx", web.url("/503"), 0.0),
        ("redirect", "http_2xx", web.url("/redirect"), 1.0),
        ("redirect_loop", "http_2xx", web.url("/loop"), 0.0),
        ("post_json", "http_post_json", web.url("/post"), 1.0),
        (
            "refused",
            "http_2xx",
            format!("http://127.0.0.1:{}/", closed_port()),
            0.0,
        ),
        (
            "unresolvable",
            "http_2xx",
            "http://nonexistent.invalid/".into(),
            0.0,
        ),
        ("hang", "http_2xx", web.url("/hang"), 0.0),
        ("pinned_tls", "https_pinned", https(pinned, "/ok"), 1.0),
        ("expired_tls", "https_pinned", https(expired, "/ok"), 0.0),
        ("not_ssl", "https_pinned", web.url("/ok"), 0.0),
        ("body_regex_match", "http_ready", web.url("/ready"), 1.0),
        ("body_regex_miss", "http_ready", web.url("/ok"), 0.0),
        ("no_scheme", "http_2xx", web.addr.to_string() + "/ok", 1.0),
    ]
    .into_iter()
    .map(|(name, module, target, success)| Pair {
        name,
        module,
        target,
        success,
    })
    .collect()
}

/// Where sonde's answer `s` to `pair` differs from blackbox's `b`, each named by the
/// pair: metric names, the [`COMPARED`] values, the expiry (within a second), and
/// whether it came to what the pair means.
fn differences(pair: &Pair, b: &BTreeMap<String, f64>, s: &BTreeMap<String, f64>) -> Vec<String> {
    let mut out = Vec::new();
    let (b_names, s_names) = (names(b), names(s));
    // What sonde adds: why it failed, and the expiry of a certificate whose
    // handshake failed (blackbox exports no TLS series then).
    let mut allowed_extra = BTreeSet::from(["probe_failure_reason".to_string()]);
    if !b_names.contains(EXPIRY) {
        allowed_extra.insert(EXPIRY.to_string());
    }
    let only_b: Vec<&String> = b_names.difference(&s_names).collect();
    let only_s: Vec<&String> = s_names
        .difference(&b_names)
        .filter(|n| !allowed_extra.contains(*n))
        .collect();
    if !only_b.is_empty() || !only_s.is_empty() {
        out.push(format!(
            "{}: names only blackbox has {only_b:?}, only sonde has {only_s:?}",
            pair.name
        ));
    }
    for name in COMPARED {
        if b.get(name) != s.get(name) {
            out.push(format!(
                "{}: {name} blackbox {} sonde {}",
                pair.name,
                show(b.get(name)),
                show(s.get(name))
            ));
        }
    }
    if let (Some(bv), sv) = (b.get(EXPIRY), s.get(EXPIRY))
        && sv.is_none_or(|sv| (sv - bv).abs() > 1.0)
    {
        out.push(format!(
            "{}: {EXPIRY} blackbox {bv} sonde {}",
            pair.name,
            show(sv)
        ));
    }
    if s.get("probe_success") != Some(&pair.success) {
        out.push(format!(
            "{}: probe_success is {}, meant {}",
            pair.name,
            show(s.get("probe_success")),
            pair.success
        ));
    }
    out
}

const TABLE_HEAD: &str = "| pair | module | exporter | success | status | redirects | ssl | regex | content length | body length | version | earliest expiry | seconds | names only here |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";

/// One exporter's line of the printed table.
fn table_line(
    pair: &Pair,
    who: &str,
    m: &BTreeMap<String, f64>,
    took: Duration,
    extra: &str,
) -> String {
    let v = |n: &str| show(m.get(n));
    format!(
        "| {} | {} | {who} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {extra} |\n",
        pair.name,
        pair.module,
        v("probe_success"),
        v("probe_http_status_code"),
        v("probe_http_redirects"),
        v("probe_http_ssl"),
        v("probe_failed_due_to_regex"),
        v("probe_http_content_length"),
        v("probe_http_uncompressed_body_length"),
        v("probe_http_version"),
        v(EXPIRY),
        took.as_secs_f64(),
    )
}

#[test]
fn sonde_and_blackbox_exporter_answer_probe_alike() {
    let dir = Dir::new();
    let web = Fixture::start(route);
    let pinned = Fixture::start_tls(&openssl_self_signed(dir.path(), "pinned"), route);
    let ca = TestCa::new();
    let expired = Fixture::start_tls(&ca.leaf((2020, 1, 1), (2021, 3, 4)), route);
    dir.write(
        "trust.pem",
        format!("{}{}", ca.pem, read(dir.path(), "pinned.pem")),
    );
    let bb_config = dir.write("blackbox.yml", blackbox_yml(&dir));
    let pairs = pairs(&web, &pinned, &expired);

    let blackbox = start_blackbox_exporter(&dir, &bb_config);
    let bb_arg = bb_config.display().to_string();
    let sonde = Sonde::start_in(Dir::new(), &["--blackbox.config.file", &bb_arg]);

    let mut table = String::from(TABLE_HEAD);
    let mut disagreements = Vec::new();
    for pair in &pairs {
        let (b, b_took) = probe(blackbox.addr, pair.module, &pair.target);
        let (s, s_took) = probe(sonde.addr, pair.module, &pair.target);
        disagreements.extend(differences(pair, &b, &s));
        let extra: Vec<String> = names(&s).difference(&names(&b)).cloned().collect();
        table.push_str(&table_line(pair, "blackbox", &b, b_took, ""));
        table.push_str(&table_line(pair, "sonde", &s, s_took, &extra.join(" ")));
    }
    println!("{table}");
    assert!(
        disagreements.is_empty(),
        "sonde and blackbox_exporter disagree:\n{}\n{table}\nsonde's log: {:?}",
        disagreements.join("\n"),
        sonde.log()
    );
    // Where only sonde speaks: the expired certificate's NotAfter, and why it failed.
    let expired_url = format!("https://127.0.0.1:{}/ok", expired.addr.port());
    let (s, _) = probe(sonde.addr, "https_pinned", &expired_url);
    assert_eq!(s.get(EXPIRY), Some(&(unix_day(2021, 3, 4) as f64)));
    assert_eq!(s.get("probe_failure_reason{reason=\"tls\"}"), Some(&1.0));
    // Both bounded the hanging target by the module's timeout.
    let (s, took) = probe(sonde.addr, "http_2xx", &web.url("/hang"));
    assert_eq!(
        s.get("probe_failure_reason{reason=\"timeout\"}"),
        Some(&1.0)
    );
    assert!(
        took >= Duration::from_secs(MODULE_TIMEOUT_SECS) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // The POST reached the fixture as configured, from both.
    let posts = web.seen().iter().filter(|r| r.path == "/post").count();
    assert_eq!(posts, 2);
    // A module of another prober is refused by sonde, with where it is written.
    let refused = sonde.get(&format!(
        "/probe?module=tcp_connect&target={}",
        percent("127.0.0.1:22")
    ));
    assert_eq!(refused.status, 400);
    let line = blackbox_yml(&dir)
        .lines()
        .position(|l| l == "    prober: tcp")
        .unwrap()
        + 1;
    let want =
        format!("blackbox.yml:{line}:13: module \"tcp_connect\": prober tcp is not supported");
    assert!(refused.text().contains(&want), "{}", refused.text());
}

/// The target and module of a `/probe` path.
fn probe_path(module: &str, target: &str) -> String {
    format!("/probe?module={module}&target={}", percent(target))
}

/// Waits (at most 20 s) until `pred` holds on the answer of `path`.
fn wait_for(sonde: &Sonde, path: &str, pred: impl Fn(&HttpResponse) -> bool) -> HttpResponse {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = sonde.get(path);
        if pred(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: {} {}\nlog: {:?}",
            r.status,
            r.text(),
            sonde.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_one_second_scrape_timeout_bounds_a_hanging_probe_to_half_a_second() {
    let web = Fixture::start(route);
    let dir = Dir::new();
    dir.write("sonde.yml", "modules:\n  slow:\n    timeout: 30s\n");
    let sonde = Sonde::start_in(dir, &[]);
    let started = Instant::now();
    let answer = request(
        sonde.addr,
        "GET",
        &probe_path("slow", &web.url("/hang")),
        &[("X-Prometheus-Scrape-Timeout-Seconds", "1")],
        b"",
    );
    let took = started.elapsed();
    assert_eq!(answer.status, 200, "{}", answer.text());
    let s = samples(&answer.text());
    let probed = s["probe_duration_seconds"];
    println!("a 1 s scrape timeout: the probe took {probed:.3} s, the answer {took:?}");
    assert!((0.45..0.9).contains(&probed), "{probed}");
    // The answer is there before Prometheus' own 1 s timeout gives up on it.
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(
        s.get("probe_failure_reason{reason=\"timeout\"}"),
        Some(&1.0)
    );
    assert_eq!(s.get("probe_success"), Some(&0.0));
}

/// The `debug=true` answer of a probe of `target` with `module`, which must be a 200.
fn debug_text(sonde: &Sonde, module: &str, target: &str) -> String {
    let debug = sonde.get(&format!("{}&debug=true", probe_path(module, target)));
    assert_eq!(debug.status, 200, "{module} {target}");
    debug.text()
}

#[test]
fn modules_of_sondes_config_run_and_debug_tells_the_story_without_secrets() {
    let web = Fixture::start(route);
    let dir = Dir::new();
    dir.write("api-key", "k-123\n");
    dir.write(
        "sonde.yml",
        "modules:
  api:
    timeout: 5s
    method: POST
    headers:
      Content-Type: application/json
      X-Api-Key: {file: api-key}
    body: '{\"query\":\"health\"}'
  inline:
    headers: {Authorization: Bearer t0ken-inline}
    valid_status_codes: [404]
",
    );
    let sonde = Sonde::start_in(dir, &[]);
    let ok = sonde.get(&probe_path("api", &web.url("/post")));
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(
        samples(&ok.text()).get("probe_success"),
        Some(&1.0),
        "{}",
        ok.text()
    );
    assert_eq!(promtool_check_metrics(&ok.text()), "");
    let text = debug_text(&sonde, "api", &web.url("/post"));
    for part in [
        "Logs for the probe:\n",
        "msg=\"Beginning probe\" probe=http timeout_seconds=5",
        "msg=\"Received HTTP response\" status_code=200",
        "msg=\"Probe succeeded\"",
        "\n\n\n\nMetrics that would have been returned:\n",
        "\nprobe_success 1\n",
        "\n\n\nModule configuration:\n# ",
        "sonde.yml:2:3 (timeout 5s)\n",
        "method: \"POST\"\n",
        "  Content-Type: \"application/json\"\n",
        "  X-Api-Key:\n    file: \"api-key\"\n",
    ] {
        assert!(text.contains(part), "{part:?} in\n{text}");
    }
    assert!(!text.contains("k-123"), "{text}");
    let text = debug_text(&sonde, "inline", &web.url("/missing"));
    assert!(text.contains("Authorization: \"<hidden>\""), "{text}");
    assert!(!text.contains("t0ken-inline"), "{text}");
    assert!(text.contains("\nprobe_success 1\n"), "{text}");
    let failed = debug_text(&sonde, "api", &web.url("/503"));
    assert!(
        failed.contains(
            "level=error msg=\"Probe failed\" reason=status_code cause=\"status 503 is not 2xx\""
        ),
        "{failed}"
    );
    let m = sonde.metrics();
    assert_eq!(
        m.value("sonde_probe_requests_total{module=\"api\",result=\"success\"}"),
        Some(2.0)
    );
    assert_eq!(
        m.value("sonde_probe_requests_total{module=\"api\",result=\"failure\"}"),
        Some(1.0)
    );
    assert_eq!(m.value("sonde_probe_in_flight"), Some(0.0));
    assert!(!sonde.log().join("\n").contains("k-123"));
}

#[test]
fn bad_requests_are_answered_400_in_one_line() {
    let web = Fixture::start(route);
    let dir = Dir::new();
    dir.write("sonde.yml", "modules:\n  http_2xx: {timeout: 5s}\n");
    let sonde = Sonde::start_in(dir, &[]);
    for (path, headers, want) in [
        ("/probe", vec![], "the target parameter is missing"),
        (
            "/probe?module=http_2xx&target=",
            vec![],
            "the target parameter is missing",
        ),
        (
            "/probe?target=a&module=nope",
            vec![],
            "unknown module \"nope\"",
        ),
        (
            "/probe?target=a",
            vec![("X-Prometheus-Scrape-Timeout-Seconds", "soon")],
            "X-Prometheus-Scrape-Timeout-Seconds \"soon\" is not a number of seconds",
        ),
    ] {
        let r = request(sonde.addr, "GET", path, &headers, b"");
        assert_eq!((r.status, r.text().trim_end()), (400, want), "{path}");
        assert_eq!(r.text().lines().count(), 1, "{path}");
    }
    let r = request(
        sonde.addr,
        "POST",
        &probe_path("http_2xx", &web.url("/ok")),
        &[],
        b"",
    );
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    // Without module= the module is http_2xx, as in blackbox_exporter.
    let ok = sonde.get(&format!("/probe?target={}", percent(&web.url("/ok"))));
    assert_eq!(samples(&ok.text()).get("probe_success"), Some(&1.0));
    // A target that is not an http(s) URL fails the probe, as in blackbox_exporter.
    let ftp = samples(
        &sonde
            .get(&probe_path("http_2xx", "ftp://127.0.0.1/"))
            .text(),
    );
    assert_eq!(ftp.get("probe_success"), Some(&0.0));
    assert_eq!(
        ftp.get("probe_failure_reason{reason=\"invalid_target\"}"),
        Some(&1.0)
    );
    let m = sonde.metrics();
    assert_eq!(
        m.value("sonde_probe_requests_total{module=\"\",result=\"invalid\"}"),
        Some(4.0)
    );
}

/// A module without a timeout takes the scrape's from the header; a value too large for
/// a deadline (1e20 s once aborted sonde) counts as ten minutes, and sonde answers on.
#[test]
fn a_huge_scrape_timeout_header_is_capped_not_fatal() {
    let web = Fixture::start(route);
    let dir = Dir::new();
    dir.write("sonde.yml", "modules:\n  http_2xx: {}\n");
    let sonde = Sonde::start_in(dir, &[]);
    for huge in ["1e20", "1.7e308", "18446744073709551616"] {
        let r = request(
            sonde.addr,
            "GET",
            &probe_path("http_2xx", &web.url("/ok")),
            &[("X-Prometheus-Scrape-Timeout-Seconds", huge)],
            b"",
        );
        assert_eq!(r.status, 200, "{huge}");
        assert_eq!(
            samples(&r.text()).get("probe_success"),
            Some(&1.0),
            "{huge}"
        );
    }
    assert_eq!(sonde.get("/metrics").status, 200);
}

/// A blackbox config with one module sonde runs and two it refuses.
fn refusing_blackbox_yml(dir: &Dir) -> String {
    let bb = dir.write(
        "blackbox.yml",
        "modules:
  http_2xx:
    prober: http
  icmp:
    prober: icmp
  oauth:
    prober: http
    http:
      oauth2: {client_id: x, client_secret: y, token_url: 'http://127.0.0.1/'}
      valid_status_code: [200]
",
    );
    bb.to_str().unwrap().to_string()
}

#[test]
fn config_check_names_refused_modules_with_their_place() {
    let dir = Dir::new();
    let bb = &refusing_blackbox_yml(&dir);
    let out = run(&["--config.check", "--blackbox.config.file", bb]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            format!(
                "sonde: warning: {bb}:5:13: module \"icmp\": prober icmp is not supported: sonde probes http only; /probe refuses this module"
            ),
            format!(
                "sonde: warning: {bb}:9:7: module \"oauth\": oauth2: OAuth 2.0 client credentials are not supported; /probe refuses this module"
            ),
            format!(
                "sonde: warning: {bb}:10:7: module \"oauth\": unknown key `valid_status_code` of an http module; /probe refuses this module"
            ),
        ]
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("is valid: 1 check(s), 1 probe module(s), 2 refused"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn config_check_names_errors_of_sondes_own_modules_with_their_place() {
    let dir = Dir::new();
    // sonde's own modules are config: a problem is an error, with its place.
    let cfg = dir.write(
        "sonde.yml",
        "modules:\n  http_2xx:\n    timeout: 0s\n  re:\n    fail_if_body_matches_regexp: ['(']\n  typo:\n    methd: GET\n",
    );
    let cfg = cfg.to_str().unwrap();
    let out = run(&["--config.check", "-c", cfg]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with(&format!("sonde: {cfg}:7:5: unknown field `methd`")),
        "{stderr}"
    );
    let cfg_ok = dir.write(
        "ok.yml",
        "modules:\n  http_2xx:\n    timeout: 0s\n  re:\n    fail_if_body_matches_regexp: ['(']\n",
    );
    let cfg_ok = cfg_ok.to_str().unwrap();
    let out = run(&["--config.check", "-c", cfg_ok]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines[0].starts_with(&format!(
            "sonde: {cfg_ok}:3:14: module \"http_2xx\": timeout must be greater than 0"
        )),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "sonde: {cfg_ok}:5:35: module \"re\": invalid regular expression \"(\""
        )),
        "{stderr}"
    );
}

#[test]
fn config_check_says_when_a_blackbox_module_replaces_one_of_sondes() {
    let dir = Dir::new();
    let bb = &refusing_blackbox_yml(&dir);
    // A name in both files: the blackbox file's module replaces sonde's, and says so.
    let both = dir.write("both.yml", "modules:\n  http_2xx: {timeout: 5s}\n");
    let out = run(&[
        "--config.check",
        "-c",
        both.to_str().unwrap(),
        "--blackbox.config.file",
        bb,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "sonde: warning: {bb}:2:3: module \"http_2xx\" replaces the one defined at {}:2:3\n",
            both.display()
        )),
        "{stderr}"
    );
}

#[test]
fn config_check_refuses_a_missing_blackbox_config_and_bad_probe_flags() {
    for (args, want) in [
        (
            vec!["--blackbox.config.file", "/nonexistent/blackbox.yml"],
            "sonde: /nonexistent/blackbox.yml: cannot read the blackbox config",
        ),
        (
            vec!["--probe.concurrency", "0"],
            "sonde: --probe.concurrency \"0\": use a number from 1 to 4096",
        ),
        (
            vec!["--probe.concurrency=lots"],
            "sonde: --probe.concurrency \"lots\": use a number from 1 to 4096",
        ),
    ] {
        let mut all = vec!["--config.check"];
        all.extend(args);
        let out = run(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.starts_with(want), "{stderr}");
    }
}

#[test]
fn a_reload_rereads_the_blackbox_config_and_keeps_it_when_broken() {
    let web = Fixture::start(route);
    let dir = Dir::new();
    dir.write("sonde.yml", "modules:\n  own: {timeout: 5s}\n");
    let bb = dir.write("blackbox.yml", "modules:\n  first:\n    prober: http\n");
    let bb = bb.display().to_string();
    let sonde = Sonde::start_in(dir, &["--blackbox.config.file", &bb]);
    let ok = |r: &HttpResponse| r.status == 200 && r.text().contains("\nprobe_success 1\n");
    wait_for(&sonde, &probe_path("first", &web.url("/ok")), ok);
    std::fs::write(
        &bb,
        "modules:\n  second:\n    prober: http\n    http: {valid_status_codes: [404]}\n",
    )
    .unwrap();
    sonde.signal("HUP");
    wait_for(&sonde, &probe_path("second", &web.url("/missing")), ok);
    let gone = sonde.get(&probe_path("first", &web.url("/ok")));
    assert_eq!(
        (gone.status, gone.text().trim_end()),
        (400, "unknown module \"first\"")
    );
    assert!(ok(&sonde.get(&probe_path("own", &web.url("/ok")))));
    std::fs::write(&bb, "modules: [").unwrap();
    sonde.signal("HUP");
    sonde.wait_metrics(20, |m| {
        m.value("sonde_config_last_reload_successful") == Some(0.0)
    });
    assert!(ok(&sonde.get(&probe_path("second", &web.url("/missing")))));
}

/// The configs of the README's "Coming from blackbox_exporter" run as a user runs them:
/// the Prometheus job through `promtool check config`, sonde's modules through
/// `--config.check` with the files they name in place of /etc/sonde.
#[test]
fn the_readme_configs_of_coming_from_blackbox_check_out() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let blocks = readme_blocks(&readme, "## Coming from blackbox_exporter");
    assert_eq!(blocks.len(), 2, "{blocks:?}");
    let dir = Dir::new();
    let ca = TestCa::new();
    dir.write("ca.pem", &ca.pem);
    dir.write("api-key", "key");
    for block in &blocks {
        if block.starts_with("scrape_configs:") {
            let path = dir.write("prometheus.yml", block);
            let out = std::process::Command::new("promtool")
                .args(["check", "config"])
                .arg(&path)
                .output()
                .expect("promtool (Debian package prometheus)");
            assert!(
                out.status.success(),
                "{block}\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        } else {
            let text = block.replace("/etc/sonde/", &format!("{}/", dir.path().display()));
            let path = dir.write("sonde.yml", &text);
            let out = run(&["--config.check", "-c", path.to_str().unwrap()]);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(stdout.contains("2 probe module(s), 0 refused"), "{stdout}");
        }
    }
}
