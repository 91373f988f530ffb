//! `kind: kubernetes_images` against a fixture Kubernetes API server (HTTPS with a test
//! CA, bearer token, paged lists with `continue` and a 410, objects shaped like
//! `kubectl get -o json`) and Debian's real `docker-registry` behind TLS and htpasswd.

mod common;
mod images;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use common::{Dir, Fixture, Reply, SeenRequest, Sonde};
use images::TestCa;
use images::kube::*;
use serde_json::{Value, json};

fn series(check: &str, ns: &str, kind: &str, name: &str, container: &str, image: &str) -> String {
    format!(
        "check=\"{check}\",namespace=\"{ns}\",kind=\"{kind}\",name=\"{name}\",container=\"{container}\",image=\"{image}\""
    )
}

fn available(labels: &str, v: u8) -> String {
    format!("sonde_kubernetes_image_available{{{labels}}} {v}")
}

fn status(labels: &str, s: &str) -> String {
    format!("sonde_kubernetes_image_check_status{{{labels},status=\"{s}\"}} 1")
}

fn assert_lines(text: &str, lines: &[String]) {
    for line in lines {
        assert!(
            text.lines().any(|l| l == line),
            "missing line {line:?} in:\n{text}"
        );
    }
}

#[test]
fn workloads_of_a_cluster_against_a_real_registry() {
    let dir = Dir::new();
    let ca = TestCa::new();
    dir.write("ca.pem", &ca.ca_pem);
    dir.write("token", "api-token-1\n");
    let registry = images::secure_registry(dir.path(), &ca, "puller", "pull-pw", |plain| {
        plain.push_image("team/app", "v1", false, "app");
        plain.push_image("team/oci", "v1", true, "oci");
    });
    let h = registry.host();
    let app = format!("{h}/team/app:v1");
    let oci = format!("{h}/team/oci:v1");
    let migrate = format!("{h}/team/migrate:v1");
    let auth = images::base64(b"puller:pull-pw");
    let mut cluster = Cluster {
        page_size: 2,
        ..Cluster::default()
    };
    let deployments = vec![
        workload(
            "deployments",
            "team-a",
            "web",
            pod_spec(
                &[("web", &app)],
                &[("migrate", &migrate)],
                &["regcred"],
                None,
            ),
            1,
        ),
        workload(
            "deployments",
            "team-a",
            "legacy",
            pod_spec(
                &[
                    ("old", "registry.local/legacy/old:v1"),
                    ("sidecar", "nginx:1.11"),
                ],
                &[],
                &[],
                None,
            ),
            2,
        ),
        workload(
            "deployments",
            "team-a",
            "broken",
            pod_spec(&[("app", "Bad/Image:v1")], &[], &[], None),
            3,
        ),
        workload(
            "deployments",
            "locked",
            "secretive",
            pod_spec(&[("c", &app)], &[], &["regcred"], None),
            4,
        ),
        workload(
            "deployments",
            "team-b",
            "api",
            pod_spec(&[("api", &app)], &[], &[], Some("builder")),
            5,
        ),
    ];
    cluster.items.insert("deployments".into(), deployments);
    cluster.items.insert(
        "statefulsets".into(),
        vec![workload(
            "statefulsets",
            "team-a",
            "db",
            pod_spec(&[("db", &app)], &[], &[], None),
            6,
        )],
    );
    cluster.items.insert(
        "daemonsets".into(),
        vec![workload(
            "daemonsets",
            "team-b",
            "agent",
            pod_spec(&[("agent", &oci)], &[], &["regcred-b"], None),
            7,
        )],
    );
    cluster.items.insert(
        "cronjobs".into(),
        vec![workload(
            "cronjobs",
            "team-b",
            "report",
            pod_spec(
                &[("report", &app)],
                &[("setup", &oci)],
                &[],
                Some("builder"),
            ),
            8,
        )],
    );
    cluster.secrets.insert(
        ("team-a".into(), "regcred".into()),
        dockerconfigjson_secret(
            "team-a",
            "regcred",
            &format!(r#"{{"auths":{{"{h}":{{"auth":"{auth}"}}}}}}"#),
        ),
    );
    cluster.secrets.insert(
        ("team-b".into(), "regcred-b".into()),
        dockerconfigjson_secret(
            "team-b",
            "regcred-b",
            &format!(
                r#"{{"auths":{{"https://{h}/v2/":{{"username":"puller","password":"pull-pw"}}}}}}"#
            ),
        ),
    );
    cluster.secrets.insert(
        ("team-b".into(), "legacy-cfg".into()),
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockercfg",
               "metadata": {"name": "legacy-cfg", "namespace": "team-b"},
               "data": {".dockercfg": images::base64(format!(r#"{{"https://{h}":{{"auth":"{auth}","email":"ci@example.com"}}}}"#).as_bytes())}}),
    );
    cluster.service_accounts.insert(
        ("team-a".into(), "default".into()),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": "team-a"},
               "imagePullSecrets": [{"name": "regcred"}]}),
    );
    cluster.service_accounts.insert(
        ("team-b".into(), "builder".into()),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "builder", "namespace": "team-b"},
               "imagePullSecrets": [{"name": "legacy-cfg"}], "secrets": [{"name": "builder-token"}]}),
    );
    cluster.forbidden_secret_namespaces.insert("locked".into());
    cluster.forbidden_list_namespaces.insert("team-c".into());
    let api = start_api(&ca, cluster, "api-token-1");
    let server = format!("https://{}", api.server.addr);
    let config = format!(
        "checks:
  - name: k8s
    kind: kubernetes_images
    api_server: {server}
    bearer_token_file: token
    ca_file: ca.pem
    tls: {{ca_file: ca.pem}}
    ignored_images: [\"registry.local/legacy/*\"]
    legacy_metrics: true
  - name: team-b-only
    kind: kubernetes_images
    api_server: {server}/
    bearer_token_file: token
    ca_file: ca.pem
    tls: {{ca_file: ca.pem}}
    namespaces: [team-b]
    workload_kinds: [deployment, cronjob]
    include_init_containers: false
  - name: fallback
    kind: kubernetes_images
    api_server: {server}
    bearer_token_file: token
    ca_file: ca.pem
    tls: {{ca_file: ca.pem}}
    namespaces: [team-a, locked]
    workload_kinds: [deployment]
    use_pull_secrets: false
    docker_config_file: docker.json
    ignored_images: [\"registry.local/*\"]
  - name: no-rbac
    kind: kubernetes_images
    api_server: {server}
    bearer_token_file: token
    ca_file: ca.pem
    namespaces: [team-c]
    workload_kinds: [statefulset]
"
    );
    dir.write(
        "docker.json",
        images::docker_config(&h, "puller", "pull-pw"),
    );
    let path = dir.write("sonde.yml", config);
    let out = common::run(&[
        "--once",
        "--log.level",
        "debug",
        "--ignored-images",
        "nginx:1.11,busybox",
        "--config.file",
        path.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    let web = series("k8s", "team-a", "deployment", "web", "web", &app);
    let mig = series("k8s", "team-a", "deployment", "web", "migrate", &migrate);
    let broken = series(
        "k8s",
        "team-a",
        "deployment",
        "broken",
        "app",
        "Bad/Image:v1",
    );
    let locked = series("k8s", "locked", "deployment", "secretive", "c", &app);
    let api_sa = series("k8s", "team-b", "deployment", "api", "api", &app);
    let db = series("k8s", "team-a", "statefulset", "db", "db", &app);
    let agent = series("k8s", "team-b", "daemonset", "agent", "agent", &oci);
    let report = series("k8s", "team-b", "cronjob", "report", "report", &app);
    let setup = series("k8s", "team-b", "cronjob", "report", "setup", &oci);
    assert_lines(
        &text,
        &[
            available(&web, 1),
            status(&web, "available"),
            available(&mig, 0),
            status(&mig, "absent"),
            status(&broken, "invalid_reference"),
            status(&locked, "unauthorized"),
            available(&api_sa, 1),
            available(&db, 1),
            available(&agent, 1),
            available(&report, 1),
            available(&setup, 1),
            "sonde_kubernetes_workloads{check=\"k8s\",kind=\"deployment\"} 5".into(),
            "sonde_kubernetes_workloads{check=\"k8s\",kind=\"statefulset\"} 1".into(),
            "sonde_kubernetes_workloads{check=\"k8s\",kind=\"daemonset\"} 1".into(),
            "sonde_kubernetes_workloads{check=\"k8s\",kind=\"cronjob\"} 1".into(),
            // The legacy output, exactly.
            format!(
                "k8s_image_existence_exporter_deployment_image_exists{{namespace=\"team-a\",owner_name=\"web\",container=\"web\",image=\"{app}\",deployment=\"web\"}} 1"
            ),
            format!(
                "k8s_image_existence_exporter_deployment_image_exists{{namespace=\"team-a\",owner_name=\"web\",container=\"migrate\",image=\"{migrate}\",deployment=\"web\"}} 0"
            ),
            format!(
                "k8s_image_existence_exporter_statefulset_image_exists{{namespace=\"team-a\",owner_name=\"db\",container=\"db\",image=\"{app}\",statefulset=\"db\"}} 1"
            ),
            format!(
                "k8s_image_existence_exporter_daemonset_image_exists{{namespace=\"team-b\",owner_name=\"agent\",container=\"agent\",image=\"{oci}\",daemonset=\"agent\"}} 1"
            ),
            format!(
                "k8s_image_existence_exporter_cronjob_image_exists{{namespace=\"team-b\",owner_name=\"report\",container=\"setup\",image=\"{oci}\",cronjob=\"report\"}} 1"
            ),
            "k8s_image_existence_exporter_completed_rechecks_total 1".into(),
            // The unauthorized image and the invalid reference.
            "k8s_image_existence_exporter_generic_errors_total 2".into(),
        ],
    );
    // Undetermined images have no availability sample and no legacy sample.
    assert!(!text.contains(&format!("sonde_kubernetes_image_available{{{locked}}}")));
    assert!(!text.contains(&format!("sonde_kubernetes_image_available{{{broken}}}")));
    assert!(!text.contains("owner_name=\"secretive\""));
    // Ignored images (config glob, flag exact match) are not reported at all.
    assert!(
        !text.contains("legacy/old") && !text.contains("nginx:1.11"),
        "{text}"
    );
    // The namespace filter, the kinds filter and no init containers.
    let b = |kind: &str, name: &str, container: &str, image: &str| {
        series("team-b-only", "team-b", kind, name, container, image)
    };
    assert_lines(
        &text,
        &[
            available(&b("deployment", "api", "api", &app), 1),
            available(&b("cronjob", "report", "report", &app), 1),
        ],
    );
    assert!(!text.contains("check=\"team-b-only\",namespace=\"team-a\""));
    assert!(!text.contains("check=\"team-b-only\",namespace=\"team-b\",kind=\"daemonset\""));
    assert!(!text.contains("check=\"team-b-only\",namespace=\"team-b\",kind=\"cronjob\",name=\"report\",container=\"setup\""));
    assert!(
        text.contains("sonde_check_success{check=\"team-b-only\",kind=\"kubernetes_images\"} 1"),
        "{text}"
    );
    assert!(text.contains("sonde_check_success{check=\"k8s\",kind=\"kubernetes_images\"} 0"));

    // The 403 names the missing RBAC rule.
    assert!(
        err.lines().any(|l| l.contains("level=warn")
            && l.contains("namespace locked")
            && l.contains("rule=\"{apiGroups: [''], resources: [secrets], verbs: [get]}\"")),
        "{err}"
    );
    assert!(text.contains("sonde_check_success{check=\"no-rbac\",kind=\"kubernetes_images\"} 0"));
    // Without pull secrets, the docker config's credentials serve every workload, and
    // no Secret is asked for (so the locked namespace logs no 403 for this check).
    let f = |ns: &str, name: &str, container: &str| {
        series("fallback", ns, "deployment", name, container, &app)
    };
    assert_lines(
        &text,
        &[
            available(&f("team-a", "web", "web"), 1),
            available(&f("locked", "secretive", "c"), 1),
        ],
    );
    assert!(
        !err.lines()
            .any(|l| l.contains("check=fallback") && l.contains("403")),
        "{err}"
    );
    assert!(
        err.lines().any(|l| l.contains("level=error")
            && l.contains("check=no-rbac")
            && l.contains("may not list statefulsets in namespace team-c")
            && l.contains(
                "rule=\"{apiGroups: [apps], resources: [statefulsets], verbs: [list]}\""
            )),
        "{err}"
    );
    // Requests to the API server: paged (and restarted after the 410), secrets one by
    // one with get, never a list of secrets, namespaced paths for the filtered check.
    assert!(api.gone_sent.load(Ordering::SeqCst));
    let seen = api.server.seen();
    let paths: Vec<&str> = seen.iter().map(|r| r.path.as_str()).collect();
    assert!(
        paths
            .iter()
            .all(|p| !p.contains("/secrets?") && !p.ends_with("/secrets")),
        "{paths:?}"
    );
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("/apis/apps/v1/deployments?limit=500&continue=")),
        "{paths:?}"
    );
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("/apis/apps/v1/namespaces/team-b/deployments?limit=500")),
        "{paths:?}"
    );
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("/apis/batch/v1/namespaces/team-b/cronjobs?limit=500")),
        "{paths:?}"
    );
    assert!(
        !paths
            .iter()
            .any(|p| p.starts_with("/apis/apps/v1/namespaces/team-b/daemonsets")),
        "{paths:?}"
    );
    let secret_gets: Vec<&str> = paths
        .iter()
        .copied()
        .filter(|p| p.contains("/secrets/"))
        .collect();
    let distinct: HashSet<&str> = secret_gets.iter().copied().collect();
    // Each of the two checks fetches each secret it needs once.
    assert!(secret_gets.len() <= 2 * distinct.len(), "{secret_gets:?}");
    assert!(
        distinct.contains("/api/v1/namespaces/team-a/secrets/regcred"),
        "{distinct:?}"
    );
    assert!(
        distinct.contains("/api/v1/namespaces/team-b/secrets/legacy-cfg"),
        "{distinct:?}"
    );
    assert!(
        distinct.contains("/api/v1/namespaces/team-b/secrets/regcred-b"),
        "{distinct:?}"
    );
    // The registry saw HEADs only, and no credential reached the log.
    let log = registry.log_text();
    assert!(
        !log.contains("http.request.method=GET"),
        "a manifest GET happened"
    );
    assert!(!err.contains("pull-pw") && !err.contains("api-token-1"));
    let without_legacy: String = text
        .lines()
        .filter(|l| !l.contains("k8s_image_existence_exporter"))
        .map(|l| format!("{l}\n"))
        .collect();
    let findings = common::promtool_check_metrics(&without_legacy);
    assert!(findings.trim().is_empty(), "{findings}");
}

#[test]
fn two_thousand_workloads_sharing_300_images_make_300_registry_checks() {
    let heads = Arc::new(AtomicUsize::new(0));
    let registry = {
        let heads = Arc::clone(&heads);
        Fixture::start(move |req: &SeenRequest| {
            if req.method == "HEAD" {
                heads.fetch_add(1, Ordering::SeqCst);
            }
            Reply::status(200, "").with_header(
                "Docker-Content-Digest",
                &format!("sha256:{}", "b".repeat(64)),
            )
        })
    };
    let h = registry.addr.to_string();
    let ca = TestCa::new();
    let mut cluster = Cluster {
        page_size: 500,
        ..Cluster::default()
    };
    let items: Vec<Value> = (0..2000)
        .map(|i| {
            let image = format!("{h}/team/svc{}:v1", i % 300);
            let sidecar = format!("{h}/team/svc{}:v1", (i * 7) % 300);
            workload(
                "deployments",
                &format!("ns{}", i % 10),
                &format!("app{i}"),
                pod_spec(&[("app", &image), ("proxy", &sidecar)], &[], &[], None),
                i,
            )
        })
        .collect();
    cluster.items.insert("deployments".into(), items);
    let api = start_api(&ca, cluster, "t");
    let dir = Dir::new();
    dir.write("ca.pem", &ca.ca_pem);
    dir.write("token", "t");
    let path = dir.write(
        "sonde.yml",
        format!(
            "checks:\n  - name: big\n    kind: kubernetes_images\n    timeout: 60s\n    api_server: https://{}\n    bearer_token_file: token\n    ca_file: ca.pem\n    plain_http_registries: [\"{h}\"]\n    max_concurrency_per_registry: 8\n",
            api.server.addr
        ),
    );
    let started = Instant::now();
    let out = common::run(&["--once", "--config.file", path.to_str().unwrap()]);
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 300 distinct images, one HEAD each.
    assert_eq!(heads.load(Ordering::SeqCst), 300);
    let samples = text
        .lines()
        .filter(|l| l.starts_with("sonde_kubernetes_image_available{"))
        .count();
    assert_eq!(samples, 4000);
    assert!(text.contains("sonde_kubernetes_workloads{check=\"big\",kind=\"deployment\"} 2000"));
    let pages = api
        .server
        .seen()
        .iter()
        .filter(|r| r.path.starts_with("/apis/apps/v1/deployments"))
        .count();
    // Four pages of 500; the first continue token "expired" (410), so the first page
    // was read again.
    assert_eq!(pages, 6, "2000 items in pages of 500, one restart");
    eprintln!(
        "2000 workloads, 4000 containers, 300 images: {} HEAD requests, {pages} list pages, {took:?}",
        heads.load(Ordering::SeqCst)
    );
}

#[test]
fn in_cluster_defaults_token_rotation_and_a_failing_list() {
    let registry = Fixture::start(|_req: &SeenRequest| Reply::status(200, ""));
    let h = registry.addr.to_string();
    let ca = TestCa::new();
    let app = format!("{h}/team/app:v1");
    let mut cluster = Cluster {
        page_size: 500,
        ..Cluster::default()
    };
    cluster.items.insert(
        "deployments".into(),
        vec![workload(
            "deployments",
            "prod",
            "web",
            pod_spec(&[("web", &app)], &[], &[], None),
            1,
        )],
    );
    cluster.items.insert(
        "daemonsets".into(),
        vec![workload(
            "daemonsets",
            "prod",
            "agent",
            pod_spec(&[("agent", &app)], &[], &[], None),
            2,
        )],
    );
    let api = start_api(&ca, cluster, "token-1");
    let dir = Dir::new();
    dir.write("ca.pem", &ca.ca_pem);
    let token_path = dir.write("token", "token-1\n");
    dir.write(
        "sonde.yml",
        format!(
            "checks:\n  - name: incluster\n    kind: kubernetes_images\n    interval: 2s\n    bearer_token_file: token\n    ca_file: ca.pem\n    plain_http_registries: [\"{h}\"]\n    legacy_metrics: true\n"
        ),
    );
    let config = dir.path().join("sonde.yml");
    let mut command = std::process::Command::new(common::sonde_bin());
    command
        .args([
            "--web.listen-address",
            "127.0.0.1:0",
            "--log.level",
            "debug",
            "--config.file",
        ])
        .arg(&config)
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env(
            "KUBERNETES_SERVICE_PORT",
            api.server.addr.port().to_string(),
        );
    let sonde = Sonde::spawn(&mut command, dir);
    sonde.wait_ready();
    let web = series("incluster", "prod", "deployment", "web", "web", &app);
    let success = "sonde_check_success{check=\"incluster\",kind=\"kubernetes_images\"}";
    let rechecks = "k8s_image_existence_exporter_completed_rechecks_total";
    let m = sonde.wait_metrics(20, |m| m.value(success) == Some(1.0));
    assert_lines(&m.0, &[available(&web, 1)]);
    let before = m.value(rechecks).unwrap();

    // The kubelet rotates the token: the API server accepts only the new one.
    *api.token.lock().unwrap() = "token-2".to_string();
    std::fs::write(&token_path, "token-2\n").unwrap();
    let m = sonde.wait_metrics(20, |m| m.value(rechecks).unwrap_or(0.0) >= before + 2.0);
    assert_eq!(m.value(success), Some(1.0), "{}", m.0);
    let after_rotation = api.server.seen();
    let last = after_rotation.last().unwrap();
    assert_eq!(last.header("authorization"), Some("Bearer token-2"));

    // A list that fails: the run fails, the workloads it had keep their series.
    api.failing.store(true, Ordering::SeqCst);
    let m = sonde.wait_metrics(20, |m| m.value(success) == Some(0.0));
    assert_lines(
        &m.0,
        &[
            available(&web, 1),
            available(
                &series("incluster", "prod", "daemonset", "agent", "agent", &app),
                1,
            ),
            "sonde_kubernetes_workloads{check=\"incluster\",kind=\"deployment\"} 1".into(),
        ],
    );
    let log = sonde.log();
    assert!(
        log.iter()
            .any(|l| l.contains("cannot list deployments") && l.contains("etcdserver")),
        "{log:?}"
    );
    assert!(log.iter().all(|l| !l.contains("token-2")));
    api.failing.store(false, Ordering::SeqCst);
    sonde.wait_metrics(20, |m| m.value(success) == Some(1.0));
}

#[test]
fn kubernetes_config_problems_are_reported() {
    let dir = Dir::new();
    dir.write("token", "t");
    let path = dir.write(
        "sonde.yml",
        "checks:\n  - name: k\n    kind: kubernetes_images\n    api_server: ftp://x\n    bearer_token_file: token\n    namespaces: [Team_A]\n    workload_kinds: [deployment, pods, deployment]\n    ignored_images: [\"\"]\n  - name: k2\n    kind: kubernetes_images\n    api_server: https://10.0.0.1:6443\n    bearer_token_file: missing-token\n",
    );
    let out = common::run(&["--config.check", "--config.file", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        ":4:17: check \"k\": api_server \"ftp://x\" must be an http:// or https:// URL",
        ":6:18: check \"k\": namespaces: \"Team_A\" is not a namespace name",
        ":7:34: check \"k\": workload_kinds: unknown kind \"pods\"",
        ":7:40: check \"k\": workload_kinds: \"deployment\" is listed twice",
        ":8:22: check \"k\": ignored_images: empty entry",
        ":12:24: check \"k2\": bearer_token_file: cannot read",
    ] {
        assert!(err.contains(expected), "{expected:?} not in {err}");
    }
    // Outside a pod, without api_server: a clear error, not a crash.
    let path = dir.write(
        "sonde.yml",
        "checks:\n  - name: k\n    kind: kubernetes_images\n",
    );
    let out = std::process::Command::new(common::sonde_bin())
        .args(["--config.check", "--config.file", path.to_str().unwrap()])
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("KUBERNETES_SERVICE_HOST"));
    // Two legacy checks would export the same label-less counters.
    let path = dir.write(
        "sonde.yml",
        "checks:\n  - {name: a, kind: kubernetes_images, api_server: \"http://127.0.0.1:1\", bearer_token_file: token, legacy_metrics: true}\n  - {name: b, kind: kubernetes_images, api_server: \"http://127.0.0.1:1\", bearer_token_file: token, legacy_metrics: true}\n",
    );
    let out = common::run(&["--config.check", "--config.file", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("would be exported twice"));
}
