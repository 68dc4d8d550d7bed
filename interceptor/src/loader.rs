//! Loading the kernel programs and choosing the backend.
//!
//! One object holds every program. The `lsm` backend loads the BPF LSM hooks (exec deny in
//! `bprm_check_security`, the SIGCONT guard in `task_kill`) and the tracepoints; the
//! `tracepoint` backend, for kernels where BPF LSM programs cannot be loaded, loads the
//! tracepoints only. Both attach the cgroup sock_addr programs (the approval listener
//! guard, see [`crate::listener_guard`]) to the cgroup v2 root. Programs are named
//! `<family>_<hook>`; the hook is derived from the name, so each hook is spelled once, in
//! the kernel program's attribute.

use std::{
    fmt,
    fs::File,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData},
    programs::{
        CgroupAttachMode, Program,
        links::{FdLink, PinnedLink},
    },
};
use interceptor_common::{KernelConfig, KernelOffsets};
use tracing::{info, warn};

use crate::btf::{Btf, BtfError};

/// The kernel programs, built by build.rs from interceptor-ebpf.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/interceptor"));

/// Which backend to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// lsm when BPF LSM programs load on this kernel, otherwise tracepoint.
    Auto,
    /// BPF LSM; fail if this kernel refuses LSM programs.
    Lsm,
    /// Tracepoints only (degraded: deny is a kill, no signal guard).
    Tracepoint,
}

/// The backend in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Lsm,
    Tracepoint,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Lsm => "lsm",
            Self::Tracepoint => "tracepoint",
        }
    }

    /// What an operator can rely on with this backend.
    pub fn guarantees(self) -> Vec<String> {
        let common = [
            "agents are tracked in the kernel from registration through every fork, by (pid, start time)",
            "a held exec is stopped before its first instruction and runs only after approval",
            "agents cannot connect to the daemon's HTTP listener, where reviews are answered: connect() fails with EPERM, over IPv4 and IPv6 (cgroup connect4/connect6 on the cgroup v2 root)",
        ];
        let specific: &[&str] = match self {
            Self::Lsm => &[
                "a denied exec fails with EPERM in bprm_check_security; the agent's program continues",
                "a program started by a loader (`ld.so /path/bin`) or mapped executable later (mmap, mprotect) is judged as an exec of its file",
                "a held task cannot be resumed by SIGCONT from anyone but the daemon (task_kill guard)",
                "agents cannot signal the daemon, ptrace-attach any process (nor PTRACE_TRACEME), or call bpf()",
                "agents cannot create user namespaces unless the daemon allows it",
                "agents cannot rename, move or unlink a file that an ask or deny rule names by inode, so the file at the rule's path stays the one it names (inode_rename, inode_unlink)",
                "an agent's open of a denied path fails with EACCES, by any name (relative, .., /proc/self/root, hardlink) and any route (openat2, O_PATH reopen, io_uring); asked reads are held, asked writes are refused until granted",
                "agents cannot open the daemon's configuration",
            ],
            Self::Tracepoint => &[
                "a denied exec is killed (SIGKILL) at sched_process_exec, before its first instruction",
                "NOT guaranteed: a program started by a loader (`ld.so /path/bin`) runs unjudged (no mmap_file hook)",
                "NOT guaranteed: another process may resume a held task with SIGCONT (no task_kill guard)",
                "NOT guaranteed: agents can signal the daemon, ptrace other processes and call bpf() (no LSM guards)",
                "NOT guaranteed: agents can create user namespaces (no userns_create guard)",
                "NOT guaranteed: an agent can rename another file over a file a rule names; it is judged by the defaults until the policy is reloaded (no inode_rename guard)",
                "NOT guaranteed: agents' opens are not checked (no file_open hook), the daemon's configuration included",
            ],
        };
        common
            .iter()
            .chain(specific)
            .map(|s| s.to_string())
            .collect()
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why the programs could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("resolving kernel struct offsets from BTF: {0}")]
    Offsets(#[from] BtfError),
    #[error("reading the kernel's BTF for program loading: {0}")]
    KernelBtf(#[from] aya::BtfError),
    #[error("loading the eBPF object: {0}")]
    Object(#[from] aya::EbpfError),
    #[error("program {program}: {source}")]
    Program {
        program: String,
        source: aya::programs::ProgramError,
    },
    #[error("the object has no program {0}")]
    MissingProgram(String),
    #[error("pin directory {path}: {source}")]
    PinDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pin {path}: {message}")]
    Pin { path: PathBuf, message: String },
    #[error("program {program}: its link cannot be pinned ({message})")]
    Unpinnable { program: String, message: String },
    #[error("cgroup v2: {0}")]
    Cgroup2(String),
    #[error("map: {0}")]
    Map(String),
    #[error(
        "BPF LSM programs cannot be loaded on this kernel ({0}); the lsm backend needs \
         CONFIG_BPF_LSM=y and `bpf` in the lsm= boot parameter (use --backend auto to fall back)"
    )]
    LsmUnavailable(String),
}

/// The loaded programs. Their links are pinned, so they stay attached after this is dropped
/// (and after the daemon dies) until [`unload`] or the next daemon replaces them.
pub struct Loaded {
    pub ebpf: Ebpf,
    pub backend: Backend,
    /// Link pins of earlier daemons that this load replaced (already removed).
    pub replaced_links: usize,
    /// Whether the maps already existed (a daemon ran before: agents, holds and counters are
    /// carried over).
    pub adopted_maps: bool,
}

/// Where the daemon pins its maps and links unless told otherwise.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/interceptor";

/// The hook a program attaches to: its name without the `<family>_` prefix.
pub fn hook_of(program: &str) -> Option<&str> {
    program
        .split_once('_')
        .map(|(_, hook)| hook)
        .filter(|hook| !hook.is_empty())
}

/// Nanoseconds of CLOCK_BOOTTIME, the clock of the kernel's `bpf_ktime_get_boot_ns`.
pub fn boottime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Loads the programs with offsets from this kernel's BTF, reusing the maps pinned in
/// `pin_dir` by an earlier daemon (or pinning new ones), beats the heartbeat once, then
/// attaches the chosen backend and pins its links. Links pinned by earlier daemons are
/// removed only after every new link is attached, so enforcement has no gap.
pub fn load(
    choice: BackendChoice,
    config: KernelConfig,
    pin_dir: &Path,
    max_tracked: u32,
) -> Result<Loaded, LoadError> {
    let adopted_maps = pin_dir.join("TRACKED").exists();
    let started = std::time::Instant::now();
    let (mut ebpf, kernel_btf) = open_object(config, pin_dir, max_tracked)?;
    info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "object opened (BTF read, maps created or reused)"
    );
    beat(&mut ebpf)?;

    let names: Vec<(String, bool)> = ebpf
        .programs()
        .map(|(name, program)| (name.to_string(), matches!(program, Program::Lsm(_))))
        .collect();
    let lsm_names: Vec<&str> = names
        .iter()
        .filter(|(_, lsm)| *lsm)
        .map(|(n, _)| n.as_str())
        .collect();
    let tp_names: Vec<&str> = names
        .iter()
        .filter(|(_, lsm)| !*lsm)
        .map(|(n, _)| n.as_str())
        .collect();

    let backend = match choice {
        BackendChoice::Tracepoint => Backend::Tracepoint,
        BackendChoice::Lsm | BackendChoice::Auto => {
            match load_lsm(&mut ebpf, &kernel_btf, &lsm_names) {
                Ok(()) => Backend::Lsm,
                Err(reason) if choice == BackendChoice::Auto => {
                    warn!(%reason, "BPF LSM programs cannot be loaded on this kernel; using the degraded tracepoint backend");
                    for name in &lsm_names {
                        if let Some(Program::Lsm(program)) = ebpf.program_mut(name) {
                            // Unloading a never-loaded program is a no-op error; nothing to undo.
                            let _ = program.unload();
                        }
                    }
                    Backend::Tracepoint
                }
                Err(reason) => return Err(LoadError::LsmUnavailable(reason)),
            }
        }
    };

    let links = pin_dir.join("links");
    let generation = format!("@{}", std::process::id());
    // Every process is in the cgroup v2 hierarchy (in its root on hosts that do not use
    // it), so programs attached to its root see every connect on the host.
    let cgroup_root = cgroup2_root()?;
    let cgroup = File::open(&cgroup_root)
        .map_err(|e| LoadError::Cgroup2(format!("{}: {e}", cgroup_root.display())))?;
    let mut attach = |name: &str| -> Result<(), LoadError> {
        let hook = hook_of(name).ok_or_else(|| LoadError::MissingProgram(name.into()))?;
        let err = |source| LoadError::Program {
            program: name.into(),
            source,
        };
        let fd_link: FdLink = match ebpf.program_mut(name) {
            Some(Program::Lsm(program)) => {
                let id = program.attach().map_err(err)?;
                program.take_link(id).map_err(err)?.into()
            }
            Some(Program::BtfTracePoint(program)) => {
                program.load(hook, &kernel_btf).map_err(err)?;
                let id = program.attach().map_err(err)?;
                program.take_link(id).map_err(err)?.into()
            }
            Some(Program::CgroupSockAddr(program)) => {
                program.load().map_err(err)?;
                // A bpf_link: it runs beside the programs others attached to the root (an
                // earlier daemon's included), and cannot be detached by a later PROG_ATTACH.
                let id = program
                    .attach(&cgroup, CgroupAttachMode::Single)
                    .map_err(err)?;
                let link = program.take_link(id).map_err(err)?;
                FdLink::try_from(link).map_err(|e| LoadError::Unpinnable {
                    program: name.into(),
                    message: e.to_string(),
                })?
            }
            _ => return Err(LoadError::MissingProgram(name.into())),
        };
        let pin = links.join(format!("{name}{generation}"));
        fd_link.pin(&pin).map_err(|e| LoadError::Pin {
            path: pin.clone(),
            message: e.to_string(),
        })?;
        info!(program = name, hook, pin = %pin.display(), elapsed_ms = started.elapsed().as_millis() as u64, "attached and pinned");
        Ok(())
    };
    if backend == Backend::Lsm {
        lsm_names.iter().try_for_each(|name| attach(name))?;
    }
    tp_names.iter().try_for_each(|name| attach(name))?;

    // Every new link is in place: drop the previous daemon's.
    let mut replaced_links = 0;
    for entry in std::fs::read_dir(&links).map_err(|source| LoadError::PinDir {
        path: links.clone(),
        source,
    })? {
        let path = entry
            .map_err(|source| LoadError::PinDir {
                path: links.clone(),
                source,
            })?
            .path();
        if path
            .file_name()
            .is_some_and(|n| !n.to_string_lossy().ends_with(&generation))
        {
            remove_link_pin(&path)?;
            replaced_links += 1;
        }
    }
    Ok(Loaded {
        ebpf,
        backend,
        replaced_links,
        adopted_maps,
    })
}

/// Whether one of our programs passes this kernel's verifier.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProgramProbe {
    pub program: String,
    /// `lsm`, `tp_btf` or `cgroup_sock_addr`.
    pub kind: &'static str,
    pub hook: String,
    pub loads: bool,
    pub error: Option<String>,
}

/// Loads (without attaching) every program of the object on this kernel, in a scratch pin
/// directory that is removed afterwards. Nothing is enforced while probing.
pub fn probe_programs() -> Result<Vec<ProgramProbe>, LoadError> {
    let scratch = PathBuf::from(format!(
        "/sys/fs/bpf/interceptor-probe-{}",
        std::process::id()
    ));
    let result = (|| {
        let (mut ebpf, kernel_btf) =
            open_object(KernelConfig::default(), &scratch, DEFAULT_MAX_TRACKED)?;
        let mut probes = Vec::new();
        for (name, program) in ebpf.programs_mut() {
            let hook = hook_of(name).unwrap_or_default().to_string();
            let (kind, loaded) = match program {
                Program::Lsm(p) => ("lsm", p.load(&hook, &kernel_btf)),
                Program::BtfTracePoint(p) => ("tp_btf", p.load(&hook, &kernel_btf)),
                Program::CgroupSockAddr(p) => ("cgroup_sock_addr", p.load()),
                _ => continue,
            };
            probes.push(ProgramProbe {
                program: name.to_string(),
                kind,
                hook,
                loads: loaded.is_ok(),
                error: loaded.err().map(|e| error_chain(&e)),
            });
        }
        probes.sort_by(|a, b| a.program.cmp(&b.program));
        Ok(probes)
    })();
    unload(&scratch)?;
    result
}

/// The size of `TRACKED` the doctor's probe load uses (the object's own default).
const DEFAULT_MAX_TRACKED: u32 = 65_536;

/// Loads the object with this kernel's struct offsets and `config`, its maps pinned in
/// `pin_dir` (reused when already there; a new `TRACKED` gets room for `max_tracked`
/// processes). Nothing is attached.
fn open_object(
    config: KernelConfig,
    pin_dir: &Path,
    max_tracked: u32,
) -> Result<(Ebpf, aya::Btf), LoadError> {
    let offsets: KernelOffsets = Btf::from_sys_fs()?.kernel_offsets()?;
    let kernel_btf = aya::Btf::from_sys_fs()?;
    prepare_pin_dir(pin_dir)?;
    let ebpf = EbpfLoader::new()
        .btf(Some(&kernel_btf))
        .default_map_pin_directory(pin_dir)
        .map_max_entries("TRACKED", max_tracked)
        .override_global("KERNEL_OFFSETS", &offsets, true)
        .override_global("CONFIG", &config, true)
        .load(OBJECT)?;
    Ok((ebpf, kernel_btf))
}

/// Loads (verifies) every LSM program without attaching, or says why one cannot load.
fn load_lsm(ebpf: &mut Ebpf, btf: &aya::Btf, names: &[&str]) -> Result<(), String> {
    if names.is_empty() {
        return Err("the object has no LSM programs".into());
    }
    for name in names {
        let hook =
            hook_of(name).ok_or_else(|| format!("program {name} is not named <family>_<hook>"))?;
        let Some(Program::Lsm(program)) = ebpf.program_mut(name) else {
            return Err(format!("program {name} vanished"));
        };
        let started = std::time::Instant::now();
        program
            .load(hook, btf)
            .map_err(|e| format!("loading {name}: {}", error_chain(&e)))?;
        let insns = program
            .info()
            .ok()
            .and_then(|i| i.verified_instruction_count());
        info!(program = name, elapsed_ms = started.elapsed().as_millis() as u64, verified_insns = ?insns, "verified");
    }
    Ok(())
}

/// Where the cgroup v2 hierarchy is mounted (the first `cgroup2` mount in
/// /proc/self/mountinfo: /sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on a
/// hybrid one). Without one, it is mounted at [`CGROUP2_MOUNT`].
pub fn cgroup2_root() -> Result<PathBuf, LoadError> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| LoadError::Cgroup2(format!("/proc/self/mountinfo: {e}")))?;
    if let Some(found) = cgroup2_mount_in(&mountinfo) {
        return Ok(found);
    }
    let target = Path::new(CGROUP2_MOUNT);
    std::fs::create_dir_all(target)
        .map_err(|e| LoadError::Cgroup2(format!("{}: {e}", target.display())))?;
    let c_target = std::ffi::CString::new(CGROUP2_MOUNT).expect("no NUL in the mount point");
    // SAFETY: mount with NUL-terminated strings; cgroup2 takes no data.
    let rc = unsafe {
        libc::mount(
            c"cgroup2".as_ptr(),
            c_target.as_ptr(),
            c"cgroup2".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(LoadError::Cgroup2(format!(
            "no cgroup2 mount, and mounting one on {CGROUP2_MOUNT} failed: {}",
            std::io::Error::last_os_error()
        )));
    }
    info!(mount = CGROUP2_MOUNT, "mounted the cgroup v2 hierarchy");
    Ok(target.into())
}

/// Where the daemon mounts the cgroup v2 hierarchy when the host has not.
pub const CGROUP2_MOUNT: &str = "/run/interceptor/cgroup2";

/// The mount point of the first whole-hierarchy `cgroup2` mount in a mountinfo text.
fn cgroup2_mount_in(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
        let (fields, fs) = line.split_once(" - ")?;
        let fields: Vec<&str> = fields.split(' ').collect();
        let (root, mount_point) = (*fields.get(3)?, *fields.get(4)?);
        (fs.split(' ').next() == Some("cgroup2") && root == "/")
            .then(|| PathBuf::from(unescape_mountinfo(mount_point)))
    })
}

/// Mount points in mountinfo escape space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(byte) => {
                out.push(byte as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Writes the heartbeat slot with the current time.
pub fn beat(ebpf: &mut Ebpf) -> Result<(), LoadError> {
    let map = ebpf
        .map_mut("HEARTBEAT")
        .ok_or_else(|| LoadError::MissingProgram("map HEARTBEAT".into()))?;
    let mut heartbeat: Array<&mut MapData, u64> =
        Array::try_from(map).map_err(|e| LoadError::Map(e.to_string()))?;
    heartbeat
        .set(0, boottime_ns(), 0)
        .map_err(|e| LoadError::Map(e.to_string()))
}

/// Makes sure `pin_dir` is on a mounted bpffs (mounting /sys/fs/bpf if it is not) and has a
/// `links` directory.
fn prepare_pin_dir(pin_dir: &Path) -> Result<(), LoadError> {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let fs_type = |p: &Path| -> Option<i64> {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).ok()?;
        // SAFETY: statfs into a zeroed struct with a NUL-terminated path.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        (unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0).then_some(st.f_type as i64)
    };
    let bpffs_root = Path::new("/sys/fs/bpf");
    if pin_dir.starts_with(bpffs_root) && fs_type(bpffs_root) != Some(BPF_FS_MAGIC) {
        // SAFETY: mount with NUL-terminated strings and no data.
        let rc = unsafe {
            libc::mount(
                c"bpf".as_ptr(),
                c"/sys/fs/bpf".as_ptr(),
                c"bpf".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(LoadError::PinDir {
                path: bpffs_root.into(),
                source: std::io::Error::last_os_error(),
            });
        }
        info!("mounted bpffs on /sys/fs/bpf");
    }
    let links = pin_dir.join("links");
    std::fs::create_dir_all(&links).map_err(|source| LoadError::PinDir {
        path: links.clone(),
        source,
    })?;
    if fs_type(pin_dir) != Some(BPF_FS_MAGIC) {
        return Err(LoadError::PinDir {
            path: pin_dir.into(),
            source: std::io::Error::other("not on a bpf filesystem (mount -t bpf bpf DIR)"),
        });
    }
    Ok(())
}

fn remove_link_pin(path: &Path) -> Result<(), LoadError> {
    let pinned = PinnedLink::from_pin(path).map_err(|e| LoadError::Pin {
        path: path.into(),
        message: e.to_string(),
    })?;
    // Unpinning returns the link's fd; dropping it detaches the old program.
    let fd_link = pinned.unpin().map_err(|e| LoadError::Pin {
        path: path.into(),
        message: e.to_string(),
    })?;
    drop(fd_link);
    info!(pin = %path.display(), "removed the link of an earlier daemon");
    Ok(())
}

/// Removes every pin under `pin_dir`: links first (the programs detach, enforcement stops),
/// then maps. Returns what was removed.
pub fn unload(pin_dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let dir_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LoadError::PinDir { path, source }
    };
    let mut removed = Vec::new();
    let links = pin_dir.join("links");
    if links.is_dir() {
        for entry in std::fs::read_dir(&links).map_err(dir_err(&links))? {
            let path = entry.map_err(dir_err(&links))?.path();
            remove_link_pin(&path)?;
            removed.push(path);
        }
        std::fs::remove_dir(&links).map_err(dir_err(&links))?;
    }
    if pin_dir.is_dir() {
        for entry in std::fs::read_dir(pin_dir).map_err(dir_err(pin_dir))? {
            let path = entry.map_err(dir_err(pin_dir))?.path();
            std::fs::remove_file(&path).map_err(dir_err(&path))?;
            removed.push(path);
        }
        std::fs::remove_dir(pin_dir).map_err(dir_err(pin_dir))?;
    }
    Ok(removed)
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Bridges aya-log records from the kernel programs into `tracing`.
pub struct KernelLog;

impl log::Log for KernelLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let message = record.args().to_string();
        match record.level() {
            log::Level::Error => tracing::error!(target: "interceptor::kernel", "{message}"),
            log::Level::Warn => tracing::warn!(target: "interceptor::kernel", "{message}"),
            log::Level::Info => tracing::info!(target: "interceptor::kernel", "{message}"),
            log::Level::Debug => tracing::debug!(target: "interceptor::kernel", "{message}"),
            log::Level::Trace => tracing::trace!(target: "interceptor::kernel", "{message}"),
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_come_from_program_names() {
        assert_eq!(
            hook_of("exec_bprm_check_security"),
            Some("bprm_check_security")
        );
        assert_eq!(
            hook_of("tracking_sched_process_fork"),
            Some("sched_process_fork")
        );
        assert_eq!(hook_of("signal_task_kill"), Some("task_kill"));
        assert_eq!(hook_of("nohook"), None);
        assert_eq!(hook_of("family_"), None);
        assert_eq!(hook_of("listener_connect6"), Some("connect6"));
    }

    #[test]
    fn the_cgroup2_hierarchy_is_found_in_mountinfo() {
        let hybrid = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup2_mount_in(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        // A mount of a sub-tree covers only part of the host; a later whole one is used.
        let sub = "\
50 23 0:38 /user.slice /mnt/sub rw - cgroup2 cgroup2 rw
51 23 0:38 / /mnt/with\\040space rw - cgroup2 none rw
";
        assert_eq!(
            cgroup2_mount_in(sub),
            Some(PathBuf::from("/mnt/with space"))
        );
        assert_eq!(
            cgroup2_mount_in("31 23 0:28 / /sys rw - sysfs sysfs rw\n"),
            None
        );
    }

    #[test]
    fn embedded_object_has_every_program_named_by_convention() {
        let object = aya_obj::Object::parse(OBJECT).expect("the embedded object parses");
        let mut names: Vec<&str> = object.programs.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "exec_bprm_check_security",
                "exec_file_mprotect",
                "exec_mmap_file",
                "exec_sched_process_exec",
                "guard_bpf",
                "guard_inode_rename",
                "guard_inode_unlink",
                "guard_ptrace_access_check",
                "guard_ptrace_traceme",
                "guard_userns_create",
                "listener_connect4",
                "listener_connect6",
                "open_file_open",
                "signal_task_kill",
                "tracking_sched_process_exit",
                "tracking_sched_process_fork",
                "tracking_task_alloc",
            ]
        );
        for name in names {
            assert!(hook_of(name).is_some(), "{name} is not <family>_<hook>");
        }
    }
}
