//! `kind: kubernetes_images` against a fixture Kubernetes API server (HTTPS with a test
//! CA, bearer token, paged lists with `continue` and a 410, objects shaped like
//! `kubectl get -o json`) and Debian's real `docker-registry` behind TLS and htpasswd.

mod common;
mod images;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
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

/// Images of the shared cluster run: `app` and `oci` are in the real registry, `migrate`
/// is not.
struct Images {
    app: String,
    oci: String,
    migrate: String,
}

/// What the shared cluster run left behind, as plain data: its servers stop when it
/// returns.
struct ClusterRun {
    code: Option<i32>,
    text: String,
    err: String,
    images: Images,
    /// Paths of the requests the API server saw.
    paths: Vec<String>,
    /// Whether the API server answered the first continue token of deployments with 410.
    gone_sent: bool,
    registry_log: String,
}

static CLUSTER_RUN: OnceLock<Result<ClusterRun, String>> = OnceLock::new();

/// The one `--once` run that the cluster cases below assert on: starting the real
/// registry twice (plain to push, then TLS and htpasswd) is the expensive part.
fn cluster_run() -> &'static ClusterRun {
    common::shared(&CLUSTER_RUN, run_against_the_cluster)
}

fn run_against_the_cluster() -> ClusterRun {
    let dir = Dir::new();
    let ca = TestCa::new();
    dir.write("ca.pem", &ca.ca_pem);
    dir.write("token", "api-token-1\n");
    let registry = images::secure_registry(dir.path(), &ca, "puller", "pull-pw", |plain| {
        plain.push_image("team/app", "v1", false, "app");
        plain.push_image("team/oci", "v1", true, "oci");
    });
    let h = registry.host();
    let images = Images {
        app: format!("{h}/team/app:v1"),
        oci: format!("{h}/team/oci:v1"),
        migrate: format!("{h}/team/migrate:v1"),
    };
    let api = start_api(&ca, cluster_of_two_teams(&h, &images), "api-token-1");
    dir.write(
        "docker.json",
        images::docker_config(&h, "puller", "pull-pw"),
    );
    let path = dir.write(
        "sonde.yml",
        four_checks(&format!("https://{}", api.server.addr)),
    );
    let out = common::run(&[
        "--once",
        "--log.level",
        "debug",
        "--ignored-images",
        "nginx:1.11,busybox",
        "--config.file",
        path.to_str().unwrap(),
    ]);
    ClusterRun {
        code: out.status.code(),
        text: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
        images,
        paths: api.server.seen().into_iter().map(|r| r.path).collect(),
        gone_sent: api.gone_sent.load(Ordering::SeqCst),
        registry_log: registry.log_text(),
    }
}

/// `k8s` sees everything; `team-b-only` filters namespace, kinds and init containers;
/// `fallback` uses a docker config instead of pull secrets; `no-rbac` may not list.
fn four_checks(server: &str) -> String {
    format!(
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
    )
}

/// Every workload kind in two namespaces, plus a `locked` namespace whose Secrets may not
/// be read and a `team-c` whose workloads may not be listed. Pages of 2 make every list
/// of deployments paged.
fn cluster_of_two_teams(h: &str, images: &Images) -> Cluster {
    let Images { app, oci, .. } = images;
    let mut cluster = Cluster {
        page_size: 2,
        ..Cluster::default()
    };
    cluster
        .items
        .insert("deployments".into(), deployments(images));
    cluster.items.insert(
        "statefulsets".into(),
        vec![workload(
            "statefulsets",
            "team-a",
            "db",
            pod_spec(&[("db", app)], &[], &[], None),
            6,
        )],
    );
    cluster.items.insert(
        "daemonsets".into(),
        vec![workload(
            "daemonsets",
            "team-b",
            "agent",
            pod_spec(&[("agent", oci)], &[], &["regcred-b"], None),
            7,
        )],
    );
    cluster.items.insert(
        "cronjobs".into(),
        vec![workload(
            "cronjobs",
            "team-b",
            "report",
            pod_spec(&[("report", app)], &[("setup", oci)], &[], Some("builder")),
            8,
        )],
    );
    add_pull_credentials(&mut cluster, h);
    cluster.forbidden_secret_namespaces.insert("locked".into());
    cluster.forbidden_list_namespaces.insert("team-c".into());
    cluster
}

fn deployments(images: &Images) -> Vec<Value> {
    let Images { app, migrate, .. } = images;
    vec![
        workload(
            "deployments",
            "team-a",
            "web",
            pod_spec(&[("web", app)], &[("migrate", migrate)], &["regcred"], None),
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
            pod_spec(&[("c", app)], &[], &["regcred"], None),
            4,
        ),
        workload(
            "deployments",
            "team-b",
            "api",
            pod_spec(&[("api", app)], &[], &[], Some("builder")),
            5,
        ),
    ]
}

/// The registry's credentials in each form a cluster holds them: a dockerconfigjson
/// Secret with `auth` or with username and password, a legacy dockercfg Secret, and
/// service accounts that name them.
fn add_pull_credentials(cluster: &mut Cluster, h: &str) {
    let auth = images::base64(b"puller:pull-pw");
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
}

#[test]
fn once_exits_1_when_a_check_fails() {
    let run = cluster_run();
    assert_eq!(run.code, Some(1), "{}", run.err);
}

/// Containers and init containers of every kind, pulled with the pod's pull secrets, its
/// service account's or none: present images are available, a missing one absent, the
/// others have the status that says why they are undetermined.
#[test]
fn every_container_of_every_workload_kind_has_its_image_status() {
    let run = cluster_run();
    let Images { app, oci, migrate } = &run.images;
    let web = series("k8s", "team-a", "deployment", "web", "web", app);
    let mig = series("k8s", "team-a", "deployment", "web", "migrate", migrate);
    let broken = series(
        "k8s",
        "team-a",
        "deployment",
        "broken",
        "app",
        "Bad/Image:v1",
    );
    let locked = series("k8s", "locked", "deployment", "secretive", "c", app);
    let api_sa = series("k8s", "team-b", "deployment", "api", "api", app);
    let db = series("k8s", "team-a", "statefulset", "db", "db", app);
    let agent = series("k8s", "team-b", "daemonset", "agent", "agent", oci);
    let report = series("k8s", "team-b", "cronjob", "report", "report", app);
    let setup = series("k8s", "team-b", "cronjob", "report", "setup", oci);
    assert_lines(
        &run.text,
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
        ],
    );
}

/// `legacy_metrics: true` adds k8s-image-existence-exporter's series, exactly.
#[test]
fn legacy_metrics_are_the_old_exporter_s_series() {
    let run = cluster_run();
    let Images { app, oci, migrate } = &run.images;
    assert_lines(
        &run.text,
        &[
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
}

/// An image that cannot be determined fails its check and has no availability sample,
/// native or legacy: a guess would hide the problem.
#[test]
fn undetermined_images_fail_the_check_without_an_availability_sample() {
    let run = cluster_run();
    let text = &run.text;
    let locked = series(
        "k8s",
        "locked",
        "deployment",
        "secretive",
        "c",
        &run.images.app,
    );
    let broken = series(
        "k8s",
        "team-a",
        "deployment",
        "broken",
        "app",
        "Bad/Image:v1",
    );
    assert!(!text.contains(&format!("sonde_kubernetes_image_available{{{locked}}}")));
    assert!(!text.contains(&format!("sonde_kubernetes_image_available{{{broken}}}")));
    assert!(!text.contains("owner_name=\"secretive\""));
    assert!(text.contains("sonde_check_success{check=\"k8s\",kind=\"kubernetes_images\"} 0"));
}

/// Images matched by a config glob or listed exactly in `--ignored-images`.
#[test]
fn ignored_images_are_not_reported_at_all() {
    let text = &cluster_run().text;
    assert!(
        !text.contains("legacy/old") && !text.contains("nginx:1.11"),
        "{text}"
    );
}

#[test]
fn namespace_kind_and_init_container_filters_narrow_a_check() {
    let run = cluster_run();
    let (text, app) = (&run.text, &run.images.app);
    let b = |kind: &str, name: &str, container: &str, image: &str| {
        series("team-b-only", "team-b", kind, name, container, image)
    };
    assert_lines(
        text,
        &[
            available(&b("deployment", "api", "api", app), 1),
            available(&b("cronjob", "report", "report", app), 1),
        ],
    );
    assert!(!text.contains("check=\"team-b-only\",namespace=\"team-a\""));
    assert!(!text.contains("check=\"team-b-only\",namespace=\"team-b\",kind=\"daemonset\""));
    assert!(!text.contains("check=\"team-b-only\",namespace=\"team-b\",kind=\"cronjob\",name=\"report\",container=\"setup\""));
    assert!(
        text.contains("sonde_check_success{check=\"team-b-only\",kind=\"kubernetes_images\"} 1"),
        "{text}"
    );
}

#[test]
fn a_secret_that_may_not_be_read_is_logged_with_the_missing_rbac_rule() {
    let err = &cluster_run().err;
    assert!(
        err.lines().any(|l| l.contains("level=warn")
            && l.contains("namespace locked")
            && l.contains("rule=\"{apiGroups: [''], resources: [secrets], verbs: [get]}\"")),
        "{err}"
    );
}

#[test]
fn workloads_that_may_not_be_listed_fail_the_check_naming_the_rbac_rule() {
    let run = cluster_run();
    let (text, err) = (&run.text, &run.err);
    assert!(text.contains("sonde_check_success{check=\"no-rbac\",kind=\"kubernetes_images\"} 0"));
    assert!(
        err.lines().any(|l| l.contains("level=error")
            && l.contains("check=no-rbac")
            && l.contains("may not list statefulsets in namespace team-c")
            && l.contains(
                "rule=\"{apiGroups: [apps], resources: [statefulsets], verbs: [list]}\""
            )),
        "{err}"
    );
}

/// Without pull secrets the docker config's credentials serve every workload, and no
/// Secret is asked for (so the locked namespace logs no 403 for this check).
#[test]
fn docker_config_credentials_replace_pull_secrets() {
    let run = cluster_run();
    let f = |ns: &str, name: &str, container: &str| {
        series(
            "fallback",
            ns,
            "deployment",
            name,
            container,
            &run.images.app,
        )
    };
    assert_lines(
        &run.text,
        &[
            available(&f("team-a", "web", "web"), 1),
            available(&f("locked", "secretive", "c"), 1),
        ],
    );
    let err = &run.err;
    assert!(
        !err.lines()
            .any(|l| l.contains("check=fallback") && l.contains("403")),
        "{err}"
    );
}

#[test]
fn lists_are_paged_and_restarted_after_an_expired_continue_token() {
    let run = cluster_run();
    assert!(run.gone_sent);
    let paths = &run.paths;
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("/apis/apps/v1/deployments?limit=500&continue=")),
        "{paths:?}"
    );
}

/// A check limited to some namespaces and kinds lists only those, by namespaced paths.
#[test]
fn a_filtered_check_lists_only_its_namespaces_and_kinds() {
    let paths = &cluster_run().paths;
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
}

/// Pull secrets are read one by one with get (what the documented RBAC rule allows),
/// never listed, and each check fetches each secret it needs once.
#[test]
fn pull_secrets_are_fetched_by_name_once_never_listed() {
    let paths = &cluster_run().paths;
    assert!(
        paths
            .iter()
            .all(|p| !p.contains("/secrets?") && !p.ends_with("/secrets")),
        "{paths:?}"
    );
    let secret_gets: Vec<&str> = paths
        .iter()
        .map(String::as_str)
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
}

#[test]
fn the_registry_is_asked_with_head_only() {
    assert!(
        !cluster_run()
            .registry_log
            .contains("http.request.method=GET"),
        "a manifest GET happened"
    );
}

#[test]
fn no_credential_reaches_the_log() {
    let err = &cluster_run().err;
    assert!(!err.contains("pull-pw") && !err.contains("api-token-1"));
}

#[test]
fn the_exposition_without_legacy_series_passes_promtool() {
    let without_legacy: String = cluster_run()
        .text
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
        .filter(|r| r.path.starts_with("/apis/apps/v1/deployments?limit="))
        .count();
    // Four pages of 500; the first continue token "expired" (410), so the first page
    // was read again.
    assert_eq!(pages, 6, "2000 items in pages of 500, one restart");
    eprintln!(
        "2000 workloads, 4000 containers, 300 images: {} HEAD requests, {pages} list pages, {took:?}",
        heads.load(Ordering::SeqCst)
    );
}

const INCLUSTER_SUCCESS: &str =
    "sonde_check_success{check=\"incluster\",kind=\"kubernetes_images\"}";
const RECHECKS: &str = "k8s_image_existence_exporter_completed_rechecks_total";

/// sonde as it runs in a pod: no `api_server`, the API server found through
/// `KUBERNETES_SERVICE_HOST` and `_PORT`, a token file the kubelet rotates.
struct InCluster {
    sonde: Sonde,
    api: ApiServer,
    token_path: PathBuf,
    app: String,
    _registry: Fixture,
}

impl InCluster {
    fn start() -> InCluster {
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
        InCluster {
            sonde,
            api,
            token_path,
            app,
            _registry: registry,
        }
    }
}

/// The cases share one sonde because each starts from the state the previous one left:
/// a rotation needs a first successful run, a failing list needs series to keep.
#[test]
fn in_cluster_defaults_token_rotation_and_a_failing_list() {
    let pod = InCluster::start();
    let rechecks = in_cluster_defaults_reach_the_api_server(&pod);
    a_rotated_token_file_is_read_again(&pod, rechecks);
    a_failing_list_fails_the_run_and_keeps_the_series_it_had(&pod);
    the_token_never_reaches_the_log(&pod);
}

/// Case: without `api_server` the service environment of the pod is used, and its images
/// are reported. Returns the completed rechecks so far.
fn in_cluster_defaults_reach_the_api_server(pod: &InCluster) -> f64 {
    let web = series("incluster", "prod", "deployment", "web", "web", &pod.app);
    let m = pod
        .sonde
        .wait_metrics(20, |m| m.value(INCLUSTER_SUCCESS) == Some(1.0));
    assert_lines(&m.0, &[available(&web, 1)]);
    m.value(RECHECKS).unwrap()
}

/// Case: the kubelet rotates the token and the API server accepts only the new one; sonde
/// reads the file again and keeps succeeding, sending the new token.
fn a_rotated_token_file_is_read_again(pod: &InCluster, rechecks_before: f64) {
    *pod.api.token.lock().unwrap() = "token-2".to_string();
    std::fs::write(&pod.token_path, "token-2\n").unwrap();
    let m = pod.sonde.wait_metrics(20, |m| {
        m.value(RECHECKS).unwrap_or(0.0) >= rechecks_before + 2.0
    });
    assert_eq!(m.value(INCLUSTER_SUCCESS), Some(1.0), "{}", m.0);
    let after_rotation = pod.api.server.seen();
    let last = after_rotation.last().unwrap();
    assert_eq!(last.header("authorization"), Some("Bearer token-2"));
}

/// Case: a list that fails fails the run, the workloads it had keep their series, the log
/// says why, and the check recovers when the list works again. Lists happen once, then
/// the watch follows: the watch's version expiring (410) makes sonde list again.
fn a_failing_list_fails_the_run_and_keeps_the_series_it_had(pod: &InCluster) {
    let (sonde, app) = (&pod.sonde, &pod.app);
    pod.api.failing.store(true, Ordering::SeqCst);
    pod.api.expire_watches();
    let m = sonde.wait_metrics(20, |m| m.value(INCLUSTER_SUCCESS) == Some(0.0));
    assert_lines(
        &m.0,
        &[
            available(
                &series("incluster", "prod", "deployment", "web", "web", app),
                1,
            ),
            available(
                &series("incluster", "prod", "daemonset", "agent", "agent", app),
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
    pod.api.failing.store(false, Ordering::SeqCst);
    sonde.wait_metrics(20, |m| m.value(INCLUSTER_SUCCESS) == Some(1.0));
}

/// Case: the rotated token is in no log line.
fn the_token_never_reaches_the_log(pod: &InCluster) {
    let log = pod.sonde.log();
    assert!(log.iter().all(|l| !l.contains("token-2")));
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
