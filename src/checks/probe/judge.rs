//! The conditions a complete answer must meet ([`Conditions`]: status, headers, body
//! regexes, HTTP version, TLS), judged in blackbox_exporter's order, and the facts of
//! the final response's head that blackbox_exporter's series report.

use regex::bytes::Regex;
use ureq::http::{HeaderMap, HeaderName, Version};

use super::outcome::{ProbeResult, Reason};
use crate::net::http as client;

/// Redirects followed with `follow_redirects: true`.
pub(super) const MAX_REDIRECTS: u32 = 10;

/// One header condition, validated.
#[derive(Debug)]
pub(super) struct HeaderMatch {
    pub(super) name: HeaderName,
    pub(super) regexp: Regex,
    pub(super) allow_missing: bool,
}

/// The validated conditions of an answer.
#[derive(Debug)]
pub(super) struct Conditions {
    pub(super) valid_status_codes: Option<Vec<u16>>,
    pub(super) valid_http_versions: Option<Vec<String>>,
    pub(super) fail_if_ssl: bool,
    pub(super) fail_if_not_ssl: bool,
    pub(super) follow_redirects: bool,
    pub(super) must_not_match: Vec<(String, Regex)>,
    pub(super) must_match: Vec<(String, Regex)>,
    pub(super) header_must_not_match: Vec<HeaderMatch>,
    pub(super) header_must_match: Vec<HeaderMatch>,
}

impl Conditions {
    /// Whether a body regex needs the body kept.
    pub(super) fn needs_body(&self) -> bool {
        !(self.must_match.is_empty() && self.must_not_match.is_empty())
    }

    /// The conditions of a complete answer, in blackbox_exporter's order: status,
    /// headers, body, HTTP version, TLS. The first that fails, with its cause. A
    /// redirect still unfollowed while redirects are followed is a loop (or a chain
    /// longer than [`MAX_REDIRECTS`]) and fails before anything else.
    pub(super) fn judge(
        &self,
        response: &ureq::http::Response<ureq::Body>,
        body: &[u8],
        over_tls: bool,
    ) -> Option<(Reason, String)> {
        if self.follow_redirects && is_followable_redirect(response) {
            return Some((
                Reason::Redirects,
                format!("too many redirects (more than {MAX_REDIRECTS})"),
            ));
        }
        let status = response.status().as_u16();
        match &self.valid_status_codes {
            Some(codes) if !codes.contains(&status) => {
                return Some((
                    Reason::StatusCode,
                    format!("status {status} is not in valid_status_codes {codes:?}"),
                ));
            }
            None if !(200..300).contains(&status) => {
                return Some((Reason::StatusCode, format!("status {status} is not 2xx")));
            }
            _ => {}
        }
        if let Some(cause) = header_failure(
            response.headers(),
            &self.header_must_not_match,
            &self.header_must_match,
        ) {
            return Some((Reason::HeaderRegex, cause));
        }
        if let Some((text, _)) = self.must_not_match.iter().find(|(_, re)| re.is_match(body)) {
            return Some((Reason::BodyRegex, format!("the body matches {text:?}")));
        }
        if let Some((text, _)) = self.must_match.iter().find(|(_, re)| !re.is_match(body)) {
            return Some((
                Reason::BodyRegex,
                format!("the body does not match {text:?}"),
            ));
        }
        if let Some(valid) = &self.valid_http_versions {
            let version = match response.version() {
                Version::HTTP_10 => "HTTP/1.0",
                Version::HTTP_11 => "HTTP/1.1",
                Version::HTTP_2 => "HTTP/2.0",
                _ => "HTTP/0.9",
            };
            if !valid.iter().any(|v| v == version) {
                return Some((
                    Reason::HttpVersion,
                    format!("the response is {version}, not one of valid_http_versions {valid:?}"),
                ));
            }
        }
        if self.fail_if_ssl && over_tls {
            return Some((
                Reason::Ssl,
                "the final response came over TLS (fail_if_ssl)".into(),
            ));
        }
        if self.fail_if_not_ssl && !over_tls {
            return Some((
                Reason::NotSsl,
                "the final response came over plain HTTP (fail_if_not_ssl)".into(),
            ));
        }
        None
    }
}

/// Notes what the final response's head says, for blackbox_exporter's series.
pub(super) fn note_head(
    response: &ureq::http::Response<ureq::Body>,
    over_tls: bool,
    result: &mut ProbeResult,
) {
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    result.over_tls = over_tls;
    result.content_length = header(ureq::http::header::CONTENT_LENGTH).and_then(|v| v.parse().ok());
    result.last_modified =
        header(ureq::http::header::LAST_MODIFIED).and_then(client::parse_http_date);
    result.http_version = Some(match response.version() {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2.0",
        Version::HTTP_3 => "3.0",
        _ => "1.1",
    });
    result.unfollowed_redirect = is_followable_redirect(response);
}

/// A redirect a browser (and Go's client) would follow: 301, 302, 303, 307 or 308 with
/// a `Location`.
fn is_followable_redirect(response: &ureq::http::Response<ureq::Body>) -> bool {
    matches!(response.status().as_u16(), 301 | 302 | 303 | 307 | 308)
        && response
            .headers()
            .contains_key(ureq::http::header::LOCATION)
}

/// The first failed header condition, blackbox_exporter's way: a missing header fails
/// unless `allow_missing`; `fail_if_header_matches` fails when any value matches,
/// `fail_if_header_not_matches` when none does. Values are never quoted (they may be
/// cookies); the regexp is.
pub(super) fn header_failure(
    headers: &HeaderMap,
    must_not: &[HeaderMatch],
    must: &[HeaderMatch],
) -> Option<String> {
    let checks = must_not
        .iter()
        .map(|m| (m, false))
        .chain(must.iter().map(|m| (m, true)));
    for (m, wanted) in checks {
        let values: Vec<&[u8]> = headers
            .get_all(&m.name)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        if values.is_empty() {
            if m.allow_missing {
                continue;
            }
            return Some(format!("header {} is missing", m.name));
        }
        let any = values.iter().any(|v| m.regexp.is_match(v));
        if any != wanted {
            return Some(if wanted {
                format!(
                    "no value of header {} matches {:?}",
                    m.name,
                    m.regexp.as_str()
                )
            } else {
                format!("header {} matches {:?}", m.name, m.regexp.as_str())
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use ureq::http::HeaderValue;

    #[test]
    fn header_conditions_follow_blackbox() {
        let m = |name: &str, re: &str, allow_missing| HeaderMatch {
            name: HeaderName::try_from(name).unwrap(),
            regexp: Regex::new(re).unwrap(),
            allow_missing,
        };
        let mut headers = HeaderMap::new();
        headers.append("x-cache", HeaderValue::from_static("MISS"));
        headers.append("x-cache", HeaderValue::from_static("HIT"));
        assert_eq!(
            header_failure(&headers, &[m("x-cache", "^HIT$", false)], &[]).as_deref(),
            Some("header x-cache matches \"^HIT$\"")
        );
        assert_eq!(
            header_failure(&headers, &[], &[m("x-cache", "^HIT$", false)]),
            None
        );
        assert_eq!(
            header_failure(&headers, &[], &[m("x-cache", "^PASS$", false)]).as_deref(),
            Some("no value of header x-cache matches \"^PASS$\"")
        );
        assert_eq!(
            header_failure(&headers, &[m("x-other", ".", false)], &[]).as_deref(),
            Some("header x-other is missing")
        );
        assert_eq!(
            header_failure(&headers, &[], &[m("x-other", ".", true)]),
            None
        );
    }
}
