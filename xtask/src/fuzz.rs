//! `cargo xtask fuzz`: the libFuzzer targets in fuzz/ (cargo-fuzz, nightly, AddressSanitizer)
//! for everything interceptor reads from outside: policy files, signed callbacks, Slack's
//! interactivity requests, the review page's form, control-socket requests and kernel
//! ring-buffer records. `cargo xtask test` runs each for a short time (tier 5).
//!
//! Each target runs on its seeds (fuzz/seeds/TARGET and, for the policy parser, the
//! shipped policies and the parser's invalid-policy corpus) and its growing corpus
//! (fuzz/corpus/TARGET, kept between runs, not committed). A crash, a failed assertion, a
//! leak or a timeout stops the run with the input saved under fuzz/artifacts/TARGET/ and
//! fails the command.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};

use crate::Workspace;
use crate::util::{self, describe};

/// Every target in fuzz/Cargo.toml.
pub const TARGETS: [&str; 6] = [
    "policy_parse",
    "webhook_signature",
    "slack_callback",
    "review_form",
    "control_request",
    "kernel_event",
];

/// Seeds that live elsewhere in the tree: the shipped policies and the invalid-policy
/// corpus of the parser's tests.
const SEED_DIRS: [(&str, &str); 3] = [
    ("policy_parse", "policies"),
    ("policy_parse", "policies/examples"),
    ("policy_parse", "interceptor/src/policy/testdata/invalid"),
];

/// Larger than the biggest kernel record (an exec event with its argv and path buffers),
/// so the decoder sees full-size records.
const MAX_LEN: usize = 16384;

/// One target's run.
pub struct FuzzRun {
    pub target: String,
    pub secs: f64,
    pub execs: u64,
    pub corpus: usize,
}

fn cargo_fuzz(ws: &Workspace) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&ws.root).args(["+nightly", "fuzz"]);
    cmd
}

/// Builds every target, then runs each for `secs` seconds; `targets` empty: all.
pub fn run(ws: &Workspace, secs: u64, targets: &[String]) -> Result<Vec<FuzzRun>> {
    for t in targets {
        if !TARGETS.contains(&t.as_str()) {
            bail!(
                "unknown fuzz target {t:?} (targets: {})",
                TARGETS.join(", ")
            );
        }
    }
    let targets: Vec<String> = if targets.is_empty() {
        TARGETS.map(String::from).to_vec()
    } else {
        targets.to_vec()
    };
    let mut build = cargo_fuzz(ws);
    build.arg("build");
    println!("xtask: {}", describe(&build));
    util::run_checked(&mut build)?;
    let mut runs = Vec::new();
    for target in &targets {
        runs.push(run_one(ws, target, secs)?);
    }
    for r in &runs {
        println!(
            "fuzz: {:<18} {:>6.0} s {:>12} runs {:>9.0} runs/s  corpus {} inputs",
            r.target,
            r.secs,
            r.execs,
            r.execs as f64 / r.secs.max(0.001),
            r.corpus
        );
    }
    Ok(runs)
}

fn run_one(ws: &Workspace, target: &str, secs: u64) -> Result<FuzzRun> {
    let corpus = ws.root.join("fuzz/corpus").join(target);
    let seeds = ws.root.join("fuzz/seeds").join(target);
    std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let mut cmd = cargo_fuzz(ws);
    cmd.args(["run", target]).arg(&corpus);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    cmd.args(
        SEED_DIRS
            .iter()
            .filter(|(t, _)| *t == target)
            .map(|(_, d)| ws.root.join(d)),
    )
    .arg("--")
    .arg(format!("-max_total_time={secs}"))
    .arg(format!("-max_len={MAX_LEN}"))
    .arg("-rss_limit_mb=4096")
    .arg("-timeout=10")
    .arg("-print_final_stats=1")
    .stdin(Stdio::null())
    .stdout(Stdio::inherit())
    .stderr(Stdio::piped());
    println!("xtask: {}", describe(&cmd));
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start `{}`", describe(&cmd)))?;
    // libFuzzer reports on stderr: echo it, keep it for the final statistics.
    let mut stderr = String::new();
    {
        use std::io::{BufRead as _, BufReader};
        let pipe = child.stderr.take().expect("stderr is piped");
        for line in BufReader::new(pipe).lines() {
            let line = line.context("reading libFuzzer's output")?;
            // The periodic status lines are many; the final ones and any report matter.
            if !line.starts_with('#') || line.contains("DONE") {
                eprintln!("{line}");
            }
            stderr.push_str(&line);
            stderr.push('\n');
        }
    }
    let status = child.wait()?;
    let secs_taken = started.elapsed().as_secs_f64();
    if !status.success() {
        let artifact = stderr
            .lines()
            .find_map(|l| l.split_once("Test unit written to "))
            .map(|(_, path)| path.trim().to_string())
            .unwrap_or_else(|| "(no input saved)".into());
        bail!(
            "fuzz target {target} failed ({status}) after {secs_taken:.0} s; the input is {artifact}; \
             reproduce with `cargo +nightly fuzz run {target} {artifact}`"
        );
    }
    let stat = |key: &str| -> Option<u64> {
        stderr
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_start_matches(':').trim().parse().ok())
    };
    let execs =
        stat("stat::number_of_executed_units").context("libFuzzer printed no final statistics")?;
    Ok(FuzzRun {
        target: target.to_string(),
        secs: secs_taken,
        execs,
        corpus: count_files(&corpus),
    })
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.flatten().count())
}
