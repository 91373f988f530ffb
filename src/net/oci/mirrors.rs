//! Registry mirrors with containerd's semantics (`hosts.toml`): the hosts an image is
//! asked at, in order.
//!
//! `mirrors:` maps a registry (`docker.io`, `ghcr.io`, `registry.local:5000`) to mirror
//! hosts, each optionally with a repository path prefix (`harbor.local/dockerhub`, a
//! proxy-cache project). An image of that registry is asked at each mirror in order and
//! then at the registry itself, unless `skip_upstream: true`; containerd tries hosts the
//! same way and adds `?ns=<registry>` to a mirror's requests, which sonde does too. How
//! the answers combine is [`super::RegistryClient::check`]'s business; this file reads
//! the YAML, validates it, and turns an image into its list of [`Source`]s.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Location;

use super::Credential;
use crate::net::image_ref::{DOCKER_HUB, ImageRef};
use crate::problem::Spanned;

/// `mirrors:` as written: each registry with its mirrors, in file order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MirrorsSpec(pub Vec<(Spanned<String>, MirrorList)>);

/// The mirrors of one registry as written: a list of hosts, or
/// `{endpoints: [...], skip_upstream: true}`.
#[derive(Clone, Debug, PartialEq)]
pub struct MirrorList {
    /// Mirror hosts (`host[:port][/path/prefix]`), asked in this order.
    pub endpoints: Vec<Spanned<String>>,
    /// Never ask the registry itself.
    pub skip_upstream: bool,
}

/// The long form of a [`MirrorList`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongForm {
    endpoints: Vec<Spanned<String>>,
    #[serde(default)]
    skip_upstream: bool,
}

impl<'de> Deserialize<'de> for MirrorsSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<MirrorsSpec, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = MirrorsSpec;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of registry hosts to lists of mirror hosts")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MirrorsSpec, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    entries.push((key, map.next_value::<MirrorList>()?));
                }
                Ok(MirrorsSpec(entries))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

impl<'de> Deserialize<'de> for MirrorList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<MirrorList, D::Error> {
        struct Either;
        impl<'de> Visitor<'de> for Either {
            type Value = MirrorList;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of mirror hosts, or {endpoints: [...], skip_upstream: true}")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<MirrorList, A::Error> {
                let endpoints = Vec::deserialize(SeqAccessDeserializer::new(seq))?;
                Ok(MirrorList {
                    endpoints,
                    skip_upstream: false,
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MirrorList, A::Error> {
                let long = LongForm::deserialize(MapAccessDeserializer::new(map))?;
                Ok(MirrorList {
                    endpoints: long.endpoints,
                    skip_upstream: long.skip_upstream,
                })
            }
        }
        deserializer.deserialize_any(Either)
    }
}

/// One mirror, validated.
#[derive(Clone, Debug, PartialEq)]
struct Endpoint {
    /// As written, lower case: the value of the `source` label.
    name: String,
    /// `host[:port]`.
    host: String,
    /// Repository path prefix on the mirror, empty for none.
    prefix: String,
}

/// The mirrors of each registry, validated.
#[derive(Clone, Debug, Default)]
pub struct Mirrors {
    /// Registry domain (as in references: `docker.io`) -> (mirrors, skip upstream).
    by_registry: HashMap<String, (Vec<Endpoint>, bool)>,
}

/// One host an image is asked at.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Source {
    /// The `source` label: the mirror as configured, or the registry's domain.
    pub name: String,
    /// `host[:port]` connected to (`registry-1.docker.io` for Docker Hub).
    pub host: String,
    /// The repository path on that host.
    pub path: String,
    /// For a mirror, the registry it stands in for (sent as `?ns=`).
    pub mirror_of: Option<String>,
    /// Credentials for that host and path, if any.
    pub credential: Option<Credential>,
}

/// Folds Docker Hub's other names into the domain references use.
fn registry_domain(text: &str) -> String {
    let lower = text.trim().to_ascii_lowercase();
    match lower.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        _ => lower,
    }
}

/// `host[:port][/prefix]` as a mirror, when it is one.
fn endpoint(text: &str) -> Option<Endpoint> {
    let name = text.trim().trim_end_matches('/').to_ascii_lowercase();
    if name.contains("://") || name.is_empty() {
        return None;
    }
    let (host, prefix) = name.split_once('/').unwrap_or((&name, ""));
    // The host must be what a reference calls a registry, and the prefix a repository
    // path; parsing `host/prefix/x` checks both at once.
    let probe = if prefix.is_empty() {
        format!("{host}/x")
    } else {
        format!("{host}/{prefix}/x")
    };
    let parsed = ImageRef::parse(&probe).ok()?;
    (parsed.domain == host).then(|| Endpoint {
        host: host.to_string(),
        prefix: prefix.to_string(),
        name: name.clone(),
    })
}

impl Mirrors {
    /// Validates `mirrors:`; each problem carries the location of the value at fault.
    pub fn parse(spec: &MirrorsSpec) -> Result<Mirrors, Vec<(Location, String)>> {
        let mut mirrors = Mirrors::default();
        let mut problems = Vec::new();
        for (registry, list) in &spec.0 {
            let domain = registry_domain(&registry.value);
            let valid = ImageRef::parse(&format!("{domain}/x")).is_ok_and(|r| r.domain == domain);
            if !valid {
                problems.push((
                    registry.referenced,
                    format!(
                        "mirrors: {:?} is not a registry host (write host or host:port, e.g. docker.io)",
                        registry.value
                    ),
                ));
                continue;
            }
            if list.endpoints.is_empty() {
                problems.push((
                    registry.referenced,
                    format!("mirrors: {:?} has no mirror hosts", registry.value),
                ));
                continue;
            }
            let mut endpoints = Vec::new();
            for e in &list.endpoints {
                match endpoint(&e.value) {
                    Some(ep) => endpoints.push(ep),
                    None => problems.push((
                        e.referenced,
                        format!(
                            "mirrors: {:?} is not a mirror host (write host[:port] with an optional path prefix, e.g. mirror.internal:5000 or harbor.local/dockerhub; list plain-HTTP hosts in plain_http_registries)",
                            e.value
                        ),
                    )),
                }
            }
            if mirrors.by_registry.contains_key(&domain) {
                problems.push((
                    registry.referenced,
                    format!("mirrors: {:?} is listed twice", registry.value),
                ));
            }
            mirrors
                .by_registry
                .insert(domain, (endpoints, list.skip_upstream));
        }
        if problems.is_empty() {
            Ok(mirrors)
        } else {
            Err(problems)
        }
    }

    /// Whether any mirror is configured (then image series carry a `source` label).
    pub fn is_empty(&self) -> bool {
        self.by_registry.is_empty()
    }

    /// Where `image` is asked, in order, each with the credential `credential_for` gives
    /// for that host and path.
    pub fn sources(
        &self,
        image: &ImageRef,
        credential_for: &dyn Fn(&ImageRef) -> Option<Credential>,
    ) -> Vec<Source> {
        let upstream = || Source {
            name: image.domain.clone(),
            host: image.registry_host().to_string(),
            path: image.path.clone(),
            mirror_of: None,
            credential: credential_for(image),
        };
        let Some((endpoints, skip_upstream)) =
            self.by_registry.get(&image.domain.to_ascii_lowercase())
        else {
            return vec![upstream()];
        };
        let mut sources: Vec<Source> = endpoints
            .iter()
            .map(|e| {
                let path = if e.prefix.is_empty() {
                    image.path.clone()
                } else {
                    format!("{}/{}", e.prefix, image.path)
                };
                let at_mirror = ImageRef {
                    domain: e.host.clone(),
                    path: path.clone(),
                    tag: None,
                    digest: None,
                };
                Source {
                    name: e.name.clone(),
                    host: e.host.clone(),
                    path,
                    mirror_of: Some(image.domain.clone()),
                    credential: credential_for(&at_mirror),
                }
            })
            .collect();
        if !skip_upstream {
            sources.push(upstream());
        }
        sources
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> MirrorsSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn both_forms_are_read() {
        let s = spec(
            "docker.io: [mirror.internal:5000]\nghcr.io: {endpoints: [a.local, b.local/ghcr], skip_upstream: true}\n",
        );
        assert_eq!(s.0.len(), 2);
        assert_eq!(s.0[0].1.endpoints[0].value, "mirror.internal:5000");
        assert!(!s.0[0].1.skip_upstream);
        assert!(s.0[1].1.skip_upstream);
        let e = serde_saphyr::from_str::<MirrorsSpec>("docker.io: {endpoint: [a]}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `endpoint`"), "{e}");
        assert!(serde_saphyr::from_str::<MirrorsSpec>("docker.io: 3\n").is_err());
    }

    #[test]
    fn sources_are_the_mirrors_in_order_then_the_registry() {
        let m = Mirrors::parse(&spec(
            "index.docker.io: [Mirror.Internal:5000, harbor.local/dockerhub/]\nghcr.io: {endpoints: [a.local], skip_upstream: true}\n",
        ))
        .unwrap();
        let none = |_: &ImageRef| None;
        let image = ImageRef::parse("nginx:1.25").unwrap();
        let sources = m.sources(&image, &none);
        let seen: Vec<(&str, &str, &str)> = sources
            .iter()
            .map(|s| (s.name.as_str(), s.host.as_str(), s.path.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "mirror.internal:5000",
                    "mirror.internal:5000",
                    "library/nginx"
                ),
                (
                    "harbor.local/dockerhub",
                    "harbor.local",
                    "dockerhub/library/nginx"
                ),
                ("docker.io", "registry-1.docker.io", "library/nginx"),
            ]
        );
        assert_eq!(sources[0].mirror_of.as_deref(), Some("docker.io"));
        assert_eq!(sources[2].mirror_of, None);
        let ghcr = m.sources(&ImageRef::parse("ghcr.io/acme/app").unwrap(), &none);
        assert_eq!(ghcr.len(), 1);
        assert_eq!(ghcr[0].host, "a.local");
        let other = m.sources(&ImageRef::parse("quay.io/x/y").unwrap(), &none);
        assert_eq!(other.len(), 1);
        assert_eq!(other[0].name, "quay.io");
    }

    #[test]
    fn bad_hosts_are_refused_where_written() {
        let problems = Mirrors::parse(&spec(
            "\"not a host\": [m.local]\ndocker.io: [\"https://m.local\", \"m.local/UPPER\"]\nghcr.io: []\n",
        ))
        .unwrap_err();
        let messages: Vec<&str> = problems.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(messages[0].contains("\"not a host\" is not a registry host"));
        assert!(messages[1].contains("\"https://m.local\" is not a mirror host"));
        assert!(messages[2].contains("\"ghcr.io\" has no mirror hosts"));
        assert_eq!(problems[1].0.line(), 2);
    }
}
