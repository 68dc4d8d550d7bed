//! The browser harness itself: headless Chromium, driven over WebDriver, fills a textarea
//! on a page served by this test and presses a submit button; the server must receive the
//! POST with what was typed, and a screenshot lands in target/test-artifacts/.
//!
//! Host only (tier 2): the VM has no Chromium, and xtask says so when it leaves this
//! binary out of tier 3. A machine without Chromium fails here (run `cargo xtask setup`).

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use interceptor_integration::webdriver::WebDriver;

const FORM_PAGE: &str = r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>harness form</title>
<style>body { font: 18px system-ui, sans-serif; margin: 2rem; }
textarea { width: 30rem; height: 6rem; } button { font-size: 1.1rem; }</style></head>
<body><h1 id="heading">WebDriver harness</h1>
<form method="post" action="/submit">
<input type="hidden" name="csrf" value="t0ken">
<label for="comment">Comment</label><br>
<textarea id="comment" name="comment"></textarea><br>
<button id="send" type="submit" name="decision" value="approve">Send</button>
</form></body></html>
"#;

const THANKS_PAGE: &str = r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>received</title></head>
<body><p id="result" data-outcome="received">Received.</p></body></html>
"#;

/// One request the test server saw.
#[derive(Debug)]
struct Seen {
    method: String,
    path: String,
    content_type: String,
    body: Vec<u8>,
}

/// Serves `FORM_PAGE` on GET /, records every POST /submit and answers `THANKS_PAGE`.
/// Each connection gets its own thread: a browser may open connections it never uses.
fn serve() -> (u16, Receiver<Seen>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind test server");
    let port = listener.local_addr().expect("local addr").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || handle(stream, tx));
        }
    });
    (port, rx)
}

fn handle(stream: TcpStream, tx: Sender<Seen>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let (status, page) = match (method.as_str(), path.as_str()) {
        ("GET", "/") => ("200 OK", FORM_PAGE),
        ("POST", "/submit") => ("200 OK", THANKS_PAGE),
        _ => ("404 Not Found", "not found"),
    };
    let mut stream = reader.into_inner();
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{page}",
        page.len()
    );
    let _ = stream.flush();
    let _ = tx.send(Seen {
        method,
        path,
        content_type: headers.remove("content-type").unwrap_or_default(),
        body,
    });
}

/// The decoded `name=value` pairs of an x-www-form-urlencoded body.
fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii hex");
                    out.push(u8::from_str_radix(hex, 16).expect("percent escape"));
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).expect("utf-8 form value")
    }
    std::str::from_utf8(body)
        .expect("form body is ASCII")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

#[test]
fn headless_chromium_fills_and_submits_a_form() {
    let started = Instant::now();
    let (port, requests) = serve();
    let browser = WebDriver::start();
    println!(
        "chromium session up in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let url = format!("http://127.0.0.1:{port}/");
    browser.navigate(&url);
    assert_eq!(browser.current_url(), url);
    assert_eq!(browser.text(&browser.find("#heading")), "WebDriver harness");
    assert!(browser.page_source().contains("id=\"comment\""));
    let missing = browser
        .try_find("#no-such-element")
        .expect_err("an element that does not exist was found");
    assert!(
        missing.to_string().contains("no such element"),
        "the error names the WebDriver error: {missing}"
    );

    let comment = "Looks fine & safe <ok> \"quoted\" — ünïcode";
    let textarea = browser.find("#comment");
    browser.send_keys(&textarea, comment);
    let send = browser.find("#send");
    assert_eq!(
        browser.attribute(&send, "value").as_deref(),
        Some("approve")
    );
    assert_eq!(browser.attribute(&send, "formaction"), None);
    browser.save_screenshot("webdriver-smoke-form");
    browser.click(&send);

    // The server saw the page load, then the POST with what was typed.
    let deadline = Instant::now() + Duration::from_secs(30);
    let post = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let seen = requests
            .recv_timeout(left)
            .expect("the server never received the form's POST");
        if seen.method == "POST" {
            break seen;
        }
    };
    assert_eq!(post.path, "/submit");
    assert_eq!(post.content_type, "application/x-www-form-urlencoded");
    let pairs = form_pairs(&post.body);
    assert_eq!(
        pairs,
        vec![
            ("csrf".to_string(), "t0ken".to_string()),
            ("comment".to_string(), comment.to_string()),
            ("decision".to_string(), "approve".to_string()),
        ],
        "raw body: {}",
        String::from_utf8_lossy(&post.body)
    );

    // The browser shows the server's answer.
    let outcome = browser.wait_for("the result page", Duration::from_secs(30), |b| {
        b.try_find("#result")
            .ok()
            .and_then(|el| b.attribute(&el, "data-outcome"))
    });
    assert_eq!(outcome, "received");
    assert_eq!(
        browser.current_url(),
        format!("http://127.0.0.1:{port}/submit")
    );

    let png = browser.screenshot_png();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let path = browser.save_screenshot("webdriver-smoke-result");
    assert!(path.is_file());
    println!(
        "webdriver smoke test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
