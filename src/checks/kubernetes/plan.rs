//! Which images a kubernetes_images run checks: every container image of the workloads
//! read, less those `ignored_images` excludes and those another shard owns, each with
//! the credential its pods would use (the workload's pull secrets, then
//! `docker_config_file`), folded into one job per distinct image and credential.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::checks::registry::RegistrySetup;
use crate::net::image_ref::ImageRef;
use crate::net::kube::{self, PullSecrets, Workload};
use crate::net::oci::{Job, Keyring, glob_match};
use crate::shard::Shard;

/// One entry of `ignored_images` / `--ignored-images`.
#[derive(Clone, Debug)]
pub(super) struct Ignored {
    pattern: String,
    /// The pattern normalised as a reference, when it has no `*` and parses.
    normalised: Option<String>,
}

impl Ignored {
    pub(super) fn new(pattern: &str) -> Ignored {
        let normalised = if pattern.contains('*') {
            None
        } else {
            ImageRef::parse(pattern).ok().map(|r| r.to_string())
        };
        Ignored {
            pattern: pattern.to_string(),
            normalised,
        }
    }

    /// Whether `raw` (its normalised form `full`) is ignored: an exact or glob match of
    /// either form.
    fn matches(&self, raw: &str, full: Option<&str>) -> bool {
        if self.pattern.contains('*') {
            glob_match(self.pattern.as_bytes(), raw.as_bytes())
                || full.is_some_and(|f| glob_match(self.pattern.as_bytes(), f.as_bytes()))
        } else {
            self.pattern == raw
                || full.is_some_and(|f| f == self.pattern || Some(f) == self.normalised.as_deref())
        }
    }
}

/// The keys that choose a run's images and their credentials.
#[derive(Debug)]
pub(super) struct Planner {
    pub(super) use_pull_secrets: bool,
    pub(super) ignored: Vec<Ignored>,
    /// With `--shard`, the images this replica checks (every replica reads every
    /// workload, each checks its own images).
    pub(super) shard: Shard,
}

/// One container image to report.
pub(super) struct Entry {
    pub(super) workload: usize,
    pub(super) container: usize,
    /// The job that checks it, or why the reference is invalid.
    pub(super) job: Result<usize, String>,
}

/// What a run checks: the distinct jobs, and every container image that maps to one.
#[derive(Default)]
pub(super) struct Plan {
    pub(super) jobs: Vec<Job>,
    pub(super) entries: Vec<Entry>,
}

impl Planner {
    /// The images to check: every container's that is not ignored, with the
    /// credential its pods would use.
    pub(super) fn plan(
        &self,
        check: &str,
        api: &kube::Client,
        setup: &RegistrySetup,
        workloads: &[Workload],
        deadline: Instant,
    ) -> Plan {
        let docker = setup.docker_keyring(check);
        let mut secrets = PullSecrets::new(api, deadline);
        let mut plan = Plan::default();
        let mut job_index: HashMap<Job, usize> = HashMap::new();
        for (wi, w) in workloads.iter().enumerate() {
            // Fetched for the first image that needs it, at most once per workload.
            let mut keyring: Option<Arc<Keyring>> = None;
            for (ci, (_, image)) in w.containers.iter().enumerate() {
                let Some(parsed) = self.unless_ignored(image) else {
                    continue;
                };
                // Sharded by the image as checked, so two spellings of one image are
                // checked by one replica.
                let key = parsed
                    .as_ref()
                    .map_or_else(|_| image.clone(), ToString::to_string);
                if !self.shard.owns(&key) {
                    continue;
                }
                let job = parsed.map(|r| {
                    let keyring = keyring.get_or_insert_with(|| {
                        if self.use_pull_secrets {
                            secrets.keyring_for(w)
                        } else {
                            Arc::new(Keyring::default())
                        }
                    });
                    let keyring: &Keyring = keyring;
                    let job = setup.job(&r, &|at| {
                        keyring.lookup(at).or_else(|| docker.lookup(at)).cloned()
                    });
                    *job_index.entry(job.clone()).or_insert_with(|| {
                        plan.jobs.push(job);
                        plan.jobs.len() - 1
                    })
                });
                plan.entries.push(Entry {
                    workload: wi,
                    container: ci,
                    job,
                });
            }
        }
        plan
    }

    /// A container's image parsed, or `None` when `ignored_images` excludes it.
    fn unless_ignored(&self, image: &str) -> Option<Result<ImageRef, String>> {
        let parsed = if image.is_empty() {
            Err("the container has no image".to_string())
        } else {
            ImageRef::parse(image)
        };
        let full = parsed.as_ref().ok().map(ToString::to_string);
        let ignored = self
            .ignored
            .iter()
            .any(|i| i.matches(image, full.as_deref()));
        (!ignored).then_some(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_images_match_raw_normalised_and_globs() {
        let cases = [
            ("nginx:1.11", "nginx:1.11", true),
            ("nginx:1.11", "docker.io/library/nginx:1.11", true),
            ("docker.io/library/nginx:1.11", "nginx:1.11", true),
            ("nginx:1.11", "nginx:1.12", false),
            ("nginx", "nginx:latest", true),
            (
                "registry.local/legacy/*",
                "registry.local/legacy/app:v1",
                true,
            ),
            (
                "registry.local/legacy/*",
                "registry.local/legacy/team/app",
                true,
            ),
            (
                "registry.local/legacy/*",
                "registry.local/current/app:v1",
                false,
            ),
            ("docker.io/library/*", "busybox", true),
            ("Not A Ref", "Not A Ref", true),
        ];
        for (pattern, image, expected) in cases {
            let full = ImageRef::parse(image).ok().map(|r| r.to_string());
            assert_eq!(
                Ignored::new(pattern).matches(image, full.as_deref()),
                expected,
                "{pattern} vs {image}"
            );
        }
    }
}
