//! The fault suite: every attack of issue 17 against the real binary on 127.0.0.1, with
//! real sockets, plus floods an exporter meets in the wild (1,000 connections, slow
//! readers, pipelining over TLS, a wrong-password flood).
//!
//! Each flood measures the latency of an authenticated scrape (HTTPS, basic auth, a
//! kept-alive connection as Prometheus keeps it) while it runs, prints the figures, and
//! asserts only bounds that catch a stall: the median of [`SCRAPES`] scrapes under
//! 100 ms and every scrape under 5 s. To stay robust on a loaded 2-core machine, floods
//! run one at a time (a lock), the scraper warms its connection first, and the median
//! rather than the maximum carries the 100 ms bound. RSS is read from /proc/<pid>/status
//! and bounded generously (a leak per connection would pass any bound set near the
//! idle figure and still show here).
//!
//! Item 7 of the issue (a moved line restarts a check) is `tests/lifecycle.rs`
//! `a_moved_line_or_another_style_keeps_an_unchanged_check_running`; item 9 (a TLS
//! handshake that never finishes counted as `io`) belongs to the outbound-HTTP tests.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::*;

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

const CONFIG: &str = "checks:\n  - name: self\n    kind: http\n    interval: 1m\n    urls: [\"http://127.0.0.1:9/\"]\n";
const USER: &str = "prometheus";
const PASSWORD: &str = "s3cret";
/// Scrapes measured under each flood.
const SCRAPES: usize = 20;

/// One flood at a time: they compete for the same two cores.
fn flood_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A bcrypt hash at cost 10, as `htpasswd -nBC 10` makes it (computed once).
fn hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| bcrypt::hash(PASSWORD, 10).unwrap())
}

/// sonde serving HTTPS with basic auth, and the CA that signed its certificate.
struct Guarded {
    sonde: Sonde,
    ca: TestCa,
    web: std::path::PathBuf,
    /// HTTPS, or plain HTTP with basic auth.
    tls: bool,
}

impl Guarded {
    fn start(extra: &[&str]) -> Guarded {
        Guarded::start_with(true, extra)
    }

    fn start_with(tls: bool, extra: &[&str]) -> Guarded {
        let ca = TestCa::new();
        let leaf = ca.leaf((2020, 1, 1), (2045, 1, 1));
        let dir = Dir::new();
        dir.write("sonde.yml", CONFIG);
        dir.write("tls.crt", &leaf.cert_pem);
        dir.write("tls.key", &leaf.key_pem);
        let mut web_config = guarded_web_config();
        if !tls {
            web_config = web_config.replace(
                "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n",
                "",
            );
        }
        let web = dir.write("web.yml", web_config);
        let mut args = vec!["--web.config.file", web.to_str().unwrap()];
        args.extend_from_slice(extra);
        let sonde = Sonde::start_in(dir, &args);
        Guarded {
            sonde,
            ca,
            web,
            tls,
        }
    }

    /// A connection as a client makes it: TLS or plain.
    fn connect(&self, sock: TcpStream) -> Box<dyn Duplex> {
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        if self.tls {
            Box::new(tls_over(sock, &self.ca.pem).expect("TLS connection"))
        } else {
            Box::new(sock)
        }
    }

    fn tls(&self) -> Tls {
        tls_connect(self.sonde.addr, &self.ca.pem).expect("TLS connection")
    }

    /// A scraper with its credentials verified (as after Prometheus' first scrape).
    fn scraper(&self) -> Scraper {
        let mut s = Scraper {
            addr: self.sonde.addr,
            ca: self.tls.then(|| self.ca.pem.clone()),
            conn: None,
        };
        let (status, _) = s.scrape().expect("first scrape");
        assert_eq!(status, 200);
        s
    }

    fn rss_mb(&self) -> f64 {
        rss_mb(self.sonde.child.id())
    }
}

fn guarded_web_config() -> String {
    format!(
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\nbasic_auth_users:\n  {USER}: \"{}\"\n",
        hash()
    )
}

fn authorization(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

fn client_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// A TLS connection with its handshake done.
fn tls_connect(addr: SocketAddr, ca_pem: &str) -> std::io::Result<Tls> {
    tls_over(
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))?,
        ca_pem,
    )
}

fn tls_over(sock: TcpStream, ca_pem: &str) -> std::io::Result<Tls> {
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    sock.set_write_timeout(Some(Duration::from_secs(10)))?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(client_config(ca_pem), name)
        .map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// Reads every response until the peer closes (or 10 s pass).
fn read_all(stream: impl Read) -> Vec<HttpResponse> {
    let mut reader = BufReader::new(stream);
    let mut out = Vec::new();
    while let Ok(Some(r)) = read_next_response(&mut reader) {
        out.push(r);
    }
    out
}

/// A socket to read and write, plain or TLS.
trait Duplex: Read + Write + Send {}

impl<T: Read + Write + Send> Duplex for T {}

/// An authenticated Prometheus-like scraper over one kept-alive connection, HTTPS when
/// it has a CA to trust.
struct Scraper {
    addr: SocketAddr,
    ca: Option<String>,
    conn: Option<BufReader<Box<dyn Duplex>>>,
}

impl Scraper {
    /// One scrape of /metrics: status and latency.
    fn scrape(&mut self) -> std::io::Result<(u16, Duration)> {
        let started = Instant::now();
        if self.conn.is_none() {
            let stream: Box<dyn Duplex> = match &self.ca {
                Some(ca) => Box::new(tls_connect(self.addr, ca)?),
                None => {
                    let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
                    s.set_read_timeout(Some(Duration::from_secs(10)))?;
                    Box::new(s)
                }
            };
            self.conn = Some(BufReader::new(stream));
        }
        let conn = self.conn.as_mut().unwrap();
        let head = format!(
            "GET /metrics HTTP/1.1\r\nHost: sonde\r\nAuthorization: {}\r\n\r\n",
            authorization(USER, PASSWORD)
        );
        let result = conn
            .get_mut()
            .write_all(head.as_bytes())
            .and_then(|()| read_next_response(conn));
        match result {
            Ok(Some(r)) => Ok((r.status, started.elapsed())),
            Ok(None) => {
                self.conn = None;
                Err(std::io::ErrorKind::UnexpectedEof.into())
            }
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }

    /// Measures [`SCRAPES`] scrapes; prints and bounds them; returns (median, max).
    fn measure(&mut self, what: &str) -> (Duration, Duration) {
        let mut times = Vec::new();
        for _ in 0..SCRAPES {
            let (status, took) = self
                .scrape()
                .unwrap_or_else(|e| panic!("{what}: a scrape failed: {e}"));
            assert_eq!(status, 200, "{what}");
            times.push(took);
            std::thread::sleep(Duration::from_millis(20));
        }
        times.sort();
        let (median, max) = (times[SCRAPES / 2], times[SCRAPES - 1]);
        println!("{what}: authenticated scrape median {median:?}, max {max:?} ({SCRAPES} scrapes)");
        assert!(
            max < Duration::from_secs(5),
            "{what}: a scrape took {max:?}"
        );
        assert!(
            median < Duration::from_millis(100),
            "{what}: median scrape {median:?} (all: {times:?})"
        );
        (median, max)
    }
}

/// Resident memory of a process in MB, from /proc/<pid>/status.
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kb / 1024.0
}

fn assert_rss_bounded(g: &Guarded, what: &str) {
    let rss = g.rss_mb();
    println!("{what}: sonde RSS {rss:.1} MB");
    assert!(rss < 200.0, "{what}: RSS {rss:.1} MB");
}

/// A TCP connection whose receive buffer is 1 KiB, as a client that reads slowly or
/// not at all sets it.
fn small_window(addr: SocketAddr) -> TcpStream {
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 only")
    };
    // SAFETY: plain socket calls on a descriptor this function owns until it hands it to
    // TcpStream, which then closes it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let size: libc::c_int = 1024;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
        TcpStream::from_raw_fd(fd)
    }
}

/// Item 1: clients with a 1 KiB receive buffer that pipeline 2,000 authenticated
/// `GET /metrics` and never read, on plain HTTP as reported (or over TLS).
fn slow_readers(count: usize, tls: bool) {
    let _one = flood_lock();
    let g = Guarded::start_with(tls, &[]);
    let mut scraper = g.scraper();
    let what = format!("{count} slow readers{}", if tls { " over TLS" } else { "" });
    let idle = scraper.measure(&format!("before {what}")).0;
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: sonde\r\nAuthorization: {}\r\n\r\n",
        authorization(USER, PASSWORD)
    );
    let pipelined = request.repeat(2000);
    let mut readers = Vec::new();
    for _ in 0..count {
        let sock = small_window(g.sonde.addr);
        let same = sock.try_clone().unwrap();
        let mut reader = g.connect(sock);
        // Set after the TLS handshake, which sets its own timeouts.
        same.set_write_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        // As much as the socket takes; the rest would block, as it does for the attacker.
        let _ = reader.write_all(pipelined.as_bytes());
        readers.push(reader);
    }
    std::thread::sleep(Duration::from_millis(500));
    let (median, _) = scraper.measure(&what);
    assert_rss_bounded(&g, &what);
    println!("{what}: idle median {idle:?} -> {median:?}");
    drop(readers);
}

#[test]
fn four_slow_readers_do_not_stall_scrapes() {
    slow_readers(4, false);
}

#[test]
fn eight_slow_readers_do_not_stall_scrapes() {
    slow_readers(8, false);
}

#[test]
fn thirty_two_slow_readers_do_not_stall_scrapes() {
    slow_readers(32, false);
}

#[test]
fn eight_slow_readers_over_tls_do_not_stall_scrapes() {
    slow_readers(8, true);
}

/// Item 2: 192 connections that send a wrong password over and over (wrk -c192), each
/// waiting for its answer before the next, over TLS.
#[test]
fn a_wrong_password_flood_does_not_starve_authenticated_scrapes() {
    let _one = flood_lock();
    let g = Guarded::start(&[]);
    let mut scraper = g.scraper();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(Mutex::new(std::collections::BTreeMap::<u16, usize>::new()));
    let connections = Arc::new(AtomicUsize::new(0));
    let mut flood = Vec::new();
    let wrong = format!(
        "GET /metrics HTTP/1.1\r\nHost: sonde\r\nAuthorization: {}\r\n\r\n",
        authorization(USER, "wrong")
    );
    for _ in 0..192 {
        let (addr, ca, stop) = (g.sonde.addr, g.ca.pem.clone(), Arc::clone(&stop));
        let (answered, connections, wrong) = (
            Arc::clone(&answered),
            Arc::clone(&connections),
            wrong.clone(),
        );
        flood.push(std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let Ok(tls) = tls_connect(addr, &ca) else {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                };
                connections.fetch_add(1, Ordering::Relaxed);
                let mut conn = BufReader::new(tls);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    if conn.get_mut().write_all(wrong.as_bytes()).is_err() {
                        break;
                    }
                    match read_next_response(&mut conn) {
                        Ok(Some(r)) => *answered.lock().unwrap().entry(r.status).or_default() += 1,
                        _ => break,
                    }
                }
            }
        }));
    }
    // Let the flood reach its pace (every connection up, the verifier queue full).
    let up = Instant::now() + Duration::from_secs(20);
    while connections.load(Ordering::Relaxed) < 192 && Instant::now() < up {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    scraper.measure("192 wrong-password connections");
    assert_rss_bounded(&g, "192 wrong-password connections");
    stop.store(true, Ordering::Relaxed);
    for t in flood {
        let _ = t.join();
    }
    let answered = answered.lock().unwrap().clone();
    println!("192 wrong-password connections: answers {answered:?}");
    assert!(!answered.contains_key(&200), "{answered:?}");
    // Refused with 401 (verified), 503 (verifier queue full) or 429 (slowed down).
    assert!(
        answered.keys().all(|s| [401, 429, 503].contains(s)) && answered.contains_key(&429),
        "{answered:?}"
    );
    let log = g.sonde.log().join("\n");
    assert!(!log.contains("wrong") && !log.contains(PASSWORD), "{log}");
}

/// 1,000 connections at once: half sent nothing, half a partial request.
#[test]
fn a_thousand_connections_do_not_stall_scrapes() {
    let _one = flood_lock();
    let g = Guarded::start(&[]);
    let mut scraper = g.scraper();
    let mut held = Vec::new();
    for i in 0..1000 {
        let mut s = TcpStream::connect(g.sonde.addr).unwrap();
        if i % 2 == 1 {
            // The start of a TLS ClientHello, never finished.
            let _ = s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]);
        }
        held.push(s);
    }
    std::thread::sleep(Duration::from_millis(300));
    scraper.measure("1,000 connections");
    assert_rss_bounded(&g, "1,000 connections");
    drop(held);
}

/// 80 clients ask for a 3,000-target `/api/v1/targets` (1.2 MB, built per request) and
/// never read: scrapes and health checks have workers of their own and are answered
/// at once, not after the backlog (once, minutes of it).
#[test]
fn a_burst_of_large_json_requests_does_not_stall_scrapes() {
    let _one = flood_lock();
    let urls: Vec<String> = (0..3000)
        .map(|i| format!("\"http://127.0.0.1:9/u{i}\""))
        .collect();
    let sonde = Sonde::start(&format!(
        "checks:\n  - name: many\n    kind: http\n    interval: 1h\n    timeout: 30s\n    urls: [{}]\n",
        urls.join(", ")
    ));
    sonde.wait_metrics(30, |m| {
        m.value("sonde_check_runs_total{check=\"many\",kind=\"http\"}") == Some(1.0)
    });
    let ask = "GET /api/v1/targets HTTP/1.1\r\nHost: sonde\r\n\r\n";
    let held: Vec<TcpStream> = (0..80)
        .map(|_| {
            let mut s = TcpStream::connect(sonde.addr).unwrap();
            s.write_all(ask.as_bytes()).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    for path in ["/metrics", "/-/ready", "/metrics", "/-/healthy", "/metrics"] {
        let started = Instant::now();
        let r = request(sonde.addr, "GET", path, &[], b"");
        let took = started.elapsed();
        println!("{path} during the burst: {} in {took:?}", r.status);
        assert_eq!(r.status, 200, "{path}");
        assert!(took < Duration::from_secs(2), "{path} took {took:?}");
    }
    // Once every held client has its answer built, they share one copy of it (each
    // held a 1.2 MB copy of its own: ~100 MB here, 1.1 GB with 400 clients).
    std::thread::sleep(Duration::from_secs(8));
    let rss = rss_mb(sonde.child.id());
    println!("RSS with 80 unread answers: {rss:.1} MB");
    assert!(rss < 60.0, "RSS {rss:.1} MB with 80 unread answers");
    drop(held);
}

/// Item 4: over TLS, a 20,000-byte body, 400 pipelined requests and a 40 KB header all
/// get their answers, as on plain HTTP.
#[test]
fn tls_requests_larger_than_a_record_and_pipelining_are_answered() {
    let g = Guarded::start(&[]);
    let auth = authorization(USER, PASSWORD);
    // A 20,000-byte body in one burst: a POST where GET is expected, so 405.
    let mut tls = g.tls();
    let body = vec![b'x'; 20_000];
    let head = format!(
        "POST /metrics HTTP/1.1\r\nHost: sonde\r\nAuthorization: {auth}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(&[head.as_bytes(), &body].concat()).unwrap();
    let answers = read_all(tls);
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].status, 405);
    // 400 pipelined requests in one write.
    let mut tls = g.tls();
    let one = format!("GET /-/healthy HTTP/1.1\r\nHost: sonde\r\nAuthorization: {auth}\r\n\r\n");
    let last = format!(
        "GET /-/healthy HTTP/1.1\r\nHost: sonde\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
    );
    tls.write_all((one.repeat(399) + &last).as_bytes()).unwrap();
    let answers = read_all(tls);
    assert_eq!(answers.len(), 400);
    assert!(
        answers
            .iter()
            .all(|r| r.status == 200 && r.text() == "Healthy.\n")
    );
    // A 40 KB header: 431, over TLS as over plain HTTP.
    let mut tls = g.tls();
    let big = format!(
        "GET / HTTP/1.1\r\nHost: sonde\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40_000)
    );
    let _ = tls.write_all(big.as_bytes());
    let answers = read_all(tls);
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].status, 431);
    // The same on plain HTTP.
    let plain = Sonde::start(CONFIG);
    let mut s = TcpStream::connect(plain.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(big.as_bytes());
    let answers = read_all(s);
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].status, 431);
}

/// Item 5: a request followed by a write shutdown (`nc -N`) is answered, 10 of 10, on
/// plain HTTP and over TLS (with and without close_notify).
#[test]
fn half_closed_clients_get_their_answers() {
    let plain = Sonde::start(CONFIG);
    for _ in 0..10 {
        let mut s = TcpStream::connect(plain.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: a\r\n\r\nGET /healthcheck HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let answers = read_all(s);
        assert_eq!(answers.len(), 2, "plain");
        assert_eq!(answers[0].text(), "Healthy.\n");
        assert_eq!(answers[1].json()["app_status"], "ok");
    }
    let g = Guarded::start(&[]);
    let auth = authorization(USER, PASSWORD);
    for i in 0..10 {
        let mut tls = g.tls();
        let req = format!("GET /-/healthy HTTP/1.1\r\nHost: a\r\nAuthorization: {auth}\r\n\r\n");
        tls.write_all(req.as_bytes()).unwrap();
        if i % 2 == 0 {
            tls.conn.send_close_notify();
            tls.flush().unwrap();
        }
        tls.sock.shutdown(Shutdown::Write).unwrap();
        let answers = read_all(tls);
        assert_eq!(answers.len(), 1, "TLS, close_notify: {}", i % 2 == 0);
        assert_eq!(answers[0].status, 200);
    }
}

/// Item 6: truncating the web config, or leaving only `tls_server_config:`, keeps TLS
/// and authentication; the status metric says the file was not applied; `{}` on purpose
/// turns both off.
#[test]
fn an_empty_or_partial_web_config_keeps_tls_and_auth() {
    let g = Guarded::start(&[]);
    let mut scraper = g.scraper();
    let status = |scraper: &mut Scraper| {
        let mut conn = scraper.conn.take().unwrap();
        let head = format!(
            "GET /metrics HTTP/1.1\r\nHost: s\r\nAuthorization: {}\r\n\r\n",
            authorization(USER, PASSWORD)
        );
        conn.get_mut().write_all(head.as_bytes()).unwrap();
        let r = read_next_response(&mut conn).unwrap().unwrap();
        scraper.conn = Some(conn);
        Exposition(r.text()).value("sonde_web_config_last_reload_successful")
    };
    assert_eq!(status(&mut scraper), Some(1.0));
    for (text, what) in [("", "empty"), ("tls_server_config:\n", "no value")] {
        std::fs::write(&g.web, text).unwrap();
        // The files are looked at once a second, on a new connection.
        let deadline = Instant::now() + Duration::from_secs(10);
        while status(&mut scraper) != Some(0.0) {
            assert!(Instant::now() < deadline, "{what}: change not noticed");
            let _ = g.tls();
            std::thread::sleep(Duration::from_millis(200));
        }
        // Still TLS: plain HTTP gets the 400 of an HTTPS port; still auth: 401.
        let raw = raw_exchange(g.sonde.addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(
            String::from_utf8_lossy(&raw).contains("HTTP request to an HTTPS server"),
            "{what}"
        );
        let mut tls = g.tls();
        tls.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        assert_eq!(read_all(tls)[0].status, 401, "{what}");
    }
    assert!(
        g.sonde
            .log()
            .iter()
            .any(|l| l.contains("not applied") && l.contains("would turn TLS off"))
    );
    // Repaired: applied again.
    std::fs::write(&g.web, guarded_web_config()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&mut scraper) != Some(1.0) {
        assert!(Instant::now() < deadline, "repair not noticed");
        let _ = g.tls();
        std::thread::sleep(Duration::from_millis(200));
    }
    // `{}`: plain HTTP without authentication, on purpose.
    std::fs::write(&g.web, "{}\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let _ = tls_connect(g.sonde.addr, &g.ca.pem);
        if let Ok(r) = try_request(g.sonde.addr, "GET", "/-/healthy", &[], b"")
            && r.status == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "{{}} not applied");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Item 8: framing headers in `http_server_config.headers` are refused with the file,
/// line and column.
#[test]
fn framing_headers_in_the_web_config_are_refused() {
    let dir = Dir::new();
    let config = dir.write("sonde.yml", CONFIG);
    for header in ["Content-Length: \"0\"", "Connection: close"] {
        let web = dir.write(
            "web.yml",
            format!("http_server_config:\n  headers:\n    {header}\n"),
        );
        let args = [
            "-c",
            config.to_str().unwrap(),
            "--web.config.file",
            web.to_str().unwrap(),
        ];
        exits_2_naming(
            &args,
            &format!("sonde: {}:3:", web.display()),
            "cannot be configured",
        );
    }
}

/// Runs sonde with `args`, with and without `--config.check`: both exit 2 with one line
/// that starts with `prefix` and contains `contains`.
fn exits_2_naming(args: &[&str], prefix: &str, contains: &str) {
    for check in [true, false] {
        let mut all = args.to_vec();
        all.extend(["--web.listen-address", "127.0.0.1:0"]);
        if check {
            all.push("--config.check");
        }
        let out = run(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{all:?}: {stderr}");
        assert!(
            stderr.starts_with(prefix) && stderr.contains(contains),
            "{all:?}: {stderr}"
        );
    }
}

fn mkfifo(path: &std::path::Path) {
    let name = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
}

/// Item 10: a FIFO as config, web config or secret file is an error naming it; a reload
/// into one neither hangs nor stops SIGTERM from working.
#[test]
fn fifos_are_errors_not_hangs() {
    let dir = Dir::new();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let fifo_text = fifo.to_str().unwrap();
    let config = dir.write(
        "secret.yml",
        format!(
            "checks:\n  - name: s\n    kind: http\n    urls: [\"http://127.0.0.1:9/\"]\n    bearer_token_file: {fifo_text}\n"
        ),
    );
    let good = dir.write("good.yml", CONFIG);
    for args in [
        vec!["--config.check", "-c", fifo_text],
        vec!["--config.check", "-c", config.to_str().unwrap()],
        vec![
            "--config.check",
            "-c",
            good.to_str().unwrap(),
            "--web.config.file",
            fifo_text,
        ],
    ] {
        let started = Instant::now();
        let out = run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(fifo_text) && stderr.contains("FIFO"),
            "{args:?}: {stderr}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    // A running sonde whose config becomes a FIFO: SIGHUP logs the problem, SIGTERM stops it.
    let mut sonde = Sonde::start(CONFIG);
    sonde.wait_ready();
    let path = sonde.dir.path().join("sonde.yml");
    std::fs::remove_file(&path).unwrap();
    mkfifo(&path);
    sonde.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sonde
        .log()
        .iter()
        .any(|l| l.contains("reload failed") && l.contains("FIFO"))
    {
        assert!(Instant::now() < deadline, "{:?}", sonde.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(sonde.get("/-/healthy").status, 200);
    sonde.signal("TERM");
    assert_eq!(sonde.wait_exit(Duration::from_secs(2)), Some(0));
}

/// Item 3: an interval of 2^64-1 seconds (or 2^63-1) is refused by --config.check, at
/// start and on SIGHUP, naming line and column; a running sonde carries on.
#[test]
fn a_huge_interval_is_a_config_error_not_an_abort() {
    for value in ["18446744073709551615", "9223372036854775807"] {
        let dir = Dir::new();
        let text = format!(
            "checks:\n  - name: web\n    kind: http\n    interval: {value}\n    urls: [\"http://127.0.0.1:9/\"]\n"
        );
        let path = dir.write("sonde.yml", &text);
        exits_2_naming(
            &["-c", path.to_str().unwrap()],
            &format!("sonde: {}:4:15: check \"web\": ", path.display()),
            "too large",
        );
        let sonde = Sonde::start(CONFIG);
        sonde.wait_ready();
        sonde.dir.write("sonde.yml", &text);
        sonde.signal("HUP");
        sonde.wait_metrics(10, |m| {
            m.value("sonde_config_last_reload_successful") == Some(0.0)
        });
        assert_eq!(sonde.get("/-/healthy").status, 200);
    }
}

/// Item 11: duplicate keys and a second document, told for a person.
#[test]
fn duplicate_keys_and_second_documents_name_both_places() {
    let dir = Dir::new();
    for (text, expected) in [
        (
            "checks:\n  - name: web\n    kind: http\n    interval: 5s\n    interval: 10s\n    urls: [\"http://127.0.0.1:9/\"]\n",
            ":5:5: key `interval` appears twice (lines 4 and 5)",
        ),
        (
            "checks:\n  - {name: a, kind: hwmon}\n---\nchecks:\n  - {name: b, kind: hwmon}\n",
            ":3:1: a second YAML document starts on line 3",
        ),
    ] {
        let path = dir.write("sonde.yml", text);
        let out = run(&["--config.check", "-c", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("{}{expected}", path.display())),
            "{stderr}"
        );
        assert!(
            !stderr.contains("Options") && !stderr.contains("from_str"),
            "{stderr}"
        );
    }
    let web = dir.write("web.yml", "basic_auth_users: {}\nbasic_auth_users: {}\n");
    let out = run(&["--config.check", "--web.config.file", web.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("web.yml:2:1: key `basic_auth_users` appears twice (lines 1 and 2)"),
        "{stderr}"
    );
}
