//! Property tests of what registries and docker config files send: `WWW-Authenticate`
//! challenges, token responses, `Retry-After`, docker config JSON. Invariants: no panic,
//! bounded time, and round trips where a value can be written.

use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use proptest::prelude::*;

use super::{Challenge, Keyring, parse_challenges, parse_retry_after, parse_token};
use crate::net::image_ref::ImageRef;
use crate::net::prop;
use crate::units::within;

const LIMIT: Duration = Duration::from_millis(500);

/// A challenge parameter written as a quoted string, escapes included.
fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any header value: some challenges, never a panic.
    #[test]
    fn any_challenge_header_is_read(value in "\\PC{0,120}|((Bearer|Basic|bearer) ?([a-z]{1,8}=(\"[ -~]{0,20}\"?|[!-~]{0,10}),? ?){0,4}){0,3}") {
        let _ = within(LIMIT, "parse_challenges", || parse_challenges(&value));
    }

    /// A Bearer challenge written with quoted realm and service reads back, whatever
    /// the values hold (quotes, backslashes, commas), beside a Basic challenge.
    #[test]
    fn bearer_challenges_round_trip(realm in "[ -~]{0,40}", service in proptest::option::of("[ -~]{0,30}"), basic_first in any::<bool>()) {
        let mut bearer = format!("Bearer realm={}", quoted(&realm));
        if let Some(s) = &service {
            bearer.push_str(&format!(",service={}", quoted(s)));
        }
        let header = if basic_first { format!("Basic, {bearer}") } else { bearer };
        let challenges = parse_challenges(&header);
        let expected = Challenge::Bearer { realm, service };
        let found = challenges.contains(&expected);
        prop_assert!(found, "{:?} from {:?}", challenges, header);
    }

    /// Token responses: a token with a lifetime of at most a day, or an error.
    #[test]
    fn any_token_response_is_read(body in prop::body()) {
        if let Ok(token) = within(LIMIT, "parse_token", || parse_token(&body)) {
            prop_assert!(token.valid_until <= Instant::now() + Duration::from_secs(86_400));
            prop_assert!(!token.token.is_empty());
        }
    }

    /// `Retry-After`: seconds or a date, never a panic.
    #[test]
    fn any_retry_after_is_read(value in "\\PC{0,40}|[0-9]{1,25}|(Mon|Sun), [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9:]{8} GMT") {
        let _ = within(LIMIT, "parse_retry_after", || parse_retry_after(&value, SystemTime::now()));
    }

    /// Any docker config (or `.dockercfg`): a keyring and the skipped entries, or an
    /// error; never a panic, and a lookup in what was read never panics either.
    #[test]
    fn any_docker_config_is_read(body in prop::body(), legacy in any::<bool>()) {
        let parsed = within(LIMIT, "Keyring::parse", || Keyring::parse(&body, legacy));
        if let Ok((keyring, _)) = parsed {
            let image = ImageRef::parse("registry.local:5000/team/app:1").unwrap();
            let _ = keyring.lookup(&image);
        }
    }

    /// An `auths` entry written the way `docker login` writes it is found for its host.
    #[test]
    fn written_docker_configs_round_trip(user in "[A-Za-z0-9._-]{1,20}", password in "[ -~]{1,30}", port in 1u16..65535) {
        let host = format!("registry.local:{port}");
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let json = serde_json::json!({"auths": {host.clone(): {"auth": auth}}}).to_string();
        let (keyring, skipped) = Keyring::parse(json.as_bytes(), false).map_err(TestCaseError::fail)?;
        prop_assert!(skipped.is_empty(), "{:?}", skipped);
        let image = ImageRef::parse(&format!("{host}/team/app:1")).unwrap();
        let credential = keyring.lookup(&image).ok_or_else(|| TestCaseError::fail("not found"))?;
        prop_assert_eq!(&credential.username, &user);
        prop_assert_eq!(&credential.password, &password);
    }
}
