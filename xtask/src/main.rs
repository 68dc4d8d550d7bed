//! Project automation for interceptor: `cargo xtask <command>`.
//!
//! - `setup`: install what a fresh Debian machine lacks (apt packages, rustup pieces,
//!   bpf-linker, the VM kernel and busybox). Every other command runs it first.
//! - `build`: build the daemon for the host.
//! - `test`: run the test tiers: 1 unit (`cargo test`), 2 host-root integration
//!   (tracepoint backend), 3 the same integration binaries inside a QEMU VM whose kernel
//!   has BPF LSM (lsm backend).
//! - `vm`: run tier 3 alone (optionally with test binaries given on the command line).
//! - `daemon`: build and start the daemon on this machine.
//! - `demo`: the product story in one command (daemon, a scripted agent, a reviewer's
//!   approve and deny, the audit trail).
//! - `package`: build the Debian package (target/debian/); tier 4 of `test` also installs it
//!   into a scratch root and checks it.
//! - `bench`: benchmarks against the design's targets (`kernel`: exec/open overhead and
//!   held-exec latency on the host and in the VM; `audit`: the audit-log pipeline).

mod artifacts;
mod bench;
mod compare;
mod demo;
mod fuzz;
mod package;
mod postgres;
mod setup;
mod test;
mod util;
mod vm;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "interceptor project automation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install everything the build and the tests need (idempotent).
    Setup,
    /// Build the daemon for this machine.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Run the test tiers (default: 1, 2 and 3 in order).
    Test {
        /// Tier(s) to run: 1 = unit, 2 = host-root integration, 3 = VM integration,
        /// 4 = the Debian package (built, installed into a scratch root, checked),
        /// 5 = a short run of every fuzz target.
        #[arg(long = "tier", value_parser = clap::value_parser!(u8).range(1..=5))]
        tiers: Vec<u8>,
        #[command(flatten)]
        vm: VmArgs,
    },
    /// Run the integration tests inside the QEMU VM only (tier 3).
    Vm {
        /// Keep the unpacked initramfs tree (target/vm/initramfs/) for inspection.
        #[arg(long)]
        keep: bool,
        /// Run these libtest binaries instead of building the interceptor-integration tests
        /// (may be repeated). Static binaries only: the VM has no libc.
        #[arg(long = "test-bin", value_name = "PATH")]
        test_bins: Vec<PathBuf>,
        /// With --test-bin: daemon binary to put at /bin/interceptor (optional).
        #[arg(long, value_name = "PATH", requires = "test_bins")]
        daemon: Option<PathBuf>,
        /// With --test-bin: probe binary to put at /bin/interceptor-probe (optional).
        #[arg(long, value_name = "PATH", requires = "test_bins")]
        probe: Option<PathBuf>,
        #[command(flatten)]
        vm: VmArgs,
    },
    /// Benchmarks (docs/benchmarks.md). Without a subcommand: interceptor side by side with
    /// fapolicyd, auditd and strace -f on this host, and in the BPF-LSM VM, plus the
    /// approval and audit pipelines; writes bench/results.md, results.json and ratios.png
    /// (needs root; about 12 minutes).
    ///
    /// Example: sudo -E cargo xtask bench
    Bench(bench::BenchArgs),
    /// Run the fuzz targets in fuzz/ (cargo-fuzz, libFuzzer, AddressSanitizer): the policy
    /// parser, signed callbacks, Slack callbacks, the review form, control-socket requests
    /// and kernel records. Fails on the first crash, with the input saved in fuzz/artifacts/.
    ///
    /// Example: cargo xtask fuzz --secs 600 kernel_event
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        secs: u64,
        /// Targets to run (default: all).
        targets: Vec<String>,
    },
    /// Run the demo: the daemon with the default policy, a scripted agent whose dump is
    /// held and denied and whose setuid change is held and approved, then the audit trail
    /// (needs root).
    Demo,
    /// Build the Debian package into target/debian/ (static daemon, unit, config, policies,
    /// man pages, completions).
    Package,
    /// Build the daemon and run `interceptor daemon ARGS...` (needs root).
    // Every argument, --help included, belongs to the daemon.
    #[command(disable_help_flag = true)]
    Daemon {
        /// Arguments passed through to `interceptor daemon`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(clap::Args, Clone, Copy)]
pub struct VmArgs {
    /// Per-test timeout inside the VM, in seconds (TCG runs ~20x slower than the host).
    #[arg(long, env = "INTERCEPTOR_VM_TEST_TIMEOUT", default_value_t = 120)]
    pub vm_test_timeout: u64,
    /// Limit for the whole VM run (boot + all tests), in seconds.
    #[arg(long, env = "INTERCEPTOR_VM_TIMEOUT", default_value_t = 2400)]
    pub vm_timeout: u64,
}

/// Where the workspace and its target directory are.
pub struct Workspace {
    pub root: PathBuf,
    pub target: PathBuf,
}

impl Workspace {
    fn locate() -> Result<Self> {
        // The runtime variable is set by `cargo run`; the compile-time one covers running
        // the binary directly.
        let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
        let root = manifest_dir
            .join("..")
            .canonicalize()
            .with_context(|| format!("workspace root above {}", manifest_dir.display()))?;
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            // Cargo resolves a relative CARGO_TARGET_DIR against its working directory,
            // which is ours.
            Some(dir) => std::path::absolute(PathBuf::from(dir))?,
            None => root.join("target"),
        };
        Ok(Self { root, target })
    }

    /// Cache and scratch space for the VM: kernel, busybox, initramfs, logs.
    pub fn vm_dir(&self) -> PathBuf {
        self.target.join("vm")
    }

    /// A `cargo` command run at the workspace root.
    pub fn cargo(&self) -> std::process::Command {
        // The rustup proxy on PATH, so toolchain overrides (`cargo +nightly xtask`) carry over.
        let mut cmd = std::process::Command::new("cargo");
        cmd.current_dir(&self.root);
        cmd
    }
}

fn main() {
    if let Err(err) = run() {
        eprintln!("xtask: error: {err:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let ws = Workspace::locate()?;
    match cli.command {
        Command::Setup => setup::run(&ws, setup::Verbosity::Report),
        Command::Build { release } => {
            setup::run(&ws, setup::Verbosity::Quiet)?;
            build_host(&ws, release)
        }
        Command::Test { tiers, vm } => {
            setup::run(&ws, setup::Verbosity::Quiet)?;
            test::run(&ws, &tiers, vm)
        }
        Command::Vm {
            keep,
            test_bins,
            daemon,
            probe,
            vm,
        } => {
            setup::run(&ws, setup::Verbosity::Quiet)?;
            test::run_vm_only(&ws, keep, test_bins, daemon, probe, vm)
        }
        Command::Bench(command) => {
            setup::run(&ws, setup::Verbosity::Quiet)?;
            bench::run(&ws, command)
        }
        Command::Fuzz { secs, targets } => {
            setup::run(&ws, setup::Verbosity::Quiet)?;
            fuzz::run(&ws, secs, &targets).map(|_| ())
        }
        Command::Demo => {
            setup::run(&ws, setup::Verbosity::Quiet)?;
            demo::run(&ws).map(|_| ())
        }
        Command::Package => {
            setup::run(&ws, setup::Verbosity::Quiet)?;
            let daemon = artifacts::build_daemon(&ws)?;
            package::build(&ws, &daemon).map(|_| ())
        }
        Command::Daemon { args } => daemon(&ws, args),
    }
}

fn build_host(ws: &Workspace, release: bool) -> Result<()> {
    let mut cmd = ws.cargo();
    cmd.args(["build", "-p", "interceptor"]);
    if release {
        cmd.arg("--release");
    }
    util::run_checked(&mut cmd).context("building the interceptor daemon")
}

fn daemon(ws: &Workspace, args: Vec<String>) -> Result<()> {
    use std::os::unix::process::CommandExt;
    // Check first: loading eBPF programs needs root, no point building otherwise.
    if !util::is_root() {
        bail!(
            "`cargo xtask daemon` must run as root (it loads eBPF programs); try `sudo -E cargo xtask daemon`"
        );
    }
    setup::run(ws, setup::Verbosity::Quiet)?;
    build_host(ws, false)?;
    let bin = ws.target.join("debug/interceptor");
    let err = std::process::Command::new(&bin)
        .arg("daemon")
        .args(&args)
        .exec();
    Err(err).with_context(|| format!("starting {}", bin.display()))
}
