//! Validating the keys of a [`ProbeSpec`](super::ProbeSpec) once, at build time: the
//! method, headers and body to send (files opened now and re-read every run), the
//! credentials, and the [`Conditions`] the answer must meet (regexes compiled). Every
//! bad value is a problem at its own line.

use std::fmt;
use std::sync::Arc;

use regex::bytes::Regex;
use serde_saphyr::Location;
use ureq::http::{HeaderName, HeaderValue, Method};

use super::judge::{Conditions, HeaderMatch};
use super::spec::{HeaderMatchSpec, HeaderValueSpec, ProbeKeys};
use crate::checks::BuildContext;
use crate::net::secret::{self, Reread, Secret};
use crate::problem::{Problem, Spanned};

/// Largest `body_file`, and largest header value file.
const BODY_FILE_LIMIT: u64 = 10 << 20;
const HEADER_FILE_LIMIT: u64 = 64 << 10;

/// The HTTP versions `valid_http_versions` may name (sonde itself speaks HTTP/1.x, so
/// `HTTP/2.0` is accepted for configs written for blackbox_exporter but never seen).
const HTTP_VERSIONS: [&str; 3] = ["HTTP/1.0", "HTTP/1.1", "HTTP/2.0"];

/// How requests authenticate; secret files are re-read every run, so rotation works.
#[derive(Debug)]
pub(super) enum Auth {
    None,
    Basic {
        username: String,
        password: Option<Reread<Secret>>,
    },
    Bearer(Reread<Secret>),
}

/// A header value read from a file: a secret, so `Debug` does not show it.
pub(super) struct FileHeader(pub(super) HeaderValue);

impl fmt::Debug for FileHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileHeader(<redacted>)")
    }
}

fn parse_header_file(bytes: &[u8]) -> Result<FileHeader, String> {
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b'\n' | b'\r'))
        .map_or(0, |i| i + 1);
    let mut value = HeaderValue::from_bytes(&bytes[..end])
        .map_err(|_| "not a valid HTTP header value (control characters?)".to_string())?;
    value.set_sensitive(true);
    Ok(FileHeader(value))
}

fn parse_body_file(bytes: &[u8]) -> Result<Vec<u8>, String> {
    Ok(bytes.to_vec())
}

/// The request body: none, `body`, or `body_file` re-read every run.
#[derive(Debug)]
pub(super) enum BodySource {
    None,
    Inline(Arc<Vec<u8>>),
    File(Reread<Vec<u8>>),
}

/// A header sent with every request.
#[derive(Debug)]
pub(super) enum HeaderSource {
    Inline(HeaderValue),
    File(Reread<FileHeader>),
}

/// The conditions of an answer: status codes, HTTP versions, body regexes, header
/// conditions, validated in that order so problems keep coming out in that order.
pub(super) fn conditions(
    spec: &ProbeKeys,
    ctx: &BuildContext,
    problems: &mut Vec<Problem>,
) -> Conditions {
    check_status_codes(spec, ctx, problems);
    let valid_http_versions = http_versions(spec, ctx, problems);
    let must_not_match = compile(&spec.fail_if_body_matches_regexp, ctx, problems);
    let must_match = compile(&spec.fail_if_body_not_matches_regexp, ctx, problems);
    let header_must_not_match = header_matches(&spec.fail_if_header_matches, ctx, problems);
    let header_must_match = header_matches(&spec.fail_if_header_not_matches, ctx, problems);
    Conditions {
        valid_status_codes: spec.valid_status_codes.as_ref().map(|c| c.value.clone()),
        valid_http_versions,
        fail_if_ssl: spec.fail_if_ssl,
        fail_if_not_ssl: spec.fail_if_not_ssl,
        follow_redirects: spec.follow_redirects,
        must_not_match,
        must_match,
        header_must_not_match,
        header_must_match,
    }
}

/// `method`, GET by default.
pub(super) fn method(spec: &ProbeKeys, ctx: &BuildContext, problems: &mut Vec<Problem>) -> Method {
    let Some(m) = &spec.method else {
        return Method::GET;
    };
    match m.value.to_ascii_uppercase().as_str() {
        "GET" => Method::GET,
        "HEAD" => Method::HEAD,
        "POST" => Method::POST,
        "PUT" => Method::PUT,
        "PATCH" => Method::PATCH,
        "DELETE" => Method::DELETE,
        "OPTIONS" => Method::OPTIONS,
        _ => {
            problems.push(ctx.problem(
                m.referenced,
                format!(
                    "method {:?}: use GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS",
                    m.value
                ),
            ));
            Method::GET
        }
    }
}

/// `headers`, each a valid HTTP header name and value; values from files are read now
/// (an unreadable file is a problem) and again every run.
pub(super) fn headers(
    spec: &ProbeKeys,
    ctx: &BuildContext,
    problems: &mut Vec<Problem>,
) -> Vec<(HeaderName, HeaderSource)> {
    let mut headers = Vec::new();
    let Some(h) = &spec.headers else {
        return headers;
    };
    for (name, value) in &h.value {
        let Ok(header) = HeaderName::try_from(name.as_str()) else {
            problems.push(ctx.problem(
                h.referenced,
                format!("header {name:?} is not a valid HTTP header name"),
            ));
            continue;
        };
        match value {
            HeaderValueSpec::Inline(text) => match HeaderValue::try_from(text.as_str()) {
                Ok(v) => headers.push((header, HeaderSource::Inline(v))),
                Err(_) => problems.push(ctx.problem(
                    h.referenced,
                    format!("header {name:?} has a value that is not a valid HTTP header value"),
                )),
            },
            HeaderValueSpec::File(file) => match Reread::open(
                ctx.resolve(&file.value),
                "header value file",
                HEADER_FILE_LIMIT,
                parse_header_file,
            ) {
                Ok(reread) => headers.push((header, HeaderSource::File(reread))),
                Err(e) => problems.push(ctx.problem(
                    file.referenced,
                    format!("header {name:?}: cannot read the file {e}"),
                )),
            },
        }
    }
    headers
}

/// `body` or `body_file` (read now, and again every run).
pub(super) fn body(
    spec: &ProbeKeys,
    ctx: &BuildContext,
    problems: &mut Vec<Problem>,
) -> BodySource {
    match (&spec.body, &spec.body_file) {
        (None, None) => BodySource::None,
        (Some(b), None) => BodySource::Inline(Arc::new(b.clone().into_bytes())),
        (Some(_), Some(file)) => {
            problems.push(ctx.problem(file.referenced, "body and body_file cannot both be set"));
            BodySource::None
        }
        (None, Some(file)) => match Reread::open(
            ctx.resolve(&file.value),
            "body file",
            BODY_FILE_LIMIT,
            parse_body_file,
        ) {
            Ok(reread) => BodySource::File(reread),
            Err(e) => {
                problems
                    .push(ctx.problem(file.referenced, format!("cannot read the body file {e}")));
                BodySource::None
            }
        },
    }
}

/// `valid_status_codes`: not empty, each an HTTP status.
fn check_status_codes(spec: &ProbeKeys, ctx: &BuildContext, problems: &mut Vec<Problem>) {
    let Some(codes) = &spec.valid_status_codes else {
        return;
    };
    if let Some(bad) = codes.value.iter().find(|c| !(100..=599).contains(*c)) {
        problems.push(ctx.problem(
            codes.referenced,
            format!("valid_status_codes: {bad} is not an HTTP status"),
        ));
    }
    if codes.value.is_empty() {
        problems.push(ctx.problem(
            codes.referenced,
            "valid_status_codes is empty; omit it to accept any 2xx",
        ));
    }
}

/// `valid_http_versions`: not empty, each one of [`HTTP_VERSIONS`].
fn http_versions(
    spec: &ProbeKeys,
    ctx: &BuildContext,
    problems: &mut Vec<Problem>,
) -> Option<Vec<String>> {
    let list = spec.valid_http_versions.as_ref()?;
    if list.value.is_empty() {
        problems.push(ctx.problem(
            list.referenced,
            "valid_http_versions is empty; omit it to accept any version",
        ));
    }
    for v in &list.value {
        if !HTTP_VERSIONS.contains(&v.value.as_str()) {
            problems.push(ctx.problem(
                v.referenced,
                format!(
                    "valid_http_versions: {:?} is not one of {}",
                    v.value,
                    HTTP_VERSIONS.join(", ")
                ),
            ));
        }
    }
    Some(list.value.iter().map(|v| v.value.clone()).collect())
}

/// Compiles a regular expression; a bad one is a problem at its line.
fn regex(
    text: &str,
    at: Location,
    ctx: &BuildContext,
    problems: &mut Vec<Problem>,
) -> Option<Regex> {
    match Regex::new(text) {
        Ok(re) => Some(re),
        Err(e) => {
            // The regex crate's message spans lines; its last line says what is wrong.
            let message = e.to_string();
            let why = message.lines().last().unwrap_or_default().trim();
            problems.push(ctx.problem(at, format!("invalid regular expression {text:?}: {why}")));
            None
        }
    }
}

/// Compiles a list of body regexes.
fn compile(
    list: &[Spanned<String>],
    ctx: &BuildContext,
    problems: &mut Vec<Problem>,
) -> Vec<(String, Regex)> {
    list.iter()
        .filter_map(|r| {
            Some((
                r.value.clone(),
                regex(&r.value, r.referenced, ctx, problems)?,
            ))
        })
        .collect()
}

/// Validates a list of header conditions.
fn header_matches(
    list: &[Spanned<HeaderMatchSpec>],
    ctx: &BuildContext,
    problems: &mut Vec<Problem>,
) -> Vec<HeaderMatch> {
    list.iter()
        .filter_map(|m| {
            let name = HeaderName::try_from(m.value.header.as_str())
                .map_err(|_| {
                    problems.push(ctx.problem(
                        m.referenced,
                        format!("{:?} is not a valid HTTP header name", m.value.header),
                    ))
                })
                .ok();
            let regexp = regex(&m.value.regexp, m.referenced, ctx, problems);
            Some(HeaderMatch {
                name: name?,
                regexp: regexp?,
                allow_missing: m.value.allow_missing,
            })
        })
        .collect()
}

/// `basic_auth` or `bearer_token_file`; the secret files must be readable now.
pub(super) fn auth(spec: &ProbeKeys, ctx: &BuildContext, problems: &mut Vec<Problem>) -> Auth {
    let mut open = |file: &Spanned<String>, what: &'static str| match secret::secret_file(
        ctx.resolve(&file.value),
        what,
    ) {
        Ok(s) => Some(s),
        Err(e) => {
            problems.push(ctx.problem(file.referenced, format!("cannot read the secret file {e}")));
            None
        }
    };
    match (&spec.basic_auth, &spec.bearer_token_file) {
        (Some(_), Some(t)) => {
            problems.push(ctx.problem(
                t.referenced,
                "basic_auth and bearer_token_file cannot both be set",
            ));
            Auth::None
        }
        (Some(b), None) => Auth::Basic {
            username: b.value.username.clone(),
            password: b
                .value
                .password_file
                .as_ref()
                .and_then(|p| open(p, "basic_auth password file")),
        },
        (None, Some(t)) => open(t, "bearer token file").map_or(Auth::None, Auth::Bearer),
        (None, None) => Auth::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_files_hide_their_value_and_drop_trailing_newlines() {
        let v = parse_header_file(b"s3cret-key\r\n").unwrap();
        assert_eq!(v.0.as_bytes(), b"s3cret-key");
        assert!(v.0.is_sensitive());
        assert!(!format!("{v:?}").contains("s3cret"));
        let e = parse_header_file(b"s3cret\nkey").unwrap_err();
        assert_eq!(e, "not a valid HTTP header value (control characters?)");
    }
}
