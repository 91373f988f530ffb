//! Go's `strconv.ParseFloat(s, 64)`, byte for byte: node_exporter parses every hwmon
//! value with it, and sonde must accept and refuse exactly the same texts (hex floats,
//! underscores, `Inf`/`NaN` spellings, range errors) to export the same series.
//!
//! Rust's `f64::from_str` covers the plain decimal case, to which the decimal path
//! defers; the syntax checks around it and the hexadecimal rounding are Go's.

/// Parses a value as Go's `strconv.ParseFloat(s, 64)`, so sonde accepts exactly the
/// values node_exporter accepts: decimal and hexadecimal (`0x1.8p3`) numbers,
/// underscores between digits, `inf`/`infinity`/`nan` in any case. A number too large
/// for an f64 is rejected (Go reports a range error) rather than read as infinity.
pub fn parse_go_float(raw: &[u8]) -> Option<f64> {
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
        let (end, value, exp_underscores) = exponent_digits(b, i + 1)?;
        (i, exponent) = (end, value);
        underscores |= exp_underscores;
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

/// Reads an exponent's optional sign and digits (`_` allowed) starting at `b[i]`, just
/// after its `e` or `p`: where it ends, its value (saturating far outside any f64's
/// range) and whether it held an underscore; `None` when no digit follows the sign.
fn exponent_digits(b: &[u8], mut i: usize) -> Option<(usize, i64, bool)> {
    let mut negative = false;
    match b.get(i) {
        Some(b'+') => i += 1,
        Some(b'-') => {
            negative = true;
            i += 1;
        }
        _ => {}
    }
    if !b.get(i).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let (mut exponent, mut underscores) = (0i64, false);
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
        if b[i] == b'_' {
            underscores = true;
        } else if exponent < 100_000 {
            exponent = exponent * 10 + i64::from(b[i] - b'0');
        }
        i += 1;
    }
    Some((i, if negative { -exponent } else { exponent }, underscores))
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
