//! The generic JSON webhook: one signed POST per request, for receivers that route
//! approvals themselves (a ticketing system, a pager, a chat bridge).
//!
//! The body is a versioned, documented shape (docs/approvals.md, "Generic webhook"),
//! written field by field rather than by serializing [`Notice`], so a change to `Notice`
//! cannot silently change what receivers parse. Fields are only ever added within a
//! version; renaming or removing one means `version: 2`.
//!
//! ```json
//! {
//!   "type": "interceptor.approval_request",
//!   "version": 1,
//!   "summary": "agent ci-bot wants to run pg_dump --table customers",
//!   "request": { "id": 42, "host": "...", "agent": "...", "argv": ["..."], ... },
//!   "links": [{ "reviewer": "alice", "url": "https://.../r/..." }],
//!   "requested_at": "2026-09-21T14:13:20.000Z", "requested_at_ms": 1790000000000,
//!   "expires_at": "2026-09-21T14:18:20.000Z", "expires_at_ms": 1790000300000,
//!   "on_timeout": "deny"
//! }
//! ```
//!
//! Unlike the chat channels, nothing is cut: receivers are programs and get the whole
//! context. The `links` are secrets, one per reviewer: a receiver hands each only to
//! its reviewer.

use serde_json::{Value, json};

use super::{Notice, sign, text};

/// `type` of an approval request body.
pub const TYPE: &str = "interceptor.approval_request";
/// `version` of the body shape this module writes.
pub const VERSION: u32 = 1;

/// The JSON body for `notice`. See the module docs for the shape.
pub fn body(notice: &Notice) -> Value {
    let parents: Vec<Value> = notice
        .parents
        .iter()
        .map(|p| json!({ "pid": p.pid, "exe": p.exe, "argv": p.argv }))
        .collect();
    let links: Vec<Value> = notice
        .links
        .iter()
        .map(|l| json!({ "reviewer": l.reviewer, "url": l.url }))
        .collect();
    json!({
        "type": TYPE,
        "version": VERSION,
        "summary": notice.headline(),
        "request": {
            "id": notice.id,
            "host": notice.host,
            "agent": notice.agent,
            "operation": notice.operation,
            "access": notice.access,
            "pid": notice.pid,
            "uid": notice.uid,
            "user": notice.user,
            "target": notice.target,
            "exe": notice.exe,
            "argv": notice.argv,
            // argv as one line to show a person; invisible characters spelled out.
            "command": text::command_line(&notice.argv, &notice.target),
            "cwd": notice.cwd,
            "env": notice.env,
            "parents": parents,
            "recent": notice.recent,
            // An object, not a string, so no receiver can show it without the flag.
            "rationale": notice.rationale.as_ref().map(|r| json!({ "text": r, "verified": false })),
            "rule": notice.rule,
            "reason": notice.reason,
            "controls": notice.controls,
            "severity": notice.severity,
            "grant": notice.grant.map(|g| json!({
                "max_ttl_secs": g.max_ttl_secs,
                "max_uses": g.max_uses,
            })),
        },
        "links": links,
        "requested_at": text::rfc3339_ms(notice.requested_at_ms),
        "requested_at_ms": notice.requested_at_ms,
        "expires_at": text::rfc3339_ms(notice.deadline_ms),
        "expires_at_ms": notice.deadline_ms,
        "on_timeout": notice.on_timeout,
    })
}

/// A body and its signature headers, ready to POST with `Content-Type:
/// application/json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedBody {
    /// The exact bytes that were signed; send these, do not re-serialize.
    pub body: Vec<u8>,
    /// The [`sign::TIMESTAMP_HEADER`] value.
    pub timestamp: String,
    /// The [`sign::SIGNATURE_HEADER`] value.
    pub signature: String,
}

/// [`body`] serialized once and signed with `secret` at `now_secs`.
pub fn signed_body(notice: &Notice, secret: &[u8], now_secs: u64) -> SignedBody {
    let body = body(notice).to_string().into_bytes();
    let signature = sign::sign(secret, now_secs, &body);
    SignedBody {
        body,
        timestamp: now_secs.to_string(),
        signature,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approvals::sample_notice;

    /// The documented fields and their JSON types; the integration receiver checks the
    /// same list.
    #[test]
    fn the_body_has_the_documented_shape() {
        let b = body(&sample_notice());
        assert_eq!(b["type"], "interceptor.approval_request");
        assert_eq!(b["version"], 1);
        assert_eq!(
            b["summary"],
            "agent ci-bot wants to run pg_dump --table customers -f '/tmp/out file.sql'"
        );
        let mut top: Vec<&str> = b
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        top.sort_unstable();
        assert_eq!(
            top,
            [
                "expires_at",
                "expires_at_ms",
                "links",
                "on_timeout",
                "request",
                "requested_at",
                "requested_at_ms",
                "summary",
                "type",
                "version"
            ]
        );
        let r = &b["request"];
        for (field, is_type) in [
            ("id", Value::is_u64 as fn(&Value) -> bool),
            ("host", Value::is_string),
            ("agent", Value::is_string),
            ("operation", Value::is_string),
            ("access", Value::is_array),
            ("pid", Value::is_u64),
            ("uid", Value::is_u64),
            ("user", Value::is_string),
            ("target", Value::is_string),
            ("exe", Value::is_string),
            ("argv", Value::is_array),
            ("command", Value::is_string),
            ("cwd", Value::is_string),
            ("env", Value::is_array),
            ("parents", Value::is_array),
            ("recent", Value::is_array),
            ("rationale", Value::is_object),
            ("rule", Value::is_string),
            ("reason", Value::is_string),
            ("controls", Value::is_array),
            ("severity", Value::is_string),
            ("grant", Value::is_object),
        ] {
            assert!(is_type(&r[field]), "request.{field} = {}", r[field]);
        }
        assert_eq!(r.as_object().map(|o| o.len()), Some(22), "{r}");
        assert_eq!(r["id"], 42);
        assert_eq!(r["argv"][4], "/tmp/out file.sql");
        assert_eq!(
            r["command"],
            "pg_dump --table customers -f '/tmp/out file.sql'"
        );
        assert_eq!(
            r["parents"][0],
            json!({ "pid": 4000, "exe": "/usr/bin/bash", "argv": ["bash", "-c", "pg_dump ..."] })
        );
        assert_eq!(r["rationale"]["verified"], false);
        assert_eq!(
            r["rationale"]["text"],
            "Exporting the customers table for the <weekly> report"
        );
        assert_eq!(r["grant"], json!({ "max_ttl_secs": 3600, "max_uses": 5 }));
        assert_eq!(r["controls"], json!(["SOC2:CC6.1", "NIST-800-53:AC-6(9)"]));
        assert_eq!(
            b["links"],
            json!([{ "reviewer": "alice", "url": "http://127.0.0.1:9477/r/AAAA" }])
        );
        assert_eq!(b["requested_at"], "2026-09-21T14:13:20.000Z");
        assert_eq!(b["requested_at_ms"], 1_790_000_000_000_u64);
        assert_eq!(b["expires_at"], "2026-09-21T14:18:20.000Z");
        assert_eq!(b["expires_at_ms"], 1_790_000_300_000_u64);
        assert_eq!(b["on_timeout"], "deny");
    }

    #[test]
    fn absent_optional_context_is_null() {
        let mut n = sample_notice();
        n.user = None;
        n.rationale = None;
        n.reason = None;
        n.severity = None;
        n.grant = None;
        let r = &body(&n)["request"];
        for field in ["user", "rationale", "reason", "severity", "grant"] {
            assert!(r[field].is_null(), "request.{field} = {}", r[field]);
        }
    }

    #[test]
    fn hostile_argv_is_carried_whole_and_exact() {
        let mut n = sample_notice();
        let long = "A".repeat(100_000);
        n.argv = vec![
            "sh".into(),
            "-c".into(),
            "<script>alert(1)</script> && echo `id`\nrm -rf /".into(),
            long.clone(),
        ];
        let b = body(&n);
        // JSON carries the bytes exactly; escaping is the receiver's display concern.
        assert_eq!(
            b["request"]["argv"][2],
            "<script>alert(1)</script> && echo `id`\nrm -rf /"
        );
        assert_eq!(b["request"]["argv"][3], long.as_str());
        let command = b["request"]["command"].as_str().unwrap_or_default();
        assert!(
            command.starts_with(r"sh -c $'<script>alert(1)</script> && echo `id`\nrm -rf /' AAAA"),
            "{command:.80}"
        );
        // And it round-trips through the wire form.
        let parsed: Value =
            serde_json::from_slice(&signed_body(&n, b"k", 1).body).unwrap_or_default();
        assert_eq!(parsed, b);
    }

    #[test]
    fn the_signed_body_verifies_as_a_receiver_would() {
        let n = sample_notice();
        let s = signed_body(&n, b"secret", 1_790_000_001);
        assert_eq!(s.timestamp, "1790000001");
        assert_eq!(
            sign::verify(
                b"secret",
                &s.timestamp,
                &s.signature,
                &s.body,
                1_790_000_010,
                300
            ),
            Ok(())
        );
        let mut tampered = s.body.clone();
        if let Some(b) = tampered.iter_mut().find(|b| **b == b'4') {
            *b = b'5';
        }
        assert_eq!(
            sign::verify(
                b"secret",
                &s.timestamp,
                &s.signature,
                &tampered,
                1_790_000_010,
                300
            ),
            Err(sign::SignatureError::Mismatch)
        );
    }
}
