//! The code's layers point one way: a module may import only modules of lower layers
//! (and its own directory's), never one above it, and no files of a directory import
//! each other in a circle. The test reads `src/**/*.rs` as text, so it needs no build
//! of the crate and fails with the file, the line and the import that breaks the rule.
//!
//! Layers, lowest first (a row may import the rows above it):
//!   0  cli, problem, units, sync, files, keys, metrics, shard, yaml  (import nothing of the crate)
//!   1  tls, store
//!   2  exposition, logger
//!   3  net, sysfs            (outbound and the sensor tree)
//!   4  checks                (the kinds)
//!   5  config, blackbox, scheduler, push, web
//!   6  settings
//!   7  main

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layer of each top-level module.
const LAYERS: &[(&str, u8)] = &[
    ("cli", 0),
    ("problem", 0),
    ("units", 0),
    ("sync", 0),
    ("files", 0),
    ("keys", 0),
    ("metrics", 0),
    ("shard", 0),
    // YAML trees with locations, written back as text: for blackbox.rs and modules.
    ("yaml", 0),
    ("tls", 1),
    ("store", 1),
    ("exposition", 2),
    ("logger", 2),
    ("net", 3),
    ("sysfs", 3),
    ("checks", 4),
    ("config", 5),
    // Reads blackbox_exporter's config file into probe modules, beside config.rs.
    ("blackbox", 5),
    ("scheduler", 5),
    ("push", 5),
    ("web", 5),
    ("settings", 6),
    ("main", 7),
];

/// One `crate::` (or `super::`) reference found in a file.
#[derive(Debug)]
struct Import {
    from: String,
    to: String,
    line: usize,
    text: String,
}

fn layer(top: &str) -> Option<u8> {
    LAYERS
        .iter()
        .find(|(name, _)| *name == top)
        .map(|(_, l)| *l)
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

/// `src/checks/http.rs` -> `checks::http`; `src/net/mod.rs` -> `net`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a path after `crate::` names: `checks::http::Foo` -> `checks::http` when
/// `checks/http.rs` exists, else `checks`.
fn resolve(path: &str, modules: &BTreeSet<String>) -> String {
    let parts: Vec<&str> = path.split("::").collect();
    for n in (1..=parts.len()).rev() {
        let candidate = parts[..n].join("::");
        if modules.contains(&candidate) {
            return candidate;
        }
    }
    parts[0].to_string()
}

/// Every `crate::a::b` and `super::x` in a file's code (comments skipped). `use` lists
/// in braces (`use crate::{a, b::c}`) count each member.
fn imports(module: &str, text: &str, modules: &BTreeSet<String>) -> Vec<Import> {
    let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split("//").next().unwrap_or("");
        for (prefix, base) in [("crate::", ""), ("super::", parent)] {
            let mut rest = line;
            while let Some(at) = rest.find(prefix) {
                let before = rest[..at].chars().last();
                rest = &rest[at + prefix.len()..];
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let mut paths = Vec::new();
                if let Some(group) = rest.strip_prefix('{') {
                    let inner = group.split('}').next().unwrap_or("");
                    paths.extend(inner.split(',').map(|p| p.trim().to_string()));
                } else {
                    let end = rest
                        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                        .unwrap_or(rest.len());
                    paths.push(rest[..end].trim_end_matches(':').to_string());
                }
                for path in paths.into_iter().filter(|p| !p.is_empty()) {
                    let full = if base.is_empty() {
                        path
                    } else {
                        format!("{base}::{path}")
                    };
                    let to = resolve(&full, modules);
                    if to != module {
                        out.push(Import {
                            from: module.to_string(),
                            to,
                            line: i + 1,
                            text: raw.trim().to_string(),
                        });
                    }
                }
            }
        }
    }
    out
}

fn read_tree() -> (BTreeMap<String, String>, BTreeSet<String>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut texts = BTreeMap::new();
    for file in files {
        let module = module_of(&src, &file);
        texts.insert(module, std::fs::read_to_string(&file).unwrap());
    }
    let modules = texts.keys().cloned().collect();
    (texts, modules)
}

/// Whether an import from `from` to `to` follows the layers.
fn allowed(from: &str, to: &str) -> Result<(), String> {
    let (a, b) = (top(from), top(to));
    if a == b {
        return Ok(());
    }
    match (layer(a), layer(b)) {
        (Some(la), Some(lb)) if la > lb => Ok(()),
        (Some(la), Some(lb)) => Err(format!(
            "`{a}` (layer {la}) may not import `{b}` (layer {lb})"
        )),
        (None, _) => Err(format!("module `{a}` has no layer in tests/layers.rs")),
        (_, None) => Err(format!("module `{b}` has no layer in tests/layers.rs")),
    }
}

#[test]
fn every_import_points_down_the_layers() {
    let (texts, modules) = read_tree();
    let mut broken = Vec::new();
    for (module, text) in &texts {
        if module == "main" {
            continue;
        }
        for import in imports(module, text, &modules) {
            if let Err(why) = allowed(&import.from, &import.to) {
                broken.push(format!(
                    "module {} line {}: {why}: {}",
                    import.from, import.line, import.text
                ));
            }
        }
    }
    assert!(broken.is_empty(), "upward imports:\n{}", broken.join("\n"));
}

/// Within a directory, files may use each other, but not in a circle; a directory's
/// `mod.rs` (which declares its files) is left out of the circle search.
#[test]
fn no_circle_between_files_of_a_directory() {
    let (texts, modules) = read_tree();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, text) in &texts {
        for import in imports(module, text, &modules) {
            let parent_dir = |m: &str| m.rsplit_once("::").map(|(p, _)| p.to_string());
            let same_dir = parent_dir(&import.from).is_some()
                && parent_dir(&import.from) == parent_dir(&import.to);
            if same_dir {
                edges.entry(import.from).or_default().insert(import.to);
            }
        }
    }
    for start in edges.keys() {
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        while let Some((at, path)) = stack.pop() {
            for next in edges.get(&at).into_iter().flatten() {
                assert!(
                    next != start,
                    "import circle: {} -> {next}",
                    path.join(" -> ")
                );
                if !path.contains(next) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
}

/// The rule itself: what the tests above would reject.
#[test]
fn the_checker_sees_upward_imports_and_circles() {
    let modules: BTreeSet<String> = [
        "config",
        "checks",
        "checks::http",
        "checks::probe",
        "web",
        "net::http",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let found = imports(
        "web::routes",
        "use crate::config::Problem;\n// use crate::checks::x;\nlet a = crate::checks::http::f();\n",
        &modules,
    );
    let targets: Vec<&str> = found.iter().map(|i| i.to.as_str()).collect();
    assert_eq!(targets, ["config", "checks::http"]);
    assert!(allowed("web::routes", "config").is_err());
    assert!(allowed("net::http", "checks::http").is_err());
    assert!(allowed("checks::http", "net::http").is_ok());
    assert!(allowed("checks::http", "checks").is_ok());
    let grouped = imports(
        "config",
        "use crate::{checks::Spec, problem::Problem};\n",
        &modules,
    );
    assert_eq!(grouped.len(), 2);
    let sibling = imports("checks::http", "use super::probe::Prober;\n", &modules);
    assert_eq!(sibling[0].to, "checks::probe");
}
