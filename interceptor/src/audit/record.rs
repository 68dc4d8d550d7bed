//! What the audit log records: one typed [`AuditEvent`] per row, the indexed [`Columns`]
//! derived from it for filters, and the [`NewEntry`] envelope (time, related row) the
//! writer is handed.
//!
//! The event is stored as JSON text (the `payload` column) exactly as serialized here; the
//! chain hashes those bytes, so a payload is never re-serialized once written. Field names
//! are part of the on-disk format: add fields with `#[serde(default)]`, never rename.
//! Readers accept unknown fields, so an older CLI can read a newer daemon's log.

use std::{
    collections::BTreeMap,
    fmt,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::policy::{Action, Operation};

/// One thing the daemon saw or did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditEvent {
    /// An agent ran a program (as the kernel reported it, with the kernel's fast-path verdict).
    Exec(ExecAudit),
    /// An agent opened a file a rule names.
    Open(OpenAudit),
    /// A decision on an exec or open: by the kernel, the policy, a reviewer, a timeout, or
    /// the fail-closed rule while the daemon was down.
    Decision(DecisionAudit),
    /// A step in an approval's life: requested, notified, approved, denied, expired.
    Approval(ApprovalAudit),
    /// A just-in-time grant was installed, used or expired.
    Grant(GrantAudit),
    /// A policy reload was accepted or rejected.
    PolicyReload(PolicyReloadAudit),
    /// The daemon started or stopped, with the backend and what it guarantees.
    Daemon(DaemonAudit),
    /// Events lost on the way (kernel counters, audit queue drops).
    Loss(LossAudit),
    /// Old rows were pruned; written by the prune itself (see [`super::chain`]).
    Prune(PruneAudit),
    /// A kernel guard refused an agent something no policy may allow (connecting to the
    /// approval listener).
    Guard(GuardAudit),
}

/// The process an operation belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// The agent's name.
    pub agent: String,
    /// The session the agent was launched in (`interceptor run --session`), inherited by
    /// everything it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    pub pid: u32,
    #[serde(default)]
    pub ppid: u32,
    #[serde(default)]
    pub uid: u32,
    /// The program's real path (`/proc/PID/exe`), not the name the caller typed.
    pub binary: String,
    /// The whole argv, as read while the task was held (or the kernel's bounded copy).
    #[serde(default)]
    pub argv: Vec<String>,
    #[serde(default)]
    pub cwd: Option<String>,
    /// The environment (`KEY=value`) read while the task was held, with the values of
    /// secret-shaped keys replaced by `<redacted>`; empty for operations never held.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// The process's ancestors, parent first, as `PID PROGRAM`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<String>,
}

/// An agent exec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecAudit {
    pub process: ProcessInfo,
    /// The path given to execve.
    #[serde(default)]
    pub filename: String,
    /// Files the exec names (scripts, interpreter targets), when known.
    #[serde(default)]
    pub files: Vec<String>,
    /// The kernel's fast-path verdict (`allow`, `audit`, `ask`, `deny`).
    #[serde(default)]
    pub verdict: Option<Action>,
    /// The rule behind the kernel's verdict.
    #[serde(default)]
    pub rule: Option<String>,
    /// Facts about the event: `held`, `denied`, `argv_truncated`, `unlinked_binary`,
    /// `daemon_down`, ...
    #[serde(default)]
    pub flags: Vec<String>,
}

/// An agent open that a rule matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenAudit {
    pub process: ProcessInfo,
    /// The absolute path, as the kernel resolved it.
    pub path: String,
    /// `read`, `write`, `create`, `truncate`.
    #[serde(default)]
    pub access: Vec<String>,
    #[serde(default)]
    pub verdict: Option<Action>,
    #[serde(default)]
    pub rule: Option<String>,
    #[serde(default)]
    pub flags: Vec<String>,
}

/// What became of the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It ran (or the open succeeded).
    Allowed,
    /// It was refused or killed.
    Denied,
    /// It waits for a reviewer.
    Held,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Held => "held",
        }
    }
}

/// Who or what took a decision.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum DecidedBy {
    /// The kernel's verdict from its maps (fast path).
    Kernel,
    /// The policy, evaluated by the daemon.
    Policy,
    /// A reviewer, by name.
    Reviewer(String),
    /// Nobody answered in time; the rule's `on_timeout` applied.
    Timeout,
    /// The daemon was down, so the kernel failed closed.
    DaemonDown,
    /// A grant a reviewer gave with an earlier approval (`x<id>`, request and reviewer).
    Grant(String),
}

impl DecidedBy {
    /// The `decided_by` column: the kind without the reviewer's name.
    pub fn kind(&self) -> &'static str {
        match self {
            DecidedBy::Kernel => "kernel",
            DecidedBy::Policy => "policy",
            DecidedBy::Reviewer(_) => "reviewer",
            DecidedBy::Timeout => "timeout",
            DecidedBy::DaemonDown => "daemon-down",
            DecidedBy::Grant(_) => "grant",
        }
    }

    /// The reviewer's name, for a reviewer's decision.
    pub fn reviewer(&self) -> Option<&str> {
        match self {
            DecidedBy::Reviewer(name) => Some(name),
            _ => None,
        }
    }
}

impl fmt::Display for DecidedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecidedBy::Reviewer(name) => write!(f, "reviewer:{name}"),
            DecidedBy::Grant(grant) => write!(f, "grant:{grant}"),
            other => f.write_str(other.kind()),
        }
    }
}

impl From<DecidedBy> for String {
    fn from(d: DecidedBy) -> Self {
        d.to_string()
    }
}

impl TryFrom<String> for DecidedBy {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Ok(match s.as_str() {
            "kernel" => DecidedBy::Kernel,
            "policy" => DecidedBy::Policy,
            "timeout" => DecidedBy::Timeout,
            "daemon-down" => DecidedBy::DaemonDown,
            _ => match (s.strip_prefix("reviewer:"), s.strip_prefix("grant:")) {
                (Some(name), _) if !name.is_empty() => DecidedBy::Reviewer(name.to_string()),
                (_, Some(grant)) if !grant.is_empty() => DecidedBy::Grant(grant.to_string()),
                _ => {
                    return Err(format!(
                        "decided_by {s:?} is not kernel, policy, reviewer:NAME, grant:GRANT, timeout or daemon-down"
                    ));
                }
            },
        })
    }
}

/// A decision, with everything needed to understand it later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionAudit {
    pub operation: Operation,
    pub process: ProcessInfo,
    /// The files the operation concerns (the opened path; files an exec names).
    #[serde(default)]
    pub files: Vec<String>,
    /// For opens: the access modes asked for.
    #[serde(default)]
    pub access: Vec<String>,
    /// Every rule that matched, in file order.
    #[serde(default)]
    pub matched_rules: Vec<String>,
    /// The rule that decided; `None` when a default applied.
    #[serde(default)]
    pub winner: Option<String>,
    /// What the policy said.
    pub action: Action,
    /// What was applied.
    pub outcome: Outcome,
    pub reason: String,
    /// SHA-256 (hex) of the policy in force.
    pub policy_version: String,
    /// The winner's compliance control tags.
    #[serde(default)]
    pub controls: Vec<String>,
    pub decided_by: DecidedBy,
    /// From the kernel's event to this decision (for a reviewer: the wait for them).
    #[serde(default)]
    pub latency_us: Option<u64>,
    /// The approval request this decision opened or closed, if any.
    #[serde(default)]
    pub request: Option<u64>,
    /// Shadow mode: the winning rule is in `monitor` mode, so `action` is what the policy
    /// would have done and the operation was allowed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub monitor: bool,
    /// What the same agent did just before (newest last), as the reviewer saw it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<String>,
}

/// A step in an approval request's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStep {
    /// Persisted, before any notification was sent.
    Requested,
    /// A channel (webhook, Slack, Teams) was told.
    Notified,
    Approved,
    Denied,
    /// Nobody answered in time.
    Expired,
    /// A decision arrived too late, or from someone not allowed to take it.
    Rejected,
    /// The held task went away (killed by someone else, or exited) before an answer.
    Cancelled,
    /// Nobody answered for the rule's `escalate_after`: more reviewers were asked.
    Escalated,
}

impl ApprovalStep {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStep::Requested => "requested",
            ApprovalStep::Notified => "notified",
            ApprovalStep::Approved => "approved",
            ApprovalStep::Denied => "denied",
            ApprovalStep::Expired => "expired",
            ApprovalStep::Rejected => "rejected",
            ApprovalStep::Cancelled => "cancelled",
            ApprovalStep::Escalated => "escalated",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalAudit {
    /// The daemon's request id.
    pub request: u64,
    pub step: ApprovalStep,
    pub operation: Operation,
    pub agent: String,
    pub pid: u32,
    /// The program run (exec) or the process that opens (open).
    #[serde(default)]
    pub binary: String,
    /// For opens: the path.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub rule: Option<String>,
    #[serde(default)]
    pub controls: Vec<String>,
    /// Who may answer (on `requested`).
    #[serde(default)]
    pub reviewers: Vec<String>,
    /// The channel told (on `notified`) or the one the answer came from.
    #[serde(default)]
    pub channel: Option<String>,
    /// The reviewer who answered (approved, denied, rejected).
    #[serde(default)]
    pub by: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantStep {
    Installed,
    Used,
    Expired,
    /// Ended early by a reviewer (`interceptor grants revoke`).
    Revoked,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantAudit {
    pub step: GrantStep,
    pub agent: String,
    /// The binary or file the grant covers.
    pub target: String,
    #[serde(default)]
    pub uses_left: Option<u32>,
    /// Unix time in ms when it expires.
    #[serde(default)]
    pub expires_at_ms: Option<u64>,
    /// The request whose approval installed it.
    #[serde(default)]
    pub request: Option<u64>,
    /// Who approved it.
    #[serde(default)]
    pub by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyReloadAudit {
    pub accepted: bool,
    /// The policy file (or "built-in default policy").
    pub origin: String,
    /// The version in force after the reload (the old one when rejected).
    pub policy_version: String,
    #[serde(default)]
    pub previous_version: Option<String>,
    /// Why it was rejected (file:line:col: message).
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DaemonStep {
    Start,
    Stop,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonAudit {
    pub step: DaemonStep,
    /// `lsm` or `tracepoint`.
    pub backend: String,
    /// What the backend guarantees, a sentence each.
    #[serde(default)]
    pub guarantees: Vec<String>,
    pub pid: u32,
    /// interceptor's version.
    pub version: String,
    #[serde(default)]
    pub policy_version: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
}

/// An agent operation a kernel guard refused, whatever the policy says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardAudit {
    /// The guard, named like a rule (`builtin:approval-listener`).
    pub rule: String,
    pub process: ProcessInfo,
    /// What the agent tried to reach (`127.0.0.1:9477`).
    pub target: String,
    /// What happened, in words.
    #[serde(default)]
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LossAudit {
    /// Counter name -> value (kernel counters are cumulative since load).
    pub counters: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneAudit {
    /// Rows older than this (unix ms) were asked to go.
    pub before_ms: u64,
    /// Rows 1..=this seq are gone; the chain now starts after it.
    pub pruned_through_seq: u64,
    pub pruned_rows: u64,
    /// Hash (hex) of the last pruned row: the first kept row's `prev_hash`.
    pub anchor_hash: String,
}

/// The indexed columns of a row. Derived from the event; hashed with it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Columns {
    pub kind: String,
    pub agent: Option<String>,
    pub pid: Option<i64>,
    /// `exec` or `open`.
    pub operation: Option<String>,
    /// The program (the process' binary for opens).
    pub binary: Option<String>,
    /// The opened file.
    pub path: Option<String>,
    /// What the policy (or kernel) said: allow, audit, ask, deny.
    pub action: Option<String>,
    /// What happened: allowed, denied, held; for approvals the step.
    pub outcome: Option<String>,
    /// The deciding rule.
    pub rule: Option<String>,
    /// Control tags, space-separated with a space at each end (" SOC2:CC6.1 X:Y "), so a
    /// tag is found as " TAG ".
    pub controls: Option<String>,
    /// kernel, policy, reviewer, timeout, daemon-down.
    pub decided_by: Option<String>,
    /// The reviewer who decided.
    pub approver: Option<String>,
}

impl AuditEvent {
    /// The `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            AuditEvent::Exec(_) => "exec",
            AuditEvent::Open(_) => "open",
            AuditEvent::Decision(_) => "decision",
            AuditEvent::Approval(_) => "approval",
            AuditEvent::Grant(_) => "grant",
            AuditEvent::PolicyReload(_) => "policy_reload",
            AuditEvent::Daemon(_) => "daemon",
            AuditEvent::Loss(_) => "loss",
            AuditEvent::Prune(_) => "prune",
            AuditEvent::Guard(_) => "guard",
        }
    }

    /// The indexed columns for this event.
    pub fn columns(&self) -> Columns {
        let mut c = Columns {
            kind: self.kind().to_string(),
            ..Columns::default()
        };
        let op = |o: Operation| {
            Some(match o {
                Operation::Exec => "exec".to_string(),
                Operation::Open => "open".to_string(),
            })
        };
        match self {
            AuditEvent::Exec(e) => {
                process_columns(&mut c, &e.process);
                c.operation = op(Operation::Exec);
                c.action = e.verdict.map(|a| a.as_str().to_string());
                c.rule.clone_from(&e.rule);
            }
            AuditEvent::Open(e) => {
                process_columns(&mut c, &e.process);
                c.operation = op(Operation::Open);
                c.path = Some(e.path.clone());
                c.action = e.verdict.map(|a| a.as_str().to_string());
                c.rule.clone_from(&e.rule);
            }
            AuditEvent::Decision(d) => {
                process_columns(&mut c, &d.process);
                c.operation = op(d.operation);
                if d.operation == Operation::Open {
                    c.path = d.files.first().cloned();
                }
                c.action = Some(d.action.as_str().to_string());
                c.outcome = Some(d.outcome.as_str().to_string());
                c.rule.clone_from(&d.winner);
                c.controls = control_column(&d.controls);
                c.decided_by = Some(d.decided_by.kind().to_string());
                c.approver = d.decided_by.reviewer().map(str::to_string);
            }
            AuditEvent::Approval(a) => {
                c.agent = Some(a.agent.clone());
                c.pid = Some(a.pid.into());
                c.operation = op(a.operation);
                c.binary = Some(a.binary.clone()).filter(|b| !b.is_empty());
                c.path.clone_from(&a.path);
                c.outcome = Some(a.step.as_str().to_string());
                c.rule.clone_from(&a.rule);
                c.controls = control_column(&a.controls);
                if matches!(a.step, ApprovalStep::Approved | ApprovalStep::Denied) {
                    c.decided_by = Some("reviewer".into());
                    c.approver.clone_from(&a.by);
                }
            }
            AuditEvent::Grant(g) => {
                c.agent = Some(g.agent.clone());
                c.path = Some(g.target.clone());
                c.approver.clone_from(&g.by);
            }
            AuditEvent::PolicyReload(p) => {
                c.outcome = Some(if p.accepted { "accepted" } else { "rejected" }.into());
            }
            AuditEvent::Daemon(d) => {
                c.pid = Some(d.pid.into());
            }
            AuditEvent::Guard(g) => {
                process_columns(&mut c, &g.process);
                c.path = Some(g.target.clone());
                c.action = Some(Action::Deny.as_str().to_string());
                c.outcome = Some(Outcome::Denied.as_str().to_string());
                c.rule = Some(g.rule.clone());
                c.decided_by = Some(DecidedBy::Kernel.kind().to_string());
            }
            AuditEvent::Loss(_) | AuditEvent::Prune(_) => {}
        }
        c.sanitize();
        c
    }

    /// The process an event is about, when it is about one.
    pub fn process(&self) -> Option<&ProcessInfo> {
        match self {
            AuditEvent::Exec(e) => Some(&e.process),
            AuditEvent::Open(e) => Some(&e.process),
            AuditEvent::Decision(d) => Some(&d.process),
            AuditEvent::Guard(g) => Some(&g.process),
            _ => None,
        }
    }
}

fn process_columns(c: &mut Columns, p: &ProcessInfo) {
    c.agent = Some(p.agent.clone());
    c.pid = Some(p.pid.into());
    c.binary = Some(p.binary.clone());
}

fn control_column(controls: &[String]) -> Option<String> {
    (!controls.is_empty()).then(|| format!(" {} ", controls.join(" ")))
}

impl Columns {
    /// PostgreSQL text cannot hold NUL; no legitimate value has one (paths, names, tags), so
    /// a NUL becomes U+FFFD in the column. The payload keeps the original (JSON escapes it).
    fn sanitize(&mut self) {
        for v in [
            &mut self.agent,
            &mut self.operation,
            &mut self.binary,
            &mut self.path,
            &mut self.action,
            &mut self.outcome,
            &mut self.rule,
            &mut self.controls,
            &mut self.decided_by,
            &mut self.approver,
        ]
        .into_iter()
        .flatten()
        {
            if v.contains('\0') {
                *v = v.replace('\0', "\u{fffd}");
            }
        }
    }
}

/// An event on its way to the log: when it happened, and the row it follows up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// Unix time in ms.
    pub time_ms: u64,
    /// The seq of the row that started this story (the decision that held an operation),
    /// so `audit show` can gather a request's whole lifecycle. Always the story's first
    /// row, never an intermediate one.
    pub ref_seq: Option<u64>,
    pub event: AuditEvent,
}

impl NewEntry {
    /// An event stamped now.
    pub fn now(event: AuditEvent) -> Self {
        Self {
            time_ms: now_ms(),
            ref_seq: None,
            event,
        }
    }

    /// Marks this entry as a follow-up of row `seq`.
    pub fn follows(mut self, seq: u64) -> Self {
        self.ref_seq = Some(seq);
        self
    }
}

impl From<AuditEvent> for NewEntry {
    fn from(event: AuditEvent) -> Self {
        Self::now(event)
    }
}

/// Unix time in ms.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One row as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredRow {
    pub seq: u64,
    pub time_ms: i64,
    #[serde(flatten)]
    pub columns: Columns,
    pub ref_seq: Option<i64>,
    /// The event, as JSON text (hashed byte for byte).
    #[serde(skip)]
    pub payload: String,
    #[serde(serialize_with = "hex_bytes")]
    pub prev_hash: Vec<u8>,
    #[serde(serialize_with = "hex_bytes")]
    pub hash: Vec<u8>,
}

fn hex_bytes<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(b))
}

impl StoredRow {
    /// The event this row records.
    pub fn event(&self) -> Result<AuditEvent, serde_json::Error> {
        serde_json::from_str(&self.payload)
    }

    /// The row as one JSON object: columns, hashes and the decoded event (or the raw
    /// payload text when it does not decode).
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("rows serialize");
        let event = serde_json::from_str::<serde_json::Value>(&self.payload)
            .unwrap_or_else(|_| serde_json::Value::String(self.payload.clone()));
        v["event"] = event;
        v
    }
}
