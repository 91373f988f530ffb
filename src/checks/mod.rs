//! The [`Check`] trait and the table of kinds: the one place that names every kind.
//!
//! Each kind lives in its own file: its YAML keys (a spec type implementing
//! [`KindSpec`]), its metric names, how it builds, runs and renders. The API clients a
//! kind talks to live in `net/`. Adding a kind is one new file here and one row in the
//! [`kinds!`] table below; `config.rs` needs no change.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde::de::Deserializer;
use serde_saphyr::Location;

use crate::metrics::FamilySet;
use crate::problem::Problem;
use crate::shard::Shard;
use crate::store::{CheckMeta, TargetReport};

pub mod dockerhub;
pub mod http;
pub mod hwmon;
pub mod kubernetes;
pub mod module;
pub mod probe;
pub mod registry;
pub mod spread;

/// Static facts about a kind.
#[derive(Debug)]
pub struct KindInfo {
    /// The value of `kind:` in the config.
    pub name: &'static str,
    /// Interval when neither the check, `global` nor `--check-interval` sets one.
    pub default_interval: Duration,
}

/// What a kind's spec (its YAML keys) can do.
pub trait KindSpec {
    /// The check it builds.
    type Check: Check;

    /// Validates the keys and builds the check; problems carry their YAML location.
    fn build(&self, ctx: &BuildContext) -> Result<Self::Check, Vec<Problem>>;

    /// With `legacy_metrics: true`, the series this check exports under old names that
    /// no other legacy check may export too (see [`legacy_conflicts`]).
    fn legacy_claims(&self) -> Vec<LegacyClaim> {
        Vec::new()
    }
}

/// Declares every kind once: its config name, default interval and spec type. Expands
/// to [`KINDS`], the [`Spec`] enum and its dispatch.
macro_rules! kinds {
    ($($variant:ident: $name:literal, $secs:literal s, $spec:ty;)*) => {
        /// Every kind sonde knows, in the order `--help` and errors list them.
        pub const KINDS: &[KindInfo] = &[
            $(KindInfo { name: $name, default_interval: Duration::from_secs($secs) },)*
        ];

        /// The kind-specific keys of one check, as written in YAML.
        // Specs are built once per config load and never copied in bulk, so the size
        // difference between kinds' keys does not matter.
        #[allow(clippy::large_enum_variant)]
        #[derive(Clone, Debug, PartialEq)]
        pub enum Spec {
            $(#[doc = concat!("`kind: ", $name, "`")] $variant($spec),)*
        }

        impl Spec {
            /// Deserializes the kind-specific keys of a check whose `kind` is known.
            pub fn deserialize_kind<'de, D: Deserializer<'de>>(
                kind: &str,
                keys: D,
            ) -> Result<Spec, D::Error> {
                match kind {
                    $($name => <$spec>::deserialize(keys).map(Spec::$variant),)*
                    other => Err(serde::de::Error::custom(format!("unknown kind {other:?}"))),
                }
            }

            /// Validates the keys and builds the check that runs them.
            pub fn build(&self, ctx: &BuildContext) -> Result<Arc<dyn Check>, Vec<Problem>> {
                match self {
                    $(Spec::$variant(spec) => spec.build(ctx).map(|c| Arc::new(c) as _),)*
                }
            }

            /// See [`KindSpec::legacy_claims`].
            pub fn legacy_claims(&self) -> Vec<LegacyClaim> {
                match self {
                    $(Spec::$variant(spec) => spec.legacy_claims(),)*
                }
            }
        }
    };
}

kinds! {
    Http: "http", 30 s, http::HttpSpec;
    Dockerhub: "dockerhub", 300 s, dockerhub::DockerhubSpec;
    Hwmon: "hwmon", 15 s, hwmon::HwmonSpec;
    Registry: "registry", 300 s, registry::RegistrySpec;
    Kubernetes: "kubernetes_images", 300 s, kubernetes::KubernetesSpec;
}

/// Looks a kind up by its config name.
pub fn kind_info(name: &str) -> Option<&'static KindInfo> {
    KINDS.iter().find(|k| k.name == name)
}

/// One check, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckConfig {
    /// Name, kind, interval and timeout.
    pub meta: CheckMeta,
    /// `legacy_metrics`
    pub legacy_metrics: bool,
    /// The kind's keys.
    pub spec: Spec,
}

/// A validated check together with the object that runs it.
#[derive(Clone)]
pub struct LoadedCheck {
    /// What the user configured (compared on reload to keep unchanged checks running).
    pub config: CheckConfig,
    /// The runnable check.
    pub check: Arc<dyn Check>,
}

impl fmt::Debug for LoadedCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedCheck")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Series a legacy check exports under the name of the exporter it replaces.
#[derive(Debug)]
pub struct LegacyClaim {
    /// The old series' names, for the message (`docker_image_pulls`).
    pub series: &'static str,
    /// What identifies the series among those names (a URL, an organization).
    pub key: String,
    /// How the key reads in a message (`URL "http://a/"`).
    pub what: String,
    /// Where the key is written.
    pub at: Option<Location>,
}

/// Two legacy checks that would export the same old series (the same URL in two http
/// checks, say) produce duplicates that Prometheus rejects: a config problem.
pub fn legacy_conflicts(checks: &[LoadedCheck]) -> Vec<Problem> {
    let mut owner: HashMap<(&'static str, String), String> = HashMap::new();
    let mut problems = Vec::new();
    for loaded in checks.iter().filter(|c| c.config.legacy_metrics) {
        let name = loaded.config.meta.name.as_str();
        for claim in loaded.config.spec.legacy_claims() {
            let slot = (claim.series, claim.key);
            if let Some(first) = owner.get(&slot) {
                let message = format!(
                    "{} is also in legacy check {first:?}; {} would be exported twice",
                    claim.what, claim.series
                );
                problems.push(match claim.at {
                    Some(at) => Problem::at(at, Some(name), message),
                    None => Problem {
                        check: Some(name.to_string()),
                        ..Problem::plain(message)
                    },
                });
            } else {
                owner.insert(slot, name.to_string());
            }
        }
    }
    problems
}

/// What a kind needs to know while building a check.
#[derive(Debug)]
pub struct BuildContext<'a> {
    /// The check's name, interval and timeout.
    pub meta: &'a CheckMeta,
    /// Whether `legacy_metrics: true` was set.
    pub legacy_metrics: bool,
    /// Directory that relative `*_file` paths are resolved against (the config's).
    pub base_dir: &'a Path,
    /// `--ignored-images`, added to every `kubernetes_images` check.
    pub ignored_images: &'a [String],
    /// `--shard`: a kind checks only the targets this replica owns (see `shard.rs`).
    pub shard: Shard,
    /// Where the check (or module) starts in the config: problems that no key of it
    /// is to blame for are located there.
    pub at: serde_saphyr::Location,
}

impl BuildContext<'_> {
    /// Resolves a path from the config relative to the config file's directory.
    pub fn resolve(&self, path: &str) -> std::path::PathBuf {
        self.base_dir.join(path)
    }

    /// An HTTP agent with the check's connection keys (`tls:`, proxies, IP family);
    /// problems go to `problems`, located at the key at fault (or at `fallback` when
    /// no key is to blame).
    pub fn agent(
        &self,
        keys: &crate::net::http::ConnectionKeys,
        options: &crate::net::http::AgentOptions,
        fallback: serde_saphyr::Location,
        problems: &mut Vec<Problem>,
    ) -> Option<ureq::Agent> {
        let located = |at: serde_saphyr::Location| {
            if at == serde_saphyr::Location::UNKNOWN {
                fallback
            } else {
                at
            }
        };
        let connection = match keys.load(self.base_dir, &self.meta.name) {
            Ok(c) => c,
            Err(found) => {
                for (at, e) in found {
                    problems.push(self.problem(located(at), e));
                }
                return None;
            }
        };
        match crate::net::http::agent_for(&connection, options) {
            Ok(agent) => Some(agent),
            Err(e) => {
                let at = keys
                    .tls
                    .as_ref()
                    .and_then(|t| t.ca_file.as_ref())
                    .map_or(fallback, |c| c.referenced);
                problems.push(self.problem(at, e));
                None
            }
        }
    }

    /// A problem about this check at a YAML location (the check's start when the
    /// location is unknown).
    pub fn problem(&self, at: serde_saphyr::Location, message: impl Into<String>) -> Problem {
        let at = if at == serde_saphyr::Location::UNKNOWN {
            self.at
        } else {
            at
        };
        Problem::at(at, Some(&self.meta.name), message)
    }
}

/// What a check needs while it runs.
pub struct RunContext<'a> {
    /// The run must be over by then; work not finished counts as timed out.
    pub deadline: Instant,
    /// Set when the run is no longer wanted (shutdown, reload).
    pub cancel: &'a AtomicBool,
    /// How long after its start the run may spread its targets' probes (see
    /// [`Check::spread`]); zero runs every probe at once (`--once`, one-shot probes).
    pub spread: Duration,
    /// Publishes what a long run has found so far (the targets probed since its start
    /// and the last values of the others), without counting a run.
    pub progress: &'a (dyn Fn(RunOutput) + Sync),
}

impl std::fmt::Debug for RunContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunContext")
            .field("deadline", &self.deadline)
            .field("spread", &self.spread)
            .finish_non_exhaustive()
    }
}

/// What one run produced.
#[derive(Debug, Default)]
pub struct RunOutput {
    /// Whether everything the run covers is healthy (every URL up, every image
    /// available, ...).
    pub success: bool,
    /// Why not, in a few words.
    pub error: Option<String>,
    /// The kind's metrics.
    pub families: FamilySet,
    /// One report per target (URL, image, container, sensor, repository) for the
    /// status page, its history and the JSON endpoints; in the order a person expects
    /// (the config's, else the kind's natural one) and each target named once.
    pub targets: Vec<TargetReport>,
}

/// A configured check, ready to run again and again.
///
/// A check keeps whatever state must outlive a run (counters, last good values) and
/// returns a complete [`RunOutput`] each time; it never touches the web server.
pub trait Check: Send + Sync + 'static {
    /// Runs once; must return by `ctx.deadline` or shortly after.
    fn run(&self, ctx: &RunContext) -> RunOutput;

    /// How much of each interval the check spreads its probes over, given its interval
    /// and timeout: a run then lasts that long plus the timeout. Zero (the default) runs
    /// every target at the tick.
    fn spread(&self, interval: Duration, timeout: Duration) -> Duration {
        let _ = (interval, timeout);
        Duration::ZERO
    }
}
