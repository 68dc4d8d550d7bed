//! Scenario 22: the daemon is killed with SIGKILL while agents run. The kernel keeps
//! enforcing from its pins: held tasks stay held, agent operations that need the daemon are
//! refused, kernel-only decisions still apply, untracked processes are untouched. A new
//! daemon takes over the pins, gets the held task back as a pending request, and finds the
//! events the kernel recorded while it was gone.

use std::{process::Command, time::Duration};

use interceptor_integration::{
    Backend, Daemon, Rule, Spawned, TestDir, expected_backend, fate, probe_bin, probe_value,
    proc_state,
};

const HEARTBEAT_TIMEOUT_MS: u64 = 3000;

#[test]
fn scenario_22_daemon_killed_holds_survive_and_agents_fail_closed() {
    let dir = TestDir::new("restart");
    let held = dir.probe_copy("held-tool");
    let denied = dir.probe_copy("denied-tool");
    let gate = dir.join("gate");
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let mut daemon = Daemon::start_with(
        &dir,
        &[Rule::HoldExec(&held), Rule::DenyExec(&denied)],
        &["--heartbeat-timeout-ms", &HEARTBEAT_TIMEOUT_MS.to_string()],
    );

    // A: held while the daemon is alive.
    let marker_a = dir.join("a");
    let a = Spawned::start(daemon.agent("crash-bot", &held, &["touch", &path(&marker_a)]));
    daemon.wait_pending(a.pid());

    // Agents that act only once the daemon is gone.
    let waiting = |what: &std::path::Path, marker: &std::path::Path| {
        Spawned::start(daemon.agent(
            "crash-bot",
            &probe_bin(),
            &[
                "after",
                &path(&gate),
                "spawn",
                &path(what),
                "touch",
                &path(marker),
            ],
        ))
    };
    let (m_held, m_denied, m_plain) = (
        dir.join("b-held"),
        dir.join("b-denied"),
        dir.join("b-plain"),
    );
    let b_held = waiting(&held, &m_held);
    let b_denied = waiting(&denied, &m_denied);
    let b_plain = waiting(&probe_bin(), &m_plain);
    for b in [&b_held, &b_denied, &b_plain] {
        daemon.wait_event("the waiting agent's start", |e| {
            e["pid"] == b.pid() && e["agent"] == "crash-bot"
        });
    }

    daemon.kill9();
    std::thread::sleep(Duration::from_millis(HEARTBEAT_TIMEOUT_MS + 1500));
    assert_eq!(
        proc_state(a.pid()),
        Some('T'),
        "the held task stays held with no daemon"
    );
    std::fs::write(&gate, b"open").unwrap();

    let refused = match expected_backend() {
        Backend::Lsm => "spawn-errno:1",
        Backend::Tracepoint => "signal:9",
    };
    let (_, out) = b_held.finish();
    assert_eq!(
        probe_value(&out, "child"),
        Some(refused),
        "a hold needs the daemon: refused; {out}"
    );
    let (_, out) = b_denied.finish();
    assert_eq!(
        probe_value(&out, "child"),
        Some(refused),
        "deny needs no daemon; {out}"
    );
    let (_, out) = b_plain.finish();
    assert_eq!(
        probe_value(&out, "child"),
        Some("exit:0"),
        "allowed execs go on; {out}"
    );
    assert!(!m_held.exists() && !m_denied.exists() && m_plain.exists());

    let untracked = dir.join("untracked");
    let status = Command::new(&held)
        .args(["touch", &path(&untracked)])
        .status()
        .unwrap();
    assert!(
        status.success() && untracked.exists(),
        "untracked processes are never held"
    );
    assert_eq!(proc_state(a.pid()), Some('T'));

    daemon.restart();
    let request = daemon.wait_pending(a.pid());
    assert_eq!(
        request["agent"], "crash-bot",
        "agent names survive in the kernel: {request}"
    );
    assert_eq!(request["filename"], path(&held));
    let down = daemon.wait_event("an exec refused while the daemon was down", |e| {
        e["daemon_down"] == true && e["agent"] == "crash-bot"
    });
    assert_eq!(down["denied"], true, "{down}");

    daemon.json(&["approvals", "approve", &request["id"].to_string(), "--json"]);
    assert_eq!(fate(a.finish().0), "exit:0");
    assert!(marker_a.exists(), "the re-adopted hold ran after approval");
}
