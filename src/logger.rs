//! A small logfmt logger on stderr: `ts=… level=… msg="…" key=value`.
//!
//! Only sonde's own records are printed; libraries' records (ureq logs request details)
//! are dropped so nothing they might include, such as headers, reaches the log.

use std::io::Write;
use std::time::SystemTime;

use log::{LevelFilter, Log, Metadata, Record};

use crate::units::rfc3339_millis;
use crate::units::unix_ms;

struct Logger;

static LOGGER: Logger = Logger;

/// Installs the logger at `level`.
pub fn init(level: LevelFilter) {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level() && metadata.target().starts_with("sonde")
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        let level = record.level().as_str().to_ascii_lowercase();
        let ts = rfc3339_millis(unix_ms(SystemTime::now()));
        let line = if message.contains("msg=") {
            format!("ts={ts} level={level} {message}\n")
        } else {
            format!("ts={ts} level={level} msg={message:?}\n")
        };
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}
