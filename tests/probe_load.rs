//! A flood of `/probe` requests against a target that never answers: 500 clients at once
//! with `--probe.concurrency 64`. At most 64 probes run, the others are answered 503 at
//! once (not queued), `/metrics` and `/-/healthy` keep answering while the probes hang,
//! and sonde's memory stays bounded over two floods. The latencies and memory figures
//! are printed (`--nocapture`); the assertions are generous bounds that catch queueing
//! behind the probes (which would cost the module's 4 s timeout), not benchmarks.

mod common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::*;

const CLIENTS: usize = 500;
const POOL: usize = 64;

/// Resident memory of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The p50 and maximum of some durations, in milliseconds.
fn p50_max(mut d: Vec<Duration>) -> (f64, f64) {
    d.sort();
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    (ms(&d[d.len() / 2]), ms(&d[d.len() - 1]))
}

/// What one flood came to.
struct Flood {
    ok: usize,
    rejected: Vec<Duration>,
    metrics: Vec<Duration>,
    healthy: Vec<Duration>,
    in_flight_seen: f64,
    peak_rss_kib: u64,
}

/// Sends `CLIENTS` probes at once and, while they hang, times `/metrics` and
/// `/-/healthy` 20 times each.
fn flood(sonde: &Sonde, path: &str) -> Flood {
    let start = Arc::new(Barrier::new(CLIENTS + 1));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (start, addr, path) = (Arc::clone(&start), sonde.addr, path.to_string());
            std::thread::Builder::new()
                .stack_size(128 << 10)
                .spawn(move || {
                    start.wait();
                    let sent = Instant::now();
                    let r = try_request(
                        addr,
                        "GET",
                        &path,
                        &[("X-Prometheus-Scrape-Timeout-Seconds", "10")],
                        b"",
                    );
                    (
                        r.map(|r| r.status).map_err(|e| e.to_string()),
                        sent.elapsed(),
                    )
                })
                .unwrap()
        })
        .collect();
    start.wait();
    let mut in_flight_seen = 0.0;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && in_flight_seen < POOL as f64 {
        in_flight_seen = sonde.metrics().value("sonde_probe_in_flight").unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let (mut metrics, mut healthy) = (Vec::new(), Vec::new());
    let mut peak_rss_kib = 0;
    for _ in 0..20 {
        let t = Instant::now();
        assert_eq!(sonde.get("/metrics").status, 200);
        metrics.push(t.elapsed());
        let t = Instant::now();
        assert_eq!(sonde.get("/-/healthy").status, 200);
        healthy.push(t.elapsed());
        peak_rss_kib = peak_rss_kib.max(rss_kib(sonde.child.id()));
        std::thread::sleep(Duration::from_millis(25));
    }
    let mut ok = 0;
    let mut rejected = Vec::new();
    for client in clients {
        match client.join().unwrap() {
            (Ok(200), _) => ok += 1,
            (Ok(503), took) => rejected.push(took),
            (other, took) => panic!("a client got {other:?} after {took:?}"),
        }
    }
    Flood {
        ok,
        rejected,
        metrics,
        healthy,
        in_flight_seen,
        peak_rss_kib,
    }
}

#[test]
fn a_flood_of_probes_is_bounded_and_the_other_endpoints_keep_answering() {
    let hang = Fixture::start(|_| Reply::Hang);
    let dir = Dir::new();
    dir.write("sonde.yml", "modules:\n  slow:\n    timeout: 4s\n");
    let sonde = Sonde::start_in(dir, &["--probe.concurrency", &POOL.to_string()]);
    let path = format!("/probe?module=slow&target={}", percent(&hang.url("/")));
    let before = rss_kib(sonde.child.id());
    let mut rejected_total = 0;
    let mut peaks = Vec::new();
    for round in 1..=2 {
        let f = flood(&sonde, &path);
        let (m50, mmax) = p50_max(f.metrics.clone());
        let (h50, hmax) = p50_max(f.healthy.clone());
        let (r50, rmax) = p50_max(f.rejected.clone());
        println!(
            "flood {round}: {CLIENTS} requests, {} probed, {} got 503 (p50 {r50:.1} ms, max {rmax:.1} ms); in flight {}; during the flood /metrics p50 {m50:.1} ms max {mmax:.1} ms, /-/healthy p50 {h50:.1} ms max {hmax:.1} ms; RSS {} KiB before, {} KiB at the peak",
            f.ok,
            f.rejected.len(),
            f.in_flight_seen,
            before,
            f.peak_rss_kib
        );
        assert_eq!(f.ok + f.rejected.len(), CLIENTS);
        assert!(f.ok <= POOL, "{} probes ran", f.ok);
        assert_eq!(f.in_flight_seen, POOL as f64);
        // 503 at once: none waited for a probe to end (4 s).
        assert!(rmax < 2000.0, "a 503 took {rmax} ms");
        // The 100 ms for the other endpoints, as a median; the maximum only has
        // to show that nothing waited behind the probes.
        assert!(m50 < 100.0 && h50 < 100.0, "{m50} {h50}");
        assert!(mmax < 2000.0 && hmax < 2000.0, "{mmax} {hmax}");
        rejected_total += f.rejected.len();
        peaks.push(f.peak_rss_kib);
    }
    let m = sonde.wait_metrics(10, |m| m.value("sonde_probe_in_flight") == Some(0.0));
    assert_eq!(
        m.value("sonde_probe_requests_total{module=\"slow\",result=\"rejected\"}"),
        Some(rejected_total as f64)
    );
    // Bounded: a pool's worth of threads and connections, and no growth from one
    // flood to the next.
    assert!(peaks[0] < before + (64 << 10), "{peaks:?} from {before}");
    assert!(peaks[1] < peaks[0] + (8 << 10), "{peaks:?}");
}
