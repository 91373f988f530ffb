//! YAML as a tree that remembers where every key and value was written, and that can be
//! written back as YAML text with a map from each position of that text to the place in
//! the input it came from.
//!
//! Typed configs (`config.rs`) are read straight into their structs. This tree serves
//! what a fixed struct cannot: a file in another program's format (blackbox_exporter's
//! `blackbox.yml`), walked key by key so that every key sonde does not support is named
//! with its line and column, and translated into sonde's keys as text; and the keys of
//! a module shown back to a person (`/probe?debug=true`) with secret values hidden.
//! It imports nothing of the crate (layer 0).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Location;

/// A value and where it was written.
#[derive(Clone, Debug)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// Where it is written (for an alias, where the alias is).
    pub at: Location,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Located<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<T>::deserialize(deserializer)?;
        Ok(Located {
            value: spanned.value,
            at: spanned.referenced,
        })
    }
}

/// The entries of a mapping, keys and values with their locations, in the order
/// written.
pub type Entries = Vec<(Located<String>, Located<Node>)>;

/// One YAML node. Mappings keep their keys in the order written.
#[derive(Clone, Debug)]
pub enum Node {
    /// `~`, `null` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A number with a fraction or exponent.
    Float(f64),
    /// Any other scalar.
    Str(String),
    /// A sequence.
    Seq(Vec<Located<Node>>),
    /// A mapping with string keys.
    Map(Entries),
}

impl Node {
    /// What kind of node this is, for messages ("a mapping", "a string").
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Null => "nothing",
            Node::Bool(_) => "a boolean",
            Node::Int(_) | Node::Float(_) => "a number",
            Node::Str(_) => "a string",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }

    /// The text of a scalar as YAML would read it (`5s`, `404`, `true`); `None` for
    /// lists and mappings.
    pub fn scalar_text(&self) -> Option<String> {
        match self {
            Node::Null => Some(String::new()),
            Node::Bool(b) => Some(b.to_string()),
            Node::Int(i) => Some(i.to_string()),
            Node::Float(f) => Some(f.to_string()),
            Node::Str(s) => Some(s.clone()),
            Node::Seq(_) | Node::Map(_) => None,
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(i64::try_from(v).map_or_else(|_| Node::Str(v.to_string()), Node::Int))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Located<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries: Entries = Vec::new();
        while let Some(key) = map.next_key::<Located<String>>()? {
            if entries.iter().any(|(k, _)| k.value == key.value) {
                return Err(de::Error::custom(format!(
                    "duplicate key `{}` in one mapping",
                    key.value
                )));
            }
            let value = map.next_value::<Located<Node>>()?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

/// Where a stretch of generated text came from: from (`line`, `column`) of the text on,
/// until the next segment, positions belong to `origin` in the input.
#[derive(Clone, Copy, Debug)]
struct Segment {
    line: u64,
    column: u64,
    origin: Location,
}

/// YAML text written from a [`Node`], with where each part of it came from.
#[derive(Clone, Debug, Default)]
pub struct Written {
    /// The text, block style, two spaces per level.
    pub text: String,
    segments: Vec<Segment>,
}

impl Written {
    /// The input location of a position (1-based) of [`Written::text`]: the origin of
    /// the last segment that starts at or before it; `None` when nothing written there
    /// came from the input.
    pub fn origin(&self, line: u64, column: u64) -> Option<Location> {
        self.segments
            .iter()
            .filter(|s| (s.line, s.column) <= (line, column))
            .max_by_key(|s| (s.line, s.column))
            .or_else(|| self.segments.iter().find(|s| s.line == line))
            .map(|s| s.origin)
            .filter(|at| *at != Location::UNKNOWN)
    }
}

/// Decides how a scalar is shown: `Some(text)` replaces it (a hidden secret), `None`
/// keeps it. It is given the keys that lead to the scalar and its text.
pub type Redact<'a> = &'a dyn Fn(&[&str], &str) -> Option<String>;

/// Writes `entries` as a block mapping (the top level of a document).
pub fn write_mapping(entries: &[(Located<String>, Located<Node>)], redact: Redact) -> Written {
    let mut w = Writer {
        out: Written::default(),
        line: 1,
        path: Vec::new(),
        redact,
    };
    w.mapping(entries, 0);
    w.out
}

struct Writer<'a> {
    out: Written,
    line: u64,
    path: Vec<String>,
    redact: Redact<'a>,
}

impl Writer<'_> {
    fn column(&self) -> u64 {
        let start = self.out.text.rfind('\n').map_or(0, |i| i + 1);
        (self.out.text.len() - start) as u64 + 1
    }

    fn mark(&mut self, origin: Location) {
        let column = self.column();
        self.out.segments.push(Segment {
            line: self.line,
            column,
            origin,
        });
    }

    fn newline(&mut self) {
        self.out.text.push('\n');
        self.line += 1;
    }

    fn mapping(&mut self, entries: &[(Located<String>, Located<Node>)], indent: usize) {
        for (key, value) in entries {
            self.out.text.push_str(&" ".repeat(indent));
            self.mark(key.at);
            self.out.text.push_str(&quote_key(&key.value));
            self.out.text.push(':');
            self.path.push(key.value.clone());
            self.value(value, indent);
            self.path.pop();
        }
    }

    /// A value after `key:` or `-`: on the same line when it is a scalar or empty,
    /// else on the lines below, indented.
    fn value(&mut self, value: &Located<Node>, indent: usize) {
        match &value.value {
            Node::Map(entries) if !entries.is_empty() => {
                self.newline();
                self.mapping(entries, indent + 2);
            }
            Node::Seq(items) if !items.is_empty() => {
                self.newline();
                for item in items {
                    self.out.text.push_str(&" ".repeat(indent + 2));
                    self.mark(item.at);
                    self.out.text.push('-');
                    self.value(item, indent + 2);
                }
            }
            other => {
                self.out.text.push(' ');
                self.mark(value.at);
                let path: Vec<&str> = self.path.iter().map(String::as_str).collect();
                let shown = match other {
                    Node::Map(_) => "{}".to_string(),
                    Node::Seq(_) => "[]".to_string(),
                    Node::Str(s) => match (self.redact)(&path, s) {
                        Some(hidden) => quote(&hidden),
                        None => quote(s),
                    },
                    scalar => {
                        let text = scalar.scalar_text().unwrap_or_default();
                        match (self.redact)(&path, &text) {
                            Some(hidden) => quote(&hidden),
                            None if matches!(scalar, Node::Null) => "null".to_string(),
                            None => text,
                        }
                    }
                };
                self.out.text.push_str(&shown);
                self.newline();
            }
        }
    }
}

/// A mapping key: bare when it is a plain name (`valid_status_codes`, `X-Api-Key`),
/// else quoted.
fn quote_key(s: &str) -> String {
    let plain = s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
    if plain { s.to_string() } else { quote(s) }
}

/// A string as a double-quoted YAML scalar (JSON's escapes, which YAML reads).
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Vec<(Located<String>, Located<Node>)> {
        match serde_saphyr::from_str::<Node>(text).unwrap() {
            Node::Map(entries) => entries,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nodes_keep_their_locations_and_types() {
        let entries = read("a:\n  b: 5s\n  c: [404, '200', true, 1.5, ~]\n");
        let (key, value) = &entries[0];
        assert_eq!(
            (key.value.as_str(), key.at.line(), key.at.column()),
            ("a", 1, 1)
        );
        let Node::Map(inner) = &value.value else {
            panic!()
        };
        assert_eq!((inner[0].1.at.line(), inner[0].1.at.column()), (2, 6));
        let Node::Seq(items) = &inner[1].1.value else {
            panic!()
        };
        let kinds: Vec<&str> = items.iter().map(|i| i.value.kind()).collect();
        assert_eq!(
            kinds,
            ["a number", "a string", "a boolean", "a number", "nothing"]
        );
        assert_eq!((items[2].at.line(), items[2].at.column()), (3, 19));
    }

    #[test]
    fn written_text_reads_back_and_maps_to_the_input() {
        let entries = read("m:\n  list: [x, {k: v}]\n  empty: {}\n  n: 3\n  s: \"a: b\"\n");
        let w = write_mapping(&entries, &|_, _| None);
        assert_eq!(
            w.text,
            "m:\n  list:\n    - \"x\"\n    -\n      k: \"v\"\n  empty: {}\n  \"n\": 3\n  s: \"a: b\"\n"
        );
        let again = read(&w.text);
        let w2 = write_mapping(&again, &|_, _| None);
        assert_eq!(w.text, w2.text);
        // "n: 3" is written on line 7; its value came from line 4, column 6.
        let at = w.origin(7, 8).unwrap();
        assert_eq!((at.line(), at.column()), (4, 6));
        let key = w.origin(7, 3).unwrap();
        assert_eq!((key.line(), key.column()), (4, 3));
    }

    #[test]
    fn redacted_values_are_replaced() {
        let entries = read("headers: {Authorization: Bearer x}\nmethod: GET\n");
        let w = write_mapping(&entries, &|path, _| {
            (path.first() == Some(&"headers")).then(|| "<hidden>".to_string())
        });
        assert!(w.text.contains("Authorization: \"<hidden>\""), "{}", w.text);
        assert!(w.text.contains("method: \"GET\""), "{}", w.text);
    }

    #[test]
    fn anchors_and_duplicates() {
        let entries = read("base: &b {x: 1}\nuse: *b\n");
        assert!(matches!(&entries[1].1.value, Node::Map(m) if m.len() == 1));
        let e = serde_saphyr::from_str::<Node>("a: 1\na: 2\n").unwrap_err();
        assert!(e.to_string().contains("duplicate"), "{e}");
    }
}
