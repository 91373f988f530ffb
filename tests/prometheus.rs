//! Prometheus in the loop: Debian's real `prometheus` scrapes sonde over HTTPS with basic
//! auth every second, with sonde running every kind against the fixtures and real servers
//! of the other tests, and evaluates the rules of `packaging/prometheus/`. Through
//! Prometheus' HTTP API the test asserts that the target is up, that every documented
//! metric name is there with its label names, that each alert fires in the scenario built
//! for it, and that every expression of the Grafana dashboard returns data.
//!
//! The rules are loaded with their `for:` durations removed (a test cannot wait minutes);
//! `promtool test rules` covers the durations themselves.

mod common;
mod images;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Daemon, Dir, Fixture, Reply, Sonde, TestCa, request};
use images::kube::{Cluster, pod_spec, start_api, workload};
use serde_json::{Value, json};

const PASSWORD: &str = "pr0m-s3cret";

/// Today plus `days`, as (year, month, day) in UTC.
fn date_in(days: i64) -> (i32, u8, u8) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (y, m, d) = common::civil_from_days(now.div_euclid(86_400) + days);
    (y as i32, m as u8, d as u8)
}

/// A sysfs tree with one CPU sensor above its critical threshold and a fan.
fn hot_sysfs(dir: &Dir) -> PathBuf {
    let root = dir.path().join("sys");
    let chip = root.join("devices/platform/coretemp.0/hwmon/hwmon0");
    std::fs::create_dir_all(&chip).unwrap();
    for (name, value) in [
        ("name", "coretemp"),
        ("temp1_input", "104000"),
        ("temp1_crit", "100000"),
        ("temp1_max", "90000"),
        ("temp1_label", "Package id 0"),
        ("fan1_input", "1200"),
        ("in0_input", "1100"),
    ] {
        std::fs::write(chip.join(name), format!("{value}\n")).unwrap();
    }
    std::os::unix::fs::symlink("../../..", chip.join("device")).unwrap();
    std::fs::create_dir_all(root.join("class/hwmon")).unwrap();
    std::os::unix::fs::symlink(
        "../../devices/platform/coretemp.0/hwmon/hwmon0",
        root.join("class/hwmon/hwmon0"),
    )
    .unwrap();
    root
}

/// A minimal Docker Hub: one organization of two repositories on one page.
fn docker_hub() -> Fixture {
    Fixture::start(|req| {
        if !req.path.starts_with("/v2/namespaces/acme/repositories") {
            return Reply::status(404, "{\"message\":\"not found\"}");
        }
        let body = json!({
            "count": 2, "next": null, "previous": null,
            "results": [
                {"name": "api", "namespace": "acme", "repository_type": "image", "status": 1,
                 "status_description": "active", "description": null, "is_private": false,
                 "star_count": 12, "pull_count": 152000, "last_updated": "2026-10-01T08:00:00.000000Z",
                 "date_registered": "2020-01-01T00:00:00Z", "affiliation": "", "media_types": [],
                 "content_types": ["image"], "categories": []},
                {"name": "worker", "namespace": "acme", "repository_type": "image", "status": 1,
                 "status_description": "active", "description": "jobs", "is_private": false,
                 "star_count": 3, "pull_count": 9100, "last_updated": null,
                 "date_registered": "2021-01-01T00:00:00Z", "affiliation": "", "media_types": [],
                 "content_types": ["image"], "categories": []}
            ]
        });
        Reply::Http {
            status: 200,
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("X-RateLimit-Limit".into(), "180".into()),
                ("X-RateLimit-Remaining".into(), "179".into()),
            ],
            body: body.to_string().into_bytes(),
        }
    })
}

struct Prometheus {
    _daemon: Daemon,
    addr: SocketAddr,
}

impl Prometheus {
    fn start(dir: &Dir, config: &str) -> Prometheus {
        let config_path = dir.write("prometheus.yml", config);
        let check = Command::new("promtool")
            .args(["check", "config"])
            .arg(&config_path)
            .output()
            .expect("promtool");
        assert!(
            check.status.success(),
            "{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let tsdb = dir.path().join("tsdb");
        let daemon = Daemon::start(
            "prometheus",
            |addr| {
                vec![
                    format!("--config.file={}", config_path.display()),
                    format!("--storage.tsdb.path={}", tsdb.display()),
                    format!("--web.listen-address={addr}"),
                ]
            },
            "/-/ready",
            Some(&dir.path().join("prometheus.log")),
        );
        Prometheus {
            addr: daemon.addr,
            _daemon: daemon,
        }
    }

    fn api(&self, path: &str) -> Value {
        let r = request(self.addr, "GET", path, &[], b"");
        let v = r.json();
        assert_eq!(v["status"], "success", "{path}: {v}");
        v["data"].clone()
    }

    fn query(&self, expr: &str) -> Vec<Value> {
        let data = self.api(&format!("/api/v1/query?query={}", common::percent(expr)));
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// Waits (at most `secs`) until `pred` holds.
    fn wait(&self, secs: u64, what: &str, pred: impl Fn(&Prometheus) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !pred(self) {
            assert!(Instant::now() < deadline, "{what} within {secs}s");
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn alerts(&self) -> BTreeMap<String, String> {
        let data = self.api("/api/v1/alerts");
        let mut out = BTreeMap::new();
        for alert in data["alerts"].as_array().cloned().unwrap_or_default() {
            let name = alert["labels"]["alertname"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let state = alert["state"].as_str().unwrap_or("").to_string();
            let entry = out.entry(name).or_insert_with(String::new);
            if entry != "firing" {
                *entry = state;
            }
        }
        out
    }
}

/// Copies the rule files of `packaging/prometheus/` with `for:` removed.
fn rule_files(dir: &Dir) -> Vec<PathBuf> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/prometheus");
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&source)
        .expect("packaging/prometheus")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "yml" || e == "yaml")
                && std::fs::read_to_string(p).is_ok_and(|t| t.contains("groups:"))
        })
        .collect();
    entries.sort();
    for path in entries {
        let text = std::fs::read_to_string(&path).unwrap();
        let stripped: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("for:"))
            .map(|l| format!("{l}\n"))
            .collect();
        out.push(dir.write(
            &format!("rules-{}", path.file_name().unwrap().to_string_lossy()),
            stripped,
        ));
    }
    assert!(!out.is_empty(), "no rule files in {}", source.display());
    out
}

/// Every `expr` in a Grafana dashboard, with its variables replaced by concrete values.
fn dashboard_exprs() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging/compose/grafana/dashboards/sonde.json");
    let text = std::fs::read_to_string(&path).expect("the Grafana dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut exprs = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    if k == "expr"
                        && let Some(s) = v.as_str()
                        && !s.trim().is_empty()
                    {
                        out.push(s.to_string());
                    }
                    walk(v, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    walk(&dashboard["panels"], &mut exprs);
    exprs
        .into_iter()
        .map(|e| {
            let mut e = e;
            for (var, value) in [
                ("$__rate_interval", "1m"),
                ("${__rate_interval}", "1m"),
                ("$__interval", "1m"),
                ("${__interval}", "1m"),
                ("$__range", "5m"),
            ] {
                e = e.replace(var, value);
            }
            // Template variables ($instance, ${check}, ...) match everything.
            let re = regex::Regex::new(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?").unwrap();
            re.replace_all(&e, ".*").into_owned()
        })
        .collect()
}

/// Every documented metric name with its label names (besides `instance` and `job`).
const DOCUMENTED_METRICS: &[(&str, &[&str])] = &[
    ("sonde_http_up", &["check", "url"]),
    ("sonde_http_duration_seconds", &["check", "url"]),
    ("sonde_http_status_code", &["check", "url"]),
    ("sonde_http_redirects", &["check", "url"]),
    ("sonde_http_body_size_bytes", &["check", "url"]),
    (
        "sonde_http_tls_cert_not_after_timestamp_seconds",
        &["check", "url"],
    ),
    ("sonde_http_probes_total", &["check", "url", "result"]),
    (
        "sonde_http_probe_duration_seconds_bucket",
        &["check", "url", "le"],
    ),
    ("sonde_http_probe_duration_seconds_sum", &["check", "url"]),
    ("sonde_http_probe_duration_seconds_count", &["check", "url"]),
    ("sample_external_url_up", &["url"]),
    ("sample_external_url_response_ms", &["url"]),
    (
        "sonde_dockerhub_pulls_total",
        &["check", "organization", "repository"],
    ),
    (
        "sonde_dockerhub_stars",
        &["check", "organization", "repository"],
    ),
    (
        "sonde_dockerhub_last_updated_timestamp_seconds",
        &["check", "organization", "repository"],
    ),
    ("sonde_dockerhub_repositories", &["check", "organization"]),
    ("sonde_dockerhub_rate_limit_remaining", &["check"]),
    ("docker_image_pulls", &["image", "organization"]),
    ("sonde_image_available", &["check", "image"]),
    ("sonde_image_check_status", &["check", "image", "status"]),
    (
        "sonde_kubernetes_image_available",
        &["check", "namespace", "kind", "name", "container", "image"],
    ),
    (
        "sonde_kubernetes_image_check_status",
        &[
            "check",
            "namespace",
            "kind",
            "name",
            "container",
            "image",
            "status",
        ],
    ),
    (
        "k8s_image_existence_exporter_deployment_image_exists",
        &[
            "namespace",
            "owner_name",
            "container",
            "image",
            "deployment",
        ],
    ),
    ("k8s_image_existence_exporter_completed_rechecks_total", &[]),
    ("k8s_image_existence_exporter_generic_errors_total", &[]),
    ("sonde_hwmon_temp_celsius", &["check", "chip", "sensor"]),
    (
        "sonde_hwmon_temp_crit_celsius",
        &["check", "chip", "sensor"],
    ),
    ("sonde_hwmon_chip_names", &["check", "chip", "chip_name"]),
    (
        "sonde_hwmon_sensor_label",
        &["check", "chip", "sensor", "label"],
    ),
    ("sonde_check_success", &["check", "kind"]),
    ("sonde_check_duration_seconds", &["check", "kind"]),
    ("sonde_check_last_run_timestamp_seconds", &["check", "kind"]),
    (
        "sonde_check_last_success_timestamp_seconds",
        &["check", "kind"],
    ),
    ("sonde_check_interval_seconds", &["check", "kind"]),
    ("sonde_check_runs_total", &["check", "kind"]),
    ("sonde_check_failures_total", &["check", "kind"]),
    ("sonde_build_info", &["version", "revision"]),
    ("sonde_config_last_reload_successful", &[]),
    ("sonde_config_last_reload_success_timestamp_seconds", &[]),
    ("process_cpu_seconds_total", &[]),
    ("process_resident_memory_bytes", &[]),
    ("process_open_fds", &[]),
    ("process_start_time_seconds", &[]),
];

/// Servers for sonde's checks: a site that can start failing, a site whose certificate
/// expires in 3 days, the real registry with one image, a cluster, Docker Hub and a hot
/// sysfs tree.
struct Targets {
    /// Whether `site` answers 200 (else 503).
    healthy: Arc<AtomicBool>,
    site: Fixture,
    expiring: Fixture,
    registry: images::Registry,
    api: images::kube::ApiServer,
    hub: Fixture,
    sysfs: PathBuf,
}

impl Targets {
    /// Starts them; `dir` receives the files sonde's config names.
    fn start(dir: &Dir, ca: &TestCa) -> Targets {
        let soon = ca.leaf(date_in(-30), date_in(3));
        let expiring = Fixture::start_tls(&soon, |_| Reply::status(200, "ok"));
        let healthy = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&healthy);
        let site = Fixture::start(move |_| {
            if flag.load(Ordering::Relaxed) {
                Reply::status(200, "all good")
            } else {
                Reply::status(503, "down")
            }
        });
        let storage = dir.path().join("registry-data");
        std::fs::create_dir_all(&storage).unwrap();
        let registry = images::Registry::start(dir.path(), "registry", &storage, "", "");
        registry.push_image("team/app", "v1", false, "e2e");
        let api = start_cluster(dir, &registry.host());
        Targets {
            healthy,
            site,
            expiring,
            registry,
            api,
            hub: docker_hub(),
            sysfs: hot_sysfs(dir),
        }
    }

    /// One check of each kind; `cluster` also has the legacy series of the old exporter.
    fn sonde_config(&self) -> String {
        format!(
            r#"global:
  interval: 1s
  timeout: 1s
checks:
  - name: web
    kind: http
    legacy_metrics: true
    urls: ["{site}"]
  - name: certs
    kind: http
    tls: {{ca_file: ca.pem}}
    urls: ["{expiring}"]
  - name: hub
    kind: dockerhub
    legacy_metrics: true
    api_url: "http://{hub}"
    organizations: [acme]
  - name: images
    kind: registry
    plain_http_registries: ["{host}"]
    images: ["{host}/team/app:v1", "{host}/team/app:missing"]
  - name: cluster
    kind: kubernetes_images
    legacy_metrics: true
    api_server: "https://{kube}"
    bearer_token_file: kube-token
    ca_file: kube-ca.pem
    plain_http_registries: ["{host}"]
  - name: sensors
    kind: hwmon
    sysfs_path: "{sysfs}"
"#,
            site = self.site.url("/"),
            expiring = self.expiring.https_url("/"),
            hub = self.hub.addr,
            host = self.registry.host(),
            kube = self.api.server.addr,
            sysfs = self.sysfs.display(),
        )
    }
}

/// A cluster whose deployment uses the present image and an absent one.
fn start_cluster(dir: &Dir, host: &str) -> images::kube::ApiServer {
    let kca = images::TestCa::new();
    let mut cluster = Cluster {
        page_size: 10,
        ..Cluster::default()
    };
    cluster.items.insert(
        "deployments".into(),
        vec![workload(
            "deployments",
            "shop",
            "frontend",
            pod_spec(
                &[
                    ("app", &format!("{host}/team/app:v1")),
                    ("cache", &format!("{host}/team/cache:v9")),
                ],
                &[],
                &[],
                None,
            ),
            1,
        )],
    );
    let api = start_api(&kca, cluster, "k8s-token");
    dir.write("kube-ca.pem", &kca.ca_pem);
    dir.write("kube-token", "k8s-token");
    api
}

/// sonde serving HTTPS with basic auth and checking `targets`, and Prometheus scraping it
/// every second with the packaged rules loaded.
struct Scene {
    sonde: Sonde,
    targets: Targets,
    prom: Prometheus,
    rules: Vec<PathBuf>,
    _prom_dir: Dir,
}

impl Scene {
    fn start() -> Scene {
        let dir = Dir::new();
        let ca = TestCa::new();
        let serving = ca.leaf((2020, 1, 1), (2045, 1, 1));
        dir.write("ca.pem", &ca.pem);
        dir.write("tls.crt", &serving.cert_pem);
        dir.write("tls.key", &serving.key_pem);
        let targets = Targets::start(&dir, &ca);
        let hash = bcrypt::hash(PASSWORD, 4).unwrap();
        let web = dir.write(
            "web.yml",
            format!("tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\nbasic_auth_users:\n  prometheus: \"{hash}\"\n"),
        );
        dir.write("sonde.yml", targets.sonde_config());
        let web_arg = web.display().to_string();
        let sonde = Sonde::start_in(dir, &["--web.config.file", &web_arg]);
        let prom_dir = Dir::new();
        prom_dir.write("ca.pem", &ca.pem);
        let rules = rule_files(&prom_dir);
        let rule_list: String = rules
            .iter()
            .map(|p| format!("  - {}\n", p.display()))
            .collect();
        let prom_config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nrule_files:\n{rule_list}scrape_configs:\n  - job_name: sonde\n    scheme: https\n    tls_config:\n      ca_file: {ca}\n      server_name: localhost\n    basic_auth:\n      username: prometheus\n      password: {PASSWORD}\n    static_configs:\n      - targets: [\"{target}\"]\n",
            ca = prom_dir.path().join("ca.pem").display(),
            target = sonde.addr,
        );
        let prom = Prometheus::start(&prom_dir, &prom_config);
        Scene {
            sonde,
            targets,
            prom,
            rules,
            _prom_dir: prom_dir,
        }
    }
}

/// One Prometheus and one sonde serve every case, in this order: starting them, the
/// registry and the fixtures per case would cost more than the cases, and the dashboard's
/// rates need the failures that the alert case starts.
#[test]
fn prometheus_scrapes_sonde_and_every_rule_and_panel_works() {
    let scene = Scene::start();
    a_real_scraper_gets_the_target_up_over_https_with_basic_auth(&scene.prom);
    every_spec_metric_is_scraped_with_its_label_names(&scene);
    each_alert_fires_in_the_scenario_built_for_it(&scene);
    every_dashboard_expression_returns_data(&scene.prom);
}

/// Case: Prometheus scrapes sonde over HTTPS with basic auth, and every check has run.
fn a_real_scraper_gets_the_target_up_over_https_with_basic_auth(prom: &Prometheus) {
    prom.wait(30, "the sonde target is up", |p| {
        p.query("up{job=\"sonde\"} == 1").len() == 1
    });
    prom.wait(30, "every check has run", |p| {
        p.query("count(sonde_check_runs_total > 0)")
            .first()
            .and_then(|r| r["value"][1].as_str().map(str::to_string))
            == Some("6".into())
    });
}

/// Case: every documented metric name is in Prometheus with exactly its label names.
fn every_spec_metric_is_scraped_with_its_label_names(scene: &Scene) {
    for (name, labels) in DOCUMENTED_METRICS {
        let series = scene
            .prom
            .api(&format!("/api/v1/series?match[]={}", common::percent(name)));
        let series = series.as_array().cloned().unwrap_or_default();
        assert!(
            !series.is_empty(),
            "{name} is missing; sonde says:\n{}",
            sonde_text(&scene.sonde)
        );
        let mut want: BTreeSet<&str> = labels.iter().copied().collect();
        want.extend(["__name__", "instance", "job"]);
        for s in &series {
            let got: BTreeSet<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(got, want, "{name}: {s}");
        }
    }
}

/// Case: a failing URL, an expiring certificate, an absent image and a hot sensor each
/// fire their alert (and the failing checks SondeCheckFailing); SondeDown does not fire
/// while sonde is up.
fn each_alert_fires_in_the_scenario_built_for_it(scene: &Scene) {
    scene.targets.healthy.store(false, Ordering::Relaxed);
    let alert_names = rule_alert_names(&scene.rules);
    let must_fire = [
        "SondeURLDown",
        "SondeTLSCertificateExpiringSoon",
        "SondeImageAbsent",
        "SondeSensorOverCritical",
        "SondeCheckFailing",
    ];
    for name in must_fire.iter().chain(&["SondeDown"]) {
        assert!(
            alert_names.iter().any(|a| a == name),
            "{name} is not among the rules: {alert_names:?}"
        );
    }
    scene.prom.wait(60, "the scenario alerts fire", |p| {
        let alerts = p.alerts();
        must_fire
            .iter()
            .all(|a| alerts.get(*a).is_some_and(|s| s == "firing"))
    });
    let alerts = scene.prom.alerts();
    assert!(
        !alerts.contains_key("SondeDown"),
        "SondeDown fired while sonde is up: {alerts:?}"
    );
}

/// Case: every expression of the Grafana dashboard returns data. (Rates need two samples
/// of a counter that only appears with the first failure, hence the wait.)
fn every_dashboard_expression_returns_data(prom: &Prometheus) {
    for expr in dashboard_exprs() {
        prom.wait(
            30,
            &format!("dashboard expression returns data: {expr}"),
            |p| !p.query(&expr).is_empty(),
        );
    }
}

/// sonde's log so far, for failure messages (its exposition needs HTTPS and basic auth).
fn sonde_text(sonde: &Sonde) -> String {
    sonde.log().join("\n")
}

/// Alert names defined in the rule files.
fn rule_alert_names(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .filter_map(|l| {
                    l.trim()
                        .strip_prefix("- alert:")
                        .or_else(|| l.trim().strip_prefix("alert:"))
                })
                .map(|n| n.trim().trim_matches('"').to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Prometheus scrapes sonde's `/probe` through `packaging/prometheus/probe.yml` as it is
/// shipped, with sonde running `packaging/sonde.yml` (whose `http_2xx` module the
/// example names): only the targets, sonde's address and the scrape interval are the
/// test's. Each target gets its `probe_success` with the target as `instance`.
#[test]
fn prometheus_probes_through_the_shipped_relabelling_example() {
    let web = Fixture::start(|req| match req.path.as_str() {
        "/ok" => Reply::status(200, "ok"),
        _ => Reply::status(503, "down"),
    });
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = Dir::new();
    dir.write(
        "sonde.yml",
        std::fs::read_to_string(root.join("packaging/sonde.yml")).unwrap(),
    );
    let sonde = Sonde::start_in(dir, &[]);
    let (up, down) = (web.url("/ok"), web.url("/down"));
    let shipped = std::fs::read_to_string(root.join("packaging/prometheus/probe.yml")).unwrap();
    let mut config: Value = serde_saphyr::from_str(&shipped).unwrap();
    config["global"] = json!({"scrape_interval": "1s", "scrape_timeout": "1s"});
    let mut replaced = 0;
    for job in config["scrape_configs"].as_array_mut().unwrap() {
        let targets = match job["job_name"].as_str() {
            Some("sonde") => json!([sonde.addr.to_string()]),
            Some("blackbox") => json!([up, down]),
            other => panic!("a job the test does not know: {other:?}"),
        };
        for static_config in job["static_configs"].as_array_mut().unwrap() {
            static_config["targets"] = targets.clone();
        }
        for rule in job["relabel_configs"].as_array_mut().into_iter().flatten() {
            if rule["replacement"] == "sonde:10060" {
                rule["replacement"] = json!(sonde.addr.to_string());
                replaced += 1;
            }
        }
    }
    assert_eq!(
        replaced, 1,
        "the example's __address__ rule names sonde:10060"
    );
    // YAML reads JSON, and so does Prometheus.
    let prom_dir = Dir::new();
    let prom = Prometheus::start(&prom_dir, &config.to_string());
    let success = |p: &Prometheus| -> BTreeMap<String, String> {
        p.query("probe_success{job=\"blackbox\"}")
            .iter()
            .map(|r| {
                (
                    r["metric"]["instance"].as_str().unwrap_or("").to_string(),
                    r["value"][1].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    prom.wait(30, "probe_success of both targets", |p| {
        success(p).len() == 2
    });
    assert_eq!(
        success(&prom),
        BTreeMap::from([
            (up.clone(), "1".to_string()),
            (down.clone(), "0".to_string())
        ])
    );
    let reason = prom.query(&format!(
        "probe_failure_reason{{job=\"blackbox\",instance=\"{down}\"}}"
    ));
    assert_eq!(reason[0]["metric"]["reason"], "status_code", "{reason:?}");
    prom.wait(30, "sonde's own counters of /probe", |p| {
        p.query(
            "sonde_probe_requests_total{job=\"sonde\",module=\"http_2xx\",result=\"success\"} > 0",
        )
        .len()
            == 1
    });
}
