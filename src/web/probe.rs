//! `/probe?target=..&module=..[&debug=true]`: blackbox_exporter's endpoint, served
//! beside the scheduled checks.
//!
//! This file reads the request, bounds how many probes run at once and counts them;
//! the probe itself is run by a [`ProbeRunner`] that `main.rs` hands in (the web layer
//! never imports the checks). A probe may take as long as its module's timeout, so it
//! runs on a thread of its own ([`Answer::Later`]) and the server's few workers stay
//! free for `/metrics` and the health endpoints. At most `--probe.concurrency` probes
//! run at once: one more is answered 503 at once rather than queued, so a flood costs
//! a bounded number of threads and no memory that grows with it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::http1::{Request, Response};
use super::server::Answer;
use crate::metrics::{FamilySet, MetricType};
use crate::sync::lock;

const REQUESTS: &str = "sonde_probe_requests_total";
const REQUESTS_HELP: &str = "Requests to /probe by module and result (success, failure: the probe ran; rejected: too many probes in flight, 503; invalid: 400). module is empty when the request named no configured module.";
const IN_FLIGHT: &str = "sonde_probe_in_flight";
const IN_FLIGHT_HELP: &str = "Probes of /probe running now.";

/// The module blackbox_exporter uses when a request names none.
const DEFAULT_MODULE: &str = "http_2xx";

/// Prometheus' header with the scrape's timeout in seconds.
const SCRAPE_TIMEOUT_HEADER: &str = "x-prometheus-scrape-timeout-seconds";

/// Content type of a probe's series (the text format).
const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a probe answered.
#[derive(Debug)]
pub struct ProbeReply {
    /// `probe_success`.
    pub success: bool,
    /// The series, or with `debug=true` the account of the probe.
    pub body: String,
}

/// A probe ready to run (its module looked up, its request read).
pub type Probe = Box<dyn FnOnce() -> ProbeReply + Send>;

/// Why a probe cannot run: the module is not there or was refused (400).
#[derive(Debug)]
pub struct NotProbed {
    /// Whether the module is configured (and so may be a label value).
    pub known: bool,
    /// The one line the client gets.
    pub message: String,
}

/// What `/probe` asks of the layer that runs probes.
pub trait ProbeRunner: Send + Sync {
    /// The probe of `target` with `module` within the scrape's timeout, ready to run.
    fn prepare(
        &self,
        module: &str,
        target: &str,
        scrape_timeout: Option<f64>,
        debug: bool,
    ) -> Result<Probe, NotProbed>;
}

/// The outcomes counted in `sonde_probe_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Success,
    Failure,
    Rejected,
    Invalid,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Rejected => "rejected",
            Outcome::Invalid => "invalid",
        }
    }
}

/// `/probe`'s runner, its bound and its counters.
pub struct Probes {
    runner: Box<dyn ProbeRunner>,
    limit: usize,
    in_flight: AtomicUsize,
    counts: Mutex<BTreeMap<(String, Outcome), u64>>,
}

/// A place in the pool, given back when dropped (the probe finished or never ran).
struct Slot(Arc<Probes>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Probes {
    /// `/probe` with `runner`, at most `limit` probes at once.
    pub fn new(runner: Box<dyn ProbeRunner>, limit: usize) -> Probes {
        Probes {
            runner,
            limit: limit.max(1),
            in_flight: AtomicUsize::new(0),
            counts: Mutex::new(BTreeMap::new()),
        }
    }

    fn count(&self, module: &str, outcome: Outcome) {
        *lock(&self.counts)
            .entry((module.to_string(), outcome))
            .or_insert(0) += 1;
    }

    /// A place in the pool, or `None` when `limit` probes are running.
    fn acquire(self: &Arc<Self>) -> Option<Slot> {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(Arc::clone(self)))
    }

    /// Answers a `/probe` request: 400 at once for a bad request, 503 at once when the
    /// pool is full, else the probe to run on a thread of its own.
    pub fn answer(self: &Arc<Self>, req: &Request) -> Answer {
        let module = req
            .query_param("module")
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| DEFAULT_MODULE.to_string());
        let Some(target) = req.query_param("target").filter(|t| !t.is_empty()) else {
            self.count("", Outcome::Invalid);
            return Answer::Now(Response::text(400, "the target parameter is missing"));
        };
        let debug = req.query_param("debug").as_deref() == Some("true");
        let scrape_timeout = match req.header(SCRAPE_TIMEOUT_HEADER).map(str::trim) {
            None => None,
            Some(text) => match text.parse::<f64>() {
                Ok(t) if t.is_finite() && t >= 0.0 => Some(t),
                _ => {
                    self.count("", Outcome::Invalid);
                    return Answer::Now(Response::text(
                        400,
                        format!(
                            "X-Prometheus-Scrape-Timeout-Seconds {text:?} is not a number of seconds"
                        ),
                    ));
                }
            },
        };
        let probe = match self.runner.prepare(&module, &target, scrape_timeout, debug) {
            Ok(probe) => probe,
            Err(not) => {
                self.count(if not.known { &module } else { "" }, Outcome::Invalid);
                return Answer::Now(Response::text(400, not.message));
            }
        };
        let Some(slot) = self.acquire() else {
            self.count(&module, Outcome::Rejected);
            return Answer::Now(
                Response::text(
                    503,
                    format!(
                        "too many probes in flight ({} at once, --probe.concurrency); try again later",
                        self.limit
                    ),
                )
                .with_header("Retry-After", "1"),
            );
        };
        Answer::Later(Box::new(move || {
            let reply = probe();
            let outcome = if reply.success {
                Outcome::Success
            } else {
                Outcome::Failure
            };
            slot.0.count(&module, outcome);
            drop(slot);
            let content_type = if debug {
                "text/plain; charset=utf-8"
            } else {
                METRICS_TYPE
            };
            Response::new(200, content_type, reply.body)
        }))
    }

    /// `sonde_probe_requests_total` and `sonde_probe_in_flight`, for `/metrics`.
    pub fn metrics(&self) -> String {
        let mut m = FamilySet::new();
        let in_flight = m.family(IN_FLIGHT, IN_FLIGHT_HELP, MetricType::Gauge);
        m.sample(
            in_flight,
            &[],
            self.in_flight.load(Ordering::Acquire) as f64,
        );
        let requests = m.family(REQUESTS, REQUESTS_HELP, MetricType::Counter);
        for ((module, outcome), n) in lock(&self.counts).iter() {
            let labels = [("module", module.as_str()), ("result", outcome.as_str())];
            m.sample(requests, &labels, *n as f64);
        }
        m.to_text()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::http1::Body;

    /// Probes `target` by answering it back, or refuses module "no".
    struct Echo;

    impl ProbeRunner for Echo {
        fn prepare(
            &self,
            module: &str,
            target: &str,
            scrape_timeout: Option<f64>,
            _debug: bool,
        ) -> Result<Probe, NotProbed> {
            if module == "no" {
                return Err(NotProbed {
                    known: false,
                    message: "unknown module \"no\"".into(),
                });
            }
            let body = format!("{module} {target} {scrape_timeout:?}");
            Ok(Box::new(move || ProbeReply {
                success: !body.contains("down"),
                body,
            }))
        }
    }

    fn get(query: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: "GET".into(),
            path: "/probe".into(),
            query: query.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            keep_alive: false,
            body: Vec::new(),
        }
    }

    fn now(answer: Answer) -> Response {
        match answer {
            Answer::Now(r) => r,
            Answer::Later(_) => panic!("expected an answer at once"),
        }
    }

    fn body(r: &Response) -> String {
        match &r.body {
            Body::Bytes(b) => String::from_utf8(b.clone()).unwrap(),
            other => panic!("a probe answers bytes, not {other:?}"),
        }
    }

    #[test]
    fn bad_requests_are_400_and_a_full_pool_is_503() {
        let probes = Arc::new(Probes::new(Box::new(Echo), 1));
        assert_eq!(now(probes.answer(&get("module=x", &[]))).status, 400);
        assert_eq!(
            now(probes.answer(&get("target=a&module=no", &[]))).status,
            400
        );
        let header = [("x-prometheus-scrape-timeout-seconds", "soon")];
        assert_eq!(now(probes.answer(&get("target=a", &header))).status, 400);
        let Answer::Later(first) = probes.answer(&get("target=a%2Fb", &[])) else {
            panic!("the first probe runs")
        };
        let busy = now(probes.answer(&get("target=b", &[])));
        assert_eq!(busy.status, 503);
        assert!(
            busy.headers
                .iter()
                .any(|(k, v)| k == "Retry-After" && v == "1")
        );
        let done = first();
        assert_eq!(body(&done), "http_2xx a/b None");
        let header = [("x-prometheus-scrape-timeout-seconds", "10")];
        let Answer::Later(second) = probes.answer(&get("target=down&module=m", &header)) else {
            panic!("the slot was given back")
        };
        assert_eq!(body(&second()), "m down Some(10.0)");
        let text = probes.metrics();
        for line in [
            "sonde_probe_in_flight 0\n",
            "sonde_probe_requests_total{module=\"\",result=\"invalid\"} 3\n",
            "sonde_probe_requests_total{module=\"http_2xx\",result=\"success\"} 1\n",
            "sonde_probe_requests_total{module=\"http_2xx\",result=\"rejected\"} 1\n",
            "sonde_probe_requests_total{module=\"m\",result=\"failure\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
