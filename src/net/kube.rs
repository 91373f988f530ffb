//! The Kubernetes API-server client `kind: kubernetes_images` reads workloads and pull
//! secrets with.
//!
//! A [`Client`] is built from the configured [`Connection`]: a kubeconfig and one of its
//! contexts (`kubeconfig/`), or `api_server`, `bearer_token_file` and `ca_file`, or
//! without keys the pod's in-cluster server, service-account token and CA. It GETs JSON
//! with a bearer token that is re-read from its file after a 401 (bound service-account
//! tokens rotate), or with a client certificate. [`Client::list_all`] pages a collection
//! with `limit`/`continue`, restarting a list whose continue token expired (410), and
//! [`Client::stream`] opens a watch; `watch.rs` follows each resource with both. What the
//! objects mean is `objects.rs`'s business, pull secrets `secrets.rs`'s. A 403 is logged
//! with the RBAC rule that is missing.

use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor,
};
use serde_json::Value;
use serde_saphyr::Location;
use ureq::http::{Method, Request};

use crate::net::http::{self as client, AgentOptions, TlsSettings, TlsSpec};
use crate::net::secret::{Reread, Secret, secret_file};
use crate::problem::{Problem, Spanned};

mod kubeconfig;
mod objects;
mod secrets;
mod selector;
mod watch;

pub use objects::{Disabled, ObjectKey, Workload, decode_namespace, decode_workload};
pub use secrets::PullSecrets;
pub use selector::validate as validate_selector;
pub use watch::{Counts, Decode, Reflector, Resource, Watches};

/// Where a pod finds its service account's token (`token`) and CA (`ca.crt`).
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Items asked for per list page.
const PAGE_SIZE: usize = 500;
/// Largest list page read.
const LIST_BODY_LIMIT: u64 = 64 << 20;
/// Largest single object (Secret, ServiceAccount) read.
const OBJECT_BODY_LIMIT: u64 = 4 << 20;
/// Times a list restarts after 410 Gone before it gives up.
const MAX_LIST_RESTARTS: usize = 3;
/// Pages of one list at most (500 000 objects).
const MAX_LIST_PAGES: usize = 1000;
/// Items on one page at most: the API server sends at most `limit`, so more is not
/// an API server.
const MAX_PAGE_ITEMS: usize = 2 * PAGE_SIZE;
/// Largest error body read from a watch request that was refused.
const STATUS_BODY_LIMIT: u64 = 64 << 10;

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
    /// batch/v1 Job (with `include_pods`, those no CronJob made)
    Job,
    /// v1 Pod (with `include_pods`, those without an owner)
    Pod,
}

impl WorkloadKind {
    /// The kinds `workload_kinds` names, in the order they are listed and exported.
    pub const ALL: [WorkloadKind; 4] = [
        WorkloadKind::Deployment,
        WorkloadKind::StatefulSet,
        WorkloadKind::DaemonSet,
        WorkloadKind::CronJob,
    ];

    /// The kinds `include_pods` adds.
    pub const UNOWNED: [WorkloadKind; 2] = [WorkloadKind::Job, WorkloadKind::Pod];

    /// The value of the `kind` label and of `workload_kinds`.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployment",
            WorkloadKind::StatefulSet => "statefulset",
            WorkloadKind::DaemonSet => "daemonset",
            WorkloadKind::CronJob => "cronjob",
            WorkloadKind::Job => "job",
            WorkloadKind::Pod => "pod",
        }
    }

    /// The API resource (`deployments`).
    pub fn resource(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployments",
            WorkloadKind::StatefulSet => "statefulsets",
            WorkloadKind::DaemonSet => "daemonsets",
            WorkloadKind::CronJob => "cronjobs",
            WorkloadKind::Job => "jobs",
            WorkloadKind::Pod => "pods",
        }
    }

    /// The API group (`apps`; `""` for the core group).
    pub fn group(self) -> &'static str {
        match self {
            WorkloadKind::CronJob | WorkloadKind::Job => "batch",
            WorkloadKind::Pod => "",
            _ => "apps",
        }
    }

    /// The group-version path prefix (`/apis/apps/v1`, `/api/v1`).
    fn api_prefix(self) -> &'static str {
        match self.group() {
            "batch" => "/apis/batch/v1",
            "" => "/api/v1",
            _ => "/apis/apps/v1",
        }
    }

    /// One of [`WorkloadKind::ALL`] by its [`WorkloadKind::name`].
    pub fn parse(text: &str) -> Option<WorkloadKind> {
        WorkloadKind::ALL.into_iter().find(|k| k.name() == text)
    }

    /// The collection of this kind in `namespace` (or all).
    pub fn resource_in(self, namespace: Option<&str>) -> Resource {
        let path = match namespace {
            Some(ns) => format!(
                "{}/namespaces/{}/{}",
                self.api_prefix(),
                client::percent_encode(ns),
                self.resource()
            ),
            None => format!("{}/{}", self.api_prefix(), self.resource()),
        };
        Resource {
            path,
            selector: None,
            group: self.group(),
            resource: self.resource(),
            scope: scope(namespace),
        }
    }
}

/// The Namespaces whose labels match `selector`.
pub fn namespaces_matching(selector: &str) -> Resource {
    Resource {
        path: "/api/v1/namespaces".into(),
        selector: Some(selector.to_string()),
        group: "",
        resource: "namespaces",
        scope: format!("the cluster (labelSelector {selector:?})"),
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

/// Where the bearer token comes from.
#[derive(Debug)]
enum Token {
    /// A file re-read after a 401 (bound service-account tokens rotate).
    File(Reread<Secret>),
    /// Written in a kubeconfig, read when the config was loaded.
    Fixed(Secret),
}

/// A Kubernetes API server: base URL, TLS, and how sonde authenticates.
pub struct Client {
    base: String,
    agent: ureq::Agent,
    /// The TLS settings `agent` was built with, for the agents of watch streams.
    tls: TlsSettings,
    token: Option<Token>,
    /// The check's name, for log lines.
    check: String,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &client::redact_userinfo(&self.base))
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// Where the API server is and how sonde authenticates to it, as configured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Connection<'a> {
    /// `api_server`; the in-cluster server when unset.
    pub api_server: Option<&'a Spanned<String>>,
    /// `bearer_token_file`; the service account's token when unset.
    pub bearer_token_file: Option<&'a Spanned<String>>,
    /// `ca_file`; the service account's CA (when there is one) when unset.
    pub ca_file: Option<&'a Spanned<String>>,
    /// `kubeconfig`: instead of the three above.
    pub kubeconfig: Option<&'a Spanned<String>>,
    /// `context`: of the kubeconfig; its `current-context` when unset.
    pub context: Option<&'a Spanned<String>>,
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
                client::redact_userinfo(&s.value)
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
fn bearer_token(keys: Connection, base_dir: &Path, problems: &mut Problems) -> Option<Token> {
    if let Some(f) = keys.bearer_token_file {
        return secret_file(base_dir.join(&f.value), "bearer token file")
            .map(Token::File)
            .map_err(|e| problems.at(f.referenced, format!("bearer_token_file: cannot read {e}")))
            .ok();
    }
    let default = Path::new(SERVICE_ACCOUNT_DIR).join("token");
    match secret_file(default, "service-account token") {
        Ok(t) => Some(Token::File(t)),
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

/// How the API server's certificate is verified: `ca_file`, else the service account's
/// CA when there is one, else the built-in roots.
fn api_tls(
    ca_file: Option<&Spanned<String>>,
    base_dir: &Path,
    problems: &mut Problems,
) -> TlsSettings {
    let ca = ca_file.cloned().or_else(|| {
        let path = Path::new(SERVICE_ACCOUNT_DIR).join("ca.crt");
        path.exists()
            .then(|| Spanned::new(path.display().to_string(), Location::UNKNOWN))
    });
    let Some(ca_file) = ca else {
        return TlsSettings::webpki();
    };
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

/// An agent for the API server. Redirects are not followed: an API server has no
/// reason to send one, and the bearer token must not follow it elsewhere.
fn api_agent(tls: &TlsSettings, pool: bool) -> Result<ureq::Agent, String> {
    let options = AgentOptions {
        max_redirects: 0,
        pool,
        ..AgentOptions::default()
    };
    client::agent(tls, &options)
}

/// The server, TLS and token of a `kubeconfig` (and `context`); the other connection
/// keys may not be set beside it.
fn from_kubeconfig(
    keys: Connection,
    file: &Spanned<String>,
    base_dir: &Path,
    problems: &mut Problems,
) -> Option<(String, TlsSettings, Option<Token>)> {
    for (key, set) in [
        ("api_server", keys.api_server),
        ("bearer_token_file", keys.bearer_token_file),
        ("ca_file", keys.ca_file),
    ] {
        if let Some(s) = set {
            problems.at(
                s.referenced,
                format!("{key} cannot be set beside kubeconfig, which says where the server is and how to reach it"),
            );
        }
    }
    let path = base_dir.join(&file.value);
    let context = keys.context.map(|c| c.value.as_str());
    let config = match kubeconfig::load(&path, context) {
        Ok(c) => c,
        Err(e) => {
            let at = keys
                .context
                .filter(|_| e.contains("no context"))
                .map_or(file.referenced, |c| c.referenced);
            problems.at(at, format!("kubeconfig: {e}"));
            return None;
        }
    };
    let token = match config.token {
        kubeconfig::Token::None => None,
        kubeconfig::Token::Inline(secret) => Some(Token::Fixed(secret)),
        kubeconfig::Token::File(path) => match secret_file(path, "kubeconfig token file") {
            Ok(t) => Some(Token::File(t)),
            Err(e) => {
                problems.at(
                    file.referenced,
                    format!(
                        "kubeconfig: context {:?}: cannot read the tokenFile {e}",
                        config.context
                    ),
                );
                return None;
            }
        },
    };
    log::debug!(
        "check={} msg=\"kubeconfig read\" file={:?} context={:?} server={:?}",
        problems.check,
        path.display().to_string(),
        config.context,
        config.server
    );
    Some((config.server, config.tls, token))
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
        let resolved = match keys.kubeconfig {
            Some(file) => from_kubeconfig(keys, file, base_dir, &mut problems),
            None => {
                if let Some(c) = keys.context {
                    problems.at(
                        c.referenced,
                        "context needs kubeconfig (the file whose context it names)".into(),
                    );
                }
                let base = server(keys.api_server, &mut problems);
                let token = bearer_token(keys, base_dir, &mut problems);
                let tls = api_tls(keys.ca_file, base_dir, &mut problems);
                base.map(|b| (b, tls, token))
            }
        };
        let Some((base, tls, token)) = resolved else {
            return Err(problems.found);
        };
        let agent = match api_agent(&tls, true) {
            Ok(a) => a,
            Err(e) => {
                let at = keys.kubeconfig.or(keys.ca_file);
                match at {
                    Some(at) => problems.at(at.referenced, e),
                    None => problems.unlocated(e),
                }
                return Err(problems.found);
            }
        };
        if !problems.found.is_empty() {
            return Err(problems.found);
        }
        Ok(Client {
            base,
            agent,
            tls,
            token,
            check: check.to_string(),
        })
    }

    /// Re-reads the token file now, so a run starts with the current token; the last
    /// token serves while the file cannot be read.
    pub fn reread_token(&self) {
        self.fresh_token();
    }

    fn fresh_token(&self) -> Option<String> {
        match self.token.as_ref()? {
            Token::File(file) => Some(file.get(&self.check).expose().to_string()),
            Token::Fixed(secret) => Some(secret.expose().to_string()),
        }
    }

    fn current_token(&self) -> Option<String> {
        match self.token.as_ref()? {
            Token::File(file) => Some(file.last().expose().to_string()),
            Token::Fixed(secret) => Some(secret.expose().to_string()),
        }
    }

    /// Why a request got no answer. The API server's client certificate comes from a
    /// kubeconfig, not from the `tls` keys (those are the registries').
    fn describe(&self, e: &ureq::Error, trace: &client::Trace) -> String {
        client::describe(e, trace, &client::redact_userinfo(&self.base)).replace(
            "set tls.cert_file and tls.key_file",
            "give the kubeconfig's user a client-certificate and client-key",
        )
    }

    /// An agent of its own for watch streams (so stopping them does not stop the
    /// client's other requests), with the client's TLS settings.
    pub fn stream_agent(&self) -> Result<ureq::Agent, String> {
        api_agent(&self.tls, false)
    }

    /// GETs `path` and decodes its JSON, reading at most `limit` bytes; a 401 re-reads
    /// the token and tries once more.
    pub fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        limit: u64,
        deadline: Instant,
    ) -> Result<T, ApiError> {
        let body = self.get_bytes(path, limit, deadline)?;
        serde_json::from_slice(&body).map_err(|e| ApiError::Decode(decode_error(&e)))
    }

    /// The body of a 200 to GET `path`, at most `limit` bytes; a 401 re-reads the
    /// token and tries once more.
    fn get_bytes(&self, path: &str, limit: u64, deadline: Instant) -> Result<Vec<u8>, ApiError> {
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

    fn attempt(
        &self,
        path: &str,
        token: Option<&str>,
        limit: u64,
        deadline: Instant,
    ) -> Result<Vec<u8>, ApiError> {
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
            .map_err(|e| ApiError::Transport(self.describe(&e, &trace)))?;
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
        Ok(body)
    }

    /// Opens a watch (`path` with its query) with `agent`: the body of a 200, read as it
    /// arrives, each read waiting at most `read_timeout`; connecting and the response
    /// head within `connect_timeout`. A 401 re-reads the token and tries once more.
    pub fn stream(
        &self,
        agent: &ureq::Agent,
        path: &str,
        read_timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Box<dyn Read + Send>, ApiError> {
        let token = self.current_token();
        match self.open_stream(agent, path, token.as_deref(), read_timeout, connect_timeout) {
            Err(ApiError::Status { code: 401, message }) => {
                let fresh = self.fresh_token();
                if fresh.is_some() && fresh != token {
                    return self.open_stream(
                        agent,
                        path,
                        fresh.as_deref(),
                        read_timeout,
                        connect_timeout,
                    );
                }
                Err(ApiError::Status { code: 401, message })
            }
            other => other,
        }
    }

    fn open_stream(
        &self,
        agent: &ureq::Agent,
        path: &str,
        token: Option<&str>,
        read_timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Box<dyn Read + Send>, ApiError> {
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
        // A watch lasts minutes: no overall timeout, but every read must see data (an
        // event or a bookmark) or the server's end of the stream within `read_timeout`.
        let request = agent
            .configure_request(request)
            .timeout_global(None)
            .timeout_connect(Some(connect_timeout))
            .timeout_recv_response(Some(connect_timeout))
            .timeout_per_read(Some(read_timeout))
            .build();
        let mut response = agent
            .run(request)
            .map_err(|e| ApiError::Transport(self.describe(&e, &client::Trace::default())))?;
        let code = response.status().as_u16();
        if code != 200 {
            let body = response
                .body_mut()
                .with_config()
                .limit(STATUS_BODY_LIMIT)
                .read_to_vec()
                .unwrap_or_default();
            return Err(ApiError::Status {
                code,
                message: status_message(&body),
            });
        }
        Ok(Box::new(response.into_body().into_reader()))
    }

    /// Lists `resource`, following `continue` tokens, each page within `page_timeout`:
    /// every object decoded, and the list's `resourceVersion` (to watch from). A list
    /// whose continue token expired (410) starts again, at most 3 times. An object
    /// `decode` refuses is skipped (and logged), not the list. A list ends with an
    /// error when `stopped` says so, past [`MAX_LIST_PAGES`] pages, or when a
    /// `continue` token comes back: an API server that pages forever cannot fill the
    /// memory or outlive the check.
    #[allow(clippy::type_complexity)]
    pub fn list_all<T>(
        &self,
        resource: &Resource,
        decode: &dyn Fn(Value) -> Result<(ObjectKey, Option<T>), String>,
        page_timeout: Duration,
        stopped: &dyn Fn() -> bool,
    ) -> Result<(Vec<(ObjectKey, Option<T>)>, String), ApiError> {
        let mut restarts = 0;
        'list: loop {
            let mut items = Vec::new();
            let mut token = String::new();
            let mut tokens = HashSet::new();
            let mut page = 0;
            loop {
                page += 1;
                if stopped() {
                    return Err(ApiError::Transport("the check was stopped".into()));
                }
                if page > MAX_LIST_PAGES {
                    return Err(ApiError::Decode(format!(
                        "more than {MAX_LIST_PAGES} pages; listing abandoned"
                    )));
                }
                let url = page_url(resource, &token);
                let deadline = Instant::now() + page_timeout;
                let meta = match self.get_bytes(&url, LIST_BODY_LIMIT, deadline) {
                    Ok(body) => read_page(&body, decode, &mut items).map_err(|e| {
                        ApiError::Decode(format!("page {page} of {}: {e}", resource.resource))
                    })?,
                    Err(ApiError::Status { code: 410, .. })
                        if !token.is_empty() && restarts < MAX_LIST_RESTARTS =>
                    {
                        restarts += 1;
                        log::info!(
                            "check={} msg=\"the continue token expired (410); listing {} again from the start\"",
                            self.check,
                            resource.resource
                        );
                        continue 'list;
                    }
                    Err(e) => return Err(e),
                };
                for skipped in meta.skipped {
                    log::debug!(
                        "check={} msg=\"object skipped\" resource={} error={skipped:?}",
                        self.check,
                        resource.resource
                    );
                }
                token = meta.continue_token;
                if token.is_empty() {
                    return Ok((items, meta.resource_version));
                }
                if !tokens.insert(token.clone()) {
                    return Err(ApiError::Decode(format!(
                        "page {page} of {} repeats an earlier continue token; listing abandoned",
                        resource.resource
                    )));
                }
            }
        }
    }

    /// Logs a failed list (a 403 with the RBAC rule that is missing).
    pub fn log_list_failure(&self, resource: &Resource, e: &ApiError) {
        let where_ = &resource.scope;
        match e {
            ApiError::Status { code: 403, message } => log::error!(
                "check={} msg=\"forbidden (403): sonde may not list {} in {where_}; add the RBAC rule to the ClusterRole bound to its service account\" rule=\"{}\" api_message={message:?}",
                self.check,
                resource.resource,
                rbac_rule(resource.group, resource.resource, "list"),
            ),
            e => log::warn!(
                "check={} msg=\"cannot list {}\" scope={where_:?} error={:?}",
                self.check,
                resource.resource,
                e.to_string()
            ),
        }
    }
}

/// The URL of a list's page: the first, or the one `token` continues from.
fn page_url(resource: &Resource, token: &str) -> String {
    let mut url = format!("{}?limit={PAGE_SIZE}", resource.path);
    if let Some(selector) = &resource.selector {
        url.push_str("&labelSelector=");
        url.push_str(&client::percent_encode(selector));
    }
    if !token.is_empty() {
        url.push_str("&continue=");
        url.push_str(&client::percent_encode(token));
    }
    url
}

/// What a page says besides its items.
#[derive(Default)]
struct PageMeta {
    continue_token: String,
    resource_version: String,
    /// Why objects were skipped.
    skipped: Vec<String>,
    /// The page held more than [`MAX_PAGE_ITEMS`] items.
    flooded: bool,
}

/// Reads one page of a list, decoding each item as it is parsed, so a page costs its
/// bytes and one object's JSON tree at a time (a tree is about 16 times its text: a
/// 64 MiB page read whole was a gigabyte). More than [`MAX_PAGE_ITEMS`] items on a
/// page is an error.
#[allow(clippy::type_complexity)]
fn read_page<T>(
    body: &[u8],
    decode: &dyn Fn(Value) -> Result<(ObjectKey, Option<T>), String>,
    items: &mut Vec<(ObjectKey, Option<T>)>,
) -> Result<PageMeta, String> {
    let mut meta = PageMeta::default();
    let seed = PageSeed {
        decode,
        items,
        meta: &mut meta,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let read = seed.deserialize(&mut de).and_then(|()| de.end());
    match read {
        Err(_) if meta.flooded => Err(format!(
            "more than {MAX_PAGE_ITEMS} items on a page ({PAGE_SIZE} asked for)"
        )),
        Err(e) => Err(decode_error(&e)),
        Ok(()) => Ok(meta),
    }
}

#[allow(clippy::type_complexity)]
struct PageSeed<'a, T> {
    decode: &'a dyn Fn(Value) -> Result<(ObjectKey, Option<T>), String>,
    items: &'a mut Vec<(ObjectKey, Option<T>)>,
    meta: &'a mut PageMeta,
}

impl<'de, T> DeserializeSeed<'de> for PageSeed<'_, T> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, T> Visitor<'de> for PageSeed<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list (an object with metadata and items)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        #[derive(Default, Deserialize)]
        struct ListMeta {
            #[serde(default, rename = "continue", deserialize_with = "objects::nullable")]
            continue_token: String,
            #[serde(
                default,
                rename = "resourceVersion",
                deserialize_with = "objects::nullable"
            )]
            resource_version: String,
        }
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "metadata" => {
                    let m = map.next_value::<Option<ListMeta>>()?.unwrap_or_default();
                    self.meta.continue_token = m.continue_token;
                    self.meta.resource_version = m.resource_version;
                }
                "items" => map.next_value_seed(ItemsSeed {
                    decode: self.decode,
                    items: &mut *self.items,
                    meta: &mut *self.meta,
                })?,
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

#[allow(clippy::type_complexity)]
struct ItemsSeed<'a, T> {
    decode: &'a dyn Fn(Value) -> Result<(ObjectKey, Option<T>), String>,
    items: &'a mut Vec<(ObjectKey, Option<T>)>,
    meta: &'a mut PageMeta,
}

impl<'de, T> DeserializeSeed<'de> for ItemsSeed<'_, T> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, T> Visitor<'de> for ItemsSeed<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of objects")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut count = 0;
        while let Some(object) = seq.next_element::<Value>()? {
            count += 1;
            if count > MAX_PAGE_ITEMS {
                self.meta.flooded = true;
                return Err(de::Error::custom("too many items"));
            }
            match (self.decode)(object) {
                Ok(item) => self.items.push(item),
                Err(e) => self.meta.skipped.push(e),
            }
        }
        Ok(())
    }
}

/// A decoding error without the value it refused: serde quotes it (`invalid type:
/// string "...", expected a map`), and in a Secret that value is a credential.
fn decode_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match (e.classify(), text.split_once(", expected ")) {
        (serde_json::error::Category::Data, Some((_, expected))) => {
            format!("an unexpected value, expected {expected}")
        }
        (serde_json::error::Category::Data, None) => format!(
            "an unexpected value at line {} column {}",
            e.line(),
            e.column()
        ),
        _ => text,
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

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_errors_never_quote_the_value_they_refused() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Secret {
            data: std::collections::BTreeMap<String, String>,
            #[serde(default)]
            count: u8,
        }
        for (body, said) in [
            (
                r#"{"data": "SECRETPASS"}"#,
                "an unexpected value, expected a map",
            ),
            (
                r#"{"data": {}, "count": 4242}"#,
                "an unexpected value, expected u8",
            ),
            (
                r#"{"data": 12345678}"#,
                "an unexpected value, expected a map",
            ),
        ] {
            let e = serde_json::from_str::<Secret>(body).unwrap_err();
            let text = decode_error(&e);
            assert!(text.starts_with(said), "{body}: {text}");
            for secret in ["SECRETPASS", "4242", "12345678"] {
                assert!(!text.contains(secret), "{body}: {text}");
            }
        }
        // Syntax errors name no value and are kept as they are.
        let e = serde_json::from_str::<Secret>("{").unwrap_err();
        assert_eq!(decode_error(&e), e.to_string());
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
