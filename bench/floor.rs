//! The floor under CPU per probe: the least a prober can spend on this machine.
//!
//! It does what a probe of a local page must do and nothing else: connect, (for https)
//! a full TLS handshake with the same library and crypto sonde uses (rustls, ring),
//! send one GET, read the whole answer, close, at a fixed rate, and prints the CPU it
//! spent per request. bench/bench.py runs it beside sonde at the same rate, so the
//! table says how far above the floor sonde is, and how far below it any goal lies.
//!
//! `--together K` starts K requests at once on non-blocking sockets driven by one
//! poller: what an event-loop prober that groups its probes could reach, since here
//! most of a lone request's CPU goes to the kernel putting the CPU to sleep and waking
//! it up again.
//!
//! Usage: floor --port P [--ca FILE] [--rate N] [--count N] [--together K]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use polling::{Event, Events, Poller};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// The most a response may be; the bench page is a few hundred bytes.
const MAX_BODY: usize = 1 << 20;
const TIMEOUT: Duration = Duration::from_secs(5);

struct Args {
    port: u16,
    ca: Option<String>,
    rate: u32,
    count: u32,
    together: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        port: 0,
        ca: None,
        rate: 200,
        count: 2000,
        together: 1,
    };
    let mut raw = std::env::args().skip(1);
    while let Some(flag) = raw.next() {
        let value = raw.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: std::num::ParseIntError| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--port" => args.port = value.parse().map_err(bad)?,
            "--ca" => args.ca = Some(value),
            "--rate" => args.rate = value.parse().map_err(bad)?,
            "--count" => args.count = value.parse().map_err(bad)?,
            "--together" => args.together = value.parse().map_err(bad)?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if args.port == 0 || args.rate == 0 || args.together == 0 {
        return Err("--port, --rate and --together must be above 0".into());
    }
    Ok(args)
}

/// User + system CPU of this process so far (what /proc/<pid>/stat counts for sonde
/// and blackbox_exporter, to the microsecond rather than the clock tick: a quick run
/// of the floor spends only a few ticks).
fn cpu_seconds() -> Result<f64, String> {
    // SAFETY: an all-zero rusage is a valid value, and getrusage only writes into it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(secs(usage.ru_utime) + secs(usage.ru_stime))
}

fn request(port: u16, i: u32) -> String {
    format!("GET /index.html?u={i} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
}

/// Reads until the server closes (the request asked it to), at most [`MAX_BODY`].
fn read_all(stream: &mut impl Read) -> Result<usize, String> {
    let mut buf = [0u8; 16 << 10];
    let mut total = 0;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n,
            Err(e) => return Err(e.to_string()),
        }
        if total > MAX_BODY {
            return Err("answer over 1 MiB".into());
        }
    }
}

fn tls_config(ca: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{ca}: {e}"))? {
        roots
            .add(cert.map_err(|e| format!("{ca}: {e}"))?)
            .map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // A full handshake each time, as sonde and blackbox_exporter do: a resumed session
    // skips the certificate and its verification.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// One request at a time on a blocking socket, as a thread-per-probe prober does.
fn one(addr: SocketAddr, i: u32, tls: Option<&Arc<rustls::ClientConfig>>) -> Result<usize, String> {
    let mut tcp = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(io)?;
    tcp.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    tcp.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    tcp.set_nodelay(true).map_err(io)?;
    let req = request(addr.port(), i);
    match tls {
        None => {
            tcp.write_all(req.as_bytes()).map_err(io)?;
            read_all(&mut tcp)
        }
        Some(config) => {
            let name = ServerName::IpAddress(addr.ip().into());
            let conn = rustls::ClientConnection::new(Arc::clone(config), name)
                .map_err(|e| e.to_string())?;
            let mut stream = rustls::StreamOwned::new(conn, tcp);
            stream.write_all(req.as_bytes()).map_err(io)?;
            read_all(&mut stream)
        }
    }
}

/// One request of a group, on a non-blocking socket.
struct Open {
    tcp: TcpStream,
    tls: Option<rustls::ClientConnection>,
    /// Bytes of the answer so far.
    got: usize,
}

fn io(e: std::io::Error) -> String {
    e.to_string()
}

fn would_block(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock
}

/// Reads what the socket has; true once the answer is complete (the server closed).
fn drain_plain(tcp: &TcpStream, buf: &mut [u8], total: &mut usize) -> Result<bool, String> {
    loop {
        match (&*tcp).read(buf) {
            Ok(0) => return Ok(true),
            Ok(n) => *total += n,
            Err(e) if would_block(&e) => return Ok(false),
            Err(e) => return Err(io(e)),
        }
    }
}

/// Moves a TLS connection on as far as the socket allows; true once the answer is
/// complete (close_notify or the server closed).
fn drive_tls(
    tcp: &TcpStream,
    conn: &mut rustls::ClientConnection,
    buf: &mut [u8],
    total: &mut usize,
) -> Result<bool, String> {
    loop {
        while conn.wants_write() {
            match conn.write_tls(&mut &*tcp) {
                Ok(_) => {}
                Err(e) if would_block(&e) => break,
                Err(e) => return Err(io(e)),
            }
        }
        match conn.read_tls(&mut &*tcp) {
            Ok(0) => return Ok(true),
            Ok(_) => {
                conn.process_new_packets().map_err(|e| e.to_string())?;
            }
            Err(e) if would_block(&e) => return Ok(false),
            Err(e) => return Err(io(e)),
        }
        loop {
            match conn.reader().read(buf) {
                Ok(0) => return Ok(true),
                Ok(n) => *total += n,
                Err(e) if would_block(&e) => break,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(true),
                Err(e) => return Err(io(e)),
            }
        }
    }
}

impl Open {
    fn start(
        addr: SocketAddr,
        i: u32,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> Result<Open, String> {
        // Connected before it turns non-blocking: on loopback the handshake is done
        // within the call, so waiting for it on the poller would only add a round.
        let tcp = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(io)?;
        tcp.set_nodelay(true).map_err(io)?;
        tcp.set_nonblocking(true).map_err(io)?;
        let req = request(addr.port(), i);
        let tls = match tls {
            None => {
                // A fresh local connection takes a few dozen bytes at once.
                (&tcp).write_all(req.as_bytes()).map_err(io)?;
                None
            }
            Some(config) => {
                let name = ServerName::IpAddress(addr.ip().into());
                let mut conn = rustls::ClientConnection::new(Arc::clone(config), name)
                    .map_err(|e| e.to_string())?;
                // Held until the handshake is done, then sent.
                conn.writer().write_all(req.as_bytes()).map_err(io)?;
                Some(conn)
            }
        };
        Ok(Open { tcp, tls, got: 0 })
    }

    /// Moves the request on; true once its answer is complete, an error past
    /// [`MAX_BODY`].
    fn advance(&mut self, buf: &mut [u8]) -> Result<bool, String> {
        let done = match &mut self.tls {
            None => drain_plain(&self.tcp, buf, &mut self.got)?,
            Some(conn) => drive_tls(&self.tcp, conn, buf, &mut self.got)?,
        };
        if self.got > MAX_BODY {
            return Err("answer over 1 MiB".into());
        }
        Ok(done)
    }

    fn interest(&self, key: usize) -> Event {
        match &self.tls {
            Some(conn) if conn.wants_write() => Event::all(key),
            _ => Event::readable(key),
        }
    }
}

/// A group of requests at once, on non-blocking sockets and one poller, all done
/// within [`TIMEOUT`].
fn group(
    poller: &Poller,
    addr: SocketAddr,
    first: u32,
    k: usize,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<usize, String> {
    let (mut total, mut buf) = (0, [0u8; 16 << 10]);
    let mut live: Vec<Option<Open>> = Vec::with_capacity(k);
    for key in 0..k {
        let mut open = Open::start(addr, first + key as u32, tls)?;
        open.advance(&mut buf)?;
        // SAFETY: the socket stays registered only while `live` owns it (deleted below).
        unsafe { poller.add(&open.tcp, open.interest(key)) }.map_err(io)?;
        live.push(Some(open));
    }
    let (mut left, deadline) = (k, Instant::now() + TIMEOUT);
    let mut events = Events::new();
    while left > 0 {
        let Some(wait) = deadline.checked_duration_since(Instant::now()) else {
            return Err("no whole answer in time".into());
        };
        events.clear();
        poller.wait(&mut events, Some(wait)).map_err(io)?;
        for ev in events.iter() {
            let Some(open) = live.get_mut(ev.key).and_then(Option::as_mut) else {
                continue;
            };
            if open.advance(&mut buf)? {
                total += open.got;
                poller.delete(&open.tcp).map_err(io)?;
                live[ev.key] = None;
                left -= 1;
            } else {
                poller
                    .modify(&open.tcp, open.interest(ev.key))
                    .map_err(io)?;
            }
        }
    }
    Ok(total)
}

fn run(args: &Args) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let tls = args.ca.as_deref().map(tls_config).transpose()?;
    let poller = Poller::new().map_err(|e| e.to_string())?;
    let every = Duration::from_secs(1) / args.rate * args.together as u32;
    let (start, cpu_before) = (Instant::now(), cpu_seconds()?);
    let (mut done, mut bytes, mut slot) = (0u32, 0usize, 0u32);
    while done < args.count {
        let next = start + every * slot;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        bytes += if args.together == 1 {
            one(addr, done, tls.as_ref())?
        } else {
            group(&poller, addr, done, args.together, tls.as_ref())?
        };
        done += args.together as u32;
        slot += 1;
    }
    let cpu = cpu_seconds()? - cpu_before;
    println!(
        "cpu_per_request_us {:.1} requests {done} bytes {bytes}",
        cpu / f64::from(done) * 1e6
    );
    Ok(())
}

fn main() {
    if let Err(e) = parse_args().and_then(|args| run(&args)) {
        eprintln!("floor: {e}");
        std::process::exit(1);
    }
}
