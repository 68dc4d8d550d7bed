//! Requests nobody answers: the rule's `on_timeout` applies at the deadline (deny kills the
//! held task, allow resumes it), the audit log says so, and a late answer is refused as
//! expired and recorded. A held task killed by someone else cancels its request.

use std::time::{Duration, Instant};

use interceptor_integration::{Daemon, Spawned, TestDir, approval_steps, fate, proc_state};

fn ask_policy(dir: &TestDir, binary: &std::path::Path, on_timeout: &str) {
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            r#"version = 1

[[rule]]
name = "slow-review"
operation = "exec"
binary = "{}"
action = "ask"
timeout = "2s"
on_timeout = "{on_timeout}"
controls = ["SOC2:CC6.1"]
"#,
            binary.display()
        ),
    )
    .unwrap();
}

/// Starts the agent on the held binary; returns it and its request id once listed.
fn held(daemon: &Daemon, binary: &std::path::Path, marker: &std::path::Path) -> (Spawned, u64) {
    let agent =
        Spawned::start(daemon.agent("slow-bot", binary, &["touch", marker.to_str().unwrap()]));
    let request = daemon.wait_pending(agent.pid());
    assert_eq!(proc_state(agent.pid()), Some('T'), "held");
    (agent, request["id"].as_u64().expect("request id"))
}

#[test]
fn an_unanswered_request_is_denied_at_its_deadline_and_a_late_answer_is_refused() {
    let dir = TestDir::new("timeout-deny");
    let tool = dir.probe_copy("slow-tool");
    let marker = dir.join("marker");
    ask_policy(&dir, &tool, "deny");
    let daemon = Daemon::start(&dir, &[]);
    let started = Instant::now();
    let (agent, id) = held(&daemon, &tool, &marker);

    let (status, _) = agent.finish();
    let waited = started.elapsed();
    assert_eq!(fate(status), "signal:9", "on_timeout = deny kills the task");
    assert!(!marker.exists(), "the program never ran");
    assert!(
        waited >= Duration::from_secs(2),
        "killed at the deadline, not before: {waited:?}"
    );

    let late = daemon.cli(&["approvals", "approve", &id.to_string()]);
    let stderr = String::from_utf8_lossy(&late.stderr);
    assert!(!late.status.success(), "a late approval is refused");
    assert!(
        stderr.contains(&format!("request {id} is closed: expired")),
        "{stderr}"
    );

    let rows = daemon.approval_rows(id, 3);
    assert_eq!(
        approval_steps(&rows),
        ["requested", "expired", "rejected"],
        "{rows:#?}"
    );
    assert!(
        rows[2]["event"]["detail"]
            .as_str()
            .unwrap()
            .contains("late answer refused"),
        "{rows:#?}"
    );
    let decisions = daemon.audit_rows(&["--kind", "decision", "--rule", "slow-review"]);
    let last = decisions.last().expect("a closing decision");
    assert_eq!(last["decided_by"], "timeout", "{last:#}");
    assert_eq!(last["outcome"], "denied", "{last:#}");
}

#[test]
fn on_timeout_allow_resumes_the_task_after_recording_it() {
    let dir = TestDir::new("timeout-allow");
    let tool = dir.probe_copy("slow-tool");
    let marker = dir.join("marker");
    ask_policy(&dir, &tool, "allow");
    let daemon = Daemon::start(&dir, &[]);
    let (agent, id) = held(&daemon, &tool, &marker);

    let (status, _) = agent.finish();
    assert_eq!(fate(status), "exit:0", "on_timeout = allow lets it run");
    assert!(marker.exists(), "the program ran");
    let rows = daemon.approval_rows(id, 2);
    assert_eq!(approval_steps(&rows), ["requested", "expired"], "{rows:#?}");
    let decisions = daemon.audit_rows(&["--kind", "decision", "--rule", "slow-review"]);
    let last = decisions.last().expect("a closing decision");
    assert_eq!(
        (last["decided_by"].as_str(), last["outcome"].as_str()),
        (Some("timeout"), Some("allowed")),
        "{last:#}"
    );
}

#[test]
fn a_held_task_killed_by_someone_else_cancels_its_request() {
    let dir = TestDir::new("timeout-cancel");
    let tool = dir.probe_copy("slow-tool");
    let marker = dir.join("marker");
    ask_policy(&dir, &tool, "deny");
    let daemon = Daemon::start(&dir, &[]);
    let (agent, id) = held(&daemon, &tool, &marker);
    // SAFETY: SIGKILL to the held child this test started.
    assert_eq!(unsafe { libc::kill(agent.pid() as i32, libc::SIGKILL) }, 0);
    let (status, _) = agent.finish();
    assert_eq!(fate(status), "signal:9");

    let rows = daemon.approval_rows(id, 2);
    assert_eq!(
        approval_steps(&rows),
        ["requested", "cancelled"],
        "{rows:#?}"
    );
    let list = daemon.json(&["approvals", "list", "--json"]);
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");
    let late = daemon.cli(&["approvals", "deny", &id.to_string()]);
    assert!(
        String::from_utf8_lossy(&late.stderr).contains("cancelled"),
        "{}",
        String::from_utf8_lossy(&late.stderr)
    );
}
