//! A kubeconfig file (`~/.kube/config`, what `kubectl` reads), for sonde running outside
//! the cluster: the server, how its certificate is verified and how sonde
//! authenticates, taken from one context.
//!
//! Read as client-go reads it: `current-context` unless a context is named; a cluster's
//! `certificate-authority` (a file) or `certificate-authority-data` (base64 PEM),
//! `insecure-skip-tls-verify` and `tls-server-name`; a user's `token` or `tokenFile`,
//! `client-certificate`/`client-key` files or their `-data` forms. Relative paths are
//! relative to the kubeconfig's directory. What sonde cannot do is refused with a
//! message naming the line: an `exec` credential plugin or an `auth-provider` (the
//! scratch image has no program to run), basic auth, impersonation, a proxy. Every
//! other field is ignored. Errors never quote a token, a key or certificate data.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_saphyr::Location;

use crate::files::read_capped;
use crate::net::http::TlsSettings;
use crate::net::oci::base64_decode;
use crate::net::secret::Secret;
use crate::problem::Spanned;
use crate::tls;

/// Largest kubeconfig read (embedded certificates of many clusters fit easily).
const KUBECONFIG_LIMIT: u64 = 4 << 20;

/// How sonde proves who it is, from the chosen user.
#[derive(Debug)]
pub enum Token {
    /// No bearer token (a client certificate, or nothing).
    None,
    /// `token`: read with the kubeconfig.
    Inline(Secret),
    /// `tokenFile`: re-read as it rotates.
    File(PathBuf),
}

/// What one context of a kubeconfig says.
#[derive(Debug)]
pub struct Kubeconfig {
    /// The cluster's `server`, without a trailing `/`.
    pub server: String,
    /// Verification of the server and, with a client certificate, sonde's own.
    pub tls: TlsSettings,
    /// The bearer token, if the user has one.
    pub token: Token,
    /// The context used, for messages.
    pub context: String,
}

#[derive(Deserialize)]
struct File {
    #[serde(default, rename = "current-context")]
    current_context: Option<String>,
    #[serde(default)]
    clusters: Option<Vec<Named<Cluster>>>,
    #[serde(default)]
    users: Option<Vec<Named<User>>>,
    #[serde(default)]
    contexts: Option<Vec<Named<Context>>>,
}

/// `{name: ..., cluster|user|context: ...}`.
#[derive(Deserialize)]
struct Named<T> {
    name: Spanned<String>,
    #[serde(alias = "cluster", alias = "user", alias = "context")]
    item: Option<T>,
}

#[derive(Deserialize)]
struct Cluster {
    #[serde(default)]
    server: Option<Spanned<String>>,
    #[serde(default, rename = "certificate-authority")]
    certificate_authority: Option<Spanned<String>>,
    #[serde(default, rename = "certificate-authority-data")]
    certificate_authority_data: Option<Spanned<String>>,
    #[serde(default, rename = "insecure-skip-tls-verify")]
    insecure_skip_tls_verify: Option<bool>,
    #[serde(default, rename = "tls-server-name")]
    tls_server_name: Option<Spanned<String>>,
    #[serde(default, rename = "proxy-url")]
    proxy_url: Option<Spanned<String>>,
}

#[derive(Deserialize)]
struct User {
    #[serde(default)]
    token: Option<Spanned<String>>,
    #[serde(default, rename = "tokenFile")]
    token_file: Option<Spanned<String>>,
    #[serde(default, rename = "client-certificate")]
    client_certificate: Option<Spanned<String>>,
    #[serde(default, rename = "client-certificate-data")]
    client_certificate_data: Option<Spanned<String>>,
    #[serde(default, rename = "client-key")]
    client_key: Option<Spanned<String>>,
    #[serde(default, rename = "client-key-data")]
    client_key_data: Option<Spanned<String>>,
    #[serde(default)]
    exec: Option<Spanned<Exec>>,
    #[serde(default, rename = "auth-provider")]
    auth_provider: Option<Spanned<AuthProvider>>,
    #[serde(default)]
    username: Option<Spanned<IgnoredAny>>,
    #[serde(default, rename = "as")]
    impersonate: Option<Spanned<IgnoredAny>>,
}

#[derive(Deserialize)]
struct Exec {
    #[serde(default)]
    command: Option<String>,
}

#[derive(Deserialize)]
struct AuthProvider {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct Context {
    #[serde(default)]
    cluster: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

/// Reads the kubeconfig at `path` and resolves `context` (else its `current-context`).
/// The error names the file (with line and column where a value is at fault).
pub fn load(path: &Path, context: Option<&str>) -> Result<Kubeconfig, String> {
    let bytes = read_capped(path, KUBECONFIG_LIMIT)
        .map_err(|e| format!("cannot read the kubeconfig {}: {e}", path.display()))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| format!("the kubeconfig {} is not UTF-8", path.display()))?;
    let file: File = serde_saphyr::from_str(text).map_err(|e| {
        // The message may quote the text around the mistake; keep the first line,
        // which says what and where.
        let first = e.to_string();
        let first = first.lines().next().unwrap_or_default().to_string();
        format!("the kubeconfig {} is not valid: {first}", path.display())
    })?;
    let at = |location: Location| {
        format!(
            "{}:{}:{}",
            path.display(),
            location.line(),
            location.column()
        )
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let (wanted, cluster, user) = choose(&file, context, path, &at)?;
    let server = server(cluster, &at)?;
    let mut tls = cluster_tls(cluster, base, &at)?;
    let token = match user {
        None => Token::None,
        Some(user) => {
            refuse_unsupported(user, &at)?;
            if let Some((chain, key)) = client_certificate(user, base, &at)? {
                tls = tls
                    .with_client_cert(chain, key)
                    .map_err(|e| format!("the kubeconfig {}: {e}", path.display()))?;
            }
            token(user, base)
        }
    };
    Ok(Kubeconfig {
        server,
        tls,
        token,
        context: wanted,
    })
}

/// The context to use (`context`, else `current-context`), its cluster and its user
/// (none when the context names none).
fn choose<'f>(
    file: &'f File,
    context: Option<&str>,
    path: &Path,
    at: &dyn Fn(Location) -> String,
) -> Result<(String, &'f Cluster, Option<&'f User>), String> {
    let contexts = file.contexts.as_deref().unwrap_or_default();
    let wanted = context
        .map(str::to_string)
        .or(file.current_context.clone().filter(|c| !c.is_empty()))
        .ok_or_else(|| {
            format!(
                "the kubeconfig {} has no current-context; set context (one of {})",
                path.display(),
                names(contexts)
            )
        })?;
    let chosen = contexts
        .iter()
        .find(|c| c.name.value == wanted)
        .ok_or_else(|| {
            format!(
                "the kubeconfig {} has no context {wanted:?} (it has {})",
                path.display(),
                names(contexts)
            )
        })?;
    let here = at(chosen.name.referenced);
    let ctx = chosen
        .item
        .as_ref()
        .ok_or_else(|| format!("{here}: context {wanted:?} is empty"))?;
    let cluster_name = ctx.cluster.clone().unwrap_or_default();
    let cluster = file
        .clusters
        .iter()
        .flatten()
        .find(|c| c.name.value == cluster_name)
        .and_then(|c| c.item.as_ref())
        .ok_or_else(|| {
            format!("{here}: context {wanted:?} names cluster {cluster_name:?}, which the kubeconfig does not have")
        })?;
    let user_name = ctx.user.clone().unwrap_or_default();
    let user = match file
        .users
        .iter()
        .flatten()
        .find(|u| u.name.value == user_name)
    {
        Some(u) => u.item.as_ref(),
        None if user_name.is_empty() => None,
        None => {
            return Err(format!(
                "{here}: context {wanted:?} names user {user_name:?}, which the kubeconfig does not have"
            ));
        }
    };
    Ok((wanted, cluster, user))
}

/// The names of the contexts, for a message.
fn names(contexts: &[Named<Context>]) -> String {
    if contexts.is_empty() {
        return "no contexts".into();
    }
    contexts
        .iter()
        .map(|c| format!("{:?}", c.name.value))
        .collect::<Vec<_>>()
        .join(", ")
}

fn server(cluster: &Cluster, at: &dyn Fn(Location) -> String) -> Result<String, String> {
    let server = cluster
        .server
        .as_ref()
        .ok_or("the kubeconfig's cluster has no server")?;
    if let Some(proxy) = &cluster.proxy_url {
        return Err(format!(
            "{}: proxy-url is not supported; sonde connects to the server directly",
            at(proxy.referenced)
        ));
    }
    super::server_url(&server.value).ok_or_else(|| {
        format!(
            "{}: server {:?} is not an http:// or https:// URL",
            at(server.referenced),
            server.value
        )
    })
}

/// How the server's certificate is verified: the cluster's CA (file or data), else the
/// built-in roots.
fn cluster_tls(
    cluster: &Cluster,
    base: &Path,
    at: &dyn Fn(Location) -> String,
) -> Result<TlsSettings, String> {
    let roots = match (
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
    ) {
        (Some(data), _) => Some(certificates_from_data(
            data,
            "certificate-authority-data",
            at,
        )?),
        (None, Some(file)) => Some(
            tls::read_certificates(&base.join(&file.value))
                .map_err(|e| format!("{}: certificate-authority {e}", at(file.referenced)))?,
        ),
        (None, None) => None,
    };
    let server_name = match &cluster.tls_server_name {
        None => None,
        Some(name) => Some(ServerName::try_from(name.value.clone()).map_err(|_| {
            format!(
                "{}: tls-server-name {:?} is not a DNS name or IP",
                at(name.referenced),
                name.value
            )
        })?),
    };
    Ok(TlsSettings::from_parts(
        roots,
        cluster.insecure_skip_tls_verify.unwrap_or(false),
        server_name,
    ))
}

/// Base64 PEM data decoded (never quoted in an error).
fn pem_data(
    data: &Spanned<String>,
    key: &str,
    at: &dyn Fn(Location) -> String,
) -> Result<Vec<u8>, String> {
    base64_decode(&data.value)
        .ok_or_else(|| format!("{}: {key} is not base64", at(data.referenced)))
}

fn certificates_from_data(
    data: &Spanned<String>,
    key: &str,
    at: &dyn Fn(Location) -> String,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = tls::parse_certificates(&pem_data(data, key, at)?);
    if certs.is_empty() {
        return Err(format!(
            "{}: {key} holds no PEM certificate",
            at(data.referenced)
        ));
    }
    Ok(certs)
}

/// What sonde cannot do with a user, refused with the line that asks for it.
fn refuse_unsupported(user: &User, at: &dyn Fn(Location) -> String) -> Result<(), String> {
    if let Some(exec) = &user.exec {
        let command = exec.value.command.as_deref().unwrap_or("a command");
        return Err(format!(
            "{}: the user gets its credentials from an exec plugin ({command}); sonde runs no programs (its image has none to run): use a service-account token (token or tokenFile) or a client certificate",
            at(exec.referenced)
        ));
    }
    if let Some(provider) = &user.auth_provider {
        let name = provider.value.name.as_deref().unwrap_or("an auth provider");
        return Err(format!(
            "{}: auth-provider {name:?} is not supported (client-go removed them); use a service-account token or a client certificate",
            at(provider.referenced)
        ));
    }
    if let Some(u) = &user.username {
        return Err(format!(
            "{}: basic auth (username/password) is not supported (Kubernetes removed it in 1.19); use a token or a client certificate",
            at(u.referenced)
        ));
    }
    if let Some(i) = &user.impersonate {
        return Err(format!(
            "{}: impersonation (as) is not supported; give the user itself the RBAC rules sonde needs",
            at(i.referenced)
        ));
    }
    Ok(())
}

/// The user's client certificate and key, when it has them (file or data); one without
/// the other is an error.
fn client_certificate(
    user: &User,
    base: &Path,
    at: &dyn Fn(Location) -> String,
) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, String> {
    let chain = match (&user.client_certificate_data, &user.client_certificate) {
        (Some(data), _) => Some((
            certificates_from_data(data, "client-certificate-data", at)?,
            data.referenced,
        )),
        (None, Some(file)) => Some((
            tls::read_certificates(&base.join(&file.value))
                .map_err(|e| format!("{}: client-certificate {e}", at(file.referenced)))?,
            file.referenced,
        )),
        (None, None) => None,
    };
    let key = match (&user.client_key_data, &user.client_key) {
        (Some(data), _) => Some((
            PrivateKeyDer::from_pem_slice(&pem_data(data, "client-key-data", at)?).map_err(
                |_| {
                    format!(
                        "{}: client-key-data holds no PKCS#8, RSA or EC private key",
                        at(data.referenced)
                    )
                },
            )?,
            data.referenced,
        )),
        (None, Some(file)) => Some((
            tls::read_private_key(&base.join(&file.value))
                .map_err(|e| format!("{}: client-key {e}", at(file.referenced)))?,
            file.referenced,
        )),
        (None, None) => None,
    };
    match (chain, key) {
        (Some((chain, _)), Some((key, _))) => Ok(Some((chain, key))),
        (None, None) => Ok(None),
        (Some((_, where_)), None) => Err(format!(
            "{}: a client certificate without client-key or client-key-data",
            at(where_)
        )),
        (None, Some((_, where_))) => Err(format!(
            "{}: a client key without client-certificate or client-certificate-data",
            at(where_)
        )),
    }
}

/// The user's bearer token: `tokenFile` (re-read) wins over `token`, as in client-go.
fn token(user: &User, base: &Path) -> Token {
    match (&user.token_file, &user.token) {
        (Some(file), _) => Token::File(base.join(&file.value)),
        (None, Some(token)) if !token.value.is_empty() => {
            Token::Inline(Secret::new(token.value.clone()))
        }
        _ => Token::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("config");
        std::fs::write(&path, text).unwrap();
        path
    }

    const TWO_CONTEXTS: &str = "apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: dev-cluster
  cluster:
    server: https://127.0.0.1:6443/
    insecure-skip-tls-verify: true
    extensions: [{name: x, extension: {}}]
- name: prod-cluster
  cluster: {server: https://10.0.0.1:6443, tls-server-name: kubernetes.default}
users:
- name: dev-user
  user: {token: s3cr3t-token}
- name: prod-user
  user: {tokenFile: token}
contexts:
- name: dev
  context: {cluster: dev-cluster, user: dev-user, namespace: team-a}
- name: prod
  context: {cluster: prod-cluster, user: prod-user}
preferences: {}
";

    #[test]
    fn the_current_or_named_context_is_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), TWO_CONTEXTS);
        let dev = load(&path, None).unwrap();
        assert_eq!(dev.server, "https://127.0.0.1:6443");
        assert_eq!(dev.context, "dev");
        assert!(matches!(&dev.token, Token::Inline(s) if s.expose() == "s3cr3t-token"));
        assert!(!format!("{dev:?}").contains("s3cr3t-token"));
        let prod = load(&path, Some("prod")).unwrap();
        assert_eq!(prod.server, "https://10.0.0.1:6443");
        assert!(matches!(&prod.token, Token::File(p) if p == &dir.path().join("token")));
        let e = load(&path, Some("staging")).unwrap_err();
        assert!(
            e.contains("no context \"staging\" (it has \"dev\", \"prod\")"),
            "{e}"
        );
    }

    #[test]
    fn what_sonde_cannot_do_is_refused_at_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let exec = "current-context: c
clusters: [{name: k, cluster: {server: https://k:6443}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
users:
- name: u
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: aws
      args: [eks, get-token]
";
        let e = load(&write(dir.path(), exec), None).unwrap_err();
        assert!(
            e.contains("config:8:7: the user gets its credentials from an exec plugin (aws)"),
            "{e}"
        );
        let proxy = "current-context: c
clusters: [{name: k, cluster: {server: https://k:6443, proxy-url: http://p:3128}}]
contexts: [{name: c, context: {cluster: k}}]
";
        let e = load(&write(dir.path(), proxy), None).unwrap_err();
        assert!(e.contains("config:2:67: proxy-url is not supported"), "{e}");
        let basic = "current-context: c
clusters: [{name: k, cluster: {server: https://k:6443}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
users: [{name: u, user: {username: admin, password: hunter2}}]
";
        let e = load(&write(dir.path(), basic), None).unwrap_err();
        assert!(e.contains("basic auth") && !e.contains("hunter2"), "{e}");
        let half = "current-context: c
clusters: [{name: k, cluster: {server: https://k:6443}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
users: [{name: u, user: {client-key-data: bm90IGEga2V5}}]
";
        let e = load(&write(dir.path(), half), None).unwrap_err();
        assert!(e.contains("client-key-data holds no PKCS#8"), "{e}");
        let nothing = "kind: Config\n";
        let e = load(&write(dir.path(), nothing), None).unwrap_err();
        assert!(
            e.contains("has no current-context; set context (one of no contexts)"),
            "{e}"
        );
        let e = load(&dir.path().join("missing"), None).unwrap_err();
        assert!(e.contains("cannot read the kubeconfig"), "{e}");
    }
}
