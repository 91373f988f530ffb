//! Shared helpers of the integration tests: run the real `sonde` binary from a temporary
//! directory, talk HTTP to it, parse its exposition, and serve fixtures on 127.0.0.1.
//!
//! Every wait here is bounded in count and time.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The result of `setup`, computed by the first test of this binary that asks for it and
/// shared with the others, so that several named tests can assert on one expensive run
/// (a `--once` against a real registry, a 2 s hang) without repeating it.
///
/// `setup` must return plain data: a static is never dropped, so a child process kept
/// in it would outlive the tests. A setup that panics is not run again by the next
/// test; each of them fails with its message.
pub fn shared<T: Send + Sync>(
    cell: &'static OnceLock<Result<T, String>>,
    setup: fn() -> T,
) -> &'static T {
    let result = cell.get_or_init(|| {
        std::panic::catch_unwind(setup).map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        })
    });
    match result {
        Ok(value) => value,
        Err(message) => panic!("the shared setup failed: {message}"),
    }
}

/// Path of the binary under test.
pub fn sonde_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sonde")
}

/// A temporary directory that holds configs and fixture files.
pub struct Dir {
    pub dir: tempfile::TempDir,
}

impl Dir {
    pub fn new() -> Dir {
        Dir {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file and returns its path.
    pub fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, content).expect("write fixture");
        path
    }
}

/// Runs sonde to completion (for `--once`, `--config.check`, bad flags), at most 120 s.
pub fn run(args: &[&str]) -> Output {
    let mut child = Command::new(sonde_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sonde");
    // Drain both pipes while waiting: output larger than a pipe buffer would otherwise
    // block sonde on its write and never let it exit.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Output {
                status,
                stdout: stdout.join().expect("stdout"),
                stderr: stderr.join().expect("stderr"),
            };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sonde {args:?} did not exit within 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `sonde` serving on an ephemeral port.
pub struct Sonde {
    pub child: Child,
    pub addr: SocketAddr,
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub dir: Dir,
}

impl Sonde {
    /// Starts sonde with `config` written to a file in a fresh directory.
    pub fn start(config: &str) -> Sonde {
        let dir = Dir::new();
        dir.write("sonde.yml", config);
        Sonde::start_in(dir, &[])
    }

    /// Starts sonde with `sonde.yml` of `dir` and extra flags.
    pub fn start_in(dir: Dir, extra: &[&str]) -> Sonde {
        let config = dir.path().join("sonde.yml");
        let mut args: Vec<String> = vec![
            "--web.listen-address".into(),
            "127.0.0.1:0".into(),
            "--log.level".into(),
            "debug".into(),
        ];
        if config.exists() {
            args.push("--config.file".into());
            args.push(config.display().to_string());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        Sonde::spawn(Command::new(sonde_bin()).args(&args), dir)
    }

    /// Starts a prepared command (e.g. under `prlimit`) that runs sonde.
    pub fn spawn(command: &mut Command, dir: Dir) -> Sonde {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sonde");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = Arc::clone(&stderr);
        let pipe = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("address=").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send(addr);
                }
                lines.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a.parse().expect("address in the start-up log line"),
            Err(_) => {
                let _ = child.kill();
                panic!("sonde did not start: {:?}", stderr.lock().unwrap());
            }
        };
        Sonde {
            child,
            addr,
            stderr,
            dir,
        }
    }

    /// GET a path.
    pub fn get(&self, path: &str) -> HttpResponse {
        request(self.addr, "GET", path, &[], b"")
    }

    /// Waits (at most 20 s) until `/-/ready` answers 200.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.get("/-/ready").status == 200 {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("sonde never became ready; log: {:?}", self.log());
    }

    /// The current exposition.
    pub fn metrics(&self) -> Exposition {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200, "{}", r.text());
        Exposition(r.text())
    }

    /// Waits (at most `secs`) until `pred` holds on the exposition; returns it.
    pub fn wait_metrics(&self, secs: u64, pred: impl Fn(&Exposition) -> bool) -> Exposition {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let m = self.metrics();
            if pred(&m) {
                return m;
            }
            if Instant::now() > deadline {
                panic!(
                    "condition not met within {secs}s; metrics:\n{}\nlog: {:?}",
                    m.0,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Lines sonde wrote to stderr so far.
    pub fn log(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends a signal to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits at most `within` for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Sonde {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An exposition text with lookup helpers.
#[derive(Clone, Debug)]
pub struct Exposition(pub String);

impl Exposition {
    /// The value of the sample whose name and labels are exactly `series`,
    /// e.g. `sonde_http_up{check="web",url="http://x/"}`.
    pub fn value(&self, series: &str) -> Option<f64> {
        self.0.lines().find_map(|line| {
            let rest = line.strip_prefix(series)?;
            let value = rest.strip_prefix(' ')?;
            match value {
                "+Inf" => Some(f64::INFINITY),
                "-Inf" => Some(f64::NEG_INFINITY),
                v => v.parse().ok(),
            }
        })
    }

    /// Whether any sample line starts with `prefix`.
    pub fn has(&self, prefix: &str) -> bool {
        self.0.lines().any(|l| l.starts_with(prefix))
    }
}

/// A response read by [`request`].
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One HTTP/1.1 request with `Connection: close`; 10 s timeouts; panics on I/O errors.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    try_request(addr, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} http://{addr}{path}: {e}"))
}

/// Like [`request`], but an I/O error or a malformed answer is returned.
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    if !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        return Err(std::io::Error::other("no complete response head"));
    }
    Ok(parse_response(&raw))
}

/// Sends raw bytes on a new connection and reads until the peer closes (10 s timeouts).
pub fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = stream.write_all(bytes);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    raw
}

/// Reads one response (head and Content-Length body) from a kept-alive connection;
/// `Ok(None)` when the peer closed before a response began.
pub fn read_next_response(reader: &mut impl BufRead) -> std::io::Result<Option<HttpResponse>> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err(std::io::ErrorKind::UnexpectedEof.into())
            };
        }
        head.extend_from_slice(&line);
        if line == b"\r\n" {
            break;
        }
    }
    let mut r = parse_response(&head);
    let len: usize = r
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    r.body = body;
    Ok(Some(r))
}

/// A program started by a test on 127.0.0.1, killed when dropped.
pub struct Daemon {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Daemon {
    /// Starts `program` with the arguments `args(addr)` on a free port and waits (at
    /// most 30 s) until GET `probe` answers 200; a port another process took meanwhile
    /// is retried with a new one (5 attempts).
    pub fn start(
        program: &str,
        args: impl Fn(SocketAddr) -> Vec<String>,
        probe: &str,
        log: Option<&Path>,
    ) -> Daemon {
        for _attempt in 0..5 {
            let addr = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap();
            let (out, err) = match log {
                Some(path) => {
                    let file = std::fs::File::create(path).unwrap();
                    (Stdio::from(file.try_clone().unwrap()), Stdio::from(file))
                }
                None => (Stdio::null(), Stdio::null()),
            };
            let child = Command::new(program)
                .args(args(addr))
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("{program} must be installed (the test command installs it): {e}")
                });
            let mut daemon = Daemon { child, addr };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if daemon.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                if try_request(addr, "GET", probe, &[], b"").is_ok_and(|r| r.status == 200) {
                    return daemon;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            drop(daemon);
        }
        panic!("{program} did not start");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses a whole response (head and body up to EOF or Content-Length).
pub fn parse_response(raw: &[u8]) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    } else if let Some(len) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(len);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// Decodes a chunked body (sizes in hex, each chunk followed by CRLF, 0 ends it).
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&raw[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("chunk size");
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&raw[start..start + size]);
        raw = &raw[start + size + 2..];
    }
    out
}

/// What a fixture server answers.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A normal response.
    Http {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Accept and never answer (until the server is dropped).
    Hang,
}

impl Reply {
    pub fn status(status: u16, body: &str) -> Reply {
        Reply::Http {
            status,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    pub fn with_header(self, k: &str, v: &str) -> Reply {
        match self {
            Reply::Http {
                status,
                mut headers,
                body,
            } => {
                headers.push((k.into(), v.into()));
                Reply::Http {
                    status,
                    headers,
                    body,
                }
            }
            other => other,
        }
    }
}

/// A request as a fixture server saw it.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Route = dyn Fn(&SeenRequest) -> Reply + Send + Sync;

/// A small HTTP/1.1 server on 127.0.0.1 (thread per connection, `Connection: close`).
pub struct Fixture {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<SeenRequest>>>,
    stop: Arc<AtomicBool>,
    pub connections: Arc<AtomicUsize>,
}

impl Fixture {
    pub fn start(route: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static) -> Fixture {
        Fixture::start_with(None, route)
    }

    /// A fixture that speaks HTTPS with the given certificate chain and key.
    pub fn start_tls(
        leaf: &Leaf,
        route: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static,
    ) -> Fixture {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(leaf.chain.clone(), leaf.key.clone_key())
        .expect("server certificate");
        Fixture::start_with(Some(Arc::new(config)), route)
    }

    /// A fixture with a TLS configuration of the test's own (versions, ALPN, client
    /// certificates), or plain HTTP with `None`.
    pub fn start_with(
        tls: Option<Arc<rustls::ServerConfig>>,
        route: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static,
    ) -> Fixture {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fixture");
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let route: Arc<Route> = Arc::new(route);
        listener.set_nonblocking(true).unwrap();
        {
            let (requests, stop, connections) = (
                Arc::clone(&requests),
                Arc::clone(&stop),
                Arc::clone(&connections),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            connections.fetch_add(1, Ordering::Relaxed);
                            let (route, requests, stop) =
                                (Arc::clone(&route), Arc::clone(&requests), Arc::clone(&stop));
                            let tls = tls.clone();
                            std::thread::spawn(move || {
                                stream.set_nonblocking(false).ok();
                                stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
                                match tls {
                                    None => serve_one(&mut stream, &*route, &requests, &stop),
                                    Some(config) => {
                                        let Ok(conn) = rustls::ServerConnection::new(config) else {
                                            return;
                                        };
                                        let mut tls = rustls::StreamOwned::new(conn, stream);
                                        serve_one(&mut tls, &*route, &requests, &stop);
                                        tls.conn.send_close_notify();
                                        let _ = tls.flush();
                                    }
                                }
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        }
        Fixture {
            addr,
            requests,
            stop,
            connections,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn https_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    pub fn seen(&self) -> Vec<SeenRequest> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_one(
    stream: &mut (impl Read + Write),
    route: &Route,
    requests: &Mutex<Vec<SeenRequest>>,
    stop: &AtomicBool,
) {
    let Some(req) = read_request(stream) else {
        return;
    };
    requests.lock().unwrap().push(req.clone());
    match route(&req) {
        Reply::Hang => {
            let until = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Reply::Http {
            status,
            headers,
            body,
        } => {
            let mut head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let _ = stream.write_all(head.as_bytes());
            if req.method != "HEAD" {
                let _ = stream.write_all(&body);
            }
        }
    }
}

/// Reads one request head (and a Content-Length body) from a blocking stream.
pub fn read_request(stream: &mut impl Read) -> Option<SeenRequest> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 || raw.len() > 64 << 10 {
            return None;
        }
        raw.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&raw).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split_whitespace();
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len.min(64 << 20)];
    stream.read_exact(&mut body).ok()?;
    Some(SeenRequest {
        method,
        path,
        headers,
        body,
    })
}

/// The YAML blocks of a README section: from its `## ` heading to the next one.
pub fn readme_blocks(readme: &str, heading: &str) -> Vec<String> {
    let start = readme
        .find(heading)
        .unwrap_or_else(|| panic!("README has no section {heading:?}"));
    let rest = &readme[start + heading.len()..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    section
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("\n```").next())
        .map(str::to_string)
        .collect()
}

/// Percent-encodes a query parameter value (every byte but the unreserved ones).
pub fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Checks an exposition with Debian's promtool; returns its findings (empty when clean).
pub fn promtool_check_metrics(text: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "promtool (Debian package prometheus) must be installed; the test command installs it",
        );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A test certificate authority (rcgen).
pub struct TestCa {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    /// The CA certificate in PEM, for `tls.ca_file`.
    pub pem: String,
}

/// A leaf certificate with its key, signed by a [`TestCa`].
pub struct Leaf {
    pub chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    pub key: rustls::pki_types::PrivateKeyDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sonde test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa { params, key, pem }
    }

    /// A leaf for `localhost` and 127.0.0.1 valid from/to the given dates (y, m, d).
    pub fn leaf(&self, not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> Leaf {
        self.leaf_for(&["localhost", "127.0.0.1"], not_before, not_after)
    }

    /// A leaf for `names` (DNS names or IPs) valid from/to the given dates (y, m, d).
    pub fn leaf_for(
        &self,
        names: &[&str],
        not_before: (i32, u8, u8),
        not_after: (i32, u8, u8),
    ) -> Leaf {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        Leaf {
            chain: vec![cert.der().clone()],
            key: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl Leaf {
    /// A leaf read from PEM text (as `openssl` writes it).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Leaf {
        use rustls::pki_types::pem::PemObject;
        let chain = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .map(|c| c.expect("certificate PEM"))
            .collect();
        let key =
            rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key PEM");
        Leaf {
            chain,
            key,
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
        }
    }
}

/// A TCP server whose connections `handle` serves, each on a thread of its own, for
/// answers a [`Fixture`] cannot give (an HTTP/1.0 status line, a delay, silence).
pub struct RawServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl RawServer {
    /// Listens on 127.0.0.1 with a free port.
    pub fn start(handle: impl Fn(TcpStream) + Send + Sync + 'static) -> RawServer {
        RawServer::start_on("127.0.0.1:0", handle)
    }

    /// Listens on `bind` (e.g. `[::1]:0`).
    pub fn start_on(bind: &str, handle: impl Fn(TcpStream) + Send + Sync + 'static) -> RawServer {
        let listener = TcpListener::bind(bind).expect("bind raw server");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let handle = Arc::new(handle);
        let stopping = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let handle = Arc::clone(&handle);
                        std::thread::spawn(move || {
                            stream.set_nonblocking(false).ok();
                            stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
                            handle(stream);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        RawServer { addr, stop }
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Unix seconds of midnight UTC of a date.
pub fn unix_day(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) * 86_400
}

/// Days since 1970-01-01 to (year, month, day), the inverse of [`unix_day`] / 86400
/// (test side, written independently of sonde's).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Standard base64 with padding (test side, written independently of sonde's).
pub fn base64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let mut n = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            n |= u32::from(*b) << (16 - 8 * i);
        }
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// URL-safe base64 without padding (JWT segments).
pub fn base64url(data: &[u8]) -> String {
    base64(data)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

/// Runs openssl in `dir`; panics with its stderr when it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian package openssl) must be installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
