//! Which proxy a connection goes through: `proxy_url` (minus the hosts of `no_proxy`),
//! or, with `proxy_from_environment: true`, `HTTPS_PROXY` for https targets and
//! `HTTP_PROXY` for http ones, minus `NO_PROXY`.
//!
//! The environment is read the way Go's `httpproxy` (and so blackbox_exporter and
//! Prometheus) reads it: upper-case names first, a proxy without a scheme is http://,
//! `localhost` and loopback addresses never go through an environment proxy, and
//! `NO_PROXY` entries are `*`, IP addresses, CIDR ranges or domain names (which also
//! match their subdomains; a leading `.` matches subdomains only), each with an
//! optional `:port`. Only http:// proxies are spoken to. A proxy's credentials (its
//! URL's userinfo or `proxy_password_file`) are sent as `Proxy-Authorization: Basic`
//! and never appear in a message: proxies are named `http://host:port`.

use std::net::IpAddr;
use std::path::Path;

use serde_saphyr::Location;
use ureq::http::Uri;

use super::{ConnectionKeys, UrlText, basic_auth};
use crate::net::secret::{self, Reread, Secret};
use crate::problem::Spanned;

/// A proxy to connect through.
#[derive(Debug)]
pub(super) struct Proxy {
    /// Host name or IP (no brackets).
    pub host: String,
    pub port: u16,
    user: Option<String>,
    password: Password,
}

#[derive(Debug)]
enum Password {
    None,
    Inline(Secret),
    File(Reread<Secret>),
}

impl Proxy {
    /// Parses `http://[user[:password]@]host[:port][/]`; a missing scheme means http.
    fn parse(text: &str) -> Result<Proxy, String> {
        let named = super::redact_userinfo(text);
        let full = if text.contains("://") {
            text.to_string()
        } else {
            format!("http://{text}")
        };
        let uri: Uri = full
            .parse()
            .map_err(|_| format!("{named:?} is not a valid proxy URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "{named:?}: only http:// proxies are supported, not {other}://"
                ));
            }
            None => return Err(format!("{named:?} is not a valid proxy URL")),
        }
        if uri
            .path_and_query()
            .is_some_and(|p| !matches!(p.as_str(), "" | "/"))
        {
            return Err(format!("{named:?}: a proxy URL has no path"));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{named:?} has no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if host.is_empty() {
            return Err(format!("{named:?} has no host"));
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| format!("{named:?}: the user or password is not UTF-8"))
        };
        let (user, password) = match authority.as_str().rsplit_once('@') {
            None => (None, Password::None),
            Some((info, _)) => match info.split_once(':') {
                Some((u, p)) => (Some(decode(u)?), Password::Inline(Secret::new(decode(p)?))),
                None => (Some(decode(info)?), Password::None),
            },
        };
        Ok(Proxy {
            host,
            port: authority.port_u16().unwrap_or(80),
            user,
            password,
        })
    }

    /// `http://host:port`, for messages.
    pub fn name(&self) -> String {
        format!("http://{}", self.authority())
    }

    /// `host:port` (an IPv6 address in brackets).
    pub fn authority(&self) -> String {
        authority(&self.host, self.port)
    }

    /// The `Proxy-Authorization` value, the password file re-read now.
    pub fn authorization(&self, check: &str) -> Option<String> {
        let user = self.user.as_deref()?;
        let password = match &self.password {
            Password::None => String::new(),
            Password::Inline(p) => p.expose().to_string(),
            Password::File(file) => file.get(check).expose().to_string(),
        };
        Some(basic_auth(user, &password))
    }
}

/// `host:port` with an IPv6 address in brackets.
pub(super) fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The host and port a URI connects to (host lower-case, without brackets).
pub(super) fn host_port(uri: &Uri) -> Option<(String, u16)> {
    let host = uri
        .host()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port = uri.port_u16().or(match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    })?;
    Some((host, port))
}

/// Where the connections of an agent go.
#[derive(Debug, Default)]
pub(super) struct Route {
    explicit: Option<Proxy>,
    env_http: Option<Proxy>,
    env_https: Option<Proxy>,
    /// From the environment: localhost and loopback addresses go direct.
    from_env: bool,
    no_proxy: NoProxy,
    /// The check's name, for warnings about the password file.
    check: String,
}

impl Route {
    /// Validates the proxy keys; problems carry the location of their key.
    pub(super) fn load(
        keys: &ConnectionKeys,
        base: &Path,
        check: &str,
        problems: &mut Vec<(Location, String)>,
    ) -> Option<Route> {
        let mut route = Route {
            check: check.to_string(),
            ..Route::default()
        };
        let from_env = keys.proxy_from_environment.as_ref().filter(|f| f.value);
        if let (Some(_), Some(env)) = (&keys.proxy_url, from_env) {
            problems.push((
                env.referenced,
                "proxy_from_environment and proxy_url cannot both be set".into(),
            ));
            return None;
        }
        if let Some(url) = &keys.proxy_url {
            route.explicit = Some(explicit(url, keys, base, problems)?);
            if let Some(list) = &keys.no_proxy {
                route.no_proxy = NoProxy::parse(&list.value);
            }
            return Some(route);
        }
        if let Some(file) = &keys.proxy_password_file {
            problems.push((
                file.referenced,
                "proxy_password_file needs proxy_url".into(),
            ));
        }
        if let Some(list) = &keys.no_proxy {
            problems.push((
                list.referenced,
                "no_proxy needs proxy_url (with proxy_from_environment, NO_PROXY applies)".into(),
            ));
        }
        if let Some(env) = from_env {
            let mut proxy_from = |names: [&'static str; 2]| {
                let (name, value) = env_var(names)?;
                Proxy::parse(&value)
                    .map_err(|e| problems.push((env.referenced, format!("{name} {e}"))))
                    .ok()
            };
            route.env_https = proxy_from(["HTTPS_PROXY", "https_proxy"]);
            route.env_http = proxy_from(["HTTP_PROXY", "http_proxy"]);
            route.no_proxy = env_var(["NO_PROXY", "no_proxy"])
                .map(|(_, v)| NoProxy::parse(&v))
                .unwrap_or_default();
            route.from_env = true;
        }
        Some(route)
    }

    /// The proxy a connection to `uri` goes through, if any.
    pub(super) fn proxy_for(&self, uri: &Uri) -> Option<&Proxy> {
        let (host, port) = host_port(uri)?;
        let proxy = if let Some(p) = &self.explicit {
            p
        } else if self.from_env {
            let loopback = host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if host == "localhost" || loopback {
                return None;
            }
            match uri.scheme_str() {
                Some("https") => self.env_https.as_ref()?,
                _ => self.env_http.as_ref()?,
            }
        } else {
            return None;
        };
        (!self.no_proxy.matches(&host, port)).then_some(proxy)
    }

    /// The check whose proxy this is, for warnings.
    pub(super) fn check(&self) -> &str {
        &self.check
    }
}

/// `proxy_url` with its password from the URL or `proxy_password_file`.
fn explicit(
    url: &Spanned<UrlText>,
    keys: &ConnectionKeys,
    base: &Path,
    problems: &mut Vec<(Location, String)>,
) -> Option<Proxy> {
    let mut proxy = Proxy::parse(&url.value.0)
        .map_err(|e| problems.push((url.referenced, format!("proxy_url {e}"))))
        .ok()?;
    let Some(file) = &keys.proxy_password_file else {
        return Some(proxy);
    };
    match (&proxy.user, &proxy.password) {
        (None, _) => problems.push((
            file.referenced,
            "proxy_password_file needs a user name in proxy_url (http://user@host:port)".into(),
        )),
        (Some(_), Password::Inline(_)) => problems.push((
            file.referenced,
            "proxy_url has a password already; remove it or proxy_password_file".into(),
        )),
        _ => match secret::secret_file(base.join(&file.value), "proxy password file") {
            Ok(secret) => proxy.password = Password::File(secret),
            Err(e) => problems.push((file.referenced, format!("cannot read the secret file {e}"))),
        },
    }
    Some(proxy)
}

/// The first of `names` set (and not empty) in the environment, with its value.
fn env_var(names: [&'static str; 2]) -> Option<(&'static str, String)> {
    names.into_iter().find_map(|n| {
        std::env::var(n)
            .ok()
            .filter(|v| !v.is_empty())
            .map(|v| (n, v))
    })
}

/// A `NO_PROXY` list.
#[derive(Debug, Default, PartialEq)]
pub(super) struct NoProxy {
    all: bool,
    entries: Vec<Entry>,
}

#[derive(Debug, PartialEq)]
enum Entry {
    Cidr(IpAddr, u8),
    Ip(IpAddr, Option<u16>),
    /// `.example.com`; `exact` also matches `example.com` itself.
    Domain {
        suffix: String,
        exact: bool,
        port: Option<u16>,
    },
}

impl NoProxy {
    /// Parses a comma-separated list; entries that are nothing known are ignored, as
    /// Go ignores them.
    pub(super) fn parse(text: &str) -> NoProxy {
        let mut list = NoProxy::default();
        for raw in text.split(',') {
            let entry = raw.trim().to_ascii_lowercase();
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                list.all = true;
                continue;
            }
            if let Some((ip, bits)) = entry.split_once('/') {
                if let (Ok(ip), Ok(bits)) = (ip.parse::<IpAddr>(), bits.parse::<u8>()) {
                    let max = if ip.is_ipv4() { 32 } else { 128 };
                    if bits <= max {
                        list.entries.push(Entry::Cidr(ip, bits));
                    }
                }
                continue;
            }
            let (host, port) = split_port(&entry);
            if let Ok(ip) = host.parse::<IpAddr>() {
                list.entries.push(Entry::Ip(ip, port));
                continue;
            }
            let host = host.strip_prefix('*').unwrap_or(host);
            let (suffix, exact) = match host.strip_prefix('.') {
                Some(_) => (host.to_string(), false),
                None => (format!(".{host}"), true),
            };
            if suffix.len() > 1 {
                list.entries.push(Entry::Domain {
                    suffix,
                    exact,
                    port,
                });
            }
        }
        list
    }

    /// Whether a connection to `host:port` must not use the proxy.
    pub(super) fn matches(&self, host: &str, port: u16) -> bool {
        if self.all {
            return true;
        }
        let ip = host.parse::<IpAddr>().ok();
        self.entries.iter().any(|e| match e {
            Entry::Cidr(net, bits) => ip.is_some_and(|ip| in_cidr(ip, *net, *bits)),
            Entry::Ip(want, p) => ip == Some(*want) && p.is_none_or(|p| p == port),
            Entry::Domain {
                suffix,
                exact,
                port: p,
            } => {
                (host.ends_with(suffix.as_str()) || (*exact && host == &suffix[1..]))
                    && p.is_none_or(|p| p == port)
            }
        })
    }
}

/// `host:port`, `[v6]:port`, `v6` or `host` -> (host, port).
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (entry, None),
        };
    }
    match entry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(p) => (host, Some(p)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_matches_as_go_does() {
        let list = NoProxy::parse(
            " Example.com, .internal ,10.0.0.0/8, 192.168.1.5, api.test:8443, [::1]:9000, *.wild.test",
        );
        assert!(list.matches("example.com", 80));
        assert!(list.matches("www.example.com", 443));
        assert!(!list.matches("notexample.com", 80));
        assert!(list.matches("a.internal", 80));
        assert!(!list.matches("internal", 80));
        assert!(list.matches("10.1.2.3", 80));
        assert!(!list.matches("11.1.2.3", 80));
        assert!(list.matches("192.168.1.5", 1));
        assert!(list.matches("api.test", 8443));
        assert!(!list.matches("api.test", 443));
        assert!(list.matches("::1", 9000));
        assert!(!list.matches("::1", 9001));
        assert!(list.matches("x.wild.test", 80));
        assert!(!list.matches("wild.test", 80));
        assert!(NoProxy::parse("*").matches("anything", 1));
        assert!(!NoProxy::parse("").matches("anything", 1));
    }

    #[test]
    fn proxy_urls_are_parsed_and_named_without_credentials() {
        let p = Proxy::parse("http://al%40ce:s3cret@Proxy.local:3128/").unwrap();
        assert_eq!(p.name(), "http://proxy.local:3128");
        assert_eq!(p.user.as_deref(), Some("al@ce"));
        assert_eq!(p.authorization("c"), Some(basic_auth("al@ce", "s3cret")));
        let p = Proxy::parse("[::1]:8080").unwrap();
        assert_eq!(p.name(), "http://[::1]:8080");
        assert_eq!(Proxy::parse("proxy").unwrap().port, 80);
        let e = Proxy::parse("https://u:s3cret@proxy:443").unwrap_err();
        assert!(e.contains("only http://") && !e.contains("s3cret"), "{e}");
        let e = Proxy::parse("socks5://proxy:1080").unwrap_err();
        assert!(e.contains("socks5://"), "{e}");
        assert!(Proxy::parse("http://proxy:3128/path").is_err());
    }
}
