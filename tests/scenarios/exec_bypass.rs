//! Exec bypass attempts (DESIGN §7 scenarios 2-5): other names for a denied binary, and
//! binaries with no name at all.

use interceptor_integration::{
    Backend, Daemon, Rule, Spawned, TestDir, expected_backend, fate, probe_bin, probe_value,
    proc_state,
};

/// Runs `agent` and checks the exec of the denied binary was refused for this backend.
fn assert_refused(daemon: &Daemon, args: &[&str], marker: &std::path::Path) {
    let (status, out) = Spawned::start(daemon.agent("bypass-bot", &probe_bin(), args)).finish();
    match expected_backend() {
        Backend::Lsm => {
            assert_eq!(
                probe_value(&out, "exec-errno"),
                Some("1"),
                "EPERM expected; output: {out}"
            );
            assert_eq!(fate(status), "exit:1");
        }
        Backend::Tracepoint => assert_eq!(fate(status), "signal:9", "output: {out}"),
    }
    assert!(!marker.exists(), "the denied program must not have run");
}

#[test]
fn scenario_02_symlink_to_a_denied_binary() {
    let dir = TestDir::new("symlink");
    let denied = dir.probe_copy("denied-tool");
    let link = dir.join("innocent-name");
    std::os::unix::fs::symlink(&denied, &link).unwrap();
    let marker = dir.join("marker");
    let daemon = Daemon::start(&dir, &[Rule::DenyExec(&denied)]);
    assert_refused(
        &daemon,
        &[
            "exec",
            link.to_str().unwrap(),
            "touch",
            marker.to_str().unwrap(),
        ],
        &marker,
    );
}

#[test]
fn scenario_03_hardlink_to_a_denied_binary() {
    let dir = TestDir::new("hardlink");
    let denied = dir.probe_copy("denied-tool");
    let link = dir.join("other-name");
    std::fs::hard_link(&denied, &link).unwrap();
    let marker = dir.join("marker");
    let daemon = Daemon::start(&dir, &[Rule::DenyExec(&denied)]);
    assert_refused(
        &daemon,
        &[
            "exec",
            link.to_str().unwrap(),
            "touch",
            marker.to_str().unwrap(),
        ],
        &marker,
    );
}

/// Starts an agent whose exec of a nameless binary must be held; returns it and its request.
fn held_nameless(daemon: &Daemon, args: &[&str], marker: &std::path::Path) -> (Spawned, u64) {
    let agent = Spawned::start(daemon.agent("nameless-bot", &probe_bin(), args));
    let request = daemon.wait_pending(agent.pid());
    assert_eq!(request["rule"], "builtin:unlinked-binary", "{request}");
    assert_eq!(proc_state(agent.pid()), Some('T'));
    assert!(!marker.exists(), "a held program must not have run");
    (agent, request["id"].as_u64().unwrap())
}

#[test]
fn scenario_04_memfd_exec_is_held_then_approved() {
    let dir = TestDir::new("memfd");
    let marker = dir.join("marker");
    let daemon = Daemon::start(&dir, &[]);
    let (agent, id) = held_nameless(
        &daemon,
        &["memfd-exec", "touch", marker.to_str().unwrap()],
        &marker,
    );
    daemon.json(&["approvals", "approve", &id.to_string(), "--json"]);
    assert_eq!(fate(agent.finish().0), "exit:0");
    assert!(marker.exists(), "approved: it ran");
}

#[test]
fn scenario_05_unlinked_binary_exec_is_held_then_denied() {
    let dir = TestDir::new("unlinked");
    let marker = dir.join("marker");
    let daemon = Daemon::start(&dir, &[]);
    let args = [
        "unlinked-exec",
        dir.path.to_str().unwrap(),
        "touch",
        marker.to_str().unwrap(),
    ];
    let (agent, id) = held_nameless(&daemon, &args, &marker);
    daemon.json(&["approvals", "deny", &id.to_string(), "--json"]);
    assert_eq!(fate(agent.finish().0), "signal:9");
    assert!(!marker.exists());
}
