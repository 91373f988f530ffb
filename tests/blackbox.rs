//! sonde side by side with Debian's `prometheus-blackbox-exporter` (0.23) on one matrix
//! of targets served here on 127.0.0.1: 200, 503, a redirect, a pinned self-signed
//! certificate made by `openssl req -x509`, an expired certificate, a server that
//! requires a client certificate (with and without one), and a forward proxy (an http
//! and an https target). Both probe every target once: sonde with `--once`, blackbox
//! through `/probe?target=..&module=..`. They must agree on up/down, the status code,
//! the redirects, the TLS version and the earliest certificate expiry wherever both
//! export them; the table printed (`--nocapture`) shows every row.

mod common;
mod outbound;

use common::*;
use outbound::*;

fn route(req: &SeenRequest) -> Reply {
    match req.path.as_str() {
        "/ok" => Reply::status(200, "all good"),
        "/503" => Reply::status(503, "unavailable"),
        "/redirect" => Reply::status(302, "").with_header("Location", "/ok"),
        _ => Reply::status(404, "no such fixture"),
    }
}

/// One target and the module (blackbox) / tls keys (sonde) it is probed with.
struct Row {
    name: &'static str,
    url: String,
    /// The keys of blackbox's `http:` module, as YAML flow-mapping entries.
    blackbox: String,
    /// The same settings as sonde's keys, as YAML flow-mapping entries.
    sonde: String,
}

/// What one exporter said about one target.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    up: Option<f64>,
    status: Option<f64>,
    redirects: Option<f64>,
    tls_version: Option<String>,
    earliest_expiry: Option<f64>,
}

/// Reads blackbox's answer to `/probe`.
fn blackbox_seen(text: &str) -> Seen {
    let m = Exposition(text.to_string());
    Seen {
        up: m.value("probe_success"),
        status: m.value("probe_http_status_code"),
        redirects: m.value("probe_http_redirects"),
        tls_version: label_of(text, "probe_tls_version_info{", "version"),
        earliest_expiry: m.value("probe_ssl_earliest_cert_expiry"),
    }
}

/// Reads sonde's series for `check` and `url`.
fn sonde_seen(m: &Exposition, check: &str, url: &str) -> Seen {
    let of = |name: &str| m.value(&format!("{name}{{check=\"{check}\",url=\"{url}\"}}"));
    let prefix = format!("sonde_http_tls_version_info{{check=\"{check}\",url=\"{url}\",");
    Seen {
        up: of("sonde_http_up"),
        status: of("sonde_http_status_code"),
        redirects: of("sonde_http_redirects"),
        tls_version: label_of(&m.0, &prefix, "version"),
        earliest_expiry: of("sonde_http_tls_cert_not_after_timestamp_seconds"),
    }
}

/// The value of label `label` of the first sample line starting with `prefix`.
fn label_of(text: &str, prefix: &str, label: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with(prefix))?;
    let start = line.find(&format!("{label}=\""))? + label.len() + 2;
    let end = line[start..].find('"')? + start;
    Some(line[start..end].to_string())
}

fn show(v: &Option<impl std::fmt::Display>) -> String {
    v.as_ref().map_or("-".into(), |v| v.to_string())
}

#[test]
fn sonde_and_blackbox_exporter_agree_on_a_matrix_of_targets() {
    let dir = Dir::new();
    let p = dir.path().display().to_string();
    let web = Fixture::start(route);
    let pinned = Fixture::start_tls(&openssl_self_signed(dir.path(), "pinned"), route);
    let ca = TestCa::new();
    dir.write("ca.pem", &ca.pem);
    let expired = Fixture::start_tls(&ca.leaf((2020, 1, 1), (2021, 3, 4)), route);
    let pki = ClientPki::new();
    pki.client("client", "ec", "ca");
    let mtls = pki.server(&ca.leaf((2020, 1, 1), (2040, 6, 15)), route);
    let secure = Fixture::start_tls(&ca.leaf((2020, 1, 1), (2041, 7, 7)), route);
    let proxy = TestProxy::start();
    let proxy_url = proxy.url(&format!("{PROXY_USER}:{PROXY_PASSWORD}@"));
    let https = |f: &Fixture, path: &str| format!("https://127.0.0.1:{}{path}", f.addr.port());
    let client = format!(
        "cert_file: {0}/client.pem, key_file: {0}/client.key",
        pki.path().display()
    );
    let rows = [
        Row {
            name: "ok_200",
            url: web.url("/ok"),
            blackbox: String::new(),
            sonde: String::new(),
        },
        Row {
            name: "status_503",
            url: web.url("/503"),
            blackbox: String::new(),
            sonde: String::new(),
        },
        Row {
            name: "redirect",
            url: web.url("/redirect"),
            blackbox: String::new(),
            sonde: String::new(),
        },
        Row {
            name: "pinned_self_signed",
            url: https(&pinned, "/ok"),
            blackbox: format!("tls_config: {{ca_file: {p}/pinned.pem}}"),
            sonde: format!("tls: {{ca_file: {p}/pinned.pem}}"),
        },
        Row {
            name: "expired",
            url: https(&expired, "/ok"),
            blackbox: format!("tls_config: {{ca_file: {p}/ca.pem}}"),
            sonde: format!("tls: {{ca_file: {p}/ca.pem}}"),
        },
        Row {
            name: "client_cert_given",
            url: https(&mtls, "/ok"),
            blackbox: format!("tls_config: {{ca_file: {p}/ca.pem, {client}}}"),
            sonde: format!("tls: {{ca_file: {p}/ca.pem, {client}}}"),
        },
        Row {
            name: "client_cert_missing",
            url: https(&mtls, "/ok"),
            blackbox: format!("tls_config: {{ca_file: {p}/ca.pem}}"),
            sonde: format!("tls: {{ca_file: {p}/ca.pem}}"),
        },
        Row {
            name: "proxy_http",
            url: web.url("/ok"),
            blackbox: format!("proxy_url: \"{proxy_url}\""),
            sonde: format!("proxy_url: \"{proxy_url}\""),
        },
        Row {
            name: "proxy_https",
            url: https(&secure, "/ok"),
            blackbox: format!("proxy_url: \"{proxy_url}\", tls_config: {{ca_file: {p}/ca.pem}}"),
            sonde: format!("proxy_url: \"{proxy_url}\", tls: {{ca_file: {p}/ca.pem}}"),
        },
    ];

    // sonde: one check per row, all in one --once.
    let mut config = String::from("checks:\n");
    for row in &rows {
        let keys = if row.sonde.is_empty() {
            String::new()
        } else {
            format!(", {}", row.sonde)
        };
        config.push_str(&format!(
            "  - {{name: {}, kind: http, timeout: 5s{keys}, urls: [\"{}\"]}}\n",
            row.name, row.url
        ));
    }
    let cfg = dir.write("sonde.yml", config);
    let out = run(&["--once", "-c", cfg.to_str().unwrap()]);
    let sonde = Exposition(String::from_utf8(out.stdout).unwrap());
    let sonde_log = String::from_utf8_lossy(&out.stderr).into_owned();

    // blackbox: one module per row. IPv4 first, as every target is 127.0.0.1.
    let mut modules = String::from("modules:\n");
    for row in &rows {
        let keys = if row.blackbox.is_empty() {
            String::new()
        } else {
            format!(", {}", row.blackbox)
        };
        modules.push_str(&format!(
            "  {}:\n    prober: http\n    timeout: 5s\n    http: {{preferred_ip_protocol: ip4{keys}}}\n",
            row.name
        ));
    }
    let bb_config = dir.write("blackbox.yml", modules);
    let blackbox = start_blackbox_exporter(&dir, &bb_config);

    let mut table = String::from(
        "| target | exporter | up | status | redirects | TLS version | earliest expiry |\n|---|---|---|---|---|---|---|\n",
    );
    let mut disagreements = Vec::new();
    for row in &rows {
        let path = format!("/probe?target={}&module={}", percent(&row.url), row.name);
        let answer = request(blackbox.addr, "GET", &path, &[], b"");
        assert_eq!(answer.status, 200, "{}: {}", row.name, answer.text());
        let b = blackbox_seen(&answer.text());
        let s = sonde_seen(&sonde, row.name, &row.url);
        for (who, seen) in [("blackbox", &b), ("sonde", &s)] {
            table.push_str(&format!(
                "| {} | {who} | {} | {} | {} | {} | {} |\n",
                row.name,
                show(&seen.up),
                show(&seen.status),
                show(&seen.redirects),
                show(&seen.tls_version),
                show(&seen.earliest_expiry)
            ));
        }
        let mut differ = |what: &str, same: bool| {
            if !same {
                disagreements.push(format!("{}: {what}", row.name));
            }
        };
        differ("up", b.up == s.up);
        differ("status code", b.status == s.status);
        differ("redirects", b.redirects == s.redirects);
        // Compared where both export them: blackbox has no TLS series without a
        // completed handshake; sonde keeps the expiry of what was presented.
        if b.tls_version.is_some() && s.tls_version.is_some() {
            differ("TLS version", b.tls_version == s.tls_version);
        }
        if b.earliest_expiry.is_some() && s.earliest_expiry.is_some() {
            differ("earliest expiry", b.earliest_expiry == s.earliest_expiry);
        }
    }
    println!("{table}");
    assert!(
        disagreements.is_empty(),
        "sonde and blackbox_exporter disagree: {disagreements:?}\n{table}\nsonde's log:\n{sonde_log}"
    );
    // The rows mean what they say: each exporter saw what was meant.
    let up = |name: &str| {
        sonde_seen(
            &sonde,
            name,
            &rows.iter().find(|r| r.name == name).unwrap().url,
        )
        .up
    };
    for (name, expected) in [
        ("ok_200", 1.0),
        ("status_503", 0.0),
        ("redirect", 1.0),
        ("pinned_self_signed", 1.0),
        ("expired", 0.0),
        ("client_cert_given", 1.0),
        ("client_cert_missing", 0.0),
        ("proxy_http", 1.0),
        ("proxy_https", 1.0),
    ] {
        assert_eq!(up(name), Some(expected), "{name}\n{table}");
    }
    // Both exporters' proxied probes reached the proxy: the absolute form for the
    // http target, CONNECT for the https one.
    let through = proxy.seen();
    let absolute = format!("GET {} HTTP/1.1", web.url("/ok"));
    let connect = format!("CONNECT 127.0.0.1:{} HTTP/1.1", secure.addr.port());
    for line in [absolute, connect] {
        assert_eq!(
            through.iter().filter(|l| **l == line).count(),
            2,
            "{line} in {through:?}"
        );
    }
    // Where only sonde speaks: an expired certificate's expiry (blackbox #1119).
    let expired_row = sonde_seen(&sonde, "expired", &https(&expired, "/ok"));
    assert_eq!(
        expired_row.earliest_expiry,
        Some(unix_day(2021, 3, 4) as f64)
    );
}
