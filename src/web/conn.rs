//! One connection's bytes, never blocking: reading what arrived (plain, or through
//! rustls) and writing a response a piece at a time as the socket takes it.
//!
//! Both directions run on the event loop's thread, so a client that stops reading
//! costs its socket buffer and a cursor into a response, never a thread: a response
//! keeps the exposition it sends alive (shared, not copied) and [`flush`] writes from
//! where the last write stopped until the kernel says `WouldBlock`.
//!
//! With TLS, what arrives is fed to rustls in a loop that decrypts between reads, so a
//! request larger than one TLS record (16 KiB) or many pipelined requests in one burst
//! are read whole; the plaintext rustls holds is drained into the connection's buffer.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};

use rustls::ServerConnection;

use super::http1::Body;

/// Most slices handed to one vectored write.
const MAX_SLICES: usize = 64;
/// Most bytes offered to one plain write.
const PLAIN_WRITE_BYTES: usize = 256 << 10;
/// Most plaintext bytes offered to rustls at once (it encrypts into its own buffer).
const TLS_WRITE_BYTES: usize = 64 << 10;

/// What the first bytes on the TLS port said when they were plain HTTP.
pub const PLAIN_HTTP_ON_TLS: &[u8] = b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// A connection's socket, with its TLS state when TLS is on.
pub struct Transport {
    /// The socket, non-blocking.
    pub stream: TcpStream,
    /// rustls' state; `None` for plain HTTP.
    pub tls: Option<Box<ServerConnection>>,
}

/// What a read found.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// The connection is open; whatever arrived is in the buffer.
    Open,
    /// The peer will send nothing more (FIN or close_notify); the buffer may still hold
    /// complete requests, which are answered.
    Eof,
    /// A plain-HTTP request arrived on the TLS port.
    PlainOnTls,
    /// The connection failed (reset, TLS error after its alert was sent).
    Failed,
}

impl Transport {
    /// Whether rustls has bytes waiting for the socket to take (handshake or alert).
    pub fn wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Whether the TLS handshake is still running.
    pub fn handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.is_handshaking())
    }

    /// Reads what arrived into `buf` until the socket is empty or `buf` holds `cap`
    /// bytes.
    pub fn receive(&mut self, buf: &mut Vec<u8>, cap: usize) -> Received {
        match &mut self.tls {
            None => read_plain(&mut self.stream, buf, cap),
            Some(tls) => read_tls(&mut self.stream, tls, buf, cap),
        }
    }

    /// Best-effort write of an interim response (`100 Continue`).
    pub fn write_interim(&mut self, bytes: &[u8]) {
        match &mut self.tls {
            None => {
                let _ = self.stream.write(bytes);
            }
            Some(tls) => {
                let _ = tls.writer().write_all(bytes);
                let _ = push_tls(&mut self.stream, tls);
            }
        }
    }

    /// Ends the sending side after the last response: TLS close_notify (best effort),
    /// then a TCP FIN. The socket stays open for reading so that what the peer still
    /// sends does not turn the close into a reset that would destroy the answer.
    pub fn finish_sending(&mut self) {
        if let Some(tls) = &mut self.tls {
            tls.send_close_notify();
            let _ = push_tls(&mut self.stream, tls);
        }
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Reads and throws away what arrives (after [`Transport::finish_sending`]); true
    /// once the peer has closed or the socket failed.
    pub fn discard(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        // Bounded: a peer that sends faster than this is cut off by the drain deadline.
        for _ in 0..64 {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
        false
    }
}

/// Reads what arrived; stops at `WouldBlock`, EOF or `cap`.
fn read_plain(stream: &mut TcpStream, buf: &mut Vec<u8>, cap: usize) -> Received {
    let mut chunk = [0u8; 8192];
    while buf.len() < cap {
        match stream.read(&mut chunk) {
            Ok(0) => return Received::Eof,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Received::Failed,
        }
    }
    Received::Open
}

/// Feeds what arrived to rustls and appends the plaintext to `buf`, decrypting between
/// reads so that rustls' buffers never fill up with records nobody processes.
fn read_tls(
    stream: &mut TcpStream,
    tls: &mut ServerConnection,
    buf: &mut Vec<u8>,
    cap: usize,
) -> Received {
    if tls.is_handshaking() && !tls.wants_write() {
        // A TLS connection starts with a handshake record (0x16); letters mean HTTP.
        let mut first = [0u8; 1];
        if let Ok(1) = stream.peek(&mut first)
            && first[0].is_ascii_uppercase()
        {
            return Received::PlainOnTls;
        }
    }
    let mut eof = false;
    let mut chunk = [0u8; 8192];
    loop {
        let mut progress = false;
        if !eof && tls.wants_read() {
            match tls.read_tls(stream) {
                Ok(0) => eof = true,
                Ok(_) => progress = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Received::Failed,
            }
        }
        if tls.process_new_packets().is_err() {
            // Send the alert rustls prepared, then give up on the connection.
            let _ = push_tls(stream, tls);
            return Received::Failed;
        }
        while buf.len() < cap {
            match tls.reader().read(&mut chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    eof = true;
                    break;
                }
                Err(_) => return Received::Failed,
            }
        }
        if !progress || buf.len() >= cap {
            break;
        }
    }
    if push_tls(stream, tls).is_err() {
        return Received::Failed;
    }
    if eof { Received::Eof } else { Received::Open }
}

/// Writes rustls' pending bytes until the socket would block; `Ok(true)` when all went.
fn push_tls(stream: &mut TcpStream, tls: &mut ServerConnection) -> io::Result<bool> {
    while tls.wants_write() {
        match tls.write_tls(stream) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// A response being written: its head, its body (shared, not copied) and how far the
/// writing got.
#[derive(Debug)]
pub struct Outgoing {
    head: Vec<u8>,
    body: Option<Body>,
    sent: usize,
    total: usize,
}

impl Outgoing {
    /// A response of `head` and, unless it answers a HEAD, `body`.
    pub fn new(head: Vec<u8>, body: Option<Body>) -> Outgoing {
        let total = head.len() + body.as_ref().map_or(0, Body::len);
        Outgoing {
            head,
            body,
            sent: 0,
            total,
        }
    }

    /// Whether every byte has been handed to the socket (or to rustls).
    pub fn done(&self) -> bool {
        self.sent >= self.total
    }

    /// The next unsent bytes, as up to [`MAX_SLICES`] slices of at most `max` bytes.
    fn slices(&self, max: usize) -> Vec<IoSlice<'_>> {
        let mut out = Vec::new();
        let mut at = self.sent;
        let mut budget = max;
        while at < self.total && out.len() < MAX_SLICES && budget > 0 {
            let chunk = if at < self.head.len() {
                &self.head[at..]
            } else {
                match &self.body {
                    Some(body) => body.chunk_at(at - self.head.len()),
                    None => &[],
                }
            };
            if chunk.is_empty() {
                break;
            }
            let chunk = &chunk[..chunk.len().min(budget)];
            out.push(IoSlice::new(chunk));
            at += chunk.len();
            budget -= chunk.len();
        }
        out
    }
}

/// How far [`flush`] got.
#[derive(Debug, PartialEq, Eq)]
pub enum Flush {
    /// Everything is written.
    Done,
    /// The socket is full; wait until it is writable.
    Pending,
    /// The connection failed.
    Failed,
}

/// Writes as much of `out` as the socket takes now.
pub fn flush(transport: &mut Transport, out: &mut Outgoing) -> Flush {
    let stream = &mut transport.stream;
    loop {
        let Some(tls) = &mut transport.tls else {
            if out.done() {
                return Flush::Done;
            }
            let slices = out.slices(PLAIN_WRITE_BYTES);
            match stream.write_vectored(&slices) {
                Ok(0) => return Flush::Failed,
                Ok(n) => out.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Flush::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Flush::Failed,
            }
            continue;
        };
        match push_tls(stream, tls) {
            Ok(true) => {}
            Ok(false) => return Flush::Pending,
            Err(_) => return Flush::Failed,
        }
        if out.done() {
            return Flush::Done;
        }
        let slices = out.slices(TLS_WRITE_BYTES);
        match tls.writer().write_vectored(&slices) {
            // rustls' buffer is full; what it holds goes to the socket first.
            Ok(0) if tls.wants_write() => {}
            Ok(0) => return Flush::Failed,
            Ok(n) => out.sent += n,
            Err(_) => return Flush::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_walk_the_head_then_the_body() {
        let mut out = Outgoing::new(b"HEAD".to_vec(), Some(Body::Bytes(b"body".to_vec())));
        let text = |out: &Outgoing, max| {
            out.slices(max)
                .iter()
                .flat_map(|s| s.to_vec())
                .collect::<Vec<u8>>()
        };
        assert_eq!(text(&out, 100), b"HEADbody");
        assert_eq!(text(&out, 6), b"HEADbo");
        out.sent = 3;
        assert_eq!(text(&out, 100), b"Dbody");
        out.sent = 8;
        assert!(out.done() && out.slices(100).is_empty());
        let head_only = Outgoing::new(b"H".to_vec(), None);
        assert_eq!(text(&head_only, 100), b"H");
    }
}
