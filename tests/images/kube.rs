//! A fixture Kubernetes API server for `kind: kubernetes_images`, faithful to the
//! documented API: HTTPS with a test CA, a bearer token or (with a client CA) mutual TLS,
//! paged lists with `limit`/`continue` and one expired continue token (410), objects
//! shaped like `kubectl get -o json`, secrets and service accounts fetched by name, and
//! watches: `?watch=1&resourceVersion=..&allowWatchBookmarks=true` answered with a
//! chunked stream of JSON lines (`{"type":"ADDED","object":{..}}`, MODIFIED, DELETED,
//! BOOKMARK), an `ERROR` event with a 410 Status for a version too old, and a clean end
//! of the stream when the test says its timeout passed.
//!
//! The cluster can change while sonde runs: [`ApiServer::add`], [`ApiServer::modify`] and
//! [`ApiServer::delete`] give the object a new resourceVersion and stream the event to
//! the watches that follow it.

use rustls::pki_types::pem::PemObject;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{TestCa, json as json_reply};
use crate::common::{Reply, SeenRequest, read_request};
use serde_json::{Value, json};

/// A container: (name, image).
pub type C<'a> = (&'a str, &'a str);

pub fn pod_spec(
    containers: &[C],
    init: &[C],
    pull_secrets: &[&str],
    service_account: Option<&str>,
) -> Value {
    let container = |(name, image): &C| {
        json!({
            "name": name,
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
            "resources": {"limits": {"memory": "128Mi"}, "requests": {"cpu": "10m"}},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File"
        })
    };
    let mut spec = json!({
        "containers": containers.iter().map(container).collect::<Vec<_>>(),
        "dnsPolicy": "ClusterFirst",
        "restartPolicy": "Always",
        "schedulerName": "default-scheduler",
        "securityContext": {},
        "terminationGracePeriodSeconds": 30
    });
    if !init.is_empty() {
        spec["initContainers"] = json!(init.iter().map(container).collect::<Vec<_>>());
    }
    if !pull_secrets.is_empty() {
        spec["imagePullSecrets"] = json!(
            pull_secrets
                .iter()
                .map(|n| json!({"name": n}))
                .collect::<Vec<_>>()
        );
    }
    if let Some(sa) = service_account {
        spec["serviceAccountName"] = json!(sa);
        spec["serviceAccount"] = json!(sa);
    }
    spec
}

pub fn metadata(namespace: &str, name: &str, n: usize) -> Value {
    json!({
        "annotations": {"deployment.kubernetes.io/revision": "1"},
        "creationTimestamp": "2026-01-05T10:00:00Z",
        "generation": 1,
        "labels": {"app": name},
        "name": name,
        "namespace": namespace,
        "resourceVersion": format!("{}", 1000 + n),
        "uid": format!("6b1a2c3d-0000-4000-8000-{n:012}")
    })
}

/// One workload as `kubectl get <resource> -o json` prints it.
pub fn workload(resource: &str, namespace: &str, name: &str, spec: Value, n: usize) -> Value {
    let template =
        json!({"metadata": {"creationTimestamp": null, "labels": {"app": name}}, "spec": spec});
    let selector = json!({"matchLabels": {"app": name}});
    match resource {
        "deployments" => json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata(namespace, name, n),
            "spec": {"progressDeadlineSeconds": 600, "replicas": 1, "revisionHistoryLimit": 10,
                     "selector": selector,
                     "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}, "type": "RollingUpdate"},
                     "template": template},
            "status": {"availableReplicas": 1, "observedGeneration": 1, "readyReplicas": 1, "replicas": 1, "updatedReplicas": 1}
        }),
        "statefulsets" => json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": metadata(namespace, name, n),
            "spec": {"podManagementPolicy": "OrderedReady", "replicas": 1, "revisionHistoryLimit": 10,
                     "selector": selector, "serviceName": name, "template": template,
                     "updateStrategy": {"rollingUpdate": {"partition": 0}, "type": "RollingUpdate"}},
            "status": {"availableReplicas": 1, "replicas": 1}
        }),
        "daemonsets" => json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": metadata(namespace, name, n),
            "spec": {"revisionHistoryLimit": 10, "selector": selector, "template": template,
                     "updateStrategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}, "type": "RollingUpdate"}},
            "status": {"currentNumberScheduled": 3, "desiredNumberScheduled": 3, "numberMisscheduled": 0, "numberReady": 3}
        }),
        "cronjobs" => {
            let mut spec = spec;
            spec["restartPolicy"] = json!("OnFailure");
            json!({
                "apiVersion": "batch/v1", "kind": "CronJob", "metadata": metadata(namespace, name, n),
                "spec": {"concurrencyPolicy": "Allow", "failedJobsHistoryLimit": 1,
                         "jobTemplate": {"metadata": {"creationTimestamp": null},
                                         "spec": {"template": {"metadata": {"creationTimestamp": null}, "spec": spec}}},
                         "schedule": "*/5 * * * *", "successfulJobsHistoryLimit": 3, "suspend": false},
                "status": {}
            })
        }
        "jobs" => {
            let mut spec = spec;
            spec["restartPolicy"] = json!("Never");
            json!({
                "apiVersion": "batch/v1", "kind": "Job", "metadata": metadata(namespace, name, n),
                "spec": {"backoffLimit": 6, "completionMode": "NonIndexed", "completions": 1, "parallelism": 1,
                         "suspend": false,
                         "template": {"metadata": {"creationTimestamp": null, "labels": {"job-name": name}}, "spec": spec}},
                "status": {"active": 1, "ready": 0, "startTime": "2026-01-05T10:00:00Z"}
            })
        }
        "pods" => json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": metadata(namespace, name, n),
            "spec": spec,
            "status": {"phase": "Pending", "qosClass": "Burstable",
                       "conditions": [{"type": "PodScheduled", "status": "True"}]}
        }),
        other => panic!("unknown resource {other}"),
    }
}

/// A Namespace with labels, as `kubectl get namespace -o json` prints it.
pub fn namespace(name: &str, labels: &[(&str, &str)], n: usize) -> Value {
    let mut all: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    all.insert("kubernetes.io/metadata.name".into(), json!(name));
    json!({"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": name, "labels": all, "resourceVersion": format!("{}", 1000 + n),
                        "uid": format!("9c1a2c3d-0000-4000-8000-{n:012}"),
                        "creationTimestamp": "2026-01-01T00:00:00Z"},
           "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
}

/// The Status body of an error.
fn status_object(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

pub fn status_reply(code: u16, reason: &str, message: &str) -> Reply {
    json_reply(code, &status_object(code, reason, message).to_string())
}

/// What the fixture API server serves.
#[derive(Default)]
pub struct Cluster {
    /// resource (`deployments`, `pods`, `namespaces`, ...) -> items (every namespace).
    pub items: BTreeMap<String, Vec<Value>>,
    pub secrets: HashMap<(String, String), Value>,
    pub service_accounts: HashMap<(String, String), Value>,
    pub forbidden_secret_namespaces: HashSet<String>,
    /// Namespaces whose workloads may not be listed.
    pub forbidden_list_namespaces: HashSet<String>,
    /// Largest page the server returns, whatever `limit` asks for.
    pub page_size: usize,
    /// RBAC grants `list` but not `watch`: every watch is refused with 403.
    pub forbid_watch: bool,
}

/// One change, as a watch event.
struct Change {
    version: u64,
    resource: String,
    kind: &'static str,
    object: Value,
    /// The object before a MODIFIED, to tell a watch with a label selector that it
    /// entered (ADDED) or left (DELETED) the selection.
    before: Option<Value>,
}

/// The cluster as it is now, and what happened to it.
struct State {
    cluster: Cluster,
    /// The latest resourceVersion.
    version: u64,
    changes: Vec<Change>,
    /// Watches from a version older than this get 410 (history compacted).
    oldest: u64,
    /// Bumped to end open watches cleanly, to send them a 410, or a bookmark.
    ends: u64,
    expiries: u64,
    bookmarks: u64,
    /// Watches open now.
    open: usize,
}

/// The cluster, shared by the connections and the test.
struct Live {
    state: Mutex<State>,
    changed: Condvar,
}

/// How a client proves who it is.
enum Auth {
    /// `Authorization: Bearer <token>`.
    Token(Arc<Mutex<String>>),
    /// A client certificate the given CA issued (mutual TLS); no token needed.
    Certificate,
}

/// The fixture's listener: requests seen, and the flag that stops it.
pub struct ApiFixture {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<SeenRequest>>>,
    stop: Arc<AtomicBool>,
}

impl ApiFixture {
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.requests.lock().unwrap().clone()
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

impl Drop for ApiFixture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

pub struct ApiServer {
    pub server: ApiFixture,
    pub token: Arc<Mutex<String>>,
    pub gone_sent: Arc<AtomicBool>,
    pub failing: Arc<AtomicBool>,
    live: Arc<Live>,
}

pub fn query_param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .find_map(|p| p.strip_prefix(&format!("{key}=")))
        .map(|v| {
            v.replace("%3A", ":")
                .replace("%2F", "/")
                .replace("%3D", "=")
                .replace("%2C", ",")
                .replace("%21", "!")
                .replace("%20", " ")
        })
}

/// An API server that wants `token` as a bearer token.
pub fn start_api(ca: &TestCa, cluster: Cluster, token: &str) -> ApiServer {
    start_with(ca, cluster, token, None)
}

/// An API server that wants a client certificate issued by the CA in `client_ca_pem`
/// (and no token).
pub fn start_api_mtls(ca: &TestCa, cluster: Cluster, client_ca_pem: &str) -> ApiServer {
    start_with(ca, cluster, "", Some(client_ca_pem))
}

/// The server's TLS config, and how it authenticates clients: the bearer `token`, or
/// with `client_ca` a client certificate issued by that CA.
fn server_tls(
    ca: &TestCa,
    token: &Arc<Mutex<String>>,
    client_ca: Option<&str>,
) -> (Arc<rustls::ServerConfig>, Auth) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap();
    let (builder, auth) = match client_ca {
        None => (
            builder.with_no_client_auth(),
            Auth::Token(Arc::clone(token)),
        ),
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots.add(cert.unwrap()).unwrap();
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            (
                builder.with_client_cert_verifier(verifier),
                Auth::Certificate,
            )
        }
    };
    let config = Arc::new(
        builder
            .with_single_cert(ca.leaf.chain.clone(), ca.leaf.key.clone_key())
            .unwrap(),
    );
    (config, auth)
}

/// The server's state at start: every object gets the version it was "written" at; a
/// list shows the latest.
fn first_state(cluster: Cluster) -> State {
    let mut state = State {
        cluster,
        version: 0,
        changes: Vec::new(),
        oldest: 0,
        ends: 0,
        expiries: 0,
        bookmarks: 0,
        open: 0,
    };
    let mut version = 1000;
    for items in state.cluster.items.values_mut() {
        for item in items.iter_mut() {
            version += 1;
            item["metadata"]["resourceVersion"] = json!(version.to_string());
        }
    }
    state.version = version;
    state.oldest = version;
    state
}

fn start_with(ca: &TestCa, cluster: Cluster, token: &str, client_ca: Option<&str>) -> ApiServer {
    let token = Arc::new(Mutex::new(token.to_string()));
    let (config, auth) = server_tls(ca, &token, client_ca);
    let state = first_state(cluster);
    let live = Arc::new(Live {
        state: Mutex::new(state),
        changed: Condvar::new(),
    });
    let gone_sent = Arc::new(AtomicBool::new(false));
    let failing = Arc::new(AtomicBool::new(false));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let server = Arc::new(Server {
        live: Arc::clone(&live),
        auth,
        gone_sent: Arc::clone(&gone_sent),
        failing: Arc::clone(&failing),
        requests: Arc::clone(&requests),
        stop: Arc::clone(&stop),
    });
    std::thread::spawn(move || {
        while !server.stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((stream, _)) => {
                    let (server, config) = (Arc::clone(&server), Arc::clone(&config));
                    std::thread::spawn(move || server.connection(stream, config));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        // Wake the watches so they see the stop.
        server.live.changed.notify_all();
    });
    ApiServer {
        server: ApiFixture {
            addr,
            requests,
            stop,
        },
        token,
        gone_sent,
        failing,
        live,
    }
}

impl ApiServer {
    /// Creates an object (`resource` as in the URL: `deployments`) and streams ADDED.
    pub fn add(&self, resource: &str, object: Value) {
        self.change(resource, "ADDED", object, |items, o| {
            items.push(o.clone());
            o
        });
    }

    /// Changes an object and streams MODIFIED.
    pub fn modify(&self, resource: &str, ns: &str, name: &str, edit: impl FnOnce(&mut Value)) {
        let mut state = self.live.state.lock().unwrap();
        let items = state.cluster.items.entry(resource.into()).or_default();
        let i = position(items, ns, name).expect("object to modify");
        let mut object = items[i].clone();
        edit(&mut object);
        drop(state);
        self.change(resource, "MODIFIED", object, |items, o| {
            std::mem::replace(&mut items[i], o)
        });
    }

    /// Deletes an object and streams DELETED.
    pub fn delete(&self, resource: &str, ns: &str, name: &str) {
        let state = self.live.state.lock().unwrap();
        let items = &state.cluster.items[resource];
        let object = items[position(items, ns, name).expect("object to delete")].clone();
        drop(state);
        self.change(resource, "DELETED", object, |items, o| {
            let i = position(
                items,
                o["metadata"]["namespace"].as_str().unwrap_or(""),
                o["metadata"]["name"].as_str().unwrap(),
            )
            .unwrap();
            items.remove(i)
        });
    }

    fn change(
        &self,
        resource: &str,
        kind: &'static str,
        mut object: Value,
        apply: impl FnOnce(&mut Vec<Value>, Value) -> Value,
    ) {
        let mut state = self.live.state.lock().unwrap();
        state.version += 1;
        let version = state.version;
        object["metadata"]["resourceVersion"] = json!(version.to_string());
        let items = state.cluster.items.entry(resource.into()).or_default();
        let before = apply(items, object.clone());
        state.changes.push(Change {
            version,
            resource: resource.into(),
            kind,
            object,
            before: (kind == "MODIFIED").then_some(before),
        });
        drop(state);
        self.live.changed.notify_all();
    }

    /// Ends every open watch cleanly, as the server does when `timeoutSeconds` passed.
    pub fn end_watches(&self) {
        self.live.state.lock().unwrap().ends += 1;
        self.live.changed.notify_all();
    }

    /// Compacts the history, as etcd does: open watches get an ERROR event with a 410
    /// Status, and a watch from any version up to now gets it too.
    pub fn expire_watches(&self) {
        let mut state = self.live.state.lock().unwrap();
        state.expiries += 1;
        state.version += 1;
        state.oldest = state.version;
        drop(state);
        self.live.changed.notify_all();
    }

    /// Sends a BOOKMARK with a new resourceVersion to the open watches; returns it.
    pub fn bookmark(&self) -> String {
        let mut state = self.live.state.lock().unwrap();
        state.bookmarks += 1;
        state.version += 1;
        let version = state.version;
        drop(state);
        self.live.changed.notify_all();
        version.to_string()
    }

    /// Watches open now.
    pub fn open_watches(&self) -> usize {
        self.live.state.lock().unwrap().open
    }

    /// Waits (at most `secs`) until `n` watches are open.
    pub fn wait_open_watches(&self, n: usize, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.open_watches() != n {
            assert!(
                Instant::now() < deadline,
                "{} watches open, not {n}, after {secs}s; requests: {:?}",
                self.open_watches(),
                self.server
                    .seen()
                    .iter()
                    .map(|r| r.path.clone())
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn position(items: &[Value], ns: &str, name: &str) -> Option<usize> {
    items.iter().position(|i| {
        i["metadata"]["name"] == name && i["metadata"]["namespace"].as_str().unwrap_or("") == ns
    })
}

/// What one connection needs.
struct Server {
    live: Arc<Live>,
    auth: Auth,
    gone_sent: Arc<AtomicBool>,
    failing: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<SeenRequest>>>,
    stop: Arc<AtomicBool>,
}

/// A collection a path names: resource, group, namespace.
struct Collection {
    resource: String,
    group: String,
    namespace: Option<String>,
}

fn collection(parts: &[&str]) -> Option<Collection> {
    let (group, rest): (&str, &[&str]) = match parts {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", group, "v1", rest @ ..] => (group, rest),
        _ => return None,
    };
    let (namespace, resource) = match rest {
        ["namespaces"] if group.is_empty() => (None, "namespaces"),
        [resource] => (None, *resource),
        ["namespaces", ns, resource] => (Some(ns.to_string()), *resource),
        _ => return None,
    };
    let expected = match resource {
        "deployments" | "statefulsets" | "daemonsets" => "apps",
        "cronjobs" | "jobs" => "batch",
        "pods" | "namespaces" => "",
        _ => return None,
    };
    (group == expected).then(|| Collection {
        resource: resource.to_string(),
        group: group.to_string(),
        namespace,
    })
}

/// Whether `labels` satisfy a selector of `k=v`, `k==v`, `k!=v`, `k` and `!k`
/// requirements (what the tests use of the grammar).
fn selects(selector: &str, labels: &Value) -> bool {
    selector.split(',').map(str::trim).all(|r| {
        let label = |k: &str| labels.get(k.trim()).and_then(Value::as_str);
        if let Some((k, v)) = r.split_once("!=") {
            label(k) != Some(v.trim())
        } else if let Some((k, v)) = r.split_once("==").or_else(|| r.split_once('=')) {
            label(k) == Some(v.trim())
        } else if let Some(k) = r.strip_prefix('!') {
            label(k).is_none()
        } else {
            label(r).is_some()
        }
    })
}

/// Whether an item belongs to a list or watch of `c` with `selector`.
fn wanted(item: &Value, c: &Collection, selector: Option<&str>) -> bool {
    c.namespace
        .as_deref()
        .is_none_or(|ns| item["metadata"]["namespace"] == ns)
        && selector.is_none_or(|s| selects(s, &item["metadata"]["labels"]))
}

impl Server {
    fn connection(&self, stream: TcpStream, config: Arc<rustls::ServerConfig>) {
        stream.set_nonblocking(false).ok();
        stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let Ok(conn) = rustls::ServerConnection::new(config) else {
            return;
        };
        let mut tls = rustls::StreamOwned::new(conn, stream);
        let Some(req) = read_request(&mut tls) else {
            return;
        };
        self.requests.lock().unwrap().push(req.clone());
        let authorized = match &self.auth {
            Auth::Token(token) => {
                let want = format!("Bearer {}", token.lock().unwrap());
                req.header("authorization") == Some(want.as_str())
            }
            // The handshake required and verified a client certificate.
            Auth::Certificate => tls.conn.peer_certificates().is_some_and(|c| !c.is_empty()),
        };
        let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let watch = matches!(query_param(query, "watch").as_deref(), Some("1" | "true"));
        let reply = if !authorized {
            status_reply(401, "Unauthorized", "Unauthorized")
        } else if let (true, Some(c)) = (watch, collection(&parts)) {
            if self.live.state.lock().unwrap().cluster.forbid_watch {
                status_reply(
                    403,
                    "Forbidden",
                    &format!(
                        "{}.{} is forbidden: User \"system:serviceaccount:monitoring:sonde\" cannot watch resource \"{}\" in API group \"{}\" at the cluster scope",
                        c.resource, c.group, c.resource, c.group
                    ),
                )
            } else {
                self.watch(&mut tls, &c, query);
                return;
            }
        } else {
            self.route(&parts, query)
        };
        write_reply(&mut tls, &reply, &req.method);
        tls.conn.send_close_notify();
        let _ = tls.flush();
    }

    fn route(&self, parts: &[&str], query: &str) -> Reply {
        let state = self.live.state.lock().unwrap();
        let cluster = &state.cluster;
        match parts {
            ["api", "v1", "namespaces", ns, "secrets", name] => secret_reply(cluster, ns, name),
            ["api", "v1", "namespaces", ns, "serviceaccounts", name] => {
                match cluster
                    .service_accounts
                    .get(&(ns.to_string(), name.to_string()))
                {
                    Some(s) => json_reply(200, &s.to_string()),
                    None => status_reply(
                        404,
                        "NotFound",
                        &format!("serviceaccounts \"{name}\" not found"),
                    ),
                }
            }
            _ => match collection(parts) {
                Some(c) => self.list_reply(&state, &c, query),
                None => not_found(),
            },
        }
    }

    /// A list, paged by `limit` and `continue`, at the latest resourceVersion.
    fn list_reply(&self, state: &State, c: &Collection, query: &str) -> Reply {
        let cluster = &state.cluster;
        let (resource, group) = (c.resource.as_str(), c.group.as_str());
        if let Some(ns) = &c.namespace
            && cluster.forbidden_list_namespaces.contains(ns)
        {
            return status_reply(
                403,
                "Forbidden",
                &format!(
                    "{resource}.{group} is forbidden: User \"system:serviceaccount:monitoring:sonde\" cannot list resource \"{resource}\" in API group \"{group}\" in the namespace \"{ns}\""
                ),
            );
        }
        if self.failing.load(Ordering::SeqCst) && resource == "deployments" {
            return status_reply(500, "InternalError", "etcdserver: request timed out");
        }
        let selector = query_param(query, "labelSelector");
        let all: Vec<&Value> = cluster
            .items
            .get(resource)
            .map(|v| {
                v.iter()
                    .filter(|i| wanted(i, c, selector.as_deref()))
                    .collect()
            })
            .unwrap_or_default();
        let limit: usize = query_param(query, "limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(usize::MAX);
        let page = limit.min(cluster.page_size.max(1));
        let offset = match continue_offset(query, resource, &self.gone_sent) {
            Ok(offset) => offset,
            Err(reply) => return reply,
        };
        let end = (offset + page).min(all.len());
        let items: Vec<&Value> = all[offset.min(end)..end].to_vec();
        let mut meta = json!({"resourceVersion": state.version.to_string()});
        if end < all.len() {
            meta["continue"] = json!(format!("eyJvZmZzZXQiOi{end}"));
            meta["remainingItemCount"] = json!(all.len() - end);
        }
        let api_version = if group.is_empty() {
            "v1".to_string()
        } else {
            format!("{group}/v1")
        };
        json_reply(
            200,
            &json!({"apiVersion": api_version, "kind": list_kind(resource), "metadata": meta, "items": items}).to_string(),
        )
    }

    /// A watch: the changes since the version asked for, then each new one as it
    /// happens, as chunked JSON lines, until the test ends it, expires it, the client
    /// goes away or the server stops (bounded: at most 5 minutes).
    fn watch(&self, out: &mut impl Write, c: &Collection, query: &str) {
        let from: u64 = query_param(query, "resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let bookmarks = query_param(query, "allowWatchBookmarks").as_deref() == Some("true");
        let selector = query_param(query, "labelSelector");
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nCache-Control: no-cache, private\r\n\r\n";
        if out
            .write_all(head.as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            return;
        }
        let mut state = self.live.state.lock().unwrap();
        state.open += 1;
        let (ends, expiries, mut marks) = (state.ends, state.expiries, state.bookmarks);
        let mut cursor = from;
        let until = Instant::now() + Duration::from_secs(300);
        let gone = |version: u64| {
            json!({"type": "ERROR", "object": status_object(410, "Expired",
                &format!("too old resource version: {from} ({version})"))})
        };
        let mut clean = false;
        let mut events: Vec<Value> = Vec::new();
        if from < state.oldest {
            events.push(gone(state.oldest));
        }
        loop {
            if events.is_empty() {
                let watch = (selector.as_deref(), bookmarks);
                events = pending_events(&state, c, watch, &mut cursor, &mut marks);
                if state.expiries != expiries {
                    events.push(gone(state.oldest));
                }
            }
            let ended = events.iter().any(|e| e["type"] == "ERROR");
            if !events.is_empty() {
                drop(state);
                for event in events.drain(..) {
                    let line = format!("{event}\n");
                    let chunk = format!("{:x}\r\n{line}\r\n", line.len());
                    if out
                        .write_all(chunk.as_bytes())
                        .and_then(|_| out.flush())
                        .is_err()
                    {
                        self.live.state.lock().unwrap().open -= 1;
                        return;
                    }
                }
                state = self.live.state.lock().unwrap();
            }
            if ended {
                clean = true;
                break;
            }
            if state.ends != ends {
                clean = true;
                break;
            }
            if self.stop.load(Ordering::SeqCst) || Instant::now() > until {
                break;
            }
            state = self
                .live
                .changed
                .wait_timeout(state, Duration::from_millis(100))
                .unwrap()
                .0;
        }
        state.open -= 1;
        drop(state);
        if clean {
            let _ = out.write_all(b"0\r\n\r\n").and_then(|_| out.flush());
        }
    }
}

/// What a watch of `c` (with its label selector, and whether it asked for bookmarks)
/// has not sent yet: the changes after `cursor` that concern its selection, and a
/// bookmark when one was made since `marks`; both move on past what is returned.
fn pending_events(
    state: &State,
    c: &Collection,
    (selector, bookmarks): (Option<&str>, bool),
    cursor: &mut u64,
    marks: &mut u64,
) -> Vec<Value> {
    let mut events = Vec::new();
    let since = *cursor;
    for change in state.changes.iter().filter(|ch| ch.version > since) {
        *cursor = change.version;
        if change.resource != c.resource {
            continue;
        }
        let now = wanted(&change.object, c, selector);
        let was = change
            .before
            .as_ref()
            .is_some_and(|b| wanted(b, c, selector));
        // With a selector, an object entering or leaving the selection is ADDED or
        // DELETED for the watch, as the API server's watch cache tells it.
        let kind = match (change.kind, was, now) {
            ("MODIFIED", false, true) => "ADDED",
            ("MODIFIED", true, false) => "DELETED",
            (kind, _, true) => kind,
            _ => continue,
        };
        events.push(json!({"type": kind, "object": change.object}));
    }
    if state.bookmarks != *marks {
        *marks = state.bookmarks;
        if bookmarks {
            *cursor = (*cursor).max(state.version);
            events.push(json!({"type": "BOOKMARK", "object": {
                "kind": list_kind(&c.resource).trim_end_matches("List"),
                "apiVersion": if c.group.is_empty() { "v1".to_string() } else { format!("{}/v1", c.group) },
                "metadata": {"resourceVersion": state.version.to_string(), "creationTimestamp": null}}}));
        }
    }
    events
}

fn list_kind(resource: &str) -> &'static str {
    match resource {
        "deployments" => "DeploymentList",
        "statefulsets" => "StatefulSetList",
        "daemonsets" => "DaemonSetList",
        "cronjobs" => "CronJobList",
        "jobs" => "JobList",
        "pods" => "PodList",
        _ => "NamespaceList",
    }
}

/// Writes a whole reply (`Connection: close`).
fn write_reply(out: &mut impl Write, reply: &Reply, method: &str) {
    let Reply::Http {
        status,
        headers,
        body,
    } = reply
    else {
        return;
    };
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = out.write_all(head.as_bytes());
    if method != "HEAD" {
        let _ = out.write_all(body);
    }
    let _ = out.flush();
}

/// Where the page asked for by `continue` starts; the first continue token of
/// deployments has "expired" (410), as a real API server's do once etcd compacted
/// their revision.
fn continue_offset(query: &str, resource: &str, gone_sent: &AtomicBool) -> Result<usize, Reply> {
    let Some(c) = query_param(query, "continue") else {
        return Ok(0);
    };
    if resource == "deployments" && !gone_sent.swap(true, Ordering::SeqCst) {
        return Err(status_reply(
            410,
            "Expired",
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
        ));
    }
    c.strip_prefix("eyJvZmZzZXQiOi")
        .and_then(|o| o.parse().ok())
        .ok_or_else(|| status_reply(400, "BadRequest", "invalid continue token"))
}

fn not_found() -> Reply {
    status_reply(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

/// GET of one Secret, refused in the namespaces where RBAC forbids it.
fn secret_reply(cluster: &Cluster, ns: &str, name: &str) -> Reply {
    if cluster.forbidden_secret_namespaces.contains(ns) {
        return status_reply(
            403,
            "Forbidden",
            &format!(
                "secrets \"{name}\" is forbidden: User \"system:serviceaccount:monitoring:sonde\" cannot get resource \"secrets\" in API group \"\" in the namespace \"{ns}\""
            ),
        );
    }
    match cluster.secrets.get(&(ns.to_string(), name.to_string())) {
        Some(s) => json_reply(200, &s.to_string()),
        None => status_reply(404, "NotFound", &format!("secrets \"{name}\" not found")),
    }
}

pub fn dockerconfigjson_secret(ns: &str, name: &str, config: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
           "metadata": {"name": name, "namespace": ns, "uid": "1", "resourceVersion": "7"},
           "data": {".dockerconfigjson": super::base64(config.as_bytes())}})
}
