//! Integration tests of `kind: dockerhub` against a fixture Docker Hub on 127.0.0.1.
//!
//! The fixture follows the documented API (docker/docs `reference/api/hub/latest.yaml`):
//! `GET /v2/namespaces/{ns}/repositories` with `page`, `page_size` (1-100, default 10)
//! and `ordering`, absolute `next` links built from the Host header, 404 past the last
//! page, 401 for a private namespace without a valid Bearer token, `X-RateLimit-*` on
//! every answer, `GET /v2/namespaces/{ns}/repositories/{name}` (a `repository_info`, 404
//! for an unknown one), and `POST /v2/auth/token` (`identifier`, `secret` ->
//! `access_token`, a JWT with `exp`). Faults (429s, broken pages) are queued per
//! namespace by the tests.

mod common;
#[path = "images/readme.rs"]
mod readme;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Dir, Exposition, Fixture, Reply, SeenRequest, Sonde, promtool_check_metrics, run};

const SECRET: &str = "dckr_pat_s3cr3t-VALUE-never-logged";

#[derive(Clone, Debug)]
struct Repo {
    name: String,
    pulls: u64,
    stars: u64,
    /// Unix seconds; `None` is a JSON null.
    last_updated: Option<f64>,
}

fn repo(name: &str, pulls: u64, stars: u64, last_updated: Option<f64>) -> Repo {
    Repo {
        name: name.into(),
        pulls,
        stars,
        last_updated,
    }
}

/// What a namespace's `next` links look like.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Next {
    /// As documented.
    Normal,
    /// Points at another host.
    Foreign,
    /// Points back at the page itself.
    Loop,
    /// Always one more (empty) page.
    Endless,
    /// Ignores `page_size`: every page lists 60,000 repositories and links to one more.
    Flood,
}

#[derive(Clone, Debug)]
enum Fault {
    /// 429 with these headers and body.
    TooMany {
        headers: Vec<(String, String)>,
        body: String,
        content_type: &'static str,
    },
    /// Any status with a JSON message.
    Status(u16),
    /// 200 with this body.
    Body(Vec<u8>),
}

struct Namespace {
    repos: Vec<Repo>,
    private: bool,
    next: Next,
    /// Answered instead of the listing while `times` is not 0 (`u32::MAX`: until cleared).
    fault: Option<(Fault, u32)>,
    /// Applied to the repositories once page 1 has been served (a listing that changes
    /// while it is read).
    after_page_1: Option<Change>,
}

/// A change to a namespace's repositories.
type Change = Box<dyn FnOnce(&mut Vec<Repo>) + Send>;

/// What the fixture made of a request's Authorization header.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Auth {
    None,
    Valid,
    Expired,
    Revoked,
    Unknown,
}

/// One request as the fixture answered it.
#[derive(Clone, Debug)]
struct Hit {
    at: SystemTime,
    method: String,
    path: String,
    auth: Auth,
    status: u16,
}

struct Token {
    value: String,
    exp: f64,
    revoked: bool,
}

struct HubState {
    namespaces: BTreeMap<String, Namespace>,
    username: String,
    secret: String,
    token_lifetime: f64,
    tokens: Vec<Token>,
    /// Bodies of POST /v2/auth/token.
    logins: Vec<String>,
    hits: Vec<Hit>,
    remaining: i64,
}

/// The fixture Docker Hub.
struct Hub {
    fixture: Fixture,
    state: Arc<Mutex<HubState>>,
}

impl Hub {
    fn start() -> Hub {
        let state = Arc::new(Mutex::new(HubState {
            namespaces: BTreeMap::new(),
            username: "sondebot".into(),
            secret: SECRET.into(),
            token_lifetime: 600.0,
            tokens: Vec::new(),
            logins: Vec::new(),
            hits: Vec::new(),
            remaining: 180,
        }));
        let shared = Arc::clone(&state);
        let fixture = Fixture::start(move |req| {
            let mut hub = shared.lock().unwrap();
            let (reply, auth) = hub.answer(req);
            let status = match &reply {
                Reply::Http { status, .. } => *status,
                Reply::Hang => 0,
            };
            hub.hits.push(Hit {
                at: SystemTime::now(),
                method: req.method.clone(),
                path: req.path.clone(),
                auth,
                status,
            });
            reply
        });
        Hub { fixture, state }
    }

    fn api_url(&self) -> String {
        self.fixture.url("")
    }

    fn add(&self, name: &str, repos: Vec<Repo>) {
        self.state.lock().unwrap().namespaces.insert(
            name.into(),
            Namespace {
                repos,
                private: false,
                next: Next::Normal,
                fault: None,
                after_page_1: None,
            },
        );
    }

    fn with<T>(&self, f: impl FnOnce(&mut HubState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    fn namespace<T>(&self, name: &str, f: impl FnOnce(&mut Namespace) -> T) -> T {
        self.with(|h| f(h.namespaces.get_mut(name).unwrap()))
    }

    fn fault(&self, name: &str, fault: Fault, times: u32) {
        self.namespace(name, |ns| ns.fault = Some((fault, times)));
    }

    fn hits(&self) -> Vec<Hit> {
        self.state.lock().unwrap().hits.clone()
    }

    /// Listing requests of a namespace so far.
    fn listings(&self, name: &str) -> Vec<Hit> {
        let prefix = format!("/v2/namespaces/{name}/repositories");
        self.hits()
            .into_iter()
            .filter(|h| h.path.starts_with(&prefix))
            .collect()
    }

    fn issued_tokens(&self) -> Vec<String> {
        self.with(|h| h.tokens.iter().map(|t| t.value.clone()).collect())
    }
}

impl HubState {
    fn answer(&mut self, req: &SeenRequest) -> (Reply, Auth) {
        self.remaining = (self.remaining - 1).max(0);
        let auth = self.check_token(req.header("authorization"));
        let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
        let reply = if req.method == "POST" && path == "/v2/auth/token" {
            self.login(&req.body)
        } else if req.method == "GET"
            && let Some((ns, name)) = path
                .strip_prefix("/v2/namespaces/")
                .and_then(|p| p.split_once("/repositories/"))
        {
            self.one(ns, name, auth)
        } else if req.method == "GET"
            && let Some(name) = path
                .strip_prefix("/v2/namespaces/")
                .and_then(|p| p.strip_suffix("/repositories"))
        {
            let host = req.header("host").unwrap_or("127.0.0.1");
            let this = format!("http://{host}{}", req.path);
            self.list(name, query, auth, host, this)
        } else {
            json(404, r#"{"message":"page not found"}"#.into())
        };
        (self.rate_headers(reply), auth)
    }

    fn rate_headers(&self, reply: Reply) -> Reply {
        reply
            .with_header("X-RateLimit-Limit", "180")
            .with_header("X-RateLimit-Remaining", &self.remaining.to_string())
            .with_header("X-RateLimit-Reset", &format!("{}", unix_now() as u64 + 60))
    }

    fn check_token(&self, header: Option<&str>) -> Auth {
        let Some(value) = header else {
            return Auth::None;
        };
        let Some(token) = value.strip_prefix("Bearer ") else {
            return Auth::Unknown;
        };
        match self.tokens.iter().find(|t| t.value == token) {
            None => Auth::Unknown,
            Some(t) if t.revoked => Auth::Revoked,
            Some(t) if unix_now() >= t.exp => Auth::Expired,
            Some(_) => Auth::Valid,
        }
    }

    fn login(&mut self, body: &[u8]) -> Reply {
        self.logins.push(String::from_utf8_lossy(body).into_owned());
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            return json(400, r#"{"message":"invalid JSON"}"#.into());
        };
        if v["identifier"] != self.username.as_str() || v["secret"] != self.secret.as_str() {
            return json(
                401,
                r#"{"message":"incorrect username or password"}"#.into(),
            );
        }
        let exp = unix_now() + self.token_lifetime;
        let n = self.tokens.len();
        let payload = format!(r#"{{"exp":{exp},"sub":"sondebot","jti":"{n}"}}"#);
        // A JWT as Docker Hub issues them; unsigned, the fixture only compares strings.
        let value = format!(
            "eyJhbGciOiJub25lIn0.{}.sig{n}x{}",
            common::base64url(payload.as_bytes()),
            (exp * 1000.0) as u64 % 99_991
        );
        self.tokens.push(Token {
            value: value.clone(),
            exp,
            revoked: false,
        });
        json(
            200,
            serde_json::json!({ "access_token": value }).to_string(),
        )
    }

    /// One repository (`getRepository`): the list entry's fields and those only the
    /// single-repository schema has; faults of the namespace apply.
    fn one(&mut self, namespace: &str, name: &str, auth: Auth) -> Reply {
        let ns = match self.admit(namespace, auth, "object not found") {
            Ok(ns) => ns,
            Err(reply) => return reply,
        };
        let Some(repo) = ns.repos.iter().find(|r| r.name == name) else {
            return json(404, r#"{"message":"object not found"}"#.into());
        };
        let mut body = repository_json(repo, namespace, ns.private);
        body["user"] = serde_json::json!(namespace);
        body["is_automated"] = serde_json::json!(false);
        body["collaborator_count"] = serde_json::json!(0);
        body["hub_user"] = serde_json::json!(namespace);
        body["has_starred"] = serde_json::json!(false);
        body["full_description"] = serde_json::json!("# README");
        body["permissions"] = serde_json::json!({"read": true, "write": false, "admin": false});
        json(200, body.to_string())
    }

    /// The namespace a request reads, or the answer instead: 404 when unknown, 401 when a
    /// presented token is not valid or a private namespace gets none, or its queued fault.
    fn admit(&mut self, name: &str, auth: Auth, missing: &str) -> Result<&mut Namespace, Reply> {
        let Some(ns) = self.namespaces.get_mut(name) else {
            return Err(json(404, format!(r#"{{"message":"{missing}"}}"#)));
        };
        let allowed = auth == Auth::Valid || (auth == Auth::None && !ns.private);
        if !allowed {
            return Err(json(401, r#"{"message":"authentication required"}"#.into()));
        }
        if let Some((too_many, reply)) = take_fault(ns) {
            if too_many {
                self.remaining = 0;
            }
            return Err(reply);
        }
        Ok(ns)
    }

    fn list(&mut self, name: &str, query: &str, auth: Auth, host: &str, this: String) -> Reply {
        let ns = match self.admit(name, auth, "namespace not found") {
            Ok(ns) => ns,
            Err(reply) => return reply,
        };
        let (page, page_size, ordering) = match list_query(query) {
            Ok(q) => q,
            Err(reply) => return reply,
        };
        let mut repos = ns.repos.clone();
        if let Err(reply) = sort(&mut repos, ordering.as_deref()) {
            return reply;
        }
        let start = (page - 1) * page_size;
        if page > 1 && start >= repos.len() && ns.next != Next::Endless {
            return json(404, r#"{"message":"object not found"}"#.into());
        }
        let order = ordering
            .map(|o| format!("&ordering={o}"))
            .unwrap_or_default();
        let link = |p: usize| {
            format!(
                "http://{host}/v2/namespaces/{name}/repositories?page={p}&page_size={page_size}{order}"
            )
        };
        let more = start + page_size < repos.len();
        let next = match ns.next {
            Next::Normal if more => Some(link(page + 1)),
            Next::Normal => None,
            Next::Foreign => Some(format!(
                "http://hub.example.invalid/v2/namespaces/{name}/repositories?page={}",
                page + 1
            )),
            Next::Loop => Some(this),
            Next::Endless | Next::Flood => Some(link(page + 1)),
        };
        let results: Vec<serde_json::Value> = if ns.next == Next::Flood {
            (0..60_000)
                .map(|i| serde_json::json!({"name": format!("p{page}-{i}"), "pull_count": 1}))
                .collect()
        } else {
            repos
                .iter()
                .skip(start)
                .take(page_size)
                .map(|r| repository_json(r, name, ns.private))
                .collect()
        };
        if page == 1
            && let Some(change) = ns.after_page_1.take()
        {
            change(&mut ns.repos);
        }
        let body = serde_json::json!({
            "count": repos.len(),
            "next": next,
            "previous": if page > 1 { Some(link(page - 1)) } else { None },
            "results": results,
        });
        json(200, body.to_string())
    }
}

/// The queued fault of a namespace, counted down, as a reply; whether it is a 429 (which
/// spends the remaining budget).
fn take_fault(ns: &mut Namespace) -> Option<(bool, Reply)> {
    let (fault, times) = ns.fault.clone()?;
    ns.fault = match times {
        1 => None,
        u32::MAX => Some((fault.clone(), times)),
        n => Some((fault.clone(), n - 1)),
    };
    Some(match fault {
        Fault::TooMany {
            headers,
            body,
            content_type,
        } => {
            let mut reply = Reply::Http {
                status: 429,
                headers: vec![("Content-Type".into(), content_type.into())],
                body: body.into_bytes(),
            };
            for (k, v) in headers {
                reply = reply.with_header(&k, &v);
            }
            (true, reply)
        }
        Fault::Status(status) => (
            false,
            json(status, r#"{"message":"internal error"}"#.into()),
        ),
        Fault::Body(body) => (
            false,
            Reply::Http {
                status: 200,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body,
            },
        ),
    })
}

/// `page`, `page_size` and `ordering` of a listing, with the documented defaults and
/// limits.
fn list_query(query: &str) -> Result<(usize, usize, Option<String>), Reply> {
    let mut page = 1usize;
    let mut page_size = 10usize;
    let mut ordering = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "page" => match v.parse() {
                Ok(p) if p >= 1 => page = p,
                _ => return Err(json(400, r#"{"message":"invalid page"}"#.into())),
            },
            "page_size" => match v.parse() {
                Ok(s) if (1..=100).contains(&s) => page_size = s,
                _ => return Err(json(400, r#"{"message":"invalid page_size"}"#.into())),
            },
            "ordering" => ordering = Some(v.to_string()),
            _ => {}
        }
    }
    Ok((page, page_size, ordering))
}

fn sort(repos: &mut [Repo], ordering: Option<&str>) -> Result<(), Reply> {
    match ordering {
        None | Some("name") => repos.sort_by(|a, b| a.name.cmp(&b.name)),
        Some("-name") => repos.sort_by(|a, b| b.name.cmp(&a.name)),
        Some("pull_count") => repos.sort_by_key(|r| r.pulls),
        Some("-pull_count") => repos.sort_by_key(|r| std::cmp::Reverse(r.pulls)),
        // PostgreSQL puts NULLs first in a descending order and last in an ascending one.
        Some("last_updated") => repos.sort_by(|a, b| {
            let key = |r: &Repo| r.last_updated.unwrap_or(f64::INFINITY);
            key(a).total_cmp(&key(b))
        }),
        Some("-last_updated") => repos.sort_by(|a, b| {
            let key = |r: &Repo| r.last_updated.unwrap_or(f64::INFINITY);
            key(b).total_cmp(&key(a))
        }),
        Some(_) => return Err(json(400, r#"{"message":"invalid ordering"}"#.into())),
    }
    Ok(())
}

/// One repository of a listing, with every field Docker Hub sends.
fn repository_json(r: &Repo, namespace: &str, private: bool) -> serde_json::Value {
    let updated = r.last_updated.map(rfc3339);
    serde_json::json!({
        "name": r.name,
        "namespace": namespace,
        "repository_type": "image",
        "status": 1,
        "status_description": "active",
        "description": null,
        "is_private": private,
        "star_count": r.stars,
        "pull_count": r.pulls,
        "last_updated": updated,
        "last_modified": updated,
        "date_registered": "2019-03-01T10:00:00.000000Z",
        "affiliation": "",
        "media_types": ["application/vnd.oci.image.index.v1+json"],
        "content_types": ["image"],
        "categories": [{"name": "Monitoring", "slug": "monitoring"}],
        "storage_size": 123456789
    })
}

fn json(status: u16, body: String) -> Reply {
    Reply::Http {
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: body.into_bytes(),
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Unix seconds as Docker Hub writes them: `2024-05-01T12:00:00.123456Z`.
fn rfc3339(t: f64) -> String {
    let secs = t.floor() as i64;
    let micros = ((t - t.floor()) * 1e6).round() as i64;
    let (y, m, d) = common::civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// `n` repositories `repo-000`... with distinct pulls and stars, updated an hour apart.
fn many(n: usize, newest: f64) -> Vec<Repo> {
    (0..n)
        .map(|i| {
            repo(
                &format!("repo-{i:03}"),
                1_000_000 + i as u64 * 7,
                (i % 13) as u64,
                Some(newest - 3600.0 * i as f64),
            )
        })
        .collect()
}

fn series(metric: &str, check: &str, org: &str, repository: &str) -> String {
    format!("{metric}{{check=\"{check}\",organization=\"{org}\",repository=\"{repository}\"}}")
}

fn pulls(check: &str, org: &str, repository: &str) -> String {
    series("sonde_dockerhub_pulls_total", check, org, repository)
}

fn success(check: &str) -> String {
    format!("sonde_check_success{{check=\"{check}\",kind=\"dockerhub\"}}")
}

/// Runs `sonde --once` on `config` (written next to the files of `dir`).
fn once(dir: &Dir, config: &str) -> (i32, Exposition, String) {
    let path = dir.write("sonde.yml", config);
    let out = run(&[
        "--once",
        "--log.level",
        "debug",
        "--config.file",
        path.to_str().unwrap(),
    ]);
    (
        out.status.code().unwrap_or(-1),
        Exposition(String::from_utf8_lossy(&out.stdout).into_owned()),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits (at most `secs`) until `pred` holds on the fixture.
fn wait_hub(hub: &Hub, secs: u64, what: &str, pred: impl Fn(&Hub) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !pred(hub) {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {secs}s; hits: {:?}",
            hub.hits()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (at most `secs`) until sonde logged a line containing all of `parts`.
fn wait_log(sonde: &Sonde, secs: u64, parts: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(line) = sonde
            .log()
            .into_iter()
            .find(|l| parts.iter().all(|p| l.contains(p)))
        {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {parts:?} within {secs}s: {:?}",
            sonde.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One `--once` over an organization of 250 repositories (`big`: repo-017 never updated,
/// repo-042 with microseconds) and one of a single repository (`small`).
fn read_big_and_small() -> (Hub, Exposition) {
    let hub = Hub::start();
    let now = unix_now();
    let mut big = many(250, now - 60.0);
    big[17].last_updated = None;
    big[42].last_updated = Some(1_700_000_000.123456);
    hub.add("big", big);
    hub.add("small", vec![repo("tool", 5, 1, Some(1_600_000_000.5))]);
    let dir = Dir::new();
    let config = format!(
        "checks:\n  - name: hub\n    kind: dockerhub\n    api_url: {}\n    organizations: [big, small]\n",
        hub.api_url()
    );
    let (code, m, stderr) = once(&dir, &config);
    assert_eq!(code, 0, "{stderr}\n{}", m.0);
    (hub, m)
}

#[test]
fn an_organization_of_250_repositories_is_read_in_three_requests() {
    let (hub, _) = read_big_and_small();
    let requests: Vec<String> = hub.listings("big").into_iter().map(|h| h.path).collect();
    println!(
        "API requests for one run over an organization of 250 repositories: {}",
        requests.len()
    );
    assert_eq!(
        requests,
        [
            "/v2/namespaces/big/repositories?page_size=100",
            "/v2/namespaces/big/repositories?page=2&page_size=100",
            "/v2/namespaces/big/repositories?page=3&page_size=100",
        ]
    );
    assert_eq!(hub.hits().len(), 4, "no other request: {:?}", hub.hits());
}

#[test]
fn every_repository_is_exported_with_its_pulls_and_stars() {
    let (_hub, m) = read_big_and_small();
    assert_eq!(
        m.value("sonde_dockerhub_repositories{check=\"hub\",organization=\"big\"}"),
        Some(250.0)
    );
    assert_eq!(
        m.value("sonde_dockerhub_repositories{check=\"hub\",organization=\"small\"}"),
        Some(1.0)
    );
    let count = m
        .0
        .lines()
        .filter(|l| l.starts_with("sonde_dockerhub_pulls_total{check=\"hub\",organization=\"big\""))
        .count();
    assert_eq!(count, 250);
    assert_eq!(m.value(&pulls("hub", "big", "repo-000")), Some(1_000_000.0));
    assert_eq!(m.value(&pulls("hub", "big", "repo-150")), Some(1_001_050.0));
    assert_eq!(m.value(&pulls("hub", "big", "repo-249")), Some(1_001_743.0));
    assert_eq!(
        m.value(&series("sonde_dockerhub_stars", "hub", "big", "repo-249")),
        Some(2.0)
    );
    assert_eq!(m.value(&pulls("hub", "small", "tool")), Some(5.0));
}

/// `last_updated` keeps its fraction of a second; a repository never updated (null) is
/// exported without a timestamp.
#[test]
fn last_updated_is_exported_to_the_microsecond_and_a_null_is_left_out() {
    let (_hub, m) = read_big_and_small();
    let updated = |r: &str| {
        m.value(&series(
            "sonde_dockerhub_last_updated_timestamp_seconds",
            "hub",
            "big",
            r,
        ))
    };
    assert_eq!(updated("repo-042"), Some(1_700_000_000.123456));
    assert_eq!(
        m.value(&series(
            "sonde_dockerhub_last_updated_timestamp_seconds",
            "hub",
            "small",
            "tool"
        )),
        Some(1_600_000_000.5)
    );
    assert_eq!(updated("repo-017"), None);
    assert_eq!(m.value(&pulls("hub", "big", "repo-017")), Some(1_000_119.0));
    assert_eq!(
        m.value(&series("sonde_dockerhub_stars", "hub", "big", "repo-017")),
        Some(4.0)
    );
}

#[test]
fn the_rate_limit_remaining_is_the_last_answer_s() {
    let (_hub, m) = read_big_and_small();
    // The fixture counts down from 180; the last of four answers said 176.
    assert_eq!(
        m.value("sonde_dockerhub_rate_limit_remaining{check=\"hub\"}"),
        Some(176.0)
    );
}

/// Pulls are a counter and stars a gauge, no legacy series without `legacy_metrics`, and
/// promtool finds nothing.
#[test]
fn the_exposition_is_typed_and_passes_promtool() {
    let (_hub, m) = read_big_and_small();
    assert_eq!(m.value(&success("hub")), Some(1.0));
    assert!(m.0.contains("# TYPE sonde_dockerhub_pulls_total counter\n"));
    assert!(m.0.contains("# TYPE sonde_dockerhub_stars gauge\n"));
    assert!(!m.has("docker_image_pulls"));
    assert_eq!(promtool_check_metrics(&m.0), "");
}

#[test]
fn a_listing_that_changes_while_it_is_read_ends_cleanly_without_duplicates() {
    let hub = Hub::start();
    hub.add("shrinking", many(150, 1_700_000_000.0));
    hub.add("growing", many(150, 1_700_000_000.0));
    // 60 repositories deleted after page 1: the `next` link now points past the end (404).
    hub.namespace("shrinking", |ns| {
        ns.after_page_1 = Some(Box::new(|repos: &mut Vec<Repo>| repos.truncate(90)))
    });
    // One created before repo-000 after page 1: repo-099 moves to page 2 and is seen twice.
    hub.namespace("growing", |ns| {
        ns.after_page_1 = Some(Box::new(|repos: &mut Vec<Repo>| {
            repos.push(repo("new-but-first", 1, 0, None))
        }))
    });
    let dir = Dir::new();
    let config = format!(
        "checks:\n  - name: hub\n    kind: dockerhub\n    api_url: {}\n    organizations: [shrinking, growing]\n",
        hub.api_url()
    );
    let (code, m, stderr) = once(&dir, &config);
    assert_eq!(code, 0, "{stderr}");
    let shrinking = hub.listings("shrinking");
    assert_eq!(
        shrinking.iter().map(|h| h.status).collect::<Vec<_>>(),
        [200, 404]
    );
    assert_eq!(
        m.value("sonde_dockerhub_repositories{check=\"hub\",organization=\"shrinking\"}"),
        Some(100.0)
    );
    assert_eq!(hub.listings("growing").len(), 2);
    assert_eq!(
        m.value("sonde_dockerhub_repositories{check=\"hub\",organization=\"growing\"}"),
        Some(150.0)
    );
    let twice =
        m.0.lines()
            .filter(|l| l.starts_with(&pulls("hub", "growing", "repo-099")))
            .count();
    assert_eq!(twice, 1, "{}", m.0);
    assert_eq!(promtool_check_metrics(&m.0), "");
}

#[test]
fn updated_within_orders_by_last_updated_and_stops_paging_early() {
    let hub = Hub::start();
    let now = unix_now();
    // 150 repositories updated in the last 150 hours, 97 older than a week, 3 never.
    let mut repos = many(150, now - 60.0);
    repos.extend((0..97).map(|i| {
        repo(
            &format!("old-{i:02}"),
            9,
            0,
            Some(now - 8.0 * 86_400.0 - i as f64),
        )
    }));
    repos.extend((0..3).map(|i| repo(&format!("never-{i}"), 3, 0, None)));
    hub.add("acme", repos);
    let dir = Dir::new();
    let config = format!(
        "checks:\n  - name: recent\n    kind: dockerhub\n    api_url: {}/\n    organizations: [acme]\n    updated_within: 7d\n",
        hub.api_url()
    );
    let (code, m, stderr) = once(&dir, &config);
    assert_eq!(code, 0, "{stderr}");
    // Nulls come first (PostgreSQL, descending), then 150 recent ones over pages 1 and 2;
    // page 2 reaches the old ones, so page 3 is never asked for.
    let requests: Vec<String> = hub.listings("acme").into_iter().map(|h| h.path).collect();
    assert_eq!(
        requests,
        [
            "/v2/namespaces/acme/repositories?page_size=100&ordering=-last_updated",
            "/v2/namespaces/acme/repositories?page=2&page_size=100&ordering=-last_updated",
        ]
    );
    assert_eq!(
        m.value("sonde_dockerhub_repositories{check=\"recent\",organization=\"acme\"}"),
        Some(150.0)
    );
    assert_eq!(
        m.value(&pulls("recent", "acme", "repo-000")),
        Some(1_000_000.0)
    );
    assert_eq!(
        m.value(&pulls("recent", "acme", "repo-149")),
        Some(1_001_043.0)
    );
    assert!(!m.has(
        "sonde_dockerhub_pulls_total{check=\"recent\",organization=\"acme\",repository=\"old-"
    ));
    assert!(!m.has(
        "sonde_dockerhub_pulls_total{check=\"recent\",organization=\"acme\",repository=\"never-"
    ));
}

#[test]
fn a_repository_removed_between_runs_disappears() {
    let hub = Hub::start();
    hub.add(
        "alpha",
        vec![
            repo("a1", 10, 1, Some(1_700_000_000.0)),
            repo("a2", 20, 2, Some(1_700_000_100.0)),
        ],
    );
    let sonde = Sonde::start(&format!(
        "checks:\n  - name: hub\n    kind: dockerhub\n    interval: 1s\n    legacy_metrics: true\n    api_url: {}\n    organizations: [alpha]\n",
        hub.api_url()
    ));
    sonde.wait_metrics(20, |m| m.value(&pulls("hub", "alpha", "a2")) == Some(20.0));
    hub.namespace("alpha", |ns| {
        ns.repos.retain(|r| r.name != "a2");
        ns.repos[0].pulls = 11;
    });
    let m = sonde.wait_metrics(20, |m| m.value(&pulls("hub", "alpha", "a1")) == Some(11.0));
    for metric in [
        "sonde_dockerhub_pulls_total",
        "sonde_dockerhub_stars",
        "sonde_dockerhub_last_updated_timestamp_seconds",
    ] {
        assert!(
            !m.has(&series(metric, "hub", "alpha", "a2")),
            "{metric} of a2 is still there:\n{}",
            m.0
        );
        assert!(m.has(&series(metric, "hub", "alpha", "a1")));
    }
    assert!(!m.has("docker_image_pulls{image=\"a2\""));
    assert_eq!(
        m.value("docker_image_pulls{image=\"a1\",organization=\"alpha\"}"),
        Some(11.0)
    );
    assert_eq!(
        m.value("sonde_dockerhub_repositories{check=\"hub\",organization=\"alpha\"}"),
        Some(1.0)
    );
    assert_eq!(m.value(&success("hub")), Some(1.0));
}

#[test]
fn failed_runs_keep_the_last_good_values() {
    let hub = Hub::start();
    hub.add("alpha", vec![repo("a1", 10, 1, Some(1_700_000_000.0))]);
    hub.add(
        "beta",
        vec![
            repo("b1", 100, 5, Some(1_700_000_000.0)),
            repo("b2", 200, 6, None),
        ],
    );
    let sonde = Sonde::start(&format!(
        "checks:\n  - name: hub\n    kind: dockerhub\n    interval: 1s\n    api_url: {}\n    organizations: [alpha, beta]\n",
        hub.api_url()
    ));
    sonde.wait_metrics(20, |m| m.value(&pulls("hub", "beta", "b2")) == Some(200.0));
    // From now on Docker Hub would report other values for beta, but cannot be read.
    hub.namespace("beta", |ns| {
        ns.repos.truncate(1);
        ns.repos[0].pulls = 101;
    });
    let broken: [(Fault, &str); 4] = [
        (Fault::Status(500), "HTTP 500"),
        (
            Fault::Body(b"{\"results\": [{\"name\": \"b1\", ".to_vec()),
            "is not JSON",
        ),
        (
            Fault::Body(br#"{"count": 1, "next": null}"#.to_vec()),
            "no `results` list",
        ),
        (Fault::Body(vec![b' '; 50 << 20]), "larger than 8 MiB"),
    ];
    for (fault, message) in broken {
        hub.fault("beta", fault, u32::MAX);
        let line = wait_log(&sonde, 20, &["organization=beta", message]);
        assert!(
            line.contains("level=warn") && line.contains("keeping the last values"),
            "{line}"
        );
        // alpha is still read while beta fails.
        let a1 = 11 + hub.listings("alpha").len() as u64;
        hub.namespace("alpha", |ns| ns.repos[0].pulls = a1);
        let m = sonde.wait_metrics(20, |m| {
            m.value(&pulls("hub", "alpha", "a1")) == Some(a1 as f64)
        });
        assert_eq!(m.value(&success("hub")), Some(0.0), "{message}");
        assert_eq!(
            m.value(&pulls("hub", "beta", "b1")),
            Some(100.0),
            "{message}"
        );
        assert_eq!(
            m.value(&pulls("hub", "beta", "b2")),
            Some(200.0),
            "{message}"
        );
        assert_eq!(
            m.value(&series("sonde_dockerhub_stars", "hub", "beta", "b2")),
            Some(6.0)
        );
        assert_eq!(
            m.value("sonde_dockerhub_repositories{check=\"hub\",organization=\"beta\"}"),
            Some(2.0)
        );
    }
    let checks = sonde.get("/api/v1/checks").text();
    assert!(checks.contains("organization beta"), "{checks}");
    hub.namespace("beta", |ns| ns.fault = None);
    let m = sonde.wait_metrics(20, |m| m.value(&success("hub")) == Some(1.0));
    assert_eq!(m.value(&pulls("hub", "beta", "b1")), Some(101.0));
    assert!(!m.has(&series("sonde_dockerhub_pulls_total", "hub", "beta", "b2")));
}

#[test]
fn a_429_stops_every_request_to_that_api_until_the_time_given() {
    let hub = Hub::start();
    hub.add("alpha", vec![repo("a1", 10, 1, None)]);
    hub.add("beta", vec![repo("b1", 20, 1, None)]);
    // Two checks on one API: a 429 to either blocks both.
    let sonde = Sonde::start(&format!(
        "checks:\n  - name: one\n    kind: dockerhub\n    interval: 1s\n    api_url: {url}\n    organizations: [alpha]\n  - name: two\n    kind: dockerhub\n    interval: 1s\n    api_url: {url}\n    organizations: [beta]\n",
        url = hub.api_url()
    ));
    sonde.wait_metrics(20, |m| {
        m.value(&success("one")) == Some(1.0) && m.value(&success("two")) == Some(1.0)
    });

    for case in 0..2 {
        let fault = if case == 0 {
            Fault::TooMany {
                headers: vec![("Retry-After".into(), "3".into())],
                body: r#"{"message":"too many requests"}"#.into(),
                content_type: "application/json",
            }
        } else {
            // Epoch seconds, as older revisions of the API documented, and the plain-text
            // body of Docker Hub's anti-abuse limit.
            Fault::TooMany {
                headers: vec![(
                    "X-Retry-After".into(),
                    format!("{}", unix_now().ceil() as u64 + 4),
                )],
                body: "Too Many Requests (HAP429).".into(),
                content_type: "text/plain",
            }
        };
        let before = hub.hits().len();
        hub.fault("alpha", fault.clone(), 1);
        wait_hub(&hub, 20, "a 429", |h| {
            h.hits()[before..].iter().any(|x| x.status == 429)
        });
        let hits = hub.hits();
        let limited = hits[before..].iter().find(|x| x.status == 429).unwrap().at;
        let until = match &fault {
            Fault::TooMany { headers, .. } if headers[0].0 == "Retry-After" => {
                limited + Duration::from_secs(3)
            }
            Fault::TooMany { headers, .. } => {
                UNIX_EPOCH + Duration::from_secs(headers[0].1.parse().unwrap())
            }
            _ => unreachable!(),
        };
        let m = sonde.wait_metrics(20, |m| {
            m.value(&success("one")) == Some(0.0) && m.value(&success("two")) == Some(0.0)
        });
        // Values are kept, and the remaining budget the 429 reported is shown.
        assert_eq!(m.value(&pulls("one", "alpha", "a1")), Some(10.0));
        assert_eq!(m.value(&pulls("two", "beta", "b1")), Some(20.0));
        assert_eq!(
            m.value("sonde_dockerhub_rate_limit_remaining{check=\"one\"}"),
            Some(0.0)
        );
        let count = hub.hits().len();
        wait_hub(&hub, 20, "requests after the wait", |h| {
            h.hits().len() > count
        });
        let after: Vec<Hit> = hub.hits().into_iter().filter(|h| h.at > limited).collect();
        let during = after.iter().filter(|h| h.at < until).count();
        assert_eq!(during, 0, "requests during the wait: {after:?}");
        assert!(after[0].at >= until);
        sonde.wait_metrics(20, |m| {
            m.value(&success("one")) == Some(1.0) && m.value(&success("two")) == Some(1.0)
        });
    }
    let log = sonde.log().join("\n");
    assert!(log.contains("HTTP 429 Too Many Requests"), "{log}");
}

#[test]
fn legacy_metrics_add_docker_image_pulls() {
    let hub = Hub::start();
    hub.add(
        "amazon",
        vec![
            repo("aws-cli", 500_000, 3, Some(1_700_000_000.0)),
            repo("ubuntu", 1_000_000, 9, None),
        ],
    );
    let dir = Dir::new();
    let config = format!(
        "checks:\n  - name: hub\n    kind: dockerhub\n    legacy_metrics: true\n    api_url: {}\n    organizations: [amazon]\n",
        hub.api_url()
    );
    let (code, m, stderr) = once(&dir, &config);
    assert_eq!(code, 0, "{stderr}");
    assert!(m.0.contains("# TYPE docker_image_pulls gauge\n"), "{}", m.0);
    assert!(m.0.contains(
        "docker_image_pulls{image=\"aws-cli\",organization=\"amazon\"} 500000\n\
         docker_image_pulls{image=\"ubuntu\",organization=\"amazon\"} 1000000\n"
    ));
    assert_eq!(
        m.value(&pulls("hub", "amazon", "ubuntu")),
        Some(1_000_000.0)
    );

    // Two legacy checks sharing an organization would export the same series twice.
    let config = format!(
        "checks:\n  - name: a\n    kind: dockerhub\n    legacy_metrics: true\n    api_url: {url}\n    organizations: [amazon]\n  - name: b\n    kind: dockerhub\n    legacy_metrics: true\n    api_url: {url}\n    organizations: [bitnami, Amazon]\n",
        url = hub.api_url()
    );
    let path = dir.write("sonde.yml", config);
    let out = run(&["--config.check", "--config.file", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(":11:")
            && stderr.contains("check \"b\"")
            && stderr.contains("also in legacy check \"a\""),
        "{stderr}"
    );
}

/// sonde reading a private organization every second with trace logging, through tokens
/// that live 4 s.
fn read_private_organization(hub: &Hub) -> Sonde {
    hub.add(
        "private",
        vec![repo("internal", 42, 0, Some(1_700_000_000.0))],
    );
    hub.namespace("private", |ns| ns.private = true);
    hub.with(|h| h.token_lifetime = 4.0);
    let dir = Dir::new();
    dir.write("hub-token", format!("{SECRET}\n"));
    dir.write(
        "sonde.yml",
        format!(
            "checks:\n  - name: hub\n    kind: dockerhub\n    interval: 1s\n    api_url: {}\n    organizations: [private]\n    username: sondebot\n    token_file: hub-token\n",
            hub.api_url()
        ),
    );
    let config = dir.path().join("sonde.yml");
    let mut command = std::process::Command::new(common::sonde_bin());
    command.args([
        "--web.listen-address",
        "127.0.0.1:0",
        "--log.level",
        "trace",
        "--config.file",
        config.to_str().unwrap(),
    ]);
    Sonde::spawn(&mut command, dir)
}

/// The cases share one sonde because each follows its tokens further: renewals, then a
/// revocation, then everything it logged and served on the way.
#[test]
fn a_private_organization_is_read_with_a_bearer_token_renewed_in_time_and_after_a_401() {
    let hub = Hub::start();
    let sonde = read_private_organization(&hub);
    sonde.wait_metrics(20, |m| {
        m.value(&pulls("hub", "private", "internal")) == Some(42.0)
    });
    a_token_is_renewed_before_it_expires(&hub);
    a_revoked_token_is_replaced_after_one_401(&hub, &sonde);
    neither_the_secret_nor_a_token_is_ever_shown(&hub, &sonde);
}

/// Case: sonde logs in with the documented body and logs in again before a token expires,
/// never sending a stale one.
fn a_token_is_renewed_before_it_expires(hub: &Hub) {
    wait_hub(hub, 20, "three logins", |h| h.issued_tokens().len() >= 3);
    let logins = hub.with(|h| h.logins.clone());
    let login: serde_json::Value = serde_json::from_str(&logins[0]).unwrap();
    assert_eq!(
        login,
        serde_json::json!({"identifier": "sondebot", "secret": SECRET})
    );
    let listings = hub.listings("private");
    assert!(
        listings
            .iter()
            .all(|h| h.auth == Auth::Valid && h.status == 200),
        "{listings:?}"
    );
}

/// Case: tokens revoked early (a password change) answer 401; sonde logs in once more and
/// retries within the same run, which therefore does not fail.
fn a_revoked_token_is_replaced_after_one_401(hub: &Hub, sonde: &Sonde) {
    // First let sonde hold a long-lived token, so it has no reason to renew it on its own.
    hub.with(|h| h.token_lifetime = 600.0);
    wait_hub(hub, 20, "a long-lived token", |h| {
        h.with(|s| s.tokens.last().is_some_and(|t| t.exp - unix_now() > 100.0))
    });
    hub.with(|h| h.tokens.iter_mut().for_each(|t| t.revoked = true));
    let issued = hub.issued_tokens().len();
    hub.namespace("private", |ns| ns.repos[0].pulls = 43);
    sonde.wait_metrics(20, |m| {
        m.value(&pulls("hub", "private", "internal")) == Some(43.0)
    });
    let hits = hub.hits();
    let refused = hits
        .iter()
        .position(|h| h.auth == Auth::Revoked)
        .expect("a request with a revoked token");
    assert_eq!(hits[refused].status, 401);
    assert_eq!(
        (
            hits[refused + 1].method.as_str(),
            hits[refused + 1].path.as_str()
        ),
        ("POST", "/v2/auth/token")
    );
    assert_eq!(
        (hits[refused + 2].auth, hits[refused + 2].status),
        (Auth::Valid, 200)
    );
    assert_eq!(hub.issued_tokens().len(), issued + 1);
    let m = sonde.metrics();
    assert_eq!(
        m.value("sonde_check_failures_total{check=\"hub\",kind=\"dockerhub\"}"),
        Some(0.0),
        "{}",
        m.0
    );
}

/// Case: neither the secret nor any token (nor its signature) reaches a metric, a page or
/// a log line, even at trace level.
fn neither_the_secret_nor_a_token_is_ever_shown(hub: &Hub, sonde: &Sonde) {
    let mut exposed = vec![
        sonde.metrics().0,
        sonde.get("/api/v1/checks").text(),
        sonde.get("/").text(),
    ];
    exposed.extend(sonde.log());
    let tokens = hub.issued_tokens();
    for text in &exposed {
        assert!(!text.contains(SECRET), "secret in {text}");
        for token in &tokens {
            assert!(!text.contains(token.as_str()), "token in {text}");
            let signature = token.rsplit('.').next().unwrap();
            assert!(!text.contains(signature), "token signature in {text}");
        }
    }
    assert!(
        sonde.log().iter().any(|l| l.contains("level=trace")),
        "trace logging was on"
    );
}

#[test]
fn a_private_organization_without_valid_credentials_fails_clearly() {
    let hub = Hub::start();
    hub.add("private", vec![repo("internal", 42, 0, None)]);
    hub.namespace("private", |ns| ns.private = true);
    let dir = Dir::new();
    let base = format!(
        "checks:\n  - name: hub\n    kind: dockerhub\n    api_url: {}\n    organizations: [private]\n",
        hub.api_url()
    );
    let (code, m, stderr) = once(&dir, &base);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("HTTP 401") && stderr.contains("private; set username and token_file"),
        "{stderr}"
    );
    assert_eq!(m.value(&success("hub")), Some(0.0));
    assert!(!m.has("sonde_dockerhub_pulls_total"));

    let wrong = "dckr_pat_wrong-secret-value";
    dir.write("hub-token", wrong);
    let (code, _, stderr) = once(
        &dir,
        &format!("{base}    username: sondebot\n    token_file: hub-token\n"),
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("/v2/auth/token failed: HTTP 401"),
        "{stderr}"
    );
    assert!(!stderr.contains(wrong), "{stderr}");
    assert_eq!(hub.with(|h| h.logins.len()), 1);
}

#[test]
fn next_links_off_the_api_host_and_endless_or_flooding_listings_are_not_followed() {
    let hub = Hub::start();
    for (name, next) in [
        ("foreign", Next::Foreign),
        ("looping", Next::Loop),
        ("endless", Next::Endless),
        ("flood", Next::Flood),
    ] {
        hub.add(name, many(150, 1_700_000_000.0));
        hub.namespace(name, |ns| ns.next = next);
    }
    let dir = Dir::new();
    let config = format!(
        "checks:\n  - name: hub\n    kind: dockerhub\n    timeout: 60s\n    api_url: {}\n    organizations: [foreign, looping, endless, flood]\n",
        hub.api_url()
    );
    let (code, m, stderr) = once(&dir, &config);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("organization=foreign") && stderr.contains("hub.example.invalid"),
        "{stderr}"
    );
    assert!(stderr.contains("is not on http://127.0.0.1:"), "{stderr}");
    assert_eq!(hub.listings("foreign").len(), 1);
    assert!(
        stderr.contains("page 1 links back to an earlier page"),
        "{stderr}"
    );
    assert_eq!(hub.listings("looping").len(), 1);
    assert!(stderr.contains("more than 1000 pages"), "{stderr}");
    assert_eq!(hub.listings("endless").len(), 1000);
    assert!(
        stderr.contains("more than 100000 repositories by page 2 (60000 on it, 100 asked for)"),
        "{stderr}"
    );
    assert_eq!(hub.listings("flood").len(), 2);
    assert!(!m.has("sonde_dockerhub_pulls_total"));
    assert_eq!(m.value(&success("hub")), Some(0.0));
}

/// Keys of a dockerhub check (after its name and kind) and a part of the error each
/// must give.
const CONFIG_MISTAKES: [(&str, &str); 14] = [
    (
        "organizations: []",
        "list at least one Docker Hub organization in `organizations` or one namespace/name in `repositories`",
    ),
    (
        "updated_within: 1d",
        "list at least one Docker Hub organization",
    ),
    (
        "repositories: [nginx]",
        "repository \"nginx\" is not namespace/name (an official image is library/nginx)",
    ),
    (
        "repositories: [a/b/c]",
        "repository \"a/b/c\" is not namespace/name",
    ),
    (
        "repositories: [acme/app, acme/app]",
        "repository \"acme/app\" is listed twice",
    ),
    (
        "organizations: [acme]\n    repositories: [Acme/app]",
        "repository \"Acme/app\" is already listed through organization \"Acme\"",
    ),
    (
        "organizations: [a/b]",
        "organization \"a/b\" is not a Docker Hub namespace",
    ),
    (
        "organizations: [amazon, amazon]",
        "organization \"amazon\" is listed twice",
    ),
    (
        "organizations: [x]\n    api_url: hub.docker.com",
        "must start with http:// or https://",
    ),
    (
        "organizations: [x]\n    updated_within: 0s",
        "updated_within must be greater than 0",
    ),
    (
        "organizations: [x]\n    username: me",
        "username needs token_file",
    ),
    (
        "organizations: [x]\n    username: me\n    token_file: missing",
        "cannot read the token file",
    ),
    (
        "organizations: [x]\n    username: me\n    token_file: empty-token",
        "is empty",
    ),
    (
        "organizations: [x]\n    organisations: [y]",
        "unknown field `organisations`",
    ),
];

#[test]
fn config_mistakes_are_reported_with_their_location() {
    let dir = Dir::new();
    dir.write("empty-token", "\n");
    for (keys, message) in CONFIG_MISTAKES {
        let path = dir.write(
            "sonde.yml",
            format!("checks:\n  - name: hub\n    kind: dockerhub\n    {keys}\n"),
        );
        let out = run(&["--config.check", "--config.file", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{keys}: {stderr}");
        assert!(
            stderr.contains(message)
                && stderr.contains("sonde.yml:")
                && stderr.contains("check \"hub\""),
            "{keys}: {stderr}"
        );
    }
    let path = dir.write(
        "sonde.yml",
        "checks:\n  - name: hub\n    kind: dockerhub\n    organizations: [amazon]\n",
    );
    let out = run(&["--config.check", "--config.file", path.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Docker Hub with the organization amazon (3 repositories), two repositories of
/// library and a private one of acme.
fn hub_with_single_repositories() -> Hub {
    let hub = Hub::start();
    hub.add("amazon", many(3, 1_700_000_000.0));
    hub.add(
        "library",
        vec![
            repo("nginx", 9_000_000_000, 20_000, Some(1_700_000_000.25)),
            repo("busybox", 7_000_000_000, 3_000, None),
        ],
    );
    hub.add("acme", vec![repo("internal", 42, 0, Some(1_700_000_500.0))]);
    hub.namespace("acme", |ns| ns.private = true);
    hub
}

/// The requests for single repositories, with their answers' status.
fn single_repository_hits(hub: &Hub) -> Vec<String> {
    hub.hits()
        .iter()
        .filter(|h| h.path.contains("/repositories/"))
        .map(|h| format!("{} {}", h.path, h.status))
        .collect()
}

/// Single repositories beside an organization: one request each, the same series with
/// the namespace as `organization`; a private one read with the token; one that does not
/// exist fails the run and has no series; one that fails keeps its last values.
#[test]
fn single_repositories_are_read_one_request_each_with_the_same_metrics() {
    let hub = hub_with_single_repositories();
    let dir = Dir::new();
    dir.write("hub-token", format!("{SECRET}\n"));
    let config = format!(
        "checks:
  - name: hub
    kind: dockerhub
    legacy_metrics: true
    api_url: {}
    username: sondebot
    token_file: hub-token
    organizations: [amazon]
    repositories: [library/nginx, acme/internal, library/gone]
",
        hub.api_url()
    );
    let (code, m, stderr) = once(&dir, &config);
    assert_eq!(code, 1, "library/gone does not exist: {stderr}");
    assert_eq!(m.value(&pulls("hub", "library", "nginx")), Some(9e9));
    assert_eq!(
        m.value(&series("sonde_dockerhub_stars", "hub", "library", "nginx")),
        Some(20_000.0)
    );
    assert_eq!(
        m.value(&series(
            "sonde_dockerhub_last_updated_timestamp_seconds",
            "hub",
            "library",
            "nginx"
        )),
        Some(1_700_000_000.25)
    );
    assert_eq!(m.value(&pulls("hub", "acme", "internal")), Some(42.0));
    assert_eq!(
        m.value(&pulls("hub", "amazon", "repo-002")),
        Some(1_000_014.0)
    );
    assert!(
        m.0.contains("docker_image_pulls{image=\"nginx\",organization=\"library\"} 9000000000\n"),
        "{}",
        m.0
    );
    // Only what was named: busybox is in the namespace but not asked for.
    assert!(!m.0.contains("busybox") && !m.0.contains("repository=\"gone\""));
    // The count stays a property of listed organizations.
    assert!(m.has("sonde_dockerhub_repositories{check=\"hub\",organization=\"amazon\"}"));
    assert!(!m.has("sonde_dockerhub_repositories{check=\"hub\",organization=\"library\"}"));
    assert_eq!(m.value(&success("hub")), Some(0.0));
    assert!(
        stderr.contains("repository=library/gone")
            && stderr.contains("no repository library/gone on Docker Hub"),
        "{stderr}"
    );
    assert_eq!(
        single_repository_hits(&hub),
        [
            "/v2/namespaces/library/repositories/nginx 200",
            "/v2/namespaces/acme/repositories/internal 200",
            "/v2/namespaces/library/repositories/gone 404",
        ],
        "one GET per repository"
    );
    assert!(!stderr.contains(SECRET));
    let findings = promtool_check_metrics(
        &m.0.lines()
            .filter(|l| !l.contains("docker_image_pulls"))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    );
    assert!(findings.trim().is_empty(), "{findings}");
}

/// A named repository that fails keeps its last values; one that the API no longer knows
/// loses them; both fail the run with the repository named.
#[test]
fn a_failing_single_repository_keeps_its_values_and_a_deleted_one_loses_them() {
    let hub = Hub::start();
    hub.add("library", vec![repo("nginx", 10, 1, None)]);
    hub.add("acme", vec![repo("app", 5, 0, None)]);
    let config = format!(
        "checks:\n  - name: hub\n    kind: dockerhub\n    interval: 1s\n    api_url: {}\n    repositories: [library/nginx, acme/app]\n",
        hub.api_url()
    );
    let sonde = Sonde::start(&config);
    sonde.wait_metrics(20, |m| m.value(&success("hub")) == Some(1.0));
    hub.fault("library", Fault::Status(503), u32::MAX);
    hub.namespace("acme", |ns| ns.repos.clear());
    let m = sonde.wait_metrics(20, |m| {
        m.value(&success("hub")) == Some(0.0) && !m.has(&pulls("hub", "acme", "app"))
    });
    assert_eq!(m.value(&pulls("hub", "library", "nginx")), Some(10.0));
    let checks = sonde.get("/api/v1/checks").text();
    assert!(
        checks.contains("organizations and repositories not read"),
        "{checks}"
    );
    wait_log(&sonde, 10, &["repository=library/nginx", "HTTP 503"]);
}

/// The examples of the README's section load as written.
#[test]
fn the_readme_examples_load() {
    readme::check_examples("## kind: dockerhub");
}
