//! The HTTP endpoints: what each path answers, from the store and the exposition.

use std::io::Write;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::http1::{Request, Response};
use super::probe::Probes;
use super::server::{Answer, Handler};
use crate::exposition::BodySource;
use crate::exposition::{CONTENT_TYPE, Exposition, REVISION, VERSION};
use crate::store::Store;
use crate::units::rfc3339_millis;

/// Paths that are endpoints of their own; the telemetry path may not take one.
pub const RESERVED_PATHS: &[&str] = &[
    "/",
    "/healthcheck",
    "/-/healthy",
    "/-/ready",
    "/-/reload",
    "/queryurl",
    "/api/v1/checks",
    "/probe",
];

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
    /// `/probe`: its runner, pool and counters.
    pub probes: Arc<Probes>,
}

impl Handler for App {
    /// `GET /probe` runs a probe off the worker pool; everything else is [`App::handle`].
    fn answer(&self, req: &Request) -> Answer {
        if req.path == "/probe" && matches!(req.method.as_str(), "GET" | "HEAD") {
            return self.probes.answer(req);
        }
        Answer::Now(self.handle(req))
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
            "/" => self.landing(),
            "/healthcheck" => {
                Response::json(200, &json!({"app_name": "sonde", "app_status": "ok"}))
            }
            "/-/healthy" => Response::text(200, "Healthy."),
            "/-/ready" => self.ready(),
            "/-/reload" => self.reload(),
            "/queryurl" => self.queryurl(req),
            "/api/v1/checks" => self.checks(),
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
                        "response_time_in_ms": (t.duration_ms * 1000.0).round() / 1000.0,
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

    fn landing(&self) -> Response {
        let mut rows = String::new();
        for slot in self.store.slots().iter() {
            let snap = slot.latest();
            let (status, last, error) = match &snap {
                None => ("pending", "never".to_string(), String::new()),
                Some(s) => (
                    if s.success { "ok" } else { "failing" },
                    rfc3339_millis(s.started_unix_ms),
                    s.error.clone().unwrap_or_default(),
                ),
            };
            rows.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{status}\">{status}</td><td>{}</td><td>{}</td></tr>\n",
                html(&slot.meta.name),
                slot.meta.kind,
                crate::units::format_duration(slot.meta.interval),
                html(&last),
                html(&error)
            ));
        }
        let metrics = html(&self.telemetry_path);
        let page = format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>sonde</title>\n\
             <style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.2em .8em;text-align:left}}\
             .ok{{color:#080}}.failing{{color:#b00}}.pending{{color:#888}}</style></head>\n\
             <body><h1>sonde</h1><p>Periodic checks exported to Prometheus. Version {VERSION} (revision {REVISION}).</p>\n\
             <ul><li><a href=\"{metrics}\">Metrics</a></li><li><a href=\"/api/v1/checks\">Checks (JSON)</a></li>\
             <li><a href=\"/queryurl\">URL results (JSON)</a></li><li><a href=\"/-/healthy\">Health</a></li>\
             <li><a href=\"/-/ready\">Readiness</a></li></ul>\n\
             <table><tr><th>Check</th><th>Kind</th><th>Interval</th><th>Status</th><th>Last run</th><th>Error</th></tr>\n{rows}</table>\n\
             </body></html>\n"
        );
        Response::new(200, "text/html; charset=utf-8", page)
    }
}

/// Escapes text for HTML.
fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
