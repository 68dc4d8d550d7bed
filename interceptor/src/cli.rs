//! The command line: one binary for the daemon, the agent launcher and the reviewer tools.

use std::{
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};

use crate::{
    approvals::config::ApprovalsConfig,
    audit::{AuditConfig, AuditTarget, StoreOptions, Synchronous},
    control::{self, ClientError, DEFAULT_SOCKET, Decision, PendingView, Request, Response},
    daemon::{self, DaemonOptions},
    loader::{self, BackendChoice, DEFAULT_PIN_DIR},
    open_rules::{OpenMatch, OpenRuleSpec},
    policy::{Action, DEFAULT_POLICY, Policy},
    scope::{CgroupScope, UidScope},
};

/// The daemon's configuration directory; agents may not open anything in it.
pub const DAEMON_CONFIG_DIR: &str = "/etc/interceptor/";

pub use crate::policy::cli::DEFAULT_POLICY_PATH;

/// Action-Level Approvals for AI agents: the kernel holds an agent's exec until policy or a
/// human answers.
///
/// Start the daemon as root, launch agents under `interceptor run`, and answer held
/// operations with `interceptor approvals`.
#[derive(Debug, Parser)]
#[command(name = "interceptor", version, propagate_version = true)]
pub struct Cli {
    /// The daemon's control socket.
    #[arg(long, global = true, env = "INTERCEPTOR_SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,

    /// Log lines as text, or as one JSON object per line (for log shippers).
    #[arg(long, global = true, env = "INTERCEPTOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command_,
}

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command_ {
    /// Load the kernel programs and enforce the policy (as root).
    ///
    /// Example: interceptor daemon --policy /etc/interceptor/policy.toml
    ///
    /// Example: interceptor daemon --deny-exec /usr/bin/shred --hold-exec /usr/bin/curl
    Daemon(DaemonArgs),

    /// Run a command as an agent: it and everything it starts are tracked in the kernel.
    ///
    /// Registers with the daemon, then becomes CMD (same pid), so the exit status is CMD's.
    /// Refuses to run CMD when the daemon is not running (unless --allow-unprotected).
    ///
    /// Example: interceptor run --agent copilot -- bash -c 'make deploy'
    ///
    /// Example: interceptor run --agent ops-bot --rationale "rotate the staging TLS cert (OPS-112)" -- ./rotate.sh
    Run(RunArgs),

    /// List, show, approve or deny held operations (as a configured reviewer's uid, from
    /// outside any agent).
    #[command(subcommand)]
    Approvals(ApprovalsCommand),

    /// List or revoke grants: what earlier approvals let through without asking again.
    #[command(subcommand)]
    Grants(GrantsCommand),

    /// From inside an agent: say what it is doing. Reviewers see it (marked as the agent's
    /// unverified words) on its next approval requests. It never decides anything.
    ///
    /// Example: interceptor context --rationale "rotating the staging TLS certificate (JIRA OPS-112)"
    Context {
        /// What the agent is doing and why (at most 2,000 characters).
        #[arg(long)]
        rationale: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },

    /// Show the most recent agent execs the kernel reported (as root).
    ///
    /// Example: interceptor events --limit 20 --json
    Events {
        /// How many events, newest last.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },

    /// Stop enforcing: kill the tasks still held, then remove the pinned programs and maps.
    ///
    /// Stopping the daemon does not stop enforcement (the kernel keeps it, failing closed for
    /// agents); this does. Refuses while a daemon is running on the socket.
    ///
    /// Example: interceptor unload
    Unload {
        /// Pin directory (bpffs) of the daemon to unload.
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },

    /// Check what this host can enforce: kernel, LSM list, BTF, which kernel programs load
    /// (as root), the backend that follows and exactly what it guarantees, pins, daemon.
    ///
    /// Exits 1 when no backend can run here.
    ///
    /// Example: sudo interceptor doctor
    Doctor {
        /// Pin directory to inspect.
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
        /// The audit log to check when no daemon is running (a running daemon reports its own).
        #[arg(long, env = "INTERCEPTOR_AUDIT_DB", value_name = "PATH",
              default_value = crate::audit::DEFAULT_SQLITE_PATH)]
        audit_db: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },

    /// The daemon's configuration file (/etc/interceptor/interceptor.toml).
    #[command(subcommand)]
    Config(ConfigCommand),

    /// Print a shell completion script for this command line.
    ///
    /// Example: interceptor completions bash > /etc/bash_completion.d/interceptor
    ///
    /// Example: interceptor completions zsh > "${fpath[1]}/_interceptor"
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },

    /// Write the man pages of every command into DIR: interceptor.1, interceptor-daemon.1,
    /// interceptor-approvals-list.1, ...
    ///
    /// Example: interceptor man --out /usr/local/share/man/man1
    Man {
        /// Directory to write into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },

    /// Show the backend in force, what it guarantees, and the kernel's failure counters.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },

    /// Check, explain, test and show policies (offline; no daemon needed).
    ///
    /// Example: interceptor policy explain --exec -- git push --force
    #[command(subcommand)]
    Policy(crate::policy::cli::PolicyCommand),

    /// Query, verify, export and prune the audit log (offline; reads the database).
    ///
    /// Example: interceptor audit query --since 1d --decision denied
    ///
    /// Example: interceptor audit verify
    Audit(crate::audit::cli::AuditArgs),
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Configuration file: each key is one of these flags without its dashes; flags and
    /// their environment variables win over it. A missing file at the default path is
    /// fine, a missing file named here is an error.
    #[arg(long, env = "INTERCEPTOR_CONFIG", value_name = "PATH",
          default_value = crate::config::DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,

    /// Policy file. Default: /etc/interceptor/policy.toml if it exists, else the built-in
    /// policy (policies/default.toml).
    #[arg(long)]
    pub policy: Option<PathBuf>,

    /// Kernel backend: lsm needs BPF LSM; tracepoint is the degraded fallback.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,

    /// Deny agents this binary, in addition to the policy (repeatable).
    #[arg(long = "deny-exec", value_name = "PATH")]
    pub deny_exec: Vec<String>,

    /// Hold agents' execs of this binary for approval, in addition to the policy (repeatable).
    #[arg(long = "hold-exec", value_name = "PATH")]
    pub hold_exec: Vec<String>,

    /// Refuse agents' opens of this file, or of everything below DIR/ (repeatable).
    ///
    /// Example: --deny-open /etc/shadow --deny-open /root/.ssh/
    #[arg(long = "deny-open", value_name = "PATH")]
    pub deny_open: Vec<String>,

    /// Ask before agents open this file or anything below DIR/: reads are held, writes are
    /// refused until approved and then retried (repeatable).
    #[arg(long = "hold-open", value_name = "PATH")]
    pub hold_open: Vec<String>,

    /// Record agents' opens of this file or anything below DIR/ (repeatable).
    #[arg(long = "audit-open", value_name = "PATH")]
    pub audit_open: Vec<String>,

    /// Every process of this uid is an agent (named NAME, default uid-UID) (repeatable).
    ///
    /// Example: --agent-uid 1001=copilot
    #[arg(long = "agent-uid", value_name = "UID[=NAME]")]
    pub agent_uid: Vec<UidScope>,

    /// Every process in this cgroup v2 directory, or below it, is an agent (named NAME,
    /// default the directory's name) (repeatable).
    ///
    /// Example: --agent-cgroup /sys/fs/cgroup/agents.slice=ops-bot
    #[arg(long = "agent-cgroup", value_name = "PATH[=NAME]")]
    pub agent_cgroup: Vec<CgroupScope>,

    /// Let agents create user namespaces (refused by default: inside one an agent can
    /// bind-mount over the paths rules name).
    #[arg(long)]
    pub allow_userns: bool,

    /// Where maps and links are pinned (on bpffs; /sys/fs/bpf is mounted if needed). They
    /// outlive the daemon, so enforcement does too; a new daemon takes them over.
    #[arg(long, default_value = DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,

    /// Without a heartbeat for this long, the kernel refuses agent operations that need the
    /// daemon (holds), until a daemon is back.
    #[arg(long, default_value_t = 5000, value_name = "MS")]
    pub heartbeat_timeout_ms: u32,

    /// How many agent processes the kernel can track at once. With the lsm backend an
    /// agent's fork beyond it fails with EAGAIN (counted as fork_refused); with the
    /// tracepoint backend the child would run untracked (counted as track_failed). Takes
    /// effect when the maps are created: after `interceptor unload`, or on a fresh host.
    #[arg(long, default_value_t = 65_536, value_name = "N",
          value_parser = clap::value_parser!(u32).range(16..=4_194_304))]
    pub max_agent_processes: u32,

    /// The audit log: a SQLite file, created (with its directory) when missing. Agents may
    /// not open it. While it cannot be written, agent execs and matched opens are refused.
    #[arg(long, env = "INTERCEPTOR_AUDIT_DB", value_name = "PATH",
          default_value = crate::audit::DEFAULT_SQLITE_PATH, conflicts_with = "audit_url")]
    pub audit_db: PathBuf,

    /// Write the audit log to PostgreSQL instead, e.g. postgres://audit@db.internal/interceptor
    /// (for fleets that keep every host's log in one place).
    #[arg(long, env = "INTERCEPTOR_AUDIT_URL", value_name = "URL")]
    pub audit_url: Option<String>,

    /// The HTTP listener: Prometheus metrics on /metrics, health on /healthz, the review
    /// page on /r/TOKEN and Slack's interactivity endpoint on /slack/interactions. Loopback
    /// only unless --listen-remote; agents cannot connect to it. `off` disables it (and
    /// with it review links).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9477")]
    pub listen: String,

    /// Allow --listen on a non-loopback address.
    #[arg(long)]
    pub listen_remote: bool,

    /// SQLite durability: normal (WAL; a power loss can lose the last commits, never corrupt
    /// the log) or full (fsync every commit).
    #[arg(long, value_enum, default_value_t = Synchronous::Normal)]
    pub audit_sync: Synchronous,

    /// Reviewers and notification channels (docs/approvals.md). Default:
    /// /etc/interceptor/approvals.toml if it exists, else root on this host reviews through
    /// the CLI and nothing is sent anywhere.
    #[arg(long, value_name = "PATH")]
    pub approvals: Option<PathBuf>,

    /// Approval state: pending requests with their deadlines (so a restarted daemon still
    /// applies them), hashed review tokens, the CSRF key. Agents may not open it.
    #[arg(long, env = "INTERCEPTOR_APPROVALS_DB", value_name = "PATH",
          default_value = DEFAULT_APPROVALS_DB)]
    pub approvals_db: PathBuf,
}

/// Where the approval state lives unless told otherwise.
pub const DEFAULT_APPROVALS_DB: &str = "/var/lib/interceptor/approvals.db";

/// The approvals configuration read unless told otherwise (when it exists).
pub const DEFAULT_APPROVALS_PATH: &str = "/etc/interceptor/approvals.toml";

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Agent name reported in events and approval requests.
    #[arg(long, default_value = "agent")]
    pub agent: String,

    /// The session this run belongs to (a conversation, a job, a ticket), carried by the
    /// kernel to everything the command starts and shown with its events, requests and audit
    /// rows. Each session is its own identity: its grants and rationale are its own.
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,

    /// What the agent is about to do and why, shown to reviewers (unverified) on its
    /// approval requests, as `interceptor context --rationale` does from inside the agent.
    #[arg(long, value_name = "TEXT")]
    pub rationale: Option<String>,

    /// Run the command even when no daemon is running, unprotected and untracked (a
    /// warning says so). Without it, `run` refuses: an agent is never started unguarded
    /// by accident.
    #[arg(long)]
    pub allow_unprotected: bool,

    /// The command to run as the agent.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the configuration file with every key commented out at its default (the file
    /// the package installs).
    ///
    /// Example: interceptor config defaults > /etc/interceptor/interceptor.toml
    Defaults,
    /// Check a configuration file: every key a daemon flag, every value one it accepts.
    ///
    /// Example: interceptor config check /etc/interceptor/interceptor.toml
    Check {
        /// The file to check.
        #[arg(default_value = crate::config::DEFAULT_CONFIG_PATH)]
        path: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// Held operations waiting for a decision.
    ///
    /// Example: interceptor approvals list
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Everything about one request: who asked, what, the rule, who may answer, its state.
    ///
    /// Example: interceptor approvals show 3
    Show {
        /// Request id.
        id: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Let a held operation run, or grant a pending open so the agent's retry succeeds.
    ///
    /// With --grant or --uses, an exec approval also lets the same operation through
    /// later without asking, within the rule's `grant` limits. A pending open's approval
    /// is always a grant (default: 1 use within 5 minutes).
    ///
    /// Example: interceptor approvals approve 3 --comment "expected: release 4.2"
    ///
    /// Example: interceptor approvals approve 4 --grant 15m --uses 3
    Approve {
        /// Request id from `interceptor approvals list`.
        id: u64,
        /// How long the grant lasts (e.g. 15m, 1h; at most 24h).
        #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "ttl")]
        grant: Option<std::time::Duration>,
        /// How many later operations the grant allows (1..=1000).
        #[arg(long)]
        uses: Option<u32>,
        /// The grant's duration in seconds (the same as --grant).
        #[arg(long, hide = true)]
        ttl: Option<u64>,
        /// Why, for the audit log.
        #[arg(long)]
        comment: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Kill a held operation (a pending open stays refused).
    ///
    /// Example: interceptor approvals deny 3 --comment "not during the freeze"
    Deny {
        /// Request id from `interceptor approvals list`.
        id: u64,
        /// Why, for the audit log.
        #[arg(long)]
        comment: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum GrantsCommand {
    /// Grants in force: exec grants (x<N>) and open grants (o<agent>:<dev>:<ino>).
    ///
    /// Example: interceptor grants list --json
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// End a grant now.
    ///
    /// Example: interceptor grants revoke x3
    Revoke {
        /// Grant id from `interceptor grants list`.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command_::Daemon(args) => run_daemon(cli.socket, args),
        Command_::Run(args) => run_agent(&cli.socket, args),
        Command_::Approvals(ApprovalsCommand::List { json }) => {
            let Response::Approvals { requests } = call(&cli.socket, &Request::ListApprovals)?
            else {
                bail!("the daemon answered a list request with something else");
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&requests)?);
            } else {
                print_pending(&requests);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command_::Approvals(ApprovalsCommand::Approve {
            id,
            grant,
            uses,
            ttl,
            comment,
            json,
        }) => {
            let request = Request::Approve {
                id,
                grant_uses: uses,
                grant_ttl_secs: grant.map(|d| d.as_secs().max(1)).or(ttl),
                comment,
            };
            decide(&cli.socket, request, json)
        }
        Command_::Approvals(ApprovalsCommand::Deny { id, comment, json }) => {
            decide(&cli.socket, Request::Deny { id, comment }, json)
        }
        Command_::Approvals(ApprovalsCommand::Show { id, json }) => {
            let Response::Approval { request } = call(&cli.socket, &Request::ShowApproval { id })?
            else {
                bail!("the daemon answered `show` with something else");
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&request)?);
            } else {
                print_approval(&request);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command_::Grants(GrantsCommand::List { json }) => {
            let Response::Grants { grants } = call(&cli.socket, &Request::ListGrants)? else {
                bail!("the daemon answered `grants list` with something else");
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&grants)?);
            } else if grants.is_empty() {
                println!("no grants in force");
            } else {
                for g in &grants {
                    let argv = g
                        .argv
                        .as_ref()
                        .map(|a| format!(" argv: {}", crate::approvals::shell_words(a, &g.target)))
                        .unwrap_or_default();
                    let left = g.expires_at_ms.saturating_sub(now_ms()) / 1000;
                    println!(
                        "{}  {}  agent {}  {}{argv}  {} use(s) left, {left} s left{}",
                        g.id,
                        g.kind,
                        g.agent,
                        g.target,
                        g.uses_left,
                        g.by.as_deref()
                            .map(|b| format!(", granted by {b}"))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command_::Grants(GrantsCommand::Revoke { id, json }) => {
            let Response::Revoked { id } = call(&cli.socket, &Request::RevokeGrant { id })? else {
                bail!("the daemon answered `grants revoke` with something else");
            };
            if json {
                println!("{}", serde_json::json!({ "revoked": id }));
            } else {
                println!("grant {id} revoked");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command_::Context { rationale, json } => {
            let Response::ContextSet { agent } =
                call(&cli.socket, &Request::Context { rationale })?
            else {
                bail!("the daemon answered `context` with something else");
            };
            if json {
                println!("{}", serde_json::json!({ "agent": agent }));
            } else {
                println!("context set for agent {agent}: reviewers see it on its next requests");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command_::Events { limit, json } => {
            let Response::Events { events } =
                call(&cli.socket, &Request::Events { limit: Some(limit) })?
            else {
                bail!("the daemon answered an events request with something else");
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&events)?);
            } else {
                for e in &events {
                    let outcome = if e.denied {
                        "DENIED"
                    } else if e.held {
                        "HELD"
                    } else {
                        "ran"
                    };
                    println!(
                        "{:>6} {:<8} pid {:<7} agent {:<12} {} {}",
                        e.seq,
                        outcome,
                        e.pid,
                        e.agent,
                        e.filename,
                        shell_words(&e.argv)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command_::Policy(command) => crate::policy::cli::run(command, &cli.socket),
        Command_::Config(ConfigCommand::Defaults) => {
            print!("{}", crate::config::defaults());
            Ok(ExitCode::SUCCESS)
        }
        Command_::Config(ConfigCommand::Check { path, json }) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let settings = crate::config::settings(&text, &path)?;
            let words = |s: &crate::config::Setting| -> Vec<String> {
                s.words
                    .iter()
                    .map(|w| w.to_string_lossy().into_owned())
                    .collect()
            };
            if json {
                let map: serde_json::Map<String, serde_json::Value> = settings
                    .iter()
                    .map(|s| (s.key.clone(), words(s).into()))
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({ "path": path, "ok": true, "settings": map })
                );
            } else {
                println!("{}: ok, {} setting(s)", path.display(), settings.len());
                for s in &settings {
                    println!("  {:<24} {}", s.key, words(s).join(" "));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command_::Completions { shell } => {
            crate::cli_docs::completions(shell, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command_::Man { out } => {
            let pages = crate::cli_docs::man_pages(&out)?;
            println!("wrote {} man pages into {}", pages.len(), out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command_::Audit(args) => crate::audit::cli::run(args),
        Command_::Doctor {
            pin_dir,
            audit_db,
            json,
        } => {
            let report = crate::doctor::examine(&pin_dir, &cli.socket, &audit_db);
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", crate::doctor::render(&report));
            }
            Ok(if report.usable() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command_::Unload { pin_dir, json } => {
            if control::call(&cli.socket, &Request::Status).is_ok() {
                bail!(
                    "a daemon is running on {}; stop it first (unloading under it would end enforcement while it believes it enforces)",
                    cli.socket.display()
                );
            }
            let killed = kill_held(&pin_dir);
            let removed = loader::unload(&pin_dir)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "killed_held_tasks": killed, "removed_pins": removed })
                );
            } else {
                for pid in &killed {
                    println!("killed held task {pid}");
                }
                println!(
                    "removed {} pins under {}; interceptor no longer enforces",
                    removed.len(),
                    pin_dir.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command_::Status { json } => {
            let Response::Status(status) = call(&cli.socket, &Request::Status)? else {
                bail!("the daemon answered a status request with something else");
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                println!("backend:   {}", status.backend);
                for g in &status.guarantees {
                    println!("           - {g}");
                }
                println!("daemon:    pid {}", status.daemon_pid);
                println!("pins:      {}", status.pin_dir);
                println!("policy:    {}", status.policy);
                for (rule, why) in &status.unresolved_rules {
                    println!("           rule {rule} cannot match: {why}");
                }
                for scope in &status.agent_scopes {
                    println!("scope:     {scope}");
                }
                println!(
                    "userns:    {}",
                    if status.userns_allowed {
                        "allowed for agents"
                    } else {
                        "refused for agents (lsm backend)"
                    }
                );
                println!("tracked:   {} processes", status.tracked_processes);
                println!("pending:   {} approvals", status.pending_approvals);
                match &status.audit.failing {
                    Some(why) => println!(
                        "audit:     {} CANNOT BE WRITTEN: {why}; agent execs and matched opens are refused",
                        status.audit.target
                    ),
                    None => println!(
                        "audit:     {} ({} rows written, {} lost)",
                        status.audit.target, status.audit.committed, status.audit.lost
                    ),
                }
                if let Some(addr) = &status.http {
                    println!("http:      http://{addr}/metrics");
                }
                for (name, value) in &status.counters {
                    println!("counter:   {name} = {value}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn call(socket: &Path, request: &Request) -> anyhow::Result<Response> {
    control::call(socket, request).map_err(anyhow::Error::from)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn print_approval(r: &control::ApprovalDetail) {
    let n = &r.notice;
    println!("request {}: {}", r.id, r.state);
    if let Some(outcome) = &r.outcome {
        println!("  outcome:    {outcome}");
    }
    println!("  {}", n.headline());
    println!(
        "  agent:      {} (pid {}, uid {}) on {}",
        n.agent, n.pid, n.uid, n.host
    );
    if let Some(session) = &n.session {
        println!("  session:    {session}");
    }
    println!("  binary:     {}", n.exe);
    println!(
        "  argv:       {}",
        crate::approvals::shell_words(&n.argv, &n.target)
    );
    println!("  cwd:        {}", n.cwd);
    for p in &n.parents {
        println!("  parent:     {} {} {}", p.pid, p.exe, p.argv.join(" "));
    }
    if let Some(rationale) = &n.rationale {
        println!("  agent says: {rationale}   (unverified: the agent wrote this)");
    }
    println!("  rule:       {}", n.rule);
    if let Some(reason) = &n.reason {
        println!("  reason:     {reason}");
    }
    if !n.controls.is_empty() {
        println!("  controls:   {}", n.controls.join(", "));
    }
    println!("  reviewers:  {}", r.reviewers.join(", "));
    if r.approvals_needed > 1 {
        println!(
            "  approvals:  {} of {} ({})",
            r.approvals.len(),
            r.approvals_needed,
            r.approvals.join(", ")
        );
    }
    if r.state == "pending" {
        let left = r.deadline_ms.saturating_sub(now_ms()) / 1000;
        println!(
            "  deadline:   {left} s left, then on_timeout = {}",
            r.on_timeout
        );
    }
    for line in &n.recent {
        println!("  before:     {line}");
    }
}

fn decide(socket: &Path, request: Request, json: bool) -> anyhow::Result<ExitCode> {
    let (id, decision, pid) = match call(socket, &request)? {
        Response::Decided { id, decision, pid } => (id, decision, pid),
        Response::Voted { id, have, need } => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "id": id, "decision": "approval_recorded", "approvals": have, "needed": need })
                );
            } else {
                println!("request {id}: approval {have} of {need} recorded; it waits for the rest");
            }
            return Ok(ExitCode::SUCCESS);
        }
        _ => bail!("the daemon answered a decision with something else"),
    };
    if json {
        println!(
            "{}",
            serde_json::json!({ "id": id, "decision": decision, "pid": pid })
        );
    } else {
        let what = match decision {
            Decision::Approved => "approved: the process runs",
            Decision::Denied => "denied: the process was killed",
        };
        println!("request {id} (pid {pid}) {what}");
    }
    Ok(ExitCode::SUCCESS)
}

fn run_daemon(socket: PathBuf, args: DaemonArgs) -> anyhow::Result<ExitCode> {
    // Taken (and removed from the environment) before any thread exists.
    let notifier = crate::systemd::Notifier::from_env()?;
    if args.config.exists() {
        tracing::info!(config = %args.config.display(), "configuration file read");
    }
    let policy_path = match &args.policy {
        Some(path) => Some(path.clone()),
        None => Some(PathBuf::from(DEFAULT_POLICY_PATH)).filter(|p| p.exists()),
    };
    let (mut policy, policy_origin) = match &policy_path {
        Some(path) => (Policy::load(path)?, path.display().to_string()),
        None => (
            Policy::parse(DEFAULT_POLICY, "built-in default policy")?,
            "built-in default policy".into(),
        ),
    };
    let cli_exec_rules: Vec<(Action, String)> = args
        .deny_exec
        .iter()
        .map(|p| (Action::Deny, p.clone()))
        .chain(args.hold_exec.iter().map(|p| (Action::Ask, p.clone())))
        .collect();
    for (action, path) in &cli_exec_rules {
        policy.add_cli_rule(*action, path);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // The daemon's own configuration is never an agent's to read or change.
    let mut daemon_files = vec![DAEMON_CONFIG_DIR.to_string()];
    for path in args
        .policy
        .iter()
        .chain([&args.config])
        .filter_map(|p| std::fs::canonicalize(p).ok())
    {
        daemon_files.push(path.display().to_string());
    }
    let approvals_path = match &args.approvals {
        Some(path) => Some(path.clone()),
        None => Some(PathBuf::from(DEFAULT_APPROVALS_PATH)).filter(|p| p.exists()),
    };
    let approvals = match &approvals_path {
        Some(path) => ApprovalsConfig::load(path)?,
        None => ApprovalsConfig::builtin(),
    };
    // Reviewers, channels and their secrets are the daemon's too.
    for path in approvals_path.iter().chain(&approvals.secret_files) {
        if let Ok(path) = std::fs::canonicalize(path) {
            daemon_files.push(path.display().to_string());
        }
    }
    let mut open_rules = OpenRuleSpec::daemon_files(&daemon_files);
    let audit_target = match &args.audit_url {
        Some(url) => AuditTarget::Postgres(url.clone()),
        None => AuditTarget::Sqlite(args.audit_db.clone()),
    };
    if let AuditTarget::Sqlite(db) = &audit_target {
        open_rules.extend(sqlite_files_rule(db, "--audit-db")?);
    }
    open_rules.extend(sqlite_files_rule(&args.approvals_db, "--approvals-db")?);
    let mut store = StoreOptions::new(audit_target);
    store.synchronous = args.audit_sync;
    for (action, paths) in [
        (Action::Deny, &args.deny_open),
        (Action::Ask, &args.hold_open),
        (Action::Audit, &args.audit_open),
    ] {
        open_rules.extend(paths.iter().map(|p| OpenRuleSpec::from_flag(action, p)));
    }
    let scopes = args
        .agent_uid
        .into_iter()
        .map(|s| s.0)
        .chain(args.agent_cgroup.into_iter().map(|s| s.0))
        .collect();
    runtime.block_on(daemon::run(DaemonOptions {
        socket,
        policy,
        policy_origin,
        backend: args.backend,
        scopes,
        allow_userns: args.allow_userns,
        pin_dir: args.pin_dir,
        heartbeat_timeout_ms: args.heartbeat_timeout_ms,
        max_agent_processes: args.max_agent_processes,
        open_rules,
        policy_path,
        cli_exec_rules,
        audit: AuditConfig::new(store),
        listen: Some(args.listen).filter(|a| a != "off"),
        listen_remote: args.listen_remote,
        approvals,
        approvals_db: args.approvals_db,
        notifier,
    }))?;
    Ok(ExitCode::SUCCESS)
}

/// Keeps agents out of a SQLite database of the daemon's: the file and its -wal and -shm
/// companions (a prefix rule on the resolved path). Creates the directory.
fn sqlite_files_rule(db: &Path, flag: &str) -> anyhow::Result<Vec<OpenRuleSpec>> {
    let dir = db
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{flag}: creating the directory {}", dir.display()))?;
    let dir = std::fs::canonicalize(dir)
        .with_context(|| format!("{flag}: resolving the directory {}", dir.display()))?;
    let name = db
        .file_name()
        .with_context(|| format!("{flag} {} names no file", db.display()))?;
    let db = dir.join(name).display().to_string();
    Ok(OpenRuleSpec::daemon_files(std::slice::from_ref(&db))
        .into_iter()
        .map(|rule| OpenRuleSpec {
            target: OpenMatch::Prefix(db.clone()),
            ..rule
        })
        .collect())
}

fn run_agent(socket: &Path, args: RunArgs) -> anyhow::Result<ExitCode> {
    let response = match control::call(
        socket,
        &Request::Register {
            agent: args.agent.clone(),
            session: args.session.clone(),
        },
    ) {
        Ok(response) => Some(response),
        Err(e @ ClientError::NotRunning { .. }) if args.allow_unprotected => {
            tracing::warn!(
                "{e}; running the agent UNPROTECTED and untracked, as --allow-unprotected asks"
            );
            None
        }
        Err(e @ ClientError::NotRunning { .. }) => {
            bail!(
                "{e}; refusing to run the agent unprotected (start it with `interceptor daemon` or `systemctl start interceptor`, or pass --allow-unprotected to run it anyway)"
            )
        }
        Err(e) => return Err(e).context("registering the agent with the daemon"),
    };
    if let Some(response) = response {
        let Response::Registered { .. } = response else {
            bail!("the daemon answered the registration with something else");
        };
        if let Some(rationale) = args.rationale {
            // This process is the agent now: the daemon files the rationale under its name.
            match control::call(socket, &Request::Context { rationale }) {
                Ok(Response::ContextSet { .. }) => {}
                Ok(_) => bail!("the daemon answered the rationale with something else"),
                Err(e) => return Err(e).context("giving the daemon the agent's rationale"),
            }
        }
    }
    let (program, rest) = args.command.split_first().context("no command given")?;
    // exec() only returns on failure; on success this process is the agent from here on.
    let err = Command::new(program).args(rest).exec();
    bail!("cannot run {program}: {err}")
}

/// Kills the tasks in a pinned `HELD` map (nobody will answer them once unloaded).
fn kill_held(pin_dir: &Path) -> Vec<u32> {
    let Ok(map) = aya::maps::MapData::from_pin(pin_dir.join("HELD")) else {
        return Vec::new();
    };
    let Ok(held) = aya::maps::HashMap::<_, u32, interceptor_common::HeldTask>::try_from(
        aya::maps::Map::HashMap(map),
    ) else {
        return Vec::new();
    };
    held.iter()
        .filter_map(Result::ok)
        .filter(|(pid, task)| {
            let start = crate::procfs::ticks_of_boottime(task.start_boottime);
            crate::procfs::Pidfd::open(*pid, start).is_ok_and(|p| p.signal(libc::SIGKILL).is_ok())
        })
        .map(|(pid, _)| pid)
        .collect()
}

fn print_pending(requests: &[PendingView]) {
    if requests.is_empty() {
        println!("no pending approvals");
        return;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    println!(
        "{:>4}  {:<7} {:<12} {:>8}  {:<16} COMMAND",
        "ID", "PID", "AGENT", "WAITING", "RULE"
    );
    for r in requests {
        let waiting = now.saturating_sub(r.held_at_ms) / 1000;
        println!(
            "{:>4}  {:<7} {:<12} {:>7}s  {:<16} {}",
            r.id,
            r.pid,
            r.agent,
            waiting,
            r.rule,
            shell_words(&r.argv)
        );
        if let Some(reason) = &r.reason {
            println!("      reason: {reason}");
        }
        if let Some(session) = &r.session {
            println!("      session: {session}");
        }
        if r.mapped {
            println!(
                "      program: {} (mapped by the loader {}, not exec'd)  cwd: {}",
                r.filename, r.exe, r.cwd
            );
        } else {
            println!("      binary: {}  cwd: {}", r.exe, r.cwd);
        }
        if !r.parents.is_empty() {
            let chain: Vec<String> = r
                .parents
                .iter()
                .map(|p| match p.argv.first() {
                    Some(arg0) => format!("{} {}", p.pid, arg0),
                    None => format!("{} {}", p.pid, p.exe),
                })
                .collect();
            println!("      parents: {}", chain.join(" < "));
        }
    }
}

/// argv as a reader would type it: words with spaces or quotes are quoted.
pub(crate) fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_keeps_the_agent_command_whole() {
        let cli = Cli::try_parse_from([
            "interceptor",
            "run",
            "--agent",
            "bot",
            "--",
            "ls",
            "-la",
            "--color",
        ])
        .unwrap();
        let Command_::Run(args) = cli.command else {
            panic!("not run")
        };
        assert_eq!(args.agent, "bot");
        assert_eq!(args.command, ["ls", "-la", "--color"]);
        assert!(
            Cli::try_parse_from(["interceptor", "run"]).is_err(),
            "a command is required"
        );
        assert!(
            Cli::try_parse_from(["interceptor", "approvals", "approve", "x"]).is_err(),
            "ids are numbers"
        );
    }

    #[test]
    fn shell_words_quotes_what_needs_it() {
        let argv = ["rm", "-rf", "my dir", "it's"].map(String::from);
        assert_eq!(shell_words(&argv), r"rm -rf 'my dir' 'it'\''s'");
    }
}
