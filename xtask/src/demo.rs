//! `cargo xtask demo`: the whole product story in one command, on this machine's kernel
//! (tests/src/bin/interceptor-demo.rs tells it). Test tier 4 runs it too and checks that
//! its transcript shows a hold, an approval, a denial and the audit trail.

use std::process::Command;

use anyhow::{Result, bail};

use crate::Workspace;
use crate::artifacts::{self, DemoArtifacts};
use crate::test::{ENV_DAEMON, ENV_PROBE};
use crate::util;

/// What the transcript must show, each with what it proves.
const MARKERS: &[(&str, &str)] = &[
    (
        "$ interceptor approvals list",
        "a held request listed for the reviewer",
    ),
    (
        "denied: the process was killed",
        "the dump denied and killed",
    ),
    ("approved: the process runs", "the setuid change approved"),
    ("$ interceptor audit query", "the audit trail printed"),
    ("audit chain intact", "the audit chain verified"),
];

/// Builds what the demo needs and runs it; returns the transcript.
pub fn run(ws: &Workspace) -> Result<String> {
    if !util::is_root() {
        bail!("the demo loads eBPF programs: run `cargo xtask demo` as root");
    }
    let a = artifacts::build_demo(ws)?;
    run_built(&a)
}

pub fn run_built(a: &DemoArtifacts) -> Result<String> {
    let mut transcript = String::new();
    let mut cmd = Command::new(&a.demo);
    cmd.env(ENV_DAEMON, &a.daemon).env(ENV_PROBE, &a.probe);
    let status = util::run_streaming(&mut cmd, |line| {
        transcript.push_str(line);
        transcript.push('\n');
    })?;
    if !status.success() {
        bail!("the demo failed ({status})");
    }
    let missing: Vec<&str> = MARKERS
        .iter()
        .filter(|(m, _)| !transcript.contains(m))
        .map(|(_, what)| *what)
        .collect();
    if !missing.is_empty() {
        bail!("the demo's transcript lacks: {}", missing.join(", "));
    }
    Ok(transcript)
}
