//! The status page (`/`) and its JSON twin (`/api/v1/targets`): every check with its
//! targets' state, last result and history, for a person rather than for Prometheus.
//!
//! The page is one self-contained HTML document written by hand into a `String`: inline
//! CSS, sparklines as inline SVG paths, no script and no external asset, so it works in
//! the scratch image, behind basic auth and under a `default-src 'none'` policy. Every
//! text that came from the config or from a target (names, URLs, causes, labels) goes
//! through [`escape`]. A check with more than [`MAX_ROWS`] targets shows only the ones
//! that are not up, with a link to the rest, so the overview stays small however many
//! targets there are.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;

use super::http1::Request;
use crate::exposition::{REVISION, VERSION};
use crate::store::{History, Slot, Snapshot, Store, TargetReport, TargetState, View};
use crate::units::{format_duration, rfc3339_millis};

/// Targets of one check the overview lists in full; past it, only those not up.
pub const MAX_ROWS: usize = 200;

/// Certificates with fewer days left are marked as expiring soon.
const CERT_WARN_DAYS: f64 = 14.0;
/// Certificates with fewer days left are marked as urgent.
const CERT_URGENT_DAYS: f64 = 3.0;

/// Longest refresh interval `?refresh=` accepts, in seconds (a day).
const MAX_REFRESH_SECS: u64 = 86_400;

/// Sparkline geometry: one 2-unit slot per result, newest on the right.
const SPARK_W: usize = 2 * crate::store::HISTORY_LEN;
const SPARK_H: u32 = 20;

/// What the query string of `/` and `/api/v1/targets` asks for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Query {
    /// `?state=up|down|pending`: only targets in that state.
    pub state: Option<TargetState>,
    /// `?check=NAME`: only that check, with all its targets.
    pub check: Option<String>,
    /// `?refresh=SECONDS`: the page's refresh interval; 0 turns it off.
    pub refresh: Option<u64>,
}

impl Query {
    /// Reads the query string; `Err` is a message for a 400 answer.
    pub fn parse(req: &Request) -> Result<Query, String> {
        let state = match req.query_param("state").as_deref() {
            None | Some("") => None,
            Some(word) => Some(
                TargetState::parse(word)
                    .ok_or_else(|| format!("state must be up, down or pending, not {word:?}"))?,
            ),
        };
        let refresh = match req.query_param("refresh").as_deref() {
            None | Some("") => None,
            Some(text) => Some(
                text.parse::<u64>()
                    .ok()
                    .filter(|s| *s <= MAX_REFRESH_SECS)
                    .ok_or_else(|| {
                        format!(
                            "refresh must be whole seconds from 0 (off) to {MAX_REFRESH_SECS}, not {text:?}"
                        )
                    })?,
            ),
        };
        let check = req.query_param("check").filter(|c| !c.is_empty());
        Ok(Query {
            state,
            check,
            refresh,
        })
    }

    /// Whether a target in `state` is shown.
    fn wants(&self, state: TargetState) -> bool {
        self.state.is_none_or(|s| s == state)
    }

    /// This query's URL with one parameter changed (`None` removes it), percent-encoded
    /// but not yet HTML-escaped; parameters keep a fixed order so links are stable.
    fn link(&self, change: (&str, Option<&str>)) -> String {
        let state = self.state.map(TargetState::as_str);
        let refresh = self.refresh.map(|r| r.to_string());
        let mut params = vec![
            ("check", self.check.as_deref()),
            ("state", state),
            ("refresh", refresh.as_deref()),
        ];
        for p in &mut params {
            if p.0 == change.0 {
                p.1 = change.1;
            }
        }
        let mut url = String::from("?");
        for (k, v) in params {
            if let Some(v) = v {
                if url.len() > 1 {
                    url.push('&');
                }
                let _ = write!(url, "{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC));
            }
        }
        if url.len() == 1 {
            url = "/".into();
        }
        url
    }
}

/// A check's slot read together with its snapshot and histories. Only one is held at a
/// time: two pages holding several, taken in different orders after a reload reordered
/// the checks, could wait for each other for ever.
struct Checked<'a> {
    slot: &'a Slot,
    view: View<'a>,
}

impl<'a> Checked<'a> {
    fn of(slot: &'a Slot) -> Checked<'a> {
        Checked {
            slot,
            view: slot.view(),
        }
    }

    fn targets(&self) -> &[TargetReport] {
        self.view
            .snapshot
            .as_ref()
            .map_or(&[], |s| s.targets.as_slice())
    }
}

/// Counts and the next certificate to expire over every check, from their latest
/// snapshots (a run published while the page renders may make a section newer).
#[derive(Default)]
struct Summary {
    checks: usize,
    checks_not_run: usize,
    up: usize,
    down: usize,
    pending: usize,
    /// (check, target, NotAfter) of the earliest certificate.
    next_cert: Option<(String, String, i64)>,
}

impl Summary {
    fn of(slots: &[Arc<Slot>]) -> Summary {
        let mut s = Summary {
            checks: slots.len(),
            ..Summary::default()
        };
        for slot in slots {
            let Some(snap) = slot.latest() else {
                s.checks_not_run += 1;
                continue;
            };
            for t in &snap.targets {
                match t.state() {
                    TargetState::Up => s.up += 1,
                    TargetState::Down => s.down += 1,
                    TargetState::Pending => s.pending += 1,
                }
                if let Some(at) = t.cert_not_after
                    && s.next_cert.as_ref().is_none_or(|(_, _, best)| at < *best)
                {
                    s.next_cert = Some((slot.meta.name.clone(), t.target.clone(), at));
                }
            }
        }
        s
    }
}

/// The checks `query` selects, in config order; `Err` names an unknown check.
fn select<'a>(slots: &'a [Arc<Slot>], query: &Query) -> Result<Vec<&'a Slot>, String> {
    let shown: Vec<&Slot> = slots
        .iter()
        .map(|s| &**s)
        .filter(|s| query.check.as_ref().is_none_or(|n| n == &s.meta.name))
        .collect();
    match &query.check {
        Some(name) if shown.is_empty() => Err(format!("no check named {name:?}")),
        _ => Ok(shown),
    }
}

/// The status page; `Err` names an unknown `?check=`.
pub fn html(
    store: &Store,
    query: &Query,
    telemetry_path: &str,
    now_unix_ms: u64,
) -> Result<String, String> {
    let slots = store.slots();
    let shown = select(&slots, query)?;
    let summary = Summary::of(&slots);
    let now = now_unix_ms as f64 / 1000.0;
    let rows = summary.up + summary.down + summary.pending;
    let mut out = String::with_capacity((8 << 10) + rows.min(20_000) * 800);
    head(&mut out, &summary, refresh(&slots, query));
    header(&mut out, &summary, query, now);
    out.push_str("<main>\n");
    let mut any = false;
    for slot in shown {
        any |= section(&mut out, &Checked::of(slot), query, now);
    }
    if !any {
        let what = match query.state {
            Some(TargetState::Up) => "No target is up.",
            Some(TargetState::Down) => "No target is down.",
            Some(TargetState::Pending) => "Every target has been checked.",
            None => "No check has targets to show.",
        };
        let _ = writeln!(out, "<p class=\"empty\">{what}</p>");
    }
    out.push_str("</main>\n");
    footer(&mut out, query, telemetry_path);
    Ok(out)
}

/// Seconds between refreshes: `?refresh=`, else the shortest check interval (at least
/// 1 s); `None` when off.
fn refresh(slots: &[Arc<Slot>], query: &Query) -> Option<u64> {
    match query.refresh {
        Some(0) => None,
        Some(secs) => Some(secs),
        None => slots
            .iter()
            .map(|s| s.meta.interval)
            .min()
            .map(|d| d.as_secs_f64().ceil().max(1.0) as u64),
    }
}

const STYLE: &str = "\
:root{--bg:#fff;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--card:#f6f8fa;--up:#1a7f37;--down:#cf222e;--warn:#9a6700;--pending:#6e7781}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;--line:#3d444d;--card:#151b23;--up:#3fb950;--down:#ff7b72;--warn:#d29922;--pending:#9198a1}}
*{box-sizing:border-box}html{color-scheme:light dark}
body{margin:0 auto;max-width:1280px;padding:1rem;font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;background:var(--bg);color:var(--fg)}
h1{font-size:1.4rem;margin:0}h2{font-size:1.1rem;margin:0;overflow-wrap:anywhere}a{color:inherit}
header p,nav,.meta,footer{color:var(--muted);overflow-wrap:anywhere}.summary{color:var(--fg);font-size:1.05rem}
nav a,footer a{margin-right:.6rem}nav b{margin-right:.6rem}
section{border:1px solid var(--line);border-radius:8px;margin:1rem 0;padding:.75rem;background:var(--card)}
.meta{margin:.2rem 0 0;font-size:.9rem}.kind{color:var(--muted);font-weight:400;font-size:.9rem}
table{border-collapse:collapse;width:100%;margin-top:.5rem}
th,td{text-align:left;padding:.3rem .5rem;border-top:1px solid var(--line);vertical-align:top}
th{font-weight:600;color:var(--muted);font-size:.85rem}
tr[data-state=down] td:first-child{box-shadow:inset 3px 0 var(--down)}
.t{overflow-wrap:anywhere;min-width:8rem}.sub{color:var(--muted);font-size:.85rem;overflow-wrap:anywhere}
.why{color:var(--muted);font-size:.85rem;overflow-wrap:break-word}
.st{font-weight:600;white-space:nowrap}.up{color:var(--up)}.down{color:var(--down)}.pending{color:var(--pending)}
.warn{color:var(--warn);font-weight:600}.crit{color:var(--down);font-weight:600}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.sp{display:block}.sp rect{fill:var(--line);opacity:.4}.sp path{stroke-width:1.5;fill:none}.sp .u{stroke:var(--up)}.sp .d{stroke:var(--down)}
.muted,.empty{color:var(--muted)}
@media (max-width:640px){body{padding:.6rem}thead{display:none}table,tbody,tr{display:block}
tr{border-top:1px solid var(--line);padding:.35rem 0}td{display:inline-block;vertical-align:top;border:0;padding:.1rem .25rem;margin-right:.6rem}
td.t{display:block}td{max-width:100%}.why{overflow-wrap:anywhere}.num{text-align:left}.sp{display:inline-block;vertical-align:middle}
td[data-l]::before{content:attr(data-l) ': ';color:var(--muted);font-size:.85rem;font-weight:400}}
";

/// `<head>`: the title counts what is down, so a tab tells it too.
fn head(out: &mut String, s: &Summary, refresh: Option<u64>) {
    out.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
    );
    if let Some(secs) = refresh {
        let _ = writeln!(out, "<meta http-equiv=\"refresh\" content=\"{secs}\">");
    }
    // An empty data: icon keeps browsers from asking for /favicon.ico (a 404).
    out.push_str("<link rel=\"icon\" href=\"data:,\">\n<title>sonde: ");
    match s.down {
        0 => {
            let _ = write!(out, "{} up", s.up);
        }
        n => {
            let _ = write!(out, "{n} down");
        }
    }
    out.push_str("</title>\n<style>\n");
    out.push_str(STYLE);
    out.push_str("</style></head>\n<body>\n");
}

/// The summary line and the filters.
fn header(out: &mut String, s: &Summary, query: &Query, now: f64) {
    let _ = write!(
        out,
        "<header><h1>sonde</h1>\n<p class=\"summary\">{} check{} · targets: \
         <span class=\"up\">{} up</span> · <span class=\"down\">{} down</span> · \
         <span class=\"pending\">{} not yet run</span>",
        s.checks,
        if s.checks == 1 { "" } else { "s" },
        s.up,
        s.down,
        s.pending,
    );
    if s.checks_not_run > 0 {
        let _ = write!(
            out,
            " · <span class=\"pending\">{} check{} not yet run</span>",
            s.checks_not_run,
            if s.checks_not_run == 1 { "" } else { "s" }
        );
    }
    out.push_str("</p>\n<p>Next certificate to expire: ");
    match &s.next_cert {
        None => out.push_str("none seen"),
        Some((check, target, at)) => {
            escape(out, target);
            out.push_str(" (");
            escape(out, check);
            out.push_str("), ");
            cert_days(out, *at, now);
        }
    }
    out.push_str("</p>\n<nav>Show: ");
    let filters = [
        (None, "all"),
        (Some(TargetState::Down), "down"),
        (Some(TargetState::Pending), "not yet run"),
        (Some(TargetState::Up), "up"),
    ];
    for (state, label) in filters {
        if query.state == state {
            let _ = write!(out, "<b>{label}</b>");
        } else {
            let link = query.link(("state", state.map(TargetState::as_str)));
            let _ = write!(out, "<a href=\"{}\">{label}</a>", Esc(&link));
        }
    }
    if query.check.is_some() {
        let link = query.link(("check", None));
        let _ = write!(out, "<a href=\"{}\">every check</a>", Esc(&link));
    }
    if query.refresh == Some(0) {
        let link = query.link(("refresh", None));
        let _ = write!(out, "<a href=\"{}\">refresh on</a>", Esc(&link));
    } else {
        let link = query.link(("refresh", Some("0")));
        let _ = write!(out, "<a href=\"{}\">refresh off</a>", Esc(&link));
    }
    out.push_str("</nav></header>\n");
}

fn footer(out: &mut String, query: &Query, telemetry_path: &str) {
    let json = match &query.check {
        Some(c) => format!(
            "/api/v1/targets?check={}",
            utf8_percent_encode(c, NON_ALPHANUMERIC)
        ),
        None => "/api/v1/targets".into(),
    };
    let _ = write!(
        out,
        "<footer><p>sonde {VERSION} (revision {REVISION}) · <a href=\"{}\">metrics</a>\
         <a href=\"{}\">targets (JSON)</a><a href=\"/api/v1/checks\">checks (JSON)</a>\
         <a href=\"/-/healthy\">health</a><a href=\"/-/ready\">readiness</a></p></footer>\n\
         </body></html>\n",
        Esc(telemetry_path),
        Esc(&json)
    );
}

/// How a kind's targets are laid out: the columns a person looks at for it.
#[derive(Clone, Copy, PartialEq)]
enum Layout {
    /// URL, state, status code, latency, history, certificate.
    Http,
    /// Image, status, history.
    Image,
    /// Container (with its image), status, history.
    Container,
    /// Sensor, value, max, crit, state, history of the value.
    Sensor,
    /// Repository, pulls, state.
    Repository,
    /// Target, state, history.
    Other,
}

impl Layout {
    fn of(kind: &str) -> Layout {
        match kind {
            "http" => Layout::Http,
            "registry" => Layout::Image,
            "kubernetes_images" => Layout::Container,
            "hwmon" => Layout::Sensor,
            "dockerhub" => Layout::Repository,
            _ => Layout::Other,
        }
    }

    fn columns(self) -> &'static [&'static str] {
        match self {
            Layout::Http => &["URL", "State", "Code", "Latency", "Last 60", "Certificate"],
            Layout::Image => &["Image", "Status", "Last 60"],
            Layout::Container => &["Container", "Status", "Last 60"],
            Layout::Sensor => &["Sensor", "Value", "Max", "Crit", "State", "Last 60"],
            Layout::Repository => &["Repository", "Pulls", "State"],
            Layout::Other => &["Target", "State", "Last 60"],
        }
    }
}

/// One check: its heading, run status and the targets the query shows. Returns whether
/// anything was written (a filter may leave a check out).
fn section(out: &mut String, c: &Checked, query: &Query, now: f64) -> bool {
    let targets = c.targets();
    let mut rows: Vec<usize> = (0..targets.len())
        .filter(|&i| query.wants(targets[i].state()))
        .collect();
    let failing = c.view.snapshot.as_ref().is_some_and(|s| !s.success);
    let not_run = c.view.snapshot.is_none();
    let relevant = !rows.is_empty()
        || match query.state {
            None => true,
            Some(TargetState::Down) => failing,
            Some(TargetState::Pending) => not_run,
            Some(TargetState::Up) => false,
        };
    if !relevant {
        return false;
    }
    // A big check lists what needs attention; the rest is one link away.
    let collapsed = query.check.is_none() && targets.len() > MAX_ROWS;
    let matching = rows.len();
    if collapsed {
        rows.retain(|&i| targets[i].state() != TargetState::Up);
    }
    let meta = &c.slot.meta;
    let link = query.link(("check", Some(&meta.name)));
    let _ = writeln!(
        out,
        "<section id=\"check-{}\"><h2><a href=\"{}\">{}</a> <span class=\"kind\">{} · every {}</span></h2>",
        Esc(&meta.name),
        Esc(&link),
        Esc(&meta.name),
        Esc(meta.kind),
        format_duration(meta.interval)
    );
    run_line(out, c.view.snapshot.as_deref(), meta.interval, now);
    let layout = Layout::of(meta.kind);
    if !rows.is_empty() {
        table(out, c, layout, &rows, now);
    }
    if rows.len() < matching {
        let _ = writeln!(
            out,
            "<p class=\"more\">{} up target{} not shown. <a href=\"{}\">Show all {} targets of {}</a></p>",
            matching - rows.len(),
            if matching - rows.len() == 1 { "" } else { "s" },
            Esc(&link),
            targets.len(),
            Esc(&meta.name)
        );
    } else if targets.is_empty() && !not_run {
        out.push_str("<p class=\"muted\">The last run reported no targets.</p>\n");
    }
    out.push_str("</section>\n");
    true
}

/// The check's last run: when, how long, and whether it succeeded (with its error).
fn run_line(out: &mut String, snap: Option<&Snapshot>, interval: Duration, now: f64) {
    let Some(s) = snap else {
        out.push_str("<p class=\"meta\"><span class=\"st pending\">… not yet run</span></p>\n");
        return;
    };
    out.push_str("<p class=\"meta\">");
    if s.success {
        out.push_str("<span class=\"st up\">✓ last run ok</span>");
    } else {
        out.push_str("<span class=\"st down\">✗ last run failed</span>");
    }
    let ago = (now - s.started_unix_ms as f64 / 1000.0).max(0.0);
    let _ = write!(
        out,
        " · {} UTC ({} ago, took {})",
        rfc3339_millis(s.started_unix_ms)
            .get(..19)
            .unwrap_or_default()
            .replace('T', " "),
        format_duration(Duration::from_secs(ago as u64)),
        seconds(s.duration.as_secs_f64())
    );
    // A run older than two intervals means the check is stuck or sonde was paused.
    if ago > 2.0 * interval.as_secs_f64() + 1.0 {
        out.push_str(" · <span class=\"warn\">stale</span>");
    }
    if let Some(e) = &s.error {
        out.push_str("<br><span class=\"why\">");
        escape(out, e);
        out.push_str("</span>");
    }
    out.push_str("</p>\n");
}

fn table(out: &mut String, c: &Checked, layout: Layout, rows: &[usize], now: f64) {
    out.push_str("<table><thead><tr>");
    for col in layout.columns() {
        let _ = write!(out, "<th>{col}</th>");
    }
    out.push_str("</tr></thead><tbody>\n");
    let targets = c.targets();
    for &i in rows {
        row(out, &targets[i], c.view.history(i), layout, now);
    }
    out.push_str("</tbody></table>\n");
}

/// One target's row; every cell but the first carries its column name for the
/// narrow layout, where rows become cards.
fn row(out: &mut String, t: &TargetReport, h: Option<&History>, layout: Layout, now: f64) {
    let state = t.state();
    let _ = write!(
        out,
        "<tr data-state=\"{}\"><td class=\"t\">",
        state.as_str()
    );
    escape(out, &t.target);
    if let Some(d) = &t.detail {
        out.push_str("<div class=\"sub\">");
        escape(out, d);
        out.push_str("</div>");
    }
    out.push_str("</td>");
    match layout {
        Layout::Http => {
            state_cell(out, t, "State");
            out.push_str("<td class=\"num\" data-l=\"Code\">");
            match t.status_code {
                0 => out.push('—'),
                code => push_u32(out, u32::from(code)),
            }
            out.push_str("</td><td class=\"num\" data-l=\"Latency\">");
            match t.duration_ms {
                Some(ms) => out.push_str(&millis(ms)),
                None => out.push('—'),
            }
            out.push_str("</td>");
            spark_cell(out, h, true);
            out.push_str("<td data-l=\"Certificate\">");
            match t.cert_not_after {
                Some(at) => cert_days(out, at, now),
                None => out.push('—'),
            }
            out.push_str("</td>");
        }
        Layout::Image | Layout::Container | Layout::Other => {
            state_cell(
                out,
                t,
                if layout == Layout::Other {
                    "State"
                } else {
                    "Status"
                },
            );
            spark_cell(out, h, true);
        }
        Layout::Sensor => {
            sensor_cells(out, t);
            state_cell(out, t, "State");
            spark_cell(out, h, false);
        }
        Layout::Repository => {
            out.push_str("<td class=\"num\" data-l=\"Pulls\">");
            match t.pulls {
                Some(p) => out.push_str(&grouped(p)),
                None => out.push('—'),
            }
            out.push_str("</td>");
            state_cell(out, t, "State");
        }
    }
    out.push_str("</tr>\n");
}

/// The state in words (the kind's status word when it has one) and why it is down.
fn state_cell(out: &mut String, t: &TargetReport, label: &str) {
    let state = t.state();
    let (mark, class) = match state {
        TargetState::Up => ("✓", "up"),
        TargetState::Down => ("✗", "down"),
        TargetState::Pending => ("…", "pending"),
    };
    let _ = write!(
        out,
        "<td data-l=\"{label}\"><span class=\"st {class}\">{mark} "
    );
    match (state, t.status) {
        (TargetState::Pending, _) => out.push_str("not yet run"),
        (_, Some(word)) => escape(out, &word.replace('_', " ")),
        (_, None) => out.push_str(state.as_str()),
    }
    out.push_str("</span>");
    let why = match (t.error, &t.cause) {
        (Some(e), Some(c)) => Some(format!("{e}: {c}")),
        (Some(e), None) => Some(e.to_string()),
        (None, Some(c)) => Some(c.clone()),
        (None, None) => None,
    };
    // A cause on a target that is up is a note (an alarm flag below the critical one).
    if let Some(why) = why {
        out.push_str("<div class=\"why\">");
        escape(out, &why);
        out.push_str("</div>");
    }
    out.push_str("</td>");
}

/// A sensor's value, max and crit; the value is marked at or over a limit.
fn sensor_cells(out: &mut String, t: &TargetReport) {
    let Some(r) = &t.reading else {
        out.push_str(
            "<td data-l=\"Value\">—</td><td data-l=\"Max\">—</td><td data-l=\"Crit\">—</td>",
        );
        return;
    };
    let class = if r.crit.is_some_and(|c| r.value >= c) {
        "num crit"
    } else if r.max.is_some_and(|m| r.value >= m) {
        "num warn"
    } else {
        "num"
    };
    let _ = write!(
        out,
        "<td class=\"{class}\" data-l=\"Value\">{} {}</td>",
        reading(r.value),
        Esc(r.unit)
    );
    for (label, limit) in [("Max", r.max), ("Crit", r.crit)] {
        let _ = write!(out, "<td class=\"num\" data-l=\"{label}\">");
        match limit {
            Some(v) => {
                let _ = write!(out, "{} {}", reading(v), Esc(r.unit));
            }
            None => out.push('—'),
        }
        out.push_str("</td>");
    }
}

fn spark_cell(out: &mut String, h: Option<&History>, from_zero: bool) {
    out.push_str("<td data-l=\"Last 60\">");
    match h.filter(|h| !h.is_empty()) {
        Some(h) => sparkline(out, h, from_zero),
        None => out.push_str("<span class=\"muted\">no results yet</span>"),
    }
    out.push_str("</td>");
}

/// The history as an inline SVG: a bar per result, newest on the right; up bars in
/// the up colour, as high as their value (latency from zero, a reading within the
/// window's range), down bars full height in the down colour. The label says the same
/// in words for those who cannot tell the colours apart.
fn sparkline(out: &mut String, h: &History, from_zero: bool) {
    let values = h.points().filter(|p| p.up).filter_map(|p| p.value);
    let (lo, hi) = values.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let lo = if from_zero { lo.min(0.0) } else { lo };
    let span = hi - lo;
    let (mut up, mut down) = (String::new(), String::new());
    let (mut ups, mut downs) = (0, 0);
    let n = h.len();
    for (k, p) in h.points().enumerate() {
        let x = (SPARK_W - 2 * (n - k) + 1) as u32;
        let top = match p.value {
            Some(_) if !p.up => 0,
            // A bar is at least 2 units high so a fast result stays visible.
            Some(v) if span > 0.0 => {
                let height = 2.0 + (v - lo) / span * (SPARK_H - 2) as f32;
                SPARK_H - height.round().clamp(2.0, SPARK_H as f32) as u32
            }
            Some(_) => SPARK_H / 2,
            None => 0,
        };
        let path = if p.up {
            ups += 1;
            &mut up
        } else {
            downs += 1;
            &mut down
        };
        path.push('M');
        push_u32(path, x);
        path.push(' ');
        push_u32(path, SPARK_H);
        path.push('V');
        push_u32(path, top);
    }
    let _ = write!(
        out,
        "<svg class=\"sp\" viewBox=\"0 0 {SPARK_W} {SPARK_H}\" width=\"{SPARK_W}\" height=\"{SPARK_H}\" \
         role=\"img\" aria-label=\"last {n} results: {ups} up, {downs} down\"><title>last {n} results: {ups} up, {downs} down</title>\
         <rect width=\"{SPARK_W}\" height=\"{SPARK_H}\"/>"
    );
    for (class, d) in [("u", up), ("d", down)] {
        if !d.is_empty() {
            let _ = write!(out, "<path class=\"{class}\" d=\"{d}\"/>");
        }
    }
    out.push_str("</svg>");
}

/// Days left on a certificate, marked under [`CERT_WARN_DAYS`] and
/// [`CERT_URGENT_DAYS`] in words as well as colour; the date in the tooltip.
fn cert_days(out: &mut String, not_after: i64, now: f64) {
    let days = (not_after as f64 - now) / 86_400.0;
    let date = rfc3339_millis(u64::try_from(not_after).unwrap_or(0).saturating_mul(1000));
    let date = date.get(..10).unwrap_or_default();
    let whole = days.abs().floor() as u64;
    let unit = if whole == 1 { "day" } else { "days" };
    if days < 0.0 {
        let _ = write!(
            out,
            "<span class=\"crit\" title=\"{date}\">expired {whole} {unit} ago</span>"
        );
    } else if days < CERT_URGENT_DAYS {
        let _ = write!(
            out,
            "<span class=\"crit\" title=\"{date}\">{whole} {unit} left: renew now</span>"
        );
    } else if days < CERT_WARN_DAYS {
        let _ = write!(
            out,
            "<span class=\"warn\" title=\"{date}\">{whole} {unit} left: renew soon</span>"
        );
    } else {
        let _ = write!(out, "<span title=\"{date}\">{whole} {unit} left</span>");
    }
}

/// `/api/v1/targets`: every selected check with its targets and their histories
/// (oldest first), as JSON text; `Err` names an unknown `?check=`.
///
/// Written straight from the snapshots through borrowed structs: building a
/// `serde_json::Value` first cost about 20 times the answer's size (3,000 targets with
/// their histories: a 10 MB answer took 0.8 s and 240 MB of memory).
pub fn json(store: &Store, query: &Query, now_unix_ms: u64) -> Result<Vec<u8>, String> {
    let slots = store.slots();
    let selected = select(&slots, query)?;
    let now = now_unix_ms as f64 / 1000.0;
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(b"{\"checks\":[");
    for (n, slot) in selected.into_iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        let c = Checked::of(slot);
        let snap = c.view.snapshot.as_ref();
        let check = CheckJson {
            kind: slot.meta.kind,
            last_run: snap.map(|s| rfc3339_millis(s.started_unix_ms)),
            name: &slot.meta.name,
            success: snap.map(|s| s.success),
            targets: TargetsJson {
                checked: &c,
                query,
                now,
            },
        };
        serde_json::to_writer(&mut out, &check).map_err(|e| e.to_string())?;
    }
    out.extend_from_slice(b"],\"status\":\"ok\"}");
    Ok(out)
}

/// One check of `/api/v1/targets` (keys in alphabetical order, as they always were).
#[derive(Serialize)]
struct CheckJson<'a> {
    kind: &'a str,
    last_run: Option<String>,
    name: &'a str,
    success: Option<bool>,
    targets: TargetsJson<'a>,
}

/// The selected targets of a check, serialized one by one.
struct TargetsJson<'a> {
    checked: &'a Checked<'a>,
    query: &'a Query,
    now: f64,
}

impl Serialize for TargetsJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let c = self.checked;
        serializer.collect_seq(
            c.targets()
                .iter()
                .enumerate()
                .filter(|(_, t)| self.query.wants(t.state()))
                .map(|(i, t)| TargetJson::of(t, c.view.history(i), self.now)),
        )
    }
}

#[derive(Serialize)]
struct TargetJson<'a> {
    cause: Option<&'a str>,
    cert_days_left: Option<f64>,
    cert_not_after: Option<String>,
    detail: Option<&'a str>,
    duration_seconds: Option<f64>,
    error: Option<&'a str>,
    history: HistoryJson<'a>,
    pulls: Option<f64>,
    reading: Option<ReadingJson<'a>>,
    state: &'a str,
    status: Option<&'a str>,
    status_code: u16,
    target: &'a str,
    value_unit: Option<&'a str>,
}

impl<'a> TargetJson<'a> {
    fn of(t: &'a TargetReport, h: Option<&'a History>, now: f64) -> TargetJson<'a> {
        let not_after_ms = |s: i64| u64::try_from(s).unwrap_or(0).saturating_mul(1000);
        TargetJson {
            cause: t.cause.as_deref(),
            cert_days_left: t
                .cert_not_after
                .map(|s| ((s as f64 - now) / 86_400.0 * 100.0).round() / 100.0),
            cert_not_after: t.cert_not_after.map(|s| rfc3339_millis(not_after_ms(s))),
            detail: t.detail.as_deref(),
            duration_seconds: t.duration_ms.map(|ms| ms / 1000.0),
            error: t.error,
            history: HistoryJson(h),
            pulls: t.pulls,
            reading: t.reading.as_ref().map(|r| ReadingJson {
                crit: r.crit,
                max: r.max,
                unit: r.unit,
                value: r.value,
            }),
            state: t.state().as_str(),
            status: t.status,
            status_code: t.status_code,
            target: &t.target,
            value_unit: if t.duration_ms.is_some() {
                Some("ms")
            } else {
                t.reading.as_ref().map(|r| r.unit)
            },
        }
    }
}

#[derive(Serialize)]
struct ReadingJson<'a> {
    crit: Option<f64>,
    max: Option<f64>,
    unit: &'a str,
    value: f64,
}

/// A target's history, oldest first.
struct HistoryJson<'a>(Option<&'a History>);

impl Serialize for HistoryJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            self.0
                .into_iter()
                .flat_map(History::points)
                .map(|p| PointJson {
                    state: if p.up { "up" } else { "down" },
                    time: rfc3339_millis(u64::from(p.unix_secs) * 1000),
                    value: p.value,
                }),
        )
    }
}

/// A point of a history. Its value is kept as an f32 and written as one: `1.236`, not
/// the `1.2359999418258667` it becomes as an f64.
#[derive(Serialize)]
struct PointJson {
    state: &'static str,
    time: String,
    value: Option<f32>,
}

/// Writes `text` HTML-escaped: safe in element content and in quoted attributes.
pub fn escape(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            _ => "&#39;",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
}

/// Text HTML-escaped when formatted with `{}`.
struct Esc<'a>(&'a str);

impl std::fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = String::with_capacity(self.0.len());
        escape(&mut s, self.0);
        f.write_str(&s)
    }
}

/// Appends a number without the formatting machinery: the sparklines write a few
/// hundred thousand of them for a big check.
fn push_u32(out: &mut String, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(char::from(d));
    }
}

/// A latency a person reads: `12 ms`, `1.25 s`.
fn millis(ms: f64) -> String {
    if ms < 1.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        seconds(ms / 1000.0)
    }
}

fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

/// A reading with at most three decimals and no trailing zeros.
fn reading(v: f64) -> String {
    let text = format!("{v:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.into()
    }
}

/// A count with thousands separators: `1,234,567`.
fn grouped(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::metrics::FamilySet;
    use crate::store::{CheckMeta, Reading};

    const NOW_MS: u64 = 1_800_000_000_000;

    fn request(query: &str) -> Request {
        Request {
            method: "GET".into(),
            path: "/".into(),
            query: query.into(),
            headers: vec![],
            keep_alive: false,
            body: vec![],
        }
    }

    fn snapshot(targets: Vec<TargetReport>) -> Snapshot {
        Snapshot {
            started_unix_ms: NOW_MS - 2_000,
            duration: Duration::from_millis(30),
            success: targets.iter().all(|t| t.up),
            error: None,
            families: FamilySet::new(),
            targets,
            runs_total: 1,
            failures_total: 0,
            last_success_unix_ms: None,
        }
    }

    fn url(i: usize, up: bool) -> TargetReport {
        TargetReport {
            target: format!("https://site-{i}.example/health"),
            up,
            status_code: if up { 200 } else { 503 },
            duration_ms: Some(10.0 + (i % 90) as f64),
            error: (!up).then_some("status_code"),
            cert_not_after: Some((NOW_MS / 1000) as i64 + 86_400 * (i % 100) as i64),
            ..TargetReport::default()
        }
    }

    /// A store with one check of `kind` whose `runs` runs reported `targets`.
    fn store(kind: &'static str, targets: Vec<TargetReport>, runs: usize) -> Store {
        let store = Store::new();
        let slot = store.new_slot(CheckMeta {
            name: "big".into(),
            kind,
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        });
        for _ in 0..runs {
            slot.publish(snapshot(targets.clone()));
        }
        store.set_slots(vec![slot]);
        store
    }

    fn page(store: &Store, query: &str) -> String {
        let q = Query::parse(&request(query)).unwrap();
        html(store, &q, "/metrics", NOW_MS).unwrap()
    }

    #[test]
    fn escaping_covers_every_character_that_ends_text_or_an_attribute() {
        let mut out = String::new();
        escape(&mut out, "a<b>&\"c'd");
        assert_eq!(out, "a&lt;b&gt;&amp;&quot;c&#39;d");
        assert_eq!(Esc("plain").to_string(), "plain");
    }

    #[test]
    fn bad_query_values_are_refused_with_the_allowed_ones() {
        let err = |q: &str| Query::parse(&request(q)).unwrap_err();
        assert_eq!(
            err("state=broken"),
            "state must be up, down or pending, not \"broken\""
        );
        assert!(
            err("refresh=-1").starts_with("refresh must be whole seconds from 0 (off) to 86400")
        );
        assert!(err("refresh=86401").contains("not \"86401\""));
        let q = Query::parse(&request("state=down&check=web&refresh=0")).unwrap();
        assert_eq!(q.state, Some(TargetState::Down));
        assert_eq!(q.check.as_deref(), Some("web"));
        assert_eq!(q.refresh, Some(0));
        assert_eq!(q.link(("state", None)), "?check=web&refresh=0");
        assert_eq!(
            Query::default().link(("check", Some("a b"))),
            "?check=a%20b"
        );
        let unknown = html(&store("http", vec![], 1), &q, "/metrics", NOW_MS);
        assert_eq!(unknown.unwrap_err(), "no check named \"web\"");
    }

    #[test]
    fn a_check_over_200_targets_lists_those_not_up_and_links_to_the_rest() {
        let targets: Vec<TargetReport> = (0..250).map(|i| url(i, !i.is_multiple_of(25))).collect();
        let store = store("http", targets, 2);
        let overview = page(&store, "");
        assert_eq!(overview.matches("<tr data-state=\"down\">").count(), 10);
        assert_eq!(overview.matches("<tr data-state=\"up\">").count(), 0);
        assert!(overview.contains(
            "240 up targets not shown. <a href=\"?check=big\">Show all 250 targets of big</a>"
        ));
        let all = page(&store, "check=big");
        assert_eq!(all.matches("<tr data-state=").count(), 250);
        assert!(!all.contains("not shown"));
        assert!(overview.contains(
            "targets: <span class=\"up\">240 up</span> · <span class=\"down\">10 down</span>"
        ));
    }

    #[test]
    fn a_sparkline_draws_latency_from_zero_and_failures_full_height() {
        let mut h = History::default();
        for (up, ms) in [(true, 10.0), (true, 20.0), (false, 5.0), (true, 0.0)] {
            h.push(crate::store::Point {
                unix_secs: 1,
                up,
                value: Some(ms),
            });
        }
        let mut out = String::new();
        sparkline(&mut out, &h, true);
        // Four results in the last four slots; 20 ms is full height, 10 ms half of
        // the 18 units above the 2-unit floor, 0 ms the floor, the failure all of it.
        assert!(
            out.contains("aria-label=\"last 4 results: 3 up, 1 down\""),
            "{out}"
        );
        assert!(
            out.contains("<path class=\"u\" d=\"M113 20V9M115 20V0M119 20V18\"/>"),
            "{out}"
        );
        assert!(out.contains("<path class=\"d\" d=\"M117 20V0\"/>"), "{out}");
    }

    #[test]
    fn sensors_show_value_max_and_crit_and_repositories_their_pulls() {
        let sensor = TargetReport {
            target: "coretemp temp1".into(),
            up: false,
            detail: Some("Package <id> 0".into()),
            cause: Some("101 °C is at or over crit 100 °C".into()),
            reading: Some(Reading {
                value: 101.0,
                max: Some(80.0),
                crit: Some(100.0),
                unit: "°C",
            }),
            ..TargetReport::default()
        };
        let p = page(&store("hwmon", vec![sensor], 1), "");
        assert!(
            p.contains("<div class=\"sub\">Package &lt;id&gt; 0</div>"),
            "{p}"
        );
        assert!(p.contains("<td class=\"num crit\" data-l=\"Value\">101 °C</td><td class=\"num\" data-l=\"Max\">80 °C</td><td class=\"num\" data-l=\"Crit\">100 °C</td>"), "{p}");
        assert!(
            p.contains("✗ down</span><div class=\"why\">101 °C is at or over crit 100 °C</div>")
        );
        let repo = TargetReport {
            target: "acme/api".into(),
            up: true,
            pulls: Some(1_234_567.0),
            ..TargetReport::default()
        };
        let p = page(&store("dockerhub", vec![repo], 1), "");
        assert!(p.contains("data-l=\"Pulls\">1,234,567</td>"), "{p}");
    }

    #[test]
    fn a_check_that_has_not_run_is_counted_and_found_by_the_pending_filter() {
        let store = store("http", vec![url(1, true)], 1);
        let waiting = store.new_slot(CheckMeta {
            name: "new<one>".into(),
            kind: "registry",
            interval: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
        });
        let mut slots: Vec<Arc<Slot>> = store.slots().iter().cloned().collect();
        slots.push(waiting);
        store.set_slots(slots);
        let p = page(&store, "");
        assert!(
            p.contains("<span class=\"pending\">1 check not yet run</span>"),
            "{p}"
        );
        assert!(p.contains("id=\"check-new&lt;one&gt;\""), "{p}");
        assert!(p.contains("<span class=\"st pending\">… not yet run</span>"));
        let pending = page(&store, "state=pending");
        assert!(
            pending.contains("id=\"check-new&lt;one&gt;\"")
                && !pending.contains("id=\"check-big\"")
        );
        let down = page(&store, "state=down");
        assert!(
            down.contains("<p class=\"empty\">No target is down.</p>"),
            "{down}"
        );
        // The refresh follows the shortest interval of any check.
        assert!(p.contains("<meta http-equiv=\"refresh\" content=\"30\">"));
    }

    #[test]
    fn a_page_holds_one_check_at_a_time() {
        let store = Arc::new(store("http", vec![url(1, true)], 1));
        let second = store.new_slot(CheckMeta {
            name: "second".into(),
            kind: "http",
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        });
        second.publish(snapshot(vec![url(2, false)]));
        let first = Arc::clone(&store.slots()[0]);
        store.set_slots(vec![Arc::clone(&first), Arc::clone(&second)]);
        // Something (a publish, another page after a reload swapped the order) holds
        // the second check while a page renders.
        let held = second.view();
        let renderer = {
            let store = Arc::clone(&store);
            std::thread::spawn(move || page(&store, ""))
        };
        std::thread::sleep(Duration::from_millis(100));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _view = first.view();
            let _ = tx.send(());
        });
        let free = rx.recv_timeout(Duration::from_secs(5));
        assert!(
            free.is_ok(),
            "the page kept the first check while waiting for the second"
        );
        drop(held);
        assert!(renderer.join().unwrap().contains("id=\"check-second\""));
    }

    /// The figure in the README: time to render the page of one check with 10,000
    /// targets whose histories are full (`?check=` lists them all). Printed, not
    /// asserted: run it with `--release` for the figure.
    #[test]
    fn ten_thousand_targets_render_time() {
        let targets: Vec<TargetReport> =
            (0..10_000).map(|i| url(i, !i.is_multiple_of(50))).collect();
        let store = store("http", targets, crate::store::HISTORY_LEN);
        let q = Query::parse(&request("check=big")).unwrap();
        let mut best = f64::INFINITY;
        let mut bytes = 0;
        for _ in 0..5 {
            let started = Instant::now();
            let p = html(&store, &q, "/metrics", NOW_MS).unwrap();
            best = best.min(started.elapsed().as_secs_f64() * 1000.0);
            bytes = p.len();
        }
        println!("status page: 10,000 targets rendered in {best:.1} ms ({bytes} bytes)");
        let slots = store.slots();
        let rows = Arc::clone(&slots[0]).latest().unwrap().targets.len();
        assert_eq!(rows, 10_000);
    }
}
