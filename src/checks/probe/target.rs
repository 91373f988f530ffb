//! A URL to probe: [`Target`] parses it once, keeps the label without credentials and
//! turns credentials in the userinfo into a Basic `Authorization` header.

use ureq::http::Uri;

use crate::net::http as client;

/// A URL to probe.
#[derive(Debug)]
pub struct Target {
    /// What is requested (credentials from the userinfo removed).
    pub(super) uri: Uri,
    /// The URL as labelled: without credentials.
    pub label: String,
    /// `Authorization` from the URL's userinfo, when basic_auth is not configured.
    pub(super) userinfo_auth: Option<String>,
}

impl Target {
    /// Parses a URL; credentials in the userinfo move to a Basic `Authorization` header.
    pub fn parse(text: &str) -> Result<Target, String> {
        let shown = client::redact_userinfo(text);
        let uri: Uri = text
            .parse()
            .map_err(|e| format!("invalid URL {shown:?}: {e}"))?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => return Err(format!("URL {shown:?} must start with http:// or https://")),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("URL {shown:?} has no host"))?;
        if authority.host().is_empty() {
            return Err(format!("URL {shown:?} has no host"));
        }
        // `:99999` parses, as no port at all: the probe would go to the default port.
        if !client::port_in_range(authority.as_str()) {
            return Err(format!("URL {shown:?} has a port outside 0-65535"));
        }
        let Some((userinfo, host_port)) = authority.as_str().rsplit_once('@') else {
            return Ok(Target {
                label: text.to_string(),
                uri,
                userinfo_auth: None,
            });
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let scheme = uri.scheme_str().unwrap_or("http");
        let clean = format!("{scheme}://{host_port}{path}");
        let uri: Uri = clean
            .parse()
            .map_err(|e| format!("invalid URL {shown:?}: {e}"))?;
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        Ok(Target {
            label: clean,
            uri,
            userinfo_auth: Some(client::basic_auth(&decode(user), &decode(password))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_stripped_from_labels_and_becomes_basic_auth() {
        let t = Target::parse("https://alice:s%3Acret@example.com:8443/health?x=1").unwrap();
        assert_eq!(t.label, "https://example.com:8443/health?x=1");
        assert_eq!(
            t.userinfo_auth.as_deref(),
            Some(client::basic_auth("alice", "s:cret").as_str())
        );
        let t = Target::parse("http://example.com").unwrap();
        assert_eq!(t.label, "http://example.com");
        assert!(t.userinfo_auth.is_none());
        for bad in [
            "ftp://x/",
            "example.com",
            "http://",
            "http:// x/",
            "",
            "http://h:99999/",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_url_that_is_refused_is_named_without_its_password() {
        for (bad, shown) in [
            ("http://bob:hunter2@[bad", "http://***@[bad"),
            ("ftp://bob:hunter2@h/", "ftp://***@h/"),
            ("http://bob:hun/ter2@h x/", "http://***@h x/"),
        ] {
            let e = Target::parse(bad).unwrap_err();
            assert!(!e.contains("hunter2") && !e.contains("ter2"), "{e}");
            assert!(e.contains(shown), "{e}");
        }
    }
}
