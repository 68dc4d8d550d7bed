//! Inline test cases (`[[test]]`): an operation, the agent doing it, and the decision the
//! policy must take. `expect` is the enforced action; `expect_shadow` the would-be action
//! of a stricter `monitor` rule (shadow mode). `interceptor policy test` runs them, and so does `cargo test` for
//! every shipped policy.

use serde::Serialize;

use super::{Access, AccessMode, Action, Decision, ExecContext, OpenContext, Policy};

/// Where a test's bare command is taken to live when it gives no `binary`: tests must not
/// depend on what the host has installed.
pub const TEST_BIN_DIR: &str = "/usr/bin";

/// The binary a test's bare command stands for.
pub(crate) fn test_binary(command: &str) -> String {
    if command.starts_with('/') {
        command.to_string()
    } else {
        format!("{TEST_BIN_DIR}/{command}")
    }
}

/// The operation a test case performs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TestOperation {
    Exec {
        /// The program as the kernel resolves it.
        binary: String,
        argv: Vec<String>,
        cwd: Option<String>,
        parent: Option<String>,
        env: Vec<String>,
    },
    Open {
        /// May start with `~/` (the agent's home).
        path: String,
        access: Access,
    },
}

/// One `[[test]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestCase {
    pub name: String,
    pub agent: Option<String>,
    pub uid: Option<u32>,
    pub operation: TestOperation,
    /// The enforced action.
    pub expect: Action,
    /// The would-be action of the strictest matching `monitor` rule, which must be stricter
    /// than `expect` ([`Decision::shadow`]); `None`: not checked.
    pub expect_shadow: Option<Action>,
    /// The enforced rule that must win.
    pub expect_rule: Option<String>,
    /// Exactly the rules that must match, in any order.
    pub expect_matched: Option<Vec<String>>,
}

/// The home a test agent gets when the policy declares none: fixed, so tests do not
/// depend on the host's /etc/passwd.
pub const TEST_HOME: &str = "/home/agent";

/// The outcome of one test case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub name: String,
    pub passed: bool,
    /// What was wrong, when it failed.
    pub failure: Option<String>,
    pub decision: Decision,
}

impl TestCase {
    /// The operation as the engine sees it.
    pub fn decide(&self, policy: &Policy) -> Decision {
        let home = self
            .agent
            .as_deref()
            .and_then(|a| policy.agent(a))
            .and_then(|a| a.home.clone())
            .unwrap_or_else(|| TEST_HOME.to_string());
        match &self.operation {
            TestOperation::Exec {
                binary,
                argv,
                cwd,
                parent,
                env,
            } => policy.evaluate_exec(&ExecContext {
                agent: self.agent.clone(),
                uid: self.uid,
                binary: binary.clone(),
                argv: argv.clone(),
                cwd: Some(cwd.clone().unwrap_or_else(|| home.clone())),
                parent: parent.clone(),
                env_keys: Some(env.clone()),
                home: Some(home),
            }),
            TestOperation::Open { path, access } => {
                let path = match path.strip_prefix("~/") {
                    Some(rest) => format!("{}/{rest}", home.trim_end_matches('/')),
                    None => path.clone(),
                };
                policy.evaluate_open(&OpenContext {
                    agent: self.agent.clone(),
                    uid: self.uid,
                    path,
                    access: match access {
                        Access::Read => AccessMode::READ,
                        Access::Write => AccessMode::WRITE,
                        Access::Any => AccessMode {
                            read: true,
                            write: true,
                        },
                    },
                    home: Some(home),
                })
            }
        }
    }

    /// Runs the case against `policy`.
    pub fn run(&self, policy: &Policy) -> CaseResult {
        let decision = self.decide(policy);
        let mut problems = Vec::new();
        if decision.action != self.expect {
            problems.push(format!("expected {}, got {}", self.expect, decision.action));
        }
        if let Some(want) = self.expect_shadow {
            match &decision.shadow {
                Some(shadow) if shadow.action == want => {}
                Some(shadow) => problems.push(format!(
                    "expected a would-be {want} (monitor mode), got would-be {} by rule {}",
                    shadow.action, shadow.winner.name
                )),
                None => problems.push(format!(
                    "expected a would-be {want} (monitor mode), but no monitor rule stricter than {} matched",
                    decision.action
                )),
            }
        }
        if let Some(rule) = &self.expect_rule {
            let got = decision.winner.as_ref().map(|w| w.name.as_str());
            if got != Some(rule.as_str()) {
                problems.push(format!(
                    "expected rule {rule} to win, got {}",
                    got.unwrap_or("the default")
                ));
            }
        }
        if let Some(expected) = &self.expect_matched {
            let mut got: Vec<&str> = decision.matched.iter().map(|m| m.name.as_str()).collect();
            let mut want: Vec<&str> = expected.iter().map(String::as_str).collect();
            got.sort_unstable();
            want.sort_unstable();
            if got != want {
                problems.push(format!(
                    "expected matches [{}], got [{}]",
                    want.join(", "),
                    got.join(", ")
                ));
            }
        }
        CaseResult {
            name: self.name.clone(),
            passed: problems.is_empty(),
            failure: (!problems.is_empty()).then(|| problems.join("; ")),
            decision,
        }
    }
}

impl Policy {
    /// Runs every inline test case, in file order.
    pub fn run_tests(&self) -> Vec<CaseResult> {
        self.tests.iter().map(|t| t.run(self)).collect()
    }
}
