//! Slack: the Block Kit message a request is posted as, the check that an interactivity
//! request really comes from Slack, the Approve/Deny click it carries, and the message
//! that replaces the original once someone decided.
//!
//! Everything the agent controls (argv, paths, rationale, recent activity) is shown made
//! visible ([`text::visible`]), with `&`, `<` and `>` escaped so it can never form a
//! link, a mention (`<!channel>`) or a date, in text objects marked `verbatim` so Slack
//! does not auto-link it either. Every piece has a fixed length budget, so the message
//! stays inside Slack's block limits and a click on it (Slack echoes the whole message
//! back, form-encoded) stays inside [`MAX_INTERACTION_BYTES`].
//!
//! The message carries no review links: they are per-reviewer secrets and a channel is
//! shared. Slack users decide with the buttons; the daemon maps their Slack user id to a
//! reviewer.

use serde::Deserialize;
use serde_json::{Value, json};

use super::sign::{self, SignatureError};
use super::{Notice, text};

/// `action_id` of the Approve button.
pub const APPROVE_ACTION_ID: &str = "interceptor_approve";
/// `action_id` of the Deny button.
pub const DENY_ACTION_ID: &str = "interceptor_deny";
/// The header Slack puts the request's Unix time in.
pub const TIMESTAMP_HEADER: &str = "X-Slack-Request-Timestamp";
/// The header Slack puts `v0=<hex digest>` in.
pub const SIGNATURE_HEADER: &str = "X-Slack-Signature";
/// Slack's signature scheme version.
pub const SIGNATURE_VERSION: &str = "v0";
/// How far Slack's timestamp may be from our clock, either way: Slack's recommended five
/// minutes, which bounds how long a captured request can be replayed.
pub const SIGNATURE_WINDOW_SECS: u64 = 300;
/// The largest interactivity body accepted. A click on the largest message [`message`]
/// writes stays well below it.
pub const MAX_INTERACTION_BYTES: usize = 64 * 1024;

/// Slack's limits on what [`message`] writes (Block Kit reference).
pub const MAX_BLOCKS: usize = 50;
pub const MAX_HEADER_TEXT: usize = 150;
pub const MAX_SECTION_TEXT: usize = 3000;
pub const MAX_FIELD_TEXT: usize = 2000;

// Budgets for each piece of a message, in UTF-16 units after escaping. Their sum (about
// 5,000) keeps a click's body under MAX_INTERACTION_BYTES even when every character is
// one that form-encoding turns into nine bytes.
const NAME_MAX: usize = 80;
const COMMAND_MAX: usize = 1500;
const PATH_MAX: usize = 300;
const RULE_MAX: usize = 100;
const REASON_MAX: usize = 400;
const CONTROLS_MAX: usize = 200;
const RATIONALE_MAX: usize = 700;
const RATIONALE_LINES: usize = 20;
const RECENT_SHOWN: usize = 5;
const RECENT_ENTRY_MAX: usize = 100;
const FALLBACK_MAX: usize = 200;
const CONFIRM_TEXT_MAX: usize = 150;
const DECIDED_HEADLINE_MAX: usize = 1500;

/// Said after code in which backticks had to be replaced, so the reviewer knows.
const BACKTICK_NOTE: &str = " _(ˋ stands for a backtick)_";

/// Slack's escaping for text in a text object: only `&`, `<` and `>` are control
/// characters, and only they are decoded for display.
fn escape(c: char, out: &mut String) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        c => out.push(c),
    }
}

/// Untrusted text as mrkdwn: visible, escaped, fitted.
fn shown(s: &str, max: usize) -> String {
    if s.is_empty() {
        return "_none_".into();
    }
    text::fit(&text::visible(s, false), max, escape)
}

/// Untrusted text as inline code. A backtick would end the span, so backticks are
/// replaced (and the reviewer told).
fn code(s: &str, max: usize) -> String {
    if s.is_empty() {
        return "_none_".into();
    }
    let v = text::visible(s, false);
    if v.contains('`') {
        format!(
            "`{}`{BACKTICK_NOTE}",
            text::fit(&v.replace('`', "ˋ"), max, escape)
        )
    } else {
        format!("`{}`", text::fit(&v, max, escape))
    }
}

/// Untrusted single-line text as a code block. Only a run of three backticks would end
/// the block, so backticks are replaced only then.
fn code_block(s: &str, max: usize) -> String {
    let v = text::visible(s, false);
    if v.contains("```") {
        format!(
            "```\n{}\n```{BACKTICK_NOTE}",
            text::fit(&v.replace('`', "ˋ"), max, escape)
        )
    } else {
        format!("```\n{}\n```", text::fit(&v, max, escape))
    }
}

/// Untrusted text for a `plain_text` object, which Slack never formats: visible and
/// fitted, nothing escaped.
fn one_line(s: &str, max: usize) -> String {
    text::fit(&text::visible(s, false), max, text::no_escape)
}

fn mrkdwn(text: String) -> Value {
    json!({ "type": "mrkdwn", "text": text, "verbatim": true })
}

fn plain(text: String) -> Value {
    json!({ "type": "plain_text", "text": text, "emoji": false })
}

fn section(text: String) -> Value {
    json!({ "type": "section", "text": mrkdwn(text) })
}

/// A Unix time Slack shows in each reader's own time zone, with RFC 3339 UTC for clients
/// that cannot.
fn slack_date(ms: u64) -> String {
    format!(
        "<!date^{}^{{date_short_pretty}} at {{time_secs}}|{}>",
        ms / 1000,
        text::rfc3339_ms(ms)
    )
}

/// The Block Kit message for `notice`, for an incoming webhook or `chat.postMessage`
/// (`channel` is set for the latter; incoming webhooks post to their own channel).
///
/// Layout (at most 10 blocks): header; who and where; the command; program, file and
/// working directory; the rule; the agent's rationale, marked unverified; recent
/// activity; the deadline; Approve and Deny; the request id. `text` is the notification
/// and screen-reader fallback. Never fails: anything too long is cut with a marker.
pub fn message(notice: &Notice, channel: Option<&str>) -> Value {
    let headline = notice.headline();
    let mut blocks = vec![json!({
        "type": "header",
        "text": plain(one_line(&headline, MAX_HEADER_TEXT)),
    })];

    let user = match &notice.user {
        Some(u) => format!("{} (uid {})", shown(u, NAME_MAX), notice.uid),
        None => format!("uid {}", notice.uid),
    };
    let operation = if notice.access.is_empty() {
        shown(&notice.operation, NAME_MAX)
    } else {
        shown(
            &format!("{} ({})", notice.operation, notice.access.join("+")),
            NAME_MAX,
        )
    };
    blocks.push(json!({
        "type": "section",
        "fields": [
            mrkdwn(format!("*Agent*\n{}", shown(&notice.agent, NAME_MAX))),
            mrkdwn(format!("*Host*\n{}", shown(&notice.host, NAME_MAX))),
            mrkdwn(format!("*User*\n{user}")),
            mrkdwn(format!("*PID*\n{}", notice.pid)),
            mrkdwn(format!("*Operation*\n{operation}")),
            mrkdwn(format!("*Request*\n{}", notice.id)),
        ],
    }));

    let is_open = notice.operation == "open";
    let command = text::command_line(&notice.argv, &notice.target);
    blocks.push(section(format!(
        "*{}*\n{}",
        if is_open { "Opened by" } else { "Command" },
        code_block(&command, COMMAND_MAX)
    )));
    blocks.push(section(format!(
        "*{}*: {}\n*Executable*: {}\n*Working directory*: {}",
        if is_open { "File" } else { "Program" },
        code(&notice.target, PATH_MAX),
        code(&notice.exe, PATH_MAX),
        code(&notice.cwd, PATH_MAX),
    )));

    let mut policy = format!("*Rule*: {}", code(&notice.rule, RULE_MAX));
    if let Some(severity) = &notice.severity {
        policy.push_str(&format!(" · severity *{}*", shown(severity, NAME_MAX)));
    }
    if let Some(reason) = &notice.reason {
        policy.push_str(&format!("\n*Why it asks*: {}", shown(reason, REASON_MAX)));
    }
    if !notice.controls.is_empty() {
        policy.push_str(&format!(
            "\n*Controls*: {}",
            shown(&notice.controls.join(" "), CONTROLS_MAX)
        ));
    }
    if let Some(g) = notice.grant {
        policy.push_str(&format!(
            "\n*Grants*: a reviewer may allow up to {} uses within {} (review page or CLI)",
            g.max_uses,
            text::short_duration(g.max_ttl_secs)
        ));
    }
    blocks.push(section(policy));

    blocks.push(match &notice.rationale {
        Some(r) => section(format!(
            "*Agent's rationale* _(unverified: the agent wrote this itself)_\n{}",
            quoted(r)
        )),
        None => json!({
            "type": "context",
            "elements": [mrkdwn("_The agent gave no rationale._".into())],
        }),
    });

    if !notice.recent.is_empty() {
        let skip = notice.recent.len().saturating_sub(RECENT_SHOWN);
        let lines: Vec<String> = notice.recent[skip..]
            .iter()
            .map(|r| format!("• {}", code(r, RECENT_ENTRY_MAX)))
            .collect();
        blocks.push(section(format!(
            "*Recent activity* (last {} of {}, oldest first)\n{}",
            lines.len(),
            notice.recent.len(),
            lines.join("\n")
        )));
    }

    let window = notice.deadline_ms.saturating_sub(notice.requested_at_ms) / 1000;
    let on_timeout = match notice.on_timeout.as_str() {
        "deny" => "*deny* (the process is killed)".to_string(),
        other => format!("*{}*", shown(other, NAME_MAX)),
    };
    blocks.push(json!({
        "type": "context",
        "elements": [mrkdwn(format!(
            "Expires {} (answer within {}). If nobody answers: {on_timeout}.",
            slack_date(notice.deadline_ms),
            text::short_duration(window),
        ))],
    }));

    let id = notice.id.to_string();
    blocks.push(json!({
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "text": plain("Approve".into()),
                "style": "primary",
                "action_id": APPROVE_ACTION_ID,
                "value": id,
                "confirm": {
                    "title": plain(format!("Approve request {id}?")),
                    "text": plain(one_line(&headline, CONFIRM_TEXT_MAX)),
                    "confirm": plain("Approve".into()),
                    "deny": plain("Cancel".into()),
                },
            },
            {
                "type": "button",
                "text": plain("Deny".into()),
                "style": "danger",
                "action_id": DENY_ACTION_ID,
                "value": id,
            },
        ],
    }));
    blocks.push(json!({
        "type": "context",
        "elements": [mrkdwn(format!("Request {id} · `interceptor approvals show {id}`"))],
    }));
    debug_assert!(blocks.len() <= MAX_BLOCKS);

    let mut message = json!({
        "text": format!(
            "Approval needed on {}: {}",
            shown(&notice.host, NAME_MAX),
            shown(&headline, FALLBACK_MAX)
        ),
        "blocks": blocks,
        // The message has no links of ours; never preview one an agent wrote.
        "unfurl_links": false,
        "unfurl_media": false,
    });
    if let (Some(channel), Some(obj)) = (channel, message.as_object_mut()) {
        obj.insert("channel".into(), Value::String(channel.to_string()));
    }
    message
}

/// The rationale as a mrkdwn quote, every line prefixed so none escapes the quote.
fn quoted(rationale: &str) -> String {
    let fitted = text::fit(&text::visible(rationale, true), RATIONALE_MAX, escape);
    let lines: Vec<&str> = fitted.lines().collect();
    let mut out: Vec<String> = lines
        .iter()
        .take(RATIONALE_LINES)
        .map(|l| format!("> {l}"))
        .collect();
    if lines.len() > RATIONALE_LINES {
        out.push(format!(
            "> …[{} more lines cut]",
            lines.len() - RATIONALE_LINES
        ));
    }
    if out.is_empty() {
        out.push("> _(empty)_".into());
    }
    out.join("\n")
}

/// The message that replaces the original (through the click's `response_url`) once
/// the request is decided, so nobody clicks a stale button: `decision` is the outcome
/// (`approved`, `denied`, `expired`, ...), `reviewer` who decided.
pub fn decided_message(notice_headline: &str, decision: &str, reviewer: &str) -> Value {
    let outcome = match decision.to_ascii_lowercase().as_str() {
        "approved" | "approve" => ":white_check_mark: *Approved*".to_string(),
        "denied" | "deny" => ":no_entry: *Denied*".to_string(),
        "expired" => ":hourglass: *Expired*".to_string(),
        _ => format!("*{}*", shown(decision, NAME_MAX)),
    };
    let summary = format!("{outcome} by {}", shown(reviewer, NAME_MAX));
    json!({
        "replace_original": true,
        "text": format!("{summary}: {}", shown(notice_headline, FALLBACK_MAX)),
        "blocks": [
            section(format!("{summary}\n{}", shown(notice_headline, DECIDED_HEADLINE_MAX))),
        ],
    })
}

/// Why a request to the interactivity endpoint is not from Slack. The scheme has the
/// same shape as ours (`v0` instead of `v1`), so it fails the same ways.
pub type SlackVerifyError = SignatureError;

/// Checks an interactivity request the way Slack documents ("Verifying requests from
/// Slack"): HMAC-SHA256 with the app's signing secret over `v0:{timestamp}:{raw body}`,
/// sent as `v0=<hex>`, compared in constant time, with a timestamp no more than five
/// minutes from `now_secs` either way.
///
/// `raw_body` must be the bytes as received, before any form or JSON decoding.
pub fn verify_request(
    signing_secret: &[u8],
    headers_timestamp: &str,
    headers_signature: &str,
    raw_body: &[u8],
    now_secs: u64,
) -> Result<(), SlackVerifyError> {
    sign::verify_scheme(
        SIGNATURE_VERSION,
        signing_secret,
        headers_timestamp,
        headers_signature,
        raw_body,
        now_secs,
        SIGNATURE_WINDOW_SECS,
    )
}

/// Which button was clicked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Approve,
    Deny,
}

/// A reviewer's click on Approve or Deny, as Slack reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    pub choice: Choice,
    /// The request the button belongs to (the button's `value`).
    pub request_id: u64,
    /// Who clicked: the Slack user id that reviewers' `slack_user` is matched against.
    pub user_id: String,
    /// Their Slack user name, when Slack sent one (for logs only, never for matching).
    pub user_name: Option<String>,
    /// The workspace the click came from.
    pub team_id: Option<String>,
    /// Where to send [`decided_message`], when Slack gave one.
    pub response_url: Option<String>,
}

/// Why an interactivity request could not be read as an Approve or Deny click.
#[derive(Debug, thiserror::Error)]
pub enum SlackPayloadError {
    #[error("the body is {len} bytes, more than the {max} an interaction may be")]
    TooLarge { len: usize, max: usize },
    #[error("the body is not application/x-www-form-urlencoded")]
    NotFormEncoded,
    #[error("the body has no `payload` field")]
    MissingPayload,
    #[error("the body has more than one `payload` field")]
    DuplicatePayload,
    #[error("the payload is not valid JSON: {0}")]
    InvalidJson(#[source] serde_json::Error),
    #[error("the payload's type is {found:?}, not block_actions")]
    WrongType { found: String },
    #[error("the payload carries no action")]
    NoAction,
    #[error("the payload carries {count} actions; a button click carries one")]
    MultipleActions { count: usize },
    #[error("unknown action_id {found:?} (expected {APPROVE_ACTION_ID} or {DENY_ACTION_ID})")]
    UnknownAction { found: String },
    #[error("the action has no value")]
    MissingValue,
    #[error("the action's value {found:?} is not a request id")]
    InvalidRequestId { found: String },
    #[error("the payload names no user")]
    MissingUser,
    #[error("the user id {found:?} is not a Slack user id")]
    InvalidUserId { found: String },
    #[error("the response_url is not an https URL")]
    InvalidResponseUrl,
}

// The parts of a block_actions payload this module reads; Slack sends many more, which
// are ignored.
#[derive(Deserialize)]
struct RawPayload {
    #[serde(rename = "type")]
    kind: Option<String>,
    user: Option<RawUser>,
    team: Option<RawTeam>,
    actions: Option<Vec<RawAction>>,
    response_url: Option<String>,
}

#[derive(Deserialize)]
struct RawUser {
    id: Option<String>,
    username: Option<String>,
    name: Option<String>,
    team_id: Option<String>,
}

#[derive(Deserialize)]
struct RawTeam {
    id: Option<String>,
}

#[derive(Deserialize)]
struct RawAction {
    action_id: Option<String>,
    value: Option<String>,
}

/// Attacker-influenced text quoted in an error: visible and short.
fn clip(s: &str) -> String {
    text::fit(&text::visible(s, false), 64, text::no_escape)
}

/// A request id as our buttons write it: decimal digits only (`u64::from_str` would also
/// take `+42`).
fn parse_id(value: &str) -> Option<u64> {
    let digits =
        !value.is_empty() && value.len() <= 20 && value.bytes().all(|b| b.is_ascii_digit());
    if digits { value.parse().ok() } else { None }
}

/// Reads an Approve or Deny click from an interactivity request body: form-encoded, one
/// `payload` field holding a `block_actions` JSON payload with one action.
///
/// Call only after [`verify_request`] accepted the same bytes: this checks shape, not
/// origin.
pub fn parse_interaction(raw_body: &[u8]) -> Result<Interaction, SlackPayloadError> {
    if raw_body.len() > MAX_INTERACTION_BYTES {
        return Err(SlackPayloadError::TooLarge {
            len: raw_body.len(),
            max: MAX_INTERACTION_BYTES,
        });
    }
    // A form body is printable ASCII (everything else is percent-encoded); a JSON body
    // sent by mistake starts with `{`.
    if raw_body.first() == Some(&b'{') || !raw_body.iter().all(u8::is_ascii_graphic) {
        return Err(SlackPayloadError::NotFormEncoded);
    }
    let mut payload = None;
    for (key, value) in form_urlencoded::parse(raw_body) {
        if key == "payload" {
            if payload.is_some() {
                return Err(SlackPayloadError::DuplicatePayload);
            }
            payload = Some(value);
        }
    }
    let payload = payload.ok_or(SlackPayloadError::MissingPayload)?;
    let raw: RawPayload = serde_json::from_str(&payload).map_err(SlackPayloadError::InvalidJson)?;

    let kind = raw.kind.unwrap_or_default();
    if kind != "block_actions" {
        return Err(SlackPayloadError::WrongType { found: clip(&kind) });
    }

    let mut actions = raw.actions.unwrap_or_default();
    let action = match actions.len() {
        0 => return Err(SlackPayloadError::NoAction),
        1 => actions.remove(0),
        count => return Err(SlackPayloadError::MultipleActions { count }),
    };
    let action_id = action.action_id.unwrap_or_default();
    let choice = match action_id.as_str() {
        APPROVE_ACTION_ID => Choice::Approve,
        DENY_ACTION_ID => Choice::Deny,
        other => {
            return Err(SlackPayloadError::UnknownAction { found: clip(other) });
        }
    };
    let value = action.value.ok_or(SlackPayloadError::MissingValue)?;
    let request_id = parse_id(&value).ok_or_else(|| SlackPayloadError::InvalidRequestId {
        found: clip(&value),
    })?;

    let user = raw.user.ok_or(SlackPayloadError::MissingUser)?;
    let user_id = user.id.ok_or(SlackPayloadError::MissingUser)?;
    // Slack ids are short upper-case alphanumerics (U024BE7LH, W0123ABC).
    if user_id.is_empty()
        || user_id.len() > 64
        || !user_id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return Err(SlackPayloadError::InvalidUserId {
            found: clip(&user_id),
        });
    }

    let response_url = match raw.response_url {
        Some(url)
            if url.len() <= 2048
                && url.starts_with("https://")
                && url.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Some(url)
        }
        Some(_) => return Err(SlackPayloadError::InvalidResponseUrl),
        None => None,
    };

    Ok(Interaction {
        choice,
        request_id,
        user_id,
        user_name: user.username.or(user.name),
        team_id: raw.team.and_then(|t| t.id).or(user.team_id),
        response_url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approvals::sample_notice;
    use crate::approvals::text::units;

    fn str_of(v: &Value) -> &str {
        v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
    }

    /// Slack's documented limits, checked on every block a message holds.
    fn assert_within_limits(m: &Value) {
        let blocks = m["blocks"].as_array().expect("blocks is an array");
        assert!(!blocks.is_empty() && blocks.len() <= MAX_BLOCKS);
        for b in blocks {
            match str_of(&b["type"]) {
                "header" => {
                    assert_eq!(b["text"]["type"], "plain_text");
                    assert!(units(str_of(&b["text"]["text"])) <= MAX_HEADER_TEXT, "{b}");
                }
                "section" => {
                    if let Some(t) = b["text"]["text"].as_str() {
                        assert!(units(t) <= MAX_SECTION_TEXT, "{} units", units(t));
                    }
                    if let Some(fields) = b["fields"].as_array() {
                        assert!(fields.len() <= 10);
                        for f in fields {
                            assert!(units(str_of(&f["text"])) <= MAX_FIELD_TEXT);
                        }
                    }
                }
                "context" => {
                    let elements = b["elements"].as_array().expect("context elements");
                    assert!(elements.len() <= 10);
                    for e in elements {
                        assert!(units(str_of(&e["text"])) <= MAX_SECTION_TEXT);
                    }
                }
                "actions" => {
                    let elements = b["elements"].as_array().expect("action elements");
                    assert!(elements.len() <= 25);
                    for e in elements {
                        assert!(units(str_of(&e["text"]["text"])) <= 75);
                        assert!(units(str_of(&e["value"])) <= 2000);
                        assert!(units(str_of(&e["action_id"])) <= 255);
                        if let Some(c) = e.get("confirm") {
                            assert!(units(str_of(&c["title"]["text"])) <= 100);
                            assert!(units(str_of(&c["text"]["text"])) <= 300);
                            assert!(units(str_of(&c["confirm"]["text"])) <= 30);
                            assert!(units(str_of(&c["deny"]["text"])) <= 30);
                        }
                    }
                }
                other => panic!("unexpected block type {other}"),
            }
        }
    }

    /// Every mrkdwn text object in `v`, and the top-level `text`.
    fn mrkdwn_texts(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                if o.get("type") == Some(&json!("mrkdwn")) {
                    out.push(str_of(&v["text"]).to_string());
                    assert_eq!(v["verbatim"], true, "{v}");
                }
                o.values().for_each(|x| mrkdwn_texts(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| mrkdwn_texts(x, out)),
            _ => {}
        }
    }

    /// Outside our own date and quote markup, no mrkdwn text holds a raw `<`, `>` or a bare `&`:
    /// nothing the agent wrote can become a link, a mention or a date.
    fn assert_escaped(m: &Value) {
        let date =
            regex::Regex::new(r"<!date\^\d+\^\{date_short_pretty\} at \{time_secs\}\|[0-9T:.Z-]+>")
                .expect("regex");
        let entity = regex::Regex::new(r"&(amp|lt|gt);").expect("regex");
        // Our quote markers, the only raw `>` we write.
        let quote = regex::Regex::new(r"(?m)^> ").expect("regex");
        let mut texts = vec![str_of(&m["text"]).to_string()];
        mrkdwn_texts(&m["blocks"], &mut texts);
        for t in texts {
            let t = date.replace_all(&t, "");
            let t = quote.replace_all(&t, "");
            let t = entity.replace_all(&t, "").into_owned();
            assert!(!t.contains(['<', '>', '&']), "unescaped: {t:.200}");
        }
    }

    fn block<'a>(m: &'a Value, kind: &str, containing: &str) -> &'a Value {
        m["blocks"]
            .as_array()
            .and_then(|b| {
                b.iter()
                    .find(|b| b["type"] == kind && b.to_string().contains(containing))
            })
            .unwrap_or_else(|| panic!("no {kind} block containing {containing:?}"))
    }

    /// The documented shape: what the integration receiver checks too.
    #[test]
    fn the_message_has_slacks_required_fields() {
        let m = message(&sample_notice(), Some("C0123ABC"));
        assert_eq!(m["channel"], "C0123ABC");
        assert!(message(&sample_notice(), None).get("channel").is_none());
        assert_eq!(
            m["text"],
            "Approval needed on agent-host-1: agent ci-bot wants to run pg_dump --table customers -f '/tmp/out file.sql'"
        );
        assert_eq!(m["unfurl_links"], false);
        assert_eq!(m["unfurl_media"], false);
        assert_within_limits(&m);
        assert_escaped(&m);

        let blocks = m["blocks"].as_array().expect("blocks");
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(
            blocks[0]["text"]["text"],
            "agent ci-bot wants to run pg_dump --table customers -f '/tmp/out file.sql'"
        );
        let fields = block(&m, "section", "*Agent*")["fields"].to_string();
        for expected in [
            "*Agent*\\nci-bot",
            "*Host*\\nagent-host-1",
            "*User*\\nci (uid 1001)",
            "*PID*\\n4242",
            "*Request*\\n42",
        ] {
            assert!(fields.contains(expected), "{expected} in {fields}");
        }
        assert_eq!(
            block(&m, "section", "*Command*")["text"]["text"],
            "*Command*\n```\npg_dump --table customers -f '/tmp/out file.sql'\n```"
        );
        assert_eq!(
            block(&m, "section", "*Program*")["text"]["text"],
            "*Program*: `/usr/bin/pg_dump`\n*Executable*: `/usr/lib/postgresql/16/bin/pg_dump`\n*Working directory*: `/srv/app`"
        );
        let policy = str_of(&block(&m, "section", "*Rule*")["text"]["text"]).to_string();
        assert_eq!(
            policy,
            "*Rule*: `db-export` · severity *high*\n*Why it asks*: Exports of customer data need a human\n*Controls*: SOC2:CC6.1 NIST-800-53:AC-6(9)\n*Grants*: a reviewer may allow up to 5 uses within 1h (review page or CLI)"
        );
        assert_eq!(
            block(&m, "section", "rationale")["text"]["text"],
            "*Agent's rationale* _(unverified: the agent wrote this itself)_\n> Exporting the customers table for the &lt;weekly&gt; report"
        );
        assert_eq!(
            block(&m, "section", "Recent activity")["text"]["text"],
            "*Recent activity* (last 1 of 1, oldest first)\n• `exec /usr/bin/psql -c '\\dt'`"
        );
        assert_eq!(
            block(&m, "context", "Expires")["elements"][0]["text"],
            "Expires <!date^1790000300^{date_short_pretty} at {time_secs}|2026-09-21T14:18:20.000Z> (answer within 5m). If nobody answers: *deny* (the process is killed)."
        );

        let actions = &block(&m, "actions", APPROVE_ACTION_ID)["elements"];
        let approve = &actions[0];
        assert_eq!(approve["type"], "button");
        assert_eq!(
            approve["text"],
            json!({ "type": "plain_text", "text": "Approve", "emoji": false })
        );
        assert_eq!(approve["style"], "primary");
        assert_eq!(approve["action_id"], "interceptor_approve");
        assert_eq!(approve["value"], "42");
        assert_eq!(approve["confirm"]["confirm"]["text"], "Approve");
        let deny = &actions[1];
        assert_eq!(deny["type"], "button");
        assert_eq!(deny["text"]["text"], "Deny");
        assert_eq!(deny["style"], "danger");
        assert_eq!(deny["action_id"], "interceptor_deny");
        assert_eq!(deny["value"], "42");
        assert_eq!(actions.as_array().map(Vec::len), Some(2));
        // No review links: they are per-reviewer secrets and a channel is shared.
        assert!(!m.to_string().contains("/r/AAAA"));
    }

    #[test]
    fn an_open_says_which_file_and_who_opened_it() {
        let mut n = sample_notice();
        n.operation = "open".into();
        n.access = vec!["read".into()];
        n.target = "/etc/shadow".into();
        n.rationale = None;
        n.recent.clear();
        let m = message(&n, None);
        assert!(
            block(&m, "section", "*Opened by*")
                .to_string()
                .contains("pg_dump")
        );
        assert!(
            block(&m, "section", "*File*")
                .to_string()
                .contains("`/etc/shadow`")
        );
        assert!(
            block(&m, "section", "*Operation*")
                .to_string()
                .contains("open (read)")
        );
        block(&m, "context", "The agent gave no rationale.");
        assert!(!m.to_string().contains("Recent activity"));
        assert_within_limits(&m);
    }

    fn hostile_notice() -> Notice {
        let mut n = sample_notice();
        n.agent = "evil<agent>".into();
        n.host = "h&st".into();
        n.argv = vec![
            "sh".into(),
            "-c".into(),
            "<script>alert(1)</script> & echo `id` ```breakout``` *bold* <!channel> <https://evil.example|Approve>\nrm -rf /".into(),
            "A".repeat(100_000),
        ];
        n.cwd = "/tmp/`pwd`<b>".into();
        n.rationale = Some(format!(
            "Routine <!here> maintenance\n> *APPROVED BY SECURITY*\n{}{}",
            "line\n".repeat(50),
            "x".repeat(5000)
        ));
        n.recent = (0..30)
            .map(|i| format!("exec <x> {i} {}", "y".repeat(500)))
            .collect();
        n.reason = Some("<@U123> & co".into());
        n
    }

    #[test]
    fn agent_text_is_escaped_and_cannot_break_out_of_its_block() {
        let m = message(&hostile_notice(), Some("C1"));
        assert_within_limits(&m);
        assert_escaped(&m);

        let command = str_of(&block(&m, "section", "*Command*")["text"]["text"]).to_string();
        assert!(command.starts_with(
            "*Command*\n```\nsh -c $'&lt;script&gt;alert(1)&lt;/script&gt; &amp; echo ˋidˋ ˋˋˋbreakoutˋˋˋ *bold* &lt;!channel&gt; &lt;https://evil.example|Approve&gt;\\nrm -rf /' AAAA"
        ), "{command:.300}");
        // Exactly our two fences: the agent's backticks cannot close the block.
        assert_eq!(command.matches("```").count(), 2, "{command:.300}");
        assert!(
            command.ends_with(&format!("more characters cut]\n```{BACKTICK_NOTE}")),
            "{command}"
        );
        // The newline inside the argument is shown, not obeyed.
        assert_eq!(command.matches('\n').count(), 3);

        let paths =
            str_of(&block(&m, "section", "*Working directory*")["text"]["text"]).to_string();
        assert!(
            paths.ends_with(&format!("`/tmp/ˋpwdˋ&lt;b&gt;`{BACKTICK_NOTE}")),
            "{paths}"
        );

        let rationale = str_of(&block(&m, "section", "rationale")["text"]["text"]).to_string();
        let mut lines = rationale.lines();
        assert_eq!(
            lines.next(),
            Some("*Agent's rationale* _(unverified: the agent wrote this itself)_")
        );
        assert!(
            lines.all(|l| l.starts_with("> ")),
            "every line stays quoted: {rationale}"
        );
        assert!(
            rationale
                .contains("> Routine &lt;!here&gt; maintenance\n> &gt; *APPROVED BY SECURITY*")
        );
        assert!(rationale.contains("more lines cut]"), "{rationale}");

        let recent = str_of(&block(&m, "section", "Recent activity")["text"]["text"]).to_string();
        assert!(
            recent.starts_with(
                "*Recent activity* (last 5 of 30, oldest first)\n• `exec &lt;x&gt; 25 yyy"
            ),
            "{recent:.200}"
        );
        assert_eq!(recent.lines().count(), 6);

        let fields = block(&m, "section", "*Agent*")["fields"].to_string();
        assert!(
            fields.contains("evil&lt;agent&gt;") && fields.contains("h&amp;st"),
            "{fields}"
        );
        let header = str_of(&m["blocks"][0]["text"]["text"]);
        assert!(!header.contains('\n'), "{header}");
    }

    #[test]
    fn hidden_characters_in_argv_are_spelled_out() {
        let mut n = sample_notice();
        n.argv = vec![
            "cat".into(),
            "\u{202E}txt.exe".into(),
            "a\u{200B}b".into(),
            "x\ny".into(),
        ];
        let m = message(&n, None);
        assert_eq!(
            m["blocks"][0]["text"]["text"],
            "agent ci-bot wants to run cat '\\u{202e}txt.exe' 'a\\u{200b}b' 'x\\ny'"
        );
        let command = str_of(&block(&m, "section", "*Command*")["text"]["text"]).to_string();
        assert_eq!(
            command,
            "*Command*\n```\ncat $'\\u202etxt.exe' $'a\\u200bb' $'x\\ny'\n```"
        );
    }

    #[test]
    fn very_long_everything_is_cut_with_a_marker_never_refused() {
        let mut n = hostile_notice();
        let huge = "Z".repeat(50_000);
        n.agent = huge.clone();
        n.host = huge.clone();
        n.user = Some(huge.clone());
        n.target = huge.clone();
        n.exe = huge.clone();
        n.cwd = huge.clone();
        n.rule = huge.clone();
        n.reason = Some(huge.clone());
        n.severity = Some(huge.clone());
        n.controls = vec![huge.clone(); 40];
        n.on_timeout = huge.clone();
        let m = message(&n, None);
        assert_within_limits(&m);
        assert!(units(str_of(&m["text"])) <= 2 * FALLBACK_MAX);
        assert!(m.to_string().matches("more characters cut]").count() >= 10);
    }

    /// What Slack posts when someone clicks `button` on `message`: the whole message
    /// comes back inside the payload, form-encoded.
    fn click(message: &Value, button: usize, user: Value) -> Vec<u8> {
        let actions = message["blocks"]
            .as_array()
            .and_then(|b| b.iter().find(|b| b["type"] == "actions"))
            .expect("an actions block");
        let clicked = &actions["elements"][button];
        let payload = json!({
            "type": "block_actions",
            "user": user,
            "api_app_id": "A0TESTAPP01",
            "token": "legacyVerificationTokenX",
            "container": { "type": "message", "message_ts": "1790000001.000100", "channel_id": "C0123ABC", "is_ephemeral": false },
            "trigger_id": "1790000001.1234567890.0123456789abcdef0123456789abcdef",
            "team": { "id": "T0TEAM001", "domain": "example" },
            "enterprise": null,
            "is_enterprise_install": false,
            "channel": { "id": "C0123ABC", "name": "approvals" },
            "message": { "type": "message", "subtype": "bot_message", "text": message["text"], "ts": "1790000001.000100", "bot_id": "B0BOT0001", "blocks": message["blocks"] },
            "state": { "values": {} },
            "response_url": "https://hooks.slack.com/actions/T0TEAM001/1234567890/AbCdEfGhIjKlMnOpQrStUvWx",
            "actions": [{
                "action_id": clicked["action_id"],
                "block_id": "a1B2c",
                "text": clicked["text"],
                "value": clicked["value"],
                "style": clicked["style"],
                "type": "button",
                "action_ts": "1790000002.000200",
            }],
        });
        form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish()
            .into_bytes()
    }

    fn alice() -> Value {
        json!({ "id": "U0ALICE01", "username": "alice", "name": "alice", "team_id": "T0TEAM001" })
    }

    #[test]
    fn a_click_on_our_message_reads_back() {
        let m = message(&sample_notice(), None);
        let approve = parse_interaction(&click(&m, 0, alice())).expect("approve parses");
        assert_eq!(
            approve,
            Interaction {
                choice: Choice::Approve,
                request_id: 42,
                user_id: "U0ALICE01".into(),
                user_name: Some("alice".into()),
                team_id: Some("T0TEAM001".into()),
                response_url: Some(
                    "https://hooks.slack.com/actions/T0TEAM001/1234567890/AbCdEfGhIjKlMnOpQrStUvWx"
                        .into()
                ),
            }
        );
        let deny = parse_interaction(&click(&m, 1, json!({ "id": "W0BOB0001", "name": "bob" })))
            .expect("deny parses");
        assert_eq!(deny.choice, Choice::Deny);
        assert_eq!(deny.user_name.as_deref(), Some("bob"));
        assert_eq!(deny.team_id.as_deref(), Some("T0TEAM001"));
    }

    /// Slack echoes the message in every click, so the largest message we can write
    /// must still make a click under the body limit: every string at its budget, in
    /// characters that form-encode to nine bytes (€) or JSON- and form-encode to six (").
    #[test]
    fn a_click_on_the_largest_message_fits_the_body_limit() {
        for fill in ['€', '"', '<'] {
            let huge: String = std::iter::repeat_n(fill, 20_000).collect();
            let mut n = sample_notice();
            n.agent = huge.clone();
            n.host = huge.clone();
            n.user = Some(huge.clone());
            n.operation = huge.clone();
            n.access = vec![huge.clone()];
            n.target = huge.clone();
            n.exe = huge.clone();
            n.cwd = huge.clone();
            n.argv = vec![huge.clone(); 3];
            n.rationale = Some(huge.clone());
            n.recent = vec![huge.clone(); 30];
            n.rule = huge.clone();
            n.reason = Some(huge.clone());
            n.severity = Some(huge.clone());
            n.controls = vec![huge.clone(); 30];
            n.on_timeout = huge.clone();
            n.id = u64::MAX;
            let m = message(&n, None);
            assert_within_limits(&m);
            let body = click(&m, 0, alice());
            // Leave room for fields Slack adds that this simulation does not.
            assert!(
                body.len() <= MAX_INTERACTION_BYTES - 8 * 1024,
                "{fill}: {} bytes",
                body.len()
            );
            let i = parse_interaction(&body).expect("the click parses");
            assert_eq!(i.request_id, u64::MAX);
        }
    }

    fn payload(v: Value) -> Vec<u8> {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &v.to_string())
            .finish()
            .into_bytes()
    }

    fn minimal(action_id: &str, value: &str) -> Value {
        json!({
            "type": "block_actions",
            "user": { "id": "U0ALICE01" },
            "actions": [{ "action_id": action_id, "value": value, "type": "button" }],
        })
    }

    #[test]
    fn interactions_we_did_not_send_are_refused() {
        use SlackPayloadError as E;
        let ok = parse_interaction(&payload(minimal(DENY_ACTION_ID, "7"))).expect("minimal parses");
        assert_eq!(
            (
                ok.choice,
                ok.request_id,
                ok.user_name,
                ok.team_id,
                ok.response_url
            ),
            (Choice::Deny, 7, None, None, None)
        );

        let err = |body: &[u8]| parse_interaction(body).expect_err("refused");
        assert!(
            matches!(err(&payload(minimal("interceptor_approve_all", "7"))), E::UnknownAction { found } if found == "interceptor_approve_all")
        );
        for bad in [
            "42abc",
            "+42",
            "-1",
            "",
            " 42",
            "4.2",
            "18446744073709551616",
        ] {
            assert!(
                matches!(
                    err(&payload(minimal(APPROVE_ACTION_ID, bad))),
                    E::InvalidRequestId { .. }
                ),
                "{bad:?}"
            );
        }
        let mut v = minimal(APPROVE_ACTION_ID, "7");
        v["actions"][0].as_object_mut().map(|a| a.remove("value"));
        assert!(matches!(err(&payload(v)), E::MissingValue));

        let mut v = minimal(APPROVE_ACTION_ID, "7");
        v.as_object_mut().map(|o| o.remove("user"));
        assert!(matches!(err(&payload(v)), E::MissingUser));
        let mut v = minimal(APPROVE_ACTION_ID, "7");
        v["user"] = json!({ "name": "alice" });
        assert!(matches!(err(&payload(v)), E::MissingUser));
        for id in ["", "u0alice", "<@U0ALICE>", "U0 ALICE"] {
            let mut v = minimal(APPROVE_ACTION_ID, "7");
            v["user"]["id"] = json!(id);
            assert!(
                matches!(err(&payload(v)), E::InvalidUserId { .. }),
                "{id:?}"
            );
        }

        for kind in [
            json!("view_submission"),
            json!("interactive_message"),
            json!(null),
            json!(""),
        ] {
            let mut v = minimal(APPROVE_ACTION_ID, "7");
            v["type"] = kind.clone();
            assert!(matches!(err(&payload(v)), E::WrongType { .. }), "{kind}");
        }
        let mut v = minimal(APPROVE_ACTION_ID, "7");
        v["actions"] = json!([]);
        assert!(matches!(err(&payload(v)), E::NoAction));
        let mut v = minimal(APPROVE_ACTION_ID, "7");
        v.as_object_mut().map(|o| o.remove("actions"));
        assert!(matches!(err(&payload(v)), E::NoAction));
        let mut v = minimal(APPROVE_ACTION_ID, "7");
        v["actions"] = json!([v["actions"][0], { "action_id": DENY_ACTION_ID, "value": "7" }]);
        assert!(matches!(err(&payload(v)), E::MultipleActions { count: 2 }));

        for url in [
            "http://hooks.slack.com/x",
            "file:///etc/passwd",
            "https://a b",
        ] {
            let mut v = minimal(APPROVE_ACTION_ID, "7");
            v["response_url"] = json!(url);
            assert!(matches!(err(&payload(v)), E::InvalidResponseUrl), "{url}");
        }

        // Not form-encoded at all.
        assert!(matches!(
            err(minimal(APPROVE_ACTION_ID, "7").to_string().as_bytes()),
            E::NotFormEncoded
        ));
        assert!(matches!(err(b"payload=%7B%7D\n"), E::NotFormEncoded));
        assert!(matches!(err(b"payload={} "), E::NotFormEncoded));
        assert!(matches!(err(b""), E::MissingPayload));
        assert!(matches!(err(b"token=abc&user=U1"), E::MissingPayload));
        let twice = [
            payload(minimal(APPROVE_ACTION_ID, "7")),
            b"&".to_vec(),
            payload(minimal(DENY_ACTION_ID, "7")),
        ]
        .concat();
        assert!(matches!(err(&twice), E::DuplicatePayload));
        assert!(matches!(err(b"payload=not+json"), E::InvalidJson(_)));
        assert!(matches!(err(b"payload=%5B1%2C2%5D"), E::InvalidJson(_)));

        // Size: the limit itself is fine, one byte more is not.
        let mut at_limit = payload(minimal(APPROVE_ACTION_ID, "7"));
        at_limit.extend(b"&pad=".iter());
        at_limit.resize(MAX_INTERACTION_BYTES, b'x');
        assert!(parse_interaction(&at_limit).is_ok());
        at_limit.push(b'x');
        assert!(
            matches!(err(&at_limit), E::TooLarge { len, max: MAX_INTERACTION_BYTES } if len == MAX_INTERACTION_BYTES + 1)
        );
    }

    #[test]
    fn error_messages_do_not_echo_long_or_hidden_input() {
        let long = format!("\u{202E}{}", "q".repeat(10_000));
        let e = parse_interaction(&payload(minimal(&long, "7"))).expect_err("refused");
        let shown = e.to_string();
        assert!(shown.len() < 200 && shown.contains("\\u{202e}"), "{shown}");
    }

    // Slack's worked example from "Verifying requests from Slack",
    // https://api.slack.com/authentication/verifying-requests-from-slack
    // (also at https://docs.slack.dev/authentication/verifying-requests-from-slack).
    const DOC_SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";
    const DOC_TIMESTAMP: &str = "1531420618";
    const DOC_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const DOC_SIGNATURE: &str =
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
    const DOC_NOW: u64 = 1_531_420_618;

    #[test]
    fn slacks_documented_example_verifies() {
        assert_eq!(
            verify_request(DOC_SECRET, DOC_TIMESTAMP, DOC_SIGNATURE, DOC_BODY, DOC_NOW),
            Ok(())
        );
        assert_eq!(
            verify_request(
                DOC_SECRET,
                DOC_TIMESTAMP,
                DOC_SIGNATURE,
                DOC_BODY,
                DOC_NOW + 300
            ),
            Ok(())
        );
        assert_eq!(
            verify_request(
                DOC_SECRET,
                DOC_TIMESTAMP,
                DOC_SIGNATURE,
                DOC_BODY,
                DOC_NOW - 300
            ),
            Ok(())
        );
    }

    #[test]
    fn a_bad_signature_is_refused() {
        let flipped = DOC_SIGNATURE.replacen("a2114d", "a2114e", 1);
        assert_eq!(
            verify_request(DOC_SECRET, DOC_TIMESTAMP, &flipped, DOC_BODY, DOC_NOW),
            Err(SignatureError::Mismatch)
        );
        let mut body = DOC_BODY.to_vec();
        body.extend(b"&extra=1");
        assert_eq!(
            verify_request(DOC_SECRET, DOC_TIMESTAMP, DOC_SIGNATURE, &body, DOC_NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_request(
                b"another-signing-secret",
                DOC_TIMESTAMP,
                DOC_SIGNATURE,
                DOC_BODY,
                DOC_NOW
            ),
            Err(SignatureError::Mismatch)
        );
        // Our webhook's v1 scheme is not Slack's.
        let ours = sign::sign(DOC_SECRET, DOC_NOW, DOC_BODY);
        assert_eq!(
            verify_request(DOC_SECRET, DOC_TIMESTAMP, &ours, DOC_BODY, DOC_NOW),
            Err(SignatureError::UnknownVersion {
                found: "v1".into(),
                expected: "v0"
            })
        );
    }

    #[test]
    fn a_replay_outside_five_minutes_is_refused() {
        assert_eq!(
            verify_request(
                DOC_SECRET,
                DOC_TIMESTAMP,
                DOC_SIGNATURE,
                DOC_BODY,
                DOC_NOW + 301
            ),
            Err(SignatureError::Stale {
                age_secs: 301,
                window_secs: 300
            })
        );
        assert_eq!(
            verify_request(
                DOC_SECRET,
                DOC_TIMESTAMP,
                DOC_SIGNATURE,
                DOC_BODY,
                DOC_NOW + 86_400
            ),
            Err(SignatureError::Stale {
                age_secs: 86_400,
                window_secs: 300
            })
        );
        assert_eq!(
            verify_request(
                DOC_SECRET,
                DOC_TIMESTAMP,
                DOC_SIGNATURE,
                DOC_BODY,
                DOC_NOW - 301
            ),
            Err(SignatureError::Future {
                ahead_secs: 301,
                window_secs: 300
            })
        );
    }

    #[test]
    fn malformed_slack_headers_are_refused() {
        let check = |ts: &str, sig: &str| verify_request(DOC_SECRET, ts, sig, DOC_BODY, DOC_NOW);
        let malformed = Err(SignatureError::MalformedSignature { expected: "v0" });
        assert_eq!(
            check("", DOC_SIGNATURE),
            Err(SignatureError::MissingTimestamp)
        );
        assert_eq!(
            check("1531420618.000", DOC_SIGNATURE),
            Err(SignatureError::MalformedTimestamp)
        );
        assert_eq!(
            check("now", DOC_SIGNATURE),
            Err(SignatureError::MalformedTimestamp)
        );
        assert_eq!(
            check(DOC_TIMESTAMP, ""),
            Err(SignatureError::MissingSignature)
        );
        assert_eq!(check(DOC_TIMESTAMP, &DOC_SIGNATURE[3..]), malformed);
        assert_eq!(check(DOC_TIMESTAMP, "v0="), malformed);
        assert_eq!(check(DOC_TIMESTAMP, &DOC_SIGNATURE[..40]), malformed);
        assert_eq!(
            check(DOC_TIMESTAMP, &DOC_SIGNATURE.replace('a', "g")),
            malformed
        );
    }

    #[test]
    fn the_decided_message_replaces_the_original() {
        let m = decided_message("agent ci-bot wants to run <script>", "approved", "alice");
        assert_eq!(m["replace_original"], true);
        assert_eq!(
            m["text"],
            ":white_check_mark: *Approved* by alice: agent ci-bot wants to run &lt;script&gt;"
        );
        assert_eq!(m["blocks"][0]["type"], "section");
        assert_eq!(
            m["blocks"][0]["text"]["text"],
            ":white_check_mark: *Approved* by alice\nagent ci-bot wants to run &lt;script&gt;"
        );
        assert_escaped(&m);
        assert_within_limits(&m);
        assert!(
            decided_message("x", "denied", "bob")["text"]
                .to_string()
                .contains(":no_entry: *Denied* by bob")
        );
        assert!(
            decided_message("x", "expired", "timeout")["text"]
                .to_string()
                .contains(":hourglass: *Expired*")
        );
        let odd = decided_message(&"h".repeat(10_000), "<b>cancelled</b>", "<@U1>");
        assert_escaped(&odd);
        assert_within_limits(&odd);
    }
}
