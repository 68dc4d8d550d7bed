//! The daemon writing its audit log to PostgreSQL (DESIGN §6): the server `cargo xtask test`
//! starts from Debian's packages on 127.0.0.1 (`INTERCEPTOR_TEST_PG_URL`). Host only: the VM
//! has no server, and xtask says so when it leaves this binary out of tier 3.

use interceptor_integration::{Daemon, Spawned, TestDir, fate};

#[test]
fn agent_operations_reach_a_postgresql_audit_log_and_verify() {
    let url = std::env::var("INTERCEPTOR_TEST_PG_URL").expect(
        "INTERCEPTOR_TEST_PG_URL is not set: run this through `cargo xtask test`, which starts the server",
    );
    let dir = TestDir::new("audit-pg");
    let ok = dir.probe_copy("pg-report");
    let bad = dir.probe_copy("pg-wipe");
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            "version = 1\n\n[[rule]]\nname = \"pg-no-wipe\"\noperation = \"exec\"\nbinary = \"{}\"\naction = \"deny\"\ncontrols = [\"SOC2:CC6.1\"]\n",
            bad.display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start_with(&dir, &[], &["--audit-url", &url]);
    // The server outlives one daemon: this test's rows are those of its own agent.
    let agent = format!("pg-agent-{}", std::process::id());
    let run = |program| {
        Spawned::start(daemon.agent(&agent, program, &["exit", "0"]))
            .finish()
            .0
    };
    assert_eq!(fate(run(&ok)), "exit:0");
    assert_ne!(fate(run(&bad)), "exit:0", "the denied binary ran");

    let ok_path = ok.display().to_string();
    daemon.wait_audit(
        "the allowed exec in PostgreSQL",
        &["--agent", &agent, "--kind", "exec"],
        |r| r["event"]["filename"] == ok_path.as_str(),
    );
    let denied = daemon.wait_audit(
        "the deny in PostgreSQL",
        &["--agent", &agent, "--kind", "decision"],
        |r| r["rule"] == "pg-no-wipe",
    );
    assert_eq!(denied["outcome"], "denied", "{denied}");
    assert_eq!(denied["event"]["controls"][0], "SOC2:CC6.1");
    let verify = daemon.audit_cli(&["verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}
