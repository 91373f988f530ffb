//! `kind: hwmon`: hardware sensors read straight from sysfs.
//!
//! A run scans `<sysfs_path>/class/hwmon` with the sysfs module (chip naming, sensor
//! files and value parsing, all as node_exporter's hwmon collector does them) and
//! turns the chips into `sonde_hwmon_*` metrics with node_exporter's names, labels and
//! scaling. Where node_exporter departs from the kernel's sysfs ABI
//! (Documentation/hwmon/sysfs-interface.rst) sonde follows the kernel; the README lists
//! each of those differences. `include_chips`/`exclude_chips` (regexes on the `chip`
//! label) and `include_sensors`/`exclude_sensors` (on `chip/sensor`) leave chips and
//! sensors out before any of their files is opened.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::problem::Spanned;
use serde::Deserialize;

use super::{BuildContext, Check, KindSpec, RunContext, RunOutput};
use crate::metrics::{FamilyId, FamilySet, MetricType};
use crate::problem::Problem;
use crate::store::{Reading, TargetReport};
use crate::sysfs::{Chip, Filter, Sensor, clean_name, parse_go_float, scan, to_valid_utf8};
use regex::Regex;

const CHIP_NAMES: &str = "sonde_hwmon_chip_names";
const CHIP_NAMES_HELP: &str =
    "Info series (always 1) giving the name file of each chip as label chip_name.";
const SENSOR_LABEL: &str = "sonde_hwmon_sensor_label";
const SENSOR_LABEL_HELP: &str =
    "Info series (always 1) giving the text of each sensor's *_label file as label label.";
const BEEP_ENABLED: &str = "sonde_hwmon_beep_enabled";
const BEEP_ENABLED_HELP: &str = "1 if the chip's master beep (beep_enable) is on, else 0.";
const VRM: &str = "sonde_hwmon_voltage_regulator_version";
const VRM_HELP: &str = "Voltage regulator module version the chip assumes (vrm).";
const UPDATE_INTERVAL: &str = "sonde_hwmon_update_interval_seconds";
const UPDATE_INTERVAL_HELP: &str =
    "Interval at which the chip refreshes its readings (update_interval), in seconds.";
/// Every other family is `sonde_hwmon_<type>[_<property>][_<unit>]`.
const PREFIX: &str = "sonde_hwmon_";

/// Most read problems quoted in a failed run's error.
const MAX_QUOTED_PROBLEMS: usize = 3;

/// The YAML keys of `kind: hwmon`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HwmonSpec {
    #[serde(default)]
    sysfs_path: Option<Spanned<String>>,
    /// Regexes on the `chip` label: only matching chips are read.
    #[serde(default)]
    include_chips: Vec<Spanned<String>>,
    /// Regexes on the `chip` label: matching chips are not read.
    #[serde(default)]
    exclude_chips: Vec<Spanned<String>>,
    /// Regexes on `chip/sensor`: only matching sensors are read.
    #[serde(default)]
    include_sensors: Vec<Spanned<String>>,
    /// Regexes on `chip/sensor`: matching sensors are not read.
    #[serde(default)]
    exclude_sensors: Vec<Spanned<String>>,
}

/// A configured hwmon check.
#[derive(Debug)]
pub struct HwmonCheck {
    check: String,
    sysfs: PathBuf,
    chips: NameFilter,
    sensors: NameFilter,
}

/// An include and an exclude list of regexes, each compiled into one anchored
/// alternation: a name is kept when it matches the include list (or there is none) and
/// not the exclude list.
#[derive(Debug, Default)]
struct NameFilter {
    include: Option<Regex>,
    exclude: Option<Regex>,
}

impl NameFilter {
    fn build(
        include: (&str, &[Spanned<String>]),
        exclude: (&str, &[Spanned<String>]),
        ctx: &BuildContext,
        problems: &mut Vec<Problem>,
    ) -> NameFilter {
        NameFilter {
            include: anchored(include.0, include.1, ctx, problems),
            exclude: anchored(exclude.0, exclude.1, ctx, problems),
        }
    }

    fn keeps(&self, name: &str) -> bool {
        self.include.as_ref().is_none_or(|r| r.is_match(name))
            && !self.exclude.as_ref().is_some_and(|r| r.is_match(name))
    }
}

/// The regexes of one key as `^(?:a|b)$`; each that does not compile is a problem at its
/// own location.
fn anchored(
    key: &str,
    list: &[Spanned<String>],
    ctx: &BuildContext,
    problems: &mut Vec<Problem>,
) -> Option<Regex> {
    let mut parts = Vec::new();
    for pattern in list {
        match Regex::new(&format!("^(?:{})$", pattern.value)) {
            Ok(_) => parts.push(format!("(?:{})", pattern.value)),
            Err(e) => problems.push(ctx.problem(
                pattern.referenced,
                format!(
                    "{key}: {:?} is not a regular expression: {}",
                    pattern.value,
                    one_line(&e.to_string())
                ),
            )),
        }
    }
    if parts.is_empty() {
        return None;
    }
    Regex::new(&format!("^(?:{})$", parts.join("|"))).ok()
}

/// The regex crate's multi-line error as one line.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

impl HwmonCheck {
    /// Validates the spec and builds the check.
    pub fn build(spec: &HwmonSpec, ctx: &BuildContext) -> Result<HwmonCheck, Vec<Problem>> {
        let sysfs = match &spec.sysfs_path {
            None => PathBuf::from("/sys"),
            Some(p) if p.value.is_empty() => {
                return Err(vec![ctx.problem(
                    p.referenced,
                    "sysfs_path is empty; omit it to read /sys",
                )]);
            }
            Some(p) if p.value.contains('\0') => {
                return Err(vec![
                    ctx.problem(p.referenced, "sysfs_path contains a NUL byte"),
                ]);
            }
            // Relative paths are relative to the config file, like every other path.
            Some(p) => ctx.resolve(&p.value),
        };
        let mut problems = Vec::new();
        let chips = NameFilter::build(
            ("include_chips", &spec.include_chips),
            ("exclude_chips", &spec.exclude_chips),
            ctx,
            &mut problems,
        );
        let sensors = NameFilter::build(
            ("include_sensors", &spec.include_sensors),
            ("exclude_sensors", &spec.exclude_sensors),
            ctx,
            &mut problems,
        );
        for pattern in spec.include_sensors.iter().chain(&spec.exclude_sensors) {
            // node_exporter joins chip and sensor with ';': a pattern written for it
            // would silently match nothing here.
            if pattern.value.contains(';') && !pattern.value.contains('/') {
                problems.push(ctx.problem(
                    pattern.referenced,
                    format!(
                        "{:?}: sensor patterns match chip/sensor with a '/' (node_exporter's ';' is not used), e.g. platform_coretemp_0/temp1",
                        pattern.value
                    ),
                ));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(HwmonCheck {
            check: ctx.meta.name.clone(),
            sysfs,
            chips,
            sensors,
        })
    }
}

impl Check for HwmonCheck {
    fn run(&self, ctx: &RunContext) -> RunOutput {
        let stop = || ctx.cancel.load(Ordering::Relaxed) || Instant::now() >= ctx.deadline;
        let filter = Filter {
            chip: &|chip| self.chips.keeps(chip),
            sensor: &|chip, sensor| self.sensors.keeps(&format!("{chip}/{sensor}")),
        };
        let scan = scan(&self.sysfs, &filter, &stop);
        let mut emitter = Emitter::new(&self.check);
        for chip in &scan.chips {
            emitter.chip(chip);
        }
        let error = (!scan.problems.is_empty()).then(|| {
            let mut text = scan
                .problems
                .iter()
                .take(MAX_QUOTED_PROBLEMS)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ");
            if scan.problems.len() > MAX_QUOTED_PROBLEMS {
                text.push_str(&format!(
                    " (and {} more)",
                    scan.problems.len() - MAX_QUOTED_PROBLEMS
                ));
            }
            text
        });
        for problem in &scan.problems {
            log::debug!(
                "msg=\"hwmon read problem\" check={} problem={problem:?}",
                self.check
            );
        }
        let targets = scan.chips.iter().flat_map(|chip| {
            let sensors = chip.sensors.iter();
            sensors.filter_map(|(sensor, data)| sensor_report(&chip.label, sensor, data))
        });
        RunOutput {
            success: error.is_none(),
            error,
            targets: targets.collect(),
            families: emitter.set,
        }
    }
}

/// Turns chips into families, one series per name and label set.
struct Emitter<'a> {
    check: &'a str,
    set: FamilySet,
    ids: HashMap<String, FamilyId>,
    /// (metric, chip, sensor) already emitted: a second one would make the exposition
    /// invalid (two properties that clean to the same name, two freq sensors with the
    /// same label), so the first in name order wins.
    seen: HashSet<(String, String, String)>,
}

/// One sample about to be emitted.
struct Sample {
    name: String,
    help: String,
    mtype: MetricType,
    value: f64,
}

impl<'a> Emitter<'a> {
    fn new(check: &'a str) -> Self {
        Emitter {
            check,
            set: FamilySet::new(),
            ids: HashMap::new(),
            seen: HashSet::new(),
        }
    }

    fn family(&mut self, name: &str, help: &str, mtype: MetricType) -> FamilyId {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = self.set.family(name.to_string(), help.to_string(), mtype);
        self.ids.insert(name.to_string(), id);
        id
    }

    /// Adds `name{check,chip,sensor[,extra]} value` unless that series exists already.
    fn emit(&mut self, sample: &Sample, chip: &str, sensor: &str, extra: Option<(&str, &str)>) {
        if !self
            .seen
            .insert((sample.name.clone(), chip.to_string(), sensor.to_string()))
        {
            return;
        }
        let id = self.family(&sample.name, &sample.help, sample.mtype);
        let mut labels = vec![("check", self.check), ("chip", chip), ("sensor", sensor)];
        labels.extend(extra);
        self.set.sample(id, &labels, sample.value);
    }

    fn chip(&mut self, chip: &Chip) {
        if let Some(name) = &chip.chip_name {
            let id = self.family(CHIP_NAMES, CHIP_NAMES_HELP, MetricType::Gauge);
            let labels = [
                ("check", self.check),
                ("chip", &chip.label),
                ("chip_name", name),
            ];
            self.set.sample(id, &labels, 1.0);
        }
        for (sensor, data) in &chip.sensors {
            self.sensor(&chip.label, sensor, data);
        }
    }

    fn sensor(&mut self, chip: &str, sensor: &str, data: &Sensor) {
        let props = &data.props;
        if let Some(label) = props.get(b"label".as_slice()) {
            let sample = Sample {
                name: SENSOR_LABEL.to_string(),
                help: SENSOR_LABEL_HELP.to_string(),
                mtype: MetricType::Gauge,
                value: 1.0,
            };
            self.emit(
                &sample,
                chip,
                sensor,
                Some(("label", &to_valid_utf8(label))),
            );
        }
        let bare = props.get(b"".as_slice());
        if let Some((name, help, value)) = chip_wide(data.kind, bare) {
            if let Some(value) = value {
                let sample = Sample {
                    name: name.to_string(),
                    help: help.to_string(),
                    mtype: MetricType::Gauge,
                    value,
                };
                self.emit(&sample, chip, sensor, None);
            }
            return;
        }
        for (property, raw) in props {
            if property == b"label" {
                continue;
            }
            let Some(value) = parse_go_float(raw) else {
                continue;
            };
            let label = props.get(b"label".as_slice());
            match classify(data.kind, property, bare.is_some(), value, label) {
                Classified::Series(sample) => self.emit(&sample, chip, sensor, None),
                Classified::Relabelled(sample, sensor_label) => {
                    self.emit(&sample, chip, &sensor_label, None);
                }
                Classified::Skip => {}
            }
        }
    }
}

/// A chip-wide setting (`beep_enable`, `vrm`, `update_interval`), which is no sensor:
/// its family, HELP and value (`None` when unreadable); `None` for sensor kinds.
fn chip_wide(
    kind: &str,
    bare: Option<&Vec<u8>>,
) -> Option<(&'static str, &'static str, Option<f64>)> {
    match kind {
        // Only an exact "1" is on; anything else, garbage included, is off.
        "beep_enable" => Some((
            BEEP_ENABLED,
            BEEP_ENABLED_HELP,
            Some(if bare.map(Vec::as_slice) == Some(b"1") {
                1.0
            } else {
                0.0
            }),
        )),
        "vrm" => Some((VRM, VRM_HELP, bare.and_then(|v| parse_go_float(v)))),
        "update_interval" => Some((
            UPDATE_INTERVAL,
            UPDATE_INTERVAL_HELP,
            bare.and_then(|v| parse_go_float(v)).map(|v| v * 0.001),
        )),
        _ => None,
    }
}

/// What one property of a sensor becomes.
enum Classified {
    Series(Sample),
    /// A series whose `sensor` label is the sensor's cleaned label text (freq).
    Relabelled(Sample, String),
    Skip,
}

/// node_exporter's naming and scaling of one property, with the kernel ABI's units
/// where node_exporter departs from them (marked "ABI" below).
fn classify(
    kind: &str,
    property: &[u8],
    has_bare: bool,
    value: f64,
    label: Option<&Vec<u8>>,
) -> Classified {
    let element = clean_name(property);
    let mut name = format!("{PREFIX}{kind}");
    if property == b"input" {
        // The input is the sensor's value, unless a bare file (`temp1`) already is.
        if has_bare {
            name.push_str("_input");
        }
    } else if !property.is_empty() {
        name.push('_');
        name.push_str(&element);
    }
    // HELP must be a function of the family name alone, so a bare file reads as input.
    let what = if element.is_empty() {
        "input"
    } else {
        &element
    };
    if let Some(flag) = flag(kind, property, &name, what, value) {
        return flag;
    }
    reading(kind, property, name, what, value, label)
}

/// A 0/1 flag of a sensor (`fault`, `alarm`, the limit alarms, `enable`, `beep`), which
/// is never scaled; `None` for a reading.
fn flag(kind: &str, property: &[u8], name: &str, what: &str, value: f64) -> Option<Classified> {
    if property == b"fault" || property == b"alarm" {
        let help = format!("Hardware monitor {kind} sensor {what} flag (1 = set).");
        return Some(gauge(name.to_string(), help, value));
    }
    // ABI: limit alarms (`crit_alarm`, `min_alarm`, ...) and `enable` are 0/1 flags,
    // not readings; node_exporter scales them as one (0.001 "celsius").
    if property.ends_with(b"_alarm") || property == b"enable" {
        let help = format!("Hardware monitor {kind} sensor {what} flag (1 = set).");
        return Some(gauge(name.to_string(), help, value));
    }
    if property == b"beep" {
        let help = format!("1 if the hardware monitor {kind} sensor beeps on alarm.");
        return Some(gauge(format!("{name}_enabled"), help, value));
    }
    None
}

/// A reading in node_exporter's unit for its kind (the ABI's where they differ).
fn reading(
    kind: &str,
    property: &[u8],
    name: String,
    what: &str,
    value: f64,
    label: Option<&Vec<u8>>,
) -> Classified {
    match kind {
        "in" | "cpu" => {
            let help = format!("Hardware monitor voltage ({what}) in volts.");
            gauge(format!("{name}_volts"), help, value * 0.001)
        }
        "temp" if property != b"type" => {
            let help = format!("Hardware monitor temperature ({what}) in degrees Celsius.");
            gauge(format!("{name}_celsius"), help, value * 0.001)
        }
        "curr" => {
            let help = format!("Hardware monitor current ({what}) in amperes.");
            gauge(format!("{name}_amps"), help, value * 0.001)
        }
        "energy" => Classified::Series(Sample {
            name: format!("{name}_joule_total"),
            help: format!("Hardware monitor energy used so far ({what}) in joules."),
            mtype: MetricType::Counter,
            value: value / 1_000_000.0,
        }),
        // ABI: the accuracy is in percent; node_exporter divides by 1e6.
        "power" if property == b"accuracy" => {
            let help = "Hardware monitor power meter accuracy as a ratio (1 = 100 %).".to_string();
            gauge(name, help, value / 100.0)
        }
        "power"
            if matches!(
                property,
                b"average_interval" | b"average_interval_min" | b"average_interval_max"
            ) =>
        {
            let help = format!("Hardware monitor power averaging interval ({what}) in seconds.");
            gauge(format!("{name}_seconds"), help, value * 0.001)
        }
        "power" => {
            let help = format!("Hardware monitor power ({what}) in watts.");
            gauge(format!("{name}_watt"), help, value / 1_000_000.0)
        }
        // ABI: humidity is in milli-percent (100000 = 100 %); node_exporter divides by 1e6.
        "humidity" => {
            let help =
                format!("Hardware monitor relative humidity ({what}) as a ratio (1 = 100 %).");
            gauge(name, help, value / 100_000.0)
        }
        "fan" if matches!(property, b"input" | b"min" | b"max" | b"target") => {
            let help = format!("Hardware monitor fan speed ({what}) in revolutions per minute.");
            gauge(format!("{name}_rpm"), help, value)
        }
        // Clock frequencies (amdgpu sclk/mclk), named after their label.
        "freq" if property == b"input" => match label {
            Some(label) => Classified::Relabelled(
                Sample {
                    name: format!("{name}_freq_mhz"),
                    help:
                        "Hardware monitor frequency in MHz; label sensor holds the sensor's label."
                            .to_string(),
                    mtype: MetricType::Gauge,
                    value: value / 1_000_000.0,
                },
                clean_name(label),
            ),
            None => Classified::Skip,
        },
        _ => {
            let help = format!("Hardware monitor {kind} {what} as sysfs reports it.");
            gauge(name, help, value)
        }
    }
}

fn gauge(name: String, help: String, value: f64) -> Classified {
    Classified::Series(Sample {
        name,
        help,
        mtype: MetricType::Gauge,
        value,
    })
}

/// The status page's report of a sensor with a reading: its value against `max` and
/// `crit` in the unit a person reads. Down on a fault, at or past a `crit`/`lcrit` limit
/// or with a critical alarm flag set, as the sensor alert rule; another alarm flag (a
/// `max` or `min` crossing, often set on unconnected inputs) is a note on an up sensor.
fn sensor_report(chip: &str, sensor: &str, data: &Sensor) -> Option<TargetReport> {
    let (unit, scale) = match data.kind {
        "temp" => ("°C", 0.001),
        "in" => ("V", 0.001),
        "curr" => ("A", 0.001),
        "power" => ("W", 0.000_001),
        "fan" => ("RPM", 1.0),
        // ABI: milli-percent.
        "humidity" => ("%", 0.001),
        _ => return None,
    };
    let props = &data.props;
    let get = |p: &[u8]| {
        props
            .get(p)
            .and_then(|v| parse_go_float(v))
            .map(|v| v * scale)
    };
    let value = get(b"input").or_else(|| get(b"average"))?;
    let (max, crit, lcrit) = (get(b"max"), get(b"crit"), get(b"lcrit"));
    let set = |p: &[u8]| format!("the chip sets {sensor}_{}", to_valid_utf8(p));
    let alarm = |critical: bool| {
        props.iter().find_map(|(p, v)| {
            let is_critical = matches!(
                p.as_slice(),
                b"crit_alarm" | b"lcrit_alarm" | b"emergency_alarm"
            );
            (p.ends_with(b"alarm") && v.as_slice() == b"1" && is_critical == critical)
                .then(|| set(p))
        })
    };
    let show = |v: f64| format!("{} {unit}", (v * 1000.0).round() / 1000.0);
    let down = if props.get(b"fault".as_slice()).is_some_and(|v| v == b"1") {
        Some("the chip reports a sensor fault".to_string())
    } else if let Some(c) = crit.filter(|c| value >= *c) {
        Some(format!("{} is at or over crit {}", show(value), show(c)))
    } else if let Some(c) = lcrit.filter(|c| value <= *c) {
        Some(format!("{} is at or under lcrit {}", show(value), show(c)))
    } else {
        alarm(true)
    };
    Some(TargetReport {
        target: format!("{chip} {sensor}"),
        up: down.is_none(),
        cause: down.or_else(|| alarm(false)),
        detail: props.get(b"label".as_slice()).map(|l| to_valid_utf8(l)),
        reading: Some(Reading {
            value,
            max,
            crit,
            unit,
        }),
        ..TargetReport::default()
    })
}

impl KindSpec for HwmonSpec {
    type Check = HwmonCheck;

    fn build(&self, ctx: &BuildContext) -> Result<HwmonCheck, Vec<Problem>> {
        HwmonCheck::build(self, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_units_are_followed_where_node_exporter_departs() {
        let sample = |kind: &str, prop: &[u8], v: f64| match classify(kind, prop, false, v, None) {
            Classified::Series(s) => (s.name, s.value),
            _ => panic!("no series"),
        };
        assert_eq!(
            sample("humidity", b"input", 45_000.0),
            ("sonde_hwmon_humidity".into(), 0.45)
        );
        assert_eq!(
            sample("temp", b"crit_alarm", 1.0),
            ("sonde_hwmon_temp_crit_alarm".into(), 1.0)
        );
        assert_eq!(
            sample("in", b"enable", 1.0),
            ("sonde_hwmon_in_enable".into(), 1.0)
        );
        assert_eq!(
            sample("power", b"accuracy", 95.0),
            ("sonde_hwmon_power_accuracy".into(), 0.95)
        );
        assert_eq!(
            sample("temp", b"input", 42_500.0),
            ("sonde_hwmon_temp_celsius".into(), 42.5)
        );
        assert_eq!(
            sample("fan", b"div", 2.0),
            ("sonde_hwmon_fan_div".into(), 2.0)
        );
    }

    #[test]
    fn a_sensor_is_down_at_crit_or_on_a_critical_alarm_and_noted_on_another() {
        let sensor = |kind: &'static str, props: &[(&str, &str)]| Sensor {
            kind,
            props: props
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
        };
        let report = |s: &Sensor| sensor_report("coretemp", "temp1", s).unwrap();
        let hot = report(&sensor(
            "temp",
            &[
                ("input", "101000"),
                ("max", "80000"),
                ("crit", "100000"),
                ("label", "Core 0"),
            ],
        ));
        assert!(!hot.up);
        assert_eq!(
            hot.cause.as_deref(),
            Some("101 °C is at or over crit 100 °C")
        );
        assert_eq!(hot.detail.as_deref(), Some("Core 0"));
        assert_eq!(
            hot.reading,
            Some(Reading {
                value: 101.0,
                max: Some(80.0),
                crit: Some(100.0),
                unit: "°C"
            })
        );
        let alarmed = report(&sensor("temp", &[("input", "40000"), ("crit_alarm", "1")]));
        assert_eq!(
            (alarmed.up, alarmed.cause.as_deref()),
            (false, Some("the chip sets temp1_crit_alarm"))
        );
        let unused = sensor("in", &[("input", "168"), ("min", "300"), ("alarm", "1")]);
        let noted = sensor_report("nct6793", "in5", &unused).unwrap();
        assert_eq!(
            (noted.up, noted.cause.as_deref()),
            (true, Some("the chip sets in5_alarm"))
        );
        let faulty = report(&sensor("fan", &[("input", "0"), ("fault", "1")]));
        assert!(!faulty.up && faulty.reading.is_some_and(|r| r.unit == "RPM"));
        assert!(sensor_report("chip", "pwm1", &sensor("pwm", &[("", "128")])).is_none());
    }
}
