//! The config file: read it, check every key, build the checks.
//!
//! Loading is two passes over the same text. The outline pass reads only each check's
//! `name` and `kind` (and where the check starts); the typed pass then deserializes
//! every check with the keys of its kind through a [`DeserializeSeed`] that carries the
//! kinds found by the outline, unknown keys rejected, so errors point at the exact line
//! and column. Problems name the file, the location and the check. This file names no
//! kind: the table in `checks/mod.rs` does.
//!
//! `modules:` holds probe modules for `/probe` (a name, then an http check's keys
//! without `urls`, plus `timeout`); a config may have modules and no checks.

use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Location;

use crate::problem::Spanned;

use crate::checks::module::{self, Module, ModuleSet, ModuleSpec};
use crate::checks::{self, BuildContext, CheckConfig, KINDS, LoadedCheck, Spec};
use crate::files::read_capped;
use crate::keys::{SharedKeys, Split};
use crate::problem::{Problem, yaml_problem_in};
use crate::shard::Shard;
use crate::store::CheckMeta;
use crate::units::{DurationValue, format_duration};
use crate::yaml::{self, Located, Node};

/// Largest config file sonde reads.
const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// Timeout of a check when neither it nor `global` sets one (capped at the interval).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The built-in config used without `--config.file`: one hwmon check of this host.
pub const DEFAULT_CONFIG: &str = "checks:\n  - name: hwmon\n    kind: hwmon\n";

/// Flags that reach into checks: `--check-interval`, `--ignored-images`.
#[derive(Debug)]
pub struct FlagDefaults<'a> {
    /// `--check-interval`
    pub check_interval: Option<Duration>,
    /// `--ignored-images`
    pub ignored_images: &'a [String],
    /// `--shard`: the part of the targets this replica checks.
    pub shard: Shard,
}

impl Default for FlagDefaults<'_> {
    fn default() -> Self {
        FlagDefaults {
            check_interval: None,
            ignored_images: &[],
            shard: Shard::WHOLE,
        }
    }
}

/// What a config file holds, validated.
#[derive(Debug)]
pub struct Loaded {
    /// The checks, in config order.
    pub checks: Vec<LoadedCheck>,
    /// The probe modules of `modules:`.
    pub modules: ModuleSet,
}

/// Reads and validates the config file, or the built-in default when `file` is `None`.
pub fn load(file: Option<&Path>, flags: &FlagDefaults) -> Result<Loaded, Vec<Problem>> {
    let (text, name, base_dir) = match file {
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
    parse_with(&text, flags, &base_dir, name.as_deref()).map_err(|mut problems| {
        for p in &mut problems {
            p.file.clone_from(&name);
        }
        problems
    })
}

fn read_config_file(path: &Path) -> Result<String, Problem> {
    let name = path.display();
    let bytes = read_capped(path, MAX_CONFIG_BYTES).map_err(|e| {
        let verb = match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => "open",
            _ => "read",
        };
        Problem::plain(format!("{name}: cannot {verb} the config file: {e}"))
    })?;
    String::from_utf8(bytes)
        .map_err(|e| Problem::plain(format!("{name}: the config file is not UTF-8: {e}")))
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
    parse_with(text, &flags, base_dir, None).map(|loaded| loaded.checks)
}

/// Parses and validates config text; `flags` are the command-line defaults that reach
/// into checks, `base_dir` anchors relative file paths and `file` names the file in
/// where each module is defined.
pub fn parse_with(
    text: &str,
    flags: &FlagDefaults,
    base_dir: &Path,
    file: Option<&str>,
) -> Result<Loaded, Vec<Problem>> {
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
    // Every problem is collected before answering: an operator fixes a config in one
    // go, not one error per run.
    let (outline, mut problems) = read_outline(text)?;
    let (doc, unread) = read_document(text, &outline);
    problems.extend(unread);
    let Some(mut doc) = doc else {
        return Err(problems);
    };
    let specs = std::mem::take(&mut doc.modules);
    let checks = validate(doc, &outline, flags, base_dir);
    let modules = build_modules(text, specs, base_dir, file);
    problems.extend(checks.as_ref().err().into_iter().flatten().cloned());
    problems.extend(modules.as_ref().err().into_iter().flatten().cloned());
    match (checks, modules) {
        (Ok(checks), Ok(modules)) if problems.is_empty() => Ok(Loaded { checks, modules }),
        _ => {
            // In the order of the file (stable: a line's problems keep their order).
            problems.sort_by_key(|p| (p.line, p.column));
            Err(problems)
        }
    }
}

// ---------------------------------------------------------------------------------
// Pass 1: names, kinds and where each check starts.

#[derive(Debug, Deserialize)]
struct Outline {
    #[serde(default)]
    checks: Option<Vec<Spanned<OutlineCheck>>>,
    #[serde(default)]
    modules: Option<de::IgnoredAny>,
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

/// The checks' names and kinds; `Err` when the text cannot be read at all. A check
/// without a known kind or a name is a problem, and the other checks are read on.
fn read_outline(text: &str) -> Result<(Vec<OutlineEntry>, Vec<Problem>), Vec<Problem>> {
    let outline: Outline =
        serde_saphyr::from_str(text).map_err(|e| vec![yaml_problem_in(text, &e, None)])?;
    let checks = match (outline.checks, outline.modules) {
        (Some(checks), _) => checks,
        (None, Some(_)) => Vec::new(),
        (None, None) => {
            return Err(vec![Problem {
                line: 1,
                column: 1,
                ..Problem::plain("the config has no `checks:` list (nor `modules:`)")
            }]);
        }
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
    Ok((entries, problems))
}

fn kind_list() -> String {
    KINDS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
}

// ---------------------------------------------------------------------------------
// Pass 2: every key, with the kind's schema.

#[derive(Debug)]
struct Document {
    global: Global,
    /// One per check of the outline; `None` for a check that could not be read (its
    /// problem is reported).
    checks: Vec<Option<CheckDoc>>,
    modules: Vec<(Spanned<String>, Spanned<ModuleSpec>)>,
    /// `modules:` has at least one module (then `checks:` may be empty).
    has_modules: bool,
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

/// What the typed pass carries down the document: the kinds the outline found, and
/// which check is being read (for naming it in an error).
#[derive(Clone, Copy)]
struct Outlined<'a> {
    kinds: &'a [&'static str],
    current: &'a Cell<Part>,
    skip: &'a Skip,
}

/// The part of the config the typed pass is reading.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Part {
    Top,
    Global,
    Modules,
    Check(usize),
}

/// What the typed pass passes over: checks already found at fault (or of no known
/// kind), `global:` or `modules:` once found at fault, unknown top-level keys once
/// one was.
#[derive(Default)]
struct Skip {
    checks: HashSet<usize>,
    global: bool,
    modules: bool,
    /// Top-level keys sonde does not know, once one was reported.
    unknown_keys: bool,
}

/// Most problems the typed pass collects (each costs one more reading of the text).
const MAX_READ_PROBLEMS: usize = 50;

/// The typed pass, repeated until it reads the whole text: each time it fails, the
/// check at fault (or `global:`, or `modules:`) is passed over the next time, so one
/// check's unknown key does not hide another's problems. `None` when the text cannot
/// be read even so.
fn read_document(text: &str, outline: &[OutlineEntry]) -> (Option<Document>, Vec<Problem>) {
    let kinds: Vec<&'static str> = outline.iter().map(|e| e.kind.unwrap_or("")).collect();
    let mut skip = Skip {
        checks: (0..outline.len())
            .filter(|&i| outline[i].kind.is_none())
            .collect(),
        ..Skip::default()
    };
    let mut problems = Vec::new();
    loop {
        let current = Cell::new(Part::Top);
        let seed = Outlined {
            kinds: &kinds,
            current: &current,
            skip: &skip,
        };
        let e = match serde_saphyr::with_deserializer_from_str(text, |de| seed.deserialize(de)) {
            Ok(doc) => return (Some(doc), problems),
            Err(e) => e,
        };
        let at = current.get();
        let check = match at {
            Part::Check(i) => outline.get(i).and_then(|o| o.name.as_deref()),
            _ => None,
        };
        problems.push(yaml_problem_in(text, &e, check));
        let passed_over = match at {
            Part::Check(i) => skip.checks.insert(i),
            Part::Global => !std::mem::replace(&mut skip.global, true),
            Part::Modules => !std::mem::replace(&mut skip.modules, true),
            Part::Top => !std::mem::replace(&mut skip.unknown_keys, true),
        };
        if !passed_over || problems.len() >= MAX_READ_PROBLEMS {
            return (None, problems);
        }
    }
}

impl<'de> DeserializeSeed<'de> for Outlined<'_> {
    type Value = Document;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Document, D::Error> {
        deserializer.deserialize_map(self)
    }
}

/// The top level: `global` and `checks`.
impl<'de> Visitor<'de> for Outlined<'_> {
    type Value = Document;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a config with `global` and `checks`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Document, A::Error> {
        const FIELDS: &[&str] = &["global", "checks", "modules"];
        let mut global = None;
        let mut checks = None;
        let mut modules = None;
        let mut has_modules = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "global" if self.skip.global => {
                    map.next_value::<de::IgnoredAny>()?;
                }
                "modules" if self.skip.modules => {
                    map.next_value::<de::IgnoredAny>()?;
                    // Its problem is reported: no second one for a missing list.
                    modules = Some(Vec::new());
                    has_modules = true;
                }
                "global" => {
                    self.current.set(Part::Global);
                    global = Some(map.next_value::<Option<Global>>()?.unwrap_or_default());
                }
                "checks" => checks = Some(map.next_value_seed(CheckList(self))?),
                "modules" => {
                    self.current.set(Part::Modules);
                    let read = map.next_value::<Modules>()?.0;
                    has_modules = !read.is_empty();
                    modules = Some(read);
                }
                _ if self.skip.unknown_keys => {
                    map.next_value::<de::IgnoredAny>()?;
                }
                other => return Err(de::Error::unknown_field(other, FIELDS)),
            }
            self.current.set(Part::Top);
        }
        Ok(Document {
            global: global.unwrap_or_default(),
            checks: match (checks, &modules) {
                (Some(checks), _) => checks,
                (None, Some(_)) => Vec::new(),
                (None, None) => return Err(de::Error::missing_field("checks")),
            },
            has_modules,
            modules: modules.unwrap_or_default(),
        })
    }
}

/// `modules:`: names, each with a module's keys, in the order written.
struct Modules(Vec<(Spanned<String>, Spanned<ModuleSpec>)>);

impl<'de> Deserialize<'de> for Modules {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Modules, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Modules;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of module names to a probe's keys")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Modules, E> {
                Ok(Modules(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Modules, A::Error> {
                let mut out: Vec<(Spanned<String>, Spanned<ModuleSpec>)> = Vec::new();
                while let Some(name) = map.next_key::<Spanned<String>>()? {
                    if out.iter().any(|(n, _)| n.value == name.value) {
                        return Err(de::Error::custom(format!(
                            "module {:?} is defined twice",
                            name.value
                        )));
                    }
                    out.push((name, map.next_value()?));
                }
                Ok(Modules(out))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// The `checks:` list, each element read with the kind the outline found for it.
struct CheckList<'a>(Outlined<'a>);

impl<'de> DeserializeSeed<'de> for CheckList<'_> {
    type Value = Vec<Option<CheckDoc>>;

    fn deserialize<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Vec<Option<CheckDoc>>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for CheckList<'_> {
    type Value = Vec<Option<CheckDoc>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of checks")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Option<CheckDoc>>, A::Error> {
        let mut out = Vec::new();
        loop {
            let index = out.len();
            let Some(&kind) = self.0.kinds.get(index) else {
                // The outline read the same text, so there is no further element.
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom(
                        "the list of checks changed while reading",
                    ));
                }
                break;
            };
            if self.0.skip.checks.contains(&index) {
                match seq.next_element::<de::IgnoredAny>()? {
                    Some(_) => out.push(None),
                    None => break,
                }
                continue;
            }
            self.0.current.set(Part::Check(index));
            match seq.next_element_seed(OneCheck { kind })? {
                Some(doc) => out.push(Some(doc)),
                None => break,
            }
            self.0.current.set(Part::Top);
        }
        Ok(out)
    }
}

/// One check, read with the keys of its kind.
struct OneCheck {
    kind: &'static str,
}

impl<'de> DeserializeSeed<'de> for OneCheck {
    type Value = CheckDoc;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<CheckDoc, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for OneCheck {
    type Value = CheckDoc;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a check (a mapping with name, kind and the keys of the kind)")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<CheckDoc, A::Error> {
        let mut common = Common::default();
        let spec = Spec::deserialize_kind(self.kind, Split::new(map, &mut common))?;
        Ok(CheckDoc { common, spec })
    }
}

impl SharedKeys for Common {
    fn take<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        match key {
            // Already read by the outline pass.
            "name" | "kind" => {
                map.next_value::<de::IgnoredAny>()?;
            }
            "interval" => self.interval = Some(map.next_value()?),
            "timeout" => self.timeout = Some(map.next_value()?),
            "legacy_metrics" => self.legacy_metrics = map.next_value()?,
            _ => return Ok(false),
        }
        Ok(true)
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
    let mut problems = validate_global(&doc.global);
    if outline.is_empty() && !doc.has_modules {
        problems.push(Problem {
            line: 1,
            column: 1,
            ..Problem::plain("`checks:` is empty; configure at least one check or module")
        });
    }
    let mut seen = HashSet::new();
    let mut loaded = Vec::new();
    for (check, entry) in doc.checks.into_iter().zip(outline) {
        // A check that could not be read, or has no kind, has its problem already.
        let (Some(check), Some(kind)) = (check, entry.kind.and_then(checks::kind_info)) else {
            continue;
        };
        let name = entry.name.clone().unwrap_or_default();
        let here = |msg: String| Problem::at(entry.start, Some(&name), msg);
        // A missing name has its problem already.
        if entry.name.is_some() && !valid_name(&name) {
            problems.push(here(format!(
                "invalid name {name:?}: use letters, digits, _ and -, starting with a letter or _"
            )));
        }
        if entry.name.is_some() && !seen.insert(name.clone()) {
            problems.push(here(format!("duplicate check name {name:?}")));
        }
        let meta = match schedule(&check.common, &doc.global, flags, kind.default_interval) {
            Ok((interval, timeout)) => CheckMeta {
                name,
                kind: kind.name,
                interval,
                timeout,
            },
            Err((at, message)) => {
                problems.push(Problem::at(at, Some(&name), message));
                continue;
            }
        };
        let ctx = BuildContext {
            meta: &meta,
            legacy_metrics: check.common.legacy_metrics,
            base_dir,
            ignored_images: flags.ignored_images,
            shard: flags.shard,
            at: entry.start,
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
    problems.extend(checks::legacy_conflicts(&loaded));
    if problems.is_empty() {
        Ok(loaded)
    } else {
        Err(problems)
    }
}

/// Builds the modules of `modules:`; each is shown by `debug=true` as written (read
/// again from `text` as a tree), secrets hidden.
fn build_modules(
    text: &str,
    specs: Vec<(Spanned<String>, Spanned<ModuleSpec>)>,
    base_dir: &Path,
    file: Option<&str>,
) -> Result<ModuleSet, Vec<Problem>> {
    #[derive(Deserialize)]
    struct Tree {
        #[serde(default)]
        modules: Option<Located<Node>>,
    }
    let mut set = ModuleSet::new();
    if specs.is_empty() {
        return Ok(set);
    }
    let tree = serde_saphyr::from_str::<Tree>(text)
        .ok()
        .and_then(|t| t.modules)
        .map(|m| m.value);
    let mut problems = Vec::new();
    for (name, spec) in specs {
        let named_at = name.referenced;
        let name = name.value;
        if let Some(why) = module::invalid_name(&name) {
            problems.push(Problem::at(spec.referenced, None, why));
            continue;
        }
        let shown = match &tree {
            Some(Node::Map(entries)) => entries
                .iter()
                .find(|(k, _)| k.value == name)
                .and_then(|(_, v)| match &v.value {
                    Node::Map(keys) => Some(yaml::write_mapping(keys, &module::redact).text),
                    _ => None,
                })
                .unwrap_or_default(),
            _ => String::new(),
        };
        let at = spec.referenced;
        let origin = format!(
            "{}:{}:{}",
            file.unwrap_or("config"),
            named_at.line(),
            named_at.column()
        );
        match Module::build(&name, &spec.value, base_dir, at, origin, shown) {
            Ok(m) => set.add(m),
            Err(mut p) => problems.append(&mut p),
        }
    }
    if problems.is_empty() {
        Ok(set)
    } else {
        Err(problems)
    }
}

/// `global.interval` and `global.timeout`: positive, the timeout within the interval.
fn validate_global(global: &Global) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (what, value) in [("interval", &global.interval), ("timeout", &global.timeout)] {
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
    if let (Some(i), Some(t)) = (&global.interval, &global.timeout)
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
    problems
}

/// A check's interval and timeout. The interval comes from the check, else
/// `--check-interval`, else `global`, else the kind's default; the timeout from the
/// check or `global`, else 10s capped at the interval.
fn schedule(
    common: &Common,
    global: &Global,
    flags: &FlagDefaults,
    kind_default: Duration,
) -> Result<(Duration, Duration), (Location, String)> {
    if let Some(i) = &common.interval
        && i.value.0.is_zero()
    {
        return Err((i.referenced, "interval must be greater than 0".into()));
    }
    let interval = common
        .interval
        .as_ref()
        .map(|s| s.value.0)
        .or(flags.check_interval)
        .or(global.interval.as_ref().map(|s| s.value.0))
        .unwrap_or(kind_default);
    let timeout = match common.timeout.as_ref().or(global.timeout.as_ref()) {
        Some(t) if t.value.0.is_zero() => {
            return Err((t.referenced, "timeout must be greater than 0".into()));
        }
        Some(t) if t.value.0 > interval => {
            return Err((
                t.referenced,
                format!(
                    "timeout {} exceeds the interval {}",
                    format_duration(t.value.0),
                    format_duration(interval)
                ),
            ));
        }
        Some(t) => t.value.0,
        None => DEFAULT_TIMEOUT.min(interval),
    };
    Ok((interval, timeout))
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
        assert!(
            p.iter().any(|p| p.contains("unknown field `intervl`")),
            "{p:?}"
        );
    }

    #[test]
    fn every_check_s_problems_are_reported_in_one_go() {
        let p = problems(concat!(
            "global: {intervl: 5s}\n",
            "globl: 1\n",
            "checks:\n",
            "  - name: a\n    kind: http\n    urlz: [http://a/]\n",
            "  - name: 9b\n    kind: http\n    urls: []\n",
            "  - name: c\n    kind: htp\n",
            "  - kind: hwmon\n",
            "  - name: e\n    kind: hwmon\n    bogus: 1\n",
            "  - name: f\n    kind: http\n    interval: 5s\n    timeout: 10s\n    urls: [http://f/]\n",
            "modules:\n  m: {prober: http, timeout: 5x}\n",
        ));
        let expected = [
            "1:10: unknown field `intervl`",
            "2:1: unknown field `globl`",
            "6:5: check \"a\": unknown field `urlz`",
            "7:5: check \"9b\": invalid name \"9b\"",
            "9:11: check \"9b\": `urls` is empty",
            "11:11: check \"c\": unknown kind \"htp\"",
            "12:5: missing key `name`",
            "15:5: check \"e\": unknown field `bogus`",
        ];
        for want in expected {
            assert!(p.iter().any(|p| p.starts_with(want)), "{want} not in {p:?}");
        }
        assert!(
            p.iter()
                .any(|p| p.contains("check \"f\"") && p.contains("timeout")),
            "{p:?}"
        );
        let mut sorted = p.clone();
        sorted.sort_by_key(|p| {
            let (line, rest) = p.split_once(':').unwrap();
            (
                line.parse::<u64>().unwrap(),
                rest.split_once(':').unwrap().0.parse::<u64>().unwrap(),
            )
        });
        assert_eq!(p, sorted, "in the order of the file");
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

    /// A duplicate key and a second document are told in words with both places, not
    /// with the YAML library's advice to its programmers.
    #[test]
    fn duplicate_keys_and_second_documents_are_told_for_a_person() {
        let p = problems(
            "checks:\n  - name: web\n    interval: 5s\n    kind: http\n    interval: 10s\n    urls: [http://a/]\n",
        );
        assert_eq!(
            p,
            ["5:5: key `interval` appears twice (lines 3 and 5); keep one"],
            "{p:?}"
        );
        let p = problems("checks: [{name: a, kind: http, name: b}]\n");
        assert_eq!(
            p,
            ["1:32: key `name` appears twice (line 1, columns 11 and 32); keep one"]
        );
        let p = problems("global: {}\nglobal: {}\nchecks: []\n");
        assert!(
            p[0].starts_with("2:1: key `global` appears twice (lines 1 and 2)"),
            "{p:?}"
        );
        let text = "checks:\n  - {name: a, kind: http, urls: [http://a/]}\n---\nchecks: []\n";
        let p = problems(text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("3:1: a second YAML document starts on line 3"),
            "{p:?}"
        );
        assert!(
            !p[0].contains("Options") && !p[0].contains("from_str"),
            "{p:?}"
        );
    }

    /// `interval: 18446744073709551615` once passed `--config.check` and aborted sonde at
    /// start: a bare integer is bounded like every other spelling.
    #[test]
    fn huge_intervals_are_config_errors() {
        for value in [
            "18446744073709551615",
            "9223372036854775807",
            "\"99999999999\"",
            "521w",
        ] {
            let p = problems(&format!(
                "checks:\n  - name: web\n    kind: http\n    interval: {value}\n    urls: [http://a/]\n"
            ));
            assert_eq!(p.len(), 1, "{value}: {p:?}");
            assert!(
                p[0].starts_with("4:15: check \"web\": ") && p[0].contains("too large"),
                "{value}: {p:?}"
            );
        }
        let p = problems("global: {timeout: 18446744073709551615}\nchecks: []\n");
        assert!(p.iter().any(|p| p.contains("too large")), "{p:?}");
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
}
