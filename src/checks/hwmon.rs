//! `kind: hwmon`: hardware sensors read straight from sysfs (replaces the `sensors`
//! example of seed 001).
//!
//! A run lists `<sysfs_path>/class/hwmon`, names every chip as node_exporter's hwmon
//! collector does (from the device path, else the `name` file, else `hwmonX`, with the
//! collision suffixes of node_exporter #3646), reads the sensor files of the chip
//! directory and of its `device/` directory, and turns them into `sonde_hwmon_*`
//! metrics with node_exporter's names, labels and scaling. Where node_exporter departs
//! from the kernel's sysfs ABI (Documentation/hwmon/sysfs-interface.rst) sonde follows
//! the kernel; the README lists each of those differences.
//!
//! A value costs one read(2) of at most 128 bytes into a stack buffer, as in
//! node_exporter, and only regular files are opened (non-blocking), so a broken driver
//! (EAGAIN, EIO), a FIFO or device node where an attribute belongs, or a symlink loop
//! costs that one value, never the run. Nothing is walked recursively: a chip is its
//! directory plus `device/`, so link cycles in sysfs cannot trap a run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, FileType, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{BuildContext, Check, RunContext, RunOutput};
use crate::config::Problem;
use crate::metrics::{FamilyId, FamilySet, MetricType};

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

/// The sensor types node_exporter reads; files of other types are ignored.
const SENSOR_TYPES: [&str; 14] = [
    "vrm",
    "beep_enable",
    "update_interval",
    "in",
    "cpu",
    "fan",
    "pwm",
    "temp",
    "curr",
    "power",
    "energy",
    "humidity",
    "intrusion",
    "freq",
];

/// Bytes read from a sensor file: node_exporter's single raw read of 128 bytes.
const VALUE_BYTES: usize = 128;
/// Bytes read from a `name` file: a sysfs attribute never holds more than a page.
const NAME_BYTES: usize = 4096;
/// Most read problems quoted in a failed run's error.
const MAX_QUOTED_PROBLEMS: usize = 3;

/// The YAML keys of `kind: hwmon`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HwmonSpec {
    #[serde(default)]
    sysfs_path: Option<Spanned<String>>,
}

/// A configured hwmon check.
#[derive(Debug)]
pub struct HwmonCheck {
    check: String,
    sysfs: PathBuf,
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
        Ok(HwmonCheck {
            check: ctx.meta.name.clone(),
            sysfs,
        })
    }
}

impl Check for HwmonCheck {
    fn run(&self, ctx: &RunContext) -> RunOutput {
        let stop = || ctx.cancel.load(Ordering::Relaxed) || Instant::now() >= ctx.deadline;
        let scan = scan(&self.sysfs, &stop);
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
        RunOutput {
            success: error.is_none(),
            error,
            families: emitter.set,
            targets: Vec::new(),
        }
    }
}

/// One chip as read: its final label, its `name` file and its sensors.
#[derive(Debug, Default, PartialEq)]
struct Chip {
    label: String,
    chip_name: Option<String>,
    /// Keyed by `<type><number>` (`temp1`, `beep_enable0`).
    sensors: BTreeMap<String, Sensor>,
}

/// The files of one sensor: property (`input`, `crit`, `""` for a bare `pwm1`) -> value.
#[derive(Debug, PartialEq)]
struct Sensor {
    kind: &'static str,
    props: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// What a run read: the chips, and what could not be read (which fails the run).
#[derive(Debug, Default)]
struct Scan {
    chips: Vec<Chip>,
    problems: Vec<String>,
}

/// A chip directory found in `class/hwmon`, before labels are made unique.
#[derive(Debug)]
struct Found {
    entry: OsString,
    dir: PathBuf,
    base: String,
    chip_name: Option<String>,
}

/// Reads the whole tree under `sysfs`, stopping early when `stop` says so.
fn scan(sysfs: &Path, stop: &dyn Fn() -> bool) -> Scan {
    let mut out = Scan::default();
    let class = sysfs.join("class").join("hwmon");
    let listing = match fs::read_dir(&class) {
        Ok(l) => l,
        // A machine (or VM, or container) without hwmon simply has no sensors.
        Err(e) if e.kind() == ErrorKind::NotFound => return out,
        Err(e) => {
            out.problems
                .push(format!("cannot list {}: {e}", class.display()));
            return out;
        }
    };
    let mut entries = Vec::new();
    for entry in listing {
        match entry {
            Ok(e) => entries.push(e.file_name()),
            Err(e) => out
                .problems
                .push(format!("cannot list {}: {e}", class.display())),
        }
    }
    entries.sort();
    let mut found = Vec::new();
    for entry in entries {
        let dir = class.join(&entry);
        // Dangling links, link loops and plain files in class/hwmon are not chips.
        if !fs::metadata(&dir).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        let chip_name = read_name(&dir);
        match base_label(&dir, chip_name.as_deref()) {
            Some(base) => found.push(Found {
                entry,
                dir,
                base,
                chip_name,
            }),
            None => out
                .problems
                .push(format!("cannot derive a chip name for {}", dir.display())),
        }
    }
    let labels = unique_labels(&found);
    for (chip, label) in found.into_iter().zip(labels) {
        if stop() {
            out.problems
                .push("the run was stopped before every chip was read".to_string());
            break;
        }
        let mut sensors = BTreeMap::new();
        if let Err(e) = read_sensors(&chip.dir, &mut sensors) {
            out.problems
                .push(format!("cannot list {}: {e}", chip.dir.display()));
            continue;
        }
        // Older drivers keep their files on the device itself.
        let device = chip.dir.join("device");
        if fs::metadata(&device).is_ok_and(|m| m.is_dir())
            && let Err(e) = read_sensors(&device, &mut sensors)
        {
            out.problems
                .push(format!("cannot list {}: {e}", device.display()));
        }
        out.chips.push(Chip {
            label,
            chip_name: chip.chip_name,
            sensors,
        });
    }
    out
}

/// The cleaned content of a chip's `name` file, when it has a usable one.
fn read_name(dir: &Path) -> Option<String> {
    let mut buf = [0u8; NAME_BYTES];
    let raw = read_attr(&dir.join("name"), None, &mut buf)?;
    Some(clean_name(raw)).filter(|n| !n.is_empty())
}

/// The chip label before collisions are resolved: `<parent>_<device>` of the resolved
/// `device` link (stable across boots, unlike hwmonX), else the name file, else the
/// resolved directory's own name.
fn base_label(dir: &Path, chip_name: Option<&str>) -> Option<String> {
    if let Ok(device) = fs::canonicalize(dir.join("device")) {
        let dev_name = device
            .file_name()
            .map(|n| clean_name(n.as_bytes()))
            .unwrap_or_default();
        let dev_type = device
            .parent()
            .and_then(Path::file_name)
            .map(|n| clean_name(n.as_bytes()))
            .unwrap_or_default();
        if !dev_name.is_empty() {
            return Some(if dev_type.is_empty() {
                dev_name
            } else {
                format!("{dev_type}_{dev_name}")
            });
        }
    }
    if let Some(name) = chip_name {
        return Some(name.to_string());
    }
    let real = fs::canonicalize(dir).ok()?;
    Some(clean_name(real.file_name()?.as_bytes())).filter(|n| !n.is_empty())
}

/// Final chip labels, in the order of `found`: a base label shared by several chips
/// (two hwmon devices registered by one parent device) gets `_<name>` when the name
/// file tells them apart, else `_<hwmonX>` (node_exporter #3646).
fn unique_labels(found: &[Found]) -> Vec<String> {
    let mut bases: HashMap<&str, usize> = HashMap::new();
    for f in found {
        *bases.entry(&f.base).or_default() += 1;
    }
    let mut names: HashMap<(&str, &str), usize> = HashMap::new();
    for f in found {
        if let Some(name) = &f.chip_name {
            *names.entry((&f.base, name)).or_default() += 1;
        }
    }
    found
        .iter()
        .map(|f| {
            if bases[f.base.as_str()] == 1 {
                return f.base.clone();
            }
            match &f.chip_name {
                Some(name) if names[&(f.base.as_str(), name.as_str())] == 1 => {
                    format!("{}_{name}", f.base)
                }
                _ => format!("{}_{}", f.base, clean_name(f.entry.as_bytes())),
            }
        })
        .collect()
}

/// Adds the sensor files of `dir` to `sensors`; a later file of the same sensor and
/// property replaces an earlier one (files are taken in name order, `device/` last).
/// Only an unlistable directory is an error; an unreadable file is skipped.
fn read_sensors(dir: &Path, sensors: &mut BTreeMap<String, Sensor>) -> std::io::Result<()> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        entries.push((entry.file_name(), entry.file_type().ok()));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut buf = [0u8; VALUE_BYTES];
    for (name, file_type) in entries {
        let Some(file) = split_sensor_file(name.as_bytes()) else {
            continue;
        };
        let Some(raw) = read_attr(&dir.join(&name), file_type, &mut buf) else {
            continue;
        };
        let value = trim_newlines(raw).to_vec();
        sensors
            .entry(format!("{}{}", file.kind, file.number))
            .or_insert_with(|| Sensor {
                kind: file.kind,
                props: BTreeMap::new(),
            })
            .props
            .insert(file.property.to_vec(), value);
    }
    Ok(())
}

/// Reads a sysfs attribute with one read(2) into `buf`; `None` when it is not a
/// regular file or cannot be opened or read (EAGAIN and EIO from broken drivers
/// included). `file_type` is the directory entry's type, when known, which saves a
/// stat for plain files.
fn read_attr<'b>(path: &Path, file_type: Option<FileType>, buf: &'b mut [u8]) -> Option<&'b [u8]> {
    // Never open anything but a regular file: opening a FIFO blocks and opening a
    // device node can have side effects (a watchdog starts counting).
    let regular = match file_type {
        Some(t) if t.is_file() => true,
        Some(t) if !t.is_symlink() => false,
        _ => fs::metadata(path).is_ok_and(|m| m.is_file()),
    };
    if !regular {
        return None;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    // The entry may have been swapped since it was listed.
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    loop {
        match file.read(buf) {
            Ok(n) => return Some(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
}

/// A file name split as node_exporter's `^(?P<type>[^0-9]+)(?P<id>[0-9]*)?(_(?P<property>.+))?$`.
#[derive(Debug, PartialEq)]
struct SensorFile<'a> {
    kind: &'static str,
    number: i64,
    property: &'a [u8],
}

/// Splits `temp1_crit_alarm` into type `temp`, number 1 and property `crit_alarm`, with
/// the regular expression's backtracking (`temp_x` is type `temp`, property `x`); `None`
/// when the name does not match or its type is not a sensor type.
fn split_sensor_file(name: &[u8]) -> Option<SensorFile<'_>> {
    let prefix = name.iter().take_while(|b| !b.is_ascii_digit()).count();
    if prefix == 0 {
        return None;
    }
    // `.` does not match a newline, so a property may not contain one.
    let is_property = |rest: &[u8]| rest.len() > 1 && rest[0] == b'_' && !rest.contains(&b'\n');
    let digits = name[prefix..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let rest = &name[prefix + digits..];
    let (kind_len, id, property) = if rest.is_empty() {
        (prefix, &name[prefix..], &rest[..0])
    } else if is_property(rest) {
        (prefix, &name[prefix..prefix + digits], &rest[1..])
    } else {
        // Backtrack: a shorter type followed by `_` and any property.
        let cut = (1..prefix).rev().find(|&i| is_property(&name[i..]))?;
        (cut, &name[cut..cut], &name[cut + 1..])
    };
    let kind = SENSOR_TYPES
        .iter()
        .find(|t| t.as_bytes() == &name[..kind_len])?;
    let number = if id.is_empty() {
        0
    } else {
        std::str::from_utf8(id).ok()?.parse().ok()?
    };
    Some(SensorFile {
        kind,
        number,
        property,
    })
}

/// Strips leading and trailing newlines (and nothing else, as node_exporter does).
fn trim_newlines(raw: &[u8]) -> &[u8] {
    let start = raw.iter().position(|&b| b != b'\n').unwrap_or(raw.len());
    let end = raw
        .iter()
        .rposition(|&b| b != b'\n')
        .map_or(start, |i| i + 1);
    &raw[start..end]
}

/// node_exporter's `cleanMetricName`: lower case, every character outside
/// `[a-z0-9:_]` (each invalid UTF-8 byte included) becomes `_`, then `_` trimmed.
fn clean_name(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            // Go lowers rune by rune; the only non-ASCII runes that become ASCII are
            // U+0130 (to i) and the Kelvin sign (to k).
            let lower = match c {
                'A'..='Z' => c.to_ascii_lowercase(),
                '\u{0130}' => 'i',
                '\u{212A}' => 'k',
                c => c,
            };
            out.push(
                if lower.is_ascii_lowercase() || lower.is_ascii_digit() || lower == ':' {
                    lower
                } else {
                    '_'
                },
            );
        }
        for _ in chunk.invalid() {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

/// Go's `strings.ToValidUTF8(s, "\u{FFFD}")`: each run of invalid bytes becomes one
/// replacement character.
fn to_valid_utf8(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut in_bad_run = false;
    for chunk in raw.utf8_chunks() {
        if !chunk.valid().is_empty() {
            out.push_str(chunk.valid());
            in_bad_run = false;
        }
        if !chunk.invalid().is_empty() && !in_bad_run {
            out.push('\u{FFFD}');
            in_bad_run = true;
        }
    }
    out
}

/// Parses a value as Go's `strconv.ParseFloat(s, 64)`, so sonde accepts exactly the
/// values node_exporter accepts: decimal and hexadecimal (`0x1.8p3`) numbers,
/// underscores between digits, `inf`/`infinity`/`nan` in any case. A number too large
/// for an f64 is rejected (Go reports a range error) rather than read as infinity.
fn parse_go_float(raw: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(raw).ok()?;
    if let Some(special) = special_float(s.as_bytes()) {
        return special;
    }
    let b = s.as_bytes();
    let mut i = 0;
    let negative = match b.first() {
        Some(b'+') => {
            i = 1;
            false
        }
        Some(b'-') => {
            i = 1;
            true
        }
        _ => false,
    };
    let hex = i + 2 < b.len() && b[i] == b'0' && b[i + 1].eq_ignore_ascii_case(&b'x');
    if hex {
        i += 2;
    }
    let mantissa_start = i;
    let (mut underscores, mut saw_dot, mut saw_digits) = (false, false, false);
    while i < b.len() {
        match b[i] {
            b'_' => underscores = true,
            b'.' if saw_dot => break,
            b'.' => saw_dot = true,
            c if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) => saw_digits = true,
            _ => break,
        }
        i += 1;
    }
    if !saw_digits {
        return None;
    }
    let mantissa = &b[mantissa_start..i];
    let mut exponent: i64 = 0;
    let exp_char = if hex { b'p' } else { b'e' };
    if i < b.len() && b[i].to_ascii_lowercase() == exp_char {
        i += 1;
        let mut exp_negative = false;
        match b.get(i) {
            Some(b'+') => i += 1,
            Some(b'-') => {
                exp_negative = true;
                i += 1;
            }
            _ => {}
        }
        if !b.get(i).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
            if b[i] == b'_' {
                underscores = true;
            } else if exponent < 100_000 {
                exponent = exponent * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if exp_negative {
            exponent = -exponent;
        }
    } else if hex {
        return None;
    }
    if i != b.len() || (underscores && !underscores_ok(b)) {
        return None;
    }
    let value = if hex {
        hex_float(mantissa, exponent)?
    } else {
        let plain: String = s.chars().filter(|&c| c != '_').collect();
        let v: f64 = plain.parse().ok()?;
        if v.is_infinite() {
            return None;
        }
        return Some(v);
    };
    Some(if negative { -value } else { value })
}

/// Go's `special`: `Some(result)` when the text starts like an infinity or NaN, in
/// which case it must be exactly one (`None` inside means a syntax error).
fn special_float(b: &[u8]) -> Option<Option<f64>> {
    let first = *b.first()?;
    let prefix = |rest: &[u8], word: &[u8]| {
        rest.iter()
            .zip(word)
            .take_while(|(a, w)| a.to_ascii_lowercase() == **w)
            .count()
    };
    let (sign, rest) = match first {
        b'+' => (1.0, &b[1..]),
        b'-' => (-1.0, &b[1..]),
        b'i' | b'I' => (1.0, b),
        b'n' | b'N' => {
            return (prefix(b, b"nan") == 3).then_some((b.len() == 3).then_some(f64::NAN));
        }
        _ => return None,
    };
    let mut n = prefix(rest, b"infinity");
    if 3 < n && n < 8 {
        n = 3;
    }
    if n != 3 && n != 8 {
        return None;
    }
    Some((b.len() - rest.len() + n == b.len()).then_some(sign * f64::INFINITY))
}

/// Go's `underscoreOK`: underscores only between digits, or between a base prefix and
/// a digit.
fn underscores_ok(b: &[u8]) -> bool {
    // What came last: b'^' start, b'0' digit or base prefix, b'_' underscore, b'!' other.
    let mut saw = b'^';
    let mut s = b;
    if let Some(b'+' | b'-') = s.first() {
        s = &s[1..];
    }
    let mut hex = false;
    let mut i = 0;
    if s.len() >= 2 && s[0] == b'0' && matches!(s[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = s[1].eq_ignore_ascii_case(&b'x');
    }
    while i < s.len() {
        let c = s[i];
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
        i += 1;
    }
    saw != b'_'
}

/// The value of hexadecimal mantissa digits (with `_` and at most one `.`) times
/// 2^`exponent`, rounded to nearest even as Go does; `None` when it overflows.
fn hex_float(mantissa: &[u8], exponent: i64) -> Option<f64> {
    let mut m: u64 = 0;
    let mut exp2 = exponent;
    let mut sticky = false;
    let mut after_dot = false;
    for &c in mantissa {
        let digit = match c {
            b'.' => {
                after_dot = true;
                continue;
            }
            b'_' => continue,
            c => u64::from((c as char).to_digit(16)?),
        };
        if m >> 60 == 0 {
            m = m * 16 + digit;
            if after_dot {
                exp2 -= 4;
            }
        } else {
            sticky |= digit != 0;
            if !after_dot {
                exp2 += 4;
            }
        }
    }
    if m == 0 {
        return Some(0.0);
    }
    let zeros = m.leading_zeros();
    m <<= zeros;
    exp2 -= i64::from(zeros);
    // The value is m * 2^exp2 with bit 63 of m set, so it lies in [2^e, 2^(e+1)).
    let mut e = exp2 + 63;
    if e > 1023 {
        return None;
    }
    // Significant bits an f64 keeps at this magnitude (fewer when subnormal).
    let keep = if e >= -1022 { 53 } else { 1075 + e };
    if keep < 0 {
        return Some(0.0);
    }
    let shift = (64 - keep) as u32;
    let wide = u128::from(m);
    let mut kept = wide >> shift;
    let rest = wide & ((1u128 << shift) - 1);
    let half = 1u128 << (shift - 1);
    if rest > half || (rest == half && (sticky || kept & 1 == 1)) {
        kept += 1;
    }
    let bits = if e >= -1022 {
        if kept == 1 << 53 {
            kept >>= 1;
            e += 1;
            if e > 1023 {
                return None;
            }
        }
        (((e + 1023) as u64) << 52) | (kept as u64 & ((1 << 52) - 1))
    } else {
        // Subnormal: no exponent field; a carry into bit 52 makes the smallest normal.
        kept as u64
    };
    Some(f64::from_bits(bits))
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
        let chip_wide = match data.kind {
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
        };
        if let Some((name, help, value)) = chip_wide {
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
    let gauge = |name: String, help: String, value: f64| {
        Classified::Series(Sample {
            name,
            help,
            mtype: MetricType::Gauge,
            value,
        })
    };
    if property == b"fault" || property == b"alarm" {
        let help = format!("Hardware monitor {kind} sensor {what} flag (1 = set).");
        return gauge(name, help, value);
    }
    // ABI: limit alarms (`crit_alarm`, `min_alarm`, ...) and `enable` are 0/1 flags,
    // not readings; node_exporter scales them as one (0.001 "celsius").
    if property.ends_with(b"_alarm") || property == b"enable" {
        let help = format!("Hardware monitor {kind} sensor {what} flag (1 = set).");
        return gauge(name, help, value);
    }
    if property == b"beep" {
        let help = format!("1 if the hardware monitor {kind} sensor beeps on alarm.");
        return gauge(format!("{name}_enabled"), help, value);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn split(name: &str) -> Option<(&'static str, i64, String)> {
        split_sensor_file(name.as_bytes()).map(|f| {
            (
                f.kind,
                f.number,
                String::from_utf8(f.property.to_vec()).unwrap(),
            )
        })
    }

    #[test]
    fn file_names_split_like_node_exporters_regex() {
        assert_eq!(split("temp1_input"), Some(("temp", 1, "input".into())));
        assert_eq!(
            split("temp12_crit_alarm"),
            Some(("temp", 12, "crit_alarm".into()))
        );
        assert_eq!(split("pwm1"), Some(("pwm", 1, "".into())));
        assert_eq!(split("in0_input"), Some(("in", 0, "input".into())));
        assert_eq!(split("temp01_max"), Some(("temp", 1, "max".into())));
        assert_eq!(split("beep_enable"), Some(("beep_enable", 0, "".into())));
        assert_eq!(
            split("update_interval"),
            Some(("update_interval", 0, "".into()))
        );
        assert_eq!(split("vrm"), Some(("vrm", 0, "".into())));
        assert_eq!(
            split("intrusion0_alarm"),
            Some(("intrusion", 0, "alarm".into()))
        );
        // Backtracking: a type followed by `_` and anything, digits included.
        assert_eq!(split("temp_1x"), Some(("temp", 0, "1x".into())));
        assert_eq!(
            split("pwm1_auto_point1_pwm"),
            Some(("pwm", 1, "auto_point1_pwm".into()))
        );
        // Not sensors: unknown types, names without a type, no property after `_`.
        assert_eq!(split("name"), None);
        assert_eq!(split("uevent"), None);
        assert_eq!(split("power"), Some(("power", 0, "".into())));
        assert_eq!(split("temp_input"), None);
        assert_eq!(split("1temp"), None);
        assert_eq!(split("temp1_"), None);
        assert_eq!(split("temp1x"), None);
        assert_eq!(split("temp1_a\nb"), None);
        assert_eq!(split("temp99999999999999999999_input"), None);
    }

    #[test]
    fn values_parse_exactly_as_node_exporter_1_5_parses_them() {
        // Each pair was checked against prometheus-node-exporter 1.5.0 (temp*_input,
        // so its output was the value / 1000): None means it skipped the value.
        let cases: &[(&str, Option<f64>)] = &[
            ("42000", Some(42000.0)),
            ("1_000", Some(1000.0)),
            ("0x_1p4", Some(16.0)),
            ("-nan", None),
            ("+nan", None),
            ("+inf", Some(f64::INFINITY)),
            ("Infinity", Some(f64::INFINITY)),
            ("-INFINITY", Some(f64::NEG_INFINITY)),
            ("infinit", None),
            ("1e-400", Some(0.0)),
            ("0x1.8p1", Some(3.0)),
            ("0x10", None),
            ("1__0", None),
            ("_1", None),
            ("1_", None),
            (".5", Some(0.5)),
            ("5.", Some(5.0)),
            ("1e", None),
            ("1e+", None),
            ("0x1p", None),
            ("0x.8p1", Some(1.0)),
            ("1_0.5_0e1_0", Some(1.05e11)),
            ("0X1P-2", Some(0.25)),
            ("0x1p1_0", Some(1024.0)),
            ("1e308", Some(1e308)),
            ("1.7976931348623159e308", None),
            ("0x1p1024", None),
            ("0x1.fffffffffffff8p1023", None),
            ("9007199254740993", Some(9007199254740992.0)),
            ("0x20000000000001p0", Some(9007199254740992.0)),
            ("00012", Some(12.0)),
            ("1e0_1", Some(10.0)),
            ("0b101", None),
            ("0o17", None),
            ("N/A", None),
            ("", None),
            (" 5", None),
            ("12abc", None),
            ("nan", None), // checked apart below: NaN != NaN
        ];
        for (text, want) in cases {
            let got = parse_go_float(text.as_bytes());
            if *text == "nan" {
                assert!(got.is_some_and(f64::is_nan));
                continue;
            }
            assert_eq!(got, *want, "{text:?}");
        }
        assert!(parse_go_float(b"NaN").is_some_and(f64::is_nan));
        assert_eq!(parse_go_float(b"\xff1"), None);
    }

    #[test]
    fn hex_floats_round_to_nearest_even_down_to_subnormals() {
        assert_eq!(parse_go_float(b"0x1p-1074"), Some(f64::from_bits(1)));
        assert_eq!(parse_go_float(b"0x1p-1075"), Some(0.0)); // a tie rounds to even 0
        assert_eq!(parse_go_float(b"0x1.8p-1075"), Some(f64::from_bits(1)));
        assert_eq!(parse_go_float(b"0x1p-1022"), Some(f64::MIN_POSITIVE));
        assert_eq!(parse_go_float(b"0x1.fffffffffffffp1023"), Some(f64::MAX));
        assert_eq!(parse_go_float(b"0x1.00000000000008p0"), Some(1.0)); // tie, even
        assert_eq!(
            parse_go_float(b"0x1.000000000000080001p0"),
            Some(1.0 + f64::EPSILON)
        );
        assert_eq!(parse_go_float(b"-0x1p0"), Some(-1.0));
    }

    #[test]
    fn names_are_cleaned_like_node_exporter() {
        assert_eq!(clean_name(b"coretemp\n"), "coretemp");
        assert_eq!(clean_name(b"0000:00:18.3"), "0000:00:18_3");
        assert_eq!(clean_name(b"Package id 0"), "package_id_0");
        assert_eq!(clean_name(b"  Weird Name!\xff \n"), "weird_name");
        assert_eq!(clean_name("\u{0130}\u{212A}\u{e9}".as_bytes()), "ik");
        assert_eq!(clean_name(b"a\xe2\x82b"), "a__b");
        assert_eq!(clean_name(b"___"), "");
    }

    #[test]
    fn labels_keep_their_text_with_each_bad_run_replaced_once() {
        assert_eq!(to_valid_utf8(b"Core 0"), "Core 0");
        assert_eq!(to_valid_utf8(b"Core\xff\xfe 0"), "Core\u{FFFD} 0");
        assert_eq!(to_valid_utf8(b"a\xe2\x82"), "a\u{FFFD}");
        assert_eq!(to_valid_utf8(b"\xffa\xff"), "\u{FFFD}a\u{FFFD}");
    }

    #[test]
    fn trimming_removes_newlines_only() {
        assert_eq!(trim_newlines(b"\n\n42\n"), b"42");
        assert_eq!(trim_newlines(b" 42 \n"), b" 42 ");
        assert_eq!(trim_newlines(b"\n\n"), b"");
    }

    fn found(entry: &str, base: &str, name: Option<&str>) -> Found {
        Found {
            entry: entry.into(),
            dir: PathBuf::new(),
            base: base.into(),
            chip_name: name.map(str::to_string),
        }
    }

    #[test]
    fn colliding_chips_get_the_name_file_or_the_hwmon_directory_as_suffix() {
        let chips = [
            found("hwmon0", "pci0000:00_0000:00:18_3", Some("k10temp")),
            found("hwmon6", "platform_asus_nb_wmi", Some("asus")),
            found(
                "hwmon7",
                "platform_asus_nb_wmi",
                Some("asus_custom_fan_curve"),
            ),
            found("hwmon2", "pci_dev", Some("wormhole")),
            found("hwmon3", "pci_dev", Some("wormhole")),
            found("hwmon4", "virt", None),
            found("hwmon5", "virt", Some("x")),
        ];
        assert_eq!(
            unique_labels(&chips),
            [
                "pci0000:00_0000:00:18_3",
                "platform_asus_nb_wmi_asus",
                "platform_asus_nb_wmi_asus_custom_fan_curve",
                "pci_dev_hwmon2",
                "pci_dev_hwmon3",
                "virt_hwmon4",
                "virt_x",
            ]
        );
    }

    #[test]
    fn only_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut buf = [0u8; VALUE_BYTES];
        std::fs::write(dir.path().join("f"), "x".repeat(300)).unwrap();
        assert_eq!(
            read_attr(&dir.path().join("f"), None, &mut buf).map(<[u8]>::len),
            Some(128)
        );
        std::fs::create_dir(dir.path().join("d")).unwrap();
        assert_eq!(read_attr(&dir.path().join("d"), None, &mut buf), None);
        let fifo = dir.path().join("p");
        let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: mkfifo reads a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        assert_eq!(read_attr(&fifo, None, &mut buf), None);
        std::os::unix::fs::symlink("loop", dir.path().join("loop")).unwrap();
        assert_eq!(read_attr(&dir.path().join("loop"), None, &mut buf), None);
        // Reading /proc/self/mem at offset 0 fails with EIO, as a broken driver does.
        assert_eq!(read_attr(Path::new("/proc/self/mem"), None, &mut buf), None);
    }

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
}
