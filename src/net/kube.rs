//! The Kubernetes API-server client `kind: kubernetes_images` reads workloads and pull
//! secrets with.
//!
//! A [`Client`] is built from the configured [`Connection`] (without keys: the pod's
//! in-cluster server, service-account token and CA) and GETs JSON with a bearer token
//! that is re-read from its file after a 401 (bound service-account tokens rotate). [`Client::list`] pages apps/v1 and batch/v1
//! workload lists with `limit`/`continue`, restarting a list whose continue token
//! expired (410), and turns each object into a [`Workload`]: its containers and init
//! containers, its pull secrets, its service account. [`PullSecrets`] finds a workload's
//! registry credentials the way the kubelet does (the pod template's
//! `imagePullSecrets`, else those of its service account), fetching each Secret with
//! `get`: sonde never needs to list every Secret of the cluster. A 403 is logged with
//! the RBAC rule that is missing.
//!
//! Only the fields sonde uses are read; every other field of an object is ignored, and
//! a field sent as `null` reads as empty.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_saphyr::Location;

use crate::problem::Spanned;
use ureq::http::{Method, Request};

use crate::net::http::{self as client, AgentOptions, TlsSettings, TlsSpec};
use crate::net::oci::{Keyring, base64_decode};
use crate::net::secret::{Reread, Secret, secret_file};
use crate::problem::Problem;

/// Where a pod finds its service account's token (`token`) and CA (`ca.crt`).
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Items asked for per list page.
const PAGE_SIZE: usize = 500;
/// Largest list page read.
const LIST_BODY_LIMIT: u64 = 64 << 20;
/// Largest single object (Secret, ServiceAccount) read.
const OBJECT_BODY_LIMIT: u64 = 4 << 20;
/// Times a list restarts after 410 Gone before the run gives up on it.
const MAX_LIST_RESTARTS: usize = 3;

/// The workload kinds sonde reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkloadKind {
    /// apps/v1 Deployment
    Deployment,
    /// apps/v1 StatefulSet
    StatefulSet,
    /// apps/v1 DaemonSet
    DaemonSet,
    /// batch/v1 CronJob
    CronJob,
}

impl WorkloadKind {
    /// Every kind, in the order they are listed and exported.
    pub const ALL: [WorkloadKind; 4] = [
        WorkloadKind::Deployment,
        WorkloadKind::StatefulSet,
        WorkloadKind::DaemonSet,
        WorkloadKind::CronJob,
    ];

    /// The value of the `kind` label and of `workload_kinds`.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployment",
            WorkloadKind::StatefulSet => "statefulset",
            WorkloadKind::DaemonSet => "daemonset",
            WorkloadKind::CronJob => "cronjob",
        }
    }

    /// The API resource (`deployments`).
    pub fn resource(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployments",
            WorkloadKind::StatefulSet => "statefulsets",
            WorkloadKind::DaemonSet => "daemonsets",
            WorkloadKind::CronJob => "cronjobs",
        }
    }

    /// The API group (`apps`).
    pub fn group(self) -> &'static str {
        match self {
            WorkloadKind::CronJob => "batch",
            _ => "apps",
        }
    }

    /// The kind a [`WorkloadKind::name`] names.
    pub fn parse(text: &str) -> Option<WorkloadKind> {
        WorkloadKind::ALL.into_iter().find(|k| k.name() == text)
    }
}

// ---------------------------------------------------------------------------------
// The API server client

/// Why an API request failed.
#[derive(Debug)]
pub enum ApiError {
    /// The server answered with an error status; `message` is its Status message.
    Status {
        /// The HTTP status.
        code: u16,
        /// The `message` of the Status body, shortened; empty when there is none.
        message: String,
    },
    /// No usable answer (connect, TLS, timeout, I/O).
    Transport(String),
    /// The answer was not the expected JSON.
    Decode(String),
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Status { code, message } if message.is_empty() => write!(f, "HTTP {code}"),
            ApiError::Status { code, message } => write!(f, "HTTP {code}: {message}"),
            ApiError::Transport(e) => f.write_str(e),
            ApiError::Decode(e) => write!(f, "unexpected answer: {e}"),
        }
    }
}

/// A Kubernetes API server: base URL, TLS, and a bearer token re-read as it rotates.
pub struct Client {
    base: String,
    agent: ureq::Agent,
    /// The bearer token, re-read after a 401 (bound service-account tokens rotate).
    token: Option<Reread<Secret>>,
    /// The check's name, for log lines.
    check: String,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// Where the API server is and how sonde authenticates to it, as configured.
#[derive(Clone, Copy, Debug)]
pub struct Connection<'a> {
    /// `api_server`; the in-cluster server when unset.
    pub api_server: Option<&'a Spanned<String>>,
    /// `bearer_token_file`; the service account's token when unset.
    pub bearer_token_file: Option<&'a Spanned<String>>,
    /// `ca_file`; the service account's CA (when there is one) when unset.
    pub ca_file: Option<&'a Spanned<String>>,
}

/// Problems found while connecting, each naming the check.
struct Problems<'a> {
    check: &'a str,
    found: Vec<Problem>,
}

impl Problems<'_> {
    fn at(&mut self, at: Location, message: String) {
        self.found.push(Problem::at(at, Some(self.check), message));
    }

    fn unlocated(&mut self, message: String) {
        self.found.push(Problem {
            check: Some(self.check.to_string()),
            ..Problem::plain(message)
        });
    }
}

/// `api_server` as a base URL, or the in-cluster server without it.
fn server(key: Option<&Spanned<String>>, problems: &mut Problems) -> Option<String> {
    let Some(s) = key else {
        return in_cluster_server().map_err(|e| problems.unlocated(e)).ok();
    };
    let base = server_url(&s.value);
    if base.is_none() {
        problems.at(
            s.referenced,
            format!(
                "api_server {:?} must be an http:// or https:// URL, e.g. https://10.0.0.1:6443",
                s.value
            ),
        );
    }
    base
}

/// `text` as an API server base URL (trailing `/` removed), when it is an http:// or
/// https:// URL with a host and no query.
fn server_url(text: &str) -> Option<String> {
    let text = text.trim().trim_end_matches('/');
    text.parse::<ureq::http::Uri>()
        .ok()
        .filter(|u| matches!(u.scheme_str(), Some("http") | Some("https")))
        .filter(|u| u.host().is_some_and(|h| !h.is_empty()))
        .filter(|u| u.query().is_none())
        .map(|_| text.to_string())
}

/// `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`.
fn in_cluster_server() -> Result<String, String> {
    let host = std::env::var("KUBERNETES_SERVICE_HOST").unwrap_or_default();
    let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_default();
    if host.is_empty() || port.is_empty() {
        return Err(
            "api_server is not set and KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are not in the environment (sonde is not running in a pod); set api_server"
                .into(),
        );
    }
    if port.parse::<u16>().is_err() {
        return Err(format!("KUBERNETES_SERVICE_PORT {port:?} is not a port"));
    }
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    Ok(format!("https://{host}:{port}"))
}

/// `bearer_token_file`, or the service account's token (optional outside a pod, where
/// `api_server` is set).
fn bearer_token(
    keys: Connection,
    base_dir: &Path,
    problems: &mut Problems,
) -> Option<Reread<Secret>> {
    if let Some(f) = keys.bearer_token_file {
        return secret_file(base_dir.join(&f.value), "bearer token file")
            .map_err(|e| problems.at(f.referenced, format!("bearer_token_file: cannot read {e}")))
            .ok();
    }
    let default = Path::new(SERVICE_ACCOUNT_DIR).join("token");
    match secret_file(default, "service-account token") {
        Ok(t) => Some(t),
        // Outside a pod (e.g. `kubectl proxy`) there may be no token at all.
        Err(_) if keys.api_server.is_some() => None,
        Err(e) => {
            problems.unlocated(format!(
                "cannot read the service-account token ({e}); set bearer_token_file"
            ));
            None
        }
    }
}

/// The API server's agent: `ca_file`, else the service account's CA when there is one,
/// else the built-in roots. Redirects are not followed: an API server has no reason to
/// send one, and the bearer token must not follow it elsewhere.
fn api_agent(
    ca_file: Option<&Spanned<String>>,
    base_dir: &Path,
    problems: &mut Problems,
) -> Option<ureq::Agent> {
    let ca = ca_file.cloned().or_else(|| {
        let path = Path::new(SERVICE_ACCOUNT_DIR).join("ca.crt");
        path.exists()
            .then(|| Spanned::new(path.display().to_string(), Location::UNKNOWN))
    });
    let tls = match ca {
        None => TlsSettings::webpki(),
        Some(ca_file) => {
            let tls_spec = TlsSpec {
                ca_file: Some(ca_file),
                ..TlsSpec::default()
            };
            TlsSettings::load(&tls_spec, base_dir).unwrap_or_else(|(at, e)| {
                // The key is `ca_file` here, not `tls.ca_file`.
                let e = e.replacen("tls.ca_file", "ca_file", 1);
                if at == Location::UNKNOWN {
                    problems.unlocated(e);
                } else {
                    problems.at(at, e);
                }
                TlsSettings::webpki()
            })
        }
    };
    let options = AgentOptions {
        max_redirects: 0,
        pool: true,
        ..AgentOptions::default()
    };
    client::agent(&tls, &options)
        .map_err(|e| problems.unlocated(format!("ca_file: {e}")))
        .ok()
}

/// How a list's scope reads in messages: `namespace <name>` or `all namespaces`.
pub fn scope(namespace: Option<&str>) -> String {
    namespace.map_or_else(
        || "all namespaces".to_string(),
        |ns| format!("namespace {ns}"),
    )
}

/// Whether `s` can name a namespace (an RFC 1123 DNS label).
pub fn valid_namespace(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The RBAC rule a 403 says is missing, in ClusterRole syntax.
fn rbac_rule(group: &str, resource: &str, verb: &str) -> String {
    let group = if group.is_empty() { "''" } else { group };
    format!("{{apiGroups: [{group}], resources: [{resource}], verbs: [{verb}]}}")
}

impl Client {
    /// Validates a [`Connection`] (relative paths against `base_dir`) and builds the
    /// client; the in-cluster server, token and CA serve for keys not set. Problems name
    /// `check` and, where a key is at fault, its YAML location.
    pub fn connect(keys: Connection, base_dir: &Path, check: &str) -> Result<Client, Vec<Problem>> {
        let mut problems = Problems {
            check,
            found: Vec::new(),
        };
        let base = server(keys.api_server, &mut problems);
        let token = bearer_token(keys, base_dir, &mut problems);
        let agent = api_agent(keys.ca_file, base_dir, &mut problems);
        match (base, agent) {
            (Some(base), Some(agent)) if problems.found.is_empty() => Ok(Client {
                base,
                agent,
                token,
                check: check.to_string(),
            }),
            _ => Err(problems.found),
        }
    }

    /// Re-reads the token file now, so a run starts with the current token; the last
    /// token serves while the file cannot be read.
    pub fn reread_token(&self) {
        self.fresh_token();
    }

    fn fresh_token(&self) -> Option<String> {
        Some(self.token.as_ref()?.get(&self.check).expose().to_string())
    }

    fn current_token(&self) -> Option<String> {
        Some(self.token.as_ref()?.last().expose().to_string())
    }

    /// GETs `path` and decodes its JSON, reading at most `limit` bytes; a 401 re-reads
    /// the token and tries once more.
    pub fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        limit: u64,
        deadline: Instant,
    ) -> Result<T, ApiError> {
        let token = self.current_token();
        match self.attempt(path, token.as_deref(), limit, deadline) {
            Err(ApiError::Status { code: 401, message }) => {
                let fresh = self.fresh_token();
                if fresh.is_some() && fresh != token {
                    return self.attempt(path, fresh.as_deref(), limit, deadline);
                }
                Err(ApiError::Status { code: 401, message })
            }
            other => other,
        }
    }

    fn attempt<T: DeserializeOwned>(
        &self,
        path: &str,
        token: Option<&str>,
        limit: u64,
        deadline: Instant,
    ) -> Result<T, ApiError> {
        let budget = deadline.saturating_duration_since(Instant::now());
        if budget.is_zero() {
            return Err(ApiError::Transport("no time left in the run".into()));
        }
        let url = format!("{}{path}", self.base);
        let mut builder = Request::builder()
            .method(Method::GET)
            .uri(&url)
            .header("accept", "application/json");
        if let Some(t) = token {
            builder = builder.header("authorization", format!("Bearer {t}"));
        }
        let request = builder
            .body(())
            .map_err(|e| ApiError::Transport(format!("bad request {path}: {e}")))?;
        let exchange = client::send(&self.agent, request, budget);
        let trace = exchange.trace;
        let mut response = exchange
            .response
            .map_err(|e| ApiError::Transport(client::describe(&e, &trace, &self.base)))?;
        let code = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => {
                    ApiError::Decode(format!("the response is larger than {limit} bytes"))
                }
                e => ApiError::Transport(format!("reading {path}: {e}")),
            })?;
        if code != 200 {
            return Err(ApiError::Status {
                code,
                message: status_message(&body),
            });
        }
        serde_json::from_slice(&body).map_err(|e| ApiError::Decode(e.to_string()))
    }

    /// Lists one kind in one namespace (or all), following `continue` tokens; init
    /// containers count as containers with `include_init`. A failure is logged (a 403
    /// with the RBAC rule that is missing) before it is returned.
    pub fn list(
        &self,
        kind: WorkloadKind,
        namespace: Option<&str>,
        include_init: bool,
        deadline: Instant,
    ) -> Result<Vec<Workload>, ApiError> {
        let listed = self.list_pages(kind, namespace, include_init, deadline);
        if let Err(e) = &listed {
            self.log_list_failure(kind, namespace, e);
        }
        listed
    }

    fn log_list_failure(&self, kind: WorkloadKind, namespace: Option<&str>, e: &ApiError) {
        let where_ = scope(namespace);
        match e {
            ApiError::Status { code: 403, message } => log::error!(
                "check={} msg=\"forbidden (403): sonde may not list {} in {where_}; add the RBAC rule to the ClusterRole bound to its service account\" rule=\"{}\" api_message={message:?}",
                self.check,
                kind.resource(),
                rbac_rule(kind.group(), kind.resource(), "list"),
            ),
            e => log::warn!(
                "check={} msg=\"cannot list {}\" scope={where_:?} error={:?}",
                self.check,
                kind.resource(),
                e.to_string()
            ),
        }
    }

    fn list_pages(
        &self,
        kind: WorkloadKind,
        namespace: Option<&str>,
        include_init: bool,
        deadline: Instant,
    ) -> Result<Vec<Workload>, ApiError> {
        let gv = match kind.group() {
            "batch" => "batch/v1",
            _ => "apps/v1",
        };
        let path = match namespace {
            Some(ns) => format!(
                "/apis/{gv}/namespaces/{}/{}",
                client::percent_encode(ns),
                kind.resource()
            ),
            None => format!("/apis/{gv}/{}", kind.resource()),
        };
        let mut restarts = 0;
        'list: loop {
            let mut items = Vec::new();
            let mut token = String::new();
            loop {
                let mut url = format!("{path}?limit={PAGE_SIZE}");
                if !token.is_empty() {
                    url.push_str("&continue=");
                    url.push_str(&client::percent_encode(&token));
                }
                match self.get::<ListPage>(&url, LIST_BODY_LIMIT, deadline) {
                    Ok(page) => {
                        items.extend(
                            page.items
                                .into_iter()
                                .map(|o| Workload::from_object(kind, o, include_init)),
                        );
                        token = page.metadata.continue_token;
                        if token.is_empty() {
                            return Ok(items);
                        }
                    }
                    Err(ApiError::Status { code: 410, .. })
                        if !token.is_empty() && restarts < MAX_LIST_RESTARTS =>
                    {
                        restarts += 1;
                        log::info!(
                            "check={} msg=\"the continue token expired (410); listing {} again from the start\"",
                            self.check,
                            kind.resource()
                        );
                        continue 'list;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

/// The `message` of a Kubernetes `Status` body, shortened.
fn status_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct StatusBody {
        #[serde(default)]
        message: Option<String>,
    }
    let message = serde_json::from_slice::<StatusBody>(body)
        .ok()
        .and_then(|s| s.message)
        .unwrap_or_default();
    message.chars().take(300).collect()
}

// ---------------------------------------------------------------------------------
// The shapes sonde reads from the API (every other field is ignored)

/// A field the API may send as `null`.
fn nullable<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize)]
struct ListPage {
    #[serde(default, deserialize_with = "nullable")]
    metadata: ListMeta,
    #[serde(default, deserialize_with = "nullable")]
    items: Vec<WorkloadObject>,
}

#[derive(Default, Deserialize)]
struct ListMeta {
    #[serde(default, rename = "continue", deserialize_with = "nullable")]
    continue_token: String,
}

#[derive(Deserialize)]
struct WorkloadObject {
    metadata: ObjectMeta,
    #[serde(default, deserialize_with = "nullable")]
    spec: WorkloadSpec,
}

#[derive(Deserialize)]
struct ObjectMeta {
    name: String,
    #[serde(default, deserialize_with = "nullable")]
    namespace: String,
}

#[derive(Default, Deserialize)]
struct WorkloadSpec {
    /// Deployments, StatefulSets, DaemonSets.
    #[serde(default, deserialize_with = "nullable")]
    template: PodTemplate,
    /// CronJobs.
    #[serde(default, rename = "jobTemplate", deserialize_with = "nullable")]
    job_template: JobTemplate,
}

#[derive(Default, Deserialize)]
struct JobTemplate {
    #[serde(default, deserialize_with = "nullable")]
    spec: JobSpec,
}

#[derive(Default, Deserialize)]
struct JobSpec {
    #[serde(default, deserialize_with = "nullable")]
    template: PodTemplate,
}

#[derive(Default, Deserialize)]
struct PodTemplate {
    #[serde(default, deserialize_with = "nullable")]
    spec: PodSpec,
}

#[derive(Default, Deserialize)]
struct PodSpec {
    #[serde(default, deserialize_with = "nullable")]
    containers: Vec<ContainerSpec>,
    #[serde(default, rename = "initContainers", deserialize_with = "nullable")]
    init_containers: Vec<ContainerSpec>,
    #[serde(default, rename = "imagePullSecrets", deserialize_with = "nullable")]
    image_pull_secrets: Vec<LocalObjectReference>,
    #[serde(default, rename = "serviceAccountName", deserialize_with = "nullable")]
    service_account_name: String,
    /// The deprecated alias of `serviceAccountName`.
    #[serde(default, rename = "serviceAccount", deserialize_with = "nullable")]
    service_account: String,
}

#[derive(Default, Deserialize)]
struct ContainerSpec {
    #[serde(default, deserialize_with = "nullable")]
    name: String,
    #[serde(default, deserialize_with = "nullable")]
    image: String,
}

#[derive(Default, Deserialize)]
struct LocalObjectReference {
    #[serde(default, deserialize_with = "nullable")]
    name: String,
}

#[derive(Deserialize)]
struct ServiceAccount {
    #[serde(default, rename = "imagePullSecrets", deserialize_with = "nullable")]
    image_pull_secrets: Vec<LocalObjectReference>,
}

#[derive(Deserialize)]
struct SecretObject {
    #[serde(default, rename = "type", deserialize_with = "nullable")]
    secret_type: String,
    #[serde(default, deserialize_with = "nullable")]
    data: BTreeMap<String, String>,
}

/// The names of non-empty references, in order.
fn reference_names(references: Vec<LocalObjectReference>) -> Vec<String> {
    references
        .into_iter()
        .map(|r| r.name)
        .filter(|n| !n.is_empty())
        .collect()
}

/// One workload as far as images go.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Its kind.
    pub kind: WorkloadKind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// (container name, image as written), containers then init containers.
    pub containers: Vec<(String, String)>,
    /// The pod template's `imagePullSecrets`.
    pub pull_secrets: Vec<String>,
    /// The pod template's service account (`default` when unset).
    pub service_account: String,
}

impl Workload {
    fn from_object(kind: WorkloadKind, object: WorkloadObject, init: bool) -> Workload {
        let WorkloadSpec {
            template,
            job_template,
        } = object.spec;
        let pod = match kind {
            WorkloadKind::CronJob => job_template.spec.template.spec,
            _ => template.spec,
        };
        let mut containers: Vec<(String, String)> = pod
            .containers
            .into_iter()
            .map(|c| (c.name, c.image))
            .collect();
        if init {
            containers.extend(pod.init_containers.into_iter().map(|c| (c.name, c.image)));
        }
        let service_account = [pod.service_account_name, pod.service_account]
            .into_iter()
            .find(|s| !s.is_empty())
            .unwrap_or_else(|| "default".to_string());
        Workload {
            kind,
            namespace: object.metadata.namespace,
            name: object.metadata.name,
            containers,
            pull_secrets: reference_names(pod.image_pull_secrets),
            service_account,
        }
    }
}

// ---------------------------------------------------------------------------------
// Pull secrets

/// Registry credentials looked up during one run: each Secret and ServiceAccount is
/// fetched at most once, and each problem is logged once.
pub struct PullSecrets<'a> {
    client: &'a Client,
    deadline: Instant,
    secrets: HashMap<(String, String), Option<Keyring>>,
    service_accounts: HashMap<(String, String), Vec<String>>,
    merged: HashMap<(String, Vec<String>), Keyring>,
    logged: HashSet<String>,
}

impl<'a> PullSecrets<'a> {
    /// An empty lookup whose requests end by `deadline`.
    pub fn new(client: &'a Client, deadline: Instant) -> PullSecrets<'a> {
        PullSecrets {
            client,
            deadline,
            secrets: HashMap::new(),
            service_accounts: HashMap::new(),
            merged: HashMap::new(),
            logged: HashSet::new(),
        }
    }

    fn log_once(&mut self, key: String, line: impl FnOnce() -> String) {
        if self.logged.insert(key) {
            log::warn!("{}", line());
        }
    }

    fn forbidden(&mut self, resource: &str, namespace: &str, name: &str, message: &str) {
        let check = self.client.check.clone();
        self.log_once(format!("403 {resource} {namespace}"), || {
            format!(
                "check={check} msg=\"forbidden (403): sonde may not get {resource} in namespace {namespace}; add the RBAC rule to the ClusterRole bound to its service account\" rule=\"{}\" object={:?} api_message={message:?}",
                rbac_rule("", resource, "get"),
                format!("{namespace}/{name}"),
            )
        });
    }

    /// The credentials a workload's pods get: its pull secrets, else its service
    /// account's.
    pub fn keyring_for(&mut self, w: &Workload) -> Keyring {
        let names = if w.pull_secrets.is_empty() {
            self.service_account_secrets(&w.namespace, &w.service_account)
        } else {
            w.pull_secrets.clone()
        };
        let key = (w.namespace.clone(), names);
        if let Some(k) = self.merged.get(&key) {
            return k.clone();
        }
        let mut keyring = Keyring::default();
        for name in &key.1 {
            if let Some(k) = self.secret(&w.namespace, name) {
                keyring.extend(&k);
            }
        }
        self.merged.insert(key, keyring.clone());
        keyring
    }

    fn service_account_secrets(&mut self, namespace: &str, name: &str) -> Vec<String> {
        let key = (namespace.to_string(), name.to_string());
        if let Some(v) = self.service_accounts.get(&key) {
            return v.clone();
        }
        let path = format!(
            "/api/v1/namespaces/{}/serviceaccounts/{}",
            client::percent_encode(namespace),
            client::percent_encode(name)
        );
        let check = self.client.check.clone();
        let names = match self
            .client
            .get::<ServiceAccount>(&path, OBJECT_BODY_LIMIT, self.deadline)
        {
            Ok(sa) => reference_names(sa.image_pull_secrets),
            Err(ApiError::Status { code: 403, message }) => {
                self.forbidden("serviceaccounts", namespace, name, &message);
                Vec::new()
            }
            Err(ApiError::Status { code: 404, .. }) => {
                log::debug!(
                    "check={check} msg=\"service account not found\" object=\"{namespace}/{name}\""
                );
                Vec::new()
            }
            Err(e) => {
                self.log_once(format!("sa {namespace}/{name}"), || {
                    format!(
                        "check={check} msg=\"cannot read a service account\" object=\"{namespace}/{name}\" error={:?}",
                        e.to_string()
                    )
                });
                Vec::new()
            }
        };
        self.service_accounts.insert(key, names.clone());
        names
    }

    fn secret(&mut self, namespace: &str, name: &str) -> Option<Keyring> {
        let key = (namespace.to_string(), name.to_string());
        if let Some(v) = self.secrets.get(&key) {
            return v.clone();
        }
        let path = format!(
            "/api/v1/namespaces/{}/secrets/{}",
            client::percent_encode(namespace),
            client::percent_encode(name)
        );
        let check = self.client.check.clone();
        let object = format!("{namespace}/{name}");
        let keyring = match self
            .client
            .get::<SecretObject>(&path, OBJECT_BODY_LIMIT, self.deadline)
        {
            Ok(secret) => match parse_pull_secret(&secret) {
                Ok((k, skipped)) => {
                    for s in skipped {
                        log::debug!(
                            "check={check} msg=\"pull secret entry skipped\" object={object:?} entry={s:?}"
                        );
                    }
                    Some(k)
                }
                Err(e) => {
                    self.log_once(format!("secret {object}"), || {
                        format!(
                            "check={check} msg=\"pull secret not usable\" object={object:?} error={e:?}"
                        )
                    });
                    None
                }
            },
            Err(ApiError::Status { code: 403, message }) => {
                self.forbidden("secrets", namespace, name, &message);
                None
            }
            Err(e) => {
                self.log_once(format!("secret {object}"), || {
                    format!(
                        "check={check} msg=\"cannot read a pull secret\" object={object:?} error={:?}",
                        e.to_string()
                    )
                });
                None
            }
        };
        self.secrets.insert(key, keyring.clone());
        keyring
    }
}

/// The credentials of a `kubernetes.io/dockerconfigjson` or `kubernetes.io/dockercfg`
/// Secret. Errors never include the secret's content.
fn parse_pull_secret(secret: &SecretObject) -> Result<(Keyring, Vec<String>), String> {
    let (key, legacy) = match secret.secret_type.as_str() {
        "kubernetes.io/dockerconfigjson" => (".dockerconfigjson", false),
        "kubernetes.io/dockercfg" => (".dockercfg", true),
        other => {
            return Err(format!(
                "type {other:?} is not kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg"
            ));
        }
    };
    let data = secret
        .data
        .get(key)
        .ok_or_else(|| format!("no {key} in its data"))?;
    let bytes = base64_decode(data).ok_or_else(|| format!("{key} is not base64"))?;
    Keyring::parse(&bytes, legacy).map_err(|e| format!("{key}: {e}"))
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::image_ref::ImageRef;

    fn b64(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn workloads_are_read_from_kubectl_shaped_json() {
        let cronjob = r#"{"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"report","namespace":"ops","labels":null},
          "spec":{"schedule":"0 * * * *","jobTemplate":{"metadata":{},"spec":{"template":{"metadata":{},
          "spec":{"containers":[{"name":"r","image":"busybox:1.36","resources":{}}],"initContainers":[{"name":"i","image":"alpine"}],
          "imagePullSecrets":null,"serviceAccountName":"reporter","restartPolicy":"OnFailure"}}}}},"status":{}}"#;
        let object: WorkloadObject = serde_json::from_str(cronjob).unwrap();
        let w = Workload::from_object(WorkloadKind::CronJob, object, true);
        assert_eq!(
            w.containers,
            vec![
                ("r".to_string(), "busybox:1.36".to_string()),
                ("i".to_string(), "alpine".to_string())
            ]
        );
        assert_eq!(w.service_account, "reporter");
        assert!(w.pull_secrets.is_empty());
        let deployment = r#"{"metadata":{"name":"web","namespace":"a"},"spec":{"template":{"spec":{
          "containers":[{"name":"web","image":"nginx"}],"initContainers":[{"name":"i","image":"alpine"}],
          "imagePullSecrets":[{"name":"regcred"},{}],"serviceAccount":"old"}}}}"#;
        let object: WorkloadObject = serde_json::from_str(deployment).unwrap();
        let w = Workload::from_object(WorkloadKind::Deployment, object, false);
        assert_eq!(w.containers.len(), 1);
        assert_eq!(w.pull_secrets, vec!["regcred".to_string()]);
        assert_eq!(w.service_account, "old");
        let bare = r#"{"metadata":{"name":"x"},"spec":null}"#;
        let object: WorkloadObject = serde_json::from_str(bare).unwrap();
        let w = Workload::from_object(WorkloadKind::DaemonSet, object, true);
        assert!(w.containers.is_empty());
        assert_eq!(w.service_account, "default");
    }

    #[test]
    fn pull_secrets_of_both_types_are_read() {
        let auth = b64(b"u:p");
        let json = format!(r#"{{"auths":{{"registry.local":{{"auth":"{auth}"}}}}}}"#);
        let secret = SecretObject {
            secret_type: "kubernetes.io/dockerconfigjson".into(),
            data: [(".dockerconfigjson".to_string(), b64(json.as_bytes()))].into(),
        };
        let (k, _) = parse_pull_secret(&secret).unwrap();
        let image = ImageRef::parse("registry.local/app").unwrap();
        assert!(k.lookup(&image).is_some());
        let cfg = format!(r#"{{"registry.local":{{"auth":"{auth}","email":"e"}}}}"#);
        let secret = SecretObject {
            secret_type: "kubernetes.io/dockercfg".into(),
            data: [(".dockercfg".to_string(), b64(cfg.as_bytes()))].into(),
        };
        assert!(
            parse_pull_secret(&secret)
                .unwrap()
                .0
                .lookup(&image)
                .is_some()
        );
        let opaque = SecretObject {
            secret_type: "Opaque".into(),
            data: BTreeMap::new(),
        };
        assert!(parse_pull_secret(&opaque).unwrap_err().contains("Opaque"));
    }

    #[test]
    fn rbac_rules_read_like_a_cluster_role() {
        assert_eq!(
            rbac_rule("", "secrets", "get"),
            "{apiGroups: [''], resources: [secrets], verbs: [get]}"
        );
        assert_eq!(
            rbac_rule("apps", "deployments", "list"),
            "{apiGroups: [apps], resources: [deployments], verbs: [list]}"
        );
    }

    #[test]
    fn server_urls_are_http_with_a_host() {
        assert_eq!(
            server_url(" https://10.0.0.1:6443/ ").as_deref(),
            Some("https://10.0.0.1:6443")
        );
        assert_eq!(
            server_url("http://localhost:8001").as_deref(),
            Some("http://localhost:8001")
        );
        for bad in ["ftp://x", "https://", "https://a/?x=1", "10.0.0.1", ""] {
            assert_eq!(server_url(bad), None, "{bad}");
        }
    }
}
