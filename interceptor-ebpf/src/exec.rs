//! Exec decisions: deny in `bprm_check_security` (lsm backend), hold or kill at
//! `sched_process_exec` (both backends), and one event per tracked exec.
//!
//! A program can also start without an exec of its own file: `ld.so /usr/bin/pg_dump` execs
//! the loader, which maps pg_dump executable itself. `mmap_file` and `file_mprotect` (lsm
//! backend) judge every executable mapping an agent makes of a file that has an exec rule as
//! an exec of that file — except the mapping of the task's own executable, which the exec
//! hooks already judged (the kernel maps it during the exec, after `mm->exe_file` is set).

use aya_ebpf::{
    bindings::path,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{
            bpf_d_path, bpf_probe_read_kernel, bpf_probe_read_kernel_str, bpf_probe_read_user,
            bpf_send_signal,
        },
    },
    macros::{btf_tracepoint, lsm},
    programs::{BtfTracePointContext, LsmContext},
};
use aya_log_ebpf::warn;
use interceptor_common::{
    ARGV_MAX, EVERY_AGENT, EXEC_PATH_MAX, EventKind, ExecEvent, ExecPath, ExecRule, FILENAME_MAX,
    InodeKey, Verdict, counters, exec_flags,
};

use crate::{
    kernel::{
        agent_of, audit_down, current_task, current_tgid, daemon_alive, file_identity, offsets,
        parent_tgid, process_start, read,
    },
    maps::{
        EVENTS, EXEC_FALLBACK, EXEC_PATHS, EXEC_RULES, EXEC_SCRATCH, HELD, count, record_hold,
        submit_flags,
    },
};

/// The verdict of a binary no rule names.
const ALLOW: ExecRule = ExecRule {
    verdict: Verdict::Allow as u32,
    rule_id: 0,
};
const SIGKILL: u32 = 9;
const SIGSTOP: u32 = 19;
const EPERM: i32 = 1;
const PROT_EXEC: u64 = 0x4;

/// `bprm_check_security(struct linux_binprm *bprm)` (LSM; the previous LSM's return value is
/// the last argument). Runs before the point of no return, so a deny makes execve() fail
/// with EPERM and the old program carries on.
///
/// Fails open only for untracked tasks; for an agent a denied binary is refused even when
/// its event cannot be recorded (the loss is counted), and so is an exec that would need
/// the daemon (ask, or a nameless binary) while the daemon's heartbeat is stale.
#[lsm(hook = "bprm_check_security")]
pub fn exec_bprm_check_security(ctx: LsmContext) -> i32 {
    let bprm: *const u8 = ctx.arg(0);
    let previous: i32 = ctx.arg(1);
    if previous != 0 {
        return previous;
    }
    let task = current_task();
    let Some(agent_id) = agent_of(&ctx, task, current_tgid()) else {
        return 0;
    };
    // A direct load, not a probe read: the verifier then knows `file` as the kernel's
    // `struct file *` (bprm->file is a trusted field), which bpf_d_path requires.
    // SAFETY: `bprm` is the hook's BTF-typed argument; the load goes through the verifier's
    // fault-tolerant access to kernel memory.
    let file: *const u8 =
        unsafe { *(bprm.wrapping_add(offsets().bprm_file as usize) as *const *const u8) };
    let binary = file_identity(file).unwrap_or(InodeKey { dev: 0, ino: 0 });
    let named = exec_rule(&binary);
    let judged_in_userspace = named.is_none() && fallback(agent_id);
    let rule = named.unwrap_or(ALLOW);
    let resolved = resolve_path(file);
    let mut flags = exec_flags::DENIED | exec_flags::ARGV_UNAVAILABLE;
    let nameless = nlink_of(file).unwrap_or(0) == 0;
    if nameless {
        flags |= exec_flags::UNLINKED_BINARY;
    }
    if rule.verdict != Verdict::Deny as u32 && audit_down() {
        // It would run unrecorded: refused until the daemon can write its log again.
        flags |= exec_flags::AUDIT_DOWN;
        count(counters::AUDIT_DOWN_DENIED);
    } else if rule.verdict != Verdict::Deny as u32 {
        let needs_daemon = rule.verdict == Verdict::Ask as u32 || nameless || judged_in_userspace;
        if !needs_daemon || daemon_alive() {
            // sched_process_exec reports the path; bpf_d_path is not allowed there.
            if let Some(resolved) = resolved {
                let thread = bpf_get_current_pid_tgid() as u32;
                // SAFETY: `resolved` is this CPU's scratch map value, read by the helper.
                if EXEC_PATHS
                    .insert(&thread, unsafe { &*resolved }, 0)
                    .is_err()
                {
                    count(counters::EVENT_DROPPED);
                }
            }
            return 0;
        }
        flags |= exec_flags::DAEMON_DOWN;
        count(counters::DAEMON_DOWN_DENIED);
    }
    emit(
        EventKind::ExecDenied,
        flags,
        task,
        agent_id,
        name_of(bprm),
        resolved,
        &binary,
        &rule,
        false,
    );
    -EPERM
}

/// `mmap_file(struct file *file, unsigned long reqprot, unsigned long prot, unsigned long
/// flags)` (LSM): an executable mapping of a file is judged as an exec of it.
#[lsm(hook = "mmap_file")]
pub fn exec_mmap_file(ctx: LsmContext) -> i32 {
    let file: *const u8 = ctx.arg(0);
    let prot: u64 = ctx.arg(2);
    let previous: i32 = ctx.arg(4);
    if previous != 0 {
        return previous;
    }
    if file.is_null() || prot & PROT_EXEC == 0 {
        return 0;
    }
    mapped_exec(&ctx, file, true)
}

/// `file_mprotect(struct vm_area_struct *vma, unsigned long reqprot, unsigned long prot)`
/// (LSM): making a file mapping executable later is judged like mapping it so.
#[lsm(hook = "file_mprotect")]
pub fn exec_file_mprotect(ctx: LsmContext) -> i32 {
    let vma: *const u8 = ctx.arg(0);
    let prot: u64 = ctx.arg(2);
    let previous: i32 = ctx.arg(3);
    if previous != 0 {
        return previous;
    }
    if prot & PROT_EXEC == 0 {
        return 0;
    }
    let Ok(file) = read::<*const u8>(vma, offsets().vma_file) else {
        return 0;
    };
    if file.is_null() {
        return 0;
    }
    // The file came from a probe read, which bpf_d_path does not accept: no path here; the
    // daemon finds it among the task's mappings.
    mapped_exec(&ctx, file, false)
}

/// An agent maps `file` executable: if an exec rule names the file and it is not the task's
/// own executable, the rule applies as if the file had been exec'd. `deny` fails the mapping
/// with EPERM; `ask` holds the task (SIGSTOP lands before the mapping call returns), so the
/// program does not run a single instruction of the file before a decision.
#[inline(always)]
fn mapped_exec(ctx: &LsmContext, file: *const u8, resolvable: bool) -> i32 {
    let task = current_task();
    let tgid = current_tgid();
    let Some(agent_id) = agent_of(ctx, task, tgid) else {
        return 0;
    };
    let Some(binary) = file_identity(file) else {
        count(counters::HOLD_FAILED);
        return -EPERM;
    };
    let Some(rule) = exec_rule(&binary) else {
        return 0;
    };
    if rule.verdict == Verdict::Allow as u32 || own_executable(task, &binary) {
        return 0;
    }
    let mut flags = exec_flags::MAPPED;
    let mut result = 0;
    if audit_down() {
        count(counters::AUDIT_DOWN_DENIED);
        flags |= exec_flags::DENIED | exec_flags::AUDIT_DOWN;
        result = -EPERM;
    } else if rule.verdict == Verdict::Deny as u32 {
        flags |= exec_flags::DENIED;
        result = -EPERM;
    } else if rule.verdict == Verdict::Ask as u32 {
        if !daemon_alive() {
            count(counters::DAEMON_DOWN_DENIED);
            flags |= exec_flags::DENIED | exec_flags::DAEMON_DOWN;
            result = -EPERM;
        } else {
            flags |= record_hold(task, tgid, rule.rule_id, agent_id, flags);
            if flags & exec_flags::DENIED != 0 {
                result = -EPERM;
            }
        }
    }
    let kind = if result != 0 {
        EventKind::ExecDenied
    } else {
        EventKind::Exec
    };
    let delivered = emit(
        kind,
        flags,
        task,
        agent_id,
        core::ptr::null(),
        if resolvable { resolve_path(file) } else { None },
        &binary,
        &rule,
        true,
    );
    if flags & exec_flags::HELD != 0 {
        if !delivered {
            // Nobody would ever answer this hold.
            let _ = HELD.remove(&tgid);
            return -EPERM;
        }
        // SAFETY: bpf_send_signal signals the current thread group; no memory arguments.
        unsafe { bpf_send_signal(SIGSTOP) };
    }
    result
}

/// Whether `binary` is the current task's own executable (`current->mm->exe_file`).
#[inline(always)]
fn own_executable(task: *const u8, binary: &InodeKey) -> bool {
    let off = offsets();
    let Ok(mm) = read::<*const u8>(task, off.task_mm) else {
        return false;
    };
    let Ok(exe) = read::<*const u8>(mm, off.mm_exe_file) else {
        return false;
    };
    !exe.is_null() && file_identity(exe).is_some_and(|own| own == *binary)
}

/// The path of `file` by `bpf_d_path`, in this CPU's scratch; `None` when it cannot be
/// resolved or is longer than [`EXEC_PATH_MAX`]. Only for LSM hooks (d_path is not allowed
/// in tracepoints).
#[inline(always)]
fn resolve_path(file: *const u8) -> Option<*const ExecPath> {
    if file.is_null() {
        return None;
    }
    let scratch = EXEC_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: `file` is a `struct file *` from the hook (trusted by the verifier) and
    // `f_path` lies inside it; the buffer is this CPU's scratch map value.
    let len = unsafe {
        let f_path = file.wrapping_add(offsets().file_path as usize) as *mut path;
        bpf_d_path(
            f_path,
            (*scratch).path.as_mut_ptr().cast(),
            EXEC_PATH_MAX as u32,
        )
    };
    if len <= 1 {
        return None;
    }
    // SAFETY: as above; `len` counts the NUL.
    unsafe { (*scratch).len = (len - 1) as u32 };
    Some(scratch)
}

/// `sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)`,
/// after the new program is loaded and before it runs its first instruction.
///
/// `ask`: the task is recorded in `HELD` and stopped (SIGSTOP is delivered before it returns
/// to userspace). `deny` that got this far (the tracepoint backend has no bprm hook): killed.
/// Fails closed: if the hold cannot be recorded, or its event cannot reach the daemon, the
/// task is killed rather than left running or stopped with nobody to answer.
#[btf_tracepoint(function = "sched_process_exec")]
pub fn exec_sched_process_exec(ctx: BtfTracePointContext) -> i32 {
    let task: *const u8 = ctx.arg(0);
    let old_thread: i32 = ctx.arg(1);
    let bprm: *const u8 = ctx.arg(2);
    let tgid = current_tgid();
    let Some(agent_id) = agent_of(&ctx, task, tgid) else {
        return 0;
    };
    let file = file_of(bprm);
    let binary = file_identity(file).unwrap_or(InodeKey { dev: 0, ino: 0 });
    let named = exec_rule(&binary);
    let mut rule = named.unwrap_or(ALLOW);

    let mut flags = 0;
    // No rule names this binary, but the policy names programs the kernel cannot (globs,
    // basenames) or asks by default: held so the daemon judges it with the whole policy.
    if named.is_none() && fallback(agent_id) {
        flags |= exec_flags::USERSPACE_DECIDES;
    }
    // A binary with no name cannot be named by a rule (memfd, or unlinked after open): it
    // is asked at least. An unreadable link count counts as unlinked.
    if nlink_of(file).unwrap_or(0) == 0 {
        flags |= exec_flags::UNLINKED_BINARY;
        if rule.verdict != Verdict::Deny as u32 {
            rule.verdict = Verdict::Ask as u32;
        }
    }
    // argv longer than the event's copy: hold so the daemon reads (and records) all of it
    // from /proc before the program runs; the verdict stays, the daemon applies it.
    let runs = rule.verdict == Verdict::Allow as u32 || rule.verdict == Verdict::Audit as u32;
    if runs && argv_size(task).is_none_or(|len| len > ARGV_MAX as u64) {
        flags |= exec_flags::USERSPACE_DECIDES;
    }
    let needs_daemon =
        rule.verdict == Verdict::Ask as u32 || flags & exec_flags::USERSPACE_DECIDES != 0;
    if audit_down() {
        // It would run unrecorded (the lsm backend refused it in bprm_check_security unless
        // the log failed in between).
        count(counters::AUDIT_DOWN_DENIED);
        flags |= exec_flags::AUDIT_DOWN | exec_flags::DENIED;
    } else if needs_daemon && !daemon_alive() {
        // Nobody could answer a hold: refuse (fail closed).
        count(counters::DAEMON_DOWN_DENIED);
        flags |= exec_flags::DAEMON_DOWN | exec_flags::DENIED;
    } else if needs_daemon {
        flags |= record_hold(task, tgid, rule.rule_id, agent_id, flags);
        if flags & exec_flags::HOLD_FAILED != 0 {
            warn!(&ctx, "HELD is full: killing held exec of pid {}", tgid);
        }
    } else if rule.verdict == Verdict::Deny as u32 {
        flags |= exec_flags::DENIED;
    }

    // The path bprm_check_security resolved, kept under the thread id the exec started in
    // (a non-leader thread's exec takes over the leader's id).
    let thread = old_thread as u32;
    // SAFETY: a pointer into a map value, only read by the helper before the entry goes.
    let resolved = unsafe { EXEC_PATHS.get(&thread) }.map(|p| p as *const ExecPath);
    let delivered = emit(
        EventKind::Exec,
        flags,
        task,
        agent_id,
        name_of(bprm),
        resolved,
        &binary,
        &rule,
        true,
    );
    if resolved.is_some() {
        let _ = EXEC_PATHS.remove(&thread);
    }
    if flags & exec_flags::HELD != 0 && !delivered {
        // Nobody would ever answer this hold.
        let _ = HELD.remove(&tgid);
        flags |= exec_flags::DENIED;
    }
    // SAFETY: bpf_send_signal signals the current thread group; it has no memory arguments.
    unsafe {
        if flags & exec_flags::DENIED != 0 {
            bpf_send_signal(SIGKILL);
        } else if flags & exec_flags::HELD != 0 {
            bpf_send_signal(SIGSTOP);
        }
    }
    0
}

/// `file->f_inode->i_nlink`: 0 for memfd and unlinked files.
#[inline(always)]
fn nlink_of(file: *const u8) -> Option<u32> {
    let off = offsets();
    let inode: *const u8 = read(file, off.file_inode).ok()?;
    read(inode, off.inode_nlink).ok()
}

/// `bprm->file` by a probe read (null when unreadable, which every reader then fails on).
#[inline(always)]
fn file_of(bprm: *const u8) -> *const u8 {
    read(bprm, offsets().bprm_file).unwrap_or(core::ptr::null())
}

/// `bprm->filename` (a kernel string), or null.
#[inline(always)]
fn name_of(bprm: *const u8) -> *const u8 {
    read(bprm, offsets().bprm_filename).unwrap_or(core::ptr::null())
}

/// Whether the execs of `agent_id` that no `EXEC_RULES` entry names are judged in userspace.
#[inline(always)]
fn fallback(agent_id: u32) -> bool {
    // SAFETY: only the presence of the entries is read.
    unsafe { EXEC_FALLBACK.get(&EVERY_AGENT).is_some() || EXEC_FALLBACK.get(&agent_id).is_some() }
}

#[inline(always)]
fn exec_rule(binary: &InodeKey) -> Option<ExecRule> {
    // SAFETY: the value is copied out immediately.
    unsafe { EXEC_RULES.get(binary).copied() }
}

/// Writes one event into `EVENTS`; false (and counted) when the ring buffer is full.
#[inline(always)]
#[expect(
    clippy::too_many_arguments,
    reason = "one call site per hook, all plain values"
)]
fn emit(
    kind: EventKind,
    mut flags: u32,
    task: *const u8,
    agent_id: u32,
    name: *const u8,
    resolved: Option<*const ExecPath>,
    binary: &InodeKey,
    rule: &ExecRule,
    with_argv: bool,
) -> bool {
    let Some(mut entry) = EVENTS.reserve::<ExecEvent>(0) else {
        count(counters::EVENT_DROPPED);
        return false;
    };
    let ev = entry.as_mut_ptr();
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    // SAFETY: `ev` points at a reserved ring-buffer record of the right size; every field is
    // written before submit, and the helpers are given bounds inside the record.
    unsafe {
        (*ev).kind = kind as u32;
        (*ev).tgid = (pid_tgid >> 32) as u32;
        (*ev).pid = pid_tgid as u32;
        (*ev).ppid = parent_tgid(task).unwrap_or(0);
        (*ev).uid = uid_gid as u32;
        (*ev).gid = (uid_gid >> 32) as u32;
        (*ev).agent_id = agent_id;
        (*ev).start_boottime = process_start(task).unwrap_or(0);
        (*ev).cgroup_id = bpf_get_current_cgroup_id();
        (*ev).dev = binary.dev;
        (*ev).ino = binary.ino;
        (*ev).verdict = rule.verdict;
        (*ev).rule_id = rule.rule_id;

        (*ev).filename_len = 0;
        if !name.is_null() {
            let n = bpf_probe_read_kernel_str(
                (*ev).filename.as_mut_ptr().cast(),
                FILENAME_MAX as u32,
                name.cast(),
            );
            if n > 0 {
                // n counts the NUL; a full buffer means the name was cut.
                (*ev).filename_len = (n - 1) as u32;
                if n as usize == FILENAME_MAX {
                    flags |= exec_flags::FILENAME_TRUNCATED;
                }
            }
        }

        (*ev).path_len = 0;
        (*ev)._pad = 0;
        if let Some(resolved) = resolved {
            let len = (*resolved).len;
            if len > 0
                && bpf_probe_read_kernel(
                    (*ev).path.as_mut_ptr().cast(),
                    EXEC_PATH_MAX as u32,
                    (*resolved).path.as_ptr().cast(),
                ) == 0
            {
                (*ev).path_len = len;
            }
        }

        (*ev).argv_len = 0;
        if with_argv {
            let (len, truncated) = read_argv(task, (*ev).argv.as_mut_ptr());
            (*ev).argv_len = len;
            if truncated {
                flags |= exec_flags::ARGV_TRUNCATED;
            }
        }
        (*ev).flags = flags;
    }
    entry.submit(submit_flags(flags & exec_flags::HELD != 0));
    true
}

/// `mm->arg_end - mm->arg_start` of the current (new) program; `None` when unreadable.
#[inline(always)]
fn argv_size(task: *const u8) -> Option<u64> {
    let off = offsets();
    let mm = read::<*const u8>(task, off.task_mm).ok()?;
    let start: u64 = read(mm, off.mm_arg_start).ok()?;
    let end: u64 = read(mm, off.mm_arg_end).ok()?;
    Some(end.saturating_sub(start))
}

/// Copies `mm->arg_start..arg_end` of the current (new) program into `dst`, at most
/// `ARGV_MAX` bytes. Returns the bytes copied and whether argv was longer (or unreadable).
#[inline(always)]
unsafe fn read_argv(task: *const u8, dst: *mut u8) -> (u32, bool) {
    let off = offsets();
    let Ok(mm) = read::<*const u8>(task, off.task_mm) else {
        return (0, true);
    };
    let (Ok(start), Ok(end)) = (
        read::<u64>(mm, off.mm_arg_start),
        read::<u64>(mm, off.mm_arg_end),
    ) else {
        return (0, true);
    };
    if end <= start {
        return (0, false);
    }
    let mut len = end - start;
    let mut truncated = false;
    if len > ARGV_MAX as u64 {
        len = ARGV_MAX as u64;
        truncated = true;
    }
    // SAFETY: `dst` has ARGV_MAX bytes and len <= ARGV_MAX; the source is user memory of
    // the current task, read with the fault-tolerant helper.
    let rc = unsafe { bpf_probe_read_user(dst.cast(), len as u32, start as *const _) };
    if rc != 0 {
        return (0, true);
    }
    (len as u32, truncated)
}
