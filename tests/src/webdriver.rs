//! A small W3C WebDriver client for driving Debian's headless Chromium in tier 2 (the
//! review page is a browser's business: forms, buttons, what a reviewer actually sees).
//!
//! Deliberately tiny: plain HTTP/1.1 over `std::net::TcpStream` (one connection per
//! command) and `serde_json`, so the static musl test binaries need no HTTP or async
//! stack. [`WebDriver`] owns a `chromedriver` child and one browser session; dropping it
//! deletes the session and kills chromedriver's process group.
//!
//! Chromium missing is a failure with instructions, never a skip: `cargo xtask setup`
//! installs it.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// Debian's chromium-driver package.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Debian's chromium package (a wrapper script that starts the real binary).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Headless, and as root (these machines run tests as root, where Chromium's sandbox
/// refuses to start); no GPU; /dev/shm may be small in containers; a tall window so a
/// screenshot shows a whole page.
const CHROME_ARGS: [&str; 5] = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--window-size=1280,1800",
];

/// The W3C key under which an element reference travels.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long chromedriver may take to answer `/status` with `ready: true`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one command may take (a navigation waits for the page to load).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What went wrong talking to chromedriver or the browser.
#[derive(Debug, thiserror::Error)]
pub enum WebDriverError {
    #[error(
        "{path} does not exist: install Chromium's WebDriver with `cargo xtask setup` \
         (Debian packages chromium and chromium-driver)"
    )]
    NotInstalled { path: &'static str },
    #[error("cannot start {CHROMEDRIVER}: {0}")]
    Spawn(std::io::Error),
    #[error(
        "chromedriver did not become ready within {secs} s: {why}\n--- chromedriver log ---\n{log}"
    )]
    NotReady { secs: u64, why: String, log: String },
    #[error("{method} {path}: {source}")]
    Io {
        method: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{method} {path}: malformed response: {why}")]
    Malformed {
        method: &'static str,
        path: String,
        why: String,
    },
    /// An error the WebDriver protocol reported (`error` is its code, e.g. "no such
    /// element", `message` the driver's explanation).
    #[error("{method} {path}: HTTP {status}, WebDriver error {error:?}: {message}")]
    Protocol {
        method: &'static str,
        path: String,
        status: u16,
        error: String,
        message: String,
    },
}

/// A reference to an element in the current page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    id: String,
}

/// A chromedriver child and one headless Chromium session.
pub struct WebDriver {
    driver: Child,
    port: u16,
    session: String,
    log: PathBuf,
}

impl WebDriver {
    /// Starts chromedriver and a headless Chromium session; panics with the reason
    /// (Chromium not installed, driver not ready, session refused).
    pub fn start() -> Self {
        Self::try_start().unwrap_or_else(|e| panic!("starting headless Chromium: {e}"))
    }

    /// Like [`WebDriver::start`], returning the error.
    pub fn try_start() -> Result<Self, WebDriverError> {
        for path in [CHROMEDRIVER, CHROMIUM] {
            if !Path::new(path).exists() {
                return Err(WebDriverError::NotInstalled { path });
            }
        }
        let port = free_port().map_err(WebDriverError::Spawn)?;
        let log = std::env::temp_dir().join(format!(
            "interceptor-chromedriver-{}-{port}.log",
            std::process::id()
        ));
        let log_file = std::fs::File::create(&log).map_err(WebDriverError::Spawn)?;
        let log_err = log_file.try_clone().map_err(WebDriverError::Spawn)?;
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            // Its own process group, so Drop can end the browser processes with it.
            .process_group(0)
            .spawn()
            .map_err(WebDriverError::Spawn)?;
        let mut wd = Self {
            driver,
            port,
            session: String::new(),
            log,
        };
        wd.wait_ready()?;
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "pageLoadStrategy": "normal",
                    "goog:chromeOptions": { "binary": CHROMIUM, "args": CHROME_ARGS },
                }
            }
        });
        let created = wd.request("POST", "/session", Some(&caps))?;
        wd.session = created["sessionId"]
            .as_str()
            .ok_or_else(|| WebDriverError::Malformed {
                method: "POST",
                path: "/session".into(),
                why: format!("no sessionId in {created}"),
            })?
            .to_string();
        Ok(wd)
    }

    fn wait_ready(&mut self) -> Result<(), WebDriverError> {
        let start = Instant::now();
        let mut last = String::from("no answer yet");
        while start.elapsed() < START_TIMEOUT {
            if let Ok(Some(status)) = self.driver.try_wait() {
                return Err(self.not_ready(format!("chromedriver exited ({status})")));
            }
            match self.request("GET", "/status", None) {
                Ok(v) if v["ready"] == true => return Ok(()),
                Ok(v) => last = format!("/status says {v}"),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(self.not_ready(last))
    }

    fn not_ready(&self, why: String) -> WebDriverError {
        WebDriverError::NotReady {
            secs: START_TIMEOUT.as_secs(),
            why,
            log: std::fs::read_to_string(&self.log).unwrap_or_default(),
        }
    }

    /// The port chromedriver listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sends one WebDriver command for this session: `path` is relative to
    /// `/session/{id}` (e.g. `/url`). Returns the response's `value`.
    pub fn command(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, WebDriverError> {
        self.request(method, &format!("/session/{}{path}", self.session), body)
    }

    /// Like [`WebDriver::command`], panicking with the error.
    fn must(&self, method: &'static str, path: &str, body: Option<&Value>) -> Value {
        self.command(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver: {e}"))
    }

    /// Loads `url` and waits for the page to finish loading.
    pub fn navigate(&self, url: &str) {
        self.must("POST", "/url", Some(&json!({ "url": url })));
    }

    /// The URL of the current page.
    pub fn current_url(&self) -> String {
        string(self.must("GET", "/url", None))
    }

    /// The first element matching the CSS selector; panics if there is none.
    pub fn find(&self, css: &str) -> Element {
        self.try_find(css)
            .unwrap_or_else(|e| panic!("find {css:?}: {e}"))
    }

    /// The first element matching the CSS selector (`Protocol { error: "no such element" }`
    /// when there is none).
    pub fn try_find(&self, css: &str) -> Result<Element, WebDriverError> {
        let v = self.command(
            "POST",
            "/element",
            Some(&json!({ "using": "css selector", "value": css })),
        )?;
        element(&v).ok_or_else(|| WebDriverError::Malformed {
            method: "POST",
            path: "/element".into(),
            why: format!("no element reference in {v}"),
        })
    }

    /// Every element matching the CSS selector, in document order.
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        let v = self.must(
            "POST",
            "/elements",
            Some(&json!({ "using": "css selector", "value": css })),
        );
        v.as_array()
            .map(|a| a.iter().filter_map(element).collect())
            .unwrap_or_default()
    }

    /// The element's rendered text (what a reader sees; hidden elements give "").
    pub fn text(&self, el: &Element) -> String {
        string(self.must(
            "GET",
            &format!("/element/{}/text", path_segment(&el.id)),
            None,
        ))
    }

    /// The element's attribute `name`, `None` when it has none.
    pub fn attribute(&self, el: &Element, name: &str) -> Option<String> {
        let path = format!(
            "/element/{}/attribute/{}",
            path_segment(&el.id),
            path_segment(name)
        );
        self.must("GET", &path, None).as_str().map(String::from)
    }

    /// Clicks the element (scrolling it into view first, as a user would).
    pub fn click(&self, el: &Element) {
        self.must(
            "POST",
            &format!("/element/{}/click", path_segment(&el.id)),
            Some(&json!({})),
        );
    }

    /// Empties an input or textarea.
    pub fn clear(&self, el: &Element) {
        self.must(
            "POST",
            &format!("/element/{}/clear", path_segment(&el.id)),
            Some(&json!({})),
        );
    }

    /// Types `text` into the element, key by key.
    pub fn send_keys(&self, el: &Element, text: &str) {
        self.must(
            "POST",
            &format!("/element/{}/value", path_segment(&el.id)),
            Some(&json!({ "text": text })),
        );
    }

    /// The current page's HTML, as the browser serialises its DOM.
    pub fn page_source(&self) -> String {
        string(self.must("GET", "/source", None))
    }

    /// A PNG of the viewport.
    pub fn screenshot_png(&self) -> Vec<u8> {
        let b64 = string(self.must("GET", "/screenshot", None));
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .unwrap_or_else(|e| panic!("WebDriver screenshot is not base64: {e}"))
    }

    /// Saves a screenshot as `<artifacts dir>/<name>.png`, prints and returns its path.
    pub fn save_screenshot(&self, name: &str) -> PathBuf {
        let dir = artifacts_dir();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, self.screenshot_png())
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        println!("screenshot: {}", path.display());
        path
    }

    /// Polls `probe` until it gives a value, for up to `within`; panics naming `what`.
    pub fn wait_for<T>(
        &self,
        what: &str,
        within: Duration,
        mut probe: impl FnMut(&Self) -> Option<T>,
    ) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = probe(self) {
                return v;
            }
            if start.elapsed() > within {
                panic!(
                    "timed out after {within:?} waiting for {what} (page: {})",
                    self.current_url()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One HTTP/1.1 exchange with chromedriver; returns the JSON body's `value`.
    fn request(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, WebDriverError> {
        let io = |source| WebDriverError::Io {
            method,
            path: path.to_string(),
            source,
        };
        let malformed = |why: String| WebDriverError::Malformed {
            method,
            path: path.to_string(),
            why,
        };
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).map_err(io)?;
        stream.set_read_timeout(Some(COMMAND_TIMEOUT)).map_err(io)?;
        stream
            .set_write_timeout(Some(COMMAND_TIMEOUT))
            .map_err(io)?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\
             Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\
             Accept: application/json\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        );
        stream.write_all(head.as_bytes()).map_err(io)?;
        stream.write_all(body.as_bytes()).map_err(io)?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        let (status, payload) = loop {
            let n = stream.read(&mut buf).map_err(io)?;
            raw.extend_from_slice(&buf[..n]);
            if let Some(done) = parse_response(&raw, n == 0).map_err(malformed)? {
                break done;
            }
        };
        let json: Value = serde_json::from_slice(&payload).map_err(|e| {
            malformed(format!(
                "HTTP {status}, body is not JSON ({e}): {}",
                String::from_utf8_lossy(&payload)
            ))
        })?;
        let value = json.get("value").cloned().unwrap_or(Value::Null);
        if !(200..300).contains(&status) || value.get("error").is_some_and(Value::is_string) {
            return Err(WebDriverError::Protocol {
                method,
                path: path.to_string(),
                status,
                error: value["error"].as_str().unwrap_or("(none)").to_string(),
                message: value["message"].as_str().unwrap_or("(none)").to_string(),
            });
        }
        Ok(value)
    }
}

impl Drop for WebDriver {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.request("DELETE", &format!("/session/{}", self.session), None);
        }
        // The whole group: chromedriver and any browser process a failed session left.
        let pgid = self.driver.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid signals the process group we created.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.driver.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Where tests put what a human may want to look at afterwards (screenshots):
/// `INTERCEPTOR_TEST_ARTIFACTS` (set by `cargo xtask test`), else `target/test-artifacts`
/// under the current directory (xtask runs tests from the workspace root).
pub fn artifacts_dir() -> PathBuf {
    match std::env::var_os("INTERCEPTOR_TEST_ARTIFACTS") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("."))
            .join("target/test-artifacts"),
    }
}

/// A port nobody listens on right now (the kernel's pick; released before chromedriver
/// binds it, which is good enough on a test machine).
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

fn element(v: &Value) -> Option<Element> {
    v.get(ELEMENT_KEY)
        .and_then(Value::as_str)
        .map(|id| Element { id: id.to_string() })
}

fn string(v: Value) -> String {
    match v {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `name` percent-encoded for use as one URL path segment.
fn path_segment(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The status code and body of a raw HTTP/1.1 response, once `raw` holds all of it
/// (`Ok(None)`: read more). chromedriver keeps connections open whatever the request
/// says, so the body's end comes from Content-Length or chunking, and only without
/// either from the end of the connection (`eof`).
fn parse_response(raw: &[u8], eof: bool) -> Result<Option<(u16, Vec<u8>)>, String> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if eof {
            Err(format!("no end of headers in {} bytes", raw.len()))
        } else {
            Ok(None)
        };
    };
    let head = String::from_utf8_lossy(&raw[..end]);
    let body = &raw[end + 4..];
    let status_line = head.split("\r\n").next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let truncated = |what: String| {
        if eof { Err(what) } else { Ok(None) }
    };
    if header("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
        return match dechunk(body)? {
            Some(b) => Ok(Some((status, b))),
            None => truncated("connection closed inside a chunked body".into()),
        };
    }
    match header("content-length") {
        Some(len) => {
            let len: usize = len
                .parse()
                .map_err(|_| format!("bad Content-Length {len:?}"))?;
            match body.get(..len) {
                Some(b) => Ok(Some((status, b.to_vec()))),
                None => truncated(format!("body has {} of {len} bytes", body.len())),
            }
        }
        None if eof => Ok(Some((status, body.to_vec()))),
        None => Ok(None),
    }
}

/// A chunked body decoded; `Ok(None)` while the last chunk has not arrived.
fn dechunk(mut body: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = body.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text = String::from_utf8_lossy(&body[..eol]);
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("bad chunk size {size_hex:?}"))?;
        body = &body[eol + 2..];
        if size == 0 {
            return Ok(Some(out));
        }
        let Some(chunk) = body.get(..size) else {
            return Ok(None);
        };
        out.extend_from_slice(chunk);
        let Some(rest) = body.get(size + 2..) else {
            return Ok(None);
        };
        body = rest;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_responses_without_waiting_for_the_connection_to_close() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length:13\r\n\r\n{\"value\":1}\r\n";
        assert_eq!(
            parse_response(r, false).unwrap(),
            Some((200, b"{\"value\":1}\r\n".to_vec()))
        );
        assert_eq!(parse_response(&r[..r.len() - 1], false).unwrap(), None);
        assert!(parse_response(&r[..r.len() - 1], true).is_err());
        assert_eq!(parse_response(&r[..20], false).unwrap(), None);

        let r = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n2;x=y\r\nef\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(r, false).unwrap(),
            Some((404, b"abcdef".to_vec()))
        );
        for cut in [60, 65, 70, r.len() - 5] {
            assert_eq!(parse_response(&r[..cut], false).unwrap(), None, "cut {cut}");
        }

        let r = b"HTTP/1.1 500 Oops\r\nConnection: close\r\n\r\nbody";
        assert_eq!(parse_response(r, false).unwrap(), None);
        assert_eq!(
            parse_response(r, true).unwrap(),
            Some((500, b"body".to_vec()))
        );
        assert!(parse_response(b"garbage\r\n\r\n", false).is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n", true).is_err());
    }

    #[test]
    fn encodes_path_segments() {
        assert_eq!(path_segment("data-outcome"), "data-outcome");
        assert_eq!(path_segment("a b/c"), "a%20b%2Fc");
    }
}
