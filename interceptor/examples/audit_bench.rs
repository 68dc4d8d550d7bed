//! Audit log throughput: events/s recorded (batched, group commit) into SQLite with
//! synchronous=NORMAL and FULL and into PostgreSQL, with a zero-loss check (rows in the
//! database == events recorded, writer loss counters 0); commits/s when every event waits
//! for its own commit; and verify rows/s.
//!
//! Run: cargo run --release -p interceptor --example audit_bench -- [--events N] [--json]
//! PostgreSQL: set INTERCEPTOR_BENCH_PG_URL (or INTERCEPTOR_TEST_PG_URL) to a server's URL;
//! without one the PostgreSQL rows are skipped, loudly.

use std::{path::PathBuf, process::ExitCode, time::Instant};

use interceptor::{
    audit::{
        AuditConfig, AuditEvent, AuditLog, AuditTarget, DecidedBy, DecisionAudit, Outcome,
        ProcessInfo, Store, StoreOptions, Synchronous,
    },
    policy::{Action, Operation},
};

struct Row {
    case: String,
    events: u64,
    secs: f64,
    rows_in_db: u64,
    lost: u64,
    verify_rows_per_sec: f64,
}

impl Row {
    fn rate(&self) -> f64 {
        self.events as f64 / self.secs
    }
    fn zero_loss(&self) -> bool {
        self.rows_in_db == self.events && self.lost == 0
    }
}

/// A decision as the daemon records it: ~700 bytes of JSON.
fn event(i: u64) -> AuditEvent {
    AuditEvent::Decision(DecisionAudit {
        operation: Operation::Exec,
        process: ProcessInfo {
            agent: "copilot".into(),
            session: None,
            pid: 10_000 + (i % 30_000) as u32,
            ppid: 9_999,
            uid: 1000,
            binary: "/usr/bin/git".into(),
            argv: vec![
                "git".into(),
                "push".into(),
                "--force-with-lease".into(),
                "origin".into(),
                format!("feature/branch-{i}"),
            ],
            cwd: Some("/home/agent/work/repository".into()),
            env: Vec::new(),
            parents: Vec::new(),
        },
        files: Vec::new(),
        access: Vec::new(),
        matched_rules: vec!["git-push".into(), "vcs-audit".into()],
        winner: Some("git-push".into()),
        action: Action::Audit,
        outcome: Outcome::Allowed,
        reason: "pushes are recorded".into(),
        policy_version: "5f1c0a9e".repeat(8),
        controls: vec!["SOC2:CC8.1".into(), "NIST-800-53:AU-2".into()],
        decided_by: DecidedBy::Kernel,
        latency_us: Some(180),
        request: None,
        monitor: false,
        recent: Vec::new(),
    })
}

async fn batched(case: &str, opts: StoreOptions, events: u64) -> Result<Row, String> {
    let log = AuditLog::open(AuditConfig::new(opts.clone()))
        .await
        .map_err(|e| e.to_string())?;
    let before = log.store().count().await.map_err(|e| e.to_string())?;
    let start = Instant::now();
    for i in 0..events {
        log.record(event(i)).await.map_err(|e| e.to_string())?;
    }
    log.flush().await.map_err(|e| e.to_string())?;
    let secs = start.elapsed().as_secs_f64();
    finish(case, &log, before, events, secs).await
}

async fn one_by_one(case: &str, opts: StoreOptions, events: u64) -> Result<Row, String> {
    let log = AuditLog::open(AuditConfig::new(opts))
        .await
        .map_err(|e| e.to_string())?;
    let before = log.store().count().await.map_err(|e| e.to_string())?;
    let start = Instant::now();
    for i in 0..events {
        log.append(event(i)).await.map_err(|e| e.to_string())?;
    }
    let secs = start.elapsed().as_secs_f64();
    finish(case, &log, before, events, secs).await
}

async fn finish(
    case: &str,
    log: &AuditLog,
    before: u64,
    events: u64,
    secs: f64,
) -> Result<Row, String> {
    let store: &Store = log.store();
    let rows_in_db = store.count().await.map_err(|e| e.to_string())? - before;
    let stats = log.stats();
    let report = store.verify(None).await.map_err(|e| e.to_string())?;
    if !report.ok() {
        return Err(report.summary());
    }
    Ok(Row {
        case: case.into(),
        events,
        secs,
        rows_in_db,
        lost: stats.lost + stats.dropped,
        verify_rows_per_sec: report.rows as f64 / (report.elapsed_ms.max(1) as f64 / 1000.0),
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let events: u64 = args
        .iter()
        .position(|a| a == "--events")
        .and_then(|i| args.get(i + 1))
        .map(|n| n.parse().expect("--events takes a number"))
        .unwrap_or(200_000);
    let single = (events / 50).clamp(200, 5_000);
    let dir = std::env::temp_dir().join(format!("interceptor-audit-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench directory");
    let sqlite = |name: &str, sync: Synchronous| {
        let mut o = StoreOptions::new(AuditTarget::Sqlite(PathBuf::from(&dir).join(name)));
        o.synchronous = sync;
        o
    };
    let pg_url = std::env::var("INTERCEPTOR_BENCH_PG_URL")
        .or_else(|_| std::env::var("INTERCEPTOR_TEST_PG_URL"))
        .ok();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    runtime.block_on(async {
        let cases: Vec<(String, StoreOptions, bool)> = {
            let mut c = vec![
                (
                    "sqlite NORMAL batched".to_string(),
                    sqlite("normal.db", Synchronous::Normal),
                    true,
                ),
                (
                    "sqlite FULL batched".to_string(),
                    sqlite("full.db", Synchronous::Full),
                    true,
                ),
                (
                    "sqlite NORMAL append-and-wait".to_string(),
                    sqlite("normal-1.db", Synchronous::Normal),
                    false,
                ),
                (
                    "sqlite FULL append-and-wait".to_string(),
                    sqlite("full-1.db", Synchronous::Full),
                    false,
                ),
            ];
            if let Some(url) = &pg_url {
                let o = StoreOptions::new(AuditTarget::Postgres(url.clone()));
                c.push(("postgres batched".into(), o.clone(), true));
                c.push(("postgres append-and-wait".into(), o, false));
            }
            c
        };
        for (name, opts, batch) in cases {
            let result = if batch {
                batched(&name, opts, events).await
            } else {
                one_by_one(&name, opts, single).await
            };
            match result {
                Ok(r) => rows.push(r),
                Err(e) => failures.push(format!("{name}: {e}")),
            }
        }
    });
    let _ = std::fs::remove_dir_all(&dir);

    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "case": r.case,
                    "events": r.events,
                    "seconds": r.secs,
                    "events_per_sec": r.rate(),
                    "rows_in_db": r.rows_in_db,
                    "lost": r.lost,
                    "zero_loss": r.zero_loss(),
                    "verify_rows_per_sec": r.verify_rows_per_sec,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "results": v, "postgres": pg_url.is_some(), "failures": failures })
        );
    } else {
        println!(
            "{:<32} {:>9} {:>9} {:>12} {:>10} {:>14}",
            "case", "events", "seconds", "events/s", "0 loss", "verify rows/s"
        );
        for r in &rows {
            println!(
                "{:<32} {:>9} {:>9.2} {:>12.0} {:>10} {:>14.0}",
                r.case,
                r.events,
                r.secs,
                r.rate(),
                if r.zero_loss() { "yes" } else { "NO" },
                r.verify_rows_per_sec
            );
        }
        if pg_url.is_none() {
            println!(
                "\nPOSTGRESQL SKIPPED: set INTERCEPTOR_BENCH_PG_URL to a server's URL to measure it"
            );
        }
        for f in &failures {
            println!("FAILED: {f}");
        }
    }
    if failures.is_empty() && rows.iter().all(Row::zero_loss) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
