//! `--web.config.file` (exporter-toolkit format): TLS with rustls 0.23, basic auth with
//! bcrypt hashes (checked in `auth.rs`) and the few response headers exporter-toolkit
//! allows.
//!
//! The web config, certificate and key are watched: when one of their modification
//! times or sizes changes, they are read again (at most once a second, on a new
//! connection), so a renewed certificate is served without a restart. A new file that
//! does not load is logged and the previous settings stay. So does one that would turn
//! TLS or authentication off without saying so: an editor that truncates before it
//! writes, or a half-written file, must not open the port for a second. Turning either
//! off at run time takes an explicit `tls_server_config: {}` / `basic_auth_users: {}`
//! (or a whole file that is `{}`). The outcome is `sonde_web_config_last_reload_successful`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use serde::{Deserialize, Deserializer};

use super::auth::Auth;
use crate::files::read_capped;
use crate::problem::{Problem, Spanned, yaml_problem_in};
use crate::sync::{lock, read, write};
use crate::tls;

/// Largest web config file read.
const MAX_WEB_CONFIG_BYTES: u64 = 1 << 20;

/// The response headers `http_server_config.headers` may set, with the values allowed
/// (none listed: any value): exporter-toolkit's list, so that a web config works the same
/// for every exporter. Framing headers (`Content-Length`, `Connection`, ...) are sonde's
/// own to write.
const CONFIGURABLE_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebConfigDoc {
    /// `None` when the key is absent; `Some(None)` when it has no value.
    #[serde(default, deserialize_with = "present")]
    tls_server_config: Option<Spanned<Option<TlsServerDoc>>>,
    #[serde(default, deserialize_with = "present")]
    basic_auth_users: Option<Spanned<Option<BTreeMap<String, String>>>>,
    #[serde(default)]
    http_server_config: Option<HttpServerDoc>,
}

/// Tells a key written without a value (`Some(None)`) from an absent one (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsServerDoc {
    #[serde(default)]
    cert_file: Option<Spanned<String>>,
    #[serde(default)]
    key_file: Option<Spanned<String>>,
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
    headers: BTreeMap<String, Spanned<String>>,
}

/// What a web config says about TLS or authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Said {
    /// Nothing: the key is absent (or the file is empty).
    Nothing,
    /// Off on purpose: `{}`.
    Off,
    /// Configured.
    On,
}

/// When a watched file was last seen: modification time and size.
type Stamp = Option<(SystemTime, u64)>;

/// The loaded web settings.
#[derive(Clone)]
pub struct WebSettings {
    /// TLS for every connection, when configured.
    pub tls: Option<Arc<ServerConfig>>,
    /// User name to bcrypt hash; empty means no authentication.
    pub users: HashMap<String, String>,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
    /// What the file said about TLS and about users.
    said_tls: Said,
    said_users: Said,
    /// The file had no content at all.
    empty: bool,
    /// Files whose stamps decide when to load again.
    watched: Vec<(PathBuf, Stamp)>,
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
    let watched_config = (path.to_path_buf(), stamp(path));
    let (doc, empty, all_off) = read_doc(path, &name)?;
    let base = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let mut watched = vec![watched_config];
    let (tls, said_tls) =
        tls_section(&doc.tls_server_config, all_off, &base, &mut watched).map_err(with_file)?;
    let (users, said_users) = users_section(doc.basic_auth_users, all_off).map_err(with_file)?;
    let headers = response_headers(
        doc.http_server_config
            .map(|h| h.headers)
            .unwrap_or_default(),
    )
    .map_err(with_file)?;
    Ok(WebSettings {
        tls,
        users: users.into_iter().collect(),
        headers,
        said_tls,
        said_users,
        empty,
        watched,
    })
}

/// The file parsed, whether it is empty (comments aside), and whether it is `{}` alone:
/// a file that is empty on purpose.
fn read_doc(path: &Path, name: &str) -> Result<(WebConfigDoc, bool, bool), Problem> {
    let bytes = read_capped(path, MAX_WEB_CONFIG_BYTES)
        .map_err(|e| Problem::plain(format!("{name}: cannot read the web config: {e}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Problem::plain(format!("{name}: the web config is not UTF-8")))?;
    let content: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<String>();
    let empty = content.trim().is_empty();
    let doc: WebConfigDoc = if empty {
        WebConfigDoc::default()
    } else {
        serde_saphyr::from_str(&text).map_err(|e| {
            let mut p = yaml_problem_in(&text, &e, None);
            p.file = Some(name.to_string());
            p
        })?
    };
    Ok((doc, empty, content.trim() == "{}"))
}

/// `tls_server_config`: absent, off on purpose (`{}`), or TLS built from its files
/// (which join `watched`).
fn tls_section(
    section: &Option<Spanned<Option<TlsServerDoc>>>,
    all_off: bool,
    base: &Path,
    watched: &mut Vec<(PathBuf, Stamp)>,
) -> Result<(Option<Arc<ServerConfig>>, Said), Problem> {
    let Some(section) = section else {
        return Ok((None, if all_off { Said::Off } else { Said::Nothing }));
    };
    match &section.value {
        None => Err(Problem::at(
            section.referenced,
            None,
            "tls_server_config has no value: give cert_file and key_file, or write `tls_server_config: {}` to serve plain HTTP",
        )),
        Some(t) if t.is_empty() => Ok((None, Said::Off)),
        Some(t) => Ok((Some(build_tls(t, section, base, watched)?), Said::On)),
    }
}

/// `basic_auth_users`: absent, off on purpose (`{}`), or users whose hashes are all
/// bcrypt hashes.
fn users_section(
    section: Option<Spanned<Option<BTreeMap<String, String>>>>,
    all_off: bool,
) -> Result<(BTreeMap<String, String>, Said), Problem> {
    let (users, said) = match section {
        None => (
            BTreeMap::new(),
            if all_off { Said::Off } else { Said::Nothing },
        ),
        Some(section) => match section.value {
            None => {
                return Err(Problem::at(
                    section.referenced,
                    None,
                    "basic_auth_users has no value: list user: bcrypt-hash pairs, or write `basic_auth_users: {}` for no authentication",
                ));
            }
            Some(users) if users.is_empty() => (users, Said::Off),
            Some(users) => (users, Said::On),
        },
    };
    for (user, hash) in &users {
        if !(hash.starts_with("$2a$")
            || hash.starts_with("$2b$")
            || hash.starts_with("$2y$")
            || hash.starts_with("$2x$"))
            || bcrypt_cost(hash).is_none()
        {
            return Err(Problem::plain(format!(
                "basic_auth_users: the hash of user {user:?} is not a bcrypt hash ($2y$10$...)"
            )));
        }
    }
    Ok((users, said))
}

/// `http_server_config.headers`, checked against exporter-toolkit's list; names are
/// matched without regard to case and written in their usual spelling.
fn response_headers(
    configured: BTreeMap<String, Spanned<String>>,
) -> Result<Vec<(String, String)>, Problem> {
    let allowed = CONFIGURABLE_HEADERS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ");
    let mut headers: Vec<(String, String)> = Vec::new();
    for (name, value) in configured {
        let at = |message: String| Problem::at(value.referenced, None, message);
        let Some((canonical, values)) = CONFIGURABLE_HEADERS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&name))
        else {
            return Err(at(format!(
                "http_server_config.headers: {name:?} cannot be configured (sonde writes framing and content headers itself); allowed: {allowed}"
            )));
        };
        if headers.iter().any(|(n, _)| n == canonical) {
            return Err(at(format!(
                "http_server_config.headers: {canonical} is given twice"
            )));
        }
        if !values.is_empty() && !values.contains(&value.value.as_str()) {
            return Err(at(format!(
                "http_server_config.headers: {canonical} must be one of {values:?}, not {:?}",
                value.value
            )));
        }
        if ureq::http::HeaderValue::try_from(value.value.as_str()).is_err() {
            return Err(at(format!(
                "http_server_config.headers: the value of {canonical} is not a valid header value"
            )));
        }
        headers.push((canonical.to_string(), value.value));
    }
    Ok(headers)
}

impl TlsServerDoc {
    /// `tls_server_config: {}`: no TLS, said on purpose.
    fn is_empty(&self) -> bool {
        self.cert_file.is_none()
            && self.key_file.is_none()
            && self.client_auth_type.is_none()
            && self.client_ca_file.is_none()
            && self.min_version.is_none()
            && self.max_version.is_none()
    }
}

/// Why a newly loaded file must not replace `old`, if it must not: it turns TLS or
/// authentication off without saying so.
fn refusal(old: &WebSettings, new: &WebSettings) -> Option<String> {
    let why = if new.empty {
        "the file is empty (truncated, or being written?)"
    } else {
        "the file no longer has the key"
    };
    if old.tls.is_some() && new.tls.is_none() && new.said_tls != Said::Off {
        return Some(format!(
            "it would turn TLS off: {why}; write `tls_server_config: {{}}` to serve plain HTTP on purpose"
        ));
    }
    if !old.users.is_empty() && new.users.is_empty() && new.said_users != Said::Off {
        return Some(format!(
            "it would turn authentication off: {why}; write `basic_auth_users: {{}}` to drop authentication on purpose"
        ));
    }
    None
}

fn bcrypt_cost(hash: &str) -> Option<u32> {
    let cost: u32 = hash.get(4..6)?.parse().ok()?;
    (hash.len() == 60 && (4..=31).contains(&cost)).then_some(cost)
}

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The server's TLS config from `tls_server_config`; the files it read are added to
/// `watched` so a change reloads it.
fn build_tls(
    t: &TlsServerDoc,
    section: &Spanned<Option<TlsServerDoc>>,
    base: &Path,
    watched: &mut Vec<(PathBuf, Stamp)>,
) -> Result<Arc<ServerConfig>, Problem> {
    let at = |s: &Spanned<String>, msg: String| Problem::at(s.referenced, None, msg);
    let required = |key: &Option<Spanned<String>>, name: &str| match key {
        Some(k) => Ok(k.clone()),
        None => Err(Problem::at(
            section.referenced,
            None,
            format!(
                "tls_server_config: missing field `{name}` (cert_file and key_file go together; `tls_server_config: {{}}` means no TLS)"
            ),
        )),
    };
    let cert_file = required(&t.cert_file, "cert_file")?;
    let key_file = required(&t.key_file, "key_file")?;
    let cert_path = base.join(&cert_file.value);
    let key_path = base.join(&key_file.value);
    let chain =
        tls::read_certificates(&cert_path).map_err(|e| at(&cert_file, format!("cert_file {e}")))?;
    let key =
        tls::read_private_key(&key_path).map_err(|e| at(&key_file, format!("key_file {e}")))?;
    watched.push((cert_path.clone(), stamp(&cert_path)));
    watched.push((key_path.clone(), stamp(&key_path)));
    let version = |v: &Option<Spanned<String>>, default: u8| -> Result<u8, Problem> {
        match v {
            None => Ok(default),
            Some(s) => tls::parse_version(&s.value).map_err(|e| at(s, e)),
        }
    };
    let versions = tls::versions(version(&t.min_version, 12)?, version(&t.max_version, 13)?)
        .map_err(|e| at(t.min_version.as_ref().unwrap_or(&cert_file), e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .map_err(|e| at(&cert_file, format!("TLS setup: {e}")))?;
    let builder = match client_verifier(t, &cert_file, base, provider, watched)? {
        None => builder.with_no_client_auth(),
        Some(verifier) => builder.with_client_cert_verifier(verifier),
    };
    let config = builder.with_single_cert(chain, key).map_err(|e| {
        at(
            &key_file,
            format!("the certificate and key do not work together: {e}"),
        )
    })?;
    Ok(Arc::new(config))
}

/// The client-certificate verifier `client_auth_type` and `client_ca_file` ask for.
fn client_verifier(
    t: &TlsServerDoc,
    cert_file: &Spanned<String>,
    base: &Path,
    provider: Arc<rustls::crypto::CryptoProvider>,
    watched: &mut Vec<(PathBuf, Stamp)>,
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
                t.client_auth_type.as_ref().unwrap_or(cert_file),
                format!(
                    "client_auth_type {other:?} is not supported; use NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
                ),
            ));
        }
    };
    let Some(ca) = &t.client_ca_file else {
        return Err(at(
            t.client_auth_type.as_ref().unwrap_or(cert_file),
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
    watched.push((ca_path.clone(), stamp(&ca_path)));
    let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    if optional {
        verifier = verifier.allow_unauthenticated();
    }
    let verifier = verifier
        .build()
        .map_err(|e| at(ca, format!("client_ca_file: {e}")))?;
    Ok(Some(verifier))
}

/// The current web settings, reloaded when their files change, and the authentication
/// state (verified credentials, failing sources).
pub struct Security {
    path: Option<PathBuf>,
    current: RwLock<Arc<WebSettings>>,
    last_check: Mutex<Instant>,
    /// The stamps of a change that was refused, so that it is not read (and logged)
    /// again every second until the files change once more.
    refused: Mutex<Option<Vec<Stamp>>>,
    /// Whether the last load of the web config was applied, for
    /// `sonde_web_config_last_reload_successful`.
    reload_ok: Arc<AtomicBool>,
    /// Verified credentials and failing sources.
    pub auth: Auth,
}

impl Security {
    /// Settings from `path`, or none (plain HTTP, no authentication).
    pub fn new(path: Option<PathBuf>, settings: Option<WebSettings>) -> Security {
        let settings = settings.unwrap_or(WebSettings {
            tls: None,
            users: HashMap::new(),
            headers: Vec::new(),
            said_tls: Said::Nothing,
            said_users: Said::Nothing,
            empty: true,
            watched: Vec::new(),
        });
        Security {
            path,
            current: RwLock::new(Arc::new(settings)),
            last_check: Mutex::new(Instant::now()),
            refused: Mutex::new(None),
            reload_ok: Arc::new(AtomicBool::new(true)),
            auth: Auth::default(),
        }
    }

    /// Whether a web config file is in use.
    pub fn has_file(&self) -> bool {
        self.path.is_some()
    }

    /// 1/0: whether the last load of the web config was applied (shared with the
    /// exposition).
    pub fn reload_status(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.reload_ok)
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
        let stamps: Vec<Stamp> = settings.watched.iter().map(|(p, _)| stamp(p)).collect();
        let changed = settings
            .watched
            .iter()
            .zip(&stamps)
            .any(|((_, old), new)| old != new);
        if !changed || lock(&self.refused).as_ref() == Some(&stamps) {
            return settings;
        }
        let outcome =
            load(path)
                .map_err(|p| p.to_string())
                .and_then(|new| match refusal(&settings, &new) {
                    Some(why) => Err(why),
                    None => Ok(new),
                });
        match outcome {
            Ok(new) => {
                log::info!(
                    "msg=\"web config reloaded\" file={:?} tls={} users={}",
                    path.display().to_string(),
                    new.tls.is_some(),
                    new.users.len()
                );
                let new = Arc::new(new);
                *write(&self.current) = Arc::clone(&new);
                *lock(&self.refused) = None;
                self.reload_ok.store(true, Ordering::Release);
                self.auth.forget_verified();
                new
            }
            Err(why) => {
                log::error!(
                    "msg=\"web config changed but is not applied; keeping the settings in force\" file={:?} problem={why:?}",
                    path.display().to_string()
                );
                *lock(&self.refused) = Some(stamps);
                self.reload_ok.store(false, Ordering::Release);
                settings
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn problem(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        load(&write(dir.path(), "web.yml", text))
            .err()
            .map(|p| p.to_string())
            .unwrap_or_default()
    }

    /// exporter-toolkit's five headers only: framing headers would break responses.
    #[test]
    fn only_exporter_toolkit_headers_may_be_configured() {
        for (headers, expected, line) in [
            (
                "Content-Length: \"0\"",
                "\"Content-Length\" cannot be configured",
                3,
            ),
            (
                "Connection: close",
                "\"Connection\" cannot be configured",
                3,
            ),
            ("Transfer-Encoding: chunked", "cannot be configured", 3),
            ("X-Frame-Options: allow", "must be one of", 3),
            (
                "X-Frame-Options: deny\n    x-frame-options: deny",
                "given twice",
                4,
            ),
        ] {
            let e = problem(&format!("http_server_config:\n  headers:\n    {headers}\n"));
            assert!(e.contains(expected), "{headers}: {e}");
            assert!(e.contains(&format!("web.yml:{line}:")), "{headers}: {e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let ok = load(&write(
            dir.path(),
            "web.yml",
            "http_server_config:\n  headers:\n    x-content-type-options: nosniff\n    Strict-Transport-Security: max-age=31536000\n",
        ))
        .unwrap();
        assert_eq!(
            ok.headers,
            [
                (
                    "Strict-Transport-Security".to_string(),
                    "max-age=31536000".to_string()
                ),
                ("X-Content-Type-Options".to_string(), "nosniff".to_string())
            ]
        );
    }

    #[test]
    fn keys_without_a_value_are_errors_and_braces_mean_off() {
        let e = problem("tls_server_config:\n");
        assert!(
            e.contains("web.yml:1:") && e.contains("tls_server_config has no value"),
            "{e}"
        );
        let e = problem("basic_auth_users:\n");
        assert!(e.contains("basic_auth_users has no value"), "{e}");
        let e = problem("tls_server_config:\n  cert_file: a.crt\n");
        assert!(e.contains("missing field `key_file`"), "{e}");
        let e = problem("basic_auth_users:\n  prom: plain\n");
        assert!(e.contains("not a bcrypt hash"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        for (text, tls, users) in [
            ("", Said::Nothing, Said::Nothing),
            ("# only a comment\n", Said::Nothing, Said::Nothing),
            ("{}\n", Said::Off, Said::Off),
            ("tls_server_config: {}\n", Said::Off, Said::Nothing),
            ("basic_auth_users: {}\n", Said::Nothing, Said::Off),
        ] {
            let s = load(&write(dir.path(), "web.yml", text)).unwrap();
            assert_eq!((s.said_tls, s.said_users), (tls, users), "{text:?}");
            assert!(s.tls.is_none() && s.users.is_empty());
        }
    }

    /// What a reload may and may not turn off.
    #[test]
    fn a_reload_turns_tls_or_auth_off_only_when_told_to() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let guarded = load(&write(
            dir.path(),
            "web.yml",
            &format!("basic_auth_users:\n  prom: \"{hash}\"\n"),
        ))
        .unwrap();
        let mut with_tls = guarded.clone();
        with_tls.tls = Some(Arc::new(
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(rustls::server::ResolvesServerCertUsingSni::new())),
        ));
        let next = |text: &str| load(&write(dir.path(), "web.yml", text)).unwrap();
        let empty = next("");
        let why = refusal(&guarded, &empty).unwrap();
        assert!(
            why.contains("authentication off") && why.contains("empty"),
            "{why}"
        );
        let why = refusal(&with_tls, &empty).unwrap();
        assert!(
            why.contains("TLS off") && why.contains("tls_server_config: {}"),
            "{why}"
        );
        let headers_only = next("http_server_config:\n  headers: {X-Frame-Options: deny}\n");
        let why = refusal(&guarded, &headers_only).unwrap();
        assert!(why.contains("no longer has the key"), "{why}");
        assert!(refusal(&guarded, &next("basic_auth_users: {}\n")).is_none());
        assert!(refusal(&guarded, &next("{}\n")).is_none());
        assert!(refusal(&with_tls, &next("{}\n")).is_none());
        let why = refusal(&with_tls, &next("basic_auth_users: {}\n")).unwrap();
        assert!(why.contains("TLS off"), "{why}");
        assert!(
            refusal(
                &with_tls,
                &next("tls_server_config: {}\nbasic_auth_users: {}\n")
            )
            .is_none()
        );
        // Nothing on before: nothing to refuse.
        assert!(refusal(&empty, &next("")).is_none());
    }
}
