//! The listener, the readiness loop and the worker pool.
//!
//! One thread owns the listening socket and every connection that is not being
//! answered. It waits on epoll (the `polling` crate), reads whatever bytes arrived
//! without blocking and parses them; only a complete request goes to a worker. So an
//! idle keep-alive connection or a client that sends one byte per second costs a file
//! descriptor and a buffer, never a thread. Workers (a fixed number) call the handler,
//! write the response with a deadline and give the connection back.
//!
//! When `accept` fails for lack of descriptors, the loop closes the connection that has
//! been idle longest to make room; if none can be closed it pauses accepting briefly
//! and tries again, so it answers again as soon as descriptors are free.
//!
//! A request the handler answers slowly (`/probe` runs a probe that may take seconds)
//! is answered on a thread of its own ([`Answer::Later`]): the worker hands the
//! connection over and is free again at once. The handler bounds how many such threads
//! there are.
//!
//! With TLS the loop also runs the handshake without blocking (rustls' `read_tls` /
//! `write_tls`), watching for writability while rustls has bytes to send; a plain-HTTP
//! request on the TLS port gets a plain 400, as Go's servers answer.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use polling::{Event, Events, Poller};

use super::http1::{self, Body, Parsed, Request, Response};
use super::security::Security;
use crate::sync::lock;

/// Answers requests; implemented by the routes.
pub trait Handler: Send + Sync + 'static {
    /// Produces the response to one request.
    fn handle(&self, request: &Request) -> Response;

    /// The response now, or the work that makes it, to be run off the worker pool.
    fn answer(&self, request: &Request) -> Answer {
        Answer::Now(self.handle(request))
    }
}

/// How a request is answered.
pub enum Answer {
    /// This response, written by the worker.
    Now(Response),
    /// Slow work that makes the response, run and written on a thread of its own.
    Later(Box<dyn FnOnce() -> Response + Send>),
}

/// Limits of the server.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Worker threads answering requests.
    pub workers: usize,
    /// Connections held open at most (idle ones are closed first to make room).
    pub max_connections: usize,
    /// Time allowed between the first byte of a request and its last.
    pub request_timeout: Duration,
    /// An idle keep-alive connection is closed after this long.
    pub idle_timeout: Duration,
    /// Time allowed to write one response.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            workers: 4,
            max_connections: 1024,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// A running server.
pub struct Server {
    stop: Arc<AtomicBool>,
    poller: Arc<Poller>,
    thread: Option<JoinHandle<()>>,
    local: SocketAddr,
}

impl Server {
    /// Serves `handler` on `listener` until stopped.
    /// Serves `handler` on `listener` until stopped, with TLS and authentication as
    /// `security` says.
    pub fn start(
        listener: TcpListener,
        handler: Arc<dyn Handler>,
        limits: Limits,
        security: Arc<Security>,
    ) -> io::Result<Server> {
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let poller = Arc::new(Poller::new()?);
        // SAFETY: the listener is deleted from the poller before it is dropped (end of `run`).
        unsafe { poller.add(&listener, Event::readable(LISTENER))? };
        let stop = Arc::new(AtomicBool::new(false));
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let (back_tx, back_rx) = mpsc::channel::<Returned>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        for i in 0..limits.workers.max(1) {
            let worker = Worker {
                jobs: Arc::clone(&job_rx),
                back: back_tx.clone(),
                poller: Arc::clone(&poller),
                handler: Arc::clone(&handler),
                security: Arc::clone(&security),
                write_timeout: limits.write_timeout,
            };
            std::thread::Builder::new()
                .name(format!("sonde-web-{i}"))
                // gzip's compressor state lives on the stack while it runs.
                .stack_size(2 << 20)
                .spawn(move || worker.run())?;
        }
        let mut event_loop = Loop {
            listener,
            poller: Arc::clone(&poller),
            conns: Vec::new(),
            free: Vec::new(),
            open: 0,
            jobs: job_tx,
            back: back_rx,
            limits,
            paused_until: None,
            last_exhaustion_log: None,
            security,
        };
        let stop_flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("sonde-web".into())
            .stack_size(256 << 10)
            .spawn(move || event_loop.run(&stop_flag))?;
        Ok(Server {
            stop,
            poller,
            thread: Some(thread),
            local,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops accepting and closes every idle connection.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.poller.notify();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The poller key of the listening socket (polling reserves `usize::MAX`).
const LISTENER: usize = usize::MAX - 1;

/// The socket of a connection, with its TLS state when TLS is on.
enum Transport {
    Plain(TcpStream),
    Tls(TcpStream, Box<rustls::ServerConnection>),
}

impl Transport {
    fn socket(&self) -> &TcpStream {
        match self {
            Transport::Plain(s) | Transport::Tls(s, _) => s,
        }
    }

    /// Whether rustls has bytes waiting for the socket to become writable.
    fn wants_write(&self) -> bool {
        matches!(self, Transport::Tls(_, tls) if tls.wants_write())
    }

    /// Best-effort write of an interim response (`100 Continue`) on a live connection.
    fn write_interim(&mut self, bytes: &[u8]) {
        match self {
            Transport::Plain(s) => {
                let _ = s.write(bytes);
            }
            Transport::Tls(s, tls) => {
                let _ = tls.writer().write_all(bytes);
                while tls.wants_write() {
                    if tls.write_tls(s).is_err() {
                        break;
                    }
                }
            }
        }
    }

    /// Best-effort write of a short answer before closing (non-blocking).
    fn write_best_effort(&mut self, bytes: &[u8]) {
        match self {
            Transport::Plain(s) => {
                let _ = s.write(bytes);
            }
            Transport::Tls(s, tls) => {
                let _ = tls.writer().write_all(bytes);
                tls.send_close_notify();
                while tls.wants_write() {
                    if tls.write_tls(s).is_err() {
                        break;
                    }
                }
            }
        }
    }
}

/// A connection and what has been received on it.
struct Conn {
    transport: Transport,
    buf: Vec<u8>,
    /// When the current request started arriving, or when the connection went idle.
    since: Instant,
    /// Whether part of a request is in `buf`.
    reading: bool,
    /// `100 Continue` was sent for the request in `buf`.
    continued: bool,
}

enum Entry {
    Free,
    /// Owned by the loop and registered with the poller.
    Open(Conn),
    /// With a worker.
    Busy,
}

struct Job {
    index: usize,
    conn: Conn,
    request: Request,
}

struct Returned {
    index: usize,
    conn: Option<Conn>,
}

struct Loop {
    listener: TcpListener,
    poller: Arc<Poller>,
    conns: Vec<Entry>,
    free: Vec<usize>,
    open: usize,
    jobs: mpsc::Sender<Job>,
    back: mpsc::Receiver<Returned>,
    limits: Limits,
    paused_until: Option<Instant>,
    last_exhaustion_log: Option<Instant>,
    security: Arc<Security>,
}

impl Loop {
    fn run(&mut self, stop: &AtomicBool) {
        let mut events = Events::new();
        let mut last_sweep = Instant::now();
        while !stop.load(Ordering::Acquire) {
            events.clear();
            let mut wait = Duration::from_millis(250);
            if let Some(until) = self.paused_until {
                wait = wait.min(until.saturating_duration_since(Instant::now()));
            }
            if let Err(e) = self.poller.wait(&mut events, Some(wait))
                && e.kind() != io::ErrorKind::Interrupted
            {
                log::error!("msg=\"web server wait failed\" error=\"{e}\"");
                std::thread::sleep(Duration::from_millis(50));
            }
            for event in events.iter() {
                if event.key == LISTENER {
                    self.accept();
                } else {
                    self.on_event(event.key);
                }
            }
            while let Ok(returned) = self.back.try_recv() {
                self.on_returned(returned);
            }
            if let Some(until) = self.paused_until
                && Instant::now() >= until
            {
                self.paused_until = None;
                self.accept();
            }
            if last_sweep.elapsed() >= Duration::from_millis(250) {
                self.sweep();
                last_sweep = Instant::now();
            }
        }
        for i in 0..self.conns.len() {
            self.close(i);
        }
        let _ = self.poller.delete(&self.listener);
    }

    fn accept(&mut self) {
        if self.paused_until.is_some() {
            return;
        }
        loop {
            match self.listener.accept() {
                Ok((stream, _peer)) => {
                    if self.open >= self.limits.max_connections && !self.evict_idlest() {
                        drop(stream);
                        continue;
                    }
                    self.register(stream);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_exhaustion(&e) => {
                    if self.evict_idlest() {
                        continue;
                    }
                    self.log_exhaustion(&e);
                    self.paused_until = Some(Instant::now() + Duration::from_millis(100));
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) => {
                    log::warn!("msg=\"accept failed\" error=\"{e}\"");
                    self.paused_until = Some(Instant::now() + Duration::from_millis(100));
                    return;
                }
            }
        }
        if let Err(e) = self
            .poller
            .modify(&self.listener, Event::readable(LISTENER))
        {
            log::error!("msg=\"cannot watch the listener\" error=\"{e}\"");
            self.paused_until = Some(Instant::now() + Duration::from_millis(100));
        }
    }

    fn log_exhaustion(&mut self, e: &io::Error) {
        let due = self
            .last_exhaustion_log
            .is_none_or(|t| t.elapsed() > Duration::from_secs(10));
        if due {
            log::warn!(
                "msg=\"out of file descriptors; pausing accept until some are free\" open_connections={} error=\"{e}\"",
                self.open
            );
            self.last_exhaustion_log = Some(Instant::now());
        }
    }

    fn register(&mut self, stream: TcpStream) {
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let _ = stream.set_nodelay(true);
        let transport = match &self.security.current().tls {
            None => Transport::Plain(stream),
            Some(config) => match rustls::ServerConnection::new(Arc::clone(config)) {
                Ok(tls) => Transport::Tls(stream, Box::new(tls)),
                Err(e) => {
                    log::warn!("msg=\"cannot start TLS for a connection\" error=\"{e}\"");
                    return;
                }
            },
        };
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.conns.push(Entry::Free);
                self.conns.len() - 1
            }
        };
        // SAFETY: every path that drops a registered stream deletes it first (`close`,
        // `dispatch`).
        if unsafe { self.poller.add(transport.socket(), Event::readable(index)) }.is_err() {
            self.free.push(index);
            return;
        }
        self.conns[index] = Entry::Open(Conn {
            transport,
            buf: Vec::new(),
            since: Instant::now(),
            reading: false,
            continued: false,
        });
        self.open += 1;
    }

    fn close(&mut self, index: usize) {
        if let Some(Entry::Open(conn)) = self.conns.get(index) {
            let _ = self.poller.delete(conn.transport.socket());
        }
        if let Some(entry) = self.conns.get_mut(index)
            && !matches!(entry, Entry::Free)
        {
            *entry = Entry::Free;
            self.free.push(index);
            self.open -= 1;
        }
    }

    /// Closes the connection that has waited longest without a request in progress,
    /// else the oldest partial request. Returns whether one was closed.
    fn evict_idlest(&mut self) -> bool {
        let victim = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match e {
                Entry::Open(c) => Some((c.reading, c.since, i)),
                _ => None,
            })
            .min();
        match victim {
            Some((_, _, i)) => {
                self.close(i);
                true
            }
            None => false,
        }
    }

    fn on_event(&mut self, index: usize) {
        let Some(Entry::Open(conn)) = self.conns.get_mut(index) else {
            return;
        };
        let was_reading = conn.reading;
        let outcome = match &mut conn.transport {
            Transport::Plain(stream) => read_plain(stream, &mut conn.buf),
            Transport::Tls(stream, tls) => read_tls(stream, tls, &mut conn.buf),
        };
        if !was_reading && !conn.buf.is_empty() {
            conn.reading = true;
            conn.since = Instant::now();
        }
        if outcome {
            self.process(index);
        } else {
            self.close(index);
        }
    }

    /// Acts on the bytes buffered for a connection: dispatch a request, answer an
    /// unacceptable one, or wait for more.
    fn process(&mut self, index: usize) {
        let Some(Entry::Open(conn)) = self.conns.get_mut(index) else {
            return;
        };
        if conn.buf.is_empty() {
            conn.reading = false;
            conn.since = Instant::now();
            self.rearm(index);
            return;
        }
        match http1::parse(&conn.buf) {
            Parsed::Complete(request, used) => {
                conn.buf.drain(..used);
                conn.continued = false;
                self.dispatch(index, request);
            }
            Parsed::Partial { expects_continue } => {
                if expects_continue && !conn.continued {
                    conn.continued = true;
                    conn.transport
                        .write_interim(b"HTTP/1.1 100 Continue\r\n\r\n");
                }
                self.rearm(index);
            }
            Parsed::Reject(status, why) => {
                let bytes = Response::text(status, why).to_bytes(false);
                // Best effort: the socket is non-blocking and the answer is small.
                conn.transport.write_best_effort(&bytes);
                self.close(index);
            }
        }
    }

    fn rearm(&mut self, index: usize) {
        let failed = match self.conns.get(index) {
            Some(Entry::Open(conn)) => {
                // While rustls has handshake bytes the socket would not take, wait for
                // writability too.
                let interest = if conn.transport.wants_write() {
                    Event::all(index)
                } else {
                    Event::readable(index)
                };
                self.poller
                    .modify(conn.transport.socket(), interest)
                    .is_err()
            }
            _ => false,
        };
        if failed {
            self.close(index);
        }
    }

    fn dispatch(&mut self, index: usize, request: Request) {
        let entry = std::mem::replace(&mut self.conns[index], Entry::Busy);
        let Entry::Open(conn) = entry else {
            self.conns[index] = entry;
            return;
        };
        let _ = self.poller.delete(conn.transport.socket());
        if let Err(mpsc::SendError(job)) = self.jobs.send(Job {
            index,
            conn,
            request,
        }) {
            drop(job);
            self.conns[index] = Entry::Busy;
            self.close(index);
        }
    }

    fn on_returned(&mut self, returned: Returned) {
        let index = returned.index;
        let Some(mut conn) = returned.conn else {
            self.close(index);
            return;
        };
        conn.reading = !conn.buf.is_empty();
        conn.since = Instant::now();
        // SAFETY: as in `register`.
        if unsafe {
            self.poller
                .add(conn.transport.socket(), Event::readable(index))
        }
        .is_err()
        {
            self.close(index);
            return;
        }
        self.conns[index] = Entry::Open(conn);
        if matches!(&self.conns[index], Entry::Open(c) if !c.buf.is_empty()) {
            // A pipelined request is already buffered.
            self.process(index);
        }
    }

    /// Closes connections whose request is too slow or that stayed idle too long.
    fn sweep(&mut self) {
        let now = Instant::now();
        let expired: Vec<usize> = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match e {
                Entry::Open(c) => {
                    let limit = if c.reading {
                        self.limits.request_timeout
                    } else {
                        self.limits.idle_timeout
                    };
                    (now.duration_since(c.since) > limit).then_some(i)
                }
                _ => None,
            })
            .collect();
        for i in expired {
            if let Some(Entry::Open(conn)) = self.conns.get_mut(i)
                && conn.reading
            {
                let bytes = Response::text(408, "request timeout").to_bytes(false);
                conn.transport.write_best_effort(&bytes);
            }
            self.close(i);
        }
    }
}

fn is_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

struct Worker {
    jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
    back: mpsc::Sender<Returned>,
    poller: Arc<Poller>,
    handler: Arc<dyn Handler>,
    security: Arc<Security>,
    write_timeout: Duration,
}

/// What writing a response and giving the connection back needs; a worker has one,
/// and so has each thread that answers later.
#[derive(Clone)]
struct Reply {
    back: mpsc::Sender<Returned>,
    poller: Arc<Poller>,
    write_timeout: Duration,
    /// The web config's extra headers.
    headers: Vec<(String, String)>,
}

impl Reply {
    /// Writes `response` and gives the connection back to the loop; false when the loop
    /// is gone.
    fn finish(&self, mut job: Job, mut response: Response) -> bool {
        for (name, value) in &self.headers {
            response
                .headers
                .push((name.clone().into(), value.clone().into()));
        }
        let keep_alive = job.request.keep_alive;
        let head = response.head(keep_alive);
        let body = (job.request.method != "HEAD").then_some(&response.body);
        let written = send(&mut job.conn.transport, &head, body, self.write_timeout);
        let conn = (written.is_ok() && keep_alive).then_some(job.conn);
        if self
            .back
            .send(Returned {
                index: job.index,
                conn,
            })
            .is_err()
        {
            return false;
        }
        let _ = self.poller.notify();
        true
    }

    /// Runs `work` and writes its response on a new thread; when no thread can be
    /// started the worker answers 503 itself.
    fn later(&self, job: Job, work: Box<dyn FnOnce() -> Response + Send>) -> bool {
        let shared = Arc::new(Mutex::new(Some(job)));
        let (mine, reply) = (Arc::clone(&shared), self.clone());
        let spawned = std::thread::Builder::new()
            .name("sonde-web-probe".into())
            .stack_size(512 << 10)
            .spawn(move || {
                let response = work();
                if let Some(job) = lock(&mine).take() {
                    reply.finish(job, response);
                }
            });
        match spawned {
            Ok(_) => true,
            Err(e) => {
                log::warn!("msg=\"cannot start a thread to answer a request\" error=\"{e}\"");
                let Some(job) = lock(&shared).take() else {
                    return true;
                };
                self.finish(
                    job,
                    Response::text(503, "cannot start a thread for this request"),
                )
            }
        }
    }
}

impl Worker {
    fn run(self) {
        loop {
            let job = lock(&self.jobs).recv();
            let Ok(job) = job else { return };
            let settings = self.security.current();
            let reply = Reply {
                back: self.back.clone(),
                poller: Arc::clone(&self.poller),
                write_timeout: self.write_timeout,
                headers: settings.headers.clone(),
            };
            let authorization = job.request.header("authorization");
            let answer = if self.security.authorized(&settings, authorization) {
                self.handler.answer(&job.request)
            } else {
                Answer::Now(
                    Response::text(401, "Unauthorized")
                        .with_header("WWW-Authenticate", "Basic realm=\"sonde\""),
                )
            };
            let alive = match answer {
                Answer::Now(response) => reply.finish(job, response),
                Answer::Later(work) => reply.later(job, work),
            };
            if !alive {
                return;
            }
        }
    }
}

/// Writes head and body within `timeout` in total, then restores non-blocking mode.
/// Small pieces of a streamed body are gathered into writes of up to 64 KiB.
fn send(
    transport: &mut Transport,
    head: &[u8],
    body: Option<&Body>,
    timeout: Duration,
) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    transport.socket().set_nonblocking(false)?;
    let result = (|| {
        let mut pending = Vec::with_capacity(64 << 10);
        pending.extend_from_slice(head);
        if let Some(body) = body {
            body.write_to(&mut |chunk| {
                if pending.len() + chunk.len() > pending.capacity() {
                    write_part(transport, &pending, deadline)?;
                    pending.clear();
                }
                if chunk.len() >= pending.capacity() {
                    write_part(transport, chunk, deadline)
                } else {
                    pending.extend_from_slice(chunk);
                    Ok(())
                }
            })?;
        }
        write_part(transport, &pending, deadline)
    })();
    transport.socket().set_nonblocking(true)?;
    result
}

/// Writes all of `part` on a blocking socket before `deadline`.
fn write_part(transport: &mut Transport, mut part: &[u8], deadline: Instant) -> io::Result<()> {
    let left = || {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "write deadline passed",
            ))
        } else {
            Ok(left)
        }
    };
    match transport {
        Transport::Plain(stream) => {
            while !part.is_empty() {
                stream.set_write_timeout(Some(left()?))?;
                match stream.write(&part[..part.len().min(256 << 10)]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => part = &part[n..],
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Transport::Tls(stream, tls) => {
            while !part.is_empty() {
                let n = tls.writer().write(&part[..part.len().min(64 << 10)])?;
                part = &part[n..];
                if n == 0 && !tls.wants_write() {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                while tls.wants_write() {
                    stream.set_write_timeout(Some(left()?))?;
                    tls.write_tls(stream)?;
                }
            }
        }
    }
    Ok(())
}

/// Bytes buffered beyond which reading pauses until the request is parsed.
const READ_CAP: usize = http1::MAX_HEAD_BYTES + http1::MAX_BODY_BYTES;

/// Reads what arrived; false when the connection is over.
fn read_plain(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    while buf.len() <= READ_CAP {
        match stream.read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

const PLAIN_HTTP_ON_TLS: &[u8] =
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// Feeds what arrived to rustls and appends the plaintext; false when the connection is over.
fn read_tls(stream: &mut TcpStream, tls: &mut rustls::ServerConnection, buf: &mut Vec<u8>) -> bool {
    if tls.is_handshaking() && !tls.wants_write() {
        // A TLS connection starts with a handshake record (0x16); letters mean HTTP.
        let mut first = [0u8; 1];
        if let Ok(1) = stream.peek(&mut first)
            && first[0].is_ascii_uppercase()
        {
            let _ = stream.write(PLAIN_HTTP_ON_TLS);
            return false;
        }
    }
    let mut eof = false;
    loop {
        match tls.read_tls(stream) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
        if tls.wants_read() {
            continue;
        }
        break;
    }
    if tls.process_new_packets().is_err() {
        // Send the alert rustls prepared, then give up on the connection.
        while tls.wants_write() {
            if tls.write_tls(stream).is_err() {
                break;
            }
        }
        return false;
    }
    let mut chunk = [0u8; 8192];
    while buf.len() <= READ_CAP {
        match tls.reader().read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => return false,
        }
    }
    while tls.wants_write() {
        match tls.write_tls(stream) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => return false,
        }
    }
    !eof
}
