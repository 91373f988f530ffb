//! The listener, the readiness loop, the worker pool and the bcrypt pool.
//!
//! One thread owns the listening socket and every connection, from accept to close. It
//! waits on epoll (the `polling` crate), reads whatever bytes arrived without blocking
//! and parses them; only a complete request leaves it, for a worker (a fixed number)
//! that computes the response and hands it back. The loop then writes the response
//! without blocking, as fast as the client reads (`conn.rs`), with a deadline per
//! response. So an idle keep-alive connection, a client that sends one byte per second
//! or one that never reads what it asked for costs a descriptor and a buffer, never a
//! thread: once, four clients that did not read held all four workers for 30 s each.
//!
//! A connection has at most one request in progress: the next pipelined request is
//! parsed only once the previous response is written, and reading stops at
//! [`READ_CAP`] bytes. That is the per-connection output cap: one response, whose body
//! is shared with every other scrape rather than copied, plus a kernel send buffer held
//! to [`SEND_BUFFER`].
//!
//! A request whose answer takes long (`/probe` runs a probe) is answered by a thread of
//! its own ([`Answer::Later`]): the worker is free again at once, and the handler bounds
//! how many such threads there are.
//!
//! Basic authentication is decided in the loop when it costs nothing (no users,
//! credentials verified before, a source that keeps failing); a request that needs
//! bcrypt goes to a pool of its own with a bounded queue, and a full queue is answered
//! 503 at once, so authenticated scrapes never wait behind guesses. A source that keeps
//! failing gets 429, held back for a second, without bcrypt.
//!
//! Answers that end a connection (400, 408, 413, 431, plain HTTP on the TLS port) are
//! written, the sending side is shut, and what the client still sends is read and thrown
//! away for a moment: closing with unread bytes would reset the connection and destroy
//! the answer before the client reads it. A client that half-closes after its request
//! (`nc -N`) still gets the answer to every complete request it sent.
//!
//! When `accept` fails for lack of descriptors, the loop closes the connection that has
//! been idle longest to make room; if none can be closed it pauses accepting briefly
//! and tries again, so it answers again as soon as descriptors are free.
//!
//! With TLS the loop also runs the handshake without blocking, watching for writability
//! while rustls has bytes to send; the handshake must finish within the request
//! timeout. A plain-HTTP request on the TLS port gets a plain 400, as Go's servers answer.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use polling::{Event, Events, Poller};

use super::auth::{Gate, Verification};
use super::conn::{Flush, Outgoing, PLAIN_HTTP_ON_TLS, Received, Transport, flush};
use super::http1::{self, Parsed, Request, Response};
use super::security::{Security, WebSettings};
use crate::sync::lock;

/// Answers requests; implemented by the routes.
pub trait Handler: Send + Sync + 'static {
    /// Produces the response to one request.
    fn handle(&self, request: &Request) -> Response;

    /// The response now, or the work that makes it, to be run off the worker pool.
    fn answer(&self, request: &Request) -> Answer {
        Answer::Now(self.handle(request))
    }

    /// A scrape (or a health check): answered by workers of its own, so it never waits
    /// behind pages and JSON that take long to build.
    fn urgent(&self, _request: &Request) -> bool {
        false
    }
}

/// How a request is answered.
pub enum Answer {
    /// This response, handed back to the loop by the worker.
    Now(Response),
    /// Slow work that makes the response (a probe), run on a thread of its own; the
    /// connection waits in the loop meanwhile, costing no worker.
    Later(Box<dyn FnOnce() -> Response + Send>),
}

/// Limits of the server.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Worker threads answering requests other than scrapes.
    pub workers: usize,
    /// Worker threads answering scrapes ([`Handler::urgent`]) only.
    pub scrape_workers: usize,
    /// Threads verifying passwords with bcrypt.
    pub verifiers: usize,
    /// Passwords waiting for a verifier at most; more are answered 503 at once.
    pub verify_queue: usize,
    /// Connections held open at most (idle ones are closed first to make room).
    pub max_connections: usize,
    /// Time allowed between the first byte of a request (or of the TLS handshake) and
    /// its last.
    pub request_timeout: Duration,
    /// An idle keep-alive connection is closed after this long.
    pub idle_timeout: Duration,
    /// Time allowed to write one response.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Limits {
            workers: 2,
            scrape_workers: 2,
            // bcrypt keeps a core busy: leave the others to serving.
            verifiers: (cores / 2).max(1),
            verify_queue: 8,
            max_connections: 1024,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// How long an answer that ends a connection waits for the client to stop sending.
const DRAIN_TIME: Duration = Duration::from_secs(2);
/// How long the answer to a source that keeps failing is held back.
const THROTTLE_HOLD: Duration = Duration::from_secs(1);
/// Bytes buffered beyond which reading pauses until the request is parsed.
const READ_CAP: usize = http1::MAX_HEAD_BYTES + http1::MAX_BODY_BYTES;
/// The kernel's send buffer of a connection. Left alone, Linux grows it to 4 MiB, and a
/// client that pipelines requests and never reads would have hundreds of responses
/// rendered and copied into it before the loop stops for it; 256 KiB (Linux doubles it)
/// still carries a large exposition at LAN speed.
const SEND_BUFFER: libc::c_int = 256 << 10;

/// A running server.
pub struct Server {
    stop: Arc<AtomicBool>,
    poller: Arc<Poller>,
    thread: Option<JoinHandle<()>>,
    local: SocketAddr,
}

impl Server {
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
        let (scrape_tx, scrape_rx) = mpsc::channel::<Job>();
        let (other_tx, other_rx) = mpsc::channel::<Job>();
        let (check_tx, check_rx) = mpsc::sync_channel::<Check>(limits.verify_queue);
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let back = Back {
            done: done_tx,
            poller: Arc::clone(&poller),
        };
        let lanes = [
            ("sonde-scrape", limits.scrape_workers, scrape_rx),
            ("sonde-web", limits.workers, other_rx),
        ];
        for (name, workers, rx) in lanes {
            spawn_workers(name, workers, rx, &back, &handler, limits.request_timeout)?;
        }
        let job_tx = Jobs {
            scrape: scrape_tx,
            other: other_tx,
            handler,
        };
        let check_rx = Arc::new(Mutex::new(check_rx));
        for i in 0..limits.verifiers.max(1) {
            let checks = Arc::clone(&check_rx);
            let back = back.clone();
            let jobs = job_tx.clone();
            let security = Arc::clone(&security);
            std::thread::Builder::new()
                .name(format!("sonde-bcrypt-{i}"))
                .stack_size(256 << 10)
                .spawn(move || verify(&checks, &jobs, &back, &security))?;
        }
        let mut event_loop = Loop {
            listener,
            poller: Arc::clone(&poller),
            conns: Vec::new(),
            free: Vec::new(),
            open: 0,
            next_id: 0,
            jobs: job_tx,
            checks: check_tx,
            done: done_rx,
            held: Vec::new(),
            limits,
            paused_until: None,
            last_exhaustion_log: None,
            security,
        };
        let stop_flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("sonde-web".into())
            .stack_size(512 << 10)
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

    /// Stops accepting and closes every connection.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.poller.notify();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts `count` workers named `name-i` on the queue `rx`.
fn spawn_workers(
    name: &str,
    count: usize,
    rx: mpsc::Receiver<Job>,
    back: &Back,
    handler: &Arc<dyn Handler>,
    stale: Duration,
) -> io::Result<()> {
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..count.max(1) {
        let jobs = Arc::clone(&rx);
        let back = back.clone();
        let handler = Arc::clone(handler);
        std::thread::Builder::new()
            .name(format!("{name}-{i}"))
            // gzip's compressor state lives on the stack while it runs.
            .stack_size(2 << 20)
            .spawn(move || work(&jobs, &back, handler.as_ref(), stale))?;
    }
    Ok(())
}

/// The poller key of the listening socket (polling reserves `usize::MAX`).
const LISTENER: usize = usize::MAX - 1;

/// A request for a worker.
struct Job {
    index: usize,
    id: u64,
    request: Request,
    settings: Arc<WebSettings>,
    /// When it was complete: a job that waited longer than the request timeout is
    /// answered 503 without being run (its client has most likely given up).
    queued: Instant,
}

/// The workers' two queues: scrapes, and the rest.
#[derive(Clone)]
struct Jobs {
    scrape: mpsc::Sender<Job>,
    other: mpsc::Sender<Job>,
    handler: Arc<dyn Handler>,
}

impl Jobs {
    /// Queues `job` on its lane; false once the workers are gone.
    fn send(&self, job: Job) -> bool {
        let lane = if self.handler.urgent(&job.request) {
            &self.scrape
        } else {
            &self.other
        };
        lane.send(job).is_ok()
    }
}

/// A request whose credentials need bcrypt first.
struct Check {
    job: Job,
    verification: Verification,
}

/// A response for the loop to write.
struct Done {
    index: usize,
    id: u64,
    response: Response,
}

/// How workers and verifiers hand responses back and wake the loop.
#[derive(Clone)]
struct Back {
    done: mpsc::Sender<Done>,
    poller: Arc<Poller>,
}

impl Back {
    /// False once the loop is gone.
    fn send(&self, done: Done) -> bool {
        let sent = self.done.send(done).is_ok();
        let _ = self.poller.notify();
        sent
    }
}

/// Adds the web config's response headers.
fn with_headers(mut response: Response, settings: &WebSettings) -> Response {
    for (name, value) in &settings.headers {
        response
            .headers
            .push((name.clone().into(), value.clone().into()));
    }
    response
}

fn unauthorized(settings: &WebSettings) -> Response {
    with_headers(
        Response::text(401, "Unauthorized")
            .with_header("WWW-Authenticate", "Basic realm=\"sonde\""),
        settings,
    )
}

/// A worker: runs the handler for each job; slow work goes to a thread of its own. A
/// job that waited in the queue longer than `stale` gets 503 at once: a burst of
/// requests for large pages is then at most `stale` of work, not minutes of answers to
/// clients long gone.
fn work(jobs: &Mutex<mpsc::Receiver<Job>>, back: &Back, handler: &dyn Handler, stale: Duration) {
    loop {
        let job = lock(jobs).recv();
        let Ok(job) = job else { return };
        let waited = job.queued.elapsed();
        let answer = if waited > stale {
            Answer::Now(
                Response::text(
                    503,
                    format!(
                        "the server is busy: this request waited {} ms for a worker",
                        waited.as_millis()
                    ),
                )
                .with_header("Retry-After", "1"),
            )
        } else {
            handler.answer(&job.request)
        };
        let response = match answer {
            Answer::Now(response) => response,
            Answer::Later(slow) => match later(job.index, job.id, &job.settings, back, slow) {
                Ok(()) => continue,
                Err(response) => response,
            },
        };
        let done = Done {
            index: job.index,
            id: job.id,
            response: with_headers(response, &job.settings),
        };
        if !back.send(done) {
            return;
        }
    }
}

/// Runs `slow` on a new thread that hands its response back to the loop; when no thread
/// can be started, the response the worker gives instead (503).
fn later(
    index: usize,
    id: u64,
    settings: &Arc<WebSettings>,
    back: &Back,
    slow: Box<dyn FnOnce() -> Response + Send>,
) -> Result<(), Response> {
    let (back, settings) = (back.clone(), Arc::clone(settings));
    std::thread::Builder::new()
        .name("sonde-web-slow".into())
        .stack_size(512 << 10)
        .spawn(move || {
            let response = with_headers(slow(), &settings);
            back.send(Done {
                index,
                id,
                response,
            });
        })
        .map(|_| ())
        .map_err(|e| {
            log::warn!("msg=\"cannot start a thread to answer a request\" error=\"{e}\"");
            Response::text(503, "cannot start a thread for this request")
        })
}

/// A verifier: bcrypt, then the job goes on to a worker or is answered 401.
fn verify(checks: &Mutex<mpsc::Receiver<Check>>, jobs: &Jobs, back: &Back, security: &Security) {
    lower_priority();
    loop {
        let check = lock(checks).recv();
        let Ok(Check { job, verification }) = check else {
            return;
        };
        if security.auth.verify(&verification) {
            if !jobs.send(job) {
                return;
            }
        } else {
            let done = Done {
                index: job.index,
                id: job.id,
                response: unauthorized(&job.settings),
            };
            if !back.send(done) {
                return;
            }
        }
    }
}

/// Lets this thread yield the CPU to the loop and the workers: a flood of passwords to
/// verify must not slow the answers to requests that need no bcrypt. Where this is not
/// allowed (the systemd unit filters `@resources` with EPERM) the thread keeps its
/// priority; the bounded queue still protects the other requests.
fn lower_priority() {
    // SAFETY: gettid has no preconditions; setpriority on our own thread id only
    // changes this thread's nice value (a failure leaves it as it was).
    unsafe {
        let tid = libc::gettid();
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request (or the TLS handshake).
    Idle,
    /// Part of a request has arrived.
    Reading,
    /// A request is with a worker or a verifier, or its answer is held back.
    Working,
    /// A response is being written.
    Writing,
    /// The last answer is written and the sending side shut; what arrives is discarded.
    Draining,
}

/// A connection and what has been received on it.
struct Conn {
    /// Tells this connection from an earlier one at the same index.
    id: u64,
    transport: Transport,
    peer: IpAddr,
    input: Vec<u8>,
    phase: Phase,
    /// When the phase started (for its deadline).
    since: Instant,
    /// The peer has sent FIN or close_notify: answer what is buffered, then close.
    peer_done: bool,
    /// `100 Continue` was sent for the request in `input`.
    continued: bool,
    /// The request being answered: keep the connection afterwards, HEAD.
    keep_alive: bool,
    head_only: bool,
    out: Option<Outgoing>,
}

enum Slot {
    Free,
    Open(Box<Conn>),
}

struct Loop {
    listener: TcpListener,
    poller: Arc<Poller>,
    conns: Vec<Slot>,
    free: Vec<usize>,
    open: usize,
    next_id: u64,
    jobs: Jobs,
    checks: mpsc::SyncSender<Check>,
    done: mpsc::Receiver<Done>,
    /// Answers held back until their time (slowed-down sources).
    held: Vec<(Instant, usize, u64, Response)>,
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
            let now = Instant::now();
            let mut wait = Duration::from_millis(250);
            for until in self
                .paused_until
                .iter()
                .chain(self.held.iter().map(|h| &h.0))
            {
                wait = wait.min(until.saturating_duration_since(now));
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
            while let Ok(done) = self.done.try_recv() {
                if self.is_current(done.index, done.id, Phase::Working) {
                    self.answer(done.index, done.response);
                }
            }
            self.release_held();
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

    fn conn(&mut self, index: usize) -> Option<&mut Conn> {
        match self.conns.get_mut(index) {
            Some(Slot::Open(conn)) => Some(conn),
            _ => None,
        }
    }

    /// Whether `index` still holds connection `id`, in `phase`.
    fn is_current(&mut self, index: usize, id: u64, phase: Phase) -> bool {
        self.conn(index)
            .is_some_and(|c| c.id == id && c.phase == phase)
    }

    fn accept(&mut self) {
        if self.paused_until.is_some() {
            return;
        }
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    if self.open >= self.limits.max_connections && !self.evict_idlest() {
                        drop(stream);
                        continue;
                    }
                    self.register(stream, peer.ip());
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

    fn register(&mut self, stream: TcpStream, peer: IpAddr) {
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let _ = stream.set_nodelay(true);
        set_send_buffer(&stream, SEND_BUFFER);
        let tls = match &self.security.current().tls {
            None => None,
            Some(config) => match rustls::ServerConnection::new(Arc::clone(config)) {
                Ok(tls) => Some(Box::new(tls)),
                Err(e) => {
                    log::warn!("msg=\"cannot start TLS for a connection\" error=\"{e}\"");
                    return;
                }
            },
        };
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.conns.push(Slot::Free);
                self.conns.len() - 1
            }
        };
        // SAFETY: every path that drops a registered stream deletes it first (`close`).
        if unsafe { self.poller.add(&stream, Event::readable(index)) }.is_err() {
            self.free.push(index);
            return;
        }
        self.next_id += 1;
        self.conns[index] = Slot::Open(Box::new(Conn {
            id: self.next_id,
            transport: Transport { stream, tls },
            peer,
            input: Vec::new(),
            phase: Phase::Idle,
            since: Instant::now(),
            peer_done: false,
            continued: false,
            keep_alive: false,
            head_only: false,
            out: None,
        }));
        self.open += 1;
    }

    fn close(&mut self, index: usize) {
        if let Some(Slot::Open(conn)) = self.conns.get(index) {
            let _ = self.poller.delete(&conn.transport.stream);
            self.conns[index] = Slot::Free;
            self.free.push(index);
            self.open -= 1;
        }
    }

    /// Closes a connection that is not being answered: idle ones first, then those
    /// draining, reading or being written, each the oldest first. Returns whether one
    /// was closed.
    fn evict_idlest(&mut self) -> bool {
        let rank = |p: Phase| match p {
            Phase::Idle => 0,
            Phase::Draining => 1,
            Phase::Reading => 2,
            Phase::Writing => 3,
            Phase::Working => 4,
        };
        let victim = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Slot::Open(c) if c.phase != Phase::Working => Some((rank(c.phase), c.since, i)),
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
        let Some(conn) = self.conn(index) else {
            return;
        };
        match conn.phase {
            Phase::Idle | Phase::Reading => self.on_readable(index),
            Phase::Writing => self.on_writable(index),
            Phase::Draining => {
                if conn.transport.discard() {
                    self.close(index);
                } else {
                    self.rearm(index);
                }
            }
            Phase::Working => self.rearm(index),
        }
    }

    /// Reads what arrived and acts on it.
    fn on_readable(&mut self, index: usize) {
        let Some(conn) = self.conn(index) else {
            return;
        };
        match conn.transport.receive(&mut conn.input, READ_CAP) {
            Received::Open => {}
            Received::Eof => conn.peer_done = true,
            Received::Failed => {
                self.close(index);
                return;
            }
            Received::PlainOnTls => {
                conn.transport.tls = None;
                conn.keep_alive = false;
                conn.out = Some(Outgoing::new(PLAIN_HTTP_ON_TLS.to_vec(), None));
                conn.phase = Phase::Writing;
                conn.since = Instant::now();
                self.on_writable(index);
                return;
            }
        }
        if conn.phase == Phase::Idle && !conn.input.is_empty() {
            conn.phase = Phase::Reading;
            conn.since = Instant::now();
        }
        self.process(index);
    }

    /// Acts on the bytes buffered for a connection: dispatch a request, answer an
    /// unacceptable one, or wait for more.
    fn process(&mut self, index: usize) {
        let Some(conn) = self.conn(index) else {
            return;
        };
        if conn.input.is_empty() {
            if conn.peer_done {
                self.close(index);
                return;
            }
            if conn.phase == Phase::Reading {
                conn.phase = Phase::Idle;
                conn.since = Instant::now();
            }
            self.rearm(index);
            return;
        }
        match http1::parse(&conn.input) {
            Parsed::Complete(request, used) => {
                conn.input.drain(..used);
                conn.continued = false;
                self.dispatch(index, request);
            }
            Parsed::Partial { .. } if conn.peer_done => {
                // The rest of the request can never come.
                self.close(index);
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
                conn.keep_alive = false;
                conn.head_only = false;
                conn.phase = Phase::Working;
                let settings = self.security.current();
                self.answer(index, with_headers(Response::text(status, why), &settings));
            }
        }
    }

    /// Sends a complete request on: to a worker, to a verifier first, or answers it at
    /// once when authentication decides without bcrypt.
    fn dispatch(&mut self, index: usize, request: Request) {
        let settings = self.security.current();
        let Some(conn) = self.conn(index) else {
            return;
        };
        conn.keep_alive = request.keep_alive;
        conn.head_only = request.method == "HEAD";
        conn.phase = Phase::Working;
        conn.since = Instant::now();
        let (id, peer) = (conn.id, conn.peer);
        self.rearm(index);
        let gate = self
            .security
            .auth
            .gate(&settings.users, request.header("authorization"), peer);
        let job = Job {
            index,
            id,
            request,
            settings,
            queued: Instant::now(),
        };
        match gate {
            Gate::Pass => {
                if !self.jobs.send(job) {
                    self.close(index);
                }
            }
            Gate::Unauthorized => self.answer(index, unauthorized(&job.settings)),
            Gate::Throttled(wait) => {
                let secs = wait.as_secs_f64().ceil().max(1.0);
                let response = with_headers(
                    Response::text(
                        429,
                        format!("too many failed logins from this address; retry in {secs} s"),
                    )
                    .with_header("Retry-After", secs.to_string()),
                    &job.settings,
                );
                let due = Instant::now() + wait.min(THROTTLE_HOLD);
                self.held.push((due, index, id, response));
            }
            Gate::Verify(verification) => {
                let settings = Arc::clone(&job.settings);
                match self.checks.try_send(Check { job, verification }) {
                    Ok(()) => {}
                    Err(mpsc::TrySendError::Full(check)) => {
                        self.security.auth.count_unverified(&check.verification);
                        let response = with_headers(
                            Response::text(
                                503,
                                "too many logins are being verified; retry in a moment",
                            )
                            .with_header("Retry-After", "1"),
                            &settings,
                        );
                        self.answer(index, response);
                    }
                    Err(mpsc::TrySendError::Disconnected(_)) => self.close(index),
                }
            }
        }
    }

    /// Answers held back whose time has come.
    fn release_held(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| h.0 <= now);
        self.held = later;
        for (_, index, id, response) in due {
            if self.is_current(index, id, Phase::Working) {
                self.answer(index, response);
            }
        }
    }

    /// Starts writing the response to the request of a connection.
    fn answer(&mut self, index: usize, response: Response) {
        let Some(conn) = self.conn(index) else {
            return;
        };
        let head = response.head(conn.keep_alive);
        let body = (!conn.head_only).then_some(response.body);
        conn.out = Some(Outgoing::new(head, body));
        conn.phase = Phase::Writing;
        conn.since = Instant::now();
        self.on_writable(index);
    }

    /// Writes what the socket takes; after the last byte, goes on with the connection.
    fn on_writable(&mut self, index: usize) {
        let Some(conn) = self.conn(index) else {
            return;
        };
        let Some(out) = &mut conn.out else {
            self.rearm(index);
            return;
        };
        match flush(&mut conn.transport, out) {
            Flush::Pending => self.rearm(index),
            Flush::Failed => self.close(index),
            Flush::Done => {
                conn.out = None;
                if !conn.keep_alive {
                    conn.transport.finish_sending();
                    if conn.peer_done {
                        self.close(index);
                        return;
                    }
                    conn.phase = Phase::Draining;
                    conn.since = Instant::now();
                    self.rearm(index);
                    return;
                }
                conn.phase = if conn.input.is_empty() {
                    Phase::Idle
                } else {
                    Phase::Reading
                };
                conn.since = Instant::now();
                // A pipelined request may be buffered here or inside rustls, where no
                // readiness event would announce it.
                self.on_readable(index);
            }
        }
    }

    fn rearm(&mut self, index: usize) {
        let Some(Slot::Open(conn)) = self.conns.get(index) else {
            return;
        };
        let interest = match conn.phase {
            // While rustls has handshake bytes the socket would not take, wait for
            // writability too.
            Phase::Idle | Phase::Reading if conn.transport.wants_write() => Event::all(index),
            Phase::Idle | Phase::Reading | Phase::Draining => Event::readable(index),
            Phase::Writing => Event::writable(index),
            Phase::Working => Event::none(index),
        };
        if self
            .poller
            .modify(&conn.transport.stream, interest)
            .is_err()
        {
            self.close(index);
        }
    }

    /// Ends what overran its deadline: slow requests and handshakes (408 or close), idle
    /// connections, responses the client does not read, and drains.
    fn sweep(&mut self) {
        let now = Instant::now();
        let limits = &self.limits;
        let expired: Vec<(usize, Phase)> = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let Slot::Open(c) = s else { return None };
                let limit = match c.phase {
                    Phase::Idle if c.transport.handshaking() => limits.request_timeout,
                    Phase::Idle => limits.idle_timeout,
                    Phase::Reading => limits.request_timeout,
                    Phase::Writing => limits.write_timeout,
                    Phase::Draining => DRAIN_TIME,
                    Phase::Working => return None,
                };
                (now.duration_since(c.since) > limit).then_some((i, c.phase))
            })
            .collect();
        for (i, phase) in expired {
            let handshaking = self.conn(i).is_some_and(|c| c.transport.handshaking());
            if phase == Phase::Reading && !handshaking {
                if let Some(conn) = self.conn(i) {
                    conn.keep_alive = false;
                    conn.head_only = false;
                }
                let settings = self.security.current();
                self.answer(
                    i,
                    with_headers(Response::text(408, "request timeout"), &settings),
                );
            } else {
                self.close(i);
            }
        }
    }
}

/// Caps the kernel's send buffer of a socket (best effort).
fn set_send_buffer(stream: &TcpStream, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt reads an int from a pointer valid for the call, on a descriptor
    // the stream owns.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn is_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers with the path; counts what it ran.
    struct Echo(std::sync::atomic::AtomicUsize);

    impl Handler for Echo {
        fn handle(&self, request: &Request) -> Response {
            self.0.fetch_add(1, Ordering::SeqCst);
            Response::text(200, request.path.clone())
        }
    }

    fn job(id: u64, path: &str, waited: Duration, settings: &Arc<WebSettings>) -> Job {
        Job {
            index: 0,
            id,
            request: Request {
                method: "GET".into(),
                path: path.into(),
                query: String::new(),
                headers: Vec::new(),
                keep_alive: true,
                body: Vec::new(),
            },
            settings: Arc::clone(settings),
            queued: Instant::now().checked_sub(waited).unwrap(),
        }
    }

    #[test]
    fn a_job_that_waited_past_the_request_timeout_is_answered_503_without_running() {
        let settings = Security::new(None, None).current();
        let (tx, rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        let back = Back {
            done: done_tx,
            poller: Arc::new(Poller::new().unwrap()),
        };
        tx.send(job(
            1,
            "/api/v1/targets",
            Duration::from_secs(11),
            &settings,
        ))
        .unwrap();
        tx.send(job(2, "/api/v1/targets", Duration::from_secs(9), &settings))
            .unwrap();
        drop(tx);
        let echo = Echo(Default::default());
        work(&Mutex::new(rx), &back, &echo, Duration::from_secs(10));
        let done: Vec<(u64, u16)> = done_rx
            .try_iter()
            .map(|d| (d.id, d.response.status))
            .collect();
        assert_eq!(done, [(1, 503), (2, 200)]);
        assert_eq!(echo.0.load(Ordering::SeqCst), 1, "the stale job never ran");
    }
}
