//! `interceptor policy ...`: check, explain, test and show policies, offline.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde::Serialize;

use super::{
    AccessMode, CompiledPolicy, DEFAULT_POLICY, Decision, ExecContext, NameDir, NameMatch,
    OpenContext, OpenTarget, Policy, PolicyError, cases::CaseResult, matcher::resolve_command,
};

/// Where an installed policy lives; the built-in default applies when it is absent.
pub const DEFAULT_POLICY_PATH: &str = "/etc/interceptor/policy.toml";

/// The policy the daemon would enforce: `path`, else the installed policy, else the
/// built-in default.
pub fn active_policy(path: Option<&Path>) -> Result<Policy, PolicyError> {
    match path {
        Some(path) => Policy::load(path),
        None if Path::new(DEFAULT_POLICY_PATH).exists() => {
            Policy::load(Path::new(DEFAULT_POLICY_PATH))
        }
        None => Policy::parse(DEFAULT_POLICY, "built-in default policy"),
    }
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Parse policy files and report errors (file:line:col) and what the kernel cannot
    /// decide by itself. Exits 1 when a file is invalid.
    ///
    /// Example: interceptor policy check /etc/interceptor/policy.toml
    ///
    /// Example: interceptor policy check policies/*.toml policies/examples/*.toml --json
    Check {
        /// Policy files. Default: the policy the daemon would use.
        files: Vec<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },

    /// Show how the policy judges one exec or open: every rule that matches, the winner
    /// and why. Commands are resolved as execve would ($PATH, symlinks followed).
    ///
    /// Example: interceptor policy explain --agent copilot --exec -- pg_dump -h prod-db
    ///
    /// Example: interceptor policy explain --open ~/.ssh/id_rsa
    ///
    /// Example: interceptor policy explain --open ~/.bashrc --write --json
    Explain(ExplainArgs),

    /// Run the policy's inline [[test]] cases and print a pass/fail table. Exits 1 when a
    /// case fails.
    ///
    /// Example: interceptor policy test policies/default.toml
    Test {
        /// Policy files. Default: the policy the daemon would use.
        files: Vec<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },

    /// Show the policy the daemon would enforce: its version and the kernel entries it
    /// compiles to on this host.
    ///
    /// Example: interceptor policy show
    ///
    /// Example: interceptor policy show --policy policies/examples/strict.toml --json
    ///
    /// Example: interceptor policy show --running   (as a reviewer: what the daemon enforces)
    Show {
        /// Policy file. Default: /etc/interceptor/policy.toml, else the built-in policy.
        #[arg(long, conflicts_with = "running")]
        policy: Option<PathBuf>,
        /// Ask the running daemon (over its control socket, as a configured reviewer) for the
        /// policy in force and read its kernel entries back from the maps.
        #[arg(long)]
        running: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },

    /// Against approval fatigue: per rule, from the audit log, how often it fired, asked,
    /// denied and would have asked or denied in monitor mode, how reviewers answered and
    /// how fast; and the narrower rules or grants the numbers support. Offline; never
    /// creates a database.
    ///
    /// Example: interceptor policy tune --since 7d
    ///
    /// Example: interceptor policy tune --since 30d --agent copilot --min-samples 10 --json
    Tune(super::tune::TuneArgs),
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("operation").required(true).args(["exec", "open"]))]
pub struct ExplainArgs {
    /// Policy file. Default: /etc/interceptor/policy.toml, else the built-in policy.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// The agent doing it (a declared [[agent]] or an `interceptor run --agent` name).
    #[arg(long)]
    pub agent: Option<String>,
    /// The agent's uid. Default: yours.
    #[arg(long)]
    pub uid: Option<u32>,
    /// What `~` means. Default: the agent's declared home, else the uid's home.
    #[arg(long)]
    pub home: Option<String>,
    /// Working directory of the exec. Default: the current directory.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// The parent's program. Default: unknown (rules on it are assumed to match when they
    /// would ask or deny).
    #[arg(long)]
    pub parent: Option<String>,
    /// An environment variable set for the exec (repeatable), e.g. LD_PRELOAD.
    #[arg(long = "env", value_name = "NAME")]
    pub env: Vec<String>,
    /// Judge the open of this file (`~/` is the agent's home).
    #[arg(long, value_name = "PATH")]
    pub open: Option<String>,
    /// With --open: the file is opened for writing (create, truncate, append).
    #[arg(long, requires = "open")]
    pub write: bool,
    /// Judge the exec of CMD ARGS (after --).
    #[arg(long, requires = "command")]
    pub exec: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// With --exec: the command and its arguments.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

/// Runs `interceptor policy ...`.
/// `socket`: the daemon's control socket, for `show --running`.
pub fn run(command: PolicyCommand, socket: &Path) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Check { files, json } => check(&files, json),
        PolicyCommand::Explain(args) => explain(args),
        PolicyCommand::Test { files, json } => test(&files, json),
        PolicyCommand::Show {
            running: true,
            json,
            ..
        } => show_running(socket, json),
        PolicyCommand::Show { policy, json, .. } => show(policy.as_deref(), json),
        PolicyCommand::Tune(args) => super::tune::run(args),
    }
}

fn policies(files: &[PathBuf]) -> Vec<(String, Result<Policy, PolicyError>)> {
    if files.is_empty() {
        let p = active_policy(None);
        let name = p
            .as_ref()
            .map_or(DEFAULT_POLICY_PATH.to_string(), |p| p.origin.clone());
        return vec![(name, p)];
    }
    files
        .iter()
        .map(|f| (f.display().to_string(), Policy::load(f)))
        .collect()
}

#[derive(Serialize)]
struct CheckReport {
    file: String,
    ok: bool,
    error: Option<ErrorReport>,
    version: Option<String>,
    /// The policy's `mode` (`enforce` or `monitor`).
    mode: Option<super::Mode>,
    rules: usize,
    /// Rules in `monitor` mode: reported, never enforced.
    monitor_rules: Vec<String>,
    tests: usize,
    warnings: Vec<String>,
}

#[derive(Serialize)]
struct ErrorReport {
    line: Option<usize>,
    column: Option<usize>,
    message: String,
}

fn check(files: &[PathBuf], json: bool) -> anyhow::Result<ExitCode> {
    let mut reports = Vec::new();
    for (file, result) in policies(files) {
        reports.push(match result {
            Ok(p) => CheckReport {
                file,
                ok: true,
                error: None,
                version: Some(p.version().to_string()),
                mode: Some(p.mode),
                rules: p.rules.len(),
                monitor_rules: monitor_rules(&p),
                tests: p.tests.len(),
                warnings: [p.compile().warnings(), monitor_warnings(&p)].concat(),
            },
            Err(e) => CheckReport {
                file,
                ok: false,
                error: Some(match &e {
                    PolicyError::Parse {
                        line,
                        column,
                        message,
                        ..
                    } => ErrorReport {
                        line: Some(*line),
                        column: Some(*column),
                        message: message.clone(),
                    },
                    PolicyError::Read { .. } => ErrorReport {
                        line: None,
                        column: None,
                        message: e.to_string(),
                    },
                }),
                version: None,
                mode: None,
                rules: 0,
                monitor_rules: Vec::new(),
                tests: 0,
                warnings: Vec::new(),
            },
        });
    }
    let ok = reports.iter().all(|r| r.ok);
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for r in &reports {
            match &r.error {
                None => {
                    let monitored = match (r.mode, r.monitor_rules.len()) {
                        (Some(super::Mode::Monitor), _) => " (policy in monitor mode)".to_string(),
                        (_, 0) => String::new(),
                        (_, n) => format!(" ({n} in monitor mode)"),
                    };
                    println!(
                        "ok    {}: {} rules{monitored}, {} tests, version {}",
                        r.file,
                        r.rules,
                        r.tests,
                        short(r.version.as_deref().unwrap_or_default())
                    );
                    for w in &r.warnings {
                        println!("      warning: {w}");
                    }
                }
                Some(e) => match (e.line, e.column) {
                    (Some(l), Some(c)) => println!("error {}:{l}:{c}: {}", r.file, e.message),
                    _ => println!("error {}", e.message),
                },
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Names of the rules in `monitor` mode.
fn monitor_rules(policy: &Policy) -> Vec<String> {
    policy
        .rules
        .iter()
        .filter(|r| r.is_monitor())
        .map(|r| r.name.clone())
        .collect()
}

/// What shadow mode does not cover: `[defaults]` are always enforced.
fn monitor_warnings(policy: &Policy) -> Vec<String> {
    let mut out = Vec::new();
    if policy.mode == super::Mode::Monitor {
        for (what, action) in [
            ("exec", policy.defaults.exec),
            ("open", policy.defaults.open),
        ] {
            if action >= super::Action::Ask {
                out.push(format!(
                    "the policy is in monitor mode, but [defaults] {what} = \"{action}\" is enforced: defaults have no monitor mode"
                ));
            }
        }
    }
    out
}

fn short(version: &str) -> &str {
    &version[..version.len().min(12)]
}

#[derive(Serialize)]
struct Explanation {
    policy: String,
    policy_version: String,
    /// The exec or open judged, as resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    exec: Option<ExecContext>,
    #[serde(skip_serializing_if = "Option::is_none")]
    open: Option<OpenContext>,
    notes: Vec<String>,
    decision: Decision,
    /// For `env CMD` and `sh -c CMD`: the exec that program would make next, judged on
    /// its own when it happens.
    #[serde(skip_serializing_if = "Option::is_none")]
    then: Option<Box<Explanation>>,
}

fn explain(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let policy = active_policy(args.policy.as_deref())?;
    let uid = args.uid.unwrap_or_else(|| unsafe { libc::getuid() });
    let home = args
        .home
        .clone()
        .or_else(|| {
            args.agent
                .as_deref()
                .and_then(|a| policy.agent(a))
                .and_then(|a| a.home.clone())
        })
        .or_else(|| super::matcher::passwd_home(uid));
    let explanation = if let Some(path) = &args.open {
        let path = match (path.strip_prefix("~/"), &home) {
            (Some(rest), Some(h)) => format!("{}/{rest}", h.trim_end_matches('/')),
            (Some(_), None) => anyhow::bail!("{path}: no home is known for ~ (give --home)"),
            (None, _) => path.clone(),
        };
        let ctx = OpenContext {
            agent: args.agent.clone(),
            uid: Some(uid),
            path,
            access: if args.write {
                AccessMode::WRITE
            } else {
                AccessMode::READ
            },
            home,
        };
        Explanation {
            policy: policy.origin.clone(),
            policy_version: policy.version().to_string(),
            decision: policy.evaluate_open(&ctx),
            exec: None,
            open: Some(ctx),
            notes: Vec::new(),
            then: None,
        }
    } else {
        let cwd = match &args.cwd {
            Some(c) => c.clone(),
            None => std::env::current_dir().context("reading the current directory")?,
        };
        let search =
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
        explain_exec(&policy, &args, &args.command, &cwd, &search, home, uid, 0)
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&explanation)?);
    } else {
        print_explanation(&explanation, &policy, 0);
    }
    Ok(ExitCode::SUCCESS)
}

#[expect(
    clippy::too_many_arguments,
    reason = "recursion carries the whole context"
)]
fn explain_exec(
    policy: &Policy,
    args: &ExplainArgs,
    argv: &[String],
    cwd: &Path,
    search: &str,
    home: Option<String>,
    uid: u32,
    depth: usize,
) -> Explanation {
    let mut notes = Vec::new();
    let command = argv.first().cloned().unwrap_or_default();
    let binary = match resolve_command(&command, cwd, search) {
        Some(b) => {
            if b != command {
                notes.push(format!(
                    "{command:?} resolves to {b} (what the kernel reports)"
                ));
            }
            b
        }
        None => {
            let b = super::cases::test_binary(&command);
            notes.push(format!("{command:?} is not installed here; judged as {b}"));
            b
        }
    };
    if args.parent.is_none() {
        notes.push(
            "parent unknown: parent rules that would ask or deny are assumed to match (--parent)"
                .into(),
        );
    }
    let ctx = ExecContext {
        agent: args.agent.clone(),
        uid: Some(uid),
        binary: binary.clone(),
        argv: argv.to_vec(),
        cwd: Some(cwd.display().to_string()),
        parent: args.parent.clone(),
        env_keys: Some(args.env.clone()),
        home: home.clone(),
    };
    let decision = policy.evaluate_exec(&ctx);
    let then = (depth < 4)
        .then(|| inner_command(&binary, argv))
        .flatten()
        .map(|inner| {
            notes.push(format!(
                "{} starts another program: that exec is judged on its own when it happens (below)",
                binary.rsplit('/').next().unwrap_or(&binary)
            ));
            Box::new(explain_exec(
                policy,
                args,
                &inner,
                cwd,
                search,
                home,
                uid,
                depth + 1,
            ))
        });
    Explanation {
        policy: policy.origin.clone(),
        policy_version: policy.version().to_string(),
        exec: Some(ctx),
        open: None,
        notes,
        decision,
        then,
    }
}

/// The command `env [VAR=val|-opts]... CMD` or `sh -c 'CMD'` runs next, if any.
fn inner_command(binary: &str, argv: &[String]) -> Option<Vec<String>> {
    let name = binary.rsplit('/').next().unwrap_or(binary);
    let args = argv.get(1..)?;
    match name {
        "env" => {
            let rest: Vec<String> = args
                .iter()
                .skip_while(|a| a.starts_with('-') || a.contains('='))
                .cloned()
                .collect();
            (!rest.is_empty()).then_some(rest)
        }
        "sh" | "bash" | "dash" | "zsh" | "ksh" => {
            let i = args.iter().position(|a| {
                a == "-c" || (a.starts_with('-') && !a.starts_with("--") && a.ends_with('c'))
            })?;
            let words = shell_split(args.get(i + 1)?);
            (!words.is_empty()).then_some(words)
        }
        _ => None,
    }
}

/// Splits the first simple command of a shell string (quotes and backslashes honoured;
/// stops at `;`, `|`, `&`).
fn shell_split(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                word.extend(chars.by_ref().take_while(|&c| c != '\''));
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            ';' | '|' | '&' => break,
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

fn print_explanation(e: &Explanation, policy: &Policy, depth: usize) {
    let pad = "  ".repeat(depth);
    if depth == 0 {
        println!(
            "{pad}policy:   {} (version {})",
            e.policy,
            short(&e.policy_version)
        );
    }
    if let Some(x) = &e.exec {
        println!(
            "{pad}exec:     {} {}",
            x.binary,
            crate::cli::shell_words(x.argv.get(1..).unwrap_or_default())
        );
        println!("{pad}agent:    {}", x.agent.as_deref().unwrap_or("(any)"));
    }
    if let Some(o) = &e.open {
        let mode = if o.access.write { "write" } else { "read" };
        println!("{pad}open:     {} ({mode})", o.path);
        println!("{pad}agent:    {}", o.agent.as_deref().unwrap_or("(any)"));
    }
    for n in &e.notes {
        println!("{pad}note:     {n}");
    }
    let d = &e.decision;
    let enforced = d.matched.iter().filter(|m| !m.monitor).count();
    match &d.winner {
        Some(w) => {
            let line = policy.rule(w.rule_id).map_or(0, |r| r.line);
            println!(
                "{pad}decision: {} by rule {} (line {line}): the most restrictive of {enforced} enforced matching rule(s)",
                d.action.as_str().to_uppercase(),
                w.name,
            );
        }
        None if enforced == 0 && !d.matched.is_empty() => println!(
            "{pad}decision: {} (no enforced rule matched)",
            d.action.as_str().to_uppercase()
        ),
        None => println!(
            "{pad}decision: {} (no rule matched)",
            d.action.as_str().to_uppercase()
        ),
    }
    println!("{pad}reason:   {}", d.reason);
    if let Some(shadow) = &d.shadow {
        let line = policy.rule(shadow.winner.rule_id).map_or(0, |r| r.line);
        println!(
            "{pad}shadow:   would {} (monitor mode): {}; rule {} (line {line}): {}",
            shadow.action,
            enforced_outcome(d.action),
            shadow.winner.name,
            shadow.reason
        );
    }
    if !d.controls.is_empty() {
        println!("{pad}controls: {}", d.controls.join(", "));
    }
    if d.action == super::Action::Ask {
        println!(
            "{pad}asks:     {} (timeout {}s, then {})",
            if d.reviewers.is_empty() {
                "any reviewer".to_string()
            } else {
                d.reviewers.join(", ")
            },
            d.timeout_secs,
            d.on_timeout
        );
    }
    for m in &d.matched {
        let assumed = if m.assumed.is_empty() {
            String::new()
        } else {
            format!("  (assumed: {})", m.assumed.join(", "))
        };
        println!(
            "{pad}  matched #{:<3} {:<6} {}{}{assumed}",
            m.rule_id,
            m.action.as_str(),
            m.name,
            if m.monitor {
                "  [monitor: not enforced]"
            } else {
                ""
            }
        );
    }
    if let Some(then) = &e.then {
        println!("{pad}then:");
        print_explanation(then, policy, depth + 1);
    }
}

/// What happens to an operation under an enforced action.
fn enforced_outcome(action: super::Action) -> &'static str {
    match action {
        super::Action::Allow | super::Action::Audit => "allowed",
        super::Action::Ask => "held for a reviewer",
        super::Action::Deny => "denied",
    }
}

#[derive(Serialize)]
struct TestReport {
    file: String,
    error: Option<String>,
    cases: Vec<CaseResult>,
}

fn test(files: &[PathBuf], json: bool) -> anyhow::Result<ExitCode> {
    let mut reports = Vec::new();
    for (file, result) in policies(files) {
        reports.push(match result {
            Ok(p) => TestReport {
                file,
                error: None,
                cases: p.run_tests(),
            },
            Err(e) => TestReport {
                file,
                error: Some(e.to_string()),
                cases: Vec::new(),
            },
        });
    }
    let ok = reports
        .iter()
        .all(|r| r.error.is_none() && r.cases.iter().all(|c| c.passed));
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for r in &reports {
            println!("{}", r.file);
            if let Some(e) = &r.error {
                println!("  error {e}");
                continue;
            }
            if r.cases.is_empty() {
                println!("  (no [[test]] cases)");
            }
            for c in &r.cases {
                let winner = c
                    .decision
                    .winner
                    .as_ref()
                    .map_or("(default)", |w| w.name.as_str());
                let shadow = c.decision.shadow.as_ref().map_or(String::new(), |s| {
                    format!("  (would {} by {}, monitor mode)", s.action, s.winner.name)
                });
                println!(
                    "  {} {:<48} {:<6} {winner}{shadow}",
                    if c.passed { "PASS" } else { "FAIL" },
                    c.name,
                    c.decision.action.as_str(),
                );
                if let Some(f) = &c.failure {
                    println!("       {f}");
                }
            }
            let passed = r.cases.iter().filter(|c| c.passed).count();
            println!("  {passed} passed, {} failed", r.cases.len() - passed);
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[derive(Serialize)]
struct ShowReport<'a> {
    policy: &'a str,
    policy_version: &'a str,
    mode: super::Mode,
    rules: usize,
    monitor_rules: Vec<String>,
    agents: Vec<&'a str>,
    compiled: &'a CompiledPolicy,
    warnings: Vec<String>,
}

fn show_running(socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    use crate::control::{Request, Response, call};
    let view = match call(socket, &Request::ActivePolicy)
        .with_context(|| format!("asking the daemon at {}", socket.display()))?
    {
        Response::ActivePolicy(view) => view,
        Response::Error { message } => anyhow::bail!("the daemon refused: {message}"),
        other => anyhow::bail!("the daemon answered `policy show --running` with {other:?}"),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("policy:   {} (in force in the running daemon)", view.origin);
    println!("version:  {}", view.policy_version);
    if let Some(reload) = &view.last_reload {
        println!("reload:   {reload}");
    }
    println!();
    println!(
        "kernel exec entries, read from EXEC_RULES ({}):",
        view.exec.len()
    );
    for e in &view.exec {
        println!(
            "  {:<22} {:<7} {:<28} {}",
            format!("{}:{}", e.dev, e.ino),
            e.verdict,
            e.rule.as_deref().unwrap_or("?"),
            e.path
                .as_deref()
                .unwrap_or("(not written by the policy in force)")
        );
    }
    println!(
        "  every other agent exec: {}",
        if view.exec_fallback {
            "held and judged in userspace (EXEC_FALLBACK is set)"
        } else {
            "runs (no EXEC_FALLBACK)"
        }
    );
    println!();
    println!(
        "kernel open entries, read from OPEN_INODES, OPEN_PATHS, OPEN_NAMES, OPEN_SUFFIXES, OPEN_DIRS and OPEN_DEFAULT ({}):",
        view.open.len()
    );
    for o in &view.open {
        let target = match o.scope {
            Some(scope) => format!("{} (scope {scope})", o.target),
            None => o.target.clone(),
        };
        let rule = match (&o.rule, o.matches.as_str()) {
            (Some(rule), _) => rule.as_str(),
            (None, "default") => "[defaults] open",
            (None, "in-dir" | "below-dir") => "-",
            (None, _) => "?",
        };
        println!(
            "  {:<11} {:<7} {:<27} {:<28} {}",
            o.matches,
            o.verdict,
            o.access.join(","),
            rule,
            target
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn show(path: Option<&Path>, json: bool) -> anyhow::Result<ExitCode> {
    let policy = active_policy(path)?;
    let compiled = policy.compile();
    let name = |id: u32| policy.rule(id).map_or("?".to_string(), |r| r.name.clone());
    if json {
        let report = ShowReport {
            policy: &policy.origin,
            policy_version: policy.version(),
            mode: policy.mode,
            rules: policy.rules.len(),
            monitor_rules: monitor_rules(&policy),
            agents: policy.agents.iter().map(|a| a.name.as_str()).collect(),
            compiled: &compiled,
            warnings: [compiled.warnings(), monitor_warnings(&policy)].concat(),
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("policy:   {}", policy.origin);
    println!("version:  {}", policy.version());
    println!(
        "rules:    {} ({} exec, {} open), {} agents, {} tests",
        policy.rules.len(),
        policy
            .rules
            .iter()
            .filter(|r| r.operation == super::Operation::Exec)
            .count(),
        policy
            .rules
            .iter()
            .filter(|r| r.operation == super::Operation::Open)
            .count(),
        policy.agents.len(),
        policy.tests.len()
    );
    let monitored = monitor_rules(&policy);
    match policy.mode {
        super::Mode::Monitor => println!(
            "mode:     monitor: rules are reported, not enforced ({} of {} rules; [defaults] stay enforced)",
            monitored.len(),
            policy.rules.len()
        ),
        super::Mode::Enforce if !monitored.is_empty() => println!(
            "mode:     enforce, except {} rule(s) in monitor mode: {}",
            monitored.len(),
            monitored.join(", ")
        ),
        super::Mode::Enforce => println!("mode:     enforce"),
    }
    println!(
        "defaults: exec {}, open {}, ask timeout {}s then {}",
        policy.defaults.exec,
        policy.defaults.open,
        policy.defaults.timeout.as_secs(),
        policy.defaults.on_timeout
    );
    println!();
    println!("kernel exec entries ({}):", compiled.exec.len());
    println!(
        "  {:<22} {:<6} {:<10} {:<28} PATH",
        "DEV:INODE", "VERDICT", "DECIDED BY", "RULE"
    );
    for e in &compiled.exec {
        println!(
            "  {:<22} {:<7} {:<10} {:<28} {}",
            format!("{}:{}", e.key.dev, e.key.ino),
            e.action.as_str(),
            match e.decided_by {
                super::DecidedBy::Kernel => "kernel",
                super::DecidedBy::Userspace => "userspace",
            },
            format!("#{} {}", e.rule_id, name(e.rule_id)),
            match e.shadow {
                Some(would) => format!("{}  (monitor: would {would})", e.path),
                None => e.path.clone(),
            }
        );
    }
    match &compiled.exec_fallback {
        Some(f) => println!(
            "  every other exec of every agent: held and judged in userspace (because of {})",
            f.because.join(", ")
        ),
        None => println!(
            "  every other exec: allow in the kernel, recorded as {}",
            policy.defaults.exec
        ),
    }
    println!();
    println!(
        "open entries ({}; the kernel enforces them; default {}):",
        compiled.open.len(),
        compiled.open_default
    );
    for o in &compiled.open {
        let target = match &o.target {
            OpenTarget::Exact { path, inode } => match inode {
                Some(k) => format!("exact  {path} ({}:{})", k.dev, k.ino),
                None => format!("exact  {path}"),
            },
            OpenTarget::Prefix(p) => format!("prefix {p}"),
            OpenTarget::Name { dir, name } => {
                let name = match name {
                    NameMatch::Is(n) => n.clone(),
                    NameMatch::StartsWith(n) => format!("{n}*"),
                    NameMatch::EndsWith(n) => format!("*{n}"),
                };
                match dir {
                    NameDir::Anywhere => format!("name   {name} in any directory"),
                    NameDir::In(d) => format!("name   {name} in {d}"),
                    NameDir::Under(d) => format!("name   {name} anywhere below {d}"),
                }
            }
            OpenTarget::Pattern(p) => format!("glob   {p} (NOT matched by the kernel)"),
        };
        let access = match o.access {
            super::access_mask::READ => "read",
            super::access_mask::WRITE => "write",
            _ => "any",
        };
        let shadow = o
            .shadow
            .map_or(String::new(), |w| format!("  (monitor: would {w})"));
        println!(
            "  {:<7} {:<6} #{:<3} {:<28} {target}{shadow}",
            o.action.as_str(),
            access,
            o.rule_id,
            name(o.rule_id)
        );
    }
    if !compiled.labelled_in_userspace.is_empty() {
        println!();
        println!(
            "allow/audit rules judged in userspace when the exec is recorded (no hold): {}",
            compiled.labelled_in_userspace.join(", ")
        );
    }
    if !compiled.monitored_in_userspace.is_empty() {
        println!();
        println!(
            "monitor rules judged in userspace on every reported exec (no hold): {}",
            compiled.monitored_in_userspace.join(", ")
        );
    }
    let warnings = [compiled.warnings(), monitor_warnings(&policy)].concat();
    if !warnings.is_empty() {
        println!();
        for w in warnings {
            println!("warning: {w}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn env_and_shell_wrappers_reveal_the_program_they_start() {
        assert_eq!(
            inner_command(
                "/usr/bin/env",
                &s(&["env", "-i", "PGPASSWORD=x", "pg_dump", "-h", "prod"])
            ),
            Some(s(&["pg_dump", "-h", "prod"]))
        );
        assert_eq!(
            inner_command(
                "/usr/bin/bash",
                &s(&["bash", "-c", "pg_dump -h 'prod db' | gzip"])
            ),
            Some(s(&["pg_dump", "-h", "prod db"]))
        );
        assert_eq!(
            inner_command(
                "/usr/bin/dash",
                &s(&["sh", "-ec", r#"pg_dump "-h" prod\-db"#])
            ),
            Some(s(&["pg_dump", "-h", "prod-db"]))
        );
        assert_eq!(inner_command("/usr/bin/ls", &s(&["ls", "-c", "x"])), None);
        assert_eq!(inner_command("/usr/bin/env", &s(&["env"])), None);
    }
}
