//! `--once` feeding other Prometheus components, all Debian's real ones: a push to
//! `prometheus-pushgateway` read back from its API, and node_exporter's textfile
//! collector serving the `--once` output.

mod common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::process::Command;

use common::*;

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Sample lines of an exposition as series -> value, for lines starting with `prefix`.
fn samples(text: &str, prefix: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// Sorts the labels of a series so label order does not matter.
fn canonical(series: &str) -> String {
    let Some((name, rest)) = series.split_once('{') else {
        return series.to_string();
    };
    let mut labels: Vec<&str> = rest
        .trim_end_matches('}')
        .split("\",")
        .map(|l| l.trim_end_matches('"'))
        .collect();
    labels.sort();
    format!("{name}{{{}}}", labels.join(","))
}

fn hostname() -> String {
    let out = Command::new("hostname").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn once_pushes_to_a_real_pushgateway() {
    let f = Fixture::start(|_| Reply::status(200, "ok"));
    let dir = Dir::new();
    let cfg = dir.write(
        "sonde.yml",
        format!(
            "checks:\n  - name: web\n    kind: http\n    urls: [\"{}\"]\n",
            f.url("/")
        ),
    );
    let gateway_daemon = Daemon::start(
        "prometheus-pushgateway",
        |addr| vec![format!("--web.listen-address={addr}")],
        "/-/ready",
        None,
    );
    let addr = gateway_daemon.addr;
    let gateway = format!("http://{addr}");
    let out = run(&[
        "--once",
        "-c",
        cfg.to_str().unwrap(),
        "--push.gateway",
        &gateway,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pushed = request(addr, "GET", "/metrics", &[], b"").text();
    let instance = hostname();
    let up = format!(
        "sonde_http_up{{check=\"web\",instance=\"{instance}\",job=\"sonde\",url=\"{}\"}} 1",
        f.url("/")
    );
    assert!(pushed.contains(&up), "{up} not in:\n{pushed}");
    let api = request(addr, "GET", "/api/v1/metrics", &[], b"").json();
    let groups = api["data"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{api}");
    assert_eq!(groups[0]["labels"]["job"], "sonde");
    assert_eq!(groups[0]["labels"]["instance"], instance.as_str());
    assert!(groups[0]["sonde_check_success"].is_object(), "{api}");

    // A gateway that is not there: exit 1 and one line saying so, naming the gateway
    // without the credentials of its URL.
    let gone = free_addr();
    let out = run(&[
        "--once",
        "-c",
        cfg.to_str().unwrap(),
        "--push.gateway",
        &format!("http://bob:hunter2@{gone}"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.lines().any(|l| l.starts_with(&format!(
            "sonde: push to http://***@{gone}/metrics/job/sonde/instance/"
        ))),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
    // --push.gateway alone is a usage error.
    assert_eq!(run(&["--push.gateway", &gateway]).status.code(), Some(2));
}

/// Credentials in the gateway's URL are sent as Basic auth; a gateway that refuses
/// them gets a message with its status and without the password.
#[test]
fn a_refused_push_names_the_gateway_without_its_password() {
    let gateway = Fixture::start(|_| Reply::status(401, "Unauthorized"));
    let site = Fixture::start(|_| Reply::status(200, "ok"));
    let dir = Dir::new();
    let cfg = dir.write(
        "sonde.yml",
        format!(
            "checks:\n  - name: web\n    kind: http\n    urls: [\"{}\"]\n",
            site.url("/")
        ),
    );
    let url = gateway.url("").replace("http://", "http://bob:hunter2@");
    let out = run(&[
        "--once",
        "-c",
        cfg.to_str().unwrap(),
        "--push.gateway",
        &url,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("failed with status 401: Unauthorized"),
        "{stderr}"
    );
    assert!(stderr.contains("push to http://***@127.0.0.1:"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    let seen = gateway.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "PUT");
    // base64("bob:hunter2")
    assert_eq!(
        seen[0].header("authorization"),
        Some("Basic Ym9iOmh1bnRlcjI=")
    );
    // A port past 65535 is refused, not taken for none (port 80).
    let out = run(&[
        "--once",
        "-c",
        cfg.to_str().unwrap(),
        "--push.gateway",
        "http://127.0.0.1:99999",
    ]);
    assert_eq!(out.status.code(), Some(2));
    // A gateway URL sonde refuses is named without its password too.
    let out = run(&[
        "--once",
        "-c",
        cfg.to_str().unwrap(),
        "--push.gateway",
        "ftp://bob:hunter2@h/",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\"ftp://***@h/\""), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn node_exporter_textfile_collector_serves_once_output_unchanged() {
    let f = Fixture::start(|_| Reply::status(200, "ok"));
    let dir = Dir::new();
    let cfg = dir.write(
        "sonde.yml",
        format!(
            "checks:\n  - name: web\n    kind: http\n    urls: [\"{}\", \"{}\"]\n  - name: other\n    kind: http\n    urls: [\"{}\"]\n",
            f.url("/a"),
            f.url("/b"),
            f.url("/c")
        ),
    );
    let out = run(&["--once", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let textfile_dir = dir.path().join("textfile");
    std::fs::create_dir(&textfile_dir).unwrap();
    std::fs::write(textfile_dir.join("sonde.prom"), &text).unwrap();
    let node = Daemon::start(
        "prometheus-node-exporter",
        |addr| {
            vec![
                format!("--web.listen-address={addr}"),
                "--collector.disable-defaults".into(),
                "--collector.textfile".into(),
                format!("--collector.textfile.directory={}", textfile_dir.display()),
            ]
        },
        "/metrics",
        None,
    );
    let addr = node.addr;
    let served = request(addr, "GET", "/metrics", &[], b"").text();
    assert!(served.contains("node_textfile_scrape_error 0"), "{served}");
    let ours: BTreeMap<String, f64> = samples(&text, "sonde_")
        .into_iter()
        .map(|(k, v)| (canonical(&k), v))
        .collect();
    let theirs: BTreeMap<String, f64> = samples(&served, "sonde_")
        .into_iter()
        .map(|(k, v)| (canonical(&k), v))
        .collect();
    assert!(ours.len() > 40, "{}", ours.len());
    assert_eq!(ours, theirs);
    // HELP texts survive too.
    assert!(served.contains(
        "# HELP sonde_http_up 1 if the last probe of the URL met every condition, else 0."
    ));
}
