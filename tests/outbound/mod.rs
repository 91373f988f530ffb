//! Helpers of the outbound HTTP tests (`http_tls.rs`, `proxy.rs`, `blackbox.rs`):
//! certificates made with openssl as users make them, a client PKI, and a small
//! forward proxy (CONNECT tunnels, the absolute form, Basic proxy authentication) that
//! records what it was asked.

#![allow(dead_code)]

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

pub use crate::common::openssl;
use crate::common::{
    Daemon, Dir, Fixture, Leaf, RawServer, Reply, SeenRequest, base64, read_request,
};

/// Debian's `prometheus-blackbox-exporter` on a free port of 127.0.0.1 with `config`
/// (a file in `dir`), after its own `--config.check` accepted the file; it logs to
/// `blackbox.log` in `dir`.
pub fn start_blackbox_exporter(dir: &Dir, config: &Path) -> Daemon {
    let check = Command::new("prometheus-blackbox-exporter")
        .args(["--config.check", &format!("--config.file={}", config.display())])
        .output()
        .expect("prometheus-blackbox-exporter (Debian package) must be installed; scripts/test.sh installs it");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    Daemon::start(
        "prometheus-blackbox-exporter",
        |addr: std::net::SocketAddr| {
            vec![
                format!("--config.file={}", config.display()),
                format!("--web.listen-address={addr}"),
            ]
        },
        "/-/healthy",
        Some(&dir.path().join("blackbox.log")),
    )
}

pub fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

/// A self-signed certificate for localhost and 127.0.0.1 made the way the user
/// made it: `openssl req -x509` (which writes CA:TRUE).
pub fn openssl_self_signed(dir: &Path, name: &str) -> Leaf {
    req_x509(
        dir,
        name,
        "/CN=localhost",
        &["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
    );
    Leaf::from_pem(
        &read(dir, &format!("{name}.pem")),
        &read(dir, &format!("{name}.key")),
    )
}

/// `openssl req -x509` with a new P-256 key: `<name>.pem` and `<name>.key` in `dir`.
fn req_x509(dir: &Path, name: &str, subject: &str, extra: &[&str]) {
    let (key, cert) = (format!("{name}.key"), format!("{name}.pem"));
    let mut args = vec![
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &cert,
        "-days",
        "30",
        "-subj",
        subject,
    ];
    args.extend_from_slice(extra);
    openssl(dir, &args);
}

/// A client CA and client certificates signed by it, made with openssl, with each kind
/// of private key sonde reads.
pub struct ClientPki {
    pub dir: Dir,
}

impl ClientPki {
    pub fn new() -> ClientPki {
        let pki = ClientPki { dir: Dir::new() };
        pki.ca("ca");
        pki.ca("rogue-ca");
        pki.dir.write(
            "client.ext",
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
        );
        pki
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn ca(&self, name: &str) {
        req_x509(self.path(), name, &format!("/CN={name}"), &[]);
    }

    /// `<name>.key` in the given form and `<name>.pem` signed by `ca`.
    pub fn client(&self, name: &str, form: &str, ca: &str) {
        let key = format!("{name}.key");
        match form {
            "pkcs8" => openssl(
                self.path(),
                &[
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-out",
                    &key,
                ],
            ),
            "rsa" => openssl(
                self.path(),
                &["genrsa", "-traditional", "-out", &key, "2048"],
            ),
            "ec" => openssl(
                self.path(),
                &[
                    "ecparam",
                    "-name",
                    "prime256v1",
                    "-genkey",
                    "-noout",
                    "-out",
                    &key,
                ],
            ),
            other => panic!("no key form {other}"),
        }
        let first = read(self.path(), &key);
        let header = first.lines().next().unwrap_or_default().to_string();
        let expected = match form {
            "pkcs8" => "-----BEGIN PRIVATE KEY-----",
            "rsa" => "-----BEGIN RSA PRIVATE KEY-----",
            _ => "-----BEGIN EC PRIVATE KEY-----",
        };
        assert_eq!(header, expected, "{form} key");
        let csr = format!("{name}.csr");
        openssl(
            self.path(),
            &[
                "req",
                "-new",
                "-key",
                &key,
                "-subj",
                &format!("/CN={name}"),
                "-out",
                &csr,
            ],
        );
        openssl(
            self.path(),
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-set_serial",
                "7",
                "-days",
                "30",
                "-extfile",
                "client.ext",
                "-out",
                &format!("{name}.pem"),
            ],
        );
    }

    /// An https server that demands a client certificate of `ca.pem`.
    pub fn server(&self, leaf: &Leaf, route: fn(&SeenRequest) -> Reply) -> Fixture {
        let mut roots = rustls::RootCertStore::empty();
        let ca = Leaf::from_pem(&read(self.path(), "ca.pem"), &read(self.path(), "ca.key"));
        roots.add(ca.chain[0].clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(leaf.chain.clone(), leaf.key.clone_key())
            .unwrap();
        Fixture::start_with(Some(Arc::new(config)), route)
    }
}

pub const PROXY_USER: &str = "alice";
pub const PROXY_PASSWORD: &str = "s3cret-proxy-pw";

/// A forward proxy that records the request line of everything it was asked.
pub struct TestProxy {
    pub server: RawServer,
    seen: Arc<Mutex<Vec<String>>>,
}

impl TestProxy {
    /// Requires `alice:s3cret-proxy-pw` as Basic proxy credentials.
    pub fn start() -> TestProxy {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let expected = format!(
            "Basic {}",
            base64(format!("{PROXY_USER}:{PROXY_PASSWORD}").as_bytes())
        );
        let server = RawServer::start(move |client| serve(client, &expected, &log));
        TestProxy { server, seen }
    }

    pub fn url(&self, userinfo: &str) -> String {
        format!("http://{userinfo}127.0.0.1:{}", self.server.addr.port())
    }

    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// `*.sonde.test` is 127.0.0.1 to the proxy and to nobody else.
fn upstream(authority: &str) -> Option<TcpStream> {
    let (host, port) = authority.rsplit_once(':')?;
    let ip = if host.ends_with(".sonde.test") {
        "127.0.0.1"
    } else {
        host
    };
    TcpStream::connect((ip, port.parse::<u16>().ok()?)).ok()
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

fn serve(mut client: TcpStream, expected_auth: &str, seen: &Mutex<Vec<String>>) {
    // CONNECT and GET have no body, so nothing after the head is consumed here.
    let Some(request) = read_request(&mut client) else {
        return;
    };
    let (method, target) = (request.method.as_str(), request.path.as_str());
    seen.lock()
        .unwrap()
        .push(format!("{method} {target} HTTP/1.1"));
    if request.header("proxy-authorization") != Some(expected_auth) {
        let _ = client.write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    }
    if method == "CONNECT" {
        let Some(up) = upstream(target) else {
            let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
            return;
        };
        let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
        let (c2, u2) = (client.try_clone().unwrap(), up.try_clone().unwrap());
        let there = std::thread::spawn(move || pipe(c2, u2));
        pipe(up, client);
        let _ = there.join();
        return;
    }
    // The absolute form: http://host:port/path.
    let Some(rest) = target.strip_prefix("http://") else {
        let _ = client.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let Some(mut up) = upstream(authority) else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    let path = if path.is_empty() { "/" } else { path };
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in &request.headers {
        if !k.to_ascii_lowercase().starts_with("proxy-") {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str("\r\n");
    let _ = up.write_all(head.as_bytes());
    let _ = up.write_all(&request.body);
    pipe(up, client);
}

/// rustls's ring provider, for the test servers.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
