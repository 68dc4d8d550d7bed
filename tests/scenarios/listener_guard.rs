//! No self-approval (DESIGN §5): agents cannot connect to the daemon's HTTP listener, which
//! serves the review page and Slack's interactivity endpoint. The cgroup connect4/connect6
//! programs enforce it on both backends, so the host (tracepoint) and the VM (lsm) assert
//! the same outcome: EPERM for agents, by every route to the port, and an audit row.

use std::{os::unix::process::CommandExt as _, process::Command};

use interceptor_integration::{Daemon, Spawned, TestDir, probe_bin, probe_value};
use serde_json::Value;

const EPERM: &str = "errno:1";
const ECONNREFUSED: &str = "errno:111";

/// Runs the probe with `args` and returns everything it printed.
fn probe(cmd: Command) -> String {
    Spawned::start(cmd).finish().1
}

fn value<'a>(out: &'a str, key: &str) -> &'a str {
    probe_value(out, key).unwrap_or_else(|| panic!("no {key}= in {out:?}"))
}

/// `interceptor-probe connect ADDR [PATH]` outside any agent.
fn untracked_connect(args: &[&str]) -> String {
    let mut cmd = Command::new(probe_bin());
    cmd.arg("connect").args(args);
    probe(cmd)
}

/// The same, as the agent `guard-bot` (a tree started by `interceptor run`).
fn agent_connect(daemon: &Daemon, args: &[&str]) -> String {
    let mut full = vec!["connect"];
    full.extend_from_slice(args);
    probe(daemon.agent("guard-bot", &probe_bin(), &full))
}

fn counter(daemon: &Daemon, name: &str) -> u64 {
    let status = daemon.json(&["status", "--json"]);
    let found = status["counters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c[0] == name)
        .cloned();
    found.unwrap_or_else(|| panic!("no counter {name}: {status}"))[1]
        .as_u64()
        .unwrap()
}

/// The HTTP listener's port, from `status`.
fn listener_port(daemon: &Daemon) -> u16 {
    let status = daemon.json(&["status", "--json"]);
    let addr: std::net::SocketAddr = status["http"]
        .as_str()
        .unwrap_or_else(|| panic!("the daemon listens: {status}"))
        .parse()
        .expect("status names IP:PORT");
    assert!(addr.ip().is_loopback(), "{addr}");
    addr.port()
}

#[test]
fn agents_cannot_connect_to_the_approval_listener() {
    let dir = TestDir::new("listener-guard");
    // The harness listens on 127.0.0.1:<free port>; uid 4250 is an agent too.
    let daemon = Daemon::start_with(&dir, &[], &["--agent-uid", "4250=uid-bot"]);
    let port = listener_port(&daemon);
    let v4 = format!("127.0.0.1:{port}");
    let alias = format!("127.0.0.2:{port}");
    let mapped = format!("[::ffff:127.0.0.1]:{port}");
    let v6 = format!("[::1]:{port}");

    // Outside every agent the listener answers, over IPv4 and through an IPv6 socket.
    for addr in [&v4, &mapped] {
        let out = untracked_connect(&[addr, "/healthz"]);
        assert_eq!(value(&out, "connect"), "ok", "{addr}: {out}");
        assert_eq!(value(&out, "http"), "200", "{addr}: {out}");
    }
    // Nothing listens on these: an ordinary process is refused by the peer, not by us.
    for addr in [&alias, &v6] {
        assert_eq!(
            value(&untracked_connect(&[addr]), "connect"),
            ECONNREFUSED,
            "{addr}"
        );
    }

    // An agent is refused by every route to the port: the address it listens on, another
    // loopback alias, IPv4-mapped IPv6, and ::1.
    let mut agent_pids = Vec::new();
    for addr in [&v4, &alias, &mapped, &v6] {
        let agent = Spawned::start(daemon.agent("guard-bot", &probe_bin(), &["connect", addr]));
        agent_pids.push(agent.pid());
        let out = agent.finish().1;
        assert_eq!(value(&out, "connect"), EPERM, "{addr}: {out}");
    }
    // ... and so are its descendants.
    let out = probe(daemon.agent(
        "guard-bot",
        &probe_bin(),
        &["spawn", probe_bin().to_str().unwrap(), "connect", &v4],
    ));
    assert_eq!(value(&out, "connect"), EPERM, "{out}");
    // ... and processes of an agent uid.
    let mut by_uid = Command::new(dir.probe_copy("uid-probe"));
    by_uid.args(["connect", &v4]).uid(4250).gid(4250);
    assert_eq!(value(&probe(by_uid), "connect"), EPERM);

    // Other endpoints stay reachable for agents.
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other_addr = other.local_addr().unwrap().to_string();
    assert_eq!(
        value(&agent_connect(&daemon, &[&other_addr]), "connect"),
        "ok"
    );

    assert!(counter(&daemon, "connect_refused") >= 6);

    // Every refusal is audited with the agent and the address it tried.
    let rows = |target: &str, pid: u32| {
        let target = target.to_string();
        daemon.wait_audit(
            &format!("a guard row for pid {pid} connecting to {target}"),
            &["--kind", "guard"],
            move |r: &Value| r["pid"] == pid && r["path"] == target.as_str(),
        )
    };
    for (addr, pid) in [&v4, &alias, &mapped, &v6].into_iter().zip(&agent_pids) {
        let row = rows(addr, *pid);
        assert_eq!(row["agent"], "guard-bot", "{row}");
        assert_eq!(row["outcome"], "denied", "{row}");
        assert_eq!(row["decided_by"], "kernel", "{row}");
        assert_eq!(row["rule"], "builtin:approval-listener", "{row}");
        let detail = row["event"]["detail"].as_str().unwrap();
        assert!(
            detail.contains(&format!("approval listener {addr}")),
            "{row}"
        );
    }
    let guard_rows = daemon.audit_rows(&["--kind", "guard"]);
    assert!(
        guard_rows.iter().any(|r| r["agent"] == "uid-bot"),
        "{guard_rows:?}"
    );
    // The untracked connects left no row.
    assert!(
        guard_rows
            .iter()
            .all(|r| r["agent"] == "guard-bot" || r["agent"] == "uid-bot"),
        "{guard_rows:?}"
    );
}

#[test]
fn a_restarted_daemon_guards_its_new_listener_and_releases_the_old_port() {
    let dir = TestDir::new("listener-guard-restart");
    let mut daemon = Daemon::start(&dir, &[]);
    let first = listener_port(&daemon);
    daemon.kill9();
    daemon.restart();
    let second = listener_port(&daemon);

    let v4 = format!("127.0.0.1:{second}");
    assert_eq!(value(&agent_connect(&daemon, &[&v4]), "connect"), EPERM);
    let out = untracked_connect(&[&v4, "/healthz"]);
    assert_eq!(value(&out, "http"), "200", "{out}");
    // The first listener's port is no longer guarded: nothing listens there any more.
    // (The harness asks for any free port; the kernel may hand out the same one again.)
    if first != second {
        let old = format!("127.0.0.1:{first}");
        assert_eq!(
            value(&agent_connect(&daemon, &[&old]), "connect"),
            ECONNREFUSED
        );
    }
}
