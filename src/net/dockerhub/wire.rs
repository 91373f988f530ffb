//! What Docker Hub's answers mean: listing pages, timestamps, error bodies, rate-limit
//! headers and access tokens, read from bytes and header values only.
//!
//! Everything here is a pure function of what the API sent, kept apart from the
//! conversation in `dockerhub.rs` so each rule about the API's formats can be tested
//! without a server.

use std::time::Duration;

use serde_json::Value;

use super::Repository;

/// Docker Hub documents that access tokens expire after 10 minutes.
const TOKEN_LIFETIME: Duration = Duration::from_secs(600);
/// How long to wait after a 429 that names no time.
const DEFAULT_RETRY_WAIT: Duration = Duration::from_secs(60);
/// Longest wait accepted from a 429, so a garbled header cannot silence sonde for years.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(86_400);
/// Longest piece of an error body quoted in a log line.
const DETAIL_CHARS: usize = 200;

/// One page of the listing, leniently read.
#[derive(Debug, PartialEq)]
pub(super) struct Page {
    /// The entries with a usable `name`, in the order listed.
    pub(super) repositories: Vec<Repository>,
    /// Entries without a usable `name`.
    pub(super) skipped: usize,
    /// The absolute URL of the next page, if any.
    pub(super) next: Option<String>,
}

/// Reads a `list_repositories_response`: `results` must be a list; every other field,
/// and every field of an entry but `name`, may be missing, null or of another type.
pub(super) fn parse_page(body: &[u8]) -> Result<Page, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the response is not JSON ({e})"))?;
    let Some(results) = value.get("results").and_then(Value::as_array) else {
        return Err("the response has no `results` list".into());
    };
    let next = match value.get("next") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("`next` is neither a URL nor null".into()),
    };
    let mut page = Page {
        repositories: Vec::with_capacity(results.len()),
        skipped: 0,
        next,
    };
    for entry in results {
        match repository(entry) {
            Some(r) => page.repositories.push(r),
            None => page.skipped += 1,
        }
    }
    Ok(page)
}

/// One repository object (a list entry or a `repository_info`) with a usable `name`;
/// the counts and `last_updated` may be missing, null or of another type.
fn repository(entry: &Value) -> Option<Repository> {
    let name = entry
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())?;
    let count = |key: &str| entry.get(key).and_then(Value::as_f64).filter(|v| *v >= 0.0);
    Some(Repository {
        name: name.to_string(),
        pulls: count("pull_count"),
        stars: count("star_count"),
        last_updated: entry
            .get("last_updated")
            .and_then(Value::as_str)
            .and_then(parse_rfc3339),
    })
}

/// Reads a `repository_info` (`GET /v2/namespaces/{ns}/repositories/{name}`) as leniently
/// as a list entry; `name` must be there and be the one asked for.
pub(super) fn parse_repository(body: &[u8], name: &str) -> Result<Repository, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the response is not JSON ({e})"))?;
    let repository = repository(&value).ok_or("the response has no repository `name`")?;
    if !repository.name.eq_ignore_ascii_case(name) {
        return Err(format!(
            "the response describes repository {:?}, not {name:?}",
            shorten(&repository.name)
        ));
    }
    Ok(Repository {
        name: name.to_string(),
        ..repository
    })
}

/// Parses an RFC 3339 date-time (`2024-05-01T12:00:00.123456Z`, `...+02:00`) into Unix
/// seconds with the fraction (digits beyond nanoseconds are ignored). A leap second
/// (`23:59:60` UTC at a month's end) reads as the last nanosecond before the next
/// minute; a second 60 anywhere else is no real time and is refused.
fn parse_rfc3339(text: &str) -> Option<f64> {
    use time::format_description::well_known::Rfc3339;
    // RFC 3339 separates date and time with `T` (any case) or, by its note, a space;
    // the `time` crate takes any byte there, which would read `2024-05-01X12:...`.
    let separator = *text.as_bytes().get(10)?;
    if !matches!(separator, b'T' | b't' | b' ') {
        return None;
    }
    let parsed = time::OffsetDateTime::parse(text, &Rfc3339).ok()?;
    Some(parsed.unix_timestamp() as f64 + f64::from(parsed.nanosecond()) / 1e9)
}

/// How long to send nothing after a 429: `Retry-After` (seconds) or `X-Retry-After`
/// (Unix time), the later when both are given; else the rate-limit reset time; else a
/// minute. Capped at [`MAX_RETRY_WAIT`].
pub(super) fn retry_wait(
    retry_after: Option<&str>,
    x_retry_after: Option<&str>,
    reset: Option<&str>,
    now_unix: f64,
) -> Duration {
    let seconds = |v: Option<&str>| {
        v.and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite())
    };
    let relative = seconds(retry_after);
    let absolute = seconds(x_retry_after).map(|t| t - now_unix);
    let wait = match (relative, absolute) {
        (Some(a), Some(b)) => a.max(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => match seconds(reset) {
            Some(t) => t - now_unix,
            None => DEFAULT_RETRY_WAIT.as_secs_f64(),
        },
    };
    Duration::from_secs_f64(wait.clamp(0.0, MAX_RETRY_WAIT.as_secs_f64()))
}

/// How long to use an access token: until the `exp` of its JWT payload when it has one,
/// at most the documented 10 minutes.
pub(super) fn token_lifetime(token: &str, now_unix: f64) -> Duration {
    let exp = token
        .split('.')
        .nth(1)
        .and_then(jwt_segment)
        .and_then(|payload| serde_json::from_slice::<Value>(&payload).ok())
        .and_then(|claims| claims.get("exp")?.as_f64());
    match exp {
        Some(exp) if exp.is_finite() => {
            Duration::from_secs_f64((exp - now_unix).clamp(0.0, TOKEN_LIFETIME.as_secs_f64()))
        }
        _ => TOKEN_LIFETIME,
    }
}

/// Decodes a JWT segment: base64url, unpadded as JWTs are, though padding is tolerated.
fn jwt_segment(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    ENGINE.decode(text).ok()
}

/// `: "message"` from a JSON error body (`message`, `detail` or `error`), shortened.
pub(super) fn detail(body: &[u8]) -> String {
    let text = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        ["message", "detail", "error"]
            .iter()
            .find_map(|k| v.get(*k)?.as_str().map(str::to_string))
    });
    match text {
        Some(t) if !t.is_empty() => format!(": {:?}", shorten(&t)),
        _ => String::new(),
    }
}

/// At most [`DETAIL_CHARS`] characters of a text from the network.
pub(super) fn shorten(text: &str) -> String {
    match text.char_indices().nth(DETAIL_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_timestamps_parse_with_fractions_and_offsets() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20Z"), Some(1_700_000_000.0));
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20.5Z"),
            Some(1_700_000_000.5)
        );
        let micro = parse_rfc3339("2023-11-14T22:13:20.123456Z").unwrap();
        assert!((micro - 1_700_000_000.123456).abs() < 1e-6, "{micro}");
        assert_eq!(
            parse_rfc3339("2023-11-15T00:13:20+02:00"),
            Some(1_700_000_000.0)
        );
        assert_eq!(
            parse_rfc3339("2023-11-14T17:43:20.25-04:30"),
            Some(1_700_000_000.25)
        );
        assert_eq!(parse_rfc3339("2024-02-29t00:00:00z"), Some(1_709_164_800.0));
        assert_eq!(
            parse_rfc3339("2023-11-14 22:13:20.000000001Z").map(f64::floor),
            Some(1_700_000_000.0)
        );
        // Digits beyond nanoseconds cannot change an f64 of Unix seconds.
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20.2500000000001Z"),
            Some(1_700_000_000.25)
        );
        // A leap second is the last representable moment before the next minute.
        assert_eq!(parse_rfc3339("2016-12-31T23:59:60Z"), Some(1_483_228_800.0));
    }

    #[test]
    fn malformed_timestamps_are_refused() {
        for bad in [
            "",
            "2023-11-14",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13:20.Z",
            "2023-13-14T22:13:20Z",
            "2023-02-29T22:13:20Z",
            "2023-11-31T22:13:20Z",
            "2023-11-14T24:13:20Z",
            "2023-11-14T22:60:20Z",
            "2023-11-14T22:13:20+2:00",
            "2023-11-14T22:13:20+24:00",
            "2023-11-14T22:13:20Zjunk",
            "２023-11-14T22:13:20Z",
            "2023-11-14T22:13:2xZ",
            "+023-11-14T22:13:20Z",
            "2023-11-14X22:13:20Z",
            "2023-11-14T22:13:20+02:60",
            "2023-11-14T22:13:60Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn pages_are_read_leniently() {
        let page = parse_page(
            br#"{"count": 3, "next": "https://hub.docker.com/v2/namespaces/x/repositories?page=2",
                "previous": null, "unknown": {"a": 1},
                "results": [
                  {"name": "a", "namespace": "x", "pull_count": 15722123, "star_count": 7,
                   "last_updated": "2023-11-14T22:13:20.5Z", "description": null,
                   "categories": [{"name": "n", "slug": "s"}], "future_field": true},
                  {"name": "b", "pull_count": null, "last_updated": null},
                  {"name": "c", "pull_count": "12", "star_count": -1, "last_updated": "yesterday"},
                  {"namespace": "x", "pull_count": 1},
                  {"name": "", "pull_count": 1}
                ]}"#,
        )
        .unwrap();
        assert_eq!(
            page.next.as_deref(),
            Some("https://hub.docker.com/v2/namespaces/x/repositories?page=2")
        );
        assert_eq!(page.skipped, 2);
        assert_eq!(
            page.repositories,
            vec![
                Repository {
                    name: "a".into(),
                    pulls: Some(15_722_123.0),
                    stars: Some(7.0),
                    last_updated: Some(1_700_000_000.5),
                },
                Repository {
                    name: "b".into(),
                    pulls: None,
                    stars: None,
                    last_updated: None,
                },
                Repository {
                    name: "c".into(),
                    pulls: None,
                    stars: None,
                    last_updated: None,
                },
            ]
        );
        assert_eq!(parse_page(br#"{"results": []}"#).unwrap().next, None);
        assert_eq!(
            parse_page(br#"{"results": [], "next": ""}"#).unwrap().next,
            None
        );
    }

    #[test]
    fn a_single_repository_is_read_like_a_list_entry() {
        let body = br#"{"user":"acme","name":"app","namespace":"acme","pull_count":12,"star_count":null,
            "last_updated":"2024-05-01T12:00:00.5Z","is_automated":false,"permissions":{"read":true}}"#;
        assert_eq!(
            parse_repository(body, "app").unwrap(),
            Repository {
                name: "app".into(),
                pulls: Some(12.0),
                stars: None,
                last_updated: Some(1_714_564_800.5),
            }
        );
        assert!(
            parse_repository(br#"{"name":"other"}"#, "app")
                .unwrap_err()
                .contains("other")
        );
        assert!(parse_repository(br#"{"pull_count":1}"#, "app").is_err());
        assert!(parse_repository(b"<html>", "app").is_err());
    }

    #[test]
    fn pages_without_results_or_json_are_errors() {
        assert!(parse_page(b"<html>").unwrap_err().contains("not JSON"));
        assert!(parse_page(b"").unwrap_err().contains("not JSON"));
        assert!(
            parse_page(br#"{"count": 0}"#)
                .unwrap_err()
                .contains("no `results`")
        );
        assert!(
            parse_page(br#"{"results": {"a": 1}}"#)
                .unwrap_err()
                .contains("no `results`")
        );
        assert!(
            parse_page(br#"[1, 2]"#)
                .unwrap_err()
                .contains("no `results`")
        );
        assert!(
            parse_page(br#"{"results": [], "next": 2}"#)
                .unwrap_err()
                .contains("`next`")
        );
    }

    #[test]
    fn retry_wait_takes_seconds_or_epoch_and_is_bounded() {
        let now = 1_700_000_000.0;
        let secs = |d: Duration| d.as_secs_f64();
        assert_eq!(secs(retry_wait(Some("60"), None, None, now)), 60.0);
        assert_eq!(secs(retry_wait(Some(" 5 "), None, None, now)), 5.0);
        assert_eq!(secs(retry_wait(None, Some("1700000030"), None, now)), 30.0);
        assert_eq!(
            secs(retry_wait(Some("10"), Some("1700000030"), None, now)),
            30.0
        );
        assert_eq!(
            secs(retry_wait(Some("40"), Some("1700000030"), None, now)),
            40.0
        );
        assert_eq!(secs(retry_wait(None, None, Some("1700000007"), now)), 7.0);
        assert_eq!(secs(retry_wait(None, None, None, now)), 60.0);
        assert_eq!(secs(retry_wait(Some("soon"), None, None, now)), 60.0);
        assert_eq!(secs(retry_wait(None, Some("1600000000"), None, now)), 0.0);
        assert_eq!(secs(retry_wait(Some("-5"), None, None, now)), 0.0);
        assert_eq!(
            secs(retry_wait(Some("99999999999999999999"), None, None, now)),
            86_400.0
        );
        assert_eq!(secs(retry_wait(Some("inf"), None, None, now)), 60.0);
    }

    #[test]
    fn token_lifetime_follows_the_jwt_exp_claim_up_to_ten_minutes() {
        let now = 1_700_000_000.0;
        // {"alg":"none"} . {"exp":1700000120} . sig
        let jwt = "eyJhbGciOiJub25lIn0.eyJleHAiOjE3MDAwMDAxMjB9.c2ln";
        assert_eq!(token_lifetime(jwt, now), Duration::from_secs(120));
        // {"exp":1800000000}: far away, capped at the documented 10 minutes.
        let far = "e30.eyJleHAiOjE4MDAwMDAwMDB9.c2ln";
        assert_eq!(token_lifetime(far, now), TOKEN_LIFETIME);
        // {"exp":1600000000}: already expired, used for this request only.
        let past = "e30.eyJleHAiOjE2MDAwMDAwMDB9.c2ln";
        assert_eq!(token_lifetime(past, now), Duration::ZERO);
        assert_eq!(token_lifetime("opaque-token", now), TOKEN_LIFETIME);
        assert_eq!(token_lifetime("a.!!!.c", now), TOKEN_LIFETIME);
    }

    #[test]
    fn jwt_segments_decode_with_and_without_padding() {
        assert_eq!(jwt_segment("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(jwt_segment("Zm9vYg").unwrap(), b"foob");
        assert_eq!(jwt_segment("Zm9vYg==").unwrap(), b"foob");
        assert_eq!(jwt_segment("-_8").unwrap(), [0xfb, 0xff]);
        assert!(jwt_segment("a+b").is_none());
    }

    #[test]
    fn error_details_are_short_and_only_from_json() {
        assert_eq!(
            detail(br#"{"message": "object not found"}"#),
            r#": "object not found""#
        );
        assert_eq!(detail(br#"{"detail": "Incorrect"}"#), r#": "Incorrect""#);
        assert_eq!(detail(b"Too Many Requests (HAP429)."), "");
        let long = format!(r#"{{"message": "{}"}}"#, "x".repeat(1000));
        assert!(detail(long.as_bytes()).chars().count() < DETAIL_CHARS + 10);
    }
}
