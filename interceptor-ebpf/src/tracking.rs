//! Agent scoping: a child of a tracked process is tracked, and a process leaves `TRACKED`
//! (and `HELD`) when its last thread exits.
//!
//! With the lsm backend an agent's fork is refused (EAGAIN) when `TRACKED` has no room for
//! the child: `task_alloc` reserves the child's slot before the child exists, under a key
//! no process has (`RESERVED_KEY_BASE | tid` of the forking thread), and
//! `sched_process_fork` swaps the reservation for the child's entry.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{btf_tracepoint, lsm},
    programs::{BtfTracePointContext, LsmContext},
};
use aya_log_ebpf::warn;
use interceptor_common::{RESERVED_KEY_BASE, TrackedTask, counters};

use crate::{
    kernel::{agent_of, current_agent, offsets, read, task_pid, task_tgid},
    maps::{HELD, TRACKED, count},
};

const CLONE_THREAD: u64 = 0x0001_0000;
const EAGAIN: i32 = 11;

/// `task_alloc(struct task_struct *task, unsigned long clone_flags)` (LSM), in the parent's
/// context early in copy_process(): a new process of an agent needs room in `TRACKED`, or
/// the fork fails with EAGAIN (fail closed: an agent's child never runs untracked).
#[lsm(hook = "task_alloc")]
pub fn tracking_task_alloc(ctx: LsmContext) -> i32 {
    let clone_flags: u64 = ctx.arg(1);
    let previous: i32 = ctx.arg(2);
    if previous != 0 {
        return previous;
    }
    // A new thread joins its group's entry.
    if clone_flags & CLONE_THREAD != 0 {
        return 0;
    }
    let Some(agent_id) = current_agent(&ctx) else {
        return 0;
    };
    let reservation = TrackedTask {
        start: 0,
        agent_id,
        flags: 0,
    };
    if TRACKED.insert(&reserved_key(), &reservation, 0).is_err() {
        count(counters::FORK_REFUSED);
        warn!(&ctx, "TRACKED is full: fork by agent {} refused", agent_id);
        return -EAGAIN;
    }
    0
}

/// The `TRACKED` key of the current thread's fork reservation.
#[inline(always)]
fn reserved_key() -> u32 {
    RESERVED_KEY_BASE | bpf_get_current_pid_tgid() as u32
}

/// `sched_process_fork(struct task_struct *parent, struct task_struct *child)`, called in
/// the parent's context after copy_process(), for new threads too.
///
/// With the lsm backend the child's room was reserved by `tracking_task_alloc`; it is
/// released just before the child's entry is written. Without it (tracepoint backend), a
/// full `TRACKED` lets the child run untracked: counted (`track_failed`) and logged.
#[btf_tracepoint(function = "sched_process_fork")]
pub fn tracking_sched_process_fork(ctx: BtfTracePointContext) -> i32 {
    let parent: *const u8 = ctx.arg(0);
    let child: *const u8 = ctx.arg(1);
    let (Ok(child_tgid), Ok(child_pid), Ok(parent_tgid)) =
        (task_tgid(child), task_pid(child), task_tgid(parent))
    else {
        return 0;
    };
    // A new thread joins a tracked (or untracked) thread group: nothing to record.
    if child_tgid != child_pid {
        return 0;
    }
    let Some(agent_id) = agent_of(&ctx, parent, parent_tgid) else {
        return 0;
    };
    // The child leads its own group, so its own start_boottime names it.
    let Ok(start) = read::<u64>(child, offsets().task_start_boottime) else {
        return 0;
    };
    let entry = TrackedTask {
        start,
        agent_id,
        flags: 0,
    };
    let _ = TRACKED.remove(&reserved_key());
    if TRACKED.insert(&child_tgid, &entry, 0).is_err() {
        count(counters::TRACK_FAILED);
        warn!(
            &ctx,
            "TRACKED is full: child {} of agent {} is untracked", child_tgid, agent_id
        );
    }
    0
}

/// `sched_process_exit(struct task_struct *p)`, called for every exiting thread after
/// `signal->live` was decremented: the process is gone when `live` reaches zero.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn tracking_sched_process_exit(ctx: BtfTracePointContext) -> i32 {
    let task: *const u8 = ctx.arg(0);
    let off = offsets();
    let Ok(signal) = read::<*const u8>(task, off.task_signal) else {
        return 0;
    };
    match read::<i32>(signal, off.signal_live) {
        Ok(0) => {}
        _ => return 0,
    }
    let Ok(tgid) = task_tgid(task) else {
        return 0;
    };
    // Every process on the host passes here: look up (lock-free) before deleting (which
    // takes the bucket lock), so non-agents pay two lookups.
    // SAFETY: only the presence of the entries is used.
    if unsafe { TRACKED.get(&tgid) }.is_some() {
        let _ = TRACKED.remove(&tgid);
        // An agent's reservation left by a fork that failed after task_alloc (rare: the
        // thread's next fork reuses it) goes with the process's last thread.
        let _ = TRACKED.remove(&reserved_key());
    }
    // SAFETY: as above.
    if unsafe { HELD.get(&tgid) }.is_some() {
        let _ = HELD.remove(&tgid);
    }
    0
}
