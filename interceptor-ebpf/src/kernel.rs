//! Reading kernel structures, and deciding whether the current task is an agent.
//!
//! Field offsets come from the running kernel's BTF, resolved by the daemon and passed in as
//! the `KERNEL_OFFSETS` global: layouts differ between kernels and Rust eBPF programs have
//! no CO-RE field relocation. Globals are read with `read_volatile` so the compiler cannot
//! fold them to the zeroes they hold in the object file.

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_get_current_uid_gid,
        bpf_probe_read_kernel,
        generated::{bpf_get_current_ancestor_cgroup_id, bpf_ktime_get_boot_ns},
    },
};
use aya_log_ebpf::info;
use interceptor_common::{
    InodeKey, KernelConfig, KernelOffsets, MAX_CGROUP_DEPTH, NSEC_PER_CLOCK_TICK, TrackedTask,
    counters, tracked_flags,
};

use crate::maps::{AGENT_CGROUPS, AGENT_UIDS, AUDIT_DOWN, HEARTBEAT, TRACKED, count};

#[unsafe(no_mangle)]
static KERNEL_OFFSETS: KernelOffsets = KernelOffsets {
    task_pid: 0,
    task_tgid: 0,
    task_real_parent: 0,
    task_group_leader: 0,
    task_start_boottime: 0,
    task_mm: 0,
    task_signal: 0,
    signal_live: 0,
    mm_arg_start: 0,
    mm_arg_end: 0,
    bprm_file: 0,
    bprm_filename: 0,
    file_inode: 0,
    file_path: 0,
    inode_ino: 0,
    inode_sb: 0,
    inode_nlink: 0,
    sb_dev: 0,
    file_flags: 0,
    file_mode: 0,
    mm_exe_file: 0,
    vma_file: 0,
    dentry_inode: 0,
};

#[unsafe(no_mangle)]
static CONFIG: KernelConfig = KernelConfig {
    daemon_tgid: 0,
    scope_by_uid: 0,
    scope_by_cgroup: 0,
    deny_userns: 0,
    heartbeat_timeout_ms: 0,
};

/// The offsets table; every field access goes through a volatile read of it.
#[inline(always)]
pub fn offsets() -> KernelOffsets {
    // SAFETY: reading a static we own.
    unsafe { core::ptr::read_volatile(&KERNEL_OFFSETS) }
}

/// The daemon's settings.
#[inline(always)]
pub fn config() -> KernelConfig {
    // SAFETY: reading a static we own.
    unsafe { core::ptr::read_volatile(&CONFIG) }
}

/// Reads a `T` at `base + offset` from kernel memory.
#[inline(always)]
pub fn read<T>(base: *const u8, offset: u32) -> Result<T, i32> {
    // SAFETY: bpf_probe_read_kernel copies through the kernel's fault-tolerant accessor; a
    // bad address yields an error, never a fault.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset as usize) as *const T) }
}

/// The current task (`struct task_struct *`).
#[inline(always)]
pub fn current_task() -> *const u8 {
    // SAFETY: the helper has no preconditions.
    unsafe { bpf_get_current_task() as *const u8 }
}

/// `task->tgid`.
#[inline(always)]
pub fn task_tgid(task: *const u8) -> Result<u32, i32> {
    read::<i32>(task, offsets().task_tgid).map(|v| v as u32)
}

/// `task->pid` (the thread id).
#[inline(always)]
pub fn task_pid(task: *const u8) -> Result<u32, i32> {
    read::<i32>(task, offsets().task_pid).map(|v| v as u32)
}

/// `task->group_leader->start_boottime`: with the tgid, names a process across pid reuse.
#[inline(always)]
pub fn process_start(task: *const u8) -> Result<u64, i32> {
    let off = offsets();
    let leader: *const u8 = read(task, off.task_group_leader)?;
    read(leader, off.task_start_boottime)
}

/// `task->real_parent->tgid`.
#[inline(always)]
pub fn parent_tgid(task: *const u8) -> Result<u32, i32> {
    let parent: *const u8 = read(task, offsets().task_real_parent)?;
    task_tgid(parent)
}

/// The agent the current task belongs to, if it is one. `task` must be the current task.
///
/// A `TRACKED` entry names a process by (tgid, start time). Entries the daemon registered
/// carry the start time in clock ticks (all /proc shows); the first time the kernel sees
/// such a process it checks the ticks and stores the exact value. An entry whose start time
/// does not match belongs to an earlier process with the same pid: it is removed and counted.
///
/// A process that is not in `TRACKED` but runs as a configured agent uid or inside a
/// configured agent cgroup (or below it) is added to `TRACKED` on the spot, so changing
/// cgroup or uid later does not end its tracking.
#[inline(always)]
pub fn agent_of<C: EbpfContext>(ctx: &C, task: *const u8, tgid: u32) -> Option<u32> {
    let Some(entry) = TRACKED.get_ptr_mut(&tgid) else {
        return agent_by_scope(task, tgid);
    };
    let start = process_start(task).ok()?;
    // SAFETY: a pointer into a map value, valid for this program run. Two CPUs may confirm
    // the same entry at once; both write the same values.
    let entry = unsafe { &mut *entry };
    if entry.flags & tracked_flags::UNCONFIRMED != 0 {
        if entry.start == start / NSEC_PER_CLOCK_TICK {
            entry.start = start;
            entry.flags &= !tracked_flags::UNCONFIRMED;
            info!(
                ctx,
                "registered agent process {} confirmed (agent {})", tgid, entry.agent_id
            );
            return Some(entry.agent_id);
        }
    } else if entry.start == start {
        return Some(entry.agent_id);
    }
    let _ = TRACKED.remove(&tgid);
    count(counters::STALE_TRACKED);
    agent_by_scope(task, tgid)
}

/// Whether the current task is an agent by its uid or cgroup; if so it is tracked from now on.
#[inline(always)]
fn agent_by_scope(task: *const u8, tgid: u32) -> Option<u32> {
    let cfg = config();
    let mut agent = None;
    if cfg.scope_by_uid != 0 {
        let uid = bpf_get_current_uid_gid() as u32;
        // SAFETY: the value is copied out at once.
        agent = unsafe { AGENT_UIDS.get(&uid).copied() };
    }
    if agent.is_none() && cfg.scope_by_cgroup != 0 {
        // Level 0 is the root cgroup; a level deeper than the task's cgroup yields 0.
        for level in 1..=MAX_CGROUP_DEPTH {
            // SAFETY: the helper takes a level and has no memory arguments.
            let id = unsafe { bpf_get_current_ancestor_cgroup_id(level) };
            if id == 0 {
                break;
            }
            // SAFETY: the value is copied out at once.
            if let Some(found) = unsafe { AGENT_CGROUPS.get(&id).copied() } {
                agent = Some(found);
                break;
            }
        }
    }
    let agent_id = agent?;
    let start = process_start(task).unwrap_or(0);
    if TRACKED
        .insert(
            &tgid,
            &TrackedTask {
                start,
                agent_id,
                flags: 0,
            },
            0,
        )
        .is_err()
    {
        // Still an agent for this operation; its children may escape tracking.
        count(counters::TRACK_FAILED);
    }
    Some(agent_id)
}

/// Whether the daemon's heartbeat is fresh. A missing or stale heartbeat means nobody can
/// answer a hold: operations that need userspace are refused instead.
#[inline(always)]
pub fn daemon_alive() -> bool {
    let Some(beat) = HEARTBEAT.get(0) else {
        return false;
    };
    // SAFETY: the helper has no arguments.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    now.saturating_sub(*beat) <= config().heartbeat_timeout_ms as u64 * 1_000_000
}

/// Whether the daemon has said it cannot write the audit log (`AUDIT_DOWN`).
#[inline(always)]
pub fn audit_down() -> bool {
    AUDIT_DOWN.get(0).is_some_and(|down| *down != 0)
}

/// A file's identity: `file->f_inode->{i_sb->s_dev, i_ino}`.
#[inline(always)]
pub fn file_identity(file: *const u8) -> Option<InodeKey> {
    let inode: *const u8 = read(file, offsets().file_inode).ok()?;
    inode_identity(inode)
}

/// The (device, inode) of the inode a dentry names; `None` for a negative dentry (nothing
/// there yet) or an unreadable one.
#[inline(always)]
pub fn dentry_identity(dentry: *const u8) -> Option<InodeKey> {
    let inode: *const u8 = read(dentry, offsets().dentry_inode).ok()?;
    if inode.is_null() {
        return None;
    }
    inode_identity(inode)
}

/// The (device, inode) of an inode, as rules key them.
#[inline(always)]
pub fn inode_identity(inode: *const u8) -> Option<InodeKey> {
    let off = offsets();
    let ino: u64 = read(inode, off.inode_ino).ok()?;
    let sb: *const u8 = read(inode, off.inode_sb).ok()?;
    let dev: u32 = read(sb, off.sb_dev).ok()?;
    Some(InodeKey {
        dev: dev as u64,
        ino,
    })
}

/// The current process's tgid.
#[inline(always)]
pub fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

/// The agent the current task belongs to (see [`agent_of`]).
#[inline(always)]
pub fn current_agent<C: EbpfContext>(ctx: &C) -> Option<u32> {
    agent_of(ctx, current_task(), current_tgid())
}
