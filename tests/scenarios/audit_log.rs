//! The audit log end to end (DESIGN §6; scenarios 23, 29 and 30): agent execs, opens, decisions
//! and approval lifecycles reach `interceptor audit query` with their rule, controls and
//! context; a flood loses nothing silently; a full disk refuses agents, never other
//! processes.

use std::{
    ffi::CString,
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use interceptor_integration::{
    Backend, Daemon, Spawned, TestDir, counter, expected_backend, fate, probe_bin, probe_value,
};
use serde_json::Value;

fn controls_of(row: &Value) -> Vec<String> {
    row["event"]["controls"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn agent_operations_reach_the_audit_log_with_their_decisions_and_context() {
    let dir = TestDir::new("audit-e2e");
    let ok = dir.probe_copy("report-tool");
    let bad = dir.probe_copy("wipe-tool");
    let held = dir.probe_copy("deploy-tool");
    let notes = dir.join("notes.txt");
    std::fs::write(&notes, "notes\n").unwrap();
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            r#"version = 1

[[rule]]
name = "no-wipe"
operation = "exec"
binary = "{bad}"
action = "deny"
reason = "wiping disks is never an agent's job"
controls = ["SOC2:CC6.1", "NIST-800-53:AC-6(9)"]

[[rule]]
name = "deploys-ask"
operation = "exec"
binary = "{held}"
action = "ask"
reason = "deploys need a human"
controls = ["SOC2:CC8.1"]

[[rule]]
name = "notes-audit"
operation = "open"
path = "{notes}"
access = "read"
action = "audit"
controls = ["SOC2:CC7.2"]
"#,
            bad = bad.display(),
            held = held.display(),
            notes = notes.display(),
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&dir, &[]);
    let version = daemon.json(&["status", "--json"])["policy_version"].clone();
    let agent = "auditor";
    let run = |program: &Path, args: &[&str]| {
        let mut cmd = daemon.agent(agent, program, args);
        cmd.env("API_TOKEN", "hunter2-secret");
        Spawned::start(cmd)
    };

    // An allowed exec: an exec row with its argv.
    assert_eq!(fate(run(&ok, &["exit", "0"]).finish().0), "exit:0");
    let ok_path = ok.display().to_string();
    let exec = daemon.wait_audit(
        "the allowed exec's row",
        &["--agent", agent, "--kind", "exec"],
        |r| r["event"]["filename"] == ok_path.as_str(),
    );
    assert_eq!(exec["event"]["process"]["argv"][1], "exit", "{exec}");

    // A denied exec: a decision row with the rule, its controls and the policy version.
    let status = run(&bad, &["exit", "0"]).finish().0;
    assert_ne!(fate(status), "exit:0", "the denied binary ran");
    let denied = daemon.wait_audit(
        "the kernel's deny",
        &["--rule", "no-wipe", "--kind", "decision"],
        |_| true,
    );
    assert_eq!(denied["outcome"], "denied", "{denied}");
    assert_eq!(denied["action"], "deny");
    assert_eq!(denied["decided_by"], "kernel");
    assert_eq!(denied["agent"], agent);
    assert_eq!(controls_of(&denied), ["SOC2:CC6.1", "NIST-800-53:AC-6(9)"]);
    assert_eq!(denied["event"]["policy_version"], version);
    assert_eq!(
        denied["event"]["reason"],
        "wiping disks is never an agent's job"
    );
    let by_control =
        daemon.audit_rows(&["--control", "NIST-800-53:AC-6(9)", "--decision", "denied"]);
    assert!(
        by_control.iter().any(|r| r["seq"] == denied["seq"]),
        "{by_control:?}"
    );

    // A held exec, approved: the whole lifecycle, linked to the decision that held it.
    let waiting = run(&held, &["exit", "0"]);
    let request = daemon.wait_pending(waiting.pid());
    assert!(
        request["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "API_TOKEN=<redacted>"),
        "the reviewer sees the environment, secrets redacted: {request}"
    );
    assert!(
        request["recent"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("report-tool exit 0")),
        "the reviewer sees what the agent did just before: {request}"
    );
    let id = request["id"].as_u64().unwrap();
    daemon.json(&["approvals", "approve", &id.to_string(), "--json"]);
    assert_eq!(fate(waiting.finish().0), "exit:0");
    let hold = daemon.wait_audit(
        "the hold's decision",
        &["--rule", "deploys-ask", "--kind", "decision"],
        |r| r["outcome"] == "held",
    );
    assert_eq!(hold["event"]["request"], id, "{hold}");
    assert_eq!(controls_of(&hold), ["SOC2:CC8.1"]);
    let hold_seq = hold["seq"].clone();
    let follow_ups = daemon.wait_for("the approval's rows", || {
        let rows: Vec<Value> = daemon
            .audit_rows(&["--agent", agent])
            .into_iter()
            .filter(|r| r["ref_seq"] == hold_seq)
            .collect();
        (rows.len() >= 3).then_some(rows)
    });
    let step = |kind: &str, outcome: &str| {
        follow_ups
            .iter()
            .find(|r| r["kind"] == kind && r["outcome"] == outcome)
            .unwrap_or_else(|| panic!("no {kind} {outcome} row among {follow_ups:#?}"))
    };
    step("approval", "requested");
    assert_eq!(step("approval", "approved")["approver"], "root");
    let allowed = step("decision", "allowed");
    assert_eq!(allowed["decided_by"], "reviewer");
    assert_eq!(allowed["approver"], "root");
    assert!(
        allowed["event"]["latency_us"].as_u64().unwrap() > 0,
        "{allowed}"
    );
    let held_env = hold["event"]["process"]["env"].as_array().unwrap();
    assert!(
        held_env.iter().any(|v| v == "API_TOKEN=<redacted>"),
        "{hold}"
    );

    // No secret reached the log, in any row.
    let everything = daemon.audit_rows(&[]);
    assert!(
        !everything
            .iter()
            .any(|r| r.to_string().contains("hunter2-secret")),
        "a secret value was recorded"
    );
    assert!(
        everything.iter().any(|r| r["kind"] == "daemon"),
        "no daemon start row"
    );

    // Opens a rule names: recorded on lsm; not observed on the tracepoint backend.
    let (_, out) = run(&probe_bin(), &["open", notes.to_str().unwrap(), "r"]).finish();
    assert_eq!(probe_value(&out, "open"), Some("ok"), "{out}");
    let notes_path = notes.display().to_string();
    match expected_backend() {
        Backend::Lsm => {
            let open = daemon.wait_audit(
                "the audited open's decision",
                &["--rule", "notes-audit", "--kind", "decision"],
                |_| true,
            );
            assert_eq!(open["path"], notes_path.as_str(), "{open}");
            assert_eq!(open["action"], "audit");
            assert_eq!(controls_of(&open), ["SOC2:CC7.2"]);
            daemon.wait_audit("the open's row", &["--op", "open", "--kind", "open"], |r| {
                r["path"] == notes_path.as_str()
            });
        }
        Backend::Tracepoint => {
            std::thread::sleep(Duration::from_millis(300));
            assert!(
                daemon.audit_rows(&["--op", "open"]).is_empty(),
                "the tracepoint backend sees no opens"
            );
        }
    }

    // The chain verifies, and `audit show` tells the request's story.
    daemon.assert_audit_verifies();
    let show = daemon.audit_cli(&["show", &hold_seq.to_string()]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(
        show.status.success() && text.contains("approved") && text.contains("root"),
        "{text}"
    );
}

#[test]
fn scenario_23_a_flood_loses_nothing_silently_and_hidden_sensitive_operations_are_decided() {
    const EVERY: usize = 20;
    let (execs, opens) = match expected_backend() {
        // Smaller under QEMU's software emulation: after a few thousand short-lived
        // processes in a row the guest sometimes never finishes zeroing a page (soft
        // lockup in `clear_page_rep`; cause not found, see xtask/src/vm.rs). 600 execs
        // and 1200 opens still outrun the daemon's per-event writes.
        Backend::Lsm => (600, 1200),
        // The tracepoint backend does not observe opens (stated by `status`).
        Backend::Tracepoint => (2000, 0),
    };
    let dir = TestDir::new("audit-flood");
    let ok = dir.probe_copy("busy-tool");
    let bad = dir.probe_copy("exfil-tool");
    let file = dir.join("data.csv");
    let secret = dir.join("secret.key");
    std::fs::write(&file, "a,b\n").unwrap();
    std::fs::write(&secret, "k\n").unwrap();
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            r#"version = 1

[[rule]]
name = "no-exfil"
operation = "exec"
binary = "{bad}"
action = "deny"
controls = ["SOC2:CC6.7"]

[[rule]]
name = "no-secret"
operation = "open"
path = "{secret}"
action = "deny"
controls = ["SOC2:CC6.1"]

[[rule]]
name = "data-audit"
operation = "open"
path = "{file}"
action = "audit"
"#,
            bad = bad.display(),
            secret = secret.display(),
            file = file.display(),
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&dir, &[]);
    let args = [
        "flood".to_string(),
        execs.to_string(),
        opens.to_string(),
        EVERY.to_string(),
        ok.display().to_string(),
        bad.display().to_string(),
        file.display().to_string(),
        secret.display().to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, out) = Spawned::start(daemon.agent("flooder", &probe_bin(), &args)).finish();
    assert_eq!(fate(status), "exit:0", "{out}");
    let value = |key: &str| -> usize {
        probe_value(&out, key)
            .unwrap_or_else(|| panic!("no {key} in {out}"))
            .parse()
            .unwrap()
    };
    let sensitive_execs = execs / EVERY;
    assert_eq!(value("flood-sensitive-execs"), sensitive_execs);
    assert_eq!(
        value("flood-sensitive-exec-refused"),
        sensitive_execs,
        "every hidden exec refused: {out}"
    );
    assert_eq!(value("flood-exec-ok"), execs - sensitive_execs, "{out}");
    assert_eq!(value("flood-other"), 0, "{out}");
    if opens > 0 {
        assert_eq!(
            value("flood-sensitive-open-refused"),
            opens / EVERY,
            "every hidden open refused: {out}"
        );
        assert_eq!(value("flood-open-ok"), opens - opens / EVERY, "{out}");
    }

    // Every event is recorded or counted as lost: the probe's own exec, every spawn, every
    // matched open.
    let expected_execs = 1 + execs as u64;
    let expected_opens = opens as u64;
    let (execs, open_rows, lost) = daemon.wait_for("every event recorded or counted lost", || {
        let status = daemon.json(&["status", "--json"]);
        let lost = status["audit"]["lost"].as_u64().unwrap() + counter(&status, "event_dropped");
        let rows = daemon.audit_rows(&["--agent", "flooder", "--kind", "exec", "--kind", "open"]);
        let execs = rows.iter().filter(|r| r["kind"] == "exec").count() as u64;
        let open_rows = rows.iter().filter(|r| r["kind"] == "open").count() as u64;
        (execs + open_rows + lost >= expected_execs + expected_opens)
            .then_some((execs, open_rows, lost))
    });
    assert!(
        execs <= expected_execs && open_rows <= expected_opens,
        "more rows than events: {execs} {open_rows}"
    );
    println!(
        "flood: {execs} exec rows, {open_rows} open rows, {lost} counted lost, of {expected_execs} + {expected_opens}"
    );

    // Each hidden operation has its decision (or is among the counted losses).
    let denied_execs = daemon
        .audit_rows(&[
            "--rule",
            "no-exfil",
            "--decision",
            "denied",
            "--kind",
            "decision",
        ])
        .len() as u64;
    assert!(
        denied_execs + lost >= sensitive_execs as u64,
        "{denied_execs} exec decisions, {lost} lost"
    );
    assert!(denied_execs <= sensitive_execs as u64);
    if opens > 0 {
        let denied_opens = daemon
            .audit_rows(&[
                "--rule",
                "no-secret",
                "--decision",
                "denied",
                "--kind",
                "decision",
            ])
            .len() as u64;
        assert!(
            denied_opens + lost >= (opens / EVERY) as u64,
            "{denied_opens} open decisions, {lost} lost"
        );
    }
    daemon.assert_audit_verifies();
}

/// A small tmpfs, unmounted on drop.
struct SmallFs {
    path: PathBuf,
}

impl SmallFs {
    fn mount(path: PathBuf, size: &str) -> Self {
        std::fs::create_dir_all(&path).unwrap();
        let target = CString::new(path.to_str().unwrap()).unwrap();
        let data = CString::new(format!("size={size}")).unwrap();
        // SAFETY: mount with NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        assert_eq!(
            rc,
            0,
            "mount tmpfs on {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        Self { path }
    }

    /// Writes zeros into `name` until the filesystem is full.
    fn fill(&self, name: &str) {
        let mut f = std::fs::File::create(self.path.join(name)).unwrap();
        let chunk = vec![0u8; 16 * 1024];
        loop {
            if let Err(e) = f.write_all(&chunk) {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "filling: {e}");
                break;
            }
        }
        // The last partial chunk, byte by byte is too slow; small writes finish the job.
        let small = [0u8; 512];
        while f.write_all(&small).is_ok() {}
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let target = CString::new(self.path.to_str().unwrap()).unwrap();
        // SAFETY: umount2 with a NUL-terminated path.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

#[test]
fn scenario_30_a_full_audit_disk_refuses_agents_and_nothing_else() {
    let dir = TestDir::new("audit-full");
    let fs = SmallFs::mount(dir.join("auditfs"), "4m");
    let db = fs.path.join("audit.db");
    let ok = dir.probe_copy("plain-tool");
    let daemon = Daemon::start_with(&dir, &[], &["--audit-db", db.to_str().unwrap()]);
    let agent_runs = || {
        daemon
            .agent("disk-bot", &ok, &["exit", "0"])
            .status()
            .unwrap()
            .success()
    };
    let others_run = || {
        Command::new(&ok)
            .args(["exit", "0"])
            .status()
            .unwrap()
            .success()
    };

    assert!(agent_runs(), "an agent exec with a writable log runs");
    daemon.wait_audit(
        "the first exec's row",
        &["--agent", "disk-bot", "--kind", "exec"],
        |_| true,
    );

    fs.fill("filler");
    // The agent's next execs are refused once a commit fails (those that ran before are
    // counted as lost). Other processes run throughout.
    daemon.wait_for("an agent exec refused on a full audit disk", || {
        assert!(
            others_run(),
            "a non-agent exec was refused while the audit disk was full"
        );
        (!agent_runs()).then_some(())
    });
    for _ in 0..20 {
        assert!(
            others_run(),
            "a non-agent exec was refused while the audit disk was full"
        );
    }
    let status = daemon.json(&["status", "--json"]);
    assert!(
        status["audit"]["failing"].is_string(),
        "status shows the failure: {status}"
    );
    assert!(counter(&status, "audit_down_denied") >= 1, "{status}");
    let doctor = daemon.cli(&["doctor"]);
    let doctor_text = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        doctor_text.contains("audit log") && doctor_text.contains("cannot be written"),
        "{doctor_text}"
    );

    // Room again: the log recovers by itself and agents run again.
    std::fs::remove_file(fs.path.join("filler")).unwrap();
    daemon.wait_for("agents running again after the disk has room", || {
        agent_runs().then_some(())
    });
    let status = daemon.json(&["status", "--json"]);
    assert!(status["audit"]["failing"].is_null(), "{status}");
    daemon.wait_audit("a loss row with the refusals", &["--kind", "loss"], |r| {
        r["event"]["counters"]["audit_down_denied"]
            .as_u64()
            .unwrap_or(0)
            >= 1
    });
    daemon.assert_audit_verifies();
}

#[test]
fn shadow_mode_records_would_ask_decisions_without_holding_and_policy_tune_reports_them() {
    let dir = TestDir::new("audit-shadow");
    let tool = dir.probe_copy("export-tool");
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            r#"version = 1

[[rule]]
name = "exports-watch"
operation = "exec"
binary = "{}"
action = "ask"
mode = "monitor"
controls = ["SOC2:CC6.1"]
"#,
            tool.display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&dir, &[]);
    for _ in 0..3 {
        let (status, _) =
            Spawned::start(daemon.agent("shadow-bot", &tool, &["exit", "0"])).finish();
        assert_eq!(fate(status), "exit:0", "a monitor rule never holds");
    }
    let pending = daemon.json(&["approvals", "list", "--json"]);
    assert_eq!(pending.as_array().map(Vec::len), Some(0), "{pending}");
    let rows = daemon.wait_for("three would-ask decisions", || {
        let rows = daemon.audit_rows(&["--rule", "exports-watch", "--kind", "decision"]);
        (rows.len() >= 3).then_some(rows)
    });
    for row in &rows {
        assert_eq!(row["event"]["monitor"], true, "{row}");
        assert_eq!(row["action"], "ask");
        assert_eq!(row["outcome"], "allowed");
    }

    let mut args = vec!["policy".to_string(), "tune".to_string()];
    args.extend(daemon.audit_args.iter().cloned());
    args.extend(
        [
            "--since",
            "1h",
            "--policy",
            policy.to_str().unwrap(),
            "--json",
        ]
        .map(String::from),
    );
    let out = Command::new(interceptor_integration::interceptor_bin())
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rule = report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "exports-watch")
        .unwrap_or_else(|| panic!("no exports-watch in {report}"));
    assert_eq!(rule["would_ask"], 3, "{rule}");
    assert_eq!(rule["asked"], 0, "{rule}");
}

/// A monitor rule naming its program by basename has no kernel entry: the daemon judges
/// every reported agent exec after the fact and records the would-be decision, never holding
/// the exec (and never recording one for a program the rule does not name).
#[test]
fn shadow_mode_by_basename_is_judged_on_every_reported_exec() {
    let dir = TestDir::new("audit-shadow-basename");
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    let exporter = dir.probe_copy("bin/nightly-export");
    let other = dir.probe_copy("bin/other-tool");
    std::fs::write(
        dir.join("policy.toml"),
        r#"version = 1

[[rule]]
name = "exports-by-name-watch"
operation = "exec"
basename = "nightly-export"
action = "deny"
mode = "monitor"
"#,
    )
    .unwrap();
    let daemon = Daemon::start(&dir, &[]);
    for program in [&exporter, &other] {
        let (status, _) =
            Spawned::start(daemon.agent("shadow-bot", program, &["exit", "0"])).finish();
        assert_eq!(
            fate(status),
            "exit:0",
            "a monitor rule never holds or denies"
        );
    }
    let row = daemon.wait_audit(
        "the would-be deny",
        &["--rule", "exports-by-name-watch", "--kind", "decision"],
        |_| true,
    );
    assert_eq!(row["event"]["monitor"], true, "{row}");
    assert_eq!(row["action"], "deny");
    assert_eq!(row["outcome"], "allowed");
    assert_eq!(
        row["event"]["process"]["argv"][0],
        exporter.to_str().unwrap(),
        "{row}"
    );
    // The other tool's exec is recorded, with no would-be decision.
    let other_path = other.display().to_string();
    daemon.wait_audit("the other tool's exec", &["--kind", "exec"], |r| {
        r["event"]["filename"] == other_path.as_str()
    });
    let decisions = daemon.audit_rows(&["--kind", "decision"]);
    assert_eq!(decisions.len(), 1, "{decisions:?}");
}

/// Replaces every `from` in the file at `path` with `to` (same length), in place: an edit
/// made below SQLite, as someone with the disk would make it. Returns how many were found.
fn edit_bytes(path: &Path, from: &[u8], to: &[u8]) -> usize {
    assert_eq!(from.len(), to.len());
    let Ok(mut bytes) = std::fs::read(path) else {
        return 0;
    };
    let mut found = 0;
    let mut at = 0;
    while let Some(i) = bytes[at..].windows(from.len()).position(|w| w == from) {
        bytes[at + i..at + i + to.len()].copy_from_slice(to);
        at += i + from.len();
        found += 1;
    }
    if found > 0 {
        std::fs::write(path, bytes).unwrap();
    }
    found
}

/// Scenario 29: an audit row edited on disk (an agent's exec made to look harmless) is named
/// by `audit verify`, which fails and says which row and how.
#[test]
fn scenario_29_an_audit_row_edited_on_disk_is_named_by_verify() {
    let dir = TestDir::new("audit-tamper");
    let tool = dir.probe_copy("wipe-tool");
    let mut daemon = Daemon::start(&dir, &[]);
    let marker = dir.join("ran");
    const EVIDENCE: &[u8] = b"--wipe-production-7f3a9c";
    const INNOCENT: &[u8] = b"--dry-run-harmless-00000";
    let evidence = std::str::from_utf8(EVIDENCE).unwrap();
    let (status, _) = Spawned::start(daemon.agent(
        "tamper-bot",
        &tool,
        &["touch", marker.to_str().unwrap(), evidence],
    ))
    .finish();
    assert_eq!(fate(status), "exit:0");
    let row = daemon.wait_audit("the agent's exec", &["--kind", "exec"], |r| {
        r["agent"] == "tamper-bot" && r["event"]["process"]["argv"][3] == evidence
    });
    let seq = row["seq"].as_u64().unwrap();
    daemon.assert_audit_verifies();
    assert_eq!(daemon.terminate().code(), Some(0));

    // A clean stop checkpoints the log: every row is in the database file itself.
    let db = dir.join("audit.db");
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    assert!(
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "the write-ahead log is empty after a clean stop"
    );
    let edited = edit_bytes(&db, EVIDENCE, INNOCENT);
    assert!(edited > 0, "the evidence is on disk");
    let innocent = std::str::from_utf8(INNOCENT).unwrap();
    // Every row that carried the argv was edited; the first one is where the chain breaks.
    let edited_seqs: Vec<u64> = daemon
        .audit_rows(&[])
        .iter()
        .filter(|r| r.to_string().contains(innocent))
        .filter_map(|r| r["seq"].as_u64())
        .collect();
    assert!(edited_seqs.contains(&seq), "the edit took: {edited_seqs:?}");

    let verify = daemon.audit_cli(&["verify", "--json"]);
    assert!(
        !verify.status.success(),
        "verify must fail on an edited row"
    );
    let report: Value = serde_json::from_slice(&verify.stdout).expect("verify --json");
    assert_eq!(report["problem"]["kind"], "edited", "{report:#}");
    assert_eq!(
        report["problem"]["seq"].as_u64(),
        edited_seqs.iter().min().copied(),
        "{report:#}"
    );
    let plain = daemon.audit_cli(&["verify"]);
    let said = String::from_utf8_lossy(&plain.stdout).to_string()
        + &String::from_utf8_lossy(&plain.stderr);
    assert!(said.contains("edited"), "{said}");
}
