//! The shapes sonde reads from the Kubernetes API, and what it makes of them: a
//! [`Workload`] per Deployment, StatefulSet, DaemonSet, CronJob, Job or Pod (its
//! containers, pull secrets, service account, and whether it is switched off), and the
//! name of a Namespace.
//!
//! Only the fields sonde uses are read; every other field of an object is ignored, and a
//! field sent as `null` reads as empty. Objects arrive the same way from a list page and
//! from a watch event, so both go through [`decode_workload`] and [`decode_namespace`].

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::WorkloadKind;

/// A field the API may send as `null`.
pub(super) fn nullable<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Where an object is: (namespace, name); the namespace is empty for a Namespace.
pub type ObjectKey = (String, String);

#[derive(Deserialize)]
struct WorkloadObject {
    metadata: ObjectMeta,
    #[serde(default, deserialize_with = "nullable")]
    spec: WorkloadSpec,
    #[serde(default, deserialize_with = "nullable")]
    status: WorkloadStatus,
}

#[derive(Deserialize)]
struct ObjectMeta {
    name: String,
    #[serde(default, deserialize_with = "nullable")]
    namespace: String,
    #[serde(default, rename = "ownerReferences", deserialize_with = "nullable")]
    owner_references: Vec<OwnerReference>,
}

#[derive(Default, Deserialize)]
struct OwnerReference {
    #[serde(default, deserialize_with = "nullable")]
    kind: String,
}

/// The `spec` of every kind read: a Pod's spec holds the containers itself, the others
/// a pod template (CronJobs one level down, in their job template).
#[derive(Default, Deserialize)]
struct WorkloadSpec {
    /// Deployments, StatefulSets, DaemonSets, Jobs.
    #[serde(default, deserialize_with = "nullable")]
    template: PodTemplate,
    /// CronJobs.
    #[serde(default, rename = "jobTemplate", deserialize_with = "nullable")]
    job_template: JobTemplate,
    /// Deployments, StatefulSets: absent means 1.
    #[serde(default)]
    replicas: Option<i64>,
    /// CronJobs, Jobs.
    #[serde(default)]
    suspend: Option<bool>,
    /// Pods: the pod spec's own fields.
    #[serde(flatten)]
    pod: PodSpec,
}

#[derive(Default, Deserialize)]
struct WorkloadStatus {
    /// DaemonSets: nodes the pod should run on.
    #[serde(default, rename = "desiredNumberScheduled")]
    desired_number_scheduled: Option<i64>,
    /// Pods.
    #[serde(default, deserialize_with = "nullable")]
    phase: String,
    /// Jobs.
    #[serde(default, deserialize_with = "nullable")]
    conditions: Vec<Condition>,
}

#[derive(Default, Deserialize)]
struct Condition {
    #[serde(default, rename = "type", deserialize_with = "nullable")]
    kind: String,
    #[serde(default, deserialize_with = "nullable")]
    status: String,
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

/// `{name: ...}`, as pull secrets are named.
#[derive(Default, Deserialize)]
pub(super) struct LocalObjectReference {
    #[serde(default, deserialize_with = "nullable")]
    name: String,
}

/// A ServiceAccount as far as pull secrets go.
#[derive(Deserialize)]
pub(super) struct ServiceAccount {
    #[serde(default, rename = "imagePullSecrets", deserialize_with = "nullable")]
    pub(super) image_pull_secrets: Vec<LocalObjectReference>,
}

/// A Secret: its type and data.
#[derive(Deserialize)]
pub(super) struct SecretObject {
    #[serde(default, rename = "type", deserialize_with = "nullable")]
    pub(super) secret_type: String,
    #[serde(default, deserialize_with = "nullable")]
    pub(super) data: BTreeMap<String, String>,
}

/// The names of non-empty references, in order.
pub(super) fn reference_names(references: Vec<LocalObjectReference>) -> Vec<String> {
    references
        .into_iter()
        .map(|r| r.name)
        .filter(|n| !n.is_empty())
        .collect()
}

/// Why a workload's images are not worth checking now: it runs no pod and will not
/// start one until someone changes it. The value of the `reason` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Disabled {
    /// A Deployment or StatefulSet with `replicas: 0`, a DaemonSet scheduled on no node.
    ScaledToZero,
    /// A CronJob or Job with `suspend: true`.
    Suspended,
    /// A Job that completed or failed, a Pod that succeeded or failed.
    Finished,
}

impl Disabled {
    /// Every reason, in the order they are exported.
    pub const ALL: [Disabled; 3] = [
        Disabled::ScaledToZero,
        Disabled::Suspended,
        Disabled::Finished,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Disabled::ScaledToZero => "scaled_to_zero",
            Disabled::Suspended => "suspended",
            Disabled::Finished => "finished",
        }
    }
}

/// One workload as far as images go.
#[derive(Clone, Debug, PartialEq)]
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
    /// Whether (and why) it is switched off.
    pub disabled: Option<Disabled>,
}

impl Workload {
    /// The workload an object describes; `None` for what `include_pods` leaves to its
    /// owner: a Pod that has one, a Job that a CronJob made.
    fn from_object(kind: WorkloadKind, object: WorkloadObject, init: bool) -> Option<Workload> {
        let owners = &object.metadata.owner_references;
        let owned = match kind {
            WorkloadKind::Pod => !owners.is_empty(),
            WorkloadKind::Job => owners.iter().any(|o| o.kind == "CronJob"),
            _ => false,
        };
        if owned {
            return None;
        }
        let disabled = disabled(kind, &object.spec, &object.status);
        let WorkloadSpec {
            template,
            job_template,
            pod: own_pod,
            ..
        } = object.spec;
        let pod = match kind {
            WorkloadKind::CronJob => job_template.spec.template.spec,
            WorkloadKind::Pod => own_pod,
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
        Some(Workload {
            kind,
            namespace: object.metadata.namespace,
            name: object.metadata.name,
            containers,
            pull_secrets: reference_names(pod.image_pull_secrets),
            service_account,
            disabled,
        })
    }
}

/// Whether a workload is switched off, as deckhouse's exporter decides it (replicas 0,
/// a DaemonSet on no node, a suspended CronJob), plus what `include_pods` adds: a
/// suspended or finished Job, a Pod that has ended.
fn disabled(kind: WorkloadKind, spec: &WorkloadSpec, status: &WorkloadStatus) -> Option<Disabled> {
    let finished_job = status
        .conditions
        .iter()
        .any(|c| (c.kind == "Complete" || c.kind == "Failed") && c.status == "True");
    match kind {
        WorkloadKind::Deployment | WorkloadKind::StatefulSet if spec.replicas == Some(0) => {
            Some(Disabled::ScaledToZero)
        }
        WorkloadKind::DaemonSet if status.desired_number_scheduled == Some(0) => {
            Some(Disabled::ScaledToZero)
        }
        WorkloadKind::CronJob | WorkloadKind::Job if spec.suspend == Some(true) => {
            Some(Disabled::Suspended)
        }
        WorkloadKind::Job if finished_job => Some(Disabled::Finished),
        WorkloadKind::Pod if status.phase == "Succeeded" || status.phase == "Failed" => {
            Some(Disabled::Finished)
        }
        _ => None,
    }
}

/// An object's (namespace, name), from its `metadata`.
fn key_of(object: &Value) -> Result<ObjectKey, String> {
    let metadata = object.get("metadata");
    let field = |f: &str| metadata.and_then(|m| m.get(f)).and_then(Value::as_str);
    let name = field("name").ok_or("an object without metadata.name")?;
    Ok((
        field("namespace").unwrap_or_default().to_string(),
        name.to_string(),
    ))
}

/// A workload object of `kind` (from a list page or a watch event): its key, and the
/// workload when sonde checks it.
pub fn decode_workload(
    kind: WorkloadKind,
    include_init: bool,
    object: Value,
) -> Result<(ObjectKey, Option<Workload>), String> {
    let key = key_of(&object)?;
    let object: WorkloadObject = serde_json::from_value(object)
        .map_err(|e| format!("{} {}/{}: {e}", kind.name(), key.0, key.1))?;
    Ok((key, Workload::from_object(kind, object, include_init)))
}

/// A Namespace object: its key and its name.
pub fn decode_namespace(object: Value) -> Result<(ObjectKey, Option<String>), String> {
    let key = key_of(&object)?;
    let name = key.1.clone();
    Ok((key, Some(name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(kind: WorkloadKind, json: &str, init: bool) -> Option<Workload> {
        decode_workload(kind, init, serde_json::from_str(json).unwrap())
            .unwrap()
            .1
    }

    #[test]
    fn workloads_are_read_from_kubectl_shaped_json() {
        let cronjob = r#"{"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"report","namespace":"ops","labels":null},
          "spec":{"schedule":"0 * * * *","jobTemplate":{"metadata":{},"spec":{"template":{"metadata":{},
          "spec":{"containers":[{"name":"r","image":"busybox:1.36","resources":{}}],"initContainers":[{"name":"i","image":"alpine"}],
          "imagePullSecrets":null,"serviceAccountName":"reporter","restartPolicy":"OnFailure"}}}}},"status":{}}"#;
        let w = workload(WorkloadKind::CronJob, cronjob, true).unwrap();
        assert_eq!(
            w.containers,
            vec![
                ("r".to_string(), "busybox:1.36".to_string()),
                ("i".to_string(), "alpine".to_string())
            ]
        );
        assert_eq!(w.service_account, "reporter");
        assert!(w.pull_secrets.is_empty());
        assert_eq!(w.disabled, None);
        let deployment = r#"{"metadata":{"name":"web","namespace":"a"},"spec":{"replicas":null,"template":{"spec":{
          "containers":[{"name":"web","image":"nginx"}],"initContainers":[{"name":"i","image":"alpine"}],
          "imagePullSecrets":[{"name":"regcred"},{}],"serviceAccount":"old"}}}}"#;
        let w = workload(WorkloadKind::Deployment, deployment, false).unwrap();
        assert_eq!(w.containers.len(), 1);
        assert_eq!(w.pull_secrets, vec!["regcred".to_string()]);
        assert_eq!(w.service_account, "old");
        assert_eq!(w.disabled, None);
        let bare = r#"{"metadata":{"name":"x"},"spec":null,"status":null}"#;
        let w = workload(WorkloadKind::DaemonSet, bare, true).unwrap();
        assert!(w.containers.is_empty());
        assert_eq!(w.service_account, "default");
        assert!(
            decode_workload(
                WorkloadKind::Deployment,
                true,
                serde_json::json!({"spec": {}})
            )
            .is_err()
        );
    }

    #[test]
    fn switched_off_workloads_say_why() {
        let cases = [
            (
                WorkloadKind::Deployment,
                r#"{"replicas":0}"#,
                "{}",
                Some(Disabled::ScaledToZero),
            ),
            (WorkloadKind::Deployment, r#"{"replicas":2}"#, "{}", None),
            (
                WorkloadKind::StatefulSet,
                r#"{"replicas":0}"#,
                "{}",
                Some(Disabled::ScaledToZero),
            ),
            (
                WorkloadKind::DaemonSet,
                "{}",
                r#"{"desiredNumberScheduled":0}"#,
                Some(Disabled::ScaledToZero),
            ),
            (
                WorkloadKind::DaemonSet,
                "{}",
                r#"{"desiredNumberScheduled":3}"#,
                None,
            ),
            (
                WorkloadKind::CronJob,
                r#"{"suspend":true}"#,
                "{}",
                Some(Disabled::Suspended),
            ),
            (WorkloadKind::CronJob, r#"{"suspend":false}"#, "{}", None),
            (
                WorkloadKind::Job,
                r#"{"suspend":true}"#,
                "{}",
                Some(Disabled::Suspended),
            ),
            (
                WorkloadKind::Job,
                "{}",
                r#"{"conditions":[{"type":"Complete","status":"True"}]}"#,
                Some(Disabled::Finished),
            ),
            (
                WorkloadKind::Job,
                "{}",
                r#"{"conditions":[{"type":"Failed","status":"False"}]}"#,
                None,
            ),
            (
                WorkloadKind::Pod,
                "{}",
                r#"{"phase":"Succeeded"}"#,
                Some(Disabled::Finished),
            ),
            (WorkloadKind::Pod, "{}", r#"{"phase":"Pending"}"#, None),
        ];
        for (kind, spec, status, expected) in cases {
            let json = format!(
                r#"{{"metadata":{{"name":"x","namespace":"n"}},"spec":{spec},"status":{status}}}"#
            );
            let w = workload(kind, &json, true).unwrap();
            assert_eq!(w.disabled, expected, "{kind:?} {spec} {status}");
        }
    }

    #[test]
    fn only_pods_without_an_owner_and_jobs_no_cron_job_made_are_workloads() {
        let pod = |owners: &str| {
            format!(
                r#"{{"metadata":{{"name":"p","namespace":"n","ownerReferences":{owners}}},
                "spec":{{"containers":[{{"name":"c","image":"busybox"}}],"serviceAccountName":"sa"}}}}"#
            )
        };
        let bare = workload(WorkloadKind::Pod, &pod("null"), true).unwrap();
        assert_eq!(
            bare.containers,
            vec![("c".to_string(), "busybox".to_string())]
        );
        assert_eq!(bare.service_account, "sa");
        assert!(workload(WorkloadKind::Pod, &pod(r#"[{"kind":"ReplicaSet"}]"#), true).is_none());
        let job = |owners: &str| {
            format!(
                r#"{{"metadata":{{"name":"j","namespace":"n","ownerReferences":{owners}}},
                "spec":{{"template":{{"spec":{{"containers":[{{"name":"c","image":"alpine"}}]}}}}}}}}"#
            )
        };
        assert!(workload(WorkloadKind::Job, &job("[]"), true).is_some());
        assert!(workload(WorkloadKind::Job, &job(r#"[{"kind":"Workflow"}]"#), true).is_some());
        assert!(workload(WorkloadKind::Job, &job(r#"[{"kind":"CronJob"}]"#), true).is_none());
    }
}
