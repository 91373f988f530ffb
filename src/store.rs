//! What checks publish: one immutable [`Snapshot`] per check, swapped in whole.
//!
//! A check's run builds a new snapshot and [`Slot::publish`] replaces the previous one
//! under a short lock, so a scrape sees either the old run or the new one, never a mix.
//! Every publish bumps a generation counter that lets `exposition.rs` cache its output.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use crate::metrics::FamilySet;
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

/// One target's latest result, for the JSON endpoints (`/queryurl`).
#[derive(Clone, Debug, PartialEq)]
pub struct TargetReport {
    /// The target as labelled (a URL without credentials).
    pub target: String,
    /// Whether it met every condition.
    pub up: bool,
    /// Final HTTP status; 0 without a response.
    pub status_code: u16,
    /// How long the probe took, in milliseconds.
    pub duration_ms: f64,
    /// Why it failed, when it did: a short reason (`tls`).
    pub error: Option<&'static str>,
    /// The failure in words a person can act on ("certificate expired at ...").
    pub cause: Option<String>,
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
    /// Per-target results for the JSON endpoints.
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
    generation: Arc<AtomicU64>,
}

impl Slot {
    /// The latest snapshot, if the check has completed a run.
    pub fn latest(&self) -> Option<Arc<Snapshot>> {
        lock(&self.latest).clone()
    }

    /// Replaces the latest snapshot at once.
    pub fn publish(&self, snapshot: Snapshot) {
        *lock(&self.latest) = Some(Arc::new(snapshot));
        self.generation.fetch_add(1, Ordering::Release);
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
        }
    }
}

impl Store {
    /// An empty store whose config load succeeded now.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new slot bound to this store (not listed until [`Store::set_slots`]).
    pub fn new_slot(&self, meta: CheckMeta) -> Arc<Slot> {
        Arc::new(Slot {
            meta,
            latest: Mutex::new(None),
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
        let all_ran = self.slots().iter().all(|s| s.latest().is_some());
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
