//! A fixture Kubernetes API server for `kind: kubernetes_images`: HTTPS with a test CA,
//! a bearer token, paged lists with `continue` and one 410, objects shaped like
//! `kubectl get -o json`, secrets and service accounts fetched by name.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::{TestCa, json as json_reply, tls_fixture};
use crate::common::Fixture;
use crate::common::{Reply, SeenRequest};
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
        other => panic!("unknown resource {other}"),
    }
}

pub fn status_reply(code: u16, reason: &str, message: &str) -> Reply {
    json_reply(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code})
        .to_string(),
    )
}

/// What the fixture API server serves.
#[derive(Default)]
pub struct Cluster {
    /// resource -> items (every namespace).
    pub items: BTreeMap<String, Vec<Value>>,
    pub secrets: HashMap<(String, String), Value>,
    pub service_accounts: HashMap<(String, String), Value>,
    pub forbidden_secret_namespaces: HashSet<String>,
    /// Namespaces whose workloads may not be listed.
    pub forbidden_list_namespaces: HashSet<String>,
    /// Largest page the server returns, whatever `limit` asks for.
    pub page_size: usize,
}

pub struct ApiServer {
    pub server: Fixture,
    pub token: Arc<Mutex<String>>,
    pub gone_sent: Arc<AtomicBool>,
    pub failing: Arc<AtomicBool>,
}

pub fn query_param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .find_map(|p| p.strip_prefix(&format!("{key}=")))
        .map(|v| {
            v.replace("%3A", ":")
                .replace("%2F", "/")
                .replace("%3D", "=")
        })
}

pub fn start_api(ca: &TestCa, cluster: Cluster, token: &str) -> ApiServer {
    let token = Arc::new(Mutex::new(token.to_string()));
    let gone_sent = Arc::new(AtomicBool::new(false));
    let failing = Arc::new(AtomicBool::new(false));
    let cluster = Arc::new(cluster);
    let server = {
        let (token, gone_sent, failing) = (
            Arc::clone(&token),
            Arc::clone(&gone_sent),
            Arc::clone(&failing),
        );
        tls_fixture(ca, move |req: &SeenRequest| {
            let want = format!("Bearer {}", token.lock().unwrap());
            if req.header("authorization") != Some(want.as_str()) {
                return status_reply(401, "Unauthorized", "Unauthorized");
            }
            let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
            let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            match parts.as_slice() {
                ["api", "v1", "namespaces", ns, "secrets", name] => {
                    secret_reply(&cluster, ns, name)
                }
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
                ["apis", group, "v1", rest @ ..] => {
                    list_reply(&cluster, group, rest, query, &gone_sent, &failing)
                }
                _ => not_found(),
            }
        })
    };
    ApiServer {
        server,
        token,
        gone_sent,
        failing,
    }
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

/// A list of workloads under `/apis/{group}/v1/` (all namespaces or one), paged by
/// `limit` and `continue`.
fn list_reply(
    cluster: &Cluster,
    group: &str,
    rest: &[&str],
    query: &str,
    gone_sent: &AtomicBool,
    failing: &AtomicBool,
) -> Reply {
    let (namespace, resource) = match rest {
        [resource] => (None, *resource),
        ["namespaces", ns, resource] => (Some(*ns), *resource),
        _ => return not_found(),
    };
    let expected_group = if resource == "cronjobs" {
        "batch"
    } else {
        "apps"
    };
    if group != expected_group {
        return not_found();
    }
    if let Some(ns) = namespace
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
    if failing.load(Ordering::SeqCst) && resource == "deployments" {
        return status_reply(500, "InternalError", "etcdserver: request timed out");
    }
    let all: Vec<&Value> = cluster
        .items
        .get(resource)
        .map(|v| {
            v.iter()
                .filter(|i| namespace.is_none_or(|ns| i["metadata"]["namespace"] == ns))
                .collect()
        })
        .unwrap_or_default();
    let limit: usize = query_param(query, "limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(usize::MAX);
    let page = limit.min(cluster.page_size);
    let offset = match continue_offset(query, resource, gone_sent) {
        Ok(offset) => offset,
        Err(reply) => return reply,
    };
    let end = (offset + page).min(all.len());
    let items: Vec<&Value> = all[offset.min(end)..end].to_vec();
    let mut meta = json!({"resourceVersion": "424242"});
    if end < all.len() {
        meta["continue"] = json!(format!("eyJvZmZzZXQiOi{end}"));
        meta["remainingItemCount"] = json!(all.len() - end);
    }
    let list_kind = match resource {
        "deployments" => "DeploymentList",
        "statefulsets" => "StatefulSetList",
        "daemonsets" => "DaemonSetList",
        _ => "CronJobList",
    };
    json_reply(
        200,
        &json!({"apiVersion": format!("{group}/v1"), "kind": list_kind, "metadata": meta, "items": items}).to_string(),
    )
}

pub fn dockerconfigjson_secret(ns: &str, name: &str, config: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
           "metadata": {"name": name, "namespace": ns, "uid": "1", "resourceVersion": "7"},
           "data": {".dockerconfigjson": super::base64(config.as_bytes())}})
}
