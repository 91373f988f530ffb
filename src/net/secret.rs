//! Files re-read on every use, keeping the last good content while a file cannot be
//! read: rotated service-account tokens, passwords, access tokens, docker configs.
//!
//! A file that is unreadable at start-up is a config error; one that becomes unreadable
//! later (a rotation caught half-way, a volume remounting) must not take a check down,
//! so its last good content serves and a warning says why. Secret text never reaches a
//! log line, a metric or an error: [`Secret`]'s `Debug` hides it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::files::read_capped;
use crate::sync::lock;

/// Largest secret file read.
const SECRET_LIMIT: u64 = 64 << 10;

/// The text of a secret file (trailing newlines removed). `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// Wraps secret text.
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The text, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Turns a file's bytes into its value; the error must not quote the content.
pub type Parse<T> = fn(&[u8]) -> Result<T, String>;

/// A file re-read on every [`Reread::get`], keeping its last good value.
pub struct Reread<T> {
    path: PathBuf,
    /// What the file is, for messages ("bearer token file").
    what: &'static str,
    limit: u64,
    parse: Parse<T>,
    last: Mutex<Arc<T>>,
}

impl<T> fmt::Debug for Reread<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reread")
            .field("path", &self.path)
            .field("what", &self.what)
            .finish_non_exhaustive()
    }
}

impl<T> Reread<T> {
    /// Reads the file now; an error names the file and never its content.
    pub fn open(
        path: PathBuf,
        what: &'static str,
        limit: u64,
        parse: Parse<T>,
    ) -> Result<Reread<T>, String> {
        let value = read_value(&path, limit, parse)?;
        Ok(Reread {
            path,
            what,
            limit,
            parse,
            last: Mutex::new(Arc::new(value)),
        })
    }

    /// Re-reads the file; while it cannot be read (or parsed) the last good value
    /// serves, and a warning naming `check` says why.
    pub fn get(&self, check: &str) -> Arc<T> {
        let mut last = lock(&self.last);
        match read_value(&self.path, self.limit, self.parse) {
            Ok(value) => *last = Arc::new(value),
            Err(e) => log::warn!(
                "check={check} msg=\"cannot re-read the {}; using its last good content\" error={e:?}",
                self.what
            ),
        }
        Arc::clone(&last)
    }

    /// The value last read, without reading the file.
    pub fn last(&self) -> Arc<T> {
        Arc::clone(&lock(&self.last))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn read_value<T>(path: &Path, limit: u64, parse: Parse<T>) -> Result<T, String> {
    let bytes = read_capped(path, limit).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads a secret file once: UTF-8, at most 64 KiB, trailing newlines removed. The
/// error names the file, never its content.
pub fn read_secret(path: &Path) -> Result<Secret, String> {
    read_value(path, SECRET_LIMIT, parse_secret)
}

/// A secret file re-read on every use: UTF-8, at most 64 KiB, trailing newlines removed.
pub fn secret_file(path: PathBuf, what: &'static str) -> Result<Reread<Secret>, String> {
    Reread::open(path, what, SECRET_LIMIT, parse_secret)
}

fn parse_secret(bytes: &[u8]) -> Result<Secret, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    Ok(Secret(text.trim_end_matches(['\n', '\r']).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_good_value_serves_while_the_file_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let secret = secret_file(path.clone(), "token file").unwrap();
        assert_eq!(secret.get("c").expose(), "first");
        std::fs::write(&path, "second\r\n").unwrap();
        assert_eq!(secret.get("c").expose(), "second");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(secret.get("c").expose(), "second");
        assert_eq!(secret.last().expose(), "second");
        assert!(!format!("{:?}", secret.last()).contains("second"));
        let e = secret_file(dir.path().join("missing"), "token file").unwrap_err();
        assert!(e.contains("missing"), "{e}");
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        let e = secret_file(path, "token file").unwrap_err();
        assert!(e.ends_with("not UTF-8"), "{e}");
    }
}
