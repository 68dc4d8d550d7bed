//! Judging one operation: which rules match an exec or an open, which one wins, and why.
//!
//! Matchers of one kind are alternatives (any glob in a list may match); different kinds
//! must all match, except the three ways of naming the program (`binary`, `binary_glob`,
//! `basename`), which are alternatives to each other. A fact the caller could not supply
//! (cwd, parent, environment, agent) never lets an `ask` or `deny` rule slip: such a rule
//! is taken to match, and the match says what was assumed. It never makes an `allow` or
//! `audit` rule match.

use std::{collections::BTreeSet, path::Path};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use regex::{Regex, RegexSet};
use serde::Serialize;

use super::{Access, Action, Agent, Operation, Policy, Rule, Severity};

/// One exec, as the kernel resolved it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExecContext {
    /// The agent's name (`interceptor run --agent NAME`, or the declared agent selected).
    pub agent: Option<String>,
    pub uid: Option<u32>,
    /// The program's real path, as the kernel resolved it (`/proc/PID/exe`): symlinks are
    /// already followed, so this is never the name the caller typed.
    pub binary: String,
    /// The full argument vector, argv[0] included.
    pub argv: Vec<String>,
    pub cwd: Option<String>,
    /// The real path of the parent's program.
    pub parent: Option<String>,
    /// Names of the environment variables set for the new program; `None` when unknown.
    pub env_keys: Option<Vec<String>>,
    /// What `~` means for this agent; default: the declared agent's home, else the uid's.
    pub home: Option<String>,
}

/// How a file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AccessMode {
    pub read: bool,
    /// Write, create, truncate or append.
    pub write: bool,
}

impl AccessMode {
    pub const READ: Self = Self {
        read: true,
        write: false,
    };
    pub const WRITE: Self = Self {
        read: false,
        write: true,
    };
}

/// One open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenContext {
    pub agent: Option<String>,
    pub uid: Option<u32>,
    /// The absolute path opened (as the kernel resolved it).
    pub path: String,
    pub access: AccessMode,
    /// What `~` means for this agent; default: the declared agent's home, else the uid's.
    pub home: Option<String>,
}

/// One rule that matched an operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleMatch {
    /// 1-based index of the rule in the policy (the kernel's rule id).
    pub rule_id: u32,
    pub name: String,
    pub action: Action,
    pub reason: Option<String>,
    pub severity: Option<Severity>,
    pub controls: Vec<String>,
    /// Facts the caller could not supply that this match assumed (e.g. "cwd").
    pub assumed: Vec<String>,
    /// The rule is in `monitor` mode: it takes no part in [`Decision::action`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub monitor: bool,
}

/// What a `monitor` rule would have done, had it been enforced: present only when it is
/// stricter than what was enforced, so the operation went on where it would have been held
/// or refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shadow {
    /// The would-be action (stricter than [`Decision::action`]).
    pub action: Action,
    /// The most restrictive matching monitor rule (the first in the file among equals).
    pub winner: RuleMatch,
    /// Its reason, or that it matched.
    pub reason: String,
    /// Its compliance control tags.
    pub controls: Vec<String>,
}

/// The policy's answer for one operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub operation: Operation,
    /// What is enforced: the most restrictive matching `enforce` rule, else the default.
    /// `monitor` rules never change it.
    pub action: Action,
    /// The enforced rule that decided; `None` when no enforced rule matched and the
    /// default applied.
    pub winner: Option<RuleMatch>,
    /// Every rule that matched (`enforce` and `monitor`), in file order.
    pub matched: Vec<RuleMatch>,
    /// Shadow mode: a matching `monitor` rule is stricter than [`Decision::action`]. The
    /// operation goes on as `action` says; record this as the would-be decision.
    pub shadow: Option<Shadow>,
    /// Why: the winner's reason, or which default applied.
    pub reason: String,
    /// The winner's compliance control tags.
    pub controls: Vec<String>,
    pub severity: Option<Severity>,
    /// Who may answer an `ask` (groups expanded).
    pub reviewers: Vec<String>,
    /// How long an `ask` waits, in seconds, and what it becomes unanswered.
    pub timeout_secs: u64,
    pub on_timeout: Action,
    /// SHA-256 of the policy source: which policy took this decision.
    pub policy_version: String,
}

/// A positional argument pattern (`[[rule.arg]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ArgPattern {
    Glob(String),
    Regex(String),
}

/// The exec matchers of a rule as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ExecSpec {
    pub binary: Vec<String>,
    pub binary_glob: Vec<String>,
    pub basename: Vec<String>,
    pub argv_glob: Vec<String>,
    pub argv_regex: Vec<String>,
    pub argv_not_regex: Vec<String>,
    pub any_arg: Vec<String>,
    pub args: Vec<(usize, ArgPattern)>,
    pub cwd: Vec<String>,
    pub parent: Vec<String>,
    pub env: Vec<String>,
}

impl ExecSpec {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Only exact binary paths: the kernel can decide this rule from the inode alone.
    pub fn binary_only(&self) -> bool {
        !self.binary.is_empty()
            && *self
                == (Self {
                    binary: self.binary.clone(),
                    ..Self::default()
                })
    }
}

/// A rule's matchers, compiled.
#[derive(Debug, Clone)]
pub(crate) enum RuleMatcher {
    Exec(Box<ExecMatcher>),
    Open(OpenMatcher),
}

#[derive(Debug, Clone)]
pub(crate) struct ExecMatcher {
    pub spec: ExecSpec,
    /// `binary` paths with symlinks resolved on this host (what the kernel reports).
    canonical: Vec<String>,
    binary_glob: Option<GlobSet>,
    argv_glob: Option<GlobSet>,
    argv_regex: Option<RegexSet>,
    argv_not_regex: Option<RegexSet>,
    any_arg: Option<GlobSet>,
    args: Vec<(usize, CompiledArg)>,
    cwd: Option<GlobSet>,
    parent: Option<GlobSet>,
}

#[derive(Debug, Clone)]
enum CompiledArg {
    Glob(globset::GlobMatcher),
    Regex(Regex),
}

#[derive(Debug, Clone)]
pub(crate) struct OpenMatcher {
    pub paths: Vec<String>,
    pub access: Access,
    set: GlobSet,
}

/// Globs over paths: `*` stops at `/`, `**` crosses it.
fn path_globs(globs: &[String]) -> Option<GlobSet> {
    globs_with(globs, true)
}

fn globs_with(globs: &[String], literal_separator: bool) -> Option<GlobSet> {
    if globs.is_empty() {
        return None;
    }
    let mut builder = GlobSetBuilder::new();
    for g in globs {
        builder.add(glob(g, literal_separator));
    }
    Some(
        builder
            .build()
            .expect("globs were validated when the policy was parsed"),
    )
}

fn glob(g: &str, literal_separator: bool) -> Glob {
    GlobBuilder::new(g)
        .literal_separator(literal_separator)
        .backslash_escape(true)
        .build()
        .expect("globs were validated when the policy was parsed")
}

impl RuleMatcher {
    pub fn exec(spec: ExecSpec) -> Self {
        let canonical = spec
            .binary
            .iter()
            .filter_map(|b| std::fs::canonicalize(b).ok())
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let args = spec
            .args
            .iter()
            .map(|(i, p)| {
                let compiled = match p {
                    ArgPattern::Glob(g) => CompiledArg::Glob(glob(g, false).compile_matcher()),
                    ArgPattern::Regex(r) => {
                        CompiledArg::Regex(Regex::new(r).expect("validated when parsed"))
                    }
                };
                (*i, compiled)
            })
            .collect();
        RuleMatcher::Exec(Box::new(ExecMatcher {
            canonical,
            binary_glob: path_globs(&spec.binary_glob),
            argv_glob: globs_with(&spec.argv_glob, false),
            argv_regex: (!spec.argv_regex.is_empty())
                .then(|| RegexSet::new(&spec.argv_regex).expect("validated when parsed")),
            argv_not_regex: (!spec.argv_not_regex.is_empty())
                .then(|| RegexSet::new(&spec.argv_not_regex).expect("validated when parsed")),
            any_arg: globs_with(&spec.any_arg, false),
            args,
            cwd: path_globs(&spec.cwd),
            parent: path_globs(&spec.parent),
            spec,
        }))
    }

    pub fn exact_binary(path: &str) -> Self {
        Self::exec(ExecSpec {
            binary: vec![path.to_string()],
            ..ExecSpec::default()
        })
    }

    pub fn open(paths: Vec<String>, access: Access) -> Self {
        RuleMatcher::Open(OpenMatcher {
            set: path_globs(&paths).expect("an open rule has paths"),
            paths,
            access,
        })
    }
}

/// Whether `path` matches `set`, where patterns may start with `~` (the agent's home).
/// With no known home, any `/home/NAME/` or `/root/` counts as a home: an unknown home
/// must not let a `~` rule miss.
fn home_match(set: &GlobSet, path: &str, home: Option<&str>) -> bool {
    if set.is_match(path) {
        return true;
    }
    let relative = match home {
        Some(home) => {
            let home = home.trim_end_matches('/');
            if path == home {
                return set.is_match("~");
            }
            path.strip_prefix(home).and_then(|r| r.strip_prefix('/'))
        }
        None => path.strip_prefix("/root/").or_else(|| {
            path.strip_prefix("/home/")
                .and_then(|r| r.split_once('/'))
                .map(|(_, rest)| rest)
        }),
    };
    relative.is_some_and(|rest| set.is_match(format!("~/{rest}")))
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

impl ExecMatcher {
    /// `None`: no match. `Some(assumed)`: a match, assuming the named unknown facts match.
    fn matches(&self, ctx: &ExecContext, home: Option<&str>) -> Option<Vec<String>> {
        let s = &self.spec;
        let mut assumed = Vec::new();
        let names_program =
            !s.binary.is_empty() || !s.binary_glob.is_empty() || !s.basename.is_empty();
        if names_program {
            let exact = s
                .binary
                .iter()
                .chain(&self.canonical)
                .any(|b| *b == ctx.binary);
            let globbed = self
                .binary_glob
                .as_ref()
                .is_some_and(|g| g.is_match(&ctx.binary));
            let named = s.basename.iter().any(|b| b == basename(&ctx.binary));
            if !(exact || globbed || named) {
                return None;
            }
        }
        let args = ctx.argv.get(1..).unwrap_or_default();
        if self.argv_glob.is_some() || self.argv_regex.is_some() || self.argv_not_regex.is_some() {
            let joined = args.join(" ");
            if let Some(g) = &self.argv_glob
                && !g.is_match(&joined)
            {
                return None;
            }
            if let Some(r) = &self.argv_regex
                && !r.is_match(&joined)
            {
                return None;
            }
            if let Some(r) = &self.argv_not_regex
                && r.is_match(&joined)
            {
                return None;
            }
        }
        if let Some(g) = &self.any_arg
            && !args.iter().any(|a| g.is_match(a))
        {
            return None;
        }
        for (index, pattern) in &self.args {
            let arg = ctx.argv.get(*index)?;
            let ok = match pattern {
                CompiledArg::Glob(g) => g.is_match(arg),
                CompiledArg::Regex(r) => r.is_match(arg),
            };
            if !ok {
                return None;
            }
        }
        if let Some(g) = &self.cwd {
            match &ctx.cwd {
                Some(cwd) if !home_match(g, cwd, home) => return None,
                Some(_) => {}
                None => assumed.push("cwd".to_string()),
            }
        }
        if let Some(g) = &self.parent {
            match &ctx.parent {
                Some(parent) if !g.is_match(parent) => return None,
                Some(_) => {}
                None => assumed.push("parent".to_string()),
            }
        }
        if !s.env.is_empty() {
            match &ctx.env_keys {
                Some(keys) if !s.env.iter().any(|k| keys.contains(k)) => return None,
                Some(_) => {}
                None => assumed.push("env".to_string()),
            }
        }
        Some(assumed)
    }
}

impl OpenMatcher {
    fn matches(&self, ctx: &OpenContext, home: Option<&str>) -> bool {
        let access = match self.access {
            Access::Read => ctx.access.read,
            Access::Write => ctx.access.write,
            Access::Any => true,
        };
        access && home_match(&self.set, &ctx.path, home)
    }
}

/// Whether a declared agent's selectors match a process.
pub(crate) fn agent_selected(
    agent: &Agent,
    uid: u32,
    cgroup: Option<&str>,
    launched_name: Option<&str>,
) -> bool {
    if agent.uids.is_empty() && agent.cgroups.is_empty() && agent.launched_names.is_empty() {
        return launched_name == Some(agent.name.as_str());
    }
    let any = |globs: &[String], value: Option<&str>| {
        value.is_some_and(|v| {
            globs
                .iter()
                .any(|g| glob(g, true).compile_matcher().is_match(v))
        })
    };
    agent.uids.contains(&uid)
        || any(&agent.cgroups, cgroup)
        || any(&agent.launched_names, launched_name)
}

/// The home directory of `uid` in /etc/passwd.
pub fn passwd_home(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 6 && fields[2].parse() == Ok(uid)).then(|| fields[5].to_string())
    })
}

impl Policy {
    /// What `~` means for this agent: the caller's answer, the declared home, the uid's.
    fn home_of(
        &self,
        given: Option<&str>,
        agent: Option<&str>,
        uid: Option<u32>,
    ) -> Option<String> {
        given
            .map(str::to_string)
            .or_else(|| {
                agent
                    .and_then(|a| self.agent(a))
                    .and_then(|a| a.home.clone())
            })
            .or_else(|| uid.and_then(passwd_home))
    }

    /// Whether the rule's agent list admits this agent; `None`: the agent is unknown.
    fn agent_admits(rule: &Rule, agent: Option<&str>) -> Option<bool> {
        if rule.agents.is_empty() {
            return Some(true);
        }
        agent.map(|a| rule.agents.iter().any(|x| x == a))
    }

    /// Judges one exec: every exec rule that matches, and the most restrictive one.
    pub fn evaluate_exec(&self, ctx: &ExecContext) -> Decision {
        let home = self.home_of(ctx.home.as_deref(), ctx.agent.as_deref(), ctx.uid);
        let mut matched = Vec::new();
        for (index, rule) in self.rules.iter().enumerate() {
            let RuleMatcher::Exec(m) = &rule.matcher else {
                continue;
            };
            let mut assumed = match Self::agent_admits(rule, ctx.agent.as_deref()) {
                Some(false) => continue,
                Some(true) => Vec::new(),
                None => vec!["agent".to_string()],
            };
            let Some(more) = m.matches(ctx, home.as_deref()) else {
                continue;
            };
            assumed.extend(more);
            if assumed.is_empty() || rule.action >= Action::Ask {
                matched.push(rule_match(index, rule, assumed));
            }
        }
        self.decide(Operation::Exec, matched)
    }

    /// Judges one open: every open rule that matches, and the most restrictive one.
    pub fn evaluate_open(&self, ctx: &OpenContext) -> Decision {
        let home = self.home_of(ctx.home.as_deref(), ctx.agent.as_deref(), ctx.uid);
        let mut matched = Vec::new();
        for (index, rule) in self.rules.iter().enumerate() {
            let RuleMatcher::Open(m) = &rule.matcher else {
                continue;
            };
            let assumed = match Self::agent_admits(rule, ctx.agent.as_deref()) {
                Some(false) => continue,
                Some(true) => Vec::new(),
                None if rule.action >= Action::Ask => vec!["agent".to_string()],
                None => continue,
            };
            if m.matches(ctx, home.as_deref()) {
                matched.push(rule_match(index, rule, assumed));
            }
        }
        self.decide(Operation::Open, matched)
    }

    /// How long an `ask` by `rule` waits: the rule's own `timeout`, else the defaults'.
    pub fn ask_timeout(&self, rule: Option<&Rule>) -> std::time::Duration {
        rule.and_then(|r| r.timeout)
            .unwrap_or(self.defaults.timeout)
    }

    /// What an unanswered `ask` by `rule` becomes: its `on_timeout`, else the defaults'.
    pub fn ask_on_timeout(&self, rule: Option<&Rule>) -> Action {
        rule.and_then(|r| r.on_timeout)
            .unwrap_or(self.defaults.on_timeout)
    }

    fn decide(&self, operation: Operation, matched: Vec<RuleMatch>) -> Decision {
        // Most restrictive wins; among equals, the first in the file. Enforced and monitor
        // rules are judged apart: a monitor rule never changes what is enforced.
        let strictest = |monitor: bool| {
            matched
                .iter()
                .filter(|m| m.monitor == monitor)
                .fold(None::<&RuleMatch>, |best, m| match best {
                    Some(b) if b.action >= m.action => Some(b),
                    _ => Some(m),
                })
                .cloned()
        };
        let winner = strictest(false);
        let watched = strictest(true);
        let default = match operation {
            Operation::Exec => self.defaults.exec,
            Operation::Open => self.defaults.open,
        };
        let rule = winner.as_ref().and_then(|w| self.rule(w.rule_id));
        let action = winner.as_ref().map_or(default, |w| w.action);
        let reason = match (&winner, rule) {
            (Some(w), Some(r)) => r
                .reason
                .clone()
                .unwrap_or_else(|| format!("rule {:?} matched ({})", w.name, w.action)),
            _ => format!(
                "no {}rule matched; [defaults] {} = \"{default}\"",
                if matched.is_empty() { "" } else { "enforced " },
                match operation {
                    Operation::Exec => "exec",
                    Operation::Open => "open",
                }
            ),
        };
        let shadow = watched.filter(|m| m.action > action).map(|m| Shadow {
            action: m.action,
            reason: m.reason.clone().unwrap_or_else(|| {
                format!("rule {:?} matched ({}, monitor mode)", m.name, m.action)
            }),
            controls: m.controls.clone(),
            winner: m,
        });
        let written = rule
            .map(|r| r.reviewers.clone())
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| self.defaults.reviewers.clone());
        let mut reviewers = Vec::new();
        let mut seen = BTreeSet::new();
        for name in written {
            let members = match name.strip_prefix('@') {
                Some(group) => self.groups.get(group).cloned().unwrap_or_default(),
                None => vec![name],
            };
            for m in members {
                if seen.insert(m.clone()) {
                    reviewers.push(m);
                }
            }
        }
        Decision {
            operation,
            action,
            controls: winner
                .as_ref()
                .map(|w| w.controls.clone())
                .unwrap_or_default(),
            severity: winner.as_ref().and_then(|w| w.severity),
            winner,
            matched,
            shadow,
            reason,
            reviewers,
            timeout_secs: self.ask_timeout(rule).as_secs(),
            on_timeout: self.ask_on_timeout(rule),
            policy_version: self.version().to_string(),
        }
    }
}

fn rule_match(index: usize, rule: &Rule, assumed: Vec<String>) -> RuleMatch {
    RuleMatch {
        rule_id: index as u32 + 1,
        name: rule.name.clone(),
        action: rule.action,
        reason: rule.reason.clone(),
        severity: rule.severity,
        controls: rule.controls.clone(),
        assumed,
        monitor: rule.is_monitor(),
    }
}

/// Resolves a command the way execve would: a name with a `/` is a path (relative to
/// `cwd`), a bare name is looked up in `search_path`; symlinks are followed, as the kernel
/// reports the program it really loads. `None` when nothing executable is found.
pub fn resolve_command(command: &str, cwd: &Path, search_path: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let candidates: Vec<std::path::PathBuf> = if command.contains('/') {
        vec![cwd.join(command)]
    } else {
        search_path
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(command))
            .collect()
    };
    candidates.into_iter().find_map(|c| {
        let meta = std::fs::metadata(&c).ok()?;
        (meta.is_file() && meta.permissions().mode() & 0o111 != 0)
            .then(|| std::fs::canonicalize(&c).ok())
            .flatten()
            .map(|p| p.to_string_lossy().into_owned())
    })
}
