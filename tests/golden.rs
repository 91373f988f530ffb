//! Golden end-to-end test, in the spirit of node_exporter's `end-to-end-test.sh` and
//! `collector/fixtures/e2e-output.txt`.
//!
//! The per-kind tests assert the lines they care about; none of them shows the whole
//! exposition a user gets. This one runs the real binary with `--once` on one config
//! that holds every kind (http, dockerhub, registry, kubernetes_images, hwmon), legacy
//! names included, against fixture servers started here on 127.0.0.1 and a fixture
//! sysfs tree, and compares the complete output with `tests/golden/e2e-output.prom`.
//! Any change to a metric name, HELP text, TYPE, label, value or order then shows up as
//! a diff that a reviewer reads next to the code change that caused it.
//!
//! Only what differs from run to run is normalised (see [`normalise`]); everything the
//! fixtures pin down (status codes, pulls, certificate expiry, sensor readings) is kept.
//!
//! When a change of the output is intended, regenerate the file and review its diff:
//!
//! ```text
//! UPDATE_GOLDEN=1 cargo test --test golden
//! git diff tests/golden/e2e-output.prom
//! ```
//!
//! Nothing but cargo is needed: no Debian package, no registry binary, no network
//! beyond 127.0.0.1.

mod common;
mod images;

use std::collections::HashMap;
use std::path::Path;

use common::{Dir, Fixture, Reply, SeenRequest};
use images::TestCa;
use images::kube::{Cluster, dockerconfigjson_secret, pod_spec, start_api, workload};
use serde_json::json;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/e2e-output.prom");
const HWMON_TREE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/hwmon/raspberry_pi");

const PULL_USER: &str = "puller";
const PULL_PASSWORD: &str = "pull-pw";

/// Lines of context around each change in a diff.
const CONTEXT: usize = 3;

#[test]
fn every_kind_once_matches_the_golden_file() {
    let ca = TestCa::new();
    let web = web_fixture();
    let secure = images::tls_fixture(&ca, |_| Reply::status(200, "secure\n"));
    let hub = hub_fixture();
    let registry = Registry::start();
    let r = registry.fixture.addr.to_string();
    let api = start_api(&ca, cluster(&r, &registry.app_digest), "api-token");

    let dir = Dir::new();
    dir.write("ca.pem", &ca.ca_pem);
    dir.write("token", "api-token\n");
    let config = fixture_config(
        &web.addr.to_string(),
        &secure.https_url("/"),
        &hub.url(""),
        &r,
        &registry.app_digest,
        &api.server.addr.to_string(),
    );
    let path = dir.write("sonde.yml", config);

    let started = std::time::Instant::now();
    let out = common::run(&["--once", "-c", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("sonde --once took {:?}", started.elapsed());
    assert!(!stderr.contains("panicked"), "sonde panicked: {stderr}");
    // Several fixtures fail on purpose (a 503, an absent image, ...), so --once says so.
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");

    assert!(
        api.gone_sent.load(std::sync::atomic::Ordering::SeqCst),
        "the deployments list was meant to be continued and restarted after a 410"
    );

    let actual = normalise(&stdout, dir.path());
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(Path::new(GOLDEN).parent().unwrap()).unwrap();
        std::fs::write(GOLDEN, &actual).unwrap();
        eprintln!("wrote {GOLDEN}; review it with `git diff`");
        return;
    }
    compare_with_golden(&actual, &stderr);
}

/// Fails with a readable diff when `actual` is not the golden file.
fn compare_with_golden(actual: &str, stderr: &str) {
    let expected = std::fs::read_to_string(GOLDEN).unwrap_or_else(|e| {
        panic!(
            "cannot read {GOLDEN} ({e}); create it with `UPDATE_GOLDEN=1 cargo test --test golden`"
        )
    });
    if let Some(diff) = line_diff(&expected, actual) {
        panic!(
            "the output of `sonde --once` differs from {GOLDEN}\n\
             (- golden, + this run, after normalisation):\n\n{diff}\n\
             If the change is intended, run `UPDATE_GOLDEN=1 cargo test --test golden` and \
             review `git diff tests/golden/e2e-output.prom`.\n\nsonde's stderr:\n{stderr}"
        );
    }
}

/// The config of the golden run: every kind, against the fixtures at these addresses.
fn fixture_config(
    w: &str,
    secure_url: &str,
    hub_url: &str,
    r: &str,
    digest: &str,
    api: &str,
) -> String {
    // Port 1 (tcpmux) is privileged and unused in practice: a refusal without a race
    // for a port released by the test.
    format!(
        r#"checks:
  - name: web
    kind: http
    legacy_metrics: true
    fail_if_body_matches_regexp: ["maintenance"]
    urls:
      - http://{w}/ok
      - http://{w}/redirect
      - http://{w}/down
      - http://{w}/maintenance
      - http://127.0.0.1:1/refused
  - name: secure
    kind: http
    valid_status_codes: [200]
    tls: {{ca_file: ca.pem}}
    urls: [{secure_url}]
  - name: hub
    kind: dockerhub
    legacy_metrics: true
    api_url: {hub_url}
    organizations: [acme, labs]
  - name: images
    kind: registry
    plain_http_registries: ["{r}"]
    images:
      - {r}/team/app:v1
      - {r}/team/app@{digest}
      - {r}/team/app:v404
      - {r}/private/secret:v1
      - {r}/Team/App:v1
  - name: cluster
    kind: kubernetes_images
    legacy_metrics: true
    api_server: https://{api}
    bearer_token_file: token
    ca_file: ca.pem
    plain_http_registries: ["{r}"]
    ignored_images: ["registry.local/legacy/*"]
  - name: sensors
    kind: hwmon
    sysfs_path: {HWMON_TREE:?}
"#,
    )
}

/// A golden test whose comparison cannot fail protects nothing: a value the fixtures
/// pin down must survive normalisation and show up in the diff, while a duration or a
/// port must not.
#[test]
fn the_comparison_reports_a_changed_value_and_ignores_run_to_run_noise() {
    let tmp = Path::new("/tmp/.tmpAbC123");
    let raw = "\
# HELP sonde_check_duration_seconds Duration of the last run of the check in seconds.
# TYPE sonde_check_duration_seconds gauge
sonde_check_duration_seconds{check=\"web\",kind=\"http\"} 0.012345
# HELP sonde_check_last_success_timestamp_seconds Unix time.
# TYPE sonde_check_last_success_timestamp_seconds gauge
sonde_check_last_success_timestamp_seconds{check=\"web\",kind=\"http\"} 0
sonde_check_last_success_timestamp_seconds{check=\"hub\",kind=\"dockerhub\"} 1767614400.123
# HELP sonde_http_status_code Final status code.
# TYPE sonde_http_status_code gauge
sonde_http_status_code{check=\"web\",url=\"http://127.0.0.1:41234/down\"} 503
sonde_http_probe_duration_seconds_bucket{check=\"web\",url=\"http://127.0.0.1:41234/down\",le=\"0.005\"} 1
sonde_http_probe_duration_seconds_bucket{check=\"web\",url=\"http://127.0.0.1:41234/down\",le=\"+Inf\"} 1
sample_external_url_response_ms{url=\"http://127.0.0.1:41234/down\"} 1.5
sonde_build_info{revision=\"ea279c0a1b2c\",version=\"0.1.0\"} 1
sonde_example_info{path=\"/tmp/.tmpAbC123/ca.pem\"} 1
";
    let golden = normalise(raw, tmp);
    assert!(
        golden.contains(
            "sonde_check_last_success_timestamp_seconds{check=\"web\",kind=\"http\"} 0\n"
        ),
        "a never-successful check must stay visible as 0:\n{golden}"
    );
    assert_eq!(normalise(&golden, tmp), golden, "normalising is idempotent");

    // Another run: other ports, durations, times and revision; the same facts.
    let noise = raw
        .replace("41234", "39999")
        .replace("0.012345", "0.5")
        .replace("1767614400.123", "1767614999.9")
        .replace("le=\"0.005\"} 1", "le=\"0.005\"} 0")
        .replace("} 1.5", "} 12")
        .replace("ea279c0a1b2c", "0123456789ab")
        .replace("/tmp/.tmpAbC123", "/tmp/.tmpXyZ789");
    assert_eq!(
        line_diff(&golden, &normalise(&noise, Path::new("/tmp/.tmpXyZ789"))),
        None
    );

    // A real regression: the 503 became a 502.
    let changed = raw.replace("} 503", "} 502");
    let diff = line_diff(&golden, &normalise(&changed, tmp)).expect("a changed value is a diff");
    assert!(
        diff.contains(
            "-sonde_http_status_code{check=\"web\",url=\"http://127.0.0.1:PORT/down\"} 503"
        ) && diff.contains(
            "+sonde_http_status_code{check=\"web\",url=\"http://127.0.0.1:PORT/down\"} 502"
        ) && diff.contains("@@ "),
        "{diff}"
    );
    // A check that starts succeeding is a change too, though the timestamp is volatile.
    let changed = raw.replace("kind=\"http\"} 0\n", "kind=\"http\"} 1767614400.5\n");
    assert!(line_diff(&golden, &normalise(&changed, tmp)).is_some());
    // So is a probe that suddenly times out (the legacy gauge says +Inf).
    let changed = raw.replace("} 1.5", "} +Inf");
    let diff = line_diff(&golden, &normalise(&changed, tmp)).expect("+Inf is a diff");
    assert!(
        diff.contains("+sample_external_url_response_ms{url=\"http://127.0.0.1:PORT/down\"} +Inf"),
        "{diff}"
    );
    // So is a series that disappears.
    let changed: String = raw
        .lines()
        .filter(|l| !l.starts_with("sample_external_url_response_ms"))
        .map(|l| format!("{l}\n"))
        .collect();
    let diff = line_diff(&golden, &normalise(&changed, tmp)).expect("a lost series is a diff");
    assert!(diff.contains("-sample_external_url_response_ms"), "{diff}");
}

/// Makes the exposition of one run comparable with another's: only values and labels
/// that differ between two runs of the same fixtures are replaced, with a word saying
/// what was there.
///
/// - `DURATION`: how long something took (`sonde_check_duration_seconds`,
///   `sonde_http_duration_seconds`, `sonde_http_phase_duration_seconds`, the legacy
///   `sample_external_url_response_ms`, the `_sum` of `sonde_http_probe_duration_seconds`).
/// - `COUNT`: the finite buckets of that histogram; which bucket a probe lands in
///   depends on the machine's speed. `le="+Inf"` and `_count` (the number of probes)
///   are kept.
/// - `TIMESTAMP`: when a run started or the config was loaded. A 0 ("never") is kept,
///   so a check that stops or starts succeeding still shows.
/// - `VOLATILE`: `process_*` (not printed by `--once` today, but it would change every run).
/// - Only finite, non-negative numbers are replaced; `+Inf`, `NaN` or a negative value
///   of these families is kept, as it would be a bug or the legacy timeout marker.
/// - `revision="REVISION"` in `sonde_build_info`: the git commit the binary was built from.
/// - `PORT`: the ephemeral ports of the fixtures, in URL and image labels.
/// - `FINGERPRINT`, `SERIAL`: the labels of `sonde_http_tls_cert_info` that change
///   with the test certificate each run generates.
/// - `TMP`: the temporary directory of the config, should a path ever show up.
///
/// Timestamps the fixtures fix (`sonde_dockerhub_last_updated_timestamp_seconds`,
/// `sonde_http_tls_cert_not_after_timestamp_seconds`) are kept, as are all other values.
fn normalise(raw: &str, tmp: &Path) -> String {
    let port = regex::Regex::new(r"(127\.0\.0\.1|localhost|\[::1\]):[0-9]+").unwrap();
    let revision = regex::Regex::new(r#"revision="[^"]*""#).unwrap();
    let cert = regex::Regex::new(r#"(fingerprint_sha256|serial)="[0-9a-f]*""#).unwrap();
    let tmp = tmp.display().to_string();
    let mut out = String::with_capacity(raw.len());
    for line in raw.lines() {
        let mut line = port.replace_all(line, "$1:PORT").into_owned();
        if !tmp.is_empty() {
            line = line.replace(&tmp, "TMP");
        }
        if !line.starts_with('#')
            && let Some((series, value)) = line.rsplit_once(' ')
        {
            let name = series.split('{').next().unwrap_or(series);
            let value = volatile(name, series, value).unwrap_or(value);
            let series = match name {
                "sonde_build_info" => revision.replace(series, r#"revision="REVISION""#),
                "sonde_http_tls_cert_info" => {
                    cert.replace_all(series, |c: &regex::Captures| match &c[1] {
                        "serial" => r#"serial="SERIAL""#.to_string(),
                        _ => r#"fingerprint_sha256="FINGERPRINT""#.to_string(),
                    })
                }
                _ => series.into(),
            };
            line = format!("{series} {value}");
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The word that replaces a sample's value when it changes from run to run.
fn volatile(name: &str, series: &str, value: &str) -> Option<&'static str> {
    // Only an ordinary reading is noise: a `+Inf` (the legacy timeout value), a NaN
    // or a negative duration is a finding and stays visible.
    if !value
        .parse::<f64>()
        .is_ok_and(|v| v.is_finite() && v >= 0.0)
    {
        return None;
    }
    match name {
        "sonde_check_duration_seconds"
        | "sonde_http_duration_seconds"
        | "sonde_http_phase_duration_seconds"
        | "sonde_http_probe_duration_seconds_sum"
        | "sonde_http_probe_lateness_seconds_sum"
        | "sample_external_url_response_ms" => Some("DURATION"),
        "sonde_http_probe_duration_seconds_bucket" | "sonde_http_probe_lateness_seconds_bucket"
            if !series.contains("le=\"+Inf\"") =>
        {
            Some("COUNT")
        }
        "sonde_check_last_run_timestamp_seconds"
        | "sonde_check_last_success_timestamp_seconds"
        | "sonde_config_last_reload_success_timestamp_seconds"
            if value != "0" =>
        {
            Some("TIMESTAMP")
        }
        n if n.starts_with("process_") => Some("VOLATILE"),
        _ => None,
    }
}

/// A unified-style line diff of two texts (`-` expected, `+` actual, `CONTEXT` lines
/// around each change), or `None` when they are equal.
fn line_diff(expected: &str, actual: &str) -> Option<String> {
    if expected == actual {
        return None;
    }
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    if a == b {
        return Some("the texts differ only in their line endings or final newline\n".into());
    }
    let (n, m) = (a.len(), b.len());
    // The LCS table is quadratic; a golden file is a few hundred lines, but an output
    // gone completely wrong must not exhaust memory: then show where it starts to differ.
    if n.saturating_mul(m) > 16_000_000 {
        let at = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
        return Some(format!(
            "{n} lines expected, {m} lines found; first difference at line {}:\n-{}\n+{}\n",
            at + 1,
            a.get(at).unwrap_or(&"<end of text>"),
            b.get(at).unwrap_or(&"<end of text>")
        ));
    }
    // lcs[i][j]: length of the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    // The edit script: (tag, line of a, line of b) with tag ' ', '-' or '+'.
    let mut ops: Vec<(char, usize, usize)> = Vec::with_capacity(n + m);
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', i, j));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', i, j));
            i += 1;
        } else {
            ops.push(('+', i, j));
            j += 1;
        }
    }
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != ' ').collect();
    // Hunks: runs of changes less than two contexts apart, padded with context.
    let mut hunks: Vec<(usize, usize)> = Vec::new();
    for &k in &changed {
        let start = k.saturating_sub(CONTEXT);
        let end = (k + CONTEXT + 1).min(ops.len());
        match hunks.last_mut() {
            Some(last) if start <= last.1 => last.1 = end,
            _ => hunks.push((start, end)),
        }
    }
    let mut out = String::new();
    for (start, end) in hunks {
        let slice = &ops[start..end];
        let old = slice.iter().filter(|o| o.0 != '+').count();
        let new = slice.iter().filter(|o| o.0 != '-').count();
        out.push_str(&format!(
            "@@ -{},{old} +{},{new} @@\n",
            slice[0].1 + 1,
            slice[0].2 + 1
        ));
        for &(tag, i, j) in slice {
            let text = if tag == '+' { b[j] } else { a[i] };
            out.push(tag);
            out.push_str(text);
            out.push('\n');
        }
    }
    Some(out)
}

/// The HTTP targets: a page, a redirect to it, an outage and a maintenance page that
/// answers 200 but must count as down.
fn web_fixture() -> Fixture {
    Fixture::start(|req: &SeenRequest| match req.path.as_str() {
        "/ok" => Reply::status(200, "ok\n"),
        "/redirect" => Reply::status(302, "").with_header("Location", "/ok"),
        "/down" => Reply::status(503, "service unavailable\n"),
        "/maintenance" => Reply::status(200, "down for maintenance\n"),
        _ => Reply::status(404, "not found\n"),
    })
}

/// One Docker Hub repository: name, pulls, stars, last_updated.
type HubRepo = (&'static str, u64, u64, Option<&'static str>);

/// A Docker Hub API with two organizations. It pages by 2 whatever `page_size` asks
/// for, so that `acme` needs its `next` link followed.
fn hub_fixture() -> Fixture {
    let orgs: HashMap<&str, Vec<HubRepo>> = HashMap::from([
        (
            "acme",
            vec![
                ("api", 1_234_567, 42, Some("2025-06-01T12:00:00.500000Z")),
                ("web", 89, 3, Some("2024-12-24T08:30:00.000000Z")),
                ("worker", 0, 0, Some("2026-01-05T10:00:00Z")),
            ],
        ),
        ("labs", vec![("experiment", 7, 1, None)]),
    ]);
    Fixture::start(move |req: &SeenRequest| {
        let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
        let Some(repos) = path
            .strip_prefix("/v2/namespaces/")
            .and_then(|p| p.strip_suffix("/repositories"))
            .and_then(|org| orgs.get(org).map(|r| (org, r)))
        else {
            return images::json(404, r#"{"message":"object not found"}"#);
        };
        let (org, repos) = repos;
        let page: usize = images::kube::query_param(query, "page")
            .and_then(|p| p.parse().ok())
            .unwrap_or(1);
        let start = (page - 1) * 2;
        let results: Vec<_> = repos
            .iter()
            .skip(start)
            .take(2)
            .map(|(name, pulls, stars, updated)| {
                json!({"name": name, "namespace": org, "repository_type": "image",
                       "is_private": false, "pull_count": pulls, "star_count": stars,
                       "last_updated": updated})
            })
            .collect();
        let host = req.header("host").unwrap_or("127.0.0.1");
        let next = (start + 2 < repos.len()).then(|| {
            format!(
                "http://{host}/v2/namespaces/{org}/repositories?page={}&page_size=100",
                page + 1
            )
        });
        let body =
            json!({"count": repos.len(), "next": next, "previous": null, "results": results});
        // A fixed value: sonde exports the latest answer's, and the order of answers
        // varies between runs.
        images::json(200, &body.to_string()).with_header("X-RateLimit-Remaining", "150")
    })
}

/// An OCI registry answering manifest HEADs: `team/app:v1` (also by digest) and
/// `team/base:3.20` are present, `private/secret:v1` needs Basic credentials, the rest
/// is absent.
struct Registry {
    fixture: Fixture,
    app_digest: String,
}

impl Registry {
    fn start() -> Registry {
        let app_digest = images::sha256(b"manifest of team/app:v1");
        let manifests: HashMap<String, String> = HashMap::from([
            ("team/app:v1".into(), app_digest.clone()),
            (format!("team/app:{app_digest}"), app_digest.clone()),
            ("team/base:3.20".into(), images::sha256(b"team/base:3.20")),
            ("private/secret:v1".into(), images::sha256(b"private")),
        ]);
        let credentials = format!(
            "Basic {}",
            images::base64(format!("{PULL_USER}:{PULL_PASSWORD}").as_bytes())
        );
        let fixture = Fixture::start(move |req: &SeenRequest| {
            let errors = |status: u16, code: &str| {
                images::json(
                    status,
                    &json!({"errors": [{"code": code, "message": code.to_lowercase()}]})
                        .to_string(),
                )
                .with_header("Docker-Distribution-API-Version", "registry/2.0")
            };
            if req.path == "/v2/" {
                return images::json(200, "{}");
            }
            let Some((name, reference)) = req
                .path
                .strip_prefix("/v2/")
                .and_then(|p| p.split_once("/manifests/"))
            else {
                return errors(404, "NAME_UNKNOWN");
            };
            if name.starts_with("private/")
                && req.header("authorization") != Some(credentials.as_str())
            {
                return errors(401, "UNAUTHORIZED")
                    .with_header("WWW-Authenticate", "Basic realm=\"fixture\"");
            }
            match manifests.get(&format!("{name}:{reference}")) {
                Some(digest) => Reply::Http {
                    status: 200,
                    headers: vec![
                        (
                            "Content-Type".into(),
                            "application/vnd.oci.image.manifest.v1+json".into(),
                        ),
                        ("Docker-Content-Digest".into(), digest.clone()),
                    ],
                    body: vec![b'x'; 512],
                },
                None => errors(404, "MANIFEST_UNKNOWN"),
            }
        });
        Registry {
            fixture,
            app_digest,
        }
    }
}

/// One workload of the golden cluster: resource, namespace, name, its container and
/// image, its init containers, its pull secrets.
type WorkloadRow<'a> = (
    &'a str,
    &'a str,
    &'a str,
    (&'a str, &'a str),
    &'a [(&'a str, &'a str)],
    &'a [&'a str],
);

/// A cluster of a few workloads of every kind whose images live in the registry `r`:
/// present, absent, behind a pull secret, ignored and invalid. Deployments come in
/// pages of 2, so the list is continued (and restarted once on the fixture's 410).
fn cluster(r: &str, app_digest: &str) -> Cluster {
    let app = format!("{r}/team/app:v1");
    let migrate = format!("{r}/team/migrate:v1");
    let secret = format!("{r}/private/secret:v1");
    let base = format!("{r}/team/base:3.20");
    let pinned = format!("{r}/team/app@{app_digest}");
    let mut cluster = Cluster {
        page_size: 2,
        ..Cluster::default()
    };
    let workloads: [WorkloadRow; 6] = [
        (
            "deployments",
            "team-a",
            "web",
            ("web", &app),
            &[("migrate", &migrate)],
            &[],
        ),
        (
            "deployments",
            "team-a",
            "legacy",
            ("old", "registry.local/legacy/old:v1"),
            &[],
            &[],
        ),
        (
            "deployments",
            "team-b",
            "api",
            ("api", &secret),
            &[],
            &["regcred"],
        ),
        ("statefulsets", "team-a", "db", ("db", &base), &[], &[]),
        (
            "daemonsets",
            "team-b",
            "agent",
            ("agent", "Bad/Image:v1"),
            &[],
            &[],
        ),
        (
            "cronjobs",
            "team-b",
            "report",
            ("report", &pinned),
            &[],
            &[],
        ),
    ];
    for (n, (resource, ns, name, container, init, secrets)) in workloads.into_iter().enumerate() {
        let spec = pod_spec(&[container], init, secrets, None);
        let item = workload(resource, ns, name, spec, n + 1);
        cluster.items.entry(resource.into()).or_default().push(item);
    }
    let auth = images::base64(format!("{PULL_USER}:{PULL_PASSWORD}").as_bytes());
    cluster.secrets.insert(
        ("team-b".into(), "regcred".into()),
        dockerconfigjson_secret(
            "team-b",
            "regcred",
            &format!(r#"{{"auths":{{"{r}":{{"auth":"{auth}"}}}}}}"#),
        ),
    );
    for ns in ["team-a", "team-b"] {
        cluster.service_accounts.insert(
            (ns.into(), "default".into()),
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": "default", "namespace": ns}}),
        );
    }
    cluster
}
