//! Small helpers for running commands.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, ExitStatus, Stdio};

use anyhow::{Context, Result, bail};

/// The program and arguments of `cmd`, for error messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Runs `cmd` with inherited stdio and fails unless it exits 0.
pub fn run_checked(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{}`", describe(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(cmd));
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout; `None` when it cannot start or exits non-zero.
/// For probes ("is X installed?"), where failure is an answer, not an error.
pub fn probe_output(cmd: &mut Command) -> Option<String> {
    let out = cmd
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` and returns its stdout; fails (with its stderr) unless it exits 0.
pub fn output_checked(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{}`", describe(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd`, echoing its stdout line by line (stderr is inherited) while handing each
/// line to `on_line`. Used to stream test output and count libtest results at once.
pub fn run_streaming(cmd: &mut Command, mut on_line: impl FnMut(&str)) -> Result<ExitStatus> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{}`", describe(cmd)))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut out = std::io::stdout().lock();
    for line in BufReader::new(stdout).split(b'\n') {
        let line = line.context("reading child output")?;
        let line = String::from_utf8_lossy(&line);
        // Best effort: a closed stdout must not abort the run.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
        on_line(&line);
    }
    drop(out);
    child.wait().context("waiting for child")
}

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    // No libc dependency: the effective uid is the second field of "Uid:".
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|rest| rest.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Test counts summed from libtest's closing lines.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Counts {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl Counts {
    pub fn add(&mut self, other: Counts) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
    }

    /// Adds the numbers from a libtest line such as
    /// `test result: ok. 3 passed; 1 failed; 2 ignored; 0 measured; 0 filtered out; ...`.
    /// Other lines are ignored.
    pub fn add_libtest_line(&mut self, line: &str) {
        let Some(rest) = line.trim_start().strip_prefix("test result: ") else {
            return;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        for pair in words.windows(2) {
            let n: u64 = match pair[0].parse() {
                Ok(n) => n,
                Err(_) => continue,
            };
            match pair[1].trim_end_matches([';', '.', ',']) {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_libtest_lines() {
        let mut c = Counts::default();
        c.add_libtest_line("test result: ok. 3 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.01s");
        c.add_libtest_line(
            "test result: FAILED. 1 passed; 4 failed; 0 ignored; 0 measured; 0 filtered out",
        );
        c.add_libtest_line("running 5 tests");
        c.add_libtest_line("test foo ... ok");
        assert_eq!(
            c,
            Counts {
                passed: 4,
                failed: 4,
                ignored: 2
            }
        );
    }
}
