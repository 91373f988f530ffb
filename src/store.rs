//! What checks publish: one immutable [`Snapshot`] per check, swapped in whole, and the
//! last [`HISTORY_LEN`] results of each of its targets.
//!
//! A check's run builds a new snapshot and [`Slot::publish`] replaces the previous one
//! under a short lock, so a scrape sees either the old run or the new one, never a mix.
//! Every publish bumps a generation counter that lets `exposition.rs` cache its output.
//!
//! The history of a target is a fixed-size ring ([`History`], about 500 bytes), kept in
//! the order of the latest snapshot's targets so the status page reads both side by side
//! without a lookup; a target that leaves the check takes its history with it, so memory
//! is bounded by the targets the checks have now.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime};

use crate::metrics::FamilySet;
use crate::shard::Shard;
use crate::sync::{lock, read, write};
use crate::units::unix_ms;

/// What a check is, as configured.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckMeta {
    /// Value of the `check` label.
    pub name: String,
    /// The kind (`http`, `hwmon`, ...).
    pub kind: &'static str,
    /// Time between runs.
    pub interval: Duration,
    /// Longest a run may take.
    pub timeout: Duration,
}

/// One target's latest result, for the status page and the JSON endpoints.
///
/// Every kind fills the fields that mean something for it and leaves the others at
/// their default (`..TargetReport::default()`), so a new field touches no kind that
/// does not need it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TargetReport {
    /// The target as labelled (a URL without credentials, an image, `chip sensor`).
    pub target: String,
    /// Whether it met every condition (an image available, a sensor under its limits).
    pub up: bool,
    /// Not checked yet: there is no result to show, and `up` means nothing.
    pub pending: bool,
    /// Final HTTP status; 0 without a response.
    pub status_code: u16,
    /// How long the probe took, in milliseconds; `None` for kinds that do not time
    /// each target.
    pub duration_ms: Option<f64>,
    /// Why it failed, as a short reason (`connect`, `timeout`), when it did.
    pub error: Option<&'static str>,
    /// Why it failed, in words, when the kind knows more than the reason.
    pub cause: Option<String>,
    /// The kind's status word (an image's `available`, `absent`, `rate_limited`, ...).
    pub status: Option<&'static str>,
    /// A second line about the target (a container's image, a sensor's label).
    pub detail: Option<String>,
    /// Earliest NotAfter (Unix seconds) of the certificate chain the server presented.
    pub cert_not_after: Option<i64>,
    /// A sensor's reading against its limits.
    pub reading: Option<Reading>,
    /// A Docker Hub repository's pull count.
    pub pulls: Option<f64>,
}

impl TargetReport {
    /// Up, down or not checked yet.
    pub fn state(&self) -> TargetState {
        if self.pending {
            TargetState::Pending
        } else if self.up {
            TargetState::Up
        } else {
            TargetState::Down
        }
    }

    /// The number a person follows over time: the latency, else the sensor's reading.
    pub fn value(&self) -> Option<f64> {
        self.duration_ms.or(self.reading.as_ref().map(|r| r.value))
    }
}

/// A sensor's value and its limits, in the unit a person reads (°C, V, RPM, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    /// The current value.
    pub value: f64,
    /// The `max` limit, when the chip has one.
    pub max: Option<f64>,
    /// The `crit` limit, when the chip has one.
    pub crit: Option<f64>,
    /// The unit of all three.
    pub unit: &'static str,
}

/// A target's state in words a person and a filter use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetState {
    /// Met every condition.
    Up,
    /// Did not.
    Down,
    /// Not checked yet.
    Pending,
}

impl TargetState {
    /// Every state, in the order the status page counts them.
    pub const ALL: [TargetState; 3] = [TargetState::Up, TargetState::Down, TargetState::Pending];

    /// The word used in JSON and in `?state=`.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Up => "up",
            TargetState::Down => "down",
            TargetState::Pending => "pending",
        }
    }

    /// The state named by `?state=`.
    pub fn parse(word: &str) -> Option<TargetState> {
        TargetState::ALL.into_iter().find(|s| s.as_str() == word)
    }
}

/// Results a target's history keeps: the status page's sparkline and `/api/v1/targets`.
pub const HISTORY_LEN: usize = 60;

/// One result of a target, as its history keeps it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// When the run that produced it started (Unix seconds).
    pub unix_secs: u32,
    /// Whether the target was up.
    pub up: bool,
    /// The latency in milliseconds, or the sensor's reading ([`TargetReport::value`]).
    pub value: Option<f32>,
}

/// The last [`HISTORY_LEN`] results of one target, the oldest overwritten first.
///
/// Laid out column-wise with the states as bits, so a ring is 496 bytes on the stack
/// and nothing on the heap: seconds are precise enough for a person and `f32` keeps
/// latencies and readings to 7 digits.
#[derive(Clone, Debug, PartialEq)]
pub struct History {
    secs: [u32; HISTORY_LEN],
    values: [f32; HISTORY_LEN],
    /// Bit `i` set: result `i` was up.
    up: u64,
    /// Bit `i` set: result `i` has a value.
    valued: u64,
    /// Slot the next result goes to.
    next: u8,
    len: u8,
}

impl Default for History {
    fn default() -> Self {
        History {
            secs: [0; HISTORY_LEN],
            values: [0.0; HISTORY_LEN],
            up: 0,
            valued: 0,
            next: 0,
            len: 0,
        }
    }
}

impl History {
    /// Adds a result, dropping the oldest when the ring is full.
    pub fn push(&mut self, point: Point) {
        let i = usize::from(self.next);
        self.secs[i] = point.unix_secs;
        self.values[i] = point.value.unwrap_or(0.0);
        let bit = 1u64 << i;
        self.up = if point.up {
            self.up | bit
        } else {
            self.up & !bit
        };
        self.valued = if point.value.is_some() {
            self.valued | bit
        } else {
            self.valued & !bit
        };
        self.next = ((i + 1) % HISTORY_LEN) as u8;
        self.len = (usize::from(self.len) + 1).min(HISTORY_LEN) as u8;
    }

    /// How many results it holds (at most [`HISTORY_LEN`]).
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether it holds no result.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The results, oldest first.
    pub fn points(&self) -> impl ExactSizeIterator<Item = Point> + '_ {
        let len = self.len();
        let first = (usize::from(self.next) + HISTORY_LEN - len) % HISTORY_LEN;
        (0..len).map(move |k| {
            let i = (first + k) % HISTORY_LEN;
            let bit = 1u64 << i;
            Point {
                unix_secs: self.secs[i],
                up: self.up & bit != 0,
                value: (self.valued & bit != 0).then_some(self.values[i]),
            }
        })
    }
}

/// The published result of a check's latest run plus its lifetime counters.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// When the latest run started (Unix milliseconds).
    pub started_unix_ms: u64,
    /// How long the latest run took.
    pub duration: Duration,
    /// Whether the latest run succeeded.
    pub success: bool,
    /// Why it did not, in a few words.
    pub error: Option<String>,
    /// The kind's metrics.
    pub families: FamilySet,
    /// Per-target results for the status page and the JSON endpoints.
    pub targets: Vec<TargetReport>,
    /// Runs since this check was started.
    pub runs_total: u64,
    /// Runs that did not succeed.
    pub failures_total: u64,
    /// When a run last succeeded (Unix milliseconds).
    pub last_success_unix_ms: Option<u64>,
}

/// Where one check publishes.
#[derive(Debug)]
pub struct Slot {
    /// The check's configuration summary.
    pub meta: CheckMeta,
    latest: Mutex<Option<Arc<Snapshot>>>,
    /// One ring per target of `latest`, in its order. Locked before `latest` whenever
    /// both are, so a [`View`] sees the two as one.
    history: Mutex<Vec<History>>,
    generation: Arc<AtomicU64>,
}

impl Slot {
    /// The latest snapshot, if the check has completed a run.
    pub fn latest(&self) -> Option<Arc<Snapshot>> {
        lock(&self.latest).clone()
    }

    /// Replaces the latest snapshot at once and adds each target's result (all but the
    /// pending ones) to its history.
    pub fn publish(&self, snapshot: Snapshot) {
        self.swap(snapshot, true);
    }

    /// Replaces the latest snapshot of a run that produced no results of its own (it
    /// timed out and kept the last ones): the histories get no new entry.
    pub fn publish_kept(&self, snapshot: Snapshot) {
        self.swap(snapshot, false);
    }

    fn swap(&self, snapshot: Snapshot, record: bool) {
        // Holding the history lock keeps every other publish out, so `previous` stays
        // the latest until the swap below; scrapes only wait for the swap itself.
        let mut history = lock(&self.history);
        let previous = self.latest();
        let previous = previous.as_ref().map_or(&[][..], |p| p.targets.as_slice());
        let mut rings = realign(previous, std::mem::take(&mut *history), &snapshot.targets);
        if record {
            let unix_secs = u32::try_from(snapshot.started_unix_ms / 1000).unwrap_or(u32::MAX);
            for (ring, target) in rings.iter_mut().zip(&snapshot.targets) {
                if !target.pending {
                    ring.push(Point {
                        unix_secs,
                        up: target.up,
                        value: target.value().map(|v| v as f32),
                    });
                }
            }
        }
        *history = rings;
        *lock(&self.latest) = Some(Arc::new(snapshot));
        drop(history);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The latest snapshot together with its targets' histories, consistent with each
    /// other; publishing waits while the view is held, so hold it briefly.
    pub fn view(&self) -> View<'_> {
        let history = lock(&self.history);
        let snapshot = self.latest();
        View { snapshot, history }
    }

    /// Memory the histories take: (targets, bytes), counting each ring and the unused
    /// capacity of the vector that holds them.
    #[cfg(test)]
    pub fn history_bytes(&self) -> (usize, usize) {
        let history = lock(&self.history);
        (
            history.len(),
            history.capacity() * std::mem::size_of::<History>(),
        )
    }
}

/// The rings of `previous` targets rearranged for `next` ones: a target keeps its ring
/// by name, a new one starts empty, one that is gone loses it.
fn realign(
    previous: &[TargetReport],
    mut rings: Vec<History>,
    next: &[TargetReport],
) -> Vec<History> {
    rings.resize_with(previous.len(), History::default);
    let same_order = previous.len() == next.len()
        && previous.iter().zip(next).all(|(p, n)| p.target == n.target);
    if same_order {
        return rings;
    }
    let mut by_name: HashMap<&str, usize> = HashMap::with_capacity(previous.len());
    for (i, p) in previous.iter().enumerate() {
        by_name.entry(p.target.as_str()).or_insert(i);
    }
    let mut out = Vec::with_capacity(next.len());
    for n in next {
        let ring = by_name
            .remove(n.target.as_str())
            .map(|i| std::mem::take(&mut rings[i]))
            .unwrap_or_default();
        out.push(ring);
    }
    out
}

/// A check's latest snapshot and its targets' histories, read together.
pub struct View<'a> {
    /// The latest snapshot, if the check has completed a run.
    pub snapshot: Option<Arc<Snapshot>>,
    history: MutexGuard<'a, Vec<History>>,
}

impl View<'_> {
    /// The history of the snapshot's target number `i`.
    pub fn history(&self, i: usize) -> Option<&History> {
        self.history.get(i)
    }
}

/// Result of the latest config load or reload.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReloadStatus {
    /// Whether the latest attempt succeeded.
    pub successful: bool,
    /// When a load last succeeded (Unix milliseconds).
    pub last_success_unix_ms: u64,
}

/// Every check's slot, in config order.
#[derive(Debug)]
pub struct Store {
    slots: RwLock<Arc<Vec<Arc<Slot>>>>,
    generation: Arc<AtomicU64>,
    reload: Mutex<ReloadStatus>,
    ready: AtomicBool,
    /// Which part of the targets this replica checks (`--shard`).
    shard: Shard,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            slots: RwLock::new(Arc::new(Vec::new())),
            generation: Arc::new(AtomicU64::new(1)),
            reload: Mutex::new(ReloadStatus {
                successful: true,
                last_success_unix_ms: unix_ms(SystemTime::now()),
            }),
            ready: AtomicBool::new(false),
            shard: Shard::WHOLE,
        }
    }
}

impl Store {
    /// An empty store whose config load succeeded now.
    #[cfg(test)]
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store of a replica that checks `shard`'s part of the targets.
    pub fn sharded(shard: Shard) -> Self {
        Store {
            shard,
            ..Self::default()
        }
    }

    /// Which part of the targets this replica checks.
    pub fn shard(&self) -> Shard {
        self.shard
    }

    /// A new slot bound to this store (not listed until [`Store::set_slots`]).
    pub fn new_slot(&self, meta: CheckMeta) -> Arc<Slot> {
        Arc::new(Slot {
            meta,
            latest: Mutex::new(None),
            history: Mutex::new(Vec::new()),
            generation: Arc::clone(&self.generation),
        })
    }

    /// Replaces the list of checks (at start-up and on reload).
    pub fn set_slots(&self, slots: Vec<Arc<Slot>>) {
        *write(&self.slots) = Arc::new(slots);
        self.bump();
    }

    /// The checks in config order.
    pub fn slots(&self) -> Arc<Vec<Arc<Slot>>> {
        Arc::clone(&read(&self.slots))
    }

    /// Changes whenever anything a scrape shows changes.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Records the outcome of a config reload.
    pub fn record_reload(&self, successful: bool) {
        let mut status = lock(&self.reload);
        status.successful = successful;
        if successful {
            status.last_success_unix_ms = unix_ms(SystemTime::now());
        }
        drop(status);
        self.bump();
    }

    /// The latest reload outcome.
    pub fn reload_status(&self) -> ReloadStatus {
        *lock(&self.reload)
    }

    /// True once every check has completed its first run; stays true afterwards so a
    /// reload that adds a check does not take a serving instance out of rotation.
    pub fn is_ready(&self) -> bool {
        if self.ready.load(Ordering::Acquire) {
            return true;
        }
        // A snapshot of a first run still in progress does not count: the run has not
        // finished, and some of its targets are not checked yet.
        let all_ran = self
            .slots()
            .iter()
            .all(|s| s.latest().is_some_and(|l| l.runs_total > 0));
        if all_ran {
            self.ready.store(true, Ordering::Release);
        }
        all_ran
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(success: bool) -> Snapshot {
        Snapshot {
            started_unix_ms: 1,
            duration: Duration::from_millis(5),
            success,
            error: None,
            families: FamilySet::new(),
            targets: vec![],
            runs_total: 1,
            failures_total: 0,
            last_success_unix_ms: None,
        }
    }

    fn meta(name: &str) -> CheckMeta {
        CheckMeta {
            name: name.into(),
            kind: "http",
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
        }
    }

    fn target(name: &str, up: bool, ms: f64) -> TargetReport {
        TargetReport {
            target: name.into(),
            up,
            duration_ms: Some(ms),
            ..TargetReport::default()
        }
    }

    fn run(started_unix_ms: u64, targets: Vec<TargetReport>) -> Snapshot {
        Snapshot {
            started_unix_ms,
            targets,
            ..snapshot(true)
        }
    }

    /// (secs, up, value) of every point of target `i`, oldest first.
    fn points(slot: &Slot, i: usize) -> Vec<(u32, bool, Option<f32>)> {
        let view = slot.view();
        view.history(i)
            .map(|h| h.points().map(|p| (p.unix_secs, p.up, p.value)).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_ring_keeps_the_last_60_results_oldest_first() {
        let mut h = History::default();
        assert!(h.is_empty());
        for i in 1..=75u32 {
            h.push(Point {
                unix_secs: i,
                up: !i.is_multiple_of(3),
                value: (!i.is_multiple_of(5)).then_some(i as f32 / 2.0),
            });
        }
        assert_eq!(h.len(), HISTORY_LEN);
        let points: Vec<Point> = h.points().collect();
        assert_eq!(points.len(), 60);
        for (k, p) in points.iter().enumerate() {
            let i = k as u32 + 16;
            assert_eq!(p.unix_secs, i);
            assert_eq!(p.up, !i.is_multiple_of(3), "{i}");
            assert_eq!(
                p.value,
                (!i.is_multiple_of(5)).then_some(i as f32 / 2.0),
                "{i}"
            );
        }
    }

    #[test]
    fn a_target_keeps_its_history_by_name_and_loses_it_when_it_leaves() {
        let store = Store::new();
        let slot = store.new_slot(meta("web"));
        slot.publish(run(
            1_000,
            vec![target("a", true, 1.0), target("b", false, 2.0)],
        ));
        slot.publish(run(
            2_000,
            vec![target("a", true, 3.0), target("b", true, 4.0)],
        ));
        // b moves first, c is new, a stays; a pending target gets no entry.
        let pending = TargetReport {
            pending: true,
            ..target("c", false, 0.0)
        };
        slot.publish(run(
            3_500,
            vec![target("b", true, 5.0), pending, target("a", false, 6.0)],
        ));
        assert_eq!(
            points(&slot, 0),
            [
                (1, false, Some(2.0)),
                (2, true, Some(4.0)),
                (3, true, Some(5.0))
            ]
        );
        assert_eq!(points(&slot, 1), []);
        assert_eq!(
            points(&slot, 2),
            [
                (1, true, Some(1.0)),
                (2, true, Some(3.0)),
                (3, false, Some(6.0))
            ]
        );
        // A timed-out run keeps the last results and adds nothing.
        let kept = slot.latest().unwrap().targets.clone();
        slot.publish_kept(run(4_000, kept));
        assert_eq!(points(&slot, 0).len(), 3);
        // a leaves: its history is gone, and comes back empty.
        slot.publish(run(5_000, vec![target("b", true, 7.0)]));
        slot.publish(run(
            6_000,
            vec![target("a", true, 8.0), target("b", true, 9.0)],
        ));
        assert_eq!(points(&slot, 0), [(6, true, Some(8.0))]);
        assert_eq!(points(&slot, 1).len(), 5);
    }

    /// The figure in the README: bytes of history per target, with 10,000 targets
    /// whose rings are full.
    #[test]
    fn a_target_s_history_takes_under_a_kilobyte() {
        let store = Store::new();
        let slot = store.new_slot(meta("big"));
        let names: Vec<String> = (0..10_000)
            .map(|i| format!("https://host-{i}.example/"))
            .collect();
        for run_no in 0..(HISTORY_LEN as u64 + 5) {
            let targets = names
                .iter()
                .map(|n| target(n, !run_no.is_multiple_of(7), run_no as f64))
                .collect();
            slot.publish(run(run_no * 1000, targets));
        }
        let (targets, bytes) = slot.history_bytes();
        assert_eq!(targets, 10_000);
        let per_target = bytes as f64 / targets as f64;
        println!(
            "history: {per_target:.0} bytes per target ({} per ring, {targets} targets, {bytes} bytes)",
            std::mem::size_of::<History>()
        );
        assert!(per_target <= 1024.0, "{per_target} bytes per target");
        assert!(
            slot.view()
                .history(9_999)
                .is_some_and(|h| h.len() == HISTORY_LEN)
        );
    }

    #[test]
    fn publishing_bumps_the_generation_and_readiness_latches() {
        let store = Store::new();
        let meta = CheckMeta {
            name: "a".into(),
            kind: "http",
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
        };
        let slot = store.new_slot(meta.clone());
        store.set_slots(vec![Arc::clone(&slot)]);
        assert!(!store.is_ready());
        let before = store.generation();
        slot.publish(snapshot(false));
        assert!(store.generation() > before);
        assert!(store.is_ready());
        store.set_slots(vec![slot, store.new_slot(meta)]);
        assert!(store.is_ready(), "readiness must not flap on reload");
    }
}
