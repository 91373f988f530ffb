//! `kind: http`: URL uptime probes, the job of the small URL-check exporters sonde replaces.
//!
//! Each URL is probed independently on a bounded pool of long-lived threads, at its own
//! place in the interval (see `spread.rs`): a run starts at the tick, probes each URL at
//! its place within the first part of the interval, and publishes what it found so far
//! every second. The check's timeout bounds every probe, body included. A probe reports
//! *why* it failed (the `reason` label and a cause in words), the earliest NotAfter of
//! the presented certificate chain even when verification failed, and feeds per-URL
//! counters and a histogram that live as long as the check.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::problem::Spanned;
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess};

use super::probe::{ProbeResult, ProbeSpec, Prober, Reason, Target};
use super::spread::{self, Batch, Pool};
use super::{BuildContext, Check, KindSpec, LegacyClaim, RunContext, RunOutput};
use crate::keys::{self, SharedKeys};
use crate::metrics::{FamilyId, FamilySet, Histogram, MetricType};
use crate::problem::Problem;
use crate::store::TargetReport;
use crate::sync::lock;

const UP: &str = "sonde_http_up";
const UP_HELP: &str = "1 if the last probe of the URL met every condition, else 0.";
const DURATION: &str = "sonde_http_duration_seconds";
const DURATION_HELP: &str = "Duration of the last probe in seconds (elapsed time when it failed).";
const STATUS: &str = "sonde_http_status_code";
const STATUS_HELP: &str = "Final HTTP status code of the last probe; 0 when there was no response.";
const REDIRECTS: &str = "sonde_http_redirects";
const REDIRECTS_HELP: &str = "Redirects followed by the last probe.";
const BODY_SIZE: &str = "sonde_http_body_size_bytes";
const BODY_SIZE_HELP: &str = "Bytes of response body read by the last probe.";
const CONTENT_LENGTH: &str = "sonde_http_content_length_bytes";
const CONTENT_LENGTH_HELP: &str =
    "Bytes of response body the last probe received on the wire (before gzip decoding).";
const PHASE: &str = "sonde_http_phase_duration_seconds";
const PHASE_HELP: &str = "Duration of the last probe by phase (resolve, connect, tls, processing, transfer) in seconds, summed over redirects.";
const IP_PROTOCOL: &str = "sonde_http_ip_protocol";
const IP_PROTOCOL_HELP: &str =
    "IP version (4 or 6) of the address the last probe connected to (the proxy's through a proxy).";
const CERT_NOT_AFTER: &str = "sonde_http_tls_cert_not_after_timestamp_seconds";
const CERT_NOT_AFTER_HELP: &str = "Earliest NotAfter (Unix time) of the certificate chain the server presented, also when verification failed.";
const CHAIN_NOT_AFTER: &str = "sonde_http_tls_chain_not_after_timestamp_seconds";
const CHAIN_NOT_AFTER_HELP: &str = "Earliest NotAfter (Unix time) of the certificate chain the last probe verified, leaf to trust anchor; absent when nothing was verified.";
const CERT_INFO: &str = "sonde_http_tls_cert_info";
const CERT_INFO_HELP: &str = "1 for the certificate the server presented on the final hop of the last probe (also when verification failed).";
const TLS_VERSION: &str = "sonde_http_tls_version_info";
const TLS_VERSION_HELP: &str = "1 for the TLS version the final hop of the last probe negotiated.";
const TLS_CIPHER: &str = "sonde_http_tls_cipher_info";
const TLS_CIPHER_HELP: &str =
    "1 for the cipher suite (IANA name) the final hop of the last probe negotiated.";
const PROBES: &str = "sonde_http_probes_total";
const PROBES_HELP: &str = "Probes of the URL by result (success or failure).";
const FAILURES: &str = "sonde_http_failures_total";
const FAILURES_HELP: &str = "Failed probes of the URL by reason.";
const PROBE_DURATION: &str = "sonde_http_probe_duration_seconds";
const PROBE_DURATION_HELP: &str = "Duration of every probe of the URL in seconds.";
const LEGACY_UP: &str = "sample_external_url_up";
const LEGACY_UP_HELP: &str = "URL Up";
const LEGACY_MS: &str = "sample_external_url_response_ms";
const LEGACY_MS_HELP: &str = "Response Time";
const LATENESS: &str = "sonde_http_probe_lateness_seconds";
const LATENESS_HELP: &str = "How late probes of the check started after their place in the interval, in seconds (a full pool of probe threads makes them late).";

/// Upper bounds of the probe duration histogram, in seconds.
static BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds of the lateness histogram, in seconds.
static LATENESS_BUCKETS: [f64; 9] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Default number of URLs probed at once by one check.
const DEFAULT_CONCURRENCY: usize = 32;

/// How often, at most, a run that spreads its probes publishes what it found so far.
/// A run publishes about ten times over its window whatever its size: each publish
/// renders every URL of the check, so publishing every second cost a check of 10,000
/// URLs every 30 s as much CPU as its probes.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
const PROGRESS_STEPS: u32 = 10;

/// How often a run spread over `window` publishes its progress.
fn progress_every(window: Duration) -> Duration {
    PROGRESS_EVERY.max(window / PROGRESS_STEPS)
}

/// How often a run checks that its probes are not waiting for a thread.
const KEEP_UP_EVERY: Duration = Duration::from_millis(20);

/// How long past the run's deadline it waits for its last probes: they stop at the
/// deadline themselves and need a moment to hand in their (timed-out) results.
const STRAGGLERS: Duration = Duration::from_millis(250);

/// The YAML keys of `kind: http`: its URLs, how many are probed at once, whether they
/// are spread over the interval and keep a histogram, plus how to probe each one
/// ([`ProbeSpec`]).
#[derive(Clone, Debug, PartialEq)]
pub struct HttpSpec {
    urls: Spanned<Vec<Spanned<String>>>,
    concurrency: Option<Spanned<usize>>,
    spread: bool,
    histogram: bool,
    probe: ProbeSpec,
}

/// The keys only an http check has (a probe module has none of them).
#[derive(Default)]
struct UrlKeys {
    urls: Option<Spanned<Vec<Spanned<String>>>>,
    concurrency: Option<Spanned<usize>>,
    spread: Option<bool>,
    histogram: Option<bool>,
}

impl SharedKeys for UrlKeys {
    fn take<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        match key {
            "urls" => self.urls = Some(map.next_value()?),
            "concurrency" => self.concurrency = Some(map.next_value()?),
            "spread" => self.spread = Some(map.next_value()?),
            "histogram" => self.histogram = Some(map.next_value()?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn finish<E: serde::de::Error>(&self) -> Result<(), E> {
        match self.urls {
            Some(_) => Ok(()),
            None => Err(E::missing_field("urls")),
        }
    }
}

impl<'de> Deserialize<'de> for HttpSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut own = UrlKeys::default();
        let probe = keys::split(deserializer, &mut own)?;
        let urls = own
            .urls
            .ok_or_else(|| serde::de::Error::missing_field("urls"))?;
        Ok(HttpSpec {
            urls,
            concurrency: own.concurrency,
            spread: own.spread.unwrap_or(true),
            histogram: own.histogram.unwrap_or(true),
            probe,
        })
    }
}

/// How many reasons there are.
const REASONS: usize = Reason::ALL.len();

/// Counters of one URL that live as long as the check.
#[derive(Debug)]
struct UrlStats {
    successes: u64,
    failures: [u64; REASONS],
    durations: Histogram,
    /// The cause of the last failure, to log only what changed.
    last_cause: Option<String>,
}

/// What the check knows of one URL: its last probe and its counters.
#[derive(Debug)]
struct UrlState {
    last: Option<ProbeResult>,
    stats: UrlStats,
}

/// What outlives a run, shared with the probe threads.
#[derive(Debug)]
struct Shared {
    check: String,
    targets: Vec<Target>,
    prober: Prober,
    legacy: bool,
    histogram: bool,
    urls: Mutex<Vec<UrlState>>,
    /// How late probes started after their place, over the check's life.
    lateness: Mutex<Histogram>,
}

/// A configured http check.
#[derive(Debug)]
pub struct HttpCheck {
    shared: Arc<Shared>,
    /// Each target's place in the interval (see `spread.rs`), and the targets in that
    /// order.
    places: Vec<f64>,
    order: Vec<usize>,
    spread: bool,
    pool: Pool,
}

impl HttpCheck {
    /// Validates the spec and builds the check.
    pub fn build(spec: &HttpSpec, ctx: &BuildContext) -> Result<HttpCheck, Vec<Problem>> {
        let mut problems = Vec::new();
        // Every URL is validated on every replica; each checks only its own.
        let targets: Vec<Target> = targets(spec, ctx, &mut problems)
            .into_iter()
            .filter(|t| ctx.shard.owns(&t.label))
            .collect();
        let concurrency = match &spec.concurrency {
            None => DEFAULT_CONCURRENCY,
            Some(c) if (1..=1024).contains(&c.value) => c.value,
            Some(c) => {
                problems.push(ctx.problem(c.referenced, "concurrency must be between 1 and 1024"));
                1
            }
        };
        let prober = Prober::build(&spec.probe, ctx, spec.urls.referenced, &mut problems);
        let Some(prober) = prober.filter(|_| problems.is_empty()) else {
            return Err(problems);
        };
        let urls = targets
            .iter()
            .map(|_| UrlState {
                last: None,
                stats: UrlStats {
                    successes: 0,
                    failures: [0; REASONS],
                    durations: Histogram::new(&BUCKETS),
                    last_cause: None,
                },
            })
            .collect();
        let places: Vec<f64> = targets.iter().map(|t| spread::place(&t.label)).collect();
        let mut order: Vec<usize> = (0..targets.len()).collect();
        order.sort_by(|a, b| places[*a].total_cmp(&places[*b]));
        let check = ctx.meta.name.clone();
        Ok(HttpCheck {
            pool: Pool::new("sonde-probe", concurrency.min(targets.len())),
            shared: Arc::new(Shared {
                check,
                targets,
                prober,
                legacy: ctx.legacy_metrics,
                histogram: spec.histogram,
                urls: Mutex::new(urls),
                lateness: Mutex::new(Histogram::new(&LATENESS_BUCKETS)),
            }),
            places,
            order,
            spread: spec.spread,
        })
    }
}

impl Shared {
    /// Takes one probe's result into the URL's state and counters.
    fn record(&self, index: usize, result: ProbeResult, lateness: Duration) {
        lock(&self.lateness).observe(lateness.as_secs_f64());
        let mut urls = lock(&self.urls);
        let Some(url) = urls.get_mut(index) else {
            return;
        };
        let s = &mut url.stats;
        match result.failure {
            None => s.successes += 1,
            Some(reason) => s.failures[reason.index()] += 1,
        }
        s.durations.observe(result.duration.as_secs_f64());
        self.log_change(&self.targets[index].label, &result, s);
        url.last = Some(result);
    }

    /// Every metric from what is known now: each URL's last probe and its counters;
    /// URLs never probed yet have no samples and are reported as not yet run.
    fn render(&self) -> RunOutput {
        let urls = lock(&self.urls);
        let mut m = FamilySet::new();
        let ids = Families::declare(&mut m, self.legacy, self.histogram);
        let mut targets = Vec::with_capacity(urls.len());
        let mut down = Vec::new();
        let mut pending = 0;
        for (target, url) in self.targets.iter().zip(urls.iter()) {
            let Some(r) = &url.last else {
                pending += 1;
                targets.push(TargetReport {
                    target: target.label.clone(),
                    pending: true,
                    ..TargetReport::default()
                });
                continue;
            };
            if let Some(reason) = r.failure {
                down.push((target.label.as_str(), reason, r.cause.as_deref()));
            }
            ids.url(&mut m, &self.check, &target.label, r, &url.stats);
            targets.push(TargetReport {
                target: target.label.clone(),
                up: r.failure.is_none(),
                status_code: r.status,
                duration_ms: Some(r.duration.as_secs_f64() * 1000.0),
                error: r.failure.map(Reason::as_str),
                cause: r.cause.clone(),
                cert_not_after: r.cert_not_after,
                ..TargetReport::default()
            });
        }
        let lateness = m.family(LATENESS, LATENESS_HELP, MetricType::Histogram);
        m.histogram(lateness, &[("check", &self.check)], &lock(&self.lateness));
        let words = |url: &str, reason: Reason, cause: Option<&str>| match cause {
            Some(cause) => format!("{url}: {}: {cause}", reason.as_str()),
            None => format!("{url}: {}", reason.as_str()),
        };
        let error = match down.as_slice() {
            [] if pending > 0 => Some(format!(
                "{pending} of {} URLs not probed yet",
                self.targets.len()
            )),
            [] => None,
            [(url, reason, cause)] => Some(words(url, *reason, *cause)),
            [(url, reason, cause), ..] => Some(format!(
                "{} of {} URLs down, e.g. {}",
                down.len(),
                self.targets.len(),
                words(url, *reason, *cause)
            )),
        };
        RunOutput {
            success: error.is_none(),
            error,
            families: m,
            targets,
        }
    }
}

impl Shared {
    /// Logs a URL that went down, changed why it is down, or recovered.
    fn log_change(&self, url: &str, r: &ProbeResult, s: &mut UrlStats) {
        let cause = r.failure.map(|reason| {
            format!(
                "{}: {}",
                reason.as_str(),
                r.cause.as_deref().unwrap_or("no cause known")
            )
        });
        if cause == s.last_cause {
            return;
        }
        match &cause {
            Some(c) => log::warn!(
                "check={} url={url:?} msg=\"probe failed\" error={c:?}",
                self.check
            ),
            None => log::info!("check={} url={url:?} msg=\"probe recovered\"", self.check),
        }
        s.last_cause = cause;
    }
}

/// The families an http check exports, declared once per run.
struct Families {
    up: FamilyId,
    duration: FamilyId,
    status: FamilyId,
    redirects: FamilyId,
    body: FamilyId,
    wire: FamilyId,
    phase: FamilyId,
    ip: FamilyId,
    cert: FamilyId,
    chain: FamilyId,
    cert_info: FamilyId,
    tls_version: FamilyId,
    tls_cipher: FamilyId,
    probes: FamilyId,
    failures: FamilyId,
    histogram: Option<FamilyId>,
    legacy: Option<(FamilyId, FamilyId)>,
}

impl Families {
    fn declare(m: &mut FamilySet, legacy: bool, histogram: bool) -> Families {
        Families {
            up: m.family(UP, UP_HELP, MetricType::Gauge),
            duration: m.family(DURATION, DURATION_HELP, MetricType::Gauge),
            status: m.family(STATUS, STATUS_HELP, MetricType::Gauge),
            redirects: m.family(REDIRECTS, REDIRECTS_HELP, MetricType::Gauge),
            body: m.family(BODY_SIZE, BODY_SIZE_HELP, MetricType::Gauge),
            wire: m.family(CONTENT_LENGTH, CONTENT_LENGTH_HELP, MetricType::Gauge),
            phase: m.family(PHASE, PHASE_HELP, MetricType::Gauge),
            ip: m.family(IP_PROTOCOL, IP_PROTOCOL_HELP, MetricType::Gauge),
            cert: m.family(CERT_NOT_AFTER, CERT_NOT_AFTER_HELP, MetricType::Gauge),
            chain: m.family(CHAIN_NOT_AFTER, CHAIN_NOT_AFTER_HELP, MetricType::Gauge),
            cert_info: m.family(CERT_INFO, CERT_INFO_HELP, MetricType::Gauge),
            tls_version: m.family(TLS_VERSION, TLS_VERSION_HELP, MetricType::Gauge),
            tls_cipher: m.family(TLS_CIPHER, TLS_CIPHER_HELP, MetricType::Gauge),
            probes: m.family(PROBES, PROBES_HELP, MetricType::Counter),
            failures: m.family(FAILURES, FAILURES_HELP, MetricType::Counter),
            histogram: histogram
                .then(|| m.family(PROBE_DURATION, PROBE_DURATION_HELP, MetricType::Histogram)),
            legacy: legacy.then(|| {
                (
                    m.family(LEGACY_UP, LEGACY_UP_HELP, MetricType::Gauge),
                    m.family(LEGACY_MS, LEGACY_MS_HELP, MetricType::Gauge),
                )
            }),
        }
    }

    /// One URL's samples: its last probe and its lifetime counters.
    fn url(&self, m: &mut FamilySet, check: &str, url: &str, r: &ProbeResult, s: &UrlStats) {
        let secs = r.duration.as_secs_f64();
        let labels = [("check", check), ("url", url)];
        let is_up = if r.failure.is_none() { 1.0 } else { 0.0 };
        m.sample(self.up, &labels, is_up);
        m.sample(self.duration, &labels, secs);
        m.sample(self.status, &labels, f64::from(r.status));
        m.sample(self.redirects, &labels, r.redirects as f64);
        m.sample(self.body, &labels, r.body_size as f64);
        m.sample(self.wire, &labels, r.wire_size as f64);
        let [check, url] = labels;
        for (phase, d) in r.phases.labelled() {
            m.sample(self.phase, &[check, url, ("phase", phase)], d.as_secs_f64());
        }
        if let Some(v) = r.ip_protocol {
            m.sample(self.ip, &labels, f64::from(v));
        }
        if let Some(t) = r.cert_not_after {
            m.sample(self.cert, &labels, t as f64);
        }
        self.tls(m, check, url, r);
        let total_failures: u64 = s.failures.iter().sum();
        m.sample(
            self.probes,
            &[check, url, ("result", "success")],
            s.successes as f64,
        );
        m.sample(
            self.probes,
            &[check, url, ("result", "failure")],
            total_failures as f64,
        );
        for (reason, count) in Reason::ALL.iter().zip(s.failures) {
            if count > 0 {
                let labels = [check, url, ("reason", reason.as_str())];
                m.sample(self.failures, &labels, count as f64);
            }
        }
        if let Some(histogram) = self.histogram {
            m.histogram(histogram, &labels, &s.durations);
        }
        if let Some((legacy_up, legacy_ms)) = self.legacy {
            let url_only = [url];
            m.sample(legacy_up, &url_only, is_up);
            // The exporter this replaces reported a timed-out probe as an infinite time.
            let ms = if r.failure == Some(Reason::Timeout) {
                f64::INFINITY
            } else {
                secs * 1000.0
            };
            m.sample(legacy_ms, &url_only, ms);
        }
    }
}

impl Families {
    /// The TLS facts of the final hop: verified chain, leaf, version and cipher.
    fn tls(&self, m: &mut FamilySet, check: (&str, &str), url: (&str, &str), r: &ProbeResult) {
        let Some(tls) = &r.tls else {
            return;
        };
        if let Some(t) = tls.verified_not_after {
            m.sample(self.chain, &[check, url], t as f64);
        }
        if let Some(leaf) = &tls.leaf {
            let labels = [
                check,
                url,
                ("fingerprint_sha256", leaf.fingerprint_sha256.as_str()),
                ("subject", leaf.subject.as_str()),
                ("issuer", leaf.issuer.as_str()),
                ("serial", leaf.serial.as_str()),
                ("san", leaf.san.as_str()),
            ];
            m.sample(self.cert_info, &labels, 1.0);
        }
        if let Some(version) = tls.version {
            m.sample(self.tls_version, &[check, url, ("version", version)], 1.0);
        }
        if let Some(cipher) = &tls.cipher {
            m.sample(
                self.tls_cipher,
                &[check, url, ("cipher", cipher.as_str())],
                1.0,
            );
        }
    }
}

impl Check for HttpCheck {
    /// Hands the run's probes to the pool, each due at its place in the spread window,
    /// and publishes what they found every second until the last one is in.
    fn run(&self, ctx: &RunContext) -> RunOutput {
        let prepared = Arc::new(self.shared.prober.prepare());
        let window = if self.spread {
            ctx.spread
        } else {
            Duration::ZERO
        };
        let start = Instant::now();
        let due = self
            .order
            .iter()
            .map(|&i| start + spread::offset(self.places[i], window))
            .collect();
        let shared = Arc::clone(&self.shared);
        let order = self.order.clone();
        let deadline = ctx.deadline;
        let batch = Arc::new(Batch::new(
            due,
            Box::new(move |item, due| {
                let index = order[item];
                let started = Instant::now();
                let result = shared
                    .prober
                    .probe(&shared.targets[index], deadline, &prepared);
                shared.record(index, result, started.saturating_duration_since(due));
            }),
        ));
        self.pool.start(Arc::clone(&batch));
        let mut last_progress = start;
        let progress_every = progress_every(window);
        batch.wait(ctx.deadline + STRAGGLERS, KEEP_UP_EVERY, || {
            if ctx.cancel.load(Ordering::Relaxed) {
                batch.stop();
            }
            self.pool.keep_up(&batch);
            let now = Instant::now();
            if now.duration_since(last_progress) >= progress_every {
                last_progress = now;
                (ctx.progress)(self.shared.render());
            }
        });
        batch.stop();
        self.shared.render()
    }

    /// Spread over the part of the interval that leaves a whole timeout before the next
    /// tick, less a tenth of the interval for rendering and a late pool.
    fn spread(&self, interval: Duration, timeout: Duration) -> Duration {
        if !self.spread {
            return Duration::ZERO;
        }
        interval
            .saturating_sub(timeout)
            .saturating_sub(interval / 10)
    }
}

/// The URLs: each valid, none twice.
fn targets(spec: &HttpSpec, ctx: &BuildContext, problems: &mut Vec<Problem>) -> Vec<Target> {
    if spec.urls.value.is_empty() {
        problems.push(ctx.problem(
            spec.urls.referenced,
            "`urls` is empty; list at least one URL",
        ));
    }
    let mut targets = Vec::new();
    let mut seen = HashSet::new();
    for url in &spec.urls.value {
        match Target::parse(&url.value) {
            Ok(t) => {
                if !seen.insert(t.label.clone()) {
                    problems.push(
                        ctx.problem(url.referenced, format!("URL {:?} is listed twice", t.label)),
                    );
                }
                targets.push(t);
            }
            Err(e) => problems.push(ctx.problem(url.referenced, e)),
        }
    }
    targets
}

impl KindSpec for HttpSpec {
    type Check = HttpCheck;

    fn build(&self, ctx: &BuildContext) -> Result<HttpCheck, Vec<Problem>> {
        HttpCheck::build(self, ctx)
    }

    /// `sample_external_url_*{url}`: one URL in two legacy checks would be exported twice.
    fn legacy_claims(&self) -> Vec<LegacyClaim> {
        self.urls
            .value
            .iter()
            .filter_map(|url| {
                let target = Target::parse(&url.value).ok()?;
                Some(LegacyClaim {
                    series: "sample_external_url_*",
                    what: format!("URL {:?}", target.label),
                    key: target.label,
                    at: Some(url.referenced),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_publishes_about_ten_times_over_its_window_and_at_most_every_second() {
        let secs = |s: f64| Duration::from_secs_f64(s);
        assert_eq!(progress_every(Duration::ZERO), secs(1.0));
        assert_eq!(progress_every(secs(3.5)), secs(1.0));
        assert_eq!(progress_every(secs(22.0)), secs(2.2));
        assert_eq!(progress_every(secs(270.0)), secs(27.0));
    }
}
