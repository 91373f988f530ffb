//! Property tests of what the Kubernetes API sends: list pages, workload objects,
//! Secrets, Status bodies and watch events, as arbitrary bytes and as JSON of any shape
//! at the places sonde reads; and of what users write: label selectors and kubeconfig
//! files. Invariants: no panic, bounded time.

use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::objects::SecretObject;
use super::secrets::parse_pull_secret;
use super::{
    WorkloadKind, decode_workload, kubeconfig, read_page, status_message, validate_selector,
};
use crate::net::prop;
use crate::units::within;

const LIMIT: Duration = Duration::from_millis(500);

const KINDS: [WorkloadKind; 6] = [
    WorkloadKind::Deployment,
    WorkloadKind::StatefulSet,
    WorkloadKind::DaemonSet,
    WorkloadKind::CronJob,
    WorkloadKind::Job,
    WorkloadKind::Pod,
];

/// A list page shaped like the API's, with any JSON where sonde looks.
fn list_page() -> impl Strategy<Value = Value> {
    (prop::json(), prop::json(), prop::json(), prop::json()).prop_map(|(meta, spec, container, init)| {
        json!({
            "kind": "DeploymentList",
            "metadata": {"continue": meta},
            "items": [
                {"metadata": {"name": "a", "namespace": "ns"}, "spec": spec},
                {"metadata": {"name": "b", "namespace": "ns"}, "spec": {"template": {"spec": {
                    "containers": [container], "initContainers": init}}}},
                {"metadata": {"name": "c", "namespace": "ns"}, "spec": {"jobTemplate": {"spec": {"template": {"spec": {
                    "containers": [{"name": "x", "image": "nginx"}]}}}}}},
            ]
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any list body: read or refused; every workload read becomes a `Workload`.
    #[test]
    fn any_list_page_is_read(body in prop_oneof![prop::body(), list_page().prop_map(|v| v.to_string().into_bytes())], init in any::<bool>()) {
        let next = std::cell::Cell::new(0);
        let decode = |object: Value| {
            let kind = KINDS[next.get() % KINDS.len()];
            next.set(next.get() + 1);
            decode_workload(kind, init, object)
        };
        let mut items = Vec::new();
        let _ = within(LIMIT, "read_page", || read_page(&body, &decode, &mut items));
    }

    /// A Status body's message, at most 300 characters, from anything.
    #[test]
    fn any_status_body_gives_a_short_message(body in prop::body()) {
        let message = within(LIMIT, "status_message", || status_message(&body));
        prop_assert!(message.chars().count() <= 300);
    }

    /// Any Secret: a keyring or an error that does not quote the secret's data.
    #[test]
    fn any_pull_secret_is_read(data in prop::json(), legacy in any::<bool>(), b64 in "[A-Za-z0-9+/=]{0,80}") {
        let secret_type = if legacy { "kubernetes.io/dockercfg" } else { "kubernetes.io/dockerconfigjson" };
        let key = if legacy { ".dockercfg" } else { ".dockerconfigjson" };
        let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, data.to_string());
        for value in [encoded, b64.clone()] {
            let secret: SecretObject = serde_json::from_value(json!({"type": secret_type, "data": {key: value}}))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            if let Err(e) = within(LIMIT, "parse_pull_secret", || parse_pull_secret(&secret)) {
                prop_assert!(b64.len() < 8 || !e.contains(&b64), "{}", e);
            }
        }
    }

    /// Any label selector: accepted or refused with a reason, never a panic.
    #[test]
    fn any_selector_is_judged(text in ".{0,80}") {
        let _ = within(LIMIT, "validate_selector", || validate_selector(&text));
    }

    /// Any kubeconfig file (bytes, or YAML whose context, cluster and user hold any
    /// JSON): a connection or an error, never a panic.
    #[test]
    fn any_kubeconfig_is_read(body in prop::body(), cluster in prop::json(), user in prop::json()) {
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let shaped = json!({"current-context": "c", "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
            "clusters": [{"name": "k", "cluster": cluster}], "users": [{"name": "u", "user": user}]});
        for (name, text) in [("raw", body), ("shaped", shaped.to_string().into_bytes())] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let _ = within(LIMIT, "kubeconfig::load", || kubeconfig::load(&path, None));
        }
    }
}
