//! What the daemon learns about a process from /proc, and signalling it through a pidfd so a
//! recycled pid can never receive a decision meant for an earlier process.

use std::{
    fs, io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::PathBuf,
};

use interceptor_common::NSEC_PER_CLOCK_TICK;

/// Fields of /proc/PID/stat the daemon uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Process state letter (`R`, `S`, `T` for stopped, `Z`, ...).
    pub state: char,
    pub ppid: u32,
    /// Start time since boot in clock ticks (the kernel's `start_boottime` / 10 ms).
    pub start_ticks: u64,
}

/// Parses /proc/PID/stat. The command name (field 2) may contain spaces and parentheses,
/// so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); starttime is field 22.
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// Reads /proc/PID/stat.
pub fn stat(pid: u32) -> io::Result<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unparsable /proc/{pid}/stat"),
        )
    })
}

/// The whole argv of a process (not bounded like the kernel's copy).
pub fn cmdline(pid: u32) -> io::Result<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline"))?;
    Ok(split_nul(&raw))
}

/// Names of a process's environment variables (values are never kept: they hold secrets).
pub fn env_keys(pid: u32) -> io::Result<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/environ"))?;
    Ok(split_nul(&raw)
        .into_iter()
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.to_string()))
        .collect())
}

/// The environment of a process, `KEY=value` each (secrets included: redact before
/// showing or storing it).
pub fn environ(pid: u32) -> io::Result<Vec<String>> {
    Ok(split_nul(&fs::read(format!("/proc/{pid}/environ"))?))
}

/// The current directory of a process.
pub fn cwd(pid: u32) -> io::Result<PathBuf> {
    fs::read_link(format!("/proc/{pid}/cwd"))
}

/// The resolved path of a process's executable.
pub fn exe(pid: u32) -> io::Result<PathBuf> {
    fs::read_link(format!("/proc/{pid}/exe"))
}

/// Which file, in which state, a process is running: the inode of its executable and
/// the inode's change time and size. A file replaced (rename over it) has another inode;
/// one rewritten in place has another change time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
    pub ctime_ns: i128,
    pub size: u64,
}

/// The identity of the file a process executes (`/proc/PID/exe`, which names the inode
/// the process runs even after it was renamed over or unlinked).
pub fn exe_identity(pid: u32) -> io::Result<FileIdentity> {
    use std::os::unix::fs::MetadataExt as _;
    let m = fs::metadata(format!("/proc/{pid}/exe"))?;
    Ok(FileIdentity {
        dev: m.dev(),
        ino: m.ino(),
        ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        size: m.size(),
    })
}

/// The real uid of a process (first field of `Uid:` in /proc/PID/status).
pub fn uid(pid: u32) -> io::Result<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|uid| uid.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("no Uid: line in /proc/{pid}/status"),
            )
        })
}

/// How many ancestors [`parent_chain`] follows at most.
pub const PARENT_CHAIN_MAX: usize = 32;

/// One ancestor of a process.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ancestor {
    pub pid: u32,
    /// The resolved executable, or `?` when /proc does not show it.
    pub exe: String,
    /// argv, cut to a few arguments so a long command line does not drown the chain.
    pub argv: Vec<String>,
}

/// This host's name (as `uname -n` prints it).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The user name of `uid` from the host's user database, if it has one.
pub fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: passwd is plain C data (integers and pointers); all-zero is a valid value.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to a live local of the right size; getpwuid_r writes only
    // into `pwd` and `buf`.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded, so pw_name is a NUL-terminated string inside `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    name.to_str().ok().map(str::to_string)
}

/// The ancestors of `pid`, parent first, up to pid 1 (or [`PARENT_CHAIN_MAX`] of them).
/// Stops early at a process that has gone.
pub fn parent_chain(pid: u32) -> Vec<Ancestor> {
    const ARGS_SHOWN: usize = 8;
    let mut chain = Vec::new();
    let mut current = pid;
    while chain.len() < PARENT_CHAIN_MAX {
        let Ok(st) = stat(current) else { break };
        if st.ppid == 0 || st.ppid == current {
            break;
        }
        current = st.ppid;
        let mut argv = cmdline(current).unwrap_or_default();
        argv.truncate(ARGS_SHOWN);
        chain.push(Ancestor {
            pid: current,
            exe: exe(current).map_or_else(|_| "?".into(), |p| p.display().to_string()),
            argv,
        });
        if current == 1 {
            break;
        }
    }
    chain
}

/// The path of a file mapped into `pid`'s memory, found by its identity (kernel-encoded
/// device `major << 20 | minor`, inode) in /proc/PID/maps.
pub fn mapped_path(pid: u32, dev: u64, ino: u64) -> Option<String> {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    find_mapping(&maps, dev, ino)
}

/// The lookup behind [`mapped_path`]: /proc/PID/maps lines are
/// `start-end perms offset major:minor inode path` (device numbers in hex).
pub fn find_mapping(maps: &str, dev: u64, ino: u64) -> Option<String> {
    let (major, minor) = (dev >> 20, dev & 0xfffff);
    maps.lines().find_map(|line| {
        let mut fields = line.splitn(6, ' ');
        let (_, _, _, device, inode) = (
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
        );
        let (maj, min) = device.split_once(':')?;
        let matches = u64::from_str_radix(maj, 16).ok()? == major
            && u64::from_str_radix(min, 16).ok()? == minor
            && inode.parse::<u64>().ok()? == ino;
        matches.then(|| fields.next().unwrap_or("").trim_start().to_string())
    })
}

/// Splits NUL-separated strings (argv as the kernel stores it).
pub fn split_nul(raw: &[u8]) -> Vec<String> {
    let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
    if raw.is_empty() {
        return Vec::new();
    }
    raw.split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// The start time in clock ticks that the kernel's `start_boottime` (ns) corresponds to.
pub fn ticks_of_boottime(ns: u64) -> u64 {
    ns / NSEC_PER_CLOCK_TICK
}

/// A process pinned by a pidfd: signals reach this process or fail, never a successor.
#[derive(Debug)]
pub struct Pidfd {
    fd: OwnedFd,
    pub pid: u32,
}

impl Pidfd {
    /// Opens a pidfd for `pid` and checks it is the process that started at `start_ticks`.
    pub fn open(pid: u32, start_ticks: u64) -> io::Result<Self> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the fd was just returned to us and is owned by nobody else.
        let pidfd = Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd as i32) },
            pid,
        };
        // The pidfd now pins the process; if /proc still shows the expected start time, the
        // pidfd names the process we meant.
        let found = stat(pid)?.start_ticks;
        if found != start_ticks {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "pid {pid} is a different process now (started at tick {found}, expected {start_ticks})"
                ),
            ));
        }
        Ok(pidfd)
    }

    /// Sends `sig`; `sig == 0` checks the process is still alive.
    pub fn signal(&self, sig: i32) -> io::Result<()> {
        // SAFETY: pidfd_send_signal with a valid fd, a signal number, no siginfo and no flags.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Whether the process has not exited.
    pub fn alive(&self) -> bool {
        self.signal(0).is_ok() && stat(self.pid).is_ok_and(|s| s.state != 'Z' && s.state != 'X')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_hostile_comm() {
        let text = "4242 (evil) T 1 2 (x)) T 7 4242 4242 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 987654 1000 10";
        // The comm "evil) T 1 2 (x" contains ") T": fields are counted from the last ')'.
        let st = parse_stat(text).expect("parses");
        assert_eq!(
            st,
            Stat {
                state: 'T',
                ppid: 7,
                start_ticks: 987654
            }
        );
        assert!(parse_stat("12 (cut").is_none());
        assert!(parse_stat("12 (x) R 1").is_none());
    }

    #[test]
    fn own_stat_and_pidfd() {
        let me = std::process::id();
        let st = stat(me).expect("own stat");
        assert!(matches!(st.state, 'R' | 'S'), "{st:?}");
        let pidfd = Pidfd::open(me, st.start_ticks).expect("pidfd for self");
        assert!(pidfd.alive());
        assert_eq!(uid(me).unwrap(), unsafe { libc::getuid() });
        let err = Pidfd::open(me, st.start_ticks + 1).expect_err("wrong start time is refused");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn mappings_are_found_by_device_and_inode() {
        let maps = "\
55d0c0a00000-55d0c0a02000 r--p 00000000 fe:01 1311 /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
7f0000000000-7f0000001000 r-xp 00001000 103:02 424242 /srv/data/pg dump (copy)
7f0000002000-7f0000003000 rw-p 00000000 00:00 0 
";
        // 0x103 = 259 (nvme), minor 2; a path with spaces survives.
        assert_eq!(
            find_mapping(maps, (0x103 << 20) | 2, 424242).as_deref(),
            Some("/srv/data/pg dump (copy)")
        );
        assert_eq!(
            find_mapping(maps, (0xfe << 20) | 1, 1311).as_deref(),
            Some("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
        );
        // Same inode on another device is another file.
        assert_eq!(find_mapping(maps, (0xfe << 20) | 2, 1311), None);
        assert_eq!(find_mapping(maps, 0, 424242), None);
    }

    #[test]
    fn own_parent_chain_reaches_init() {
        let chain = parent_chain(std::process::id());
        assert!(!chain.is_empty());
        assert_eq!(chain[0].pid, std::os::unix::process::parent_id());
        assert!(chain.len() <= PARENT_CHAIN_MAX);
        // Each entry is the parent of the one before it.
        for pair in chain.windows(2) {
            assert_eq!(stat(pair[0].pid).unwrap().ppid, pair[1].pid);
        }
    }

    #[test]
    fn argv_splitting() {
        assert_eq!(split_nul(b"ls\0-l\0a b\0"), vec!["ls", "-l", "a b"]);
        assert_eq!(split_nul(b"cut\0argu"), vec!["cut", "argu"]);
        assert!(split_nul(b"").is_empty());
    }
}
