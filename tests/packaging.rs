//! The config files sonde ships load: /etc/sonde/sonde.yml of the .deb and the image
//! (packaging/sonde.yml), the compose stack's and the Kubernetes ConfigMap's.
//!
//! packaging/sonde.yml holds one active check and a commented example of every other
//! kind; each example is uncommented and validated on its own with `--config.check`.
//! A check whose kind this build does not know yet (kinds land one by one) is reported
//! on stderr and left out, and the rest of its file is still validated; once every kind
//! is in the build, each file is validated whole.

mod common;

use std::path::Path;

/// Every kind sonde has: the example config must show each one.
const ALL_KINDS: &[&str] = &[
    "http",
    "dockerhub",
    "registry",
    "kubernetes_images",
    "hwmon",
];

/// One check of a config file: its kind and its YAML lines (uncommented).
#[derive(Debug)]
struct Block {
    kind: String,
    commented: bool,
    text: String,
}

/// A config file split into the part before `checks:` and the checks under it, active
/// (`  - name:`) or commented out (`  # - name:`), by the layout the shipped files use.
struct Shipped {
    header: String,
    blocks: Vec<Block>,
}

fn read_shipped(relative: &str) -> Shipped {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    let text = std::fs::read_to_string(&path).unwrap();
    let (header, rest) = text
        .split_once("\nchecks:\n")
        .unwrap_or_else(|| panic!("{relative}: no top-level `checks:`"));
    let mut blocks: Vec<Block> = Vec::new();
    let mut current: Option<(bool, Vec<String>)> = None;
    let finish = |current: &mut Option<(bool, Vec<String>)>, blocks: &mut Vec<Block>| {
        if let Some((commented, lines)) = current.take() {
            let kind = lines
                .iter()
                .find_map(|l| l.trim().strip_prefix("kind:"))
                .map(|k| k.trim().to_string())
                .unwrap_or_else(|| panic!("{relative}: a check without kind: {lines:?}"));
            blocks.push(Block {
                kind,
                commented,
                text: lines.join("\n") + "\n",
            });
        }
    };
    for line in rest.lines() {
        if line.starts_with("  - ") {
            finish(&mut current, &mut blocks);
            current = Some((false, vec![line.to_string()]));
        } else if let Some(uncommented) = line.strip_prefix("  # - ") {
            finish(&mut current, &mut blocks);
            current = Some((true, vec![format!("  - {uncommented}")]));
        } else if let Some((commented, lines)) = current.as_mut() {
            match (*commented, line.strip_prefix("  #   ")) {
                (false, _) if line.starts_with("    ") => lines.push(line.to_string()),
                (true, Some(key)) => lines.push(format!("    {key}")),
                _ => finish(&mut current, &mut blocks),
            }
        }
    }
    finish(&mut current, &mut blocks);
    Shipped {
        header: format!("{header}\n"),
        blocks,
    }
}

/// The kinds this build knows, from the error `--config.check` gives for an unknown one.
fn known_kinds() -> Vec<String> {
    let dir = common::Dir::new();
    let config = dir.write(
        "probe.yml",
        "checks:\n  - name: probe\n    kind: no_such_kind\n",
    );
    let out = common::run(&["--config.check", "--config.file", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let list = stderr
        .split("(one of ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap_or_else(|| panic!("no kind list in {stderr:?}"));
    let kinds: Vec<String> = list.split(", ").map(str::to_string).collect();
    assert!(kinds.contains(&"http".to_string()), "{kinds:?}");
    kinds
}

/// Whether a check relies on running in a pod (kubernetes_images without api_server).
fn needs_pod(block: &Block) -> bool {
    block.kind == "kubernetes_images"
        && !block
            .text
            .lines()
            .any(|l| l.trim().starts_with("api_server:"))
}

/// Runs `--config.check` on `header` and `blocks`; returns the exit code and stderr
/// followed by the config. Checks that need a pod get one played for them (see the top
/// of this file).
fn config_check(header: &str, blocks: &[&Block]) -> (Option<i32>, String) {
    let dir = common::Dir::new();
    let in_pod = blocks.iter().any(|b| needs_pod(b));
    let mut text = format!("{header}checks:\n");
    for block in blocks {
        text.push_str(&block.text);
        if needs_pod(block) {
            text.push_str("    bearer_token_file: pod-token\n");
        }
    }
    dir.write("pod-token", "eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl\n");
    let config = dir.write("sonde.yml", &text);
    let mut command = std::process::Command::new(common::sonde_bin());
    command.args(["--config.check", "--config.file", config.to_str().unwrap()]);
    if in_pod {
        command
            .env("KUBERNETES_SERVICE_HOST", "10.96.0.1")
            .env("KUBERNETES_SERVICE_PORT", "443");
    }
    // --config.check reads files only and exits at once.
    let out = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.code(), format!("{stderr}\n{text}"))
}

/// Validates a shipped file whole, or without the checks of kinds not yet built in.
/// Returns how many checks were validated.
fn validate_shipped(relative: &str, known: &[String]) -> usize {
    let shipped = read_shipped(relative);
    let active: Vec<&Block> = shipped.blocks.iter().filter(|b| !b.commented).collect();
    assert!(!active.is_empty(), "{relative}: no active check");
    let missing: Vec<&str> = active
        .iter()
        .map(|b| b.kind.as_str())
        .filter(|k| !known.iter().any(|n| n == k))
        .collect();
    if missing.is_empty() && !active.iter().any(|b| needs_pod(b)) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
        let out = common::run(&["--config.check", "--config.file", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{relative}: {stderr}");
        return active.len();
    }
    if !missing.is_empty() {
        eprintln!("NOTE {relative}: kinds {missing:?} are not in this build; validating the rest");
    }
    let kept: Vec<&Block> = active
        .iter()
        .copied()
        .filter(|b| known.contains(&b.kind))
        .collect();
    if kept.is_empty() {
        return 0;
    }
    let (code, report) = config_check(&shipped.header, &kept);
    assert_eq!(code, Some(0), "{relative}: {report}");
    kept.len()
}

#[test]
fn the_example_config_shows_every_kind_once_with_hwmon_active() {
    let shipped = read_shipped("packaging/sonde.yml");
    let kinds: Vec<&str> = shipped.blocks.iter().map(|b| b.kind.as_str()).collect();
    for kind in ALL_KINDS {
        assert_eq!(
            kinds.iter().filter(|k| *k == kind).count(),
            1,
            "packaging/sonde.yml must have one check of kind {kind}: {kinds:?}"
        );
    }
    let active: Vec<&Block> = shipped.blocks.iter().filter(|b| !b.commented).collect();
    assert_eq!(active.len(), 1, "one active check: {active:?}");
    assert_eq!(active[0].kind, "hwmon");
    assert!(
        active[0].text.contains("sysfs_path: /sys"),
        "{}",
        active[0].text
    );
}

#[test]
fn every_example_in_the_example_config_is_valid() {
    let known = known_kinds();
    // Each kind the build knows must have its example here, and each example must load.
    let shipped = read_shipped("packaging/sonde.yml");
    for kind in &known {
        assert!(
            shipped.blocks.iter().any(|b| &b.kind == kind),
            "packaging/sonde.yml has no example of kind {kind}"
        );
    }
    let mut validated = 0;
    for block in &shipped.blocks {
        if !known.contains(&block.kind) {
            eprintln!(
                "NOTE kind {} is not in this build; its example is not validated",
                block.kind
            );
            continue;
        }
        let (code, report) = config_check(&shipped.header, &[block]);
        assert_eq!(code, Some(0), "example of kind {}: {report}", block.kind);
        validated += 1;
    }
    assert!(validated >= 1, "no example validated");
}

#[test]
fn the_shipped_configs_are_valid() {
    let known = known_kinds();
    let mut validated = 0;
    for file in [
        "packaging/sonde.yml",
        "packaging/compose/sonde.yml",
        "packaging/kubernetes/base/sonde.yml",
    ] {
        validated += validate_shipped(file, &known);
    }
    // The compose stack's http check is validated today; more once their kinds land.
    assert!(validated >= 1);
}

#[test]
fn a_broken_example_is_caught() {
    // The uncommenting itself must not hide mistakes: a typo in an example fails.
    let shipped = read_shipped("packaging/sonde.yml");
    let http = shipped.blocks.iter().find(|b| b.kind == "http").unwrap();
    let broken = http
        .text
        .replace("valid_status_codes", "valid_status_codez");
    assert_ne!(broken, http.text);
    let broken = Block {
        kind: http.kind.clone(),
        commented: false,
        text: broken,
    };
    let (code, stderr) = config_check("", &[&broken]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("valid_status_codez"), "{stderr}");
}
