//! `kind: registry` against Debian's real `docker-registry` (distribution 2.8), plain
//! and then behind htpasswd Basic auth and TLS, and against a fixture that plays Docker
//! Hub's token flow, rate limits, errors and a hang.

mod common;
mod images;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{Dir, Fixture, Reply, SeenRequest, Sonde};
use images::{Registry, TestCa};

const ACCEPT_TYPES: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

fn available(check: &str, image: &str, v: u8) -> String {
    format!("sonde_image_available{{check=\"{check}\",image=\"{image}\"}} {v}")
}

fn status(check: &str, image: &str, s: &str) -> String {
    format!("sonde_image_check_status{{check=\"{check}\",image=\"{image}\",status=\"{s}\"}} 1")
}

fn run_once(dir: &Dir, config: &str) -> (i32, String, String) {
    let path = dir.write("sonde.yml", config);
    let out = common::run(&[
        "--once",
        "--log.level",
        "debug",
        "--config.file",
        path.to_str().unwrap(),
    ]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

fn assert_lines(text: &str, lines: &[String]) {
    for line in lines {
        assert!(has_line(text, line), "missing line {line:?} in:\n{text}");
    }
}

/// Lines `method=... uri=...` of the registry's log for manifest requests.
fn manifest_requests(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter(|l| {
            l.contains("msg=\"response completed\"")
                || l.contains("msg=\"response completed with error\"")
        })
        .filter_map(|l| {
            let field = |name: &str| {
                l.split_whitespace()
                    .find_map(|f| f.strip_prefix(name))
                    .map(|v| v.trim_matches('"').to_string())
            };
            let method = field("http.request.method=")?;
            let uri = field("http.request.uri=")?;
            (uri.contains("/manifests/") && (method == "HEAD" || method == "GET"))
                .then_some((method, uri))
        })
        .collect()
}

/// What the shared run against the plain registry left behind.
struct PlainRun {
    code: i32,
    out: String,
    err: String,
    /// The checked references, in the order of the config.
    images: [String; 9],
    app_digest: String,
    registry_log: String,
}

static PLAIN_RUN: OnceLock<Result<PlainRun, String>> = OnceLock::new();

/// The one `--once` run that the plain-registry cases below assert on: starting the real
/// registry and pushing to it is the expensive part.
fn plain_run() -> &'static PlainRun {
    common::shared(&PLAIN_RUN, run_against_a_plain_registry)
}

/// Tags, digests, a tag with a digest, a missing tag and repository, an OCI image, an
/// index, an unknown digest and an invalid reference.
fn run_against_a_plain_registry() -> PlainRun {
    let dir = Dir::new();
    let storage = dir.path().join("storage");
    let registry = Registry::start(dir.path(), "plain", &storage, "", "");
    let host = registry.host();
    let app_digest = registry.push_image("team/app", "v1", false, "app");
    registry.push_image("team/oci", "v1", true, "oci");
    registry.push_index("team/multi", "v1");
    let unknown = format!("sha256:{}", "0".repeat(64));
    let images = [
        format!("{host}/team/app:v1"),
        format!("{host}/team/app@{app_digest}"),
        format!("{host}/team/app:v9@{app_digest}"),
        format!("{host}/team/app:v404"),
        format!("{host}/nobody/here:v1"),
        format!("{host}/team/oci:v1"),
        format!("{host}/team/multi:v1"),
        format!("{host}/team/app@{unknown}"),
        format!("{host}/Team/App:v1"),
    ];
    let list: Vec<String> = images.iter().map(|i| format!("\"{i}\"")).collect();
    let config = format!(
        "checks:\n  - name: reg\n    kind: registry\n    plain_http_registries: [\"{host}\"]\n    images: [{}]\n",
        list.join(", ")
    );
    let (code, out, err) = run_once(&dir, &config);
    PlainRun {
        code,
        out,
        err,
        images,
        app_digest,
        registry_log: registry.log_text(),
    }
}

#[test]
fn once_exits_1_when_an_image_is_not_available() {
    let run = plain_run();
    assert_eq!(
        run.code, 1,
        "not every image is available, so --once fails; stderr: {}",
        run.err
    );
}

/// A tag, a digest (alone or after a tag), an OCI image and an index are available; a
/// missing tag, repository or digest is absent; an invalid reference says so.
#[test]
fn tags_digests_oci_images_and_indexes_are_found_and_missing_ones_absent() {
    let PlainRun { out, images, .. } = plain_run();
    let c = "reg";
    assert_lines(
        out,
        &[
            available(c, &images[0], 1),
            status(c, &images[0], "available"),
            available(c, &images[1], 1),
            available(c, &images[2], 1),
            available(c, &images[3], 0),
            status(c, &images[3], "absent"),
            available(c, &images[4], 0),
            status(c, &images[4], "absent"),
            available(c, &images[5], 1),
            available(c, &images[6], 1),
            available(c, &images[7], 0),
            status(c, &images[8], "invalid_reference"),
            format!(
                "sonde_image_check_status{{check=\"reg\",image=\"{}\",status=\"absent\"}} 0",
                images[0]
            ),
            "sonde_check_success{check=\"reg\",kind=\"registry\"} 0".to_string(),
        ],
    );
}

#[test]
fn an_invalid_reference_has_a_status_but_no_availability_sample() {
    let PlainRun { out, images, .. } = plain_run();
    assert!(!out.contains(&format!(
        "sonde_image_available{{check=\"reg\",image=\"{}\"}}",
        images[8]
    )));
}

#[test]
fn every_status_is_exported_exactly_one_of_them_1() {
    let PlainRun { out, images, .. } = plain_run();
    let statuses: Vec<&str> = out
        .lines()
        .filter(|l| {
            l.starts_with(&format!(
                "sonde_image_check_status{{check=\"reg\",image=\"{}\",",
                images[3]
            ))
        })
        .collect();
    assert_eq!(statuses.len(), 8, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|l| l.ends_with(" 1")).count(), 1);
}

/// HEAD only, and the digest that two references share is asked for once.
#[test]
fn each_distinct_image_costs_one_head_request() {
    let run = plain_run();
    let requests = manifest_requests(&run.registry_log);
    assert!(requests.iter().all(|(m, _)| m == "HEAD"), "{requests:?}");
    assert_eq!(
        requests.len(),
        7,
        "one request per distinct image: {requests:?}"
    );
    let by_digest = requests
        .iter()
        .filter(|(_, uri)| uri == &format!("/v2/team/app/manifests/{}", run.app_digest))
        .count();
    assert_eq!(by_digest, 1, "{requests:?}");
}

#[test]
fn the_exposition_passes_promtool() {
    let out = &plain_run().out;
    assert!(
        common::promtool_check_metrics(out).trim().is_empty(),
        "{}",
        common::promtool_check_metrics(out)
    );
}

#[test]
fn real_registry_with_basic_auth_and_tls() {
    let dir = Dir::new();
    let ca = TestCa::new();
    dir.write("tls/ca.pem", &ca.ca_pem);
    let registry = images::secure_registry(dir.path(), &ca, "puller", "s3cret-pw", |plain| {
        plain.push_image("team/app", "v1", false, "app");
    });
    let host = registry.host();
    dir.write(
        "right.json",
        images::docker_config(&format!("https://{host}"), "puller", "s3cret-pw"),
    );
    dir.write(
        "wrong.json",
        images::docker_config(&host, "puller", "not-the-pw"),
    );
    let present = format!("{host}/team/app:v1");
    let missing = format!("{host}/team/app:v404");
    let config = format!(
        "checks:
  - name: right
    kind: registry
    images: [\"{present}\", \"{missing}\"]
    docker_config_file: right.json
    tls: {{ca_file: tls/ca.pem}}
  - name: wrong
    kind: registry
    images: [\"{present}\"]
    docker_config_file: wrong.json
    tls: {{ca_file: tls/ca.pem}}
  - name: anonymous
    kind: registry
    images: [\"{present}\"]
    tls: {{ca_file: tls/ca.pem}}
  - name: untrusted
    kind: registry
    images: [\"{present}\"]
    docker_config_file: right.json
"
    );
    let (code, out, err) = run_once(&dir, &config);
    assert_eq!(code, 1, "{err}");
    assert_lines(
        &out,
        &[
            available("right", &present, 1),
            status("right", &present, "available"),
            available("right", &missing, 0),
            status("right", &missing, "absent"),
            status("wrong", &present, "unauthorized"),
            status("anonymous", &present, "unauthorized"),
            status("untrusted", &present, "unreachable"),
        ],
    );
    for check in ["wrong", "anonymous", "untrusted"] {
        assert!(
            !out.contains(&format!("sonde_image_available{{check=\"{check}\"")),
            "an undetermined image has no availability sample: {out}"
        );
    }
    assert!(!err.contains("s3cret-pw") && !out.contains("s3cret-pw"));
    assert!(!err.contains("not-the-pw"));
    let requests = manifest_requests(&registry.log_text());
    assert!(requests.iter().all(|(m, _)| m == "HEAD"), "{requests:?}");
}

/// Tokens the fixture issued: (token, scope, issued at, lifetime).
type Tokens = Arc<Mutex<Vec<(String, String, Instant, Duration)>>>;

/// Docker Hub's registry as the token spec describes it: manifests need a Bearer token
/// from the realm; tokens expire; some repositories are private.
struct Hub {
    fixture: Fixture,
    tokens: Tokens,
    expired_uses: Arc<AtomicUsize>,
    broken: Arc<AtomicBool>,
}

fn start_hub() -> Hub {
    let tokens: Tokens = Arc::new(Mutex::new(Vec::new()));
    let expired_uses = Arc::new(AtomicUsize::new(0));
    let broken = Arc::new(AtomicBool::new(false));
    let addr: Arc<Mutex<String>> = Arc::new(Mutex::new(String::new()));
    let fixture = {
        let (tokens, expired_uses, broken, addr) = (
            Arc::clone(&tokens),
            Arc::clone(&expired_uses),
            Arc::clone(&broken),
            Arc::clone(&addr),
        );
        Fixture::start(move |req: &SeenRequest| {
            if let Some(query) = req.path.strip_prefix("/token?") {
                return token_reply(req, query, &tokens);
            }
            let Some(rest) = req.path.strip_prefix("/v2/") else {
                return Reply::status(404, "");
            };
            let Some((repo, _reference)) = rest.split_once("/manifests/") else {
                return Reply::status(404, "");
            };
            let challenge = format!(
                "Bearer realm=\"http://{}/token\",service=\"registry.test\",scope=\"repository:{repo}:pull\"",
                addr.lock().unwrap()
            );
            let unauthorized = Reply::status(401, r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#)
                .with_header("WWW-Authenticate", &challenge);
            let Some(token) = req
                .header("authorization")
                .and_then(|a| a.strip_prefix("Bearer "))
            else {
                return unauthorized;
            };
            let list = tokens.lock().unwrap();
            let Some((_, scope, issued, lifetime)) = list.iter().find(|(t, ..)| t == token) else {
                return unauthorized;
            };
            if issued.elapsed() > *lifetime {
                expired_uses.fetch_add(1, Ordering::SeqCst);
                return unauthorized;
            }
            if scope != &format!("repository:{repo}:pull") {
                return unauthorized;
            }
            manifest_reply(repo, broken.load(Ordering::SeqCst))
        })
    };
    *addr.lock().unwrap() = fixture.addr.to_string();
    Hub {
        fixture,
        tokens,
        expired_uses,
        broken,
    }
}

/// The realm: a token for the scope asked, living 1 s for `short/`, else 300 s; `private/`
/// needs the Basic credentials of hubuser.
fn token_reply(req: &SeenRequest, query: &str, tokens: &Tokens) -> Reply {
    let scope = query
        .split('&')
        .find_map(|p| p.strip_prefix("scope="))
        .unwrap_or("")
        .replace("%3A", ":")
        .replace("%2F", "/");
    if !query.contains("service=registry.test") {
        return Reply::status(400, "no service");
    }
    if scope.starts_with("repository:private/") {
        let want = format!("Basic {}", images::base64(b"hubuser:hubpass"));
        if req.header("authorization") != Some(want.as_str()) {
            return images::json(401, r#"{"details":"incorrect username or password"}"#);
        }
    }
    let lifetime = if scope.starts_with("repository:short/") {
        1
    } else {
        300
    };
    let mut list = tokens.lock().unwrap();
    let token = format!("tok-{}", list.len());
    list.push((
        token.clone(),
        scope,
        Instant::now(),
        Duration::from_secs(lifetime),
    ));
    images::json(
        200,
        &format!(
            r#"{{"token":"{token}","access_token":"{token}","expires_in":{lifetime},"issued_at":"2026-01-01T00:00:00Z"}}"#
        ),
    )
}

/// A manifest HEAD with a valid token: present, absent, failing or hanging by repository.
fn manifest_reply(repo: &str, broken: bool) -> Reply {
    match repo {
        "library/nginx" | "short/app" | "private/app" if !broken => Reply::status(200, "")
            .with_header(
                "Content-Type",
                "application/vnd.docker.distribution.manifest.v2+json",
            )
            .with_header(
                "Docker-Content-Digest",
                &format!("sha256:{}", "a".repeat(64)),
            ),
        "library/nginx" => Reply::status(503, "down for maintenance"),
        "broken/app" => Reply::status(502, "bad gateway"),
        "slow/app" => Reply::Hang,
        _ => Reply::status(404, r#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#),
    }
}

fn runs(m: &common::Exposition, check: &str) -> f64 {
    m.value(&format!(
        "sonde_check_runs_total{{check=\"{check}\",kind=\"registry\"}}"
    ))
    .unwrap_or(0.0)
}

/// sonde checking, every 3 s, images of the Docker-Hub-like fixture (present, short-lived
/// token, private, gone, failing, hanging) and one of a registry that only answers 429.
struct HubScene {
    sonde: Sonde,
    hub: Hub,
    limited: Fixture,
    nginx: String,
    short: String,
    private: String,
    gone: String,
    broken: String,
    slow: String,
    rate: String,
}

impl HubScene {
    fn start() -> HubScene {
        let hub = start_hub();
        let limited = Fixture::start(|_req: &SeenRequest| {
            Reply::status(429, r#"{"errors":[{"code":"TOOMANYREQUESTS"}]}"#)
                .with_header("Retry-After", "3600")
        });
        let h = hub.fixture.addr.to_string();
        let l = limited.addr.to_string();
        let dir = Dir::new();
        dir.write("hub.json", images::docker_config(&h, "hubuser", "hubpass"));
        let [nginx, short, private, gone, broken, slow, rate] = [
            format!("{h}/library/nginx:1.25"),
            format!("{h}/short/app:v1"),
            format!("{h}/private/app:v1"),
            format!("{h}/library/gone:v1"),
            format!("{h}/broken/app:v1"),
            format!("{h}/slow/app:v1"),
            format!("{l}/team/app:v1"),
        ];
        dir.write(
            "sonde.yml",
            format!(
                "checks:
  - name: hub
    kind: registry
    interval: 3s
    timeout: 3s
    plain_http_registries: [\"{h}\", \"{l}\"]
    docker_config_file: hub.json
    images: [\"{nginx}\", \"{short}\", \"{private}\", \"{gone}\", \"{broken}\", \"{slow}\", \"{rate}\"]
"
            ),
        );
        let sonde = Sonde::start_in(dir, &[]);
        sonde.wait_ready();
        HubScene {
            sonde,
            hub,
            limited,
            nginx,
            short,
            private,
            gone,
            broken,
            slow,
            rate,
        }
    }
}

/// The cases share one sonde because they follow it over runs: the first run, token reuse
/// and renewal over three more, then a registry that starts failing.
#[test]
fn token_flow_expiry_errors_and_a_hang() {
    let scene = HubScene::start();
    let m = scene.sonde.wait_metrics(20, |m| runs(m, "hub") >= 1.0);
    each_image_has_the_status_its_registry_gives(&scene, &m.0);
    manifests_are_asked_with_head_accepting_all_four_media_types(&scene.hub);
    // Run three more times.
    let first = runs(&m, "hub");
    scene
        .sonde
        .wait_metrics(30, |m| runs(m, "hub") >= first + 3.0);
    a_token_is_reused_until_it_expires_and_never_sent_expired(&scene.hub);
    a_rate_limited_registry_is_not_asked_again(&scene.limited);
    registry_credentials_never_reach_the_log(&scene.sonde);
    a_registry_that_starts_failing_leaves_availability_unknown(&scene);
}

/// Case: through the token flow, public, short-lived and private images are available
/// and a gone one absent; a 5xx, a hang and a 429 make an image undetermined, with no
/// availability sample.
fn each_image_has_the_status_its_registry_gives(scene: &HubScene, text: &str) {
    let HubScene {
        nginx,
        short,
        private,
        gone,
        broken,
        slow,
        rate,
        ..
    } = scene;
    assert_lines(
        text,
        &[
            available("hub", nginx, 1),
            available("hub", short, 1),
            available("hub", private, 1),
            available("hub", gone, 0),
            status("hub", gone, "absent"),
            status("hub", broken, "unreachable"),
            status("hub", slow, "unreachable"),
            status("hub", rate, "rate_limited"),
        ],
    );
    for image in [broken, slow, rate] {
        assert!(!text.contains(&format!(
            "sonde_image_available{{check=\"hub\",image=\"{image}\"}}"
        )));
    }
}

/// Case: every manifest request is a HEAD with all four media types in Accept.
fn manifests_are_asked_with_head_accepting_all_four_media_types(hub: &Hub) {
    for r in hub
        .fixture
        .seen()
        .iter()
        .filter(|r| r.path.contains("/manifests/"))
    {
        assert_eq!(r.method, "HEAD");
        let accept = r.header("accept").unwrap_or_default();
        for t in ACCEPT_TYPES {
            assert!(accept.contains(t), "{accept}");
        }
    }
}

/// Case: a 300 s token is fetched once and reused by every later run; a 1 s token is
/// renewed in each run, and an expired one is never sent.
fn a_token_is_reused_until_it_expires_and_never_sent_expired(hub: &Hub) {
    let tokens = hub.tokens.lock().unwrap().clone();
    let count = |prefix: &str| {
        tokens
            .iter()
            .filter(|(_, s, ..)| s.starts_with(prefix))
            .count()
    };
    assert_eq!(count("repository:library/nginx:"), 1, "{tokens:?}");
    assert_eq!(count("repository:private/app:"), 1, "{tokens:?}");
    assert!(count("repository:short/app:") >= 3, "{tokens:?}");
    assert_eq!(hub.expired_uses.load(Ordering::SeqCst), 0);
}

/// Case: after its 429 (Retry-After: 1 h) the rate-limited registry got no other request.
fn a_rate_limited_registry_is_not_asked_again(limited: &Fixture) {
    assert_eq!(limited.seen().len(), 1, "{:?}", limited.seen());
}

/// Case: the docker config's password is in no log line.
fn registry_credentials_never_reach_the_log(sonde: &Sonde) {
    assert!(sonde.log().iter().all(|l| !l.contains("hubpass")));
}

/// Case: when a registry starts failing, no guess replaces the availability it had.
fn a_registry_that_starts_failing_leaves_availability_unknown(scene: &HubScene) {
    let (sonde, nginx) = (&scene.sonde, &scene.nginx);
    scene.hub.broken.store(true, Ordering::SeqCst);
    let now = runs(&sonde.metrics(), "hub");
    let m = sonde.wait_metrics(20, |m| runs(m, "hub") >= now + 2.0);
    assert_lines(&m.0, &[status("hub", nginx, "unreachable")]);
    assert!(!m.0.contains(&format!(
        "sonde_image_available{{check=\"hub\",image=\"{nginx}\"}}"
    )));
}

#[test]
fn concurrency_per_registry_is_limited() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let fixture = {
        let (in_flight, peak) = (Arc::clone(&in_flight), Arc::clone(&peak));
        Fixture::start(move |_req: &SeenRequest| {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(150));
            in_flight.fetch_sub(1, Ordering::SeqCst);
            Reply::status(200, "")
        })
    };
    let h = fixture.addr.to_string();
    let list: Vec<String> = (0..10).map(|i| format!("\"{h}/app/n{i}:v1\"")).collect();
    let dir = Dir::new();
    let config = format!(
        "checks:\n  - name: limited\n    kind: registry\n    max_concurrency_per_registry: 2\n    plain_http_registries: [\"{h}\"]\n    images: [{}]\n",
        list.join(", ")
    );
    let (code, out, err) = run_once(&dir, &config);
    assert_eq!(code, 0, "{err}\n{out}");
    assert_eq!(fixture.seen().len(), 10);
    assert!(
        peak.load(Ordering::SeqCst) <= 2,
        "peak {}",
        peak.load(Ordering::SeqCst)
    );
}

#[test]
fn a_registry_without_head_is_asked_with_get_once() {
    let fixture = Fixture::start(|req: &SeenRequest| match req.method.as_str() {
        "HEAD" => Reply::status(405, ""),
        _ => Reply::status(200, "{}").with_header("Docker-Content-Digest", "sha256:x"),
    });
    let h = fixture.addr.to_string();
    let dir = Dir::new();
    let config = format!(
        "checks:\n  - name: nohead\n    kind: registry\n    plain_http_registries: [\"{h}\"]\n    images: [\"{h}/app:v1\"]\n"
    );
    let (code, out, err) = run_once(&dir, &config);
    assert_eq!(code, 0, "{err}");
    assert_lines(&out, &[available("nohead", &format!("{h}/app:v1"), 1)]);
    let methods: Vec<String> = fixture.seen().iter().map(|r| r.method.clone()).collect();
    assert_eq!(methods, ["HEAD", "GET"]);
}

#[test]
fn bad_registry_configs_are_located_errors() {
    let dir = Dir::new();
    dir.write("bad.json", "{\"auths\": [1]}");
    let path = dir.write(
        "sonde.yml",
        "checks:\n  - name: r\n    kind: registry\n    images: []\n    plain_http_registries: [\"http://x/\"]\n    max_concurrency_per_registry: 0\n    docker_config_file: bad.json\n    imgaes: [x]\n",
    );
    let out = common::run(&["--config.check", "--config.file", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field `imgaes`"), "{err}");
    let path = dir.write(
        "sonde.yml",
        "checks:\n  - name: r\n    kind: registry\n    images: []\n    plain_http_registries: [\"http://x/\"]\n    max_concurrency_per_registry: 0\n    docker_config_file: bad.json\n",
    );
    let out = common::run(&["--config.check", "--config.file", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        ":4:13: check \"r\": `images` is empty",
        ":5:29: check \"r\": plain_http_registries: \"http://x/\" is not a registry host",
        ":6:35: check \"r\": max_concurrency_per_registry must be between 1 and 64",
        ":7:25: check \"r\": docker_config_file: cannot use",
    ] {
        assert!(err.contains(expected), "{expected:?} not in {err}");
    }
    // Interval default: 5m.
    let path = dir.write(
        "sonde.yml",
        "checks:\n  - name: r\n    kind: registry\n    images: [nginx]\n",
    );
    let out = common::run(&["--config.check", "--config.file", path.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fixture registry that answers manifest requests with `script` in turn (the last
/// answer repeats) and counts them.
fn scripted(script: Vec<Reply>) -> Fixture {
    let served = Arc::new(AtomicUsize::new(0));
    Fixture::start(move |_req: &SeenRequest| {
        let n = served.fetch_add(1, Ordering::SeqCst);
        script[n.min(script.len() - 1)].clone()
    })
}

fn present() -> Reply {
    Reply::status(200, "").with_header(
        "Docker-Content-Digest",
        &format!("sha256:{}", "c".repeat(64)),
    )
}

fn retries(m: &str, check: &str, host: &str) -> Option<f64> {
    common::Exposition(m.to_string()).value(&format!(
        "sonde_registry_retries_total{{check=\"{check}\",registry=\"{host}\"}}"
    ))
}

/// Two registry checks over plain HTTP to `hosts`: `retrying` (default retries) on
/// `retrying_images`, and `no-retries` (`retries: 0`) on `once_image`.
fn retry_config(hosts: &[String], retrying_images: &[String], once_image: &str) -> String {
    let plain: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
    let quoted: Vec<String> = retrying_images.iter().map(|i| format!("\"{i}\"")).collect();
    format!(
        "checks:
  - name: retrying
    kind: registry
    timeout: 20s
    plain_http_registries: [{plain}]
    images: [{}]
  - name: no-retries
    kind: registry
    retries: 0
    plain_http_registries: [{plain}]
    images: [\"{once_image}\"]
",
        quoted.join(", "),
        plain = plain.join(", "),
    )
}

/// 5xx and refused connections are tried again (`retries`, default 2) with backoff; a
/// refusal (401, 403, 404, 429) never is; `retries: 0` asks once.
#[test]
fn server_errors_and_failed_connections_are_retried_but_refusals_are_not() {
    let unavailable = || Reply::status(503, "busy");
    let flaky = scripted(vec![unavailable(), unavailable(), present()]);
    let down = scripted(vec![unavailable()]);
    let absent = scripted(vec![Reply::status(
        404,
        r#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#,
    )]);
    let limited = scripted(vec![
        Reply::status(429, "").with_header("Retry-After", "3600"),
    ]);
    let denied = scripted(vec![Reply::status(
        403,
        r#"{"errors":[{"code":"DENIED"}]}"#,
    )]);
    let once = scripted(vec![unavailable()]);
    let closed = images::free_port();
    let h = |f: &Fixture| f.addr.to_string();
    let refused = format!("127.0.0.1:{closed}");
    let hosts = [
        h(&flaky),
        h(&down),
        h(&absent),
        h(&limited),
        h(&denied),
        h(&once),
        refused.clone(),
    ];
    let image = |host: &str| format!("{host}/team/app:v1");
    let dir = Dir::new();
    let retrying = [
        &hosts[0], &hosts[1], &hosts[2], &hosts[3], &hosts[4], &refused,
    ];
    let config = retry_config(&hosts, &retrying.map(|h| image(h)), &image(&hosts[5]));
    let (code, out, err) = run_once(&dir, &config);
    assert_eq!(code, 1, "{err}");
    assert_lines(
        &out,
        &[
            available("retrying", &image(&hosts[0]), 1),
            status("retrying", &image(&hosts[1]), "unreachable"),
            available("retrying", &image(&hosts[2]), 0),
            status("retrying", &image(&hosts[3]), "rate_limited"),
            status("retrying", &image(&hosts[4]), "forbidden"),
            status("retrying", &image(&refused), "unreachable"),
            status("no-retries", &image(&hosts[5]), "unreachable"),
        ],
    );
    // 503, 503, 200: present after three requests, two of them retries.
    assert_eq!(flaky.seen().len(), 3);
    assert_eq!(retries(&out, "retrying", &hosts[0]), Some(2.0));
    // Always 503: the first request and two retries, then unreachable.
    assert_eq!(down.seen().len(), 3);
    assert_eq!(retries(&out, "retrying", &hosts[1]), Some(2.0));
    for (fixture, host) in [
        (&absent, &hosts[2]),
        (&limited, &hosts[3]),
        (&denied, &hosts[4]),
    ] {
        assert_eq!(fixture.seen().len(), 1, "{host}: {:?}", fixture.seen());
        assert_eq!(retries(&out, "retrying", host), Some(0.0), "{host}");
    }
    // Nothing listens: the connection is refused three times.
    assert_eq!(retries(&out, "retrying", &refused), Some(2.0));
    assert_eq!(once.seen().len(), 1);
    assert_eq!(retries(&out, "no-retries", &hosts[5]), Some(0.0));
    let findings = common::promtool_check_metrics(&out);
    assert!(findings.trim().is_empty(), "{findings}");
}

/// A token service that fails once with a 503 is asked again; the retry counts for the
/// registry whose token it is.
#[test]
fn a_token_service_error_is_retried() {
    let asked = Arc::new(AtomicUsize::new(0));
    let addr: Arc<Mutex<String>> = Arc::new(Mutex::new(String::new()));
    let fixture = {
        let (asked, addr) = (Arc::clone(&asked), Arc::clone(&addr));
        Fixture::start(move |req: &SeenRequest| {
            if req.path.starts_with("/token?") {
                return match asked.fetch_add(1, Ordering::SeqCst) {
                    0 => Reply::status(503, "token service restarting"),
                    _ => images::json(200, r#"{"token":"t1","expires_in":300}"#),
                };
            }
            if req.header("authorization") == Some("Bearer t1") {
                return present();
            }
            let realm = format!(
                "Bearer realm=\"http://{}/token\",service=\"reg\"",
                addr.lock().unwrap()
            );
            Reply::status(401, "").with_header("WWW-Authenticate", &realm)
        })
    };
    let h = fixture.addr.to_string();
    *addr.lock().unwrap() = h.clone();
    let dir = Dir::new();
    let config = format!(
        "checks:\n  - name: tok\n    kind: registry\n    plain_http_registries: [\"{h}\"]\n    images: [\"{h}/team/app:v1\"]\n"
    );
    let (code, out, err) = run_once(&dir, &config);
    assert_eq!(code, 0, "{err}\n{out}");
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    assert_eq!(retries(&out, "tok", &h), Some(1.0));
}

fn sourced(metric: &str, check: &str, image: &str, status: Option<&str>, source: &str) -> String {
    let status = status
        .map(|s| format!(",status=\"{s}\""))
        .unwrap_or_default();
    format!("{metric}{{check=\"{check}\",image=\"{image}\"{status},source=\"{source}\"}}")
}

/// Debian's docker-registry as the mirror of a registry that is down (nothing listens
/// on its port), and as two mirrors of Docker Hub (one with a path prefix, as a
/// proxy-cache project is) with `skip_upstream`: images come from the mirror, `source`
/// says which host answered, and a mirror's request says whose registry it stands in for.
#[test]
fn a_real_registry_serves_as_the_mirror_of_an_upstream_that_is_down() {
    let dir = Dir::new();
    let mirror = Registry::start(dir.path(), "mirror", &dir.path().join("storage"), "", "");
    let m = mirror.host();
    mirror.push_image("library/nginx", "1.25", false, "nginx");
    mirror.push_image("team/app", "v1", true, "app");
    mirror.push_image("dockerhub/library/busybox", "1.36", false, "busybox");
    let down = format!("127.0.0.1:{}", images::free_port());
    let config = format!(
        "checks:
  - name: mirrored
    kind: registry
    plain_http_registries: [\"{m}\", \"{down}\"]
    mirrors:
      \"{down}\": [\"{m}\"]
    images: [\"{down}/library/nginx:1.25\", \"{down}/team/app:v1\", \"{down}/team/gone:v1\"]
  - name: hub
    kind: registry
    plain_http_registries: [\"{m}\"]
    mirrors:
      docker.io: {{endpoints: [\"{m}\", \"{m}/dockerhub\"], skip_upstream: true}}
    images: [\"nginx:1.25\", \"busybox:1.36\", \"alpine:3.19\"]
"
    );
    let (code, out, err) = run_once(&dir, &config);
    assert_eq!(code, 1, "team/gone and alpine are nowhere: {err}");
    let a = "sonde_image_available";
    let st = "sonde_image_check_status";
    let prefixed = format!("{m}/dockerhub");
    for (check, image, status, source) in [
        (
            "mirrored",
            format!("{down}/library/nginx:1.25"),
            "available",
            m.as_str(),
        ),
        (
            "mirrored",
            format!("{down}/team/app:v1"),
            "available",
            m.as_str(),
        ),
        // The mirror says 404, the upstream cannot be reached: as containerd does, the
        // failure is reported, not the 404 (the upstream might have it).
        (
            "mirrored",
            format!("{down}/team/gone:v1"),
            "unreachable",
            down.as_str(),
        ),
        ("hub", "nginx:1.25".into(), "available", m.as_str()),
        ("hub", "busybox:1.36".into(), "available", prefixed.as_str()),
        ("hub", "alpine:3.19".into(), "absent", prefixed.as_str()),
    ] {
        let line = format!("{} 1", sourced(st, check, &image, Some(status), source));
        assert!(has_line(&out, &line), "missing {line:?} in:\n{out}");
        if status == "available" {
            let line = format!("{} 1", sourced(a, check, &image, None, source));
            assert!(has_line(&out, &line), "missing {line:?} in:\n{out}");
        }
    }
    assert!(err.contains("also asked"), "{err}");
    let requests = manifest_requests(&mirror.log_text());
    assert!(
        requests
            .iter()
            .any(|(_, uri)| uri == "/v2/dockerhub/library/busybox/manifests/1.36?ns=docker.io"),
        "{requests:?}"
    );
    assert!(
        requests.iter().any(|(_, uri)| uri
            == &format!(
                "/v2/library/nginx/manifests/1.25?ns={}",
                down.replace(':', "%3A")
            )),
        "{requests:?}"
    );
    let findings = common::promtool_check_metrics(&out);
    assert!(findings.trim().is_empty(), "{findings}");
}

#[test]
fn bad_mirrors_and_retries_are_located_errors() {
    let dir = Dir::new();
    let path = dir.write(
        "sonde.yml",
        "checks:\n  - name: r\n    kind: registry\n    images: [nginx]\n    retries: 11\n    mirrors:\n      docker.io: [\"https://mirror.local\"]\n      \"not a host\": [m.local]\n      ghcr.io: {endpoints: [m.local], skip_upstreams: true}\n",
    );
    let out = common::run(&["--config.check", "--config.file", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field `skip_upstreams`"), "{err}");
    let path = dir.write(
        "sonde.yml",
        "checks:\n  - name: r\n    kind: registry\n    images: [nginx]\n    retries: 11\n    mirrors:\n      docker.io: [\"https://mirror.local\"]\n      \"not a host\": [m.local]\n      ghcr.io: []\n",
    );
    let out = common::run(&["--config.check", "--config.file", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        ":5:14: check \"r\": retries must be between 0 and 10",
        ":7:19: check \"r\": mirrors: \"https://mirror.local\" is not a mirror host",
        ":8:7: check \"r\": mirrors: \"not a host\" is not a registry host",
        ":9:7: check \"r\": mirrors: \"ghcr.io\" has no mirror hosts",
    ] {
        assert!(err.contains(expected), "{expected:?} not in {err}");
    }
}

/// The registry and kubernetes_images examples of the README load as written.
#[test]
fn the_readme_examples_load() {
    images::readme::check_examples("## kind: registry and kind: kubernetes_images");
}
