//! The review page: the HTML a reviewer sees at their personal link, the result pages
//! after they answer, and the parsing of the form they submit.
//!
//! Pure functions only (no I/O, no clock): the daemon looks up the token, checks the CSRF
//! token and the grant limits, and decides; this module renders what it is given and
//! turns a form body into a typed answer. The page works without JavaScript (it has
//! none): a GET only shows, and only the form's POST can decide, so link unfurlers and
//! prefetchers never approve anything (DESIGN §5).
//!
//! Everything shown comes from the agent's side of the world (argv, cwd, environment,
//! rationale) and is hostile by assumption: every value is HTML-escaped, and control and
//! bidirectional-formatting characters are drawn as visible escapes so a reviewer sees
//! the bytes that will run, not a rendering the agent chose.

use std::fmt::{self, Display, Formatter};
use std::time::{Duration, UNIX_EPOCH};

use super::text::is_invisible;
use super::{GrantOffer, Notice};
use crate::procfs::Ancestor;

/// The most a submitted form body may weigh. A comment of [`MAX_COMMENT_CHARS`]
/// characters fits even fully percent-encoded multi-byte text only partly, which is fine:
/// reviewers write sentences, not payloads.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// The longest comment a reviewer may leave (in characters, after decoding). It goes to
/// the audit log and every channel, so it is bounded.
pub const MAX_COMMENT_CHARS: usize = 2000;

/// Grant inputs are pre-filled with the smaller of the offer and these: the reviewer
/// widens a grant on purpose, never by accepting a default.
const DEFAULT_GRANT_MINUTES: u64 = 15;
const DEFAULT_GRANT_USES: u32 = 3;

/// What the review page shows one reviewer about one pending request.
#[derive(Debug, Clone, Copy)]
pub struct ReviewPage<'a> {
    pub notice: &'a Notice,
    /// The reviewer this link belongs to.
    pub reviewer: &'a str,
    /// The token the form posts back (the daemon checks it before deciding).
    pub csrf: &'a str,
    /// Where the form posts, e.g. `/r/{token}`.
    pub action: &'a str,
    /// Unix ms at render time (the page is static: the time left is as of this instant).
    pub now_ms: u64,
    /// How many approvals the request needs in all.
    pub approvals_needed: u32,
    /// How many it already has.
    pub approvals_so_far: u32,
}

/// The full HTML5 review page for `page`.
pub fn render_review(page: &ReviewPage<'_>) -> String {
    page.to_string()
}

/// "4 min 12 s left", "38 s left", "1 h 5 min left", or "expired" once the deadline has
/// passed. Seconds are rounded up, so the page never says "0 s left" for a live request.
pub fn time_left(deadline_ms: u64, now_ms: u64) -> String {
    let Some(remaining_ms) = deadline_ms.checked_sub(now_ms).filter(|&ms| ms > 0) else {
        return "expired".to_string();
    };
    let secs = remaining_ms.div_ceil(1000);
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m, s) {
        (0, 0, s) => format!("{s} s left"),
        (0, m, 0) => format!("{m} min left"),
        (0, m, s) => format!("{m} min {s} s left"),
        (h, 0, _) => format!("{h} h left"),
        (h, m, _) => format!("{h} h {m} min left"),
    }
}

/// Which result page to show after a reviewer answers (or tries to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    /// The approval was recorded.
    Approved,
    /// The approval was recorded with a grant for later identical operations.
    ApprovedWithGrant,
    /// The denial was recorded.
    Denied,
    /// The request timed out before the answer came.
    Expired,
    /// Someone (or something) decided the request first.
    AlreadyDecided,
    /// The token is unknown, malformed or forged. One page for all three, so a prober
    /// learns nothing about which tokens exist.
    InvalidLink,
    /// The form's CSRF token did not match.
    Forbidden,
    /// The form could not be read, or asked for more than the rule allows.
    BadForm,
    /// The daemon failed to record the answer.
    Error,
}

impl OutcomeKind {
    /// The HTTP status of the result page.
    pub fn status(self) -> u16 {
        match self {
            Self::Approved | Self::ApprovedWithGrant | Self::Denied => 200,
            Self::Expired => 410,
            Self::AlreadyDecided => 409,
            Self::InvalidLink => 404,
            Self::Forbidden => 403,
            Self::BadForm => 400,
            Self::Error => 500,
        }
    }

    /// The value of the page's `data-outcome` attribute (what tests and scripts read).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::ApprovedWithGrant => "approved_with_grant",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::AlreadyDecided => "already_decided",
            Self::InvalidLink => "invalid_link",
            Self::Forbidden => "forbidden",
            Self::BadForm => "bad_form",
            Self::Error => "error",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Approved => "Approved",
            Self::ApprovedWithGrant => "Approved with a grant",
            Self::Denied => "Denied",
            Self::Expired => "This request has expired",
            Self::AlreadyDecided => "Already decided",
            Self::InvalidLink => "This link is not valid",
            Self::Forbidden => "The form could not be verified",
            Self::BadForm => "Your answer could not be read",
            Self::Error => "Your answer was not recorded",
        }
    }

    fn explanation(self) -> &'static str {
        match self {
            Self::Approved => "Your approval was recorded.",
            Self::ApprovedWithGrant => {
                "Your approval was recorded, with a grant for the same operation within the \
                 limits you set."
            }
            Self::Denied => "Your denial was recorded.",
            Self::Expired => {
                "Nobody answered in time, so the rule's timeout action applied. Your answer \
                 was not recorded."
            }
            Self::AlreadyDecided => {
                "This request was decided before your answer arrived. Your answer was not \
                 recorded."
            }
            Self::InvalidLink => {
                "This review link is unknown, incomplete or no longer usable. Check that you \
                 opened the whole link you were sent."
            }
            Self::Forbidden => {
                "The form's security token did not match this link. Open your review link \
                 again and answer from the fresh page."
            }
            Self::BadForm => {
                "Nothing was decided. Go back to your review link and answer again within \
                 the limits shown there."
            }
            Self::Error => {
                "The daemon could not record your answer. The request is still pending if \
                 its deadline has not passed; try again or use another channel."
            }
        }
    }

    fn tone(self) -> &'static str {
        match self {
            Self::Approved | Self::ApprovedWithGrant => "good",
            Self::Denied => "bad",
            _ => "neutral",
        }
    }
}

/// A result page and its HTTP status. `detail` (escaped) adds a line for the reviewer,
/// except on [`OutcomeKind::InvalidLink`], whose page is always the same.
pub fn render_outcome(kind: OutcomeKind, detail: &str) -> (u16, String) {
    let detail = match kind {
        OutcomeKind::InvalidLink => "",
        _ => detail.trim(),
    };
    (kind.status(), Outcome { kind, detail }.to_string())
}

/// A submitted review form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewForm {
    pub csrf: String,
    pub decision: FormDecision,
    /// The reviewer's comment (line endings normalised to `\n`), `None` when blank.
    pub comment: Option<String>,
}

/// The button the reviewer pressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormDecision {
    Approve,
    /// Approve, and let later identical operations through for `minutes` or `uses`,
    /// whichever runs out first. The caller checks both against the rule's offer.
    ApproveGrant {
        minutes: u32,
        uses: u32,
    },
    Deny,
}

/// Why a submitted form was refused. Values quoted from the form are cut short: they are
/// the client's, and the message may be logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("the form is {0} bytes; the limit is {MAX_FORM_BYTES}")]
    TooLarge(usize),
    #[error("the form has no `{0}` field")]
    Missing(&'static str),
    #[error("the form has the `{0}` field more than once")]
    Duplicate(String),
    #[error("the form has an unknown field {0:?}")]
    UnknownField(String),
    #[error("unknown decision {0:?} (expected approve, approve_grant or deny)")]
    UnknownDecision(String),
    #[error("the comment is {0} characters; the limit is {MAX_COMMENT_CHARS}")]
    CommentTooLong(usize),
    #[error("`{field}` must be a whole number greater than zero, not {value:?}")]
    BadGrantValue { field: &'static str, value: String },
}

/// The fields the review form sends; anything else is refused.
const FIELDS: [&str; 5] = ["csrf", "decision", "comment", "grant_minutes", "grant_uses"];

/// Parses an `application/x-www-form-urlencoded` review form.
///
/// The grant inputs share the one form, so a browser sends them with every button; they
/// are read (and must be valid) only when the decision is `approve_grant`, so a reviewer
/// can always deny whatever they typed there.
pub fn parse_form(body: &[u8]) -> Result<ReviewForm, FormError> {
    if body.len() > MAX_FORM_BYTES {
        return Err(FormError::TooLarge(body.len()));
    }
    let mut values: [Option<String>; FIELDS.len()] = Default::default();
    for (name, value) in form_urlencoded::parse(body) {
        let Some(i) = FIELDS.iter().position(|f| *f == name) else {
            return Err(FormError::UnknownField(cut(&name)));
        };
        if values[i].is_some() {
            return Err(FormError::Duplicate(FIELDS[i].to_string()));
        }
        values[i] = Some(value.into_owned());
    }
    let [csrf, decision, comment, minutes, uses] = values;

    let csrf = csrf
        .filter(|c| !c.is_empty())
        .ok_or(FormError::Missing("csrf"))?;
    let decision = match decision.as_deref() {
        None | Some("") => return Err(FormError::Missing("decision")),
        Some("approve") => FormDecision::Approve,
        Some("deny") => FormDecision::Deny,
        Some("approve_grant") => FormDecision::ApproveGrant {
            minutes: grant_value("grant_minutes", minutes)?,
            uses: grant_value("grant_uses", uses)?,
        },
        Some(other) => return Err(FormError::UnknownDecision(cut(other))),
    };
    let comment = match comment {
        // Browsers send a textarea's line breaks as CRLF; the audit log keeps one form.
        Some(c) if !c.trim().is_empty() => {
            let c = c.replace("\r\n", "\n");
            let chars = c.chars().count();
            if chars > MAX_COMMENT_CHARS {
                return Err(FormError::CommentTooLong(chars));
            }
            Some(c)
        }
        _ => None,
    };
    Ok(ReviewForm {
        csrf,
        decision,
        comment,
    })
}

/// A grant input: ASCII digits only (no sign, no spaces), at least 1, fits a u32.
fn grant_value(field: &'static str, value: Option<String>) -> Result<u32, FormError> {
    let value = value.ok_or(FormError::Missing(field))?;
    match value.parse::<u32>() {
        Ok(n) if n > 0 && value.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(FormError::BadGrantValue {
            field,
            value: cut(&value),
        }),
    }
}

/// At most 64 characters of a client-supplied value, for error messages.
fn cut(s: &str) -> String {
    const SHOWN: usize = 64;
    match s.char_indices().nth(SHOWN) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

// ---- HTML ----

/// Text escaped for HTML text and double- or single-quoted attribute values.
struct Esc<'a>(&'a str);

impl Display for Esc<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// Agent-supplied text shown exactly: escaped, with every control or invisible formatting
/// character drawn as a marked escape (`\n`, `\u{202e}`), so a newline cannot fake a
/// second argument and a bidi override cannot reorder what the reviewer reads.
/// `keep_newlines` leaves `\n` as a line break (for prose such as the rationale).
struct Shown<'a> {
    text: &'a str,
    keep_newlines: bool,
}

fn shown(text: &str) -> Shown<'_> {
    Shown {
        text,
        keep_newlines: false,
    }
}

fn prose(text: &str) -> Shown<'_> {
    Shown {
        text,
        keep_newlines: true,
    }
}

impl Display for Shown<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let mut rest = self.text;
        while let Some((i, c)) = rest
            .char_indices()
            .find(|&(_, c)| is_invisible(c) && !(self.keep_newlines && c == '\n'))
        {
            write!(f, "{}", Esc(&rest[..i]))?;
            let escape = match c {
                '\n' => "\\n".to_string(),
                '\r' => "\\r".to_string(),
                '\t' => "\\t".to_string(),
                c => format!("\\u{{{:x}}}", u32::from(c)),
            };
            write!(
                f,
                "<span class=\"ctl\" title=\"U+{:04X}\">{escape}</span>",
                u32::from(c)
            )?;
            rest = &rest[i + c.len_utf8()..];
        }
        write!(f, "{}", Esc(rest))
    }
}

/// `ms` since the epoch as `2026-09-21T12:00:00Z`.
fn utc(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// The CSS class of a severity badge: a fixed set, never the notice's own text.
fn severity_class(severity: Option<&str>) -> &'static str {
    match severity {
        Some("low") => "sev-low",
        Some("medium") => "sev-medium",
        Some("high") => "sev-high",
        Some("critical") => "sev-critical",
        _ => "sev-none",
    }
}

/// What `on_timeout` means for the agent, in words.
fn on_timeout_words(on_timeout: &str) -> Option<&'static str> {
    match on_timeout {
        "deny" => Some("denied, and the held task is killed"),
        "allow" => Some("allowed to proceed"),
        "audit" => Some("allowed to proceed, and recorded"),
        _ => None,
    }
}

/// No scripts, no external anything; forms post only back to this origin. The inline
/// stylesheet needs 'unsafe-inline' for styles (a hash would have to track every CSS
/// edit); escaping is the defence, this is the second line. The daemon should send the
/// same policy as a header, which also covers framing.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
                   form-action 'self'; base-uri 'none'";

const STYLE: &str = r#"
:root {
  color-scheme: light dark;
  --bg: #f4f5f7; --card: #ffffff; --fg: #1d2330; --muted: #5c6474; --line: #dde1e8;
  --code-bg: #f0f2f5; --accent: #2457c5;
  --good: #17803d; --good-fg: #ffffff; --bad: #c4231c; --bad-fg: #ffffff;
  --warn-bg: #fff7e0; --warn-line: #e7b416; --warn-fg: #5a4300;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #12151b; --card: #1b1f27; --fg: #e6e9ef; --muted: #9aa3b2; --line: #2d333f;
    --code-bg: #232935; --accent: #7aa2ff;
    --warn-bg: #2e2710; --warn-line: #a07d10; --warn-fg: #f3dc9a;
  }
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body {
  margin: 0; background: var(--bg); color: var(--fg);
  font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
    "Noto Sans", "DejaVu Sans", sans-serif;
}
main { max-width: 56rem; margin: 0 auto; padding: 1.25rem 1rem 3rem; }
.card {
  background: var(--card); border: 1px solid var(--line); border-radius: 12px;
  padding: 1.25rem 1.5rem; margin-bottom: 1rem;
}
header.card { border-top: 4px solid var(--accent); }
.eyebrow { margin: 0; color: var(--muted); font-size: .875rem; letter-spacing: .02em; }
h1 { font-size: 1.6rem; line-height: 1.25; margin: .25rem 0 .5rem; }
h2 { font-size: 1.05rem; margin: 0 0 .75rem; }
.sub { margin-top: 1.25rem; }
.first { margin-top: 0; }
.title-row { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem .75rem; }
.badge {
  display: inline-block; padding: .15rem .6rem; border-radius: 999px; font-size: .8rem;
  font-weight: 600; text-transform: uppercase; letter-spacing: .04em;
  border: 1px solid transparent;
}
.sev-low { background: #e3f1ff; color: #0b4a8b; }
.sev-medium { background: #fff1c9; color: #6b4d00; }
.sev-high { background: #ffe0cc; color: #8a3100; }
.sev-critical { background: #c4231c; color: #ffffff; }
.sev-none { background: var(--code-bg); color: var(--muted); border-color: var(--line); }
.headline { margin: .25rem 0 .75rem; font-size: 1.05rem; overflow-wrap: anywhere; }
.clock { display: flex; flex-wrap: wrap; gap: .25rem 1rem; align-items: baseline; }
#time-left { font-weight: 700; font-size: 1.15rem; }
.expired #time-left { color: var(--bad); }
.muted { color: var(--muted); font-size: .9rem; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .35rem 1rem; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; min-width: 0; overflow-wrap: anywhere; }
@media (max-width: 34rem) {
  dl.facts { grid-template-columns: 1fr; gap: 0; }
  dl.facts dd { margin-bottom: .5rem; }
  .card { padding: 1rem; }
}
code, .mono, textarea {
  font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono",
    "DejaVu Sans Mono", monospace;
  font-size: .9rem;
}
code {
  background: var(--code-bg); border: 1px solid var(--line); border-radius: 4px;
  padding: .05rem .3rem; white-space: pre-wrap; overflow-wrap: anywhere;
  word-break: break-all;
}
ol.argv { list-style: none; margin: 0; padding: 0; }
ol.argv li { display: flex; gap: .6rem; align-items: baseline; padding: .2rem 0; }
ol.argv .idx { color: var(--muted); font-size: .8rem; min-width: 4.2rem; flex: none; }
ul.lines, ol.lines { margin: 0; padding-left: 1.25rem; }
ul.lines li, ol.lines li { margin: .2rem 0; overflow-wrap: anywhere; }
.ctl {
  background: #ffd7d5; color: #7a0c06; border-radius: 3px; padding: 0 .15rem;
  font-weight: 600;
}
.empty { color: var(--muted); font-style: italic; }
.unverified {
  background: var(--warn-bg); border: 1px solid var(--warn-line);
  border-left-width: 6px; border-radius: 8px; padding: .75rem 1rem;
}
.unverified .label {
  margin: 0 0 .4rem; font-weight: 700; font-size: .85rem; color: var(--warn-fg);
  text-transform: uppercase; letter-spacing: .04em;
}
.unverified .said { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
.tags { display: flex; flex-wrap: wrap; gap: .35rem; list-style: none; margin: 0; padding: 0; }
.tags li code { display: inline-block; }
details summary { cursor: pointer; color: var(--muted); margin-bottom: .5rem; }
label { display: block; font-weight: 600; margin: 0 0 .35rem; }
textarea {
  width: 100%; min-height: 6rem; padding: .6rem; border: 1px solid var(--line);
  border-radius: 8px; background: var(--card); color: var(--fg); resize: vertical;
}
.grant {
  border: 1px solid var(--line); border-radius: 8px; padding: .75rem 1rem; margin: 1rem 0;
}
.grant legend { font-weight: 600; padding: 0 .35rem; }
.grant .inputs { display: flex; flex-wrap: wrap; gap: .75rem 1.5rem; }
.grant input {
  width: 7rem; padding: .4rem .5rem; border: 1px solid var(--line); border-radius: 6px;
  font: inherit; background: var(--card); color: var(--fg);
}
.grant .inputs label { font-weight: 400; }
.buttons { display: flex; flex-wrap: wrap; gap: .75rem; margin-top: 1rem; }
button {
  font: inherit; font-weight: 600; padding: .7rem 1.25rem; border-radius: 8px;
  border: 1px solid var(--line); cursor: pointer; background: var(--card); color: var(--fg);
  min-height: 2.75rem;
}
button.approve { background: var(--good); color: var(--good-fg); border-color: var(--good); }
button.grant-button { background: var(--card); color: var(--good); border: 2px solid var(--good); }
button.deny { background: var(--bad); color: var(--bad-fg); border-color: var(--bad); }
@media (max-width: 34rem) { .buttons button { flex: 1 1 100%; } }
button:focus-visible, textarea:focus-visible, input:focus-visible {
  outline: 3px solid var(--accent); outline-offset: 2px;
}
.outcome { text-align: center; padding: 2rem 1.5rem; }
.outcome .mark {
  width: 3rem; height: 3rem; margin: 0 auto .75rem; border-radius: 50%;
  display: flex; align-items: center; justify-content: center; font-size: 1.6rem;
  font-weight: 700; background: var(--code-bg); color: var(--muted);
}
.outcome.good .mark { background: var(--good); color: var(--good-fg); }
.outcome.bad .mark { background: var(--bad); color: var(--bad-fg); }
.outcome .detail { overflow-wrap: anywhere; }
"#;

/// `<!DOCTYPE html>` through `<body><main>`.
fn head(f: &mut Formatter<'_>, title: &str) -> fmt::Result {
    write!(
        f,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <meta name=\"robots\" content=\"noindex\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{}\">\n\
         <title>{} · interceptor</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n",
        Esc(CSP),
        Esc(title),
    )
}

fn foot(f: &mut Formatter<'_>) -> fmt::Result {
    f.write_str("</main>\n</body>\n</html>\n")
}

/// `<dt>label</dt><dd ...>value</dd>`; `value` is already-rendered HTML.
fn fact(f: &mut Formatter<'_>, label: &str, id: &str, value: impl Display) -> fmt::Result {
    let id = if id.is_empty() {
        String::new()
    } else {
        format!(" id=\"{id}\"")
    };
    writeln!(f, "<dt>{}</dt><dd{id}>{value}</dd>", Esc(label))
}

/// A value in a monospace box, shown exactly.
struct Code<'a>(&'a str);

impl Display for Code<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("<span class=\"empty\">(empty)</span>")
        } else {
            write!(f, "<code>{}</code>", shown(self.0))
        }
    }
}

/// A list of monospace lines, or a muted note when there are none.
fn code_list(f: &mut Formatter<'_>, id: &str, items: &[String], none: &str) -> fmt::Result {
    if items.is_empty() {
        return writeln!(f, "<p id=\"{id}\" class=\"muted\">{}</p>", Esc(none));
    }
    writeln!(f, "<ul id=\"{id}\" class=\"lines\">")?;
    for item in items {
        writeln!(f, "<li>{}</li>", Code(item))?;
    }
    writeln!(f, "</ul>")
}

impl ReviewPage<'_> {
    fn header(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let n = self.notice;
        let left = time_left(n.deadline_ms, self.now_ms);
        let expired = left == "expired";
        let severity = n.severity.as_deref();
        writeln!(
            f,
            "<header class=\"card{}\">",
            if expired { " expired" } else { "" }
        )?;
        writeln!(
            f,
            "<p class=\"eyebrow\">interceptor · request #{} · {}</p>",
            n.id,
            Esc(&n.operation)
        )?;
        writeln!(
            f,
            "<div class=\"title-row\"><h1>Approval requested</h1>\
             <span id=\"severity\" class=\"badge {}\">{}</span></div>",
            severity_class(severity),
            match severity {
                Some(s) => format!("{} severity", Esc(s)),
                None => "no severity set".to_string(),
            }
        )?;
        writeln!(
            f,
            "<p id=\"headline\" class=\"headline\">{}</p>",
            shown(&n.headline())
        )?;
        writeln!(
            f,
            "<div class=\"clock\"><span id=\"time-left\">{}</span>\
             <span class=\"muted\">as of {} (reload for the current time); \
             deadline {}</span></div>",
            Esc(&left),
            Esc(&utc(self.now_ms)),
            Esc(&utc(n.deadline_ms)),
        )?;
        let then = match on_timeout_words(&n.on_timeout) {
            Some(words) => words.to_string(),
            None => format!("<code>{}</code>", shown(&n.on_timeout)),
        };
        writeln!(
            f,
            "<p id=\"on-timeout\">If nobody answers by the deadline, the request is {then}.</p>"
        )?;
        writeln!(
            f,
            "<p id=\"reviewer\" class=\"muted\">Reviewing as <strong>{}</strong>. \
             This link is yours alone: do not forward it.</p>",
            shown(self.reviewer)
        )?;
        writeln!(f, "</header>")
    }

    fn who(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let n = self.notice;
        writeln!(
            f,
            "<section class=\"card\" aria-labelledby=\"h-who\">\
             <h2 id=\"h-who\">Who is asking</h2>\n<dl class=\"facts\">"
        )?;
        fact(f, "Agent", "agent", shown(&n.agent))?;
        fact(f, "Host", "host", shown(&n.host))?;
        let user = match &n.user {
            Some(name) => format!("{} (uid {})", shown(name), n.uid),
            None => format!("uid {}", n.uid),
        };
        fact(f, "User", "user", user)?;
        fact(f, "Process", "pid", format_args!("pid {}", n.pid))?;
        fact(
            f,
            "Requested",
            "",
            format_args!("{}", Esc(&utc(n.requested_at_ms))),
        )?;
        writeln!(f, "</dl></section>")
    }

    fn what(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let n = self.notice;
        let is_open = n.operation == "open";
        writeln!(
            f,
            "<section class=\"card\" aria-labelledby=\"h-what\"><h2 id=\"h-what\">{}</h2>\n\
             <dl class=\"facts\">",
            if is_open {
                "What it wants to open"
            } else {
                "What it wants to run"
            }
        )?;
        if is_open {
            fact(f, "File", "target", Code(&n.target))?;
            let access = if n.access.is_empty() {
                "<span class=\"empty\">(not recorded)</span>".to_string()
            } else {
                n.access
                    .iter()
                    .map(|a| format!("<code>{}</code>", shown(a)))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            fact(f, "Access", "access", access)?;
            fact(f, "By program", "exe", Code(&n.exe))?;
        } else {
            fact(f, "Binary", "target", Code(&n.target))?;
            fact(f, "Resolved to", "exe", Code(&n.exe))?;
        }
        fact(f, "Working directory", "cwd", Code(&n.cwd))?;
        writeln!(f, "</dl>")?;
        writeln!(
            f,
            "<h2 class=\"sub\">{} ({} argument{})</h2>",
            if is_open {
                "Its command line"
            } else {
                "Arguments"
            },
            n.argv.len(),
            if n.argv.len() == 1 { "" } else { "s" }
        )?;
        if n.argv.is_empty() {
            writeln!(
                f,
                "<p id=\"argv\" class=\"muted\">No arguments were recorded.</p>"
            )?;
        } else {
            writeln!(f, "<ol id=\"argv\" class=\"argv\">")?;
            for (i, arg) in n.argv.iter().enumerate() {
                writeln!(
                    f,
                    "<li><span class=\"idx\">argv[{i}]</span>{}</li>",
                    Code(arg)
                )?;
            }
            writeln!(f, "</ol>")?;
        }
        writeln!(f, "</section>")
    }

    fn rationale(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "<section class=\"card\" aria-labelledby=\"h-why\">\
             <h2 id=\"h-why\">What the agent says it is doing</h2>"
        )?;
        match self
            .notice
            .rationale
            .as_deref()
            .filter(|r| !r.trim().is_empty())
        {
            Some(said) => writeln!(
                f,
                "<div id=\"rationale\" class=\"unverified\">\
                 <p class=\"label\">Unverified — written by the agent</p>\
                 <p class=\"said\">{}</p></div>",
                prose(said)
            )?,
            None => writeln!(
                f,
                "<div id=\"rationale\" class=\"unverified\">\
                 <p class=\"label\">Unverified — written by the agent</p>\
                 <p class=\"said empty\">The agent gave no rationale.</p></div>"
            )?,
        }
        writeln!(f, "</section>")
    }

    fn why(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let n = self.notice;
        writeln!(
            f,
            "<section class=\"card\" aria-labelledby=\"h-rule\">\
             <h2 id=\"h-rule\">Why it was held</h2>\n<dl class=\"facts\">"
        )?;
        fact(f, "Rule", "rule", Code(&n.rule))?;
        let reason = match &n.reason {
            Some(r) => prose(r).to_string(),
            None => "<span class=\"empty\">(the rule gives none)</span>".to_string(),
        };
        fact(f, "Reason", "reason", reason)?;
        let controls = if n.controls.is_empty() {
            "<span class=\"empty\">none</span>".to_string()
        } else {
            let tags: String = n
                .controls
                .iter()
                .map(|c| format!("<li>{}</li>", Code(c)))
                .collect();
            format!("<ul class=\"tags\">{tags}</ul>")
        };
        fact(f, "Control tags", "controls", controls)?;
        writeln!(f, "</dl></section>")
    }

    fn context(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let n = self.notice;
        writeln!(
            f,
            "<section class=\"card\" aria-labelledby=\"h-ctx\">\
             <h2 id=\"h-ctx\">Parent processes <span class=\"muted\">(parent first)</span></h2>"
        )?;
        if n.parents.is_empty() {
            writeln!(f, "<p id=\"parents\" class=\"muted\">None recorded.</p>")?;
        } else {
            writeln!(f, "<ol id=\"parents\" class=\"lines\">")?;
            for Ancestor { pid, exe, argv } in &n.parents {
                writeln!(
                    f,
                    "<li>pid {pid} {} {}</li>",
                    Code(exe),
                    Code(&super::shell_words(argv, ""))
                )?;
            }
            writeln!(f, "</ol>")?;
        }
        writeln!(
            f,
            "<h2 class=\"sub\">Recent activity \
             <span class=\"muted\">(oldest first, as the daemon saw it)</span></h2>"
        )?;
        code_list(f, "recent", &n.recent, "Nothing recorded.")?;
        writeln!(
            f,
            "<details class=\"sub\" open><summary>Environment: {} variable{} \
             (secrets redacted)</summary>",
            n.env.len(),
            if n.env.len() == 1 { "" } else { "s" }
        )?;
        code_list(f, "env", &n.env, "Empty.")?;
        writeln!(f, "</details></section>")
    }

    fn form(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "<section class=\"card\" aria-labelledby=\"h-decide\">\
             <h2 id=\"h-decide\">Your decision</h2>"
        )?;
        let quorum = if self.approvals_needed <= 1 {
            "One approval lets it proceed.".to_string()
        } else {
            format!(
                "It needs {} approvals; {} given so far.",
                self.approvals_needed, self.approvals_so_far
            )
        };
        writeln!(f, "<p id=\"quorum\" class=\"muted\">{}</p>", Esc(&quorum))?;
        // The first submit button is the form's default: Enter in a grant input would press
        // it. A disabled one makes Enter do nothing, so only a deliberate click decides.
        writeln!(
            f,
            "<form method=\"post\" action=\"{}\">\n\
             <button type=\"submit\" disabled hidden aria-hidden=\"true\" tabindex=\"-1\"></button>\n\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\n\
             <label for=\"comment\">Comment <span class=\"muted\">(optional, recorded in \
             the audit log)</span></label>\n\
             <textarea id=\"comment\" name=\"comment\" maxlength=\"{MAX_COMMENT_CHARS}\" \
             rows=\"4\"></textarea>",
            Esc(self.action),
            Esc(self.csrf)
        )?;
        let grant = self.notice.grant.and_then(GrantLimits::of);
        if let Some(g) = grant {
            writeln!(
                f,
                "<fieldset id=\"grant\" class=\"grant\"><legend>Grant (optional)</legend>\n\
                 <p class=\"muted first\">\"Approve and grant\" also lets \
                 the same operation through without asking, until either limit runs out. \
                 This rule allows up to {} min and {} use{}.</p>\n\
                 <div class=\"inputs\">\
                 <label>Minutes <input id=\"grant-minutes\" type=\"number\" \
                 name=\"grant_minutes\" min=\"1\" max=\"{}\" step=\"1\" value=\"{}\" \
                 inputmode=\"numeric\"></label>\
                 <label>Uses <input id=\"grant-uses\" type=\"number\" name=\"grant_uses\" \
                 min=\"1\" max=\"{}\" step=\"1\" value=\"{}\" inputmode=\"numeric\"></label>\
                 </div></fieldset>",
                g.max_minutes,
                g.max_uses,
                if g.max_uses == 1 { "" } else { "s" },
                g.max_minutes,
                g.max_minutes.min(DEFAULT_GRANT_MINUTES),
                g.max_uses,
                g.max_uses.min(DEFAULT_GRANT_USES),
            )?;
        }
        // formnovalidate: the grant inputs share this form, and a browser would otherwise
        // refuse to send "Deny" while one of them is out of range.
        writeln!(
            f,
            "<div class=\"buttons\">\n\
             <button id=\"approve\" class=\"approve\" type=\"submit\" name=\"decision\" \
             value=\"approve\" formnovalidate>Approve once</button>"
        )?;
        if grant.is_some() {
            writeln!(
                f,
                "<button id=\"approve-grant\" class=\"grant-button\" type=\"submit\" \
                 name=\"decision\" value=\"approve_grant\">Approve and grant</button>"
            )?;
        }
        writeln!(
            f,
            "<button id=\"deny\" class=\"deny\" type=\"submit\" name=\"decision\" \
             value=\"deny\" formnovalidate>Deny</button>\n</div>\n</form></section>"
        )
    }
}

/// A grant offer in the form's units. The form grants whole minutes, so the limit is
/// rounded down (never more than the rule allows); an offer that allows less than one
/// minute or no use cannot be given from the page, which then shows no grant inputs.
#[derive(Debug, Clone, Copy)]
struct GrantLimits {
    max_minutes: u64,
    max_uses: u32,
}

impl GrantLimits {
    fn of(offer: GrantOffer) -> Option<Self> {
        let max_minutes = (offer.max_ttl_secs / 60).min(u64::from(u32::MAX));
        (max_minutes > 0 && offer.max_uses > 0).then_some(Self {
            max_minutes,
            max_uses: offer.max_uses,
        })
    }
}

impl Display for ReviewPage<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        head(f, "Approval requested")?;
        self.header(f)?;
        self.who(f)?;
        self.what(f)?;
        self.rationale(f)?;
        self.why(f)?;
        self.context(f)?;
        self.form(f)?;
        foot(f)
    }
}

struct Outcome<'a> {
    kind: OutcomeKind,
    detail: &'a str,
}

impl Display for Outcome<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let kind = self.kind;
        head(f, kind.title())?;
        let mark = match kind.tone() {
            "good" => "✓",
            "bad" => "✕",
            _ => "!",
        };
        writeln!(
            f,
            "<section id=\"outcome\" class=\"card outcome {}\" data-outcome=\"{}\">\n\
             <div class=\"mark\" aria-hidden=\"true\">{mark}</div>\n\
             <h1>{}</h1>\n<p>{}</p>",
            kind.tone(),
            kind.as_str(),
            Esc(kind.title()),
            Esc(kind.explanation()),
        )?;
        if !self.detail.is_empty() {
            writeln!(f, "<p class=\"detail muted\">{}</p>", prose(self.detail))?;
        }
        writeln!(
            f,
            "<p class=\"muted\">You can close this page.</p>\n</section>"
        )?;
        foot(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approvals::sample_notice;

    const NOW: u64 = 1_790_000_047_500; // 4 min 12.5 s before the sample's deadline

    fn page(notice: &Notice) -> String {
        render_review(&ReviewPage {
            notice,
            reviewer: "alice",
            csrf: "csrf-token-123",
            action: "/r/TOKEN",
            now_ms: NOW,
            approvals_needed: 1,
            approvals_so_far: 0,
        })
    }

    /// The element with `id`, from its opening tag to the end of the document (enough for
    /// `contains` checks on what follows it).
    fn from_id<'h>(html: &'h str, id: &str) -> &'h str {
        let at = html
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("no element with id {id}"));
        let start = html[..at].rfind('<').expect("an opening tag");
        &html[start..]
    }

    /// The tag names in `html`: every `<name` and `</name`.
    fn tag_names(html: &str) -> Vec<String> {
        html.match_indices('<')
            .map(|(i, _)| {
                html[i + 1..]
                    .trim_start_matches('/')
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '!')
                    .collect::<String>()
                    .to_ascii_lowercase()
            })
            .collect()
    }

    const ALLOWED_TAGS: &[&str] = &[
        "!doctype", "html", "head", "meta", "title", "style", "body", "main", "header", "section",
        "p", "div", "span", "strong", "h1", "h2", "dl", "dt", "dd", "code", "ol", "ul", "li",
        "details", "summary", "form", "input", "label", "textarea", "fieldset", "legend", "button",
    ];

    #[test]
    fn shows_every_field_of_the_notice() {
        let n = sample_notice();
        let html = page(&n);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<h1>Approval requested</h1>"));
        assert!(html.contains("<meta name=\"referrer\" content=\"no-referrer\">"));
        assert!(html.contains("<meta name=\"robots\" content=\"noindex\">"));
        assert!(!html.contains("<script"), "the page needs no JavaScript");
        for id in [
            "agent",
            "argv",
            "cwd",
            "rationale",
            "rule",
            "controls",
            "time-left",
            "approve",
            "approve-grant",
            "deny",
            "comment",
            "host",
            "user",
            "pid",
            "target",
            "exe",
            "parents",
            "recent",
            "env",
            "reason",
            "severity",
            "on-timeout",
            "reviewer",
            "headline",
            "quorum",
            "grant",
        ] {
            assert_eq!(
                html.matches(&format!("id=\"{id}\"")).count(),
                1,
                "id {id} must appear exactly once"
            );
        }
        assert!(from_id(&html, "agent").starts_with("<dd id=\"agent\">ci-bot</dd>"));
        assert!(from_id(&html, "host").contains("agent-host-1"));
        assert!(from_id(&html, "user").starts_with("<dd id=\"user\">ci (uid 1001)</dd>"));
        assert!(from_id(&html, "pid").starts_with("<dd id=\"pid\">pid 4242</dd>"));
        assert!(from_id(&html, "target").contains("<code>/usr/bin/pg_dump</code>"));
        assert!(from_id(&html, "exe").contains("/usr/lib/postgresql/16/bin/pg_dump"));
        assert!(from_id(&html, "cwd").starts_with("<dd id=\"cwd\"><code>/srv/app</code>"));
        let argv = from_id(&html, "argv");
        let mut at = 0;
        for (i, arg) in n.argv.iter().enumerate() {
            let li = format!("<li><span class=\"idx\">argv[{i}]</span><code>{arg}</code></li>");
            let found = argv[at..]
                .find(&li)
                .unwrap_or_else(|| panic!("argv[{i}] missing or out of order"));
            at += found + li.len();
        }
        assert!(from_id(&html, "parents").contains(
            "pid 4000 <code>/usr/bin/bash</code> <code>bash -c &#39;pg_dump ...&#39;</code>"
        ));
        assert!(
            from_id(&html, "recent").contains("<code>exec /usr/bin/psql -c &#39;\\dt&#39;</code>")
        );
        let env = from_id(&html, "env");
        assert!(env.contains("<code>PGHOST=db.internal</code>"));
        assert!(env.contains("<code>PGPASSWORD=&lt;redacted&gt;</code>"));
        let rationale = from_id(&html, "rationale");
        assert!(rationale.contains("Unverified — written by the agent"));
        assert!(rationale.contains("Exporting the customers table for the &lt;weekly&gt; report"));
        assert!(from_id(&html, "rule").starts_with("<dd id=\"rule\"><code>db-export</code>"));
        assert!(from_id(&html, "reason").contains("Exports of customer data need a human"));
        let controls = from_id(&html, "controls");
        assert!(controls.contains("<code>SOC2:CC6.1</code>"));
        assert!(controls.contains("<code>NIST-800-53:AC-6(9)</code>"));
        assert!(from_id(&html, "severity").contains("sev-high\">high severity</span>"));
        assert!(
            from_id(&html, "time-left")
                .starts_with("<span id=\"time-left\">4 min 13 s left</span>")
        );
        assert!(from_id(&html, "on-timeout").contains("denied, and the held task is killed"));
        assert!(from_id(&html, "reviewer").contains("<strong>alice</strong>"));
        assert!(from_id(&html, "quorum").contains("One approval lets it proceed."));
        assert!(from_id(&html, "headline").contains(
            "agent ci-bot wants to run pg_dump --table customers -f &#39;/tmp/out file.sql&#39;"
        ));
    }

    #[test]
    fn one_form_that_posts_back_with_the_csrf_token() {
        let html = page(&sample_notice());
        assert_eq!(html.matches("<form").count(), 1);
        // Enter in an input presses the first submit button: it must be a disabled one.
        let first_button = &html[html.find("<form").unwrap()..];
        let first_button = &first_button[first_button.find("<button").unwrap()..];
        assert!(first_button.starts_with("<button type=\"submit\" disabled hidden"));
        assert!(html.contains("<form method=\"post\" action=\"/r/TOKEN\">"));
        assert!(html.contains("<input type=\"hidden\" name=\"csrf\" value=\"csrf-token-123\">"));
        assert!(from_id(&html, "comment").starts_with("<textarea id=\"comment\" name=\"comment\""));
        assert!(from_id(&html, "approve").starts_with(
            "<button id=\"approve\" class=\"approve\" type=\"submit\" name=\"decision\" value=\"approve\""
        ));
        assert!(
            from_id(&html, "approve-grant").contains("name=\"decision\" value=\"approve_grant\"")
        );
        assert!(from_id(&html, "deny").contains("name=\"decision\" value=\"deny\""));
        // Everything that decides is inside the one form.
        let form = &html[html.find("<form").unwrap()..html.find("</form>").unwrap()];
        for id in [
            "comment",
            "approve",
            "approve-grant",
            "deny",
            "grant-minutes",
            "grant-uses",
        ] {
            assert!(
                form.contains(&format!("id=\"{id}\"")),
                "{id} outside the form"
            );
        }
    }

    #[test]
    fn escapes_everything_the_agent_controls() {
        let mut n = sample_notice();
        let evil = "<script>alert(1)</script>\"'&";
        n.argv = vec![
            "sh".into(),
            evil.into(),
            "\"><img src=x onerror=alert(2)>".into(),
        ];
        n.agent = evil.into();
        n.host = evil.into();
        n.user = Some(evil.into());
        n.target = evil.into();
        n.exe = evil.into();
        n.cwd = evil.into();
        n.env = vec![evil.into()];
        n.parents[0].exe = evil.into();
        n.parents[0].argv = vec![evil.into()];
        n.recent = vec![evil.into()];
        n.rationale = Some(evil.into());
        n.rule = evil.into();
        n.reason = Some(evil.into());
        n.controls = vec![evil.into()];
        n.severity = Some(evil.into());
        n.on_timeout = evil.into();
        n.operation = evil.into();
        let html = render_review(&ReviewPage {
            notice: &n,
            reviewer: evil,
            csrf: evil,
            action: evil,
            now_ms: NOW,
            approvals_needed: 2,
            approvals_so_far: 1,
        });
        assert!(!html.contains("<script"), "a live script tag");
        assert!(!html.contains("<img"), "a live img tag");
        let escaped = "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;";
        assert!(html.contains(&format!("<code>{escaped}</code>")));
        assert!(html.contains(&format!("<dd id=\"agent\">{escaped}</dd>")));
        assert!(html.contains(&format!("action=\"{escaped}\"")));
        assert!(html.contains(&format!("name=\"csrf\" value=\"{escaped}\"")));
        assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"));
        // The severity badge's class comes from a fixed set, never the notice.
        assert!(html.contains("class=\"badge sev-none\""));
        for tag in tag_names(&html) {
            assert!(
                ALLOWED_TAGS.contains(&tag.as_str()),
                "unexpected tag <{tag}"
            );
        }
    }

    #[test]
    fn control_and_bidi_characters_are_shown_not_obeyed() {
        let mut n = sample_notice();
        n.argv = vec![
            "rm".into(),
            "a\nb".into(),
            "\u{202e}txt.exe".into(),
            String::new(),
            "tab\there\u{1b}[31m".into(),
        ];
        n.rationale = Some("line one\nline two\u{2066}".into());
        let html = page(&n);
        let argv = from_id(&html, "argv");
        assert!(argv.contains("<code>a<span class=\"ctl\" title=\"U+000A\">\\n</span>b</code>"));
        assert!(
            argv.contains(
                "<code><span class=\"ctl\" title=\"U+202E\">\\u{202e}</span>txt.exe</code>"
            )
        );
        assert!(argv.contains("argv[3]</span><span class=\"empty\">(empty)</span>"));
        assert!(argv.contains("tab<span class=\"ctl\" title=\"U+0009\">\\t</span>here<span class=\"ctl\" title=\"U+001B\">\\u{1b}</span>[31m"));
        assert!(
            !html.contains('\u{202e}') && !html.contains('\u{1b}') && !html.contains('\u{2066}')
        );
        // Prose keeps its line breaks.
        assert!(from_id(&html, "rationale").contains("line one\nline two<span class=\"ctl\""));
    }

    #[test]
    fn grant_inputs_only_when_the_rule_offers_a_grant() {
        let mut n = sample_notice();
        let html = page(&n);
        let minutes = from_id(&html, "grant-minutes");
        assert!(
            minutes.contains("name=\"grant_minutes\" min=\"1\" max=\"60\" step=\"1\" value=\"15\"")
        );
        let uses = from_id(&html, "grant-uses");
        assert!(uses.contains("name=\"grant_uses\" min=\"1\" max=\"5\" step=\"1\" value=\"3\""));
        assert!(html.contains("This rule allows up to 60 min and 5 uses."));

        n.grant = Some(GrantOffer {
            max_ttl_secs: 600,
            max_uses: 1,
        });
        let html = page(&n);
        assert!(from_id(&html, "grant-minutes").contains("max=\"10\" step=\"1\" value=\"10\""));
        assert!(from_id(&html, "grant-uses").contains("max=\"1\" step=\"1\" value=\"1\""));

        for offer in [
            None,
            Some(GrantOffer {
                max_ttl_secs: 59,
                max_uses: 5,
            }),
            Some(GrantOffer {
                max_ttl_secs: 3600,
                max_uses: 0,
            }),
        ] {
            n.grant = offer;
            let html = page(&n);
            for absent in [
                "approve-grant",
                "grant-minutes",
                "grant-uses",
                "id=\"grant\"",
                "approve_grant",
            ] {
                assert!(!html.contains(absent), "{absent} shown for offer {offer:?}");
            }
            assert!(html.contains("id=\"approve\"") && html.contains("id=\"deny\""));
        }
    }

    #[test]
    fn open_requests_show_the_file_and_access() {
        let mut n = sample_notice();
        n.operation = "open".into();
        n.target = "/etc/shadow".into();
        n.access = vec!["read".into(), "write".into()];
        n.rationale = None;
        n.severity = None;
        let html = page(&n);
        assert!(html.contains("What it wants to open"));
        assert!(from_id(&html, "target").starts_with("<dd id=\"target\"><code>/etc/shadow</code>"));
        assert!(from_id(&html, "access").contains("<code>read</code> <code>write</code>"));
        assert!(from_id(&html, "rationale").contains("The agent gave no rationale."));
        assert!(from_id(&html, "severity").contains("no severity set"));
    }

    #[test]
    fn quorum_and_expiry() {
        let n = sample_notice();
        let html = render_review(&ReviewPage {
            notice: &n,
            reviewer: "bob",
            csrf: "c",
            action: "/r/x",
            now_ms: n.deadline_ms,
            approvals_needed: 3,
            approvals_so_far: 1,
        });
        assert!(from_id(&html, "quorum").contains("It needs 3 approvals; 1 given so far."));
        assert!(from_id(&html, "time-left").starts_with("<span id=\"time-left\">expired</span>"));
        assert!(html.contains("<header class=\"card expired\">"));
    }

    #[test]
    fn time_left_reads_naturally() {
        let d = 1_000_000_000;
        assert_eq!(time_left(d, d - 252_000), "4 min 12 s left");
        assert_eq!(time_left(d, d - 251_001), "4 min 12 s left", "rounded up");
        assert_eq!(time_left(d, d - 300_000), "5 min left");
        assert_eq!(time_left(d, d - 38_000), "38 s left");
        assert_eq!(time_left(d, d - 1), "1 s left");
        assert_eq!(time_left(d, d - 3_900_000), "1 h 5 min left");
        assert_eq!(time_left(d, d - 7_200_000), "2 h left");
        assert_eq!(time_left(d, d), "expired");
        assert_eq!(time_left(d, d + 5_000), "expired");
        assert_eq!(time_left(0, u64::MAX), "expired");
    }

    #[test]
    fn every_outcome_has_its_page_and_status() {
        let cases = [
            (OutcomeKind::Approved, 200, "approved"),
            (OutcomeKind::ApprovedWithGrant, 200, "approved_with_grant"),
            (OutcomeKind::Denied, 200, "denied"),
            (OutcomeKind::Expired, 410, "expired"),
            (OutcomeKind::AlreadyDecided, 409, "already_decided"),
            (OutcomeKind::InvalidLink, 404, "invalid_link"),
            (OutcomeKind::Forbidden, 403, "forbidden"),
            (OutcomeKind::Error, 500, "error"),
        ];
        for (kind, status, name) in cases {
            let (got, html) = render_outcome(kind, "request #42 <b>");
            assert_eq!(got, status, "{kind:?}");
            assert!(html.starts_with("<!DOCTYPE html>"));
            assert!(html.contains("<meta name=\"robots\" content=\"noindex\">"));
            assert!(html.contains("<meta name=\"referrer\" content=\"no-referrer\">"));
            assert!(
                html.contains(&format!(
                    "id=\"outcome\" class=\"card outcome {}\" data-outcome=\"{name}\"",
                    kind.tone()
                )),
                "{kind:?}"
            );
            assert!(html.contains(&format!("<h1>{}</h1>", kind.title())));
            assert!(!html.contains("<b>"), "detail escaped");
            assert_eq!(
                html.contains("request #42 &lt;b&gt;"),
                kind != OutcomeKind::InvalidLink,
                "{kind:?}"
            );
            assert!(!html.contains("<form"), "result pages decide nothing");
        }
    }

    #[test]
    fn invalid_links_all_look_the_same() {
        let a = render_outcome(OutcomeKind::InvalidLink, "");
        let b = render_outcome(OutcomeKind::InvalidLink, "token abc not found");
        let c = render_outcome(OutcomeKind::InvalidLink, "bad signature");
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.0, 404);
    }

    #[test]
    fn parses_each_decision() {
        let f = parse_form(b"csrf=abc&decision=approve&comment=").unwrap();
        assert_eq!(
            f,
            ReviewForm {
                csrf: "abc".into(),
                decision: FormDecision::Approve,
                comment: None
            }
        );
        let f = parse_form(b"csrf=abc&comment=not+now%2C+see+%231%0D%0Abye&decision=deny").unwrap();
        assert_eq!(f.decision, FormDecision::Deny);
        assert_eq!(f.comment.as_deref(), Some("not now, see #1\nbye"));
        let f =
            parse_form(b"csrf=abc&decision=approve_grant&grant_minutes=10&grant_uses=2&comment=ok")
                .unwrap();
        assert_eq!(
            f.decision,
            FormDecision::ApproveGrant {
                minutes: 10,
                uses: 2
            }
        );
        assert_eq!(f.comment.as_deref(), Some("ok"));
        // What a browser sends for the page's "Deny" when the grant inputs hold junk.
        let f =
            parse_form(b"csrf=abc&comment=+++&grant_minutes=&grant_uses=x&decision=deny").unwrap();
        assert_eq!(f.decision, FormDecision::Deny);
        assert_eq!(f.comment, None, "a blank comment is no comment");
        let comment = "é".repeat(MAX_COMMENT_CHARS);
        let body = format!("csrf=abc&decision=approve&comment={comment}");
        assert_eq!(parse_form(body.as_bytes()).unwrap().comment, Some(comment));
    }

    #[test]
    fn refuses_bad_forms_by_name() {
        let err = |body: &[u8]| parse_form(body).unwrap_err();
        assert_eq!(
            err(&[b'a'; MAX_FORM_BYTES + 1]),
            FormError::TooLarge(MAX_FORM_BYTES + 1)
        );
        assert_eq!(err(b"decision=approve"), FormError::Missing("csrf"));
        assert_eq!(err(b"csrf=&decision=approve"), FormError::Missing("csrf"));
        assert_eq!(err(b"csrf=a"), FormError::Missing("decision"));
        assert_eq!(err(b""), FormError::Missing("csrf"));
        assert_eq!(
            err(b"csrf=a&decision=approve&decision=deny"),
            FormError::Duplicate("decision".into())
        );
        assert_eq!(
            err(b"csrf=a&csrf=b&decision=approve"),
            FormError::Duplicate("csrf".into())
        );
        assert_eq!(
            err(b"csrf=a&decision=allow"),
            FormError::UnknownDecision("allow".into())
        );
        assert_eq!(
            err(b"csrf=a&decision=approve&admin=1"),
            FormError::UnknownField("admin".into())
        );
        let long = "x".repeat(MAX_COMMENT_CHARS + 1);
        assert_eq!(
            err(format!("csrf=a&decision=deny&comment={long}").as_bytes()),
            FormError::CommentTooLong(MAX_COMMENT_CHARS + 1)
        );
        assert_eq!(
            err(b"csrf=a&decision=approve_grant&grant_uses=1"),
            FormError::Missing("grant_minutes")
        );
        assert_eq!(
            err(b"csrf=a&decision=approve_grant&grant_minutes=1"),
            FormError::Missing("grant_uses")
        );
        for bad in ["0", "-1", "+5", " 5", "5m", "", "4294967296", "1e3"] {
            let body = format!(
                "csrf=a&decision=approve_grant&grant_minutes={}&grant_uses=1",
                form_urlencoded::byte_serialize(bad.as_bytes()).collect::<String>()
            );
            assert_eq!(
                err(body.as_bytes()),
                FormError::BadGrantValue {
                    field: "grant_minutes",
                    value: bad.into()
                },
                "{bad:?}"
            );
        }
        assert_eq!(
            err(b"csrf=a&decision=approve_grant&grant_minutes=5&grant_uses=0"),
            FormError::BadGrantValue {
                field: "grant_uses",
                value: "0".into()
            }
        );
        // Client text in messages is cut short.
        let unknown = format!("csrf=a&decision={}", "z".repeat(500));
        let msg = err(unknown.as_bytes()).to_string();
        assert!(msg.len() < 200, "{msg}");
    }
}
