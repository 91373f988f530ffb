//! The workloads a kubernetes_images check follows: one reflector per workload kind and
//! scope (a listed namespace, or the whole cluster) and, with `namespace_selector`, one
//! for the selected namespaces. Reading them costs no request: the reflectors list
//! once, then watch.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use crate::net::kube::{
    self, Reflector, Watches, Workload, WorkloadKind, decode_namespace, decode_workload,
};

/// The reflectors of one check; dropping it stops their threads.
#[derive(Debug)]
pub(super) struct Followed {
    /// One reflector per kind and scope (a listed namespace, or the whole cluster).
    reflectors: Vec<Reflector<Workload>>,
    /// With `namespace_selector`: the matching namespaces, and those listed beside it.
    selected: Option<(Reflector<String>, Vec<String>)>,
    /// Held for its drop, which stops the reflectors' threads when the check goes away
    /// (a reload that changed or removed it).
    _watches: Watches,
}

impl Followed {
    /// Starts following `kinds` in `namespaces` (all when empty), or cluster-wide
    /// filtered by `selector` and the listed namespaces.
    pub(super) fn start(
        watches: Watches,
        kinds: &[WorkloadKind],
        namespaces: Vec<String>,
        selector: Option<String>,
        include_init: bool,
    ) -> Followed {
        // With a selector, workloads are followed cluster-wide and kept when their
        // namespace is selected or listed: one stream per kind, whatever the namespaces.
        let scopes: Vec<Option<&str>> = if namespaces.is_empty() || selector.is_some() {
            vec![None]
        } else {
            namespaces.iter().map(|n| Some(n.as_str())).collect()
        };
        let mut reflectors = Vec::new();
        for &kind in kinds {
            for scope in &scopes {
                let decode: kube::Decode<Workload> =
                    Arc::new(move |object| decode_workload(kind, include_init, object));
                reflectors.push(watches.reflector(kind.resource_in(*scope), decode));
            }
        }
        let selected = selector.map(|selector| {
            let decode: kube::Decode<String> = Arc::new(decode_namespace);
            let reflector = watches.reflector(kube::namespaces_matching(&selector), decode);
            (reflector, namespaces.clone())
        });
        Followed {
            reflectors,
            selected,
            _watches: watches,
        }
    }

    /// The workloads every reflector holds now (in a selected or listed namespace, with
    /// a selector), sorted by kind, namespace and name, and the errors of lists that
    /// failed (whose last good workloads are still in).
    pub(super) fn workloads(&self, check: &str, deadline: Instant) -> (Vec<Workload>, Vec<String>) {
        let mut list_errors = Vec::new();
        let allowed: Option<HashSet<String>> = self.selected.as_ref().map(|(r, listed)| {
            let view = r.view(deadline);
            list_errors.extend(view.error);
            view.items
                .into_iter()
                .chain(listed.iter().cloned())
                .collect()
        });
        let mut workloads: Vec<Workload> = Vec::new();
        for reflector in &self.reflectors {
            let view = reflector.view(deadline);
            list_errors.extend(view.error);
            workloads.extend(
                view.items
                    .into_iter()
                    .filter(|w| allowed.as_ref().is_none_or(|a| a.contains(&w.namespace))),
            );
        }
        workloads
            .sort_by(|a, b| (a.kind, &a.namespace, &a.name).cmp(&(b.kind, &b.namespace, &b.name)));
        workloads
            .dedup_by(|a, b| a.kind == b.kind && a.namespace == b.namespace && a.name == b.name);
        let counts = self
            .reflectors
            .iter()
            .fold(kube::Counts::default(), |sum, r| {
                let c = r.counts();
                kube::Counts {
                    lists: sum.lists + c.lists,
                    watches: sum.watches + c.watches,
                }
            });
        log::debug!(
            "check={} msg=\"requests to the API server so far\" lists={} watches={}",
            check,
            counts.lists,
            counts.watches
        );
        (workloads, list_errors)
    }
}
