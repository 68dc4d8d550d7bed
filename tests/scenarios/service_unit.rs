//! The shipped systemd unit (packaging/interceptor.service) leaves the daemon only the
//! capabilities in its `CapabilityBoundingSet=`, with `NoNewPrivileges=yes`. These tests
//! start the daemon exactly so confined and check it still does its whole job on agents of
//! another uid: loads its programs, reads their argv and environment, holds, approves,
//! kills on denial and refuses denied execs.

use std::{os::unix::process::CommandExt as _, process::Command};

use interceptor_integration::{
    Daemon, Rule, Spawned, TestDir, expected_refusal, fate, refused_spawn,
};

const UNIT: &str = include_str!("../../packaging/interceptor.service");

/// The capability numbers of linux/capability.h that the unit may name.
const CAPS: &[(&str, u32)] = &[
    ("CAP_CHOWN", 0),
    ("CAP_DAC_OVERRIDE", 1),
    ("CAP_DAC_READ_SEARCH", 2),
    ("CAP_FOWNER", 3),
    ("CAP_KILL", 5),
    ("CAP_SETUID", 7),
    ("CAP_NET_BIND_SERVICE", 10),
    ("CAP_NET_ADMIN", 12),
    ("CAP_IPC_LOCK", 14),
    ("CAP_SYS_PTRACE", 19),
    ("CAP_SYS_ADMIN", 21),
    ("CAP_SYS_RESOURCE", 24),
    ("CAP_AUDIT_WRITE", 29),
    ("CAP_PERFMON", 38),
    ("CAP_BPF", 39),
];

/// The values of every `KEY=` line of the unit's [Service] section, in order.
fn directive<'a>(key: &str) -> Vec<&'a str> {
    UNIT.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .map(str::trim)
        .collect()
}

fn bounding_set() -> Vec<u32> {
    let lines = directive("CapabilityBoundingSet");
    assert_eq!(lines.len(), 1, "one CapabilityBoundingSet= line: {lines:?}");
    lines[0]
        .split_whitespace()
        .map(|name| {
            CAPS.iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("{name} is not in this test's capability table"))
                .1
        })
        .collect()
}

/// `CapBnd:` and `NoNewPrivs:` of a process.
fn confinement(pid: u32) -> (u64, u32) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
            .trim()
            .to_string()
    };
    (
        u64::from_str_radix(&field("CapBnd:"), 16).unwrap(),
        field("NoNewPrivs:").parse().unwrap(),
    )
}

#[test]
fn the_units_capability_set_is_enough_for_agents_of_another_uid() {
    assert_eq!(directive("NoNewPrivileges"), ["yes"]);
    let caps = bounding_set();
    assert!(
        !caps.contains(&21) && !caps.contains(&1),
        "neither CAP_SYS_ADMIN nor CAP_DAC_OVERRIDE: {caps:?}"
    );
    let dir = TestDir::new("unit-caps");
    let held = dir.probe_copy("held-tool");
    let denied = dir.probe_copy("denied-tool");
    let daemon = Daemon::start_confined(
        &dir,
        &[Rule::HoldExec(&held), Rule::DenyExec(&denied)],
        &["--agent-uid", "4244=confined-bot"],
        &caps,
    );
    let mask = caps.iter().fold(0u64, |m, c| m | 1 << c);
    assert_eq!(
        confinement(daemon.pid()),
        (mask, 1),
        "the daemon runs with exactly the unit's bounding set and no new privileges"
    );

    let as_agent = |program: &std::path::Path, args: &[&str]| {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .uid(4244)
            .gid(4244)
            .env("DEPLOY_TARGET", "staging");
        cmd
    };
    // Held, shown with what only /proc of another uid tells (CAP_SYS_PTRACE), approved.
    let agent = Spawned::start(as_agent(&held, &["exit", "0"]));
    let request = daemon.wait_pending(agent.pid());
    assert_eq!(request["agent"], "confined-bot", "{request:#}");
    assert_eq!(request["uid"], 4244);
    assert_eq!(request["argv"][1], "exit", "{request:#}");
    assert!(
        request["env"].to_string().contains("DEPLOY_TARGET"),
        "the agent's environment is read: {request:#}"
    );
    daemon.json(&["approvals", "approve", &request["id"].to_string(), "--json"]);
    assert_eq!(fate(agent.finish().0), "exit:0");

    // Denied by a reviewer: killed (CAP_KILL across uids).
    let agent = Spawned::start(as_agent(&held, &["exit", "0"]));
    let request = daemon.wait_pending(agent.pid());
    daemon.json(&["approvals", "deny", &request["id"].to_string(), "--json"]);
    assert_eq!(fate(agent.finish().0), "signal:9");

    // Denied by the kernel.
    let refused = refused_spawn(as_agent(&denied, &["exit", "0"]));
    assert_eq!(refused, expected_refusal());
}
