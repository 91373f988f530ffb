//! What a kubernetes_images check remembers between runs: the last status of every
//! image still in use (so an image not reached keeps its series), the last determined
//! answer for the legacy metric, and the legacy counters.

use std::collections::{HashMap, HashSet};

use super::plan::{Entry, Plan};
use crate::checks::registry::Current;
use crate::net::kube::Workload;
use crate::net::oci::{Job, Outcome, Status};

/// What a check remembers between runs.
#[derive(Debug, Default)]
pub(super) struct State {
    /// Latest status per checked image (with its credentials).
    pub(super) statuses: HashMap<Job, Current>,
    /// Latest determined answer per checked image, for the legacy metric.
    pub(super) determined: HashMap<Job, bool>,
    pub(super) rechecks: u64,
    pub(super) errors: u64,
}

impl State {
    /// Remembers what this run learned; forgets images no workload uses any more.
    pub(super) fn remember(
        &mut self,
        plan: &Plan,
        workloads: &[Workload],
        outcomes: &[Option<Outcome>],
    ) {
        let mut statuses = HashMap::new();
        let mut determined = HashMap::new();
        for (job, outcome) in plan.jobs.iter().zip(outcomes) {
            let current = match outcome {
                Some(o) => {
                    if o.status.determined().is_none() {
                        self.errors += 1;
                    }
                    Some(Current {
                        status: o.status,
                        source: o.source.clone(),
                    })
                }
                None => self.statuses.get(job).cloned(),
            };
            if let Some(s) = current {
                statuses.insert(job.clone(), s);
            }
            let answer = outcome
                .as_ref()
                .and_then(|o| o.status.determined())
                .or_else(|| self.determined.get(job).copied());
            if let Some(a) = answer {
                determined.insert(job.clone(), a);
            }
        }
        let invalid: HashSet<&str> = plan
            .entries
            .iter()
            .filter(|e| e.job.is_err())
            .map(|e| workloads[e.workload].containers[e.container].1.as_str())
            .collect();
        self.errors += invalid.len() as u64;
        self.statuses = statuses;
        self.determined = determined;
        self.rechecks += 1;
    }

    /// An entry's current status, last determined answer and this run's detail.
    pub(super) fn report(
        &self,
        e: &Entry,
        plan: &Plan,
        outcomes: &[Option<Outcome>],
    ) -> (Option<Current>, Option<bool>, Option<String>) {
        match &e.job {
            Err(why) => {
                let invalid = Current {
                    status: Status::InvalidReference,
                    source: String::new(),
                };
                (Some(invalid), None, Some(why.clone()))
            }
            Ok(j) => {
                let job = &plan.jobs[*j];
                (
                    self.statuses.get(job).cloned(),
                    self.determined.get(job).copied(),
                    outcomes[*j].as_ref().map(|o| o.detail.clone()),
                )
            }
        }
    }
}
