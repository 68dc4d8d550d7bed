//! A local HTTP receiver standing in for the far end of the approval channels (a
//! webhook receiver, Slack's and Teams' incoming webhooks), and the checks that what
//! arrived has the documented shape.
//!
//! [`Receiver`] listens on 127.0.0.1 (any free port), records every request (method,
//! path, headers, raw body, arrival time) and answers `200 ok`, or what
//! [`Receiver::answer_next`] told it to for the next N requests, so a test can drive the
//! daemon's retries. Plain HTTP/1.1 over `std::net`, one thread per connection and
//! `Connection: close`, like [`crate::webdriver`]: the static test binaries need no async
//! stack.
//!
//! The checks ([`check_webhook`], [`check_slack`], [`check_teams`]) are written from the
//! formats' own documentation, not from the daemon's code, so they catch the daemon
//! drifting from what receivers are promised:
//! - the generic webhook: docs/approvals.md ("Generic webhook", "Verifying a delivery"),
//!   the signature recomputed here with `hmac`/`sha2`;
//! - Slack: Block Kit's reference (<https://docs.slack.dev/reference/block-kit/blocks>,
//!   block elements, composition objects) for the limits, and docs/approvals.md for what
//!   the message must carry (Approve / Deny buttons, no links);
//! - Teams: "Send Adaptive Cards using an incoming webhook"
//!   (<https://learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using>)
//!   for the message envelope and the 28 KB limit, the Adaptive Card schema
//!   (<https://adaptivecards.io/explorer/>) for the card, and docs/approvals.md for the
//!   buttons (each opens a review page: `Action.OpenUrl`, the only action a webhook card
//!   can carry).

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac as _};
use serde_json::Value;
use sha2::Sha256;

/// Request line and headers: far more than any channel sends.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// A body: the generic webhook carries argv uncut, so leave room.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// A client that connects and sends nothing is dropped after this.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// docs/approvals.md: refuse a timestamp more than 5 minutes from the receiver's clock.
pub const WEBHOOK_WINDOW_SECS: u64 = 300;
/// Teams: "The size of the message is limited to 28 KB"; more is refused.
pub const TEAMS_MAX_BYTES: usize = 28_000;

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// The request target (`/slack/T0/B0`), query included.
    pub path: String,
    /// In arrival order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The raw body, byte for byte (signatures are over these bytes).
    pub body: Vec<u8>,
    /// Wall clock at arrival (signature freshness is judged against it).
    pub at: SystemTime,
    /// Monotonic arrival time, for measuring waits between retries.
    pub arrived: Instant,
    /// The status the receiver answered with.
    pub answered: u16,
}

impl Received {
    /// The first header called `name`, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the receiver answers a request with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// `status` with a short body (Slack answers `ok`, Teams `1` or nothing).
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: if status == 200 {
                "ok".into()
            } else {
                String::new()
            },
        }
    }

    /// Adds a header, e.g. `Retry-After`.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: &str) -> Self {
        self.body = body.into();
        self
    }
}

/// Why [`Receiver::next`] has no request to give.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("no request arrived within {0:?}")]
    Timeout(Duration),
    /// Something connected and sent what is not an HTTP/1.1 request the receiver reads.
    #[error("a malformed HTTP request arrived: {0}")]
    Http(String),
}

#[derive(Default)]
struct State {
    /// Arrived, not yet taken by `next`.
    queue: VecDeque<Result<Received, String>>,
    /// Scripted answers for the next requests, in order.
    replies: VecDeque<Reply>,
    /// Requests answered so far.
    count: usize,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    arrived: Condvar,
}

/// The local receiver; stops listening when dropped.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Listens on 127.0.0.1 on a free port.
    pub fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the receiver");
        let addr = listener.local_addr().expect("receiver address");
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (shared, stop) = (Arc::clone(&shared), Arc::clone(&stop));
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let shared = Arc::clone(&shared);
                    std::thread::spawn(move || serve(stream, &shared));
                }
            })
        };
        Receiver {
            addr,
            shared,
            stop,
            accept: Some(accept),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` + `path` (which starts with `/`): a channel's URL.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers the next `n` requests with `reply` (after any answers already queued);
    /// requests after them get `200 ok` again.
    pub fn answer_next(&self, n: usize, reply: Reply) {
        let mut state = self.shared.state.lock().unwrap();
        state.replies.extend(std::iter::repeat_n(reply, n));
    }

    /// The oldest request not yet taken, waiting up to `timeout` for one to arrive.
    pub fn next(&self, timeout: Duration) -> Result<Received, ReceiveError> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.state.lock().unwrap();
        loop {
            if let Some(got) = state.queue.pop_front() {
                return got.map_err(ReceiveError::Http);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReceiveError::Timeout(timeout));
            }
            state = self.shared.arrived.wait_timeout(state, left).unwrap().0;
        }
    }

    /// Requests answered so far (taken or not).
    pub fn count(&self) -> usize {
        self.shared.state.lock().unwrap().count
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees `stop`.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Reads one request, records it and answers it, then closes the connection.
fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let read = read_request(BufReader::new(stream));
    let mut state = shared.state.lock().unwrap();
    let reply = match &read {
        Ok(_) => state
            .replies
            .pop_front()
            .unwrap_or_else(|| Reply::status(200)),
        Err(Some(_)) => Reply::status(400),
        // The connection closed before a request: the drop's wake-up, or a port probe.
        Err(None) => return,
    };
    let entry = match read {
        Ok(mut r) => {
            r.answered = reply.status;
            Ok(r)
        }
        Err(why) => Err(why.unwrap_or_default()),
    };
    state.count += 1;
    state.queue.push_back(entry);
    drop(state);
    shared.arrived.notify_all();
    let _ = respond(write_half, &reply);
}

/// One HTTP/1.1 request with a `Content-Length` body. `Err(None)` when the connection
/// closed before anything arrived.
fn read_request(mut reader: BufReader<TcpStream>) -> Result<Received, Option<String>> {
    let mut head_bytes = 0;
    let mut line = String::new();
    let mut read_line = |line: &mut String| -> Result<usize, String> {
        line.clear();
        let n = reader
            .by_ref()
            .take((MAX_HEAD_BYTES - head_bytes) as u64)
            .read_line(line)
            .map_err(|e| format!("reading the request head: {e}"))?;
        head_bytes += n;
        if head_bytes >= MAX_HEAD_BYTES {
            return Err(format!("request head over {MAX_HEAD_BYTES} bytes"));
        }
        Ok(n)
    };
    if read_line(&mut line).map_err(Some)? == 0 {
        return Err(None);
    }
    let at = SystemTime::now();
    let arrived = Instant::now();
    let mut parts = line.trim_end().splitn(3, ' ');
    let (method, path, version) = (parts.next(), parts.next(), parts.next());
    let (Some(method), Some(path), Some("HTTP/1.1")) = (method, path, version) else {
        return Err(Some(format!("not an HTTP/1.1 request line: {line:?}")));
    };
    let (method, path) = (method.to_string(), path.to_string());
    let mut headers = Vec::new();
    loop {
        if read_line(&mut line).map_err(Some)? == 0 {
            return Err(Some("the connection closed inside the headers".into()));
        }
        let header = line.trim_end_matches(['\r', '\n']);
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(Some(format!("not a header line: {header:?}")));
        };
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let mut request = Received {
        method,
        path,
        headers,
        body: Vec::new(),
        at,
        arrived,
        answered: 0,
    };
    if request.header("transfer-encoding").is_some() {
        return Err(Some(
            "a Transfer-Encoding body; the channels' requests carry Content-Length".into(),
        ));
    }
    let length: usize = match request.header("content-length") {
        None => 0,
        Some(v) => v
            .parse()
            .map_err(|_| Some(format!("Content-Length {v:?} is not a number")))?,
    };
    if length > MAX_BODY_BYTES {
        return Err(Some(format!(
            "a body of {length} bytes, over {MAX_BODY_BYTES}"
        )));
    }
    request.body = vec![0; length];
    reader
        .read_exact(&mut request.body)
        .map_err(|e| Some(format!("reading a {length}-byte body: {e}")))?;
    Ok(request)
}

fn respond(mut stream: TcpStream, reply: &Reply) -> std::io::Result<()> {
    let reason = match reply.status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        404 => "Not Found",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut out = format!("HTTP/1.1 {} {reason}\r\n", reply.status);
    for (k, v) in &reply.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        reply.body.len(),
        reply.body
    ));
    stream.write_all(out.as_bytes())?;
    stream.flush()
}

/// A payload that is not what its channel documents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{channel} payload: {problem}")]
pub struct ShapeError {
    /// `webhook`, `slack` or `teams`.
    pub channel: &'static str,
    pub problem: String,
}

/// What a checked payload says, for the test's own assertions.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// The approval request it is about.
    pub request_id: u64,
    /// The review links it carries (none for Slack).
    pub links: Vec<String>,
    /// The parsed body.
    pub json: Value,
}

/// Checks a generic webhook delivery (docs/approvals.md, "Generic webhook"): a signed
/// `POST` of JSON whose signature verifies with `secret` and whose timestamp is within
/// [`WEBHOOK_WINDOW_SECS`] of the arrival, carrying every documented field with its
/// documented type.
pub fn check_webhook(r: &Received, secret: &[u8]) -> Result<Checked, ShapeError> {
    let fail = |problem: String| ShapeError {
        channel: "webhook",
        problem,
    };
    // The raw bytes first, as the docs tell receivers: nothing unverified is parsed.
    verify_signature(r, secret).map_err(fail)?;
    let json = json_post(r).map_err(fail)?;
    webhook_body(&json).map_err(fail)
}

/// `X-Interceptor-Timestamp` and `X-Interceptor-Signature` as "Verifying a delivery"
/// describes: a whole number of seconds within 5 minutes of the arrival, and `v1=` + the
/// lowercase hex HMAC-SHA256 of `v1:<timestamp>:<body>`.
fn verify_signature(r: &Received, secret: &[u8]) -> Result<(), String> {
    let timestamp = r
        .header("X-Interceptor-Timestamp")
        .ok_or("no X-Interceptor-Timestamp header")?;
    if timestamp.is_empty() || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "X-Interceptor-Timestamp {timestamp:?} is not whole seconds"
        ));
    }
    let signed_at: u64 = timestamp
        .parse()
        .map_err(|_| format!("X-Interceptor-Timestamp {timestamp:?} is out of range"))?;
    let arrival = r.at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if signed_at.abs_diff(arrival) > WEBHOOK_WINDOW_SECS {
        return Err(format!(
            "signed at {signed_at}, {}s from its arrival at {arrival} (window {WEBHOOK_WINDOW_SECS}s)",
            signed_at.abs_diff(arrival)
        ));
    }
    let signature = r
        .header("X-Interceptor-Signature")
        .ok_or("no X-Interceptor-Signature header")?;
    let digest = signature
        .strip_prefix("v1=")
        .filter(|d| d.len() == 64 && d.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .ok_or_else(|| {
            format!("X-Interceptor-Signature {signature:?} is not v1=<64 lowercase hex digits>")
        })?;
    let digest = hex::decode(digest).map_err(|e| e.to_string())?;
    webhook_mac(secret, timestamp, &r.body)
        .verify_slice(&digest)
        .map_err(|_| "the signature does not verify with the shared secret".to_string())
}

/// HMAC-SHA256 over `v1:<timestamp>:<body>`, keyed with the channel's secret.
fn webhook_mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(b"v1:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac
}

/// The version 1 body, field by field as docs/approvals.md lists it. Unknown fields are
/// allowed: "Version 1 only ever gains fields".
fn webhook_body(json: &Value) -> Result<Checked, String> {
    if json["type"] != "interceptor.approval_request" {
        return Err(format!(
            "type is {}, not \"interceptor.approval_request\"",
            json["type"]
        ));
    }
    if json["version"] != 1 {
        return Err(format!("version is {}, not 1", json["version"]));
    }
    string(json, "summary")?;
    let request_id = uint(json, "request.id")?;
    for path in ["host", "agent", "target", "exe", "command", "cwd", "rule"] {
        string(json, &format!("request.{path}"))?;
    }
    let operation = string(json, "request.operation")?;
    if !matches!(operation, "exec" | "open") {
        return Err(format!(
            "request.operation is {operation:?}, not exec or open"
        ));
    }
    for access in strings(json, "request.access")? {
        if !matches!(access, "read" | "write") {
            return Err(format!(
                "request.access holds {access:?}, not read or write"
            ));
        }
    }
    for path in ["pid", "uid"] {
        uint(json, &format!("request.{path}"))?;
    }
    for path in ["argv", "env", "recent", "controls"] {
        strings(json, &format!("request.{path}"))?;
    }
    for path in ["user", "reason", "severity"] {
        let v = field(json, &format!("request.{path}"))?;
        if !(v.is_null() || v.is_string()) {
            return Err(format!("request.{path} is {v}, not a string or null"));
        }
    }
    for (i, parent) in array(json, "request.parents")?.iter().enumerate() {
        uint(parent, "pid").map_err(|e| format!("request.parents[{i}].{e}"))?;
        string(parent, "exe").map_err(|e| format!("request.parents[{i}].{e}"))?;
        strings(parent, "argv").map_err(|e| format!("request.parents[{i}].{e}"))?;
    }
    let rationale = field(json, "request.rationale")?;
    if !rationale.is_null() {
        string(json, "request.rationale.text")?;
        if rationale["verified"] != false {
            return Err(format!(
                "request.rationale.verified is {}, not false (the agent wrote it)",
                rationale["verified"]
            ));
        }
    }
    if !field(json, "request.grant")?.is_null() {
        uint(json, "request.grant.max_ttl_secs")?;
        uint(json, "request.grant.max_uses")?;
    }
    let mut links = Vec::new();
    for (i, link) in array(json, "links")?.iter().enumerate() {
        string(link, "reviewer").map_err(|e| format!("links[{i}].{e}"))?;
        let url = string(link, "url").map_err(|e| format!("links[{i}].{e}"))?;
        if !is_http_url(url) {
            return Err(format!("links[{i}].url {url:?} is not an http(s) URL"));
        }
        links.push(url.to_string());
    }
    for path in ["requested_at", "expires_at"] {
        let stamp = string(json, path)?;
        if !is_rfc3339_millis(stamp) {
            return Err(format!("{path} {stamp:?} is not YYYY-MM-DDTHH:MM:SS.mmmZ"));
        }
    }
    let requested = uint(json, "requested_at_ms")?;
    let expires = uint(json, "expires_at_ms")?;
    if expires < requested {
        return Err(format!(
            "expires_at_ms {expires} is before requested_at_ms {requested}"
        ));
    }
    string(json, "on_timeout")?;
    Ok(Checked {
        request_id,
        links,
        json: json.clone(),
    })
}

/// Checks a Slack incoming-webhook message: Block Kit within Slack's limits, an
/// `actions` block with the Approve and Deny buttons (`action_id`s `interceptor_approve`
/// and `interceptor_deny`, `value` the request id), a section with the command, the
/// `text` fallback, no links and no unfurling (docs/approvals.md, "Slack").
pub fn check_slack(r: &Received) -> Result<Checked, ShapeError> {
    let fail = |problem: String| ShapeError {
        channel: "slack",
        problem,
    };
    let json = json_post(r).map_err(fail)?;
    slack_message(&json).map_err(fail)
}

/// Block Kit reference limits (blocks, block elements, composition objects).
mod block_kit {
    /// Blocks in one message.
    pub const BLOCKS: usize = 50;
    /// `header` block text.
    pub const HEADER_TEXT: usize = 150;
    /// `section` block text.
    pub const SECTION_TEXT: usize = 3000;
    /// `section` fields: how many, and each one's text.
    pub const SECTION_FIELDS: usize = 10;
    pub const FIELD_TEXT: usize = 2000;
    /// `context` block elements.
    pub const CONTEXT_ELEMENTS: usize = 10;
    /// `actions` block elements.
    pub const ACTION_ELEMENTS: usize = 25;
    /// Button text, `action_id`, `value`.
    pub const BUTTON_TEXT: usize = 75;
    pub const ACTION_ID: usize = 255;
    pub const BUTTON_VALUE: usize = 2000;
}

fn slack_message(json: &Value) -> Result<Checked, String> {
    let fallback = string(json, "text")?;
    if fallback.trim().is_empty() {
        return Err("text (the notification fallback) is empty".into());
    }
    if json.get("channel").is_some() {
        return Err("a channel key: an incoming webhook posts to its own channel".into());
    }
    for key in ["unfurl_links", "unfurl_media"] {
        if json[key] != false {
            return Err(format!("{key} is {}, not false", json[key]));
        }
    }
    let blocks = array(json, "blocks")?;
    if blocks.is_empty() || blocks.len() > block_kit::BLOCKS {
        return Err(format!(
            "{} blocks; a message has 1 to {}",
            blocks.len(),
            block_kit::BLOCKS
        ));
    }
    let mut command = false;
    let mut buttons = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        let at = |e: String| format!("blocks[{i}]: {e}");
        match string(block, "type").map_err(at)? {
            "header" => {
                text_object(&block["text"], &["plain_text"], block_kit::HEADER_TEXT).map_err(at)?;
            }
            "section" => {
                let has_text = block.get("text").is_some();
                if has_text {
                    let text = text_object(
                        &block["text"],
                        &["plain_text", "mrkdwn"],
                        block_kit::SECTION_TEXT,
                    )
                    .map_err(at)?;
                    command |= ["*Command*\n```", "*Opened by*\n```"]
                        .iter()
                        .any(|label| text.starts_with(label));
                }
                match block.get("fields") {
                    None if !has_text => return Err(at("a section without text or fields".into())),
                    None => {}
                    Some(fields) => {
                        let fields = fields
                            .as_array()
                            .ok_or_else(|| at("fields is not an array".into()))?;
                        if fields.is_empty() || fields.len() > block_kit::SECTION_FIELDS {
                            return Err(at(format!(
                                "{} fields; a section has 1 to {}",
                                fields.len(),
                                block_kit::SECTION_FIELDS
                            )));
                        }
                        for f in fields {
                            text_object(f, &["plain_text", "mrkdwn"], block_kit::FIELD_TEXT)
                                .map_err(at)?;
                        }
                    }
                }
            }
            "context" => {
                let elements = array(block, "elements").map_err(at)?;
                if elements.is_empty() || elements.len() > block_kit::CONTEXT_ELEMENTS {
                    return Err(at(format!(
                        "{} context elements; 1 to {}",
                        elements.len(),
                        block_kit::CONTEXT_ELEMENTS
                    )));
                }
                for e in elements {
                    text_object(e, &["plain_text", "mrkdwn"], block_kit::SECTION_TEXT)
                        .map_err(at)?;
                }
            }
            "actions" => {
                let elements = array(block, "elements").map_err(at)?;
                if elements.is_empty() || elements.len() > block_kit::ACTION_ELEMENTS {
                    return Err(at(format!(
                        "{} action elements; 1 to {}",
                        elements.len(),
                        block_kit::ACTION_ELEMENTS
                    )));
                }
                for (j, e) in elements.iter().enumerate() {
                    buttons.push(button(e).map_err(|e| at(format!("elements[{j}]: {e}")))?);
                }
            }
            "divider" => {}
            other => return Err(at(format!("unexpected block type {other:?}"))),
        }
    }
    if !command {
        return Err("no section starts with *Command* or *Opened by* and a code block".into());
    }
    let find = |id: &str| -> Result<&str, String> {
        let mut found = buttons.iter().filter(|(action, _)| *action == id);
        match (found.next(), found.next()) {
            (Some((_, value)), None) => Ok(value),
            (None, _) => Err(format!("no button with action_id {id:?}")),
            (Some(_), Some(_)) => Err(format!("two buttons with action_id {id:?}")),
        }
    };
    let approve = find("interceptor_approve")?;
    let deny = find("interceptor_deny")?;
    if approve != deny {
        return Err(format!(
            "the buttons name different requests: approve {approve:?}, deny {deny:?}"
        ));
    }
    let request_id = approve
        .parse()
        .map_err(|_| format!("the buttons' value {approve:?} is not a request id"))?;
    Ok(Checked {
        request_id,
        links: Vec::new(),
        json: json.clone(),
    })
}

/// A Block Kit text object of one of `types`, at most `max` long; its text.
fn text_object<'a>(v: &'a Value, types: &[&str], max: usize) -> Result<&'a str, String> {
    let kind = string(v, "type")?;
    if !types.contains(&kind) {
        return Err(format!("a {kind:?} text object where {types:?} belongs"));
    }
    let text = string(v, "text")?;
    if text.is_empty() || units(text) > max {
        return Err(format!(
            "text of {} characters; 1 to {max} allowed",
            units(text)
        ));
    }
    Ok(text)
}

/// A button: plain-text label, `action_id`, `value`, style, no URL; its action_id and
/// value.
fn button(v: &Value) -> Result<(&str, &str), String> {
    if v["type"] != "button" {
        return Err(format!("a {} element, not a button", v["type"]));
    }
    text_object(&v["text"], &["plain_text"], block_kit::BUTTON_TEXT)?;
    let action_id = string(v, "action_id")?;
    let value = string(v, "value")?;
    if action_id.is_empty() || units(action_id) > block_kit::ACTION_ID {
        return Err(format!("action_id {action_id:?} is empty or too long"));
    }
    if units(value) > block_kit::BUTTON_VALUE {
        return Err("value is over 2000 characters".into());
    }
    if let Some(style) = v.get("style")
        && style != "primary"
        && style != "danger"
    {
        return Err(format!("style {style}; primary or danger"));
    }
    if v.get("url").is_some() {
        return Err("a button with a url: Slack messages carry no links".into());
    }
    Ok((action_id, value))
}

/// Checks a Teams webhook message: a `message` with exactly one Adaptive Card
/// attachment, card version 1.4 with its `$schema`, a body, and buttons that are all
/// `Action.OpenUrl` to http(s) URLs; within Teams' 28 KB. The request id is the card's
/// `Request` fact.
pub fn check_teams(r: &Received) -> Result<Checked, ShapeError> {
    let fail = |problem: String| ShapeError {
        channel: "teams",
        problem,
    };
    let json = json_post(r).map_err(fail)?;
    if r.body.len() > TEAMS_MAX_BYTES {
        return Err(fail(format!(
            "{} bytes; Teams refuses more than {TEAMS_MAX_BYTES}",
            r.body.len()
        )));
    }
    teams_message(&json).map_err(fail)
}

fn teams_message(json: &Value) -> Result<Checked, String> {
    if json["type"] != "message" {
        return Err(format!("type is {}, not \"message\"", json["type"]));
    }
    let attachments = array(json, "attachments")?;
    let [attachment] = attachments.as_slice() else {
        return Err(format!("{} attachments, not 1", attachments.len()));
    };
    if attachment["contentType"] != "application/vnd.microsoft.card.adaptive" {
        return Err(format!(
            "attachments[0].contentType is {}, not the Adaptive Card type",
            attachment["contentType"]
        ));
    }
    if !attachment["contentUrl"].is_null() {
        return Err("attachments[0].contentUrl is set; the card is inline".into());
    }
    let card = &attachment["content"];
    for (key, want) in [
        ("type", "AdaptiveCard"),
        ("version", "1.4"),
        (
            "$schema",
            "http://adaptivecards.io/schemas/adaptive-card.json",
        ),
    ] {
        if card[key] != want {
            return Err(format!("content.{key} is {}, not {want:?}", card[key]));
        }
    }
    let body = array(card, "body").map_err(|e| format!("content.{e}"))?;
    if body.is_empty() {
        return Err("content.body is empty".into());
    }
    for (i, element) in body.iter().enumerate() {
        string(element, "type").map_err(|e| format!("content.body[{i}].{e}"))?;
    }
    array(card, "actions").map_err(|e| format!("content.{e}"))?;
    let mut links = Vec::new();
    open_urls(card, &mut links)?;
    let request_id = body
        .iter()
        .filter(|e| e["type"] == "FactSet")
        .filter_map(|e| e["facts"].as_array())
        .flatten()
        .find(|f| f["title"] == "Request")
        .and_then(|f| f["value"].as_str())
        .ok_or("no FactSet with a \"Request\" fact")?;
    let request_id = request_id
        .parse()
        .map_err(|_| format!("the Request fact {request_id:?} is not a request id"))?;
    Ok(Checked {
        request_id,
        links,
        json: json.clone(),
    })
}

/// Every action anywhere in the card is `Action.OpenUrl` (webhook cards cannot send
/// anything back) with a title and an http(s) URL; collects the URLs.
fn open_urls(v: &Value, links: &mut Vec<String>) -> Result<(), String> {
    match v {
        Value::Object(o) => {
            if let Some(kind) = o.get("type").and_then(Value::as_str)
                && kind.starts_with("Action.")
            {
                if kind != "Action.OpenUrl" {
                    return Err(format!(
                        "an {kind}: a webhook card's buttons can only open URLs"
                    ));
                }
                string(v, "title")?;
                let url = string(v, "url")?;
                if !is_http_url(url) {
                    return Err(format!("Action.OpenUrl to {url:?}, not an http(s) URL"));
                }
                links.push(url.to_string());
            }
            o.values().try_for_each(|x| open_urls(x, links))
        }
        Value::Array(a) => a.iter().try_for_each(|x| open_urls(x, links)),
        _ => Ok(()),
    }
}

/// A `POST` with a JSON content type whose body is a JSON object.
fn json_post(r: &Received) -> Result<Value, String> {
    if r.method != "POST" {
        return Err(format!("method {}, not POST", r.method));
    }
    let content_type = r.header("content-type").unwrap_or_default();
    if content_type.split(';').next().map(str::trim) != Some("application/json") {
        return Err(format!(
            "Content-Type {content_type:?}, not application/json"
        ));
    }
    let json: Value =
        serde_json::from_slice(&r.body).map_err(|e| format!("the body is not JSON: {e}"))?;
    if !json.is_object() {
        return Err("the body is not a JSON object".into());
    }
    Ok(json)
}

/// The value at a dotted `path`; missing is an error naming the path.
fn field<'a>(v: &'a Value, path: &str) -> Result<&'a Value, String> {
    path.split('.')
        .try_fold(v, |v, key| v.get(key))
        .ok_or_else(|| format!("{path} is missing"))
}

fn string<'a>(v: &'a Value, path: &str) -> Result<&'a str, String> {
    let x = field(v, path)?;
    x.as_str()
        .ok_or_else(|| format!("{path} is {x}, not a string"))
}

fn uint(v: &Value, path: &str) -> Result<u64, String> {
    let x = field(v, path)?;
    x.as_u64()
        .ok_or_else(|| format!("{path} is {x}, not a whole number"))
}

fn array<'a>(v: &'a Value, path: &str) -> Result<&'a Vec<Value>, String> {
    let x = field(v, path)?;
    x.as_array()
        .ok_or_else(|| format!("{path} is {x}, not an array"))
}

fn strings<'a>(v: &'a Value, path: &str) -> Result<Vec<&'a str>, String> {
    array(v, path)?
        .iter()
        .map(|x| {
            x.as_str()
                .ok_or_else(|| format!("{path} holds {x}, not a string"))
        })
        .collect()
}

fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.contains(char::is_whitespace))
}

/// `2026-09-21T14:13:20.000Z`.
fn is_rfc3339_millis(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// Length as Slack counts it (UTF-16 code units; never fewer than characters).
fn units(s: &str) -> usize {
    s.encode_utf16().count()
}

#[cfg(test)]
mod tests {
    use interceptor::approvals::config::{Channel, ChannelKind};
    use interceptor::approvals::notify::{Notifier, RetryPolicy};
    use interceptor::approvals::{GrantOffer, Notice, ReviewLink, slack, teams, webhook};
    use interceptor::procfs::Ancestor;
    use serde_json::json;

    use super::*;

    const SECRET: &[u8] = b"receiver-test-secret";
    const WAIT: Duration = Duration::from_secs(10);

    /// A malformed payload: what it is, how to break a good one, what the error says.
    type Case = (&'static str, fn(&mut Value), &'static str);

    /// The request docs/approvals.md shows.
    fn notice() -> Notice {
        Notice {
            id: 42,
            host: "agent-host-1".into(),
            agent: "ci-bot".into(),
            session: None,
            operation: "exec".into(),
            access: Vec::new(),
            pid: 4242,
            uid: 1001,
            user: Some("ci".into()),
            target: "/usr/bin/pg_dump".into(),
            exe: "/usr/lib/postgresql/16/bin/pg_dump".into(),
            argv: ["pg_dump", "--table", "customers", "-f", "/tmp/out file.sql"]
                .map(String::from)
                .to_vec(),
            cwd: "/srv/app".into(),
            env: vec!["PGHOST=db.internal".into(), "PGPASSWORD=<redacted>".into()],
            parents: vec![Ancestor {
                pid: 4000,
                exe: "/usr/bin/bash".into(),
                argv: ["bash", "-c", "pg_dump ..."].map(String::from).to_vec(),
            }],
            recent: vec!["exec /usr/bin/psql -c '\\dt'".into()],
            rationale: Some("Exporting the customers table for the weekly report".into()),
            rule: "db-export".into(),
            reason: Some("Exports of customer data need a human".into()),
            controls: vec!["SOC2:CC6.1".into()],
            severity: Some("high".into()),
            requested_at_ms: 1_790_000_000_000,
            deadline_ms: 1_790_000_300_000,
            on_timeout: "deny".into(),
            grant: Some(GrantOffer {
                max_ttl_secs: 3600,
                max_uses: 5,
            }),
            links: vec![ReviewLink {
                reviewer: "alice".into(),
                url: "https://approvals.example.com/r/AAAA".into(),
            }],
        }
    }

    fn now_secs() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// A POST as it would have arrived, without the HTTP round trip.
    fn post(headers: &[(&str, &str)], body: Vec<u8>) -> Received {
        let mut all = vec![("Content-Type".to_string(), "application/json".to_string())];
        all.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Received {
            method: "POST".into(),
            path: "/in".into(),
            headers: all,
            body,
            at: SystemTime::now(),
            arrived: Instant::now(),
            answered: 200,
        }
    }

    /// A webhook delivery of `body` signed now with `secret`, as the docs define it.
    fn signed(body: &Value, secret: &[u8], timestamp: u64) -> Received {
        let body = body.to_string().into_bytes();
        let ts = timestamp.to_string();
        let sig = format!(
            "v1={}",
            hex::encode(webhook_mac(secret, &ts, &body).finalize().into_bytes())
        );
        post(
            &[
                ("X-Interceptor-Timestamp", &ts),
                ("X-Interceptor-Signature", &sig),
            ],
            body,
        )
    }

    fn json_post_of(v: &Value) -> Received {
        post(&[], v.to_string().into_bytes())
    }

    #[test]
    fn the_signature_is_the_documented_hmac() {
        // docs/approvals.md: secret `key`, timestamp 1790000000, body `hello`.
        let mac = webhook_mac(b"key", "1790000000", b"hello");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "7b023b541c6964c80a48779b31dd2353960e5515dfc89eca04aa8367cb75fbaa"
        );
    }

    #[test]
    fn the_daemons_webhook_body_passes() {
        let n = notice();
        let s = webhook::signed_body(&n, SECRET, now_secs());
        let r = post(
            &[
                ("X-Interceptor-Timestamp", &s.timestamp),
                ("X-Interceptor-Signature", &s.signature),
            ],
            s.body,
        );
        let checked = check_webhook(&r, SECRET).unwrap();
        assert_eq!(checked.request_id, 42);
        assert_eq!(checked.links, ["https://approvals.example.com/r/AAAA"]);
        assert_eq!(checked.json["request"]["argv"][4], "/tmp/out file.sql");

        // Optional context absent is null, which the docs allow.
        let mut bare = notice();
        bare.user = None;
        bare.rationale = None;
        bare.reason = None;
        bare.severity = None;
        bare.grant = None;
        bare.links.clear();
        let r = signed(&webhook::body(&bare), SECRET, now_secs());
        assert!(check_webhook(&r, SECRET).unwrap().links.is_empty());
    }

    #[test]
    fn a_bad_webhook_delivery_is_named() {
        let good = webhook::body(&notice());
        let now = now_secs();
        let problem = |r: &Received| check_webhook(r, SECRET).unwrap_err().problem;

        assert_eq!(
            problem(&signed(&good, b"another secret", now)),
            "the signature does not verify with the shared secret"
        );
        assert!(problem(&signed(&good, SECRET, now - 301)).contains("window 300s"));
        let mut tampered = signed(&good, SECRET, now);
        tampered.body[10] ^= 1;
        assert_eq!(
            problem(&tampered),
            "the signature does not verify with the shared secret"
        );
        let mut unsigned = signed(&good, SECRET, now);
        unsigned
            .headers
            .retain(|(k, _)| k != "X-Interceptor-Signature");
        assert_eq!(problem(&unsigned), "no X-Interceptor-Signature header");
        let mut upper = signed(&good, SECRET, now);
        for (k, v) in &mut upper.headers {
            if k == "X-Interceptor-Signature" {
                *v = v.to_uppercase().replacen("V1=", "v1=", 1);
            }
        }
        assert!(problem(&upper).contains("lowercase hex"));

        // Validly signed, but not the documented shape.
        let cases: [Case; 6] = [
            (
                "type",
                |b| b["type"] = json!("approval"),
                "type is \"approval\"",
            ),
            (
                "version",
                |b| b["version"] = json!(2),
                "version is 2, not 1",
            ),
            (
                "argv",
                |b| b["request"]["argv"] = json!("pg_dump"),
                "request.argv is \"pg_dump\", not an array",
            ),
            (
                "id",
                |b| drop(b["request"].as_object_mut().map(|r| r.remove("id"))),
                "request.id is missing",
            ),
            (
                "verified",
                |b| b["request"]["rationale"]["verified"] = json!(true),
                "verified is true",
            ),
            (
                "links",
                |b| b["links"][0]["url"] = json!("javascript:alert(1)"),
                "links[0].url",
            ),
        ];
        for (what, change, want) in cases {
            let mut body = good.clone();
            change(&mut body);
            let got = problem(&signed(&body, SECRET, now));
            assert!(got.contains(want), "{what}: {got:?} lacks {want:?}");
        }
    }

    #[test]
    fn the_daemons_slack_message_passes() {
        let checked = check_slack(&json_post_of(&slack::message(&notice(), None))).unwrap();
        assert_eq!(checked.request_id, 42);
        assert!(checked.links.is_empty());
        let mut open = notice();
        open.operation = "open".into();
        open.access = vec!["write".into()];
        open.rationale = None;
        assert_eq!(
            check_slack(&json_post_of(&slack::message(&open, None)))
                .unwrap()
                .request_id,
            42
        );
    }

    /// The first block of `kind` in a Slack message.
    fn block<'a>(m: &'a mut Value, kind: &str) -> &'a mut Value {
        m["blocks"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|b| b["type"] == kind)
            .unwrap()
    }

    #[test]
    fn a_bad_slack_message_is_named() {
        let good = slack::message(&notice(), None);
        let cases: [Case; 8] = [
            (
                "no text",
                |m| m["text"] = json!(""),
                "text (the notification fallback) is empty",
            ),
            ("channel", |m| m["channel"] = json!("C1"), "a channel key"),
            (
                "unfurl",
                |m| m["unfurl_links"] = json!(true),
                "unfurl_links is true",
            ),
            (
                "no deny",
                |m| {
                    drop(
                        block(m, "actions")["elements"]
                            .as_array_mut()
                            .unwrap()
                            .pop(),
                    )
                },
                "no button with action_id \"interceptor_deny\"",
            ),
            (
                "value",
                |m| block(m, "actions")["elements"][1]["value"] = json!("43"),
                "different requests",
            ),
            (
                "link button",
                |m| block(m, "actions")["elements"][1]["url"] = json!("https://x/r/A"),
                "carry no links",
            ),
            (
                "long header",
                |m| block(m, "header")["text"]["text"] = json!("h".repeat(151)),
                "blocks[0]: text of 151 characters",
            ),
            (
                "no command",
                |m| {
                    m["blocks"]
                        .as_array_mut()
                        .unwrap()
                        .retain(|b| !b.to_string().contains("*Command*"))
                },
                "no section starts with *Command*",
            ),
        ];
        for (what, change, want) in cases {
            let mut m = good.clone();
            change(&mut m);
            let err = check_slack(&json_post_of(&m)).unwrap_err();
            assert_eq!(err.channel, "slack");
            assert!(err.problem.contains(want), "{what}: {err} lacks {want:?}");
        }
        let mut form = json_post_of(&good);
        form.headers[0].1 = "application/x-www-form-urlencoded".into();
        assert!(
            check_slack(&form)
                .unwrap_err()
                .problem
                .contains("Content-Type")
        );
    }

    #[test]
    fn the_daemons_teams_card_passes() {
        let mut n = notice();
        // Eight reviewers: a second row of buttons (an ActionSet in the body).
        n.links = (0..8)
            .map(|i| ReviewLink {
                reviewer: format!("r{i}"),
                url: format!("https://approvals.example.com/r/{i}"),
            })
            .collect();
        let checked = check_teams(&json_post_of(&teams::card(&n))).unwrap();
        assert_eq!(checked.request_id, 42);
        assert_eq!(checked.links.len(), 8);
        n.links.clear();
        assert!(
            check_teams(&json_post_of(&teams::card(&n)))
                .unwrap()
                .links
                .is_empty()
        );
    }

    #[test]
    fn a_bad_teams_message_is_named() {
        let good = teams::card(&notice());
        let cases: [Case; 6] = [
            (
                "wrapped twice",
                |m| *m = json!({ "type": "message", "attachments": [{ "contentType": "application/vnd.microsoft.card.adaptive", "content": m.clone() }] }),
                "content.type is \"message\"",
            ),
            (
                "bare card",
                |m| *m = m["attachments"][0]["content"].clone(),
                "type is \"AdaptiveCard\", not \"message\"",
            ),
            (
                "version",
                |m| m["attachments"][0]["content"]["version"] = json!("1.5"),
                "content.version is \"1.5\"",
            ),
            (
                "schema",
                |m| {
                    drop(
                        m["attachments"][0]["content"]
                            .as_object_mut()
                            .map(|c| c.remove("$schema")),
                    )
                },
                "content.$schema is null",
            ),
            (
                "submit",
                |m| m["attachments"][0]["content"]["actions"][0]["type"] = json!("Action.Submit"),
                "an Action.Submit",
            ),
            (
                "url",
                |m| {
                    m["attachments"][0]["content"]["actions"][0]["url"] =
                        json!("file:///etc/passwd")
                },
                "not an http(s) URL",
            ),
        ];
        for (what, change, want) in cases {
            let mut m = good.clone();
            change(&mut m);
            let err = check_teams(&json_post_of(&m)).unwrap_err();
            assert_eq!(err.channel, "teams");
            assert!(err.problem.contains(want), "{what}: {err} lacks {want:?}");
        }
        let mut big = good.clone();
        big["attachments"][0]["content"]["fallbackText"] = json!("x".repeat(TEAMS_MAX_BYTES));
        assert!(
            check_teams(&json_post_of(&big))
                .unwrap_err()
                .problem
                .contains("28000")
        );
    }

    /// A raw HTTP/1.1 POST; the status line's code.
    fn send(addr: SocketAddr, path: &str, body: &str) -> u16 {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer[9..12].parse().unwrap()
    }

    #[test]
    fn the_receiver_records_requests_and_answers_as_told() {
        let rx = Receiver::start();
        assert!(matches!(
            rx.next(Duration::from_millis(50)),
            Err(ReceiveError::Timeout(_))
        ));
        rx.answer_next(2, Reply::status(503));
        let codes: Vec<u16> = (0..3)
            .map(|i| send(rx.addr(), &format!("/p{i}"), "{}"))
            .collect();
        assert_eq!(codes, [503, 503, 200]);
        assert_eq!(rx.count(), 3);
        for (i, answered) in [503, 503, 200].into_iter().enumerate() {
            let r = rx.next(WAIT).unwrap();
            assert_eq!(
                (r.path.as_str(), r.answered),
                (format!("/p{i}").as_str(), answered)
            );
            assert_eq!(r.header("content-type"), Some("application/json"));
            assert_eq!(r.body, b"{}");
        }
        let mut s = TcpStream::connect(rx.addr()).unwrap();
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(matches!(rx.next(WAIT), Err(ReceiveError::Http(e)) if e.contains("HTTP/1.1")));
    }

    /// The daemon's notifier against the receiver: retries end to end, every attempt
    /// checked.
    #[test]
    fn the_notifier_delivers_to_the_receiver_through_retries() {
        let rx = Receiver::start();
        rx.answer_next(1, Reply::status(503));
        rx.answer_next(1, Reply::status(429).header("Retry-After", "0"));
        let channels = [
            ("hook", ChannelKind::Webhook),
            ("slack", ChannelKind::Slack),
            ("teams", ChannelKind::Teams),
        ]
        .map(|(name, kind)| Channel {
            name: name.into(),
            kind,
            url: rx.url(&format!("/{name}")),
            secret: Some(SECRET.to_vec()),
            signing_secret: None,
        });
        let retry = RetryPolicy {
            attempts: 3,
            first_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            attempt_timeout: Duration::from_secs(5),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let n = notice();
        for channel in &channels {
            let d = runtime.block_on(Notifier::new(retry).unwrap().deliver(channel, &n));
            assert!(d.delivered, "{d:?}");
        }
        let mut seen = Vec::new();
        while let Ok(r) = rx.next(Duration::from_millis(200)) {
            let checked = match r.path.as_str() {
                "/hook" => check_webhook(&r, SECRET),
                "/slack" => check_slack(&r),
                "/teams" => check_teams(&r),
                other => panic!("unexpected path {other}"),
            };
            assert_eq!(checked.unwrap().request_id, 42);
            seen.push((r.path, r.answered));
        }
        let seen: Vec<(&str, u16)> = seen.iter().map(|(p, a)| (p.as_str(), *a)).collect();
        assert_eq!(
            seen,
            [
                ("/hook", 503),
                ("/hook", 429),
                ("/hook", 200),
                ("/slack", 200),
                ("/teams", 200)
            ]
        );
    }
}
