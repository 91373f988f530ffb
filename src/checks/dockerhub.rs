//! `kind: dockerhub`: pull statistics of Docker Hub organizations.
//!
//! Each run lists every repository of every configured organization through the Hub
//! client of `net/dockerhub.rs` (paging, login, rate limits and their safety rails live
//! there) and exports pulls, stars and last-update times. With `updated_within` only the
//! repositories updated within that window are listed.
//!
//! An organization whose listing fails keeps its last good values; one that succeeds
//! replaces them, so a deleted repository disappears.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::problem::Spanned;
use serde::{Deserialize, Deserializer};

use super::{BuildContext, Check, KindSpec, LegacyClaim, RunContext, RunOutput};
use crate::metrics::{FamilySet, MetricType};
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
    organizations: Spanned<Vec<Spanned<String>>>,
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
    /// Latest X-RateLimit-Remaining.
    rate_remaining: Option<f64>,
}

/// A configured dockerhub check.
#[derive(Debug)]
pub struct DockerhubCheck {
    check: String,
    organizations: Vec<String>,
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
        let agent = ctx.agent(
            &spec.connection,
            &agent_options(),
            spec.own.organizations.referenced,
            &mut problems,
        );
        let (Some(api), Some(agent), true) = (api, agent, problems.is_empty()) else {
            return Err(problems);
        };
        let check = ctx.meta.name.clone();
        Ok(DockerhubCheck {
            client: Client::new(&check, api, agent, credentials, ctx.meta.timeout),
            check,
            state: Mutex::new(State {
                listings: vec![None; organizations.len()],
                rate_remaining: None,
            }),
            organizations,
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
                let labels = [
                    ("check", self.check.as_str()),
                    ("organization", org.as_str()),
                    ("repository", repo.name.as_str()),
                ];
                if let Some(v) = repo.pulls {
                    m.sample(pulls, &labels, v);
                    if let Some(id) = legacy {
                        m.sample(id, &[("image", &repo.name), ("organization", org)], v);
                    }
                }
                if let Some(v) = repo.stars {
                    m.sample(stars, &labels, v);
                }
                if let Some(v) = repo.last_updated {
                    m.sample(updated, &labels, v);
                }
            }
        }
        if let Some(v) = state.rate_remaining {
            m.sample(remaining, &[("check", &self.check)], v);
        }
        m
    }
}

impl DockerhubCheck {
    /// The status page's report of each repository, most pulled first; down when its
    /// organization was not listed this run (its values are then the last listing's).
    fn reports(&self, state: &State, failed: &[(&str, String)]) -> Vec<TargetReport> {
        let mut reports = Vec::new();
        for (org, listing) in self.organizations.iter().zip(&state.listings) {
            let failure = failed
                .iter()
                .find(|(f, _)| *f == org.as_str())
                .map(|(_, e)| e);
            for repo in listing.iter().flatten() {
                reports.push(TargetReport {
                    target: format!("{org}/{}", repo.name),
                    up: failure.is_none(),
                    pulls: repo.pulls,
                    cause: failure.map(|e| format!("organization not listed this run: {e}")),
                    ..TargetReport::default()
                });
            }
        }
        let pulls = |r: &TargetReport| r.pulls.unwrap_or(-1.0);
        reports.sort_by(|a, b| pulls(b).total_cmp(&pulls(a)));
        reports
    }
}

/// The organizations as written; problems for invalid or repeated ones.
fn organizations(
    spec: &DockerhubSpec,
    ctx: &BuildContext,
    problems: &mut Vec<Problem>,
) -> Vec<String> {
    if spec.own.organizations.value.is_empty() {
        problems.push(ctx.problem(
            spec.own.organizations.referenced,
            "`organizations` is empty; list at least one Docker Hub organization",
        ));
    }
    let mut seen = HashSet::new();
    for org in &spec.own.organizations.value {
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
    spec.own
        .organizations
        .value
        .iter()
        .map(|org| org.value.clone())
        .collect()
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
        let mut failed: Vec<(&str, String)> = Vec::new();
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
            failed.push((org, message));
        }
        // A run that sent nothing (a 429 still holds) keeps the last known value.
        if session.requests() > 0 {
            state.rate_remaining = session.rate_remaining();
        }
        RunOutput {
            success: failed.is_empty(),
            error: run_error(&failed, self.organizations.len()),
            families: self.render(&state),
            targets: self.reports(&state, &failed),
        }
    }
}

/// The run's error: the one failed organization, or how many failed and one example.
fn run_error(failed: &[(&str, String)], organizations: usize) -> Option<String> {
    match failed {
        [] => None,
        [(org, e)] => Some(format!("organization {org}: {e}")),
        [(org, e), ..] => Some(format!(
            "{} of {organizations} organizations not listed, e.g. {org}: {e}",
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
        self.own
            .organizations
            .value
            .iter()
            .map(|org| LegacyClaim {
                series: "docker_image_pulls",
                key: org.value.to_ascii_lowercase(),
                what: format!("organization {:?}", org.value),
                at: Some(org.referenced),
            })
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
            rate_remaining: Some(99.0),
        };
        assert_eq!(
            lines(&check(true).render(&state)),
            [
                r#"sonde_dockerhub_pulls_total{check="hub",organization="a",repository="app"} 12"#,
                r#"sonde_dockerhub_last_updated_timestamp_seconds{check="hub",organization="a",repository="app"} 1.5"#,
                r#"sonde_dockerhub_repositories{check="hub",organization="a"} 1"#,
                r#"sonde_dockerhub_rate_limit_remaining{check="hub"} 99"#,
                r#"docker_image_pulls{image="app",organization="a"} 12"#,
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
        let one = [("a", "HTTP 500 for page 1".to_string())];
        assert_eq!(
            run_error(&one, 2).unwrap(),
            "organization a: HTTP 500 for page 1"
        );
        let two = [one[0].clone(), ("b", "HTTP 404".to_string())];
        assert_eq!(
            run_error(&two, 3).unwrap(),
            "2 of 3 organizations not listed, e.g. a: HTTP 500 for page 1"
        );
    }
}
