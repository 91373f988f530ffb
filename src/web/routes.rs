//! The HTTP endpoints: what each path answers, from the store and the exposition.

use std::io::Write;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value, json};

use super::http1::{Request, Response};
use super::page::{self, Query};
use super::probe::Probes;
use super::server::{Answer, Handler};
use crate::exposition::BodySource;
use crate::exposition::{CONTENT_TYPE, Exposition};
use crate::store::Store;
use crate::sync::lock;
use crate::units::{rfc3339_millis, unix_ms};

/// Paths that are endpoints of their own; the telemetry path may not take one.
pub const RESERVED_PATHS: &[&str] = &[
    "/",
    "/healthcheck",
    "/-/healthy",
    "/-/ready",
    "/-/reload",
    "/queryurl",
    "/api/v1/checks",
    "/api/v1/targets",
    "/probe",
];

/// The status page's Content-Security-Policy: no script, no fetch, no frame; only the
/// page's own inline style and `data:` images (the empty favicon).
pub const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

/// Where the outcome of a reload goes: `Err` carries the problems, one per line.
pub type ReloadReply = mpsc::Sender<Result<(), String>>;

/// Everything the endpoints read.
pub struct App {
    /// The checks' snapshots.
    pub store: Arc<Store>,
    /// The cached exposition.
    pub exposition: Arc<Exposition>,
    /// Where the metrics are served.
    pub telemetry_path: String,
    /// Asks the thread that owns the scheduler to reload; false when it is gone.
    pub reload: Box<dyn Fn(ReloadReply) -> bool + Send + Sync>,
    /// `--web.enable-lifecycle`: without it `POST /-/reload` is refused (403).
    pub lifecycle: bool,
    /// `/probe`: its runner, pool and counters.
    pub probes: Arc<Probes>,
    /// The last `/api/v1/targets` answer, shared by every request that asks the same
    /// of the same snapshots (see [`TargetsKey`]).
    pub targets_cache: Mutex<Option<(TargetsKey, Arc<SharedBody>)>>,
}

/// What an `/api/v1/targets` answer depends on: the store's generation, the query,
/// the encoding, and the minute (`cert_days_left` counts from now).
#[derive(Clone, Debug, PartialEq)]
pub struct TargetsKey {
    generation: u64,
    query: Query,
    gzip: bool,
    minute: u64,
}

/// A body built once and sent to many clients without a copy each.
#[derive(Debug)]
pub struct SharedBody(Vec<u8>);

impl BodySource for SharedBody {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn write_to(&self, out: &mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> std::io::Result<()> {
        out(&self.0)
    }

    fn chunk_at(&self, offset: usize) -> &[u8] {
        self.0.get(offset..).unwrap_or_default()
    }
}

impl Handler for App {
    /// `GET /probe` runs a probe off the worker pool; everything else is [`App::handle`].
    fn answer(&self, req: &Request) -> Answer {
        if req.path == "/probe" && matches!(req.method.as_str(), "GET" | "HEAD") {
            return self.probes.answer(req);
        }
        Answer::Now(self.handle(req))
    }

    /// Scrapes of the metrics and of `/probe`, and the health checks an orchestrator
    /// restarts sonde on, have workers of their own: a burst of status-page or JSON
    /// requests (a 3,000-target `/api/v1/targets` is 7 MB) must not hold them up.
    fn urgent(&self, req: &Request) -> bool {
        let path = req.path.as_str();
        path == self.telemetry_path
            || matches!(path, "/probe" | "/-/healthy" | "/-/ready" | "/healthcheck")
    }

    fn handle(&self, req: &Request) -> Response {
        let path = req.path.as_str();
        let read_only = matches!(req.method.as_str(), "GET" | "HEAD");
        let allowed = if path == "/-/reload" {
            "POST"
        } else {
            "GET, HEAD"
        };
        let known = path == self.telemetry_path || RESERVED_PATHS.contains(&path);
        if !known {
            return Response::text(404, format!("404 page not found: {path}"));
        }
        let method_ok = if path == "/-/reload" {
            req.method == "POST"
        } else {
            read_only
        };
        if !method_ok {
            return Response::text(
                405,
                format!("method {} not allowed; use {allowed}", req.method),
            )
            .with_header("Allow", allowed);
        }
        match path {
            p if p == self.telemetry_path => self.metrics(req),
            "/" => self.status_page(req),
            "/healthcheck" => {
                Response::json(200, &json!({"app_name": "sonde", "app_status": "ok"}))
            }
            "/-/healthy" => Response::text(200, "Healthy."),
            "/-/ready" => self.ready(),
            "/-/reload" if !self.lifecycle => Response::text(
                403,
                "POST /-/reload is disabled: start sonde with --web.enable-lifecycle to enable it (SIGHUP reloads either way)",
            ),
            "/-/reload" => self.reload(),
            "/queryurl" => self.queryurl(req),
            "/api/v1/checks" => self.checks(),
            "/api/v1/targets" => self.targets(req),
            "/probe" => match self.probes.answer(req) {
                Answer::Now(response) => response,
                Answer::Later(work) => work(),
            },
            _ => Response::text(404, "404 page not found"),
        }
    }
}

impl App {
    fn metrics(&self, req: &Request) -> Response {
        let body = Arc::new(self.exposition.scrape_with(self.probes.metrics()));
        if req.accepts_gzip() {
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 8),
                flate2::Compression::fast(),
            );
            let compressed = body
                .write_to(&mut |chunk| encoder.write_all(chunk))
                .and_then(|()| encoder.finish());
            if let Ok(compressed) = compressed {
                return Response::new(200, CONTENT_TYPE, compressed)
                    .with_header("Content-Encoding", "gzip")
                    .with_header("Vary", "Accept-Encoding");
            }
        }
        Response::streamed(200, CONTENT_TYPE, body).with_header("Vary", "Accept-Encoding")
    }

    fn ready(&self) -> Response {
        if self.store.is_ready() {
            return Response::text(200, "Ready.");
        }
        let waiting = self
            .store
            .slots()
            .iter()
            .filter(|s| s.latest().is_none())
            .count();
        Response::text(
            503,
            format!("Not ready: {waiting} check(s) have not completed their first run."),
        )
    }

    fn reload(&self) -> Response {
        let (tx, rx) = mpsc::channel();
        if !(self.reload)(tx) {
            return Response::text(500, "reload is not possible while shutting down");
        }
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(())) => Response::text(200, "config reloaded"),
            Ok(Err(problems)) => Response::text(
                500,
                format!("reload failed; the running config is kept:\n{problems}"),
            ),
            Err(_) => Response::text(500, "reload did not finish in time"),
        }
    }

    fn queryurl(&self, req: &Request) -> Response {
        let wanted = req.query_param("check");
        let slots = self.store.slots();
        if let Some(name) = &wanted
            && !slots
                .iter()
                .any(|s| &s.meta.name == name && s.meta.kind == "http")
        {
            return Response::json(
                404,
                &json!({"status": "error", "error": format!("no http check named {name:?}")}),
            );
        }
        let mut response = Map::new();
        for slot in slots.iter().filter(|s| s.meta.kind == "http") {
            if wanted.as_ref().is_some_and(|w| w != &slot.meta.name) {
                continue;
            }
            let Some(snap) = slot.latest() else { continue };
            for t in &snap.targets {
                // A URL in several checks shows the first check's result.
                response.entry(t.target.clone()).or_insert_with(|| {
                    json!({
                        "check": slot.meta.name,
                        "up": u8::from(t.up),
                        "status_code": t.status_code,
                        "response_time_in_ms": t.duration_ms.map(|ms| (ms * 1000.0).round() / 1000.0),
                        "error": t.error,
                        "cause": t.cause,
                    })
                });
            }
        }
        Response::json(
            200,
            &json!({"status": "ok", "response": Value::Object(response)}),
        )
    }

    fn checks(&self) -> Response {
        let checks: Vec<Value> = self
            .store
            .slots()
            .iter()
            .map(|slot| {
                let snap = slot.latest();
                json!({
                    "name": slot.meta.name,
                    "kind": slot.meta.kind,
                    "interval_seconds": slot.meta.interval.as_secs_f64(),
                    "timeout_seconds": slot.meta.timeout.as_secs_f64(),
                    "last_run": snap.as_ref().map(|s| rfc3339_millis(s.started_unix_ms)),
                    "last_duration_seconds": snap.as_ref().map(|s| s.duration.as_secs_f64()),
                    "last_success": snap.as_ref().and_then(|s| s.last_success_unix_ms).map(rfc3339_millis),
                    "success": snap.as_ref().map(|s| s.success),
                    "error": snap.as_ref().and_then(|s| s.error.clone()),
                    "runs_total": snap.as_ref().map_or(0, |s| s.runs_total),
                    "failures_total": snap.as_ref().map_or(0, |s| s.failures_total),
                })
            })
            .collect();
        Response::json(200, &json!({"status": "ok", "checks": checks}))
    }

    /// `/`: the status page, rendered on every request (it is cheap: see the README's
    /// figures) and never cached.
    fn status_page(&self, req: &Request) -> Response {
        // The messages quote what the client sent: never let a browser sniff them as HTML.
        let query = match Query::parse(req) {
            Ok(q) => q,
            Err(e) => {
                return Response::text(400, e).with_header("X-Content-Type-Options", "nosniff");
            }
        };
        let started = Instant::now();
        let page = page::html(
            &self.store,
            &query,
            &self.telemetry_path,
            unix_ms(SystemTime::now()),
        );
        let page = match page {
            Ok(page) => page,
            Err(e) => {
                return Response::text(404, e).with_header("X-Content-Type-Options", "nosniff");
            }
        };
        let rendered = started.elapsed().as_secs_f64() * 1000.0;
        let (body, gzipped) = gzip_if_accepted(req, page.into_bytes());
        let mut timing = format!("render;dur={rendered:.2}");
        if gzipped {
            let total = started.elapsed().as_secs_f64() * 1000.0;
            timing.push_str(&format!(", gzip;dur={:.2}", total - rendered));
        }
        let mut response = Response::new(200, "text/html; charset=utf-8", body)
            .with_header("Content-Security-Policy", PAGE_CSP)
            .with_header("Cache-Control", "no-store")
            .with_header("X-Content-Type-Options", "nosniff")
            .with_header("Referrer-Policy", "no-referrer")
            .with_header("Vary", "Accept-Encoding")
            .with_header("Server-Timing", timing);
        if gzipped {
            response = response.with_header("Content-Encoding", "gzip");
        }
        response
    }

    /// `/api/v1/targets`: every target's latest result and history.
    fn targets(&self, req: &Request) -> Response {
        let query = match Query::parse(req) {
            Ok(q) => q,
            Err(e) => return Response::json(400, &json!({"status": "error", "error": e})),
        };
        // Built once per snapshot generation, query, encoding and minute, and shared:
        // 400 clients that never read a 6.6 MB answer held a copy each (1.1 GB).
        let now = unix_ms(SystemTime::now());
        let mut key = TargetsKey {
            generation: self.store.generation(),
            query: query.clone(),
            gzip: req.accepts_gzip(),
            minute: now / 60_000,
        };
        let cached = lock(&self.targets_cache)
            .as_ref()
            .filter(|(k, _)| *k == key)
            .map(|(_, body)| Arc::clone(body));
        let body = match cached {
            Some(body) => body,
            None => match page::json(&self.store, &query, now) {
                Ok(mut body) => {
                    body.push(b'\n');
                    let (bytes, gzipped) = gzip_if_accepted(req, body);
                    key.gzip = gzipped;
                    let body = Arc::new(SharedBody(bytes));
                    *lock(&self.targets_cache) = Some((key.clone(), Arc::clone(&body)));
                    body
                }
                Err(e) => return Response::json(404, &json!({"status": "error", "error": e})),
            },
        };
        let response = Response::streamed(200, "application/json", body)
            .with_header("Vary", "Accept-Encoding");
        if key.gzip {
            response.with_header("Content-Encoding", "gzip")
        } else {
            response
        }
    }
}

/// `body` gzip-compressed when the client accepts it, and whether it is: the page of a
/// check with thousands of targets shrinks about twentyfold.
fn gzip_if_accepted(req: &Request, body: Vec<u8>) -> (Vec<u8>, bool) {
    if !req.accepts_gzip() {
        return (body, false);
    }
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 8),
        flate2::Compression::fast(),
    );
    match encoder.write_all(&body).and_then(|()| encoder.finish()) {
        Ok(compressed) => (compressed, true),
        Err(_) => (body, false),
    }
}
