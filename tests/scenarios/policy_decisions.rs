//! Argv-level policy decided in userspace while the kernel holds the exec: the same binary
//! runs, asks a human, or dies before its first instruction depending on its arguments;
//! each exec is judged on its own (per command, not per session).

use interceptor_integration::{Daemon, Spawned, TestDir, fate, proc_state};

#[test]
fn the_policy_decides_each_exec_by_its_arguments() {
    let dir = TestDir::new("policy-argv");
    let tool = dir.probe_copy("deploy-tool");
    let tool_path = tool.to_str().unwrap();
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            r#"version = 1

[[rule]]
name = "prod-deploys-ask"
operation = "exec"
binary = "{tool_path}"
argv_regex = "prod"
action = "ask"
reason = "production changes need a human"
controls = ["SOC2:CC8.1"]

[[rule]]
name = "no-force"
operation = "exec"
binary = "{tool_path}"
any_arg = "--force"
action = "deny"
reason = "forced deploys are never allowed"
controls = ["SOC2:CC8.1"]
"#
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&dir, &[]);
    let marker = |name: &str| dir.join(name);

    // No matching argument: the kernel held it, the policy allowed it, it ran; no human asked.
    let staging = marker("staging");
    let run = |args: &[&str]| Spawned::start(daemon.agent("deploy-bot", &tool, args));
    let (status, _) = run(&["touch", staging.to_str().unwrap(), "staging"]).finish();
    assert_eq!(fate(status), "exit:0");
    assert!(staging.exists());

    // --force: denied by policy, killed before its first instruction.
    let forced = marker("forced");
    let (status, _) = run(&["touch", forced.to_str().unwrap(), "prod", "--force"]).finish();
    assert_eq!(fate(status), "signal:9", "deny wins over ask");
    assert!(!forced.exists());

    // prod: a human is asked, with the winning rule and its reason.
    let prod = marker("prod");
    let agent = run(&["touch", prod.to_str().unwrap(), "prod"]);
    let request = daemon.wait_pending(agent.pid());
    assert_eq!(request["rule"], "prod-deploys-ask", "{request}");
    assert_eq!(request["reason"], "production changes need a human");
    assert_eq!(proc_state(agent.pid()), Some('T'));
    assert!(!prod.exists());
    daemon.json(&["approvals", "approve", &request["id"].to_string(), "--json"]);
    assert_eq!(fate(agent.finish().0), "exit:0");
    assert!(prod.exists());

    let pending = daemon.json(&["approvals", "list", "--json"]);
    assert_eq!(
        pending.as_array().map(Vec::len),
        Some(0),
        "only the prod exec asked: {pending}"
    );
}
