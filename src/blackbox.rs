//! `--blackbox.config.file`: a blackbox_exporter config read as it is, its `http`
//! modules translated into sonde's probe keys and built into modules for `/probe`.
//!
//! Each module is walked key by key ([`crate::yaml`] keeps where every key is written)
//! and written out again as the module keys sonde reads (`modules:` of sonde's own
//! config), which then go through the same validation; a problem found there is traced
//! back to the line and column of the blackbox file it came from. A module of another
//! prober (tcp, dns, icmp, grpc), a key sonde does not support (an inline secret,
//! `oauth2`, brotli compression, TLS 1.0) or any other problem in a module refuses that
//! whole module, never part of it: `--config.check` and the log name the place and
//! `/probe` answers 400 with the reason, while the other modules run. Only a file that
//! cannot be read as a blackbox config at all is an error.
//!
//! The translation follows blackbox_exporter 0.23's `config/config.go` and
//! `prober/http.go`, where its defaults differ from sonde's: `preferred_ip_protocol`
//! is `ip6` unless set; without `compression` no encoding is asked for (sonde asks for
//! gzip); `valid_status_codes: []` means 2xx; `body_size_limit: 0` means sonde's
//! default; a `Host` header is also the TLS server name.

use std::path::Path;
use std::time::Duration;

use serde_saphyr::Location;

use crate::checks::module::{self, Module, ModuleSet, ModuleSpec};
use crate::problem::{Problem, yaml_problem, yaml_problem_in};
use crate::units::format_duration;
use crate::yaml::{self, Entries, Located, Node};

/// Largest blackbox config read.
const MAX_FILE_BYTES: u64 = 4 << 20;

/// The probers blackbox_exporter has; only `http` is sonde's.
const PROBERS: &[&str] = &["http", "tcp", "icmp", "dns", "grpc"];

/// Keys of a module mapping.
const MODULE_KEYS: &[&str] = &["prober", "timeout", "http", "tcp", "icmp", "dns", "grpc"];

/// Keys sonde's module has under the same name and meaning; copied as they are.
const SAME_KEYS: &[&str] = &[
    "valid_http_versions",
    "ip_protocol_fallback",
    "fail_if_ssl",
    "fail_if_not_ssl",
    "method",
    "fail_if_body_matches_regexp",
    "fail_if_body_not_matches_regexp",
    "body",
    "body_file",
    "bearer_token_file",
    "proxy_url",
    "no_proxy",
    "proxy_from_environment",
    "follow_redirects",
];

/// Keys of blackbox's that sonde does not support, with what to do instead.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "bearer_token",
        "an inline secret; put it in a file and use bearer_token_file",
    ),
    ("oauth2", "OAuth 2.0 client credentials are not supported"),
    (
        "proxy_connect_header",
        "headers for the proxy are not supported; put proxy credentials in proxy_url",
    ),
    (
        "fail_if_body_json_matches_cel",
        "CEL expressions are not supported; use fail_if_body_matches_regexp",
    ),
    (
        "fail_if_body_json_not_matches_cel",
        "CEL expressions are not supported; use fail_if_body_not_matches_regexp",
    ),
];

/// What reading a blackbox config gave: the modules added, the problems of those refused
/// (one or more per refused module), and the modules of sonde's config they replaced,
/// each located in the file.
#[derive(Debug, Default)]
pub struct Report {
    /// Modules that probe.
    pub ready: usize,
    /// Why each refused module was refused.
    pub refused: Vec<Problem>,
    /// A module of sonde's config that a module of the same name replaced.
    pub replaced: Vec<Problem>,
}

/// Reads the blackbox config at `path` into `modules` (which holds sonde's own). A
/// module named like one of sonde's replaces it: the file was named on purpose, to run
/// its modules as blackbox_exporter does (sonde ships an `http_2xx` of its own, and so
/// does every blackbox.yml). `Err` when the file cannot be read as a blackbox config.
pub fn load(path: &Path, modules: &mut ModuleSet) -> Result<Report, Vec<Problem>> {
    let file = path.display().to_string();
    let located = |mut p: Problem| {
        p.file = Some(file.clone());
        p
    };
    let bytes = crate::files::read_capped(path, MAX_FILE_BYTES + 1).map_err(|e| {
        vec![Problem::plain(format!(
            "{file}: cannot read the blackbox config: {e}"
        ))]
    })?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(vec![Problem::plain(format!(
            "{file}: the blackbox config is larger than {} MiB",
            MAX_FILE_BYTES >> 20
        ))]);
    }
    let text = String::from_utf8(bytes)
        .map_err(|e| vec![Problem::plain(format!("{file}: not UTF-8: {e}"))])?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let entries =
        read_modules(&text).map_err(|p| p.into_iter().map(located).collect::<Vec<_>>())?;
    let mut report = Report::default();
    for (name, body) in entries {
        let origin = format!("{file}:{}:{}", name.at.line(), name.at.column());
        if let Some(other) = modules.origin(&name.value) {
            report.replaced.push(located(Problem::at(
                name.at,
                None,
                format!(
                    "module {:?} replaces the one defined at {other}",
                    name.value
                ),
            )));
        }
        match translate(&name, &body).and_then(|keys| build(&name, &keys, base, origin.clone())) {
            Ok(module) => {
                modules.add(module);
                report.ready += 1;
            }
            Err(problems) => {
                let problems: Vec<Problem> = problems.into_iter().map(located).collect();
                let why = problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                modules.refuse(&name.value, why, origin);
                report.refused.extend(problems);
            }
        }
    }
    Ok(report)
}

/// The `modules:` mapping of the file; anything else at the top is an error, as in
/// blackbox_exporter.
fn read_modules(text: &str) -> Result<Entries, Vec<Problem>> {
    let top: Located<Node> =
        serde_saphyr::from_str(text).map_err(|e| vec![yaml_problem_in(text, &e, None)])?;
    let Node::Map(entries) = top.value else {
        return Err(vec![Problem {
            line: 1,
            column: 1,
            ..Problem::plain(format!(
                "a blackbox config is a mapping with `modules:`, not {}",
                top.value.kind()
            ))
        }]);
    };
    let mut modules = None;
    let mut problems = Vec::new();
    for (key, value) in entries {
        match (key.value.as_str(), value.value) {
            ("modules", Node::Map(list)) => modules = Some(list),
            ("modules", Node::Null) => modules = Some(Vec::new()),
            ("modules", other) => problems.push(Problem::at(
                value.at,
                None,
                format!(
                    "`modules` must be a mapping of names to modules, not {}",
                    other.kind()
                ),
            )),
            (other, _) => problems.push(Problem::at(
                key.at,
                None,
                format!("unknown key `{other}` (a blackbox config has only `modules`)"),
            )),
        }
    }
    for (name, body) in modules.iter().flatten() {
        if !matches!(body.value, Node::Map(_)) {
            problems.push(Problem::at(
                body.at,
                None,
                format!(
                    "module {:?} must be a mapping, not {}",
                    name.value,
                    body.value.kind()
                ),
            ));
        }
    }
    match modules {
        Some(list) if problems.is_empty() => Ok(list),
        None if problems.is_empty() => Err(vec![Problem {
            line: 1,
            column: 1,
            ..Problem::plain("the blackbox config has no `modules:`")
        }]),
        _ => Err(problems),
    }
}

/// Collects the problems of one module while it is translated.
struct Translation<'a> {
    module: &'a str,
    problems: Vec<Problem>,
    /// sonde's keys, with the locations of the blackbox keys they come from.
    keys: Entries,
}

impl Translation<'_> {
    fn problem(&mut self, at: Location, message: impl std::fmt::Display) {
        self.problems.push(Problem::at(
            at,
            None,
            format!("module {:?}: {message}", self.module),
        ));
    }

    fn put(&mut self, key: &Located<String>, name: &str, value: Located<Node>) {
        self.keys.retain(|(k, _)| k.value != name);
        self.keys.push((
            Located {
                value: name.to_string(),
                at: key.at,
            },
            value,
        ));
    }

    fn has(&self, name: &str) -> bool {
        self.keys.iter().any(|(k, _)| k.value == name)
    }
}

/// The sonde keys of one blackbox module, or why it is refused.
fn translate(name: &Located<String>, body: &Located<Node>) -> Result<Entries, Vec<Problem>> {
    let mut t = Translation {
        module: &name.value,
        problems: Vec::new(),
        keys: Vec::new(),
    };
    if let Some(why) = module::invalid_name(&name.value) {
        t.problems.push(Problem::at(name.at, None, why));
    }
    let Node::Map(entries) = &body.value else {
        return Err(t.problems);
    };
    let mut prober = None;
    let mut http = None;
    for (key, value) in entries {
        match key.value.as_str() {
            "prober" => prober = Some((value.value.scalar_text().unwrap_or_default(), value.at)),
            "timeout" => timeout(&mut t, key, value),
            "http" => http = Some((key, value)),
            k if MODULE_KEYS.contains(&k) => {}
            other => t.problem(key.at, format!("unknown key `{other}` of a module")),
        }
    }
    match prober {
        Some((p, _)) if p == "http" => {}
        Some((p, at)) if PROBERS.contains(&p.as_str()) => t.problem(
            at,
            format!("prober {p} is not supported: sonde probes http only"),
        ),
        Some((p, at)) => t.problem(at, format!("unknown prober {p:?}")),
        None => t.problem(name.at, "has no `prober`"),
    }
    if t.problems.is_empty() {
        http_keys(&mut t, http, name.at);
    }
    if t.problems.is_empty() {
        Ok(t.keys)
    } else {
        Err(t.problems)
    }
}

/// `timeout` (a Go duration: `5s`, `1.5s`, `500ms`); 0 is "the scrape's".
fn timeout(t: &mut Translation, key: &Located<String>, value: &Located<Node>) {
    let text = value.value.scalar_text().unwrap_or_default();
    match parse_go_duration(&text) {
        Ok(d) if d.is_zero() => {}
        Ok(d) if d < Duration::from_millis(1) => {
            t.problem(value.at, format!("timeout {text:?} is shorter than 1ms"))
        }
        Ok(d) => t.put(
            key,
            "timeout",
            Located {
                value: Node::Str(format_duration(d)),
                at: value.at,
            },
        ),
        Err(e) => t.problem(value.at, e),
    }
}

/// The keys of `http:` and blackbox's defaults where they differ from sonde's.
fn http_keys(
    t: &mut Translation,
    http: Option<(&Located<String>, &Located<Node>)>,
    module_at: Location,
) {
    let empty = Vec::new();
    let (entries, http_at) = match http {
        Some((key, v)) => match &v.value {
            Node::Map(entries) => (entries, key.at),
            Node::Null => (&empty, key.at),
            other => {
                t.problem(
                    v.at,
                    format!("`http` must be a mapping, not {}", other.kind()),
                );
                return;
            }
        },
        None => (&empty, module_at),
    };
    let mut compression: Option<(String, Location)> = None;
    for (key, value) in entries {
        let k = key.value.as_str();
        match k {
            _ if SAME_KEYS.contains(&k) => t.put(key, k, value.clone()),
            "valid_status_codes" => {
                if !matches!(&value.value, Node::Seq(s) if s.is_empty()) {
                    t.put(key, k, value.clone());
                }
            }
            "preferred_ip_protocol" => match value.value.scalar_text().as_deref() {
                Some("ip4" | "ip6") => t.put(key, "ip_protocol", value.clone()),
                Some("") => {}
                _ => t.problem(value.at, "preferred_ip_protocol must be ip4 or ip6"),
            },
            "no_follow_redirects" => match value.value {
                Node::Bool(b) => t.put(
                    key,
                    "follow_redirects",
                    Located {
                        value: Node::Bool(!b),
                        at: value.at,
                    },
                ),
                _ => t.problem(value.at, "no_follow_redirects must be true or false"),
            },
            "skip_resolve_phase_with_proxy" | "enable_http2" => {
                // sonde never resolves a proxied target, and speaks HTTP/1.1 (ALPN
                // http/1.1), which every server that offers HTTP/2 also speaks.
            }
            "enable_http3" => {
                if matches!(value.value, Node::Bool(true)) {
                    t.problem(value.at, "enable_http3 is not supported (HTTP/1.1 only)");
                }
            }
            "headers" => headers(t, key, value),
            "http_headers" => http_headers(t, key, value),
            "fail_if_header_matches" | "fail_if_header_not_matches" => t.put(key, k, value.clone()),
            "compression" => {
                compression = Some((value.value.scalar_text().unwrap_or_default(), value.at))
            }
            "body_size_limit" => body_size_limit(t, key, value),
            "basic_auth" => basic_auth(t, key, value),
            "authorization" => authorization(t, key, value),
            "tls_config" => tls_config(t, key, value),
            _ => match UNSUPPORTED.iter().find(|(name, _)| *name == k) {
                Some((_, why)) => t.problem(key.at, format!("{k}: {why}")),
                None => t.problem(key.at, format!("unknown key `{k}` of an http module")),
            },
        }
    }
    defaults(t, compression, http_at);
}

/// blackbox_exporter's defaults that are not sonde's: IPv6 first, and no
/// `Accept-Encoding` unless `compression` asks for one.
fn defaults(t: &mut Translation, compression: Option<(String, Location)>, at: Location) {
    let key = Located {
        value: String::new(),
        at,
    };
    if !t.has("ip_protocol") {
        t.put(
            &key,
            "ip_protocol",
            Located {
                value: Node::Str("ip6".into()),
                at,
            },
        );
    }
    let (coding, coding_at) = compression.unwrap_or((String::new(), at));
    let wanted = match coding.to_ascii_lowercase().as_str() {
        "" | "identity" => "identity",
        "gzip" => "gzip",
        other => {
            t.problem(
                coding_at,
                format!("compression {other:?} is not supported (gzip or identity)"),
            );
            return;
        }
    };
    let mut headers = match t.keys.iter().position(|(k, _)| k.value == "headers") {
        Some(i) => match t.keys.remove(i).1.value {
            Node::Map(h) => h,
            _ => Vec::new(),
        },
        None => Vec::new(),
    };
    if !headers
        .iter()
        .any(|(k, _)| k.value.eq_ignore_ascii_case("accept-encoding"))
    {
        headers.push((
            Located {
                value: "Accept-Encoding".into(),
                at: coding_at,
            },
            Located {
                value: Node::Str(wanted.into()),
                at: coding_at,
            },
        ));
    }
    t.put(
        &key,
        "headers",
        Located {
            value: Node::Map(headers),
            at,
        },
    );
}

/// `headers` (name: value); a `Host` header is also the TLS server name, as in
/// blackbox_exporter.
fn headers(t: &mut Translation, key: &Located<String>, value: &Located<Node>) {
    let Node::Map(entries) = &value.value else {
        t.problem(value.at, "headers must be a mapping of names to values");
        return;
    };
    for (name, v) in entries {
        if name.value.eq_ignore_ascii_case("host")
            && let Some(host) = v.value.scalar_text()
        {
            let host = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
            server_name_default(t, v.at, host);
        }
    }
    merge_headers(t, key, entries.clone());
}

/// `http_headers` (prometheus/common): one value per header, inline or from a file.
fn http_headers(t: &mut Translation, key: &Located<String>, value: &Located<Node>) {
    let Node::Map(entries) = &value.value else {
        t.problem(value.at, "http_headers must be a mapping");
        return;
    };
    let mut out = Vec::new();
    for (name, spec) in entries {
        let Node::Map(parts) = &spec.value else {
            t.problem(
                spec.at,
                format!(
                    "http_headers.{}: expected values, secrets or files",
                    name.value
                ),
            );
            continue;
        };
        for (part, list) in parts {
            let items: Vec<&Located<Node>> = match &list.value {
                Node::Seq(items) => items.iter().collect(),
                _ => vec![list],
            };
            match (part.value.as_str(), items.as_slice()) {
                ("values", [one]) => out.push((name.clone(), (*one).clone())),
                ("files", [one]) => out.push((
                    name.clone(),
                    Located {
                        value: Node::Map(vec![(
                            Located {
                                value: "file".into(),
                                at: part.at,
                            },
                            (*one).clone(),
                        )]),
                        at: one.at,
                    },
                )),
                ("secrets", _) => t.problem(
                    part.at,
                    format!("http_headers.{}: an inline secret; use files", name.value),
                ),
                ("values" | "files", _) => t.problem(
                    list.at,
                    format!(
                        "http_headers.{}: sonde sends one value per header",
                        name.value
                    ),
                ),
                (other, _) => t.problem(part.at, format!("unknown key `{other}` of http_headers")),
            }
        }
    }
    merge_headers(t, key, out);
}

/// Adds headers to those already translated (`headers` and `http_headers` both).
fn merge_headers(t: &mut Translation, key: &Located<String>, more: Entries) {
    let mut all = match t.keys.iter().find(|(k, _)| k.value == "headers") {
        Some((
            _,
            Located {
                value: Node::Map(h),
                ..
            },
        )) => h.clone(),
        _ => Vec::new(),
    };
    for (name, value) in more {
        if all
            .iter()
            .any(|(k, _)| k.value.eq_ignore_ascii_case(&name.value))
        {
            t.problem(name.at, format!("header {:?} is set twice", name.value));
            continue;
        }
        all.push((name, value));
    }
    t.put(
        key,
        "headers",
        Located {
            value: Node::Map(all),
            at: key.at,
        },
    );
}

/// Sets `tls.server_name` unless `tls_config` sets one.
fn server_name_default(t: &mut Translation, at: Location, host: &str) {
    let mut tls = take_tls(t);
    if !tls.iter().any(|(k, _)| k.value == "server_name") {
        tls.push((
            Located {
                value: "server_name".into(),
                at,
            },
            Located {
                value: Node::Str(host.to_string()),
                at,
            },
        ));
    }
    put_tls(t, tls, at);
}

fn take_tls(t: &mut Translation) -> Entries {
    match t.keys.iter().position(|(k, _)| k.value == "tls") {
        Some(i) => match t.keys.remove(i).1.value {
            Node::Map(entries) => entries,
            _ => Vec::new(),
        },
        None => Vec::new(),
    }
}

fn put_tls(t: &mut Translation, entries: Entries, at: Location) {
    t.keys.push((
        Located {
            value: "tls".into(),
            at,
        },
        Located {
            value: Node::Map(entries),
            at,
        },
    ));
}

/// `tls_config`: the file keys, names and versions sonde has; inline PEM is refused.
fn tls_config(t: &mut Translation, key: &Located<String>, value: &Located<Node>) {
    let Node::Map(entries) = &value.value else {
        t.problem(value.at, "tls_config must be a mapping");
        return;
    };
    let mut tls = take_tls(t);
    for (k, v) in entries {
        match k.value.as_str() {
            "ca_file" | "cert_file" | "key_file" | "insecure_skip_verify" => {
                tls.push((k.clone(), v.clone()))
            }
            "server_name" => {
                tls.retain(|(e, _)| e.value != "server_name");
                tls.push((k.clone(), v.clone()));
            }
            "min_version" | "max_version" => match v.value.scalar_text().as_deref() {
                Some("TLS12" | "TLS13") => tls.push((k.clone(), v.clone())),
                Some(other) => t.problem(
                    v.at,
                    format!(
                        "tls_config.{}: {other} is not supported (TLS12 or TLS13)",
                        k.value
                    ),
                ),
                None => t.problem(v.at, format!("tls_config.{} must be a version", k.value)),
            },
            "ca" | "cert" | "key" => t.problem(
                k.at,
                format!(
                    "tls_config.{0}: inline PEM is not supported; use {0}_file",
                    k.value
                ),
            ),
            other => t.problem(k.at, format!("unknown key `{other}` of tls_config")),
        }
    }
    put_tls(t, tls, key.at);
}

/// `basic_auth`: the password must come from a file.
fn basic_auth(t: &mut Translation, key: &Located<String>, value: &Located<Node>) {
    let Node::Map(entries) = &value.value else {
        t.problem(value.at, "basic_auth must be a mapping");
        return;
    };
    let mut out = Vec::new();
    for (k, v) in entries {
        match k.value.as_str() {
            "username" | "password_file" => out.push((k.clone(), v.clone())),
            "password" => t.problem(
                k.at,
                "basic_auth.password: an inline secret; put it in a file and use password_file",
            ),
            "username_file" => t.problem(
                k.at,
                "basic_auth.username_file is not supported; write the username",
            ),
            other => t.problem(k.at, format!("unknown key `{other}` of basic_auth")),
        }
    }
    t.put(
        key,
        "basic_auth",
        Located {
            value: Node::Map(out),
            at: value.at,
        },
    );
}

/// `authorization`: a Bearer credential from a file.
fn authorization(t: &mut Translation, key: &Located<String>, value: &Located<Node>) {
    let Node::Map(entries) = &value.value else {
        t.problem(value.at, "authorization must be a mapping");
        return;
    };
    for (k, v) in entries {
        match (k.value.as_str(), v.value.scalar_text().as_deref()) {
            ("type", Some(ty)) if ty.eq_ignore_ascii_case("bearer") => {}
            ("type", _) => t.problem(v.at, "authorization.type: only Bearer is supported"),
            ("credentials_file", _) => t.put(key, "bearer_token_file", v.clone()),
            ("credentials", _) => t.problem(
                k.at,
                "authorization.credentials: an inline secret; use credentials_file",
            ),
            (other, _) => t.problem(k.at, format!("unknown key `{other}` of authorization")),
        }
    }
}

/// `body_size_limit` in blackbox's units (`10MB` is 10 MiB); 0 leaves sonde's default.
fn body_size_limit(t: &mut Translation, key: &Located<String>, value: &Located<Node>) {
    let text = value.value.scalar_text().unwrap_or_default();
    match parse_base2_bytes(&text) {
        Ok(0) => {}
        Ok(n) => t.put(
            key,
            "body_size_limit",
            Located {
                value: Node::Int(i64::try_from(n).unwrap_or(i64::MAX)),
                at: value.at,
            },
        ),
        Err(e) => t.problem(value.at, e),
    }
}

/// Writes the keys as sonde module text, reads them as a module and builds it; every
/// problem is traced back to the blackbox file.
fn build(
    name: &Located<String>,
    keys: &[(Located<String>, Located<Node>)],
    base: &Path,
    origin: String,
) -> Result<Module, Vec<Problem>> {
    let written = yaml::write_mapping(keys, &|_, _| None);
    let back = |line: u64, column: u64| {
        written
            .origin(line, column)
            .map_or((name.at.line(), name.at.column()), |at| {
                (at.line(), at.column())
            })
    };
    let spec: ModuleSpec = serde_saphyr::from_str(&written.text).map_err(|e| {
        let p = yaml_problem(&e, None);
        let (line, column) = back(p.line, p.column);
        vec![Problem {
            line,
            column,
            message: format!("module {:?}: {}", name.value, p.message),
            ..p
        }]
    })?;
    let shown = yaml::write_mapping(keys, &module::redact).text;
    Module::build(&name.value, &spec, base, Location::UNKNOWN, origin, shown).map_err(|problems| {
        problems
            .into_iter()
            .map(|p| {
                let (line, column) = back(p.line, p.column);
                Problem { line, column, ..p }
            })
            .collect()
    })
}

/// A Go duration (`300ms`, `1.5s`, `1h2m`): numbers with units ns, us, µs, ms, s, m, h.
fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {text:?} (e.g. 5s, 1.5s, 500ms, 1m30s)");
    let mut rest = text.trim();
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// A size as blackbox_exporter reads it (alecthomas/units' base-2 bytes): a number and
/// `B`, `KB`/`KiB`, `MB`/`MiB`, `GB`/`GiB`, `TB`/`TiB` (all powers of 1024), or bytes.
fn parse_base2_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let bad = || format!("invalid body_size_limit {text:?} (e.g. 10MB, 512KiB, 1048576)");
    let number: u64 = text[..digits].parse().map_err(|_| bad())?;
    let shift = match &text[digits..] {
        "" | "B" => 0,
        "KB" | "KiB" => 10,
        "MB" | "MiB" => 20,
        "GB" | "GiB" => 30,
        "TB" | "TiB" => 40,
        _ => return Err(bad()),
    };
    number.checked_mul(1 << shift).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems_of(text: &str) -> (ModuleSet, Result<Report, Vec<Problem>>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blackbox.yml");
        std::fs::write(&path, text).unwrap();
        let mut set = ModuleSet::new();
        let report = load(&path, &mut set);
        (set, report)
    }

    fn lines(problems: &[Problem]) -> Vec<String> {
        problems
            .iter()
            .map(|p| format!("{}:{}: {}", p.line, p.column, p.message))
            .collect()
    }

    #[test]
    fn go_durations_and_base2_sizes() {
        assert_eq!(parse_go_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "5", "5x", "s", "1..5s", "-1s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_base2_bytes("10MB"), Ok(10 << 20));
        assert_eq!(parse_base2_bytes("512KiB"), Ok(512 << 10));
        assert_eq!(parse_base2_bytes("100"), Ok(100));
        assert!(parse_base2_bytes("1XB").is_err());
        assert!(parse_base2_bytes("MB").is_err());
    }

    #[test]
    fn other_probers_and_unsupported_keys_refuse_their_module_only() {
        let (set, report) = problems_of(
            "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n  tcp_connect:\n    prober: tcp\n  secret:\n    prober: http\n    http:\n      basic_auth: {username: u, password: p}\n      oauth2: {client_id: x}\n",
        );
        let report = report.unwrap();
        assert_eq!(report.ready, 1);
        assert_eq!(
            lines(&report.refused),
            [
                "6:13: module \"tcp_connect\": prober tcp is not supported: sonde probes http only",
                "10:33: module \"secret\": basic_auth.password: an inline secret; put it in a file and use password_file",
                "11:7: module \"secret\": oauth2: OAuth 2.0 client credentials are not supported",
            ]
        );
        assert!(matches!(set.find("http_2xx"), module::Found::Ready(_)));
        match set.find("tcp_connect") {
            module::Found::Refused(why) => assert!(why.contains("blackbox.yml:6:13"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(set.find("nope"), module::Found::Unknown));
    }

    #[test]
    fn a_module_named_like_one_of_sondes_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blackbox.yml");
        std::fs::write(&path, "modules:\n  http_2xx:\n    prober: http\n").unwrap();
        let mut set = ModuleSet::new();
        set.refuse("http_2xx", "sonde's own".into(), "sonde.yml:2:3".into());
        let report = load(&path, &mut set).unwrap();
        assert_eq!(
            lines(&report.replaced),
            ["2:3: module \"http_2xx\" replaces the one defined at sonde.yml:2:3"]
        );
        assert!(matches!(set.find("http_2xx"), module::Found::Ready(_)));
        assert_eq!(set.counts(), (1, 0));
    }

    #[test]
    fn problems_found_by_sonde_are_traced_back_to_the_blackbox_file() {
        let (_, report) = problems_of(
            "modules:\n  re:\n    prober: http\n    http:\n      valid_status_codes: [200]\n      fail_if_body_matches_regexp: [\"(unclosed\"]\n      method: FETCH\n",
        );
        let refused = lines(&report.unwrap().refused);
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert!(
            refused[0].starts_with("7:15: module \"re\": method \"FETCH\""),
            "{refused:?}"
        );
        assert!(
            refused[1].starts_with("6:37: module \"re\": invalid regular expression"),
            "{refused:?}"
        );
    }

    #[test]
    fn defaults_are_blackboxs() {
        let mut t = Translation {
            module: "m",
            problems: Vec::new(),
            keys: Vec::new(),
        };
        http_keys(&mut t, None, Location::UNKNOWN);
        let text = yaml::write_mapping(&t.keys, &|_, _| None).text;
        assert_eq!(
            text,
            "ip_protocol: \"ip6\"\nheaders:\n  Accept-Encoding: \"identity\"\n"
        );
    }

    #[test]
    fn files_that_are_no_blackbox_config_are_errors() {
        for (text, want) in [
            ("- a\n", "1:1: a blackbox config is a mapping"),
            ("modulez: {}\n", "1:1: unknown key `modulez`"),
            ("modules: [a]\n", "1:10: `modules` must be a mapping"),
            ("modules:\n  a: 5\n", "2:6: module \"a\" must be a mapping"),
            ("{{{", "1:"),
            ("other: 1\n", "1:1: unknown key `other`"),
        ] {
            let (_, report) = problems_of(text);
            let e = lines(&report.unwrap_err());
            assert!(e[0].starts_with(want), "{text:?}: {e:?}");
        }
    }
}
