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
    // The refusal made while nobody could write the log is counted in it.
    daemon.wait_counted("daemon_down_denied", 1);

    let id = request["id"].as_u64().unwrap();
    daemon.json(&["approvals", "approve", &id.to_string(), "--json"]);
    assert_eq!(fate(a.finish().0), "exit:0");
    assert!(marker_a.exists(), "the re-adopted hold ran after approval");
    daemon.closed_as(id, "approved");
}

/// A task held only for the policy to judge its argv, when the daemon died holding it, is
/// judged by the policy again by the next daemon: it runs (or dies) as the policy says,
/// without becoming a request for a human.
#[test]
fn a_hold_for_the_policy_left_by_a_killed_daemon_is_judged_by_the_policy_again() {
    let dir = TestDir::new("restart-policy-hold");
    let tool = dir.probe_copy("argv-tool");
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            "version = 1\n[[rule]]\nname = \"no-force\"\noperation = \"exec\"\nbinary = \"{}\"\nany_arg = \"--force\"\naction = \"deny\"\n",
            tool.display()
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start_with(&dir, &[], &["--heartbeat-timeout-ms", "60000"]);
    let gate = dir.join("gate");
    let (ran, forced) = (dir.join("ran"), dir.join("forced"));
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let waiting = |marker: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "after".to_string(),
            path(&gate),
            "spawn".into(),
            path(&tool),
            "touch".into(),
            path(marker),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let agent = Spawned::start(daemon.agent("argv-bot", &probe_bin(), &args));
        let pid = agent.pid();
        daemon.wait_event("the waiting agent's start", |e| e["pid"] == pid);
        agent
    };
    let plain = waiting(&ran, &[]);
    let force = waiting(&forced, &["--force"]);
    // Stopped, the daemon cannot judge: both execs are held by the kernel and wait.
    daemon.signal(libc::SIGSTOP);
    std::fs::write(&gate, b"go").unwrap();
    let held_children = |parent: u32| {
        std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok())
            .filter(|c| proc_state(*c) == Some('T'))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while held_children(plain.pid()) + held_children(force.pid()) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the execs were never held"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon.kill9();
    daemon.restart();

    let (_, out) = plain.finish();
    assert_eq!(probe_value(&out, "child"), Some("exit:0"), "{out}");
    assert!(ran.exists(), "the policy allows it: it ran");
    let (_, out) = force.finish();
    let refused = match expected_backend() {
        Backend::Lsm | Backend::Tracepoint => "signal:9",
    };
    assert_eq!(probe_value(&out, "child"), Some(refused), "{out}");
    assert!(!forced.exists());
    let list = daemon.json(&["approvals", "list", "--json"]);
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(0),
        "no human asked: {list}"
    );
    let denied = daemon.wait_audit(
        "the re-judged --force exec",
        &["--kind", "decision", "--rule", "no-force"],
        |r| r["outcome"] == "denied",
    );
    assert_eq!(denied["decided_by"], "policy", "{denied}");
}
