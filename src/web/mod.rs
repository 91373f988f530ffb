//! The HTTP server: listener, readiness loop, worker pool, parsing and routes.
//!
//! sonde serves HTTP/1.1 itself (on `httparse`) instead of using tiny_http, whose accept
//! thread dies for good on the first EMFILE and which has neither timeouts nor a bound
//! on threads. TLS (rustls 0.23) fits in at the connection layer in `conn.rs`; basic
//! authentication is in `auth.rs`, the web config file in `security.rs`.

pub mod auth;
mod conn;
pub mod http1;
pub mod page;
pub mod probe;
pub mod routes;
pub mod security;
pub mod server;

use std::io;
use std::net::{SocketAddr, TcpListener};

/// Binds the first address that works, reporting the last error otherwise.
pub fn bind(addrs: &[SocketAddr]) -> io::Result<TcpListener> {
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on");
    for addr in addrs {
        match TcpListener::bind(addr) {
            Ok(l) => return Ok(l),
            Err(e) => last = e,
        }
    }
    Err(last)
}
