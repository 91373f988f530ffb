//! Probes spread over the interval, on a bounded pool of long-lived threads.
//!
//! A check of 10,000 URLs that probed them all at each tick would open thousands of
//! connections in the same second, every interval: a burst that the machine, the
//! network and the targets all feel, and that makes every probe late. Instead each
//! target gets a fixed place in the interval, from a hash of its name, so the probes
//! arrive as a steady stream, and the same target keeps its place across restarts and
//! replicas. A small pool of threads that live as long as the check runs them; starting
//! a thread per probe (or per run) costs more than a probe of a local target.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::shard::stable_hash;
use crate::sync::{lock, wait, wait_timeout};

/// Where in the spread window a target's probe starts: a fraction of the window in
/// [0, 1) from a 64-bit hash of its name, so it is the same wherever and whenever
/// sonde runs.
pub fn place(name: &str) -> f64 {
    // The top 53 bits make an exact f64 fraction.
    (stable_hash(name.as_bytes()) >> 11) as f64 / (1u64 << 53) as f64
}

/// The offset of a target at `place` in a window.
pub fn offset(place: f64, window: Duration) -> Duration {
    window.mul_f64(place.clamp(0.0, 1.0))
}

/// One run's work for the pool: items to do at their times, in the order of those
/// times. Threads take the next item as they come free, wait for its time and do it,
/// so no item is handed from thread to thread and an idle pool costs nothing.
pub struct Batch {
    /// When each item is due, earliest first.
    due: Vec<Instant>,
    next: AtomicUsize,
    left: Mutex<usize>,
    done: Condvar,
    stop: AtomicBool,
    work: Box<dyn Fn(usize, Instant) + Send + Sync>,
}

impl Batch {
    /// A batch of items due at `due` (sorted ascending); `work(i, due)` does item `i`.
    pub fn new(due: Vec<Instant>, work: Box<dyn Fn(usize, Instant) + Send + Sync>) -> Batch {
        let left = due.len();
        Batch {
            due,
            next: AtomicUsize::new(0),
            left: Mutex::new(left),
            done: Condvar::new(),
            stop: AtomicBool::new(false),
            work,
        }
    }

    /// Tells the threads to skip the items not started yet.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Waits until every item is done or `until`, calling `tick` at least every
    /// `every` meanwhile; true when every item is done.
    pub fn wait(&self, until: Instant, every: Duration, mut tick: impl FnMut()) -> bool {
        let mut left = lock(&self.left);
        loop {
            if *left == 0 {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            left = wait_timeout(&self.done, left, (until - now).min(every));
            drop(left);
            tick();
            left = lock(&self.left);
        }
    }

    /// Items due more than [`BEHIND`] ago that no thread has taken yet.
    fn overdue(&self, now: Instant) -> usize {
        let next = self.next.load(Ordering::Acquire).min(self.due.len());
        let Some(cutoff) = now.checked_sub(BEHIND) else {
            return 0;
        };
        // `due` is sorted: the overdue items are a prefix of what is left.
        self.due[next..].partition_point(|d| *d < cutoff)
    }

    fn exhausted(&self) -> bool {
        self.next.load(Ordering::Acquire) >= self.due.len()
    }

    /// Takes, waits for and does items until none is left; `behind` is called when an
    /// item is taken well after it was due (the pool is too small for the load).
    fn drain(&self, behind: &dyn Fn()) {
        loop {
            let i = self.next.fetch_add(1, Ordering::AcqRel);
            let Some(&due) = self.due.get(i) else {
                return;
            };
            if Instant::now().saturating_duration_since(due) > BEHIND {
                behind();
            }
            // Sleeping in short steps lets a stopped batch free its threads soon.
            loop {
                let now = Instant::now();
                if now >= due || self.stop.load(Ordering::Acquire) {
                    break;
                }
                std::thread::sleep((due - now).min(Duration::from_millis(250)));
            }
            if !self.stop.load(Ordering::Acquire) {
                (self.work)(i, due);
            }
            let mut left = lock(&self.left);
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.done.notify_all();
            }
        }
    }
}

/// How late an item may be taken before the pool starts another thread.
const BEHIND: Duration = Duration::from_millis(10);

/// Threads a pool starts with; it grows (up to its size) when items wait.
const FIRST_THREADS: usize = 2;

/// Threads that do the items of one batch after another, started when needed and ended
/// when the pool is dropped (the check replaced or sonde stopping). A pool starts with
/// a couple of threads and grows only while items wait for one: against fast targets
/// two threads keep up, and fewer threads mean fewer wake-ups and less contention.
pub struct Pool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    name: String,
    size: usize,
    state: Mutex<PoolState>,
    wake: Condvar,
}

struct PoolState {
    batch: Option<Arc<Batch>>,
    threads: usize,
    closed: bool,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.inner.name)
            .field("size", &self.inner.size)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool of at most `size` threads named `name` (threads start on demand).
    pub fn new(name: impl Into<String>, size: usize) -> Pool {
        Pool {
            inner: Arc::new(PoolInner {
                name: name.into(),
                size: size.max(1),
                state: Mutex::new(PoolState {
                    batch: None,
                    threads: 0,
                    closed: false,
                }),
                wake: Condvar::new(),
            }),
        }
    }

    /// Threads started so far.
    #[cfg(test)]
    pub fn threads(&self) -> usize {
        lock(&self.inner.state).threads
    }

    /// Hands `batch` to the pool. When no thread can be started at all, does the batch
    /// on the calling thread, so work is never lost.
    pub fn start(&self, batch: Arc<Batch>) {
        let mut st = lock(&self.inner.state);
        st.batch = Some(Arc::clone(&batch));
        let first = FIRST_THREADS.min(self.inner.size).min(batch.due.len());
        while st.threads < first && PoolInner::spawn(&self.inner) {
            st.threads += 1;
        }
        let none = st.threads == 0;
        drop(st);
        self.inner.wake.notify_all();
        if none {
            batch.drain(&|| {});
        }
    }
}

impl Pool {
    /// Starts a thread for each item of `batch` that waits for one (up to the pool's
    /// size): threads stuck on hanging targets must not hold up the others. The run
    /// calls this while it waits.
    pub fn keep_up(&self, batch: &Batch) {
        for _ in 0..batch.overdue(Instant::now()) {
            if !PoolInner::grow(&self.inner) {
                break;
            }
        }
    }
}

impl PoolInner {
    /// Starts one more thread if the pool is not at its size; false when it did not.
    fn grow(inner: &Arc<PoolInner>) -> bool {
        let mut st = lock(&inner.state);
        if st.threads < inner.size && !st.closed && PoolInner::spawn(inner) {
            st.threads += 1;
            drop(st);
            inner.wake.notify_all();
            return true;
        }
        false
    }

    /// Starts one thread; false when the system refused.
    fn spawn(inner: &Arc<PoolInner>) -> bool {
        let pool = Arc::clone(inner);
        std::thread::Builder::new()
            .name(inner.name.clone())
            .stack_size(256 << 10)
            .spawn(move || {
                loop {
                    let batch = {
                        let mut st = lock(&pool.state);
                        loop {
                            if st.closed {
                                return;
                            }
                            match &st.batch {
                                Some(b) if !b.exhausted() => break Arc::clone(b),
                                _ => st = wait(&pool.wake, st),
                            }
                        }
                    };
                    batch.drain(&|| {
                        PoolInner::grow(&pool);
                    });
                }
            })
            .is_ok()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let mut st = lock(&self.inner.state);
        st.closed = true;
        if let Some(b) = &st.batch {
            b.stop();
        }
        drop(st);
        self.inner.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_stable_spread_and_inside_the_window() {
        assert_eq!(place("http://a/"), place("http://a/"));
        assert_ne!(place("http://a/"), place("http://b/"));
        let places: Vec<f64> = (0..10_000)
            .map(|i| place(&format!("http://h/{i}")))
            .collect();
        assert!(places.iter().all(|p| (0.0..1.0).contains(p)));
        // Ten buckets of about 1,000 each: a hash that clumps would put many more in one.
        let mut buckets = [0usize; 10];
        for p in &places {
            buckets[(p * 10.0) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|b| (800..1200).contains(b)),
            "{buckets:?}"
        );
        assert_eq!(
            offset(0.5, Duration::from_secs(20)),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn the_pool_does_every_item_at_its_time_on_at_most_its_size_of_threads() {
        let pool = Pool::new("test-pool", 3);
        let start = Instant::now();
        let due: Vec<Instant> = (0..30)
            .map(|i| start + Duration::from_millis(i * 10))
            .collect();
        let busy = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let early = Arc::new(AtomicUsize::new(0));
        let (b, m, e) = (Arc::clone(&busy), Arc::clone(&most), Arc::clone(&early));
        let batch = Arc::new(Batch::new(
            due,
            Box::new(move |_, due| {
                if Instant::now() < due {
                    e.fetch_add(1, Ordering::SeqCst);
                }
                let now = b.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
                b.fetch_sub(1, Ordering::SeqCst);
            }),
        ));
        pool.start(Arc::clone(&batch));
        let mut ticks = 0;
        let all = batch.wait(
            start + Duration::from_secs(10),
            Duration::from_millis(50),
            || ticks += 1,
        );
        assert!(all, "the batch did not finish");
        assert!(ticks >= 3, "{ticks} ticks in about 300 ms");
        assert_eq!(
            early.load(Ordering::SeqCst),
            0,
            "an item ran before its time"
        );
        assert!(most.load(Ordering::SeqCst) <= 3);
        assert!(pool.threads() <= 3);
        // A second batch on the same threads.
        let count = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&count);
        let again = Arc::new(Batch::new(
            vec![Instant::now(); 5],
            Box::new(move |_, _| {
                c.fetch_add(1, Ordering::SeqCst);
            }),
        ));
        pool.start(Arc::clone(&again));
        assert!(again.wait(
            Instant::now() + Duration::from_secs(5),
            Duration::from_secs(1),
            || {}
        ));
        assert_eq!(count.load(Ordering::SeqCst), 5);
        assert!(pool.threads() <= 3);
    }

    #[test]
    fn a_stopped_batch_skips_what_it_has_not_started() {
        let pool = Pool::new("test-pool", 2);
        let count = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&count);
        let later = Instant::now() + Duration::from_secs(60);
        let batch = Arc::new(Batch::new(
            vec![later; 10],
            Box::new(move |_, _| {
                c.fetch_add(1, Ordering::SeqCst);
            }),
        ));
        pool.start(Arc::clone(&batch));
        batch.stop();
        let all = batch.wait(
            Instant::now() + Duration::from_secs(5),
            Duration::from_secs(1),
            || {},
        );
        assert!(all, "stopped items still count as done");
        assert_eq!(count.load(Ordering::SeqCst), 0);
    }

    /// Items stuck on a slow target do not hold up the rest: the pool grows while items
    /// wait for a thread.
    #[test]
    fn items_stuck_on_slow_targets_do_not_hold_up_the_others() {
        let pool = Pool::new("test-pool", 8);
        let start = Instant::now();
        let fast_done = Arc::new(Mutex::new(None));
        let f = Arc::clone(&fast_done);
        let batch = Arc::new(Batch::new(
            vec![start; 6],
            Box::new(move |i, _| {
                if i < 4 {
                    std::thread::sleep(Duration::from_millis(1500));
                } else {
                    *f.lock().unwrap() = Some(start.elapsed());
                }
            }),
        ));
        pool.start(Arc::clone(&batch));
        let all = batch.wait(
            start + Duration::from_secs(10),
            Duration::from_millis(20),
            || pool.keep_up(&batch),
        );
        assert!(all);
        let fast = fast_done.lock().unwrap().unwrap();
        assert!(
            fast < Duration::from_millis(1000),
            "the fast items waited {fast:?}"
        );
        assert!(pool.threads() <= 8);
    }
}
