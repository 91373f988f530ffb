//! Reading a response body: as it came over the wire, counted, then gzip-decoded here
//! rather than in ureq, so that a probe knows both sizes (bytes on the wire, bytes
//! decoded), stops at `body_size_limit` and keeps the body only when a regex needs it.

use std::io::Read;

use super::outcome::{ProbeResult, Reason};
use crate::net::http as client;

/// Default cap on the (decoded) body read.
pub(super) const DEFAULT_BODY_LIMIT: u64 = 10 << 20;

thread_local! {
    /// Where a probe thread reads bodies: allocated (and zeroed) once per thread, not
    /// once per probe, since probe threads live as long as their check.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 16 << 10]);
}

/// Reads the body up to `body_size_limit` (decoded), decoding gzip and counting
/// the bytes on the wire; keeps it only when a regex needs it. `None` when the
/// body was too large (the failure is set on `result`).
pub(super) fn read(
    response: &mut ureq::http::Response<ureq::Body>,
    body_limit: u64,
    wants_body: bool,
    result: &mut ProbeResult,
) -> Result<Option<Vec<u8>>, ureq::Error> {
    let gzip = response
        .headers()
        .get(ureq::http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "gzip" | "x-gzip"));
    let mut wire = Counting {
        inner: response.body_mut().with_config().limit(u64::MAX).reader(),
        count: 0,
    };
    // An empty body (HEAD, 204, 304) says gzip too at times, and is no gzip stream.
    let first = SCRATCH.with_borrow_mut(|scratch| {
        let n = wire.read(scratch)?;
        Ok::<_, std::io::Error>(scratch[..n].to_vec())
    });
    let first = first.map_err(client::error_from_io)?;
    if first.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let raw = std::io::Cursor::new(first).chain(&mut wire);
    let mut decoded: Box<dyn Read + '_> = if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(raw))
    } else {
        Box::new(raw)
    };
    let mut kept = Vec::new();
    let outcome = SCRATCH.with_borrow_mut(|chunk| {
        loop {
            let n = match decoded.read(chunk) {
                Ok(n) => n,
                Err(e) => break Err(e),
            };
            if n == 0 {
                break Ok(Some(std::mem::take(&mut kept)));
            }
            result.body_size += n as u64;
            if result.body_size > body_limit {
                result.body_size = body_limit;
                result.fail(
                    Reason::BodyTooLarge,
                    format!(
                        "the body is larger than body_size_limit ({} bytes)",
                        body_limit
                    ),
                );
                break Ok(None);
            }
            if wants_body {
                kept.extend_from_slice(&chunk[..n]);
            }
        }
    });
    drop(decoded);
    result.wire_size = wire.count;
    outcome.map_err(|e| {
        if gzip && !e.get_ref().is_some_and(|i| i.is::<ureq::Error>()) {
            ureq::Error::Io(std::io::Error::other(format!(
                "the gzip body does not decode: {e}"
            )))
        } else {
            client::error_from_io(e)
        }
    })
}

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}
