//! A small program the scenario tests run inside agent trees. Copies of it under other names
//! (each copy its own inode) play the deny-listed and held binaries. Everything it observes
//! is printed as `key=value` lines on stdout, flushed at once, for the tests to parse.
//!
//! Usage:
//!   interceptor-probe touch PATH            create PATH (proves the program ran), exit 0
//!   interceptor-probe exit CODE             exit with CODE
//!   interceptor-probe exec PATH ARGS...     execv PATH (argv[0] = PATH); on failure print
//!                                           exec-errno=N and exit 1
//!   interceptor-probe spawn PATH ARGS...    fork+exec PATH, wait, print its fate as
//!                                           child=exit:N | child=signal:N | child=spawn-errno:N
//!   interceptor-probe sigcont-held PATH ARGS...
//!                                           spawn PATH (expected to be held), wait until it is
//!                                           stopped, send it SIGCONT, print child-pid=,
//!                                           sigcont=ok|errno:N and state-after=X, then wait
//!                                           for it and print child=...
use std::{
    io::Write as _,
    os::unix::process::CommandExt as _,
    process::Command,
    time::{Duration, Instant},
};

use interceptor_integration::{fate, proc_state};

fn say(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn state_of(pid: u32) -> char {
    proc_state(pid).unwrap_or('?')
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(cmd) = args.get(1) else {
        eprintln!("usage: interceptor-probe touch|exit|exec|spawn|sigcont-held ...");
        std::process::exit(2);
    };
    let rest = &args[2..];
    match cmd.as_str() {
        "touch" => {
            std::fs::write(&rest[0], b"ran\n").expect("write marker");
        }
        "exit" => std::process::exit(rest[0].parse().expect("exit code")),
        "exec" => {
            let err = Command::new(&rest[0]).args(&rest[1..]).exec();
            say(format!("exec-errno={}", err.raw_os_error().unwrap_or(-1)));
            std::process::exit(1);
        }
        "spawn" => match Command::new(&rest[0]).args(&rest[1..]).status() {
            Ok(status) => say(format!("child={}", fate(status))),
            Err(e) => say(format!(
                "child=spawn-errno:{}",
                e.raw_os_error().unwrap_or(-1)
            )),
        },
        "sigcont-held" => {
            let mut child = Command::new(&rest[0])
                .args(&rest[1..])
                .spawn()
                .expect("spawn held binary");
            let pid = child.id();
            say(format!("child-pid={pid}"));
            let deadline = Instant::now() + Duration::from_secs(60);
            while state_of(pid) != 'T' {
                if Instant::now() > deadline {
                    say("sigcont=never-stopped".into());
                    let _ = child.kill();
                    std::process::exit(1);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            // SAFETY: kill with a pid we own as parent and a valid signal number.
            let rc = unsafe { libc::kill(pid as i32, libc::SIGCONT) };
            let result = if rc == 0 {
                "ok".to_string()
            } else {
                format!(
                    "errno:{}",
                    std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
                )
            };
            say(format!("sigcont={result}"));
            // Give a resumed child time to run (or show it stayed stopped).
            std::thread::sleep(Duration::from_millis(300));
            say(format!("state-after={}", state_of(pid)));
            let status = child.wait().expect("wait for held child");
            say(format!("child={}", fate(status)));
        }
        other => {
            eprintln!("interceptor-probe: unknown command {other}");
            std::process::exit(2);
        }
    }
}
