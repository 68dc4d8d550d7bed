//! The daemon: owns the loaded programs and their maps, turns kernel exec events into
//! records and pending approvals, and answers the control socket.
//!
//! A held exec becomes a pending request only once the task is really stopped (SIGSTOP is
//! delivered as the task returns to userspace, after the event is sent), and the task is
//! addressed through a pidfd from then on, so a decision can never reach a recycled pid.

use std::{
    collections::{BTreeMap, VecDeque},
    io,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use interceptor_common::{
    EventKind, ExecEvent, ExecRule, HeldTask, TrackedTask, Verdict, counters, exec_flags,
    tracked_flags,
};
use tokio::{
    io::unix::AsyncFd,
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream, unix::UCred},
    signal::unix::{SignalKind, signal},
};
use tracing::{debug, error, info, warn};

use crate::{
    control::{
        Decision, ExecRecord, MAX_REQUEST, PendingView, Request, Response, Status, parse_request,
    },
    loader::{self, Backend, BackendChoice, KernelLog},
    policy::Policy,
    procfs::{self, Pidfd},
};

/// How long a held task may take to reach the stopped state after its event arrives.
/// Generous because emulated test VMs are ~20x slower than hardware.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// Exec records kept in memory for `interceptor events`.
const RECENT_EVENTS: usize = 4096;

/// Names of the kernel failure counters, by index.
const COUNTER_NAMES: [(u32, &str); counters::COUNT as usize] = [
    (counters::EVENT_DROPPED, "event_dropped"),
    (counters::TRACK_FAILED, "track_failed"),
    (counters::HOLD_FAILED, "hold_failed"),
    (counters::SIGCONT_BLOCKED, "sigcont_blocked"),
    (counters::STALE_TRACKED, "stale_tracked"),
];

/// How the daemon is started.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub socket: PathBuf,
    pub policy: Policy,
    /// Where the policy came from (a path, or "built-in default").
    pub policy_origin: String,
    pub backend: BackendChoice,
}

/// Why the daemon could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("interceptor daemon must run as root: it loads BPF programs (running as uid {0})")]
    NotRoot(u32),
    #[error(transparent)]
    Load(#[from] loader::LoadError),
    #[error("the eBPF object has no map {0}")]
    MissingMap(&'static str),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("another daemon already listens on {0}")]
    AlreadyRunning(PathBuf),
    #[error("control socket {path}: {source}")]
    Socket { path: PathBuf, source: io::Error },
    #[error("{0}")]
    Io(#[from] io::Error),
}

struct KernelMaps {
    tracked: BpfHashMap<MapData, u32, TrackedTask>,
    held: BpfHashMap<MapData, u32, HeldTask>,
    counters: PerCpuArray<MapData, u64>,
}

struct Pending {
    view: PendingView,
    pidfd: Pidfd,
}

#[derive(Default)]
struct State {
    /// Agent names; the agent id is the index + 1.
    agents: Vec<String>,
    pending: BTreeMap<u64, Pending>,
    next_request: u64,
    events: VecDeque<ExecRecord>,
    next_seq: u64,
}

/// The running daemon's shared state.
pub struct Daemon {
    backend: Backend,
    policy: Policy,
    policy_origin: String,
    unresolved: Vec<(String, String)>,
    kernel: Mutex<KernelMaps>,
    state: Mutex<State>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn take_map<T>(ebpf: &mut aya::Ebpf, name: &'static str) -> Result<T, DaemonError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(DaemonError::MissingMap(name))?;
    T::try_from(map).map_err(|source| DaemonError::Map { name, source })
}

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn run(options: DaemonOptions) -> Result<(), DaemonError> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(DaemonError::NotRoot(euid));
    }
    let listener = bind(&options.socket)?;

    let loader::Loaded { mut ebpf, backend } = loader::load(options.backend, std::process::id())?;
    let mut kernel_log = match aya_log::EbpfLogger::init_with_logger(&mut ebpf, KernelLog) {
        Ok(logger) => Some(readable(logger)?),
        Err(e) => {
            warn!(error = %e, "kernel program logs are unavailable");
            None
        }
    };

    let compiled = options.policy.compile();
    let mut exec_rules: BpfHashMap<MapData, interceptor_common::InodeKey, ExecRule> =
        take_map(&mut ebpf, "EXEC_RULES")?;
    for rule in &compiled.exec {
        let value = ExecRule {
            verdict: Verdict::from(rule.action) as u32,
            rule_id: rule.rule_id,
        };
        exec_rules
            .insert(rule.key, value, 0)
            .map_err(|source| DaemonError::Map {
                name: "EXEC_RULES",
                source,
            })?;
    }
    for (rule, why) in &compiled.unresolved {
        warn!(
            rule,
            why, "rule cannot match: its binary does not exist on this host"
        );
    }
    // Userspace policy decisions are not wired into this daemon yet: say so, never imply
    // enforcement that does not happen.
    if let Some(fallback) = &compiled.exec_fallback {
        warn!(because = ?fallback.because, "these rules need every exec judged in userspace, which this daemon does not do yet: they are NOT enforced");
    }
    let userspace = compiled
        .exec
        .iter()
        .filter(|e| e.decided_by == crate::policy::DecidedBy::Userspace)
        .count();
    if userspace > 0 {
        warn!(
            entries = userspace,
            "argv-level rules: their binaries are held for a reviewer (the policy decision in userspace is not wired yet)"
        );
    }
    if !compiled.open.is_empty() {
        warn!(
            entries = compiled.open.len(),
            "open rules are compiled but NOT enforced: the kernel has no open hook yet"
        );
    }
    let ring: RingBuf<MapData> = take_map(&mut ebpf, "EVENTS")?;
    let daemon = Arc::new(Daemon {
        backend,
        unresolved: compiled.unresolved,
        policy: options.policy,
        policy_origin: options.policy_origin,
        kernel: Mutex::new(KernelMaps {
            tracked: take_map(&mut ebpf, "TRACKED")?,
            held: take_map(&mut ebpf, "HELD")?,
            counters: take_map(&mut ebpf, "COUNTERS")?,
        }),
        state: Mutex::new(State {
            next_request: 1,
            ..State::default()
        }),
    });

    info!(
        backend = %backend,
        policy = %daemon.policy_origin,
        exec_rules = compiled.exec.len(),
        socket = %options.socket.display(),
        "interceptor daemon running"
    );
    for guarantee in backend.guarantees() {
        info!(backend = %backend, "{guarantee}");
    }

    let mut events = readable(ring)?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let result = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => { tokio::spawn(serve(daemon.clone(), stream)); }
                Err(e) => warn!(error = %e, "accepting a control connection"),
            },
            ready = events.readable_mut() => {
                let mut guard = ready?;
                while let Some(item) = guard.get_inner_mut().next() {
                    daemon.on_kernel_event(&item);
                }
                guard.clear_ready();
            }
            ready = async { kernel_log.as_mut().expect("guarded by the branch condition").readable_mut().await },
                if kernel_log.is_some() => {
                let mut guard = ready?;
                guard.get_inner_mut().flush();
                guard.clear_ready();
            }
            _ = sigterm.recv() => break Ok(()),
            _ = sigint.recv() => break Ok(()),
        }
    };
    daemon.shutdown();
    let _ = std::fs::remove_file(&options.socket);
    info!("interceptor daemon stopped");
    drop(ebpf);
    result
}

/// Registers a ring buffer's fd with the runtime for readability.
fn readable<T: std::os::fd::AsRawFd>(inner: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: `inner` owns its map fd (aya's RingBuf and EbpfLogger close it only on drop),
    // so the fd stays open and the same for as long as the AsyncFd owns `inner`.
    unsafe { AsyncFd::register_with_interest(inner, tokio::io::Interest::READABLE) }
        .map_err(io::Error::from)
}

/// Binds the control socket: world-connectable, because agents of any uid register through
/// it; every request is authorised by the caller's peer credentials.
fn bind(path: &Path) -> Result<UnixListener, DaemonError> {
    let err = |source| DaemonError::Socket {
        path: path.into(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(DaemonError::AlreadyRunning(path.into()));
        }
        std::fs::remove_file(path).map_err(err)?;
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).map_err(err)?;
    Ok(listener)
}

async fn serve(daemon: Arc<Daemon>, stream: UnixStream) {
    let peer = stream.peer_cred();
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST as u64));
    let response =
        match tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line)).await {
            Err(_) => Response::Error {
                message: "no request within 10 s".into(),
            },
            Ok(Err(e)) => Response::Error {
                message: format!("reading the request: {e}"),
            },
            Ok(Ok(_)) if !line.ends_with('\n') => Response::Error {
                message: format!("request must be one line of at most {MAX_REQUEST} bytes"),
            },
            Ok(Ok(_)) => match (parse_request(&line), peer) {
                (Err(message), _) => Response::Error { message },
                (Ok(_), Err(e)) => Response::Error {
                    message: format!("cannot read peer credentials: {e}"),
                },
                (Ok(request), Ok(peer)) => daemon.handle(request, peer),
            },
        };
    if let Response::Error { message } = &response {
        debug!(%message, "control request refused");
    }
    let mut out = serde_json::to_string(&response).unwrap_or_else(|e| {
        format!(r#"{{"result":"error","message":"encoding the answer: {e}"}}"#)
    });
    out.push('\n');
    let _ = write.write_all(out.as_bytes()).await;
}

impl Daemon {
    fn handle(self: &Arc<Self>, request: Request, peer: UCred) -> Response {
        let result = match request {
            Request::Register { agent } => self.register(&agent, peer),
            Request::Status => Ok(Response::Status(self.status())),
            Request::ListApprovals => self.authorize_reviewer(peer).map(|()| Response::Approvals {
                requests: self.pending_views(),
            }),
            Request::Approve { id } => self
                .authorize_reviewer(peer)
                .and_then(|()| self.decide(id, Decision::Approved)),
            Request::Deny { id } => self
                .authorize_reviewer(peer)
                .and_then(|()| self.decide(id, Decision::Denied)),
            Request::Events { limit } => self.authorize_reviewer(peer).map(|()| {
                let state = lock(&self.state);
                let limit = limit.unwrap_or(100).min(RECENT_EVENTS);
                let skip = state.events.len().saturating_sub(limit);
                Response::Events {
                    events: state.events.iter().skip(skip).cloned().collect(),
                }
            }),
        };
        result.unwrap_or_else(|message| Response::Error { message })
    }

    /// Tracks the caller (by its peer pid) as agent `agent`.
    fn register(&self, agent: &str, peer: UCred) -> Result<Response, String> {
        let valid = !agent.is_empty()
            && agent.len() <= 64
            && agent
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(format!(
                "agent name {agent:?} is invalid: use 1-64 characters from A-Z a-z 0-9 - _ ."
            ));
        }
        let pid = peer_pid(peer)?;
        let start_ticks = procfs::stat(pid)
            .map_err(|e| format!("reading /proc/{pid}/stat: {e}"))?
            .start_ticks;
        if let Some(existing) = self.tracked_agent(pid, start_ticks) {
            // An agent cannot re-register to change its identity.
            let name = self.agent_name(existing);
            info!(pid, agent = %name, "already tracked; identity unchanged");
            return Ok(Response::Registered {
                agent: name,
                agent_id: existing,
                pid,
            });
        }
        let agent_id = {
            let mut state = lock(&self.state);
            match state.agents.iter().position(|a| a == agent) {
                Some(i) => i as u32 + 1,
                None => {
                    state.agents.push(agent.to_string());
                    state.agents.len() as u32
                }
            }
        };
        let entry = TrackedTask {
            start: start_ticks,
            agent_id,
            flags: tracked_flags::UNCONFIRMED,
        };
        lock(&self.kernel)
            .tracked
            .insert(pid, entry, 0)
            .map_err(|e| format!("tracking pid {pid}: {e}"))?;
        info!(pid, uid = peer.uid(), agent, agent_id, "agent registered");
        Ok(Response::Registered {
            agent: agent.to_string(),
            agent_id,
            pid,
        })
    }

    /// The agent id of `pid` if the kernel tracks that very process.
    fn tracked_agent(&self, pid: u32, start_ticks: u64) -> Option<u32> {
        let entry = lock(&self.kernel).tracked.get(&pid, 0).ok()?;
        let entry_ticks = if entry.flags & tracked_flags::UNCONFIRMED != 0 {
            entry.start
        } else {
            procfs::ticks_of_boottime(entry.start)
        };
        (entry_ticks == start_ticks).then_some(entry.agent_id)
    }

    fn agent_name(&self, agent_id: u32) -> String {
        let state = lock(&self.state);
        agent_id
            .checked_sub(1)
            .and_then(|i| state.agents.get(i as usize).cloned())
            .unwrap_or_else(|| format!("agent#{agent_id}"))
    }

    /// Decisions need root, and never come from inside an agent's tree: no agent approves
    /// its own (or another agent's) operation.
    fn authorize_reviewer(&self, peer: UCred) -> Result<(), String> {
        if peer.uid() != 0 {
            return Err(format!(
                "approvals need root (uid 0); the caller runs as uid {}",
                peer.uid()
            ));
        }
        let pid = peer_pid(peer)?;
        let start_ticks = procfs::stat(pid)
            .map_err(|e| format!("reading /proc/{pid}/stat: {e}"))?
            .start_ticks;
        if let Some(agent_id) = self.tracked_agent(pid, start_ticks) {
            let agent = self.agent_name(agent_id);
            warn!(pid, agent = %agent, "refused a control request from inside an agent's process tree");
            return Err(format!(
                "refused: the caller (pid {pid}) belongs to agent {agent}; agents cannot list or decide approvals"
            ));
        }
        Ok(())
    }

    fn decide(&self, id: u64, decision: Decision) -> Result<Response, String> {
        let pending = lock(&self.state)
            .pending
            .remove(&id)
            .ok_or_else(|| format!("no pending request {id} (see `interceptor approvals list`)"))?;
        let pid = pending.view.pid;
        if !pending.pidfd.alive() {
            return Err(format!("request {id}: the held process {pid} has exited"));
        }
        match decision {
            Decision::Approved => {
                // The guard refuses SIGCONT while the task is in HELD.
                let removed = lock(&self.kernel).held.remove(&pid);
                if let Err(e) = removed {
                    warn!(id, pid, error = %e, "held task was not in HELD");
                }
                pending
                    .pidfd
                    .signal(libc::SIGCONT)
                    .map_err(|e| format!("resuming pid {pid}: {e}"))?;
            }
            Decision::Denied => {
                pending
                    .pidfd
                    .signal(libc::SIGKILL)
                    .map_err(|e| format!("killing pid {pid}: {e}"))?;
            }
        }
        info!(id, pid, agent = %pending.view.agent, ?decision, binary = %pending.view.filename, "decision applied");
        Ok(Response::Decided { id, decision, pid })
    }

    fn pending_views(&self) -> Vec<PendingView> {
        let mut state = lock(&self.state);
        // Forget requests whose process is gone (killed by someone, or exited).
        state.pending.retain(|_, p| p.pidfd.alive());
        state.pending.values().map(|p| p.view.clone()).collect()
    }

    fn status(&self) -> Status {
        let kernel = lock(&self.kernel);
        let counters = COUNTER_NAMES
            .iter()
            .map(|&(index, name)| {
                let total = kernel.counters.get(&index, 0).map_or(0, |v| v.iter().sum());
                (name.to_string(), total)
            })
            .collect();
        Status {
            backend: self.backend.name().into(),
            guarantees: self.backend.guarantees(),
            daemon_pid: std::process::id(),
            policy: self.policy_origin.clone(),
            unresolved_rules: self.unresolved.clone(),
            tracked_processes: kernel.tracked.keys().count(),
            pending_approvals: lock(&self.state).pending.len(),
            counters,
        }
    }

    fn on_kernel_event(self: &Arc<Self>, bytes: &[u8]) {
        let Some(event) = decode_event(bytes) else {
            error!(
                len = bytes.len(),
                expected = size_of::<ExecEvent>(),
                "undecodable kernel event dropped"
            );
            return;
        };
        let record = self.record(&event);
        let held = record.held;
        if record.denied {
            warn!(pid = record.pid, agent = %record.agent, binary = %record.filename, rule = ?record.rule,
                  argv = ?record.argv, hold_failed = record.hold_failed, "exec denied");
        } else if held {
            info!(pid = record.pid, agent = %record.agent, binary = %record.filename, rule = ?record.rule,
                  "exec held before its first instruction");
        } else {
            info!(pid = record.pid, agent = %record.agent, binary = %record.filename, argv = ?record.argv, "exec");
        }
        {
            let mut state = lock(&self.state);
            if state.events.len() == RECENT_EVENTS {
                state.events.pop_front();
            }
            state.events.push_back(record.clone());
        }
        if held {
            let daemon = self.clone();
            tokio::spawn(async move { daemon.adopt_hold(record, event.start_boottime).await });
        }
    }

    fn record(&self, ev: &ExecEvent) -> ExecRecord {
        let seq = {
            let mut state = lock(&self.state);
            state.next_seq += 1;
            state.next_seq
        };
        exec_record(ev, seq, self.agent_name(ev.agent_id), &self.policy)
    }

    /// Turns a held exec into a pending request once the task is stopped.
    async fn adopt_hold(self: Arc<Self>, record: ExecRecord, start_boottime: u64) {
        let pid = record.pid;
        let pidfd = match Pidfd::open(pid, procfs::ticks_of_boottime(start_boottime)) {
            Ok(pidfd) => pidfd,
            Err(e) => {
                info!(pid, error = %e, "held process is gone before it could be reviewed");
                return;
            }
        };
        let deadline = Instant::now() + STOP_WAIT;
        loop {
            match procfs::stat(pid) {
                Ok(st) if st.state == 'T' => break,
                Ok(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(2)).await
                }
                Ok(st) => {
                    error!(pid, state = %st.state, "held task did not stop; killing it (fail closed)");
                    let _ = pidfd.signal(libc::SIGKILL);
                    return;
                }
                Err(_) => {
                    info!(pid, "held process exited before it could be reviewed");
                    return;
                }
            }
        }
        let rule = self
            .policy
            .rules
            .iter()
            .find(|r| Some(&r.name) == record.rule.as_ref());
        let view = |id| PendingView {
            id,
            agent: record.agent.clone(),
            pid,
            ppid: record.ppid,
            uid: record.uid,
            filename: record.filename.clone(),
            exe: procfs::exe(pid)
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            argv: procfs::cmdline(pid).unwrap_or_else(|_| record.argv.clone()),
            cwd: procfs::cwd(pid)
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            rule: record.rule.clone().unwrap_or_default(),
            reason: rule.and_then(|r| r.reason.clone()),
            held_at_ms: record.time_ms,
        };
        let mut state = lock(&self.state);
        let id = state.next_request;
        state.next_request += 1;
        let view = view(id);
        info!(id, pid, agent = %view.agent, binary = %view.filename, argv = ?view.argv,
              "waiting for approval: `interceptor approvals approve {id}` or `interceptor approvals deny {id}`");
        state.pending.insert(id, Pending { view, pidfd });
    }

    /// On shutdown nothing is left held with nobody to answer: held tasks are denied.
    fn shutdown(&self) {
        let pending = std::mem::take(&mut lock(&self.state).pending);
        for (id, p) in pending {
            warn!(
                id,
                pid = p.view.pid,
                "daemon stopping: denying the held exec"
            );
            let _ = p.pidfd.signal(libc::SIGKILL);
        }
        let kernel = lock(&self.kernel);
        for entry in kernel.held.iter().flatten() {
            let (pid, held) = entry;
            if let Ok(pidfd) = Pidfd::open(pid, procfs::ticks_of_boottime(held.start_boottime)) {
                warn!(pid, "daemon stopping: killing a held task not yet reviewed");
                let _ = pidfd.signal(libc::SIGKILL);
            }
        }
    }
}

fn peer_pid(peer: UCred) -> Result<u32, String> {
    peer.pid()
        .filter(|&pid| pid > 0)
        .map(|pid| pid as u32)
        .ok_or_else(|| "the caller's pid is unknown (no SO_PEERCRED pid)".to_string())
}

/// The record of one kernel exec event. Lengths from the kernel are clamped to the buffers.
fn exec_record(ev: &ExecEvent, seq: u64, agent: String, policy: &Policy) -> ExecRecord {
    let filename_len = (ev.filename_len as usize).min(ev.filename.len());
    let argv_len = (ev.argv_len as usize).min(ev.argv.len());
    let verdict = match Verdict::from_u32(ev.verdict) {
        Some(Verdict::Allow) => "allow",
        Some(Verdict::Audit) => "audit",
        Some(Verdict::Ask) => "ask",
        Some(Verdict::Deny) => "deny",
        None => "unknown",
    };
    let kind = match EventKind::from_u32(ev.kind) {
        Some(EventKind::Exec) => "exec",
        Some(EventKind::ExecDenied) => "exec_denied",
        None => "unknown",
    };
    ExecRecord {
        seq,
        time_ms: now_ms(),
        kind: kind.into(),
        agent,
        agent_id: ev.agent_id,
        pid: ev.tgid,
        tid: ev.pid,
        ppid: ev.ppid,
        uid: ev.uid,
        gid: ev.gid,
        cgroup_id: ev.cgroup_id,
        filename: String::from_utf8_lossy(&ev.filename[..filename_len]).into_owned(),
        filename_truncated: ev.flags & exec_flags::FILENAME_TRUNCATED != 0,
        argv: procfs::split_nul(&ev.argv[..argv_len]),
        argv_truncated: ev.flags & exec_flags::ARGV_TRUNCATED != 0,
        argv_unavailable: ev.flags & exec_flags::ARGV_UNAVAILABLE != 0,
        verdict: verdict.into(),
        rule: policy.rule(ev.rule_id).map(|r| r.name.clone()),
        held: ev.flags & exec_flags::HELD != 0,
        denied: ev.flags & exec_flags::DENIED != 0,
        hold_failed: ev.flags & exec_flags::HOLD_FAILED != 0,
        dev: ev.dev,
        ino: ev.ino,
    }
}

/// Reads an [`ExecEvent`] out of a ring-buffer record; `None` when the size is wrong.
pub fn decode_event(bytes: &[u8]) -> Option<ExecEvent> {
    if bytes.len() < size_of::<ExecEvent>() {
        return None;
    }
    // SAFETY: ExecEvent is Pod (integers and byte arrays only), the slice is long enough,
    // and read_unaligned makes no alignment assumption.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<ExecEvent>()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use interceptor_common::FILENAME_MAX;

    #[test]
    fn short_kernel_records_are_rejected() {
        assert!(decode_event(&[0u8; 16]).is_none());
        let mut bytes = vec![0u8; size_of::<ExecEvent>()];
        bytes[0] = EventKind::Exec as u8;
        bytes[8] = 42; // tgid
        let ev = decode_event(&bytes).expect("full-size record decodes");
        assert_eq!((ev.kind, ev.tgid), (EventKind::Exec as u32, 42));
    }

    #[test]
    fn records_clamp_lengths_from_the_kernel() {
        let policy = Policy::parse(
            "version = 1\n[[rule]]\nname = \"no-shred\"\noperation = \"exec\"\nbinary = \"/usr/bin/shred\"\naction = \"deny\"\n[[rule]]\nname = \"hold-curl\"\noperation = \"exec\"\nbinary = \"/usr/bin/curl\"\naction = \"ask\"\n",
            "test",
        )
        .unwrap();
        let mut ev: ExecEvent = unsafe { std::mem::zeroed() };
        ev.kind = EventKind::Exec as u32;
        ev.flags = exec_flags::HELD | exec_flags::ARGV_TRUNCATED;
        ev.filename[..9].copy_from_slice(b"/bin/echo");
        ev.filename_len = u32::MAX; // a lying length must not read past the buffer
        ev.argv[..8].copy_from_slice(b"echo\0hi\0");
        ev.argv_len = 8;
        ev.verdict = Verdict::Ask as u32;
        ev.rule_id = 2;
        let rec = exec_record(&ev, 1, "copilot".into(), &policy);
        assert_eq!(rec.filename.len(), FILENAME_MAX);
        assert!(rec.filename.starts_with("/bin/echo"));
        assert_eq!(rec.argv, vec!["echo", "hi"]);
        assert!(rec.held && rec.argv_truncated && !rec.denied);
        assert_eq!(rec.verdict, "ask");
        assert_eq!(rec.rule.as_deref(), Some("hold-curl"));
        assert_eq!((rec.seq, rec.agent.as_str()), (1, "copilot"));
    }
}
