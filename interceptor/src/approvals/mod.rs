//! Human approvals: what a held operation's request carries to reviewers, the channels
//! that deliver it (signed JSON webhook, Slack, Teams, the review page), the reviewers'
//! identities, and the single-use tokens that bind a click to one reviewer and one
//! request.
//!
//! The daemon owns the request lifecycle (`pending -> approved | denied | expired |
//! cancelled`); this module holds the parts that do not touch the kernel, so they can be
//! tested on their own.

pub mod config;
pub mod notify;
pub mod page;
pub mod sign;
pub mod slack;
pub mod store;
pub mod teams;
pub mod text;
pub mod token;
pub mod webhook;

use serde::{Deserialize, Serialize};

use crate::procfs::Ancestor;

/// Everything a reviewer is shown about one request, on every channel.
///
/// Built once per request by the daemon from what it read while the task was stopped;
/// channels render it (they never look anything up themselves).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// The request's id (also `interceptor approvals show ID`).
    pub id: u64,
    /// The host the agent runs on.
    pub host: String,
    /// The agent's name (its registration or policy selector).
    pub agent: String,
    /// The session the agent was launched in (`interceptor run --session`), inherited by
    /// everything it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// `exec` or `open`.
    pub operation: String,
    /// For opens: the access asked for (`read`, `write`).
    pub access: Vec<String>,
    pub pid: u32,
    pub uid: u32,
    /// The user name of `uid`, when the host knows one.
    pub user: Option<String>,
    /// The binary as the agent named it (exec), or the file (open).
    pub target: String,
    /// The resolved executable of the process.
    pub exe: String,
    /// The whole argv, read while the task was stopped.
    pub argv: Vec<String>,
    pub cwd: String,
    /// The environment, secrets redacted.
    pub env: Vec<String>,
    /// Ancestors, parent first.
    pub parents: Vec<Ancestor>,
    /// The agent's last operations, oldest first.
    pub recent: Vec<String>,
    /// What the agent said it was doing (`interceptor context --rationale`). Unverified:
    /// the agent wrote it.
    pub rationale: Option<String>,
    /// The rule that asked.
    pub rule: String,
    /// Why it asks, from the rule (shown to reviewers).
    pub reason: Option<String>,
    /// The rule's compliance control tags.
    pub controls: Vec<String>,
    /// The rule's severity, if it has one.
    pub severity: Option<String>,
    /// Unix ms when the daemon saw the hold.
    pub requested_at_ms: u64,
    /// Unix ms when the request expires and `on_timeout` applies.
    pub deadline_ms: u64,
    /// What happens when nobody answers in time (`deny` kills the task).
    pub on_timeout: String,
    /// Grant limits the rule allows a reviewer to give (`None`: approve once only).
    pub grant: Option<GrantOffer>,
    /// One review link per reviewer; each is a secret for that reviewer alone.
    pub links: Vec<ReviewLink>,
}

/// The most a reviewer may grant when approving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantOffer {
    pub max_ttl_secs: u64,
    pub max_uses: u32,
}

/// A reviewer's personal link to the review page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewLink {
    pub reviewer: String,
    pub url: String,
}

impl Notice {
    /// A one-line summary: `agent ci-bot wants to run /usr/bin/pg_dump --all (rule: ...)`.
    pub fn headline(&self) -> String {
        let what = match self.operation.as_str() {
            "open" => format!("open {} ({})", self.target, self.access.join("+")),
            _ => format!("run {}", shell_words(&self.argv, &self.target)),
        };
        format!("agent {} wants to {what}", self.agent)
    }
}

/// argv as one line a reviewer can read (and paste): words with spaces or quotes are
/// single-quoted. Falls back to `target` when argv is empty.
pub fn shell_words(argv: &[String], target: &str) -> String {
    if argv.is_empty() {
        return target.to_string();
    }
    argv.iter()
        .map(|w| {
            let plain = !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b));
            if plain {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
pub(crate) fn sample_notice() -> Notice {
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
        argv: vec![
            "pg_dump".into(),
            "--table".into(),
            "customers".into(),
            "-f".into(),
            "/tmp/out file.sql".into(),
        ],
        cwd: "/srv/app".into(),
        env: vec!["PGHOST=db.internal".into(), "PGPASSWORD=<redacted>".into()],
        parents: vec![Ancestor {
            pid: 4000,
            exe: "/usr/bin/bash".into(),
            argv: vec!["bash".into(), "-c".into(), "pg_dump ...".into()],
        }],
        recent: vec!["exec /usr/bin/psql -c '\\dt'".into()],
        rationale: Some("Exporting the customers table for the <weekly> report".into()),
        rule: "db-export".into(),
        reason: Some("Exports of customer data need a human".into()),
        controls: vec!["SOC2:CC6.1".into(), "NIST-800-53:AC-6(9)".into()],
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
            url: "http://127.0.0.1:9477/r/AAAA".into(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headline_quotes_words_a_shell_would_split() {
        let n = sample_notice();
        assert_eq!(
            n.headline(),
            "agent ci-bot wants to run pg_dump --table customers -f '/tmp/out file.sql'"
        );
        assert_eq!(shell_words(&["it's".into()], "x"), r"'it'\''s'");
        assert_eq!(shell_words(&[], "/bin/x"), "/bin/x");
        let mut open = n.clone();
        open.operation = "open".into();
        open.target = "/etc/shadow".into();
        open.access = vec!["read".into()];
        assert_eq!(
            open.headline(),
            "agent ci-bot wants to open /etc/shadow (read)"
        );
    }
}
