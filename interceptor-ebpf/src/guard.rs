//! Guards (lsm backend): what an agent may never do, whatever the policy says. Each hook
//! refuses only for agents; every other process keeps the kernel's normal answer.

use aya_ebpf::{macros::lsm, programs::LsmContext};
use interceptor_common::{Verdict, counters};

use crate::{
    kernel::{config, current_agent, dentry_identity, task_tgid},
    maps::{EXEC_RULES, OPEN_INODES, count},
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

/// Whether a rule that restricts (asks or denies) names the file `dentry` points at by its
/// inode: an exec rule, or an open rule that follows hardlinks. Files only allowed or
/// audited by name stay the agent's to move.
#[inline(always)]
fn names_a_rule_file(dentry: *const u8) -> bool {
    let Some(key) = dentry_identity(dentry) else {
        return false;
    };
    // An unknown verdict value counts as a deny, as everywhere else.
    let restricts = |verdict: u32| verdict >= Verdict::Ask as u32;
    // SAFETY: lookups in maps of plain data, read once and not kept.
    unsafe {
        EXEC_RULES.get(&key).is_some_and(|r| restricts(r.verdict))
            || OPEN_INODES
                .get(&key)
                .is_some_and(|r| restricts(r.read_verdict) || restricts(r.write_verdict))
    }
}

/// `inode_rename(struct inode *old_dir, struct dentry *old_dentry, struct inode *new_dir,
/// struct dentry *new_dentry)` (both directions of a RENAME_EXCHANGE come through here).
///
/// Rules name files by inode. An agent that moves a named file away, or renames another
/// file over it, puts a file the compiled rule does not name at the rule's path (its execs
/// would fall to the defaults): refused for agents. Everyone else (a package upgrade)
/// keeps the kernel's answer, and the daemon re-reads rule paths on reload.
#[lsm(hook = "inode_rename")]
pub fn guard_inode_rename(ctx: LsmContext) -> i32 {
    let old_dentry: *const u8 = ctx.arg(1);
    let new_dentry: *const u8 = ctx.arg(3);
    if current_agent(&ctx).is_none() {
        return 0;
    }
    if names_a_rule_file(old_dentry) || names_a_rule_file(new_dentry) {
        count(counters::RULE_FILE_GUARDED);
        return -EPERM;
    }
    0
}

/// `inode_unlink(struct inode *dir, struct dentry *dentry)`: removing a file a rule names
/// frees its path for another file; refused for agents, like a rename over it.
#[lsm(hook = "inode_unlink")]
pub fn guard_inode_unlink(ctx: LsmContext) -> i32 {
    let dentry: *const u8 = ctx.arg(1);
    if current_agent(&ctx).is_none() {
        return 0;
    }
    if names_a_rule_file(dentry) {
        count(counters::RULE_FILE_GUARDED);
        return -EPERM;
    }
    0
}
