//! A small program the scenario tests run inside agent trees. Copies of it under other names
//! (each copy its own inode) play the deny-listed and held binaries. Everything it observes
//! is printed as `key=value` lines on stdout, flushed at once, for the tests to parse.
//!
//! Usage (each result is printed as `key=ok` or `key=errno:N`):
//!   touch PATH                  create PATH (proves the program ran), exit 0
//!   exit CODE                   exit with CODE
//!   sleep SECS                  sleep
//!   exec PATH ARGS...           execv PATH; on failure print exec-errno=N and exit 1
//!   spawn PATH ARGS...          fork+exec PATH, wait, print child=exit:N|signal:N|spawn-errno:N
//!   double-fork PATH ARGS...    fork, setsid, fork again, exec PATH in the grandchild
//!                               (whose exec failure prints exec-errno=N); the middle exits
//!   sigcont-held MODE PATH ARGS...
//!                               spawn PATH (expected to be held) in its own process group,
//!                               wait until it is stopped, SIGCONT it by MODE (kill | killpg
//!                               | pidfd), print child-pid=, sigcont=, state-after=, then wait
//!                               for it and print child=
//!   ptrace-attach PID           PTRACE_ATTACH (then detach): ptrace=
//!   open-mem PID                open /proc/PID/mem read-write: mem=
//!   traceme                     PTRACE_TRACEME: traceme=
//!   bpf-map                     bpf(BPF_MAP_CREATE): bpf=
//!   signal PID SIG              kill(PID, SIG): kill=
//!   unshare-user                unshare(CLONE_NEWUSER): unshare=
//!   memfd-exec ARGS...          copy this program into a memfd and execveat(AT_EMPTY_PATH)
//!                               it with ARGS as its arguments
//!   unlinked-exec DIR ARGS...   copy this program into DIR, open it, unlink it, and
//!                               execveat(AT_EMPTY_PATH) the open file with ARGS
//!   open PATH MODE              open PATH (MODE: r, w, rw, c = create, t = truncate): open=
//!   openat2 PATH                openat2(PATH, O_RDONLY): openat2=
//!   opath-reopen PATH           open PATH with O_PATH, then reopen /proc/self/fd/N for reading:
//!                               opath= then reopen=
//!   uring-open PATH             IORING_OP_OPENAT of PATH for reading: uring=
//!   rename FROM TO              rename(FROM, TO): rename=
//!   unlink PATH                 unlink(PATH): unlink=
//!   open-by-handle PATH         name_to_handle_at(PATH), then open_by_handle_at(O_RDONLY) on
//!                               its directory's mount: name-to-handle= then handle=
//!   race-open A B N             A and B are paths of the same length: a thread flips one path
//!                               buffer between them without pause while this thread opens the
//!                               buffer N times and reads one line (and on, for up to 20 s,
//!                               until opens named A and B); prints race-read-a=,
//!                               race-read-b= (by the content read), race-refused= (EACCES),
//!                               race-other=
//!   storm-until FILE PATH ARGS...
//!                               run PATH again and again until FILE exists; print
//!                               storm-ran=N and storm-refused=M (spawn refused or killed)
//!   after FILE ARGS...          wait until FILE exists, then exec this program with ARGS
//!   cgroup-move PROCS PATH ARGS...
//!                               move to another cgroup (write 0 to PROCS), then exec PATH
//!   reuse-pid PID PATH ARGS...  clone3 a child with exactly pid PID (set_tid; retried while
//!                               the pid is still taken), which execs PATH; print
//!                               reused=ok|errno:N, then child=
//!   pidns-spawn PATH ARGS...    unshare(CLONE_NEWPID), fork (the child is pid 1 of the new
//!                               namespace) and exec PATH in it; print pidns=, child=
//!   fork-until-refused N        fork up to N children that wait (as live processes) until
//!                               the first fork fails; print forked=K and fork=ok|errno:N,
//!                               then end the children
//!   flood EXECS OPENS EVERY OK BAD FILE BADFILE
//!                               as fast as possible: spawn OK (`exit 0`) EXECS times, except
//!                               every EVERY-th spawn runs BAD instead; then open FILE for
//!                               reading OPENS times, except every EVERY-th opens BADFILE.
//!                               Prints flood-exec-ok=, flood-sensitive-execs=,
//!                               flood-sensitive-exec-refused= (errno or killed),
//!                               flood-open-ok=, flood-sensitive-opens=,
//!                               flood-sensitive-open-refused= (EACCES), flood-other=
//!   stale-tracked MAP PID       write a TRACKED entry (agent 1) for PID with a start time no
//!                               process has, into the pinned map MAP: tracked-write=
//!   connect ADDR [PATH]         TCP connect to ADDR (IP:PORT or [IPv6]:PORT; an IPv6 address
//!                               uses an AF_INET6 socket, ::ffff:a.b.c.d included): connect=;
//!                               with PATH, then GET PATH over HTTP/1.0: http=STATUS
use std::{
    io::Write as _,
    os::unix::process::CommandExt as _,
    process::Command,
    time::{Duration, Instant},
};

use interceptor_integration::{fate, proc_state};

/// `key=ok` for a zero return, `key=errno:N` otherwise.
fn report(key: &str, rc: i64) {
    if rc >= 0 {
        say(format!("{key}=ok"));
    } else {
        say(format!("{key}=errno:{}", errno()));
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
}

/// `key=ok` for a non-negative result, `key=errno:N` for a negative `-N` (io_uring style).
fn report_errno(key: &str, res: i32) {
    if res >= 0 {
        say(format!("{key}=ok"))
    } else {
        say(format!("{key}=errno:{}", -res))
    }
}

/// Opens `path` for reading through io_uring (IORING_OP_OPENAT) with raw syscalls; returns
/// the completion's result (an fd, or -errno), or the errno of a failed setup step.
fn uring_open(path: &str) -> Result<i32, i32> {
    const IORING_OP_OPENAT: u8 = 18;
    const IORING_ENTER_GETEVENTS: u32 = 1;
    const IORING_OFF_SQ_RING: i64 = 0;
    const IORING_OFF_CQ_RING: i64 = 0x800_0000;
    const IORING_OFF_SQES: i64 = 0x1000_0000;
    // struct io_uring_params: 120 bytes; sq_off at 40 (u32 x10), cq_off at 80 (u32 x10).
    let mut params = [0u32; 30];
    // SAFETY: raw io_uring syscalls and mmaps with sizes from the kernel's own params; all
    // offsets below come from the params the kernel filled in.
    unsafe {
        let fd = libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) as i32;
        if fd < 0 {
            return Err(errno());
        }
        let (sq_entries, cq_entries) = (params[0], params[1]);
        let sq_off = &params[10..20];
        let cq_off = &params[20..30];
        let sq_len = sq_off[6] as usize + sq_entries as usize * 4; // array + entries
        let cq_len = cq_off[5] as usize + cq_entries as usize * 16; // cqes + entries
        let map = |len: usize, off: i64| {
            let p = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                off,
            );
            if p == libc::MAP_FAILED {
                Err(errno())
            } else {
                Ok(p.cast::<u8>())
            }
        };
        let sq = map(sq_len, IORING_OFF_SQ_RING)?;
        let cq = map(cq_len, IORING_OFF_CQ_RING)?;
        let sqes = map(64 * sq_entries as usize, IORING_OFF_SQES)?;
        let cpath = std::ffi::CString::new(path).unwrap();
        // One SQE: opcode, fd = AT_FDCWD, addr = path, open_flags = O_RDONLY.
        let sqe = std::slice::from_raw_parts_mut(sqes, 64);
        sqe.fill(0);
        sqe[0] = IORING_OP_OPENAT;
        sqe[4..8].copy_from_slice(&libc::AT_FDCWD.to_ne_bytes());
        sqe[16..24].copy_from_slice(&(cpath.as_ptr() as u64).to_ne_bytes());
        let tail = sq.add(sq_off[1] as usize).cast::<u32>();
        let mask = *sq.add(sq_off[2] as usize).cast::<u32>();
        let array = sq.add(sq_off[6] as usize).cast::<u32>();
        let t = std::ptr::read_volatile(tail);
        *array.add((t & mask) as usize) = 0;
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        std::ptr::write_volatile(tail, t + 1);
        if libc::syscall(
            libc::SYS_io_uring_enter,
            fd,
            1u32,
            1u32,
            IORING_ENTER_GETEVENTS,
            0usize,
            0usize,
        ) < 0
        {
            return Err(errno());
        }
        let head = std::ptr::read_volatile(cq.add(cq_off[0] as usize).cast::<u32>());
        let cmask = *cq.add(cq_off[2] as usize).cast::<u32>();
        let cqe = cq.add(cq_off[5] as usize + (head & cmask) as usize * 16);
        Ok(*cqe.add(8).cast::<i32>())
    }
}

/// Sends `GET path` on a connected stream; returns the response's status code, or
/// `error:...` when there is no well-formed status line.
fn http_get(stream: &mut std::net::TcpStream, path: &str) -> String {
    use std::io::Read as _;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    if let Err(e) = write!(stream, "GET {path} HTTP/1.0\r\nHost: probe\r\n\r\n") {
        return format!("error:{e}");
    }
    let mut response = Vec::new();
    if let Err(e) = stream.read_to_end(&mut response) {
        return format!("error:{e}");
    }
    let text = String::from_utf8_lossy(&response);
    text.split(' ')
        .nth(1)
        .filter(|code| code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()))
        .map_or_else(
            || format!("error:{:?}", text.lines().next()),
            str::to_string,
        )
}

/// execveat(fd, "", argv, environ, AT_EMPTY_PATH); returns only on failure.
fn exec_fd(fd: i32, args: &[String]) -> ! {
    let cargs: Vec<std::ffi::CString> = std::iter::once("probe-from-fd".to_string())
        .chain(args.iter().cloned())
        .map(|a| std::ffi::CString::new(a).expect("no NUL in args"))
        .collect();
    let mut argv: Vec<*const libc::c_char> = cargs.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: NUL-terminated strings and NULL-terminated arrays that outlive the call.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd,
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
    }
    say(format!("exec-errno={}", errno()));
    std::process::exit(1);
}

/// Forks a child with pid `pid` (clone3 with set_tid) that execs `args`; returns the
/// child's pid, or the errno.
fn clone_with_pid(pid: u32, args: &[String]) -> Result<u32, i32> {
    // struct clone_args (linux/sched.h): 11 u64 fields, set_tid at index 8.
    let set_tid: [libc::pid_t; 1] = [pid as libc::pid_t];
    let mut clone_args = [0u64; 11];
    clone_args[4] = libc::SIGCHLD as u64; // exit_signal
    clone_args[8] = set_tid.as_ptr() as u64;
    clone_args[9] = 1; // set_tid_size
    let cargs: Vec<std::ffi::CString> = args
        .iter()
        .map(|a| std::ffi::CString::new(a.as_str()).expect("no NUL in args"))
        .collect();
    let mut argv: Vec<*const libc::c_char> = cargs.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // SAFETY: clone3 without CLONE_VM behaves like fork; the child only calls execv
        // (async-signal-safe) with arrays built before the clone, then _exit.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                clone_args.as_ptr(),
                std::mem::size_of_val(&clone_args),
            )
        };
        if rc == 0 {
            unsafe {
                libc::execv(argv[0], argv.as_ptr());
                libc::_exit(126);
            }
        }
        if rc > 0 {
            return Ok(rc as u32);
        }
        let e = errno();
        // EEXIST: the pid is still taken (its process not reaped yet).
        if e != libc::EEXIST || Instant::now() > deadline {
            return Err(e);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for child `pid` and describes its end like [`fate`].
fn wait_child(pid: u32) -> String {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
    fate(std::os::unix::process::ExitStatusExt::from_raw(status))
}

/// bpf(BPF_OBJ_GET) of a pinned map, then BPF_MAP_UPDATE_ELEM with raw key and value bytes.
fn bpf_map_write(pin: &str, key: &[u8], value: &[u8]) -> i64 {
    const BPF_MAP_UPDATE_ELEM: i64 = 2;
    const BPF_OBJ_GET: i64 = 7;
    let path = std::ffi::CString::new(pin).expect("no NUL in path");
    // union bpf_attr for BPF_OBJ_GET: pathname (u64), bpf_fd, file_flags.
    let mut attr = [0u64; 8];
    attr[0] = path.as_ptr() as u64;
    // SAFETY: raw bpf() with an attr buffer larger than the kernel reads for these commands;
    // pointers in it point at buffers that outlive the calls.
    unsafe {
        let fd = libc::syscall(libc::SYS_bpf, BPF_OBJ_GET, attr.as_ptr(), 64);
        if fd < 0 {
            return fd;
        }
        // BPF_MAP_UPDATE_ELEM: map_fd (u32, then pad), key, value, flags.
        let mut attr = [0u64; 8];
        attr[0] = fd as u64;
        attr[1] = key.as_ptr() as u64;
        attr[2] = value.as_ptr() as u64;
        libc::syscall(libc::SYS_bpf, BPF_MAP_UPDATE_ELEM, attr.as_ptr(), 64)
    }
}

/// What `rewrite-argv` writes over its own arguments.
const REWRITTEN_ARGV: &str = "harmless --dry-run";

fn say(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The `flood` command: many operations, with sensitive ones hidden among them.
fn flood(rest: &[String]) {
    let n = |i: usize| -> usize { rest[i].parse().expect("a count") };
    let (execs, opens, every) = (n(0), n(1), n(2).max(1));
    let (ok, bad, file, bad_file) = (&rest[3], &rest[4], &rest[5], &rest[6]);
    let (mut exec_ok, mut sensitive_execs, mut exec_refused, mut other) = (0, 0, 0, 0);
    for i in 0..execs {
        let sensitive = i % every == every - 1;
        let program = if sensitive { bad } else { ok };
        let outcome = Command::new(program).args(["exit", "0"]).status();
        match (sensitive, outcome) {
            (false, Ok(status)) if status.success() => exec_ok += 1,
            // Refused at exec (lsm: EPERM) or killed before its first instruction (tracepoint).
            (true, Err(e)) if e.raw_os_error() == Some(libc::EPERM) => exec_refused += 1,
            (true, Ok(status)) if fate(status) == "signal:9" => exec_refused += 1,
            _ => other += 1,
        }
        sensitive_execs += usize::from(sensitive);
    }
    let (mut open_ok, mut sensitive_opens, mut open_refused) = (0, 0, 0);
    for i in 0..opens {
        let sensitive = i % every == every - 1;
        let path = std::ffi::CString::new(if sensitive { bad_file } else { file }.as_str())
            .expect("a path without NUL");
        // SAFETY: open with a NUL-terminated path; the fd is closed right away.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        let errno = std::io::Error::last_os_error().raw_os_error();
        if fd >= 0 {
            // SAFETY: closing the fd just opened.
            unsafe { libc::close(fd) };
        }
        match (sensitive, fd >= 0) {
            (false, true) => open_ok += 1,
            (true, false) if errno == Some(libc::EACCES) => open_refused += 1,
            _ => other += 1,
        }
        sensitive_opens += usize::from(sensitive);
    }
    say(format!("flood-exec-ok={exec_ok}"));
    say(format!("flood-sensitive-execs={sensitive_execs}"));
    say(format!("flood-sensitive-exec-refused={exec_refused}"));
    say(format!("flood-open-ok={open_ok}"));
    say(format!("flood-sensitive-opens={sensitive_opens}"));
    say(format!("flood-sensitive-open-refused={open_refused}"));
    say(format!("flood-other={other}"));
}

/// `race-open`: the kernel copies the path from user memory once and judges the file that
/// open resolved; a second thread rewriting the buffer under it can only change which of the
/// two files is opened, never open B past a rule that refuses it.
fn race_open(a: &str, b: &str, n: u32) {
    use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};
    assert_eq!(a.len(), b.len(), "race-open needs paths of one length");
    let buffer: &'static [AtomicU8] =
        Vec::leak(a.bytes().chain([0]).map(AtomicU8::new).collect::<Vec<_>>());
    let stop: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let (pa, pb) = (a.as_bytes().to_vec(), b.as_bytes().to_vec());
    let started: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let flipper = std::thread::spawn(move || {
        started.store(true, Relaxed);
        while !stop.load(Relaxed) {
            for path in [&pa, &pb] {
                for (cell, byte) in buffer.iter().zip(path.iter()) {
                    cell.store(*byte, Relaxed);
                }
            }
        }
    });
    let (content_a, content_b) = (
        std::fs::read(a).expect("read A"),
        std::fs::read(b).unwrap_or_default(),
    );
    // The loop would be over before a flipper that was not scheduled yet ever ran (on a
    // busy machine, N opens fit in one time slice); and after N opens it goes on until the
    // buffer has named A once and B once (a flipper preempted mid-loop leaves one path for
    // a whole slice), so the outcomes asserted never rest on scheduling luck.
    while !started.load(Relaxed) {
        std::thread::yield_now();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (mut read_a, mut read_b, mut refused, mut other) = (0u32, 0u32, 0u32, 0u32);
    let mut done = 0;
    while done < n
        || ((read_a == 0 || read_b + refused == 0) && std::time::Instant::now() < deadline)
    {
        done += 1;
        // SAFETY: AtomicU8 has u8's layout; the buffer is NUL-terminated and never freed.
        let fd = unsafe { libc::open(buffer.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            match errno() {
                libc::EACCES => refused += 1,
                _ => other += 1,
            }
            continue;
        }
        let mut content = vec![0u8; 64];
        // SAFETY: reading into a 64-byte buffer from the fd just opened, then closing it.
        let len = unsafe { libc::read(fd, content.as_mut_ptr().cast(), 64) };
        unsafe { libc::close(fd) };
        content.truncate(len.max(0) as usize);
        if content == content_a {
            read_a += 1;
        } else if content == content_b {
            read_b += 1;
        } else {
            other += 1;
        }
    }
    stop.store(true, Relaxed);
    flipper.join().unwrap();
    say(format!("race-read-a={read_a}"));
    say(format!("race-read-b={read_b}"));
    say(format!("race-refused={refused}"));
    say(format!("race-other={other}"));
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
        "flood" => flood(rest),
        "exit" => std::process::exit(rest[0].parse().expect("exit code")),
        "exec" => {
            let err = Command::new(&rest[0]).args(&rest[1..]).exec();
            say(format!("exec-errno={}", err.raw_os_error().unwrap_or(-1)));
            std::process::exit(1);
        }
        // execve from a thread that is not the thread-group leader (scenario 31): the
        // kernel makes the exec'ing thread the leader, under the process's pid.
        "thread-exec" => {
            let (program, args) = (rest[0].clone(), rest[1..].to_vec());
            let thread = std::thread::spawn(move || {
                let err = Command::new(&program).args(&args).exec();
                say(format!("exec-errno={}", err.raw_os_error().unwrap_or(-1)));
                std::process::exit(1);
            });
            let _ = thread.join();
            std::process::exit(2);
        }
        // Scenario 15: after exec, overwrite the argument area the kernel shows as
        // /proc/self/cmdline with REWRITTEN_ARGV and the comm with "innocent", write the
        // marker rest[0], then live rest[1] seconds.
        "rewrite-argv" => {
            let stat = std::fs::read_to_string("/proc/self/stat").expect("own stat");
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .expect("stat has a comm")
                .1
                .split_whitespace()
                .collect();
            // proc(5): arg_start and arg_end are fields 48 and 49; fields[0] is field 3.
            let start: usize = fields[45].parse().expect("arg_start");
            let end: usize = fields[46].parse().expect("arg_end");
            // SAFETY: [arg_start, arg_end) is this process's own argument area on its
            // stack, mapped and writable; std copied the arguments out at startup.
            let area = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, end - start) };
            area.fill(0);
            let text = REWRITTEN_ARGV.as_bytes();
            let n = text.len().min(area.len().saturating_sub(1));
            area[..n].copy_from_slice(&text[..n]);
            // SAFETY: PR_SET_NAME reads a NUL-terminated name of at most 16 bytes.
            unsafe { libc::prctl(libc::PR_SET_NAME, c"innocent".as_ptr()) };
            std::fs::write(&rest[0], b"rewritten\n").expect("write marker");
            std::thread::sleep(Duration::from_secs_f64(rest[1].parse().expect("seconds")));
        }
        "spawn" => match Command::new(&rest[0]).args(&rest[1..]).status() {
            Ok(status) => say(format!("child={}", fate(status))),
            Err(e) => say(format!(
                "child=spawn-errno:{}",
                e.raw_os_error().unwrap_or(-1)
            )),
        },
        "sigcont-held" => {
            let mode = rest[0].as_str();
            let rest = &rest[1..];
            let mut child = Command::new(&rest[0])
                .args(&rest[1..])
                .process_group(0)
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
            // SAFETY: signalling our own child (or its process group, or through a pidfd we
            // open for it) with a valid signal number.
            let rc = unsafe {
                match mode {
                    "kill" => libc::kill(pid as i32, libc::SIGCONT) as i64,
                    "killpg" => libc::killpg(pid as i32, libc::SIGCONT) as i64,
                    "pidfd" => {
                        let fd = libc::syscall(libc::SYS_pidfd_open, pid as i32, 0);
                        assert!(fd >= 0, "pidfd_open: errno {}", errno());
                        libc::syscall(
                            libc::SYS_pidfd_send_signal,
                            fd as i32,
                            libc::SIGCONT,
                            std::ptr::null::<u8>(),
                            0,
                        )
                    }
                    other => panic!("unknown SIGCONT mode {other}"),
                }
            };
            report("sigcont", rc);
            // Give a resumed child time to run (or show it stayed stopped).
            std::thread::sleep(Duration::from_millis(300));
            say(format!("state-after={}", state_of(pid)));
            let status = child.wait().expect("wait for held child");
            say(format!("child={}", fate(status)));
        }
        "sleep" => std::thread::sleep(Duration::from_secs_f64(rest[0].parse().expect("seconds"))),
        "double-fork" => {
            // SAFETY: fork in a single-threaded program; the children only call
            // async-signal-safe functions or exec.
            unsafe {
                match libc::fork() {
                    0 => {
                        libc::setsid();
                        if libc::fork() == 0 {
                            let err = Command::new(&rest[0]).args(&rest[1..]).exec();
                            say(format!("exec-errno={}", err.raw_os_error().unwrap_or(-1)));
                            libc::_exit(1);
                        }
                        libc::_exit(0);
                    }
                    middle => {
                        let mut status = 0;
                        libc::waitpid(middle, &mut status, 0);
                    }
                }
            }
        }
        "ptrace-attach" => {
            let pid: i32 = rest[0].parse().expect("pid");
            // SAFETY: ptrace requests on a pid; a successful attach is undone at once.
            unsafe {
                let rc = libc::ptrace(libc::PTRACE_ATTACH, pid, 0, 0);
                report("ptrace", rc);
                if rc == 0 {
                    let mut status = 0;
                    libc::waitpid(pid, &mut status, 0);
                    libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0);
                }
            }
        }
        "open-mem" => {
            let result = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(format!("/proc/{}/mem", rest[0]));
            match result {
                Ok(_) => say("mem=ok".into()),
                Err(e) => say(format!("mem=errno:{}", e.raw_os_error().unwrap_or(-1))),
            }
        }
        // SAFETY (next arms): plain syscalls with scalar arguments or a zeroed attribute.
        "traceme" => report("traceme", unsafe {
            libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0)
        }),
        "bpf-map" => {
            // union bpf_attr for BPF_MAP_CREATE: map_type, key_size, value_size, max_entries.
            let mut attr = [0u32; 32];
            attr[..4].copy_from_slice(&[2 /* BPF_MAP_TYPE_ARRAY */, 4, 4, 1]);
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    0, /* BPF_MAP_CREATE */
                    attr.as_ptr(),
                    128,
                )
            };
            report("bpf", rc);
        }
        "signal" => {
            let pid: i32 = rest[0].parse().expect("pid");
            let sig: i32 = rest[1].parse().expect("signal");
            report("kill", unsafe { libc::kill(pid, sig) } as i64);
        }
        "connect" => {
            let addr: std::net::SocketAddr = rest[0].parse().expect("IP:PORT");
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
                Err(e) => say(format!("connect=errno:{}", e.raw_os_error().unwrap_or(-1))),
                Ok(mut stream) => {
                    say("connect=ok".into());
                    if let Some(path) = rest.get(1) {
                        say(format!("http={}", http_get(&mut stream, path)));
                    }
                }
            }
        }
        "unshare-user" => report("unshare", unsafe { libc::unshare(libc::CLONE_NEWUSER) }
            as i64),
        "memfd-exec" => {
            let me = std::fs::read("/proc/self/exe").expect("read own binary");
            // SAFETY: memfd_create with a NUL-terminated name; the fd is ours.
            let fd = unsafe { libc::memfd_create(c"probe".as_ptr(), 0) };
            assert!(fd >= 0, "memfd_create: errno {}", errno());
            let mut file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            file.write_all(&me).expect("fill memfd");
            // A file open for writing cannot be executed (ETXTBSY): reopen it read-only
            // through /proc and drop the writable descriptor.
            let ro =
                std::fs::File::open(format!("/proc/self/fd/{fd}")).expect("reopen memfd read-only");
            drop(file);
            exec_fd(std::os::fd::IntoRawFd::into_raw_fd(ro), rest);
        }
        "unlinked-exec" => {
            let path = std::path::Path::new(&rest[0]).join("probe-unlinked");
            std::fs::copy("/proc/self/exe", &path).expect("copy own binary");
            let file = std::fs::File::open(&path).expect("open copy");
            std::fs::remove_file(&path).expect("unlink copy");
            exec_fd(std::os::fd::IntoRawFd::into_raw_fd(file), &rest[1..]);
        }
        "open" => {
            let flags = match rest[1].as_str() {
                "r" => libc::O_RDONLY,
                "w" => libc::O_WRONLY,
                "rw" => libc::O_RDWR,
                "c" => libc::O_WRONLY | libc::O_CREAT,
                "t" => libc::O_WRONLY | libc::O_TRUNC,
                other => panic!("unknown open mode {other}"),
            };
            let path = std::ffi::CString::new(rest[0].as_str()).unwrap();
            // SAFETY: open with a NUL-terminated path.
            let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, 0o644) };
            report("open", fd as i64);
        }
        "openat2" => {
            let path = std::ffi::CString::new(rest[0].as_str()).unwrap();
            // struct open_how { u64 flags; u64 mode; u64 resolve; }
            let how: [u64; 3] = [libc::O_RDONLY as u64, 0, 0];
            // SAFETY: openat2 with a NUL-terminated path and a 24-byte open_how.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_openat2,
                    libc::AT_FDCWD,
                    path.as_ptr(),
                    how.as_ptr(),
                    24usize,
                )
            };
            report("openat2", fd);
        }
        "opath-reopen" => {
            let path = std::ffi::CString::new(rest[0].as_str()).unwrap();
            // SAFETY: plain opens with NUL-terminated paths.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
            report("opath", fd as i64);
            if fd >= 0 {
                let again = std::ffi::CString::new(format!("/proc/self/fd/{fd}")).unwrap();
                report("reopen", unsafe {
                    libc::open(again.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC)
                } as i64);
            }
        }
        "uring-open" => match uring_open(&rest[0]) {
            Ok(res) => report_errno("uring", res),
            Err(e) => say(format!("uring=setup-errno:{e}")),
        },
        "rename" => {
            let from = std::ffi::CString::new(rest[0].as_str()).unwrap();
            let to = std::ffi::CString::new(rest[1].as_str()).unwrap();
            // SAFETY: rename with NUL-terminated paths.
            report(
                "rename",
                unsafe { libc::rename(from.as_ptr(), to.as_ptr()) } as i64,
            );
        }
        "unlink" => {
            let path = std::ffi::CString::new(rest[0].as_str()).unwrap();
            // SAFETY: unlink with a NUL-terminated path.
            report("unlink", unsafe { libc::unlink(path.as_ptr()) } as i64);
        }
        "open-by-handle" => {
            let path = std::ffi::CString::new(rest[0].as_str()).unwrap();
            // struct file_handle { u32 handle_bytes; i32 handle_type; u8 f_handle[]; }
            let mut handle = [0u32; 2 + 32];
            handle[0] = 128;
            let mut mount_id = 0i32;
            // SAFETY: name_to_handle_at with a NUL-terminated path and a 136-byte handle.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_name_to_handle_at,
                    libc::AT_FDCWD,
                    path.as_ptr(),
                    handle.as_mut_ptr(),
                    &mut mount_id,
                    0,
                )
            };
            report("name-to-handle", rc);
            if rc == 0 {
                // Any fd on the same mount names it: the file's directory.
                let parent = std::path::Path::new(&rest[0]).parent().unwrap();
                let parent = std::ffi::CString::new(parent.to_str().unwrap()).unwrap();
                // SAFETY: a directory open of a NUL-terminated path (O_PATH fds are refused).
                let mount_fd = unsafe {
                    libc::open(
                        parent.as_ptr(),
                        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
                    )
                };
                // SAFETY: open_by_handle_at with the handle just filled in.
                let fd = unsafe {
                    libc::syscall(
                        libc::SYS_open_by_handle_at,
                        mount_fd,
                        handle.as_ptr(),
                        libc::O_RDONLY | libc::O_CLOEXEC,
                    )
                };
                report("handle", fd);
            }
        }
        "race-open" => race_open(&rest[0], &rest[1], rest[2].parse().expect("count")),
        "storm-until" => {
            let (mut ran, mut refused) = (0u64, 0u64);
            while !std::path::Path::new(&rest[0]).exists() {
                match Command::new(&rest[1]).args(&rest[2..]).status() {
                    Ok(status) if status.success() => ran += 1,
                    _ => refused += 1,
                }
            }
            say(format!("storm-ran={ran}"));
            say(format!("storm-refused={refused}"));
        }
        "after" => {
            let deadline = Instant::now() + Duration::from_secs(300);
            while !std::path::Path::new(&rest[0]).exists() {
                assert!(Instant::now() < deadline, "gate {} never opened", rest[0]);
                std::thread::sleep(Duration::from_millis(20));
            }
            let err = Command::new("/proc/self/exe").args(&rest[1..]).exec();
            say(format!("exec-errno={}", err.raw_os_error().unwrap_or(-1)));
            std::process::exit(1);
        }
        "reuse-pid" => {
            let pid: u32 = rest[0].parse().expect("pid");
            match clone_with_pid(pid, &rest[1..]) {
                Ok(child) => {
                    assert_eq!(child, pid, "clone3 set_tid gave another pid");
                    say("reused=ok".into());
                    say(format!("child={}", wait_child(child)));
                }
                Err(e) => say(format!("reused=errno:{e}")),
            }
        }
        "pidns-spawn" => {
            // SAFETY: unshare and fork in a single-threaded program; the child only execs.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWPID) };
            report("pidns", rc as i64);
            if rc == 0 {
                match Command::new(&rest[0]).args(&rest[1..]).status() {
                    Ok(status) => say(format!("child={}", fate(status))),
                    Err(e) => say(format!(
                        "child=spawn-errno:{}",
                        e.raw_os_error().unwrap_or(-1)
                    )),
                }
            }
        }
        "fork-until-refused" => {
            let limit: usize = rest[0].parse().expect("count");
            let mut children = Vec::new();
            let mut result = 0i64;
            while children.len() < limit {
                // SAFETY: fork in a single-threaded program; the child only sleeps and exits.
                let pid = unsafe { libc::fork() };
                if pid == 0 {
                    unsafe {
                        libc::pause();
                        libc::_exit(0);
                    }
                }
                if pid < 0 {
                    result = -1;
                    break;
                }
                children.push(pid);
            }
            say(format!("forked={}", children.len()));
            report("fork", result);
            for pid in children {
                // SAFETY: ending and reaping our own children.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, std::ptr::null_mut(), 0);
                }
            }
        }
        "stale-tracked" => {
            let pid: u32 = rest[1].parse().expect("pid");
            // TrackedTask: start (u64), agent_id (u32), flags (u32). Start time 1 ns after
            // boot: no process has it.
            let mut value = [0u8; 16];
            value[..8].copy_from_slice(&1u64.to_ne_bytes());
            value[8..12].copy_from_slice(&1u32.to_ne_bytes());
            report(
                "tracked-write",
                bpf_map_write(&rest[0], &pid.to_ne_bytes(), &value),
            );
        }
        "cgroup-move" => {
            std::fs::write(&rest[0], "0").expect("move to cgroup");
            let err = Command::new(&rest[1]).args(&rest[2..]).exec();
            say(format!("exec-errno={}", err.raw_os_error().unwrap_or(-1)));
            std::process::exit(1);
        }
        other => {
            eprintln!("interceptor-probe: unknown command {other}");
            std::process::exit(2);
        }
    }
}
