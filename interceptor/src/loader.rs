//! Loading the kernel programs and choosing the backend.
//!
//! One object holds every program. The `lsm` backend loads the BPF LSM hooks (exec deny in
//! `bprm_check_security`, the SIGCONT guard in `task_kill`) and the tracepoints; the
//! `tracepoint` backend, for kernels where BPF LSM programs cannot be loaded, loads the
//! tracepoints only. Programs are named `<family>_<hook>`; the hook is derived from the
//! name, so each hook is spelled once, in the kernel program's attribute.

use std::fmt;

use aya::{Ebpf, EbpfLoader, programs::Program};
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
        ];
        let specific: &[&str] = match self {
            Self::Lsm => &[
                "a denied exec fails with EPERM in bprm_check_security; the agent's program continues",
                "a held task cannot be resumed by SIGCONT from anyone but the daemon (task_kill guard)",
                "agents cannot signal the daemon, ptrace-attach any process (nor PTRACE_TRACEME), or call bpf()",
                "agents cannot create user namespaces unless the daemon allows it",
            ],
            Self::Tracepoint => &[
                "a denied exec is killed (SIGKILL) at sched_process_exec, before its first instruction",
                "NOT guaranteed: another process may resume a held task with SIGCONT (no task_kill guard)",
                "NOT guaranteed: agents can signal the daemon, ptrace other processes and call bpf() (no LSM guards)",
                "NOT guaranteed: agents can create user namespaces (no userns_create guard)",
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
    #[error(
        "BPF LSM programs cannot be loaded on this kernel ({0}); the lsm backend needs \
         CONFIG_BPF_LSM=y and `bpf` in the lsm= boot parameter (use --backend auto to fall back)"
    )]
    LsmUnavailable(String),
}

/// The loaded programs; dropping this detaches them.
pub struct Loaded {
    pub ebpf: Ebpf,
    pub backend: Backend,
}

/// The hook a program attaches to: its name without the `<family>_` prefix.
pub fn hook_of(program: &str) -> Option<&str> {
    program
        .split_once('_')
        .map(|(_, hook)| hook)
        .filter(|hook| !hook.is_empty())
}

/// Loads the programs with offsets from this kernel's BTF and attaches the chosen backend.
pub fn load(choice: BackendChoice, config: KernelConfig) -> Result<Loaded, LoadError> {
    let offsets: KernelOffsets = Btf::from_sys_fs()?.kernel_offsets()?;
    let kernel_btf = aya::Btf::from_sys_fs()?;
    let mut ebpf = EbpfLoader::new()
        .btf(Some(&kernel_btf))
        .override_global("KERNEL_OFFSETS", &offsets, true)
        .override_global("CONFIG", &config, true)
        .load(OBJECT)?;

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
            match attach_lsm(&mut ebpf, &kernel_btf, &lsm_names) {
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

    for name in tp_names {
        let hook = hook_of(name).ok_or_else(|| LoadError::MissingProgram(name.into()))?;
        let Some(Program::BtfTracePoint(program)) = ebpf.program_mut(name) else {
            return Err(LoadError::MissingProgram(name.into()));
        };
        let err = |source| LoadError::Program {
            program: name.into(),
            source,
        };
        program.load(hook, &kernel_btf).map_err(err)?;
        program.attach().map_err(err)?;
        info!(program = name, hook, "attached tracepoint");
    }
    Ok(Loaded { ebpf, backend })
}

/// Loads and attaches every LSM program, or says why it could not.
fn attach_lsm(ebpf: &mut Ebpf, btf: &aya::Btf, names: &[&str]) -> Result<(), String> {
    if names.is_empty() {
        return Err("the object has no LSM programs".into());
    }
    for name in names {
        let hook =
            hook_of(name).ok_or_else(|| format!("program {name} is not named <family>_<hook>"))?;
        let Some(Program::Lsm(program)) = ebpf.program_mut(name) else {
            return Err(format!("program {name} vanished"));
        };
        program
            .load(hook, btf)
            .map_err(|e| format!("loading {name}: {}", error_chain(&e)))?;
        program
            .attach()
            .map_err(|e| format!("attaching {name}: {}", error_chain(&e)))?;
        info!(program = name, hook, "attached LSM hook");
    }
    Ok(())
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
                "exec_sched_process_exec",
                "guard_bpf",
                "guard_ptrace_access_check",
                "guard_ptrace_traceme",
                "guard_userns_create",
                "signal_task_kill",
                "tracking_sched_process_exit",
                "tracking_sched_process_fork",
            ]
        );
        for name in names {
            assert!(hook_of(name).is_some(), "{name} is not <family>_<hook>");
        }
    }
}
