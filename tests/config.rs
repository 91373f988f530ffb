//! Config and flag errors through the real binary: exit code 2 and exactly one `sonde:`
//! line per problem naming file, line, column and check; never a panic.

mod common;

use common::*;

/// Runs `--config.check` on `yaml`; returns (exit code, stderr lines, config path).
fn check(yaml: &str) -> (Option<i32>, Vec<String>, String) {
    let dir = Dir::new();
    let path = dir.write("sonde.yml", yaml);
    let out = run(&["--config.check", "--config.file", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (
        out.status.code(),
        stderr.lines().map(str::to_string).collect(),
        path.display().to_string(),
    )
}

fn assert_one_error(yaml: &str, expected: &str) {
    let (code, lines, path) = check(yaml);
    assert_eq!(code, Some(2), "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let expected = expected.replace("FILE", &path);
    assert!(
        lines[0].starts_with(&expected),
        "got {:?}, want a line starting {expected:?}",
        lines[0]
    );
}

#[test]
fn unknown_key() {
    assert_one_error(
        "checks:\n  - name: web\n    kind: http\n    urls: [http://127.0.0.1/]\n    follow_redirect: true\n",
        "sonde: FILE:5:5: check \"web\": unknown field `follow_redirect`",
    );
}

#[test]
fn bad_duration() {
    assert_one_error(
        "checks:\n  - name: web\n    kind: http\n    timeout: 5 seconds\n    urls: [http://127.0.0.1/]\n",
        "sonde: FILE:4:14: check \"web\": invalid duration \"5 seconds\"",
    );
}

#[test]
fn duplicate_check_name() {
    assert_one_error(
        "checks:\n  - name: web\n    kind: http\n    urls: [http://127.0.0.1/]\n  - name: web\n    kind: http\n    urls: [http://127.0.0.2/]\n",
        "sonde: FILE:5:5: check \"web\": duplicate check name \"web\"",
    );
}

#[test]
fn missing_urls() {
    assert_one_error(
        "checks:\n  - name: web\n    kind: http\n    interval: 1m\n",
        "sonde: FILE:4:5: check \"web\": missing field `urls`",
    );
    assert_one_error(
        "checks:\n  - name: web\n    kind: http\n    urls: []\n",
        "sonde: FILE:4:11: check \"web\": `urls` is empty",
    );
}

#[test]
fn empty_file() {
    assert_one_error("", "sonde: FILE:1:1: the config is empty");
    assert_one_error("# nothing here\n\n", "sonde: FILE:1:1: the config is empty");
}

#[test]
fn not_yaml() {
    assert_one_error("checks: [ {name: web\n", "sonde: FILE:");
    assert_one_error("\t- {{{{\n", "sonde: FILE:1:");
    assert_one_error("just a string\n", "sonde: FILE:1:1:");
}

#[test]
fn each_semantic_problem_is_printed() {
    let (code, lines, path) = check(
        "checks:\n  - name: a\n    kind: http\n    interval: 5s\n    timeout: 10s\n    urls: [http://127.0.0.1/]\n  - name: b\n    kind: http\n    urls: [\"ftp://x/\"]\n    fail_if_body_matches_regexp: [\"(\"]\n",
    );
    assert_eq!(code, Some(2));
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!(
            "sonde: {path}:5:14: check \"a\": timeout 10s exceeds the interval 5s"
        )),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "sonde: {path}:9:12: check \"b\": URL \"ftp://x/\" must start with http"
        )),
        "{lines:?}"
    );
    assert!(
        lines[2].starts_with(&format!(
            "sonde: {path}:10:35: check \"b\": invalid regular expression"
        )),
        "{lines:?}"
    );
}

/// An unknown key in one check hides neither another check's problems nor the web
/// config's: one run of --config.check lists them all, in the order of the file.
#[test]
fn one_run_lists_the_problems_of_every_check_and_of_the_web_config() {
    let dir = Dir::new();
    let cfg = dir.write(
        "sonde.yml",
        "checks:\n  - name: a\n    kind: http\n    urlz: [http://a/]\n  - name: 9b\n    kind: http\n    urls: []\n  - name: c\n    kind: htp\n  - name: d\n    kind: dockerhub\n",
    );
    let web = dir.write("web.yml", "basic_auth_userz: {u: x}\n");
    let (cfg, web) = (cfg.display().to_string(), web.display().to_string());
    let out = run(&["--config.check", "-c", &cfg, "--web.config.file", &web]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let expected = [
        format!("sonde: {cfg}:4:5: check \"a\": unknown field `urlz`"),
        format!("sonde: {cfg}:5:5: check \"9b\": invalid name \"9b\""),
        format!("sonde: {cfg}:7:11: check \"9b\": `urls` is empty"),
        format!("sonde: {cfg}:9:11: check \"c\": unknown kind \"htp\""),
        // No key to blame: located at the check's start.
        format!("sonde: {cfg}:10:5: check \"d\": list at least one Docker Hub organization"),
        format!("sonde: {web}:1:1: unknown field `basic_auth_userz`"),
    ];
    assert_eq!(lines.len(), expected.len(), "{stderr}");
    for (line, want) in lines.iter().zip(&expected) {
        assert!(
            line.starts_with(want.as_str()),
            "{line:?} is not {want:?}\n{stderr}"
        );
    }
}

/// URLs sonde refuses are named without the password of their userinfo, whichever key
/// they are in.
#[test]
fn refused_urls_are_named_without_their_password() {
    let (code, lines, _) = check(concat!(
        "checks:\n",
        "  - name: h\n    kind: http\n    urls: [\"ftp://u:PW1@127.0.0.1:9/\"]\n",
        "  - name: d\n    kind: dockerhub\n    organizations: [o]\n    api_url: \"ftp://u:PW2@127.0.0.1:9\"\n",
        "  - name: k\n    kind: kubernetes_images\n    api_server: \"ftp://u:PW3@127.0.0.1:9\"\n",
    ));
    assert_eq!(code, Some(2));
    let all = lines.join("\n");
    assert_eq!(all.matches("://***@127.0.0.1:9").count(), 3, "{all}");
    assert!(!all.contains("PW"), "{all}");
}

#[test]
fn a_missing_secret_file_is_a_config_error_without_content() {
    let (code, lines, path) = check(
        "checks:\n  - name: a\n    kind: http\n    bearer_token_file: /nonexistent/token\n    urls: [http://127.0.0.1/]\n",
    );
    assert_eq!(code, Some(2));
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with(&format!(
            "sonde: {path}:4:24: check \"a\": cannot read the secret file /nonexistent/token"
        )),
        "{lines:?}"
    );
}

#[test]
fn a_valid_config_checks_out() {
    let (code, lines, _) =
        check("checks:\n  - name: a\n    kind: http\n    urls: [http://127.0.0.1/]\n");
    assert_eq!(code, Some(0), "{lines:?}");
    let out = run(&["--config.check"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("built-in default config is valid"));
}

#[test]
fn missing_config_file() {
    let out = run(&["--config.check", "-c", "/nonexistent/sonde.yml"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("sonde: /nonexistent/sonde.yml: cannot open the config file"),
        "{stderr}"
    );
}

#[test]
fn flag_errors_exit_2_with_one_line() {
    for args in [
        &["--no-such-flag"][..],
        &["--check-interval", "soon"],
        &["--log.level", "loud"],
        &["--web.listen-address", "nowhere"],
        &["--web.telemetry-path", "metrics"],
        &["--web.telemetry-path", "/-/ready"],
        &["--config.file"],
        &["--config.file="],
        &["--web.config.file="],
        &["--once=yes"],
        &["--config.check", "--config.check"],
    ] {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("sonde: "), "{args:?}: {stderr}");
    }
}

/// The spellings the shipped manifests use: `--flag=value` for paths (the Kubernetes
/// Deployment's `--config.file=...`), and --config.check added to a --once line checks it.
#[test]
fn equals_form_and_config_check_on_any_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sonde.yml");
    std::fs::write(
        &config,
        "checks:\n  - {name: h, kind: hwmon, sysfs_path: /nonexistent}\n",
    )
    .unwrap();
    let with_equals = format!("--config.file={}", config.display());
    for args in [
        vec![with_equals.as_str(), "--config.check"],
        vec!["--once", with_equals.as_str(), "--config.check"],
        vec![
            "--once",
            "--push.gateway=http://127.0.0.1:9/",
            with_equals.as_str(),
            "--config.check",
        ],
    ] {
        let out = run(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("is valid: 1 check(s)"),
            "{args:?}: {stdout}"
        );
    }
    let web = dir.path().join("web.yml");
    std::fs::write(&web, "basic_auth_users: {u: notahash}\n").unwrap();
    let out = run(&[
        &with_equals,
        &format!("--web.config.file={}", web.display()),
        "--config.check",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a broken web config passed --config.check"
    );
    let out = run(&["--config.file="]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--config.file") && stderr.contains("empty"),
        "{stderr}"
    );
}

#[test]
fn help_and_version() {
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--web.listen-address"));
    let out = run(&["-V"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with(&format!("sonde {}", env!("CARGO_PKG_VERSION")))
    );
}

#[test]
fn hostile_yaml_never_panics() {
    let inputs = [
        "checks: &a [*a]\n",
        "a: &a [*a, *a, *a]\nb: &b [*a, *a, *a]\nc: &c [*b, *b, *b]\nd: &d [*c, *c, *c]\nchecks: [*d]\n",
        "checks:\n  - !!binary aGVsbG8=\n",
        "checks:\n  - name: x\n    kind: http\n    urls: [http://a/]\n    interval: 99999999999999999999w\n",
        "checks:\n  - name: x\n    kind: http\n    urls: [http://a/]\n    body_size_limit: -1\n",
        "checks:\n  - name: x\n    kind: http\n    urls: [http://a/]\n    valid_status_codes: [70000]\n",
        "checks:\n  - {name: x, kind: http, urls: [\"http://[::1/\"]}\n",
        "\u{feff}checks: {}\n",
        "---\n---\n",
    ];
    for input in inputs {
        let (code, lines, _) = check(input);
        assert_eq!(code, Some(2), "{input:?}: {lines:?}");
        assert!(
            !lines.is_empty() && lines.iter().all(|l| l.starts_with("sonde: ")),
            "{input:?}: {lines:?}"
        );
    }
}
