//! Snapshots plus self metrics become one valid text exposition.
//!
//! Families from every check are merged by name so each gets one HELP and one TYPE
//! line. The result, a [`Rendered`], is a list of pieces: the headers are its own, the
//! sample lines are borrowed from the snapshots it keeps alive, so a large output is never
//! held twice. It is cached until a check publishes or the config reloads (the store's
//! generation changes); `process_*` metrics and the web config's reload status are read
//! fresh on each scrape and appended.
//!
//! A body can also be read from any offset ([`BodySource::chunk_at`]), so the server
//! writes a large exposition to a slow client a piece at a time, without copying it.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::metrics::{FamilySet, MetricType, push_value, write_header};
use crate::store::{Slot, Snapshot, Store};
use crate::sync::lock;

const CHECK_SUCCESS: &str = "sonde_check_success";
const CHECK_SUCCESS_HELP: &str = "1 if the last run of the check succeeded, else 0.";
const CHECK_DURATION: &str = "sonde_check_duration_seconds";
const CHECK_DURATION_HELP: &str = "Duration of the last run of the check in seconds.";
const CHECK_LAST_RUN: &str = "sonde_check_last_run_timestamp_seconds";
const CHECK_LAST_RUN_HELP: &str = "Unix time the last run of the check started.";
const CHECK_LAST_SUCCESS: &str = "sonde_check_last_success_timestamp_seconds";
const CHECK_LAST_SUCCESS_HELP: &str =
    "Unix time the last successful run of the check started; 0 if none has succeeded.";
const CHECK_INTERVAL: &str = "sonde_check_interval_seconds";
const CHECK_INTERVAL_HELP: &str = "Configured interval of the check in seconds.";
const CHECK_RUNS: &str = "sonde_check_runs_total";
const CHECK_RUNS_HELP: &str = "Runs of the check since it was started.";
const CHECK_FAILURES: &str = "sonde_check_failures_total";
const CHECK_FAILURES_HELP: &str = "Runs of the check that did not succeed.";
const CHECK_TARGETS: &str = "sonde_check_targets";
const CHECK_TARGETS_HELP: &str = "Targets the check covered in its last run on this replica (URLs, images, containers, sensors, repositories).";
const SHARD_INFO: &str = "sonde_shard_info";
const SHARD_INFO_HELP: &str =
    "Which part of the targets this replica checks: replica index of count (--shard); always 1.";
const BUILD_INFO: &str = "sonde_build_info";
const BUILD_INFO_HELP: &str = "Version and revision sonde was built from; always 1.";
const RELOAD_OK: &str = "sonde_config_last_reload_successful";
const RELOAD_OK_HELP: &str = "1 if the last config load or reload succeeded, else 0.";
const RELOAD_OK_AT: &str = "sonde_config_last_reload_success_timestamp_seconds";
const RELOAD_OK_AT_HELP: &str = "Unix time of the last successful config load or reload.";
const WEB_RELOAD_OK: &str = "sonde_web_config_last_reload_successful";
const WEB_RELOAD_OK_HELP: &str = "1 if the last load of --web.config.file (at start or after it changed on disk) was applied, else 0.";

/// A body produced piece by piece (a large exposition), not held in one buffer.
pub trait BodySource: Send + Sync + std::fmt::Debug {
    /// Total length in bytes.
    fn len(&self) -> usize;
    /// Hands the body to `out` in pieces.
    fn write_to(&self, out: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()>;
    /// The bytes from `offset` to the end of the piece that holds it; empty at or past
    /// the end.
    fn chunk_at(&self, offset: usize) -> &[u8];
}

/// Version reported by `--version` and `sonde_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Source revision, stamped by build.rs from git when available.
pub const REVISION: &str = match option_env!("SONDE_REVISION") {
    Some(r) => r,
    None => "unknown",
};

/// Content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders and caches the exposition of a store.
#[derive(Debug)]
pub struct Exposition {
    store: Arc<Store>,
    cache: Mutex<Option<(u64, Arc<Rendered>)>>,
    /// Whether the last web config load was applied; `None` without a web config.
    web_config: Option<Arc<AtomicBool>>,
}

impl Exposition {
    /// An exposition of `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Exposition {
            store,
            cache: Mutex::new(None),
            web_config: None,
        }
    }

    /// Also reports `sonde_web_config_last_reload_successful` from `status`.
    pub fn with_web_config_status(mut self, status: Arc<AtomicBool>) -> Self {
        self.web_config = Some(status);
        self
    }

    /// Everything but the `process_*` metrics; rebuilt only when something changed.
    pub fn checks_part(&self) -> Arc<Rendered> {
        let mut cache = lock(&self.cache);
        let generation = self.store.generation();
        if let Some((g, rendered)) = cache.as_ref()
            && *g == generation
        {
            return Arc::clone(rendered);
        }
        let rendered = Arc::new(render_store(&self.store));
        *cache = Some((generation, Arc::clone(&rendered)));
        rendered
    }

    /// The full `/metrics` body with `live`: families that change with every request
    /// (the `/probe` counters), rendered by their owner for this scrape only, so they
    /// never invalidate the cached part.
    pub fn scrape_with(&self, live: String) -> Scrape {
        let mut fresh = live;
        if let Some(status) = &self.web_config {
            write_header(
                &mut fresh,
                WEB_RELOAD_OK,
                WEB_RELOAD_OK_HELP,
                MetricType::Gauge,
            );
            let ok = status.load(Ordering::Acquire);
            fresh.push_str(&format!("{WEB_RELOAD_OK} {}\n", u8::from(ok)));
        }
        fresh.push_str(&process_metrics());
        Scrape {
            checks: self.checks_part(),
            process: fresh,
        }
    }
}

/// A `/metrics` body: the cached part plus what this scrape rendered itself (the live
/// families, the web config's status and `process_*`).
#[derive(Debug)]
pub struct Scrape {
    checks: Arc<Rendered>,
    process: String,
}

impl BodySource for Scrape {
    fn len(&self) -> usize {
        self.checks.len() + self.process.len()
    }

    fn write_to(&self, out: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        self.checks.write_to(out)?;
        out(self.process.as_bytes())
    }

    fn chunk_at(&self, offset: usize) -> &[u8] {
        match offset.checked_sub(self.checks.len()) {
            None => self.checks.chunk_at(offset),
            Some(rest) => self.process.as_bytes().get(rest..).unwrap_or_default(),
        }
    }
}

/// Where a piece of sample lines lives.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// `snapshots[i]`'s family set.
    Snapshot(usize),
    /// sonde's own metrics.
    Own,
}

#[derive(Debug)]
enum Piece {
    /// HELP and TYPE lines.
    Header(String),
    /// The sample lines of family `family` of a source.
    Lines(Source, usize),
}

/// An exposition as pieces, the sample lines borrowed from the snapshots it holds.
#[derive(Debug)]
pub struct Rendered {
    snapshots: Vec<Arc<Snapshot>>,
    own: FamilySet,
    pieces: Vec<Piece>,
    /// Where each piece ends in the text, for reading from an offset.
    ends: Vec<usize>,
    len: usize,
}

impl Rendered {
    fn piece<'a>(&'a self, piece: &'a Piece) -> &'a str {
        match piece {
            Piece::Header(text) => text,
            Piece::Lines(source, index) => {
                let set = match source {
                    Source::Snapshot(i) => &self.snapshots[*i].families,
                    Source::Own => &self.own,
                };
                set.get(*index).map_or("", |f| f.lines.as_str())
            }
        }
    }

    /// Length of the text in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Hands the text to `out` piece by piece.
    pub fn write_to(&self, out: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        for piece in &self.pieces {
            out(self.piece(piece).as_bytes())?;
        }
        Ok(())
    }

    /// The bytes from `offset` to the end of the piece that holds it.
    pub fn chunk_at(&self, offset: usize) -> &[u8] {
        let i = self.ends.partition_point(|&end| end <= offset);
        let Some(piece) = self.pieces.get(i) else {
            return &[];
        };
        let start = self.ends[i] - self.piece(piece).len();
        self.piece(piece)
            .as_bytes()
            .get(offset - start..)
            .unwrap_or_default()
    }

    /// The whole text in one string (for `--once`).
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(self.len);
        for piece in &self.pieces {
            out.push_str(self.piece(piece));
        }
        out
    }
}

/// Merges every check's families and sonde's own metrics, sorted by name.
pub fn render_store(store: &Store) -> Rendered {
    let slots = store.slots();
    let snapshots: Vec<_> = slots.iter().map(|s| (Arc::clone(s), s.latest())).collect();
    let own = self_metrics(store, &snapshots);
    let published: Vec<Arc<Snapshot>> = snapshots.into_iter().filter_map(|(_, s)| s).collect();
    merge(published, own)
}

/// Every check's run counters and times, the build info and the reload status.
fn self_metrics(store: &Store, snapshots: &[(Arc<Slot>, Option<Arc<Snapshot>>)]) -> FamilySet {
    let mut own = FamilySet::new();
    let success = own.family(CHECK_SUCCESS, CHECK_SUCCESS_HELP, MetricType::Gauge);
    let duration = own.family(CHECK_DURATION, CHECK_DURATION_HELP, MetricType::Gauge);
    let last_run = own.family(CHECK_LAST_RUN, CHECK_LAST_RUN_HELP, MetricType::Gauge);
    let last_ok = own.family(
        CHECK_LAST_SUCCESS,
        CHECK_LAST_SUCCESS_HELP,
        MetricType::Gauge,
    );
    let interval = own.family(CHECK_INTERVAL, CHECK_INTERVAL_HELP, MetricType::Gauge);
    let runs = own.family(CHECK_RUNS, CHECK_RUNS_HELP, MetricType::Counter);
    let failures = own.family(CHECK_FAILURES, CHECK_FAILURES_HELP, MetricType::Counter);
    let targets = own.family(CHECK_TARGETS, CHECK_TARGETS_HELP, MetricType::Gauge);
    for (slot, snap) in snapshots {
        let labels = [("check", slot.meta.name.as_str()), ("kind", slot.meta.kind)];
        own.sample(interval, &labels, slot.meta.interval.as_secs_f64());
        // A first run still in progress has published its targets, not a run.
        let Some(snap) = snap.as_ref().filter(|s| s.runs_total > 0) else {
            own.sample(runs, &labels, 0.0);
            own.sample(failures, &labels, 0.0);
            continue;
        };
        own.sample(success, &labels, if snap.success { 1.0 } else { 0.0 });
        own.sample(duration, &labels, snap.duration.as_secs_f64());
        own.sample(last_run, &labels, snap.started_unix_ms as f64 / 1000.0);
        let last_success = snap
            .last_success_unix_ms
            .map_or(0.0, |ms| ms as f64 / 1000.0);
        own.sample(last_ok, &labels, last_success);
        own.sample(runs, &labels, snap.runs_total as f64);
        own.sample(failures, &labels, snap.failures_total as f64);
        own.sample(targets, &labels, snap.targets.len() as f64);
    }
    let shard = store.shard();
    let info = own.family(SHARD_INFO, SHARD_INFO_HELP, MetricType::Gauge);
    let (index, count) = (shard.index.to_string(), shard.count.to_string());
    own.sample(info, &[("count", &count), ("index", &index)], 1.0);
    let build = own.family(BUILD_INFO, BUILD_INFO_HELP, MetricType::Gauge);
    own.sample(build, &[("revision", REVISION), ("version", VERSION)], 1.0);
    let reload = store.reload_status();
    let ok = own.family(RELOAD_OK, RELOAD_OK_HELP, MetricType::Gauge);
    own.sample(ok, &[], if reload.successful { 1.0 } else { 0.0 });
    let ok_at = own.family(RELOAD_OK_AT, RELOAD_OK_AT_HELP, MetricType::Gauge);
    own.sample(ok_at, &[], reload.last_success_unix_ms as f64 / 1000.0);
    own
}

/// Merges the checks' families and sonde's own by name: one HELP and TYPE line per
/// family, its sample lines borrowed from wherever they were rendered.
fn merge(published: Vec<Arc<Snapshot>>, own: FamilySet) -> Rendered {
    // name -> (help, type, where its sample lines are)
    let mut merged: BTreeMap<&str, (&str, MetricType, Vec<Piece>)> = BTreeMap::new();
    let sets = published
        .iter()
        .enumerate()
        .map(|(i, s)| (Source::Snapshot(i), &s.families))
        .chain(std::iter::once((Source::Own, &own)));
    for (source, set) in sets {
        for (index, family) in set.indexed() {
            let entry = merged
                .entry(family.name.as_ref())
                .or_insert_with(|| (family.help.as_ref(), family.mtype, Vec::new()));
            if entry.1 == family.mtype {
                entry.2.push(Piece::Lines(source, index));
            } else {
                log::warn!(
                    "msg=\"metric family has two types; dropping the second\" family={}",
                    family.name
                );
            }
        }
    }
    let mut pieces = Vec::with_capacity(merged.len() * 2);
    for (name, (help, mtype, parts)) in merged {
        let mut header = String::new();
        write_header(&mut header, name, help, mtype);
        pieces.push(Piece::Header(header));
        pieces.extend(parts);
    }
    let mut rendered = Rendered {
        snapshots: published,
        own,
        pieces,
        ends: Vec::new(),
        len: 0,
    };
    let mut end = 0;
    let ends = rendered
        .pieces
        .iter()
        .map(|p| {
            end += rendered.piece(p).len();
            end
        })
        .collect();
    rendered.ends = ends;
    rendered.len = end;
    rendered
}

/// The standard `process_*` metrics of this process, read from /proc.
pub fn process_metrics() -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, mtype: MetricType, value: f64| {
        write_header(&mut out, name, help, mtype);
        out.push_str(name);
        out.push(' ');
        push_value(&mut out, value);
        out.push('\n');
    };
    if let Some(stat) = read_self_stat() {
        gauge(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            MetricType::Counter,
            stat.cpu_seconds,
        );
        gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            MetricType::Gauge,
            stat.rss_bytes,
        );
        if let Some(start) = stat.start_time_seconds {
            gauge(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                MetricType::Gauge,
                start,
            );
        }
        gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            MetricType::Gauge,
            stat.vsize_bytes,
        );
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            MetricType::Gauge,
            entries.count() as f64,
        );
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        gauge(
            "process_max_fds",
            "Maximum number of open file descriptors.",
            MetricType::Gauge,
            limit.rlim_cur as f64,
        );
    }
    // SAFETY: as above.
    if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut limit) } == 0 {
        let max = limit.rlim_cur as f64;
        gauge(
            "process_virtual_memory_max_bytes",
            "Maximum amount of virtual memory available in bytes.",
            MetricType::Gauge,
            max,
        );
    }
    out
}

struct SelfStat {
    cpu_seconds: f64,
    rss_bytes: f64,
    vsize_bytes: f64,
    start_time_seconds: Option<f64>,
}

fn read_self_stat() -> Option<SelfStat> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may contain spaces and parentheses; fields follow the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    // SAFETY: sysconf has no preconditions; it only reads configuration values.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
    if ticks <= 0.0 || page <= 0.0 {
        return None;
    }
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    });
    Some(SelfStat {
        cpu_seconds: (field(11)? + field(12)?) / ticks,
        vsize_bytes: field(20)?,
        rss_bytes: field(21)? * page,
        start_time_seconds: boot.zip(field(19)).map(|(b, s)| b + s / ticks),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CheckMeta, Snapshot};
    use std::time::Duration;

    fn snapshot(families: FamilySet, success: bool) -> Snapshot {
        Snapshot {
            started_unix_ms: 1_700_000_000_500,
            duration: Duration::from_millis(250),
            success,
            error: None,
            families,
            targets: vec![],
            runs_total: 3,
            failures_total: 1,
            last_success_unix_ms: Some(1_700_000_000_000),
        }
    }

    #[test]
    fn families_shared_by_checks_get_one_header() {
        let store = Store::new();
        let mut slots = vec![];
        for name in ["a", "b"] {
            let slot = store.new_slot(CheckMeta {
                name: name.into(),
                kind: "http",
                interval: Duration::from_secs(30),
                timeout: Duration::from_secs(10),
            });
            let mut set = FamilySet::new();
            let id = set.family("sonde_http_up", "Up.", MetricType::Gauge);
            set.sample(id, &[("check", name)], 1.0);
            slot.publish(snapshot(set, name == "a"));
            slots.push(slot);
        }
        let pending = store.new_slot(CheckMeta {
            name: "c".into(),
            kind: "http",
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
        });
        slots.push(pending);
        store.set_slots(slots);
        let text = render_store(&store).to_text();
        assert_eq!(
            text.matches("# TYPE sonde_http_up gauge").count(),
            1,
            "{text}"
        );
        assert!(text.contains("sonde_http_up{check=\"a\"} 1\nsonde_http_up{check=\"b\"} 1\n"));
        assert!(text.contains("sonde_check_success{check=\"a\",kind=\"http\"} 1\n"));
        assert!(text.contains("sonde_check_success{check=\"b\",kind=\"http\"} 0\n"));
        assert!(!text.contains("sonde_check_success{check=\"c\""));
        assert!(text.contains("sonde_check_interval_seconds{check=\"c\",kind=\"http\"} 5\n"));
        assert!(text.contains(
            "sonde_check_last_run_timestamp_seconds{check=\"a\",kind=\"http\"} 1700000000.5\n"
        ));
        assert!(text.contains("sonde_config_last_reload_successful 1\n"));
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }

    #[test]
    fn the_cache_follows_the_generation() {
        let store = Arc::new(Store::new());
        let e = Exposition::new(Arc::clone(&store));
        let first = e.checks_part();
        assert!(Arc::ptr_eq(&first, &e.checks_part()));
        store.record_reload(false);
        let second = e.checks_part();
        assert!(!Arc::ptr_eq(&first, &second));
        let text = second.to_text();
        assert!(text.contains("sonde_config_last_reload_successful 0\n"));
        assert_eq!(text.len(), second.len());
        let mut streamed = Vec::new();
        e.scrape_with(String::new())
            .write_to(&mut |chunk| {
                streamed.extend_from_slice(chunk);
                Ok(())
            })
            .unwrap();
        assert!(streamed.starts_with(text.as_bytes()));
        assert!(
            String::from_utf8(streamed.clone())
                .unwrap()
                .contains("\nprocess_open_fds ")
        );
        // Read from offsets, as the server writes to a slow client: the same bytes.
        let scrape = e.scrape_with(String::new());
        let mut offset = 0;
        let mut pieced = Vec::new();
        while offset < scrape.len() {
            let chunk = scrape.chunk_at(offset);
            assert!(!chunk.is_empty(), "nothing at {offset} of {}", scrape.len());
            let take = chunk.len().min(7);
            pieced.extend_from_slice(&chunk[..take]);
            offset += take;
        }
        assert!(scrape.chunk_at(scrape.len()).is_empty());
        assert_eq!(pieced[..text.len()], streamed[..text.len()]);
    }

    #[test]
    fn the_web_config_status_is_in_every_scrape() {
        let store = Arc::new(Store::new());
        let status = Arc::new(AtomicBool::new(true));
        let e = Exposition::new(Arc::clone(&store)).with_web_config_status(Arc::clone(&status));
        let text = |e: &Exposition| {
            let mut out = Vec::new();
            e.scrape_with(String::new())
                .write_to(&mut |c| {
                    out.extend_from_slice(c);
                    Ok(())
                })
                .unwrap();
            String::from_utf8(out).unwrap()
        };
        assert!(text(&e).contains("\nsonde_web_config_last_reload_successful 1\n"));
        status.store(false, Ordering::Release);
        assert!(text(&e).contains("\nsonde_web_config_last_reload_successful 0\n"));
        assert!(!text(&Exposition::new(store)).contains("sonde_web_config"));
    }

    #[test]
    fn process_metrics_are_read() {
        let text = process_metrics();
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            assert!(
                text.contains(&format!("\n{name} ")),
                "{name} missing in {text}"
            );
        }
    }
}
