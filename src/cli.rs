//! Raw command-line flags: what the user typed, nothing validated yet.
//!
//! [`RawArgs`] only splits the command line into strings and booleans; `config.rs`
//! turns it into a validated [`crate::config::Settings`]. The rest of the program never
//! sees these raw values.
//!
//! [`FLAGS`] is the one list of flags: the parser, `--help` and the tests all read it,
//! so a flag cannot be added to one and forgotten in another. Every long flag that takes
//! a value accepts `--flag value` and `--flag=value`, the Prometheus (kingpin) convention
//! that copied examples rely on.

use std::ffi::{OsStr, OsString};
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
    /// `--web.enable-lifecycle`
    pub enable_lifecycle: bool,
    /// `--push.gateway`
    pub push_gateway: Option<String>,
    /// `--check-interval`
    pub check_interval: Option<String>,
    /// `--ignored-images`
    pub ignored_images: Option<String>,
    /// `--log.level`
    pub log_level: Option<String>,
    /// `--shard`
    pub shard: Option<String>,
    /// `--blackbox.config.file`
    pub blackbox_config_file: Option<PathBuf>,
    /// `--probe.concurrency`
    pub probe_concurrency: Option<String>,
    /// `--config.check`
    pub config_check: bool,
    /// `--once`
    pub once: bool,
    /// `-h, --help`
    pub help: bool,
    /// `-V, --version`
    pub version: bool,
}

/// Which [`RawArgs`] field a flag fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    ConfigFile,
    ListenAddress,
    TelemetryPath,
    WebConfigFile,
    EnableLifecycle,
    PushGateway,
    CheckInterval,
    IgnoredImages,
    LogLevel,
    Shard,
    BlackboxConfigFile,
    ProbeConcurrency,
    ConfigCheck,
    Once,
    Help,
    Version,
}

/// One flag: its spellings, the name of its value (`None` for a switch) and its help.
#[derive(Debug)]
pub struct Flag {
    /// The long name, with its dashes.
    pub long: &'static str,
    /// A one-letter spelling, if any.
    pub short: Option<&'static str>,
    /// Another long name that means the same (`--bind-address`).
    pub alias: Option<&'static str>,
    /// What the value is called in `--help`; `None` for a switch.
    pub value: Option<&'static str>,
    /// The field it fills.
    pub field: Field,
    /// The help text, one or more lines.
    pub help: &'static str,
}

/// Every flag sonde takes, in `--help` order.
pub const FLAGS: &[Flag] = &[
    Flag {
        long: "--config.file",
        short: Some("-c"),
        alias: None,
        value: Some("PATH"),
        field: Field::ConfigFile,
        help: "YAML config; without it one hwmon check of this host runs",
    },
    Flag {
        long: "--web.listen-address",
        short: None,
        alias: Some("--bind-address"),
        value: Some("ADDR"),
        field: Field::ListenAddress,
        help: "where to serve (default 0.0.0.0:10060; also \":PORT\",\n\"[::1]:PORT\"); alias --bind-address",
    },
    Flag {
        long: "--web.telemetry-path",
        short: None,
        alias: None,
        value: Some("PATH"),
        field: Field::TelemetryPath,
        help: "path of the metrics (default /metrics)",
    },
    Flag {
        long: "--web.config.file",
        short: None,
        alias: None,
        value: Some("PATH"),
        field: Field::WebConfigFile,
        help: "TLS and basic auth (exporter-toolkit format)",
    },
    Flag {
        long: "--web.enable-lifecycle",
        short: None,
        alias: None,
        value: None,
        field: Field::EnableLifecycle,
        help: "allow POST /-/reload (off: 403; SIGHUP always reloads)",
    },
    Flag {
        long: "--check-interval",
        short: None,
        alias: None,
        value: Some("DURATION"),
        field: Field::CheckInterval,
        help: "interval of every check that sets none (e.g. 30s, 1m)",
    },
    Flag {
        long: "--ignored-images",
        short: None,
        alias: None,
        value: Some("LIST"),
        field: Field::IgnoredImages,
        help: "comma-separated images every kubernetes_images check\nignores (exact or * glob, raw or normalised)",
    },
    Flag {
        long: "--log.level",
        short: None,
        alias: None,
        value: Some("LEVEL"),
        field: Field::LogLevel,
        help: "error | warn | info | debug | trace (default info)",
    },
    Flag {
        long: "--shard",
        short: None,
        alias: None,
        value: Some("I/N"),
        field: Field::Shard,
        help: "check only this replica's part of the targets: replica I of\nN (from 0), or auto/N to take I from a StatefulSet pod's\nhost name (sonde-2 is 2); hwmon is never sharded",
    },
    Flag {
        long: "--blackbox.config.file",
        short: None,
        alias: None,
        value: Some("PATH"),
        field: Field::BlackboxConfigFile,
        help: "blackbox_exporter config whose http modules /probe\nruns (beside modules: of the config)",
    },
    Flag {
        long: "--probe.concurrency",
        short: None,
        alias: None,
        value: Some("N"),
        field: Field::ProbeConcurrency,
        help: "probes of /probe run at once; more get 503\n(default 64)",
    },
    Flag {
        long: "--config.check",
        short: None,
        alias: None,
        value: None,
        field: Field::ConfigCheck,
        help: "validate the config, the web config and every other\nflag, print each problem, exit (added to any command\nline, it checks that line without running it)",
    },
    Flag {
        long: "--once",
        short: None,
        alias: None,
        value: None,
        field: Field::Once,
        help: "run every check once, print the metrics, exit\n(exit 1 when a check did not succeed)",
    },
    Flag {
        long: "--push.gateway",
        short: None,
        alias: None,
        value: Some("URL"),
        field: Field::PushGateway,
        help: "with --once: PUT the metrics to a Pushgateway\n(job \"sonde\", instance=<hostname>)",
    },
    Flag {
        long: "--help",
        short: Some("-h"),
        alias: None,
        value: None,
        field: Field::Help,
        help: "print this help",
    },
    Flag {
        long: "--version",
        short: Some("-V"),
        alias: None,
        value: None,
        field: Field::Version,
        help: "print the version",
    },
];

/// Column where help texts start.
const HELP_COLUMN: usize = 31;

/// The text `--help` prints, made from [`FLAGS`].
pub fn help() -> String {
    let mut out = String::from(
        "sonde: periodic checks exported to Prometheus (HTTP uptime, Docker Hub, images, sensors)\n\nUsage: sonde [OPTIONS]\n\nOptions:\n",
    );
    for flag in FLAGS {
        let mut left = match flag.short {
            Some(short) => format!("  {short}, {}", flag.long),
            None => format!("      {}", flag.long),
        };
        if let Some(value) = flag.value {
            left.push(' ');
            left.push_str(value);
        }
        let mut lines = flag.help.lines();
        if left.len() < HELP_COLUMN {
            let first = lines.next().unwrap_or("");
            out.push_str(&format!("{left:<HELP_COLUMN$}{first}\n"));
        } else {
            out.push_str(&left);
            out.push('\n');
        }
        for line in lines {
            out.push_str(&format!("{:HELP_COLUMN$}{line}\n", ""));
        }
    }
    out.push_str(
        "\nEvery flag that takes a value accepts --flag VALUE and --flag=VALUE.\n\
         Exit codes: 0 success, 1 runtime failure, 2 usage or config error.\n\
         Signals: SIGHUP reloads the config; SIGTERM and SIGINT stop sonde.\n",
    );
    out
}

/// Finds the flag a command-line word names, by any of its spellings.
fn lookup(name: &str) -> Option<&'static Flag> {
    FLAGS
        .iter()
        .find(|f| f.long == name || f.short == Some(name) || f.alias == Some(name))
}

/// Splits the command line into [`RawArgs`]; an unknown flag, a missing or empty value,
/// or a flag given twice is an error naming the flag.
pub fn parse(args: Vec<OsString>) -> Result<RawArgs, String> {
    let mut raw = RawArgs::default();
    let mut seen: Vec<Field> = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else {
            return Err(format!(
                "unexpected argument {:?} (see --help)",
                arg.to_string_lossy()
            ));
        };
        // `--flag=value` carries its value; the value may itself contain `=`.
        let (name, inline) = match text.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value)),
            _ => (text, None),
        };
        let Some(flag) = lookup(name).filter(|_| name.starts_with('-')) else {
            return Err(format!("unexpected argument {text:?} (see --help)"));
        };
        if seen.contains(&flag.field) {
            return Err(match flag.alias {
                Some(alias) => format!("{} and {alias} are the same flag; give it once", flag.long),
                None => format!("{name} is given more than once"),
            });
        }
        seen.push(flag.field);
        let value = match (flag.value, inline) {
            (None, None) => None,
            (None, Some(_)) => return Err(format!("{name} takes no value")),
            (Some(_), Some(value)) => Some(OsString::from(value)),
            (Some(what), None) => Some(
                args.next()
                    .ok_or_else(|| format!("{name} needs a value ({what})"))?,
            ),
        };
        if let (Some(value), Some(what)) = (&value, flag.value)
            && value.is_empty()
        {
            return Err(format!("{name} needs a value ({what}); it is empty"));
        }
        set(&mut raw, flag.field, value)?;
    }
    Ok(raw)
}

/// Stores one flag's value in its field.
fn set(raw: &mut RawArgs, field: Field, value: Option<OsString>) -> Result<(), String> {
    let text = |v: Option<OsString>| -> Result<Option<String>, String> {
        v.map(|v| {
            v.into_string()
                .map_err(|v| format!("{:?} is not valid UTF-8", OsStr::new(&v)))
        })
        .transpose()
    };
    match field {
        Field::ConfigFile => raw.config_file = value.map(PathBuf::from),
        Field::BlackboxConfigFile => raw.blackbox_config_file = value.map(PathBuf::from),
        Field::ProbeConcurrency => raw.probe_concurrency = text(value)?,
        Field::WebConfigFile => raw.web_config_file = value.map(PathBuf::from),
        Field::ListenAddress => raw.listen_address = text(value)?,
        Field::TelemetryPath => raw.telemetry_path = text(value)?,
        Field::PushGateway => raw.push_gateway = text(value)?,
        Field::CheckInterval => raw.check_interval = text(value)?,
        Field::IgnoredImages => raw.ignored_images = text(value)?,
        Field::LogLevel => raw.log_level = text(value)?,
        Field::Shard => raw.shard = text(value)?,
        Field::EnableLifecycle => raw.enable_lifecycle = true,
        Field::ConfigCheck => raw.config_check = true,
        Field::Once => raw.once = true,
        Field::Help => raw.help = true,
        Field::Version => raw.version = true,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    /// A value each flag accepts, and where parsing put it.
    fn sample(field: Field) -> &'static str {
        match field {
            Field::ConfigFile | Field::WebConfigFile | Field::BlackboxConfigFile => {
                "/etc/sonde/x=y.yml"
            }
            Field::ProbeConcurrency => "16",
            Field::ListenAddress => "127.0.0.1:10060",
            Field::TelemetryPath => "/m",
            Field::PushGateway => "http://127.0.0.1:9091",
            Field::CheckInterval => "1m",
            Field::IgnoredImages => "nginx:1.11,busybox",
            Field::LogLevel => "debug",
            Field::Shard => "1/3",
            _ => "",
        }
    }

    fn value_of(raw: &RawArgs, field: Field) -> Option<String> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        match field {
            Field::ConfigFile => path(&raw.config_file),
            Field::WebConfigFile => path(&raw.web_config_file),
            Field::BlackboxConfigFile => path(&raw.blackbox_config_file),
            Field::ProbeConcurrency => raw.probe_concurrency.clone(),
            Field::ListenAddress => raw.listen_address.clone(),
            Field::TelemetryPath => raw.telemetry_path.clone(),
            Field::PushGateway => raw.push_gateway.clone(),
            Field::CheckInterval => raw.check_interval.clone(),
            Field::IgnoredImages => raw.ignored_images.clone(),
            Field::LogLevel => raw.log_level.clone(),
            Field::Shard => raw.shard.clone(),
            Field::EnableLifecycle => raw.enable_lifecycle.then(String::new),
            Field::ConfigCheck => raw.config_check.then(String::new),
            Field::Once => raw.once.then(String::new),
            Field::Help => raw.help.then(String::new),
            Field::Version => raw.version.then(String::new),
        }
    }

    /// Every spelling of every flag, in every form: `--f v`, `--f=v`, `-c v`, the alias.
    #[test]
    fn every_flag_in_both_forms() {
        for flag in FLAGS {
            let spellings = [Some(flag.long), flag.short, flag.alias];
            for name in spellings.into_iter().flatten() {
                let Some(_) = flag.value else {
                    let raw = parse(args(&[name])).unwrap();
                    assert_eq!(value_of(&raw, flag.field).as_deref(), Some(""), "{name}");
                    let e = parse(args(&[&format!("{name}=1")]));
                    assert!(e.is_err(), "{name}=1: {e:?}");
                    continue;
                };
                let want = sample(flag.field);
                let spaced = parse(args(&[name, want])).unwrap();
                assert_eq!(
                    value_of(&spaced, flag.field).as_deref(),
                    Some(want),
                    "{name}"
                );
                if name.starts_with("--") {
                    let joined = parse(args(&[&format!("{name}={want}")])).unwrap();
                    assert_eq!(spaced, joined, "{name}={want}");
                    let e = parse(args(&[&format!("{name}=")])).unwrap_err();
                    assert!(e.contains(name) && e.contains("empty"), "{e}");
                }
                let e = parse(args(&[name])).unwrap_err();
                assert!(e.contains(name) && e.contains("needs a value"), "{e}");
                let e = parse(args(&[name, ""])).unwrap_err();
                assert!(e.contains(name), "{e}");
            }
        }
    }

    /// `--help` lists exactly the flags of [`FLAGS`]: a flag documented by hand but
    /// unknown to the parser (or the other way round) fails here.
    #[test]
    fn help_lists_every_flag_and_only_those() {
        let text = help();
        let mut mentioned: Vec<&str> = text
            .split(|c: char| c.is_whitespace() || ",;:)".contains(c))
            .filter(|w| w.starts_with('-') && w.len() > 1 && !w.contains('='))
            .filter(|w| !matches!(*w, "--flag"))
            .collect();
        mentioned.sort_unstable();
        mentioned.dedup();
        for word in &mentioned {
            assert!(
                lookup(word).is_some(),
                "--help mentions {word}, which is no flag"
            );
        }
        for flag in FLAGS {
            for name in [Some(flag.long), flag.short, flag.alias]
                .into_iter()
                .flatten()
            {
                assert!(mentioned.contains(&name), "--help does not mention {name}");
            }
        }
    }

    #[test]
    fn combined_flags_and_errors() {
        let raw = parse(args(&[
            "-c",
            "/etc/sonde.yml",
            "--web.listen-address=:9999",
            "--check-interval",
            "1m",
            "--config.file=x",
        ]));
        assert!(raw.unwrap_err().contains("more than once"));
        let raw = parse(args(&["--config.file=/etc/sonde/sonde.yml", "--once"])).unwrap();
        assert_eq!(raw.config_file, Some(PathBuf::from("/etc/sonde/sonde.yml")));
        assert!(raw.once && !raw.config_check);
        let e = parse(args(&["--bind-address", "a", "--web.listen-address", "b"])).unwrap_err();
        assert!(e.contains("same flag"), "{e}");
        assert!(parse(args(&["--nope"])).unwrap_err().contains("--nope"));
        assert!(parse(args(&["--nope=1"])).unwrap_err().contains("--nope=1"));
        assert!(parse(args(&["stray"])).is_err());
        assert!(parse(args(&["-"])).is_err());
        assert!(parse(args(&["-c=x"])).is_err());
    }
}
