//! `kind: dockerhub`: pull statistics of Docker Hub organizations and single repositories.
//!
//! Each run lists every repository of every configured organization through the Hub
//! client of `net/dockerhub.rs` (paging, login, rate limits and their safety rails live
//! there), reads each repository named in `repositories` on its own, and exports pulls,
//! stars and last-update times. With `updated_within` only the repositories of an
//! organization updated within that window are listed.
//!
//! An organization or repository whose request fails keeps its last good values; one
//! that succeeds replaces them, so a deleted repository disappears.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::problem::Spanned;
use serde::{Deserialize, Deserializer};

use super::{BuildContext, Check, KindSpec, LegacyClaim, RunContext, RunOutput};
use crate::metrics::{FamilyId, FamilySet, MetricType};
use crate::net::dockerhub::{
    Api, Client, Credentials, DEFAULT_API_URL, ListError, Repository, Session, agent_options,
    valid_namespace,
};
use crate::net::http::ConnectionKeys;
use crate::problem::Problem;
use crate::store::TargetReport;
use crate::sync::lock;
use crate::units::DurationValue;

const PULLS: &str = "sonde_dockerhub_pulls_total";
const PULLS_HELP: &str = "Pulls of the repository (pull_count of the Docker Hub API).";
const STARS: &str = "sonde_dockerhub_stars";
const STARS_HELP: &str = "Stars of the repository (star_count of the Docker Hub API).";
const LAST_UPDATED: &str = "sonde_dockerhub_last_updated_timestamp_seconds";
const LAST_UPDATED_HELP: &str =
    "When the repository was last updated (Unix time); absent when Docker Hub reports none.";
const REPOSITORIES: &str = "sonde_dockerhub_repositories";
const REPOSITORIES_HELP: &str =
    "Repositories of the organization exported from its latest successful listing.";
const RATE_REMAINING: &str = "sonde_dockerhub_rate_limit_remaining";
const RATE_REMAINING_HELP: &str = "Requests left in the Docker Hub API rate-limit window (X-RateLimit-Remaining of the latest response).";
const LEGACY_PULLS: &str = "docker_image_pulls";
const LEGACY_PULLS_HELP: &str = "Number of DockerHub image pulls";

/// The YAML keys of `kind: dockerhub`: its own and the connection keys.
#[derive(Clone, Debug, PartialEq)]
pub struct DockerhubSpec {
    own: OwnKeys,
    connection: ConnectionKeys,
}

impl<'de> Deserialize<'de> for DockerhubSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<DockerhubSpec, D::Error> {
        let mut connection = ConnectionKeys::default();
        let own =
            crate::keys::split_listed(deserializer, &mut connection, &[&ConnectionKeys::NAMES])?;
        Ok(DockerhubSpec { own, connection })
    }
}

/// The keys only `kind: dockerhub` has.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnKeys {
    #[serde(default)]
    organizations: Option<Spanned<Vec<Spanned<String>>>>,
    /// Single repositories, `namespace/name`.
    #[serde(default)]
    repositories: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    api_url: Option<Spanned<String>>,
    #[serde(default)]
    updated_within: Option<Spanned<DurationValue>>,
    #[serde(default)]
    username: Option<Spanned<String>>,
    #[serde(default)]
    token_file: Option<Spanned<String>>,
}

/// What outlives a run.
#[derive(Debug, Default)]
struct State {
    /// Last good listing of each organization, in the order of `organizations`.
    listings: Vec<Option<Vec<Repository>>>,
    /// Last good answer for each of `repositories`, in their order (`None` before the
    /// first and after the API said the repository does not exist).
    singles: Vec<Option<Repository>>,
    /// Latest X-RateLimit-Remaining.
    rate_remaining: Option<f64>,
}

/// One of `repositories`.
#[derive(Clone, Debug, PartialEq)]
struct Single {
    namespace: String,
    name: String,
}

/// A configured dockerhub check.
#[derive(Debug)]
pub struct DockerhubCheck {
    check: String,
    organizations: Vec<String>,
    repositories: Vec<Single>,
    window: Option<Duration>,
    client: Client,
    legacy: bool,
    state: Mutex<State>,
}

impl DockerhubCheck {
    /// Validates the spec and builds the check; every problem is reported, not the first.
    pub fn build(spec: &DockerhubSpec, ctx: &BuildContext) -> Result<DockerhubCheck, Vec<Problem>> {
        let mut problems = Vec::new();
        let organizations = organizations(spec, ctx, &mut problems);
        let repositories = repositories(spec, &organizations, ctx, &mut problems);
        // Everything is validated on every replica; each lists only its own part.
        let organizations: Vec<String> = organizations
            .into_iter()
            .filter(|org| ctx.shard.owns(org))
            .collect();
        let repositories: Vec<Single> = repositories
            .into_iter()
            .filter(|r| ctx.shard.owns(&format!("{}/{}", r.namespace, r.name)))
            .collect();
        let api = match &spec.own.api_url {
            None => Api::parse(DEFAULT_API_URL).ok(),
            Some(u) => match Api::parse(&u.value) {
                Ok(api) => Some(api),
                Err(e) => {
                    problems.push(ctx.problem(u.referenced, e));
                    None
                }
            },
        };
        let window = match &spec.own.updated_within {
            Some(w) if w.value.0.is_zero() => {
                problems.push(ctx.problem(
                    w.referenced,
                    "updated_within must be greater than 0; omit it to export every repository",
                ));
                None
            }
            Some(w) => Some(w.value.0),
            None => None,
        };
        let credentials = credentials(spec, ctx, &mut problems);
        let at = spec
            .own
            .organizations
            .as_ref()
            .or(spec.own.repositories.as_ref())
            .map_or(serde_saphyr::Location::UNKNOWN, |l| l.referenced);
        let agent = ctx.agent(&spec.connection, &agent_options(), at, &mut problems);
        let (Some(api), Some(agent), true) = (api, agent, problems.is_empty()) else {
            return Err(problems);
        };
        let check = ctx.meta.name.clone();
        Ok(DockerhubCheck {
            client: Client::new(&check, api, agent, credentials, ctx.meta.timeout),
            check,
            state: Mutex::new(State {
                listings: vec![None; organizations.len()],
                singles: vec![None; repositories.len()],
                rate_remaining: None,
            }),
            organizations,
            repositories,
            window,
            legacy: ctx.legacy_metrics,
        })
    }

    /// Lists organization `i` and keeps the listing as its last good values.
    fn list_into(
        &self,
        session: &mut Session,
        state: &mut State,
        i: usize,
        since: Option<f64>,
    ) -> Result<(), ListError> {
        let org = &self.organizations[i];
        let started = Instant::now();
        let before = session.requests();
        let listing = session.list(org, since)?;
        log::debug!(
            "check={} organization={org} msg=\"listed repositories\" repositories={} pages={} requests={} duration={:?}",
            self.check,
            listing.repositories.len(),
            listing.pages,
            session.requests() - before,
            started.elapsed()
        );
        state.listings[i] = Some(listing.repositories);
        Ok(())
    }

    /// Reads repository `i` of `repositories`: a good answer replaces its last values,
    /// a 404 removes them (and fails the run, since it was named), an error keeps them.
    fn read_single(
        &self,
        session: &mut Session,
        state: &mut State,
        i: usize,
    ) -> Result<(), ListError> {
        let Single { namespace, name } = &self.repositories[i];
        match session.repository(namespace, name)? {
            Some(repository) => {
                state.singles[i] = Some(repository);
                Ok(())
            }
            None => {
                state.singles[i] = None;
                Err(ListError::Failed(format!(
                    "HTTP 404: no repository {namespace}/{name} on Docker Hub"
                )))
            }
        }
    }

    fn render(&self, state: &State) -> FamilySet {
        let mut m = FamilySet::new();
        let pulls = m.family(PULLS, PULLS_HELP, MetricType::Counter);
        let stars = m.family(STARS, STARS_HELP, MetricType::Gauge);
        let updated = m.family(LAST_UPDATED, LAST_UPDATED_HELP, MetricType::Gauge);
        let count = m.family(REPOSITORIES, REPOSITORIES_HELP, MetricType::Gauge);
        let remaining = m.family(RATE_REMAINING, RATE_REMAINING_HELP, MetricType::Gauge);
        let legacy = self
            .legacy
            .then(|| m.family(LEGACY_PULLS, LEGACY_PULLS_HELP, MetricType::Gauge));
        let ids = Families {
            pulls,
            stars,
            updated,
            legacy,
        };
        for (org, listing) in self.organizations.iter().zip(&state.listings) {
            let Some(repositories) = listing else {
                continue;
            };
            m.sample(
                count,
                &[("check", &self.check), ("organization", org)],
                repositories.len() as f64,
            );
            for repo in repositories {
                repository_samples(&mut m, &ids, &self.check, org, repo);
            }
        }
        for (single, last) in self.repositories.iter().zip(&state.singles) {
            if let Some(repo) = last {
                repository_samples(&mut m, &ids, &self.check, &single.namespace, repo);
            }
        }
        if let Some(v) = state.rate_remaining {
            m.sample(remaining, &[("check", &self.check)], v);
        }
        m
    }
}

/// The families one repository's samples go to.
struct Families {
    pulls: FamilyId,
    stars: FamilyId,
    updated: FamilyId,
    legacy: Option<FamilyId>,
}

/// Pulls, stars and last update of one repository, as far as the API gave them.
fn repository_samples(
    m: &mut FamilySet,
    ids: &Families,
    check: &str,
    namespace: &str,
    repo: &Repository,
) {
    let labels = [
        ("check", check),
        ("organization", namespace),
        ("repository", repo.name.as_str()),
    ];
    if let Some(v) = repo.pulls {
        m.sample(ids.pulls, &labels, v);
        if let Some(id) = ids.legacy {
            m.sample(id, &[("image", &repo.name), ("organization", namespace)], v);
        }
    }
    if let Some(v) = repo.stars {
        m.sample(ids.stars, &labels, v);
    }
    if let Some(v) = repo.last_updated {
        m.sample(ids.updated, &labels, v);
    }
}

impl DockerhubCheck {
    /// The status page's report of each repository, most pulled first; down when its
    /// organization was not listed this run (its values are then the last listing's).
    fn reports(&self, state: &State, failed: &[(String, String)]) -> Vec<TargetReport> {
        let failure = |what: String| failed.iter().find(|(f, _)| *f == what).map(|(_, e)| e);
        let mut reports = Vec::new();
        let mut report = |namespace: &str, repo: &Repository, cause: Option<String>| {
            reports.push(TargetReport {
                target: format!("{namespace}/{}", repo.name),
                up: cause.is_none(),
                pulls: repo.pulls,
                cause,
                ..TargetReport::default()
            });
        };
        for (org, listing) in self.organizations.iter().zip(&state.listings) {
            let cause = failure(format!("organization {org}"))
                .map(|e| format!("organization not listed this run: {e}"));
            for repo in listing.iter().flatten() {
                report(org, repo, cause.clone());
            }
        }
        for (single, last) in self.repositories.iter().zip(&state.singles) {
            let what = format!("repository {}/{}", single.namespace, single.name);
            let cause = failure(what).map(|e| format!("not read this run: {e}"));
            if let Some(repo) = last {
                report(&single.namespace, repo, cause);
            }
        }
        let pulls = |r: &TargetReport| r.pulls.unwrap_or(-1.0);
        reports.sort_by(|a, b| pulls(b).total_cmp(&pulls(a)));
        reports
    }
}

/// The organizations as written; problems for invalid or repeated ones, and for a check
/// with neither organizations nor repositories.
fn organizations(
    spec: &DockerhubSpec,
    ctx: &BuildContext,
    problems: &mut Vec<Problem>,
) -> Vec<String> {
    let some = |list: &Option<Spanned<Vec<Spanned<String>>>>| {
        list.as_ref().is_some_and(|l| !l.value.is_empty())
    };
    let own = &spec.own;
    if !some(&own.organizations) && !some(&own.repositories) {
        let message = "list at least one Docker Hub organization in `organizations` or one namespace/name in `repositories`";
        let at = own
            .organizations
            .as_ref()
            .or(own.repositories.as_ref())
            .map_or(serde_saphyr::Location::UNKNOWN, |empty| empty.referenced);
        problems.push(ctx.problem(at, message));
    }
    let Some(list) = &own.organizations else {
        return Vec::new();
    };
    let mut seen = HashSet::new();
    for org in &list.value {
        if !valid_namespace(&org.value) {
            problems.push(ctx.problem(
                org.referenced,
                format!(
                    "organization {:?} is not a Docker Hub namespace (letters, digits, '.', '_' and '-')",
                    org.value
                ),
            ));
        } else if !seen.insert(org.value.to_ascii_lowercase()) {
            problems.push(ctx.problem(
                org.referenced,
                format!("organization {:?} is listed twice", org.value),
            ));
        }
    }
    list.value.iter().map(|org| org.value.clone()).collect()
}

/// `repositories` as namespace and name; problems for malformed or repeated entries and
/// for one that an organization of the check already lists (its series would be
/// exported twice).
fn repositories(
    spec: &DockerhubSpec,
    organizations: &[String],
    ctx: &BuildContext,
    problems: &mut Vec<Problem>,
) -> Vec<Single> {
    let Some(list) = &spec.own.repositories else {
        return Vec::new();
    };
    let mut seen = HashSet::new();
    let mut singles = Vec::new();
    for entry in &list.value {
        let parsed = entry
            .value
            .split_once('/')
            .filter(|(ns, name)| valid_namespace(ns) && valid_namespace(name));
        let Some((namespace, name)) = parsed else {
            let hint = if valid_namespace(&entry.value) {
                format!(" (an official image is library/{})", entry.value)
            } else {
                String::new()
            };
            problems.push(ctx.problem(
                entry.referenced,
                format!("repository {:?} is not namespace/name{hint}", entry.value),
            ));
            continue;
        };
        if organizations
            .iter()
            .any(|o| o.eq_ignore_ascii_case(namespace))
        {
            problems.push(ctx.problem(
                entry.referenced,
                format!(
                    "repository {:?} is already listed through organization {namespace:?}",
                    entry.value
                ),
            ));
        } else if !seen.insert(entry.value.to_ascii_lowercase()) {
            problems.push(ctx.problem(
                entry.referenced,
                format!("repository {:?} is listed twice", entry.value),
            ));
        } else {
            singles.push(Single {
                namespace: namespace.to_string(),
                name: name.to_string(),
            });
        }
    }
    singles
}

/// `username` and `token_file`, which go together; the token file must be readable now.
fn credentials(
    spec: &DockerhubSpec,
    ctx: &BuildContext,
    problems: &mut Vec<Problem>,
) -> Option<Credentials> {
    match (&spec.own.username, &spec.own.token_file) {
        (Some(user), Some(file)) => {
            if user.value.is_empty() {
                problems.push(ctx.problem(user.referenced, "username is empty"));
            }
            match Credentials::open(user.value.clone(), ctx.resolve(&file.value)) {
                Ok(credentials) => Some(credentials),
                Err(e) => {
                    problems.push(ctx.problem(file.referenced, e));
                    None
                }
            }
        }
        (Some(user), None) => {
            problems.push(ctx.problem(
                user.referenced,
                "username needs token_file (a personal or organization access token)",
            ));
            None
        }
        (None, Some(file)) => {
            problems.push(ctx.problem(
                file.referenced,
                "token_file needs username (the Docker Hub user or organization it belongs to)",
            ));
            None
        }
        (None, None) => None,
    }
}

impl Check for DockerhubCheck {
    fn run(&self, ctx: &RunContext) -> RunOutput {
        let mut state = lock(&self.state);
        let since = self.window.map(|w| unix_now() - w.as_secs_f64());
        let mut session = self.client.session(ctx.deadline, ctx.cancel);
        let mut failed: Vec<(String, String)> = Vec::new();
        for (i, org) in self.organizations.iter().enumerate() {
            let Err(e) = self.list_into(&mut session, &mut state, i, since) else {
                continue;
            };
            let message = self.client.redact(e.message());
            match e {
                ListError::Blocked(_) => log::debug!(
                    "check={} organization={org} msg=\"not listed; keeping the last values\" error={message:?}",
                    self.check
                ),
                ListError::Failed(_) => log::warn!(
                    "check={} organization={org} msg=\"cannot list repositories; keeping the last values\" error={message:?}",
                    self.check
                ),
            }
            failed.push((format!("organization {org}"), message));
        }
        for (i, single) in self.repositories.iter().enumerate() {
            let Err(e) = self.read_single(&mut session, &mut state, i) else {
                continue;
            };
            let message = self.client.redact(e.message());
            let repository = format!("{}/{}", single.namespace, single.name);
            match e {
                ListError::Blocked(_) => log::debug!(
                    "check={} repository={repository} msg=\"not read; keeping the last values\" error={message:?}",
                    self.check
                ),
                ListError::Failed(_) => log::warn!(
                    "check={} repository={repository} msg=\"cannot read the repository\" error={message:?}",
                    self.check
                ),
            }
            failed.push((format!("repository {repository}"), message));
        }
        // A run that sent nothing (a 429 still holds) keeps the last known value.
        if session.requests() > 0 {
            state.rate_remaining = session.rate_remaining();
        }
        RunOutput {
            success: failed.is_empty(),
            error: run_error(&failed, self.organizations.len() + self.repositories.len()),
            families: self.render(&state),
            targets: self.reports(&state, &failed),
        }
    }
}

/// The run's error: the one failed organization or repository, or how many failed and
/// one example.
fn run_error(failed: &[(String, String)], targets: usize) -> Option<String> {
    match failed {
        [] => None,
        [(what, e)] => Some(format!("{what}: {e}")),
        [(what, e), ..] => Some(format!(
            "{} of {targets} organizations and repositories not read, e.g. {what}: {e}",
            failed.len(),
        )),
    }
}

/// Unix time now; a clock before 1970 reads as 0 rather than failing the run.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl KindSpec for DockerhubSpec {
    type Check = DockerhubCheck;

    fn build(&self, ctx: &BuildContext) -> Result<DockerhubCheck, Vec<Problem>> {
        DockerhubCheck::build(self, ctx)
    }

    /// `docker_image_pulls{image,organization}`: an organization in two legacy checks
    /// would be exported twice.
    fn legacy_claims(&self) -> Vec<LegacyClaim> {
        let organizations = self.own.organizations.iter().flat_map(|l| &l.value);
        let repositories = self.own.repositories.iter().flat_map(|l| &l.value);
        organizations
            .map(|org| LegacyClaim {
                series: "docker_image_pulls",
                key: org.value.to_ascii_lowercase(),
                what: format!("organization {:?}", org.value),
                at: Some(org.referenced),
            })
            .chain(repositories.map(|repo| LegacyClaim {
                series: "docker_image_pulls",
                key: repo.value.to_ascii_lowercase(),
                what: format!("repository {:?}", repo.value),
                at: Some(repo.referenced),
            }))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::http::{self, TlsSettings};

    fn check(legacy: bool) -> DockerhubCheck {
        let agent = http::agent(&TlsSettings::webpki(), &agent_options()).unwrap();
        let api = Api::parse(DEFAULT_API_URL).unwrap();
        DockerhubCheck {
            check: "hub".into(),
            organizations: vec!["a".into(), "b".into()],
            repositories: vec![Single {
                namespace: "c".into(),
                name: "one".into(),
            }],
            window: None,
            client: Client::new("hub", api, agent, None, Duration::from_secs(1)),
            legacy,
            state: Mutex::new(State::default()),
        }
    }

    fn lines(set: &FamilySet) -> Vec<String> {
        set.indexed()
            .flat_map(|(_, f)| f.lines.lines().map(str::to_string).collect::<Vec<_>>())
            .collect()
    }

    #[test]
    fn only_listed_organizations_are_rendered_and_missing_values_are_absent() {
        let state = State {
            listings: vec![
                Some(vec![Repository {
                    name: "app".into(),
                    pulls: Some(12.0),
                    stars: None,
                    last_updated: Some(1.5),
                }]),
                None,
            ],
            singles: vec![Some(Repository {
                name: "one".into(),
                pulls: Some(5.0),
                stars: Some(1.0),
                last_updated: None,
            })],
            rate_remaining: Some(99.0),
        };
        assert_eq!(
            lines(&check(true).render(&state)),
            [
                r#"sonde_dockerhub_pulls_total{check="hub",organization="a",repository="app"} 12"#,
                r#"sonde_dockerhub_pulls_total{check="hub",organization="c",repository="one"} 5"#,
                r#"sonde_dockerhub_stars{check="hub",organization="c",repository="one"} 1"#,
                r#"sonde_dockerhub_last_updated_timestamp_seconds{check="hub",organization="a",repository="app"} 1.5"#,
                r#"sonde_dockerhub_repositories{check="hub",organization="a"} 1"#,
                r#"sonde_dockerhub_rate_limit_remaining{check="hub"} 99"#,
                r#"docker_image_pulls{image="app",organization="a"} 12"#,
                r#"docker_image_pulls{image="one",organization="c"} 5"#,
            ]
        );
        let legacy_free = lines(&check(false).render(&state));
        assert!(
            !legacy_free
                .iter()
                .any(|l| l.starts_with("docker_image_pulls"))
        );
    }

    #[test]
    fn the_run_error_names_the_failed_organization() {
        assert_eq!(run_error(&[], 2), None);
        let one = [(
            "organization a".to_string(),
            "HTTP 500 for page 1".to_string(),
        )];
        assert_eq!(
            run_error(&one, 2).unwrap(),
            "organization a: HTTP 500 for page 1"
        );
        let two = [
            one[0].clone(),
            ("repository b/c".to_string(), "HTTP 404".to_string()),
        ];
        assert_eq!(
            run_error(&two, 3).unwrap(),
            "2 of 3 organizations and repositories not read, e.g. organization a: HTTP 500 for page 1"
        );
    }
}
