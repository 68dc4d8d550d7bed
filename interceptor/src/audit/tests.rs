//! Scenario tests of the audit log: an intact chain verifies; an edit, a delete, a replaced
//! row, a cut-off tail and a moved anchor are each named; pruning keeps the rest
//! verifiable; filters, exports and the evidence bundle say what was recorded; a corrupt,
//! full, locked or unwritable database is reported as such.
//!
//! The chain scenarios run on SQLite here and on a real PostgreSQL server in [`pg`]
//! (built with `--features pg-tests`, which `cargo xtask test` does after starting a
//! throwaway server).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use super::{
    chain::{self, BreakKind},
    evidence, export,
    query::Filter,
    record::*,
    *,
};
use crate::policy::{Action, Operation};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "interceptor-audit-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
    fn db(&self) -> PathBuf {
        self.0.join("audit.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sqlite(dir: &TempDir) -> StoreOptions {
    StoreOptions::new(AuditTarget::Sqlite(dir.db()))
}

fn process(agent: &str, pid: u32, binary: &str, argv: &[&str]) -> ProcessInfo {
    ProcessInfo {
        agent: agent.into(),
        session: None,
        pid,
        ppid: 1,
        uid: 1000,
        binary: binary.into(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        cwd: Some("/home/agent".into()),
        env: Vec::new(),
        parents: Vec::new(),
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "a test builder: each argument is a column the scenarios vary"
)]
fn decision(
    agent: &str,
    pid: u32,
    binary: &str,
    rule: &str,
    action: Action,
    outcome: Outcome,
    decided_by: DecidedBy,
    controls: &[&str],
) -> AuditEvent {
    AuditEvent::Decision(DecisionAudit {
        operation: Operation::Exec,
        process: process(
            agent,
            pid,
            binary,
            &[binary.rsplit('/').next().unwrap(), "--x"],
        ),
        files: Vec::new(),
        access: Vec::new(),
        matched_rules: vec![rule.into()],
        winner: Some(rule.into()),
        action,
        outcome,
        reason: format!("rule {rule}"),
        policy_version: "ab".repeat(32),
        controls: controls.iter().map(|c| c.to_string()).collect(),
        decided_by,
        latency_us: Some(1500),
        request: None,
        monitor: false,
        recent: Vec::new(),
    })
}

fn exec(agent: &str, pid: u32) -> AuditEvent {
    AuditEvent::Exec(ExecAudit {
        process: process(agent, pid, "/usr/bin/ls", &["ls", "-la"]),
        filename: "/bin/ls".into(),
        files: Vec::new(),
        verdict: Some(Action::Audit),
        rule: None,
        flags: Vec::new(),
    })
}

fn open_decision(agent: &str, path: &str, outcome: Outcome) -> AuditEvent {
    AuditEvent::Decision(DecisionAudit {
        operation: Operation::Open,
        process: process(agent, 77, "/usr/bin/cat", &["cat", path]),
        files: vec![path.into()],
        access: vec!["read".into()],
        matched_rules: vec!["ssh-keys".into()],
        winner: Some("ssh-keys".into()),
        action: Action::Deny,
        outcome,
        reason: "keys are not for agents".into(),
        policy_version: "cd".repeat(32),
        controls: vec!["NIST-800-53:AC-6(9)".into()],
        decided_by: DecidedBy::Kernel,
        latency_us: None,
        request: None,
        monitor: false,
        recent: Vec::new(),
    })
}

/// `n` mixed rows: execs and decisions from two agents.
async fn fill(log: &AuditLog, n: u64) -> Vec<ChainPoint> {
    let mut points = Vec::new();
    for i in 0..n {
        let event = if i % 3 == 0 {
            exec("copilot", 100 + i as u32)
        } else {
            decision(
                if i % 2 == 0 { "copilot" } else { "ops-bot" },
                200 + i as u32,
                "/usr/bin/curl",
                "net",
                Action::Ask,
                Outcome::Allowed,
                DecidedBy::Policy,
                &["SOC2:CC6.1"],
            )
        };
        points.push(log.append(event).await.expect("append"));
    }
    points
}

async fn open_log(opts: &StoreOptions) -> AuditLog {
    AuditLog::open(AuditConfig::new(opts.clone()))
        .await
        .expect("open audit log")
}

fn hex_literal(store: &Store, bytes: &[u8]) -> String {
    match store.dialect() {
        "sqlite" => format!("X'{}'", hex::encode(bytes)),
        _ => format!("'\\x{}'::bytea", hex::encode(bytes)),
    }
}

// ---- chain scenarios, shared by SQLite and PostgreSQL ----

async fn scenario_intact(opts: StoreOptions) {
    let log = open_log(&opts).await;
    let points = fill(&log, 40).await;
    assert_eq!(points.first().unwrap().seq, 1);
    assert_eq!(points.last().unwrap().seq, 40);
    let report = log.store().verify(None).await.unwrap();
    assert!(report.ok(), "{}", report.summary());
    assert_eq!(report.rows, 40);
    assert_eq!(report.state.head, *points.last().unwrap());
    // An externally anchored head from the middle still matches.
    let report = log.store().verify(Some(points[9].clone())).await.unwrap();
    assert!(report.ok(), "{}", report.summary());
}

async fn scenario_edit(opts: StoreOptions) {
    let log = open_log(&opts).await;
    fill(&log, 20).await;
    let n = log
        .store()
        .execute_raw("UPDATE audit_events SET agent = 'mallory' WHERE seq = 7")
        .await
        .unwrap();
    assert_eq!(n, 1);
    let report = log.store().verify(None).await.unwrap();
    let problem = report.problem.expect("an edited row must be found");
    assert_eq!(
        (problem.seq, problem.kind),
        (7, BreakKind::Edited),
        "{problem}"
    );
    // Putting the value back restores the chain; the payload is covered too.
    let log2 = open_log(&opts).await;
    log2.store()
        .execute_raw("UPDATE audit_events SET agent = 'copilot' WHERE seq = 7")
        .await
        .unwrap();
    assert!(log2.store().verify(None).await.unwrap().ok());
    log2.store()
        .execute_raw(
            "UPDATE audit_events SET payload = replace(payload, 'curl', 'true') WHERE seq = 11",
        )
        .await
        .unwrap();
    let problem = log2.store().verify(None).await.unwrap().problem.unwrap();
    assert_eq!(
        (problem.seq, problem.kind),
        (11, BreakKind::Edited),
        "{problem}"
    );
}

async fn scenario_delete(opts: StoreOptions) {
    let log = open_log(&opts).await;
    fill(&log, 20).await;
    log.store()
        .execute_raw("DELETE FROM audit_events WHERE seq IN (12, 13)")
        .await
        .unwrap();
    let problem = log.store().verify(None).await.unwrap().problem.unwrap();
    assert_eq!(
        (problem.seq, problem.kind),
        (12, BreakKind::Deleted),
        "{problem}"
    );
    assert!(problem.detail.contains("12..=13"), "{problem}");
}

async fn scenario_replace(opts: StoreOptions) {
    // Rewriting a row's content AND its hash breaks the link from the next row.
    let log = open_log(&opts).await;
    fill(&log, 20).await;
    let store = log.store();
    let mut row = store.row(10).await.unwrap().unwrap();
    row.columns.agent = Some("mallory".into());
    let forged = chain::stored_row_hash(&row);
    let sql = format!(
        "UPDATE audit_events SET agent = 'mallory', hash = {} WHERE seq = 10",
        hex_literal(store, &forged)
    );
    store.execute_raw(&sql).await.unwrap();
    let problem = store.verify(None).await.unwrap().problem.unwrap();
    assert_eq!(
        (problem.seq, problem.kind),
        (11, BreakKind::Relinked),
        "{problem}"
    );
}

async fn scenario_truncate(opts: StoreOptions) {
    let log = open_log(&opts).await;
    let points = fill(&log, 20).await;
    let store = log.store();
    store
        .execute_raw("DELETE FROM audit_events WHERE seq > 15")
        .await
        .unwrap();
    let problem = store.verify(None).await.unwrap().problem.unwrap();
    assert_eq!(
        (problem.seq, problem.kind),
        (16, BreakKind::Truncated),
        "{problem}"
    );
    // A careful attacker also rolls the recorded head back: the log verifies on its own,
    // but not against the head exported earlier.
    let sql = format!(
        "UPDATE audit_chain SET head_seq = 15, head_hash = {} WHERE id = 1",
        hex_literal(store, &points[14].hash)
    );
    store.execute_raw(&sql).await.unwrap();
    assert!(store.verify(None).await.unwrap().ok());
    let exported = points.last().unwrap().clone();
    let problem = store.verify(Some(exported)).await.unwrap().problem.unwrap();
    assert_eq!(
        (problem.seq, problem.kind),
        (16, BreakKind::Truncated),
        "{problem}"
    );
    // A row slipped in after the head (around the writer) is found too.
    let sql = "INSERT INTO audit_events SELECT seq + 1, time_ms, kind, agent, pid, operation, binary_path, path, action, outcome, rule, controls, decided_by, approver, ref_seq, payload, prev_hash, hash FROM audit_events WHERE seq = 15";
    store.execute_raw(sql).await.unwrap();
    let problem = store.verify(None).await.unwrap().problem.unwrap();
    assert_eq!(
        (problem.seq, problem.kind),
        (16, BreakKind::BeyondHead),
        "{problem}"
    );
}

async fn scenario_prune(opts: StoreOptions) {
    let log = open_log(&opts).await;
    let store = log.store().clone();
    for i in 0..10u32 {
        let mut e = NewEntry::now(exec("copilot", i));
        e.time_ms = 1_000 + u64::from(i);
        log.append(e).await.unwrap();
    }
    fill(&log, 5).await;
    let report = store.prune(2_000).await.unwrap();
    assert_eq!(report.pruned_rows, 10);
    assert_eq!(report.anchor.as_ref().unwrap().seq, 10);
    assert_eq!(report.record.as_ref().unwrap().seq, 16);
    let verified = store.verify(None).await.unwrap();
    assert!(verified.ok(), "{}", verified.summary());
    assert_eq!(verified.first_seq, Some(11));
    assert_eq!(verified.rows, 6);
    // Appends continue the chain after the prune record.
    fill(&log, 3).await;
    assert!(store.verify(None).await.unwrap().ok());
    // A second prune with nothing old enough does nothing.
    assert_eq!(store.prune(2_000).await.unwrap().pruned_rows, 0);
    // Deleting the first kept row, or moving the anchor, is still caught.
    store
        .execute_raw("DELETE FROM audit_events WHERE seq = 11")
        .await
        .unwrap();
    let problem = store.verify(None).await.unwrap().problem.unwrap();
    assert_eq!(
        (problem.seq, problem.kind),
        (11, BreakKind::Deleted),
        "{problem}"
    );
    // Row 11 is gone; moving the anchor onto row 12 without a prune record is caught.
    let sql = "UPDATE audit_chain SET anchor_seq = 11, anchor_hash = (SELECT prev_hash FROM audit_events WHERE seq = 12) WHERE id = 1";
    store.execute_raw(sql).await.unwrap();
    let problem = store.verify(None).await.unwrap().problem.unwrap();
    assert_eq!(problem.kind, BreakKind::BadAnchor, "{problem}");
}

async fn scenario_two_writers(opts: StoreOptions) {
    // Two logs (as two processes would) on one database still make one linear chain.
    let a = open_log(&opts).await;
    let b = open_log(&opts).await;
    let (ra, rb) = tokio::join!(fill(&a, 60), fill(&b, 60));
    let mut seqs: Vec<u64> = ra.iter().chain(&rb).map(|p| p.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=120).collect::<Vec<_>>());
    let report = a.store().verify(None).await.unwrap();
    assert!(report.ok(), "{}", report.summary());
    assert_eq!(a.store().count().await.unwrap(), 120);
}

async fn scenario_batched(opts: StoreOptions) {
    // The fire-and-forget path loses nothing and flush waits for it.
    let log = open_log(&opts).await;
    for i in 0..3000u32 {
        log.record(exec("flood", i)).await.unwrap();
    }
    log.flush().await.unwrap();
    assert_eq!(log.store().count().await.unwrap(), 3000);
    let stats = log.stats();
    assert_eq!((stats.committed, stats.lost, stats.dropped), (3000, 0, 0));
    assert!(stats.batches < 3000, "events were grouped: {stats:?}");
    assert!(log.store().verify(None).await.unwrap().ok());
}

macro_rules! sqlite_scenarios {
    ($($name:ident => $scenario:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            let dir = TempDir::new(stringify!($name));
            runtime().block_on($scenario(sqlite(&dir)));
        }
    )*};
}

sqlite_scenarios! {
    sqlite_intact_chain_verifies => scenario_intact,
    sqlite_edited_row_is_named => scenario_edit,
    sqlite_deleted_rows_are_named => scenario_delete,
    sqlite_replaced_row_breaks_the_next_link => scenario_replace,
    sqlite_truncated_tail_is_found_by_the_heads => scenario_truncate,
    sqlite_prune_keeps_the_rest_verifiable => scenario_prune,
    sqlite_two_writers_make_one_chain => scenario_two_writers,
    sqlite_batched_records_are_all_committed => scenario_batched,
}

#[test]
fn sqlite_synchronous_full_also_works() {
    let dir = TempDir::new("full-sync");
    let mut opts = sqlite(&dir);
    opts.synchronous = Synchronous::Full;
    runtime().block_on(scenario_intact(opts));
}

// ---- queries, story, exports, evidence ----

#[test]
fn filters_select_what_the_operator_asked_for() {
    let dir = TempDir::new("filters");
    runtime().block_on(async {
        let log = open_log(&sqlite(&dir)).await;
        let base = 1_700_000_000_000u64;
        let events = [
            decision(
                "copilot",
                10,
                "/usr/bin/curl",
                "net",
                Action::Ask,
                Outcome::Allowed,
                DecidedBy::Reviewer("alice".into()),
                &["SOC2:CC6.1"],
            ),
            decision(
                "copilot",
                11,
                "/usr/bin/rm",
                "rm",
                Action::Deny,
                Outcome::Denied,
                DecidedBy::Kernel,
                &["SOC2:CC6.1", "ISO27001:A.8.2"],
            ),
            decision(
                "ops-bot",
                12,
                "/usr/local/bin/deploy",
                "deploy",
                Action::Ask,
                Outcome::Denied,
                DecidedBy::Reviewer("bob".into()),
                &["SOC2:CC8.1"],
            ),
            open_decision("ops-bot", "/root/.ssh/id_rsa", Outcome::Denied),
            exec("copilot", 13),
        ];
        for (i, e) in events.into_iter().enumerate() {
            let mut entry = NewEntry::now(e);
            entry.time_ms = base + i as u64 * 60_000;
            log.append(entry).await.unwrap();
        }
        let store = log.store();
        let seqs = |f: Filter| async move {
            store
                .query(&f)
                .await
                .unwrap()
                .iter()
                .map(|r| r.seq)
                .collect::<Vec<_>>()
        };
        let f = Filter::default;
        assert_eq!(
            seqs(Filter {
                agent: Some("copilot".into()),
                ..f()
            })
            .await,
            [1, 2, 5]
        );
        assert_eq!(
            seqs(Filter {
                outcome: Some("denied".into()),
                ..f()
            })
            .await,
            [2, 3, 4]
        );
        assert_eq!(
            seqs(Filter {
                control: Some("SOC2:CC6.1".into()),
                ..f()
            })
            .await,
            [1, 2]
        );
        // A tag is matched whole, not as a prefix of another.
        assert_eq!(
            seqs(Filter {
                control: Some("SOC2:CC6".into()),
                ..f()
            })
            .await,
            Vec::<u64>::new()
        );
        assert_eq!(
            seqs(Filter {
                control: Some("ISO27001:A.8.2".into()),
                ..f()
            })
            .await,
            [2]
        );
        assert_eq!(
            seqs(Filter {
                approver: Some("bob".into()),
                ..f()
            })
            .await,
            [3]
        );
        assert_eq!(
            seqs(Filter {
                decided_by: Some("reviewer".into()),
                ..f()
            })
            .await,
            [1, 3]
        );
        assert_eq!(
            seqs(Filter {
                binary: Some("/usr/bin/*".into()),
                ..f()
            })
            .await,
            // Row 4 is an open by /usr/bin/cat: the binary is the process' program.
            [1, 2, 4, 5]
        );
        assert_eq!(
            seqs(Filter {
                binary: Some("/usr/bin/rm".into()),
                ..f()
            })
            .await,
            [2]
        );
        assert_eq!(
            seqs(Filter {
                operation: Some("open".into()),
                ..f()
            })
            .await,
            [4]
        );
        assert_eq!(
            seqs(Filter {
                action: Some("ask".into()),
                ..f()
            })
            .await,
            [1, 3]
        );
        assert_eq!(
            seqs(Filter {
                rule: Some("deploy".into()),
                ..f()
            })
            .await,
            [3]
        );
        assert_eq!(
            seqs(Filter {
                pid: Some(11),
                ..f()
            })
            .await,
            [2]
        );
        assert_eq!(
            seqs(Filter {
                kinds: vec!["exec".into()],
                ..f()
            })
            .await,
            [5]
        );
        assert_eq!(
            seqs(Filter {
                since_ms: Some(base + 60_000),
                until_ms: Some(base + 180_000),
                ..f()
            })
            .await,
            [2, 3]
        );
        assert_eq!(
            seqs(Filter {
                limit: Some(2),
                newest_first: true,
                oldest_first_output: true,
                ..f()
            })
            .await,
            [4, 5]
        );
    });
}

#[test]
fn show_gathers_a_requests_lifecycle() {
    let dir = TempDir::new("story");
    runtime().block_on(async {
        let log = open_log(&sqlite(&dir)).await;
        log.append(exec("copilot", 1)).await.unwrap();
        let held = log
            .append(decision(
                "copilot",
                42,
                "/usr/bin/curl",
                "net",
                Action::Ask,
                Outcome::Held,
                DecidedBy::Policy,
                &["SOC2:CC6.1"],
            ))
            .await
            .unwrap();
        let step = |step, by: Option<&str>| {
            AuditEvent::Approval(ApprovalAudit {
                request: 3,
                step,
                operation: Operation::Exec,
                agent: "copilot".into(),
                pid: 42,
                binary: "/usr/bin/curl".into(),
                path: None,
                rule: Some("net".into()),
                controls: vec!["SOC2:CC6.1".into()],
                reviewers: vec!["alice".into(), "bob".into()],
                channel: Some("slack".into()),
                by: by.map(str::to_string),
                detail: None,
            })
        };
        let requested = log
            .append(NewEntry::now(step(ApprovalStep::Requested, None)).follows(held.seq))
            .await
            .unwrap();
        log.append(exec("other", 2)).await.unwrap();
        log.append(NewEntry::now(step(ApprovalStep::Approved, Some("alice"))).follows(held.seq))
            .await
            .unwrap();
        let final_decision = decision(
            "copilot",
            42,
            "/usr/bin/curl",
            "net",
            Action::Ask,
            Outcome::Allowed,
            DecidedBy::Reviewer("alice".into()),
            &["SOC2:CC6.1"],
        );
        log.append(NewEntry::now(final_decision).follows(held.seq))
            .await
            .unwrap();

        let story = log.store().story(held.seq).await.unwrap();
        assert_eq!(
            story.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [2, 3, 5, 6]
        );
        // From any row of the story, the same story.
        assert_eq!(log.store().story(requested.seq).await.unwrap().len(), 4);
        let text = cli::render_story(&story, held.seq);
        for expected in [
            "row 2",
            "agent:      copilot (pid 42",
            "argv:       curl --x",
            "policy:     ask by rule net",
            "outcome:    held, decided by policy",
            "controls:   SOC2:CC6.1",
            "approval request 3 requested via slack (reviewers: alice, bob)",
            "approval request 3 approved by alice",
            "allowed by reviewer:alice after 1500 us",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    });
}

#[test]
fn exports_have_the_shape_siems_expect() {
    let dir = TempDir::new("export");
    runtime().block_on(async {
        let log = open_log(&sqlite(&dir)).await;
        log.append(decision(
            "copilot",
            9,
            "/usr/bin/rm",
            "rm",
            Action::Deny,
            Outcome::Denied,
            DecidedBy::Kernel,
            &["SOC2:CC6.1"],
        ))
        .await
        .unwrap();
        log.append(open_decision(
            "copilot",
            "/root/.ssh/id_rsa",
            Outcome::Denied,
        ))
        .await
        .unwrap();
        log.append(exec("copilot", 10)).await.unwrap();
        log.append(AuditEvent::Loss(LossAudit {
            counters: BTreeMap::from([("event_dropped".into(), 0)]),
        }))
        .await
        .unwrap();
        let rows = log.store().query(&Filter::default()).await.unwrap();

        let line: serde_json::Value = serde_json::from_str(&export::jsonl_line(&rows[0])).unwrap();
        assert_eq!(line["seq"], 1);
        assert_eq!(line["kind"], "decision");
        assert_eq!(line["event"]["decided_by"], "kernel");
        assert_eq!(line["event"]["process"]["argv"][0], "rm");
        assert_eq!(line["hash"].as_str().unwrap(), hex::encode(&rows[0].hash));

        let exec_ev = export::ocsf_event(&rows[0]).unwrap();
        assert_eq!(exec_ev["class_uid"], 1007);
        assert_eq!(exec_ev["category_uid"], 1);
        assert_eq!(exec_ev["activity_id"], 1);
        assert_eq!(exec_ev["type_uid"], 100701);
        assert_eq!(exec_ev["action_id"], 2);
        assert_eq!(exec_ev["disposition_id"], 2);
        assert_eq!(exec_ev["process"]["pid"], 9);
        assert_eq!(exec_ev["process"]["file"]["path"], "/usr/bin/rm");
        assert_eq!(exec_ev["metadata"]["version"], export::OCSF_VERSION);
        assert_eq!(
            exec_ev["unmapped"]["interceptor"]["detail"]["controls"][0],
            "SOC2:CC6.1"
        );

        let open_ev = export::ocsf_event(&rows[1]).unwrap();
        assert_eq!(open_ev["class_uid"], 1001);
        assert_eq!(open_ev["activity_id"], 14);
        assert_eq!(open_ev["type_uid"], 100114);
        assert_eq!(open_ev["file"]["path"], "/root/.ssh/id_rsa");
        assert_eq!(open_ev["file"]["name"], "id_rsa");

        let launched = export::ocsf_event(&rows[2]).unwrap();
        assert_eq!(launched["action_id"], 1);
        assert_eq!(launched["status_id"], 1);
        assert!(
            export::ocsf_event(&rows[3]).is_none(),
            "loss rows have no OCSF class"
        );
    });
}

#[test]
fn evidence_bundle_counts_controls_and_approvers() {
    let dir = TempDir::new("evidence");
    runtime().block_on(async {
        let log = open_log(&sqlite(&dir)).await;
        let alice = || DecidedBy::Reviewer("alice".into());
        let bob = || DecidedBy::Reviewer("bob".into());
        for e in [
            decision(
                "copilot",
                1,
                "/usr/bin/curl",
                "net",
                Action::Ask,
                Outcome::Allowed,
                alice(),
                &["SOC2:CC6.1"],
            ),
            decision(
                "copilot",
                2,
                "/usr/bin/curl",
                "net",
                Action::Ask,
                Outcome::Allowed,
                alice(),
                &["SOC2:CC6.1"],
            ),
            decision(
                "copilot",
                3,
                "/usr/bin/scp",
                "copy<out>",
                Action::Ask,
                Outcome::Denied,
                bob(),
                &["SOC2:CC6.1"],
            ),
            decision(
                "copilot",
                4,
                "/usr/bin/rm",
                "rm",
                Action::Deny,
                Outcome::Denied,
                DecidedBy::Kernel,
                &["SOC2:CC6.1", "SOC2:CC8.1"],
            ),
            decision(
                "copilot",
                5,
                "/usr/bin/git",
                "git",
                Action::Ask,
                Outcome::Allowed,
                DecidedBy::Timeout,
                &["OTHER:X"],
            ),
        ] {
            log.append(e).await.unwrap();
        }
        let store = log.store();
        let rows = store
            .query(&Filter {
                kinds: vec!["decision".into()],
                ..Filter::default()
            })
            .await
            .unwrap();
        let report = store.verify(None).await.unwrap();
        let controls = vec!["SOC2:CC6.1".to_string(), "SOC2:CC8.1".to_string()];
        let bundle = evidence::build(&rows, &controls, 0, i64::MAX, "audit.db", &report, 0);
        let c61 = &bundle.controls[0];
        assert_eq!(c61.decisions.len(), 4);
        assert_eq!(c61.by_outcome["allowed"], 2);
        assert_eq!(c61.by_outcome["denied"], 2);
        assert_eq!(c61.by_decided_by["reviewer"], 3);
        assert_eq!(c61.by_decided_by["kernel"], 1);
        assert_eq!(
            c61.approvers["alice"],
            evidence::ApproverCounts {
                approved: 2,
                denied: 0
            }
        );
        assert_eq!(
            c61.approvers["bob"],
            evidence::ApproverCounts {
                approved: 0,
                denied: 1
            }
        );
        assert_eq!(c61.reviewer_timing.as_ref().unwrap().count, 3);
        assert_eq!(bundle.controls[1].decisions.len(), 1);
        assert!(bundle.chain_ok);

        let md = evidence::render_md(&bundle);
        for expected in [
            "## Control SOC2:CC6.1",
            "4 decisions: 2 allowed, 2 denied, 0 held for review.",
            "| alice | 2 | 0 |",
            "| bob | 0 | 1 |",
            "Chain verification: **PASSED**",
            "## Control SOC2:CC8.1",
            "1 decisions: 0 allowed, 1 denied",
        ] {
            assert!(md.contains(expected), "missing {expected:?} in:\n{md}");
        }
        assert!(!md.contains("OTHER:X"), "only the asked-for controls");
        let html = evidence::render_html(&bundle);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(
            html.contains("<td>alice</td><td>2</td><td>0</td>"),
            "{html}"
        );
        assert!(
            html.contains("copy&lt;out&gt;") && !html.contains("copy<out>"),
            "escaped"
        );
        assert!(html.contains("PASSED"));
        let csv = evidence::render_csv(&bundle);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 1 + 4 + 1, "{csv}");
        assert!(lines[0].ends_with(",chain_verified"));
        assert!(lines[1].starts_with("SOC2:CC6.1,1,"), "{}", lines[1]);
        assert!(lines.iter().skip(1).all(|l| l.ends_with(",passed")));

        // A broken chain shows in every format.
        store
            .execute_raw("UPDATE audit_events SET approver = 'carol' WHERE seq = 3")
            .await
            .unwrap();
        let broken = store.verify(None).await.unwrap();
        let bundle = evidence::build(&rows, &controls, 0, i64::MAX, "audit.db", &broken, 0);
        assert!(evidence::render_md(&bundle).contains("**FAILED** — audit chain BROKEN at row 3"));
        assert!(evidence::render_html(&bundle).contains("FAILED"));
        assert!(
            evidence::render_csv(&bundle)
                .lines()
                .skip(1)
                .all(|l| l.ends_with(",FAILED"))
        );
    });
}

#[test]
fn csv_fields_are_quoted_and_never_formulas() {
    assert_eq!(evidence::csv_field("plain"), "plain");
    assert_eq!(evidence::csv_field("a,b"), "\"a,b\"");
    assert_eq!(evidence::csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_eq!(evidence::csv_field("=cmd()"), "'=cmd()");
}

#[test]
fn canonical_encoding_separates_fields() {
    // Moving bytes between adjacent fields changes the hash.
    let mut a = Columns {
        kind: "exec".into(),
        agent: Some("ab".into()),
        binary: Some("c".into()),
        ..Columns::default()
    };
    let h1 = chain::row_hash(1, 0, &a, None, "{}", &chain::GENESIS);
    a.agent = Some("a".into());
    a.binary = Some("bc".into());
    let h2 = chain::row_hash(1, 0, &a, None, "{}", &chain::GENESIS);
    assert_ne!(h1, h2);
    // NULL and empty differ.
    a.path = Some(String::new());
    assert_ne!(chain::row_hash(1, 0, &a, None, "{}", &chain::GENESIS), h2);
    // The head token round-trips and bad ones are explained.
    let p = ChainPoint { seq: 42, hash: h1 };
    assert_eq!(ChainPoint::parse(&p.to_token()).unwrap(), p);
    assert!(ChainPoint::parse("42").unwrap_err().contains("SEQ:HASH"));
    assert!(
        ChainPoint::parse("42:abcd")
            .unwrap_err()
            .contains("64 hex digits")
    );
}

#[test]
fn event_payloads_round_trip_and_decided_by_reads_back() {
    let e = decision(
        "a",
        1,
        "/bin/x",
        "r",
        Action::Ask,
        Outcome::Allowed,
        DecidedBy::Reviewer("al:ice".into()),
        &[],
    );
    let text = serde_json::to_string(&e).unwrap();
    assert!(
        text.contains("\"decided_by\":\"reviewer:al:ice\""),
        "{text}"
    );
    assert_eq!(serde_json::from_str::<AuditEvent>(&text).unwrap(), e);
    assert!(DecidedBy::try_from("reviewer:".to_string()).is_err());
    assert_eq!(
        DecidedBy::try_from("daemon-down".to_string()).unwrap(),
        DecidedBy::DaemonDown
    );
}

// ---- faults ----

#[test]
fn a_corrupt_file_is_reported_and_left_alone() {
    let dir = TempDir::new("corrupt");
    let junk = b"this is not a database, it is evidence of something".repeat(100);
    std::fs::write(dir.db(), &junk).unwrap();
    let err = runtime().block_on(Store::open(&sqlite(&dir))).unwrap_err();
    assert!(matches!(err, AuditError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("corrupt"), "{err}");
    assert_eq!(std::fs::read(dir.db()).unwrap(), junk, "never recreated");
}

#[test]
fn a_closed_sqlite_log_has_every_row_in_its_file() {
    let dir = TempDir::new("checkpointed");
    runtime().block_on(async {
        let log = open_log(&sqlite(&dir)).await;
        fill(&log, 50).await;
        log.store().close().await;
    });
    let wal = PathBuf::from(format!("{}-wal", dir.db().display()));
    assert!(
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "{} bytes left in the -wal file",
        std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0)
    );
    // The file alone holds the rows: a copy without the -wal file verifies whole.
    let copy = TempDir::new("checkpointed-copy");
    std::fs::copy(dir.db(), copy.db()).unwrap();
    runtime().block_on(async {
        let log = open_log(&sqlite(&copy)).await;
        let report = log.store().verify(None).await.unwrap();
        assert!(report.ok(), "{report:?}");
        assert_eq!(report.rows, 50, "{report:?}");
    });
}

#[test]
fn a_damaged_page_is_found_by_the_integrity_check() {
    let dir = TempDir::new("damaged");
    runtime().block_on(async {
        let log = open_log(&sqlite(&dir)).await;
        fill(&log, 300).await;
        log.store()
            .execute_raw("PRAGMA wal_checkpoint(TRUNCATE)")
            .await
            .unwrap();
        log.store().close().await;
    });
    // Scribble over the middle of the file (past the header and schema pages).
    let mut bytes = std::fs::read(dir.db()).unwrap();
    assert!(bytes.len() > 40_000, "{} bytes", bytes.len());
    for b in &mut bytes[20_000..36_000] {
        *b = 0xA5;
    }
    std::fs::write(dir.db(), &bytes).unwrap();
    let found = runtime().block_on(async {
        let mut opts = sqlite(&dir);
        opts.create = false;
        let store = match Store::open(&opts).await {
            Ok(s) => s,
            Err(e) => return format!("{e}"),
        };
        match store.integrity_problem().await {
            Ok(Some(p)) => p,
            Ok(None) => match store.verify(None).await {
                Ok(r) => r.summary(),
                Err(e) => format!("{e}"),
            },
            Err(e) => format!("{e}"),
        }
    });
    assert!(
        found.contains("corrupt")
            || found.contains("malformed")
            || found.contains("BROKEN")
            || found.contains("Page")
            || found.contains("page"),
        "damage must be reported: {found}"
    );
}

#[test]
fn a_full_database_fails_the_append() {
    let dir = TempDir::new("full");
    runtime().block_on(async {
        // Create the schema, then reopen capped a few pages above its size.
        Store::open(&sqlite(&dir)).await.unwrap().close().await;
        let mut opts = sqlite(&dir);
        opts.sqlite_max_pages = Some(16);
        let log = open_log(&opts).await;
        let big = "x".repeat(8_000);
        let mut result = Ok(ChainPoint {
            seq: 0,
            hash: chain::GENESIS,
        });
        for i in 0..50 {
            let mut e = exec("copilot", i);
            if let AuditEvent::Exec(x) = &mut e {
                x.process.argv = vec![big.clone()];
            }
            result = log.append(e).await;
            if result.is_err() {
                break;
            }
        }
        let err = result.expect_err("a capped database must fill up");
        assert!(matches!(err, AuditError::Full { .. }), "{err:?}");
        assert!(err.is_write_failure());
        // What was committed before still verifies.
        assert!(log.store().verify(None).await.unwrap().ok());
    });
}

#[test]
fn a_locked_database_fails_the_append_after_the_busy_timeout() {
    use sqlx::{ConnectOptions as _, Connection as _};
    let dir = TempDir::new("locked");
    runtime().block_on(async {
        let mut opts = sqlite(&dir);
        opts.busy_timeout = Duration::from_millis(200);
        let log = open_log(&opts).await;
        log.append(exec("copilot", 1)).await.unwrap();
        let mut other = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.db())
            .connect()
            .await
            .unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .unwrap();
        let err = log.append(exec("copilot", 2)).await.unwrap_err();
        assert!(matches!(err, AuditError::Locked { .. }), "{err:?}");
        sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
        other.close().await.unwrap();
        // Once the lock is gone, writes go on and the chain has no hole.
        log.append(exec("copilot", 3)).await.unwrap();
        let report = log.store().verify(None).await.unwrap();
        assert!(report.ok(), "{}", report.summary());
        assert_eq!(report.rows, 2);
    });
}

#[test]
fn an_unwritable_location_is_reported() {
    // Nothing can be created under /proc, not even by root.
    let opts = StoreOptions::new(AuditTarget::Sqlite(PathBuf::from(
        "/proc/interceptor-no-such-dir/audit.db",
    )));
    let err = runtime().block_on(Store::open(&opts)).unwrap_err();
    assert!(matches!(err, AuditError::Unwritable { .. }), "{err:?}");
}

#[test]
fn the_cli_never_creates_a_log() {
    let dir = TempDir::new("missing");
    let mut opts = sqlite(&dir);
    opts.create = false;
    let err = runtime().block_on(Store::open(&opts)).unwrap_err();
    assert!(matches!(err, AuditError::Missing { .. }), "{err:?}");
    assert!(!Path::new(&dir.db()).exists());
}

#[test]
fn audit_cli_parses_filters_and_rejects_bad_input() {
    use crate::cli::{Cli, Command_};
    use clap::Parser as _;
    let cli = Cli::try_parse_from([
        "interceptor",
        "audit",
        "--db",
        "/tmp/x.db",
        "query",
        "--agent",
        "bot",
        "--since",
        "7d",
        "--decision",
        "deny",
        "--op",
        "exec",
        "--kind",
        "policy-reload",
        "--decided-by",
        "daemon-down",
        "--format",
        "csv",
    ])
    .unwrap();
    let Command_::Audit(args) = cli.command else {
        panic!("not audit")
    };
    assert_eq!(args.db.target(), AuditTarget::Sqlite("/tmp/x.db".into()));
    let cli::AuditCommand::Query { filter, format, .. } = args.command else {
        panic!("not query")
    };
    assert_eq!(format, cli::Format::Csv);
    let f = filter.to_filter(1_000_000_000).unwrap();
    assert_eq!(f.outcome.as_deref(), Some("denied"));
    assert_eq!(f.kinds, ["policy_reload"]);
    assert_eq!(f.decided_by.as_deref(), Some("daemon-down"));
    assert_eq!(f.since_ms, Some(1_000_000_000 - 7 * 86_400_000));

    let bad =
        Cli::try_parse_from(["interceptor", "audit", "query", "--since", "last tuesday"]).unwrap();
    let Command_::Audit(args) = bad.command else {
        panic!()
    };
    let cli::AuditCommand::Query { filter, .. } = args.command else {
        panic!()
    };
    let err = filter.to_filter(0).unwrap_err().to_string();
    assert!(
        err.starts_with("--since:") && err.contains("neither a duration"),
        "{err}"
    );
    assert!(Cli::try_parse_from(["interceptor", "audit", "query", "--decision", "maybe"]).is_err());
    assert!(
        Cli::try_parse_from([
            "interceptor",
            "audit",
            "--db",
            "a",
            "--db-url",
            "postgres://x/y",
            "head"
        ])
        .is_err()
    );
    assert!(
        Cli::try_parse_from(["interceptor", "audit", "evidence", "--from", "7d"]).is_err(),
        "--control is required"
    );
}

// ---- PostgreSQL: the same chain scenarios against a real server ----

/// Built with `--features pg-tests`; `cargo xtask test` starts a throwaway server on
/// 127.0.0.1 and passes its URL in `INTERCEPTOR_TEST_PG_URL`. Without the URL these tests
/// fail: they never pass without having run.
#[cfg(feature = "pg-tests")]
mod pg {
    use super::*;

    /// A fresh database on the test server.
    async fn fresh_db(name: &str) -> StoreOptions {
        let url = std::env::var("INTERCEPTOR_TEST_PG_URL").unwrap_or_else(|_| {
            panic!(
                "INTERCEPTOR_TEST_PG_URL is not set: the PostgreSQL tests need the server that `cargo xtask test` starts"
            )
        });
        let db = format!("audit_{name}_{}", std::process::id());
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&url)
            .await
            .expect("connect to the test server");
        sqlx::query(&format!("DROP DATABASE IF EXISTS {db}"))
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query(&format!("CREATE DATABASE {db}"))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let base = url.rsplit_once('/').expect("URL with a database").0;
        StoreOptions::new(AuditTarget::Postgres(format!("{base}/{db}")))
    }

    macro_rules! pg_scenarios {
        ($($name:ident => $scenario:ident),* $(,)?) => {$(
            #[test]
            fn $name() {
                runtime().block_on(async {
                    let opts = fresh_db(stringify!($name)).await;
                    $scenario(opts).await;
                });
            }
        )*};
    }

    pg_scenarios! {
        pg_intact_chain_verifies => scenario_intact,
        pg_edited_row_is_named => scenario_edit,
        pg_deleted_rows_are_named => scenario_delete,
        pg_replaced_row_breaks_the_next_link => scenario_replace,
        pg_truncated_tail_is_found_by_the_heads => scenario_truncate,
        pg_prune_keeps_the_rest_verifiable => scenario_prune,
        pg_two_writers_make_one_chain => scenario_two_writers,
        pg_batched_records_are_all_committed => scenario_batched,
    }

    #[test]
    fn pg_unreachable_server_is_a_connection_error() {
        // A port nothing listens on (bound, then released).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let opts = StoreOptions::new(AuditTarget::Postgres(format!(
            "postgres://nobody@127.0.0.1:{port}/x"
        )));
        let err = runtime().block_on(Store::open(&opts)).unwrap_err();
        assert!(matches!(err, AuditError::Connection { .. }), "{err:?}");
    }
}
