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

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use polling::{Event, Events, Poller};

use super::http1::{self, Parsed, Request, Response};
use crate::results::lock;

/// Answers requests; implemented by the routes.
pub trait Handler: Send + Sync + 'static {
    /// Produces the response to one request.
    fn handle(&self, request: &Request) -> Response;
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
    pub fn start(
        listener: TcpListener,
        handler: Arc<dyn Handler>,
        limits: Limits,
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

/// A connection and what has been received on it.
struct Conn {
    stream: TcpStream,
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
                    self.on_readable(event.key);
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
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.conns.push(Entry::Free);
                self.conns.len() - 1
            }
        };
        // SAFETY: every path that drops a registered stream deletes it first (`close`,
        // `dispatch`).
        if unsafe { self.poller.add(&stream, Event::readable(index)) }.is_err() {
            self.free.push(index);
            return;
        }
        self.conns[index] = Entry::Open(Conn {
            stream,
            buf: Vec::new(),
            since: Instant::now(),
            reading: false,
            continued: false,
        });
        self.open += 1;
    }

    fn close(&mut self, index: usize) {
        if let Some(Entry::Open(conn)) = self.conns.get(index) {
            let _ = self.poller.delete(&conn.stream);
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

    fn on_readable(&mut self, index: usize) {
        let Some(Entry::Open(conn)) = self.conns.get_mut(index) else {
            return;
        };
        let mut chunk = [0u8; 8192];
        let mut closed = false;
        loop {
            match conn.stream.read(&mut chunk) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => {
                    if !conn.reading {
                        conn.reading = true;
                        conn.since = Instant::now();
                    }
                    conn.buf.extend_from_slice(&chunk[..n]);
                    if conn.buf.len() > http1::MAX_HEAD_BYTES + http1::MAX_BODY_BYTES {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        if closed {
            self.close(index);
            return;
        }
        self.process(index);
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
                    let _ = conn.stream.write(b"HTTP/1.1 100 Continue\r\n\r\n");
                }
                self.rearm(index);
            }
            Parsed::Reject(status, why) => {
                let response = Response::text(status, why);
                let mut bytes = response.head(false);
                bytes.extend_from_slice(&response.body);
                // Best effort: the socket is non-blocking and the answer is small.
                let _ = conn.stream.write(&bytes);
                self.close(index);
            }
        }
    }

    fn rearm(&mut self, index: usize) {
        let failed = match self.conns.get(index) {
            Some(Entry::Open(conn)) => self
                .poller
                .modify(&conn.stream, Event::readable(index))
                .is_err(),
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
        let _ = self.poller.delete(&conn.stream);
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
        if unsafe { self.poller.add(&conn.stream, Event::readable(index)) }.is_err() {
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
                let response = Response::text(408, "request timeout");
                let mut bytes = response.head(false);
                bytes.extend_from_slice(&response.body);
                let _ = conn.stream.write(&bytes);
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
    write_timeout: Duration,
}

impl Worker {
    fn run(self) {
        loop {
            let job = lock(&self.jobs).recv();
            let Ok(mut job) = job else { return };
            let response = self.handler.handle(&job.request);
            let keep_alive = job.request.keep_alive;
            let head = response.head(keep_alive);
            let body: &[u8] = if job.request.method == "HEAD" {
                &[]
            } else {
                &response.body
            };
            let written = write_all_by(&mut job.conn.stream, &head, body, self.write_timeout);
            let conn = (written.is_ok() && keep_alive).then_some(job.conn);
            if self
                .back
                .send(Returned {
                    index: job.index,
                    conn,
                })
                .is_err()
            {
                return;
            }
            let _ = self.poller.notify();
        }
    }
}

/// Writes head and body within `timeout` in total, then restores non-blocking mode.
fn write_all_by(
    stream: &mut TcpStream,
    head: &[u8],
    body: &[u8],
    timeout: Duration,
) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    stream.set_nonblocking(false)?;
    let result = (|| {
        for mut part in [head, body] {
            while !part.is_empty() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "write deadline passed",
                    ));
                }
                stream.set_write_timeout(Some(left))?;
                match stream.write(&part[..part.len().min(256 << 10)]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => part = &part[n..],
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    })();
    stream.set_nonblocking(true)?;
    result
}
