//! Types that cross the kernel/user boundary.
//!
//! Everything here is read as raw bytes on the other side, so every type is `#[repr(C)]`,
//! uses `u32` where a `bool` would do (a `bool` with any other bit pattern is undefined
//! behaviour in Rust), carries explicit padding fields and has its size asserted at compile
//! time. With the `user` feature the types implement `aya::Pod` for the daemon.
#![no_std]

/// Bytes of the executable's name (`bprm->filename`: the path as given to execve) carried in an [`ExecEvent`]. Longer names are cut and flagged
/// [`exec_flags::FILENAME_TRUNCATED`].
pub const FILENAME_MAX: usize = 512;

/// Bytes of the NUL-separated argv carried in an [`ExecEvent`]. Longer argv is cut and
/// flagged [`exec_flags::ARGV_TRUNCATED`]; the daemon reads the whole of it from /proc
/// while a held task is stopped.
pub const ARGV_MAX: usize = 2048;

/// Bytes of the executable's resolved path (`bpf_d_path` of the file the kernel executes or
/// maps) carried in an [`ExecEvent`]; longer paths are left out (`path_len` 0) and the daemon
/// reads `/proc/PID/exe` instead.
pub const EXEC_PATH_MAX: usize = 512;

/// What the kernel does with an operation. Kept in maps as a `u32`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Run it.
    Allow = 0,
    /// Run it and make sure it is recorded.
    Audit = 1,
    /// Hold it until userspace (a policy decision or a human) answers.
    Ask = 2,
    /// Refuse it.
    Deny = 3,
}

impl Verdict {
    /// Decodes a verdict read from a map or event; unknown values are `None`.
    pub const fn from_u32(raw: u32) -> Option<Self> {
        match raw {
            0 => Some(Self::Allow),
            1 => Some(Self::Audit),
            2 => Some(Self::Ask),
            3 => Some(Self::Deny),
            _ => None,
        }
    }
}

/// Bits of [`ExecEvent::flags`].
pub mod exec_flags {
    /// The task was stopped before its first instruction and waits for the daemon.
    pub const HELD: u32 = 1 << 0;
    /// The exec was refused: -EPERM from the LSM hook, or SIGKILL on the tracepoint backend.
    pub const DENIED: u32 = 1 << 1;
    /// argv was longer than [`crate::ARGV_MAX`] (or could not be read whole).
    pub const ARGV_TRUNCATED: u32 = 1 << 2;
    /// The file name was longer than [`crate::FILENAME_MAX`].
    pub const FILENAME_TRUNCATED: u32 = 1 << 3;
    /// The kernel could not record the hold (map full); the task was killed instead.
    pub const HOLD_FAILED: u32 = 1 << 4;
    /// argv was not readable at this hook (the LSM deny happens before the new mm exists).
    pub const ARGV_UNAVAILABLE: u32 = 1 << 5;
    /// The binary has no name in any directory (memfd, or unlinked before the exec): such an
    /// exec is held at least, whatever the rules say.
    pub const UNLINKED_BINARY: u32 = 1 << 6;
    /// Held so that userspace can decide (or record) from the full context, e.g. because argv
    /// was longer than the kernel's copy; the daemon answers without a human when policy allows.
    pub const USERSPACE_DECIDES: u32 = 1 << 7;
    /// Needed the daemon, whose heartbeat was stale: refused instead of held (fail closed).
    pub const DAEMON_DOWN: u32 = 1 << 8;
    /// (opens) Refused now with a pending request: an approval installs a grant and the
    /// agent's retry succeeds (a hold cannot undo a write, create or truncate).
    pub const PENDING: u32 = 1 << 9;
    /// (opens) Allowed by a just-in-time grant.
    pub const GRANTED: u32 = 1 << 10;
    /// (opens) The path could not be resolved (d_path failed): refused (fail closed).
    pub const PATH_UNRESOLVED: u32 = 1 << 11;
    /// (held tasks) The hold is on an open, not an exec.
    pub const OPEN: u32 = 1 << 12;
    /// The program was not exec'd but mapped executable by a running one (`ld.so /path/bin`,
    /// a hand-written loader): judged as an exec of the mapped file. `path` names that file;
    /// `filename` and argv are the loader's.
    pub const MAPPED: u32 = 1 << 13;
    /// Refused because the daemon cannot write the audit log: nothing an agent does that
    /// would be recorded may go unrecorded (fail closed).
    pub const AUDIT_DOWN: u32 = 1 << 14;
}

/// Kinds of events in the `EVENTS` ring buffer; every event starts with its kind (`u32`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A tracked task ran a new program (sched_process_exec): an [`ExecEvent`].
    Exec = 1,
    /// A tracked task's exec was refused in bprm_check_security (lsm backend): an [`ExecEvent`].
    ExecDenied = 2,
    /// A tracked task opened a file a rule names (file_open, lsm backend): an [`OpenEvent`].
    Open = 3,
    /// A tracked task's connect to a guarded endpoint (the daemon's approval listener) was
    /// refused (cgroup connect4/connect6, both backends): a [`ConnectEvent`].
    ConnectRefused = 4,
}

impl EventKind {
    /// Decodes the kind of an event; unknown values are `None`.
    pub const fn from_u32(raw: u32) -> Option<Self> {
        match raw {
            1 => Some(Self::Exec),
            2 => Some(Self::ExecDenied),
            3 => Some(Self::Open),
            4 => Some(Self::ConnectRefused),
            _ => None,
        }
    }
}

/// `AF_INET`, as in [`EndpointKey::family`] and [`ConnectEvent::family`].
pub const AF_INET: u32 = 2;
/// `AF_INET6`.
pub const AF_INET6: u32 = 10;

/// Key of the `GUARDED_ENDPOINTS` map: a TCP/UDP endpoint agents may not connect to.
///
/// IPv4 addresses are matched in their own family: the kernel turns a connect to an
/// IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) into the IPv4 key before it looks.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u32,
    /// The port, in host byte order.
    pub port: u32,
    /// The address as four words in network byte order, like `bpf_sock_addr.user_ip6`
    /// (an IPv4 address is the first word, the rest zero). All zero: any address of the
    /// family.
    pub addr: [u32; 4],
}

const _: () = assert!(core::mem::size_of::<EndpointKey>() == 24);

/// An agent's connect to a guarded endpoint, refused; written into `EVENTS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectEvent {
    /// [`EventKind::ConnectRefused`].
    pub kind: u32,
    /// Process id (thread-group id).
    pub tgid: u32,
    /// Thread id of the connecting task.
    pub pid: u32,
    /// Real uid.
    pub uid: u32,
    pub agent_id: u32,
    /// The socket's family as the agent asked ([`AF_INET`] or [`AF_INET6`]; an IPv4-mapped
    /// destination keeps [`AF_INET6`]).
    pub family: u32,
    /// Destination port, host byte order.
    pub port: u32,
    /// Explicit padding; always zero.
    pub _pad: u32,
    /// Destination address as the agent gave it, four words in network byte order (IPv4:
    /// the first word).
    pub addr: [u32; 4],
}

const _: () = assert!(core::mem::size_of::<ConnectEvent>() == 48);

/// Bits of an open's access mode (in rules, events and grants).
pub mod access {
    pub const READ: u32 = 1 << 0;
    pub const WRITE: u32 = 1 << 1;
    /// The open created the file.
    pub const CREATE: u32 = 1 << 2;
    /// O_TRUNC.
    pub const TRUNCATE: u32 = 1 << 3;
    /// Every mode.
    pub const ALL: u32 = READ | WRITE | CREATE | TRUNCATE;
}

/// Bytes of the resolved path carried in an [`OpenEvent`].
pub const OPEN_PATH_MAX: usize = 1024;

/// Bytes of a path the `OPEN_PATHS` trie matches on. Exact rules include the path's
/// terminating NUL in their key, so they only match the whole path; prefix rules (a directory
/// with its trailing `/`) do not.
pub const RULE_PATH_MAX: usize = 256;

/// Key bytes of the `OPEN_NAMES` and `OPEN_SUFFIXES` tries (the kernel's LPM trie maximum):
/// a 4-byte scope id (big-endian; 0 is "any directory"), then a file name, forwards with a
/// terminating NUL for exact names (none for name prefixes such as `.env.`) in `OPEN_NAMES`,
/// or reversed for name suffixes (`mep.` for `*.pem`) in `OPEN_SUFFIXES`.
pub const NAME_KEY_MAX: usize = 256;

/// The longest file name the name tries hold whole; the first (or, reversed, last)
/// `RULE_NAME_MAX + 1` bytes of longer names are matched, so prefix and suffix rules still
/// apply to them.
pub const RULE_NAME_MAX: usize = NAME_KEY_MAX - 5;

/// Value of the open rule maps (`OPEN_INODES`, `OPEN_PATHS`, `OPEN_NAMES`, `OPEN_SUFFIXES`):
/// the verdict for each access class, with the rule that gave it. An open takes the stricter
/// verdict of the classes it uses: read (`FMODE_READ`) and write (`FMODE_WRITE`, `O_CREAT`,
/// `O_TRUNC`). A class no rule names is `Allow` with rule 0. Every entry already carries the
/// strictest verdict of every entry the kernel would also find for the same path (the
/// compiler folds covering directories into the entries beneath them), so the longest match
/// is the strictest match.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenRule {
    /// A [`Verdict`] for reads; an unknown value is treated as `Deny`.
    pub read_verdict: u32,
    /// Index of the rule that gave `read_verdict`.
    pub read_rule: u32,
    /// A [`Verdict`] for writes, creates and truncations; an unknown value is `Deny`.
    pub write_verdict: u32,
    /// Index of the rule that gave `write_verdict`.
    pub write_rule: u32,
}

impl OpenRule {
    /// The verdict and rule for an open in `mode` ([`access`] bits): the stricter class.
    #[inline(always)]
    pub fn for_mode(&self, mode: u32) -> (u32, u32) {
        let mut out = (Verdict::Allow as u32, 0);
        if mode & access::READ != 0 {
            out = (clamp_verdict(self.read_verdict), self.read_rule);
        }
        if mode & (access::WRITE | access::CREATE | access::TRUNCATE) != 0 {
            let write = clamp_verdict(self.write_verdict);
            if write > out.0 {
                out = (write, self.write_rule);
            }
        }
        out
    }

    /// Each class takes the stricter of the two; a tie keeps `self`'s rule unless `self`
    /// names none (so an `allow` rule still marks its class as named).
    #[inline(always)]
    pub fn stricter(self, other: OpenRule) -> OpenRule {
        let pick = |mine: (u32, u32), theirs: (u32, u32)| {
            let (m, t) = (clamp_verdict(mine.0), clamp_verdict(theirs.0));
            if t > m || (t == m && mine.1 == 0) {
                theirs
            } else {
                mine
            }
        };
        let (read_verdict, read_rule) = pick(
            (self.read_verdict, self.read_rule),
            (other.read_verdict, other.read_rule),
        );
        let (write_verdict, write_rule) = pick(
            (self.write_verdict, self.write_rule),
            (other.write_verdict, other.write_rule),
        );
        OpenRule {
            read_verdict,
            read_rule,
            write_verdict,
            write_rule,
        }
    }
}

/// A verdict read from a map: unknown values are `Deny` (fail closed).
#[inline(always)]
pub fn clamp_verdict(v: u32) -> u32 {
    if v > Verdict::Deny as u32 {
        Verdict::Deny as u32
    } else {
        v
    }
}

const _: () = assert!(core::mem::size_of::<OpenRule>() == 16);

/// One open by a tracked task that a rule matched, written into `EVENTS`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct OpenEvent {
    /// [`EventKind::Open`].
    pub kind: u32,
    /// [`exec_flags`] bits (HELD, DENIED, PENDING, GRANTED, DAEMON_DOWN, PATH_UNRESOLVED).
    pub flags: u32,
    pub tgid: u32,
    pub pid: u32,
    pub uid: u32,
    pub agent_id: u32,
    /// The [`Verdict`] of the matching rule.
    pub verdict: u32,
    pub rule_id: u32,
    /// The [`access`] modes of this open.
    pub access: u32,
    /// Valid bytes in `path` (without the NUL).
    pub path_len: u32,
    pub start_boottime: u64,
    pub dev: u64,
    pub ino: u64,
    /// The resolved path (d_path), cut at [`OPEN_PATH_MAX`].
    pub path: [u8; OPEN_PATH_MAX],
}

const _: () = assert!(core::mem::size_of::<OpenEvent>() == 64 + OPEN_PATH_MAX);

/// Key of the `GRANTS` map: what one agent may do to one file without asking.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GrantKey {
    pub agent_id: u32,
    /// Explicit padding; always zero.
    pub _pad: u32,
    pub dev: u64,
    pub ino: u64,
}

const _: () = assert!(core::mem::size_of::<GrantKey>() == 24);

/// Value of the `GRANTS` map. The kernel deletes a grant when it expires or is used up.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// CLOCK_BOOTTIME ns after which the grant is void.
    pub expires_boot_ns: u64,
    /// Opens left (each allowed open uses one).
    pub uses_left: u32,
    /// The [`access`] modes granted.
    pub access: u32,
}

const _: () = assert!(core::mem::size_of::<Grant>() == 16);

/// Per-CPU scratch space of `open_file_open`: too big for the 512-byte stack.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct OpenScratch {
    /// LPM trie key: prefix length in bits, then the path's first bytes.
    pub prefix_len: u32,
    pub key: [u8; RULE_PATH_MAX],
    /// Name trie key: prefix length in bits, then scope id and name.
    pub name_prefix_len: u32,
    pub name_key: [u8; NAME_KEY_MAX],
    /// Suffix trie key: prefix length in bits, then scope id and the name reversed.
    pub suffix_prefix_len: u32,
    pub suffix_key: [u8; NAME_KEY_MAX],
    /// The whole resolved path from d_path.
    pub path: [u8; 4096],
}

/// One exec by a tracked task, written into the `EVENTS` ring buffer.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecEvent {
    /// An [`EventKind`].
    pub kind: u32,
    /// [`exec_flags`] bits.
    pub flags: u32,
    /// Process id (thread-group id).
    pub tgid: u32,
    /// Thread id of the task that exec'd.
    pub pid: u32,
    /// Thread-group id of the real parent.
    pub ppid: u32,
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// The agent the task belongs to (assigned by the daemon at registration).
    pub agent_id: u32,
    /// `start_boottime` of the thread-group leader, in ns: with `tgid` it names the process
    /// without confusion by pid reuse.
    pub start_boottime: u64,
    /// cgroup v2 id of the task.
    pub cgroup_id: u64,
    /// Kernel-encoded device (`MKDEV(major, minor)` = major << 20 | minor) of the binary.
    pub dev: u64,
    /// Inode number of the binary.
    pub ino: u64,
    /// The [`Verdict`] the kernel applied.
    pub verdict: u32,
    /// Valid bytes in `filename` (without the NUL).
    pub filename_len: u32,
    /// Valid bytes in `argv` (NUL-separated arguments).
    pub argv_len: u32,
    /// The policy rule behind `verdict` (`ExecRule::rule_id`; 0 when no rule matched).
    pub rule_id: u32,
    /// The executable's name, see [`FILENAME_MAX`].
    pub filename: [u8; FILENAME_MAX],
    /// Valid bytes in `path` (without the NUL); 0 when the kernel could not resolve it.
    pub path_len: u32,
    pub _pad: u32,
    /// The resolved path of the executed (or mapped) file, see [`EXEC_PATH_MAX`].
    pub path: [u8; EXEC_PATH_MAX],
    /// The argument vector, NUL-separated, see [`ARGV_MAX`].
    pub argv: [u8; ARGV_MAX],
}

const _: () =
    assert!(core::mem::size_of::<ExecEvent>() == 88 + FILENAME_MAX + EXEC_PATH_MAX + ARGV_MAX);

/// The resolved path of a binary being exec'd, kept by `exec_bprm_check_security` (where
/// `bpf_d_path` may be called) for `exec_sched_process_exec` (where it may not).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecPath {
    /// Valid bytes in `path` (without the NUL); 0 when unresolved or too long.
    pub len: u32,
    pub _pad: u32,
    pub path: [u8; EXEC_PATH_MAX],
}

const _: () = assert!(core::mem::size_of::<ExecPath>() == 8 + EXEC_PATH_MAX);

/// Key of the `EXEC_RULES` map: the binary by identity, so symlinks, hardlinks and
/// relative paths all reach the same rule.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InodeKey {
    /// Kernel-encoded device (major << 20 | minor), as in `super_block.s_dev`.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
}

const _: () = assert!(core::mem::size_of::<InodeKey>() == 16);

/// Value of the `EXEC_RULES` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecRule {
    /// A [`Verdict`].
    pub verdict: u32,
    /// Index of the rule in the daemon's policy, reported back in events.
    pub rule_id: u32,
}

const _: () = assert!(core::mem::size_of::<ExecRule>() == 8);

/// `EXEC_FALLBACK` key that stands for every agent (agent ids start at 1).
pub const EVERY_AGENT: u32 = 0;

/// Value of the `TRACKED` map (keyed by tgid): this process is an agent.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackedTask {
    /// `start_boottime` of the thread-group leader in ns; when [`tracked_flags::UNCONFIRMED`]
    /// is set it is in clock ticks (what /proc/PID/stat shows) until the kernel confirms it.
    pub start: u64,
    /// The agent this process belongs to.
    pub agent_id: u32,
    /// [`tracked_flags`] bits.
    pub flags: u32,
}

const _: () = assert!(core::mem::size_of::<TrackedTask>() == 16);

/// Bits of [`TrackedTask::flags`].
/// `TRACKED` keys from here up are not processes but room reserved for the child of a fork
/// in progress (`RESERVED_KEY_BASE | tid` of the forking thread): pids stay below 2^22.
pub const RESERVED_KEY_BASE: u32 = 1 << 31;

pub mod tracked_flags {
    /// Registered from userspace, which only knows the start time in clock ticks. The
    /// first kernel hook that sees the process compares ticks and stores the exact ns.
    pub const UNCONFIRMED: u32 = 1 << 0;
}

/// Nanoseconds per clock tick of /proc/PID/stat's `starttime` (USER_HZ is 100 on every
/// architecture Linux supports for userspace ABI purposes).
pub const NSEC_PER_CLOCK_TICK: u64 = 10_000_000;

/// Value of the `HELD` map (keyed by tgid): the process is stopped until the daemon answers.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldTask {
    /// `start_boottime` of the held process, ns.
    pub start_boottime: u64,
    /// The rule that asked for the hold.
    pub rule_id: u32,
    /// The agent the process belongs to.
    pub agent_id: u32,
    /// The [`exec_flags`] of the held exec, so a restarted daemon can re-adopt the hold.
    pub flags: u32,
    /// Explicit padding; always zero.
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<HeldTask>() == 24);

/// Longest agent name.
pub const AGENT_NAME_MAX: usize = 64;

/// Value of the `AGENT_NAMES` map (agent id -> name), kept in the kernel only so that a
/// restarted daemon knows the names of agents that are still running.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct AgentName {
    /// Valid bytes in `name`.
    pub len: u32,
    pub name: [u8; AGENT_NAME_MAX],
}

const _: () = assert!(core::mem::size_of::<AgentName>() == 4 + AGENT_NAME_MAX);

/// Indices into the `COUNTERS` per-CPU array: things that went wrong in the kernel and must
/// never go unnoticed.
pub mod counters {
    /// Ring buffer full: an exec event was lost (held execs are killed instead).
    pub const EVENT_DROPPED: u32 = 0;
    /// `TRACKED` full: a tracked process forked a child that could not be tracked.
    pub const TRACK_FAILED: u32 = 1;
    /// `HELD` full: an exec that should have been held was killed.
    pub const HOLD_FAILED: u32 = 2;
    /// A SIGCONT to a held task was refused (task_kill guard).
    pub const SIGCONT_BLOCKED: u32 = 3;
    /// A registered process was found with a different start time (pid reuse) and dropped.
    pub const STALE_TRACKED: u32 = 4;
    /// An agent's ptrace (attach, PTRACE_TRACEME, or any access to the daemon) was refused.
    pub const PTRACE_BLOCKED: u32 = 5;
    /// An agent's bpf() call was refused.
    pub const BPF_BLOCKED: u32 = 6;
    /// An agent's user namespace creation was refused.
    pub const USERNS_BLOCKED: u32 = 7;
    /// An agent's signal to the daemon was refused.
    pub const DAEMON_SIGNAL_BLOCKED: u32 = 8;
    /// An agent operation that needed the daemon was refused because its heartbeat was stale.
    pub const DAEMON_DOWN_DENIED: u32 = 9;
    /// An agent's open was refused by a rule (deny, or ask on a write that is now pending).
    pub const OPEN_DENIED: u32 = 10;
    /// An agent's open could not be resolved to a path and was refused.
    pub const OPEN_UNRESOLVED: u32 = 11;
    /// An agent's fork was refused (EAGAIN) because `TRACKED` had no room for the child.
    pub const FORK_REFUSED: u32 = 12;
    /// An agent operation that would be recorded was refused because the daemon could not
    /// write the audit log (`AUDIT_DOWN`).
    pub const AUDIT_DOWN_DENIED: u32 = 13;
    /// An agent's connect to a guarded endpoint (the approval listener) was refused.
    pub const CONNECT_REFUSED: u32 = 14;
    /// An agent's rename or unlink of a file an ask or deny rule names by inode was refused
    /// (it would put another file at the rule's path, which the compiled rule does not name).
    pub const RULE_FILE_GUARDED: u32 = 15;
    /// Number of counters.
    pub const COUNT: u32 = 16;
}

/// Offsets of the kernel struct fields the programs read, resolved by the daemon from the
/// running kernel's BTF (layouts differ between kernels, and aya's Rust programs have no
/// CO-RE field relocation). Passed in as the global `KERNEL_OFFSETS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `task_struct.pid`
    pub task_pid: u32,
    /// `task_struct.tgid`
    pub task_tgid: u32,
    /// `task_struct.real_parent`
    pub task_real_parent: u32,
    /// `task_struct.group_leader`
    pub task_group_leader: u32,
    /// `task_struct.start_boottime`
    pub task_start_boottime: u32,
    /// `task_struct.mm`
    pub task_mm: u32,
    /// `task_struct.signal`
    pub task_signal: u32,
    /// `signal_struct.live` (an `atomic_t`, whose counter is at offset 0)
    pub signal_live: u32,
    /// `mm_struct.arg_start`
    pub mm_arg_start: u32,
    /// `mm_struct.arg_end`
    pub mm_arg_end: u32,
    /// `linux_binprm.file`
    pub bprm_file: u32,
    /// `linux_binprm.filename`
    pub bprm_filename: u32,
    /// `file.f_inode`
    pub file_inode: u32,
    /// `file.f_path`
    pub file_path: u32,
    /// `inode.i_ino`
    pub inode_ino: u32,
    /// `inode.i_sb`
    pub inode_sb: u32,
    /// `inode.i_nlink`
    pub inode_nlink: u32,
    /// `super_block.s_dev`
    pub sb_dev: u32,
    /// `file.f_flags`
    pub file_flags: u32,
    /// `file.f_mode`
    pub file_mode: u32,
    /// `mm_struct.exe_file`
    pub mm_exe_file: u32,
    /// `vm_area_struct.vm_file`
    pub vma_file: u32,
    /// `dentry.d_inode`
    pub dentry_inode: u32,
}

const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 23 * 4);

/// Settings passed to the programs as the global `CONFIG`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelConfig {
    /// The daemon's tgid: the one sender whose SIGCONT reaches a held task, and the process
    /// agents may not signal or trace.
    pub daemon_tgid: u32,
    /// Non-zero when `AGENT_UIDS` has entries (saves a lookup per exec and fork otherwise).
    pub scope_by_uid: u32,
    /// Non-zero when `AGENT_CGROUPS` has entries.
    pub scope_by_cgroup: u32,
    /// Non-zero: agents may not create user namespaces.
    pub deny_userns: u32,
    /// How old the daemon's heartbeat (`HEARTBEAT`, CLOCK_BOOTTIME ns) may be before the
    /// kernel considers the daemon gone and refuses agent operations that need it.
    pub heartbeat_timeout_ms: u32,
}

const _: () = assert!(core::mem::size_of::<KernelConfig>() == 20);

/// How many cgroup levels below the root the kernel checks against `AGENT_CGROUPS`.
pub const MAX_CGROUP_DEPTH: i32 = 16;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are #[repr(C)], contain only integers and byte arrays, and have
    // no implicit padding (sizes asserted above), so every bit pattern is valid.
    unsafe impl aya::Pod for super::ExecEvent {}
    unsafe impl aya::Pod for super::InodeKey {}
    unsafe impl aya::Pod for super::ExecRule {}
    unsafe impl aya::Pod for super::TrackedTask {}
    unsafe impl aya::Pod for super::HeldTask {}
    unsafe impl aya::Pod for super::KernelOffsets {}
    unsafe impl aya::Pod for super::KernelConfig {}
    unsafe impl aya::Pod for super::AgentName {}
    unsafe impl aya::Pod for super::OpenRule {}
    unsafe impl aya::Pod for super::OpenEvent {}
    unsafe impl aya::Pod for super::GrantKey {}
    unsafe impl aya::Pod for super::Grant {}
    unsafe impl aya::Pod for super::EndpointKey {}
    unsafe impl aya::Pod for super::ConnectEvent {}
}
