//! `kind: kubernetes_images`: can the images of a cluster's workloads be pulled?
//!
//! The check follows the configured workload kinds (and, with `include_pods`, Jobs no
//! CronJob made and Pods without an owner) through [`crate::net::kube`]'s reflectors:
//! listed once, then watched, so a run reads the current workloads from memory. Each run
//! leaves out, with `skip_disabled`, workloads switched off on purpose (scaled to zero,
//! suspended, finished), takes the images of their containers (and init containers) that
//! `ignored_images` does not exclude, gives each the credentials the kubelet would (the
//! workload's pull secrets or its service account's, then `docker_config_file`), and
//! checks every distinct image and credential once with the registry client
//! `kind: registry` uses.
//!
//! A list that fails keeps the workloads it had, and an image not reached keeps its last
//! status, so one bad run does not make series vanish. With `legacy_metrics`, the series
//! of k8s-image-existence-exporter are exported as well.
//!
//! This file is spec -> build -> run -> render; the reflectors are in `follow.rs`, the
//! choice of images and credentials in `plan.rs` and what is kept between runs in
//! `state.rs` (under `kubernetes/`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::problem::Spanned;
use serde::{Deserialize, Deserializer};
use serde_saphyr::Location;

use super::registry::{RegistrySetup, image_report, image_samples, summarize};
use super::{BuildContext, Check, KindSpec, LegacyClaim, RunContext, RunOutput};
use crate::metrics::{FamilyId, FamilySet, MetricType};
use crate::net::kube::{self, Disabled, Watches, Workload, WorkloadKind};
use crate::net::oci::{Outcome, RegistryKeys, Status};
use crate::problem::Problem;
use crate::store::TargetReport;
use crate::sync::lock;

mod follow;
mod plan;
mod state;

use follow::Followed;
use plan::{Ignored, Plan, Planner};
use state::State;

const AVAILABLE: &str = "sonde_kubernetes_image_available";
const AVAILABLE_HELP: &str = "1 if the container's image exists in its registry, 0 if the registry says it does not; no sample while that cannot be determined.";
const STATUS: &str = "sonde_kubernetes_image_check_status";
const STATUS_HELP: &str =
    "1 for the current status of the container's image check, 0 for the other statuses.";
const WORKLOADS: &str = "sonde_kubernetes_workloads";
const WORKLOADS_HELP: &str = "Workloads of the kind found by the last run.";
const SKIPPED: &str = "sonde_kubernetes_images_skipped";
const SKIPPED_HELP: &str = "Workloads whose images the last run did not check because they are switched off (skip_disabled), by reason.";
const LEGACY_RECHECKS: &str = "k8s_image_existence_exporter_completed_rechecks_total";
const LEGACY_RECHECKS_HELP: &str = "Completed rounds of image checks.";
const LEGACY_ERRORS: &str = "k8s_image_existence_exporter_generic_errors_total";
const LEGACY_ERRORS_HELP: &str =
    "Image checks that ended in an error (neither available nor absent).";

/// The YAML keys of `kind: kubernetes_images`.
#[derive(Clone, Debug, PartialEq)]
pub struct KubernetesSpec {
    own: OwnKeys,
    registry: RegistryKeys,
}

/// The keys only `kind: kubernetes_images` has.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnKeys {
    #[serde(default)]
    api_server: Option<Spanned<String>>,
    #[serde(default)]
    bearer_token_file: Option<Spanned<String>>,
    #[serde(default)]
    ca_file: Option<Spanned<String>>,
    #[serde(default)]
    kubeconfig: Option<Spanned<String>>,
    #[serde(default)]
    context: Option<Spanned<String>>,
    #[serde(default)]
    namespaces: Vec<Spanned<String>>,
    #[serde(default)]
    namespace_selector: Option<Spanned<String>>,
    #[serde(default)]
    workload_kinds: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default = "yes")]
    include_init_containers: bool,
    #[serde(default)]
    ignored_images: Vec<Spanned<String>>,
    #[serde(default = "yes")]
    use_pull_secrets: bool,
    #[serde(default = "yes")]
    skip_disabled: bool,
    #[serde(default)]
    include_pods: bool,
}

fn yes() -> bool {
    true
}

impl<'de> Deserialize<'de> for KubernetesSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<KubernetesSpec, D::Error> {
        let (own, registry) = RegistryKeys::split(deserializer)?;
        Ok(KubernetesSpec { own, registry })
    }
}

impl KindSpec for KubernetesSpec {
    type Check = KubernetesCheck;

    fn build(&self, ctx: &BuildContext) -> Result<KubernetesCheck, Vec<Problem>> {
        KubernetesCheck::build(self, ctx)
    }

    /// The legacy counters carry no label that tells two checks apart: only one
    /// kubernetes_images check may set `legacy_metrics`.
    fn legacy_claims(&self) -> Vec<LegacyClaim> {
        vec![LegacyClaim {
            series: "k8s_image_existence_exporter_*",
            key: String::new(),
            what: "legacy_metrics".into(),
            at: None,
        }]
    }
}

// ---------------------------------------------------------------------------------
// Building

/// A configured kubernetes_images check.
#[derive(Debug)]
pub struct KubernetesCheck {
    check: String,
    api: Arc<kube::Client>,
    kinds: Vec<WorkloadKind>,
    /// The workloads' reflectors; dropped with the check, which stops their threads.
    followed: Followed,
    skip_disabled: bool,
    planner: Planner,
    setup: RegistrySetup,
    legacy: bool,
    state: Mutex<State>,
}

impl KubernetesCheck {
    /// Validates the spec and builds the check; nothing is sent until the first run.
    pub fn build(
        spec: &KubernetesSpec,
        ctx: &BuildContext,
    ) -> Result<KubernetesCheck, Vec<Problem>> {
        let keys = &spec.own;
        let mut problems = Vec::new();
        let connection = kube::Connection {
            api_server: keys.api_server.as_ref(),
            bearer_token_file: keys.bearer_token_file.as_ref(),
            ca_file: keys.ca_file.as_ref(),
            kubeconfig: keys.kubeconfig.as_ref(),
            context: keys.context.as_ref(),
        };
        let api = kube::Client::connect(connection, ctx.base_dir, &ctx.meta.name)
            .map_err(|mut p| problems.append(&mut p))
            .ok()
            .map(Arc::new);
        let namespaces = namespaces(&keys.namespaces, ctx, &mut problems);
        if let Some(selector) = &keys.namespace_selector
            && let Err(e) = kube::validate_selector(&selector.value)
        {
            problems.push(ctx.problem(selector.referenced, format!("namespace_selector: {e}")));
        }
        let mut kinds = workload_kinds(keys.workload_kinds.as_ref(), ctx, &mut problems);
        if keys.include_pods {
            kinds.extend(WorkloadKind::UNOWNED);
        }
        let ignored = ignored_images(&keys.ignored_images, ctx, &mut problems);
        let setup = RegistrySetup::build(&spec.registry, ctx)
            .map_err(|mut p| problems.append(&mut p))
            .ok();
        let watches = api.as_ref().and_then(|api| {
            Watches::new(Arc::clone(api), ctx.meta.timeout)
                .map_err(|e| problems.push(ctx.problem(Location::UNKNOWN, e)))
                .ok()
        });
        let (Some(api), Some(setup), Some(watches), true) =
            (api, setup, watches, problems.is_empty())
        else {
            return Err(problems);
        };
        let selector = keys.namespace_selector.as_ref().map(|s| s.value.clone());
        let followed = Followed::start(
            watches,
            &kinds,
            namespaces,
            selector,
            keys.include_init_containers,
        );
        Ok(KubernetesCheck {
            check: ctx.meta.name.clone(),
            api,
            kinds,
            followed,
            skip_disabled: keys.skip_disabled,
            planner: Planner {
                use_pull_secrets: keys.use_pull_secrets,
                ignored,
                shard: ctx.shard,
            },
            setup,
            legacy: ctx.legacy_metrics,
            state: Mutex::new(State::default()),
        })
    }
}

fn namespaces(
    list: &[Spanned<String>],
    ctx: &BuildContext,
    problems: &mut Vec<Problem>,
) -> Vec<String> {
    let mut namespaces = Vec::new();
    for ns in list {
        if !kube::valid_namespace(&ns.value) {
            problems.push(ctx.problem(
                ns.referenced,
                format!("namespaces: {:?} is not a namespace name", ns.value),
            ));
        } else if !namespaces.contains(&ns.value) {
            namespaces.push(ns.value.clone());
        }
    }
    namespaces
}

fn workload_kinds(
    list: Option<&Spanned<Vec<Spanned<String>>>>,
    ctx: &BuildContext,
    problems: &mut Vec<Problem>,
) -> Vec<WorkloadKind> {
    let Some(list) = list else {
        return WorkloadKind::ALL.to_vec();
    };
    if list.value.is_empty() {
        problems.push(ctx.problem(
            list.referenced,
            "workload_kinds is empty; omit it to read all four kinds",
        ));
    }
    let mut kinds = Vec::new();
    for k in &list.value {
        match WorkloadKind::parse(&k.value) {
            Some(kind) if kinds.contains(&kind) => problems.push(ctx.problem(
                k.referenced,
                format!("workload_kinds: {:?} is listed twice", k.value),
            )),
            Some(kind) => kinds.push(kind),
            None => problems.push(ctx.problem(
                k.referenced,
                format!(
                    "workload_kinds: unknown kind {:?} (use deployment, statefulset, daemonset, cronjob)",
                    k.value
                ),
            )),
        }
    }
    kinds
}

/// `ignored_images`, then `--ignored-images`.
fn ignored_images(
    list: &[Spanned<String>],
    ctx: &BuildContext,
    problems: &mut Vec<Problem>,
) -> Vec<Ignored> {
    let mut ignored = Vec::new();
    for pattern in list {
        if pattern.value.trim().is_empty() {
            problems.push(ctx.problem(pattern.referenced, "ignored_images: empty entry"));
        } else {
            ignored.push(Ignored::new(pattern.value.trim()));
        }
    }
    ignored.extend(ctx.ignored_images.iter().map(|p| Ignored::new(p)));
    ignored
}

// ---------------------------------------------------------------------------------
// Running

impl Check for KubernetesCheck {
    fn run(&self, ctx: &RunContext) -> RunOutput {
        let mut state = lock(&self.state);
        self.api.reread_token();
        let (found, list_errors) = self.followed.workloads(&self.check, ctx.deadline);
        let mut skipped: BTreeMap<Disabled, usize> = BTreeMap::new();
        let checked: Vec<Workload> = found
            .iter()
            .filter(|w| match w.disabled {
                Some(why) if self.skip_disabled => {
                    *skipped.entry(why).or_default() += 1;
                    false
                }
                _ => true,
            })
            .cloned()
            .collect();
        let plan = self
            .planner
            .plan(&self.check, &self.api, &self.setup, &checked, ctx.deadline);
        log::debug!(
            "check={} msg=\"workloads read\" workloads={} skipped={} containers={} distinct_images={}",
            self.check,
            found.len(),
            found.len() - checked.len(),
            plan.entries.len(),
            plan.jobs.len()
        );
        let outcomes = self
            .setup
            .client
            .check_all(&plan.jobs, ctx.deadline, ctx.cancel);
        state.remember(&plan, &checked, &outcomes);
        let mut reports = Vec::with_capacity(plan.entries.len());
        let (mut families, images_error) =
            self.render(&state, &checked, &plan, &outcomes, &mut reports);
        self.render_found(&mut families, &found, &skipped);
        let error = match (list_errors.first(), images_error) {
            (None, e) => e,
            (Some(l), None) if list_errors.len() == 1 => Some(l.clone()),
            (Some(l), None) => Some(format!("{} lists failed, e.g. {l}", list_errors.len())),
            (Some(l), Some(i)) => Some(format!("{l}; {i}")),
        };
        RunOutput {
            success: error.is_none(),
            error,
            families,
            targets: reports,
        }
    }
}

impl KubernetesCheck {
    /// `sonde_kubernetes_workloads` (every workload found, skipped ones included) and
    /// `sonde_kubernetes_images_skipped`.
    fn render_found(
        &self,
        m: &mut FamilySet,
        found: &[Workload],
        skipped: &BTreeMap<Disabled, usize>,
    ) {
        let counts = m.family(WORKLOADS, WORKLOADS_HELP, MetricType::Gauge);
        for kind in &self.kinds {
            let n = found.iter().filter(|w| w.kind == *kind).count();
            let labels = [("check", self.check.as_str()), ("kind", kind.name())];
            m.sample(counts, &labels, n as f64);
        }
        let id = m.family(SKIPPED, SKIPPED_HELP, MetricType::Gauge);
        for reason in Disabled::ALL {
            let n = skipped.get(&reason).copied().unwrap_or(0);
            let labels = [("check", self.check.as_str()), ("reason", reason.as_str())];
            m.sample(id, &labels, n as f64);
        }
    }

    /// The run's metrics, and its error about images; one report per container image
    /// goes to `reports`.
    fn render(
        &self,
        state: &State,
        workloads: &[Workload],
        plan: &Plan,
        outcomes: &[Option<Outcome>],
        reports: &mut Vec<TargetReport>,
    ) -> (FamilySet, Option<String>) {
        let mut m = FamilySet::new();
        let available = m.family(AVAILABLE, AVAILABLE_HELP, MetricType::Gauge);
        let status = m.family(STATUS, STATUS_HELP, MetricType::Gauge);
        let legacy_ids = self.legacy_families(&mut m);
        let mut bad = Vec::new();
        let mut not_checked = 0;
        for e in &plan.entries {
            let w = &workloads[e.workload];
            let (container, image) = &w.containers[e.container];
            let (current, answer, detail) = state.report(e, plan, outcomes);
            let target = format!("{}/{}/{} {container}", w.kind.name(), w.namespace, w.name);
            let mut report = image_report(target.clone(), current.as_ref(), detail.clone());
            report.detail = Some(image.clone());
            reports.push(report);
            let Some(current) = current else {
                not_checked += 1;
                continue;
            };
            if current.status != Status::Available {
                let what = target;
                let detail = detail.map(|d| format!(" ({d})")).unwrap_or_default();
                bad.push(format!(
                    "{what}: {image}: {}{detail}",
                    current.status.as_str()
                ));
            }
            let labels = [
                ("check", self.check.as_str()),
                ("namespace", w.namespace.as_str()),
                ("kind", w.kind.name()),
                ("name", w.name.as_str()),
                ("container", container.as_str()),
                ("image", image.as_str()),
            ];
            let with_source = self.setup.labels_source();
            image_samples(&mut m, (available, status), &labels, &current, with_source);
            if let (Some(id), Some(exists)) = (legacy_ids.get(&w.kind), answer) {
                let labels = [
                    ("namespace", w.namespace.as_str()),
                    ("owner_name", w.name.as_str()),
                    ("container", container.as_str()),
                    ("image", image.as_str()),
                    (w.kind.name(), w.name.as_str()),
                ];
                m.sample(*id, &labels, if exists { 1.0 } else { 0.0 });
            }
        }
        self.setup.retry_samples(&mut m, &self.check);
        if self.legacy {
            let id = m.family(LEGACY_RECHECKS, LEGACY_RECHECKS_HELP, MetricType::Counter);
            m.sample(id, &[], state.rechecks as f64);
            let id = m.family(LEGACY_ERRORS, LEGACY_ERRORS_HELP, MetricType::Counter);
            m.sample(id, &[], state.errors as f64);
        }
        let error = summarize(&bad, not_checked, plan.entries.len(), "container images");
        (m, error)
    }

    /// With `legacy_metrics`, the old exporter's per-kind `image_exists` families.
    fn legacy_families(&self, m: &mut FamilySet) -> HashMap<WorkloadKind, FamilyId> {
        let mut ids = HashMap::new();
        if !self.legacy {
            return ids;
        }
        // The old exporter knew only these four kinds.
        for kind in self.kinds.iter().filter(|k| WorkloadKind::ALL.contains(k)) {
            let name = format!("k8s_image_existence_exporter_{}_image_exists", kind.name());
            let help = format!(
                "1 if the image of the {} container exists in its registry, 0 if it does not (last determined answer).",
                kind.name()
            );
            ids.insert(*kind, m.family(name, help, MetricType::Gauge));
        }
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_listed_with_the_shared_ones() {
        let spec: KubernetesSpec =
            serde_saphyr::from_str("api_server: https://a\nplain_http_registries: [r:5000]\n")
                .unwrap();
        assert!(spec.own.include_init_containers && spec.own.use_pull_secrets);
        assert!(spec.own.skip_disabled && !spec.own.include_pods);
        assert_eq!(spec.registry.plain_http_registries[0].value, "r:5000");
        let e = serde_saphyr::from_str::<KubernetesSpec>("foo: 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown field `foo`, expected one of api_server, bearer_token_file, ca_file, kubeconfig, context, namespaces, namespace_selector, workload_kinds, include_init_containers, ignored_images, use_pull_secrets, skip_disabled, include_pods, docker_config_file, plain_http_registries, max_concurrency_per_registry, retries, mirrors, tls, proxy_url"),
            "{e}"
        );
    }
}
