//! The daemon's HTTP listener: `GET /metrics` (Prometheus text), `GET /healthz`, the
//! review page (`GET`/`POST /r/{token}`) and Slack's interactivity endpoint
//! (`POST /slack/interactions`). Held agent actions are approved here, so [`bind`] refuses
//! non-loopback addresses unless told otherwise.
//!
//! Agents run on the same host; the kernel refuses their connections to this listener
//! (see the loader's connect guard), and the listener bounds what any client can hold
//! anyway: headers must arrive within 10 s and fit in 16 KiB, at most 64 connections are
//! served at once, a body must arrive within 10 s and fit its route's limit, and the
//! read-only routes refuse request bodies unread.

use std::future::Future;
use std::io;
use std::net::{AddrParseError, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::body::HttpBody as _;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// What the listener reports; implemented by the daemon.
pub trait Source: Send + Sync + 'static {
    /// The `/metrics` body.
    fn metrics(&self) -> String;
    /// `Ok(())` when healthy, `Err(reason)` when not (e.g. "audit log unwritable: ...").
    fn health(&self) -> Result<(), String>;
    /// `GET /r/{token}`: the review page. Never decides anything.
    fn review_page(&self, token: String) -> Reply {
        let _ = token;
        Box::pin(async { Page::text(404, "not found\n") })
    }
    /// `POST /r/{token}`: a reviewer's answer (form-encoded, with its CSRF token).
    fn review_answer(&self, token: String, body: Bytes) -> Reply {
        let _ = (token, body);
        Box::pin(async { Page::text(404, "not found\n") })
    }
    /// `POST /slack/interactions`: a button click in Slack, signed by Slack.
    fn slack_interaction(&self, headers: HeaderMap, body: Bytes) -> Reply {
        let _ = (headers, body);
        Box::pin(async { Page::text(404, "not found\n") })
    }
}

/// What an approval route answers.
pub type Reply = Pin<Box<dyn Future<Output = Page> + Send>>;

/// An approval route's answer: status, content type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Page {
    pub fn html(status: u16, body: String) -> Self {
        Self {
            status,
            content_type: "text/html; charset=utf-8",
            body,
        }
    }

    pub fn json(status: u16, body: String) -> Self {
        Self {
            status,
            content_type: "application/json",
            body,
        }
    }

    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

/// Why the listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("invalid listen address {addr:?} (expected IP:PORT, e.g. 127.0.0.1:9477): {source}")]
    InvalidAddress {
        addr: String,
        source: AddrParseError,
    },
    #[error(
        "refusing to listen on {addr}: it is not a loopback address, and this listener will \
         serve the approval page, where held agent actions are approved; allow remote \
         listeners explicitly only behind something that authenticates reviewers"
    )]
    NotLoopback { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
}

/// The Prometheus text exposition format's content type.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A client must send a request's headers within this time, and an idle keep-alive
/// connection is closed after it. hyper's own 30 s default applies only when a timer is
/// set, which `axum::serve` does not do; hence the hand-driven hyper connections below.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Request line plus headers. Prometheus sends a few hundred bytes; a browser with
/// cookies a few KiB.
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Connections served at once; more wait in the kernel's accept queue. Keeps a local
/// agent from exhausting the daemon's file descriptors through this listener.
const MAX_CONNECTIONS: usize = 64;

/// A review form is a decision, a CSRF token, a grant and a comment (at most 2,000
/// characters, each up to 12 bytes once percent-encoded).
const MAX_REVIEW_FORM: usize = 32 * 1024;

/// Slack's interaction payloads carry the whole message they came from.
const MAX_SLACK_BODY: usize = 512 * 1024;

/// A request's body must arrive within this time.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Security headers of every approval page: nothing is loaded from elsewhere, no script
/// runs, forms post only here, no framing (clickjacking an approve button), nothing cached
/// or leaked through the Referer (the link is a bearer secret).
const PAGE_HEADERS: [(&str, &str); 6] = [
    (
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("cache-control", "no-store"),
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
    ("x-robots-tag", "noindex, nofollow"),
];

/// Parses and binds the listen address (`IP:PORT`). Refuses non-loopback addresses
/// unless `allow_remote`: this listener will carry the approval page.
pub async fn bind(addr: &str, allow_remote: bool) -> Result<TcpListener, HttpError> {
    let parsed: SocketAddr = addr.parse().map_err(|source| HttpError::InvalidAddress {
        addr: addr.to_owned(),
        source,
    })?;
    // `to_canonical` so that ::ffff:127.0.0.1 counts as loopback like 127.0.0.1.
    if !allow_remote && !parsed.ip().to_canonical().is_loopback() {
        return Err(HttpError::NotLoopback { addr: parsed });
    }
    TcpListener::bind(parsed)
        .await
        .map_err(|source| HttpError::Bind {
            addr: parsed,
            source,
        })
}

/// Serves `/metrics` and `/healthz` from `source` until the future is dropped, which also
/// closes every open connection. Returns only if accepting fails for a reason that is
/// not about one connection or a passing shortage of resources.
pub async fn serve(listener: TcpListener, source: Arc<dyn Source>) -> io::Result<()> {
    serve_with_timeout(listener, source, HEADER_READ_TIMEOUT).await
}

async fn serve_with_timeout(
    listener: TcpListener,
    source: Arc<dyn Source>,
    header_read_timeout: Duration,
) -> io::Result<()> {
    let app = app(source);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Owned by this future, so dropping it aborts the connections.
    let mut connections = JoinSet::new();
    tracing::info!(addr = ?listener.local_addr()?, "HTTP listener serving /metrics, /healthz, /r/{{token}}, /slack/interactions");
    loop {
        while connections.try_join_next().is_some() {}
        let Ok(permit) = permits.clone().acquire_owned().await else {
            unreachable!("the semaphore is never closed");
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) if is_resource_shortage(&e) => {
                tracing::warn!("HTTP listener cannot accept: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let service = TowerToHyperService::new(app.clone());
        connections.spawn(async move {
            let _permit = permit;
            let result = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .max_header_size(MAX_HEADER_BYTES)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = result {
                tracing::debug!(%peer, "HTTP connection ended: {e}");
            }
        });
    }
}

/// The accepted connection failed before we saw it; the listener is fine.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// Out of file descriptors or memory: wait for connections to close.
fn is_resource_shortage(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

fn app(source: Arc<dyn Source>) -> Router {
    let read_only = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/r/{token}", get(review_page))
        .route_layer(middleware::from_fn(refuse_body));
    let answers = Router::new()
        .route("/r/{token}", axum::routing::post(review_answer))
        .route(
            "/slack/interactions",
            axum::routing::post(slack_interaction),
        );
    read_only
        .merge(answers)
        .fallback(not_found)
        .with_state(source)
}

/// Reads a request body of at most `limit` bytes within [`BODY_READ_TIMEOUT`].
async fn read_body(request: Request, limit: usize) -> Result<Bytes, Response> {
    let body = request.into_body();
    match tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {limit} bytes, or cut short\n"),
        )
            .into_response()),
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "request body not received within {} s\n",
                BODY_READ_TIMEOUT.as_secs()
            ),
        )
            .into_response()),
    }
}

fn page_response(page: Page) -> Response {
    let status = StatusCode::from_u16(page.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, page.body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(page.content_type),
    );
    for (name, value) in PAGE_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn review_page(State(source): State<Arc<dyn Source>>, Path(token): Path<String>) -> Response {
    page_response(source.review_page(token).await)
}

async fn review_answer(
    State(source): State<Arc<dyn Source>>,
    Path(token): Path<String>,
    request: Request,
) -> Response {
    match read_body(request, MAX_REVIEW_FORM).await {
        Ok(body) => page_response(source.review_answer(token, body).await),
        Err(refused) => refused,
    }
}

async fn slack_interaction(State(source): State<Arc<dyn Source>>, request: Request) -> Response {
    let headers = request.headers().clone();
    match read_body(request, MAX_SLACK_BODY).await {
        Ok(body) => page_response(source.slack_interaction(headers, body).await),
        Err(refused) => refused,
    }
}

/// These routes take no request body; one is refused without being read.
async fn refuse_body(request: Request, next: Next) -> Response {
    if request.body().size_hint().exact() != Some(0) {
        let message = "this route takes no request body\n";
        return (StatusCode::PAYLOAD_TOO_LARGE, message).into_response();
    }
    next.run(request).await
}

async fn metrics(State(source): State<Arc<dyn Source>>) -> Response {
    ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], source.metrics()).into_response()
}

async fn healthz(State(source): State<Arc<dyn Source>>) -> Response {
    match source.health() {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response(),
    }
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpStream;
    use tokio::task::JoinHandle;

    const METRICS_BODY: &str = "# HELP up Test.\n# TYPE up gauge\nup 1\n";

    struct FakeDaemon {
        health: Result<(), String>,
    }

    impl Source for FakeDaemon {
        fn metrics(&self) -> String {
            METRICS_BODY.to_owned()
        }
        fn health(&self) -> Result<(), String> {
            self.health.clone()
        }
    }

    struct Server {
        addr: SocketAddr,
        task: JoinHandle<io::Result<()>>,
    }

    async fn start(health: Result<(), String>, header_read_timeout: Duration) -> Server {
        let listener = bind("127.0.0.1:0", false).await.expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let source = Arc::new(FakeDaemon { health });
        let task = tokio::spawn(serve_with_timeout(listener, source, header_read_timeout));
        Server { addr, task }
    }

    struct Reply {
        status: u16,
        /// Lowercased names.
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// Sends `head` (request line and headers, without the blank line) and `body`, and
    /// reads the reply until the server closes the connection.
    async fn send(addr: SocketAddr, head: &str, body: &str) -> Reply {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!("{head}\r\nHost: test\r\nConnection: close\r\n\r\n{body}");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.expect("read");
        let (head, body) = raw.split_once("\r\n\r\n").expect("reply has a head");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("status line");
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers = lines
            .map(|line| {
                let (name, value) = line.split_once(':').expect("header");
                (name.to_ascii_lowercase(), value.trim().to_owned())
            })
            .collect();
        let body = body.to_owned();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(addr: SocketAddr, path: &str) -> Reply {
        send(addr, &format!("GET {path} HTTP/1.1"), "").await
    }

    #[tokio::test]
    async fn prometheus_scrapes_metrics_and_health_says_ok() {
        let server = start(Ok(()), HEADER_READ_TIMEOUT).await;

        let reply = get(server.addr, "/metrics").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-type"), Some(PROMETHEUS_TEXT));
        assert_eq!(reply.body, METRICS_BODY);

        let reply = get(server.addr, "/healthz").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, "ok\n");
    }

    #[tokio::test]
    async fn unhealthy_daemon_answers_503_with_the_reason() {
        let reason = "audit log unwritable: disk full".to_owned();
        let server = start(Err(reason), HEADER_READ_TIMEOUT).await;

        let reply = get(server.addr, "/healthz").await;
        assert_eq!(reply.status, 503);
        assert_eq!(reply.body, "audit log unwritable: disk full\n");
        // Metrics still answer: they are how the operator sees why.
        assert_eq!(get(server.addr, "/metrics").await.status, 200);
    }

    #[tokio::test]
    async fn unknown_paths_wrong_methods_and_bodies_are_refused() {
        let server = start(Ok(()), HEADER_READ_TIMEOUT).await;

        let reply = get(server.addr, "/approve/1").await;
        assert_eq!(reply.status, 404);
        assert_eq!(reply.body, "not found\n");

        let reply = send(server.addr, "DELETE /metrics HTTP/1.1", "").await;
        assert_eq!(reply.status, 405);
        assert!(
            reply
                .header("allow")
                .is_some_and(|allow| allow.contains("GET"))
        );

        let head = "GET /metrics HTTP/1.1\r\nContent-Length: 5";
        let reply = send(server.addr, head, "hello").await;
        assert_eq!(reply.status, 413);
        assert_eq!(reply.body, "this route takes no request body\n");
    }

    #[tokio::test]
    async fn silent_client_is_disconnected_and_dropping_serve_closes_everything() {
        let server = start(Ok(()), Duration::from_millis(200)).await;

        // A client that never finishes its headers is cut off.
        let mut slow = TcpStream::connect(server.addr).await.expect("connect");
        slow.write_all(b"GET /metrics HTTP/1.1\r\n")
            .await
            .expect("write");
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest));
        read.await
            .expect("closed by the header timeout")
            .expect("read");

        // Dropping the serve future closes idle connections and the listener.
        let mut idle = TcpStream::connect(server.addr).await.expect("connect");
        assert_eq!(get(server.addr, "/healthz").await.status, 200);
        server.task.abort();
        let _ = server.task.await;
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf));
        assert_eq!(read.await.expect("closed on drop").unwrap_or(0), 0);
        assert!(TcpStream::connect(server.addr).await.is_err());
    }

    #[tokio::test]
    async fn bind_accepts_loopback_and_refuses_remote_unless_allowed() {
        for addr in ["127.0.0.1:0", "[::1]:0", "[::ffff:127.0.0.1]:0"] {
            let listener = bind(addr, false).await.expect(addr);
            assert!(
                listener
                    .local_addr()
                    .expect("addr")
                    .ip()
                    .to_canonical()
                    .is_loopback()
            );
        }

        let error = bind("0.0.0.0:9477", false)
            .await
            .expect_err("0.0.0.0 is remote");
        assert!(matches!(error, HttpError::NotLoopback { .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("0.0.0.0:9477"), "{message}");
        assert!(message.contains("approval page"), "{message}");
        let error = bind("[::]:9477", false).await.expect_err(":: is remote");
        assert!(matches!(error, HttpError::NotLoopback { .. }), "{error:?}");

        bind("0.0.0.0:0", true).await.expect("remote allowed");
    }

    #[tokio::test]
    async fn malformed_address_is_named_in_the_error() {
        for addr in ["127.0.0.1", "localhost:9477", "127.0.0.1:http"] {
            let error = bind(addr, false).await.expect_err(addr);
            assert!(
                matches!(error, HttpError::InvalidAddress { .. }),
                "{error:?}"
            );
            assert!(error.to_string().contains(&format!("{addr:?}")), "{error}");
        }
    }
}
