//! Probes spread over the interval: after a first run that probes everything at once
//! (so a started sonde has data at once), each URL is probed at its own place in the
//! interval, the run publishes what it found so far as it goes, and `spread: false`
//! brings back one burst per tick. `histogram: false` drops the per-URL histogram.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// Arrival times of the requests a fixture saw, by path.
type Arrivals = Arc<Mutex<Vec<(Instant, String)>>>;

fn recording_fixture() -> (Fixture, Arrivals) {
    let arrivals: Arrivals = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&arrivals);
    let f = Fixture::start(move |req| {
        seen.lock()
            .unwrap()
            .push((Instant::now(), req.path.clone()));
        Reply::status(200, "ok")
    });
    (f, arrivals)
}

fn config(f: &Fixture, urls: usize, extra: &str) -> String {
    let list: String = (0..urls)
        .map(|i| format!("      - {}\n", f.url(&format!("/u{i}"))))
        .collect();
    format!(
        "checks:\n  - name: web\n    kind: http\n    interval: 5s\n    timeout: 1s\n{extra}    urls:\n{list}"
    )
}

/// The arrivals of the n-th run (0-based): each URL is requested once per run.
fn run_arrivals(arrivals: &Arrivals, urls: usize, run: usize) -> Vec<Instant> {
    let seen = arrivals.lock().unwrap();
    seen.iter()
        .skip(run * urls)
        .take(urls)
        .map(|(t, _)| *t)
        .collect()
}

fn wait_requests(arrivals: &Arrivals, count: usize, secs: u64) {
    let until = Instant::now() + Duration::from_secs(secs);
    while arrivals.lock().unwrap().len() < count {
        assert!(
            Instant::now() < until,
            "only {} requests",
            arrivals.lock().unwrap().len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn span(times: &[Instant]) -> Duration {
    let first = times.iter().min().unwrap();
    let last = times.iter().max().unwrap();
    *last - *first
}

/// 40 URLs, interval 5 s, timeout 1 s: the spread window is 5 - 1 - 0.5 = 3.5 s. The
/// first run asks all 40 within a moment; the second spreads them over most of the
/// window, in the same order as a third (each URL keeps its place).
#[test]
fn later_runs_spread_their_probes_over_the_interval() {
    let (f, arrivals) = recording_fixture();
    let urls = 40;
    let sonde = Sonde::start(&config(&f, urls, ""));
    wait_requests(&arrivals, 3 * urls, 20);
    let first = run_arrivals(&arrivals, urls, 0);
    let second = run_arrivals(&arrivals, urls, 1);
    assert!(
        span(&first) < Duration::from_millis(700),
        "first run took {:?}",
        span(&first)
    );
    assert!(
        span(&second) > Duration::from_millis(2000) && span(&second) < Duration::from_millis(3600),
        "second run spread over {:?}",
        span(&second)
    );
    // Each URL keeps its place: its offset from its run's first request is the same
    // in the second and the third run, give or take scheduling noise.
    let offsets = |run: usize| -> std::collections::HashMap<String, Duration> {
        let seen = arrivals.lock().unwrap();
        let this: Vec<&(Instant, String)> = seen.iter().skip(run * urls).take(urls).collect();
        let start = this.iter().map(|(t, _)| *t).min().unwrap();
        this.iter().map(|(t, p)| (p.clone(), *t - start)).collect()
    };
    let (two, three) = (offsets(1), offsets(2));
    for (path, at) in &two {
        let other = three[path];
        let gap = at.abs_diff(other);
        assert!(
            gap < Duration::from_millis(300),
            "{path}: {at:?} then {other:?}"
        );
    }
    let m = sonde.metrics();
    let late = m
        .value("sonde_http_probe_lateness_seconds_bucket{check=\"web\",le=\"1\"}")
        .unwrap();
    let all = m
        .value("sonde_http_probe_lateness_seconds_count{check=\"web\"}")
        .unwrap();
    assert!(
        all >= (2 * urls) as f64 && late == all,
        "{late} of {all} probes started within 1 s"
    );
}

/// While a spread run is under way, what it found so far is published: the URLs it
/// has probed show this run's counts before the run is over.
#[test]
fn a_spread_run_publishes_as_it_goes() {
    let (f, arrivals) = recording_fixture();
    let urls = 40;
    let sonde = Sonde::start(&config(&f, urls, ""));
    // Half-way through the second run.
    wait_requests(&arrivals, urls + urls / 2, 20);
    let m = sonde.metrics();
    let runs = m
        .value("sonde_check_runs_total{check=\"web\",kind=\"http\"}")
        .unwrap();
    let probed_twice = (0..urls)
        .filter(|i| {
            let series = format!(
                "sonde_http_probes_total{{check=\"web\",url=\"{}\",result=\"success\"}}",
                f.url(&format!("/u{i}"))
            );
            m.value(&series) == Some(2.0)
        })
        .count();
    assert_eq!(runs, 1.0, "the second run is not over");
    assert!(
        probed_twice > 0 && probed_twice < urls,
        "{probed_twice} URLs show their second probe"
    );
}

/// `spread: false` probes every URL at the tick, run after run; `histogram: false`
/// exports no per-URL histogram.
#[test]
fn spread_false_bursts_and_histogram_false_drops_the_histogram() {
    let (f, arrivals) = recording_fixture();
    let urls = 20;
    let sonde = Sonde::start(&config(
        &f,
        urls,
        "    spread: false\n    histogram: false\n",
    ));
    wait_requests(&arrivals, 2 * urls, 20);
    let second = run_arrivals(&arrivals, urls, 1);
    assert!(
        span(&second) < Duration::from_millis(700),
        "second run took {:?}",
        span(&second)
    );
    let m = sonde.metrics();
    assert!(m.has("sonde_http_up{check=\"web\""));
    assert!(
        !m.has("sonde_http_probe_duration_seconds"),
        "the histogram is still there"
    );
}
