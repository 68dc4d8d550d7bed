//! Every map the programs share with each other and with the daemon.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, PerCpuArray, RingBuf},
};
use interceptor_common::{ExecRule, HeldTask, InodeKey, TrackedTask, counters};

/// Agent processes, keyed by tgid. Filled by the daemon at registration and by
/// `tracking_sched_process_fork` for every child of a tracked process; emptied at exit.
#[map]
pub static TRACKED: HashMap<u32, TrackedTask> = HashMap::with_max_entries(65_536, 0);

/// Agent uids: every process running with one of these real uids is an agent
/// (uid -> agent id). Filled by the daemon from its configuration.
#[map]
pub static AGENT_UIDS: HashMap<u32, u32> = HashMap::with_max_entries(1_024, 0);

/// Agent cgroups (cgroup v2 id -> agent id): every process in one of these cgroups, or in a
/// cgroup below one, is an agent. Filled by the daemon from its configuration.
#[map]
pub static AGENT_CGROUPS: HashMap<u64, u32> = HashMap::with_max_entries(1_024, 0);

/// Agent processes stopped before their first instruction, keyed by tgid. The daemon
/// removes the entry before it resumes (SIGCONT) or kills the task; while it is present,
/// `signal_task_kill` refuses every SIGCONT to the task.
#[map]
pub static HELD: HashMap<u32, HeldTask> = HashMap::with_max_entries(4_096, 0);

/// Exec verdicts by the binary's identity (device, inode), filled from the policy.
/// A binary with no entry is allowed.
#[map]
pub static EXEC_RULES: HashMap<InodeKey, ExecRule> = HashMap::with_max_entries(4_096, 0);

/// Exec events for the daemon (`interceptor_common::ExecEvent`).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Failure counters (`interceptor_common::counters`), per CPU so increments never race.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counters::COUNT, 0);

/// Adds one to a failure counter.
#[inline(always)]
pub fn count(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: the pointer is into this CPU's slot of a map value, valid for the program run.
        unsafe { *slot += 1 };
    }
}
