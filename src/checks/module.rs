//! Probe modules: the keys of one HTTP probe under a name, run on demand for
//! `/probe?target=..&module=..` and answered with blackbox_exporter's `probe_*` series,
//! so the targets, dashboards and alerts people keep for blackbox_exporter work as they
//! are.
//!
//! A module's keys are an http check's keys without `urls` ([`ProbeSpec`]) plus its
//! `timeout`; they come from `modules:` in sonde's config or from a blackbox_exporter
//! config translated into them (`blackbox.rs`). A [`ModuleSet`] holds every module by
//! name, including those refused (another prober, a key sonde does not support) with
//! the reason, so `/probe` can say why instead of "unknown".
//!
//! What is exported and when follows blackbox_exporter 0.23 (`prober/http.go`,
//! `utils.go`, `tls.go`, `handler.go`): the `probe_http_*` gauges are always present (0
//! when there was no response); `probe_http_duration_seconds` has only the `resolve`
//! phase when the name did not resolve; the TLS series exist when the final response
//! came over TLS. Beyond blackbox: `probe_failure_reason{reason}` says why a probe
//! failed, and `probe_ssl_earliest_cert_expiry` is kept when the handshake failed (an
//! expired certificate is exactly when its date matters).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess};

use super::BuildContext;
use super::probe::{ProbeResult, ProbeSpec, Prober, Reason, Target};
use crate::keys::{self, SharedKeys};
use crate::metrics::{FamilySet, MetricType};
use crate::problem::{Problem, Spanned};
use crate::store::CheckMeta;
use crate::units::{DurationValue, format_duration, rfc3339_millis, unix_ms};

const SUCCESS: &str = "probe_success";
const SUCCESS_HELP: &str = "1 if the probe met every condition of its module, else 0.";
const DURATION: &str = "probe_duration_seconds";
const DURATION_HELP: &str = "How long the probe took, in seconds.";
const DNS_TIME: &str = "probe_dns_lookup_time_seconds";
const DNS_TIME_HELP: &str = "How long looking up the target's name took, in seconds.";
const IP_PROTOCOL: &str = "probe_ip_protocol";
const IP_PROTOCOL_HELP: &str = "IP version (4 or 6) of the address probed; 0 when there was none.";
const IP_HASH: &str = "probe_ip_addr_hash";
const IP_HASH_HELP: &str =
    "FNV-1a (32 bit) hash of the address probed, to see when it changes; 0 when there was none.";
const STATUS: &str = "probe_http_status_code";
const STATUS_HELP: &str = "Status code of the final response; 0 without a response.";
const CONTENT_LENGTH: &str = "probe_http_content_length";
const CONTENT_LENGTH_HELP: &str =
    "Content-Length of the final response; -1 when it sent none, 0 without a response.";
const BODY_LENGTH: &str = "probe_http_uncompressed_body_length";
const BODY_LENGTH_HELP: &str = "Bytes of the final response's body after decoding.";
const REDIRECTS: &str = "probe_http_redirects";
const REDIRECTS_HELP: &str = "Redirects the probe received (followed, or the one not followed).";
const SSL: &str = "probe_http_ssl";
const SSL_HELP: &str = "1 if the final response came over TLS, else 0.";
const VERSION: &str = "probe_http_version";
const VERSION_HELP: &str = "HTTP version of the final response (1.1); 0 without a response.";
const PHASES: &str = "probe_http_duration_seconds";
const PHASES_HELP: &str = "Time of the probe by phase (resolve, connect, tls, processing, transfer), summed over redirects, in seconds.";
const REGEX: &str = "probe_failed_due_to_regex";
const REGEX_HELP: &str = "1 if a header or body regular expression failed the probe, else 0.";
const LAST_MODIFIED: &str = "probe_http_last_modified_timestamp_seconds";
const LAST_MODIFIED_HELP: &str = "Last-Modified of the final response, as Unix time.";
const EARLIEST_EXPIRY: &str = "probe_ssl_earliest_cert_expiry";
const EARLIEST_EXPIRY_HELP: &str = "Earliest NotAfter (Unix time) of the certificates the server presented, also when the handshake failed.";
const CHAIN_EXPIRY: &str = "probe_ssl_last_chain_expiry_timestamp_seconds";
const CHAIN_EXPIRY_HELP: &str =
    "Earliest NotAfter (Unix time) of the chain verification built, leaf to trust anchor.";
const CHAIN_INFO: &str = "probe_ssl_last_chain_info";
const CHAIN_INFO_HELP: &str =
    "1 for the certificate the server presented: SHA-256 fingerprint, subject, issuer, DNS names.";
const TLS_VERSION: &str = "probe_tls_version_info";
const TLS_VERSION_HELP: &str = "1 for the TLS version the final response was negotiated with.";
const FAILURE_REASON: &str = "probe_failure_reason";
const FAILURE_REASON_HELP: &str = "1 for why the probe failed (dns, connect, timeout, tls, proxy, status_code, header_regex, body_regex, ...); absent when it succeeded.";

/// Time Prometheus' scrape timeout is shortened by, so the answer arrives before
/// Prometheus gives up (blackbox_exporter's `--timeout-offset` default).
const SCRAPE_TIMEOUT_OFFSET: f64 = 0.5;

/// The scrape timeout assumed without `X-Prometheus-Scrape-Timeout-Seconds` (as
/// blackbox_exporter does).
const DEFAULT_SCRAPE_TIMEOUT: f64 = 120.0;

/// The longest scrape timeout believed from the header (ten minutes): a probe is not
/// cancelled when its client goes away, so a larger value (up to 1e308, which once
/// overflowed a deadline and aborted sonde) would let a few requests hold every probe
/// slot for that long.
const MAX_SCRAPE_TIMEOUT: f64 = 600.0;

/// The `failure_reason` of a target that is not a URL sonde can probe.
const INVALID_TARGET: &str = "invalid_target";

/// The keys of one module: a probe's keys ([`ProbeSpec`]) and `timeout`.
#[derive(Clone, Debug, PartialEq)]
pub struct ModuleSpec {
    timeout: Option<Spanned<DurationValue>>,
    probe: ProbeSpec,
}

/// The keys a module has beside the probe's.
#[derive(Default)]
struct ModuleKeys {
    timeout: Option<Spanned<DurationValue>>,
}

impl SharedKeys for ModuleKeys {
    fn take<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        match key {
            "timeout" => self.timeout = Some(map.next_value()?),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

impl<'de> Deserialize<'de> for ModuleSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut own = ModuleKeys::default();
        let probe = keys::split(deserializer, &mut own)?;
        Ok(ModuleSpec {
            timeout: own.timeout,
            probe,
        })
    }
}

/// A module, validated: ready to probe any target.
#[derive(Debug)]
pub struct Module {
    name: String,
    prober: Prober,
    /// `timeout`; without one, the scrape's timeout (less the offset) bounds a probe.
    timeout: Option<Duration>,
    /// Where the module is defined, e.g. `blackbox.yml:12:3`.
    origin: String,
    /// Its keys as sonde reads them, secrets hidden (for `debug=true`).
    shown: String,
}

/// How a module is known to `/probe`.
#[derive(Debug)]
enum Entry {
    Ready(Arc<Module>),
    /// Refused at load (another prober, an unsupported key): why, with where.
    Refused(String),
}

/// What a module name stands for.
#[derive(Debug)]
pub enum Found {
    /// A module that probes.
    Ready(Arc<Module>),
    /// A module that was refused; the reason.
    Refused(String),
    /// No module of that name.
    Unknown,
}

/// Every module by name, from sonde's config and the blackbox_exporter config.
#[derive(Debug, Default)]
pub struct ModuleSet {
    modules: BTreeMap<String, (Entry, String)>,
}

impl ModuleSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a module that probes.
    pub fn add(&mut self, module: Module) {
        let origin = module.origin.clone();
        self.modules.insert(
            module.name.clone(),
            (Entry::Ready(Arc::new(module)), origin),
        );
    }

    /// Adds a module that was refused, with why and where it is defined.
    pub fn refuse(&mut self, name: &str, why: String, origin: String) {
        self.modules
            .insert(name.to_string(), (Entry::Refused(why), origin));
    }

    /// Where a module of this name is defined, if there is one.
    pub fn origin(&self, name: &str) -> Option<&str> {
        self.modules.get(name).map(|(_, origin)| origin.as_str())
    }

    /// Looks a module up.
    pub fn find(&self, name: &str) -> Found {
        match self.modules.get(name) {
            Some((Entry::Ready(m), _)) => Found::Ready(Arc::clone(m)),
            Some((Entry::Refused(why), _)) => Found::Refused(why.clone()),
            None => Found::Unknown,
        }
    }

    /// How many modules probe, and how many were refused.
    pub fn counts(&self) -> (usize, usize) {
        let ready = self
            .modules
            .values()
            .filter(|(e, _)| matches!(e, Entry::Ready(_)))
            .count();
        (ready, self.modules.len() - ready)
    }
}

/// What one `/probe` answers.
#[derive(Debug)]
pub struct ProbeOutcome {
    /// `probe_success`.
    pub success: bool,
    /// The exposition text, or with `debug` the plain-text account of the probe.
    pub body: String,
}

impl Module {
    /// Validates a module's keys. `shown` is how `debug=true` shows them; problems are
    /// located in the file the keys were read from and name the module.
    pub fn build(
        name: &str,
        spec: &ModuleSpec,
        base_dir: &Path,
        at: serde_saphyr::Location,
        origin: String,
        shown: String,
    ) -> Result<Module, Vec<Problem>> {
        let mut problems = Vec::new();
        let timeout = match &spec.timeout {
            Some(t) if t.value.0.is_zero() => {
                problems.push(Problem::at(
                    t.referenced,
                    None,
                    "timeout must be greater than 0",
                ));
                None
            }
            Some(t) => Some(t.value.0),
            None => None,
        };
        let meta = CheckMeta {
            name: name.to_string(),
            kind: "http",
            // Without a timeout of its own, the scrape's bounds each probe.
            interval: timeout.unwrap_or(Duration::from_secs(3600)),
            timeout: timeout.unwrap_or(Duration::from_secs(3600)),
        };
        let ctx = BuildContext {
            meta: &meta,
            legacy_metrics: false,
            base_dir,
            ignored_images: &[],
            // /probe targets come from Prometheus, not from a sharded config.
            shard: crate::shard::Shard::WHOLE,
            at,
        };
        let prober = Prober::build(&spec.probe, &ctx, at, &mut problems);
        let problems: Vec<Problem> = problems
            .into_iter()
            .map(|p| Problem {
                check: None,
                message: format!("module {name:?}: {}", p.message),
                ..p
            })
            .collect();
        match prober {
            Some(prober) if problems.is_empty() => Ok(Module {
                name: name.to_string(),
                prober,
                timeout,
                origin,
                shown,
            }),
            _ => Err(problems),
        }
    }

    /// Probes `target` now, within the module's timeout capped by the scrape's
    /// (`X-Prometheus-Scrape-Timeout-Seconds` less half a second), and answers its
    /// `probe_*` series, or with `debug` an account of the probe.
    pub fn run(&self, target: &str, scrape_timeout: Option<f64>, debug: bool) -> ProbeOutcome {
        let started = SystemTime::now();
        let timeout = effective_timeout(self.timeout, scrape_timeout);
        let (result, failure) = match parse_target(target) {
            Err(cause) => (ProbeResult::not_run(), Some((INVALID_TARGET, cause))),
            Ok(_) if timeout.is_zero() => {
                let cause = format!(
                    "no time left to probe: the scrape timeout {scrape_timeout:?} s less {SCRAPE_TIMEOUT_OFFSET} s is not positive and the module sets no timeout"
                );
                (
                    ProbeResult::not_run(),
                    Some((Reason::Timeout.as_str(), cause)),
                )
            }
            Ok(parsed) => {
                let prepared = self.prober.prepare();
                let r = self
                    .prober
                    .probe(&parsed, Instant::now() + timeout, &prepared);
                let failure = r.failure.map(|reason| {
                    let cause = r.cause.clone().unwrap_or_else(|| "no cause known".into());
                    (reason.as_str(), cause)
                });
                (r, failure)
            }
        };
        let elapsed = started.elapsed().unwrap_or_default();
        let families = render(&result, failure.as_ref().map(|(r, _)| *r), elapsed);
        let success = failure.is_none();
        log::debug!(
            "module={:?} target={:?} msg=\"probe finished\" success={success} duration_seconds={:.3}{}",
            self.name,
            // Credentials in the target's userinfo stay out of the log.
            crate::net::http::redact_userinfo(target),
            elapsed.as_secs_f64(),
            failure
                .as_ref()
                .map_or_else(String::new, |(r, c)| format!(" reason={r} cause={c:?}"))
        );
        let body = if debug {
            self.account(
                target,
                timeout,
                started,
                &result,
                failure.as_ref(),
                &families,
            )
        } else {
            families
        };
        ProbeOutcome { success, body }
    }

    /// `debug=true`: what happened in logfmt lines, the series that would have been
    /// answered, and the module's keys, in the three parts blackbox_exporter writes.
    fn account(
        &self,
        target: &str,
        timeout: Duration,
        started: SystemTime,
        r: &ProbeResult,
        failure: Option<&(&str, String)>,
        families: &str,
    ) -> String {
        let ts = rfc3339_millis(unix_ms(started));
        let head = format!("ts={ts} module={:?} target={target:?}", self.name);
        let mut lines = vec![format!(
            "{head} level=info msg=\"Beginning probe\" probe=http timeout_seconds={}",
            timeout.as_secs_f64()
        )];
        if let Some(ip) = r.ip_addr {
            lines.push(format!(
                "{head} level=info msg=\"Resolved target address\" ip={ip}"
            ));
        }
        if r.status != 0 {
            lines.push(format!(
                "{head} level=info msg=\"Received HTTP response\" status_code={} redirects={} http_version={}",
                r.status,
                r.redirects,
                r.http_version.unwrap_or("?")
            ));
        }
        let phases: Vec<String> = r
            .phases
            .labelled()
            .iter()
            .map(|(phase, d)| format!("{phase}={:.6}", d.as_secs_f64()))
            .collect();
        lines.push(format!(
            "{head} level=info msg=\"Response timings\" {}",
            phases.join(" ")
        ));
        let seconds = started.elapsed().unwrap_or_default().as_secs_f64();
        lines.push(match failure {
            None => format!("{head} level=info msg=\"Probe succeeded\" duration_seconds={seconds}"),
            Some((reason, cause)) => format!(
                "{head} level=error msg=\"Probe failed\" reason={reason} cause={cause:?} duration_seconds={seconds}"
            ),
        });
        format!(
            "Logs for the probe:\n{}\n\n\n\nMetrics that would have been returned:\n{families}\n\n\nModule configuration:\n# {} (timeout {})\n{}",
            lines.join("\n"),
            self.origin,
            self.timeout
                .map_or_else(|| "the scrape's".to_string(), format_duration),
            self.shown
        )
    }
}

/// Why `name` cannot name a module (it becomes a label value and a query parameter):
/// empty, or with control characters.
pub fn invalid_name(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("a module needs a name".to_string())
    } else if name.chars().any(char::is_control) {
        Some(format!("module name {name:?} has control characters"))
    } else {
        None
    }
}

/// Headers whose values `debug=true` shows; any other header's value may be a
/// credential (`Authorization`, `X-Api-Key`, a cookie) and is hidden.
const SHOWN_HEADERS: &[&str] = &[
    "accept",
    "accept-encoding",
    "accept-language",
    "cache-control",
    "connection",
    "content-type",
    "host",
    "origin",
    "pragma",
    "referer",
    "user-agent",
];

/// What `debug=true` hides of a module's keys: header values but those of
/// [`SHOWN_HEADERS`] (a `{file: PATH}` header shows its path), passwords, and the
/// password in a proxy URL.
pub fn redact(path: &[&str], text: &str) -> Option<String> {
    const HIDDEN: &str = "<hidden>";
    match path {
        ["headers", name] if !SHOWN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) => {
            Some(HIDDEN.to_string())
        }
        [.., "password" | "bearer_token" | "credentials"] => Some(HIDDEN.to_string()),
        ["proxy_url"] => {
            let (scheme, rest) = text.split_once("://")?;
            let (userinfo, host) = rest.split_once('@')?;
            let user = userinfo.split(':').next().unwrap_or("");
            Some(format!("{scheme}://{user}:{HIDDEN}@{host}"))
        }
        _ => None,
    }
}

/// blackbox_exporter's timeout rule: the scrape's timeout (120 s without the header)
/// less [`SCRAPE_TIMEOUT_OFFSET`], or the module's timeout when that is shorter; when
/// the scrape's timeout leaves nothing, the module's (or none at all). A scrape timeout
/// over [`MAX_SCRAPE_TIMEOUT`] counts as that.
pub fn effective_timeout(module: Option<Duration>, scrape_timeout: Option<f64>) -> Duration {
    let scrape = scrape_timeout
        .filter(|t| *t > 0.0 && t.is_finite())
        .unwrap_or(DEFAULT_SCRAPE_TIMEOUT)
        .min(MAX_SCRAPE_TIMEOUT);
    let cap = scrape - SCRAPE_TIMEOUT_OFFSET;
    match module {
        Some(m) if m.as_secs_f64() < cap || cap <= 0.0 => m,
        _ if cap > 0.0 => Duration::from_secs_f64(cap),
        _ => Duration::ZERO,
    }
}

/// The target as blackbox_exporter reads it: without a scheme it is `http://` +
/// target; a scheme other than http and https is refused.
fn parse_target(target: &str) -> Result<Target, String> {
    if target.starts_with("http://") || target.starts_with("https://") || target.contains("://") {
        Target::parse(target)
    } else {
        Target::parse(&format!("http://{target}"))
    }
}

/// FNV-1a, 32 bit, of the address' bytes (4 for IPv4, 16 for IPv6): what
/// blackbox_exporter exports as `probe_ip_addr_hash`.
fn ip_hash(ip: IpAddr) -> u32 {
    let bytes: Vec<u8> = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.octets().to_vec(),
            None => v6.octets().to_vec(),
        },
    };
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// One probe's series (see the file's documentation for what appears when).
fn render(r: &ProbeResult, failure: Option<&str>, elapsed: Duration) -> String {
    let mut m = FamilySet::new();
    let gauge = |m: &mut FamilySet, name: &'static str, help: &'static str, value: f64| {
        let id = m.family(name, help, MetricType::Gauge);
        m.sample(id, &[], value);
    };
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    gauge(&mut m, SUCCESS, SUCCESS_HELP, flag(failure.is_none()));
    gauge(&mut m, DURATION, DURATION_HELP, elapsed.as_secs_f64());
    if failure != Some(INVALID_TARGET) {
        gauge(
            &mut m,
            DNS_TIME,
            DNS_TIME_HELP,
            r.phases.resolve.as_secs_f64(),
        );
        let family = r
            .ip_addr
            .map_or(0.0, |ip| if ip.is_ipv4() { 4.0 } else { 6.0 });
        gauge(&mut m, IP_PROTOCOL, IP_PROTOCOL_HELP, family);
        let hash = r.ip_addr.map_or(0.0, |ip| f64::from(ip_hash(ip)));
        gauge(&mut m, IP_HASH, IP_HASH_HELP, hash);
    }
    gauge(&mut m, STATUS, STATUS_HELP, f64::from(r.status));
    let length = match (r.status, r.content_length) {
        (0, _) => 0.0,
        (_, Some(n)) => n as f64,
        (_, None) => -1.0,
    };
    gauge(&mut m, CONTENT_LENGTH, CONTENT_LENGTH_HELP, length);
    gauge(&mut m, BODY_LENGTH, BODY_LENGTH_HELP, r.body_size as f64);
    let redirects = r.redirects + usize::from(r.unfollowed_redirect);
    gauge(&mut m, REDIRECTS, REDIRECTS_HELP, redirects as f64);
    gauge(&mut m, SSL, SSL_HELP, flag(r.over_tls));
    let version = r.http_version.and_then(|v| v.parse().ok()).unwrap_or(0.0);
    gauge(&mut m, VERSION, VERSION_HELP, version);
    let by_regex = r.failure == Some(Reason::HeaderRegex) || r.failure == Some(Reason::BodyRegex);
    gauge(&mut m, REGEX, REGEX_HELP, flag(by_regex));
    if let Some(t) = r.last_modified {
        gauge(&mut m, LAST_MODIFIED, LAST_MODIFIED_HELP, t as f64);
    }
    let phases = m.family(PHASES, PHASES_HELP, MetricType::Gauge);
    let resolved = failure != Some(Reason::Dns.as_str()) && failure != Some(INVALID_TARGET);
    for (phase, d) in r.phases.labelled() {
        if phase == "resolve" || resolved {
            m.sample(phases, &[("phase", phase)], d.as_secs_f64());
        }
    }
    render_tls(&mut m, r);
    if let Some(reason) = failure {
        let id = m.family(FAILURE_REASON, FAILURE_REASON_HELP, MetricType::Gauge);
        m.sample(id, &[("reason", reason)], 1.0);
    }
    m.to_text()
}

/// The TLS series: all of them when the final response came over TLS, else the
/// earliest expiry alone when a handshake got as far as a certificate.
fn render_tls(m: &mut FamilySet, r: &ProbeResult) {
    if let Some(t) = r.cert_not_after {
        let id = m.family(EARLIEST_EXPIRY, EARLIEST_EXPIRY_HELP, MetricType::Gauge);
        m.sample(id, &[], t as f64);
    }
    let Some(tls) = r.tls.as_ref().filter(|_| r.over_tls) else {
        return;
    };
    if let Some(version) = tls.version {
        let id = m.family(TLS_VERSION, TLS_VERSION_HELP, MetricType::Gauge);
        m.sample(id, &[("version", version)], 1.0);
    }
    if let Some(t) = tls.verified_not_after {
        let id = m.family(CHAIN_EXPIRY, CHAIN_EXPIRY_HELP, MetricType::Gauge);
        m.sample(id, &[], t as f64);
    }
    if let Some(leaf) = &tls.leaf {
        let id = m.family(CHAIN_INFO, CHAIN_INFO_HELP, MetricType::Gauge);
        let labels = [
            ("fingerprint_sha256", leaf.fingerprint_sha256.as_str()),
            ("issuer", leaf.issuer.as_str()),
            ("subject", leaf.subject.as_str()),
            ("subjectalternative", leaf.dns_names.as_str()),
        ];
        m.sample(id, &labels, 1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_is_blackboxs() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // The module's timeout when the scrape's leaves more.
        assert_eq!(effective_timeout(Some(s(5)), Some(10.0)), s(5));
        // The scrape's, less half a second, when it is shorter.
        assert_eq!(effective_timeout(Some(s(5)), Some(1.0)), ms(500));
        assert_eq!(effective_timeout(None, Some(10.0)), ms(9500));
        // No header (or 0): 120 s.
        assert_eq!(effective_timeout(None, None), ms(119_500));
        assert_eq!(effective_timeout(None, Some(0.0)), ms(119_500));
        assert_eq!(effective_timeout(Some(s(200)), None), ms(119_500));
        // Nothing left of the scrape's: the module's, else nothing.
        assert_eq!(effective_timeout(Some(s(3)), Some(0.4)), s(3));
        assert_eq!(effective_timeout(None, Some(0.4)), Duration::ZERO);
        // A header past ten minutes counts as ten minutes (1e20 s once overflowed
        // Duration and aborted sonde).
        for huge in [600.0, 86_400.0, 1.85e19, 1e20, f64::MAX] {
            assert_eq!(effective_timeout(None, Some(huge)), ms(599_500), "{huge}");
            assert_eq!(effective_timeout(Some(s(7)), Some(huge)), s(7), "{huge}");
        }
    }

    #[test]
    fn ip_hashes_are_fnv1a_of_the_address_bytes() {
        // Known FNV-1a 32-bit values: of no bytes, and of "a".
        assert_eq!(
            [].iter()
                .fold(0x811c_9dc5u32, |h, b: &u8| (h ^ u32::from(*b))
                    .wrapping_mul(0x0100_0193)),
            0x811c_9dc5
        );
        assert_eq!(ip_hash("127.0.0.1".parse().unwrap()), fnv(&[127, 0, 0, 1]));
        assert_eq!(
            ip_hash("::ffff:127.0.0.1".parse().unwrap()),
            ip_hash("127.0.0.1".parse().unwrap())
        );
        let v6: IpAddr = "::1".parse().unwrap();
        let mut bytes = [0u8; 16];
        bytes[15] = 1;
        assert_eq!(ip_hash(v6), fnv(&bytes));
        assert_eq!(fnv(b"a"), 0xe40c_292c);
    }

    fn fnv(bytes: &[u8]) -> u32 {
        let mut h = 0x811c_9dc5u32;
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
        h
    }

    #[test]
    fn targets_without_a_scheme_are_http() {
        assert_eq!(
            parse_target("example.org:8080/x").unwrap().label,
            "http://example.org:8080/x"
        );
        assert_eq!(
            parse_target("https://example.org/").unwrap().label,
            "https://example.org/"
        );
        assert!(parse_target("ftp://example.org/").is_err());
        assert!(parse_target("").is_err());
    }

    #[test]
    fn a_failed_lookup_has_only_the_resolve_phase_and_a_reason() {
        let mut r = ProbeResult::not_run();
        r.failure = Some(Reason::Dns);
        let text = render(&r, Some("dns"), Duration::from_millis(3));
        assert!(
            text.contains("probe_http_duration_seconds{phase=\"resolve\"} 0\n"),
            "{text}"
        );
        assert!(!text.contains("phase=\"connect\""), "{text}");
        assert!(
            text.contains("probe_failure_reason{reason=\"dns\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("probe_success 0\n"), "{text}");
        assert!(text.contains("probe_http_content_length 0\n"), "{text}");
        assert!(text.contains("probe_ip_protocol 0\n"), "{text}");
        let ok = render(
            &ProbeResult {
                failure: None,
                status: 200,
                ..ProbeResult::not_run()
            },
            None,
            Duration::ZERO,
        );
        assert!(ok.contains("probe_http_content_length -1\n"), "{ok}");
        assert!(!ok.contains("probe_failure_reason"), "{ok}");
        assert!(ok.contains("phase=\"transfer\""), "{ok}");
    }
}
