//! `--shard i/n`: replicas running the same config split the targets between them. Three
//! replicas together check every URL, image and Docker Hub organization exactly once;
//! going to four moves about a quarter of the targets (at most 35 %); hwmon is never
//! sharded; each replica says which part it is.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;

const URLS: usize = 90;
const IMAGES: usize = 45;
const ORGS: usize = 30;

/// A config of every shardable kind, against targets that answer at once: URLs on a
/// closed port, images on a closed registry, organizations on an empty Docker Hub.
fn config(hub: &Fixture) -> String {
    let urls: String = (0..URLS)
        .map(|i| format!("      - http://127.0.0.1:1/u{i}\n"))
        .collect();
    let images: String = (0..IMAGES)
        .map(|i| format!("      - 127.0.0.1:1/team/app{i}:v1\n"))
        .collect();
    let orgs: String = (0..ORGS).map(|i| format!("org{i}, ")).collect();
    format!(
        "checks:\n  - name: web\n    kind: http\n    urls:\n{urls}\
         \n  - name: images\n    kind: registry\n    retries: 0\n    plain_http_registries: [\"127.0.0.1:1\"]\n    images:\n{images}\
         \n  - name: hub\n    kind: dockerhub\n    api_url: {}\n    organizations: [{}]\
         \n  - name: sensors\n    kind: hwmon\n    sysfs_path: {:?}\n",
        hub.url(""),
        orgs.trim_end_matches(", "),
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/hwmon/raspberry_pi"),
    )
}

/// The targets one replica checked, by kind, read from its `--once` output.
fn targets(dir: &Dir, shard: &str) -> BTreeMap<&'static str, BTreeSet<String>> {
    let cfg = dir.path().join("sonde.yml");
    let out = run(&["--once", "-c", cfg.to_str().unwrap(), "--shard", shard]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains(&format!(
            "sonde_shard_info{{count=\"{}\",index=\"{}\"}} 1",
            shard.split('/').nth(1).unwrap(),
            shard.split('/').next().unwrap()
        )),
        "{shard}: no sonde_shard_info in\n{text}"
    );
    let label = |line: &str, name: &str| -> Option<String> {
        let start = line.find(&format!("{name}=\""))? + name.len() + 2;
        Some(line[start..].split('"').next()?.to_string())
    };
    let mut found: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with("sonde_http_up{") {
            found.entry("url").or_default().extend(label(line, "url"));
        } else if line.starts_with("sonde_image_check_status{") {
            found
                .entry("image")
                .or_default()
                .extend(label(line, "image"));
        } else if line.starts_with("sonde_dockerhub_repositories{") {
            found
                .entry("organization")
                .or_default()
                .extend(label(line, "organization"));
        } else if line.starts_with("sonde_hwmon_temp_celsius{") {
            found.entry("sensor").or_default().insert(line.to_string());
        }
    }
    found
}

fn empty_hub() -> Fixture {
    Fixture::start(|_| {
        Reply::status(200, r#"{"count": 0, "next": null, "results": []}"#)
            .with_header("Content-Type", "application/json")
    })
}

#[test]
fn three_replicas_check_every_target_once_and_a_fourth_moves_about_a_quarter() {
    let hub = empty_hub();
    let dir = Dir::new();
    dir.write("sonde.yml", config(&hub));
    let whole = targets(&dir, "0/1");
    assert_eq!(whole["url"].len(), URLS);
    assert_eq!(whole["image"].len(), IMAGES);
    assert_eq!(whole["organization"].len(), ORGS);

    let three: Vec<_> = (0..3).map(|i| targets(&dir, &format!("{i}/3"))).collect();
    for kind in ["url", "image", "organization"] {
        let mut seen = BTreeSet::new();
        let mut total = 0;
        for replica in &three {
            let part = replica.get(kind).cloned().unwrap_or_default();
            assert!(!part.is_empty(), "a replica checks no {kind}");
            total += part.len();
            seen.extend(part);
        }
        assert_eq!(seen, whole[kind], "the replicas do not cover every {kind}");
        assert_eq!(total, whole[kind].len(), "a {kind} is checked twice");
    }
    // hwmon is never sharded: every replica reads every sensor.
    for replica in &three {
        assert_eq!(replica["sensor"], whole["sensor"]);
    }

    let four: Vec<_> = (0..4).map(|i| targets(&dir, &format!("{i}/4"))).collect();
    let owner = |replicas: &[BTreeMap<&str, BTreeSet<String>>], kind: &str, target: &str| {
        replicas
            .iter()
            .position(|r| r.get(kind).is_some_and(|s| s.contains(target)))
    };
    let mut moved = 0;
    let mut all = 0;
    for kind in ["url", "image", "organization"] {
        for target in &whole[kind] {
            all += 1;
            if owner(&three, kind, target) != owner(&four, kind, target) {
                moved += 1;
            }
        }
    }
    let share = moved as f64 / all as f64;
    eprintln!(
        "3 -> 4 replicas: {moved} of {all} targets moved ({:.1} %)",
        share * 100.0
    );
    assert!(share <= 0.35, "{moved} of {all} targets moved");
}

#[test]
fn a_bad_shard_is_a_usage_error() {
    for bad in ["3/3", "x", "1/0"] {
        let out = run(&["--shard", bad, "--config.check"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.starts_with("sonde: --shard"), "{bad}: {stderr}");
    }
}
