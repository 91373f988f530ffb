//! `--web.config.file` (exporter-toolkit format): TLS with rustls 0.23 and basic auth
//! with bcrypt hashes.
//!
//! The web config, certificate and key are watched: when one of their modification
//! times changes, they are read again (at most once a second, on a new connection), so
//! a renewed certificate is served without a restart. A new file that does not load is
//! logged and the previous settings stay. Verified passwords are cached by a SHA-256
//! digest of user and password, compared in constant time, so bcrypt's cost is paid once.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use crate::problem::Spanned;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use serde::Deserialize;

use crate::files::read_capped;
use crate::problem::Problem;
use crate::sync::{lock, read, write};
use crate::tls;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebConfigDoc {
    #[serde(default)]
    tls_server_config: Option<TlsServerDoc>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
    #[serde(default)]
    http_server_config: Option<HttpServerDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsServerDoc {
    cert_file: Spanned<String>,
    key_file: Spanned<String>,
    #[serde(default)]
    client_auth_type: Option<Spanned<String>>,
    #[serde(default)]
    client_ca_file: Option<Spanned<String>>,
    #[serde(default)]
    min_version: Option<Spanned<String>>,
    #[serde(default)]
    max_version: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpServerDoc {
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// The loaded web settings.
#[derive(Clone)]
pub struct WebSettings {
    /// TLS for every connection, when configured.
    pub tls: Option<Arc<ServerConfig>>,
    /// User name to bcrypt hash; empty means no authentication.
    pub users: HashMap<String, String>,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
    /// Files whose modification times decide when to load again.
    watched: Vec<(PathBuf, Option<SystemTime>)>,
}

impl std::fmt::Debug for WebSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSettings")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

/// Reads and validates a web config file.
pub fn load(path: &Path) -> Result<WebSettings, Problem> {
    let name = path.display().to_string();
    let with_file = |mut p: Problem| {
        p.file = Some(name.clone());
        p
    };
    let bytes = read_capped(path, 1 << 20)
        .map_err(|e| Problem::plain(format!("{name}: cannot read the web config: {e}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Problem::plain(format!("{name}: the web config is not UTF-8")))?;
    let doc: WebConfigDoc = if text.trim().is_empty() {
        WebConfigDoc::default()
    } else {
        serde_saphyr::from_str(&text)
            .map_err(|e| with_file(crate::problem::yaml_problem(&e, None)))?
    };
    let base = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let mut watched = vec![(path.to_path_buf(), modified(path))];
    let tls = match &doc.tls_server_config {
        None => None,
        Some(t) => Some(build_tls(t, &base, &mut watched).map_err(with_file)?),
    };
    for (user, hash) in &doc.basic_auth_users {
        if !(hash.starts_with("$2a$")
            || hash.starts_with("$2b$")
            || hash.starts_with("$2y$")
            || hash.starts_with("$2x$"))
            || bcrypt_cost(hash).is_none()
        {
            return Err(with_file(Problem::plain(format!(
                "basic_auth_users: the hash of user {user:?} is not a bcrypt hash ($2y$10$...)"
            ))));
        }
    }
    let mut headers = Vec::new();
    for (k, v) in doc
        .http_server_config
        .map(|h| h.headers)
        .unwrap_or_default()
    {
        if ureq::http::HeaderName::try_from(k.as_str()).is_err()
            || ureq::http::HeaderValue::try_from(v.as_str()).is_err()
        {
            return Err(with_file(Problem::plain(format!(
                "http_server_config.headers: {k:?} is not a valid header"
            ))));
        }
        headers.push((k, v));
    }
    Ok(WebSettings {
        tls,
        users: doc.basic_auth_users.into_iter().collect(),
        headers,
        watched,
    })
}

fn bcrypt_cost(hash: &str) -> Option<u32> {
    let cost: u32 = hash.get(4..6)?.parse().ok()?;
    (hash.len() == 60 && (4..=31).contains(&cost)).then_some(cost)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The server's TLS config from `tls_server_config`; the files it read are added to
/// `watched` so a change reloads it.
fn build_tls(
    t: &TlsServerDoc,
    base: &Path,
    watched: &mut Vec<(PathBuf, Option<SystemTime>)>,
) -> Result<Arc<ServerConfig>, Problem> {
    let at = |s: &Spanned<String>, msg: String| Problem::at(s.referenced, None, msg);
    let cert_path = base.join(&t.cert_file.value);
    let key_path = base.join(&t.key_file.value);
    let chain = tls::read_certificates(&cert_path)
        .map_err(|e| at(&t.cert_file, format!("cert_file {e}")))?;
    let key =
        tls::read_private_key(&key_path).map_err(|e| at(&t.key_file, format!("key_file {e}")))?;
    watched.push((cert_path.clone(), modified(&cert_path)));
    watched.push((key_path.clone(), modified(&key_path)));
    let version = |v: &Option<Spanned<String>>, default: u8| -> Result<u8, Problem> {
        match v {
            None => Ok(default),
            Some(s) => tls::parse_version(&s.value).map_err(|e| at(s, e)),
        }
    };
    let versions = tls::versions(version(&t.min_version, 12)?, version(&t.max_version, 13)?)
        .map_err(|e| at(t.min_version.as_ref().unwrap_or(&t.cert_file), e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .map_err(|e| at(&t.cert_file, format!("TLS setup: {e}")))?;
    let builder = match client_verifier(t, base, provider, watched)? {
        None => builder.with_no_client_auth(),
        Some(verifier) => builder.with_client_cert_verifier(verifier),
    };
    let config = builder.with_single_cert(chain, key).map_err(|e| {
        at(
            &t.key_file,
            format!("the certificate and key do not work together: {e}"),
        )
    })?;
    Ok(Arc::new(config))
}

/// The client-certificate verifier `client_auth_type` and `client_ca_file` ask for.
fn client_verifier(
    t: &TlsServerDoc,
    base: &Path,
    provider: Arc<rustls::crypto::CryptoProvider>,
    watched: &mut Vec<(PathBuf, Option<SystemTime>)>,
) -> Result<Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>, Problem> {
    let at = |s: &Spanned<String>, msg: String| Problem::at(s.referenced, None, msg);
    let auth_type = t
        .client_auth_type
        .as_ref()
        .map_or("NoClientCert", |s| s.value.as_str());
    let optional = match auth_type {
        "NoClientCert" => return Ok(None),
        "RequireAndVerifyClientCert" => false,
        "VerifyClientCertIfGiven" => true,
        other => {
            return Err(at(
                t.client_auth_type.as_ref().unwrap_or(&t.cert_file),
                format!(
                    "client_auth_type {other:?} is not supported; use NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
                ),
            ));
        }
    };
    let Some(ca) = &t.client_ca_file else {
        return Err(at(
            t.client_auth_type.as_ref().unwrap_or(&t.cert_file),
            format!("client_auth_type {auth_type} needs client_ca_file"),
        ));
    };
    let ca_path = base.join(&ca.value);
    let certs =
        tls::read_certificates(&ca_path).map_err(|e| at(ca, format!("client_ca_file {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(at(
            ca,
            format!(
                "client_ca_file {}: no usable CA certificate",
                ca_path.display()
            ),
        ));
    }
    watched.push((ca_path.clone(), modified(&ca_path)));
    let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    if optional {
        verifier = verifier.allow_unauthenticated();
    }
    let verifier = verifier
        .build()
        .map_err(|e| at(ca, format!("client_ca_file: {e}")))?;
    Ok(Some(verifier))
}

/// The current web settings, reloaded when their files change, plus the password cache.
pub struct Security {
    path: Option<PathBuf>,
    current: RwLock<Arc<WebSettings>>,
    last_check: Mutex<Instant>,
    verified: Mutex<HashMap<String, [u8; 32]>>,
}

impl Security {
    /// Settings from `path`, or none (plain HTTP, no authentication).
    pub fn new(path: Option<PathBuf>, settings: Option<WebSettings>) -> Security {
        let settings = settings.unwrap_or(WebSettings {
            tls: None,
            users: HashMap::new(),
            headers: Vec::new(),
            watched: Vec::new(),
        });
        Security {
            path,
            current: RwLock::new(Arc::new(settings)),
            last_check: Mutex::new(Instant::now()),
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// The settings to use now; re-reads the files when they changed (checked at most
    /// once a second).
    pub fn current(&self) -> Arc<WebSettings> {
        let settings = Arc::clone(&read(&self.current));
        let Some(path) = &self.path else {
            return settings;
        };
        {
            let mut last = lock(&self.last_check);
            if last.elapsed() < Duration::from_secs(1) {
                return settings;
            }
            *last = Instant::now();
        }
        let changed = settings.watched.iter().any(|(p, t)| modified(p) != *t);
        if !changed {
            return settings;
        }
        match load(path) {
            Ok(new) => {
                log::info!(
                    "msg=\"web config reloaded\" file={:?} tls={}",
                    path.display().to_string(),
                    new.tls.is_some()
                );
                let new = Arc::new(new);
                *write(&self.current) = Arc::clone(&new);
                lock(&self.verified).clear();
                new
            }
            Err(p) => {
                log::error!(
                    "msg=\"web config changed but does not load; keeping the previous one\" problem={:?}",
                    p.to_string()
                );
                settings
            }
        }
    }

    /// Whether the request may pass: no users configured, or valid Basic credentials.
    pub fn authorized(&self, settings: &WebSettings, authorization: Option<&str>) -> bool {
        if settings.users.is_empty() {
            return true;
        }
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return false;
        };
        let Some(hash) = settings.users.get(&user) else {
            // Spend a real bcrypt verification (against a configured hash, so at its
            // cost) so an unknown user is not told apart from a wrong password by time.
            if let Some(any) = settings.users.values().next() {
                let _ = bcrypt::verify(&password, any);
            }
            return false;
        };
        let digest = credential_digest(&user, &password, hash);
        if let Some(known) = lock(&self.verified).get(&user)
            && constant_time_eq(known, &digest)
        {
            return true;
        }
        let ok = bcrypt::verify(&password, hash).unwrap_or(false);
        if ok {
            lock(&self.verified).insert(user, digest);
        }
        ok
    }
}

fn credential_digest(user: &str, password: &str, hash: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [user, password, hash] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part.as_bytes());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Decodes `Basic base64(user:password)`.
fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, value) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(value.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_decode() {
        assert_eq!(
            parse_basic("Basic dXNlcjpwYXNz"),
            Some(("user".into(), "pass".into()))
        );
        assert_eq!(
            parse_basic("basic dXNlcjpwOmFzcw=="),
            Some(("user".into(), "p:ass".into()))
        );
        for bad in [
            "Bearer abc",
            "Basic",
            "Basic ***",
            "Basic dXNlcg==",
            "Basic dXNlcjpwYXNz=",
            "",
        ] {
            assert_eq!(parse_basic(bad), None, "{bad}");
        }
    }

    #[test]
    fn passwords_are_checked_and_cached() {
        let hash = bcrypt::hash("right", 4).unwrap();
        let security = Security::new(None, None);
        let settings = WebSettings {
            tls: None,
            users: [("prom".to_string(), hash)].into_iter().collect(),
            headers: vec![],
            watched: vec![],
        };
        let header =
            |u: &str, p: &str| format!("Basic {}", STANDARD.encode(format!("{u}:{p}").as_bytes()));
        assert!(!security.authorized(&settings, None));
        assert!(!security.authorized(&settings, Some(&header("prom", "wrong"))));
        assert!(!security.authorized(&settings, Some(&header("other", "right"))));
        assert!(security.authorized(&settings, Some(&header("prom", "right"))));
        assert_eq!(lock(&security.verified).len(), 1);
        assert!(security.authorized(&settings, Some(&header("prom", "right"))));
        assert!(!security.authorized(&settings, Some(&header("prom", "righ"))));
    }
}
