//! Signal guards (lsm backend): a held task can only be resumed by the daemon, and agents
//! cannot signal the daemon.

use aya_ebpf::{macros::lsm, programs::LsmContext};
use interceptor_common::counters;

use crate::{
    kernel::{config, current_agent, current_tgid, task_tgid},
    maps::{HELD, count},
};

const SIGCONT: i32 = 18;
const EPERM: i32 = 1;

/// `task_kill(struct task_struct *p, struct kernel_siginfo *info, int sig,
/// const struct cred *cred)` (LSM; previous return value last). Called for every
/// user-originated signal: kill, killpg, tgkill and pidfd_send_signal.
///
/// Fails closed for held tasks: SIGCONT from anyone but the daemon is refused with EPERM.
/// The daemon removes the `HELD` entry before it resumes a task, so its own SIGCONT passes.
/// Agents may not send any signal (not even 0) to the daemon.
#[lsm(hook = "task_kill")]
pub fn signal_task_kill(ctx: LsmContext) -> i32 {
    let target: *const u8 = ctx.arg(0);
    let sig: i32 = ctx.arg(2);
    let previous: i32 = ctx.arg(4);
    if previous != 0 {
        return previous;
    }
    let Ok(target_tgid) = task_tgid(target) else {
        return 0;
    };
    let daemon = config().daemon_tgid;
    if target_tgid == daemon && current_agent(&ctx).is_some() {
        count(counters::DAEMON_SIGNAL_BLOCKED);
        return -EPERM;
    }
    if sig != SIGCONT {
        return 0;
    }
    // SAFETY: only presence is checked.
    if unsafe { HELD.get(&target_tgid) }.is_none() || current_tgid() == daemon {
        return 0;
    }
    count(counters::SIGCONT_BLOCKED);
    -EPERM
}
