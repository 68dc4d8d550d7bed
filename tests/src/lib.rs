//! Harness for the scenario tests: the real daemon binary on the real kernel.
//!
//! The same static test binaries run on the host (tier 2, tracepoint backend) and inside the
//! BPF-LSM VM (tier 3, lsm backend). `cargo xtask test` sets:
//! - `INTERCEPTOR_BIN`: the interceptor binary under test;
//! - `INTERCEPTOR_PROBE`: the probe program (src/bin/interceptor-probe.rs);
//! - `INTERCEPTOR_EXPECT_BACKEND`: `lsm` or `tracepoint`; every test checks the daemon runs
//!   exactly that backend, so a VM that silently fell back to tracepoints fails.
//!
//! Missing variables are a test failure, never a skip.
//!
//! [`webdriver`] drives Debian's headless Chromium (tier 2 only: the VM has no browser).

use std::{
    fs,
    io::Read as _,
    os::unix::{
        fs::PermissionsExt as _,
        process::{CommandExt as _, ExitStatusExt as _},
    },
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod http;
pub mod receiver;
pub mod webdriver;

/// Generous: the VM emulates the CPU and runs ~20x slower than the host.
pub const PATIENCE: Duration = Duration::from_secs(60);

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the integration tests through `cargo xtask test`")
    })
}

/// The interceptor binary under test.
pub fn interceptor_bin() -> PathBuf {
    required_env("INTERCEPTOR_BIN").into()
}

/// The probe program.
pub fn probe_bin() -> PathBuf {
    required_env("INTERCEPTOR_PROBE").into()
}

/// glibc's dynamic loader. The VM image carries the host's (the `ld.so /path/bin` scenario
/// needs it); a machine without it cannot run that scenario, which then fails.
pub const LD_SO: &str = "/lib64/ld-linux-x86-64.so.2";

/// A dynamically linked program (exits 0): the VM image's copy of the host's
/// `/usr/bin/true` at /opt/glibc/true, else the host's own.
pub fn dynamic_true() -> PathBuf {
    let vm = Path::new("/opt/glibc/true");
    if vm.exists() {
        vm.into()
    } else {
        "/usr/bin/true".into()
    }
}

/// The backend this environment must run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Lsm,
    Tracepoint,
}

/// The backend this test run expects (`INTERCEPTOR_EXPECT_BACKEND`).
pub fn expected_backend() -> Backend {
    match required_env("INTERCEPTOR_EXPECT_BACKEND").as_str() {
        "lsm" => Backend::Lsm,
        "tracepoint" => Backend::Tracepoint,
        other => panic!("INTERCEPTOR_EXPECT_BACKEND={other}: expected lsm or tracepoint"),
    }
}

/// A scratch directory, removed on drop.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("interceptor-it-{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create test dir");
        Self { path }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes a secret file (mode 600, as the daemon requires) and returns its path.
    pub fn secret(&self, name: &str, value: &str) -> PathBuf {
        let path = self.join(name);
        fs::write(&path, value).expect("write secret");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod secret");
        path
    }

    /// A copy of `src` under `name`, executable: a distinct file (inode) for rules to name.
    pub fn copy_exe(&self, src: &Path, name: &str) -> PathBuf {
        let dest = self.join(name);
        fs::copy(src, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o755)).expect("chmod copy");
        dest
    }

    /// A copy of the probe under `name`: a distinct file (inode) for rules to name.
    pub fn probe_copy(&self, name: &str) -> PathBuf {
        let dest = self.join(name);
        fs::copy(probe_bin(), &dest).expect("copy probe");
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o755)).expect("chmod probe copy");
        dest
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A running daemon with its own socket and rules; stopped (SIGTERM) on drop. When the test
/// is failing, its log is printed.
pub struct Daemon {
    child: Option<Child>,
    pub socket: PathBuf,
    /// The daemon's pins (its own bpffs directory, removed with `interceptor unload` on drop).
    pub pin_dir: PathBuf,
    log: PathBuf,
    args: Vec<std::ffi::OsString>,
    /// Environment variables set for the daemon process only.
    env: Vec<(String, std::ffi::OsString)>,
    /// Capability bounding set the daemon runs with, as a systemd unit's
    /// `CapabilityBoundingSet=` (with `NoNewPrivileges=yes`) would leave it; `None`: all.
    bounding_caps: Option<Vec<u32>>,
    /// How `interceptor audit` finds this daemon's log: `--db PATH` or `--db-url URL`.
    pub audit_args: Vec<String>,
}

/// A rule given on the daemon's command line.
pub enum Rule<'a> {
    DenyExec(&'a Path),
    HoldExec(&'a Path),
}

impl Daemon {
    /// Starts a daemon with only `rules` (an empty policy file otherwise) and waits until
    /// it answers; checks it runs the expected backend.
    pub fn start(dir: &TestDir, rules: &[Rule<'_>]) -> Self {
        Self::start_with(dir, rules, &[])
    }

    /// Like [`Daemon::start`], with more `interceptor daemon` arguments.
    pub fn start_with(dir: &TestDir, rules: &[Rule<'_>], extra: &[&str]) -> Self {
        Self::start_with_env(dir, rules, extra, &[])
    }

    /// Like [`Daemon::start_with`], with environment variables for the daemon (as systemd
    /// would set them).
    pub fn start_with_env(
        dir: &TestDir,
        rules: &[Rule<'_>],
        extra: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Self {
        let mut daemon = Self::start_with_env_unspawned(dir, rules, extra, env);
        daemon.spawn();
        daemon
    }

    fn start_with_env_unspawned(
        dir: &TestDir,
        rules: &[Rule<'_>],
        extra: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Self {
        let socket = dir.join("control.sock");
        let policy = dir.join("policy.toml");
        // A test may write its own policy first; otherwise the daemon gets an empty one.
        if !policy.exists() {
            fs::write(&policy, "version = 1\n").expect("write policy");
        }
        let pin_dir = Path::new("/sys/fs/bpf").join(dir.path.file_name().expect("test dir name"));
        let mut args: Vec<std::ffi::OsString> =
            vec!["daemon".into(), "--socket".into(), socket.clone().into()];
        args.extend([
            "--policy".into(),
            policy.into(),
            "--pin-dir".into(),
            pin_dir.clone().into(),
        ]);
        for rule in rules {
            let (flag, path) = match rule {
                Rule::DenyExec(p) => ("--deny-exec", p),
                Rule::HoldExec(p) => ("--hold-exec", p),
            };
            args.extend([flag.into(), path.as_os_str().to_owned()]);
        }
        // Each daemon writes its own audit log, in the test's directory unless told otherwise.
        let flag_value = |flag: &str| {
            extra
                .iter()
                .position(|a| *a == flag)
                .and_then(|i| extra.get(i + 1))
                .map(|v| v.to_string())
        };
        let audit_args = if let Some(url) = flag_value("--audit-url") {
            vec!["--db-url".to_string(), url]
        } else if let Some(db) = flag_value("--audit-db") {
            vec!["--db".to_string(), db]
        } else {
            let db = dir.join("audit.db").display().to_string();
            args.extend(["--audit-db".into(), db.clone().into()]);
            vec!["--db".to_string(), db]
        };
        // Approval state, like the log, is the test's own.
        if flag_value("--approvals-db").is_none() {
            args.extend([
                "--approvals-db".into(),
                dir.join("approvals.db").into_os_string(),
            ]);
        }
        // Any free port: a host daemon may hold the default one.
        if flag_value("--listen").is_none() {
            args.extend(["--listen".into(), "127.0.0.1:0".into()]);
        }
        args.extend(extra.iter().map(Into::into));
        Daemon {
            child: None,
            socket,
            pin_dir,
            log: dir.join("daemon.log"),
            args,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_os_string()))
                .collect(),
            audit_args,
            bounding_caps: None,
        }
    }

    /// Like [`Daemon::start_with`], with the daemon confined to the capability bounding set
    /// `caps` (capability numbers) and no new privileges, as systemd starts it.
    pub fn start_confined(dir: &TestDir, rules: &[Rule<'_>], extra: &[&str], caps: &[u32]) -> Self {
        let mut daemon = Self::start_with_env_unspawned(dir, rules, extra, &[]);
        daemon.bounding_caps = Some(caps.to_vec());
        daemon.spawn();
        daemon
    }

    /// The daemon process's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// Starts the daemon process (appending to its log) and waits until it answers with the
    /// expected backend.
    fn spawn(&mut self) {
        let log_file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open daemon log");
        let mut cmd = Command::new(interceptor_bin());
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log_file.try_clone().expect("dup log"))
            .stderr(log_file);
        if let Some(keep) = self.bounding_caps.clone() {
            let last: u32 = fs::read_to_string("/proc/sys/kernel/cap_last_cap")
                .expect("read cap_last_cap")
                .trim()
                .parse()
                .expect("cap_last_cap is a number");
            // SAFETY: only async-signal-safe prctl calls between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    for cap in (0..=last).filter(|c| !keep.contains(c)) {
                        if libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().expect("start interceptor daemon");
        self.child = Some(child);
        let started = Instant::now();
        let deadline = started + PATIENCE;
        let status = loop {
            if let Some(exit) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "daemon exited during startup ({exit}):\n{}",
                    self.log_text()
                );
            }
            let out = self.cli(&["status", "--json"]);
            if out.status.success() {
                break serde_json::from_slice::<Value>(&out.stdout).expect("status is JSON");
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not answer within {PATIENCE:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        // Shown with the output of a failing test (and with --nocapture).
        eprintln!("daemon answered after {:.2?}", started.elapsed());
        let want = match expected_backend() {
            Backend::Lsm => "lsm",
            Backend::Tracepoint => "tracepoint",
        };
        assert_eq!(
            status["backend"],
            want,
            "daemon chose the wrong backend:\n{}",
            self.log_text()
        );
    }

    /// Kills the daemon with SIGKILL (no cleanup of any kind) and waits for it to be gone.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("daemon running");
        child.kill().expect("SIGKILL the daemon");
        child.wait().expect("reap the daemon");
    }

    /// Stops the daemon with SIGTERM, as systemd does, and waits for it to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        // SAFETY: signalling our own child by pid.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
        child.wait().expect("reap the daemon")
    }

    /// Starts a new daemon with the same arguments (and pins) as the first.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the daemon before restarting it");
        self.spawn();
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `interceptor --socket S ARGS...` to completion.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run interceptor")
    }

    /// `interceptor --socket S ARGS...`, not started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(interceptor_bin());
        cmd.arg("--socket").arg(&self.socket).args(args);
        cmd
    }

    /// `interceptor run --agent AGENT -- PROGRAM ARGS...`, not started.
    pub fn agent(&self, agent: &str, program: &Path, args: &[&str]) -> Command {
        let mut cmd = self.command(&["run", "--agent", agent, "--"]);
        cmd.arg(program).args(args);
        cmd
    }

    /// Runs a CLI command that must succeed with JSON output.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "interceptor {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        serde_json::from_slice(&out.stdout).expect("JSON output")
    }

    /// `interceptor audit ARGS...` on this daemon's log, to completion.
    pub fn audit_cli(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(interceptor_bin());
        cmd.arg("audit").args(&self.audit_args).args(args);
        cmd.output().expect("run interceptor audit")
    }

    /// The rows `interceptor audit query --format json --limit 0 FILTERS...` returns.
    pub fn audit_rows(&self, filters: &[&str]) -> Vec<Value> {
        self.try_audit_rows(filters)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.log_text()))
    }

    /// [`Self::audit_rows`], with a failed query as an error instead of a panic.
    pub fn try_audit_rows(&self, filters: &[&str]) -> Result<Vec<Value>, String> {
        let mut args = vec!["query", "--format", "json", "--limit", "0"];
        args.extend_from_slice(filters);
        let out = self.audit_cli(&args);
        if !out.status.success() {
            return Err(format!(
                "interceptor audit {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        match serde_json::from_slice(&out.stdout).expect("audit query JSON") {
            Value::Array(rows) => Ok(rows),
            other => panic!("audit query printed {other}, not an array"),
        }
    }

    /// The approval rows of request `id`, oldest first, once there are at least `n`.
    pub fn approval_rows(&self, id: u64, n: usize) -> Vec<Value> {
        self.wait_for(&format!("{n} approval rows of request {id}"), || {
            let rows: Vec<Value> = self
                .audit_rows(&["--kind", "approval"])
                .into_iter()
                .filter(|r| r["event"]["request"] == id)
                .collect();
            (rows.len() >= n).then_some(rows)
        })
    }

    /// Kernel counter `name` as `status --json` reports it now.
    pub fn counter(&self, name: &str) -> u64 {
        counter(&self.json(&["status", "--json"]), name)
    }

    /// Whether `status` states a guarantee (or a "NOT guaranteed") starting with `prefix`.
    pub fn states(&self, prefix: &str) -> bool {
        let status = self.json(&["status", "--json"]);
        status["guarantees"]
            .as_array()
            .expect("status lists guarantees")
            .iter()
            .any(|g| g.as_str().is_some_and(|g| g.starts_with(prefix)))
    }

    /// Sends `sig` to the daemon process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling the daemon this test started, by its pid.
        assert_eq!(
            unsafe { libc::kill(self.pid() as i32, sig) },
            0,
            "kill {sig}"
        );
    }

    /// Asserts that `audit verify` finds the whole hash chain intact.
    pub fn assert_audit_verifies(&self) {
        let verify = self.audit_cli(&["verify"]);
        assert!(
            verify.status.success(),
            "audit verify: {}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
    }

    /// Waits for the `denied` decision on an exec of `denied` (a `Rule::DenyExec`) that
    /// `pred` accepts; returns the row.
    pub fn wait_denied_exec(
        &self,
        denied: &Path,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let rule = format!("cli:deny-exec:{}", denied.display());
        self.wait_audit(what, &["--kind", "decision", "--rule", &rule], |r| {
            r["outcome"] == "denied" && pred(r)
        })
    }

    /// Waits for a `loss` row recording kernel counter `name` at `at_least` or more. The
    /// refusals that have no row of their own (the guards', the kernel's fail-closed ones)
    /// reach the audit log this way: the daemon records the counters whenever one moves.
    pub fn wait_counted(&self, name: &str, at_least: u64) -> Value {
        self.wait_audit(
            &format!("a loss row counting {name} >= {at_least}"),
            &["--kind", "loss"],
            |r| r["event"]["counters"][name].as_u64().unwrap_or(0) >= at_least,
        )
    }

    /// The one row that closed approval request `id`, checked to be `want` (`approved` or
    /// `denied`) by a reviewer.
    pub fn closed_as(&self, id: u64, want: &str) -> Value {
        let rows = self.approval_rows(id, 2);
        let closings: Vec<&Value> = rows
            .iter()
            .filter(|r| matches!(r["outcome"].as_str(), Some("approved" | "denied")))
            .collect();
        assert_eq!(closings.len(), 1, "one closing row: {rows:#?}");
        let row = closings[0].clone();
        assert_eq!(row["outcome"], want, "{row}");
        assert_eq!(row["decided_by"], "reviewer", "{row}");
        row
    }

    /// Waits until a row matching `filters` and `pred` is in the audit log; returns it.
    ///
    /// A query that fails while waiting is tried again until the deadline (QEMU's emulation
    /// can stall the guest for longer than the query's connection timeout); the last failure
    /// is part of the message if the row never comes.
    pub fn wait_audit(&self, what: &str, filters: &[&str], pred: impl Fn(&Value) -> bool) -> Value {
        let mut failed = None;
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.try_audit_rows(filters) {
                Ok(rows) => {
                    if let Some(found) = rows.into_iter().find(|r| pred(r)) {
                        return found;
                    }
                }
                Err(e) => failed = Some(e),
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} (last query failure: {}):\n{}",
                failed.as_deref().unwrap_or("none"),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for a pending approval (`what`) that `pred` accepts; returns it.
    pub fn wait_pending_by(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_for(what, || {
            let list = self.json(&["approvals", "list", "--json"]);
            list.as_array()?.iter().find(|r| pred(r)).cloned()
        })
    }

    /// Waits until a pending approval for `pid` is listed; returns it.
    pub fn wait_pending(&self, pid: u32) -> Value {
        self.wait_pending_by(&format!("a pending approval for pid {pid}"), |r| {
            r["pid"] == pid
        })
    }

    /// Waits until an exec event matching `pred` is recorded; returns it.
    pub fn wait_event(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_for(what, || {
            let events = self.json(&["events", "--json", "--limit", "4096"]);
            events.as_array()?.iter().find(|e| pred(e)).cloned()
        })
    }

    /// Waits until the daemon's log has a line containing `needle`; returns that line.
    pub fn wait_log(&self, needle: &str) -> String {
        self.wait_for(&format!("{needle:?} in the daemon log"), || {
            self.log_text()
                .lines()
                .find(|l| l.contains(needle))
                .map(str::to_string)
        })
    }

    /// Polls until `poll` returns something, failing the test after [`PATIENCE`].
    pub fn wait_for<T>(&self, what: &str, mut poll: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(found) = poll() {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let stopping = Instant::now();
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Enforcement outlives the daemon by design; end it, or it would outlive the test.
        let stopped = stopping.elapsed();
        let unload = self.cli(&["unload", "--pin-dir", self.pin_dir.to_str().unwrap()]);
        eprintln!(
            "daemon stopped in {stopped:.2?}, unloaded in {:.2?}",
            stopping.elapsed() - stopped
        );
        if !unload.status.success() {
            eprintln!(
                "interceptor unload failed: {}",
                String::from_utf8_lossy(&unload.stderr)
            );
        }
        if std::thread::panicking() {
            eprintln!(
                "---- daemon log ----\n{}\n--------------------",
                self.log_text()
            );
        }
    }
}

/// A started process that is killed on drop (a failing test must not leave a task stopped).
pub struct Spawned {
    pub child: Child,
}

impl Spawned {
    pub fn start(mut cmd: Command) -> Self {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        Self {
            child: cmd.spawn().expect("spawn"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for exit (at most [`PATIENCE`]); returns the status and stdout.
    pub fn finish(mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "process {} did not finish within {PATIENCE:?}",
                self.pid()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            let _ = stdout.read_to_string(&mut out);
        }
        (status, out)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where cgroup v2 is mounted: /sys/fs/cgroup when it is cgroup2 (the VM), else a cgroup2
/// mount made for the tests (hosts with a v1 or hybrid layout).
pub fn cgroup2_root() -> PathBuf {
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    let is_cgroup2 = |p: &Path| {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: statfs into a zeroed struct with a NUL-terminated path.
        let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statfs(c.as_ptr(), &mut fs) };
        rc == 0 && fs.f_type as i64 == CGROUP2_SUPER_MAGIC
    };
    let system = Path::new("/sys/fs/cgroup");
    if is_cgroup2(system) {
        return system.into();
    }
    let own = PathBuf::from("/run/interceptor-it-cgroup2");
    if !is_cgroup2(&own) {
        fs::create_dir_all(&own).expect("create cgroup2 mount point");
        // SAFETY: mount with NUL-terminated strings; cgroup2 takes no data.
        let rc = unsafe {
            libc::mount(
                c"none".as_ptr(),
                c"/run/interceptor-it-cgroup2".as_ptr(),
                c"cgroup2".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        assert_eq!(
            rc,
            0,
            "mount -t cgroup2: {}",
            std::io::Error::last_os_error()
        );
    }
    own
}

/// A cgroup v2 directory for one test, removed on drop.
pub struct TestCgroup {
    pub path: PathBuf,
}

impl TestCgroup {
    pub fn new(name: &str) -> Self {
        let path = cgroup2_root().join(format!("interceptor-it-{name}-{}", std::process::id()));
        let _ = fs::remove_dir(&path);
        fs::create_dir(&path).expect("create cgroup");
        Self { path }
    }

    /// A child cgroup (removed with this one).
    pub fn child(&self, name: &str) -> PathBuf {
        let path = self.path.join(name);
        fs::create_dir(&path).expect("create child cgroup");
        path
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Children first; a cgroup with processes cannot go, so give exits a moment.
        for _ in 0..100 {
            if let Ok(entries) = fs::read_dir(&self.path) {
                for e in entries.flatten() {
                    if e.path().is_dir() {
                        let _ = fs::remove_dir(e.path());
                    }
                }
            }
            if fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Makes `cmd` move itself into the cgroup `dir` before it execs.
pub fn in_cgroup(cmd: &mut Command, dir: &Path) {
    use std::os::unix::process::CommandExt as _;
    let procs = std::ffi::CString::new(
        dir.join("cgroup.procs")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .unwrap();
    // SAFETY: the closure runs between fork and exec and only makes raw syscalls on data
    // prepared before the fork (no allocation).
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
            Ok(())
        });
    }
}

/// The state letter of a process (`T` when stopped), or `None` when it is gone.
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// The steps (`requested`, `notified`, `approved`, ...) of approval rows, in order.
pub fn approval_steps(rows: &[Value]) -> Vec<&str> {
    rows.iter()
        .map(|r| r["outcome"].as_str().unwrap_or("?"))
        .collect()
}

/// Kernel counter `name` in a `status --json` report.
pub fn counter(status: &Value, name: &str) -> u64 {
    status["counters"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c[0] == name))
        .and_then(|c| c[1].as_u64())
        .unwrap_or_else(|| panic!("no counter {name} in {status}"))
}

/// The value of a `key=value` line in probe output.
pub fn probe_value<'a>(output: &'a str, key: &str) -> Option<&'a str> {
    output
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

/// Describes an exit status as the probe does: `exit:N` or `signal:N`.
pub fn fate(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit:{code}"),
        (None, Some(sig)) => format!("signal:{sig}"),
        _ => "unknown".into(),
    }
}

/// Runs `interceptor-probe ARGS` as agent `agent`, where ARGS make the probe exec a denied
/// program, and asserts it was refused as the expected backend refuses: execve fails with
/// EPERM and the probe exits 1 (lsm), or the task is killed (tracepoint); and that the
/// program never wrote `marker`. Returns the probe's output.
pub fn assert_exec_refused(daemon: &Daemon, agent: &str, args: &[&str], marker: &Path) -> String {
    let (status, out) = Spawned::start(daemon.agent(agent, &probe_bin(), args)).finish();
    match expected_backend() {
        Backend::Lsm => {
            assert_eq!(
                probe_value(&out, "exec-errno"),
                Some("1"),
                "execve must fail with EPERM; output: {out}"
            );
            assert_eq!(fate(status), "exit:1");
        }
        Backend::Tracepoint => {
            assert_eq!(
                fate(status),
                "signal:9",
                "the exec must be killed; output: {out}"
            )
        }
    }
    assert!(!marker.exists(), "the denied program must not have run");
    out
}

/// How a spawn attempt of a refused exec ended: `spawn-errno:N` when execve failed (the
/// lsm backend), or the child's fate (`signal:9` under the tracepoint backend).
pub fn refused_spawn(mut cmd: Command) -> String {
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    match cmd.status() {
        Ok(status) => fate(status),
        Err(e) => format!("spawn-errno:{}", e.raw_os_error().unwrap_or(-1)),
    }
}

/// What [`refused_spawn`] reports for a denied exec under the expected backend.
pub fn expected_refusal() -> &'static str {
    match expected_backend() {
        Backend::Lsm => "spawn-errno:1",
        Backend::Tracepoint => "signal:9",
    }
}
