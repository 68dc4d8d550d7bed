//! `cargo xtask setup`: make a fresh Debian 12 machine with rustup (stable + nightly) able
//! to build and test everything. Idempotent: each step checks before it installs.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::Workspace;
use crate::artifacts::MUSL_TARGET;
use crate::util::{self, output_checked, probe_output, run_checked};

/// Debian packages: LLVM 22 for bpf-linker (matches rustc's LLVM), QEMU for the VM tier,
/// a static busybox for the VM's userland, musl-gcc for static builds with C deps,
/// bpftool for debugging, cpio to pack the initramfs, a PostgreSQL server for the audit
/// log's tests (tier 1 starts a throwaway cluster; see postgres.rs), and a headless
/// Chromium with its WebDriver for tier 2's browser tests of the review page (with a font,
/// or the screenshots they save show boxes instead of text). systemd for the package tier's
/// `systemd-analyze verify` and `security` of the shipped unit, strace for its check of the
/// unit's system call filter.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "busybox-static",
    "musl-tools",
    "bpftool",
    "cpio",
    "postgresql",
    "chromium",
    "chromium-driver",
    "fonts-dejavu-core",
    "systemd",
    "strace",
];

/// QEMU for the VM tier comes from bookworm-backports (10.0), not bookworm (7.2): under
/// 7.2's TCG a guest that had just run thousands of short-lived processes now and then
/// spun for good in `clear_page_rep` (a soft lockup that stopped the suite; see vm.rs).
const QEMU_PACKAGE: &str = "qemu-system-x86";
const QEMU_MIN_MAJOR: u32 = 10;
const BACKPORTS_SUITE: &str = "bookworm-backports";
const BACKPORTS_SOURCES: &str = "/etc/apt/sources.list.d/interceptor-bookworm-backports.sources";

/// What `cargo xtask bench` adds for its side-by-side runs (never needed by the tests):
/// the peers it measures, and the compiler and make of its build workload.
const BENCH_APT_PACKAGES: &[&str] = &["fapolicyd", "auditd", "make", "gcc", "libc6-dev"];

/// Programs the tests start by path, and the package that ships each. Checked after the
/// apt step: an installed package whose binary is gone (diverted, half-removed) would
/// otherwise surface only as a confusing test failure.
const APT_BINARIES: &[(&str, &str)] = &[
    ("/usr/bin/chromium", "chromium"),
    ("/usr/bin/chromedriver", "chromium-driver"),
    ("/usr/bin/systemd-analyze", "systemd"),
    ("/usr/bin/strace", "strace"),
];

const BPF_LINKER_VERSION: &str = "0.13.0";
/// Builds the Debian package (`cargo xtask package`, test tier 4).
pub const CARGO_DEB_VERSION: &str = "3.8.0";
/// Builds and runs the fuzz targets (`cargo xtask fuzz`, test tier 5).
pub const CARGO_FUZZ_VERSION: &str = "0.13.2";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// The VM kernel: Debian bookworm-security's 6.12 cloud kernel, which has CONFIG_BPF_LSM=y,
/// BTF, serial, virtio-pci and virtio-console built in (no modules needed in the initramfs).
/// bookworm-security drops old ABI versions over time; when this exact package is gone,
/// setup falls back to the newest `linux-image-6.12.*+deb12-cloud-amd64` still published
/// (see `VM_KERNEL_FALLBACK_PATTERN`) and says so. Bump this when that happens.
pub const VM_KERNEL_PACKAGE: &str = "linux-image-6.12.117+deb12-cloud-amd64";
const VM_KERNEL_FALLBACK_PATTERN: &str = r"^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64$";

/// Installs (once) what the side-by-side bench needs beyond [`run`]'s tools.
pub fn bench_tools(ws: &Workspace) -> Result<()> {
    let s = Setup {
        ws,
        verbosity: Verbosity::Quiet,
        apt_updated: Cell::new(false),
    };
    s.step("bench apt packages", |s| s.apt_packages(BENCH_APT_PACKAGES))
}

/// Records which kernel the cache holds when it is not `VM_KERNEL_PACKAGE`'s.
const KERNEL_MARKER: &str = "kernel";
const BUSYBOX_SOURCE: &str = "/bin/busybox";

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// `cargo xtask setup`: one line per step.
    Report,
    /// Before other commands: only steps that do something speak.
    Quiet,
}

struct Setup<'a> {
    ws: &'a Workspace,
    verbosity: Verbosity,
    apt_updated: Cell<bool>,
}

pub fn run(ws: &Workspace, verbosity: Verbosity) -> Result<()> {
    let s = Setup {
        ws,
        verbosity,
        apt_updated: Cell::new(false),
    };
    s.step("apt packages", |s| s.apt_packages(APT_PACKAGES))?;
    s.step(
        &format!("QEMU {QEMU_MIN_MAJOR} ({BACKPORTS_SUITE})"),
        Setup::qemu,
    )?;
    check_apt_binaries()?;
    s.step("rust-src (nightly)", Setup::nightly_rust_src)?;
    s.step(&format!("rust target {MUSL_TARGET}"), Setup::musl_target)?;
    s.step(
        &format!("bpf-linker {BPF_LINKER_VERSION}"),
        Setup::bpf_linker,
    )?;
    s.step(&format!("cargo-deb {CARGO_DEB_VERSION}"), Setup::cargo_deb)?;
    s.step(
        &format!("cargo-fuzz {CARGO_FUZZ_VERSION}"),
        Setup::cargo_fuzz,
    )?;
    s.step("VM kernel", Setup::vm_kernel)?;
    s.step("VM busybox", Setup::vm_busybox)?;
    if verbosity == Verbosity::Report {
        println!("setup: done");
    }
    Ok(())
}

/// What a step's check found: nothing to do, or an action to run (described for the log).
enum Check<'a> {
    Present(String),
    Missing(String, Box<dyn FnOnce() -> Result<()> + 'a>),
}

impl<'a> Setup<'a> {
    fn step(&self, name: &str, f: impl FnOnce(&Self) -> Result<Check<'_>>) -> Result<()> {
        let fail = || format!("setup: step `{name}` failed");
        match f(self).with_context(fail)? {
            Check::Present(what) => {
                if self.verbosity == Verbosity::Report {
                    println!("setup: {name}: already present{what}");
                }
            }
            Check::Missing(what, install) => {
                println!("setup: {name}: installing {what} ...");
                let start = std::time::Instant::now();
                install().with_context(fail)?;
                println!(
                    "setup: {name}: installed in {:.1}s",
                    start.elapsed().as_secs_f64()
                );
            }
        }
        Ok(())
    }

    fn apt_update(&self) -> Result<()> {
        if !self.apt_updated.get() {
            require_root("apt-get update")?;
            run_checked(Command::new("apt-get").args(["update", "-q"]))?;
            self.apt_updated.set(true);
        }
        Ok(())
    }

    fn apt_packages(&self, packages: &'static [&'static str]) -> Result<Check<'_>> {
        if probe_output(Command::new("dpkg-query").arg("--version")).is_none() {
            bail!("dpkg-query not found: setup supports Debian (12) machines only");
        }
        let missing: Vec<&str> = packages
            .iter()
            .copied()
            .filter(|p| !dpkg_installed(p))
            .collect();
        if missing.is_empty() {
            return Ok(Check::Present(String::new()));
        }
        Ok(Check::Missing(
            missing.join(" "),
            Box::new(move || {
                require_root(&format!("apt-get install {}", missing.join(" ")))?;
                self.apt_update()?;
                apt_install(&missing)
            }),
        ))
    }

    fn qemu(&self) -> Result<Check<'_>> {
        if let Some(major) = qemu_major()
            && major >= QEMU_MIN_MAJOR
        {
            return Ok(Check::Present(format!(" (major version {major})")));
        }
        Ok(Check::Missing(
            format!("{QEMU_PACKAGE} from {BACKPORTS_SUITE}"),
            Box::new(|| {
                require_root(&format!(
                    "apt-get install -t {BACKPORTS_SUITE} {QEMU_PACKAGE}"
                ))?;
                if !Path::new(BACKPORTS_SOURCES).exists() {
                    std::fs::write(
                        BACKPORTS_SOURCES,
                        format!(
                            "# Added by interceptor's `cargo xtask setup` for {QEMU_PACKAGE}.\n\
                             Types: deb\nURIs: http://deb.debian.org/debian\n\
                             Suites: {BACKPORTS_SUITE}\nComponents: main\n\
                             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
                        ),
                    )
                    .with_context(|| format!("writing {BACKPORTS_SOURCES}"))?;
                    // The lists in hand do not know the new suite yet.
                    self.apt_updated.set(false);
                }
                self.apt_update()?;
                apt_install(&["-t", BACKPORTS_SUITE, QEMU_PACKAGE])?;
                match qemu_major() {
                    Some(m) if m >= QEMU_MIN_MAJOR => Ok(()),
                    other => bail!(
                        "after installing {QEMU_PACKAGE} from {BACKPORTS_SUITE}, \
                         qemu-system-x86_64 reports major version {other:?}, not {QEMU_MIN_MAJOR} or newer"
                    ),
                }
            }),
        ))
    }

    fn nightly_rust_src(&self) -> Result<Check<'_>> {
        // aya-build compiles the eBPF crate with `-Z build-std=core`, which needs rust-src.
        let installed = output_checked(Command::new("rustup").args([
            "component",
            "list",
            "--toolchain",
            "nightly",
            "--installed",
        ]))
        .context("is the nightly toolchain installed? (`rustup toolchain list`)")?;
        if installed.lines().any(|l| l.trim().starts_with("rust-src")) {
            return Ok(Check::Present(String::new()));
        }
        Ok(Check::Missing(
            "with rustup".into(),
            Box::new(|| {
                run_checked(Command::new("rustup").args([
                    "component",
                    "add",
                    "rust-src",
                    "--toolchain",
                    "nightly",
                ]))
            }),
        ))
    }

    fn musl_target(&self) -> Result<Check<'_>> {
        // Tier 2 and 3 run the same static binaries on the host and in the VM's bare initramfs.
        let installed =
            output_checked(Command::new("rustup").args(["target", "list", "--installed"]))?;
        if installed.lines().any(|l| l.trim() == MUSL_TARGET) {
            return Ok(Check::Present(String::new()));
        }
        Ok(Check::Missing(
            "with rustup".into(),
            Box::new(|| run_checked(Command::new("rustup").args(["target", "add", MUSL_TARGET]))),
        ))
    }

    fn bpf_linker(&self) -> Result<Check<'_>> {
        let Some(what) = cargo_tool_missing("bpf-linker", BPF_LINKER_VERSION, 75) else {
            return Ok(Check::Present(String::new()));
        };
        Ok(Check::Missing(
            what,
            Box::new(|| {
                if !Path::new(LLVM_PREFIX).join("lib").is_dir() {
                    bail!("{LLVM_PREFIX} missing: the llvm-22-dev package should provide it");
                }
                run_checked(
                    cargo_install("bpf-linker", BPF_LINKER_VERSION)
                        .args(["--no-default-features", "--features", "llvm-22"])
                        // Without it bpf-linker's build looks for LLVM in /usr and fails on -lLLVM.
                        .env("LLVM_PREFIX", LLVM_PREFIX),
                )
            }),
        ))
    }

    fn cargo_deb(&self) -> Result<Check<'_>> {
        let Some(what) = cargo_tool_missing("cargo-deb", CARGO_DEB_VERSION, 100) else {
            return Ok(Check::Present(String::new()));
        };
        Ok(Check::Missing(
            what,
            Box::new(|| run_checked(&mut cargo_install("cargo-deb", CARGO_DEB_VERSION))),
        ))
    }

    fn cargo_fuzz(&self) -> Result<Check<'_>> {
        let Some(what) = cargo_tool_missing("cargo-fuzz", CARGO_FUZZ_VERSION, 90) else {
            return Ok(Check::Present(String::new()));
        };
        Ok(Check::Missing(
            what,
            Box::new(|| run_checked(&mut cargo_install("cargo-fuzz", CARGO_FUZZ_VERSION))),
        ))
    }

    fn vm_kernel(&self) -> Result<Check<'_>> {
        if let Ok(path) = vm_kernel_path(self.ws) {
            return Ok(Check::Present(format!(" ({})", path.display())));
        }
        Ok(Check::Missing(
            format!("{VM_KERNEL_PACKAGE} into {}", self.ws.vm_dir().display()),
            Box::new(|| self.download_kernel()),
        ))
    }

    fn download_kernel(&self) -> Result<()> {
        let package = self.resolve_kernel_package()?;
        let vm_dir = self.ws.vm_dir();
        let dl = vm_dir.join("kernel-download");
        let _ = std::fs::remove_dir_all(&dl);
        std::fs::create_dir_all(&dl).with_context(|| format!("creating {}", dl.display()))?;
        // apt downloads as user _apt when it can write there (else it warns and uses root).
        let _ = std::fs::set_permissions(&dl, std::os::unix::fs::PermissionsExt::from_mode(0o777));
        run_checked(
            Command::new("apt-get")
                .args(["download", "-q", &package])
                .current_dir(&dl),
        )?;
        let deb = std::fs::read_dir(&dl)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .with_context(|| format!("apt-get download left no .deb in {}", dl.display()))?;
        let unpacked = dl.join("root");
        run_checked(Command::new("dpkg").arg("-x").arg(&deb).arg(&unpacked))?;
        let release = package.strip_prefix("linux-image-").unwrap_or(&package);
        let name = format!("vmlinuz-{release}");
        let src = unpacked.join("boot").join(&name);
        let dst = vm_dir.join(&name);
        std::fs::copy(&src, &dst)
            .with_context(|| format!("{} not in {}", src.display(), deb.display()))?;
        std::fs::write(vm_dir.join(KERNEL_MARKER), format!("{name}\n"))?;
        let _ = std::fs::remove_dir_all(&dl);
        println!("setup: VM kernel: {}", dst.display());
        Ok(())
    }

    /// The kernel package to download: `VM_KERNEL_PACKAGE`, or the newest 6.12 cloud kernel
    /// the archive still has.
    fn resolve_kernel_package(&self) -> Result<String> {
        if !apt_candidate_exists(VM_KERNEL_PACKAGE) && !self.apt_updated.get() && util::is_root() {
            // Package lists may be missing (fresh machine) or stale.
            self.apt_update()?;
        }
        if apt_candidate_exists(VM_KERNEL_PACKAGE) {
            return Ok(VM_KERNEL_PACKAGE.to_string());
        }
        let found = output_checked(Command::new("apt-cache").args([
            "search",
            "--names-only",
            VM_KERNEL_FALLBACK_PATTERN,
        ]))?;
        let newest = found
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|name| apt_candidate_exists(name))
            .max_by_key(|name| kernel_patch_level(name));
        match newest {
            Some(name) => {
                println!(
                    "setup: VM kernel: {VM_KERNEL_PACKAGE} is no longer published; using {name} (update VM_KERNEL_PACKAGE in xtask/src/setup.rs)"
                );
                Ok(name.to_string())
            }
            None => bail!(
                "neither {VM_KERNEL_PACKAGE} nor any linux-image-6.12.*+deb12-cloud-amd64 is available from apt \
                 (is bookworm-security in /etc/apt/sources.list*? run `apt-get update`)"
            ),
        }
    }

    fn vm_busybox(&self) -> Result<Check<'_>> {
        let dst = vm_busybox_path(self.ws);
        if dst.is_file() {
            return Ok(Check::Present(String::new()));
        }
        Ok(Check::Missing(
            format!("copy of {BUSYBOX_SOURCE}"),
            Box::new(move || {
                std::fs::create_dir_all(self.ws.vm_dir())?;
                std::fs::copy(BUSYBOX_SOURCE, &dst).with_context(|| {
                    format!(
                        "copying {BUSYBOX_SOURCE} (from busybox-static) to {}",
                        dst.display()
                    )
                })?;
                Ok(())
            }),
        ))
    }
}

/// Fails unless every program in [`APT_BINARIES`] exists and is executable.
fn check_apt_binaries() -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let broken: Vec<String> = APT_BINARIES
        .iter()
        .filter(|(path, _)| {
            !std::fs::metadata(path)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .map(|(path, package)| format!("{path} (package {package})"))
        .collect();
    if !broken.is_empty() {
        bail!(
            "missing after the apt step: {}; try `apt-get install --reinstall` on those packages",
            broken.join(", ")
        );
    }
    Ok(())
}

/// The cached VM kernel image.
pub fn vm_kernel_path(ws: &Workspace) -> Result<PathBuf> {
    let dir = ws.vm_dir();
    let pinned = dir.join(format!(
        "vmlinuz-{}",
        VM_KERNEL_PACKAGE.trim_start_matches("linux-image-")
    ));
    if pinned.is_file() {
        return Ok(pinned);
    }
    // A fallback kernel chosen by an earlier setup.
    let marker = std::fs::read_to_string(dir.join(KERNEL_MARKER)).unwrap_or_default();
    let recorded = dir.join(marker.trim());
    if !marker.trim().is_empty() && recorded.is_file() {
        return Ok(recorded);
    }
    bail!(
        "no VM kernel in {} (run `cargo xtask setup`)",
        dir.display()
    )
}

/// The cached static busybox for the VM.
pub fn vm_busybox_path(ws: &Workspace) -> PathBuf {
    ws.vm_dir().join("busybox")
}

/// `QEMU emulator version 10.0.2 (Debian ...)` -> 10.
fn qemu_major() -> Option<u32> {
    let out = probe_output(Command::new("qemu-system-x86_64").arg("--version"))?;
    parse_qemu_major(&out)
}

fn parse_qemu_major(version: &str) -> Option<u32> {
    let rest = version.split("version ").nth(1)?;
    rest.split('.').next()?.trim().parse().ok()
}

/// `apt-get install` of `args` (packages, and options such as `-t SUITE`), unattended and
/// without progress bars in CI logs.
fn apt_install(args: &[&str]) -> Result<()> {
    run_checked(
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-q",
                "-o",
                "Dpkg::Use-Pty=0",
                "--no-install-recommends",
            ])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn dpkg_installed(package: &str) -> bool {
    // "install ok installed" (or "hold ok installed"); unknown packages make dpkg-query fail.
    probe_output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|status| status.split_whitespace().nth(2) == Some("installed"))
}

fn apt_candidate_exists(package: &str) -> bool {
    probe_output(Command::new("apt-cache").args(["policy", package])).is_some_and(|out| {
        out.lines()
            .filter_map(|l| l.trim().strip_prefix("Candidate:"))
            .any(|c| c.trim() != "(none)")
    })
}

/// 117 for "linux-image-6.12.117+deb12-cloud-amd64".
fn kernel_patch_level(package: &str) -> u32 {
    package
        .strip_prefix("linux-image-6.12.")
        .and_then(|rest| rest.split('+').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn require_root(action: &str) -> Result<()> {
    if !util::is_root() {
        bail!(
            "`{action}` needs root; run `cargo xtask setup` as root (these machines run as root)"
        );
    }
    Ok(())
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cargo")
        })
}

/// A tool `cargo install` puts in $CARGO_HOME/bin: `None` when `TOOL --version` names
/// `version`, else how it will be installed (taking about `secs`), for the log.
fn cargo_tool_missing(tool: &str, version: &str, secs: u32) -> Option<String> {
    // Make sure our children (aya-build, cargo's subcommand lookup) see $CARGO_HOME/bin even
    // when it is not on PATH.
    ensure_on_path(&cargo_home().join("bin"));
    let found = probe_output(Command::new(tool).arg("--version")).unwrap_or_default();
    if found.split_whitespace().any(|w| w == version) {
        return None;
    }
    Some(if found.is_empty() {
        format!("with cargo install (~{secs} s)")
    } else {
        format!(
            "with cargo install (~{secs} s), replacing `{}`",
            found.trim()
        )
    })
}

/// `cargo install KRATE --version VERSION --locked --force`, to add options to.
fn cargo_install(krate: &str, version: &str) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.args([
        "install",
        krate,
        "--version",
        version,
        "--locked",
        "--force",
    ]);
    cmd
}

fn ensure_on_path(dir: &Path) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|p| p == dir) {
        return;
    }
    let joined = std::env::join_paths(
        std::iter::once(dir.to_path_buf()).chain(std::env::split_paths(&path)),
    )
    .expect("PATH entries stay joinable");
    // SAFETY: xtask is single-threaded; no other thread reads the environment concurrently.
    unsafe { std::env::set_var("PATH", joined) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_major_version() {
        assert_eq!(
            parse_qemu_major(
                "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\nCopyright"
            ),
            Some(10)
        );
        assert_eq!(
            parse_qemu_major("QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)"),
            Some(7)
        );
        assert_eq!(parse_qemu_major("not qemu"), None);
    }

    #[test]
    fn patch_level() {
        assert_eq!(
            kernel_patch_level("linux-image-6.12.117+deb12-cloud-amd64"),
            117
        );
        assert_eq!(
            kernel_patch_level("linux-image-6.12.9+deb12-cloud-amd64"),
            9
        );
    }
}
