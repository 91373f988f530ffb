//! The OCI distribution (registry) client that `kind: registry` and
//! `kind: kubernetes_images` share: does an image's manifest exist, and if that cannot be
//! told, why not.
//!
//! One check of an image is `HEAD /v2/<name>/manifests/<reference>` with the four
//! manifest and index media types in `Accept` (a registry answers 404 for an index it
//! was not told the client accepts). A 401 challenge is answered once: `Bearer` fetches
//! a token from the realm (anonymously, or with Basic credentials from a docker config)
//! and caches it per registry, scope and credential until `expires_in`; `Basic` sends the
//! credentials. HEAD never counts against Docker Hub's pull quota, so a manifest is only
//! fetched with GET when a registry refuses HEAD itself (405).
//!
//! What could not be determined (401, 403, 429, 5xx, timeouts) is a [`Status`] of its
//! own, never "absent". A 5xx or a failed connection is retried `retries` times with
//! exponential backoff and jitter while the run has time; 401, 403, 404 and 429 never
//! are. A 429 stops every request to that registry until the time it names. Each
//! registry gets at most `max_concurrency_per_registry` requests at once.
//!
//! An image may be asked at several hosts, registry mirrors first (`oci/mirrors.rs`):
//! the first that has it answers; otherwise the first failure other than 404 does, else
//! the 404, as containerd decides.
//!
//! Credentials come from docker config files and pull secrets ([`Keyring`]), matched to
//! images the way the kubelet matches them. The YAML keys both image kinds accept are
//! declared here once ([`RegistryKeys`]), since they configure this client.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::problem::Spanned;
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess};
use ureq::http::{Method, Request, Response};

use crate::keys::SharedKeys;
use crate::net::http::{self as client, ConnectionKeys, Stage};
use crate::net::image_ref::ImageRef;
use crate::net::secret::Reread;
use crate::sync::{into_inner, lock, wait_timeout};

mod mirrors;

pub use mirrors::{Mirrors, MirrorsSpec, Source};

/// Every manifest and index media type a registry may serve for a tag or digest.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Most worker threads one run uses for registry requests.
const MAX_WORKERS: usize = 32;
/// Largest token response read.
const TOKEN_BODY_LIMIT: u64 = 1 << 20;
/// Largest manifest read by the GET fallback.
const MANIFEST_BODY_LIMIT: u64 = 4 << 20;
/// Entries read from one docker config at most: each image's lookup scans them, for
/// every workload that uses the config (a 40,000-entry pull secret shared by 2,000
/// workloads kept a run busy for 30 s).
const MAX_KEYRING_ENTRIES: usize = 1000;
/// Tokens cached per check at most (one per repository and credential): expired ones
/// are dropped first, then those expiring soonest, so a workload list that keeps naming
/// new repositories cannot grow the cache without end.
const MAX_CACHED_TOKENS: usize = 4096;
/// Longest token taken: a request carries it in a header, and the request head must
/// fit the 16 KiB output buffer.
const MAX_TOKEN_BYTES: usize = 8 << 10;
/// Registry hosts remembered per check at most (retry counts, 429 blocks, Basic
/// challenges); past it a new host is still asked, its retries counted under
/// `other`, so invented host names cannot grow the series without end.
const MAX_HOSTS: usize = 1024;
/// Lifetime of a token whose response has no `expires_in` (distribution's token spec).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Wait after a 429 without a usable `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Longest wait a `Retry-After` can impose.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);
/// Largest docker config file read.
const DOCKER_CONFIG_LIMIT: u64 = 1 << 20;
/// The first wait before a retry; each further retry waits twice as long (with jitter).
const RETRY_BASE: Duration = Duration::from_millis(500);

// ---------------------------------------------------------------------------------
// Statuses

/// The outcome of one image check; the value of the `status` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// The manifest exists.
    Available,
    /// The registry says it does not exist (404, `MANIFEST_UNKNOWN`, `NAME_UNKNOWN`).
    Absent,
    /// The registry or its token service wants (other) credentials (401).
    Unauthorized,
    /// The credentials may not pull this repository (403).
    Forbidden,
    /// The registry asked to slow down (429); no request until the time it named.
    RateLimited,
    /// No answer: DNS, connect, TLS, timeout, or a 5xx.
    Unreachable,
    /// The reference is not a valid image reference.
    InvalidReference,
    /// Anything else (an unexpected status, a malformed token response).
    Error,
}

impl Status {
    /// Every status, in the order they are exported.
    pub const ALL: [Status; 8] = [
        Status::Available,
        Status::Absent,
        Status::Unauthorized,
        Status::Forbidden,
        Status::RateLimited,
        Status::Unreachable,
        Status::InvalidReference,
        Status::Error,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Available => "available",
            Status::Absent => "absent",
            Status::Unauthorized => "unauthorized",
            Status::Forbidden => "forbidden",
            Status::RateLimited => "rate_limited",
            Status::Unreachable => "unreachable",
            Status::InvalidReference => "invalid_reference",
            Status::Error => "error",
        }
    }

    /// `Some(exists)` when the status answers the question, `None` when it does not.
    pub fn determined(self) -> Option<bool> {
        match self {
            Status::Available => Some(true),
            Status::Absent => Some(false),
            _ => None,
        }
    }
}

/// A status with the reason behind it, for logs and the run's error.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// What was found.
    pub status: Status,
    /// Why, in a few words (no credentials).
    pub detail: String,
    /// The host whose answer this is (a [`Source`] name); empty when no host was asked.
    pub source: String,
}

impl Outcome {
    /// An outcome with its reason.
    pub fn new(status: Status, detail: impl Into<String>) -> Outcome {
        Outcome {
            status,
            detail: detail.into(),
            source: String::new(),
        }
    }
}

// ---------------------------------------------------------------------------------
// Credentials

/// A user name and password for a registry. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credential {
    username: String,
    password: String,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Credential {
    fn basic(&self) -> String {
        client::basic_auth(&self.username, &self.password)
    }
}

/// One `auths` entry: which images it covers and its credential.
#[derive(Clone, Debug, PartialEq)]
struct KeyEntry {
    /// Lower-case `host[:port]`, components may hold `*` globs.
    host: String,
    /// Repository path prefix; empty for the whole registry.
    path: String,
    credential: Credential,
}

/// Registry credentials from docker config files and pull secrets, matched to images
/// as the kubelet does (host globs, path prefixes, Docker Hub's aliases).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Keyring {
    entries: Vec<KeyEntry>,
}

/// The `auths` entry of a docker config.
#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

impl Keyring {
    /// Parses a docker config (`{"auths": {...}}`, `config.json` and
    /// `.dockerconfigjson`) or, with `legacy`, a `.dockercfg` (the map at top level).
    /// Entries that hold no usable credential are skipped and named in `skipped`.
    pub fn parse(json: &[u8], legacy: bool) -> Result<(Keyring, Vec<String>), String> {
        let value: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| format!("not valid JSON: {e}"))?;
        let auths = if legacy {
            value.as_object()
        } else {
            match value.get("auths") {
                None => None,
                Some(a) => Some(
                    a.as_object()
                        .ok_or_else(|| "\"auths\" is not an object".to_string())?,
                ),
            }
        };
        if !value.is_object() {
            return Err("not a JSON object".into());
        }
        let mut keyring = Keyring::default();
        let mut skipped = Vec::new();
        let count = auths.map_or(0, serde_json::Map::len);
        let auths = auths.into_iter().flatten();
        if count > MAX_KEYRING_ENTRIES {
            skipped.push(format!(
                "{} entries past the first {MAX_KEYRING_ENTRIES} (a docker config with {count} registries is not one)",
                count - MAX_KEYRING_ENTRIES
            ));
        }
        for (key, entry) in auths.take(MAX_KEYRING_ENTRIES) {
            let credential = match credential_of(entry) {
                Ok(c) => c,
                Err(why) => {
                    skipped.push(format!("{key:?}: {why}"));
                    continue;
                }
            };
            match parse_key(key) {
                Some((host, path)) => keyring.entries.push(KeyEntry {
                    host,
                    path,
                    credential,
                }),
                None => skipped.push(format!("{key:?}: not a registry host")),
            }
        }
        Ok((keyring, skipped))
    }

    /// Appends the entries of `other` (they rank after these on equal specificity).
    pub fn extend(&mut self, other: &Keyring) {
        self.entries.extend(other.entries.iter().cloned());
    }

    /// The credential for an image: the most specific matching entry (an exact host
    /// before a glob, a longer path before a shorter one), the first on a tie.
    pub fn lookup(&self, image: &ImageRef) -> Option<&Credential> {
        let domain = image.domain.to_ascii_lowercase();
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| host_matches(&e.host, &domain) && path_matches(&e.path, &image.path))
            .min_by_key(|(i, e)| (e.host.contains('*'), usize::MAX - e.path.len(), *i))
            .map(|(_, e)| &e.credential)
    }
}

/// The credential of one `auths` entry: `auth` (base64 `user:password`) wins over
/// `username`/`password`; the error says why the entry is skipped.
fn credential_of(entry: &serde_json::Value) -> Result<Credential, &'static str> {
    let entry = serde_json::from_value::<AuthEntry>(entry.clone())
        .map_err(|_| "not an object of strings")?;
    match (&entry.auth, &entry.username, &entry.password) {
        (Some(auth), _, _) if !auth.is_empty() => {
            let decoded = base64_decode(auth).ok_or("\"auth\" is not base64")?;
            let text = String::from_utf8_lossy(&decoded).into_owned();
            let (u, p) = text
                .split_once(':')
                .ok_or("\"auth\" is not user:password")?;
            Ok(Credential {
                username: u.to_string(),
                password: p.to_string(),
            })
        }
        (_, Some(u), Some(p)) if !u.is_empty() => Ok(Credential {
            username: u.clone(),
            password: p.clone(),
        }),
        _ => Err(
            "no \"auth\" or \"username\"/\"password\" (identity tokens and credential helpers are not supported)",
        ),
    }
}

/// Turns an `auths` key into (host, path): scheme and `/v1/`, `/v2/` dropped, Docker
/// Hub's names folded into `docker.io`.
fn parse_key(key: &str) -> Option<(String, String)> {
    let lower = key.trim().to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .unwrap_or(&lower);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() {
        return None;
    }
    let mut parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if matches!(parts.last(), Some(&"v1") | Some(&"v2")) {
        parts.pop();
    }
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io",
        h => h,
    };
    Some((host.to_string(), parts.join("/")))
}

fn host_matches(pattern: &str, domain: &str) -> bool {
    let split = |s: &str| -> (String, Option<String>) {
        // An IPv6 literal keeps its colons inside the brackets.
        match s.rfind(':') {
            Some(i) if !s[i..].contains(']') => (s[..i].to_string(), Some(s[i + 1..].to_string())),
            _ => (s.to_string(), None),
        }
    };
    let (p_host, p_port) = split(pattern);
    let (d_host, d_port) = split(domain);
    if p_port != d_port {
        return false;
    }
    let p_parts: Vec<&str> = p_host.split('.').collect();
    let d_parts: Vec<&str> = d_host.split('.').collect();
    p_parts.len() == d_parts.len()
        && p_parts
            .iter()
            .zip(&d_parts)
            .all(|(p, d)| glob_match(p.as_bytes(), d.as_bytes()))
}

fn path_matches(prefix: &str, path: &str) -> bool {
    prefix.is_empty()
        || path == prefix
        || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// `*` matches any run of characters, everything else itself.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// Base64 as docker config files and pull secrets hold it: the standard alphabet,
/// padding optional, line breaks ignored (as Go's decoder ignores them); `None` when
/// malformed.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    LENIENT.decode(compact).ok()
}

/// What a docker config file held when last read.
#[derive(Debug)]
struct DockerConfig {
    keyring: Keyring,
    /// Entries without a usable credential, logged whenever the file is read.
    skipped: Vec<String>,
}

fn parse_docker_config(bytes: &[u8]) -> Result<DockerConfig, String> {
    let (keyring, skipped) = Keyring::parse(bytes, false)?;
    Ok(DockerConfig { keyring, skipped })
}

/// A docker config file re-read on every use, so rotated credentials serve at once;
/// while it cannot be read, its last good content does.
#[derive(Debug)]
pub struct DockerConfigFile {
    file: Reread<DockerConfig>,
}

impl DockerConfigFile {
    /// Reads the file once; an error names the file, never its content.
    pub fn open(path: PathBuf) -> Result<DockerConfigFile, String> {
        let file = Reread::open(
            path,
            "docker config",
            DOCKER_CONFIG_LIMIT,
            parse_docker_config,
        )?;
        let config = DockerConfigFile { file };
        config.log_skipped(&config.file.last());
        Ok(config)
    }

    /// The current credentials (the file re-read now).
    pub fn keyring(&self, check: &str) -> Keyring {
        let before = self.file.last();
        let now = self.file.get(check);
        // A failed re-read hands back the same value; its skipped entries were logged
        // when it was read.
        if !Arc::ptr_eq(&before, &now) {
            self.log_skipped(&now);
        }
        now.keyring.clone()
    }

    fn log_skipped(&self, config: &DockerConfig) {
        for s in &config.skipped {
            log::warn!(
                "msg=\"docker config entry skipped\" file={:?} entry={s:?}",
                self.file.path().display().to_string()
            );
        }
    }
}

// ---------------------------------------------------------------------------------
// The shared YAML keys

/// The keys `kind: registry` and `kind: kubernetes_images` share, as written. Declared
/// here once; each kind reads them out of its mapping with [`RegistryKeys::split`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RegistryKeys {
    /// `docker_config_file`: credentials, re-read every run.
    pub docker_config_file: Option<Spanned<String>>,
    /// The connection keys (`tls`, proxies, IP family) every kind that speaks HTTP has.
    pub connection: ConnectionKeys,
    /// `plain_http_registries`: hosts spoken to over `http://`.
    pub plain_http_registries: Vec<Spanned<String>>,
    /// `max_concurrency_per_registry`
    pub max_concurrency_per_registry: Option<Spanned<usize>>,
    /// `retries`: times a 5xx or failed connection is tried again.
    pub retries: Option<Spanned<u32>>,
    /// `mirrors`: registry -> mirror hosts asked first.
    pub mirrors: Option<Spanned<MirrorsSpec>>,
}

impl SharedKeys for RegistryKeys {
    fn take<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        match key {
            "docker_config_file" => self.docker_config_file = map.next_value()?,
            "plain_http_registries" => self.plain_http_registries = map.next_value()?,
            "max_concurrency_per_registry" => {
                self.max_concurrency_per_registry = map.next_value()?;
            }
            "retries" => self.retries = map.next_value()?,
            "mirrors" => self.mirrors = map.next_value()?,
            _ => return self.connection.take(key, map),
        }
        Ok(true)
    }
}

impl RegistryKeys {
    /// The key names [`SharedKeys::take`] takes, in the order an unknown-key message
    /// lists them after the kind's own.
    const NAMES: [&'static str; 5] = [
        "docker_config_file",
        "plain_http_registries",
        "max_concurrency_per_registry",
        "retries",
        "mirrors",
    ];

    /// Reads a kind's own keys `T` (a `deny_unknown_fields` struct) and these keys from
    /// one mapping, through [`crate::keys::split`]. A key that neither knows fails as it
    /// would if one struct held all the keys: the message lists the kind's keys, then
    /// these, so what `--config.check` prints does not depend on who owns which key.
    pub fn split<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        deserializer: D,
    ) -> Result<(T, RegistryKeys), D::Error> {
        let mut shared = RegistryKeys::default();
        let own = crate::keys::split_listed(
            deserializer,
            &mut shared,
            &[&RegistryKeys::NAMES, &ConnectionKeys::NAMES],
        )?;
        Ok((own, shared))
    }
}

// ---------------------------------------------------------------------------------
// The registry client

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct TokenKey {
    host: String,
    scope: String,
    credential: Option<Credential>,
}

#[derive(Clone, Debug)]
struct CachedToken {
    token: String,
    valid_until: Instant,
}

/// Talks to registries for one check: tokens, Basic hosts and rate limits live as long
/// as the check, so a token serves many runs until it expires.
pub struct RegistryClient {
    agent: ureq::Agent,
    /// Hosts spoken to over plain HTTP (lower case).
    plain_http: HashSet<String>,
    per_registry: usize,
    /// Longest single request, so a registry that hangs costs one image, not the run.
    request_timeout: Duration,
    tokens: Mutex<HashMap<TokenKey, CachedToken>>,
    /// Hosts that challenged with Basic: credentials go along on the first request.
    basic_hosts: Mutex<HashSet<String>>,
    /// Hosts that answered 429, with the time before which they get no request.
    blocked: Mutex<HashMap<String, Instant>>,
    /// Times a 5xx or a failed connection is tried again.
    retries: u32,
    /// Retries so far per host asked (every host asked has an entry, 0 at first).
    retried: Mutex<BTreeMap<String, u64>>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("plain_http", &self.plain_http)
            .field("per_registry", &self.per_registry)
            .finish_non_exhaustive()
    }
}

/// One image to check, with the hosts to ask and the credential for each.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Job {
    /// The image, as its reference names it.
    pub image: ImageRef,
    /// Where to ask, in order: its registry's mirrors, then (usually) the registry.
    pub sources: Vec<Source>,
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq)]
enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
    },
    Basic,
    Other(String),
}

/// What one request answered.
struct Answer {
    status: u16,
    challenges: Vec<Challenge>,
    retry_after: Option<Duration>,
    digest: Option<String>,
}

/// Jobs waiting per registry host, and how many requests each host has in flight.
struct Queue {
    waiting: HashMap<String, VecDeque<usize>>,
    in_flight: HashMap<String, usize>,
    queued: usize,
    per_registry: usize,
}

impl Queue {
    fn new(jobs: &[Job], per_registry: usize) -> Queue {
        let mut waiting: HashMap<String, VecDeque<usize>> = HashMap::new();
        for (i, job) in jobs.iter().enumerate() {
            // Concurrency is counted at the first host asked: for a mirrored image that
            // is the mirror, which gets every request; the others only see leftovers.
            let host = job
                .sources
                .first()
                .map_or_else(|| job.image.registry_host(), |s| s.host.as_str());
            waiting
                .entry(host.to_ascii_lowercase())
                .or_default()
                .push_back(i);
        }
        Queue {
            waiting,
            in_flight: HashMap::new(),
            queued: jobs.len(),
            per_registry,
        }
    }

    /// The next job whose registry has a free slot, now counted in flight.
    fn take(&mut self) -> Option<(usize, String)> {
        let Queue {
            waiting,
            in_flight,
            per_registry,
            ..
        } = self;
        let (index, host) = waiting.iter_mut().find_map(|(host, list)| {
            let busy = in_flight.get(host).copied().unwrap_or(0);
            if busy < *per_registry {
                list.pop_front().map(|i| (i, host.clone()))
            } else {
                None
            }
        })?;
        self.queued -= 1;
        *self.in_flight.entry(host.clone()).or_default() += 1;
        Some((index, host))
    }

    fn finish(&mut self, host: &str) {
        if let Some(n) = self.in_flight.get_mut(host) {
            *n = n.saturating_sub(1);
        }
    }
}

/// Waits until a job's registry has a free slot; `None` once every job is taken, the
/// deadline passed or the run was cancelled.
fn next_job(
    queue: &Mutex<Queue>,
    wake: &Condvar,
    deadline: Instant,
    cancel: &AtomicBool,
) -> Option<(usize, String)> {
    let mut q = lock(queue);
    loop {
        if q.queued == 0 || cancel.load(Ordering::Relaxed) || Instant::now() >= deadline {
            return None;
        }
        if let Some(job) = q.take() {
            return Some(job);
        }
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(200));
        q = wait_timeout(wake, q, wait);
    }
}

/// One image's requests to one host: where they go and what has been tried so far.
struct Attempt<'a> {
    image: &'a ImageRef,
    source: &'a Source,
    credential: Option<&'a Credential>,
    host: String,
    /// `host` in lower case: the key of the per-host maps.
    host_key: String,
    url: String,
    token_key: TokenKey,
    authorization: Option<String>,
    method: Method,
    tried_basic: bool,
    tried_token: bool,
}

/// What an answer leads to.
enum Next {
    Done(Outcome),
    /// Send again: with new credentials, or GET instead of HEAD.
    Retry,
}

impl RegistryClient {
    /// A client that sends with `agent`, speaks plain HTTP to the (lower-case) hosts in
    /// `plain_http`, and sends at most `per_registry` requests to one registry at once,
    /// each bounded by `request_timeout`; a 5xx or a failed connection is tried again
    /// `retries` times.
    pub fn new(
        agent: ureq::Agent,
        plain_http: HashSet<String>,
        per_registry: usize,
        request_timeout: Duration,
        retries: u32,
    ) -> RegistryClient {
        RegistryClient {
            agent,
            plain_http,
            per_registry,
            request_timeout,
            tokens: Mutex::new(HashMap::new()),
            basic_hosts: Mutex::new(HashSet::new()),
            blocked: Mutex::new(HashMap::new()),
            retries,
            retried: Mutex::new(BTreeMap::new()),
        }
    }

    /// Retries so far per host asked, in host order (a host asked without a retry has 0).
    pub fn retries_by_host(&self) -> Vec<(String, u64)> {
        lock(&self.retried)
            .iter()
            .map(|(h, n)| (h.clone(), *n))
            .collect()
    }

    fn is_plain(&self, host: &str) -> bool {
        self.plain_http.contains(&host.to_ascii_lowercase())
    }

    /// Checks every job, at most `max_concurrency_per_registry` at once per registry;
    /// `None` for a job not started before `deadline` or a `cancel`.
    pub fn check_all(
        &self,
        jobs: &[Job],
        deadline: Instant,
        cancel: &AtomicBool,
    ) -> Vec<Option<Outcome>> {
        let queue = Mutex::new(Queue::new(jobs, self.per_registry));
        let hosts = lock(&queue).waiting.len();
        let wake = Condvar::new();
        let slots: Vec<Mutex<Option<Outcome>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
        let work = || {
            while let Some((index, host)) = next_job(&queue, &wake, deadline, cancel) {
                let outcome = self.check(&jobs[index], deadline);
                *lock(&slots[index]) = Some(outcome);
                lock(&queue).finish(&host);
                wake.notify_all();
            }
        };
        let workers = jobs
            .len()
            .min(hosts.saturating_mul(self.per_registry))
            .clamp(1, MAX_WORKERS);
        std::thread::scope(|scope| {
            for _ in 1..workers {
                let spawned = std::thread::Builder::new()
                    .name("sonde-registry".into())
                    .stack_size(512 << 10)
                    .spawn_scoped(scope, work);
                if spawned.is_err() {
                    break;
                }
            }
            work();
        });
        slots.into_iter().map(into_inner).collect()
    }

    /// Checks one image at its hosts in order, as containerd resolves it: the first host
    /// that has the image answers; when none has, the first failure other than a 404
    /// does (a mirror that is down says more than an upstream's 404), else the last 404.
    pub fn check(&self, job: &Job, deadline: Instant) -> Outcome {
        let mut first_failure: Option<Outcome> = None;
        let mut absent: Option<Outcome> = None;
        let mut tried: Vec<String> = Vec::new();
        for source in &job.sources {
            let mut outcome = self.check_at(&job.image, source, deadline);
            outcome.source = source.name.clone();
            match outcome.status {
                Status::Available => return with_tried(outcome, &tried),
                Status::Absent => absent = Some(outcome.clone()),
                _ if first_failure.is_none() => first_failure = Some(outcome.clone()),
                _ => {}
            }
            tried.push(format!("{}: {}", source.name, outcome.status.as_str()));
        }
        let chosen = first_failure.or(absent).unwrap_or_else(|| {
            Outcome::new(Status::Error, format!("{}: no host to ask", job.image))
        });
        // The chosen answer is among those tried; name the others.
        let others: Vec<String> = tried
            .into_iter()
            .filter(|t| !t.starts_with(&format!("{}: ", chosen.source)))
            .collect();
        with_tried(chosen, &others)
    }

    /// The key `host`'s retries are counted under: itself, or `other` once
    /// [`MAX_HOSTS`] hosts are counted.
    fn count_retries(&self, host: &str, add: u64) {
        let mut retried = lock(&self.retried);
        let key = host.to_ascii_lowercase();
        let key = if retried.contains_key(&key) || retried.len() < MAX_HOSTS {
            key
        } else {
            "other".to_string()
        };
        *retried.entry(key).or_insert(0) += add;
    }

    /// Checks one image at one host.
    fn check_at(&self, image: &ImageRef, source: &Source, deadline: Instant) -> Outcome {
        let host = source.host.clone();
        self.count_retries(&host, 0);
        if let Some(blocked) = self.still_blocked(&host) {
            return blocked;
        }
        let mut attempt = self.attempt(image, source, host);
        // At most: a challenge answered, a token refreshed, a GET fallback.
        for _ in 0..4 {
            let answer = match self.send_retrying(&attempt, deadline) {
                Ok(a) => a,
                Err(outcome) => return outcome,
            };
            if let Next::Done(outcome) = self.judge(&mut attempt, &answer, deadline) {
                return outcome;
            }
        }
        Outcome::new(
            Status::Unauthorized,
            format!("{}: the registry kept asking for credentials", attempt.url),
        )
    }

    /// Sends the attempt's request, again after a 5xx or a failed connection while
    /// retries and time are left.
    fn send_retrying(&self, a: &Attempt, deadline: Instant) -> Result<Answer, Outcome> {
        self.retrying(&a.host_key, deadline, || {
            match self.send(&a.method, &a.url, a.authorization.as_deref(), deadline) {
                Ok(answer) => {
                    let transient = transient_status(answer.status);
                    (Ok(answer), transient)
                }
                Err((outcome, transient)) => (Err(outcome), transient),
            }
        })
    }

    /// Runs `attempt` until it gives a result that is not transient, at most
    /// `1 + retries` times, waiting `RETRY_BASE` × 2ⁿ (with jitter) between tries; stops
    /// early when the wait would reach `deadline`. Each retry is counted for `host_key`.
    fn retrying<T>(
        &self,
        host_key: &str,
        deadline: Instant,
        mut attempt: impl FnMut() -> (Result<T, Outcome>, bool),
    ) -> Result<T, Outcome> {
        let mut tries = 0;
        loop {
            let (result, transient) = attempt();
            if !transient || tries >= self.retries {
                return result;
            }
            let wait = backoff(tries);
            if Instant::now() + wait >= deadline {
                return result;
            }
            self.count_retries(host_key, 1);
            std::thread::sleep(wait);
            tries += 1;
        }
    }

    /// The rate-limited outcome while a 429 from `host` still holds.
    fn still_blocked(&self, host: &str) -> Option<Outcome> {
        let until = lock(&self.blocked)
            .get(&host.to_ascii_lowercase())
            .copied()?;
        let now = Instant::now();
        (until > now).then(|| {
            Outcome::new(
                Status::RateLimited,
                format!(
                    "{host} answered 429; no request for another {}s",
                    (until - now).as_secs() + 1
                ),
            )
        })
    }

    /// The first request for an image at one host: HEAD, with a cached token or (for a
    /// host known to want Basic) the credential. A mirror is told which registry it
    /// stands in for with `?ns=`, as containerd tells it.
    fn attempt<'a>(&self, image: &'a ImageRef, source: &'a Source, host: String) -> Attempt<'a> {
        let credential = source.credential.as_ref();
        let host_key = host.to_ascii_lowercase();
        let plain = match &source.mirror_of {
            None => self.is_plain(&host) || self.is_plain(&image.domain),
            Some(_) => self.is_plain(&host),
        };
        let scheme = if plain { "http" } else { "https" };
        let mut url = format!(
            "{scheme}://{host}/v2/{}/manifests/{}",
            source.path,
            image.reference()
        );
        if let Some(registry) = &source.mirror_of {
            url.push_str("?ns=");
            url.push_str(&client::percent_encode(registry));
        }
        let token_key = TokenKey {
            host: host_key.clone(),
            scope: format!("repository:{}:pull", source.path),
            credential: credential.cloned(),
        };
        let now = Instant::now();
        let cached = lock(&self.tokens)
            .get(&token_key)
            .filter(|t| t.valid_until > now)
            .map(|t| t.token.clone());
        let mut tried_basic = false;
        let authorization = match (cached, credential) {
            (Some(token), _) => Some(format!("Bearer {token}")),
            (None, Some(c)) if lock(&self.basic_hosts).contains(&host_key) => {
                tried_basic = true;
                Some(c.basic())
            }
            _ => None,
        };
        Attempt {
            image,
            source,
            credential,
            host,
            host_key,
            url,
            token_key,
            authorization,
            method: Method::HEAD,
            tried_basic,
            tried_token: false,
        }
    }

    /// What an answer to the manifest request means.
    fn judge(&self, a: &mut Attempt, answer: &Answer, deadline: Instant) -> Next {
        let what = format!("{} {}: HTTP {}", a.method, a.url, answer.status);
        let outcome = match answer.status {
            200..=299 => match (&a.image.digest, &answer.digest) {
                (Some(want), Some(got)) if want != got => Outcome::new(
                    Status::Error,
                    format!("{what}, but the registry names digest {got}"),
                ),
                _ => Outcome::new(Status::Available, what),
            },
            404 => Outcome::new(Status::Absent, what),
            401 => return self.answer_challenge(a, answer, &what, deadline),
            403 => Outcome::new(Status::Forbidden, what),
            429 => {
                let wait = self.block(&a.host_key, answer.retry_after);
                Outcome::new(
                    Status::RateLimited,
                    format!("{what}; no request to {} for {}s", a.host, wait.as_secs()),
                )
            }
            405 | 501 if a.method == Method::HEAD => {
                // The registry does not do HEAD: one GET answers instead.
                a.method = Method::GET;
                return Next::Retry;
            }
            500..=599 => Outcome::new(Status::Unreachable, what),
            _ => Outcome::new(Status::Error, format!("{what} (unexpected)")),
        };
        Next::Done(outcome)
    }

    /// Answers a 401: a Bearer challenge with a token (once), a Basic one with the
    /// credential (once); after that the 401 is the outcome.
    fn answer_challenge(
        &self,
        a: &mut Attempt,
        answer: &Answer,
        what: &str,
        deadline: Instant,
    ) -> Next {
        let bearer = answer.challenges.iter().find_map(|c| match c {
            Challenge::Bearer { realm, service } => Some((realm, service)),
            _ => None,
        });
        if let Some((realm, service)) = bearer
            && !a.tried_token
        {
            a.tried_token = true;
            let token = match self.fetch_token(a, realm, service.as_deref(), deadline) {
                Ok(t) => t,
                Err(outcome) => return Next::Done(outcome),
            };
            a.authorization = Some(format!("Bearer {}", token.token));
            cache_token(&mut lock(&self.tokens), a.token_key.clone(), token);
            return Next::Retry;
        }
        if answer.challenges.contains(&Challenge::Basic) && !a.tried_basic {
            let Some(c) = a.credential else {
                return Next::Done(Outcome::new(
                    Status::Unauthorized,
                    format!(
                        "{what}: the registry wants Basic credentials and none are configured for {}",
                        a.source.name
                    ),
                ));
            };
            a.tried_basic = true;
            let mut basic = lock(&self.basic_hosts);
            if basic.len() < MAX_HOSTS {
                basic.insert(a.host_key.clone());
            }
            drop(basic);
            a.authorization = Some(c.basic());
            return Next::Retry;
        }
        let why = match (&answer.challenges[..], a.credential) {
            ([], _) => "no usable challenge",
            (_, Some(_)) => "the credentials were rejected",
            (_, None) => "the registry wants credentials",
        };
        Next::Done(Outcome::new(Status::Unauthorized, format!("{what}: {why}")))
    }

    /// Records a 429 and returns how long the host is left alone.
    fn block(&self, host_key: &str, retry_after: Option<Duration>) -> Duration {
        let wait = retry_after
            .unwrap_or(DEFAULT_RETRY_AFTER)
            .min(MAX_RETRY_AFTER);
        let now = Instant::now();
        let mut blocked = lock(&self.blocked);
        blocked.retain(|_, until| *until > now);
        if blocked.len() < MAX_HOSTS || blocked.contains_key(host_key) {
            blocked.insert(host_key.to_string(), now + wait);
        }
        drop(blocked);
        wait
    }

    /// The time a request may take: the rest of the run, at most `request_timeout`.
    fn budget(&self, deadline: Instant) -> Option<Duration> {
        let left = deadline.saturating_duration_since(Instant::now());
        (!left.is_zero()).then(|| left.min(self.request_timeout))
    }

    /// Sends one request; a failure says whether trying again could help.
    fn send(
        &self,
        method: &Method,
        url: &str,
        authorization: Option<&str>,
        deadline: Instant,
    ) -> Result<Answer, (Outcome, bool)> {
        let Some(budget) = self.budget(deadline) else {
            return Err((
                Outcome::new(
                    Status::Unreachable,
                    format!("{url}: no time left in the run"),
                ),
                false,
            ));
        };
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(url)
            .header("accept", ACCEPT);
        if let Some(a) = authorization {
            builder = builder.header("authorization", a);
        }
        let request = builder.body(()).map_err(|e| {
            (
                Outcome::new(Status::InvalidReference, format!("{url}: {e}")),
                false,
            )
        })?;
        let exchange = client::send(&self.agent, request, budget);
        let mut response = exchange
            .response
            .map_err(|e| transport_outcome(url, &e, &exchange.trace))?;
        let answer = answer_of(&response);
        if *method == Method::GET {
            // Only the status matters; the body is drained (capped) so the connection
            // can be reused.
            let _ = response
                .body_mut()
                .with_config()
                .limit(MANIFEST_BODY_LIMIT)
                .read_to_vec();
        }
        Ok(answer)
    }

    /// The token service's URL for the attempt's scope; the realm must be https unless
    /// its host (or the registry) is listed in `plain_http_registries`.
    fn token_url(
        &self,
        host: &str,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String, Outcome> {
        let realm_uri: ureq::http::Uri = realm.parse().map_err(|_| {
            Outcome::new(
                Status::Error,
                format!("{host}: the token realm {realm:?} is not a URL"),
            )
        })?;
        let realm_host = realm_uri
            .authority()
            .map(|a| a.as_str().to_ascii_lowercase())
            .unwrap_or_default();
        match realm_uri.scheme_str() {
            Some("https") => {}
            Some("http") if self.is_plain(host) || self.is_plain(&realm_host) => {}
            _ => {
                return Err(Outcome::new(
                    Status::Error,
                    format!(
                        "{host}: the token realm {realm:?} is not https (list its host in plain_http_registries to allow http)"
                    ),
                ));
            }
        }
        let mut url = realm.to_string();
        url.push(if realm.contains('?') { '&' } else { '?' });
        if let Some(s) = service {
            url.push_str("service=");
            url.push_str(&client::percent_encode(s));
            url.push('&');
        }
        url.push_str("scope=");
        url.push_str(&client::percent_encode(scope));
        Ok(url)
    }

    /// Fetches a token for the attempt's scope from a Bearer challenge's realm, again
    /// after a 5xx or a failed connection (counted for the registry's host).
    fn fetch_token(
        &self,
        a: &Attempt,
        realm: &str,
        service: Option<&str>,
        deadline: Instant,
    ) -> Result<CachedToken, Outcome> {
        let url = self.token_url(&a.host, realm, service, &a.token_key.scope)?;
        self.retrying(&a.host_key, deadline, || {
            self.token_once(a, realm, &url, deadline)
        })
    }

    /// One token request; the flag says whether trying again could help.
    fn token_once(
        &self,
        a: &Attempt,
        realm: &str,
        url: &str,
        deadline: Instant,
    ) -> (Result<CachedToken, Outcome>, bool) {
        let Some(budget) = self.budget(deadline) else {
            let why = format!("{realm}: no time left in the run");
            return (Err(Outcome::new(Status::Unreachable, why)), false);
        };
        let mut builder = Request::builder().method(Method::GET).uri(url);
        if let Some(c) = a.credential {
            builder = builder.header("authorization", c.basic());
        }
        let request = match builder.body(()) {
            Ok(r) => r,
            Err(e) => {
                let why = format!("{realm}: bad token request: {e}");
                return (Err(Outcome::new(Status::Error, why)), false);
            }
        };
        let exchange = client::send(&self.agent, request, budget);
        let mut response = match exchange.response {
            Ok(r) => r,
            Err(e) => {
                let (outcome, transient) = transport_outcome(realm, &e, &exchange.trace);
                return (Err(outcome), transient);
            }
        };
        let status = response.status().as_u16();
        let what = format!("token service {realm}: HTTP {status}");
        let retry_after = answer_of(&response).retry_after;
        let body = response
            .body_mut()
            .with_config()
            .limit(TOKEN_BODY_LIMIT)
            .read_to_vec();
        if status != 200 {
            let refused = self.token_refused(a, status, what, retry_after);
            return (Err(refused), transient_status(status));
        }
        let parsed = match body {
            Ok(body) => {
                parse_token(&body).map_err(|e| Outcome::new(Status::Error, format!("{what}: {e}")))
            }
            Err(e) => Err(Outcome::new(
                Status::Unreachable,
                format!("{what}: reading the body: {e}"),
            )),
        };
        (parsed, false)
    }

    /// The outcome of a token service that answered other than 200.
    fn token_refused(
        &self,
        a: &Attempt,
        status: u16,
        what: String,
        retry_after: Option<Duration>,
    ) -> Outcome {
        match status {
            401 => {
                let why = if a.credential.is_some() {
                    "the credentials were rejected"
                } else {
                    "anonymous access refused"
                };
                Outcome::new(Status::Unauthorized, format!("{what}: {why}"))
            }
            403 => Outcome::new(Status::Forbidden, what),
            429 => {
                let wait = self.block(&a.host_key, retry_after);
                Outcome::new(
                    Status::RateLimited,
                    format!("{what}; no request to {} for {}s", a.host, wait.as_secs()),
                )
            }
            500..=599 => Outcome::new(Status::Unreachable, what),
            _ => Outcome::new(Status::Error, format!("{what} (unexpected)")),
        }
    }
}

/// Caches `token` under `key`, within [`MAX_CACHED_TOKENS`]: expired tokens go first,
/// then the one that expires soonest.
fn cache_token(tokens: &mut HashMap<TokenKey, CachedToken>, key: TokenKey, token: CachedToken) {
    if tokens.len() >= MAX_CACHED_TOKENS && !tokens.contains_key(&key) {
        let now = Instant::now();
        tokens.retain(|_, t| t.valid_until > now);
        if tokens.len() >= MAX_CACHED_TOKENS
            && let Some(soonest) = tokens
                .iter()
                .min_by_key(|(_, t)| t.valid_until)
                .map(|(k, _)| k.clone())
        {
            tokens.remove(&soonest);
        }
    }
    tokens.insert(key, token);
}

/// Reads a token response: `token` or `access_token`, `expires_in` (default 60 s).
fn parse_token(body: &[u8]) -> Result<CachedToken, String> {
    #[derive(Deserialize)]
    struct TokenResponse {
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        access_token: Option<String>,
        #[serde(default)]
        expires_in: Option<serde_json::Value>,
    }
    let parsed: TokenResponse =
        serde_json::from_slice(body).map_err(|_| "the response is not a token (JSON)")?;
    let token = parsed
        .token
        .filter(|t| !t.is_empty())
        .or(parsed.access_token.filter(|t| !t.is_empty()))
        .ok_or("the response has no token")?;
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token has characters a header cannot carry".into());
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(format!(
            "the token is {} bytes, more than a request header takes ({MAX_TOKEN_BYTES})",
            token.len()
        ));
    }
    let lifetime = parsed
        .expires_in
        .as_ref()
        .and_then(serde_json::Value::as_f64)
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(DEFAULT_TOKEN_LIFETIME, |s| {
            Duration::from_secs_f64(s.min(86_400.0))
        });
    // Renew a little early so a token never expires on its way to the registry.
    let margin = (lifetime / 10).min(Duration::from_secs(30));
    Ok(CachedToken {
        token,
        valid_until: Instant::now() + lifetime - margin,
    })
}

fn answer_of<B>(response: &Response<B>) -> Answer {
    let headers = response.headers();
    let challenges = headers
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse_challenges)
        .collect();
    let retry_after = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let digest = headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string());
    Answer {
        status: response.status().as_u16(),
        challenges,
        retry_after,
        digest,
    }
}

/// Why a request got no answer, and whether trying again could help (a refused or
/// broken connection, a timeout; not a name that does not resolve, nor a certificate
/// that does not verify). Unlike [`client::describe`], a registry outcome is a status,
/// so what counts as "unreachable" is decided here.
fn transport_outcome(url: &str, e: &ureq::Error, trace: &client::Trace) -> (Outcome, bool) {
    use std::io::ErrorKind;
    // A connection step that failed (DNS, connect, proxy, TLS, a timeout) said why;
    // what failed says whether trying again could help.
    if let Some(failure) = &trace.failure {
        let transient = matches!(failure.stage, Stage::Connect | Stage::Timeout);
        return (
            Outcome::new(Status::Unreachable, format!("{url}: {}", failure.cause)),
            transient,
        );
    }
    let (why, transient) = match e {
        ureq::Error::Timeout(_) => ("timed out", true),
        ureq::Error::Io(io) if matches!(io.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
            ("timed out", true)
        }
        ureq::Error::HostNotFound => ("the host name does not resolve", false),
        _ if trace.dns_failed => ("the host name does not resolve", false),
        _ if trace.tls_failed => ("TLS handshake or certificate verification failed", false),
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => {
            ("TLS handshake or certificate verification failed", false)
        }
        ureq::Error::Io(_) | ureq::Error::ConnectionFailed if !trace.connected => {
            ("cannot connect", true)
        }
        ureq::Error::Io(_) | ureq::Error::ConnectionFailed => ("the connection failed", true),
        _ => {
            return (Outcome::new(Status::Error, format!("{url}: {e}")), false);
        }
    };
    (
        Outcome::new(Status::Unreachable, format!("{url}: {why}")),
        transient,
    )
}

/// Whether an HTTP status is worth a retry: a server error, except those that say the
/// request itself will never work (501 Not Implemented, 505 HTTP Version Not Supported).
fn transient_status(status: u16) -> bool {
    (500..=599).contains(&status) && status != 501 && status != 505
}

/// The wait before retry `n` (0-based): `RETRY_BASE` × 2ⁿ, of which a random half is
/// taken off ("equal jitter"), so images that failed together do not retry together.
fn backoff(n: u32) -> Duration {
    use std::hash::BuildHasher;
    let full = RETRY_BASE.saturating_mul(1 << n.min(10));
    // A fresh RandomState is seeded differently each time: a source of jitter without
    // a random-number crate.
    let random = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    let fraction = (random >> 11) as f64 / (1u64 << 53) as f64;
    full / 2 + full.mul_f64(fraction / 2.0)
}

/// An outcome whose detail also names the other hosts asked, when there were some.
fn with_tried(mut outcome: Outcome, others: &[String]) -> Outcome {
    if !others.is_empty() {
        outcome.detail = format!("{} (also asked: {})", outcome.detail, others.join(", "));
    }
    outcome
}

/// Parses one `WWW-Authenticate` value into its challenges.
fn parse_challenges(value: &str) -> Vec<Challenge> {
    let mut out = Vec::new();
    let mut rest = value.trim();
    while !rest.is_empty() {
        let end = rest.find([' ', ',']).unwrap_or(rest.len());
        let scheme = rest[..end].to_ascii_lowercase();
        rest = rest[end..].trim_start_matches([' ', ',']);
        let mut params: HashMap<String, String> = HashMap::new();
        // Parameters are `key=value` or `key="quoted"`, comma separated; a token
        // without '=' starts the next challenge.
        while let Some(eq) = rest.find('=') {
            let key = rest[..eq].trim();
            if key.is_empty() || key.contains([' ', ',']) {
                break;
            }
            let (val, remaining) = param_value(&rest[eq + 1..]);
            params.insert(key.to_ascii_lowercase(), val);
            rest = remaining.trim_start_matches([' ', ',']);
        }
        match scheme.as_str() {
            "bearer" => match params.remove("realm") {
                Some(realm) => out.push(Challenge::Bearer {
                    realm,
                    service: params.remove("service"),
                }),
                None => out.push(Challenge::Other("bearer without realm".into())),
            },
            "basic" => out.push(Challenge::Basic),
            "" => break,
            other => out.push(Challenge::Other(other.to_string())),
        }
    }
    out
}

/// A challenge parameter's value (a token, or a quoted string with `\` escapes) and the
/// text after it.
fn param_value(after: &str) -> (String, &str) {
    let Some(q) = after.strip_prefix('"') else {
        let e = after.find(',').unwrap_or(after.len());
        return (after[..e].trim().to_string(), &after[e..]);
    };
    let mut v = String::new();
    let mut chars = q.char_indices();
    let mut end = q.len();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, n)) = chars.next() {
                    v.push(n);
                }
            }
            '"' => {
                end = i + 1;
                break;
            }
            c => v.push(c),
        }
    }
    (v, &q[end.min(q.len())..])
}

/// `Retry-After`: delay seconds or an HTTP date.
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = super::http::parse_http_date(value)?;
    let now = now.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs() as i64;
    Some(Duration::from_secs(at.saturating_sub(now).max(0) as u64))
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    fn image(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap()
    }

    #[test]
    fn challenges_are_parsed() {
        assert_eq!(
            parse_challenges(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#
            ),
            vec![Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
            }]
        );
        assert_eq!(
            parse_challenges(r#"Basic realm="Registry Realm""#),
            vec![Challenge::Basic]
        );
        assert_eq!(
            parse_challenges(r#"basic realm=x, Bearer realm="http://a/t\"x""#),
            vec![
                Challenge::Basic,
                Challenge::Bearer {
                    realm: "http://a/t\"x".into(),
                    service: None
                }
            ]
        );
        assert_eq!(
            parse_challenges("Bearer"),
            vec![Challenge::Other("bearer without realm".into())]
        );
        for junk in [
            "",
            "=",
            ",,,",
            "\"",
            "a=\"unterminated",
            "Bearer realm=\"x\\",
        ] {
            let _ = parse_challenges(junk);
        }
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    fn base64(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn base64_round_trips() {
        for s in ["", "a", "ab", "abc", "user:pa:ss", "ünï"] {
            assert_eq!(base64_decode(&base64(s.as_bytes())).unwrap(), s.as_bytes());
        }
        assert_eq!(base64_decode("dXNl\ncjpw\r\nYXNz").unwrap(), b"user:pass");
        assert_eq!(base64_decode("dXNlcg").unwrap(), b"user");
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert!(base64_decode("a$b").is_none());
        assert!(base64_decode("a").is_none());
        assert!(base64_decode("ab=c").is_none());
    }

    #[test]
    fn docker_config_keys_match_like_the_kubelet() {
        let json = format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "registry.local:5000": {{"username": "team", "password": "t"}},
                "registry.local:5000/special": {{"username": "special", "password": "s"}},
                "*.example.com": {{"username": "glob", "password": "g"}},
                "http://old.example.com/v2/": {{"username": "old", "password": "o"}},
                "broken": {{"auth": "!!"}},
                "helper.io": {{"identitytoken": "x"}}
            }}}}"#,
            base64(b"hub:secret")
        );
        let (k, skipped) = Keyring::parse(json.as_bytes(), false).unwrap();
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        let user = |s: &str| k.lookup(&image(s)).map(|c| c.username.as_str());
        assert_eq!(user("nginx"), Some("hub"));
        assert_eq!(user("docker.io/acme/app"), Some("hub"));
        assert_eq!(user("registry.local:5000/team/app"), Some("team"));
        assert_eq!(user("registry.local:5000/special/app"), Some("special"));
        assert_eq!(user("registry.local:5000/specialist"), Some("team"));
        assert_eq!(user("registry.local/app"), None);
        assert_eq!(user("a.example.com/app"), Some("glob"));
        assert_eq!(user("old.example.com/app"), Some("old"));
        assert_eq!(user("a.b.example.com/app"), None);
        assert_eq!(user("ghcr.io/app"), None);
        let c = k.lookup(&image("nginx")).unwrap();
        assert_eq!(c.password, "secret");
        assert!(!format!("{c:?}").contains("secret"));
        // .dockercfg: the map is at the top level.
        let legacy = format!(
            r#"{{"docker.io": {{"auth": "{}", "email": "x"}}}}"#,
            base64(b"a:b")
        );
        let (k, _) = Keyring::parse(legacy.as_bytes(), true).unwrap();
        assert_eq!(k.lookup(&image("nginx")).unwrap().username, "a");
        assert!(Keyring::parse(b"[1]", false).is_err());
        assert!(Keyring::parse(b"{\"auths\": 3}", false).is_err());
        assert!(Keyring::parse(b"{}", false).unwrap().0.entries.is_empty());
        // At most MAX_KEYRING_ENTRIES entries are read; the rest are named as skipped.
        let many: Vec<String> = (0..MAX_KEYRING_ENTRIES + 5)
            .map(|i| format!(r#""r{i:05}.example": {{"username": "u", "password": "p"}}"#))
            .collect();
        let json = format!(r#"{{"auths": {{{}}}}}"#, many.join(","));
        let (k, skipped) = Keyring::parse(json.as_bytes(), false).unwrap();
        assert_eq!(k.entries.len(), MAX_KEYRING_ENTRIES);
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert!(
            skipped[0].starts_with("5 entries past the first 1000"),
            "{skipped:?}"
        );
    }

    #[test]
    fn a_docker_config_keeps_its_last_good_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let config = |user: &str| {
            format!(
                r#"{{"auths":{{"r.local":{{"auth":"{}"}}}}}}"#,
                base64(user.as_bytes())
            )
        };
        std::fs::write(&path, config("a:1")).unwrap();
        let file = DockerConfigFile::open(path.clone()).unwrap();
        let user = |k: Keyring| k.lookup(&image("r.local/x")).unwrap().username.clone();
        assert_eq!(user(file.keyring("c")), "a");
        std::fs::write(&path, config("b:2")).unwrap();
        assert_eq!(user(file.keyring("c")), "b");
        std::fs::write(&path, "{").unwrap();
        assert_eq!(user(file.keyring("c")), "b");
        let e = DockerConfigFile::open(dir.path().join("missing.json")).unwrap_err();
        assert!(e.contains("missing.json"), "{e}");
    }

    #[test]
    fn tokens_expire_as_told() {
        let t = parse_token(br#"{"token":"abc","expires_in":300}"#).unwrap();
        let left = t.valid_until - Instant::now();
        assert!(left > Duration::from_secs(260) && left <= Duration::from_secs(300));
        let t = parse_token(br#"{"access_token":"abc"}"#).unwrap();
        assert!(t.valid_until - Instant::now() <= DEFAULT_TOKEN_LIFETIME);
        assert!(parse_token(br#"{"token":""}"#).is_err());
        assert!(parse_token(br#"{"token":"a b"}"#).is_err());
        assert!(parse_token(b"<html>").is_err());
        // A token no request header can carry is refused, not cached.
        let huge = format!(r#"{{"token":"{}"}}"#, "a".repeat(MAX_TOKEN_BYTES + 1));
        let e = parse_token(huge.as_bytes()).unwrap_err();
        assert!(e.contains("more than a request header takes"), "{e}");
        let fits = format!(r#"{{"token":"{}"}}"#, "a".repeat(MAX_TOKEN_BYTES));
        assert!(parse_token(fits.as_bytes()).is_ok());
    }

    #[test]
    fn the_token_cache_is_bounded_dropping_expired_then_soonest_to_expire() {
        let key = |i: usize| TokenKey {
            host: "r.example".into(),
            scope: format!("repository:p{i}:pull"),
            credential: None,
        };
        let now = Instant::now();
        let token = |secs: u64| CachedToken {
            token: "t".into(),
            valid_until: now + Duration::from_secs(secs),
        };
        let mut tokens = HashMap::new();
        for i in 0..MAX_CACHED_TOKENS {
            cache_token(&mut tokens, key(i), token(100 + i as u64));
        }
        assert_eq!(tokens.len(), MAX_CACHED_TOKENS);
        cache_token(&mut tokens, key(MAX_CACHED_TOKENS), token(10_000));
        assert_eq!(tokens.len(), MAX_CACHED_TOKENS);
        assert!(!tokens.contains_key(&key(0)), "the soonest to expire went");
        assert!(tokens.contains_key(&key(MAX_CACHED_TOKENS)));
        // Expired tokens go first, all of them.
        for i in 0..10 {
            tokens.get_mut(&key(100 + i)).unwrap().valid_until = now;
        }
        cache_token(&mut tokens, key(MAX_CACHED_TOKENS + 1), token(10_000));
        assert_eq!(tokens.len(), MAX_CACHED_TOKENS - 9);
        assert!(tokens.contains_key(&key(1)));
    }

    #[test]
    fn retries_are_counted_for_at_most_max_hosts_then_as_other() {
        let agent = ureq::Agent::new_with_defaults();
        let client = RegistryClient::new(agent, HashSet::new(), 1, Duration::from_secs(1), 0);
        for i in 0..MAX_HOSTS + 50 {
            client.count_retries(&format!("r{i}.example"), 1);
        }
        client.count_retries("R0.example", 1);
        let counted = client.retries_by_host();
        assert_eq!(counted.len(), MAX_HOSTS + 1);
        assert!(counted.contains(&("other".to_string(), 50)), "{counted:?}");
        assert!(counted.contains(&("r0.example".to_string(), 2)));
    }

    #[test]
    fn globs() {
        assert!(glob_match(
            b"registry.local/legacy/*",
            b"registry.local/legacy/a/b:1"
        ));
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"a*b*c", b"aXXbYYc"));
        assert!(!glob_match(b"a*b", b"aXXc"));
        assert!(!glob_match(b"nginx", b"nginx:1"));
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Own {
        name: String,
        #[serde(default)]
        other: u32,
    }

    fn read(text: &str) -> Result<(Own, RegistryKeys), String> {
        serde_saphyr::with_deserializer_from_str(text, |de| RegistryKeys::split(de))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn shared_keys_are_taken_and_unknown_keys_list_every_key() {
        let (own, keys) = read(
            "docker_config_file: c.json\nname: n\ntls: {insecure_skip_verify: true}\nplain_http_registries: [a:5000]\nmax_concurrency_per_registry: 2\n",
        )
        .unwrap();
        assert_eq!(
            own,
            Own {
                name: "n".into(),
                other: 0
            }
        );
        assert_eq!(keys.docker_config_file.unwrap().value, "c.json");
        assert!(keys.connection.tls.unwrap().insecure_skip_verify);
        assert_eq!(keys.plain_http_registries[0].value, "a:5000");
        assert_eq!(keys.max_concurrency_per_registry.unwrap().value, 2);
        let e = read("name: n\nnmae: m\n").unwrap_err();
        assert!(
            e.contains(
                "unknown field `nmae`, expected one of name, other, docker_config_file, plain_http_registries, max_concurrency_per_registry, retries, mirrors, tls, proxy_url,"
            ),
            "{e}"
        );
        assert!(read("name: n\ntls: 3\n").is_err());
    }
}
