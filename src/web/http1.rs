//! HTTP/1.1 messages: requests parsed with `httparse`, responses serialized by hand.

use std::borrow::Cow;
use std::sync::Arc;

use crate::exposition::BodySource;

/// Largest request line plus headers accepted.
pub const MAX_HEAD_BYTES: usize = 8 << 10;
/// Largest request body accepted (only `POST /-/reload` takes one, and ignores it).
pub const MAX_BODY_BYTES: usize = 64 << 10;
/// Most headers accepted in one request.
const MAX_HEADERS: usize = 64;

/// A parsed request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The raw query string (after `?`), possibly empty.
    pub query: String,
    /// Headers with lower-cased names.
    pub headers: Vec<(String, String)>,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// The body, if any.
    pub body: Vec<u8>,
}

impl Request {
    /// The first header with this (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_component(k) == name).then(|| decode_component(v))
        })
    }

    /// Whether the client accepts a gzip-encoded response.
    pub fn accepts_gzip(&self) -> bool {
        self.header("accept-encoding").is_some_and(|v| {
            v.split(',').any(|item| {
                let mut parts = item.split(';');
                let coding = parts.next().unwrap_or("").trim();
                let q = parts
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .unwrap_or(1.0);
                (coding.eq_ignore_ascii_case("gzip") || coding == "*") && q > 0.0
            })
        })
    }
}

fn decode_component(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What parsing the bytes received so far gave.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    /// A whole request, and how many bytes of the buffer it used.
    Complete(Request, usize),
    /// More bytes are needed; `expects_continue` when the client waits for `100 Continue`.
    Partial {
        /// The head is complete and the client sent `Expect: 100-continue`.
        expects_continue: bool,
    },
    /// The request is unacceptable; answer with this status and close.
    Reject(u16, &'static str),
}

/// A Content-Length: digits only (RFC 9110). `+3` parses as a usize, but a proxy in
/// front may read it otherwise, and a body boundary two parties disagree on is how
/// requests are smuggled.
fn decimal(value: &str) -> Option<usize> {
    let digits = value.trim();
    if digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

/// Tries to parse one request from the front of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > MAX_HEAD_BYTES {
                Parsed::Reject(431, "request header fields too large")
            } else {
                Parsed::Partial {
                    expects_continue: false,
                }
            };
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Reject(431, "too many header fields");
        }
        Err(_) => return Parsed::Reject(400, "malformed request"),
    };
    if head_len > MAX_HEAD_BYTES {
        return Parsed::Reject(431, "request header fields too large");
    }
    let method = req.method.unwrap_or("").to_string();
    let target = req.path.unwrap_or("/");
    let minor = req.version.unwrap_or(1);
    let mut out_headers = Vec::with_capacity(req.headers.len());
    let mut content_length: Option<usize> = None;
    for h in req.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        let Ok(value) = std::str::from_utf8(h.value) else {
            return Parsed::Reject(400, "header value is not UTF-8");
        };
        if name == "transfer-encoding" {
            return Parsed::Reject(501, "chunked request bodies are not supported");
        }
        if name == "content-length" {
            match decimal(value) {
                Some(n) if content_length.is_none_or(|c| c == n) => content_length = Some(n),
                _ => return Parsed::Reject(400, "invalid Content-Length"),
            }
        }
        out_headers.push((name, value.to_string()));
    }
    let body_len = content_length.unwrap_or(0);
    if body_len > MAX_BODY_BYTES {
        return Parsed::Reject(413, "request body too large");
    }
    if buf.len() < head_len + body_len {
        let expects_continue = out_headers
            .iter()
            .any(|(k, v)| k == "expect" && v.eq_ignore_ascii_case("100-continue"));
        return Parsed::Partial { expects_continue };
    }
    let connection = out_headers
        .iter()
        .find(|(k, _)| k == "connection")
        .map(|(_, v)| v.to_ascii_lowercase());
    let keep_alive = match (minor, connection.as_deref()) {
        (_, Some(c)) if c.split(',').any(|t| t.trim() == "close") => false,
        (0, Some(c)) => c.split(',').any(|t| t.trim() == "keep-alive"),
        (0, None) => false,
        _ => true,
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Parsed::Complete(
        Request {
            method,
            path: path.to_string(),
            query: query.to_string(),
            headers: out_headers,
            keep_alive,
            body: buf[head_len..head_len + body_len].to_vec(),
        },
        head_len + body_len,
    )
}

/// The body of a response.
#[derive(Debug, Clone)]
pub enum Body {
    /// Bytes in memory.
    Bytes(Vec<u8>),
    /// Pieces written straight from their owner.
    Source(Arc<dyn BodySource>),
}

impl Body {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Body::Bytes(b) => b.len(),
            Body::Source(s) => s.len(),
        }
    }

    /// The bytes from `offset` to the end of the piece that holds it; empty at the end.
    pub fn chunk_at(&self, offset: usize) -> &[u8] {
        match self {
            Body::Bytes(b) => b.get(offset..).unwrap_or_default(),
            Body::Source(s) => s.chunk_at(offset),
        }
    }
}

/// A response to send.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Extra headers.
    pub headers: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    /// The body.
    pub body: Body,
}

impl Response {
    /// A response with a body of the given type.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: Body::Bytes(body.into()),
        }
    }

    /// A response whose body is written piece by piece from `source`.
    pub fn streamed(
        status: u16,
        content_type: &'static str,
        source: Arc<dyn BodySource>,
    ) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: Body::Source(source),
        }
    }

    /// A plain-text response.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        let mut body = body.into();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        Response::new(status, "text/plain; charset=utf-8", body)
    }

    /// A JSON response.
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        let mut body = value.to_string();
        body.push('\n');
        Response::new(status, "application/json", body)
    }

    /// Adds a header.
    pub fn with_header(
        mut self,
        name: &'static str,
        value: impl Into<Cow<'static, str>>,
    ) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The status line and headers.
    pub fn head(&self, keep_alive: bool) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            self.status,
            reason_phrase(self.status),
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        head.push_str(if keep_alive {
            "Connection: keep-alive\r\n\r\n"
        } else {
            "Connection: close\r\n\r\n"
        });
        head.into_bytes()
    }
}

/// The standard reason phrase of a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests_with_and_without_bodies() {
        let raw = b"GET /queryurl?check=web%2D1&x HTTP/1.1\r\nHost: a\r\nAccept-Encoding: deflate, gzip;q=0.5\r\n\r\nGET / HTTP/1.1\r\n";
        let Parsed::Complete(req, used) = parse(raw) else {
            panic!()
        };
        assert_eq!(req.path, "/queryurl");
        assert_eq!(req.query_param("check").as_deref(), Some("web-1"));
        assert_eq!(req.query_param("x").as_deref(), Some(""));
        assert!(req.keep_alive && req.accepts_gzip());
        assert_eq!(&raw[used..], b"GET / HTTP/1.1\r\n");
        let raw = b"POST /-/reload HTTP/1.0\r\nContent-Length: 3\r\n\r\nab";
        assert_eq!(
            parse(raw),
            Parsed::Partial {
                expects_continue: false
            }
        );
        let raw = b"POST /-/reload HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc";
        let Parsed::Complete(req, _) = parse(raw) else {
            panic!()
        };
        assert_eq!(req.body, b"abc");
        assert!(!req.keep_alive);
    }

    #[test]
    fn rejects_what_it_must() {
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nX: "),
            Parsed::Partial {
                expects_continue: false
            }
        );
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES));
        assert!(matches!(parse(&huge), Parsed::Reject(431, _)));
        assert!(matches!(
            parse(b"\x01\x02 / HTTP/1.1\r\n\r\n"),
            Parsed::Reject(400, _)
        ));
        assert!(matches!(
            parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Parsed::Reject(501, _)
        ));
        assert!(matches!(
            parse(b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"),
            Parsed::Reject(413, _)
        ));
        assert!(matches!(
            parse(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Parsed::Reject(400, _)
        ));
        // Digits only: what Rust's integer parsing also takes is refused.
        for odd in ["+3", "-0", "3 3", "0x3", ""] {
            let raw = format!("POST / HTTP/1.1\r\nContent-Length: {odd}\r\n\r\nabc");
            assert!(
                matches!(parse(raw.as_bytes()), Parsed::Reject(400, _)),
                "{odd:?}"
            );
        }
        let Parsed::Partial { expects_continue } =
            parse(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        else {
            panic!()
        };
        assert!(expects_continue);
    }

    #[test]
    fn decoding_never_panics_on_odd_input() {
        for q in ["%", "%4", "%zz", "a=%E2%82", "%%%", "=", "&&", "x=%C3%A9"] {
            let req = Request {
                method: "GET".into(),
                path: "/".into(),
                query: q.into(),
                headers: vec![],
                keep_alive: true,
                body: vec![],
            };
            let _ = req.query_param("x");
        }
        assert_eq!(decode_component("%C3%A9+a%"), "é a%");
    }

    use crate::units::within;
    use proptest::prelude::*;
    use std::time::Duration;

    const LIMIT: Duration = Duration::from_millis(500);

    /// A request's parts: method, path, query, headers, body, HTTP/1.x minor version.
    type Parts = (String, String, String, Vec<(String, String)>, Vec<u8>, u8);

    /// A request as a client might write it: method, target, headers, body, version.
    fn requests() -> impl Strategy<Value = Parts> {
        let header = ("[A-Za-z][A-Za-z0-9-]{0,20}", "[!-~]([ -~]{0,30}[!-~])?").prop_filter(
            "sonde's own framing headers",
            |(n, _)| {
                let n = n.to_ascii_lowercase();
                ![
                    "content-length",
                    "transfer-encoding",
                    "connection",
                    "expect",
                ]
                .contains(&n.as_str())
            },
        );
        (
            "[A-Z]{1,10}",
            "/[A-Za-z0-9._~/-]{0,40}",
            "([A-Za-z0-9=&%+.-]{1,30})?",
            proptest::collection::vec(header, 0..8),
            proptest::collection::vec(any::<u8>(), 0..300),
            0u8..2,
        )
    }

    fn serialize(
        method: &str,
        path: &str,
        query: &str,
        headers: &[(String, String)],
        body: &[u8],
        minor: u8,
    ) -> Vec<u8> {
        let target = if query.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{query}")
        };
        let mut raw = format!("{method} {target} HTTP/1.{minor}\r\n");
        for (k, v) in headers {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
        raw.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut raw = raw.into_bytes();
        raw.extend_from_slice(body);
        raw
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any bytes: complete, partial or rejected, never a panic, in bounded time,
        /// and a complete request never claims more bytes than there are.
        #[test]
        fn any_bytes_get_an_answer(raw in proptest::collection::vec(any::<u8>(), 0..2048)) {
            if let Parsed::Complete(_, used) = within(LIMIT, "parse", || parse(&raw)) {
                prop_assert!(used <= raw.len());
            }
        }

        /// Request-like text (valid words in odd places) never panics either.
        #[test]
        fn request_like_text_gets_an_answer(text in "(GET|POST|HEAD) [ -~]{0,60}( HTTP/1\\.[0-9])?(\r\n[ -~]{0,40}){0,6}(\r\n\r\n)?[ -~]{0,40}") {
            let _ = within(LIMIT, "parse", || parse(text.as_bytes()));
        }

        /// A written request parses back to what was written, using exactly its bytes;
        /// every proper prefix of it asks for more.
        #[test]
        fn written_requests_round_trip((method, path, query, headers, body, minor) in requests()) {
            let raw = serialize(&method, &path, &query, &headers, &body, minor);
            prop_assume!(raw.len() - body.len() <= MAX_HEAD_BYTES);
            let mut pipelined = raw.clone();
            pipelined.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
            let Parsed::Complete(req, used) = parse(&pipelined) else {
                return Err(TestCaseError::fail(format!("{:?}", parse(&pipelined))));
            };
            prop_assert_eq!(used, raw.len());
            prop_assert_eq!(&req.method, &method);
            prop_assert_eq!(&req.path, &path);
            prop_assert_eq!(&req.query, &query);
            prop_assert_eq!(&req.body, &body);
            prop_assert_eq!(req.keep_alive, minor == 1);
            for (k, v) in &headers {
                let lower = k.to_ascii_lowercase();
                prop_assert!(req.headers.iter().any(|(n, val)| *n == lower && val == v), "{} missing", k);
            }
            for cut in [1, raw.len() / 2, raw.len() - 1] {
                prop_assert_eq!(
                    parse(&raw[..cut]),
                    Parsed::Partial { expects_continue: false },
                    "prefix of {} bytes", cut
                );
            }
        }

        /// Query parameters decode whatever they hold.
        #[test]
        fn query_parameters_decode_anything(query in "[ -~]{0,80}") {
            let req = Request {
                method: "GET".into(),
                path: "/".into(),
                query,
                headers: vec![],
                keep_alive: true,
                body: vec![],
            };
            let _ = within(LIMIT, "query_param", || req.query_param("check"));
        }
    }
}
