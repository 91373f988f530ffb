//! `kind: registry`: do the images listed in the config exist in their registries?
//!
//! The requests, credentials, tokens and rate limits are [`crate::net::oci`]'s. This file
//! reads the kind's keys, validates the registry keys it shares with
//! `kind: kubernetes_images` into a [`RegistrySetup`] (both kinds build theirs here), and
//! turns each run's outcomes into `sonde_image_available` and
//! `sonde_image_check_status` (with a `source` label naming the host that answered when
//! the check has `mirrors`), plus `sonde_registry_retries_total`. What could not be
//! determined has no `sonde_image_available` sample; an image not reached before the
//! timeout keeps the status of its last check.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_saphyr::Location;

use crate::problem::Spanned;

use super::{BuildContext, Check, KindSpec, RunContext, RunOutput};
use crate::metrics::{FamilyId, FamilySet, MetricType};
use crate::net::http::AgentOptions;
use crate::net::image_ref::ImageRef;
use crate::net::oci::{
    Credential, DockerConfigFile, Job, Keyring, Mirrors, Outcome, RegistryClient, RegistryKeys,
    Status,
};
use crate::problem::Problem;
use crate::store::TargetReport;
use crate::sync::lock;

const AVAILABLE: &str = "sonde_image_available";
const AVAILABLE_HELP: &str = "1 if the image's manifest exists in its registry, 0 if the registry says it does not; no sample while that cannot be determined.";
const STATUS: &str = "sonde_image_check_status";
const STATUS_HELP: &str = "1 for the current status of the image check, 0 for the other statuses.";
const RETRIES: &str = "sonde_registry_retries_total";
const RETRIES_HELP: &str =
    "Requests to the registry host sent again after a 5xx or a failed connection.";

/// Default of `max_concurrency_per_registry`.
const DEFAULT_PER_REGISTRY: usize = 4;
/// Default of `retries`.
const DEFAULT_RETRIES: u32 = 2;
/// Most `retries` accepted: more would only outlast the run.
const MAX_RETRIES: u32 = 10;

/// The YAML keys of `kind: registry`.
#[derive(Clone, Debug, PartialEq)]
pub struct RegistrySpec {
    own: OwnKeys,
    registry: RegistryKeys,
}

/// The keys only `kind: registry` has.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnKeys {
    images: Spanned<Vec<Spanned<String>>>,
}

impl<'de> Deserialize<'de> for RegistrySpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RegistrySpec, D::Error> {
        let (own, registry) = RegistryKeys::split(deserializer)?;
        Ok(RegistrySpec { own, registry })
    }
}

impl KindSpec for RegistrySpec {
    type Check = RegistryCheck;

    fn build(&self, ctx: &BuildContext) -> Result<RegistryCheck, Vec<Problem>> {
        RegistryCheck::build(self, ctx)
    }
}

// ---------------------------------------------------------------------------------
// The shared registry keys, validated

/// The registry keys, validated: a client, the docker config and the mirrors.
#[derive(Debug)]
pub struct RegistrySetup {
    /// The registry client (keeps tokens and rate limits across runs).
    pub client: RegistryClient,
    /// `docker_config_file`, when set.
    docker_config: Option<DockerConfigFile>,
    /// `mirrors`.
    mirrors: Mirrors,
}

impl RegistrySetup {
    /// Validates the keys; problems carry their YAML location.
    pub fn build(keys: &RegistryKeys, ctx: &BuildContext) -> Result<RegistrySetup, Vec<Problem>> {
        let mut problems = Vec::new();
        let docker_config = docker_config(keys.docker_config_file.as_ref(), ctx, &mut problems);
        let mirrors = match &keys.mirrors {
            None => Mirrors::default(),
            Some(spec) => Mirrors::parse(&spec.value).unwrap_or_else(|found| {
                problems.extend(found.into_iter().map(|(at, e)| ctx.problem(at, e)));
                Mirrors::default()
            }),
        };
        let retries = match &keys.retries {
            None => DEFAULT_RETRIES,
            Some(n) if n.value <= MAX_RETRIES => n.value,
            Some(n) => {
                problems.push(ctx.problem(
                    n.referenced,
                    format!("retries must be between 0 and {MAX_RETRIES}"),
                ));
                0
            }
        };
        let plain_http = plain_http_hosts(&keys.plain_http_registries, ctx, &mut problems);
        let per_registry = per_registry(
            keys.max_concurrency_per_registry.as_ref(),
            ctx,
            &mut problems,
        );
        let options = AgentOptions {
            max_redirects: 5,
            pool: true,
            ..AgentOptions::default()
        };
        let agent = ctx.agent(&keys.connection, &options, Location::UNKNOWN, &mut problems);
        // Half the check's timeout per request (at least 1 s), so a registry that hangs
        // costs one image, not the run.
        let request_timeout = (ctx.meta.timeout / 2).max(Duration::from_secs(1));
        match agent {
            Some(agent) if problems.is_empty() => Ok(RegistrySetup {
                client: RegistryClient::new(
                    agent,
                    plain_http,
                    per_registry,
                    request_timeout,
                    retries,
                ),
                docker_config,
                mirrors,
            }),
            _ => Err(problems),
        }
    }

    /// The docker config's credentials, re-read now; none without `docker_config_file`.
    pub fn docker_keyring(&self, check: &str) -> Keyring {
        self.docker_config
            .as_ref()
            .map(|d| d.keyring(check))
            .unwrap_or_default()
    }

    /// The check of `image` at its mirrors and registry, each host with the credential
    /// `credential_for` gives for it.
    pub fn job(
        &self,
        image: &ImageRef,
        credential_for: &dyn Fn(&ImageRef) -> Option<Credential>,
    ) -> Job {
        let image = image.checked();
        Job {
            sources: self.mirrors.sources(&image, credential_for),
            image,
        }
    }

    /// Whether image series carry the `source` label: only with `mirrors`, so the
    /// series of a check without mirrors keep the labels they always had.
    pub fn labels_source(&self) -> bool {
        !self.mirrors.is_empty()
    }

    /// `sonde_registry_retries_total` of this check's client.
    pub fn retry_samples(&self, m: &mut FamilySet, check: &str) {
        let id = m.family(RETRIES, RETRIES_HELP, MetricType::Counter);
        for (host, n) in self.client.retries_by_host() {
            m.sample(id, &[("check", check), ("registry", &host)], n as f64);
        }
    }
}

fn docker_config(
    file: Option<&Spanned<String>>,
    ctx: &BuildContext,
    problems: &mut Vec<Problem>,
) -> Option<DockerConfigFile> {
    let file = file?;
    DockerConfigFile::open(ctx.resolve(&file.value))
        .map_err(|e| {
            problems.push(ctx.problem(
                file.referenced,
                format!("docker_config_file: cannot use {e}"),
            ));
        })
        .ok()
}

/// `plain_http_registries` as lower-case hosts.
fn plain_http_hosts(
    hosts: &[Spanned<String>],
    ctx: &BuildContext,
    problems: &mut Vec<Problem>,
) -> HashSet<String> {
    let mut plain_http = HashSet::new();
    for host in hosts {
        let h = host.value.trim().to_ascii_lowercase();
        let valid = !h.is_empty()
            && !h.contains(['/', ' '])
            && ImageRef::parse(&format!("{h}/x")).is_ok_and(|r| r.domain == h);
        if valid {
            plain_http.insert(h);
        } else {
            problems.push(ctx.problem(
                host.referenced,
                format!(
                    "plain_http_registries: {:?} is not a registry host (write host or host:port, e.g. localhost:5000)",
                    host.value
                ),
            ));
        }
    }
    plain_http
}

fn per_registry(
    limit: Option<&Spanned<usize>>,
    ctx: &BuildContext,
    problems: &mut Vec<Problem>,
) -> usize {
    match limit {
        None => DEFAULT_PER_REGISTRY,
        Some(n) if (1..=64).contains(&n.value) => n.value,
        Some(n) => {
            problems.push(ctx.problem(
                n.referenced,
                "max_concurrency_per_registry must be between 1 and 64",
            ));
            1
        }
    }
}

// ---------------------------------------------------------------------------------
// Rendering both image kinds share

/// The current status of one image and the host that gave it (a [`Source`] name).
#[derive(Clone, Debug, PartialEq)]
pub struct Current {
    /// The status.
    pub status: Status,
    /// Who answered; exported as `source` only when the check has mirrors.
    pub source: String,
}

/// Writes one image's `sonde_*image_available` sample (when the status answers the
/// question) and its `sonde_*image_check_status` lines (the current status 1, the others
/// 0), with `source` last when `with_source`.
pub fn image_samples(
    m: &mut FamilySet,
    (available, status): (FamilyId, FamilyId),
    labels: &[(&str, &str)],
    current: &Current,
    with_source: bool,
) {
    let mut all: Vec<(&str, &str)> = labels.to_vec();
    if with_source {
        all.push(("source", current.source.as_str()));
    }
    if let Some(exists) = current.status.determined() {
        m.sample(available, &all, if exists { 1.0 } else { 0.0 });
    }
    let at = labels.len();
    all.insert(at, ("status", ""));
    for s in Status::ALL {
        all[at].1 = s.as_str();
        m.sample(status, &all, if s == current.status { 1.0 } else { 0.0 });
    }
}

/// The status page's report of one image: its status word and, when it is not
/// available, why (`detail` of this run's check; none for a status kept from an
/// earlier run). No status yet means not checked yet.
pub fn image_report(
    target: String,
    current: Option<&Current>,
    detail: Option<String>,
) -> TargetReport {
    let current = current.map(|c| c.status);
    TargetReport {
        target,
        up: current == Some(Status::Available),
        pending: current.is_none(),
        status: current.map(Status::as_str),
        cause: detail.filter(|_| current != Some(Status::Available)),
        ..TargetReport::default()
    }
}

/// The run's error: how many targets were not available, with the first reason.
pub fn summarize(bad: &[String], not_checked: usize, total: usize, what: &str) -> Option<String> {
    let mut parts = Vec::new();
    match bad {
        [] => {}
        [one] => parts.push(one.clone()),
        [first, ..] => parts.push(format!(
            "{} of {total} {what} not available, e.g. {first}",
            bad.len()
        )),
    }
    if not_checked > 0 {
        parts.push(format!(
            "{not_checked} of {total} {what} not checked before the timeout"
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

// ---------------------------------------------------------------------------------
// kind: registry

/// One configured image.
#[derive(Debug)]
struct Target {
    /// As written; the value of the `image` label.
    label: String,
    parsed: Result<ImageRef, String>,
}

/// A configured registry check.
#[derive(Debug)]
pub struct RegistryCheck {
    check: String,
    targets: Vec<Target>,
    setup: RegistrySetup,
    /// Latest status per target (index into `targets`), kept across runs.
    last: Mutex<Vec<Option<Current>>>,
}

impl RegistryCheck {
    /// Validates the spec and builds the check.
    pub fn build(spec: &RegistrySpec, ctx: &BuildContext) -> Result<RegistryCheck, Vec<Problem>> {
        let mut problems = Vec::new();
        // Every image is validated on every replica; each checks only its own.
        let targets: Vec<Target> = targets(&spec.own.images, ctx, &mut problems)
            .into_iter()
            .filter(|t| ctx.shard.owns(&t.label))
            .collect();
        let setup = RegistrySetup::build(&spec.registry, ctx)
            .map_err(|mut p| problems.append(&mut p))
            .ok();
        match setup {
            Some(setup) if problems.is_empty() => Ok(RegistryCheck {
                check: ctx.meta.name.clone(),
                last: Mutex::new(vec![None; targets.len()]),
                targets,
                setup,
            }),
            _ => Err(problems),
        }
    }

    /// One job per distinct (image, credential), however many targets name it, and
    /// each target's job (`None` for an invalid reference).
    fn jobs(&self) -> (Vec<Job>, Vec<Option<usize>>) {
        let keyring = self.setup.docker_keyring(&self.check);
        let mut jobs: Vec<Job> = Vec::new();
        let mut job_of: HashMap<Job, usize> = HashMap::new();
        let mut target_job = Vec::with_capacity(self.targets.len());
        for t in &self.targets {
            let Ok(image) = &t.parsed else {
                target_job.push(None);
                continue;
            };
            let job = self.setup.job(image, &|r| keyring.lookup(r).cloned());
            let index = *job_of.entry(job.clone()).or_insert_with(|| {
                jobs.push(job);
                jobs.len() - 1
            });
            target_job.push(Some(index));
        }
        (jobs, target_job)
    }

    /// The metrics and error of a run from each job's outcome.
    fn render(&self, outcomes: &[Option<Outcome>], target_job: &[Option<usize>]) -> RunOutput {
        let mut last = lock(&self.last);
        let mut m = FamilySet::new();
        let available = m.family(AVAILABLE, AVAILABLE_HELP, MetricType::Gauge);
        let status = m.family(STATUS, STATUS_HELP, MetricType::Gauge);
        let mut bad: Vec<String> = Vec::new();
        let mut not_checked = 0;
        let mut reports = Vec::with_capacity(self.targets.len());
        for (i, t) in self.targets.iter().enumerate() {
            let outcome = match (&t.parsed, target_job[i]) {
                (Err(e), _) => Some(Outcome::new(Status::InvalidReference, e.clone())),
                (Ok(_), Some(j)) => outcomes.get(j).cloned().flatten(),
                (Ok(_), None) => None,
            };
            match &outcome {
                Some(o) => {
                    if o.status != Status::Available {
                        log::debug!(
                            "check={} image={:?} status={} detail={:?}",
                            self.check,
                            t.label,
                            o.status.as_str(),
                            o.detail
                        );
                        bad.push(format!("{}: {} ({})", t.label, o.status.as_str(), o.detail));
                    }
                    last[i] = Some(Current {
                        status: o.status,
                        source: o.source.clone(),
                    });
                }
                None => not_checked += 1,
            }
            let detail = outcome.map(|o| o.detail);
            reports.push(image_report(t.label.clone(), last[i].as_ref(), detail));
            // An image not reached this run keeps the status of its last check.
            let Some(current) = &last[i] else { continue };
            let labels = [("check", self.check.as_str()), ("image", t.label.as_str())];
            let with_source = self.setup.labels_source();
            image_samples(&mut m, (available, status), &labels, current, with_source);
        }
        self.setup.retry_samples(&mut m, &self.check);
        let error = summarize(&bad, not_checked, self.targets.len(), "images");
        RunOutput {
            success: error.is_none(),
            error,
            families: m,
            targets: reports,
        }
    }
}

/// The `images` list as targets; a duplicate is a problem.
fn targets(
    images: &Spanned<Vec<Spanned<String>>>,
    ctx: &BuildContext,
    problems: &mut Vec<Problem>,
) -> Vec<Target> {
    if images.value.is_empty() {
        problems.push(ctx.problem(
            images.referenced,
            "`images` is empty; list at least one image",
        ));
    }
    let mut seen = HashSet::new();
    let mut targets = Vec::new();
    for image in &images.value {
        if !seen.insert(image.value.as_str()) {
            problems.push(ctx.problem(
                image.referenced,
                format!("image {:?} is listed twice", image.value),
            ));
            continue;
        }
        // A bad reference is reported by the check (status invalid_reference), not
        // refused here: a list maintained elsewhere must not stop every other check.
        targets.push(Target {
            label: image.value.clone(),
            parsed: ImageRef::parse(&image.value),
        });
    }
    targets
}

impl Check for RegistryCheck {
    fn run(&self, ctx: &RunContext) -> RunOutput {
        let (jobs, target_job) = self.jobs();
        let outcomes = self.setup.client.check_all(&jobs, ctx.deadline, ctx.cancel);
        self.render(&outcomes, &target_job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_listed_with_the_shared_ones() {
        let spec: RegistrySpec =
            serde_saphyr::from_str("images: [nginx]\ntls: {insecure_skip_verify: true}\n").unwrap();
        assert_eq!(spec.own.images.value[0].value, "nginx");
        assert!(
            spec.registry
                .connection
                .tls
                .is_some_and(|t| t.insecure_skip_verify)
        );
        let e = serde_saphyr::from_str::<RegistrySpec>("images: [nginx]\nimgaes: [x]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown field `imgaes`, expected one of images, docker_config_file, plain_http_registries, max_concurrency_per_registry, retries, mirrors, tls, proxy_url"),
            "{e}"
        );
    }

    #[test]
    fn the_error_names_the_first_problem_and_counts_the_rest() {
        assert_eq!(summarize(&[], 0, 3, "images"), None);
        assert_eq!(
            summarize(&["a: absent".into()], 0, 3, "images").as_deref(),
            Some("a: absent")
        );
        assert_eq!(
            summarize(&["a: absent".into(), "b: error".into()], 1, 3, "images").as_deref(),
            Some(
                "2 of 3 images not available, e.g. a: absent; 1 of 3 images not checked before the timeout"
            )
        );
    }
}
