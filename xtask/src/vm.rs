//! Tier 3: run libtest binaries inside a QEMU (TCG) VM whose Debian kernel has BPF LSM.
//!
//! The host builds an initramfs (busybox, the daemon, the probe, the test binaries and a
//! generated /init), boots it once per suite, and reads verdicts from a virtio-serial port
//! written to a file (see vm_init.sh for the guest side and the line protocol).

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::Workspace;
use crate::artifacts::TestExe;
use crate::setup;
use crate::util::{self, Counts};

const INIT_SCRIPT: &str = include_str!("vm_init.sh");

/// Boot parameters: serial console for the log, reboot (= QEMU exit, with -no-reboot) at
/// once on panic, and the LSM list with `bpf` so BPF LSM programs attach.
///
/// A soft lockup panics (`softlockup_panic=1`, backtrace at `loglevel=5`): the suite then
/// fails in seconds with the stack in serial.log instead of hanging until the suite
/// timeout. Under QEMU 7.2 TCG, a guest that had just run a few thousand short-lived
/// processes sometimes spun forever zeroing a freshly allocated page (RIP in
/// `clear_page_rep`, or `clear_page_erms` with `-cpu max`; also with
/// `-accel tcg,thread=single` and with `clocksource=hpet`; QEMU's thread kept running in
/// user space, so not a host stall). The flood scenario is sized down in the VM for it.
/// QEMU 10.0 (bookworm-backports, which setup installs) ran the whole suite without one,
/// in 385 s where 7.2 took 904 s with two; the resume below stays for the rare case.
const KERNEL_CMDLINE: &str = "console=ttyS0 panic=-1 softlockup_panic=1 loglevel=5 lsm=lockdown,capability,landlock,yama,bpf";

/// Software emulation (KVM is unusable on these hosts), no network, exit instead of reboot.
#[rustfmt::skip]
const QEMU_MACHINE: &[&str] = &[
    "-accel", "tcg",
    "-m", "2G",
    "-smp", "2",
    "-nographic",
    "-no-reboot",
    "-nic", "none",
];

const BOOTED: &str = "INTERCEPTOR-VM-BOOTED";
const TEST_LINE: &str = "INTERCEPTOR-VM-TEST";
const SUITE_END: &str = "INTERCEPTOR-VM-SUITE-END";

/// What goes into the VM. `daemon` and `probe` are optional so the machinery can be run
/// with arbitrary test binaries (`cargo xtask vm --test-bin`).
pub struct VmInputs {
    pub daemon: Option<PathBuf>,
    pub probe: Option<PathBuf>,
    pub tests: Vec<TestExe>,
}

#[derive(Clone, Copy)]
pub struct VmOptions {
    pub test_timeout_secs: u64,
    pub suite_timeout_secs: u64,
    /// Keep target/vm/initramfs/ (the unpacked tree) after packing it.
    pub keep_tree: bool,
}

/// The suite's verdict as reported by the guest.
#[derive(Debug, Default)]
pub struct VmOutcome {
    /// Whether the guest wrote the end-of-suite marker. Without it the run failed
    /// (boot failure, panic, hang) whatever the counts say.
    pub complete: bool,
    /// From the end marker; for an incomplete run, what the per-test lines showed so far.
    pub counts: Counts,
    /// Host seconds from starting QEMU until /init reported it was up.
    pub boot_secs: Option<f64>,
    /// Guest soft lockups the suite was resumed after (where each happened).
    pub lockups: Vec<String>,
    /// For an incomplete run: what ended it, as the console and the results port tell it
    /// (a kernel panic or oops line, a timeout, the test that was running).
    pub stopped: Option<String>,
}

impl VmOutcome {
    pub fn ok(&self) -> bool {
        self.complete && self.counts.failed == 0 && self.counts.passed > 0
    }
}

/// Builds the initramfs, boots the VM and returns what the guest reported. An error means
/// the VM could not be run at all.
pub fn run_suite(ws: &Workspace, inputs: &VmInputs, opts: VmOptions) -> Result<VmOutcome> {
    let kernel = setup::vm_kernel_path(ws)?;
    let start = Instant::now();
    let initramfs = build_initramfs(ws, inputs, opts).context("building the VM initramfs")?;
    let size = std::fs::metadata(&initramfs).map(|m| m.len()).unwrap_or(0);
    println!(
        "xtask: initramfs {} ({:.1} MiB, {} test binaries) built in {:.1}s",
        initramfs.display(),
        size as f64 / (1024.0 * 1024.0),
        inputs.tests.len(),
        start.elapsed().as_secs_f64()
    );
    // Multi-threaded TCG now and then oopses while the kernel live-patches its own code at
    // boot (an int3 left in another vCPU's translated code), before /init runs. Such a boot
    // says nothing about our tests: retry it, loudly, a bounded number of times. A guest
    // that reached /init is never retried, whatever happened after.
    //
    // A guest that stops on a soft lockup (see KERNEL_CMDLINE) is booted again, loudly, at
    // most LOCKUP_RESUMES times, and at most STALLED_RESUMES times in a row without a new
    // verdict: the new VM skips the tests that already have a verdict and
    // runs the rest, starting with the one that was running. Every test still has to pass;
    // the lockups are reported with their stack in the output and counted in the summary.
    let mut done = Counts::default();
    let mut lockups = Vec::new();
    let mut stalled = 0;
    let mut attempt = 1;
    let mut boot_secs = None;
    loop {
        let resume = done.passed + done.failed + done.ignored;
        let run = boot(ws, &kernel, &initramfs, opts.suite_timeout_secs, resume)?;
        if run.boot_secs.is_none() && attempt < BOOT_ATTEMPTS {
            println!(
                "xtask: the VM did not reach /init (attempt {attempt} of {BOOT_ATTEMPTS}); this is \
                 a boot failure in the emulator, not a test result. Console tail:"
            );
            print_serial_tail(&run.serial, 20);
            println!("xtask: retrying the boot");
            attempt += 1;
            continue;
        }
        boot_secs = boot_secs.or(run.boot_secs);
        let mut outcome = judge(&run);
        outcome.boot_secs = boot_secs;
        let lockup = (!outcome.complete && run.boot_secs.is_some())
            .then(|| soft_lockup(&run.serial))
            .flatten();
        match lockup {
            Some(what)
                if lockups.len() < LOCKUP_RESUMES
                    && (stalled < STALLED_RESUMES
                        || outcome.counts.passed
                            + outcome.counts.failed
                            + outcome.counts.ignored
                            > 0) =>
            {
                let c = outcome.counts;
                stalled = if c.passed + c.failed + c.ignored == 0 {
                    stalled + 1
                } else {
                    0
                };
                done = Counts {
                    passed: done.passed + c.passed,
                    failed: done.failed + c.failed,
                    ignored: done.ignored + c.ignored,
                };
                println!(
                    "xtask: the guest kernel stopped on a soft lockup ({what}) after {} more test \
                     verdicts; booting a fresh VM to run the remaining tests ({} of {LOCKUP_RESUMES} \
                     such restarts used). This is reported, not hidden: see serial.log above.",
                    c.passed + c.failed + c.ignored,
                    lockups.len() + 1
                );
                lockups.push(what);
                // The next boot writes serial.log afresh: keep this one's console.
                let kept = run
                    .serial
                    .with_file_name(format!("serial.boot{}.log", lockups.len()));
                if std::fs::rename(&run.serial, &kept).is_ok() {
                    println!("xtask: that boot's console is kept in {}", kept.display());
                }
            }
            _ => {
                let c = outcome.counts;
                outcome.counts = Counts {
                    passed: done.passed + c.passed,
                    failed: done.failed + c.failed,
                    ignored: done.ignored + c.ignored,
                };
                outcome.lockups = lockups;
                return Ok(outcome);
            }
        }
    }
}

/// Boots tried before a VM that never reaches /init counts as a failed tier.
const BOOT_ATTEMPTS: u32 = 3;

/// Fresh VMs booted after guest soft lockups before the tier counts as failed. The
/// lockup is QEMU TCG's: a vCPU spinning in a kernel copy or clear of a faulting page
/// (`clear_page_rep`, `memcpy_orig` under `copy_mc_user_highpage`; `init_on_alloc=0` and
/// `transparent_hugepage=never` only move it), in whatever task faults (init, a test, the
/// daemon), mostly after the flood and full-disk scenarios. Whole-suite runs have needed up
/// to 3 restarts, the audit_log binary alone 1-2 per run; 8 leaves room, while
/// [`STALLED_RESUMES`] fails a lockup that recurs on every boot.
const LOCKUP_RESUMES: usize = 8;

/// Lockups in a row after which no new test verdict came before the tier counts as
/// failed: a lockup that keeps the same test from ever finishing is not the emulator's
/// occasional one.
const STALLED_RESUMES: usize = 3;

/// The first soft-lockup report in the console log: `CPU#1 in clear_page_rep (task init)`.
fn soft_lockup(serial: &Path) -> Option<String> {
    let text = String::from_utf8_lossy(&std::fs::read(serial).ok()?).into_owned();
    let at = text.find("soft lockup - ")?;
    let rest = &text[at..];
    let line = rest.lines().next().unwrap_or_default();
    let cpu = line
        .split_whitespace()
        .find(|w| w.starts_with("CPU#"))
        .unwrap_or("CPU#?");
    let task = line.rsplit('[').next().unwrap_or("?").trim_end_matches(']');
    let rip = kernel_rip(rest.lines()).unwrap_or_else(|| "an unknown kernel function".into());
    Some(format!("{cpu} in {rip}, task {task}"))
}

/// The first kernel-mode RIP (`RIP: 0010:function+off/len`) among `lines`: where a crash
/// report says the CPU was.
fn kernel_rip<'a>(mut lines: impl Iterator<Item = &'a str>) -> Option<String> {
    lines.find_map(|l| {
        l.split_once("RIP: 0010:")
            .map(|(_, r)| r.trim().to_string())
    })
}

// ---------------------------------------------------------------------------------------
// initramfs

pub fn build_initramfs(ws: &Workspace, inputs: &VmInputs, opts: VmOptions) -> Result<PathBuf> {
    build_initramfs_with(ws, inputs, opts, |_| Ok(()))
}

/// [`build_initramfs`], with `extra` adding files to the tree before it is packed.
fn build_initramfs_with(
    ws: &Workspace,
    inputs: &VmInputs,
    opts: VmOptions,
    extra: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let vm_dir = ws.vm_dir();
    let tree = vm_dir.join("initramfs");
    if tree.exists() {
        std::fs::remove_dir_all(&tree)
            .with_context(|| format!("removing old {}", tree.display()))?;
    }
    populate_tree(ws, &tree, inputs, opts)?;
    extra(&tree)?;
    let out = vm_dir.join("initramfs.gz");
    pack_cpio_gz(&tree, &out)?;
    if !opts.keep_tree {
        let _ = std::fs::remove_dir_all(&tree);
    }
    Ok(out)
}

fn populate_tree(ws: &Workspace, tree: &Path, inputs: &VmInputs, opts: VmOptions) -> Result<()> {
    for dir in [
        "bin", "usr", "etc", "dev", "proc", "sys", "tmp", "run", "root", "tests", "var",
    ] {
        std::fs::create_dir_all(tree.join(dir))?;
    }
    // Debian-style merged /usr, so tests that exec /usr/bin/true or /sbin/... find them.
    symlink("bin", tree.join("sbin"))?;
    symlink("../bin", tree.join("usr/bin"))?;
    symlink("../bin", tree.join("usr/sbin"))?;
    symlink("../tmp", tree.join("var/tmp"))?;
    symlink("../run", tree.join("var/run"))?;

    let busybox = setup::vm_busybox_path(ws);
    copy_exe(&busybox, &tree.join("bin/busybox"))?;
    for applet in busybox_applets(&busybox)? {
        let link = tree.join("bin").join(&applet);
        if applet != "busybox" && !link.exists() {
            symlink("busybox", &link)?;
        }
    }
    if let Some(daemon) = &inputs.daemon {
        copy_exe(daemon, &tree.join("bin/interceptor"))?;
    }
    if let Some(probe) = &inputs.probe {
        copy_exe(probe, &tree.join("bin/interceptor-probe"))?;
    }
    for t in &inputs.tests {
        copy_exe(&t.path, &tree.join("tests").join(&t.name))?;
    }
    add_glibc(tree)?;

    write_file(
        tree,
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        0o644,
    )?;
    write_file(tree, "etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644)?;
    write_file(
        tree,
        "etc/hosts",
        "127.0.0.1 localhost\n::1 localhost\n",
        0o644,
    )?;
    let init = INIT_SCRIPT.replace("@TEST_TIMEOUT@", &opts.test_timeout_secs.to_string());
    write_file(tree, "init", &init, 0o755)?;
    Ok(())
}

/// The host's glibc loader, libc and one dynamically linked program (`/usr/bin/true`, as
/// `/opt/glibc/true`): the `ld.so /path/bin` scenario needs a real dynamic loader in the
/// guest, and everything else there is static.
fn add_glibc(tree: &Path) -> Result<()> {
    for (src, dst) in [
        ("/lib64/ld-linux-x86-64.so.2", "lib64/ld-linux-x86-64.so.2"),
        (
            "/lib/x86_64-linux-gnu/libc.so.6",
            "lib/x86_64-linux-gnu/libc.so.6",
        ),
        ("/usr/bin/true", "opt/glibc/true"),
    ] {
        let dst = tree.join(dst);
        std::fs::create_dir_all(dst.parent().expect("has a parent"))?;
        // Copy the file itself, not a symlink to it.
        let src = std::fs::canonicalize(src)
            .with_context(|| format!("{src} is missing on this host (Debian package libc6)"))?;
        copy_exe(&src, &dst)?;
    }
    Ok(())
}

fn busybox_applets(busybox: &Path) -> Result<Vec<String>> {
    let list = util::output_checked(Command::new(busybox).arg("--list"))?;
    let applets: Vec<String> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains('/'))
        .map(String::from)
        .collect();
    // /init depends on these; a busybox without them would fail in the guest, obscurely.
    for needed in [
        "sh", "mount", "timeout", "poweroff", "ip", "awk", "sed", "grep", "readlink", "usleep",
    ] {
        if !applets.iter().any(|a| a == needed) {
            bail!("{} has no `{needed}` applet", busybox.display());
        }
    }
    Ok(applets)
}

fn copy_exe(src: &Path, dst: &Path) -> Result<()> {
    std::fs::copy(src, dst)
        .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

fn write_file(tree: &Path, rel: &str, content: &str, mode: u32) -> Result<()> {
    let path = tree.join(rel);
    std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// `cpio -o -H newc | gzip` over the tree. Parents are listed before their contents: the
/// kernel's unpacker does not create missing directories.
fn pack_cpio_gz(tree: &Path, out: &Path) -> Result<()> {
    let mut names = Vec::new();
    list_tree(tree, Path::new(""), &mut names)?;

    let out_file =
        std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut cpio = Command::new("cpio")
        .args(["-o", "-H", "newc", "-R", "0:0", "--quiet"])
        .current_dir(tree)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start cpio (Debian package cpio)")?;
    let cpio_out = cpio.stdout.take().expect("piped");
    let mut gzip = Command::new("gzip")
        .arg("-1") // the archive is rebuilt on every run; speed over size
        .stdin(cpio_out)
        .stdout(out_file)
        .spawn()
        .context("cannot start gzip")?;
    {
        let mut stdin = cpio.stdin.take().expect("piped");
        for name in &names {
            writeln!(stdin, "{}", name.display())?;
        }
    }
    let cpio_status = cpio.wait()?;
    let gzip_status = gzip.wait()?;
    if !cpio_status.success() || !gzip_status.success() {
        bail!(
            "packing {} failed (cpio: {cpio_status}, gzip: {gzip_status})",
            out.display()
        );
    }
    Ok(())
}

fn list_tree(root: &Path, rel: &Path, names: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(root.join(rel))?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let rel_path = rel.join(e.file_name());
        names.push(rel_path.clone());
        if e.file_type()?.is_dir() {
            list_tree(root, &rel_path, names)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// bench mode

const BENCH_RUN: &str = "INTERCEPTOR-VM-BENCH-RUN";
const BENCH_EXIT: &str = "INTERCEPTOR-VM-BENCH-EXIT";

/// Bench mode (`cargo xtask bench kernel --vm`): the guest runs `command` (a shell line, as
/// /bench/run) instead of the tests, with `files` copied to /bin.
pub struct BenchInputs {
    pub daemon: PathBuf,
    pub files: Vec<PathBuf>,
    pub command: String,
}

/// What the guest's bench command wrote to the results port.
pub struct BenchOutcome {
    pub lines: Vec<String>,
    /// The command's exit status, when the guest got as far as reporting it.
    pub exit: Option<i32>,
    pub boot_secs: Option<f64>,
}

/// Boots the VM once in bench mode and returns the bench command's output.
pub fn run_bench(ws: &Workspace, bench: &BenchInputs, opts: VmOptions) -> Result<BenchOutcome> {
    let kernel = setup::vm_kernel_path(ws)?;
    let inputs = VmInputs {
        daemon: Some(bench.daemon.clone()),
        probe: None,
        tests: Vec::new(),
    };
    let initramfs = build_initramfs_with(ws, &inputs, opts, |tree| {
        for f in &bench.files {
            let name = f.file_name().context("bench file without a name")?;
            copy_exe(f, &tree.join("bin").join(name))?;
        }
        std::fs::create_dir_all(tree.join("bench"))?;
        write_file(
            tree,
            "bench/run",
            &format!("#!/bin/sh\n{}\n", bench.command),
            0o755,
        )
    })
    .context("building the VM initramfs (bench mode)")?;
    for attempt in 1..=BOOT_ATTEMPTS {
        let run = boot(ws, &kernel, &initramfs, opts.suite_timeout_secs, 0)?;
        if run.boot_secs.is_none() && attempt < BOOT_ATTEMPTS {
            println!(
                "xtask: the VM did not reach /init (attempt {attempt} of {BOOT_ATTEMPTS}); \
                 retrying the boot. Console tail:"
            );
            print_serial_tail(&run.serial, 20);
            continue;
        }
        let text = std::fs::read_to_string(&run.results).unwrap_or_default();
        let mut lines = Vec::new();
        let mut exit = None;
        let mut started = false;
        for line in text.lines() {
            if line.starts_with(BENCH_RUN) {
                started = true;
            } else if let Some(rc) = line.strip_prefix(BENCH_EXIT) {
                exit = rc.trim().parse().ok();
            } else if started {
                lines.push(line.to_string());
            }
        }
        if exit.is_none() {
            if run.timed_out {
                println!(
                    "xtask: the VM hit its limit after {:.0}s (raise it with --vm-timeout)",
                    run.wall_secs
                );
            }
            print_serial_tail(&run.serial, 40);
        }
        return Ok(BenchOutcome {
            lines,
            exit,
            boot_secs: run.boot_secs,
        });
    }
    unreachable!("the last attempt always returns")
}

// ---------------------------------------------------------------------------------------
// QEMU

struct Run {
    results: PathBuf,
    serial: PathBuf,
    boot_secs: Option<f64>,
    timed_out: bool,
    wall_secs: f64,
}

fn boot(
    ws: &Workspace,
    kernel: &Path,
    initramfs: &Path,
    limit_secs: u64,
    resume: u64,
) -> Result<Run> {
    let vm_dir = ws.vm_dir();
    let results = vm_dir.join("results.txt");
    let serial = vm_dir.join("serial.log");
    let _ = std::fs::remove_file(&results);
    let serial_file =
        std::fs::File::create(&serial).with_context(|| format!("creating {}", serial.display()))?;

    let limit = limit_secs.to_string();
    let mut cmd = Command::new("timeout");
    // --foreground keeps QEMU in our process group, so Ctrl-C on xtask stops it too.
    cmd.args(["--foreground", "-k", "5", &limit, "qemu-system-x86_64"]);
    cmd.args(QEMU_MACHINE)
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initramfs)
        .arg("-append")
        .arg(if resume > 0 {
            format!("{KERNEL_CMDLINE} interceptor.resume={resume}")
        } else {
            KERNEL_CMDLINE.to_string()
        })
        .args(["-device", "virtio-serial-pci"])
        .arg("-chardev")
        .arg(format!("file,id=res,path={}", results.display()))
        .args(["-device", "virtserialport,chardev=res,name=results"])
        // -nographic puts the serial console (and QEMU's own messages) on stdio: into the log.
        .stdin(Stdio::null())
        .stdout(serial_file.try_clone()?)
        .stderr(serial_file);
    println!(
        "xtask: booting the VM ({}), limit {limit_secs}s; console in {}",
        kernel.file_name().unwrap_or_default().to_string_lossy(),
        serial.display()
    );
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .context("cannot start qemu-system-x86_64 (under timeout)")?;

    // Relay the results file as it grows, so a long suite shows progress, and note when
    // the guest's /init reports in.
    let mut tail = Tail::default();
    let mut boot_secs = None;
    let status = loop {
        let finished = child.try_wait()?;
        for line in tail.new_lines(&results) {
            if boot_secs.is_none() && line.starts_with(BOOTED) {
                let secs = start.elapsed().as_secs_f64();
                boot_secs = Some(secs);
                println!(
                    "VM boot: {secs:.1} s (guest uptime {})",
                    line[BOOTED.len()..].trim()
                );
            }
            println!("{line}");
        }
        if let Some(status) = finished {
            break status;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    if let Some(rest) = tail.rest(&results) {
        println!("{rest}");
    }
    // `timeout` exits 124 when it had to stop QEMU; that is the only use of the status.
    let timed_out = status.code() == Some(124) || status.code() == Some(137);
    Ok(Run {
        results,
        serial,
        boot_secs,
        timed_out,
        wall_secs: start.elapsed().as_secs_f64(),
    })
}

/// Reads complete new lines from a file that another process appends to.
#[derive(Default)]
struct Tail {
    offset: u64,
    partial: Vec<u8>,
}

impl Tail {
    fn new_lines(&mut self, path: &Path) -> Vec<String> {
        let Ok(mut f) = std::fs::File::open(path) else {
            return Vec::new();
        };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut buf = Vec::new();
        if let Ok(n) = f.read_to_end(&mut buf) {
            self.offset += n as u64;
        }
        self.partial.extend_from_slice(&buf);
        let mut lines = Vec::new();
        while let Some(pos) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=pos).collect();
            lines.push(
                String::from_utf8_lossy(&line[..line.len() - 1])
                    .trim_end_matches('\r')
                    .to_string(),
            );
        }
        lines
    }

    /// An unterminated last line, if any, after the writer is gone.
    fn rest(&mut self, path: &Path) -> Option<String> {
        let _ = self.new_lines(path);
        (!self.partial.is_empty())
            .then(|| String::from_utf8_lossy(&std::mem::take(&mut self.partial)).into_owned())
    }
}

// ---------------------------------------------------------------------------------------
// verdict

fn judge(run: &Run) -> VmOutcome {
    let text = std::fs::read_to_string(&run.results).unwrap_or_default();
    let verdict = parse_results(&text);
    let Some(end) = verdict.end else {
        println!("VM suite FAILED: no end-of-suite marker");
        if run.timed_out {
            println!(
                "(the VM run hit its limit after {:.0}s; raise it with --vm-timeout / INTERCEPTOR_VM_TIMEOUT)",
                run.wall_secs
            );
        }
        if let Some(last) = &verdict.last_started {
            println!("(the last test started was {last})");
        }
        print_serial_tail(&run.serial, 60);
        println!(
            "(full logs: {} and {})",
            run.results.display(),
            run.serial.display()
        );
        let serial = std::fs::read(&run.serial)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let mut why = Vec::new();
        if run.timed_out {
            why.push(format!("the VM hit its {:.0} s limit", run.wall_secs));
        }
        if let Some(crash) = guest_crash(&serial) {
            why.push(format!("guest kernel: {crash}"));
        } else if !run.timed_out {
            why.push(format!(
                "QEMU exited after {:.0} s with no kernel crash in the console",
                run.wall_secs
            ));
        }
        if let Some(last) = &verdict.last_started {
            why.push(format!("while {last} ran"));
        }
        return VmOutcome {
            complete: false,
            counts: verdict.from_lines,
            boot_secs: run.boot_secs,
            lockups: Vec::new(),
            stopped: Some(why.join(", ")),
        };
    };
    if end != verdict.from_lines {
        println!(
            "xtask: warning: end marker says {end:?} but the per-test lines add up to {:?}",
            verdict.from_lines
        );
    }
    let counts = Counts {
        passed: end.passed,
        failed: end.failed.max(verdict.from_lines.failed),
        ignored: end.ignored,
    };
    VmOutcome {
        complete: true,
        counts,
        boot_secs: run.boot_secs,
        lockups: Vec::new(),
        stopped: None,
    }
}

/// The first line of the console that reports a guest kernel crash (panic, oops, BUG,
/// lockup), without its timestamp, and the function it happened in when the report
/// names one.
fn guest_crash(serial: &str) -> Option<String> {
    const MARKERS: &[&str] = &[
        "Kernel panic - not syncing",
        "Oops:",
        "BUG:",
        "general protection fault",
        "kernel BUG at",
        "self-detected stall",
    ];
    let lines: Vec<&str> = serial.lines().collect();
    let at = lines
        .iter()
        .position(|l| MARKERS.iter().any(|m| l.contains(m)))?;
    let strip = |l: &str| -> String {
        let l = l.trim();
        match l.strip_prefix('[').and_then(|r| r.split_once(']')) {
            Some((_, rest)) => rest.trim().to_string(),
            None => l.to_string(),
        }
    };
    let mut what = strip(lines[at]);
    if let Some(rip) = kernel_rip(lines[at..].iter().take(40).copied()) {
        what.push_str(&format!(" (RIP {rip})"));
    }
    Some(what)
}

#[derive(Debug, Default)]
struct Verdict {
    end: Option<Counts>,
    from_lines: Counts,
    last_started: Option<String>,
}

fn parse_results(text: &str) -> Verdict {
    let mut v = Verdict::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some(TEST_LINE) => match words.nth(1) {
                Some("PASS") => v.from_lines.passed += 1,
                Some("IGNORED") => v.from_lines.ignored += 1,
                Some(_) => v.from_lines.failed += 1,
                None => {}
            },
            Some("INTERCEPTOR-VM-RUN") => v.last_started = words.next().map(String::from),
            Some(SUITE_END) => {
                let mut c = Counts::default();
                for kv in words {
                    match kv.split_once('=') {
                        Some(("passed", n)) => c.passed = n.parse().unwrap_or(0),
                        Some(("failed", n)) => c.failed = n.parse().unwrap_or(u64::MAX),
                        Some(("ignored", n)) => c.ignored = n.parse().unwrap_or(0),
                        _ => {}
                    }
                }
                v.end = Some(c);
            }
            _ => {}
        }
    }
    v
}

fn print_serial_tail(serial: &Path, n: usize) {
    let text = std::fs::read(serial)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    println!("---- last {n} lines of {} ----", serial.display());
    for l in &lines[lines.len().saturating_sub(n)..] {
        println!("{l}");
    }
    println!("---- end of {} ----", serial.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_results() {
        let text = "INTERCEPTOR-VM-BOOTED 5.12\n\
                    INTERCEPTOR-VM-RUN t/a\nrunning 1 test\ntest a ... ok\n\
                    INTERCEPTOR-VM-TEST t/a PASS 1.00s exit=0\n\
                    INTERCEPTOR-VM-RUN t/b\n\
                    INTERCEPTOR-VM-TEST t/b TIMEOUT 120.00s exit=137\n\
                    INTERCEPTOR-VM-TEST t/c IGNORED\n\
                    INTERCEPTOR-VM-SUITE-END passed=1 failed=1 ignored=1\n";
        let v = parse_results(text);
        let c = Counts {
            passed: 1,
            failed: 1,
            ignored: 1,
        };
        assert_eq!(v.end, Some(c));
        assert_eq!(v.from_lines, c);
        assert_eq!(v.last_started.as_deref(), Some("t/b"));
    }

    #[test]
    fn names_a_soft_lockup_from_the_console() {
        let dir = std::env::temp_dir().join(format!("xtask-lockup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let serial = dir.join("serial.log");
        std::fs::write(
            &serial,
            "[  1.0] booted\n\
             [ 85.9] watchdog: BUG: soft lockup - CPU#1 stuck for 27s! [init:2359]\n\
             [ 85.9] Modules linked in:\n\
             [ 85.9] RIP: 0010:clear_page_rep+0xb/0x20\n\
             [ 85.9] RIP: 0033:0x460d80\n",
        )
        .unwrap();
        assert_eq!(
            soft_lockup(&serial).as_deref(),
            Some("CPU#1 in clear_page_rep+0xb/0x20, task init:2359")
        );
        std::fs::write(&serial, "[ 1.0] Kernel panic - not syncing: VFS\n").unwrap();
        assert_eq!(soft_lockup(&serial), None, "other panics are not resumed");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn names_the_first_guest_crash_in_the_console() {
        let console = "[    1.0] booted\n\
                       [  212.4] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI\n\
                       [  212.4] CPU: 1 UID: 0 PID: 1 Comm: init\n\
                       [  212.4] RIP: 0010:do_exit+0x1a/0xa60\n\
                       [  212.5] Kernel panic - not syncing: Attempted to kill init!\n";
        assert_eq!(
            guest_crash(console).as_deref(),
            Some("Oops: int3: 0000 [#1] PREEMPT SMP NOPTI (RIP do_exit+0x1a/0xa60)")
        );
        assert_eq!(
            guest_crash("[ 1.0] booted\n[ 2.0] reboot: Power down\n"),
            None
        );
    }

    #[test]
    fn missing_end_marker() {
        let v = parse_results("INTERCEPTOR-VM-BOOTED 5.1\nINTERCEPTOR-VM-RUN t/a\n");
        assert!(v.end.is_none());
    }
}
