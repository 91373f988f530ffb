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

use common::{Dir, Fixture, Reply, SeenRequest, Sonde, openssl};
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

// ---------------------------------------------------------------------------------
// Watches, switched-off workloads, bare Pods and Jobs

/// A registry fixture: `team/app`, `team/new` and `team/bare` exist, nothing else.
fn small_registry() -> Fixture {
    Fixture::start(|req: &SeenRequest| {
        let present = ["/team/app/", "/team/new/", "/team/bare/"]
            .iter()
            .any(|p| req.path.contains(p));
        if present {
            Reply::status(200, "").with_header(
                "Docker-Content-Digest",
                &format!("sha256:{}", "d".repeat(64)),
            )
        } else {
            Reply::status(404, r#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#)
        }
    })
}

/// Every kind, each with something switched off, owned or bare: `web` (1 replica) and
/// `paused` (0) deployments, a StatefulSet, a DaemonSet on no node, an active and a
/// suspended CronJob, a Job of its own, one the CronJob made and one that completed, a
/// bare Pod, one a ReplicaSet owns and one that succeeded.
fn switched_off_cluster(h: &str) -> Cluster {
    let app = format!("{h}/team/app:v1");
    let gone = format!("{h}/team/gone:v1");
    let bare = format!("{h}/team/bare:v1");
    let spec = |image: &str| pod_spec(&[("main", image)], &[], &[], None);
    let mut paused = workload("deployments", "team-a", "paused", spec(&gone), 2);
    paused["spec"]["replicas"] = json!(0);
    let mut idle = workload("daemonsets", "team-a", "gpu-agent", spec(&gone), 4);
    idle["status"]["desiredNumberScheduled"] = json!(0);
    idle["status"]["currentNumberScheduled"] = json!(0);
    let mut nightly = workload("cronjobs", "team-a", "nightly", spec(&gone), 6);
    nightly["spec"]["suspend"] = json!(true);
    let mut made = workload("jobs", "team-a", "report-29512340", spec(&app), 8);
    made["metadata"]["ownerReferences"] = json!([{"apiVersion": "batch/v1", "kind": "CronJob",
        "name": "report", "uid": "1", "controller": true, "blockOwnerDeletion": true}]);
    let mut done = workload("jobs", "team-a", "backfill", spec(&gone), 9);
    done["status"] = json!({"succeeded": 1, "completionTime": "2026-01-05T10:05:00Z",
        "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]});
    let mut owned = workload("pods", "team-a", "web-7d4b9c-x2x1z", spec(&app), 11);
    owned["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "name": "web-7d4b9c", "uid": "2", "controller": true}]);
    let mut ended = workload("pods", "team-a", "one-off", spec(&gone), 12);
    ended["status"]["phase"] = json!("Succeeded");
    let mut cluster = Cluster {
        page_size: 500,
        ..Cluster::default()
    };
    for (resource, items) in [
        (
            "deployments",
            vec![
                workload("deployments", "team-a", "web", spec(&app), 1),
                paused,
            ],
        ),
        (
            "statefulsets",
            vec![workload("statefulsets", "team-a", "db", spec(&app), 3)],
        ),
        ("daemonsets", vec![idle]),
        (
            "cronjobs",
            vec![
                workload("cronjobs", "team-a", "report", spec(&app), 5),
                nightly,
            ],
        ),
        (
            "jobs",
            vec![
                workload("jobs", "team-a", "migrate", spec(&bare), 7),
                made,
                done,
            ],
        ),
        (
            "pods",
            vec![
                workload("pods", "team-a", "debug", spec(&bare), 10),
                owned,
                ended,
            ],
        ),
    ] {
        cluster.items.insert(resource.into(), items);
    }
    cluster
}

/// A fixture registry, an API server with the cluster `cluster` makes for the registry's
/// host, and a directory holding its CA (`ca.pem`) and token (`token`).
struct Scene {
    registry: Fixture,
    /// The registry's `host:port`.
    h: String,
    api: ApiServer,
    dir: Dir,
}

fn scene(cluster: impl FnOnce(&str) -> Cluster) -> Scene {
    let registry = small_registry();
    let h = registry.addr.to_string();
    let ca = TestCa::new();
    let api = start_api(&ca, cluster(&h), "scene-token");
    let dir = Dir::new();
    dir.write("ca.pem", &ca.ca_pem);
    dir.write("token", "scene-token\n");
    Scene {
        registry,
        h,
        api,
        dir,
    }
}

/// The keys that reach a [`Scene`]'s API server.
fn scene_keys(scene: &Scene) -> String {
    format!(
        "    api_server: {}\n    bearer_token_file: token\n    ca_file: ca.pem\n    plain_http_registries: [\"{}\"]\n",
        scene.api.server.url(),
        scene.h
    )
}

/// Requests the API server saw: list pages and watches per collection path, and the rest.
#[derive(Debug, Default, PartialEq)]
struct ApiRequests {
    lists: std::collections::BTreeMap<String, usize>,
    watches: std::collections::BTreeMap<String, usize>,
    other: usize,
}

fn api_requests(api: &ApiServer) -> ApiRequests {
    let mut counts = ApiRequests::default();
    for r in api.server.seen() {
        let (path, query) = r.path.split_once('?').unwrap_or((&r.path, ""));
        if query.contains("watch=1") {
            *counts.watches.entry(path.to_string()).or_default() += 1;
        } else if query.contains("limit=") {
            *counts.lists.entry(path.to_string()).or_default() += 1;
        } else {
            counts.other += 1;
        }
    }
    counts
}

const WATCHED: &str = "sonde_check_runs_total{check=\"watched\",kind=\"kubernetes_images\"}";

/// The collections a check with `include_pods` follows cluster-wide.
const COLLECTIONS: [&str; 6] = [
    "/apis/apps/v1/deployments",
    "/apis/apps/v1/statefulsets",
    "/apis/apps/v1/daemonsets",
    "/apis/batch/v1/cronjobs",
    "/apis/batch/v1/jobs",
    "/api/v1/pods",
];

fn runs_of(m: &common::Exposition) -> f64 {
    m.value(WATCHED).unwrap_or(0.0)
}

/// sonde following a cluster every second: each kind is listed once and then watched, so
/// runs without changes send no list; a workload added, changed or deleted shows in the
/// next run; a bookmark's version is where the next watch starts; a 410 makes it list
/// again. Switched-off workloads are counted, not checked; bare Pods and Jobs are.
#[test]
fn a_watched_cluster_is_listed_once_and_followed_event_by_event() {
    let scene = scene(switched_off_cluster);
    let config = format!(
        "checks:\n  - name: watched\n    kind: kubernetes_images\n    interval: 1s\n    include_pods: true\n{}",
        scene_keys(&scene)
    );
    let Scene { h, api, dir, .. } = scene;
    dir.write("sonde.yml", config);
    let sonde = Sonde::start_in(dir, &[]);
    sonde.wait_ready();
    let first = runs_of(&sonde.metrics());
    let m = sonde.wait_metrics(30, |m| runs_of(m) >= first + 5.0);
    let app = format!("{h}/team/app:v1");
    let bare = format!("{h}/team/bare:v1");
    let w = |kind: &str, name: &str, image: &str| {
        series("watched", "team-a", kind, name, "main", image)
    };
    switched_off_workloads_are_counted_not_checked(&m.0, &w, &app, &bare);
    steady_runs_send_no_list(&api, runs_of(&m) - first);
    events_show_in_the_next_run(&api, &sonde, &h, &w);
    a_bookmark_is_where_the_next_watch_starts(&api);
    a_410_makes_it_list_again(&api, &sonde);
}

/// Case: the switched-off workloads (0 replicas, a DaemonSet on no node, a suspended
/// CronJob, a completed Job, a Pod that succeeded) have no series and are counted by
/// reason; the bare Pod and the Job of its own are checked; what a CronJob or a
/// ReplicaSet owns is not a workload of its own.
fn switched_off_workloads_are_counted_not_checked(
    text: &str,
    w: &dyn Fn(&str, &str, &str) -> String,
    app: &str,
    bare: &str,
) {
    assert_lines(
        text,
        &[
            available(&w("deployment", "web", app), 1),
            available(&w("statefulset", "db", app), 1),
            available(&w("cronjob", "report", app), 1),
            available(&w("job", "migrate", bare), 1),
            available(&w("pod", "debug", bare), 1),
            "sonde_kubernetes_images_skipped{check=\"watched\",reason=\"scaled_to_zero\"} 2".into(),
            "sonde_kubernetes_images_skipped{check=\"watched\",reason=\"suspended\"} 1".into(),
            "sonde_kubernetes_images_skipped{check=\"watched\",reason=\"finished\"} 2".into(),
            "sonde_kubernetes_workloads{check=\"watched\",kind=\"deployment\"} 2".into(),
            "sonde_kubernetes_workloads{check=\"watched\",kind=\"job\"} 2".into(),
            "sonde_kubernetes_workloads{check=\"watched\",kind=\"pod\"} 2".into(),
            "sonde_check_success{check=\"watched\",kind=\"kubernetes_images\"} 1".into(),
        ],
    );
    for absent in [
        "paused",
        "gpu-agent",
        "nightly",
        "backfill",
        "one-off",
        "report-29512340",
        "web-7d4b9c",
    ] {
        assert!(
            !text.contains(&format!("name=\"{absent}\"")),
            "{absent}: {text}"
        );
    }
}

/// Case: over the runs so far, each collection was listed once (one page) and watched
/// once (the stream still open); the other requests are the service account lookups of
/// pull credentials, one per namespace and run.
fn steady_runs_send_no_list(api: &ApiServer, runs: f64) {
    let counts = api_requests(api);
    for path in COLLECTIONS {
        assert_eq!(counts.lists.get(path), Some(&1), "{path}: {counts:?}");
        assert_eq!(counts.watches.get(path), Some(&1), "{path}: {counts:?}");
    }
    assert_eq!(counts.lists.len(), 6, "{counts:?}");
    assert_eq!(api.open_watches(), 6);
    eprintln!(
        "watch test: {runs} runs without changes cost {} list requests and {} watch requests for 6 kinds, plus {} other GETs (service accounts)",
        counts.lists.values().sum::<usize>(),
        counts.watches.values().sum::<usize>(),
        counts.other
    );
}

/// Case: a Deployment added, one scaled up from 0 and one deleted are each seen by the
/// next run, without a list.
fn events_show_in_the_next_run(
    api: &ApiServer,
    sonde: &Sonde,
    h: &str,
    w: &dyn Fn(&str, &str, &str) -> String,
) {
    let new = format!("{h}/team/new:v1");
    let gone = format!("{h}/team/gone:v1");
    let before = runs_of(&sonde.metrics());
    api.add(
        "deployments",
        workload(
            "deployments",
            "team-a",
            "fresh",
            pod_spec(&[("main", &new)], &[], &[], None),
            20,
        ),
    );
    let m = sonde.wait_metrics(10, |m| {
        m.has(&available(&w("deployment", "fresh", &new), 1))
    });
    // The run in progress when it was added may have missed it; the one after did not.
    assert!(
        runs_of(&m) <= before + 2.0,
        "seen {} runs later",
        runs_of(&m) - before
    );
    api.modify("deployments", "team-a", "paused", |d| {
        d["spec"]["replicas"] = json!(3)
    });
    let m = sonde.wait_metrics(10, |m| {
        m.has(&available(&w("deployment", "paused", &gone), 0))
    });
    assert!(m.0.contains(
        "sonde_kubernetes_images_skipped{check=\"watched\",reason=\"scaled_to_zero\"} 1"
    ));
    api.delete("deployments", "team-a", "web");
    sonde.wait_metrics(10, |m| !m.0.contains("name=\"web\""));
    let counts = api_requests(api);
    assert_eq!(counts.lists.values().sum::<usize>(), 6, "{counts:?}");
}

/// Case: after a BOOKMARK, a stream the server ends (its timeout passed) is watched
/// again from the bookmark's version, without a list.
fn a_bookmark_is_where_the_next_watch_starts(api: &ApiServer) {
    let version = api.bookmark();
    // Let the bookmark reach every stream before they end.
    std::thread::sleep(std::time::Duration::from_millis(300));
    api.end_watches();
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let again: Vec<String> = api
            .server
            .seen()
            .into_iter()
            .map(|r| r.path)
            .filter(|p| p.contains("watch=1") && p.contains(&format!("resourceVersion={version}&")))
            .collect();
        if again.len() == 6 {
            for path in COLLECTIONS {
                assert!(
                    again.iter().any(|p| p.starts_with(&format!("{path}?"))),
                    "{path}: {again:?}"
                );
                assert!(again.iter().all(|p| p.contains("allowWatchBookmarks=true")));
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "watches from the bookmark: {again:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    api.wait_open_watches(6, 10);
    let counts = api_requests(api);
    assert_eq!(counts.lists.values().sum::<usize>(), 6, "{counts:?}");
}

/// Case: a 410 Gone on the stream (the version was compacted away) makes each reflector
/// list again, once, and watch from the new list; the workloads read are the same.
fn a_410_makes_it_list_again(api: &ApiServer, sonde: &Sonde) {
    let before = sonde.metrics();
    let images = |m: &common::Exposition| -> Vec<String> {
        m.0.lines()
            .filter(|l| l.starts_with("sonde_kubernetes_image_available{"))
            .map(str::to_string)
            .collect()
    };
    api.expire_watches();
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while api_requests(api).lists.values().sum::<usize>() < 12 {
        assert!(Instant::now() < deadline, "{:?}", api_requests(api));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    api.wait_open_watches(6, 10);
    let counts = api_requests(api);
    for path in COLLECTIONS {
        assert_eq!(counts.lists.get(path), Some(&2), "{path}: {counts:?}");
        assert_eq!(counts.watches.get(path), Some(&3), "{path}: {counts:?}");
    }
    let runs = runs_of(&sonde.metrics());
    let m = sonde.wait_metrics(10, |m| runs_of(m) >= runs + 2.0);
    assert_eq!(images(&m), images(&before));
    let checks = sonde.get("/api/v1/checks").text();
    assert!(!checks.contains("listing"), "no list failed: {checks}");
    let log = sonde.log();
    assert!(
        log.iter()
            .any(|l| l.contains("resourceVersion expired (410); listing deployments again")),
        "{log:?}"
    );
    assert!(log.iter().all(|l| !l.contains("scene-token")));
}

/// `skip_disabled: false` checks switched-off workloads as well; `mirrors` work for
/// workload images as for `kind: registry`, with the `source` label.
#[test]
fn switched_off_workloads_are_checked_on_request_and_mirrors_label_the_source() {
    let scene = scene(switched_off_cluster);
    let (h, keys) = (&scene.h, scene_keys(&scene));
    let path = scene.dir.write(
        "sonde.yml",
        format!(
            "checks:
  - name: all
    kind: kubernetes_images
{keys}    include_pods: true
    skip_disabled: false
  - name: mirrored
    kind: kubernetes_images
{keys}    workload_kinds: [deployment]
    mirrors:
      \"{h}\": [\"{h}/cache\"]
"
        ),
    );
    let out = common::run(&["--once", "--config.file", path.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    let gone = format!("{h}/team/gone:v1");
    let all = |kind: &str, name: &str| series("all", "team-a", kind, name, "main", &gone);
    assert_lines(
        &text,
        &[
            available(&all("deployment", "paused"), 0),
            available(&all("daemonset", "gpu-agent"), 0),
            available(&all("cronjob", "nightly"), 0),
            available(&all("job", "backfill"), 0),
            available(&all("pod", "one-off"), 0),
            "sonde_kubernetes_images_skipped{check=\"all\",reason=\"scaled_to_zero\"} 0".into(),
        ],
    );
    let app = format!("{h}/team/app:v1");
    let mirrored = series("mirrored", "team-a", "deployment", "web", "main", &app);
    assert_lines(
        &text,
        &[
            format!("sonde_kubernetes_image_available{{{mirrored},source=\"{h}/cache\"}} 1"),
            format!(
                "sonde_kubernetes_image_check_status{{{mirrored},status=\"available\",source=\"{h}/cache\"}} 1"
            ),
        ],
    );
    let seen: Vec<String> = scene.registry.seen().into_iter().map(|r| r.path).collect();
    let at_mirror = format!(
        "/v2/cache/team/app/manifests/v1?ns={}",
        h.replace(':', "%3A")
    );
    assert!(seen.contains(&at_mirror), "{seen:?}");
}

/// Four namespaces' `web` deployments; team-a is labelled `sonde=watched`, team-c
/// `sonde=off`, team-b has no label and team-d no Namespace object sonde would select.
fn labelled_namespaces(h: &str) -> Cluster {
    let app = format!("{h}/team/app:v1");
    let mut cluster = Cluster {
        page_size: 500,
        ..Cluster::default()
    };
    cluster.items.insert(
        "namespaces".into(),
        vec![
            namespace("team-a", &[("sonde", "watched")], 1),
            namespace("team-b", &[], 2),
            namespace("team-c", &[("sonde", "off")], 3),
        ],
    );
    cluster.items.insert(
        "deployments".into(),
        ["team-a", "team-b", "team-c", "team-d"]
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                workload(
                    "deployments",
                    ns,
                    "web",
                    pod_spec(&[("main", &app)], &[], &[], None),
                    i,
                )
            })
            .collect(),
    );
    cluster
}

/// `namespace_selector` beside `namespaces`: the workloads of the namespaces whose labels
/// match, followed cluster-wide, plus those of the listed namespaces; a namespace that
/// gains or loses the label adds or removes its workloads at the next run.
#[test]
fn a_namespace_selector_follows_namespaces_as_their_labels_change() {
    let scene = scene(labelled_namespaces);
    let config = format!(
        "checks:
  - name: selected
    kind: kubernetes_images
    interval: 1s
{}    workload_kinds: [deployment]
    namespace_selector: \"sonde=watched\"
    namespaces: [team-d]
",
        scene_keys(&scene)
    );
    let Scene { h, api, dir, .. } = scene;
    let app = format!("{h}/team/app:v1");
    dir.write("sonde.yml", config);
    let sonde = Sonde::start_in(dir, &[]);
    sonde.wait_ready();
    let web = |ns: &str| {
        available(
            &series("selected", ns, "deployment", "web", "main", &app),
            1,
        )
    };
    let m = sonde.wait_metrics(20, |m| m.has(&web("team-a")));
    assert!(m.has(&web("team-d")), "{}", m.0);
    assert!(!m.0.contains("namespace=\"team-b\"") && !m.0.contains("namespace=\"team-c\""));
    api.modify("namespaces", "", "team-b", |n| {
        n["metadata"]["labels"]["sonde"] = json!("watched")
    });
    sonde.wait_metrics(10, |m| m.has(&web("team-b")));
    api.modify("namespaces", "", "team-a", |n| {
        n["metadata"]["labels"]["sonde"] = json!("paused")
    });
    let m = sonde.wait_metrics(10, |m| !m.0.contains("namespace=\"team-a\""));
    assert!(m.has(&web("team-b")) && m.has(&web("team-d")), "{}", m.0);
    let counts = api_requests(&api);
    assert_eq!(
        counts.lists.get("/api/v1/namespaces"),
        Some(&1),
        "{counts:?}"
    );
    assert_eq!(
        counts.lists.get("/apis/apps/v1/deployments"),
        Some(&1),
        "{counts:?}"
    );
    assert!(
        api.server
            .seen()
            .iter()
            .any(|r| r.path == "/api/v1/namespaces?limit=500&labelSelector=sonde%3Dwatched"),
        "{:?}",
        api.server
            .seen()
            .iter()
            .map(|r| r.path.clone())
            .collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------------
// kubeconfig

/// A client CA and a certificate for sonde signed by it, made with openssl as kubeadm
/// makes a user's (an RSA key in PKCS#1, `RSA PRIVATE KEY`; client-auth usage), in
/// `dir`: `client-ca.pem`, `sonde.crt`, `sonde.key`.
fn client_certificate(dir: &Dir) {
    openssl(
        dir.path(),
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "client-ca.key",
            "-out",
            "client-ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=kubernetes-client-ca",
        ],
    );
    openssl(
        dir.path(),
        &["genrsa", "-traditional", "-out", "sonde.key", "2048"],
    );
    openssl(
        dir.path(),
        &[
            "req",
            "-new",
            "-key",
            "sonde.key",
            "-subj",
            "/O=monitoring/CN=sonde",
            "-out",
            "sonde.csr",
        ],
    );
    dir.write(
        "ext.cnf",
        "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n",
    );
    openssl(
        dir.path(),
        &[
            "x509",
            "-req",
            "-in",
            "sonde.csr",
            "-CA",
            "client-ca.pem",
            "-CAkey",
            "client-ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "sonde.crt",
        ],
    );
}

/// One deployment whose image the fixture registry has.
fn one_deployment(h: &str) -> Cluster {
    let mut cluster = Cluster {
        page_size: 500,
        ..Cluster::default()
    };
    let app = format!("{h}/team/app:v1");
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
    cluster
}

/// `sonde --once` (debug log) with `checks` in `dir`: exit code, stdout, stderr.
fn once_with(dir: &Dir, checks: &[String]) -> (Option<i32>, String, String) {
    let path = dir.write("sonde.yml", format!("checks:\n{}", checks.concat()));
    let out = common::run(&[
        "--once",
        "--log.level",
        "debug",
        "--config.file",
        path.to_str().unwrap(),
    ]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The image of [`one_deployment`] is available for each check.
fn web_is_available(text: &str, checks: &[&str], h: &str) {
    let app = format!("{h}/team/app:v1");
    for check in checks {
        let labels = series(check, "prod", "deployment", "web", "web", &app);
        assert_lines(text, &[available(&labels, 1)]);
    }
}

fn kube_check(name: &str, h: &str, keys: &str) -> String {
    format!(
        "  - name: {name}\n    kind: kubernetes_images\n    workload_kinds: [deployment]\n    plain_http_registries: [\"{h}\"]\n{keys}"
    )
}

/// A kubeconfig with three contexts on the API server at `server`: `inline` (CA,
/// certificate and key as `-data`, the current one), `files` (the same as files under
/// `certs/`, namespace prod) and `anonymous` (a user without a certificate).
fn mtls_kubeconfig(server: &str, ca_pem: &str, crt: &str, key: &str) -> String {
    let b64 = |text: &str| images::base64(text.as_bytes());
    format!(
        "apiVersion: v1
kind: Config
current-context: inline
clusters:
- name: inline
  cluster:
    server: {server}
    certificate-authority-data: {ca}
- name: files
  cluster:
    server: {server}
    certificate-authority: certs/ca.pem
users:
- name: inline
  user:
    client-certificate-data: {crt}
    client-key-data: {key}
- name: files
  user:
    client-certificate: certs/sonde.crt
    client-key: certs/sonde.key
- name: nobody
  user: {{}}
contexts:
- name: inline
  context: {{cluster: inline, user: inline}}
- name: files
  context: {{cluster: files, user: files, namespace: prod}}
- name: anonymous
  context: {{cluster: inline, user: nobody}}
",
        ca = b64(ca_pem),
        crt = b64(crt),
        key = b64(key),
    )
}

/// Mutual TLS from a kubeconfig: the client certificate and key inline (`-data`) or as
/// files relative to the kubeconfig, the server's CA inline or as a file. A context
/// without a certificate is refused by the server.
#[test]
fn a_kubeconfig_with_a_client_certificate_reaches_a_mutual_tls_api_server() {
    let registry = small_registry();
    let h = registry.addr.to_string();
    let dir = Dir::new();
    client_certificate(&dir);
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
    assert!(read("sonde.key").contains("BEGIN RSA PRIVATE KEY"));
    let ca = TestCa::new();
    let api = start_api_mtls(&ca, one_deployment(&h), &read("client-ca.pem"));
    dir.write("kube/certs/sonde.crt", read("sonde.crt"));
    dir.write("kube/certs/sonde.key", read("sonde.key"));
    dir.write("kube/certs/ca.pem", &ca.ca_pem);
    let kubeconfig = mtls_kubeconfig(
        &api.server.url(),
        &ca.ca_pem,
        &read("sonde.crt"),
        &read("sonde.key"),
    );
    dir.write("kube/config", kubeconfig);
    let checks = [
        kube_check("inline", &h, "    kubeconfig: kube/config\n"),
        kube_check(
            "files",
            &h,
            "    kubeconfig: kube/config\n    context: files\n",
        ),
        kube_check(
            "anonymous",
            &h,
            "    kubeconfig: kube/config\n    context: anonymous\n",
        ),
    ];
    let (code, text, err) = once_with(&dir, &checks);
    assert_eq!(code, Some(1), "anonymous fails: {err}");
    web_is_available(&text, &["inline", "files"], &h);
    for check in ["inline", "files"] {
        assert!(
            text.contains(&format!(
                "sonde_check_success{{check=\"{check}\",kind=\"kubernetes_images\"}} 1"
            )),
            "{text}"
        );
    }
    assert!(text.contains("sonde_check_success{check=\"anonymous\",kind=\"kubernetes_images\"} 0"));
    assert!(
        err.lines().any(|l| l.contains("check=anonymous")
            && l.contains("cannot list deployments")
            && l.contains("the server requires a client certificate; give the kubeconfig's user a client-certificate and client-key")),
        "{err}"
    );
    // Certificates only: no bearer token was ever sent.
    assert!(
        api.server
            .seen()
            .iter()
            .all(|r| r.header("authorization").is_none())
    );
    assert!(!api.server.seen().is_empty());
}

/// A kubeconfig's `token` (inline) and `tokenFile`, the current context or a named one.
#[test]
fn a_kubeconfig_with_a_token_reaches_the_api_server() {
    let registry = small_registry();
    let h = registry.addr.to_string();
    let ca = TestCa::new();
    let api = start_api(&ca, one_deployment(&h), "kubeconfig-token-1");
    let dir = Dir::new();
    dir.write("kube/ca.pem", &ca.ca_pem);
    dir.write("kube/token", "kubeconfig-token-1\n");
    dir.write(
        "kube/config",
        format!(
            "apiVersion: v1
kind: Config
current-context: admin
clusters:
- {{name: test, cluster: {{server: {server}/, certificate-authority: ca.pem}}}}
users:
- {{name: admin, user: {{token: kubeconfig-token-1}}}}
- {{name: robot, user: {{tokenFile: token}}}}
contexts:
- {{name: admin, context: {{cluster: test, user: admin}}}}
- {{name: robot, context: {{cluster: test, user: robot}}}}
",
            server = api.server.url(),
        ),
    );
    let checks = [
        kube_check("admin", &h, "    kubeconfig: kube/config\n"),
        kube_check(
            "robot",
            &h,
            "    kubeconfig: kube/config\n    context: robot\n",
        ),
    ];
    let (code, text, err) = once_with(&dir, &checks);
    assert_eq!(code, Some(0), "{err}\n{text}");
    web_is_available(&text, &["admin", "robot"], &h);
    assert!(err.contains("context=\"robot\""), "{err}");
    assert!(!err.contains("kubeconfig-token-1"), "{err}");
}

#[test]
fn kubeconfig_problems_are_reported_where_they_are() {
    let dir = Dir::new();
    dir.write("token", "t");
    dir.write(
        "exec.yaml",
        "apiVersion: v1
kind: Config
current-context: eks
clusters: [{name: eks, cluster: {server: https://ABC.gr7.eu-west-1.eks.amazonaws.com}}]
contexts: [{name: eks, context: {cluster: eks, user: aws}}]
users:
- name: aws
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: aws
      args: [--region, eu-west-1, eks, get-token, --cluster-name, prod]
",
    );
    let path = dir.write(
        "sonde.yml",
        "checks:
  - name: eks
    kind: kubernetes_images
    kubeconfig: exec.yaml
  - name: both
    kind: kubernetes_images
    kubeconfig: exec.yaml
    api_server: https://10.0.0.1:6443
  - name: lost
    kind: kubernetes_images
    kubeconfig: exec.yaml
    context: staging
  - name: orphan
    kind: kubernetes_images
    api_server: https://10.0.0.1:6443
    bearer_token_file: token
    context: prod
  - name: missing
    kind: kubernetes_images
    kubeconfig: no-such-file
  - name: selector
    kind: kubernetes_images
    api_server: https://10.0.0.1:6443
    bearer_token_file: token
    namespace_selector: \"team in prod\"
",
    );
    let out = common::run(&["--config.check", "--config.file", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let kubeconfig = dir.path().join("exec.yaml").display().to_string();
    for expected in [
        format!(
            ":4:17: check \"eks\": kubeconfig: {kubeconfig}:10:7: the user gets its credentials from an exec plugin (aws); sonde runs no programs"
        ),
        ":8:17: check \"both\": api_server cannot be set beside kubeconfig".to_string(),
        ":12:14: check \"lost\": kubeconfig: the kubeconfig".to_string(),
        "has no context \"staging\" (it has \"eks\")".to_string(),
        ":17:14: check \"orphan\": context needs kubeconfig".to_string(),
        ":20:17: check \"missing\": kubeconfig: cannot read the kubeconfig".to_string(),
        ":25:25: check \"selector\": namespace_selector: \"team in prod\": the value set must be in parentheses".to_string(),
    ] {
        assert!(err.contains(&expected), "{expected:?} not in {err}");
    }
}

/// The watch threads belong to the check: a reload that changes it ends the old check's
/// stream (the server sees the connection closed) and starts the new check's; SIGTERM
/// ends sonde within 2 s while a stream is open.
#[test]
fn a_reload_stops_the_old_check_s_watches_and_sigterm_does_not_wait_for_them() {
    let scene = scene(one_deployment);
    let config = |interval: &str| {
        format!(
            "checks:\n  - name: followed\n    kind: kubernetes_images\n    interval: {interval}\n    workload_kinds: [deployment]\n{}",
            scene_keys(&scene)
        )
    };
    let (first, second) = (config("1s"), config("2s"));
    let Scene { api, dir, .. } = scene;
    dir.write("sonde.yml", first);
    let mut sonde = Sonde::start_in(dir, &[]);
    sonde.wait_ready();
    api.wait_open_watches(1, 10);
    sonde.dir.write("sonde.yml", second);
    sonde.signal("HUP");
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while api_requests(&api).watches.values().sum::<usize>() < 2 {
        assert!(Instant::now() < deadline, "{:?}", api_requests(&api));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The fixture notices a closed stream when it next writes to it: send bookmarks until
    // only the new check's stream is left.
    while api.open_watches() > 1 {
        assert!(
            Instant::now() < deadline,
            "the old check's watch is still open"
        );
        api.bookmark();
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(api.open_watches(), 1);
    let counts = api_requests(&api);
    assert_eq!(
        counts.lists.get("/apis/apps/v1/deployments"),
        Some(&2),
        "{counts:?}"
    );
    sonde.signal("TERM");
    assert_eq!(sonde.wait_exit(std::time::Duration::from_secs(2)), Some(0));
}

/// A ClusterRole written for an older sonde (list, no watch): the missing rule is logged
/// and every run lists, as sonde did before it watched, instead of a list per second.
#[test]
fn without_the_watch_verb_each_run_lists_and_the_rule_is_named() {
    let scene = scene(|h| Cluster {
        forbid_watch: true,
        ..one_deployment(h)
    });
    let config = format!(
        "checks:\n  - name: polled\n    kind: kubernetes_images\n    interval: 1s\n    workload_kinds: [deployment]\n{}",
        scene_keys(&scene)
    );
    let Scene { h, api, dir, .. } = scene;
    dir.write("sonde.yml", config);
    let sonde = Sonde::start_in(dir, &[]);
    sonde.wait_ready();
    let runs = "sonde_check_runs_total{check=\"polled\",kind=\"kubernetes_images\"}";
    let m = sonde.wait_metrics(20, |m| m.value(runs).unwrap_or(0.0) >= 5.0);
    let done = m.value(runs).unwrap_or(0.0) as usize;
    let app = format!("{h}/team/app:v1");
    assert_lines(
        &m.0,
        &[available(
            &series("polled", "prod", "deployment", "web", "web", &app),
            1,
        )],
    );
    let counts = api_requests(&api);
    let lists = counts.lists["/apis/apps/v1/deployments"];
    // One list per run (and one when the watch was first refused), never more.
    assert!(
        lists >= done && lists <= done + 3,
        "{lists} lists for {done} runs: {counts:?}"
    );
    assert_eq!(counts.watches["/apis/apps/v1/deployments"], 1, "{counts:?}");
    let log = sonde.log();
    assert!(
        log.iter().any(|l| l.contains("level=error")
            && l.contains("may not watch deployments in all namespaces")
            && l.contains(
                "rule=\"{apiGroups: [apps], resources: [deployments], verbs: [watch]}\""
            )),
        "{log:?}"
    );
}

/// An API server that pages forever (the same `continue` token each time, or a new
/// one on every page) or floods a page is not followed forever: the list fails with a
/// reason after two pages, after 1000, or at a page of more items than asked for.
#[test]
fn lists_that_page_forever_or_flood_a_page_are_abandoned() {
    for (mode, expect, pages) in [
        (
            "same",
            "repeats an earlier continue token; listing abandoned",
            2,
        ),
        ("new", "more than 1000 pages; listing abandoned", 1000),
        ("flood", "more than 1000 items on a page (500 asked for)", 1),
    ] {
        let served = AtomicUsize::new(0);
        let api = Fixture::start(move |_| {
            let n = served.fetch_add(1, Ordering::SeqCst);
            let items: Vec<Value> = match mode {
                "flood" => (0..1001)
                    .map(|i| json!({"metadata": {"name": format!("d{i}"), "namespace": "ns"}}))
                    .collect(),
                _ => Vec::new(),
            };
            let token = match mode {
                "same" => "same".to_string(),
                _ => format!("t{n}"),
            };
            let page = json!({"kind": "List", "metadata": {"continue": token, "resourceVersion": "7"}, "items": items});
            images::json(200, &page.to_string())
        });
        let dir = Dir::new();
        dir.write("token", "t0k3n");
        let path = dir.write(
            "sonde.yml",
            format!(
                "checks:\n  - name: pager\n    kind: kubernetes_images\n    timeout: 60s\n    api_server: {}\n    bearer_token_file: token\n",
                api.url("")
            ),
        );
        let out = common::run(&["--once", "--config.file", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(expect),
            "{mode}: {expect:?} not in:\n{stderr}"
        );
        // A failed list is tried again after 2 s, 4 s, ...: a few lists of at most
        // `pages` pages each, never an endless one.
        let seen = api.seen();
        let mut per_resource: std::collections::HashMap<String, usize> = Default::default();
        for r in &seen {
            *per_resource
                .entry(r.path.split('?').next().unwrap_or("").to_string())
                .or_default() += 1;
        }
        assert!(
            per_resource.values().all(|n| *n <= 4 * pages),
            "{mode}: {per_resource:?}"
        );
    }
}
