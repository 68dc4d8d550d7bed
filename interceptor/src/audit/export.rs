//! Exports for other tools: JSON lines (the row as stored, hashes included) and OCSF
//! events for SIEMs.
//!
//! OCSF mapping (schema 1.1.0, System Activity category, `security_control` profile):
//! - exec rows and exec decisions -> Process Activity (`class_uid` 1007), Launch
//!   (`activity_id` 1);
//! - open rows and open decisions -> File System Activity (`class_uid` 1001), Open
//!   (`activity_id` 14);
//! - `type_uid` = class_uid * 100 + activity_id;
//! - outcome -> `action_id` (1 Allowed, 2 Denied; a hold is 0 Unknown, the final decision
//!   follows), `disposition_id` (1 Allowed, 2 Blocked, 14 Delayed for a hold) and
//!   `status_id` (1 Success, 2 Failure);
//! - `metadata.uid` is the row's seq; rule, matched rules, controls, policy version, who
//!   decided, latency and the row hash go under `unmapped.interceptor`.
//!
//! Other rows (approval steps, grants, reloads, daemon lifecycle, loss, prune) have no
//! OCSF class here and are left out of the OCSF export; the JSON lines export has them.

use serde_json::{Value, json};

use super::record::{AuditEvent, Outcome, ProcessInfo, StoredRow};
use crate::policy::{Action, Operation};

/// The OCSF schema version these events follow.
pub const OCSF_VERSION: &str = "1.1.0";

pub const CLASS_PROCESS_ACTIVITY: u32 = 1007;
pub const CLASS_FILE_ACTIVITY: u32 = 1001;
pub const ACTIVITY_LAUNCH: u32 = 1;
pub const ACTIVITY_OPEN: u32 = 14;

/// One JSON line for a row: columns, `prev_hash`, `hash` and the decoded `event`.
pub fn jsonl_line(row: &StoredRow) -> String {
    row.to_json().to_string()
}

/// The OCSF event for a row, or `None` for rows with no OCSF class here.
pub fn ocsf_event(row: &StoredRow) -> Option<Value> {
    let event = row.event().ok()?;
    let (operation, process, path, outcome, action, extra) = match &event {
        AuditEvent::Exec(e) => (
            Operation::Exec,
            &e.process,
            None,
            kernel_outcome(&e.flags),
            e.verdict,
            json!({ "rule": e.rule, "flags": e.flags, "filename": e.filename }),
        ),
        AuditEvent::Open(o) => (
            Operation::Open,
            &o.process,
            Some(o.path.clone()),
            kernel_outcome(&o.flags),
            o.verdict,
            json!({ "rule": o.rule, "flags": o.flags, "access": o.access }),
        ),
        AuditEvent::Decision(d) => (
            d.operation,
            &d.process,
            d.files.first().cloned(),
            Some(d.outcome),
            Some(d.action),
            json!({
                "rule": d.winner,
                "matched_rules": d.matched_rules,
                "controls": d.controls,
                "policy_version": d.policy_version,
                "decided_by": d.decided_by.to_string(),
                "latency_us": d.latency_us,
                "reason": d.reason,
                "access": d.access,
                "request": d.request,
            }),
        ),
        _ => return None,
    };
    let (class_uid, class_name, activity_id, activity_name) = match operation {
        Operation::Exec => (
            CLASS_PROCESS_ACTIVITY,
            "Process Activity",
            ACTIVITY_LAUNCH,
            "Launch",
        ),
        Operation::Open => (
            CLASS_FILE_ACTIVITY,
            "File System Activity",
            ACTIVITY_OPEN,
            "Open",
        ),
    };
    let (action_id, action_name, disposition_id, disposition, status_id, status) = match outcome {
        Some(Outcome::Allowed) => (1, "Allowed", 1, "Allowed", 1, "Success"),
        Some(Outcome::Denied) => (2, "Denied", 2, "Blocked", 2, "Failure"),
        Some(Outcome::Held) => (0, "Unknown", 14, "Delayed", 0, "Unknown"),
        None => (0, "Unknown", 0, "Unknown", 0, "Unknown"),
    };
    let severity_id = match (outcome, action) {
        (Some(Outcome::Denied), _) => 3,
        (_, Some(Action::Ask)) => 2,
        _ => 1,
    };
    let mut ev = json!({
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": 1,
        "category_name": "System Activity",
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "type_name": format!("{class_name}: {activity_name}"),
        "time": row.time_ms,
        "severity_id": severity_id,
        "action_id": action_id,
        "action": action_name,
        "disposition_id": disposition_id,
        "disposition": disposition,
        "status_id": status_id,
        "status": status,
        "metadata": {
            "version": OCSF_VERSION,
            "uid": row.seq.to_string(),
            "log_name": "interceptor audit",
            "profiles": ["security_control"],
            "product": {
                "name": "interceptor",
                "vendor_name": "interceptor",
                "version": env!("CARGO_PKG_VERSION"),
            },
        },
        "actor": { "process": ocsf_process(process, operation == Operation::Open) },
        "unmapped": { "interceptor": {
            "agent": process.agent,
            "seq": row.seq,
            "hash": hex::encode(&row.hash),
            "kind": row.columns.kind,
            "policy_action": action.map(Action::as_str),
            "detail": extra,
        }},
    });
    match operation {
        Operation::Exec => ev["process"] = ocsf_process(process, false),
        Operation::Open => {
            let path = path.unwrap_or_default();
            let name = path.rsplit('/').next().unwrap_or_default().to_string();
            ev["file"] =
                json!({ "path": path, "name": name, "type_id": 1, "type": "Regular File" });
        }
    }
    Some(ev)
}

fn kernel_outcome(flags: &[String]) -> Option<Outcome> {
    if flags.iter().any(|f| f == "denied") {
        Some(Outcome::Denied)
    } else if flags.iter().any(|f| f == "held" || f == "pending") {
        Some(Outcome::Held)
    } else {
        Some(Outcome::Allowed)
    }
}

fn ocsf_process(p: &ProcessInfo, brief: bool) -> Value {
    let name = p.binary.rsplit('/').next().unwrap_or_default();
    let mut v = json!({
        "pid": p.pid,
        "name": name,
        "file": { "path": p.binary, "name": name, "type_id": 1, "type": "Regular File" },
        "user": { "uid": p.uid.to_string() },
        "parent_process": { "pid": p.ppid },
    });
    if !brief {
        v["cmd_line"] = json!(crate::cli::shell_words(&p.argv));
        if let Some(cwd) = &p.cwd {
            v["working_directory"] = json!(cwd);
        }
    }
    v
}
