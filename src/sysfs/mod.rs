//! Reading the hwmon class of sysfs (`/sys/class/hwmon`) as node_exporter's hwmon
//! collector reads it: which chips exist, what they are called, which sensor files they
//! have and what those files say. Turning that into metrics is the hwmon check's job;
//! this module knows nothing of metrics or checks.
//!
//! A chip is named from its device path, else its `name` file, else `hwmonX`, with the
//! collision suffixes of node_exporter #3646. Its sensors are the files of the chip
//! directory and of its `device/` directory whose names node_exporter recognises. A
//! [`Filter`] leaves chips and sensors out by name before any of their files is opened
//! (the `name` file is read only when the label comes from it).
//!
//! A value costs one read(2) of at most 128 bytes into a stack buffer, as in
//! node_exporter, and only regular files are opened (non-blocking), so a broken driver
//! (EAGAIN, EIO), a FIFO or device node where an attribute belongs, or a symlink loop
//! costs that one value, never the scan. Nothing is walked recursively: a chip is its
//! directory plus `device/`, so link cycles in sysfs cannot trap a scan.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs::{self, FileType, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

mod gofloat;

pub use gofloat::parse_go_float;

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

/// One chip as read: its final label, its `name` file and its sensors.
#[derive(Debug, Default, PartialEq)]
pub struct Chip {
    /// The `chip` label: stable across boots and unique among the chips of one scan.
    pub label: String,
    /// The cleaned `name` file, when the chip has a usable one.
    pub chip_name: Option<String>,
    /// Keyed by `<type><number>` (`temp1`, `beep_enable0`).
    pub sensors: BTreeMap<String, Sensor>,
}

/// The files of one sensor: property (`input`, `crit`, `""` for a bare `pwm1`) -> value.
#[derive(Debug, PartialEq)]
pub struct Sensor {
    /// One of the sensor types node_exporter reads (`temp`, `fan`, `beep_enable`, ...).
    pub kind: &'static str,
    /// The raw content of each file, leading and trailing newlines removed.
    pub props: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// What a scan read: the chips, and what could not be read.
#[derive(Debug, Default)]
pub struct Scan {
    /// In the name order of their `class/hwmon` entries.
    pub chips: Vec<Chip>,
    /// What could not be listed or named, one sentence each.
    pub problems: Vec<String>,
}

/// A chip directory found in `class/hwmon`, before labels are made unique.
#[derive(Debug)]
struct Found {
    entry: OsString,
    dir: PathBuf,
    base: String,
    /// The cleaned `name` file, once read (`None` also when it is missing or empty).
    chip_name: Option<String>,
    /// Whether `name` was read: it is opened only when the label or the exported
    /// series need it.
    name_read: bool,
}

impl Found {
    /// Reads the `name` file, once.
    fn read_name(&mut self) {
        if !self.name_read {
            self.chip_name = read_name(&self.dir);
            self.name_read = true;
        }
    }
}

/// Which chips and sensors a scan reads. Chips and sensors left out are decided on
/// names alone, before any of their files is opened: some drivers wake a device for
/// every read (amdgpu resumes a suspended GPU), which is why they are left out.
pub struct Filter<'a> {
    /// Whether the chip with this `chip` label is read.
    pub chip: &'a dyn Fn(&str) -> bool,
    /// Whether sensor `sensor` (`temp1`) of the chip labelled `chip` is read.
    pub sensor: &'a dyn Fn(&str, &str) -> bool,
}

/// Reads the hwmon chips under `sysfs` (normally `/sys`) that `filter` lets through,
/// stopping early when `stop` says so; a tree without `class/hwmon` has no chips and no
/// problem.
pub fn scan(sysfs: &Path, filter: &Filter, stop: &dyn Fn() -> bool) -> Scan {
    let mut out = Scan::default();
    let mut found = find_chips(&sysfs.join("class").join("hwmon"), &mut out.problems);
    let labels = unique_labels(&mut found);
    for (mut chip, label) in found.into_iter().zip(labels) {
        if !(filter.chip)(&label) {
            continue;
        }
        if stop() {
            out.problems
                .push("the run was stopped before every chip was read".to_string());
            break;
        }
        chip.read_name();
        let mut sensors = BTreeMap::new();
        let wanted = |sensor: &str| (filter.sensor)(&label, sensor);
        if let Err(e) = read_sensors(&chip.dir, &wanted, &mut sensors) {
            out.problems
                .push(format!("cannot list {}: {e}", chip.dir.display()));
            continue;
        }
        // Older drivers keep their files on the device itself.
        let device = chip.dir.join("device");
        if fs::metadata(&device).is_ok_and(|m| m.is_dir())
            && let Err(e) = read_sensors(&device, &wanted, &mut sensors)
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

/// The chip directories of `class`, in name order, with their base labels. A chip's
/// `name` file is read here only when its label comes from it (no device link).
fn find_chips(class: &Path, problems: &mut Vec<String>) -> Vec<Found> {
    let listing = match fs::read_dir(class) {
        Ok(l) => l,
        // A machine (or VM, or container) without hwmon simply has no sensors.
        Err(e) if e.kind() == ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            problems.push(format!("cannot list {}: {e}", class.display()));
            return Vec::new();
        }
    };
    let mut entries = Vec::new();
    for entry in listing {
        match entry {
            Ok(e) => entries.push(e.file_name()),
            Err(e) => problems.push(format!("cannot list {}: {e}", class.display())),
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
        let mut chip = Found {
            entry,
            dir,
            base: String::new(),
            chip_name: None,
            name_read: false,
        };
        let base = device_label(&chip.dir).or_else(|| {
            chip.read_name();
            name_label(&chip.dir, chip.chip_name.as_deref())
        });
        match base {
            Some(base) => found.push(Found { base, ..chip }),
            None => problems.push(format!(
                "cannot derive a chip name for {}",
                chip.dir.display()
            )),
        }
    }
    found
}

/// The cleaned content of a chip's `name` file, when it has a usable one.
fn read_name(dir: &Path) -> Option<String> {
    let mut buf = [0u8; NAME_BYTES];
    let raw = read_attr(&dir.join("name"), None, &mut buf)?;
    Some(clean_name(raw)).filter(|n| !n.is_empty())
}

/// The chip label from the resolved `device` link, `<parent>_<device>` (stable across
/// boots, unlike hwmonX), when the chip has one; reading a link opens no file.
fn device_label(dir: &Path) -> Option<String> {
    let device = fs::canonicalize(dir.join("device")).ok()?;
    let dev_name = device
        .file_name()
        .map(|n| clean_name(n.as_bytes()))
        .unwrap_or_default();
    let dev_type = device
        .parent()
        .and_then(Path::file_name)
        .map(|n| clean_name(n.as_bytes()))
        .unwrap_or_default();
    if dev_name.is_empty() {
        return None;
    }
    Some(if dev_type.is_empty() {
        dev_name
    } else {
        format!("{dev_type}_{dev_name}")
    })
}

/// The chip label without a device link: the name file, else the resolved directory's
/// own name.
fn name_label(dir: &Path, chip_name: Option<&str>) -> Option<String> {
    if let Some(name) = chip_name {
        return Some(name.to_string());
    }
    let real = fs::canonicalize(dir).ok()?;
    Some(clean_name(real.file_name()?.as_bytes())).filter(|n| !n.is_empty())
}

/// Final chip labels, in the order of `found`: a base label shared by several chips
/// (two hwmon devices registered by one parent device) gets `_<name>` when the name
/// file tells them apart, else `_<hwmonX>` (node_exporter #3646). Only the name files
/// of such chips are read here.
fn unique_labels(found: &mut [Found]) -> Vec<String> {
    let mut bases: HashMap<String, usize> = HashMap::new();
    for f in found.iter() {
        *bases.entry(f.base.clone()).or_default() += 1;
    }
    for f in found.iter_mut().filter(|f| bases[&f.base] > 1) {
        f.read_name();
    }
    let mut names: HashMap<(&str, &str), usize> = HashMap::new();
    for f in found.iter() {
        if let Some(name) = &f.chip_name {
            *names.entry((&f.base, name)).or_default() += 1;
        }
    }
    found
        .iter()
        .map(|f| {
            if bases[&f.base] == 1 {
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

/// Adds the sensor files of `dir` whose sensor `wanted` accepts to `sensors`; a later
/// file of the same sensor and property replaces an earlier one (files are taken in
/// name order, `device/` last). Only an unlistable directory is an error; an
/// unreadable file is skipped, and the file of a sensor not wanted is never opened.
fn read_sensors(
    dir: &Path,
    wanted: &dyn Fn(&str) -> bool,
    sensors: &mut BTreeMap<String, Sensor>,
) -> std::io::Result<()> {
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
        let sensor = format!("{}{}", file.kind, file.number);
        if !wanted(&sensor) {
            continue;
        }
        let Some(raw) = read_attr(&dir.join(&name), file_type, &mut buf) else {
            continue;
        };
        let value = trim_newlines(raw).to_vec();
        sensors
            .entry(sensor)
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
pub fn clean_name(raw: &[u8]) -> String {
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
pub fn to_valid_utf8(raw: &[u8]) -> String {
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

#[cfg(test)]
mod proptests;

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
            name_read: true,
        }
    }

    #[test]
    fn colliding_chips_get_the_name_file_or_the_hwmon_directory_as_suffix() {
        let mut chips = [
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
            unique_labels(&mut chips),
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
}
