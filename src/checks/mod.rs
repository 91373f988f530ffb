//! The [`Check`] trait and the table of kinds.
//!
//! Each kind lives in its own file with its YAML keys (a `Spec`), its metric names and
//! its run logic. Adding a kind is one new file here and one line in each of the two
//! `match`es below ([`Spec::deserialize_kind`] and [`Spec::build`]) plus its row in
//! [`KINDS`].

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde::de::Deserializer;

use crate::config::Problem;
use crate::metrics::FamilySet;
use crate::results::{CheckMeta, TargetReport};

pub mod dockerhub;
pub mod http;
pub mod hwmon;
pub mod image_ref;
pub mod kubernetes;
pub mod registry;

/// Static facts about a kind.
#[derive(Debug)]
pub struct KindInfo {
    /// The value of `kind:` in the config.
    pub name: &'static str,
    /// Interval when neither the check, `global` nor `--check-interval` sets one.
    pub default_interval: Duration,
}

/// Every kind sonde knows, in the order `--help` and errors list them.
pub const KINDS: &[KindInfo] = &[
    KindInfo {
        name: "http",
        default_interval: Duration::from_secs(30),
    },
    KindInfo {
        name: "dockerhub",
        default_interval: Duration::from_secs(300),
    },
    KindInfo {
        name: "hwmon",
        default_interval: Duration::from_secs(15),
    },
    KindInfo {
        name: "registry",
        default_interval: Duration::from_secs(300),
    },
    KindInfo {
        name: "kubernetes_images",
        default_interval: Duration::from_secs(300),
    },
];

/// Looks a kind up by its config name.
pub fn kind_info(name: &str) -> Option<&'static KindInfo> {
    KINDS.iter().find(|k| k.name == name)
}

/// The kind-specific keys of one check, as written in YAML.
// Specs are built once per config load and never copied in bulk, so the size
// difference between kinds' keys does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Spec {
    /// `kind: http`
    Http(http::HttpSpec),
    /// `kind: dockerhub`
    Dockerhub(dockerhub::DockerhubSpec),
    /// `kind: hwmon`
    Hwmon(hwmon::HwmonSpec),
    /// `kind: registry`
    Registry(registry::RegistrySpec),
    /// `kind: kubernetes_images`
    Kubernetes(kubernetes::KubernetesSpec),
}

impl Spec {
    /// Deserializes the kind-specific keys of a check whose `kind` is already known.
    pub fn deserialize_kind<'de, D: Deserializer<'de>>(
        kind: &str,
        keys: D,
    ) -> Result<Spec, D::Error> {
        match kind {
            "http" => http::HttpSpec::deserialize(keys).map(Spec::Http),
            "dockerhub" => dockerhub::DockerhubSpec::deserialize(keys).map(Spec::Dockerhub),
            "hwmon" => hwmon::HwmonSpec::deserialize(keys).map(Spec::Hwmon),
            "registry" => registry::RegistrySpec::deserialize(keys).map(Spec::Registry),
            "kubernetes_images" => {
                kubernetes::KubernetesSpec::deserialize(keys).map(Spec::Kubernetes)
            }
            other => Err(serde::de::Error::custom(format!("unknown kind {other:?}"))),
        }
    }

    /// Validates the keys and builds the check that runs them.
    pub fn build(&self, ctx: &BuildContext) -> Result<Arc<dyn Check>, Vec<Problem>> {
        match self {
            Spec::Http(spec) => http::HttpCheck::build(spec, ctx).map(|c| Arc::new(c) as _),
            Spec::Dockerhub(spec) => {
                dockerhub::DockerhubCheck::build(spec, ctx).map(|c| Arc::new(c) as _)
            }
            Spec::Hwmon(spec) => hwmon::HwmonCheck::build(spec, ctx).map(|c| Arc::new(c) as _),
            Spec::Registry(spec) => {
                registry::RegistryCheck::build(spec, ctx).map(|c| Arc::new(c) as _)
            }
            Spec::Kubernetes(spec) => {
                kubernetes::KubernetesCheck::build(spec, ctx).map(|c| Arc::new(c) as _)
            }
        }
    }
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
}

impl BuildContext<'_> {
    /// Resolves a path from the config relative to the config file's directory.
    pub fn resolve(&self, path: &str) -> std::path::PathBuf {
        self.base_dir.join(path)
    }

    /// An HTTP agent with the check's `tls:` settings; problems go to `problems`, located
    /// at the key at fault (or at `fallback` when the settings name no file).
    pub fn agent(
        &self,
        tls: Option<&crate::client::TlsSpec>,
        options: &crate::client::AgentOptions,
        fallback: serde_saphyr::Location,
        problems: &mut Vec<Problem>,
    ) -> Option<ureq::Agent> {
        let settings = match tls.map(|t| crate::client::TlsSettings::load(t, self.base_dir)) {
            None => crate::client::TlsSettings::webpki(),
            Some(Ok(t)) => t,
            Some(Err((at, e))) => {
                problems.push(self.problem(at, e));
                return None;
            }
        };
        match crate::client::agent(&settings, options) {
            Ok(agent) => Some(agent),
            Err(e) => {
                let at = tls
                    .and_then(|t| t.ca_file.as_ref())
                    .map_or(fallback, |c| c.referenced);
                problems.push(self.problem(at, e));
                None
            }
        }
    }

    /// A problem about this check at a YAML location.
    pub fn problem(&self, at: serde_saphyr::Location, message: impl Into<String>) -> Problem {
        Problem::at(at, Some(&self.meta.name), message)
    }
}

/// What a check needs while it runs.
#[derive(Debug)]
pub struct RunContext<'a> {
    /// The run must be over by then; work not finished counts as timed out.
    pub deadline: Instant,
    /// Set when the run is no longer wanted (shutdown, reload).
    pub cancel: &'a AtomicBool,
}

/// What one run produced.
#[derive(Debug, Default)]
pub struct RunOutput {
    /// Whether everything the run covers is healthy (SPEC §3).
    pub success: bool,
    /// Why not, in a few words.
    pub error: Option<String>,
    /// The kind's metrics.
    pub families: FamilySet,
    /// Per-target results for the JSON endpoints.
    pub targets: Vec<TargetReport>,
}

/// A configured check, ready to run again and again.
///
/// A check keeps whatever state must outlive a run (counters, last good values) and
/// returns a complete [`RunOutput`] each time; it never touches the web server.
pub trait Check: Send + Sync + 'static {
    /// Runs once; must return by `ctx.deadline` or shortly after.
    fn run(&self, ctx: &RunContext) -> RunOutput;
}
