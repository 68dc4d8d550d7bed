//! Exec bypass attempts (DESIGN §7 scenarios 2-6): other names for a denied binary, and
//! binaries with no name at all.

use interceptor_integration::{
    Backend, Daemon, LD_SO, Rule, Spawned, TestDir, assert_exec_refused, dynamic_true,
    expected_backend, fate, probe_bin, probe_value, proc_state,
};

#[test]
fn scenario_02_symlink_to_a_denied_binary() {
    let dir = TestDir::new("symlink");
    let denied = dir.probe_copy("denied-tool");
    let link = dir.join("innocent-name");
    std::os::unix::fs::symlink(&denied, &link).unwrap();
    let marker = dir.join("marker");
    let daemon = Daemon::start(&dir, &[Rule::DenyExec(&denied)]);
    assert_exec_refused(
        &daemon,
        "bypass-bot",
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
    assert_exec_refused(
        &daemon,
        "bypass-bot",
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
    let row = daemon.closed_as(id, "approved");
    assert_eq!(row["rule"], "builtin:unlinked-binary", "{row}");
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
    let row = daemon.closed_as(id, "denied");
    assert_eq!(row["rule"], "builtin:unlinked-binary", "{row}");
}

/// `ld.so /path/bin` starts a program without exec'ing its file: the loader maps it. On the
/// lsm backend the executable mapping is judged as an exec of the file. The tracepoint
/// backend has no mmap hook: the program runs, and `doctor` says so.
#[test]
fn scenario_06_ld_so_invocation_of_a_denied_binary() {
    let dir = TestDir::new("ldso-deny");
    let denied = dir.copy_exe(&dynamic_true(), "pg_dump");
    let daemon = Daemon::start(&dir, &[Rule::DenyExec(&denied)]);
    let (status, out) = Spawned::start(daemon.agent(
        "loader-bot",
        &probe_bin(),
        &["spawn", LD_SO, denied.to_str().unwrap()],
    ))
    .finish();
    match expected_backend() {
        Backend::Lsm => {
            // ld.so cannot map the program and gives up (its exit status for that is 127).
            assert_eq!(probe_value(&out, "child"), Some("exit:127"), "{out}");
            let event = daemon.wait_event("the refused mapping", |e| {
                e["mapped"] == true && e["kind"] == "exec_denied"
            });
            assert_eq!(event["filename"], denied.to_str().unwrap(), "{event}");
            assert_eq!(event["path"], denied.to_str().unwrap(), "{event}");
            let row = daemon.wait_denied_exec(&denied, "the refused mapping's decision", |_| true);
            assert_eq!(row["decided_by"], "kernel", "{row}");
        }
        Backend::Tracepoint => {
            assert_eq!(probe_value(&out, "child"), Some("exit:0"), "{out}");
        }
    }
    assert_eq!(fate(status), "exit:0", "{out}");
    // The loader itself, and a dynamic program that is not named, run as usual.
    let (_, out) = Spawned::start(daemon.agent(
        "loader-bot",
        &probe_bin(),
        &["spawn", LD_SO, dynamic_true().to_str().unwrap()],
    ))
    .finish();
    assert_eq!(probe_value(&out, "child"), Some("exit:0"), "{out}");
}

#[test]
fn scenario_06_ld_so_invocation_of_a_held_binary_waits_for_approval() {
    let dir = TestDir::new("ldso-hold");
    let held = dir.copy_exe(&dynamic_true(), "terraform");
    let daemon = Daemon::start(&dir, &[Rule::HoldExec(&held)]);
    let loader = Spawned::start(daemon.agent(
        "loader-bot",
        &probe_bin(),
        &["exec", LD_SO, held.to_str().unwrap()],
    ));
    match expected_backend() {
        Backend::Lsm => {
            let request = daemon.wait_pending(loader.pid());
            assert_eq!(request["mapped"], true, "{request}");
            assert_eq!(request["filename"], held.to_str().unwrap(), "{request}");
            assert_eq!(proc_state(loader.pid()), Some('T'));
            let id = request["id"].as_u64().unwrap();
            daemon.json(&["approvals", "approve", &id.to_string(), "--json"]);
            assert_eq!(fate(loader.finish().0), "exit:0");
            daemon.closed_as(id, "approved");
        }
        Backend::Tracepoint => assert_eq!(fate(loader.finish().0), "exit:0"),
    }
    // Exec'd directly, the same (dynamic) binary is held once, at its exec: the kernel's own
    // mapping of the program it is exec'ing is not a second hold.
    let direct = Spawned::start(daemon.agent("loader-bot", &held, &[]));
    let request = daemon.wait_pending(direct.pid());
    assert_eq!(request["mapped"], false, "{request}");
    // Reviewers see where the command came from: its ancestors, parent first, up to init.
    let parents = request["parents"].as_array().expect("parent chain");
    assert_eq!(parents[0]["pid"], request["ppid"], "{request}");
    assert_eq!(parents.last().unwrap()["pid"], 1, "{request}");
    let id = request["id"].as_u64().unwrap().to_string();
    daemon.json(&["approvals", "approve", &id, "--json"]);
    assert_eq!(fate(direct.finish().0), "exit:0");
}
