//! `kind: hwmon` against Debian's prometheus-node-exporter (1.5.0) on sysfs trees laid
//! out like real machines (tests/data/hwmon/): every `node_hwmon_*` series must have a
//! `sonde_hwmon_*` twin with the same labels plus `check` and the same value, except
//! for the differences the README documents, which are asserted one by one.

mod common;
#[path = "images/readme.rs"]
mod readme;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Dir, promtool_check_metrics};

const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";

fn tree(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/hwmon")
        .join(name)
}

/// One sample of an exposition.
#[derive(Clone, Debug, PartialEq)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// An exposition split into samples and the TYPE of each family.
#[derive(Debug, Default)]
struct Parsed {
    series: Vec<Series>,
    types: HashMap<String, String>,
}

impl Parsed {
    fn new(text: &str) -> Parsed {
        let mut out = Parsed::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, mtype) = rest.split_once(' ').expect("TYPE line");
                out.types.insert(name.to_string(), mtype.to_string());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            out.series.push(parse_sample(line));
        }
        out
    }

    fn with_prefix(&self, prefix: &str) -> Vec<&Series> {
        self.series
            .iter()
            .filter(|s| s.name.starts_with(prefix))
            .collect()
    }

    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.series
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }
}

/// Parses `name{k="v",...} value` with the format's escapes.
fn parse_sample(line: &str) -> Series {
    let name_end = line.find(['{', ' ']).expect("sample name");
    let name = line[..name_end].to_string();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        loop {
            let key_start = chars.clone().next().expect("label").0;
            let (eq, _) = chars.find(|(_, c)| *c == '=').expect("=");
            let key = body[key_start..eq].to_string();
            assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
            let mut value = String::new();
            loop {
                match chars.next().expect("closing quote") {
                    (_, '"') => break,
                    (_, '\\') => match chars.next().expect("escape").1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (_, c) => value.push(c),
                }
            }
            labels.insert(key, value);
            match chars.next().expect("after label") {
                (_, ',') => continue,
                (i, '}') => {
                    rest = &body[i + 1..];
                    break;
                }
                other => panic!("unexpected {other:?} in {line}"),
            }
        }
    }
    let value = match rest.trim() {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().unwrap_or_else(|_| panic!("value in {line}")),
    };
    Series {
        name,
        labels,
        value,
    }
}

/// Runs Debian's node_exporter with only the hwmon collector on `sysfs` and returns
/// one scrape.
fn node_exporter_scrape(sysfs: &Path) -> String {
    let node = common::Daemon::start(
        NODE_EXPORTER,
        |addr| {
            vec![
                format!("--path.sysfs={}", sysfs.display()),
                "--collector.disable-defaults".into(),
                "--collector.hwmon".into(),
                format!("--web.listen-address={addr}"),
            ]
        },
        "/metrics",
        None,
    );
    common::request(node.addr, "GET", "/metrics", &[], b"").text()
}

/// `sonde --once` with one hwmon check `hw` of `sysfs`: exit code and stdout.
fn sonde_once(sysfs: &Path) -> (Option<i32>, String) {
    let dir = Dir::new();
    let config = dir.write(
        "sonde.yml",
        format!(
            "checks:\n  - name: hw\n    kind: hwmon\n    sysfs_path: {}\n",
            sysfs.display()
        ),
    );
    let out = common::run(&["--config.file", config.to_str().unwrap(), "--once"]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The sonde series node_exporter's series must match, per the README's list of
/// differences: (name, value, whether the value is exact or rescaled).
fn expected_twin(node: &Series) -> (String, f64, bool) {
    let rest = node.name.strip_prefix("node_hwmon_").unwrap();
    // Humidity: the kernel gives milli-percent, so the ratio is /1e5, not /1e6.
    if rest.starts_with("humidity") && !rest.ends_with("_alarm") {
        return (format!("sonde_hwmon_{rest}"), node.value * 10.0, false);
    }
    // Power meter accuracy: percent, so the ratio is /100, not /1e6.
    if rest == "power_accuracy" {
        return (format!("sonde_hwmon_{rest}"), node.value * 10_000.0, false);
    }
    // Limit alarms and enable files are 0/1 flags: no unit, no scaling.
    for (unit, scale) in [
        ("_volts", 1e3),
        ("_celsius", 1e3),
        ("_amps", 1e3),
        ("_watt", 1e6),
        ("_joule_total", 1e6),
    ] {
        if let Some(flag) = rest.strip_suffix(unit)
            && (flag.ends_with("_alarm") || flag.ends_with("_enable"))
        {
            return (format!("sonde_hwmon_{flag}"), node.value * scale, false);
        }
    }
    (format!("sonde_hwmon_{rest}"), node.value, true)
}

fn same_value(a: f64, b: f64, exact: bool) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if exact {
        return a == b;
    }
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Asserts that every node_exporter hwmon series has its sonde twin (labels plus
/// check="hw", value and TYPE equal or as documented) and that sonde emits nothing
/// else but `sonde_only` (series keys as "name{labels}"); returns both parses.
fn assert_equivalent(node_text: &str, sonde_text: &str, sonde_only: &[&str]) -> (Parsed, Parsed) {
    let node = Parsed::new(node_text);
    let sonde = Parsed::new(sonde_text);
    let node_hwmon = node.with_prefix("node_hwmon_");
    assert!(
        !node_hwmon.is_empty(),
        "node_exporter read nothing:\n{node_text}"
    );
    let mut matched = BTreeSet::new();
    for n in &node_hwmon {
        let (name, value, exact) = expected_twin(n);
        let mut labels = n.labels.clone();
        labels.insert("check".into(), "hw".into());
        let twin = sonde
            .series
            .iter()
            .position(|s| s.name == name && s.labels == labels)
            .unwrap_or_else(|| {
                panic!("no sonde twin {name}{labels:?} of {n:?}\nsonde:\n{sonde_text}")
            });
        let got = sonde.series[twin].value;
        assert!(
            same_value(got, value, exact),
            "{name}{labels:?}: sonde {got}, expected {value} (node_exporter {})",
            n.value
        );
        let node_type = &node.types[&n.name];
        let sonde_type = &sonde.types[&name];
        if exact {
            assert_eq!(sonde_type, node_type, "TYPE of {name}");
        } else {
            assert_eq!(sonde_type, "gauge", "TYPE of {name}");
        }
        matched.insert(twin);
    }
    let unmatched: BTreeSet<String> = sonde
        .series
        .iter()
        .enumerate()
        .filter(|(i, s)| s.name.starts_with("sonde_hwmon_") && !matched.contains(i))
        .map(|(_, s)| key(s))
        .collect();
    let wanted: BTreeSet<String> = sonde_only.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        unmatched, wanted,
        "sonde series without a node_exporter twin"
    );
    (node, sonde)
}

/// `name{k=v,...}` with labels in name order and without check, for messages and lists.
fn key(s: &Series) -> String {
    let labels: Vec<String> = s
        .labels
        .iter()
        .filter(|(k, _)| *k != "check")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!("{}{{{}}}", s.name, labels.join(","))
}

fn assert_clean_run(code: Option<i32>, text: &str) {
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("sonde_check_success{check=\"hw\",kind=\"hwmon\"} 1"),
        "{text}"
    );
    let findings = promtool_check_metrics(text);
    assert!(findings.trim().is_empty(), "promtool: {findings}");
}

#[test]
fn intel_desktop_equals_node_exporter_with_abi_flags_and_accuracy() {
    let sysfs = tree("intel_desktop");
    let node_text = node_exporter_scrape(&sysfs);
    let (code, text) = sonde_once(&sysfs);
    assert_clean_run(code, &text);
    let (node, sonde) = assert_equivalent(&node_text, &text, &[]);

    // coretemp with six cores, named after its platform device.
    for (sensor, label, celsius) in [
        ("temp1", "Package id 0", 38.0),
        ("temp2", "Core 0", 35.0),
        ("temp7", "Core 5", 36.0),
    ] {
        let chip = ("chip", "platform_coretemp_0");
        let labels = [("check", "hw"), chip, ("sensor", sensor)];
        assert_eq!(
            sonde.find("sonde_hwmon_temp_celsius", &labels),
            Some(celsius)
        );
        let labels = [("check", "hw"), chip, ("sensor", sensor), ("label", label)];
        assert_eq!(sonde.find("sonde_hwmon_sensor_label", &labels), Some(1.0));
    }
    // The Super I/O chip has no device link: its name file names it.
    let nct = |sensor: &'static str| [("check", "hw"), ("chip", "nct6793"), ("sensor", sensor)];
    assert_eq!(
        sonde.find("sonde_hwmon_fan_rpm", &nct("fan2")),
        Some(1096.0)
    );
    assert_eq!(sonde.find("sonde_hwmon_in_volts", &nct("in0")), Some(0.84));
    assert_eq!(sonde.find("sonde_hwmon_pwm", &nct("pwm1")), Some(153.0));
    assert_eq!(
        sonde.find("sonde_hwmon_intrusion_alarm", &nct("intrusion0")),
        Some(1.0)
    );
    assert_eq!(
        sonde.find("sonde_hwmon_beep_enabled", &nct("beep_enable0")),
        Some(0.0)
    );
    // The thermal zone's own `temp` file is read from device/ as sensor temp0.
    let zone = |s: &'static str| {
        [
            ("check", "hw"),
            ("chip", "thermal_thermal_zone0"),
            ("sensor", s),
        ]
    };
    assert_eq!(
        sonde.find("sonde_hwmon_temp_celsius", &zone("temp0")),
        Some(27.8)
    );

    // Difference: a limit alarm is a flag, not 0.001 degrees.
    let core3 = [("chip", "platform_coretemp_0"), ("sensor", "temp5")];
    assert_eq!(
        node.find("node_hwmon_temp_crit_alarm_celsius", &core3),
        Some(0.001)
    );
    let core3 = [("check", "hw"), core3[0], core3[1]];
    assert_eq!(sonde.find("sonde_hwmon_temp_crit_alarm", &core3), Some(1.0));
    assert!(!text.contains("sonde_hwmon_temp_crit_alarm_celsius"));
    // Difference: the power meter's accuracy is 95 %, a ratio of 0.95.
    let meter = [("chip", "lnxsybus:00_acpi000d:00"), ("sensor", "power1")];
    assert_eq!(node.find("node_hwmon_power_accuracy", &meter), Some(9.5e-5));
    let meter = [("check", "hw"), meter[0], meter[1]];
    assert_eq!(sonde.find("sonde_hwmon_power_accuracy", &meter), Some(0.95));
    assert_eq!(
        sonde.find("sonde_hwmon_power_average_watt", &meter),
        Some(87.0)
    );
}

#[test]
fn amd_laptop_equals_node_exporter_plus_upstream_freq_sensors() {
    let sysfs = tree("amd_laptop");
    let node_text = node_exporter_scrape(&sysfs);
    let (code, text) = sonde_once(&sysfs);
    assert_clean_run(code, &text);
    // Difference: node_exporter 1.5.0 predates the freq sensor type that upstream
    // reads (amdgpu clocks, named after their label); sonde has it.
    let dgpu = "0000:02:00_0_0000:03:00_0";
    let igpu = "0000:00:08_1_0000:08:00_0";
    let only = [
        format!("sonde_hwmon_freq_freq_mhz{{chip={dgpu},sensor=mclk}}"),
        format!("sonde_hwmon_freq_freq_mhz{{chip={dgpu},sensor=sclk}}"),
        format!("sonde_hwmon_freq_freq_mhz{{chip={igpu},sensor=sclk}}"),
        format!("sonde_hwmon_sensor_label{{chip={dgpu},label=mclk,sensor=freq2}}"),
        format!("sonde_hwmon_sensor_label{{chip={dgpu},label=sclk,sensor=freq1}}"),
        format!("sonde_hwmon_sensor_label{{chip={igpu},label=sclk,sensor=freq1}}"),
    ];
    let only: Vec<&str> = only.iter().map(String::as_str).collect();
    let (node, sonde) = assert_equivalent(&node_text, &text, &only);
    assert!(!node_text.contains("freq"));
    let gpu = |sensor: &'static str| [("check", "hw"), ("chip", dgpu), ("sensor", sensor)];
    assert_eq!(
        sonde.find("sonde_hwmon_freq_freq_mhz", &gpu("sclk")),
        Some(500.0)
    );
    assert_eq!(
        sonde.find("sonde_hwmon_freq_freq_mhz", &gpu("mclk")),
        Some(96.0)
    );
    assert_eq!(
        sonde.find("sonde_hwmon_power_average_watt", &gpu("power1")),
        Some(12.0)
    );
    assert_eq!(
        sonde.find("sonde_hwmon_fan_rpm", &gpu("fan1")),
        Some(1890.0)
    );
    assert_eq!(
        sonde.find("sonde_hwmon_fan_target_rpm", &gpu("fan1")),
        Some(1890.0)
    );
    assert_eq!(
        sonde.find("sonde_hwmon_fan_enable", &gpu("fan1")),
        Some(1.0)
    );
    let k10 = [
        ("check", "hw"),
        ("chip", "pci0000:00_0000:00:18_3"),
        ("sensor", "temp1"),
    ];
    assert_eq!(sonde.find("sonde_hwmon_temp_celsius", &k10), Some(52.375));
    let bat = [
        ("check", "hw"),
        ("chip", "power_supply_bat0"),
        ("sensor", "in0"),
    ];
    assert_eq!(sonde.find("sonde_hwmon_in_volts", &bat), Some(17.163));
    let nvme = [("check", "hw"), ("chip", "nvme_nvme0"), ("sensor", "temp1")];
    assert_eq!(sonde.find("sonde_hwmon_temp_celsius", &nvme), Some(41.85));
    // Two amdgpu chips: distinct chips, the same chip_name.
    for chip in [dgpu, igpu] {
        let labels = [("check", "hw"), ("chip", chip), ("chip_name", "amdgpu")];
        assert_eq!(sonde.find("sonde_hwmon_chip_names", &labels), Some(1.0));
    }
    assert_eq!(
        node.find(
            "node_hwmon_chip_names",
            &[("chip", dgpu), ("chip_name", "amdgpu")]
        ),
        Some(1.0)
    );
}

#[test]
fn raspberry_pi_equals_node_exporter_with_kernel_humidity_units() {
    let sysfs = tree("raspberry_pi");
    let node_text = node_exporter_scrape(&sysfs);
    let (code, text) = sonde_once(&sysfs);
    assert_clean_run(code, &text);
    let (node, sonde) = assert_equivalent(&node_text, &text, &[]);
    let zone = |s: &'static str| {
        [
            ("check", "hw"),
            ("chip", "thermal_thermal_zone0"),
            ("sensor", s),
        ]
    };
    assert_eq!(
        sonde.find("sonde_hwmon_temp_celsius", &zone("temp1")),
        Some(48.686)
    );
    let names = [
        ("check", "hw"),
        ("chip", "thermal_thermal_zone0"),
        ("chip_name", "cpu_thermal"),
    ];
    assert_eq!(sonde.find("sonde_hwmon_chip_names", &names), Some(1.0));

    // Difference: humidity1_input 41250 is 41.25 % (milli-percent), a ratio of 0.4125.
    let sht = [("chip", "i2c_1_1_0044"), ("sensor", "humidity1")];
    assert_eq!(node.find("node_hwmon_humidity", &sht), Some(0.04125));
    let sht = [("check", "hw"), sht[0], sht[1]];
    assert_eq!(sonde.find("sonde_hwmon_humidity", &sht), Some(0.4125));
    assert_eq!(sonde.find("sonde_hwmon_humidity_max", &sht), Some(0.8));
    assert_eq!(sonde.find("sonde_hwmon_humidity_alarm", &sht), Some(0.0));
    let sht = [
        ("check", "hw"),
        ("chip", "i2c_1_1_0044"),
        ("sensor", "update_interval0"),
    ];
    assert_eq!(
        sonde.find("sonde_hwmon_update_interval_seconds", &sht),
        Some(1.0)
    );
    // Difference: in0_lcrit_alarm (under-voltage) and ina3221's enable and limit alarms
    // are flags.
    let volt = [
        ("chip", "soc:firmware_raspberrypi_hwmon"),
        ("sensor", "in0"),
    ];
    assert_eq!(
        node.find("node_hwmon_in_lcrit_alarm_volts", &volt),
        Some(0.0)
    );
    let volt = [("check", "hw"), volt[0], volt[1]];
    assert_eq!(sonde.find("sonde_hwmon_in_lcrit_alarm", &volt), Some(0.0));
    let ina = |s: &'static str| [("chip", "i2c_1_1_0040"), ("sensor", s)];
    assert_eq!(
        node.find("node_hwmon_in_enable_volts", &ina("in1")),
        Some(0.001)
    );
    assert_eq!(
        node.find("node_hwmon_curr_max_alarm_amps", &ina("curr1")),
        Some(0.001)
    );
    let ina = |s: &'static str| [("check", "hw"), ("chip", "i2c_1_1_0040"), ("sensor", s)];
    assert_eq!(sonde.find("sonde_hwmon_in_enable", &ina("in1")), Some(1.0));
    assert_eq!(
        sonde.find("sonde_hwmon_curr_max_alarm", &ina("curr1")),
        Some(1.0)
    );
    assert_eq!(
        sonde.find("sonde_hwmon_curr_amps", &ina("curr1")),
        Some(0.48)
    );
}

/// `sonde --once` over the collisions tree, checked clean: the path and the exposition.
fn collisions() -> (PathBuf, String) {
    let sysfs = tree("collisions");
    let (code, text) = sonde_once(&sysfs);
    assert_clean_run(code, &text);
    (sysfs, text)
}

/// Two hwmon devices of one parent: the name file tells asus-nb-wmi's apart; the
/// twice-registered card has the same name twice, so its hwmonX does.
#[test]
fn colliding_chips_follow_the_upstream_suffix_rule() {
    let (_, text) = collisions();
    let sonde = Parsed::new(&text);
    let chips: BTreeSet<(String, String)> = sonde
        .with_prefix("sonde_hwmon_chip_names")
        .iter()
        .map(|s| (s.labels["chip"].clone(), s.labels["chip_name"].clone()))
        .collect();
    let want: BTreeSet<(String, String)> = [
        ("pci0000:00_0000:00:18_3", "k10temp"),
        ("platform_asus_nb_wmi_asus", "asus"),
        (
            "platform_asus_nb_wmi_asus_custom_fan_curve",
            "asus_custom_fan_curve",
        ),
        ("0000:00:01_2_0000:04:00_0_hwmon2", "wormhole"),
        ("0000:00:01_2_0000:04:00_0_hwmon3", "wormhole"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(chips, want);
}

/// Each of two colliding chips keeps its own values under its suffixed label; a chip
/// whose base label is unique keeps it.
#[test]
fn colliding_chips_keep_their_own_values() {
    let (_, text) = collisions();
    let sonde = Parsed::new(&text);
    let pwm =
        |chip: &'static str, s: &'static str| [("check", "hw"), ("chip", chip), ("sensor", s)];
    let fans = "platform_asus_nb_wmi_asus";
    let curve = "platform_asus_nb_wmi_asus_custom_fan_curve";
    assert_eq!(
        sonde.find("sonde_hwmon_pwm_enable", &pwm(fans, "pwm1")),
        Some(2.0)
    );
    assert_eq!(
        sonde.find("sonde_hwmon_pwm_enable", &pwm(curve, "pwm1")),
        Some(1.0)
    );
    assert_eq!(
        sonde.find("sonde_hwmon_fan_rpm", &pwm(fans, "fan1")),
        Some(2900.0)
    );
    let card = |n: &'static str| [("check", "hw"), ("chip", n), ("sensor", "power1")];
    assert_eq!(
        sonde.find(
            "sonde_hwmon_power_watt",
            &card("0000:00:01_2_0000:04:00_0_hwmon2")
        ),
        Some(22.0)
    );
    assert_eq!(
        sonde.find(
            "sonde_hwmon_power_watt",
            &card("0000:00:01_2_0000:04:00_0_hwmon3")
        ),
        Some(22.5)
    );
    let k10 = [
        ("check", "hw"),
        ("chip", "pci0000:00_0000:00:18_3"),
        ("sensor", "temp1"),
    ];
    assert_eq!(sonde.find("sonde_hwmon_temp_celsius", &k10), Some(61.5));
}

/// node_exporter 1.5.0 predates the rule: both chips of a parent share its label, so
/// one of each duplicate pair is lost. Every series it does show is in sonde's output
/// under one of the suffixed labels.
#[test]
fn every_colliding_series_of_node_exporter_has_a_suffixed_twin() {
    let (sysfs, text) = collisions();
    let sonde = Parsed::new(&text);
    let node = Parsed::new(&node_exporter_scrape(&sysfs));
    let node_chips: BTreeSet<&str> = node
        .with_prefix("node_hwmon_")
        .iter()
        .filter_map(|s| s.labels.get("chip").map(String::as_str))
        .collect();
    assert_eq!(
        node_chips,
        BTreeSet::from([
            "0000:00:01_2_0000:04:00_0",
            "pci0000:00_0000:00:18_3",
            "platform_asus_nb_wmi"
        ])
    );
    for n in node.with_prefix("node_hwmon_") {
        let name = n.name.replace("node_hwmon_", "sonde_hwmon_");
        let found = sonde.series.iter().any(|s| {
            s.name == name
                && s.value == n.value
                && s.labels["chip"].starts_with(&n.labels["chip"])
                && s.labels
                    .iter()
                    .all(|(k, v)| k == "check" || k == "chip" || n.labels.get(k) == Some(v))
        });
        assert!(found, "{n:?} has no suffixed twin in\n{text}");
    }
}

/// Copies a fixture tree (symlinks as links) into a fresh directory.
fn copy_tree(name: &str) -> (Dir, PathBuf) {
    let dir = Dir::new();
    let status = Command::new("cp")
        .arg("-a")
        .arg(tree(name))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let copy = dir.path().join(name);
    (dir, copy)
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

/// A copy of the broken tree (garbage values, dangling and looping links, FIFOs, EIO),
/// scraped by node_exporter and then read by `sonde --once`, checked clean.
struct BrokenTree {
    _dir: Dir,
    node_text: String,
    text: String,
}

impl BrokenTree {
    fn read() -> BrokenTree {
        let (dir, sysfs) = copy_tree("broken");
        let it87 = sysfs.join("devices/platform/it87.2608/hwmon/hwmon0");
        // A read that fails with EIO, as a broken driver's does.
        symlink("/proc/self/mem", it87.join("temp15_input")).unwrap();
        let node_text = node_exporter_scrape(&sysfs);
        // node_exporter blocks for good opening a FIFO, so these come after its scrape.
        mkfifo(&it87.join("temp14_input"));
        mkfifo(&sysfs.join("devices/virtual/hwmon/hwmon8/name"));
        mkfifo(&sysfs.join("class/hwmon/hwmon9"));
        let (code, text) = sonde_once(&sysfs);
        assert_clean_run(code, &text);
        BrokenTree {
            _dir: dir,
            node_text,
            text,
        }
    }
}

fn it87(sensor: &'static str) -> [(&'static str, &'static str); 3] {
    [
        ("check", "hw"),
        ("chip", "platform_it87_2608"),
        ("sensor", sensor),
    ]
}

/// Difference: a device link to a regular file makes node_exporter drop the chip and
/// fail the collector; sonde reads the chip and has no device directory to add.
#[test]
fn broken_tree_equals_node_exporter_plus_a_chip_it_drops() {
    let tree = BrokenTree::read();
    let (node, sonde) = assert_equivalent(
        &tree.node_text,
        &tree.text,
        &[
            "sonde_hwmon_chip_names{chip=odd_blob,chip_name=blobby}",
            "sonde_hwmon_temp_celsius{chip=odd_blob,sensor=temp1}",
        ],
    );
    assert!(!tree.node_text.contains("odd_blob"));
    assert!(
        node.find(
            "node_hwmon_temp_celsius",
            &[("chip", "hwmon8"), ("sensor", "temp1")]
        )
        .is_some()
    );
    assert_eq!(
        sonde.find(
            "sonde_hwmon_temp_celsius",
            &[("check", "hw"), ("chip", "odd_blob"), ("sensor", "temp1")]
        ),
        Some(27.0)
    );
}

/// The good values of a broken chip, including what Go's ParseFloat also accepts, and
/// its labels (invalid UTF-8 bytes replaced, a 144-byte one cut to 128).
#[test]
fn broken_tree_gives_the_good_values_of_a_broken_chip() {
    let tree = BrokenTree::read();
    let sonde = Parsed::new(&tree.text);
    assert_eq!(
        sonde.find("sonde_hwmon_temp_celsius", &it87("temp1")),
        Some(41.0)
    );
    assert_eq!(
        sonde.find("sonde_hwmon_temp_celsius", &it87("temp7")),
        Some(0.016)
    );
    assert_eq!(
        sonde.find("sonde_hwmon_temp_celsius", &it87("temp11")),
        Some(30.0)
    );
    assert_eq!(
        sonde.find("sonde_hwmon_fan_rpm", &it87("fan1")),
        Some(1500.0)
    );
    assert_eq!(
        sonde.find("sonde_hwmon_fan_rpm", &it87("fan2")),
        Some(1500.0)
    );
    assert_eq!(
        sonde.find("sonde_hwmon_in_volts", &it87("in0")),
        Some(1.104)
    );
    // Millivolts times 0.001, as node_exporter computes them (3.3000000000000003).
    assert_eq!(
        sonde.find("sonde_hwmon_in_volts", &it87("in2")),
        Some(3300.0 * 0.001)
    );
    assert_eq!(
        sonde.find("sonde_hwmon_in_volts", &it87("in3")),
        Some(3300.0 * 0.001)
    );
    let label = [
        ("check", "hw"),
        ("chip", "platform_it87_2608"),
        ("sensor", "temp1"),
        ("label", "CPU\u{FFFD} Socket"),
    ];
    assert_eq!(sonde.find("sonde_hwmon_sensor_label", &label), Some(1.0));
    let long = sonde
        .with_prefix("sonde_hwmon_sensor_label")
        .into_iter()
        .find(|s| s.labels["sensor"] == "temp11")
        .expect("the long label");
    assert_eq!(long.labels["label"].len(), 128);
}

/// Garbage, directories, dangling links, loops, FIFOs and EIO: no value, and no hang
/// (`BrokenTree::read` asserts the run ends, cleanly).
#[test]
fn broken_tree_unreadable_sensors_have_no_value() {
    let text = BrokenTree::read().text;
    for sensor in [
        "temp2", "temp3", "temp4", "temp5", "temp6", "temp8", "temp9", "temp10", "temp12",
        "temp13", "temp14", "temp15", "in1", "in4", "pwm1",
    ] {
        assert!(
            !text.contains(&format!("chip=\"platform_it87_2608\",sensor=\"{sensor}\"")),
            "{sensor} should have no value:\n{text}"
        );
    }
}

/// Chips named by the name file (device link dangling or looping), by a garbled name
/// file, or by their directory when the name is a directory or a FIFO.
#[test]
fn broken_tree_chips_are_named_by_what_can_be_read() {
    let sonde = Parsed::new(&BrokenTree::read().text);
    for (chip, temp) in [
        ("hwmon4", 25.0),
        ("loopy", 26.0),
        ("weird_name", 28.0),
        ("hwmon8", 29.0),
    ] {
        let labels = [("check", "hw"), ("chip", chip), ("sensor", "temp1")];
        assert_eq!(
            sonde.find("sonde_hwmon_temp_celsius", &labels),
            Some(temp),
            "{chip}"
        );
    }
}

#[test]
fn no_hwmon_directory_is_no_samples_and_success() {
    let dir = Dir::new();
    dir.write("sys/class/net/lo/mtu", "65536\n");
    let (code, text) = sonde_once(&dir.path().join("sys"));
    assert_clean_run(code, &text);
    assert!(!text.contains("sonde_hwmon_"), "{text}");
    let (code, text) = sonde_once(&dir.path().join("no-such-sysfs"));
    assert_clean_run(code, &text);
    assert!(!text.contains("sonde_hwmon_"), "{text}");
}

#[test]
fn the_default_config_reads_this_machines_sysfs() {
    let out = common::run(&["--once"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}{stderr}");
    assert!(
        text.contains("sonde_check_success{check=\"hwmon\",kind=\"hwmon\"} 1"),
        "{text}"
    );
    assert!(text.contains("sonde_check_interval_seconds{check=\"hwmon\",kind=\"hwmon\"} 15"));
    let samples: Vec<Series> = Parsed::new(&text)
        .series
        .into_iter()
        .filter(|s| s.name.starts_with("sonde_hwmon_"))
        .collect();
    if Path::new("/sys/class/hwmon").exists() {
        assert!(samples.iter().all(|s| s.labels["check"] == "hwmon"));
    } else {
        // A VM or container without sensors: nothing to show, and that is fine.
        assert!(samples.is_empty(), "{samples:?}");
    }
    let findings = promtool_check_metrics(&text);
    assert!(findings.trim().is_empty(), "promtool: {findings}");
}

/// Runs sonde `--once` on `sysfs` as an unprivileged user (root reads through any
/// permission): exit code and stdout; bounded to 60 s.
fn sonde_once_unprivileged(dir: &Dir, sysfs: &Path) -> (Option<i32>, String) {
    let config = dir.write(
        "sonde.yml",
        format!(
            "checks:\n  - name: hw\n    kind: hwmon\n    sysfs_path: {}\n",
            sysfs.display()
        ),
    );
    fs_mode(&config, 0o644);
    let is_root = current_uid() == 0;
    let mut command = if is_root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        c.arg(common::sonde_bin());
        c
    } else {
        Command::new(common::sonde_bin())
    };
    let mut child = command
        .args(["--config.file", config.to_str().unwrap(), "--once"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv (util-linux) runs sonde as nobody");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "sonde hung on an unreadable tree"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn current_uid() -> u32 {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn fs_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn unreadable_directories_fail_the_run_but_keep_what_was_read() {
    let (dir, sysfs) = copy_tree("intel_desktop");
    fs_mode(dir.path(), 0o755);
    // The Super I/O chip's directory cannot be entered: that chip is lost.
    fs_mode(
        &sysfs.join("devices/platform/nct6775.656/hwmon/hwmon2"),
        0o000,
    );
    // coretemp's device directory can be passed through but not listed: its
    // temperatures stay.
    fs_mode(&sysfs.join("devices/platform/coretemp.0"), 0o111);
    let (code, text) = sonde_once_unprivileged(&dir, &sysfs);
    fs_mode(
        &sysfs.join("devices/platform/nct6775.656/hwmon/hwmon2"),
        0o755,
    );
    fs_mode(&sysfs.join("devices/platform/coretemp.0"), 0o755);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("sonde_check_success{check=\"hw\",kind=\"hwmon\"} 0"),
        "{text}"
    );
    let sonde = Parsed::new(&text);
    let core = [
        ("check", "hw"),
        ("chip", "platform_coretemp_0"),
        ("sensor", "temp2"),
    ];
    assert_eq!(sonde.find("sonde_hwmon_temp_celsius", &core), Some(35.0));
    let nvme = [("check", "hw"), ("chip", "nvme_nvme0"), ("sensor", "temp1")];
    assert_eq!(sonde.find("sonde_hwmon_temp_celsius", &nvme), Some(36.85));
    assert!(!text.contains("chip=\"nct6793\""), "{text}");

    // class/hwmon itself unreadable: nothing to show, a failed run, no hang.
    let (dir, sysfs) = copy_tree("raspberry_pi");
    fs_mode(dir.path(), 0o755);
    fs_mode(&sysfs.join("class/hwmon"), 0o000);
    let (code, text) = sonde_once_unprivileged(&dir, &sysfs);
    fs_mode(&sysfs.join("class/hwmon"), 0o755);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("sonde_check_success{check=\"hw\",kind=\"hwmon\"} 0"),
        "{text}"
    );
    assert!(!text.contains("sonde_hwmon_"), "{text}");
}

/// The files opened under some directories while it watches, as inotify reports them
/// (`IN_OPEN`, from any process: a FIFO, a regular file and the directory itself alike).
struct OpenWatch {
    fd: i32,
    dirs: HashMap<i32, PathBuf>,
}

impl OpenWatch {
    fn new(dirs: &[PathBuf]) -> OpenWatch {
        // SAFETY: plain system calls on a descriptor this struct owns; paths are
        // NUL-terminated and outlive the calls.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(fd >= 0, "inotify_init1");
        let mut watched = HashMap::new();
        for dir in dirs {
            let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: as above.
            let wd = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_OPEN) };
            assert!(wd >= 0, "inotify_add_watch {}", dir.display());
            watched.insert(wd, dir.clone());
        }
        OpenWatch { fd, dirs: watched }
    }

    /// Everything opened since the last call: `dir/name`, or `dir` for the directory.
    fn opened(&self) -> BTreeSet<PathBuf> {
        let mut out = BTreeSet::new();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            // SAFETY: reads into a buffer of the length given.
            let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return out;
            }
            let mut at = 0;
            while at + 16 <= n as usize {
                let field =
                    |i: usize| u32::from_ne_bytes(buf[at + i..at + i + 4].try_into().unwrap());
                let wd = field(0) as i32;
                let len = field(12) as usize;
                let name: Vec<u8> = buf[at + 16..at + 16 + len]
                    .iter()
                    .copied()
                    .take_while(|b| *b != 0)
                    .collect();
                let dir = &self.dirs[&wd];
                out.insert(if name.is_empty() {
                    dir.clone()
                } else {
                    dir.join(String::from_utf8(name).unwrap())
                });
                at += 16 + len;
            }
        }
    }
}

impl Drop for OpenWatch {
    fn drop(&mut self) {
        // SAFETY: closes the descriptor this struct owns, once.
        unsafe { libc::close(self.fd) };
    }
}

/// The discrete GPU of the AMD laptop (amdgpu: every read resumes it from runtime
/// suspend, node_exporter #2681) and the NVMe drive.
const DGPU: &str = "0000:02:00_0_0000:03:00_0";
const NVME: &str = "nvme_nvme0";

/// `sonde --once` with these checks on `sysfs`; bounded by `common::run` and each
/// check's timeout, so a FIFO opened by mistake fails the test instead of hanging it.
fn sonde_once_with(dir: &Dir, sysfs: &Path, checks: &str) -> (Option<i32>, String) {
    let config = dir.write(
        "filters.yml",
        checks.replace("SYSFS", &sysfs.display().to_string()),
    );
    let out = common::run(&["--config.file", config.to_str().unwrap(), "--once"]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Two checks that filter the amd_laptop tree: `hw` leaves out the discrete GPU, the
/// power supplies and two NVMe sensors; `cpu` keeps only temp1 of the PCI chips.
fn filtered_checks() -> String {
    format!(
        "checks:
  - name: hw
    kind: hwmon
    timeout: 5s
    sysfs_path: SYSFS
    exclude_chips: [\"{DGPU}\", \"power_supply_.*\"]
    exclude_sensors: [\"{NVME}/temp[23]\"]
  - name: cpu
    kind: hwmon
    timeout: 5s
    sysfs_path: SYSFS
    include_chips: [\"pci0000:00_.*\", \"nvme_.*\"]
    exclude_chips: [\"{NVME}\"]
    include_sensors: [\".*/temp1\"]
"
    )
}

/// The values of `label` over the series of `check` (and of `chip`, when given).
fn label_values(parsed: &Parsed, check: &str, chip: Option<&str>, label: &str) -> BTreeSet<String> {
    parsed
        .series
        .iter()
        .filter(|s| s.labels.get("check").map(String::as_str) == Some(check))
        .filter(|s| chip.is_none() || s.labels.get("chip").map(String::as_str) == chip)
        .filter_map(|s| s.labels.get(label).cloned())
        .collect()
}

/// Nothing under the excluded chip `dgpu` was opened, and of the NVMe chip only
/// temp1's files, not those of the excluded temp2 and temp3.
fn assert_nothing_excluded_opened(opened: &BTreeSet<PathBuf>, dgpu: &Path, nvme_hwmon: &Path) {
    let touched: Vec<&PathBuf> = opened.iter().filter(|p| p.starts_with(dgpu)).collect();
    assert!(
        touched.is_empty(),
        "opened in the excluded chip: {touched:?}"
    );
    let nvme_opened: BTreeSet<String> = opened
        .iter()
        .filter(|p| p.parent() == Some(nvme_hwmon))
        .filter_map(|p| p.file_name()?.to_str().map(String::from))
        .collect();
    assert!(nvme_opened.contains("temp1_input"), "{nvme_opened:?}");
    assert!(
        !nvme_opened
            .iter()
            .any(|f| f.starts_with("temp2") || f.starts_with("temp3")),
        "excluded sensors were opened: {nvme_opened:?}"
    );
}

/// Excluded chips and sensors are left out, and no file of theirs is opened: not their
/// values, not a FIFO planted among them, not even their directory. A run without
/// filters on the same tree shows the watch does see those opens.
#[test]
fn chip_and_sensor_filters_leave_out_what_they_exclude_without_opening_it() {
    let (dir, sysfs) = copy_tree("amd_laptop");
    let devices = sysfs.join("devices/pci0000:00");
    let dgpu = devices.join("0000:00:01.1/0000:01:00.0/0000:02:00.0/0000:03:00.0");
    let dgpu_hwmon = dgpu.join("hwmon/hwmon3");
    let nvme_hwmon = devices.join("0000:00:02.4/0000:02:00.0/nvme/nvme0/hwmon1");
    // Opening a FIFO for reading blocks until a writer comes: a filter that opened it
    // would hang the run (bounded by the timeout below) instead of passing.
    mkfifo(&dgpu_hwmon.join("temp9_input"));
    mkfifo(&dgpu.join("temp8_input"));
    let watch = OpenWatch::new(&[dgpu_hwmon.clone(), dgpu.clone(), nvme_hwmon.clone()]);
    let (code, text) = sonde_once_with(&dir, &sysfs, &filtered_checks());
    assert_eq!(code, Some(0), "{text}");
    let opened = watch.opened();
    let parsed = Parsed::new(&text);
    let chips = |check: &str| label_values(&parsed, check, None, "chip");
    assert_eq!(
        chips("hw"),
        [
            "0000:00:08_1_0000:08:00_0",
            NVME,
            "pci0000:00_0000:00:18_3",
            "thermal_thermal_zone0"
        ]
        .into_iter()
        .map(String::from)
        .collect(),
        "{text}"
    );
    assert_eq!(
        chips("cpu"),
        BTreeSet::from(["pci0000:00_0000:00:18_3".to_string()]),
        "{text}"
    );
    let sensors = |check: &str, chip: &str| label_values(&parsed, check, Some(chip), "sensor");
    assert_eq!(sensors("hw", NVME), BTreeSet::from(["temp1".to_string()]));
    assert_eq!(
        sensors("cpu", "pci0000:00_0000:00:18_3"),
        BTreeSet::from(["temp1".to_string()])
    );
    // The chip_names info series stays for a chip whose sensors are filtered.
    assert!(
        parsed
            .find(
                "sonde_hwmon_chip_names",
                &[("check", "hw"), ("chip", NVME), ("chip_name", "nvme")]
            )
            .is_some()
    );
    assert_nothing_excluded_opened(&opened, &dgpu, &nvme_hwmon);
    // Without filters the same watch sees the chip's files opened (the FIFOs are still
    // skipped, as they always are).
    let (code, text) = sonde_once_with(
        &dir,
        &sysfs,
        "checks:\n  - {name: all, kind: hwmon, timeout: 5s, sysfs_path: SYSFS}\n",
    );
    assert_eq!(code, Some(0), "{text}");
    let opened = watch.opened();
    assert!(
        opened.contains(&dgpu_hwmon.join("temp1_input")),
        "{opened:?}"
    );
    assert!(
        opened.contains(&nvme_hwmon.join("temp2_input")),
        "{opened:?}"
    );
    assert!(
        !opened.contains(&dgpu_hwmon.join("temp9_input")),
        "{opened:?}"
    );
}

#[test]
fn bad_filters_are_config_errors_at_their_line() {
    let dir = Dir::new();
    let path = dir.write(
        "sonde.yml",
        "checks:\n  - name: hw\n    kind: hwmon\n    include_chips: [\"amdgpu(\"]\n    exclude_sensors: [\"ok/temp1\", \"platform_coretemp_0;temp3\"]\n",
    );
    let out = common::run(&["--config.check", "--config.file", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        ":4:21: check \"hw\": include_chips: \"amdgpu(\" is not a regular expression",
        ":5:35: check \"hw\": \"platform_coretemp_0;temp3\": sensor patterns match chip/sensor with a '/'",
    ] {
        assert!(err.contains(expected), "{expected:?} not in {err}");
    }
}

/// The examples of the README's section load as written.
#[test]
fn the_readme_examples_load() {
    readme::check_examples("## kind: hwmon");
}
