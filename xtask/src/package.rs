//! The Debian package: `cargo xtask package` builds it; test tier 4 builds it, installs it
//! into a scratch root and checks it.
//!
//! Build: the static (musl) release daemon writes its own man pages and completions into
//! target/<triple>/release/package/ (so they come from the real command line), then
//! cargo-deb packs the assets listed in interceptor/Cargo.toml into target/debian/.
//!
//! Check (tier 4), each step failing the tier on its own:
//! - `dpkg --root` installs the package into an empty scratch root (its own dpkg database;
//!   the maintainer scripts honour `$DPKG_ROOT`), and every file and directory the package
//!   promises is there with its mode;
//! - the packaged binary runs (`--version`), and accepts the packaged policy and config;
//! - `systemd-analyze verify` accepts the unit, with the host's systemd units beside it;
//! - `systemd-analyze security --offline` scores it (reported; above [`MAX_EXPOSURE`] fails);
//! - the unit's `SystemCallFilter=` admits every system call the packaged daemon makes
//!   while it starts, holds and releases an agent, reloads and stops (traced with strace).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};

use crate::Workspace;
use crate::artifacts::MUSL_TARGET;
use crate::util::{output_checked, run_checked};

/// The exposure score `systemd-analyze security` gives the unit may not rise above this
/// (it is 3.x with the unit as shipped; 10 is an unhardened root service).
pub const MAX_EXPOSURE: f64 = 3.5;

/// Files (path in the package, mode) the package must install.
const EXPECTED: &[(&str, u32)] = &[
    ("usr/bin/interceptor", 0o755),
    ("usr/lib/systemd/system/interceptor.service", 0o644),
    ("usr/lib/tmpfiles.d/interceptor.conf", 0o644),
    ("etc/interceptor/interceptor.toml", 0o644),
    ("etc/interceptor/policy.toml", 0o644),
    ("usr/share/interceptor/policies/default.toml", 0o644),
    ("usr/share/interceptor/policies/examples/strict.toml", 0o644),
    ("usr/share/man/man1/interceptor.1.gz", 0o644),
    ("usr/share/man/man1/interceptor-daemon.1.gz", 0o644),
    ("usr/share/man/man1/interceptor-run.1.gz", 0o644),
    ("usr/share/bash-completion/completions/interceptor", 0o644),
    ("usr/share/zsh/vendor-completions/_interceptor", 0o644),
    (
        "usr/share/fish/vendor_completions.d/interceptor.fish",
        0o644,
    ),
    ("usr/share/doc/interceptor/copyright", 0o644),
    ("usr/share/doc/interceptor/install.md", 0o644),
    // Made by postinst.
    ("var/lib/interceptor", 0o700),
];

/// Builds the .deb from the static release daemon `daemon`; returns its path.
pub fn build(ws: &Workspace, daemon: &Path) -> Result<PathBuf> {
    let release = daemon.parent().context("the daemon's directory")?;
    let generated = release.join("package");
    let _ = std::fs::remove_dir_all(&generated);
    let man = generated.join("man");
    run_checked(Command::new(daemon).arg("man").arg("--out").arg(&man))?;
    // Debian ships man pages compressed; -n keeps the archive reproducible.
    for page in std::fs::read_dir(&man)? {
        run_checked(Command::new("gzip").args(["-9n", "-f"]).arg(page?.path()))?;
    }
    let completions = generated.join("completions");
    std::fs::create_dir_all(&completions)?;
    for (shell, file) in [
        ("bash", "interceptor.bash"),
        ("zsh", "_interceptor"),
        ("fish", "interceptor.fish"),
    ] {
        let script = output_checked(Command::new(daemon).args(["completions", shell]))?;
        std::fs::write(completions.join(file), script)?;
    }
    let out_dir = ws.target.join("debian");
    let _ = std::fs::remove_dir_all(&out_dir);
    let mut cmd = ws.cargo();
    cmd.args([
        "deb",
        "-p",
        "interceptor",
        "--no-build",
        "--target",
        MUSL_TARGET,
        "--output",
    ])
    .arg(&out_dir);
    let printed = output_checked(&mut cmd)?;
    let deb = PathBuf::from(printed.lines().last().unwrap_or_default().trim());
    ensure!(
        deb.extension().is_some_and(|e| e == "deb") && deb.is_file(),
        "cargo deb did not report a .deb (it printed {printed:?})"
    );
    println!("xtask: built {}", deb.display());
    Ok(deb)
}

/// What tier 4 found, for the summary.
pub struct Report {
    pub exposure: f64,
    pub syscalls: usize,
}

/// Installs `deb` into a scratch root under the target directory and checks it.
pub fn check(ws: &Workspace, deb: &Path) -> Result<Report> {
    let root = ws.target.join("package-root");
    let _ = std::fs::remove_dir_all(&root);
    let dpkg_dir = root.join("var/lib/dpkg");
    for dir in ["info", "updates"] {
        std::fs::create_dir_all(dpkg_dir.join(dir))?;
    }
    for file in ["status", "available"] {
        std::fs::write(dpkg_dir.join(file), "")?;
    }
    // The maintainer scripts run outside the root (it has no shell) with $DPKG_ROOT set;
    // they touch only files below it then, and ask no service manager anything.
    run_checked(
        Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .args(["--log=/dev/null", "--force-script-chrootless", "--install"])
            .arg(deb),
    )
    .context("dpkg --install into the scratch root")?;
    let status = output_checked(
        Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .args(["-s", "interceptor"]),
    )?;
    ensure!(
        status.contains("Status: install ok installed"),
        "dpkg does not list the package as installed:\n{status}"
    );
    for (path, mode) in EXPECTED {
        let meta = std::fs::metadata(root.join(path))
            .with_context(|| format!("the package installs no /{path}"))?;
        let found = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777;
        ensure!(found == *mode, "/{path} has mode {found:o}, not {mode:o}");
    }
    let conffiles = output_checked(
        Command::new("dpkg-query")
            .arg(format!("--admindir={}", dpkg_dir.display()))
            .args(["-W", "-f=${Conffiles}", "interceptor"]),
    )?;
    for conf in [
        "/etc/interceptor/interceptor.toml",
        "/etc/interceptor/policy.toml",
    ] {
        ensure!(
            conffiles.contains(conf),
            "{conf} is not a conffile (an upgrade would overwrite the operator's edits): {conffiles}"
        );
    }

    let bin = root.join("usr/bin/interceptor");
    let version = output_checked(Command::new(&bin).arg("--version"))?;
    let want = format!("interceptor {}", env!("CARGO_PKG_VERSION"));
    ensure!(
        version.trim() == want,
        "--version says {version:?}, not {want:?}"
    );
    println!(
        "xtask: tier 4: the packaged binary says `{}`",
        version.trim()
    );
    run_checked(
        Command::new(&bin)
            .args(["policy", "check"])
            .arg(root.join("etc/interceptor/policy.toml")),
    )?;
    run_checked(
        Command::new(&bin)
            .args(["config", "check"])
            .arg(root.join("etc/interceptor/interceptor.toml")),
    )?;

    // systemd-analyze resolves the unit's dependencies and ExecReload's /bin/kill in the
    // root: give it what a real host has beside the package.
    let units = root.join("usr/lib/systemd/system");
    for entry in std::fs::read_dir("/usr/lib/systemd/system")? {
        let entry = entry?;
        let dest = units.join(entry.file_name());
        if !dest.exists() {
            run_checked(Command::new("cp").arg("-a").arg(entry.path()).arg(&dest))?;
        }
    }
    std::fs::copy("/usr/bin/kill", root.join("usr/bin/kill"))?;
    std::os::unix::fs::symlink("usr/bin", root.join("bin"))?;
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("interceptor.service")
        // Documentation=man:interceptor(1) is looked up with man(1): in the package's pages.
        .env("MANPATH", root.join("usr/share/man"))
        .output()
        .context("running systemd-analyze verify")?;
    let complaints = String::from_utf8_lossy(&verify.stderr).into_owned();
    ensure!(
        verify.status.success() && !complaints.contains("interceptor"),
        "systemd-analyze verify rejects the unit ({}):\n{complaints}",
        verify.status
    );
    println!("xtask: tier 4: systemd-analyze verify accepts interceptor.service");
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(format!("--root={}", root.display()))
        .arg("interceptor.service")
        .output()
        .context("running systemd-analyze security")?;
    let text = String::from_utf8_lossy(&security.stdout);
    let exposure = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for interceptor.service:")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        .with_context(|| format!("no exposure score in systemd-analyze's output:\n{text}"))?;
    println!("xtask: tier 4: systemd-analyze security: exposure {exposure:.1} (10 = unhardened)");
    ensure!(
        exposure <= MAX_EXPOSURE,
        "the unit's exposure rose to {exposure} (limit {MAX_EXPOSURE}):\n{text}"
    );
    let syscalls = check_syscall_filter(&root, &bin)?;
    Ok(Report { exposure, syscalls })
}

/// Runs the packaged daemon under strace through a hold, an approval, a reload and a stop,
/// and checks that the unit's `SystemCallFilter=` lines admit every system call it made.
fn check_syscall_filter(root: &Path, bin: &Path) -> Result<usize> {
    let unit = std::fs::read_to_string(root.join("usr/lib/systemd/system/interceptor.service"))?;
    let allowed = allowed_syscalls(&unit)?;
    let work = root.join("strace");
    std::fs::create_dir_all(&work)?;
    let trace = work.join("trace");
    let socket = work.join("control.sock");
    let pin_dir = format!("/sys/fs/bpf/interceptor-package-{}", std::process::id());
    let held = work.join("held-true");
    std::fs::copy("/usr/bin/true", &held)?;
    let mut daemon = Command::new("strace")
        .args(["-f", "-qq", "-o"])
        .arg(&trace)
        .arg(bin)
        .arg("daemon")
        .arg("--socket")
        .arg(&socket)
        .args(["--pin-dir", &pin_dir, "--listen", "127.0.0.1:0"])
        .arg("--audit-db")
        .arg(work.join("audit.db"))
        .arg("--approvals-db")
        .arg(work.join("approvals.db"))
        .arg("--policy")
        .arg(root.join("etc/interceptor/policy.toml"))
        .arg("--hold-exec")
        .arg(&held)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.join("daemon.log"))?)
        .spawn()
        .context("starting the packaged daemon under strace")?;
    // Signals go to the daemon itself: strace would take them as its own and detach.
    let traced_pid = |strace: u32| -> Option<i32> {
        let children =
            std::fs::read_to_string(format!("/proc/{strace}/task/{strace}/children")).ok()?;
        children.split_whitespace().next()?.parse().ok()
    };
    let mut daemon_pid = None;
    let result = (|| -> Result<()> {
        let cli = |args: &[&str]| {
            Command::new(bin)
                .arg("--socket")
                .arg(&socket)
                .args(args)
                .output()
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cli(&["status"])?.status.success() {
            ensure!(
                Instant::now() < deadline,
                "the traced daemon did not answer in 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        daemon_pid = traced_pid(daemon.id());
        let pid = daemon_pid.context("strace's child (the daemon) not found")?;
        println!("xtask: tier 4: traced daemon answers (pid {pid})");
        let mut agent = Command::new(bin)
            .arg("--socket")
            .arg(&socket)
            .args(["run", "--agent", "package-check", "--"])
            .arg(&held)
            .spawn()?;
        let id = loop {
            let out = cli(&["approvals", "list", "--json"])?;
            let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            if let Some(id) = list
                .as_array()
                .and_then(|a| a.first())
                .and_then(|r| r["id"].as_u64())
            {
                break id;
            }
            ensure!(Instant::now() < deadline, "the agent was never held");
            std::thread::sleep(Duration::from_millis(100));
        };
        ensure!(
            cli(&["approvals", "approve", &id.to_string()])?
                .status
                .success()
        );
        ensure!(agent.wait()?.success(), "the approved agent failed");
        println!("xtask: tier 4: held agent approved and finished");
        // SAFETY: signalling the daemon by the pid just read.
        unsafe { libc::kill(pid, libc::SIGHUP) };
        std::thread::sleep(Duration::from_secs(1));
        ensure!(
            cli(&["status"])?.status.success(),
            "no answer after the reload"
        );
        Ok(())
    })();
    // SIGTERM, as systemd stops it; strace ends with it.
    match daemon_pid {
        // SAFETY: signalling the daemon by its pid.
        Some(pid) => unsafe { libc::kill(pid, libc::SIGTERM) },
        None => unsafe { libc::kill(daemon.id() as i32, libc::SIGKILL) },
    };
    let _ = daemon.wait();
    let _ = Command::new(bin)
        .args(["unload", "--pin-dir", &pin_dir])
        .arg("--socket")
        .arg(&socket)
        .output();
    result.with_context(|| {
        format!(
            "the traced daemon (log: {})",
            work.join("daemon.log").display()
        )
    })?;

    let traced = std::fs::read_to_string(&trace)?;
    let calls = traced_calls(&traced);
    let mut used: Vec<&str> = calls.iter().map(|c| c.name).collect();
    used.sort_unstable();
    used.dedup();
    // A call strace could only number (`syscall_0x1000`) has no name a filter could list.
    // If the kernel answered ENOSYS it implements no such call: under the filter it fails
    // all the same, with SystemCallErrorNumber=EPERM's errno. It is shown, not hidden.
    let (unnamed, named): (Vec<&str>, Vec<&str>) =
        used.iter().partition(|n| n.starts_with("syscall_0x"));
    let refused = refused_calls(&calls, &allowed);
    for name in &unnamed {
        let lines: Vec<&str> = calls
            .iter()
            .filter(|c| c.name == *name)
            .map(|c| c.line)
            .collect();
        let implemented = refused.contains(name);
        println!(
            "xtask: tier 4: strace saw {} call(s) it could only number, {name}; {}:",
            lines.len(),
            if implemented {
                "the kernel answered, so the filter would change its outcome"
            } else {
                "the kernel answered ENOSYS (no such call here), so the filter changes only the errno"
            }
        );
        for line in lines.iter().take(5) {
            println!("xtask: tier 4:   {line}");
        }
    }
    ensure!(
        refused.is_empty(),
        "the unit's SystemCallFilter= would refuse system calls the daemon makes: {refused:?} (trace: {})",
        trace.display()
    );
    println!(
        "xtask: tier 4: SystemCallFilter= admits all {} system calls the daemon made",
        named.len()
    );
    Ok(named.len())
}

/// The traced calls the filter would refuse: a name it does not list, or a number strace
/// could not name that the kernel implements (answered other than ENOSYS).
fn refused_calls<'a>(calls: &[TracedCall<'a>], allowed: &[String]) -> Vec<&'a str> {
    let mut refused: Vec<&str> = calls
        .iter()
        .filter(|c| match c.name.starts_with("syscall_0x") {
            // Its answer is on the line that ends it, not on an `<unfinished ...>` one.
            true => !c.line.contains("ENOSYS") && !c.line.ends_with("<unfinished ...>"),
            false => !allowed.iter().any(|a| a == c.name),
        })
        .map(|c| c.name)
        .collect();
    refused.sort_unstable();
    refused.dedup();
    refused
}

/// One system call in an `strace -f -o` trace: its name and the line it was read from.
struct TracedCall<'a> {
    name: &'a str,
    line: &'a str,
}

/// The calls of a trace, one per entry or resumption line (`PID name(` or
/// `PID <... name resumed>`); strace's exit, kill and signal lines are not calls.
fn traced_calls(trace: &str) -> Vec<TracedCall<'_>> {
    trace
        .lines()
        .filter_map(|line| {
            let rest = line.split_once(' ')?.1.trim_start();
            let rest = rest.strip_prefix("<... ").unwrap_or(rest);
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let name = &rest[..len];
            let call = !name.is_empty()
                && rest[len..].starts_with(['(', ' '])
                && !matches!(name, "exited" | "killed" | "resumed");
            call.then_some(TracedCall { name, line })
        })
        .collect()
}

/// The system calls the unit's `SystemCallFilter=` lines allow: the first line's allow
/// list, minus each later `~` line, groups expanded by `systemd-analyze syscall-filter`.
fn allowed_syscalls(unit: &str) -> Result<Vec<String>> {
    let lines: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.trim().strip_prefix("SystemCallFilter="))
        .collect();
    ensure!(!lines.is_empty(), "the unit has no SystemCallFilter=");
    ensure!(
        !lines[0].starts_with('~'),
        "the first SystemCallFilter= line must be an allow list"
    );
    let mut allowed: Vec<String> = Vec::new();
    for line in &lines {
        let (deny, items) = match line.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, *line),
        };
        for item in items.split_whitespace() {
            let names = expand(item)?;
            if deny {
                allowed.retain(|a| !names.contains(a));
            } else {
                allowed.extend(names);
            }
        }
    }
    if allowed.is_empty() {
        bail!("the unit's SystemCallFilter= allows nothing");
    }
    Ok(allowed)
}

/// One filter item as system call names: a `@group` through systemd-analyze (nested
/// groups included), a plain name as itself.
fn expand(item: &str) -> Result<Vec<String>> {
    if !item.starts_with('@') {
        return Ok(vec![item.to_string()]);
    }
    let text = output_checked(Command::new("systemd-analyze").args(["syscall-filter", item]))?;
    let mut names = Vec::new();
    for line in text.lines().skip(1).map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('@') {
            names.extend(expand(line)?);
        } else {
            names.push(line.to_string());
        }
    }
    ensure!(!names.is_empty(), "systemd-analyze knows no group {item}");
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "\
100 execve(\"/usr/bin/interceptor\", [\"interceptor\"], 0x7ffd /* 3 vars */) = 0
101 futex(0x7f00, FUTEX_WAIT_PRIVATE, 0, NULL <unfinished ...>
100 syscall_0x1000(0, 0, 0, 0, 0, 0 <unfinished ...>
100 <... syscall_0x1000 resumed>) = -1 ENOSYS (Function not implemented)
101 <... futex resumed>) = 0
102 syscall_0x1b8(0x3, 0) = 0
100 --- SIGHUP {si_signo=SIGHUP, si_code=SI_USER} ---
101 +++ exited with 0 +++
100 reboot(LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_POWER_OFF) = -1 EPERM
";

    #[test]
    fn trace_lines_become_calls_and_strace_notices_do_not() {
        let names: Vec<&str> = traced_calls(TRACE).iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "execve",
                "futex",
                "syscall_0x1000",
                "syscall_0x1000",
                "futex",
                "syscall_0x1b8",
                "reboot"
            ]
        );
    }

    #[test]
    fn unlisted_names_and_implemented_unnamed_numbers_are_refused() {
        let allowed: Vec<String> = ["execve", "futex"].map(String::from).to_vec();
        let calls = traced_calls(TRACE);
        // syscall_0x1000 got ENOSYS: no such call, the filter only changes the errno.
        assert_eq!(refused_calls(&calls, &allowed), ["reboot", "syscall_0x1b8"]);
    }
}
