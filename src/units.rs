//! Durations and sizes as users write them in flags and YAML: parse and print.
//!
//! Durations follow Prometheus' style (`250ms`, `5s`, `1m30s`, `2d`, `1w`) plus a bare
//! integer meaning seconds. Sizes are bare bytes or carry a binary suffix (`KiB`, `MiB`,
//! `GiB`). Both deserialize from YAML strings and integers.
//!
//! Both are bounded here, where they are parsed, whatever their spelling: a duration is
//! at most [`MAX_DURATION`] and a size at most [`MAX_SIZE`]. The rest of sonde adds
//! durations to clocks and multiplies them; a bound at the edge keeps every such sum
//! far from overflowing (`interval: 18446744073709551615` once aborted sonde).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::{self, Deserializer, Visitor};

/// The longest duration sonde accepts: 520 weeks, about ten years.
pub const MAX_DURATION: Duration = Duration::from_secs(520 * 7 * 86_400);

/// The largest size sonde accepts: 1 GiB.
pub const MAX_SIZE: u64 = 1 << 30;

/// The error of a duration over [`MAX_DURATION`].
fn duration_too_large(text: &str) -> String {
    format!("duration {text:?} is too large: at most 520w (about 10 years)")
}

/// Seconds as a duration, refused above [`MAX_DURATION`].
fn bounded_secs(secs: u64, text: &str) -> Result<Duration, String> {
    if secs > MAX_DURATION.as_secs() {
        return Err(duration_too_large(text));
    }
    Ok(Duration::from_secs(secs))
}

/// Parses a duration such as `250ms`, `1m30s`, `2d` or a bare number of seconds; at most
/// [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".to_string());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u64>() {
            Ok(secs) => bounded_secs(secs, text),
            Err(_) => Err(duration_too_large(text)),
        };
    }
    let bad = || {
        format!(
            "invalid duration {text:?}: use a number with a unit (ms, s, m, h, d, w), e.g. 30s or 1m30s"
        )
    };
    let mut total_ms: u128 = 0;
    let mut rest = text;
    // Units must appear from largest to smallest, each at most once, as in Go's model.Duration.
    let mut last_rank = usize::MAX;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let number: u128 = rest[..digits]
            .parse()
            .map_err(|_| duration_too_large(text))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let (rank, ms_per_unit) = match unit {
            "w" => (0, 7 * 86_400_000),
            "d" => (1, 86_400_000),
            "h" => (2, 3_600_000),
            "m" => (3, 60_000),
            "s" => (4, 1_000),
            "ms" => (5, 1),
            _ => return Err(bad()),
        };
        if last_rank != usize::MAX && rank <= last_rank {
            return Err(bad());
        }
        last_rank = rank;
        total_ms = number
            .checked_mul(ms_per_unit)
            .and_then(|v| v.checked_add(total_ms))
            .ok_or_else(|| duration_too_large(text))?;
    }
    if total_ms > MAX_DURATION.as_millis() {
        return Err(duration_too_large(text));
    }
    let ms = u64::try_from(total_ms).map_err(|_| duration_too_large(text))?;
    Ok(Duration::from_millis(ms))
}

/// Prints a duration in the form [`parse_duration`] reads, e.g. `1m30s` or `250ms`.
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("w", 604_800_000u128),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

/// The error of a size over [`MAX_SIZE`].
fn size_too_large(text: &str) -> String {
    format!("size {text:?} is too large: at most 1GiB")
}

/// Bytes as a size, refused above [`MAX_SIZE`].
fn bounded_size(bytes: u64, text: &str) -> Result<u64, String> {
    if bytes > MAX_SIZE {
        return Err(size_too_large(text));
    }
    Ok(bytes)
}

/// Parses a size: bare bytes, or a number with `B`, `KiB`, `MiB` or `GiB`; at most
/// [`MAX_SIZE`].
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let bad =
        || format!("invalid size {text:?}: use bytes or a KiB, MiB or GiB suffix, e.g. 10MiB");
    if digits == 0 {
        return Err(bad());
    }
    let factor: u64 = match text[digits..].trim_start() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(bad()),
    };
    let Ok(number) = text[..digits].parse::<u64>() else {
        return Err(size_too_large(text));
    };
    let bytes = number
        .checked_mul(factor)
        .ok_or_else(|| size_too_large(text))?;
    bounded_size(bytes, text)
}

/// A duration that deserializes from `"1m30s"`-style strings or integer seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurationValue(pub Duration);

impl<'de> serde::Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurationValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 30s, 1m30s or 250ms")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationValue, E> {
                bounded_secs(v, &v.to_string())
                    .map(DurationValue)
                    .map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationValue, E> {
                let v = u64::try_from(v).map_err(|_| E::custom("a duration cannot be negative"))?;
                self.visit_u64(v)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationValue, E> {
                parse_duration(v).map(DurationValue).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A byte size that deserializes from `"10MiB"`-style strings or integer bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeValue(pub u64);

impl<'de> serde::Deserialize<'de> for SizeValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SizeValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as 10MiB or a number of bytes")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SizeValue, E> {
                bounded_size(v, &v.to_string())
                    .map(SizeValue)
                    .map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SizeValue, E> {
                let v = u64::try_from(v).map_err(|_| E::custom("a size cannot be negative"))?;
                self.visit_u64(v)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SizeValue, E> {
                parse_size(v).map(SizeValue).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Milliseconds since the Unix epoch (0 for times before it).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC with milliseconds
/// (`2023-11-14T22:13:20.123Z`), the form of log lines and JSON timestamps.
pub fn rfc3339_millis(unix_ms: u64) -> String {
    let secs = i64::try_from(unix_ms / 1000).unwrap_or(i64::MAX);
    let t =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        unix_ms % 1000
    )
}

/// Test helper for property tests: runs `f` and fails (panics, which proptest reports
/// and shrinks) when it takes longer than `limit`, the "bounded time" invariant of every
/// parser that reads outside input.
#[cfg(test)]
pub fn within<T>(limit: Duration, what: &str, f: impl FnOnce() -> T) -> T {
    let started = std::time::Instant::now();
    let out = f();
    let took = started.elapsed();
    assert!(took <= limit, "{what} took {took:?} (limit {limit:?})");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations_parse_in_every_documented_form() {
        let ms = |t: &str| parse_duration(t).map(|d| d.as_millis());
        assert_eq!(ms("250ms"), Ok(250));
        assert_eq!(ms("5s"), Ok(5_000));
        assert_eq!(ms("1m30s"), Ok(90_000));
        assert_eq!(ms("5m"), Ok(300_000));
        assert_eq!(ms("1h"), Ok(3_600_000));
        assert_eq!(ms("2d"), Ok(172_800_000));
        assert_eq!(ms("1w"), Ok(604_800_000));
        assert_eq!(ms("45"), Ok(45_000));
        assert_eq!(ms("1h2m3s4ms"), Ok(3_723_004));
    }

    #[test]
    fn bad_durations_are_refused_not_guessed() {
        for bad in [
            "",
            "s",
            "5x",
            "1.5s",
            "-5s",
            "5s1m",
            "5s5s",
            "m5",
            "99999999999999999999w",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    /// Every spelling is bounded: once, a bare integer had no cap and aborted sonde when
    /// the scheduler added it to the clock.
    #[test]
    fn durations_and_sizes_are_bounded_in_every_spelling() {
        assert_eq!(parse_duration("520w"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("314496000"), Ok(MAX_DURATION));
        for big in [
            "18446744073709551615",
            "9223372036854775807",
            "314496001",
            "521w",
            "520w1ms",
            "99999999999999999999",
            "1000000000000000000000000000000000000000ms",
        ] {
            let e = parse_duration(big).unwrap_err();
            assert!(e.contains("too large") && e.contains("520w"), "{big}: {e}");
        }
        assert_eq!(parse_size("1GiB"), Ok(MAX_SIZE));
        for big in ["1073741825", "2GiB", "1048577KiB", "18446744073709551616"] {
            let e = parse_size(big).unwrap_err();
            assert!(e.contains("too large") && e.contains("1GiB"), "{big}: {e}");
        }
    }

    #[test]
    fn durations_print_as_they_parse() {
        for text in [
            "250ms",
            "5s",
            "1m30s",
            "1h",
            "2d",
            "1w",
            "1d2h3m4s5ms",
            "0s",
        ] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        for bad in ["", "MiB", "10MB", "10 mib", "-1", "99999999999999GiB"] {
            assert!(parse_size(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn times_print_as_rfc3339_with_milliseconds() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
    }

    /// How long one parse of a short text may take, even in a debug build.
    const LIMIT: Duration = Duration::from_millis(200);

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any text: an answer, never a panic, and a duration within the bound.
        #[test]
        fn any_text_parses_or_is_refused(text in "\\PC{0,40}|[0-9wdhms]{0,40}") {
            let d = within(LIMIT, "parse_duration", || parse_duration(&text));
            if let Ok(d) = d {
                prop_assert!(d <= MAX_DURATION);
            }
            let size = within(LIMIT, "parse_size", || parse_size(&text));
            if let Ok(size) = size {
                prop_assert!(size <= MAX_SIZE);
            }
        }

        /// Units largest first, each at most once: the sum, or "too large" past the
        /// bound.
        #[test]
        fn written_durations_sum_their_units(parts in proptest::collection::vec(proptest::option::of(0u64..100_000_000_000u64), 6)) {
            let units = [("w", 604_800_000u128), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];
            let mut text = String::new();
            let mut expected: u128 = 0;
            for (part, (unit, ms)) in parts.iter().zip(units) {
                if let Some(n) = part {
                    text.push_str(&format!("{n}{unit}"));
                    expected += u128::from(*n) * ms;
                }
            }
            prop_assume!(!text.is_empty());
            match parse_duration(&text) {
                Ok(d) => prop_assert_eq!(d.as_millis(), expected),
                Err(e) => {
                    prop_assert!(expected > MAX_DURATION.as_millis(), "{}: {}", text, e);
                    prop_assert!(e.contains("too large"), "{}", e);
                }
            }
        }

        /// Printing and parsing again gives the same duration (to the millisecond).
        #[test]
        fn durations_round_trip(ms in 0u64..=(MAX_DURATION.as_millis() as u64)) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        /// Sizes: bytes or a suffix, up to 1 GiB; beyond is refused, never wrapped.
        #[test]
        fn sizes_multiply_or_are_refused(n in 0u64..u64::MAX, unit in 0usize..5) {
            let (suffix, factor) = [("", 1u128), ("B", 1), ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30)][unit];
            let expected = u128::from(n) * factor;
            match parse_size(&format!("{n}{suffix}")) {
                Ok(size) => prop_assert_eq!(u128::from(size), expected),
                Err(e) => prop_assert!(expected > u128::from(MAX_SIZE) && e.contains("too large")),
            }
        }
    }
}
