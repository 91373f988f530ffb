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
    /// sonde's `up` for it: what the row means.
    up: f64,
}

impl Row {
    /// A row whose keys are the same for both exporters but the name of the TLS key.
    fn new(name: &'static str, up: f64, url: String, tls: &str, other: &str) -> Row {
        let keys = |tls_key: &str| {
            let tls = (!tls.is_empty()).then(|| format!("{tls_key}: {{{tls}}}"));
            let other = (!other.is_empty()).then(|| other.to_string());
            [other, tls]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", ")
        };
        Row {
            name,
            url,
            blackbox: keys("tls_config"),
            sonde: keys("tls"),
            up,
        }
    }
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

/// sonde's config: one check per row, all in one `--once`.
fn sonde_config(rows: &[Row]) -> String {
    let mut config = String::from("checks:\n");
    for row in rows {
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
    config
}

/// blackbox's config: one module per row. IPv4 first, as every target is 127.0.0.1.
fn blackbox_modules(rows: &[Row]) -> String {
    let mut modules = String::from("modules:\n");
    for row in rows {
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
    modules
}

/// Probes every row through blackbox's `/probe` and compares with sonde's series: the
/// table of both, and where they disagree.
fn compare(blackbox: &Daemon, sonde: &Exposition, rows: &[Row]) -> (String, Vec<String>) {
    let mut table = String::from(
        "| target | exporter | up | status | redirects | TLS version | earliest expiry |\n|---|---|---|---|---|---|---|\n",
    );
    let mut disagreements = Vec::new();
    for row in rows {
        let path = format!("/probe?target={}&module={}", percent(&row.url), row.name);
        let answer = request(blackbox.addr, "GET", &path, &[], b"");
        assert_eq!(answer.status, 200, "{}: {}", row.name, answer.text());
        let b = blackbox_seen(&answer.text());
        let s = sonde_seen(sonde, row.name, &row.url);
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
    (table, disagreements)
}

fn https(f: &Fixture, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", f.addr.port())
}

/// The servers of the matrix, all on 127.0.0.1, and the files both exporters read.
struct Targets {
    web: Fixture,
    pinned: Fixture,
    expired: Fixture,
    mtls: Fixture,
    secure: Fixture,
    proxy: TestProxy,
    /// Holds the client certificate and key (`client`) while the exporters run.
    _pki: ClientPki,
    client: String,
    proxy_url: String,
}

impl Targets {
    fn start(dir: &Dir) -> Targets {
        let pinned = Fixture::start_tls(&openssl_self_signed(dir.path(), "pinned"), route);
        let ca = TestCa::new();
        dir.write("ca.pem", &ca.pem);
        let pki = ClientPki::new();
        pki.client("client", "ec", "ca");
        let proxy = TestProxy::start();
        let proxy_url = proxy.url(&format!("{PROXY_USER}:{PROXY_PASSWORD}@"));
        Targets {
            web: Fixture::start(route),
            pinned,
            expired: Fixture::start_tls(&ca.leaf((2020, 1, 1), (2021, 3, 4)), route),
            mtls: pki.server(&ca.leaf((2020, 1, 1), (2040, 6, 15)), route),
            secure: Fixture::start_tls(&ca.leaf((2020, 1, 1), (2041, 7, 7)), route),
            proxy,
            client: format!(
                "cert_file: {0}/client.pem, key_file: {0}/client.key",
                pki.path().display()
            ),
            _pki: pki,
            proxy_url,
        }
    }

    /// The rows; `p` is the directory of `ca.pem` and `pinned.pem`.
    fn rows(&self, p: &str) -> Vec<Row> {
        let ca_file = format!("ca_file: {p}/ca.pem");
        let pinned_file = format!("ca_file: {p}/pinned.pem");
        let with_client = format!("{ca_file}, {}", self.client);
        let via_proxy = format!("proxy_url: \"{}\"", self.proxy_url);
        let (web, mtls) = (&self.web, &self.mtls);
        vec![
            Row::new("ok_200", 1.0, web.url("/ok"), "", ""),
            Row::new("status_503", 0.0, web.url("/503"), "", ""),
            Row::new("redirect", 1.0, web.url("/redirect"), "", ""),
            Row::new(
                "pinned_self_signed",
                1.0,
                https(&self.pinned, "/ok"),
                &pinned_file,
                "",
            ),
            Row::new("expired", 0.0, https(&self.expired, "/ok"), &ca_file, ""),
            Row::new(
                "client_cert_given",
                1.0,
                https(mtls, "/ok"),
                &with_client,
                "",
            ),
            Row::new("client_cert_missing", 0.0, https(mtls, "/ok"), &ca_file, ""),
            Row::new("proxy_http", 1.0, web.url("/ok"), "", &via_proxy),
            Row::new(
                "proxy_https",
                1.0,
                https(&self.secure, "/ok"),
                &ca_file,
                &via_proxy,
            ),
        ]
    }
}

#[test]
fn sonde_and_blackbox_exporter_agree_on_a_matrix_of_targets() {
    let dir = Dir::new();
    let targets = Targets::start(&dir);
    let rows = targets.rows(&dir.path().display().to_string());
    let cfg = dir.write("sonde.yml", sonde_config(&rows));
    let out = run(&["--once", "-c", cfg.to_str().unwrap()]);
    let sonde = Exposition(String::from_utf8(out.stdout).unwrap());
    let sonde_log = String::from_utf8_lossy(&out.stderr).into_owned();
    let bb_config = dir.write("blackbox.yml", blackbox_modules(&rows));
    let blackbox = start_blackbox_exporter(&dir, &bb_config);

    let (table, disagreements) = compare(&blackbox, &sonde, &rows);
    println!("{table}");
    assert!(
        disagreements.is_empty(),
        "sonde and blackbox_exporter disagree: {disagreements:?}\n{table}\nsonde's log:\n{sonde_log}"
    );
    // The rows mean what they say: each exporter saw what was meant.
    for row in &rows {
        let up = sonde_seen(&sonde, row.name, &row.url).up;
        assert_eq!(up, Some(row.up), "{}\n{table}", row.name);
    }
    // Both exporters' proxied probes reached the proxy: the absolute form for the
    // http target, CONNECT for the https one.
    let through = targets.proxy.seen();
    let absolute = format!("GET {} HTTP/1.1", targets.web.url("/ok"));
    let connect = format!("CONNECT 127.0.0.1:{} HTTP/1.1", targets.secure.addr.port());
    for line in [absolute, connect] {
        assert_eq!(
            through.iter().filter(|l| **l == line).count(),
            2,
            "{line} in {through:?}"
        );
    }
    // Where only sonde speaks: an expired certificate's expiry (blackbox #1119).
    let expired_row = sonde_seen(&sonde, "expired", &https(&targets.expired, "/ok"));
    assert_eq!(
        expired_row.earliest_expiry,
        Some(unix_day(2021, 3, 4) as f64)
    );
}
