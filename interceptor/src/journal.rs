//! What the daemon writes to the audit log, built from what the kernel reported and what
//! /proc shows of a held task. Conversions only: the daemon decides when a row is written
//! and whether the operation waits for its commit.
//!
//! Every agent event becomes an observation row (`exec` or `open`). An event a rule decided
//! in the kernel (deny, audit, or a refusal because the daemon or the log was down) also
//! gets a `decision` row carrying the rule, its controls and the policy version, so that
//! `audit query --rule`, `--control` and `--decision` find it without reading payloads.

use std::collections::VecDeque;

use crate::{
    audit::{
        AuditEvent, DecidedBy, DecisionAudit, ExecAudit, OpenAudit, Outcome, ProcessInfo,
        record::now_ms,
    },
    control::ExecRecord,
    policy::{Action, Operation, Policy},
    procfs::Ancestor,
};

/// How many earlier operations of the same agent a decision carries.
pub const RECENT_ACTIVITY: usize = 10;

/// The kernel's verdict by name.
pub fn action_of(verdict: &str) -> Option<Action> {
    Some(match verdict {
        "allow" => Action::Allow,
        "audit" => Action::Audit,
        "ask" => Action::Ask,
        "deny" => Action::Deny,
        _ => return None,
    })
}

/// The operation of a record.
pub fn operation_of(record: &ExecRecord) -> Operation {
    if record.kind == "open" {
        Operation::Open
    } else {
        Operation::Exec
    }
}

/// The process as the kernel's event describes it (no /proc reads: events arrive by the
/// thousand).
pub fn process_info(record: &ExecRecord) -> ProcessInfo {
    ProcessInfo {
        agent: record.agent.clone(),
        session: record.session.clone(),
        pid: record.pid,
        ppid: record.ppid,
        uid: record.uid,
        binary: if record.kind == "open" || record.path.is_empty() {
            // Opens carry the opened path, not the program; execs on the tracepoint
            // backend carry no resolved path.
            String::new()
        } else {
            record.path.clone()
        },
        argv: record.argv.clone(),
        cwd: None,
        env: Vec::new(),
        parents: Vec::new(),
    }
}

/// The facts about an event, by name.
pub fn flags_of(record: &ExecRecord) -> Vec<String> {
    [
        (record.held, "held"),
        (record.denied, "denied"),
        (record.hold_failed, "hold_failed"),
        (record.argv_truncated, "argv_truncated"),
        (
            record.argv_unavailable && record.kind != "open",
            "argv_unavailable",
        ),
        (record.filename_truncated, "filename_truncated"),
        (record.unlinked_binary, "unlinked_binary"),
        (record.userspace_decides, "userspace_decides"),
        (record.daemon_down, "daemon_down"),
        (record.audit_down, "audit_down"),
        (record.mapped, "mapped"),
        (record.pending, "pending"),
        (record.granted, "granted"),
        (record.path_unresolved, "path_unresolved"),
    ]
    .into_iter()
    .filter(|(set, _)| *set)
    .map(|(_, name)| name.to_string())
    .collect()
}

/// The observation row of a kernel event.
pub fn observation(record: &ExecRecord) -> AuditEvent {
    let verdict = action_of(&record.verdict);
    if record.kind == "open" {
        AuditEvent::Open(OpenAudit {
            process: process_info(record),
            path: record.filename.clone(),
            access: record.access.clone(),
            verdict,
            rule: record.rule.clone(),
            flags: flags_of(record),
        })
    } else {
        AuditEvent::Exec(ExecAudit {
            process: process_info(record),
            filename: record.filename.clone(),
            files: Vec::new(),
            verdict,
            rule: record.rule.clone(),
            flags: flags_of(record),
        })
    }
}

/// The decision the kernel took alone, if the event shows one: a refusal (by a rule, or
/// failing closed), or an `audit` rule's match. Plain allowed execs and holds (decided
/// later, by the policy or a reviewer) have none.
pub fn kernel_decision(record: &ExecRecord, policy: &Policy) -> Option<DecisionAudit> {
    let verdict = action_of(&record.verdict);
    let (action, outcome, decided_by, reason) = if record.daemon_down {
        (
            verdict.unwrap_or(Action::Ask),
            Outcome::Denied,
            DecidedBy::DaemonDown,
            "it needed the daemon, which was down: refused (fail closed)".to_string(),
        )
    } else if record.audit_down {
        (
            verdict.unwrap_or(Action::Allow),
            Outcome::Denied,
            DecidedBy::Kernel,
            "the audit log could not be written: refused rather than run unrecorded".to_string(),
        )
    } else if record.path_unresolved {
        (
            Action::Deny,
            Outcome::Denied,
            DecidedBy::Kernel,
            "the path could not be resolved: refused (fail closed)".to_string(),
        )
    } else if record.hold_failed {
        (
            Action::Ask,
            Outcome::Denied,
            DecidedBy::Kernel,
            "the hold could not be recorded: killed (fail closed)".to_string(),
        )
    } else if record.held || record.pending {
        // Decided by the daemon once it has the task's context (see `adopt_hold`).
        return None;
    } else if record.granted {
        (
            Action::Ask,
            Outcome::Allowed,
            DecidedBy::Kernel,
            "allowed by a just-in-time grant".to_string(),
        )
    } else {
        match verdict? {
            Action::Allow | Action::Ask => return None,
            action @ (Action::Audit | Action::Deny) => (
                action,
                if record.denied {
                    Outcome::Denied
                } else {
                    Outcome::Allowed
                },
                DecidedBy::Kernel,
                String::new(),
            ),
        }
    };
    let rule = record
        .rule
        .as_deref()
        .and_then(|name| policy.rule_named(name));
    // Shadow mode: a monitor rule's entry is `audit` in the kernel; the row says what the
    // rule would have done.
    if let Some((_, r)) = rule.filter(|(_, r)| r.is_monitor() && outcome == Outcome::Allowed) {
        return Some(DecisionAudit {
            action: r.action,
            reason: format!("would {} (monitor mode): allowed", r.action),
            monitor: true,
            ..base_decision(record, policy, r.controls.clone())
        });
    }
    let reason = if reason.is_empty() {
        rule.and_then(|(_, r)| r.reason.clone())
            .unwrap_or_else(|| format!("{action} by the kernel's rule"))
    } else {
        reason
    };
    Some(DecisionAudit {
        action,
        outcome,
        reason,
        decided_by,
        ..base_decision(
            record,
            policy,
            rule.map(|(_, r)| r.controls.clone()).unwrap_or_default(),
        )
    })
}

/// A kernel decision on `record` by its rule, allowed by default.
fn base_decision(record: &ExecRecord, policy: &Policy, controls: Vec<String>) -> DecisionAudit {
    DecisionAudit {
        operation: operation_of(record),
        process: process_info(record),
        files: files_of(record),
        access: record.access.clone(),
        matched_rules: record.rule.iter().cloned().collect(),
        winner: record.rule.clone(),
        action: Action::Allow,
        outcome: Outcome::Allowed,
        reason: String::new(),
        policy_version: policy.version().to_string(),
        controls,
        decided_by: DecidedBy::Kernel,
        latency_us: None,
        request: None,
        monitor: false,
        recent: Vec::new(),
    }
}

/// The would-be decision of a monitor rule the kernel cannot match (a program by glob or
/// basename) on an exec that ran unheld, judged after the fact on what the event and /proc
/// show; `None` when no monitor rule is stricter than what was enforced.
pub fn reported_exec_shadow(
    record: &ExecRecord,
    policy: &Policy,
    verdict: &crate::policy::Decision,
) -> Option<DecisionAudit> {
    let shadow = verdict.shadow.as_ref()?;
    let enforced = DecisionAudit {
        matched_rules: verdict.matched.iter().map(|m| m.name.clone()).collect(),
        decided_by: DecidedBy::Policy,
        ..base_decision(record, policy, Vec::new())
    };
    Some(shadow_decision(&enforced, shadow))
}

/// The shadow-mode row beside an enforced decision: what a monitor rule would have done.
pub fn shadow_decision(enforced: &DecisionAudit, shadow: &crate::policy::Shadow) -> DecisionAudit {
    DecisionAudit {
        action: shadow.action,
        outcome: Outcome::Allowed,
        winner: Some(shadow.winner.name.clone()),
        reason: format!("would {} (monitor mode): {}", shadow.action, shadow.reason),
        controls: shadow.controls.clone(),
        monitor: true,
        request: None,
        ..enforced.clone()
    }
}

/// The files an operation concerns: the opened path, or the program a mapped exec loaded.
pub fn files_of(record: &ExecRecord) -> Vec<String> {
    if record.kind == "open" || record.mapped {
        vec![record.filename.clone()]
    } else {
        Vec::new()
    }
}

/// What the agent did just before `seq` (its newest [`RECENT_ACTIVITY`] operations, oldest
/// first), one line each: time, what, the program or path, and how it ended.
pub fn recent_activity(events: &VecDeque<ExecRecord>, agent_id: u32, seq: u64) -> Vec<String> {
    let mut lines: Vec<String> = events
        .iter()
        .rev()
        .filter(|r| r.agent_id == agent_id && r.seq < seq)
        .take(RECENT_ACTIVITY)
        .map(|r| {
            let ago = now_ms().saturating_sub(r.time_ms) as f64 / 1000.0;
            let end = if r.denied {
                " [denied]"
            } else if r.held {
                " [held]"
            } else {
                ""
            };
            let what = if r.kind == "open" {
                format!("open {} ({})", r.filename, r.access.join(","))
            } else if r.argv.is_empty() {
                format!("exec {}", r.filename)
            } else {
                format!("exec {}", r.argv.join(" "))
            };
            format!("{ago:.1}s ago pid {} {what}{end}", r.pid)
        })
        .collect();
    lines.reverse();
    lines
}

/// Ancestors as `PID PROGRAM ARGS`.
pub fn parent_lines(parents: &[Ancestor]) -> Vec<String> {
    parents
        .iter()
        .map(|a| {
            format!("{} {} {}", a.pid, a.exe, a.argv.join(" "))
                .trim_end()
                .to_string()
        })
        .collect()
}

/// Key fragments that mark a variable as a secret.
const SECRET_KEYS: [&str; 11] = [
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "CREDENTIAL",
    "API_KEY",
    "APIKEY",
    "PRIVATE",
    "COOKIE",
    "SESSION",
];

/// Value prefixes of well-known credentials (GitHub, Slack, AWS, OpenAI-style keys, JWTs).
const SECRET_VALUES: [&str; 9] = [
    "ghp_",
    "gho_",
    "ghs_",
    "github_pat_",
    "xoxb-",
    "xoxp-",
    "AKIA",
    "sk-",
    "eyJ",
];

/// The environment with secrets replaced by `<redacted>`: values of secret-shaped keys
/// (`*TOKEN*`, `*SECRET*`, `*PASSWORD*`, `*_KEY`, ...), values that look like well-known
/// credentials, and the password of any `scheme://user:password@host` URL.
pub fn redact_env(vars: &[String]) -> Vec<String> {
    vars.iter()
        .map(|kv| {
            let Some((key, value)) = kv.split_once('=') else {
                return kv.clone();
            };
            let upper = key.to_ascii_uppercase();
            let secret_key = SECRET_KEYS.iter().any(|k| upper.contains(k))
                || upper.ends_with("_KEY")
                || upper == "KEY"
                || upper.ends_with("_AUTH");
            let secret_value = SECRET_VALUES.iter().any(|p| value.starts_with(p));
            if secret_key || secret_value {
                return format!("{key}=<redacted>");
            }
            format!("{key}={}", redact_url_password(value))
        })
        .collect()
}

/// `scheme://user:password@host...` with the password replaced; anything else unchanged.
fn redact_url_password(value: &str) -> String {
    let Some(scheme_end) = value.find("://") else {
        return value.to_string();
    };
    let rest = &value[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return value.to_string();
    };
    let Some(colon) = rest[..at].find(':') else {
        return value.to_string();
    };
    format!(
        "{}://{}:<redacted>{}",
        &value[..scheme_end],
        &rest[..colon],
        &rest[at..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: &str, verdict: &str) -> ExecRecord {
        ExecRecord {
            seq: 5,
            time_ms: now_ms(),
            kind: kind.into(),
            agent: "copilot".into(),
            session: None,
            agent_id: 1,
            pid: 42,
            tid: 42,
            ppid: 41,
            uid: 1000,
            gid: 1000,
            cgroup_id: 0,
            filename: "/usr/bin/pg_dump".into(),
            filename_truncated: false,
            path: "/usr/lib/postgresql/15/bin/pg_dump".into(),
            mapped: false,
            argv: vec!["pg_dump".into(), "prod".into()],
            argv_truncated: false,
            argv_unavailable: false,
            verdict: verdict.into(),
            rule: Some("prod-dump".into()),
            held: false,
            denied: false,
            hold_failed: false,
            unlinked_binary: false,
            userspace_decides: false,
            daemon_down: false,
            audit_down: false,
            access: Vec::new(),
            pending: false,
            granted: false,
            path_unresolved: false,
            dev: 1,
            ino: 2,
        }
    }

    fn policy() -> Policy {
        Policy::parse(
            r#"
version = 1
[[rule]]
name = "prod-dump"
operation = "exec"
binary = "/usr/bin/pg_dump"
action = "deny"
reason = "production data leaves the host"
controls = ["SOC2:CC6.1", "NIST-800-53:AC-6(9)"]
"#,
            "test",
        )
        .unwrap()
    }

    #[test]
    fn a_kernel_deny_carries_rule_controls_reason_and_version() {
        let mut r = record("exec_denied", "deny");
        r.denied = true;
        let policy = policy();
        let d = kernel_decision(&r, &policy).expect("a deny is a decision");
        assert_eq!(d.outcome, Outcome::Denied);
        assert_eq!(d.action, Action::Deny);
        assert_eq!(d.decided_by, DecidedBy::Kernel);
        assert_eq!(d.winner.as_deref(), Some("prod-dump"));
        assert_eq!(d.controls, ["SOC2:CC6.1", "NIST-800-53:AC-6(9)"]);
        assert_eq!(d.reason, "production data leaves the host");
        assert_eq!(d.policy_version, policy.version());
        assert_eq!(d.process.binary, "/usr/lib/postgresql/15/bin/pg_dump");
    }

    #[test]
    fn plain_allows_and_holds_are_not_kernel_decisions() {
        let policy = policy();
        let mut r = record("exec", "allow");
        r.rule = None;
        assert!(kernel_decision(&r, &policy).is_none());
        let mut held = record("exec", "ask");
        held.held = true;
        assert!(kernel_decision(&held, &policy).is_none());
        let mut down = record("exec_denied", "ask");
        down.daemon_down = true;
        down.denied = true;
        let d = kernel_decision(&down, &policy).unwrap();
        assert_eq!(
            (d.outcome, d.decided_by),
            (Outcome::Denied, DecidedBy::DaemonDown)
        );
        let mut audit_down = record("exec_denied", "allow");
        audit_down.audit_down = true;
        audit_down.denied = true;
        let d = kernel_decision(&audit_down, &policy).unwrap();
        assert_eq!(d.outcome, Outcome::Denied);
        assert!(d.reason.contains("audit log"), "{}", d.reason);
    }

    #[test]
    fn a_monitor_rules_audit_entry_is_recorded_as_what_it_would_have_done() {
        let policy = Policy::parse(
            r#"
version = 1
[[rule]]
name = "dump-watch"
operation = "exec"
binary = "/usr/bin/pg_dump"
action = "ask"
mode = "monitor"
controls = ["SOC2:CC6.1"]
"#,
            "test",
        )
        .unwrap();
        let mut r = record("exec", "audit");
        r.rule = Some("dump-watch".into());
        let d = kernel_decision(&r, &policy).expect("a monitor match is a decision");
        assert!(d.monitor);
        assert_eq!((d.action, d.outcome), (Action::Ask, Outcome::Allowed));
        assert_eq!(d.winner.as_deref(), Some("dump-watch"));
        assert_eq!(d.controls, ["SOC2:CC6.1"]);
    }

    #[test]
    fn observations_keep_the_kernel_facts() {
        let mut r = record("open", "audit");
        r.filename = "/home/a/.aws/credentials".into();
        r.access = vec!["read".into()];
        r.granted = true;
        let AuditEvent::Open(o) = observation(&r) else {
            panic!("an open is an open row");
        };
        assert_eq!(o.path, "/home/a/.aws/credentials");
        assert_eq!(o.verdict, Some(Action::Audit));
        assert_eq!(o.flags, ["granted"]);
        assert_eq!(o.process.binary, "", "an open's record has no program path");
    }

    #[test]
    fn recent_activity_is_the_same_agents_newest_operations_before_this_one() {
        let mut events = VecDeque::new();
        for seq in 1..=15 {
            let mut r = record("exec", "allow");
            r.seq = seq;
            r.agent_id = if seq == 7 { 2 } else { 1 };
            r.argv = vec!["step".into(), seq.to_string()];
            events.push_back(r);
        }
        let lines = recent_activity(&events, 1, 13);
        assert_eq!(lines.len(), RECENT_ACTIVITY);
        assert!(lines.first().unwrap().ends_with("exec step 2"), "{lines:?}");
        assert!(lines.last().unwrap().ends_with("exec step 12"), "{lines:?}");
        assert!(
            !lines.iter().any(|l| l.ends_with("step 7")),
            "agent 2's exec: {lines:?}"
        );
    }

    #[test]
    fn secrets_in_the_environment_are_redacted() {
        let env: Vec<String> = [
            "PATH=/usr/bin",
            "GITHUB_TOKEN=abc",
            "AWS_SECRET_ACCESS_KEY=xyz",
            "PGPASSWORD=hunter2",
            "OPENAI_API_KEY=sk-123",
            "SSH_AUTH_SOCK=/tmp/agent.sock",
            "NOTE=ghp_0123456789",
            "DATABASE_URL=postgres://app:s3cret@db.internal:5432/prod",
            "HOMEPAGE=https://example.com/a@b",
            "EMPTY",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out = redact_env(&env);
        assert_eq!(
            out,
            [
                "PATH=/usr/bin",
                "GITHUB_TOKEN=<redacted>",
                "AWS_SECRET_ACCESS_KEY=<redacted>",
                "PGPASSWORD=<redacted>",
                "OPENAI_API_KEY=<redacted>",
                "SSH_AUTH_SOCK=/tmp/agent.sock",
                "NOTE=<redacted>",
                "DATABASE_URL=postgres://app:<redacted>@db.internal:5432/prod",
                "HOMEPAGE=https://example.com/a@b",
                "EMPTY",
            ]
        );
        assert!(
            !out.iter()
                .any(|v| v.contains("hunter2") || v.contains("s3cret"))
        );
    }
}
