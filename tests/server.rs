//! sonde's own HTTP server through the real binary: endpoints, methods, gzip, keep-alive
//! and pipelining, hostile clients (idle connections, one byte per second, oversized
//! heads) and running out of file descriptors.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::*;

const ONE_CHECK: &str = "checks:\n  - name: self\n    kind: http\n    interval: 1m\n    urls: [\"http://127.0.0.1:9/\"]\n";

/// Reads one response (head + Content-Length body) from a kept-alive connection.
fn read_response(reader: &mut BufReader<TcpStream>) -> HttpResponse {
    read_next_response(reader)
        .expect("read a response")
        .expect("connection closed before a response")
}

fn keep_alive_get(stream: &mut TcpStream, path: &str) {
    write!(stream, "GET {path} HTTP/1.1\r\nHost: sonde\r\n\r\n").unwrap();
}

/// sonde with one check that has run once (and failed: nothing listens on port 9).
fn ready_sonde() -> Sonde {
    let sonde = Sonde::start(ONE_CHECK);
    sonde.wait_ready();
    sonde
}

#[test]
fn health_endpoints_answer_and_healthcheck_is_json() {
    let sonde = ready_sonde();
    let r = sonde.get("/healthcheck");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        serde_json::json!({"app_name": "sonde", "app_status": "ok"})
    );
    assert_eq!(sonde.get("/-/healthy").status, 200);
    assert_eq!(sonde.get("/-/ready").status, 200);
}

#[test]
fn the_index_page_and_the_checks_api_describe_each_check() {
    let sonde = ready_sonde();
    let r = sonde.get("/");
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains(">self</a>") && r.text().contains("href=\"/metrics\""),
        "{}",
        r.text()
    );
    let checks = sonde.get("/api/v1/checks").json();
    assert_eq!(checks["checks"][0]["name"], "self");
    assert_eq!(checks["checks"][0]["kind"], "http");
    assert_eq!(checks["checks"][0]["interval_seconds"], 60.0);
    assert_eq!(checks["checks"][0]["success"], false);
    assert_eq!(checks["checks"][0]["runs_total"], 1);
    assert!(
        checks["checks"][0]["error"]
            .as_str()
            .unwrap()
            .contains("connect")
    );
    assert!(
        checks["checks"][0]["last_run"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
}

#[test]
fn unknown_paths_are_404_and_wrong_methods_405_with_allow() {
    let sonde = ready_sonde();
    assert_eq!(sonde.get("/nope").status, 404);
    let r = request(sonde.addr, "POST", "/metrics", &[], b"x");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let r = request(sonde.addr, "GET", "/-/reload", &[], b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    assert_eq!(request(sonde.addr, "DELETE", "/", &[], b"").status, 405);
}

#[test]
fn head_gets_the_get_headers_without_a_body() {
    let sonde = ready_sonde();
    let r = request(sonde.addr, "HEAD", "/healthcheck", &[], b"");
    assert_eq!(r.status, 200);
    let get_len = sonde.get("/healthcheck").body.len().to_string();
    assert_eq!(r.header("content-length"), Some(get_len.as_str()));
    assert!(r.body.is_empty());
}

/// gzip when accepted (not when refused with q=0), identical once decoded.
#[test]
fn metrics_are_gzipped_when_accepted() {
    let sonde = ready_sonde();
    let plain = sonde.get("/metrics");
    assert_eq!(
        plain.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(plain.header("content-encoding").is_none());
    let gz = request(
        sonde.addr,
        "GET",
        "/metrics",
        &[("Accept-Encoding", "gzip, deflate")],
        b"",
    );
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    let mut decoded = String::new();
    flate2::read::GzDecoder::new(&gz.body[..])
        .read_to_string(&mut decoded)
        .unwrap();
    // The process_ series change between the two scrapes.
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with("process_"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&decoded), strip(&plain.text()));
    assert!(gz.body.len() < plain.body.len());
    let refused = request(
        sonde.addr,
        "GET",
        "/metrics",
        &[("Accept-Encoding", "gzip;q=0")],
        b"",
    );
    assert!(refused.header("content-encoding").is_none());
}

#[test]
fn custom_telemetry_path() {
    let dir = Dir::new();
    dir.write("sonde.yml", ONE_CHECK);
    let sonde = Sonde::start_in(dir, &["--web.telemetry-path", "/stats"]);
    assert_eq!(sonde.get("/stats").status, 200);
    assert_eq!(sonde.get("/metrics").status, 404);
    assert!(sonde.get("/").text().contains("href=\"/stats\""));
}

#[test]
fn keep_alive_pipelining_and_bad_requests() {
    let sonde = Sonde::start(ONE_CHECK);
    let mut stream = TcpStream::connect(sonde.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Two requests in one write: two responses, in order, on the same connection.
    stream
        .write_all(b"GET /-/healthy HTTP/1.1\r\nHost: a\r\n\r\nGET /healthcheck HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let first = read_response(&mut reader);
    assert_eq!((first.status, first.text().as_str()), (200, "Healthy.\n"));
    let second = read_response(&mut reader);
    assert_eq!(second.json()["app_status"], "ok");
    keep_alive_get(&mut stream, "/-/healthy");
    assert_eq!(read_response(&mut reader).status, 200);

    // Oversized head: 431 and the connection is closed.
    let mut big = TcpStream::connect(sonde.addr).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let header = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(16 << 10));
    let _ = big.write_all(header.as_bytes());
    let mut raw = Vec::new();
    let _ = big.read_to_end(&mut raw);
    assert!(
        String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 431 "),
        "{}",
        String::from_utf8_lossy(&raw)
    );

    // Garbage: 400.
    let mut junk = TcpStream::connect(sonde.addr).unwrap();
    junk.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    junk.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let _ = junk.read_to_end(&mut raw);
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 400 "));
    assert_eq!(sonde.get("/-/healthy").status, 200);
}

#[test]
fn idle_and_slow_clients_do_not_stop_metrics() {
    let sonde = Sonde::start(ONE_CHECK);
    sonde.wait_ready();
    // 300 keep-alive connections that made one request each and now sit idle.
    let mut idle = Vec::new();
    for _ in 0..300 {
        let mut s = TcpStream::connect(sonde.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        keep_alive_get(&mut s, "/-/healthy");
        let mut r = BufReader::new(s.try_clone().unwrap());
        assert_eq!(read_response(&mut r).status, 200);
        idle.push((s, r));
    }
    // A client that sends its request one byte per second.
    let addr = sonde.addr;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = std::sync::Arc::clone(&done);
    let slow = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        for b in b"GET /-/healthy HTTP/1.1\r\nX-Slow: yes" {
            if stop.load(std::sync::atomic::Ordering::Relaxed) || s.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    std::thread::sleep(Duration::from_millis(1500));
    for _ in 0..5 {
        let r = sonde.get("/metrics");
        assert_eq!(r.status, 200);
        assert!(
            r.text()
                .contains("sonde_check_runs_total{check=\"self\",kind=\"http\"} 1")
        );
    }
    // The idle connections still work.
    let (s, r) = &mut idle[150];
    keep_alive_get(s, "/healthcheck");
    assert_eq!(read_response(r).status, 200);
    drop(idle);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = slow.join();
}

#[test]
fn running_out_of_file_descriptors_and_recovering() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        panic!("prlimit (util-linux) is needed for this test");
    }
    let dir = Dir::new();
    let config = dir.write("sonde.yml", ONE_CHECK);
    let mut command = Command::new("prlimit");
    command.args([
        "--nofile=48:48",
        "--",
        sonde_bin(),
        "--web.listen-address",
        "127.0.0.1:0",
        "-c",
    ]);
    command.arg(&config);
    let sonde = Sonde::spawn(&mut command, dir);
    sonde.wait_ready();
    // Far more connections than descriptors: the kernel queues them, sonde takes what it can.
    let mut held = Vec::new();
    for _ in 0..100 {
        if let Ok(s) = TcpStream::connect_timeout(&sonde.addr, Duration::from_secs(2)) {
            held.push(s);
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    // sonde closes the longest-idle connections to answer new requests.
    for _ in 0..3 {
        let r = sonde.get("/metrics");
        assert_eq!(r.status, 200);
        let m = Exposition(r.text());
        assert_eq!(m.value("process_max_fds"), Some(48.0));
        // Every descriptor is in use (inherited ones above the limit may add to it).
        let open = m.value("process_open_fds").unwrap();
        assert!(open >= 45.0, "descriptors were not exhausted: {open}");
    }
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sonde.get("/-/healthy").status, 200);
    assert_eq!(sonde.get("/metrics").status, 200);
    let log = sonde.log().join("\n");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn default_output_passes_promtool() {
    // --once on the built-in default config.
    let out = run(&["--once"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("# TYPE sonde_check_success gauge"), "{text}");
    assert_eq!(promtool_check_metrics(&text).trim(), "", "{text}");
    // A serving instance, process metrics included, with several checks sharing families.
    let config = "checks:\n  - {name: a, kind: http, urls: [\"http://127.0.0.1:9/\"]}\n  - {name: b, kind: http, urls: [\"http://127.0.0.1:9/x\"]}\n";
    let sonde = Sonde::start(config);
    sonde.wait_ready();
    let text = sonde.metrics().0;
    assert_eq!(promtool_check_metrics(&text).trim(), "", "{text}");
    assert_eq!(text.matches("# TYPE sonde_http_up gauge").count(), 1);
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "sonde_build_info{",
        "sonde_config_last_reload_successful 1",
        "sonde_config_last_reload_success_timestamp_seconds ",
        "sonde_check_duration_seconds{check=\"b\",kind=\"http\"}",
        "sonde_check_last_run_timestamp_seconds{check=\"a\",kind=\"http\"}",
        "sonde_check_last_success_timestamp_seconds{check=\"a\",kind=\"http\"} 0",
        "sonde_check_interval_seconds{check=\"a\",kind=\"http\"} 30",
        "sonde_check_failures_total{check=\"a\",kind=\"http\"} 1",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
}
