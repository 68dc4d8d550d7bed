//! `interceptor doctor`: what this host can enforce, checked rather than assumed.
//!
//! Reads the kernel version, the active LSM list and BTF, loads every kernel program on this
//! kernel (without attaching it) to see which pass the verifier, derives the backend a
//! daemon would pick and the guarantees that follow, and reports pins and a running daemon.

use std::path::Path;

use serde::Serialize;

use crate::{
    audit::{AuditTarget, Store, StoreOptions},
    btf::Btf,
    control::{self, AuditStatus, Request, Response},
    loader::{self, Backend, ProgramProbe},
};

/// Everything doctor found.
#[derive(Debug, Serialize)]
pub struct Report {
    pub kernel: String,
    /// The active LSMs (/sys/kernel/security/lsm).
    pub lsm_list: Vec<String>,
    /// Why the LSM list is unknown, if it is.
    pub lsm_list_error: Option<String>,
    /// Whether `bpf` is in the LSM list (`None` when the list is unknown).
    pub bpf_lsm_active: Option<bool>,
    /// Whether the kernel publishes BTF and every field the programs read resolves.
    pub btf_ok: bool,
    pub btf_error: Option<String>,
    /// Each program and whether it loads here.
    pub programs: Vec<ProgramProbe>,
    /// Why programs were not probed (not root, BTF missing...).
    pub programs_error: Option<String>,
    /// The backend a daemon started with `--backend auto` would run.
    pub backend: Option<String>,
    /// What that backend guarantees, and what it does not.
    pub guarantees: Vec<String>,
    /// Pins found in the pin directory.
    pub pins: Vec<String>,
    /// The running daemon's backend, if one answers on the socket.
    pub running_daemon: Option<String>,
    /// The running daemon's audit log.
    pub audit: Option<AuditStatus>,
    /// Without a running daemon: what opening the audit log file found (`None`: no file).
    pub audit_file: Option<Result<String, String>>,
}

impl Report {
    /// Whether the host can enforce at all (tracepoint programs load).
    pub fn usable(&self) -> bool {
        self.backend.is_some()
    }
}

/// Examines this host.
pub fn examine(pin_dir: &Path, socket: &Path, audit_db: &Path) -> Report {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("unknown ({e})"));
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let lsm_path = Path::new("/sys/kernel/security/lsm");
    if root && !lsm_path.exists() {
        // securityfs is read-only information; mounting it changes nothing else.
        // SAFETY: mount with NUL-terminated strings and no data.
        unsafe {
            libc::mount(
                c"securityfs".as_ptr(),
                c"/sys/kernel/security".as_ptr(),
                c"securityfs".as_ptr(),
                0,
                std::ptr::null(),
            );
        }
    }
    let (lsm_list, lsm_list_error) = match std::fs::read_to_string(lsm_path) {
        Ok(s) => (
            s.trim().split(',').map(str::to_string).collect::<Vec<_>>(),
            None,
        ),
        Err(e) => (
            Vec::new(),
            Some(format!(
                "{}: {e} (is securityfs mounted?)",
                lsm_path.display()
            )),
        ),
    };
    let bpf_lsm_active = lsm_list_error
        .is_none()
        .then(|| lsm_list.iter().any(|m| m == "bpf"));
    let btf_error = Btf::from_sys_fs()
        .and_then(|b| b.kernel_offsets())
        .err()
        .map(|e| e.to_string());
    let (programs, programs_error) = if !root {
        (
            Vec::new(),
            Some("not probed: loading programs needs root".to_string()),
        )
    } else {
        match loader::probe_programs() {
            Ok(probes) => (probes, None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        }
    };
    let all_load = |kind| programs.iter().filter(|p| p.kind == kind).all(|p| p.loads);
    let backend = match (
        // Both backends attach the tracepoints and the cgroup programs.
        programs_error.is_none() && all_load("tp_btf") && all_load("cgroup_sock_addr"),
        all_load("lsm"),
    ) {
        (false, _) => None,
        (true, true) => Some(Backend::Lsm),
        (true, false) => Some(Backend::Tracepoint),
    };
    let (running_daemon, audit) = match control::call(socket, &Request::Status) {
        Ok(Response::Status(status)) => (Some(status.backend), Some(status.audit)),
        _ => (None, None),
    };
    let audit_file =
        (running_daemon.is_none() && audit_db.exists()).then(|| check_audit_file(audit_db));
    let pins = std::fs::read_dir(pin_dir)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|e| {
            let path = e.path();
            if path.is_dir() {
                std::fs::read_dir(&path)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path())
                    .collect()
            } else {
                vec![path]
            }
        })
        .map(|p| p.display().to_string())
        .collect();
    Report {
        kernel,
        lsm_list,
        lsm_list_error,
        bpf_lsm_active,
        btf_ok: btf_error.is_none(),
        btf_error,
        programs,
        programs_error,
        backend: backend.map(|b| b.name().to_string()),
        guarantees: backend.map(Backend::guarantees).unwrap_or_default(),
        pins,
        running_daemon,
        audit,
        audit_file,
    }
}

/// Opens the log read-only and checks its integrity: a corrupt file is named, never
/// recreated.
fn check_audit_file(path: &Path) -> Result<String, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting a runtime: {e}"))?;
    runtime.block_on(async {
        let mut opts = StoreOptions::new(AuditTarget::Sqlite(path.into()));
        opts.create = false;
        let store = Store::open(&opts).await.map_err(|e| e.to_string())?;
        if let Some(problem) = store.integrity_problem().await.map_err(|e| e.to_string())? {
            return Err(format!("{}: {problem}", path.display()));
        }
        let rows = store.count().await.map_err(|e| e.to_string())?;
        store.close().await;
        Ok(format!(
            "{}: readable, {rows} rows (`interceptor audit verify` checks the chain)",
            path.display()
        ))
    })
}

/// The report for a human.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: String| out.push_str(&format!("{label:<16}{value}\n"));
    line("kernel", report.kernel.clone());
    line(
        "lsm list",
        match &report.lsm_list_error {
            None => format!(
                "{} (bpf {})",
                report.lsm_list.join(","),
                if report.bpf_lsm_active == Some(true) {
                    "active"
                } else {
                    "NOT active"
                }
            ),
            Some(e) => e.clone(),
        },
    );
    line(
        "btf",
        match &report.btf_error {
            None => "ok: every field the programs read resolves".into(),
            Some(e) => format!("FAILED: {e}"),
        },
    );
    for p in &report.programs {
        let verdict = match &p.error {
            None => "loads".to_string(),
            Some(e) => format!("does NOT load: {e}"),
        };
        line(
            "program",
            format!("{} ({} {}): {verdict}", p.program, p.kind, p.hook),
        );
    }
    if let Some(e) = &report.programs_error {
        line("programs", e.clone());
    }
    line(
        "backend",
        report
            .backend
            .clone()
            .unwrap_or_else(|| "NONE: interceptor cannot enforce on this host".into()),
    );
    for g in &report.guarantees {
        line("guarantee", g.clone());
    }
    line(
        "daemon",
        report
            .running_daemon
            .as_ref()
            .map_or("not running".into(), |b| format!("running, backend {b}")),
    );
    match (&report.audit, &report.audit_file) {
        (Some(a), _) => line(
            "audit log",
            match &a.failing {
                Some(why) => format!(
                    "{} cannot be written: {why}; agent execs and matched opens are REFUSED until it can",
                    a.target
                ),
                None => format!(
                    "{}: {} rows written since start, {} lost",
                    a.target, a.committed, a.lost
                ),
            },
        ),
        (None, Some(Ok(found))) => line("audit log", found.clone()),
        (None, Some(Err(e))) => line("audit log", format!("PROBLEM: {e}")),
        (None, None) => line("audit log", "no daemon running and no log file".into()),
    }
    if report.pins.is_empty() {
        line("pins", "none".into());
    }
    for pin in &report.pins {
        line("pin", pin.clone());
    }
    out
}
