//! `interceptor-bench compare`: the side-by-side bench of `cargo xtask bench`
//! (docs/benchmarks.md, "Against the peers").
//!
//! Every round runs each configuration once, in an order that rotates from round to round
//! and reverses on odd rounds, so no configuration always follows the same one or always
//! runs at the same point of a round. A configuration is a monitor started for the block
//! (and stopped after it) and a way of starting the workloads:
//!
//! - `none`: nothing loaded;
//! - `untracked`: the interceptor daemon loaded, the workload an ordinary process;
//! - `agent-fast`: the daemon loaded, the workload an agent (`interceptor run`), every exec
//!   and open decided by the kernel (allow fast path);
//! - `agent-inspected`: the same with a policy that sends every agent exec to the daemon,
//!   which allows it at once (the held-exec round trip);
//! - `fapolicyd`: fapolicyd (fanotify permission events) with the upstream default rule set,
//!   in permissive mode, the workload's files in its trust database;
//! - `auditd`: auditd with one execve/execveat syscall rule;
//! - `strace`: the workload under `strace -f -qq -o /dev/null`.
//!
//! Workloads (each one process, started afresh): `exec-static` (posix_spawn + wait of a
//! static binary), `exec-dynamic` (of /usr/bin/true, dynamically linked), `open-shallow`
//! and `open-deep` (open + close of a file 3 and 19 path components deep), `fork` (fork +
//! exit + wait), `build` (make -j2 of a small generated C project).
//!
//! One `INTERCEPTOR-BENCH {json}` line per measurement, with the monitor's CPU time during
//! the workload and its resident set after it; xtask computes ratios and medians.
//!
//! Options:
//!   --daemon PATH          the interceptor binary
//!   --configs A,B,...      configurations (default: all seven)
//!   --workloads A,B,...    workloads (default: all six)
//!   --rounds R             rounds (default 5)
//!   --exec-n N --open-n N --fork-n N   sizes (defaults 2000, 200000, 2000)
//!   --build-jobs J         make -j (default 2)
//!   --expect-backend B     fail unless the daemon runs backend B
//!   --realtime             everything SCHED_FIFO 10 (as `suite`; peers inherit it too)
//!   --cpu C | --no-pin     the CPU the loops bind to (build is never pinned)

use std::{
    ffi::OsString,
    fs,
    os::unix::{
        fs::PermissionsExt as _,
        process::{CommandExt as _, ExitStatusExt as _},
    },
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use super::{
    ALLOWED_IN_USERSPACE, CommonOptions, Daemon, END, ENV_CPU, Result, Work, count_arg, info,
    loadavg, measure, parse_options, report, set_realtime, warmup_of,
};

const CONFIGS: [&str; 7] = [
    "none",
    "untracked",
    "agent-fast",
    "agent-inspected",
    "fapolicyd",
    "auditd",
    "strace",
];
const WORKLOADS: [&str; 6] = [
    "exec-static",
    "exec-dynamic",
    "open-shallow",
    "open-deep",
    "fork",
    "build",
];
/// The audit rule's key, so the bench counts (and removes) only its own records and rule.
const AUDIT_KEY: &str = "interceptor-bench";
/// The upstream default rule set ("fapolicyd.rules.known-libs" in the package's
/// sample-rules/README-rules); Debian's own default is one rule denying every exec.
const FAPOLICYD_RULES: [&str; 11] = [
    "10-languages",
    "20-dracut",
    "21-updaters",
    "30-patterns",
    "40-bad-elf",
    "41-shared-obj",
    "42-trusted-elf",
    "70-trusted-lang",
    "72-shell",
    "90-deny-execute",
    "95-allow-open",
];

struct Options {
    common: CommonOptions,
    configs: Vec<String>,
    workloads: Vec<String>,
    fork_n: usize,
    build_jobs: usize,
}

fn list(value: &OsString, known: &[&str], what: &str) -> Result<Vec<String>> {
    let v = value.to_str().ok_or(format!("{what}: not UTF-8"))?;
    let items: Vec<String> = v.split(',').map(str::to_string).collect();
    for i in &items {
        if !known.contains(&i.as_str()) {
            return Err(format!(
                "{what}: unknown {i:?} (known: {})",
                known.join(", ")
            ));
        }
    }
    Ok(items)
}

fn options(args: &[OsString]) -> Result<Options> {
    let mut o = Options {
        common: CommonOptions::new(2000, 200_000),
        configs: CONFIGS.map(String::from).to_vec(),
        workloads: WORKLOADS.map(String::from).to_vec(),
        fork_n: 2000,
        build_jobs: 2,
    };
    parse_options(args, "compare", &mut o.common, |flag, value| {
        match flag {
            "--configs" => o.configs = list(value()?, &CONFIGS, "--configs")?,
            "--workloads" => o.workloads = list(value()?, &WORKLOADS, "--workloads")?,
            "--fork-n" => o.fork_n = count_arg(Some(value()?), "--fork-n")?,
            "--build-jobs" => o.build_jobs = count_arg(Some(value()?), "--build-jobs")?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if !o.configs.iter().any(|c| c == "none") {
        return Err("--configs must include none: every ratio is against it".into());
    }
    Ok(o)
}

/// The files the compare workloads use, besides [`Work`]'s.
struct Files {
    deep: PathBuf,
    build: PathBuf,
    /// Every agent exec is judged in userspace: a basename rule makes the policy's exec
    /// fallback, and no rule names the workload's binaries (so none is decided in the
    /// kernel); the rule never matches, so the daemon allows each exec at once.
    inspect_policy: PathBuf,
    /// auditd's configuration directory and log (`auditd -c`).
    auditd_dir: PathBuf,
}

impl Files {
    fn new(work: &Work) -> Result<Self> {
        let io = |e: std::io::Error| e.to_string();
        let mut deep = work.dir.join("deep");
        for i in 1..=16 {
            deep.push(format!("d{i}"));
        }
        fs::create_dir_all(&deep).map_err(io)?;
        let deep = deep.join("open-target");
        fs::write(&deep, b"interceptor bench\n").map_err(io)?;

        let build = work.dir.join("build");
        fs::create_dir_all(&build).map_err(io)?;
        let units = 24;
        let mut objs = Vec::new();
        let mut main = String::from("#include <stdio.h>\n");
        for i in 0..units {
            fs::write(
                build.join(format!("u{i}.c")),
                format!(
                    "#include <string.h>\n#include <stdlib.h>\n\
                     unsigned long u{i}(const char *s) {{\n\
                     \x20 unsigned long h = {i};\n\
                     \x20 for (size_t k = 0; k < strlen(s); k++) h = h * 31 + (unsigned char)s[k];\n\
                     \x20 return h ^ (unsigned long)abs((int)h);\n}}\n"
                ),
            )
            .map_err(io)?;
            objs.push(format!("u{i}.o"));
            main.push_str(&format!("unsigned long u{i}(const char *);\n"));
        }
        main.push_str("int main(int argc, char **argv) {\n  unsigned long h = 0;\n");
        for i in 0..units {
            main.push_str(&format!("  h += u{i}(argv[0]);\n"));
        }
        main.push_str("  printf(\"%lu %d\\n\", h, argc);\n  return 0;\n}\n");
        fs::write(build.join("main.c"), main).map_err(io)?;
        fs::write(
            build.join("Makefile"),
            format!(
                "OBJS = main.o {objs}\n\
                 prog: $(OBJS)\n\t$(CC) -o $@ $(OBJS)\n\
                 %.o: %.c\n\t$(CC) -O1 -c -o $@ $<\n\
                 clean:\n\trm -f prog $(OBJS)\n",
                objs = objs.join(" ")
            ),
        )
        .map_err(io)?;

        let inspect_policy = work.dir.join("inspect-policy.toml");
        fs::write(
            &inspect_policy,
            r#"version = 1

[defaults]
exec = "allow"
open = "allow"

[[rule]]
name = "bench-inspect-every-exec"
operation = "exec"
basename = "interceptor-bench-never-runs-this"
action = "deny"
reason = "a basename rule: every agent exec of a binary no rule names is judged in userspace"
"#,
        )
        .map_err(io)?;
        Ok(Self {
            deep,
            build,
            inspect_policy,
            auditd_dir: work.dir.join("auditd"),
        })
    }
}

/// One workload run: a program and its arguments; `pin`: the loop binds itself to a CPU.
struct Job {
    args: Vec<OsString>,
    pin: bool,
    /// How many execs of a program the workload makes (the inspected configuration checks
    /// the daemon judged at least this many).
    execs: usize,
}

fn job(o: &Options, work: &Work, files: &Files, workload: &str) -> Job {
    let n = |v: usize| OsString::from(v.to_string());
    let (args, pin, execs): (Vec<OsString>, bool, usize) = match workload {
        "exec-static" => (
            vec![
                "exec".into(),
                n(o.common.exec_n),
                work.noop.clone().into(),
                "noop".into(),
            ],
            true,
            o.common.exec_n + warmup_of(o.common.exec_n),
        ),
        "exec-dynamic" => (
            vec!["exec".into(), n(o.common.exec_n), "/usr/bin/true".into()],
            true,
            o.common.exec_n + warmup_of(o.common.exec_n),
        ),
        "open-shallow" => (
            vec![
                "open".into(),
                n(o.common.open_n),
                work.open_target.clone().into(),
            ],
            true,
            0,
        ),
        "open-deep" => (
            vec!["open".into(), n(o.common.open_n), files.deep.clone().into()],
            true,
            0,
        ),
        "fork" => (vec!["fork".into(), n(o.fork_n)], true, 0),
        // make, sh, cc, cc1, as, collect2, ld: dozens of execs; not pinned (-j).
        _ => (
            vec!["build".into(), files.build.clone().into(), n(o.build_jobs)],
            false,
            1,
        ),
    };
    Job { args, pin, execs }
}

/// A running monitor: what it is, its process (for CPU time and memory), and how a
/// workload is started under it.
enum Monitor<'a> {
    None,
    Interceptor { daemon: Daemon<'a>, agent: bool },
    Peer { name: &'static str, child: Child },
    Strace,
}

impl Monitor<'_> {
    fn pid(&self) -> Option<u32> {
        match self {
            Monitor::Interceptor { daemon, .. } => daemon.pid(),
            Monitor::Peer { child, .. } => Some(child.id()),
            Monitor::None | Monitor::Strace => None,
        }
    }

    fn command(&self, runner: &Path, job: &Job, cpu_env: &str) -> Command {
        let mut cmd = match self {
            Monitor::Interceptor {
                daemon,
                agent: true,
            } => {
                let mut full = vec![runner.as_os_str()];
                full.extend(job.args.iter().map(OsString::as_os_str));
                daemon.agent(&full)
            }
            Monitor::Strace => {
                let mut c = Command::new("strace");
                c.args(["-f", "-qq", "-o", "/dev/null", "--"])
                    .arg(runner)
                    .args(&job.args);
                c
            }
            _ => {
                let mut c = Command::new(runner);
                c.args(&job.args);
                c
            }
        };
        cmd.env(ENV_CPU, if job.pin { cpu_env } else { "" });
        cmd
    }

    fn stop(self) -> Result<()> {
        match self {
            Monitor::Interceptor { daemon, .. } => daemon.stop(),
            Monitor::Peer { name, mut child } => {
                if name == "auditd" {
                    auditctl(&audit_rule("-d"))?;
                }
                terminate(&mut child, name)
            }
            Monitor::None | Monitor::Strace => Ok(()),
        }
    }
}

fn terminate(child: &mut Child, name: &str) -> Result<()> {
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return if status.success() || status.signal() == Some(libc::SIGTERM) {
                Ok(())
            } else {
                Err(format!("{name} exited with {status}"))
            };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(format!("{name} did not stop within 30 s of SIGTERM"))
}

/// A peer daemon as our child, killed if this process dies (PR_SET_PDEATHSIG), so a crashed
/// bench never leaves fapolicyd or auditd running on the machine.
fn spawn_peer(program: &str, args: &[&str], log: &Path) -> Result<Child> {
    let out = fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().map_err(|e| e.to_string())?)
        .stderr(out);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| format!("starting {program}: {e}"))
}

/// Waits until `ready` holds, or the child exits, or 60 s pass.
fn wait_ready(child: &mut Child, name: &str, log: &Path, ready: impl Fn() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if ready() {
            return Ok(());
        }
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!(
                "{name} exited during startup ({status}); its output:\n{}",
                fs::read_to_string(log).unwrap_or_default()
            ));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!("{name} was not ready within 60 s"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run_tool(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn auditctl(args: &[&str]) -> Result<String> {
    run_tool("auditctl", args)
}

fn audit_rule(op: &str) -> Vec<&str> {
    vec![
        op,
        "always,exit",
        "-F",
        "arch=b64",
        "-S",
        "execve,execveat",
        "-k",
        AUDIT_KEY,
    ]
}

/// A field of `auditctl -s` (enabled, pid, lost, ...).
fn audit_status(field: &str) -> Option<u64> {
    auditctl(&["-s"]).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == field).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Records carrying the bench rule's key in auditd's log (one per audited exec).
fn audit_records(log: &Path) -> usize {
    fs::read_to_string(log)
        .map(|s| s.matches(&format!("key=\"{AUDIT_KEY}\"")).count())
        .unwrap_or(0)
}

/// Whether a process with this command name runs on the machine (/proc/PID/comm).
fn running(comm: &str) -> bool {
    fs::read_dir("/proc").is_ok_and(|d| {
        d.flatten()
            .any(|e| fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == comm))
    })
}

/// Machine-wide state the peers need, put back when the bench ends: fapolicyd's
/// configuration directory, and whether kernel auditing was enabled.
struct PeerSetup {
    fapolicyd_backup: Option<PathBuf>,
    audit_enabled: Option<u64>,
}

impl PeerSetup {
    fn new(o: &Options, work: &Work, files: &Files) -> Result<Self> {
        let mut setup = PeerSetup {
            fapolicyd_backup: None,
            audit_enabled: None,
        };
        if o.configs.iter().any(|c| c == "fapolicyd") {
            if running("fapolicyd") {
                return Err(
                    "fapolicyd is already running on this machine: the bench would replace its \
                     configuration; stop it first"
                        .into(),
                );
            }
            let backup = work.dir.join("fapolicyd-etc-backup");
            run_tool("cp", &["-a", "/etc/fapolicyd", &backup.to_string_lossy()])?;
            setup.fapolicyd_backup = Some(backup);
            configure_fapolicyd(work, files)?;
        }
        if o.configs.iter().any(|c| c == "auditd") {
            setup.audit_enabled = Some(audit_status("enabled").ok_or("auditctl -s: no enabled")?);
            if audit_status("pid").unwrap_or(0) != 0 {
                return Err("an audit daemon is already running: stop it first".into());
            }
            configure_auditd(&files.auditd_dir)?;
        }
        Ok(setup)
    }
}

impl Drop for PeerSetup {
    fn drop(&mut self) {
        if let Some(backup) = &self.fapolicyd_backup {
            let _ = fs::remove_dir_all("/etc/fapolicyd");
            let _ = run_tool("cp", &["-a", &backup.to_string_lossy(), "/etc/fapolicyd"]);
        }
        if let Some(enabled) = self.audit_enabled {
            let _ = auditctl(&["-e", &enabled.to_string()]);
        }
    }
}

/// auditd's own configuration directory for the bench (`auditd -c DIR`): the package's
/// settings, with the log in DIR, never rotated (the bench counts its records) and no
/// action when the disk fills (the bench's logs are small).
fn configure_auditd(dir: &Path) -> Result<()> {
    let conf = fs::read_to_string("/etc/audit/auditd.conf")
        .map_err(|e| format!("/etc/audit/auditd.conf: {e}"))?;
    let conf: String = conf
        .lines()
        .map(|l| match l.split('=').next().map(str::trim) {
            Some("log_file") => format!("log_file = {}", dir.join("audit.log").display()),
            Some("max_log_file_action") => "max_log_file_action = IGNORE".to_string(),
            _ => l.to_string(),
        })
        .map(|l| l + "\n")
        .collect();
    fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let path = dir.join("auditd.conf");
    fs::write(&path, conf).map_err(|e| format!("{}: {e}", path.display()))?;
    // auditd refuses a configuration others can write.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).map_err(|e| e.to_string())
}

/// fapolicyd with the upstream default rules, the file trust backend holding the workload's
/// programs and libraries, permissive (decisions made and logged, never enforced: the rest
/// of this machine's programs are not in its trust database), as root (the package's
/// unprivileged user cannot keep the capabilities here).
fn configure_fapolicyd(work: &Work, files: &Files) -> Result<()> {
    let etc = Path::new("/etc/fapolicyd");
    let samples = Path::new("/usr/share/fapolicyd/sample-rules");
    let rules = etc.join("rules.d");
    let _ = fs::remove_dir_all(&rules);
    fs::create_dir_all(&rules).map_err(|e| e.to_string())?;
    for r in FAPOLICYD_RULES {
        let name = format!("{r}.rules");
        fs::copy(samples.join(&name), rules.join(&name))
            .map_err(|e| format!("{}: {e}", samples.join(&name).display()))?;
    }
    run_tool("fagenrules", &[])?;
    let conf_path = etc.join("fapolicyd.conf");
    let conf = fs::read_to_string(&conf_path).map_err(|e| e.to_string())?;
    let conf: String = conf
        .lines()
        .map(|l| match l.split('=').next().map(str::trim) {
            Some("permissive") => "permissive = 1".to_string(),
            Some("trust") => "trust = file".to_string(),
            Some("uid") => "uid = root".to_string(),
            Some("gid") => "gid = root".to_string(),
            _ => l.to_string(),
        })
        .map(|l| l + "\n")
        .collect();
    fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
    let _ = fs::remove_file(etc.join("trust.d/interceptor-bench"));
    let mut trusted: Vec<PathBuf> = vec![
        work.runner.clone(),
        work.noop.clone(),
        PathBuf::from("/usr/bin/true"),
    ];
    for program in ["make", "sh", "cc", "as", "ld"] {
        if let Ok(p) = run_tool("sh", &["-c", &format!("command -v {program}")]) {
            trusted.push(PathBuf::from(p.trim()));
        }
    }
    for internal in ["cc1", "collect2", "lto-wrapper"] {
        if let Ok(p) = run_tool("cc", &[&format!("-print-prog-name={internal}")]) {
            trusted.push(PathBuf::from(p.trim()));
        }
    }
    let mut all: Vec<PathBuf> = Vec::new();
    for p in trusted {
        let Ok(real) = fs::canonicalize(&p) else {
            continue;
        };
        // Their shared libraries, and the dynamic loader (`ldd` prints both).
        if let Ok(libs) = run_tool("ldd", &[&real.to_string_lossy()]) {
            for lib in libs.split_whitespace().filter(|w| w.starts_with('/')) {
                if let Ok(l) = fs::canonicalize(lib) {
                    all.push(l);
                }
            }
        }
        all.push(real);
    }
    all.push(files.build.clone());
    all.sort();
    all.dedup();
    for p in &all {
        let path = p.to_string_lossy();
        let args = ["--file", "add", &path, "--trust-file", "interceptor-bench"];
        match run_tool("fapolicyd-cli", &args) {
            // Already trusted (an operator's own trust file names it): nothing to do.
            Err(e) if e.contains("nothing to add") => {}
            other => drop(other?),
        }
    }
    info(json!({ "fapolicyd_trusted_paths": all.len(), "fapolicyd_rules": FAPOLICYD_RULES }));
    Ok(())
}

fn start<'a>(config: &str, o: &'a Options, work: &'a Work, files: &Files) -> Result<Monitor<'a>> {
    let backend = o.common.expect_backend.as_deref();
    Ok(match config {
        "none" => Monitor::None,
        "untracked" | "agent-fast" => Monitor::Interceptor {
            daemon: Daemon::start(&o.common.daemon, work, &work.policy, backend)?,
            agent: config == "agent-fast",
        },
        "agent-inspected" => Monitor::Interceptor {
            daemon: Daemon::start(&o.common.daemon, work, &files.inspect_policy, backend)?,
            agent: true,
        },
        "fapolicyd" => {
            let log = work.dir.join("fapolicyd.log");
            let mut child = spawn_peer("fapolicyd", &["--permissive", "--debug-deny"], &log)?;
            wait_ready(&mut child, "fapolicyd", &log, || {
                fs::read_to_string(&log).is_ok_and(|s| s.contains("Starting to listen for events"))
            })?;
            Monitor::Peer {
                name: "fapolicyd",
                child,
            }
        }
        "auditd" => {
            let log = work.dir.join("auditd.log");
            // A fresh log per block: the bench counts the records each workload adds.
            let _ = fs::remove_file(files.auditd_dir.join("audit.log"));
            let dir = files.auditd_dir.to_string_lossy();
            let mut child = spawn_peer("auditd", &["-n", "-c", &dir], &log)?;
            let pid = u64::from(child.id());
            wait_ready(&mut child, "auditd", &log, || {
                audit_status("pid") == Some(pid)
            })?;
            auditctl(&audit_rule("-a"))?;
            Monitor::Peer {
                name: "auditd",
                child,
            }
        }
        _ => Monitor::Strace,
    })
}

/// utime + stime of a process and all its threads, in milliseconds (/proc/PID/stat).
fn cpu_ms(pid: u32) -> f64 {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces): state is field 3.
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 * 1000.0 / hz
}

fn round_order(configs: &[String], round: usize) -> Vec<String> {
    let k = configs.len();
    let mut order: Vec<String> = (0..k).map(|i| configs[(i + round) % k].clone()).collect();
    if round % 2 == 1 {
        order.reverse();
    }
    order
}

pub fn run(args: &[OsString]) -> Result<()> {
    let o = options(args)?;
    if o.common.realtime {
        set_realtime()?;
    }
    let work = Work::new()?;
    let files = Files::new(&work)?;
    let _peers = PeerSetup::new(&o, &work, &files)?;
    info(json!({
        "mode": "compare",
        "kernel": fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "realtime": o.common.realtime, "workload_cpu": o.common.cpu, "rounds": o.common.rounds,
        "exec_n": o.common.exec_n, "open_n": o.common.open_n, "fork_n": o.fork_n, "build_jobs": o.build_jobs,
        "configs": o.configs, "workloads": o.workloads, "loadavg_start": loadavg(),
    }));
    let cpu_env = o.common.cpu.map(|c| c.to_string()).unwrap_or_default();
    for round in 1..=o.common.rounds {
        for config in round_order(&o.configs, round) {
            let t0 = Instant::now();
            let monitor = start(&config, &o, &work, &files)?;
            let startup_secs = t0.elapsed().as_secs_f64();
            let rss_start_kb = monitor.pid().map(super::rss_kb);
            if let Monitor::Interceptor { daemon, .. } = &monitor {
                info(json!({ "backend": daemon.status()?["backend"] }));
            }
            for workload in &o.workloads {
                let job = job(&o, &work, &files, workload);
                let cmd = monitor.command(&work.runner, &job, &cpu_env);
                let pid = monitor.pid();
                let cpu0 = pid.map(cpu_ms);
                let judged0 = judged(&monitor);
                // auditd's counts, before: only its own configuration has any.
                let audit_log = files.auditd_dir.join("audit.log");
                let audit0 = (config == "auditd")
                    .then(|| (audit_records(&audit_log), audit_status("lost").unwrap_or(0)));
                let result = measure(cmd)?;
                let mut extra: Vec<(&str, Value)> = vec![
                    ("workload", json!(workload)),
                    ("monitor_startup_secs", json!(startup_secs)),
                ];
                if let (Some(pid), Some(cpu0)) = (pid, cpu0) {
                    extra.push(("monitor_cpu_ms", json!(cpu_ms(pid) - cpu0)));
                    extra.push(("monitor_rss_kb", json!(super::rss_kb(pid))));
                    extra.push(("monitor_rss_start_kb", json!(rss_start_kb)));
                }
                check(&config, &monitor, &job, judged0, &mut extra)?;
                if let Some((records0, lost0)) = audit0 {
                    // auditd may still be writing the last records: give it a moment.
                    std::thread::sleep(Duration::from_millis(200));
                    let records = audit_records(&audit_log).saturating_sub(records0);
                    let lost = audit_status("lost").unwrap_or(0);
                    extra.push(("audit_records", json!(records)));
                    extra.push(("audit_lost", json!(lost.saturating_sub(lost0))));
                }
                report(round, &config, result, &extra);
            }
            if let Monitor::Interceptor { daemon, .. } = &monitor {
                info(
                    json!({ "round": round, "config": config, "counters": daemon.status()?["counters"] }),
                );
            }
            monitor.stop()?;
        }
    }
    info(json!({ "loadavg_end": loadavg() }));
    println!("{END} ok");
    Ok(())
}

/// How many agent execs the daemon has judged in userspace so far (its log).
fn judged(monitor: &Monitor) -> usize {
    match monitor {
        Monitor::Interceptor { daemon, .. } => {
            daemon.log_text().matches(ALLOWED_IN_USERSPACE).count()
        }
        _ => 0,
    }
}

/// The configuration did what it claims: the fast path judged nothing in userspace, the
/// inspected configuration judged every exec the workload made.
fn check(
    config: &str,
    monitor: &Monitor,
    job: &Job,
    before: usize,
    extra: &mut Vec<(&str, Value)>,
) -> Result<()> {
    let Monitor::Interceptor { daemon, .. } = monitor else {
        return Ok(());
    };
    let log = daemon.log_text();
    let n = log.matches(ALLOWED_IN_USERSPACE).count() - before;
    match config {
        "agent-fast" | "untracked" if n != 0 => Err(format!(
            "{config}: {n} execs were judged in userspace; the bench policy did not compile \
             to the kernel fast path"
        )),
        "agent-inspected" if n < job.execs => Err(format!(
            "agent-inspected: the workload made at least {} execs but the daemon judged {n}",
            job.execs
        )),
        "agent-inspected" => {
            extra.push(("judged_in_userspace", json!(n)));
            // The last `n` of a field of the daemon's "allowed in userspace" lines.
            let newest = |key: &str| {
                let mut all = super::daemon_field_us(&log, key);
                all.split_off(all.len().saturating_sub(n))
            };
            // The daemon's own share of each held exec: adopted -> resumed.
            let us = newest("latency_us=");
            extra.push(("daemon_us_p50", json!(super::percentile(&us, 0.5))));
            extra.push(("daemon_us_p99", json!(super::percentile(&us, 0.99))));
            // Of which: committing the allow decision to the audit log before resuming.
            let commit = newest("commit_us=");
            extra.push(("commit_us_p50", json!(super::percentile(&commit, 0.5))));
            Ok(())
        }
        _ => Ok(()),
    }
}
