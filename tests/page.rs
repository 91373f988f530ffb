//! The status page (`/`) and `/api/v1/targets` of a running sonde, looked at in Debian's
//! real headless Chromium: targets up and down, TLS certificates close to expiry, images
//! in Debian's real `docker-registry`, sensors from a sysfs fixture and Docker Hub
//! repositories from a fixture that follows the Hub API. A `<script>` is planted in a URL
//! and in a failure cause. The page is also served behind basic auth and TLS, for a
//! check with more than 200 targets, and its history ring is filled past its bound.
//!
//! The expensive part (registries, fixtures, sonde running long enough to draw
//! sparklines, four Chromium runs) happens once in [`observed`]; the tests assert on
//! what it saw. Screenshots go to `target/tmp/`; with `UPDATE_SCREENSHOTS=1` also to
//! `docs/`, where the README shows them.

mod browser;
mod common;
mod images;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Dir, Fixture, HttpResponse, Reply, Sonde};
use serde_json::Value;

/// A `<script>` that would retitle the page if it ever ran.
const PLANTED: &str = "<script>document.title='pwned'</script>";

/// The exact policy the issue asks for.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

/// Where screenshots are written; `docs/` too with `UPDATE_SCREENSHOTS=1`.
fn save_screenshot(name: &str, png: &[u8]) {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&tmp, png).unwrap();
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join(name), png).unwrap();
    }
}

/// `(y, m, d)` of today plus `days`, for certificate dates.
fn date_in(days: i64) -> (i32, u8, u8) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (y, m, d) = common::civil_from_days(now / 86_400 + days);
    (y as i32, m as u8, d as u8)
}

/// A port nothing listens on (bound, then closed).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TLS fixture whose certificate (of `ca`) ends in `days` days.
fn tls_site(ca: &common::TestCa, days: i64) -> Fixture {
    let leaf = ca.leaf((2020, 1, 1), date_in(days));
    Fixture::start_tls(&leaf, |_| Reply::status(200, "secure"))
}

/// Docker Hub's list of an organization's repositories, one page, as the API shapes it.
fn hub_fixture() -> Fixture {
    Fixture::start(|req| {
        if !req.path.starts_with("/v2/namespaces/acme/repositories") {
            return Reply::status(404, r#"{"message":"object not found"}"#);
        }
        let repo = |name: &str, pulls: u64, stars: u64| {
            serde_json::json!({
                "name": name, "namespace": "acme", "repository_type": "image", "status": 1,
                "is_private": false, "star_count": stars, "pull_count": pulls,
                "last_updated": "2026-01-02T03:04:05.678901Z",
            })
        };
        let body = serde_json::json!({
            "count": 3, "next": null, "previous": null,
            "results": [repo("tools", 89, 1), repo("api", 1_234_567, 40), repo("web", 4_500, 3)],
        });
        Reply::status(200, &body.to_string()).with_header("Content-Type", "application/json")
    })
}

/// What the tests assert on: plain data gathered from one running sonde.
struct Observed {
    /// Target label -> expected state, for every target of the config.
    expected: BTreeMap<String, &'static str>,
    /// What Chromium showed.
    looks: Looks,
    root: HttpResponse,
    down_only: HttpResponse,
    one_check: HttpResponse,
    unknown_check: HttpResponse,
    bad_state: HttpResponse,
    refresh_off: HttpResponse,
    refresh_30: HttpResponse,
    json: Value,
}

static OBSERVED: OnceLock<Result<Observed, String>> = OnceLock::new();

fn observed() -> &'static Observed {
    common::shared(&OBSERVED, observe)
}

/// The servers sonde watches in the shared scenario, held while sonde runs.
struct World {
    site: Fixture,
    soon: Fixture,
    urgent: Fixture,
    registry: images::Registry,
    hub: Fixture,
    api: images::kube::ApiServer,
}

/// Starts every target: a website, two TLS sites whose certificates expire soon, a
/// registry with one image, Docker Hub, and a cluster with one Deployment whose
/// sidecar's image is missing.
fn start_world(dir: &Dir) -> World {
    let ca = common::TestCa::new();
    dir.write("ca.pem", &ca.pem);
    let (api_calls, flaky_calls) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let site = Fixture::start(move |req| match req.path.as_str() {
        "/" => Reply::status(200, "home"),
        // Latency that varies, so the sparkline has a shape.
        "/api" => {
            let n = api_calls.fetch_add(1, Ordering::Relaxed) as u64;
            std::thread::sleep(Duration::from_millis((n * 7) % 45));
            Reply::status(200, "{}")
        }
        "/flaky" if flaky_calls.fetch_add(1, Ordering::Relaxed) % 4 == 3 => {
            Reply::status(503, "busy")
        }
        "/flaky" => Reply::status(200, "ok"),
        _ => Reply::status(404, "not found"),
    });
    let storage = dir.path().join("storage");
    let registry = images::Registry::start(dir.path(), "registry", &storage, "", "");
    let host = registry.host();
    registry.push_image("team/app", "v1", false, "app");
    let kube_ca = images::TestCa::new();
    dir.write("kube-ca.pem", &kube_ca.ca_pem);
    dir.write("kube-token", "page-token");
    let spec = images::kube::pod_spec(
        &[
            ("app", &format!("{host}/team/app:v1")),
            ("sidecar", &format!("{host}/team/proxy:v2")),
        ],
        &[],
        &[],
        None,
    );
    let mut cluster = images::kube::Cluster {
        page_size: 50,
        ..Default::default()
    };
    let shop = images::kube::workload("deployments", "shop", "web", spec, 1);
    cluster.items.insert("deployments".into(), vec![shop]);
    World {
        site,
        soon: tls_site(&ca, 10),
        urgent: tls_site(&ca, 2),
        registry,
        hub: hub_fixture(),
        api: images::kube::start_api(&kube_ca, cluster, "page-token"),
    }
}

/// sonde.yml: one check of every kind, on `urls` and `image_list`.
fn scenario_config(
    world: &World,
    urls: &[(String, &str)],
    image_list: &[(String, &str)],
) -> String {
    let host = world.registry.host();
    let hwmon = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/hwmon/intel_desktop");
    let quoted = |list: &[(String, &str)]| {
        let items: Vec<String> = list.iter().map(|(u, _)| format!("{:?}", u)).collect();
        items.join(", ")
    };
    format!(
        "checks:\n\
         \x20 - name: websites\n    kind: http\n    interval: 1s\n    timeout: 900ms\n    tls: {{ca_file: ca.pem}}\n    urls: [{}]\n\
         \x20 - name: flaky\n    kind: http\n    interval: 1s\n    urls: [{:?}]\n\
         \x20 - name: images\n    kind: registry\n    interval: 1s\n    plain_http_registries: [{host:?}]\n    images: [{}]\n\
         \x20 - name: sensors\n    kind: hwmon\n    interval: 2s\n    sysfs_path: {:?}\n\
         \x20 - name: hub\n    kind: dockerhub\n    interval: 5s\n    api_url: {:?}\n    organizations: [acme]\n\
         \x20 - name: cluster\n    kind: kubernetes_images\n    interval: 2s\n    api_server: \"https://{}\"\n    bearer_token_file: kube-token\n    ca_file: kube-ca.pem\n    workload_kinds: [deployment]\n    plain_http_registries: [{host:?}]\n",
        quoted(urls),
        world.site.url("/flaky"),
        quoted(image_list),
        hwmon.display().to_string(),
        world.hub.url(""),
        world.api.server.addr,
    )
}

/// The state every target of the scenario must show.
fn expected_states(
    urls: &[(String, &'static str)],
    image_list: &[(String, &'static str)],
) -> BTreeMap<String, &'static str> {
    let mut expected: BTreeMap<String, &'static str> = BTreeMap::new();
    for (target, state) in urls.iter().chain(image_list) {
        expected.insert(target.clone(), state);
    }
    expected.insert("platform_coretemp_0 temp1".into(), "up");
    expected.insert("platform_coretemp_0 temp5".into(), "down");
    for repo in ["acme/api", "acme/web", "acme/tools"] {
        expected.insert(repo.into(), "up");
    }
    expected.insert("deployment/shop/web app".into(), "up");
    expected.insert("deployment/shop/web sidecar".into(), "down");
    expected
}

/// What Chromium shows of the page at `base`.
struct Looks {
    dom: String,
    /// `document.title`, `<script>` elements, and the text of the planted URL's row.
    title: String,
    scripts: u64,
    /// Everything the browser fetched besides the page itself.
    fetched: Value,
    planted_row_text: String,
    planted_cause_text: String,
    /// (scrollWidth, clientWidth) of the document at 390 and 1280 CSS pixels.
    width_390: (u64, u64),
    width_1280: (u64, u64),
    /// PNG sizes of the full-page screenshots.
    png_390: (u32, u32),
    png_1280: (u32, u32),
    /// The body's background in light and dark mode.
    light_bg: String,
    dark_bg: String,
}

/// Loads the page in Chromium at 1280 and 390 CSS pixels, light and dark, and reads
/// what the tests look at; the screenshots are saved.
fn look(base: &str, planted_url: &str) -> Looks {
    let profile = Dir::new();
    let dom = browser::dump_dom(profile.path(), base, &[]);
    // DevTools loads keep the page from refreshing itself mid-measurement.
    let still = format!("{base}?refresh=600");
    let mut b = browser::Browser::start(profile.path());
    b.viewport(1280, 900, false);
    b.navigate(&still);
    let title = b
        .eval("document.title")
        .as_str()
        .unwrap_or_default()
        .to_string();
    let scripts = b
        .eval("document.querySelectorAll('script').length")
        .as_u64()
        .unwrap();
    let fetched = b.eval("performance.getEntriesByType('resource').map(e => e.name)");
    let row_text = |target: &str| {
        format!(
            "[...document.querySelectorAll('tr')].filter(r => r.cells[0] && r.cells[0].innerText.startsWith({})).map(r => r.innerText).join('\\n')",
            serde_json::to_string(target).unwrap()
        )
    };
    let planted_row_text = b.eval(&row_text(planted_url)).as_str().unwrap().to_string();
    let planted_cause_text = b.eval(&row_text(PLANTED)).as_str().unwrap().to_string();
    let widths = "[document.documentElement.scrollWidth, document.documentElement.clientWidth]";
    let pair = |v: Value| (v[0].as_u64().unwrap(), v[1].as_u64().unwrap());
    let width_1280 = pair(b.eval(widths));
    let png = b.screenshot();
    let png_1280 = browser::png_size(&png);
    save_screenshot("status-page-1280.png", &png);
    let light_bg = b.eval("getComputedStyle(document.body).backgroundColor");
    b.dark(true);
    let dark_bg = b.eval("getComputedStyle(document.body).backgroundColor");
    b.dark(false);
    b.viewport(390, 844, true);
    b.navigate(&still);
    let width_390 = pair(b.eval(widths));
    let png = b.screenshot();
    let png_390 = browser::png_size(&png);
    save_screenshot("status-page-390.png", &png);
    drop(b);
    Looks {
        dom,
        title,
        scripts,
        fetched,
        planted_row_text,
        planted_cause_text,
        width_390,
        width_1280,
        png_390,
        png_1280,
        light_bg: light_bg.as_str().unwrap_or_default().into(),
        dark_bg: dark_bg.as_str().unwrap_or_default().into(),
    }
}

/// Starts every target, runs sonde until each URL has a dozen results, and looks.
fn observe() -> Observed {
    let dir = Dir::new();
    let world = start_world(&dir);
    let host = world.registry.host();
    let planted_url = format!("http://127.0.0.1:{}/#{PLANTED}", closed_port());
    let urls = [
        (world.site.url("/"), "up"),
        (world.site.url("/api"), "up"),
        (world.soon.https_url("/"), "up"),
        (world.urgent.https_url("/"), "up"),
        (world.site.url("/gone"), "down"),
        (planted_url.clone(), "down"),
    ];
    let image_list = [
        (format!("{host}/team/app:v1"), "up"),
        (format!("{host}/team/app:v404"), "down"),
        (PLANTED.to_string(), "down"),
    ];
    dir.write("sonde.yml", scenario_config(&world, &urls, &image_list));
    let sonde = Sonde::start_in(dir, &[]);
    sonde.wait_ready();
    wait_for_history(&sonde, 12);

    let get = |path: &str| sonde.get(path);
    Observed {
        expected: expected_states(&urls, &image_list),
        looks: look(&format!("http://{}/", sonde.addr), &planted_url),
        root: get("/"),
        down_only: get("/?state=down"),
        one_check: get("/?check=images"),
        unknown_check: get("/?check=nope"),
        bad_state: get("/?state=sideways"),
        refresh_off: get("/?refresh=0"),
        refresh_30: get("/?refresh=30"),
        json: get("/api/v1/targets?check=websites").json(),
    }
}

/// Waits (at most 60 s) until the first URL's history holds `n` results.
fn wait_for_history(sonde: &Sonde, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let j = sonde.get("/api/v1/targets?check=websites").json();
        let len = j["checks"][0]["targets"][0]["history"]
            .as_array()
            .map_or(0, Vec::len);
        if len >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("history did not reach {n} results; log: {:?}", sonde.log());
}

/// Each table row of a page: target text (as serialized, escaped) -> (state, row).
fn rows(html: &str) -> BTreeMap<String, (String, String)> {
    let re = regex::Regex::new(
        r#"(?s)<tr data-state="(\w+)"><td class="t">(.*?)(?:<div class="sub">.*?)?</td>(.*?)</tr>"#,
    )
    .unwrap();
    // Chromium's serializer leaves quotes bare; sonde writes them as references.
    let unquote = |t: &str| t.replace("&#39;", "'").replace("&quot;", "\"");
    re.captures_iter(html)
        .map(|c| (unquote(&c[2]), (c[1].to_string(), c[3].to_string())))
        .collect()
}

/// `text` as an HTML serializer writes it in element content.
fn as_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[test]
fn every_target_s_state_is_in_the_rendered_dom() {
    let o = observed();
    let rows = rows(&o.looks.dom);
    for (target, state) in &o.expected {
        let Some((seen, row)) = rows.get(&as_text(target)) else {
            panic!("no row for {target:?} in the DOM:\n{}", o.looks.dom);
        };
        assert_eq!(seen, state, "{target}: {row}");
        let word = match *state {
            "up" => "✓",
            _ => "✗",
        };
        assert!(row.contains(word), "{target}: state not in words: {row}");
    }
    // Every sensor of the fixture with a reading has a row.
    let sensors = rows
        .keys()
        .filter(|t| t.starts_with("platform_") || t.starts_with("nct"))
        .count();
    assert!(sensors >= 10, "{sensors} sensor rows");
}

#[test]
fn a_script_planted_in_a_url_and_in_a_cause_does_not_run_and_shows_as_text() {
    let o = observed();
    assert!(
        o.looks.title.starts_with("sonde: "),
        "title {:?}",
        o.looks.title
    );
    assert_ne!(o.looks.title, "pwned");
    assert_eq!(o.looks.scripts, 0, "no <script> element may reach the DOM");
    assert!(
        !o.looks.dom.to_ascii_lowercase().contains("<script"),
        "{}",
        o.looks.dom
    );
    // Shown as text: the URL in its row, the image reference in its row and in the
    // cause the reference check gives (invalid_reference quotes it).
    assert!(
        o.looks.planted_row_text.contains(PLANTED),
        "{}",
        o.looks.planted_row_text
    );
    assert!(
        o.looks.planted_row_text.contains("connect"),
        "{}",
        o.looks.planted_row_text
    );
    // The cause quotes the reference: `invalid registry host "<script>...<"`.
    assert!(
        o.looks.planted_cause_text.starts_with(PLANTED),
        "{}",
        o.looks.planted_cause_text
    );
    let cause = o
        .looks
        .planted_cause_text
        .split_once('\n')
        .map_or("", |(_, c)| c);
    assert!(
        cause.contains("invalid") && cause.contains("\"<script>document.title='pwned'"),
        "{}",
        o.looks.planted_cause_text
    );
    assert!(o.looks.dom.contains(&as_text(PLANTED)));
    // The policy stops an inline script even if one ever got through.
    assert_eq!(o.root.header("content-security-policy"), Some(CSP));
}

#[test]
fn the_page_needs_nothing_but_itself() {
    let o = observed();
    // What works in the scratch image and behind basic auth: no script, style sheet,
    // font or image from anywhere, only the document and its inline parts.
    assert_eq!(
        o.looks.fetched,
        serde_json::json!([]),
        "the browser fetched more than the page"
    );
    let page = o.root.text();
    for outside in [
        "src=",
        "url(",
        "@import",
        "<link rel=\"stylesheet",
        "href=\"http",
    ] {
        assert!(!page.contains(outside), "{outside} in the page");
    }
}

#[test]
fn screenshots_at_1280_and_390_px_fit_their_width() {
    let o = observed();
    assert_eq!(o.looks.png_1280.0, 1280);
    assert_eq!(o.looks.png_390.0, 390);
    assert!(
        o.looks.png_390.1 > 844,
        "a full-page capture is taller than the phone"
    );
    let (scroll, client) = o.looks.width_390;
    assert_eq!(client, 390);
    assert!(
        scroll <= client,
        "horizontal scroll at 390 px: {scroll} > {client}"
    );
    let (scroll, client) = o.looks.width_1280;
    assert!(
        scroll <= client,
        "horizontal scroll at 1280 px: {scroll} > {client}"
    );
}

#[test]
fn dark_mode_follows_prefers_color_scheme() {
    let o = observed();
    assert_eq!(o.looks.light_bg, "rgb(255, 255, 255)");
    assert_eq!(o.looks.dark_bg, "rgb(13, 17, 23)");
}

#[test]
fn the_summary_counts_targets_and_names_the_next_certificate_to_expire() {
    let o = observed();
    let page = o.root.text();
    let up = o.expected.values().filter(|s| **s == "up").count();
    assert!(
        page.contains("6 checks · targets: <span class=\"up\">"),
        "{page}"
    );
    assert!(page.contains("not yet run</span></p>"), "{page}");
    let summary = page.split("<p class=\"summary\">").nth(1).unwrap();
    let summary = summary.split("</p>").next().unwrap();
    let count = |class: &str| -> usize {
        let tail = summary
            .split(&format!("<span class=\"{class}\">"))
            .nth(1)
            .unwrap();
        tail.split(' ').next().unwrap().parse().unwrap()
    };
    // Sensors add to what the test listed; the flaky URL is either.
    assert!(count("up") >= up, "{summary}");
    assert!(count("down") >= 5, "{summary}");
    assert_eq!(count("pending"), 0, "{summary}");
    // The 2-day certificate is the next to expire, and is marked urgent in words.
    let next = page.split("Next certificate to expire: ").nth(1).unwrap();
    let next = next.split("</p>").next().unwrap();
    assert!(next.contains("(websites)"), "{next}");
    assert!(next.contains("class=\"crit\""), "{next}");
    assert!(
        next.contains("day left: renew now") || next.contains("days left: renew now"),
        "{next}"
    );
}

/// The cells of the root page's row of target `t` (as written in the config).
fn row_of<'a>(rows: &'a BTreeMap<String, (String, String)>, t: &str) -> &'a String {
    &rows
        .get(&as_text(t))
        .unwrap_or_else(|| panic!("no row {t}"))
        .1
}

/// The one target of the config ending with `suffix`.
fn target_ending(o: &'static Observed, suffix: &str) -> &'static str {
    o.expected
        .keys()
        .find(|k| k.ends_with(suffix))
        .unwrap_or_else(|| panic!("no target ends with {suffix}"))
}

#[test]
fn each_kind_shows_what_a_person_looks_for_http() {
    let o = observed();
    let rows = rows(&o.root.text());
    // http: status code, latency, a sparkline, certificate days marked under 14 and 3.
    let certs: Vec<&String> = o
        .expected
        .keys()
        .filter(|k| k.starts_with("https://"))
        .collect();
    assert_eq!(certs.len(), 2, "{certs:?}");
    let marks: Vec<&str> = certs
        .iter()
        .map(|c| {
            let r = row_of(&rows, c);
            assert!(r.contains("data-l=\"Code\">200<"), "{r}");
            assert!(r.contains(" ms</td>"), "{r}");
            assert!(r.contains("<svg class=\"sp\""), "{r}");
            if r.contains("renew now") {
                "urgent"
            } else if r.contains("renew soon") {
                "soon"
            } else {
                "none"
            }
        })
        .collect();
    assert!(
        marks.contains(&"urgent") && marks.contains(&"soon"),
        "{marks:?}"
    );
    let gone = row_of(&rows, target_ending(o, "/gone"));
    assert!(
        gone.contains("data-l=\"Code\">404<") && gone.contains("status_code"),
        "{gone}"
    );
}

#[test]
fn each_kind_shows_what_a_person_looks_for_images_and_containers() {
    let o = observed();
    let rows = rows(&o.root.text());
    // Images: the status word, and why.
    let present = row_of(&rows, target_ending(o, "/team/app:v1"));
    assert!(present.contains("✓ available"), "{present}");
    let absent = row_of(&rows, target_ending(o, "/team/app:v404"));
    assert!(
        absent.contains("✗ absent") && absent.contains("HTTP 404"),
        "{absent}"
    );
    // Containers: the workload and container, the image under them, the status.
    let sidecar = row_of(&rows, "deployment/shop/web sidecar");
    assert!(sidecar.contains("✗ absent"), "{sidecar}");
    let page = o.root.text();
    assert!(
        page.contains(&format!(
            "deployment/shop/web sidecar<div class=\"sub\">{}/team/proxy:v2</div>",
            target_ending(o, "/team/app:v1").trim_end_matches("/team/app:v1")
        )),
        "{page}"
    );
}

#[test]
fn each_kind_shows_what_a_person_looks_for_sensors_and_docker_hub() {
    let o = observed();
    let rows = rows(&o.root.text());
    // Sensors: value against max and crit, in their unit; a set alarm is down.
    let temp1 = row_of(&rows, "platform_coretemp_0 temp1");
    assert!(
        temp1.contains(">38 °C<") && temp1.contains(">80 °C<") && temp1.contains(">100 °C<"),
        "{temp1}"
    );
    assert!(row_of(&rows, "platform_coretemp_0 temp5").contains("crit_alarm"));
    assert_eq!(rows["platform_coretemp_0 temp5"].0, "down");
    // A non-critical alarm (an unused input under its min) is a note, not a failure.
    assert_eq!(rows["nct6793 in5"].0, "up");
    assert!(row_of(&rows, "nct6793 in5").contains("the chip sets in5_alarm"));
    // Docker Hub: by pulls, most first, with separators.
    let page = o.root.text();
    let hub = page.split("id=\"check-hub\"").nth(1).unwrap();
    let order: Vec<usize> = ["acme/api", "acme/web", "acme/tools"]
        .iter()
        .map(|r| hub.find(&format!(">{r}<")).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    assert!(row_of(&rows, "acme/api").contains(">1,234,567<"));
}

#[test]
fn filters_select_targets_by_state_and_check() {
    let o = observed();
    let down = rows(&o.down_only.text());
    assert!(!down.is_empty());
    assert!(down.values().all(|(s, _)| s == "down"), "{down:?}");
    for (target, state) in &o.expected {
        assert_eq!(
            down.contains_key(&as_text(target)),
            *state == "down",
            "{target}"
        );
    }
    let one = o.one_check.text();
    assert!(one.contains("id=\"check-images\"") && !one.contains("id=\"check-websites\""));
    assert_eq!(rows(&one).len(), 3);
    assert_eq!(o.unknown_check.status, 404);
    assert!(o.unknown_check.text().contains("no check named \"nope\""));
    assert_eq!(o.bad_state.status, 400);
    assert!(
        o.bad_state
            .text()
            .contains("state must be up, down or pending")
    );
}

#[test]
fn the_page_refreshes_at_the_shortest_check_interval_unless_told_otherwise() {
    let o = observed();
    assert!(
        o.root
            .text()
            .contains("<meta http-equiv=\"refresh\" content=\"1\">")
    );
    assert!(!o.refresh_off.text().contains("http-equiv=\"refresh\""));
    assert!(
        o.refresh_30
            .text()
            .contains("<meta http-equiv=\"refresh\" content=\"30\">")
    );
    assert_eq!(o.root.header("cache-control"), Some("no-store"));
    let timing = o.root.header("server-timing").unwrap();
    let ms: f64 = timing.strip_prefix("render;dur=").unwrap().parse().unwrap();
    assert!(ms >= 0.0, "{timing}");
}

#[test]
fn the_json_history_lists_each_target_s_results_oldest_first() {
    let o = observed();
    let check = &o.json["checks"][0];
    assert_eq!(check["name"], "websites");
    assert_eq!(check["kind"], "http");
    let targets = check["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 6);
    let first = &targets[0];
    for key in [
        "target",
        "state",
        "status_code",
        "duration_seconds",
        "error",
        "cause",
        "cert_not_after",
        "history",
    ] {
        assert!(first.get(key).is_some(), "{key} missing in {first}");
    }
    assert_eq!(first["value_unit"], "ms");
    for t in targets {
        let history = t["history"].as_array().unwrap();
        assert!(history.len() >= 12 && history.len() <= 60, "{t}");
        let times: Vec<&str> = history
            .iter()
            .map(|p| p["time"].as_str().unwrap())
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
        let last = history.last().unwrap();
        assert_eq!(last["state"], t["state"], "{t}");
        assert!(last["value"].as_f64().unwrap() >= 0.0);
    }
    let tls = targets
        .iter()
        .find(|t| t["target"].as_str().unwrap().starts_with("https://"))
        .unwrap();
    assert!(
        tls["cert_not_after"]
            .as_str()
            .unwrap()
            .ends_with("T00:00:00.000Z"),
        "{tls}"
    );
    let days = tls["cert_days_left"].as_f64().unwrap();
    assert!((0.0..=10.0).contains(&days), "{tls}");
}

/// Whether request `n` (0-based) of the ring test's URL fails: a pattern that reads
/// differently backwards, so a history in the wrong order cannot match it.
fn fails(n: usize) -> bool {
    matches!(n % 10, 0 | 1 | 3)
}

#[test]
fn the_history_ring_keeps_the_last_60_results_in_order() {
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&calls);
    let site = Fixture::start(move |_| {
        if fails(counter.fetch_add(1, Ordering::SeqCst)) {
            Reply::status(503, "busy")
        } else {
            Reply::status(200, "ok")
        }
    });
    let closed = format!("http://127.0.0.1:{}/", closed_port());
    let sonde = Sonde::start(&format!(
        "checks:\n  - name: fast\n    kind: http\n    interval: 200ms\n    urls: [{:?}]\n  - name: other\n    kind: http\n    interval: 1h\n    urls: [{closed:?}]\n",
        site.url("/"),
    ));
    sonde.wait_ready();
    let deadline = Instant::now() + Duration::from_secs(60);
    while calls.load(Ordering::SeqCst) < 66 {
        assert!(
            Instant::now() < deadline,
            "66 probes did not happen in 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = calls.load(Ordering::SeqCst);
    let body = sonde.get("/api/v1/targets?check=fast").json();
    let after = calls.load(Ordering::SeqCst);
    assert_eq!(body["status"], "ok");
    let checks = body["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 1, "?check= selects one check: {body}");
    let target = &checks[0]["targets"][0];
    assert_eq!(target["target"], site.url("/"));
    let history = target["history"].as_array().unwrap();
    assert_eq!(
        history.len(),
        60,
        "the ring holds the last 60 of {before}+ results"
    );
    for point in history {
        assert_eq!(point.as_object().unwrap().len(), 3, "{point}");
        assert!(point["time"].as_str().unwrap().ends_with(".000Z"));
        assert!(point["value"].as_f64().unwrap() > 0.0, "{point}");
    }
    let states: Vec<bool> = history.iter().map(|p| p["state"] == "down").collect();
    // The ring ends with the last answered probe: one of those served while reading.
    let matches = (before.max(60)..=after).any(|end| {
        let expected: Vec<bool> = (end - 60..end).map(fails).collect();
        expected == states
    });
    assert!(
        matches,
        "history {states:?} is not the last 60 answers before {before}..={after}"
    );
    let times: Vec<&str> = history
        .iter()
        .map(|p| p["time"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    // Filters work on the JSON too; an unknown check is a 404 with the reason.
    let down = sonde.get("/api/v1/targets?state=down").json();
    let listed: Vec<&Value> = down["checks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["targets"].as_array().unwrap())
        .collect();
    assert!(listed.iter().all(|t| t["state"] == "down"), "{down}");
    assert!(
        listed.iter().any(|t| t["target"] == closed.as_str()),
        "{down}"
    );
    let missing = sonde.get("/api/v1/targets?check=nope");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "no check named \"nope\"");
    assert_eq!(sonde.get("/api/v1/targets?state=maybe").status, 400);
}

#[test]
fn the_page_is_served_behind_basic_auth_and_tls_and_loads_in_the_browser() {
    let ca = common::TestCa::new();
    let leaf = ca.leaf((2020, 1, 1), (2045, 1, 1));
    let dir = Dir::new();
    dir.write("tls.crt", &leaf.cert_pem);
    dir.write("tls.key", &leaf.key_pem);
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let web = dir.write(
        "web.yml",
        format!(
            "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\nbasic_auth_users:\n  viewer: \"{hash}\"\n"
        ),
    );
    let site = Fixture::start(|_| Reply::status(200, "ok"));
    dir.write(
        "sonde.yml",
        format!(
            "checks:\n  - name: guarded\n    kind: http\n    interval: 1s\n    urls: [{:?}]\n",
            site.url("/private")
        ),
    );
    let sonde = Sonde::start_in(dir, &["--web.config.file", web.to_str().unwrap()]);
    let port = sonde.addr.port();
    let profile = Dir::new();
    let insecure = ["--ignore-certificate-errors"];
    // Without credentials: a 401 with a challenge, and nothing of the page.
    for path in ["/", "/api/v1/targets"] {
        let head = over_tls(port, path, None);
        assert!(head.starts_with("HTTP/1.1 401 "), "{path}: {head}");
        assert!(head.contains("WWW-Authenticate: Basic"), "{head}");
        assert!(!head.contains("guarded"), "{head}");
    }
    let refused = browser::dump_dom(
        profile.path(),
        &format!("https://localhost:{port}/"),
        &insecure,
    );
    assert!(!refused.contains("guarded"), "{refused}");
    let page = over_tls(port, "/", Some("viewer:s3cret"));
    assert!(page.starts_with("HTTP/1.1 200 "), "{page}");
    assert!(
        page.contains(&format!("Content-Security-Policy: {CSP}\r\n")),
        "{page}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let dom = loop {
        let dom = browser::dump_dom(
            profile.path(),
            &format!("https://viewer:s3cret@localhost:{port}/"),
            &insecure,
        );
        if dom.contains("<tr data-state=\"up\">") || Instant::now() > deadline {
            break dom;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(dom.contains("id=\"check-guarded\""), "{dom}");
    let rows = rows(&dom);
    assert_eq!(
        rows.get(&site.url("/private")).map(|r| r.0.as_str()),
        Some("up"),
        "{dom}"
    );
    // Plain HTTP on the TLS port is not served.
    let plain = common::try_request(sonde.addr, "GET", "/", &[], b"");
    assert!(plain.map_or(true, |r| r.status != 200));
}

/// One request over TLS with Debian's `openssl s_client`; the whole answer.
fn over_tls(port: u16, path: &str, credentials: Option<&str>) -> String {
    use std::io::{Read, Write};
    let mut child = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-ign_eof",
            "-servername",
            "localhost",
            "-connect",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl (Debian package openssl) must be installed");
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(c) = credentials {
        request.push_str(&format!(
            "Authorization: Basic {}\r\n",
            common::base64(c.as_bytes())
        ));
    }
    request.push_str("\r\n");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(request.as_bytes()).unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut answer = String::new();
        let _ = stdout.read_to_string(&mut answer);
        answer
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("openssl s_client did not finish within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(stdin);
    reader.join().unwrap()
}

#[test]
fn a_check_with_250_targets_shows_the_down_ones_and_a_link_to_all() {
    let site = Fixture::start(|req| {
        if req.path.ends_with("/down") {
            Reply::status(500, "no")
        } else {
            Reply::status(200, "ok")
        }
    });
    let urls: Vec<String> = (0..250)
        .map(|i| {
            let tail = if i % 50 == 7 { "down" } else { "up" };
            format!("{:?}", site.url(&format!("/{i}/{tail}")))
        })
        .collect();
    let sonde = Sonde::start(&format!(
        "checks:\n  - name: many\n    kind: http\n    interval: 1h\n    urls: [{}]\n",
        urls.join(", ")
    ));
    sonde.wait_ready();
    let overview = sonde.get("/").text();
    let shown = rows(&overview);
    assert_eq!(shown.len(), 5, "{overview}");
    assert!(shown.values().all(|(state, _)| state == "down"));
    assert!(overview.contains(
        "245 up targets not shown. <a href=\"?check=many\">Show all 250 targets of many</a>"
    ));
    let all = sonde.get("/?check=many");
    assert_eq!(rows(&all.text()).len(), 250);
    // Compressed for a client that accepts it, as a browser does.
    for path in ["/?check=many", "/api/v1/targets?check=many"] {
        let gz = common::request(sonde.addr, "GET", path, &[("Accept-Encoding", "gzip")], b"");
        assert_eq!(gz.header("content-encoding"), Some("gzip"), "{path}");
        assert_eq!(gz.header("vary"), Some("Accept-Encoding"), "{path}");
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz.body[..]), &mut text)
            .unwrap();
        assert!(
            gz.body.len() * 4 < text.len(),
            "{path}: {} of {}",
            gz.body.len(),
            text.len()
        );
        if path.starts_with("/?") {
            assert_eq!(rows(&text).len(), 250);
            assert!(gz.header("server-timing").unwrap().contains(", gzip;dur="));
        } else {
            let j: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(j["checks"][0]["targets"].as_array().unwrap().len(), 250);
        }
    }
}
