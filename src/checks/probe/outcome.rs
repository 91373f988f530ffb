//! What one probe found: [`ProbeResult`], and the [`Reason`] (the value of the `reason`
//! label) when it failed, with [`classify`] mapping transport errors to a reason.

use std::net::IpAddr;
use std::time::Duration;

use crate::net::http::{self as client, Phases, Stage, TlsFacts};

/// Declares the reasons once: variant, label value, what it means.
macro_rules! reasons {
    ($($variant:ident: $label:literal, $doc:literal;)*) => {
        /// Why a probe failed; the value of the `reason` label.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Reason {
            $(#[doc = $doc] $variant,)*
        }

        impl Reason {
            /// Every reason, in the order counters are kept and exported.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $label,)*
                }
            }
        }
    };
}

reasons! {
    Dns: "dns", "The name did not resolve, or has no address of the family asked for.";
    Connect: "connect", "No TCP connection.";
    Timeout: "timeout", "The timeout passed before the probe finished.";
    Tls: "tls", "The TLS handshake, certificate verification or TLS session failed.";
    Proxy: "proxy", "The proxy could not be reached or refused the tunnel.";
    StatusCode: "status_code", "The final status is not a valid one.";
    HttpVersion: "http_version", "The response's HTTP version is not in `valid_http_versions`.";
    HeaderRegex: "header_regex", "A header regular expression condition failed.";
    BodyRegex: "body_regex", "A body regular expression condition failed.";
    BodyTooLarge: "body_too_large", "The body is larger than `body_size_limit`.";
    Ssl: "ssl", "The final response came over TLS and `fail_if_ssl` is set.";
    NotSsl: "not_ssl", "The final response came over plain HTTP and `fail_if_not_ssl` is set.";
    Redirects: "redirects", "Too many redirects, or a redirect that could not be followed.";
    Io: "io", "Any other transfer error.";
}

impl Reason {
    /// Position in [`Reason::ALL`].
    pub fn index(self) -> usize {
        Reason::ALL
            .iter()
            .position(|r| *r == self)
            .unwrap_or(Reason::ALL.len() - 1)
    }
}

/// The outcome of one probe.
#[derive(Debug, Clone)]
pub struct ProbeResult {
    /// Why the probe failed; `None` when it met every condition.
    pub failure: Option<Reason>,
    /// The failure in words ("certificate expired at ...").
    pub cause: Option<String>,
    /// How long it took (until it failed).
    pub duration: Duration,
    /// Final status; 0 without a response.
    pub status: u16,
    /// Redirects followed.
    pub redirects: usize,
    /// Body bytes read, decoded.
    pub body_size: u64,
    /// Body bytes read as they came over the wire (compressed, without chunk framing).
    pub wire_size: u64,
    /// Earliest NotAfter (Unix seconds) of the chain the server presented.
    pub cert_not_after: Option<i64>,
    /// Time per phase, summed over redirects.
    pub phases: Phases,
    /// TLS facts of the final hop, when it spoke TLS.
    pub tls: Option<TlsFacts>,
    /// IP version (4 or 6) of the final connection.
    pub ip_protocol: Option<u8>,
    /// The address of the final connection (or the first one it was to try).
    pub ip_addr: Option<IpAddr>,
    /// Whether the final response came over TLS.
    pub over_tls: bool,
    /// `Content-Length` of the final response, when it had one.
    pub content_length: Option<u64>,
    /// HTTP version of the final response (`1.1`).
    pub http_version: Option<&'static str>,
    /// `Last-Modified` of the final response, as Unix seconds.
    pub last_modified: Option<i64>,
    /// The final response is a redirect that was not followed (`follow_redirects:
    /// false`, or one past the last redirect followed).
    pub unfollowed_redirect: bool,
}

impl ProbeResult {
    /// A probe that never started because the run ran out of time or was cancelled.
    pub fn not_run() -> ProbeResult {
        ProbeResult {
            failure: Some(Reason::Timeout),
            cause: Some("the run's time was up before this URL was probed".into()),
            duration: Duration::ZERO,
            status: 0,
            redirects: 0,
            body_size: 0,
            wire_size: 0,
            cert_not_after: None,
            phases: Phases::default(),
            tls: None,
            ip_protocol: None,
            ip_addr: None,
            over_tls: false,
            content_length: None,
            http_version: None,
            last_modified: None,
            unfollowed_redirect: false,
        }
    }

    pub(super) fn fail(&mut self, reason: Reason, cause: String) {
        self.failure = Some(reason);
        self.cause = Some(cause);
    }
}

/// Maps a transport error to a failure reason: the stage the connection steps noted
/// first, then what ureq says.
pub(super) fn classify(e: &ureq::Error, trace: &client::Trace) -> Reason {
    if let Some(f) = &trace.failure {
        return match f.stage {
            Stage::Dns => Reason::Dns,
            Stage::Connect => Reason::Connect,
            Stage::Proxy => Reason::Proxy,
            Stage::Tls => Reason::Tls,
            Stage::Timeout => Reason::Timeout,
        };
    }
    match e {
        ureq::Error::Timeout(_) => Reason::Timeout,
        ureq::Error::Io(io) if client::is_timeout(io) => Reason::Timeout,
        ureq::Error::HostNotFound => Reason::Dns,
        ureq::Error::TooManyRedirects | ureq::Error::RedirectFailed => Reason::Redirects,
        ureq::Error::BodyExceedsLimit(_) => Reason::BodyTooLarge,
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => Reason::Tls,
        ureq::Error::ConnectProxyFailed(_) => Reason::Proxy,
        ureq::Error::Io(_) | ureq::Error::ConnectionFailed if !trace.connected => Reason::Connect,
        _ => Reason::Io,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_have_stable_positions() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        assert_eq!(Reason::BodyTooLarge.as_str(), "body_too_large");
        assert_eq!(Reason::ALL.len(), 14);
    }
}
