//! `--once --push.gateway URL`: PUT the exposition to a Pushgateway, replacing the
//! group `job="sonde", instance=<hostname>`.

use std::time::Duration;

use crate::net::http::{self as client, AgentOptions, TlsSettings};

/// How long a push may take.
const PUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// Pushes `text` to the gateway; the error names the URL and what went wrong.
pub fn push(gateway: &str, text: &str) -> Result<(), String> {
    let instance = hostname().unwrap_or_else(|| "unknown".to_string());
    let url = format!(
        "{}/metrics/job/sonde/instance/{}",
        gateway.trim_end_matches('/'),
        client::percent_encode(&instance)
    );
    // The gateway's credentials live in its URL's userinfo: messages never show them.
    let shown = client::redact_userinfo(&url);
    let agent = client::agent(&TlsSettings::webpki(), &AgentOptions::default())?;
    let request = ureq::http::Request::put(&url)
        .header("Content-Type", "text/plain; version=0.0.4")
        .body(text.as_bytes())
        .map_err(|e| format!("push to {shown}: {e}"))?;
    let exchange = client::send(&agent, request, PUSH_TIMEOUT);
    let mut response = exchange
        .response
        .map_err(|e| format!("push to {}", client::describe(&e, &exchange.trace, &shown)))?;
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let body = response
        .body_mut()
        .with_config()
        .limit(4096)
        .read_to_string()
        .unwrap_or_default();
    Err(format!(
        "push to {shown} failed with status {status}: {}",
        body.trim()
    ))
}

/// This machine's host name.
pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_encoded_for_the_path_and_the_host_has_a_name() {
        assert_eq!(client::percent_encode("web-01.example"), "web-01.example");
        assert_eq!(client::percent_encode("a/b c"), "a%2Fb%20c");
        assert!(hostname().is_some());
    }
}
