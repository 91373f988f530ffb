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

/// Validates the flags (not the config file).
pub fn settings_from_args(raw: RawArgs) -> Result<Settings, String> {
    let listen_text = raw
        .listen_address
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let listen = parse_listen_address(&listen_text)?;
    let telemetry_path = raw.telemetry_path.unwrap_or_else(|| "/metrics".to_string());
    if !telemetry_path.starts_with('/') || telemetry_path.len() < 2 {
        return Err(format!(
            "--web.telemetry-path {telemetry_path:?} must start with / and name a path"
        ));
    }
    if RESERVED_PATHS.contains(&telemetry_path.as_str()) {
        return Err(format!(
            "--web.telemetry-path {telemetry_path:?} is already an endpoint of sonde"
        ));
    }
    let check_interval = match raw.check_interval {
        None => None,
        Some(text) => {
            let d = parse_duration(&text).map_err(|e| format!("--check-interval: {e}"))?;
            if d.is_zero() {
                return Err("--check-interval must be greater than 0".into());
            }
            Some(d)
        }
    };
    let ignored_images: Vec<String> = raw
        .ignored_images
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let log_level = match raw.log_level.as_deref().unwrap_or("info") {
        "error" => LogLevel::Error,
        "warn" => LogLevel::Warn,
        "info" => LogLevel::Info,
        "debug" => LogLevel::Debug,
        "trace" => LogLevel::Trace,
        other => {
            return Err(format!(
                "--log.level {other:?}: use one of error, warn, info, debug, trace"
            ));
        }
    };
    if let Some(url) = &raw.push_gateway {
        if !raw.once {
            return Err("--push.gateway works with --once only".into());
        }
        let valid = url
            .parse::<ureq::http::Uri>()
            .ok()
            .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
        if valid.is_none() {
            return Err(format!(
                "--push.gateway {url:?} is not an http:// or https:// URL"
            ));
        }
    }
    let shard = match &raw.shard {
        None => Shard::WHOLE,
        Some(text) => Shard::parse(text, crate::push::hostname)?,
    };
    let probe_concurrency = match raw.probe_concurrency.as_deref() {
        None => DEFAULT_PROBE_CONCURRENCY,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=4096).contains(&n) => n,
            _ => {
                return Err(format!(
                    "--probe.concurrency {text:?}: use a number from 1 to 4096"
                ));
            }
        },
    };
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
