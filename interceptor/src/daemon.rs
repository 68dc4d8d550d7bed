//! The daemon: owns the loaded programs and their maps, turns kernel exec events into
//! records and pending approvals, and answers the control socket.
//!
//! A held exec becomes a pending request only once the task is really stopped (SIGSTOP is
//! delivered as the task returns to userspace, after the event is sent), and the task is
//! addressed through a pidfd from then on, so a decision can never reach a recycled pid.
//!
//! Everything is recorded in the audit log ([`crate::journal`] builds the rows): every
//! agent event as it arrives (queued, never waiting), and every decision the daemon or a
//! reviewer takes, committed before it is applied when it lets something run. While the
//! log cannot be written the kernel is told (`AUDIT_DOWN`) and refuses agent execs and
//! matched opens, which would otherwise go unrecorded; other processes are unaffected.

use std::{
    collections::{BTreeMap, VecDeque},
    io,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, RwLock},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use aya::maps::{
    Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf,
    lpm_trie::{Key as LpmKey, LpmTrie},
};
use interceptor_common::{
    AGENT_NAME_MAX, AgentName, EventKind, ExecEvent, ExecRule, Grant, GrantKey, HeldTask, InodeKey,
    KernelConfig, NAME_KEY_MAX, OpenEvent, OpenRule, RESERVED_KEY_BASE, RULE_PATH_MAX, TrackedTask,
    Verdict, counters, exec_flags, tracked_flags,
};
use tokio::{
    io::unix::AsyncFd,
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream, unix::UCred},
    signal::unix::{SignalKind, signal},
};
use tracing::{debug, error, info, warn};

mod review;
use review::Via;

use crate::{
    audit::{
        ApprovalAudit, ApprovalStep, AuditConfig, AuditError, AuditEvent, AuditLog, DaemonAudit,
        DaemonStep, DecidedBy, DecisionAudit, GrantAudit, GrantStep, LossAudit, NewEntry, Outcome,
        PolicyReloadAudit, ProcessInfo,
    },
    control::{
        AuditStatus, Decision, ExecRecord, MAX_REQUEST, PendingView, Request, Response, Status,
        parse_request,
    },
    http, journal,
    loader::{self, Backend, BackendChoice, KernelLog},
    metrics::{self, Metrics},
    open_rules::{self, OPEN_RULE_ID_BASE, OpenRuleSpec, TrieEntry, access_names},
    policy::{Action, Policy},
    procfs::{self, Pidfd},
    scope::{AgentScope, cgroup_id, validate_agent_name},
};

/// How long a held task may take to reach the stopped state after its event arrives.
/// Generous because emulated test VMs are ~20x slower than hardware.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// How often the daemon looks at the policy file for changes.
const POLICY_WATCH_PERIOD: Duration = Duration::from_secs(1);

/// How often the daemon tells the kernel it is alive.
const HEARTBEAT_PERIOD: Duration = Duration::from_secs(1);

/// The rule name reported for execs held because their binary has no name.
const UNLINKED_RULE: &str = "builtin:unlinked-binary";

/// How often the daemon reads kernel events that did not wake it.
const EVENT_DRAIN_PERIOD: Duration = Duration::from_millis(20);

/// Exec records kept in memory for `interceptor events`.
const RECENT_EVENTS: usize = 4096;

/// Closed requests remembered for late answers.
const CLOSED_KEPT: usize = 1024;

/// How often a pending request's task is checked (gone: cancelled) and its deadline.
const REQUEST_WATCH_PERIOD: Duration = Duration::from_millis(200);

/// Names of the kernel failure counters, by index.
const COUNTER_NAMES: [(u32, &str); counters::COUNT as usize] = [
    (counters::EVENT_DROPPED, "event_dropped"),
    (counters::TRACK_FAILED, "track_failed"),
    (counters::HOLD_FAILED, "hold_failed"),
    (counters::SIGCONT_BLOCKED, "sigcont_blocked"),
    (counters::STALE_TRACKED, "stale_tracked"),
    (counters::PTRACE_BLOCKED, "ptrace_blocked"),
    (counters::BPF_BLOCKED, "bpf_blocked"),
    (counters::USERNS_BLOCKED, "userns_blocked"),
    (counters::DAEMON_SIGNAL_BLOCKED, "daemon_signal_blocked"),
    (counters::DAEMON_DOWN_DENIED, "daemon_down_denied"),
    (counters::OPEN_DENIED, "open_denied"),
    (counters::OPEN_UNRESOLVED, "open_unresolved"),
    (counters::FORK_REFUSED, "fork_refused"),
    (counters::AUDIT_DOWN_DENIED, "audit_down_denied"),
    (counters::CONNECT_REFUSED, "connect_refused"),
    (counters::RULE_FILE_GUARDED, "rule_file_guarded"),
];

/// How the daemon is started.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub socket: PathBuf,
    pub policy: Policy,
    /// Where the policy came from (a path, or "built-in default").
    pub policy_origin: String,
    pub backend: BackendChoice,
    /// uids and cgroups whose processes are agents.
    pub scopes: Vec<AgentScope>,
    /// Let agents create user namespaces (refused by default on the lsm backend).
    pub allow_userns: bool,
    /// Where maps and links are pinned (bpffs).
    pub pin_dir: PathBuf,
    /// After this long without a heartbeat the kernel refuses agent operations that need
    /// the daemon.
    pub heartbeat_timeout_ms: u32,
    /// Room in the kernel's `TRACKED` map (agent processes at once).
    pub max_agent_processes: u32,
    /// Open rules (the daemon adds its own files' protection).
    pub open_rules: Vec<OpenRuleSpec>,
    /// The policy file, re-read on SIGHUP and when it changes (`None`: built-in policy).
    pub policy_path: Option<PathBuf>,
    /// Exec rules from the command line, kept across reloads.
    pub cli_exec_rules: Vec<(Action, String)>,
    /// The audit log.
    pub audit: AuditConfig,
    /// The HTTP listener's address (`/metrics`, `/healthz`); `None`: no listener.
    pub listen: Option<String>,
    /// Let the HTTP listener bind a non-loopback address.
    pub listen_remote: bool,
    /// Reviewers and notification channels.
    pub approvals: crate::approvals::config::ApprovalsConfig,
    /// The approval state database (requests, hashed review tokens, CSRF key).
    pub approvals_db: PathBuf,
    /// systemd's notification socket (`Type=notify`), when started by systemd.
    pub notifier: Option<crate::systemd::Notifier>,
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
    OpenRules(String),
    #[error("agent scope {scope}: {message}")]
    Scope { scope: String, message: String },
    #[error(transparent)]
    Http(#[from] http::HttpError),
    #[error("audit log {target}: {source}")]
    Audit { target: String, source: AuditError },
    #[error("approvals: {0}")]
    Approvals(String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

struct KernelMaps {
    tracked: BpfHashMap<MapData, u32, TrackedTask>,
    held: BpfHashMap<MapData, u32, HeldTask>,
    counters: PerCpuArray<MapData, u64>,
    heartbeat: Array<MapData, u64>,
    audit_down: Array<MapData, u32>,
    agent_names: BpfHashMap<MapData, u32, AgentName>,
    grants: BpfHashMap<MapData, GrantKey, Grant>,
    exec_rules: BpfHashMap<MapData, InodeKey, ExecRule>,
    exec_fallback: BpfHashMap<MapData, u32, u32>,
    open_inodes: BpfHashMap<MapData, InodeKey, OpenRule>,
    open_paths: LpmTrie<MapData, [u8; RULE_PATH_MAX], OpenRule>,
    open_dirs: LpmTrie<MapData, [u8; RULE_PATH_MAX], u32>,
    open_names: LpmTrie<MapData, [u8; NAME_KEY_MAX], OpenRule>,
    open_suffixes: LpmTrie<MapData, [u8; NAME_KEY_MAX], OpenRule>,
    open_default: Array<MapData, OpenRule>,
}

/// A policy as the daemon enforces it: the parsed rules, the open rules it added, and what
/// the kernel was told.
struct ActivePolicy {
    policy: Policy,
    version: String,
    /// Open rules by kernel rule id (`OPEN_RULE_ID_BASE + index`).
    open_rules: Vec<OpenRuleSpec>,
    /// Binaries whose held execs the policy decides in userspace (argv-level rules).
    userspace_exec: Vec<InodeKey>,
    /// The path the policy named for each exec entry.
    exec_paths: Vec<(InodeKey, String)>,
    unresolved: Vec<(String, String)>,
    exec_entries: usize,
    /// Monitor rules name programs by glob or basename: every reported agent exec is
    /// judged in userspace for their would-be decisions (after the fact, never held).
    monitors_reported_execs: bool,
}

impl ActivePolicy {
    /// Stands in for the few microseconds between building the daemon and installing its
    /// first policy; the kernel maps are not touched by it.
    fn placeholder() -> Self {
        let policy = Policy::parse("version = 1\n", "startup").expect("the empty policy parses");
        Self {
            version: String::new(),
            policy,
            open_rules: Vec::new(),
            userspace_exec: Vec::new(),
            exec_paths: Vec::new(),
            unresolved: Vec::new(),
            exec_entries: 0,
            monitors_reported_execs: false,
        }
    }
}

struct Pending {
    view: PendingView,
    /// The held task (exec holds, read-open holds).
    pidfd: Option<Pidfd>,
    /// For an open refused now and pending: what an approval grants (the agent retries).
    grant: Option<GrantKey>,
    /// The access modes asked for.
    access: u32,
    /// The decision row that opened this request (its lifecycle rows follow it); `None`
    /// until it is committed.
    decision_seq: Option<u64>,
    /// That decision, the template of the one that closes the request.
    decision: DecisionAudit,
    /// When the daemon saw the hold.
    held_at: Instant,
    /// When nobody answered in time: `on_timeout` applies.
    deadline: Instant,
    /// The rule's (or the defaults') `timeout`, for messages.
    timeout: Duration,
    on_timeout: Action,
    /// The configured reviewers who may answer.
    reviewers: Vec<String>,
    /// What reviewers are shown (links stripped: they are the reviewers' secrets).
    notice: crate::approvals::Notice,
    /// Approvals needed before it runs (the rule's `min_approvals`).
    needed: u32,
    /// Reviewers who approved so far (quorum).
    approvals: Vec<String>,
    /// The most a reviewer may grant with an approval (the rule's `grant`).
    grant_offer: Option<crate::approvals::GrantOffer>,
    /// For an exec: what an approval with a grant lets through later.
    exec_grant: Option<ExecGrantKey>,
    /// When nobody answered by then, these (names or `@group`) are asked too.
    escalation: Option<(Instant, Vec<String>)>,
}

/// What an exec grant covers: this agent running this binary (with this argv, unless
/// the rule's grant scope is `binary`), and only while the binary is the very file that
/// was approved: replaced or rewritten, it is asked about again (scenario 13).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ExecGrantKey {
    agent: String,
    binary: String,
    argv: Option<Vec<String>>,
    file: procfs::FileIdentity,
}

/// An exec grant in force.
#[derive(Debug, Clone)]
struct ExecGrant {
    id: u64,
    key: ExecGrantKey,
    uses_left: u32,
    expires: Instant,
    expires_at_ms: u64,
    request: u64,
    by: String,
}

impl Pending {
    /// The request `create_ask` stored for `view`, held since `held_at`, its decision row
    /// committed as `seq`. Its notice is kept without the links (the reviewers' secrets).
    /// No task, grant or exec grant yet: the caller sets what applies.
    fn asked(
        view: PendingView,
        decision: DecisionAudit,
        seq: u64,
        asked: &review::Asked,
        rule: Option<&crate::policy::Rule>,
        held_at: Instant,
        (timeout, on_timeout): (Duration, Action),
    ) -> Self {
        let mut notice = asked.notice.clone();
        notice.links.iter_mut().for_each(|l| l.url.clear());
        Pending {
            view,
            pidfd: None,
            grant: None,
            access: 0,
            decision_seq: Some(seq),
            decision,
            held_at,
            deadline: held_at + timeout,
            timeout,
            on_timeout,
            reviewers: asked.reviewers.clone(),
            notice,
            needed: approvals_needed(rule),
            approvals: Vec::new(),
            grant_offer: asked.grant_offer,
            exec_grant: None,
            escalation: escalation_of(rule, held_at),
        }
    }
}

/// A closed request, kept so that a late answer is told why and recorded.
struct Closed {
    why: String,
    /// The `rejected` row a late answer writes (reviewer and detail filled in then).
    row: ApprovalAudit,
    /// The notice's one-line summary (for Slack's updated message).
    headline: String,
}

#[derive(Default)]
struct State {
    /// Agent names; the agent id is the index + 1.
    agents: Vec<String>,
    pending: BTreeMap<u64, Pending>,
    /// How recently closed requests ended (expired, cancelled, answered), so a late answer
    /// is told why it is refused. Bounded by [`CLOSED_KEPT`].
    closed: BTreeMap<u64, Closed>,
    events: VecDeque<ExecRecord>,
    next_seq: u64,
    /// What each agent last said it is doing (`interceptor context --rationale`).
    rationales: std::collections::HashMap<String, String>,
    /// Exec grants in force, by grant id.
    exec_grants: BTreeMap<u64, ExecGrant>,
    next_grant: u64,
    /// Pending opens whose request is being created (an agent's retry asks once).
    opening: Vec<GrantKey>,
}

/// The running daemon's shared state.
pub struct Daemon {
    backend: Backend,
    policy_origin: String,
    /// The file to re-read on reload (`None`: the built-in policy).
    policy_path: Option<PathBuf>,
    /// Rules from the command line, re-applied on every reload.
    cli_exec_rules: Vec<(Action, String)>,
    extra_open_rules: Vec<OpenRuleSpec>,
    /// The policy in force; replaced whole on reload.
    active: RwLock<Arc<ActivePolicy>>,
    /// The outcome of the last reload, for `status`.
    last_reload: Mutex<Option<String>>,
    scopes: Vec<String>,
    allow_userns: bool,
    pin_dir: PathBuf,
    kernel: Mutex<KernelMaps>,
    state: Mutex<State>,
    audit: AuditLog,
    audit_target: String,
    /// Why the audit log cannot be written, while it cannot.
    audit_failing: Mutex<Option<String>>,
    /// The loss counters last written to the log.
    recorded_losses: Mutex<BTreeMap<String, u64>>,
    metrics: Metrics,
    /// Where the HTTP listener listens, if it does.
    http_addr: Option<std::net::SocketAddr>,
    approvals: review::Approvals,
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

    // Resolve scopes before touching the kernel, so a bad one changes nothing.
    let mut scopes = Vec::new();
    for scope in &options.scopes {
        let scope_err = |message: String| DaemonError::Scope {
            scope: scope.to_string(),
            message,
        };
        validate_agent_name(scope.agent()).map_err(scope_err)?;
        let key = match scope {
            AgentScope::Uid { uid, .. } => ScopeKey::Uid(*uid),
            AgentScope::Cgroup { path, .. } => {
                ScopeKey::Cgroup(cgroup_id(path).map_err(scope_err)?)
            }
        };
        scopes.push((key, scope.agent()));
    }
    // Check the open rules before touching the kernel, so a bad one changes nothing.
    prepare_policy(&options.policy, &options.open_rules)?;
    // No reviewer may be an agent.
    let agent_uids: Vec<u32> = scopes
        .iter()
        .filter_map(|(k, _)| match k {
            ScopeKey::Uid(uid) => Some(*uid),
            ScopeKey::Cgroup(_) => None,
        })
        .collect();
    options
        .approvals
        .check_against_agents(&agent_uids)
        .map_err(|e| DaemonError::Approvals(e.to_string()))?;
    // A log that cannot be opened (corrupt, unreachable) stops the start: it is reported,
    // never recreated or skipped.
    let audit_target = options.audit.store.target.describe();
    let listener_http = match &options.listen {
        Some(addr) => Some(http::bind(addr, options.listen_remote).await?),
        None => None,
    };
    let audit = AuditLog::open(options.audit.clone())
        .await
        .map_err(|source| DaemonError::Audit {
            target: audit_target.clone(),
            source,
        })?;
    let approval_store = crate::approvals::store::ApprovalStore::open(&options.approvals_db)
        .await
        .map_err(|e| DaemonError::Approvals(e.to_string()))?;
    let config = KernelConfig {
        daemon_tgid: std::process::id(),
        scope_by_uid: scopes.iter().any(|(k, _)| matches!(k, ScopeKey::Uid(_))) as u32,
        scope_by_cgroup: scopes.iter().any(|(k, _)| matches!(k, ScopeKey::Cgroup(_))) as u32,
        deny_userns: !options.allow_userns as u32,
        heartbeat_timeout_ms: options.heartbeat_timeout_ms,
    };
    let loaded = loader::load(
        options.backend,
        config,
        &options.pin_dir,
        options.max_agent_processes,
    )?;
    let (mut ebpf, backend) = (loaded.ebpf, loaded.backend);
    crate::listener_guard::guard(&mut ebpf, listener_http.as_ref())?;
    if loaded.adopted_maps {
        info!(pin_dir = %options.pin_dir.display(), replaced_links = loaded.replaced_links,
              "took over from an earlier daemon: tracked agents, holds and counters carried over");
    }
    let mut kernel_log = match aya_log::EbpfLogger::init_with_logger(&mut ebpf, KernelLog) {
        Ok(logger) => Some(readable(logger)?),
        Err(e) => {
            warn!(error = %e, "kernel program logs are unavailable");
            None
        }
    };

    // Agent names survive in the kernel; scopes reuse an agent's id when it already has one.
    let mut agent_names: BpfHashMap<MapData, u32, AgentName> = take_map(&mut ebpf, "AGENT_NAMES")?;
    let mut agents = known_agents(&agent_names);
    let mut uid_scopes = Vec::new();
    let mut cgroup_scopes = Vec::new();
    for (key, agent) in &scopes {
        let agent_id = agent_id_for(&mut agents, agent);
        remember_agent(&mut agent_names, agent_id, agent)?;
        match key {
            ScopeKey::Uid(uid) => uid_scopes.push((*uid, agent_id)),
            ScopeKey::Cgroup(id) => cgroup_scopes.push((*id, agent_id)),
        }
    }

    let mut agent_uids: BpfHashMap<MapData, u32, u32> = take_map(&mut ebpf, "AGENT_UIDS")?;
    sync_map(&mut agent_uids, "AGENT_UIDS", uid_scopes)?;
    let mut agent_cgroups: BpfHashMap<MapData, u64, u32> = take_map(&mut ebpf, "AGENT_CGROUPS")?;
    sync_map(&mut agent_cgroups, "AGENT_CGROUPS", cgroup_scopes)?;
    for scope in &options.scopes {
        info!(%scope, "agent scope");
    }
    let ring: RingBuf<MapData> = take_map(&mut ebpf, "EVENTS")?;
    let daemon = Arc::new(Daemon {
        backend,
        policy_origin: options.policy_origin,
        policy_path: options.policy_path,
        cli_exec_rules: options.cli_exec_rules,
        extra_open_rules: options.open_rules,
        active: RwLock::new(Arc::new(ActivePolicy::placeholder())),
        last_reload: Mutex::new(None),
        scopes: options.scopes.iter().map(ToString::to_string).collect(),
        allow_userns: options.allow_userns,
        pin_dir: options.pin_dir.clone(),
        kernel: Mutex::new(KernelMaps {
            tracked: take_map(&mut ebpf, "TRACKED")?,
            held: take_map(&mut ebpf, "HELD")?,
            counters: take_map(&mut ebpf, "COUNTERS")?,
            heartbeat: take_map(&mut ebpf, "HEARTBEAT")?,
            audit_down: take_map(&mut ebpf, "AUDIT_DOWN")?,
            agent_names,
            grants: take_map(&mut ebpf, "GRANTS")?,
            exec_rules: take_map(&mut ebpf, "EXEC_RULES")?,
            exec_fallback: take_map(&mut ebpf, "EXEC_FALLBACK")?,
            open_inodes: take_map(&mut ebpf, "OPEN_INODES")?,
            open_paths: take_map(&mut ebpf, "OPEN_PATHS")?,
            open_dirs: take_map(&mut ebpf, "OPEN_DIRS")?,
            open_names: take_map(&mut ebpf, "OPEN_NAMES")?,
            open_suffixes: take_map(&mut ebpf, "OPEN_SUFFIXES")?,
            open_default: take_map(&mut ebpf, "OPEN_DEFAULT")?,
        }),
        state: Mutex::new(State {
            agents,
            next_grant: 1,
            ..State::default()
        }),
        audit,
        audit_target,
        audit_failing: Mutex::new(None),
        recorded_losses: Mutex::new(BTreeMap::new()),
        metrics: Metrics::new(),
        http_addr: listener_http.as_ref().and_then(|l| l.local_addr().ok()),
        approvals: review::Approvals::new(
            options.approvals,
            approval_store,
            listener_http.as_ref().and_then(|l| l.local_addr().ok()),
        ),
    });
    info!(approvals = %daemon.approvals.config.origin,
          reviewers = ?daemon.approvals.config.reviewers.iter().map(|r| &r.name).collect::<Vec<_>>(),
          channels = ?daemon.approvals.config.channels.iter().map(|c| format!("{} ({})", c.name, c.kind.as_str())).collect::<Vec<_>>(),
          links = ?daemon.approvals.base_url, "approvals");
    if daemon.approvals.base_url.is_none() && !daemon.approvals.config.channels.is_empty() {
        warn!(
            "no HTTP listener (--listen off) and no public_url: notifications carry no review links"
        );
    }

    let active = daemon.install_policy(options.policy)?;
    info!(
        backend = %backend,
        policy = %daemon.policy_origin,
        policy_version = %active.version,
        exec_rules = active.exec_entries,
        socket = %options.socket.display(),
        pin_dir = %options.pin_dir.display(),
        "interceptor daemon running"
    );
    for guarantee in backend.guarantees() {
        info!(backend = %backend, "{guarantee}");
    }
    // The kernel learns whether the log is writable from the start row's commit, then
    // from every commit after it.
    let started = daemon.lifecycle(DaemonStep::Start, None).await;
    daemon.set_audit_state(started.err().map(|e| e.to_string()));
    let audit_watch = tokio::spawn(daemon.clone().watch_audit());
    if let Some(listener) = listener_http {
        info!(addr = ?daemon.http_addr, "HTTP listener: /metrics (Prometheus), /healthz");
        let source: Arc<dyn http::Source> = Arc::new(HttpSource(daemon.clone()));
        tokio::spawn(async move {
            if let Err(e) = http::serve(listener, source).await {
                error!(error = %e, "the HTTP listener stopped");
            }
        });
    }
    daemon.restore_requests().await;
    daemon.readopt_holds();
    let notifier = options.notifier.as_ref();
    let notify = |what: &str, sent: std::io::Result<()>| {
        if let Err(e) = sent {
            warn!(error = %e, "could not tell systemd {what}");
        }
    };
    if let Some(n) = notifier {
        let status = format!(
            "enforcing with the {backend} backend, policy {}",
            active.version
        );
        notify("the daemon is ready", n.ready(&status));
        info!(watchdog = ?n.watchdog(), "told systemd the daemon is ready");
    }
    let reload = |why: &str| {
        if let Some(n) = notifier {
            notify("a reload began", n.reloading());
        }
        daemon.reload(why);
        if let Some(n) = notifier {
            let status = format!(
                "enforcing with the {backend} backend, policy {}",
                daemon.active().version
            );
            notify("the reload ended", n.ready(&status));
        }
    };

    let mut events = readable(ring)?;
    let mut heartbeat = tokio::time::interval(HEARTBEAT_PERIOD);
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut watch = tokio::time::interval(POLICY_WATCH_PERIOD);
    // Events nobody waits on do not wake the daemon (see the kernel's `submit_flags`).
    let mut drain = tokio::time::interval(EVENT_DRAIN_PERIOD);
    drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watched = daemon.policy_path.as_deref().and_then(file_stamp);
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
            _ = drain.tick() => {
                while let Some(item) = events.get_mut().next() {
                    daemon.on_kernel_event(&item);
                }
            }
            _ = heartbeat.tick() => {
                // systemd's watchdog hears from a loop that runs and a heartbeat that lands.
                if daemon.beat() && let Some(n) = notifier {
                    notify("the daemon is alive", n.alive());
                }
                daemon.record_losses();
            }
            _ = sighup.recv() => {
                watched = daemon.policy_path.as_deref().and_then(file_stamp);
                reload("SIGHUP");
            }
            _ = watch.tick() => {
                let now = daemon.policy_path.as_deref().and_then(file_stamp);
                if now != watched {
                    watched = now;
                    reload("the policy file changed");
                }
            }
            _ = sigterm.recv() => break Ok(()),
            _ = sigint.recv() => break Ok(()),
        }
    };
    if let Some(n) = notifier {
        notify("the daemon is stopping", n.stopping());
    }
    let _ = std::fs::remove_file(&options.socket);
    if let Err(e) = daemon.lifecycle(DaemonStep::Stop, None).await {
        error!(error = %e, "the daemon's stop was not recorded in the audit log");
    }
    // Every row is committed; a SQLite log is checkpointed into its file, so the file alone
    // (a backup, a copy) holds the whole log once the daemon has stopped. A write refused by
    // the closed store from here on is the stop, not a failing log: the kernel's
    // `AUDIT_DOWN` is no longer followed.
    audit_watch.abort();
    daemon.audit.store().close().await;
    let held = lock(&daemon.kernel).held.keys().count();
    info!(held, pin_dir = %options.pin_dir.display(),
          "interceptor daemon stopped; the kernel keeps enforcing: held tasks stay held and agent \
           operations that need the daemon are refused until it is back (`interceptor unload` ends enforcement)");
    drop(ebpf);
    result
}

/// A configured scope, resolved to what the kernel matches.
enum ScopeKey {
    Uid(u32),
    Cgroup(u64),
}

/// Makes a pinned map hold exactly `entries`: new and changed entries are written first,
/// then entries that are no longer wanted are deleted, so an entry that stays is never
/// missing for a moment.
fn sync_map<K, V>(
    map: &mut BpfHashMap<MapData, K, V>,
    name: &'static str,
    entries: Vec<(K, V)>,
) -> Result<(), DaemonError>
where
    K: aya::Pod + PartialEq,
    V: aya::Pod,
{
    let map_err = |source| DaemonError::Map { name, source };
    for (key, value) in &entries {
        map.insert(*key, *value, 0).map_err(map_err)?;
    }
    let stale: Vec<K> = map
        .keys()
        .filter_map(Result::ok)
        .filter(|k| !entries.iter().any(|(e, _)| e == k))
        .collect();
    for key in stale {
        map.remove(&key).map_err(map_err)?;
    }
    Ok(())
}

/// Compiles a policy and its open rules (the policy's plus `extra`) for the kernel.
fn prepare_policy(
    policy: &Policy,
    extra: &[OpenRuleSpec],
) -> Result<
    (
        crate::policy::CompiledPolicy,
        Vec<OpenRuleSpec>,
        open_rules::CompiledOpenRules,
    ),
    DaemonError,
> {
    let compiled = policy.compile();
    let mut open_specs = open_rules::policy_rules(policy, &compiled);
    open_specs.extend(extra.iter().cloned());
    let open_compiled =
        open_rules::compile(&open_specs, compiled.open_default).map_err(DaemonError::OpenRules)?;
    Ok((compiled, open_specs, open_compiled))
}

/// (modification time, size, inode) of a file: what the policy watcher compares.
fn file_stamp(path: &Path) -> Option<(std::time::SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

/// A pending request as reviewers see it: the record plus what /proc shows of the process.
fn pending_view(
    id: u64,
    record: &ExecRecord,
    argv: Vec<String>,
    rule: Option<String>,
    reason: Option<String>,
) -> PendingView {
    let pid = record.pid;
    let shown =
        |p: std::io::Result<PathBuf>| p.map(|p| p.display().to_string()).unwrap_or_default();
    PendingView {
        id,
        operation: if record.kind == "open" {
            "open"
        } else {
            "exec"
        }
        .into(),
        access: record.access.clone(),
        agent: record.agent.clone(),
        session: record.session.clone(),
        pid,
        // Open events carry no parent; /proc has it.
        ppid: if record.ppid != 0 {
            record.ppid
        } else {
            procfs::stat(pid).map_or(0, |s| s.ppid)
        },
        uid: record.uid,
        filename: record.filename.clone(),
        exe: shown(procfs::exe(pid)),
        mapped: record.mapped,
        parents: procfs::parent_chain(pid),
        argv,
        cwd: shown(procfs::cwd(pid)),
        env: Vec::new(),
        recent: Vec::new(),
        rule: rule.unwrap_or_default(),
        reason,
        held_at_ms: record.time_ms,
    }
}

/// What the policy needs to judge a held exec, read while the task is stopped.
fn exec_context(record: &ExecRecord, argv: &[String]) -> crate::policy::ExecContext {
    let pid = record.pid;
    let cwd = procfs::cwd(pid).ok();
    // The file that was executed (a script itself, not its interpreter), resolved; for a
    // mapped exec, the file the loader mapped.
    let binary = if record.mapped && !record.path.is_empty() {
        record.path.clone()
    } else {
        cwd.as_ref()
            .map(|cwd| cwd.join(&record.filename))
            .and_then(|p| std::fs::canonicalize(p).ok())
            .or_else(|| procfs::exe(pid).ok())
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| record.filename.clone())
    };
    // A script's argv starts with its interpreter (`/usr/bin/perl /usr/bin/pg_dump ARGS`):
    // the script is judged on its own arguments, as a program mapped by a loader is.
    let script =
        !record.mapped && procfs::exe(pid).is_ok_and(|exe| exe != std::path::Path::new(&binary));
    let argv = if record.mapped || script {
        loaded_program_argv(argv, &binary, cwd.as_deref())
    } else {
        argv.to_vec()
    };
    let parent = procfs::stat(pid)
        .ok()
        .and_then(|st| procfs::exe(st.ppid).ok());
    crate::policy::ExecContext {
        agent: Some(record.agent.clone()),
        uid: Some(record.uid),
        binary,
        argv,
        cwd: cwd.map(|p| p.display().to_string()),
        parent: parent.map(|p| p.display().to_string()),
        env_keys: procfs::env_keys(pid).ok(),
        home: None,
    }
}

/// The argv a program started by a loader (`ld.so [OPTIONS] /path/bin ARGS`) was given: the
/// loader's arguments from the one that names the mapped program on. When no argument names
/// it, the loader's whole argv is judged (more arguments can only match more rules).
fn loaded_program_argv(
    argv: &[String],
    binary: &str,
    cwd: Option<&std::path::Path>,
) -> Vec<String> {
    let names_binary = |arg: &String| {
        let candidate = match cwd {
            Some(cwd) => cwd.join(arg),
            None => PathBuf::from(arg),
        };
        std::fs::canonicalize(candidate).is_ok_and(|p| p == std::path::Path::new(binary))
    };
    match argv.iter().skip(1).position(names_binary) {
        Some(i) => argv[i + 1..].to_vec(),
        None => argv.to_vec(),
    }
}

/// The path an `OPEN_PATHS` or `OPEN_DIRS` key matches, and whether it is exact (its key
/// ends with the NUL) rather than a prefix.
fn trie_path(key: &LpmKey<[u8; RULE_PATH_MAX]>) -> (bool, String) {
    let bytes = (key.prefix_len() / 8) as usize;
    let data = key.data();
    let path = &data[..bytes.min(data.len())];
    match path.strip_suffix(&[0]) {
        Some(exact) => (true, String::from_utf8_lossy(exact).into_owned()),
        None => (false, String::from_utf8_lossy(path).into_owned()),
    }
}

/// Like [`sync_map`], for a trie: [`insert_trie`], then [`prune_trie`].
fn sync_trie<const N: usize, V: aya::Pod>(
    trie: &mut LpmTrie<MapData, [u8; N], V>,
    name: &'static str,
    entries: &[TrieEntry<N, V>],
) -> Result<(), DaemonError> {
    insert_trie(trie, name, entries)?;
    prune_trie(trie, name, entries)
}

/// Writes `entries` into a trie.
fn insert_trie<const N: usize, V: aya::Pod>(
    trie: &mut LpmTrie<MapData, [u8; N], V>,
    name: &'static str,
    entries: &[TrieEntry<N, V>],
) -> Result<(), DaemonError> {
    for (bits, key, value) in entries {
        trie.insert(&LpmKey::new(*bits, *key), *value, 0)
            .map_err(|source| DaemonError::Map { name, source })?;
    }
    Ok(())
}

/// Deletes every trie entry that is not one of `entries`.
fn prune_trie<const N: usize, V: aya::Pod>(
    trie: &mut LpmTrie<MapData, [u8; N], V>,
    name: &'static str,
    entries: &[TrieEntry<N, V>],
) -> Result<(), DaemonError> {
    let map_err = |source| DaemonError::Map { name, source };
    let stale: Vec<LpmKey<[u8; N]>> = trie
        .keys()
        .filter_map(Result::ok)
        .filter(|k| {
            !entries
                .iter()
                .any(|(bits, key, _)| *bits == k.prefix_len() && *key == k.data())
        })
        .collect();
    for key in stale {
        trie.remove(&key).map_err(map_err)?;
    }
    Ok(())
}

/// Agent names by id from the kernel's `AGENT_NAMES` (index = id - 1; gaps get a placeholder).
fn known_agents(names: &BpfHashMap<MapData, u32, AgentName>) -> Vec<String> {
    let mut agents = Vec::new();
    for (id, name) in names.iter().filter_map(Result::ok) {
        let index = id.saturating_sub(1) as usize;
        if agents.len() <= index {
            agents.resize_with(index + 1, String::new);
        }
        let len = (name.len as usize).min(AGENT_NAME_MAX);
        agents[index] = String::from_utf8_lossy(&name.name[..len]).into_owned();
    }
    for (i, agent) in agents.iter_mut().enumerate() {
        if agent.is_empty() {
            *agent = format!("agent#{}", i + 1);
        }
    }
    agents
}

fn remember_agent(
    names: &mut BpfHashMap<MapData, u32, AgentName>,
    agent_id: u32,
    agent: &str,
) -> Result<(), DaemonError> {
    let len = agent.len().min(AGENT_NAME_MAX);
    let mut name = AgentName {
        len: len as u32,
        name: [0; AGENT_NAME_MAX],
    };
    name.name[..len].copy_from_slice(&agent.as_bytes()[..len]);
    names
        .insert(agent_id, name, 0)
        .map_err(|source| DaemonError::Map {
            name: "AGENT_NAMES",
            source,
        })
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
                (Ok(request), Ok(peer)) => daemon.handle(request, peer).await,
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
    async fn handle(self: &Arc<Self>, request: Request, peer: UCred) -> Response {
        let result = match request {
            Request::Register { agent, session } => self.register(&agent, session.as_deref(), peer),
            Request::Status => Ok(Response::Status(Box::new(self.status()))),
            Request::Context { rationale } => self.set_context(&rationale, peer),
            Request::ListApprovals => self.authorize_reviewer(peer).map(|_| Response::Approvals {
                requests: self.pending_views(),
            }),
            Request::ShowApproval { id } => match self.authorize_reviewer(peer) {
                Ok(_) => self.show_approval(id).await,
                Err(e) => Err(e),
            },
            Request::Approve {
                id,
                grant_uses,
                grant_ttl_secs,
                comment,
            } => {
                let granted = grant_uses.is_some() || grant_ttl_secs.is_some();
                match self
                    .authorize_decision(id, peer)
                    .await
                    .and_then(|reviewer| {
                        GrantTerms::new(grant_uses, grant_ttl_secs).map(|g| (reviewer, g))
                    }) {
                    Ok((reviewer, grant)) => {
                        self.decide(
                            id,
                            Decision::Approved,
                            grant,
                            granted,
                            reviewer,
                            Via::cli(comment),
                        )
                        .await
                    }
                    Err(e) => Err(e),
                }
            }
            Request::Deny { id, comment } => match self.authorize_decision(id, peer).await {
                Ok(reviewer) => {
                    self.decide(
                        id,
                        Decision::Denied,
                        GrantTerms::default(),
                        false,
                        reviewer,
                        Via::cli(comment),
                    )
                    .await
                }
                Err(e) => Err(e),
            },
            Request::Events { limit } => self.authorize_reviewer(peer).map(|_| {
                let state = lock(&self.state);
                let limit = limit.unwrap_or(100).min(RECENT_EVENTS);
                let skip = state.events.len().saturating_sub(limit);
                Response::Events {
                    events: state.events.iter().skip(skip).cloned().collect(),
                }
            }),
            Request::ActivePolicy => self
                .authorize_reviewer(peer)
                .map(|_| Response::ActivePolicy(Box::new(self.active_policy_view()))),
            Request::ListGrants => self.authorize_reviewer(peer).map(|_| Response::Grants {
                grants: self.grant_views(),
            }),
            Request::RevokeGrant { id } => match self.authorize_reviewer(peer) {
                Ok(reviewer) => self.revoke_grant(&id, &reviewer).await,
                Err(e) => Err(e),
            },
        };
        result.unwrap_or_else(|message| Response::Error { message })
    }

    /// Tracks the caller (by its peer pid) as agent `agent`.
    fn register(
        &self,
        agent: &str,
        session: Option<&str>,
        peer: UCred,
    ) -> Result<Response, String> {
        validate_agent_name(agent)?;
        if let Some(session) = session {
            validate_session(agent, session)?;
        }
        let (pid, start_ticks) = peer_process(peer)?;
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
        // A session is its own agent id, so the kernel carries it to every descendant; the
        // policy still sees the agent's name (`agent_name`), and nothing in the kernel is
        // keyed by agent id but grants, which a session then scopes.
        let identity = identity(agent, session);
        let agent_id = agent_id_for(&mut lock(&self.state).agents, &identity);
        if let Err(e) = remember_agent(&mut lock(&self.kernel).agent_names, agent_id, &identity) {
            warn!(agent, error = %e, "agent name not kept in the kernel; a restarted daemon will not know it");
        }
        let entry = TrackedTask {
            start: start_ticks,
            agent_id,
            flags: tracked_flags::UNCONFIRMED,
        };
        lock(&self.kernel)
            .tracked
            .insert(pid, entry, 0)
            .map_err(|e| format!("tracking pid {pid}: {e}"))?;
        info!(
            pid,
            uid = peer.uid(),
            agent,
            session,
            agent_id,
            "agent registered"
        );
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

    /// The agent's identity: its name, and `@session` when it was launched in one.
    fn agent_identity(&self, agent_id: u32) -> String {
        let state = lock(&self.state);
        agent_id
            .checked_sub(1)
            .and_then(|i| state.agents.get(i as usize).cloned())
            .unwrap_or_else(|| format!("agent#{agent_id}"))
    }

    /// The agent's name (what policies select and events report) and the session it was
    /// launched in, if any.
    fn agent_of(&self, agent_id: u32) -> (String, Option<String>) {
        let identity = self.agent_identity(agent_id);
        match identity.split_once(SESSION_SEPARATOR) {
            Some((name, session)) => (name.to_string(), Some(session.to_string())),
            None => (identity, None),
        }
    }

    /// The agent's name alone.
    fn agent_name(&self, agent_id: u32) -> String {
        self.agent_of(agent_id).0
    }

    /// Applies a reviewer's decision. An approval is committed to the audit log before the
    /// task runs or the grant is installed; if it cannot be, nothing is applied and the
    /// request stays pending. A denial is applied first (refusing is always safe).
    ///
    /// `reviewer` must be one of the request's reviewers (the caller authenticated them);
    /// `granted`: the reviewer asked for a grant with `grant` terms (for an exec, within the
    /// rule's `grant` limits). With a quorum, an approval short of it is recorded and the
    /// operation keeps waiting; one denial closes the request.
    async fn decide(
        &self,
        id: u64,
        decision: Decision,
        grant: GrantTerms,
        granted: bool,
        reviewer: String,
        via: Via,
    ) -> Result<Response, String> {
        enum Taken {
            Whole(Box<Pending>),
            Vote {
                have: u32,
                need: u32,
                rows: Vec<NewEntry>,
            },
            Refused(String),
            Closed(String, Box<ApprovalAudit>),
            Unknown,
        }
        // Taken out under the lock: of two concurrent answers exactly one finds the request.
        let taken = {
            let mut state = lock(&self.state);
            match state.pending.get_mut(&id) {
                None => match state.closed.get(&id) {
                    Some(c) => Taken::Closed(c.why.clone(), Box::new(c.row.clone())),
                    None => Taken::Unknown,
                },
                Some(p) if !p.reviewers.contains(&reviewer) => Taken::Refused(format!(
                    "{reviewer} is not a reviewer of request {id} (who may answer: {})",
                    if p.reviewers.is_empty() {
                        "nobody configured".to_string()
                    } else {
                        p.reviewers.join(", ")
                    }
                )),
                Some(p)
                    if decision == Decision::Approved
                        && granted
                        && p.pidfd.is_some()
                        && p.grant_offer.is_none() =>
                {
                    Taken::Refused(format!(
                        "request {id}: rule {:?} allows approving once only, not a grant",
                        p.view.rule
                    ))
                }
                Some(p)
                    if decision == Decision::Approved
                        && granted
                        && p.grant_offer.is_some_and(|o| {
                            grant.uses > o.max_uses || grant.ttl.as_secs() > o.max_ttl_secs
                        }) =>
                {
                    let o = p.grant_offer.expect("checked");
                    Taken::Refused(format!(
                        "request {id}: a grant of {} uses for {} s exceeds the rule's limits ({} uses, {} s)",
                        grant.uses,
                        grant.ttl.as_secs(),
                        o.max_uses,
                        o.max_ttl_secs
                    ))
                }
                Some(p) if decision == Decision::Approved && p.approvals.contains(&reviewer) => {
                    Taken::Refused(format!(
                        "{reviewer} already approved request {id}; it needs approvals from {} reviewers",
                        p.needed
                    ))
                }
                Some(p)
                    if decision == Decision::Approved
                        && (p.approvals.len() as u32) + 1 < p.needed =>
                {
                    p.approvals.push(reviewer.clone());
                    let (have, need) = (p.approvals.len() as u32, p.needed);
                    let mut row =
                        approval_row(id, ApprovalStep::Approved, &p.decision, Some(&reviewer));
                    row.channel = Some(via.channel.into());
                    row.detail = Some(with_comment(
                        format!("approval {have} of {need}: the operation waits for the rest"),
                        via.comment.as_deref(),
                    ));
                    Taken::Vote {
                        have,
                        need,
                        rows: vec![follow(AuditEvent::Approval(row), p.decision_seq)],
                    }
                }
                Some(_) => {
                    let p = state
                        .pending
                        .remove(&id)
                        .expect("found under the same lock");
                    // Closed from this moment: a concurrent answer is told which one won,
                    // not that the request does not exist.
                    let verb = match decision {
                        Decision::Approved => "approval",
                        Decision::Denied => "denial",
                    };
                    let closed = Closed {
                        why: format!("{reviewer}'s {verb} is being applied"),
                        row: approval_row(id, ApprovalStep::Rejected, &p.decision, None),
                        headline: p.notice.headline(),
                    };
                    state.closed.insert(id, closed);
                    Taken::Whole(Box::new(p))
                }
            }
        };
        let pending = match taken {
            Taken::Whole(p) => *p,
            Taken::Vote { have, need, rows } => {
                if let Err(e) = self.append_all(rows).await {
                    error!(id, error = %e, "a partial approval was not recorded in the audit log");
                }
                if let Some(token) = via.token
                    && let Err(e) = self.approvals.store.use_token(id, &token, now_ms()).await
                {
                    warn!(id, error = %e, "a used review link could not be marked used");
                }
                info!(id, %reviewer, have, need, "approval recorded; waiting for the quorum");
                return Ok(Response::Voted { id, have, need });
            }
            Taken::Refused(why) => {
                self.record_refusal(Some(id), via.channel, Some(&reviewer), &why)
                    .await;
                return Err(why);
            }
            Taken::Closed(why, row) => {
                self.reject_late(*row, &why, &reviewer, &via).await;
                return Err(format!(
                    "request {id} is closed: {why}; this answer was not applied"
                ));
            }
            Taken::Unknown => {
                return Err(format!(
                    "no pending request {id} (see `interceptor approvals list`)"
                ));
            }
        };
        let pid = pending.view.pid;
        if let Some(pidfd) = &pending.pidfd
            && !pidfd.alive()
        {
            self.remember_closed(&pending, format!("its process {pid} exited"));
            return Err(format!("request {id}: the held process {pid} has exited"));
        }
        let (step, outcome) = match decision {
            Decision::Approved => (ApprovalStep::Approved, Outcome::Allowed),
            Decision::Denied => (ApprovalStep::Denied, Outcome::Denied),
        };
        let rows = self.answer_rows(&pending, step, outcome, &reviewer, &via);
        match decision {
            Decision::Approved => {
                if let Err(e) = self.append_all(rows).await {
                    error!(id, error = %e, "approval not applied: it could not be recorded in the audit log");
                    let mut state = lock(&self.state);
                    state.closed.remove(&id);
                    state.pending.insert(id, pending);
                    return Err(format!(
                        "request {id}: the approval could not be recorded in the audit log ({e}); \
                         it was NOT applied and the operation stays held"
                    ));
                }
                self.apply_approval(id, &pending, grant, &reviewer).await?;
                if granted && let Some(key) = &pending.exec_grant {
                    self.install_exec_grant(
                        id,
                        key.clone(),
                        grant,
                        &reviewer,
                        pending.decision_seq,
                    )
                    .await;
                }
                self.store_close(
                    id,
                    crate::approvals::store::RequestState::Approved,
                    &reviewer,
                    Some(&via),
                )
                .await;
            }
            Decision::Denied => {
                if let Some(pidfd) = &pending.pidfd {
                    pidfd
                        .signal(libc::SIGKILL)
                        .map_err(|e| format!("killing pid {pid}: {e}"))?;
                }
                // The open was refused when it was asked; nothing more to do for one.
                if let Err(e) = self.append_all(rows).await {
                    error!(id, error = %e, "a denial was applied but not recorded in the audit log");
                }
                self.store_close(
                    id,
                    crate::approvals::store::RequestState::Denied,
                    &reviewer,
                    Some(&via),
                )
                .await;
            }
        }
        self.remember_closed(
            &pending,
            format!(
                "{} by {reviewer}",
                match decision {
                    Decision::Approved => "approved",
                    Decision::Denied => "denied",
                }
            ),
        );
        info!(id, pid, agent = %pending.view.agent, ?decision, %reviewer, channel = via.channel,
              target = %pending.view.filename, "decision applied");
        Ok(Response::Decided { id, decision, pid })
    }

    /// Resumes the held task, or installs the grant a pending open asked for.
    async fn apply_approval(
        &self,
        id: u64,
        pending: &Pending,
        grant: GrantTerms,
        reviewer: &str,
    ) -> Result<(), String> {
        if let Some(pidfd) = &pending.pidfd {
            return self.resume(pidfd);
        }
        let key = pending
            .grant
            .ok_or_else(|| format!("request {id} has nothing to grant"))?;
        let value = Grant {
            expires_boot_ns: loader::boottime_ns().saturating_add(grant.ttl.as_nanos() as u64),
            uses_left: grant.uses,
            access: pending.access,
        };
        lock(&self.kernel)
            .grants
            .insert(key, value, 0)
            .map_err(|e| format!("installing the grant: {e}"))?;
        info!(id, agent = %pending.view.agent, path = %pending.view.filename, uses = grant.uses,
              ttl_secs = grant.ttl.as_secs(), "grant installed: the agent's retry will succeed");
        let row = AuditEvent::Grant(GrantAudit {
            step: GrantStep::Installed,
            agent: pending.view.agent.clone(),
            target: pending.view.filename.clone(),
            uses_left: Some(grant.uses),
            expires_at_ms: Some(now_ms().saturating_add(grant.ttl.as_millis() as u64)),
            request: Some(id),
            by: Some(reviewer.to_string()),
        });
        if let Err(e) = self
            .append_all(vec![follow(row, pending.decision_seq)])
            .await
        {
            error!(id, error = %e, "an installed grant was not recorded in the audit log");
        }
        Ok(())
    }

    /// The approval step and the closing decision of a request answered by `reviewer`.
    fn answer_rows(
        &self,
        pending: &Pending,
        step: ApprovalStep,
        outcome: Outcome,
        reviewer: &str,
        via: &Via,
    ) -> Vec<NewEntry> {
        let mut decision = pending.decision.clone();
        decision.outcome = outcome;
        decision.decided_by = DecidedBy::Reviewer(reviewer.to_string());
        decision.latency_us = Some(pending.held_at.elapsed().as_micros() as u64);
        decision.recent = Vec::new();
        let mut row = approval_row(pending.view.id, step, &pending.decision, Some(reviewer));
        row.channel = Some(via.channel.into());
        let mut others = pending.approvals.clone();
        let quorum = (pending.needed > 1 && step == ApprovalStep::Approved).then(|| {
            others.push(reviewer.to_string());
            format!(
                "quorum of {} reached: {}",
                pending.needed,
                others.join(", ")
            )
        });
        row.detail = match (quorum, via.comment.as_deref()) {
            (Some(q), comment) => Some(with_comment(q, comment)),
            (None, Some(c)) => Some(with_comment(String::new(), Some(c))),
            (None, None) => None,
        };
        vec![
            follow(AuditEvent::Approval(row), pending.decision_seq),
            follow(AuditEvent::Decision(decision), pending.decision_seq),
        ]
    }

    /// Lets a held task run: out of `HELD` first (the guard refuses SIGCONT while it is
    /// there), then SIGCONT through its pidfd.
    fn resume(&self, pidfd: &Pidfd) -> Result<(), String> {
        let pid = pidfd.pid;
        if let Err(e) = lock(&self.kernel).held.remove(&pid) {
            warn!(pid, error = %e, "held task was not in HELD");
        }
        pidfd
            .signal(libc::SIGCONT)
            .map_err(|e| format!("resuming pid {pid}: {e}"))
    }

    /// Replaces the kernel's cut argv in a recorded event with the whole argv.
    fn complete_record(&self, seq: u64, argv: &[String]) {
        let mut state = lock(&self.state);
        if let Some(record) = state.events.iter_mut().rev().find(|r| r.seq == seq) {
            record.argv = argv.to_vec();
            record.argv_truncated = false;
        }
    }

    fn pending_views(&self) -> Vec<PendingView> {
        // Requests whose task is gone are closed (and recorded) by their watcher.
        lock(&self.state)
            .pending
            .values()
            .filter(|p| p.pidfd.as_ref().is_none_or(Pidfd::alive))
            .map(|p| p.view.clone())
            .collect()
    }

    /// Watches one pending request until it is closed: cancels it when its task goes
    /// away, and applies `on_timeout` at its deadline.
    async fn watch_request(self: Arc<Self>, id: u64) {
        loop {
            let (deadline, alive, escalate_at) = {
                let state = lock(&self.state);
                let Some(p) = state.pending.get(&id) else {
                    return;
                };
                (
                    p.deadline,
                    p.pidfd.as_ref().is_none_or(Pidfd::alive),
                    p.escalation.as_ref().map(|(at, _)| *at),
                )
            };
            if !alive {
                self.cancel(id).await;
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                self.expire(id).await;
                return;
            }
            if let Some(at) = escalate_at
                && now >= at
            {
                self.escalate(id).await;
                continue;
            }
            let next = escalate_at.map_or(deadline, |at| at.min(deadline));
            tokio::time::sleep((next - now).min(REQUEST_WATCH_PERIOD)).await;
        }
    }

    /// Nobody answered in time: the request's `on_timeout` applies (deny kills the held
    /// task; allow resumes it, recorded first). Late answers are refused as expired.
    async fn expire(&self, id: u64) {
        let Some(pending) = lock(&self.state).pending.remove(&id) else {
            return;
        };
        let pid = pending.view.pid;
        let allow = matches!(pending.on_timeout, Action::Allow | Action::Audit);
        let why = format!(
            "expired: nobody answered within {}; on_timeout = {} applied",
            humantime::format_duration(pending.timeout),
            pending.on_timeout
        );
        self.remember_closed(&pending, why.clone());
        let mut decision = pending.decision.clone();
        decision.outcome = if allow {
            Outcome::Allowed
        } else {
            Outcome::Denied
        };
        decision.decided_by = DecidedBy::Timeout;
        decision.latency_us = Some(pending.held_at.elapsed().as_micros() as u64);
        decision.recent = Vec::new();
        decision.reason = format!("{}; {why}", decision.reason);
        let mut step = approval_row(id, ApprovalStep::Expired, &pending.decision, None);
        step.detail = Some(why.clone());
        let rows = vec![
            follow(AuditEvent::Approval(step), pending.decision_seq),
            follow(AuditEvent::Decision(decision), pending.decision_seq),
        ];
        if allow {
            // Committed before the task runs; unrecordable means it does not run.
            if let Err(e) = self.append_all(rows).await {
                error!(id, pid, error = %e, "killing a request whose on_timeout allows: it could not be recorded (fail closed)");
                if let Some(pidfd) = &pending.pidfd {
                    let _ = pidfd.signal(libc::SIGKILL);
                }
                return;
            }
            let applied = match &pending.pidfd {
                Some(pidfd) => self.resume(pidfd),
                None => {
                    self.apply_approval(id, &pending, GrantTerms::default(), "timeout")
                        .await
                }
            };
            if let Err(e) = applied {
                warn!(id, pid, error = %e, "could not apply on_timeout = allow");
            }
        } else {
            if let Some(pidfd) = &pending.pidfd
                && let Err(e) = pidfd.signal(libc::SIGKILL)
            {
                warn!(id, pid, error = %e, "killing an expired request's task");
            }
            if let Err(e) = self.append_all(rows).await {
                error!(id, error = %e, "an expired request was applied but not recorded in the audit log");
            }
        }
        self.store_close(
            id,
            crate::approvals::store::RequestState::Expired,
            "timeout",
            None,
        )
        .await;
        warn!(id, pid, agent = %pending.view.agent, target = %pending.view.filename, "request {why}");
    }

    /// The held task went away before an answer (killed by someone, or it exited).
    async fn cancel(&self, id: u64) {
        let Some(pending) = lock(&self.state).pending.remove(&id) else {
            return;
        };
        let why = format!("cancelled: the held process {} went away", pending.view.pid);
        self.remember_closed(&pending, why.clone());
        if let Some(pidfd) = &pending.pidfd {
            let _ = lock(&self.kernel).held.remove(&pidfd.pid);
        }
        let mut step = approval_row(id, ApprovalStep::Cancelled, &pending.decision, None);
        step.detail = Some(why.clone());
        if let Err(e) = self
            .append_all(vec![follow(
                AuditEvent::Approval(step),
                pending.decision_seq,
            )])
            .await
        {
            error!(id, error = %e, "a cancelled request was not recorded in the audit log");
        }
        self.store_close(
            id,
            crate::approvals::store::RequestState::Cancelled,
            "daemon",
            None,
        )
        .await;
        info!(id, agent = %pending.view.agent, "request {why}");
    }

    /// Records an answer that came after the request closed.
    async fn reject_late(&self, mut row: ApprovalAudit, why: &str, reviewer: &str, via: &Via) {
        let id = row.request;
        row.by = Some(reviewer.to_string());
        row.channel = Some(via.channel.into());
        row.detail = Some(format!(
            "late answer refused: the request is closed ({why})"
        ));
        let row = AuditEvent::Approval(row);
        if let Err(e) = self.append_all(vec![NewEntry::now(row)]).await {
            error!(id, error = %e, "a refused late answer was not recorded in the audit log");
        }
    }

    fn remember_closed(&self, pending: &Pending, why: String) {
        let id = pending.view.id;
        let row = approval_row(id, ApprovalStep::Rejected, &pending.decision, None);
        let headline = pending.notice.headline();
        let mut state = lock(&self.state);
        state.closed.insert(id, Closed { why, row, headline });
        while state.closed.len() > CLOSED_KEPT {
            state.closed.pop_first();
        }
    }

    /// The kernel's counters by name.
    fn status_counters(&self) -> Vec<(String, u64)> {
        let kernel = lock(&self.kernel);
        COUNTER_NAMES
            .iter()
            .map(|&(index, name)| {
                let total = kernel.counters.get(&index, 0).map_or(0, |v| v.iter().sum());
                (name.to_string(), total)
            })
            .collect()
    }

    fn status(&self) -> Status {
        let counters = self.status_counters();
        let stats = self.audit.stats();
        let audit = AuditStatus {
            target: self.audit_target.clone(),
            committed: stats.committed,
            lost: stats.lost + stats.dropped,
            failing: lock(&self.audit_failing).clone(),
        };
        let kernel = lock(&self.kernel);
        Status {
            backend: self.backend.name().into(),
            guarantees: self.backend.guarantees(),
            daemon_pid: std::process::id(),
            pin_dir: self.pin_dir.display().to_string(),
            policy: self.policy_origin.clone(),
            unresolved_rules: self.active().unresolved.clone(),
            policy_version: self.active().version.clone(),
            last_reload: lock(&self.last_reload).clone(),
            agent_scopes: self.scopes.clone(),
            userns_allowed: self.allow_userns,
            tracked_processes: kernel
                .tracked
                .keys()
                .filter(|k| k.as_ref().is_ok_and(|pid| *pid < RESERVED_KEY_BASE))
                .count(),
            pending_approvals: lock(&self.state).pending.len(),
            counters,
            audit,
            http: self.http_addr.map(|a| a.to_string()),
        }
    }

    fn on_kernel_event(self: &Arc<Self>, bytes: &[u8]) {
        let Some(event) = decode_event(bytes) else {
            return self.undecodable(bytes);
        };
        let (record, start_boottime, open) = match event {
            KernelEvent::Exec(event) => (self.record(&event), event.start_boottime, None),
            KernelEvent::Open(event) => {
                (self.open_record(&event), event.start_boottime, Some(event))
            }
            KernelEvent::ConnectRefused(event) => return self.connect_refused(&event),
        };
        self.metrics.event(match record.kind.as_str() {
            "open" => metrics::EventKind::Open,
            "exec_denied" => metrics::EventKind::ExecDenied,
            _ => metrics::EventKind::Exec,
        });
        let held = record.held;
        let what = record.kind.as_str();
        if record.denied {
            warn!(pid = record.pid, agent = %record.agent, target = %record.filename, rule = ?record.rule,
                  argv = ?record.argv, access = ?record.access, pending = record.pending,
                  daemon_down = record.daemon_down, "{what} denied");
        } else if held {
            info!(pid = record.pid, agent = %record.agent, target = %record.filename, rule = ?record.rule,
                  "{what} held");
        } else {
            info!(pid = record.pid, agent = %record.agent, target = %record.filename, argv = ?record.argv,
                  access = ?record.access, granted = record.granted, "{what}");
        }
        self.observe(&record);
        {
            let mut state = lock(&self.state);
            if state.events.len() == RECENT_EVENTS {
                state.events.pop_front();
            }
            state.events.push_back(record.clone());
        }
        if held {
            let daemon = self.clone();
            tokio::spawn(async move { daemon.adopt_hold(record, start_boottime).await });
        } else if let Some(ev) = open.filter(|ev| ev.flags & exec_flags::PENDING != 0) {
            self.pend_open(record, &ev);
        }
    }

    fn undecodable(&self, bytes: &[u8]) {
        error!(len = bytes.len(), kind = ?bytes.get(..4), "undecodable kernel event dropped");
    }

    /// An agent's connect to the approval listener, refused in the kernel: logged and
    /// audited (the refusal itself never waits for the daemon).
    fn connect_refused(&self, ev: &interceptor_common::ConnectEvent) {
        let (agent, session) = self.agent_of(ev.agent_id);
        let process = ProcessInfo {
            agent,
            session,
            pid: ev.tgid,
            uid: ev.uid,
            binary: procfs::exe(ev.tgid)
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            argv: procfs::cmdline(ev.tgid).unwrap_or_default(),
            ..ProcessInfo::default()
        };
        let row = crate::listener_guard::refused_row(ev, process);
        if let AuditEvent::Guard(g) = &row {
            warn!(pid = ev.tgid, agent = %g.process.agent, target = %g.target, "{}", g.detail);
        }
        if let Err(e) = self.audit.try_record(row) {
            debug!(error = %e, pid = ev.tgid, "audit row not queued (counted as dropped)");
        }
    }

    fn open_record(&self, ev: &OpenEvent) -> ExecRecord {
        let seq = self.next_seq();
        let rule = self.rule_name(ev.rule_id, ev.flags);
        open_record(ev, seq, self.agent_of(ev.agent_id), rule)
    }

    /// An open refused now with a pending request: an approval installs a grant.
    fn pend_open(self: &Arc<Self>, record: ExecRecord, ev: &OpenEvent) {
        let grant = GrantKey {
            agent_id: ev.agent_id,
            _pad: 0,
            dev: ev.dev,
            ino: ev.ino,
        };
        let argv = procfs::cmdline(record.pid).unwrap_or_default();
        let mut decision = self.held_decision(&record, &argv);
        {
            let mut state = lock(&self.state);
            // An agent that retries before anyone answers asks once.
            if state.opening.contains(&grant)
                || state
                    .pending
                    .values()
                    .any(|p| p.grant == Some(grant) && p.access & ev.access == ev.access)
            {
                return;
            }
            state.opening.push(grant);
        }
        let mut view = pending_view(
            0,
            &record,
            argv,
            record.rule.clone(),
            self.rule_reason(ev.rule_id),
        );
        decision.outcome = Outcome::Denied;
        decision.reason = format!(
            "{}; refused until a reviewer approves, then the agent's retry is granted",
            view.reason
                .as_deref()
                .unwrap_or("a rule asks before this write")
        );
        view.env = decision.process.env.clone();
        view.recent = decision.recent.clone();
        let access = ev.access;
        let daemon = self.clone();
        // Nothing runs meanwhile (the open was refused); an unrecordable request is dropped.
        tokio::spawn(async move {
            let done = |daemon: &Daemon| lock(&daemon.state).opening.retain(|g| *g != grant);
            let active = daemon.active();
            let rule = rule_name_rule(&active.policy, view.rule.as_str());
            let (timeout, on_timeout) = ask_terms(&active.policy, rule);
            let start_ticks = procfs::stat(view.pid).map_or(0, |s| s.start_ticks);
            let asked = match daemon
                .create_ask(review::NewAsk {
                    view: &view,
                    decision: &decision,
                    rule,
                    start_ticks,
                    timeout,
                    on_timeout,
                })
                .await
            {
                Ok(asked) => asked,
                Err(e) => {
                    error!(error = %e, "dropping a pending open: its request could not be stored");
                    done(&daemon);
                    return;
                }
            };
            let id = asked.id;
            view.id = id;
            decision.request = Some(id);
            let seq = match daemon
                .open_request(&decision, asked.reviewers.clone())
                .await
            {
                Ok(seq) => seq,
                Err(e) => {
                    error!(id, error = %e, "dropping a pending open: its request could not be recorded");
                    daemon
                        .store_close(
                            id,
                            crate::approvals::store::RequestState::Cancelled,
                            "daemon",
                            None,
                        )
                        .await;
                    done(&daemon);
                    return;
                }
            };
            info!(id, pid = view.pid, agent = %view.agent, path = %view.filename, access = ?view.access,
                  "open refused until approved: `interceptor approvals approve {id}` grants it, then the agent retries");
            let mut pending = Pending::asked(
                view,
                decision,
                seq,
                &asked,
                rule,
                Instant::now(),
                (timeout, on_timeout),
            );
            pending.grant = Some(grant);
            pending.access = access;
            daemon.start_request(id, pending, asked.notice);
            // Pending from here on; until now `opening` kept retries from asking again.
            done(&daemon);
        });
    }

    /// The position of the next record in the event stream.
    fn next_seq(&self) -> u64 {
        let mut state = lock(&self.state);
        state.next_seq += 1;
        state.next_seq
    }

    /// The name of the rule behind a kernel decision.
    fn rule_name(&self, rule_id: u32, flags: u32) -> Option<String> {
        let active = self.active();
        rule_name_in(&active.policy, &active.open_rules, rule_id, flags)
    }

    /// The reason shown to reviewers for a rule.
    fn rule_reason(&self, rule_id: u32) -> Option<String> {
        let active = self.active();
        if rule_id >= OPEN_RULE_ID_BASE {
            return active
                .open_rules
                .get((rule_id - OPEN_RULE_ID_BASE) as usize)
                .and_then(|r| r.reason.clone());
        }
        active.policy.rule(rule_id).and_then(|r| r.reason.clone())
    }

    fn record(&self, ev: &ExecEvent) -> ExecRecord {
        let seq = self.next_seq();
        exec_record(ev, seq, self.agent_of(ev.agent_id), &self.active().policy)
    }

    /// Turns a held exec into a pending request once the task is stopped.
    async fn adopt_hold(self: Arc<Self>, record: ExecRecord, start_boottime: u64) {
        let pid = record.pid;
        if lock(&self.state)
            .pending
            .values()
            .any(|p| p.view.pid == pid && p.pidfd.is_some())
        {
            // Both the kernel's event and the HELD map (on re-adoption) name this hold.
            return;
        }
        let pidfd = match Pidfd::open(pid, procfs::ticks_of_boottime(start_boottime)) {
            Ok(pidfd) => pidfd,
            Err(e) => {
                info!(pid, error = %e, "held process is gone before it could be reviewed");
                return;
            }
        };
        let started = Instant::now();
        loop {
            match procfs::stat(pid) {
                Ok(st) if st.state == 'T' => break,
                // The stop lands microseconds after the event on real hardware: spin briefly
                // (other tasks still run), then poll gently.
                Ok(_) if started.elapsed() < Duration::from_millis(2) => {
                    tokio::task::yield_now().await
                }
                Ok(_) if started.elapsed() < STOP_WAIT => {
                    tokio::time::sleep(Duration::from_millis(1)).await
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
        let argv = procfs::cmdline(pid).unwrap_or_else(|_| record.argv.clone());
        let active = self.active();
        let mut rule_name = record.rule.clone();
        let mut reason = self.rule_reason_by_name(record.rule.as_deref());
        let policy_decides = record.kind != "open"
            && !record.unlinked_binary
            && (record.userspace_decides
                || active.userspace_exec.contains(&InodeKey {
                    dev: record.dev,
                    ino: record.ino,
                }));
        let mut decision = self.held_decision(&record, &argv);
        let rule = (record.rule.as_deref())
            .and_then(|name| active.policy.rule_named(name))
            .map(|(_, r)| r);
        let (mut timeout, mut on_timeout) = ask_terms(&active.policy, rule);
        if policy_decides {
            if record.userspace_decides {
                self.complete_record(record.seq, &argv);
            }
            let verdict = active.policy.evaluate_exec(&exec_context(&record, &argv));
            decision.matched_rules = verdict.matched.iter().map(|m| m.name.clone()).collect();
            decision.winner = verdict.winner.as_ref().map(|w| w.name.clone());
            decision.action = verdict.action;
            decision.reason = verdict.reason.clone();
            decision.controls = verdict.controls.clone();
            decision.decided_by = DecidedBy::Policy;
            decision.latency_us = Some(started.elapsed().as_micros() as u64);
            // Shadow mode: what a monitor rule would have done, beside what was enforced.
            let shadow = verdict.shadow.as_ref().map(|sh| {
                NewEntry::now(AuditEvent::Decision(journal::shadow_decision(
                    &decision, sh,
                )))
            });
            match verdict.action {
                Action::Allow | Action::Audit => {
                    decision.outcome = Outcome::Allowed;
                    // Committed before the task runs; unrecordable means it does not run.
                    let rows = std::iter::once(NewEntry::now(AuditEvent::Decision(decision)))
                        .chain(shadow)
                        .collect();
                    let commit_started = Instant::now();
                    if let Err(e) = self.append_all(rows).await {
                        error!(pid, error = %e, "killing an exec the policy allows: the decision could not be recorded (fail closed)");
                        let _ = pidfd.signal(libc::SIGKILL);
                        return;
                    }
                    // The audit commit's share of the latency, for `cargo xtask bench`.
                    let commit_us = commit_started.elapsed().as_micros() as u64;
                    match self.resume(&pidfd) {
                        Ok(()) => {
                            info!(pid, agent = %record.agent, rule = ?verdict.winner.map(|w| w.name), latency_us = started.elapsed().as_micros() as u64, commit_us, "exec allowed by policy in userspace")
                        }
                        Err(e) => {
                            warn!(pid, error = %e, "could not resume an exec the policy allows")
                        }
                    }
                    return;
                }
                Action::Deny => {
                    let _ = pidfd.signal(libc::SIGKILL);
                    warn!(pid, agent = %record.agent, rule = ?decision.winner, argv = ?argv, latency_us = decision.latency_us, "exec denied by policy in userspace (killed before its first instruction)");
                    decision.outcome = Outcome::Denied;
                    if let Err(e) = self
                        .append_all(vec![NewEntry::now(AuditEvent::Decision(decision))])
                        .await
                    {
                        error!(pid, error = %e, "a denial was applied but not recorded in the audit log");
                    }
                    return;
                }
                Action::Ask => {
                    rule_name = decision.winner.clone();
                    reason = Some(verdict.reason.clone());
                    timeout = Duration::from_secs(verdict.timeout_secs);
                    on_timeout = verdict.on_timeout;
                }
            }
        }
        let start_ticks = procfs::ticks_of_boottime(start_boottime);
        let mut view = pending_view(0, &record, argv, rule_name, reason);
        view.env = decision.process.env.clone();
        view.recent = decision.recent.clone();
        // A grant from an earlier approval lets the same exec through without asking.
        if !record.unlinked_binary
            && self
                .use_exec_grant(&view, &mut decision, &pidfd, started)
                .await
        {
            return;
        }
        // An earlier daemon's request for this very task carries on: same id, deadline
        // and links.
        if let Some(stored) = self.take_restored(pid, start_ticks) {
            self.readopt_request(stored, view, decision, pidfd, started);
            return;
        }
        let rule = rule_name_rule(&active.policy, view.rule.as_str());
        let asked = match self
            .create_ask(review::NewAsk {
                view: &view,
                decision: &decision,
                rule,
                start_ticks,
                timeout,
                on_timeout,
            })
            .await
        {
            Ok(asked) => asked,
            Err(e) => {
                error!(pid, error = %e, "killing a held task: its approval request could not be stored (fail closed)");
                let _ = pidfd.signal(libc::SIGKILL);
                return;
            }
        };
        let id = asked.id;
        view.id = id;
        decision.request = Some(id);
        // The request is on disk before anyone is asked; unrecordable means it does not run.
        let decision_seq = match self.open_request(&decision, asked.reviewers.clone()).await {
            Ok(seq) => seq,
            Err(e) => {
                error!(pid, error = %e, "killing a held task: its approval request could not be recorded (fail closed)");
                let _ = pidfd.signal(libc::SIGKILL);
                self.store_close(
                    id,
                    crate::approvals::store::RequestState::Denied,
                    "daemon",
                    None,
                )
                .await;
                return;
            }
        };
        info!(id, pid, agent = %view.agent, binary = %view.filename, argv = ?view.argv,
              timeout_secs = timeout.as_secs(), %on_timeout, reviewers = ?asked.reviewers,
              "waiting for approval: `interceptor approvals approve {id}` or `interceptor approvals deny {id}`");
        let exec_grant = exec_grant_key(&view, rule);
        let mut pending = Pending::asked(
            view,
            decision,
            decision_seq,
            &asked,
            rule,
            started,
            (timeout, on_timeout),
        );
        pending.pidfd = Some(pidfd);
        pending.exec_grant = exec_grant;
        self.start_request(id, pending, asked.notice);
    }

    /// A request from here on: pending, watched (deadline, escalation, task gone), and
    /// sent to its reviewers (`notice`, with their links).
    fn start_request(
        self: &Arc<Self>,
        id: u64,
        pending: Pending,
        notice: crate::approvals::Notice,
    ) {
        let (decision, seq) = (pending.decision.clone(), pending.decision_seq);
        lock(&self.state).pending.insert(id, pending);
        tokio::spawn(self.clone().watch_request(id));
        self.notify(notice, decision, seq);
    }

    fn rule_reason_by_name(&self, name: Option<&str>) -> Option<String> {
        let name = name?;
        let active = self.active();
        let policy = active
            .policy
            .rules
            .iter()
            .find(|r| r.name == name)
            .and_then(|r| r.reason.clone());
        policy.or_else(|| {
            active
                .open_rules
                .iter()
                .find(|r| r.name == name)
                .and_then(|r| r.reason.clone())
        })
    }

    /// Queues the rows of a kernel event: its observation and, if the kernel decided it
    /// alone, the decision. Never waits: a full queue drops the rows and counts them.
    fn observe(&self, record: &ExecRecord) {
        let active = self.active();
        let mut rows = vec![journal::observation(record)];
        if let Some(decision) = journal::kernel_decision(record, &active.policy) {
            self.count_decision(&decision);
            rows.push(AuditEvent::Decision(decision));
        } else if active.monitors_reported_execs
            && record.kind == "exec"
            && !record.held
            && !record.denied
        {
            let verdict = active
                .policy
                .evaluate_exec(&exec_context(record, &record.argv));
            if let Some(shadow) = journal::reported_exec_shadow(record, &active.policy, &verdict) {
                rows.push(AuditEvent::Decision(shadow));
            }
        }
        for row in rows {
            if let Err(e) = self.audit.try_record(row) {
                debug!(error = %e, seq = record.seq, "audit row not queued (counted as dropped)");
            }
        }
    }

    /// A held operation's decision, before anyone took it: the process as /proc shows it
    /// while it is stopped (whole argv, cwd, redacted environment, ancestors), what the
    /// agent did just before, and the kernel rule that held it.
    fn held_decision(&self, record: &ExecRecord, argv: &[String]) -> DecisionAudit {
        let pid = record.pid;
        let active = self.active();
        let rule = record
            .rule
            .as_deref()
            .and_then(|name| active.policy.rule_named(name));
        let process = ProcessInfo {
            argv: argv.to_vec(),
            binary: procfs::exe(pid)
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            cwd: procfs::cwd(pid).ok().map(|p| p.display().to_string()),
            env: journal::redact_env(&procfs::environ(pid).unwrap_or_default()),
            parents: journal::parent_lines(&procfs::parent_chain(pid)),
            ..journal::process_info(record)
        };
        let recent =
            journal::recent_activity(&lock(&self.state).events, record.agent_id, record.seq);
        DecisionAudit {
            operation: journal::operation_of(record),
            process,
            files: journal::files_of(record),
            access: record.access.clone(),
            matched_rules: record.rule.iter().cloned().collect(),
            winner: record.rule.clone(),
            action: Action::Ask,
            outcome: Outcome::Held,
            reason: self
                .rule_reason_by_name(record.rule.as_deref())
                .unwrap_or_else(|| "held for a reviewer".into()),
            policy_version: active.version.clone(),
            controls: rule.map(|(_, r)| r.controls.clone()).unwrap_or_default(),
            decided_by: DecidedBy::Kernel,
            latency_us: None,
            request: None,
            monitor: false,
            recent,
        }
    }

    /// Commits the decision that holds an operation and its `requested` approval row;
    /// returns the decision's seq (the request's lifecycle rows point to it).
    async fn open_request(
        &self,
        decision: &DecisionAudit,
        reviewers: Vec<String>,
    ) -> Result<u64, AuditError> {
        let started = Instant::now();
        self.count_decision(decision);
        let point = self
            .append(NewEntry::now(AuditEvent::Decision(decision.clone())))
            .await?;
        let mut requested = approval_row(
            decision.request.unwrap_or_default(),
            ApprovalStep::Requested,
            decision,
            None,
        );
        requested.reviewers = reviewers;
        requested.channel = Some("cli".into());
        self.append(NewEntry::now(AuditEvent::Approval(requested)).follows(point.seq))
            .await?;
        debug!(
            seq = point.seq,
            elapsed_us = started.elapsed().as_micros() as u64,
            "approval request recorded"
        );
        Ok(point.seq)
    }

    /// Commits rows in order; the first failure stops and is returned.
    async fn append_all(&self, rows: Vec<NewEntry>) -> Result<(), AuditError> {
        for row in rows {
            if let AuditEvent::Decision(d) = &row.event {
                self.count_decision(d);
            }
            self.append(row).await?;
        }
        Ok(())
    }

    /// Commits one row, timing the write.
    async fn append(&self, row: NewEntry) -> Result<crate::audit::ChainPoint, AuditError> {
        let started = Instant::now();
        let point = self.audit.append(row).await;
        self.metrics.audit_write(started.elapsed());
        point
    }

    fn count_decision(&self, d: &DecisionAudit) {
        self.metrics.decision(d.action, d.outcome, &d.decided_by);
        if let Some(us) = d.latency_us {
            self.metrics.decision_latency(Duration::from_micros(us));
        }
    }

    /// Records the daemon's start or stop (with the loss counters as they are).
    async fn lifecycle(&self, step: DaemonStep, detail: Option<String>) -> Result<(), AuditError> {
        let row = AuditEvent::Daemon(DaemonAudit {
            step,
            backend: self.backend.name().into(),
            guarantees: self.backend.guarantees(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").into(),
            policy_version: Some(self.active().version.clone()),
            detail,
        });
        self.audit.append(NewEntry::now(row)).await?;
        self.record_losses();
        self.audit.flush().await
    }

    /// Tells the kernel whether the audit log can be written (`None`: it can). While it
    /// cannot, agent execs and the agent opens a rule names are refused.
    fn set_audit_state(&self, failing: Option<String>) {
        let down = u32::from(failing.is_some());
        if let Err(e) = lock(&self.kernel).audit_down.set(0, down, 0) {
            error!(error = %e, "could not tell the kernel the audit log's state");
        }
        let mut current = lock(&self.audit_failing);
        match (&*current, &failing) {
            (None, Some(why)) => error!(audit = %self.audit_target, error = %why,
                "audit log cannot be written: agent execs and matched agent opens are REFUSED until it can (other processes are unaffected)"),
            (Some(_), None) => {
                info!(audit = %self.audit_target, "audit log writable again: agents run as the policy says")
            }
            _ => {}
        }
        *current = failing;
    }

    /// Follows the audit writer's health and keeps the kernel's `AUDIT_DOWN` in step.
    async fn watch_audit(self: Arc<Self>) {
        let mut health = self.audit.health();
        while health.changed().await.is_ok() {
            let failing = health.borrow_and_update().as_ref().map(ToString::to_string);
            self.set_audit_state(failing);
        }
    }

    /// Writes a loss row when a loss counter moved (kernel drops and refusals, audit rows
    /// lost or dropped), and every beat while the log is failing: that write is the probe
    /// that notices when it works again.
    fn record_losses(&self) {
        let mut counters: BTreeMap<String, u64> = self.status_counters().into_iter().collect();
        let stats = self.audit.stats();
        counters.insert("audit_lost".into(), stats.lost);
        counters.insert("audit_dropped".into(), stats.dropped);
        let failing = lock(&self.audit_failing).is_some();
        {
            let mut recorded = lock(&self.recorded_losses);
            let moved = counters
                .iter()
                .any(|(k, v)| *v > 0 && recorded.get(k) != Some(v));
            if !moved && !failing {
                return;
            }
            *recorded = counters.clone();
        }
        if let Err(e) = self
            .audit
            .try_record(AuditEvent::Loss(LossAudit { counters }))
        {
            debug!(error = %e, "loss row not queued");
        }
    }

    /// The policy in force.
    fn active(&self) -> Arc<ActivePolicy> {
        self.active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Compiles `policy` and makes the kernel enforce it: every entry of the new policy is
    /// written before any entry of the old one is removed, so a rule in both never lapses.
    fn install_policy(&self, policy: Policy) -> Result<Arc<ActivePolicy>, DaemonError> {
        let (compiled, open_specs, mut open_compiled) =
            prepare_policy(&policy, &self.extra_open_rules)?;
        let exec_entries: Vec<(InodeKey, ExecRule)> = compiled
            .exec
            .iter()
            .map(|rule| {
                (
                    rule.key,
                    ExecRule {
                        verdict: Verdict::from(rule.action) as u32,
                        rule_id: rule.rule_id,
                    },
                )
            })
            .collect();
        // Every agent: a rule's agents are selected by uid, cgroup or launched name, which
        // the kernel's agent ids do not capture, so narrowing the fallback could miss one.
        let fallback: Vec<u32> = compiled
            .exec_fallback
            .iter()
            .map(|_| interceptor_common::EVERY_AGENT)
            .collect();
        {
            let mut kernel = lock(&self.kernel);
            // The fallback of the new policy is in place before its exec entries replace the
            // old ones, and the old fallback goes only after them: a rule moving between an
            // inode entry and a glob is enforced throughout.
            for agent_id in &fallback {
                kernel
                    .exec_fallback
                    .insert(agent_id, 1, 0)
                    .map_err(|source| DaemonError::Map {
                        name: "EXEC_FALLBACK",
                        source,
                    })?;
            }
            sync_map(&mut kernel.exec_rules, "EXEC_RULES", exec_entries.clone())?;
            sync_map(
                &mut kernel.exec_fallback,
                "EXEC_FALLBACK",
                fallback.iter().map(|&id| (id, 1)).collect(),
            )?;
            sync_map(
                &mut kernel.open_inodes,
                "OPEN_INODES",
                open_compiled.inodes.clone(),
            )?;
            sync_trie(&mut kernel.open_paths, "OPEN_PATHS", &open_compiled.paths)?;
            // Name rules: the new scopes (in the bank the old ones are not in) are complete
            // before any directory points to them, and the old ones go only after none does.
            let upper = !kernel
                .open_dirs
                .iter()
                .filter_map(Result::ok)
                .any(|(_, id)| id & open_rules::CompiledOpenRules::SCOPE_BANK != 0);
            open_compiled.set_scope_bank(upper);
            insert_trie(&mut kernel.open_names, "OPEN_NAMES", &open_compiled.names)?;
            insert_trie(
                &mut kernel.open_suffixes,
                "OPEN_SUFFIXES",
                &open_compiled.suffixes,
            )?;
            sync_trie(&mut kernel.open_dirs, "OPEN_DIRS", &open_compiled.dirs)?;
            prune_trie(&mut kernel.open_names, "OPEN_NAMES", &open_compiled.names)?;
            prune_trie(
                &mut kernel.open_suffixes,
                "OPEN_SUFFIXES",
                &open_compiled.suffixes,
            )?;
            kernel
                .open_default
                .set(0, open_compiled.default, 0)
                .map_err(|source| DaemonError::Map {
                    name: "OPEN_DEFAULT",
                    source,
                })?;
        }
        for (rule, why) in &compiled.unresolved {
            warn!(
                rule,
                why, "rule cannot match: its binary does not exist on this host"
            );
        }
        // Say exactly what the kernel cannot enforce; never imply enforcement that does not happen.
        if !compiled.monitored_in_userspace.is_empty() {
            info!(rules = ?compiled.monitored_in_userspace,
                  "monitor rules naming programs by glob or basename: every reported agent exec is judged in userspace after the fact for their would-be decisions (never held)");
        }
        if let Some(fallback) = &compiled.exec_fallback {
            info!(because = ?fallback.because,
                  "exec rules the kernel cannot match by inode (binary globs, basenames, default exec action): every agent exec that no inode entry names is held for the daemon, which judges it with the whole policy");
        }
        for entry in &compiled.open {
            if let crate::policy::OpenTarget::Pattern(p) = &entry.target {
                let rule = policy.rule(entry.rule_id).map_or("?", |r| r.name.as_str());
                warn!(rule, pattern = %p, "open rule with a ~ pattern and no home to expand it to (give its agents home = or uid =): the kernel cannot match it, so it is NOT enforced");
            }
        }
        let active = Arc::new(ActivePolicy {
            version: policy.version().to_string(),
            userspace_exec: compiled
                .exec
                .iter()
                .filter(|e| e.decided_by == crate::policy::DecidedBy::Userspace)
                .map(|e| e.key)
                .collect(),
            unresolved: compiled.unresolved.clone(),
            exec_entries: exec_entries.len(),
            monitors_reported_execs: !compiled.monitored_in_userspace.is_empty(),
            exec_paths: compiled
                .exec
                .iter()
                .map(|e| (e.key, e.path.clone()))
                .collect(),
            open_rules: open_specs,
            policy,
        });
        *self.active.write().unwrap_or_else(|p| p.into_inner()) = active.clone();
        Ok(active)
    }

    /// The policy in force and what the kernel's maps hold for it, read back from the maps
    /// (not from the compiler), so that a lapse between the two would show.
    fn active_policy_view(&self) -> crate::control::ActivePolicyView {
        let active = self.active();
        let rule = |id: u32| rule_name_in(&active.policy, &active.open_rules, id, 0);
        let kernel = lock(&self.kernel);
        let mut exec: Vec<crate::control::KernelExecEntry> = kernel
            .exec_rules
            .iter()
            .filter_map(Result::ok)
            .map(|(key, value)| crate::control::KernelExecEntry {
                dev: key.dev,
                ino: key.ino,
                path: active
                    .exec_paths
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, p)| p.clone()),
                verdict: verdict_name(value.verdict).to_string(),
                rule: rule(value.rule_id),
            })
            .collect();
        exec.sort_by(|a, b| (&a.path, a.dev, a.ino).cmp(&(&b.path, b.dev, b.ino)));
        // One row per access class of an entry (one row when both agree).
        let mut open: Vec<crate::control::KernelOpenEntry> = Vec::new();
        let mut push = |matches: &str, target: String, scope: Option<u32>, value: &OpenRule| {
            let read = (value.read_verdict, value.read_rule);
            let write = (value.write_verdict, value.write_rule);
            let read_bits = interceptor_common::access::READ;
            let write_bits = interceptor_common::access::ALL & !read_bits;
            let classes: Vec<((u32, u32), u32)> = if read == write {
                vec![(read, interceptor_common::access::ALL)]
            } else {
                vec![(read, read_bits), (write, write_bits)]
            };
            for ((verdict, rule_id), bits) in classes {
                if rule_id == 0 && verdict == Verdict::Allow as u32 {
                    continue;
                }
                open.push(crate::control::KernelOpenEntry {
                    matches: matches.to_string(),
                    target: target.clone(),
                    scope,
                    verdict: verdict_name(verdict).to_string(),
                    access: open_rules::access_names(bits),
                    rule: rule(rule_id),
                });
            }
        };
        for (key, value) in kernel.open_inodes.iter().filter_map(Result::ok) {
            push("inode", format!("{}:{}", key.dev, key.ino), None, &value);
        }
        for (key, value) in kernel.open_paths.iter().filter_map(Result::ok) {
            let (exact, path) = trie_path(&key);
            push(if exact { "exact" } else { "prefix" }, path, None, &value);
        }
        let names = kernel.open_names.iter().map(|e| (false, e));
        let suffixes = kernel.open_suffixes.iter().map(|e| (true, e));
        for (suffix, (key, value)) in names
            .chain(suffixes)
            .filter_map(|(s, e)| e.ok().map(|e| (s, e)))
        {
            let bytes = ((key.prefix_len() / 8) as usize).clamp(4, NAME_KEY_MAX);
            let data = key.data();
            let scope = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
            let mut name = data[4..bytes].to_vec();
            let matches = if suffix {
                name.reverse();
                "name-suffix"
            } else if name.last() == Some(&0) {
                name.pop();
                "name"
            } else {
                "name-prefix"
            };
            push(
                matches,
                String::from_utf8_lossy(&name).into_owned(),
                Some(scope),
                &value,
            );
        }
        let mut dirs = Vec::new();
        for (key, scope) in kernel.open_dirs.iter().filter_map(Result::ok) {
            let (exact, dir) = trie_path(&key);
            let matches = if exact { "in-dir" } else { "below-dir" };
            dirs.push(crate::control::KernelOpenEntry {
                matches: matches.to_string(),
                target: dir,
                scope: Some(scope),
                verdict: "scope".into(),
                access: Vec::new(),
                rule: None,
            });
        }
        if let Ok(default) = kernel.open_default.get(&0, 0) {
            push("default", "every other open".into(), None, &default);
        }
        open.append(&mut dirs);
        crate::control::ActivePolicyView {
            origin: self.policy_origin.clone(),
            policy_version: active.version.clone(),
            last_reload: lock(&self.last_reload).clone(),
            exec,
            exec_fallback: kernel.exec_fallback.keys().next().is_some(),
            open,
        }
    }

    /// Re-reads the policy file; a file that does not parse, validate or compile is rejected
    /// with its file:line:col and the policy in force stays.
    fn reload(&self, why: &str) {
        let Some(path) = self.policy_path.clone() else {
            info!(why, "the built-in policy is in force; nothing to reload");
            return;
        };
        let started = Instant::now();
        let previous = self.active().version.clone();
        let outcome = Policy::load(&path)
            .map_err(|e| e.to_string())
            .map(|mut policy| {
                for (action, binary) in &self.cli_exec_rules {
                    policy.add_cli_rule(*action, binary);
                }
                policy
            })
            .and_then(|policy| self.install_policy(policy).map_err(|e| e.to_string()));
        let (note, error) = match outcome {
            Ok(active) => {
                info!(why, policy = %path.display(), version = %active.version,
                      elapsed_us = started.elapsed().as_micros() as u64, "policy reloaded");
                (format!("ok: version {} ({why})", active.version), None)
            }
            Err(error) => {
                error!(why, %error, "policy reload REJECTED; the previous policy stays in force");
                (format!("rejected ({why}): {error}"), Some(error))
            }
        };
        *lock(&self.last_reload) = Some(note);
        let row = AuditEvent::PolicyReload(PolicyReloadAudit {
            accepted: error.is_none(),
            origin: path.display().to_string(),
            policy_version: self.active().version.clone(),
            previous_version: Some(previous),
            error,
        });
        let audit = self.audit.clone();
        tokio::spawn(async move {
            if let Err(e) = audit.append(NewEntry::now(row)).await {
                error!(error = %e, "a policy reload was not recorded in the audit log");
            }
        });
    }

    /// Tells the kernel the daemon is alive; false if the kernel did not hear it.
    fn beat(&self) -> bool {
        match lock(&self.kernel)
            .heartbeat
            .set(0, loader::boottime_ns(), 0)
        {
            Ok(()) => true,
            Err(e) => {
                error!(error = %e, "heartbeat failed: the kernel will refuse agent operations that need the daemon");
                false
            }
        }
    }

    /// Turns every task left held by an earlier daemon into a pending request again (or
    /// resumes it, if it was held only for the daemon to read its argv). Entries of
    /// processes that are gone are dropped.
    fn readopt_holds(self: &Arc<Self>) {
        let held: Vec<(u32, HeldTask)> = lock(&self.kernel)
            .held
            .iter()
            .filter_map(Result::ok)
            .collect();
        let mut adoptions = Vec::new();
        for (pid, task) in held {
            let alive = procfs::stat(pid)
                .is_ok_and(|st| st.start_ticks == procfs::ticks_of_boottime(task.start_boottime));
            if !alive {
                let _ = lock(&self.kernel).held.remove(&pid);
                continue;
            }
            let record = self.readopted_record(pid, &task);
            info!(pid, agent = %record.agent, binary = %record.filename, "re-adopted a task held by an earlier daemon");
            let daemon = self.clone();
            adoptions.push(tokio::spawn(async move {
                daemon.adopt_hold(record, task.start_boottime).await
            }));
        }
        // Stored requests whose task did not come back are closed once every held task
        // has been looked at.
        let daemon = self.clone();
        tokio::spawn(async move {
            for adoption in adoptions {
                let _ = adoption.await;
            }
            daemon.close_unclaimed().await;
        });
    }

    /// What is known of a held task from the kernel's `HELD` entry and /proc.
    fn readopted_record(&self, pid: u32, task: &HeldTask) -> ExecRecord {
        let stat = procfs::stat(pid).ok();
        // The held program's identity, as the kernel names it: a hold that was only for the
        // policy to judge argv is judged again by policy, not turned into a human's request.
        let binary = match task.flags & exec_flags::OPEN {
            0 => procfs::exe_identity(pid).ok(),
            _ => None,
        };
        let (agent, session) = self.agent_of(task.agent_id);
        let seq = self.next_seq();
        ExecRecord {
            seq,
            time_ms: now_ms(),
            kind: if task.flags & exec_flags::OPEN != 0 {
                "open"
            } else {
                "exec"
            }
            .into(),
            agent,
            session,
            agent_id: task.agent_id,
            pid,
            tid: pid,
            ppid: stat.map_or(0, |s| s.ppid),
            uid: procfs::uid(pid).unwrap_or(u32::MAX),
            gid: u32::MAX,
            cgroup_id: 0,
            filename: if task.flags & exec_flags::OPEN != 0 {
                // The kernel keeps no path for held opens; the reviewer sees the program.
                "(an open; its path is not kept across daemon restarts)".into()
            } else {
                procfs::exe(pid)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            },
            filename_truncated: false,
            // A mapped exec's file is not kept either; /proc/PID/maps would need its identity.
            path: String::new(),
            mapped: task.flags & exec_flags::MAPPED != 0,
            argv: procfs::cmdline(pid).unwrap_or_default(),
            argv_truncated: false,
            argv_unavailable: false,
            verdict: if task.flags & exec_flags::USERSPACE_DECIDES != 0 {
                "allow"
            } else {
                "ask"
            }
            .into(),
            rule: self.rule_name(task.rule_id, task.flags),
            held: true,
            denied: false,
            hold_failed: false,
            unlinked_binary: task.flags & exec_flags::UNLINKED_BINARY != 0,
            userspace_decides: task.flags & exec_flags::USERSPACE_DECIDES != 0,
            daemon_down: false,
            audit_down: false,
            access: Vec::new(),
            pending: false,
            granted: false,
            path_unresolved: false,
            dev: binary.map_or(0, |b| crate::policy::kernel_dev(b.dev)),
            ino: binary.map_or(0, |b| b.ino),
        }
    }
}

/// What the HTTP listener serves from the daemon.
struct HttpSource(Arc<Daemon>);

impl http::Source for HttpSource {
    fn metrics(&self) -> String {
        let daemon = &self.0;
        let status = daemon.status();
        daemon.metrics.render(&metrics::Snapshot {
            backend: status.backend,
            policy_version: status.policy_version,
            holds_pending: status.pending_approvals as u64,
            tracked_processes: status.tracked_processes as u64,
            kernel_counters: status.counters,
            audit: daemon.audit.stats(),
            audit_failing: status.audit.failing.is_some(),
        })
    }

    fn health(&self) -> Result<(), String> {
        match lock(&self.0.audit_failing).as_ref() {
            Some(why) => Err(format!(
                "audit log cannot be written ({why}): agent execs and matched opens are refused"
            )),
            None => Ok(()),
        }
    }

    fn review_page(&self, token: String) -> http::Reply {
        let daemon = self.0.clone();
        Box::pin(async move { daemon.page_show(&token).await })
    }

    fn review_answer(&self, token: String, body: axum::body::Bytes) -> http::Reply {
        let daemon = self.0.clone();
        Box::pin(async move { daemon.page_answer(&token, &body).await })
    }

    fn slack_interaction(
        &self,
        headers: axum::http::HeaderMap,
        body: axum::body::Bytes,
    ) -> http::Reply {
        let daemon = self.0.clone();
        Box::pin(async move { daemon.slack_answer(&headers, &body).await })
    }
}

/// `event` as a follow-up of row `seq`, when known.
fn follow(event: AuditEvent, seq: Option<u64>) -> NewEntry {
    let entry = NewEntry::now(event);
    match seq {
        Some(seq) => entry.follows(seq),
        None => entry,
    }
}

/// A step of request `id`, which `decision` opened.
fn approval_row(
    id: u64,
    step: ApprovalStep,
    decision: &DecisionAudit,
    by: Option<&str>,
) -> ApprovalAudit {
    ApprovalAudit {
        request: id,
        step,
        operation: decision.operation,
        agent: decision.process.agent.clone(),
        pid: decision.process.pid,
        binary: decision.process.binary.clone(),
        path: decision.files.first().cloned(),
        rule: decision.winner.clone(),
        controls: decision.controls.clone(),
        reviewers: Vec::new(),
        channel: by.map(|_| "cli".to_string()),
        by: by.map(str::to_string),
        detail: None,
    }
}

/// The rule a request names, if the policy has it.
fn rule_name_rule<'a>(policy: &'a Policy, name: &str) -> Option<&'a crate::policy::Rule> {
    policy.rule_named(name).map(|(_, r)| r)
}

/// What an approval with a grant lets through later: the same agent running the same
/// resolved binary, with the same argv unless the rule's grant covers the binary.
fn exec_grant_key(view: &PendingView, rule: Option<&crate::policy::Rule>) -> Option<ExecGrantKey> {
    use crate::policy::GrantScope;
    if view.operation != "exec" || view.exe.is_empty() {
        return None;
    }
    let scope = rule.and_then(|r| r.grant.as_ref()).map(|g| g.scope)?;
    // No identity, no grant: what cannot be recognised later is asked about again.
    let file = procfs::exe_identity(view.pid).ok()?;
    Some(ExecGrantKey {
        file,
        agent: view.agent.clone(),
        binary: view.exe.clone(),
        argv: match scope {
            GrantScope::Binary => None,
            GrantScope::Once | GrantScope::ExactArgv => Some(view.argv.clone()),
        },
    })
}

/// When a request of `rule` held at `held_at` escalates, and to whom.
fn escalation_of(
    rule: Option<&crate::policy::Rule>,
    held_at: Instant,
) -> Option<(Instant, Vec<String>)> {
    let e = rule?.escalation.as_ref()?;
    Some((held_at + e.after, e.to.clone()))
}

/// Approvals a request of `rule` needs before it runs (its `min_approvals`, at least 1).
fn approvals_needed(rule: Option<&crate::policy::Rule>) -> u32 {
    rule.map_or(1, |r| r.min_approvals.max(1))
}

/// `detail`, then the reviewer's comment.
fn with_comment(detail: String, comment: Option<&str>) -> String {
    match comment {
        Some(c) if detail.is_empty() => format!("comment: {c}"),
        Some(c) => format!("{detail}; comment: {c}"),
        None => detail,
    }
}

/// How long an `ask` by `rule` waits, and what it becomes unanswered (the rule's own
/// terms, else the policy's defaults).
fn ask_terms(policy: &Policy, rule: Option<&crate::policy::Rule>) -> (Duration, Action) {
    (policy.ask_timeout(rule), policy.ask_on_timeout(rule))
}

/// The id of agent `name` (1-based index into `agents`), adding the name if new.
/// Between an agent's name and its session in an identity (never in either: see
/// `validate_agent_name`).
const SESSION_SEPARATOR: char = '@';

/// `name` or `name@session`.
fn identity(agent: &str, session: Option<&str>) -> String {
    match session {
        Some(s) => format!("{agent}{SESSION_SEPARATOR}{s}"),
        None => agent.to_string(),
    }
}

/// A session id: the characters of agent names, and with the name it goes with short
/// enough for the kernel's agent name slot.
fn validate_session(agent: &str, session: &str) -> Result<(), String> {
    let chars_ok = !session.is_empty()
        && session
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if !chars_ok {
        return Err(format!(
            "session {session:?} is invalid: use characters from A-Z a-z 0-9 - _ . :"
        ));
    }
    let len = agent.len() + 1 + session.len();
    if len > interceptor_common::AGENT_NAME_MAX {
        return Err(format!(
            "agent name and session together are {len} bytes; at most {} fit (name, '@', session)",
            interceptor_common::AGENT_NAME_MAX
        ));
    }
    Ok(())
}

fn agent_id_for(agents: &mut Vec<String>, name: &str) -> u32 {
    match agents.iter().position(|a| a == name) {
        Some(i) => i as u32 + 1,
        None => {
            agents.push(name.to_string());
            agents.len() as u32
        }
    }
}

/// The caller's pid and start time (with the start time, a recycled pid is not mistaken
/// for the caller).
fn peer_process(peer: UCred) -> Result<(u32, u64), String> {
    let pid = peer_pid(peer)?;
    let start_ticks = procfs::stat(pid)
        .map_err(|e| format!("reading /proc/{pid}/stat: {e}"))?
        .start_ticks;
    Ok((pid, start_ticks))
}

fn peer_pid(peer: UCred) -> Result<u32, String> {
    peer.pid()
        .filter(|&pid| pid > 0)
        .map(|pid| pid as u32)
        .ok_or_else(|| "the caller's pid is unknown (no SO_PEERCRED pid)".to_string())
}

/// The name of the rule behind a kernel decision: an open rule (ids from
/// `OPEN_RULE_ID_BASE`), a policy rule, or the built-in hold of nameless binaries.
fn rule_name_in(
    policy: &Policy,
    open_rules: &[OpenRuleSpec],
    rule_id: u32,
    flags: u32,
) -> Option<String> {
    if rule_id >= OPEN_RULE_ID_BASE {
        return open_rules
            .get((rule_id - OPEN_RULE_ID_BASE) as usize)
            .map(|r| r.name.clone());
    }
    policy
        .rule(rule_id)
        .map(|r| r.name.clone())
        .or_else(|| (flags & exec_flags::UNLINKED_BINARY != 0).then(|| UNLINKED_RULE.to_string()))
}

/// The record of one kernel exec event. Lengths from the kernel are clamped to the buffers.
fn exec_record(
    ev: &ExecEvent,
    seq: u64,
    (agent, session): (String, Option<String>),
    policy: &Policy,
) -> ExecRecord {
    let filename_len = (ev.filename_len as usize).min(ev.filename.len());
    let argv_len = (ev.argv_len as usize).min(ev.argv.len());
    let path_len = (ev.path_len as usize).min(ev.path.len());
    let mapped = ev.flags & exec_flags::MAPPED != 0;
    let mut path = String::from_utf8_lossy(&ev.path[..path_len]).into_owned();
    if mapped && path.is_empty() {
        // file_mprotect cannot resolve the path in the kernel; the mapping names it.
        path = procfs::mapped_path(ev.tgid, ev.dev, ev.ino).unwrap_or_default();
    }
    let filename = if mapped {
        path.clone()
    } else {
        String::from_utf8_lossy(&ev.filename[..filename_len]).into_owned()
    };
    let verdict = verdict_name(ev.verdict);
    let kind = match EventKind::from_u32(ev.kind) {
        Some(EventKind::Exec) => "exec",
        Some(EventKind::ExecDenied) => "exec_denied",
        Some(EventKind::Open | EventKind::ConnectRefused) | None => "unknown",
    };
    ExecRecord {
        seq,
        time_ms: now_ms(),
        kind: kind.into(),
        agent,
        session,
        agent_id: ev.agent_id,
        pid: ev.tgid,
        tid: ev.pid,
        ppid: ev.ppid,
        uid: ev.uid,
        gid: ev.gid,
        cgroup_id: ev.cgroup_id,
        filename,
        filename_truncated: ev.flags & exec_flags::FILENAME_TRUNCATED != 0,
        path,
        mapped,
        argv: procfs::split_nul(&ev.argv[..argv_len]),
        argv_truncated: ev.flags & exec_flags::ARGV_TRUNCATED != 0,
        argv_unavailable: ev.flags & exec_flags::ARGV_UNAVAILABLE != 0,
        verdict: verdict.into(),
        rule: rule_name_in(policy, &[], ev.rule_id, ev.flags),
        held: ev.flags & exec_flags::HELD != 0,
        denied: ev.flags & exec_flags::DENIED != 0,
        hold_failed: ev.flags & exec_flags::HOLD_FAILED != 0,
        unlinked_binary: ev.flags & exec_flags::UNLINKED_BINARY != 0,
        userspace_decides: ev.flags & exec_flags::USERSPACE_DECIDES != 0,
        daemon_down: ev.flags & exec_flags::DAEMON_DOWN != 0,
        audit_down: ev.flags & exec_flags::AUDIT_DOWN != 0,
        access: Vec::new(),
        pending: false,
        granted: false,
        path_unresolved: false,
        dev: ev.dev,
        ino: ev.ino,
    }
}

/// A ring-buffer record, by kind.
// Decoded onto the stack per event, as the events were before: boxing the big variant
// would put an allocation on the hot path of every kernel event.
#[allow(clippy::large_enum_variant)]
pub enum KernelEvent {
    /// An exec, or an exec refused in bprm_check_security.
    Exec(ExecEvent),
    Open(OpenEvent),
    ConnectRefused(interceptor_common::ConnectEvent),
}

/// Decodes a ring-buffer record: its kind, then the event of that kind; `None` when the
/// kind is unknown or the record too short for it.
pub fn decode_event(bytes: &[u8]) -> Option<KernelEvent> {
    Some(match decode_kind(bytes)? {
        EventKind::Exec | EventKind::ExecDenied => KernelEvent::Exec(decode(bytes)?),
        EventKind::Open => KernelEvent::Open(decode(bytes)?),
        EventKind::ConnectRefused => KernelEvent::ConnectRefused(decode(bytes)?),
    })
}

/// A ring-buffer record decoded as the daemon decodes it, outside a running daemon (the
/// `kernel_event` fuzz target): the exec or open record it becomes, with agent id 0's
/// name; `None` for an undecodable record or a refused connect (which has no record).
pub fn decode_record(bytes: &[u8], policy: &Policy) -> Option<ExecRecord> {
    let agent = ("fuzz".to_string(), None);
    match decode_event(bytes)? {
        KernelEvent::Exec(ev) => Some(exec_record(&ev, 0, agent, policy)),
        KernelEvent::Open(ev) => {
            let rule = rule_name_in(policy, &[], ev.rule_id, ev.flags);
            Some(open_record(&ev, 0, agent, rule))
        }
        KernelEvent::ConnectRefused(_) => None,
    }
}

/// The kind of a ring-buffer record (its first `u32`).
pub fn decode_kind(bytes: &[u8]) -> Option<EventKind> {
    let raw = u32::from_ne_bytes(bytes.get(..4)?.try_into().ok()?);
    EventKind::from_u32(raw)
}

/// Reads a kernel event out of a ring-buffer record; `None` when the record is too short.
pub fn decode<T: aya::Pod>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: T is Pod (integers and byte arrays only), the slice is long enough, and
    // read_unaligned makes no alignment assumption.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// The record of one kernel open event. Lengths from the kernel are clamped to the buffers.
fn open_record(
    ev: &OpenEvent,
    seq: u64,
    (agent, session): (String, Option<String>),
    rule: Option<String>,
) -> ExecRecord {
    let path_len = (ev.path_len as usize).min(ev.path.len());
    ExecRecord {
        seq,
        time_ms: now_ms(),
        kind: "open".into(),
        agent,
        session,
        agent_id: ev.agent_id,
        pid: ev.tgid,
        tid: ev.pid,
        ppid: 0,
        uid: ev.uid,
        gid: 0,
        cgroup_id: 0,
        filename: String::from_utf8_lossy(&ev.path[..path_len]).into_owned(),
        filename_truncated: ev.path_len as usize > ev.path.len(),
        path: String::from_utf8_lossy(&ev.path[..path_len]).into_owned(),
        mapped: false,
        argv: Vec::new(),
        argv_truncated: false,
        argv_unavailable: true,
        verdict: verdict_name(ev.verdict).into(),
        rule,
        held: ev.flags & exec_flags::HELD != 0,
        denied: ev.flags & exec_flags::DENIED != 0,
        hold_failed: ev.flags & exec_flags::HOLD_FAILED != 0,
        unlinked_binary: false,
        userspace_decides: false,
        daemon_down: ev.flags & exec_flags::DAEMON_DOWN != 0,
        audit_down: ev.flags & exec_flags::AUDIT_DOWN != 0,
        access: access_names(ev.access),
        pending: ev.flags & exec_flags::PENDING != 0,
        granted: ev.flags & exec_flags::GRANTED != 0,
        path_unresolved: ev.flags & exec_flags::PATH_UNRESOLVED != 0,
        dev: ev.dev,
        ino: ev.ino,
    }
}

fn verdict_name(raw: u32) -> &'static str {
    match Verdict::from_u32(raw) {
        Some(Verdict::Allow) => "allow",
        Some(Verdict::Audit) => "audit",
        Some(Verdict::Ask) => "ask",
        Some(Verdict::Deny) => "deny",
        None => "unknown",
    }
}

/// How much an approval of a pending open grants.
#[derive(Debug, Clone, Copy)]
struct GrantTerms {
    uses: u32,
    ttl: Duration,
}

impl Default for GrantTerms {
    fn default() -> Self {
        Self {
            uses: 1,
            ttl: Duration::from_secs(300),
        }
    }
}

impl GrantTerms {
    /// Most a reviewer can grant at once: grants are for this task, not standing permissions.
    const MAX_USES: u32 = 1_000;
    const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

    fn new(uses: Option<u32>, ttl_secs: Option<u64>) -> Result<Self, String> {
        let d = Self::default();
        let terms = Self {
            uses: uses.unwrap_or(d.uses),
            ttl: ttl_secs.map_or(d.ttl, Duration::from_secs),
        };
        if terms.uses == 0 || terms.uses > Self::MAX_USES {
            return Err(format!(
                "grant uses must be 1..={}, not {}",
                Self::MAX_USES,
                terms.uses
            ));
        }
        if terms.ttl.is_zero() || terms.ttl > Self::MAX_TTL {
            return Err(format!(
                "grant ttl must be 1..={} s, not {} s",
                Self::MAX_TTL.as_secs(),
                terms.ttl.as_secs()
            ));
        }
        Ok(terms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_validated_and_kept_apart_from_the_name() {
        assert_eq!(identity("ops-bot", None), "ops-bot");
        assert_eq!(
            identity("ops-bot", Some("FIN-7:run.2")),
            "ops-bot@FIN-7:run.2"
        );
        assert!(validate_session("ops-bot", "FIN-7:run.2").is_ok());
        for bad in ["", "two words", "a@b", "x/y", "\u{e9}"] {
            let e = validate_session("ops-bot", bad).unwrap_err();
            assert!(e.contains("is invalid"), "{bad:?}: {e}");
        }
        // name + '@' + session must fit the kernel's 64-byte agent name slot.
        assert!(validate_session("a", &"s".repeat(62)).is_ok());
        let e = validate_session("a", &"s".repeat(63)).unwrap_err();
        assert!(e.contains("65 bytes; at most 64 fit"), "{e}");
    }
    use interceptor_common::FILENAME_MAX;

    #[test]
    fn short_kernel_records_are_rejected() {
        assert!(decode::<ExecEvent>(&[0u8; 16]).is_none());
        let mut bytes = vec![0u8; size_of::<ExecEvent>()];
        bytes[0] = EventKind::Exec as u8;
        bytes[8] = 42; // tgid
        let ev = decode::<ExecEvent>(&bytes).expect("full-size record decodes");
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
        let rec = exec_record(&ev, 1, ("copilot".into(), None), &policy);
        assert_eq!(rec.filename.len(), FILENAME_MAX);
        assert!(rec.filename.starts_with("/bin/echo"));
        assert_eq!(rec.argv, vec!["echo", "hi"]);
        assert!(rec.held && rec.argv_truncated && !rec.denied);
        assert_eq!(rec.verdict, "ask");
        assert_eq!(rec.rule.as_deref(), Some("hold-curl"));
        assert_eq!((rec.seq, rec.agent.as_str()), (1, "copilot"));
    }
}
