//! Debian's headless Chromium driven by the status page tests: `--dump-dom` for the
//! rendered DOM, and the DevTools protocol over `--remote-debugging-pipe` for what the
//! DOM cannot tell (layout widths, full-page screenshots at a given width).
//!
//! The pipe needs no port, no WebSocket client and no extra crate: Chromium reads
//! NUL-terminated JSON commands on fd 3 and answers on fd 4, which a `bash -c exec`
//! maps to the child's stdin and stdout. Every wait is bounded.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// Flags every run needs here: no sandbox (tests may run as root), and nothing that
/// reaches for the network on its own (this machine refuses outside connections).
fn base_flags(profile: &Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--no-first-run",
        "--no-default-browser-check",
        "--hide-scrollbars",
        "--mute-audio",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

/// The program: `$CHROMIUM` when set, else Debian's `chromium`.
fn program() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

/// Runs Chromium to completion with `extra` flags (at most 60 s); returns stdout.
fn run(profile: &Path, extra: &[String]) -> String {
    let mut child = Command::new(program())
        .args(base_flags(profile))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("chromium (Debian package chromium) must be installed; scripts/test.sh installs it: {e}")
        });
    let mut pipe = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = pipe.read_to_string(&mut out);
        out
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {extra:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    reader.join().expect("stdout reader")
}

/// The DOM of `url` after load, serialized (`--dump-dom`); `extra` adds flags such as
/// `--ignore-certificate-errors`.
pub fn dump_dom(profile: &Path, url: &str, extra: &[&str]) -> String {
    let mut flags: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    flags.push("--dump-dom".into());
    flags.push(url.into());
    run(profile, &flags)
}

/// A Chromium controlled over the DevTools pipe, with one page attached.
pub struct Browser {
    child: Child,
    commands: ChildStdin,
    messages: Receiver<Value>,
    next_id: u64,
    session: String,
}

impl Browser {
    /// Starts Chromium and opens a blank page.
    pub fn start(profile: &Path) -> Browser {
        let mut flags = base_flags(profile);
        flags.push("--remote-debugging-pipe".into());
        // fd 3 is where Chromium reads commands, fd 4 where it answers; its own
        // stdout and stderr go nowhere.
        let mut child = Command::new("bash")
            .arg("-c")
            .arg("exec \"$0\" \"$@\" 3<&0 4>&1 >/dev/null 2>/dev/null")
            .arg(program())
            .args(&flags)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium through bash");
        let commands = child.stdin.take().expect("stdin");
        let answers = child.stdout.take().expect("stdout");
        let (tx, messages) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(answers);
            loop {
                let mut raw = Vec::new();
                match reader.read_until(0, &mut raw) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                raw.pop_if(|b| *b == 0);
                if let Ok(v) = serde_json::from_slice::<Value>(&raw)
                    && tx.send(v).is_err()
                {
                    break;
                }
            }
        });
        let mut browser = Browser {
            child,
            commands,
            messages,
            next_id: 0,
            session: String::new(),
        };
        let target = browser.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = browser.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        browser.page("Page.enable", json!({}));
        browser
    }

    /// Sends a command and waits (at most 30 s) for its answer; panics on an error.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            message["sessionId"] = json!(s);
        }
        let mut bytes = message.to_string().into_bytes();
        bytes.push(0);
        self.commands.write_all(&bytes).expect("write to chromium");
        self.commands.flush().expect("flush");
        let m = self.wait_for(&format!("an answer to {method}"), |m| {
            m["id"].as_u64() == Some(id)
        });
        if let Some(e) = m.get("error") {
            panic!("{method} failed: {e}");
        }
        m["result"].clone()
    }

    /// The first message (answer or event) that `wanted` accepts, within 30 s.
    fn wait_for(&self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self
                .messages
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {what} within 30 s"));
            if wanted(&m) {
                return m;
            }
        }
    }

    /// A command to the attached page.
    fn page(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.call(Some(&session), method, params)
    }

    /// Sets the viewport to `width` x `height` CSS pixels (a phone when `mobile`).
    pub fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.page(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
    }

    /// Emulates `prefers-color-scheme: dark` (or light).
    pub fn dark(&mut self, dark: bool) {
        let value = if dark { "dark" } else { "light" };
        self.page(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": value}]}),
        );
    }

    /// Loads `url` and waits (at most 30 s) for its load event.
    pub fn navigate(&mut self, url: &str) {
        self.page("Page.navigate", json!({"url": url}));
        self.wait_for(&format!("load event of {url}"), |m| {
            m["method"] == "Page.loadEventFired"
        });
    }

    /// Evaluates a JavaScript expression in the page (DevTools is not bound by the
    /// page's Content-Security-Policy) and returns its value.
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.page(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expression} threw: {e}");
        }
        r["result"]["value"].clone()
    }

    /// A PNG of the whole page at the current width.
    pub fn screenshot(&mut self) -> Vec<u8> {
        let r = self.page(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let data = r["data"].as_str().expect("screenshot data");
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("screenshot in base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Width and height of a PNG, from its IHDR chunk.
pub fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(png[20..24].try_into().unwrap());
    (w, h)
}
