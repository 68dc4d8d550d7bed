//! Every exec by an agent is reported with its context; `interceptor run` refuses to start
//! an agent without a daemon.

use interceptor_integration::{Daemon, Spawned, TestDir, fate, interceptor_bin, probe_bin};

#[test]
fn exec_events_carry_context() {
    let dir = TestDir::new("events");
    let daemon = Daemon::start(&dir, &[]);
    let long = "x".repeat(3000);
    let agent = daemon.agent("ctx-bot", &probe_bin(), &["exit", "0", "two words", &long]);
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
        &argv[..4],
        [probe.to_str().unwrap(), "exit", "0", "two words"]
    );
    // 3000 bytes of argument do not fit the kernel's 2048-byte copy: cut and flagged.
    assert_eq!(event["argv_truncated"], true, "{event}");
    assert!(long.starts_with(argv[4]) && argv[4].len() < long.len());

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

#[test]
fn run_refuses_without_a_daemon() {
    let dir = TestDir::new("no-daemon");
    let marker = dir.join("marker");
    let out = std::process::Command::new(interceptor_bin())
        .args([
            "--socket",
            dir.join("absent.sock").to_str().unwrap(),
            "run",
            "--",
        ])
        .arg(probe_bin())
        .args(["touch", marker.to_str().unwrap()])
        .output()
        .expect("run interceptor");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to run the agent unprotected"),
        "{stderr}"
    );
    assert!(!marker.exists(), "the agent must not run unprotected");
}
