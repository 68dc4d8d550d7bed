//! Guards (lsm backend): what an agent may never do, whatever the policy says. Each hook
//! refuses only for agents; every other process keeps the kernel's normal answer.

use aya_ebpf::{macros::lsm, programs::LsmContext};
use interceptor_common::counters;

use crate::{
    kernel::{config, current_agent, task_tgid},
    maps::count,
};

const EPERM: i32 = 1;
/// `PTRACE_MODE_ATTACH` in `mode` of ptrace_access_check (include/linux/ptrace.h).
const PTRACE_MODE_ATTACH: u32 = 0x02;

/// `ptrace_access_check(struct task_struct *child, unsigned int mode)`: ptrace attach,
/// /proc/PID/mem, process_vm_readv/writev, and READ-mode /proc access of another process.
///
/// Fails closed for agents: any attach-mode access is refused (an agent could otherwise
/// resume a held task or write into another process), and so is every access to the daemon.
/// READ-mode access to other processes stays allowed so tools like `lsof` keep working.
#[lsm(hook = "ptrace_access_check")]
pub fn guard_ptrace_access_check(ctx: LsmContext) -> i32 {
    let target: *const u8 = ctx.arg(0);
    let mode: u32 = ctx.arg(1);
    if current_agent(&ctx).is_none() {
        return 0;
    }
    let to_daemon = task_tgid(target).is_ok_and(|tgid| tgid == config().daemon_tgid);
    if mode & PTRACE_MODE_ATTACH != 0 || to_daemon {
        count(counters::PTRACE_BLOCKED);
        return -EPERM;
    }
    0
}

/// `ptrace_traceme(struct task_struct *parent)`: PTRACE_TRACEME makes the parent a tracer
/// without any access check on the parent's side, so agents may not use it.
#[lsm(hook = "ptrace_traceme")]
pub fn guard_ptrace_traceme(ctx: LsmContext) -> i32 {
    if current_agent(&ctx).is_none() {
        return 0;
    }
    count(counters::PTRACE_BLOCKED);
    -EPERM
}

/// `bpf(int cmd, union bpf_attr *attr, unsigned int size, ...)`: agents get no bpf() at all
/// (no map access to our pins, no programs of their own).
#[lsm(hook = "bpf")]
pub fn guard_bpf(ctx: LsmContext) -> i32 {
    if current_agent(&ctx).is_none() {
        return 0;
    }
    count(counters::BPF_BLOCKED);
    -EPERM
}

/// `userns_create(const struct cred *cred)`: a user namespace gives an agent CAP_SYS_ADMIN
/// over new mount namespaces (bind mounts over policy paths); refused unless the daemon
/// was started with user namespaces allowed.
#[lsm(hook = "userns_create")]
pub fn guard_userns_create(ctx: LsmContext) -> i32 {
    if config().deny_userns == 0 || current_agent(&ctx).is_none() {
        return 0;
    }
    count(counters::USERNS_BLOCKED);
    -EPERM
}
