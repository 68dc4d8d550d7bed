//! The evidence bundle: for each compliance control, over a period, every decision taken
//! under a rule tagged with it, counted by outcome and by who decided, the reviewers and how
//! long they took, and the result of verifying the chain the figures come from. Rendered as
//! Markdown (to read), HTML (to attach) or CSV (one line per decision, to re-count).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{
    VerifyReport,
    query::format_time,
    record::{AuditEvent, StoredRow},
};

/// One decision, as an auditor reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionLine {
    pub seq: u64,
    pub time_ms: i64,
    pub agent: String,
    pub operation: String,
    /// The program, or the file opened.
    pub target: String,
    pub argv: Vec<String>,
    pub rule: String,
    pub action: String,
    pub outcome: String,
    pub decided_by: String,
    pub approver: Option<String>,
    pub latency_us: Option<u64>,
    pub policy_version: String,
}

/// A reviewer's answers under one control.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApproverCounts {
    pub approved: u64,
    pub denied: u64,
}

/// Reviewer response times, in ms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timing {
    pub count: u64,
    pub median_ms: u64,
    pub p95_ms: u64,
    pub max_ms: u64,
}

/// Everything for one control.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControlEvidence {
    pub control: String,
    pub decisions: Vec<DecisionLine>,
    pub by_outcome: BTreeMap<String, u64>,
    pub by_decided_by: BTreeMap<String, u64>,
    pub by_rule: BTreeMap<String, u64>,
    pub approvers: BTreeMap<String, ApproverCounts>,
    /// How long reviewers took to answer (decisions by a reviewer with a latency).
    pub reviewer_timing: Option<Timing>,
    pub policy_versions: BTreeSet<String>,
}

/// The bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvidenceBundle {
    pub generated_ms: i64,
    /// Where the log is.
    pub log: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub controls: Vec<ControlEvidence>,
    pub chain_ok: bool,
    /// The verification result in a sentence.
    pub chain_summary: String,
}

/// Builds the bundle from decision rows (any order; rows that are not decisions, or carry
/// none of `controls`, are ignored).
pub fn build(
    rows: &[StoredRow],
    controls: &[String],
    from_ms: i64,
    to_ms: i64,
    log: &str,
    verification: &VerifyReport,
    generated_ms: i64,
) -> EvidenceBundle {
    let mut out: Vec<ControlEvidence> = controls
        .iter()
        .map(|c| ControlEvidence {
            control: c.clone(),
            decisions: Vec::new(),
            by_outcome: BTreeMap::new(),
            by_decided_by: BTreeMap::new(),
            by_rule: BTreeMap::new(),
            approvers: BTreeMap::new(),
            reviewer_timing: None,
            policy_versions: BTreeSet::new(),
        })
        .collect();
    let mut sorted: Vec<&StoredRow> = rows.iter().collect();
    sorted.sort_by_key(|r| r.seq);
    let mut latencies: Vec<Vec<u64>> = vec![Vec::new(); out.len()];
    for row in sorted {
        let Ok(AuditEvent::Decision(d)) = row.event() else {
            continue;
        };
        if row.time_ms < from_ms || row.time_ms >= to_ms {
            continue;
        }
        for (i, ev) in out.iter_mut().enumerate() {
            if !d.controls.contains(&ev.control) {
                continue;
            }
            let outcome = d.outcome.as_str().to_string();
            let rule = d.winner.clone().unwrap_or_else(|| "(default)".into());
            *ev.by_outcome.entry(outcome.clone()).or_default() += 1;
            *ev.by_decided_by
                .entry(d.decided_by.kind().to_string())
                .or_default() += 1;
            *ev.by_rule.entry(rule.clone()).or_default() += 1;
            ev.policy_versions.insert(d.policy_version.clone());
            if let Some(name) = d.decided_by.reviewer() {
                let a = ev.approvers.entry(name.to_string()).or_default();
                match d.outcome {
                    super::Outcome::Allowed => a.approved += 1,
                    super::Outcome::Denied => a.denied += 1,
                    super::Outcome::Held => {}
                }
                if let Some(l) = d.latency_us {
                    latencies[i].push(l / 1000);
                }
            }
            let target = match d.operation {
                crate::policy::Operation::Exec => d.process.binary.clone(),
                crate::policy::Operation::Open => d.files.first().cloned().unwrap_or_default(),
            };
            ev.decisions.push(DecisionLine {
                seq: row.seq,
                time_ms: row.time_ms,
                agent: d.process.agent.clone(),
                operation: row.columns.operation.clone().unwrap_or_default(),
                target,
                argv: d.process.argv.clone(),
                rule,
                action: d.action.as_str().to_string(),
                outcome,
                decided_by: d.decided_by.to_string(),
                approver: d.decided_by.reviewer().map(str::to_string),
                latency_us: d.latency_us,
                policy_version: d.policy_version.clone(),
            });
        }
    }
    for (ev, mut l) in out.iter_mut().zip(latencies) {
        if l.is_empty() {
            continue;
        }
        l.sort_unstable();
        let at = |q: f64| l[((l.len() - 1) as f64 * q).round() as usize];
        ev.reviewer_timing = Some(Timing {
            count: l.len() as u64,
            median_ms: at(0.5),
            p95_ms: at(0.95),
            max_ms: *l.last().expect("not empty"),
        });
    }
    EvidenceBundle {
        generated_ms,
        log: log.to_string(),
        from_ms,
        to_ms,
        controls: out,
        chain_ok: verification.ok(),
        chain_summary: verification.summary(),
    }
}

fn count(map: &BTreeMap<String, u64>, key: &str) -> u64 {
    map.get(key).copied().unwrap_or(0)
}

/// Markdown, for people.
pub fn render_md(b: &EvidenceBundle) -> String {
    let mut s = String::new();
    s.push_str("# interceptor audit evidence\n\n");
    s.push_str(&format!(
        "- Period: {} to {}\n- Generated: {}\n- Log: `{}`\n- Chain verification: **{}** — {}\n\n",
        format_time(b.from_ms),
        format_time(b.to_ms),
        format_time(b.generated_ms),
        b.log,
        if b.chain_ok { "PASSED" } else { "FAILED" },
        b.chain_summary
    ));
    for c in &b.controls {
        s.push_str(&format!("## Control {}\n\n", c.control));
        s.push_str(&format!(
            "{} decisions: {} allowed, {} denied, {} held for review.\n\n",
            c.decisions.len(),
            count(&c.by_outcome, "allowed"),
            count(&c.by_outcome, "denied"),
            count(&c.by_outcome, "held"),
        ));
        if c.decisions.is_empty() {
            s.push_str("No decision under this control in the period.\n\n");
            continue;
        }
        s.push_str("| Decided by | Decisions |\n|---|---:|\n");
        for (k, v) in &c.by_decided_by {
            s.push_str(&format!("| {k} | {v} |\n"));
        }
        s.push_str("\n| Rule | Decisions |\n|---|---:|\n");
        for (k, v) in &c.by_rule {
            s.push_str(&format!("| {} | {v} |\n", md_cell(k)));
        }
        if !c.approvers.is_empty() {
            s.push_str("\n| Approver | Approved | Denied |\n|---|---:|---:|\n");
            for (k, v) in &c.approvers {
                s.push_str(&format!(
                    "| {} | {} | {} |\n",
                    md_cell(k),
                    v.approved,
                    v.denied
                ));
            }
        }
        if let Some(t) = &c.reviewer_timing {
            s.push_str(&format!(
                "\nReviewer response time over {} decisions: median {} ms, p95 {} ms, max {} ms.\n",
                t.count, t.median_ms, t.p95_ms, t.max_ms
            ));
        }
        s.push_str(&format!(
            "\nPolicy versions: {}\n\n",
            c.policy_versions
                .iter()
                .map(|v| format!("`{}`", short(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        s.push_str("| Row | Time | Agent | Operation | Target | Rule | Outcome | Decided by | Latency |\n|---:|---|---|---|---|---|---|---|---:|\n");
        for d in &c.decisions {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                d.seq,
                format_time(d.time_ms),
                md_cell(&d.agent),
                d.operation,
                md_cell(&d.target),
                md_cell(&d.rule),
                d.outcome,
                md_cell(&d.decided_by),
                d.latency_us
                    .map_or_else(String::new, |l| format!("{} ms", l / 1000)),
            ));
        }
        s.push('\n');
    }
    s
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn short(v: &str) -> &str {
    &v[..v.len().min(12)]
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A standalone HTML page, for attaching to an audit.
pub fn render_html(b: &EvidenceBundle) -> String {
    let e = html_escape;
    let mut s = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>interceptor audit evidence</title>\n<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #999;padding:.25em .5em;text-align:left}.ok{color:#060}.bad{color:#a00;font-weight:bold}</style></head><body>\n<h1>interceptor audit evidence</h1>\n",
    );
    s.push_str(&format!(
        "<ul><li>Period: {} to {}</li><li>Generated: {}</li><li>Log: <code>{}</code></li><li>Chain verification: <span class=\"{}\">{}</span> — {}</li></ul>\n",
        format_time(b.from_ms),
        format_time(b.to_ms),
        format_time(b.generated_ms),
        e(&b.log),
        if b.chain_ok { "ok" } else { "bad" },
        if b.chain_ok { "PASSED" } else { "FAILED" },
        e(&b.chain_summary)
    ));
    for c in &b.controls {
        s.push_str(&format!("<h2>Control {}</h2>\n", e(&c.control)));
        s.push_str(&format!(
            "<p>{} decisions: {} allowed, {} denied, {} held for review.</p>\n",
            c.decisions.len(),
            count(&c.by_outcome, "allowed"),
            count(&c.by_outcome, "denied"),
            count(&c.by_outcome, "held"),
        ));
        if c.decisions.is_empty() {
            continue;
        }
        s.push_str("<table><tr><th>Decided by</th><th>Decisions</th></tr>");
        for (k, v) in &c.by_decided_by {
            s.push_str(&format!("<tr><td>{}</td><td>{v}</td></tr>", e(k)));
        }
        s.push_str("</table>\n");
        if !c.approvers.is_empty() {
            s.push_str("<table><tr><th>Approver</th><th>Approved</th><th>Denied</th></tr>");
            for (k, v) in &c.approvers {
                s.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                    e(k),
                    v.approved,
                    v.denied
                ));
            }
            s.push_str("</table>\n");
        }
        if let Some(t) = &c.reviewer_timing {
            s.push_str(&format!(
                "<p>Reviewer response time over {} decisions: median {} ms, p95 {} ms, max {} ms.</p>\n",
                t.count, t.median_ms, t.p95_ms, t.max_ms
            ));
        }
        s.push_str("<table><tr><th>Row</th><th>Time</th><th>Agent</th><th>Operation</th><th>Target</th><th>Rule</th><th>Outcome</th><th>Decided by</th><th>Latency</th></tr>\n");
        for d in &c.decisions {
            s.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                d.seq,
                format_time(d.time_ms),
                e(&d.agent),
                e(&d.operation),
                e(&d.target),
                e(&d.rule),
                e(&d.outcome),
                e(&d.decided_by),
                d.latency_us.map_or_else(String::new, |l| format!("{} ms", l / 1000)),
            ));
        }
        s.push_str("</table>\n");
    }
    s.push_str("</body></html>\n");
    s
}

/// CSV: one line per decision per control; every line carries the chain verification
/// result, so a spreadsheet cut from it still says whether the log was intact.
pub fn render_csv(b: &EvidenceBundle) -> String {
    let mut s = String::from(
        "control,seq,time,agent,operation,target,argv,rule,action,outcome,decided_by,approver,latency_ms,policy_version,chain_verified\n",
    );
    let chain = if b.chain_ok { "passed" } else { "FAILED" };
    for c in &b.controls {
        for d in &c.decisions {
            let fields = [
                c.control.clone(),
                d.seq.to_string(),
                format_time(d.time_ms),
                d.agent.clone(),
                d.operation.clone(),
                d.target.clone(),
                crate::cli::shell_words(&d.argv),
                d.rule.clone(),
                d.action.clone(),
                d.outcome.clone(),
                d.decided_by.clone(),
                d.approver.clone().unwrap_or_default(),
                d.latency_us
                    .map_or_else(String::new, |l| (l / 1000).to_string()),
                d.policy_version.clone(),
                chain.to_string(),
            ];
            let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            s.push_str(&line.join(","));
            s.push('\n');
        }
    }
    s
}

/// RFC 4180 quoting; a leading `=`, `+`, `-` or `@` is prefixed with `'` so a spreadsheet
/// never runs an agent-controlled argument as a formula.
pub fn csv_field(f: &str) -> String {
    let f = if f.starts_with(['=', '+', '-', '@']) {
        format!("'{f}")
    } else {
        f.to_string()
    };
    if f.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f
    }
}
