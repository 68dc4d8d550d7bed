//! What an agent may never do, whatever the policy (DESIGN §7 scenarios 11, 19, 21).
//! lsm backend: refused with EPERM/EACCES. tracepoint backend: no LSM hooks, so the call
//! succeeds; the test asserts that weaker outcome, and that `status` states it.

use interceptor_integration::{
    Backend, Daemon, Spawned, TestDir, expected_backend, probe_bin, probe_value,
};

/// Runs the probe as an agent and returns the value it printed for `key`.
fn as_agent(daemon: &Daemon, args: &[&str], key: &str) -> String {
    let (_, out) = Spawned::start(daemon.agent("guard-bot", &probe_bin(), args)).finish();
    probe_value(&out, key)
        .unwrap_or_else(|| panic!("no {key}= in {out:?}"))
        .to_string()
}

/// Runs the probe outside any agent tree and returns the value it printed for `key`.
fn untracked(args: &[&str], key: &str) -> String {
    let (_, out) = Spawned::start({
        let mut cmd = std::process::Command::new(probe_bin());
        cmd.args(args);
        cmd
    })
    .finish();
    probe_value(&out, key)
        .unwrap_or_else(|| panic!("no {key}= in {out:?}"))
        .to_string()
}

/// The outcome a guard gives an agent on this backend.
fn guarded(errno: &str) -> String {
    match expected_backend() {
        Backend::Lsm => format!("errno:{errno}"),
        Backend::Tracepoint => "ok".into(),
    }
}

#[test]
fn scenario_19_agent_cannot_ptrace_or_write_another_process() {
    let dir = TestDir::new("ptrace");
    let daemon = Daemon::start(&dir, &[]);
    let victim = Spawned::start({
        let mut cmd = std::process::Command::new(dir.probe_copy("victim"));
        cmd.args(["sleep", "60"]);
        cmd
    });
    let pid = victim.pid().to_string();

    assert_eq!(
        as_agent(&daemon, &["ptrace-attach", &pid], "ptrace"),
        guarded("1")
    );
    // /proc/PID/mem for writing needs attach rights: EACCES when refused.
    assert_eq!(as_agent(&daemon, &["open-mem", &pid], "mem"), guarded("13"));
    assert_eq!(as_agent(&daemon, &["traceme"], "traceme"), guarded("1"));
    // The same calls from outside any agent are untouched.
    assert_eq!(untracked(&["ptrace-attach", &pid], "ptrace"), "ok");
    assert_eq!(untracked(&["open-mem", &pid], "mem"), "ok");
    match expected_backend() {
        Backend::Lsm => {
            assert!(daemon.counter("ptrace_blocked") >= 3);
            daemon.wait_counted("ptrace_blocked", 3);
        }
        Backend::Tracepoint => {
            assert!(daemon.states("NOT guaranteed: agents can signal the daemon, ptrace"))
        }
    }
}

#[test]
fn scenario_21_agent_cannot_signal_the_daemon_or_use_bpf() {
    let dir = TestDir::new("daemon-guard");
    let daemon = Daemon::start(&dir, &[]);
    let daemon_pid = daemon.json(&["status", "--json"])["daemon_pid"].to_string();

    // Signal 0 only probes: harmless on the tracepoint backend, where it is not refused.
    assert_eq!(
        as_agent(&daemon, &["signal", &daemon_pid, "0"], "kill"),
        guarded("1")
    );
    assert_eq!(as_agent(&daemon, &["bpf-map"], "bpf"), guarded("1"));
    assert_eq!(
        untracked(&["bpf-map"], "bpf"),
        "ok",
        "root outside an agent keeps bpf()"
    );
    if expected_backend() == Backend::Lsm {
        assert_eq!(
            as_agent(&daemon, &["signal", &daemon_pid, "9"], "kill"),
            "errno:1"
        );
        assert_eq!(
            daemon.json(&["status", "--json"])["daemon_pid"].to_string(),
            daemon_pid,
            "daemon alive"
        );
        assert!(daemon.counter("daemon_signal_blocked") >= 2);
        assert!(daemon.counter("bpf_blocked") >= 1);
        let row = daemon.wait_counted("daemon_signal_blocked", 2);
        assert!(
            row["event"]["counters"]["bpf_blocked"].as_u64() >= Some(1),
            "{row}"
        );
    }
}

#[test]
fn scenario_11_agent_cannot_create_a_user_namespace() {
    let dir = TestDir::new("userns");
    let daemon = Daemon::start(&dir, &[]);
    assert_eq!(
        as_agent(&daemon, &["unshare-user"], "unshare"),
        guarded("1")
    );
    assert_eq!(untracked(&["unshare-user"], "unshare"), "ok");
    match expected_backend() {
        Backend::Lsm => {
            daemon.wait_counted("userns_blocked", 1);
        }
        Backend::Tracepoint => {
            assert!(daemon.states("NOT guaranteed: agents can create user namespaces"))
        }
    }
    drop(daemon);

    // The operator can allow it.
    let dir = TestDir::new("userns-allowed");
    let daemon = Daemon::start_with(&dir, &[], &["--allow-userns"]);
    assert_eq!(as_agent(&daemon, &["unshare-user"], "unshare"), "ok");
    assert_eq!(daemon.json(&["status", "--json"])["userns_allowed"], true);
}
