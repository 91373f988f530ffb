//! Raw command-line flags: what the user typed, nothing validated yet.
//!
//! [`RawArgs`] only splits the command line into strings and booleans; `config.rs`
//! turns it into a validated [`crate::config::Settings`]. The rest of the program never
//! sees these raw values.

use std::ffi::OsString;
use std::path::PathBuf;

/// The flags as typed on the command line.
#[derive(Debug, Default, PartialEq)]
pub struct RawArgs {
    /// `-c, --config.file`
    pub config_file: Option<PathBuf>,
    /// `--web.listen-address` or its alias `--bind-address`
    pub listen_address: Option<String>,
    /// `--web.telemetry-path`
    pub telemetry_path: Option<String>,
    /// `--web.config.file`
    pub web_config_file: Option<PathBuf>,
    /// `--push.gateway`
    pub push_gateway: Option<String>,
    /// `--check-interval`
    pub check_interval: Option<String>,
    /// `--ignored-images`
    pub ignored_images: Option<String>,
    /// `--log.level`
    pub log_level: Option<String>,
    /// `--config.check`
    pub config_check: bool,
    /// `--once`
    pub once: bool,
    /// `-h, --help`
    pub help: bool,
    /// `-V, --version`
    pub version: bool,
}

/// The text `--help` prints.
pub const HELP: &str = "\
sonde: periodic checks exported to Prometheus (HTTP uptime, Docker Hub, images, sensors)

Usage: sonde [OPTIONS]

Options:
  -c, --config.file PATH       YAML config; without it one hwmon check of this host runs
      --web.listen-address ADDR
                               where to serve (default 0.0.0.0:10060; also \":PORT\",
                               \"[::1]:PORT\"); alias --bind-address
      --web.telemetry-path PATH
                               path of the metrics (default /metrics)
      --web.config.file PATH   TLS and basic auth (exporter-toolkit format)
      --check-interval DURATION
                               interval of every check that sets none (e.g. 30s, 1m)
      --ignored-images LIST    comma-separated images every kubernetes_images check
                               ignores (exact or * glob, raw or normalised)
      --log.level LEVEL        error | warn | info | debug | trace (default info)
      --config.check           validate the config, print each problem, exit
      --once                   run every check once, print the metrics, exit
                               (exit 1 when a check did not succeed)
      --push.gateway URL       with --once: PUT the metrics to a Pushgateway
                               (job \"sonde\", instance=<hostname>)
  -h, --help                   print this help
  -V, --version                print the version

Exit codes: 0 success, 1 runtime failure, 2 usage or config error.
Signals: SIGHUP reloads the config; SIGTERM and SIGINT stop sonde.
";

/// Splits the command line into [`RawArgs`]; an unknown flag or a missing value is an error.
pub fn parse(args: Vec<OsString>) -> Result<RawArgs, String> {
    let mut p = pico_args::Arguments::from_vec(args);
    let describe = |e: pico_args::Error| e.to_string();
    let mut raw = RawArgs {
        help: p.contains(["-h", "--help"]),
        version: p.contains(["-V", "--version"]),
        config_check: p.contains("--config.check"),
        once: p.contains("--once"),
        ..RawArgs::default()
    };
    raw.config_file = p
        .opt_value_from_os_str(["-c", "--config.file"], |s| {
            Ok::<_, std::convert::Infallible>(PathBuf::from(s))
        })
        .map_err(describe)?;
    let listen = p
        .opt_value_from_str::<_, String>("--web.listen-address")
        .map_err(describe)?;
    let alias = p
        .opt_value_from_str::<_, String>("--bind-address")
        .map_err(describe)?;
    if listen.is_some() && alias.is_some() {
        return Err(
            "--web.listen-address and --bind-address are the same flag; give it once".into(),
        );
    }
    raw.listen_address = listen.or(alias);
    raw.telemetry_path = p
        .opt_value_from_str("--web.telemetry-path")
        .map_err(describe)?;
    raw.web_config_file = p
        .opt_value_from_os_str("--web.config.file", |s| {
            Ok::<_, std::convert::Infallible>(PathBuf::from(s))
        })
        .map_err(describe)?;
    raw.push_gateway = p.opt_value_from_str("--push.gateway").map_err(describe)?;
    raw.check_interval = p.opt_value_from_str("--check-interval").map_err(describe)?;
    raw.ignored_images = p.opt_value_from_str("--ignored-images").map_err(describe)?;
    raw.log_level = p.opt_value_from_str("--log.level").map_err(describe)?;
    let rest = p.finish();
    if let Some(first) = rest.first() {
        return Err(format!(
            "unexpected argument {:?} (see --help)",
            first.to_string_lossy()
        ));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn flags_with_space_and_equals_forms() {
        let raw = parse(args(&[
            "-c",
            "/etc/sonde.yml",
            "--web.listen-address=:9999",
            "--check-interval",
            "1m",
            "--ignored-images=nginx:1.11,busybox",
            "--once",
        ]))
        .unwrap();
        assert_eq!(raw.ignored_images.as_deref(), Some("nginx:1.11,busybox"));
        assert_eq!(raw.config_file, Some(PathBuf::from("/etc/sonde.yml")));
        assert_eq!(raw.listen_address.as_deref(), Some(":9999"));
        assert_eq!(raw.check_interval.as_deref(), Some("1m"));
        assert!(raw.once && !raw.config_check);
    }

    #[test]
    fn alias_and_errors() {
        let raw = parse(args(&["--bind-address", "127.0.0.1:1"])).unwrap();
        assert_eq!(raw.listen_address.as_deref(), Some("127.0.0.1:1"));
        assert!(parse(args(&["--bind-address", "a", "--web.listen-address", "b"])).is_err());
        assert!(parse(args(&["--nope"])).unwrap_err().contains("--nope"));
        assert!(parse(args(&["--config.file"])).is_err());
        assert!(parse(args(&["stray"])).is_err());
    }
}
