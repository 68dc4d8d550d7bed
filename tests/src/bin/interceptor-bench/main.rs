//! Workloads and the in-guest driver of `cargo xtask bench kernel` (docs/benchmarks.md).
//!
//! The timed loops make no allocation and no syscall beyond the operation measured and
//! the clock reads (vDSO). Each prints one JSON object on one line.
//!
//! Usage (`exec` and `open` bind themselves to CPU $INTERCEPTOR_BENCH_CPU when it is set):
//!   noop                          exit 0 at once: the exec target (a static binary)
//!   exec N BIN [ARGS...]          N x posix_spawn(BIN, ARGS) + waitpid, after a short
//!                                 warm-up; every child must exit 0. Prints ops/s and the
//!                                 per-exec latency (spawn to reaped) percentiles.
//!   open N PATH                   N x open(PATH, O_RDONLY) + close, after a warm-up.
//!                                 Prints ops/s.
//!   fork N                        N x fork + _exit + waitpid (task tracking cost).
//!   build DIR JOBS                make clean, then one timed make -j JOBS in DIR.
//!   compare [OPTIONS]             the side-by-side bench against peers (compare.rs).
//!   suite [OPTIONS]               the whole kernel bench, as root: rounds of "daemon not
//!                                 loaded" and "daemon loaded" measurements, interleaved;
//!                                 one `INTERCEPTOR-BENCH {json}` line per measurement.
//!                                 The same code runs on the host and inside the VM; the
//!                                 analysis (medians, ratios, targets) is xtask's.
//!
//! suite options:
//!   --daemon PATH          the interceptor binary (default: interceptor on PATH)
//!   --rounds R             rounds (default 5)
//!   --exec-n N             execs per exec measurement (default 2000)
//!   --open-n N             opens per open measurement (default 200000)
//!   --held-n N             held execs per round (default 500)
//!   --expect-backend B     fail unless the daemon runs backend B (lsm | tracepoint)
//!   --prog-stats           after the rounds, one more daemon session with the kernel's
//!                          BPF run-time statistics on (BPF_ENABLE_STATS): per program,
//!                          calls and ns per call for each workload (what costs what).
//!                          Kept apart from the rounds: the statistics cost time too.
//!   --cpu C                run the workloads on CPU C only (default: the highest CPU
//!                          allowed); the daemon and the CLI are not pinned
//!   --no-pin               do not pin the workloads
//!   --realtime             run everything (workloads, daemon, CLI) as SCHED_FIFO 10, so
//!                          other tenants' CPU-bound jobs on a shared machine do not add
//!                          scheduler delays of a tick (4 ms) to random operations
use std::{
    ffi::{CString, OsStr, OsString},
    fs,
    io::Write as _,
    os::unix::{ffi::OsStrExt as _, fs::PermissionsExt as _, process::ExitStatusExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

mod compare;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let Some(mode) = args.first().and_then(|a| a.to_str()) else {
        return usage("no mode given");
    };
    let rest = &args[1..];
    let result = match mode {
        "noop" => return ExitCode::SUCCESS,
        "exec" => pin_from_env().and_then(|()| exec_mode(rest)),
        "open" => pin_from_env().and_then(|()| open_mode(rest)),
        "fork" => pin_from_env().and_then(|()| fork_mode(rest)),
        "build" => build_mode(rest),
        "suite" => suite(rest),
        "compare" => compare::run(rest),
        other => return usage(&format!("unknown mode {other:?}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("interceptor-bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!(
        "interceptor-bench: {problem}\nusage: interceptor-bench noop | exec N BIN [ARGS...] | open N PATH | fork N | build DIR JOBS | suite [OPTIONS] | compare [OPTIONS]"
    );
    ExitCode::from(2)
}

type Result<T> = std::result::Result<T, String>;

fn count_arg(arg: Option<&OsString>, what: &str) -> Result<usize> {
    arg.and_then(|a| a.to_str())
        .and_then(|a| a.parse().ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{what}: a positive count is required"))
}

fn cstring(s: &OsStr) -> Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| format!("{s:?} contains a NUL byte"))
}

/// CLOCK_MONOTONIC in nanoseconds (vDSO: no syscall).
#[inline(always)]
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Timed loops are cut into this many batches; the median batch rate is robust to another
/// tenant's burst landing on part of a run.
const BATCHES: usize = 10;

/// Median over batches of ops/s, from the batch end times (`ends[0]` is the start).
fn batch_median_rate(ends: &[u64], ops_per_batch: usize) -> f64 {
    let mut rates: Vec<f64> = ends
        .windows(2)
        .map(|w| ops_per_batch as f64 / ((w[1] - w[0]) as f64 / 1e9))
        .collect();
    rates.sort_by(f64::total_cmp);
    let n = rates.len();
    if n % 2 == 1 {
        rates[n / 2]
    } else {
        (rates[n / 2 - 1] + rates[n / 2]) / 2.0
    }
}

/// Binds this process (and the children it starts) to one CPU, so parent and child do not
/// migrate between measurements.
fn pin_to_cpu(cpu: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t with one bit set, passed by pointer with its size.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(format!("sched_setaffinity(cpu {cpu}): {}", errno()));
    }
    Ok(())
}

/// The highest CPU this process may run on.
fn last_allowed_cpu() -> Option<usize> {
    // SAFETY: sched_getaffinity fills the zeroed set we pass with its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        (0..libc::CPU_SETSIZE as usize)
            .rev()
            .find(|&c| libc::CPU_ISSET(c, &set))
    }
}

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// The CPU a workload binds itself to (set by the suite; empty or unset: no pinning).
const ENV_CPU: &str = "INTERCEPTOR_BENCH_CPU";

/// Binds this workload to the CPU named by [`ENV_CPU`], if any.
fn pin_from_env() -> Result<()> {
    match std::env::var(ENV_CPU).ok().filter(|v| !v.is_empty()) {
        Some(v) => pin_to_cpu(v.parse().map_err(|_| format!("{ENV_CPU}={v}: not a CPU"))?),
        None => Ok(()),
    }
}

/// Untimed operations before each timed loop: page cache, dentry cache, the runner's own
/// first-touch faults.
fn warmup_of(n: usize) -> usize {
    (n / 20).clamp(5, 100)
}

// ---------------------------------------------------------------------------------------
// exec

fn exec_mode(args: &[OsString]) -> Result<()> {
    let n = count_arg(args.first(), "exec N")?;
    let bin = args.get(1).ok_or("exec N BIN: BIN is required")?;
    let path = cstring(bin)?;
    // argv[0] is the binary's path, then the given arguments; the environment is empty, so
    // every exec copies the same few bytes whatever the caller's environment.
    let owned: Vec<CString> = args[1..]
        .iter()
        .map(|a| cstring(a))
        .collect::<Result<_>>()?;
    let mut argv: Vec<*mut libc::c_char> = owned.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv.push(std::ptr::null_mut());
    let envp: [*mut libc::c_char; 1] = [std::ptr::null_mut()];

    let spawn_wait = || -> Result<()> {
        let mut pid: libc::pid_t = 0;
        // SAFETY: path, argv and envp are NUL-terminated and outlive the call; no file
        // actions or attributes.
        let rc = unsafe {
            libc::posix_spawn(
                &mut pid,
                path.as_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                argv.as_ptr(),
                envp.as_ptr(),
            )
        };
        if rc != 0 {
            return Err(format!(
                "posix_spawn {bin:?}: {}",
                std::io::Error::from_raw_os_error(rc)
            ));
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
            return Err(format!("waitpid {pid}: {}", errno()));
        }
        if status != 0 {
            return Err(format!(
                "{bin:?} did not exit 0 ({})",
                std::process::ExitStatus::from_raw(status)
            ));
        }
        Ok(())
    };

    emit_line(&timed_loop("exec", n, true, spawn_wait)?);
    Ok(())
}

/// Runs `op` `n` times after an untimed warm-up and returns the result line: the whole-run
/// rate, the median batch rate, and (`per_op`) the per-operation latency percentiles. Without
/// `per_op` only batches are timed: a clock read per operation would be a sizeable part of
/// an operation as short as an open.
fn timed_loop(
    name: &str,
    n: usize,
    per_op: bool,
    mut op: impl FnMut() -> Result<()>,
) -> Result<Value> {
    for _ in 0..warmup_of(n) {
        op()?;
    }
    let mut lat_ns: Vec<u64> = Vec::with_capacity(if per_op { n } else { 0 });
    let per_batch = (n / BATCHES).max(1);
    let mut ends: Vec<u64> = Vec::with_capacity(BATCHES + 2);
    let start = now_ns();
    ends.push(start);
    for i in 1..=n {
        if per_op {
            let t0 = now_ns();
            op()?;
            let t1 = now_ns();
            lat_ns.push(t1 - t0);
            if i % per_batch == 0 {
                ends.push(t1);
            }
        } else {
            op()?;
            if i % per_batch == 0 {
                ends.push(now_ns());
            }
        }
    }
    let elapsed = now_ns() - start;
    let mut line = json!({
        "op": name,
        "n": n,
        "secs": elapsed as f64 / 1e9,
        "ops_per_sec": n as f64 / (elapsed as f64 / 1e9),
        "batch_median_ops_per_sec": batch_median_rate(&ends, per_batch),
    });
    if per_op {
        lat_ns.sort_unstable();
        let pct = |p: f64| -> f64 {
            let i = ((lat_ns.len() - 1) as f64 * p).round() as usize;
            lat_ns[i] as f64 / 1000.0
        };
        let mean_us = lat_ns.iter().sum::<u64>() as f64 / n as f64 / 1000.0;
        line["lat_us"] = json!({
            "min": pct(0.0), "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99),
            "max": pct(1.0), "mean": mean_us,
        });
    }
    Ok(line)
}

// ---------------------------------------------------------------------------------------
// open

fn open_mode(args: &[OsString]) -> Result<()> {
    let n = count_arg(args.first(), "open N")?;
    let path = cstring(args.get(1).ok_or("open N PATH: PATH is required")?)?;
    let open_close = || -> Result<()> {
        // SAFETY: a NUL-terminated path; the fd is closed at once.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(format!("open {path:?}: {}", errno()));
        }
        // SAFETY: closing the fd we just opened.
        unsafe { libc::close(fd) };
        Ok(())
    };
    emit_line(&timed_loop("open", n, false, open_close)?);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// fork and build

/// `fork N`: N x fork + _exit(0) in the child + waitpid: what tracking a new task costs.
fn fork_mode(args: &[OsString]) -> Result<()> {
    let n = count_arg(args.first(), "fork N")?;
    let fork_wait = || -> Result<()> {
        // SAFETY: this process is single-threaded; the child only calls _exit.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("fork: {}", errno()));
        }
        if pid == 0 {
            // SAFETY: async-signal-safe exit of the forked child, no unwinding.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        if unsafe { libc::waitpid(pid, &mut status, 0) } != pid || status != 0 {
            return Err(format!("fork child {pid}: status {status}, {}", errno()));
        }
        Ok(())
    };
    emit_line(&timed_loop("fork", n, true, fork_wait)?);
    Ok(())
}

/// `build DIR JOBS`: `make -C DIR clean` (untimed), then one timed `make -C DIR -j JOBS`:
/// a compiler's mix of execs, forks, opens and CPU. Reported as builds per second.
fn build_mode(args: &[OsString]) -> Result<()> {
    let dir = args.first().ok_or("build DIR JOBS: DIR is required")?;
    let jobs = count_arg(args.get(1), "build DIR JOBS")?;
    let make = |extra: &[&str]| -> Result<()> {
        let status = Command::new("make")
            .arg("-s")
            .arg("-C")
            .arg(dir)
            .args(extra)
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("starting make: {e}"))?;
        if !status.success() {
            return Err(format!("make {extra:?} in {dir:?} failed ({status})"));
        }
        Ok(())
    };
    make(&["clean"])?;
    let t0 = now_ns();
    make(&["-j", &jobs.to_string()])?;
    let secs = (now_ns() - t0) as f64 / 1e9;
    emit_line(&json!({
        "op": "build", "n": 1, "secs": secs,
        "ops_per_sec": 1.0 / secs, "batch_median_ops_per_sec": 1.0 / secs,
    }));
    Ok(())
}

fn emit_line(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

// ---------------------------------------------------------------------------------------
// suite

/// Prefix of every result line the driver (xtask) reads.
const RESULT: &str = "INTERCEPTOR-BENCH";
const INFO: &str = "INTERCEPTOR-BENCH-INFO";
const END: &str = "INTERCEPTOR-BENCH-END";
const PROG: &str = "INTERCEPTOR-BENCH-PROG";
/// How long the daemon may take to answer after start (the VM loads programs ~10x slower).
const DAEMON_PATIENCE: Duration = Duration::from_secs(180);
/// The daemon logs this for every exec it held, judged and resumed at once.
const ALLOWED_IN_USERSPACE: &str = "exec allowed by policy in userspace";

/// Options `suite` and `compare` share.
struct CommonOptions {
    daemon: PathBuf,
    rounds: usize,
    exec_n: usize,
    open_n: usize,
    expect_backend: Option<String>,
    realtime: bool,
    cpu: Option<usize>,
}

impl CommonOptions {
    fn new(exec_n: usize, open_n: usize) -> Self {
        Self {
            daemon: PathBuf::from("interceptor"),
            rounds: 5,
            exec_n,
            open_n,
            expect_backend: None,
            realtime: false,
            cpu: last_allowed_cpu(),
        }
    }
}

/// Parses `args` of mode `mode`: the common options into `common`, every other flag through
/// `own`, which returns false for a flag it does not know (then an error names it).
fn parse_options<'a>(
    args: &'a [OsString],
    mode: &str,
    common: &mut CommonOptions,
    // The flag, and its value taken from the arguments when the flag's parser asks for it.
    mut own: impl FnMut(&str, &mut dyn FnMut() -> Result<&'a OsString>) -> Result<bool>,
) -> Result<()> {
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let flag = flag.to_str().ok_or("non-UTF-8 option")?;
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag {
            "--daemon" => common.daemon = PathBuf::from(value()?),
            "--rounds" => common.rounds = count_arg(Some(value()?), "--rounds")?,
            "--exec-n" => common.exec_n = count_arg(Some(value()?), "--exec-n")?,
            "--open-n" => common.open_n = count_arg(Some(value()?), "--open-n")?,
            "--expect-backend" => {
                common.expect_backend = Some(value()?.to_string_lossy().into_owned())
            }
            "--realtime" => common.realtime = true,
            "--cpu" => {
                let v = value()?;
                common.cpu = Some(
                    v.to_str()
                        .and_then(|c| c.parse().ok())
                        .ok_or(format!("--cpu {v:?}: a CPU number is required"))?,
                )
            }
            "--no-pin" => common.cpu = None,
            other => {
                if !own(other, &mut value)? {
                    return Err(format!("unknown {mode} option {other}"));
                }
            }
        }
    }
    Ok(())
}

struct SuiteOptions {
    common: CommonOptions,
    held_n: usize,
    prog_stats: bool,
}

fn suite_options(args: &[OsString]) -> Result<SuiteOptions> {
    let mut common = CommonOptions::new(2000, 200_000);
    let (mut held_n, mut prog_stats) = (500, false);
    parse_options(args, "suite", &mut common, |flag, value| {
        match flag {
            "--held-n" => held_n = count_arg(Some(value()?), "--held-n")?,
            "--prog-stats" => prog_stats = true,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(SuiteOptions {
        common,
        held_n,
        prog_stats,
    })
}

/// The files one suite run works with, removed at the end.
struct Work {
    dir: PathBuf,
    /// The bench binary itself: runs the timed loops.
    runner: PathBuf,
    /// Copy of the bench binary the policy allows (kernel fast path).
    noop: PathBuf,
    /// Copy of the bench binary whose rule looks at argv: every exec is held and judged in
    /// userspace.
    held: PathBuf,
    /// The file the open loops open.
    open_target: PathBuf,
    policy: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    pin_dir: PathBuf,
}

impl Work {
    fn new() -> Result<Self> {
        let id = std::process::id();
        let dir = std::env::temp_dir().join(format!("interceptor-bench-{id}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let runner = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
        let copy = |name: &str| -> Result<PathBuf> {
            let dest = dir.join(name);
            fs::copy(&runner, &dest).map_err(|e| format!("copying to {}: {e}", dest.display()))?;
            fs::set_permissions(&dest, fs::Permissions::from_mode(0o755))
                .map_err(|e| e.to_string())?;
            Ok(dest)
        };
        let noop = copy("noop")?;
        let held = copy("held")?;
        let open_target = dir.join("open-target");
        fs::write(&open_target, b"interceptor bench\n").map_err(|e| e.to_string())?;
        let policy = dir.join("policy.toml");
        fs::write(&policy, bench_policy(&noop, &held, &open_target)).map_err(|e| e.to_string())?;
        Ok(Self {
            socket: dir.join("control.sock"),
            log: dir.join("daemon.log"),
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/interceptor-bench-{id}")),
            dir,
            runner,
            noop,
            held,
            open_target,
            policy,
        })
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Everything the workload touches is allowed; the held binary's rule matches an argument
/// no bench exec passes, so the daemon allows each held exec as soon as it judges it.
fn bench_policy(noop: &Path, held: &Path, open_target: &Path) -> String {
    format!(
        r#"version = 1

[defaults]
exec = "allow"
open = "allow"

[[rule]]
name = "bench-noop"
operation = "exec"
binary = "{noop}"
action = "allow"
reason = "the bench's exec target: decided by the kernel alone (fast path)"

[[rule]]
name = "bench-open-target"
operation = "open"
path = "{open}"
access = "read"
action = "allow"
reason = "the bench's open target"

[[rule]]
name = "bench-held"
operation = "exec"
binary = "{held}"
any_arg = "--never-given-by-the-bench"
action = "deny"
reason = "an argv matcher: the kernel holds every exec of this binary for the daemon to judge"
"#,
        noop = noop.display(),
        held = held.display(),
        open = open_target.display(),
    )
}

/// A daemon of our own (own socket, pins, log), stopped and unloaded on drop.
struct Daemon<'a> {
    bin: &'a Path,
    work: &'a Work,
    child: Option<Child>,
}

impl<'a> Daemon<'a> {
    fn start(
        bin: &'a Path,
        work: &'a Work,
        policy: &Path,
        expect_backend: Option<&str>,
    ) -> Result<Self> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&work.log)
            .map_err(|e| format!("daemon log: {e}"))?;
        let child = Command::new(bin)
            .arg("daemon")
            .arg("--socket")
            .arg(&work.socket)
            .arg("--policy")
            .arg(policy)
            .arg("--pin-dir")
            .arg(&work.pin_dir)
            .arg("--audit-db")
            .arg(work.dir.join("audit.db"))
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let mut d = Daemon {
            bin,
            work,
            child: Some(child),
        };
        let deadline = Instant::now() + DAEMON_PATIENCE;
        let status = loop {
            if let Some(exit) = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(format!(
                    "the daemon exited during startup ({exit}); log:\n{}",
                    d.log_tail()
                ));
            }
            let out = d.cli(&["status", "--json"])?;
            if out.status.success() {
                break serde_json::from_slice::<Value>(&out.stdout)
                    .map_err(|e| format!("status --json: {e}"))?;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the daemon did not answer within {DAEMON_PATIENCE:?}; log:\n{}",
                    d.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let backend = status["backend"].as_str().unwrap_or("?").to_string();
        if let Some(want) = expect_backend
            && backend != want
        {
            return Err(format!("the daemon runs the {backend} backend, not {want}"));
        }
        Ok(d)
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The daemon's resident set, in KiB; 0 if unreadable.
    fn rss_kb(&self) -> u64 {
        self.pid().map_or(0, rss_kb)
    }

    fn cli(&self, args: &[&str]) -> Result<std::process::Output> {
        Command::new(self.bin)
            .arg("--socket")
            .arg(&self.work.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running {}: {e}", self.bin.display()))
    }

    fn status(&self) -> Result<Value> {
        let out = self.cli(&["status", "--json"])?;
        if !out.status.success() {
            return Err(format!(
                "status: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("status --json: {e}"))
    }

    /// `interceptor --socket S run --agent bench -- ARGS...`, not started.
    fn agent(&self, args: &[&OsStr]) -> Command {
        let mut cmd = Command::new(self.bin);
        cmd.arg("--socket")
            .arg(&self.work.socket)
            .args(["run", "--agent", "bench", "--"])
            .args(args);
        cmd
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.work.log).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Stops the daemon (SIGTERM) and removes its programs and pins (`interceptor unload`).
    fn stop(mut self) -> Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(60);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let pin_dir = self.work.pin_dir.to_string_lossy().into_owned();
        let out = Command::new(self.bin)
            .args(["--socket"])
            .arg(&self.work.socket)
            .args(["unload", "--pin-dir", &pin_dir])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("unload: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "interceptor unload failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    }
}

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop_inner();
        }
    }
}

/// The field `key` (e.g. `commit_us=`) of the daemon's "allowed by policy in userspace"
/// lines, in log order.
fn daemon_field_us(log: &str, key: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains(ALLOWED_IN_USERSPACE))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|v| v.parse().ok())
        })
        .collect()
}

/// The `p` quantile (0..=1) of `v`, nearest rank; 0 for an empty slice.
fn percentile(v: &[u64], p: f64) -> u64 {
    let mut sorted = v.to_vec();
    sorted.sort_unstable();
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * p).round() as usize)
        .copied()
        .unwrap_or(0)
}

/// The resident set of a process (VmRSS in /proc/PID/status), in KiB; 0 if unreadable.
fn rss_kb(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Runs one workload process to completion and returns its JSON line.
fn measure(mut cmd: Command) -> Result<Value> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("starting the workload: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "workload {:?} failed ({})",
            cmd.get_args().collect::<Vec<_>>(),
            out.status
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or("the workload printed no result")?;
    serde_json::from_str(line).map_err(|e| format!("workload result {line:?}: {e}"))
}

fn report(round: usize, config: &str, mut result: Value, extra: &[(&str, Value)]) {
    result["round"] = json!(round);
    result["config"] = json!(config);
    for (k, v) in extra {
        result[*k] = v.clone();
    }
    println!("{RESULT} {result}");
    let _ = std::io::stdout().flush();
}

/// Other bpffs directories that hold attached links: another interceptor (a test, another
/// engineer's daemon) would add its own hooks to every measurement, "not loaded" included.
fn foreign_pins(own: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir("/sys/fs/bpf") else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p != own && p.join("links").is_dir())
        .map(|p| p.display().to_string())
        .collect()
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn info(v: Value) {
    println!("{INFO} {v}");
    let _ = std::io::stdout().flush();
}

/// This process (and what it starts) as SCHED_FIFO priority 10.
fn set_realtime() -> Result<()> {
    // The raw syscall: musl's sched_setscheduler() is a stub that returns ENOSYS.
    // SAFETY: a zeroed sched_param is valid; the kernel reads only sched_priority.
    let rc = unsafe {
        let mut param: libc::sched_param = std::mem::zeroed();
        param.sched_priority = 10;
        libc::syscall(libc::SYS_sched_setscheduler, 0, libc::SCHED_FIFO, &param)
    };
    if rc != 0 {
        return Err(format!("sched_setscheduler(SCHED_FIFO): {}", errno()));
    }
    Ok(())
}

fn suite(args: &[OsString]) -> Result<()> {
    let o = suite_options(args)?;
    if o.common.realtime {
        set_realtime()?;
    }
    let work = Work::new()?;
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    info(json!({
        "kernel": kernel.trim(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "realtime": o.common.realtime, "workload_cpu": o.common.cpu, "rounds": o.common.rounds, "exec_n": o.common.exec_n, "open_n": o.common.open_n, "held_n": o.held_n,
        "loadavg_start": loadavg(),
    }));
    let n = |v: usize| OsString::from(v.to_string());
    let exec_args = [
        OsString::from("exec"),
        n(o.common.exec_n),
        work.noop.clone().into(),
        "noop".into(),
    ];
    let open_args = [
        OsString::from("open"),
        n(o.common.open_n),
        work.open_target.clone().into(),
    ];
    let held_args = [
        OsString::from("exec"),
        n(o.held_n),
        work.held.clone().into(),
        "noop".into(),
    ];
    // The workload pins itself (the variable passes through `interceptor run`).
    let cpu_env = o.common.cpu.map(|c| c.to_string()).unwrap_or_default();
    let untracked = |args: &[OsString]| {
        let mut cmd = Command::new(&work.runner);
        cmd.args(args).env(ENV_CPU, &cpu_env);
        cmd
    };
    let as_agent = |d: &Daemon, args: &[OsString]| {
        let mut full: Vec<&OsStr> = vec![work.runner.as_os_str()];
        full.extend(args.iter().map(OsString::as_os_str));
        let mut cmd = d.agent(&full);
        cmd.env(ENV_CPU, &cpu_env);
        cmd
    };

    for round in 1..=o.common.rounds {
        // Alternate which block goes first (ABBA), so a drift in machine load during a
        // round does not always favour the same side.
        let loaded_first = round % 2 == 0;
        for loaded in [loaded_first, !loaded_first] {
            let foreign = foreign_pins(&work.pin_dir);
            let extra = [("foreign_pins", json!(foreign))];
            if !loaded {
                report(round, "unloaded", measure(untracked(&exec_args))?, &extra);
                report(round, "unloaded", measure(untracked(&open_args))?, &extra);
                continue;
            }
            let t0 = Instant::now();
            let daemon = Daemon::start(
                &o.common.daemon,
                &work,
                &work.policy,
                o.common.expect_backend.as_deref(),
            )?;
            let startup_secs = t0.elapsed().as_secs_f64();
            let status = daemon.status()?;
            if round == 1 {
                info(json!({
                    "backend": status["backend"],
                    "daemon_startup_secs": startup_secs,
                    "daemon_rss_idle_kb": daemon.rss_kb(),
                }));
            }
            report(round, "loaded", measure(untracked(&exec_args))?, &extra);
            report(round, "loaded", measure(untracked(&open_args))?, &extra);

            let before = daemon.log_text().matches(ALLOWED_IN_USERSPACE).count();
            report(
                round,
                "agent",
                measure(as_agent(&daemon, &exec_args))?,
                &extra,
            );
            let held_in_fast_path =
                daemon.log_text().matches(ALLOWED_IN_USERSPACE).count() - before;
            if held_in_fast_path != 0 {
                return Err(format!(
                    "{held_in_fast_path} fast-path execs were judged in userspace: the bench \
                     policy did not compile as intended"
                ));
            }
            report(
                round,
                "agent",
                measure(as_agent(&daemon, &open_args))?,
                &extra,
            );

            let log_before = daemon.log_text().len();
            let held = measure(as_agent(&daemon, &held_args))?;
            let log = daemon.log_text();
            let new_log = log.get(log_before..).unwrap_or("");
            let daemon_us = daemon_field_us(new_log, "latency_us=");
            let confirmed = daemon_us.len();
            let expected = o.held_n + warmup_of(o.held_n);
            if confirmed != expected {
                return Err(format!(
                    "{expected} execs of the held binary ran but the daemon judged {confirmed} \
                     in userspace; log tail:\n{}",
                    daemon.log_tail()
                ));
            }

            let counters = daemon.status()?["counters"].clone();
            report(
                round,
                "held",
                held,
                &[
                    ("foreign_pins", json!(foreign)),
                    ("held_confirmed", json!(confirmed)),
                    // The daemon's own share: held task adopted -> resumed (from its log).
                    ("daemon_us_p50", json!(percentile(&daemon_us, 0.5))),
                    ("daemon_us_p90", json!(percentile(&daemon_us, 0.9))),
                    ("counters", counters),
                    // After every workload of the round, the held execs last.
                    ("daemon_rss_kb", json!(daemon.rss_kb())),
                ],
            );
            daemon.stop()?;
        }
    }
    if o.prog_stats {
        let daemon = Daemon::start(
            &o.common.daemon,
            &work,
            &work.policy,
            o.common.expect_backend.as_deref(),
        )?;
        let _stats = prog_stats::enable()?;
        let runs: [(&str, Command); 5] = [
            ("untracked exec", untracked(&exec_args)),
            ("untracked open", untracked(&open_args)),
            ("agent exec", as_agent(&daemon, &exec_args)),
            ("agent open", as_agent(&daemon, &open_args)),
            ("held exec", as_agent(&daemon, &held_args)),
        ];
        for (what, cmd) in runs {
            let before = prog_stats::snapshot(&work.pin_dir)?;
            let result = measure(cmd)?;
            let after = prog_stats::snapshot(&work.pin_dir)?;
            let ops = result["n"].as_u64().unwrap_or(0) as usize;
            // The loop's warm-up ran the same operations.
            let ops = ops + warmup_of(ops);
            let programs: Vec<Value> = after
                .iter()
                .map(|(name, cnt, ns)| {
                    let (c0, n0) = before
                        .iter()
                        .find(|b| &b.0 == name)
                        .map_or((0, 0), |b| (b.1, b.2));
                    let calls = cnt - c0;
                    let time = ns - n0;
                    json!({
                        "program": name,
                        "calls": calls,
                        "ns_per_call": if calls > 0 { time as f64 / calls as f64 } else { 0.0 },
                        "ns_per_op": time as f64 / ops as f64,
                    })
                })
                .collect();
            println!(
                "{PROG} {}",
                json!({ "workload": what, "ops": ops, "result": result, "programs": programs })
            );
        }
        daemon.stop()?;
    }
    info(json!({ "loadavg_end": loadavg() }));
    println!("{END} ok");
    Ok(())
}

/// The kernel's per-program run-time statistics, read through the daemon's pinned links.
mod prog_stats {
    use std::{
        ffi::CString,
        os::fd::{FromRawFd as _, OwnedFd},
        path::Path,
    };

    const BPF_OBJ_GET: i64 = 7;
    const BPF_PROG_GET_FD_BY_ID: i64 = 13;
    const BPF_OBJ_GET_INFO_BY_FD: i64 = 15;
    const BPF_ENABLE_STATS: i64 = 32;
    /// Offsets in struct bpf_link_info and struct bpf_prog_info (include/uapi/linux/bpf.h).
    const LINK_PROG_ID: usize = 8;
    const PROG_RUN_TIME_NS: usize = 192;
    const PROG_RUN_CNT: usize = 200;

    /// bpf(cmd, attr, sizeof attr) with a zero-padded 128-byte attr.
    fn bpf(cmd: i64, attr: &mut [u8; 128]) -> Result<i32, String> {
        // SAFETY: attr is a valid buffer of the size passed; the commands used here read
        // and write only inside it, or in buffers it points to that outlive the call.
        let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), 128usize) };
        if rc < 0 {
            return Err(format!("bpf({cmd}): {}", std::io::Error::last_os_error()));
        }
        Ok(rc as i32)
    }

    fn owned(fd: i32) -> OwnedFd {
        // SAFETY: a new fd the kernel just returned to us.
        unsafe { OwnedFd::from_raw_fd(fd) }
    }

    /// Turns the statistics on until the returned fd is closed (BPF_STATS_RUN_TIME).
    pub fn enable() -> Result<OwnedFd, String> {
        let mut attr = [0u8; 128];
        bpf(BPF_ENABLE_STATS, &mut attr).map(owned)
    }

    fn info<const N: usize>(fd: &OwnedFd) -> Result<[u8; N], String> {
        use std::os::fd::AsRawFd as _;
        let mut buf = [0u8; N];
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&(fd.as_raw_fd() as u32).to_ne_bytes());
        attr[4..8].copy_from_slice(&(N as u32).to_ne_bytes());
        attr[8..16].copy_from_slice(&(buf.as_mut_ptr() as u64).to_ne_bytes());
        bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
        Ok(buf)
    }

    fn u64_at(buf: &[u8], off: usize) -> u64 {
        u64::from_ne_bytes(buf[off..off + 8].try_into().expect("8 bytes"))
    }

    /// (program, run count, run time ns) for every link pinned under `pin_dir/links`.
    pub fn snapshot(pin_dir: &Path) -> Result<Vec<(String, u64, u64)>, String> {
        let dir = pin_dir.join("links");
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let program = file.split('@').next().unwrap_or(&file).to_string();
            let path = CString::new(entry.path().into_os_string().into_encoded_bytes())
                .map_err(|e| e.to_string())?;
            let mut attr = [0u8; 128];
            attr[0..8].copy_from_slice(&(path.as_ptr() as u64).to_ne_bytes());
            let link = owned(bpf(BPF_OBJ_GET, &mut attr)?);
            let link_info: [u8; 48] = info(&link)?;
            let prog_id = u32::from_ne_bytes(
                link_info[LINK_PROG_ID..LINK_PROG_ID + 4]
                    .try_into()
                    .unwrap(),
            );
            let mut attr = [0u8; 128];
            attr[0..4].copy_from_slice(&prog_id.to_ne_bytes());
            let prog = owned(bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)?);
            let prog_info: [u8; 232] = info(&prog)?;
            out.push((
                program,
                u64_at(&prog_info, PROG_RUN_CNT),
                u64_at(&prog_info, PROG_RUN_TIME_NS),
            ));
        }
        out.sort();
        Ok(out)
    }
}
