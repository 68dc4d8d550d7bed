//! Every exec by an agent is reported with its context; `interceptor run` refuses to start
//! an agent without a daemon.

use interceptor_integration::{
    Backend, Daemon, Spawned, TestDir, expected_backend, fate, interceptor_bin, probe_bin,
};

#[test]
fn exec_events_carry_context() {
    let dir = TestDir::new("events");
    let daemon = Daemon::start(&dir, &[]);
    let agent = daemon.agent("ctx-bot", &probe_bin(), &["exit", "0", "two words", ""]);
    let (status, _) = Spawned::start(agent).finish();
    assert_eq!(fate(status), "exit:0");

    let probe = probe_bin();
    let event = daemon.wait_event("the probe's exec", |e| {
        e["agent"] == "ctx-bot" && e["filename"] == probe.to_str().unwrap()
    });
    assert_eq!(event["kind"], "exec");
    assert_eq!(event["verdict"], "allow");
    assert_eq!(event["held"], false);
    assert_eq!(event["denied"], false);
    assert_eq!(event["uid"], 0);
    assert!(
        event["pid"].as_u64().unwrap() > 1 && event["ppid"].as_u64().unwrap() >= 1,
        "{event}"
    );
    assert!(event["cgroup_id"].as_u64().unwrap() > 0, "{event}");
    let argv: Vec<&str> = event["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        argv,
        [probe.to_str().unwrap(), "exit", "0", "two words", ""]
    );
    assert_eq!(event["argv_truncated"], false, "{event}");
    assert_eq!(event["userspace_decides"], false, "{event}");
    // The resolved path of the executed file: bpf_d_path in bprm_check_security (lsm); the
    // tracepoint backend cannot resolve it in the kernel.
    let resolved = std::fs::canonicalize(&probe).unwrap();
    match expected_backend() {
        Backend::Lsm => assert_eq!(event["path"], resolved.to_str().unwrap(), "{event}"),
        Backend::Tracepoint => assert_eq!(event["path"], "", "{event}"),
    }

    // The agent has exited: the kernel forgot it (tracking is dropped at exit).
    daemon.wait_for("the exited agent to leave TRACKED", || {
        let status = daemon.json(&["status", "--json"]);
        (status["tracked_processes"] == 0).then_some(())
    });

    // The kernel's own log line (aya-log) reaches the daemon's log through tracing.
    let pid = event["pid"].as_u64().unwrap();
    let line = format!("registered agent process {pid} confirmed");
    let log = daemon.wait_log(&line);
    assert!(
        log.contains("interceptor::kernel"),
        "kernel records carry their target: {log}"
    );
}

/// Scenario 14: argv longer than the kernel's copy. The exec is held until the daemon has
/// read the whole argv from /proc, then runs without a human (the verdict was allow); the
/// recorded event carries the full argv.
#[test]
fn scenario_14_argv_over_the_kernel_bound_is_recorded_whole() {
    let dir = TestDir::new("long-argv");
    let daemon = Daemon::start(&dir, &[]);
    let long = format!("{}-end", "x".repeat(6000));
    let marker = dir.join("marker");
    let agent = daemon.agent(
        "argv-bot",
        &probe_bin(),
        &["touch", marker.to_str().unwrap(), &long],
    );
    let (status, _) = Spawned::start(agent).finish();
    assert_eq!(
        fate(status),
        "exit:0",
        "allowed execs run after the daemon read their argv"
    );
    assert!(marker.exists());

    let event = daemon.wait_event("the long exec, completed", |e| {
        e["agent"] == "argv-bot" && e["userspace_decides"] == true && e["argv_truncated"] == false
    });
    assert_eq!(event["held"], true, "{event}");
    assert_eq!(event["verdict"], "allow");
    assert_eq!(
        event["argv"][3],
        long.as_str(),
        "the whole argument, not the kernel's 2048 bytes"
    );
    let pending = daemon.json(&["approvals", "list", "--json"]);
    assert_eq!(
        pending.as_array().map(Vec::len),
        Some(0),
        "no human was asked: {pending}"
    );
    // In the audit log: the kernel's record says it was cut, and the decision, taken on
    // the argv read whole, carries all of it.
    let decision = daemon.wait_audit("the long exec's decision", &["--kind", "decision"], |r| {
        r["agent"] == "argv-bot" && r["event"]["process"]["argv"][3] == long.as_str()
    });
    assert_eq!(decision["outcome"], "allowed", "{decision}");
    assert_eq!(decision["decided_by"], "policy", "{decision}");
    let seen = daemon.wait_audit("the kernel's record of it", &["--kind", "exec"], |r| {
        r["agent"] == "argv-bot" && r["event"]["process"]["argv"][1] == "touch"
    });
    let flags = seen["event"]["flags"].as_array().unwrap();
    assert!(flags.iter().any(|f| f == "argv_truncated"), "{seen}");
}

/// `interceptor run RUN_FLAGS -- PROBE PROBE_ARGS...` against a socket nobody listens on.
fn run_without_daemon(
    dir: &TestDir,
    run_flags: &[&str],
    probe_args: &[&str],
) -> std::process::Output {
    std::process::Command::new(interceptor_bin())
        .args(["--socket", dir.join("absent.sock").to_str().unwrap(), "run"])
        .args(run_flags)
        .arg("--")
        .arg(probe_bin())
        .args(probe_args)
        .output()
        .expect("run interceptor")
}

#[test]
fn run_refuses_without_a_daemon() {
    let dir = TestDir::new("no-daemon");
    let marker = dir.join("marker");
    let out = run_without_daemon(&dir, &[], &["touch", marker.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to run the agent unprotected"),
        "{stderr}"
    );
    assert!(!marker.exists(), "the agent must not run unprotected");
}

#[test]
fn run_allow_unprotected_runs_the_command_with_a_warning() {
    let dir = TestDir::new("unprotected");
    let out = run_without_daemon(&dir, &["--allow-unprotected"], &["exit", "7"]);
    assert_eq!(out.status.code(), Some(7), "the command's own exit status");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("UNPROTECTED"), "{stderr}");
}

#[test]
fn run_rationale_reaches_the_reviewer() {
    let dir = TestDir::new("run-rationale");
    let tool = dir.probe_copy("release-tool");
    let daemon = Daemon::start(&dir, &[interceptor_integration::Rule::HoldExec(&tool)]);
    let mut cmd = daemon.command(&[
        "run",
        "--agent",
        "release-bot",
        "--rationale",
        "tagging release 4.2 (REL-9)",
        "--",
    ]);
    cmd.arg(&tool).args(["exit", "0"]);
    let agent = Spawned::start(cmd);
    let request = daemon.wait_pending(agent.pid());
    let id = request["id"].to_string();
    let shown = daemon.json(&["approvals", "show", &id, "--json"]);
    assert_eq!(
        shown["notice"]["rationale"], "tagging release 4.2 (REL-9)",
        "{shown:#}"
    );
    daemon.json(&["approvals", "approve", &id, "--json"]);
    assert_eq!(fate(agent.finish().0), "exit:0");
}

#[test]
fn run_sessions_reach_descendants_requests_and_the_audit_log_and_stay_apart() {
    let dir = TestDir::new("run-session");
    let tool = dir.probe_copy("deploy-tool");
    let daemon = Daemon::start(&dir, &[interceptor_integration::Rule::HoldExec(&tool)]);
    let launch = |session: &str, rationale: Option<&str>| {
        let mut args = vec!["run", "--agent", "ops-bot", "--session", session];
        if let Some(r) = rationale {
            args.extend(["--rationale", r]);
        }
        args.push("--");
        let mut cmd = daemon.command(&args);
        // The held exec is a grandchild: the session follows the tree, not the pid.
        cmd.arg("/bin/sh")
            .arg("-c")
            .arg(format!("{} exit 0; true", tool.display()));
        Spawned::start(cmd)
    };
    let first = launch("ticket-1", None);
    let request = daemon.wait_pending_by("ticket-1's request", |r| r["session"] == "ticket-1");
    assert_eq!(request["agent"], "ops-bot", "{request:#}");
    let second = launch("ticket-2", Some("second ticket's work"));
    let other = daemon.wait_pending_by("ticket-2's request", |r| r["session"] == "ticket-2");
    assert_eq!(other["agent"], "ops-bot");

    let shown =
        |r: &serde_json::Value| daemon.json(&["approvals", "show", &r["id"].to_string(), "--json"]);
    let (one, two) = (shown(&request), shown(&other));
    assert_eq!(one["notice"]["session"], "ticket-1", "{one:#}");
    assert_eq!(two["notice"]["session"], "ticket-2");
    assert_eq!(
        two["notice"]["rationale"], "second ticket's work",
        "{two:#}"
    );
    assert!(
        one["notice"]["rationale"].is_null(),
        "one session's rationale is not shown on another's requests: {one:#}"
    );
    let event = daemon.wait_event("the first session's shell", |e| {
        e["session"] == "ticket-1" && e["filename"] == "/bin/sh"
    });
    assert_eq!(event["agent"], "ops-bot");

    for r in [&request, &other] {
        daemon.json(&["approvals", "approve", &r["id"].to_string(), "--json"]);
    }
    assert_eq!(fate(first.finish().0), "exit:0");
    assert_eq!(fate(second.finish().0), "exit:0");
    let rows = daemon.audit_rows(&["--agent", "ops-bot", "--kind", "decision"]);
    for session in ["ticket-1", "ticket-2"] {
        assert!(
            rows.iter()
                .any(|r| r["event"]["process"]["session"] == session && r["outcome"] == "allowed"),
            "an allowed decision row for {session}: {rows:#?}"
        );
    }

    let out = daemon.cli(&[
        "run",
        "--agent",
        "ops-bot",
        "--session",
        "two words",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("session \"two words\" is invalid"),
        "{stderr}"
    );
}

/// Scenario 15: a program that rewrites its argv and comm after exec cannot change what was
/// recorded: events and the audit log keep the arguments it was executed with.
#[test]
fn scenario_15_argv_rewritten_after_exec_is_recorded_as_executed() {
    let dir = TestDir::new("argv-rewrite");
    let daemon = Daemon::start(&dir, &[]);
    let marker = dir.join("rewritten");
    let agent = Spawned::start(daemon.agent(
        "rewrite-bot",
        &probe_bin(),
        &["rewrite-argv", marker.to_str().unwrap(), "2"],
    ));
    daemon.wait_for("the probe to rewrite its arguments", || {
        marker.exists().then_some(())
    });
    let pid = agent.pid();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    assert!(
        cmdline.starts_with(b"harmless --dry-run"),
        "the rewrite took effect: {:?}",
        String::from_utf8_lossy(&cmdline)
    );
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("comm");
    assert_eq!(comm.trim(), "innocent");
    assert_eq!(fate(agent.finish().0), "exit:0");

    let probe = probe_bin();
    let event = daemon.wait_event("the probe's exec", |e| {
        e["agent"] == "rewrite-bot" && e["filename"] == probe.to_str().unwrap()
    });
    assert_eq!(event["argv"][1], "rewrite-argv", "{event}");
    let row = daemon.wait_audit(
        "the probe's exec row",
        &["--agent", "rewrite-bot", "--kind", "exec"],
        |r| r["event"]["filename"] == probe.to_str().unwrap(),
    );
    let argv = &row["event"]["process"]["argv"];
    assert_eq!(argv[1], "rewrite-argv", "{row:#}");
    assert_eq!(argv[2], marker.to_str().unwrap(), "{row:#}");
    assert!(
        !row.to_string().contains("harmless --dry-run"),
        "the rewritten text is nowhere in the row: {row:#}"
    );
}
