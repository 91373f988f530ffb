//! Flags -> [`Settings`]: the validated form of the command line.
//!
//! `cli.rs` only splits the command line; this file checks every value (listen address,
//! telemetry path, durations, log level, the Pushgateway URL, the lifecycle switch, the
//! `/probe` pool) and is the only place that turns raw flags into what the rest of sonde
//! runs with.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::RawArgs;
use crate::shard::Shard;
use crate::units::parse_duration;
use crate::web::routes::RESERVED_PATHS;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:10060";

/// Probes `/probe` runs at once without `--probe.concurrency`.
pub const DEFAULT_PROBE_CONCURRENCY: usize = 64;

/// Log verbosity.
pub type LogLevel = log::LevelFilter;

/// Everything sonde needs to start, from flags and the config file.
#[derive(Debug)]
pub struct Settings {
    /// Where the config came from; `None` for the built-in default.
    pub config_file: Option<PathBuf>,
    /// Addresses to try binding, in order (`:PORT` tries `[::]` then `0.0.0.0`).
    pub listen: Vec<SocketAddr>,
    /// The listen address as the user wrote it (for messages).
    pub listen_text: String,
    /// Path that serves the metrics.
    pub telemetry_path: String,
    /// `--check-interval`
    pub check_interval: Option<Duration>,
    /// `--ignored-images`, split on commas (empty entries dropped)
    pub ignored_images: Vec<String>,
    /// `--log.level`
    pub log_level: LogLevel,
    /// `--config.check`
    pub config_check: bool,
    /// `--once`
    pub once: bool,
    /// `--web.config.file`
    pub web_config_file: Option<PathBuf>,
    /// `--web.enable-lifecycle`: whether `POST /-/reload` works.
    pub enable_lifecycle: bool,
    /// `--push.gateway`, validated to be an http(s) URL.
    pub push_gateway: Option<String>,
    /// `--shard`: which part of the targets this replica checks.
    pub shard: Shard,
    /// `--blackbox.config.file`
    pub blackbox_config_file: Option<PathBuf>,
    /// `--probe.concurrency`, 1 to 4096.
    pub probe_concurrency: usize,
}

/// Validates the flags (not the config file); the first bad one is the error.
pub fn settings_from_args(raw: RawArgs) -> Result<Settings, String> {
    let listen_text = raw
        .listen_address
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let listen = parse_listen_address(&listen_text)?;
    let telemetry_path = telemetry_path(raw.telemetry_path)?;
    let check_interval = check_interval(raw.check_interval.as_deref())?;
    let ignored_images = ignored_images(raw.ignored_images.as_deref());
    let log_level = log_level(raw.log_level.as_deref())?;
    if let Some(url) = &raw.push_gateway {
        check_push_gateway(url, raw.once)?;
    }
    let shard = match &raw.shard {
        None => Shard::WHOLE,
        Some(text) => Shard::parse(text, crate::push::hostname)?,
    };
    let probe_concurrency = probe_concurrency(raw.probe_concurrency.as_deref())?;
    Ok(Settings {
        config_file: raw.config_file,
        listen,
        listen_text,
        telemetry_path,
        check_interval,
        ignored_images,
        log_level,
        config_check: raw.config_check,
        once: raw.once,
        web_config_file: raw.web_config_file,
        enable_lifecycle: raw.enable_lifecycle,
        push_gateway: raw.push_gateway,
        shard,
        blackbox_config_file: raw.blackbox_config_file,
        probe_concurrency,
    })
}

/// `--web.telemetry-path`: a path of its own, `/metrics` by default.
fn telemetry_path(flag: Option<String>) -> Result<String, String> {
    let path = flag.unwrap_or_else(|| "/metrics".to_string());
    if !path.starts_with('/') || path.len() < 2 {
        return Err(format!(
            "--web.telemetry-path {path:?} must start with / and name a path"
        ));
    }
    if RESERVED_PATHS.contains(&path.as_str()) {
        return Err(format!(
            "--web.telemetry-path {path:?} is already an endpoint of sonde"
        ));
    }
    Ok(path)
}

/// `--check-interval`: a duration greater than 0, when given.
fn check_interval(flag: Option<&str>) -> Result<Option<Duration>, String> {
    let Some(text) = flag else {
        return Ok(None);
    };
    let d = parse_duration(text).map_err(|e| format!("--check-interval: {e}"))?;
    if d.is_zero() {
        return Err("--check-interval must be greater than 0".into());
    }
    Ok(Some(d))
}

/// `--ignored-images`: a comma-separated list, blanks dropped.
fn ignored_images(flag: Option<&str>) -> Vec<String> {
    flag.unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `--log.level`, `info` by default.
fn log_level(flag: Option<&str>) -> Result<LogLevel, String> {
    match flag.unwrap_or("info") {
        "error" => Ok(LogLevel::Error),
        "warn" => Ok(LogLevel::Warn),
        "info" => Ok(LogLevel::Info),
        "debug" => Ok(LogLevel::Debug),
        "trace" => Ok(LogLevel::Trace),
        other => Err(format!(
            "--log.level {other:?}: use one of error, warn, info, debug, trace"
        )),
    }
}

/// `--push.gateway`: an http(s) URL, and only with `--once`.
fn check_push_gateway(url: &str, once: bool) -> Result<(), String> {
    if !once {
        return Err("--push.gateway works with --once only".into());
    }
    let valid = url
        .parse::<ureq::http::Uri>()
        .ok()
        .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
        // `:99999` parses, as no port at all: it would go to port 80.
        .filter(|u| {
            u.authority()
                .is_some_and(|a| crate::net::http::port_in_range(a.as_str()))
        });
    if valid.is_none() {
        return Err(format!(
            "--push.gateway {:?} is not an http:// or https:// URL",
            crate::net::http::redact_userinfo(url)
        ));
    }
    Ok(())
}

/// `--probe.concurrency`: 1 to 4096.
fn probe_concurrency(flag: Option<&str>) -> Result<usize, String> {
    let Some(text) = flag else {
        return Ok(DEFAULT_PROBE_CONCURRENCY);
    };
    match text.parse::<usize>() {
        Ok(n) if (1..=4096).contains(&n) => Ok(n),
        _ => Err(format!(
            "--probe.concurrency {text:?}: use a number from 1 to 4096"
        )),
    }
}

/// Parses `HOST:PORT`, `[v6]:PORT` or Go-style `:PORT` into addresses to try.
pub fn parse_listen_address(text: &str) -> Result<Vec<SocketAddr>, String> {
    let bad = |why: &str| format!("--web.listen-address {text:?}: {why}");
    if let Some(port) = text.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| bad("the port must be 0-65535"))?;
        return Ok(vec![
            SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)),
            SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, port)),
        ]);
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(bad("expected HOST:PORT, [IPv6]:PORT or :PORT"));
    };
    let port: u16 = port.parse().map_err(|_| bad("the port must be 0-65535"))?;
    if host.is_empty() || host.contains(':') {
        return Err(bad("write IPv6 addresses in brackets, e.g. [::1]:10060"));
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| bad(&format!("cannot resolve {host:?}: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(bad(&format!("{host:?} has no address")));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen_address("127.0.0.1:80").unwrap(),
            vec!["127.0.0.1:80".parse().unwrap()]
        );
        assert_eq!(
            parse_listen_address("[::1]:80").unwrap(),
            vec!["[::1]:80".parse().unwrap()]
        );
        assert_eq!(parse_listen_address(":80").unwrap().len(), 2);
        assert!(parse_listen_address("localhost:80").is_ok());
        for bad in ["80", ":x", "::1:80", "host:99999", ""] {
            assert!(parse_listen_address(bad).is_err(), "{bad:?}");
        }
    }
}
