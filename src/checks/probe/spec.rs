//! The keys of an http probe as they are written: [`ProbeSpec`] (every key of an http
//! check but `urls`, and every key of a probe module), read from YAML with their
//! locations so that [`super::validate`] can name the line of a bad value.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, de};

use crate::net::http::ConnectionKeys;
use crate::problem::Spanned;
use crate::units::SizeValue;

/// The keys of an http check that say how to probe a URL (all but `urls`): its own and
/// the shared connection keys.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeSpec {
    pub(super) own: ProbeKeys,
    pub(super) connection: ConnectionKeys,
}

impl<'de> Deserialize<'de> for ProbeSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ProbeSpec, D::Error> {
        let mut connection = ConnectionKeys::default();
        let own =
            crate::keys::split_listed(deserializer, &mut connection, &[&ConnectionKeys::NAMES])?;
        Ok(ProbeSpec { own, connection })
    }
}

/// The keys only probes have.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProbeKeys {
    #[serde(default)]
    pub(super) method: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) headers: Option<Spanned<BTreeMap<String, HeaderValueSpec>>>,
    #[serde(default)]
    pub(super) body: Option<String>,
    #[serde(default)]
    pub(super) body_file: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) valid_status_codes: Option<Spanned<Vec<u16>>>,
    #[serde(default)]
    pub(super) valid_http_versions: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default = "yes")]
    pub(super) follow_redirects: bool,
    #[serde(default)]
    pub(super) fail_if_ssl: bool,
    #[serde(default)]
    pub(super) fail_if_not_ssl: bool,
    #[serde(default)]
    pub(super) fail_if_body_matches_regexp: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) fail_if_body_not_matches_regexp: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) fail_if_header_matches: Vec<Spanned<HeaderMatchSpec>>,
    #[serde(default)]
    pub(super) fail_if_header_not_matches: Vec<Spanned<HeaderMatchSpec>>,
    #[serde(default)]
    pub(super) body_size_limit: Option<SizeValue>,
    #[serde(default)]
    pub(super) basic_auth: Option<Spanned<BasicAuthSpec>>,
    #[serde(default)]
    pub(super) bearer_token_file: Option<Spanned<String>>,
}

fn yes() -> bool {
    true
}

/// A value of `headers:`: inline text, or `{file: PATH}` re-read every run.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum HeaderValueSpec {
    Inline(String),
    File(Spanned<String>),
}

impl<'de> Deserialize<'de> for HeaderValueSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HeaderValueSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a header value, or {file: PATH}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HeaderValueSpec, E> {
                Ok(HeaderValueSpec::Inline(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HeaderValueSpec, E> {
                Ok(HeaderValueSpec::Inline(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HeaderValueSpec, E> {
                Ok(HeaderValueSpec::Inline(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<HeaderValueSpec, E> {
                Ok(HeaderValueSpec::Inline(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HeaderValueSpec, A::Error> {
                let mut file = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "file" => file = Some(map.next_value::<Spanned<String>>()?),
                        other => return Err(de::Error::unknown_field(other, &["file"])),
                    }
                }
                file.map(HeaderValueSpec::File)
                    .ok_or_else(|| de::Error::missing_field("file"))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// One entry of `fail_if_header_matches` / `fail_if_header_not_matches`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HeaderMatchSpec {
    pub(super) header: String,
    pub(super) regexp: String,
    #[serde(default)]
    pub(super) allow_missing: bool,
}

/// `basic_auth:` of an http check.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BasicAuthSpec {
    pub(super) username: String,
    #[serde(default)]
    pub(super) password_file: Option<Spanned<String>>,
}
