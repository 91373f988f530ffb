//! Signals and reloads through the real binary: SIGTERM/SIGINT end sonde promptly even
//! with a probe hanging, SIGHUP and POST /-/reload swap the config or keep the old one.

mod common;

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn hanging_config(f: &Fixture) -> String {
    format!(
        "checks:\n  - name: stuck\n    kind: http\n    interval: 1m\n    timeout: 50s\n    urls: [\"{}\"]\n",
        f.url("/hang")
    )
}

fn stop_while_probe_hangs(signal: &str) {
    let f = Fixture::start(|_| Reply::Hang);
    let mut sonde = Sonde::start(&hanging_config(&f));
    // Wait until the probe is in flight: the fixture has the request.
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.seen().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the probe never reached the fixture"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = Instant::now();
    sonde.signal(signal);
    let code = sonde.wait_exit(Duration::from_secs(2));
    assert_eq!(
        code,
        Some(0),
        "{signal}: not ended with 0 within 2 s ({:?})",
        sent.elapsed()
    );
    assert!(
        sonde.log().iter().any(|l| l.contains("shutting down")),
        "{:?}",
        sonde.log()
    );
}

#[test]
fn sigterm_while_a_probe_hangs() {
    stop_while_probe_hangs("TERM");
}

#[test]
fn sigint_while_a_probe_hangs() {
    stop_while_probe_hangs("INT");
}

#[test]
fn sighup_with_a_broken_config_keeps_the_running_one() {
    let f = Fixture::start(|_| Reply::status(200, "ok"));
    let good = format!(
        "checks:\n  - name: first\n    kind: http\n    interval: 1s\n    urls: [\"{}\"]\n",
        f.url("/a")
    );
    let sonde = Sonde::start(&good);
    sonde.wait_metrics(10, |m| {
        m.value("sonde_check_runs_total{check=\"first\",kind=\"http\"}") >= Some(1.0)
    });

    sonde.dir.write(
        "sonde.yml",
        "checks:\n  - name: first\n    kind: http\n    urlz: []\n",
    );
    sonde.signal("HUP");
    let m = sonde.wait_metrics(10, |m| {
        m.value("sonde_config_last_reload_successful") == Some(0.0)
    });
    let runs = m
        .value("sonde_check_runs_total{check=\"first\",kind=\"http\"}")
        .unwrap();
    // The old check carries on.
    sonde.wait_metrics(10, |m| {
        m.value("sonde_check_runs_total{check=\"first\",kind=\"http\"}") > Some(runs)
    });
    assert!(
        sonde
            .log()
            .iter()
            .any(|l| l.contains("config reload failed") && l.contains("unknown field `urlz`"))
    );

    // A fixed config replaces it; an unchanged check would keep its counters.
    let next = format!(
        "{good}  - name: second\n    kind: http\n    interval: 1s\n    urls: [\"{}\"]\n",
        f.url("/b")
    );
    sonde.dir.write("sonde.yml", &next);
    sonde.signal("HUP");
    let m = sonde.wait_metrics(10, |m| {
        m.value("sonde_config_last_reload_successful") == Some(1.0)
            && m.has("sonde_check_success{check=\"second\"")
    });
    assert!(
        m.value("sonde_check_runs_total{check=\"first\",kind=\"http\"}")
            .unwrap()
            > runs,
        "counters were reset"
    );
}

#[test]
fn post_reload_answers_with_the_outcome() {
    let f = Fixture::start(|_| Reply::status(200, "ok"));
    let good = format!(
        "checks:\n  - name: one\n    kind: http\n    urls: [\"{}\"]\n",
        f.url("/")
    );
    let dir = Dir::new();
    dir.write("sonde.yml", &good);
    let sonde = Sonde::start_in(dir, &["--web.enable-lifecycle"]);
    sonde.wait_ready();
    sonde.dir.write(
        "sonde.yml",
        "checks:\n  - name: one\n    kind: http\n    urls: []\n",
    );
    let r = request(sonde.addr, "POST", "/-/reload", &[], b"");
    assert_eq!(r.status, 500);
    assert!(
        r.text().contains("check \"one\": `urls` is empty"),
        "{}",
        r.text()
    );
    assert_eq!(
        sonde.metrics().value("sonde_config_last_reload_successful"),
        Some(0.0)
    );
    let renamed = good.replace("name: one", "name: two");
    sonde.dir.write("sonde.yml", &renamed);
    let r = request(sonde.addr, "POST", "/-/reload", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let m = sonde.wait_metrics(10, |m| m.has("sonde_check_success{check=\"two\""));
    assert!(!m.has("sonde_check_success{check=\"one\""));
    assert_eq!(m.value("sonde_config_last_reload_successful"), Some(1.0));
}

/// Without `--web.enable-lifecycle`, `POST /-/reload` is refused with a text naming the
/// flag, and the config is not re-read; SIGHUP still reloads.
#[test]
fn post_reload_needs_the_lifecycle_flag() {
    let f = Fixture::start(|_| Reply::status(200, "ok"));
    let good = format!(
        "checks:\n  - name: one\n    kind: http\n    urls: [\"{}\"]\n",
        f.url("/")
    );
    let sonde = Sonde::start(&good);
    sonde.wait_ready();
    sonde
        .dir
        .write("sonde.yml", good.replace("name: one", "name: two"));
    let r = request(sonde.addr, "POST", "/-/reload", &[], b"");
    assert_eq!(r.status, 403);
    assert!(r.text().contains("--web.enable-lifecycle"), "{}", r.text());
    std::thread::sleep(Duration::from_millis(300));
    assert!(sonde.metrics().has("sonde_check_success{check=\"one\""));
    sonde.signal("HUP");
    sonde.wait_metrics(10, |m| m.has("sonde_check_success{check=\"two\""));
}

#[test]
fn a_taken_port_exits_1() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(&["--web.listen-address", &addr]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("sonde:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].starts_with(&format!("sonde: cannot listen on {addr}:")),
        "{stderr}"
    );
}

#[test]
fn go_style_listen_address() {
    // ":PORT" listens on every interface; port 0 lets the kernel pick a free one.
    let dir = Dir::new();
    let sonde = Sonde::spawn(
        Command::new(sonde_bin()).args(["--web.listen-address", ":0"]),
        dir,
    );
    assert!(sonde.addr.ip().is_unspecified(), "{}", sonde.addr);
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], sonde.addr.port()));
    assert_eq!(request(local, "GET", "/-/healthy", &[], b"").status, 200);
}

/// A reload of the same checks written differently — a comment added above them, flow
/// instead of block style — keeps each check running with its counters: checks compare
/// by what they say, not by where in the file it is written.
#[test]
fn a_moved_line_or_another_style_keeps_an_unchanged_check_running() {
    let f = Fixture::start(|_| Reply::status(200, "ok"));
    let block = format!(
        "checks:\n  - name: web\n    kind: http\n    interval: 1s\n    headers: {{Accept: text/plain}}\n    urls: [\"{}\"]\n",
        f.url("/a")
    );
    let sonde = Sonde::start(&block);
    let runs = |m: &Exposition| m.value("sonde_check_runs_total{check=\"web\",kind=\"http\"}");
    let probes = "sonde_http_probes_total{check=\"web\",url=\"".to_string()
        + &f.url("/a")
        + "\",result=\"success\"}";
    let m = sonde.wait_metrics(10, |m| runs(m) >= Some(2.0));
    let (before_runs, before_probes) = (runs(&m).unwrap(), m.value(&probes).unwrap());

    let moved = format!("# a comment that moves every line down\n\n{block}");
    let flow = format!(
        "# flow style\nchecks: [{{name: web, kind: http, interval: 1s, headers: {{Accept: text/plain}}, urls: [\"{}\"]}}]\n",
        f.url("/a")
    );
    for (i, text) in [moved, flow].into_iter().enumerate() {
        sonde.dir.write("sonde.yml", &text);
        sonde.signal("HUP");
        let reloads = sonde.wait_metrics(10, |_| {
            sonde
                .log()
                .iter()
                .filter(|l| l.contains("config reloaded"))
                .count()
                > i
        });
        assert!(
            runs(&reloads).unwrap() >= before_runs
                && reloads.value(&probes).unwrap() >= before_probes,
            "reload {i} reset the counters: {} runs, {:?} probes (were {before_runs}, {before_probes})",
            runs(&reloads).unwrap(),
            reloads.value(&probes)
        );
    }
}
