//! A thread per check: start-up run, fixed-rate ticks with jitter, timeouts, shutdown.
//!
//! The scheduling thread only keeps time; each run executes on a thread of its own, so
//! a run that overruns its timeout is declared failed on time even if the kind's code
//! is stuck, and a slow check never delays another. A run still busy at the next tick
//! makes that tick fail instead of piling up threads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::checks::{Check, RunContext, RunOutput};
use crate::checks::{CheckConfig, LoadedCheck};
use crate::store::{Slot, Snapshot, Store};
use crate::units::{format_duration, unix_ms};

/// Extra time a run gets past its deadline to hand in results before it counts as stuck.
const GRACE: Duration = Duration::from_millis(500);

/// Longest start-up jitter.
const MAX_JITTER: Duration = Duration::from_millis(500);

enum Event {
    Done(u64, RunOutput),
    /// What a run spreading its probes found so far.
    Progress(u64, RunOutput),
    Stop,
}

struct Running {
    config: CheckConfig,
    slot: Arc<Slot>,
    tx: mpsc::Sender<Event>,
    cancel: Arc<AtomicBool>,
    /// None when the system refused the thread: the check counts as ended, so the
    /// next reload tries again.
    handle: Option<JoinHandle<()>>,
}

impl Running {
    fn ended(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

/// The set of running checks.
pub struct Scheduler {
    running: Vec<Running>,
}

impl Scheduler {
    /// Starts every check; with `once`, each runs a single time and its thread ends.
    pub fn start(store: &Store, checks: Vec<LoadedCheck>, once: bool) -> Scheduler {
        let mut running = Vec::new();
        for loaded in checks {
            running.push(spawn(store, loaded, once));
        }
        store.set_slots(running.iter().map(|r| Arc::clone(&r.slot)).collect());
        Scheduler { running }
    }

    /// Replaces the running checks with `checks`; checks whose configuration did not
    /// change keep running untouched, with their counters.
    pub fn reload(&mut self, store: &Store, checks: Vec<LoadedCheck>) {
        let mut old: Vec<Option<Running>> = self.running.drain(..).map(Some).collect();
        for loaded in checks {
            let same = old.iter_mut().find(|r| {
                r.as_ref()
                    .is_some_and(|r| r.config == loaded.config && !r.ended())
            });
            match same.and_then(Option::take) {
                Some(kept) => self.running.push(kept),
                None => self.running.push(spawn(store, loaded, false)),
            }
        }
        for gone in old.into_iter().flatten() {
            gone.cancel.store(true, Ordering::Relaxed);
            let _ = gone.tx.send(Event::Stop);
        }
        store.set_slots(self.running.iter().map(|r| Arc::clone(&r.slot)).collect());
    }

    /// Waits until every scheduling thread has ended (used with `once`).
    pub fn wait(self) {
        for handle in self.running.into_iter().filter_map(|r| r.handle) {
            let _ = handle.join();
        }
    }

    /// Stops every check and waits at most `within` for their threads to end.
    pub fn stop(self, within: Duration) {
        let until = Instant::now() + within;
        for r in &self.running {
            r.cancel.store(true, Ordering::Relaxed);
            let _ = r.tx.send(Event::Stop);
        }
        while Instant::now() < until && self.running.iter().any(|r| !r.ended()) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn spawn(store: &Store, loaded: LoadedCheck, once: bool) -> Running {
    let slot = store.new_slot(loaded.config.meta.clone());
    let (tx, rx) = mpsc::channel();
    let cancel = Arc::new(AtomicBool::new(false));
    let timer = Timer {
        slot: Arc::clone(&slot),
        check: loaded.check,
        tx: tx.clone(),
        rx,
        cancel: Arc::clone(&cancel),
        busy: Arc::new(AtomicBool::new(false)),
        once,
    };
    let name = format!("sonde-check-{}", loaded.config.meta.name);
    let handle = std::thread::Builder::new()
        .name(name)
        .stack_size(128 << 10)
        .spawn(move || timer.run())
        .map_err(|e| refused(&slot, &e))
        .ok();
    Running {
        config: loaded.config,
        slot,
        tx,
        cancel,
        handle,
    }
}

/// Says in the check's slot (and the log) that its thread could not start, so
/// `sonde_check_up` reads 0 with the reason instead of the check silently not running.
fn refused(slot: &Slot, e: &std::io::Error) {
    let meta = &slot.meta;
    log::error!(
        "check={} kind={} msg=\"cannot start the check's thread\" error=\"{e}\"",
        meta.name,
        meta.kind
    );
    slot.publish_kept(Snapshot {
        started_unix_ms: unix_ms(SystemTime::now()),
        duration: Duration::ZERO,
        success: false,
        error: Some(format!("cannot start the check's thread: {e}")),
        families: Default::default(),
        targets: Vec::new(),
        runs_total: 1,
        failures_total: 1,
        last_success_unix_ms: None,
    });
}

/// The start-up delay of a check, fixed per name so restarts keep their phase.
fn jitter(name: &str, interval: Duration) -> Duration {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let span = (interval / 10).min(MAX_JITTER).as_millis() as u64;
    if span == 0 {
        Duration::ZERO
    } else {
        Duration::from_millis(hash % span)
    }
}

struct InFlight {
    id: u64,
    started: Instant,
    started_wall: SystemTime,
    deadline: Instant,
    /// How long the run spreads its probes (zero with `once`).
    spread: Duration,
}

struct Timer {
    slot: Arc<Slot>,
    check: Arc<dyn Check>,
    tx: mpsc::Sender<Event>,
    rx: mpsc::Receiver<Event>,
    cancel: Arc<AtomicBool>,
    /// True while a run thread is executing (it may outlive its deadline).
    busy: Arc<AtomicBool>,
    once: bool,
}

impl Timer {
    fn run(self) {
        let meta = &self.slot.meta;
        let mut next = if self.once {
            Instant::now()
        } else {
            Instant::now() + jitter(&meta.name, meta.interval)
        };
        let mut in_flight: Option<InFlight> = None;
        let mut run_id = 0u64;
        loop {
            let wake = in_flight.as_ref().map_or(next, |f| f.deadline + GRACE);
            match self
                .rx
                .recv_timeout(wake.saturating_duration_since(Instant::now()))
            {
                Ok(Event::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    self.cancel.store(true, Ordering::Relaxed);
                    return;
                }
                Ok(Event::Progress(id, output)) => {
                    if let Some(f) = in_flight.as_ref().filter(|f| f.id == id) {
                        self.publish_progress(f, output);
                    }
                }
                Ok(Event::Done(id, output)) => {
                    if let Some(f) = in_flight.take_if(|f| f.id == id) {
                        self.publish(&f, Ok(output));
                        if self.once {
                            return;
                        }
                    }
                    // Results of a run already declared failed are dropped.
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(f) = in_flight.take() {
                        let why = format!(
                            "the run exceeded its timeout of {}",
                            format_duration(meta.timeout)
                        );
                        self.publish(&f, Err(why));
                        if self.once {
                            return;
                        }
                        continue;
                    }
                    let now = Instant::now();
                    if now < next {
                        continue;
                    }
                    while next <= now {
                        next += meta.interval;
                    }
                    run_id += 1;
                    // The first run probes everything at once, so a started (or
                    // reloaded) check has data at once; later runs spread.
                    let spread = if self.once || run_id == 1 {
                        Duration::ZERO
                    } else {
                        self.check.spread(meta.interval, meta.timeout)
                    };
                    let flight = InFlight {
                        id: run_id,
                        started: now,
                        started_wall: SystemTime::now(),
                        deadline: now + spread + meta.timeout,
                        spread,
                    };
                    if self.busy.load(Ordering::Acquire) {
                        self.publish(&flight, Err("the previous run is still running".into()));
                        continue;
                    }
                    self.start_run(&flight);
                    in_flight = Some(flight);
                }
            }
        }
    }

    fn start_run(&self, flight: &InFlight) {
        let check = Arc::clone(&self.check);
        let tx = self.tx.clone();
        let cancel = Arc::clone(&self.cancel);
        let busy = Arc::clone(&self.busy);
        let (id, deadline, spread) = (flight.id, flight.deadline, flight.spread);
        busy.store(true, Ordering::Release);
        let spawned = std::thread::Builder::new()
            .name(format!("sonde-run-{}", self.slot.meta.name))
            .stack_size(512 << 10)
            .spawn(move || {
                let progress_tx = tx.clone();
                let progress = move |output: RunOutput| {
                    let _ = progress_tx.send(Event::Progress(id, output));
                };
                let ctx = RunContext {
                    deadline,
                    cancel: &cancel,
                    spread,
                    progress: &progress,
                };
                let output = check.run(&ctx);
                busy.store(false, Ordering::Release);
                let _ = tx.send(Event::Done(id, output));
            });
        if let Err(e) = spawned {
            self.busy.store(false, Ordering::Release);
            let _ = self.tx.send(Event::Done(
                id,
                RunOutput {
                    success: false,
                    error: Some(format!("cannot start the run: {e}")),
                    ..RunOutput::default()
                },
            ));
        }
    }

    /// Publishes what a run in progress found so far: its targets and families, with
    /// the run fields (times, success, counters) of the last finished run, or of this
    /// run so far when none has finished. The targets' histories get no entry: they
    /// record finished runs.
    fn publish_progress(&self, flight: &InFlight, output: RunOutput) {
        let previous = self.slot.latest();
        // Field by field: cloning the whole previous snapshot (`..(*p).clone()`) would
        // copy its families and targets only to drop them: a third copy of a large
        // check's results at the moment of the swap (10,000 URLs every 30 s: peak RSS
        // 72 MB with it, 55 MB without).
        let snapshot = match previous.as_deref() {
            Some(p) => Snapshot {
                started_unix_ms: p.started_unix_ms,
                duration: p.duration,
                success: p.success,
                error: p.error.clone(),
                families: output.families,
                targets: output.targets,
                runs_total: p.runs_total,
                failures_total: p.failures_total,
                last_success_unix_ms: p.last_success_unix_ms,
            },
            None => Snapshot {
                started_unix_ms: unix_ms(flight.started_wall),
                duration: flight.started.elapsed(),
                success: output.success,
                error: output.error,
                families: output.families,
                targets: output.targets,
                runs_total: 0,
                failures_total: 0,
                last_success_unix_ms: None,
            },
        };
        self.slot.publish_kept(snapshot);
    }

    /// Publishes a finished run, or a failed one (`Err`) that keeps the last values.
    fn publish(&self, flight: &InFlight, outcome: Result<RunOutput, String>) {
        let meta = &self.slot.meta;
        let latest = self.slot.latest();
        // The last finished run; a first run's progress snapshot is none.
        let previous = latest.clone().filter(|p| p.runs_total > 0);
        let fresh = outcome.is_ok();
        let (success, error, families, targets) = match outcome {
            Ok(out) => (out.success, out.error, out.families, out.targets),
            Err(why) => {
                let (families, targets) = latest
                    .as_ref()
                    .map(|p| (p.families.clone(), p.targets.clone()))
                    .unwrap_or_default();
                (false, Some(why), families, targets)
            }
        };
        let started_ms = unix_ms(flight.started_wall);
        let was_ok = previous.as_ref().is_none_or(|p| p.success);
        match (&error, success) {
            (_, true) if !was_ok => log::info!(
                "check={} kind={} msg=\"check recovered\"",
                meta.name,
                meta.kind
            ),
            (Some(e), false) if was_ok => {
                log::warn!(
                    "check={} kind={} msg=\"check failed\" error={e:?}",
                    meta.name,
                    meta.kind
                )
            }
            _ => log::debug!(
                "check={} kind={} msg=\"run finished\" success={success} duration={:?}",
                meta.name,
                meta.kind,
                flight.started.elapsed()
            ),
        }
        let snapshot = Snapshot {
            started_unix_ms: started_ms,
            duration: flight.started.elapsed(),
            success,
            error,
            families,
            targets,
            runs_total: previous.as_ref().map_or(0, |p| p.runs_total) + 1,
            failures_total: previous.as_ref().map_or(0, |p| p.failures_total) + u64::from(!success),
            last_success_unix_ms: if success {
                Some(started_ms)
            } else {
                previous.as_ref().and_then(|p| p.last_success_unix_ms)
            },
        };
        // A run that handed in nothing leaves no mark in the targets' histories.
        if fresh {
            self.slot.publish(snapshot);
        } else {
            self.slot.publish_kept(snapshot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{FamilySet, MetricType};
    use crate::store::CheckMeta;
    use std::sync::atomic::AtomicU64;

    struct Fake {
        runs: AtomicU64,
        sleep: Duration,
    }

    impl Check for Fake {
        fn run(&self, ctx: &RunContext) -> RunOutput {
            let n = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
            let until = Instant::now() + self.sleep;
            while Instant::now() < until && !ctx.cancel.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
            }
            let mut families = FamilySet::new();
            let id = families.family("fake_runs", "Runs.", MetricType::Gauge);
            families.sample(id, &[], n as f64);
            RunOutput {
                success: true,
                error: None,
                families,
                targets: vec![],
            }
        }
    }

    fn loaded(
        name: &str,
        interval_ms: u64,
        timeout_ms: u64,
        sleep_ms: u64,
    ) -> (LoadedCheck, Arc<Fake>) {
        let fake = Arc::new(Fake {
            runs: AtomicU64::new(0),
            sleep: Duration::from_millis(sleep_ms),
        });
        // Any kind's keys will do: the fake check never reads them.
        let spec = serde_saphyr::with_deserializer_from_str("{}", |de| {
            crate::checks::Spec::deserialize_kind("hwmon", de)
        });
        let config = CheckConfig {
            meta: CheckMeta {
                name: name.into(),
                kind: "http",
                interval: Duration::from_millis(interval_ms),
                timeout: Duration::from_millis(timeout_ms),
            },
            legacy_metrics: false,
            spec: spec.unwrap_or_else(|e| panic!("{e:?}")),
        };
        (
            LoadedCheck {
                config,
                check: Arc::clone(&fake) as Arc<dyn Check>,
            },
            fake,
        )
    }

    #[test]
    fn runs_at_start_then_at_a_fixed_rate() {
        let store = Store::new();
        let (check, fake) = loaded("a", 100, 50, 0);
        let s = Scheduler::start(&store, vec![check], false);
        std::thread::sleep(Duration::from_millis(560));
        s.stop(Duration::from_secs(1));
        let runs = fake.runs.load(Ordering::SeqCst);
        assert!((4..=7).contains(&runs), "{runs} runs in 560ms at 100ms");
        let snap = store.slots()[0].latest().unwrap();
        assert!(snap.success);
        assert_eq!(snap.runs_total, runs.min(snap.runs_total));
    }

    #[test]
    fn an_overrunning_run_fails_on_time_and_keeps_last_values() {
        let store = Store::new();
        let (check, _fake) = loaded("slow", 5_000, 100, 3_000);
        let started = Instant::now();
        let s = Scheduler::start(&store, vec![check], true);
        s.wait();
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_millis(1_500), "{elapsed:?}");
        let snap = store.slots()[0].latest().unwrap();
        assert!(!snap.success);
        assert!(
            snap.error
                .as_deref()
                .unwrap()
                .contains("exceeded its timeout of 100ms")
        );
    }

    #[test]
    fn a_check_whose_thread_was_refused_reports_why_and_starts_at_the_next_reload() {
        let store = Store::new();
        let (check, fake) = loaded("refused", 10_000, 1_000, 0);
        let slot = store.new_slot(check.config.meta.clone());
        refused(
            &slot,
            &std::io::Error::other("Resource temporarily unavailable"),
        );
        let snap = slot.latest().unwrap();
        assert!(!snap.success);
        assert_eq!((snap.runs_total, snap.failures_total), (1, 1));
        assert_eq!(
            snap.error.as_deref(),
            Some("cannot start the check's thread: Resource temporarily unavailable")
        );
        let (tx, _rx) = mpsc::channel();
        let mut s = Scheduler {
            running: vec![Running {
                config: check.config.clone(),
                slot,
                tx,
                cancel: Arc::new(AtomicBool::new(false)),
                handle: None,
            }],
        };
        s.reload(&store, vec![check]);
        let until = Instant::now() + Duration::from_secs(2);
        while fake.runs.load(Ordering::SeqCst) == 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(fake.runs.load(Ordering::SeqCst), 1);
        assert!(store.slots()[0].latest().unwrap().success);
        s.stop(Duration::from_secs(1));
    }

    #[test]
    fn stop_is_prompt_while_a_run_is_in_flight() {
        let store = Store::new();
        let (check, _fake) = loaded("hang", 10_000, 10_000, 20_000);
        let s = Scheduler::start(&store, vec![check], false);
        std::thread::sleep(Duration::from_millis(100));
        let t = Instant::now();
        s.stop(Duration::from_secs(2));
        assert!(t.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn reload_keeps_unchanged_checks_running() {
        let store = Store::new();
        let (a, fake_a) = loaded("a", 50, 20, 0);
        let (b, _) = loaded("b", 50, 20, 0);
        let mut s = Scheduler::start(&store, vec![a.clone(), b], false);
        std::thread::sleep(Duration::from_millis(200));
        let slot_a = Arc::clone(&store.slots()[0]);
        let (c, _) = loaded("c", 50, 20, 0);
        s.reload(&store, vec![a, c]);
        let names: Vec<String> = store.slots().iter().map(|s| s.meta.name.clone()).collect();
        assert_eq!(names, ["a", "c"]);
        assert!(Arc::ptr_eq(&slot_a, &store.slots()[0]));
        let before = fake_a.runs.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(200));
        assert!(fake_a.runs.load(Ordering::SeqCst) > before);
        s.stop(Duration::from_secs(1));
    }
}
