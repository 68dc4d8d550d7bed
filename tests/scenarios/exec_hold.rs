//! Held execs: stopped before the first instruction, resumed by `approvals approve`, killed by
//! `approvals deny`; never resumed by a SIGCONT from inside the agent's tree (lsm backend).

use std::{
    io::{BufRead as _, BufReader},
    time::Duration,
};

use interceptor_integration::{
    Backend, Daemon, Rule, Spawned, TestDir, approval_steps, expected_backend, fate, probe_bin,
    probe_value, proc_state,
};

/// Starts `hold-bot` running the held binary (which would create `marker`); returns once the
/// daemon lists it, after checking it is stopped and has not run.
fn start_held(daemon: &Daemon, held: &std::path::Path, marker: &std::path::Path) -> (Spawned, u64) {
    let agent =
        Spawned::start(daemon.agent("hold-bot", held, &["touch", marker.to_str().unwrap()]));
    let request = daemon.wait_pending(agent.pid());
    assert_eq!(proc_state(agent.pid()), Some('T'), "a held exec is stopped");
    assert!(!marker.exists(), "a held program must not have run");
    assert_eq!(request["agent"], "hold-bot");
    assert_eq!(request["filename"], held.to_str().unwrap());
    assert_eq!(request["argv"][1], "touch", "{request}");
    (agent, request["id"].as_u64().expect("request id"))
}

/// The one row that closed request `id`: `want` (approved / denied), by `root` on the
/// control socket, under the hold rule of `held`.
fn closing_row(daemon: &Daemon, id: u64, want: &str, held: &std::path::Path) -> serde_json::Value {
    let row = daemon.closed_as(id, want);
    assert_eq!(row["approver"], "root", "{row}");
    assert_eq!(row["event"]["channel"], "cli", "{row}");
    assert_eq!(
        row["rule"],
        format!("cli:hold-exec:{}", held.display()),
        "{row}"
    );
    row
}

/// Scenario 1: a held exec runs once approved, with the approval on record.
#[test]
fn scenario_01_an_approved_exec_runs() {
    let dir = TestDir::new("hold-approve");
    let held = dir.probe_copy("held-tool");
    let marker = dir.join("marker");
    let daemon = Daemon::start(&dir, &[Rule::HoldExec(&held)]);
    let (agent, id) = start_held(&daemon, &held, &marker);

    // Still held a while later: nothing resumes it on its own.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(proc_state(agent.pid()), Some('T'));

    let decided = daemon.json(&["approvals", "approve", &id.to_string(), "--json"]);
    assert_eq!(decided["decision"], "approved");
    let (status, _) = agent.finish();
    assert_eq!(fate(status), "exit:0");
    assert!(marker.exists(), "the approved program ran");
    closing_row(&daemon, id, "approved", &held);

    let list = daemon.json(&["approvals", "list", "--json"]);
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(0),
        "decided requests leave the list: {list}"
    );
    let again = daemon.cli(&["approvals", "approve", &id.to_string()]);
    assert!(!again.status.success(), "a request is decided once");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains(&format!("request {id} is closed: approved by root")),
        "a second answer is told the first one: {stderr}"
    );
}

/// Scenario 1: a held exec that is denied is killed before its first instruction.
#[test]
fn scenario_01_a_denied_exec_is_killed() {
    let dir = TestDir::new("hold-deny");
    let held = dir.probe_copy("held-tool");
    let marker = dir.join("marker");
    let daemon = Daemon::start(&dir, &[Rule::HoldExec(&held)]);
    let (agent, id) = start_held(&daemon, &held, &marker);

    let decided = daemon.json(&["approvals", "deny", &id.to_string(), "--json"]);
    assert_eq!(decided["decision"], "denied");
    let (status, _) = agent.finish();
    assert_eq!(fate(status), "signal:9");
    assert!(!marker.exists(), "the denied program never ran");
    closing_row(&daemon, id, "denied", &held);
}

#[test]
fn an_agent_cannot_approve_its_own_hold() {
    let dir = TestDir::new("hold-self");
    let held = dir.probe_copy("held-tool");
    let marker = dir.join("marker");
    let daemon = Daemon::start(&dir, &[Rule::HoldExec(&held)]);
    let (agent, id) = start_held(&daemon, &held, &marker);

    // The agent's tree runs the real CLI against the real socket.
    let interceptor = interceptor_integration::interceptor_bin();
    let socket = daemon.socket.to_str().unwrap().to_string();
    let attempt = daemon
        .agent(
            "hold-bot",
            &interceptor,
            &["--socket", &socket, "approvals", "approve", &id.to_string()],
        )
        .output()
        .expect("run the CLI as an agent");
    assert!(!attempt.status.success(), "self-approval must be refused");
    let stderr = String::from_utf8_lossy(&attempt.stderr);
    assert!(
        stderr.contains("agents cannot list or decide approvals"),
        "{stderr}"
    );

    assert_eq!(proc_state(agent.pid()), Some('T'), "still held");
    assert!(!marker.exists());
    let list = daemon.json(&["approvals", "list", "--json"]);
    assert_eq!(list[0]["id"], id, "the request is still pending: {list}");
    daemon.json(&["approvals", "deny", &id.to_string(), "--json"]);
    assert_eq!(fate(agent.finish().0), "signal:9");
}

#[test]
fn scenario_20_sigcont_via_kill_from_a_tracked_sibling() {
    sigcont_from_a_tracked_sibling("kill");
}

#[test]
fn scenario_20_sigcont_via_killpg_from_a_tracked_sibling() {
    sigcont_from_a_tracked_sibling("killpg");
}

#[test]
fn scenario_20_sigcont_via_pidfd_from_a_tracked_sibling() {
    sigcont_from_a_tracked_sibling("pidfd");
}

fn sigcont_from_a_tracked_sibling(mode: &str) {
    let dir = TestDir::new("hold-sigcont");
    let held = dir.probe_copy("held-tool");
    let marker = dir.join("marker");
    let daemon = Daemon::start(&dir, &[Rule::HoldExec(&held)]);

    // The probe (tracked) spawns the held binary, waits until it is stopped, sends it SIGCONT.
    let mut agent = Spawned::start(daemon.agent(
        "hold-bot",
        &probe_bin(),
        &[
            "sigcont-held",
            mode,
            held.to_str().unwrap(),
            "touch",
            marker.to_str().unwrap(),
        ],
    ));
    let mut lines = BufReader::new(agent.child.stdout.take().expect("stdout"));
    let mut report = String::new();
    while probe_value(&report, "state-after").is_none() {
        let mut line = String::new();
        assert!(
            lines.read_line(&mut line).expect("read probe output") > 0,
            "probe ended early: {report}"
        );
        report.push_str(&line);
    }
    let child: u32 = probe_value(&report, "child-pid").unwrap().parse().unwrap();

    match expected_backend() {
        Backend::Lsm => {
            assert_eq!(
                probe_value(&report, "sigcont"),
                Some("errno:1"),
                "task_kill guard refuses: {report}"
            );
            assert_eq!(
                probe_value(&report, "state-after"),
                Some("T"),
                "still held: {report}"
            );
            assert!(!marker.exists());
            let request = daemon.wait_pending(child);
            daemon.json(&["approvals", "approve", &request["id"].to_string(), "--json"]);
            let mut rest = String::new();
            std::io::Read::read_to_string(&mut lines, &mut rest).unwrap();
            assert_eq!(probe_value(&rest, "child"), Some("exit:0"), "{rest}");
            assert!(marker.exists(), "ran after approval");
            daemon.closed_as(request["id"].as_u64().unwrap(), "approved");
            daemon.wait_counted("sigcont_blocked", 1);
        }
        Backend::Tracepoint => {
            // Documented weakness of the degraded backend (`interceptor status` says so):
            // without the task_kill guard a sibling's SIGCONT resumes the held task.
            assert_eq!(probe_value(&report, "sigcont"), Some("ok"), "{report}");
            assert_ne!(probe_value(&report, "state-after"), Some("T"), "{report}");
            assert!(
                daemon.states("NOT guaranteed: another process may resume a held task"),
                "the tracepoint backend must state this weakness"
            );
        }
    }
    let (status, _) = agent.finish();
    assert_eq!(fate(status), "exit:0");
}

/// Scenario 27: an approve and a deny sent at the same moment, five times: exactly one is
/// applied (the task runs or dies accordingly), the other is told the request is closed,
/// and the audit log closes the request once.
#[test]
fn scenario_27_concurrent_approve_and_deny_apply_exactly_one() {
    let dir = TestDir::new("hold-race");
    let held = dir.probe_copy("held-tool");
    let daemon = Daemon::start(&dir, &[Rule::HoldExec(&held)]);
    for round in 0..5 {
        let marker = dir.join(&format!("marker-{round}"));
        let (agent, id) = start_held(&daemon, &held, &marker);
        let id_arg = id.to_string();
        let start = std::sync::Barrier::new(2);
        let answer = |verb: &str| {
            start.wait();
            daemon.cli(&["approvals", verb, &id_arg])
        };
        let (approve, deny) = std::thread::scope(|s| {
            let a = s.spawn(|| answer("approve"));
            let d = s.spawn(|| answer("deny"));
            (a.join().unwrap(), d.join().unwrap())
        });
        assert_ne!(
            approve.status.success(),
            deny.status.success(),
            "exactly one answer applies: approve {approve:?}, deny {deny:?}"
        );
        let approved = approve.status.success();
        let loser = if approved { &deny } else { &approve };
        let told = String::from_utf8_lossy(&loser.stderr);
        assert!(
            told.contains(&format!("request {id} is closed")),
            "the other answer is refused: {told}"
        );
        let (status, _) = agent.finish();
        if approved {
            assert_eq!(fate(status), "exit:0");
            assert!(marker.exists(), "the approved program ran");
        } else {
            assert_eq!(fate(status), "signal:9");
            assert!(!marker.exists(), "the denied program never ran");
        }
        let rows = daemon.approval_rows(id, 2);
        let closings: Vec<&str> = approval_steps(&rows)
            .into_iter()
            .filter(|s| matches!(*s, "approved" | "denied"))
            .collect();
        let want = if approved { "approved" } else { "denied" };
        assert_eq!(closings, [want], "one closing row: {rows:#?}");
    }
}

/// Scenario 13: an exec approved with a grant lets the same exec through only while the
/// binary is the file that was approved: rewritten in place, the next exec is held and
/// asked about again.
#[test]
fn scenario_13_a_rewritten_binary_is_held_again_despite_a_grant() {
    let dir = TestDir::new("hold-swap");
    let tool = dir.probe_copy("deploy-tool");
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            r#"version = 1

[[rule]]
name = "deploys-ask"
operation = "exec"
binary = "{}"
action = "ask"
grant = {{ max_ttl = "30m", max_uses = 10, scope = "binary" }}
"#,
            tool.display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&dir, &[]);
    let run = |marker: &std::path::Path| {
        Spawned::start(daemon.agent("swap-bot", &tool, &["touch", marker.to_str().unwrap()]))
    };
    let first = dir.join("first");
    let agent = run(&first);
    let request = daemon.wait_pending(agent.pid());
    let id = request["id"].as_u64().unwrap().to_string();
    daemon.json(&[
        "approvals",
        "approve",
        &id,
        "--grant",
        "10m",
        "--uses",
        "10",
        "--json",
    ]);
    assert_eq!(fate(agent.finish().0), "exit:0");

    // The same file: the grant lets it through without asking.
    let granted = dir.join("granted");
    assert_eq!(fate(run(&granted).finish().0), "exit:0");
    assert!(granted.exists());

    // Rewritten in place (same inode, new change time): held again, asked again. (A file
    // renamed over the path is another inode, which the compiled rule does not name yet:
    // see "Known gaps" in docs/security-model.md.)
    std::thread::sleep(std::time::Duration::from_millis(20));
    let bytes = std::fs::read(&tool).unwrap();
    std::fs::write(&tool, bytes).unwrap();
    let marker = dir.join("rewritten");
    let agent = run(&marker);
    let request = daemon.wait_pending(agent.pid());
    assert_eq!(proc_state(agent.pid()), Some('T'), "held again");
    assert!(!marker.exists(), "it has not run");
    let id = request["id"].as_u64().unwrap().to_string();
    daemon.json(&["approvals", "deny", &id, "--json"]);
    assert_eq!(fate(agent.finish().0), "signal:9");
    assert!(!marker.exists(), "denied, never ran");
    let decisions = daemon.audit_rows(&["--kind", "decision", "--rule", "deploys-ask"]);
    let by_grant = decisions
        .iter()
        .filter(|d| d["decided_by"] == "grant")
        .count();
    assert_eq!(
        by_grant, 1,
        "only the unchanged file used the grant: {decisions:#?}"
    );
}

/// Scenario 13, swapped by name: an agent cannot rename another file over the binary a rule
/// names, move that binary away, or unlink it (lsm: EPERM, counted). The tracepoint backend
/// cannot refuse it: the swapped-in file runs under the defaults, as `status` says. A swap
/// by anyone else (a package upgrade) is named by the rule again after a reload.
#[test]
fn scenario_13_an_agent_cannot_swap_the_binary_a_rule_names() {
    let dir = TestDir::new("hold-rename");
    let tool = dir.probe_copy("deploy-tool");
    let impostor = dir.probe_copy("impostor");
    let daemon = Daemon::start(&dir, &[Rule::HoldExec(&tool)]);
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let probe = |args: &[&str], key: &str| {
        let (_, out) = Spawned::start(daemon.agent("swap-bot", &probe_bin(), args)).finish();
        probe_value(&out, key)
            .unwrap_or_else(|| panic!("no {key}= in {out}"))
            .to_string()
    };
    let inode =
        |p: &std::path::Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let named = inode(&tool);
    let moved = dir.join("moved-away");

    match expected_backend() {
        Backend::Lsm => {
            assert_eq!(
                probe(&["rename", &path(&impostor), &path(&tool)], "rename"),
                "errno:1"
            );
            assert_eq!(
                probe(&["rename", &path(&tool), &path(&moved)], "rename"),
                "errno:1"
            );
            assert_eq!(probe(&["unlink", &path(&tool)], "unlink"), "errno:1");
            assert_eq!(inode(&tool), named, "the rule's file is still there");
            assert!(!moved.exists());
            daemon.wait_counted("rule_file_guarded", 3);
            // Files no rule names are the agent's to move.
            let spare = dir.join("spare");
            assert_eq!(
                probe(&["rename", &path(&impostor), &path(&spare)], "rename"),
                "ok"
            );
            assert_eq!(probe(&["unlink", &path(&spare)], "unlink"), "ok");
        }
        Backend::Tracepoint => {
            assert_eq!(
                probe(&["rename", &path(&impostor), &path(&tool)], "rename"),
                "ok"
            );
            assert_ne!(inode(&tool), named);
            let marker = dir.join("swapped-ran");
            let (status, _) =
                Spawned::start(daemon.agent("swap-bot", &tool, &["touch", &path(&marker)]))
                    .finish();
            assert_eq!(fate(status), "exit:0", "the weaker outcome: not held");
            assert!(marker.exists());
            // Recorded as what it was: an exec under the defaults, no rule.
            let row = daemon.wait_audit("the swapped-in exec", &["--kind", "exec"], |r| {
                r["event"]["filename"] == path(&tool).as_str()
                    && r["event"]["process"]["argv"][2] == path(&marker).as_str()
            });
            assert!(row["rule"].is_null(), "{row}");
            assert!(daemon.states("NOT guaranteed: an agent can rename another file over"));
        }
    }

    // A swap outside any agent goes through; after a reload the rule names the new file.
    let upgrade = dir.probe_copy("deploy-tool.new");
    std::fs::rename(&upgrade, &tool).unwrap();
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("policy reloaded");
    let marker = dir.join("after-upgrade");
    let (agent, id) = start_held(&daemon, &tool, &marker);
    daemon.json(&["approvals", "deny", &id.to_string(), "--json"]);
    assert_eq!(fate(agent.finish().0), "signal:9");
    assert!(!marker.exists());
    closing_row(&daemon, id, "denied", &tool);
}
