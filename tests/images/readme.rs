//! The config examples of a README section, run through `sonde --config.check` as a user
//! would paste them into a config: every `yaml` block of the section that holds checks
//! (`checks:` or `  - name:`), with the files it names under `/etc/sonde/` created in a
//! temporary directory (a docker config, a CA, a token, a kubeconfig) and, for a
//! kubernetes_images check that relies on running in a pod, the pod played for it.

#![allow(dead_code)]

use std::path::Path;

use crate::common::{self, Dir};

/// The check examples of the README section whose heading starts with `heading`
/// (`## kind: hwmon`), up to the next heading of the same level: (line, YAML).
pub fn examples(heading: &str) -> Vec<(usize, String)> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let level = heading.split(' ').next().unwrap_or("##").to_string() + " ";
    let mut lines = readme.lines().enumerate();
    let Some((start, _)) = lines.find(|(_, l)| l.starts_with(heading)) else {
        panic!("README.md has no section {heading:?}");
    };
    let mut found = Vec::new();
    let mut block: Option<(usize, String)> = None;
    for (n, line) in readme.lines().enumerate().skip(start + 1) {
        if block.is_none() && line.starts_with(&level) {
            break;
        }
        match (&mut block, line) {
            (None, "```yaml") => block = Some((n + 2, String::new())),
            (Some(_), "```") => {
                let (at, text) = block.take().unwrap_or_default();
                if text.starts_with("checks:") || text.starts_with("  - name:") {
                    found.push((at, text));
                }
            }
            (Some((_, text)), line) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(
        !found.is_empty(),
        "no check example in README section {heading:?}"
    );
    found
}

/// What a file the examples name holds, by its name.
fn placeholder(name: &str) -> String {
    if name.ends_with(".json") {
        r#"{"auths": {"registry.local": {"auth": "dXNlcjpwYXNzd29yZA=="}}}"#.into()
    } else if name.ends_with(".pem") {
        common::TestCa::new().pem
    } else if name == "kubeconfig" {
        "apiVersion: v1
kind: Config
current-context: staging
clusters:
- {name: prod, cluster: {server: https://10.0.0.1:6443}}
users:
- {name: sonde, user: {tokenFile: k8s-token}}
contexts:
- {name: prod, context: {cluster: prod, user: sonde}}
- {name: staging, context: {cluster: prod, user: sonde}}
"
        .into()
    } else {
        "placeholder-secret\n".into()
    }
}

/// Runs `--config.check` on each example of the section; panics with the README line of
/// the first that does not load.
pub fn check_examples(heading: &str) {
    for (line, example) in examples(heading) {
        let dir = Dir::new();
        let base = format!("{}/", dir.path().display());
        let mut text = if example.starts_with("checks:") {
            example.clone()
        } else {
            format!("checks:\n{example}")
        };
        for word in example.split(|c: char| c.is_whitespace() || "[]{},\"".contains(c)) {
            if let Some(name) = word.strip_prefix("/etc/sonde/") {
                dir.write(name, placeholder(name));
            }
        }
        dir.write("k8s-token", "placeholder-token\n");
        text = text.replace("/etc/sonde/", &base);
        // A kubernetes_images check without api_server or kubeconfig runs in a pod: give
        // it the pod's environment and token.
        let in_pod = text.contains("kind: kubernetes_images")
            && !text.contains("api_server:")
            && !text.contains("kubeconfig:");
        if in_pod {
            text.push_str(&format!("    bearer_token_file: {base}k8s-token\n"));
        }
        let config = dir.write("sonde.yml", &text);
        let out = std::process::Command::new(common::sonde_bin())
            .args(["--config.check", "--config.file", config.to_str().unwrap()])
            .env("KUBERNETES_SERVICE_HOST", "10.96.0.1")
            .env("KUBERNETES_SERVICE_PORT", "443")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "README.md:{line}: the example does not load:\n{}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
