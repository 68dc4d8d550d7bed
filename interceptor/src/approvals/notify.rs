//! Delivering a request's [`Notice`] to its channels over HTTPS: the signed webhook body,
//! the Slack message, the Teams card; retries with backoff; one [`Delivery`] per channel
//! saying what happened, for the audit log.
//!
//! An attempt that fails in a way that may pass (no connection, no answer within the
//! attempt's timeout, `408`, `429`, `5xx`) is retried after a doubling backoff; a `429`'s
//! `Retry-After` seconds are honoured up to the backoff cap. Any other answer is final:
//! a `4xx` will not change by asking again, and a redirect is not followed (a channel URL
//! that redirects is misconfigured; following it could carry a signed body elsewhere).
//!
//! What is secret stays out of logs and errors: channel URLs (a Slack or Teams webhook URL
//! lets anyone post), the webhook key, and the review links inside the payload. Logs and
//! [`Delivery::error`] name the channel, the status and the cause only.

use std::error::Error as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use tokio::task::{Id, JoinSet};
use tracing::{Instrument as _, info, info_span, warn};

use super::config::{Channel, ChannelKind};
use super::{Notice, sign, slack, teams, text, webhook};

/// How hard to try one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (0 counts as 1).
    pub attempts: u32,
    /// The wait after the first failed attempt; it doubles after each further failure.
    pub first_backoff: Duration,
    /// The longest wait between attempts, `Retry-After` included.
    pub max_backoff: Duration,
    /// One attempt, from connecting to the end of the answer.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, waits of 250 ms, 500 ms, 1 s, 2 s (doubling, capped at 8 s), 10 s per
    /// attempt: about a minute at worst, well inside any approval window.
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            first_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
            attempt_timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `failed` (1-based): `first_backoff` doubled
    /// `failed - 1` times, or the server's `Retry-After`; never more than `max_backoff`.
    pub fn backoff(&self, failed: u32, retry_after: Option<Duration>) -> Duration {
        let doubled = self
            .first_backoff
            .saturating_mul(1u32 << failed.saturating_sub(1).min(31));
        retry_after.unwrap_or(doubled).min(self.max_backoff)
    }
}

/// The HTTP client could not be set up (the TLS configuration, the host's certificate
/// store).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the notification HTTP client: {0}")]
pub struct NotifyError(String);

/// What happened on one channel for one request: one audit row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The channel's configured name.
    pub channel: String,
    pub kind: ChannelKind,
    /// The channel answered 2xx.
    pub delivered: bool,
    /// Attempts made (0 when the channel could not be used at all).
    pub attempts: u32,
    /// The last HTTP status received, if any attempt got an answer.
    pub status: Option<u16>,
    /// Why the last attempt failed (`None` when delivered). Never holds the channel URL
    /// or a review link.
    pub error: Option<String>,
    /// From the first attempt to the outcome, waits included.
    pub elapsed: Duration,
}

impl Delivery {
    /// Not delivered, no attempt made.
    fn nothing_yet(channel: String, kind: ChannelKind) -> Self {
        Delivery {
            channel,
            kind,
            delivered: false,
            attempts: 0,
            status: None,
            error: None,
            elapsed: Duration::ZERO,
        }
    }

    /// One line for the `notified` audit row and for people: `delivered: HTTP 200 (2
    /// attempts, 260ms)`, `not delivered: HTTP 404 Not Found: no_service (1 attempt,
    /// 80ms)`, `not sent: ...`.
    pub fn summary(&self) -> String {
        let attempts = match self.attempts {
            1 => "1 attempt".to_string(),
            n => format!("{n} attempts"),
        };
        // Whole milliseconds: humantime would print every digit down to nanoseconds.
        let took = humantime::format_duration(Duration::from_millis(
            self.elapsed.as_millis().try_into().unwrap_or(u64::MAX),
        ));
        let error = self.error.as_deref().unwrap_or("no error recorded");
        if self.delivered {
            let status = self.status.map_or(String::new(), |s| format!(": HTTP {s}"));
            format!("delivered{status} ({attempts}, {took})")
        } else if self.attempts == 0 {
            format!("not sent: {error}")
        } else {
            format!("not delivered: {error} ({attempts}, {took})")
        }
    }
}

/// Sends notices. Holds one HTTP client, so connections to a channel are reused across
/// requests; cloning is cheap and shares it.
#[derive(Debug, Clone)]
pub struct Notifier {
    client: reqwest::Client,
    retry: RetryPolicy,
}

/// How one attempt ended.
enum Attempt {
    Delivered(u16),
    /// Worth another try, after `retry_after` if the server said so.
    Transient {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
    /// Asking again will not help.
    Final {
        status: Option<u16>,
        error: String,
    },
}

/// Response bytes read for an error message; the rest is dropped.
const ERROR_BODY_READ: usize = 1024;
/// Characters of a chat service's error answer kept in [`Delivery::error`].
const ERROR_BODY_SHOWN: usize = 200;

impl Notifier {
    /// A notifier with its own HTTP client: HTTP/1.1, rustls trusting the host's
    /// certificate store, no redirects, the proxy from `HTTPS_PROXY`/`NO_PROXY` if set.
    pub fn new(retry: RetryPolicy) -> Result<Self, NotifyError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("interceptor/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(retry.attempt_timeout)
            .build()
            .map_err(|e| NotifyError(error_chain(&e.without_url())))?;
        Ok(Notifier { client, retry })
    }

    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Posts `body` (JSON) once to a Slack `response_url`, which updates the message a
    /// button was clicked in. One attempt within the attempt timeout; the error says why
    /// (without the URL, which is a credential for that message).
    pub async fn respond(&self, url: &str, body: &serde_json::Value) -> Result<u16, String> {
        let sent = self
            .client
            .post(url)
            .timeout(self.retry.attempt_timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| error_chain(&e.without_url()))?;
        let status = sent.status();
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            Err(format!("HTTP {status}"))
        }
    }

    /// Delivers `notice` to `channel`, retrying as [`RetryPolicy`] says. Never fails: the
    /// outcome, good or bad, is the [`Delivery`].
    pub async fn deliver(&self, channel: &Channel, notice: &Notice) -> Delivery {
        let span = info_span!(
            "notify",
            channel = %channel.name,
            kind = channel.kind.as_str(),
            request = notice.id
        );
        self.deliver_inner(channel, notice).instrument(span).await
    }

    async fn deliver_inner(&self, channel: &Channel, notice: &Notice) -> Delivery {
        let started = Instant::now();
        let mut delivery = Delivery::nothing_yet(channel.name.clone(), channel.kind);
        let payload = match Payload::new(channel, notice) {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "notification not sent");
                delivery.error = Some(e);
                return delivery;
            }
        };
        let attempts = self.retry.attempts.max(1);
        loop {
            delivery.attempts += 1;
            let (status, error, retry_after) = match self.attempt(channel, &payload, notice).await {
                Attempt::Delivered(status) => {
                    delivery.delivered = true;
                    delivery.status = Some(status);
                    delivery.error = None;
                    delivery.elapsed = started.elapsed();
                    info!(
                        attempts = delivery.attempts,
                        status,
                        elapsed_ms = delivery.elapsed.as_millis() as u64,
                        "notification delivered"
                    );
                    return delivery;
                }
                Attempt::Transient {
                    status,
                    error,
                    retry_after,
                } => (status, error, retry_after),
                Attempt::Final { status, error } => {
                    delivery.status = status.or(delivery.status);
                    delivery.error = Some(error);
                    delivery.elapsed = started.elapsed();
                    warn!(
                        attempts = delivery.attempts,
                        status,
                        error = delivery.error.as_deref(),
                        "notification refused; not retried"
                    );
                    return delivery;
                }
            };
            delivery.status = status.or(delivery.status);
            if delivery.attempts >= attempts {
                delivery.error = Some(error);
                delivery.elapsed = started.elapsed();
                warn!(
                    attempts = delivery.attempts,
                    status,
                    error = delivery.error.as_deref(),
                    "notification failed; no attempts left"
                );
                return delivery;
            }
            let wait = self.retry.backoff(delivery.attempts, retry_after);
            info!(
                attempt = delivery.attempts,
                status,
                error = %error,
                wait_ms = wait.as_millis() as u64,
                "notification attempt failed; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// One POST and how it ended.
    async fn attempt(&self, channel: &Channel, payload: &Payload<'_>, notice: &Notice) -> Attempt {
        let json = HeaderValue::from_static("application/json");
        let request = self
            .client
            .post(&channel.url)
            .timeout(self.retry.attempt_timeout)
            .header(CONTENT_TYPE, json);
        let request = match payload {
            // Signed now, so every retry carries a fresh timestamp a receiver accepts.
            Payload::Webhook { secret } => {
                let signed = webhook::signed_body(notice, secret, unix_now());
                request
                    .header(sign::TIMESTAMP_HEADER, signed.timestamp)
                    .header(sign::SIGNATURE_HEADER, signed.signature)
                    .body(signed.body)
            }
            Payload::Json(body) => request.body(body.clone()),
        };
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Transient {
                    status: None,
                    error: self.describe(e, channel),
                    retry_after: None,
                };
            }
        };
        let status = response.status();
        let code = status.as_u16();
        if status.is_success() {
            return Attempt::Delivered(code);
        }
        let retry_after = (code == 429)
            .then(|| retry_after_secs(response.headers().get(RETRY_AFTER)))
            .flatten();
        let mut error = format!("HTTP {status}");
        if status.is_redirection() {
            error.push_str(": redirects are not followed; set the channel URL to the final one");
        } else if channel.kind != ChannelKind::Webhook {
            // Slack and Teams say what is wrong in the body (`invalid_payload`,
            // `channel_is_archived`, ...). A webhook receiver is the operator's own program,
            // which logs its side; its answer could echo the body and its links.
            if let Some(said) = error_body(response, notice).await {
                error.push_str(": ");
                error.push_str(&said);
            }
        }
        if code == 408 || code == 429 || status.is_server_error() {
            Attempt::Transient {
                status: Some(code),
                error,
                retry_after,
            }
        } else {
            Attempt::Final {
                status: Some(code),
                error,
            }
        }
    }

    /// A transport error as one line without the channel URL (a secret for Slack and
    /// Teams): `no answer within 10s`, `error sending request: ...: Connection refused`.
    fn describe(&self, e: reqwest::Error, channel: &Channel) -> String {
        if e.is_timeout() {
            return format!(
                "no answer within {}",
                humantime::format_duration(self.retry.attempt_timeout)
            );
        }
        // `without_url` drops the URL reqwest adds; the replace guards the causes below.
        error_chain(&e.without_url()).replace(&channel.url, "<channel url>")
    }

    /// Delivers `notice` to every channel at once; the deliveries in `channels`' order,
    /// when all are done. Needs a Tokio runtime (it spawns a task per channel).
    pub async fn deliver_all(&self, channels: &[Channel], notice: &Notice) -> Vec<Delivery> {
        let mut pending = self.spawn_all(channels, notice);
        let mut done: Vec<(usize, Delivery)> = Vec::with_capacity(channels.len());
        while let Some(indexed) = pending.next_indexed().await {
            done.push(indexed);
        }
        done.sort_by_key(|(i, _)| *i);
        done.into_iter().map(|(_, d)| d).collect()
    }

    /// Starts delivering `notice` to every channel at once and returns at once; each
    /// [`Delivery`] comes out of [`Deliveries::next`] as soon as its channel is done, so
    /// the daemon can audit it without waiting for slower channels. Dropping the
    /// [`Deliveries`] abandons the deliveries still under way.
    pub fn spawn_all(&self, channels: &[Channel], notice: &Notice) -> Deliveries {
        let notice = Arc::new(notice.clone());
        let mut deliveries = Deliveries {
            tasks: JoinSet::new(),
            channels: Vec::with_capacity(channels.len()),
        };
        for (index, channel) in channels.iter().enumerate() {
            let notifier = self.clone();
            let channel = channel.clone();
            let notice = Arc::clone(&notice);
            let (name, kind) = (channel.name.clone(), channel.kind);
            let handle = deliveries
                .tasks
                .spawn(async move { (index, notifier.deliver(&channel, &notice).await) });
            deliveries.channels.push((handle.id(), index, name, kind));
        }
        deliveries
    }
}

/// Deliveries under way, from [`Notifier::spawn_all`].
pub struct Deliveries {
    tasks: JoinSet<(usize, Delivery)>,
    /// Each task's channel, to report a task that panicked.
    channels: Vec<(Id, usize, String, ChannelKind)>,
}

impl Deliveries {
    /// The next channel's outcome, in the order they finish; `None` once all are
    /// reported. Cancel-safe: use it in `select!`.
    pub async fn next(&mut self) -> Option<Delivery> {
        self.next_indexed().await.map(|(_, d)| d)
    }

    /// Channels not reported yet.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    async fn next_indexed(&mut self) -> Option<(usize, Delivery)> {
        match self.tasks.join_next_with_id().await? {
            Ok((_, indexed)) => Some(indexed),
            // A bug, not a channel's fault; still one row for the channel.
            Err(e) => {
                let (_, index, name, kind) = self
                    .channels
                    .iter()
                    .find(|(id, ..)| *id == e.id())
                    .cloned()
                    .expect("every task is registered when spawned");
                warn!(channel = %name, "notification task failed: {e}");
                let mut failed = Delivery::nothing_yet(name, kind);
                failed.error = Some(format!("delivery task failed: {e}"));
                Some((index, failed))
            }
        }
    }
}

/// What is POSTed to a channel.
enum Payload<'a> {
    /// Signed per attempt with this key.
    Webhook { secret: &'a [u8] },
    /// The same bytes every attempt.
    Json(Vec<u8>),
}

impl<'a> Payload<'a> {
    fn new(channel: &'a Channel, notice: &Notice) -> Result<Self, String> {
        Ok(match channel.kind {
            ChannelKind::Webhook => match channel.secret.as_deref() {
                Some(secret) => Payload::Webhook { secret },
                // The configuration refuses this; never send an unsigned request.
                None => return Err("webhook channel has no secret; nothing sent".into()),
            },
            // An incoming webhook posts to its own channel: no `channel` key.
            ChannelKind::Slack => Payload::Json(slack::message(notice, None).to_string().into()),
            // Already the `message` with the card attached that Teams expects.
            ChannelKind::Teams => Payload::Json(teams::card(notice).to_string().into()),
        })
    }
}

/// `Retry-After` in seconds. The HTTP-date form is not used by the chat services; it
/// falls back to the backoff.
fn retry_after_secs(value: Option<&HeaderValue>) -> Option<Duration> {
    let secs: u64 = value?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

/// The start of an error answer as one visible line, any review link in it masked.
async fn error_body(mut response: reqwest::Response, notice: &Notice) -> Option<String> {
    let mut bytes = Vec::new();
    while bytes.len() < ERROR_BODY_READ {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(ERROR_BODY_READ);
    let mut said = String::from_utf8_lossy(&bytes).trim().to_string();
    for link in &notice.links {
        said = said.replace(&link.url, "<review link>");
    }
    (!said.is_empty()).then(|| {
        text::fit(
            &text::visible(&said, false),
            ERROR_BODY_SHOWN,
            text::no_escape,
        )
    })
}

/// `error: cause: cause ...`, each level once (reqwest and hyper repeat their sources'
/// text in some of their messages).
fn error_chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    use serde_json::Value;
    use tokio::net::TcpListener;

    use super::*;
    use crate::approvals::sample_notice;

    /// Waits short enough that a test with a few retries takes milliseconds.
    fn quick(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            first_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            attempt_timeout: Duration::from_secs(5),
        }
    }

    /// How the test server answers one request.
    #[derive(Clone)]
    enum Reply {
        Status(u16),
        With(u16, &'static [(&'static str, &'static str)], &'static str),
        /// Never answers.
        Hang,
    }

    struct Seen {
        headers: HeaderMap,
        body: Bytes,
        at_secs: u64,
    }

    #[derive(Default)]
    struct Script {
        /// Answers for the next requests, in order; 200 after them.
        replies: Mutex<Vec<Reply>>,
        seen: Mutex<Vec<Seen>>,
    }

    /// An HTTP/1.1 server on 127.0.0.1 answering as `replies` say; its URL and its log.
    async fn server(replies: &[Reply]) -> (String, Arc<Script>) {
        let script = Arc::new(Script {
            replies: Mutex::new(replies.iter().rev().cloned().collect()),
            ..Script::default()
        });
        let app = Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&script));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook/SECRET-PATH", listener.local_addr().unwrap());
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let service = TowerToHyperService::new(app.clone());
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        (url, script)
    }

    async fn answer(
        State(script): State<Arc<Script>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        script.seen.lock().unwrap().push(Seen {
            headers,
            body,
            at_secs: unix_now(),
        });
        let reply = script.replies.lock().unwrap().pop();
        match reply.unwrap_or(Reply::Status(200)) {
            Reply::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
            Reply::With(code, headers, body) => {
                let mut map = HeaderMap::new();
                for (k, v) in headers {
                    map.insert(*k, v.parse().unwrap());
                }
                (StatusCode::from_u16(code).unwrap(), map, body).into_response()
            }
            Reply::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                StatusCode::OK.into_response()
            }
        }
    }

    #[tokio::test]
    async fn respond_posts_the_update_once_and_reports_the_status() {
        let (url, script) = server(&[Reply::Status(200), Reply::Status(404)]).await;
        let notifier = Notifier::new(quick(3)).unwrap();
        let update = serde_json::json!({ "replace_original": true, "text": "Approved by alice" });
        assert_eq!(notifier.respond(&url, &update).await, Ok(200));
        let error = notifier.respond(&url, &update).await.unwrap_err();
        assert!(error.contains("404"), "{error}");
        assert!(
            !error.contains("SECRET-PATH"),
            "the URL is not echoed: {error}"
        );
        let seen = script.seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "one attempt each, no retries");
        let body: Value = serde_json::from_slice(&seen[0].body).unwrap();
        assert_eq!(body, update);
        assert_eq!(header(&seen[0], "content-type"), "application/json");
    }

    fn channel(kind: ChannelKind, url: &str) -> Channel {
        Channel {
            name: format!("test-{}", kind.as_str()),
            kind,
            url: url.into(),
            secret: (kind == ChannelKind::Webhook).then(|| b"hook-secret".to_vec()),
            signing_secret: None,
        }
    }

    fn header<'a>(seen: &'a Seen, name: &str) -> &'a str {
        seen.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn a_webhook_is_delivered_signed_on_the_first_try() {
        let (url, script) = server(&[]).await;
        let notifier = Notifier::new(quick(3)).unwrap();
        let d = notifier
            .deliver(&channel(ChannelKind::Webhook, &url), &sample_notice())
            .await;
        assert_eq!(
            (d.delivered, d.attempts, d.status, d.error.as_deref()),
            (true, 1, Some(200), None),
            "{d:?}"
        );
        assert_eq!(d.channel, "test-webhook");
        let seen = script.seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let s = &seen[0];
        assert_eq!(header(s, "content-type"), "application/json");
        assert!(header(s, "user-agent").starts_with("interceptor/"));
        sign::verify(
            b"hook-secret",
            header(s, sign::TIMESTAMP_HEADER),
            header(s, sign::SIGNATURE_HEADER),
            &s.body,
            s.at_secs,
            1,
        )
        .expect("the signature verifies as a receiver checks it");
        let body: Value = serde_json::from_slice(&s.body).unwrap();
        assert_eq!(body, webhook::body(&sample_notice()));
    }

    #[test]
    fn a_delivery_reads_as_one_line() {
        let mut d = Delivery {
            channel: "ops".into(),
            kind: ChannelKind::Slack,
            delivered: true,
            attempts: 2,
            status: Some(200),
            error: None,
            elapsed: Duration::from_micros(260_400),
        };
        assert_eq!(d.summary(), "delivered: HTTP 200 (2 attempts, 260ms)");
        d.delivered = false;
        d.attempts = 1;
        d.status = Some(404);
        d.error = Some("HTTP 404 Not Found: no_service".into());
        assert_eq!(
            d.summary(),
            "not delivered: HTTP 404 Not Found: no_service (1 attempt, 260ms)"
        );
        d.attempts = 0;
        d.error = Some("webhook channel has no secret; nothing sent".into());
        assert_eq!(
            d.summary(),
            "not sent: webhook channel has no secret; nothing sent"
        );
    }

    #[tokio::test]
    async fn a_server_error_is_retried() {
        let (url, script) = server(&[Reply::Status(500)]).await;
        let d = Notifier::new(quick(3))
            .unwrap()
            .deliver(&channel(ChannelKind::Webhook, &url), &sample_notice())
            .await;
        assert_eq!(
            (d.delivered, d.attempts, d.status),
            (true, 2, Some(200)),
            "{d:?}"
        );
        assert_eq!(script.seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn every_attempt_is_signed_afresh() {
        // The second attempt starts in a later second than the first.
        let retry = RetryPolicy {
            first_backoff: Duration::from_millis(1100),
            max_backoff: Duration::from_secs(2),
            ..quick(2)
        };
        let (url, script) = server(&[Reply::Status(503)]).await;
        let d = Notifier::new(retry)
            .unwrap()
            .deliver(&channel(ChannelKind::Webhook, &url), &sample_notice())
            .await;
        assert_eq!((d.delivered, d.attempts), (true, 2), "{d:?}");
        let seen = script.seen.lock().unwrap();
        let stamps: Vec<&str> = seen
            .iter()
            .map(|s| header(s, sign::TIMESTAMP_HEADER))
            .collect();
        assert_ne!(stamps[0], stamps[1], "the retry reused the first timestamp");
        for s in seen.iter() {
            // Fresh: within a second of when it arrived.
            sign::verify(
                b"hook-secret",
                header(s, sign::TIMESTAMP_HEADER),
                header(s, sign::SIGNATURE_HEADER),
                &s.body,
                s.at_secs,
                1,
            )
            .expect("each attempt verifies on arrival");
        }
    }

    #[tokio::test]
    async fn too_many_requests_waits_as_long_as_retry_after_says() {
        let retry = RetryPolicy {
            max_backoff: Duration::from_secs(5),
            ..quick(2)
        };
        let (url, script) =
            server(&[Reply::With(429, &[("retry-after", "1")], "rate_limited")]).await;
        let started = Instant::now();
        let d = Notifier::new(retry)
            .unwrap()
            .deliver(&channel(ChannelKind::Slack, &url), &sample_notice())
            .await;
        assert_eq!(
            (d.delivered, d.attempts, d.status),
            (true, 2, Some(200)),
            "{d:?}"
        );
        assert_eq!(script.seen.lock().unwrap().len(), 2);
        // Only a lower bound: the backoff alone would have waited 10 ms.
        assert!(started.elapsed() >= Duration::from_millis(950), "{d:?}");
    }

    #[test]
    fn backoff_doubles_and_retry_after_is_capped() {
        let p = RetryPolicy::default();
        let waits: Vec<u64> = (1..=7)
            .map(|n| p.backoff(n, None).as_millis() as u64)
            .collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 8000, 8000]);
        assert_eq!(
            p.backoff(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            p.backoff(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(8)
        );
        assert_eq!(p.backoff(u32::MAX, None), Duration::from_secs(8));
        assert_eq!(
            retry_after_secs(Some(&HeaderValue::from_static(" 7 "))),
            Some(Duration::from_secs(7))
        );
        for not_seconds in ["Wed, 21 Oct 2015 07:28:00 GMT", "-1", "1.5", ""] {
            assert_eq!(
                retry_after_secs(Some(&HeaderValue::from_str(not_seconds).unwrap())),
                None
            );
        }
    }

    #[tokio::test]
    async fn a_client_error_is_not_retried_and_says_what_slack_said() {
        let (url, script) = server(&[Reply::With(
            400,
            &[],
            "invalid_blocks http://127.0.0.1:9477/r/AAAA",
        )])
        .await;
        let d = Notifier::new(quick(5))
            .unwrap()
            .deliver(&channel(ChannelKind::Slack, &url), &sample_notice())
            .await;
        assert_eq!(
            (d.delivered, d.attempts, d.status),
            (false, 1, Some(400)),
            "{d:?}"
        );
        assert_eq!(
            d.error.as_deref(),
            Some("HTTP 400 Bad Request: invalid_blocks <review link>")
        );
        assert_eq!(script.seen.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_webhook_receivers_answer_is_not_recorded() {
        let (url, _script) = server(&[Reply::With(403, &[], "echo: ...")]).await;
        let d = Notifier::new(quick(5))
            .unwrap()
            .deliver(&channel(ChannelKind::Webhook, &url), &sample_notice())
            .await;
        assert_eq!(d.attempts, 1);
        assert_eq!(d.error.as_deref(), Some("HTTP 403 Forbidden"));
    }

    #[tokio::test]
    async fn a_redirect_is_reported_not_followed() {
        let (url, script) = server(&[Reply::With(
            302,
            &[("location", "http://127.0.0.1:1/elsewhere")],
            "",
        )])
        .await;
        let d = Notifier::new(quick(5))
            .unwrap()
            .deliver(&channel(ChannelKind::Teams, &url), &sample_notice())
            .await;
        assert_eq!(
            (d.delivered, d.attempts, d.status),
            (false, 1, Some(302)),
            "{d:?}"
        );
        assert!(
            d.error.as_deref().unwrap().contains("not followed"),
            "{d:?}"
        );
        assert_eq!(script.seen.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_refused_connection_uses_every_attempt_and_names_the_cause() {
        // A port that was just free: nothing listens on it.
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().port()
        };
        let url = format!("http://127.0.0.1:{port}/services/T0/B0/SECRETTOKEN");
        let d = Notifier::new(quick(3))
            .unwrap()
            .deliver(&channel(ChannelKind::Slack, &url), &sample_notice())
            .await;
        assert_eq!(
            (d.delivered, d.attempts, d.status),
            (false, 3, None),
            "{d:?}"
        );
        let error = d.error.unwrap();
        assert!(error.contains("Connection refused"), "{error}");
        assert!(!error.contains("SECRETTOKEN"), "the URL leaked: {error}");
    }

    #[tokio::test]
    async fn an_attempt_without_an_answer_times_out() {
        let retry = RetryPolicy {
            attempt_timeout: Duration::from_millis(200),
            ..quick(2)
        };
        let (url, script) = server(&[Reply::Hang, Reply::Hang]).await;
        let d = Notifier::new(retry)
            .unwrap()
            .deliver(&channel(ChannelKind::Webhook, &url), &sample_notice())
            .await;
        assert_eq!(
            (d.delivered, d.attempts, d.status),
            (false, 2, None),
            "{d:?}"
        );
        assert_eq!(d.error.as_deref(), Some("no answer within 200ms"));
        assert_eq!(script.seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_webhook_without_a_secret_is_never_sent() {
        let (url, script) = server(&[]).await;
        let mut c = channel(ChannelKind::Webhook, &url);
        c.secret = None;
        let d = Notifier::new(quick(3))
            .unwrap()
            .deliver(&c, &sample_notice())
            .await;
        assert_eq!((d.delivered, d.attempts), (false, 0), "{d:?}");
        assert!(d.error.unwrap().contains("no secret"));
        assert!(script.seen.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn slack_and_teams_get_their_formatters_json() {
        let (url, script) = server(&[]).await;
        let notifier = Notifier::new(quick(1)).unwrap();
        let n = sample_notice();
        for kind in [ChannelKind::Slack, ChannelKind::Teams] {
            let d = notifier.deliver(&channel(kind, &url), &n).await;
            assert!(d.delivered, "{d:?}");
        }
        let seen = script.seen.lock().unwrap();
        let json = |i: usize| -> Value { serde_json::from_slice(&seen[i].body).unwrap() };
        assert_eq!(json(0), slack::message(&n, None));
        assert_eq!(json(1), teams::card(&n));
        // Wrapped once: a message whose one attachment is the card.
        assert_eq!(json(1)["attachments"][0]["content"]["type"], "AdaptiveCard");
        for s in seen.iter() {
            assert_eq!(header(s, "content-type"), "application/json");
            assert!(s.headers.get(sign::SIGNATURE_HEADER).is_none());
        }
    }

    #[tokio::test]
    async fn all_channels_are_tried_at_once_and_each_reported() {
        let (slow, _) = server(&[Reply::Hang, Reply::Hang]).await;
        let (good, _) = server(&[]).await;
        let channels = [
            Channel {
                name: "slow".into(),
                ..channel(ChannelKind::Webhook, &slow)
            },
            Channel {
                name: "good".into(),
                ..channel(ChannelKind::Teams, &good)
            },
        ];
        let notifier = Notifier::new(RetryPolicy {
            attempt_timeout: Duration::from_millis(300),
            ..quick(1)
        })
        .unwrap();
        let n = sample_notice();

        // As they finish: the good channel first, without waiting for the slow one.
        let mut pending = notifier.spawn_all(&channels, &n);
        assert_eq!(pending.len(), 2);
        let first = pending.next().await.unwrap();
        assert_eq!((first.channel.as_str(), first.delivered), ("good", true));
        let second = pending.next().await.unwrap();
        assert_eq!((second.channel.as_str(), second.delivered), ("slow", false));
        assert!(pending.next().await.is_none());

        // All at once: in the channels' order.
        let all = notifier.deliver_all(&channels, &n).await;
        let names: Vec<(&str, bool)> = all
            .iter()
            .map(|d| (d.channel.as_str(), d.delivered))
            .collect();
        assert_eq!(names, [("slow", false), ("good", true)]);
    }
}
