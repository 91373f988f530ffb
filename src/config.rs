//! The validated configuration: YAML schema, defaults, validation, flags merged in.
//!
//! Loading is two passes over the same text. The first reads only each check's `name`
//! and `kind` (and where the check starts); the second deserializes every check with
//! the keys of its kind, unknown keys rejected, so errors point at the exact line and
//! column. Problems name the file, the location and the check.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};
use serde_saphyr::{Location, Spanned};

use crate::checks::{self, BuildContext, Check, KINDS, Spec};
use crate::cli::RawArgs;
use crate::results::CheckMeta;
use crate::units::{DurationValue, format_duration, parse_duration};

/// Largest config file sonde reads.
const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// Timeout of a check when neither it nor `global` sets one (capped at the interval).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:10060";

/// One thing wrong with the configuration, with where it is.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    /// The file it is in; `None` for the built-in default or flags.
    pub file: Option<String>,
    /// 1-based line, 0 when unknown.
    pub line: u64,
    /// 1-based column, 0 when unknown.
    pub column: u64,
    /// The check it concerns.
    pub check: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    /// A problem at a YAML location.
    pub fn at(at: Location, check: Option<&str>, message: impl Into<String>) -> Problem {
        Problem {
            file: None,
            line: at.line(),
            column: at.column(),
            check: check.map(str::to_string),
            message: message.into(),
        }
    }

    /// A problem without a location (flags, I/O).
    pub fn plain(message: impl Into<String>) -> Problem {
        Problem {
            file: None,
            line: 0,
            column: 0,
            check: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}:")?;
            if self.line > 0 {
                write!(f, "{}:{}:", self.line, self.column)?;
            }
            f.write_str(" ")?;
        }
        if let Some(check) = &self.check {
            write!(f, "check {check:?}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Log verbosity.
pub type LogLevel = log::LevelFilter;

/// Everything sonde needs to start, from flags and the config file.
#[derive(Debug)]
pub struct Settings {
    /// Where the config came from; `None` for the built-in default.
    pub config_file: Option<PathBuf>,
    /// Addresses to try binding, in order (`:PORT` tries `[::]` then `0.0.0.0`).
    pub listen: Vec<SocketAddr>,
    /// The listen address as the user wrote it (for messages).
    pub listen_text: String,
    /// Path that serves the metrics.
    pub telemetry_path: String,
    /// `--check-interval`
    pub check_interval: Option<Duration>,
    /// `--ignored-images`, split on commas (empty entries dropped)
    pub ignored_images: Vec<String>,
    /// `--log.level`
    pub log_level: LogLevel,
    /// `--config.check`
    pub config_check: bool,
    /// `--once`
    pub once: bool,
    /// `--web.config.file`
    pub web_config_file: Option<PathBuf>,
    /// `--push.gateway`, validated to be an http(s) URL.
    pub push_gateway: Option<String>,
}

/// Validates the flags (not the config file).
pub fn settings_from_args(raw: RawArgs) -> Result<Settings, String> {
    let listen_text = raw
        .listen_address
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let listen = parse_listen_address(&listen_text)?;
    let telemetry_path = raw.telemetry_path.unwrap_or_else(|| "/metrics".to_string());
    if !telemetry_path.starts_with('/') || telemetry_path.len() < 2 {
        return Err(format!(
            "--web.telemetry-path {telemetry_path:?} must start with / and name a path"
        ));
    }
    if crate::web::routes::RESERVED_PATHS.contains(&telemetry_path.as_str()) {
        return Err(format!(
            "--web.telemetry-path {telemetry_path:?} is already an endpoint of sonde"
        ));
    }
    let check_interval = match raw.check_interval {
        None => None,
        Some(text) => {
            let d = parse_duration(&text).map_err(|e| format!("--check-interval: {e}"))?;
            if d.is_zero() {
                return Err("--check-interval must be greater than 0".into());
            }
            Some(d)
        }
    };
    let ignored_images: Vec<String> = raw
        .ignored_images
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let log_level = match raw.log_level.as_deref().unwrap_or("info") {
        "error" => LogLevel::Error,
        "warn" => LogLevel::Warn,
        "info" => LogLevel::Info,
        "debug" => LogLevel::Debug,
        "trace" => LogLevel::Trace,
        other => {
            return Err(format!(
                "--log.level {other:?}: use one of error, warn, info, debug, trace"
            ));
        }
    };
    if let Some(url) = &raw.push_gateway {
        if !raw.once {
            return Err("--push.gateway works with --once only".into());
        }
        let valid = url
            .parse::<ureq::http::Uri>()
            .ok()
            .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
        if valid.is_none() {
            return Err(format!(
                "--push.gateway {url:?} is not an http:// or https:// URL"
            ));
        }
    }
    Ok(Settings {
        config_file: raw.config_file,
        listen,
        listen_text,
        telemetry_path,
        check_interval,
        ignored_images,
        log_level,
        config_check: raw.config_check,
        once: raw.once,
        web_config_file: raw.web_config_file,
        push_gateway: raw.push_gateway,
    })
}

/// Parses `HOST:PORT`, `[v6]:PORT` or Go-style `:PORT` into addresses to try.
pub fn parse_listen_address(text: &str) -> Result<Vec<SocketAddr>, String> {
    let bad = |why: &str| format!("--web.listen-address {text:?}: {why}");
    if let Some(port) = text.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| bad("the port must be 0-65535"))?;
        return Ok(vec![
            SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)),
            SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, port)),
        ]);
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(bad("expected HOST:PORT, [IPv6]:PORT or :PORT"));
    };
    let port: u16 = port.parse().map_err(|_| bad("the port must be 0-65535"))?;
    if host.is_empty() || host.contains(':') {
        return Err(bad("write IPv6 addresses in brackets, e.g. [::1]:10060"));
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| bad(&format!("cannot resolve {host:?}: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(bad(&format!("{host:?} has no address")));
    }
    Ok(addrs)
}

/// One check, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckConfig {
    /// Name, kind, interval and timeout.
    pub meta: CheckMeta,
    /// `legacy_metrics`
    pub legacy_metrics: bool,
    /// The kind's keys.
    pub spec: Spec,
}

/// A validated check together with the object that runs it.
#[derive(Clone)]
pub struct LoadedCheck {
    /// What the user configured (compared on reload to keep unchanged checks running).
    pub config: CheckConfig,
    /// The runnable check.
    pub check: Arc<dyn Check>,
}

impl fmt::Debug for LoadedCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedCheck")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The built-in config used without `--config.file`: one hwmon check of this host.
pub const DEFAULT_CONFIG: &str = "checks:\n  - name: hwmon\n    kind: hwmon\n";

/// Reads and validates the config file (or the built-in default).
pub fn load(settings: &Settings) -> Result<Vec<LoadedCheck>, Vec<Problem>> {
    let (text, file, base_dir) = match &settings.config_file {
        None => (DEFAULT_CONFIG.to_string(), None, PathBuf::from(".")),
        Some(path) => {
            let text = read_config_file(path).map_err(|p| vec![p])?;
            let base = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            (text, Some(path.display().to_string()), base)
        }
    };
    let flags = FlagDefaults {
        check_interval: settings.check_interval,
        ignored_images: &settings.ignored_images,
    };
    parse_with(&text, &flags, &base_dir).map_err(|mut problems| {
        for p in &mut problems {
            p.file.clone_from(&file);
        }
        problems
    })
}

fn read_config_file(path: &Path) -> Result<String, Problem> {
    let name = path.display();
    let file = std::fs::File::open(path)
        .map_err(|e| Problem::plain(format!("{name}: cannot open the config file: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Problem::plain(format!("{name}: cannot read the config file: {e}")))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(Problem::plain(format!(
            "{name}: the config file is larger than {} MiB",
            MAX_CONFIG_BYTES >> 20
        )));
    }
    String::from_utf8(bytes)
        .map_err(|e| Problem::plain(format!("{name}: the config file is not UTF-8: {e}")))
}

/// Flags that reach into checks: `--check-interval`, `--ignored-images`.
#[derive(Debug, Default)]
pub struct FlagDefaults<'a> {
    /// `--check-interval`
    pub check_interval: Option<Duration>,
    /// `--ignored-images`
    pub ignored_images: &'a [String],
}

/// Parses and validates config text with no flags set (the unit tests' shorthand).
#[cfg(test)]
pub fn parse(
    text: &str,
    check_interval: Option<Duration>,
    base_dir: &Path,
) -> Result<Vec<LoadedCheck>, Vec<Problem>> {
    let flags = FlagDefaults {
        check_interval,
        ..FlagDefaults::default()
    };
    parse_with(text, &flags, base_dir)
}

/// Parses and validates config text; `flags` are the command-line defaults that reach
/// into checks and `base_dir` anchors relative file paths.
pub fn parse_with(
    text: &str,
    flags: &FlagDefaults,
    base_dir: &Path,
) -> Result<Vec<LoadedCheck>, Vec<Problem>> {
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Err(vec![Problem {
            line: 1,
            column: 1,
            ..Problem::plain("the config is empty; it needs a `checks:` list")
        }]);
    }
    let outline = read_outline(text)?;
    let doc = read_document(text, &outline)?;
    validate(doc, &outline, flags, base_dir)
}

// ---------------------------------------------------------------------------------
// Pass 1: names, kinds and where each check starts.

#[derive(Debug, Deserialize)]
struct Outline {
    #[serde(default)]
    checks: Option<Vec<Spanned<OutlineCheck>>>,
}

#[derive(Debug, Deserialize)]
struct OutlineCheck {
    #[serde(default)]
    name: Option<Spanned<String>>,
    #[serde(default)]
    kind: Option<Spanned<String>>,
}

/// What pass 1 learned about one check.
#[derive(Debug)]
struct OutlineEntry {
    start: Location,
    name: Option<String>,
    kind: Option<&'static str>,
}

fn read_outline(text: &str) -> Result<Vec<OutlineEntry>, Vec<Problem>> {
    let outline: Outline =
        serde_saphyr::from_str(text).map_err(|e| vec![yaml_problem(&e, None)])?;
    let Some(checks) = outline.checks else {
        return Err(vec![Problem {
            line: 1,
            column: 1,
            ..Problem::plain("the config has no `checks:` list")
        }]);
    };
    let mut problems = Vec::new();
    let mut entries = Vec::new();
    for check in checks {
        let start = check.referenced;
        let name = check.value.name.as_ref().map(|n| n.value.clone());
        let kind = match &check.value.kind {
            None => {
                problems.push(Problem::at(
                    start,
                    name.as_deref(),
                    format!("missing key `kind` (one of {})", kind_list()),
                ));
                None
            }
            Some(k) => match checks::kind_info(&k.value) {
                Some(info) => Some(info.name),
                None => {
                    problems.push(Problem::at(
                        k.referenced,
                        name.as_deref(),
                        format!("unknown kind {:?} (one of {})", k.value, kind_list()),
                    ));
                    None
                }
            },
        };
        if name.is_none() {
            problems.push(Problem::at(start, None, "missing key `name`"));
        }
        entries.push(OutlineEntry { start, name, kind });
    }
    if problems.is_empty() {
        Ok(entries)
    } else {
        Err(problems)
    }
}

fn kind_list() -> String {
    KINDS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
}

// ---------------------------------------------------------------------------------
// Pass 2: every key, with the kind's schema.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default)]
    global: Global,
    checks: Vec<CheckDoc>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Global {
    #[serde(default)]
    interval: Option<Spanned<DurationValue>>,
    #[serde(default)]
    timeout: Option<Spanned<DurationValue>>,
}

/// Keys every check has.
#[derive(Debug, Default)]
struct Common {
    interval: Option<Spanned<DurationValue>>,
    timeout: Option<Spanned<DurationValue>>,
    legacy_metrics: bool,
}

#[derive(Debug)]
struct CheckDoc {
    common: Common,
    spec: Spec,
}

thread_local! {
    /// Kinds found by pass 1, read by [`CheckDoc`]'s deserializer in pass 2.
    static OUTLINE_KINDS: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) };
    /// Index of the next check pass 2 deserializes.
    static NEXT_CHECK: Cell<usize> = const { Cell::new(0) };
    /// Index of the check being deserialized, for naming it in errors.
    static CURRENT_CHECK: Cell<Option<usize>> = const { Cell::new(None) };
}

fn read_document(text: &str, outline: &[OutlineEntry]) -> Result<Document, Vec<Problem>> {
    // Pass 1 succeeded, so every entry has a kind.
    let kinds: Vec<&'static str> = outline.iter().map(|e| e.kind.unwrap_or("")).collect();
    OUTLINE_KINDS.with(|k| *k.borrow_mut() = kinds);
    NEXT_CHECK.with(|n| n.set(0));
    CURRENT_CHECK.with(|c| c.set(None));
    let result = serde_saphyr::from_str::<Document>(text);
    let current = CURRENT_CHECK.with(Cell::take);
    OUTLINE_KINDS.with(|k| k.borrow_mut().clear());
    result.map_err(|e| {
        let check = current
            .and_then(|i| outline.get(i))
            .and_then(|o| o.name.as_deref());
        vec![yaml_problem(&e, check)]
    })
}

impl<'de> Deserialize<'de> for CheckDoc {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let index = NEXT_CHECK.with(|n| {
            let i = n.get();
            n.set(i + 1);
            i
        });
        CURRENT_CHECK.with(|c| c.set(Some(index)));
        let kind = OUTLINE_KINDS.with(|k| k.borrow().get(index).copied());
        let kind =
            kind.ok_or_else(|| de::Error::custom("the list of checks changed while reading"))?;
        let doc = deserializer.deserialize_map(CheckVisitor { kind })?;
        CURRENT_CHECK.with(|c| c.set(None));
        Ok(doc)
    }
}

struct CheckVisitor {
    kind: &'static str,
}

impl<'de> Visitor<'de> for CheckVisitor {
    type Value = CheckDoc;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a check (a mapping with name, kind and the keys of the kind)")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<CheckDoc, A::Error> {
        let mut common = Common::default();
        let spec = Spec::deserialize_kind(
            self.kind,
            CommonKeys {
                inner: map,
                common: &mut common,
            },
        )?;
        Ok(CheckDoc { common, spec })
    }
}

/// A map that takes the keys every check has and hands the rest to the kind.
struct CommonKeys<'c, A> {
    inner: A,
    common: &'c mut Common,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for CommonKeys<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            let Some(key) = self.inner.next_key::<String>()? else {
                return Ok(None);
            };
            match key.as_str() {
                // Already read in pass 1.
                "name" | "kind" => {
                    self.inner.next_value::<de::IgnoredAny>()?;
                }
                "interval" => self.common.interval = Some(self.inner.next_value()?),
                "timeout" => self.common.timeout = Some(self.inner.next_value()?),
                "legacy_metrics" => self.common.legacy_metrics = self.inner.next_value()?,
                _ => return seed.deserialize(key.into_deserializer()).map(Some),
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.inner.next_value_seed(seed)
    }
}

impl<'de, A: MapAccess<'de>> Deserializer<'de> for CommonKeys<'_, A> {
    type Error = A::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, A::Error> {
        visitor.visit_map(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

/// Turns a YAML error into a [`Problem`] at its location (also used for the web config).
pub fn yaml_problem(e: &serde_saphyr::Error, check: Option<&str>) -> Problem {
    let message = serde_saphyr::MessageFormatter::format_message(
        &serde_saphyr::DefaultMessageFormatter,
        e.without_snippet(),
    );
    let message: String = message.chars().flat_map(char::escape_default).collect();
    // escape_default turns quotes into \" which reads badly; keep them plain.
    let message = message.replace("\\\"", "\"").replace("\\'", "'");
    let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
    Problem {
        file: None,
        line,
        column,
        check: check.map(str::to_string),
        message,
    }
}

// ---------------------------------------------------------------------------------
// Validation: names, intervals, timeouts, and each kind's own checks.

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn validate(
    doc: Document,
    outline: &[OutlineEntry],
    flags: &FlagDefaults,
    base_dir: &Path,
) -> Result<Vec<LoadedCheck>, Vec<Problem>> {
    let check_interval = flags.check_interval;
    let mut problems = Vec::new();
    for (what, value) in [
        ("interval", &doc.global.interval),
        ("timeout", &doc.global.timeout),
    ] {
        if let Some(v) = value
            && v.value.0.is_zero()
        {
            problems.push(Problem::at(
                v.referenced,
                None,
                format!("global.{what} must be greater than 0"),
            ));
        }
    }
    if let (Some(i), Some(t)) = (&doc.global.interval, &doc.global.timeout)
        && t.value.0 > i.value.0
    {
        problems.push(Problem::at(
            t.referenced,
            None,
            format!(
                "global.timeout {} exceeds global.interval {}",
                format_duration(t.value.0),
                format_duration(i.value.0)
            ),
        ));
    }
    if doc.checks.is_empty() {
        problems.push(Problem {
            line: 1,
            column: 1,
            ..Problem::plain("`checks:` is empty; configure at least one check")
        });
    }
    let mut seen = HashSet::new();
    let mut loaded = Vec::new();
    for (check, entry) in doc.checks.into_iter().zip(outline) {
        let name = entry.name.clone().unwrap_or_default();
        let kind = entry.kind.and_then(checks::kind_info);
        let Some(kind) = kind else { continue };
        let here = |msg: String| Problem::at(entry.start, Some(&name), msg);
        if !valid_name(&name) {
            problems.push(here(format!(
                "invalid name {name:?}: use letters, digits, _ and -, starting with a letter or _"
            )));
        }
        if !seen.insert(name.clone()) {
            problems.push(here(format!("duplicate check name {name:?}")));
        }
        let interval = check
            .common
            .interval
            .as_ref()
            .map(|s| s.value.0)
            .or(check_interval)
            .or(doc.global.interval.as_ref().map(|s| s.value.0))
            .unwrap_or(kind.default_interval);
        if let Some(i) = &check.common.interval
            && i.value.0.is_zero()
        {
            problems.push(Problem::at(
                i.referenced,
                Some(&name),
                "interval must be greater than 0",
            ));
            continue;
        }
        let timeout = match check
            .common
            .timeout
            .as_ref()
            .or(doc.global.timeout.as_ref())
        {
            Some(t) if t.value.0.is_zero() => {
                problems.push(Problem::at(
                    t.referenced,
                    Some(&name),
                    "timeout must be greater than 0",
                ));
                continue;
            }
            Some(t) if t.value.0 > interval => {
                problems.push(Problem::at(
                    t.referenced,
                    Some(&name),
                    format!(
                        "timeout {} exceeds the interval {}",
                        format_duration(t.value.0),
                        format_duration(interval)
                    ),
                ));
                continue;
            }
            Some(t) => t.value.0,
            None => DEFAULT_TIMEOUT.min(interval),
        };
        let meta = CheckMeta {
            name: name.clone(),
            kind: kind.name,
            interval,
            timeout,
        };
        let ctx = BuildContext {
            meta: &meta,
            legacy_metrics: check.common.legacy_metrics,
            base_dir,
            ignored_images: flags.ignored_images,
        };
        match check.spec.build(&ctx) {
            Ok(runner) => loaded.push(LoadedCheck {
                config: CheckConfig {
                    meta,
                    legacy_metrics: check.common.legacy_metrics,
                    spec: check.spec,
                },
                check: runner,
            }),
            Err(mut p) => problems.append(&mut p),
        }
    }
    problems.extend(checks::http::legacy_conflicts(&loaded));
    problems.extend(checks::dockerhub::legacy_conflicts(&loaded));
    problems.extend(checks::kubernetes::legacy_conflicts(&loaded));
    if problems.is_empty() {
        Ok(loaded)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        match parse(text, None, Path::new(".")) {
            Ok(_) => vec![],
            Err(p) => p
                .iter()
                .map(|p| format!("{}:{}: {p}", p.line, p.column))
                .collect(),
        }
    }

    #[test]
    fn the_built_in_default_is_valid() {
        let checks = parse(DEFAULT_CONFIG, None, Path::new(".")).unwrap();
        assert_eq!(checks.len(), 1);
        let meta = &checks[0].config.meta;
        assert_eq!((meta.name.as_str(), meta.kind), ("hwmon", "hwmon"));
        assert_eq!(meta.interval, Duration::from_secs(15));
        assert!(matches!(checks[0].config.spec, Spec::Hwmon(_)));
    }

    #[test]
    fn unknown_keys_point_at_the_key_and_name_the_check() {
        let p = problems(
            "checks:\n  - name: web\n    kind: http\n    urls: [http://a/]\n    urlz: 3\n",
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("5:5: check \"web\": unknown field `urlz`"),
            "{p:?}"
        );
        let p = problems("globl: {}\nchecks: []\n");
        assert!(p[0].starts_with("1:1: unknown field `globl`"), "{p:?}");
        let p = problems("global: {intervl: 5s}\nchecks: []\n");
        assert!(p[0].contains("unknown field `intervl`"), "{p:?}");
    }

    #[test]
    fn bad_values_are_located() {
        let p = problems(
            "checks:\n  - name: web\n    kind: http\n    interval: 5x\n    urls: [http://a/]\n",
        );
        assert!(
            p[0].starts_with("4:15: check \"web\": invalid duration \"5x\""),
            "{p:?}"
        );
        let p = problems("checks:\n  - name: web\n    kind: gopher\n");
        assert!(
            p[0].starts_with("3:11: check \"web\": unknown kind \"gopher\""),
            "{p:?}"
        );
        let p = problems("checks:\n  - name: web\n    urls: [http://a/]\n");
        assert!(
            p[0].starts_with("2:5: check \"web\": missing key `kind`"),
            "{p:?}"
        );
        let p = problems("checks:\n  - kind: http\n    urls: [http://a/]\n");
        assert!(p[0].starts_with("2:5: missing key `name`"), "{p:?}");
    }

    #[test]
    fn intervals_and_timeouts_follow_their_precedence() {
        let text = "global: {interval: 1m, timeout: 20s}\nchecks:\n  - {name: a, kind: http, urls: [http://a/]}\n  - {name: b, kind: http, urls: [http://a/], interval: 15s, timeout: 5s}\n";
        let checks = parse(text, None, Path::new(".")).unwrap();
        assert_eq!(checks[0].config.meta.interval, Duration::from_secs(60));
        assert_eq!(checks[0].config.meta.timeout, Duration::from_secs(20));
        assert_eq!(checks[1].config.meta.interval, Duration::from_secs(15));
        assert_eq!(checks[1].config.meta.timeout, Duration::from_secs(5));
        let checks = parse(text, Some(Duration::from_secs(45)), Path::new(".")).unwrap();
        assert_eq!(checks[0].config.meta.interval, Duration::from_secs(45));
        let text = "checks:\n  - {name: a, kind: http, urls: [http://a/], interval: 4s}\n";
        let checks = parse(text, None, Path::new(".")).unwrap();
        assert_eq!(checks[0].config.meta.timeout, Duration::from_secs(4));
        let text = "checks:\n  - {name: a, kind: http, urls: [http://a/]}\n";
        let checks = parse(text, None, Path::new(".")).unwrap();
        assert_eq!(checks[0].config.meta.interval, Duration::from_secs(30));
    }

    #[test]
    fn semantic_problems_are_all_reported() {
        let text = "checks:\n  - {name: a, kind: http, urls: [http://a/], interval: 5s, timeout: 10s}\n  - {name: a, kind: http, urls: [http://a/]}\n  - {name: 9x, kind: http, urls: [http://a/]}\n";
        let p = problems(text);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(
            p[0].contains("timeout 10s exceeds the interval 5s"),
            "{p:?}"
        );
        assert!(p[1].contains("duplicate check name \"a\""), "{p:?}");
        assert!(p[2].contains("invalid name \"9x\""), "{p:?}");
    }

    #[test]
    fn empty_and_non_yaml_inputs_are_errors_not_panics() {
        for text in [
            "",
            "# only a comment\n",
            "{{{",
            "checks: 5",
            "- a\n- b\n",
            "checks: []\n",
            "\u{0}",
            "checks:\n  - 5\n",
            "checks:\n  - name: [1]\n    kind: http\n",
        ] {
            let p = problems(text);
            assert!(!p.is_empty(), "{text:?} was accepted");
            assert!(p.iter().all(|p| !p.contains('\n')), "{p:?}");
        }
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen_address("127.0.0.1:80").unwrap(),
            vec!["127.0.0.1:80".parse().unwrap()]
        );
        assert_eq!(
            parse_listen_address("[::1]:80").unwrap(),
            vec!["[::1]:80".parse().unwrap()]
        );
        assert_eq!(parse_listen_address(":80").unwrap().len(), 2);
        assert!(parse_listen_address("localhost:80").is_ok());
        for bad in ["80", ":x", "::1:80", "host:99999", ""] {
            assert!(parse_listen_address(bad).is_err(), "{bad:?}");
        }
    }
}
