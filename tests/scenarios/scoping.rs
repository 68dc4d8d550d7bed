//! Who is an agent: trees started by `interceptor run`, configured uids, configured cgroups
//! (and cgroups below them), through double forks and cgroup moves (DESIGN §7 scenarios 16
//! and 32). Everyone else is untouched.

use std::{os::unix::process::CommandExt as _, process::Command};

use interceptor_integration::{
    Backend, Daemon, Rule, Spawned, TestCgroup, TestDir, expected_backend, fate, in_cgroup,
    probe_bin, probe_value,
};

/// The outcome of spawning the denied binary directly, for an agent on this backend.
fn refused_spawn(mut cmd: Command) -> String {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    match cmd.status() {
        Ok(status) => fate(status),
        Err(e) => format!("spawn-errno:{}", e.raw_os_error().unwrap_or(-1)),
    }
}

fn expected_refusal() -> &'static str {
    match expected_backend() {
        Backend::Lsm => "spawn-errno:1",
        Backend::Tracepoint => "signal:9",
    }
}

#[test]
fn agents_by_uid() {
    let dir = TestDir::new("scope-uid");
    let denied = dir.probe_copy("denied-tool");
    let shared = dir.join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let daemon = Daemon::start_with(
        &dir,
        &[Rule::DenyExec(&denied)],
        &["--agent-uid", "4242=uid-bot"],
    );

    let marker = shared.join("agent-marker");
    let mut agent = Command::new(&denied);
    agent
        .args(["touch", marker.to_str().unwrap()])
        .uid(4242)
        .gid(4242);
    assert_eq!(refused_spawn(agent), expected_refusal());
    assert!(!marker.exists());
    let event = daemon.wait_event("the uid agent's denied exec", |e| {
        e["agent"] == "uid-bot" && e["denied"] == true
    });
    assert_eq!(event["uid"], 4242);

    let other = shared.join("other-marker");
    let status = Command::new(&denied)
        .args(["touch", other.to_str().unwrap()])
        .uid(4243)
        .gid(4243)
        .status()
        .unwrap();
    assert!(status.success(), "another uid is not an agent");
    assert!(other.exists());
}

#[test]
fn agents_by_cgroup_and_below_and_scenario_32_moving_out() {
    let dir = TestDir::new("scope-cgroup");
    let denied = dir.probe_copy("denied-tool");
    let cgroup = TestCgroup::new("agents");
    let inner = cgroup.child("inner");
    let scope = format!("{}=cg-bot", cgroup.path.display());
    let daemon = Daemon::start_with(
        &dir,
        &[Rule::DenyExec(&denied)],
        &["--agent-cgroup", &scope],
    );
    let marker = dir.join("marker");

    for place in [&cgroup.path, &inner] {
        let mut agent = Command::new(&denied);
        agent.args(["touch", marker.to_str().unwrap()]);
        in_cgroup(&mut agent, place);
        assert_eq!(
            refused_spawn(agent),
            expected_refusal(),
            "in {}",
            place.display()
        );
    }
    assert!(!marker.exists());
    daemon.wait_event("the cgroup agent's denied exec", |e| {
        e["agent"] == "cg-bot" && e["denied"] == true
    });

    // Scenario 32: the agent moves itself out of the cgroup, then execs: still an agent.
    let root_procs = cgroup.path.parent().unwrap().join("cgroup.procs");
    let mut mover = Command::new(probe_bin());
    mover.args([
        "cgroup-move",
        root_procs.to_str().unwrap(),
        denied.to_str().unwrap(),
        "touch",
        marker.to_str().unwrap(),
    ]);
    in_cgroup(&mut mover, &cgroup.path);
    let (status, out) = Spawned::start(mover).finish();
    match expected_backend() {
        Backend::Lsm => assert_eq!(probe_value(&out, "exec-errno"), Some("1"), "{out}"),
        Backend::Tracepoint => assert_eq!(fate(status), "signal:9", "{out}"),
    }
    assert!(!marker.exists());

    // Outside the cgroup nothing changes.
    let status = Command::new(&denied)
        .args(["touch", marker.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(marker.exists());
}

#[test]
fn scenario_16_double_fork_and_setsid_stay_tracked() {
    let dir = TestDir::new("double-fork");
    let denied = dir.probe_copy("denied-tool");
    let marker = dir.join("marker");
    let daemon = Daemon::start(&dir, &[Rule::DenyExec(&denied)]);
    let agent = daemon.agent(
        "fork-bot",
        &probe_bin(),
        &[
            "double-fork",
            denied.to_str().unwrap(),
            "touch",
            marker.to_str().unwrap(),
        ],
    );
    // finish() reads stdout to its end: the reparented grandchild holds it until it is gone.
    let (status, out) = Spawned::start(agent).finish();
    assert_eq!(fate(status), "exit:0");
    if expected_backend() == Backend::Lsm {
        assert_eq!(probe_value(&out, "exec-errno"), Some("1"), "{out}");
    }
    daemon.wait_event("the grandchild's denied exec", |e| {
        e["agent"] == "fork-bot" && e["denied"] == true
    });
    assert!(!marker.exists());
}
