//! `cargo xtask test`: the three test tiers, a summary table and one closing count line.
//!
//! - tier 1 unit: `cargo test` on the default members, with the audit log's PostgreSQL
//!   tests against a throwaway server on 127.0.0.1 (see postgres.rs).
//! - tier 2 host-root: the static integration test binaries on this machine, as root,
//!   against the tracepoint backend (BPF LSM programs cannot load on these hosts). Browser
//!   tests drive Debian's headless Chromium (installed by setup) and leave screenshots in
//!   target/test-artifacts/.
//! - tier 3 vm: the same binaries inside a QEMU VM with BPF LSM (lsm backend).
//! - tier 4 package and demo: the Debian package built from the same static daemon,
//!   installed into a scratch root and checked, the systemd unit verified and scored (see
//!   package.rs); then `cargo xtask demo`, its transcript checked (demo.rs).
//!
//! - tier 5 fuzz: every fuzz target in fuzz/ for a short time (fuzz.rs).
//!
//! A failing tier does not stop the later ones; the exit status is non-zero if any failed.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow, bail};

use crate::artifacts::{self, Artifacts, TestExe};
use crate::demo;
use crate::package;
use crate::postgres;
use crate::util::{self, Counts};
use crate::vm::{self, VmInputs, VmOptions};
use crate::{VmArgs, Workspace};

/// Environment the integration tests read: where the daemon and the probe are, and which
/// enforcement backend the daemon is expected to pick on this kernel.
pub const ENV_DAEMON: &str = "INTERCEPTOR_BIN";
pub const ENV_PROBE: &str = "INTERCEPTOR_PROBE";
pub const ENV_BACKEND: &str = "INTERCEPTOR_EXPECT_BACKEND";
/// Seconds each fuzz target runs in tier 5: long enough to catch shallow bugs in every
/// run; `cargo xtask fuzz --secs N` runs longer.
const FUZZ_SECS: u64 = 20;
/// Where tests save what a human may want to look at afterwards (browser screenshots).
pub const ENV_ARTIFACTS: &str = "INTERCEPTOR_TEST_ARTIFACTS";

struct TierReport {
    label: &'static str,
    counts: Counts,
    secs: f64,
    error: Option<anyhow::Error>,
    note: Option<String>,
}

/// The static builds are shared by tiers 2 and 3 and made at most once per run.
struct Builds<'a> {
    ws: &'a Workspace,
    built: Option<Result<Artifacts, String>>,
}

impl Builds<'_> {
    fn get(&mut self) -> Result<&Artifacts> {
        let ws = self.ws;
        let built = self
            .built
            .get_or_insert_with(|| artifacts::build(ws).map_err(|e| format!("{e:#}")));
        built
            .as_ref()
            .map_err(|e| anyhow!("building the static test binaries failed: {e}"))
    }
}

/// Integration test binaries that run on the host only (tier 2), and why tier 3 leaves
/// them out.
const HOST_ONLY: [(&str, &str); 3] = [
    (
        "audit_postgres",
        "its PostgreSQL server runs on the host; the VM has none",
    ),
    (
        "webdriver_smoke",
        "it drives Debian's headless Chromium, which the VM image does not carry",
    ),
    (
        "review_page_browser",
        "it drives Debian's headless Chromium, which the VM image does not carry",
    ),
];

/// The tests tier 3 runs: all but [`HOST_ONLY`], each left out by name, with the reason.
fn vm_tests(tests: &[TestExe]) -> Vec<TestExe> {
    tests
        .iter()
        .filter(
            |t| match HOST_ONLY.iter().find(|(name, _)| *name == t.name) {
                Some((name, why)) => {
                    println!("xtask: tier 3 leaves out {name}: {why} (tier 2 runs it)");
                    false
                }
                None => true,
            },
        )
        .cloned()
        .collect()
}

pub fn run(ws: &Workspace, tiers: &[u8], vm_args: VmArgs) -> Result<()> {
    let mut tiers = if tiers.is_empty() {
        vec![1, 2, 3, 4, 5]
    } else {
        tiers.to_vec()
    };
    tiers.sort_unstable();
    tiers.dedup();
    let mut builds = Builds { ws, built: None };
    let opts = vm_options(vm_args, false);

    let mut reports = Vec::new();
    for tier in tiers {
        let report = match tier {
            1 => timed("tier 1 unit", |counts, _| tier1(ws, counts)),
            2 => timed("tier 2 host-root", |counts, _| {
                tier2(ws, &mut builds, counts)
            }),
            4 => timed("tier 4 package+demo", |counts, note| {
                let a = builds.get()?;
                let deb = package::build(ws, &a.daemon)?;
                let report = package::check(ws, &deb)?;
                // Two checks: the package as a whole, then the demo.
                counts.passed += 1;
                *note = Some(format!(
                    "systemd-analyze security exposure {:.1}; {} system calls traced, all admitted by the unit's filter",
                    report.exposure, report.syscalls
                ));
                if !util::is_root() {
                    bail!("the demo needs root (it loads eBPF programs)");
                }
                demo::run_built(&artifacts::build_demo(ws)?)?;
                counts.passed += 1;
                Ok(())
            }),
            5 => timed("tier 5 fuzz", |counts, note| {
                let runs = crate::fuzz::run(ws, FUZZ_SECS, &[])?;
                counts.passed += runs.len() as u64;
                let execs: u64 = runs.iter().map(|r| r.execs).sum();
                *note = Some(format!(
                    "{} targets, {FUZZ_SECS} s each, {execs} inputs run, no crash",
                    runs.len()
                ));
                Ok(())
            }),
            _ => timed("tier 3 vm", |counts, note| {
                let a = builds.get()?;
                let inputs = VmInputs {
                    daemon: Some(a.daemon.clone()),
                    probe: Some(a.probe.clone()),
                    tests: vm_tests(&a.tests),
                };
                tier3(ws, &inputs, opts, counts, note)
            }),
        };
        reports.push(report);
    }
    summarize(&reports)
}

/// `cargo xtask vm`: tier 3 alone, with the project's binaries or ones given by hand.
pub fn run_vm_only(
    ws: &Workspace,
    keep: bool,
    test_bins: Vec<PathBuf>,
    daemon: Option<PathBuf>,
    probe: Option<PathBuf>,
    vm_args: VmArgs,
) -> Result<()> {
    let opts = vm_options(vm_args, keep);
    let report = timed("tier 3 vm", |counts, note| {
        let inputs = if test_bins.is_empty() {
            let a = artifacts::build(ws)?;
            VmInputs {
                daemon: Some(a.daemon),
                probe: Some(a.probe),
                tests: vm_tests(&a.tests),
            }
        } else {
            VmInputs {
                daemon,
                probe,
                tests: artifacts::tests_from_paths(&test_bins)?,
            }
        };
        tier3(ws, &inputs, opts, counts, note)
    });
    summarize(&[report])
}

fn vm_options(args: VmArgs, keep_tree: bool) -> VmOptions {
    VmOptions {
        test_timeout_secs: args.vm_test_timeout,
        suite_timeout_secs: args.vm_timeout,
        keep_tree,
    }
}

fn timed(
    label: &'static str,
    f: impl FnOnce(&mut Counts, &mut Option<String>) -> Result<()>,
) -> TierReport {
    println!("==== {label} ====");
    let start = Instant::now();
    let mut counts = Counts::default();
    let mut note = None;
    let result = f(&mut counts, &mut note);
    let secs = start.elapsed().as_secs_f64();
    if let Err(e) = &result {
        println!("{label}: FAILED: {e:#}");
    }
    TierReport {
        label,
        counts,
        secs,
        error: result.err(),
        note,
    }
}

fn tier1(ws: &Workspace, counts: &mut Counts) -> Result<()> {
    // Never skipped: without a server the PostgreSQL tests fail, they do not vanish.
    let pg = postgres::PgServer::start(ws, false).context("the audit tests' PostgreSQL server")?;
    let mut cmd = ws.cargo();
    cmd.args(["test", "--features", "interceptor/pg-tests"])
        .env(postgres::ENV_PG_URL, &pg.url);
    let status = util::run_streaming(&mut cmd, |l| counts.add_libtest_line(l))?;
    if !status.success() {
        bail!("`cargo test` failed ({status})");
    }
    Ok(())
}

fn tier2(ws: &Workspace, builds: &mut Builds, counts: &mut Counts) -> Result<()> {
    // Never skipped: a tier that silently does nothing would read as a pass.
    if !util::is_root() {
        bail!(
            "tier 2 needs root (it loads eBPF programs on this machine); run `cargo xtask test` as root"
        );
    }
    let a = builds.get()?;
    // Never skipped: the daemon's PostgreSQL test fails without its server.
    let pg = postgres::PgServer::start(ws, false).context("the audit tests' PostgreSQL server")?;
    let artifacts_dir = ws.target.join("test-artifacts");
    std::fs::create_dir_all(&artifacts_dir)
        .with_context(|| format!("creating {}", artifacts_dir.display()))?;
    let mut failed = Vec::new();
    for t in &a.tests {
        println!("xtask: tier 2: {} ({})", t.name, t.path.display());
        let mut cmd = Command::new(&t.path);
        cmd.arg("--test-threads=1")
            .env(ENV_DAEMON, &a.daemon)
            .env(ENV_PROBE, &a.probe)
            .env(ENV_BACKEND, "tracepoint")
            .env(postgres::ENV_PG_URL, &pg.url)
            .env(ENV_ARTIFACTS, &artifacts_dir)
            .current_dir(&ws.root);
        let status = util::run_streaming(&mut cmd, |l| counts.add_libtest_line(l))?;
        if !status.success() {
            failed.push(format!("{} ({status})", t.name));
        }
    }
    if !failed.is_empty() {
        bail!("failed test binaries: {}", failed.join(", "));
    }
    Ok(())
}

fn tier3(
    ws: &Workspace,
    inputs: &VmInputs,
    opts: VmOptions,
    counts: &mut Counts,
    note: &mut Option<String>,
) -> Result<()> {
    let outcome = vm::run_suite(ws, inputs, opts)?;
    *counts = outcome.counts;
    let mut notes = Vec::new();
    if let Some(b) = outcome.boot_secs {
        notes.push(format!("VM boot {b:.1} s"));
    }
    if !outcome.lockups.is_empty() {
        notes.push(format!(
            "resumed in a fresh VM after {} guest soft lockup(s): {}",
            outcome.lockups.len(),
            outcome.lockups.join("; ")
        ));
    }
    if !notes.is_empty() {
        *note = Some(notes.join("; "));
    }
    let c = outcome.counts;
    if !outcome.complete {
        bail!(
            "the VM suite did not complete ({} passed, {} failed before it stopped: {})",
            c.passed,
            c.failed,
            outcome.stopped.as_deref().unwrap_or("no reason found")
        );
    }
    println!(
        "VM suite: {} passed, {} failed, {} ignored",
        c.passed, c.failed, c.ignored
    );
    if c.passed == 0 && c.failed == 0 {
        bail!("the VM ran no test");
    }
    if !outcome.ok() {
        bail!("{} VM test(s) failed", c.failed);
    }
    Ok(())
}

fn summarize(reports: &[TierReport]) -> Result<()> {
    let mut total = Counts::default();
    println!();
    println!("==== test summary ====");
    for r in reports {
        let verdict = if r.error.is_none() { "PASS" } else { "FAIL" };
        let mut line = format!(
            "{}: {verdict} ({:.1}s)  {} passed; {} failed; {} ignored",
            r.label, r.secs, r.counts.passed, r.counts.failed, r.counts.ignored
        );
        if let Some(note) = &r.note {
            line.push_str(&format!("; {note}"));
        }
        if let Some(e) = &r.error {
            line.push_str(&format!("; {e:#}"));
        }
        println!("{line}");
        let mut counts = r.counts;
        // A tier that failed without a failing test (build error, boot failure, not root)
        // still counts as one failure, so the closing line never reads clean by accident.
        if r.error.is_some() && counts.failed == 0 {
            counts.failed = 1;
        }
        total.add(counts);
    }
    let failed_tiers = reports.iter().filter(|r| r.error.is_some()).count();
    if failed_tiers > 0 {
        println!("xtask: {failed_tiers} test tier(s) failed");
    }
    // The closing line CI reads: "N passed, M failed" alone on a line, so nothing may
    // follow it (hence the exit here rather than an error message from main).
    println!("{} passed, {} failed", total.passed, total.failed);
    if failed_tiers > 0 {
        std::process::exit(1);
    }
    Ok(())
}
