//! Building blocks of the text exposition format (version 0.0.4): metric families whose
//! sample lines are rendered once, when a check publishes, so a scrape only concatenates.
//!
//! A check fills a [`FamilySet`]; `exposition.rs` merges the sets of all checks so each
//! family gets exactly one HELP and one TYPE line however many checks contribute to it.

use std::borrow::Cow;
use std::fmt::Write as _;

/// The TYPE of a metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    /// A value that goes up and down.
    Gauge,
    /// A cumulative count (name ends in `_total`).
    Counter,
    /// Cumulative buckets plus `_sum` and `_count`.
    Histogram,
}

impl MetricType {
    /// The word used on the `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Gauge => "gauge",
            MetricType::Counter => "counter",
            MetricType::Histogram => "histogram",
        }
    }
}

/// One metric family's samples from one check, already rendered as exposition lines.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    /// Metric name, e.g. `sonde_http_up`.
    pub name: Cow<'static, str>,
    /// HELP text (escaped when rendered).
    pub help: Cow<'static, str>,
    /// TYPE of the family.
    pub mtype: MetricType,
    /// Sample lines, each ending in `\n`.
    pub lines: String,
}

/// Index of a family inside a [`FamilySet`].
#[derive(Clone, Copy, Debug)]
pub struct FamilyId(usize);

/// The families one check run produces.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FamilySet {
    families: Vec<Family>,
}

impl FamilySet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a family (or finds the one already declared under that name).
    pub fn family(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        help: impl Into<Cow<'static, str>>,
        mtype: MetricType,
    ) -> FamilyId {
        let name = name.into();
        if let Some(i) = self.families.iter().position(|f| f.name == name) {
            return FamilyId(i);
        }
        self.families.push(Family {
            name,
            help: help.into(),
            mtype,
            lines: String::new(),
        });
        FamilyId(self.families.len() - 1)
    }

    /// Adds one sample line `name{labels} value` to a declared family.
    pub fn sample(&mut self, id: FamilyId, labels: &[(&str, &str)], value: f64) {
        self.sample_with_suffix(id, "", labels, value);
    }

    /// Adds a sample whose name carries a suffix (`_bucket`, `_sum`, `_count`).
    pub fn sample_with_suffix(
        &mut self,
        id: FamilyId,
        suffix: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        let family = &mut self.families[id.0];
        write_sample(&mut family.lines, &family.name, suffix, labels, None, value);
    }

    /// Adds the bucket, sum and count lines of a histogram.
    pub fn histogram(&mut self, id: FamilyId, labels: &[(&str, &str)], h: &Histogram) {
        let family = &mut self.families[id.0];
        let mut cumulative = 0u64;
        let mut le = String::with_capacity(16);
        for (bound, count) in h.bounds.iter().zip(&h.counts) {
            cumulative += count;
            le.clear();
            push_value(&mut le, *bound);
            write_sample(
                &mut family.lines,
                &family.name,
                "_bucket",
                labels,
                Some(&le),
                cumulative as f64,
            );
        }
        let total = cumulative + h.counts.last().copied().unwrap_or(0);
        write_sample(
            &mut family.lines,
            &family.name,
            "_bucket",
            labels,
            Some("+Inf"),
            total as f64,
        );
        write_sample(&mut family.lines, &family.name, "_sum", labels, None, h.sum);
        write_sample(
            &mut family.lines,
            &family.name,
            "_count",
            labels,
            None,
            total as f64,
        );
    }

    /// The family declared at `index` (see [`FamilySet::indexed`]).
    pub fn get(&self, index: usize) -> Option<&Family> {
        self.families.get(index)
    }

    /// The families with at least one sample, with their positions.
    pub fn indexed(&self) -> impl Iterator<Item = (usize, &Family)> {
        self.families
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.lines.is_empty())
    }

    /// The whole set as exposition text on its own (one probe's answer), families
    /// sorted by name as Prometheus' client libraries write them.
    pub fn to_text(&self) -> String {
        let mut families: Vec<&Family> = self.indexed().map(|(_, f)| f).collect();
        families.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out = String::new();
        for family in families {
            write_header(&mut out, &family.name, &family.help, family.mtype);
            out.push_str(&family.lines);
        }
        out
    }
}

/// Writes a family's `# HELP` and `# TYPE` lines.
pub fn write_header(out: &mut String, name: &str, help: &str, mtype: MetricType) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    out.push_str(&escape_help(help));
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(mtype.as_str());
    out.push('\n');
}

/// A histogram's state: one counter per bound plus the overflow (`+Inf`) counter.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Non-cumulative counts; one more than `bounds` (the last is above every bound).
    counts: Vec<u64>,
    sum: f64,
}

impl Histogram {
    /// An empty histogram with the given upper bounds (ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    /// Records one observation.
    pub fn observe(&mut self, value: f64) {
        let slot = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[slot] += 1;
        self.sum += value;
    }
}

/// Writes `name+suffix{labels[,le="…"]} value\n`.
fn write_sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(&str, &str)],
    le: Option<&str>,
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    let extra = le.map(|v| ("le", v));
    let mut all = labels.iter().copied().chain(extra).peekable();
    if all.peek().is_some() {
        out.push('{');
        for (i, (k, v)) in all.enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            escape_label_value(out, v);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    push_value(out, value);
    out.push('\n');
}

/// Appends a label value with `\`, `"` and newline escaped as the format requires.
pub fn escape_label_value(out: &mut String, value: &str) {
    // Most values need no escape: copy them whole.
    if !value.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Escapes HELP text (`\` and newline).
pub fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Appends a sample value as the text format writes it: integers without a fraction,
/// `+Inf`, `-Inf`, `NaN`. No allocation of its own: a check of 10,000 URLs writes
/// 300,000 of them per run.
pub fn push_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_escape_labels_and_format_values() {
        let mut set = FamilySet::new();
        let id = set.family("x_up", "Up.", MetricType::Gauge);
        set.sample(id, &[("url", "http://a/\"q\"\\\n")], 1.0);
        set.sample(id, &[], f64::INFINITY);
        set.sample(id, &[("a", "b")], 0.25);
        let f = set.indexed().next().unwrap().1;
        assert_eq!(
            f.lines,
            "x_up{url=\"http://a/\\\"q\\\"\\\\\\n\"} 1\nx_up +Inf\nx_up{a=\"b\"} 0.25\n"
        );
    }

    #[test]
    fn histogram_lines_are_cumulative() {
        static BOUNDS: [f64; 2] = [0.1, 1.0];
        let mut h = Histogram::new(&BOUNDS);
        for v in [0.05, 0.5, 0.7, 3.0] {
            h.observe(v);
        }
        let mut set = FamilySet::new();
        let id = set.family("d_seconds", "D.", MetricType::Histogram);
        set.histogram(id, &[("check", "c")], &h);
        assert_eq!(
            set.indexed().next().unwrap().1.lines,
            "d_seconds_bucket{check=\"c\",le=\"0.1\"} 1\n\
             d_seconds_bucket{check=\"c\",le=\"1\"} 3\n\
             d_seconds_bucket{check=\"c\",le=\"+Inf\"} 4\n\
             d_seconds_sum{check=\"c\"} 4.25\n\
             d_seconds_count{check=\"c\"} 4\n"
        );
    }

    #[test]
    fn a_declared_family_without_samples_is_not_listed() {
        let mut set = FamilySet::new();
        set.family("empty", "E.", MetricType::Gauge);
        assert_eq!(set.indexed().count(), 0);
    }
}
