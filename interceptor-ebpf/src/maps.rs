//! Every map the programs share with each other and with the daemon.
//!
//! All maps are pinned by name under the daemon's pin directory (/sys/fs/bpf/interceptor by
//! default): they outlive the daemon, so enforcement, tracked agents and held tasks survive
//! its death, and a new daemon picks them up.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use interceptor_common::{
    AgentName, EndpointKey, ExecPath, ExecRule, Grant, GrantKey, HeldTask, InodeKey, NAME_KEY_MAX,
    OpenRule, OpenScratch, RULE_PATH_MAX, TrackedTask, counters, exec_flags,
};

/// Agent processes, keyed by tgid. Filled by the daemon at registration and by
/// `tracking_sched_process_fork` for every child of a tracked process; emptied at exit.
#[map]
pub static TRACKED: HashMap<u32, TrackedTask> = HashMap::pinned(65_536, 0);

/// Agent uids: every process running with one of these real uids is an agent
/// (uid -> agent id). Filled by the daemon from its configuration.
#[map]
pub static AGENT_UIDS: HashMap<u32, u32> = HashMap::pinned(1_024, 0);

/// Agent cgroups (cgroup v2 id -> agent id): every process in one of these cgroups, or in a
/// cgroup below one, is an agent. Filled by the daemon from its configuration.
#[map]
pub static AGENT_CGROUPS: HashMap<u64, u32> = HashMap::pinned(1_024, 0);

/// Agent processes stopped before their first instruction, keyed by tgid. The daemon
/// removes the entry before it resumes (SIGCONT) or kills the task; while it is present,
/// `signal_task_kill` refuses every SIGCONT to the task.
#[map]
pub static HELD: HashMap<u32, HeldTask> = HashMap::pinned(4_096, 0);

/// Exec verdicts by the binary's identity (device, inode), filled from the policy.
/// A binary with no entry is allowed.
#[map]
pub static EXEC_RULES: HashMap<InodeKey, ExecRule> = HashMap::pinned(4_096, 0);

/// Agents (by id, or [`interceptor_common::EVERY_AGENT`]) whose execs of binaries with no
/// `EXEC_RULES` entry are held for the daemon, which judges them with the whole policy: the
/// policy names programs by glob or basename, or its default exec action is `ask` or `deny`.
/// The value is unused (1).
#[map]
pub static EXEC_FALLBACK: HashMap<u32, u32> = HashMap::pinned(1_024, 0);

/// Open rules by the file's identity (device, inode): every name of the file.
#[map]
pub static OPEN_INODES: HashMap<InodeKey, OpenRule> = HashMap::pinned(4_096, 0);

/// Open rules by path: exact paths (key includes the terminating NUL) and directory
/// prefixes (key ends with `/`), longest match wins (and is the strictest: see [`OpenRule`]).
#[map]
pub static OPEN_PATHS: LpmTrie<[u8; RULE_PATH_MAX], OpenRule> = LpmTrie::pinned(4_096, 0);

/// Directories that name rules are scoped to, by the opened file's directory with its `/`:
/// `dir/` then NUL for the files directly in it (`dir/*.pem`), `dir/` alone for every file
/// below it (`dir/**/*.pem`). The value is the scope id of `OPEN_NAMES`/`OPEN_SUFFIXES`
/// keys; a scope holds the rules of every directory entry that covers it.
#[map]
pub static OPEN_DIRS: LpmTrie<[u8; RULE_PATH_MAX], u32> = LpmTrie::pinned(4_096, 0);

/// Open rules by file name within a scope (0: any directory): exact names and name prefixes.
#[map]
pub static OPEN_NAMES: LpmTrie<[u8; NAME_KEY_MAX], OpenRule> = LpmTrie::pinned(4_096, 0);

/// Open rules by the end of the file name within a scope (reversed name suffixes).
#[map]
pub static OPEN_SUFFIXES: LpmTrie<[u8; NAME_KEY_MAX], OpenRule> = LpmTrie::pinned(4_096, 0);

/// `[defaults] open`: the verdict of each access class for an agent open no rule names
/// (rule 0). Index 0 only.
#[map]
pub static OPEN_DEFAULT: Array<OpenRule> = Array::pinned(1, 0);

/// Just-in-time grants: an agent may open one file in the granted modes, until the grant
/// expires or is used up; the kernel deletes it then.
#[map]
pub static GRANTS: HashMap<GrantKey, Grant> = HashMap::pinned(4_096, 0);

/// Scratch space for `open_file_open` (path buffer and trie key); holds no state.
#[map]
pub static OPEN_SCRATCH: PerCpuArray<OpenScratch> = PerCpuArray::with_max_entries(1, 0);

/// Resolved paths of agents' binaries between `exec_bprm_check_security`, which resolves
/// them, and `exec_sched_process_exec`, which reports them; keyed by the exec'ing thread's
/// id. Least recently used entries make room (an exec whose entry is gone reports no path,
/// and the daemon reads /proc instead). Not pinned: it holds nothing a new daemon needs.
#[map]
pub static EXEC_PATHS: LruHashMap<u32, ExecPath> = LruHashMap::with_max_entries(1_024, 0);

/// Scratch space for resolving an executable's path; holds no state.
#[map]
pub static EXEC_SCRATCH: PerCpuArray<ExecPath> = PerCpuArray::with_max_entries(1, 0);

/// Endpoints agents may not connect to: the daemon's approval listener, filled by the daemon
/// once it listens (an all-zero address guards the port on every address of its family).
/// The value is unused (1).
#[map]
pub static GUARDED_ENDPOINTS: HashMap<EndpointKey, u32> = HashMap::pinned(64, 0);

/// Events for the daemon (`interceptor_common::ExecEvent`, `OpenEvent`, `ConnectEvent`).
#[map]
pub static EVENTS: RingBuf = RingBuf::pinned(1 << 20, 0);

/// Failure counters (`interceptor_common::counters`), per CPU so increments never race.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::pinned(counters::COUNT, 0);

/// The daemon's heartbeat: CLOCK_BOOTTIME ns of its last beat (slot 0), written every
/// second. Agent operations that need the daemon are refused while it is stale.
#[map]
pub static HEARTBEAT: Array<u64> = Array::pinned(1, 0);

/// Slot 0 is non-zero while the daemon cannot write its audit log: agent execs, and agent
/// opens a rule names, are refused until it can again (they would go unrecorded).
#[map]
pub static AUDIT_DOWN: Array<u32> = Array::pinned(1, 0);

/// Agent names by id. The programs never read it: it lives here so that it survives the
/// daemon with the other pins and a restarted daemon can name running agents.
#[map]
pub static AGENT_NAMES: HashMap<u32, AgentName> = HashMap::pinned(1_024, 0);

/// Records the current process (`tgid`; `task` names its leader's start time) in `HELD`
/// before it is stopped, with `held_flags` for a daemon that re-adopts it. Returns the event
/// flags to add: `HELD`, or `DENIED | HOLD_FAILED` (counted) when the map is full: such an
/// operation is refused, never left running or stopped with nobody to answer.
#[inline(always)]
pub fn record_hold(
    task: *const u8,
    tgid: u32,
    rule_id: u32,
    agent_id: u32,
    held_flags: u32,
) -> u32 {
    let held = HeldTask {
        start_boottime: crate::kernel::process_start(task).unwrap_or(0),
        rule_id,
        agent_id,
        flags: held_flags | exec_flags::HELD,
        _pad: 0,
    };
    if HELD.insert(&tgid, &held, 0).is_ok() {
        exec_flags::HELD
    } else {
        count(counters::HOLD_FAILED);
        exec_flags::DENIED | exec_flags::HOLD_FAILED
    }
}

/// Backlog of unread events past which every event wakes the daemon.
const WAKEUP_BACKLOG: u64 = 256 * 1024;

/// Ring-buffer submit flags for an event. Waking the daemon costs the producing task an
/// interrupt (a hypervisor exit on a VM), so only events someone waits on wake it at once: a
/// held task, a pending request. The rest are read on the daemon's next pass (it drains the
/// buffer on a short timer), or at once when the backlog grows.
#[inline(always)]
pub fn submit_flags(urgent: bool) -> u64 {
    const BPF_RB_NO_WAKEUP: u64 = 1;
    const BPF_RB_FORCE_WAKEUP: u64 = 2;
    const BPF_RB_AVAIL_DATA: u64 = 0;
    if urgent || EVENTS.query(BPF_RB_AVAIL_DATA) >= WAKEUP_BACKLOG {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

/// Adds one to a failure counter.
#[inline(always)]
pub fn count(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: the pointer is into this CPU's slot of a map value, valid for the program run.
        unsafe { *slot += 1 };
    }
}
