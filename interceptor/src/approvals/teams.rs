//! Microsoft Teams: the message a request is posted as, for a channel's incoming webhook
//! or a Workflows "post to a channel when a webhook request is received" flow. Both take
//! a `message` whose attachment is an Adaptive Card.
//!
//! Teams cards cannot call back into the daemon (webhook cards support only opening
//! URLs), so each reviewer gets an `Action.OpenUrl` button to their own review link and
//! decides on the review page. Those links are secrets: anyone who can read the channel
//! can open any of them, so post to a channel only reviewers can read.
//!
//! `TextBlock` and `FactSet` text is Markdown in Teams, so they hold only what the host,
//! the operator or the policy wrote (names, ids, rule, times). Everything the agent
//! controls (argv, paths, rationale, recent activity) goes in `RichTextBlock` text runs,
//! which Adaptive Cards never read as Markdown, made visible ([`text::visible`]) and cut
//! to fixed budgets so the whole message stays under Teams' 28 KB limit.

use serde_json::{Value, json};

use super::{Notice, text};

/// `contentType` of an Adaptive Card attachment.
pub const CARD_CONTENT_TYPE: &str = "application/vnd.microsoft.card.adaptive";
/// The Adaptive Card schema version written: 1.4 is what Teams renders on every client.
pub const CARD_VERSION: &str = "1.4";
/// Teams refuses webhook messages larger than this (bytes of JSON).
pub const MAX_MESSAGE_BYTES: usize = 28_000;
/// Buttons per action row; Teams shows no more than this many in one row.
pub const MAX_ACTIONS_PER_ROW: usize = 6;

// Budgets in UTF-16 units. Their sum (about 6,500) keeps the message under
// MAX_MESSAGE_BYTES even when every character takes three bytes of UTF-8, with room for
// a dozen reviewer links.
const HEADLINE_MAX: usize = 200;
const FACT_MAX: usize = 100;
const COMMAND_MAX: usize = 1800;
const PATH_MAX: usize = 300;
const REASON_MAX: usize = 400;
const RATIONALE_MAX: usize = 900;
const RECENT_SHOWN: usize = 5;
const RECENT_ENTRY_MAX: usize = 150;
const REVIEWER_MAX: usize = 40;

/// Host- or operator-written text for a `TextBlock` or fact: visible and fitted.
fn own(s: &str, max: usize) -> String {
    text::fit(&text::visible(s, false), max, text::no_escape)
}

/// Agent-written text for a text run: visible (newlines kept when `lines`) and fitted.
fn agent(s: &str, max: usize, lines: bool) -> String {
    text::fit(&text::visible(s, lines), max, text::no_escape)
}

fn run(s: String) -> Value {
    json!({ "type": "TextRun", "text": s })
}

fn mono(s: String) -> Value {
    json!({ "type": "TextRun", "text": s, "fontType": "Monospace" })
}

fn bold(s: &str) -> Value {
    json!({ "type": "TextRun", "text": s, "weight": "Bolder" })
}

fn rich(inlines: Vec<Value>) -> Value {
    json!({ "type": "RichTextBlock", "inlines": inlines })
}

fn label(s: &str) -> Value {
    json!({ "type": "TextBlock", "text": s, "weight": "Bolder", "wrap": true, "spacing": "Medium" })
}

fn subtle(s: String) -> Value {
    json!({ "type": "TextBlock", "text": s, "isSubtle": true, "wrap": true, "spacing": "Medium" })
}

fn fact(title: &str, value: String) -> Value {
    json!({ "title": title, "value": value })
}

/// The Teams message for `notice`: an Adaptive Card with the context as facts, the
/// command in monospace, the agent's rationale marked unverified, and one "Review as
/// NAME" button per reviewer link. Never fails: anything too long is cut with a marker.
pub fn card(notice: &Notice) -> Value {
    let headline = notice.headline();
    let is_open = notice.operation == "open";
    let mut body = vec![
        json!({
            "type": "TextBlock",
            "text": "Approval needed",
            "size": "Large",
            "weight": "Bolder",
            "wrap": true,
        }),
        rich(vec![bold(&agent(&headline, HEADLINE_MAX, false))]),
    ];

    let window = notice.deadline_ms.saturating_sub(notice.requested_at_ms) / 1000;
    let operation = if notice.access.is_empty() {
        own(&notice.operation, FACT_MAX)
    } else {
        own(
            &format!("{} ({})", notice.operation, notice.access.join("+")),
            FACT_MAX,
        )
    };
    let mut facts = vec![
        fact("Request", notice.id.to_string()),
        fact("Agent", own(&notice.agent, FACT_MAX)),
        fact("Host", own(&notice.host, FACT_MAX)),
        fact(
            "User",
            match &notice.user {
                Some(u) => format!("{} (uid {})", own(u, FACT_MAX), notice.uid),
                None => format!("uid {}", notice.uid),
            },
        ),
        fact("PID", notice.pid.to_string()),
        fact("Operation", operation),
        fact("Rule", own(&notice.rule, FACT_MAX)),
    ];
    if let Some(severity) = &notice.severity {
        facts.push(fact("Severity", own(severity, FACT_MAX)));
    }
    if !notice.controls.is_empty() {
        facts.push(fact("Controls", own(&notice.controls.join(" "), FACT_MAX)));
    }
    if let Some(g) = notice.grant {
        facts.push(fact(
            "Grants",
            format!(
                "up to {} uses within {}",
                g.max_uses,
                text::short_duration(g.max_ttl_secs)
            ),
        ));
    }
    facts.push(fact("Requested", text::rfc3339_ms(notice.requested_at_ms)));
    facts.push(fact(
        "Expires",
        format!(
            "{} (answer within {})",
            text::rfc3339_ms(notice.deadline_ms),
            text::short_duration(window)
        ),
    ));
    facts.push(fact(
        "If nobody answers",
        match notice.on_timeout.as_str() {
            "deny" => "deny (the process is killed)".to_string(),
            other => own(other, FACT_MAX),
        },
    ));
    body.push(json!({ "type": "FactSet", "facts": facts }));

    body.push(label(if is_open { "Opened by" } else { "Command" }));
    body.push(rich(vec![mono(text::fit(
        &text::command_line(&notice.argv, &notice.target),
        COMMAND_MAX,
        text::no_escape,
    ))]));
    for (name, value) in [
        (if is_open { "File: " } else { "Program: " }, &notice.target),
        ("Executable: ", &notice.exe),
        ("Working directory: ", &notice.cwd),
    ] {
        body.push(rich(vec![bold(name), mono(agent(value, PATH_MAX, false))]));
    }
    if let Some(reason) = &notice.reason {
        body.push(rich(vec![
            bold("Why it asks: "),
            run(agent(reason, REASON_MAX, true)),
        ]));
    }

    body.push(match &notice.rationale {
        Some(r) => json!({
            "type": "Container",
            "style": "warning",
            "spacing": "Medium",
            "items": [
                label("Agent's rationale (unverified: the agent wrote this itself)"),
                rich(vec![json!({
                    "type": "TextRun",
                    "text": agent(r, RATIONALE_MAX, true),
                    "italic": true,
                })]),
            ],
        }),
        None => subtle("The agent gave no rationale.".into()),
    });

    if !notice.recent.is_empty() {
        let skip = notice.recent.len().saturating_sub(RECENT_SHOWN);
        body.push(label(&format!(
            "Recent activity (last {} of {}, oldest first)",
            notice.recent.len() - skip,
            notice.recent.len()
        )));
        for r in &notice.recent[skip..] {
            body.push(rich(vec![mono(agent(r, RECENT_ENTRY_MAX, false))]));
        }
    }

    let buttons: Vec<Value> = notice
        .links
        .iter()
        .map(|l| {
            json!({
                "type": "Action.OpenUrl",
                "title": format!("Review as {}", own(&l.reviewer, REVIEWER_MAX)),
                "url": l.url,
            })
        })
        .collect();
    body.push(subtle(if buttons.is_empty() {
        format!(
            "No review links were made for this request: decide on the host with \
             interceptor approvals approve {0} (or deny {0}).",
            notice.id
        )
    } else {
        "Each button is one reviewer's personal link: open only your own. \
         You decide on the review page."
            .to_string()
    }));
    // The first row is the card's own actions; more reviewers get more rows.
    let mut rows = buttons.chunks(MAX_ACTIONS_PER_ROW);
    let actions = rows.next().map(<[Value]>::to_vec).unwrap_or_default();
    for row in rows {
        body.push(json!({ "type": "ActionSet", "actions": row }));
    }

    json!({
        "type": "message",
        "attachments": [{
            "contentType": CARD_CONTENT_TYPE,
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": CARD_VERSION,
                "fallbackText": format!(
                    "Approval needed on {}: {}",
                    own(&notice.host, FACT_MAX),
                    agent(&headline, HEADLINE_MAX, false),
                ),
                // Commands are long; use the whole width of the channel.
                "msteams": { "width": "Full" },
                "body": body,
                "actions": actions,
            },
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approvals::text::units;
    use crate::approvals::{ReviewLink, sample_notice};

    fn content(m: &Value) -> &Value {
        &m["attachments"][0]["content"]
    }

    fn body(m: &Value) -> &Vec<Value> {
        content(m)["body"].as_array().expect("body is an array")
    }

    /// The element of the body whose JSON mentions `needle`.
    fn element<'a>(m: &'a Value, kind: &str, needle: &str) -> &'a Value {
        body(m)
            .iter()
            .find(|e| e["type"] == kind && e.to_string().contains(needle))
            .unwrap_or_else(|| panic!("no {kind} mentioning {needle:?}"))
    }

    /// All text runs' text, in order.
    fn runs(e: &Value) -> String {
        e["inlines"]
            .as_array()
            .map(|i| i.iter().filter_map(|r| r["text"].as_str()).collect())
            .unwrap_or_default()
    }

    /// Every TextBlock text and fact (the Markdown-read places) in the card.
    fn markdown_texts(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                if o.get("type") == Some(&json!("TextBlock")) {
                    out.extend(o.get("text").and_then(Value::as_str).map(String::from));
                }
                if o.contains_key("title") && o.contains_key("value") {
                    out.extend(o.get("value").and_then(Value::as_str).map(String::from));
                }
                o.values().for_each(|x| markdown_texts(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| markdown_texts(x, out)),
            _ => {}
        }
    }

    /// The documented shape (Teams "Send Adaptive Cards using an incoming webhook"):
    /// what the integration receiver checks too.
    #[test]
    fn the_card_has_the_documented_shape() {
        let m = card(&sample_notice());
        assert_eq!(m["type"], "message");
        let attachments = m["attachments"].as_array().expect("attachments");
        assert_eq!(attachments.len(), 1);
        assert_eq!(
            attachments[0]["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert!(attachments[0]["contentUrl"].is_null());
        let c = content(&m);
        assert_eq!(
            c["$schema"],
            "http://adaptivecards.io/schemas/adaptive-card.json"
        );
        assert_eq!(c["type"], "AdaptiveCard");
        assert_eq!(c["version"], "1.4");
        assert_eq!(c["msteams"]["width"], "Full");
        assert_eq!(
            c["fallbackText"],
            "Approval needed on agent-host-1: agent ci-bot wants to run pg_dump --table customers -f '/tmp/out file.sql'"
        );

        let facts = &element(&m, "FactSet", "Agent")["facts"];
        let fact = |title: &str| {
            facts
                .as_array()
                .and_then(|f| f.iter().find(|f| f["title"] == title))
                .map(|f| f["value"].clone())
                .unwrap_or_else(|| panic!("no fact {title}"))
        };
        assert_eq!(fact("Request"), "42");
        assert_eq!(fact("Agent"), "ci-bot");
        assert_eq!(fact("Host"), "agent-host-1");
        assert_eq!(fact("User"), "ci (uid 1001)");
        assert_eq!(fact("PID"), "4242");
        assert_eq!(fact("Operation"), "exec");
        assert_eq!(fact("Rule"), "db-export");
        assert_eq!(fact("Severity"), "high");
        assert_eq!(fact("Controls"), "SOC2:CC6.1 NIST-800-53:AC-6(9)");
        assert_eq!(fact("Grants"), "up to 5 uses within 1h");
        assert_eq!(fact("Requested"), "2026-09-21T14:13:20.000Z");
        assert_eq!(
            fact("Expires"),
            "2026-09-21T14:18:20.000Z (answer within 5m)"
        );
        assert_eq!(fact("If nobody answers"), "deny (the process is killed)");

        let command = body(&m)
            .iter()
            .skip_while(|e| e["text"] != "Command")
            .nth(1)
            .expect("a block after the Command label");
        assert_eq!(command["type"], "RichTextBlock");
        assert_eq!(command["inlines"][0]["fontType"], "Monospace");
        assert_eq!(
            runs(command),
            "pg_dump --table customers -f '/tmp/out file.sql'"
        );
        assert_eq!(
            runs(element(&m, "RichTextBlock", "Working directory")),
            "Working directory: /srv/app"
        );
        assert_eq!(
            runs(element(&m, "RichTextBlock", "Why it asks")),
            "Why it asks: Exports of customer data need a human"
        );

        let rationale = element(&m, "Container", "rationale");
        assert_eq!(rationale["style"], "warning");
        assert_eq!(
            rationale["items"][0]["text"],
            "Agent's rationale (unverified: the agent wrote this itself)"
        );
        assert_eq!(rationale["items"][1]["type"], "RichTextBlock");
        assert_eq!(
            runs(&rationale["items"][1]),
            "Exporting the customers table for the <weekly> report"
        );
        assert_eq!(
            runs(element(&m, "RichTextBlock", "psql")),
            "exec /usr/bin/psql -c '\\dt'"
        );

        assert_eq!(
            c["actions"],
            json!([{ "type": "Action.OpenUrl", "title": "Review as alice", "url": "http://127.0.0.1:9477/r/AAAA" }])
        );
    }

    #[test]
    fn agent_text_never_lands_where_teams_reads_markdown() {
        let mut n = sample_notice();
        let bait =
            "<script>x</script> & `id` **APPROVED** [Approve](https://evil.example)\nrm -rf /";
        n.argv = vec!["sh".into(), "-c".into(), bait.into(), "B".repeat(100_000)];
        n.target = bait.into();
        n.exe = bait.into();
        n.cwd = bait.into();
        n.rationale = Some(bait.into());
        n.recent = vec![bait.into(); 3];
        let m = card(&n);
        let mut texts = Vec::new();
        markdown_texts(content(&m), &mut texts);
        for t in &texts {
            assert!(
                !t.contains("[Approve]") && !t.contains("**APPROVED**"),
                "markdown-read: {t:.200}"
            );
        }
        // In text runs it is shown literally (runs have no Markdown), hidden characters
        // spelled out and the long argument cut with a marker.
        let command = body(&m)
            .iter()
            .skip_while(|e| e["text"] != "Command")
            .nth(1)
            .map(runs)
            .unwrap_or_default();
        assert!(command.starts_with(
            "sh -c $'<script>x</script> & `id` **APPROVED** [Approve](https://evil.example)\\nrm -rf /' BBBB"
        ), "{command:.200}");
        assert!(command.ends_with("more characters cut]"), "{command:.200}");
        assert!(units(&command) <= COMMAND_MAX);
        assert_eq!(
            runs(element(&m, "RichTextBlock", "Working directory")),
            "Working directory: <script>x</script> & `id` **APPROVED** [Approve](https://evil.example)\\nrm -rf /"
        );
        // A rationale keeps its lines (it is prose), inside the unverified container.
        let rationale = element(&m, "Container", "rationale");
        assert!(runs(&rationale["items"][1]).contains("evil.example)\nrm -rf /"));
    }

    #[test]
    fn hidden_characters_are_spelled_out() {
        let mut n = sample_notice();
        n.argv = vec!["cat".into(), "\u{202E}txt.exe".into()];
        n.cwd = "/tmp/\u{200B}x".into();
        let m = card(&n);
        let command = body(&m)
            .iter()
            .skip_while(|e| e["text"] != "Command")
            .nth(1)
            .map(runs)
            .unwrap_or_default();
        assert_eq!(command, "cat $'\\u202etxt.exe'");
        assert_eq!(
            runs(element(&m, "RichTextBlock", "Working directory")),
            "Working directory: /tmp/\\u{200b}x"
        );
    }

    #[test]
    fn an_open_without_rationale_or_links() {
        let mut n = sample_notice();
        n.operation = "open".into();
        n.access = vec!["read".into(), "write".into()];
        n.target = "/etc/shadow".into();
        n.rationale = None;
        n.recent.clear();
        n.links.clear();
        let m = card(&n);
        element(&m, "TextBlock", "Opened by");
        assert_eq!(
            runs(element(&m, "RichTextBlock", "File: ")),
            "File: /etc/shadow"
        );
        element(&m, "TextBlock", "The agent gave no rationale.");
        element(&m, "TextBlock", "interceptor approvals approve 42");
        assert!(!m.to_string().contains("Recent activity"));
        assert_eq!(content(&m)["actions"], json!([]));
        let facts = element(&m, "FactSet", "Operation").to_string();
        assert!(facts.contains("open (read+write)"), "{facts}");
    }

    #[test]
    fn many_reviewers_get_more_rows_of_buttons() {
        let mut n = sample_notice();
        n.links = (0..14)
            .map(|i| ReviewLink {
                reviewer: format!("reviewer{i}"),
                url: format!("https://approvals.example/r/{i}"),
            })
            .collect();
        let m = card(&n);
        assert_eq!(content(&m)["actions"].as_array().map(Vec::len), Some(6));
        let rows: Vec<&Value> = body(&m)
            .iter()
            .filter(|e| e["type"] == "ActionSet")
            .collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["actions"].as_array().map(Vec::len), Some(6));
        assert_eq!(rows[1]["actions"].as_array().map(Vec::len), Some(2));
        assert_eq!(rows[1]["actions"][1]["title"], "Review as reviewer13");
        assert_eq!(
            rows[1]["actions"][1]["url"],
            "https://approvals.example/r/13"
        );
    }

    /// Teams refuses messages over 28 KB: the largest card (every field at its budget,
    /// every character three bytes, a dozen reviewers) stays under it.
    #[test]
    fn the_largest_card_fits_teams_size_limit() {
        for fill in ['€', '"'] {
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
            n.links = (0..12)
                .map(|i| ReviewLink {
                    reviewer: huge.clone(),
                    url: format!(
                        "https://approvals.example.com:9477/r/{}",
                        "A".repeat(43 + i % 2)
                    ),
                })
                .collect();
            let size = card(&n).to_string().len();
            assert!(size <= MAX_MESSAGE_BYTES, "{fill}: {size} bytes");
        }
    }
}
