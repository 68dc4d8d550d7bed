//! Reviewers and notification channels: `/etc/interceptor/approvals.toml`.
//!
//! ```toml
//! version = 1
//! # What reviewers' browsers reach; review links start with it.
//! public_url = "https://interceptor.example.com"
//!
//! [[reviewer]]
//! name = "alice"
//! email = "alice@example.com"
//! slack_user = "U024BE7LH"
//! uids = [1000]          # may decide from the CLI on this host
//!
//! [[channel]]
//! name = "ops-hook"
//! kind = "webhook"       # webhook | slack | teams
//! url = "https://hooks.example.com/interceptor"
//! secret_file = "/etc/interceptor/secrets/ops-hook"
//!
//! [delivery]             # optional: how hard each channel is tried (these are the defaults)
//! attempts = 5
//! first_backoff = "250ms"
//! max_backoff = "8s"
//! attempt_timeout = "10s"
//! ```
//!
//! Decoding is strict (unknown keys are errors). Secrets live in their own files, which
//! must not be readable by other users; the daemon's configuration directory is closed to
//! agents by the kernel guard.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::notify::RetryPolicy;

/// The built-in configuration when no file exists: one reviewer, root, who decides from
/// the CLI or through the review links printed in the daemon's log; no channels.
pub const DEFAULT_REVIEWER: &str = "root";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    version: u32,
    public_url: Option<String>,
    #[serde(default, rename = "reviewer")]
    reviewers: Vec<RawReviewer>,
    #[serde(default, rename = "channel")]
    channels: Vec<RawChannel>,
    delivery: Option<RawDelivery>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDelivery {
    attempts: Option<u32>,
    first_backoff: Option<String>,
    max_backoff: Option<String>,
    attempt_timeout: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReviewer {
    name: String,
    email: Option<String>,
    slack_user: Option<String>,
    #[serde(default)]
    uids: Vec<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    name: String,
    kind: ChannelKind,
    url: String,
    secret_file: Option<PathBuf>,
    signing_secret_file: Option<PathBuf>,
}

/// A configured human who may answer requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reviewer {
    pub name: String,
    pub email: Option<String>,
    /// Slack member id (`U...`): a click in Slack by this user is this reviewer's.
    pub slack_user: Option<String>,
    /// Local users who act as this reviewer on the control socket.
    pub uids: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// JSON body signed with HMAC-SHA256 (docs/approvals.md).
    Webhook,
    /// Block Kit message with Approve / Deny buttons.
    Slack,
    /// Adaptive Card whose buttons open the review page.
    Teams,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::Slack => "slack",
            ChannelKind::Teams => "teams",
        }
    }
}

/// A notification channel, secrets loaded.
#[derive(Clone, PartialEq, Eq)]
pub struct Channel {
    pub name: String,
    pub kind: ChannelKind,
    pub url: String,
    /// The webhook's HMAC key.
    pub secret: Option<Vec<u8>>,
    /// Slack's signing secret (verifies interactivity requests).
    pub signing_secret: Option<Vec<u8>>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// The approvals configuration in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalsConfig {
    /// Where the file came from ("built-in default" without one).
    pub origin: String,
    /// Review links start with this (no trailing slash); `None`: the listener's address.
    pub public_url: Option<String>,
    pub reviewers: Vec<Reviewer>,
    pub channels: Vec<Channel>,
    /// The secret files it names (the daemon keeps agents from opening them).
    pub secret_files: Vec<PathBuf>,
    /// How each channel's notice is tried: `[delivery]`, or the defaults.
    pub delivery: RetryPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl ApprovalsConfig {
    /// No file: root reviews from this host, nothing is sent anywhere.
    pub fn builtin() -> Self {
        ApprovalsConfig {
            origin: "built-in default".into(),
            public_url: None,
            reviewers: vec![Reviewer {
                name: DEFAULT_REVIEWER.into(),
                email: None,
                slack_user: None,
                uids: vec![0],
            }],
            channels: Vec::new(),
            secret_files: Vec::new(),
            delivery: RetryPolicy::default(),
        }
    }

    /// Reads and validates `path`, loading the secret files it names.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, &shown, &|file| read_secret(file))
    }

    /// Parses `text` (from `origin`); `secret` reads a secret file.
    pub fn parse(
        text: &str,
        origin: &str,
        secret: &dyn Fn(&Path) -> Result<Vec<u8>, String>,
    ) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.into(),
            message: parse_message(text, &e),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: origin.into(),
            message,
        };
        if raw.version != 1 {
            return Err(invalid(format!(
                "version = {} is not supported (this daemon reads version 1)",
                raw.version
            )));
        }
        let public_url = match raw.public_url {
            Some(url) => Some(check_url("public_url", &url).map_err(invalid)?),
            None => None,
        };
        let mut names = BTreeSet::new();
        let mut slack_users = BTreeSet::new();
        let mut reviewers = Vec::new();
        for r in raw.reviewers {
            if !valid_name(&r.name) {
                return Err(invalid(format!(
                    "reviewer name {:?}: use letters, digits, '.', '_', '-' and '@' (1 to 64)",
                    r.name
                )));
            }
            if !names.insert(r.name.clone()) {
                return Err(invalid(format!("reviewer {:?} is defined twice", r.name)));
            }
            if let Some(id) = &r.slack_user
                && !slack_users.insert(id.clone())
            {
                return Err(invalid(format!(
                    "slack_user {id:?} belongs to two reviewers; a click must name one person"
                )));
            }
            reviewers.push(Reviewer {
                name: r.name,
                email: r.email,
                slack_user: r.slack_user,
                uids: r.uids,
            });
        }
        if reviewers.is_empty() {
            return Err(invalid(
                "no [[reviewer]]: nobody could answer a request".into(),
            ));
        }
        let mut channel_names = BTreeSet::new();
        let mut channels = Vec::new();
        let mut secret_files = Vec::new();
        for c in raw.channels {
            if !valid_name(&c.name) {
                return Err(invalid(format!("channel name {:?} is not valid", c.name)));
            }
            if !channel_names.insert(c.name.clone()) {
                return Err(invalid(format!("channel {:?} is defined twice", c.name)));
            }
            let url = check_url(&format!("channel {:?} url", c.name), &c.url).map_err(invalid)?;
            let load =
                |key: &str, file: &Option<PathBuf>| -> Result<Option<Vec<u8>>, ConfigError> {
                    match file {
                        None => Ok(None),
                        Some(f) => secret(f).map(Some).map_err(|e| {
                            invalid(format!("channel {:?} {key} {}: {e}", c.name, f.display()))
                        }),
                    }
                };
            let secret_value = load("secret_file", &c.secret_file)?;
            let signing = load("signing_secret_file", &c.signing_secret_file)?;
            secret_files.extend(c.secret_file.iter().chain(&c.signing_secret_file).cloned());
            match c.kind {
                ChannelKind::Webhook if secret_value.is_none() => {
                    return Err(invalid(format!(
                        "channel {:?}: a webhook needs secret_file (its requests are signed so the receiver can verify them)",
                        c.name
                    )));
                }
                ChannelKind::Slack if signing.is_none() => {
                    return Err(invalid(format!(
                        "channel {:?}: Slack needs signing_secret_file (clicks are verified with it)",
                        c.name
                    )));
                }
                _ => {}
            }
            channels.push(Channel {
                name: c.name,
                kind: c.kind,
                url,
                secret: secret_value,
                signing_secret: signing,
            });
        }
        if channels
            .iter()
            .filter(|c| c.kind == ChannelKind::Slack)
            .count()
            > 1
        {
            return Err(invalid(
                "more than one slack channel: the interactivity endpoint verifies with one signing secret".into(),
            ));
        }
        let delivery = match raw.delivery {
            Some(d) => delivery(d).map_err(|m| invalid(format!("[delivery] {m}")))?,
            None => RetryPolicy::default(),
        };
        Ok(ApprovalsConfig {
            origin: origin.into(),
            public_url,
            reviewers,
            channels,
            secret_files,
            delivery,
        })
    }

    pub fn reviewer(&self, name: &str) -> Option<&Reviewer> {
        self.reviewers.iter().find(|r| r.name == name)
    }

    /// The reviewer a Slack member id maps to.
    pub fn slack_reviewer(&self, slack_user: &str) -> Option<&Reviewer> {
        self.reviewers
            .iter()
            .find(|r| r.slack_user.as_deref() == Some(slack_user))
    }

    /// The reviewers local user `uid` acts as on the control socket.
    pub fn reviewers_for_uid(&self, uid: u32) -> Vec<&Reviewer> {
        self.reviewers
            .iter()
            .filter(|r| r.uids.contains(&uid))
            .collect()
    }

    pub fn slack(&self) -> Option<&Channel> {
        self.channels.iter().find(|c| c.kind == ChannelKind::Slack)
    }

    /// No reviewer may be an agent: refuses a reviewer uid that the agent scopes track.
    pub fn check_against_agents(&self, agent_uids: &[u32]) -> Result<(), ConfigError> {
        for r in &self.reviewers {
            if let Some(uid) = r.uids.iter().find(|u| agent_uids.contains(u)) {
                return Err(ConfigError::Invalid {
                    path: self.origin.clone(),
                    message: format!(
                        "reviewer {:?} has uid {uid}, whose processes are agents: an agent could approve its own requests",
                        r.name
                    ),
                });
            }
        }
        Ok(())
    }

    /// Names a policy uses as reviewers that this configuration does not define.
    pub fn unknown_reviewers<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut unknown: Vec<String> = names
            .into_iter()
            .filter(|n| self.reviewer(n).is_none())
            .map(str::to_string)
            .collect();
        unknown.sort();
        unknown.dedup();
        unknown
    }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
}

fn check_url(what: &str, url: &str) -> Result<String, String> {
    let trimmed = url.trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"));
    if rest.is_none_or(str::is_empty) || trimmed.contains(char::is_whitespace) {
        return Err(format!("{what} {url:?} is not an http(s) URL"));
    }
    Ok(trimmed.to_string())
}

/// The `[delivery]` table over the defaults: each value checked against a range that keeps
/// a notice from being tried forever or never waited for.
fn delivery(raw: RawDelivery) -> Result<RetryPolicy, String> {
    let defaults = RetryPolicy::default();
    let duration = |key: &str, value: Option<String>, default: Duration, range: (u64, u64)| {
        let Some(text) = value else {
            return Ok(default);
        };
        let d = humantime::parse_duration(&text)
            .map_err(|e| format!("{key} = {text:?}: {e} (write e.g. \"250ms\", \"2s\")"))?;
        let ms = d.as_millis();
        if ms < u128::from(range.0) || ms > u128::from(range.1) {
            return Err(format!(
                "{key} = {text:?} is outside {} to {}",
                humantime::format_duration(Duration::from_millis(range.0)),
                humantime::format_duration(Duration::from_millis(range.1)),
            ));
        }
        Ok(d)
    };
    let attempts = raw.attempts.unwrap_or(defaults.attempts);
    if !(1..=20).contains(&attempts) {
        return Err(format!("attempts = {attempts} is outside 1 to 20"));
    }
    let policy = RetryPolicy {
        attempts,
        first_backoff: duration(
            "first_backoff",
            raw.first_backoff,
            defaults.first_backoff,
            (10, 60_000),
        )?,
        max_backoff: duration(
            "max_backoff",
            raw.max_backoff,
            defaults.max_backoff,
            (10, 300_000),
        )?,
        attempt_timeout: duration(
            "attempt_timeout",
            raw.attempt_timeout,
            defaults.attempt_timeout,
            (100, 300_000),
        )?,
    };
    if policy.first_backoff > policy.max_backoff {
        return Err(format!(
            "first_backoff ({}) is longer than max_backoff ({})",
            humantime::format_duration(policy.first_backoff),
            humantime::format_duration(policy.max_backoff)
        ));
    }
    Ok(policy)
}

/// A secret file: not empty, not readable by group or others, trailing newline dropped.
fn read_secret(path: &Path) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "is readable by other users (mode {:o}); chmod 600 it",
            meta.mode() & 0o777
        ));
    }
    let mut bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err("is empty".into());
    }
    Ok(bytes)
}

/// toml's message with the line and column it names.
fn parse_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().to_string();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("{line}:{col}: {message}")
        }
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(path: &Path) -> Result<Vec<u8>, String> {
        match path.to_str() {
            Some("/s/hook") => Ok(b"hook-key".to_vec()),
            Some("/s/slack") => Ok(b"slack-key".to_vec()),
            _ => Err("No such file or directory".into()),
        }
    }

    fn parse(text: &str) -> Result<ApprovalsConfig, ConfigError> {
        ApprovalsConfig::parse(text, "approvals.toml", &secrets)
    }

    const GOOD: &str = r#"
version = 1
public_url = "https://review.example.com/"

[[reviewer]]
name = "alice"
email = "alice@example.com"
slack_user = "U1"
uids = [1000]

[[reviewer]]
name = "bob"

[[channel]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:9000/in"
secret_file = "/s/hook"

[[channel]]
name = "slack"
kind = "slack"
url = "https://hooks.slack.com/services/T/B/X"
signing_secret_file = "/s/slack"
"#;

    #[test]
    fn a_full_file_parses() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.public_url.as_deref(), Some("https://review.example.com"));
        assert_eq!(c.reviewers.len(), 2);
        assert_eq!(c.slack_reviewer("U1").unwrap().name, "alice");
        assert!(c.slack_reviewer("U2").is_none());
        assert_eq!(c.reviewers_for_uid(1000)[0].name, "alice");
        assert_eq!(c.channels[0].secret.as_deref(), Some(&b"hook-key"[..]));
        assert_eq!(
            c.slack().unwrap().signing_secret.as_deref(),
            Some(&b"slack-key"[..])
        );
        assert_eq!(
            c.unknown_reviewers(["alice", "carol", "carol"]),
            vec!["carol"]
        );
        assert!(!format!("{:?}", c.channels[0]).contains("hook-key"));
    }

    #[test]
    fn delivery_defaults_and_overrides() {
        assert_eq!(parse(GOOD).unwrap().delivery, RetryPolicy::default());
        let c = parse(&format!(
            "{GOOD}\n[delivery]\nattempts = 2\nfirst_backoff = \"50ms\"\nattempt_timeout = \"1s\"\n"
        ))
        .unwrap();
        assert_eq!(
            c.delivery,
            RetryPolicy {
                attempts: 2,
                first_backoff: Duration::from_millis(50),
                max_backoff: RetryPolicy::default().max_backoff,
                attempt_timeout: Duration::from_secs(1),
            }
        );
        for (table, named) in [
            ("attempts = 0", "attempts = 0 is outside 1 to 20"),
            ("attempts = 50", "attempts = 50 is outside 1 to 20"),
            (
                "attempt_timeout = \"5ms\"",
                "attempt_timeout = \"5ms\" is outside 100ms to 5m",
            ),
            ("first_backoff = \"soon\"", "first_backoff = \"soon\""),
            (
                "first_backoff = \"10s\"\nmax_backoff = \"1s\"",
                "first_backoff (10s) is longer than max_backoff (1s)",
            ),
            ("retries = 3", "unknown field `retries`"),
        ] {
            let err = parse(&format!("{GOOD}\n[delivery]\n{table}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(named), "{table}: {err}");
        }
    }

    #[test]
    fn mistakes_are_named() {
        let cases: &[(&str, &str)] = &[
            ("version = 2\n[[reviewer]]\nname = \"a\"", "version = 2"),
            (
                "version = 1\n[[reviewer]]\nname = \"a\"\nnick = \"x\"",
                "4:1: unknown field `nick`",
            ),
            ("version = 1", "no [[reviewer]]"),
            (
                "version = 1\n[[reviewer]]\nname = \"a b\"",
                "reviewer name \"a b\"",
            ),
            (
                "version = 1\n[[reviewer]]\nname = \"a\"\n[[reviewer]]\nname = \"a\"",
                "defined twice",
            ),
            (
                "version = 1\n[[reviewer]]\nname = \"a\"\nslack_user = \"U\"\n[[reviewer]]\nname = \"b\"\nslack_user = \"U\"",
                "belongs to two reviewers",
            ),
            (
                "version = 1\n[[reviewer]]\nname = \"a\"\n[[channel]]\nname = \"h\"\nkind = \"webhook\"\nurl = \"http://x\"",
                "needs secret_file",
            ),
            (
                "version = 1\n[[reviewer]]\nname = \"a\"\n[[channel]]\nname = \"h\"\nkind = \"webhook\"\nurl = \"http://x\"\nsecret_file = \"/s/none\"",
                "channel \"h\" secret_file /s/none: No such file",
            ),
            (
                "version = 1\n[[reviewer]]\nname = \"a\"\n[[channel]]\nname = \"s\"\nkind = \"slack\"\nurl = \"https://x\"",
                "needs signing_secret_file",
            ),
            (
                "version = 1\n[[reviewer]]\nname = \"a\"\n[[channel]]\nname = \"t\"\nkind = \"teams\"\nurl = \"ftp://x\"",
                "not an http(s) URL",
            ),
            (
                "version = 1\n[[reviewer]]\nname = \"a\"\n[[channel]]\nname = \"t\"\nkind = \"pager\"\nurl = \"https://x\"",
                "unknown variant `pager`",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains(want), "{text:?}: {err:?} lacks {want:?}");
            assert!(err.starts_with("approvals.toml: "), "{err}");
        }
    }

    #[test]
    fn a_reviewer_who_is_an_agent_is_refused() {
        let c = parse(GOOD).unwrap();
        assert!(c.check_against_agents(&[2000]).is_ok());
        let err = c
            .check_against_agents(&[2000, 1000])
            .unwrap_err()
            .to_string();
        assert!(err.contains("reviewer \"alice\" has uid 1000"), "{err}");
        let builtin = ApprovalsConfig::builtin();
        assert!(
            builtin.check_against_agents(&[0]).is_err(),
            "root as an agent uid"
        );
    }

    #[test]
    fn secret_files_must_be_private_and_not_empty() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("approvals-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        std::fs::write(&file, "k3y\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_secret(&file).unwrap_err().contains("mode 644"));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret(&file).unwrap(), b"k3y");
        std::fs::write(&file, "\n").unwrap();
        assert_eq!(read_secret(&file).unwrap_err(), "is empty");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
