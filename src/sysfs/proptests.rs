//! Property tests of what the hwmon tree holds: sensor values (Go's ParseFloat),
//! attribute file names and chip names. Invariants: no panic, bounded time, numbers
//! round-trip, cleaned names stay within node_exporter's alphabet.

use std::time::Duration;

use proptest::prelude::*;

use super::gofloat::parse_go_float;
use super::{clean_name, split_sensor_file, to_valid_utf8, trim_newlines};
use crate::units::within;

const LIMIT: Duration = Duration::from_millis(200);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any bytes in a value file: a number or nothing, never a panic.
    #[test]
    fn any_value_is_parsed_or_refused(raw in prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        "[-+]?(0[xX])?[0-9a-fA-F_.]{0,20}([eEpP][-+]?[0-9_]{0,6})?\n?".prop_map(String::into_bytes),
    ]) {
        let _ = within(LIMIT, "parse_go_float", || parse_go_float(trim_newlines(&raw)));
    }

    /// What the kernel writes (integers, with a newline) and any finite float printed
    /// in full read back exactly.
    #[test]
    fn numbers_round_trip(i in any::<i64>(), f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
        let text = format!("{i}\n");
        prop_assert_eq!(parse_go_float(trim_newlines(text.as_bytes())), Some(i as f64));
        prop_assert_eq!(parse_go_float(f.to_string().as_bytes()), Some(f));
        prop_assert_eq!(parse_go_float(format!("{f:e}").as_bytes()), Some(f));
    }

    /// Any file name: a sensor file or not, never a panic; a property never has a
    /// newline.
    #[test]
    fn any_file_name_is_split_or_skipped(name in prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40),
        "(temp|in|fan|power|curr|humidity|pwm|[a-z]{1,6})[0-9]{0,3}(_[a-z_\n]{0,12})?".prop_map(String::into_bytes),
    ]) {
        if let Some(file) = within(LIMIT, "split_sensor_file", || split_sensor_file(&name)) {
            prop_assert!(!file.property.contains(&b'\n'));
        }
    }

    /// Chip and label names: cleaned names use node_exporter's alphabet only and do
    /// not start or end with `_`; any bytes become valid UTF-8.
    #[test]
    fn names_are_cleaned(raw in proptest::collection::vec(any::<u8>(), 0..60)) {
        let cleaned = within(LIMIT, "clean_name", || clean_name(&raw));
        prop_assert!(cleaned.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == ':' || c == '_'), "{:?}", cleaned);
        prop_assert!(!cleaned.starts_with('_') && !cleaned.ends_with('_'), "{:?}", cleaned);
        let _ = within(LIMIT, "to_valid_utf8", || to_valid_utf8(&raw));
    }
}
