//! `kind: registry`: do images exist in their registries? Also the registry client that
//! `kind: kubernetes_images` shares.
//!
//! One check of an image is `HEAD /v2/<name>/manifests/<reference>` with the four
//! manifest and index media types in `Accept` (a registry answers 404 for an index it
//! was not told the client accepts). A 401 challenge is answered once: `Bearer` fetches
//! a token from the realm (anonymously, or with Basic credentials from a docker config)
//! and caches it per registry, scope and credential until `expires_in`; `Basic` sends the
//! credentials. HEAD never counts against Docker Hub's pull quota, so a manifest is only
//! fetched with GET when a registry refuses HEAD itself (405).
//!
//! What could not be determined (401, 403, 429, 5xx, timeouts) is a status of its own,
//! never "absent": `sonde_image_available` has no sample then. A 429 stops every request
//! to that registry until the time it names. Each registry gets at most
//! `max_concurrency_per_registry` requests at once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use serde_saphyr::Spanned;
use ureq::http::{Method, Request, Response};

use super::image_ref::ImageRef;
use super::{BuildContext, Check, RunContext, RunOutput};
use crate::checks::http::base64;
use crate::client::{self, AgentOptions, TlsSpec};
use crate::config::Problem;
use crate::metrics::{FamilySet, MetricType};

const AVAILABLE: &str = "sonde_image_available";
const AVAILABLE_HELP: &str = "1 if the image's manifest exists in its registry, 0 if the registry says it does not; no sample while that cannot be determined.";
const STATUS: &str = "sonde_image_check_status";
const STATUS_HELP: &str = "1 for the current status of the image check, 0 for the other statuses.";

/// Every manifest and index media type a registry may serve for a tag or digest.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Default of `max_concurrency_per_registry`.
const DEFAULT_PER_REGISTRY: usize = 4;
/// Most worker threads one run uses for registry requests.
const MAX_WORKERS: usize = 32;
/// Largest token response read.
const TOKEN_BODY_LIMIT: u64 = 1 << 20;
/// Largest manifest read by the GET fallback.
const MANIFEST_BODY_LIMIT: u64 = 4 << 20;
/// Lifetime of a token whose response has no `expires_in` (distribution's token spec).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Wait after a 429 without a usable `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Longest wait a `Retry-After` can impose.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);
/// Largest docker config file read.
const DOCKER_CONFIG_LIMIT: u64 = 1 << 20;

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
}

impl Outcome {
    fn new(status: Status, detail: impl Into<String>) -> Outcome {
        Outcome {
            status,
            detail: detail.into(),
        }
    }
}

/// Writes `sonde_image_check_status` lines for one image: the current status 1, the
/// others 0.
pub fn status_samples(
    m: &mut FamilySet,
    id: crate::metrics::FamilyId,
    labels: &[(&str, &str)],
    current: Status,
) {
    let mut all: Vec<(&str, &str)> = labels.to_vec();
    all.push(("status", ""));
    let last = all.len() - 1;
    for s in Status::ALL {
        all[last].1 = s.as_str();
        m.sample(id, &all, if s == current { 1.0 } else { 0.0 });
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
        format!(
            "Basic {}",
            base64(format!("{}:{}", self.username, self.password).as_bytes())
        )
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
        for (key, entry) in auths.into_iter().flatten() {
            let Ok(entry) = serde_json::from_value::<AuthEntry>(entry.clone()) else {
                skipped.push(format!("{key:?}: not an object of strings"));
                continue;
            };
            let credential = match (&entry.auth, &entry.username, &entry.password) {
                (Some(auth), _, _) if !auth.is_empty() => {
                    let Some(decoded) = base64_decode(auth) else {
                        skipped.push(format!("{key:?}: \"auth\" is not base64"));
                        continue;
                    };
                    let text = String::from_utf8_lossy(&decoded).into_owned();
                    let Some((u, p)) = text.split_once(':') else {
                        skipped.push(format!("{key:?}: \"auth\" is not user:password"));
                        continue;
                    };
                    Credential {
                        username: u.to_string(),
                        password: p.to_string(),
                    }
                }
                (_, Some(u), Some(p)) if !u.is_empty() => Credential {
                    username: u.clone(),
                    password: p.clone(),
                },
                _ => {
                    skipped.push(format!(
                        "{key:?}: no \"auth\" or \"username\"/\"password\" (identity tokens and credential helpers are not supported)"
                    ));
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

/// Standard base64 (padding optional, whitespace ignored); `None` when malformed.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    let mut padding = 0;
    for b in text.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding += 1;
                continue;
            }
            b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => return None,
        };
        if padding > 0 {
            return None;
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if padding > 2 || bits >= 6 {
        return None;
    }
    Some(out)
}

/// A docker config file that is re-read every run, so rotated credentials are used;
/// while it cannot be read, its last good content is.
#[derive(Debug)]
pub struct DockerConfigFile {
    path: PathBuf,
    last: Mutex<Keyring>,
}

impl DockerConfigFile {
    /// Reads the file once; an error names the file.
    pub fn load(path: PathBuf) -> Result<DockerConfigFile, String> {
        let keyring = read_docker_config(&path)?;
        Ok(DockerConfigFile {
            path,
            last: Mutex::new(keyring),
        })
    }

    /// The current credentials.
    pub fn keyring(&self, check: &str) -> Keyring {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        match read_docker_config(&self.path) {
            Ok(k) => *last = k,
            Err(e) => log::warn!(
                "check={check} msg=\"cannot re-read the docker config; using its last content\" error={e:?}"
            ),
        }
        last.clone()
    }
}

fn read_docker_config(path: &std::path::Path) -> Result<Keyring, String> {
    let bytes = client::read_capped(path, DOCKER_CONFIG_LIMIT)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let (keyring, skipped) =
        Keyring::parse(&bytes, false).map_err(|e| format!("{}: {e}", path.display()))?;
    for s in skipped {
        log::warn!(
            "msg=\"docker config entry skipped\" file={:?} entry={s:?}",
            path.display().to_string()
        );
    }
    Ok(keyring)
}

// ---------------------------------------------------------------------------------
// The shared YAML keys

/// The keys `kind: registry` and `kind: kubernetes_images` share, as written.
#[derive(Clone, Copy, Debug)]
pub struct RegistryKeys<'a> {
    /// `docker_config_file`
    pub docker_config_file: Option<&'a Spanned<String>>,
    /// `tls`
    pub tls: Option<&'a TlsSpec>,
    /// `plain_http_registries`
    pub plain_http_registries: &'a [Spanned<String>],
    /// `max_concurrency_per_registry`
    pub max_concurrency_per_registry: Option<&'a Spanned<usize>>,
}

/// The shared keys, validated: a client and the docker config.
#[derive(Debug)]
pub struct RegistrySetup {
    /// The registry client (keeps tokens and rate limits across runs).
    pub client: RegistryClient,
    /// `docker_config_file`, when set.
    pub docker_config: Option<DockerConfigFile>,
}

impl RegistryKeys<'_> {
    /// Validates the keys; problems carry their YAML location.
    pub fn build(&self, ctx: &BuildContext) -> Result<RegistrySetup, Vec<Problem>> {
        let mut problems = Vec::new();
        let docker_config = match self.docker_config_file {
            None => None,
            Some(file) => match DockerConfigFile::load(ctx.resolve(&file.value)) {
                Ok(d) => Some(d),
                Err(e) => {
                    problems.push(ctx.problem(
                        file.referenced,
                        format!("docker_config_file: cannot use {e}"),
                    ));
                    None
                }
            },
        };
        let mut plain_http = HashSet::new();
        for host in self.plain_http_registries {
            let h = host.value.trim().to_ascii_lowercase();
            let valid = !h.is_empty()
                && !h.contains(['/', ' '])
                && ImageRef::parse(&format!("{h}/x")).is_ok_and(|r| r.domain == h);
            if valid {
                plain_http.insert(h);
            } else {
                problems.push(ctx.problem(
                    host.referenced,
                    format!(
                        "plain_http_registries: {:?} is not a registry host (write host or host:port, e.g. localhost:5000)",
                        host.value
                    ),
                ));
            }
        }
        let per_registry = match self.max_concurrency_per_registry {
            None => DEFAULT_PER_REGISTRY,
            Some(n) if (1..=64).contains(&n.value) => n.value,
            Some(n) => {
                problems.push(ctx.problem(
                    n.referenced,
                    "max_concurrency_per_registry must be between 1 and 64",
                ));
                1
            }
        };
        let options = AgentOptions {
            max_redirects: 5,
            pool: true,
            ..AgentOptions::default()
        };
        let agent = ctx.agent(
            self.tls,
            &options,
            serde_saphyr::Location::UNKNOWN,
            &mut problems,
        );
        match agent {
            Some(agent) if problems.is_empty() => Ok(RegistrySetup {
                client: RegistryClient {
                    agent,
                    plain_http,
                    per_registry,
                    request_timeout: (ctx.meta.timeout / 2).max(Duration::from_secs(1)),
                    tokens: Mutex::new(HashMap::new()),
                    basic_hosts: Mutex::new(HashSet::new()),
                    blocked: Mutex::new(HashMap::new()),
                },
                docker_config,
            }),
            _ => Err(problems),
        }
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
    /// Longest single request (half the check's timeout, at least 1 s), so a registry
    /// that hangs costs one image, not the run.
    request_timeout: Duration,
    tokens: Mutex<HashMap<TokenKey, CachedToken>>,
    /// Hosts that challenged with Basic: credentials go along on the first request.
    basic_hosts: Mutex<HashSet<String>>,
    /// Hosts that answered 429, with the time before which they get no request.
    blocked: Mutex<HashMap<String, Instant>>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("plain_http", &self.plain_http)
            .field("per_registry", &self.per_registry)
            .finish_non_exhaustive()
    }
}

/// One image to check, with the credential to use for it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Job {
    /// The image.
    pub image: ImageRef,
    /// Credentials for its registry, if any.
    pub credential: Option<Credential>,
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RegistryClient {
    fn is_plain(&self, host: &str) -> bool {
        self.plain_http.contains(&host.to_ascii_lowercase())
    }

    /// Checks every job, at most `max_concurrency_per_registry` at once per registry;
    /// `None` for a job not started before the deadline or a cancel.
    pub fn check_all(&self, jobs: &[Job], ctx: &RunContext) -> Vec<Option<Outcome>> {
        struct Queue {
            by_host: HashMap<String, VecDeque<usize>>,
            in_flight: HashMap<String, usize>,
            queued: usize,
        }
        let mut by_host: HashMap<String, VecDeque<usize>> = HashMap::new();
        for (i, job) in jobs.iter().enumerate() {
            by_host
                .entry(job.image.registry_host().to_ascii_lowercase())
                .or_default()
                .push_back(i);
        }
        let hosts = by_host.len();
        let queue = Mutex::new(Queue {
            by_host,
            in_flight: HashMap::new(),
            queued: jobs.len(),
        });
        let wake = Condvar::new();
        let slots: Vec<Mutex<Option<Outcome>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
        let work = || {
            loop {
                let (index, host) = {
                    let mut q = lock(&queue);
                    loop {
                        if q.queued == 0
                            || ctx.cancel.load(Ordering::Relaxed)
                            || Instant::now() >= ctx.deadline
                        {
                            return;
                        }
                        let per = self.per_registry;
                        let Queue {
                            by_host, in_flight, ..
                        } = &mut *q;
                        let pick = by_host.iter_mut().find_map(|(host, list)| {
                            let busy = in_flight.get(host).copied().unwrap_or(0);
                            if busy < per {
                                list.pop_front().map(|i| (i, host.clone()))
                            } else {
                                None
                            }
                        });
                        if let Some((i, host)) = pick {
                            q.queued -= 1;
                            *q.in_flight.entry(host.clone()).or_default() += 1;
                            break (i, host);
                        }
                        let wait = ctx
                            .deadline
                            .saturating_duration_since(Instant::now())
                            .min(Duration::from_millis(200));
                        q = wake
                            .wait_timeout(q, wait)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    }
                };
                let job = &jobs[index];
                let outcome = self.check(&job.image, job.credential.as_ref(), ctx.deadline);
                *lock(&slots[index]) = Some(outcome);
                let mut q = lock(&queue);
                if let Some(n) = q.in_flight.get_mut(&host) {
                    *n = n.saturating_sub(1);
                }
                drop(q);
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
        slots
            .into_iter()
            .map(|s| s.into_inner().unwrap_or_else(PoisonError::into_inner))
            .collect()
    }

    /// Checks one image.
    pub fn check(
        &self,
        image: &ImageRef,
        credential: Option<&Credential>,
        deadline: Instant,
    ) -> Outcome {
        let host = image.registry_host().to_string();
        let host_key = host.to_ascii_lowercase();
        if let Some(until) = lock(&self.blocked).get(&host_key).copied() {
            let now = Instant::now();
            if until > now {
                return Outcome::new(
                    Status::RateLimited,
                    format!(
                        "{host} answered 429; no request for another {}s",
                        (until - now).as_secs() + 1
                    ),
                );
            }
        }
        let scheme = if self.is_plain(&host) || self.is_plain(&image.domain) {
            "http"
        } else {
            "https"
        };
        let url = format!(
            "{scheme}://{host}/v2/{}/manifests/{}",
            image.path,
            image.reference()
        );
        let scope = format!("repository:{}:pull", image.path);
        let token_key = TokenKey {
            host: host_key.clone(),
            scope: scope.clone(),
            credential: credential.cloned(),
        };
        let now = Instant::now();
        let cached = lock(&self.tokens)
            .get(&token_key)
            .filter(|t| t.valid_until > now)
            .map(|t| t.token.clone());
        let mut tried_basic = false;
        let mut authorization = match (cached, credential) {
            (Some(token), _) => Some(format!("Bearer {token}")),
            (None, Some(c)) if lock(&self.basic_hosts).contains(&host_key) => {
                tried_basic = true;
                Some(c.basic())
            }
            _ => None,
        };
        let mut tried_token = false;
        let mut method = Method::HEAD;
        // At most: a challenge answered, a token refreshed, a GET fallback.
        for _ in 0..4 {
            let answer = match self.send(&method, &url, authorization.as_deref(), deadline) {
                Ok(a) => a,
                Err(outcome) => return outcome,
            };
            let what = format!("{method} {url}: HTTP {}", answer.status);
            match answer.status {
                200..=299 => {
                    if let (Some(want), Some(got)) = (&image.digest, &answer.digest)
                        && want != got
                    {
                        return Outcome::new(
                            Status::Error,
                            format!("{what}, but the registry names digest {got}"),
                        );
                    }
                    return Outcome::new(Status::Available, what);
                }
                404 => return Outcome::new(Status::Absent, what),
                401 => {
                    let bearer = answer.challenges.iter().find_map(|c| match c {
                        Challenge::Bearer { realm, service } => Some((realm, service)),
                        _ => None,
                    });
                    let basic = answer.challenges.contains(&Challenge::Basic);
                    if let Some((realm, service)) = bearer
                        && !tried_token
                    {
                        tried_token = true;
                        let token = match self.fetch_token(
                            &host,
                            realm,
                            service.as_deref(),
                            &scope,
                            credential,
                            deadline,
                        ) {
                            Ok(t) => t,
                            Err(outcome) => return outcome,
                        };
                        authorization = Some(format!("Bearer {}", token.token));
                        lock(&self.tokens).insert(token_key.clone(), token);
                        continue;
                    }
                    if basic && !tried_basic {
                        let Some(c) = credential else {
                            return Outcome::new(
                                Status::Unauthorized,
                                format!(
                                    "{what}: the registry wants Basic credentials and none are configured for {}",
                                    image.domain
                                ),
                            );
                        };
                        tried_basic = true;
                        lock(&self.basic_hosts).insert(host_key.clone());
                        authorization = Some(c.basic());
                        continue;
                    }
                    let why = match (&answer.challenges[..], credential) {
                        ([], _) => "no usable challenge",
                        (_, Some(_)) => "the credentials were rejected",
                        (_, None) => "the registry wants credentials",
                    };
                    return Outcome::new(Status::Unauthorized, format!("{what}: {why}"));
                }
                403 => return Outcome::new(Status::Forbidden, what),
                429 => {
                    let wait = self.block(&host_key, answer.retry_after);
                    return Outcome::new(
                        Status::RateLimited,
                        format!("{what}; no request to {host} for {}s", wait.as_secs()),
                    );
                }
                405 | 501 if method == Method::HEAD => {
                    // The registry does not do HEAD: one GET answers instead.
                    method = Method::GET;
                    continue;
                }
                500..=599 => return Outcome::new(Status::Unreachable, what),
                _ => return Outcome::new(Status::Error, format!("{what} (unexpected)")),
            }
        }
        Outcome::new(
            Status::Unauthorized,
            format!("{url}: the registry kept asking for credentials"),
        )
    }

    /// Records a 429 and returns how long the host is left alone.
    fn block(&self, host_key: &str, retry_after: Option<Duration>) -> Duration {
        let wait = retry_after
            .unwrap_or(DEFAULT_RETRY_AFTER)
            .min(MAX_RETRY_AFTER);
        lock(&self.blocked).insert(host_key.to_string(), Instant::now() + wait);
        wait
    }

    /// The time a request may take: the rest of the run, at most `request_timeout`.
    fn budget(&self, deadline: Instant) -> Option<Duration> {
        let left = deadline.saturating_duration_since(Instant::now());
        (!left.is_zero()).then(|| left.min(self.request_timeout))
    }

    fn send(
        &self,
        method: &Method,
        url: &str,
        authorization: Option<&str>,
        deadline: Instant,
    ) -> Result<Answer, Outcome> {
        let Some(budget) = self.budget(deadline) else {
            return Err(Outcome::new(
                Status::Unreachable,
                format!("{url}: no time left in the run"),
            ));
        };
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(url)
            .header("accept", ACCEPT);
        if let Some(a) = authorization {
            builder = builder.header("authorization", a);
        }
        let request = builder
            .body(())
            .map_err(|e| Outcome::new(Status::InvalidReference, format!("{url}: {e}")))?;
        let result = client::send(&self.agent, request, budget);
        let trace = client::take_trace();
        let mut response = result.map_err(|e| transport_outcome(url, &e, &trace))?;
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

    fn fetch_token(
        &self,
        host: &str,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        credential: Option<&Credential>,
        deadline: Instant,
    ) -> Result<CachedToken, Outcome> {
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
            url.push_str(&percent_encode(s));
            url.push('&');
        }
        url.push_str("scope=");
        url.push_str(&percent_encode(scope));
        let Some(budget) = self.budget(deadline) else {
            return Err(Outcome::new(
                Status::Unreachable,
                format!("{realm}: no time left in the run"),
            ));
        };
        let mut builder = Request::builder().method(Method::GET).uri(&url);
        if let Some(c) = credential {
            builder = builder.header("authorization", c.basic());
        }
        let request = builder
            .body(())
            .map_err(|e| Outcome::new(Status::Error, format!("{realm}: bad token request: {e}")))?;
        let result = client::send(&self.agent, request, budget);
        let trace = client::take_trace();
        let mut response = result.map_err(|e| transport_outcome(realm, &e, &trace))?;
        let status = response.status().as_u16();
        let what = format!("token service {realm}: HTTP {status}");
        let retry_after = answer_of(&response).retry_after;
        let body = response
            .body_mut()
            .with_config()
            .limit(TOKEN_BODY_LIMIT)
            .read_to_vec();
        match status {
            200 => {}
            401 => {
                let why = if credential.is_some() {
                    "the credentials were rejected"
                } else {
                    "anonymous access refused"
                };
                return Err(Outcome::new(Status::Unauthorized, format!("{what}: {why}")));
            }
            403 => return Err(Outcome::new(Status::Forbidden, what)),
            429 => {
                let wait = self.block(&host.to_ascii_lowercase(), retry_after);
                return Err(Outcome::new(
                    Status::RateLimited,
                    format!("{what}; no request to {host} for {}s", wait.as_secs()),
                ));
            }
            500..=599 => return Err(Outcome::new(Status::Unreachable, what)),
            _ => return Err(Outcome::new(Status::Error, format!("{what} (unexpected)"))),
        }
        let body = body.map_err(|e| {
            Outcome::new(
                Status::Unreachable,
                format!("{what}: reading the body: {e}"),
            )
        })?;
        parse_token(&body).map_err(|e| Outcome::new(Status::Error, format!("{what}: {e}")))
    }
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

fn transport_outcome(url: &str, e: &ureq::Error, trace: &client::Trace) -> Outcome {
    use std::io::ErrorKind;
    let why = match e {
        ureq::Error::Timeout(_) => "timed out",
        ureq::Error::Io(io) if matches!(io.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
            "timed out"
        }
        ureq::Error::HostNotFound => "the host name does not resolve",
        _ if trace.dns_failed => "the host name does not resolve",
        _ if trace.tls_failed => "TLS handshake or certificate verification failed",
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => {
            "TLS handshake or certificate verification failed"
        }
        ureq::Error::Io(_) | ureq::Error::ConnectionFailed if !trace.connected => "cannot connect",
        ureq::Error::Io(_) | ureq::Error::ConnectionFailed => "the connection failed",
        _ => {
            return Outcome::new(Status::Error, format!("{url}: {e}"));
        }
    };
    Outcome::new(Status::Unreachable, format!("{url}: {why}"))
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
            let after = &rest[eq + 1..];
            let (val, remaining) = if let Some(q) = after.strip_prefix('"') {
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
            } else {
                let e = after.find(',').unwrap_or(after.len());
                (after[..e].trim().to_string(), &after[e..])
            };
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

/// `Retry-After`: delay seconds or an HTTP date.
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(value)?;
    let now = now.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs() as i64;
    Some(Duration::from_secs(at.saturating_sub(now).max(0) as u64))
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) to Unix seconds.
fn parse_http_date(value: &str) -> Option<i64> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)? as u32
        + 1;
    let day: u32 = day.parse().ok()?;
    let year: i64 = year.parse().ok()?;
    let hms: Vec<u32> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    if !(1..=31).contains(&day) || *h > 23 || *m > 59 || *s > 60 {
        return None;
    }
    let days = crate::units::days_from_civil(year, month, day);
    Some(days * 86_400 + i64::from(h * 3600 + m * 60 + s))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------
// kind: registry

/// The YAML keys of `kind: registry`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySpec {
    images: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    docker_config_file: Option<Spanned<String>>,
    #[serde(default)]
    tls: Option<TlsSpec>,
    #[serde(default)]
    plain_http_registries: Vec<Spanned<String>>,
    #[serde(default)]
    max_concurrency_per_registry: Option<Spanned<usize>>,
}

/// One configured image.
#[derive(Debug)]
struct Target {
    /// As written; the value of the `image` label.
    label: String,
    parsed: Result<ImageRef, String>,
}

/// A configured registry check.
#[derive(Debug)]
pub struct RegistryCheck {
    check: String,
    targets: Vec<Target>,
    setup: RegistrySetup,
    /// Latest status per target (index into `targets`), kept across runs.
    last: Mutex<Vec<Option<Status>>>,
}

impl RegistryCheck {
    /// Validates the spec and builds the check.
    pub fn build(spec: &RegistrySpec, ctx: &BuildContext) -> Result<RegistryCheck, Vec<Problem>> {
        let mut problems = Vec::new();
        if spec.images.value.is_empty() {
            problems.push(ctx.problem(
                spec.images.referenced,
                "`images` is empty; list at least one image",
            ));
        }
        let mut seen = HashSet::new();
        let mut targets = Vec::new();
        for image in &spec.images.value {
            if !seen.insert(image.value.as_str()) {
                problems.push(ctx.problem(
                    image.referenced,
                    format!("image {:?} is listed twice", image.value),
                ));
                continue;
            }
            // A bad reference is reported by the check (status invalid_reference), not
            // refused here: a list maintained elsewhere must not stop every other check.
            targets.push(Target {
                label: image.value.clone(),
                parsed: ImageRef::parse(&image.value),
            });
        }
        let keys = RegistryKeys {
            docker_config_file: spec.docker_config_file.as_ref(),
            tls: spec.tls.as_ref(),
            plain_http_registries: &spec.plain_http_registries,
            max_concurrency_per_registry: spec.max_concurrency_per_registry.as_ref(),
        };
        let setup = match keys.build(ctx) {
            Ok(s) => Some(s),
            Err(mut p) => {
                problems.append(&mut p);
                None
            }
        };
        match setup {
            Some(setup) if problems.is_empty() => Ok(RegistryCheck {
                check: ctx.meta.name.clone(),
                last: Mutex::new(vec![None; targets.len()]),
                targets,
                setup,
            }),
            _ => Err(problems),
        }
    }
}

impl Check for RegistryCheck {
    fn run(&self, ctx: &RunContext) -> RunOutput {
        let keyring = self
            .setup
            .docker_config
            .as_ref()
            .map(|d| d.keyring(&self.check))
            .unwrap_or_default();
        // One job per distinct (image, credential), however many entries name it.
        let mut jobs: Vec<Job> = Vec::new();
        let mut job_of: HashMap<Job, usize> = HashMap::new();
        let mut target_job: Vec<Option<usize>> = Vec::with_capacity(self.targets.len());
        for t in &self.targets {
            let Ok(image) = &t.parsed else {
                target_job.push(None);
                continue;
            };
            let job = Job {
                image: image.checked(),
                credential: keyring.lookup(image).cloned(),
            };
            let index = *job_of.entry(job.clone()).or_insert_with(|| {
                jobs.push(job);
                jobs.len() - 1
            });
            target_job.push(Some(index));
        }
        let outcomes = self.setup.client.check_all(&jobs, ctx);
        let mut last = lock(&self.last);
        let mut m = FamilySet::new();
        let available = m.family(AVAILABLE, AVAILABLE_HELP, MetricType::Gauge);
        let status = m.family(STATUS, STATUS_HELP, MetricType::Gauge);
        let mut bad: Vec<String> = Vec::new();
        let mut not_checked = 0;
        for (i, t) in self.targets.iter().enumerate() {
            let outcome = match (&t.parsed, target_job[i]) {
                (Err(e), _) => Some(Outcome::new(Status::InvalidReference, e.clone())),
                (Ok(_), Some(j)) => outcomes.get(j).cloned().flatten(),
                (Ok(_), None) => None,
            };
            match &outcome {
                Some(o) => {
                    if o.status != Status::Available {
                        log::debug!(
                            "check={} image={:?} status={} detail={:?}",
                            self.check,
                            t.label,
                            o.status.as_str(),
                            o.detail
                        );
                        bad.push(format!("{}: {} ({})", t.label, o.status.as_str(), o.detail));
                    }
                    last[i] = Some(o.status);
                }
                None => {
                    not_checked += 1;
                }
            }
            // An image not reached this run keeps the status of its last check.
            let Some(current) = last[i] else { continue };
            let labels = [("check", self.check.as_str()), ("image", t.label.as_str())];
            if let Some(exists) = current.determined() {
                m.sample(available, &labels, if exists { 1.0 } else { 0.0 });
            }
            status_samples(&mut m, status, &labels, current);
        }
        let error = summarize(&bad, not_checked, self.targets.len(), "images");
        RunOutput {
            success: error.is_none(),
            error,
            families: m,
            targets: Vec::new(),
        }
    }
}

/// The run's error: how many targets were not available, with the first reason.
pub fn summarize(bad: &[String], not_checked: usize, total: usize, what: &str) -> Option<String> {
    let mut parts = Vec::new();
    match bad {
        [] => {}
        [one] => parts.push(one.clone()),
        [first, ..] => parts.push(format!(
            "{} of {total} {what} not available, e.g. {first}",
            bad.len()
        )),
    }
    if not_checked > 0 {
        parts.push(format!(
            "{not_checked} of {total} {what} not checked before the timeout"
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

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

    #[test]
    fn base64_round_trips() {
        for s in ["", "a", "ab", "abc", "user:pa:ss", "ünï"] {
            assert_eq!(base64_decode(&base64(s.as_bytes())).unwrap(), s.as_bytes());
        }
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

    #[test]
    fn percent_encoding() {
        assert_eq!(
            percent_encode("repository:library/nginx:pull"),
            "repository%3Alibrary%2Fnginx%3Apull"
        );
    }
}
