//! Agent scoping: a child of a tracked process is tracked, and a process leaves `TRACKED`
//! (and `HELD`) when its last thread exits.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use aya_log_ebpf::warn;
use interceptor_common::{TrackedTask, counters};

use crate::{
    kernel::{agent_of, offsets, read, task_pid, task_tgid},
    maps::{HELD, TRACKED, count},
};

/// `sched_process_fork(struct task_struct *parent, struct task_struct *child)`, called in
/// the parent's context after copy_process(), for new threads too.
///
/// Fails open for the child when `TRACKED` is full (the child runs untracked); the failure
/// is counted and logged. Denying such forks needs an LSM hook (task_alloc).
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
    let _ = TRACKED.remove(&tgid);
    let _ = HELD.remove(&tgid);
    0
}
