//! Container image references, parsed and normalised the way Docker does it.
//!
//! The grammar is the one of `distribution/reference` (`reference.go`, `normalize.go`):
//! `name[:tag][@digest]`, where the first path component of `name` is a registry host
//! when it is `localhost`, contains `.` or `:`, or has upper-case letters; otherwise
//! the image lives on Docker Hub (`docker.io`), where a single-component name gets the
//! implicit `library/` namespace. `nginx` is therefore `docker.io/library/nginx:latest`.
//! A tag plus a digest checks the digest, as `ParseDockerRef` does. Nothing here panics
//! on any input: a bad reference is an `Err` with a reason a user can act on.

use std::fmt;

/// Docker Hub's canonical domain in references.
pub const DOCKER_HUB: &str = "docker.io";
/// Longest `domain/path` allowed (`NameTotalLengthMax`).
const MAX_NAME_LENGTH: usize = 255;
/// Longest tag allowed.
const MAX_TAG_LENGTH: usize = 128;

/// A parsed and normalised image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    /// Registry host as written, with port (`docker.io`, `ghcr.io`, `localhost:5000`).
    pub domain: String,
    /// Repository path inside the registry (`library/nginx`, `acme/app`).
    pub path: String,
    /// The tag, when one was written (`latest` is implied only when there is no digest).
    pub tag: Option<String>,
    /// The digest (`sha256:…`), when one was written.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses a reference as Docker does; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<ImageRef, String> {
        if text.is_empty() {
            return Err("the reference is empty".into());
        }
        if text.len() > 4096 {
            return Err("the reference is longer than 4096 characters".into());
        }
        if let Some(c) = text
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || !c.is_ascii())
        {
            return Err(format!("the reference contains the character {c:?}"));
        }
        if text.len() == 64
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(format!(
                "{text:?} is a 64-character hexadecimal image ID, not a reference"
            ));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => {
                validate_digest(digest)?;
                (rest, Some(digest.to_string()))
            }
            None => (text, None),
        };
        // A tag is what follows the last ':' after the last '/'; a ':' before that is a
        // registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                let tag = &rest[at + 1..];
                validate_tag(tag)?;
                (&rest[..at], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err("the reference has no repository name".into());
        }
        let (domain, path) = split_domain(name);
        validate_domain(&domain)?;
        validate_path(&path)?;
        let total = domain.len() + 1 + path.len();
        if total > MAX_NAME_LENGTH {
            return Err(format!(
                "the repository name is {total} characters long; at most {MAX_NAME_LENGTH} are allowed"
            ));
        }
        Ok(ImageRef {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// What is asked for in `/v2/<name>/manifests/<reference>`: the digest when there
    /// is one, else the tag, else `latest`.
    pub fn reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The image that is really checked: the digest alone when there is one, else the
    /// tag (`latest` filled in). Two references with equal `checked()` are one check.
    pub fn checked(&self) -> ImageRef {
        ImageRef {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: match &self.digest {
                Some(_) => None,
                None => Some(self.tag.clone().unwrap_or_else(|| "latest".into())),
            },
            digest: self.digest.clone(),
        }
    }

    /// Whether the image is on Docker Hub.
    pub fn is_docker_hub(&self) -> bool {
        self.domain == DOCKER_HUB
    }

    /// The host sonde connects to: Docker Hub's API lives on `registry-1.docker.io`.
    pub fn registry_host(&self) -> &str {
        if self.is_docker_hub() {
            "registry-1.docker.io"
        } else {
            &self.domain
        }
    }
}

impl fmt::Display for ImageRef {
    /// The fully written form: `domain/path[:tag][@digest]`, `latest` filled in when
    /// there is neither tag nor digest.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        match (&self.tag, &self.digest) {
            (Some(t), Some(d)) => write!(f, ":{t}@{d}"),
            (Some(t), None) => write!(f, ":{t}"),
            (None, Some(d)) => write!(f, "@{d}"),
            (None, None) => f.write_str(":latest"),
        }
    }
}

/// Splits `name` into (domain, path) as `splitDockerDomain` does.
fn split_domain(name: &str) -> (String, String) {
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        DOCKER_HUB.to_string()
    } else {
        domain
    };
    let path = if domain == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    (domain, path)
}

/// `host[:port]`, host a DNS name, an IPv4 address or `[IPv6]`.
fn validate_domain(domain: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("invalid registry host {domain:?}: {why}"));
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return bad("an IPv6 address needs a closing ]");
        };
        if v6.is_empty() || !v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return bad("not an IPv6 address");
        }
        match after {
            "" => (v6, None),
            p => match p.strip_prefix(':') {
                Some(port) => (v6, Some(port)),
                None => return bad("unexpected text after the IPv6 address"),
            },
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return bad("the port must be a number");
    }
    if domain.starts_with('[') {
        return Ok(());
    }
    if host.is_empty() {
        return bad("the host is empty");
    }
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return bad("use letters, digits, - and . only");
        }
    }
    Ok(())
}

/// Path components `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, separated by `/`.
fn validate_path(path: &str) -> Result<(), String> {
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "invalid repository name {path:?}: repository names must be lowercase"
        ));
    }
    for component in path.split('/') {
        if !valid_path_component(component) {
            return Err(format!(
                "invalid repository name {path:?}: each /-separated part must be lowercase letters and digits joined by ., _, __ or -"
            ));
        }
    }
    Ok(())
}

fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator run: one '.', one '_', "__", or any number of '-'.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`
fn validate_tag(tag: &str) -> Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_TAG_LENGTH
        && word(bytes[0])
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid tag {tag:?}: use at most {MAX_TAG_LENGTH} letters, digits, _, . and -, not starting with . or -"
        ))
    }
}

/// `algorithm:hex`, with the lengths of the algorithms registries know.
fn validate_digest(digest: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("invalid digest {digest:?}: {why}"));
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return bad("expected algorithm:hex, e.g. sha256:<64 hex digits>");
    };
    let alg_ok = !algorithm.is_empty()
        && algorithm.split(['+', '.', '_', '-']).all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if !alg_ok {
        return bad("the algorithm must be lowercase letters and digits");
    }
    if hex.len() < 32
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return bad("expected at least 32 lowercase hex digits");
    }
    match (algorithm, hex.len()) {
        ("sha256", 64) | ("sha384", 96) | ("sha512", 128) => Ok(()),
        ("sha256", _) => bad("sha256 needs 64 hex digits"),
        ("sha384", _) => bad("sha384 needs 96 hex digits"),
        ("sha512", _) => bad("sha512 needs 128 hex digits"),
        _ => bad("unknown algorithm (use sha256, sha384 or sha512)"),
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn key(text: &str) -> String {
        ImageRef::parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .checked()
            .to_string()
    }

    #[test]
    fn docker_hub_names_are_normalised() {
        assert_eq!(key("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(key("nginx:1.25"), "docker.io/library/nginx:1.25");
        assert_eq!(key("acme/app:v1"), "docker.io/acme/app:v1");
        assert_eq!(key("docker.io/nginx"), "docker.io/library/nginx:latest");
        assert_eq!(
            key("index.docker.io/nginx"),
            "docker.io/library/nginx:latest"
        );
        assert_eq!(
            key("docker.io/library/nginx:1"),
            "docker.io/library/nginx:1"
        );
        let r = ImageRef::parse("nginx").unwrap();
        assert_eq!(r.registry_host(), "registry-1.docker.io");
        assert_eq!(r.path, "library/nginx");
        assert_eq!(r.reference(), "latest");
        assert_eq!(r.to_string(), "docker.io/library/nginx:latest");
    }

    #[test]
    fn registry_hosts_are_detected() {
        for (text, domain, path) in [
            ("ghcr.io/acme/app:v1", "ghcr.io", "acme/app"),
            ("localhost/app", "localhost", "app"),
            ("localhost:5000/team/svc", "localhost:5000", "team/svc"),
            (
                "registry.local:5000/a/b/c:1",
                "registry.local:5000",
                "a/b/c",
            ),
            ("127.0.0.1:5000/app", "127.0.0.1:5000", "app"),
            ("[::1]:5000/app", "[::1]:5000", "app"),
            ("Registry/app", "Registry", "app"),
            ("quay.io/app", "quay.io", "app"),
        ] {
            let r = ImageRef::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                (r.domain.as_str(), r.path.as_str()),
                (domain, path),
                "{text}"
            );
            assert_eq!(r.registry_host(), domain);
        }
        // "library/" is only implied on Docker Hub.
        assert_eq!(key("quay.io/app"), "quay.io/app:latest");
        // A first component without . or : is a Docker Hub namespace.
        assert_eq!(key("team/app"), "docker.io/team/app:latest");
    }

    #[test]
    fn a_digest_wins_over_a_tag() {
        let r = ImageRef::parse(&format!("nginx:1.25@{D}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("1.25"));
        assert_eq!(r.reference(), D);
        assert_eq!(
            r.checked().to_string(),
            format!("docker.io/library/nginx@{D}")
        );
        assert_eq!(key(&format!("nginx@{D}")), r.checked().to_string());
        assert_eq!(
            ImageRef::parse(&format!("nginx@{D}")).unwrap().checked(),
            r.checked()
        );
        assert_eq!(
            key(&format!("registry.local:5000/team/svc@{D}")),
            format!("registry.local:5000/team/svc@{D}")
        );
    }

    #[test]
    fn bad_references_are_errors_with_reasons() {
        for (text, why) in [
            ("", "empty"),
            ("Nginx", "lowercase"),
            ("acme/App", "lowercase"),
            ("nginx:", "invalid tag"),
            ("nginx:-x", "invalid tag"),
            ("nginx:a/b", "port must be a number"),
            ("nginx@sha256:abc", "lowercase hex"),
            (
                "nginx@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
                "hex",
            ),
            (
                "nginx@md5:0123456789abcdef0123456789abcdef",
                "unknown algorithm",
            ),
            ("nginx@", "algorithm:hex"),
            ("nginx @x", "character"),
            ("ngi--nx_-x", "lowercase letters"),
            ("-nginx", "lowercase letters"),
            ("a//b", "lowercase letters"),
            ("host:port/app", "port must be a number"),
            ("bad_host.io/app", "letters, digits"),
            ("[::1/app", "closing"),
            (":tag", "no repository"),
            (
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "image ID",
            ),
            ("ngïnx", "character"),
        ] {
            let e = ImageRef::parse(text).expect_err(text);
            assert!(e.contains(why), "{text:?}: {e}");
        }
        let long_tag = format!("nginx:{}", "a".repeat(129));
        assert!(ImageRef::parse(&long_tag).is_err());
        assert!(ImageRef::parse(&format!("nginx:{}", "a".repeat(128))).is_ok());
    }

    #[test]
    fn the_whole_name_is_at_most_255_characters() {
        // "docker.io/" + "library/" + n
        let ok = "a".repeat(255 - "docker.io/library/".len());
        assert!(ImageRef::parse(&ok).is_ok());
        let e = ImageRef::parse(&format!("{ok}b")).unwrap_err();
        assert!(e.contains("256 characters"), "{e}");
    }

    #[test]
    fn separators_follow_the_grammar() {
        for good in ["a.b", "a_b", "a__b", "a-b", "a---b", "a.b-c_d", "a1/b2/c3"] {
            assert!(ImageRef::parse(good).is_ok(), "{good}");
        }
        for bad in ["a..b", "a___b", "a._b", "a-.b", "a.", "_a"] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let mut seed = 0x9e37_79b9u32;
        let alphabet = b"aZ09:/@._-[]sha256 \x00\xff";
        for len in 0..200 {
            let s: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    alphabet[seed as usize % alphabet.len()]
                })
                .collect();
            let _ = ImageRef::parse(&String::from_utf8_lossy(&s));
        }
    }
}
