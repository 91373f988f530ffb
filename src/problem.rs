//! [`Problem`]: one thing wrong with a file sonde reads (the config, the web config, a
//! blackbox config), with where it is: file, line, column and the check it concerns.
//!
//! Every layer that validates input reports through this type, so `--config.check`
//! prints one `sonde: file:line:col: check "name": message` line per problem whoever
//! found it. It imports nothing from the crate.

use std::fmt;

use serde::{Deserialize, Deserializer};
use serde_saphyr::Location;

/// One thing wrong with the configuration, with where it is.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    /// The file it is in; `None` for the built-in default or flags.
    pub file: Option<String>,
    /// 1-based line, 0 when unknown.
    pub line: u64,
    /// 1-based column, 0 when unknown.
    pub column: u64,
    /// The check it concerns.
    pub check: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    /// A problem at a YAML location.
    pub fn at(at: Location, check: Option<&str>, message: impl Into<String>) -> Problem {
        Problem {
            file: None,
            line: at.line(),
            column: at.column(),
            check: check.map(str::to_string),
            message: message.into(),
        }
    }

    /// A problem without a location (flags, I/O).
    pub fn plain(message: impl Into<String>) -> Problem {
        Problem {
            file: None,
            line: 0,
            column: 0,
            check: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}:")?;
            if self.line > 0 {
                write!(f, "{}:{}:", self.line, self.column)?;
            }
            f.write_str(" ")?;
        }
        if let Some(check) = &self.check {
            write!(f, "check {check:?}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Turns a YAML error into a [`Problem`] at its location (also used for the web config).
pub fn yaml_problem(e: &serde_saphyr::Error, check: Option<&str>) -> Problem {
    let message = serde_saphyr::MessageFormatter::format_message(
        &serde_saphyr::DefaultMessageFormatter,
        e.without_snippet(),
    );
    let message: String = message.chars().flat_map(char::escape_default).collect();
    // escape_default turns quotes into \" which reads badly; keep them plain.
    let message = message.replace("\\\"", "\"").replace("\\'", "'");
    let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
    Problem {
        file: None,
        line,
        column,
        check: check.map(str::to_string),
        message,
    }
}

/// Like [`yaml_problem`], in words a person acts on where the YAML library's own would
/// give advice for programmers: a duplicate key names both lines (``key `interval`
/// appears twice (lines 3 and 5)``) and a second document says where it starts. `text` is
/// the document the error came from.
pub fn yaml_problem_in(text: &str, e: &serde_saphyr::Error, check: Option<&str>) -> Problem {
    let mut problem = yaml_problem(e, check);
    let found = match e.without_snippet() {
        serde_saphyr::Error::DuplicateMappingKey { .. } => first_duplicate_key(text),
        serde_saphyr::Error::MultipleDocuments { .. } => second_document(text),
        _ => None,
    };
    if let Some((line, column, message)) = found {
        problem.line = line;
        problem.column = column;
        problem.message = message;
    }
    problem
}

/// The first key written twice in one mapping: where the second one is, and a message
/// naming both lines. Keys that are not plain text (a mapping as a key) are skipped.
fn first_duplicate_key(text: &str) -> Option<(u64, u64, String)> {
    use serde_saphyr::granit_parser::{Event, Parser};
    /// One open collection; a mapping remembers its keys and whether a key comes next.
    enum Frame {
        Sequence,
        Mapping {
            keys: Vec<(String, u64, u64)>,
            key_next: bool,
        },
    }
    let mut stack: Vec<Frame> = Vec::new();
    for item in Parser::new_from_str(text) {
        let (event, span) = item.ok()?;
        let (line, column) = (span.start.line() as u64, span.start.col() as u64 + 1);
        // Whether this event starts a node that is a key of the enclosing mapping.
        let starts_node = matches!(
            event,
            Event::Scalar(..)
                | Event::Alias(_)
                | Event::SequenceStart(..)
                | Event::MappingStart(..)
        );
        let mut is_key = false;
        if starts_node && let Some(Frame::Mapping { key_next, .. }) = stack.last_mut() {
            is_key = *key_next;
            *key_next = !*key_next;
        }
        match event {
            Event::Scalar(value, ..) if is_key => {
                let Some(Frame::Mapping { keys, .. }) = stack.last_mut() else {
                    continue;
                };
                // `<<` merges a mapping in; it may appear more than once.
                if value == "<<" {
                    continue;
                }
                if let Some((_, first_line, first_column)) =
                    keys.iter().find(|(k, _, _)| *k == value)
                {
                    let place = if *first_line == line {
                        format!("line {line}, columns {first_column} and {column}")
                    } else {
                        format!("lines {first_line} and {line}")
                    };
                    return Some((
                        line,
                        column,
                        format!("key `{value}` appears twice ({place}); keep one"),
                    ));
                }
                keys.push((value.into_owned(), line, column));
            }
            Event::SequenceStart(..) => stack.push(Frame::Sequence),
            Event::MappingStart(..) => stack.push(Frame::Mapping {
                keys: Vec::new(),
                key_next: true,
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                stack.pop();
            }
            _ => {}
        }
    }
    None
}

/// Where a second YAML document starts, with a message saying sonde reads one.
fn second_document(text: &str) -> Option<(u64, u64, String)> {
    use serde_saphyr::granit_parser::{Event, Parser};
    let mut documents = 0;
    for item in Parser::new_from_str(text) {
        let Ok((Event::DocumentStart(..), span)) = item else {
            continue;
        };
        documents += 1;
        if documents == 2 {
            let line = span.start.line() as u64;
            return Some((
                line,
                span.start.col() as u64 + 1,
                format!(
                    "a second YAML document starts on line {line}; the file must hold one document (remove the `---` and what follows, or merge them)"
                ),
            ));
        }
    }
    None
}

/// A value read from a YAML file, with where it was written (for problems about it).
///
/// Two `Spanned` are equal when their values are: a config reloaded with a comment added
/// above a check, or written in flow instead of block style, is the same config, and the
/// check keeps running with its counters.
#[derive(Clone, Debug)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where the value (or the alias that referenced it) is written.
    pub referenced: Location,
}

impl<T> Spanned<T> {
    /// A value with its location.
    pub fn new(value: T, referenced: Location) -> Spanned<T> {
        Spanned { value, referenced }
    }
}

impl<T: PartialEq> PartialEq for Spanned<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // serde-saphyr recognises its own Spanned and records the location.
        let located = serde_saphyr::Spanned::<T>::deserialize(deserializer)?;
        Ok(Spanned {
            value: located.value,
            referenced: located.referenced,
        })
    }
}
