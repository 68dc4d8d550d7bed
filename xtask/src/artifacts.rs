//! Static (musl) builds of the daemon, the probe, the bench workload and the integration
//! test executables.
//! Tier 2 runs them on the host and tier 3 packs the very same files into the VM, so a
//! difference between the tiers is the kernel's, not the build's.

use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::Workspace;
use crate::util::describe;

pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
const DAEMON_PACKAGE: &str = "interceptor";
const DAEMON_BIN: &str = "interceptor";
const TESTS_PACKAGE: &str = "interceptor-integration";
const PROBE_BIN: &str = "interceptor-probe";
const BENCH_BIN: &str = "interceptor-bench";
const DEMO_BIN: &str = "interceptor-demo";

/// A libtest executable and the short name it goes by (its cargo target name).
#[derive(Clone, Debug)]
pub struct TestExe {
    pub name: String,
    pub path: PathBuf,
}

#[derive(Clone, Debug)]
pub struct Artifacts {
    pub daemon: PathBuf,
    pub probe: PathBuf,
    pub tests: Vec<TestExe>,
}

/// One `compiler-artifact` message from cargo's JSON output.
struct Artifact {
    name: String,
    kinds: Vec<String>,
    test: bool,
    executable: Option<PathBuf>,
}

/// The static release daemon alone.
pub fn build_daemon(ws: &Workspace) -> Result<PathBuf> {
    find_bin(
        &cargo_json(ws, &["build", "-p", DAEMON_PACKAGE])?,
        DAEMON_BIN,
    )
    .with_context(|| {
        format!("cargo reported no `{DAEMON_BIN}` binary for package {DAEMON_PACKAGE}")
    })
}

pub fn build(ws: &Workspace) -> Result<Artifacts> {
    let daemon = build_daemon(ws)?;

    let test_artifacts = cargo_json(ws, &["test", "-p", TESTS_PACKAGE, "--no-run"])?;
    let mut tests: Vec<TestExe> = Vec::new();
    for a in test_artifacts.iter().filter(|a| a.test) {
        let Some(path) = a.executable.clone() else {
            continue;
        };
        // Integration tests go by their target name. Unit tests of a bin or lib get the
        // kind appended: a bin's target name would read like the bin itself, and names
        // must stay unique in the VM's /tests.
        let mut name = a.name.clone();
        if !a.kinds.iter().any(|k| k == "test") || tests.iter().any(|t| t.name == name) {
            name = format!("{name}-{}", a.kinds.join("-"));
        }
        tests.push(TestExe { name, path });
    }
    if tests.is_empty() {
        bail!("package {TESTS_PACKAGE} produced no test executables");
    }

    // `cargo test` builds the package's bins only when it has integration tests; ask
    // explicitly otherwise.
    let probe = match find_bin(&test_artifacts, PROBE_BIN) {
        Some(p) => p,
        None => find_bin(
            &cargo_json(ws, &["build", "-p", TESTS_PACKAGE, "--bins"])?,
            PROBE_BIN,
        )
        .with_context(|| {
            format!("cargo reported no `{PROBE_BIN}` binary for package {TESTS_PACKAGE}")
        })?,
    };
    Ok(Artifacts {
        daemon,
        probe,
        tests,
    })
}

/// What `cargo xtask demo` runs: the static daemon, the probe and the demo's driver.
pub struct DemoArtifacts {
    pub daemon: PathBuf,
    pub probe: PathBuf,
    pub demo: PathBuf,
}

pub fn build_demo(ws: &Workspace) -> Result<DemoArtifacts> {
    let daemon = build_daemon(ws)?;
    let bins = cargo_json(ws, &["build", "-p", TESTS_PACKAGE, "--bins"])?;
    let find = |name: &str| {
        find_bin(&bins, name).with_context(|| {
            format!("cargo reported no `{name}` binary for package {TESTS_PACKAGE}")
        })
    };
    Ok(DemoArtifacts {
        daemon,
        probe: find(PROBE_BIN)?,
        demo: find(DEMO_BIN)?,
    })
}

/// The static daemon and bench workload binary for `cargo xtask bench kernel`.
#[derive(Clone, Debug)]
pub struct BenchArtifacts {
    pub daemon: PathBuf,
    pub bench: PathBuf,
}

pub fn build_bench(ws: &Workspace) -> Result<BenchArtifacts> {
    let daemon = build_daemon(ws)?;
    let bench = find_bin(
        &cargo_json(ws, &["build", "-p", TESTS_PACKAGE, "--bin", BENCH_BIN])?,
        BENCH_BIN,
    )
    .with_context(|| {
        format!("cargo reported no `{BENCH_BIN}` binary for package {TESTS_PACKAGE}")
    })?;
    Ok(BenchArtifacts { daemon, bench })
}

/// What `cargo xtask bench approvals` runs: the daemon, the probe and the bench driver.
pub struct ApprovalBenchArtifacts {
    pub daemon: PathBuf,
    pub probe: PathBuf,
    pub bench: PathBuf,
}

pub fn build_approval_bench(ws: &Workspace) -> Result<ApprovalBenchArtifacts> {
    const APPROVAL_BENCH_BIN: &str = "interceptor-approval-bench";
    let daemon = find_bin(
        &cargo_json(ws, &["build", "-p", DAEMON_PACKAGE])?,
        DAEMON_BIN,
    )
    .with_context(|| format!("cargo reported no `{DAEMON_BIN}` binary"))?;
    let built = cargo_json(
        ws,
        &[
            "build",
            "-p",
            TESTS_PACKAGE,
            "--bin",
            PROBE_BIN,
            "--bin",
            APPROVAL_BENCH_BIN,
        ],
    )?;
    let probe = find_bin(&built, PROBE_BIN)
        .with_context(|| format!("cargo reported no `{PROBE_BIN}` binary"))?;
    let bench = find_bin(&built, APPROVAL_BENCH_BIN)
        .with_context(|| format!("cargo reported no `{APPROVAL_BENCH_BIN}` binary"))?;
    Ok(ApprovalBenchArtifacts {
        daemon,
        probe,
        bench,
    })
}

fn find_bin(artifacts: &[Artifact], name: &str) -> Option<PathBuf> {
    artifacts
        .iter()
        .find(|a| !a.test && a.name == name && a.kinds.iter().any(|k| k == "bin"))
        .and_then(|a| a.executable.clone())
}

/// Runs `cargo <args> --release --target musl` with JSON messages on stdout (diagnostics
/// still rendered to the terminal) and returns the artifacts it reported.
fn cargo_json(ws: &Workspace, args: &[&str]) -> Result<Vec<Artifact>> {
    let mut cmd = ws.cargo();
    cmd.args(args)
        .args([
            "--release",
            "--target",
            MUSL_TARGET,
            "--message-format=json-render-diagnostics",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let what = describe(&cmd);
    println!("xtask: {what}");
    let out = cmd
        .output()
        .with_context(|| format!("cannot start `{what}`"))?;
    if !out.status.success() {
        bail!("`{what}` failed ({})", out.status);
    }
    Ok(parse_artifacts(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_artifacts(json_lines: &str) -> Vec<Artifact> {
    json_lines
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .map(|m| Artifact {
            name: m["target"]["name"].as_str().unwrap_or_default().to_string(),
            kinds: m["target"]["kind"]
                .as_array()
                .map(|ks| {
                    ks.iter()
                        .filter_map(|k| k.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
            test: m["profile"]["test"].as_bool().unwrap_or(false),
            executable: m["executable"].as_str().map(PathBuf::from),
        })
        .collect()
}

/// Builds only the test executables' list from paths given by hand (`cargo xtask vm --test-bin`).
pub fn tests_from_paths(paths: &[PathBuf]) -> Result<Vec<TestExe>> {
    paths
        .iter()
        .map(|p| {
            let path = std::path::absolute(p)?;
            if !path.is_file() {
                bail!("test binary {} does not exist", path.display());
            }
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .context("test binary path has no file name")?;
            Ok(TestExe { name, path })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tests_and_bins() {
        let json = r#"{"reason":"compiler-artifact","target":{"name":"interceptor-probe","kind":["bin"]},"profile":{"test":false},"executable":"/t/interceptor-probe"}
{"reason":"compiler-artifact","target":{"name":"exec_hold","kind":["test"]},"profile":{"test":true},"executable":"/t/deps/exec_hold-abc"}
{"reason":"compiler-artifact","target":{"name":"interceptor_integration","kind":["lib"]},"profile":{"test":false},"executable":null}
{"reason":"build-finished","success":true}"#;
        let a = parse_artifacts(json);
        assert_eq!(
            find_bin(&a, "interceptor-probe"),
            Some(PathBuf::from("/t/interceptor-probe"))
        );
        let tests: Vec<_> = a.iter().filter(|a| a.test).collect();
        assert_eq!(tests.len(), 1);
        assert_eq!(
            tests[0].executable.as_deref(),
            Some(std::path::Path::new("/t/deps/exec_hold-abc"))
        );
    }
}
