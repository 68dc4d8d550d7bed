//! Open decisions (lsm backend): `file_open` resolves the opened file to its path (d_path)
//! and identity (device, inode), finds the most restrictive rule for this access mode, and
//! applies it. Only agents' opens are examined (the daemon's own files always have a rule).

use aya_ebpf::{
    bindings::path,
    helpers::generated::{
        bpf_d_path, bpf_ktime_get_boot_ns, bpf_probe_read_kernel, bpf_send_signal,
    },
    macros::lsm,
    maps::lpm_trie::Key,
    programs::LsmContext,
};
use interceptor_common::{
    EventKind, GrantKey, InodeKey, NAME_KEY_MAX, OPEN_PATH_MAX, OpenEvent, OpenRule, OpenScratch,
    RULE_NAME_MAX, RULE_PATH_MAX, Verdict, access, counters, exec_flags,
};

use crate::{
    kernel::{
        agent_of, audit_down, current_task, current_tgid, daemon_alive, file_identity, offsets,
        process_start, read,
    },
    maps::{
        EVENTS, GRANTS, HELD, OPEN_DEFAULT, OPEN_DIRS, OPEN_INODES, OPEN_NAMES, OPEN_PATHS,
        OPEN_SCRATCH, OPEN_SUFFIXES, count, record_hold, submit_flags,
    },
};

const EACCES: i32 = 13;
const SIGSTOP: u32 = 19;
const O_CREAT: u32 = 0o100;
const O_TRUNC: u32 = 0o1000;
const FMODE_READ: u32 = 0x1;
const FMODE_WRITE: u32 = 0x2;

/// `file_open(struct file *file)` (LSM; previous return value last), called for every
/// open — open, openat, openat2, io_uring, O_PATH reopen through /proc/self/fd,
/// open_by_handle_at — after path resolution, before the file is truncated or used.
///
/// Fails closed for agents: a path that cannot be resolved is refused; `ask` while the daemon
/// is down is refused; an `ask` on a read-only open holds the task (SIGSTOP lands before
/// open() returns to it), an `ask` on any other open is refused now and left pending (a hold
/// cannot undo a write); a matched open whose event cannot be recorded is refused.
#[lsm(hook = "file_open")]
pub fn open_file_open(ctx: LsmContext) -> i32 {
    let file: *const u8 = ctx.arg(0);
    let previous: i32 = ctx.arg(1);
    if previous != 0 {
        return previous;
    }
    let task = current_task();
    let tgid = current_tgid();
    let Some(agent_id) = agent_of(&ctx, task, tgid) else {
        return 0;
    };
    let Some(scratch) = OPEN_SCRATCH.get_ptr_mut(0) else {
        return -EACCES;
    };
    let off = offsets();
    let mode = access_of(file);
    let identity = file_identity(file).unwrap_or(InodeKey { dev: 0, ino: 0 });

    // SAFETY: `file` is the hook's BTF-typed argument and `f_path` lies inside it; the buffer
    // is this CPU's scratch map value, 4096 bytes long.
    let len = unsafe {
        let f_path = file.wrapping_add(off.file_path as usize) as *mut path;
        bpf_d_path(f_path, (*scratch).path.as_mut_ptr().cast(), 4096)
    };
    if len <= 0 {
        count(counters::OPEN_UNRESOLVED);
        emit(
            agent_id,
            tgid,
            task,
            &identity,
            (Verdict::Deny as u32, 0),
            mode,
            exec_flags::DENIED | exec_flags::PATH_UNRESOLVED,
            scratch,
            0,
        );
        return -EACCES;
    }

    let slash = name_keys(scratch, len as usize);
    let rule = rule_for(&identity, scratch, len as usize, slash, mode);
    let verdict = rule.0;
    if verdict != Verdict::Deny as u32
        && verdict != Verdict::Ask as u32
        && verdict != Verdict::Audit as u32
    {
        return 0;
    }
    let mut flags = 0;
    let mut result = 0;
    if audit_down() {
        // A matched open is recorded; while the log cannot be written it is refused.
        count(counters::AUDIT_DOWN_DENIED);
        flags |= exec_flags::DENIED | exec_flags::AUDIT_DOWN;
    } else if verdict == Verdict::Deny as u32 {
        flags |= exec_flags::DENIED;
    } else if verdict == Verdict::Ask as u32 {
        if use_grant(agent_id, &identity, mode) {
            flags |= exec_flags::GRANTED;
        } else if !daemon_alive() {
            count(counters::DAEMON_DOWN_DENIED);
            flags |= exec_flags::DENIED | exec_flags::DAEMON_DOWN;
        } else if mode == access::READ {
            flags |= record_hold(task, tgid, rule.1, agent_id, exec_flags::OPEN);
        } else {
            flags |= exec_flags::DENIED | exec_flags::PENDING;
        }
    }
    if flags & exec_flags::DENIED != 0 {
        if flags & exec_flags::AUDIT_DOWN == 0 {
            count(counters::OPEN_DENIED);
        }
        result = -EACCES;
    }
    let delivered = emit(
        agent_id,
        tgid,
        task,
        &identity,
        rule,
        mode,
        flags,
        scratch,
        len as usize,
    );
    if flags & exec_flags::HELD != 0 {
        if delivered {
            // SAFETY: signals the current thread group; no memory arguments.
            unsafe { bpf_send_signal(SIGSTOP) };
        } else {
            // Nobody would answer this hold.
            let _ = HELD.remove(&tgid);
            result = -EACCES;
        }
    } else if !delivered && (flags & exec_flags::PENDING != 0) {
        // Still refused; the request is lost, the agent will retry and ask again.
        result = -EACCES;
    }
    result
}

/// The access modes of an open: read/write from `f_mode`, create/truncate from `f_flags`
/// (do_dentry_open clears O_CREAT and O_TRUNC only after this hook).
#[inline(always)]
fn access_of(file: *const u8) -> u32 {
    let off = offsets();
    let mode: u32 = read(file, off.file_mode).unwrap_or(0);
    let flags: u32 = read(file, off.file_flags).unwrap_or(0);
    let mut access = 0;
    if mode & FMODE_READ != 0 {
        access |= access::READ;
    }
    if mode & FMODE_WRITE != 0 {
        access |= access::WRITE;
    }
    if flags & O_CREAT != 0 {
        access |= access::CREATE;
    }
    if flags & O_TRUNC != 0 {
        access |= access::TRUNCATE;
    }
    access
}

/// The most restrictive (verdict, rule) for this file and access mode: by identity (any name
/// of the file), by path (exact, or the longest matching directory prefix), by file name
/// (exact, prefix or suffix; anywhere, or in the directories a name rule is scoped to), and
/// `[defaults] open` for an access class no rule names. Each map's longest match already
/// carries every entry it covers, so one lookup per map suffices.
#[inline(always)]
fn rule_for(
    identity: &InodeKey,
    scratch: *mut OpenScratch,
    len: usize,
    slash: Option<usize>,
    mode: u32,
) -> (u32, u32) {
    // SAFETY: copied out of the map at once.
    let mut rule = unsafe { OPEN_INODES.get(identity).copied() }.unwrap_or_default();
    // The trie key is the path's first bytes; `len` counts the NUL, which exact rules include.
    let key_len = if len < RULE_PATH_MAX {
        len
    } else {
        RULE_PATH_MAX
    };
    // SAFETY: both buffers are inside this CPU's scratch value; the copy is bounded by the
    // key's size.
    let by_path = unsafe {
        (*scratch).prefix_len = (key_len * 8) as u32;
        bpf_probe_read_kernel(
            (*scratch).key.as_mut_ptr().cast(),
            RULE_PATH_MAX as u32,
            (*scratch).path.as_ptr().cast(),
        );
        let key = &*(scratch as *const Key<[u8; RULE_PATH_MAX]>);
        OPEN_PATHS.get(key).copied()
    };
    if let Some(r) = by_path {
        rule = rule.stricter(r);
    }
    if let Some(slash) = slash {
        rule = by_name(rule, scratch, slash);
    }
    if let Some(default) = OPEN_DEFAULT.get(0).copied() {
        if rule.read_rule == 0 {
            rule.read_verdict = default.read_verdict;
        }
        if rule.write_rule == 0 {
            rule.write_verdict = default.write_verdict;
        }
    }
    rule.for_mode(mode)
}

/// Fills both name keys (after their scope bytes) from the path's last component: forwards
/// for exact and prefix rules, reversed for suffix rules. `None` for a path with no usable
/// name (no '/' among its last 257 bytes, or nothing after it), else the index of the last
/// '/'.
///
/// Called right after d_path, before any lookup: the verifier walks the byte loops once per
/// state that reaches them, and each lookup and merge that follows multiplies the states.
#[inline(always)]
fn name_keys(scratch: *mut OpenScratch, len: usize) -> Option<usize> {
    const PATH_MASK: usize = 4095;
    if !(2..=4096).contains(&len) {
        return None;
    }
    let end = len - 1;
    // The last '/': names are at most NAME_MAX (255) bytes. d_path output starts with '/', so
    // the scan stops at index 0 at the latest; a name without one (`pipe:[7]`) leaves `slash`
    // unset or past the end. Only the byte ends the loop: a bound on `end` here would give the
    // verifier one state per iteration (864k instructions, 11 s under TCG, in that shape).
    let mut slash = usize::MAX;
    let mut i = 0;
    while i < 257 {
        let at = end.wrapping_sub(1 + i) & PATH_MASK;
        // SAFETY: `at` is masked into the 4096-byte path buffer.
        if unsafe { *(*scratch).path.as_ptr().add(at) } == b'/' {
            slash = at;
            break;
        }
        i += 1;
    }
    if slash == usize::MAX || slash + 1 >= end {
        return None;
    }
    let name_len = end - slash - 1;
    // The name and its NUL, or the first (last, reversed) bytes of a longer name.
    let copy = if name_len > RULE_NAME_MAX + 1 {
        RULE_NAME_MAX + 1
    } else {
        name_len
    };
    // SAFETY: the destination is the name key's bytes after the scope, `copy` of them at
    // most (bounded just above and below); the source is inside the path buffer.
    unsafe {
        let key = (*scratch).name_key.as_mut_ptr();
        bpf_probe_read_kernel(
            key.add(4).cast(),
            (copy & (NAME_KEY_MAX - 1)) as u32,
            (*scratch).path.as_ptr().add((slash + 1) & PATH_MASK).cast(),
        );
        let bytes = if copy <= RULE_NAME_MAX {
            *key.add((4 + copy) & (NAME_KEY_MAX - 1)) = 0;
            4 + copy + 1
        } else {
            4 + copy
        };
        (*scratch).name_prefix_len = (bytes * 8) as u32;
    }
    // Reversed, always the key's full length: the trie ignores bytes past the prefix length,
    // and a loop with no data-dependent exit is verified once.
    let mut j = 0;
    while j < RULE_NAME_MAX + 1 {
        // SAFETY: `4 + j` < NAME_KEY_MAX; the source index is masked into the path buffer.
        unsafe {
            *(*scratch)
                .suffix_key
                .as_mut_ptr()
                .add((4 + j) & (NAME_KEY_MAX - 1)) = *(*scratch)
                .path
                .as_ptr()
                .add(end.wrapping_sub(1 + j) & PATH_MASK);
        }
        j += 1;
    }
    // SAFETY: a field of this CPU's scratch value.
    unsafe { (*scratch).suffix_prefix_len = ((4 + copy) * 8) as u32 };
    Some(slash)
}

/// `rule` made stricter by the name tries (keys filled by [`name_keys`]); the file's
/// directory, with the `/`, picks the scope.
#[inline(always)]
fn by_name(mut rule: OpenRule, scratch: *mut OpenScratch, slash: usize) -> OpenRule {
    // The scope of the file's directory: `dir/` then NUL (the key buffer still holds the
    // path's first bytes), or, for a directory too long for the key, its first bytes.
    let dir_len = slash + 1;
    let mut scope = 0u32;
    // SAFETY: the writes are bounded by the key buffer's size.
    let found = unsafe {
        if dir_len < RULE_PATH_MAX {
            *(*scratch)
                .key
                .as_mut_ptr()
                .add(dir_len & (RULE_PATH_MAX - 1)) = 0;
            (*scratch).prefix_len = ((dir_len + 1) * 8) as u32;
        } else {
            (*scratch).prefix_len = (RULE_PATH_MAX * 8) as u32;
        }
        let key = &*(scratch as *const Key<[u8; RULE_PATH_MAX]>);
        OPEN_DIRS.get(key).copied()
    };
    if let Some(s) = found {
        scope = s;
    }
    rule = lookup_names(rule, scratch, scope, false);
    lookup_names(rule, scratch, scope, true)
}

/// Looks the name key up in scope 0 (any directory) and in `scope`.
#[inline(always)]
fn lookup_names(
    mut rule: OpenRule,
    scratch: *mut OpenScratch,
    scope: u32,
    suffix: bool,
) -> OpenRule {
    let trie = if suffix { &OPEN_SUFFIXES } else { &OPEN_NAMES };
    let mut pass = 0;
    while pass < 2 {
        let id = if pass == 0 { 0 } else { scope };
        if pass == 1 && scope == 0 {
            break;
        }
        // SAFETY: the scope bytes are the first four of the name key; the key (prefix length
        // then bytes) is laid out as the trie's key type, and the value is copied out at once.
        let found = unsafe {
            let (key, prefix_len) = if suffix {
                (
                    (*scratch).suffix_key.as_mut_ptr(),
                    core::ptr::addr_of!((*scratch).suffix_prefix_len),
                )
            } else {
                (
                    (*scratch).name_key.as_mut_ptr(),
                    core::ptr::addr_of!((*scratch).name_prefix_len),
                )
            };
            let be = id.to_be_bytes();
            *key = be[0];
            *key.add(1) = be[1];
            *key.add(2) = be[2];
            *key.add(3) = be[3];
            let key = &*(prefix_len as *const Key<[u8; NAME_KEY_MAX]>);
            trie.get(key).copied()
        };
        if let Some(r) = found {
            rule = rule.stricter(r);
        }
        pass += 1;
    }
    rule
}

/// Uses one open of a just-in-time grant for this agent, file and access mode, if there is a
/// live one. Expired and used-up grants are deleted here.
#[inline(always)]
fn use_grant(agent_id: u32, identity: &InodeKey, mode: u32) -> bool {
    let key = GrantKey {
        agent_id,
        _pad: 0,
        dev: identity.dev,
        ino: identity.ino,
    };
    let Some(grant) = GRANTS.get_ptr_mut(&key) else {
        return false;
    };
    // SAFETY: a pointer into the map value for this program run; the helper has no arguments.
    let (grant, now) = unsafe { (&mut *grant, bpf_ktime_get_boot_ns()) };
    if now > grant.expires_boot_ns || grant.uses_left == 0 {
        let _ = GRANTS.remove(&key);
        return false;
    }
    if grant.access & mode != mode {
        return false;
    }
    // Two racing opens may both see the last use; both then get it (one extra open at most).
    grant.uses_left -= 1;
    if grant.uses_left == 0 {
        let _ = GRANTS.remove(&key);
    }
    true
}

/// Writes an [`OpenEvent`]; false (and counted) when the ring buffer is full.
#[inline(always)]
#[expect(clippy::too_many_arguments, reason = "plain values from one hook")]
fn emit(
    agent_id: u32,
    tgid: u32,
    task: *const u8,
    identity: &InodeKey,
    (verdict, rule_id): (u32, u32),
    mode: u32,
    flags: u32,
    scratch: *const OpenScratch,
    len: usize,
) -> bool {
    let Some(mut entry) = EVENTS.reserve::<OpenEvent>(0) else {
        count(counters::EVENT_DROPPED);
        return false;
    };
    let ev = entry.as_mut_ptr();
    let pid_tgid = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    let path_len = if len == 0 {
        0
    } else if len - 1 < OPEN_PATH_MAX {
        len - 1
    } else {
        OPEN_PATH_MAX
    };
    // SAFETY: `ev` is a reserved record of the right size; every field is written before
    // submit; the path copy is bounded by the event's buffer.
    unsafe {
        (*ev).kind = EventKind::Open as u32;
        (*ev).flags = flags;
        (*ev).tgid = tgid;
        (*ev).pid = pid_tgid as u32;
        (*ev).uid = aya_ebpf::helpers::bpf_get_current_uid_gid() as u32;
        (*ev).agent_id = agent_id;
        (*ev).verdict = verdict;
        (*ev).rule_id = rule_id;
        (*ev).access = mode;
        (*ev).path_len = path_len as u32;
        (*ev).start_boottime = process_start(task).unwrap_or(0);
        (*ev).dev = identity.dev;
        (*ev).ino = identity.ino;
        bpf_probe_read_kernel(
            (*ev).path.as_mut_ptr().cast(),
            OPEN_PATH_MAX as u32,
            (*scratch).path.as_ptr().cast(),
        );
    }
    entry.submit(submit_flags(
        flags & (exec_flags::HELD | exec_flags::PENDING) != 0,
    ));
    true
}
