//! The policy engine: what an agent may exec and open, and who must be asked first.
//!
//! A policy file (format version 1, TOML, decoded strictly) declares agents, rules and
//! inline test cases. This module owns
//! - [`schema`]: decoding and validating the file, with file:line:col in every error;
//! - [`matcher`]: judging one exec or open ([`Policy::evaluate_exec`],
//!   [`Policy::evaluate_open`]): every matching rule is reported and the most restrictive
//!   wins (deny > ask > audit > allow; ties go to the rule first in the file);
//! - [`compile`]: the kernel's fast-path entries, with every rule the kernel cannot decide
//!   on its own marked as decided in userspace (never dropped);
//! - [`cases`]: the inline `[[test]]` cases;
//! - [`cli`]: `interceptor policy check | explain | test | show | tune`;
//! - [`tune`]: per-rule statistics and suggestions from the audit log.
//!
//! A rule (or the whole policy) in `monitor` mode is shadow mode: it is matched and
//! reported like any other, but never enforced. [`Decision::action`] comes from enforced
//! rules only, and [`Decision::shadow`] says what a stricter monitor rule would have done.
//!
//! Binaries are judged by what the kernel resolved (the file's device and inode, and its
//! real path), never by the name a caller typed, so symlinks, hardlinks, `env CMD` and
//! `bash -c CMD` reach the rule of the program that really runs.

pub mod cases;
pub mod cli;
pub mod compile;
pub mod matcher;
pub mod schema;
pub mod tune;

use std::{path::Path, time::Duration};

use interceptor_common::Verdict;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use compile::{
    CompiledExecRule, CompiledOpenRule, CompiledPolicy, DecidedBy, ExecFallback, NameDir,
    NameMatch, OpenTarget, access_mask,
};
pub use matcher::{AccessMode, Decision, ExecContext, OpenContext, RuleMatch, Shadow};

/// The policy shipped with interceptor, used when no policy file is given or installed.
pub const DEFAULT_POLICY: &str = include_str!("../../../policies/default.toml");

/// Why a policy was rejected.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("reading policy {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The file does not decode, or a value in it is invalid; the position is 1-based.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
}

/// An action a rule can take, from least to most restrictive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Run it.
    Allow,
    /// Run it and record it.
    Audit,
    /// Hold it until a reviewer answers.
    Ask,
    /// Refuse it.
    Deny,
}

impl Action {
    /// The lowercase name used in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Audit => "audit",
            Action::Ask => "ask",
            Action::Deny => "deny",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Action> for Verdict {
    fn from(action: Action) -> Self {
        match action {
            Action::Allow => Verdict::Allow,
            Action::Audit => Verdict::Audit,
            Action::Ask => Verdict::Ask,
            Action::Deny => Verdict::Deny,
        }
    }
}

/// Whether a rule is enforced, or only watched (shadow mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The rule's action is applied.
    #[default]
    Enforce,
    /// The rule is matched and its would-be decision recorded, but the operation goes on
    /// as the enforced rules decide: against approval fatigue, try a rule before it holds.
    Monitor,
}

impl Mode {
    /// The lowercase name used in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Monitor => "monitor",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of operation a rule judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// Running a program (execve and friends).
    Exec,
    /// Opening a file.
    Open,
}

/// How bad it is when a rule fires; shown to reviewers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

/// Which opens an open rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Opens that can read.
    Read,
    /// Opens that can write, create, truncate or append.
    Write,
    /// Every open.
    Any,
}

/// What an approval given under a rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GrantScope {
    /// Only this operation: the same binary with the same argv (or the same file and access).
    Once,
    /// The same binary with the same argv, again, within the grant's limits.
    ExactArgv,
    /// The same binary with any argv, within the grant's limits.
    Binary,
}

/// A rule's escalation: after `after` without an answer, `to` (names or `@group`) are asked
/// too, with their own review links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Escalation {
    #[serde(with = "duration_secs_req")]
    pub after: Duration,
    pub to: Vec<String>,
}

/// Limits on what one approval lets through later without asking again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantLimits {
    /// The grant expires this long after approval.
    #[serde(with = "duration_secs")]
    pub max_ttl: Option<Duration>,
    /// The grant is used up after this many operations.
    pub max_uses: Option<u32>,
    pub scope: GrantScope,
}

/// What applies when no rule matches, and to asks that name no reviewers or timeout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Defaults {
    /// Action for an exec no rule matches.
    pub exec: Action,
    /// Action for an open no rule matches.
    pub open: Action,
    /// How long an `ask` waits for a reviewer.
    #[serde(with = "duration_secs_req")]
    pub timeout: Duration,
    /// What an unanswered `ask` becomes.
    pub on_timeout: Action,
    /// Who is asked when a rule names nobody.
    pub reviewers: Vec<String>,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            exec: Action::Audit,
            open: Action::Allow,
            timeout: Duration::from_secs(300),
            on_timeout: Action::Deny,
            reviewers: Vec::new(),
        }
    }
}

/// A declared agent: a name, and how its processes are recognised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Agent {
    pub name: String,
    /// Processes running as one of these uids belong to the agent.
    pub uids: Vec<u32>,
    /// Processes in a cgroup v2 whose path matches one of these globs belong to the agent.
    pub cgroups: Vec<String>,
    /// Agents started with `interceptor run --agent NAME` where NAME matches one of these
    /// globs; with no selectors at all, the agent's own name is its launched name.
    pub launched_names: Vec<String>,
    /// What `~` means in this agent's path rules; default: its uid's home in /etc/passwd.
    pub home: Option<String>,
}

/// One rule: the operations it matches and what happens to them.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique name, reported with every decision the rule takes part in.
    pub name: String,
    pub description: Option<String>,
    pub operation: Operation,
    /// The agents this rule applies to; empty: every agent.
    pub agents: Vec<String>,
    /// What the rule does when it wins; for a `monitor` rule, what it would have done.
    pub action: Action,
    /// `monitor`: never enforced, only reported ([`Decision::shadow`]). The rule's own
    /// `mode`, else the policy's.
    pub mode: Mode,
    /// Who may answer an `ask` (names, or `@group` from `[groups]`); empty: the defaults.
    pub reviewers: Vec<String>,
    /// Approvals from different reviewers needed before the operation runs (quorum);
    /// one denial is enough to refuse it.
    pub min_approvals: u32,
    /// Who else is asked when nobody answered for a while.
    pub escalation: Option<Escalation>,
    pub timeout: Option<Duration>,
    pub on_timeout: Option<Action>,
    pub grant: Option<GrantLimits>,
    /// Why the rule exists; shown to reviewers.
    pub reason: Option<String>,
    pub severity: Option<Severity>,
    /// Compliance control tags, `FRAMEWORK:CONTROL` (e.g. `SOC2:CC6.1`).
    pub controls: Vec<String>,
    /// 1-based line of the rule in its file (0 for rules not from a file).
    pub line: usize,
    pub(crate) matcher: matcher::RuleMatcher,
}

impl Rule {
    /// Whether the rule is in shadow mode: reported, never enforced.
    pub fn is_monitor(&self) -> bool {
        self.mode == Mode::Monitor
    }
}

/// A parsed, validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Format version of the file; only 1 exists.
    pub format: u32,
    /// The policy's `mode`, the default of its rules' (`[defaults]` are always enforced).
    pub mode: Mode,
    pub defaults: Defaults,
    pub agents: Vec<Agent>,
    /// Reviewer groups: `@name` in a `reviewers` list stands for these names.
    pub groups: std::collections::BTreeMap<String, Vec<String>>,
    pub rules: Vec<Rule>,
    pub tests: Vec<cases::TestCase>,
    /// Where the policy came from (a path, or "built-in default policy").
    pub origin: String,
    version: String,
    /// The bytes the version hashes: the file, then one line per command-line rule.
    canonical: Vec<u8>,
}

impl Policy {
    /// Parses and validates a policy; `origin` names the source in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, PolicyError> {
        schema::decode(text, origin)
    }

    /// Reads and parses a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// A policy with no agents, rules or tests, and the default [`Defaults`].
    pub fn empty(origin: &str) -> Self {
        Self::parse("version = 1\n", origin).expect("the empty policy is valid")
    }

    /// Adds rules given on the command line (`--deny-exec`, `--hold-exec`). They count in
    /// the policy version, so a decision taken under them names a different version. They
    /// are enforced even in a `monitor` policy: the operator asked for them by name.
    pub fn add_cli_rule(&mut self, action: Action, binary: &str) {
        let flag = match action {
            Action::Deny => "deny-exec",
            Action::Ask => "hold-exec",
            Action::Allow | Action::Audit => "exec",
        };
        self.rules.push(Rule {
            name: format!("cli:{flag}:{binary}"),
            description: None,
            operation: Operation::Exec,
            agents: Vec::new(),
            action,
            mode: Mode::Enforce,
            reviewers: Vec::new(),
            min_approvals: 1,
            escalation: None,
            timeout: None,
            on_timeout: None,
            grant: None,
            reason: Some(format!("given as --{flag} on the daemon's command line")),
            severity: None,
            controls: Vec::new(),
            line: 0,
            matcher: matcher::RuleMatcher::exact_binary(binary),
        });
        self.canonical
            .extend_from_slice(format!("\n# cli rule: --{flag} {binary}\n").as_bytes());
        self.version = content_hash(&self.canonical);
    }

    /// The policy version: SHA-256 (hex) of the source bytes and any command-line rules.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The rule with the 1-based id the kernel reports.
    pub fn rule(&self, rule_id: u32) -> Option<&Rule> {
        rule_id
            .checked_sub(1)
            .and_then(|i| self.rules.get(i as usize))
    }

    /// The rule behind a kernel rule id when it is in `monitor` mode, with the action it
    /// would have taken: the kernel let the operation run (`audit`), and the daemon records
    /// the would-be decision ([`Policy::evaluate_exec`] gives it as [`Decision::shadow`]).
    pub fn monitor_rule(&self, rule_id: u32) -> Option<(&Rule, Action)> {
        self.rule(rule_id)
            .filter(|r| r.is_monitor())
            .map(|r| (r, r.action))
    }

    /// The rule with this name.
    pub fn rule_named(&self, name: &str) -> Option<(u32, &Rule)> {
        self.rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.name == name)
            .map(|(i, r)| (i as u32 + 1, r))
    }

    /// The declared agent with this name.
    pub fn agent(&self, name: &str) -> Option<&Agent> {
        self.agents.iter().find(|a| a.name == name)
    }

    /// The first declared agent whose selectors match a process: its uid, its cgroup v2
    /// path, and the name it was launched under (`interceptor run --agent NAME`).
    pub fn select_agent(
        &self,
        uid: u32,
        cgroup: Option<&str>,
        launched_name: Option<&str>,
    ) -> Option<&Agent> {
        self.agents
            .iter()
            .find(|a| matcher::agent_selected(a, uid, cgroup, launched_name))
    }

    /// Resolves every rule to what the kernel can decide by itself and what it must hand to
    /// userspace. See [`CompiledPolicy`].
    pub fn compile(&self) -> CompiledPolicy {
        compile::compile(self)
    }
}

pub(crate) fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Converts a userspace `st_dev` to the kernel's internal encoding (`MKDEV`: major << 20 |
/// minor), which is what `super_block.s_dev` holds.
pub fn kernel_dev(st_dev: u64) -> u64 {
    let major = libc::major(st_dev) as u64;
    let minor = libc::minor(st_dev) as u64;
    (major << 20) | minor
}

/// 1-based (line, column) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.chars().count()
        - before
            .rfind('\n')
            .map_or(0, |i| before[..=i].chars().count())
        + 1;
    (line, column)
}

/// Parses `90s`, `5m`, `1h`, `2d`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("duration {text:?} must be a number and a unit: 90s, 5m, 1h, 2d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => {
            return Err(format!(
                "duration {text:?} has unit {unit:?}; use s, m, h or d (90s, 5m, 1h, 2d)"
            ));
        }
    };
    if secs == 0 {
        return Err(format!("duration {text:?} must be longer than zero"));
    }
    Ok(Duration::from_secs(secs))
}

mod duration_secs {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs()),
            None => s.serialize_none(),
        }
    }
}

mod duration_secs_req {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

#[cfg(test)]
mod tests;
