//! The control socket protocol: one JSON request line, one JSON response line, per
//! connection. The daemon identifies every caller by its peer credentials (SO_PEERCRED),
//! never by anything the caller says about itself.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

/// Where the daemon listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/interceptor/control.sock";

/// Longest request line the daemon reads.
pub const MAX_REQUEST: usize = 64 * 1024;

/// A request to the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Track the calling process (and everything it starts) as agent `agent`.
    Register {
        agent: String,
        /// The session this launch belongs to; absent: none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<String>,
    },
    /// Backend, counters and sizes.
    Status,
    /// Held operations waiting for a decision.
    ListApprovals,
    /// Resume a held operation, or grant a pending open (the agent's retry then succeeds).
    /// With grant terms, an exec approval also lets the same operation through later
    /// without asking, within the rule's `grant` limits.
    Approve {
        id: u64,
        /// How many later operations the grant allows (opens: default 1).
        #[serde(default)]
        grant_uses: Option<u32>,
        /// How long the grant lasts, seconds (opens: default 300).
        #[serde(default)]
        grant_ttl_secs: Option<u64>,
        /// Why, for the audit log.
        #[serde(default)]
        comment: Option<String>,
    },
    /// Kill a held operation.
    Deny {
        id: u64,
        #[serde(default)]
        comment: Option<String>,
    },
    /// One request, pending or recently closed, with everything reviewers are shown.
    ShowApproval { id: u64 },
    /// The most recent exec events, oldest first.
    Events { limit: Option<usize> },
    /// From inside an agent: what it is doing, shown (marked unverified) on its next
    /// requests. Annotates; never decides.
    Context { rationale: String },
    /// Grants in force.
    ListGrants,
    /// Ends a grant now.
    RevokeGrant { id: String },
    /// The policy in force and the kernel entries it installed, read back from the maps.
    ActivePolicy,
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Registered {
        agent: String,
        agent_id: u32,
        pid: u32,
    },
    Status(Box<Status>),
    Approvals {
        requests: Vec<PendingView>,
    },
    Decided {
        id: u64,
        decision: Decision,
        pid: u32,
    },
    /// An approval recorded toward a quorum; the operation still waits.
    Voted {
        id: u64,
        have: u32,
        need: u32,
    },
    /// One request.
    Approval {
        request: Box<ApprovalDetail>,
    },
    ContextSet {
        agent: String,
    },
    Grants {
        grants: Vec<GrantView>,
    },
    Revoked {
        id: String,
    },
    Events {
        events: Vec<ExecRecord>,
    },
    ActivePolicy(Box<ActivePolicyView>),
    Error {
        message: String,
    },
}

/// The policy a running daemon enforces, with its kernel entries as the maps hold them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivePolicyView {
    /// The policy file, or `built-in default`.
    pub origin: String,
    /// SHA-256 of the policy in force.
    pub policy_version: String,
    /// The last reload's outcome, if there was one.
    pub last_reload: Option<String>,
    /// `EXEC_RULES`, by binary identity.
    pub exec: Vec<KernelExecEntry>,
    /// `EXEC_FALLBACK` is set: every agent exec no entry names is held for the daemon.
    pub exec_fallback: bool,
    /// `OPEN_INODES`, `OPEN_PATHS`, `OPEN_NAMES`, `OPEN_SUFFIXES`, `OPEN_DIRS` and
    /// `OPEN_DEFAULT`, one row per access class.
    pub open: Vec<KernelOpenEntry>,
}

/// One `EXEC_RULES` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelExecEntry {
    pub dev: u64,
    pub ino: u64,
    /// The path the policy named for this binary (absent for an entry the policy in force
    /// did not write).
    pub path: Option<String>,
    pub verdict: String,
    pub rule: Option<String>,
}

/// One access class of a kernel open entry, or a directory scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelOpenEntry {
    /// `inode`, `exact`, `prefix`, `name`, `name-prefix`, `name-suffix`, `in-dir`,
    /// `below-dir` (directory scopes, whose verdict is `scope`) or `default`.
    pub matches: String,
    /// `dev:ino`, the path (a prefix ends where the kernel's match ends), the file name
    /// (or its start or end) or the directory.
    pub target: String,
    /// For names, the scope they apply in (0: any directory); for directories, the scope
    /// their files' names are looked up in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
    pub verdict: String,
    pub access: Vec<String>,
    pub rule: Option<String>,
}

/// What a reviewer decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approved,
    Denied,
}

/// The daemon's state at a glance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// `lsm` or `tracepoint`.
    pub backend: String,
    /// What this backend guarantees, in a sentence per guarantee.
    pub guarantees: Vec<String>,
    pub daemon_pid: u32,
    /// Where the maps and links are pinned.
    pub pin_dir: String,
    pub policy: String,
    /// SHA-256 of the policy in force.
    pub policy_version: String,
    /// The outcome of the last reload, if any.
    pub last_reload: Option<String>,
    /// Rules that cannot match because their binary is missing: (rule, why).
    pub unresolved_rules: Vec<(String, String)>,
    /// Configured agent uids and cgroups, described.
    pub agent_scopes: Vec<String>,
    /// Whether agents may create user namespaces.
    pub userns_allowed: bool,
    pub tracked_processes: usize,
    pub pending_approvals: usize,
    /// Kernel failure counters by name.
    pub counters: Vec<(String, u64)>,
    pub audit: AuditStatus,
    /// The HTTP listener's address (`/metrics`, `/healthz`), if it listens.
    pub http: Option<String>,
}

/// The audit log as the daemon sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditStatus {
    /// The SQLite file, or the PostgreSQL URL without its password.
    pub target: String,
    /// Rows committed since the daemon started.
    pub committed: u64,
    /// Rows that could not be committed (write failures) or queued (queue full).
    pub lost: u64,
    /// Set while the log cannot be written: why. Agent execs and the agent opens a rule
    /// names are refused meanwhile.
    pub failing: Option<String>,
}

/// One request in full: its state, who may answer, and what reviewers are shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalDetail {
    pub id: u64,
    /// pending, approved, denied, expired, cancelled.
    pub state: String,
    /// How it closed, when it did.
    #[serde(default)]
    pub outcome: Option<String>,
    pub reviewers: Vec<String>,
    pub approvals_needed: u32,
    pub approvals: Vec<String>,
    pub deadline_ms: u64,
    pub on_timeout: String,
    /// The notice reviewers were sent (links left out: they are each reviewer's secret).
    pub notice: crate::approvals::Notice,
}

/// A grant in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantView {
    /// `x<N>` for exec grants, `o<N>` for open grants.
    pub id: String,
    /// `exec` or `open`.
    pub kind: String,
    pub agent: String,
    /// The binary (and argv, when the grant is for that argv only) or file.
    pub target: String,
    #[serde(default)]
    pub argv: Option<Vec<String>>,
    pub uses_left: u32,
    pub expires_at_ms: u64,
    #[serde(default)]
    pub request: Option<u64>,
    #[serde(default)]
    pub by: Option<String>,
}

/// A held exec, as reviewers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingView {
    pub id: u64,
    /// `exec` (held before its first instruction) or `open` (a read held after the open,
    /// or a write refused until approved).
    pub operation: String,
    /// For opens: the access modes asked for.
    pub access: Vec<String>,
    pub agent: String,
    /// The session the agent was launched in (`interceptor run --session`), inherited by
    /// everything it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    /// The path the binary was run by, as given to execve; for a mapped exec
    /// (`ld.so /path/bin`) the resolved path of the mapped program.
    pub filename: String,
    /// The resolved executable (/proc/PID/exe); for a mapped exec, the loader.
    pub exe: String,
    /// The program was mapped executable by a loader rather than exec'd.
    #[serde(default)]
    pub mapped: bool,
    /// The process's ancestors, parent first.
    #[serde(default)]
    pub parents: Vec<crate::procfs::Ancestor>,
    /// The whole argv, read from /proc while the task is stopped.
    pub argv: Vec<String>,
    pub cwd: String,
    /// The environment, secrets redacted.
    #[serde(default)]
    pub env: Vec<String>,
    /// What the same agent did just before, oldest first.
    #[serde(default)]
    pub recent: Vec<String>,
    pub rule: String,
    pub reason: Option<String>,
    /// Unix time in ms when the daemon saw the hold.
    pub held_at_ms: u64,
}

/// One exec by an agent, as the kernel reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRecord {
    /// Position in the daemon's event stream.
    pub seq: u64,
    /// Unix time in ms when the daemon received it.
    pub time_ms: u64,
    /// `exec`, or `exec_denied` for an exec refused in bprm_check_security.
    pub kind: String,
    pub agent: String,
    /// The session the agent was launched in (`interceptor run --session`), inherited by
    /// everything it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    pub agent_id: u32,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cgroup_id: u64,
    /// The path given to execve (as the kernel saw it at exec time); for a mapped exec,
    /// the mapped file's path.
    pub filename: String,
    pub filename_truncated: bool,
    /// The resolved path of the file the kernel executed (bpf_d_path; a script's
    /// interpreter for a script) or mapped; empty where the kernel could not resolve it
    /// (the tracepoint backend).
    #[serde(default)]
    pub path: String,
    /// Not exec'd but mapped executable by a running program (`ld.so /path/bin`).
    #[serde(default)]
    pub mapped: bool,
    pub argv: Vec<String>,
    pub argv_truncated: bool,
    /// argv cannot be read where this event was made (execs refused before the new program
    /// was loaded).
    pub argv_unavailable: bool,
    /// `allow`, `audit`, `ask` or `deny`.
    pub verdict: String,
    pub rule: Option<String>,
    pub held: bool,
    pub denied: bool,
    pub hold_failed: bool,
    /// The binary has no name (memfd, or unlinked): held whatever the rules say.
    pub unlinked_binary: bool,
    /// Held only so the daemon could read the whole context (argv longer than the kernel's
    /// copy); the daemon then applied the kernel's verdict itself. `argv` is then the full
    /// argv read from /proc while the task was stopped.
    pub userspace_decides: bool,
    /// Refused because it needed the daemon while the daemon was down (fail closed).
    pub daemon_down: bool,
    /// Refused because the daemon could not write the audit log (fail closed).
    #[serde(default)]
    pub audit_down: bool,
    /// For opens: the access modes (read, write, create, truncate).
    pub access: Vec<String>,
    /// For opens: refused now, pending a reviewer's grant.
    pub pending: bool,
    /// For opens: allowed by a just-in-time grant.
    pub granted: bool,
    /// For opens: the path could not be resolved, so the open was refused.
    pub path_unresolved: bool,
    pub dev: u64,
    pub ino: u64,
}

/// Why a request could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the interceptor daemon is not running (nothing listens on {socket}: {source})")]
    NotRunning {
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error("talking to the daemon on {socket}: {source}")]
    Io {
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error("the daemon sent an unreadable answer: {0}")]
    Protocol(String),
    #[error("{0}")]
    Refused(String),
}

/// Sends one request and waits for its answer. A `Response::Error` becomes
/// `ClientError::Refused`.
pub fn call(socket: &Path, request: &Request) -> Result<Response, ClientError> {
    let io = |source| ClientError::Io {
        socket: socket.into(),
        source,
    };
    let mut stream = UnixStream::connect(socket).map_err(|source| ClientError::NotRunning {
        socket: socket.into(),
        source,
    })?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(io)?;
    let mut line =
        serde_json::to_string(request).map_err(|e| ClientError::Protocol(e.to_string()))?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).map_err(io)?;
    if answer.is_empty() {
        return Err(ClientError::Protocol(
            "the daemon closed the connection without answering".into(),
        ));
    }
    match serde_json::from_str(&answer)
        .map_err(|e| ClientError::Protocol(format!("{e}: {answer:?}")))?
    {
        Response::Error { message } => Err(ClientError::Refused(message)),
        response => Ok(response),
    }
}

/// Decodes a request line, with an error that names the problem.
pub fn parse_request(line: &str) -> Result<Request, String> {
    serde_json::from_str(line.trim_end()).map_err(|e| format!("bad request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_unknown_input_is_rejected() {
        for request in [
            Request::Register {
                agent: "copilot".into(),
                session: None,
            },
            Request::Register {
                agent: "copilot".into(),
                session: Some("ticket-42".into()),
            },
            Request::Status,
            Request::ListApprovals,
            Request::Approve {
                id: 7,
                grant_uses: Some(3),
                grant_ttl_secs: None,
                comment: Some("restore drill".into()),
            },
            Request::Deny {
                id: 8,
                comment: None,
            },
            Request::ShowApproval { id: 8 },
            Request::Events { limit: Some(3) },
            Request::Context {
                rationale: "migrating the orders table".into(),
            },
            Request::ListGrants,
            Request::RevokeGrant { id: "x2".into() },
        ] {
            let line = serde_json::to_string(&request).unwrap();
            assert_eq!(parse_request(&line).unwrap(), request);
        }
        assert_eq!(
            parse_request(r#"{"op":"approve","id":3}"#).unwrap(),
            Request::Approve {
                id: 3,
                grant_uses: None,
                grant_ttl_secs: None,
                comment: None,
            }
        );
        assert!(
            parse_request(r#"{"op":"approve","id":3,"as":"root"}"#)
                .unwrap_err()
                .contains("unknown field")
        );
        assert!(
            parse_request(r#"{"op":"approve"}"#)
                .unwrap_err()
                .contains("missing field")
        );
        assert!(
            parse_request(r#"{"op":"self_approve","id":1}"#)
                .unwrap_err()
                .contains("unknown variant")
        );
        assert!(
            parse_request("not json")
                .unwrap_err()
                .starts_with("bad request")
        );
    }

    #[test]
    fn client_reports_a_missing_daemon() {
        let err = call(Path::new("/nonexistent/interceptor.sock"), &Request::Status).unwrap_err();
        assert!(matches!(err, ClientError::NotRunning { .. }));
        assert!(err.to_string().contains("not running"), "{err}");
    }
}
