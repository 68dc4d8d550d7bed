//! Deny-listed execs: refused for an agent and its descendants, untouched for everyone else.
//! lsm backend: execve() fails with EPERM and the caller carries on.
//! tracepoint backend: the task is killed (SIGKILL) before its first instruction.

use interceptor_integration::{
    Backend, Daemon, Rule, Spawned, TestDir, assert_exec_refused, expected_backend, fate, probe_bin,
};

#[test]
fn agent_exec_of_a_denied_binary_is_refused() {
    let dir = TestDir::new("deny");
    let denied = dir.probe_copy("denied-tool");
    let marker = dir.join("marker");
    let daemon = Daemon::start(&dir, &[Rule::DenyExec(&denied)]);

    assert_exec_refused(
        &daemon,
        "deny-bot",
        &[
            "exec",
            denied.to_str().unwrap(),
            "touch",
            marker.to_str().unwrap(),
        ],
        &marker,
    );

    let event = daemon.wait_event("the denied exec event", |e| {
        e["denied"] == true && e["agent"] == "deny-bot"
    });
    assert_eq!(event["filename"], denied.to_str().unwrap());
    assert_eq!(event["verdict"], "deny");
    assert_eq!(event["rule"], format!("cli:deny-exec:{}", denied.display()));
}

#[test]
fn denial_reaches_grandchildren() {
    let dir = TestDir::new("deny-grandchild");
    let denied = dir.probe_copy("denied-tool");
    let marker = dir.join("marker");
    let daemon = Daemon::start(&dir, &[Rule::DenyExec(&denied)]);
    let probe = probe_bin();
    let probe = probe.to_str().unwrap();

    // agent -> probe spawn -> probe spawn -> denied-tool
    let agent = daemon.agent(
        "deny-bot",
        &probe_bin(),
        &[
            "spawn",
            probe,
            "spawn",
            denied.to_str().unwrap(),
            "touch",
            marker.to_str().unwrap(),
        ],
    );
    let (status, out) = Spawned::start(agent).finish();
    assert_eq!(fate(status), "exit:0", "output: {out}");
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("child=")).collect();
    // First line: the grandchild's report on the denied exec; second: the child's exit.
    let expected = match expected_backend() {
        Backend::Lsm => "child=spawn-errno:1",
        Backend::Tracepoint => "child=signal:9",
    };
    assert_eq!(lines, [expected, "child=exit:0"], "output: {out}");
    assert!(!marker.exists(), "the denied program must not have run");
}

#[test]
fn the_same_exec_outside_the_agent_tree_runs() {
    let dir = TestDir::new("deny-untracked");
    let denied = dir.probe_copy("denied-tool");
    let marker = dir.join("marker");
    let daemon = Daemon::start(&dir, &[Rule::DenyExec(&denied)]);

    let status = std::process::Command::new(&denied)
        .args(["touch", marker.to_str().unwrap()])
        .status()
        .expect("run the denied binary outside any agent");
    assert!(status.success(), "untracked exec must succeed: {status}");
    assert!(marker.exists(), "the untracked program must have run");

    // And the daemon recorded nothing for it: only agents' execs are events.
    let events = daemon.json(&["events", "--json"]);
    assert_eq!(events.as_array().map(Vec::len), Some(0), "{events}");
}

/// Scenario 31: an execve from a thread that is not the thread-group leader is judged like
/// any other: refused, and recorded with the rule and the agent.
#[test]
fn scenario_31_a_non_leader_thread_exec_of_a_denied_binary_is_refused() {
    let dir = TestDir::new("deny-thread");
    let denied = dir.probe_copy("denied-tool");
    let marker = dir.join("marker");
    let daemon = Daemon::start(&dir, &[Rule::DenyExec(&denied)]);

    assert_exec_refused(
        &daemon,
        "thread-bot",
        &[
            "thread-exec",
            denied.to_str().unwrap(),
            "touch",
            marker.to_str().unwrap(),
        ],
        &marker,
    );
    let row = daemon.wait_denied_exec(&denied, "the refused thread exec", |_| true);
    assert_eq!(row["agent"], "thread-bot", "{row:#}");
}
