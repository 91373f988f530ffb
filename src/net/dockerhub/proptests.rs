//! Property tests of what Docker Hub sends: listing pages, 429 headers, access tokens
//! and error bodies. Invariants: no panic, bounded time, waits and lifetimes within
//! their caps, and a page written as the API writes it reads back.

use std::time::Duration;

use proptest::prelude::*;
use serde_json::json;

use super::wire::{detail, parse_page, retry_wait, shorten, token_lifetime};
use crate::net::prop;
use crate::units::within;

const LIMIT: Duration = Duration::from_millis(500);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any body: a page or an error; error bodies give a short detail.
    #[test]
    fn any_body_is_read(body in prop::body()) {
        let _ = within(LIMIT, "parse_page", || parse_page(&body));
        let _ = within(LIMIT, "detail", || detail(&body));
        let _ = shorten(&String::from_utf8_lossy(&body));
    }

    /// A page as the API writes it: every named repository in order, the next URL.
    #[test]
    fn written_pages_round_trip(
        names in proptest::collection::vec("[a-z0-9][a-z0-9._-]{0,20}", 0..20),
        pulls in proptest::collection::vec(0u32..1_000_000, 20),
        next in proptest::option::of("https://hub\\.docker\\.com/v2/[a-z/?=&0-9]{0,30}"),
    ) {
        let results: Vec<_> = names
            .iter()
            .zip(&pulls)
            .map(|(n, p)| json!({"name": n, "pull_count": p, "star_count": 1, "last_updated": "2024-05-01T12:00:00.5Z"}))
            .collect();
        let body = json!({"count": names.len(), "next": next, "previous": null, "results": results}).to_string();
        let page = parse_page(body.as_bytes()).map_err(TestCaseError::fail)?;
        prop_assert_eq!(page.next, next);
        prop_assert_eq!(page.skipped, 0);
        let read: Vec<_> = page.repositories.iter().map(|r| r.name.clone()).collect();
        prop_assert_eq!(read, names.clone());
        for (r, p) in page.repositories.iter().zip(&pulls) {
            prop_assert_eq!(r.pulls, Some(f64::from(*p)));
        }
    }

    /// 429 headers of any text: a wait of at most a day.
    #[test]
    fn any_rate_limit_headers_give_a_bounded_wait(
        retry in proptest::option::of("\\PC{0,20}|-?[0-9]{1,25}(\\.[0-9]{1,5})?|(?i:nan|inf|-inf)"),
        x_retry in proptest::option::of("\\PC{0,20}|[0-9]{1,25}"),
        reset in proptest::option::of("\\PC{0,20}|[0-9]{1,25}"),
        now in 0f64..4e9,
    ) {
        let wait = within(LIMIT, "retry_wait", || retry_wait(retry.as_deref(), x_retry.as_deref(), reset.as_deref(), now));
        prop_assert!(wait <= Duration::from_secs(86_400));
    }

    /// Any token: a lifetime of at most the documented 10 minutes.
    #[test]
    fn any_token_gets_a_bounded_lifetime(token in "\\PC{0,60}|[A-Za-z0-9_-]{1,20}\\.[A-Za-z0-9_=-]{0,60}\\.[A-Za-z0-9_-]{0,20}", now in 0f64..4e9) {
        let lifetime = within(LIMIT, "token_lifetime", || token_lifetime(&token, now));
        prop_assert!(lifetime <= Duration::from_secs(600));
    }
}
