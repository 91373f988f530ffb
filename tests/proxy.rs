//! Proxies for every kind that speaks HTTP, through a small forward proxy written
//! here: CONNECT tunnels for https targets, the absolute form for http ones, Basic
//! proxy authentication (from the proxy URL or `proxy_password_file`), `no_proxy`,
//! `proxy_from_environment` with `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`, a proxy that
//! refuses or is not there, and the same proxy in front of a Docker Hub fixture and
//! Debian's real `docker-registry`.
//!
//! Targets are named `*.sonde.test`, a name only the proxy resolves (to 127.0.0.1): a
//! check that reaches one went through the proxy.

mod common;
mod images;
mod outbound;

use std::process::{Command, Stdio};
use std::sync::OnceLock;

use common::*;
use outbound::{PROXY_PASSWORD, PROXY_USER, TestProxy};

fn route(req: &SeenRequest) -> Reply {
    match req.path.as_str() {
        "/ok" => Reply::status(200, "through"),
        _ => Reply::status(404, "no such fixture"),
    }
}

fn series(name: &str, check: &str, url: &str) -> String {
    format!("{name}{{check=\"{check}\",url=\"{url}\"}}")
}

fn reason(check: &str, url: &str, reason: &str) -> String {
    format!("sonde_http_failures_total{{check=\"{check}\",url=\"{url}\",reason=\"{reason}\"}}")
}

/// Asserts that `series` is 1 in `m`, showing `context` (stderr, the exposition) if not.
fn assert_one(m: &Exposition, series: &str, context: &str) {
    assert_eq!(m.value(series), Some(1.0), "{series}\n{context}");
}

/// Asserts that no secret shows in any of `texts` (logs, expositions).
fn assert_no_secret(texts: &[&str], secrets: &[&str]) {
    for secret in secrets {
        assert!(!texts.iter().any(|t| t.contains(secret)), "{secret} leaked");
    }
}

/// The proxy and what stands behind it: a plain and a TLS fixture (its CA in `ca`),
/// and the URLs the checks here probe through the proxy (`http`, `https`) or past it
/// (`bypass`).
struct Site {
    proxy: TestProxy,
    ca: TestCa,
    web: Fixture,
    secure: Fixture,
    http: String,
    https: String,
    bypass: String,
}

impl Site {
    fn start() -> Site {
        let proxy = TestProxy::start();
        let ca = TestCa::new();
        let web = Fixture::start(route);
        let secure = Fixture::start_tls(
            &ca.leaf_for(&["web.sonde.test"], (2020, 1, 1), (2040, 1, 1)),
            route,
        );
        Site {
            http: format!("http://web.sonde.test:{}/ok", web.addr.port()),
            https: format!("https://web.sonde.test:{}/ok", secure.addr.port()),
            bypass: format!("http://bypass.localhost:{}/ok", web.addr.port()),
            proxy,
            ca,
            web,
            secure,
        }
    }

    /// The proxy's URL with `user_info` (`user:password@`, `user@` or empty).
    fn proxy_url(&self, user_info: &str) -> String {
        self.proxy.url(user_info)
    }
}

/// Runs `sonde --once` on `config` with only the given proxy variables set.
fn once_with_env(dir: &Dir, config: &str, env: &[(&str, &str)]) -> (Exposition, String) {
    let cfg = dir.write("sonde.yml", config);
    let mut command = Command::new(sonde_bin());
    command
        .args(["--once", "-c", cfg.to_str().unwrap()])
        .stdin(Stdio::null());
    for var in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    let out = command.output().expect("run sonde");
    (
        Exposition(String::from_utf8(out.stdout).unwrap()),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct ProxyRun {
    m: Exposition,
    stderr: String,
    seen: Vec<String>,
    target_seen: Vec<String>,
    http: String,
    https: String,
    bypass: String,
    proxy: String,
    dead: String,
}

static PROXY_RUN: OnceLock<Result<ProxyRun, String>> = OnceLock::new();

/// One `--once` over every explicit `proxy_url` case.
fn proxy_run() -> &'static ProxyRun {
    shared(&PROXY_RUN, || {
        let site = Site::start();
        let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (http, https, bypass) = (&site.http, &site.https, &site.bypass);
        let with_pw = site.proxy_url(&format!("{PROXY_USER}:{PROXY_PASSWORD}@"));
        let user_only = site.proxy_url(&format!("{PROXY_USER}@"));
        let wrong = site.proxy_url(&format!("{PROXY_USER}:wrong@"));
        let dead = format!("http://127.0.0.1:{dead_port}");
        let dir = Dir::new();
        dir.write("ca.pem", &site.ca.pem);
        dir.write("proxy-pw", format!("{PROXY_PASSWORD}\n"));
        let config = format!(
            "checks:
  - {{name: inline, kind: http, proxy_url: \"{with_pw}\", tls: {{ca_file: ca.pem}}, urls: [\"{http}\", \"{https}\"]}}
  - {{name: pw_file, kind: http, proxy_url: \"{user_only}\", proxy_password_file: proxy-pw, tls: {{ca_file: ca.pem}}, urls: [\"{http}\", \"{https}\"]}}
  - {{name: wrong_pw, kind: http, proxy_url: \"{wrong}\", tls: {{ca_file: ca.pem}}, urls: [\"{http}\", \"{https}\"]}}
  - {{name: bypassed, kind: http, proxy_url: \"{with_pw}\", no_proxy: \"bypass.localhost, .other.test\", urls: [\"{bypass}\"]}}
  - {{name: dead, kind: http, proxy_url: \"{dead}\", urls: [\"{http}\"]}}
  - {{name: direct, kind: http, urls: [\"{http}\"]}}
"
        );
        let (m, stderr) = once_with_env(&dir, &config, &[]);
        ProxyRun {
            m,
            stderr,
            seen: site.proxy.seen(),
            target_seen: site.web.seen().into_iter().map(|r| r.path).collect(),
            proxy: format!("http://127.0.0.1:{}", site.proxy.server.addr.port()),
            http: site.http,
            https: site.https,
            bypass: site.bypass,
            dead,
        }
    })
}

/// An http target goes to the proxy in the absolute form; an https one through a
/// CONNECT tunnel; both with the credentials of the proxy URL or of the password file.
#[test]
fn http_and_https_targets_go_through_proxy_url_with_basic_auth() {
    let r = proxy_run();
    for check in ["inline", "pw_file"] {
        for url in [&r.http, &r.https] {
            assert_one(&r.m, &series("sonde_http_up", check, url), &r.stderr);
        }
    }
    let port = |url: &str| {
        url.rsplit(':')
            .next()
            .unwrap()
            .trim_end_matches("/ok")
            .to_string()
    };
    let absolute = format!("GET http://web.sonde.test:{}/ok HTTP/1.1", port(&r.http));
    let connect = format!("CONNECT web.sonde.test:{} HTTP/1.1", port(&r.https));
    assert!(
        r.seen.iter().filter(|l| **l == absolute).count() >= 2,
        "{:?}",
        r.seen
    );
    assert!(
        r.seen.iter().filter(|l| **l == connect).count() >= 2,
        "{:?}",
        r.seen
    );
    assert!(
        r.target_seen.iter().all(|p| p == "/ok"),
        "{:?}",
        r.target_seen
    );
    // The connection sonde made was to the proxy, over IPv4.
    assert_eq!(
        r.m.value(&series("sonde_http_ip_protocol", "inline", &r.https)),
        Some(4.0)
    );
    let version = format!(
        "sonde_http_tls_version_info{{check=\"inline\",url=\"{}\",version=\"TLS 1.3\"}}",
        r.https
    );
    assert_one(&r.m, &version, &r.m.0);
}

/// A proxy that refuses the credentials: the CONNECT is a `proxy` failure that says
/// what the proxy answered; the absolute-form request gets the proxy's 407 as its status.
#[test]
fn a_proxy_that_refuses_the_credentials_is_named_in_the_cause() {
    let r = proxy_run();
    assert_one(&r.m, &reason("wrong_pw", &r.https, "proxy"), &r.m.0);
    assert_eq!(
        r.m.value(&series("sonde_http_status_code", "wrong_pw", &r.http)),
        Some(407.0)
    );
    assert_one(&r.m, &reason("wrong_pw", &r.http, "status_code"), &r.m.0);
    let port = r.https.rsplit(':').next().unwrap().trim_end_matches("/ok");
    let words = format!(
        "the proxy {} answered 407 Proxy Authentication Required to CONNECT web.sonde.test:{port}",
        r.proxy
    );
    assert!(r.stderr.contains(&words), "{words}\n{}", r.stderr);
    let basic = base64(format!("{PROXY_USER}:{PROXY_PASSWORD}").as_bytes());
    assert_no_secret(&[&r.stderr, &r.m.0], &[PROXY_PASSWORD, "wrong@", &basic]);
}

#[test]
fn no_proxy_hosts_go_direct_and_the_rest_needs_the_proxy() {
    let r = proxy_run();
    assert_one(
        &r.m,
        &series("sonde_http_up", "bypassed", &r.bypass),
        &r.stderr,
    );
    assert!(!r.seen.iter().any(|l| l.contains("bypass")), "{:?}", r.seen);
    // Without a proxy the name does not resolve: the checks above did go through it.
    assert_one(&r.m, &reason("direct", &r.http, "dns"), &r.m.0);
}

#[test]
fn a_proxy_that_is_not_there_is_a_proxy_failure() {
    let r = proxy_run();
    assert_one(&r.m, &reason("dead", &r.http, "proxy"), &r.m.0);
    let words = format!(
        "cannot connect to the proxy at {} (connection refused)",
        r.dead.trim_start_matches("http://")
    );
    assert!(r.stderr.contains(&words), "{words}\n{}", r.stderr);
}

/// `proxy_from_environment: true` reads HTTPS_PROXY for https targets and HTTP_PROXY
/// for http ones, skips NO_PROXY hosts and loopback addresses; without the key the
/// environment is ignored.
#[test]
fn proxy_from_environment_honours_https_proxy_http_proxy_and_no_proxy() {
    let site = Site::start();
    let (http, https, bypass) = (&site.http, &site.https, &site.bypass);
    let loopback = site.web.url("/ok");
    let dir = Dir::new();
    dir.write("ca.pem", &site.ca.pem);
    let config = format!(
        "checks:
  - {{name: env, kind: http, proxy_from_environment: true, tls: {{ca_file: ca.pem}}, urls: [\"{http}\", \"{https}\", \"{bypass}\", \"{loopback}\"]}}
  - {{name: ignored, kind: http, urls: [\"{http}\"]}}
"
    );
    let proxy_url = site.proxy_url(&format!("{PROXY_USER}:{PROXY_PASSWORD}@"));
    let (m, stderr) = once_with_env(
        &dir,
        &config,
        &[
            ("HTTPS_PROXY", &proxy_url),
            ("HTTP_PROXY", &proxy_url),
            ("NO_PROXY", "example.org, bypass.localhost"),
        ],
    );
    for url in [http, https, bypass, &loopback] {
        assert_one(&m, &series("sonde_http_up", "env", url), &stderr);
    }
    assert_one(&m, &reason("ignored", http, "dns"), &m.0);
    let seen = site.proxy.seen();
    assert_eq!(seen.len(), 2, "only the two *.sonde.test targets: {seen:?}");
    assert!(seen.contains(&format!("GET {http} HTTP/1.1")), "{seen:?}");
    assert!(
        seen.contains(&format!(
            "CONNECT web.sonde.test:{} HTTP/1.1",
            site.secure.addr.port()
        )),
        "{seen:?}"
    );
    assert_no_secret(&[&stderr, &m.0], &[PROXY_PASSWORD]);
}

/// Docker Hub's API with one repository of `acme`.
fn acme_hub() -> Fixture {
    Fixture::start(|req| match req.path.split('?').next() {
        Some("/v2/namespaces/acme/repositories") => Reply::Http {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: serde_json::json!({
                "count": 1,
                "next": null,
                "previous": null,
                "results": [{
                    "name": "app", "namespace": "acme", "repository_type": "image",
                    "status": 1, "is_private": false, "star_count": 3, "pull_count": 1234,
                    "last_updated": "2024-05-06T07:08:09.000000Z"
                }]
            })
            .to_string()
            .into_bytes(),
        },
        _ => Reply::status(404, "{\"message\":\"object not found\"}"),
    })
}

/// Checks of the dockerhub and registry kinds through the proxy at `with_pw`, and one
/// registry check through it with the `wrong` password.
fn proxied_config(
    hub_port: u16,
    with_pw: &str,
    wrong: &str,
    plain_host: &str,
    secure_host: &str,
) -> String {
    format!(
        "checks:
  - name: hub
    kind: dockerhub
    api_url: http://hub.sonde.test:{hub_port}
    organizations: [acme]
    proxy_url: \"{with_pw}\"
  - name: images
    kind: registry
    proxy_url: \"{with_pw}\"
    plain_http_registries: [\"{plain_host}\"]
    docker_config_file: docker-config.json
    tls: {{ca_file: ca.pem, server_name: localhost}}
    images: [\"{plain_host}/team/app:v1\", \"{plain_host}/team/app:v404\", \"{secure_host}/team/api:v2\"]
  - name: refused
    kind: registry
    proxy_url: \"{wrong}\"
    tls: {{ca_file: ca.pem, server_name: localhost}}
    images: [\"{secure_host}/team/api:v2\"]
"
    )
}

/// Two real registries reached through the proxy: a plain one with `team/app:v1`, and
/// one over TLS with Basic auth (`ca.pem`, `docker-config.json` in `dir`) with
/// `team/api:v2`.
fn proxied_registries(dir: &Dir) -> (images::Registry, images::Registry) {
    let plain = images::Registry::start(
        dir.path(),
        "plain-proxied",
        &dir.path().join("plain"),
        "",
        "",
    );
    plain.push_image("team/app", "v1", false, "app");
    let ca = images::TestCa::new();
    let secure_dir = dir.path().join("secure");
    std::fs::create_dir_all(&secure_dir).unwrap();
    let secure = images::secure_registry(&secure_dir, &ca, "puller", "pull-s3cret", |r| {
        r.push_image("team/api", "v2", true, "api");
    });
    let secure_host = format!("secure.sonde.test:{}", secure.addr.port());
    dir.write("ca.pem", &ca.ca_pem);
    dir.write(
        "docker-config.json",
        images::docker_config(&secure_host, "puller", "pull-s3cret"),
    );
    (plain, secure)
}

/// The proxy keys are the shared connection keys: a dockerhub check and registry
/// checks (plain http, and https with Basic auth to the real registry) use them too.
#[test]
fn dockerhub_and_registry_checks_go_through_the_same_proxy() {
    let proxy = TestProxy::start();
    let hub = acme_hub();
    let dir = Dir::new();
    let (plain, secure) = proxied_registries(&dir);
    let plain_host = format!("registry.sonde.test:{}", plain.addr.port());
    let secure_host = format!("secure.sonde.test:{}", secure.addr.port());
    let with_pw = proxy.url(&format!("{PROXY_USER}:{PROXY_PASSWORD}@"));
    let config = proxied_config(
        hub.addr.port(),
        &with_pw,
        &proxy.url(&format!("{PROXY_USER}:wrong@")),
        &plain_host,
        &secure_host,
    );
    let (m, stderr) = once_with_env(&dir, &config, &[]);
    assert_eq!(
        m.value(
            "sonde_dockerhub_pulls_total{check=\"hub\",organization=\"acme\",repository=\"app\"}"
        ),
        Some(1234.0),
        "{stderr}"
    );
    for (image, status) in [
        (format!("{plain_host}/team/app:v1"), "available"),
        (format!("{plain_host}/team/app:v404"), "absent"),
        (format!("{secure_host}/team/api:v2"), "available"),
    ] {
        let series = format!(
            "sonde_image_check_status{{check=\"images\",image=\"{image}\",status=\"{status}\"}}"
        );
        assert_one(&m, &series, &format!("{stderr}\n{}", m.0));
    }
    // A proxy that refuses makes the registry unreachable, and the log says why.
    let refused = format!(
        "sonde_image_check_status{{check=\"refused\",image=\"{secure_host}/team/api:v2\",status=\"unreachable\"}}"
    );
    assert_one(&m, &refused, &m.0);
    assert!(
        stderr.contains(&format!(
            "answered 407 Proxy Authentication Required to CONNECT {secure_host}"
        )),
        "{stderr}"
    );
    let seen = proxy.seen();
    for expected in [
        format!(
            "GET http://hub.sonde.test:{}/v2/namespaces/acme/repositories",
            hub.addr.port()
        ),
        format!("HEAD http://{plain_host}/v2/team/app/manifests/v1 HTTP/1.1"),
        format!("CONNECT {secure_host} HTTP/1.1"),
    ] {
        assert!(
            seen.iter().any(|l| l.starts_with(&expected)),
            "{expected} not in {seen:?}"
        );
    }
    assert_no_secret(&[&stderr, &m.0], &[PROXY_PASSWORD, "pull-s3cret"]);
    drop((plain, secure));
}
