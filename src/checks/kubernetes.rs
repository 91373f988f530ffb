//! `kind: kubernetes_images`: can the images of a cluster's workloads be pulled?
//! (replaces seed 004, k8s-image-existence-exporter).
//!
//! Each run lists apps/v1 Deployments, StatefulSets and DaemonSets and batch/v1 CronJobs
//! with `limit`/`continue` paging (a 410 for an expired continue token restarts the
//! list), takes the images of their containers and init containers, finds credentials
//! the way the kubelet does (the pod template's `imagePullSecrets`, else those of its
//! service account, else `docker_config_file`), and checks every distinct image once
//! with the registry client of `kind: registry`. Secrets are fetched one by one with
//! `get`: sonde never needs to list every Secret of the cluster. A 403 from the API
//! server is logged with the RBAC rule that is missing.
//!
//! A list that fails keeps the workloads it had in the last run, and an image not
//! reached keeps its last status, so one bad run does not make series vanish.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_saphyr::{Location, Spanned};
use ureq::http::{Method, Request};

use super::image_ref::ImageRef;
use super::registry::{
    self, Job, Keyring, Outcome, RegistryKeys, RegistrySetup, Status, base64_decode, glob_match,
    percent_encode, status_samples,
};
use super::{BuildContext, Check, RunContext, RunOutput, Spec};
use crate::client::{self, AgentOptions, TlsSettings, TlsSpec};
use crate::config::{LoadedCheck, Problem};
use crate::metrics::{FamilySet, MetricType};

const AVAILABLE: &str = "sonde_kubernetes_image_available";
const AVAILABLE_HELP: &str = "1 if the container's image exists in its registry, 0 if the registry says it does not; no sample while that cannot be determined.";
const STATUS: &str = "sonde_kubernetes_image_check_status";
const STATUS_HELP: &str =
    "1 for the current status of the container's image check, 0 for the other statuses.";
const WORKLOADS: &str = "sonde_kubernetes_workloads";
const WORKLOADS_HELP: &str = "Workloads of the kind found by the last run.";
const LEGACY_RECHECKS: &str = "k8s_image_existence_exporter_completed_rechecks_total";
const LEGACY_RECHECKS_HELP: &str = "Completed rounds of image checks.";
const LEGACY_ERRORS: &str = "k8s_image_existence_exporter_generic_errors_total";
const LEGACY_ERRORS_HELP: &str =
    "Image checks that ended in an error (neither available nor absent).";

/// Where a pod finds its service account's credentials.
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
    const ALL: [WorkloadKind; 4] = [
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

    fn resource(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployments",
            WorkloadKind::StatefulSet => "statefulsets",
            WorkloadKind::DaemonSet => "daemonsets",
            WorkloadKind::CronJob => "cronjobs",
        }
    }

    fn group(self) -> &'static str {
        match self {
            WorkloadKind::CronJob => "batch",
            _ => "apps",
        }
    }

    fn parse(text: &str) -> Option<WorkloadKind> {
        WorkloadKind::ALL.into_iter().find(|k| k.name() == text)
    }
}

/// The YAML keys of `kind: kubernetes_images`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSpec {
    #[serde(default)]
    api_server: Option<Spanned<String>>,
    #[serde(default)]
    bearer_token_file: Option<Spanned<String>>,
    #[serde(default)]
    ca_file: Option<Spanned<String>>,
    #[serde(default)]
    namespaces: Vec<Spanned<String>>,
    #[serde(default)]
    workload_kinds: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default = "yes")]
    include_init_containers: bool,
    #[serde(default)]
    ignored_images: Vec<Spanned<String>>,
    #[serde(default = "yes")]
    use_pull_secrets: bool,
    #[serde(default)]
    docker_config_file: Option<Spanned<String>>,
    #[serde(default)]
    tls: Option<TlsSpec>,
    #[serde(default)]
    plain_http_registries: Vec<Spanned<String>>,
    #[serde(default)]
    max_concurrency_per_registry: Option<Spanned<usize>>,
}

fn yes() -> bool {
    true
}

// ---------------------------------------------------------------------------------
// The API server client

/// Why an API request failed.
#[derive(Debug)]
enum ApiError {
    /// The server answered with an error status; `message` is its Status message.
    Status { code: u16, message: String },
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
struct Api {
    base: String,
    agent: ureq::Agent,
    token_file: Option<PathBuf>,
    /// The last readable token.
    token: Mutex<Option<String>>,
    check: String,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api")
            .field("base", &self.base)
            .field("token_file", &self.token_file)
            .finish_non_exhaustive()
    }
}

impl Api {
    /// Re-reads the token file (bound service-account tokens rotate); keeps the last
    /// token while the file cannot be read. Returns the current token.
    fn refresh_token(&self) -> Option<String> {
        let path = self.token_file.as_ref()?;
        let mut token = self.token.lock().unwrap_or_else(PoisonError::into_inner);
        match client::read_secret(path) {
            Ok(t) => *token = Some(t),
            Err(e) => log::warn!(
                "check={} msg=\"cannot re-read the bearer token file; using its last value\" error={e:?}",
                self.check
            ),
        }
        token.clone()
    }

    fn current_token(&self) -> Option<String> {
        self.token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// GETs `path` and decodes its JSON; a 401 re-reads the token and tries once more.
    fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        limit: u64,
        deadline: Instant,
    ) -> Result<T, ApiError> {
        let token = self.current_token();
        match self.attempt(path, token.as_deref(), limit, deadline) {
            Err(ApiError::Status { code: 401, message }) => {
                let fresh = self.refresh_token();
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
        let result = client::send(&self.agent, request, budget);
        let trace = client::take_trace();
        let mut response = result.map_err(|e| {
            let why = if trace.dns_failed {
                "the host name does not resolve".to_string()
            } else if trace.tls_failed {
                "TLS handshake or certificate verification failed".to_string()
            } else if !trace.connected {
                format!("cannot connect: {e}")
            } else {
                e.to_string()
            };
            ApiError::Transport(format!("{}: {why}", self.base))
        })?;
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
struct Secret {
    #[serde(default, rename = "type", deserialize_with = "nullable")]
    secret_type: String,
    #[serde(default, deserialize_with = "nullable")]
    data: BTreeMap<String, String>,
}

/// One workload as far as images go.
#[derive(Clone, Debug)]
struct Workload {
    kind: WorkloadKind,
    namespace: String,
    name: String,
    /// (container name, image as written), containers then init containers.
    containers: Vec<(String, String)>,
    pull_secrets: Vec<String>,
    service_account: String,
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
            pull_secrets: pod
                .image_pull_secrets
                .into_iter()
                .map(|r| r.name)
                .filter(|n| !n.is_empty())
                .collect(),
            service_account,
        }
    }
}

// ---------------------------------------------------------------------------------
// Ignored images

/// One entry of `ignored_images` / `--ignored-images`.
#[derive(Clone, Debug)]
struct Ignored {
    pattern: String,
    /// The pattern normalised as a reference, when it has no `*` and parses.
    normalised: Option<String>,
}

impl Ignored {
    fn new(pattern: &str) -> Ignored {
        let normalised = if pattern.contains('*') {
            None
        } else {
            ImageRef::parse(pattern).ok().map(|r| r.to_string())
        };
        Ignored {
            pattern: pattern.to_string(),
            normalised,
        }
    }

    /// Whether `raw` (its normalised form `full`) is ignored: an exact or glob match of
    /// either form.
    fn matches(&self, raw: &str, full: Option<&str>) -> bool {
        if self.pattern.contains('*') {
            glob_match(self.pattern.as_bytes(), raw.as_bytes())
                || full.is_some_and(|f| glob_match(self.pattern.as_bytes(), f.as_bytes()))
        } else {
            self.pattern == raw
                || full.is_some_and(|f| f == self.pattern || Some(f) == self.normalised.as_deref())
        }
    }
}

// ---------------------------------------------------------------------------------
// The check

/// What a check remembers between runs.
#[derive(Debug, Default)]
struct State {
    /// Workloads per (kind, namespace or all) from the last successful list.
    lists: HashMap<(WorkloadKind, Option<String>), Vec<Workload>>,
    /// Latest status per checked image (with its credential).
    statuses: HashMap<Job, Status>,
    /// Latest determined answer per checked image, for the legacy metric.
    determined: HashMap<Job, bool>,
    rechecks: u64,
    errors: u64,
}

/// A configured kubernetes_images check.
#[derive(Debug)]
pub struct KubernetesCheck {
    check: String,
    api: Api,
    namespaces: Vec<String>,
    kinds: Vec<WorkloadKind>,
    include_init: bool,
    use_pull_secrets: bool,
    ignored: Vec<Ignored>,
    setup: RegistrySetup,
    legacy: bool,
    state: Mutex<State>,
}

fn valid_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl KubernetesCheck {
    /// Validates the spec and builds the check.
    pub fn build(
        spec: &KubernetesSpec,
        ctx: &BuildContext,
    ) -> Result<KubernetesCheck, Vec<Problem>> {
        let mut problems = Vec::new();
        let unlocated = |message: String| Problem {
            check: Some(ctx.meta.name.clone()),
            ..Problem::plain(message)
        };
        let in_cluster = spec.api_server.is_none();
        let base = match &spec.api_server {
            Some(s) => {
                let text = s.value.trim().trim_end_matches('/');
                let ok = text
                    .parse::<ureq::http::Uri>()
                    .ok()
                    .filter(|u| matches!(u.scheme_str(), Some("http") | Some("https")))
                    .filter(|u| u.host().is_some_and(|h| !h.is_empty()))
                    .filter(|u| u.query().is_none());
                match ok {
                    Some(_) => Some(text.to_string()),
                    None => {
                        problems.push(ctx.problem(
                            s.referenced,
                            format!(
                                "api_server {:?} must be an http:// or https:// URL, e.g. https://10.0.0.1:6443",
                                s.value
                            ),
                        ));
                        None
                    }
                }
            }
            None => match in_cluster_server() {
                Ok(url) => Some(url),
                Err(e) => {
                    problems.push(unlocated(e));
                    None
                }
            },
        };
        let default_dir = Path::new(SERVICE_ACCOUNT_DIR);
        let (token_file, token) =
            match &spec.bearer_token_file {
                Some(f) => {
                    let path = ctx.resolve(&f.value);
                    match client::read_secret(&path) {
                        Ok(t) => (Some(path), Some(t)),
                        Err(e) => {
                            problems.push(ctx.problem(
                                f.referenced,
                                format!("bearer_token_file: cannot read {e}"),
                            ));
                            (None, None)
                        }
                    }
                }
                None => {
                    let path = default_dir.join("token");
                    match client::read_secret(&path) {
                        Ok(t) => (Some(path), Some(t)),
                        // Outside a pod (e.g. `kubectl proxy`) there may be no token at all.
                        Err(_) if !in_cluster => (None, None),
                        Err(e) => {
                            problems.push(unlocated(format!(
                                "cannot read the service-account token ({e}); set bearer_token_file"
                            )));
                            (None, None)
                        }
                    }
                }
            };
        let ca = match &spec.ca_file {
            Some(f) => Some(f.clone()),
            None => {
                let path = default_dir.join("ca.crt");
                path.exists().then(|| {
                    Spanned::new(
                        path.display().to_string(),
                        Location::UNKNOWN,
                        Location::UNKNOWN,
                    )
                })
            }
        };
        let api_tls = match ca {
            None => TlsSettings::webpki(),
            Some(ca_file) => {
                let tls_spec = TlsSpec {
                    ca_file: Some(ca_file.clone()),
                    ..TlsSpec::default()
                };
                match TlsSettings::load(&tls_spec, ctx.base_dir) {
                    Ok(t) => t,
                    Err((at, e)) => {
                        let e = e.replacen("tls.ca_file", "ca_file", 1);
                        if at == Location::UNKNOWN {
                            problems.push(unlocated(e));
                        } else {
                            problems.push(ctx.problem(at, e));
                        }
                        TlsSettings::webpki()
                    }
                }
            }
        };
        let agent = client::agent(
            &api_tls,
            &AgentOptions {
                max_redirects: 0,
                pool: true,
                ..AgentOptions::default()
            },
        )
        .map_err(|e| problems.push(unlocated(format!("ca_file: {e}"))))
        .ok();
        let mut namespaces = Vec::new();
        for ns in &spec.namespaces {
            if valid_dns_label(&ns.value) {
                if !namespaces.contains(&ns.value) {
                    namespaces.push(ns.value.clone());
                }
            } else {
                problems.push(ctx.problem(
                    ns.referenced,
                    format!("namespaces: {:?} is not a namespace name", ns.value),
                ));
            }
        }
        let kinds = match &spec.workload_kinds {
            None => WorkloadKind::ALL.to_vec(),
            Some(list) => {
                if list.value.is_empty() {
                    problems.push(ctx.problem(
                        list.referenced,
                        "workload_kinds is empty; omit it to read all four kinds",
                    ));
                }
                let mut kinds = Vec::new();
                for k in &list.value {
                    match WorkloadKind::parse(&k.value) {
                        Some(kind) if kinds.contains(&kind) => problems.push(ctx.problem(
                            k.referenced,
                            format!("workload_kinds: {:?} is listed twice", k.value),
                        )),
                        Some(kind) => kinds.push(kind),
                        None => problems.push(ctx.problem(
                            k.referenced,
                            format!(
                                "workload_kinds: unknown kind {:?} (use deployment, statefulset, daemonset, cronjob)",
                                k.value
                            ),
                        )),
                    }
                }
                kinds
            }
        };
        let mut ignored = Vec::new();
        for pattern in &spec.ignored_images {
            if pattern.value.trim().is_empty() {
                problems.push(ctx.problem(pattern.referenced, "ignored_images: empty entry"));
            } else {
                ignored.push(Ignored::new(pattern.value.trim()));
            }
        }
        ignored.extend(ctx.ignored_images.iter().map(|p| Ignored::new(p)));
        let keys = RegistryKeys {
            docker_config_file: spec.docker_config_file.as_ref(),
            tls: spec.tls.as_ref(),
            plain_http_registries: &spec.plain_http_registries,
            max_concurrency_per_registry: spec.max_concurrency_per_registry.as_ref(),
        };
        let setup = keys
            .build(ctx)
            .map_err(|mut p| problems.append(&mut p))
            .ok();
        match (base, agent, setup) {
            (Some(base), Some(agent), Some(setup)) if problems.is_empty() => Ok(KubernetesCheck {
                check: ctx.meta.name.clone(),
                api: Api {
                    base,
                    agent,
                    token_file,
                    token: Mutex::new(token),
                    check: ctx.meta.name.clone(),
                },
                namespaces,
                kinds,
                include_init: spec.include_init_containers,
                use_pull_secrets: spec.use_pull_secrets,
                ignored,
                setup,
                legacy: ctx.legacy_metrics,
                state: Mutex::new(State::default()),
            }),
            _ => Err(problems),
        }
    }

    /// Lists one kind in one namespace (or all), following `continue` tokens.
    fn list(
        &self,
        kind: WorkloadKind,
        namespace: Option<&str>,
        deadline: Instant,
    ) -> Result<Vec<Workload>, ApiError> {
        let gv = match kind.group() {
            "batch" => "batch/v1",
            _ => "apps/v1",
        };
        let path = match namespace {
            Some(ns) => format!(
                "/apis/{gv}/namespaces/{}/{}",
                percent_encode(ns),
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
                    url.push_str(&percent_encode(&token));
                }
                match self.api.get::<ListPage>(&url, LIST_BODY_LIMIT, deadline) {
                    Ok(page) => {
                        items.extend(
                            page.items
                                .into_iter()
                                .map(|o| Workload::from_object(kind, o, self.include_init)),
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

/// The RBAC rule a 403 says is missing, in ClusterRole syntax.
fn rbac_rule(group: &str, resource: &str, verb: &str) -> String {
    let group = if group.is_empty() { "''" } else { group };
    format!("{{apiGroups: [{group}], resources: [{resource}], verbs: [{verb}]}}")
}

/// Credentials looked up during one run: each Secret and ServiceAccount is fetched at
/// most once, and each problem is logged once.
struct Lookup<'a> {
    check: &'a KubernetesCheck,
    deadline: Instant,
    secrets: HashMap<(String, String), Option<Keyring>>,
    service_accounts: HashMap<(String, String), Vec<String>>,
    merged: HashMap<(String, Vec<String>), Keyring>,
    logged: HashSet<String>,
}

impl Lookup<'_> {
    fn log_once(&mut self, key: String, line: impl FnOnce() -> String) {
        if self.logged.insert(key) {
            log::warn!("{}", line());
        }
    }

    fn forbidden(&mut self, resource: &str, namespace: &str, name: &str, message: &str) {
        let check = self.check.check.clone();
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
    fn keyring_for(&mut self, w: &Workload) -> Keyring {
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
            percent_encode(namespace),
            percent_encode(name)
        );
        let check = self.check.check.clone();
        let names = match self.check.api.get::<ServiceAccount>(
            &path,
            OBJECT_BODY_LIMIT,
            self.deadline,
        ) {
            Ok(sa) => sa
                .image_pull_secrets
                .into_iter()
                .map(|r| r.name)
                .filter(|n| !n.is_empty())
                .collect(),
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
            percent_encode(namespace),
            percent_encode(name)
        );
        let check = self.check.check.clone();
        let object = format!("{namespace}/{name}");
        let keyring = match self
            .check
            .api
            .get::<Secret>(&path, OBJECT_BODY_LIMIT, self.deadline)
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
fn parse_pull_secret(secret: &Secret) -> Result<(Keyring, Vec<String>), String> {
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

/// One container image to report.
struct Entry {
    workload: usize,
    container: usize,
    /// The job that checks it, or why the reference is invalid.
    job: Result<usize, String>,
}

impl Check for KubernetesCheck {
    fn run(&self, ctx: &RunContext) -> RunOutput {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.api.refresh_token();
        let scopes: Vec<Option<String>> = if self.namespaces.is_empty() {
            vec![None]
        } else {
            self.namespaces.iter().cloned().map(Some).collect()
        };
        let mut list_errors = Vec::new();
        let mut workloads: Vec<Workload> = Vec::new();
        for &kind in &self.kinds {
            for scope in &scopes {
                match self.list(kind, scope.as_deref(), ctx.deadline) {
                    Ok(found) => {
                        workloads.extend(found.iter().cloned());
                        state.lists.insert((kind, scope.clone()), found);
                    }
                    Err(e) => {
                        let where_ = scope.as_deref().map_or_else(
                            || "all namespaces".to_string(),
                            |ns| format!("namespace {ns}"),
                        );
                        match &e {
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
                        list_errors.push(format!("listing {} in {where_}: {e}", kind.resource()));
                        // Keep the workloads this list had, so their series stay.
                        if let Some(previous) = state.lists.get(&(kind, scope.clone())) {
                            workloads.extend(previous.iter().cloned());
                        }
                    }
                }
            }
        }
        workloads
            .sort_by(|a, b| (a.kind, &a.namespace, &a.name).cmp(&(b.kind, &b.namespace, &b.name)));
        workloads
            .dedup_by(|a, b| a.kind == b.kind && a.namespace == b.namespace && a.name == b.name);

        let docker = self
            .setup
            .docker_config
            .as_ref()
            .map(|d| d.keyring(&self.check))
            .unwrap_or_default();
        let mut lookup = Lookup {
            check: self,
            deadline: ctx.deadline,
            secrets: HashMap::new(),
            service_accounts: HashMap::new(),
            merged: HashMap::new(),
            logged: HashSet::new(),
        };
        let mut jobs: Vec<Job> = Vec::new();
        let mut job_index: HashMap<Job, usize> = HashMap::new();
        let mut entries: Vec<Entry> = Vec::new();
        for (wi, w) in workloads.iter().enumerate() {
            let mut keyring: Option<Keyring> = None;
            for (ci, (_, image)) in w.containers.iter().enumerate() {
                let parsed = if image.is_empty() {
                    Err("the container has no image".to_string())
                } else {
                    ImageRef::parse(image)
                };
                let full = parsed.as_ref().ok().map(ToString::to_string);
                if self
                    .ignored
                    .iter()
                    .any(|i| i.matches(image, full.as_deref()))
                {
                    continue;
                }
                let job = match parsed {
                    Err(e) => Err(e),
                    Ok(r) => {
                        let keyring = keyring.get_or_insert_with(|| {
                            if self.use_pull_secrets {
                                lookup.keyring_for(w)
                            } else {
                                Keyring::default()
                            }
                        });
                        let credential = keyring.lookup(&r).or_else(|| docker.lookup(&r)).cloned();
                        let job = Job {
                            image: r.checked(),
                            credential,
                        };
                        let next = jobs.len();
                        let index = *job_index.entry(job.clone()).or_insert(next);
                        if index == next {
                            jobs.push(job);
                        }
                        Ok(index)
                    }
                };
                entries.push(Entry {
                    workload: wi,
                    container: ci,
                    job,
                });
            }
        }
        log::debug!(
            "check={} msg=\"workloads read\" workloads={} containers={} distinct_images={}",
            self.check,
            workloads.len(),
            entries.len(),
            jobs.len()
        );
        let outcomes: Vec<Option<Outcome>> = self.setup.client.check_all(&jobs, ctx);

        // Remember what this run learned; forget images no workload uses any more.
        let State {
            statuses,
            determined,
            rechecks,
            errors,
            ..
        } = &mut *state;
        let mut used_statuses = HashMap::new();
        let mut used_determined = HashMap::new();
        for (job, outcome) in jobs.iter().zip(&outcomes) {
            let current = match outcome {
                Some(o) => {
                    if o.status.determined().is_none() {
                        *errors += 1;
                    }
                    Some(o.status)
                }
                None => statuses.get(job).copied(),
            };
            if let Some(s) = current {
                used_statuses.insert(job.clone(), s);
            }
            let answer = outcome
                .as_ref()
                .and_then(|o| o.status.determined())
                .or_else(|| determined.get(job).copied());
            if let Some(a) = answer {
                used_determined.insert(job.clone(), a);
            }
        }
        let invalid: HashSet<&str> = entries
            .iter()
            .filter(|e| e.job.is_err())
            .map(|e| workloads[e.workload].containers[e.container].1.as_str())
            .collect();
        *errors += invalid.len() as u64;
        *statuses = used_statuses;
        *determined = used_determined;
        *rechecks += 1;

        let mut m = FamilySet::new();
        let available = m.family(AVAILABLE, AVAILABLE_HELP, MetricType::Gauge);
        let status = m.family(STATUS, STATUS_HELP, MetricType::Gauge);
        let counts = m.family(WORKLOADS, WORKLOADS_HELP, MetricType::Gauge);
        let mut legacy_ids = HashMap::new();
        if self.legacy {
            for kind in &self.kinds {
                let name = format!("k8s_image_existence_exporter_{}_image_exists", kind.name());
                let help = format!(
                    "1 if the image of the {} container exists in its registry, 0 if it does not (last determined answer).",
                    kind.name()
                );
                legacy_ids.insert(*kind, m.family(name, help, MetricType::Gauge));
            }
        }
        for kind in &self.kinds {
            let n = workloads.iter().filter(|w| w.kind == *kind).count();
            m.sample(
                counts,
                &[("check", self.check.as_str()), ("kind", kind.name())],
                n as f64,
            );
        }
        let mut bad = Vec::new();
        let mut not_checked = 0;
        for e in &entries {
            let w = &workloads[e.workload];
            let (container, image) = &w.containers[e.container];
            let labels = [
                ("check", self.check.as_str()),
                ("namespace", w.namespace.as_str()),
                ("kind", w.kind.name()),
                ("name", w.name.as_str()),
                ("container", container.as_str()),
                ("image", image.as_str()),
            ];
            let (current, answer, detail) = match &e.job {
                Err(why) => (Some(Status::InvalidReference), None, Some(why.clone())),
                Ok(j) => {
                    let job = &jobs[*j];
                    let detail = outcomes[*j].as_ref().map(|o| o.detail.clone());
                    (
                        statuses.get(job).copied(),
                        determined.get(job).copied(),
                        detail,
                    )
                }
            };
            let Some(current) = current else {
                not_checked += 1;
                continue;
            };
            if current != Status::Available {
                let what = format!("{}/{}/{} {container}", w.kind.name(), w.namespace, w.name);
                bad.push(format!(
                    "{what}: {image}: {}{}",
                    current.as_str(),
                    detail.map(|d| format!(" ({d})")).unwrap_or_default()
                ));
            }
            if let Some(exists) = current.determined() {
                m.sample(available, &labels, if exists { 1.0 } else { 0.0 });
            }
            status_samples(&mut m, status, &labels, current);
            if let (Some(id), Some(exists)) = (legacy_ids.get(&w.kind), answer) {
                m.sample(
                    *id,
                    &[
                        ("namespace", w.namespace.as_str()),
                        ("owner_name", w.name.as_str()),
                        ("container", container.as_str()),
                        ("image", image.as_str()),
                        (w.kind.name(), w.name.as_str()),
                    ],
                    if exists { 1.0 } else { 0.0 },
                );
            }
        }
        if self.legacy {
            let id = m.family(LEGACY_RECHECKS, LEGACY_RECHECKS_HELP, MetricType::Counter);
            m.sample(id, &[], *rechecks as f64);
            let id = m.family(LEGACY_ERRORS, LEGACY_ERRORS_HELP, MetricType::Counter);
            m.sample(id, &[], *errors as f64);
        }
        let images_error =
            registry::summarize(&bad, not_checked, entries.len(), "container images");
        let error = match (list_errors.first(), images_error) {
            (None, e) => e,
            (Some(l), None) if list_errors.len() == 1 => Some(l.clone()),
            (Some(l), None) => Some(format!("{} lists failed, e.g. {l}", list_errors.len())),
            (Some(l), Some(i)) => Some(format!("{l}; {i}")),
        };
        RunOutput {
            success: error.is_none(),
            error,
            families: m,
            targets: Vec::new(),
        }
    }
}

/// Two kubernetes_images checks with `legacy_metrics` would export the same
/// label-less legacy counters: duplicate series that Prometheus rejects.
pub fn legacy_conflicts(checks: &[LoadedCheck]) -> Vec<Problem> {
    let mut first: Option<&str> = None;
    let mut problems = Vec::new();
    for loaded in checks.iter().filter(|c| c.config.legacy_metrics) {
        let Spec::Kubernetes(_) = &loaded.config.spec else {
            continue;
        };
        let name = loaded.config.meta.name.as_str();
        match first {
            None => first = Some(name),
            Some(f) => problems.push(Problem {
                check: Some(name.to_string()),
                ..Problem::plain(format!(
                    "legacy_metrics is also set on kubernetes_images check {f:?}; the k8s_image_existence_exporter_* series would be exported twice"
                ))
            }),
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_images_match_raw_normalised_and_globs() {
        let cases = [
            ("nginx:1.11", "nginx:1.11", true),
            ("nginx:1.11", "docker.io/library/nginx:1.11", true),
            ("docker.io/library/nginx:1.11", "nginx:1.11", true),
            ("nginx:1.11", "nginx:1.12", false),
            ("nginx", "nginx:latest", true),
            (
                "registry.local/legacy/*",
                "registry.local/legacy/app:v1",
                true,
            ),
            (
                "registry.local/legacy/*",
                "registry.local/legacy/team/app",
                true,
            ),
            (
                "registry.local/legacy/*",
                "registry.local/current/app:v1",
                false,
            ),
            ("docker.io/library/*", "busybox", true),
            ("Not A Ref", "Not A Ref", true),
        ];
        for (pattern, image, expected) in cases {
            let full = ImageRef::parse(image).ok().map(|r| r.to_string());
            assert_eq!(
                Ignored::new(pattern).matches(image, full.as_deref()),
                expected,
                "{pattern} vs {image}"
            );
        }
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
        let auth = crate::checks::http::base64(b"u:p");
        let json = format!(r#"{{"auths":{{"registry.local":{{"auth":"{auth}"}}}}}}"#);
        let secret = Secret {
            secret_type: "kubernetes.io/dockerconfigjson".into(),
            data: [(
                ".dockerconfigjson".to_string(),
                crate::checks::http::base64(json.as_bytes()),
            )]
            .into(),
        };
        let (k, _) = parse_pull_secret(&secret).unwrap();
        let image = ImageRef::parse("registry.local/app").unwrap();
        assert!(k.lookup(&image).is_some());
        let cfg = format!(r#"{{"registry.local":{{"auth":"{auth}","email":"e"}}}}"#);
        let secret = Secret {
            secret_type: "kubernetes.io/dockercfg".into(),
            data: [(
                ".dockercfg".to_string(),
                crate::checks::http::base64(cfg.as_bytes()),
            )]
            .into(),
        };
        assert!(
            parse_pull_secret(&secret)
                .unwrap()
                .0
                .lookup(&image)
                .is_some()
        );
        let opaque = Secret {
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
}
