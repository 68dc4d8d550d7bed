//! The daemon's Prometheus metrics: lock-free counters and histograms updated on the event
//! path, and their rendering in the text exposition format 0.0.4 for `GET /metrics`.
//!
//! Counters live here; values that are read at scrape time (holds pending, kernel
//! counters, the audit writer's stats) come in a [`Snapshot`] from the daemon.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::audit::{AuditStats, DecidedBy, Outcome};
use crate::policy::Action;

/// A kernel event received by the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// An agent's exec (held or reported).
    Exec,
    /// An agent's exec the kernel refused.
    ExecDenied,
    /// An agent's open.
    Open,
}

impl EventKind {
    const ALL: [EventKind; 3] = [EventKind::Exec, EventKind::ExecDenied, EventKind::Open];

    /// The `kind` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Exec => "exec",
            EventKind::ExecDenied => "exec_denied",
            EventKind::Open => "open",
        }
    }
}

/// Values read at scrape time.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The enforcement backend: "lsm" or "tracepoint".
    pub backend: String,
    /// The loaded policy's version (its digest).
    pub policy_version: String,
    /// Operations waiting for a reviewer.
    pub holds_pending: u64,
    /// Processes the kernel tracks as agents.
    pub tracked_processes: u64,
    /// The kernel's cumulative failure and guard counters (the `COUNTERS` map), by name,
    /// e.g. `("event_dropped", 3)`.
    pub kernel_counters: Vec<(String, u64)>,
    /// The audit writer's counters.
    pub audit: AuditStats,
    /// The audit log cannot be written, so agents' operations are refused.
    pub audit_failing: bool,
}

const ACTIONS: [Action; 4] = [Action::Allow, Action::Audit, Action::Ask, Action::Deny];
const OUTCOMES: [Outcome; 3] = [Outcome::Allowed, Outcome::Denied, Outcome::Held];
// The reviewer's name is not a label (unbounded cardinality); only the kind is.
const DECIDER_KINDS: usize = 6;
const DECIDERS: [DecidedBy; DECIDER_KINDS] = [
    DecidedBy::Kernel,
    DecidedBy::Policy,
    DecidedBy::Reviewer(String::new()),
    DecidedBy::Timeout,
    DecidedBy::DaemonDown,
    DecidedBy::Grant(String::new()),
];

fn action_index(action: Action) -> usize {
    match action {
        Action::Allow => 0,
        Action::Audit => 1,
        Action::Ask => 2,
        Action::Deny => 3,
    }
}

fn outcome_index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Allowed => 0,
        Outcome::Denied => 1,
        Outcome::Held => 2,
    }
}

fn decider_index(decided_by: &DecidedBy) -> usize {
    match decided_by {
        DecidedBy::Kernel => 0,
        DecidedBy::Policy => 1,
        DecidedBy::Reviewer(_) => 2,
        DecidedBy::Timeout => 3,
        DecidedBy::DaemonDown => 4,
        DecidedBy::Grant(_) => 5,
    }
}

const MICROS: u64 = 1_000;
const MILLIS: u64 = 1_000_000;
const SECS: u64 = 1_000_000_000;

/// Upper bounds (ns) of `interceptor_decision_latency_seconds`: policy decisions take
/// ~100µs, a reviewer's minutes (up to the hold timeout).
const DECISION_LATENCY_BUCKETS: &[u64] = &[
    10 * MICROS,
    25 * MICROS,
    50 * MICROS,
    100 * MICROS,
    250 * MICROS,
    500 * MICROS,
    MILLIS,
    5 * MILLIS,
    25 * MILLIS,
    100 * MILLIS,
    500 * MILLIS,
    SECS,
    5 * SECS,
    15 * SECS,
    30 * SECS,
    60 * SECS,
    120 * SECS,
    300 * SECS,
    600 * SECS,
];

/// Upper bounds (ns) of `interceptor_audit_write_seconds`: a batched SQLite or PostgreSQL
/// commit, from sub-millisecond to a struggling disk or network.
const AUDIT_WRITE_BUCKETS: &[u64] = &[
    100 * MICROS,
    250 * MICROS,
    500 * MICROS,
    MILLIS,
    2_500 * MICROS,
    5 * MILLIS,
    10 * MILLIS,
    25 * MILLIS,
    50 * MILLIS,
    100 * MILLIS,
    250 * MILLIS,
    500 * MILLIS,
    SECS,
    2_500 * MILLIS,
    5 * SECS,
];

/// A histogram of durations with fixed buckets.
struct Histogram {
    /// Inclusive upper bounds in nanoseconds, ascending.
    bounds: &'static [u64],
    /// Per-bucket (not cumulative) counts; the last one is `+Inf`. The total count is
    /// their sum, so a scrape's `+Inf` bucket always equals its `_count`.
    buckets: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [u64]) -> Self {
        Self {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        // The first bucket whose bound is >= nanos (`le` is inclusive); len() is `+Inf`.
        let index = self.bounds.partition_point(|&bound| bound < nanos);
        self.buckets[index].fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    fn render(&self, out: &mut Exposition, name: &str, help: &str) {
        out.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0u64;
        for (index, count) in self.buckets.iter().enumerate() {
            cumulative += count.load(Relaxed);
            let le = match self.bounds.get(index) {
                Some(&bound) => seconds(bound).to_string(),
                None => "+Inf".to_owned(),
            };
            out.sample(&bucket, &[("le", &le)], cumulative);
        }
        out.sample(
            &format!("{name}_sum"),
            &[],
            seconds(self.sum_nanos.load(Relaxed)),
        );
        out.sample(&format!("{name}_count"), &[], cumulative);
    }
}

fn seconds(nanos: u64) -> f64 {
    nanos as f64 / SECS as f64
}

/// The daemon's counters. Updates are single relaxed atomic adds: no locks on the event
/// path.
pub struct Metrics {
    events: [AtomicU64; EventKind::ALL.len()],
    /// Indexed by [`action_index`], [`outcome_index`], [`decider_index`].
    decisions: [[[AtomicU64; DECIDER_KINDS]; OUTCOMES.len()]; ACTIONS.len()],
    decision_latency: Histogram,
    audit_write: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All counters at zero.
    pub fn new() -> Self {
        Self {
            events: Default::default(),
            decisions: Default::default(),
            decision_latency: Histogram::new(DECISION_LATENCY_BUCKETS),
            audit_write: Histogram::new(AUDIT_WRITE_BUCKETS),
        }
    }

    /// Counts a kernel event received.
    pub fn event(&self, kind: EventKind) {
        let index = match kind {
            EventKind::Exec => 0,
            EventKind::ExecDenied => 1,
            EventKind::Open => 2,
        };
        self.events[index].fetch_add(1, Relaxed);
    }

    /// Counts a decision recorded: the action the policy chose, what became of the
    /// operation, and who decided (by kind; a reviewer's name is not a label).
    pub fn decision(&self, action: Action, outcome: Outcome, decided_by: &DecidedBy) {
        self.decisions[action_index(action)][outcome_index(outcome)][decider_index(decided_by)]
            .fetch_add(1, Relaxed);
    }

    /// Records the time from the kernel's event to the decision being applied.
    pub fn decision_latency(&self, elapsed: Duration) {
        self.decision_latency.observe(elapsed);
    }

    /// Records one audit append: the time until its row was committed.
    pub fn audit_write(&self, elapsed: Duration) {
        self.audit_write.observe(elapsed);
    }

    /// Renders every family, the counters above and the point-in-time values in
    /// `snapshot`, as Prometheus text (format 0.0.4). Every family has its HELP and TYPE
    /// lines even before it has a sample.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        let mut out = Exposition::default();

        out.family(
            "interceptor_info",
            "gauge",
            "The running daemon: version, backend and policy version (always 1).",
        );
        out.sample(
            "interceptor_info",
            &[
                ("backend", &snapshot.backend),
                ("policy_version", &snapshot.policy_version),
                ("version", env!("CARGO_PKG_VERSION")),
            ],
            1,
        );

        out.family(
            "interceptor_events_total",
            "counter",
            "Kernel events received, by kind.",
        );
        for (kind, count) in EventKind::ALL.iter().zip(&self.events) {
            let count = count.load(Relaxed);
            out.sample(
                "interceptor_events_total",
                &[("kind", kind.as_str())],
                count,
            );
        }

        // 60 combinations, most impossible (a kernel `ask`), so only those seen are shown.
        out.family(
            "interceptor_decisions_total",
            "counter",
            "Decisions recorded, by the policy's action, the outcome and who decided.",
        );
        for (action, by_outcome) in ACTIONS.iter().zip(&self.decisions) {
            for (outcome, by_decider) in OUTCOMES.iter().zip(by_outcome) {
                for (decider, count) in DECIDERS.iter().zip(by_decider) {
                    let count = count.load(Relaxed);
                    if count == 0 {
                        continue;
                    }
                    let labels = [
                        ("action", action.as_str()),
                        ("outcome", outcome.as_str()),
                        ("decided_by", decider.kind()),
                    ];
                    out.sample("interceptor_decisions_total", &labels, count);
                }
            }
        }

        self.decision_latency.render(
            &mut out,
            "interceptor_decision_latency_seconds",
            "Time from the kernel's event to the decision being applied.",
        );
        self.audit_write.render(
            &mut out,
            "interceptor_audit_write_seconds",
            "Time from an audit append to its row being committed.",
        );

        out.family(
            "interceptor_holds_pending",
            "gauge",
            "Operations held waiting for a reviewer.",
        );
        out.sample("interceptor_holds_pending", &[], snapshot.holds_pending);

        out.family(
            "interceptor_tracked_processes",
            "gauge",
            "Processes the kernel tracks as agents.",
        );
        out.sample(
            "interceptor_tracked_processes",
            &[],
            snapshot.tracked_processes,
        );

        out.family(
            "interceptor_kernel_incidents_total",
            "counter",
            "Kernel failure and guard counters: events lost, holds that failed, agent \
             operations refused by a guard.",
        );
        for (name, count) in &snapshot.kernel_counters {
            out.sample(
                "interceptor_kernel_incidents_total",
                &[("kind", name)],
                count,
            );
        }

        let audit = &snapshot.audit;
        out.family(
            "interceptor_audit_rows_committed_total",
            "counter",
            "Audit rows committed.",
        );
        out.sample(
            "interceptor_audit_rows_committed_total",
            &[],
            audit.committed,
        );
        out.family(
            "interceptor_audit_events_lost_total",
            "counter",
            "Audit events never committed: their write failed, or the writer's queue was full.",
        );
        out.sample(
            "interceptor_audit_events_lost_total",
            &[("reason", "write_failed")],
            audit.lost,
        );
        out.sample(
            "interceptor_audit_events_lost_total",
            &[("reason", "queue_full")],
            audit.dropped,
        );
        out.family(
            "interceptor_audit_batches_total",
            "counter",
            "Audit write transactions committed or attempted.",
        );
        out.sample("interceptor_audit_batches_total", &[], audit.batches);
        out.family(
            "interceptor_audit_failing",
            "gauge",
            "1 while the audit log cannot be written; agents' operations are refused then.",
        );
        out.sample(
            "interceptor_audit_failing",
            &[],
            u8::from(snapshot.audit_failing),
        );

        out.text
    }
}

/// A text exposition being written.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    /// The HELP and TYPE lines of a family (help texts are ours: no `\` or newline).
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // Writing to a String cannot fail.
        let _ = write!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl fmt::Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                self.text.push_str(label);
                self.text.push_str("=\"");
                escape_label_value(&mut self.text, value);
                self.text.push('"');
            }
            self.text.push('}');
        }
        // Writing to a String cannot fail.
        let _ = writeln!(self.text, " {value}");
    }
}

/// Appends a label value escaped per the text format: `\`, `"` and newline.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '"' => out.push_str(r#"\""#),
            '\n' => out.push_str(r"\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::BTreeMap;

    /// A parsed exposition, checked against the text format's rules as it is parsed.
    struct Parsed {
        /// (metric name, labels) -> value.
        samples: BTreeMap<(String, Vec<(String, String)>), f64>,
        /// Family name -> TYPE.
        types: BTreeMap<String, String>,
    }

    impl Parsed {
        fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
            let mut labels: Vec<_> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            labels.sort();
            self.samples.get(&(name.to_owned(), labels)).copied()
        }

        fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
            self.get(name, labels)
                .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
        }
    }

    fn is_metric_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    fn is_label_name(name: &str) -> bool {
        is_metric_name(name) && !name.contains(':')
    }

    /// Parses `{k="v",...}` (after the `{`), unescaping values; returns the labels and
    /// the rest of the line.
    fn parse_labels(mut rest: &str) -> (Vec<(String, String)>, &str) {
        let mut labels = Vec::new();
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                return (labels, after);
            }
            let (name, after) = rest
                .split_once("=\"")
                .unwrap_or_else(|| panic!("bad label in {rest:?}"));
            assert!(is_label_name(name), "bad label name {name:?}");
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        other => panic!("bad escape {other:?} in {after:?}"),
                    },
                    Some((i, '"')) => break i,
                    Some((_, '\n')) => panic!("raw newline in label value"),
                    Some((_, c)) => value.push(c),
                    None => panic!("unterminated label value in {after:?}"),
                }
            };
            labels.push((name.to_owned(), value));
            rest = &after[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }

    /// Parses and validates an exposition: every sample follows its family's HELP and
    /// TYPE, names are valid, no sample repeats, values are floats, histogram buckets are
    /// cumulative with `+Inf` equal to `_count`.
    fn parse(text: &str) -> Parsed {
        assert!(text.ends_with('\n'), "exposition must end with a newline");
        let mut helps = BTreeMap::new();
        let mut types = BTreeMap::new();
        let mut samples = BTreeMap::new();
        // Histogram family -> its buckets in order, as (le, cumulative count).
        let mut buckets: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for line in text.lines() {
            if let Some(help) = line.strip_prefix("# HELP ") {
                let (name, _) = help.split_once(' ').expect("HELP has text");
                assert!(is_metric_name(name), "bad family name {name:?}");
                assert!(
                    helps.insert(name.to_owned(), ()).is_none(),
                    "two HELPs: {name}"
                );
                continue;
            }
            if let Some(ty) = line.strip_prefix("# TYPE ") {
                let (name, ty) = ty.split_once(' ').expect("TYPE has a type");
                assert!(helps.contains_key(name), "TYPE before HELP: {name}");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&ty),
                    "bad type {ty}"
                );
                let previous = types.insert(name.to_owned(), ty.to_owned());
                assert!(previous.is_none(), "two TYPEs: {name}");
                continue;
            }
            assert!(!line.starts_with('#'), "unexpected comment {line:?}");
            assert!(!line.is_empty(), "empty line");

            let name_end = line.find(['{', ' ']).expect("sample has a value");
            let name = &line[..name_end];
            assert!(is_metric_name(name), "bad metric name {name:?}");
            let (mut labels, rest) = match line[name_end..].strip_prefix('{') {
                Some(rest) => parse_labels(rest),
                None => (Vec::new(), &line[name_end..]),
            };
            let value: f64 = rest
                .strip_prefix(' ')
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("bad value in {line:?}"));

            let family = if types.contains_key(name) {
                name
            } else {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .unwrap_or_else(|| panic!("sample {name} has no HELP/TYPE before it"));
                assert_eq!(
                    types.get(base).map(String::as_str),
                    Some("histogram"),
                    "sample {name} has no family"
                );
                base
            };
            if types[family] == "counter" || types[family] == "histogram" {
                assert!(value >= 0.0, "negative counter {line:?}");
            }
            if let Some(family) = name.strip_suffix("_bucket") {
                let le = labels
                    .iter()
                    .find(|(k, _)| k == "le")
                    .map(|(_, v)| v.parse::<f64>().expect("le is a float"))
                    .expect("bucket has le");
                buckets
                    .entry(family.to_owned())
                    .or_default()
                    .push((le, value));
            }
            labels.sort();
            let key = (name.to_owned(), labels);
            assert!(
                samples.insert(key, value).is_none(),
                "repeated sample {line:?}"
            );
        }

        for (family, ty) in &types {
            if ty != "histogram" {
                continue;
            }
            let buckets = &buckets[family];
            for pair in buckets.windows(2) {
                assert!(pair[0].0 < pair[1].0, "{family}: le not ascending");
                assert!(pair[0].1 <= pair[1].1, "{family}: buckets not cumulative");
            }
            let (le, inf) = *buckets.last().expect("histogram has buckets");
            assert_eq!(le, f64::INFINITY, "{family}: last bucket is not +Inf");
            let count = samples[&(format!("{family}_count"), Vec::new())];
            assert_eq!(inf, count, "{family}: +Inf bucket != _count");
            assert!(samples.contains_key(&(format!("{family}_sum"), Vec::new())));
        }
        Parsed { samples, types }
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            backend: "lsm".into(),
            policy_version: "sha256:abc".into(),
            holds_pending: 2,
            tracked_processes: 17,
            kernel_counters: vec![("event_dropped".into(), 3), ("ptrace_blocked".into(), 0)],
            audit: AuditStats {
                committed: 120,
                lost: 4,
                dropped: 5,
                batches: 30,
                last_error: Some("disk full".into()),
            },
            audit_failing: true,
        }
    }

    const FAMILIES: [(&str, &str); 12] = [
        ("interceptor_info", "gauge"),
        ("interceptor_events_total", "counter"),
        ("interceptor_decisions_total", "counter"),
        ("interceptor_decision_latency_seconds", "histogram"),
        ("interceptor_audit_write_seconds", "histogram"),
        ("interceptor_holds_pending", "gauge"),
        ("interceptor_tracked_processes", "gauge"),
        ("interceptor_kernel_incidents_total", "counter"),
        ("interceptor_audit_rows_committed_total", "counter"),
        ("interceptor_audit_events_lost_total", "counter"),
        ("interceptor_audit_batches_total", "counter"),
        ("interceptor_audit_failing", "gauge"),
    ];

    #[test]
    fn fresh_daemon_declares_every_family() {
        let mut snapshot = snapshot();
        snapshot.kernel_counters.clear();
        let parsed = parse(&Metrics::new().render(&snapshot));
        for (family, ty) in FAMILIES {
            assert_eq!(
                parsed.types.get(family).map(String::as_str),
                Some(ty),
                "{family}"
            );
        }
        assert_eq!(parsed.types.len(), FAMILIES.len());
        assert_eq!(
            parsed.value("interceptor_events_total", &[("kind", "exec")]),
            0.0
        );
        assert!(
            !parsed
                .samples
                .keys()
                .any(|(name, _)| name == "interceptor_decisions_total"),
            "no decision yet"
        );
        let count = "interceptor_decision_latency_seconds_count";
        assert_eq!(parsed.value(count, &[]), 0.0);
    }

    #[test]
    fn agent_session_is_counted_exactly() {
        let metrics = Metrics::new();
        for _ in 0..3 {
            metrics.event(EventKind::Exec);
        }
        metrics.event(EventKind::ExecDenied);
        metrics.event(EventKind::Open);
        metrics.event(EventKind::Open);
        // Two execs allowed by policy, one `ask` approved by alice and one by bob, one
        // `ask` that timed out into a denial, one kernel deny.
        let policy = DecidedBy::Policy;
        metrics.decision(Action::Allow, Outcome::Allowed, &policy);
        metrics.decision(Action::Allow, Outcome::Allowed, &policy);
        let alice = DecidedBy::Reviewer("alice".into());
        metrics.decision(Action::Ask, Outcome::Allowed, &alice);
        let bob = DecidedBy::Reviewer("bob".into());
        metrics.decision(Action::Ask, Outcome::Allowed, &bob);
        metrics.decision(Action::Ask, Outcome::Denied, &DecidedBy::Timeout);
        metrics.decision(Action::Deny, Outcome::Denied, &DecidedBy::Kernel);

        let parsed = parse(&metrics.render(&snapshot()));

        let events = "interceptor_events_total";
        assert_eq!(parsed.value(events, &[("kind", "exec")]), 3.0);
        assert_eq!(parsed.value(events, &[("kind", "exec_denied")]), 1.0);
        assert_eq!(parsed.value(events, &[("kind", "open")]), 2.0);

        let decisions = |action, outcome, decided_by| {
            let labels = [
                ("action", action),
                ("outcome", outcome),
                ("decided_by", decided_by),
            ];
            parsed.get("interceptor_decisions_total", &labels)
        };
        assert_eq!(decisions("allow", "allowed", "policy"), Some(2.0));
        assert_eq!(decisions("ask", "allowed", "reviewer"), Some(2.0));
        assert_eq!(decisions("ask", "denied", "timeout"), Some(1.0));
        assert_eq!(decisions("deny", "denied", "kernel"), Some(1.0));
        assert_eq!(decisions("deny", "denied", "policy"), None);
        let decision_samples = parsed
            .samples
            .keys()
            .filter(|(name, _)| name == "interceptor_decisions_total")
            .count();
        assert_eq!(decision_samples, 4);

        let version = env!("CARGO_PKG_VERSION");
        let info = [
            ("backend", "lsm"),
            ("policy_version", "sha256:abc"),
            ("version", version),
        ];
        assert_eq!(parsed.value("interceptor_info", &info), 1.0);
        assert_eq!(parsed.value("interceptor_holds_pending", &[]), 2.0);
        assert_eq!(parsed.value("interceptor_tracked_processes", &[]), 17.0);
        let incidents = "interceptor_kernel_incidents_total";
        assert_eq!(parsed.value(incidents, &[("kind", "event_dropped")]), 3.0);
        assert_eq!(parsed.value(incidents, &[("kind", "ptrace_blocked")]), 0.0);
        let committed = "interceptor_audit_rows_committed_total";
        assert_eq!(parsed.value(committed, &[]), 120.0);
        let lost = "interceptor_audit_events_lost_total";
        assert_eq!(parsed.value(lost, &[("reason", "write_failed")]), 4.0);
        assert_eq!(parsed.value(lost, &[("reason", "queue_full")]), 5.0);
        assert_eq!(parsed.value("interceptor_audit_batches_total", &[]), 30.0);
        assert_eq!(parsed.value("interceptor_audit_failing", &[]), 1.0);
    }

    #[test]
    fn latencies_land_in_their_buckets() {
        let metrics = Metrics::new();
        // A policy decision, one exactly on a bound (`le` is inclusive), a reviewer after
        // 3 minutes, and one past the last bucket.
        metrics.decision_latency(Duration::from_micros(80));
        metrics.decision_latency(Duration::from_micros(100));
        metrics.decision_latency(Duration::from_secs(180));
        metrics.decision_latency(Duration::from_secs(3600));
        metrics.audit_write(Duration::from_millis(3));
        metrics.audit_write(Duration::from_secs(10));

        let parsed = parse(&metrics.render(&snapshot()));

        let bucket = |name: &str, le: &str| parsed.value(&format!("{name}_bucket"), &[("le", le)]);
        let latency = "interceptor_decision_latency_seconds";
        assert_eq!(bucket(latency, "0.00005"), 0.0);
        assert_eq!(bucket(latency, "0.0001"), 2.0);
        assert_eq!(bucket(latency, "120"), 2.0);
        assert_eq!(bucket(latency, "300"), 3.0);
        assert_eq!(bucket(latency, "600"), 3.0);
        assert_eq!(bucket(latency, "+Inf"), 4.0);
        assert_eq!(parsed.value(&format!("{latency}_count"), &[]), 4.0);
        let sum = parsed.value(&format!("{latency}_sum"), &[]);
        assert!((sum - 3780.00018).abs() < 1e-9, "sum {sum}");

        let audit = "interceptor_audit_write_seconds";
        assert_eq!(bucket(audit, "0.0025"), 0.0);
        assert_eq!(bucket(audit, "0.005"), 1.0);
        assert_eq!(bucket(audit, "5"), 1.0);
        assert_eq!(bucket(audit, "+Inf"), 2.0);
        assert_eq!(parsed.value(&format!("{audit}_count"), &[]), 2.0);
    }

    #[test]
    fn label_values_are_escaped() {
        let mut snapshot = snapshot();
        snapshot.policy_version = "v\"1\"\nC:\\policy".into();
        let text = Metrics::new().render(&snapshot);
        assert!(
            text.contains(r#"policy_version="v\"1\"\nC:\\policy""#),
            "{text}"
        );
        let parsed = parse(&text);
        let version = env!("CARGO_PKG_VERSION");
        let info = [
            ("backend", "lsm"),
            ("policy_version", "v\"1\"\nC:\\policy"),
            ("version", version),
        ];
        assert_eq!(parsed.value("interceptor_info", &info), 1.0);
    }

    #[test]
    #[should_panic(expected = "buckets not cumulative")]
    fn validator_rejects_a_non_cumulative_histogram() {
        parse(
            "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n\
             h_sum 1\nh_count 1\n",
        );
    }

    #[test]
    fn counters_never_decrease_between_scrapes() {
        let metrics = Metrics::new();
        let snapshot = snapshot();
        let mut previous = parse(&metrics.render(&snapshot));
        for round in 0..3 {
            metrics.event(EventKind::Open);
            metrics.decision(Action::Audit, Outcome::Allowed, &DecidedBy::Kernel);
            metrics.decision_latency(Duration::from_millis(round * 40));
            metrics.audit_write(Duration::from_millis(round * 400));
            let current = parse(&metrics.render(&snapshot));
            for ((name, labels), value) in &previous.samples {
                let now = current.samples[&(name.clone(), labels.clone())];
                assert!(now >= *value, "{name}{labels:?} went from {value} to {now}");
            }
            previous = current;
        }
    }
}
