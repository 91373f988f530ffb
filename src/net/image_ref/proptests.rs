//! Property tests of image references: any text is parsed or refused in bounded time,
//! and what Docker would accept parses into its parts and back.

use std::time::Duration;

use proptest::prelude::*;

use super::ImageRef;
use crate::units::within;

const LIMIT: Duration = Duration::from_millis(200);

/// The text of a parsed reference, fully qualified.
fn written(r: &ImageRef) -> String {
    let mut text = format!("{}/{}", r.domain, r.path);
    if let Some(tag) = &r.tag {
        text.push(':');
        text.push_str(tag);
    }
    if let Some(digest) = &r.digest {
        text.push('@');
        text.push_str(digest);
    }
    text
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any text: a reference or an error, never a panic; a parsed reference written out
    /// in full parses to itself.
    #[test]
    fn any_text_is_parsed_or_refused(text in "\\PC{0,80}|[a-z0-9./:@_-]{0,120}") {
        if let Ok(r) = within(LIMIT, "ImageRef::parse", || ImageRef::parse(&text)) {
            prop_assert!(!r.domain.is_empty() && !r.path.is_empty());
            prop_assert_eq!(ImageRef::parse(&written(&r)), Ok(r));
        }
    }

    /// References built by Docker's grammar parse into the parts they were built from.
    #[test]
    fn docker_grammar_round_trips(
        domain in proptest::option::of(prop_oneof![
            Just("localhost:5000".to_string()),
            "[a-z]([a-z0-9-]{0,8}[a-z0-9])?(\\.[a-z]([a-z0-9-]{0,8}[a-z0-9])?){1,2}(:[1-9][0-9]{0,4})?",
        ]),
        components in proptest::collection::vec("[a-z0-9]{1,8}([._-][a-z0-9]{1,8}){0,2}", 1..4),
        tag in proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,40}"),
        digest in proptest::option::of("[a-f0-9]{64}"),
    ) {
        // Without a domain, a first component that looks like a host is one (Docker's
        // rule), so it is not a path component here.
        prop_assume!(domain.is_some() || !(components[0].contains('.') || components[0] == "localhost"));
        let path = components.join("/");
        let mut text = match &domain {
            Some(d) => format!("{d}/{path}"),
            None => path.clone(),
        };
        if let Some(t) = &tag {
            text.push_str(&format!(":{t}"));
        }
        if let Some(d) = &digest {
            text.push_str(&format!("@sha256:{d}"));
        }
        let r = ImageRef::parse(&text).map_err(TestCaseError::fail)?;
        match &domain {
            Some(d) => prop_assert_eq!(&r.domain, d),
            None => prop_assert_eq!(r.domain.as_str(), "docker.io"),
        }
        let expected_path = if domain.is_none() && components.len() == 1 {
            format!("library/{path}")
        } else {
            path
        };
        prop_assert_eq!(r.path, expected_path);
        prop_assert_eq!(r.tag, tag);
        prop_assert_eq!(r.digest, digest.map(|d| format!("sha256:{d}")));
    }
}
