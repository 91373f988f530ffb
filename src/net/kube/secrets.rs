//! Registry credentials of a workload, found the way the kubelet finds them: the pod
//! template's `imagePullSecrets`, else those of its service account. Each Secret is
//! fetched with `get` (sonde never lists every Secret of the cluster), at most once per
//! run; a 403 is logged once with the RBAC rule that is missing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use super::objects::{SecretObject, ServiceAccount, Workload, reference_names};
use super::{ApiError, Client, OBJECT_BODY_LIMIT, rbac_rule};
use crate::net::http as client;
use crate::net::oci::{Keyring, base64_decode};

/// Registry credentials looked up during one run: each Secret and ServiceAccount is
/// fetched at most once, and each problem is logged once.
pub struct PullSecrets<'a> {
    client: &'a Client,
    deadline: Instant,
    secrets: HashMap<(String, String), Option<Keyring>>,
    service_accounts: HashMap<(String, String), Vec<String>>,
    merged: HashMap<(String, Vec<String>), Arc<Keyring>>,
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
    /// Shared, not copied: a keyring of a large pull secret used by thousands of
    /// workloads was once cloned for each.
    pub fn keyring_for(&mut self, w: &Workload) -> Arc<Keyring> {
        let names = if w.pull_secrets.is_empty() {
            self.service_account_secrets(&w.namespace, &w.service_account)
        } else {
            w.pull_secrets.clone()
        };
        let key = (w.namespace.clone(), names);
        if let Some(k) = self.merged.get(&key) {
            return Arc::clone(k);
        }
        let mut keyring = Keyring::default();
        for name in &key.1 {
            if let Some(k) = self.secret(&w.namespace, name) {
                keyring.extend(&k);
            }
        }
        let keyring = Arc::new(keyring);
        self.merged.insert(key, Arc::clone(&keyring));
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
pub(super) fn parse_pull_secret(secret: &SecretObject) -> Result<(Keyring, Vec<String>), String> {
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
mod tests {
    use super::*;
    use crate::net::image_ref::ImageRef;
    use std::collections::BTreeMap;

    fn b64(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(bytes)
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
}
