//! List-then-watch: each followed resource is listed once (paged), then watched from the
//! list's `resourceVersion`, so a cluster that does not change costs no requests
//! between runs and a new workload is known to the next run.
//!
//! A [`Reflector`] follows one resource in one scope (deployments of all namespaces,
//! say) on a thread of its own, started by the first run that asks for it (so
//! `--config.check` starts nothing). The thread keeps the current objects, already
//! turned into what the check needs, in a store the runs read under a lock: a run never
//! waits for the network once the first list is done. Watch events are JSON lines
//! (`{"type": "ADDED", "object": {...}}`, `MODIFIED`, `DELETED`, `BOOKMARK` with only
//! the new `resourceVersion`, `ERROR` with a Status), each read within a size cap and a
//! read timeout. A stream the server ends cleanly (its `timeoutSeconds` elapsed) is
//! watched again from the last `resourceVersion`, bookmarks included; a 410 Gone (the
//! version was compacted away) or a broken stream (an error, a timeout, an event that is
//! not JSON) is followed by a new list, since events may have been missed.
//!
//! An API server that refuses the watch itself (403: a ClusterRole written for an older
//! sonde, with `list` but not `watch`) gets its missing RBAC rule logged, and the
//! reflector falls back to what sonde did before: a list for every run.
//!
//! The check owns its reflectors and a [`Watches`] whose drop (the check removed or
//! changed by a reload, or the process ending) stops every thread: a flag they look at
//! between events and the shutdown of the agent their streams use, which interrupts a
//! read that is waiting.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::objects::ObjectKey;
use super::{ApiError, Client};
use crate::sync::{lock, wait_timeout};

/// Largest watch event read: an object's JSON (etcd stores at most 1.5 MB per object,
/// as protobuf), as large as a single object read with GET. An event becomes a JSON
/// tree of about 16 times its size while it is decoded.
const EVENT_LIMIT: usize = super::OBJECT_BODY_LIMIT as usize;
/// Shortest and longest `timeoutSeconds` asked for, as client-go's reflector picks it
/// (between 5 and 10 minutes), so streams of many reflectors do not all end together.
const WATCH_SECONDS: (u64, u64) = (300, 600);
/// Silence beyond the watch's own timeout after which a stream counts as broken.
const READ_GRACE: Duration = Duration::from_secs(60);
/// Longest wait between two failed lists.
const MAX_LIST_BACKOFF: Duration = Duration::from_secs(60);

/// Turns an object (from a list page or a watch event) into its key and, when the check
/// wants it, the item it keeps.
pub type Decode<T> = Arc<dyn Fn(Value) -> Result<(ObjectKey, Option<T>), String> + Send + Sync>;

/// One collection followed: where it is and how it reads in messages.
#[derive(Clone, Debug)]
pub struct Resource {
    /// The collection's path (`/apis/apps/v1/namespaces/team-a/deployments`).
    pub path: String,
    /// A label selector sent with every list and watch.
    pub selector: Option<String>,
    /// API group (`apps`, `""` for core), for the RBAC rule a 403 names.
    pub group: &'static str,
    /// Resource (`deployments`), for messages and the RBAC rule.
    pub resource: &'static str,
    /// `namespace team-a` or `all namespaces`.
    pub scope: String,
}

/// What a run reads from a reflector.
#[derive(Debug)]
pub struct View<T> {
    /// The current objects, in key order (those of the last good list while a list
    /// fails).
    pub items: Vec<T>,
    /// Why the objects may not be current: the last list failed, or the first has not
    /// finished in time.
    pub error: Option<String>,
}

/// Requests a reflector has made, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Lists (each of one or more pages).
    pub lists: u64,
    /// Watch requests.
    pub watches: u64,
}

/// What the threads of one check share: the API client, the agent their streams use,
/// and the flag that stops them.
pub struct Watches {
    client: Arc<Client>,
    agent: ureq::Agent,
    stop: Arc<Stop>,
    /// Longest a list page may take.
    page_timeout: Duration,
}

/// The stop flag, with a condition variable so threads waiting between tries wake at
/// once.
struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Stop {
    fn is_set(&self) -> bool {
        *lock(&self.stopped)
    }

    /// Waits `wait` unless stopped first; returns whether stopped.
    fn sleep(&self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        let mut stopped = lock(&self.stopped);
        while !*stopped {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            stopped = wait_timeout(&self.wake, stopped, left);
        }
        true
    }
}

impl std::fmt::Debug for Watches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watches").finish_non_exhaustive()
    }
}

impl Watches {
    /// Threads for `client`'s resources, each list page bounded by `page_timeout`.
    pub fn new(client: Arc<Client>, page_timeout: Duration) -> Result<Watches, String> {
        let agent = client.stream_agent()?;
        Ok(Watches {
            client,
            agent,
            stop: Arc::new(Stop {
                stopped: Mutex::new(false),
                wake: Condvar::new(),
            }),
            page_timeout,
        })
    }

    /// A reflector of `resource`, not yet started.
    pub fn reflector<T: Clone + Send + 'static>(
        &self,
        resource: Resource,
        decode: Decode<T>,
    ) -> Reflector<T> {
        Reflector {
            shared: Arc::new(Shared {
                resource,
                decode,
                client: Arc::clone(&self.client),
                agent: self.agent.clone(),
                stop: Arc::clone(&self.stop),
                page_timeout: self.page_timeout,
                store: Mutex::new(Store {
                    items: BTreeMap::new(),
                    resource_version: String::new(),
                    attempts: 0,
                    error: None,
                    counts: Counts::default(),
                    polling: false,
                    wanted: 0,
                }),
                changed: Condvar::new(),
            }),
            started: Mutex::new(false),
        }
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        *lock(&self.stop.stopped) = true;
        self.stop.wake.notify_all();
        // Interrupts the reads the streams are blocked in.
        self.agent.clone().shutdown();
    }
}

/// Follows one resource; see the module documentation.
pub struct Reflector<T> {
    shared: Arc<Shared<T>>,
    started: Mutex<bool>,
}

impl<T> std::fmt::Debug for Reflector<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reflector")
            .field("resource", &self.shared.resource)
            .finish_non_exhaustive()
    }
}

struct Shared<T> {
    resource: Resource,
    decode: Decode<T>,
    client: Arc<Client>,
    agent: ureq::Agent,
    stop: Arc<Stop>,
    page_timeout: Duration,
    store: Mutex<Store<T>>,
    /// Signalled when a list attempt finishes.
    changed: Condvar,
}

struct Store<T> {
    items: BTreeMap<ObjectKey, T>,
    resource_version: String,
    /// List attempts finished, good or not.
    attempts: u64,
    /// Why the last list failed; cleared by a good one.
    error: Option<String>,
    counts: Counts,
    /// Watching is forbidden: list when a run asks.
    polling: bool,
    /// Lists asked for by runs while polling.
    wanted: u64,
}

/// How a watch stream ended.
#[derive(Debug)]
enum Ended {
    /// The server closed it cleanly: watch again from the last version.
    Closed,
    /// 410 Gone: the version is too old; list again.
    Gone,
    /// 403: the watch verb is not granted; list for every run instead.
    Forbidden(String),
    /// Anything else: list again, as events may have been missed.
    Broken(String),
}

impl<T: Clone + Send + 'static> Reflector<T> {
    /// The current objects. The first call starts the thread and waits for its first
    /// list (until `deadline`).
    pub fn view(&self, deadline: Instant) -> View<T> {
        self.start();
        let shared = &self.shared;
        let mut store = lock(&shared.store);
        // Without a watch, each run asks for a list and waits for it.
        let target = if store.polling {
            store.wanted += 1;
            shared.changed.notify_all();
            store.attempts + 1
        } else {
            1
        };
        while store.attempts < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || shared.stop.is_set() {
                break;
            }
            store = wait_timeout(&shared.changed, store, left);
        }
        let error = match (&store.error, store.attempts) {
            (Some(e), _) => Some(e.clone()),
            (None, 0) => Some(format!(
                "listing {} in {}: not finished before the run's timeout",
                shared.resource.resource, shared.resource.scope
            )),
            (None, _) => None,
        };
        View {
            items: store.items.values().cloned().collect(),
            error,
        }
    }

    /// Requests made so far.
    pub fn counts(&self) -> Counts {
        lock(&self.shared.store).counts
    }

    fn start(&self) {
        let mut started = lock(&self.started);
        if *started {
            return;
        }
        let shared = Arc::clone(&self.shared);
        let name = format!("sonde-watch-{}", shared.resource.resource);
        let spawned = std::thread::Builder::new()
            .name(name)
            .stack_size(512 << 10)
            .spawn(move || shared.follow());
        match spawned {
            Ok(_) => *started = true,
            Err(e) => {
                // Tried again by the next run.
                let mut store = lock(&self.shared.store);
                store.error = Some(format!("cannot start a watch thread: {e}"));
                store.attempts += 1;
            }
        }
    }
}

impl<T: Clone + Send + 'static> Shared<T> {
    /// The thread: list, watch until the stream ends, again, until stopped.
    fn follow(&self) {
        let mut failures = 0u32;
        while !self.stop.is_set() {
            if self.list().is_err() {
                if self.stop.is_set() {
                    return;
                }
                failures += 1;
                let wait = Duration::from_secs(1 << failures.min(6)).min(MAX_LIST_BACKOFF);
                if self.stop.sleep(wait) {
                    return;
                }
                continue;
            }
            failures = 0;
            let stopped = if lock(&self.store).polling {
                self.wait_for_a_run()
            } else {
                self.watch_until_a_list_is_due()
            };
            if stopped {
                return;
            }
        }
    }

    /// Watches from the last list until the watch says to list again; true when
    /// stopped meanwhile.
    fn watch_until_a_list_is_due(&self) -> bool {
        loop {
            if self.stop.is_set() {
                return true;
            }
            let started = Instant::now();
            // A stream that ends (or expires) as soon as it starts, as from a proxy that
            // closes it or a server that answers every fresh watch 410, must not turn
            // into a stream of requests.
            let brief = || {
                started.elapsed() < Duration::from_secs(1)
                    && self.stop.sleep(Duration::from_secs(1))
            };
            match self.watch() {
                Ended::Closed => {
                    if brief() {
                        return true;
                    }
                }
                Ended::Forbidden(message) => {
                    log::error!(
                        "check={} msg=\"forbidden (403): sonde may not watch {} in {}; add the verb to the ClusterRole bound to its service account (until then each run lists them)\" rule=\"{}\" api_message={message:?}",
                        self.client.check,
                        self.resource.resource,
                        self.resource.scope,
                        super::rbac_rule(self.resource.group, self.resource.resource, "watch"),
                    );
                    lock(&self.store).polling = true;
                    return false;
                }
                Ended::Gone => {
                    log::info!(
                        "check={} msg=\"the watch's resourceVersion expired (410); listing {} again\" scope={:?}",
                        self.client.check,
                        self.resource.resource,
                        self.resource.scope
                    );
                    return brief();
                }
                Ended::Broken(why) => {
                    if self.stop.is_set() {
                        return true;
                    }
                    log::warn!(
                        "check={} msg=\"watch of {} broken; listing again\" scope={:?} error={why:?}",
                        self.client.check,
                        self.resource.resource,
                        self.resource.scope
                    );
                    // A server that breaks every stream at once must not be listed in a
                    // tight loop.
                    return self.stop.sleep(Duration::from_secs(1));
                }
            }
        }
    }

    /// Waits until a run asks for a list (while polling); returns whether stopped.
    fn wait_for_a_run(&self) -> bool {
        let mut store = lock(&self.store);
        let served = store.wanted;
        while store.wanted == served {
            if self.stop.is_set() {
                return true;
            }
            store = wait_timeout(&self.changed, store, Duration::from_millis(500));
        }
        false
    }

    /// Lists the resource and replaces the store with what it holds.
    fn list(&self) -> Result<(), ApiError> {
        let decode = |object: Value| (self.decode)(object);
        let listed = self
            .client
            .list_all(&self.resource, &decode, self.page_timeout, &|| {
                self.stop.is_set()
            });
        // Logged before a run waiting for this list can read its error (a list cut
        // short by the check going away is no news).
        if let Err(e) = &listed
            && !self.stop.is_set()
        {
            self.client.log_list_failure(&self.resource, e);
        }
        let mut store = lock(&self.store);
        store.attempts += 1;
        store.counts.lists += 1;
        let result = match listed {
            Ok((objects, version)) => {
                store.items = objects
                    .into_iter()
                    .filter_map(|(key, item)| Some((key, item?)))
                    .collect();
                store.resource_version = version;
                store.error = None;
                Ok(())
            }
            Err(e) => {
                store.error = Some(format!(
                    "listing {} in {}: {e}",
                    self.resource.resource, self.resource.scope
                ));
                Err(e)
            }
        };
        drop(store);
        self.changed.notify_all();
        result
    }

    /// Watches from the store's version until the stream ends.
    fn watch(&self) -> Ended {
        let version = {
            let mut store = lock(&self.store);
            store.counts.watches += 1;
            store.resource_version.clone()
        };
        let seconds = watch_seconds();
        let mut query = format!(
            "watch=1&resourceVersion={}&allowWatchBookmarks=true&timeoutSeconds={seconds}",
            crate::net::http::percent_encode(&version)
        );
        if let Some(selector) = &self.resource.selector {
            query.push_str("&labelSelector=");
            query.push_str(&crate::net::http::percent_encode(selector));
        }
        let read_timeout = Duration::from_secs(seconds) + READ_GRACE;
        let body = match self.client.stream(
            &self.agent,
            &format!("{}?{query}", self.resource.path),
            read_timeout,
            self.page_timeout,
        ) {
            Ok(body) => body,
            Err(ApiError::Status { code: 410, .. }) => return Ended::Gone,
            Err(ApiError::Status { code: 403, message }) => return Ended::Forbidden(message),
            Err(e) => return Ended::Broken(e.to_string()),
        };
        let mut reader = BufReader::new(body);
        loop {
            let line = match read_line(&mut reader, EVENT_LIMIT) {
                Ok(Some(line)) => line,
                Ok(None) => return Ended::Closed,
                Err(e) => return Ended::Broken(format!("reading the stream: {e}")),
            };
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if let Some(ended) = self.apply(&line) {
                return ended;
            }
        }
    }

    /// Applies one event to the store; `Some` when it ends the stream.
    fn apply(&self, line: &[u8]) -> Option<Ended> {
        let event: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => return Some(Ended::Broken(format!("an event is not JSON ({e})"))),
        };
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(object) = event.get("object").cloned() else {
            return Some(Ended::Broken(format!("a {kind:?} event without an object")));
        };
        let version = object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        match kind {
            "ADDED" | "MODIFIED" | "DELETED" => {
                let decoded = (self.decode)(object);
                let mut store = lock(&self.store);
                match decoded {
                    Ok((key, item)) => match (kind, item) {
                        ("DELETED", _) | (_, None) => {
                            store.items.remove(&key);
                        }
                        (_, Some(item)) => {
                            store.items.insert(key, item);
                        }
                    },
                    // One object sonde cannot read does not break the others.
                    Err(e) => log::debug!(
                        "check={} msg=\"watch event skipped\" resource={} error={e:?}",
                        self.client.check,
                        self.resource.resource
                    ),
                }
                if let Some(v) = version {
                    store.resource_version = v;
                }
                None
            }
            "BOOKMARK" => {
                if let Some(v) = version {
                    lock(&self.store).resource_version = v;
                }
                None
            }
            "ERROR" => {
                let code = object.get("code").and_then(Value::as_u64).unwrap_or(0);
                if code == 410 {
                    return Some(Ended::Gone);
                }
                let message = object
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let message: String = message.chars().take(300).collect();
                Some(Ended::Broken(format!("ERROR event {code}: {message}")))
            }
            other => Some(Ended::Broken(format!("unknown event type {other:?}"))),
        }
    }
}

/// A `timeoutSeconds` between the bounds, different for each stream.
fn watch_seconds() -> u64 {
    use std::hash::BuildHasher;
    let (low, high) = WATCH_SECONDS;
    let random = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    low + random % (high - low)
}

/// The next line of `reader` without its newline; `None` at the end of the stream. A
/// line longer than `cap` is an error, and is not read whole into memory.
fn read_line(reader: &mut impl BufRead, cap: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            // A stream cut in the middle of an event is not a clean end.
            return if line.is_empty() {
                Ok(None)
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the stream ended inside an event",
                ))
            };
        }
        let (taken, done) = match buffer.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buffer.len(), false),
        };
        if line.len() + taken > cap + 1 {
            return Err(std::io::Error::other(format!(
                "an event is larger than {} MiB",
                cap >> 20
            )));
        }
        line.extend_from_slice(&buffer[..taken]);
        reader.consume(taken);
        if done {
            line.pop();
            return Ok(Some(line));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_within_the_cap() {
        let mut r = BufReader::with_capacity(4, &b"{\"a\":1}\n\n{\"b\":2}\n"[..]);
        assert_eq!(read_line(&mut r, 64).unwrap().unwrap(), b"{\"a\":1}");
        assert_eq!(read_line(&mut r, 64).unwrap().unwrap(), b"");
        assert_eq!(read_line(&mut r, 64).unwrap().unwrap(), b"{\"b\":2}");
        assert_eq!(read_line(&mut r, 64).unwrap(), None);
        let mut r = BufReader::with_capacity(4, &b"0123456789\n"[..]);
        assert!(read_line(&mut r, 5).is_err());
        let mut r = BufReader::new(&b"{\"cut\":"[..]);
        assert!(read_line(&mut r, 64).is_err());
    }

    #[test]
    fn watch_timeouts_spread_between_five_and_ten_minutes() {
        for _ in 0..50 {
            let s = watch_seconds();
            assert!((300..600).contains(&s), "{s}");
        }
    }
}
